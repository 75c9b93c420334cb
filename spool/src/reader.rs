//! Lock-free readers: they map the file read-only and validate everything.

use std::fs::File;
use std::io::Read;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use crate::block::{decompress_into, next_record, validate_records, Block};
use crate::error::SpoolError;
use crate::format::{
    bloom_test, BlockHeader, FileHeader, HeaderError, HeaderHints, BLOCK_ALIGN, BLOCK_HEADER_LEN,
    BLOCK_MAGIC, BLOOM_BYTES, HEADER_PAGE,
};
use crate::record::RecordRef;
use crate::scan::{read_header, scan_ring, HeaderRead, RingSource};
use crate::TimeRange;

/// Metadata of one valid block, from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    /// Sequence number (unique, monotonic).
    pub seq: u64,
    /// Offset of the block header from the start of the ring area.
    pub offset: u64,
    /// Smallest record timestamp (ns).
    pub first_ts: i64,
    /// Largest record timestamp (ns).
    pub last_ts: i64,
    /// Number of records.
    pub records: u32,
    /// Decompressed payload size.
    pub raw_len: u32,
    /// Compressed payload size.
    pub compressed_len: u32,
    bloom: [u8; BLOOM_BYTES],
}

impl BlockInfo {
    fn from_header(offset: u64, h: &BlockHeader) -> Self {
        BlockInfo {
            seq: h.seq,
            offset,
            first_ts: h.first_ts,
            last_ts: h.last_ts,
            records: h.records,
            raw_len: h.raw_len,
            compressed_len: h.compressed_len,
            bloom: h.bloom,
        }
    }

    /// False only if no record of the block has `key` (bloom filter: false
    /// positives possible, no false negatives).
    pub fn may_contain_key(&self, key: u64) -> bool {
        bloom_test(&self.bloom, key)
    }

    /// True if some record timestamp of the block may fall in `range`.
    pub fn overlaps(&self, range: &TimeRange) -> bool {
        self.first_ts < range.end_ns && self.last_ts >= range.start_ns
    }

    /// Bytes of ring area the block occupies.
    pub fn extent(&self) -> u64 {
        crate::format::align_up(BLOCK_HEADER_LEN as u64 + u64::from(self.compressed_len))
    }
}

/// Outcome of [`SpoolReader::scan`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Blocks read and decoded.
    pub blocks_scanned: usize,
    /// Blocks skipped by time range or bloom filter without reading them.
    pub blocks_skipped: usize,
    /// Blocks whose payload failed validation (not returned).
    pub corrupt_blocks: usize,
    /// Blocks overwritten by the writer since the last refresh (not returned).
    pub overwritten_blocks: usize,
    /// Records passed to the callback.
    pub records: u64,
}

/// Summary of a spool as seen by a reader.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolInfo {
    /// Ring capacity from the header.
    pub capacity: u64,
    /// Ring bytes occupied by valid blocks.
    pub used_bytes: u64,
    /// Number of valid blocks.
    pub blocks: usize,
    /// Records in valid blocks.
    pub records: u64,
    /// Smallest record timestamp.
    pub oldest_ts: Option<i64>,
    /// Largest record timestamp.
    pub newest_ts: Option<i64>,
    /// Oldest block sequence.
    pub oldest_seq: Option<u64>,
    /// Newest block sequence.
    pub newest_seq: Option<u64>,
    /// Raw (decompressed) bytes in valid blocks.
    pub raw_bytes: u64,
    /// Compressed payload bytes in valid blocks.
    pub compressed_bytes: u64,
    /// `raw_bytes / compressed_bytes` (0 when empty).
    pub compression_ratio: f64,
    /// Block candidates whose header failed validation at the last scan.
    pub corrupt_blocks: usize,
    /// The file is shorter than its header says; only the part present was read.
    pub truncated: bool,
    /// File length at the last open/refresh.
    pub file_len: u64,
    /// Random id of this spool file (salts block header checksums).
    pub file_id: u64,
    /// Creation time of the spool (unix ns).
    pub created_ns: i64,
    /// Writer generation from the header hints (`None` if the hints are torn).
    pub generation: Option<u64>,
}

