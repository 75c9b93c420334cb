//! `vigil spool info|dump`.

use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;

use anyhow::{Context, Result};
use dsl::ecs::to_ecs_json;
use dsl::time::format_rfc3339;
use spool::SpoolReader;

use crate::cli::SpoolCommand;
use crate::history::store::for_each_event;
use crate::history::timearg::time_range;

pub fn run(cmd: SpoolCommand) -> Result<ExitCode> {
    match cmd {
        SpoolCommand::Info { path, json } => info(&path, json),
        SpoolCommand::Dump {
            path,
            since,
            until,
            json,
        } => dump(&path, since.as_deref(), until.as_deref(), json),
    }
}

fn info(path: &std::path::Path, json: bool) -> Result<ExitCode> {
    let reader =
        SpoolReader::open(path).with_context(|| format!("opening spool {}", path.display()))?;
    let i = reader.info();
    let ratio = if i.compressed_bytes > 0 {
        i.raw_bytes as f64 / i.compressed_bytes as f64
    } else {
        0.0
    };
    let bytes_per_event = if i.records > 0 {
        i.compressed_bytes as f64 / i.records as f64
    } else {
        0.0
    };
    let ts = |t: Option<i64>| t.map(format_rfc3339);
    if json {
        let doc = serde_json::json!({
            "path": path.display().to_string(),
            "capacity_bytes": i.capacity,
            "used_bytes": i.used_bytes,
            "blocks": i.blocks,
            "events": i.records,
            "oldest": ts(i.oldest_ts),
            "newest": ts(i.newest_ts),
            "raw_bytes": i.raw_bytes,
            "compressed_bytes": i.compressed_bytes,
            "compression_ratio": ratio,
            "bytes_per_event": bytes_per_event,
            "corrupt_blocks": i.corrupt_blocks,
        });
        println!("{doc}");
    } else {
        let pct = if i.capacity > 0 {
            100.0 * i.used_bytes as f64 / i.capacity as f64
        } else {
            0.0
        };
        println!("spool            {}", path.display());
        println!("capacity         {}", human_bytes(i.capacity));
        println!("used             {} ({pct:.1}%)", human_bytes(i.used_bytes));
        println!("blocks           {}", i.blocks);
        println!("events           {}", i.records);
        println!(
            "oldest           {}",
            ts(i.oldest_ts).unwrap_or_else(|| "-".into())
        );
        println!(
            "newest           {}",
            ts(i.newest_ts).unwrap_or_else(|| "-".into())
        );
        println!(
            "compression      {ratio:.1}x ({} raw -> {} stored, {bytes_per_event:.1} B/event)",
            human_bytes(i.raw_bytes),
            human_bytes(i.compressed_bytes)
        );
        println!("corrupt blocks   {}", i.corrupt_blocks);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn dump(
    path: &std::path::Path,
    since: Option<&str>,
    until: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let reader =
        SpoolReader::open(path).with_context(|| format!("opening spool {}", path.display()))?;
    let range = time_range(since, until)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut bad = 0u64;
    let mut write_err = None;
    let (mut corrupt_blocks, mut overwritten_blocks) = (0usize, 0usize);
    // Whole blocks, every record in order: a record's strings may be defined
    // by an earlier record of its block, even one outside the time range.
    'blocks: for info in reader.blocks().iter().filter(|b| b.overlaps(&range)) {
        let block = match reader.read_block(info) {
            Ok(b) => b,
            Err(spool::SpoolError::Overwritten { .. }) => {
                overwritten_blocks += 1;
                continue;
            }
            Err(spool::SpoolError::Corrupt { .. }) => {
                corrupt_blocks += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let (counts, error) = for_each_event(
            &block,
            |ts| range.contains(ts),
            |d| {
                let e = d.into_event();
                let line = if json {
                    to_ecs_json(&e)
                } else {
                    crate::cli::hunt::one_line(&e)
                };
                match writeln!(out, "{line}") {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        write_err = Some(e);
                        ControlFlow::Break(())
                    }
                }
            },
        );
        bad += counts.bad_records;
        if error.is_some() {
            corrupt_blocks += 1;
        }
        if write_err.is_some() {
            break 'blocks;
        }
    }
    out.flush().ok();
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    if corrupt_blocks + overwritten_blocks > 0 || bad > 0 {
        eprintln!(
            "vigil: skipped {corrupt_blocks} corrupt and {overwritten_blocks} overwritten blocks, {bad} undecodable records"
        );
    }
    Ok(ExitCode::SUCCESS)
}
