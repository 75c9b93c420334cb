//! The queryable schema: every ECS field name a rule may use, its type, and
//! a typed accessor. Field names resolve to a [`FieldId`] once, when a rule
//! compiles, so matching never looks names up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{LazyLock, RwLock};

use super::matchers::StrTest;
use crate::codec::{EventSyms, EventView, ExtraSymValue, ProcSyms};
use crate::event::{Category, Endpoint, Event, EventType, ExtraValue, Process, Text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Str,
    StrList,
    Int,
    Bool,
    Ip,
    Category,
    EventTypes,
    /// A field outside the schema ([`crate::extra`]): whatever the document
    /// held (keyword, number, boolean or a list of them).
    Any,
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
            FieldKind::Any => "field outside vigil's schema",
        }
    }
}

/// A field's value in one event, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub enum FieldValue<'a> {
    Null,
    Str(&'a str),
    StrList(&'a [Text]),
    /// A list of strings as interned symbols (`process.args` of an
    /// [`EventView`]).
    Syms(SymList<'a>),
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
            FieldValue::Syms(l) => {
                if l.is_empty() {
                    None
                } else {
                    Some(l.iter().any(f))
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
            FieldValue::Syms(l) => (!l.is_empty()).then(|| l.iter().collect::<Vec<_>>().join(" ")),
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

/// Interned strings of one list, and the dictionary they index.
#[derive(Debug, Clone, Copy)]
pub struct SymList<'a> {
    pub ids: &'a [u32],
    pub dict: &'a [&'a str],
}

impl<'a> SymList<'a> {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The strings, in order (a symbol outside the dictionary, which a
    /// decoder never lets through, reads as "").
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let dict = self.dict;
        self.ids.iter().map(move |&id| {
            dict.get((id as usize).wrapping_sub(1))
                .copied()
                .unwrap_or("")
        })
    }
}

/// What a field holds in an interned event, before symbols are looked up.
#[derive(Debug, Clone, Copy)]
pub enum SymValue<'a> {
    /// One string symbol; 0 is null.
    Sym(u32),
    /// A list of string symbols; empty is null.
    Syms(&'a [u32]),
    /// Anything that is not a string.
    Val(FieldValue<'a>),
}

/// Answers `descendant of [...]` and its kin for an event: the correlator's
/// lineage ([`crate::correlate::lineage`]).
pub trait LineageSource {
    fn answer(
        &self,
        kind: super::ast::LineageKind,
        filter: &super::compile::EventFilter,
        e: &Event,
    ) -> Option<bool>;
}

/// Read access to an event's fields, for the query matchers. Implemented by
/// [`Event`] and by [`EventView`] (an undecoded, interned event), so queries
/// run on spooled records without materializing them.
pub trait EventFields {
    fn field(&self, f: FieldId) -> FieldValue<'_>;
    fn category(&self) -> Category;
    fn timestamp_ns(&self) -> i64;
    /// Whether `event.type` holds any of `types`; `None` when it is empty.
    fn has_any_type(&self, types: &[EventType]) -> Option<bool>;
    /// The field as symbols, for views whose string tests may be memoized
    /// per symbol; `None` for events that are not interned.
    fn sym_value(&self, _f: FieldId) -> Option<SymValue<'_>> {
        None
    }
    /// Whether any string of the field passes `test` (`None`: null). The
    /// memoizing view ([`super::memo::MemoView`]) answers from a table.
    #[inline]
    fn str_test(&self, f: FieldId, test: &StrTest) -> Option<bool> {
        self.field(f).any_str(|s| test.matches(s))
    }
    /// Whether the event's process is `kind` of a process `filter` matched
    /// (`descendant of [...]`); `None` where no lineage is kept (outside
    /// the correlator: hunts, single filters).
    fn lineage(
        &self,
        _kind: super::ast::LineageKind,
        _filter: &super::compile::EventFilter,
    ) -> Option<bool> {
        None
    }
}

impl<T: EventFields + ?Sized> EventFields for &T {
    fn field(&self, f: FieldId) -> FieldValue<'_> {
        (**self).field(f)
    }
    fn category(&self) -> Category {
        (**self).category()
    }
    fn timestamp_ns(&self) -> i64 {
        (**self).timestamp_ns()
    }
    fn has_any_type(&self, types: &[EventType]) -> Option<bool> {
        (**self).has_any_type(types)
    }
    fn sym_value(&self, f: FieldId) -> Option<SymValue<'_>> {
        (**self).sym_value(f)
    }
    fn str_test(&self, f: FieldId, test: &StrTest) -> Option<bool> {
        (**self).str_test(f, test)
    }
    fn lineage(
        &self,
        kind: super::ast::LineageKind,
        filter: &super::compile::EventFilter,
    ) -> Option<bool> {
        (**self).lineage(kind, filter)
    }
}

impl EventFields for Event {
    #[inline]
    fn field(&self, f: FieldId) -> FieldValue<'_> {
        match f.schema() {
            Some(def) if def.derived => self
                .extra
                .get(def.path)
                .map_or_else(|| (def.get)(self), extra_value),
            Some(def) => (def.get)(self),
            // vigil's own events have none: no name lookup.
            None if self.extra.is_empty() => FieldValue::Null,
            None => self
                .extra
                .get(f.path())
                .map_or(FieldValue::Null, extra_value),
        }
    }
    fn category(&self) -> Category {
        self.event.category
    }
    fn timestamp_ns(&self) -> i64 {
        self.timestamp_ns
    }
    fn has_any_type(&self, types: &[EventType]) -> Option<bool> {
        if self.event.types.is_empty() {
            None
        } else {
            Some(self.event.types.iter().any(|t| types.contains(t)))
        }
    }
}

