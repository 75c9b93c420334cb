//! Necessary conditions of a filter that are cheap to check for many
//! filters at once: the category, the `event.type` values and one field
//! that must equal one of a few values. An event that fails a filter's
//! [`Guard`] cannot match the filter, so the correlator looks up the filters
//! an event may match instead of evaluating every one of them.

use super::compile::{EventFilter, Node};
use super::fields::{EventFields, FieldId, FieldKind, FieldValue};
use crate::event::{Category, EventType};

/// The type-mask bit every event has, so an unrestricted guard (all bits)
/// admits events with no `event.type` too.
const ALWAYS: u32 = 1 << 31;

/// What an event must satisfy to possibly match a filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    /// `None`: any category.
    pub category: Option<Category>,
    /// Bits of [`type_mask`]: the event must have one of these types
    /// (`u32::MAX`: no restriction).
    pub types: u32,
    /// Some string of one of these fields must hold one of these literals
    /// (ignoring ASCII case): a necessary condition of the filter, taken
    /// from the positive string tests its `and`s and `or`s need.
    pub key: Option<Vec<Atom>>,
}

/// A field's text holds a literal: equals it, starts or ends with it, or
/// contains it, ignoring ASCII case (`lit` is lower-case ASCII, except for
/// [`AtomKind::Exact`], which is lower-cased as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Atom {
    pub field: FieldId,
    pub kind: AtomKind,
    pub lit: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtomKind {
    /// The field has a value (`field != null`); `lit` is empty.
    Present,
    Exact,
    Prefix,
    Suffix,
    Contains,
}

impl Atom {
    /// Whether `text` holds the atom. Text that is not ASCII is admitted
    /// unless the atom is exact: Unicode lower-casing can turn it into
    /// ASCII that a case-insensitive test matches (`K`, the Kelvin sign).
    pub fn admits(&self, text: &str) -> bool {
        match self.kind {
            AtomKind::Present => return true,
            AtomKind::Exact => return text.to_lowercase() == self.lit,
            _ => {}
        }
        if !text.is_ascii() {
            return true;
        }
        let t = text.to_ascii_lowercase();
        match self.kind {
            AtomKind::Present | AtomKind::Exact => unreachable!("handled above"),
            AtomKind::Prefix => t.starts_with(&self.lit),
            AtomKind::Suffix => t.ends_with(&self.lit),
            AtomKind::Contains => t.contains(&self.lit),
        }
    }

    /// How poorly the atom tells events apart (lower is better).
    fn cost(&self) -> u32 {
        let field = if few_values(self.field) {
            20
        } else {
            match self.field.path() {
                "process.name" | "process.executable" | "file.name" | "file.path" | "dll.name" => 0,
                "process.args"
                | "process.command_line"
                | "process.parent.args"
                | "process.parent.command_line" => 2,
                _ => 1,
            }
        };
        let kind = match self.kind {
            // Fields outside the schema are absent from vigil's own events.
            AtomKind::Present if self.field.is_extra() => 0,
            AtomKind::Present => 30,
            AtomKind::Exact => 0,
            AtomKind::Prefix | AtomKind::Suffix => 2,
            AtomKind::Contains => 4,
        };
        let short = if self.lit.len() < 3 && self.kind != AtomKind::Present {
            3
        } else {
            0
        };
        10 * (field + kind + short)
    }
}

/// A clause's cost: its worst atom, and a little per atom.
fn clause_cost(atoms: &[Atom]) -> u32 {
    atoms.iter().map(Atom::cost).max().unwrap_or(0) + atoms.len() as u32
}

/// Fields with a handful of values across all events (`event.action ==
/// "exec"` holds for most process events): a poor key when the filter
/// also tests a field that tells events apart, such as `process.name`.
fn few_values(f: FieldId) -> bool {
    matches!(
        f.path(),
        "event.action"
            | "event.outcome"
            | "event.kind"
            | "event.dataset"
            | "event.module"
            | "network.direction"
            | "network.transport"
            | "file.extension"
    )
}

/// `event.type` values as bits, with the bit every event has.
pub fn type_mask(types: &[EventType]) -> u32 {
    types.iter().fold(ALWAYS, |m, &t| m | 1 << t as u32)
}

/// A clause (any of these atoms) that must hold for `node` to be true, the
/// cheapest to check if there are several; `None` if none is known. Only
/// positive tests count: `not x` holds when `x` is null.
fn necessary(node: &Node) -> Option<Vec<Atom>> {
    match node {
        Node::And(terms) => terms
            .iter()
            .filter_map(necessary)
            .min_by_key(|c| clause_cost(c)),
        Node::Or(terms) => {
            let mut all = Vec::new();
            for t in terms {
                all.extend(necessary(t)?);
            }
            all.dedup();
            Some(all)
        }
        Node::Str { field, test }
            if matches!(
                field.kind(),
                FieldKind::Str | FieldKind::StrList | FieldKind::Any
            ) && !field.path().starts_with("host.") =>
        {
            let atoms: Vec<Atom> = test
                .necessary_literals()?
                .into_iter()
                .map(|(kind, lit)| Atom {
                    field: *field,
                    kind,
                    lit,
                })
                .collect();
            (!atoms.is_empty()).then_some(atoms)
        }
        // `field != null`.
        Node::Not(inner) => match &**inner {
            Node::IsNull(field) if !field.path().starts_with("host.") => Some(vec![Atom {
                field: *field,
                kind: AtomKind::Present,
                lit: String::new(),
            }]),
            _ => None,
        },
        _ => None,
    }
}

impl Guard {
    /// The guard of `f`: from the terms of its top-level `and`, the first
    /// `event.type` test, and the cheapest clause of literals it needs.
    /// `host.*` fields are left out: an agent sees one host, so they hold
    /// the same value in every event and would select nothing.
    pub fn of(f: &EventFilter) -> Guard {
        let terms = match &f.condition {
            Node::And(terms) => terms.as_slice(),
            single => std::slice::from_ref(single),
        };
        let mut types = None;
        for t in terms {
            if let Node::HasType(list) = t {
                // `has_any_type` of an event without types is null: no match.
                types = Some(type_mask(list) & !ALWAYS);
                break;
            }
        }
        // No event can match (a field vigil never records, null up to the
        // top): no event passes.
        let types = if f.condition.can_be_true() {
            types.unwrap_or(u32::MAX)
        } else {
            0
        };
        Guard {
            category: f.category,
            types,
            key: necessary(&f.condition),
        }
    }

    /// Whether `e` passes the guard (the general path the correlator's
    /// index must agree with).
    pub fn admits<E: EventFields + ?Sized>(&self, e: &E) -> bool {
        if self.category.is_some_and(|c| c != e.category()) {
            return false;
        }
        if self.types != u32::MAX && e.has_any_type(&types_of(self.types)) != Some(true) {
            return false;
        }
        match &self.key {
            None => true,
            Some(atoms) => atoms.iter().any(|a| match e.field(a.field) {
                FieldValue::Null => false,
                _ if a.kind == AtomKind::Present => true,
                v @ (FieldValue::Str(_) | FieldValue::StrList(_) | FieldValue::Syms(_)) => {
                    v.any_str(|s| a.admits(s)) == Some(true)
                }
                // Not text (an extra's number): a string test may still hold.
                _ => true,
            }),
        }
    }
}

fn types_of(mask: u32) -> Vec<EventType> {
    EventType::ALL
        .into_iter()
        .filter(|&t| mask & (1 << t as u32) != 0)
        .collect()
}
