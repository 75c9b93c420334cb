//! Real receivers for the sink tests: a small HTTP/1.1 server that speaks
//! (and checks) Elasticsearch `_bulk`, Splunk HEC and webhook bodies line by
//! line, a private Debian rsyslog, and a handle on a running agent.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the HTTP receiver got.
#[derive(Debug, Default)]
pub struct Received {
    /// `_bulk`: documents stored, in arrival order, unique by `_id`.
    pub es_docs: Vec<Value>,
    /// `_bulk`: every `create` action seen, including re-deliveries (409).
    pub es_attempts: Vec<String>,
    /// HEC event objects, in order.
    pub hec_events: Vec<Value>,
    /// Webhook alerts, in order.
    pub webhook: Vec<Value>,
    /// Requests whose body broke the format (the test fails on any).
    pub errors: Vec<String>,
    pub requests: u64,
    /// Authorization headers seen.
    pub auth: Vec<String>,
}

#[derive(Default)]
struct Shared {
    got: Mutex<Received>,
    es_ids: Mutex<HashSet<String>>,
    /// Per-request delay, to make delivery slow enough to interrupt.
    delay_ms: Mutex<u64>,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

/// An HTTP server on 127.0.0.1; `stop` closes the port and every
/// connection, `start` on the same port brings it back with what it got.
pub struct HttpReceiver {
    pub port: u16,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl HttpReceiver {
    pub fn start(port: u16) -> HttpReceiver {
        let mut r = HttpReceiver {
            port,
            shared: Arc::default(),
            thread: None,
            tls: None,
        };
        r.resume();
        r
    }

    /// HTTPS with `server.pem`/`server.key` of `scripts/test-certs.sh DIR`.
    pub fn start_tls(port: u16, cert_dir: &Path) -> HttpReceiver {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert_dir.join("server.pem"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_file(cert_dir.join("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let mut r = HttpReceiver {
            port,
            shared: Arc::default(),
            thread: None,
            tls: Some(Arc::new(cfg)),
        };
        r.resume();
        r
    }

    /// Starts listening again (after `stop`), keeping what was received.
    pub fn resume(&mut self) {
        self.shared.stop.store(false, Ordering::SeqCst);
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("bind the receiver port");
        self.port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::clone(&self.shared);
        let tls = self.tls.clone();
        self.thread = Some(std::thread::spawn(move || accept(listener, shared, tls)));
    }

    /// Closes the port and drops every connection: the receiver is down.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub fn set_delay(&self, ms: u64) {
        *self.shared.delay_ms.lock().unwrap() = ms;
    }

    pub fn with<T>(&self, f: impl FnOnce(&Received) -> T) -> T {
        f(&self.shared.got.lock().unwrap())
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept(listener: TcpListener, shared: Arc<Shared>, tls: Option<Arc<rustls::ServerConfig>>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                shared.conns.lock().unwrap().push(s.try_clone().unwrap());
                let sh = Arc::clone(&shared);
                match &tls {
                    None => std::thread::spawn(move || serve(s, sh)),
                    Some(cfg) => {
                        let conn = rustls::ServerConnection::new(Arc::clone(cfg)).unwrap();
                        std::thread::spawn(move || serve(rustls::StreamOwned::new(conn, s), sh))
                    }
                };
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Keep-alive HTTP/1.1 with Content-Length bodies (what ureq sends).
fn serve<S: Read + Write>(s: S, shared: Arc<Shared>) {
    let mut r = BufReader::new(s);
    loop {
        let mut request_line = String::new();
        if r.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let len: usize = header("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let delay = *shared.delay_ms.lock().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        if shared.stop.load(Ordering::SeqCst) {
            // Went down mid-request: the client gets no answer.
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let body = String::from_utf8_lossy(&body).into_owned();
        let (status, reply) = handle(
            &shared,
            &path,
            header("content-type"),
            header("authorization"),
            &body,
        );
        let text = reply.to_string();
        let resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        let out = r.get_mut();
        if out
            .write_all(resp.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}

fn handle(
    shared: &Shared,
    path: &str,
    ctype: Option<String>,
    auth: Option<String>,
    body: &str,
) -> (u16, Value) {
    let mut got = shared.got.lock().unwrap();
    got.requests += 1;
    if let Some(a) = auth {
        got.auth.push(a);
    }
    let fail = |got: &mut Received, why: String| {
        got.errors.push(format!("{path}: {why}"));
        (400, json!({"error": why}))
    };
    match path {
        "/_bulk" => {
            if ctype.as_deref() != Some("application/x-ndjson") {
                return fail(&mut got, format!("content-type {ctype:?}"));
            }
            if !body.ends_with('\n') {
                return fail(&mut got, "_bulk body must end with a newline".into());
            }
            let lines: Vec<&str> = body.lines().collect();
            if !lines.len().is_multiple_of(2) {
                return fail(&mut got, format!("odd number of lines ({})", lines.len()));
            }
            let mut items = Vec::new();
            let mut errors = false;
            for pair in lines.chunks(2) {
                let action: Value = match serde_json::from_str(pair[0]) {
                    Ok(v) => v,
                    Err(e) => return fail(&mut got, format!("action line {:?}: {e}", pair[0])),
                };
                let doc: Value = match serde_json::from_str(pair[1]) {
                    Ok(v) => v,
                    Err(e) => return fail(&mut got, format!("document line: {e}")),
                };
                let Some(create) = action.get("create").and_then(|c| c.as_object()) else {
                    return fail(&mut got, format!("action is not create: {action}"));
                };
                let id = create
                    .get("_id")
                    .and_then(|i| i.as_str())
                    .unwrap_or_default()
                    .to_string();
                if create.get("_index").and_then(|i| i.as_str()).is_none() {
                    return fail(&mut got, "create without _index".into());
                }
                if doc["id"].as_str() != Some(id.as_str()) || id.is_empty() {
                    return fail(
                        &mut got,
                        format!("_id {id:?} is not the alert id {}", doc["id"]),
                    );
                }
                got.es_attempts.push(id.clone());
                // Like Elasticsearch: `create` of an existing _id is a 409.
                let status = if shared.es_ids.lock().unwrap().insert(id.clone()) {
                    got.es_docs.push(doc);
                    201
                } else {
                    errors = true;
                    409
                };
                items.push(
                    json!({"create": {"_index": create["_index"], "_id": id, "status": status}}),
                );
            }
            (200, json!({"took": 1, "errors": errors, "items": items}))
        }
        "/services/collector/event" => {
            let mut events = Vec::new();
            for line in body.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = match serde_json::from_str(line) {
                    Ok(v) => v,
                    Err(e) => return fail(&mut got, format!("HEC line: {e}")),
                };
                let ok = v["time"].is_number()
                    && v["host"].is_string()
                    && v["source"] == "vigil"
                    && v["sourcetype"].is_string()
                    && v["event"]["id"].is_string()
                    && v["event"]["rule"]["id"].is_string();
                if !ok {
                    return fail(
                        &mut got,
                        format!("HEC event lacks time/host/source/sourcetype/event: {line}"),
                    );
                }
                events.push(v);
            }
            if events.is_empty() {
                return fail(&mut got, "no HEC event".into());
            }
            got.hec_events.extend(events);
            (200, json!({"text": "Success", "code": 0}))
        }
        "/hook" => match serde_json::from_str::<Value>(body) {
            Ok(Value::Array(a)) if !a.is_empty() => {
                got.webhook.extend(a);
                (200, json!({"ok": true}))
            }
            _ => fail(
                &mut got,
                "webhook body is not a non-empty JSON array".into(),
            ),
        },
        _ => (404, json!({"error": "no such path"})),
    }
}

/// A throwaway CA and a certificate for 127.0.0.1/localhost in `dir`
/// (`ca.pem`, `server.pem`, `server.key`; `scripts/test-certs.sh`).
pub fn test_certs(dir: &Path) -> PathBuf {
    let o = Command::new("bash")
        .arg(crate::repo().join("scripts/test-certs.sh"))
        .arg(dir)
        .output()
        .expect("running scripts/test-certs.sh");
    assert!(
        o.status.success(),
        "scripts/test-certs.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    dir.to_path_buf()
}

/// A private rsyslogd started by `scripts/rsyslog-test.sh`.
pub struct Rsyslog {
    pub dir: PathBuf,
    pub tcp_port: u16,
    pub tls_port: u16,
    child: Child,
}

impl Rsyslog {
    /// Starts rsyslog; panics with the fix if it is not installed.
    pub fn start(dir: &Path) -> Rsyslog {
        assert!(
            Path::new("/usr/sbin/rsyslogd").exists(),
            "rsyslog is not installed: run scripts/setup.sh (it installs rsyslog and rsyslog-gnutls); \
             the syslog sink test needs a real receiver and does not skip"
        );
        std::fs::create_dir_all(dir).unwrap();
        let (tcp_port, tls_port) = (free_port(), free_port());
        let mut child = Command::new("bash")
            .arg(crate::repo().join("scripts/rsyslog-test.sh"))
            .arg(dir)
            .arg(tcp_port.to_string())
            .arg(tls_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running scripts/rsyslog-test.sh");
        let up = wait_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", tcp_port)).is_ok()
                && TcpStream::connect(("127.0.0.1", tls_port)).is_ok()
        });
        if !up {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "rsyslog did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Rsyslog {
            dir: dir.to_path_buf(),
            tcp_port,
            tls_port,
            child,
        }
    }

    /// Lines written so far for the plain TCP (`tcp.log`) or TLS input.
    pub fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A `vigil run` in the background.
pub struct Agent {
    pub child: Child,
    pub state: PathBuf,
}

impl Agent {
    /// `vigil run --keep-running --replay EVENTS`: the agent replays the
    /// file, then stays up so tests can query it.
    pub fn replaying(events: &Path, spool_mb: u32, config: &Path, state: &Path) -> Agent {
        let spool_mb = spool_mb.to_string();
        let events = events.to_str().expect("test paths are UTF-8");
        Agent::spawn(
            &[
                "--keep-running",
                "--spool-size-mb",
                &spool_mb,
                "--replay",
                events,
            ],
            config,
            state,
        )
    }

    pub fn spawn(args: &[&str], config: &Path, state: &Path) -> Agent {
        std::fs::create_dir_all(state).unwrap();
        // A file, not a pipe: a long retry log must never block the agent.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.with_extension("stderr.log"))
            .unwrap();
        let child = crate::vigil()
            .arg("run")
            .args(args)
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting vigil run");
        let a = Agent {
            child,
            state: state.to_path_buf(),
        };
        let sock = state.join("vigil.sock");
        assert!(
            wait_until(Duration::from_secs(30), || {
                std::os::unix::net::UnixStream::connect(&sock).is_ok()
            }),
            "the agent's control socket did not come up"
        );
        a
    }

    /// `vigil status --json` (through the socket while the agent runs).
    pub fn status(&self) -> Value {
        let o = crate::vigil()
            .args(["status", "--json", "--state-dir"])
            .arg(&self.state)
            .output()
            .unwrap();
        serde_json::from_str(&crate::stdout(&o)).unwrap_or(Value::Null)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, then the exit status and stderr.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal(libc::SIGTERM);
        let status = self.child.wait().unwrap();
        let err =
            std::fs::read_to_string(self.state.with_extension("stderr.log")).unwrap_or_default();
        (status, err)
    }

    pub fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// The events of every positive rule fixture, in one NDJSON file.
pub fn positive_fixtures(dir: &Path) -> PathBuf {
    let mut all = String::new();
    let root = crate::repo().join("dsl/rules/fixtures");
    let mut rules: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    rules.sort();
    for rule in rules {
        let mut cases: Vec<_> = std::fs::read_dir(&rule)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        cases.sort();
        for case in cases.iter().filter(|c| {
            c.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("positive")
        }) {
            all.push_str(&std::fs::read_to_string(case.join("events.ndjson")).unwrap());
        }
    }
    let out = dir.join("positives.ndjson");
    std::fs::write(&out, all).unwrap();
    out
}

/// Alerts of an NDJSON file, parsed.
pub fn alerts_in(path: &Path) -> Vec<Value> {
    crate::ndjson(&std::fs::read_to_string(path).unwrap_or_default())
}

/// A real nats-server with JetStream (Debian package `nats-server`) on a
/// free loopback port, with three users: `agent` (publishes alerts,
/// answers requests), `analyst` (sends fleet requests) and `intruder`
/// (may not send fleet requests). Its store survives `restart`.
pub struct NatsServer {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

pub const NATS_AGENT: (&str, &str) = ("agent", "agent-secret");
pub const NATS_ANALYST: (&str, &str) = ("analyst", "analyst-secret");
pub const NATS_INTRUDER: (&str, &str) = ("intruder", "intruder-secret");

impl NatsServer {
    /// Starts the server; panics with the fix if it is not installed.
    pub fn start(dir: &Path) -> NatsServer {
        NatsServer::start_with(dir, None, "")
    }

    /// Like [`NatsServer::start`], requiring TLS with `server.pem` and
    /// `server.key` from `cert_dir` (see `scripts/test-certs.sh`).
    pub fn start_tls(dir: &Path, cert_dir: &Path) -> NatsServer {
        NatsServer::start_with(dir, Some(cert_dir), "")
    }

    /// With more `users` entries (e.g. an nkey user) and optional TLS.
    pub fn start_with(dir: &Path, tls: Option<&Path>, extra_users: &str) -> NatsServer {
        assert!(
            Path::new("/usr/bin/nats-server").exists() || Path::new("/usr/sbin/nats-server").exists(),
            "nats-server is not installed: run scripts/setup.sh (it installs Debian's nats-server); \
             the fleet test needs a real server and does not skip"
        );
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let conf = dir.join("nats-server.conf");
        std::fs::write(
            &conf,
            format!(
                r#"listen: "127.0.0.1:{port}"
server_name: vigil_test
{tls}
jetstream {{ store_dir: "{store}" }}
authorization {{
  users = [
    {{ user: "{au}", password: "{ap}", permissions: {{
        publish: ["vigil.alerts.>", "vigil.hosts.*", "$JS.API.>", "_INBOX.>"],
        subscribe: ["vigil.req.>", "vigil.cancel.*", "_INBOX.>"] }} }}
    {{ user: "{nu}", password: "{np}", permissions: {{
        publish: ["vigil.req.>", "vigil.cancel.*", "$JS.API.>"],
        subscribe: ["_INBOX.>"] }} }}
    {{ user: "{iu}", password: "{ip}", permissions: {{
        publish: ["$JS.API.>"],
        subscribe: ["_INBOX.>"] }} }}
    {extra_users}
  ]
}}
"#,
                store = dir.join("js").display(),
                tls = tls.map_or(String::new(), |c| format!(
                    "tls {{ cert_file: \"{}\", key_file: \"{}\" }}",
                    c.join("server.pem").display(),
                    c.join("server.key").display()
                )),
                au = NATS_AGENT.0,
                ap = NATS_AGENT.1,
                nu = NATS_ANALYST.0,
                np = NATS_ANALYST.1,
                iu = NATS_INTRUDER.0,
                ip = NATS_INTRUDER.1,
            ),
        )
        .unwrap();
        let mut s = NatsServer {
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        s.up();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("nats-server.log"))
            .unwrap();
        let bin = if Path::new("/usr/bin/nats-server").exists() {
            "/usr/bin/nats-server"
        } else {
            "/usr/sbin/nats-server"
        };
        let child = Command::new(bin)
            .arg("-c")
            .arg(self.dir.join("nats-server.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting nats-server");
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(20), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "nats-server did not start; see {}",
            self.dir.join("nats-server.log").display()
        );
    }

    /// SIGKILL: the server dies as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.up();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
