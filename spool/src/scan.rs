//! Ring scanning shared by writer recovery and readers.

use std::collections::BTreeMap;
use std::sync::atomic::{fence, Ordering};

use crate::format::{BlockHeader, BLOCK_ALIGN, BLOCK_HEADER_LEN, BLOCK_MAGIC};

/// Read access to the ring area (offsets are relative to the ring start).
pub(crate) trait RingSource {
    /// Bytes of ring area that can be read.
    fn ring_len(&self) -> u64;
    /// True if the 8 bytes at `off` (8-aligned, in bounds) hold the block
    /// magic. Implementations use a single volatile 8-byte load.
    fn has_magic(&self, off: u64) -> bool;
    /// Copies `[off, off + dst.len())` out of the ring. In bounds.
    fn copy_out(&self, off: u64, dst: &mut [u8]);
    /// CRC32 of `[off, off + len)`. In bounds.
    fn crc(&self, off: u64, len: usize, scratch: &mut Vec<u8>) -> u32 {
        scratch.resize(len, 0);
        self.copy_out(off, scratch);
        crc32fast::hash(scratch)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub offset: u64,
    pub header: BlockHeader,
}

#[derive(Debug, Default)]
pub(crate) struct RingScan {
    /// Valid, non-overlapping blocks, ordered by sequence (oldest first).
    pub blocks: Vec<Candidate>,
    /// Offsets with block magic whose header or payload failed validation.
    pub corrupt: Vec<(u64, &'static str)>,
    /// Valid blocks dropped because a newer valid block overlaps them.
    pub stale: Vec<u64>,
}

pub(crate) enum HeaderRead {
    /// No magic (or it vanished while reading: being overwritten).
    Absent,
    Valid(BlockHeader),
    Bad(&'static str),
}

/// Reads and validates the block header at `off`. With `concurrent`, a
/// header that changes between two copies is treated as being rewritten
/// (absent), not as corrupt.
pub(crate) fn read_header(
    src: &dyn RingSource,
    off: u64,
    salt: u32,
    concurrent: bool,
) -> HeaderRead {
    if off + BLOCK_HEADER_LEN as u64 > src.ring_len() {
        return HeaderRead::Absent;
    }
    for _ in 0..3 {
        if !src.has_magic(off) {
            return HeaderRead::Absent;
        }
        // Pairs with the writer's release fence before it stores the magic:
        // having seen the magic, we see the fields written before it.
        fence(Ordering::Acquire);
        let mut a = [0u8; BLOCK_HEADER_LEN];
        src.copy_out(off, &mut a);
        let reason = match BlockHeader::decode(&a, Some(salt)) {
            Ok(h) => return HeaderRead::Valid(h),
            Err(r) => r,
        };
        if !concurrent {
            return HeaderRead::Bad(reason);
        }
        if a[..8] != BLOCK_MAGIC {
            // The magic vanished between the check and the copy: the block is
            // being overwritten. Re-check from the top.
            continue;
        }
        fence(Ordering::Acquire);
        let mut b = [0u8; BLOCK_HEADER_LEN];
        src.copy_out(off, &mut b);
        if a == b {
            return HeaderRead::Bad(reason);
        }
        std::thread::yield_now();
    }
    HeaderRead::Absent
}

/// Scans the ring below `limit` (the high-water mark) at alignment steps for
/// block headers.
///
/// A candidate is valid when its header checksum matches, its extent fits in
/// the ring and (with `verify_payload`) its payload checksum matches. After a
/// valid block the scan continues at the block's end; otherwise it steps by
/// [`BLOCK_ALIGN`]. Overlapping valid blocks are resolved in favour of the
/// newer (higher sequence) one.
pub(crate) fn scan_ring(
    src: &dyn RingSource,
    limit: u64,
    salt: u32,
    verify_payload: bool,
    concurrent: bool,
) -> RingScan {
    let ring_len = src.ring_len();
    let mut out = RingScan::default();
    let mut cands = Vec::new();
    let mut scratch = Vec::new();
    let mut pos = 0u64;
    let limit = limit.min(ring_len);
    while pos + BLOCK_HEADER_LEN as u64 <= limit {
        match read_header(src, pos, salt, concurrent) {
            HeaderRead::Absent => pos += BLOCK_ALIGN,
            HeaderRead::Bad(reason) => {
                out.corrupt.push((pos, reason));
                pos += BLOCK_ALIGN;
            }
            HeaderRead::Valid(h) => {
                let end = pos + BLOCK_HEADER_LEN as u64 + u64::from(h.compressed_len);
                if end > ring_len {
                    out.corrupt
                        .push((pos, "block extends past the end of the ring"));
                    pos += BLOCK_ALIGN;
                    continue;
                }
                if verify_payload {
                    let crc = src.crc(
                        pos + BLOCK_HEADER_LEN as u64,
                        h.compressed_len as usize,
                        &mut scratch,
                    );
                    if crc != h.payload_crc {
                        out.corrupt.push((pos, "payload checksum mismatch"));
                        pos += BLOCK_ALIGN;
                        continue;
                    }
                }
                cands.push(Candidate {
                    offset: pos,
                    header: h,
                });
                pos += h.extent();
            }
        }
    }
    let (blocks, stale) = resolve_overlaps(cands);
    out.blocks = blocks;
    out.stale = stale;
    out
}

/// Keeps the newest of any overlapping (or same-sequence) blocks. Returns the
/// kept blocks ordered by sequence and the offsets of dropped ones.
pub(crate) fn resolve_overlaps(mut cands: Vec<Candidate>) -> (Vec<Candidate>, Vec<u64>) {
    cands.sort_by_key(|c| std::cmp::Reverse(c.header.seq));
    let mut taken: BTreeMap<u64, u64> = BTreeMap::new();
    let mut kept = Vec::with_capacity(cands.len());
    let mut stale = Vec::new();
    let mut last_seq = None;
    for c in cands {
        let (s, e) = (c.offset, c.offset + c.header.extent());
        let overlaps = taken
            .range(..e)
            .next_back()
            .is_some_and(|(_, &prev_end)| prev_end > s);
        if overlaps || last_seq == Some(c.header.seq) {
            stale.push(c.offset);
            continue;
        }
        last_seq = Some(c.header.seq);
        taken.insert(s, e);
        kept.push(c);
    }
    kept.reverse();
    (kept, stale)
}
