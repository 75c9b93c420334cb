//! Replay of ECS NDJSON files as a source (`source.kind = "replay"`): the
//! events in timestamp order across files, fed to the queue without loss.
//! Inputs stream through [`in_time_order`] (also `vigil replay`'s): memory
//! stays bounded whatever the size of the capture.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use dsl::ecs::EcsReader;
use dsl::Event;

use super::SourceError;
use crate::pipeline::queue::EventSender;
use crate::wake::Waker;

/// Events each input may hold back to put them in timestamp order: input
/// out of order by more than this many events goes out as it comes (the
/// correlator still takes events up to its reorder window late). Bounds
/// memory: a 10 GB capture replays in tens of MB.
pub const REORDER_EVENTS: usize = 16_384;

/// Streams the files in timestamp order into the queue, waiting when it is
/// full: replay loses nothing. `done` is woken when the replay ends.
pub fn start(
    files: Vec<PathBuf>,
    pace: bool,
    tx: EventSender,
    stop: Arc<AtomicBool>,
    done: Waker,
) -> Result<JoinHandle<u64>, SourceError> {
    let mut inputs = Vec::new();
    for path in files {
        let f = std::fs::File::open(&path).map_err(|source| SourceError::Open {
            path: path.clone(),
            source,
        })?;
        inputs.push(
            EcsReader::new(BufReader::new(f)).filter_map(move |r| match r {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!(file = %path.display(), "skipped {e}");
                    None
                }
            }),
        );
    }
    std::thread::Builder::new()
        .name("replay".into())
        .spawn(move || {
            let mut sent = 0;
            let mut prev: Option<i64> = None;
            for e in in_time_order(inputs, REORDER_EVENTS) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if pace {
                    if let Some(p) = prev {
                        std::thread::sleep(Duration::from_nanos(
                            (e.timestamp_ns - p).clamp(0, 60_000_000_000) as u64,
                        ));
                    }
                    prev = Some(e.timestamp_ns);
                }
                if !tx.push_wait(e) {
                    break;
                }
                sent += 1;
            }
            done.wake();
            sent
        })
        .map_err(|e| SourceError::Start {
            what: "replay thread",
            source: e.into(),
        })
}

/// The events of `inputs` by (time, input, order within it): what sorting
/// them all at once would give when no input is out of order by more than
/// `capacity` events, holding at most that many per input.
pub fn in_time_order<I: Iterator<Item = Event>>(inputs: Vec<I>, capacity: usize) -> Merged<I> {
    Merged::new(
        inputs
            .into_iter()
            .map(|i| Reordered::new(i, capacity))
            .collect(),
    )
}

/// An event with the position that breaks timestamp ties: (input, order
/// within it), so equal times keep file order, as a stable sort did.
struct Ordered {
    ts: i64,
    input: usize,
    seq: u64,
    event: Event,
}

impl Ordered {
    fn key(&self) -> (i64, usize, u64) {
        (self.ts, self.input, self.seq)
    }
}

impl PartialEq for Ordered {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Ordered {}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// One input in timestamp order, holding back at most `capacity` events.
struct Reordered<I> {
    events: I,
    held: BinaryHeap<Reverse<Ordered>>,
    capacity: usize,
    seq: u64,
}

impl<I: Iterator<Item = Event>> Reordered<I> {
    fn new(events: I, capacity: usize) -> Reordered<I> {
        Reordered {
            events,
            held: BinaryHeap::new(),
            capacity,
            seq: 0,
        }
    }

    /// The earliest held event, after filling up to `capacity` (`input`
    /// tags it for the merge).
    fn next_for(&mut self, input: usize) -> Option<Ordered> {
        while self.held.len() < self.capacity {
            let Some(event) = self.events.next() else {
                break;
            };
            self.seq += 1;
            self.held.push(Reverse(Ordered {
                ts: event.timestamp_ns,
                input,
                seq: self.seq,
                event,
            }));
        }
        self.held.pop().map(|Reverse(o)| o)
    }
}

/// Every input merged by (time, input, order): what sorting them all at
/// once gave, without holding them all.
pub struct Merged<I> {
    inputs: Vec<Reordered<I>>,
    heads: BinaryHeap<Reverse<Ordered>>,
}

impl<I: Iterator<Item = Event>> Merged<I> {
    fn new(mut inputs: Vec<Reordered<I>>) -> Merged<I> {
        let heads = inputs
            .iter_mut()
            .enumerate()
            .filter_map(|(i, r)| r.next_for(i).map(Reverse))
            .collect();
        Merged { inputs, heads }
    }
}

impl<I: Iterator<Item = Event>> Iterator for Merged<I> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        let Reverse(first) = self.heads.pop()?;
        if let Some(next) = self.inputs[first.input].next_for(first.input) {
            self.heads.push(Reverse(next));
        }
        Some(first.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: i64, tag: &str) -> Event {
        let mut e = Event {
            timestamp_ns: ts,
            ..Event::default()
        };
        e.process.name = Some(tag.into());
        e
    }

    fn tags(events: impl Iterator<Item = Event>) -> Vec<String> {
        events
            .map(|e| e.process.name.as_deref().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn inputs_merge_by_time_with_ties_in_input_then_file_order() {
        let a = vec![ev(1, "a1"), ev(3, "a3"), ev(3, "a3b"), ev(5, "a5")];
        let b = vec![ev(2, "b2"), ev(3, "b3"), ev(4, "b4")];
        let got = tags(in_time_order(vec![a.into_iter(), b.into_iter()], 4));
        assert_eq!(got, ["a1", "b2", "a3", "a3b", "b3", "b4", "a5"]);
    }

    #[test]
    fn disorder_within_the_window_is_undone_and_beyond_it_passes_through() {
        let input = vec![ev(3, "c"), ev(1, "a"), ev(2, "b"), ev(4, "d")];
        let sorted = tags(in_time_order(vec![input.clone().into_iter()], 4));
        assert_eq!(sorted, ["a", "b", "c", "d"]);
        // A window of one event holds nothing back: input order.
        let as_is = tags(in_time_order(vec![input.into_iter()], 1));
        assert_eq!(as_is, ["c", "a", "b", "d"]);
    }
}
