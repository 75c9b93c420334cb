//! Endpoint Security: the mapping of ES messages to events ([`mapping`]),
//! shared by the in-process client ([`live`], macOS only) and the reader of
//! Apple's `eslogger` output ([`eslogger`], which also replays on Linux).
//!
//! Owns: everything ES-shaped. Must not touch: the pipeline beyond pushing
//! events onto its queue.

pub mod eslogger;
#[cfg(target_os = "macos")]
pub mod live;
pub mod mapping;
