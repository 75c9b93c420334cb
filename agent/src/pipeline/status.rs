//! The pipeline's counters as `vigil status` shows them: the snapshot, the
//! resident memory, and `status.json`, written every couple of seconds as
//! the fallback when the control socket is down.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;
use spool::SpoolReader;

use super::{Pipeline, STATUS_FILE_EVERY};

/// How often the process table is checked against the processes the OS runs.
const PROCESS_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether `pid` is a running process (signal 0 probes without sending).
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let probed = unsafe { libc::kill(pid, 0) };
    probed == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
use crate::delivery::outbox::OutboxStatus;
use crate::delivery::sinks::SinkStatus;
use crate::history::store::refreshed_reader;

/// A snapshot for `vigil status`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct StatusSnapshot {
    pub at: String,
    pub uptime_secs: u64,
    pub received: u64,
    pub dropped: u64,
    pub queue_depth: usize,
    pub processed: u64,
    /// Exec events without a process name or executable (the process was
    /// gone before its source could read it).
    #[serde(default)]
    pub execs_without_image: u64,
    pub spooled: u64,
    pub spool_errors: u64,
    pub alerts: u64,
    /// Alerts not raised: their event had already raised the most one
    /// event may ([`dsl::rules::limits::MAX_ALERTS_PER_EVENT`]).
    #[serde(default)]
    pub alerts_capped: u64,
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

/// (current, peak) resident set size in KiB from /proc/self/status.
pub fn memory_kb() -> (u64, u64) {
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
    /// `on_match` overruns of its time budget (3: the hook is disabled).
    #[serde(default)]
    pub hook_overruns: u32,
}

impl Pipeline {
    /// A reader of this pipeline's spool, refreshed to see every sealed block.
    pub(super) fn status_reader(&mut self) -> Option<&SpoolReader> {
        refreshed_reader(&mut self.status_reader, self.spool_path.as_ref()?)
    }

    /// Time-driven work: write status (the spool thread seals on its own).
    pub fn tick(&mut self, queue_depth: usize) {
        if self.sweep_processes && self.swept.elapsed() >= PROCESS_SWEEP_EVERY {
            self.swept = Instant::now();
            let gone = self.table.sweep(pid_alive, dsl::time::now_ns());
            if gone > 0 {
                tracing::debug!(
                    processes = gone,
                    "process table: retired processes the OS no longer runs"
                );
            }
        }
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
            execs_without_image: self.execs_without_image,
            spooled: c.spooled.load(Ordering::Relaxed),
            spool_errors: c.spool_errors.load(Ordering::Relaxed),
            alerts: c.alerts.load(Ordering::Relaxed),
            alerts_capped: self.alerts_capped_before + self.correlator.alerts_capped(),
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
                    hook_overruns: r.hook_overruns,
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
}

/// Writes atomically (temp file + rename) so readers never see half a file.
pub fn write_status(path: &std::path::Path, snap: &StatusSnapshot) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(snap)?)?;
    std::fs::rename(tmp, path)
}
