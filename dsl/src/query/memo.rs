//! Per-block memo of string tests on interned events. Within a spool block
//! every string is a symbol, and a test's answer for a symbol never changes,
//! so `process.name : "curl"` or a regex over `process.command_line` runs
//! once per distinct string of the block and is a table lookup after that.

use std::cell::RefCell;

use super::compile::{EventFilter, Node};
use super::fields::{EventFields, FieldId, FieldValue, SymValue};
use super::matchers::StrTest;
use crate::codec::EventView;
use crate::event::{Category, EventType};

/// Answers of the string tests of some filters, by symbol, for one block.
/// Only tests registered at construction are memoized (they are borrowed,
/// so they outlive the memo); [`reset`](StrMemo::reset) at every block.
pub struct StrMemo<'q> {
    tests: Vec<&'q StrTest>,
    /// `answers[slot][symbol]`: 0 unknown, 1 false, 2 true.
    answers: RefCell<Vec<Vec<u8>>>,
}

impl<'q> StrMemo<'q> {
    /// A memo for the string tests of `filters`.
    pub fn new(filters: impl IntoIterator<Item = &'q EventFilter>) -> StrMemo<'q> {
        let mut tests = Vec::new();
        for f in filters {
            collect(&f.condition, &mut tests);
        }
        let answers = RefCell::new(vec![Vec::new(); tests.len()]);
        StrMemo { tests, answers }
    }

    /// Forgets every answer: the next view is from another block.
    pub fn reset(&mut self) {
        for a in self.answers.get_mut() {
            a.clear();
        }
    }

    /// Memoized tests.
    pub fn len(&self) -> usize {
        self.tests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tests.is_empty()
    }

    fn slot_of(&self, test: &StrTest) -> Option<usize> {
        self.tests.iter().position(|t| std::ptr::eq(*t, test))
    }

    /// The answer for symbol `sym` (> 0) of `view`, computed on first use.
    fn answer(&self, slot: usize, sym: u32, view: &EventView<'_>, test: &StrTest) -> bool {
        let k = sym as usize;
        let mut answers = self.answers.borrow_mut();
        let Some(known) = answers.get_mut(slot) else {
            return view.str(sym).is_some_and(|s| test.matches(s));
        };
        match known.get(k) {
            Some(1) => return false,
            Some(2) => return true,
            _ => {}
        }
        let r = view.str(sym).is_some_and(|s| test.matches(s));
        if known.len() <= k {
            known.resize(k.max(view.dict().len()) + 1, 0);
        }
        known[k] = 1 + u8::from(r);
        r
    }
}

fn collect<'q>(n: &'q Node, out: &mut Vec<&'q StrTest>) {
    match n {
        Node::And(terms) | Node::Or(terms) => terms.iter().for_each(|t| collect(t, out)),
        Node::Not(inner) => collect(inner, out),
        Node::Str { test, .. } => out.push(test),
        _ => {}
    }
}

/// An [`EventView`] whose string tests go through a [`StrMemo`]. The memo
/// must have been reset since the last view of another block.
pub struct MemoView<'a, 'v, 'q> {
    pub view: &'a EventView<'v>,
    pub memo: &'a StrMemo<'q>,
}

impl EventFields for MemoView<'_, '_, '_> {
    #[inline]
    fn field(&self, f: FieldId) -> FieldValue<'_> {
        self.view.field(f)
    }
    fn category(&self) -> Category {
        self.view.category()
    }
    fn timestamp_ns(&self) -> i64 {
        self.view.timestamp_ns()
    }
    fn has_any_type(&self, types: &[EventType]) -> Option<bool> {
        self.view.has_any_type(types)
    }
    fn sym_value(&self, f: FieldId) -> Option<SymValue<'_>> {
        self.view.sym_value(f)
    }
    fn str_test(&self, f: FieldId, test: &StrTest) -> Option<bool> {
        let Some(slot) = self.memo.slot_of(test) else {
            return self.view.str_test(f, test);
        };
        match self.view.sym_value(f) {
            Some(SymValue::Sym(0)) | Some(SymValue::Syms([])) => None,
            Some(SymValue::Sym(k)) => Some(self.memo.answer(slot, k, self.view, test)),
            Some(SymValue::Syms(ids)) => Some(
                ids.iter()
                    .any(|&k| self.memo.answer(slot, k, self.view, test)),
            ),
            _ => self.view.str_test(f, test),
        }
    }
}

