//! The single writer: batching, sealing, ring placement and recovery.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use memmap2::{MmapMut, MmapOptions};

use crate::error::SpoolError;
use crate::format::{
    align_up, bloom_insert, BlockHeader, FileHeader, HeaderError, HeaderHints, BLOCK_ALIGN,
    BLOCK_HEADER_LEN, BLOCK_MAGIC, BLOOM_BYTES, HEADER_PAGE, MAX_CAPACITY, MAX_RAW_BLOCK,
    MIN_CAPACITY,
};
use crate::record::{self, MAX_KEYS_PER_RECORD};
use crate::scan::{scan_ring, RingSource};
use crate::sys;

/// Writer configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Bytes of ring area for a new spool (rounded down to 4096). Ignored for
    /// an existing spool, whose header wins.
    pub capacity_bytes: u64,
    /// Raw (uncompressed) batch size at which a block is sealed. Capped so
    /// that no block can exceed a quarter of the ring (and 64 MiB raw).
    pub block_target_bytes: usize,
    /// A batch whose first record is this old is sealed by `seal_if_due`
    /// (call it from a timer), or by `append`, which looks at the clock
    /// every [`AGE_CHECK_RECORDS`] records (every record when zero).
    pub max_batch_age: Duration,
    /// zstd compression level.
    pub zstd_level: i32,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            capacity_bytes: 1 << 30,
            block_target_bytes: 1 << 20,
            max_batch_age: Duration::from_secs(1),
            zstd_level: 1,
        }
    }
}

/// Counters since the writer was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Blocks sealed into the ring.
    pub blocks_written: u64,
    /// Records in sealed blocks.
    pub records_written: u64,
    /// Raw (encoded, uncompressed) bytes in sealed blocks.
    pub raw_bytes: u64,
    /// Compressed payload bytes in sealed blocks.
    pub compressed_bytes: u64,
    /// Older blocks invalidated to make room.
    pub blocks_overwritten: u64,
    /// Records in the open (unsealed) batch.
    pub pending_records: u64,
    /// Raw bytes in the open batch.
    pub pending_bytes: u64,
}

/// What `open_or_create` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The file was created (or an unfinished creation was redone).
    pub created: bool,
    /// Valid blocks recovered.
    pub valid_blocks: usize,
    /// Candidates with block magic that failed validation (torn or damaged).
    /// Their magic has been cleared so they are not reported again.
    pub corrupt_blocks: usize,
    /// Ring offsets of the first (up to 64) corrupt candidates.
    pub corrupt_offsets: Vec<u64>,
    /// Valid blocks overlapped by a newer valid block (dropped, cleared).
    pub stale_blocks: usize,
    /// Records in the valid blocks.
    pub records: u64,
    /// Sequence number the next block will get.
    pub next_seq: u64,
    /// Ring offset the next block will be written at (before wrap checks).
    pub recovered_write_offset: u64,
    /// Write offset hint found in the header page (`None` if its checksum failed).
    pub hint_write_offset: Option<u64>,
    /// Ring capacity in use (from the file header for existing spools).
    pub capacity: u64,
    /// `Some(requested)` when the configured capacity differed from the
    /// existing file's and was ignored.
    pub requested_capacity: Option<u64>,
    /// `Some(previous_len)` when the file was shorter than its header says
    /// and was extended back to full size.
    pub repaired_truncation: Option<u64>,
    /// Writer generation (incremented on every open).
    pub generation: u64,
}

#[derive(Debug, Clone, Copy)]
struct Live {
    offset: u64,
    extent: u64,
}

struct Batch {
    buf: Vec<u8>,
    records: u32,
    prev_ts: i64,
    min_ts: i64,
    max_ts: i64,
    bloom: [u8; BLOOM_BYTES],
    started: Option<Instant>,
}

impl Batch {
    fn reset(&mut self) {
        self.buf.clear();
        self.records = 0;
        self.prev_ts = 0;
        self.min_ts = i64::MAX;
        self.max_ts = i64::MIN;
        self.bloom = [0; BLOOM_BYTES];
        self.started = None;
    }
}

