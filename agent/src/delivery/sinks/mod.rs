//! Sinks deliver alerts from the outbox to the people who act on them: an
//! NDJSON file, syslog (RFC 5424 over TCP or TLS) and HTTP (Elasticsearch
//! `_bulk`, Splunk HEC, a JSON webhook). Each sink runs on its own thread
//! with its own outbox cursor: it reads a batch, delivers it, and only then
//! acknowledges it, retrying with exponential backoff while the receiver is
//! down. See `outbox.rs` for the at-least-once boundary.
//!
//! Owns: sink configuration, validation and delivery threads. Must not
//! touch: alerts before the outbox holds them.

mod file;
mod http;
mod nats;
mod syslog;
mod tls;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::delivery::outbox::{Outbox, OutboxReader, OutboxRecord};

pub use file::FileSink;
pub use http::HttpSink;
pub use nats::{subject_for as nats_subject_for, NatsSink};
pub use syslog::{format_rfc5424, SyslogSink};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    File,
    Syslog,
    Http,
    /// NATS JetStream (connection settings from `[nats]`).
    Nats,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::File => "file",
            SinkKind::Syslog => "syslog",
            SinkKind::Http => "http",
            SinkKind::Nats => "nats",
        }
    }
}

/// Body format of an `http` sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFormat {
    /// Elasticsearch `_bulk`: `create` actions with `_id` = alert id.
    EsBulk,
    /// Splunk HTTP Event Collector: one event object per alert.
    SplunkHec,
    /// A JSON array of alerts.
    Webhook,
}

/// One `[[sinks]]` table. Keys that do not apply to the kind are errors
/// (see [`SinkConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub kind: SinkKind,
    /// Unique; names the cursor file, so `[A-Za-z0-9_-]`.
    pub name: String,
    // file
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Rotate the file when it would grow past this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mb: Option<u64>,
    /// Rotated files kept (`path.1` newest .. `path.N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    // syslog
    /// `host:port` of the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
    /// Larger alerts are shrunk (window events, then ancestry dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_kb: Option<u64>,
    // http
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<HttpFormat>,
    /// Value of the `Authorization` header (`ApiKey ...`, `Splunk <token>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<String>,
    /// Name of an environment variable holding that value instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header_env: Option<String>,
    /// Elasticsearch index / Splunk index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Splunk sourcetype.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourcetype: Option<String>,
    // nats
    /// JetStream stream name (default `VIGIL_ALERTS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Alerts go to `<subject_prefix>.<host>.<severity>` (default `vigil.alerts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_prefix: Option<String>,
    /// Create the stream (subjects `<subject_prefix>.>`) if it is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_stream: Option<bool>,
    /// De-duplication window of a stream this sink creates (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_window_s: Option<u64>,
    // TLS (syslog with tls = true, https URLs)
    /// PEM file of the CA certificates to trust instead of the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Syslog over TLS: name to verify the server certificate against
    /// (default: the host of `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    // delivery (all kinds)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_max: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_max_kb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_min_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_max_ms: Option<u64>,
}

