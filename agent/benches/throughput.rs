//! End-to-end throughput of vigil's hot paths on synthetic macOS traffic,
//! printed as one table (`scripts/bench.sh` adds the baselines beside it).
//!
//! Sizes: VIGIL_BENCH_EVENTS (default 1,000,000) events for ingest, read and
//! correlate; VIGIL_BENCH_HUNT_EVENTS (default 10,000,000) for the hunt rows.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use dsl::alert::Alert;
use dsl::codec::Decoded;
use dsl::correlate::Correlator;
use dsl::correlate::CorrelatorConfig;
use dsl::query;
use dsl::rules::{load_rules, RuleSet};
use dsl::shipped::{shipped_rule_files, shipped_with_variants};
use dsl::Event;
use spool::{SpoolConfig, SpoolReader, TimeRange};
use vigil::history::query::{scan, Prefilter};
use vigil::history::store::{for_each_event, EventSpool};
use vigil::sources::synthetic::{Plant, Synthetic, SyntheticConfig};

fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn row(what: &str, value: String, target: &str) {
    println!("| {what:<58} | {value:>22} | {target:<26} |");
}

fn main() {
    // `cargo bench` passes `--bench`; ignore any other harness flags.
    let n = env_count("VIGIL_BENCH_EVENTS", 1_000_000);
    let hunt_n = env_count("VIGIL_BENCH_HUNT_EVENTS", 10_000_000);
    let dir = tempfile::tempdir().expect("temp dir");

    let gen_start = Instant::now();
    let events: Vec<Event> = Synthetic::new(SyntheticConfig {
        plant_every: 10_000,
        plant: Plant::All,
        ..Default::default()
    })
    .take(n as usize)
    .collect();
    let json_bytes: usize = events
        .iter()
        .map(|e| dsl::ecs::to_ecs_json(e).len() + 1)
        .sum();
    eprintln!("generated {n} events in {:.1?}", gen_start.elapsed());

    println!("| {:<58} | {:>22} | {:<26} |", "measure", "vigil", "target");
    println!("|{}|{}|{}|", "-".repeat(60), "-".repeat(24), "-".repeat(28));

    // Ingest: encode + compress + write into the mmap ring, one core.
    let path = dir.path().join("ingest.spool");
    let mut spool = EventSpool::open(
        &path,
        SpoolConfig {
            capacity_bytes: 4 << 30,
            ..SpoolConfig::default()
        },
    )
    .expect("spool");
    let t = Instant::now();
    for e in &events {
        spool.append(e).expect("append");
    }
    spool.flush().expect("flush");
    let ingest = n as f64 / t.elapsed().as_secs_f64();
    drop(spool);
    row(
        "ingest: encode+zstd+mmap write, 1 core (events/s)",
        format!("{ingest:.0}"),
        ">= 1,000,000",
    );
    let reader = SpoolReader::open(&path).expect("reader");
    let info = reader.info();
    let per_event = info.compressed_bytes as f64 / n as f64;
    row(
        "size: bytes/event on disk",
        format!("{per_event:.1}"),
        "<= half of zstd -3",
    );
    row(
        "size: ECS JSON bytes/event",
        format!("{:.0}", json_bytes as f64 / n as f64),
        "",
    );
    row(
        "size: ratio vs ECS JSON",
        format!("{:.1}x", json_bytes as f64 / info.compressed_bytes as f64),
        ">= 10x",
    );

    row(
        "size: encoded (uncompressed) bytes/event",
        format!("{:.1}", info.raw_bytes as f64 / n as f64),
        "",
    );

    // Read: decompress + decode every event, one core. Records are decoded
    // block by block, in order (each block has its own string dictionary).
    let read_all = |materialize: bool| {
        let mut decoded = 0u64;
        let mut bad = 0u64;
        for b in reader.blocks() {
            let block = reader.read_block(b).expect("block");
            let (counts, err) = for_each_event(
                &block,
                |_| true,
                |d| {
                    if materialize {
                        std::hint::black_box(d.into_event());
                    } else if let Decoded::View(v) = &d {
                        std::hint::black_box(v.timestamp_ns());
                    }
                    decoded += 1;
                    ControlFlow::Continue(())
                },
            );
            assert!(err.is_none());
            bad += counts.bad_records;
        }
        assert_eq!((decoded, bad), (n, 0));
    };
    let t = Instant::now();
    read_all(false);
    row(
        "read: zstd+decode (interned view), 1 core (events/s)",
        format!("{:.0}", n as f64 / t.elapsed().as_secs_f64()),
        ">= 3,000,000",
    );
    let t = Instant::now();
    read_all(true);
    row(
        "read: zstd+decode+owned Event, 1 core (events/s)",
        format!("{:.0}", n as f64 / t.elapsed().as_secs_f64()),
        "",
    );

    // Correlate: all shipped rules, then 100 rules. The pipeline hands the
    // correlator each event in an `Arc` (kept events are shared, not
    // copied): measure that, with the events wrapped before the clock starts.
    let shared: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
    let rules = Arc::new(load_rules(&shipped_rule_files()).rules);
    let (rate, alerts) = best_correlate_rate(&rules, &shared);
    row(
        &format!(
            "correlate: {} shipped rules, 1 core, best of 3 (events/s)",
            rules.len()
        ),
        format!("{rate:.0}"),
        ">= 50x python eql",
    );
    row("correlate: alerts raised", format!("{}", alerts.len()), "");
    let many = Arc::new(hundred_rules());
    let (rate, _) = best_correlate_rate(&many, &shared);
    row(
        &format!(
            "correlate: {} rules, 1 core, best of 3 (events/s)",
            many.len()
        ),
        format!("{rate:.0}"),
        "",
    );
    // Elastic's public macOS rules as written (the test fixtures): every
    // one that loads, with the shipped ones.
    let elastic = Arc::new(elastic_rules());
    let (rate, alerts) = best_correlate_rate(&elastic, &shared);
    row(
        &format!(
            "correlate: {} rules (Elastic's macOS + shipped), best of 3",
            elastic.len()
        ),
        format!("{rate:.0}"),
        ">= 1,000,000",
    );
    row(
        "correlate: alerts raised (Elastic's + shipped)",
        format!("{}", alerts.len()),
        "",
    );
    drop(shared);

    // Hunt over a big spool, both cores.
    let hpath = dir.path().join("hunt.spool");
    let mut spool = EventSpool::open(
        &hpath,
        SpoolConfig {
            capacity_bytes: 8 << 30,
            ..SpoolConfig::default()
        },
    )
    .expect("spool");
    for e in Synthetic::new(SyntheticConfig {
        seed: 7,
        plant_every: 100_000,
        ..Default::default()
    })
    .take(hunt_n as usize)
    {
        spool.append(&e).expect("append");
    }
    spool.flush().expect("flush");
    drop(spool);
    let reader = SpoolReader::open(&hpath).expect("reader");
    let q = query::compile(
        r#"process where process.name : "curl" and process.args : "*203.0.113.80*""#,
    )
    .expect("query");
    let pre = Prefilter::for_query(&q);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let t = Instant::now();
    let mut first = None;
    let mut hits = 0u64;
    let report = scan(
        &reader,
        TimeRange::all(),
        &pre,
        threads,
        &mut |_| {
            first.get_or_insert_with(|| t.elapsed());
            hits += 1;
            ControlFlow::Continue(())
        },
        &mut |_, _, _| ControlFlow::Continue(()),
    );
    let secs = t.elapsed().as_secs_f64();
    row(
        &format!("hunt: full-scan filter, {threads} threads (events/s)"),
        format!("{:.0}", report.events_scanned as f64 / secs),
        ">= 5,000,000",
    );
    row(
        "hunt: time to first result (ms)",
        format!("{:.1}", first.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)),
        "",
    );
    row(
        "hunt: matches / events scanned",
        format!("{hits} / {}", report.events_scanned),
        "",
    );
    let info = reader.info();
    let (lo, hi) = (info.oldest_ts.unwrap_or(0), info.newest_ts.unwrap_or(0));
    let recent = TimeRange::new(hi - (hi - lo) / 100, i64::MAX);
    let t = Instant::now();
    let report = scan(
        &reader,
        recent,
        &pre,
        threads,
        &mut |_| ControlFlow::Continue(()),
        &mut |_, _, _| ControlFlow::Continue(()),
    );
    row(
        "hunt: last 1% of time range (ms)",
        format!("{:.1}", t.elapsed().as_secs_f64() * 1e3),
        "< 100",
    );
    row(
        "hunt: blocks read / skipped (last 1%)",
        format!("{} / {}", report.blocks_scanned, report.blocks_skipped),
        "",
    );
}

