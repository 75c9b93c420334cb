//! Functional tests of the public API.

use std::ops::ControlFlow;
use std::time::Duration;

use vigil_spool::{SpoolConfig, SpoolError, SpoolReader, SpoolWriter, TimeRange, BLOCK_HEADER_LEN};

fn cfg(capacity: u64, target: usize) -> SpoolConfig {
    SpoolConfig {
        capacity_bytes: capacity,
        block_target_bytes: target,
        max_batch_age: Duration::from_secs(3600),
        zstd_level: 1,
    }
}

fn collect(r: &SpoolReader, range: TimeRange, key: Option<u64>) -> Vec<(i64, Vec<u64>, Vec<u8>)> {
    let mut out = Vec::new();
    r.scan(range, key, |rec| {
        out.push((rec.ts_ns, rec.keys.to_vec(), rec.data.to_vec()));
        ControlFlow::Continue(())
    })
    .expect("scan");
    out
}

#[test]
fn roundtrip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    let (mut w, rep) = SpoolWriter::open_or_create(&path, cfg(1 << 20, 4096)).unwrap();
    assert!(rep.created);
    assert_eq!(rep.valid_blocks, 0);
    assert_eq!(rep.next_seq, 1);
    let mut expect = Vec::new();
    for i in 0..2000i64 {
        let keys: Vec<u64> = (0..(i % 4) as u64)
            .map(|k| k * 1000 + (i as u64 % 50))
            .collect();
        let data = format!("record {i} {}", "x".repeat((i % 97) as usize)).into_bytes();
        w.append(1_000 + i * 10, &keys, &data).unwrap();
        expect.push((1_000 + i * 10, keys, data));
    }
    w.flush().unwrap();
    let st = w.stats();
    assert_eq!(st.records_written, 2000);
    assert_eq!(st.pending_records, 0);
    assert!(st.blocks_written > 10);
    assert!(st.compressed_bytes < st.raw_bytes);

    let r = SpoolReader::open(&path).unwrap();
    assert_eq!(collect(&r, TimeRange::all(), None), expect);
    let info = r.info();
    assert_eq!(info.records, 2000);
    assert_eq!(info.blocks as u64, st.blocks_written);
    assert_eq!(info.oldest_ts, Some(1_000));
    assert_eq!(info.newest_ts, Some(1_000 + 1999 * 10));
    assert_eq!(info.corrupt_blocks, 0);
    assert!(!info.truncated);
    assert!(info.compression_ratio > 1.0);
    for pair in r.blocks().windows(2) {
        assert!(pair[0].seq < pair[1].seq);
    }

    // read_block agrees with scan
    let mut via_blocks = Vec::new();
    for b in r.blocks() {
        let blk = r.read_block(b).unwrap();
        assert_eq!(blk.seq(), b.seq);
        for rec in blk.records() {
            let rec = rec.unwrap();
            via_blocks.push((rec.ts_ns, rec.keys.to_vec(), rec.data.to_vec()));
        }
    }
    assert_eq!(via_blocks, expect);

    // time filter: inclusive start, exclusive end
    let sub = collect(&r, TimeRange::new(1_100, 1_200), None);
    assert_eq!(sub, expect[10..20].to_vec());

    // key filter
    let want: Vec<_> = expect
        .iter()
        .filter(|e| e.1.contains(&1007))
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert_eq!(collect(&r, TimeRange::all(), Some(1007)), want);

    // early stop
    let mut n = 0;
    let rep = r
        .scan(TimeRange::all(), None, |_| {
            n += 1;
            if n == 5 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!((n, rep.records), (5, 5));

    // reopen the writer: continues the sequence, keeps the data
    drop(w);
    let (mut w, rep) = SpoolWriter::open_or_create(&path, cfg(1 << 20, 4096)).unwrap();
    assert!(!rep.created);
    assert_eq!(rep.valid_blocks as u64, st.blocks_written);
    assert_eq!(rep.next_seq, st.blocks_written + 1);
    assert_eq!(rep.corrupt_blocks, 0);
    assert_eq!(rep.records, 2000);
    assert_eq!(rep.hint_write_offset, Some(rep.recovered_write_offset));
    w.append(999_999, &[1], b"after reopen").unwrap();
    w.flush().unwrap();
    let mut r2 = r.clone();
    r2.refresh().unwrap();
    let all = collect(&r2, TimeRange::all(), None);
    assert_eq!(all.len(), 2001);
    assert_eq!(all.last().unwrap().2, b"after reopen");
    assert_eq!(r2.blocks().last().unwrap().seq, st.blocks_written + 1);
}

#[test]
fn second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    let (_w, _) = SpoolWriter::open_or_create(&path, cfg(1 << 20, 4096)).unwrap();
    match SpoolWriter::open_or_create(&path, cfg(1 << 20, 4096)) {
        Err(SpoolError::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
    // readers take no lock
    SpoolReader::open(&path).unwrap();
}

#[test]
fn capacity_from_existing_file_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    drop(SpoolWriter::open_or_create(&path, cfg(1 << 20, 4096)).unwrap());
    let (w, rep) = SpoolWriter::open_or_create(&path, cfg(4 << 20, 4096)).unwrap();
    assert_eq!(rep.capacity, 1 << 20);
    assert_eq!(rep.requested_capacity, Some(4 << 20));
    assert_eq!(w.capacity(), 1 << 20);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096 + (1 << 20));
}

