//! Network attribution on macOS. Endpoint Security reports no TCP or UDP
//! flows, so vigil polls every process's sockets through libproc
//! (`proc_pidinfo(PROC_PIDLISTFDS)` + `proc_pidfdinfo(PROC_PIDFDSOCKETINFO)`)
//! and reports each new outbound connection as a `network` start event.
//!
//! Two cadences: a full scan of all processes every `interval`, and, for a
//! few seconds after each exec (the ES handler sends the pid), a scan of just
//! that process every `watch_step`, because the processes rules care about
//! (curl, osascript, python from an installer script) connect right after
//! they start and are often gone within a second.
//!
//! What polling misses, by design:
//! - a connection opened and closed between two looks at its process: a
//!   process exec'd long ago that makes a sub-`interval` request, or a
//!   freshly exec'd one whose whole exchange fits between two `watch_step`
//!   looks;
//! - UDP sent with `sendto` on an unconnected socket (only connected UDP
//!   sockets have a peer to report), and ICMP;
//! - traffic a process delegates: `URLSession` requests are made by
//!   `nsurlsessiond`, DNS by `mDNSResponder`, so the connection is
//!   attributed to that daemon, not to the app;
//! - connections already open when the agent starts (the first full scan is
//!   a baseline) and inbound ones (local port in LISTEN somewhere).
//!
//! A Network Extension (NEFilterDataProvider) companion would see every
//! flow with its audit token; the events it would produce are the same
//! [`network_event`]s, so it can replace this poller without touching rules.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, RecvTimeoutError};
use dsl::event::Process;

use super::libproc::{self, SocketKind};
use super::EsSourceCounters;
use crate::pipeline::queue::EventSender;
use crate::sources::es::mapping::{basename, network_event, ConnTracker, MapContext, SocketConn};

/// Poller timing.
#[derive(Debug, Clone, Copy)]
pub struct PollerConfig {
    /// Full scan of every process.
    pub interval: Duration,
    /// How long a freshly exec'd process is watched.
    pub watch_window: Duration,
    /// How often a watched process is looked at.
    pub watch_step: Duration,
}

impl Default for PollerConfig {
    fn default() -> Self {
        PollerConfig {
            interval: Duration::from_millis(500),
            watch_window: Duration::from_secs(3),
            watch_step: Duration::from_millis(10),
        }
    }
}

/// Watched pids beyond this are not added (an exec storm must not turn
/// into a scan storm); the full scan still covers them.
const MAX_WATCHED: usize = 256;

struct Poller {
    ctx: Arc<MapContext>,
    tx: EventSender,
    counters: Arc<EsSourceCounters>,
    tracker: ConnTracker,
    listening: HashSet<u16>,
    own_pid: i32,
}

pub(crate) fn start(
    cfg: PollerConfig,
    ctx: Arc<MapContext>,
    tx: EventSender,
    counters: Arc<EsSourceCounters>,
    exec_pids: Receiver<i32>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let mut p = Poller {
        ctx,
        tx,
        counters,
        tracker: ConnTracker::default(),
        listening: HashSet::new(),
        own_pid: std::process::id() as i32,
    };
    std::thread::Builder::new()
        .name("es-sockets".into())
        .spawn(move || p.run(cfg, exec_pids, stop))
}

impl Poller {
    fn run(&mut self, cfg: PollerConfig, exec_pids: Receiver<i32>, stop: Arc<AtomicBool>) {
        let mut watch: HashMap<i32, Instant> = HashMap::new();
        let mut next_full = Instant::now();
        while !stop.load(Relaxed) {
            let now = Instant::now();
            if now >= next_full {
                self.full_scan();
                next_full = now + cfg.interval;
            }
            watch.retain(|_, until| *until > now);
            let watched: Vec<i32> = watch.keys().copied().collect();
            for pid in watched {
                self.scan_one(pid);
            }
            let wake = if watch.is_empty() {
                next_full
            } else {
                next_full.min(Instant::now() + cfg.watch_step)
            };
            match exec_pids.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(pid) => {
                    let until = Instant::now() + cfg.watch_window;
                    for pid in std::iter::once(pid).chain(exec_pids.try_iter()) {
                        if watch.len() < MAX_WATCHED || watch.contains_key(&pid) {
                            watch.insert(pid, until);
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    fn full_scan(&mut self) {
        let mut conns = Vec::new();
        let mut listening = HashSet::new();
        for pid in libproc::all_pids() {
            if pid == self.own_pid {
                continue;
            }
            for k in libproc::sockets(pid) {
                match k {
                    SocketKind::Tcp(c) | SocketKind::Udp(c) => conns.push(c),
                    SocketKind::Listen(port) => {
                        listening.insert(port);
                    }
                }
            }
        }
        self.listening = listening;
        let fresh = self.tracker.diff_full(conns);
        self.emit(fresh);
    }

    fn scan_one(&mut self, pid: i32) {
        let mut conns = Vec::new();
        for k in libproc::sockets(pid) {
            match k {
                SocketKind::Tcp(c) | SocketKind::Udp(c) => conns.push(c),
                SocketKind::Listen(port) => {
                    self.listening.insert(port);
                }
            }
        }
        let fresh = self.tracker.diff_partial(conns);
        self.emit(fresh);
    }

    fn emit(&self, fresh: Vec<SocketConn>) {
        for c in fresh {
            if c.transport == "tcp" && self.listening.contains(&c.local.port()) {
                self.counters.inbound_skipped.fetch_add(1, Relaxed);
                continue;
            }
            let e = network_event(&c, self.process(c.pid), &self.ctx, dsl::time::now_ns());
            self.counters.connections.fetch_add(1, Relaxed);
            if !self.tx.push(e) {
                self.counters.queue_dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Who holds the socket: identity from the audit token, like ES events,
    /// so the entity ids join; parent from the BSD info.
    fn process(&self, pid: i32) -> Process {
        let token = libproc::audit_token(pid);
        if token.is_none() {
            self.counters.unattributed_connections.fetch_add(1, Relaxed);
        }
        let exe = libproc::pid_path(pid);
        let parent = libproc::ppid(pid).filter(|&p| p > 0).map(|ppid| {
            Arc::new(Process {
                pid: u32::try_from(ppid).ok(),
                entity_id: libproc::audit_token(ppid).map(|t| self.ctx.entity_id(&t).into()),
                ..Process::default()
            })
        });
        Process {
            pid: u32::try_from(pid).ok(),
            entity_id: token.map(|t| self.ctx.entity_id(&t).into()),
            name: exe.as_deref().map(|e| basename(e).into()),
            executable: exe.map(Into::into),
            parent,
            ..Process::default()
        }
    }
}
