//! Retroactive search over the spool: blocks are picked by time range,
//! decompressed and filtered in parallel, and results stream out in spool
//! order. Sequences and rules need ordered input, so for them the workers
//! only decode (and drop events no stage can use) and one thread correlates.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use dsl::alert::Alert;
use dsl::codec::Decoded;
use dsl::query::memo::{MemoView, StrMemo};
use dsl::query::{CompiledQuery, EventFields, EventFilter};
use dsl::rules::{load_rules, Origin, RuleFile, RuleSet};
use dsl::Event;
use spool::{BlockInfo, SpoolError, SpoolReader, TimeRange};

use crate::history::store::for_each_event;

/// What a hunt saw besides its results.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HuntReport {
    pub blocks_total: usize,
    pub blocks_scanned: usize,
    pub blocks_skipped: usize,
    pub corrupt_blocks: usize,
    pub overwritten_blocks: usize,
    /// Records whose bytes did not decode as an event.
    pub bad_records: u64,
    pub events_scanned: u64,
    pub matches: u64,
}

/// Which events a worker passes on.
pub enum Prefilter<'a> {
    /// Only events matching one of these filters (a filter hunt, or the
    /// stages of a sequence).
    AnyOf(Vec<&'a EventFilter>),
    /// Every event in the range (rule hunts, whose rules may be any shape).
    All,
}

impl Prefilter<'_> {
    pub fn for_query(q: &CompiledQuery) -> Prefilter<'_> {
        match q {
            CompiledQuery::Event(f) => Prefilter::AnyOf(vec![f]),
            CompiledQuery::Sequence(s) => Prefilter::AnyOf(
                s.stages
                    .iter()
                    .chain(s.until.iter())
                    .map(|st| &st.filter)
                    .collect(),
            ),
        }
    }

    /// The filters, for a [`StrMemo`].
    fn filters(&self) -> &[&EventFilter] {
        match self {
            Prefilter::AnyOf(filters) => filters,
            Prefilter::All => &[],
        }
    }

    /// Whether to pass `e` on: evaluated on the undecoded (interned) event,
    /// so only the events kept are materialized.
    pub fn keep<E: EventFields + ?Sized>(&self, e: &E) -> bool {
        match self {
            Prefilter::AnyOf(filters) => filters.iter().any(|f| f.matches(e)),
            Prefilter::All => true,
        }
    }
}

struct BlockResult {
    index: usize,
    events: Vec<Event>,
    scanned: u64,
    bad_records: u64,
    error: Option<SpoolError>,
}

/// Progress callback: (blocks done, blocks total, events scanned); called
/// after each block, it may stop the hunt (cancelled, out of time).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, u64) -> ControlFlow<()>;

/// Scans `reader` for events in `range` that pass `prefilter`, calling
/// `emit` in spool order (oldest block first). `emit` may stop the hunt.
pub fn scan(
    reader: &SpoolReader,
    range: TimeRange,
    prefilter: &Prefilter<'_>,
    threads: usize,
    emit: &mut dyn FnMut(Event) -> ControlFlow<()>,
    progress: Progress<'_>,
) -> HuntReport {
    let blocks: Vec<&BlockInfo> = reader
        .blocks()
        .iter()
        .filter(|b| b.overlaps(&range))
        .collect();
    let mut report = HuntReport {
        blocks_total: reader.blocks().len(),
        blocks_skipped: reader.blocks().len() - blocks.len(),
        ..HuntReport::default()
    };
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let threads = threads.max(1);
    // Bounded so fast workers cannot run far ahead of a slow consumer.
    let (tx, rx) = crossbeam::channel::bounded::<BlockResult>(threads * 4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, stop, blocks) = (&next, &stop, &blocks);
            s.spawn(move || loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(info) = blocks.get(index) else {
                    return;
                };
                if tx
                    .send(read_block(reader, info, index, range, prefilter))
                    .is_err()
                {
                    return;
                }
            });
        }
        drop(tx);
        let mut pending: BTreeMap<usize, BlockResult> = BTreeMap::new();
        let mut want = 0;
        'recv: for result in rx.iter() {
            pending.insert(result.index, result);
            while let Some(r) = pending.remove(&want) {
                want += 1;
                report.events_scanned += r.scanned;
                report.bad_records += r.bad_records;
                match r.error {
                    Some(SpoolError::Overwritten { .. }) => report.overwritten_blocks += 1,
                    Some(_) => report.corrupt_blocks += 1,
                    None => report.blocks_scanned += 1,
                }
                for e in r.events {
                    report.matches += 1;
                    if emit(e).is_break() {
                        stop.store(true, Ordering::Relaxed);
                        break 'recv;
                    }
                }
                if progress(want, blocks.len(), report.events_scanned).is_break() {
                    stop.store(true, Ordering::Relaxed);
                    break 'recv;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        // Unblock workers waiting on a full channel.
        for _ in rx.iter() {}
    });
    report
}

