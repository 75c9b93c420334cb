//! Endpoint Security message → [`Event`], as plain functions over a small,
//! platform-independent view of an `es_message_t` ([`EsMessage`]). The live
//! ES client (macOS only) and the eslogger reader (any OS) both fill an
//! `EsMessage` and call [`to_event`], so the mapping is tested everywhere.
//!
//! Identity: ES names a process image by its audit token; `pidversion`
//! changes on every exec, so `process.entity_id` is
//! `{prefix}-{pid}-{pidversion}` and the parent's id comes from
//! `parent_audit_token` the same way (the two join in sequence rules).
//!
//! Also here, because they are pure and testable on Linux: kernel-drop
//! detection from `global_seq_num` gaps ([`SeqGapCounter`]), a bounded
//! process cache that fills `process.parent.*` names for sources without a
//! process table ([`ProcessCache`]), and the network event built from a
//! polled socket ([`ConnTracker`], [`network_event`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use dsl::event::{
    Category, CodeSignature, Endpoint, EventInfo, EventType, ExtraValue, File, Hash, Host, Network,
    Os, Process, Text, User,
};
use dsl::text::TextCache;
use dsl::Event;

/// `audit_token_t` as ES reports it (see `<bsm/libbsm.h>` accessors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditToken {
    pub auid: u32,
    pub euid: u32,
    pub egid: u32,
    pub ruid: u32,
    pub rgid: u32,
    pub pid: i32,
    pub asid: i32,
    pub pidversion: i32,
}

impl AuditToken {
    /// eslogger's array form (macOS 26 / message version 10):
    /// `[auid, euid, egid, ruid, rgid, pid, asid, pidversion]`, the order of
    /// `audit_token_to_*` in libbsm.
    pub fn from_array(a: [i64; 8]) -> Option<AuditToken> {
        Some(AuditToken {
            auid: u32::try_from(a[0]).ok()?,
            euid: u32::try_from(a[1]).ok()?,
            egid: u32::try_from(a[2]).ok()?,
            ruid: u32::try_from(a[3]).ok()?,
            rgid: u32::try_from(a[4]).ok()?,
            pid: i32::try_from(a[5]).ok()?,
            asid: i32::try_from(a[6]).ok()?,
            pidversion: i32::try_from(a[7]).ok()?,
        })
    }
}

/// `es_process_t`: the fields vigil maps.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EsProcess {
    pub token: AuditToken,
    pub ppid: i32,
    /// Message version 4+ (macOS 11); absent in older messages.
    pub parent_token: Option<AuditToken>,
    /// The process responsible for this one (message version 4+): the app
    /// behind an XPC helper, the terminal behind a shell's child. ES gives
    /// the process itself when there is none.
    pub responsible_token: Option<AuditToken>,
    pub executable: String,
    pub signing_id: Option<String>,
    pub team_id: Option<String>,
    /// Upper-case hex, as eslogger prints it.
    pub cdhash: Option<String>,
    pub codesigning_flags: u32,
    pub is_platform_binary: bool,
}

/// Which loginwindow session transition (`lw_session_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LwSession {
    Login,
    Logout,
    Lock,
    Unlock,
}

/// The event-specific part of a message, for the event types vigil maps.
#[derive(Debug, Clone, PartialEq)]
pub enum EsEvent {
    Exec {
        target: EsProcess,
        args: Vec<String>,
        cwd: Option<String>,
        /// The new image's environment (`NAME=value`); mapped through the
        /// context's allow-list only.
        env: Vec<String>,
    },
    Fork {
        child: EsProcess,
    },
    /// `stat` is a wait(2) status.
    Exit {
        stat: i32,
    },
    Create {
        path: String,
    },
    Write {
        path: String,
    },
    Close {
        path: String,
        modified: bool,
    },
    Rename {
        source: String,
        destination: String,
    },
    Unlink {
        path: String,
    },
    /// connect(2) on an AF_UNIX socket: local IPC, not a network flow.
    UipcConnect {
        path: String,
        domain: i32,
        sock_type: i32,
        protocol: i32,
    },
    Authentication {
        success: bool,
        /// `es_authentication_type_t`: 0 od, 1 touchid, 2 token, 3 auto_unlock.
        kind: i32,
        user_name: Option<String>,
        user_id: Option<u32>,
    },
    LoginLogin {
        success: bool,
        user_name: Option<String>,
        user_id: Option<u32>,
    },
    LoginLogout {
        user_name: Option<String>,
        user_id: Option<u32>,
    },
    OpensshLogin {
        success: bool,
        user_name: Option<String>,
        user_id: Option<u32>,
        source_address: Option<String>,
    },
    LwSession {
        kind: LwSession,
        user_name: Option<String>,
    },
    /// A login item, launch agent or daemon registered with Background Task
    /// Management (macOS 13+).
    BtmLaunchItemAdd {
        instigator: Option<EsProcess>,
        item_url: String,
        app_url: Option<String>,
        executable_path: Option<String>,
        item_type: i32,
        uid: Option<u32>,
    },
    /// An event type vigil does not map; counted by name and skipped.
    Unmapped,
}

/// `es_message_t`: envelope plus the acting process and the event.
#[derive(Debug, Clone, PartialEq)]
pub struct EsMessage {
    pub version: u32,
    /// Wall-clock time of the event, ns since the Unix epoch.
    pub time_ns: i64,
    /// `es_event_type_t`.
    pub event_type: u32,
    /// Per-client count of every message delivered (message version 4+);
    /// a gap means the kernel dropped messages for this client.
    pub global_seq_num: Option<u64>,
    pub process: EsProcess,
    pub event: EsEvent,
}

/// What [`to_event`] stamps on every event.
#[derive(Debug, Clone)]
pub struct MapContext {
    pub host: Host,
    /// Prefix of entity ids: host (and boot, when known), so ids from two
    /// Macs or two boots never collide.
    pub entity_prefix: String,
    /// Strings recur from event to event (the same programs, signers and
    /// users act again and again): one copy of each, shared by the clones
    /// of this context. Behind a lock rather than per thread because ES
    /// calls its handler on whichever dispatch thread is free.
    texts: Arc<Mutex<TextCache>>,
    /// Environment variables an exec event keeps (`process.env_vars`):
    /// names, or prefixes ending in `*`.
    env_allow: Arc<[String]>,
}

