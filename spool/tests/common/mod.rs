//! Helpers shared by the integration tests.
#![allow(dead_code)]

/// A self-verifying record: counter, a pattern derived from it, and a CRC
/// over both. Length varies with the counter (20..=300 bytes).
pub fn make_record(counter: u64, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&counter.to_le_bytes());
    let len = 8 + (counter.wrapping_mul(2_654_435_761) % 289) as usize;
    let mut x = counter ^ 0x9E37_79B9_7F4A_7C15;
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // mostly text-like so it compresses somewhat
        buf.push(b'a' + (x % 7) as u8);
    }
    let crc = crc32(buf);
    buf.extend_from_slice(&crc.to_le_bytes());
}

/// Returns the counter if `data` is an intact record made by `make_record`.
pub fn check_record(data: &[u8]) -> Option<u64> {
    if data.len() < 12 {
        return None;
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if crc32(body).to_le_bytes() != crc {
        return None;
    }
    let counter = u64::from_le_bytes(body[..8].try_into().ok()?);
    let len = 8 + (counter.wrapping_mul(2_654_435_761) % 289) as usize;
    (body.len() == len).then_some(counter)
}

fn crc32(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// Whether long (soak) variants were requested.
pub fn soak() -> bool {
    std::env::var_os("VIGIL_SOAK").is_some_and(|v| v != "0")
}