#[test]
fn too_small_and_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    assert!(matches!(
        SpoolWriter::open_or_create(&path, cfg(4096, 4096)),
        Err(SpoolError::TooSmall { .. })
    ));
    let (mut w, _) = SpoolWriter::open_or_create(&path, cfg(64 * 1024, 1 << 20)).unwrap();
    let max = w.max_record_bytes();
    // a block can never exceed capacity / 4
    assert!(max + BLOCK_HEADER_LEN < 16 * 1024);
    match w.append(0, &[], &vec![0u8; max]) {
        Err(SpoolError::RecordTooLarge { size, max: m }) => assert!(size > m),
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    // incompressible record of nearly max size still fits a block
    let data: Vec<u8> = (0..max - 16)
        .map(|i| (i * 7919 % 251) as u8 ^ (i >> 3) as u8)
        .collect();
    w.append(0, &[], &data).unwrap();
    w.flush().unwrap();
    for b in SpoolReader::open(&path).unwrap().blocks() {
        assert!(b.extent() <= 16 * 1024);
    }
}

#[test]
fn not_a_spool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk");
    std::fs::write(&path, vec![7u8; 10_000]).unwrap();
    assert!(matches!(
        SpoolWriter::open_or_create(&path, cfg(1 << 20, 4096)),
        Err(SpoolError::NotASpool { .. })
    ));
    assert!(matches!(
        SpoolReader::open(&path),
        Err(SpoolError::NotASpool { .. })
    ));
    std::fs::write(&path, b"short").unwrap();
    assert!(matches!(
        SpoolReader::open(&path),
        Err(SpoolError::NotASpool { .. })
    ));
    // an all-zero (unfinished) file is initialized by the writer
    std::fs::write(&path, vec![0u8; 100]).unwrap();
    let (_w, rep) = SpoolWriter::open_or_create(&path, cfg(1 << 20, 4096)).unwrap();
    assert!(rep.created);
}

#[test]
fn age_based_sealing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    let mut c = cfg(1 << 20, 1 << 20);
    c.max_batch_age = Duration::from_millis(20);
    let (mut w, _) = SpoolWriter::open_or_create(&path, c).unwrap();
    // A timer knows how long to sleep: nothing while no batch is open.
    assert_eq!(w.seal_due_in(), None);
    w.append(1, &[], b"a").unwrap();
    assert!(w
        .seal_due_in()
        .is_some_and(|d| d <= Duration::from_millis(20)));
    assert!(!w.seal_if_due().unwrap());
    assert_eq!(w.stats().pending_records, 1);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(w.seal_due_in(), Some(Duration::ZERO));
    assert!(w.seal_if_due().unwrap());
    assert_eq!(w.seal_due_in(), None);
    assert_eq!(w.stats().blocks_written, 1);
    // append itself seals an old batch, looking at the clock at every
    // AGE_CHECK_RECORDS-th record of the batch
    w.append(2, &[], b"b").unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let checked_at = vigil_spool::AGE_CHECK_RECORDS as i64;
    for ts in 2..checked_at {
        w.append(ts + 1, &[], b"c").unwrap();
    }
    assert_eq!(w.stats().blocks_written, 1);
    assert_eq!(w.stats().pending_records, checked_at as u64 - 1);
    w.append(checked_at + 1, &[], b"c").unwrap();
    assert_eq!(w.stats().blocks_written, 2);
    assert_eq!(w.stats().pending_records, 0);
}