const FACILITIES: &[&str] = &[
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

pub(crate) fn facility_code(name: &str) -> Option<u8> {
    FACILITIES
        .iter()
        .position(|f| *f == name)
        .and_then(|i| u8::try_from(i).ok())
}

impl SinkConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.unwrap_or(10_000))
    }

    pub fn batch_max(&self) -> usize {
        self.batch_max.unwrap_or(100)
    }

    pub fn batch_max_bytes(&self) -> usize {
        (self.batch_max_kb.unwrap_or(1024) as usize).saturating_mul(1024)
    }

    pub fn retry_min(&self) -> Duration {
        Duration::from_millis(self.retry_min_ms.unwrap_or(500))
    }

    pub fn retry_max(&self) -> Duration {
        Duration::from_millis(self.retry_max_ms.unwrap_or(60_000))
    }

    /// The names of the keys that are set, for "does not apply" checks.
    fn set_keys(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut k = |set: bool, name: &'static str| {
            if set {
                v.push(name)
            }
        };
        k(self.path.is_some(), "path");
        k(self.max_mb.is_some(), "max_mb");
        k(self.keep.is_some(), "keep");
        k(self.address.is_some(), "address");
        k(self.tls.is_some(), "tls");
        k(self.facility.is_some(), "facility");
        k(self.app_name.is_some(), "app_name");
        k(self.max_message_kb.is_some(), "max_message_kb");
        k(self.url.is_some(), "url");
        k(self.format.is_some(), "format");
        k(self.auth_header.is_some(), "auth_header");
        k(self.auth_header_env.is_some(), "auth_header_env");
        k(self.index.is_some(), "index");
        k(self.sourcetype.is_some(), "sourcetype");
        k(self.ca_file.is_some(), "ca_file");
        k(self.server_name.is_some(), "server_name");
        k(self.stream.is_some(), "stream");
        k(self.subject_prefix.is_some(), "subject_prefix");
        k(self.create_stream.is_some(), "create_stream");
        k(self.duplicate_window_s.is_some(), "duplicate_window_s");
        v
    }

    /// Every problem with this sink, each prefixed with where it is.
    pub fn validate(&self, index: usize) -> Vec<String> {
        let at = format!("sinks[{index}] ({} {:?})", self.kind.as_str(), self.name);
        let mut errs = Vec::new();
        let mut err = |m: String| errs.push(format!("{at}: {m}"));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            err("name must be 1-64 characters of A-Z a-z 0-9 - _".into());
        }
        let allowed: &[&str] = match self.kind {
            SinkKind::File => &["path", "max_mb", "keep"],
            SinkKind::Syslog => &[
                "address",
                "tls",
                "facility",
                "app_name",
                "max_message_kb",
                "ca_file",
                "server_name",
            ],
            SinkKind::Http => &[
                "url",
                "format",
                "auth_header",
                "auth_header_env",
                "index",
                "sourcetype",
                "ca_file",
            ],
            SinkKind::Nats => &[
                "stream",
                "subject_prefix",
                "create_stream",
                "duplicate_window_s",
            ],
        };
        for key in self.set_keys() {
            if !allowed.contains(&key) {
                err(format!(
                    "key `{key}` does not apply to kind = \"{}\"",
                    self.kind.as_str()
                ));
            }
        }
        match self.kind {
            SinkKind::File => {
                if self.path.as_ref().is_none_or(|p| p.as_os_str().is_empty()) {
                    err("needs path".into());
                }
                if self.max_mb.is_some_and(|m| !(1..=1 << 20).contains(&m)) {
                    err("max_mb must be between 1 and 1048576".into());
                }
                if self.keep.is_some_and(|k| !(1..=1000).contains(&k)) {
                    err("keep must be between 1 and 1000".into());
                }
            }
            SinkKind::Syslog => {
                match self.address.as_deref() {
                    None => err("needs address (host:port)".into()),
                    Some(a) => {
                        if let Err(m) = split_host_port(a) {
                            err(format!("address {a:?}: {m}"));
                        }
                    }
                }
                if let Some(f) = &self.facility {
                    if facility_code(f).is_none() {
                        err(format!(
                            "unknown facility {f:?} (one of {})",
                            FACILITIES.join(", ")
                        ));
                    }
                }
                if let Some(a) = &self.app_name {
                    if a.is_empty() || a.len() > 48 || !a.bytes().all(|b| (33..=126).contains(&b)) {
                        err(
                            "app_name must be 1-48 printable ASCII characters without spaces"
                                .into(),
                        );
                    }
                }
                if self
                    .max_message_kb
                    .is_some_and(|m| !(1..=65_536).contains(&m))
                {
                    err("max_message_kb must be between 1 and 65536".into());
                }
                if self.tls != Some(true) {
                    for (set, key) in [
                        (self.ca_file.is_some(), "ca_file"),
                        (self.server_name.is_some(), "server_name"),
                    ] {
                        if set {
                            err(format!("{key} only applies with tls = true"));
                        }
                    }
                }
            }
            SinkKind::Http => {
                match self.url.as_deref() {
                    None => err("needs url".into()),
                    Some(u) => match http::parse_url(u) {
                        Err(m) => err(format!("url {u:?}: {m}")),
                        Ok(false) if self.ca_file.is_some() => {
                            err("ca_file only applies to https:// URLs".into())
                        }
                        Ok(_) => {}
                    },
                }
                match self.format {
                    None => err("needs format (es_bulk, splunk_hec or webhook)".into()),
                    Some(HttpFormat::EsBulk) | Some(HttpFormat::SplunkHec) => {}
                    Some(HttpFormat::Webhook) if self.index.is_some() => {
                        err("index does not apply to format = \"webhook\"".into())
                    }
                    Some(HttpFormat::Webhook) => {}
                }
                if self.sourcetype.is_some() && self.format != Some(HttpFormat::SplunkHec) {
                    err("sourcetype only applies to format = \"splunk_hec\"".into());
                }
                if self.auth_header.is_some() && self.auth_header_env.is_some() {
                    err("set auth_header or auth_header_env, not both".into());
                }
                if let Some(var) = &self.auth_header_env {
                    if std::env::var(var).map_or(true, |v| v.is_empty()) {
                        err(format!(
                            "auth_header_env: environment variable {var} is not set"
                        ));
                    }
                }
                if let Some(h) = self.auth_header.as_deref() {
                    if h.bytes().any(|b| b == b'\r' || b == b'\n') {
                        err("auth_header must be one line".into());
                    }
                }
            }
            SinkKind::Nats => {
                if let Some(st) = &self.stream {
                    if st.is_empty()
                        || st.len() > 64
                        || !st
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    {
                        err("stream must be 1-64 characters of A-Z a-z 0-9 - _".into());
                    }
                }
                if let Some(p) = &self.subject_prefix {
                    let bad_token = p.split('.').any(|t| {
                        t.is_empty()
                            || t.contains(['*', '>'])
                            || t.chars().any(|c| c.is_whitespace() || c.is_control())
                    });
                    if bad_token {
                        err(format!(
                            "subject_prefix {p:?} must be dot-separated tokens without spaces or wildcards"
                        ));
                    }
                }
                if self
                    .duplicate_window_s
                    .is_some_and(|d| !(1..=86_400).contains(&d))
                {
                    err("duplicate_window_s must be between 1 and 86400".into());
                }
            }
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                err(format!("ca_file {} is not a file", ca.display()));
            }
        }
        if self
            .timeout_ms
            .is_some_and(|t| !(100..=300_000).contains(&t))
        {
            err("timeout_ms must be between 100 and 300000".into());
        }
        if self.batch_max.is_some_and(|b| !(1..=10_000).contains(&b)) {
            err("batch_max must be between 1 and 10000".into());
        }
        if self
            .batch_max_kb
            .is_some_and(|b| !(1..=102_400).contains(&b))
        {
            err("batch_max_kb must be between 1 and 102400".into());
        }
        if self
            .retry_min_ms
            .is_some_and(|r| !(10..=3_600_000).contains(&r))
        {
            err("retry_min_ms must be between 10 and 3600000".into());
        }
        if self.retry_max_ms.is_some_and(|r| r > 3_600_000) {
            err("retry_max_ms must be at most 3600000".into());
        }
        if self.retry_max() < self.retry_min() {
            err("retry_max_ms must not be below retry_min_ms".into());
        }
        errs
    }
}

