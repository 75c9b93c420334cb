//! The last few thousand events in arrival (= spool) order, shared with
//! the correlator by `Arc`, so an alert's `window:` context usually comes
//! from memory instead of sealing the spool's open block and reading it
//! back (~1.4 ms per alert). It answers only when its answer is exactly
//! what the spool would give; otherwise the caller reads the spool.

use std::collections::VecDeque;
use std::sync::Arc;

use dsl::Event;

pub struct RecentEvents {
    ring: VecDeque<Arc<Event>>,
    cap: usize,
    /// Every event this spool holds is in the ring: nothing was dropped
    /// from it and the spool had no events before this run.
    complete: bool,
}

impl RecentEvents {
    /// `spool_had_events`: the spool already held events from an earlier
    /// run, which the ring never saw.
    pub fn new(cap: usize, spool_had_events: bool) -> RecentEvents {
        RecentEvents {
            ring: VecDeque::with_capacity(cap.min(1 << 16)),
            cap,
            complete: !spool_had_events,
        }
    }

    /// Keeps `e`; returns the event that fell out of the ring (or `e`
    /// itself when the ring keeps nothing).
    pub fn push(&mut self, e: Arc<Event>) -> Option<Arc<Event>> {
        if self.cap == 0 {
            return Some(e);
        }
        let evicted = if self.ring.len() == self.cap {
            self.complete = false;
            self.ring.pop_front()
        } else {
            None
        };
        self.ring.push_back(e);
        evicted
    }

    /// The latest `limit` events of `host` (any host if `None`) with a
    /// timestamp in `[start, end)`, oldest first, and whether older ones
    /// were left out; `None` when the ring cannot know (the spool can).
    pub fn window(
        &self,
        host: Option<&str>,
        start: i64,
        end: i64,
        limit: usize,
    ) -> Option<(Vec<Event>, bool)> {
        let mut picked: Vec<&Event> = Vec::with_capacity(limit.min(1024));
        let wanted = |e: &Event| {
            (start..end).contains(&e.timestamp_ns)
                && (host.is_none() || e.host.id.as_deref() == host)
        };
        for e in self.ring.iter().rev() {
            if !wanted(e) {
                continue;
            }
            if picked.len() == limit {
                // One more exists: the answer is exact, and truncated.
                return Some((picked.into_iter().rev().cloned().collect(), true));
            }
            picked.push(e);
        }
        // Ran out of ring: exact only if the ring is the whole spool.
        self.complete
            .then(|| (picked.into_iter().rev().cloned().collect(), false))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An event of `host` at `ts` (also for the spool thread's tests).
    pub(in crate::pipeline) fn ev(host: &str, ts: i64) -> Arc<Event> {
        let mut e = Event {
            timestamp_ns: ts,
            ..Default::default()
        };
        e.host.id = Some(host.into());
        Arc::new(e)
    }

    fn stamps(v: &[Event]) -> Vec<i64> {
        v.iter().map(|e| e.timestamp_ns).collect()
    }

    #[test]
    fn picks_the_latest_of_the_host_in_range_in_arrival_order() {
        let mut r = RecentEvents::new(100, false);
        for (h, ts) in [("a", 1), ("b", 2), ("a", 5), ("a", 3), ("a", 9), ("a", 10)] {
            r.push(ev(h, ts));
        }
        // [2, 10): 5 and 3 (arrival order), 9; 10 is the end, 1 too early.
        let (got, truncated) = r.window(Some("a"), 2, 10, 10).unwrap();
        assert_eq!(stamps(&got), vec![5, 3, 9]);
        assert!(!truncated);
        let (got, truncated) = r.window(Some("a"), 2, 10, 2).unwrap();
        assert_eq!(stamps(&got), vec![3, 9]);
        assert!(truncated);
        let (got, _) = r.window(None, 0, 100, 3).unwrap();
        assert_eq!(stamps(&got), vec![3, 9, 10]);
    }

    #[test]
    fn defers_to_the_spool_when_it_may_have_missed_events() {
        let mut r = RecentEvents::new(3, false);
        for ts in 1..=5 {
            r.push(ev("a", ts));
        }
        // Events 1 and 2 fell out: fewer than the limit is not an answer...
        assert!(r.window(Some("a"), 0, 10, 10).is_none());
        // ...but the limit reached within the ring is.
        let (got, truncated) = r.window(Some("a"), 0, 10, 2).unwrap();
        assert_eq!(stamps(&got), vec![4, 5]);
        assert!(truncated);
        // A spool with an earlier run's events is never complete.
        let mut r = RecentEvents::new(10, true);
        r.push(ev("a", 1));
        assert!(r.window(Some("a"), 0, 10, 5).is_none());
    }
}
