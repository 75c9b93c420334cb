//! The control socket: `<state_dir>/vigil.sock`, a Unix socket (mode 0600,
//! so only the agent's user can connect) speaking one JSON object per line
//! each way.
//!
//! Requests (`cmd` selects; unknown keys are errors):
//! * `{"cmd":"status"}`: counters, queue depth, drops, spool usage, rule
//!   stats, outbox and sink backlogs.
//! * `{"cmd":"context", "alert_id"|"entity_id"|"id": "...", "window":"5m",
//!   "limit":200}` or `{"cmd":"context","host":"...","start":T,"end":T}`
//!   (T: RFC 3339 or a duration back from now): see `history/context.rs`.
//! * `{"cmd":"rules_reload"}`: loads the rules again; a set with any error
//!   is rejected whole and the running set stays.
//!
//! Answers: `{"ok":true,"result":...}` or `{"ok":false,"kind":K,"error":..}`
//! with K one of `bad_request`, `not_found`, `rejected`, `busy`, `internal`.
//! Lines over 64 KiB, bad JSON, unknown ids and windows over 24 h get such
//! errors; the agent is never affected. The pipeline thread owns the process
//! table and correlator, so requests reach it through a channel it polls
//! between events; spool reads happen on the connection's thread.
//!
//! Owns: the socket and its JSON protocol. Must not touch: the pipeline's
//! state except through `pipeline::requests`; history reads go through
//! `history::context`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{bounded, Sender};
use serde_json::{json, Map, Value};
use spool::SpoolReader;

use crate::delivery::outbox::Outbox;
use crate::history::context::{
    self, AlertSummary, Lookup, DEFAULT_LIMIT, DEFAULT_WINDOW_NS, MAX_LIMIT, MAX_WINDOW_NS,
};
use crate::pipeline::requests::{Request, RequestSender};
use crate::wake::{WakeOnDemand, Waker};

/// Longest request line accepted.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Connections served at once; more are told the agent is busy.
const MAX_CONNECTIONS: usize = 8;
/// One more connection beyond those, kept for what an admin needs when the
/// others are taken (by slow context queries or idle clients): `status`
/// and `rules_reload`.
const RESERVED_CONNECTIONS: usize = 1;
/// A connection that sends no request for this long is closed (a client
/// that connected and went quiet no longer holds a slot).
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection's thread waits for the pipeline thread.
const PIPELINE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server finds what it needs besides the pipeline.
pub struct ControlConfig {
    pub socket: PathBuf,
    pub spool: Option<PathBuf>,
    pub rules_dir: Option<PathBuf>,
    pub shipped_rules: bool,
    pub outbox: Option<Outbox>,
}

struct Server {
    cfg: ControlConfig,
    pipeline: RequestSender,
    reader: Mutex<Option<SpoolReader>>,
    connections: AtomicUsize,
}

pub struct ControlServer {
    path: PathBuf,
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    /// Ends the accept loop's sleep when the server stops.
    waker: Waker,
    thread: Option<JoinHandle<()>>,
}

/// Answers control requests without the socket: the fleet responder
/// serves `status` and `context` over NATS through it.
#[derive(Clone)]
pub struct ControlHandler(Arc<Server>);

impl ControlHandler {
    /// One request object in, one answer object out (as on the socket).
    pub fn handle(&self, req: &Value) -> Value {
        answer(self.0.handle(req.to_string().as_bytes()))
    }

    /// Seals the pipeline's open spool batch, so a reader opened next sees
    /// every event received so far. False if the pipeline did not answer.
    pub fn flush_spool(&self) -> bool {
        self.0.seal_spool().is_ok()
    }
}

/// Why the control socket did not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another agent answers on the socket: this one must not start.
    #[error("another agent is serving {} (one agent per state directory)", .0.display())]
    AnotherAgent(PathBuf),
    /// The socket could not be set up (a path too long for a Unix socket,
    /// say); the agent runs without it.
    #[error("{what} {}: {source}", path.display())]
    Socket {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
}

