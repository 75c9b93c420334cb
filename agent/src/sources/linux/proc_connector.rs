//! Process events from the kernel's netlink process connector
//! (`NETLINK_CONNECTOR`, group `CN_IDX_PROC`): fork, exec and exit of every
//! process on the host, completed from `/proc/<pid>`.
//!
//! The connector reports pids only; everything else is read from `/proc`
//! after the fact, so a process that exits first is reported with what is
//! known (pid, parent pid from its fork) and counted in `proc_read_failures`.
//! Pids are those of the initial PID namespace (the connector refuses
//! listeners in other namespaces).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsl::event::{Category, EventType, Text};

use super::entity::Attrs;
use super::procfs::{self, ProcInfo};
use super::sockets::SocketPoller;
use super::sys::{cvt, owned, wait_readable, EventFd};
use super::{sys, Shared, SourceError};

const NETLINK_CONNECTOR: libc::c_int = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_CN_MCAST_IGNORE: u32 = 2;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const CN_MSG_LEN: usize = 20;
/// `what`, `cpu`, `timestamp_ns` before the `event_data` union.
const PROC_EVENT_HDR: usize = 16;

const PROC_EVENT_NONE: u32 = 0;
const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

const RCVBUF: libc::c_int = 8 << 20;
const ACK_TIMEOUT: Duration = Duration::from_secs(1);

/// One decoded `struct proc_event` (pids as the kernel's `pid_t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProcEvent {
    /// Reply to a (un)subscribe request: `ack` is the request's `ack` + 1,
    /// `err` a positive errno or 0.
    Ack { ack: u32, err: u32 },
    Fork {
        parent_pid: i32,
        parent_tgid: i32,
        child_pid: i32,
        child_tgid: i32,
    },
    Exec {
        pid: i32,
        tgid: i32,
        /// Kernel `CLOCK_MONOTONIC` time of the exec.
        ts_ns: u64,
    },
    Exit {
        pid: i32,
        tgid: i32,
        /// Wait status (`(code << 8)` or signal number).
        exit_code: u32,
        /// Parent fields exist since Linux 4.x; `None` on older kernels.
        parent_tgid: Option<i32>,
    },
    /// uid/gid/sid/ptrace/comm/coredump changes: not reported.
    Other { what: u32 },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Decodes one netlink datagram (possibly several `nlmsghdr`s) into events.
