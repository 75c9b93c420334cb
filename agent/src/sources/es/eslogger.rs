//! Apple's `eslogger` NDJSON (one `es_message_t` as JSON per line) →
//! [`Event`], through the same [`mapping`] as the live ES client. Works on
//! any OS: `vigil replay --format eslogger FILE` reads recorded output, and
//! on macOS `vigil run --source eslogger` spawns eslogger and reads its
//! stdout ([`start_eslogger`]).
//!
//! Both audit-token encodings are accepted: an object with named fields
//! (message versions up to 9 and 11+) and an array of eight integers
//! `[auid, euid, egid, ruid, rgid, pid, asid, pidversion]` (version 10,
//! macOS 26). A line that is not valid eslogger JSON is counted and skipped,
//! never fatal.

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use dsl::Event;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::mapping::{
    self, AuditToken, EsEvent, EsMessage, EsProcess, LwSession, MapContext, ProcessCache,
    SeqGapCounter,
};
use crate::pipeline::queue::EventSender;

/// The event types `vigil run --source eslogger` asks eslogger for.
pub const DEFAULT_EVENT_TYPES: &[&str] = &[
    "exec", "fork", "exit", "create", "write", "close", "rename", "unlink",
];

/// Why one line was not turned into an [`EsMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Not JSON, or JSON without the fields of an `es_message_t`.
    Malformed(String),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Malformed(m) => write!(f, "malformed eslogger line: {m}"),
        }
    }
}

impl std::error::Error for LineError {}

/// Parses one eslogger line.
pub fn parse_line(line: &str) -> Result<EsMessage, LineError> {
    let raw: RawMessage =
        serde_json::from_str(line).map_err(|e| LineError::Malformed(e.to_string()))?;
    raw.into_message()
}

// --- eslogger's JSON, as far as vigil reads it ------------------------------
// Unknown keys (stat, env, fds, entitlements, ...) are skipped by serde
// without being stored.

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    version: u32,
    time: String,
    event_type: u32,
    #[serde(default)]
    global_seq_num: Option<u64>,
    process: RawProcess,
    event: RawEvent,
}

#[derive(Deserialize)]
struct RawFile {
    path: String,
}

#[derive(Deserialize)]
struct RawProcess {
    audit_token: RawToken,
    #[serde(default)]
    ppid: Option<i32>,
    #[serde(default)]
    parent_audit_token: Option<RawToken>,
    #[serde(default)]
    responsible_audit_token: Option<RawToken>,
    executable: RawFile,
    #[serde(default)]
    signing_id: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    cdhash: Option<String>,
    #[serde(default)]
    codesigning_flags: Option<u32>,
    #[serde(default)]
    is_platform_binary: Option<bool>,
}

impl RawProcess {
    fn into_process(self) -> EsProcess {
        EsProcess {
            token: self.audit_token.0,
            ppid: self.ppid.unwrap_or(0),
            parent_token: self.parent_audit_token.map(|t| t.0),
            responsible_token: self.responsible_audit_token.map(|t| t.0),
            executable: self.executable.path,
            signing_id: self.signing_id,
            team_id: self.team_id,
            cdhash: self.cdhash,
            codesigning_flags: self.codesigning_flags.unwrap_or(0),
            is_platform_binary: self.is_platform_binary.unwrap_or(false),
        }
    }
}

/// An audit token in either encoding.
struct RawToken(AuditToken);

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum TokenField {
    Auid,
    Euid,
    Egid,
    Ruid,
    Rgid,
    Pid,
    Asid,
    Pidversion,
    // Jamf-style tokens add a `uuid`; anything else is ignored too.
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for RawToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawToken, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawToken;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an audit token object or an array of 8 integers")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawToken, A::Error> {
                let mut a = [0i64; 8];
                for (i, slot) in a.iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(9, &self));
                }
                AuditToken::from_array(a)
                    .map(RawToken)
                    .ok_or_else(|| de::Error::custom("audit token value out of range"))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawToken, A::Error> {
                let mut t = AuditToken::default();
                let mut have_pid = false;
                while let Some(key) = map.next_key::<TokenField>()? {
                    match key {
                        TokenField::Auid => t.auid = map.next_value()?,
                        TokenField::Euid => t.euid = map.next_value()?,
                        TokenField::Egid => t.egid = map.next_value()?,
                        TokenField::Ruid => t.ruid = map.next_value()?,
                        TokenField::Rgid => t.rgid = map.next_value()?,
                        TokenField::Pid => {
                            t.pid = map.next_value()?;
                            have_pid = true;
                        }
                        TokenField::Asid => t.asid = map.next_value()?,
                        TokenField::Pidversion => t.pidversion = map.next_value()?,
                        TokenField::Other => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                if !have_pid {
                    return Err(de::Error::missing_field("pid"));
                }
                Ok(RawToken(t))
            }
        }
        d.deserialize_any(V)
    }
}

