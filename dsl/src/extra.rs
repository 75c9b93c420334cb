//! The fields of an ECS document outside vigil's typed schema
//! ([`Extras`]): `process.Ext.effective_parent.name`, `file.Ext.header_bytes`,
//! `dll.path`, `event.dataset`... Elastic's rules read them, so a replayed
//! document keeps every one: stored in the spool (record version 3, see
//! [`crate::codec`]), visible to rules and hunts, written back out in alerts.
//!
//! They are kept flat, by dotted path, as Elasticsearch indexes them: an
//! array of objects (`process.Ext.code_signature: [{..}, {..}]`) becomes one
//! multi-valued field per leaf (`process.Ext.code_signature.subject_name`),
//! which is also how an EQL query reads it. Written back out, such a field
//! is an object holding lists (the array of objects is not rebuilt).

use serde_json::{Map, Value};

use crate::event::Text;

/// At most this many fields outside the schema per document: a real
/// Elastic Defend event has one to two hundred.
pub const MAX_EXTRAS: usize = 4096;

/// One value of a field outside the schema.
#[derive(Debug, Clone, PartialEq)]
pub enum ExtraValue {
    Str(Text),
    Int(i64),
    /// A number that is not an `i64` (a fraction, or beyond its range), as
    /// the document wrote it.
    Float(Text),
    Bool(bool),
    /// An array (or the leaves of an array of objects), each element as
    /// text: EQL compares any element.
    List(Vec<Text>),
}

/// The fields of one event outside the schema, sorted by path.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extras(Vec<(Text, ExtraValue)>);

impl Extras {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The fields in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ExtraValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn get(&self, path: &str) -> Option<&ExtraValue> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(path))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Sets `path` (replacing what it held).
    pub fn insert(&mut self, path: impl Into<Text>, value: ExtraValue) {
        let path = path.into();
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&path)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (path, value)),
        }
    }

    /// Builds from pairs in any order; a repeated path keeps the last value.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Text, ExtraValue)>) -> Extras {
        let mut v: Vec<(Text, ExtraValue)> = pairs.into_iter().collect();
        // Stable: among equal paths the last stays last, and dedup keeps it.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Text, ExtraValue)> = Vec::with_capacity(v.len());
        for (k, val) in v {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = val,
                _ => out.push((k, val)),
            }
        }
        Extras(out)
    }

    /// Collects the fields of `doc` (an expanded ECS document: no dotted
    /// keys) that the typed schema does not read.
    pub fn from_document(doc: &Value) -> Result<Extras, String> {
        let mut found: Vec<(String, Leaf)> = Vec::new();
        if let Value::Object(map) = doc {
            for (k, v) in map {
                walk(k, v, &mut found, false)?;
            }
        }
        // Leaves met inside arrays gather into one list per path.
        let mut pairs: Vec<(Text, ExtraValue)> = Vec::new();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut i = 0;
        while i < found.len() {
            let mut j = i + 1;
            while j < found.len() && found[j].0 == found[i].0 {
                j += 1;
            }
            let group = &found[i..j];
            let value = match group {
                [(_, Leaf::One(v))] => v.clone(),
                _ => ExtraValue::List(
                    group
                        .iter()
                        .flat_map(|(_, l)| match l {
                            Leaf::One(v) => vec![text_of(v)],
                            Leaf::Many(items) => items.clone(),
                        })
                        .collect(),
                ),
            };
            pairs.push((Text::from(group[0].0.as_str()), value));
            i = j;
        }
        if pairs.len() > MAX_EXTRAS {
            return Err(format!(
                "the document has {} fields outside vigil's schema (at most {MAX_EXTRAS})",
                pairs.len()
            ));
        }
        Ok(Extras::from_pairs(pairs))
    }

    /// Writes the fields into `doc` (an event's typed JSON), nesting each
    /// path in objects; a path whose head is already a scalar stays a
    /// dotted key.
    pub fn merge_into(&self, doc: &mut Value) {
        let Value::Object(root) = doc else {
            return;
        };
        for (path, value) in self.iter() {
            put(root, path, json_of(value));
        }
    }
}

