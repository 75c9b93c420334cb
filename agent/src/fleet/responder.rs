//! The agent's side of fleet requests (protocol in `fleet/mod.rs`). Runs
//! on the NATS runtime; hunts run on its blocking pool against the spool
//! file (read-only, safe while the pipeline writes), status and context go
//! through the control handler as if asked on the socket.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch, Semaphore};

use super::FleetError;
use super::{Done, FleetSection, HostEntry};
use crate::control::ControlHandler;
use crate::history::query::{run_query, Found, Hunt};
use crate::nats::{runtime, subject_token, NatsSection};

/// Longest deadline a request may ask for (status/context; hunts are
/// capped by `max_hunt_seconds`).
const MAX_DEADLINE: Duration = Duration::from_secs(3_600);
const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Room left in each message for the chunk's envelope.
const ENVELOPE: usize = 1_024;

pub struct ResponderConfig {
    pub fleet: FleetSection,
    pub nats: NatsSection,
    pub host_id: String,
    pub spool: Option<PathBuf>,
    pub control: ControlHandler,
}

/// Running responder; stops (and unsubscribes) when dropped.
pub struct FleetResponder {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FleetResponder {
    /// Subscribes in the background: the agent runs whether or not a NATS
    /// server is reachable, and picks requests up once it is.
    pub fn start(cfg: ResponderConfig) -> FleetResponder {
        let (stop, stopped) = watch::channel(false);
        let task = runtime().spawn(serve(Arc::new(cfg), stopped));
        FleetResponder {
            stop,
            task: Some(task),
        }
    }
}

impl Drop for FleetResponder {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            // The timer must be made inside the runtime.
            let _ = runtime()
                .block_on(async { tokio::time::timeout(Duration::from_secs(3), task).await });
        }
    }
}

struct Shared {
    cfg: Arc<ResponderConfig>,
    client: async_nats::Client,
    /// Running requests by id, so a cancel can reach them.
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
    slots: Semaphore,
}

async fn serve(cfg: Arc<ResponderConfig>, mut stop: watch::Receiver<bool>) {
    let client = match cfg
        .nats
        .connect_background(&format!("vigil-agent-{}", cfg.host_id))
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "fleet: cannot use NATS; fleet requests will not be answered");
            return;
        }
    };
    let p = cfg.fleet.subject_prefix.clone();
    let me = subject_token(&cfg.host_id);
    let subs = futures_util::future::try_join3(
        client.subscribe(format!("{p}.req.{me}.*")),
        client.subscribe(format!("{p}.req.all.*")),
        client.subscribe(format!("{p}.cancel.*")),
    )
    .await;
    let (own, all, cancels) = match subs {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "fleet: subscribing failed; fleet requests will not be answered");
            return;
        }
    };
    tracing::info!(host = %cfg.host_id, prefix = %p, "fleet: answering requests over NATS");
    let shared = Arc::new(Shared {
        slots: Semaphore::new(cfg.fleet.max_concurrent),
        cfg: Arc::clone(&cfg),
        client: client.clone(),
        running: Mutex::new(HashMap::new()),
    });
    let mut requests = futures_util::stream::select(own, all);
    let mut cancels = cancels;
    let started_ns = dsl::time::now_ns();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(cfg.fleet.heartbeat_s));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut registry: Option<jetstream::Context> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(msg) = requests.next() => {
                let s = Arc::clone(&shared);
                tokio::spawn(async move { s.answer(msg).await });
            }
            Some(msg) = cancels.next() => shared.cancel(&msg.subject),
            _ = heartbeat.tick() => {
                if let Err(e) = register(&cfg, &client, &mut registry, started_ns).await {
                    registry = None;
                    tracing::debug!(error = %e, "fleet: heartbeat not recorded");
                }
            }
        }
    }
    for flag in shared
        .running
        .lock()
        .map(|m| m.values().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        flag.store(true, Ordering::Relaxed);
    }
    let _ = client.flush().await;
}

