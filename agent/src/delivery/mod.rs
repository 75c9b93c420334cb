//! Getting alerts out: the durable outbox on disk and the sinks (file,
//! syslog, HTTP, NATS) that drain it, each with its own cursor and backlog.
//!
//! Owns: alert delivery after the pipeline commits an alert. Must not touch:
//! events, rules or the spool.

pub mod outbox;
pub mod sinks;