/// Duplicate names across sinks (each sink's own checks are in `validate`).
pub fn validate_all(sinks: &[SinkConfig]) -> Vec<String> {
    let mut errs: Vec<String> = sinks
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.validate(i))
        .collect();
    for (i, s) in sinks.iter().enumerate() {
        if sinks[..i].iter().any(|o| o.name == s.name) {
            errs.push(format!("sinks[{i}]: duplicate sink name {:?}", s.name));
        }
    }
    errs
}

/// `host:port` (or `[v6]:port`).
pub(crate) fn split_host_port(addr: &str) -> Result<(String, u16), String> {
    let (host, port) = addr.rsplit_once(':').ok_or("needs a port (host:port)")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("needs a host".into());
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("port {port:?} is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err("port 0 is not a port".into());
    }
    Ok((host.to_string(), port))
}

/// Accepted records, with the ones the receiver refused for good.
#[derive(Debug, Default)]
pub struct Delivered {
    /// `(seq, reason)` of records the receiver will never accept.
    pub rejected: Vec<(u64, String)>,
}

#[derive(Debug)]
pub enum DeliveryError {
    /// The receiver is down, slow or refusing for now: retry later.
    Retry(String),
    /// The receiver says this request can never succeed (bad data, too
    /// large): split the batch, and drop a single record that still fails.
    Permanent(String),
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Retry(m) | DeliveryError::Permanent(m) => f.write_str(m),
        }
    }
}

