//! Runs compiled queries over a stream of events: single-event filters match
//! at once; sequences keep bounded per-key state in event time.
//!
//! Sequence semantics follow EQL: for each join key at most one partial
//! sequence waits at each stage; a later match of stage 0 replaces it; an
//! event is offered to the stages from last to first so one event never
//! advances a sequence twice. Events up to `reorder_window_ns` late are held
//! briefly so a stage that arrives before its predecessor still joins.

use std::collections::VecDeque;
use std::sync::Arc;

use super::dispatch::UNTIL_BIT;
use crate::event::Event;
use crate::query::{CompiledQuery, EventFields, SequenceSpec};

#[derive(Debug, Clone, Copy)]
pub struct CorrelatorConfig {
    /// Open partial sequences kept per rule; the oldest is evicted beyond it.
    pub max_open_per_rule: usize,
    /// How late (in event time) an event may arrive and still join.
    pub reorder_window_ns: i64,
    /// Early stage events held per rule while waiting for a late predecessor.
    pub max_late_per_rule: usize,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        CorrelatorConfig {
            max_open_per_rule: 10_000,
            reorder_window_ns: 2_000_000_000,
            max_late_per_rule: 1_024,
        }
    }
}

/// Counters for `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SequenceStats {
    pub open: usize,
    pub evicted: u64,
    pub expired: u64,
    pub completed: u64,
    /// Chains whose join-key hashes matched but values differed (dropped).
    pub hash_collisions: u64,
}

/// A completed match: the events in order and the join key values.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub events: Vec<Arc<Event>>,
    pub key: Vec<String>,
}

/// An event being offered to the rules: borrowed until some stage keeps it,
/// then copied once into an `Arc` that every partial sequence shares.
pub struct SharedEvent<'a> {
    borrowed: Option<&'a Event>,
    arc: std::cell::OnceCell<Arc<Event>>,
    held: std::cell::OnceCell<Held>,
}

/// A copy of an event that a partial sequence or the reorder buffer keeps.
/// Nearly all of them expire unused (a public connection waits for an
/// installer that never comes), so a borrowed event is kept encoded: one
/// allocation instead of one per string, and one free when it goes. It is
/// decoded only when a sequence completes.
#[derive(Clone)]
enum Held {
    Event(Arc<Event>),
    Encoded(Arc<[u8]>),
}

impl Held {
    fn into_event(self) -> Arc<Event> {
        match self {
            Held::Event(e) => e,
            Held::Encoded(bytes) => Arc::new(
                crate::codec::decode_event(&bytes).expect("a held event decodes: encoded here"),
            ),
        }
    }
}

