//! serde adapters for the places where real ECS documents are looser than a
//! Rust type: lists that may be a single string, ids that may be numbers,
//! timestamps as RFC 3339 text.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serializer};

/// A JSON value that may be one string or a list of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Converts a `@timestamp` to ns since the epoch, and back.
pub mod timestamp {
    use super::*;

    pub fn serialize<S: Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::time::format_rfc3339(*ns))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            // Elasticsearch also accepts epoch milliseconds.
            Millis(i64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => crate::time::parse_rfc3339(&t).map_err(de::Error::custom),
            Raw::Millis(ms) => ms
                .checked_mul(1_000_000)
                .ok_or_else(|| de::Error::custom("@timestamp out of range")),
        }
    }
}

/// `event.category`: a string or a list in ECS; one [`Category`] in vigil.
pub mod category {
    use super::*;
    use crate::event::Category;

    pub fn serialize<S: Serializer>(c: &Category, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(1))?;
        seq.serialize_element(c.as_str())?;
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Category, D::Error> {
        let names = OneOrMany::deserialize(d)?.into_vec();
        Ok(Category::from_ecs_list(names.iter().map(String::as_str)))
    }
}

/// `event.type`: a string or a list of ECS type names. Names outside the ECS
/// allowed values are dropped rather than failing the whole document.
pub mod event_types {
    use super::*;
    use crate::event::EventType;

    pub fn serialize<S: Serializer>(types: &[EventType], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(types.iter().map(|t| t.as_str()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EventType>, D::Error> {
        let names = OneOrMany::deserialize(d)?.into_vec();
        Ok(names.iter().filter_map(|n| EventType::parse(n)).collect())
    }
}

/// Ids that producers write as strings or as numbers (`"502"` or `502`).
pub mod opt_string_or_number {
    use super::*;
    use crate::event::Text;

    pub fn serialize<S: Serializer>(v: &Option<Text>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Text>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(i64),
            UInt(u64),
            List(Vec<String>),
        }
        Ok(match Option::<Raw>::deserialize(d)? {
            None => None,
            Some(Raw::Text(t)) => Some(t.into()),
            Some(Raw::Int(i)) => Some(i.to_string().into()),
            Some(Raw::UInt(u)) => Some(u.to_string().into()),
            // ECS allows keyword arrays; vigil keeps the first value.
            Some(Raw::List(l)) => l.into_iter().next().map(Text::from),
        })
    }
}

/// IP addresses; an unparsable address is an error for the document.
pub mod opt_ip {
    use super::*;
    use std::net::IpAddr;

    pub fn serialize<S: Serializer>(v: &Option<IpAddr>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(ip) => s.collect_str(ip),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| de::Error::custom(format!("invalid IP address {text:?}"))),
        }
    }
}
