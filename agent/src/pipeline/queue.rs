//! The bounded, lock-free hand-off between sources and the pipeline thread.
//! Sources call [`EventSender::push`], which never blocks: when the queue is
//! full the event is dropped and counted, because stalling an OS callback
//! (Endpoint Security, netlink) is worse than losing one event.
//!
//! Slots hold `Arc`ed events: a slot is then 16 bytes, not the size of an
//! `Event`, so the default 65,536-slot queue costs 1 MiB of memory instead
//! of tens of MiB once every slot has been used; and the pipeline shares
//! the same allocation with the correlator and the spool thread, without
//! copying the event again.
//!
//! Finished events travel back: the spool thread hands them to
//! [`Reclaim`] in batches and a source frees one batch on its next push.
//! An event's ~30 strings were allocated by a source thread, and freeing
//! them on a source thread is, with one source thread (synthetic, replay,
//! eslogger), a plain free; on the spool thread each one was an atomic
//! hand-back to the source thread's heap, which then had to collect it
//! again (about a third of the spool thread's time). Sources with several
//! threads (Linux: process connector, fanotify, sockets) share one channel,
//! so some of their frees still cross threads, but none run on the spool
//! thread. A push that frees a batch takes ~256 events' frees longer; it
//! never waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use dsl::Event;

use crate::wake::Waker;

/// How long `push_wait` sleeps on a full queue: the pipeline takes only a
/// few hundred of its tens of thousands of events meanwhile.
const FULL_QUEUE_NAP: std::time::Duration = std::time::Duration::from_micros(500);

/// Finished events wait in batches of this many for their source.
pub const RECLAIM_BATCH: usize = 256;

/// Batches that may wait for a source: a source that stops pushing keeps at
/// most this many batches alive; beyond it they are freed where they are.
const RECLAIM_BATCHES: usize = 8;

#[derive(Debug)]
pub struct QueueCounters {
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    /// While the pipeline naps: the `received` count whose push wakes it
    /// (`u64::MAX`: awake). A burst then ends the nap long before the
    /// queue is full, however long `queue.batch_ms` is.
    wake_at: AtomicU64,
    /// How a push wakes the napping pipeline (unset: it cannot be woken).
    waker: OnceLock<Waker>,
}

impl Default for QueueCounters {
    fn default() -> Self {
        QueueCounters {
            received: AtomicU64::default(),
            dropped: AtomicU64::default(),
            wake_at: AtomicU64::new(u64::MAX),
            waker: OnceLock::new(),
        }
    }
}

impl QueueCounters {
    /// How pushes wake the pipeline's nap (the first call wins).
    pub fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    /// Before a nap: the `after`-th event pushed from now on ends it.
    pub fn arm_wake(&self, after: u64) {
        if self.waker.get().is_some() {
            let now = self.received.load(Ordering::Relaxed);
            self.wake_at.store(now + after.max(1), Ordering::Relaxed);
        }
    }

    /// After a nap: pushes wake nobody.
    pub fn disarm_wake(&self) {
        self.wake_at.store(u64::MAX, Ordering::Relaxed);
    }

    /// Counts one pushed event, and wakes the napping pipeline if it is
    /// the one it asked to be woken at (once: the first to see it disarms).
    fn count_received(&self) {
        let n = self.received.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.wake_at.load(Ordering::Relaxed)
            && self.wake_at.swap(u64::MAX, Ordering::Relaxed) != u64::MAX
        {
            if let Some(w) = self.waker.get() {
                w.wake();
            }
        }
    }
}

#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Arc<Event>>,
    counters: Arc<QueueCounters>,
    finished: Receiver<Vec<Arc<Event>>>,
}

impl EventSender {
    /// Non-blocking push; `false` if the event was dropped (queue full or
    /// pipeline gone).
    pub fn push(&self, e: Event) -> bool {
        self.counters.count_received();
        let sent = match self.tx.try_send(Arc::new(e)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        };
        self.free_finished();
        sent
    }

    /// Slots in the queue (`None`: unbounded).
    pub fn capacity(&self) -> Option<usize> {
        self.tx.capacity()
    }

    /// Frees one batch of events the pipeline is done with, if one is
    /// waiting; whether there was one. One batch per push keeps up with the
    /// events pushed and bounds the time a push can take.
    fn free_finished(&self) -> bool {
        self.finished.try_recv().map(drop).is_ok()
    }
}

