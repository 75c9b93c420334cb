//! The queryable schema: every ECS field name a rule may use, its type, and
//! a typed accessor. Field names resolve to a [`FieldId`] once, when a rule
//! compiles, so matching never looks names up.

use std::net::IpAddr;
use std::sync::LazyLock;

use crate::event::{Category, Event, EventType, Process};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Str,
    StrList,
    Int,
    Bool,
    Ip,
    Category,
    EventTypes,
}

impl FieldKind {
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Str => "string",
            FieldKind::StrList => "list of strings",
            FieldKind::Int => "number",
            FieldKind::Bool => "boolean",
            FieldKind::Ip => "IP address",
            FieldKind::Category => "event category",
            FieldKind::EventTypes => "list of event types",
        }
    }
}

/// A field's value in one event, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub enum FieldValue<'a> {
    Null,
    Str(&'a str),
    StrList(&'a [String]),
    Int(i64),
    Bool(bool),
    Ip(IpAddr),
    Category(Category),
    EventTypes(&'a [EventType]),
}

impl<'a> FieldValue<'a> {
    /// Calls `f` on each string the value holds (one for scalars, every
    /// element for lists); stops at the first `true`.
    pub fn any_str(&self, mut f: impl FnMut(&str) -> bool) -> Option<bool> {
        match *self {
            FieldValue::Null => None,
            FieldValue::Str(s) => Some(f(s)),
            FieldValue::StrList(l) => {
                if l.is_empty() {
                    None
                } else {
                    Some(l.iter().any(|s| f(s)))
                }
            }
            FieldValue::Category(c) => Some(f(c.as_str())),
            FieldValue::EventTypes(t) => {
                if t.is_empty() {
                    None
                } else {
                    Some(t.iter().any(|t| f(t.as_str())))
                }
            }
            FieldValue::Int(i) => Some(f(&i.to_string())),
            FieldValue::Bool(b) => Some(f(if b { "true" } else { "false" })),
            FieldValue::Ip(ip) => Some(f(&ip.to_string())),
        }
    }

    /// The value as join-key / display text.
    pub fn to_text(&self) -> Option<String> {
        match *self {
            FieldValue::Null => None,
            FieldValue::Str(s) => Some(s.to_string()),
            FieldValue::StrList(l) => (!l.is_empty()).then(|| l.join(" ")),
            FieldValue::Int(i) => Some(i.to_string()),
            FieldValue::Bool(b) => Some(b.to_string()),
            FieldValue::Ip(ip) => Some(ip.to_string()),
            FieldValue::Category(c) => Some(c.as_str().to_string()),
            FieldValue::EventTypes(t) => {
                (!t.is_empty()).then(|| t.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(" "))
            }
        }
    }
}

type Getter = for<'a> fn(&'a Event) -> FieldValue<'a>;

pub struct FieldDef {
    pub path: &'static str,
    pub kind: FieldKind,
    pub get: Getter,
}

/// Index into [`FIELDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldId(u16);

impl FieldId {
    pub fn def(self) -> &'static FieldDef {
        &FIELDS[self.0 as usize]
    }

    pub fn path(self) -> &'static str {
        self.def().path
    }

    pub fn kind(self) -> FieldKind {
        self.def().kind
    }

    pub fn get(self, e: &Event) -> FieldValue<'_> {
        (self.def().get)(e)
    }
}

pub fn lookup(path: &str) -> Option<FieldId> {
    FIELDS
        .iter()
        .position(|f| f.path == path)
        .map(|i| FieldId(i as u16))
}

/// Every field path, for error messages and documentation.
pub fn all_paths() -> impl Iterator<Item = &'static str> {
    FIELDS.iter().map(|f| f.path)
}

fn s(v: &Option<String>) -> FieldValue<'_> {
    v.as_deref().map_or(FieldValue::Null, FieldValue::Str)
}

fn b(v: Option<bool>) -> FieldValue<'static> {
    v.map_or(FieldValue::Null, FieldValue::Bool)
}

fn i<T: Into<i64>>(v: Option<T>) -> FieldValue<'static> {
    v.map_or(FieldValue::Null, |v| FieldValue::Int(v.into()))
}

fn parent(e: &Event) -> Option<&Process> {
    e.process.parent.as_deref()
}

/// Defines the `process.*` and `process.parent.*` fields from one list.
macro_rules! process_fields {
    ($($suffix:literal, $kind:ident, |$p:ident| $get:expr;)*) => {
        [
            $(FieldDef { path: concat!("process.", $suffix), kind: FieldKind::$kind, get: |e| { let $p = &e.process; $get } },)*
            $(FieldDef { path: concat!("process.parent.", $suffix), kind: FieldKind::$kind, get: |e| match parent(e) { Some($p) => $get, None => FieldValue::Null } },)*
        ]
    };
}

