//! Arbitrary bytes fed to the block decoder and to SpoolReader / SpoolWriter
//! never panic (errors are fine). `VIGIL_SOAK=1` runs many more cases.

mod common;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use vigil_spool::{
    decode_block_payload, ChecksumPolicy, SpoolConfig, SpoolReader, SpoolWriter, TimeRange,
    BLOCK_ALIGN, BLOCK_HEADER_LEN, HEADER_PAGE,
};

const CAPACITY: u64 = 64 * 1024;

fn cases(normal: u32) -> u32 {
    if common::soak() {
        normal * 50
    } else {
        normal
    }
}

/// A small valid spool (bytes) and its file id, built once.
fn sample_spool() -> &'static (Vec<u8>, u64) {
    static SAMPLE: OnceLock<(Vec<u8>, u64)> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sample.spool");
        let cfg = SpoolConfig {
            capacity_bytes: CAPACITY,
            block_target_bytes: 2048,
            max_batch_age: Duration::from_secs(3600),
            zstd_level: 1,
        };
        let (mut w, _) = SpoolWriter::open_or_create(&path, cfg).expect("create");
        let mut buf = Vec::new();
        for c in 0..2000u64 {
            common::make_record(c, &mut buf);
            w.append(c as i64, &[c, c / 10], &buf).expect("append");
        }
        drop(w);
        let id = SpoolReader::open(&path).expect("open").info().file_id;
        (std::fs::read(&path).expect("read"), id)
    })
}

/// The first block of the sample spool (header + payload).
fn sample_block() -> Vec<u8> {
    let (bytes, _) = sample_spool();
    let start = HEADER_PAGE as usize;
    let clen = u32::from_le_bytes(bytes[start + 44..start + 48].try_into().expect("4 bytes"));
    bytes[start..start + BLOCK_HEADER_LEN + clen as usize].to_vec()
}

fn salt(file_id: u64) -> u32 {
    (file_id ^ (file_id >> 32)) as u32
}

/// Recomputes the payload and header checksums of a block in place.
fn fix_checksums(block: &mut [u8], file_id: u64) {
    let payload_crc = crc32fast::hash(&block[BLOCK_HEADER_LEN..]);
    block[48..52].copy_from_slice(&payload_crc.to_le_bytes());
    block[52..56].fill(0);
    let mut h = crc32fast::Hasher::new_with_initial(salt(file_id));
    h.update(&block[..BLOCK_HEADER_LEN]);
    let crc = h.finalize();
    block[52..56].copy_from_slice(&crc.to_le_bytes());
}

/// Builds a block whose payload is a real zstd frame of arbitrary "raw" bytes.
fn block_with_raw(raw: &[u8], records: u32, ts: (i64, i64), file_id: u64) -> Vec<u8> {
    let mut b = sample_block()[..BLOCK_HEADER_LEN].to_vec();
    let comp = zstd::bulk::compress(raw, 1).expect("compress");
    b[12..16].copy_from_slice(&records.to_le_bytes());
    b[24..32].copy_from_slice(&ts.0.to_le_bytes());
    b[32..40].copy_from_slice(&ts.1.to_le_bytes());
    b[40..44].copy_from_slice(&(raw.len() as u32).to_le_bytes());
    b[44..48].copy_from_slice(&(comp.len() as u32).to_le_bytes());
    b.extend_from_slice(&comp);
    fix_checksums(&mut b, file_id);
    b
}

fn exercise_decoder(bytes: &[u8], file_id: u64) {
    for policy in [ChecksumPolicy::Skip, ChecksumPolicy::Verify { file_id }] {
        if let Ok(block) = decode_block_payload(bytes, policy) {
            for rec in block.records() {
                let rec = rec.expect("decoded blocks are fully validated");
                let _ = (rec.ts_ns, rec.keys.iter().count(), rec.data.len());
            }
        }
    }
}

/// Opens, lists, reads and scans a spool file; then lets a writer recover it.
fn exercise_file(path: &Path) {
    if let Ok(mut r) = SpoolReader::open(path) {
        let _ = r.info();
        for b in r.blocks().to_vec() {
            if let Ok(block) = r.read_block(&b) {
                for rec in block.records() {
                    let _ = rec.map(|x| x.data.len());
                }
            }
        }
        let _ = r.scan(TimeRange::all(), None, |_| ControlFlow::Continue(()));
        let _ = r.scan(TimeRange::new(-5, 300), Some(3), |_| {
            ControlFlow::Continue(())
        });
        let _ = r.refresh();
    }
    let cfg = SpoolConfig {
        capacity_bytes: CAPACITY,
        block_target_bytes: 2048,
        max_batch_age: Duration::from_secs(3600),
        zstd_level: 1,
    };
    if let Ok((mut w, _)) = SpoolWriter::open_or_create(path, cfg) {
        let _ = w.append(1, &[1], b"after garbage");
        let _ = w.flush();
    }
    if let Ok(r) = SpoolReader::open(path) {
        let _ = r.scan(TimeRange::all(), None, |_| ControlFlow::Continue(()));
    }
}

