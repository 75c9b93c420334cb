//! The stage index (which stages an event may match, looked up instead of
//! evaluated) against the general path: every guard admits what its filter
//! matches, and a correlator with the index raises exactly the alerts, in
//! the same order, and keeps the same counters as one without it.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use vigil_dsl::correlate::dispatch::stage_filters;
use vigil_dsl::correlate::Correlator;
use vigil_dsl::correlate::CorrelatorConfig;
use vigil_dsl::event::{Category, Endpoint, EventType, File, Process};
use vigil_dsl::query::guard::Guard;
use vigil_dsl::rules::{load_rules, Origin, RuleFile, RuleSet};
use vigil_dsl::shipped::shipped_rule_files;
use vigil_dsl::Event;

const NAMES: [&str; 14] = [
    "curl",
    "CURL",
    "sh",
    "bash",
    "zsh",
    "installer",
    "Installer",
    "package_script_service",
    "helper3x",
    "tool2",
    "python3.11",
    "Safari",
    "ſh",
    "K",
];
const PATHS: [&str; 6] = [
    "/usr/sbin/installer",
    "/Users/bob/Downloads/a.pkg",
    "/tmp/x",
    "/bin/sh",
    "/usr/bin/curl",
    "/System/Library/CoreServices/Installer.app/Contents/MacOS/Installer",
];
const TYPES: [EventType; 5] = [
    EventType::Start,
    EventType::End,
    EventType::Connection,
    EventType::Creation,
    EventType::Change,
];
const IPS: [&str; 4] = ["10.1.2.3", "140.82.112.18", "127.0.0.1", "::1"];