/// The environment variables kept by default: library injection, runtime
/// flags that turn an app into a script host, proxies.
pub const DEFAULT_ENV_VARS: [&str; 13] = [
    "DYLD_*",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "ELECTRON_RUN_AS_NODE",
    "NODE_OPTIONS",
    "PYTHONPATH",
    "PERL5OPT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// The entries of `env` (`NAME=value`) whose name `allow` lists (names,
/// or prefixes ending in `*`), in order.
pub fn allowed_env(allow: &[String], env: Vec<String>) -> Vec<Text> {
    env.into_iter()
        .filter(|kv| {
            let name = kv.split_once('=').map_or(kv.as_str(), |(n, _)| n);
            allow.iter().any(|a| match a.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == a,
            })
        })
        .map(Text::from)
        .collect()
}

/// [`DEFAULT_ENV_VARS`] as the configuration holds them.
pub fn default_env_vars() -> Vec<String> {
    DEFAULT_ENV_VARS.iter().map(|s| s.to_string()).collect()
}

impl MapContext {
    /// A macOS host; `boot` separates boots when the source knows it
    /// (pidversion restarts at boot).
    pub fn macos(
        host_id: &str,
        host_name: Option<&str>,
        os_version: Option<&str>,
        boot: Option<&str>,
    ) -> MapContext {
        let entity_prefix = match boot {
            Some(b) if !b.is_empty() => format!("{host_id}-{b}"),
            _ => host_id.to_string(),
        };
        MapContext {
            host: Host {
                id: Some(host_id.into()),
                name: host_name.map(Into::into),
                os: Os {
                    os_type: Some("macos".into()),
                    family: Some("macos".into()),
                    version: os_version.map(Into::into),
                },
            }
            .leaked(),
            entity_prefix,
            texts: Arc::new(Mutex::new(TextCache::new(SHARED_TEXTS))),
            env_allow: default_env_vars().into(),
        }
    }

    /// Keeps these environment variables (names, or prefixes ending in
    /// `*`) instead of [`DEFAULT_ENV_VARS`].
    pub fn with_env_vars(mut self, names: &[String]) -> MapContext {
        self.env_allow = names.iter().cloned().collect();
        self
    }

    /// The allowed `NAME=value` entries of an environment.
    fn allowed_env(&self, env: Vec<String>) -> Vec<Text> {
        allowed_env(&self.env_allow, env)
    }

    /// The shared strings, for one event's worth of lookups.
    fn texts(&self) -> MutexGuard<'_, TextCache> {
        self.texts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn entity_id(&self, token: &AuditToken) -> String {
        format!("{}-{}-{}", self.entity_prefix, token.pid, token.pidversion)
    }
}

/// Why a message produced no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// An event type without a mapping (the name, e.g. `"mmap"`).
    Unmapped(&'static str),
    /// `close` of a file that was not modified: pure noise for detection.
    CloseUnmodified,
}

impl Skip {
    pub fn reason(self) -> &'static str {
        match self {
            Skip::Unmapped(name) => name,
            Skip::CloseUnmodified => "close_unmodified",
        }
    }
}

