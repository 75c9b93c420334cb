//! A spool never fills the disk (issue 25, item 3): one larger than the
//! free space is refused and leaves no file; a header claiming more than the
//! disk holds (its checksum recomputed, as a hostile edit would) is refused
//! too instead of growing the file until ENOSPC.

use std::os::unix::io::AsRawFd;

use vigil_spool::{SpoolConfig, SpoolError, SpoolWriter, MAX_CAPACITY};

fn free_bytes(dir: &std::path::Path) -> u64 {
    let f = std::fs::File::open(dir).unwrap();
    // SAFETY: fstatvfs fills the struct we own from a valid descriptor.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstatvfs(f.as_raw_fd(), &mut st) }, 0);
    #[allow(clippy::unnecessary_cast)]
    let free = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
    free
}

#[test]
fn a_spool_larger_than_the_free_space_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let free = free_bytes(dir.path());
    if free >= MAX_CAPACITY {
        eprintln!("skipped: {free} bytes free, more than the largest spool ({MAX_CAPACITY})");
        return;
    }
    let path = dir.path().join("big.spool");
    let err = SpoolWriter::open_or_create(
        &path,
        SpoolConfig {
            capacity_bytes: MAX_CAPACITY,
            ..SpoolConfig::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, SpoolError::NoSpace { .. }), "{err}");
    assert!(err.to_string().contains("no room"), "{err}");
    assert!(!path.exists(), "a refused spool left its file behind");
    // The free space is what it was (give or take other writers).
    assert!(free_bytes(dir.path()) + (64 << 20) >= free);
}

#[test]
fn a_header_claiming_more_than_the_disk_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let free = free_bytes(dir.path());
    if free >= MAX_CAPACITY {
        eprintln!("skipped: {free} bytes free, more than the largest spool ({MAX_CAPACITY})");
        return;
    }
    let path = dir.path().join("small.spool");
    drop(
        SpoolWriter::open_or_create(
            &path,
            SpoolConfig {
                capacity_bytes: 1 << 20,
                ..SpoolConfig::default()
            },
        )
        .unwrap(),
    );
    let before = std::fs::metadata(&path).unwrap().len();
    // Claim 1 TiB, with the header's checksum made to agree.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[16..24].copy_from_slice(&MAX_CAPACITY.to_le_bytes());
    let crc = crc32fast::hash(&bytes[0..44]);
    bytes[44..48].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = SpoolWriter::open_or_create(&path, SpoolConfig::default()).unwrap_err();
    assert!(matches!(err, SpoolError::NoSpace { .. }), "{err}");
    // Not grown, and still there for an admin to look at.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
}
