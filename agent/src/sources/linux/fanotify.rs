//! File events from fanotify: writes (`FAN_CLOSE_WRITE`) and executions
//! (`FAN_OPEN_EXEC`) on whole mounts.
//!
//! The group is a notification-only, fd-reporting one: every event carries
//! an fd opened on the file, whose `/proc/self/fd` link gives the path. The
//! fd is always closed. Creations, deletions and renames (`FAN_CREATE`,
//! `FAN_DELETE`, `FAN_MOVE*`) exist only in FID reporting mode (no fd, a file
//! handle plus a name that must be resolved with `open_by_handle_at`) and are
//! not collected. Mount marks do not cover other mounts (submounts, other
//! mount namespaces); `FanotifyMark::Filesystem` covers every mount of the
//! marked filesystems instead.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use dsl::event::{Category, EventType, File};

use super::sys::{cvt, owned, wait_readable, EventFd};
use super::{FanotifyMark, Shared, SourceError};

/// `sizeof(struct fanotify_event_metadata)`.
const METADATA_LEN: usize = 24;
const METADATA_VERSION: u8 = 3;

/// One record of `struct fanotify_event_metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FanRecord {
    pub mask: u64,
    /// An fd open on the file, owned by the reader, or `FAN_NOFD` (-1).
    pub fd: i32,
    pub pid: i32,
}

/// Decodes the records of one `read()`. Parsing stops at the first record
/// whose length or version is inconsistent (reported by `false`); records
/// before it are returned so that their fds are still closed.
pub(crate) fn parse_events(buf: &[u8]) -> (Vec<FanRecord>, bool) {
    let mut out = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        let rec = &buf[off..];
        if rec.len() < METADATA_LEN {
            return (out, false);
        }
        let event_len = u32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]) as usize;
        let vers = rec[4];
        let metadata_len = u16::from_ne_bytes([rec[6], rec[7]]) as usize;
        if vers != METADATA_VERSION
            || event_len < METADATA_LEN
            || event_len > rec.len()
            || metadata_len < METADATA_LEN
        {
            return (out, false);
        }
        let mut mask = [0u8; 8];
        mask.copy_from_slice(&rec[8..16]);
        out.push(FanRecord {
            mask: u64::from_ne_bytes(mask),
            fd: i32::from_ne_bytes([rec[16], rec[17], rec[18], rec[19]]),
            pid: i32::from_ne_bytes([rec[20], rec[21], rec[22], rec[23]]),
        });
        off += event_len;
    }
    (out, true)
}

/// The actions one record stands for (the kernel merges events of the same
/// file by the same process into one record).
pub(crate) fn actions(mask: u64) -> impl Iterator<Item = (EventType, &'static str)> {
    [
        (libc::FAN_OPEN_EXEC, EventType::Access, "open_exec"),
        (libc::FAN_CLOSE_WRITE, EventType::Change, "modification"),
    ]
    .into_iter()
    .filter(move |(bit, _, _)| mask & bit != 0)
    .map(|(_, t, a)| (t, a))
}

fn err(reason: impl Into<String>) -> SourceError {
    SourceError::Start {
        what: "fanotify",
        reason: reason.into(),
    }
}

fn describe(e: &io::Error, doing: &str) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            format!("{doing}: permission denied (needs root or CAP_SYS_ADMIN)")
        }
        Some(libc::ENOSYS) => format!("{doing}: not supported by this kernel (CONFIG_FANOTIFY)"),
        _ => format!("{doing}: {e}"),
    }
}

pub(crate) struct Fanotify {
    fd: OwnedFd,
    pub marked: Vec<PathBuf>,
}

