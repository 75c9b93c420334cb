//! `descendant of [...]`, `child of [...]`, `event of [...]`: which
//! processes the inner queries matched, and who started whom, kept from the
//! events themselves (entity ids and parent entity ids), bounded.

use std::collections::HashMap;

use crate::event::Event;
use crate::query::ast::LineageKind;
use crate::query::compile::{EventFilter, LineageFilter};
use crate::query::fields::LineageSource;
use crate::rules::RuleSet;

/// Processes remembered per table before the older half is forgotten: a
/// busy Mac starts a few hundred processes a minute, so hours of lineage.
const REMEMBERED: usize = 65_536;

/// How far up the ancestry `descendant of` looks.
const MAX_DEPTH: usize = 64;

/// The lineage the rules' `... of [...]` terms read.
pub struct Lineage {
    /// The inner filters, told apart by address.
    filters: Vec<LineageFilter>,
    /// Per filter: the entity ids of the processes it matched.
    matched: Vec<Generations<()>>,
    /// Entity id → parent entity id.
    parents: Generations<String>,
}

impl Lineage {
    /// The lineage `rules` need; `None` when no rule asks for any.
    pub fn of(rules: &RuleSet) -> Option<Lineage> {
        let mut filters = Vec::new();
        for r in rules.rules() {
            for (_, f) in crate::correlate::dispatch::stage_filters(&r.query) {
                f.condition.lineage_filters(&mut filters);
            }
            if let crate::query::CompiledQuery::Sequence(s) = &r.query {
                for st in s.stages.iter().chain(s.until.iter()) {
                    if let Some(w) = &st.with_prior {
                        w.condition.lineage_filters(&mut filters);
                    }
                }
            }
        }
        filters.dedup_by(|a, b| std::sync::Arc::ptr_eq(a, b));
        (!filters.is_empty()).then(|| Lineage {
            matched: filters.iter().map(|_| Generations::default()).collect(),
            filters,
            parents: Generations::default(),
        })
    }

    /// Learns from one event (before the rules see it): its parent, and
    /// which inner queries its process matches.
    pub fn observe(&mut self, e: &Event) {
        let Some(id) = e.process.entity_id.as_deref() else {
            return;
        };
        if let Some(parent) = e
            .process
            .parent
            .as_ref()
            .and_then(|p| p.entity_id.as_deref())
        {
            if self.parents.get(id).is_none_or(|p| p != parent) {
                self.parents.insert(id, parent.to_string());
            }
        }
        for i in 0..self.filters.len() {
            // Inner queries may nest lineage of their own.
            let hit = self.filters[i].matches(&WithLineage {
                event: e,
                lineage: self,
            });
            if hit {
                self.matched[i].insert(id, ());
            }
        }
    }

    fn matched_by(&self, filter: &EventFilter, id: &str) -> bool {
        self.filters
            .iter()
            .position(|f| std::ptr::eq(f.as_ref(), filter))
            .is_some_and(|i| self.matched[i].get(id).is_some())
    }
}

impl LineageSource for Lineage {
    fn answer(&self, kind: LineageKind, filter: &EventFilter, e: &Event) -> Option<bool> {
        let own = e.process.entity_id.as_deref();
        let parent = e
            .process
            .parent
            .as_ref()
            .and_then(|p| p.entity_id.as_deref());
        Some(match kind {
            LineageKind::Event => own.is_some_and(|id| self.matched_by(filter, id)),
            LineageKind::Child => parent.is_some_and(|id| self.matched_by(filter, id)),
            LineageKind::Descendant => {
                let mut at = parent.map(str::to_string);
                let mut depth = 0;
                loop {
                    let Some(id) = at else { break false };
                    if self.matched_by(filter, &id) {
                        break true;
                    }
                    depth += 1;
                    if depth >= MAX_DEPTH {
                        break false;
                    }
                    at = self.parents.get(&id).cloned();
                }
            }
        })
    }
}

/// An event with the correlator's lineage, for the general (unindexed) path.
pub struct WithLineage<'a> {
    pub event: &'a Event,
    pub lineage: &'a Lineage,
}

impl crate::query::EventFields for WithLineage<'_> {
    fn field(&self, f: crate::query::fields::FieldId) -> crate::query::fields::FieldValue<'_> {
        self.event.field(f)
    }
    fn category(&self) -> crate::event::Category {
        self.event.event.category
    }
    fn timestamp_ns(&self) -> i64 {
        self.event.timestamp_ns
    }
    fn has_any_type(&self, types: &[crate::event::EventType]) -> Option<bool> {
        self.event.has_any_type(types)
    }
    fn lineage(&self, kind: LineageKind, filter: &EventFilter) -> Option<bool> {
        self.lineage.answer(kind, filter, self.event)
    }
}

/// A bounded map: when the newer half fills, the older is forgotten.
struct Generations<V> {
    new: HashMap<String, V>,
    old: HashMap<String, V>,
}

impl<V> Default for Generations<V> {
    fn default() -> Self {
        Generations {
            new: HashMap::new(),
            old: HashMap::new(),
        }
    }
}

impl<V> Generations<V> {
    fn get(&self, k: &str) -> Option<&V> {
        self.new.get(k).or_else(|| self.old.get(k))
    }

    fn insert(&mut self, k: &str, v: V) {
        if self.new.len() >= REMEMBERED / 2 {
            self.old = std::mem::take(&mut self.new);
        }
        self.new.insert(k.to_string(), v);
    }
}
