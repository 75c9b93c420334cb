//! `vigil replay`: events from NDJSON files, in timestamp order, through the
//! rules (and optionally into a spool); alerts out as NDJSON.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::ExitCode;
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
use crate::sources::es::eslogger::EsloggerReader;
use crate::sources::es::mapping::MapContext;

pub fn run(a: ReplayArgs) -> Result<ExitCode> {
    let loaded = rule_files::load(a.rules.as_deref(), !a.no_shipped_rules)?;
    for e in &loaded.errors {
        eprintln!("vigil: rule error: {e}");
    }
    let mut events = Vec::new();
    let mut bad_lines = 0u64;
    for path in &a.files {
        let input: Box<dyn BufRead> = if path == Path::new("-") {
            Box::new(BufReader::new(std::io::stdin()))
        } else {
            Box::new(BufReader::new(
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
            ))
        };
        match a.format {
            ReplayFormat::Ecs => {
                for r in EcsReader::new(input) {
                    match r {
                        Ok(e) => events.push(e),
                        Err(e) => {
                            bad_lines += 1;
                            eprintln!("vigil: {}: skipped {e}", path.display());
                        }
                    }
                }
            }
            ReplayFormat::Eslogger => {
                let ctx = eslogger_context(a.host_id.as_deref());
                let mut reader = EsloggerReader::new(input, ctx, |line, e| {
                    eprintln!("vigil: {}: line {line}: skipped {e}", path.display());
                });
                events.extend(reader.by_ref());
                let stats = reader.stats();
                bad_lines += stats.malformed;
                eprintln!("vigil: {}: eslogger {stats}", path.display());
            }
        }
    }
    // Stable sort: events with equal timestamps keep their file order.
    events.sort_by_key(|e: &Event| e.timestamp_ns);

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
    for e in &events {
        if a.pace {
            if let Some(prev) = prev_ts {
                let gap = (e.timestamp_ns - prev).clamp(0, 60_000_000_000) as u64;
                out.flush()?;
                std::thread::sleep(Duration::from_nanos(gap));
            }
            prev_ts = Some(e.timestamp_ns);
        }
        if let Some(s) = spool.as_mut() {
            s.append(e)?;
        }
        correlator.process(e, &mut alerts);
        for alert in alerts.drain(..) {
            alert_count += 1;
            writeln!(out, "{}", serde_json::to_string(&alert)?)?;
        }
    }
    out.flush()?;
    if let Some(s) = spool.as_mut() {
        s.flush()?;
    }
    eprintln!(
        "vigil: replayed {} events ({} bad lines), {} alerts",
        events.len(),
        bad_lines,
        alert_count
    );
    Ok(ExitCode::SUCCESS)
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