impl Fanotify {
    pub fn open(paths: &[PathBuf], kind: FanotifyMark) -> Result<Fanotify, SourceError> {
        if paths.is_empty() {
            return Err(err("no paths to watch"));
        }
        // SAFETY: fanotify_init takes no pointers; `owned` checks the result.
        let fd = owned(unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK,
                (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as libc::c_uint,
            )
        })
        .map_err(|e| err(describe(&e, "fanotify_init")))?;
        let kind_flag = match kind {
            FanotifyMark::Mount => libc::FAN_MARK_MOUNT,
            FanotifyMark::Filesystem => libc::FAN_MARK_FILESYSTEM,
        };
        let mut marked = Vec::new();
        for path in paths {
            let c = CString::new(path.as_os_str().as_bytes())
                .map_err(|_| err(format!("path {} contains a NUL byte", path.display())))?;
            let mark = |mask: u64| {
                // SAFETY: `c` is a live NUL-terminated path; the fd is ours.
                cvt(unsafe {
                    libc::fanotify_mark(
                        fd.as_raw_fd(),
                        libc::FAN_MARK_ADD | kind_flag,
                        mask,
                        libc::AT_FDCWD,
                        c.as_ptr(),
                    )
                })
            };
            match mark(libc::FAN_CLOSE_WRITE | libc::FAN_OPEN_EXEC) {
                Ok(_) => {}
                // FAN_OPEN_EXEC needs Linux 5.0.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    mark(libc::FAN_CLOSE_WRITE)
                        .map_err(|e| err(describe(&e, &format!("mark {}", path.display()))))?;
                    tracing::warn!(
                        "fanotify: FAN_OPEN_EXEC unsupported on {}; writes only",
                        path.display()
                    );
                }
                Err(e) => return Err(err(describe(&e, &format!("mark {}", path.display())))),
            }
            marked.push(path.clone());
        }
        Ok(Fanotify { fd, marked })
    }
}

/// The reader thread's body.
pub(crate) fn run(fan: Fanotify, shared: Arc<Shared>, stop: Arc<EventFd>) {
    // Records are 24 bytes; 4096 of them per read.
    let mut buf = vec![0u8; 96 * 1024];
    loop {
        match wait_readable([fan.fd.as_raw_fd(), stop.raw()], None) {
            Ok([_, true]) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::error!("fanotify: poll failed: {e}");
                return;
            }
        }
        loop {
            // SAFETY: reads into a live buffer of the length passed.
            let n = unsafe { libc::read(fan.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    Some(libc::EINTR) => continue,
                    // The kernel could not open a file for an event (e.g.
                    // EMFILE, or a file that refuses opens): the event is lost.
                    _ => {
                        shared.counters.fanotify_errors.fetch_add(1, Relaxed);
                        tracing::debug!("fanotify: read failed: {e}");
                        break;
                    }
                }
            }
            let n = n as usize;
            let (records, consistent) = parse_events(&buf[..n]);
            if !consistent {
                shared.counters.malformed.fetch_add(1, Relaxed);
            }
            for r in records {
                handle(&shared, r);
            }
        }
    }
}

fn handle(sh: &Shared, r: FanRecord) {
    // Own every fd first so that it is closed whatever happens next.
    let fd = (r.fd >= 0).then(|| {
        // SAFETY: the kernel installed this fd in our table for this event
        // and hands its ownership to the reader; nothing else refers to it.
        unsafe { OwnedFd::from_raw_fd(r.fd) }
    });
    let c = &sh.counters.file;
    if r.mask & libc::FAN_Q_OVERFLOW != 0 {
        sh.counters.fanotify_overflows.fetch_add(1, Relaxed);
        return;
    }
    c.received.fetch_add(1, Relaxed);
    let Some(fd) = fd else { return };
    let pid = u32::try_from(r.pid).unwrap_or(0);
    if pid == sh.own_pid {
        c.ignored.fetch_add(1, Relaxed);
        return;
    }
    let Some(path) = super::procfs::read_link(&format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
        return;
    };
    // The first bytes of a written file (Elastic's `file.Ext.header_bytes`:
    // Mach-O, ELF, scripts), read through the fd the kernel handed over:
    // the file as it was closed, whatever its path does next.
    let file = std::fs::File::from(fd);
    let header = (r.mask & libc::FAN_CLOSE_WRITE != 0 && sh.header_budget.take())
        .then(|| header_bytes(&file))
        .flatten();
    drop(file);
    let path = path.strip_suffix(" (deleted)").unwrap_or(&path).to_string();
    if r.mask & libc::FAN_OPEN_EXEC != 0 && pid > 0 && sh.tracking.load(Relaxed) {
        // The image the kernel handed over: an exec whose process is gone
        // before /proc is read still gets its executable from this.
        sh.note_exec_image(pid, &path);
    }
    let view = (pid > 0).then(|| sh.lookup(pid)).flatten();
    for (ty, action) in actions(r.mask) {
        let mut ev = sh.base_event(Category::File, vec![ty], action);
        ev.file = Some(File::from_path(&path));
        if let (Some(h), EventType::Change) = (&header, ty) {
            ev.extra.insert(
                "file.Ext.header_bytes",
                dsl::event::ExtraValue::Str(h.as_str().into()),
            );
        }
        if pid > 0 {
            ev.process = Shared::process_from_view(pid, view.as_ref());
            ev.user.id = view
                .as_ref()
                .and_then(|v| v.attrs.uid)
                .map(|u| u.to_string().into());
        }
        sh.emit(c, ev);
    }
}

