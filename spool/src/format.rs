//! On-disk layout: constants, file header page, block header, bloom filter
//! and varint helpers. `FORMAT.md` documents every byte defined here; keep
//! the two in sync.

/// Magic at offset 0 of the header page.
pub(crate) const FILE_MAGIC: [u8; 8] = *b"VIGILSPL";
/// Format version written in the header page.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the header page; the ring area starts right after it.
pub const HEADER_PAGE: u64 = 4096;
/// Alignment of every block in the ring area.
pub const BLOCK_ALIGN: u64 = 512;
/// Fixed size of a block header.
pub const BLOCK_HEADER_LEN: usize = 128;
/// Magic at offset 0 of every live block header.
pub(crate) const BLOCK_MAGIC: [u8; 8] = *b"VIGILBLK";
/// Block header version.
pub(crate) const BLOCK_HEADER_VERSION: u16 = 1;
/// Bloom filter size in bytes (512 bits).
pub(crate) const BLOOM_BYTES: usize = 64;
const BLOOM_BITS: u64 = (BLOOM_BYTES * 8) as u64;
/// Hard cap on a block's decompressed size, whatever its header says.
pub const MAX_RAW_BLOCK: usize = 64 << 20;
/// Smallest accepted ring capacity.
pub const MIN_CAPACITY: u64 = 16 * 1024;
/// Largest accepted ring capacity (1 TiB).
pub const MAX_CAPACITY: u64 = 1 << 40;
/// Smallest encoded record: ts varint, key count varint, data length varint.
pub(crate) const MIN_RECORD_LEN: u32 = 3;

// Header page field offsets.
const HP_STATIC_END: usize = 44; // crc of [0, 44) stored at [44, 48)
const HP_HINTS_START: usize = 48;
const HP_HINTS_END: usize = 88; // crc of [48, 88) stored at [88, 92)
/// Bytes of the header page that carry data; the rest is zero.
pub(crate) const HP_USED: usize = 92;

/// Immutable part of the header page, written once at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileHeader {
    pub capacity: u64,
    pub file_id: u64,
    pub created_ns: i64,
}

/// Mutable hints in the header page. Never trusted blindly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct HeaderHints {
    pub write_offset: u64,
    pub next_seq: u64,
    pub generation: u64,
    pub updated_ns: i64,
    /// Ring bytes ever written: no block header exists at or beyond it.
    pub high_water: u64,
}

/// Why a header page was rejected.
#[derive(Debug)]
pub(crate) enum HeaderError {
    Empty,
    BadMagic,
    Version(u32),
    Checksum,
    Invalid(String),
}

impl FileHeader {
    /// Salt mixed into every block header checksum of this file.
    pub fn salt(&self) -> u32 {
        salt_of(self.file_id)
    }

