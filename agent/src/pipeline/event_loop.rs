//! The pipeline thread's loop: events back to back under load, naps when
//! idle, requests answered between events, and the drain on shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, TryRecvError};
use dsl::Event;

use super::commit::{attach_ancestry, window_request_of};
use super::status::StatusSnapshot;
use super::{Pipeline, PipelineError, BURST, COMMIT_DELAY, COMMIT_MAX};

impl Pipeline {
    /// Enrich, spool, correlate, emit: everything one event goes through.
    pub fn handle(&mut self, mut e: Arc<Event>) {
        // The queue's Arc is the only reference until here; a shared one
        // (never from the queue) is copied once to be enriched.
        self.table.observe(Arc::make_mut(&mut e));
        if e.event.category == dsl::event::Category::Process
            && e.event.action.as_deref() == Some("exec")
            && (e.process.name.is_none() || e.process.executable.is_none())
        {
            // Rules on the name or the path cannot see it (a process gone
            // before its source could read it).
            self.execs_without_image += 1;
        }
        // Shared by the spool thread and the correlator: no copies.
        self.correlator.process_arc(&e, &mut self.alerts);
        // Before any window request of this event's alerts: the spool
        // thread answers them with this event in its ring.
        self.spool.push(e);
        // Not in the shared counters: only this thread writes or reads it,
        // and a per-event atomic add would pull their cache line over from
        // the spool thread's core.
        self.processed += 1;
        for mut alert in self.alerts.drain(..) {
            // Ancestry now: the table may forget these processes by commit time.
            if alert.context_requests.iter().any(|c| c == "ancestry") {
                attach_ancestry(&self.table, &mut alert);
            }
            // The window too, while the spool thread's ring still holds the
            // events before the match; the answer is collected at commit.
            if self.window_max_events > 0 {
                if let Some(request) = window_request_of(&alert) {
                    let reply = self.spool.window(request);
                    self.pending_windows.push((self.pending.len(), reply));
                }
            }
            self.counters.alerts.fetch_add(1, Ordering::Relaxed);
            self.pending_since.get_or_insert_with(Instant::now);
            self.pending.push(alert);
        }
        if self.pending.len() >= COMMIT_MAX {
            self.commit_alerts();
        }
    }

    /// Seals the spool and flushes outputs (clean shutdown).
    pub fn finish(&mut self) -> Result<(), PipelineError> {
        self.commit_alerts();
        self.spool.finish()?;
        self.outputs.flush()?;
        // The last status.json says how the run ended, whenever it was written.
        self.status_written = None;
        self.tick(0);
        Ok(())
    }

    /// Runs until `stop` is set and the queue is drained.
    pub fn run(
        mut self,
        rx: Receiver<Arc<Event>>,
        stop: Arc<AtomicBool>,
    ) -> Result<StatusSnapshot, PipelineError> {
        let mut last_tick = Instant::now();
        let mut last_log = Instant::now();
        let control = self.requests.take();
        let mut requests_open = true;
        'events: loop {
            // Busy: events back to back, BURST at a time between looks at
            // the clock and the control socket. Idle: commit what waits,
            // then nap for `idle_nap` (or until a control request, or a
            // burst) and take whatever arrived meanwhile as one batch.
            // Napping instead of blocking on the queue means sources seldom
            // pay for waking this thread, and at a few thousand events/s the
            // agent wakes about once a second instead of once per event,
            // with warm caches for a whole batch.
            let mut idle = false;
            for _ in 0..BURST {
                match rx.try_recv() {
                    Ok(e) => self.handle(e),
                    Err(TryRecvError::Empty) => {
                        idle = true;
                        break;
                    }
                    Err(TryRecvError::Disconnected) => break 'events,
                }
            }
            if idle {
                // Nothing waits for a batch to fill while the pipeline naps.
                self.spool.hand_off();
                self.commit_alerts();
                // A request ends the nap early (it is answered just below),
                // and so does a burst that fills a quarter of the queue: a
                // long nap must not cost drops.
                match &control {
                    Some(c) => {
                        // Events that came meanwhile count towards it.
                        let quarter = rx.capacity().unwrap_or(usize::MAX) / 4;
                        self.queue.arm_wake(quarter.saturating_sub(rx.len()) as u64);
                        c.nap(self.idle_nap);
                        self.queue.disarm_wake();
                    }
                    None => std::thread::sleep(self.idle_nap),
                }
            }
            // Requests are answered between events, also under load. With
            // the control socket gone the nap still ends on a burst.
            if let (Some(c), true) = (&control, requests_open) {
                match c.try_recv() {
                    Ok(r) => self.serve(r, rx.len()),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => requests_open = false,
                }
            }
            if self
                .pending_since
                .is_some_and(|t| t.elapsed() >= COMMIT_DELAY)
            {
                self.commit_answered_alerts();
            }
            if last_tick.elapsed() >= Duration::from_millis(250) {
                self.tick(rx.len());
                last_tick = Instant::now();
            }
            if last_log.elapsed() >= Duration::from_secs(60) {
                let s = self.snapshot(rx.len());
                tracing::info!(
                    received = s.received,
                    dropped = s.dropped,
                    spooled = s.spooled,
                    alerts = s.alerts,
                    "counters"
                );
                last_log = Instant::now();
            }
            if stop.load(Ordering::Relaxed) {
                // Drain what the sources already handed over.
                while let Ok(e) = rx.try_recv() {
                    self.handle(e);
                }
                break;
            }
        }
        self.finish()?;
        Ok(self.snapshot(0))
    }
}
