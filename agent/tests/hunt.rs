//! Hunts agree with a brute-force filter over the same events, and hunting
//! while a writer wraps the ring never returns a torn event.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dsl::query;
use dsl::Event;
use proptest::prelude::*;
use spool::{SpoolConfig, SpoolReader, TimeRange};
use vigil::history::query::{scan, Prefilter};
use vigil::history::store::EventSpool;
use vigil::sources::synthetic::{Synthetic, SyntheticConfig};

const QUERIES: &[&str] = &[
    r#"process where process.name : ("curl", "git", "ssh")"#,
    r#"file where file.path : "/Users/*/Library/Caches/*" and not file.name == "index""#,
    r#"network where destination.port == 443 and cidrmatch(destination.ip, "140.82.112.0/28")"#,
    r#"any where process.code_signature.team_id != null"#,
    r#"process where event.type == "end""#,
    r#"any where process.args : "*--type=*" or process.parent.name : "installer""#,
    r#"file where event.type == "creation" and length(process.args) > 2"#,
];

fn spool_of(events: &[Event], dir: &std::path::Path, block_kb: usize) -> SpoolReader {
    let path = dir.join("h.spool");
    let mut s = EventSpool::open(
        &path,
        SpoolConfig {
            capacity_bytes: 64 << 20,
            block_target_bytes: block_kb << 10,
            max_batch_age: Duration::from_secs(3600),
            zstd_level: 1,
        },
    )
    .unwrap();
    for e in events {
        s.append(e).unwrap();
    }
    s.flush().unwrap();
    SpoolReader::open(&path).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn hunt_results_equal_a_brute_force_filter(
        seed in any::<u64>(),
        n in 1usize..3000,
        q in 0..QUERIES.len(),
        block_kb in 4usize..64,
        threads in 1usize..4,
        window in proptest::option::of((0.0f64..1.0, 0.0f64..1.0)),
    ) {
        let events: Vec<Event> = Synthetic::new(SyntheticConfig { seed, plant_every: 97, ..Default::default() }).take(n).collect();
        let dir = tempfile::tempdir().unwrap();
        let reader = spool_of(&events, dir.path(), block_kb);
        let compiled = query::compile(QUERIES[q]).unwrap();
        let query::CompiledQuery::Event(filter) = &compiled else { unreachable!("filters only") };
        let (lo, hi) = (events[0].timestamp_ns, events[n - 1].timestamp_ns + 1);
        let range = match window {
            None => TimeRange::all(),
            Some((a, b)) => {
                let (a, b) = if a <= b { (a, b) } else { (b, a) };
                let span = (hi - lo) as f64;
                TimeRange::new(lo + (span * a) as i64, lo + (span * b) as i64)
            }
        };
        let expected: Vec<&Event> = events.iter().filter(|e| range.contains(e.timestamp_ns) && filter.matches(*e)).collect();
        let mut got = Vec::new();
        let report = scan(&reader, range, &Prefilter::for_query(&compiled), threads, &mut |e| {
            got.push(e);
            ControlFlow::Continue(())
        }, &mut |_, _, _| ControlFlow::Continue(()));
        prop_assert_eq!(report.corrupt_blocks + report.overwritten_blocks, 0);
        prop_assert_eq!(got.len(), expected.len());
        for (g, x) in got.iter().zip(&expected) {
            prop_assert_eq!(g, *x);
        }
    }
}

#[test]
fn hunting_while_the_writer_wraps_returns_only_whole_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrap.spool");
    let cfg = SpoolConfig {
        capacity_bytes: 256 << 10,
        block_target_bytes: 8 << 10,
        max_batch_age: Duration::from_secs(3600),
        zstd_level: 1,
    };
    // Every event written is one of these, keyed by its event.id, so any
    // event a hunt returns can be checked field for field.
    let pool: Vec<Event> = Synthetic::new(SyntheticConfig {
        seed: 9,
        ..Default::default()
    })
    .take(5000)
    .enumerate()
    .map(|(i, mut e)| {
        e.event.id = Some(i.to_string().into());
        e
    })
    .collect();
    let mut writer = EventSpool::open(&path, cfg).unwrap();
    for e in &pool[..500] {
        writer.append(e).unwrap();
    }
    writer.flush().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let w = {
        let (stop, pool, progress) = (Arc::clone(&stop), pool.clone(), Arc::clone(&progress));
        std::thread::spawn(move || {
            let mut written = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for e in &pool {
                    writer.append(e).unwrap();
                    written += 1;
                }
                progress.store(written, Ordering::Relaxed);
            }
            writer.flush().unwrap();
            written
        })
    };
    let compiled = query::compile("any where true").unwrap();
    let pre = Prefilter::for_query(&compiled);
    let (mut returned, mut skipped) = (0u64, 0usize);
    // At least 3 s of hunting, and until the writer has wrapped the ring
    // many times (a loaded machine writes slower).
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < give_up
        && (std::time::Instant::now() < deadline || progress.load(Ordering::Relaxed) <= 50_000)
    {
        let reader = SpoolReader::open(&path).unwrap();
        let report = scan(
            &reader,
            TimeRange::all(),
            &pre,
            2,
            &mut |e| {
                let i: usize = e
                    .event
                    .id
                    .as_deref()
                    .and_then(|s| s.parse().ok())
                    .expect("every event has its index");
                assert_eq!(
                    e, pool[i],
                    "a hunt returned an event that was never written"
                );
                returned += 1;
                ControlFlow::Continue(())
            },
            &mut |_, _, _| ControlFlow::Continue(()),
        );
        assert_eq!(report.bad_records, 0);
        skipped += report.overwritten_blocks + report.corrupt_blocks;
    }
    stop.store(true, Ordering::Relaxed);
    let written = w.join().unwrap();
    assert!(
        written > 50_000,
        "the writer wrapped the 256 KiB ring many times ({written} events)"
    );
    assert!(returned > 0);
    eprintln!("returned {returned} whole events; {skipped} blocks overwritten under the reader were skipped and reported");
}
