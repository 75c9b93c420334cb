//! Fleet requests over NATS: every agent answers `status`, `context` and
//! `hunt` requests for its own host, and `vigil fleet ...` scatters a
//! request to every host and gathers the answers before a deadline.
//!
//! Subjects (prefix `P`, default `vigil`):
//! * `P.req.<host>.<kind>`: a request for one host; `P.req.all.<kind>`: for
//!   every host (`<host>` is the host id made subject-safe, see
//!   [`crate::nats::subject_token`]).
//! * `P.cancel.<request_id>`: stop a running request (the client sends it
//!   on Ctrl-C or when its deadline passes).
//! * `P.hosts.<host>` in stream `VIGIL_HOSTS` (`hosts_stream`, one message
//!   kept per subject, as a key-value bucket would): each agent's entry,
//!   refreshed every `heartbeat_s`. The client expects an answer from every
//!   entry, so a host that is down is reported as missing, not forgotten;
//!   entries of hosts silent for a week expire.
//!
//! A request is a JSON object with `request_id`, `deadline_ms` and the
//! kind's own keys (hunt: `query`, `since`, `until`, `limit`; context: the
//! control socket's keys). An agent answers on the request's reply subject
//! with zero or more chunks `{"host","request_id","events":[..]}` and one
//! final `{"host","request_id","done":true,"ok":..,...}` (see [`Done`]).
//! Answers are bounded: by `max_answer_kb` in total, by the server's
//! message size per chunk, by `max_hunt_results` and by the earlier of the
//! request's deadline and `max_hunt_seconds`; what was cut is flagged with
//! `truncated`. Who may send requests is the NATS server's business
//! (subject permissions per user; see packaging/nats/nats-server.conf);
//! each agent additionally answers only the kinds in `allow`.
//!
//! Owns: subjects, the registry and the request protocol over NATS. Must not
//! touch: the pipeline (the responder answers through the control handler)
//! or the CLI (hunts run through `history::query::run_query`).

