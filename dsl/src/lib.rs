//! vigil's event schema and rule language.
//!
//! Owns: the typed ECS [`Event`](event::Event), its binary codec and its
//! NDJSON form; the EQL-style query language (parse, type-check, compile to
//! native matchers); the sequence correlator; rule files written in rhai.
//!
//! Does not: do I/O beyond reading rule text handed to it, spawn threads, or
//! know about the spool or the agent.

pub mod codec;
pub mod ecs;
mod ecs_serde;
pub mod event;
pub mod extra;
mod fasthash;
pub mod query;
pub mod text;
pub mod time;

pub use event::Event;
pub mod alert;
pub mod correlate;
pub mod fixture;
pub mod rules;
pub mod shipped;
pub mod sigma;