    pub fn encode_static(&self, page: &mut [u8]) {
        page[0..8].copy_from_slice(&FILE_MAGIC);
        page[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        page[12..16].copy_from_slice(&(BLOCK_ALIGN as u32).to_le_bytes());
        page[16..24].copy_from_slice(&self.capacity.to_le_bytes());
        page[24..32].copy_from_slice(&self.file_id.to_le_bytes());
        page[32..40].copy_from_slice(&self.created_ns.to_le_bytes());
        page[40..44].copy_from_slice(&(BLOCK_HEADER_LEN as u32).to_le_bytes());
        let crc = crc32fast::hash(&page[0..HP_STATIC_END]);
        page[44..48].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes and validates the immutable part of a header page.
    pub fn decode_static(page: &[u8]) -> Result<FileHeader, HeaderError> {
        if page.len() < HP_USED {
            return Err(HeaderError::Invalid("header page truncated".into()));
        }
        if page[..HP_USED].iter().all(|&b| b == 0) {
            return Err(HeaderError::Empty);
        }
        if page[0..8] != FILE_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = le_u32(&page[8..12]);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        if le_u32(&page[44..48]) != crc32fast::hash(&page[0..HP_STATIC_END]) {
            return Err(HeaderError::Checksum);
        }
        let align = le_u32(&page[12..16]);
        if u64::from(align) != BLOCK_ALIGN {
            return Err(HeaderError::Invalid(format!(
                "block alignment {align} (expected {BLOCK_ALIGN})"
            )));
        }
        let bhl = le_u32(&page[40..44]);
        if bhl as usize != BLOCK_HEADER_LEN {
            return Err(HeaderError::Invalid(format!(
                "block header length {bhl} (expected {BLOCK_HEADER_LEN})"
            )));
        }
        let capacity = le_u64(&page[16..24]);
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
            || !capacity.is_multiple_of(HEADER_PAGE)
        {
            return Err(HeaderError::Invalid(format!(
                "capacity {capacity} out of range or not a multiple of {HEADER_PAGE}"
            )));
        }
        Ok(FileHeader {
            capacity,
            file_id: le_u64(&page[24..32]),
            created_ns: le_i64(&page[32..40]),
        })
    }
}

impl HeaderHints {
    pub fn encode(&self, page: &mut [u8]) {
        page[48..56].copy_from_slice(&self.write_offset.to_le_bytes());
        page[56..64].copy_from_slice(&self.next_seq.to_le_bytes());
        page[64..72].copy_from_slice(&self.generation.to_le_bytes());
        page[72..80].copy_from_slice(&self.updated_ns.to_le_bytes());
        page[80..88].copy_from_slice(&self.high_water.to_le_bytes());
        let crc = crc32fast::hash(&page[HP_HINTS_START..HP_HINTS_END]);
        page[88..92].copy_from_slice(&crc.to_le_bytes());
    }

    /// `None` when the hint checksum does not match (torn or damaged).
    pub fn decode(page: &[u8]) -> Option<HeaderHints> {
        let hints = page.get(HP_HINTS_START..HP_USED)?;
        let crc = le_u32(&hints[40..44]);
        if crc != crc32fast::hash(&hints[..40]) {
            return None;
        }
        Some(HeaderHints {
            write_offset: le_u64(&hints[0..8]),
            next_seq: le_u64(&hints[8..16]),
            generation: le_u64(&hints[16..24]),
            updated_ns: le_i64(&hints[24..32]),
            high_water: le_u64(&hints[32..40]),
        })
    }
}

pub(crate) fn salt_of(file_id: u64) -> u32 {
    (file_id ^ (file_id >> 32)) as u32
}

/// Fixed-size block header (see FORMAT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockHeader {
    pub seq: u64,
    pub first_ts: i64,
    pub last_ts: i64,
    pub records: u32,
    pub raw_len: u32,
    pub compressed_len: u32,
    pub payload_crc: u32,
    pub generation: u32,
    pub bloom: [u8; BLOOM_BYTES],
}

impl BlockHeader {
    /// Bytes of ring area the block occupies (header + payload, aligned up).
    pub fn extent(&self) -> u64 {
        align_up(BLOCK_HEADER_LEN as u64 + u64::from(self.compressed_len))
    }

    /// Encodes the header including magic and the salted header checksum.
    pub fn encode(&self, salt: u32) -> [u8; BLOCK_HEADER_LEN] {
        let mut b = [0u8; BLOCK_HEADER_LEN];
        b[0..8].copy_from_slice(&BLOCK_MAGIC);
        b[8..10].copy_from_slice(&BLOCK_HEADER_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(BLOCK_HEADER_LEN as u16).to_le_bytes());
        b[12..16].copy_from_slice(&self.records.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_ts.to_le_bytes());
        b[32..40].copy_from_slice(&self.last_ts.to_le_bytes());
        b[40..44].copy_from_slice(&self.raw_len.to_le_bytes());
        b[44..48].copy_from_slice(&self.compressed_len.to_le_bytes());
        b[48..52].copy_from_slice(&self.payload_crc.to_le_bytes());
        // [52, 56) header crc, filled below
        b[56..60].copy_from_slice(&self.generation.to_le_bytes());
        // [60, 64) reserved, zero
        b[64..128].copy_from_slice(&self.bloom);
        let crc = header_crc(&b, salt);
        b[52..56].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates a block header. `salt` is `None` to skip the
    /// header checksum (fuzzing / forensic use only).
    pub fn decode(b: &[u8; BLOCK_HEADER_LEN], salt: Option<u32>) -> Result<Self, &'static str> {
        if b[0..8] != BLOCK_MAGIC {
            return Err("bad block magic");
        }
        if let Some(salt) = salt {
            if le_u32(&b[52..56]) != header_crc(b, salt) {
                return Err("block header checksum mismatch");
            }
        }
        if le_u16(&b[8..10]) != BLOCK_HEADER_VERSION {
            return Err("unsupported block header version");
        }
        if le_u16(&b[10..12]) as usize != BLOCK_HEADER_LEN {
            return Err("bad block header length");
        }
        let mut bloom = [0u8; BLOOM_BYTES];
        bloom.copy_from_slice(&b[64..128]);
        let h = BlockHeader {
            records: le_u32(&b[12..16]),
            seq: le_u64(&b[16..24]),
            first_ts: le_i64(&b[24..32]),
            last_ts: le_i64(&b[32..40]),
            raw_len: le_u32(&b[40..44]),
            compressed_len: le_u32(&b[44..48]),
            payload_crc: le_u32(&b[48..52]),
            generation: le_u32(&b[56..60]),
            bloom,
        };
        if h.records == 0 {
            return Err("block has no records");
        }
        if h.raw_len as usize > MAX_RAW_BLOCK {
            return Err("raw length exceeds hard maximum");
        }
        if u64::from(h.raw_len) < u64::from(h.records) * u64::from(MIN_RECORD_LEN) {
            return Err("raw length too small for record count");
        }
        if h.compressed_len == 0 {
            return Err("empty payload");
        }
        if h.first_ts > h.last_ts {
            return Err("first_ts after last_ts");
        }
        Ok(h)
    }
}

fn header_crc(b: &[u8; BLOCK_HEADER_LEN], salt: u32) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(salt);
    h.update(&b[0..52]);
    h.update(&[0u8; 4]);
    h.update(&b[56..]);
    h.finalize()
}

