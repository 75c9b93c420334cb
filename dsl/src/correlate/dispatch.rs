//! Finds the stages of the loaded rules that an event may match, from each
//! stage's [`Guard`], without evaluating them: stages that test
//! `process.name : ("curl", "wget")` are looked up by the event's process
//! name, stages that need `event.type == "start"` are skipped for other
//! events. With many rules most stages are never evaluated for an event.
//!
//! A guard is only a necessary condition: the correlator still evaluates
//! every stage the index marks.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};

use crate::event::{Category, Event};
use crate::query::fields::{EventFields, FieldId, FieldValue};
use crate::query::guard::{type_mask, Atom, AtomKind, Guard};
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
    /// Stages keyed by literals of a field, one index per field.
    fields: Vec<FieldIndex>,
}

/// The stages whose guard needs some string of one field to hold one of
/// some literals: exact values are looked up, the rest found in one pass
/// over the text (Aho-Corasick, ignoring ASCII case).
struct FieldIndex {
    field: FieldId,
    /// The longest exact value: longer text is none of them.
    longest: usize,
    /// By lower-case value, as bytes (lowered text needs no UTF-8 check).
    exact: HashMap<Box<[u8]>, Vec<Entry>, ahash::RandomState>,
    /// Prefix, suffix and substring literals: pattern `i` of the finder is
    /// `lits[i]`.
    finder: Option<AhoCorasick>,
    lits: Vec<Lit>,
    /// Every stage keyed by such a literal (for text the finder cannot
    /// judge: not ASCII).
    with_lits: Vec<Entry>,
    /// Stages that need the field to have a value (`field != null`).
    present: Vec<Entry>,
    /// Every stage of this field (for values that are not text).
    all: Vec<Entry>,
}

struct Lit {
    kind: AtomKind,
    text: String,
    entries: Vec<Entry>,
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
                    categories[c].add(entry, guard.key.as_deref());
                }
            }
        }
        for c in &mut categories {
            c.fields.iter_mut().for_each(FieldIndex::build_finder);
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
        for k in &stages.fields {
            let value = e.field(k.field);
            if !matches!(value, FieldValue::Null) {
                set(&k.present);
            }
            match value {
                FieldValue::Str(s) => k.probe(s, &mut set),
                FieldValue::StrList(list) => list.iter().for_each(|s| k.probe(s, &mut set)),
                FieldValue::Null => {}
                // Not text (an extra's number): keep every stage.
                _ => set(&k.all),
            }
        }
    }
}

impl CategoryStages {
    fn add(&mut self, entry: Entry, key: Option<&[Atom]>) {
        let Some(atoms) = key else {
            self.unkeyed.push(entry);
            return;
        };
        for atom in atoms {
            let pos = match self.fields.iter().position(|k| k.field == atom.field) {
                Some(pos) => pos,
                None => {
                    self.fields.push(FieldIndex::new(atom.field));
                    self.fields.len() - 1
                }
            };
            self.fields[pos].add(entry, atom);
        }
    }
}

fn push_once(list: &mut Vec<Entry>, entry: Entry) {
    if !list.contains(&entry) {
        list.push(entry);
    }
}

impl FieldIndex {
    fn new(field: FieldId) -> FieldIndex {
        FieldIndex {
            field,
            longest: 0,
            exact: HashMap::default(),
            finder: None,
            lits: Vec::new(),
            with_lits: Vec::new(),
            present: Vec::new(),
            all: Vec::new(),
        }
    }

    fn add(&mut self, entry: Entry, atom: &Atom) {
        push_once(&mut self.all, entry);
        if atom.kind == AtomKind::Present {
            push_once(&mut self.present, entry);
            return;
        }
        if atom.kind == AtomKind::Exact {
            self.longest = self.longest.max(atom.lit.len());
            push_once(
                self.exact.entry(atom.lit.as_bytes().into()).or_default(),
                entry,
            );
            return;
        }
        push_once(&mut self.with_lits, entry);
        match self
            .lits
            .iter_mut()
            .find(|l| l.kind == atom.kind && l.text == atom.lit)
        {
            Some(lit) => push_once(&mut lit.entries, entry),
            None => self.lits.push(Lit {
                kind: atom.kind,
                text: atom.lit.clone(),
                entries: vec![entry],
            }),
        }
    }

    fn build_finder(&mut self) {
        if self.lits.is_empty() {
            return;
        }
        self.finder = Some(
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(self.lits.iter().map(|l| l.text.as_bytes()))
                .expect("literals of bounded rule text build an automaton"),
        );
    }

    /// Marks the stages whose literal `s` holds.
    fn probe(&self, s: &str, set: &mut impl FnMut(&[Entry])) {
        if !s.is_ascii() {
            if let Some(list) = self.exact.get(s.to_lowercase().as_bytes()) {
                set(list);
            }
            // Unicode lower-casing may make ASCII of it (`K`, the Kelvin
            // sign): every literal stage may match.
            if self.finder.is_some() {
                set(&self.with_lits);
            }
            return;
        }
        if s.len() <= self.longest {
            if let Some(list) = self.lookup_ascii(s) {
                set(list);
            }
        }
        let Some(finder) = &self.finder else {
            return;
        };
        for m in finder.find_overlapping_iter(s.as_bytes()) {
            let lit = &self.lits[m.pattern().as_usize()];
            let holds = match lit.kind {
                AtomKind::Prefix => m.start() == 0,
                AtomKind::Suffix => m.end() == s.len(),
                _ => true,
            };
            if holds {
                set(&lit.entries);
            }
        }
    }

    /// The stages whose exact value is ASCII `s` ignoring case.
    fn lookup_ascii(&self, s: &str) -> Option<&Vec<Entry>> {
        let mut buf = [0u8; 256];
        if s.len() > buf.len() {
            return self.exact.get(s.to_ascii_lowercase().as_bytes());
        }
        let lowered = &mut buf[..s.len()];
        lowered.copy_from_slice(s.as_bytes());
        lowered.make_ascii_lowercase();
        self.exact.get(&*lowered)
    }
}
