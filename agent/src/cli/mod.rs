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
mod status;
mod synthetic;

use std::process::ExitCode;

use anyhow::Result;

pub use args::*;

/// Where the agent keeps its spool unless configured otherwise.
pub const DEFAULT_SPOOL: &str = "/var/lib/vigil/events.spool";

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Status(a) => status::run(a),
        Command::Context(a) => context::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Hunt(a) => hunt::run(a),
        Command::Fleet(a) => fleet::run(a),
        Command::Rules(c) => rules::run(c),
        Command::Spool(c) => spool::run(c),
        Command::Synthetic(a) => synthetic::run(a),
    }
}