/// `create`/`rename` destination: an existing file, or a directory plus a
/// new name. The key present decides (eslogger also writes
/// `destination_type`, which says the same).
#[derive(Deserialize)]
struct RawDestination {
    #[serde(default)]
    existing_file: Option<RawFile>,
    #[serde(default)]
    new_path: Option<RawNewPath>,
}

#[derive(Deserialize)]
struct RawNewPath {
    dir: RawFile,
    filename: String,
}

impl RawDestination {
    fn path(self) -> Result<String, LineError> {
        if let Some(f) = self.existing_file {
            return Ok(f.path);
        }
        match self.new_path {
            Some(n) if n.dir.path.ends_with('/') => Ok(format!("{}{}", n.dir.path, n.filename)),
            Some(n) => Ok(format!("{}/{}", n.dir.path, n.filename)),
            None => Err(LineError::Malformed(
                "destination has neither existing_file nor new_path".into(),
            )),
        }
    }
}

/// `event`: an object with one key, the event's name. Only the mapped ones
/// are declared; `event_type` says which must be there.
#[derive(Deserialize)]
struct RawEvent {
    exec: Option<RawExec>,
    fork: Option<RawFork>,
    exit: Option<RawExit>,
    create: Option<RawCreate>,
    write: Option<RawTarget>,
    close: Option<RawClose>,
    rename: Option<RawRename>,
    unlink: Option<RawTarget>,
    uipc_connect: Option<RawUipcConnect>,
    authentication: Option<RawAuthentication>,
    login_login: Option<RawLogin>,
    login_logout: Option<RawLogin>,
    openssh_login: Option<RawLogin>,
    lw_session_login: Option<RawLogin>,
    lw_session_logout: Option<RawLogin>,
    lw_session_lock: Option<RawLogin>,
    lw_session_unlock: Option<RawLogin>,
    btm_launch_item_add: Option<RawBtmAdd>,
}

#[derive(Deserialize)]
struct RawExec {
    target: RawProcess,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    cwd: Option<RawFile>,
    #[serde(default)]
    env: Vec<String>,
}

#[derive(Deserialize)]
struct RawFork {
    child: RawProcess,
}

#[derive(Deserialize)]
struct RawExit {
    stat: i32,
}

#[derive(Deserialize)]
struct RawCreate {
    destination: RawDestination,
}

#[derive(Deserialize)]
struct RawTarget {
    target: RawFile,
}

#[derive(Deserialize)]
struct RawClose {
    modified: bool,
    target: RawFile,
}

#[derive(Deserialize)]
struct RawRename {
    source: RawFile,
    destination: RawDestination,
}

#[derive(Deserialize)]
struct RawUipcConnect {
    file: RawFile,
    #[serde(default)]
    domain: i32,
    #[serde(default, rename = "type")]
    sock_type: i32,
    #[serde(default)]
    protocol: i32,
}

#[derive(Deserialize)]
struct RawAuthentication {
    success: bool,
    #[serde(rename = "type")]
    kind: i32,
    #[serde(default)]
    data: Option<RawAuthData>,
}

#[derive(Deserialize)]
struct RawAuthData {
    #[serde(default)]
    od: Option<RawAuthOd>,
    #[serde(default)]
    touchid: Option<RawAuthUid>,
    #[serde(default)]
    auto_unlock: Option<RawAuthAutoUnlock>,
}

#[derive(Deserialize)]
struct RawAuthOd {
    #[serde(default)]
    record_name: Option<String>,
}

