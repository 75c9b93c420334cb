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

pub mod outputs;
pub mod process_table;
pub mod queue;
mod recent;
pub mod spool_thread;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam::channel::{Receiver, TryRecvError};
use dsl::alert::{Alert, RawJson};
use dsl::correlate::Correlator;
use dsl::correlate::CorrelatorConfig;
use dsl::rules::RuleSet;
use dsl::Event;
use serde::Serialize;
use spool::{SpoolConfig, SpoolReader};

use crate::control::{ControlReceiver, ControlRequest};
use crate::delivery::outbox::OutboxStatus;
use crate::delivery::sinks::{SinkMonitor, SinkStatus};
use crate::history::context::{AlertSummary, EntityTable, Lookup, MAX_WINDOW_NS};
use crate::history::store::{refreshed_reader, EventSpool};
use outputs::AlertOutputs;
use process_table::ProcessTable;
use queue::{QueueCounters, Reclaim};
use spool_thread::{SpoolThread, WindowReply, WindowRequest};

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

/// A snapshot for `vigil status`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct StatusSnapshot {
    pub at: String,
    pub uptime_secs: u64,
    pub received: u64,
    pub dropped: u64,
    pub queue_depth: usize,
    pub processed: u64,
    pub spooled: u64,
    pub spool_errors: u64,
    pub alerts: u64,
    pub output_errors: u64,
    pub processes_tracked: usize,
    /// Resident memory now and at its peak (Linux; 0 elsewhere).
    #[serde(default)]
    pub rss_kb: u64,
    #[serde(default)]
    pub peak_rss_kb: u64,
    pub rules: Vec<RuleStatus>,
    /// Successful `rules reload`s since start.
    #[serde(default)]
    pub rules_reloads: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool: Option<SpoolUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<OutboxStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<SinkStatus>,
}

/// Spool figures for `status`: the writer's since start, and (when asked
/// through the control socket) the file's as a reader sees it.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct SpoolUsage {
    pub path: PathBuf,
    pub capacity_bytes: u64,
    pub blocks_written: u64,
    pub records_written: u64,
    pub compressed_bytes: u64,
    pub blocks_overwritten: u64,
    pub pending_records: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
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

/// (current, peak) resident set size in KiB from /proc/self/status.
fn memory_kb() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub struct RuleStatus {
    pub id: String,
    pub open_chains: usize,
    pub evicted: u64,
    pub expired: u64,
    pub completed: u64,
}

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
    spool_path: Option<PathBuf>,
    /// Reads the spool's extent for `status`.
    status_reader: Option<SpoolReader>,
    window_max_events: usize,
    idle_nap: Duration,
    recent: VecDeque<AlertSummary>,
    control: Option<ControlReceiver>,
    sinks: Option<SinkMonitor>,
    rules_reloads: u64,
    status_written: Option<Instant>,
}

