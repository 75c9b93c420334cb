//! Necessary conditions of a filter that are cheap to check for many
//! filters at once: the category, the `event.type` values and one field
//! that must equal one of a few values. An event that fails a filter's
//! [`Guard`] cannot match the filter, so the correlator looks up the filters
//! an event may match instead of evaluating every one of them.

use super::compile::{EventFilter, Node};
use super::fields::{EventFields, FieldId, FieldKind, FieldValue};
use super::matchers::StrTest;
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
    /// The field's value, lower-cased, must be one of these (lower-case).
    pub key: Option<(FieldId, Vec<String>)>,
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

impl Guard {
    /// The guard of `f`: from the terms of its top-level `and`, the first
    /// `event.type` test and the exact-value test with the fewest values.
    /// `host.*` fields are left out: an agent sees one host, so they hold
    /// the same value in every event and would select nothing.
    pub fn of(f: &EventFilter) -> Guard {
        let terms = match &f.condition {
            Node::And(terms) => terms.as_slice(),
            single => std::slice::from_ref(single),
        };
        let mut types = None;
        let mut key: Option<(FieldId, Vec<String>)> = None;
        for t in terms {
            match t {
                // `has_any_type` of an event without types is null: no match.
                Node::HasType(list) if types.is_none() => {
                    types = Some(type_mask(list) & !ALWAYS);
                }
                Node::Str { field, test }
                    if field.kind() == FieldKind::Str && !field.path().starts_with("host.") =>
                {
                    let values: Vec<String> = match test {
                        StrTest::Exact(values) => values.iter().map(|v| v.to_lowercase()).collect(),
                        StrTest::ExactCi(set) => set.lowered().to_vec(),
                        StrTest::Patterns(set) => match set.exact_values() {
                            Some(values) => values,
                            None => continue,
                        },
                        _ => continue,
                    };
                    let better = key.as_ref().is_none_or(|(k_field, k)| {
                        (few_values(*field), values.len()) < (few_values(*k_field), k.len())
                    });
                    if better {
                        key = Some((*field, values));
                    }
                }
                _ => {}
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
            key,
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
            Some((field, values)) => match e.field(*field) {
                FieldValue::Str(s) => values.contains(&s.to_lowercase()),
                FieldValue::Null => false,
                _ => true,
            },
        }
    }
}

fn types_of(mask: u32) -> Vec<EventType> {
    EventType::ALL
        .into_iter()
        .filter(|&t| mask & (1 << t as u32) != 0)
        .collect()
}
