//! The pipeline thread: takes events off the queue, enriches them from the
//! process table and runs the correlator, and hands every event to the
//! spool thread ([`spool_thread`]), which writes the spool on the other
//! core; alerts go to the alert outputs. Each stage counts what it did for
//! `status`.
//!
//! Alerts are committed in groups: those raised while the queue has more
//! events wait (until it is empty, at most 100 ms or 256 alerts) so that
//! one outbox fsync serves them all. The loop also
//! answers the control socket between events (the pipeline owns the
//! process table and correlator).
//!
//! Context added to an alert document: `enrichments.ancestry` (entity id →
//! the process table's chain, the process first) when the rule asks for
//! `ancestry`, and for `window:<duration>` `enrichments.window` = `{start,
//! end, truncated, events}`: the host's spooled events from `start`
//! (duration before the first matched event) up to `end` (the last matched
//! event's time, exclusive), at most `alerts.window_max_events`, the latest.
//!
//! Owns: the process table, the correlator and the spool thread, on their
//! threads. Must not touch: the control socket, fleet or CLI (they ask through
//! [`requests`]); sinks (alerts leave through [`outputs`] and the outbox).

mod commit;
mod event_loop;
pub mod outputs;
pub mod process_table;
pub mod queue;
mod recent;
pub mod requests;
pub mod spool_thread;
pub mod status;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsl::alert::Alert;
use dsl::correlate::{Correlator, CorrelatorConfig};
use dsl::rules::RuleSet;
use spool::{SpoolConfig, SpoolReader};

use crate::delivery::sinks::SinkMonitor;
use crate::history::context::AlertSummary;
use crate::history::store::EventSpool;
use outputs::AlertOutputs;
use process_table::ProcessTable;
use queue::{QueueCounters, Reclaim};
use requests::RequestReceiver;
use spool_thread::{SpoolThread, WindowReply};
pub use status::StatusSnapshot;