#[derive(Deserialize)]
struct RawAuthUid {
    #[serde(default)]
    uid: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawAuthAutoUnlock {
    #[serde(default)]
    username: Option<String>,
}

/// The login-ish events share their field names.
#[derive(Deserialize)]
struct RawLogin {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    uid: Option<serde_json::Value>,
    #[serde(default)]
    source_address: Option<String>,
}

#[derive(Deserialize)]
struct RawBtmAdd {
    #[serde(default)]
    instigator: Option<RawProcess>,
    item: RawBtmItem,
    #[serde(default)]
    executable_path: Option<String>,
}

#[derive(Deserialize)]
struct RawBtmItem {
    #[serde(default)]
    item_type: i32,
    #[serde(default)]
    uid: Option<u32>,
    item_url: String,
    #[serde(default)]
    app_url: Option<String>,
}

/// A uid written as a number, or as `{"uid": n}` (the C union), or null.
fn uid_of(v: Option<serde_json::Value>) -> Option<u32> {
    match v? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|u| u32::try_from(u).ok()),
        serde_json::Value::Object(m) => m
            .get("uid")
            .and_then(|u| u.as_u64())
            .and_then(|u| u32::try_from(u).ok()),
        _ => None,
    }
}

fn missing(name: &str) -> LineError {
    LineError::Malformed(format!(
        "event_type says {name:?} but event.{name} is missing"
    ))
}

impl RawMessage {
    fn into_message(self) -> Result<EsMessage, LineError> {
        let time_ns = dsl::time::parse_rfc3339(&self.time).map_err(LineError::Malformed)?;
        let name = mapping::event_type_name(self.event_type);
        let ev = self.event;
        let event = match self.event_type {
            9 => {
                let x = ev.exec.ok_or_else(|| missing(name))?;
                EsEvent::Exec {
                    target: x.target.into_process(),
                    args: x.args,
                    cwd: x.cwd.map(|c| c.path),
                    env: x.env,
                }
            }
            11 => EsEvent::Fork {
                child: ev.fork.ok_or_else(|| missing(name))?.child.into_process(),
            },
            15 => EsEvent::Exit {
                stat: ev.exit.ok_or_else(|| missing(name))?.stat,
            },
            13 => EsEvent::Create {
                path: ev.create.ok_or_else(|| missing(name))?.destination.path()?,
            },
            33 => EsEvent::Write {
                path: ev.write.ok_or_else(|| missing(name))?.target.path,
            },
            12 => {
                let x = ev.close.ok_or_else(|| missing(name))?;
                EsEvent::Close {
                    path: x.target.path,
                    modified: x.modified,
                }
            }
            25 => {
                let x = ev.rename.ok_or_else(|| missing(name))?;
                EsEvent::Rename {
                    source: x.source.path,
                    destination: x.destination.path()?,
                }
            }
            32 => EsEvent::Unlink {
                path: ev.unlink.ok_or_else(|| missing(name))?.target.path,
            },
            78 => {
                let x = ev.uipc_connect.ok_or_else(|| missing(name))?;
                EsEvent::UipcConnect {
                    path: x.file.path,
                    domain: x.domain,
                    sock_type: x.sock_type,
                    protocol: x.protocol,
                }
            }
            111 => {
                let x = ev.authentication.ok_or_else(|| missing(name))?;
                let data = x.data;
                let (user_name, user_id) = match data {
                    Some(RawAuthData { od: Some(od), .. }) => (od.record_name, None),
                    Some(RawAuthData {
                        touchid: Some(t), ..
                    }) => (None, uid_of(t.uid)),
                    Some(RawAuthData {
                        auto_unlock: Some(a),
                        ..
                    }) => (a.username, None),
                    _ => (None, None),
                };
                EsEvent::Authentication {
                    success: x.success,
                    kind: x.kind,
                    user_name,
                    user_id,
                }
            }
            122 => {
                let x = ev.login_login.ok_or_else(|| missing(name))?;
                EsEvent::LoginLogin {
                    success: x.success.unwrap_or(false),
                    user_name: x.username,
                    user_id: uid_of(x.uid),
                }
            }
            123 => {
                let x = ev.login_logout.ok_or_else(|| missing(name))?;
                EsEvent::LoginLogout {
                    user_name: x.username,
                    user_id: uid_of(x.uid),
                }
            }
            120 => {
                let x = ev.openssh_login.ok_or_else(|| missing(name))?;
                EsEvent::OpensshLogin {
                    success: x.success.unwrap_or(false),
                    user_name: x.username,
                    user_id: uid_of(x.uid),
                    source_address: x.source_address,
                }
            }
            114..=117 => {
                let (kind, x) = match self.event_type {
                    114 => (LwSession::Login, ev.lw_session_login),
                    115 => (LwSession::Logout, ev.lw_session_logout),
                    116 => (LwSession::Lock, ev.lw_session_lock),
                    _ => (LwSession::Unlock, ev.lw_session_unlock),
                };
                EsEvent::LwSession {
                    kind,
                    user_name: x.ok_or_else(|| missing(name))?.username,
                }
            }
            124 => {
                let x = ev.btm_launch_item_add.ok_or_else(|| missing(name))?;
                EsEvent::BtmLaunchItemAdd {
                    instigator: x.instigator.map(RawProcess::into_process),
                    item_url: x.item.item_url,
                    app_url: x.item.app_url,
                    executable_path: x.executable_path,
                    item_type: x.item.item_type,
                    uid: x.item.uid,
                }
            }
            _ => EsEvent::Unmapped,
        };
        Ok(EsMessage {
            version: self.version,
            time_ns,
            event_type: self.event_type,
            global_seq_num: self.global_seq_num,
            process: self.process.into_process(),
            event,
        })
    }
}

