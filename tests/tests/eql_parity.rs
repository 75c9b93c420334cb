//! Same alerts as Elastic's reference EQL engine: `vigil replay` and python
//! `eql` 1.0.1 running exact translations of the six shipped rules
//! (`scripts/eql_reference.py`) raise the same alerts, each the same events
//! in the same order, on every rule fixture, on a random stream built to hit
//! every rule and its near misses, and on a synthetic stream.
//!
//! Needs `python3` with `eql` (scripts/setup.sh installs it); without it the
//! tests say so and pass, unless `VIGIL_REQUIRE_EQL` is set.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use vigil_e2e::{ndjson, repo, stderr, stdout, vigil, vigil_bin, SHIPPED_RULE_IDS};

/// The alerts of one stream: rule id to the matched events' ids, one list
/// per alert, the lists sorted (the same alerts in any order compare equal).
type Alerts = BTreeMap<String, Vec<Vec<String>>>;

fn reference() -> PathBuf {
    repo().join("scripts/eql_reference.py")
}

/// Whether python3 can `import <module>`; when not, prints why the test is
/// skipped (or fails, with `VIGIL_REQUIRE_EQL` set).
fn python_has(module: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let why = if module == "eql" {
            "python eql not installed (scripts/setup.sh installs it)"
        } else {
            "python3 not installed"
        };
        assert!(
            std::env::var_os("VIGIL_REQUIRE_EQL").is_none(),
            "VIGIL_REQUIRE_EQL is set but {why}"
        );
        eprintln!("skipped: {why}");
    }
    ok
}

fn reference_run(args: &[&str], files: &[PathBuf]) -> Output {
    let o = Command::new("python3")
        .arg(reference())
        .args(args)
        .args(files)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "eql_reference.py {args:?} failed: {}",
        stderr(&o)
    );
    o
}

fn ids(events: &Value) -> Vec<String> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect()
}

fn sorted(mut alerts: Alerts) -> Alerts {
    for lists in alerts.values_mut() {
        lists.sort();
    }
    alerts
}

/// `vigil replay` on one file: its alerts by rule, with the `event.id` of
/// each matched event.
fn vigil_alerts(events: &Path) -> Alerts {
    let o = vigil().arg("replay").arg(events).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("(0 bad lines)"),
        "{}: {}",
        events.display(),
        stderr(&o)
    );
    let mut alerts = Alerts::new();
    for a in ndjson(&stdout(&o)) {
        let event_ids = a["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["event"]["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("an alert's event has no event.id: {e}"))
                    .to_string()
            })
            .collect();
        alerts
            .entry(a["rule"]["id"].as_str().unwrap().to_string())
            .or_default()
            .push(event_ids);
    }
    sorted(alerts)
}

/// The reference on each file as its own stream: alerts by file, then rule.
fn eql_alerts(files: &[PathBuf]) -> BTreeMap<PathBuf, Alerts> {
    let o = reference_run(&["--per-file"], files);
    let mut by_file: BTreeMap<PathBuf, Alerts> =
        files.iter().map(|f| (f.clone(), Alerts::new())).collect();
    for a in ndjson(&stdout(&o)) {
        by_file
            .get_mut(Path::new(a["input"].as_str().unwrap()))
            .expect("an alert for a file it was given")
            .entry(a["rule_id"].as_str().unwrap().to_string())
            .or_default()
            .push(ids(&a["event_ids"]));
    }
    by_file.into_iter().map(|(f, a)| (f, sorted(a))).collect()
}

/// Alert lists in `a` but not in `b` (as multisets), at most `limit`.
fn missing_from(a: &[Vec<String>], b: &[Vec<String>], limit: usize) -> Vec<Vec<String>> {
    let mut rest = b.to_vec();
    let mut out = Vec::new();
    for x in a {
        match rest.iter().position(|y| y == x) {
            Some(i) => {
                rest.swap_remove(i);
            }
            None if out.len() < limit => out.push(x.clone()),
            None => {}
        }
    }
    out
}

