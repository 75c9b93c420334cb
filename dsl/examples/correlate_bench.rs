//! Correlator throughput on a recorded event stream, for profiling without
//! the agent crate (same rule sets as the agent's `throughput` bench).
//!
//! ```sh
//! vigil synthetic --events 1000000 --plant-every 10000 --plant all > events.ndjson
//! cargo run --release -p vigil-dsl --example correlate_bench -- events.ndjson [N] [shipped|hundred|both|dirs|stages] [arc|borrowed]
//! RULE_DIRS=tests/fixtures/elastic-rules/detection-rules:tests/fixtures/elastic-rules/protections-artifacts \
//!   cargo run --release -p vigil-dsl --example correlate_bench -- events.ndjson 200000 stages
//! ```
//!
//! By default events are fed as `Arc<Event>` through `process_arc`, as the
//! agent's pipeline does (it shares each event with the spool and the
//! recent-events ring); `borrowed` feeds `&Event` through `process`.
//!
//! An NDJSON input is cached next to itself as `<file>.bin` (bincode) so
//! later runs load quickly. Prints events/s, the alert count and a digest of
//! every alert (its JSON), so a change that alters results shows up.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::BufReader;
use std::sync::Arc;
use std::time::Instant;

use vigil_dsl::correlate::Correlator;
use vigil_dsl::correlate::CorrelatorConfig;
use vigil_dsl::ecs::EcsReader;
use vigil_dsl::rules::{load_rules, RuleSet};
use vigil_dsl::shipped::{shipped_rule_files, shipped_with_variants};
use vigil_dsl::Event;

fn load_events(path: &str, limit: usize) -> Vec<Event> {
    let cfg = bincode::config::standard();
    let bin = if path.ends_with(".bin") {
        path.to_string()
    } else {
        format!("{path}.bin")
    };
    if let Ok(bytes) = std::fs::read(&bin) {
        // A `Vec` is its length then its items: decode only the first `limit`.
        let (len, mut at): (u64, usize) =
            bincode::decode_from_slice(&bytes, cfg).expect("decode cache");
        let n = limit.min(len as usize);
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            let (e, used): (Event, usize) =
                bincode::decode_from_slice(&bytes[at..], cfg).expect("decode cache");
            at += used;
            events.push(e);
        }
        return events;
    }
    let file = std::fs::File::open(path).expect("open events");
    let events: Vec<Event> = EcsReader::new(BufReader::new(file))
        .map(|r| r.expect("valid ECS line"))
        .collect();
    std::fs::write(&bin, bincode::encode_to_vec(&events, cfg).expect("encode")).expect("cache");
    events.into_iter().take(limit).collect()
}

/// The shipped rules plus variants up to 100, as a large deployment would have.
/// The shipped rules plus every `*.rhai` of the folders in `RULE_DIRS`
/// (colon-separated), e.g. tests/fixtures/elastic-rules/detection-rules.
fn shipped_and_dirs() -> RuleSet {
    let mut files = shipped_rule_files();
    for dir in std::env::var("RULE_DIRS")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
    {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .expect("a RULE_DIRS folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
            .collect();
        paths.sort();
        for p in paths {
            files.push(vigil_dsl::rules::RuleFile {
                path: p.display().to_string(),
                text: std::fs::read_to_string(&p).expect("a rule file"),
                origin: vigil_dsl::rules::Origin::User,
            });
        }
    }
    load_rules(&files).rules
}

fn hundred_rules() -> RuleSet {
    let out = load_rules(&shipped_with_variants(100));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    out.rules
}

/// The events as the correlator is fed them.
enum Feed {
    Arc(Vec<Arc<Event>>),
    Borrowed(Vec<Event>),
}

fn run(name: &str, rules: RuleSet, feed: &Feed) {
    let rules = Arc::new(rules);
    let mut c = Correlator::new(rules.clone(), CorrelatorConfig::default());
    let mut alerts = Vec::new();
    let t = Instant::now();
    let cpu = cpu_seconds();
    let n = match feed {
        Feed::Arc(events) => {
            for e in events {
                c.process_arc(e, &mut alerts);
            }
            events.len()
        }
        Feed::Borrowed(events) => {
            for e in events {
                c.process(e, &mut alerts);
            }
            events.len()
        }
    };
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let cpu_rate = cpu
        .zip(cpu_seconds())
        .map_or(0.0, |(a, b)| n as f64 / (b - a));
    let mut h = DefaultHasher::new();
    for a in &alerts {
        serde_json::to_string(a).expect("alert json").hash(&mut h);
    }
    println!(
        "{name}: {} rules, {rate:.0} events/s ({cpu_rate:.0} per CPU second), {} alerts, digest {:016x}",
        rules.len(),
        alerts.len(),
        h.finish()
    );
}

/// CPU time of this process so far (user + system, from /proc; Linux
/// only): on a busy machine events per CPU second vary less than per
/// wall-clock second.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Time of each stage filter alone over the events of its category.
fn stage_costs(rules: &RuleSet, events: &[Event]) {
    use vigil_dsl::query::CompiledQuery;
    for r in rules.rules() {
        let filters: Vec<_> = match &r.query {
            CompiledQuery::Event(f) => vec![f],
            CompiledQuery::Sequence(s) => s
                .stages
                .iter()
                .chain(s.until.iter())
                .map(|st| &st.filter)
                .collect(),
        };
        for (i, f) in filters.iter().enumerate() {
            let t = Instant::now();
            let mut hits = 0usize;
            for e in events {
                hits += usize::from(f.matches(e));
            }
            println!(
                "{:<45} stage {i}: {:>7.1} ns/event, {hits} matches",
                r.meta.id,
                t.elapsed().as_nanos() as f64 / events.len() as f64
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: correlate_bench EVENTS [N] [which] [arc|borrowed]");
    let limit = args
        .get(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    let which = args.get(3).map_or("both", String::as_str);
    let events = load_events(path, limit);
    if which == "touch" {
        // The memory floor: read the strings rules typically look at.
        let t = Instant::now();
        let mut acc = 0usize;
        let f = |s: &Option<vigil_dsl::event::Text>| {
            s.as_deref()
                .map_or(0, |s| s.len() + s.as_bytes()[0] as usize)
        };
        for e in &events {
            let p = &e.process;
            acc += f(&e.host.os.os_type) + f(&e.host.id) + f(&p.name) + f(&p.executable);
            acc += f(&p.command_line) + f(&p.entity_id) + e.event.types.len();
            if let Some(pp) = &p.parent {
                acc += f(&pp.name) + f(&pp.executable) + f(&pp.entity_id);
            }
            if let Some(file) = &e.file {
                acc += f(&file.path);
            }
        }
        println!(
            "touch: {:.0} events/s ({acc})",
            events.len() as f64 / t.elapsed().as_secs_f64()
        );
        return;
    }
    if which == "stages" {
        stage_costs(&shipped_and_dirs(), &events);
        return;
    }
    let feed = match args.get(4).map_or("arc", String::as_str) {
        "borrowed" => Feed::Borrowed(events),
        _ => Feed::Arc(events.into_iter().map(Arc::new).collect()),
    };
    if which == "dirs" {
        run("dirs", shipped_and_dirs(), &feed);
        return;
    }
    if which != "hundred" {
        run("shipped", load_rules(&shipped_rule_files()).rules, &feed);
    }
    if which != "shipped" {
        run("hundred", hundred_rules(), &feed);
    }
}
