//! The Linux live event source, without eBPF:
//!
//! - process fork/exec/exit from the netlink process connector
//!   ([`proc_connector`]), completed from `/proc/<pid>`;
//! - file writes and executions from fanotify mount marks ([`fanotify`]);
//! - outbound TCP connections from polling `/proc/net/tcp{,6}` and mapping
//!   socket inodes to processes ([`sockets`]).
//!
//! [`LinuxSource::start`] runs one thread per sub-source; each hands events to
//! the `push` callback, which must not block (it returns `false` when the
//! pipeline queue is full: the event is dropped and counted). Every event
//! carries `host.*`, `@timestamp` (wall clock when vigil built the event, in
//! ns), `event.category`/`type`/`action`, and the acting process with a
//! stable `process.entity_id` (see [`entity`]).
//!
//! Owns: the Linux kernel interfaces and their process table. Must not touch:
//! the pipeline beyond pushing events.

pub mod entity;
mod fanotify;
mod proc_connector;
mod procfs;
pub mod sockets;
mod sys;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use dsl::event::{Category, EventInfo, EventType, Host, Os, Process, Text};
use dsl::Event;

pub use entity::{entity_id, ProcessIdentity};
pub use sockets::SocketPoller;

use entity::{Attrs, ProcEntry, ProcessTable};
use sys::EventFd;

/// The callback events are handed to; `false` means "queue full, dropped".
pub type PushFn = Arc<dyn Fn(Event) -> bool + Send + Sync>;

/// Which fanotify mark covers a configured path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FanotifyMark {
    /// `FAN_MARK_MOUNT`: the mount the path is on.
    #[default]
    Mount,
    /// `FAN_MARK_FILESYSTEM` (Linux 4.20): every mount of the path's
    /// filesystem, including bind mounts and other mount namespaces.
    Filesystem,
}

#[derive(Debug, Clone)]
pub struct LinuxSourceConfig {
    pub host_id: String,
    pub host_name: String,
    /// `host.os.family` (e.g. "debian", "rhel").
    pub os_family: Option<String>,
    /// `host.os.version` (e.g. "12").
    pub os_version: Option<String>,
    pub process_events: bool,
    pub file_events: bool,
    pub network_events: bool,
    /// Paths whose mount (or filesystem) fanotify watches.
    pub fanotify_paths: Vec<PathBuf>,
    pub fanotify_mark: FanotifyMark,
    pub socket_poll_interval: Duration,
    /// Poll the TCP tables shortly (20 ms) after every exec, besides the
    /// periodic polls, to catch a new program's first connection.
    pub poll_sockets_on_exec: bool,
    /// Environment variables exec events keep (`process.env_vars`), read
    /// from `/proc/<pid>/environ`: names, or prefixes ending in `*`.
    pub env_vars: Vec<String>,
}

impl LinuxSourceConfig {
    /// All sub-sources on, default paths and interval, OS family and version
    /// from `/etc/os-release`.
    pub fn new(host_id: impl Into<String>, host_name: impl Into<String>) -> LinuxSourceConfig {
        let (os_family, os_version) = procfs::os_release();
        LinuxSourceConfig {
            host_id: host_id.into(),
            host_name: host_name.into(),
            os_family,
            os_version,
            process_events: true,
            file_events: true,
            network_events: true,
            fanotify_paths: Self::default_fanotify_paths(),
            fanotify_mark: FanotifyMark::Mount,
            socket_poll_interval: Duration::from_millis(200),
            poll_sockets_on_exec: true,
            env_vars: crate::sources::es::mapping::default_env_vars(),
        }
    }

