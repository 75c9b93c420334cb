//! Elastic's public macOS EQL rules as their authors wrote them
//! (tests/fixtures/elastic-rules, Elastic License 2.0, see SOURCE.md) load
//! through the real CLI. What does not load yet is listed by reason, so a
//! rule that stops loading, or a reason nobody knew of, fails here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use vigil_e2e::{repo, vigil};

fn fixtures(folder: &str) -> PathBuf {
    repo().join("tests/fixtures/elastic-rules").join(folder)
}

/// (rules loaded besides the 6 shipped ones, errors by reason, warnings)
fn check(folder: &str) -> (usize, BTreeMap<String, usize>, usize) {
    let o = vigil()
        .args(["rules", "check"])
        .arg(fixtures(folder))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let summary = err.lines().last().unwrap_or_default().to_string();
    let numbers: Vec<usize> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let [loaded, errors, warnings] = numbers[..] else {
        panic!("no summary line in:\n{err}");
    };
    let mut reasons = BTreeMap::new();
    for line in err.lines().filter(|l| !l.starts_with("warning: ")) {
        // path:line:col: rule ID: reason
        if let Some((_, reason)) = line.split_once(": rule ") {
            let reason = reason.split_once(": ").map_or(reason, |(_, r)| r);
            *reasons.entry(reason.to_string()).or_insert(0) += 1;
        }
    }
    assert_eq!(reasons.values().sum::<usize>(), errors, "{err}");
    // A rule that does not load is an error (exit 1); warnings alone are not.
    assert_eq!(
        o.status.code(),
        Some(if errors > 0 { 1 } else { 0 }),
        "{err}"
    );
    (loaded - 6, reasons, warnings)
}

#[test]
fn every_detection_rules_macos_eql_rule_loads() {
    let (loaded, reasons, warnings) = check("detection-rules");
    assert_eq!(loaded, 143, "{reasons:#?}");
    assert!(reasons.is_empty(), "{reasons:#?}");
    // Fields and values vigil's own events do not carry yet (effective
    // parent, Ext.* ...) are warnings, not failures.
    assert!(warnings > 0);
}

#[test]
fn every_protections_artifacts_macos_behaviour_rule_loads() {
    // Step aliases (`] as event0`) and lineage (`descendant of [...]`)
    // included: all 444 of both repositories load (the issue's bar: 426).
    let (loaded, reasons, _) = check("protections-artifacts");
    assert!(reasons.is_empty(), "{reasons:#?}");
    assert_eq!(loaded, 301);
}

/// `vigil rules import` on Elastic's TOML files as they are: EQL rules
/// become rule files that load, kuery is skipped with its language.
#[test]
fn rules_import_reads_elastic_toml_as_written() {
    let out = tempfile::tempdir().unwrap();
    let o = vigil()
        .args(["rules", "import"])
        .arg(fixtures("toml"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("4 imported, 1 skipped, 0 failed"),
        "{stderr}"
    );
    assert!(
        stdout.contains("command_and_control_unusual_connection_to_suspicious_top_level_domain.toml: not EQL (language = \"kuery\")"),
        "{stdout}"
    );
    // The rule with step aliases (`] as event0`) imports.
    assert!(
        stdout.contains("imported ")
            && stdout.contains("2cf4a0ba-6d6e-4984-963e-ee4785f8c9b6.rhai"),
        "{stdout}"
    );
    let check = vigil()
        .args(["rules", "check"])
        .arg(out.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(0), "{err}");
    assert!(err.contains("10 rules loaded, 0 errors"), "{err}");
}

/// An Elastic rule that reads the responsible process
/// (`process.Ext.effective_parent.*`) and the document's own
/// `code_signature.exists` fires on Elastic Defend documents replayed as
/// they are, and not on near misses; the spool keeps those fields for hunts
/// and the alert carries them.
#[test]
fn rules_read_the_fields_replayed_documents_carry() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let rule = "752a2f7f-8d0c-4a7e-9665-ec948d14e947.rhai";
    std::fs::copy(
        fixtures("protections-artifacts").join(rule),
        rules.join(rule),
    )
    .unwrap();
    let doc = |ts: &str, effective_parent: &str, exists: bool| {
        serde_json::json!({
            "@timestamp": ts,
            "event": {"category": ["process"], "type": ["start"], "action": "exec", "dataset": "endpoint.events.process"},
            "host": {"id": "mac-1", "os": {"type": "macos"}},
            "process": {
                "pid": 4100, "entity_id": format!("ent-{ts}"), "name": "payload",
                "executable": "/private/tmp/payload", "args": ["/private/tmp/payload"],
                // A signing id, yet Defend says unsigned: the document wins.
                "code_signature": {"exists": exists, "signing_id": "payload", "trusted": exists},
                "parent": {"name": "sh", "pid": 4000},
                "Ext": {"effective_parent": {"executable": effective_parent, "name": "installer"}}
            }
        })
        .to_string()
    };
    let input = [
        doc("2024-05-01T10:00:00Z", "/usr/sbin/installer", false),
        // Near misses: another responsible process; a trusted, signed one.
        doc("2024-05-01T10:00:01Z", "/usr/bin/login", false),
        doc("2024-05-01T10:00:02Z", "/usr/sbin/installer", true),
    ]
    .join("\n");
    let events = dir.path().join("defend.ndjson");
    std::fs::write(&events, input).unwrap();
    let spool = dir.path().join("s.spool");
    let o = vigil()
        .args(["replay", "--no-shipped-rules", "--rules"])
        .arg(&rules)
        .arg("--spool")
        .arg(&spool)
        .arg(&events)
        .output()
        .unwrap();
    let alerts = vigil_e2e::ndjson(&vigil_e2e::stdout(&o));
    assert_eq!(alerts.len(), 1, "{}", vigil_e2e::stderr(&o));
    let event = &alerts[0]["events"][0];
    assert_eq!(event["@timestamp"], "2024-05-01T10:00:00Z");
    assert_eq!(
        event["process"]["Ext"]["effective_parent"]["executable"],
        "/usr/sbin/installer"
    );
    assert_eq!(event["event"]["dataset"], "endpoint.events.process");

    // A hunt reads them from the spool with `?` (named as intended)...
    let hunt = |q: &str| {
        vigil()
            .args(["hunt", "--json", "--spool"])
            .arg(&spool)
            .arg(q)
            .output()
            .unwrap()
    };
    let o = hunt(r#"process where ?process.Ext.effective_parent.executable == "/usr/bin/login""#);
    let found = vigil_e2e::ndjson(&vigil_e2e::stdout(&o));
    assert_eq!(found.len(), 1, "{}", vigil_e2e::stderr(&o));
    assert_eq!(found[0]["@timestamp"], "2024-05-01T10:00:01Z");
    // ...and without it says why it refuses (a typo would look the same).
    let o = hunt(r#"process where process.Ext.effective_parent.executable == "/usr/bin/login""#);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        vigil_e2e::stderr(&o).contains("write `?process.Ext.effective_parent.executable`"),
        "{}",
        vigil_e2e::stderr(&o)
    );
}
