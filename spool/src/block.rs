//! Decoded blocks and the standalone (fuzzable) block decoder.

use std::cell::RefCell;

use crate::error::SpoolError;
use crate::format::{salt_of, BlockHeader, BLOCK_HEADER_LEN};
use crate::record::{self, RecordRef};

/// A decompressed, verified block. Records borrow from it (zero-copy).
#[derive(Clone)]
pub struct Block {
    pub(crate) seq: u64,
    pub(crate) offset: u64,
    pub(crate) first_ts: i64,
    pub(crate) last_ts: i64,
    pub(crate) records: u32,
    pub(crate) raw: Vec<u8>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("seq", &self.seq)
            .field("offset", &self.offset)
            .field("first_ts", &self.first_ts)
            .field("last_ts", &self.last_ts)
            .field("records", &self.records)
            .field("raw_len", &self.raw.len())
            .finish()
    }
}

impl Block {
    /// Sequence number of the block.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// Smallest record timestamp in the block.
    pub fn first_ts(&self) -> i64 {
        self.first_ts
    }
    /// Largest record timestamp in the block.
    pub fn last_ts(&self) -> i64 {
        self.last_ts
    }
    /// Number of records.
    pub fn record_count(&self) -> u32 {
        self.records
    }
    /// Decompressed payload size.
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }
    /// Iterates the records in the order they were appended. Blocks returned
    /// by [`crate::SpoolReader::read_block`] and [`decode_block_payload`] were
    /// fully validated, so the iterator yields no errors for them.
    pub fn records(&self) -> Records<'_> {
        Records {
            buf: &self.raw,
            pos: 0,
            prev_ts: 0,
            remaining: self.records,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            seq: self.seq,
            offset: self.offset,
            failed: false,
        }
    }
}

/// Iterator over the records of a [`Block`].
pub struct Records<'a> {
    buf: &'a [u8],
    pos: usize,
    prev_ts: i64,
    remaining: u32,
    first_ts: i64,
    last_ts: i64,
    seq: u64,
    offset: u64,
    failed: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordRef<'a>, SpoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match next_record(
            self.buf,
            &mut self.pos,
            &mut self.prev_ts,
            &mut self.remaining,
            self.first_ts,
            self.last_ts,
        ) {
            Ok(r) => r.map(Ok),
            Err(reason) => {
                self.failed = true;
                Some(Err(SpoolError::Corrupt {
                    offset: self.offset,
                    seq: Some(self.seq),
                    reason: reason.to_string(),
                }))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.failed {
            (0, Some(0))
        } else {
            (0, Some(self.remaining as usize + 1))
        }
    }
}

/// Decodes the next record, checking it against the header's bounds; at the
/// end, checks that the payload was consumed exactly.
#[inline]
pub(crate) fn next_record<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    prev_ts: &mut i64,
    remaining: &mut u32,
    first_ts: i64,
    last_ts: i64,
) -> Result<Option<RecordRef<'a>>, &'static str> {
    if *remaining == 0 {
        return if *pos == buf.len() {
            Ok(None)
        } else {
            Err("trailing bytes after the last record")
        };
    }
    let r = record::decode(buf, pos, prev_ts)?;
    if r.ts_ns < first_ts || r.ts_ns > last_ts {
        return Err("record timestamp outside the block's time bounds");
    }
    *remaining -= 1;
    Ok(Some(r))
}

/// Validates every record of a decompressed payload against its header.
pub(crate) fn validate_records(raw: &[u8], h: &BlockHeader) -> Result<(), &'static str> {
    let (mut pos, mut prev, mut remaining) = (0usize, 0i64, h.records);
    while next_record(
        raw,
        &mut pos,
        &mut prev,
        &mut remaining,
        h.first_ts,
        h.last_ts,
    )?
    .is_some()
    {}
    Ok(())
}

thread_local! {
    static DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Decompresses `comp` into `out`, which ends up exactly `raw_len` bytes long.
/// Output is bounded by `raw_len` (itself bounded by the header decoder).
pub(crate) fn decompress_into(
    comp: &[u8],
    raw_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    // Reject before allocating: the frame must declare exactly raw_len.
    match zstd::zstd_safe::get_frame_content_size(comp) {
        Ok(Some(n)) if n == raw_len as u64 => {}
        Ok(Some(_)) => return Err("zstd frame size differs from header"),
        Ok(None) => return Err("zstd frame does not declare its size"),
        Err(_) => return Err("payload is not a zstd frame"),
    }
    if out.len() < raw_len {
        out.resize(raw_len, 0);
    } else {
        out.truncate(raw_len);
    }
    let n = DCTX.with(|cell| -> Result<usize, &'static str> {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot =
                Some(zstd::bulk::Decompressor::new().map_err(|_| "cannot create zstd context")?);
        }
        let dctx = slot.as_mut().ok_or("cannot create zstd context")?;
        dctx.decompress_to_buffer(comp, &mut out[..])
            .map_err(|_| "payload does not decompress")
    })?;
    if n != raw_len {
        return Err("decompressed length differs from header");
    }
    Ok(())
}

/// How [`decode_block_payload`] treats checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumPolicy {
    /// Verify the block header checksum (salted with the spool's file id,
    /// see [`crate::SpoolInfo::file_id`]) and the payload checksum.
    Verify { file_id: u64 },
    /// Skip both checksums (fuzzing, forensics). Structure is still validated.
    Skip,
}

/// Decodes `bytes` as one block (128-byte header followed by the payload).
///
/// Arbitrary input returns an error, never panics, and never allocates more
/// than the header's raw length (itself capped at [`crate::MAX_RAW_BLOCK`]).
/// Every record is validated before the block is returned.
pub fn decode_block_payload(bytes: &[u8], checksums: ChecksumPolicy) -> Result<Block, SpoolError> {
    let corrupt = |seq: Option<u64>, reason: &str| SpoolError::Corrupt {
        offset: 0,
        seq,
        reason: reason.to_string(),
    };
    let hb: &[u8; BLOCK_HEADER_LEN] = bytes
        .get(..BLOCK_HEADER_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt(None, "shorter than a block header"))?;
    let salt = match checksums {
        ChecksumPolicy::Verify { file_id } => Some(salt_of(file_id)),
        ChecksumPolicy::Skip => None,
    };
    let h = BlockHeader::decode(hb, salt).map_err(|r| corrupt(None, r))?;
    let comp = bytes
        .get(BLOCK_HEADER_LEN..BLOCK_HEADER_LEN + h.compressed_len as usize)
        .ok_or_else(|| corrupt(Some(h.seq), "payload truncated"))?;
    if salt.is_some() && crc32fast::hash(comp) != h.payload_crc {
        return Err(corrupt(Some(h.seq), "payload checksum mismatch"));
    }
    let mut raw = Vec::new();
    decompress_into(comp, h.raw_len as usize, &mut raw).map_err(|r| corrupt(Some(h.seq), r))?;
    validate_records(&raw, &h).map_err(|r| corrupt(Some(h.seq), r))?;
    Ok(Block {
        seq: h.seq,
        offset: 0,
        first_ts: h.first_ts,
        last_ts: h.last_ts,
        records: h.records,
        raw,
    })
}
