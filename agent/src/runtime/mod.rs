//! The agent as a running whole: [`Agent::build`] turns a [`Config`] into
//! opened parts (rules, alert outputs, outbox and sinks), [`Agent::start`]
//! starts the threads (sinks, control socket, fleet responder, pipeline,
//! source; SIGINT and SIGTERM stop it) and [`RunningAgent::shutdown`] stops them in the order that
//! loses nothing. `vigil run` is this plus argument parsing.
//!
//! Owns: wiring and the order of start and shutdown. Must not hold the
//! parts' own logic, nor print: the CLI renders what it returns.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use dsl::rules::RuleSet;

use crate::config::{Config, SourceKind};
use crate::control::{ControlConfig, ControlError, ControlServer};
use crate::delivery::outbox::{Outbox, OutboxConfig};
use crate::delivery::sinks::{Sink, SinkConfig, SinkSet};
use crate::fleet::responder::{FleetResponder, ResponderConfig};
use crate::pipeline::outputs::{AlertOutputs, StdoutFormat};
use crate::pipeline::queue::{event_queue, EventQueue};
use crate::pipeline::{Pipeline, PipelineConfig, StatusSnapshot};
use crate::rule_files;
use crate::sources::{self, Source, SourceContext, SourceError};
use crate::wake::WakeOnDemand;

/// How often the sleeping main thread looks at `stop` without being woken.
const STOP_CHECK: Duration = Duration::from_secs(1);

/// Why the agent did not build, start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A configuration value the agent cannot run with (all are reported).
    #[error("{0}")]
    Config(String),
    #[error("creating state dir {}: {source}", path.display())]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Rules(#[from] crate::rule_files::RuleFilesError),
    #[error("no rule loaded; fix the errors above")]
    NoRules,
    /// A sink that cannot be built from its settings.
    #[error(transparent)]
    Sink(#[from] crate::delivery::sinks::SinkBuildError),
    #[error("opening alert outputs: {0}")]
    Outputs(crate::pipeline::PipelineError),
    /// Another agent serves this state directory.
    #[error(transparent)]
    AnotherAgent(ControlError),
    #[error("the pipeline: {0}")]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("pipeline thread panicked")]
    PipelinePanicked,
}

impl AgentError {
    /// A problem of the configuration, reported with the others before
    /// anything starts.
    pub fn is_configuration(&self) -> bool {
        matches!(self, AgentError::Config(_) | AgentError::Sink(_))
    }

    fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> AgentError {
        move |source| AgentError::Io { what, source }
    }
}

/// The agent's parts, opened and checked, nothing running yet.
pub struct Agent {
    cfg: Config,
    host_id: String,
    rules: RuleSet,
    outputs: AlertOutputs,
    sinks: Option<(Outbox, BuiltSinks)>,
}

/// Configured sinks, built and ready to start.
type BuiltSinks = Vec<(SinkConfig, Box<dyn Sink>)>;

/// How a started agent runs besides its configuration.
#[derive(Debug, Default, Clone, Copy)]
pub struct StartOptions {
    /// Synthetic source: stop after this many events.
    pub synthetic_limit: Option<u64>,
    /// Keep the pipeline (and control socket) up after a source that ends
    /// on its own has ended.
    pub keep_running: bool,
}

