//! Replay of ECS NDJSON files as a source (`source.kind = "replay"`): the
//! events in timestamp order across files, fed to the queue without loss.

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

/// Reads every file first (replay must be in timestamp order across files),
/// then feeds the queue, waiting when it is full: replay loses nothing.
/// `done` is woken when the replay ends.
pub fn start(
    files: Vec<PathBuf>,
    pace: bool,
    tx: EventSender,
    stop: Arc<AtomicBool>,
    done: Waker,
) -> Result<JoinHandle<u64>, SourceError> {
    let mut events: Vec<Event> = Vec::new();
    for path in &files {
        let f = std::fs::File::open(path).map_err(|source| SourceError::Open {
            path: path.clone(),
            source,
        })?;
        for r in EcsReader::new(BufReader::new(f)) {
            match r {
                Ok(e) => events.push(e),
                Err(e) => tracing::warn!(file = %path.display(), "skipped {e}"),
            }
        }
    }
    events.sort_by_key(|e| e.timestamp_ns);
    std::thread::Builder::new()
        .name("replay".into())
        .spawn(move || {
            let mut sent = 0;
            let mut prev: Option<i64> = None;
            for e in events {
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
