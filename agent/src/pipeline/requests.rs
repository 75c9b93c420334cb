//! How others ask the pipeline thread, which owns the process table and
//! the correlator: a bounded channel of [`Request`]s it answers between
//! events. The control socket and the fleet responder send them; the
//! pipeline knows nothing of either.

use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{bounded, Receiver, SendTimeoutError, Sender, TryRecvError};
use dsl::correlate::Correlator;
use dsl::rules::RuleSet;

use super::status::StatusSnapshot;
use super::Pipeline;
use crate::history::context::{EntityTable, Lookup};
use crate::wake::{WakeOnDemand, Waker};

/// What is asked of the pipeline thread.
pub enum Request {
    Status(Sender<StatusSnapshot>),
    /// Recent alert by id (if given) and table facts about these entities
    /// (plus the alert's). Seals the spool's open batch so the caller's
    /// reader sees the latest events.
    Lookup {
        alert_id: Option<String>,
        entity_ids: Vec<String>,
        reply: Sender<Lookup>,
    },
    /// Replace the rule set; answers with the number of rules.
    SwapRules(Arc<RuleSet>, Sender<usize>),
}

/// Makes the channel between the control socket and the pipeline thread,
/// holding at most `capacity` requests.
pub fn channel(capacity: usize) -> std::io::Result<(RequestSender, RequestReceiver)> {
    let (tx, rx) = bounded(capacity);
    let wake = WakeOnDemand::new()?;
    let sender = RequestSender {
        tx,
        wake: wake.waker(),
    };
    Ok((sender, RequestReceiver { rx, wake }))
}

/// The control side's end: every request also wakes the pipeline thread
/// from its nap, so it answers at once instead of at the end of the nap.
#[derive(Clone)]
pub struct RequestSender {
    tx: Sender<Request>,
    wake: Waker,
}

impl RequestSender {
    pub fn send_timeout(
        &self,
        req: Request,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<Request>> {
        self.tx.send_timeout(req, timeout)?;
        self.wake.wake();
        Ok(())
    }
}

/// The pipeline thread's end: requests, and a nap a request ends.
pub struct RequestReceiver {
    rx: Receiver<Request>,
    wake: WakeOnDemand,
}

impl RequestReceiver {
    pub fn try_recv(&self) -> Result<Request, TryRecvError> {
        self.rx.try_recv()
    }

    /// Ends the nap from elsewhere too (a source whose burst fills the queue).
    pub fn waker(&self) -> Waker {
        self.wake.waker()
    }

    /// Sleeps for `timeout` or until a request comes (one that came before
    /// ends the nap at once). Unlike a blocking channel receive, it does not
    /// spin first, which on a VM costs more than the sleep.
    pub fn nap(&self, timeout: Duration) {
        self.wake
            .wait(None::<&std::os::unix::net::UnixStream>, Some(timeout));
    }
}

impl Pipeline {
    /// Answers one control-socket request.
    pub(super) fn serve(&mut self, req: Request, queue_depth: usize) {
        match req {
            Request::Status(reply) => {
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
            Request::Lookup {
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
            Request::SwapRules(rules, reply) => {
                // Alerts raised by the old rules go out first. Open sequence
                // state belongs to the old rules and is dropped with them.
                self.commit_alerts();
                let n = rules.len();
                self.alerts_capped_before += self.correlator.alerts_capped();
                self.correlator = Correlator::new(rules, self.correlator_cfg);
                self.rules_reloads += 1;
                tracing::info!(rules = n, "rules reloaded");
                let _ = reply.send(n);
            }
        }
    }
}
