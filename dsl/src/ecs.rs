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

/// Parses one ECS JSON document. Keys with dots (`"process.name": "curl"`,
/// as Beats and some exporters write them) are object paths, as
/// Elasticsearch reads them. A document without `@timestamp` takes
/// `event.created`, `event.start` or `event.ingested`, and without any of
/// them is an error: stored at 1970 it would fall out of every time range.
pub fn parse_ecs_json(text: &str) -> Result<Event, String> {
    let mut doc: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if has_dotted_key(text) {
        expand_dotted_keys(&mut doc);
    }
    if let serde_json::Value::Object(map) = &mut doc {
        if !map.contains_key("@timestamp") {
            // Pipeline outputs without `@timestamp` (Jamf Protect's) still
            // say when the event happened.
            let when = ["created", "start", "ingested"]
                .iter()
                .find_map(|k| map.get("event")?.get(*k).filter(|v| v.is_string()).cloned())
                .ok_or("the document has no @timestamp (nor event.created, event.start or event.ingested)")?;
            map.insert("@timestamp".into(), when);
        }
    }
    Event::from_document(&doc)
}

/// Whether some key may hold a dot: `"a.b":` anywhere (a string value that
/// looks like one only costs the slower, still exact, path).
fn has_dotted_key(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(q) = bytes[i..].iter().position(|&b| b == b'"') {
        let start = i + q + 1;
        // The end of this string (escapes skipped).
        let mut j = start;
        let mut dot = false;
        while j < bytes.len() && bytes[j] != b'"' {
            match bytes[j] {
                b'\\' => j += 1,
                b'.' => dot = true,
                _ => {}
            }
            j += 1;
        }
        // Only a string with a dot needs to know whether it is a key.
        if dot {
            let after = bytes[(j + 1).min(bytes.len())..]
                .iter()
                .find(|b| !b.is_ascii_whitespace());
            if after == Some(&b':') {
                return true;
            }
        }
        i = j + 1;
        if i >= bytes.len() {
            break;
        }
    }
    false
}

/// Turns `{"process.name": "curl"}` into `{"process": {"name": "curl"}}`,
/// merging with objects already there, at every level.
pub(crate) fn expand_dotted_keys(v: &mut serde_json::Value) {
    use serde_json::{Map, Value};
    match v {
        Value::Object(map) if !map.keys().any(|k| k.contains('.')) => {
            map.values_mut().for_each(expand_dotted_keys)
        }
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (key, mut value) in old {
                expand_dotted_keys(&mut value);
                let mut at: &mut Map<String, Value> = map;
                let mut rest = key.trim_matches('.');
                loop {
                    let Some((head, tail)) = rest.split_once('.') else {
                        merge(at, rest, value);
                        break;
                    };
                    if at.get(head).is_some_and(|v| !v.is_object()) {
                        // A scalar where an object goes: keep both, the
                        // rest of the path as one dotted key beside it.
                        merge(at, rest, value);
                        break;
                    }
                    at = at
                        .entry(head.to_string())
                        .or_insert_with(|| Value::Object(Map::new()))
                        .as_object_mut()
                        .expect("checked: an object or new");
                    rest = tail;
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(expand_dotted_keys),
        _ => {}
    }
}

/// Puts `value` at `key`, merging two objects key by key.
fn merge(
    map: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    value: serde_json::Value,
) {
    match (map.get_mut(key), value) {
        (Some(serde_json::Value::Object(existing)), serde_json::Value::Object(more)) => {
            for (k, v) in more {
                merge(existing, &k, v);
            }
        }
        (_, value) => {
            map.insert(key.to_string(), value);
        }
    }
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
    /// A read error other than a line that is not UTF-8 ends the stream
    /// (reported once): reading a directory or a broken device would
    /// otherwise fail on every call.
    failed: bool,
}

impl<R: BufRead> EcsReader<R> {
    pub fn new(input: R) -> Self {
        EcsReader {
            input,
            line: 0,
            buf: String::new(),
            failed: false,
        }
    }
}

impl<R: BufRead> Iterator for EcsReader<R> {
    type Item = Result<Event, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            self.buf.clear();
            self.line += 1;
            match self.input.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    // A line that is not UTF-8 is that line's problem (it
                    // was consumed); any other read error ends the stream.
                    self.failed = e.kind() != std::io::ErrorKind::InvalidData;
                    return Some(Err(LineError {
                        line: self.line,
                        message: format!("read error: {e}"),
                    }));
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
