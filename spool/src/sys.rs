//! Platform helpers: advisory writer lock and file preallocation.

use std::fs::File;
use std::io;

/// Outcome of trying to take the writer lock.
pub(crate) enum LockResult {
    Locked,
    Busy,
}

/// Takes a non-blocking exclusive `flock` on `file`. The lock lives as long
/// as the open file description (released when the writer's `File` closes or
/// the process dies).
#[cfg(unix)]
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<LockResult> {
    use std::os::unix::io::AsRawFd;
    loop {
        // SAFETY: flock on a valid, owned file descriptor; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(LockResult::Locked);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(code) if code == libc::EWOULDBLOCK || code == libc::EAGAIN => {
                return Ok(LockResult::Busy)
            }
            _ => return Err(err),
        }
    }
}

#[cfg(not(unix))]
pub(crate) fn try_lock_exclusive(_file: &File) -> io::Result<LockResult> {
    // No advisory locking on this platform: single-writer is the caller's duty.
    Ok(LockResult::Locked)
}

/// Bytes an unprivileged writer may still allocate on `file`'s filesystem.
#[cfg(unix)]
pub fn free_bytes(file: &File) -> io::Result<u64> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: fstatvfs fills the struct we own from a valid descriptor.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ by platform
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(not(unix))]
pub fn free_bytes(_file: &File) -> io::Result<u64> {
    Ok(u64::MAX)
}

/// Grows `file` to `len` bytes with disk space reserved where the platform
/// allows it, so that later stores through the mapping cannot hit ENOSPC
/// (which would be a SIGBUS).
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::unix::io::AsRawFd;
        let off_len = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large"))?;
        loop {
            // SAFETY: posix_fallocate on a valid, owned descriptor.
            let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, off_len) };
            match rc {
                0 => break,
                libc::EINTR => continue,
                // Filesystem without fallocate support: fall back to set_len.
                libc::EOPNOTSUPP | libc::EINVAL => break,
                code => return Err(io::Error::from_raw_os_error(code)),
            }
        }
    }
    #[cfg(target_vendor = "apple")]
    {
        use std::os::unix::io::AsRawFd;
        let cur = file.metadata()?.len();
        if len > cur {
            let mut store = libc::fstore_t {
                fst_flags: libc::F_ALLOCATEALL,
                fst_posmode: libc::F_PEOFPOSMODE,
                fst_offset: 0,
                fst_length: libc::off_t::try_from(len - cur)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large"))?,
                fst_bytesalloc: 0,
            };
            // SAFETY: F_PREALLOCATE reads/writes the fstore_t we own for the
            // duration of the call.
            let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_PREALLOCATE, &mut store) };
            if rc == -1 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::ENOTSUP) {
                    return Err(err);
                }
            }
        }
    }
    if file.metadata()?.len() < len {
        file.set_len(len)?;
    }
    Ok(())
}
