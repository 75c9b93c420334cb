//! The binary form of an [`Event`] stored in the spool: one format-version
//! byte, then a body in bincode 2's standard encoding (varint integers). Old
//! versions stay decodable by matching on the version byte.
//!
//! # Version 2: block-scoped string interning
//!
//! Events repeat the same few hundred strings (host, user, executables,
//! command lines, entity ids), so a version-2 record stores every string as a
//! **symbol**: `0` is a missing string (`None`), `k > 0` is entry `k - 1` of
//! a dictionary that the records of one spool block build up in order. A
//! record first lists the strings it adds to the dictionary, then the event
//! with symbols in place of strings:
//!
//! ```text
//! record     := 0x02  new_strings  event_syms
//! new_strings:= varint(n) n × (varint(len) len × u8)     -- UTF-8; become entries
//!                                                          -- dict_len .. dict_len + n
//! event_syms := zigzag(@timestamp) varint(category) varint(type_mask)
//!               type_order                                -- empty when the types are
//!               sym(event.action) sym(event.id) sym(event.outcome)   -- in canonical order
//!               sym(host.id) sym(host.name) sym(os.type) sym(os.family) sym(os.version)
//!               proc                                      -- process
//!               varint(p) p × proc                        -- process.parent, its parent, …
//!               sym(user.id) sym(user.name)
//!               opt(sym(path) sym(name) sym(extension) sym(target_path))   -- file
//!               opt(endpoint) opt(endpoint)               -- source, destination
//!               opt(sym(transport) sym(direction))        -- network
//! type_order := varint(k) k × varint(EventType index)
//! proc       := opt(varint(pid)) sym(entity_id) sym(name) sym(executable)
//!               varint(a) a × sym                         -- args
//!               sym(command_line) sym(working_directory) sym(signing_id) sym(team_id)
//!               opt(bool trusted) opt(bool platform_binary) sym(cdhash) sym(sha256)
//!               opt(zigzag(exit_code))
//! endpoint   := opt(varint(0) 4 × u8 | varint(1) 16 × u8)  opt(varint(port))
//! opt(x)     := 0x00 | 0x01 x          bool := 0x00 | 0x01         sym := varint
//! varint     := bincode's: < 251 in one byte; 251/252/253 + u16/u32/u64 little-endian
//! ```
//!
//! This is exactly bincode 2 (`config::standard()`) of
//! `(Vec<String>, EventSyms-as-laid-out-above)`; the coder is hand-written so
//! that encoding reuses its buffers and decoding allocates nothing per event.
//!
//! The dictionary restarts empty at every block ([`EventEncoder::reset`],
//! [`BlockDecoder::reset`]), so blocks stay independently readable, and a
//! reader must decode (or [`BlockDecoder::skip_next`]) every record of a block
//! in order. A record that uses a symbol no earlier record (or itself) defined
//! is corrupt. A standalone version-2 record ([`encode_event`]) is one encoded
//! with an empty dictionary.
//!
//! # Version 3: version 2 plus fields outside the schema
//!
//! An event that carries [`Extras`] (a replayed ECS document's fields that
//! the typed schema does not read, `crate::extra`) is written as version 3:
//! the version-2 body, then
//!
//! ```text
//! extras     := varint(n) n × (sym(path) extra)      -- paths distinct, in byte order
//! extra      := 0x00 sym(text)                       -- keyword
//!             | 0x01 zigzag(i64)                     -- integer
//!             | 0x02 sym(text)                       -- other number, as written
//!             | 0x03 bool
//!             | 0x04 varint(k) k × sym(text)         -- list (array elements as text)
//! ```
//!
//! (bincode 2 of `Vec<(u32, enum)>`.) A symbol in an extra is never 0, and
//! `n` is at most [`crate::extra::MAX_EXTRAS`]. Events without extras are
//! still written as version 2, byte for byte as before.
//!
//! Version 1 (still decoded, no longer written by the spool) is bincode 2 of
//! the [`Event`] itself, without extras.
//!
//! Owns: the record format and its compatibility. Must not touch: blocks,
//! compression or files (the spool crate frames the records).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bincode::config::{self, Configuration};
use thiserror::Error;

use crate::event::{
    Category, CodeSignature, Endpoint, Event, EventInfo, EventType, ExtraValue, Extras, File, Hash,
    Host, Network, Os, Process, Text, User, MAX_PROCESS_DEPTH,
};