const PROCESS_FIELDS: [FieldDef; 32] = process_fields! {
    "pid", Int, |p| i(p.pid);
    "entity_id", Str, |p| s(&p.entity_id);
    "name", Str, |p| s(&p.name);
    "executable", Str, |p| s(&p.executable);
    "args", StrList, |p| if p.args.is_empty() { FieldValue::Null } else { FieldValue::StrList(&p.args) };
    "args_count", Int, |p| if p.args.is_empty() { FieldValue::Null } else { FieldValue::Int(p.args.len() as i64) };
    "command_line", Str, |p| s(&p.command_line);
    "working_directory", Str, |p| s(&p.working_directory);
    "code_signature.signing_id", Str, |p| s(&p.code_signature.signing_id);
    "code_signature.team_id", Str, |p| s(&p.code_signature.team_id);
    "code_signature.trusted", Bool, |p| b(p.code_signature.trusted);
    "code_signature.platform_binary", Bool, |p| b(p.code_signature.platform_binary);
    "hash.cdhash", Str, |p| s(&p.hash.cdhash);
    "hash.sha256", Str, |p| s(&p.hash.sha256);
    "exit_code", Int, |p| i(p.exit_code);
    "code_signature.exists", Bool, |p| FieldValue::Bool(p.code_signature.signing_id.is_some());
};

const OTHER_FIELDS: [FieldDef; 23] = [
    FieldDef {
        path: "@timestamp",
        kind: FieldKind::Int,
        get: |e| FieldValue::Int(e.timestamp_ns),
    },
    FieldDef {
        path: "event.category",
        kind: FieldKind::Category,
        get: |e| FieldValue::Category(e.event.category),
    },
    FieldDef {
        path: "event.type",
        kind: FieldKind::EventTypes,
        get: |e| {
            if e.event.types.is_empty() {
                FieldValue::Null
            } else {
                FieldValue::EventTypes(&e.event.types)
            }
        },
    },
    FieldDef {
        path: "event.action",
        kind: FieldKind::Str,
        get: |e| s(&e.event.action),
    },
    FieldDef {
        path: "event.id",
        kind: FieldKind::Str,
        get: |e| s(&e.event.id),
    },
    FieldDef {
        path: "event.outcome",
        kind: FieldKind::Str,
        get: |e| s(&e.event.outcome),
    },
    FieldDef {
        path: "host.id",
        kind: FieldKind::Str,
        get: |e| s(&e.host.id),
    },
    FieldDef {
        path: "host.name",
        kind: FieldKind::Str,
        get: |e| s(&e.host.name),
    },
    FieldDef {
        path: "host.os.type",
        kind: FieldKind::Str,
        get: |e| s(&e.host.os.os_type),
    },
    FieldDef {
        path: "host.os.family",
        kind: FieldKind::Str,
        get: |e| s(&e.host.os.family),
    },
    FieldDef {
        path: "host.os.version",
        kind: FieldKind::Str,
        get: |e| s(&e.host.os.version),
    },
    FieldDef {
        path: "user.id",
        kind: FieldKind::Str,
        get: |e| s(&e.user.id),
    },
    FieldDef {
        path: "user.name",
        kind: FieldKind::Str,
        get: |e| s(&e.user.name),
    },
    FieldDef {
        path: "file.path",
        kind: FieldKind::Str,
        get: |e| e.file.as_ref().map_or(FieldValue::Null, |f| s(&f.path)),
    },
    FieldDef {
        path: "file.name",
        kind: FieldKind::Str,
        get: |e| e.file.as_ref().map_or(FieldValue::Null, |f| s(&f.name)),
    },
    FieldDef {
        path: "file.extension",
        kind: FieldKind::Str,
        get: |e| {
            e.file
                .as_ref()
                .map_or(FieldValue::Null, |f| s(&f.extension))
        },
    },
    FieldDef {
        path: "file.target_path",
        kind: FieldKind::Str,
        get: |e| {
            e.file
                .as_ref()
                .map_or(FieldValue::Null, |f| s(&f.target_path))
        },
    },
    FieldDef {
        path: "source.ip",
        kind: FieldKind::Ip,
        get: |e| {
            e.source
                .as_ref()
                .and_then(|x| x.ip)
                .map_or(FieldValue::Null, FieldValue::Ip)
        },
    },
    FieldDef {
        path: "source.port",
        kind: FieldKind::Int,
        get: |e| i(e.source.as_ref().and_then(|x| x.port)),
    },
    FieldDef {
        path: "destination.ip",
        kind: FieldKind::Ip,
        get: |e| {
            e.destination
                .as_ref()
                .and_then(|x| x.ip)
                .map_or(FieldValue::Null, FieldValue::Ip)
        },
    },
    FieldDef {
        path: "destination.port",
        kind: FieldKind::Int,
        get: |e| i(e.destination.as_ref().and_then(|x| x.port)),
    },
    FieldDef {
        path: "network.transport",
        kind: FieldKind::Str,
        get: |e| {
            e.network
                .as_ref()
                .map_or(FieldValue::Null, |n| s(&n.transport))
        },
    },
    FieldDef {
        path: "network.direction",
        kind: FieldKind::Str,
        get: |e| {
            e.network
                .as_ref()
                .map_or(FieldValue::Null, |n| s(&n.direction))
        },
    },
];

/// The schema: `process.*`, `process.parent.*`, then everything else.
static FIELDS: LazyLock<Vec<FieldDef>> =
    LazyLock::new(|| PROCESS_FIELDS.into_iter().chain(OTHER_FIELDS).collect());
