//! `vigil replay`: events from NDJSON files, in timestamp order, through the
//! rules (and optionally into a spool); alerts out as NDJSON. Inputs are
//! streamed: each holds back a bounded number of events to restore their
//! order, and the inputs are merged, so memory does not grow with the input.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use dsl::correlate::Correlator;
use dsl::correlate::CorrelatorConfig;
use dsl::ecs::EcsReader;
use dsl::Event;

use crate::cli::{ReplayArgs, ReplayFormat};
use crate::history::store::EventSpool;
use crate::rule_files;
use crate::sources::es::eslogger::{EsloggerReader, LineError};
use crate::sources::es::mapping::MapContext;
use crate::sources::replay::{in_time_order, REORDER_EVENTS};

pub fn run(a: ReplayArgs) -> Result<ExitCode> {
    let loaded = rule_files::load(a.rules.as_deref(), !a.no_shipped_rules)?;
    for e in &loaded.errors {
        eprintln!("vigil: rule error: {e}");
    }
    let bad_lines = Rc::new(Cell::new(0u64));
    let mut inputs = Vec::new();
    for path in &a.files {
        let input: Box<dyn BufRead> = if path == Path::new("-") {
            Box::new(BufReader::new(std::io::stdin()))
        } else if path.is_dir() {
            anyhow::bail!(
                "{} is a directory; give the NDJSON files in it",
                path.display()
            );
        } else {
            Box::new(BufReader::new(
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
            ))
        };
        let events = read_events(input, path, a.format, a.host_id.as_deref(), &bad_lines);
        inputs.push(events);
    }

    let mut spool = a
        .spool
        .as_deref()
        .map(|p| {
            EventSpool::open(
                p,
                crate::config::SpoolSection {
                    size_mb: a.spool_size_mb,
                    ..Default::default()
                }
                .spool_config(),
            )
        })
        .transpose()?;
    let mut correlator = Correlator::new(Arc::new(loaded.rules), CorrelatorConfig::default());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut alerts = Vec::new();
    let mut prev_ts: Option<i64> = None;
    let mut alert_count = 0u64;
    let mut replayed = 0u64;
    for e in in_time_order(inputs, REORDER_EVENTS) {
        if a.pace {
            if let Some(prev) = prev_ts {
                let gap = (e.timestamp_ns - prev).clamp(0, 60_000_000_000) as u64;
                out.flush()?;
                std::thread::sleep(Duration::from_nanos(gap));
            }
            prev_ts = Some(e.timestamp_ns);
        }
        if let Some(s) = spool.as_mut() {
            s.append(&e)?;
        }
        correlator.process(&e, &mut alerts);
        replayed += 1;
        for alert in alerts.drain(..) {
            alert_count += 1;
            writeln!(out, "{}", serde_json::to_string(&alert)?)?;
        }
    }
    out.flush()?;
    if let Some(s) = spool.as_mut() {
        s.flush()?;
    }
    let bad_lines = bad_lines.get();
    eprintln!("vigil: replayed {replayed} events ({bad_lines} bad lines), {alert_count} alerts");
    // Input that held no readable event is an input error, not "no alerts".
    if replayed == 0 && bad_lines > 0 {
        eprintln!("vigil: no line of the input was an event");
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// The events of one input, in its order; bad lines are reported on
/// stderr and counted in `bad_lines`.
fn read_events(
    input: Box<dyn BufRead>,
    path: &Path,
    format: ReplayFormat,
    host_id: Option<&str>,
    bad_lines: &Rc<Cell<u64>>,
) -> Box<dyn Iterator<Item = Event>> {
    let shown = path.display().to_string();
    let bad = Rc::clone(bad_lines);
    match format {
        ReplayFormat::Ecs => Box::new(EcsReader::new(input).filter_map(move |r| match r {
            Ok(e) => Some(e),
            Err(e) => {
                bad.set(bad.get() + 1);
                eprintln!("vigil: {shown}: skipped {e}");
                None
            }
        })),
        ReplayFormat::Eslogger => {
            let ctx = eslogger_context(host_id);
            let on_error = {
                let shown = shown.clone();
                move |line: u64, e: &LineError| {
                    eprintln!("vigil: {shown}: line {line}: skipped {e}");
                }
            };
            let mut reader = EsloggerReader::new(input, ctx, on_error);
            let mut done = false;
            // The reader's own stats count malformed lines; they are added
            // (and shown) when the file ends.
            Box::new(std::iter::from_fn(move || {
                if done {
                    return None;
                }
                match reader.next() {
                    Some(e) => Some(e),
                    None => {
                        done = true;
                        let stats = reader.stats();
                        bad.set(bad.get() + stats.malformed);
                        eprintln!("vigil: {shown}: eslogger {stats}");
                        None
                    }
                }
            }))
        }
    }
}

/// eslogger output names no host: use the one given, else this machine's
/// (the usual case is replaying a recording made here).
fn eslogger_context(host_id: Option<&str>) -> MapContext {
    let id = match host_id {
        Some(h) => h.to_string(),
        None => crate::config::Config::default().resolved_host_id(),
    };
    MapContext::macos(&id, None, None, None)
}