/// Messages that are short, truncated, of another connector id or of an
/// unknown layout are skipped and counted in the returned malformed count.
pub(crate) fn parse_datagram(buf: &[u8], out: &mut Vec<ProcEvent>) -> usize {
    let mut malformed = 0;
    let mut off = 0;
    while off < buf.len() {
        let (Some(len), Some(kind)) = (u32_at(buf, off), u16_at(buf, off + 4)) else {
            malformed += 1; // trailing bytes too short for a header
            break;
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > buf.len() - off {
            malformed += 1;
            break;
        }
        let payload = &buf[off + NLMSG_HDRLEN..off + len];
        match kind {
            NLMSG_DONE => match parse_cn_msg(payload) {
                Some(Some(ev)) => out.push(ev),
                Some(None) => {}
                None => malformed += 1,
            },
            NLMSG_ERROR => malformed += 1,
            _ => {}
        }
        // NLMSG_ALIGN
        off = off.saturating_add((len + 3) & !3);
    }
    malformed
}

/// `Some(None)`: a well-formed message for another connector; `None`: junk.
fn parse_cn_msg(p: &[u8]) -> Option<Option<ProcEvent>> {
    let idx = u32_at(p, 0)?;
    let val = u32_at(p, 4)?;
    let ack = u32_at(p, 12)?;
    let dlen = u16_at(p, 16)? as usize;
    if idx != CN_IDX_PROC || val != CN_VAL_PROC {
        return Some(None);
    }
    let data = p.get(CN_MSG_LEN..CN_MSG_LEN + dlen)?;
    parse_proc_event(data, ack).map(Some)
}

/// Decodes a `struct proc_event` from its bytes.
pub(crate) fn parse_proc_event(d: &[u8], ack: u32) -> Option<ProcEvent> {
    let what = u32_at(d, 0)?;
    if d.len() < PROC_EVENT_HDR {
        return None;
    }
    let e = PROC_EVENT_HDR;
    Some(match what {
        PROC_EVENT_NONE => ProcEvent::Ack {
            ack,
            err: u32_at(d, e).unwrap_or(0),
        },
        PROC_EVENT_FORK => ProcEvent::Fork {
            parent_pid: i32_at(d, e)?,
            parent_tgid: i32_at(d, e + 4)?,
            child_pid: i32_at(d, e + 8)?,
            child_tgid: i32_at(d, e + 12)?,
        },
        PROC_EVENT_EXEC => ProcEvent::Exec {
            pid: i32_at(d, e)?,
            tgid: i32_at(d, e + 4)?,
            ts_ns: u64::from_ne_bytes(d.get(8..16)?.try_into().ok()?),
        },
        PROC_EVENT_EXIT => ProcEvent::Exit {
            pid: i32_at(d, e)?,
            tgid: i32_at(d, e + 4)?,
            exit_code: u32_at(d, e + 8)?,
            // exit_signal at e + 12, parent_pid at e + 16.
            parent_tgid: i32_at(d, e + 20),
        },
        what => ProcEvent::Other { what },
    })
}

/// ECS-style exit code from a wait status: the exit status, or 128 + signal
/// for a process killed by a signal (as shells report it).
pub(crate) fn exit_code_from_status(status: u32) -> i32 {
    let sig = status & 0x7f;
    if sig == 0 {
        ((status >> 8) & 0xff) as i32
    } else {
        128 + sig as i32
    }
}

/// `struct sockaddr_nl`.
#[repr(C)]
#[derive(Default)]
struct SockaddrNl {
    family: libc::sa_family_t,
    pad: u16,
    pid: u32,
    groups: u32,
}

/// The subscribe/unsubscribe request: nlmsghdr + cn_msg + `proc_cn_mcast_op`.
/// The kernel answers with `ack = cookie + 1` (it overwrites `seq` with its
/// own per-CPU counter, so `ack` is the only field that identifies us).
fn mcast_request(op: u32, cookie: u32) -> Vec<u8> {
    let seq = cookie;
    let total = NLMSG_HDRLEN + CN_MSG_LEN + 4;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&NLMSG_DONE.to_ne_bytes()); // nlmsg_type
    m.extend_from_slice(&0u16.to_ne_bytes()); // nlmsg_flags
    m.extend_from_slice(&seq.to_ne_bytes()); // nlmsg_seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes()); // id.idx
    m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes()); // id.val
    m.extend_from_slice(&seq.to_ne_bytes()); // seq
    m.extend_from_slice(&cookie.to_ne_bytes()); // ack
    m.extend_from_slice(&4u16.to_ne_bytes()); // len
    m.extend_from_slice(&0u16.to_ne_bytes()); // flags
    m.extend_from_slice(&op.to_ne_bytes());
    m
}

fn err(reason: impl Into<String>) -> SourceError {
    SourceError::Start {
        what: "process connector",
        reason: reason.into(),
    }
}

fn describe(e: &io::Error, doing: &str) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            format!("{doing}: permission denied (needs root or CAP_NET_ADMIN)")
        }
        Some(libc::EPROTONOSUPPORT) | Some(libc::EAFNOSUPPORT) => {
            format!("{doing}: not supported by this kernel (CONFIG_CONNECTOR / CONFIG_PROC_EVENTS)")
        }
        _ => format!("{doing}: {e}"),
    }
}

/// A subscribed connector socket.
pub(crate) struct ProcConnector {
    fd: OwnedFd,
    cookie: u32,
    /// Events that arrived while waiting for the subscription's ack.
    early: Vec<ProcEvent>,
}

