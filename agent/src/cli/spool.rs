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
        SpoolCommand::Info { path, json, verify } => info(&path, json, verify),
        SpoolCommand::Dump {
            path,
            since,
            until,
            json,
        } => dump(&path, since.as_deref(), until.as_deref(), json),
    }
}

/// What reading every block found (`--verify`).
#[derive(Debug, Default, serde::Serialize)]
struct Verified {
    blocks_read: u64,
    blocks_unreadable: u64,
    events_readable: u64,
    records_undecodable: u64,
}

fn verify(reader: &SpoolReader) -> Verified {
    let mut v = Verified::default();
    for info in reader.blocks() {
        match reader.read_block(info) {
            Ok(block) => {
                let (counts, err) = for_each_event(&block, |_| true, |_| ControlFlow::Continue(()));
                v.events_readable += counts.in_range - counts.bad_records;
                v.records_undecodable += counts.bad_records;
                if err.is_some() {
                    v.blocks_unreadable += 1;
                } else {
                    v.blocks_read += 1;
                }
            }
            Err(_) => v.blocks_unreadable += 1,
        }
    }
    v
}

fn info(path: &std::path::Path, json: bool, verify_blocks: bool) -> Result<ExitCode> {
    let reader =
        SpoolReader::open(path).with_context(|| format!("opening spool {}", path.display()))?;
    let i = reader.info();
    // A file shorter than its header says (truncated, or never grown).
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let expected_len = spool::HEADER_PAGE + i.capacity;
    let truncated = file_len < expected_len;
    let verified = verify_blocks.then(|| verify(&reader));
    let damaged = truncated
        || i.corrupt_blocks > 0
        || verified
            .as_ref()
            .is_some_and(|v| v.blocks_unreadable > 0 || v.records_undecodable > 0);
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
            "file_bytes": file_len,
            "truncated": truncated,
            "checked": if verified.is_some() { "every block and record" } else { "block headers only" },
            "verified": verified,
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
        if truncated {
            println!(
                "file             TRUNCATED: {} of the {} its header claims",
                human_bytes(file_len),
                human_bytes(expected_len)
            );
        }
        match &verified {
            None => println!("checked          block headers only (--verify reads every block)"),
            Some(v) => println!(
                "verified         {} blocks read, {} unreadable; {} events readable, {} records undecodable",
                v.blocks_read, v.blocks_unreadable, v.events_readable, v.records_undecodable
            ),
        }
    }
    Ok(if damaged && verify_blocks {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
