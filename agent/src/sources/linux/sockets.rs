//! Outbound TCP connections, found by polling `/proc/net/tcp{,6}` and
//! attributed to processes through their `/proc/<pid>/fd` socket links.
//!
//! Polling has blind spots, by design of the no-eBPF constraint:
//! - a connection opened *and closed* between two polls (default 200 ms) is
//!   never seen — e.g. a quick HTTP request to a nearby host, a port scan's
//!   refused SYNs, or a `connect()` that fails fast;
//! - a connection whose process exits (or closes the fd) before the fd scan
//!   is reported without a process (`unattributed_connections`);
//! - connections in other network namespaces (containers) are not in this
//!   namespace's tables;
//! - connections already open when the source starts are taken as a
//!   baseline and not reported.
//!
//! Inbound connections are recognised by their local port being one that is
//! (or was in the last minute) in LISTEN state; an outbound connection that
//! happens to use such a local port is missed. UDP is not covered.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsl::event::{Category, Endpoint, EventType, Network};

use super::sys::{wait_readable, EventFd};
use super::{procfs, Shared};

pub(crate) const TCP_ESTABLISHED: u8 = 0x01;
pub(crate) const TCP_SYN_SENT: u8 = 0x02;
pub(crate) const TCP_LISTEN: u8 = 0x0A;

/// How long a port that was seen listening keeps marking connections on it
/// as inbound after the listener is gone.
const LISTEN_MEMORY: Duration = Duration::from_secs(60);
/// After an exec nudge, how long to wait before polling: gives the new
/// program time to connect.
const NUDGE_DELAY: Duration = Duration::from_millis(20);
/// Nudged polls come no closer than this to the previous poll. A poll costs
/// a walk of the kernel's whole TCP established hash per address family
/// (~2.5 ms each with 262144 buckets), however few sockets there are, so an
/// exec storm must not turn into a poll storm: at most 20 polls/s.
const MIN_POLL_GAP: Duration = Duration::from_millis(50);
/// Inode → pid cache bound.
const MAX_OWNERS: usize = 65_536;

/// One row of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TcpEntry {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: u8,
    pub uid: u32,
    pub inode: u64,
}

/// Parses one table row; the header and malformed rows are `None`.
pub(crate) fn parse_tcp_line(line: &str) -> Option<TcpEntry> {
    let mut f = line.split_ascii_whitespace();
    if !f.next()?.ends_with(':') {
        return None;
    }
    let local = parse_addr(f.next()?)?;
    let remote = parse_addr(f.next()?)?;
    let state = hex_u8(f.next()?)?;
    let _tx_rx = f.next()?;
    let _tr_when = f.next()?;
    let _retrnsmt = f.next()?;
    let uid = f.next()?.parse().ok()?;
    let _timeout = f.next()?;
    let inode = f.next()?.parse().ok()?;
    Some(TcpEntry {
        local,
        remote,
        state,
        uid,
        inode,
    })
}

fn all_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn hex_u8(s: &str) -> Option<u8> {
    all_hex(s).then(|| u8::from_str_radix(s, 16).ok()).flatten()
}