/// Maps one message. Strings are moved, not copied, into the event.
pub fn to_event(msg: EsMessage, ctx: &MapContext) -> Result<Event, Skip> {
    let EsMessage {
        time_ns,
        event_type,
        process,
        event,
        ..
    } = msg;
    let mut e = Event {
        timestamp_ns: time_ns,
        host: ctx.host.clone(),
        ..Event::default()
    };
    match event {
        EsEvent::Exec {
            target,
            args,
            cwd,
            env,
        } => {
            info(&mut e, Category::Process, vec![EventType::Start], "exec");
            e.user = user_of(&target, ctx);
            process_extras(&mut e, &target, ctx);
            let env = ctx.allowed_env(env);
            if !env.is_empty() {
                e.extra.insert("process.env_vars", ExtraValue::List(env));
            }
            let mut p = process_of(target, ctx);
            if !args.is_empty() {
                p.command_line = Some(args.join(" ").into());
            }
            p.args = args.into_iter().map(Text::from).collect();
            p.working_directory = cwd.map(Into::into);
            e.process = p;
        }
        EsEvent::Fork { child } => {
            info(&mut e, Category::Process, vec![EventType::Start], "fork");
            e.user = user_of(&child, ctx);
            process_extras(&mut e, &child, ctx);
            let mut p = process_of(child, ctx);
            // The forking process is the parent, and ES gives all of it.
            p.parent = Some(Arc::new(Process {
                parent: None,
                ..process_of(process, ctx)
            }));
            e.process = p;
        }
        EsEvent::Exit { stat } => {
            info(&mut e, Category::Process, vec![EventType::End], "exit");
            e.user = user_of(&process, ctx);
            process_extras(&mut e, &process, ctx);
            e.process = process_of(process, ctx);
            e.process.exit_code = Some(exit_code_from_status(stat));
        }
        EsEvent::Create { path } => {
            file_event(&mut e, process, ctx, EventType::Creation, "creation", path)
        }
        EsEvent::Close {
            modified: false, ..
        } => return Err(Skip::CloseUnmodified),
        EsEvent::Write { path }
        | EsEvent::Close {
            path,
            modified: true,
        } => file_event(
            &mut e,
            process,
            ctx,
            EventType::Change,
            "modification",
            path,
        ),
        EsEvent::Rename {
            source,
            destination,
        } => {
            file_event(
                &mut e,
                process,
                ctx,
                EventType::Change,
                "rename",
                destination,
            );
            // The model has no file.Ext.original.path; the old path rides in
            // target_path so it is not lost.
            if let Some(f) = e.file.as_mut() {
                f.target_path = Some(source.into());
            }
        }
        EsEvent::Unlink { path } => {
            file_event(&mut e, process, ctx, EventType::Deletion, "deletion", path)
        }
        EsEvent::UipcConnect { path, .. } => {
            // No `start` type on purpose: rules written for IP flows
            // (`network where event.type == "start"`) must not fire on a
            // process talking to a local daemon's socket.
            info(
                &mut e,
                Category::Network,
                vec![EventType::Connection],
                "uipc_connect",
            );
            e.user = user_of(&process, ctx);
            e.process = process_of(process, ctx);
            e.file = Some(File::from_path(&path));
            e.network = Some(Network {
                transport: None,
                direction: Some(Text::from_static("internal")),
            });
        }
        EsEvent::Authentication {
            success,
            kind,
            user_name,
            user_id,
        } => {
            let action = match kind {
                0 => "authentication_od",
                1 => "authentication_touchid",
                2 => "authentication_token",
                3 => "authentication_auto_unlock",
                _ => "authentication",
            };
            info(
                &mut e,
                Category::Authentication,
                vec![EventType::Info],
                action,
            );
            e.event.outcome = Some(outcome(success));
            e.process = process_of(process, ctx);
            e.user = User {
                id: user_id.map(|u| u.to_string().into()),
                name: user_name.map(Into::into),
            };
        }
        EsEvent::LoginLogin {
            success,
            user_name,
            user_id,
        } => {
            info(
                &mut e,
                Category::Authentication,
                vec![EventType::Start],
                "login_login",
            );
            e.event.outcome = Some(outcome(success));
            e.process = process_of(process, ctx);
            e.user = User {
                id: user_id.map(|u| u.to_string().into()),
                name: user_name.map(Into::into),
            };
        }
        EsEvent::LoginLogout { user_name, user_id } => {
            info(
                &mut e,
                Category::Session,
                vec![EventType::End],
                "login_logout",
            );
            e.process = process_of(process, ctx);
            e.user = User {
                id: user_id.map(|u| u.to_string().into()),
                name: user_name.map(Into::into),
            };
        }
        EsEvent::OpensshLogin {
            success,
            user_name,
            user_id,
            source_address,
        } => {
            info(
                &mut e,
                Category::Authentication,
                vec![EventType::Start],
                "openssh_login",
            );
            e.event.outcome = Some(outcome(success));
            e.process = process_of(process, ctx);
            e.user = User {
                id: user_id.map(|u| u.to_string().into()),
                name: user_name.map(Into::into),
            };
            e.source = source_address
                .and_then(|a| a.parse().ok())
                .map(|ip| Endpoint {
                    ip: Some(ip),
                    port: None,
                });
        }
        EsEvent::LwSession { kind, user_name } => {
            let (types, action) = match kind {
                LwSession::Login => (vec![EventType::Start], "lw_session_login"),
                LwSession::Logout => (vec![EventType::End], "lw_session_logout"),
                LwSession::Lock => (vec![EventType::Change], "lw_session_lock"),
                LwSession::Unlock => (vec![EventType::Change], "lw_session_unlock"),
            };
            info(&mut e, Category::Session, types, action);
            e.process = process_of(process, ctx);
            e.user = User {
                id: None,
                name: user_name.map(Into::into),
            };
        }
        EsEvent::BtmLaunchItemAdd {
            instigator,
            item_url,
            app_url,
            executable_path,
            item_type,
            uid,
        } => {
            let action = match item_type {
                0 => "btm_launch_item_add_user_item",
                1 => "btm_launch_item_add_app",
                2 => "btm_launch_item_add_login_item",
                3 => "btm_launch_item_add_agent",
                4 => "btm_launch_item_add_daemon",
                _ => "btm_launch_item_add",
            };
            info(
                &mut e,
                Category::Configuration,
                vec![EventType::Creation],
                action,
            );
            // The instigator registered the item; the message's own process
            // is the BTM daemon reporting it.
            e.process = process_of(instigator.unwrap_or(process), ctx);
            e.user = User {
                id: uid.map(|u| u.to_string().into()),
                name: None,
            };
            let mut f = File::from_path(&resolve_btm_url(&item_url, app_url.as_deref()));
            f.target_path = executable_path
                .map(|x| resolve_btm_url(&x, app_url.as_deref()))
                .map(Into::into);
            e.file = Some(f);
        }
        EsEvent::Unmapped => return Err(Skip::Unmapped(event_type_name(event_type))),
    }
    Ok(e)
}

/// What ES says of a process beyond the typed fields, as Elastic Defend
/// names it: `process.code_signature.exists`, and
/// `process.Ext.effective_parent.{pid, entity_id}` from the responsible
/// process when it is another process (the [`ProcessCache`] names its
/// executable).
fn process_extras(e: &mut Event, p: &EsProcess, ctx: &MapContext) {
    // Signed at all (ad hoc too), as Elastic Defend's `exists`: the
    // kernel's flag, where a signing id alone would also name ad hoc
    // signatures of modified code.
    if p.codesigning_flags != 0 {
        e.extra.insert(
            "process.code_signature.exists",
            ExtraValue::Bool(p.codesigning_flags & CS_SIGNED != 0),
        );
    }
    let Some(r) = p.responsible_token else {
        return;
    };
    if (r.pid, r.pidversion) == (p.token.pid, p.token.pidversion) {
        return;
    }
    e.extra.insert(
        "process.Ext.effective_parent.pid",
        ExtraValue::Int(i64::from(r.pid)),
    );
    e.extra.insert(
        "process.Ext.effective_parent.entity_id",
        ExtraValue::Str(ctx.entity_id(&r).into()),
    );
}

fn info(e: &mut Event, category: Category, types: Vec<EventType>, action: &'static str) {
    e.event = EventInfo {
        category,
        types,
        action: Some(Text::from_static(action)),
        ..EventInfo::default()
    };
}

fn outcome(success: bool) -> Text {
    Text::from_static(if success { "success" } else { "failure" })
}

/// `user.*` of the process acting: its effective uid.
fn user_of(p: &EsProcess, ctx: &MapContext) -> User {
    User {
        id: Some(ctx.texts().get(&p.token.euid.to_string())),
        name: None,
    }
}

/// Distinct strings a [`MapContext`] shares at most (~1 MB).
const SHARED_TEXTS: usize = 8192;

fn file_event(
    e: &mut Event,
    process: EsProcess,
    ctx: &MapContext,
    ty: EventType,
    action: &'static str,
    path: String,
) {
    info(e, Category::File, vec![ty], action);
    e.user = user_of(&process, ctx);
    process_extras(e, &process, ctx);
    e.process = process_of(process, ctx);
    e.file = Some(File::from_path(&path));
}

/// BTM reports item and executable paths as `file://` URLs or relative to
/// the app bundle's URL.
fn resolve_btm_url(url: &str, app_url: Option<&str>) -> String {
    let strip = |u: &str| u.strip_prefix("file://").unwrap_or(u).to_string();
    if url.starts_with('/') || url.starts_with("file://") {
        return strip(url);
    }
    match app_url {
        Some(app) if !app.is_empty() => {
            let base = strip(app);
            if base.ends_with('/') {
                format!("{base}{url}")
            } else {
                format!("{base}/{url}")
            }
        }
        _ => url.to_string(),
    }
}