impl Agent {
    /// Checks the configuration and opens what the agent needs before it
    /// runs. Every configuration problem is reported at once.
    pub fn build(cfg: &Config) -> Result<Agent, Vec<AgentError>> {
        let invalid = cfg.validate();
        if !invalid.is_empty() {
            return Err(invalid.into_iter().map(AgentError::Config).collect());
        }
        let one = |e: AgentError| vec![e];
        // The spool, alerts, status and outbox are the host's whole history:
        // only the agent's user reads them, whatever umask it was started
        // with (the packaged unit sets the same).
        private_files();
        std::fs::create_dir_all(&cfg.state_dir).map_err(|source| {
            one(AgentError::StateDir {
                path: cfg.state_dir.clone(),
                source,
            })
        })?;
        tighten(&cfg.state_dir, 0o700);
        for file in [Some(&cfg.spool.path), cfg.outputs.file.as_ref()]
            .into_iter()
            .flatten()
            .chain([&cfg.state_dir.join("status.json")])
        {
            tighten(file, 0o600);
        }
        let loaded = rule_files::load(cfg.rules.dir.as_deref(), cfg.rules.shipped)
            .map_err(|e| one(AgentError::Rules(e)))?;
        for e in &loaded.errors {
            tracing::error!("rule error: {e}");
        }
        if loaded.rules.is_empty() {
            return Err(one(AgentError::NoRules));
        }
        let mut outputs = AlertOutputs::new(cfg.outputs.stdout, cfg.outputs.file.as_deref())
            .map_err(|e| one(AgentError::Outputs(e)))?;
        // Alerts reach sinks only through the outbox, so it exists with them.
        let sinks = if cfg.sinks.is_empty() {
            None
        } else {
            let (outbox, built) = open_sinks(cfg)?;
            outputs = outputs.with_outbox(outbox.clone());
            Some((outbox, built))
        };
        Ok(Agent {
            host_id: cfg.resolved_host_id(),
            cfg: cfg.clone(),
            rules: loaded.rules,
            outputs,
            sinks,
        })
    }

    /// How alerts print on standard output (when `outputs.stdout` is on).
    pub fn with_stdout_format(mut self, format: StdoutFormat) -> Agent {
        self.outputs = self.outputs.with_stdout_format(format);
        self
    }

    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Starts every part; the agent runs until [`RunningAgent::shutdown`].
    pub fn start(self, opts: StartOptions) -> Result<RunningAgent, AgentError> {
        let Agent {
            cfg,
            host_id,
            rules,
            outputs,
            sinks,
            ..
        } = self;
        let sink_set = match sinks {
            Some((outbox, built)) => {
                Some(SinkSet::start(&outbox, built).map_err(AgentError::io("starting sinks"))?)
            }
            None => None,
        };
        let (control_tx, control_rx) = crate::pipeline::requests::channel(16)
            .map_err(AgentError::io("making the control channel"))?;
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
                Err(e @ ControlError::AnotherAgent(_)) => return Err(AgentError::AnotherAgent(e)),
                // Detection matters more than the socket (a path too long
                // for a Unix socket, say): run without it.
                Err(e) => {
                    tracing::error!(error = %e, "control socket unavailable: vigil status shows status.json only; context and rules reload will not work");
                    None
                }
            }
        } else {
            None
        };
        let fleet = match (&control, cfg.fleet.enabled) {
            (Some(c), true) => Some(FleetResponder::start(ResponderConfig {
                fleet: cfg.fleet.clone(),
                nats: cfg.nats.clone(),
                host_id: host_id.clone(),
                spool: cfg.spool.enabled.then(|| cfg.spool.path.clone()),
                control: c.handler(),
            })),
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
        let mut wake =
            WakeOnDemand::new().map_err(AgentError::io("making the main thread's wake-up"))?;
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .map_err(AgentError::io("installing signal handler"))?;
            wake.on_signal(sig)
                .map_err(AgentError::io("installing signal handler"))?;
        }
        let pipeline = Pipeline::new(
            PipelineConfig {
                host_id: host_id.clone(),
                spool: cfg
                    .spool
                    .enabled
                    .then(|| (cfg.spool.path.clone(), cfg.spool.spool_config())),
                correlator: cfg.correlator.correlator_config(),
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
            Arc::new(rules),
            queue_counters,
        )
        .map_err(AgentError::Pipeline)?
        .with_requests(control_rx);
        let pipeline = match &sink_set {
            Some(s) => pipeline.with_sinks(s.monitor()),
            None => pipeline,
        };
        let source = sources::start(
            &cfg,
            SourceContext {
                host_id,
                queue: tx.clone(),
                stop: Arc::clone(&stop),
                ended: wake.waker(),
                synthetic_limit: opts.synthetic_limit,
            },
        )?;
        // --keep-running: a sender stays alive so the pipeline outlives the source.
        let keep_open = opts.keep_running.then(|| tx.clone());
        drop(tx);
        let pipeline_stop = Arc::clone(&stop);
        let worker = std::thread::Builder::new()
            .name("pipeline".into())
            .spawn(move || pipeline.run(rx, pipeline_stop))
            .map_err(AgentError::io("starting the pipeline thread"))?;
        Ok(RunningAgent {
            cfg,
            stop,
            wake,
            source: Some(source),
            keep_open,
            worker,
            control,
            fleet,
            sink_set,
        })
    }
}

