//! `vigil run`: the agent, until a signal or the end of its source.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::RunArgs;
use crate::config::{Config, SourceKind};
use crate::pipeline::outputs::StdoutFormat;
use crate::runtime::{Agent, AgentError, StartOptions};

/// Reads the config file (if any) and applies command-line overrides.
fn effective_config(a: &RunArgs) -> Result<Config, Vec<AgentError>> {
    let mut cfg = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| vec![AgentError::Config(format!("{}: {e}", path.display()))])?;
            Config::from_toml(&text)
                .map_err(|e| vec![AgentError::Config(format!("{}: {e}", path.display()))])?
        }
        None => Config::default(),
    };
    if let Some(dir) = &a.state_dir {
        cfg.state_dir = dir.clone();
        cfg.place_in_state_dir(true, true);
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
    Ok(cfg)
}

pub fn run(a: RunArgs) -> Result<ExitCode> {
    let cfg = match effective_config(&a) {
        Ok(c) => c,
        Err(errs) => return Ok(invalid_configuration(errs)),
    };
    if a.print_config {
        let invalid = cfg.validate();
        if !invalid.is_empty() {
            return Ok(invalid_configuration(
                invalid.into_iter().map(AgentError::Config).collect(),
            ));
        }
        print!("{}", toml::to_string_pretty(&cfg)?);
        return Ok(ExitCode::SUCCESS);
    }
    let agent = match Agent::build(&cfg) {
        Ok(agent) => agent,
        Err(errs) if errs.iter().all(AgentError::is_configuration) => {
            return Ok(invalid_configuration(errs))
        }
        Err(mut errs) => return Err(errs.remove(0).into()),
    };
    // A person at a terminal reads a line per alert; pipes get NDJSON.
    let agent = if a.json || !std::io::stdout().is_terminal() {
        agent
    } else {
        agent.with_stdout_format(StdoutFormat::Line)
    };
    tracing::info!(rules = agent.rules().len(), host = %agent.host_id(), source = ?cfg.source.kind, spool = %cfg.spool.path.display(), "vigil starting");
    let started = agent.start(StartOptions {
        synthetic_limit: a.synthetic_events,
        keep_running: a.keep_running,
    });
    let mut running = match started {
        Ok(r) => r,
        // A source that cannot start here is a usage error, said plainly.
        Err(AgentError::Source(e)) => {
            eprintln!("vigil: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    running.wait();
    let snap = running.shutdown()?;
    tracing::info!(
        received = snap.received,
        dropped = snap.dropped,
        spooled = snap.spooled,
        alerts = snap.alerts,
        "vigil stopped"
    );
    Ok(ExitCode::SUCCESS)
}

fn invalid_configuration(errs: Vec<AgentError>) -> ExitCode {
    eprintln!("vigil: invalid configuration:");
    for e in errs {
        eprintln!("  - {e}");
    }
    ExitCode::from(2)
}