impl ControlError {
    fn socket(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ControlError {
        let path = path.to_path_buf();
        move |source| ControlError::Socket { what, path, source }
    }

    fn thread(what: &'static str) -> impl FnOnce(std::io::Error) -> ControlError {
        move |source| ControlError::Thread { what, source }
    }
}

/// A request failure: its kind and message.
struct Failure(&'static str, String);

impl Failure {
    fn bad(m: impl Into<String>) -> Failure {
        Failure("bad_request", m.into())
    }
}

fn answer(r: Result<Value, Failure>) -> Value {
    match r {
        Ok(v) => json!({"ok": true, "result": v}),
        Err(Failure(kind, error)) => json!({"ok": false, "kind": kind, "error": error}),
    }
}

impl ControlServer {
    /// Binds the socket (refusing if another agent answers on it) and
    /// starts accepting.
    pub fn start(
        cfg: ControlConfig,
        pipeline: RequestSender,
    ) -> Result<ControlServer, ControlError> {
        let path = cfg.socket.clone();
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                return Err(ControlError::AnotherAgent(path));
            }
            // Left over by an agent that did not stop cleanly.
            std::fs::remove_file(&path)
                .map_err(ControlError::socket("removing stale socket", &path))?;
        }
        // The socket gets its mode from the umask at bind time: make it 0600
        // from the start instead of fixing it after others could connect.
        // SAFETY: umask only swaps the process mask; it cannot fail.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(&path);
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
        let listener = bound.map_err(ControlError::socket("binding", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(ControlError::socket("chmod 0600", &path))?;
        let stop = Arc::new(AtomicBool::new(false));
        let server = Arc::new(Server {
            cfg,
            pipeline,
            reader: Mutex::new(None),
            connections: AtomicUsize::new(0),
        });
        let wake = WakeOnDemand::new()
            .map_err(ControlError::thread("making the control thread's wake-up"))?;
        let waker = wake.waker();
        let stop2 = Arc::clone(&stop);
        let server2 = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || accept_loop(listener, server2, stop2, wake))
            .map_err(ControlError::thread("starting the control thread"))?;
        Ok(ControlServer {
            path,
            server,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn handler(&self) -> ControlHandler {
        ControlHandler(Arc::clone(&self.server))
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Polls a non-blocking listener together with a wake-up, so that stopping
/// never depends on reaching the socket path (it may have been removed
/// under us) and an idle agent does not wake here at all.
fn accept_loop(
    listener: UnixListener,
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    wake: WakeOnDemand,
) {
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::error!(error = %e, "control socket: cannot poll; not serving");
        return;
    }
    while !stop.load(Ordering::Acquire) {
        let mut conn = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                wake.wait(Some(&listener), None);
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if conn.set_nonblocking(false).is_err() {
            continue;
        }
        let taken = server.connections.fetch_add(1, Ordering::AcqRel);
        if taken >= MAX_CONNECTIONS + RESERVED_CONNECTIONS {
            server.connections.fetch_sub(1, Ordering::AcqRel);
            let busy = answer(Err(Failure("busy", "too many control connections".into())));
            let _ = writeln!(conn, "{busy}");
            continue;
        }
        let s = Arc::clone(&server);
        let spawned = std::thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || {
                serve_connection(conn, &s, taken >= MAX_CONNECTIONS);
                s.connections.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            server.connections.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Serves one connection's requests, a line each. On the reserved slot
/// only `status` and `rules_reload` are served.
fn serve_connection(conn: UnixStream, server: &Server, reserved: bool) {
    let _ = conn.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut input = BufReader::new(conn);
    loop {
        let mut line = Vec::new();
        // One byte past the limit tells "too long" from "exactly at it".
        match (&mut input)
            .take(MAX_REQUEST as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => return,
            Ok(_) => {}
            Err(_) => return,
        }
        let complete = line.last() == Some(&b'\n');
        let reply = if line.len() > MAX_REQUEST && !complete {
            // The rest of the line is not worth reading: answer and hang up.
            let r = answer(Err(Failure::bad(format!(
                "request line longer than {} KiB",
                MAX_REQUEST / 1024
            ))));
            let _ = writeln!(out, "{r}");
            return;
        } else if reserved && !is_admin_request(&line) {
            answer(Err(Failure(
                "busy",
                "too many control connections (one is kept for status and rules_reload)".into(),
            )))
        } else {
            answer(server.handle(&line))
        };
        if writeln!(out, "{reply}").is_err() {
            return;
        }
    }
}

/// `status` or `rules_reload`: what the reserved connection serves.
fn is_admin_request(line: &[u8]) -> bool {
    serde_json::from_slice::<Value>(line).is_ok_and(|v| {
        matches!(
            v.get("cmd").and_then(Value::as_str),
            Some("status" | "rules_reload")
        )
    })
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Failure> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(Failure::bad(format!("{key} is empty"))),
        Some(Value::String(s)) if s.len() > 1024 => {
            Err(Failure::bad(format!("{key} is longer than 1024 bytes")))
        }
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Failure::bad(format!("{key} must be a string"))),
    }
}

fn window_field(obj: &Map<String, Value>) -> Result<i64, Failure> {
    let Some(w) = str_field(obj, "window")? else {
        return Ok(DEFAULT_WINDOW_NS);
    };
    let ns = dsl::time::parse_duration_ns(w).map_err(Failure::bad)?;
    if ns > MAX_WINDOW_NS {
        return Err(Failure::bad(format!("window {w} is longer than 24h")));
    }
    Ok(ns)
}

fn limit_field(obj: &Map<String, Value>) -> Result<usize, Failure> {
    match obj.get("limit") {
        None | Some(Value::Null) => Ok(DEFAULT_LIMIT),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => Ok(n as usize),
            _ => Err(Failure::bad(format!(
                "limit must be a number from 1 to {MAX_LIMIT}"
            ))),
        },
    }
}

impl Server {
    fn handle(&self, line: &[u8]) -> Result<Value, Failure> {
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| Failure::bad(format!("request is not JSON: {e}")))?;
        let Value::Object(obj) = v else {
            return Err(Failure::bad("request must be a JSON object"));
        };
        let cmd = match obj.get("cmd") {
            Some(Value::String(c)) => c.as_str(),
            _ => {
                return Err(Failure::bad(
                    "request needs \"cmd\": status, context or rules_reload",
                ))
            }
        };
        let allowed: &[&str] = match cmd {
            "status" | "rules_reload" => &["cmd"],
            "context" => &[
                "cmd",
                "alert_id",
                "entity_id",
                "id",
                "host",
                "start",
                "end",
                "window",
                "limit",
            ],
            other => {
                return Err(Failure::bad(format!(
                    "unknown cmd {other:?}: status, context or rules_reload"
                )))
            }
        };
        if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Failure::bad(format!("unknown key {k:?} for {cmd}")));
        }
        match cmd {
            "status" => self.status(),
            "rules_reload" => self.rules_reload(),
            _ => self.context(&obj),
        }
    }

    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Request) -> Result<T, Failure> {
        let (tx, rx) = bounded(1);
        self.pipeline
            .send_timeout(make(tx), PIPELINE_TIMEOUT)
            .map_err(|_| Failure("busy", "the pipeline is not answering".into()))?;
        rx.recv_timeout(PIPELINE_TIMEOUT)
            .map_err(|_| Failure("busy", "the pipeline did not answer in time".into()))
    }

    /// A lookup of nothing: the pipeline seals its open spool batch first.
    fn seal_spool(&self) -> Result<Lookup, Failure> {
        self.ask(|reply| Request::Lookup {
            alert_id: None,
            entity_ids: Vec::new(),
            reply,
        })
    }

    fn status(&self) -> Result<Value, Failure> {
        let snap = self.ask(Request::Status)?;
        serde_json::to_value(snap).map_err(|e| Failure("internal", e.to_string()))
    }

    fn rules_reload(&self) -> Result<Value, Failure> {
        // Compiling happens here, not on the pipeline thread.
        let loaded = crate::rule_files::load(self.cfg.rules_dir.as_deref(), self.cfg.shipped_rules)
            .map_err(|e| Failure("rejected", format!("{e:#}")))?;
        if !loaded.errors.is_empty() {
            let errors: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
            return Err(Failure(
                "rejected",
                format!(
                    "rule set rejected ({} errors); the running rules stay: {}",
                    errors.len(),
                    errors.join("; ")
                ),
            ));
        }
        if loaded.rules.is_empty() {
            return Err(Failure("rejected", "rule set rejected: no rules".into()));
        }
        let n = self.ask(|tx| Request::SwapRules(Arc::new(loaded.rules), tx))?;
        Ok(json!({"rules": n}))
    }

    /// A spool reader that has seen everything sealed so far.
    fn with_reader<T>(&self, f: impl FnOnce(Option<&SpoolReader>) -> T) -> Result<T, Failure> {
        let Some(path) = &self.cfg.spool else {
            return Ok(f(None));
        };
        let mut guard = self
            .reader
            .lock()
            .map_err(|_| Failure("internal", "spool reader lock poisoned".into()))?;
        match guard.as_mut() {
            Some(r) => r
                .refresh()
                .map_err(|e| Failure("internal", format!("spool: {e}")))?,
            None => {
                *guard = Some(
                    SpoolReader::open(path)
                        .map_err(|e| Failure("internal", format!("spool: {e}")))?,
                )
            }
        }
        Ok(f(guard.as_ref()))
    }

    fn context(&self, obj: &Map<String, Value>) -> Result<Value, Failure> {
        let alert_id = str_field(obj, "alert_id")?;
        let entity_id = str_field(obj, "entity_id")?;
        let any_id = str_field(obj, "id")?;
        let host = str_field(obj, "host")?;
        let given = [alert_id, entity_id, any_id, host]
            .iter()
            .filter(|x| x.is_some())
            .count();
        if given != 1 {
            return Err(Failure::bad(
                "context needs exactly one of alert_id, entity_id, id or host",
            ));
        }
        let limit = limit_field(obj)?;
        let spool_err = |e: spool::SpoolError| Failure("internal", format!("spool: {e}"));
        if let Some(host) = host {
            if obj.contains_key("window") {
                return Err(Failure::bad(
                    "with host, give start and end instead of window",
                ));
            }
            let (Some(start), Some(end)) = (str_field(obj, "start")?, str_field(obj, "end")?)
            else {
                return Err(Failure::bad("context by host needs start and end"));
            };
            let start = crate::history::timearg::parse_time_arg(start)
                .map_err(|e| Failure::bad(format!("start: {e}")))?;
            let end = crate::history::timearg::parse_time_arg(end)
                .map_err(|e| Failure::bad(format!("end: {e}")))?;
            if end <= start {
                return Err(Failure::bad("end must be after start"));
            }
            if end - start > MAX_WINDOW_NS {
                return Err(Failure::bad("start..end is longer than 24h"));
            }
            self.seal_spool()?;
            let ans = self
                .with_reader(|r| {
                    context::for_host(r, host, spool::TimeRange::new(start, end), limit)
                })?
                .map_err(spool_err)?;
            return serde_json::to_value(ans).map_err(|e| Failure("internal", e.to_string()));
        }
        for k in ["start", "end"] {
            if obj.contains_key(k) {
                return Err(Failure::bad(format!("{k} only applies with host")));
            }
        }
        let window = window_field(obj)?;
        // An alert id first (also for a bare `id`), then an entity id.
        if let Some(id) = alert_id.or(any_id) {
            if let Some(v) = self.alert_context(id, window, limit)? {
                return Ok(v);
            }
            if alert_id.is_some() {
                return Err(Failure(
                    "not_found",
                    format!("unknown alert id {id:?} (not among recent alerts nor in the outbox)"),
                ));
            }
        }
        let id = entity_id.or(any_id).expect("one id is set");
        let lookup = self.ask(|reply| Request::Lookup {
            alert_id: None,
            entity_ids: vec![id.to_string()],
            reply,
        })?;
        let table = lookup.entities.into_iter().next().unwrap_or_default();
        let ans = self
            .with_reader(|r| context::for_entity(r, table, window, limit, dsl::time::now_ns()))?
            .map_err(spool_err)?;
        match ans {
            Some(a) => serde_json::to_value(a).map_err(|e| Failure("internal", e.to_string())),
            None => Err(Failure(
                "not_found",
                format!(
                    "unknown id {id:?}: no recent alert, outbox alert, live process or spooled event has it"
                ),
            )),
        }
    }

    fn alert_context(&self, id: &str, window: i64, limit: usize) -> Result<Option<Value>, Failure> {
        let mut lookup = self.ask(|reply| Request::Lookup {
            alert_id: Some(id.to_string()),
            entity_ids: Vec::new(),
            reply,
        })?;
        if lookup.alert.is_none() {
            // Older than the pipeline's memory: the outbox may still hold it.
            let found = self
                .cfg
                .outbox
                .as_ref()
                .and_then(|o| o.find(id))
                .and_then(|json| serde_json::from_str::<dsl::alert::Alert>(&json).ok())
                .map(|a| AlertSummary::of(&a));
            let Some(summary) = found else {
                return Ok(None);
            };
            let ids = summary.entity_ids.clone();
            lookup = self.ask(|reply| Request::Lookup {
                alert_id: None,
                entity_ids: ids,
                reply,
            })?;
            lookup.alert = Some(summary);
        }
        let alert = lookup.alert.expect("set above");
        let ans = self
            .with_reader(|r| context::for_alert(r, alert, lookup.entities, window, limit))?
            .map_err(|e| Failure("internal", format!("spool: {e}")))?;
        serde_json::to_value(ans)
            .map(Some)
            .map_err(|e| Failure("internal", e.to_string()))
    }
}

/// Client side: one request, one answer. `Err` only for transport problems;
/// the agent's own errors come back as `{"ok":false,...}`.
pub fn request(socket: &Path, req: &Value) -> std::io::Result<Value> {
    request_within(socket, req, Duration::from_secs(120))
}

/// [`request`], waiting at most `timeout` for the answer.
pub fn request_within(socket: &Path, req: &Value, timeout: Duration) -> std::io::Result<Value> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    writeln!(s, "{req}")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad answer from the agent: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::requests::{self, RequestReceiver};