/// Records this host in the hosts stream (creating it if needed).
async fn register(
    cfg: &ResponderConfig,
    client: &async_nats::Client,
    ready: &mut Option<jetstream::Context>,
    started_ns: i64,
) -> Result<(), FleetError> {
    if ready.is_none() {
        let js = jetstream::new(client.clone());
        super::hosts_stream(&js, &cfg.fleet).await?;
        *ready = Some(js);
    }
    let entry = HostEntry {
        host: cfg.host_id.clone(),
        hostname: sysinfo::System::host_name().unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_ns,
        seen_ns: dsl::time::now_ns(),
    };
    let body = serde_json::to_vec(&entry).expect("a host entry is plain JSON");
    let js = ready.as_ref().expect("set above");
    let subject = super::host_subject(&cfg.fleet.subject_prefix, &cfg.host_id);
    js.publish(subject, body.into())
        .await
        .map_err(FleetError::nats("recording this host"))?
        .await
        .map_err(FleetError::nats("recording this host"))?;
    Ok(())
}

impl Shared {
    fn cancel(&self, subject: &str) {
        let prefix = format!("{}.cancel.", self.cfg.fleet.subject_prefix);
        let Some(id) = subject.strip_prefix(&prefix) else {
            return;
        };
        if let Ok(running) = self.running.lock() {
            if let Some(flag) = running.get(id) {
                tracing::info!(request = id, "fleet: request cancelled");
                flag.store(true, Ordering::Relaxed);
            }
        }
    }