/// A started agent: its threads run until [`RunningAgent::shutdown`].
pub struct RunningAgent {
    cfg: Config,
    stop: Arc<AtomicBool>,
    wake: WakeOnDemand,
    source: Option<Box<dyn Source>>,
    keep_open: Option<crate::pipeline::queue::EventSender>,
    worker: JoinHandle<Result<StatusSnapshot, crate::pipeline::PipelineError>>,
    control: Option<ControlServer>,
    fleet: Option<FleetResponder>,
    sink_set: Option<SinkSet>,
}

impl RunningAgent {
    /// Sleeps until a signal, a source that cannot go on (eslogger exiting
    /// sets `stop` itself), or the end of a source that ends on its own
    /// (unless the agent keeps running).
    pub fn wait(&mut self) {
        // Woken by signals and by finished sources; the timeout only covers
        // a source that sets `stop` itself.
        let nap =
            |w: &WakeOnDemand| w.wait(None::<&std::os::unix::net::UnixStream>, Some(STOP_CHECK));
        while !self.stop.load(Ordering::Relaxed) {
            if self.source.as_ref().is_some_and(|s| s.finished()) {
                let sent = self.source.take().and_then(|s| s.stop());
                tracing::info!(events = sent.unwrap_or(0), "source finished");
                if self.keep_open.is_none() {
                    break;
                }
            }
            nap(&self.wake);
        }
    }

    /// Stops every part: fleet requests first (they need the pipeline), then
    /// the source, so that the pipeline drains a closed stream, then the
    /// pipeline and the control socket; sinks deliver what they can within
    /// `outbox.drain_timeout_ms`. Returns the final counters.
    pub fn shutdown(mut self) -> Result<StatusSnapshot, AgentError> {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.fleet.take());
        if let Some(source) = self.source.take() {
            source.stop();
        }
        drop(self.keep_open.take());
        let mut snap = self
            .worker
            .join()
            .map_err(|_| AgentError::PipelinePanicked)?
            .map_err(AgentError::Pipeline)?;
        drop(self.control.take());
        if let Some(sinks) = self.sink_set.take() {
            // Every alert is in the outbox by now; what is not delivered in
            // time goes out after the next start.
            let monitor = sinks.monitor();
            sinks.shutdown(Duration::from_millis(self.cfg.outbox.drain_timeout_ms));
            // status.json tells what the drain achieved.
            snap.sinks = monitor.status();
            snap.outbox = Some(monitor.outbox().status());
            let path = self.cfg.state_dir.join("status.json");
            if let Err(e) = crate::pipeline::status::write_status(&path, &snap) {
                tracing::debug!(error = %e, "status write failed");
            }
        }
        Ok(snap)
    }
}

/// Opens the outbox and builds every sink, reporting all problems at once.
fn open_sinks(cfg: &Config) -> Result<(Outbox, BuiltSinks), Vec<AgentError>> {
    let mut errs = Vec::new();
    let mut built = Vec::new();
    for s in &cfg.sinks {
        match crate::delivery::sinks::build(s, &cfg.nats) {
            Ok(b) => built.push((s.clone(), b)),
            Err(e) => errs.push(e.into()),
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
            errs.push(AgentError::Config(format!("outbox {}: {e}", dir.display())));
            Err(errs)
        }
    }
}

/// New files and folders of this process are its user's alone (umask 077).
fn private_files() {
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Takes group and other permissions off what an earlier run (or a looser
/// umask) left readable: a state folder or file the agent owns.
fn tighten(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    let mine = meta.uid() == unsafe { libc::geteuid() };
    if mine && meta.mode() & 0o077 != 0 {
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            Ok(()) => tracing::info!(path = %path.display(), "made private (mode {mode:o})"),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot make private"),
        }
    } else if meta.mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "readable by other users and not owned by the agent's user");
    }
}
