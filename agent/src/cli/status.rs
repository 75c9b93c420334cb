//! `vigil status`: the running agent's counters through its control
//! socket, else the `status.json` it left.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::StatusArgs;
use crate::pipeline::StatusSnapshot;

pub fn run(a: StatusArgs) -> Result<ExitCode> {
    // A running agent answers on its socket; a stopped one left status.json.
    if let Some(snap) = super::context::status_from_socket(&a.state_dir) {
        if a.json {
            println!("{}", serde_json::to_string(&snap)?);
        } else {
            print_status(&snap, &super::context::socket_path(&a.state_dir));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let path = a.state_dir.join("status.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (is the agent running with this state dir?)",
            path.display()
        )
    })?;
    let snap: StatusSnapshot =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let socket = super::context::socket_path(&a.state_dir);
    let age = dsl::time::parse_rfc3339(&snap.at)
        .map(|at| (dsl::time::now_ns() - at) / 1_000_000_000)
        .unwrap_or(-1);
    if socket.exists() {
        eprintln!(
            "vigil: the agent did not answer on {} within {} s (busy or stuck); this is status.json, written {age} s ago",
            socket.display(),
            super::context::STATUS_TIMEOUT.as_secs()
        );
    } else {
        eprintln!("vigil: no agent is running with this state dir; this is the status.json it left, written {age} s ago");
    }
    if a.json {
        println!("{}", serde_json::to_string(&snap)?);
    } else {
        print_status(&snap, &path);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &StatusSnapshot, path: &Path) {
    println!("status of        {} (at {})", path.display(), s.at);
    println!("uptime           {}s", s.uptime_secs);
    println!("events received  {}", s.received);
    println!("events dropped   {}", s.dropped);
    println!("queue depth      {}", s.queue_depth);
    println!(
        "processed        {} ({} execs without a name or executable)",
        s.processed, s.execs_without_image
    );
    println!("spooled          {} ({} errors)", s.spooled, s.spool_errors);
    println!(
        "alerts           {} ({} output errors, {} over the per-event cap)",
        s.alerts, s.output_errors, s.alerts_capped
    );
    println!("processes        {}", s.processes_tracked);
    println!(
        "memory           {} KiB resident, {} KiB peak",
        s.rss_kb, s.peak_rss_kb
    );
    println!(
        "{:<45} {:>6} {:>8} {:>8} {:>9}",
        "rule", "open", "evicted", "expired", "completed"
    );
    for r in &s.rules {
        println!(
            "{:<45} {:>6} {:>8} {:>8} {:>9}{}",
            r.id,
            r.open_chains,
            r.evicted,
            r.expired,
            r.completed,
            match r.hook_overruns {
                0 => String::new(),
                n if n >= dsl::rules::limits::HOOK_OVERRUNS => {
                    format!("  on_match disabled after {n} overruns of its time budget")
                }
                n => format!("  on_match over its time budget {n} times"),
            }
        );
    }
    print_delivery_status(s);
}

/// Spool, outbox and sinks (present when the agent has them).
fn print_delivery_status(s: &StatusSnapshot) {
    if let Some(sp) = &s.spool {
        let used = sp
            .used_bytes
            .map(|u| format!("{} of {} MiB used, ", u >> 20, sp.capacity_bytes >> 20))
            .unwrap_or_else(|| format!("{} MiB, ", sp.capacity_bytes >> 20));
        println!(
            "spool            {}{} blocks written, {} overwritten ({})",
            used,
            sp.blocks_written,
            sp.blocks_overwritten,
            sp.path.display()
        );
        if let (Some(o), Some(n)) = (&sp.oldest, &sp.newest) {
            println!("spool history    {o} .. {n}");
        }
    }
    if let Some(o) = &s.outbox {
        println!(
            "outbox           {} alerts appended, {} KiB of {} MiB, {} rejected, {} dropped (full)",
            o.appended,
            o.bytes >> 10,
            o.max_bytes >> 20,
            o.rejected,
            o.dropped_oldest
        );
    }
    if !s.sinks.is_empty() {
        println!(
            "{:<20} {:<7} {:>9} {:>8} {:>8} {:>8} {:>8}  last error",
            "sink", "kind", "delivered", "backlog", "failures", "rejected", "dropped"
        );
        for k in &s.sinks {
            println!(
                "{:<20} {:<7} {:>9} {:>8} {:>8} {:>8} {:>8}  {}",
                k.name,
                k.kind,
                k.delivered,
                k.backlog,
                k.failures,
                k.rejected,
                k.dropped,
                k.last_error.as_deref().unwrap_or("-")
            );
        }
    }
}
