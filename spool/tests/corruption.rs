//! Corruption test: flip random bytes in block headers and payloads, and
//! truncate the file; damaged blocks must be reported, undamaged ones
//! returned intact, and nothing may panic.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};
use vigil_spool::{
    BlockInfo, SpoolConfig, SpoolError, SpoolReader, SpoolWriter, TimeRange, BLOCK_ALIGN,
    BLOCK_HEADER_LEN, HEADER_PAGE,
};

const CAPACITY: u64 = 1 << 20;

fn cfg() -> SpoolConfig {
    SpoolConfig {
        capacity_bytes: CAPACITY,
        block_target_bytes: 4096,
        max_batch_age: Duration::from_secs(3600),
        zstd_level: 1,
    }
}

/// Writes a spool that fills most of the ring without wrapping.
fn build(path: &Path) -> (Vec<BlockInfo>, BTreeMap<u64, Vec<u64>>) {
    let (mut w, _) = SpoolWriter::open_or_create(path, cfg()).expect("create");
    let mut buf = Vec::new();
    for c in 1..=12_000u64 {
        common::make_record(c, &mut buf);
        w.append(c as i64 * 1000, &[c], &buf).expect("append");
    }
    drop(w);
    let r = SpoolReader::open(path).expect("open");
    let mut content = BTreeMap::new();
    for b in r.blocks() {
        content.insert(b.seq, counters(&r, b).expect("baseline block reads"));
    }
    assert!(r.blocks().len() > 50);
    assert_eq!(r.blocks()[0].seq, 1, "baseline must not wrap");
    (r.blocks().to_vec(), content)
}

fn counters(r: &SpoolReader, b: &BlockInfo) -> Result<Vec<u64>, SpoolError> {
    let block = r.read_block(b)?;
    let mut out = Vec::new();
    for rec in block.records() {
        let rec = rec?;
        out.push(common::check_record(rec.data).expect("returned records are intact"));
    }
    Ok(out)
}

fn scan_all(r: &SpoolReader) -> (Vec<u64>, vigil_spool::ScanReport) {
    let mut out = Vec::new();
    let rep = r
        .scan(TimeRange::all(), None, |rec| {
            out.push(common::check_record(rec.data).expect("scan returns intact records"));
            ControlFlow::Continue(())
        })
        .expect("scan");
    (out, rep)
}

#[test]
fn flipped_bytes_are_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let orig = dir.path().join("orig.spool");
    let (blocks, content) = build(&orig);
    let original = std::fs::read(&orig).expect("read");
    let mut rng = StdRng::seed_from_u64(0xBADC0DE);
    let trials = if common::soak() { 400 } else { 24 };
    for trial in 0..trials {
        let mut bytes = original.clone();
        let mut header_hit = BTreeSet::new();
        let mut payload_hit = BTreeSet::new();
        for _ in 0..rng.gen_range(1..=6) {
            let b = &blocks[rng.gen_range(0..blocks.len())];
            // Anything after the magic and inside header + payload is covered
            // by a checksum (the magic itself just hides the block).
            let rel = rng.gen_range(8..BLOCK_HEADER_LEN as u64 + u64::from(b.compressed_len));
            let at = (HEADER_PAGE + b.offset + rel) as usize;
            bytes[at] ^= rng.gen_range(1..=255u8);
            if rel < BLOCK_HEADER_LEN as u64 {
                header_hit.insert(b.seq);
            } else {
                payload_hit.insert(b.seq);
            }
        }
        payload_hit.retain(|s| !header_hit.contains(s));
        let path = dir.path().join(format!("t{trial}.spool"));
        std::fs::write(&path, &bytes).expect("write");

        let r = SpoolReader::open(&path).expect("open damaged spool");
        assert_eq!(r.info().corrupt_blocks, header_hit.len(), "trial {trial}");
        let listed: BTreeSet<u64> = r.blocks().iter().map(|b| b.seq).collect();
        let expected_listed: BTreeSet<u64> = content
            .keys()
            .copied()
            .filter(|s| !header_hit.contains(s))
            .collect();
        assert_eq!(listed, expected_listed, "trial {trial}");
        for b in r.blocks() {
            match counters(&r, b) {
                Ok(got) => {
                    assert!(
                        !payload_hit.contains(&b.seq),
                        "trial {trial}: damaged block returned"
                    );
                    assert_eq!(&got, &content[&b.seq], "trial {trial}");
                }
                Err(SpoolError::Corrupt { seq, .. }) => {
                    assert!(
                        payload_hit.contains(&b.seq),
                        "trial {trial}: intact block rejected"
                    );
                    assert_eq!(seq, Some(b.seq));
                }
                Err(e) => panic!("trial {trial}: unexpected {e}"),
            }
        }
        let (got, rep) = scan_all(&r);
        assert_eq!(rep.corrupt_blocks, payload_hit.len(), "trial {trial}");
        let want: Vec<u64> = content
            .iter()
            .filter(|(s, _)| !header_hit.contains(s) && !payload_hit.contains(s))
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        assert_eq!(got, want, "trial {trial}");

        // Writer recovery verifies payloads too, reports and clears the damage.
        let (w, rep) = SpoolWriter::open_or_create(&path, cfg()).expect("recover");
        assert_eq!(
            rep.corrupt_blocks,
            header_hit.len() + payload_hit.len(),
            "trial {trial}"
        );
        assert_eq!(
            rep.valid_blocks,
            content.len() - rep.corrupt_blocks,
            "trial {trial}"
        );
        drop(w);
        let r = SpoolReader::open(&path).expect("reopen");
        assert_eq!(r.info().corrupt_blocks, 0);
        assert_eq!(scan_all(&r).0, want, "trial {trial}");
        std::fs::remove_file(&path).expect("cleanup");
    }
}

