//! `vigil rules import`: Elastic's rule TOML files (elastic/detection-rules
//! and elastic/protections-artifacts layouts) as vigil rule files, each
//! query verbatim. Not EQL (kuery, ES|QL, machine learning) is skipped with
//! the language; a TOML that does not parse, or a query that does not
//! compile, fails with the TOML's own file:line:column.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// What became of one TOML file.
#[derive(Debug, PartialEq)]
pub enum Imported {
    /// The rule file's text, and the rule id (its file name).
    Rule { id: String, text: String },
    /// Not an EQL rule; the reason.
    Skipped(String),
    /// The problem, at `line:column` of the TOML (1-based).
    Failed {
        line: usize,
        column: usize,
        message: String,
    },
}

#[derive(Deserialize)]
struct File {
    rule: Rule,
    /// protections-artifacts keeps `threat` at the top level.
    #[serde(default)]
    threat: Vec<Threat>,
}

#[derive(Deserialize)]
struct Rule {
    /// detection-rules' id.
    rule_id: Option<String>,
    /// protections-artifacts' id.
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    severity: Option<String>,
    risk_score: Option<i64>,
    language: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    query: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    threat: Vec<Threat>,
}

#[derive(Deserialize)]
struct Threat {
    tactic: Option<Id>,
    #[serde(default)]
    technique: Vec<Technique>,
}

#[derive(Deserialize)]
struct Technique {
    id: String,
    #[serde(default)]
    subtechnique: Vec<Id>,
}

#[derive(Deserialize)]
struct Id {
    id: String,
}

/// Imports one TOML file's text (`source` names it in the rule file).
pub fn import(source: &str, toml_text: &str) -> Imported {
    let failed = |offset: usize, message: String| {
        let (line, column) = dsl::query::line_col(toml_text, offset);
        Imported::Failed {
            line,
            column,
            message,
        }
    };
    let file: File = match toml::from_str(toml_text) {
        Ok(f) => f,
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            return failed(at, e.message().to_string());
        }
    };
    let rule = file.rule;
    let language = rule
        .language
        .clone()
        .or_else(|| rule.kind.clone())
        // Behaviour rules (protections-artifacts) are all EQL.
        .unwrap_or_else(|| "eql".into());
    if language != "eql" {
        return Imported::Skipped(format!("not EQL (language = {language:?})"));
    }
    let Some(query) = rule.query else {
        return Imported::Skipped("no query".into());
    };
    let Some(id) = rule.rule_id.or(rule.id) else {
        return failed(0, "no rule_id or id".into());
    };
    // Where the query's text starts in the TOML: exact for literal
    // strings ('''...'''), which keep it verbatim.
    let query_start = toml_text[query.span()]
        .find(query.get_ref().as_str())
        .map_or(query.span().start, |i| query.span().start + i);
    if let Err(e) = dsl::query::compile(query.get_ref()) {
        return failed(query_start + e.offset, e.message);
    }
    let severity = rule.severity.unwrap_or_else(|| "medium".into());
    let risk = rule.risk_score.unwrap_or(match severity.as_str() {
        "low" => 21,
        "high" => 73,
        "critical" => 99,
        _ => 47,
    });
    let mut mitre = Vec::new();
    for t in rule.threat.iter().chain(&file.threat) {
        for tech in &t.technique {
            mitre.push(tech.id.clone());
            mitre.extend(tech.subtechnique.iter().map(|s| s.id.clone()));
        }
        mitre.extend(t.tactic.iter().map(|t| t.id.clone()));
    }
    let mut seen = std::collections::HashSet::new();
    mitre.retain(|m| seen.insert(m.clone()));
    let text = rule_file(&RuleText {
        header: format!("// Imported by `vigil rules import` from {source}\n"),
        id: &id,
        name: rule.name.as_deref().unwrap_or(&id).trim(),
        description: rule.description.as_deref().unwrap_or("").trim(),
        severity: &severity,
        risk: risk.clamp(0, 100),
        mitre: &mitre,
        tags: &rule.tags,
        query: query.get_ref(),
    });
    Imported::Rule { id, text }
}

/// What `vigil rules import` writes of a rule, Elastic's or Sigma's.
pub(crate) struct RuleText<'a> {
    /// Comment lines saying where the rule came from.
    pub header: String,
    pub id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub severity: &'a str,
    pub risk: i64,
    pub mitre: &'a [String],
    pub tags: &'a [String],
    pub query: &'a str,
}