/// `process.*` from an `es_process_t`, with `parent.pid`/`parent.entity_id`
/// from its parent audit token (names come from a process table later).
pub fn process_of(p: EsProcess, ctx: &MapContext) -> Process {
    let mut texts = ctx.texts();
    let parent = match p.parent_token {
        Some(t) => Some(Process {
            pid: u32::try_from(t.pid).ok(),
            entity_id: Some(texts.get(&ctx.entity_id(&t))),
            ..Process::default()
        }),
        None => u32::try_from(p.ppid)
            .ok()
            .filter(|&pp| pp > 0)
            .map(|pp| Process {
                pid: Some(pp),
                ..Process::default()
            }),
    };
    let trusted = code_signature_trusted(&p);
    Process {
        pid: u32::try_from(p.token.pid).ok(),
        entity_id: Some(texts.get(&ctx.entity_id(&p.token))),
        name: Some(texts.get(basename(&p.executable))),
        code_signature: CodeSignature {
            signing_id: p
                .signing_id
                .filter(|s| !s.is_empty())
                .map(|s| texts.get(&s)),
            team_id: p.team_id.filter(|s| !s.is_empty()).map(|s| texts.get(&s)),
            trusted: Some(trusted),
            platform_binary: Some(p.is_platform_binary),
        },
        hash: Hash {
            cdhash: p
                .cdhash
                .filter(|s| !s.is_empty() && s.bytes().any(|b| b != b'0'))
                .map(|s| texts.get(&s)),
            sha256: None,
        },
        executable: Some(texts.get(&p.executable)),
        parent: parent.map(Arc::new),
        ..Process::default()
    }
}

/// `CS_VALID` from `<kern/cs_blobs.h>`.
pub const CS_VALID: u32 = 0x0000_0001;
/// `CS_SIGNED` (xnu `cs_blobs.h`): the code carries a signature.
pub const CS_SIGNED: u32 = 0x2000_0000;

/// ES says whether the signature is valid, not who signed it. vigil calls a
/// process trusted when its signature is valid and it is Apple's or has a
/// Developer ID team: ad-hoc and unsigned code is not.
fn code_signature_trusted(p: &EsProcess) -> bool {
    p.codesigning_flags & CS_VALID != 0
        && (p.is_platform_binary || p.team_id.as_deref().is_some_and(|t| !t.is_empty()))
}

pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// ECS-style exit code from a wait status: the exit status, or 128 + signal
/// for a process killed by a signal (as shells report it).
pub fn exit_code_from_status(stat: i32) -> i32 {
    let status = stat as u32;
    let sig = status & 0x7f;
    if sig == 0 {
        ((status >> 8) & 0xff) as i32
    } else {
        128 + sig as i32
    }
}

/// The name eslogger uses for an `es_event_type_t` (NOTIFY events), e.g.
/// `"exec"`; `"unknown"` past the table.
pub fn event_type_name(t: u32) -> &'static str {
    EVENT_TYPE_NAMES
        .iter()
        .find(|(n, _)| *n == t)
        .map_or("unknown", |(_, name)| name)
}

/// The NOTIFY event types of `<EndpointSecurity/ESTypes.h>` up to macOS 15.
const EVENT_TYPE_NAMES: &[(u32, &str)] = &[
    (9, "exec"),
    (10, "open"),
    (11, "fork"),
    (12, "close"),
    (13, "create"),
    (14, "exchangedata"),
    (15, "exit"),
    (16, "get_task"),
    (17, "kextload"),
    (18, "kextunload"),
    (19, "link"),
    (20, "mmap"),
    (21, "mprotect"),
    (22, "mount"),
    (23, "unmount"),
    (24, "iokit_open"),
    (25, "rename"),
    (26, "setattrlist"),
    (27, "setextattr"),
    (28, "setflags"),
    (29, "setmode"),
    (30, "setowner"),
    (31, "signal"),
    (32, "unlink"),
    (33, "write"),
    (35, "file_provider_materialize"),
    (37, "file_provider_update"),
    (39, "readlink"),
    (41, "truncate"),
    (43, "lookup"),
    (51, "chdir"),
    (53, "getattrlist"),
    (54, "stat"),
    (55, "access"),
    (57, "chroot"),
    (59, "utimes"),
    (61, "clone"),
    (62, "fcntl"),
    (64, "getextattr"),
    (66, "listextattr"),
    (68, "readdir"),
    (70, "deleteextattr"),
    (72, "fsgetpath"),
    (73, "dup"),
    (75, "settime"),
    (76, "uipc_bind"),
    (78, "uipc_connect"),
    (82, "setacl"),
    (83, "pty_grant"),
    (84, "pty_close"),
    (86, "proc_check"),
    (89, "searchfs"),
    (93, "proc_suspend_resume"),
    (94, "cs_invalidated"),
    (95, "get_task_name"),
    (96, "trace"),
    (97, "remote_thread_create"),
    (99, "remount"),
    (101, "get_task_read"),
    (102, "get_task_inspect"),
    (103, "setuid"),
    (104, "setgid"),
    (105, "seteuid"),
    (106, "setegid"),
    (107, "setreuid"),
    (108, "setregid"),
    (110, "copyfile"),
    (111, "authentication"),
    (112, "xp_malware_detected"),
    (113, "xp_malware_remediated"),
    (114, "lw_session_login"),
    (115, "lw_session_logout"),
    (116, "lw_session_lock"),
    (117, "lw_session_unlock"),
    (118, "screensharing_attach"),
    (119, "screensharing_detach"),
    (120, "openssh_login"),
    (121, "openssh_logout"),
    (122, "login_login"),
    (123, "login_logout"),
    (124, "btm_launch_item_add"),
    (125, "btm_launch_item_remove"),
    (126, "profile_add"),
    (127, "profile_remove"),
    (128, "su"),
    (129, "authorization_petition"),
    (130, "authorization_judgement"),
    (131, "sudo"),
    (132, "od_group_add"),
    (133, "od_group_remove"),
    (134, "od_group_set"),
    (135, "od_modify_password"),
    (136, "od_disable_user"),
    (137, "od_enable_user"),
    (138, "od_attribute_value_add"),
    (139, "od_attribute_value_remove"),
    (140, "od_attribute_set"),
    (141, "od_create_user"),
    (142, "od_create_group"),
    (143, "od_delete_user"),
    (144, "od_delete_group"),
    (145, "xpc_connect"),
    (146, "gatekeeper_user_override"),
    (147, "tcc_modify"),
];

