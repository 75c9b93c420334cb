//! The spool's own thread. The pipeline thread enriches and correlates;
//! this one encodes, compresses and writes every event to the spool, keeps
//! the recent-events ring for `window:` context, and hands events that
//! leave the ring back to the sources to be freed (see `queue::Reclaim`).
//! That is about half of an event's cost, so on two cores the two halves
//! run side by side.
//!
//! Everything reaches the thread through one FIFO channel, so whatever the
//! pipeline asks comes after every event it handed over before: a window
//! request sees the events before its match, a flush seals them all.
//! Events travel in batches so the channel costs little per event.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender, TryRecvError};
use dsl::alert::RawJson;
use dsl::Event;
use spool::SpoolReader;

use super::commit::window_value;
use super::queue::{Reclaim, RECLAIM_BATCH};
use super::recent::RecentEvents;
use super::status::SpoolUsage;
use super::{PipelineCounters, PipelineError};
use crate::history::context::alert_window;
use crate::history::store::{refreshed_reader, EventSpool};

/// Events per message to the spool thread.
const BATCH: usize = 256;
/// Messages in flight before the pipeline waits for the spool thread.
const CHANNEL_BATCHES: usize = 64;
/// Batches that may wait for a sleeping spool thread before a send wakes
/// it: under load it is woken every few thousand events and never waits
/// for its timer. Above what a second of a busy Mac (2,000 events) fills,
/// which the timer takes.
const WAKE_AT_BATCHES: usize = 16;
/// How long handed-over events may wait for a sleeping spool thread. Every
/// wake-up costs the thread a cache refill (~0.3 ms on the benchmark VM);
/// at a few thousand events a second, one a second instead of one per nap
/// of the pipeline takes ~0.1 % of a core off the agent. The spool seals a
/// block once a second anyway (`spool.max_batch_age_ms`), and whoever
/// waits for the spool (an alert's window, a flush) wakes it at once.
const HANDOFF_AGE: Duration = Duration::from_secs(1);
/// The least an idle spool thread sleeps before sealing a batch that has
/// grown old: how late past its age a block may be sealed, and how often a
/// failing seal is retried. Also how early an awake thread seals a batch
/// about to be due (at most a quarter of its age), sparing a wake-up.
const SEAL_SLACK: Duration = Duration::from_millis(100);
/// How long the spool thread sleeps with no batch open (it has nothing to
/// do until a message comes).
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// The host's events before an alert's match: `[first - window, last)`.
#[derive(Debug, Clone)]
pub struct WindowRequest {
    pub host: Option<String>,
    pub first_ns: i64,
    pub last_ns: i64,
    pub window_ns: i64,
}

/// The answer to a window request: `enrichments.window`, or nothing when
/// neither memory nor the spool could be read.
pub type WindowReply = Receiver<Option<RawJson>>;

enum SpoolMsg {
    Events(Vec<Arc<Event>>),
    Window(WindowRequest, Sender<Option<RawJson>>),
    Flush(Sender<Result<(), PipelineError>>),
}

/// The pipeline's end of the spool thread.
pub struct SpoolThread {
    tx: Option<Sender<SpoolMsg>>,
    batch: Vec<Arc<Event>>,
    /// When the oldest message the thread was not woken for was sent.
    unwoken_since: Option<Instant>,
    thread: Option<JoinHandle<()>>,
    usage: Arc<Mutex<Option<SpoolUsage>>>,
    counters: Arc<PipelineCounters>,
}

impl SpoolThread {
    /// Starts the thread. `spool`: where events go (none: the ring only);
    /// `recent`: the window ring (capacity 0 keeps nothing).
    pub fn start(
        spool: Option<(EventSpool, PathBuf)>,
        recent: RecentEvents,
        window_max_events: usize,
        counters: Arc<PipelineCounters>,
        reclaim: Option<Reclaim>,
    ) -> Result<SpoolThread, PipelineError> {
        let (tx, rx) = channel::bounded(CHANNEL_BATCHES);
        let usage = Arc::new(Mutex::new(None));
        let worker = SpoolWorker {
            spool,
            reader: None,
            recent,
            window_max_events,
            counters: Arc::clone(&counters),
            usage: Arc::clone(&usage),
            deferred: Vec::new(),
            reclaim,
            finished: Vec::new(),
        };
        worker.publish_usage();
        let thread = std::thread::Builder::new()
            .name("spool".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| PipelineError::Thread("spool", e))?;
        Ok(SpoolThread {
            tx: Some(tx),
            batch: Vec::with_capacity(BATCH),
            unwoken_since: None,
            thread: Some(thread),
            usage,
            counters,
        })
    }

