//! A reader scans repeatedly while a writer wraps the ring many times.
//! Every record returned must be intact; overwritten blocks are reported,
//! never returned. `VIGIL_SOAK=1` runs much longer.

mod common;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_spool::{SpoolConfig, SpoolError, SpoolReader, SpoolWriter, TimeRange};

fn cfg() -> SpoolConfig {
    SpoolConfig {
        capacity_bytes: 128 * 1024,
        block_target_bytes: 4096,
        max_batch_age: Duration::from_secs(3600),
        zstd_level: 1,
    }
}

#[test]
fn reader_scans_while_writer_wraps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("conc.spool");
    let (mut w, _) = SpoolWriter::open_or_create(&path, cfg()).expect("create");
    // One block so the reader has something from the start.
    let mut buf = Vec::new();
    common::make_record(0, &mut buf);
    w.append(0, &[0], &buf).expect("append");
    w.flush().expect("flush");

    let run_for = if common::soak() {
        Duration::from_secs(60)
    } else {
        Duration::from_millis(2500)
    };
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut c = 1u64;
            let mut buf = Vec::new();
            while start.elapsed() < run_for {
                common::make_record(c, &mut buf);
                w.append(c as i64, &[c], &buf).expect("append");
                c += 1;
            }
            w.flush().expect("flush");
            let stats = w.stats();
            done.store(true, Ordering::SeqCst);
            (c - 1, stats)
        })
    };

    let mut r = SpoolReader::open(&path).expect("open reader");
    let (mut scans, mut records, mut overwritten, mut block_reads) = (0u64, 0u64, 0u64, 0u64);
    let mut stale: Vec<vigil_spool::BlockInfo> = Vec::new();
    while !done.load(Ordering::SeqCst) {
        r.refresh().expect("refresh");
        assert_eq!(
            r.info().corrupt_blocks,
            0,
            "concurrent writes are not corruption"
        );
        for pair in r.blocks().windows(2) {
            assert!(pair[0].seq < pair[1].seq);
        }
        // Full scan: records intact and in increasing counter order.
        let mut last = None;
        let rep = r
            .scan(TimeRange::all(), None, |rec| {
                let c = common::check_record(rec.data).expect("scan returned a torn record");
                assert_eq!(rec.ts_ns, c as i64);
                assert_eq!(rec.keys.to_vec(), vec![c]);
                assert!(last < Some(c), "records out of order");
                last = Some(c);
                ControlFlow::Continue(())
            })
            .expect("scan");
        assert_eq!(rep.corrupt_blocks, 0);
        scans += 1;
        records += rep.records;
        overwritten += rep.overwritten_blocks as u64;
        // Reading blocks listed by an older refresh: they are either intact
        // or reported as overwritten.
        for b in &stale {
            block_reads += 1;
            match r.read_block(b) {
                Ok(block) => {
                    let mut prev = None;
                    for rec in block.records() {
                        let c = common::check_record(rec.expect("record").data)
                            .expect("read_block returned a torn record");
                        if let Some(p) = prev {
                            assert_eq!(p + 1, c, "records within a block are consecutive");
                        }
                        prev = Some(c);
                    }
                }
                Err(SpoolError::Overwritten { seq }) => {
                    assert_eq!(seq, b.seq);
                    overwritten += 1;
                }
                Err(e) => panic!("unexpected error reading a stale block: {e}"),
            }
        }
        stale = r.blocks().to_vec();
    }
    let (last_counter, stats) = writer.join().expect("writer thread");
    assert!(
        stats.blocks_overwritten > 100,
        "the ring wrapped many times: {stats:?}"
    );
    assert!(scans > 5, "reader made progress ({scans} scans)");
    assert!(
        overwritten > 0,
        "some blocks were overwritten under the reader"
    );
    eprintln!(
        "writer: {last_counter} records, {stats:?}; reader: {scans} scans, {records} records, \
         {block_reads} stale block reads, {overwritten} overwritten"
    );

    // After the writer stops, the newest record is there and everything reads back.
    r.refresh().expect("refresh");
    let mut newest = 0;
    r.scan(TimeRange::all(), None, |rec| {
        newest = common::check_record(rec.data).expect("intact");
        ControlFlow::Continue(())
    })
    .expect("scan");
    assert_eq!(newest, last_counter);
}

#[test]
fn stale_block_info_is_reported_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stale.spool");
    let (mut w, _) = SpoolWriter::open_or_create(&path, cfg()).expect("create");
    let mut buf = Vec::new();
    let mut c = 0u64;
    let mut write = |w: &mut SpoolWriter, n: u64| {
        for _ in 0..n {
            common::make_record(c, &mut buf);
            w.append(c as i64, &[c], &buf).expect("append");
            c += 1;
        }
        w.flush().expect("flush");
    };
    write(&mut w, 2000);
    let r = SpoolReader::open(&path).expect("open");
    let before = r.blocks().to_vec();
    assert!(before.len() > 5);
    // Write well over a full ring: every listed block is gone.
    write(&mut w, 6000);
    for b in &before {
        match r.read_block(b) {
            Err(SpoolError::Overwritten { seq }) => assert_eq!(seq, b.seq),
            other => panic!("expected Overwritten for {}, got {other:?}", b.seq),
        }
    }
    let rep = r
        .scan(TimeRange::all(), None, |_| {
            panic!("no record may be returned")
        })
        .expect("scan");
    assert_eq!(rep.overwritten_blocks, before.len());
    assert_eq!(rep.records, 0);
}
