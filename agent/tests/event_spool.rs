//! Interned records in a real spool: the encoder's dictionary restarts
//! exactly where the spool starts a block, whatever makes it seal (size,
//! age, an explicit seal or flush, a record that would overflow the hard
//! maximum), so every block decodes on its own — also after a reopen, and
//! after the spool dropped a torn block.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dsl::event::Process;
use dsl::query::{self, CompiledQuery};
use dsl::Event;
use spool::{SpoolConfig, SpoolReader, TimeRange};
use vigil::history::query::{scan, Prefilter};
use vigil::history::store::{for_each_event, EventSpool};
use vigil::sources::synthetic::{Synthetic, SyntheticConfig};

fn events(n: usize, seed: u64) -> Vec<Event> {
    Synthetic::new(SyntheticConfig {
        seed,
        plant_every: 500,
        ..Default::default()
    })
    .take(n)
    .collect()
}

fn config(capacity: u64, target: usize) -> SpoolConfig {
    SpoolConfig {
        capacity_bytes: capacity,
        block_target_bytes: target,
        max_batch_age: Duration::from_secs(3600),
        zstd_level: 1,
    }
}

/// Every event of every block, block by block, oldest first.
fn read_blocks(path: &Path) -> Vec<Vec<Event>> {
    let reader = SpoolReader::open(path).unwrap();
    reader
        .blocks()
        .iter()
        .map(|info| {
            let block = reader.read_block(info).unwrap();
            let mut out = Vec::new();
            let (counts, err) = for_each_event(
                &block,
                |_| true,
                |d| {
                    out.push(d.into_event());
                    ControlFlow::Continue(())
                },
            );
            assert!(err.is_none(), "{err:?}");
            assert_eq!(counts.bad_records, 0, "block {}", info.seq);
            assert_eq!(out.len(), info.records as usize);
            out
        })
        .collect()
}

fn read_all(path: &Path) -> Vec<Event> {
    read_blocks(path).into_iter().flatten().collect()
}

#[test]
fn many_small_blocks_read_back_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    let input = events(6000, 1);
    let mut spool = EventSpool::open(&path, config(64 << 20, 4096)).unwrap();
    for (i, e) in input.iter().enumerate() {
        spool.append(e).unwrap();
        // Seals from every other direction too.
        if i % 97 == 0 {
            spool.seal().unwrap();
            assert_eq!(spool.dictionary_len(), 0);
        }
        if i % 251 == 0 {
            spool.flush().unwrap();
        }
        if i % 13 == 0 {
            assert!(!spool.seal_if_due().unwrap());
        }
    }
    spool.flush().unwrap();
    let stats = spool.writer().stats();
    drop(spool);
    assert!(stats.blocks_written > 300, "{stats:?}");
    let blocks = read_blocks(&path);
    assert_eq!(blocks.len() as u64, stats.blocks_written);
    assert_eq!(blocks.concat(), input);
}

#[test]
fn a_batch_age_of_zero_seals_every_record_into_its_own_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    let input = events(300, 2);
    let mut cfg = config(16 << 20, 1 << 20);
    cfg.max_batch_age = Duration::ZERO;
    let mut spool = EventSpool::open(&path, cfg).unwrap();
    for e in &input {
        spool.append(e).unwrap();
        assert_eq!(spool.dictionary_len(), 0);
    }
    drop(spool);
    let blocks = read_blocks(&path);
    assert_eq!(blocks.len(), input.len());
    assert_eq!(blocks.concat(), input);
}

/// Events with a large unique argument, so that batches meet the writer's
/// hard maximum, where it would seal *before* adding a record.
fn bulky(n: usize) -> Vec<Event> {
    events(n, 3)
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e.timestamp_ns = i as i64;
            e.process
                .args
                .push(format!("{i:>6}-{}", "x".repeat(700 + i % 900)).into());
            e
        })
        .collect()
}

#[test]
fn records_that_would_overflow_the_hard_maximum_start_a_fresh_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    let input = bulky(400);
    // 256 KiB ring: the hard maximum is about 64 KiB, and the target is
    // clamped to it, so every block ends because the next record would
    // overflow it.
    let mut spool = EventSpool::open(&path, config(256 << 10, usize::MAX)).unwrap();
    let max = spool.writer().max_record_bytes();
    assert!(max < 70_000, "{max}");
    for e in &input {
        spool.append(e).unwrap();
        assert!(spool.writer().stats().pending_bytes as usize <= max);
    }
    spool.flush().unwrap();
    let stats = spool.writer().stats();
    drop(spool);
    assert!(stats.blocks_written > 4, "{stats:?}");
    // The ring overwrote the oldest blocks; what is left is the newest
    // events, in order, each identical.
    let back = read_all(&path);
    assert!(back.len() > 40, "{}", back.len());
    let first = back[0].timestamp_ns as usize;
    assert_eq!(back, input[first..]);
}

#[test]
fn reopening_the_spool_starts_a_new_block_with_a_new_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    let input = events(4000, 4);
    let (a, b) = input.split_at(2500);
    let mut spool = EventSpool::open(&path, config(32 << 20, 16 << 10)).unwrap();
    for e in a {
        spool.append(e).unwrap();
    }
    // Dropping the writer seals the open batch.
    drop(spool);
    let mut spool = EventSpool::open(&path, config(32 << 20, 16 << 10)).unwrap();
    assert_eq!(spool.dictionary_len(), 0);
    for e in b {
        spool.append(e).unwrap();
    }
    drop(spool);
    assert_eq!(read_all(&path), input);
}

