//! Event sources: the producers of [`dsl::Event`]s, each pushing onto the
//! pipeline's queue without ever blocking the OS (a full queue drops and
//! counts). One folder or file per source: [`linux`] (process connector,
//! fanotify, socket tables), [`es`] (Endpoint Security: the mapping, the
//! eslogger reader and the live macOS client), [`replay`] and [`synthetic`].
//!
//! Must not touch: the pipeline beyond its queue, rules, spool or outputs.

pub mod es;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod replay;
pub mod synthetic;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::{Config, SourceKind};
use crate::pipeline::queue::EventSender;
use crate::wake::Waker;

/// A running source. Dropping it stops it too; [`Source::stop`] also says
/// how many events it sent, where it counts them.
pub trait Source {
    /// The source ended on its own (a replay at its end, a bounded
    /// synthetic run): the agent stops unless told to keep running.
    fn finished(&self) -> bool {
        false
    }

    /// Stops pushing and waits for the source's threads.
    fn stop(self: Box<Self>) -> Option<u64>;
}

/// Why a source did not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source does not run on this OS.
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("opening {}: {source}", path.display())]
    Open {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("starting the {what}: {source}")]
    Start {
        what: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What a source needs from the agent besides its configuration.
pub struct SourceContext {
    pub host_id: String,
    pub queue: EventSender,
    /// Set on shutdown; a source that cannot go on (eslogger exiting) sets
    /// it itself.
    pub stop: Arc<AtomicBool>,
    /// Woken when a source ends on its own.
    pub ended: Waker,
    /// Synthetic only: stop after this many events.
    pub synthetic_limit: Option<u64>,
}

/// Starts the source `cfg.source.kind` names.
pub fn start(cfg: &Config, ctx: SourceContext) -> Result<Box<dyn Source>, SourceError> {
    match cfg.source.kind {
        SourceKind::Replay => replay::start(
            cfg.source.replay_files.clone(),
            cfg.source.replay_pace,
            ctx.queue,
            Arc::clone(&ctx.stop),
            ctx.ended,
        )
        .map(|h| ThreadSource::boxed(h, ctx.stop)),
        SourceKind::Synthetic => synthetic::feed::start(
            synthetic::SyntheticConfig {
                seed: cfg.source.synthetic_seed,
                plant_every: cfg.source.synthetic_plant_every,
                plant: cfg.source.synthetic_plant,
                host_id: ctx.host_id.clone(),
                ..synthetic::SyntheticConfig::default()
            },
            cfg.source.synthetic_rate,
            ctx.synthetic_limit,
            ctx.queue,
            Arc::clone(&ctx.stop),
            ctx.ended,
        )
        .map(|h| ThreadSource::boxed(h, ctx.stop))
        .map_err(|e| SourceError::Start {
            what: "synthetic source",
            source: e.into(),
        }),
        SourceKind::Linux => start_linux(cfg, ctx),
        SourceKind::EndpointSecurity => start_endpoint_security(cfg, ctx),
        SourceKind::Eslogger => start_eslogger(cfg, ctx),
    }
}

/// A source that is one thread counting what it sent (replay, synthetic).
struct ThreadSource {
    thread: JoinHandle<u64>,
    stop: Arc<AtomicBool>,
}

impl ThreadSource {
    fn boxed(thread: JoinHandle<u64>, stop: Arc<AtomicBool>) -> Box<dyn Source> {
        Box::new(ThreadSource { thread, stop })
    }
}

impl Source for ThreadSource {
    fn finished(&self) -> bool {
        self.thread.is_finished()
    }

    fn stop(self: Box<Self>) -> Option<u64> {
        // The flag is the agent's: a source that ended by itself must not
        // stop the agent (`--keep-running`).
        if !self.thread.is_finished() {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Some(self.thread.join().unwrap_or(0))
    }
}

/// Live sources stop when dropped.
macro_rules! stops_when_dropped {
    ($t:ty) => {
        impl Source for $t {
            fn stop(self: Box<Self>) -> Option<u64> {
                drop(self);
                None
            }
        }
    };
}

#[cfg(target_os = "linux")]
stops_when_dropped!(linux::LinuxSource);
#[cfg(target_os = "macos")]
stops_when_dropped!(es::live::EsSource);
stops_when_dropped!(es::eslogger::EsloggerSource);

#[cfg(target_os = "linux")]
fn start_linux(cfg: &Config, ctx: SourceContext) -> Result<Box<dyn Source>, SourceError> {
    use linux::{LinuxSource, LinuxSourceConfig};
    let host_name = sysinfo::System::host_name().unwrap_or_else(|| ctx.host_id.clone());
    let mut lc = LinuxSourceConfig::new(&ctx.host_id, host_name);
    lc.fanotify_paths = cfg
        .source
        .fanotify_paths
        .iter()
        .filter(|p| p.exists())
        .cloned()
        .collect();
    lc.socket_poll_interval = std::time::Duration::from_millis(cfg.source.socket_poll_ms);
    lc.env_vars = cfg.source.env_vars.clone();
    let tx = ctx.queue;
    match LinuxSource::start(lc, Arc::new(move |e| tx.push(e))) {
        Ok(s) => Ok(Box::new(s)),
        Err(e) => Err(SourceError::Start {
            what: "Linux live source (process connector, fanotify, socket tables)",
            source: e.into(),
        }),
    }
}

#[cfg(not(target_os = "linux"))]
fn start_linux(_cfg: &Config, _ctx: SourceContext) -> Result<Box<dyn Source>, SourceError> {
    Err(SourceError::Unsupported(
        "source.kind = \"linux\" only runs on Linux",
    ))
}

/// The in-process Endpoint Security client.
#[cfg(target_os = "macos")]
fn start_endpoint_security(
    cfg: &Config,
    ctx: SourceContext,
) -> Result<Box<dyn Source>, SourceError> {
    use es::live::{EsSource, EsSourceConfig};
    let es = EsSourceConfig {
        env_vars: cfg.source.env_vars.clone(),
        ..EsSourceConfig::new(&ctx.host_id)
    };
    match EsSource::start(es, ctx.queue) {
        Ok(s) => Ok(Box::new(s)),
        Err(e) => Err(SourceError::Start {
            what: "Endpoint Security client",
            source: e.to_string().into(),
        }),
    }
}

#[cfg(not(target_os = "macos"))]
fn start_endpoint_security(
    _cfg: &Config,
    _ctx: SourceContext,
) -> Result<Box<dyn Source>, SourceError> {
    Err(SourceError::Unsupported(
        "source.kind = \"endpoint_security\" only runs on macOS",
    ))
}

/// eslogger exists only on macOS 13+; when it exits the agent stops (its
/// LaunchDaemon restarts it).
#[cfg(target_os = "macos")]
fn start_eslogger(cfg: &Config, ctx: SourceContext) -> Result<Box<dyn Source>, SourceError> {
    use es::eslogger::{start_eslogger, EsloggerCommand};
    use es::mapping::MapContext;
    let host_name = sysinfo::System::host_name();
    let map = MapContext::macos(
        &ctx.host_id,
        host_name.as_deref(),
        sysinfo::System::os_version().as_deref(),
        None,
    )
    .with_env_vars(&cfg.source.env_vars);
    match start_eslogger(&EsloggerCommand::default(), map, ctx.queue, ctx.stop) {
        Ok(s) => Ok(Box::new(s)),
        Err(e) => Err(SourceError::Start {
            what: "eslogger source",
            source: e.into(),
        }),
    }
}

#[cfg(not(target_os = "macos"))]
fn start_eslogger(_cfg: &Config, _ctx: SourceContext) -> Result<Box<dyn Source>, SourceError> {
    Err(SourceError::Unsupported(
        "source.kind = \"eslogger\" needs macOS 13+ (/usr/bin/eslogger); elsewhere, replay its output with `vigil replay --format eslogger FILE`",
    ))
}
