//! `endpoint_sec::Message` → [`EsMessage`]: copies out only the fields
//! [`mapping`](crate::sources::es::mapping) maps. Strings are copied once
//! here and then moved into the event.

use std::ffi::OsStr;
use std::time::UNIX_EPOCH;

use endpoint_sec::{
    AuditToken as EsToken, AuthenticationData, Event as EsEv, EventCreateDestinationFile,
    EventRenameDestinationFile, File, Message, Process,
};

use crate::sources::es::mapping::{AuditToken, EsEvent, EsMessage, EsProcess, LwSession};

fn text(s: &OsStr) -> String {
    s.to_string_lossy().into_owned()
}

fn opt_text(s: &OsStr) -> Option<String> {
    (!s.is_empty()).then(|| text(s))
}

fn path(f: &File<'_>) -> String {
    text(f.path())
}

fn join(dir: &File<'_>, name: &OsStr) -> String {
    let d = path(dir);
    let n = name.to_string_lossy();
    if d.ends_with('/') {
        format!("{d}{n}")
    } else {
        format!("{d}/{n}")
    }
}

pub(crate) fn token(t: &EsToken) -> AuditToken {
    AuditToken {
        auid: t.auid(),
        euid: t.euid(),
        egid: t.egid(),
        ruid: t.ruid(),
        rgid: t.rgid(),
        pid: t.pid(),
        asid: t.asid(),
        pidversion: t.pidversion(),
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0xf) as usize] as char);
    }
    s
}

pub(crate) fn process(p: &Process<'_>) -> EsProcess {
    EsProcess {
        token: token(&p.audit_token()),
        ppid: p.ppid(),
        parent_token: p.parent_audit_token().map(|t| token(&t)),
        responsible_token: p.responsible_audit_token().map(|t| token(&t)),
        executable: path(&p.executable()),
        signing_id: opt_text(p.signing_id()),
        team_id: opt_text(p.team_id()),
        cdhash: Some(hex_upper(&p.cdhash())),
        codesigning_flags: p.codesigning_flags(),
        is_platform_binary: p.is_platform_binary(),
    }
}

/// The message as an [`EsMessage`]; event types vigil does not map become
/// [`EsEvent::Unmapped`] (counted by the caller).
pub(crate) fn message(msg: &Message) -> EsMessage {
    let time_ns = msg
        .time()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let event = msg.event().map_or(EsEvent::Unmapped, |ev| event(&ev));
    EsMessage {
        version: msg.version(),
        time_ns,
        event_type: msg.event_type().0,
        global_seq_num: msg.global_seq_num(),
        process: process(&msg.process()),
        event,
    }
}

fn event(ev: &EsEv<'_>) -> EsEvent {
    match ev {
        EsEv::NotifyExec(x) => EsEvent::Exec {
            target: process(&x.target()),
            args: x.args().map(text).collect(),
            cwd: x.cwd().map(|c| path(&c)),
            env: x.envs().map(text).collect(),
        },
        EsEv::NotifyFork(x) => EsEvent::Fork {
            child: process(&x.child()),
        },
        EsEv::NotifyExit(x) => EsEvent::Exit { stat: x.stat() },
        EsEv::NotifyCreate(x) => match x.destination() {
            Some(EventCreateDestinationFile::ExistingFile { file, .. }) => {
                EsEvent::Create { path: path(&file) }
            }
            Some(EventCreateDestinationFile::NewPath {
                directory,
                filename,
                ..
            }) => EsEvent::Create {
                path: join(&directory, filename),
            },
            _ => EsEvent::Unmapped,
        },
        EsEv::NotifyWrite(x) => EsEvent::Write {
            path: path(&x.target()),
        },
        EsEv::NotifyClose(x) => EsEvent::Close {
            path: path(&x.target()),
            modified: x.modified(),
        },
        EsEv::NotifyRename(x) => {
            let destination = match x.destination() {
                Some(EventRenameDestinationFile::ExistingFile { file, .. }) => path(&file),
                Some(EventRenameDestinationFile::NewPath {
                    directory,
                    filename,
                    ..
                }) => join(&directory, filename),
                _ => return EsEvent::Unmapped,
            };
            EsEvent::Rename {
                source: path(&x.source()),
                destination,
            }
        }
        EsEv::NotifyUnlink(x) => EsEvent::Unlink {
            path: path(&x.target()),
        },
        EsEv::NotifyUipcConnect(x) => EsEvent::UipcConnect {
            path: path(&x.file()),
            domain: x.domain(),
            sock_type: x.type_(),
            protocol: x.protocol(),
        },
        EsEv::NotifyAuthentication(x) => {
            let (user_name, user_id) = match x.data() {
                Some(AuthenticationData::Od(od)) => (opt_text(od.record_name()), None),
                Some(AuthenticationData::TouchId(t)) => (None, t.uid()),
                Some(AuthenticationData::AutoUnlock(a)) => (opt_text(a.username()), None),
                _ => (None, None),
            };
            EsEvent::Authentication {
                success: x.success(),
                kind: x.type_().0 as i32,
                user_name,
                user_id,
            }
        }
        EsEv::NotifyLoginLogin(x) => EsEvent::LoginLogin {
            success: x.success(),
            user_name: opt_text(x.username()),
            user_id: x.uid(),
        },
        EsEv::NotifyLoginLogout(x) => EsEvent::LoginLogout {
            user_name: opt_text(x.username()),
            user_id: Some(x.uid()),
        },
        EsEv::NotifyOpensshLogin(x) => EsEvent::OpensshLogin {
            success: x.success(),
            user_name: opt_text(x.username()),
            user_id: x.uid(),
            source_address: opt_text(x.source_address()),
        },
        EsEv::NotifyLwSessionLogin(x) => EsEvent::LwSession {
            kind: LwSession::Login,
            user_name: opt_text(x.username()),
        },
        EsEv::NotifyLwSessionLogout(x) => EsEvent::LwSession {
            kind: LwSession::Logout,
            user_name: opt_text(x.username()),
        },
        EsEv::NotifyLwSessionLock(x) => EsEvent::LwSession {
            kind: LwSession::Lock,
            user_name: opt_text(x.username()),
        },
        EsEv::NotifyLwSessionUnlock(x) => EsEvent::LwSession {
            kind: LwSession::Unlock,
            user_name: opt_text(x.username()),
        },
        EsEv::NotifyBtmLaunchItemAdd(x) => {
            let item = x.item();
            EsEvent::BtmLaunchItemAdd {
                instigator: x.instigator().map(|p| process(&p)),
                item_url: text(item.item_url()),
                app_url: opt_text(item.app_url()),
                executable_path: opt_text(x.executable_path()),
                item_type: item.item_type().0 as i32,
                uid: Some(item.uid()),
            }
        }
        _ => EsEvent::Unmapped,
    }
}