    async fn answer(self: Arc<Self>, msg: async_nats::Message) {
        let Some(reply) = msg.reply.clone() else {
            return;
        };
        let kind = msg.subject.rsplit('.').next().unwrap_or("").to_string();
        let mut done = Done {
            host: self.cfg.host_id.clone(),
            done: true,
            ..Done::default()
        };
        let req = match parse_request(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                done.kind = Some("bad_request".into());
                done.error = Some(e.to_string());
                return self.send_done(&reply, done).await;
            }
        };
        done.request_id = req.id.clone();
        if !super::KINDS.contains(&kind.as_str()) {
            done.kind = Some("bad_request".into());
            done.error = Some(format!("unknown request kind {kind:?}"));
            return self.send_done(&reply, done).await;
        }
        if !self.cfg.fleet.allow.contains(&kind) {
            done.kind = Some("not_allowed".into());
            done.error = Some(format!(
                "this agent does not answer {kind} requests (fleet.allow)"
            ));
            return self.send_done(&reply, done).await;
        }
        let Ok(_slot) = self.slots.try_acquire() else {
            done.kind = Some("busy".into());
            done.error = Some("too many fleet requests at once".into());
            return self.send_done(&reply, done).await;
        };
        let flag = Arc::new(AtomicBool::new(false));
        if let Ok(mut running) = self.running.lock() {
            running.insert(subject_token(&req.id), Arc::clone(&flag));
        }
        let started = Instant::now();
        let done = match kind.as_str() {
            "hunt" => self.hunt(&reply, req, done, Arc::clone(&flag)).await,
            _ => self.control(&kind, req, done).await,
        };
        let mut done = done;
        done.elapsed_ms = started.elapsed().as_millis() as u64;
        if let Ok(mut running) = self.running.lock() {
            running.remove(&subject_token(&done.request_id));
        }
        self.send_done(&reply, done).await;
    }

    /// status and context: the control socket's answer, as `result`.
    async fn control(&self, kind: &str, req: Request, mut done: Done) -> Done {
        let mut obj = req.rest;
        obj.insert("cmd".into(), Value::String(kind.into()));
        let control = self.cfg.control.clone();
        let answer = tokio::task::spawn_blocking(move || control.handle(&Value::Object(obj)))
            .await
            .unwrap_or_else(|e| json!({"ok": false, "kind": "internal", "error": e.to_string()}));
        done.ok = answer["ok"].as_bool().unwrap_or(false);
        if done.ok {
            done.result = answer.get("result").cloned();
        } else {
            done.kind = answer["kind"].as_str().map(String::from);
            done.error = answer["error"].as_str().map(String::from);
        }
        done
    }

    async fn hunt(
        &self,
        reply: &async_nats::Subject,
        req: Request,
        mut done: Done,
        cancel: Arc<AtomicBool>,
    ) -> Done {
        let fleet = &self.cfg.fleet;
        let deadline = Instant::now()
            + req
                .deadline
                .min(Duration::from_secs(fleet.max_hunt_seconds));
        let job = match HuntJob::from_request(&req.rest, fleet.max_hunt_results) {
            Ok(j) => j,
            Err(e) => {
                done.kind = Some("bad_request".into());
                done.error = Some(e.to_string());
                return done;
            }
        };
        let Some(spool) = self.cfg.spool.clone() else {
            done.kind = Some("not_found".into());
            done.error = Some("this agent keeps no spool".into());
            return done;
        };
        // Events still in the pipeline's open batch become visible.
        let control = self.cfg.control.clone();
        let _ = tokio::task::spawn_blocking(move || control.flush_spool()).await;

        let (tx, mut rx) = mpsc::channel::<String>(256);
        let threads = fleet.hunt_threads;
        let flag = Arc::clone(&cancel);
        let scan =
            tokio::task::spawn_blocking(move || job.run(&spool, threads, &flag, deadline, tx));

        let max_msg = (self.client.server_info().max_payload.max(4 * ENVELOPE)) - ENVELOPE;
        let chunk_max = max_msg.min(256 * 1024);
        let budget = (fleet.max_answer_kb as usize).saturating_mul(1024);
        let mut chunk: Vec<String> = Vec::new();
        let (mut chunk_bytes, mut sent_bytes) = (0usize, 0usize);
        let mut over_budget = false;
        loop {
            let next = tokio::time::timeout_at(deadline.into(), rx.recv()).await;
            let Ok(Some(doc)) = next else {
                if next.is_err() {
                    // Out of time: stop the scan, send what we have.
                    done.truncated = true;
                    cancel.store(true, Ordering::Relaxed);
                }
                break;
            };
            if doc.len() > max_msg {
                // One result larger than a message: skip it, say so.
                done.truncated = true;
                continue;
            }
            if sent_bytes + chunk_bytes + doc.len() > budget {
                over_budget = true;
                cancel.store(true, Ordering::Relaxed);
                break;
            }
            if chunk_bytes + doc.len() > chunk_max {
                sent_bytes += chunk_bytes;
                self.send_chunk(reply, &done, std::mem::take(&mut chunk))
                    .await;
                chunk_bytes = 0;
            }
            chunk_bytes += doc.len() + 1;
            chunk.push(doc);
            done.matches += 1;
        }
        if !chunk.is_empty() {
            self.send_chunk(reply, &done, chunk).await;
        }
        drop(rx);
        match scan.await {
            Ok(Ok(out)) => {
                done.ok = true;
                done.scanned = out.scanned;
                done.truncated |= over_budget || out.limited || out.timed_out;
                done.cancelled = out.cancelled && !over_budget && !out.timed_out && !done.truncated;
                if out.damaged > 0 {
                    done.error = Some(format!(
                        "{} spool blocks were corrupt or overwritten during the hunt",
                        out.damaged
                    ));
                }
            }
            Ok(Err(e)) => {
                done.kind = Some("bad_request".into());
                done.error = Some(e.to_string());
            }
            Err(e) => {
                done.kind = Some("internal".into());
                done.error = Some(format!("hunt failed: {e}"));
            }
        }
        done
    }

    async fn send_chunk(&self, reply: &async_nats::Subject, done: &Done, events: Vec<String>) {
        let mut body = serde_json::to_string(&json!({
            "host": done.host,
            "request_id": done.request_id,
        }))
        .expect("plain JSON");
        body.pop();
        body.push_str(",\"events\":[");
        body.push_str(&events.join(","));
        body.push_str("]}");
        if let Err(e) = self.client.publish(reply.clone(), body.into()).await {
            tracing::warn!(error = %e, "fleet: sending an answer chunk failed");
        }
    }

    async fn send_done(&self, reply: &async_nats::Subject, mut done: Done) {
        let mut body = serde_json::to_vec(&done).expect("plain JSON");
        if body.len() + ENVELOPE > self.client.server_info().max_payload {
            done.result = None;
            done.ok = false;
            done.kind = Some("too_large".into());
            done.error =
                Some("the answer is larger than a NATS message; ask for less (limit)".into());
            body = serde_json::to_vec(&done).expect("plain JSON");
        }
        if let Err(e) = self.client.publish(reply.clone(), body.into()).await {
            tracing::warn!(error = %e, "fleet: sending an answer failed");
        }
        let _ = self.client.flush().await;
    }
}

