//! Alerts from raised to committed: context asked for while the events
//! are at hand (`ancestry` from the process table, `window:` from the spool
//! thread), then handed to the outputs in groups, so that one outbox fsync
//! serves them all.

use std::sync::atomic::Ordering;

use crossbeam::channel::TryRecvError;
use dsl::alert::{Alert, RawJson};
use dsl::Event;
use serde::Serialize;

use super::process_table::ProcessTable;
use super::spool_thread::WindowRequest;
use super::{Pipeline, RECENT_ALERTS};
use crate::history::context::{AlertSummary, MAX_WINDOW_NS};

impl Pipeline {
    /// Adds window context, then hands the pending alerts to the outputs
    /// (outbox first, with one fsync for all).
    pub fn commit_alerts(&mut self) {
        self.commit(true);
    }

    /// Commits the pending alerts up to the first whose window the spool
    /// thread has not answered yet, without waiting for it. Under load the
    /// spool thread may hold thousands of events ahead of that answer;
    /// waiting for them would idle this thread while it works through them.
    pub(super) fn commit_answered_alerts(&mut self) {
        self.commit(false);
    }

    /// Commits pending alerts in order: all of them with `wait`, otherwise
    /// those before the first window still unanswered.
    pub(super) fn commit(&mut self, wait: bool) {
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

    pub(super) fn emit(&mut self, alerts: Vec<Alert>) {
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
}

/// What the spool thread must look up for an alert's `window:` context.
pub(super) fn window_request_of(alert: &Alert) -> Option<WindowRequest> {
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

pub(super) fn attach_ancestry(table: &ProcessTable, alert: &mut Alert) {
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