    /// `/`, plus those of `/home`, `/tmp`, `/var/tmp`, `/dev/shm` that exist.
    /// A mount mark covers one mount: the extra paths matter when they are
    /// separate mounts (tmpfs `/tmp`, `/dev/shm` — the usual malware drop
    /// spots); when they are on `/`'s mount, marking them again is a no-op.
    pub fn default_fanotify_paths() -> Vec<PathBuf> {
        let mut v = vec![PathBuf::from("/")];
        for p in ["/home", "/tmp", "/var/tmp", "/dev/shm"] {
            if Path::new(p).is_dir() {
                v.push(PathBuf::from(p));
            }
        }
        v
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "linux source: needs root (running as euid {euid}): the process connector, fanotify \
         and reading other processes' /proc/<pid>/fd all require it"
    )]
    NotRoot { euid: u32 },
    /// A sub-source could not start; `what` names it ("process connector",
    /// "fanotify", "socket poller").
    #[error("{what}: {reason}")]
    Start { what: &'static str, reason: String },
}

/// Counts of one sub-source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SubSourceCounters {
    /// Kernel events (processes, not threads) / file records / new outbound
    /// connections observed.
    pub received: u64,
    /// Events the push callback accepted.
    pub emitted: u64,
    /// Events the push callback refused (queue full).
    pub dropped: u64,
    /// Observed but deliberately not reported (vigil's own file activity).
    pub ignored: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinuxSourceCounters {
    pub process: SubSourceCounters,
    pub file: SubSourceCounters,
    pub network: SubSourceCounters,
    /// `/proc/<pid>` reads that found the process gone (or unreadable).
    pub proc_read_failures: u64,
    /// Of those, exec events whose executable came from fanotify.
    pub exec_images_used: u64,
    /// Exec events whose process exec'd again before `/proc` was read: they
    /// carry pid, parent and entity id but no image details.
    pub exec_superseded: u64,
    /// Times the netlink socket overflowed (ENOBUFS): process events lost.
    pub netlink_overruns: u64,
    /// `FAN_Q_OVERFLOW` records: file events lost in the kernel queue.
    pub fanotify_overflows: u64,
    /// fanotify reads that failed (the kernel could not open a file).
    pub fanotify_errors: u64,
    /// Kernel messages that did not parse.
    pub malformed: u64,
    /// Connections whose socket no process held any more at scan time.
    pub unattributed_connections: u64,
    pub socket_polls: u64,
    /// `/proc/*/fd` scans for unknown socket inodes, and processes visited.
    pub fd_scans: u64,
    pub fd_scan_processes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct SubAtomics {
    pub received: AtomicU64,
    pub emitted: AtomicU64,
    pub dropped: AtomicU64,
    pub ignored: AtomicU64,
}

impl SubAtomics {
    fn snapshot(&self) -> SubSourceCounters {
        SubSourceCounters {
            received: self.received.load(Relaxed),
            emitted: self.emitted.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            ignored: self.ignored.load(Relaxed),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub process: SubAtomics,
    pub file: SubAtomics,
    pub network: SubAtomics,
    pub proc_read_failures: AtomicU64,
    /// Exec events completed from fanotify's record of the image.
    pub exec_images_used: AtomicU64,
    pub exec_superseded: AtomicU64,
    pub netlink_overruns: AtomicU64,
    pub fanotify_overflows: AtomicU64,
    pub fanotify_errors: AtomicU64,
    pub malformed: AtomicU64,
    pub unattributed_connections: AtomicU64,
    pub socket_polls: AtomicU64,
    pub fd_scans: AtomicU64,
    pub fd_scan_processes: AtomicU64,
}

/// State every sub-source thread shares.
pub(crate) struct Shared {
    host: Host,
    host_id: String,
    boot_id: String,
    push: PushFn,
    pub counters: Counters,
    table: Mutex<ProcessTable>,
    /// The images fanotify saw each pid open for exec, for exec events whose
    /// process was gone before `/proc` could be read.
    exec_images: Mutex<ExecImages>,
    /// See [`LinuxSourceConfig::env_vars`].
    pub env_vars: Vec<String>,
    /// Header reads of written files left this second.
    pub header_budget: PerSecond,
    /// Whether the process connector is running (and so the table current).
    pub tracking: AtomicBool,
    pub own_pid: u32,
}

/// Written files whose first bytes are read, at most, per second: a write
/// storm must not turn into a read storm.
const HEADER_READS_PER_SEC: u64 = 2_000;

/// A budget of `limit` per wall-clock second, shared by threads.
#[derive(Debug)]
pub(crate) struct PerSecond {
    limit: u64,
    /// The second (since the epoch) and the count used in it.
    window: Mutex<(u64, u64)>,
}

impl PerSecond {
    fn new(limit: u64) -> PerSecond {
        PerSecond {
            limit,
            window: Mutex::new((0, 0)),
        }
    }

    /// Takes one unit of this second's budget, if any is left.
    pub fn take(&self) -> bool {
        let now = (now_ns() / 1_000_000_000) as u64;
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.0 != now {
            *w = (now, 0);
        }
        if w.1 >= self.limit {
            return false;
        }
        w.1 += 1;
        true
    }
}

/// Longest wait for fanotify's record of one exec.
pub(crate) const EXEC_IMAGE_WAIT: std::time::Duration = std::time::Duration::from_millis(5);
/// Wait for fanotify's records, in all, per second.
pub(crate) const EXEC_IMAGE_BUDGET: std::time::Duration = std::time::Duration::from_millis(100);
/// Pids whose exec images are remembered.
const EXEC_IMAGES_MAX: usize = 4096;

/// The images each pid opened for exec (`FAN_OPEN_EXEC`) since its last
/// exec event, oldest first, bounded. A dynamic executable's interpreter
/// (`ld-linux*.so*`), opened after it, is not kept.
#[derive(Default)]
pub(crate) struct ExecImages {
    by_pid: HashMap<u32, Vec<(String, std::time::Instant)>>,
    /// When the current second of waiting began, and how much was spent.
    budget_from: Option<std::time::Instant>,
    waited: std::time::Duration,
    /// Images whose exec was read whole before fanotify's record came: the
    /// record, when it comes, is dropped.
    owed: HashMap<u32, String>,
}

/// Older records belong to execs already handled.
const EXEC_IMAGE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

fn is_interpreter(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.starts_with("ld-") && base.contains(".so")
}

impl ExecImages {
    fn note(&mut self, pid: u32, path: &str) {
        if is_interpreter(path) {
            return;
        }
        if self.owed.get(&pid).is_some_and(|exe| exe == path) {
            self.owed.remove(&pid);
            return;
        }
        let now = std::time::Instant::now();
        if self.by_pid.len() >= EXEC_IMAGES_MAX && !self.by_pid.contains_key(&pid) {
            self.by_pid.retain(|_, v| {
                v.last()
                    .is_some_and(|(_, at)| now.duration_since(*at) < EXEC_IMAGE_MAX_AGE)
            });
            if self.by_pid.len() >= EXEC_IMAGES_MAX {
                self.by_pid.clear();
            }
        }
        let list = self.by_pid.entry(pid).or_default();
        if list.len() < 8 {
            list.push((path.to_string(), now));
        }
    }

    fn read_whole(&mut self, pid: u32, exe: &str) {
        if self.by_pid.remove(&pid).is_none() {
            if self.owed.len() >= EXEC_IMAGES_MAX {
                self.owed.clear();
            }
            self.owed.insert(pid, exe.to_string());
        }
    }

    /// The oldest recent image of `pid`; the others are dropped with it (a
    /// script's interpreter, opened after the script).
    fn take(&mut self, pid: u32) -> Option<String> {
        self.owed.remove(&pid);
        let now = std::time::Instant::now();
        self.by_pid
            .remove(&pid)?
            .into_iter()
            .find(|(_, at)| now.duration_since(*at) < EXEC_IMAGE_MAX_AGE)
            .map(|(p, _)| p)
    }

    /// Whether a wait begun at `started` may go on (and charges it).
    fn may_wait(&mut self, started: std::time::Instant) -> bool {
        let now = std::time::Instant::now();
        if self
            .budget_from
            .is_none_or(|b| now.duration_since(b) >= std::time::Duration::from_secs(1))
        {
            self.budget_from = Some(now);
            self.waited = std::time::Duration::ZERO;
        }
        if now.duration_since(started) >= EXEC_IMAGE_WAIT || self.waited >= EXEC_IMAGE_BUDGET {
            return false;
        }
        self.waited += std::time::Duration::from_micros(200);
        true
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Shared {
    fn new(cfg: &LinuxSourceConfig, push: PushFn) -> Shared {
        let boot_id = procfs::boot_id();
        Shared {
            host: Host {
                id: Some(cfg.host_id.as_str().into()),
                name: Some(cfg.host_name.as_str().into()),
                os: Os {
                    os_type: Some("linux".into()),
                    family: cfg.os_family.clone().map(Into::into),
                    version: cfg.os_version.clone().map(Into::into),
                },
            }
            .leaked(),
            table: Mutex::new(ProcessTable::new(&cfg.host_id, &boot_id)),
            exec_images: Mutex::new(ExecImages::default()),
            env_vars: cfg.env_vars.clone(),
            header_budget: PerSecond::new(HEADER_READS_PER_SEC),
            host_id: cfg.host_id.clone(),
            boot_id,
            push,
            counters: Counters::default(),
            tracking: AtomicBool::new(false),
            own_pid: std::process::id(),
        }
    }

    /// fanotify saw `pid` open `path` for exec (`FAN_OPEN_EXEC`).
    pub fn note_exec_image(&self, pid: u32, path: &str) {
        self.exec_images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .note(pid, path);
    }

    /// The image `pid` exec'd, as fanotify saw it: for an exec whose
    /// process was gone before `/proc` was read. fanotify's reader may be
    /// a moment behind the process connector's, so this waits a little
    /// (at most [`EXEC_IMAGE_WAIT`], and [`EXEC_IMAGE_BUDGET`] a second in
    /// all: a storm of short processes must not stall process events).
    pub fn exec_image(&self, pid: u32) -> Option<String> {
        let images = || self.exec_images.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = images().take(pid) {
            return Some(p);
        }
        let started = std::time::Instant::now();
        while images().may_wait(started) {
            std::thread::sleep(std::time::Duration::from_micros(200));
            if let Some(p) = images().take(pid) {
                return Some(p);
            }
        }
        None
    }

    /// `pid`'s exec was read whole from `/proc` (its image is `exe`): what
    /// fanotify recorded for it is not needed, and if its record has not
    /// come yet, it must not be taken for the pid's next exec.
    pub fn exec_read_whole(&self, pid: u32, exe: &str) {
        self.exec_images
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_whole(pid, exe);
    }

    pub fn table(&self) -> MutexGuard<'_, ProcessTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn entity_id(&self, pid: u32, start_ticks: u64, exec_seq: u32) -> String {
        entity_id(&self.host_id, &self.boot_id, pid, start_ticks, exec_seq)
    }

    /// An event with host, timestamp and `event.*` filled in.
    pub fn base_event(
        &self,
        category: Category,
        types: Vec<EventType>,
        action: &'static str,
    ) -> Event {
        Event {
            timestamp_ns: now_ns(),
            event: EventInfo {
                category,
                types,
                action: Some(Text::from_static(action)),
                ..Default::default()
            },
            host: self.host.clone(),
            ..Default::default()
        }
    }

    pub fn emit(&self, c: &SubAtomics, ev: Event) {
        if (self.push)(ev) {
            c.emitted.fetch_add(1, Relaxed);
        } else {
            c.dropped.fetch_add(1, Relaxed);
        }
    }

    /// The live process `pid`, from the table when its entry is still the
    /// same instance, else read from `/proc` and recorded. A process that is
    /// gone is answered from the table if it is there.
    pub fn resolve(&self, pid: u32) -> Option<ProcEntry> {
        let Some(st) = procfs::read_stat(pid) else {
            let cached = self.table().get(pid).cloned();
            if cached.is_none() {
                self.counters.proc_read_failures.fetch_add(1, Relaxed);
            }
            return cached;
        };
        if let Some(e) = self.table().get(pid) {
            if e.id.start_ticks == st.start_ticks {
                return Some(e.clone());
            }
        }
        let exe = procfs::read_exe(pid);
        let status = procfs::read_status(pid).unwrap_or_default();
        let attrs = Attrs {
            ppid: status.ppid.or(Some(st.ppid)),
            name: procfs::process_name(Some(&st.comm), exe.as_deref()).map(Into::into),
            executable: exe.map(Into::into),
            uid: status.uid,
        };
        Some(self.table().observe(pid, st.start_ticks, attrs))
    }

    /// The table's entry for `pid` without touching `/proc` when the
    /// process connector is keeping the table current (forks, execs, exits),
    /// else [`Self::resolve`].
    pub fn lookup(&self, pid: u32) -> Option<ProcEntry> {
        if self.tracking.load(Relaxed) {
            if let Some(e) = self.table().get(pid) {
                return Some(e.clone());
            }
        }
        self.resolve(pid)
    }

    /// Drops table entries whose process is gone or whose pid now belongs
    /// to another process (after process events were lost).
    pub fn revalidate(&self) {
        let known: Vec<(u32, u64)> = self
            .table()
            .iter()
            .map(|(&pid, e)| (pid, e.id.start_ticks))
            .collect();
        let stale: Vec<u32> = known
            .into_iter()
            .filter(|&(pid, start)| procfs::read_stat(pid).map(|s| s.start_ticks) != Some(start))
            .map(|(pid, _)| pid)
            .collect();
        let mut t = self.table();
        for pid in stale {
            t.exit(pid);
        }
    }

    /// Records every process running now (vigil's start).
    pub fn snapshot_processes(&self) {
        for pid in procfs::list_pids() {
            let _ = self.resolve(pid);
        }
    }

    /// `process.*` for an event attributed to `pid`.
    pub fn process_from_view(pid: u32, view: Option<&ProcEntry>) -> Process {
        Process {
            pid: Some(pid),
            entity_id: view.map(|v| v.id.entity_id.clone()),
            name: view.and_then(|v| v.attrs.name.clone()),
            executable: view.and_then(|v| v.attrs.executable.clone()),
            ..Default::default()
        }
    }

    /// `process.parent.*`: the same fields one level up.
    pub fn parent_process(ppid: u32, view: Option<&ProcEntry>) -> Process {
        Self::process_from_view(ppid, view)
    }
}

/// The running Linux source. Dropping it stops it.
pub struct LinuxSource {
    shared: Arc<Shared>,
    stop: Arc<EventFd>,
    threads: Vec<JoinHandle<()>>,
    sockets: Option<Arc<SocketPoller>>,
    fanotify_paths: Vec<PathBuf>,
}

impl LinuxSource {
    /// Starts the enabled sub-sources, each on its own thread. Fails, naming
    /// what is missing, when not root or when any sub-source cannot start
    /// (those already started are stopped again).
    pub fn start(cfg: LinuxSourceConfig, push: PushFn) -> Result<LinuxSource, SourceError> {
        let euid = sys::geteuid();
        if euid != 0 {
            return Err(SourceError::NotRoot { euid });
        }
        let io_err = |what: &'static str| {
            move |e: std::io::Error| SourceError::Start {
                what,
                reason: e.to_string(),
            }
        };
        let stop = Arc::new(EventFd::new().map_err(io_err("linux source"))?);
        let shared = Arc::new(Shared::new(&cfg, push));
        let mut src = LinuxSource {
            shared: shared.clone(),
            stop: stop.clone(),
            threads: Vec::new(),
            sockets: None,
            fanotify_paths: Vec::new(),
        };

        if cfg.network_events {
            let poller =
                Arc::new(SocketPoller::new(shared.clone()).map_err(io_err("socket poller"))?);
            poller.baseline();
            let (p, s, every) = (
                poller.clone(),
                stop.clone(),
                cfg.socket_poll_interval.max(Duration::from_millis(10)),
            );
            src.spawn("vigil-sockets", "socket poller", move || {
                sockets::run(p, s, every)
            })?;
            src.sockets = Some(poller);
        }
        if cfg.file_events {
            let fan = fanotify::Fanotify::open(&cfg.fanotify_paths, cfg.fanotify_mark)?;
            src.fanotify_paths = fan.marked.clone();
            let (sh, s) = (shared.clone(), stop.clone());
            src.spawn("vigil-fanotify", "fanotify", move || {
                fanotify::run(fan, sh, s)
            })?;
        }
        if cfg.process_events {
            // Processes already running get table entries first, so that
            // their exits and children are named. Done before subscribing:
            // doing it on the reader thread would delay the first events'
            // /proc reads. Processes born in between are looked up lazily;
            // those that exited in between are dropped once subscribed.
            shared.snapshot_processes();
            let conn = proc_connector::ProcConnector::open()?;
            shared.revalidate();
            shared.tracking.store(true, Relaxed);
            let nudge = if cfg.poll_sockets_on_exec {
                src.sockets.clone()
            } else {
                None
            };
            let (sh, s) = (shared, stop);
            src.spawn("vigil-proc", "process connector", move || {
                proc_connector::run(conn, sh, s, nudge)
            })?;
        }
        Ok(src)
    }

    fn spawn(
        &mut self,
        name: &str,
        what: &'static str,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), SourceError> {
        let h = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(f)
            .map_err(|e| SourceError::Start {
                what,
                reason: format!("cannot spawn thread: {e}"),
            })?;
        self.threads.push(h);
        Ok(())
    }

    /// Stops every sub-source and waits for its thread. Idempotent.
    pub fn stop(&mut self) {
        self.stop.signal();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    pub fn counters(&self) -> LinuxSourceCounters {
        let c = &self.shared.counters;
        LinuxSourceCounters {
            process: c.process.snapshot(),
            file: c.file.snapshot(),
            network: c.network.snapshot(),
            proc_read_failures: c.proc_read_failures.load(Relaxed),
            exec_images_used: c.exec_images_used.load(Relaxed),
            exec_superseded: c.exec_superseded.load(Relaxed),
            netlink_overruns: c.netlink_overruns.load(Relaxed),
            fanotify_overflows: c.fanotify_overflows.load(Relaxed),
            fanotify_errors: c.fanotify_errors.load(Relaxed),
            malformed: c.malformed.load(Relaxed),
            unattributed_connections: c.unattributed_connections.load(Relaxed),
            socket_polls: c.socket_polls.load(Relaxed),
            fd_scans: c.fd_scans.load(Relaxed),
            fd_scan_processes: c.fd_scan_processes.load(Relaxed),
        }
    }

    /// Polls the TCP tables now (e.g. right after the pipeline saw an exec);
    /// returns the number of connection events produced. 0 when network
    /// events are off.
    pub fn poll_sockets(&self) -> usize {
        self.sockets.as_ref().map_or(0, |s| s.poll_once())
    }

    /// The poller itself, for a pipeline thread that outlives borrows.
    pub fn socket_poller(&self) -> Option<Arc<SocketPoller>> {
        self.sockets.clone()
    }

    /// The identity the source currently gives `pid` (entity id, exec
    /// sequence, and the entity id of the image its last exec replaced).
    pub fn process_identity(&self, pid: u32) -> Option<ProcessIdentity> {
        self.shared.table().get(pid).map(|e| e.id.clone())
    }

    /// The paths fanotify marked.
    pub fn fanotify_paths(&self) -> &[PathBuf] {
        &self.fanotify_paths
    }
}

impl Drop for LinuxSource {
    fn drop(&mut self) {
        self.stop();
    }
}
