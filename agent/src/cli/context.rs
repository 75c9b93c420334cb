//! The CLI side of the control socket: `vigil context`, `vigil rules
//! reload`, and `vigil status` while the agent runs. Exit codes: 0 ok, 1
//! not found or rejected, 2 usage or I/O error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use dsl::time::format_rfc3339;
use serde_json::{json, Value};

use crate::cli::ContextArgs;
use crate::pipeline::StatusSnapshot;

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("vigil.sock")
}

/// Sends one request; `Err` if no agent answers on the socket.
fn ask(state_dir: &Path, req: &Value) -> Result<Value> {
    let path = socket_path(state_dir);
    crate::control::request(&path, req).map_err(|e| {
        anyhow!(
            "cannot reach the agent at {} ({e}); is `vigil run` running with --state-dir {}?",
            path.display(),
            state_dir.display()
        )
    })
}

/// The agent's error as a message and an exit code.
fn failure(answer: &Value) -> (String, ExitCode) {
    let msg = answer["error"]
        .as_str()
        .unwrap_or("unknown error")
        .to_string();
    let code = match answer["kind"].as_str() {
        Some("not_found") | Some("rejected") => 1,
        _ => 2,
    };
    (msg, ExitCode::from(code))
}

/// The running agent's status, if one answers on the socket.
/// How long `vigil status` waits for the running agent.
pub const STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

pub fn status_from_socket(state_dir: &Path) -> Option<StatusSnapshot> {
    // A busy or stuck agent must not hang `vigil status`: status.json is
    // the answer then, said to be one.
    let answer = crate::control::request_within(
        &socket_path(state_dir),
        &json!({"cmd": "status"}),
        STATUS_TIMEOUT,
    )
    .ok()?;
    if answer["ok"] != true {
        return None;
    }
    serde_json::from_value(answer["result"].clone()).ok()
}

pub fn rules_reload(state_dir: &Path) -> Result<ExitCode> {
    let answer = ask(state_dir, &json!({"cmd": "rules_reload"}))?;
    if answer["ok"] == true {
        println!(
            "rules reloaded: {} rules running",
            answer["result"]["rules"]
        );
        Ok(ExitCode::SUCCESS)
    } else {
        let (msg, code) = failure(&answer);
        eprintln!("vigil: {msg}");
        Ok(code)
    }
}

pub fn run(a: ContextArgs) -> Result<ExitCode> {
    let mut req = json!({"cmd": "context", "limit": a.limit});
    match (&a.id, &a.host) {
        (Some(id), _) => {
            req["id"] = json!(id);
            req["window"] = json!(a.window);
        }
        (None, Some(host)) => {
            req["host"] = json!(host);
            req["start"] = json!(a.since);
            req["end"] = json!(a.until);
        }
        (None, None) => return Err(anyhow!("give an alert or entity id, or --host")),
    }
    let answer = ask(&a.state_dir, &req)?;
    if answer["ok"] != true {
        let (msg, code) = failure(&answer);
        eprintln!("vigil: {msg}");
        return Ok(code);
    }
    let result = &answer["result"];
    if a.json {
        println!("{result}");
    } else {
        print_context(result);
    }
    Ok(ExitCode::SUCCESS)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// `name pid  executable args  user=..`
fn process_line(p: &Value) -> String {
    let args: Vec<&str> = p["args"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let mut line = format!("{} ({})", s(&p["name"]), p["pid"]);
    if let Some(exe) = p["executable"].as_str() {
        line.push_str(&format!("  {exe}"));
    }
    // args[0] repeats the program; the rest is what matters.
    let rest = if args.len() > 1 {
        &args[1..]
    } else {
        &args[..]
    };
    if !rest.is_empty() {
        line.push_str(&format!(" {}", rest.join(" ")));
    }
    if let Some(u) = p["user_id"].as_str() {
        line.push_str(&format!("  user={u}"));
    }
    if let Some(start) = p["start_ns"].as_i64().filter(|&t| t > 0) {
        line.push_str(&format!("  started {}", format_rfc3339(start)));
    }
    if let Some(exit) = p["exit_ns"].as_i64() {
        line.push_str(&format!("  exited {}", format_rfc3339(exit)));
    }
    line
}

fn print_entity(e: &Value) {
    let id = s(&e["entity_id"]);
    println!();
    println!("process tree of {id}");
    let mut chain: Vec<&Value> = e["ancestry"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if chain.is_empty() && !e["process"].is_null() {
        chain.push(&e["process"]);
    }
    if chain.is_empty() {
        println!("  (not in the process table and not in the spool)");
    }
    chain.reverse(); // root first
    let mut depth = 0;
    for (i, p) in chain.iter().enumerate() {
        let indent = "   ".repeat(depth);
        let branch = if i == 0 { "" } else { "└─ " };
        let mark = if p["entity_id"].as_str() == Some(id) {
            "   <== this process"
        } else {
            ""
        };
        println!("  {indent}{branch}{}{mark}", process_line(p));
        if i > 0 {
            depth += 1;
        }
    }
    let children = e["children"].as_array().cloned().unwrap_or_default();
    let indent = "   ".repeat(depth + usize::from(!chain.is_empty()));
    for (i, c) in children.iter().enumerate() {
        let branch = if i + 1 == children.len() {
            "└─"
        } else {
            "├─"
        };
        println!(
            "  {indent}{branch} {}  at {}",
            process_line(c),
            s(&c["@timestamp"])
        );
    }
    if let Some(files) = e["files_written"].as_array().filter(|f| !f.is_empty()) {
        println!("files written by {id} ({})", files.len());
        for f in files {
            println!(
                "  {}  {:<10} {}",
                s(&f["@timestamp"]),
                s(&f["action"]),
                s(&f["path"])
            );
        }
    }
    if let Some(conns) = e["connections"].as_array().filter(|c| !c.is_empty()) {
        println!("connections by {id} ({})", conns.len());
        for c in conns {
            println!(
                "  {}  {:<10} {} {}",
                s(&c["@timestamp"]),
                s(&c["action"]),
                s(&c["destination"]),
                c["transport"].as_str().unwrap_or("")
            );
        }
    }
}

pub(crate) fn print_context(r: &Value) {
    if let Some(a) = r.get("alert").filter(|a| !a.is_null()) {
        println!(
            "alert {}  {} ({})  at {}",
            s(&a["id"]),
            s(&a["rule_id"]),
            s(&a["severity"]),
            s(&a["@timestamp"])
        );
        println!("  {}", s(&a["rule_name"]));
    }
    if let Some(h) = r["host_id"].as_str() {
        println!("host {h}");
    }
    println!(
        "window {} .. {}",
        s(&r["window"]["start"]),
        s(&r["window"]["end"])
    );
    for e in r["entities"].as_array().into_iter().flatten() {
        print_entity(e);
    }
    let events = r["events"].as_array().cloned().unwrap_or_default();
    println!();
    println!(
        "events ({}{})",
        events.len(),
        if r["events_truncated"] == true {
            ", more in the window: raise --limit or narrow --window"
        } else {
            ""
        }
    );
    for v in events {
        match serde_json::from_value::<dsl::Event>(v) {
            Ok(e) => println!("  {}", crate::cli::hunt::one_line(&e)),
            Err(err) => println!("  (unreadable event: {err})"),
        }
    }
    if let Some(n) = r["blocks_unreadable"].as_u64().filter(|&n| n > 0) {
        println!("({n} spool blocks were overwritten or damaged while reading)");
    }
}
