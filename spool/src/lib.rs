//! `vigil-spool`: a fixed-size, memory-mapped ring file of compressed blocks
//! of opaque records.
//!
//! # What this crate owns
//!
//! * The on-disk format (see `FORMAT.md` next to `Cargo.toml`): a 4 KiB header
//!   page followed by a ring of 512-byte-aligned blocks. Each block is a
//!   128-byte header (sequence number, time bounds, sizes, a 512-bit bloom
//!   filter over the records' keys, checksums) and one zstd frame holding
//!   the records.
//! * Writing ([`SpoolWriter`]): batching records, sealing batches into
//!   blocks, placing blocks in the ring (overwriting the oldest when full),
//!   crash recovery, and the single-writer lock.
//! * Reading ([`SpoolReader`]): listing valid blocks, verified decompression
//!   that detects blocks overwritten mid-read, and filtered scans by time
//!   range and key.
//!
//! A record is `(ts_ns: i64, keys: &[u64], data: &[u8])`. The spool knows
//! bytes, timestamps and u64 keys only.
//!
//! # What it must not do
//!
//! * Interpret record data. It never parses events, never knows what a key
//!   means, and has no dependency on the agent's event model; serialization
//!   of events is the caller's business.
//! * Trust the disk. Every byte read back is validated (checksums, sequence,
//!   bounds, size caps); garbage yields errors or counts, never panics, never
//!   unbounded allocations, and never records from a torn or overwritten block.
//! * Grow. The file is preallocated at creation and never changes size; old
//!   blocks are overwritten, so it is a bounded cache, not an archive.
//! * Allow two writers. The writer holds an exclusive `flock`; readers take
//!   no lock and never write.
//! * Promise durability it does not have: a sealed block survives a crash of
//!   the writing process immediately, but survives power loss only after
//!   [`SpoolWriter::flush`] (msync) returns.
//! * Resist a deliberate attacker with write access to the file: checksums
//!   are CRC32 (salted per file so that record contents cannot forge block
//!   headers), not signatures.

mod block;
mod error;
mod format;
mod reader;
mod record;
mod scan;
mod sys;
mod writer;

pub use block::{decode_block_payload, Block, ChecksumPolicy, Records};
pub use error::SpoolError;
pub use format::{
    BLOCK_ALIGN, BLOCK_HEADER_LEN, FORMAT_VERSION, HEADER_PAGE, MAX_CAPACITY, MAX_RAW_BLOCK,
    MIN_CAPACITY,
};
pub use reader::{BlockInfo, ScanReport, SpoolInfo, SpoolReader};
pub use record::{Keys, KeysIter, RecordRef, MAX_KEYS_PER_RECORD};
pub use writer::{RecoveryReport, SpoolConfig, SpoolWriter, WriterStats, AGE_CHECK_RECORDS};

/// A time range in nanoseconds: `start_ns` inclusive, `end_ns` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeRange {
    pub start_ns: i64,
    pub end_ns: i64,
}

impl TimeRange {
    /// `[start_ns, end_ns)`.
    pub fn new(start_ns: i64, end_ns: i64) -> Self {
        TimeRange { start_ns, end_ns }
    }

    /// Every timestamp except `i64::MAX` (the exclusive end).
    pub fn all() -> Self {
        TimeRange {
            start_ns: i64::MIN,
            end_ns: i64::MAX,
        }
    }

    /// True if `ts_ns` is in the range.
    pub fn contains(&self, ts_ns: i64) -> bool {
        self.start_ns <= ts_ns && ts_ns < self.end_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn thread_safety() {
        assert_send_sync::<SpoolReader>();
        assert_send_sync::<Block>();
        assert_send::<SpoolWriter>();
    }

    #[test]
    fn time_range() {
        let r = TimeRange::new(10, 20);
        assert!(r.contains(10) && r.contains(19) && !r.contains(20) && !r.contains(9));
        assert!(TimeRange::all().contains(i64::MIN));
    }
}
