//! The `vigil` agent: sources, pipeline, outputs and the command line, wired
//! onto the `dsl` (events, rules) and `spool` (history) crates. `main.rs`
//! only parses arguments and maps errors to exit codes.

/// Every binary linking the agent (vigil, its benches and tests) allocates
/// with mimalloc: see the workspace Cargo.toml.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod cli;
pub mod config;
pub mod control;
pub mod delivery;
pub mod elastic_import;
pub mod fleet;
pub mod history;
pub mod nats;
pub mod pipeline;
pub mod rule_files;
pub mod runtime;
pub mod sigma_import;
pub mod sources;
pub mod wake;