// --- stateful mapping ---------------------------------------------------------

/// What an [`EsloggerMapper`] did, for logs and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EsloggerStats {
    /// Non-blank lines read.
    pub lines: u64,
    pub mapped: u64,
    pub malformed: u64,
    /// Lines skipped on purpose, by reason (event type name, or
    /// `close_unmodified`).
    pub skipped: BTreeMap<String, u64>,
    /// Messages the kernel dropped before eslogger saw them
    /// (`global_seq_num` gaps).
    pub kernel_dropped: u64,
    /// Times `global_seq_num` went backwards (a new eslogger run).
    pub seq_restarts: u64,
}

impl EsloggerStats {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

impl fmt::Display for EsloggerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lines: {} mapped, {} malformed, {} skipped",
            self.lines,
            self.mapped,
            self.malformed,
            self.skipped_total()
        )?;
        if !self.skipped.is_empty() {
            let by: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            write!(f, " ({})", by.join(", "))?;
        }
        write!(f, ", {} dropped by the kernel", self.kernel_dropped)
    }
}

/// Lines → events, with a process cache so parents get names, and
/// counters for everything that did not become an event.
pub struct EsloggerMapper {
    ctx: MapContext,
    cache: ProcessCache,
    gaps: SeqGapCounter,
    stats: EsloggerStats,
    muted: Vec<i32>,
}

impl EsloggerMapper {
    pub fn new(ctx: MapContext) -> EsloggerMapper {
        EsloggerMapper {
            ctx,
            cache: ProcessCache::default(),
            gaps: SeqGapCounter::default(),
            stats: EsloggerStats::default(),
            muted: Vec::new(),
        }
    }

    /// Drops events whose acting process is `pid` (live: vigil itself, whose
    /// spool writes would otherwise come back as events).
    pub fn mute_pid(&mut self, pid: i32) {
        self.muted.push(pid);
    }

    /// One line: `Ok(Some(event))`, `Ok(None)` for a blank or skipped line,
    /// `Err` for a malformed one (already counted).
    pub fn map_line(&mut self, line: &str) -> Result<Option<Event>, LineError> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(None);
        }
        self.stats.lines += 1;
        let msg = match parse_line(line) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e);
            }
        };
        Ok(self.map_message(msg))
    }

    /// One line as read: bytes that are not UTF-8 are a malformed line.
    pub fn map_bytes(&mut self, line: &[u8]) -> Result<Option<Event>, LineError> {
        match std::str::from_utf8(line) {
            Ok(text) => self.map_line(text),
            Err(e) => {
                self.stats.lines += 1;
                self.stats.malformed += 1;
                Err(LineError::Malformed(format!("not UTF-8: {e}")))
            }
        }
    }

    /// One parsed message (also the path for a live ES client's messages).
    pub fn map_message(&mut self, msg: EsMessage) -> Option<Event> {
        if let Some(seq) = msg.global_seq_num {
            self.gaps.observe(seq);
            self.stats.kernel_dropped = self.gaps.dropped;
            self.stats.seq_restarts = self.gaps.restarts;
        }
        if self.muted.contains(&msg.process.token.pid) {
            *self.stats.skipped.entry("muted".to_string()).or_default() += 1;
            return None;
        }
        self.cache.observe(&msg);
        let exited = matches!(msg.event, EsEvent::Exit { .. }).then_some(msg.process.token);
        let result = mapping::to_event(msg, &self.ctx);
        if let Some(t) = exited {
            self.cache.forget(&t);
        }
        match result {
            Ok(mut e) => {
                self.cache.enrich(&mut e);
                self.stats.mapped += 1;
                Some(e)
            }
            Err(skip) => {
                *self
                    .stats
                    .skipped
                    .entry(skip.reason().to_string())
                    .or_default() += 1;
                None
            }
        }
    }

    pub fn stats(&self) -> &EsloggerStats {
        &self.stats
    }
}