/// What to do about an `es_new_client` failure, by the ES result's C name
/// (what `NewClientError` displays), so the message names the ES error and
/// the fix.
pub fn new_client_error_hint(es_error: &str) -> &'static str {
    match es_error {
        "ES_NEW_CLIENT_RESULT_ERR_NOT_ENTITLED" => {
            "the binary is not signed with the com.apple.developer.endpoint-security.client \
             entitlement (sign it with packaging/macos/vigil.entitlements and a provisioning \
             profile that grants it)"
        }
        "ES_NEW_CLIENT_RESULT_ERR_NOT_PERMITTED" => {
            "TCC has not approved this process: grant it Full Disk Access (System Settings > \
             Privacy & Security > Full Disk Access, or the PPPC profile \
             packaging/macos/vigil-pppc.mobileconfig via MDM)"
        }
        "ES_NEW_CLIENT_RESULT_ERR_NOT_PRIVILEGED" => {
            "Endpoint Security clients must run as root (run vigil from its LaunchDaemon or \
             with sudo)"
        }
        "ES_NEW_CLIENT_RESULT_ERR_TOO_MANY_CLIENTS" => {
            "the system limit of Endpoint Security clients is reached: stop another ES client \
             (eslogger, another security agent) and retry"
        }
        "ES_NEW_CLIENT_RESULT_ERR_INVALID_ARGUMENT" => {
            "invalid argument to es_new_client (a vigil bug)"
        }
        "ES_NEW_CLIENT_RESULT_ERR_INTERNAL" => {
            "Endpoint Security could not reach its daemon (endpointsecurityd); retry, or reboot"
        }
        _ => "unexpected Endpoint Security error",
    }
}

/// ES numbers every message it delivers to a client (`global_seq_num`); a
/// jump means the kernel dropped messages because the client fell behind.
/// A number that goes backwards is a new client (or a new eslogger run):
/// counting restarts there.
#[derive(Debug, Default, Clone)]
pub struct SeqGapCounter {
    last: Option<u64>,
    /// Messages the kernel dropped, summed over all gaps.
    pub dropped: u64,
    /// Times the sequence restarted.
    pub restarts: u64,
}

impl SeqGapCounter {
    /// Records one message; returns how many were dropped just before it.
    pub fn observe(&mut self, seq: u64) -> u64 {
        let gap = match self.last {
            Some(last) if seq > last => seq - last - 1,
            Some(_) => {
                self.restarts += 1;
                0
            }
            None => 0,
        };
        self.last = Some(seq);
        self.dropped += gap;
        gap
    }
}

/// How many processes the cache keeps before it forgets the oldest half
/// (exits remove entries, so it only fills when exits are missed).
const CACHE_MAX: usize = 32_768;

#[derive(Debug, Clone)]
struct Cached {
    pidversion: i32,
    executable: String,
    args: Vec<String>,
    touched: u64,
}

/// What a source without the pipeline's process table knows about live
/// processes, learnt from every message's acting process, exec targets and
/// fork children: enough to name `process.parent` in replayed eslogger
/// output, where the parent usually appears only as an audit token.
#[derive(Debug, Default)]
pub struct ProcessCache {
    by_pid: HashMap<i32, Cached>,
    clock: u64,
}

impl ProcessCache {
    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pid.is_empty()
    }

    fn learn(&mut self, p: &EsProcess, args: Option<&[String]>) {
        self.clock += 1;
        let touched = self.clock;
        match self.by_pid.get_mut(&p.token.pid) {
            Some(c) if c.pidversion == p.token.pidversion => {
                c.touched = touched;
                if let Some(a) = args {
                    c.args = a.to_vec();
                }
            }
            _ => {
                self.by_pid.insert(
                    p.token.pid,
                    Cached {
                        pidversion: p.token.pidversion,
                        executable: p.executable.clone(),
                        args: args.map(<[String]>::to_vec).unwrap_or_default(),
                        touched,
                    },
                );
                if self.by_pid.len() > CACHE_MAX {
                    let keep_after = self.clock.saturating_sub((CACHE_MAX / 2) as u64);
                    self.by_pid.retain(|_, c| c.touched > keep_after);
                }
            }
        }
    }

    /// Learns from a message before it is mapped.
    pub fn observe(&mut self, msg: &EsMessage) {
        self.learn(&msg.process, None);
        match &msg.event {
            EsEvent::Exec { target, args, .. } => self.learn(target, Some(args)),
            EsEvent::Fork { child } => self.learn(child, None),
            _ => {}
        }
    }

    /// Fills `process.parent` name, executable and args when the parent is
    /// known under the same pidversion (or by pid alone when the event has
    /// no parent token).
    pub fn enrich(&self, e: &mut Event) {
        self.enrich_effective_parent(e);
        // Read through the shared form; copied (if shared) only to change.
        let Some(shared) = e.process.parent.as_mut() else {
            return;
        };
        let parent = &**shared;
        if parent.executable.is_some() {
            return;
        }
        let Some(pid) = parent.pid.and_then(|p| i32::try_from(p).ok()) else {
            return;
        };
        let Some(c) = self.by_pid.get(&pid) else {
            return;
        };
        let same_image = parent
            .entity_id
            .as_deref()
            .is_none_or(|id| id.ends_with(&format!("-{pid}-{}", c.pidversion)));
        if !same_image {
            return;
        }
        let parent = Arc::make_mut(shared);
        parent.name = Some(basename(&c.executable).into());
        parent.executable = Some(c.executable.as_str().into());
        if !c.args.is_empty() {
            parent.command_line = Some(c.args.join(" ").into());
            parent.args = c.args.iter().map(|a| Text::from(a.as_str())).collect();
        }
    }

    /// Names the responsible process (`process.Ext.effective_parent.*`)
    /// when it is known under the same pidversion.
    pub fn enrich_effective_parent(&self, e: &mut Event) {
        let Some(ExtraValue::Int(pid)) = e.extra.get("process.Ext.effective_parent.pid") else {
            return;
        };
        if e.extra
            .get("process.Ext.effective_parent.executable")
            .is_some()
        {
            return;
        }
        let Some(c) = i32::try_from(*pid).ok().and_then(|p| self.by_pid.get(&p)) else {
            return;
        };
        let same_image = match e.extra.get("process.Ext.effective_parent.entity_id") {
            Some(ExtraValue::Str(id)) => id.ends_with(&format!("-{pid}-{}", c.pidversion)),
            _ => true,
        };
        if same_image {
            let (exe, name) = (c.executable.as_str(), basename(&c.executable));
            e.extra.insert(
                "process.Ext.effective_parent.executable",
                ExtraValue::Str(exe.into()),
            );
            e.extra.insert(
                "process.Ext.effective_parent.name",
                ExtraValue::Str(name.into()),
            );
        }
    }

    /// Forgets a process that exited.
    pub fn forget(&mut self, token: &AuditToken) {
        if self
            .by_pid
            .get(&token.pid)
            .is_some_and(|c| c.pidversion == token.pidversion)
        {
            self.by_pid.remove(&token.pid);
        }
    }
}

