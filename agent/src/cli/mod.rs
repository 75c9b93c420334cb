//! The command line: argument definitions ([`args`]) and one module per
//! command, each of which parses, calls the library and renders the answer.
//!
//! Must not hold agent logic: the runtime, history queries, control and
//! fleet live in their own modules and are called from here.

mod args;
mod context;
mod fleet;
pub(crate) mod hunt;
mod replay;
mod rules;
mod run;
mod spool;

use std::process::ExitCode;

use anyhow::Result;

pub use args::*;

/// Where the agent keeps its spool unless configured otherwise.
pub const DEFAULT_SPOOL: &str = "/var/lib/vigil/events.spool";

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Status(a) => run::status(a),
        Command::Context(a) => context::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Hunt(a) => hunt::run(a),
        Command::Fleet(a) => fleet::run(a),
        Command::Rules(c) => rules::run(c),
        Command::Spool(c) => spool::run(c),
        Command::Synthetic(a) => synthetic(a),
    }
}

fn synthetic(a: crate::cli::SyntheticArgs) -> Result<ExitCode> {
    use std::io::Write;
    let gen =
        crate::sources::synthetic::Synthetic::new(crate::sources::synthetic::SyntheticConfig {
            seed: a.seed,
            plant_every: a.plant_every,
            plant: a.plant,
            host_id: a
                .host_id
                .unwrap_or_else(|| crate::sources::synthetic::SyntheticConfig::default().host_id),
            ..Default::default()
        });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for e in gen.take(a.events as usize) {
        if let Err(e) = writeln!(out, "{}", dsl::ecs::to_ecs_json(&e)) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e.into());
        }
    }
    out.flush().ok();
    Ok(ExitCode::SUCCESS)
}