/// The three bloom bit positions of `key` (k = 3, m = 512).
#[inline]
pub(crate) fn bloom_positions(key: u64) -> [u64; 3] {
    // splitmix64 finalizer
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    [
        z % BLOOM_BITS,
        (z >> 9) % BLOOM_BITS,
        (z >> 18) % BLOOM_BITS,
    ]
}

#[inline]
pub(crate) fn bloom_insert(bloom: &mut [u8; BLOOM_BYTES], key: u64) {
    for p in bloom_positions(key) {
        bloom[(p / 8) as usize] |= 1 << (p % 8);
    }
}

#[inline]
pub(crate) fn bloom_test(bloom: &[u8; BLOOM_BYTES], key: u64) -> bool {
    bloom_positions(key)
        .iter()
        .all(|&p| bloom[(p / 8) as usize] & (1 << (p % 8)) != 0)
}

pub(crate) fn align_up(v: u64) -> u64 {
    v.div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN
}

#[inline]
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits, at least 1.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Reads a LEB128 varint; `None` on truncation or overlong encoding.
#[inline]
pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
pub(crate) fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}
pub(crate) fn le_i64(b: &[u8]) -> i64 {
    le_u64(b) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_roundtrip() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            let mut p = 0;
            assert_eq!(get_varint(&b, &mut p), Some(v));
            assert_eq!(p, b.len());
        }
        // overlong: 10th byte with more than 1 bit
        let mut p = 0;
        assert_eq!(get_varint(&[0xff; 10], &mut p), None);
        let mut p = 0;
        assert_eq!(get_varint(&[0x80; 3], &mut p), None);
    }

    #[test]
    fn zigzag_roundtrip() {
        for v in [0i64, 1, -1, i64::MIN, i64::MAX, 12345, -98765] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn header_roundtrip_and_salt() {
        let h = BlockHeader {
            seq: 7,
            first_ts: -5,
            last_ts: 10,
            records: 2,
            raw_len: 100,
            compressed_len: 50,
            payload_crc: 0xdead_beef,
            generation: 3,
            bloom: [0x5a; BLOOM_BYTES],
        };
        let b = h.encode(42);
        assert_eq!(BlockHeader::decode(&b, Some(42)), Ok(h));
        assert!(BlockHeader::decode(&b, Some(43)).is_err());
        assert_eq!(BlockHeader::decode(&b, None), Ok(h));
        assert_eq!(h.extent(), 512);
    }

    #[test]
    fn file_header_roundtrip() {
        let fh = FileHeader {
            capacity: 1 << 20,
            file_id: 99,
            created_ns: 1,
        };
        let mut page = vec![0u8; HEADER_PAGE as usize];
        fh.encode_static(&mut page);
        let hints = HeaderHints {
            write_offset: 512,
            next_seq: 3,
            generation: 1,
            updated_ns: 2,
            high_water: 1024,
        };
        hints.encode(&mut page);
        assert_eq!(FileHeader::decode_static(&page).ok(), Some(fh));
        assert_eq!(HeaderHints::decode(&page), Some(hints));
        page[60] ^= 1;
        assert_eq!(HeaderHints::decode(&page), None);
        page[20] ^= 1;
        assert!(matches!(
            FileHeader::decode_static(&page),
            Err(HeaderError::Checksum)
        ));
    }

    #[test]
    fn bloom_basics() {
        let mut bloom = [0u8; BLOOM_BYTES];
        for k in 0..20u64 {
            bloom_insert(&mut bloom, k * 7919);
        }
        for k in 0..20u64 {
            assert!(bloom_test(&bloom, k * 7919));
        }
        let fp = (1000..11000u64)
            .filter(|&k| bloom_test(&bloom, k * 7919))
            .count();
        assert!(fp < 500, "false positives {fp}");
    }
}