/// Reads of the spool file by offset (`pread`), not through a mapping: a
/// file that shrinks under the reader (`truncate`, a damaged disk) reads as
/// zeros past its end, where no block is valid, instead of raising SIGBUS.
struct ReadMap {
    file: File,
}

impl ReadMap {
    /// Copies `[off, off + dst.len())` of the file; bytes past its end (it
    /// shrank) read as zeros. The writer (possibly another process) may
    /// modify these bytes concurrently: every copy is validated (header
    /// checksum, sequence, payload checksum, re-read of the header) before
    /// use, so a torn copy is detected and discarded.
    fn copy(&self, off: u64, dst: &mut [u8]) {
        use std::os::unix::fs::FileExt;
        let mut done = 0;
        while done < dst.len() {
            match self.file.read_at(&mut dst[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // An I/O error reads as no data: nothing there validates.
                Err(_) => break,
            }
        }
        dst[done..].fill(0);
    }

    /// One aligned 8-byte word (a block's magic).
    fn load_u64(&self, off: u64) -> u64 {
        let mut word = [0u8; 8];
        self.copy(off, &mut word);
        u64::from_ne_bytes(word)
    }
}

struct RawSource<'a> {
    map: &'a ReadMap,
    ring_len: u64,
}

impl RingSource for RawSource<'_> {
    fn ring_len(&self) -> u64 {
        self.ring_len
    }
    fn has_magic(&self, off: u64) -> bool {
        self.map.load_u64(HEADER_PAGE + off) == u64::from_ne_bytes(BLOCK_MAGIC)
    }
    fn copy_out(&self, off: u64, dst: &mut [u8]) {
        self.map.copy(HEADER_PAGE + off, dst);
    }
}

/// A reader of a spool file. Takes no lock; tolerates a concurrent writer.
/// Cheap to clone (the open file is shared); `Send + Sync`.
#[derive(Clone)]
pub struct SpoolReader {
    path: PathBuf,
    map: Arc<ReadMap>,
    header: FileHeader,
    salt: u32,
    ring_len: u64,
    file_len: u64,
    hints: Option<HeaderHints>,
    blocks: Vec<BlockInfo>,
    corrupt: usize,
}

impl std::fmt::Debug for SpoolReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolReader")
            .field("path", &self.path)
            .field("capacity", &self.header.capacity)
            .field("ring_len", &self.ring_len)
            .field("blocks", &self.blocks.len())
            .field("corrupt", &self.corrupt)
            .finish_non_exhaustive()
    }
}

struct Opened {
    map: ReadMap,
    header: FileHeader,
    ring_len: u64,
    file_len: u64,
}

fn open_map(path: &Path) -> Result<Opened, SpoolError> {
    let io = |e| SpoolError::io(path, e);
    let file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let not_a_spool = |reason: String| SpoolError::NotASpool {
        path: path.to_path_buf(),
        reason,
    };
    if file_len < HEADER_PAGE {
        return Err(not_a_spool(format!(
            "file is {file_len} bytes, shorter than the {HEADER_PAGE}-byte header page"
        )));
    }
    let mut page = vec![0u8; HEADER_PAGE as usize];
    (&file).read_exact(&mut page).map_err(io)?;
    let header = match FileHeader::decode_static(&page) {
        Ok(h) => h,
        Err(HeaderError::Empty) => {
            return Err(not_a_spool(
                "header page is empty (spool not initialized yet)".into(),
            ))
        }
        Err(HeaderError::BadMagic) => return Err(not_a_spool("bad magic".into())),
        Err(HeaderError::Version(v)) => return Err(SpoolError::UnsupportedVersion(v)),
        Err(HeaderError::Checksum) => {
            return Err(SpoolError::Corrupt {
                offset: 0,
                seq: None,
                reason: "header page checksum mismatch".into(),
            })
        }
        Err(HeaderError::Invalid(reason)) => {
            return Err(SpoolError::Corrupt {
                offset: 0,
                seq: None,
                reason,
            })
        }
    };
    let present = file_len - HEADER_PAGE;
    let ring_len = header.capacity.min(present) / BLOCK_ALIGN * BLOCK_ALIGN;
    Ok(Opened {
        map: ReadMap { file },
        header,
        ring_len,
        file_len,
    })
}

