//! A fast 64-bit hash of short byte strings, eight bytes per step: join
//! keys and the string-test memo hash entity ids, paths and command lines
//! on every event. Not keyed: like the FNV-1a it replaced, it is no defence
//! against crafted collisions, which cost a dropped chain (counted) at most.

const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// Continues hash `h` over `bytes` (their length included, so adjacent
/// strings cannot trade bytes).
#[inline]
pub fn hash_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let word = u64::from_le_bytes(c.try_into().expect("eight bytes"));
        h = (h ^ word).wrapping_mul(K).rotate_left(26);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(buf))
            .wrapping_mul(K)
            .rotate_left(26);
    }
    finish(h ^ bytes.len() as u64)
}

/// A hash of an address for caches keyed by one: take its top bits as the
/// slot. Every address bit counts (static strings lie next to each other at
/// any byte address).
#[inline]
pub fn addr_hash(addr: usize) -> u64 {
    (addr as u64).wrapping_mul(K)
}

/// Spreads every input bit over the low bits too (slot indexes use them).
#[inline]
fn finish(h: u64) -> u64 {
    let h = h.wrapping_mul(K);
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_and_lengths_change_the_hash() {
        let one = hash_bytes(hash_bytes(0, b"ab"), b"c");
        let other = hash_bytes(hash_bytes(0, b"a"), b"bc");
        assert_ne!(one, other);
        assert_ne!(hash_bytes(0, b"a"), hash_bytes(0, b"a\0"));
        assert_ne!(hash_bytes(0, b""), hash_bytes(0, b"\0"));
        assert_eq!(hash_bytes(7, b"same text"), hash_bytes(7, b"same text"));
    }
}
