//! Finds the stages of the loaded rules that an event may match, from each
//! stage's [`Guard`], without evaluating them: stages that test
//! `process.name : ("curl", "wget")` are looked up by the event's process
//! name, stages that need `event.type == "start"` are skipped for other
//! events. With many rules most stages are never evaluated for an event.
//!
//! A guard is only a necessary condition: the correlator still evaluates
//! every stage the index marks.

use std::collections::HashMap;

use crate::event::{Category, Event};
use crate::query::fields::{FieldId, FieldValue};
use crate::query::guard::{type_mask, Guard};
use crate::query::{CompiledQuery, EventFilter};

/// Bit of a sequence's `until` stage in a rule's stage mask (stage `i` is
/// bit `i`; a sequence has at most 100 stages).
pub const UNTIL_BIT: u32 = 127;

/// The stage filters of a query, with their bits in a stage mask.
pub fn stage_filters(q: &CompiledQuery) -> Vec<(u32, &EventFilter)> {
    match q {
        CompiledQuery::Event(f) => vec![(0, f)],
        CompiledQuery::Sequence(s) => s
            .stages
            .iter()
            .enumerate()
            .map(|(i, st)| (i as u32, &st.filter))
            .chain(s.until.iter().map(|st| (UNTIL_BIT, &st.filter)))
            .collect(),
    }
}

/// The stages, by event category, that an event may match.
pub struct StageIndex {
    categories: Vec<CategoryStages>,
}

#[derive(Default)]
struct CategoryStages {
    /// Stages guarded by category and `event.type` only.
    unkeyed: Vec<Entry>,
    keyed: Vec<KeyedStages>,
}

/// Stages that need one field to equal (ignoring case) one of some values.
struct KeyedStages {
    field: FieldId,
    /// The longest value: longer text is none of them.
    longest: usize,
    /// By lower-case value, as bytes (lowered text needs no UTF-8 check).
    by_value: HashMap<Box<[u8]>, Vec<Entry>, ahash::RandomState>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    rule: u32,
    bit: u32,
    types: u32,
}

impl StageIndex {
    /// The index of `queries` (rule `i` is `queries[i]`).
    pub fn new<'q>(queries: impl IntoIterator<Item = &'q CompiledQuery>) -> StageIndex {
        let mut categories: Vec<CategoryStages> = Category::ALL
            .iter()
            .map(|_| CategoryStages::default())
            .collect();
        for (rule, q) in queries.into_iter().enumerate() {
            for (bit, filter) in stage_filters(q) {
                let guard = Guard::of(filter);
                // A stage no event can match is never looked at.
                if guard.types == 0 {
                    continue;
                }
                let entry = Entry {
                    rule: rule as u32,
                    bit,
                    types: guard.types,
                };
                let targets: Vec<usize> = match guard.category {
                    Some(c) => vec![c.index()],
                    None => (0..categories.len()).collect(),
                };
                for c in targets {
                    categories[c].add(entry, guard.key.as_ref());
                }
            }
        }
        StageIndex { categories }
    }

    /// Sets, in `masks[rule]`, the bit of each stage `e` may match, and
    /// lists in `marked` each rule it marks (once, in no order). Only rules
    /// with a stage of `e`'s category (or of any) are marked.
    pub fn mark(&self, e: &Event, masks: &mut [u128], marked: &mut Vec<u32>) {
        let stages = &self.categories[e.event.category.index()];
        let types = type_mask(&e.event.types);
        let mut set = |list: &[Entry]| {
            for en in list {
                if en.types & types != 0 {
                    let mask = &mut masks[en.rule as usize];
                    if *mask == 0 {
                        marked.push(en.rule);
                    }
                    *mask |= 1 << en.bit;
                }
            }
        };
        set(&stages.unkeyed);
        for k in &stages.keyed {
            match k.field.get(e) {
                FieldValue::Str(s) => {
                    if let Some(list) = k.lookup(s) {
                        set(list);
                    }
                }
                FieldValue::Null => {}
                // Not a string (never, for a string field): keep every stage.
                _ => k.by_value.values().for_each(|list| set(list)),
            }
        }
    }
}

impl CategoryStages {
    fn add(&mut self, entry: Entry, key: Option<&(FieldId, Vec<String>)>) {
        let Some((field, values)) = key else {
            self.unkeyed.push(entry);
            return;
        };
        let pos = match self.keyed.iter().position(|k| k.field == *field) {
            Some(pos) => pos,
            None => {
                self.keyed.push(KeyedStages {
                    field: *field,
                    longest: 0,
                    by_value: HashMap::default(),
                });
                self.keyed.len() - 1
            }
        };
        let k = &mut self.keyed[pos];
        for v in values {
            k.longest = k.longest.max(v.len());
            let list = k.by_value.entry(v.as_bytes().into()).or_default();
            if !list.contains(&entry) {
                list.push(entry);
            }
        }
    }
}

impl KeyedStages {
    /// The stages whose value is `s` ignoring case.
    fn lookup(&self, s: &str) -> Option<&Vec<Entry>> {
        if !s.is_ascii() {
            return self.by_value.get(s.to_lowercase().as_bytes());
        }
        if s.len() > self.longest {
            return None;
        }
        let mut buf = [0u8; 256];
        if s.len() > buf.len() {
            return self.by_value.get(s.to_ascii_lowercase().as_bytes());
        }
        let lowered = &mut buf[..s.len()];
        lowered.copy_from_slice(s.as_bytes());
        lowered.make_ascii_lowercase();
        self.by_value.get(&*lowered)
    }
}