impl SpoolReader {
    /// Opens a spool for reading and scans its block headers.
    ///
    /// A file shorter than its header says is opened anyway: only the part
    /// present is read and [`SpoolInfo::truncated`] is set.
    pub fn open(path: &Path) -> Result<SpoolReader, SpoolError> {
        let o = open_map(path)?;
        let mut r = SpoolReader {
            path: path.to_path_buf(),
            salt: o.header.salt(),
            header: o.header,
            map: Arc::new(o.map),
            ring_len: o.ring_len,
            file_len: o.file_len,
            hints: None,
            blocks: Vec::new(),
            corrupt: 0,
        };
        r.rescan();
        Ok(r)
    }

    /// Re-scans the ring to pick up blocks written since open (and drop
    /// overwritten ones). Re-maps the file if its length or identity changed.
    pub fn refresh(&mut self) -> Result<(), SpoolError> {
        let len = std::fs::metadata(&self.path)
            .map_err(|e| SpoolError::io(&self.path, e))?
            .len();
        let mut page = [0u8; 64];
        if len >= HEADER_PAGE {
            self.map.copy(0, &mut page);
        }
        let same_id = crate::format::le_u64(&page[24..32]) == self.header.file_id;
        if len != self.file_len || !same_id {
            let o = open_map(&self.path)?;
            self.salt = o.header.salt();
            self.header = o.header;
            self.map = Arc::new(o.map);
            self.ring_len = o.ring_len;
            self.file_len = o.file_len;
        }
        self.rescan();
        Ok(())
    }

