//! The history on disk: the spool-backed event store, the queries that read
//! it (hunts, rule replays, context around an alert) and their time ranges.
//!
//! Owns: reading and writing the spool file for the agent. Must not touch:
//! the pipeline, the control socket or the CLI; they call in here.

pub mod context;
pub mod query;
pub mod store;
pub mod timearg;
