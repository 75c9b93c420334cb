//! ECS NDJSON: one JSON document per line, the format Elastic tools read and
//! write. A malformed line is an error for that line only; readers report it
//! with its line number and go on.

use std::io::BufRead;

use thiserror::Error;

use crate::event::Event;

#[derive(Debug, Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    pub line: u64,
    pub message: String,
}

/// Parses one ECS JSON document.
pub fn parse_ecs_json(text: &str) -> Result<Event, String> {
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Serialises an event as one ECS JSON line (no trailing newline).
pub fn to_ecs_json(event: &Event) -> String {
    serde_json::to_string(event).expect("Event serialises: every field is plain data")
}

/// Iterates the events of an NDJSON stream. Blank lines are skipped; each bad
/// line yields one `Err` and reading continues with the next line.
pub struct EcsReader<R> {
    input: R,
    line: u64,
    buf: String,
}

impl<R: BufRead> EcsReader<R> {
    pub fn new(input: R) -> Self {
        EcsReader {
            input,
            line: 0,
            buf: String::new(),
        }
    }
}

impl<R: BufRead> Iterator for EcsReader<R> {
    type Item = Result<Event, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            self.line += 1;
            match self.input.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    return Some(Err(LineError {
                        line: self.line,
                        message: format!("read error: {e}"),
                    }))
                }
            }
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            return Some(parse_ecs_json(text).map_err(|message| LineError {
                line: self.line,
                message,
            }));
        }
    }
}
