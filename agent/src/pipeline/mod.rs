//! The pipeline thread: takes events off the queue, enriches them from the
//! process table, appends them to the spool and runs the correlator; alerts
//! go to the alert outputs. Each stage counts what it did for `status`.

pub mod outputs;
pub mod process_table;
pub mod queue;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossbeam::channel::{Receiver, RecvTimeoutError};
use dsl::alert::Alert;
use dsl::correlate::CorrelatorConfig;
use dsl::rules::{Correlator, RuleSet};
use dsl::Event;
use serde::Serialize;
use spool::SpoolConfig;

use crate::event_store::EventSpool;
use outputs::AlertOutputs;
use process_table::ProcessTable;
use queue::QueueCounters;

/// Counters shared with the status writer.
#[derive(Debug, Default)]
pub struct PipelineCounters {
    pub processed: AtomicU64,
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
}

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
    spool: Option<EventSpool>,
    correlator: Correlator,
    outputs: AlertOutputs,
    counters: Arc<PipelineCounters>,
    queue: Arc<QueueCounters>,
    status_path: Option<PathBuf>,
    started: Instant,
    alerts: Vec<Alert>,
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
        let spool = cfg
            .spool
            .map(|(path, sc)| EventSpool::open(&path, sc))
            .transpose()?;
        Ok(Pipeline {
            table,
            spool,
            correlator: Correlator::new(rules, cfg.correlator),
            outputs: cfg.outputs,
            counters: Arc::default(),
            queue,
            status_path: cfg.status_path,
            started: Instant::now(),
            alerts: Vec::new(),
        })
    }

    pub fn counters(&self) -> Arc<PipelineCounters> {
        Arc::clone(&self.counters)
    }

    /// Enrich, spool, correlate, emit: everything one event goes through.
    pub fn handle(&mut self, mut e: Event) {
        self.table.observe(&mut e);
        if let Some(spool) = self.spool.as_mut() {
            match spool.append(&e) {
                Ok(()) => self.counters.spooled.fetch_add(1, Ordering::Relaxed),
                Err(err) => {
                    // A record that cannot be stored must not stop detection.
                    tracing::warn!(error = %err, "spool append failed");
                    self.counters.spool_errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
        self.correlator.process(&e, &mut self.alerts);
        self.counters.processed.fetch_add(1, Ordering::Relaxed);
        for mut alert in self.alerts.drain(..) {
            if alert.context_requests.iter().any(|c| c == "ancestry") {
                attach_ancestry(&self.table, &mut alert);
            }
            self.counters.alerts.fetch_add(1, Ordering::Relaxed);
            if let Err(err) = self.outputs.emit(&alert) {
                tracing::error!(error = %err, alert = %alert.id, "alert output failed");
                self.counters.output_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Time-driven work: seal the spool batch, write status.
    pub fn tick(&mut self, queue_depth: usize) {
        if let Some(spool) = self.spool.as_mut() {
            if let Err(err) = spool.seal_if_due() {
                tracing::warn!(error = %err, "spool seal failed");
            }
        }
        if let Some(path) = &self.status_path {
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
            processed: c.processed.load(Ordering::Relaxed),
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
        }
    }

    /// Seals the spool and flushes outputs (clean shutdown).
    pub fn finish(&mut self) -> Result<()> {
        if let Some(spool) = self.spool.as_mut() {
            spool.flush()?;
        }
        self.outputs.flush()?;
        self.tick(0);
        Ok(())
    }

    /// Runs until `stop` is set and the queue is drained.
    pub fn run(mut self, rx: Receiver<Event>, stop: Arc<AtomicBool>) -> Result<StatusSnapshot> {
        let mut last_tick = Instant::now();
        let mut last_log = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(e) => self.handle(e),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
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
fn write_status(path: &std::path::Path, snap: &StatusSnapshot) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(snap)?)?;
    std::fs::rename(tmp, path)
}