/// A request's common keys; `rest` holds the kind's own.
struct Request {
    id: String,
    deadline: Duration,
    rest: Map<String, Value>,
}

fn parse_request(payload: &[u8]) -> Result<Request, FleetError> {
    if payload.len() > crate::control::MAX_REQUEST {
        return Err(FleetError::bad("request larger than 64 KiB"));
    }
    let v: Value = serde_json::from_slice(payload)
        .map_err(|e| FleetError::bad(format!("request is not JSON: {e}")))?;
    let Value::Object(mut obj) = v else {
        return Err(FleetError::bad("request must be a JSON object"));
    };
    let id = match obj.remove("request_id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => s,
        None => String::new(),
        Some(_) => {
            return Err(FleetError::bad(
                "request_id must be a string of 1-128 characters",
            ))
        }
    };
    let deadline = match obj.remove("deadline_ms") {
        None => DEFAULT_DEADLINE,
        Some(v) => match v.as_u64() {
            Some(ms) if ms > 0 => Duration::from_millis(ms).min(MAX_DEADLINE),
            _ => return Err(FleetError::bad("deadline_ms must be a positive number")),
        },
    };
    Ok(Request {
        id,
        deadline,
        rest: obj,
    })
}

/// A hunt as a request describes it, checked before any spool is read.
struct HuntJob {
    hunt: Hunt,
    range: spool::TimeRange,
    limit: u64,
}

struct HuntOutcome {
    scanned: u64,
    damaged: usize,
    limited: bool,
    timed_out: bool,
    cancelled: bool,
}

impl HuntJob {
    fn from_request(req: &Map<String, Value>, max_results: u64) -> Result<HuntJob, FleetError> {
        for k in req.keys() {
            if !["query", "since", "until", "limit"].contains(&k.as_str()) {
                return Err(FleetError::bad(format!("unknown key {k:?} for hunt")));
            }
        }
        let s = |k: &str| -> Result<Option<&str>, FleetError> {
            match req.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(v)) => Ok(Some(v.as_str())),
                Some(_) => Err(FleetError::bad(format!("{k} must be a string"))),
            }
        };
        let query = s("query")?
            .ok_or_else(|| FleetError::bad("hunt needs query"))?
            .to_string();
        let hunt = Hunt::query(&query).map_err(|e| FleetError::bad(e.to_string()))?;
        let range = crate::history::timearg::time_range(s("since")?, s("until")?)
            .map_err(|e| FleetError::bad(format!("{e:#}")))?;
        let limit = match req.get("limit") {
            None | Some(Value::Null) => max_results,
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| FleetError::bad("limit must be a positive number"))?
                .min(max_results),
        };
        Ok(HuntJob { hunt, range, limit })
    }

    /// Scans the spool, sending each result as JSON until the limit, the
    /// deadline, a cancel or the receiver going away.
    fn run(
        self,
        spool: &std::path::Path,
        threads: usize,
        cancel: &AtomicBool,
        deadline: Instant,
        tx: mpsc::Sender<String>,
    ) -> Result<HuntOutcome, FleetError> {
        let reader = spool::SpoolReader::open(spool)?;
        let mut sent = 0u64;
        let mut limited = false;
        let mut timed_out = false;
        let mut send = |doc: String| -> ControlFlow<()> {
            if tx.blocking_send(doc).is_err() {
                return ControlFlow::Break(());
            }
            sent += 1;
            if sent >= self.limit {
                limited = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        };
        let mut progress = |_: usize, _: usize, _: u64| {
            if cancel.load(Ordering::Relaxed) {
                return ControlFlow::Break(());
            }
            if Instant::now() >= deadline {
                timed_out = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        };
        let report = run_query(
            &reader,
            self.range,
            &self.hunt,
            threads,
            &mut |found| match found {
                Found::Event(e) => send(dsl::ecs::to_ecs_json(e)),
                Found::Alert(a) => send(serde_json::to_string(a).unwrap_or_default()),
            },
            &mut progress,
        );
        Ok(HuntOutcome {
            scanned: report.events_scanned,
            damaged: report.corrupt_blocks + report.overwritten_blocks,
            limited,
            timed_out,
            cancelled: cancel.load(Ordering::Relaxed),
        })
    }
}