impl EventSender {
    /// Blocking push for sources that read files and may wait (replay):
    /// `false` only if the pipeline is gone.
    ///
    /// A full queue is waited out by napping, not by blocking in `send`: a
    /// blocked sender makes the pipeline wake it (a futex call) for every
    /// event it takes, a tenth of its time while a replay keeps it full.
    pub fn push_wait(&self, e: Event) -> bool {
        self.counters.count_received();
        let mut e = Arc::new(e);
        loop {
            match self.tx.try_send(e) {
                Ok(()) => {
                    self.free_finished();
                    return true;
                }
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    e = back;
                    // Waiting is the time to free finished events.
                    if !self.free_finished() {
                        std::thread::sleep(FULL_QUEUE_NAP);
                    }
                }
            }
        }
    }
}

/// Where the spool thread hands finished events back to the sources.
/// Never blocks: when the sources are not taking batches, a batch is freed
/// by the caller instead.
#[derive(Clone)]
pub struct Reclaim {
    tx: Sender<Vec<Arc<Event>>>,
}

impl Reclaim {
    pub fn give_back(&self, batch: Vec<Arc<Event>>) {
        // A full channel or no source left: the batch comes back in the
        // error and is freed here.
        let _ = self.tx.try_send(batch);
    }
}

/// Both ends of the hand-off, and what the pipeline shares with sources.
pub struct EventQueue {
    pub sender: EventSender,
    pub receiver: Receiver<Arc<Event>>,
    pub counters: Arc<QueueCounters>,
    pub reclaim: Reclaim,
}

/// Creates a queue holding at most `capacity` events (crossbeam's array
/// flavour: lock-free for `try_send`).
pub fn event_queue(capacity: usize) -> EventQueue {
    let (tx, receiver) = channel::bounded(capacity.max(1));
    let (reclaim_tx, finished) = channel::bounded(RECLAIM_BATCHES);
    let counters = Arc::new(QueueCounters::default());
    EventQueue {
        sender: EventSender {
            tx,
            counters: Arc::clone(&counters),
            finished,
        },
        receiver,
        counters,
        reclaim: Reclaim { tx: reclaim_tx },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake::WakeOnDemand;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    /// Whether `nap` is woken within a 100 ms wait.
    fn woken(nap: &WakeOnDemand) -> bool {
        let started = Instant::now();
        nap.wait(None::<&UnixStream>, Some(Duration::from_millis(100)));
        started.elapsed() < Duration::from_millis(90)
    }

    #[test]
    fn the_armed_push_ends_the_nap_once() {
        let queue = event_queue(64);
        let nap = WakeOnDemand::new().unwrap();
        // Not armed yet: pushes wake nobody.
        assert!(queue.sender.push(Event::default()));
        queue.counters.set_waker(nap.waker());
        assert!(queue.sender.push(Event::default()));
        assert!(!woken(&nap));
        queue.counters.arm_wake(3);
        assert!(queue.sender.push(Event::default()));
        assert!(queue.sender.push(Event::default()));
        assert!(!woken(&nap), "woken before the third push");
        assert!(queue.sender.push(Event::default()));
        assert!(woken(&nap), "the third push did not wake the nap");
        // Woken once: the next pushes do not wake again.
        assert!(queue.sender.push(Event::default()));
        assert!(!woken(&nap));
        // Disarmed by the pipeline: neither.
        queue.counters.arm_wake(1);
        queue.counters.disarm_wake();
        assert!(queue.sender.push(Event::default()));
        assert!(!woken(&nap));
    }

    #[test]
    fn give_back_never_blocks_and_frees_what_no_source_takes() {
        let queue = event_queue(4);
        let waiting: Vec<Arc<Event>> = (0..RECLAIM_BATCHES).map(|_| Arc::default()).collect();
        for e in &waiting {
            queue.reclaim.give_back(vec![Arc::clone(e)]);
        }
        // Every slot is taken: one more batch is freed by the caller.
        let extra = Arc::<Event>::default();
        let handle = Arc::downgrade(&extra);
        queue.reclaim.give_back(vec![extra]);
        assert_eq!(handle.strong_count(), 0);
        assert!(waiting.iter().all(|e| Arc::strong_count(e) == 2));
        // Each push frees one waiting batch.
        assert!(queue.sender.push(Event::default()));
        assert_eq!(
            waiting.iter().filter(|e| Arc::strong_count(e) == 1).count(),
            1
        );
    }
}