/// Iterates the events of an eslogger NDJSON stream. Malformed lines are
/// counted in the mapper's stats and reported through `on_error` (with their
/// line number); reading goes on.
pub struct EsloggerReader<R, F> {
    input: R,
    mapper: EsloggerMapper,
    on_error: F,
    line_no: u64,
    buf: Vec<u8>,
}

impl<R: BufRead, F: FnMut(u64, &LineError)> EsloggerReader<R, F> {
    pub fn new(input: R, ctx: MapContext, on_error: F) -> Self {
        EsloggerReader {
            input,
            mapper: EsloggerMapper::new(ctx),
            on_error,
            line_no: 0,
            buf: Vec::new(),
        }
    }

    pub fn stats(&self) -> &EsloggerStats {
        self.mapper.stats()
    }
}

impl<R: BufRead, F: FnMut(u64, &LineError)> Iterator for EsloggerReader<R, F> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            self.buf.clear();
            self.line_no += 1;
            match self.input.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    (self.on_error)(
                        self.line_no,
                        &LineError::Malformed(format!("read error: {e}")),
                    );
                    return None;
                }
            }
            match self.mapper.map_bytes(&self.buf) {
                Ok(Some(e)) => return Some(e),
                Ok(None) => {}
                Err(err) => (self.on_error)(self.line_no, &err),
            }
        }
    }
}

// --- live: spawn eslogger -------------------------------------------------------

/// How to run eslogger: the program and the event types.
#[derive(Debug, Clone)]
pub struct EsloggerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Default for EsloggerCommand {
    fn default() -> Self {
        EsloggerCommand {
            program: PathBuf::from("/usr/bin/eslogger"),
            args: DEFAULT_EVENT_TYPES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Counters of a running eslogger source, shared with its reader thread.
#[derive(Debug, Default)]
pub struct EsloggerCounters {
    pub lines: AtomicU64,
    pub mapped: AtomicU64,
    pub malformed: AtomicU64,
    pub skipped: AtomicU64,
    pub kernel_dropped: AtomicU64,
    /// Events the pipeline queue had no room for.
    pub queue_dropped: AtomicU64,
}

/// A running eslogger child and the thread reading it.
pub struct EsloggerSource {
    child: Arc<Mutex<Child>>,
    reader: Option<JoinHandle<EsloggerStats>>,
    pub counters: Arc<EsloggerCounters>,
}

/// Why eslogger did not start.
#[derive(Debug, thiserror::Error)]
pub enum EsloggerStartError {
    #[error("starting {} (eslogger needs macOS 13+, root, and Full Disk Access for the calling process): {source}", program.display())]
    Spawn {
        program: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("eslogger's stdout was not captured")]
    NoStdout,
    #[error("spawning the eslogger reader thread: {0}")]
    Thread(std::io::Error),
}

/// Spawns eslogger and a thread that maps its stdout and pushes events
/// without blocking (a full queue drops and counts, as for any live source).
/// The thread ends when `stop` is set or eslogger exits; in the latter case
/// it sets `stop` itself, so the agent ends (and its supervisor restarts
/// it) instead of running without events.
pub fn start_eslogger(
    cmd: &EsloggerCommand,
    ctx: MapContext,
    tx: EventSender,
    stop: Arc<AtomicBool>,
) -> Result<EsloggerSource, EsloggerStartError> {
    let mut child = Command::new(&cmd.program)
        .args(&cmd.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| EsloggerStartError::Spawn {
            program: cmd.program.clone(),
            source,
        })?;
    let stdout = child.stdout.take().ok_or(EsloggerStartError::NoStdout)?;
    let counters = Arc::new(EsloggerCounters::default());
    let c = Arc::clone(&counters);
    let mut mapper = EsloggerMapper::new(ctx);
    mapper.mute_pid(std::process::id() as i32);
    mapper.mute_pid(child.id() as i32);
    let reader = std::thread::Builder::new()
        .name("eslogger".into())
        .spawn(move || {
            let mut input = std::io::BufReader::with_capacity(1 << 20, stdout);
            let mut buf = Vec::new();
            while !stop.load(Relaxed) {
                buf.clear();
                match input.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "reading eslogger output failed");
                        break;
                    }
                }
                match mapper.map_bytes(&buf) {
                    Ok(Some(e)) => {
                        if !tx.push(e) {
                            c.queue_dropped.fetch_add(1, Relaxed);
                        }
                    }
                    Ok(None) => {}
                    Err(err) => tracing::debug!(error = %err, "skipped eslogger line"),
                }
                let s = mapper.stats();
                c.lines.store(s.lines, Relaxed);
                c.mapped.store(s.mapped, Relaxed);
                c.malformed.store(s.malformed, Relaxed);
                c.skipped.store(s.skipped_total(), Relaxed);
                c.kernel_dropped.store(s.kernel_dropped, Relaxed);
            }
            if !stop.load(Relaxed) {
                // Running on without eslogger would be running blind.
                tracing::error!("eslogger exited; stopping");
                stop.store(true, Relaxed);
            }
            mapper.stats().clone()
        })
        .map_err(EsloggerStartError::Thread)?;
    Ok(EsloggerSource {
        child: Arc::new(Mutex::new(child)),
        reader: Some(reader),
        counters,
    })
}