#[test]
fn a_torn_last_block_is_dropped_and_every_other_block_still_decodes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    let input = events(3000, 5);
    let mut spool = EventSpool::open(&path, config(32 << 20, 8 << 10)).unwrap();
    for e in &input {
        spool.append(e).unwrap();
    }
    drop(spool);
    let blocks = read_blocks(&path);
    assert!(blocks.len() > 10);
    // Tear the newest block: damage its payload on disk.
    let last = SpoolReader::open(&path)
        .unwrap()
        .blocks()
        .last()
        .unwrap()
        .clone();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = 4096 + last.offset as usize + 128 + last.compressed_len as usize / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();

    // Recovery drops it; new events go on in fresh blocks.
    let more = events(700, 6);
    let mut spool = EventSpool::open(&path, config(32 << 20, 8 << 10)).unwrap();
    for e in &more {
        spool.append(e).unwrap();
    }
    drop(spool);
    let mut expected: Vec<Event> = blocks[..blocks.len() - 1].concat();
    expected.extend(more);
    assert_eq!(read_all(&path), expected);
}

#[test]
fn a_failed_append_leaves_the_dictionary_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    let input = events(500, 7);
    let mut spool = EventSpool::open(&path, config(256 << 10, 16 << 10)).unwrap();
    let mut stored = Vec::new();
    for (i, e) in input.iter().enumerate() {
        if i % 50 == 25 {
            // Too large for the spool: refused, and its strings (which the
            // next records would otherwise refer to) are forgotten.
            let mut huge = e.clone();
            huge.process.name = Some(format!("huge-{i}-{}", "y".repeat(200_000)).into());
            assert!(spool.append(&huge).is_err());
            // Too deep to encode at all.
            let mut deep = e.clone();
            for _ in 0..300 {
                deep.process = Process {
                    parent: Some(Arc::new(deep.process)),
                    ..Process::default()
                };
            }
            assert!(spool.append(&deep).is_err());
        }
        spool.append(e).unwrap();
        stored.push(e.clone());
    }
    drop(spool);
    let back = read_all(&path);
    let first = stored.len() - back.len();
    assert_eq!(back, stored[first..]);
}

#[test]
fn hunts_and_time_ranges_see_the_same_events_as_a_plain_filter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    let input = events(5000, 8);
    let mut spool = EventSpool::open(&path, config(32 << 20, 8 << 10)).unwrap();
    for e in &input {
        spool.append(e).unwrap();
    }
    drop(spool);
    let reader = SpoolReader::open(&path).unwrap();
    // A range that starts and ends inside blocks.
    let (lo, hi) = (input[1234].timestamp_ns, input[3456].timestamp_ns);
    let range = TimeRange::new(lo, hi);
    for q in [
        r#"process where process.name : "curl""#,
        r#"any where process.args : "*203.0.113.80*" or file.extension == "json""#,
        r#"network where destination.port == 443 and process.name != "curl""#,
        r#"process where process.parent.name : "ZSH" and event.type == "start""#,
        r#"sequence by host.id [process where process.name == "sh"] [process where process.name == "curl"]"#,
    ] {
        let compiled = query::compile(q).unwrap();
        let pre = Prefilter::for_query(&compiled);
        for threads in [1, 2] {
            let mut got = Vec::new();
            let report = scan(
                &reader,
                range,
                &pre,
                threads,
                &mut |e| {
                    got.push(e);
                    ControlFlow::Continue(())
                },
                &mut |_, _, _| ControlFlow::Continue(()),
            );
            let want: Vec<Event> = input
                .iter()
                .filter(|e| range.contains(e.timestamp_ns))
                .filter(|e| match &compiled {
                    CompiledQuery::Event(f) => f.matches(*e),
                    CompiledQuery::Sequence(s) => s.stages.iter().any(|st| st.filter.matches(*e)),
                })
                .cloned()
                .collect();
            assert!(!want.is_empty(), "{q}");
            assert_eq!(got, want, "{q}");
            assert_eq!(report.bad_records, 0);
            let in_range = input
                .iter()
                .filter(|e| range.contains(e.timestamp_ns))
                .count();
            assert_eq!(report.events_scanned, in_range as u64, "{q}");
        }
    }
}

#[test]
fn spools_of_version_one_records_stay_readable() {
    // What older builds wrote: standalone version-1 records, then (after an
    // upgrade) interned version-2 blocks in the same spool.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.spool");
    let input = events(3000, 9);
    let (old, new) = input.split_at(1800);
    let (mut writer, _) =
        spool::SpoolWriter::open_or_create(&path, config(32 << 20, 8 << 10)).unwrap();
    let mut keys = Vec::new();
    for e in old {
        vigil::history::store::event_keys(e, &mut keys);
        let rec = dsl::codec::encode_event_v1(e).unwrap();
        writer.append(e.timestamp_ns, &keys, &rec).unwrap();
    }
    drop(writer);
    let mut spool = EventSpool::open(&path, config(32 << 20, 8 << 10)).unwrap();
    for e in new {
        spool.append(e).unwrap();
    }
    drop(spool);
    assert_eq!(read_all(&path), input);
    let reader = SpoolReader::open(&path).unwrap();
    let q = query::compile(r#"any where process.name : "CURL" or file.name == "index""#).unwrap();
    let pre = Prefilter::for_query(&q);
    let mut got = Vec::new();
    let report = scan(
        &reader,
        TimeRange::all(),
        &pre,
        2,
        &mut |e| {
            got.push(e);
            ControlFlow::Continue(())
        },
        &mut |_, _, _| ControlFlow::Continue(()),
    );
    let CompiledQuery::Event(f) = &q else {
        unreachable!()
    };
    let want: Vec<Event> = input.iter().filter(|e| f.matches(*e)).cloned().collect();
    assert!(want.iter().any(|e| e.timestamp_ns < new[0].timestamp_ns));
    assert_eq!(got, want);
    assert_eq!(report.events_scanned, input.len() as u64);
}
