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