/// Rules that give the index every kind of guard: case-sensitive and
/// case-insensitive value sets, several `event.type` tests, `any`, `until`,
/// `runs`, host fields, a plain filter and variants as in the 100-rule bench.
fn rules() -> RuleSet {
    let mut files = shipped_rule_files();
    let mut text = String::from(
        r#"
rule(#{ id: "exact-case", query: `process where process.name == "Installer" and event.type in ("start", "end")` });
rule(#{ id: "any-types", query: `sequence by host.id with maxspan=3s
    [any where event.type == "start" and event.type == "connection" and process.name in~ ("CURL", "sh")] by process.entity_id
    [any where process.name : ("k", "ſh")] by process.parent.entity_id
    until [process where event.type == "end" and process.name == "zsh"] by process.entity_id` });
rule(#{ id: "globs", query: `process where process.executable like~ ("/users/*/downloads/*", "*/MacOS/Install?r", "/usr/sbin/*") and process.args : ("*-c*", "x?ol2")` });
rule(#{ id: "or-of-literals", query: `sequence by process.entity_id with maxspan=3s
    [process where (process.name : "python*" or startswith(process.executable, "/tmp/")) and not process.args == "-q"]
    [file where endswith~(file.path, "/A.PKG") or stringcontains(file.path, "core")]` });
rule(#{ id: "present", query: `process where process.Ext.effective_parent.name != null or ?x.y : "*"` });
rule(#{ id: "args-exact", query: `process where process.args in ("-c", "K") and process.parent.name like "*sh"` });
rule(#{ id: "runs", query: `sequence by host.id with maxspan=2s
    [process where host.os.type == "macos" and process.name : ("bash", "zsh")] with runs=2
    [network where process.name == "curl"]` });
"#,
    );
    for i in 0..6 {
        text.push_str(&format!(
            "rule(#{{ id: \"variant-{i}\", query: `sequence by host.id with maxspan=3s [process where event.type == \"start\" and process.parent.name : (\"installer{i}\", \"helper{i}*\") and process.name : (\"sh\", \"bash\", \"zsh\")] by process.entity_id [network where process.name : (\"curl\", \"tool{i}\") and not cidrmatch(destination.ip, \"10.0.0.0/8\")] by process.parent.entity_id` }});\n"
        ));
    }
    files.push(RuleFile {
        path: "extra.rhai".into(),
        text,
        origin: Origin::User,
    });
    let out = load_rules(&files);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    out.rules
}

fn event() -> impl Strategy<Value = Event> {
    (
        (
            0usize..4,
            proptest::collection::vec(0usize..TYPES.len(), 0..3),
        ),
        (
            0usize..NAMES.len(),
            0usize..NAMES.len(),
            0usize..4,
            0usize..4,
        ),
        (0usize..PATHS.len(), 0usize..PATHS.len(), 0usize..IPS.len()),
        (0i64..40, proptest::bool::ANY),
    )
        .prop_map(
            |((cat, types), (name, parent, pid, ppid), (exe, path, ip), (t, host))| {
                let mut e = Event {
                    timestamp_ns: t * 100_000_000,
                    ..Event::default()
                };
                e.event.category = [
                    Category::Process,
                    Category::Network,
                    Category::File,
                    Category::Other,
                ][cat];
                e.event.types = types.into_iter().map(|i| TYPES[i]).collect();
                e.host.id = Some(if host { "h1" } else { "h2" }.into());
                e.host.os.os_type = Some("macos".into());
                e.host.os.family = Some("macos".into());
                e.process = Process {
                    // Lists: each element is looked up.
                    args: vec![NAMES[parent].into(), "-c".into(), PATHS[path].into()]
                        [..(t as usize % 4)]
                        .to_vec(),
                    name: Some(NAMES[name].into()),
                    executable: Some(PATHS[exe].into()),
                    entity_id: Some(format!("p{pid}").into()),
                    parent: Some(Arc::new(Process {
                        name: Some(NAMES[parent].into()),
                        executable: Some(PATHS[(exe + 1) % PATHS.len()].into()),
                        entity_id: Some(format!("p{ppid}").into()),
                        ..Process::default()
                    })),
                    ..Process::default()
                };
                if cat == 1 {
                    e.destination = Some(Endpoint {
                        ip: Some(IPS[ip].parse().expect("valid IP")),
                        ..Endpoint::default()
                    });
                }
                if cat == 2 {
                    e.file = Some(File {
                        path: Some(PATHS[path].into()),
                        ..File::default()
                    });
                }
                e
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn guards_admit_every_event_their_filter_matches(events in proptest::collection::vec(event(), 1..200)) {
        let rules = rules();
        for r in rules.rules() {
            for (_, f) in stage_filters(&r.query) {
                let guard = Guard::of(f);
                for e in &events {
                    prop_assert!(!f.matches(e) || guard.admits(e), "{} on {e:?}", r.meta.id);
                }
            }
        }
    }

    #[test]
    fn indexed_correlator_agrees_with_the_general_path(
        events in proptest::collection::vec(event(), 1..400),
        max_open in 1usize..6,
        arc in proptest::bool::ANY,
    ) {
        let rules = Arc::new(rules());
        let cfg = CorrelatorConfig {
            max_open_per_rule: max_open,
            reorder_window_ns: 300_000_000,
            max_late_per_rule: 4,
        };
        let mut indexed = Correlator::new(rules.clone(), cfg);
        let mut general = Correlator::unindexed(rules, cfg);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for e in events {
            if arc {
                let e = Arc::new(e);
                indexed.process_arc(&e, &mut a);
                general.process_arc(&e, &mut b);
            } else {
                indexed.process(&e, &mut a);
                general.process(&e, &mut b);
            }
            prop_assert_eq!(indexed.stats(), general.stats());
        }
        let json = |alerts: &[vigil_dsl::alert::Alert]| -> Vec<String> {
            alerts.iter().map(|a| serde_json::to_string(a).expect("alert json")).collect()
        };
        prop_assert_eq!(json(&a), json(&b));
    }
}

#[test]
fn the_generated_streams_raise_alerts() {
    // The agreement test means little if nothing ever matches.
    let rules = Arc::new(rules());
    let mut c = Correlator::new(rules, CorrelatorConfig::default());
    let mut alerts = Vec::new();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..20 {
        let events = proptest::collection::vec(event(), 300)
            .new_tree(&mut runner)
            .expect("a stream")
            .current();
        for e in &events {
            c.process(e, &mut alerts);
        }
    }
    let ids: std::collections::BTreeSet<&str> = alerts.iter().map(|a| a.rule.id.as_str()).collect();
    assert!(ids.len() >= 3, "{ids:?}");
    // The rules that give wildcard, list and `or` guards match too.
    for id in ["globs", "or-of-literals", "args-exact"] {
        assert!(ids.contains(id), "{id} never matched: {ids:?}");
    }
}

/// Elastic's public macOS rules (the fixtures of the e2e tests): the index
/// built from their guards marks every stage that the general path would
/// evaluate to a match.
#[test]
fn elastic_rules_indexed_agree_with_the_general_path() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/elastic-rules");
    let mut files = Vec::new();
    for folder in ["detection-rules", "protections-artifacts"] {
        let mut paths: Vec<_> = std::fs::read_dir(dir.join(folder))
            .expect("the fixtures")
            .map(|e| e.expect("an entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
            .collect();
        paths.sort();
        for p in paths {
            files.push(RuleFile {
                path: p.display().to_string(),
                text: std::fs::read_to_string(&p).expect("a rule file"),
                origin: Origin::User,
            });
        }
    }
    let out = load_rules(&files);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(out.rules.rules().len() >= 444);
    let rules = Arc::new(out.rules);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let cfg = CorrelatorConfig::default();
    let mut indexed = Correlator::new(rules.clone(), cfg);
    let mut general = Correlator::unindexed(rules.clone(), cfg);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let events = proptest::collection::vec(event(), 300)
            .new_tree(&mut runner)
            .expect("a stream")
            .current();
        for e in &events {
            for r in rules.rules() {
                for (_, f) in stage_filters(&r.query) {
                    assert!(
                        !f.matches(e) || Guard::of(f).admits(e),
                        "{} on {e:?}",
                        r.meta.id
                    );
                }
            }
            indexed.process(e, &mut a);
            general.process(e, &mut b);
        }
    }
    assert_eq!(indexed.stats(), general.stats());
    assert_eq!(a.len(), b.len());
}
