//! Runs a [`RuleSet`] over a stream of events: single-event filters match
//! at once, sequences keep bounded per-key state in event time
//! ([`sequence`]); an index of the rules' literal tests ([`dispatch`]) picks
//! the stages an event may match, so most rules never see most events.
//!
//! Owns: per-rule state, clocks and the dispatch index. Does not: load or
//! compile rules ([`crate::rules`]), or do I/O.

pub mod dispatch;
pub mod lineage;
pub mod sequence;

use std::cell::RefCell;
use std::sync::Arc;

use crate::alert::Alert;
use crate::event::Category;
use crate::event::Event;
use crate::query::memo::{MemoEvent, TextMemo};
use crate::query::CompiledQuery;
use crate::rules::{Rule, RuleSet};
use dispatch::StageIndex;
pub use sequence::{
    CorrelatorConfig, Match, QueryState, SequenceState, SequenceStats, SharedEvent, ALL_STAGES,
};

/// Remembered string-test answers: a few hundred kilobytes at most.
const MEMO_SLOTS: usize = 4096;

/// Runs a [`RuleSet`] over events, keeping per-rule sequence state.
pub struct Correlator {
    rules: Arc<RuleSet>,
    states: Vec<QueryState>,
    clocks: Clocks,
    config: CorrelatorConfig,
    matches: Vec<Match>,
    events_seen: u64,
    /// Alerts not raised because their event had already raised
    /// [`crate::rules::limits::MAX_ALERTS_PER_EVENT`].
    alerts_capped: u64,
    /// `None`: evaluate every stage of every candidate rule (the general
    /// path the index must agree with).
    index: Option<StageIndex>,
    /// Per rule, the stages the current event may match (from the index);
    /// all zero between events.
    may_match: Vec<u128>,
    /// The rules with a stage marked for the current event.
    marked: Vec<u32>,
    /// Answers of costly string tests by text (with the index).
    memo: Option<RefCell<TextMemo>>,
    /// Who started whom and what `descendant of [...]` queries matched;
    /// only when a rule reads lineage.
    lineage: Option<lineage::Lineage>,
}

/// Event time of the sequence rules, kept per set of categories: rules
/// that take the same categories see the same events, so share a clock,
/// and a rule no stage of which can match an event is not touched until
/// its expiry has work.
struct Clocks {
    groups: Vec<ClockGroup>,
    /// Per category, the groups that take it.
    by_category: Vec<Vec<usize>>,
    /// Per rule: its group (`None` for a filter: no state in time).
    group_of: Vec<Option<usize>>,
    /// Per rule: when its expiry next has work
    /// ([`crate::correlate::SequenceState::due`]).
    due: Vec<i64>,
}

struct ClockGroup {
    rules: Vec<usize>,
    /// The newest event time of the group's categories.
    watermark: i64,
    /// At most the smallest `due` of its rules.
    min_due: i64,
}

impl Clocks {
    fn new(rules: &[Rule]) -> Clocks {
        let mut groups: Vec<ClockGroup> = Vec::new();
        let mut masks: Vec<u32> = Vec::new();
        let mut group_of = vec![None; rules.len()];
        for (idx, r) in rules.iter().enumerate() {
            if !matches!(r.query, CompiledQuery::Sequence(_)) {
                continue;
            }
            let mask = r.query.categories().iter().fold(0u32, |m, c| match c {
                Some(c) => m | 1 << c.index(),
                None => u32::MAX,
            });
            let g = masks.iter().position(|&m| m == mask).unwrap_or_else(|| {
                masks.push(mask);
                groups.push(ClockGroup {
                    rules: Vec::new(),
                    watermark: i64::MIN,
                    min_due: i64::MAX,
                });
                groups.len() - 1
            });
            groups[g].rules.push(idx);
            group_of[idx] = Some(g);
        }
        let by_category = Category::ALL
            .iter()
            .map(|c| {
                (0..groups.len())
                    .filter(|&g| masks[g] & 1 << c.index() != 0)
                    .collect()
            })
            .collect();
        Clocks {
            groups,
            by_category,
            group_of,
            due: vec![i64::MAX; rules.len()],
        }
    }
}

