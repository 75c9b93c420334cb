//! `vigil run` and `vigil status`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use dsl::correlate::CorrelatorConfig;
use spool::SpoolConfig;

use crate::cli::{RunArgs, StatusArgs};
use crate::config::{Config, SourceKind};
use crate::control::{ControlConfig, ControlServer};
use crate::delivery::outbox::{Outbox, OutboxConfig};
use crate::pipeline::outputs::AlertOutputs;
use crate::pipeline::queue::{event_queue, EventQueue};
use crate::pipeline::{Pipeline, PipelineConfig, StatusSnapshot};
use crate::rule_files;
use crate::sources::feeds;
use crate::sources::synthetic::SyntheticConfig;
use crate::wake::WakeOnDemand;

/// How often the sleeping main thread looks at `stop` without being woken.
const STOP_CHECK: Duration = Duration::from_secs(1);

/// Reads the config file (if any) and applies command-line overrides.
fn effective_config(a: &RunArgs) -> Result<Config, Vec<String>> {
    let mut cfg = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| vec![format!("{}: {e}", path.display())])?;
            Config::from_toml(&text).map_err(|e| vec![format!("{}: {e}", path.display())])?
        }
        None => Config::default(),
    };
    if let Some(dir) = &a.state_dir {
        cfg.state_dir = dir.clone();
        cfg.spool.path = dir.join("events.spool");
        cfg.outputs.file = Some(dir.join("alerts.ndjson"));
    }
    if let Some(s) = a.source {
        cfg.source.kind = s;
    }
    if !a.replay.is_empty() {
        cfg.source.kind = SourceKind::Replay;
        cfg.source.replay_files = a.replay.clone();
    }
    if let Some(p) = &a.spool {
        cfg.spool.path = p.clone();
    }
    if let Some(n) = a.spool_size_mb {
        cfg.spool.size_mb = n;
    }
    if let Some(d) = &a.rules {
        cfg.rules.dir = Some(d.clone());
    }
    if let Some(f) = &a.alerts_file {
        cfg.outputs.file = Some(f.clone());
    }
    if let Some(r) = a.synthetic_rate {
        cfg.source.synthetic_rate = r;
    }
    let errs = cfg.validate();
    if errs.is_empty() {
        Ok(cfg)
    } else {
        Err(errs)
    }
}