/// The single writer of a spool file. Holds an exclusive advisory lock.
pub struct SpoolWriter {
    path: PathBuf,
    map: MmapMut,
    // Kept open for the lock's lifetime; dropped after `map`.
    _file: File,
    salt: u32,
    capacity: u64,
    generation: u64,
    write_off: u64,
    next_seq: u64,
    /// Ring bytes ever written (persisted in the header before the data).
    high_water: u64,
    live: VecDeque<Live>,
    batch: Batch,
    target: usize,
    max_raw: usize,
    max_age: Duration,
    cctx: zstd::bulk::Compressor<'static>,
    scratch: Vec<u8>,
    stats: WriterStats,
    /// Dirty file byte range since the last msync.
    dirty: Option<(u64, u64)>,
}

impl std::fmt::Debug for SpoolWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolWriter")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("write_off", &self.write_off)
            .field("next_seq", &self.next_seq)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

struct MapSource<'a> {
    map: &'a MmapMut,
    ring_len: u64,
}

impl RingSource for MapSource<'_> {
    fn ring_len(&self) -> u64 {
        self.ring_len
    }
    fn has_magic(&self, off: u64) -> bool {
        let at = (HEADER_PAGE + off) as usize;
        self.map[at..at + 8] == BLOCK_MAGIC
    }
    fn copy_out(&self, off: u64, dst: &mut [u8]) {
        let at = (HEADER_PAGE + off) as usize;
        dst.copy_from_slice(&self.map[at..at + dst.len()]);
    }
    fn crc(&self, off: u64, len: usize, _scratch: &mut Vec<u8>) -> u32 {
        let at = (HEADER_PAGE + off) as usize;
        crc32fast::hash(&self.map[at..at + len])
    }
}

/// `append` reads the clock once per this many records: a reading costs
/// about as much as appending a small record, and the caller's timer
/// (`seal_if_due`) keeps a quiet batch from growing old anyway.
pub const AGE_CHECK_RECORDS: u64 = 64;

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_ns());
    h.write_u32(std::process::id());
    h.write_usize(&h as *const _ as usize);
    h.finish()
}

/// Largest raw batch whose worst-case compressed block fits in a quarter of
/// the ring.
/// Refuses to grow `file` from `len` to `total` bytes when the filesystem
/// does not have the difference free.
fn ensure_room(file: &File, path: &Path, total: u64, len: u64) -> Result<(), SpoolError> {
    let need = total.saturating_sub(len);
    let free = sys::free_bytes(file).map_err(|e| SpoolError::io(path, e))?;
    if need > free {
        return Err(SpoolError::NoSpace {
            path: path.to_path_buf(),
            need,
            free,
        });
    }
    Ok(())
}

fn max_raw_for(capacity: u64) -> usize {
    let max_extent = (capacity / 4) / BLOCK_ALIGN * BLOCK_ALIGN;
    let max_payload = (max_extent - BLOCK_HEADER_LEN as u64) as usize;
    let mut raw = max_payload.min(MAX_RAW_BLOCK);
    loop {
        let bound = zstd::zstd_safe::compress_bound(raw);
        if bound <= max_payload || raw == 0 {
            return raw;
        }
        raw = raw.saturating_sub((bound - max_payload).max(1));
    }
}

fn read_page(file: &mut File, len: u64, path: &Path) -> Result<Vec<u8>, SpoolError> {
    let mut page = Vec::with_capacity(HEADER_PAGE as usize);
    file.seek(SeekFrom::Start(0))
        .map_err(|e| SpoolError::io(path, e))?;
    file.take(len.min(HEADER_PAGE))
        .read_to_end(&mut page)
        .map_err(|e| SpoolError::io(path, e))?;
    page.resize(HEADER_PAGE as usize, 0);
    Ok(page)
}