/// `ADDR:PORT` in the kernel's notation: the address is the in-memory
/// `__be32` words printed as native-endian hex (`%08X` per 32-bit word),
/// the port is the host-order value.
pub(crate) fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (a, p) = s.split_once(':')?;
    if !all_hex(a) || !all_hex(p) || p.len() > 4 {
        return None;
    }
    let port = u16::from_str_radix(p, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(a.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    let ip = match a.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(b);
            // Dual-stack sockets talking IPv4 show as ::ffff:a.b.c.d.
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// `socket:[12345]` → 12345.
pub(crate) fn parse_socket_link(link: &[u8]) -> Option<u64> {
    let inner = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

fn read_tables() -> Vec<TcpEntry> {
    let mut out = Vec::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(path) {
            out.extend(text.lines().filter_map(parse_tcp_line));
        }
    }
    out
}

/// The socket inodes `pid` holds open; `None` when its fds are unreadable.
fn socket_inodes(pid: u32) -> Option<Vec<u64>> {
    let dir = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        dir.flatten()
            .filter_map(|ent| {
                parse_socket_link(fs::read_link(ent.path()).ok()?.as_os_str().as_bytes())
            })
            .collect(),
    )
}

/// How far up the parent chain an inherited socket is followed.
const MAX_ANCESTRY: usize = 16;

/// Finds the owning pid of every inode in `wanted` (and caches every other
/// socket met on the way). Newest pids are scanned first: the processes
/// that just connected are most often the young ones. A socket inherited
/// across fork is credited to the oldest ancestor still holding it — the
/// one that connected — not to the child that happens to be scanned first.
/// Returns how many processes were looked at.
fn scan_owners(wanted: &HashSet<u64>, owners: &mut HashMap<u64, u32>) -> usize {
    let mut pids = procfs::list_pids();
    pids.sort_unstable_by(|a, b| b.cmp(a));
    let mut found = HashSet::new();
    let mut scanned = 0;
    for pid in pids {
        if found.len() == wanted.len() {
            break;
        }
        let Some(inodes) = socket_inodes(pid) else {
            continue;
        };
        scanned += 1;
        for ino in inodes {
            if wanted.contains(&ino) {
                if found.insert(ino) {
                    owners.insert(ino, pid);
                }
            } else {
                owners.entry(ino).or_insert(pid);
            }
        }
    }
    for ino in found {
        let Some(&first) = owners.get(&ino) else {
            continue;
        };
        let mut pid = first;
        for _ in 0..MAX_ANCESTRY {
            let Some(ppid) = procfs::read_stat(pid).map(|s| s.ppid).filter(|&p| p > 1) else {
                break;
            };
            scanned += 1;
            if !socket_inodes(ppid).is_some_and(|v| v.contains(&ino)) {
                break;
            }
            pid = ppid;
        }
        owners.insert(ino, pid);
    }
    scanned
}

#[derive(Default)]
struct PollState {
    /// Connection inodes already judged (reported, inbound, or baseline).
    seen: HashSet<u64>,
    /// Socket inode → owning pid.
    owners: HashMap<u64, u32>,
    listen_ports: HashMap<u16, Instant>,
}

/// The `/proc/net/tcp` poller. Shared between its own thread and any caller
/// of [`SocketPoller::poll_once`].
pub struct SocketPoller {
    shared: Arc<Shared>,
    state: Mutex<PollState>,
    nudge: EventFd,
}

impl SocketPoller {
    pub(crate) fn new(shared: Arc<Shared>) -> std::io::Result<SocketPoller> {
        Ok(SocketPoller {
            shared,
            state: Mutex::new(PollState::default()),
            nudge: EventFd::new()?,
        })
    }

    /// Marks the connections open now as known, without reporting them.
    pub(crate) fn baseline(&self) {
        self.poll(false);
    }

    /// Reads the TCP tables once and reports connections not seen before.
    /// Returns how many connection events were produced (pushed or dropped).
    pub fn poll_once(&self) -> usize {
        self.poll(true)
    }

    /// Asks the poller thread for a poll shortly (after an exec).
    pub(crate) fn nudge(&self) {
        self.nudge.signal();
    }

    fn poll(&self, report: bool) -> usize {
        let sh = &self.shared;
        let entries = read_tables();
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        sh.counters.socket_polls.fetch_add(1, Relaxed);
        for e in entries.iter().filter(|e| e.state == TCP_LISTEN) {
            st.listen_ports.insert(e.local.port(), now);
        }
        st.listen_ports
            .retain(|_, t| now.duration_since(*t) < LISTEN_MEMORY);

        let present: HashSet<u64> = entries
            .iter()
            .map(|e| e.inode)
            .filter(|&i| i != 0)
            .collect();
        let mut fresh = Vec::new();
        for e in entries {
            // inode 0: not owned by any fd (TIME_WAIT, not yet accepted).
            if e.inode == 0 || !(e.state == TCP_SYN_SENT || e.state == TCP_ESTABLISHED) {
                continue;
            }
            if !st.seen.insert(e.inode) {
                continue;
            }
            if st.listen_ports.contains_key(&e.local.port()) {
                continue; // accepted inbound connection
            }
            fresh.push(e);
        }
        st.seen.retain(|i| present.contains(i));
        if !report || fresh.is_empty() {
            return 0;
        }
        let c = &sh.counters.network;
        c.received.fetch_add(fresh.len() as u64, Relaxed);

        // Cached owners are trusted only while their process exists.
        let missing: HashSet<u64> = fresh
            .iter()
            .map(|e| e.inode)
            .filter(|i| match st.owners.get(i) {
                Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                None => true,
            })
            .collect();
        if !missing.is_empty() {
            for i in &missing {
                st.owners.remove(i);
            }
            if st.owners.len() > MAX_OWNERS {
                st.owners.clear();
            }
            let scanned = scan_owners(&missing, &mut st.owners);
            sh.counters.fd_scans.fetch_add(1, Relaxed);
            sh.counters
                .fd_scan_processes
                .fetch_add(scanned as u64, Relaxed);
        }

        let n = fresh.len();
        for e in fresh {
            let pid = st.owners.remove(&e.inode);
            let mut ev = sh.base_event(
                Category::Network,
                vec![EventType::Start, EventType::Connection],
                "connection_attempted",
            );
            ev.source = Some(Endpoint {
                ip: Some(e.local.ip()),
                port: Some(e.local.port()),
            });
            ev.destination = Some(Endpoint {
                ip: Some(e.remote.ip()),
                port: Some(e.remote.port()),
            });
            ev.network = Some(Network {
                transport: Some("tcp".into()),
                direction: Some("egress".into()),
            });
            let mut uid = Some(e.uid);
            match pid {
                Some(pid) => {
                    let view = sh.lookup(pid);
                    uid = view.as_ref().and_then(|v| v.attrs.uid).or(uid);
                    ev.process = Shared::process_from_view(pid, view.as_ref());
                }
                None => {
                    sh.counters.unattributed_connections.fetch_add(1, Relaxed);
                }
            }
            ev.user.id = uid.map(|u| u.to_string().into());
            sh.emit(c, ev);
        }
        n
    }
}

/// The poller thread's body: a poll every `interval`, and one shortly after
/// each nudge.
pub(crate) fn run(poller: Arc<SocketPoller>, stop: Arc<EventFd>, interval: Duration) {
    let mut next = Instant::now() + interval;
    let mut last_poll = Instant::now();
    loop {
        let timeout = next.saturating_duration_since(Instant::now());
        match wait_readable([stop.raw(), poller.nudge.raw()], Some(timeout)) {
            Ok([true, _]) => return,
            Ok([_, true]) => {
                let earliest = (last_poll + MIN_POLL_GAP).max(Instant::now() + NUDGE_DELAY);
                std::thread::sleep(earliest.saturating_duration_since(Instant::now()));
                poller.nudge.clear();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!("socket poller: poll failed: {e}");
                return;
            }
        }
        poller.poll_once();
        let now = Instant::now();
        last_poll = now;
        if now >= next {
            next = now + interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

    #[test]
    fn header_and_junk_are_skipped() {
        assert_eq!(parse_tcp_line(HEADER), None);
        assert_eq!(parse_tcp_line(""), None);
        assert_eq!(parse_tcp_line("   0: 0100007F:1F90"), None);
        assert_eq!(
            parse_tcp_line("   0: 0100007G:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1"),
            None
        );
        assert_eq!(parse_addr("+100007F:0050"), None);
        assert_eq!(parse_addr("0100007F:10050"), None);
        assert_eq!(parse_addr("0100007F"), None);
        assert_eq!(parse_addr("00000000000000000000000001:0050"), None);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn ipv4_rows() {
        let listen = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 100 0 0 10 0";
        let e = parse_tcp_line(listen).unwrap();
        assert_eq!(e.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(e.remote, "0.0.0.0:0".parse().unwrap());
        assert_eq!((e.state, e.uid, e.inode), (TCP_LISTEN, 0, 23456));
        let est = "   3: 0F02000A:A2C4 22D8B85D:01BB 01 00000000:00000000 02:000009A4 00000000  1000        0 998877 2 0000000000000000 20 4 30 10 -1";
        let e = parse_tcp_line(est).unwrap();
        assert_eq!(e.local, "10.0.2.15:41668".parse().unwrap());
        assert_eq!(e.remote, "93.184.216.34:443".parse().unwrap());
        assert_eq!((e.state, e.uid, e.inode), (TCP_ESTABLISHED, 1000, 998877));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn ipv6_rows_byte_order() {
        // ::1 port 22 → ::1 port 51000, SYN_SENT.
        let row = "   1: 00000000000000000000000001000000:C738 00000000000000000000000001000000:0016 02 00000001:00000000 01:00000064 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0";
        let e = parse_tcp_line(row).unwrap();
        assert_eq!(e.local, "[::1]:51000".parse().unwrap());
        assert_eq!(e.remote, "[::1]:22".parse().unwrap());
        assert_eq!(e.state, TCP_SYN_SENT);
        // 2001:db8::1234:5678 — each 32-bit word is byte-swapped on print.
        let e = parse_tcp_line(
            "   2: B80D0120000000000000000078563412:0050 B80D0120000000000000000001000000:01BB 01 00000000:00000000 00:00000000 00000000     0        0 77 1",
        )
        .unwrap();
        assert_eq!(e.local, "[2001:db8::1234:5678]:80".parse().unwrap());
        assert_eq!(e.remote, "[2001:db8::1]:443".parse().unwrap());
        // IPv4-mapped addresses come out as IPv4.
        let e = parse_tcp_line(
            "   3: 0000000000000000FFFF00000100007F:9C40 0000000000000000FFFF00000100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 78 1",
        )
        .unwrap();
        assert_eq!(e.local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(e.remote, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn socket_links() {
        assert_eq!(parse_socket_link(b"socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link(b"pipe:[12345]"), None);
        assert_eq!(parse_socket_link(b"socket:[]"), None);
        assert_eq!(parse_socket_link(b"/tmp/socket:[1]"), None);
    }

    #[test]
    fn own_listener_is_in_the_table() {
        // The parser agrees with the kernel on a socket we know.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(read_tables()
            .iter()
            .any(|e| e.state == TCP_LISTEN && e.local == SocketAddr::from(([127, 0, 0, 1], port))));
    }
}
