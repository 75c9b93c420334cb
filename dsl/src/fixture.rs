//! Rule fixtures: input events plus the alerts a rule must (or must not)
//! raise on them. The comparison lives here; reading the folders is the
//! caller's job (this crate does no I/O).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::correlate::Correlator;
use crate::correlate::CorrelatorConfig;
use crate::event::Event;
use crate::rules::RuleSet;

/// One line of a fixture's `expected.ndjson`. `join_key` is checked only
/// when given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedAlert {
    pub rule_id: String,
    /// The `event.id`s of the matched events, in order.
    pub event_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_key: Option<BTreeMap<String, String>>,
}

impl ExpectedAlert {
    pub fn from_alert(a: &Alert) -> ExpectedAlert {
        ExpectedAlert {
            rule_id: a.rule.id.clone(),
            event_ids: a
                .events
                .iter()
                .map(|e| e.event.id.as_deref().unwrap_or("<no event.id>").to_string())
                .collect(),
            join_key: Some(a.join_key.clone()),
        }
    }

    fn matches(&self, actual: &ExpectedAlert) -> bool {
        self.rule_id == actual.rule_id
            && self.event_ids == actual.event_ids
            && self
                .join_key
                .as_ref()
                .is_none_or(|k| Some(k) == actual.join_key.as_ref())
    }
}

/// The outcome of one fixture case for one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureResult {
    pub expected: Vec<ExpectedAlert>,
    pub actual: Vec<ExpectedAlert>,
}

impl FixtureResult {
    pub fn passed(&self) -> bool {
        self.expected.len() == self.actual.len()
            && self
                .expected
                .iter()
                .zip(&self.actual)
                .all(|(e, a)| e.matches(a))
    }

    /// A readable diff: `-` expected but missing, `+` raised but not expected.
    pub fn diff(&self) -> String {
        let mut out = String::new();
        for e in &self.expected {
            if !self.actual.iter().any(|a| e.matches(a)) {
                out.push_str(&format!(
                    "- {}\n",
                    serde_json::to_string(e).unwrap_or_default()
                ));
            }
        }
        for a in &self.actual {
            if !self.expected.iter().any(|e| e.matches(a)) {
                out.push_str(&format!(
                    "+ {}\n",
                    serde_json::to_string(a).unwrap_or_default()
                ));
            }
        }
        if out.is_empty() && !self.passed() {
            out.push_str("alerts match but arrive in a different order\n");
        }
        out
    }
}

/// Runs `events` through every rule and keeps the alerts of `rule_id`.
pub fn run_fixture(
    rules: &Arc<RuleSet>,
    rule_id: &str,
    events: &[Event],
    expected: Vec<ExpectedAlert>,
) -> FixtureResult {
    let mut correlator = Correlator::new(Arc::clone(rules), CorrelatorConfig::default());
    let mut alerts = Vec::new();
    for e in events {
        correlator.process(e, &mut alerts);
    }
    FixtureResult {
        expected,
        actual: alerts
            .iter()
            .filter(|a| a.rule.id == rule_id)
            .map(ExpectedAlert::from_alert)
            .collect(),
    }
}