#[test]
fn truncated_file_is_read_partially() {
    let dir = tempfile::tempdir().expect("tempdir");
    let orig = dir.path().join("orig.spool");
    let (blocks, content) = build(&orig);
    let original = std::fs::read(&orig).expect("read");
    let used_end = blocks
        .iter()
        .map(|b| b.offset + b.extent())
        .max()
        .expect("blocks");
    let mut rng = StdRng::seed_from_u64(0x7A1C);
    for trial in 0..20 {
        let len = HEADER_PAGE + rng.gen_range(0..used_end);
        let path = dir.path().join(format!("t{trial}.spool"));
        std::fs::write(&path, &original[..len as usize]).expect("write");
        let present = (len - HEADER_PAGE) / BLOCK_ALIGN * BLOCK_ALIGN;
        let fits = |b: &BlockInfo| {
            b.offset + BLOCK_HEADER_LEN as u64 + u64::from(b.compressed_len) <= present
        };
        let cut = blocks
            .iter()
            .filter(|b| b.offset + BLOCK_HEADER_LEN as u64 <= present && !fits(b))
            .count();

        let r = SpoolReader::open(&path).expect("open truncated");
        let info = r.info();
        assert!(info.truncated);
        assert_eq!(info.file_len, len);
        assert_eq!(info.corrupt_blocks, cut, "trial {trial}");
        let want: Vec<u64> = blocks
            .iter()
            .filter(|b| fits(b))
            .flat_map(|b| content[&b.seq].iter().copied())
            .collect();
        assert_eq!(scan_all(&r).0, want, "trial {trial}");

        // The writer extends the file back (with zeros) and keeps what is
        // there; it sees the exact bytes, not an aligned prefix.
        let exact = len - HEADER_PAGE;
        let intact = |b: &BlockInfo| {
            b.offset + BLOCK_HEADER_LEN as u64 + u64::from(b.compressed_len) <= exact
        };
        let torn = blocks
            .iter()
            .filter(|b| b.offset + 8 <= exact && !intact(b))
            .count();
        let (w, rep) = SpoolWriter::open_or_create(&path, cfg()).expect("repair");
        assert_eq!(rep.repaired_truncation, Some(len));
        assert_eq!(rep.corrupt_blocks, torn, "trial {trial}");
        drop(w);
        assert_eq!(
            std::fs::metadata(&path).expect("stat").len(),
            HEADER_PAGE + CAPACITY
        );
        let r = SpoolReader::open(&path).expect("reopen");
        assert!(!r.info().truncated);
        let want: Vec<u64> = blocks
            .iter()
            .filter(|b| intact(b))
            .flat_map(|b| content[&b.seq].iter().copied())
            .collect();
        assert_eq!(scan_all(&r).0, want, "trial {trial}");
    }
    // Shorter than the header page: an error, not a panic.
    for len in [0usize, 1, 8, 60, 83, 84, 100, 4095] {
        let path = dir.path().join(format!("short{len}.spool"));
        std::fs::write(&path, &original[..len]).expect("write");
        assert!(SpoolReader::open(&path).is_err(), "len {len}");
        let _ = SpoolWriter::open_or_create(&path, cfg());
    }
}

#[test]
fn damaged_header_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let orig = dir.path().join("orig.spool");
    let (_, content) = build(&orig);
    let original = std::fs::read(&orig).expect("read");
    let total: usize = content.values().map(Vec::len).sum();
    for at in 0..92usize {
        let mut bytes = original.clone();
        bytes[at] ^= 0x10;
        let path = dir.path().join("h.spool");
        std::fs::write(&path, &bytes).expect("write");
        match SpoolReader::open(&path) {
            // Damage in the hints (bytes 48..84) is tolerated: they are hints.
            Ok(r) => {
                assert!(at >= 48, "static header damage at {at} must be detected");
                assert_eq!(scan_all(&r).0.len(), total);
            }
            Err(
                SpoolError::NotASpool { .. }
                | SpoolError::Corrupt { .. }
                | SpoolError::UnsupportedVersion(_),
            ) => assert!(at < 48, "hint damage at {at} must not be fatal"),
            Err(e) => panic!("unexpected {e}"),
        }
        match SpoolWriter::open_or_create(&path, cfg()) {
            Ok((_, rep)) => {
                assert!(at >= 48);
                assert_eq!(rep.valid_blocks, content.len());
            }
            Err(_) => assert!(at < 48),
        }
    }
}
