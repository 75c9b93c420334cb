//! `vigil`: the endpoint agent and its command-line tools.
//!
//! This binary wires the `dsl` (events, rules) and `spool` (history) crates to
//! the operating system: sources, pipeline, outputs and the CLI. Exit codes:
//! 0 ok, 1 nothing found or a check failed, 2 usage or I/O error.

use std::process::ExitCode;

use clap::Parser;
use vigil::cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Client commands end quietly when their reader goes away (`vigil rules
    // list | head -1`), as Unix tools do; the agent keeps ignoring SIGPIPE
    // (a closed socket is an error it handles, not its end).
    if !matches!(args.command, cli::Command::Run(_)) {
        // SAFETY: restoring the default action of one signal before any
        // thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // The agent logs its life; client commands only what went wrong.
    let default_level = match args.command {
        cli::Command::Run(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vigil: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
