//! Full pipeline throughput: a source thread feeds synthetic events it made
//! beforehand through the queue; the pipeline thread enriches, spools and
//! correlates them with the shipped rules. Prints one table row.
//!
//! VIGIL_BENCH_EVENTS (default 1,000,000) events.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use dsl::correlate::CorrelatorConfig;
use dsl::rules::load_rules;
use dsl::shipped::shipped_rule_files;
use dsl::Event;
use spool::SpoolConfig;
use vigil::pipeline::outputs::AlertOutputs;
use vigil::pipeline::queue::{event_queue, EventQueue};
use vigil::pipeline::{Pipeline, PipelineConfig};
use vigil::sources::synthetic::{Plant, Synthetic, SyntheticConfig};

/// One run's figures.
struct Run {
    events_per_sec: f64,
    alerts: u64,
    /// CPU seconds of every thread, and of the source thread alone.
    cpu: f64,
    source_cpu: Option<f64>,
}

fn main() {
    let n: usize = std::env::var("VIGIL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // This VM's throughput varies by a fifth between back-to-back runs:
    // report the best of RUNS, as the other throughput rows do, and all.
    let runs: usize = std::env::var("VIGIL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let all: Vec<Run> = (0..runs.max(1)).map(|_| run(n)).collect();
    let best = all
        .iter()
        .max_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec))
        .expect("at least one run");
    println!(
        "| {:<58} | {:>22} | {:<26} |",
        format!(
            "pipeline: enrich+spool+correlate, best of {} (events/s)",
            all.len()
        ),
        format!("{:.0}", best.events_per_sec),
        ">= 500,000"
    );
    let rates: Vec<String> = all
        .iter()
        .map(|r| format!("{:.0}k", r.events_per_sec / 1000.0))
        .collect();
    println!(
        "| {:<58} | {:>22} | {:<26} |",
        "  every run (events/s)",
        rates.join(" "),
        ""
    );
    println!(
        "| {:<58} | {:>22} | {:<26} |",
        "pipeline: alerts raised", best.alerts, ""
    );
    let per_event_us = |s: f64| format!("{:.2}", s * 1e6 / n as f64);
    println!(
        "| {:<58} | {:>22} | {:<26} |",
        "pipeline: CPU µs/event, all threads (of which the source)",
        format!(
            "{} ({})",
            per_event_us(best.cpu),
            best.source_cpu.map_or("n/a".into(), per_event_us)
        ),
        ""
    );
}

fn run(n: usize) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = Arc::new(load_rules(&shipped_rule_files()).rules);
    let EventQueue {
        sender: tx,
        receiver: rx,
        counters,
        reclaim,
    } = event_queue(65_536);
    let pipeline = Pipeline::new(
        PipelineConfig {
            host_id: "bench".into(),
            spool: Some((
                dir.path().join("p.spool"),
                SpoolConfig {
                    capacity_bytes: 2 << 30,
                    ..SpoolConfig::default()
                },
            )),
            correlator: CorrelatorConfig::default(),
            outputs: AlertOutputs::new(false, Some(&dir.path().join("alerts.ndjson")))
                .expect("outputs"),
            status_path: None,
            seed_process_table: false,
            window_max_events: 50,
            idle_nap: std::time::Duration::from_millis(50),
            reclaim: Some(reclaim),
        },
        rules,
        counters,
    )
    .expect("pipeline");
    let stop = Arc::new(AtomicBool::new(false));
    // The feeder makes the events before the clock starts, on its own
    // thread: like a live source, the thread that hands events over is the
    // one whose memory they live in (and whose pages take back their frees).
    let (generated_tx, generated_rx) = std::sync::mpsc::channel();
    let feeder = std::thread::spawn(move || -> Option<f64> {
        let events: Vec<Event> = Synthetic::new(SyntheticConfig {
            plant_every: 10_000,
            plant: Plant::All,
            ..Default::default()
        })
        .take(n)
        .collect();
        generated_tx.send(()).expect("main thread");
        let cpu = thread_cpu_seconds();
        for e in events {
            tx.push_wait(e);
        }
        Some(thread_cpu_seconds()? - cpu?)
    });
    generated_rx.recv().expect("feeder");
    let cpu_before = cpu_seconds(libc::RUSAGE_SELF);
    let started = Instant::now();
    let worker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || pipeline.run(rx, stop))
    };
    let source_cpu = feeder.join().expect("feeder");
    // The sender is gone once the feeder ends: the pipeline drains and stops.
    let snap = worker
        .join()
        .expect("pipeline thread")
        .expect("pipeline run");
    let secs = started.elapsed().as_secs_f64();
    // Every thread's, the exited ones' too; the feeder made its events
    // before `cpu_before`.
    let cpu = cpu_seconds(libc::RUSAGE_SELF) - cpu_before;
    assert_eq!(snap.processed, n as u64);
    Run {
        events_per_sec: n as f64 / secs,
        alerts: snap.alerts,
        cpu,
        source_cpu,
    }
}

/// CPU time of the calling thread, where the OS tells it (Linux).
fn thread_cpu_seconds() -> Option<f64> {
    #[cfg(target_os = "linux")]
    return Some(cpu_seconds(libc::RUSAGE_THREAD));
    #[cfg(not(target_os = "linux"))]
    return None;
}

/// CPU time (user + system) of this process (`RUSAGE_SELF`) or thread
/// (`RUSAGE_THREAD`), in seconds.
fn cpu_seconds(who: libc::c_int) -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid rusage for getrusage to fill.
    let rc = unsafe { libc::getrusage(who, &mut u) };
    assert_eq!(rc, 0, "getrusage");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}
