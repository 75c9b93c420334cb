//! Events in the spool: each record is one encoded [`Event`] whose keys are
//! hashes of the entity ids and host id it mentions, so context lookups and
//! hunts can skip blocks by key.
//!
//! Records are version-2 (interned) encodings: the strings of a block are
//! stored once, in the first record that uses them, so the encoder's
//! dictionary must restart exactly where the spool starts a block. Readers
//! decode every block with a fresh [`BlockDecoder`], record by record in
//! order ([`for_each_event`]).

use dsl::codec::{decode_event, BlockDecoder, CodecError, Decoded, EventEncoder};
use dsl::event::Text;
use dsl::Event;
use spool::{Block, SpoolConfig, SpoolError, SpoolReader, SpoolWriter, WriterStats};

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
    out.extend(key_ids(e).into_iter().flatten().map(|id| key_hash(id)));
}

fn key_ids(e: &Event) -> [Option<&Text>; 3] {
    [
        e.process.entity_id.as_ref(),
        e.process.parent.as_ref().and_then(|p| p.entity_id.as_ref()),
        e.host.id.as_ref(),
    ]
}

/// Slots of [`KeyMemo`].
const KEY_MEMO_SLOTS: usize = 256;

/// The key hashes of recently seen ids, by the id's address: an event's
/// host and processes recur, and hashing them byte by byte for every event
/// cost the spool thread more than encoding them.
struct KeyMemo {
    slots: Vec<Option<(Text, u64)>>,
}

impl Default for KeyMemo {
    fn default() -> KeyMemo {
        KeyMemo {
            slots: vec![None; KEY_MEMO_SLOTS],
        }
    }
}

impl KeyMemo {
    /// [`event_keys`], from memory where it can.
    fn event_keys(&mut self, e: &Event, out: &mut Vec<u64>) {
        out.clear();
        for id in key_ids(e).into_iter().flatten() {
            out.push(self.key(id));
        }
    }

    fn key(&mut self, id: &Text) -> u64 {
        let slot = (id.addr_hash() >> 56) as usize;
        match &self.slots[slot % KEY_MEMO_SLOTS] {
            // The slot holds its `Text`: the same address is the same bytes.
            Some((held, hash)) if held.addr() == id.addr() => *hash,
            _ => {
                let hash = key_hash(id);
                self.slots[slot % KEY_MEMO_SLOTS] = Some((id.clone(), hash));
                hash
            }
        }
    }
}

/// Appends events to a spool, reusing its buffers between events.
///
/// Invariant: the encoder's dictionary holds exactly the strings defined by
/// the records of the writer's open batch. The writer seals a batch (a)
/// after adding a record that brings it to its target size or age, (b) in
/// `seal_if_due`, `flush` and `seal`, and (c) *before* adding a record that
/// would overflow the hard maximum. (a) and (b) leave no pending records, so
/// the encoder resets whenever the writer reports none; (c) would put a
/// record encoded against the old dictionary first in a new block, so
/// [`append`](EventSpool::append) seals itself first when a record might
/// trigger it, and encodes that record again from an empty dictionary.
pub struct EventSpool {
    writer: SpoolWriter,
    encoder: EventEncoder,
    buf: Vec<u8>,
    keys: Vec<u64>,
    key_memo: KeyMemo,
    /// Valid blocks found when the spool was opened (an earlier run's).
    recovered_blocks: usize,
}

/// Bytes the spool adds around a record's data, at most: a varint time
/// delta (10), a varint key count (2), the keys and a varint length (10).
fn framing_bound(keys: usize) -> usize {
    22 + 8 * keys
}

/// Why the event store could not open, or take or seal an event.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating {}: {source}", path.display())]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("opening spool {}: {source}", path.display())]
    Open {
        path: std::path::PathBuf,
        source: SpoolError,
    },
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Encode(#[from] CodecError),
}