/// Version-1 records (bincode of the whole [`crate::Event`]) predate extras
/// and stay byte-for-byte what they were: extras encode to nothing there
/// and decode empty. Record version 3 carries them ([`crate::codec`]).
impl bincode::Encode for Extras {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        _: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        Ok(())
    }
}

impl<Context> bincode::Decode<Context> for Extras {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        _: &mut D,
    ) -> Result<Extras, bincode::error::DecodeError> {
        Ok(Extras::default())
    }
}

bincode::impl_borrow_decode!(Extras);

enum Leaf {
    One(ExtraValue),
    Many(Vec<Text>),
}

fn walk(
    path: &str,
    v: &Value,
    out: &mut Vec<(String, Leaf)>,
    in_array: bool,
) -> Result<(), String> {
    if out.len() > MAX_EXTRAS * 4 {
        return Err(format!(
            "the document has more than {MAX_EXTRAS} fields outside vigil's schema"
        ));
    }
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                walk(&format!("{path}.{k}"), child, out, in_array)?;
            }
        }
        _ if is_typed(path) => {}
        Value::Null => {}
        Value::Array(items) => {
            let mut scalars = Vec::new();
            for item in items {
                match item {
                    Value::Object(_) | Value::Array(_) => walk(path, item, out, true)?,
                    Value::Null => {}
                    scalar => scalars.push(text_of(&scalar_value(scalar))),
                }
            }
            if !scalars.is_empty() || items.is_empty() {
                out.push((path.to_string(), Leaf::Many(scalars)));
            }
        }
        scalar if in_array => out.push((
            path.to_string(),
            Leaf::Many(vec![text_of(&scalar_value(scalar))]),
        )),
        scalar => out.push((path.to_string(), Leaf::One(scalar_value(scalar)))),
    }
    Ok(())
}

fn scalar_value(v: &Value) -> ExtraValue {
    match v {
        Value::Bool(b) => ExtraValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ExtraValue::Int(i),
            None => ExtraValue::Float(Text::from(n.to_string())),
        },
        Value::String(s) => ExtraValue::Str(Text::from(s.as_str())),
        // Not called for these.
        _ => ExtraValue::Str(Text::from(v.to_string())),
    }
}

/// A value as the text EQL compares.
pub fn text_of(v: &ExtraValue) -> Text {
    match v {
        ExtraValue::Str(s) | ExtraValue::Float(s) => s.clone(),
        ExtraValue::Int(i) => Text::from(i.to_string()),
        ExtraValue::Bool(b) => Text::from_static(if *b { "true" } else { "false" }),
        ExtraValue::List(items) => Text::from(items.join(" ")),
    }
}

fn json_of(v: &ExtraValue) -> Value {
    match v {
        ExtraValue::Str(s) => Value::String(s.to_string()),
        ExtraValue::Int(i) => Value::from(*i),
        ExtraValue::Float(s) => s
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(s.to_string())),
        ExtraValue::Bool(b) => Value::Bool(*b),
        ExtraValue::List(items) => {
            Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
        }
    }
}

fn put(map: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let slot = map
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            match slot {
                Value::Object(inner) => put(inner, rest, value),
                // A scalar where an object goes: keep both, the path flat.
                _ => {
                    map.insert(path.to_string(), value);
                }
            }
        }
    }
}

/// The fields of a `process` (and of each `process.parent`) the typed
/// [`crate::event::Process`] reads.
const PROCESS_TYPED: [&str; 14] = [
    "pid",
    "entity_id",
    "name",
    "executable",
    "args",
    "command_line",
    "working_directory",
    "code_signature.signing_id",
    "code_signature.team_id",
    "code_signature.trusted",
    "code_signature.platform_binary",
    "hash.cdhash",
    "hash.sha256",
    "exit_code",
];

