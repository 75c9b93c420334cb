//! The synthetic generator as a live-like source (`source.kind =
//! "synthetic"`): paced bursts stamped with the current time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Synthetic, SyntheticConfig};
use crate::pipeline::queue::EventSender;
use crate::wake::Waker;

/// How far ahead of its rate the paced synthetic source runs before it
/// sleeps: events go out in bursts, as a real source's do. The pipeline
/// takes them every `queue.batch_ms` anyway; shorter bursts only add
/// wake-ups, counted against the agent: on the benchmark VM, 50 a second
/// (20 ms bursts) cost ~0.1-0.15 % of a core more than 10 a second.
const SYNTHETIC_BURST: Duration = Duration::from_millis(100);
/// The most events the synthetic source makes between looks at `stop`
/// (flat out, or catching up with a rate it cannot keep).
const MAX_BURST: u64 = 4096;

/// Synthetic traffic at `rate` events/s (0 = flat out), with the current
/// time as timestamps so the spool looks like a live host's. Pushes never
/// block, like a live source: a slow pipeline shows up as drops. `done` is
/// woken when the source ends.
pub fn start(
    cfg: SyntheticConfig,
    rate: u64,
    limit: Option<u64>,
    tx: EventSender,
    stop: Arc<AtomicBool>,
    done: Waker,
) -> std::io::Result<JoinHandle<u64>> {
    std::thread::Builder::new()
        .name("synthetic".into())
        .spawn(move || {
            let mut gen = Synthetic::new(cfg);
            let started = Instant::now();
            let mut sent = 0u64;
            let mut burst = Vec::new();
            // CPU spent making up events (a real source maps the OS's
            // instead): a footprint measurement counts it as the load.
            let mut making_ns = 0u64;
            // A burst is pushed at memory speed, faster than any pipeline
            // takes it, so it is kept to an eighth of the queue (the
            // pipeline wakes at a quarter): a real source's events come as
            // they happen, and a burst larger than the queue would only
            // measure the queue's size. Smaller bursts then come sooner.
            let max_burst = tx
                .capacity()
                .map_or(MAX_BURST, |c| (c as u64 / 8).clamp(1, MAX_BURST));
            let burst_time = if rate > 0 {
                SYNTHETIC_BURST.min(Duration::from_secs_f64(max_burst as f64 / rate as f64))
            } else {
                SYNTHETIC_BURST
            };
            'run: while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| sent < l) {
                // A burst: the events due by one burst from now, stamped
                // with one clock reading (they go out within microseconds
                // of each other anyway). Then sleep until they are due.
                let now = dsl::time::now_ns();
                let burst_end = if rate > 0 {
                    let due = started.elapsed() + burst_time;
                    ((due.as_secs_f64() * rate as f64) as u64).clamp(sent + 1, sent + max_burst)
                } else {
                    sent + max_burst
                };
                let burst_end = limit.map_or(burst_end, |l| burst_end.min(l));
                let cpu_before = thread_cpu_ns();
                let mut ended = false;
                while sent + (burst.len() as u64) < burst_end {
                    let Some(mut e) = gen.next() else {
                        ended = true;
                        break;
                    };
                    e.timestamp_ns = now;
                    burst.push(e);
                }
                making_ns += thread_cpu_ns().saturating_sub(cpu_before);
                for e in burst.drain(..) {
                    tx.push(e);
                    sent += 1;
                }
                if ended {
                    break 'run;
                }
                if rate > 0 {
                    let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            tracing::info!(
                events = sent,
                elapsed_ms = started.elapsed().as_millis() as u64,
                making_cpu_ms = making_ns / 1_000_000,
                "synthetic source stopped"
            );
            done.wake();
            sent
        })
}

/// CPU time of the calling thread, in nanoseconds (0 if unavailable).
fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return 0;
    }
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}