impl<'v> EventView<'v> {
    /// A symbol value with its strings looked up.
    #[inline]
    pub fn resolve(&self, v: SymValue<'v>) -> FieldValue<'v> {
        match v {
            SymValue::Sym(s) => self.str(s).map_or(FieldValue::Null, FieldValue::Str),
            SymValue::Syms([]) => FieldValue::Null,
            SymValue::Syms(ids) => FieldValue::Syms(SymList {
                ids,
                dict: self.dict(),
            }),
            SymValue::Val(v) => v,
        }
    }
}

/// A field outside the schema as the matchers read it.
fn extra_value(v: &ExtraValue) -> FieldValue<'_> {
    match v {
        ExtraValue::Str(s) | ExtraValue::Float(s) => FieldValue::Str(s),
        ExtraValue::Int(i) => FieldValue::Int(*i),
        ExtraValue::Bool(b) => FieldValue::Bool(*b),
        ExtraValue::List(l) if l.is_empty() => FieldValue::Null,
        ExtraValue::List(l) => FieldValue::StrList(l),
    }
}

impl<'v> EventView<'v> {
    /// A field as symbols: the schema's getter, or the extra of that path
    /// (which a derived field, such as `process.code_signature.exists`,
    /// takes before deriving when the document had it).
    #[inline]
    fn syms_of(&self, f: FieldId) -> SymValue<'v> {
        let extra = |path: &str| {
            self.extra(path).map(|v| match v {
                ExtraSymValue::Str(s) | ExtraSymValue::Float(s) => Sym(s),
                ExtraSymValue::Int(i) => Val(FieldValue::Int(i)),
                ExtraSymValue::Bool(b) => Val(FieldValue::Bool(b)),
                ExtraSymValue::List { start, len } => Syms(self.syms().extra_list(start, len)),
            })
        };
        match f.schema() {
            Some(def) if def.derived && !self.syms().extras.is_empty() => {
                extra(def.path).unwrap_or_else(|| (def.get_syms)(self.syms()))
            }
            Some(def) => (def.get_syms)(self.syms()),
            None if self.syms().extras.is_empty() => NULL,
            None => extra(f.path()).unwrap_or(NULL),
        }
    }
}

impl EventFields for EventView<'_> {
    #[inline]
    fn field(&self, f: FieldId) -> FieldValue<'_> {
        self.resolve(self.syms_of(f))
    }
    fn category(&self) -> Category {
        self.syms().category
    }
    fn timestamp_ns(&self) -> i64 {
        self.syms().timestamp_ns
    }
    fn has_any_type(&self, types: &[EventType]) -> Option<bool> {
        let mask = self.syms().types;
        if mask == 0 {
            None
        } else {
            Some(types.iter().any(|&t| mask & (1 << t as u32) != 0))
        }
    }
    #[inline]
    fn sym_value(&self, f: FieldId) -> Option<SymValue<'_>> {
        Some(self.syms_of(f))
    }
}

