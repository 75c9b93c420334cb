//! Record encoding inside a decompressed block payload.
//!
//! Each record: `zigzag_varint(ts - prev_ts)`, `varint(key_count)`,
//! `key_count` × u64 little-endian, `varint(data_len)`, `data`.
//! `prev_ts` starts at 0 for the first record of a block; deltas use
//! wrapping arithmetic.

use crate::format::{get_varint, put_varint, unzigzag, varint_len, zigzag};

/// Largest number of keys one record may carry.
pub const MAX_KEYS_PER_RECORD: usize = 1024;

/// One record borrowed from a decompressed block (zero-copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Timestamp, nanoseconds (the writer's clock domain; opaque to the spool).
    pub ts_ns: i64,
    /// The record's u64 keys.
    pub keys: Keys<'a>,
    /// The opaque record bytes.
    pub data: &'a [u8],
}

/// The keys of a record: a borrowed view of little-endian u64s.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Keys<'a> {
    bytes: &'a [u8],
}

impl<'a> Keys<'a> {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.bytes.len() / 8
    }

    /// True if the record has no keys.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The `i`th key.
    pub fn get(&self, i: usize) -> Option<u64> {
        let b = self
            .bytes
            .get(i.checked_mul(8)?..i.checked_mul(8)?.checked_add(8)?)?;
        Some(crate::format::le_u64(b))
    }

    /// True if `key` is one of the keys.
    pub fn contains(&self, key: u64) -> bool {
        let want = key.to_le_bytes();
        self.bytes.chunks_exact(8).any(|c| c == want)
    }

    /// Iterates the keys in stored order.
    pub fn iter(&self) -> KeysIter<'a> {
        KeysIter {
            chunks: self.bytes.chunks_exact(8),
        }
    }

    /// Copies the keys into a `Vec`.
    pub fn to_vec(&self) -> Vec<u64> {
        self.iter().collect()
    }
}

impl std::fmt::Debug for Keys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for Keys<'a> {
    type Item = u64;
    type IntoIter = KeysIter<'a>;
    fn into_iter(self) -> KeysIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Keys`].
#[derive(Clone, Debug)]
pub struct KeysIter<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
}

impl Iterator for KeysIter<'_> {
    type Item = u64;
    #[inline]
    fn next(&mut self) -> Option<u64> {
        self.chunks.next().map(crate::format::le_u64)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for KeysIter<'_> {}

/// Encoded size of a record.
#[inline]
pub(crate) fn encoded_len(ts_delta: i64, keys: usize, data: usize) -> usize {
    varint_len(zigzag(ts_delta))
        + varint_len(keys as u64)
        + keys * 8
        + varint_len(data as u64)
        + data
}

/// Appends one encoded record to `buf`.
#[inline]
pub(crate) fn encode(buf: &mut Vec<u8>, ts_delta: i64, keys: &[u64], data: &[u8]) {
    put_varint(buf, zigzag(ts_delta));
    put_varint(buf, keys.len() as u64);
    for k in keys {
        buf.extend_from_slice(&k.to_le_bytes());
    }
    put_varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

/// Decodes the record at `*pos`, advancing `*pos` and `*prev_ts`.
#[inline]
pub(crate) fn decode<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    prev_ts: &mut i64,
) -> Result<RecordRef<'a>, &'static str> {
    let delta = get_varint(buf, pos).ok_or("bad timestamp varint")?;
    let ts = prev_ts.wrapping_add(unzigzag(delta));
    let nkeys = get_varint(buf, pos).ok_or("bad key count varint")?;
    if nkeys > MAX_KEYS_PER_RECORD as u64 {
        return Err("too many keys");
    }
    let kbytes = nkeys as usize * 8;
    let keys = buf
        .get(*pos..pos.saturating_add(kbytes))
        .ok_or("keys run past end of block")?;
    *pos += kbytes;
    let dlen = get_varint(buf, pos).ok_or("bad data length varint")?;
    let dlen = usize::try_from(dlen).map_err(|_| "data length overflow")?;
    let data = buf
        .get(*pos..pos.saturating_add(dlen))
        .ok_or("data runs past end of block")?;
    *pos += dlen;
    *prev_ts = ts;
    Ok(RecordRef {
        ts_ns: ts,
        keys: Keys { bytes: keys },
        data,
    })
}
