//! Events in the spool: each record is one encoded [`Event`] whose keys are
//! hashes of the entity ids and host id it mentions, so context lookups and
//! hunts can skip blocks by key.

use anyhow::{Context, Result};
use dsl::codec::{decode_event, encode_event_into, CodecError};
use dsl::Event;
use spool::{SpoolConfig, SpoolWriter};

/// FNV-1a: stable across builds and platforms, which spool keys must be.
pub fn key_hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in text.as_bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The spool keys of an event: its process, its parent and its host.
pub fn event_keys(e: &Event, out: &mut Vec<u64>) {
    out.clear();
    let ids = [
        e.process.entity_id.as_deref(),
        e.process
            .parent
            .as_ref()
            .and_then(|p| p.entity_id.as_deref()),
        e.host.id.as_deref(),
    ];
    out.extend(ids.into_iter().flatten().map(key_hash));
}

/// Appends events to a spool, reusing its buffers between events.
pub struct EventSpool {
    writer: SpoolWriter,
    buf: Vec<u8>,
    keys: Vec<u64>,
}

impl EventSpool {
    pub fn open(path: &std::path::Path, config: SpoolConfig) -> Result<EventSpool> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let (writer, report) = SpoolWriter::open_or_create(path, config)
            .with_context(|| format!("opening spool {}", path.display()))?;
        if report.corrupt_blocks > 0 {
            tracing::warn!(
                spool = %path.display(),
                corrupt = report.corrupt_blocks,
                "skipped corrupt or torn blocks while recovering the spool"
            );
        }
        Ok(EventSpool {
            writer,
            buf: Vec::with_capacity(1024),
            keys: Vec::with_capacity(4),
        })
    }

    pub fn append(&mut self, e: &Event) -> Result<()> {
        self.buf.clear();
        encode_event_into(e, &mut self.buf)?;
        event_keys(e, &mut self.keys);
        self.writer.append(e.timestamp_ns, &self.keys, &self.buf)?;
        Ok(())
    }

    pub fn seal_if_due(&mut self) -> Result<()> {
        self.writer.seal_if_due()?;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush()?;
        Ok(())
    }

    pub fn writer(&self) -> &SpoolWriter {
        &self.writer
    }
}

pub fn decode_record(data: &[u8]) -> Result<Event, CodecError> {
    decode_event(data)
}