impl EsloggerSource {
    pub fn is_finished(&self) -> bool {
        self.reader.as_ref().is_none_or(|r| r.is_finished())
    }

    /// Stops eslogger and waits for the reader; returns what it mapped.
    pub fn stop(mut self) -> Option<EsloggerStats> {
        self.kill();
        self.reader.take().and_then(|r| r.join().ok())
    }

    fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        // Already gone is fine: eslogger may have exited on its own.
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for EsloggerSource {
    fn drop(&mut self) {
        if self.reader.is_some() {
            self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsl::event::{Category, EventType};

    fn ctx() -> MapContext {
        MapContext::macos("mac1", None, None, None)
    }

    const EXEC_ARRAY_TOKENS: &str = r#"{"version":10,"time":"2025-07-22T15:09:01.084030274Z","event_type":9,"global_seq_num":5,"process":{"audit_token":[501,501,20,501,20,300,100013,20],"ppid":200,"parent_audit_token":[501,501,20,501,20,200,100013,11],"executable":{"path":"\/bin\/sh"},"codesigning_flags":1,"is_platform_binary":true},"event":{"exec":{"target":{"audit_token":[501,501,20,501,20,300,100013,21],"ppid":200,"parent_audit_token":[501,501,20,501,20,200,100013,11],"executable":{"path":"\/usr\/bin\/curl"},"is_platform_binary":true,"codesigning_flags":1,"team_id":null},"args":["curl","-s","http:\/\/example.com\/x"],"env":["A=b"],"cwd":{"path":"\/private\/tmp"}}}}"#;

    #[test]
    fn array_tokens_and_escaped_slashes() {
        let m = parse_line(EXEC_ARRAY_TOKENS).unwrap();
        assert_eq!(m.process.token.pid, 300);
        assert_eq!(m.process.token.pidversion, 20);
        assert_eq!(m.process.token.auid, 501);
        let EsEvent::Exec {
            target,
            args,
            cwd,
            env,
        } = &m.event
        else {
            panic!("{m:?}")
        };
        assert_eq!(env, &["A=b".to_string()]);
        assert_eq!(target.executable, "/usr/bin/curl");
        assert_eq!(args[2], "http://example.com/x");
        assert_eq!(cwd.as_deref(), Some("/private/tmp"));
        assert_eq!(target.parent_token.unwrap().pidversion, 11);
    }

    #[test]
    fn object_tokens_with_any_key_order() {
        let line = EXEC_ARRAY_TOKENS
            .replace(
                "[501,501,20,501,20,300,100013,21]",
                r#"{"pidversion":21,"pid":300,"ruid":501,"euid":501,"egid":20,"rgid":20,"asid":100013,"auid":501,"extra":"ignored"}"#,
            );
        let m = parse_line(&line).unwrap();
        let EsEvent::Exec { target, .. } = &m.event else {
            panic!()
        };
        assert_eq!((target.token.pid, target.token.pidversion), (300, 21));
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for bad in [
            "not json",
            "{}",
            r#"{"time":"x","event_type":9,"process":{},"event":{}}"#,
            // exec without its payload
            &EXEC_ARRAY_TOKENS.replace(r#""exec":"#, r#""exit":"#),
            // 7-element token
            &EXEC_ARRAY_TOKENS.replace("[501,501,20,501,20,300,100013,20]", "[1,2,3,4,5,6,7]"),
            // 9-element token
            &EXEC_ARRAY_TOKENS.replace("[501,501,20,501,20,300,100013,20]", "[1,2,3,4,5,6,7,8,9]"),
            // pid out of range
            &EXEC_ARRAY_TOKENS.replace(
                "[501,501,20,501,20,300,100013,20]",
                "[1,2,3,4,5,99999999999,7,8]",
            ),
            &EXEC_ARRAY_TOKENS[..100],
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reader_counts_and_skips_bad_and_unmapped_lines() {
        let unmapped = r#"{"time":"2025-07-22T15:09:01Z","event_type":20,"global_seq_num":9,"process":{"audit_token":[0,0,0,0,0,1,0,1],"executable":{"path":"\/sbin\/launchd"}},"event":{"mmap":{}}}"#;
        let input = format!("{EXEC_ARRAY_TOKENS}\n\ngarbage\n{unmapped}\n{EXEC_ARRAY_TOKENS}\n");
        let mut errors = Vec::new();
        let mut r = EsloggerReader::new(input.as_bytes(), ctx(), |n, _: &LineError| errors.push(n));
        let events: Vec<Event> = r.by_ref().collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event.category, Category::Process);
        assert_eq!(events[0].process.name.as_deref(), Some("curl"));
        // The cache learnt /bin/sh (pid 300 v20) but the parent is 200 v11: unknown.
        assert!(events[0].process.parent.as_deref().unwrap().name.is_none());
        let s = r.stats().clone();
        assert_eq!((s.lines, s.mapped, s.malformed), (4, 2, 1));
        assert_eq!(s.skipped.get("mmap"), Some(&1));
        // 5 -> 9 is a gap of 3, then 9 -> 5 restarts.
        assert_eq!((s.kernel_dropped, s.seq_restarts), (3, 1));
        assert_eq!(errors, vec![3]);
        assert!(s.to_string().contains("1 malformed"), "{s}");
    }

    #[test]
    fn invalid_utf8_is_one_bad_line() {
        let mut input = b"\xff\xfe bad\n".to_vec();
        input.extend_from_slice(EXEC_ARRAY_TOKENS.as_bytes());
        input.push(b'\n');
        let mut r = EsloggerReader::new(&input[..], ctx(), |_, _: &LineError| {});
        assert_eq!(r.by_ref().count(), 1);
        assert_eq!(r.stats().malformed, 1);
    }

    #[test]
    fn file_event_shapes() {
        let wrap = |ty: u32, ev: &str| {
            format!(
                r#"{{"time":"2025-07-22T15:09:01Z","event_type":{ty},"process":{{"audit_token":{{"pid":7,"pidversion":1}},"executable":{{"path":"\/bin\/cp"}}}},"event":{ev}}}"#
            )
        };
        let mut m = EsloggerMapper::new(ctx());
        let path = |m: &mut EsloggerMapper, ty, ev| {
            m.map_line(&wrap(ty, ev))
                .unwrap()
                .and_then(|e| e.file)
                .and_then(|f| f.path)
        };
        assert_eq!(
            path(
                &mut m,
                13,
                r#"{"create":{"destination_type":1,"destination":{"new_path":{"dir":{"path":"\/src\/"},"filename":"a.o","mode":420}}}}"#
            ),
            Some("/src/a.o".into())
        );
        assert_eq!(
            path(
                &mut m,
                13,
                r#"{"create":{"destination_type":0,"destination":{"existing_file":{"path":"\/src\/b"}}}}"#
            ),
            Some("/src/b".into())
        );
        assert_eq!(
            path(
                &mut m,
                25,
                r#"{"rename":{"source":{"path":"\/t\/x"},"destination_type":1,"destination":{"new_path":{"dir":{"path":"\/t"},"filename":"y"}}}}"#
            ),
            Some("/t/y".into())
        );
        assert_eq!(
            path(
                &mut m,
                32,
                r#"{"unlink":{"target":{"path":"\/t\/y"},"parent_dir":{"path":"\/t"}}}"#
            ),
            Some("/t/y".into())
        );
        assert_eq!(
            path(&mut m, 33, r#"{"write":{"target":{"path":"\/t\/w"}}}"#),
            Some("/t/w".into())
        );
        assert_eq!(
            path(
                &mut m,
                12,
                r#"{"close":{"modified":true,"target":{"path":"\/t\/c"}}}"#
            ),
            Some("/t/c".into())
        );
        assert_eq!(
            path(
                &mut m,
                12,
                r#"{"close":{"modified":false,"target":{"path":"\/t\/c"}}}"#
            ),
            None
        );
        assert!(m
            .map_line(&wrap(13, r#"{"create":{"destination":{}}}"#))
            .is_err());
        assert_eq!(m.stats().skipped.get("close_unmodified"), Some(&1));
    }

    #[test]
    fn login_and_authentication_shapes() {
        let wrap = |ty: u32, ev: &str| {
            format!(
                r#"{{"time":"2024-05-01T10:00:00Z","event_type":{ty},"process":{{"audit_token":{{"pid":90,"pidversion":3}},"executable":{{"path":"\/usr\/sbin\/sshd"}}}},"event":{ev}}}"#
            )
        };
        let mut m = EsloggerMapper::new(ctx());
        let e = m
            .map_line(&wrap(120, r#"{"openssh_login":{"result_type":2,"source_address":"192.168.4.252","source_address_type":1,"success":true,"uid":501,"username":"jappleseed"}}"#))
            .unwrap()
            .unwrap();
        assert_eq!(e.event.category, Category::Authentication);
        assert_eq!(e.event.outcome.as_deref(), Some("success"));
        assert_eq!(e.user.name.as_deref(), Some("jappleseed"));
        assert_eq!(e.source.unwrap().ip.unwrap().to_string(), "192.168.4.252");
        let e = m
            .map_line(&wrap(111, r#"{"authentication":{"success":false,"type":1,"data":{"touchid":{"touchid_mode":1,"uid":502}}}}"#))
            .unwrap()
            .unwrap();
        assert_eq!(e.event.action.as_deref(), Some("authentication_touchid"));
        assert_eq!(e.user.id.as_deref(), Some("502"));
        assert_eq!(e.event.outcome.as_deref(), Some("failure"));
        let e = m
            .map_line(&wrap(
                116,
                r#"{"lw_session_lock":{"graphical_session_id":257,"username":"a"}}"#,
            ))
            .unwrap()
            .unwrap();
        assert_eq!(e.event.category, Category::Session);
        assert!(e.has_type(EventType::Change));
    }

    /// A fake eslogger (`cat` of a file) through the real spawn-and-read path.
    #[test]
    fn spawned_eslogger_output_reaches_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.ndjson");
        std::fs::write(
            &file,
            format!("{EXEC_ARRAY_TOKENS}\nnot json\n{EXEC_ARRAY_TOKENS}\n"),
        )
        .unwrap();
        let queue = crate::pipeline::queue::event_queue(16);
        let (tx, rx) = (queue.sender, queue.receiver);
        let cmd = EsloggerCommand {
            program: PathBuf::from("cat"),
            args: vec![file.display().to_string()],
        };
        let src = start_eslogger(&cmd, ctx(), tx, Arc::new(AtomicBool::new(false))).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !src.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let stats = src.stop().unwrap();
        assert_eq!((stats.mapped, stats.malformed), (2, 1));
        assert_eq!(rx.try_iter().count(), 2);
    }

    #[test]
    fn missing_program_is_a_clear_error() {
        let queue = crate::pipeline::queue::event_queue(1);
        let tx = queue.sender;
        let cmd = EsloggerCommand {
            program: PathBuf::from("/nonexistent/eslogger"),
            args: vec![],
        };
        let err = start_eslogger(&cmd, ctx(), tx, Arc::new(AtomicBool::new(false)))
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("Full Disk Access"), "{err:#}");
    }
}