pub trait Sink: Send {
    /// Returns once the receiver has accepted the batch.
    fn deliver(&mut self, batch: &[OutboxRecord]) -> Result<Delivered, DeliveryError>;
}

/// A sink that could not be built: which one, and what is wrong in words
/// an admin can act on (a missing key, an unreadable CA file, ...).
#[derive(Debug, thiserror::Error)]
#[error("sink {name:?}: {problem}")]
pub struct SinkBuildError {
    pub name: String,
    pub problem: String,
}

/// Builds the sink a config describes (reads CA files, resolves secrets);
/// `nats` sinks connect with the `[nats]` settings.
pub fn build(
    cfg: &SinkConfig,
    nats: &crate::nats::NatsSection,
) -> Result<Box<dyn Sink>, SinkBuildError> {
    let at = |problem: String| SinkBuildError {
        name: cfg.name.clone(),
        problem,
    };
    Ok(match cfg.kind {
        SinkKind::File => Box::new(FileSink::new(cfg).map_err(at)?),
        SinkKind::Syslog => Box::new(SyslogSink::new(cfg).map_err(at)?),
        SinkKind::Http => Box::new(HttpSink::new(cfg).map_err(at)?),
        SinkKind::Nats => Box::new(NatsSink::new(cfg, nats).map_err(at)?),
    })
}

/// Per-sink counters (status).
#[derive(Debug, Default)]
pub struct SinkStats {
    pub delivered: AtomicU64,
    pub batches: AtomicU64,
    pub failures: AtomicU64,
    pub rejected: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SinkStats {
    fn set_error(&self, e: Option<String>) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = e;
        }
    }
}

/// What `status` shows per sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStatus {
    pub name: String,
    pub kind: String,
    pub delivered: u64,
    pub batches: u64,
    pub failures: u64,
    pub rejected: u64,
    /// Alerts in the outbox this sink has not had acknowledged.
    pub backlog: u64,
    /// Alerts this sink lost to a full outbox (`drop_oldest`).
    pub dropped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Read-only handle on the running sinks for `status`.
#[derive(Clone)]
pub struct SinkMonitor {
    outbox: Outbox,
    sinks: Arc<Vec<(String, SinkKind, Arc<SinkStats>)>>,
}

impl SinkMonitor {
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn status(&self) -> Vec<SinkStatus> {
        let ob = self.outbox.status();
        self.sinks
            .iter()
            .map(|(name, kind, st)| {
                let b = ob.sinks.iter().find(|b| &b.name == name);
                SinkStatus {
                    name: name.clone(),
                    kind: kind.as_str().into(),
                    delivered: st.delivered.load(Ordering::Relaxed),
                    batches: st.batches.load(Ordering::Relaxed),
                    failures: st.failures.load(Ordering::Relaxed),
                    rejected: st.rejected.load(Ordering::Relaxed),
                    backlog: b.map_or(0, |b| b.backlog),
                    dropped: b.map_or(0, |b| b.dropped),
                    last_error: st.last_error.lock().ok().and_then(|g| g.clone()),
                }
            })
            .collect()
    }
}

/// How the delivery threads should stop.
#[derive(Default)]
struct StopSignal {
    /// Set: deliver what is in the outbox until `deadline`, then stop.
    draining: AtomicBool,
    deadline: Mutex<Option<Instant>>,
}

impl StopSignal {
    fn past_deadline(&self) -> bool {
        self.draining.load(Ordering::Acquire)
            && self
                .deadline
                .lock()
                .map(|d| d.is_none_or(|d| Instant::now() >= d))
                .unwrap_or(true)
    }

    /// Sleeps up to `d`; false if the sink should stop instead.
    fn pause(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.past_deadline() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }
}

/// The delivery threads of all sinks.
pub struct SinkSet {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<StopSignal>,
    monitor: SinkMonitor,
}

