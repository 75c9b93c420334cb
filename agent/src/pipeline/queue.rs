//! The bounded, lock-free hand-off between sources and the pipeline thread.
//! Sources call [`EventSender::push`], which never blocks: when the queue is
//! full the event is dropped and counted, because stalling an OS callback
//! (Endpoint Security, netlink) is worse than losing one event.
//!
//! Slots hold boxed events: a slot is then 16 bytes, not the size of an
//! `Event`, so the default 65,536-slot queue costs 1 MiB of memory instead
//! of tens of MiB once every slot has been used.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::channel::{self, Receiver, Sender, TrySendError};
use dsl::Event;

#[derive(Debug, Default)]
pub struct QueueCounters {
    pub received: AtomicU64,
    pub dropped: AtomicU64,
}

#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Box<Event>>,
    counters: Arc<QueueCounters>,
}

impl EventSender {
    /// Non-blocking push; `false` if the event was dropped (queue full or
    /// pipeline gone).
    pub fn push(&self, e: Event) -> bool {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Box::new(e)) {
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
    pub fn push_wait(&self, e: Event) -> bool {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        self.tx.send(Box::new(e)).is_ok()
    }
}

/// Creates a queue holding at most `capacity` events (crossbeam's array
/// flavour: lock-free for `try_send`).
pub fn event_queue(capacity: usize) -> (EventSender, Receiver<Box<Event>>, Arc<QueueCounters>) {
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