    /// Hands one event over (in the next batch).
    pub fn push(&mut self, e: Arc<Event>) {
        self.batch.push(e);
        if self.batch.len() >= BATCH {
            self.send_batch();
        }
    }

    /// Sends the events collected so far (the pipeline calls this before it
    /// naps, so nothing waits for a batch to fill).
    pub fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let events = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let n = events.len() as u64;
        if !self.send(SpoolMsg::Events(events), false) {
            self.counters.spool_errors.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// At the pipeline's nap: sends the events collected so far, and wakes
    /// the spool thread if what it was handed has waited [`HANDOFF_AGE`].
    pub fn hand_off(&mut self) {
        self.send_batch();
        self.forget_if_drained();
        if self.overdue() {
            self.wake();
        }
    }

    /// An empty channel: the thread took everything handed over (its seal
    /// timer woke it), so nothing waits for it any more.
    fn forget_if_drained(&mut self) {
        if self.tx.as_ref().is_some_and(|tx| tx.is_empty()) {
            self.unwoken_since = None;
        }
    }

    /// Whether what the sleeping thread was handed has waited [`HANDOFF_AGE`].
    fn overdue(&self) -> bool {
        self.unwoken_since
            .is_some_and(|t| t.elapsed() >= HANDOFF_AGE)
    }

    /// Asks for an alert's window; the answer waits in the returned channel.
    pub fn window(&mut self, request: WindowRequest) -> WindowReply {
        self.send_batch();
        let (tx, rx) = channel::bounded(1);
        // A lost request leaves the reply channel closed: no window.
        self.send(SpoolMsg::Window(request, tx), true);
        rx
    }

    /// Seals every event handed over so far into the spool.
    pub fn flush(&mut self) -> Result<(), PipelineError> {
        self.send_batch();
        let (tx, rx) = channel::bounded(1);
        if !self.send(SpoolMsg::Flush(tx), true) {
            return Err(PipelineError::SpoolThreadStopped);
        }
        rx.recv().map_err(|_| PipelineError::SpoolThreadStopped)?
    }

    /// The writer's figures, as of the last message the thread handled.
    pub fn usage(&self) -> Option<SpoolUsage> {
        self.usage.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// Flushes, then stops the thread and waits for it.
    pub fn finish(&mut self) -> Result<(), PipelineError> {
        let flushed = self.flush();
        self.tx = None;
        self.wake();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                return Err(PipelineError::SpoolThreadPanicked);
            }
        }
        flushed
    }

    /// Ends the spool thread's sleep: it has messages, or its channel closed.
    fn wake(&mut self) {
        self.unwoken_since = None;
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }

    /// Queues `msg`; wakes the thread when someone waits for the answer
    /// (`urgent`), when batches pile up, or when the oldest waited too long.
    fn send(&mut self, msg: SpoolMsg, urgent: bool) -> bool {
        // What is sent now may be the oldest waiting.
        self.forget_if_drained();
        let Some(backlog) = self
            .tx
            .as_ref()
            .and_then(|tx| tx.send(msg).ok().map(|()| tx.len()))
        else {
            tracing::error!("the spool thread has stopped: events are not spooled");
            return false;
        };
        self.unwoken_since.get_or_insert_with(Instant::now);
        if urgent || backlog >= WAKE_AT_BATCHES || self.overdue() {
            self.wake();
        }
        true
    }
}