pub mod client;
pub mod responder;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `[fleet]`: answer fleet requests over NATS (connection from `[nats]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetSection {
    pub enabled: bool,
    /// First subject token of requests, cancels (and nothing else).
    pub subject_prefix: String,
    /// Request kinds this agent answers: status, context, hunt.
    pub allow: Vec<String>,
    /// JetStream stream of fleet members (one entry per host).
    pub hosts_stream: String,
    /// How often this host refreshes its entry in the bucket.
    pub heartbeat_s: u64,
    /// Longest a hunt may run here, whatever the request asks.
    pub max_hunt_seconds: u64,
    /// Most events (or alerts) one hunt answer carries.
    pub max_hunt_results: u64,
    /// Most bytes of one answer, all chunks together.
    pub max_answer_kb: u64,
    /// Threads a hunt may use here (1 keeps the host responsive).
    pub hunt_threads: usize,
    /// Requests served at once; more are answered `busy`.
    pub max_concurrent: usize,
}

impl Default for FleetSection {
    fn default() -> Self {
        FleetSection {
            enabled: false,
            subject_prefix: "vigil".into(),
            allow: KINDS.iter().map(|k| k.to_string()).collect(),
            hosts_stream: "VIGIL_HOSTS".into(),
            heartbeat_s: 30,
            max_hunt_seconds: 60,
            max_hunt_results: 10_000,
            max_answer_kb: 8_192,
            hunt_threads: 1,
            max_concurrent: 4,
        }
    }
}

/// Request kinds.
pub const KINDS: [&str; 3] = ["status", "context", "hunt"];

impl FleetSection {
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let token_ok = |t: &str| {
            !t.is_empty()
                && t.len() <= 64
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !token_ok(&self.subject_prefix) {
            errs.push("fleet.subject_prefix must be one subject token of A-Z a-z 0-9 - _".into());
        }
        for k in &self.allow {
            if !KINDS.contains(&k.as_str()) {
                errs.push(format!(
                    "fleet.allow: unknown request kind {k:?} (status, context, hunt)"
                ));
            }
        }
        if !token_ok(&self.hosts_stream) {
            errs.push("fleet.hosts_stream must be 1-64 characters of A-Z a-z 0-9 - _".into());
        }
        if !(1..=3_600).contains(&self.heartbeat_s) {
            errs.push("fleet.heartbeat_s must be between 1 and 3600".into());
        }
        if !(1..=3_600).contains(&self.max_hunt_seconds) {
            errs.push("fleet.max_hunt_seconds must be between 1 and 3600".into());
        }
        if !(1..=10_000_000).contains(&self.max_hunt_results) {
            errs.push("fleet.max_hunt_results must be between 1 and 10000000".into());
        }
        if !(16..=1_048_576).contains(&self.max_answer_kb) {
            errs.push("fleet.max_answer_kb must be between 16 and 1048576".into());
        }
        if !(1..=64).contains(&self.hunt_threads) {
            errs.push("fleet.hunt_threads must be between 1 and 64".into());
        }
        if !(1..=64).contains(&self.max_concurrent) {
            errs.push("fleet.max_concurrent must be between 1 and 64".into());
        }
        errs
    }
}

/// Subject of a request of `kind` for `host` (`None`: every host).
pub fn request_subject(prefix: &str, host: Option<&str>, kind: &str) -> String {
    let target = host.map_or_else(|| "all".to_string(), crate::nats::subject_token);
    format!("{prefix}.req.{target}.{kind}")
}

/// Where `host` keeps its entry in the hosts stream.
pub fn host_subject(prefix: &str, host: &str) -> String {
    format!("{prefix}.hosts.{}", crate::nats::subject_token(host))
}

/// Why a fleet operation failed. The message is what the other side or
/// the admin reads; a bad request's goes back on the wire as it is.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The request is malformed or asks for what this agent does not do.
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Connect(#[from] crate::nats::NatsConnectError),
    /// A NATS or JetStream operation failed (`what` says which).
    #[error("{what}: {problem}")]
    Nats { what: String, problem: String },
    #[error("spool: {0}")]
    Spool(#[from] spool::SpoolError),
}

impl FleetError {
    pub fn bad(message: impl Into<String>) -> FleetError {
        FleetError::BadRequest(message.into())
    }

    /// For `map_err`: a NATS operation's error, named by what it was doing.
    pub fn nats<E: std::fmt::Display>(what: impl Into<String>) -> impl FnOnce(E) -> FleetError {
        let what = what.into();
        move |e| FleetError::Nats {
            what,
            problem: e.to_string(),
        }
    }
}

/// The hosts stream, created if missing: the latest entry per host, for
/// a week.
pub async fn hosts_stream(
    js: &async_nats::jetstream::Context,
    fleet: &FleetSection,
) -> Result<async_nats::jetstream::stream::Stream, FleetError> {
    use async_nats::jetstream::stream;
    if let Ok(s) = js.get_stream(&fleet.hosts_stream).await {
        return Ok(s);
    }
    js.get_or_create_stream(stream::Config {
        name: fleet.hosts_stream.clone(),
        subjects: vec![format!("{}.hosts.*", fleet.subject_prefix)],
        max_messages_per_subject: 1,
        max_age: std::time::Duration::from_secs(7 * 86_400),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(FleetError::nats(format!(
        "creating stream {}",
        fleet.hosts_stream
    )))
}

pub fn cancel_subject(prefix: &str, request_id: &str) -> String {
    format!("{prefix}.cancel.{}", crate::nats::subject_token(request_id))
}

/// A host's entry in the hosts bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostEntry {
    pub host: String,
    pub hostname: String,
    pub version: String,
    /// Unix ns of the agent's start and of this heartbeat.
    pub started_ns: i64,
    pub seen_ns: i64,
}

/// The last message of a host's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub host: String,
    pub request_id: String,
    pub done: bool,
    pub ok: bool,
    /// status/context: the control answer's `result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Error kind (`bad_request`, `not_allowed`, `busy`, `not_found`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// hunt: results sent, events scanned, whether limits cut it short.
    #[serde(default)]
    pub matches: u64,
    #[serde(default)]
    pub scanned: u64,
    #[serde(default)]
    pub truncated: bool,
    #[serde(default)]
    pub cancelled: bool,
    #[serde(default)]
    pub elapsed_ms: u64,
}

/// A chunk of hunt results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub host: String,
    pub request_id: String,
    /// ECS events (filter hunts) or alerts (sequence hunts).
    pub events: Vec<Value>,
}
