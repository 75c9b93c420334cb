//! A source that outpaces the pipeline: events are dropped and counted, the
//! queue (and so memory) stays bounded, and nothing stalls. And a burst
//! that a full nap of the pipeline would overflow: it ends the nap instead.

use std::fs;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::{stderr, stdout, vigil};

/// Runs the agent with the synthetic source at `rate` events/s (0: flat
/// out) until it has sent `events`, with `config` as its vigil.toml; its
/// final `status --json`, and how long the run took.
fn run_synthetic(config: &str, rate: u64, events: u64) -> (Value, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.toml");
    fs::write(&cfg, config).unwrap();
    let state = dir.path().join("state");
    let started = Instant::now();
    let o = vigil()
        .args(["run", "--source", "synthetic", "--spool-size-mb", "64"])
        .arg("--synthetic-rate")
        .arg(rate.to_string())
        .arg("--synthetic-events")
        .arg(events.to_string())
        .arg("--config")
        .arg(&cfg)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let took = started.elapsed();
    let status = vigil()
        .args(["status", "--json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    (serde_json::from_str(&stdout(&status)).unwrap(), took)
}

#[test]
fn flat_out_source_into_a_tiny_queue_drops_counts_and_finishes() {
    let (s, took) = run_synthetic(
        "[queue]\ncapacity = 64\n[outputs]\nstdout = false\n",
        0,
        400_000,
    );
    assert!(took < Duration::from_secs(120), "no stall");
    let (received, dropped, processed) = (
        s["received"].as_u64().unwrap(),
        s["dropped"].as_u64().unwrap(),
        s["processed"].as_u64().unwrap(),
    );
    assert_eq!(received, 400_000);
    assert!(
        dropped > 0,
        "the pipeline kept up with a flat-out source into 64 slots? {s}"
    );
    assert_eq!(
        processed + dropped,
        received,
        "every event is either processed or counted as dropped"
    );
    assert_eq!(s["spooled"].as_u64().unwrap(), processed);
    // Bounded memory: the queue holds 64 events whatever the backlog.
    let peak = s["peak_rss_kb"].as_u64().unwrap();
    if cfg!(target_os = "linux") {
        assert!(peak > 0 && peak < 200 * 1024, "peak RSS {peak} KiB");
    }
}

#[test]
fn a_burst_ends_the_pipelines_nap_before_the_queue_overflows() {
    // 8,000 events/s against a one-second nap: a full nap would gather
    // 8,000 events into 4,096 slots. A quarter of the queue wakes the
    // pipeline instead, so nothing is dropped. The rate is low enough for
    // a debug build beside the flat-out test above; each 100 ms burst of
    // the source (800 events) fits in what the wake leaves free.
    let (s, _) = run_synthetic(
        "[queue]\ncapacity = 4096\nbatch_ms = 1000\n[outputs]\nstdout = false\n",
        8_000,
        24_000,
    );
    assert_eq!(s["received"].as_u64().unwrap(), 24_000, "{s}");
    assert_eq!(s["dropped"].as_u64().unwrap(), 0, "{s}");
    assert_eq!(s["processed"].as_u64().unwrap(), 24_000, "{s}");
}

/// The case: 20,000 events/s into 1,024 slots (36-41 % dropped
/// when the synthetic source pushed each 100 ms of events at once, 2,000
/// into a queue of 1,024). Bursts of an eighth of the queue, each waking
/// the pipeline at a quarter, lose nothing.
#[test]
fn a_fast_source_into_a_small_queue_loses_nothing_it_can_keep_up_with() {
    let (s, _) = run_synthetic(
        "[queue]\ncapacity = 1024\n[outputs]\nstdout = false\n",
        20_000,
        40_000,
    );
    assert_eq!(s["received"].as_u64().unwrap(), 40_000, "{s}");
    assert_eq!(s["dropped"].as_u64().unwrap(), 0, "{s}");
}