/// Current encoding version, written by [`encode_event`] and [`EventEncoder`]
/// for events without extras.
pub const FORMAT_VERSION: u8 = 2;

/// Version 2 plus the extras section: written for events that carry fields
/// outside the schema (replayed ECS documents).
pub const FORMAT_VERSION_V3: u8 = 3;

/// The first encoding: bincode of the whole [`Event`], strings inline.
pub const FORMAT_VERSION_V1: u8 = 1;

/// Upper bound on what a single decoded event may allocate; protects readers
/// from a corrupt length prefix.
const DECODE_LIMIT: usize = 1 << 20;

type Config =
    config::Configuration<config::LittleEndian, config::Varint, config::Limit<DECODE_LIMIT>>;

fn bincode_config() -> Config {
    config::standard().with_limit::<DECODE_LIMIT>()
}

fn encode_config() -> Configuration {
    config::standard()
}

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("empty event record")]
    Empty,
    #[error("unsupported event format version {0} (this build reads versions 1, 2 and 3)")]
    UnsupportedVersion(u8),
    #[error("corrupt event record: {0}")]
    Corrupt(String),
    #[error("event record has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("cannot encode event: {0}")]
    Encode(String),
}

fn corrupt(what: impl Into<String>) -> CodecError {
    CodecError::Corrupt(what.into())
}

fn check_depth(event: &Event) -> Result<(), CodecError> {
    if event.process.depth() > MAX_PROCESS_DEPTH {
        // It would not decode again.
        return Err(CodecError::Encode(format!(
            "process.parent nests deeper than {MAX_PROCESS_DEPTH} levels"
        )));
    }
    Ok(())
}

/// Appends `event` as a standalone version-2 record (its own dictionary) to
/// `out`. Spool writers use one [`EventEncoder`] per block instead, which is
/// what makes the encoding small.
pub fn encode_event_into(event: &Event, out: &mut Vec<u8>) -> Result<(), CodecError> {
    EventEncoder::new().encode_into(event, out)
}

/// A standalone version-2 record.
pub fn encode_event(event: &Event) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    encode_event_into(event, &mut out)?;
    Ok(out)
}

/// Appends `event` as a version-1 record (what older builds wrote). Kept so
/// that compatibility can be tested; new spools are written in version 2.
pub fn encode_event_v1_into(event: &Event, out: &mut Vec<u8>) -> Result<(), CodecError> {
    check_depth(event)?;
    out.push(FORMAT_VERSION_V1);
    bincode::encode_into_writer(event, VecWriter(out), encode_config())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

/// Appends to a `Vec` without `std::io::Write`'s per-call overhead (the
/// correlator encodes every event it holds).
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        match bytes {
            [b] => self.0.push(*b),
            _ => self.0.extend_from_slice(bytes),
        }
        Ok(())
    }
}

/// A version-1 record.
pub fn encode_event_v1(event: &Event) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(512);
    encode_event_v1_into(event, &mut out)?;
    Ok(out)
}

/// Decodes one standalone record: version 1, or version 2 encoded with an
/// empty dictionary ([`encode_event`]). Garbage gives an error, never a panic.
pub fn decode_event(bytes: &[u8]) -> Result<Event, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        FORMAT_VERSION_V1 => decode_v1(body),
        FORMAT_VERSION | FORMAT_VERSION_V3 => {
            let mut d = BlockDecoder::new();
            d.decode_v2(body, version == FORMAT_VERSION_V3)
                .map(|v| v.to_event())
        }
        v => Err(CodecError::UnsupportedVersion(v)),
    }
}

fn decode_v1(body: &[u8]) -> Result<Event, CodecError> {
    let (event, used): (Event, usize) = bincode::decode_from_slice(body, bincode_config())
        .map_err(|e| CodecError::Corrupt(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::TrailingBytes(body.len() - used));
    }
    Ok(event)
}

mod decode;
mod encode;
#[cfg(test)]
mod tests;
mod view;

pub use decode::BlockDecoder;
#[allow(unused_imports)]
use decode::*;
pub use encode::EventEncoder;
#[allow(unused_imports)]
use encode::*;
#[allow(unused_imports)]
use view::*;
pub use view::{
    Decoded, EventSyms, EventView, ExtraSymValue, ExtraSyms, FileSyms, NetSyms, ProcSyms,
};