#[test]
fn sample_block_decodes() {
    let (_, id) = sample_spool();
    let b = sample_block();
    let block = decode_block_payload(&b, ChecksumPolicy::Verify { file_id: *id }).expect("decode");
    assert!(block.records().count() > 0);
    assert!(decode_block_payload(&b, ChecksumPolicy::Verify { file_id: id ^ 1 }).is_err());
    // The crafted-block helper produces checksums the decoder accepts:
    // one record, ts delta zigzag(5) = 10, no keys, empty data.
    let crafted = block_with_raw(&[10, 0, 0], 1, (5, 5), *id);
    let block =
        decode_block_payload(&crafted, ChecksumPolicy::Verify { file_id: *id }).expect("crafted");
    let recs: Vec<_> = block.records().map(|r| r.expect("record").ts_ns).collect();
    assert_eq!(recs, vec![5]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decoder_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise_decoder(&bytes, 7);
    }

    #[test]
    fn decoder_mutated_block(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                             cut in any::<prop::sample::Index>(), fix in any::<bool>()) {
        let (_, id) = sample_spool();
        let mut b = sample_block();
        for (i, v) in flips {
            let at = i.index(b.len());
            b[at] ^= v;
        }
        b.truncate(cut.index(b.len() + 1).max(BLOCK_HEADER_LEN.min(b.len())));
        if fix && b.len() > BLOCK_HEADER_LEN {
            fix_checksums(&mut b, *id);
        }
        exercise_decoder(&b, *id);
    }

    #[test]
    fn decoder_arbitrary_records(raw in prop::collection::vec(any::<u8>(), 0..1024),
                                 records in 0u32..64, t0 in any::<i64>(), span in any::<u32>()) {
        let (_, id) = sample_spool();
        let b = block_with_raw(&raw, records, (t0, t0.saturating_add(i64::from(span))), *id);
        exercise_decoder(&b, *id);
    }

    #[test]
    fn decoder_claims_huge_sizes(raw_len in any::<u32>(), clen in any::<u32>()) {
        let (_, id) = sample_spool();
        let mut b = sample_block();
        b[40..44].copy_from_slice(&raw_len.to_le_bytes());
        b[44..48].copy_from_slice(&clen.to_le_bytes());
        exercise_decoder(&b, *id);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn reader_on_garbage_file(bytes in prop::collection::vec(any::<u8>(), 0..12_000)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("garbage.spool");
        std::fs::write(&path, &bytes).expect("write");
        exercise_file(&path);
    }

    #[test]
    fn reader_on_damaged_spool(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..64),
        smears in prop::collection::vec((any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..700)), 0..4),
        planted in prop::collection::vec((0u64..(CAPACITY / BLOCK_ALIGN), prop::collection::vec(any::<u8>(), 0..600), 0u32..40), 0..4),
        new_len in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (orig, id) = sample_spool();
        let mut bytes = orig.clone();
        // Random byte flips anywhere except the static header (which would
        // just make the file unreadable).
        for (i, v) in flips {
            let at = 48 + i.index(bytes.len() - 48);
            bytes[at] ^= v;
        }
        // Random runs of garbage in the ring.
        for (i, run) in smears {
            let at = HEADER_PAGE as usize + i.index(CAPACITY as usize);
            let end = (at + run.len()).min(bytes.len());
            bytes[at..end].copy_from_slice(&run[..end - at]);
        }
        // Blocks with valid checksums but arbitrary record bytes.
        for (slot, raw, records) in planted {
            let b = block_with_raw(&raw, records, (0, 1000), *id);
            let at = (HEADER_PAGE + slot * BLOCK_ALIGN) as usize;
            let end = (at + b.len()).min(bytes.len());
            bytes[at..end].copy_from_slice(&b[..end - at]);
        }
        if let Some(i) = new_len {
            bytes.truncate(i.index(bytes.len() + 1));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("damaged.spool");
        std::fs::write(&path, &bytes).expect("write");
        exercise_file(&path);
    }
}
