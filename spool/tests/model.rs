//! Property test: random appends / flushes / reopens on a small ring that
//! wraps many times, checked against an in-memory model of sealed blocks.
//! `VIGIL_SOAK=1` runs many more cases; `MODEL_DEBUG=1` prints how far each
//! case wrapped (run with `--nocapture`).

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use vigil_spool::{SpoolConfig, SpoolReader, SpoolWriter, TimeRange, WriterStats};

#[derive(Debug, Clone)]
enum Op {
    Append {
        dts: u16,
        nkeys: u8,
        key_seed: u8,
        len: u16,
        seed: u64,
    },
    Flush,
    Reopen,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    ts: i64,
    keys: Vec<u64>,
    data: Vec<u8>,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (any::<u16>(), 0u8..5, any::<u8>(), 0u16..2000, any::<u64>()).prop_map(
            |(dts, nkeys, key_seed, len, seed)| Op::Append { dts: dts % 1000, nkeys, key_seed, len, seed }
        ),
        2 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    // A quarter compressible, the rest noisy, so block sizes vary.
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            if seed.is_multiple_of(4) && i % 8 != 0 {
                b'a' + (i % 13) as u8
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

struct Model {
    blocks: Vec<Vec<Rec>>, // index = seq - 1
    pending: Vec<Rec>,
}

impl Model {
    fn seal_pending(&mut self) {
        if !self.pending.is_empty() {
            self.blocks.push(std::mem::take(&mut self.pending));
        }
    }

    /// Mirrors the writer's sealing decisions, observed through its stats.
    fn after_append(&mut self, rec: Rec, before: WriterStats, after: WriterStats) {
        let sealed = after.blocks_written - before.blocks_written;
        match (sealed, after.pending_records) {
            (0, _) => self.pending.push(rec),
            (1, 0) => {
                self.pending.push(rec);
                self.seal_pending();
            }
            (1, 1) => {
                self.seal_pending();
                self.pending.push(rec);
            }
            (2, 0) => {
                self.seal_pending();
                self.pending.push(rec);
                self.seal_pending();
            }
            other => panic!("unexpected sealing pattern {other:?}"),
        }
        assert_eq!(self.pending.len() as u64, after.pending_records);
    }
}

fn check(path: &Path, model: &Model, capacity: u64) -> Result<(), TestCaseError> {
    let r = SpoolReader::open(path).expect("open reader");
    let info = r.info();
    prop_assert_eq!(info.corrupt_blocks, 0);
    let blocks = r.blocks();
    if model.blocks.is_empty() {
        prop_assert!(blocks.is_empty());
        return Ok(());
    }
    // The newest sealed block is always there, and the survivors are a
    // contiguous run of sequence numbers ending at it.
    let last = blocks.last().expect("at least one block survives");
    prop_assert_eq!(last.seq, model.blocks.len() as u64);
    for pair in blocks.windows(2) {
        prop_assert_eq!(pair[0].seq + 1, pair[1].seq);
    }
    // Old blocks are lost only by overwrite: the ring stays > half full.
    if blocks[0].seq > 1 {
        prop_assert!(
            info.used_bytes >= capacity / 2,
            "lost blocks but only {} of {} bytes used",
            info.used_bytes,
            capacity
        );
    }
    // Block by block, record by record, equal to the model.
    let mut expected_all = Vec::new();
    for b in blocks {
        let want = &model.blocks[(b.seq - 1) as usize];
        let got: Vec<Rec> = r
            .read_block(b)
            .expect("read_block")
            .records()
            .map(|x| {
                let x = x.expect("record");
                Rec {
                    ts: x.ts_ns,
                    keys: x.keys.to_vec(),
                    data: x.data.to_vec(),
                }
            })
            .collect();
        prop_assert_eq!(&got, want, "block {}", b.seq);
        expected_all.extend(want.iter().cloned());
    }
    // And through scan, with a key filter too.
    let mut scanned = Vec::new();
    r.scan(TimeRange::all(), None, |x| {
        scanned.push(Rec {
            ts: x.ts_ns,
            keys: x.keys.to_vec(),
            data: x.data.to_vec(),
        });
        ControlFlow::Continue(())
    })
    .expect("scan");
    prop_assert_eq!(&scanned, &expected_all);
    if let Some(key) = expected_all
        .iter()
        .rev()
        .find_map(|x| x.keys.first().copied())
    {
        let mut n = 0usize;
        r.scan(TimeRange::all(), Some(key), |x| {
            assert!(x.keys.contains(key));
            n += 1;
            ControlFlow::Continue(())
        })
        .expect("scan by key");
        prop_assert_eq!(
            n,
            expected_all
                .iter()
                .filter(|x| x.keys.contains(&key))
                .count()
        );
    }
    Ok(())
}

fn run(capacity: u64, target: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.spool");
    let cfg = SpoolConfig {
        capacity_bytes: capacity,
        block_target_bytes: target,
        max_batch_age: Duration::from_secs(3600),
        zstd_level: 1,
    };
    let (mut w, rep) = SpoolWriter::open_or_create(&path, cfg.clone()).expect("create");
    prop_assert!(rep.created);
    let mut model = Model {
        blocks: Vec::new(),
        pending: Vec::new(),
    };
    let mut ts = 1_700_000_000_000_000_000i64;
    for op in ops {
        match op {
            Op::Append {
                dts,
                nkeys,
                key_seed,
                len,
                seed,
            } => {
                ts += i64::from(dts);
                let keys: Vec<u64> = (0..u64::from(nkeys))
                    .map(|k| u64::from(key_seed % 16) * 1_000 + k)
                    .collect();
                let rec = Rec {
                    ts,
                    keys,
                    data: bytes(seed, len as usize),
                };
                let before = w.stats();
                w.append(rec.ts, &rec.keys, &rec.data).expect("append");
                model.after_append(rec, before, w.stats());
            }
            Op::Flush => {
                w.flush().expect("flush");
                model.seal_pending();
                prop_assert_eq!(w.stats().pending_records, 0);
                check(&path, &model, capacity)?;
            }
            Op::Reopen => {
                drop(w);
                model.seal_pending();
                check(&path, &model, capacity)?;
                let (nw, rep) = SpoolWriter::open_or_create(&path, cfg.clone()).expect("reopen");
                prop_assert!(!rep.created);
                prop_assert_eq!(rep.corrupt_blocks, 0);
                prop_assert_eq!(rep.stale_blocks, 0);
                prop_assert_eq!(rep.next_seq, model.blocks.len() as u64 + 1);
                w = nw;
            }
        }
    }
    drop(w);
    model.seal_pending();
    if std::env::var_os("MODEL_DEBUG").is_some() {
        let r = SpoolReader::open(&path).expect("open");
        eprintln!(
            "cap {capacity} blocks sealed {} surviving from seq {:?}",
            model.blocks.len(),
            r.blocks().first().map(|b| b.seq)
        );
    }
    check(&path, &model, capacity)
}

fn cases() -> u32 {
    if std::env::var_os("VIGIL_SOAK").is_some() {
        2000
    } else {
        24
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn ring_matches_model(
        capacity_kib in prop::sample::select(vec![64u64, 64, 96, 128, 256]),
        target in 512usize..8192,
        ops in prop::collection::vec(op(), 1..800),
    ) {
        run(capacity_kib * 1024, target, ops)?;
    }
}