/// Scans like [`scan`] and runs the events, in spool order, through
/// `rules`, calling `on_alert` for each alert (it may stop the hunt).
pub fn correlate(
    reader: &SpoolReader,
    range: TimeRange,
    prefilter: &Prefilter<'_>,
    threads: usize,
    rules: std::sync::Arc<dsl::rules::RuleSet>,
    on_alert: &mut dyn FnMut(&dsl::alert::Alert) -> ControlFlow<()>,
    progress: Progress<'_>,
) -> HuntReport {
    let mut correlator =
        dsl::correlate::Correlator::new(rules, dsl::correlate::CorrelatorConfig::default());
    let mut alerts = Vec::new();
    scan(
        reader,
        range,
        prefilter,
        threads,
        &mut |e| {
            correlator.process(&e, &mut alerts);
            for alert in alerts.drain(..) {
                on_alert(&alert)?;
            }
            ControlFlow::Continue(())
        },
        progress,
    )
}

/// What a hunt asks: a compiled query, and for a sequence query or a rule
/// the rule set the correlator runs.
pub enum Hunt {
    /// Events one filter matches, scanned in parallel.
    Filter(EventFilter),
    /// Events in order through a correlator; `query` (a sequence's) lets
    /// the scan drop events no stage can use.
    Correlate {
        query: Option<CompiledQuery>,
        rules: Arc<RuleSet>,
    },
}

/// One result of a hunt: an event a filter matched, or an alert a sequence
/// or rule raised.
pub enum Found<'a> {
    Event(&'a Event),
    Alert(&'a Alert),
}

/// Why a hunt could not start.
#[derive(Debug, thiserror::Error)]
pub enum HuntError {
    /// The query does not compile; line and column are in the query text.
    #[error("query:{line}:{column}: {message}")]
    Query {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    Rule(String),
}

impl Hunt {
    /// A query in the rule language: a filter scans, a sequence correlates.
    ///
    /// Unlike a rule, a hunt refuses what vigil's events never carry (a
    /// field outside the schema, an `event.type` it never records): over
    /// this spool such a hunt could only come back empty, and the usual
    /// cause is a typo.
    pub fn query(text: &str) -> Result<Hunt, HuntError> {
        let at = |e: &dsl::query::QueryError| {
            let (line, column) = e.line_col(text);
            HuntError::Query {
                line,
                column,
                message: e.message.clone(),
            }
        };
        let (compiled, warnings) = dsl::query::compile_with_warnings(text).map_err(|e| at(&e))?;
        if let Some(w) = warnings.first() {
            return Err(at(w));
        }
        Ok(match compiled {
            CompiledQuery::Event(filter) => Hunt::Filter(filter),
            sequence => Hunt::Correlate {
                rules: single_rule_set(text)?,
                query: Some(sequence),
            },
        })
    }

    /// Every event through these rules: "did this already happen here?"
    pub fn rules(rules: Arc<RuleSet>) -> Hunt {
        Hunt::Correlate { query: None, rules }
    }
}

/// A sequence query becomes a one-rule set so it shares the correlator.
fn single_rule_set(query: &str) -> Result<Arc<RuleSet>, HuntError> {
    let text = format!(
        "rule(#{{ id: \"hunt\", name: \"hunt\", query: {} }});",
        serde_json::Value::String(query.to_string())
    );
    let out = load_rules(&[RuleFile {
        path: "<hunt>".into(),
        text,
        origin: Origin::User,
    }]);
    match out.errors.first() {
        Some(e) => Err(HuntError::Rule(e.message.clone())),
        None => Ok(Arc::new(out.rules)),
    }
}

/// Runs a hunt over `range` of the spool: what the CLI's hunt, fleet hunts
/// and rule replays share. `found` gets each result in spool order and may
/// stop the hunt.
pub fn run_query(
    reader: &SpoolReader,
    range: TimeRange,
    hunt: &Hunt,
    threads: usize,
    found: &mut dyn FnMut(Found<'_>) -> ControlFlow<()>,
    progress: Progress<'_>,
) -> HuntReport {
    match hunt {
        Hunt::Filter(filter) => scan(
            reader,
            range,
            &Prefilter::AnyOf(vec![filter]),
            threads,
            &mut |e| found(Found::Event(&e)),
            progress,
        ),
        Hunt::Correlate { query, rules } => correlate(
            reader,
            range,
            &query.as_ref().map_or(Prefilter::All, Prefilter::for_query),
            threads,
            Arc::clone(rules),
            &mut |a| found(Found::Alert(a)),
            progress,
        ),
    }
}

fn read_block(
    reader: &SpoolReader,
    info: &BlockInfo,
    index: usize,
    range: TimeRange,
    prefilter: &Prefilter<'_>,
) -> BlockResult {
    let mut out = BlockResult {
        index,
        events: Vec::new(),
        scanned: 0,
        bad_records: 0,
        error: None,
    };
    let block = match reader.read_block(info) {
        Ok(b) => b,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    // Every record is decoded in order (the block's strings are defined by
    // its earlier records); only those in range are tested, and only those
    // kept are turned into owned events. String tests are memoized by
    // symbol for the block.
    let whole = range.start_ns <= block.first_ts() && block.last_ts() < range.end_ns;
    let memo = StrMemo::new(prefilter.filters().iter().copied());
    let (counts, error) = for_each_event(
        &block,
        |ts| whole || range.contains(ts),
        |d| {
            let keep = match &d {
                Decoded::View(view) => prefilter.keep(&MemoView { view, memo: &memo }),
                Decoded::Owned(e) => prefilter.keep(&**e),
            };
            if keep {
                out.events.push(d.into_event());
            }
            ControlFlow::Continue(())
        },
    );
    out.scanned = counts.in_range;
    out.bad_records = counts.bad_records;
    out.error = error;
    out
}