impl ProcConnector {
    /// Opens, binds and subscribes; succeeds only once the kernel has
    /// acknowledged the subscription.
    pub fn open() -> Result<ProcConnector, SourceError> {
        // SAFETY: socket takes no pointers; `owned` checks the result.
        let fd = owned(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                NETLINK_CONNECTOR,
            )
        })
        .map_err(|e| err(describe(&e, "socket(NETLINK_CONNECTOR)")))?;

        // A big receive buffer rides out bursts (a fork bomb, a build); the
        // forced variant ignores rmem_max and needs CAP_NET_ADMIN.
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: passes a pointer to a live c_int and its exact size.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&RCVBUF as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
        }

        let addr = SockaddrNl {
            family: libc::AF_NETLINK as libc::sa_family_t,
            // nl_pid 0: the kernel assigns a unique port id, so several
            // listeners in one process do not collide.
            groups: CN_IDX_PROC,
            ..Default::default()
        };
        // SAFETY: `addr` is a live, fully initialised sockaddr_nl and the
        // length passed is its size.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const SockaddrNl).cast(),
                size_of::<SockaddrNl>() as libc::socklen_t,
            )
        })
        .map_err(|e| err(describe(&e, "bind(CN_IDX_PROC)")))?;

        // Any value but u32::MAX (the reply carries cookie + 1).
        let cookie = (std::process::id() ^ (now_nanos() as u32)) & 0x7fff_ffff;
        let mut conn = ProcConnector {
            fd,
            cookie,
            early: Vec::new(),
        };
        conn.send_op(PROC_CN_MCAST_LISTEN)
            .map_err(|e| err(describe(&e, "subscribe (PROC_CN_MCAST_LISTEN)")))?;
        conn.await_ack()?;
        Ok(conn)
    }

    fn send_op(&self, op: u32) -> io::Result<()> {
        let msg = mcast_request(op, self.cookie);
        let kernel = SockaddrNl {
            family: libc::AF_NETLINK as libc::sa_family_t,
            ..Default::default()
        };
        // SAFETY: `msg` and `kernel` are live buffers passed with their
        // exact lengths.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&kernel as *const SockaddrNl).cast(),
                size_of::<SockaddrNl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn await_ack(&mut self) -> Result<(), SourceError> {
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut buf = vec![0u8; 16 * 1024];
        let mut evs = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(err(
                    "no acknowledgement from the kernel within 1 s (not in the initial PID/user \
                     namespace, CONFIG_PROC_EVENTS missing, or permission denied: needs root or CAP_NET_ADMIN)",
                ));
            }
            let [ready] =
                wait_readable([self.fd.as_raw_fd()], Some(left)).map_err(|e| err(e.to_string()))?;
            if !ready {
                continue;
            }
            while let Some(n) = self.recv(&mut buf).map_err(|e| err(describe(&e, "recv")))? {
                evs.clear();
                parse_datagram(&buf[..n], &mut evs);
                for ev in evs.drain(..) {
                    match ev {
                        ProcEvent::Ack { ack, err: code } if ack == self.cookie.wrapping_add(1) => {
                            if code == 0 {
                                return Ok(());
                            }
                            let e = io::Error::from_raw_os_error(code as i32);
                            return Err(err(describe(&e, "subscribe (PROC_CN_MCAST_LISTEN)")));
                        }
                        ProcEvent::Ack { .. } => {}
                        other => self.early.push(other),
                    }
                }
            }
        }
    }

    /// One datagram from the kernel, `None` when none is queued. Datagrams
    /// from user space (spoofing attempts) are dropped.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let mut from = SockaddrNl::default();
            let mut from_len = size_of::<SockaddrNl>() as libc::socklen_t;
            // SAFETY: `buf`, `from` and `from_len` are live and their sizes
            // are passed correctly.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut SockaddrNl).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) => Ok(None),
                    Some(libc::EINTR) => continue,
                    _ => Err(e),
                };
            }
            if from.pid != 0 {
                continue;
            }
            return Ok(Some(n as usize));
        }
    }
}