impl Pipeline {
    pub fn new(
        cfg: PipelineConfig,
        rules: Arc<RuleSet>,
        queue: Arc<QueueCounters>,
    ) -> Result<Pipeline> {
        let mut table = ProcessTable::new(&cfg.host_id);
        if cfg.seed_process_table {
            table.seed_from_system();
        }
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
            control: None,
            sinks: None,
            rules_reloads: 0,
            status_written: None,
        })
    }

    /// Serve control-socket requests from this channel, and nap on its
    /// wake-up, which pushes also use when a burst fills the queue.
    pub fn with_control(mut self, rx: ControlReceiver) -> Pipeline {
        self.queue.set_waker(rx.waker());
        self.control = Some(rx);
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

    /// Enrich, spool, correlate, emit: everything one event goes through.
    pub fn handle(&mut self, mut e: Arc<Event>) {
        // The queue's Arc is the only reference until here; a shared one
        // (never from the queue) is copied once to be enriched.
        self.table.observe(Arc::make_mut(&mut e));
        // Shared by the spool thread and the correlator: no copies.
        self.correlator.process_arc(&e, &mut self.alerts);
        // Before any window request of this event's alerts: the spool
        // thread answers them with this event in its ring.
        self.spool.push(e);
        // Not in the shared counters: only this thread writes or reads it,
        // and a per-event atomic add would pull their cache line over from
        // the spool thread's core.
        self.processed += 1;
        for mut alert in self.alerts.drain(..) {
            // Ancestry now: the table may forget these processes by commit time.
            if alert.context_requests.iter().any(|c| c == "ancestry") {
                attach_ancestry(&self.table, &mut alert);
            }
            // The window too, while the spool thread's ring still holds the
            // events before the match; the answer is collected at commit.
            if self.window_max_events > 0 {
                if let Some(request) = window_request_of(&alert) {
                    let reply = self.spool.window(request);
                    self.pending_windows.push((self.pending.len(), reply));
                }
            }
            self.counters.alerts.fetch_add(1, Ordering::Relaxed);
            self.pending_since.get_or_insert_with(Instant::now);
            self.pending.push(alert);
        }
        if self.pending.len() >= COMMIT_MAX {
            self.commit_alerts();
        }
    }

    /// Adds window context, then hands the pending alerts to the outputs
    /// (outbox first, with one fsync for all).
    pub fn commit_alerts(&mut self) {
        self.commit(true);
    }

    /// Commits the pending alerts up to the first whose window the spool
    /// thread has not answered yet, without waiting for it. Under load the
    /// spool thread may hold thousands of events ahead of that answer;
    /// waiting for them would idle this thread while it works through them.
    fn commit_answered_alerts(&mut self) {
        self.commit(false);
    }

    /// Commits pending alerts in order: all of them with `wait`, otherwise
    /// those before the first window still unanswered.
    fn commit(&mut self, wait: bool) {
        let mut ready = self.pending.len();
        let mut answered = 0;
        for (i, reply) in &self.pending_windows {
            let window = if wait {
                reply.recv().ok()
            } else {
                match reply.try_recv() {
                    Ok(window) => Some(window),
                    Err(TryRecvError::Empty) => {
                        ready = *i;
                        break;
                    }
                    Err(TryRecvError::Disconnected) => None,
                }
            };
            // A closed channel (the spool thread is gone) leaves no window.
            if let Some(Some(window)) = window {
                self.pending[*i]
                    .raw_enrichments
                    .push(("window".into(), window));
            }
            answered += 1;
        }
        if ready == 0 {
            return;
        }
        self.pending_windows.drain(..answered);
        for (i, _) in &mut self.pending_windows {
            *i -= ready;
        }
        let alerts: Vec<Alert> = self.pending.drain(..ready).collect();
        if self.pending.is_empty() {
            self.pending_since = None;
        }
        self.emit(alerts);
    }

    fn emit(&mut self, alerts: Vec<Alert>) {
        for a in &alerts {
            if self.recent.len() >= RECENT_ALERTS {
                self.recent.pop_front();
            }
            self.recent.push_back(AlertSummary::of(a));
        }
        if let Err(err) = self.outputs.emit_batch(&alerts) {
            tracing::error!(error = %format!("{err:#}"), alerts = alerts.len(), "alert output failed");
            self.counters.output_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A reader of this pipeline's spool, refreshed to see every sealed block.
    fn status_reader(&mut self) -> Option<&SpoolReader> {
        refreshed_reader(&mut self.status_reader, self.spool_path.as_ref()?)
    }

    /// Answers one control-socket request.
    fn serve(&mut self, req: ControlRequest, queue_depth: usize) {
        match req {
            ControlRequest::Status(reply) => {
                let mut snap = self.snapshot(queue_depth);
                if snap.spool.is_some() {
                    if let Some(info) = self.status_reader().map(|r| r.info()) {
                        if let Some(usage) = snap.spool.as_mut() {
                            usage.used_bytes = Some(info.used_bytes);
                            usage.oldest = info.oldest_ts.map(dsl::time::format_rfc3339);
                            usage.newest = info.newest_ts.map(dsl::time::format_rfc3339);
                        }
                    }
                }
                let _ = reply.send(snap);
            }
            ControlRequest::Lookup {
                alert_id,
                mut entity_ids,
                reply,
            } => {
                // The newest alerts and events must be findable.
                self.commit_alerts();
                if let Err(err) = self.spool.flush() {
                    tracing::warn!(error = %format!("{err:#}"), "spool flush for context failed");
                }
                let alert =
                    alert_id.and_then(|id| self.recent.iter().rev().find(|a| a.id == id).cloned());
                if let Some(a) = &alert {
                    for id in &a.entity_ids {
                        if !entity_ids.contains(id) {
                            entity_ids.push(id.clone());
                        }
                    }
                }
                let entities = entity_ids
                    .into_iter()
                    .map(|id| EntityTable {
                        process: self.table.by_entity(&id).cloned(),
                        ancestry: self.table.ancestry(&id),
                        entity_id: id,
                    })
                    .collect();
                let _ = reply.send(Lookup { alert, entities });
            }
            ControlRequest::SwapRules(rules, reply) => {
                // Alerts raised by the old rules go out first. Open sequence
                // state belongs to the old rules and is dropped with them.
                self.commit_alerts();
                let n = rules.len();
                self.correlator = Correlator::new(rules, self.correlator_cfg);
                self.rules_reloads += 1;
                tracing::info!(rules = n, "rules reloaded");
                let _ = reply.send(n);
            }
        }
    }

    /// Time-driven work: write status (the spool thread seals on its own).
    pub fn tick(&mut self, queue_depth: usize) {
        // status.json is the fallback of `vigil status` when the socket is
        // down: every 2 s is fresh enough and keeps an idle agent idle.
        let due = self
            .status_written
            .is_none_or(|t| t.elapsed() >= STATUS_FILE_EVERY);
        if let (Some(path), true) = (&self.status_path, due) {
            self.status_written = Some(Instant::now());
            let snap = self.snapshot(queue_depth);
            if let Err(err) = write_status(path, &snap) {
                tracing::debug!(error = %err, "status write failed");
            }
        }
    }

    pub fn snapshot(&self, queue_depth: usize) -> StatusSnapshot {
        let c = &self.counters;
        let (rss_kb, peak_rss_kb) = memory_kb();
        StatusSnapshot {
            at: dsl::time::format_rfc3339(dsl::time::now_ns()),
            uptime_secs: self.started.elapsed().as_secs(),
            received: self.queue.received.load(Ordering::Relaxed),
            dropped: self.queue.dropped.load(Ordering::Relaxed),
            queue_depth,
            processed: self.processed,
            spooled: c.spooled.load(Ordering::Relaxed),
            spool_errors: c.spool_errors.load(Ordering::Relaxed),
            alerts: c.alerts.load(Ordering::Relaxed),
            output_errors: c.output_errors.load(Ordering::Relaxed),
            processes_tracked: self.table.len(),
            rss_kb,
            peak_rss_kb,
            rules: self
                .correlator
                .stats()
                .into_iter()
                .map(|r| RuleStatus {
                    id: r.id,
                    open_chains: r.sequence.open,
                    evicted: r.sequence.evicted,
                    expired: r.sequence.expired,
                    completed: r.sequence.completed,
                })
                .collect(),
            rules_reloads: self.rules_reloads,
            spool: self.spool.usage(),
            outbox: self
                .sinks
                .as_ref()
                .map(|m| m.outbox().status())
                .or_else(|| self.outputs.outbox().map(|o| o.status())),
            sinks: self.sinks.as_ref().map(|m| m.status()).unwrap_or_default(),
        }
    }

    /// Seals the spool and flushes outputs (clean shutdown).
    pub fn finish(&mut self) -> Result<()> {
        self.commit_alerts();
        self.spool.finish()?;
        self.outputs.flush()?;
        // The last status.json says how the run ended, whenever it was written.
        self.status_written = None;
        self.tick(0);
        Ok(())
    }

    /// Runs until `stop` is set and the queue is drained.
    pub fn run(
        mut self,
        rx: Receiver<Arc<Event>>,
        stop: Arc<AtomicBool>,
    ) -> Result<StatusSnapshot> {
        let mut last_tick = Instant::now();
        let mut last_log = Instant::now();
        let control = self.control.take();
        let mut requests_open = true;
        'events: loop {
            // Busy: events back to back, BURST at a time between looks at
            // the clock and the control socket. Idle: commit what waits,
            // then nap for `idle_nap` (or until a control request, or a
            // burst) and take whatever arrived meanwhile as one batch.
            // Napping instead of blocking on the queue means sources seldom
            // pay for waking this thread, and at a few thousand events/s the
            // agent wakes about once a second instead of once per event,
            // with warm caches for a whole batch.
            let mut idle = false;
            for _ in 0..BURST {
                match rx.try_recv() {
                    Ok(e) => self.handle(e),
                    Err(TryRecvError::Empty) => {
                        idle = true;
                        break;
                    }
                    Err(TryRecvError::Disconnected) => break 'events,
                }
            }
            if idle {
                // Nothing waits for a batch to fill while the pipeline naps.
                self.spool.hand_off();
                self.commit_alerts();
                // A request ends the nap early (it is answered just below),
                // and so does a burst that fills a quarter of the queue: a
                // long nap must not cost drops.
                match &control {
                    Some(c) => {
                        // Events that came meanwhile count towards it.
                        let quarter = rx.capacity().unwrap_or(usize::MAX) / 4;
                        self.queue.arm_wake(quarter.saturating_sub(rx.len()) as u64);
                        c.nap(self.idle_nap);
                        self.queue.disarm_wake();
                    }
                    None => std::thread::sleep(self.idle_nap),
                }
            }
            // Requests are answered between events, also under load. With
            // the control socket gone the nap still ends on a burst.
            if let (Some(c), true) = (&control, requests_open) {
                match c.try_recv() {
                    Ok(r) => self.serve(r, rx.len()),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => requests_open = false,
                }
            }
            if self
                .pending_since
                .is_some_and(|t| t.elapsed() >= COMMIT_DELAY)
            {
                self.commit_answered_alerts();
            }
            if last_tick.elapsed() >= Duration::from_millis(250) {
                self.tick(rx.len());
                last_tick = Instant::now();
            }
            if last_log.elapsed() >= Duration::from_secs(60) {
                let s = self.snapshot(rx.len());
                tracing::info!(
                    received = s.received,
                    dropped = s.dropped,
                    spooled = s.spooled,
                    alerts = s.alerts,
                    "counters"
                );
                last_log = Instant::now();
            }
            if stop.load(Ordering::Relaxed) {
                // Drain what the sources already handed over.
                while let Ok(e) = rx.try_recv() {
                    self.handle(e);
                }
                break;
            }
        }
        self.finish()?;
        Ok(self.snapshot(0))
    }
}

/// What the spool thread must look up for an alert's `window:` context.
fn window_request_of(alert: &Alert) -> Option<WindowRequest> {
    Some(WindowRequest {
        window_ns: window_request(alert)?,
        host: alert_host(alert),
        first_ns: alert.first_timestamp_ns,
        last_ns: alert.timestamp_ns,
    })
}

fn alert_host(alert: &Alert) -> Option<String> {
    alert.host_id.clone().or_else(|| {
        alert
            .events
            .first()
            .and_then(|e| e.host.id.as_deref().map(str::to_string))
    })
}

/// `enrichments.window` of an alert, serialized here (on the spool thread).
pub(crate) fn window_value(
    start: i64,
    end: i64,
    found: Result<(Vec<Event>, bool), spool::SpoolError>,
) -> RawJson {
    #[derive(Serialize)]
    struct Window<'a> {
        start: String,
        end: String,
        truncated: bool,
        events: &'a [Event],
    }
    #[derive(Serialize)]
    struct Failed {
        error: String,
    }
    let raw = match &found {
        Ok((events, truncated)) => serde_json::value::to_raw_value(&Window {
            start: dsl::time::format_rfc3339(start),
            end: dsl::time::format_rfc3339(end),
            truncated: *truncated,
            events,
        }),
        Err(err) => serde_json::value::to_raw_value(&Failed {
            error: err.to_string(),
        }),
    };
    let raw = raw.unwrap_or_else(|err| {
        serde_json::value::to_raw_value(&Failed {
            error: err.to_string(),
        })
        .expect("a struct of one string serializes")
    });
    RawJson(raw)
}

/// The longest `window:<duration>` the alert's rule asks for (capped at 24 h).
fn window_request(alert: &Alert) -> Option<i64> {
    alert
        .context_requests
        .iter()
        .filter_map(|c| c.strip_prefix("window:"))
        .filter_map(|d| dsl::time::parse_duration_ns(d).ok())
        .max()
        .map(|ns| ns.clamp(0, MAX_WINDOW_NS))
}

fn attach_ancestry(table: &ProcessTable, alert: &mut Alert) {
    let mut chains = serde_json::Map::new();
    for e in &alert.events {
        if let Some(eid) = e.process.entity_id.as_deref() {
            let chain = table.ancestry(eid);
            if !chain.is_empty() {
                chains.insert(
                    eid.to_string(),
                    serde_json::to_value(chain).unwrap_or_default(),
                );
            }
        }
    }
    if !chains.is_empty() {
        alert
            .enrichments
            .insert("ancestry".into(), serde_json::Value::Object(chains));
    }
}

/// Writes atomically (temp file + rename) so readers never see half a file.
pub(crate) fn write_status(path: &std::path::Path, snap: &StatusSnapshot) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(snap)?)?;
    std::fs::rename(tmp, path)
}