#[test]
fn wraps_and_keeps_newest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    let (mut w, _) = SpoolWriter::open_or_create(&path, cfg(64 * 1024, 2048)).unwrap();
    let mut n = 0u64;
    for round in 0..5 {
        for _ in 0..3000 {
            let data: Vec<u8> = (0..40)
                .map(|i| (n as u8).wrapping_mul(31).wrapping_add(i))
                .collect();
            w.append(n as i64, &[n], &data).unwrap();
            n += 1;
        }
        w.flush().unwrap();
        let r = SpoolReader::open(&path).unwrap();
        let recs = collect(&r, TimeRange::all(), None);
        // a contiguous suffix ending at the last record
        assert_eq!(recs.last().unwrap().0, n as i64 - 1, "round {round}");
        for pair in recs.windows(2) {
            assert_eq!(pair[0].0 + 1, pair[1].0);
        }
        let info = r.info();
        assert!(info.used_bytes <= 64 * 1024);
        if recs[0].0 > 0 {
            assert!(
                info.used_bytes >= 32 * 1024,
                "ring should stay at least half full"
            );
        }
    }
    assert!(w.stats().blocks_overwritten > 0);
}

#[test]
fn empty_spool_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    let (_w, _) = SpoolWriter::open_or_create(&path, cfg(1 << 20, 4096)).unwrap();
    let r = SpoolReader::open(&path).unwrap();
    assert!(r.blocks().is_empty());
    let info = r.info();
    assert_eq!((info.blocks, info.records, info.oldest_ts), (0, 0, None));
    let rep = r
        .scan(TimeRange::all(), None, |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(rep.records, 0);
}

/// A file truncated under an open reader (by hand, or a damaged disk) is
/// read as ending there: the blocks that were cut are skipped as corrupt or
/// overwritten, the rest still read, and nothing raises SIGBUS (a mapping
/// would: the test process would die).
#[test]
fn a_file_truncated_under_a_reader_reads_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.spool");
    {
        let (mut w, _) = SpoolWriter::open_or_create(&path, cfg(1 << 20, 4096)).unwrap();
        for i in 0..3000i64 {
            w.append(i, &[], format!("record {i} {}", "y".repeat(40)).as_bytes())
                .unwrap();
        }
        w.flush().unwrap();
    }
    let mut r = SpoolReader::open(&path).unwrap();
    let before = collect(&r, TimeRange::all(), None).len();
    assert_eq!(before, 3000);
    let blocks = r.blocks().to_vec();
    assert!(blocks.len() > 4);
    // Cut the file in the middle of the ring: the header page stays.
    let cut = 4096 + blocks[blocks.len() / 2].offset + 100;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();
    // The reader still holds the old block list: the cut blocks fail
    // their checks and are counted, the others read.
    let mut kept = 0;
    let rep = r
        .scan(TimeRange::all(), None, |_| {
            kept += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(kept > 0 && kept < before, "{kept} of {before}");
    assert!(rep.corrupt_blocks + rep.overwritten_blocks > 0, "{rep:?}");
    // Refreshed, it sees the shorter file.
    r.refresh().unwrap();
    assert!(r.info().truncated);
    assert_eq!(collect(&r, TimeRange::all(), None).len(), kept);
    // Down to the header page alone: an empty, truncated spool.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096)
        .unwrap();
    assert!(collect(&r, TimeRange::all(), None).is_empty());
    r.refresh().unwrap();
    assert_eq!(r.info().records, 0);
}