/// One connected socket seen by a poll (libproc on macOS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketConn {
    pub pid: i32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `"tcp"` or `"udp"`.
    pub transport: &'static str,
}

/// Remembers which connections were already reported, so each poll yields
/// only new ones. The first poll is the baseline: what was open before the
/// agent started is not "new".
#[derive(Debug, Default)]
pub struct ConnTracker {
    seen: HashSet<SocketConn>,
    primed: bool,
}

impl ConnTracker {
    /// Connections in `now` that the previous full poll did not have.
    /// Connections gone from `now` are forgotten, so a reused 4-tuple is
    /// reported again.
    pub fn diff_full(&mut self, now: Vec<SocketConn>) -> Vec<SocketConn> {
        let now: HashSet<SocketConn> = now.into_iter().collect();
        let fresh = if self.primed {
            now.difference(&self.seen).copied().collect()
        } else {
            Vec::new()
        };
        self.seen = now;
        self.primed = true;
        fresh
    }

    /// A partial poll (one process, right after its exec): reports what is
    /// new and remembers it, forgetting nothing.
    pub fn diff_partial(&mut self, now: Vec<SocketConn>) -> Vec<SocketConn> {
        now.into_iter().filter(|c| self.seen.insert(*c)).collect()
    }
}

/// A `network` start event for a polled connection by `process` (already
/// resolved by the caller: pid, entity id, executable, parent).
pub fn network_event(conn: &SocketConn, process: Process, ctx: &MapContext, time_ns: i64) -> Event {
    let mut e = Event {
        timestamp_ns: time_ns,
        host: ctx.host.clone(),
        process,
        ..Event::default()
    };
    info(
        &mut e,
        Category::Network,
        vec![EventType::Start, EventType::Connection],
        "connection_attempted",
    );
    e.source = Some(Endpoint {
        ip: Some(conn.local.ip()),
        port: Some(conn.local.port()),
    });
    e.destination = Some(Endpoint {
        ip: Some(conn.remote.ip()),
        port: Some(conn.remote.port()),
    });
    e.network = Some(Network {
        transport: Some(Text::from_static(conn.transport)),
        direction: Some(Text::from_static("egress")),
    });
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MapContext {
        MapContext::macos("mac1", None, None, None)
    }

    fn token(pid: i32, pidversion: i32) -> AuditToken {
        AuditToken {
            euid: 501,
            pid,
            pidversion,
            ..AuditToken::default()
        }
    }

    fn proc_(pid: i32, pv: i32, exe: &str, parent: Option<(i32, i32)>) -> EsProcess {
        EsProcess {
            token: token(pid, pv),
            ppid: parent.map_or(1, |p| p.0),
            parent_token: parent.map(|(p, v)| token(p, v)),
            executable: exe.to_string(),
            codesigning_flags: CS_VALID,
            is_platform_binary: true,
            ..EsProcess::default()
        }
    }

    fn msg(process: EsProcess, event: EsEvent, event_type: u32) -> EsMessage {
        EsMessage {
            version: 8,
            time_ns: 1_700_000_000_000_000_000,
            event_type,
            global_seq_num: Some(1),
            process,
            event,
        }
    }

    #[test]
    fn events_of_one_process_share_its_strings() {
        let ctx = ctx();
        let write = |path: &str| {
            let m = msg(
                proc_(300, 7, "/usr/bin/python3", Some((100, 5))),
                EsEvent::Write { path: path.into() },
                33,
            );
            to_event(m, &ctx).unwrap()
        };
        let (a, b) = (write("/tmp/a"), write("/tmp/b"));
        let addr = |t: &Option<Text>| t.as_ref().map(Text::addr).unwrap();
        for (x, y) in [
            (&a.process.executable, &b.process.executable),
            (&a.process.name, &b.process.name),
            (&a.process.entity_id, &b.process.entity_id),
            (&a.user.id, &b.user.id),
            (&a.event.action, &b.event.action),
        ] {
            assert_eq!(addr(x), addr(y), "{x:?} is copied per event");
        }
        assert_eq!(b.process.executable.as_deref(), Some("/usr/bin/python3"));
    }

    #[test]
    fn exec_maps_the_target_with_parent_from_its_token() {
        let m = msg(
            proc_(200, 10, "/usr/sbin/installer", Some((100, 5))),
            EsEvent::Exec {
                target: proc_(200, 11, "/bin/sh", Some((100, 5))),
                args: vec!["/bin/sh".into(), "-c".into(), "curl http://x".into()],
                cwd: Some("/tmp".into()),
                env: Vec::new(),
            },
            9,
        );
        let e = to_event(m, &ctx()).unwrap();
        assert_eq!(e.event.category, Category::Process);
        assert_eq!(e.event.types, [EventType::Start]);
        assert_eq!(e.event.action.as_deref(), Some("exec"));
        assert_eq!(e.process.pid, Some(200));
        assert_eq!(e.process.entity_id.as_deref(), Some("mac1-200-11"));
        assert_eq!(e.process.name.as_deref(), Some("sh"));
        assert_eq!(
            e.process.command_line.as_deref(),
            Some("/bin/sh -c curl http://x")
        );
        assert_eq!(e.process.working_directory.as_deref(), Some("/tmp"));
        let parent = e.process.parent.as_deref().unwrap();
        assert_eq!(parent.entity_id.as_deref(), Some("mac1-100-5"));
        assert_eq!(parent.pid, Some(100));
        assert_eq!(e.user.id.as_deref(), Some("501"));
        assert_eq!(e.host.os.os_type.as_deref(), Some("macos"));
    }

    #[test]
    fn fork_parent_is_the_forking_process() {
        let m = msg(
            proc_(100, 5, "/usr/sbin/installer", Some((1, 1))),
            EsEvent::Fork {
                child: proc_(200, 10, "/usr/sbin/installer", Some((100, 5))),
            },
            11,
        );
        let e = to_event(m, &ctx()).unwrap();
        assert_eq!(e.event.action.as_deref(), Some("fork"));
        assert_eq!(e.process.entity_id.as_deref(), Some("mac1-200-10"));
        let parent = e.process.parent.as_deref().unwrap();
        assert_eq!(parent.entity_id.as_deref(), Some("mac1-100-5"));
        assert_eq!(parent.name.as_deref(), Some("installer"));
        assert!(parent.parent.is_none());
    }

    #[test]
    fn exit_codes_follow_wait_status() {
        assert_eq!(exit_code_from_status(0), 0);
        assert_eq!(exit_code_from_status(3 << 8), 3);
        assert_eq!(exit_code_from_status(9), 137);
        let m = msg(
            proc_(5, 1, "/bin/ls", None),
            EsEvent::Exit { stat: 256 },
            15,
        );
        let e = to_event(m, &ctx()).unwrap();
        assert_eq!(e.event.types, [EventType::End]);
        assert_eq!(e.process.exit_code, Some(1));
        assert_eq!(e.process.parent.as_deref().unwrap().pid, Some(1));
    }

    #[test]
    fn file_events_and_unmodified_close() {
        let p = || proc_(7, 1, "/bin/cp", None);
        let e = to_event(
            msg(
                p(),
                EsEvent::Create {
                    path: "/Users/a/Downloads/x.pkg".into(),
                },
                13,
            ),
            &ctx(),
        )
        .unwrap();
        assert_eq!(e.event.types, [EventType::Creation]);
        let f = e.file.unwrap();
        assert_eq!(f.name.as_deref(), Some("x.pkg"));
        assert_eq!(f.extension.as_deref(), Some("pkg"));
        let e = to_event(
            msg(
                p(),
                EsEvent::Rename {
                    source: "/tmp/a".into(),
                    destination: "/tmp/b".into(),
                },
                25,
            ),
            &ctx(),
        )
        .unwrap();
        let f = e.file.unwrap();
        assert_eq!(
            (f.path.as_deref(), f.target_path.as_deref()),
            (Some("/tmp/b"), Some("/tmp/a"))
        );
        assert_eq!(
            to_event(
                msg(
                    p(),
                    EsEvent::Close {
                        path: "/a".into(),
                        modified: false
                    },
                    12
                ),
                &ctx()
            ),
            Err(Skip::CloseUnmodified)
        );
        let e = to_event(
            msg(
                p(),
                EsEvent::Close {
                    path: "/a".into(),
                    modified: true,
                },
                12,
            ),
            &ctx(),
        )
        .unwrap();
        assert_eq!(e.event.types, [EventType::Change]);
        let e = to_event(msg(p(), EsEvent::Unlink { path: "/a".into() }, 32), &ctx()).unwrap();
        assert_eq!(e.event.types, [EventType::Deletion]);
    }

    #[test]
    fn uipc_connect_is_not_a_network_start() {
        let e = to_event(
            msg(
                proc_(7, 1, "/usr/bin/curl", None),
                EsEvent::UipcConnect {
                    path: "/private/var/run/mDNSResponder".into(),
                    domain: 1,
                    sock_type: 1,
                    protocol: 0,
                },
                78,
            ),
            &ctx(),
        )
        .unwrap();
        assert_eq!(e.event.category, Category::Network);
        assert!(!e.has_type(EventType::Start));
    }

    #[test]
    fn btm_item_paths_are_resolved_against_the_app() {
        let e = to_event(
            msg(
                proc_(300, 1, "/System/Library/PrivateFrameworks/BackgroundTaskManagement.framework/Resources/backgroundtaskmanagementd", None),
                EsEvent::BtmLaunchItemAdd {
                    instigator: None,
                    item_url: "Contents/Library/LaunchDaemons/x.plist".into(),
                    app_url: Some("file:///Applications/X.app/".into()),
                    executable_path: Some("Contents/Resources/helper".into()),
                    item_type: 4,
                    uid: Some(502),
                },
                124,
            ),
            &ctx(),
        )
        .unwrap();
        assert_eq!(e.event.category, Category::Configuration);
        let f = e.file.unwrap();
        assert_eq!(
            f.path.as_deref(),
            Some("/Applications/X.app/Contents/Library/LaunchDaemons/x.plist")
        );
        assert_eq!(
            f.target_path.as_deref(),
            Some("/Applications/X.app/Contents/Resources/helper")
        );
        assert_eq!(e.user.id.as_deref(), Some("502"));
    }

    #[test]
    fn unmapped_types_are_named() {
        let r = to_event(
            msg(proc_(1, 1, "/sbin/launchd", None), EsEvent::Unmapped, 20),
            &ctx(),
        );
        assert_eq!(r, Err(Skip::Unmapped("mmap")));
        assert_eq!(event_type_name(9999), "unknown");
    }

    #[test]
    fn trusted_needs_valid_signature_and_apple_or_team() {
        let mut p = proc_(1, 1, "/x", None);
        assert!(code_signature_trusted(&p));
        p.is_platform_binary = false;
        assert!(!code_signature_trusted(&p), "ad-hoc");
        p.team_id = Some("ABCDE12345".into());
        assert!(code_signature_trusted(&p));
        p.codesigning_flags = 0;
        assert!(!code_signature_trusted(&p));
    }

    #[test]
    fn new_client_errors_name_the_fix() {
        assert!(
            new_client_error_hint("ES_NEW_CLIENT_RESULT_ERR_NOT_ENTITLED").contains("entitlement")
        );
        assert!(
            new_client_error_hint("ES_NEW_CLIENT_RESULT_ERR_NOT_PERMITTED")
                .contains("Full Disk Access")
        );
        assert!(new_client_error_hint("ES_NEW_CLIENT_RESULT_ERR_NOT_PRIVILEGED").contains("root"));
        assert!(
            new_client_error_hint("ES_NEW_CLIENT_RESULT_ERR_TOO_MANY_CLIENTS").contains("another")
        );
    }

    #[test]
    fn seq_gaps_count_kernel_drops_and_restarts() {
        let mut g = SeqGapCounter::default();
        assert_eq!(g.observe(10), 0);
        assert_eq!(g.observe(11), 0);
        assert_eq!(g.observe(15), 3);
        assert_eq!(g.observe(2), 0);
        assert_eq!(g.observe(3), 0);
        assert_eq!((g.dropped, g.restarts), (3, 1));
    }

    #[test]
    fn cache_names_parents_of_the_same_image_only() {
        let mut cache = ProcessCache::default();
        let installer = msg(
            proc_(100, 5, "/usr/sbin/installer", Some((1, 1))),
            EsEvent::Fork {
                child: proc_(200, 10, "/usr/sbin/installer", Some((100, 5))),
            },
            11,
        );
        cache.observe(&installer);
        let exec = msg(
            proc_(200, 10, "/usr/sbin/installer", Some((100, 5))),
            EsEvent::Exec {
                target: proc_(200, 11, "/bin/sh", Some((100, 5))),
                args: vec!["sh".into(), "postinstall".into()],
                cwd: None,
                env: Vec::new(),
            },
            9,
        );
        cache.observe(&exec);
        let mut e = to_event(exec, &ctx()).unwrap();
        cache.enrich(&mut e);
        assert_eq!(
            e.process.parent.as_deref().unwrap().name.as_deref(),
            Some("installer")
        );

        // A child of the shell: parent args come from the exec.
        let curl = msg(
            proc_(300, 20, "/bin/sh", Some((200, 11))),
            EsEvent::Exec {
                target: proc_(300, 21, "/usr/bin/curl", Some((200, 11))),
                args: vec!["curl".into()],
                cwd: None,
                env: Vec::new(),
            },
            9,
        );
        cache.observe(&curl);
        let mut e = to_event(curl, &ctx()).unwrap();
        cache.enrich(&mut e);
        let parent = e.process.parent.as_deref().unwrap();
        assert_eq!(parent.name.as_deref(), Some("sh"));
        assert_eq!(parent.command_line.as_deref(), Some("sh postinstall"));

        // Another image of pid 100 is not named after the cached one.
        let mut stranger = to_event(
            msg(
                proc_(400, 1, "/bin/ls", Some((100, 99))),
                EsEvent::Exit { stat: 0 },
                15,
            ),
            &ctx(),
        )
        .unwrap();
        cache.enrich(&mut stranger);
        assert!(stranger.process.parent.as_deref().unwrap().name.is_none());

        cache.forget(&token(300, 21));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn conn_tracker_baselines_then_reports_new_only() {
        let c = |port: u16| SocketConn {
            pid: 9,
            local: SocketAddr::from(([10, 0, 0, 2], port)),
            remote: SocketAddr::from(([1, 1, 1, 1], 443)),
            transport: "tcp",
        };
        let mut t = ConnTracker::default();
        assert!(t.diff_full(vec![c(1000)]).is_empty(), "baseline");
        assert_eq!(t.diff_partial(vec![c(1000), c(1001)]), vec![c(1001)]);
        assert_eq!(t.diff_full(vec![c(1001), c(1002)]), vec![c(1002)]);
        assert_eq!(
            t.diff_full(vec![c(1000)]),
            vec![c(1000)],
            "reused after it closed"
        );
        let e = network_event(&c(5), Process::default(), &ctx(), 7);
        assert_eq!(e.event.types, [EventType::Start, EventType::Connection]);
        assert_eq!(e.destination.unwrap().port, Some(443));
    }

    #[test]
    fn responsible_process_and_allowed_environment() {
        let mut target = proc_(300, 21, "/usr/bin/curl", Some((200, 11)));
        // Slack (pid 77) is responsible for the shell's child.
        target.responsible_token = Some(token(77, 3));
        let exec = msg(
            proc_(300, 20, "/bin/sh", Some((200, 11))),
            EsEvent::Exec {
                target,
                args: vec!["curl".into()],
                cwd: None,
                env: vec![
                    "HOME=/Users/a".into(),
                    "DYLD_INSERT_LIBRARIES=/tmp/x.dylib".into(),
                    "AWS_SECRET_ACCESS_KEY=abc".into(),
                    "NODE_OPTIONS=--require /tmp/x.js".into(),
                ],
            },
            9,
        );
        let mut cache = ProcessCache::default();
        let slack = msg(
            proc_(77, 3, "/Applications/Slack.app/Contents/MacOS/Slack", None),
            EsEvent::Exit { stat: 0 },
            15,
        );
        cache.observe(&slack);
        cache.observe(&exec);
        let mut e = to_event(exec, &ctx()).unwrap();
        cache.enrich(&mut e);
        let get = |k: &str| e.extra.get(k).cloned();
        assert_eq!(
            get("process.Ext.effective_parent.pid"),
            Some(ExtraValue::Int(77))
        );
        assert_eq!(
            get("process.Ext.effective_parent.entity_id"),
            Some(ExtraValue::Str(ctx().entity_id(&token(77, 3)).into()))
        );
        assert_eq!(
            get("process.Ext.effective_parent.name"),
            Some(ExtraValue::Str("Slack".into()))
        );
        // Only the allowed variables; a secret never reaches the event.
        assert_eq!(
            get("process.env_vars"),
            Some(ExtraValue::List(vec![
                "DYLD_INSERT_LIBRARIES=/tmp/x.dylib".into(),
                "NODE_OPTIONS=--require /tmp/x.js".into()
            ]))
        );
        // A process responsible for itself has no effective parent; the
        // kernel's CS_SIGNED says it is signed.
        let mut own = proc_(400, 1, "/bin/zsh", Some((1, 1)));
        own.responsible_token = Some(token(400, 1));
        own.codesigning_flags = CS_VALID | CS_SIGNED;
        let e = to_event(
            msg(
                own.clone(),
                EsEvent::Exec {
                    target: own,
                    args: vec![],
                    cwd: None,
                    env: vec![],
                },
                9,
            ),
            &ctx(),
        )
        .unwrap();
        let keys: Vec<&str> = e.extra.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["process.code_signature.exists"]);
        assert_eq!(
            e.extra.get("process.code_signature.exists"),
            Some(&ExtraValue::Bool(true))
        );
    }
}