impl SinkSet {
    /// Starts one delivery thread per sink.
    pub fn start(
        outbox: &Outbox,
        sinks: Vec<(SinkConfig, Box<dyn Sink>)>,
    ) -> std::io::Result<SinkSet> {
        let stop = Arc::new(StopSignal::default());
        let mut threads = Vec::new();
        let mut stats = Vec::new();
        for (cfg, sink) in sinks {
            let st = Arc::new(SinkStats::default());
            stats.push((cfg.name.clone(), cfg.kind, Arc::clone(&st)));
            let reader = outbox.reader(&cfg.name);
            let stop = Arc::clone(&stop);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("sink-{}", cfg.name))
                    .spawn(move || deliver_loop(reader, sink, &cfg, &st, &stop))?,
            );
        }
        Ok(SinkSet {
            threads,
            stop,
            monitor: SinkMonitor {
                outbox: outbox.clone(),
                sinks: Arc::new(stats),
            },
        })
    }

    pub fn monitor(&self) -> SinkMonitor {
        self.monitor.clone()
    }

    /// Lets the sinks deliver what the outbox holds for up to `drain`, then
    /// stops them; what is left is delivered after the next start.
    pub fn shutdown(self, drain: Duration) {
        if let Ok(mut d) = self.stop.deadline.lock() {
            *d = Some(Instant::now() + drain);
        }
        self.stop.draining.store(true, Ordering::Release);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn deliver_loop(
    mut reader: OutboxReader,
    mut sink: Box<dyn Sink>,
    cfg: &SinkConfig,
    stats: &SinkStats,
    stop: &StopSignal,
) {
    let name = cfg.name.as_str();
    let mut pending: Vec<OutboxRecord> = Vec::new();
    let mut backoff = cfg.retry_min();
    // After a permanent error, records go one by one until this many are past.
    let mut isolate = 0usize;
    loop {
        if pending.is_empty() {
            if stop.draining.load(Ordering::Acquire) && reader.caught_up() {
                return;
            }
            if stop.past_deadline() {
                return;
            }
            match reader.read_batch(
                cfg.batch_max(),
                cfg.batch_max_bytes(),
                Duration::from_millis(200),
            ) {
                Ok(b) => pending = b,
                Err(e) => {
                    tracing::error!(sink = name, error = %e, "reading the outbox failed");
                    stats.set_error(Some(format!("outbox: {e}")));
                    if !stop.pause(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(cfg.retry_max());
                }
            }
            continue;
        }
        if stop.past_deadline() {
            return;
        }
        let n = if isolate > 0 { 1 } else { pending.len() };
        match sink.deliver(&pending[..n]) {
            Ok(d) => {
                let upto = pending[n - 1].seq + 1;
                if let Err(e) = reader.ack(upto) {
                    // Delivered but not recorded: it will be sent again (at least once).
                    tracing::error!(sink = name, error = %e, "writing the sink cursor failed");
                }
                for (seq, why) in &d.rejected {
                    tracing::error!(sink = name, seq, reason = %why, "receiver rejected an alert for good; skipped");
                }
                stats
                    .rejected
                    .fetch_add(d.rejected.len() as u64, Ordering::Relaxed);
                stats
                    .delivered
                    .fetch_add((n - d.rejected.len()) as u64, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.set_error(None);
                pending.drain(..n);
                isolate = isolate.saturating_sub(n);
                backoff = cfg.retry_min();
            }
            Err(DeliveryError::Permanent(e)) if n == 1 => {
                tracing::error!(sink = name, seq = pending[0].seq, error = %e, "receiver rejected an alert for good; skipped");
                if let Err(e) = reader.ack(pending[0].seq + 1) {
                    tracing::error!(sink = name, error = %e, "writing the sink cursor failed");
                }
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                stats.set_error(Some(e));
                pending.remove(0);
                isolate = isolate.saturating_sub(1);
            }
            Err(DeliveryError::Permanent(e)) => {
                tracing::warn!(sink = name, error = %e, records = n, "receiver refused a batch; retrying one by one");
                isolate = n;
            }
            Err(DeliveryError::Retry(e)) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = name, error = %e, retry_in_ms = backoff.as_millis() as u64, "delivery failed; will retry");
                stats.set_error(Some(e));
                if !stop.pause(backoff) {
                    return;
                }
                backoff = (backoff * 2).min(cfg.retry_max());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Vec<SinkConfig> {
        #[derive(Deserialize)]
        struct W {
            sinks: Vec<SinkConfig>,
        }
        toml::from_str::<W>(toml_text).unwrap().sinks
    }

    #[test]
    fn every_sink_problem_is_reported_at_once() {
        let sinks = parse(
            r#"
            [[sinks]]
            kind = "file"
            name = "a b"
            url = "http://x"
            [[sinks]]
            kind = "syslog"
            name = "s"
            address = "nohost"
            facility = "bogus"
            ca_file = "/x"
            [[sinks]]
            kind = "http"
            name = "s"
            url = "ftp://x"
            index = "i"
            format = "webhook"
            timeout_ms = 5
            retry_min_ms = 1000
            retry_max_ms = 10
            "#,
        );
        let errs = validate_all(&sinks);
        for needle in [
            "sinks[0] (file \"a b\"): name must be",
            "key `url` does not apply to kind = \"file\"",
            "sinks[0] (file \"a b\"): needs path",
            "address \"nohost\": needs a port",
            "unknown facility \"bogus\"",
            "ca_file only applies with tls = true",
            "ca_file /x is not a file",
            "url \"ftp://x\"",
            "index does not apply to format = \"webhook\"",
            "timeout_ms must be between",
            "retry_max_ms must not be below",
            "sinks[2]: duplicate sink name \"s\"",
        ] {
            assert!(
                errs.iter().any(|e| e.contains(needle)),
                "missing {needle:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn a_good_config_passes() {
        let sinks = parse(
            r#"
            [[sinks]]
            kind = "file"
            name = "local"
            path = "/tmp/alerts.ndjson"
            max_mb = 10
            [[sinks]]
            kind = "syslog"
            name = "rsyslog"
            address = "127.0.0.1:6514"
            tls = true
            [[sinks]]
            kind = "http"
            name = "es"
            url = "https://es.example:9200/_bulk"
            format = "es_bulk"
            auth_header = "ApiKey abc"
            "#,
        );
        assert_eq!(validate_all(&sinks), Vec::<String>::new());
    }

    #[test]
    fn unknown_keys_and_kinds_are_rejected_by_name() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct W {
            sinks: Vec<SinkConfig>,
        }
        let e = toml::from_str::<W>("[[sinks]]\nkind = \"file\"\nname = \"x\"\npth = \"/a\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("pth"), "{e}");
        let e = toml::from_str::<W>("[[sinks]]\nkind = \"kafka\"\nname = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("kafka"), "{e}");
    }

    /// A sink that fails a few times, then refuses one record for good.
    struct Flaky {
        fail_first: usize,
        poison: u64,
        got: Arc<Mutex<Vec<u64>>>,
    }

    impl Sink for Flaky {
        fn deliver(&mut self, batch: &[OutboxRecord]) -> Result<Delivered, DeliveryError> {
            if self.fail_first > 0 {
                self.fail_first -= 1;
                return Err(DeliveryError::Retry("down".into()));
            }
            if batch.iter().any(|r| r.seq == self.poison) {
                return Err(DeliveryError::Permanent("400 bad document".into()));
            }
            self.got.lock().unwrap().extend(batch.iter().map(|r| r.seq));
            Ok(Delivered::default())
        }
    }

    #[test]
    fn retries_then_isolates_a_poison_record_and_drains_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let (ob, _) = Outbox::open(
            crate::delivery::outbox::OutboxConfig {
                dir: dir.path().to_path_buf(),
                max_bytes: 1 << 20,
                segment_bytes: 1 << 16,
                when_full: Default::default(),
                sync: false,
            },
            &["t".to_string()],
        )
        .unwrap();
        let docs: Vec<String> = (0..20).map(|i| format!("{{\"id\":\"a{i}\"}}")).collect();
        ob.append_json(&docs).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let cfg = parse(
            "[[sinks]]\nkind = \"file\"\nname = \"t\"\npath = \"/x\"\nretry_min_ms = 10\nretry_max_ms = 40\nbatch_max = 8\n",
        )
        .remove(0);
        let sink = Flaky {
            fail_first: 3,
            poison: 5,
            got: Arc::clone(&got),
        };
        let set = SinkSet::start(&ob, vec![(cfg, Box::new(sink))]).unwrap();
        let mon = set.monitor();
        set.shutdown(Duration::from_secs(10));
        let seqs = got.lock().unwrap().clone();
        let want: Vec<u64> = (0..20).filter(|&s| s != 5).collect();
        assert_eq!(seqs, want);
        let st = &mon.status()[0];
        assert_eq!(
            (st.failures, st.rejected, st.delivered, st.backlog),
            (3, 1, 19, 0),
            "{st:?}"
        );
    }
}