impl EventFields for crate::codec::Decoded<'_> {
    fn field(&self, f: FieldId) -> FieldValue<'_> {
        match self {
            crate::codec::Decoded::View(v) => v.field(f),
            crate::codec::Decoded::Owned(e) => e.field(f),
        }
    }
    fn category(&self) -> Category {
        match self {
            crate::codec::Decoded::View(v) => v.category(),
            crate::codec::Decoded::Owned(e) => e.event.category,
        }
    }
    fn timestamp_ns(&self) -> i64 {
        match self {
            crate::codec::Decoded::View(v) => v.timestamp_ns(),
            crate::codec::Decoded::Owned(e) => e.timestamp_ns,
        }
    }
    fn has_any_type(&self, types: &[EventType]) -> Option<bool> {
        match self {
            crate::codec::Decoded::View(v) => v.has_any_type(types),
            crate::codec::Decoded::Owned(e) => e.has_any_type(types),
        }
    }
    fn sym_value(&self, f: FieldId) -> Option<SymValue<'_>> {
        match self {
            crate::codec::Decoded::View(v) => v.sym_value(f),
            crate::codec::Decoded::Owned(_) => None,
        }
    }
}

type Getter = for<'a> fn(&'a Event) -> FieldValue<'a>;
type SymGetter = for<'a> fn(&'a EventSyms) -> SymValue<'a>;

pub struct FieldDef {
    pub path: &'static str,
    pub kind: FieldKind,
    pub get: Getter,
    /// The same field of an interned event.
    pub get_syms: SymGetter,
    /// Computed from other fields (`process.args_count`,
    /// `process.code_signature.exists`): a document's own value, kept as
    /// an extra, comes first.
    pub derived: bool,
}

/// Index into [`FIELDS`], or (from [`EXTRA_BASE`]) a field outside the
/// schema named by some query ([`resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldId(u16);

/// Ids from here name fields outside the schema.
const EXTRA_BASE: u16 = 0x8000;

/// The names of fields outside the schema that queries have used. Ids are
/// handed out once per name and never reused, so compiled queries can hold
/// them; names are leaked (a rule set names a few hundred at most, and the
/// table is bounded).
static EXTRA_NAMES: LazyLock<RwLock<ExtraNames>> = LazyLock::new(Default::default);

#[derive(Default)]
struct ExtraNames {
    paths: Vec<&'static str>,
    ids: HashMap<&'static str, u16>,
}

impl FieldId {
    /// The schema's definition; `None` for a field outside it.
    pub fn schema(self) -> Option<&'static FieldDef> {
        FIELDS.get(self.0 as usize)
    }

    pub fn path(self) -> &'static str {
        match self.schema() {
            Some(def) => def.path,
            None => EXTRA_NAMES
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .paths
                .get(usize::from(self.0 - EXTRA_BASE))
                .copied()
                .unwrap_or(""),
        }
    }

    pub fn kind(self) -> FieldKind {
        self.schema().map_or(FieldKind::Any, |def| def.kind)
    }

    /// Whether this names a field outside the schema.
    pub fn is_extra(self) -> bool {
        self.0 >= EXTRA_BASE
    }

    pub fn get(self, e: &Event) -> FieldValue<'_> {
        e.field(self)
    }

    /// [`get`](Self::get) for any event representation.
    pub fn value_of<E: EventFields + ?Sized>(self, e: &E) -> FieldValue<'_> {
        e.field(self)
    }
}

/// A field of the schema by path.
pub fn lookup(path: &str) -> Option<FieldId> {
    FIELDS
        .iter()
        .position(|f| f.path == path)
        .map(|i| FieldId(i as u16))
}

/// Any field by path: the schema's, or one outside it (which events from
/// replayed documents may carry as extras). `None` only when the table of
/// outside names is full.
pub fn resolve(path: &str) -> Option<FieldId> {
    if let Some(id) = lookup(path) {
        return Some(id);
    }
    if let Some(&i) = EXTRA_NAMES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .ids
        .get(path)
    {
        return Some(FieldId(EXTRA_BASE + i));
    }
    let mut names = EXTRA_NAMES.write().unwrap_or_else(|e| e.into_inner());
    if let Some(&i) = names.ids.get(path) {
        return Some(FieldId(EXTRA_BASE + i));
    }
    let i = u16::try_from(names.paths.len())
        .ok()
        .filter(|&i| i < u16::MAX - EXTRA_BASE)?;
    let name: &'static str = Box::leak(path.to_string().into_boxed_str());
    names.paths.push(name);
    names.ids.insert(name, i);
    Some(FieldId(EXTRA_BASE + i))
}

/// Every field path, for error messages and documentation.
pub fn all_paths() -> impl Iterator<Item = &'static str> {
    FIELDS.iter().map(|f| f.path)
}

fn s(v: &Option<Text>) -> FieldValue<'_> {
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

use SymValue::{Sym, Syms, Val};

const NULL: SymValue<'static> = Val(FieldValue::Null);

fn parent_syms(e: &EventSyms) -> Option<&ProcSyms> {
    e.parents.first()
}

