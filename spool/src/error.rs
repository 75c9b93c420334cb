use std::path::PathBuf;

/// Everything that can go wrong in the spool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// An operating-system I/O call failed.
    #[error("spool I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a spool (wrong magic, too short, foreign content).
    #[error("{} is not a vigil spool: {reason}", path.display())]
    NotASpool { path: PathBuf, reason: String },
    /// The header page carries a format version this build cannot read.
    #[error("unsupported spool format version {0} (this build reads version {supported})", supported = crate::FORMAT_VERSION)]
    UnsupportedVersion(u32),
    /// The filesystem has no room for the spool: it is not created or grown
    /// (filling the disk would starve everything else on it).
    #[error("no room for the spool {}: it needs {need} more bytes, the filesystem has {free} free", path.display())]
    NoSpace { path: PathBuf, need: u64, free: u64 },
    /// The requested capacity is below the minimum.
    #[error("spool capacity {requested} bytes is too small (minimum {minimum})")]
    TooSmall { requested: u64, minimum: u64 },
    /// The configuration is unusable (capacity too large, bad zstd level, ...).
    #[error("invalid spool configuration: {reason}")]
    InvalidConfig { reason: String },
    /// A record does not fit in one block of this spool.
    #[error("record of {size} encoded bytes exceeds the per-block maximum of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },
    /// Data on disk failed validation. `offset` is relative to the start of
    /// the ring area (file offset minus 4096), or the file offset 0 for the
    /// header page.
    #[error("corrupt spool data at ring offset {offset} (seq {seq:?}): {reason}")]
    Corrupt {
        offset: u64,
        seq: Option<u64>,
        reason: String,
    },
    /// The block was overwritten by the writer after it was listed.
    #[error("block {seq} was overwritten by the writer")]
    Overwritten { seq: u64 },
    /// Another writer holds the spool's lock.
    #[error("spool {} is locked by another writer", path.display())]
    Locked { path: PathBuf },
}

impl SpoolError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        SpoolError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
