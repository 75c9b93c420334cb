#![no_main]
//! Arbitrary bytes as a block: must return an error or a fully valid block,
//! never panic, never allocate beyond the header's (capped) raw length.

use libfuzzer_sys::fuzz_target;
use vigil_spool::{decode_block_payload, ChecksumPolicy};

fuzz_target!(|data: &[u8]| {
    // Checksums skipped so the fuzzer reaches the decompressor and the
    // record decoder; the verifying path is exercised too.
    for policy in [ChecksumPolicy::Skip, ChecksumPolicy::Verify { file_id: 0 }] {
        if let Ok(block) = decode_block_payload(data, policy) {
            for rec in block.records() {
                let rec = rec.expect("decoded blocks are fully validated");
                let _ = (
                    rec.ts_ns,
                    rec.keys.iter().fold(0u64, u64::wrapping_add),
                    rec.data.len(),
                );
            }
        }
    }
});
