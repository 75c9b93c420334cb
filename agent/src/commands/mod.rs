//! One module per subcommand; each returns the process exit code.

mod hunt;
mod replay;
mod rules;
mod spool;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Where the agent keeps its spool unless configured otherwise.
pub const DEFAULT_SPOOL: &str = "/var/lib/vigil/events.spool";

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Replay(a) => replay::run(a),
        Command::Hunt(a) => hunt::run(a),
        Command::Rules(c) => rules::run(c),
        Command::Spool(c) => spool::run(c),
    }
}
