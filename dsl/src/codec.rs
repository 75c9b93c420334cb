//! The binary form of an [`Event`] stored in the spool: one format-version
//! byte, then bincode 2 (varint integers). Old versions stay decodable by
//! matching on the version byte.

use bincode::config::{self, Configuration};
use thiserror::Error;

use crate::event::{Event, MAX_PROCESS_DEPTH};

/// Current encoding version written by [`encode_event`].
pub const FORMAT_VERSION: u8 = 1;

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
    #[error("unsupported event format version {0} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u8),
    #[error("corrupt event record: {0}")]
    Corrupt(String),
    #[error("event record has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("cannot encode event: {0}")]
    Encode(String),
}

/// Appends the encoded event to `out` (reuse `out` across calls to avoid
/// allocating per event).
pub fn encode_event_into(event: &Event, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if event.process.depth() > MAX_PROCESS_DEPTH {
        // It would not decode again.
        return Err(CodecError::Encode(format!(
            "process.parent nests deeper than {MAX_PROCESS_DEPTH} levels"
        )));
    }
    out.push(FORMAT_VERSION);
    bincode::encode_into_std_write(event, out, encode_config())
        .map(|_| ())
        .map_err(|e| CodecError::Encode(e.to_string()))
}

pub fn encode_event(event: &Event) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    encode_event_into(event, &mut out)?;
    Ok(out)
}

/// Decodes one record written by [`encode_event`]. Garbage gives an error,
/// never a panic.
pub fn decode_event(bytes: &[u8]) -> Result<Event, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        1 => {
            let (event, used): (Event, usize) = bincode::decode_from_slice(body, bincode_config())
                .map_err(|e| CodecError::Corrupt(e.to_string()))?;
            if used != body.len() {
                return Err(CodecError::TrailingBytes(body.len() - used));
            }
            Ok(event)
        }
        v => Err(CodecError::UnsupportedVersion(v)),
    }
}