impl Drop for ProcConnector {
    fn drop(&mut self) {
        // Old kernels count listeners and keep generating events until told.
        let _ = self.send_op(PROC_CN_MCAST_IGNORE);
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn pid_u32(p: i32) -> Option<u32> {
    u32::try_from(p).ok().filter(|&p| p > 0)
}

/// Reads datagrams into a queue of decoded events.
struct Receiver {
    conn: ProcConnector,
    buf: Vec<u8>,
    scratch: Vec<ProcEvent>,
}

/// Bound on decoded-but-unprocessed events (the socket buffer holds the rest).
const MAX_PENDING: usize = 16_384;

impl Receiver {
    /// Moves every queued datagram's events into `pending`. Errors other
    /// than an overrun are returned (the reader gives up).
    fn drain(&mut self, pending: &mut VecDeque<ProcEvent>, sh: &Shared) -> io::Result<()> {
        while pending.len() < MAX_PENDING {
            match self.conn.recv(&mut self.buf) {
                Ok(Some(n)) => {
                    self.scratch.clear();
                    let bad = parse_datagram(&self.buf[..n], &mut self.scratch);
                    sh.counters.malformed.fetch_add(bad as u64, Relaxed);
                    pending.extend(self.scratch.drain(..));
                }
                Ok(None) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The kernel dropped events: the socket buffer
                    // overflowed. Exits may be among them, so table
                    // entries may now name dead or reused pids.
                    sh.counters.netlink_overruns.fetch_add(1, Relaxed);
                    sh.revalidate();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// An exec of `tgid` that the kernel timestamped no later than `before_ns`.
fn is_exec_of(ev: &ProcEvent, tgid: i32, before_ns: u64) -> bool {
    matches!(ev, ProcEvent::Exec { tgid: t, ts_ns, .. } if *t == tgid && *ts_ns <= before_ns)
}

/// The reader thread's body.
///
/// Exec events are completed from `/proc`, which shows the process as it is
/// *now*. When the same process has exec'd again before (or while) it was
/// read — `sh -c 'cmd; exec other'` — the read describes the later image, so
/// it is discarded and the earlier exec is reported with what is known (pid,
/// parent, entity id) and counted in `exec_superseded`: details are right or
/// absent, never borrowed from another program.
pub(crate) fn run(
    conn: ProcConnector,
    shared: Arc<Shared>,
    stop: Arc<EventFd>,
    sockets: Option<Arc<SocketPoller>>,
) {
    read_events(conn, shared.clone(), stop, sockets);
    // The table is no longer followed: other sub-sources must check /proc.
    shared.tracking.store(false, Relaxed);
}

fn read_events(
    mut conn: ProcConnector,
    shared: Arc<Shared>,
    stop: Arc<EventFd>,
    sockets: Option<Arc<SocketPoller>>,
) {
    let mut h = Handler {
        shared,
        sockets,
        fork_ppid: HashMap::new(),
    };
    let mut pending: VecDeque<ProcEvent> = std::mem::take(&mut conn.early).into();
    let mut rx = Receiver {
        conn,
        buf: vec![0u8; 64 * 1024],
        scratch: Vec::with_capacity(64),
    };
    loop {
        let timeout = (!pending.is_empty()).then_some(Duration::ZERO);
        match wait_readable([rx.conn.fd.as_raw_fd(), stop.raw()], timeout) {
            Ok([_, true]) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::error!("process connector: poll failed: {e}");
                return;
            }
        }
        if let Err(e) = rx.drain(&mut pending, &h.shared) {
            tracing::error!("process connector: recv failed: {e}");
            return;
        }
        // One batch, then check for stop again.
        for _ in 0..pending.len() {
            let Some(ev) = pending.pop_front() else { break };
            let ProcEvent::Exec { tgid, .. } = ev else {
                h.handle(ev);
                continue;
            };
            h.shared.counters.process.received.fetch_add(1, Relaxed);
            let Some(pid) = pid_u32(tgid) else { continue };
            let info = if pending.iter().any(|e| is_exec_of(e, tgid, u64::MAX)) {
                None
            } else {
                let info = procfs::read_process(pid);
                let read_done = sys::monotonic_ns();
                // An exec that happened before the reads ended, queued
                // meanwhile, makes them suspect.
                let _ = rx.drain(&mut pending, &h.shared);
                (!pending.iter().any(|e| is_exec_of(e, tgid, read_done))).then_some(info)
            };
            h.exec(pid, info);
        }
    }
}

struct Handler {
    shared: Arc<Shared>,
    sockets: Option<Arc<SocketPoller>>,
    /// Parents of fork children that were gone before `/proc` could be
    /// read (so they have no table entry): their exec/exit still name it.
    fork_ppid: HashMap<u32, u32>,
}

const MAX_FORK_PPID: usize = 4096;

impl Handler {
    fn handle(&mut self, ev: ProcEvent) {
        let c = &self.shared.counters.process;
        match ev {
            ProcEvent::Ack { .. } => {}
            ProcEvent::Other { .. } => {}
            ProcEvent::Fork {
                parent_tgid,
                child_pid,
                child_tgid,
                ..
            } => {
                // Thread creation shares the parent's tgid: not a process.
                if child_pid != child_tgid || child_tgid == parent_tgid {
                    return;
                }
                c.received.fetch_add(1, Relaxed);
                if let (Some(child), Some(parent)) = (pid_u32(child_tgid), pid_u32(parent_tgid)) {
                    self.fork(child, parent);
                }
            }
            // Handled by `run`, which decides whether /proc is still valid.
            ProcEvent::Exec { .. } => {}
            ProcEvent::Exit {
                pid,
                tgid,
                exit_code,
                parent_tgid,
            } => {
                if pid != tgid {
                    return;
                }
                c.received.fetch_add(1, Relaxed);
                if let Some(p) = pid_u32(tgid) {
                    self.exit(p, exit_code, parent_tgid.and_then(pid_u32));
                }
            }
        }
    }

    fn fork(&mut self, child: u32, parent: u32) {
        let sh = &self.shared;
        let parent_view = sh.lookup(parent);
        let mut ev = sh.base_event(Category::Process, vec![EventType::Start], "fork");
        // The child runs the parent's image until it execs.
        let inherited = Attrs {
            ppid: Some(parent),
            name: parent_view.as_ref().and_then(|p| p.attrs.name.clone()),
            executable: parent_view
                .as_ref()
                .and_then(|p| p.attrs.executable.clone()),
            uid: parent_view.as_ref().and_then(|p| p.attrs.uid),
        };
        let entry = match procfs::read_stat(child) {
            Some(st) => {
                let mut a = inherited.clone();
                a.name = a.name.or(Some(st.comm.into()));
                Some(sh.table().observe(child, st.start_ticks, a))
            }
            None => {
                sh.counters.proc_read_failures.fetch_add(1, Relaxed);
                if self.fork_ppid.len() >= MAX_FORK_PPID {
                    self.fork_ppid.clear();
                }
                self.fork_ppid.insert(child, parent);
                None
            }
        };
        let attrs = entry.as_ref().map(|e| &e.attrs).unwrap_or(&inherited);
        ev.process.pid = Some(child);
        ev.process.entity_id = entry.as_ref().map(|e| e.id.entity_id.clone());
        ev.process.name = attrs.name.clone();
        ev.process.executable = attrs.executable.clone();
        ev.user.id = attrs.uid.map(|u| u.to_string().into());
        ev.process.parent = Some(Arc::new(Shared::parent_process(
            parent,
            parent_view.as_ref(),
        )));
        sh.emit(&sh.counters.process, ev);
    }

    /// `info`: what `/proc` showed, `None` when superseded by a later exec.
    fn exec(&self, pid: u32, info: Option<ProcInfo>) {
        let sh = &self.shared;
        // /proc still shows this image: its environment is this exec's.
        let current = info.as_ref().is_some_and(ProcInfo::complete);
        let info = match info {
            Some(info) if info.complete() => {
                sh.exec_read_whole(pid, info.exe.as_deref().unwrap_or_default());
                info
            }
            Some(mut info) => {
                sh.counters.proc_read_failures.fetch_add(1, Relaxed);
                if info.exe.is_none() {
                    // Gone before /proc was read: the image fanotify saw
                    // it open for exec.
                    info.exe = sh.exec_image(pid);
                    if info.exe.is_some() {
                        sh.counters.exec_images_used.fetch_add(1, Relaxed);
                    }
                }
                info
            }
            None => {
                sh.counters.exec_superseded.fetch_add(1, Relaxed);
                ProcInfo::default()
            }
        };
        let status = info.status.clone().unwrap_or_default();
        let attrs = Attrs {
            ppid: status
                .ppid
                .or(info.stat.as_ref().map(|s| s.ppid))
                .or(self.fork_ppid.get(&pid).copied()),
            name: info.name().map(Into::into),
            executable: info.exe.as_deref().map(Into::into),
            uid: status.uid,
        };
        let entry = sh.table().exec(
            pid,
            info.stat.as_ref().map(|s| s.start_ticks),
            attrs.clone(),
        );
        let attrs = entry.as_ref().map(|e| e.attrs.clone()).unwrap_or(attrs);

        let mut ev = sh.base_event(Category::Process, vec![EventType::Start], "exec");
        let p = &mut ev.process;
        p.pid = Some(pid);
        p.entity_id = entry.as_ref().map(|e| e.id.entity_id.clone());
        p.name = attrs.name.clone();
        p.executable = attrs.executable.clone();
        p.command_line = (!info.args.is_empty())
            .then(|| info.args.join(" "))
            .map(Into::into);
        p.args = info.args.into_iter().map(Text::from).collect();
        p.working_directory = info.cwd.map(Into::into);
        if let Some(ppid) = attrs.ppid.filter(|&pp| pp > 0) {
            let view = sh.lookup(ppid);
            p.parent = Some(Arc::new(Shared::parent_process(ppid, view.as_ref())));
        }
        ev.user.id = attrs.uid.map(|u| u.to_string().into());
        if current && !sh.env_vars.is_empty() {
            let env =
                crate::sources::es::mapping::allowed_env(&sh.env_vars, procfs::read_environ(pid));
            if !env.is_empty() {
                ev.extra
                    .insert("process.env_vars", dsl::event::ExtraValue::List(env));
            }
        }
        sh.emit(&sh.counters.process, ev);
        if let Some(s) = &self.sockets {
            s.nudge();
        }
    }

    fn exit(&mut self, pid: u32, status: u32, parent: Option<u32>) {
        let sh = &self.shared;
        let entry = sh.table().exit(pid);
        let forked_from = self.fork_ppid.remove(&pid);
        let mut ev = sh.base_event(Category::Process, vec![EventType::End], "exit");
        let p = &mut ev.process;
        p.pid = Some(pid);
        p.exit_code = Some(exit_code_from_status(status));
        if let Some(e) = &entry {
            p.entity_id = Some(e.id.entity_id.clone());
            p.name = e.attrs.name.clone();
            p.executable = e.attrs.executable.clone();
            ev.user.id = e.attrs.uid.map(|u| u.to_string().into());
        } else if let Some(st) = procfs::read_stat(pid) {
            // Never seen (e.g. lost fork): the zombie's stat may still be there.
            p.entity_id = Some(sh.entity_id(pid, st.start_ticks, 0).into());
            p.name = Some(st.comm.into());
        }
        let ppid = parent
            .or(entry.as_ref().and_then(|e| e.attrs.ppid))
            .or(forked_from);
        if let Some(ppid) = ppid.filter(|&pp| pp > 0) {
            let view = sh.table().get(ppid).cloned();
            p.parent = Some(Arc::new(Shared::parent_process(ppid, view.as_ref())));
        }
        sh.emit(&sh.counters.process, ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlmsg(payload: &[u8], kind: u16) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn cn(idx: u32, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        for v in [idx, CN_VAL_PROC, seq, ack] {
            m.extend_from_slice(&v.to_ne_bytes());
        }
        m.extend_from_slice(&(data.len() as u16).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(data);
        m
    }

    fn proc_ev(what: u32, words: &[u32]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&what.to_ne_bytes());
        d.extend_from_slice(&1u32.to_ne_bytes()); // cpu
        d.extend_from_slice(&123_456_789u64.to_ne_bytes());
        for w in words {
            d.extend_from_slice(&w.to_ne_bytes());
        }
        d
    }

    fn parse(buf: &[u8]) -> (Vec<ProcEvent>, usize) {
        let mut out = Vec::new();
        let bad = parse_datagram(buf, &mut out);
        (out, bad)
    }

    #[test]
    fn fork_exec_exit() {
        let mut dgram = nlmsg(
            &cn(
                CN_IDX_PROC,
                1,
                0,
                &proc_ev(PROC_EVENT_FORK, &[10, 10, 11, 11]),
            ),
            NLMSG_DONE,
        );
        dgram.extend(nlmsg(
            &cn(CN_IDX_PROC, 2, 0, &proc_ev(PROC_EVENT_EXEC, &[11, 11])),
            NLMSG_DONE,
        ));
        dgram.extend(nlmsg(
            &cn(
                CN_IDX_PROC,
                3,
                0,
                &proc_ev(PROC_EVENT_EXIT, &[11, 11, 9, 17, 10, 10]),
            ),
            NLMSG_DONE,
        ));
        let (evs, bad) = parse(&dgram);
        assert_eq!(bad, 0);
        assert_eq!(
            evs,
            [
                ProcEvent::Fork {
                    parent_pid: 10,
                    parent_tgid: 10,
                    child_pid: 11,
                    child_tgid: 11
                },
                ProcEvent::Exec {
                    pid: 11,
                    tgid: 11,
                    ts_ns: 123_456_789
                },
                ProcEvent::Exit {
                    pid: 11,
                    tgid: 11,
                    exit_code: 9,
                    parent_tgid: Some(10)
                },
            ]
        );
    }

    #[test]
    fn old_kernel_exit_and_ack_and_other() {
        let (evs, bad) = parse(&nlmsg(
            &cn(
                CN_IDX_PROC,
                0,
                0,
                &proc_ev(PROC_EVENT_EXIT, &[5, 5, 256, 17]),
            ),
            NLMSG_DONE,
        ));
        assert_eq!(bad, 0);
        assert_eq!(
            evs,
            [ProcEvent::Exit {
                pid: 5,
                tgid: 5,
                exit_code: 256,
                parent_tgid: None
            }]
        );
        let (evs, _) = parse(&nlmsg(
            &cn(CN_IDX_PROC, 77, 1, &proc_ev(PROC_EVENT_NONE, &[1])),
            NLMSG_DONE,
        ));
        assert_eq!(evs, [ProcEvent::Ack { ack: 1, err: 1 }]);
        let (evs, _) = parse(&nlmsg(
            &cn(CN_IDX_PROC, 0, 0, &proc_ev(0x200, &[1, 1, 0x41414141])),
            NLMSG_DONE,
        ));
        assert_eq!(evs, [ProcEvent::Other { what: 0x200 }]);
    }

    #[test]
    fn short_and_odd_messages_never_panic() {
        let good = nlmsg(
            &cn(CN_IDX_PROC, 1, 0, &proc_ev(PROC_EVENT_FORK, &[1, 1, 2, 2])),
            NLMSG_DONE,
        );
        // Every truncation of a valid datagram.
        for cut in 0..good.len() {
            let (evs, _) = parse(&good[..cut]);
            assert!(evs.is_empty(), "cut {cut}");
        }
        // Fork body too short for its fields, though the lengths agree.
        let (evs, bad) = parse(&nlmsg(
            &cn(CN_IDX_PROC, 1, 0, &proc_ev(PROC_EVENT_FORK, &[1, 1])),
            NLMSG_DONE,
        ));
        assert!(evs.is_empty());
        assert_eq!(bad, 1);
        // cn_msg.len larger than the payload.
        let mut lying = cn(CN_IDX_PROC, 1, 0, &proc_ev(PROC_EVENT_EXEC, &[3, 3]));
        lying[16..18].copy_from_slice(&500u16.to_ne_bytes());
        assert_eq!(parse(&nlmsg(&lying, NLMSG_DONE)), (vec![], 1));
        // nlmsg_len smaller than the header, or beyond the buffer.
        let mut tiny = good.clone();
        tiny[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(parse(&tiny), (vec![], 1));
        let mut huge = good.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(parse(&huge), (vec![], 1));
        // Other connector ids and netlink control messages are ignored.
        let (evs, bad) = parse(&nlmsg(
            &cn(7, 1, 0, &proc_ev(PROC_EVENT_EXEC, &[3, 3])),
            NLMSG_DONE,
        ));
        assert!(evs.is_empty());
        assert_eq!(bad, 0);
        assert_eq!(parse(&nlmsg(&[], 1)), (vec![], 0));
        // Pseudo-random junk.
        let mut x: u32 = 0x1234_5678;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = parse(&junk);
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code_from_status(0), 0);
        assert_eq!(exit_code_from_status(3 << 8), 3);
        assert_eq!(exit_code_from_status(9), 137);
        assert_eq!(exit_code_from_status(15 | 0x80), 143);
    }

    #[test]
    fn request_layout() {
        let m = mcast_request(PROC_CN_MCAST_LISTEN, 42);
        assert_eq!(m.len(), 40);
        assert_eq!(u32_at(&m, 0), Some(40));
        assert_eq!(u16_at(&m, 4), Some(NLMSG_DONE));
        assert_eq!(u32_at(&m, 16), Some(CN_IDX_PROC));
        assert_eq!(u32_at(&m, 24), Some(42));
        assert_eq!(u32_at(&m, 28), Some(42));
        assert_eq!(u16_at(&m, 32), Some(4));
        assert_eq!(u32_at(&m, 36), Some(PROC_CN_MCAST_LISTEN));
    }
}
