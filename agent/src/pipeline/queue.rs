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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use dsl::Event;

/// How long `push_wait` sleeps on a full queue: the pipeline takes only a
/// few hundred of its tens of thousands of events meanwhile.
const FULL_QUEUE_NAP: std::time::Duration = std::time::Duration::from_micros(500);

#[derive(Debug, Default)]
pub struct QueueCounters {
    pub received: AtomicU64,
    pub dropped: AtomicU64,
}

#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Arc<Event>>,
    counters: Arc<QueueCounters>,
}

impl EventSender {
    /// Non-blocking push; `false` if the event was dropped (queue full or
    /// pipeline gone).
    pub fn push(&self, e: Event) -> bool {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Arc::new(e)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
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
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let mut e = Arc::new(e);
        loop {
            match self.tx.try_send(e) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    e = back;
                    std::thread::sleep(FULL_QUEUE_NAP);
                }
            }
        }
    }
}

/// Creates a queue holding at most `capacity` events (crossbeam's array
/// flavour: lock-free for `try_send`).
pub fn event_queue(capacity: usize) -> (EventSender, Receiver<Arc<Event>>, Arc<QueueCounters>) {
    let (tx, rx) = channel::bounded(capacity.max(1));
    let counters = Arc::new(QueueCounters::default());
    (
        EventSender {
            tx,
            counters: Arc::clone(&counters),
        },
        rx,
        counters,
    )
}