/// The first 16 bytes of the file, as lower-case hex (empty files: none).
fn header_bytes(file: &std::fs::File) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 16];
    let n = file.read_at(&mut buf, 0).ok()?;
    (n > 0).then(|| buf[..n].iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(mask: u64, fd: i32, pid: i32, extra: usize) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((METADATA_LEN + extra) as u32).to_ne_bytes());
        b.push(METADATA_VERSION);
        b.push(0);
        b.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        b.extend_from_slice(&mask.to_ne_bytes());
        b.extend_from_slice(&fd.to_ne_bytes());
        b.extend_from_slice(&pid.to_ne_bytes());
        b.extend(std::iter::repeat_n(0xee, extra));
        b
    }

    #[test]
    fn parses_records() {
        let mut buf = rec(libc::FAN_CLOSE_WRITE, 7, 100, 0);
        buf.extend(rec(libc::FAN_OPEN_EXEC | libc::FAN_CLOSE_WRITE, 8, 101, 16)); // with an info record
        buf.extend(rec(libc::FAN_Q_OVERFLOW, -1, 0, 0));
        let (r, ok) = parse_events(&buf);
        assert!(ok);
        assert_eq!(
            r,
            [
                FanRecord {
                    mask: libc::FAN_CLOSE_WRITE,
                    fd: 7,
                    pid: 100
                },
                FanRecord {
                    mask: libc::FAN_OPEN_EXEC | libc::FAN_CLOSE_WRITE,
                    fd: 8,
                    pid: 101
                },
                FanRecord {
                    mask: libc::FAN_Q_OVERFLOW,
                    fd: -1,
                    pid: 0
                },
            ]
        );
        let acts: Vec<_> = actions(r[1].mask).collect();
        assert_eq!(
            acts,
            [
                (EventType::Access, "open_exec"),
                (EventType::Change, "modification")
            ]
        );
        assert_eq!(actions(libc::FAN_Q_OVERFLOW).count(), 0);
    }

    #[test]
    fn bad_records_stop_parsing_but_keep_earlier_fds() {
        let good = rec(libc::FAN_CLOSE_WRITE, 7, 100, 0);
        for cut in 1..good.len() {
            let mut buf = good.clone();
            buf.extend_from_slice(&good[..cut]);
            let (r, ok) = parse_events(&buf);
            assert_eq!(r.len(), 1, "cut {cut}");
            assert!(!ok);
        }
        let mut wrong_version = good.clone();
        wrong_version[4] = 2;
        assert_eq!(parse_events(&wrong_version), (vec![], false));
        let mut zero_len = good.clone();
        zero_len[0..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(parse_events(&zero_len), (vec![], false));
        let mut too_long = good;
        too_long[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(parse_events(&too_long), (vec![], false));
        assert_eq!(parse_events(&[]), (vec![], true));
    }
}