    fn server() -> (Server, RequestReceiver) {
        let (tx, rx) = requests::channel(4).unwrap();
        (
            Server {
                cfg: ControlConfig {
                    socket: PathBuf::from("/nonexistent"),
                    spool: None,
                    rules_dir: None,
                    shipped_rules: true,
                    outbox: None,
                },
                pipeline: tx,
                reader: Mutex::new(None),
                connections: AtomicUsize::new(0),
            },
            rx,
        )
    }

    fn err_of(r: Result<Value, Failure>) -> (String, String) {
        match r {
            Ok(v) => panic!("expected an error, got {v}"),
            Err(Failure(k, m)) => (k.to_string(), m),
        }
    }

    #[test]
    fn bad_requests_get_clear_errors() {
        let (s, _rx) = server();
        for (req, needle) in [
            (&b"{not json"[..], "not JSON"),
            (b"[1]", "JSON object"),
            (b"{}", "needs \"cmd\""),
            (b"{\"cmd\":\"reboot\"}", "unknown cmd \"reboot\""),
            (b"{\"cmd\":\"status\",\"x\":1}", "unknown key \"x\""),
            (b"{\"cmd\":\"context\"}", "exactly one of"),
            (
                b"{\"cmd\":\"context\",\"alert_id\":\"a\",\"entity_id\":\"b\"}",
                "exactly one of",
            ),
            (
                b"{\"cmd\":\"context\",\"alert_id\":\"a\",\"window\":\"25h\"}",
                "longer than 24h",
            ),
            (
                b"{\"cmd\":\"context\",\"alert_id\":\"a\",\"window\":\"5y\"}",
                "unknown duration unit",
            ),
            (
                b"{\"cmd\":\"context\",\"alert_id\":\"a\",\"limit\":0}",
                "limit must be",
            ),
            (b"{\"cmd\":\"context\",\"alert_id\":7}", "must be a string"),
            (
                b"{\"cmd\":\"context\",\"host\":\"h\",\"start\":\"2h\"}",
                "needs start and end",
            ),
            (
                b"{\"cmd\":\"context\",\"host\":\"h\",\"start\":\"48h\",\"end\":\"1h\"}",
                "longer than 24h",
            ),
            (
                b"{\"cmd\":\"context\",\"host\":\"h\",\"start\":\"1h\",\"end\":\"2h\"}",
                "after start",
            ),
            (
                b"{\"cmd\":\"context\",\"entity_id\":\"e\",\"start\":\"1h\"}",
                "only applies with host",
            ),
        ] {
            let (kind, msg) = err_of(s.handle(req));
            assert_eq!(kind, "bad_request", "{msg}");
            assert!(
                msg.contains(needle),
                "{:?}: {msg}",
                String::from_utf8_lossy(req)
            );
        }
    }

    #[test]
    fn a_request_ends_the_pipelines_nap() {
        let (tx, rx) = requests::channel(1).unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let (reply, _) = bounded(1);
            tx.send_timeout(Request::Status(reply), Duration::from_secs(1))
                .unwrap();
            tx
        });
        let started = std::time::Instant::now();
        rx.nap(Duration::from_secs(30));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the request did not end the nap"
        );
        assert!(matches!(rx.try_recv(), Ok(Request::Status(_))));
        drop(sender.join().unwrap());
    }

    #[test]
    fn a_silent_pipeline_is_reported_busy_not_hung() {
        let (s, rx) = server();
        drop(rx);
        let (kind, _) = err_of(s.handle(b"{\"cmd\":\"status\"}"));
        assert_eq!(kind, "busy");
    }
}