/// Events/s of a fresh correlator over `events`, best of three runs (this
/// VM's speed varies between runs; bench.sh reports python eql's best of
/// three too), and the alerts one run raises.
fn best_correlate_rate(rules: &Arc<RuleSet>, events: &[Arc<Event>]) -> (f64, Vec<Alert>) {
    let mut best = 0.0f64;
    let mut alerts = Vec::new();
    for _ in 0..3 {
        let mut c = Correlator::new(rules.clone(), CorrelatorConfig::default());
        alerts.clear();
        let t = Instant::now();
        for e in events {
            c.process_arc(e, &mut alerts);
        }
        best = best.max(events.len() as f64 / t.elapsed().as_secs_f64());
    }
    (best, alerts)
}

/// The shipped rules and every Elastic macOS rule of the test fixtures that
/// loads (tests/fixtures/elastic-rules; see its SOURCE.md).
fn elastic_rules() -> RuleSet {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/elastic-rules");
    let mut files = shipped_rule_files();
    for repo in ["detection-rules", "protections-artifacts"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(repo))
            .expect("the Elastic rule fixtures")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        for p in paths {
            files.push(dsl::rules::RuleFile {
                path: p.display().to_string(),
                text: std::fs::read_to_string(&p).expect("a fixture"),
                origin: dsl::rules::Origin::User,
            });
        }
    }
    load_rules(&files).rules
}

/// The shipped rules plus variants up to 100, as a large deployment would have.
fn hundred_rules() -> RuleSet {
    let out = load_rules(&shipped_with_variants(100));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    out.rules
}
