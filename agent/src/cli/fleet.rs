//! `vigil fleet hunt|context|status|hosts`: one request to every agent over
//! NATS, answers merged with the host that gave them. Results go to stdout
//! (NDJSON `{"host":..,"event"|"alert"|"result":..}` or a table); the
//! summary (who answered, who did not) goes to stderr, as JSON with --json.
//! Exit: 0 something found / answered, 1 nothing, 2 error.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Map, Value};

use crate::cli::{FleetArgs, FleetCommand};
use crate::config::Config;
use crate::fleet::client::{known_hosts, scatter, Gathered, Target};
use crate::fleet::FleetError;
use crate::nats::runtime;

pub fn run(a: FleetArgs) -> Result<ExitCode> {
    let cfg = match &a.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::from_toml(&text).map_err(|e| anyhow!("{}: {e}", p.display()))?
        }
        None => Config::default(),
    };
    let mut nats = cfg.nats.clone();
    if !a.urls.is_empty() {
        nats.urls = a.urls.clone();
    }
    if a.user.is_some() {
        nats.user = a.user.clone();
        nats.password = None;
        nats.password_env = a.password_env.clone();
    }
    if a.creds.is_some() {
        nats.creds_file = a.creds.clone();
    }
    if a.nkey_seed_file.is_some() {
        nats.nkey_seed_file = a.nkey_seed_file.clone();
    }
    if a.ca_file.is_some() {
        nats.ca_file = a.ca_file.clone();
    }
    if nats.urls.is_empty() {
        nats.urls = vec!["nats://127.0.0.1:4222".into()];
    }
    let errs = nats.validate();
    if !errs.is_empty() {
        bail!("{}", errs.join("; "));
    }
    let timeout = std::time::Duration::from_nanos(
        dsl::time::parse_duration_ns(&a.timeout)
            .map_err(|e| anyhow!("--timeout: {e}"))?
            .max(1) as u64,
    );
    let json_out = a.json || !std::io::stdout().is_terminal();
    let mut target = Target {
        nats,
        prefix: cfg.fleet.subject_prefix.clone(),
        hosts_stream: cfg.fleet.hosts_stream.clone(),
        host: None,
        timeout,
    };
    // Ctrl-C cancels the agents' work instead of leaving it running.
    let interrupt = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupt))?;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());

    match a.command {
        FleetCommand::Hosts => {
            let hosts = runtime().block_on(async {
                let client = target.nats.connect("vigil-fleet-client").await?;
                known_hosts(&client, &target.prefix, &target.hosts_stream).await
            });
            let hosts = hosts?;
            let now = dsl::time::now_ns();
            for (id, e) in &hosts {
                if json_out {
                    writeln!(out, "{}", serde_json::to_string(e)?)?;
                } else {
                    writeln!(
                        out,
                        "{id:<36} {:<24} {:<8} last seen {} ago",
                        e.hostname,
                        e.version,
                        ago(now - e.seen_ns)
                    )?;
                }
            }
            out.flush()?;
            Ok(if hosts.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        FleetCommand::Alerts { stream, last } => {
            let alerts = runtime().block_on(stream_tail(&target, &stream, last));
            let alerts = alerts?;
            for a in &alerts {
                if json_out {
                    writeln!(out, "{a}")?;
                } else {
                    writeln!(
                        out,
                        "{:>8} {:<40} {}",
                        a["seq"],
                        a["subject"].as_str().unwrap_or("-"),
                        a["alert"]["rule"]["name"].as_str().unwrap_or("-")
                    )?;
                }
            }
            out.flush()?;
            Ok(if alerts.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        FleetCommand::Hunt {
            query,
            since,
            until,
            limit,
            host,
        } => {
            // Fail on a bad query here, not once per host.
            dsl::query::compile(&query).map_err(|e| {
                let (line, col) = e.line_col(&query);
                anyhow!("query:{line}:{col}: {}", e.message)
            })?;
            target.host = host;
            let mut req = Map::new();
            req.insert("query".into(), json!(query));
            if let Some(s) = since {
                req.insert("since".into(), json!(s));
            }
            if let Some(u) = until {
                req.insert("until".into(), json!(u));
            }
            if let Some(l) = limit {
                req.insert("limit".into(), json!(l));
            }
            let mut found = 0u64;
            let mut write_err = None;
            let gathered = runtime().block_on(scatter(
                &target,
                "hunt",
                req,
                &interrupt,
                &mut |host, results| {
                    for r in results {
                        found += 1;
                        let line = if json_out {
                            let key = if r.get("rule").is_some() && r.get("events").is_some() {
                                "alert"
                            } else {
                                "event"
                            };
                            json!({"host": host, key: r}).to_string()
                        } else {
                            format!("{host:<20} {}", table_line(&r))
                        };
                        if let Err(e) = writeln!(out, "{line}") {
                            write_err = Some(e);
                        }
                    }
                },
            ));
            out.flush()?;
            if let Some(e) = write_err {
                return Err(e.into());
            }
            let gathered = gathered?;
            summarize(&gathered, json_out);
            Ok(if found > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        FleetCommand::Context {
            id,
            host,
            window,
            limit,
        } => {
            target.host = host;
            let mut req = Map::new();
            req.insert("id".into(), json!(id));
            req.insert("window".into(), json!(window));
            req.insert("limit".into(), json!(limit));
            let g =
                runtime().block_on(scatter(&target, "context", req, &interrupt, &mut |_, _| {}))?;
            let mut any = false;
            for (h, d) in &g.done {
                let Some(result) = d.result.as_ref().filter(|_| d.ok) else {
                    continue;
                };
                any = true;
                if json_out {
                    writeln!(out, "{}", json!({"host": h, "result": result}))?;
                } else {
                    writeln!(out, "== host {h}")?;
                    out.flush()?;
                    super::context::print_context(result);
                }
            }
            out.flush()?;
            // Hosts that do not know the id are not news when asking all.
            summarize_filtered(&g, json_out, target.host.is_none());
            Ok(if any {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        FleetCommand::Status { host } => {
            target.host = host;
            let g = runtime().block_on(scatter(
                &target,
                "status",
                Map::new(),
                &interrupt,
                &mut |_, _| {},
            ))?;
            if !json_out {
                writeln!(
                    out,
                    "{:<24} {:>12} {:>10} {:>8} {:>8} {:>10}",
                    "host", "received", "dropped", "alerts", "rules", "spool MB"
                )?;
            }
            for (h, d) in g.done.iter().filter(|(_, d)| d.ok) {
                let r = d.result.clone().unwrap_or(Value::Null);
                if json_out {
                    writeln!(out, "{}", json!({"host": h, "result": r}))?;
                } else {
                    let n = |k: &str| r[k].as_u64().unwrap_or(0);
                    writeln!(
                        out,
                        "{h:<24} {:>12} {:>10} {:>8} {:>8} {:>10.1}",
                        n("received"),
                        n("dropped"),
                        n("alerts"),
                        r["rules"].as_array().map_or(0, Vec::len),
                        r["spool"]["used_bytes"].as_u64().unwrap_or(0) as f64 / 1048576.0
                    )?;
                }
            }
            out.flush()?;
            summarize(&g, json_out);
            Ok(if g.done.values().any(|d| d.ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// The newest `last` messages of `stream`, oldest first, as
/// `{"seq","subject","msg_id","alert"}`.
async fn stream_tail(target: &Target, stream: &str, last: u64) -> Result<Vec<Value>, FleetError> {
    let client = target.nats.connect("vigil-fleet-client").await?;
    let js = async_nats::jetstream::new(client);
    let mut st = js
        .get_stream(stream)
        .await
        .map_err(FleetError::nats(format!("stream {stream}")))?;
    let state = st
        .info()
        .await
        .map_err(FleetError::nats(format!("stream {stream}")))?
        .state
        .clone();
    if state.messages == 0 {
        return Ok(Vec::new());
    }
    let from = state
        .first_sequence
        .max(state.last_sequence.saturating_sub(last.saturating_sub(1)));
    let mut out = Vec::new();
    for seq in from..=state.last_sequence {
        // Gaps are messages removed by limits.
        let Ok(m) = st.get_raw_message(seq).await else {
            continue;
        };
        let alert: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        let msg_id = m.headers.get("Nats-Msg-Id").map(|v| v.to_string());
        out.push(json!({
            "seq": seq,
            "subject": m.subject.to_string(),
            "msg_id": msg_id,
            "alert": alert,
        }));
    }
    Ok(out)
}

fn table_line(r: &Value) -> String {
    if r.get("rule").is_some() {
        return format!(
            "ALERT {} {}",
            r["rule"]["id"].as_str().unwrap_or("-"),
            r["join_key"]
        );
    }
    match dsl::ecs::parse_ecs_json(&r.to_string()) {
        Ok(e) => super::hunt::one_line(&e),
        Err(_) => r.to_string(),
    }
}

fn ago(ns: i64) -> String {
    let s = (ns.max(0) / 1_000_000_000) as u64;
    humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
}

fn summarize(g: &Gathered, json_out: bool) {
    summarize_filtered(g, json_out, false)
}

/// Who answered, who failed, who is missing; on stderr.
fn summarize_filtered(g: &Gathered, json_out: bool, hide_not_found: bool) {
    let now = dsl::time::now_ns();
    let failed: Vec<(&String, String)> = g
        .done
        .iter()
        .filter(|(_, d)| !d.ok)
        .filter(|(_, d)| !(hide_not_found && d.kind.as_deref() == Some("not_found")))
        .map(|(h, d)| {
            (
                h,
                format!(
                    "{}: {}",
                    d.kind.as_deref().unwrap_or("error"),
                    d.error.as_deref().unwrap_or("")
                ),
            )
        })
        .collect();
    if json_out {
        let hosts: Map<String, Value> = g
            .done
            .iter()
            .map(|(h, d)| {
                // Results went to stdout; the summary says how it went.
                let mut d = d.clone();
                d.result = None;
                (h.clone(), serde_json::to_value(d).unwrap_or(Value::Null))
            })
            .collect();
        let summary = json!({
            "summary": {
                "answered": g.done.keys().collect::<Vec<_>>(),
                "missing": g.missing,
                "failed": failed.iter().map(|(h, m)| json!({"host": h, "error": m})).collect::<Vec<_>>(),
                "cancelled": g.cancelled,
                "hosts": hosts,
            }
        });
        eprintln!("{summary}");
        return;
    }
    let truncated: Vec<&String> = g
        .done
        .iter()
        .filter(|(_, d)| d.truncated)
        .map(|(h, _)| h)
        .collect();
    eprintln!(
        "fleet: {} hosts answered{}",
        g.done.len(),
        if g.cancelled { " (interrupted)" } else { "" }
    );
    for (h, m) in failed {
        eprintln!("fleet: {h}: {m}");
    }
    if !truncated.is_empty() {
        eprintln!(
            "fleet: answers cut short by limits or the deadline: {}",
            truncated
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for h in &g.missing {
        let seen = g
            .expected
            .get(h)
            .and_then(|e| e.as_ref())
            .map(|e| format!(" (last seen {} ago)", ago(now - e.seen_ns)))
            .unwrap_or_default();
        eprintln!("fleet: no answer from {h}{seen}");
    }
}