impl EventSpool {
    pub fn open(path: &std::path::Path, config: SpoolConfig) -> Result<EventSpool, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let (writer, report) =
            SpoolWriter::open_or_create(path, config).map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        if report.corrupt_blocks > 0 {
            tracing::warn!(
                spool = %path.display(),
                corrupt = report.corrupt_blocks,
                "skipped corrupt or torn blocks while recovering the spool"
            );
        }
        Ok(EventSpool {
            writer,
            encoder: EventEncoder::new(),
            buf: Vec::with_capacity(1024),
            keys: Vec::with_capacity(4),
            key_memo: KeyMemo::default(),
            recovered_blocks: report.valid_blocks,
        })
    }

    pub fn append(&mut self, e: &Event) -> Result<(), StoreError> {
        self.buf.clear();
        self.encoder.encode_into(e, &mut self.buf)?;
        self.key_memo.event_keys(e, &mut self.keys);
        let before = self.writer.stats();
        let bound = self.buf.len() + framing_bound(self.keys.len());
        if before.pending_records > 0
            && before.pending_bytes as usize + bound > self.writer.max_record_bytes()
        {
            // The writer would seal before adding this record, which was
            // encoded against the open block's dictionary: seal first and
            // encode it again as the first record of a new block.
            self.encoder.rollback_last();
            let sealed = self.writer.seal();
            self.sync_encoder();
            sealed?;
            self.buf.clear();
            self.encoder.encode_into(e, &mut self.buf)?;
        }
        let before = self.writer.stats();
        let result = self.writer.append(e.timestamp_ns, &self.keys, &self.buf);
        let after = self.writer.stats();
        if result.is_err() && !added_one(&before, &after) {
            self.encoder.rollback_last();
        }
        self.sync_encoder();
        result?;
        Ok(())
    }

    /// How long until the open batch is old enough to seal (`None`: none open).
    pub fn seal_due_in(&self) -> Option<std::time::Duration> {
        self.writer.seal_due_in()
    }

    /// Seals the open batch if it is old enough; returns whether it did.
    pub fn seal_if_due(&mut self) -> Result<bool, StoreError> {
        let sealed = self.writer.seal_if_due();
        self.sync_encoder();
        Ok(sealed?)
    }

    /// Seals the open batch if it is due within `slack` (at most a quarter
    /// of `max_batch_age`, so short ages still make whole blocks); returns
    /// whether it did.
    pub fn seal_if_due_within(&mut self, slack: std::time::Duration) -> Result<bool, StoreError> {
        let slack = slack.min(self.writer.max_batch_age() / 4);
        match self.seal_due_in() {
            Some(due) if due <= slack => self.seal().map(|()| true),
            _ => Ok(false),
        }
    }

    /// Seals the open batch now.
    pub fn seal(&mut self) -> Result<(), StoreError> {
        let sealed = self.writer.seal();
        self.sync_encoder();
        Ok(sealed?)
    }

    pub fn flush(&mut self) -> Result<(), StoreError> {
        let flushed = self.writer.flush();
        self.sync_encoder();
        Ok(flushed?)
    }

    /// A new block starts with the next record whenever the writer holds no
    /// pending records (it sealed them, or never had any).
    fn sync_encoder(&mut self) {
        if self.writer.stats().pending_records == 0 {
            self.encoder.reset();
        }
    }

    /// Strings in the open block's dictionary (for tests and diagnostics).
    pub fn dictionary_len(&self) -> usize {
        self.encoder.dict_len()
    }

    /// The spool held events of an earlier run when it was opened.
    pub fn had_earlier_events(&self) -> bool {
        self.recovered_blocks > 0
    }

    pub fn writer(&self) -> &SpoolWriter {
        &self.writer
    }
}

/// The reader kept in `slot`, refreshed to see every sealed block of the
/// spool at `path` (opened on first use). A reader that fails to refresh is
/// dropped, so the next call opens it afresh; the failure is logged.
pub fn refreshed_reader<'a>(
    slot: &'a mut Option<SpoolReader>,
    path: &std::path::Path,
) -> Option<&'a SpoolReader> {
    let reader = match slot.take() {
        Some(mut r) => r.refresh().map(|()| r),
        None => SpoolReader::open(path),
    };
    match reader {
        Ok(r) => Some(&*slot.insert(r)),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the spool back");
            None
        }
    }
}

/// Whether the writer took in exactly one more record between two stats.
fn added_one(before: &WriterStats, after: &WriterStats) -> bool {
    after.records_written + after.pending_records > before.records_written + before.pending_records
}

/// Decodes one standalone record (version 1, or version 2 with its own
/// dictionary). Records read from a spool block need the block's earlier
/// records: use [`for_each_event`] or a [`BlockDecoder`] instead.
pub fn decode_record(data: &[u8]) -> Result<Event, CodecError> {
    decode_event(data)
}

/// What [`for_each_event`] met in one block.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockCounts {
    /// Records in the time range (decoded or not).
    pub in_range: u64,
    /// Records whose bytes did not decode (in range or not).
    pub bad_records: u64,
}

/// Decodes every record of `block` in order, each with the block's
/// dictionary, calling `f` with those whose timestamp `keep_ts` accepts (the
/// others are only taken in for the strings they define). `f` returning
/// `Break` stops. A spool-level error in the record stream ends the block.
pub fn for_each_event(
    block: &Block,
    mut keep_ts: impl FnMut(i64) -> bool,
    mut f: impl FnMut(Decoded<'_>) -> std::ops::ControlFlow<()>,
) -> (BlockCounts, Option<SpoolError>) {
    let mut counts = BlockCounts::default();
    let mut dec = BlockDecoder::new();
    for rec in block.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => return (counts, Some(e)),
        };
        if !keep_ts(rec.ts_ns) {
            if dec.skip_next(rec.data).is_err() {
                counts.bad_records += 1;
            }
            continue;
        }
        counts.in_range += 1;
        match dec.decode_next(rec.data) {
            Ok(d) => {
                if f(d).is_break() {
                    break;
                }
            }
            Err(_) => counts.bad_records += 1,
        }
    }
    (counts, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn remembered_keys_are_the_hashed_keys() {
        let mut memo = KeyMemo::default();
        // Recurring ids (the same `Text`), equal ids in other allocations,
        // and more distinct ids than the memo has slots.
        let host = Text::from("host-1");
        let ids: Vec<Text> = (0..3 * KEY_MEMO_SLOTS)
            .map(|i| Text::from(format!("entity-{}", i % 700)))
            .collect();
        let (mut remembered, mut hashed) = (Vec::new(), Vec::new());
        for (i, id) in ids.iter().enumerate() {
            let mut e = Event::default();
            e.host.id = Some(if i % 2 == 0 {
                host.clone()
            } else {
                Text::from("host-1")
            });
            e.process.entity_id = Some(id.clone());
            e.process.parent = Some(Arc::new(dsl::event::Process {
                entity_id: Some(ids[i / 2].clone()),
                ..Default::default()
            }));
            memo.event_keys(&e, &mut remembered);
            event_keys(&e, &mut hashed);
            assert_eq!(remembered, hashed, "event {i}");
            assert_eq!(hashed.len(), 3);
        }
    }
}