pub fn run(a: RunArgs) -> Result<ExitCode> {
    let cfg = match effective_config(&a) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("vigil: invalid configuration:");
            for e in errs {
                eprintln!("  - {e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    if a.print_config {
        print!("{}", toml::to_string_pretty(&cfg)?);
        return Ok(ExitCode::SUCCESS);
    }
    let host_id = cfg.resolved_host_id();
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("creating state dir {}", cfg.state_dir.display()))?;

    let loaded = rule_files::load(cfg.rules.dir.as_deref(), cfg.rules.shipped)?;
    for e in &loaded.errors {
        tracing::error!("rule error: {e}");
    }
    if loaded.rules.is_empty() {
        bail!("no rule loaded; fix the errors above");
    }
    tracing::info!(rules = loaded.rules.len(), host = %host_id, source = ?cfg.source.kind, spool = %cfg.spool.path.display(), "vigil starting");

    // Alerts reach sinks only through the outbox, so it exists with them.
    let mut sink_set = None;
    let mut outputs = AlertOutputs::new(cfg.outputs.stdout, cfg.outputs.file.as_deref())?;
    if !cfg.sinks.is_empty() {
        let (outbox, sinks) = match open_sinks(&cfg) {
            Ok(x) => x,
            Err(errs) => {
                eprintln!("vigil: invalid configuration:");
                for e in errs {
                    eprintln!("  - {e}");
                }
                return Ok(ExitCode::from(2));
            }
        };
        outputs = outputs.with_outbox(outbox.clone());
        sink_set = Some(crate::delivery::sinks::SinkSet::start(&outbox, sinks)?);
    }
    let (control_tx, control_rx) =
        crate::control::control_channel(16).context("making the control channel")?;
    let control = if cfg.control.enabled {
        let started = ControlServer::start(
            ControlConfig {
                socket: cfg.state_dir.join("vigil.sock"),
                spool: cfg.spool.enabled.then(|| cfg.spool.path.clone()),
                rules_dir: cfg.rules.dir.clone(),
                shipped_rules: cfg.rules.shipped,
                outbox: outputs.outbox().cloned(),
            },
            control_tx,
        );
        match started {
            Ok(s) => Some(s),
            Err(e) if e.is::<crate::control::AnotherAgent>() => return Err(e),
            // Detection matters more than the socket (a path too long for
            // a Unix socket, say): run without it.
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "control socket unavailable: vigil status shows status.json only; context and rules reload will not work");
                None
            }
        }
    } else {
        None
    };
    let fleet = match (&control, cfg.fleet.enabled) {
        (Some(c), true) => Some(crate::fleet::responder::FleetResponder::start(
            crate::fleet::responder::ResponderConfig {
                fleet: cfg.fleet.clone(),
                nats: cfg.nats.clone(),
                host_id: host_id.clone(),
                spool: cfg.spool.enabled.then(|| cfg.spool.path.clone()),
                control: c.handler(),
            },
        )),
        (None, true) => {
            tracing::error!("fleet requests disabled: the control socket did not start");
            None
        }
        _ => None,
    };

    let EventQueue {
        sender: tx,
        receiver: rx,
        counters: queue_counters,
        reclaim,
    } = event_queue(cfg.queue.capacity);
    let stop = Arc::new(AtomicBool::new(false));
    // The main thread sleeps until a signal or the end of a source wakes it.
    let mut main_wake = WakeOnDemand::new().context("making the main thread's wake-up")?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
        main_wake
            .on_signal(sig)
            .context("installing signal handler")?;
    }
    let pipeline = Pipeline::new(
        PipelineConfig {
            host_id: host_id.clone(),
            spool: cfg.spool.enabled.then(|| {
                (
                    cfg.spool.path.clone(),
                    SpoolConfig {
                        capacity_bytes: cfg.spool.size_mb << 20,
                        block_target_bytes: (cfg.spool.block_kb << 10) as usize,
                        max_batch_age: Duration::from_millis(cfg.spool.max_batch_age_ms),
                        zstd_level: cfg.spool.zstd_level,
                    },
                )
            }),
            correlator: CorrelatorConfig {
                max_open_per_rule: cfg.correlator.max_open_per_rule,
                reorder_window_ns: cfg.correlator.reorder_window_ms as i64 * 1_000_000,
                ..CorrelatorConfig::default()
            },
            outputs,
            status_path: Some(cfg.state_dir.join("status.json")),
            seed_process_table: matches!(
                cfg.source.kind,
                SourceKind::Linux | SourceKind::Eslogger | SourceKind::EndpointSecurity
            ),
            window_max_events: cfg.alerts.window_max_events,
            idle_nap: Duration::from_millis(cfg.queue.batch_ms),
            reclaim: Some(reclaim),
        },
        Arc::new(loaded.rules),
        queue_counters,
    )?
    .with_control(control_rx);
    let pipeline = match &sink_set {
        Some(s) => pipeline.with_sinks(s.monitor()),
        None => pipeline,
    };

    let mut live_source: Option<SourceGuard> = None;
    // Sources that end on their own (replay, bounded synthetic) stop the agent.
    let source_done = match cfg.source.kind {
        SourceKind::Replay => Some(feeds::start_replay(
            cfg.source.replay_files.clone(),
            cfg.source.replay_pace,
            tx.clone(),
            stop.clone(),
            main_wake.waker(),
        )?),
        SourceKind::Synthetic => Some(feeds::start_synthetic(
            SyntheticConfig {
                seed: cfg.source.synthetic_seed,
                plant_every: cfg.source.synthetic_plant_every,
                plant: cfg.source.synthetic_plant,
                host_id: host_id.clone(),
                ..SyntheticConfig::default()
            },
            cfg.source.synthetic_rate,
            a.synthetic_events,
            tx.clone(),
            stop.clone(),
            main_wake.waker(),
        )?),
        SourceKind::Linux => {
            live_source = Some(match start_linux(&cfg, &host_id, tx.clone()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("vigil: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            });
            None
        }
        SourceKind::EndpointSecurity => {
            live_source = Some(match start_endpoint_security(&host_id, tx.clone()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("vigil: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            });
            None
        }
        SourceKind::Eslogger => {
            live_source = Some(match start_eslogger(&host_id, tx.clone(), stop.clone()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("vigil: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            });
            None
        }
    };
    // --keep-running: a sender stays alive so the pipeline outlives the source.
    let keep_open = a.keep_running.then(|| tx.clone());
    drop(tx);
    let pipeline_stop = Arc::clone(&stop);
    let worker = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || pipeline.run(rx, pipeline_stop))?;
    // Woken by signals and by finished sources; the timeout only covers a
    // source that sets `stop` itself (eslogger exiting).
    let nap = || main_wake.wait(None::<&std::os::unix::net::UnixStream>, Some(STOP_CHECK));
    if let Some(h) = source_done {
        while !h.is_finished() && !stop.load(Ordering::Relaxed) {
            nap();
        }
        let sent = h.join().unwrap_or(0);
        tracing::info!(events = sent, "source finished");
        while keep_open.is_some() && !stop.load(Ordering::Relaxed) {
            nap();
        }
    } else {
        while !stop.load(Ordering::Relaxed) {
            nap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Fleet requests need the pipeline: stop answering them first.
    drop(fleet);
    // Stop the kernel sources first so the pipeline drains a closed stream.
    drop(live_source);
    drop(keep_open);
    let mut snap = worker
        .join()
        .map_err(|_| anyhow::anyhow!("pipeline thread panicked"))??;
    drop(control);
    if let Some(sinks) = sink_set {
        // Every alert is in the outbox by now; what is not delivered in time
        // goes out after the next start.
        let monitor = sinks.monitor();
        sinks.shutdown(Duration::from_millis(cfg.outbox.drain_timeout_ms));
        // status.json tells what the drain achieved.
        snap.sinks = monitor.status();
        snap.outbox = Some(monitor.outbox().status());
        if let Err(e) = crate::pipeline::write_status(&cfg.state_dir.join("status.json"), &snap) {
            tracing::debug!(error = %e, "status write failed");
        }
    }
    tracing::info!(
        received = snap.received,
        dropped = snap.dropped,
        spooled = snap.spooled,
        alerts = snap.alerts,
        "vigil stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// Keeps a live source running until dropped.
type SourceGuard = Box<dyn std::any::Any>;

/// eslogger exists only on macOS 13+; when it exits the agent stops (its
/// LaunchDaemon restarts it).
#[cfg(target_os = "macos")]
fn start_eslogger(
    host_id: &str,
    tx: crate::pipeline::queue::EventSender,
    stop: Arc<AtomicBool>,
) -> Result<SourceGuard> {
    use crate::sources::es::eslogger::{start_eslogger, EsloggerCommand};
    use crate::sources::es::mapping::MapContext;
    let host_name = sysinfo::System::host_name();
    let ctx = MapContext::macos(
        host_id,
        host_name.as_deref(),
        sysinfo::System::os_version().as_deref(),
        None,
    );
    Ok(Box::new(start_eslogger(
        &EsloggerCommand::default(),
        ctx,
        tx,
        stop,
    )?))
}

/// The in-process Endpoint Security client; it stops when dropped.
#[cfg(target_os = "macos")]
fn start_endpoint_security(
    host_id: &str,
    tx: crate::pipeline::queue::EventSender,
) -> Result<SourceGuard> {
    use crate::sources::es::live::{EsSource, EsSourceConfig};
    let source = EsSource::start(EsSourceConfig::new(host_id), tx)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("starting the Endpoint Security client")?;
    Ok(Box::new(source))
}

#[cfg(not(target_os = "macos"))]
fn start_endpoint_security(
    _host_id: &str,
    _tx: crate::pipeline::queue::EventSender,
) -> Result<SourceGuard> {
    bail!("source.kind = \"endpoint_security\" only runs on macOS")
}

#[cfg(not(target_os = "macos"))]
fn start_eslogger(
    _host_id: &str,
    _tx: crate::pipeline::queue::EventSender,
    _stop: Arc<AtomicBool>,
) -> Result<SourceGuard> {
    bail!("source.kind = \"eslogger\" needs macOS 13+ (/usr/bin/eslogger); elsewhere, replay its output with `vigil replay --format eslogger FILE`")
}

#[cfg(target_os = "linux")]
fn start_linux(
    cfg: &Config,
    host_id: &str,
    tx: crate::pipeline::queue::EventSender,
) -> Result<SourceGuard> {
    use crate::sources::linux::{LinuxSource, LinuxSourceConfig};
    let host_name = sysinfo::System::host_name().unwrap_or_else(|| host_id.to_string());
    let mut lc = LinuxSourceConfig::new(host_id, host_name);
    lc.fanotify_paths = cfg
        .source
        .fanotify_paths
        .iter()
        .filter(|p| p.exists())
        .cloned()
        .collect();
    lc.socket_poll_interval = Duration::from_millis(cfg.source.socket_poll_ms);
    let source = LinuxSource::start(lc, Arc::new(move |e| tx.push(e)))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("starting the Linux live source (process connector, fanotify, socket tables)")?;
    Ok(Box::new(source))
}

#[cfg(not(target_os = "linux"))]
fn start_linux(
    _cfg: &Config,
    _host_id: &str,
    _tx: crate::pipeline::queue::EventSender,
) -> Result<SourceGuard> {
    bail!("source.kind = \"linux\" only runs on Linux")
}

/// Opens the outbox and builds every sink, reporting all problems at once.
/// Configured sinks, built and ready to start.
type BuiltSinks = Vec<(
    crate::delivery::sinks::SinkConfig,
    Box<dyn crate::delivery::sinks::Sink>,
)>;

fn open_sinks(cfg: &Config) -> Result<(Outbox, BuiltSinks), Vec<String>> {
    let mut errs = Vec::new();
    let mut built = Vec::new();
    for s in &cfg.sinks {
        match crate::delivery::sinks::build(s, &cfg.nats) {
            Ok(b) => built.push((s.clone(), b)),
            Err(e) => errs.push(e),
        }
    }
    let names: Vec<String> = cfg.sinks.iter().map(|s| s.name.clone()).collect();
    let dir = cfg.state_dir.join("outbox");
    let opened = Outbox::open(
        OutboxConfig {
            dir: dir.clone(),
            max_bytes: cfg.outbox.max_mb << 20,
            segment_bytes: cfg.outbox.segment_kb << 10,
            when_full: cfg.outbox.when_full,
            sync: true,
        },
        &names,
    );
    match opened {
        Ok((outbox, report)) if errs.is_empty() => {
            if report.torn_bytes > 0 || report.corrupt_lines > 0 {
                tracing::warn!(
                    torn_bytes = report.torn_bytes,
                    corrupt_lines = report.corrupt_lines,
                    "outbox recovered after a crash"
                );
            }
            if !report.stale_cursors.is_empty() {
                tracing::info!(sinks = ?report.stale_cursors, "outbox has cursors of sinks no longer configured (ignored)");
            }
            tracing::info!(
                records = report.records,
                segments = report.segments,
                "outbox open"
            );
            Ok((outbox, built))
        }
        Ok(_) => Err(errs),
        Err(e) => {
            errs.push(format!("outbox {}: {e}", dir.display()));
            Err(errs)
        }
    }
}

pub fn status(a: StatusArgs) -> Result<ExitCode> {
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
    println!("processed        {}", s.processed);
    println!("spooled          {} ({} errors)", s.spooled, s.spool_errors);
    println!(
        "alerts           {} ({} output errors)",
        s.alerts, s.output_errors
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
            "{:<45} {:>6} {:>8} {:>8} {:>9}",
            r.id, r.open_chains, r.evicted, r.expired, r.completed
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
