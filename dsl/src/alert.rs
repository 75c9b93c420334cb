//! What a rule match produces: the rule's metadata, the matched events in
//! order and the join key, with a stable id for de-duplication downstream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ecs_serde;
use crate::event::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Elastic's default risk score for each severity.
    pub fn default_risk(self) -> u8 {
        match self {
            Severity::Low => 21,
            Severity::Medium => 47,
            Severity::High => 73,
            Severity::Critical => 99,
        }
    }
}

/// The rule block of an alert (the `kibana.alert.rule` of Elastic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AlertRule {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub severity: Severity,
    pub risk_score: u8,
    /// MITRE ATT&CK technique and tactic ids (`T1059`, `TA0002`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mitre: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// What a Sigma rule says of itself besides (kept as the author wrote it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub false_positives: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

/// A JSON document already serialized, written into alerts as it is.
#[derive(Debug, Clone)]
pub struct RawJson(pub Box<serde_json::value::RawValue>);

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Serialized by hand (below) to write `raw_enrichments` into `enrichments`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Alert {
    /// Stable for the same rule and events: sinks de-duplicate by it.
    pub id: String,
    /// The time of the last matched event.
    #[serde(rename = "@timestamp", with = "ecs_serde::timestamp")]
    pub timestamp_ns: i64,
    #[serde(rename = "first_timestamp", with = "ecs_serde::timestamp")]
    pub first_timestamp_ns: i64,
    pub rule: AlertRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// Join key field → value, for sequences.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub join_key: BTreeMap<String, String>,
    pub events: Vec<Event>,
    /// Context the rule asked for (`ancestry`, `window:60s`), filled in by the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context_requests: Vec<String>,
    /// Fields added by the rule's `on_match` hook.
    #[serde(default)]
    pub enrichments: serde_json::Map<String, serde_json::Value>,
    /// More of `enrichments`, serialized where they were made: the window
    /// of events the spool thread answers with goes into the document as
    /// text, not as a tree of values built on one thread and written out
    /// and freed on another. Read back, they are part of `enrichments`.
    #[serde(skip)]
    pub raw_enrichments: Vec<(String, RawJson)>,
}

impl Serialize for Alert {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Timestamp(i64);
        impl Serialize for Timestamp {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                ecs_serde::timestamp::serialize(&self.0, s)
            }
        }
        struct Enrichments<'a>(&'a Alert);
        impl Serialize for Enrichments<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let a = self.0;
                let mut m = s.serialize_map(Some(a.enrichments.len() + a.raw_enrichments.len()))?;
                for (k, v) in &a.enrichments {
                    m.serialize_entry(k, v)?;
                }
                for (k, v) in &a.raw_enrichments {
                    m.serialize_entry(k, &v.0)?;
                }
                m.end()
            }
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("@timestamp", &Timestamp(self.timestamp_ns))?;
        m.serialize_entry("first_timestamp", &Timestamp(self.first_timestamp_ns))?;
        m.serialize_entry("rule", &self.rule)?;
        if let Some(host) = &self.host_id {
            m.serialize_entry("host_id", host)?;
        }
        if !self.join_key.is_empty() {
            m.serialize_entry("join_key", &self.join_key)?;
        }
        m.serialize_entry("events", &self.events)?;
        if !self.context_requests.is_empty() {
            m.serialize_entry("context_requests", &self.context_requests)?;
        }
        if !self.enrichments.is_empty() || !self.raw_enrichments.is_empty() {
            m.serialize_entry("enrichments", &Enrichments(self))?;
        }
        m.end()
    }
}

/// A deterministic 128-bit id (two FNV-1a lanes) over the rule id and the
/// identity of each matched event.
pub fn alert_id(rule_id: &str, events: &[Event]) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    let mut feed = |bytes: &[u8]| {
        for &x in bytes {
            a = (a ^ x as u64).wrapping_mul(0x0000_0100_0000_01b3);
            b = (b ^ x as u64)
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(5);
        }
        a = a.wrapping_mul(0x0000_0100_0000_01b3) ^ 0xff;
    };
    feed(rule_id.as_bytes());
    for e in events {
        feed(&e.timestamp_ns.to_le_bytes());
        feed(e.process.entity_id.as_deref().unwrap_or("").as_bytes());
        feed(e.event.id.as_deref().unwrap_or("").as_bytes());
        feed(e.event.action.as_deref().unwrap_or("").as_bytes());
        feed(e.host.id.as_deref().unwrap_or("").as_bytes());
    }
    format!("{a:016x}{b:016x}")
}