/// The process fields vigil computes from others.
const fn is_derived(suffix: &str) -> bool {
    matches!(suffix.as_bytes(), b"args_count" | b"code_signature.exists")
}

/// Defines the `process.*` and `process.parent.*` fields from one list: a
/// getter on a [`Process`] and one on an interned [`ProcSyms`] (with its
/// event, which holds the argument symbols).
macro_rules! process_fields {
    ($($suffix:literal, $kind:ident, |$p:ident| $get:expr, |$e:ident, $q:ident| $sget:expr;)*) => {
        [
            $(FieldDef {
                path: concat!("process.", $suffix),
                kind: FieldKind::$kind,
                get: |e| { let $p = &e.process; $get },
                get_syms: |$e| { let $q = &$e.process; $sget },
                derived: is_derived($suffix),
            },)*
            $(FieldDef {
                path: concat!("process.parent.", $suffix),
                kind: FieldKind::$kind,
                get: |e| match parent(e) { Some($p) => $get, None => FieldValue::Null },
                get_syms: |$e| match parent_syms($e) { Some($q) => $sget, None => NULL },
                derived: is_derived($suffix),
            },)*
        ]
    };
}

const PROCESS_FIELDS: [FieldDef; 32] = process_fields! {
    "pid", Int, |p| i(p.pid), |_e, q| Val(i(q.pid));
    "entity_id", Str, |p| s(&p.entity_id), |_e, q| Sym(q.entity_id);
    "name", Str, |p| s(&p.name), |_e, q| Sym(q.name);
    "executable", Str, |p| s(&p.executable), |_e, q| Sym(q.executable);
    "args", StrList, |p| if p.args.is_empty() { FieldValue::Null } else { FieldValue::StrList(&p.args) }, |e, q| Syms(e.args_of(q));
    "args_count", Int, |p| if p.args.is_empty() { FieldValue::Null } else { FieldValue::Int(p.args.len() as i64) }, |_e, q| if q.args_len == 0 { NULL } else { Val(FieldValue::Int(i64::from(q.args_len))) };
    "command_line", Str, |p| s(&p.command_line), |_e, q| Sym(q.command_line);
    "working_directory", Str, |p| s(&p.working_directory), |_e, q| Sym(q.working_directory);
    "code_signature.signing_id", Str, |p| s(&p.code_signature.signing_id), |_e, q| Sym(q.signing_id);
    "code_signature.team_id", Str, |p| s(&p.code_signature.team_id), |_e, q| Sym(q.team_id);
    "code_signature.trusted", Bool, |p| b(p.code_signature.trusted), |_e, q| Val(b(q.trusted));
    "code_signature.platform_binary", Bool, |p| b(p.code_signature.platform_binary), |_e, q| Val(b(q.platform_binary));
    "hash.cdhash", Str, |p| s(&p.hash.cdhash), |_e, q| Sym(q.cdhash);
    "hash.sha256", Str, |p| s(&p.hash.sha256), |_e, q| Sym(q.sha256);
    "exit_code", Int, |p| i(p.exit_code), |_e, q| Val(i(q.exit_code));
    "code_signature.exists", Bool, |p| FieldValue::Bool(p.code_signature.signing_id.is_some()), |_e, q| Val(FieldValue::Bool(q.signing_id != 0));
};

fn ip(e: &Option<Endpoint>) -> FieldValue<'static> {
    e.as_ref()
        .and_then(|x| x.ip)
        .map_or(FieldValue::Null, FieldValue::Ip)
}