    fn source(&self) -> RawSource<'_> {
        RawSource {
            map: &self.map,
            ring_len: self.ring_len,
        }
    }

    fn rescan(&mut self) {
        let mut page = vec![0u8; HEADER_PAGE as usize];
        self.map.copy(0, &mut page);
        self.hints = HeaderHints::decode(&page);
        // Torn or damaged hints: scan the whole ring.
        let limit = self.hints.map_or(self.ring_len, |h| h.high_water);
        let scan = scan_ring(&self.source(), limit, self.salt, false, true);
        self.corrupt = scan.corrupt.len();
        self.blocks = scan
            .blocks
            .iter()
            .map(|c| BlockInfo::from_header(c.offset, &c.header))
            .collect();
    }

    /// Valid blocks, oldest first (by sequence).
    pub fn blocks(&self) -> &[BlockInfo] {
        &self.blocks
    }

    /// Path of the spool file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies the block out, verifies header, sequence and payload checksum,
    /// decompresses and validates it.
    ///
    /// Returns [`SpoolError::Overwritten`] if the writer replaced the block
    /// since it was listed (including mid-read), [`SpoolError::Corrupt`] if
    /// the data is damaged.
    pub fn read_block(&self, info: &BlockInfo) -> Result<Block, SpoolError> {
        let mut comp = Vec::new();
        let mut raw = Vec::new();
        let h = self.load_block(info, &mut comp, &mut raw)?;
        validate_records(&raw, &h).map_err(|reason| SpoolError::Corrupt {
            offset: info.offset,
            seq: Some(info.seq),
            reason: reason.into(),
        })?;
        Ok(Block {
            seq: h.seq,
            offset: info.offset,
            first_ts: h.first_ts,
            last_ts: h.last_ts,
            records: h.records,
            raw,
        })
    }

    /// Loads and decompresses the block into the given buffers.
    fn load_block(
        &self,
        info: &BlockInfo,
        comp: &mut Vec<u8>,
        raw: &mut Vec<u8>,
    ) -> Result<BlockHeader, SpoolError> {
        let corrupt = |reason: &str| SpoolError::Corrupt {
            offset: info.offset,
            seq: Some(info.seq),
            reason: reason.into(),
        };
        let end = info
            .offset
            .checked_add(BLOCK_HEADER_LEN as u64 + u64::from(info.compressed_len));
        if !info.offset.is_multiple_of(BLOCK_ALIGN) || end.is_none_or(|e| e > self.ring_len) {
            return Err(corrupt("block extent outside this spool"));
        }
        let src = self.source();
        let overwritten = SpoolError::Overwritten { seq: info.seq };
        // 1. Header copy: valid and still the block we listed?
        let h = match read_header(&src, info.offset, self.salt, true) {
            HeaderRead::Valid(h)
                if h.seq == info.seq && h.compressed_len == info.compressed_len =>
            {
                h
            }
            _ => return Err(overwritten),
        };
        // 2. Payload copy.
        comp.resize(h.compressed_len as usize, 0);
        src.copy_out(info.offset + BLOCK_HEADER_LEN as u64, comp);
        // 3. Header again: the writer clears the magic before touching any
        //    payload byte, so an unchanged header means an untorn copy.
        fence(Ordering::Acquire);
        match read_header(&src, info.offset, self.salt, true) {
            HeaderRead::Valid(h2) if h2 == h => {}
            _ => return Err(overwritten),
        }
        // 4. Verify and decompress the private copy.
        if crc32fast::hash(comp) != h.payload_crc {
            return Err(corrupt("payload checksum mismatch"));
        }
        decompress_into(comp, h.raw_len as usize, raw).map_err(corrupt)?;
        Ok(h)
    }

    /// Calls `f` for every record with a timestamp in `range` (and carrying
    /// `key`, if given), in block order then record order. Blocks are skipped
    /// by their time bounds and bloom filter; overwritten and corrupt blocks
    /// are counted and skipped, never returned. `f` returning
    /// `ControlFlow::Break` stops the scan.
    pub fn scan(
        &self,
        range: TimeRange,
        key: Option<u64>,
        mut f: impl FnMut(RecordRef<'_>) -> ControlFlow<()>,
    ) -> Result<ScanReport, SpoolError> {
        let mut rep = ScanReport::default();
        let mut comp = Vec::new();
        let mut raw = Vec::new();
        for info in &self.blocks {
            if !info.overlaps(&range) || key.is_some_and(|k| !info.may_contain_key(k)) {
                rep.blocks_skipped += 1;
                continue;
            }
            let h = match self.load_block(info, &mut comp, &mut raw) {
                Ok(h) => h,
                Err(SpoolError::Overwritten { .. }) => {
                    rep.overwritten_blocks += 1;
                    continue;
                }
                Err(SpoolError::Corrupt { .. }) => {
                    rep.corrupt_blocks += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            rep.blocks_scanned += 1;
            let whole = range.start_ns <= h.first_ts && h.last_ts < range.end_ns;
            let (mut pos, mut prev, mut remaining) = (0usize, 0i64, h.records);
            loop {
                match next_record(
                    &raw,
                    &mut pos,
                    &mut prev,
                    &mut remaining,
                    h.first_ts,
                    h.last_ts,
                ) {
                    Ok(Some(r)) => {
                        if (whole || range.contains(r.ts_ns))
                            && key.is_none_or(|k| r.keys.contains(k))
                        {
                            rep.records += 1;
                            if f(r).is_break() {
                                return Ok(rep);
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        rep.corrupt_blocks += 1;
                        break;
                    }
                }
            }
        }
        Ok(rep)
    }

    /// Summary of the spool as of the last open/refresh.
    pub fn info(&self) -> SpoolInfo {
        let b = &self.blocks;
        let raw_bytes: u64 = b.iter().map(|i| u64::from(i.raw_len)).sum();
        let compressed_bytes: u64 = b.iter().map(|i| u64::from(i.compressed_len)).sum();
        SpoolInfo {
            capacity: self.header.capacity,
            used_bytes: b.iter().map(BlockInfo::extent).sum(),
            blocks: b.len(),
            records: b.iter().map(|i| u64::from(i.records)).sum(),
            oldest_ts: b.iter().map(|i| i.first_ts).min(),
            newest_ts: b.iter().map(|i| i.last_ts).max(),
            oldest_seq: b.first().map(|i| i.seq),
            newest_seq: b.last().map(|i| i.seq),
            raw_bytes,
            compressed_bytes,
            compression_ratio: if compressed_bytes == 0 {
                0.0
            } else {
                raw_bytes as f64 / compressed_bytes as f64
            },
            corrupt_blocks: self.corrupt,
            truncated: self.ring_len < self.header.capacity,
            file_len: self.file_len,
            file_id: self.header.file_id,
            created_ns: self.header.created_ns,
            generation: self.hints.map(|h| h.generation),
        }
    }
}