/// A rule file declaring one rule: every value a rhai literal.
pub(crate) fn rule_file(r: &RuleText<'_>) -> String {
    let list = |items: &[String]| {
        items
            .iter()
            .map(|s| rhai_string(s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{}rule(#{{\n    id: {},\n    name: {},\n    description: {},\n    severity: {},\n    risk: {},\n    mitre: [{}],\n    tags: [{}],\n    query: {},\n}});\n",
        r.header,
        rhai_string(r.id),
        rhai_string(r.name),
        rhai_string(r.description),
        rhai_string(r.severity),
        r.risk,
        list(r.mitre),
        list(r.tags),
        rhai_string(r.query),
    )
}

/// A rhai string literal holding `s` exactly.
fn rhai_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `*.toml` files of `paths` (directories recursively), sorted.
pub fn toml_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        if p.is_dir() {
            for entry in std::fs::read_dir(p)? {
                walk(&entry?.path(), out)?;
            }
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p.to_path_buf());
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_file() {
            if !dsl::sigma::is_sigma_path(&p.display().to_string()) {
                out.push(p.clone());
            }
        } else {
            walk(p, &mut out)?;
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DETECTION: &str = r#"[metadata]
creation_date = "2023/01/01"

[rule]
author = ["Elastic"]
description = """
Finds "curl" run by a shell.
"""
language = "eql"
name = "Curl From Shell"
risk_score = 21
rule_id = "abc-123"
severity = "low"
tags = ["OS: macOS", "Tactic: Execution"]
type = "eql"
query = '''
process where event.type == "start" and process.name : "curl" and
  process.parent.name in ("sh", "bash") and process.Ext.effective_parent.name != null
'''

[[rule.threat]]
framework = "MITRE ATT&CK"
[[rule.threat.technique]]
id = "T1059"
name = "Command and Scripting Interpreter"
[[rule.threat.technique.subtechnique]]
id = "T1059.004"
[rule.threat.tactic]
id = "TA0002"
"#;

    #[test]
    fn a_detection_rule_becomes_a_rule_file_that_loads_with_its_query_verbatim() {
        let Imported::Rule { id, text } = import("rules/macos/x.toml", DETECTION) else {
            panic!("not imported");
        };
        assert_eq!(id, "abc-123");
        let out = dsl::rules::load_rules(&[dsl::rules::RuleFile {
            path: "x.rhai".into(),
            text: text.clone(),
            origin: dsl::rules::Origin::User,
        }]);
        assert!(out.errors.is_empty(), "{:?}\n{text}", out.errors);
        let rule = &out.rules.rules()[0];
        assert_eq!(rule.meta.name, "Curl From Shell");
        assert_eq!(rule.meta.severity.as_str(), "low");
        assert_eq!(rule.meta.risk_score, 21);
        assert_eq!(rule.meta.mitre, ["T1059", "T1059.004", "TA0002"]);
        assert_eq!(rule.meta.description, "Finds \"curl\" run by a shell.");
        assert!(rule
            .query_text
            .contains("process.Ext.effective_parent.name != null"));
        // The field vigil does not carry is a warning, not an error.
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    }

    #[test]
    fn kuery_is_skipped_with_its_language() {
        let toml = DETECTION.replace("language = \"eql\"", "language = \"kuery\"");
        assert_eq!(
            import("x.toml", &toml),
            Imported::Skipped("not EQL (language = \"kuery\")".into())
        );
    }

    #[test]
    fn a_bad_query_fails_at_its_place_in_the_toml() {
        let toml = DETECTION.replace("process.parent.name in", "process.parent.name inn");
        let Imported::Failed { line, column, .. } = import("x.toml", &toml) else {
            panic!("not failed");
        };
        let at = toml.find("inn (").unwrap();
        assert_eq!((line, column), dsl::query::line_col(&toml, at));
    }

    #[test]
    fn a_toml_syntax_error_fails_with_its_position() {
        let Imported::Failed { line, .. } = import("x.toml", "[rule]\nname = \"x\n") else {
            panic!("not failed");
        };
        assert_eq!(line, 2);
    }

    #[test]
    fn a_behaviour_rule_with_top_level_threat_imports_as_eql() {
        let toml = r#"[rule]
description = "d"
id = "71ebb1e8"
name = "Clipboard"
os_list = ["macos"]
query = '''
process where event.action == "exec" and process.code_signature.trusted == false
'''

[[threat]]
framework = "MITRE ATT&CK"
[[threat.technique]]
id = "T1115"
[threat.tactic]
id = "TA0009"
"#;
        let Imported::Rule { id, text } = import("behavior/x.toml", toml) else {
            panic!("not imported");
        };
        assert_eq!(id, "71ebb1e8");
        assert!(text.contains("mitre: [\"T1115\", \"TA0009\"]"), "{text}");
        assert!(text.contains("severity: \"medium\""), "{text}");
    }
}