impl Drop for SpoolThread {
    fn drop(&mut self) {
        self.send_batch();
        // Closing the channel ends the thread, which seals what it holds.
        self.tx = None;
        self.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct SpoolWorker {
    spool: Option<(EventSpool, PathBuf)>,
    reader: Option<SpoolReader>,
    recent: RecentEvents,
    window_max_events: usize,
    counters: Arc<PipelineCounters>,
    usage: Arc<Mutex<Option<SpoolUsage>>>,
    /// Window requests the ring could not answer: answered from the spool
    /// once the channel is empty, with one seal for all of them.
    deferred: Vec<(WindowRequest, Sender<Option<RawJson>>)>,
    /// Finished events go back to the sources in batches (see
    /// [`Reclaim`]); without it they are freed here.
    reclaim: Option<Reclaim>,
    finished: Vec<Arc<Event>>,
}

impl SpoolWorker {
    fn run(mut self, rx: Receiver<SpoolMsg>) {
        loop {
            // Asleep until a message comes or the open batch is due.
            let wait = self
                .spool
                .as_ref()
                .and_then(|(spool, _)| spool.seal_due_in())
                .map_or(IDLE_WAIT, |due| due.max(SEAL_SLACK));
            // Parked, not blocked in the channel: a blocking receive spins
            // before it sleeps, which on a VM costs more than the wake-up.
            // The pipeline unparks it when a message cannot wait (see
            // `SpoolThread::send`) and when the channel closes; otherwise
            // messages wait here for the seal timer.
            let msg = match rx.try_recv() {
                Err(TryRecvError::Empty) => {
                    std::thread::park_timeout(wait);
                    rx.try_recv()
                }
                got => got,
            };
            match msg {
                Ok(SpoolMsg::Events(events)) => {
                    // Counted once per batch: the counters share a cache line
                    // with the pipeline thread's, which a per-event add would
                    // pull back and forth between the cores.
                    let mut spooled = 0;
                    for e in events {
                        spooled += u64::from(self.append(e));
                    }
                    self.counters.spooled.fetch_add(spooled, Ordering::Relaxed);
                }
                Ok(SpoolMsg::Window(request, reply)) => self.window(request, reply),
                Ok(SpoolMsg::Flush(reply)) => {
                    self.answer_deferred();
                    let _ = reply.send(self.flush());
                }
                // Woken by the timer (or spuriously): seal if due.
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => break,
            }
            if rx.is_empty() {
                self.answer_deferred();
            }
            if let Some((spool, _)) = self.spool.as_mut() {
                // Awake anyway: a batch due within the slack is sealed now
                // rather than by another wake-up moments later.
                if let Err(err) = spool.seal_if_due_within(SEAL_SLACK) {
                    tracing::warn!(error = %err, "spool seal failed");
                }
            }
            self.publish_usage();
        }
        self.answer_deferred();
        if let Err(err) = self.flush() {
            tracing::error!(error = %format!("{err:#}"), "sealing the spool at exit failed");
        }
        self.publish_usage();
    }

    /// Spools one event (and keeps it in the ring); whether it was spooled.
    fn append(&mut self, e: Arc<Event>) -> bool {
        let spooled = match self.spool.as_mut().map(|(spool, _)| spool.append(&e)) {
            Some(Ok(())) => true,
            Some(Err(err)) => {
                // A record that cannot be stored must not stop detection.
                tracing::warn!(error = %err, "spool append failed");
                self.counters.spool_errors.fetch_add(1, Ordering::Relaxed);
                false
            }
            None => false,
        };
        let done = if self.window_max_events > 0 {
            self.recent.push(e)
        } else {
            Some(e)
        };
        if let (Some(e), Some(reclaim)) = (done, &self.reclaim) {
            self.finished.push(e);
            if self.finished.len() >= RECLAIM_BATCH {
                let batch =
                    std::mem::replace(&mut self.finished, Vec::with_capacity(RECLAIM_BATCH));
                reclaim.give_back(batch);
            }
        }
        spooled
    }

    fn flush(&mut self) -> Result<(), PipelineError> {
        match self.spool.as_mut() {
            Some((spool, _)) => Ok(spool.flush()?),
            None => Ok(()),
        }
    }

    /// From the ring when it can tell exactly; otherwise later, from the spool.
    fn window(&mut self, request: WindowRequest, reply: Sender<Option<RawJson>>) {
        let start = request.first_ns.saturating_sub(request.window_ns);
        let found = self.recent.window(
            request.host.as_deref(),
            start,
            request.last_ns,
            self.window_max_events,
        );
        match found {
            Some(found) => {
                let _ = reply.send(Some(window_value(start, request.last_ns, Ok(found))));
            }
            None => self.deferred.push((request, reply)),
        }
    }

    fn answer_deferred(&mut self) {
        if self.deferred.is_empty() {
            return;
        }
        // The events that led to the alerts must be readable: seal them.
        if let Err(err) = self.flush() {
            tracing::warn!(error = %format!("{err:#}"), "spool flush for alert context failed");
        }
        let deferred = std::mem::take(&mut self.deferred);
        let max = self.window_max_events;
        let reader = self.reader();
        for (request, reply) in deferred {
            let value = reader.map(|r| {
                let start = request.first_ns.saturating_sub(request.window_ns);
                let found = alert_window(
                    r,
                    request.host.as_deref(),
                    request.first_ns,
                    request.last_ns,
                    request.window_ns,
                    max,
                );
                window_value(start, request.last_ns, found)
            });
            let _ = reply.send(value);
        }
    }

    /// The reader of the spool, refreshed to see every sealed block.
    fn reader(&mut self) -> Option<&SpoolReader> {
        let (_, path) = self.spool.as_ref()?;
        refreshed_reader(&mut self.reader, path)
    }

    fn publish_usage(&self) {
        let usage = self.spool.as_ref().map(|(s, _)| {
            let w = s.writer();
            let st = w.stats();
            SpoolUsage {
                path: w.path().to_path_buf(),
                capacity_bytes: w.capacity(),
                blocks_written: st.blocks_written,
                records_written: st.records_written,
                compressed_bytes: st.compressed_bytes,
                blocks_overwritten: st.blocks_overwritten,
                pending_records: st.pending_records,
                ..SpoolUsage::default()
            }
        });
        if let Ok(mut u) = self.usage.lock() {
            *u = usage;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::recent::tests::ev;
    use serde_json::Value;
    use spool::SpoolConfig;

    fn start(dir: &std::path::Path, ring: usize) -> (SpoolThread, Arc<PipelineCounters>) {
        start_with(dir, ring, None)
    }

    fn start_with(
        dir: &std::path::Path,
        ring: usize,
        reclaim: Option<Reclaim>,
    ) -> (SpoolThread, Arc<PipelineCounters>) {
        let path = dir.join("t.spool");
        let spool = EventSpool::open(
            &path,
            SpoolConfig {
                capacity_bytes: 4 << 20,
                ..SpoolConfig::default()
            },
        )
        .unwrap();
        let counters = Arc::<PipelineCounters>::default();
        let t = SpoolThread::start(
            Some((spool, path)),
            RecentEvents::new(ring, false),
            3,
            Arc::clone(&counters),
            reclaim,
        )
        .unwrap();
        (t, counters)
    }

    #[test]
    fn finished_events_go_back_to_the_source_which_frees_them() {
        let dir = tempfile::tempdir().unwrap();
        let queue = crate::pipeline::queue::event_queue(4);
        let (mut t, _) = start_with(dir.path(), 3, Some(queue.reclaim.clone()));
        let events: Vec<Arc<Event>> = (0..RECLAIM_BATCH as i64 + 3)
            .map(|ts| ev("a", ts))
            .collect();
        let handles: Vec<_> = events.iter().map(Arc::downgrade).collect();
        for e in events {
            t.push(e);
        }
        t.flush().unwrap();
        // The ring keeps the last 3; the batch before them waits for the
        // source, still allocated: the spool thread freed none of them.
        assert!(handles.iter().all(|h| h.strong_count() == 1));
        // The source's next push frees that batch, on the source's thread.
        assert!(queue.sender.push(Event::default()));
        let (returned, kept) = handles.split_at(RECLAIM_BATCH);
        assert!(returned.iter().all(|h| h.strong_count() == 0));
        assert!(kept.iter().all(|h| h.strong_count() == 1));
        t.finish().unwrap();
    }

    fn request(first_ns: i64, last_ns: i64, window_ns: i64) -> WindowRequest {
        WindowRequest {
            host: Some("a".into()),
            first_ns,
            last_ns,
            window_ns,
        }
    }

    fn stamps(window: &Value) -> Vec<i64> {
        window["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| dsl::time::parse_rfc3339(e["@timestamp"].as_str().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn windows_come_from_the_ring_or_the_spool_alike() {
        let dir = tempfile::tempdir().unwrap();
        // A ring of 7 events: it answers a window of the latest 3 only
        // while it also holds a 4th, older one (so it knows the truncation).
        let (mut t, counters) = start(dir.path(), 7);
        for ts in 1..=10 {
            t.push(ev(if ts % 5 == 0 { "b" } else { "a" }, ts * 1000));
        }
        // [6000 - 4000, 9000): host a's latest 3 are 6, 7, 8, and 4 is in
        // the ring too (it holds 4..=10).
        let from_ring = t.window(request(6000, 9000, 4000));
        // [3000 - 1000, 4000): 2 and 3 fell out of the ring: from the spool.
        let from_spool = t.window(request(3000, 4000, 1000));
        let parsed = |w: RawJson| serde_json::from_str::<Value>(w.0.get()).unwrap();
        let from_ring = parsed(from_ring.recv().unwrap().unwrap());
        let from_spool = parsed(from_spool.recv().unwrap().unwrap());
        assert_eq!(stamps(&from_ring), vec![6000, 7000, 8000]);
        assert_eq!(from_ring["truncated"], true);
        assert_eq!(stamps(&from_spool), vec![2000, 3000]);
        assert_eq!(from_spool["truncated"], false);
        t.finish().unwrap();
        assert_eq!(counters.spooled.load(Ordering::Relaxed), 10);
        let usage = t.usage().unwrap();
        assert_eq!(usage.records_written, 10);
        assert_eq!(usage.pending_records, 0);
    }

    #[test]
    fn a_flush_seals_every_event_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let (mut t, _) = start(dir.path(), 0);
        for ts in 1..=5 {
            t.push(ev("a", ts));
        }
        t.flush().unwrap();
        let reader = SpoolReader::open(&dir.path().join("t.spool")).unwrap();
        assert_eq!(reader.info().records, 5);
    }
}