fn sync_parent_dir(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

impl SpoolWriter {
    /// Opens the spool at `path`, creating and preallocating it if missing,
    /// otherwise recovering it by scanning the ring. Takes an exclusive
    /// advisory lock; a second writer gets [`SpoolError::Locked`].
    pub fn open_or_create(
        path: &Path,
        cfg: SpoolConfig,
    ) -> Result<(SpoolWriter, RecoveryReport), SpoolError> {
        let requested = cfg.capacity_bytes / HEADER_PAGE * HEADER_PAGE;
        if requested < MIN_CAPACITY {
            return Err(SpoolError::TooSmall {
                requested: cfg.capacity_bytes,
                minimum: MIN_CAPACITY,
            });
        }
        if requested > MAX_CAPACITY || requested + HEADER_PAGE > usize::MAX as u64 {
            return Err(SpoolError::InvalidConfig {
                reason: format!("capacity {} exceeds the maximum", cfg.capacity_bytes),
            });
        }
        if !zstd::compression_level_range().contains(&cfg.zstd_level) {
            return Err(SpoolError::InvalidConfig {
                reason: format!("zstd level {} out of range", cfg.zstd_level),
            });
        }
        let io = |e| SpoolError::io(path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match sys::try_lock_exclusive(&file).map_err(io)? {
            sys::LockResult::Locked => {}
            sys::LockResult::Busy => {
                return Err(SpoolError::Locked {
                    path: path.to_path_buf(),
                })
            }
        }
        let len = file.metadata().map_err(io)?.len();
        let page = read_page(&mut file, len, path)?;

        let (header, created) = match FileHeader::decode_static(&page) {
            Ok(h) => (h, false),
            Err(HeaderError::Empty) if page.iter().all(|&b| b == 0) => {
                let made = ensure_room(&file, path, HEADER_PAGE + requested, len)
                    .and_then(|()| Self::initialize(&mut file, path, requested, len));
                match made {
                    Ok(header) => (header, true),
                    Err(e) => {
                        // Leave no half-made spool behind (it held no data).
                        if len == 0 {
                            let _ = std::fs::remove_file(path);
                        }
                        return Err(e);
                    }
                }
            }
            Err(HeaderError::Empty | HeaderError::BadMagic) => {
                return Err(SpoolError::NotASpool {
                    path: path.to_path_buf(),
                    reason: if len < HEADER_PAGE {
                        format!("file is {len} bytes, shorter than the header page")
                    } else {
                        "bad magic".into()
                    },
                })
            }
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
        let capacity = header.capacity;
        let total = HEADER_PAGE + capacity;
        let len = file.metadata().map_err(io)?.len();
        let repaired_truncation = if len < total {
            // A header that claims more than the disk has (a damaged or
            // hostile one) must not fill the filesystem.
            ensure_room(&file, path, total, len)?;
            sys::preallocate(&file, total).map_err(io)?;
            Some(len)
        } else {
            None
        };

        // SAFETY: the mapping covers [0, total) of a file we just made at
        // least that long. We hold an exclusive flock, so no other vigil
        // writer modifies it; readers only read and validate. The mapping is
        // only invalidated if someone else truncates the file behind our
        // back, which the spool's directory permissions must prevent.
        let map = unsafe { MmapOptions::new().len(total as usize).map_mut(&file) }.map_err(io)?;

        let max_raw = max_raw_for(capacity);
        let mut cctx = zstd::bulk::Compressor::new(cfg.zstd_level).map_err(io)?;
        cctx.include_checksum(false).map_err(io)?;
        cctx.include_contentsize(true).map_err(io)?;
        let mut w = SpoolWriter {
            path: path.to_path_buf(),
            map,
            _file: file,
            salt: header.salt(),
            capacity,
            generation: 0,
            write_off: 0,
            next_seq: 1,
            high_water: capacity,
            live: VecDeque::new(),
            batch: Batch {
                // Grows past the target only for an oversized last record.
                buf: Vec::with_capacity(cfg.block_target_bytes.clamp(1, max_raw) + 4096),
                records: 0,
                prev_ts: 0,
                min_ts: i64::MAX,
                max_ts: i64::MIN,
                bloom: [0; BLOOM_BYTES],
                started: None,
            },
            target: cfg.block_target_bytes.clamp(1, max_raw),
            max_raw,
            max_age: cfg.max_batch_age,
            cctx,
            scratch: Vec::new(),
            stats: WriterStats::default(),
            dirty: None,
        };
        let mut report = w.recover()?;
        report.created = created;
        report.requested_capacity = (requested != capacity).then_some(requested);
        report.repaired_truncation = repaired_truncation;
        Ok((w, report))
    }

    fn initialize(
        file: &mut File,
        path: &Path,
        capacity: u64,
        len: u64,
    ) -> Result<FileHeader, SpoolError> {
        let io = |e| SpoolError::io(path, e);
        let total = HEADER_PAGE + capacity;
        if len > total {
            file.set_len(total).map_err(io)?;
        }
        sys::preallocate(file, total).map_err(io)?;
        let header = FileHeader {
            capacity,
            file_id: random_id(),
            created_ns: now_ns(),
        };
        let mut page = vec![0u8; HEADER_PAGE as usize];
        header.encode_static(&mut page);
        HeaderHints {
            write_offset: 0,
            next_seq: 1,
            generation: 0,
            updated_ns: header.created_ns,
            high_water: 0,
        }
        .encode(&mut page);
        // The header goes last: a crash before this leaves an all-zero
        // header page, which the next open re-initializes.
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&page).map_err(io)?;
        file.sync_all().map_err(io)?;
        sync_parent_dir(path);
        Ok(header)
    }

    fn recover(&mut self) -> Result<RecoveryReport, SpoolError> {
        let hints = HeaderHints::decode(&self.map[..HEADER_PAGE as usize]);
        // No block was ever written at or past the high-water mark (it is
        // persisted before the data it covers), so the scan can stop there.
        // Without valid hints, scan everything and stay conservative.
        self.high_water = hints.map_or(self.capacity, |h| h.high_water.min(self.capacity));
        let scan = scan_ring(
            &MapSource {
                map: &self.map,
                ring_len: self.capacity,
            },
            self.high_water,
            self.salt,
            true,
            false,
        );
        // Clear the magic of everything that is not a live block, so readers
        // do not keep reporting it and it can never resurface.
        for &(off, _) in &scan.corrupt {
            self.zero_magic(off);
        }
        for &off in &scan.stale {
            self.zero_magic(off);
        }
        let newest = scan.blocks.last().copied();
        self.write_off = newest.map_or(0, |b| b.offset + b.header.extent());
        let after_newest = newest.map_or(1, |b| b.header.seq.saturating_add(1));
        self.next_seq = hints
            .map_or(after_newest, |h| h.next_seq.max(after_newest))
            .max(1);
        let max_block_gen = scan
            .blocks
            .iter()
            .map(|b| u64::from(b.header.generation))
            .max()
            .unwrap_or(0);
        self.generation = hints
            .map_or(0, |h| h.generation)
            .max(max_block_gen)
            .saturating_add(1);
        let cap = self.capacity;
        let w = self.write_off;
        let mut live: Vec<Live> = scan
            .blocks
            .iter()
            .map(|b| Live {
                offset: b.offset,
                extent: b.header.extent(),
            })
            .collect();
        // Ring order starting at the write position: the front is what the
        // next block overwrites.
        live.sort_by_key(|l| (l.offset + cap - w % cap) % cap);
        self.live = live.into();
        self.write_hints();
        self.flush_dirty()?;
        Ok(RecoveryReport {
            created: false,
            valid_blocks: scan.blocks.len(),
            corrupt_blocks: scan.corrupt.len(),
            corrupt_offsets: scan.corrupt.iter().take(64).map(|&(o, _)| o).collect(),
            stale_blocks: scan.stale.len(),
            records: scan
                .blocks
                .iter()
                .map(|b| u64::from(b.header.records))
                .sum(),
            next_seq: self.next_seq,
            recovered_write_offset: self.write_off,
            hint_write_offset: hints.map(|h| h.write_offset),
            capacity: self.capacity,
            requested_capacity: None,
            repaired_truncation: None,
            generation: self.generation,
        })
    }

    /// Appends one record to the open batch, sealing it when it reaches the
    /// block target or its first record is older than `max_batch_age` (see
    /// [`AGE_CHECK_RECORDS`]).
    pub fn append(&mut self, ts_ns: i64, keys: &[u64], data: &[u8]) -> Result<(), SpoolError> {
        if keys.len() > MAX_KEYS_PER_RECORD {
            return Err(SpoolError::RecordTooLarge {
                size: record::encoded_len(ts_ns, keys.len(), data.len()),
                max: self.max_raw,
            });
        }
        // Size as the first record of a fresh block (delta from 0): the worst case.
        let fresh_len = record::encoded_len(ts_ns, keys.len(), data.len());
        if fresh_len > self.max_raw {
            return Err(SpoolError::RecordTooLarge {
                size: fresh_len,
                max: self.max_raw,
            });
        }
        if self.batch.records > 0 {
            let len = record::encoded_len(
                ts_ns.wrapping_sub(self.batch.prev_ts),
                keys.len(),
                data.len(),
            );
            if self.batch.buf.len() + len > self.max_raw {
                self.seal()?;
            }
        }
        let b = &mut self.batch;
        let started = *b.started.get_or_insert_with(Instant::now);
        record::encode(&mut b.buf, ts_ns.wrapping_sub(b.prev_ts), keys, data);
        b.prev_ts = ts_ns;
        b.records += 1;
        b.min_ts = b.min_ts.min(ts_ns);
        b.max_ts = b.max_ts.max(ts_ns);
        for &k in keys {
            bloom_insert(&mut b.bloom, k);
        }
        let age_check = self.max_age.is_zero() || u64::from(b.records) % AGE_CHECK_RECORDS == 0;
        if b.buf.len() >= self.target || (age_check && started.elapsed() >= self.max_age) {
            self.seal()?;
        }
        Ok(())
    }

    /// `SpoolConfig::max_batch_age`: how old a batch may grow before it is sealed.
    pub fn max_batch_age(&self) -> Duration {
        self.max_age
    }

    /// How long until the open batch is `max_batch_age` old (zero when it
    /// is already); `None` when no batch is open. A timer that calls
    /// [`seal_if_due`](Self::seal_if_due) sleeps this long.
    pub fn seal_due_in(&self) -> Option<std::time::Duration> {
        match self.batch.started {
            Some(t) if self.batch.records > 0 => Some(self.max_age.saturating_sub(t.elapsed())),
            _ => None,
        }
    }

    /// Seals the open batch if its first record is at least `max_batch_age`
    /// old. Returns whether a block was sealed. Call from a timer.
    pub fn seal_if_due(&mut self) -> Result<bool, SpoolError> {
        match self.batch.started {
            Some(t) if self.batch.records > 0 && t.elapsed() >= self.max_age => {
                self.seal()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Seals the open batch (if any) and msyncs everything written so far.
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        self.seal()?;
        self.flush_dirty()
    }

    /// Counters since open.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            pending_records: u64::from(self.batch.records),
            pending_bytes: self.batch.buf.len() as u64,
            ..self.stats
        }
    }

    /// Path of the spool file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ring capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Largest encoded record (and raw block) this spool accepts.
    pub fn max_record_bytes(&self) -> usize {
        self.max_raw
    }

    /// Seals the open batch into a block now.
    pub fn seal(&mut self) -> Result<(), SpoolError> {
        if self.batch.records == 0 {
            return Ok(());
        }
        if self.next_seq == u64::MAX {
            return Err(SpoolError::Corrupt {
                offset: 0,
                seq: None,
                reason: "sequence numbers exhausted".into(),
            });
        }
        // compress_to_buffer writes from index 0 up to the capacity; with
        // the worst-case bound available it cannot fail for lack of room.
        self.scratch.clear();
        self.scratch
            .reserve(zstd::zstd_safe::compress_bound(self.batch.buf.len()));
        let clen = self
            .cctx
            .compress_to_buffer(&self.batch.buf[..], &mut self.scratch)
            .map_err(|e| SpoolError::io(&self.path, e))?;
        let extent = align_up(BLOCK_HEADER_LEN as u64 + clen as u64);
        if extent > self.capacity / 4 {
            // max_raw_for() makes this impossible; refuse rather than corrupt.
            return Err(SpoolError::RecordTooLarge {
                size: self.batch.buf.len(),
                max: self.max_raw,
            });
        }
        let header = BlockHeader {
            seq: self.next_seq,
            first_ts: self.batch.min_ts,
            last_ts: self.batch.max_ts,
            records: self.batch.records,
            raw_len: self.batch.buf.len() as u32,
            compressed_len: clen as u32,
            payload_crc: crc32fast::hash(&self.scratch[..clen]),
            generation: self.generation as u32,
            bloom: self.batch.bloom,
        };

        // 1. Placement: wrap if the block does not fit before the ring's end,
        //    invalidating every block ahead of the write position.
        if self.write_off + extent > self.capacity {
            while let Some(&front) = self.live.front() {
                if front.offset < self.write_off {
                    break;
                }
                self.live.pop_front();
                self.zero_magic(front.offset);
                self.stats.blocks_overwritten += 1;
            }
            self.write_off = 0;
        }
        // 2. Invalidate the older blocks the new one overlaps.
        let start = self.write_off;
        let end = start + extent;
        while let Some(&front) = self.live.front() {
            if front.offset < start || front.offset >= end {
                break;
            }
            self.live.pop_front();
            self.zero_magic(front.offset);
            self.stats.blocks_overwritten += 1;
        }
        debug_assert!(self
            .live
            .iter()
            .all(|l| l.offset + l.extent <= start || l.offset >= end));
        if end > self.high_water {
            // Raise the high-water mark before the data it covers exists.
            self.high_water = end;
            self.write_hints();
        }
        // Invalidations and the high-water mark must be visible before any
        // payload byte changes.
        fence(Ordering::SeqCst);

        // 3. Payload, then the header without its magic, then the magic.
        let at = (HEADER_PAGE + start) as usize;
        let hb = header.encode(self.salt);
        self.map[at + BLOCK_HEADER_LEN..at + BLOCK_HEADER_LEN + clen]
            .copy_from_slice(&self.scratch[..clen]);
        self.map[at + 8..at + BLOCK_HEADER_LEN].copy_from_slice(&hb[8..]);
        fence(Ordering::Release);
        self.store_magic(start, u64::from_ne_bytes(BLOCK_MAGIC));
        self.mark_dirty(HEADER_PAGE + start, HEADER_PAGE + end);

        self.live.push_back(Live {
            offset: start,
            extent,
        });
        self.write_off = end;
        self.next_seq += 1;
        self.write_hints();

        self.stats.blocks_written += 1;
        self.stats.records_written += u64::from(self.batch.records);
        self.stats.raw_bytes += self.batch.buf.len() as u64;
        self.stats.compressed_bytes += clen as u64;
        self.batch.reset();
        Ok(())
    }

    fn write_hints(&mut self) {
        HeaderHints {
            write_offset: self.write_off,
            next_seq: self.next_seq,
            generation: self.generation,
            updated_ns: now_ns(),
            high_water: self.high_water,
        }
        .encode(&mut self.map[..HEADER_PAGE as usize]);
        self.mark_dirty(0, HEADER_PAGE);
    }

    fn zero_magic(&mut self, off: u64) {
        self.store_magic(off, 0);
        self.mark_dirty(HEADER_PAGE + off, HEADER_PAGE + off + 8);
    }

    /// One aligned 8-byte volatile store, so a concurrent reader sees either
    /// the old or the new magic, never a mix.
    fn store_magic(&mut self, off: u64, value: u64) {
        let at = (HEADER_PAGE + off) as usize;
        let slot = &mut self.map[at..at + 8];
        let ptr = slot.as_mut_ptr().cast::<u64>();
        assert!(
            ptr.is_aligned(),
            "block offsets are 512-aligned in a page-aligned map"
        );
        // SAFETY: `ptr` points at 8 in-bounds bytes of our writable mapping
        // (bounds checked by the slice above) and is 8-aligned (checked).
        unsafe { ptr.write_volatile(value) };
    }

    fn mark_dirty(&mut self, lo: u64, hi: u64) {
        self.dirty = Some(match self.dirty {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
    }

    fn flush_dirty(&mut self) -> Result<(), SpoolError> {
        if let Some((lo, hi)) = self.dirty {
            self.map
                .flush_range(lo as usize, (hi - lo) as usize)
                .map_err(|e| SpoolError::io(&self.path, e))?;
            self.dirty = None;
        }
        Ok(())
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        // Best effort: errors cannot be reported from drop.
        let _ = self.flush();
    }
}