thread_local! {
    /// Scratch space for encoding held events.
    static ENCODE_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<'a> SharedEvent<'a> {
    pub fn borrowed(e: &'a Event) -> SharedEvent<'a> {
        SharedEvent {
            borrowed: Some(e),
            arc: std::cell::OnceCell::new(),
            held: std::cell::OnceCell::new(),
        }
    }

    pub fn from_arc(e: Arc<Event>) -> SharedEvent<'a> {
        SharedEvent {
            borrowed: None,
            arc: std::cell::OnceCell::from(e),
            held: std::cell::OnceCell::new(),
        }
    }

    pub fn event(&self) -> &Event {
        match self.borrowed {
            Some(b) => b,
            None => self.arc.get().expect("from_arc always sets the Arc"),
        }
    }

    /// The shared copy, made on first use.
    pub fn arc(&self) -> Arc<Event> {
        Arc::clone(self.arc.get_or_init(|| Arc::new(self.event().clone())))
    }

    /// The copy for sequence state: the shared `Arc` if there is one
    /// already, else the event encoded (made on first use).
    fn held(&self) -> Held {
        if let Some(arc) = self.arc.get() {
            return Held::Event(Arc::clone(arc));
        }
        if !self.event().extra.is_empty() {
            // A version-1 record has no place for fields outside the
            // schema, which later stages and the alert read.
            return Held::Event(self.arc());
        }
        self.held
            .get_or_init(|| {
                let e = self.event();
                ENCODE_BUF.with_borrow_mut(|buf| {
                    buf.clear();
                    match crate::codec::encode_event_v1_into(e, buf) {
                        Ok(()) => Held::Encoded(Arc::from(buf.as_slice())),
                        // Too deep to decode again: copy it as it is.
                        Err(_) => Held::Event(self.arc()),
                    }
                })
            })
            .clone()
    }
}

/// The hash of a join key ([`StageSpec::key_hash`]); real values are
/// compared before a match is reported.
type JoinKey = u64;

/// Maps keyed by join-key hashes: a fast hasher, as keys are hashes already.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// A stage mask with every stage set: evaluate them all.
pub const ALL_STAGES: u128 = u128::MAX;

struct Partial {
    id: u64,
    events: Vec<Held>,
    first_ts: i64,
    last_ts: i64,
    /// Arrival serial of the last event: with `last_ts` it orders events
    /// that share a timestamp, so no event can join a partial twice.
    last_serial: u64,
}

impl Partial {
    /// The events so far, decoded once and kept decoded (a stage that reads
    /// them may look again).
    fn decoded(&mut self) -> Vec<Arc<Event>> {
        self.events
            .iter_mut()
            .map(|h| {
                let e = h.clone().into_event();
                *h = Held::Event(Arc::clone(&e));
                e
            })
            .collect()
    }
}

/// A held event: its stage and key, arrival serial, timestamp and event.
struct HeldEvent {
    stage: usize,
    key: JoinKey,
    serial: u64,
    ts: i64,
    event: Held,
}

/// Later-stage events that found no predecessor, held for the reorder
/// window in case it arrives late: one queue in arrival order (for expiry
/// and the size bound, which keeps it short), and a count per (stage, key)
/// so that the usual question, "is anything held for this key?", is one
/// lookup. Nothing is allocated per held event but the queue's slot.
struct LateEvents {
    order: VecDeque<HeldEvent>,
    held: HashMap<(usize, JoinKey), u32>,
}

impl LateEvents {
    fn new() -> LateEvents {
        LateEvents {
            order: VecDeque::new(),
            held: HashMap::default(),
        }
    }

    fn push(&mut self, stage: usize, key: JoinKey, ts: i64, e: Held, serial: u64, max: usize) {
        self.order.push_back(HeldEvent {
            stage,
            key,
            serial,
            ts,
            event: e,
        });
        *self.held.entry((stage, key)).or_default() += 1;
        while self.order.len() > max {
            self.pop_oldest();
        }
    }

    fn forget(&mut self, stage: usize, key: JoinKey) {
        if let std::collections::hash_map::Entry::Occupied(mut n) = self.held.entry((stage, key)) {
            *n.get_mut() -= 1;
            if *n.get() == 0 {
                n.remove();
            }
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(h) = self.order.pop_front() {
            self.forget(h.stage, h.key);
        }
    }

    /// The timestamp of the oldest held event.
    fn oldest_ts(&self) -> Option<i64> {
        self.order.front().map(|h| h.ts)
    }

    /// Drops events older than `horizon` (arrival order approximates time order).
    fn expire(&mut self, horizon: i64) {
        while self.oldest_ts().is_some_and(|ts| ts < horizon) {
            self.pop_oldest();
        }
    }

    /// Takes the first held event of `stage`/`key` (in arrival order) that
    /// `fits` (given its arrival serial and timestamp), with that serial.
    fn take(
        &mut self,
        stage: usize,
        key: &JoinKey,
        fits: impl Fn(u64, i64) -> bool,
    ) -> Option<(u64, Arc<Event>)> {
        if !self.held.contains_key(&(stage, *key)) {
            return None;
        }
        let pos = self
            .order
            .iter()
            .position(|h| h.stage == stage && h.key == *key && fits(h.serial, h.ts))?;
        let h = self.order.remove(pos).expect("position is in range");
        self.forget(stage, *key);
        Some((h.serial, h.event.into_event()))
    }
}

/// The state of one sequence rule.
pub struct SequenceState {
    /// `waiting[i]`: partials that have matched stages `0..=i`.
    waiting: Vec<HashMap<JoinKey, Partial>>,
    /// Creation order of partials, for oldest-first eviction and expiry;
    /// entries whose partial is gone are skipped lazily.
    order: VecDeque<(u64, i64, JoinKey)>,
    late: LateEvents,
    next_id: u64,
    /// Events offered so far: the next event's arrival serial.
    arrivals: u64,
    watermark: i64,
    stats: SequenceStats,
}

impl SequenceState {
    pub fn new(spec: &SequenceSpec) -> SequenceState {
        SequenceState {
            waiting: (0..spec.stages.len().saturating_sub(1))
                .map(|_| HashMap::default())
                .collect(),
            order: VecDeque::new(),
            late: LateEvents::new(),
            next_id: 0,
            arrivals: 0,
            watermark: i64::MIN,
            stats: SequenceStats::default(),
        }
    }

    pub fn stats(&self) -> SequenceStats {
        SequenceStats {
            open: self.waiting.iter().map(HashMap::len).sum(),
            ..self.stats
        }
    }

    /// Offers one event; completed sequences are pushed to `out`.
    pub fn process(
        &mut self,
        spec: &SequenceSpec,
        cfg: &CorrelatorConfig,
        e: &Event,
        out: &mut Vec<Match>,
    ) {
        self.process_shared(spec, cfg, &SharedEvent::borrowed(e), out)
    }

    /// [`SequenceState::process`] for an event several rules may keep: it
    /// is copied at most once, when the first stage takes it.
    pub fn process_shared(
        &mut self,
        spec: &SequenceSpec,
        cfg: &CorrelatorConfig,
        shared: &SharedEvent<'_>,
        out: &mut Vec<Match>,
    ) {
        self.offer(spec, cfg, shared, shared.event(), ALL_STAGES, out)
    }

    /// [`SequenceState::process_shared`] knowing that only the stages set
    /// in `may_match` (bit `i`: stage `i`, [`UNTIL_BIT`]: `until`) can match
    /// the event: the others are not evaluated. Filters read the event
    /// through `fields` (the same event, perhaps with memoized tests).
    pub fn offer<F: EventFields + ?Sized>(
        &mut self,
        spec: &SequenceSpec,
        cfg: &CorrelatorConfig,
        shared: &SharedEvent<'_>,
        fields: &F,
        may_match: u128,
        out: &mut Vec<Match>,
    ) {
        let e = shared.event();
        let serial = self.arrivals;
        self.arrivals += 1;
        self.watermark = self.watermark.max(e.timestamp_ns);
        let changed = self.expire(spec, cfg);
        let changed = may_match != 0
            && self.match_stages(spec, cfg, shared, fields, may_match, serial, out)
            || changed;
        // The bound and the bookkeeping only need a look after a change.
        if changed {
            self.enforce_bound(cfg);
        }
    }

    /// Offers the event to the stages in `may_match`; whether a partial may
    /// have been added, advanced or removed.
    #[allow(clippy::too_many_arguments)]
    fn match_stages<F: EventFields + ?Sized>(
        &mut self,
        spec: &SequenceSpec,
        cfg: &CorrelatorConfig,
        shared: &SharedEvent<'_>,
        fields: &F,
        may_match: u128,
        serial: u64,
        out: &mut Vec<Match>,
    ) -> bool {
        let e = shared.event();
        let mut changed = false;
        if let Some(until) = spec
            .until
            .as_ref()
            .filter(|_| may_match & 1 << UNTIL_BIT != 0)
        {
            if until.filter.matches(fields) {
                if let Some(key) = until.key_hash(e) {
                    for stage in &mut self.waiting {
                        stage.remove(&key);
                    }
                    changed = true;
                }
            }
        }
        let last = spec.stages.len() - 1;
        for i in (0..=last).rev() {
            let stage = &spec.stages[i];
            if may_match & 1 << i == 0 || !stage.filter.matches(fields) {
                continue;
            }
            let Some(key) = stage.key_hash(e) else {
                continue;
            };
            changed = true;
            if i == 0 {
                let partial = Partial {
                    id: self.next_id,
                    events: vec![shared.held()],
                    first_ts: e.timestamp_ns,
                    last_ts: e.timestamp_ns,
                    last_serial: serial,
                };
                self.next_id += 1;
                self.place(spec, cfg, 0, key, partial, out);
            } else if !self.advance(spec, cfg, i, &key, shared, serial, out)
                && cfg.reorder_window_ns > 0
            {
                self.late.push(
                    i,
                    key,
                    e.timestamp_ns,
                    shared.held(),
                    serial,
                    cfg.max_late_per_rule,
                );
            }
        }
        changed
    }

    /// Tries to extend the partial waiting before stage `i` with `e`, which
    /// arrived as event number `serial`.
    #[allow(clippy::too_many_arguments)]
    fn advance(
        &mut self,
        spec: &SequenceSpec,
        cfg: &CorrelatorConfig,
        i: usize,
        key: &JoinKey,
        shared: &SharedEvent<'_>,
        serial: u64,
        out: &mut Vec<Match>,
    ) -> bool {
        let e = shared.event();
        let prev = &mut self.waiting[i - 1];
        let Some(p) = prev.get_mut(key) else {
            return false;
        };
        // `e` must come after the partial's last event: later in time, or at
        // the same time but arrived later (never the same event again).
        if (e.timestamp_ns, serial) <= (p.last_ts, p.last_serial)
            || !within(spec, p.first_ts, e.timestamp_ns)
        {
            return false;
        }
        // A stage that reads earlier stages' events (`event0.file.path`)
        // is checked against this partial's.
        if let Some(whole) = &spec.stages[i].with_prior {
            let prior = p.decoded();
            if !whole.matches_in(e, &prior) {
                return false;
            }
        }
        let mut p = prev.remove(key).expect("just looked up");
        let ts = e.timestamp_ns;
        p.events.push(shared.held());
        p.last_ts = ts;
        p.last_serial = serial;
        self.place(spec, cfg, i, *key, p, out);
        true
    }

    /// Stores a partial that has matched stage `i`, or emits it if complete;
    /// then lets a held late event continue it.
    fn place(
        &mut self,
        spec: &SequenceSpec,
        cfg: &CorrelatorConfig,
        i: usize,
        key: JoinKey,
        p: Partial,
        out: &mut Vec<Match>,
    ) {
        if i == spec.stages.len() - 1 {
            // Hashes matched all the way; confirm the values themselves.
            let events: Vec<Arc<Event>> = p.events.into_iter().map(Held::into_event).collect();
            let keys: Vec<Option<Vec<String>>> = spec
                .stages
                .iter()
                .zip(&events)
                .map(|(st, e)| st.key_of(e.as_ref()))
                .collect();
            match keys.first() {
                Some(Some(first)) if keys.iter().all(|k| k.as_ref() == Some(first)) => {
                    self.stats.completed += 1;
                    out.push(Match {
                        events,
                        key: first.clone(),
                    });
                }
                _ => self.stats.hash_collisions += 1,
            }
            return;
        }
        if p.events.len() == 1 {
            self.order.push_back((p.id, p.first_ts, key));
        }
        let (first_ts, last_ts, last_serial) = (p.first_ts, p.last_ts, p.last_serial);
        self.waiting[i].insert(key, p);
        // A later stage that arrived early (out of order) may now join.
        let held = self.late.take(i + 1, &key, |serial, ts| {
            (ts, serial) > (last_ts, last_serial) && within(spec, first_ts, ts)
        });
        if let Some((serial, e)) = held {
            self.advance(
                spec,
                cfg,
                i + 1,
                &key,
                &SharedEvent::from_arc(e),
                serial,
                out,
            );
        }
    }

    /// Raises the watermark to `watermark`: the time of events of the
    /// rule's categories that were not offered (no stage could match them).
    pub fn raise_watermark(&mut self, watermark: i64) {
        self.watermark = self.watermark.max(watermark);
    }

    /// The time `expire` next has work: it drops a held event or a partial
    /// once the watermark less the reorder window passes this.
    pub fn due(&self, spec: &SequenceSpec) -> i64 {
        let late = self.late.oldest_ts().unwrap_or(i64::MAX);
        let open = match (spec.maxspan_ns, self.order.front()) {
            (Some(span), Some((_, first_ts, _))) => first_ts.saturating_add(span),
            _ => i64::MAX,
        };
        late.min(open)
    }

    /// Drops what the watermark has passed; whether any partial's
    /// bookkeeping went with it.
    fn expire(&mut self, spec: &SequenceSpec, cfg: &CorrelatorConfig) -> bool {
        let horizon = self.watermark.saturating_sub(cfg.reorder_window_ns);
        // A held event can only be joined by a predecessor at or before its
        // own time, which must arrive within the reorder window.
        self.late.expire(horizon);
        let Some(span) = spec.maxspan_ns else {
            return false;
        };
        let mut popped = false;
        while let Some((id, first_ts, _)) = self.order.front() {
            if first_ts.saturating_add(span) >= horizon {
                break;
            }
            let (id, _, key) = (*id, (), self.order.pop_front().expect("front exists").2);
            popped = true;
            if self.remove_partial(id, &key) {
                self.stats.expired += 1;
            }
        }
        popped
    }

    fn enforce_bound(&mut self, cfg: &CorrelatorConfig) {
        let mut open: usize = self.waiting.iter().map(HashMap::len).sum();
        while open > cfg.max_open_per_rule {
            let Some((id, _, key)) = self.order.pop_front() else {
                break;
            };
            if self.remove_partial(id, &key) {
                self.stats.evicted += 1;
                open -= 1;
            }
        }
        // Drop bookkeeping for partials that completed or were replaced.
        if self.order.len() > 2 * open + 64 {
            let waiting = &self.waiting;
            self.order.retain(|(id, _, key)| {
                waiting
                    .iter()
                    .any(|w| w.get(key).is_some_and(|p| p.id == *id))
            });
        }
    }

    fn remove_partial(&mut self, id: u64, key: &JoinKey) -> bool {
        for stage in &mut self.waiting {
            if stage.get(key).is_some_and(|p| p.id == id) {
                stage.remove(key);
                return true;
            }
        }
        false
    }
}

fn within(spec: &SequenceSpec, first_ts: i64, ts: i64) -> bool {
    spec.maxspan_ns
        .is_none_or(|span| ts.saturating_sub(first_ts) <= span)
}

/// Per-query state: nothing for filters, a [`SequenceState`] for sequences.
pub enum QueryState {
    Filter,
    Sequence(Box<SequenceState>),
}

impl QueryState {
    pub fn new(q: &CompiledQuery) -> QueryState {
        match q {
            CompiledQuery::Event(_) => QueryState::Filter,
            CompiledQuery::Sequence(s) => QueryState::Sequence(Box::new(SequenceState::new(s))),
        }
    }

    /// Offers an event that can only match the stages set in `may_match`
    /// (see [`SequenceState::offer`]).
    pub fn process<F: EventFields + ?Sized>(
        &mut self,
        q: &CompiledQuery,
        cfg: &CorrelatorConfig,
        shared: &SharedEvent<'_>,
        fields: &F,
        may_match: u128,
        out: &mut Vec<Match>,
    ) {
        match (self, q) {
            (QueryState::Filter, CompiledQuery::Event(f)) => {
                if may_match & 1 != 0 && f.matches(fields) {
                    out.push(Match {
                        events: vec![shared.arc()],
                        key: Vec::new(),
                    });
                }
            }
            (QueryState::Sequence(state), CompiledQuery::Sequence(spec)) => {
                state.offer(spec, cfg, shared, fields, may_match, out)
            }
            _ => unreachable!("QueryState is always built from the same query"),
        }
    }

    pub fn stats(&self) -> SequenceStats {
        match self {
            QueryState::Filter => SequenceStats::default(),
            QueryState::Sequence(s) => s.stats(),
        }
    }
}