const OTHER_FIELDS: [FieldDef; 23] = [
    FieldDef {
        path: "@timestamp",
        kind: FieldKind::Int,
        get: |e| FieldValue::Int(e.timestamp_ns),
        get_syms: |e| Val(FieldValue::Int(e.timestamp_ns)),
        derived: false,
    },
    FieldDef {
        path: "event.category",
        kind: FieldKind::Category,
        get: |e| FieldValue::Category(e.event.category),
        get_syms: |e| Val(FieldValue::Category(e.category)),
        derived: false,
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
        get_syms: |e| {
            if e.types_list.is_empty() {
                NULL
            } else {
                Val(FieldValue::EventTypes(&e.types_list))
            }
        },
        derived: false,
    },
    FieldDef {
        path: "event.action",
        kind: FieldKind::Str,
        get: |e| s(&e.event.action),
        get_syms: |e| Sym(e.action),
        derived: false,
    },
    FieldDef {
        path: "event.id",
        kind: FieldKind::Str,
        get: |e| s(&e.event.id),
        get_syms: |e| Sym(e.event_id),
        derived: false,
    },
    FieldDef {
        path: "event.outcome",
        kind: FieldKind::Str,
        get: |e| s(&e.event.outcome),
        get_syms: |e| Sym(e.outcome),
        derived: false,
    },
    FieldDef {
        path: "host.id",
        kind: FieldKind::Str,
        get: |e| s(&e.host.id),
        get_syms: |e| Sym(e.host_id),
        derived: false,
    },
    FieldDef {
        path: "host.name",
        kind: FieldKind::Str,
        get: |e| s(&e.host.name),
        get_syms: |e| Sym(e.host_name),
        derived: false,
    },
    FieldDef {
        path: "host.os.type",
        kind: FieldKind::Str,
        get: |e| s(&e.host.os.os_type),
        get_syms: |e| Sym(e.os_type),
        derived: false,
    },
    FieldDef {
        path: "host.os.family",
        kind: FieldKind::Str,
        get: |e| s(&e.host.os.family),
        get_syms: |e| Sym(e.os_family),
        derived: false,
    },
    FieldDef {
        path: "host.os.version",
        kind: FieldKind::Str,
        get: |e| s(&e.host.os.version),
        get_syms: |e| Sym(e.os_version),
        derived: false,
    },
    FieldDef {
        path: "user.id",
        kind: FieldKind::Str,
        get: |e| s(&e.user.id),
        get_syms: |e| Sym(e.user_id),
        derived: false,
    },
    FieldDef {
        path: "user.name",
        kind: FieldKind::Str,
        get: |e| s(&e.user.name),
        get_syms: |e| Sym(e.user_name),
        derived: false,
    },
    FieldDef {
        path: "file.path",
        kind: FieldKind::Str,
        get: |e| e.file.as_ref().map_or(FieldValue::Null, |f| s(&f.path)),
        get_syms: |e| Sym(e.file.map_or(0, |f| f.path)),
        derived: false,
    },
    FieldDef {
        path: "file.name",
        kind: FieldKind::Str,
        get: |e| e.file.as_ref().map_or(FieldValue::Null, |f| s(&f.name)),
        get_syms: |e| Sym(e.file.map_or(0, |f| f.name)),
        derived: false,
    },
    FieldDef {
        path: "file.extension",
        kind: FieldKind::Str,
        get: |e| {
            e.file
                .as_ref()
                .map_or(FieldValue::Null, |f| s(&f.extension))
        },
        get_syms: |e| Sym(e.file.map_or(0, |f| f.extension)),
        derived: false,
    },
    FieldDef {
        path: "file.target_path",
        kind: FieldKind::Str,
        get: |e| {
            e.file
                .as_ref()
                .map_or(FieldValue::Null, |f| s(&f.target_path))
        },
        get_syms: |e| Sym(e.file.map_or(0, |f| f.target_path)),
        derived: false,
    },
    FieldDef {
        path: "source.ip",
        kind: FieldKind::Ip,
        get: |e| ip(&e.source),
        get_syms: |e| Val(ip(&e.source)),
        derived: false,
    },
    FieldDef {
        path: "source.port",
        kind: FieldKind::Int,
        get: |e| i(e.source.as_ref().and_then(|x| x.port)),
        get_syms: |e| Val(i(e.source.as_ref().and_then(|x| x.port))),
        derived: false,
    },
    FieldDef {
        path: "destination.ip",
        kind: FieldKind::Ip,
        get: |e| ip(&e.destination),
        get_syms: |e| Val(ip(&e.destination)),
        derived: false,
    },
    FieldDef {
        path: "destination.port",
        kind: FieldKind::Int,
        get: |e| i(e.destination.as_ref().and_then(|x| x.port)),
        get_syms: |e| Val(i(e.destination.as_ref().and_then(|x| x.port))),
        derived: false,
    },
    FieldDef {
        path: "network.transport",
        kind: FieldKind::Str,
        get: |e| {
            e.network
                .as_ref()
                .map_or(FieldValue::Null, |n| s(&n.transport))
        },
        get_syms: |e| Sym(e.network.map_or(0, |n| n.transport)),
        derived: false,
    },
    FieldDef {
        path: "network.direction",
        kind: FieldKind::Str,
        get: |e| {
            e.network
                .as_ref()
                .map_or(FieldValue::Null, |n| s(&n.direction))
        },
        get_syms: |e| Sym(e.network.map_or(0, |n| n.direction)),
        derived: false,
    },
];

/// The schema: `process.*`, `process.parent.*`, then everything else.
static FIELDS: LazyLock<Vec<FieldDef>> =
    LazyLock::new(|| PROCESS_FIELDS.into_iter().chain(OTHER_FIELDS).collect());