/// Per-rule counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStats {
    pub id: String,
    pub sequence: SequenceStats,
    /// Times its `on_match` hook ran over its time budget (from
    /// [`crate::rules::limits::HOOK_OVERRUNS`] on, the hook is not run).
    pub hook_overruns: u32,
}

impl Correlator {
    pub fn new(rules: Arc<RuleSet>, config: CorrelatorConfig) -> Correlator {
        let index = StageIndex::new(rules.rules.iter().map(|r| &r.query));
        Correlator {
            index: Some(index),
            memo: Some(RefCell::new(TextMemo::new(MEMO_SLOTS))),
            ..Correlator::unindexed(rules, config)
        }
    }

    /// A correlator that evaluates every stage of every rule of the event's
    /// category, every test afresh: slower, for checking that
    /// [`Correlator::new`] agrees.
    pub fn unindexed(rules: Arc<RuleSet>, config: CorrelatorConfig) -> Correlator {
        let states = rules
            .rules
            .iter()
            .map(|r| QueryState::new(&r.query))
            .collect();
        let lineage = lineage::Lineage::of(&rules);
        Correlator {
            may_match: vec![0; rules.len()],
            marked: Vec::new(),
            clocks: Clocks::new(&rules.rules),
            rules,
            states,
            config,
            matches: Vec::new(),
            events_seen: 0,
            alerts_capped: 0,
            index: None,
            memo: None,
            lineage,
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Feeds one event; alerts it completes are appended to `alerts`.
    pub fn process(&mut self, e: &Event, alerts: &mut Vec<Alert>) {
        self.process_shared(&SharedEvent::borrowed(e), alerts)
    }

    /// Like [`Correlator::process`] for an event already in an `Arc`: rules
    /// that keep it share it instead of copying.
    pub fn process_arc(&mut self, e: &Arc<Event>, alerts: &mut Vec<Alert>) {
        self.process_shared(&SharedEvent::from_arc(Arc::clone(e)), alerts)
    }

    fn process_shared(&mut self, shared: &SharedEvent<'_>, alerts: &mut Vec<Alert>) {
        self.events_seen += 1;
        let first = alerts.len();
        if let Some(l) = &mut self.lineage {
            l.observe(shared.event());
        }
        let Some(index) = &self.index else {
            return self.offer_all(shared, alerts, first);
        };
        index.mark(shared.event(), &mut self.may_match, &mut self.marked);
        // Out of `self` while the rules' states are borrowed mutably (a
        // fresh one if an earlier call unwound before putting it back).
        let memo = self
            .memo
            .take()
            .unwrap_or_else(|| RefCell::new(TextMemo::new(MEMO_SLOTS)));
        // Out of `self` too, like the memo, while the states are borrowed.
        let lineage = self.lineage.take();
        let fields = MemoEvent {
            event: shared.event(),
            memo: &memo,
            lineage: lineage
                .as_ref()
                .map(|l| l as &dyn crate::query::fields::LineageSource),
        };
        self.expire_due(shared, &fields);
        self.offer_marked(shared, &fields, alerts, first);
        self.memo = Some(memo);
        self.lineage = lineage;
    }

    /// The general path: every rule that takes the event's category is
    /// offered it, with every stage evaluated.
    fn offer_all(&mut self, shared: &SharedEvent<'_>, alerts: &mut Vec<Alert>, first: usize) {
        let rules = &*self.rules;
        let lineage = self.lineage.as_ref();
        for &idx in rules.candidates(shared.event().event.category) {
            let state = &mut self.states[idx];
            let query = &rules.rules[idx].query;
            match lineage {
                Some(l) => state.process(
                    query,
                    &self.config,
                    shared,
                    &lineage::WithLineage {
                        event: shared.event(),
                        lineage: l,
                    },
                    ALL_STAGES,
                    &mut self.matches,
                ),
                None => state.process(
                    query,
                    &self.config,
                    shared,
                    shared.event(),
                    ALL_STAGES,
                    &mut self.matches,
                ),
            }
            if !self.matches.is_empty() {
                for m in self.matches.drain(..) {
                    // One event raises a bounded number of alerts (a rule
                    // file looping out thousands of rules cannot flood).
                    if alerts.len() - first >= crate::rules::limits::MAX_ALERTS_PER_EVENT {
                        self.alerts_capped += 1;
                        continue;
                    }
                    alerts.extend(rules.make_alert(idx, m));
                }
            }
        }
    }

    /// Moves the clocks of the event's categories and lets the rules whose
    /// expiry is due, but that the event cannot advance, expire.
    fn expire_due(&mut self, shared: &SharedEvent<'_>, fields: &MemoEvent<'_>) {
        let rules = &*self.rules;
        let ts = shared.event().timestamp_ns;
        for &g in &self.clocks.by_category[shared.event().event.category.index()] {
            let group = &mut self.clocks.groups[g];
            group.watermark = group.watermark.max(ts);
            let horizon = group
                .watermark
                .saturating_sub(self.config.reorder_window_ns);
            if group.min_due >= horizon {
                continue;
            }
            let mut min_due = i64::MAX;
            for &idx in &group.rules {
                // A marked rule is offered the event next, expiring first.
                if self.clocks.due[idx] < horizon && self.may_match[idx] == 0 {
                    let (QueryState::Sequence(state), CompiledQuery::Sequence(spec)) =
                        (&mut self.states[idx], &rules.rules[idx].query)
                    else {
                        unreachable!("only sequences have clocks");
                    };
                    state.raise_watermark(group.watermark);
                    state.offer(spec, &self.config, shared, fields, 0, &mut self.matches);
                    self.clocks.due[idx] = state.due(spec);
                }
                min_due = min_due.min(self.clocks.due[idx]);
            }
            group.min_due = min_due;
        }
    }

    /// Offers the event to the rules the index marked, in rule order (the
    /// order of their alerts).
    fn offer_marked(
        &mut self,
        shared: &SharedEvent<'_>,
        fields: &MemoEvent<'_>,
        alerts: &mut Vec<Alert>,
        first: usize,
    ) {
        let rules = &*self.rules;
        self.marked.sort_unstable();
        for &idx in &self.marked {
            let idx = idx as usize;
            let may_match = std::mem::take(&mut self.may_match[idx]);
            match (&mut self.states[idx], &rules.rules[idx].query) {
                (QueryState::Sequence(state), CompiledQuery::Sequence(spec)) => {
                    let g = self.clocks.group_of[idx].expect("every sequence has a clock");
                    let group = &mut self.clocks.groups[g];
                    state.raise_watermark(group.watermark);
                    state.offer(
                        spec,
                        &self.config,
                        shared,
                        fields,
                        may_match,
                        &mut self.matches,
                    );
                    let due = state.due(spec);
                    self.clocks.due[idx] = due;
                    group.min_due = group.min_due.min(due);
                }
                (state, query) => state.process(
                    query,
                    &self.config,
                    shared,
                    fields,
                    may_match,
                    &mut self.matches,
                ),
            }
            if !self.matches.is_empty() {
                for m in self.matches.drain(..) {
                    // One event raises a bounded number of alerts (a rule
                    // file looping out thousands of rules cannot flood).
                    if alerts.len() - first >= crate::rules::limits::MAX_ALERTS_PER_EVENT {
                        self.alerts_capped += 1;
                        continue;
                    }
                    alerts.extend(rules.make_alert(idx, m));
                }
            }
        }
        self.marked.clear();
    }

    pub fn events_seen(&self) -> u64 {
        self.events_seen
    }

    /// Alerts dropped by the per-event cap.
    pub fn alerts_capped(&self) -> u64 {
        self.alerts_capped
    }

    pub fn stats(&self) -> Vec<RuleStats> {
        self.rules
            .rules
            .iter()
            .zip(&self.states)
            .map(|(r, s)| RuleStats {
                id: r.meta.id.clone(),
                sequence: s.stats(),
                hook_overruns: r.hook_overruns(),
            })
            .collect()
    }
}
