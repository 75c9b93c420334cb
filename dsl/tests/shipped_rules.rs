//! Every shipped rule loads cleanly and passes every fixture case under
//! `rules/fixtures/<rule-id>/<case>/`.

use std::fs;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use vigil_dsl::ecs::EcsReader;
use vigil_dsl::fixture::{run_fixture, ExpectedAlert};
use vigil_dsl::rules::load_rules;
use vigil_dsl::shipped::{shipped_rule_files, shipped_with_variants};

#[test]
fn shipped_rules_load_without_errors() {
    let out = load_rules(&shipped_rule_files());
    assert!(
        out.errors.is_empty(),
        "errors: {:#?}",
        out.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
    );
    let ids: Vec<&str> = out
        .rules
        .rules()
        .iter()
        .map(|r| r.meta.id.as_str())
        .collect();
    for id in [
        "macos-installer-child-network",
        "macos-installer-network-legacy",
        "an0938-installer-postinstall-unusual-child",
        "an0994-browser-spawns-shell",
        "an0994-download-executed",
        "an1316-content-app-write-spawn-egress",
    ] {
        assert!(ids.contains(&id), "missing shipped rule {id}; have {ids:?}");
    }
}

#[test]
fn the_many_rules_benchmark_set_loads_exactly_that_many() {
    let out = load_rules(&shipped_with_variants(100));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.rules.len(), 100);
}

#[test]
fn every_fixture_case_passes_and_every_rule_has_positive_and_near_misses() {
    let rules = Arc::new(load_rules(&shipped_rule_files()).rules);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/fixtures");
    let mut failures = Vec::new();
    let mut cases = 0;
    for rule in rules.rules() {
        let dir = root.join(&rule.meta.id);
        let mut positives = 0;
        let mut near_misses = 0;
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "rule {} has no fixtures at {}: {e}",
                rule.meta.id,
                dir.display()
            )
        });
        for case in entries {
            let case = case.unwrap().path();
            let events: Vec<_> = EcsReader::new(BufReader::new(
                fs::File::open(case.join("events.ndjson")).unwrap(),
            ))
            .map(|r| r.unwrap_or_else(|e| panic!("{}: {e}", case.display())))
            .collect();
            let expected: Vec<ExpectedAlert> = fs::read_to_string(case.join("expected.ndjson"))
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if expected.is_empty() {
                near_misses += 1
            } else {
                positives += 1
            }
            let result = run_fixture(&rules, &rule.meta.id, &events, expected);
            cases += 1;
            if !result.passed() {
                failures.push(format!("{}:\n{}", case.display(), result.diff()));
            }
        }
        assert!(
            positives >= 1 && near_misses >= 2,
            "rule {} needs >= 1 positive and >= 2 near-miss cases (has {positives}/{near_misses})",
            rule.meta.id
        );
    }
    assert!(cases >= 25, "only {cases} fixture cases found");
    for dir in fs::read_dir(&root).unwrap() {
        let name = dir.unwrap().file_name().into_string().unwrap();
        assert!(
            rules.rules().iter().any(|r| r.meta.id == name),
            "fixtures for unknown rule {name}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} fixture cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