/// Answers of costly string tests (wildcard lists, regexes) by text, kept
/// across events: an endpoint's process names, executables, command lines
/// and many paths recur event after event, so most tests become a hash and
/// a compare. Direct-mapped and fixed in size: a new answer replaces
/// whatever shared its slot, so memory stays bounded.
pub struct TextMemo {
    slots: Vec<Slot>,
}

#[derive(Default)]
struct Slot {
    hash: u64,
    /// The test's address; 0 in a free slot.
    test: usize,
    text: Vec<u8>,
    answer: bool,
}

/// Longer text is tested every time: long command lines rarely recur.
const MEMO_MAX_TEXT: usize = 256;

impl TextMemo {
    /// A memo of `slots` answers (rounded up to a power of two).
    pub fn new(slots: usize) -> TextMemo {
        TextMemo {
            slots: (0..slots.next_power_of_two())
                .map(|_| Slot::default())
                .collect(),
        }
    }

    /// `test.matches(text)`, from the memo when it is there.
    pub fn matches(&mut self, test: &StrTest, text: &str) -> bool {
        if text.len() > MEMO_MAX_TEXT || !test.is_costly() {
            return test.matches(text);
        }
        let addr = test as *const StrTest as usize;
        let hash = crate::fasthash::hash_bytes(addr as u64, text.as_bytes());
        let mask = self.slots.len() - 1;
        let slot = &mut self.slots[hash as usize & mask];
        if slot.hash == hash && slot.test == addr && slot.text == text.as_bytes() {
            return slot.answer;
        }
        let answer = test.matches(text);
        slot.hash = hash;
        slot.test = addr;
        slot.text.clear();
        slot.text.extend_from_slice(text.as_bytes());
        slot.answer = answer;
        answer
    }
}

/// An [`crate::Event`] whose costly string tests go through a [`TextMemo`].
/// Tests are told apart by address: the memo must only serve the tests of
/// one set of compiled queries that outlives it (or be cleared).
pub struct MemoEvent<'a> {
    pub event: &'a crate::Event,
    pub memo: &'a RefCell<TextMemo>,
    /// The correlator's lineage, when a rule reads it.
    pub lineage: Option<&'a dyn super::fields::LineageSource>,
}

impl EventFields for MemoEvent<'_> {
    #[inline]
    fn field(&self, f: FieldId) -> FieldValue<'_> {
        self.event.field(f)
    }
    fn category(&self) -> Category {
        self.event.event.category
    }
    fn timestamp_ns(&self) -> i64 {
        self.event.timestamp_ns
    }
    fn has_any_type(&self, types: &[EventType]) -> Option<bool> {
        self.event.has_any_type(types)
    }
    fn str_test(&self, f: FieldId, test: &StrTest) -> Option<bool> {
        match self.event.field(f) {
            FieldValue::Str(s) if test.is_costly() => Some(self.memo.borrow_mut().matches(test, s)),
            other => other.any_str(|s| test.matches(s)),
        }
    }
    fn lineage(
        &self,
        kind: super::ast::LineageKind,
        filter: &super::compile::EventFilter,
    ) -> Option<bool> {
        self.lineage?.answer(kind, filter, self.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::matchers::{Pattern, PatternSet};

    #[test]
    fn text_memo_answers_as_the_test_does_even_when_slots_collide() {
        let set = |pats: &[&str]| {
            StrTest::Patterns(PatternSet::new(
                pats.iter().map(|p| Pattern::wildcard(p, true)).collect(),
            ))
        };
        let tests = [
            set(&["*curl *", "*wget *", "*base64*"]),
            set(&["/Users/*/Downloads/*", "/tmp/*"]),
            StrTest::Regex(regex::Regex::new("^(?:.*sh)$").expect("valid regex")),
            set(&["bash"]),
        ];
        let long = "x".repeat(MEMO_MAX_TEXT + 1) + "sh";
        let texts = [
            "curl -s x",
            "/usr/bin/CURL -o a",
            "/Users/bob/Downloads/a.pkg",
            "/tmp/x",
            "zsh",
            "bash",
            "",
            long.as_str(),
        ];
        // Two slots: nearly every answer replaces another.
        let mut memo = TextMemo::new(2);
        for _ in 0..3 {
            for t in &tests {
                for text in texts {
                    assert_eq!(memo.matches(t, text), t.matches(text), "{t:?} on {text:?}");
                }
            }
        }
    }
}