fn assert_same(stream: &Path, vigil: &Alerts, eql: &Alerts) {
    let rules: BTreeSet<&String> = vigil.keys().chain(eql.keys()).collect();
    let none = Vec::new();
    let mut report = String::new();
    for rule in rules {
        let (v, e) = (
            vigil.get(rule).unwrap_or(&none),
            eql.get(rule).unwrap_or(&none),
        );
        if v != e {
            report.push_str(&format!(
                "\n  {rule}: vigil {} alerts, eql {}\n    only in vigil: {:?}\n    only in eql: {:?}",
                v.len(),
                e.len(),
                missing_from(v, e, 5),
                missing_from(e, v, 5),
            ));
        }
    }
    assert!(
        report.is_empty(),
        "{}: vigil and python eql raise different alerts:{report}",
        stream.display()
    );
}

fn add_counts(counts: &mut BTreeMap<String, usize>, alerts: &Alerts) {
    for (rule, lists) in alerts {
        *counts.entry(rule.clone()).or_default() += lists.len();
    }
}

fn assert_every_rule_fired(what: &str, counts: &BTreeMap<String, usize>) {
    for rule in SHIPPED_RULE_IDS {
        assert!(
            counts.get(rule).copied().unwrap_or(0) > 0,
            "{what}: no alert for {rule} ({counts:?})"
        );
    }
}

/// A copy of `text` (ECS NDJSON) in which every event has an `event.id`,
/// `L<line>`: vigil's alerts carry the matched documents, and these ids
/// name the same events in both engines' alerts.
fn with_event_ids(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 50);
    for (n, line) in text.lines().enumerate() {
        let mut doc: Value = serde_json::from_str(line).unwrap();
        let event = doc
            .as_object_mut()
            .unwrap()
            .entry("event")
            .or_insert_with(|| Value::Object(Default::default()));
        event
            .as_object_mut()
            .unwrap()
            .insert("id".into(), Value::String(format!("L{}", n + 1)));
        out.push_str(&doc.to_string());
        out.push('\n');
    }
    out
}

#[test]
fn the_translations_match_the_rules_vigil_loads() {
    if !python_has("json") {
        return;
    }
    // Needs python3 only: a rule edited without its translation fails here.
    let o = Command::new("python3")
        .arg(reference())
        .args(["--check-rules", "--vigil"])
        .arg(vigil_bin())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}\n(update RULES in scripts/eql_reference.py)",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn rule_fixtures_raise_the_same_alerts_in_vigil_and_python_eql() {
    if !python_has("eql") {
        return;
    }
    let root = repo().join("dsl/rules/fixtures");
    let mut files = Vec::new();
    for rule in fs::read_dir(&root).unwrap() {
        for case in fs::read_dir(rule.unwrap().path()).unwrap() {
            files.push(case.unwrap().path().join("events.ndjson"));
        }
    }
    files.sort();
    assert!(files.len() >= 6, "fixtures under {}", root.display());
    let eql = eql_alerts(&files);
    let mut counts = BTreeMap::new();
    for f in &files {
        let v = vigil_alerts(f);
        assert_same(f, &v, &eql[f]);
        add_counts(&mut counts, &v);
    }
    println!("fixtures ({} streams): {counts:?}", files.len());
    assert_every_rule_fired("the rule fixtures", &counts);
}

#[test]
fn random_and_synthetic_streams_raise_the_same_alerts_in_vigil_and_python_eql() {
    if !python_has("eql") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Random events that hit every rule, with near misses, case variants,
    // null join keys, equal timestamps and gaps of exactly a maxspan.
    let random = dir.path().join("random.ndjson");
    let o = reference_run(&["--generate", "10000", "--seed", "7"], &[]);
    fs::write(&random, stdout(&o)).unwrap();
    // vigil's own synthetic stream with a planted chain (and near miss)
    // for every shipped rule.
    let synthetic = dir.path().join("synthetic.ndjson");
    let o = vigil()
        .args(["synthetic", "--events", "50000", "--plant-every", "5000"])
        .args(["--plant", "all"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    fs::write(&synthetic, with_event_ids(&stdout(&o))).unwrap();

    let files = vec![random.clone(), synthetic.clone()];
    let eql = eql_alerts(&files);
    let mut counts = BTreeMap::new();
    for f in &files {
        let v = vigil_alerts(f);
        assert_same(f, &v, &eql[f]);
        let mut own = BTreeMap::new();
        add_counts(&mut own, &v);
        println!("{}: {own:?}", f.file_name().unwrap().to_string_lossy());
        let name = if *f == random {
            "the random stream"
        } else {
            "the synthetic stream"
        };
        assert_every_rule_fired(name, &own);
        add_counts(&mut counts, &v);
    }
    assert_every_rule_fired("the random and synthetic streams", &counts);
}