/// Every other path the typed [`crate::Event`] reads.
const OTHER_TYPED: [&str; 23] = [
    "@timestamp",
    "event.category",
    "event.type",
    "event.action",
    "event.id",
    "event.outcome",
    "host.id",
    "host.name",
    "host.os.type",
    "host.os.family",
    "host.os.version",
    "user.id",
    "user.name",
    "file.path",
    "file.name",
    "file.extension",
    "file.target_path",
    "source.ip",
    "source.port",
    "destination.ip",
    "destination.port",
    "network.transport",
    "network.direction",
];

/// Whether the typed event reads `path` (so it is not an extra).
pub fn is_typed(path: &str) -> bool {
    if let Some(mut rest) = path.strip_prefix("process.") {
        while let Some(r) = rest.strip_prefix("parent.") {
            rest = r;
        }
        return PROCESS_TYPED.contains(&rest);
    }
    OTHER_TYPED.contains(&path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_what_the_schema_does_not_read() {
        let doc = json!({
            "@timestamp": "2024-01-01T00:00:00Z",
            "event": {"category": ["process"], "dataset": "endpoint.events.process", "risk_score": 21.5},
            "process": {
                "name": "curl",
                "pid": 12,
                "code_signature": {"exists": true, "trusted": false},
                "Ext": {"effective_parent": {"executable": "/Applications/Slack.app/Contents/MacOS/Slack", "pid": 1}},
                "parent": {"name": "zsh", "Ext": {"real_pid": 99}},
                "env_vars": ["DYLD_INSERT_LIBRARIES=/tmp/x.dylib", "HOME=/Users/a"],
            },
            "dll": [{"name": "a.dylib"}, {"name": "b.dylib"}],
            "gone": null,
        });
        let x = Extras::from_document(&doc).unwrap();
        let keys: Vec<&str> = x.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "dll.name",
                "event.dataset",
                "event.risk_score",
                "process.Ext.effective_parent.executable",
                "process.Ext.effective_parent.pid",
                "process.code_signature.exists",
                "process.env_vars",
                "process.parent.Ext.real_pid",
            ]
        );
        assert_eq!(
            x.get("dll.name"),
            Some(&ExtraValue::List(vec!["a.dylib".into(), "b.dylib".into()]))
        );
        assert_eq!(
            x.get("event.risk_score"),
            Some(&ExtraValue::Float("21.5".into()))
        );
        assert_eq!(
            x.get("process.code_signature.exists"),
            Some(&ExtraValue::Bool(true))
        );
        assert_eq!(
            x.get("process.parent.Ext.real_pid"),
            Some(&ExtraValue::Int(99))
        );
        assert_eq!(x.get("process.name"), None);
    }

    #[test]
    fn merges_back_into_nested_objects() {
        let x = Extras::from_pairs([
            (
                Text::from("process.Ext.effective_parent.name"),
                ExtraValue::Str("Slack".into()),
            ),
            (
                Text::from("event.dataset"),
                ExtraValue::Str("endpoint".into()),
            ),
            (Text::from("host.name.odd"), ExtraValue::Int(1)),
        ]);
        let mut doc = json!({"process": {"name": "curl"}, "event": {"category": ["process"]}, "host": {"name": "mac"}});
        x.merge_into(&mut doc);
        assert_eq!(doc["process"]["Ext"]["effective_parent"]["name"], "Slack");
        assert_eq!(doc["process"]["name"], "curl");
        assert_eq!(doc["event"]["dataset"], "endpoint");
        // `host.name` is a string: the extra stays beside it, flat.
        assert_eq!(doc["host"]["name"], "mac");
        assert_eq!(doc["host"]["name.odd"], 1);
    }

    #[test]
    fn too_many_fields_is_an_error() {
        let mut m = Map::new();
        for i in 0..=MAX_EXTRAS {
            m.insert(format!("f{i}"), json!(i));
        }
        let err = Extras::from_document(&Value::Object(m)).unwrap_err();
        assert!(err.contains("outside vigil's schema"), "{err}");
    }
}