/// What went wrong in the pipeline: its spool, its alert outputs or its
/// threads. Events keep flowing where they can; the caller logs these.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] crate::history::store::StoreError),
    #[error("{what} {}: {source}", path.display())]
    Output {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing alerts to stdout: {0}")]
    Stdout(std::io::Error),
    #[error("appending to the outbox {}: {source}", dir.display())]
    Outbox {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
    #[error("the spool thread has stopped")]
    SpoolThreadStopped,
    #[error("the spool thread panicked")]
    SpoolThreadPanicked,
    #[error("serializing an alert: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Counters shared with the spool thread.
#[derive(Debug, Default)]
pub struct PipelineCounters {
    pub spooled: AtomicU64,
    pub spool_errors: AtomicU64,
    pub alerts: AtomicU64,
    pub alerts_suppressed: AtomicU64,
    pub output_errors: AtomicU64,
}

pub struct PipelineConfig {
    pub host_id: String,
    pub spool: Option<(PathBuf, SpoolConfig)>,
    pub correlator: CorrelatorConfig,
    pub outputs: AlertOutputs,
    /// Where `status.json` is written every couple of seconds.
    pub status_path: Option<PathBuf>,
    pub seed_process_table: bool,
    /// At most this many spool events in an alert's `window:` context (0: none).
    pub window_max_events: usize,
    /// How long the idle pipeline sleeps before looking at the queue again:
    /// the most an event waits before processing starts.
    pub idle_nap: Duration,
    /// Where finished events go back to the sources that made them (none:
    /// they are freed on the spool thread).
    pub reclaim: Option<Reclaim>,
}

/// Recent alerts kept in memory for `context <alert-id>` (summaries only).
const RECENT_ALERTS: usize = 4096;
/// Events kept in memory for `window:` context (a few seconds of a busy
/// Mac; ~3 MB).
const RECENT_EVENTS: usize = 4096;
/// Alerts wait at most this long (or until the queue is empty) to be committed.
const COMMIT_DELAY: Duration = Duration::from_millis(100);
const COMMIT_MAX: usize = 256;
/// Events handled back to back before the loop looks at timers and requests.
const BURST: usize = 64;
const STATUS_FILE_EVERY: Duration = Duration::from_secs(2);

pub struct Pipeline {
    table: ProcessTable,
    /// Spooling and `window:` context run on their own thread.
    spool: SpoolThread,
    correlator: Correlator,
    outputs: AlertOutputs,
    counters: Arc<PipelineCounters>,
    queue: Arc<QueueCounters>,
    status_path: Option<PathBuf>,
    started: Instant,
    alerts: Vec<Alert>,
    correlator_cfg: CorrelatorConfig,
    /// Raised, not yet committed to the outputs.
    pending: Vec<Alert>,
    /// Windows asked of the spool thread for `pending[i]`.
    pending_windows: Vec<(usize, WindowReply)>,
    pending_since: Option<Instant>,
    /// Events handled since start.
    processed: u64,
    /// Exec events that reached the pipeline without a process name or
    /// executable.
    execs_without_image: u64,
    spool_path: Option<PathBuf>,
    /// Reads the spool's extent for `status`.
    status_reader: Option<SpoolReader>,
    window_max_events: usize,
    idle_nap: Duration,
    recent: VecDeque<AlertSummary>,
    requests: Option<RequestReceiver>,
    sinks: Option<SinkMonitor>,
    rules_reloads: u64,
    /// Alerts the per-event cap dropped under rule sets since replaced.
    alerts_capped_before: u64,
    status_written: Option<Instant>,
    /// Live sources on this host: the process table is checked against the
    /// OS now and then (exits lost under load would otherwise pile up).
    sweep_processes: bool,
    swept: Instant,
}

impl Pipeline {
    pub fn new(
        cfg: PipelineConfig,
        rules: Arc<RuleSet>,
        queue: Arc<QueueCounters>,
    ) -> Result<Pipeline, PipelineError> {
        let mut table = ProcessTable::new(&cfg.host_id);
        if cfg.seed_process_table {
            table.seed_from_system();
        }
        let sweep_processes = cfg.seed_process_table;
        let spool_path = cfg.spool.as_ref().map(|(p, _)| p.clone());
        let spool = cfg
            .spool
            .map(|(path, sc)| EventSpool::open(&path, sc).map(|s| (s, path)))
            .transpose()?;
        // Events of an earlier run are in the spool but not in memory.
        let spool_had_events = spool
            .as_ref()
            .is_some_and(|(s, _)| EventSpool::had_earlier_events(s));
        let counters = Arc::<PipelineCounters>::default();
        let window_max_events = cfg.window_max_events;
        let spool = SpoolThread::start(
            spool,
            recent::RecentEvents::new(RECENT_EVENTS, spool_had_events),
            window_max_events,
            Arc::clone(&counters),
            cfg.reclaim,
        )?;
        Ok(Pipeline {
            table,
            spool,
            correlator: Correlator::new(rules, cfg.correlator),
            outputs: cfg.outputs,
            counters,
            queue,
            status_path: cfg.status_path,
            started: Instant::now(),
            alerts: Vec::new(),
            correlator_cfg: cfg.correlator,
            pending: Vec::new(),
            pending_windows: Vec::new(),
            pending_since: None,
            processed: 0,
            spool_path,
            status_reader: None,
            window_max_events,
            idle_nap: cfg.idle_nap,
            recent: VecDeque::new(),
            requests: None,
            sinks: None,
            execs_without_image: 0,
            rules_reloads: 0,
            alerts_capped_before: 0,
            status_written: None,
            sweep_processes,
            swept: Instant::now(),
        })
    }

    /// Serve requests (control socket, fleet) from this channel, and nap on
    /// its wake-up, which pushes also use when a burst fills the queue.
    pub fn with_requests(mut self, rx: RequestReceiver) -> Pipeline {
        self.queue.set_waker(rx.waker());
        self.requests = Some(rx);
        self
    }

    /// Show these sinks' delivery and backlog in `status`.
    pub fn with_sinks(mut self, m: SinkMonitor) -> Pipeline {
        self.sinks = Some(m);
        self
    }

    pub fn counters(&self) -> Arc<PipelineCounters> {
        Arc::clone(&self.counters)
    }
}
