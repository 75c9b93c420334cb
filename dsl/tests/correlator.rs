//! Sequences in event time: maxspan, join keys, `until`, `runs`, null keys,
//! out-of-order arrival, the bound on open chains, determinism, and the
//! `on_match` hooks that re-score, enrich or suppress alerts.

mod common;

use std::sync::Arc;

use vigil_dsl::alert::{Alert, Severity};
use vigil_dsl::correlate::Correlator;
use vigil_dsl::correlate::{CorrelatorConfig, Match, SequenceState};
use vigil_dsl::event::{Category, Endpoint, EventType, Process};
use vigil_dsl::query::{self, CompiledQuery, SequenceSpec};
use vigil_dsl::rules::{load_rules, Origin, RuleFile};
use vigil_dsl::Event;

const MS: i64 = 1_000_000;
const S: i64 = 1_000_000_000;

fn spec(q: &str) -> SequenceSpec {
    match query::compile(q).unwrap_or_else(|e| panic!("{q}: {e}")) {
        CompiledQuery::Sequence(s) => s,
        CompiledQuery::Event(_) => panic!("{q}: not a sequence"),
    }
}

/// A process event named `name` on `host` at `ts` ns.
fn ev(ts: i64, host: Option<&str>, name: &str) -> Event {
    let mut e = Event {
        timestamp_ns: ts,
        ..Event::default()
    };
    e.event.category = Category::Process;
    e.event.types = vec![EventType::Start];
    e.event.id = Some(format!("{name}@{ts}").into());
    e.host.id = host.map(Into::into);
    e.process.name = Some(name.into());
    e
}

fn run_with(q: &str, cfg: CorrelatorConfig, events: &[Event]) -> (Vec<Match>, SequenceState) {
    let spec = spec(q);
    let mut state = SequenceState::new(&spec);
    let mut out = Vec::new();
    for e in events {
        state.process(&spec, &cfg, e, &mut out);
    }
    (out, state)
}

fn run(q: &str, events: &[Event]) -> Vec<Match> {
    run_with(q, CorrelatorConfig::default(), events).0
}

/// The `event.id`s of each match.
fn ids(matches: &[Match]) -> Vec<Vec<String>> {
    matches
        .iter()
        .map(|m| {
            m.events
                .iter()
                .map(|e| e.event.id.as_deref().unwrap().to_string())
                .collect()
        })
        .collect()
}

const AB: &str = r#"sequence by host.id with maxspan=10s
    [process where process.name == "a"]
    [process where process.name == "b"]"#;

#[test]
fn a_two_stage_sequence_completes_with_its_events_and_key() {
    let m = run(
        AB,
        &[
            ev(0, Some("h1"), "a"),
            ev(S, Some("h1"), "x"),
            ev(2 * S, Some("h1"), "b"),
        ],
    );
    assert_eq!(ids(&m), [["a@0", "b@2000000000"]]);
    assert_eq!(m[0].key, ["h1"]);
    // b before any a: nothing.
    assert!(run(AB, &[ev(0, Some("h1"), "b")]).is_empty());
}

#[test]
fn maxspan_is_measured_in_event_time() {
    let base = 1_000 * S; // 1970: wall-clock time plays no part.
    let exactly = run(
        AB,
        &[
            ev(base, Some("h1"), "a"),
            ev(base + 10 * S, Some("h1"), "b"),
        ],
    );
    assert_eq!(exactly.len(), 1, "a gap of exactly maxspan still joins");
    let over = run(
        AB,
        &[
            ev(base, Some("h1"), "a"),
            ev(base + 10 * S + 1, Some("h1"), "b"),
        ],
    );
    assert!(over.is_empty(), "one nanosecond over maxspan does not join");

    // Once event time passes maxspan (plus the reorder grace), the partial is
    // expired and counted; a later `a` starts afresh and can still complete.
    let (m, state) = run_with(
        AB,
        CorrelatorConfig::default(),
        &[
            ev(base, Some("h1"), "a"),
            ev(base + 30 * S, Some("h2"), "x"),
            ev(base + 31 * S, Some("h1"), "a"),
            ev(base + 32 * S, Some("h1"), "b"),
        ],
    );
    assert_eq!(
        ids(&m),
        [[
            format!("a@{}", base + 31 * S),
            format!("b@{}", base + 32 * S)
        ]]
    );
    let stats = state.stats();
    assert_eq!(stats.expired, 1);
    assert_eq!(stats.completed, 1);
    assert_eq!(stats.open, 0);
}

#[test]
fn a_later_first_stage_replaces_the_waiting_one() {
    // EQL keeps one partial per key and stage; the newest `a` wins.
    let m = run(
        AB,
        &[
            ev(0, Some("h1"), "a"),
            ev(S, Some("h1"), "a"),
            ev(2 * S, Some("h1"), "b"),
        ],
    );
    assert_eq!(ids(&m), [["a@1000000000", "b@2000000000"]]);
}

#[test]
fn join_keys_per_stage_and_per_sequence() {
    let q = r#"sequence by host.id
        [process where process.name == "parent"] by process.pid
        [process where process.name == "child"] by process.parent.pid"#;
    let parent = |ts, host, pid| {
        let mut e = ev(ts, Some(host), "parent");
        e.process.pid = Some(pid);
        e
    };
    let child = |ts, host, ppid| {
        let mut e = ev(ts, Some(host), "child");
        e.process.parent = Some(Arc::new(Process {
            pid: Some(ppid),
            ..Process::default()
        }));
        e
    };
    let m = run(
        q,
        &[
            parent(0, "h1", 10),
            child(S, "h1", 11),
            child(2 * S, "h2", 10),
            child(3 * S, "h1", 10),
        ],
    );
    assert_eq!(ids(&m), [["parent@0", "child@3000000000"]]);
    assert_eq!(m[0].key, ["h1", "10"]);

    // The alert names the key fields after the first stage.
    let rules = load(&format!("rule(#{{ id: \"pc\", query: `{q}` }});"));
    let alerts = correlate(
        &rules,
        CorrelatorConfig::default(),
        &[parent(0, "h1", 10), child(S, "h1", 10)],
    );
    assert_eq!(alerts.len(), 1);
    let key: Vec<(&str, &str)> = alerts[0]
        .join_key
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(key, [("host.id", "h1"), ("process.pid", "10")]);
}

#[test]
fn until_cancels_the_open_sequence_for_its_key_only() {
    let q = r#"sequence by host.id
        [process where process.name == "a"]
        [process where process.name == "b"]
        until [process where process.name == "stop"]"#;
    assert!(run(
        q,
        &[
            ev(0, Some("h1"), "a"),
            ev(S, Some("h1"), "stop"),
            ev(2 * S, Some("h1"), "b")
        ]
    )
    .is_empty());
    assert_eq!(
        run(
            q,
            &[
                ev(0, Some("h1"), "a"),
                ev(S, Some("h2"), "stop"),
                ev(2 * S, Some("h1"), "b")
            ]
        )
        .len(),
        1
    );
    // A new `a` after the stop starts again.
    let m = run(
        q,
        &[
            ev(0, Some("h1"), "a"),
            ev(S, Some("h1"), "stop"),
            ev(2 * S, Some("h1"), "a"),
            ev(3 * S, Some("h1"), "b"),
        ],
    );
    assert_eq!(ids(&m), [["a@2000000000", "b@3000000000"]]);
}

#[test]
fn runs_needs_that_many_distinct_events() {
    let q =
        r#"sequence by host.id with maxspan=1m [process where process.name == "x"] with runs=3"#;
    let two = run(q, &[ev(0, Some("h1"), "x"), ev(S, Some("h1"), "x")]);
    assert!(
        two.is_empty(),
        "two events completed a runs=3 sequence: {:?}",
        ids(&two)
    );
    let three = run(
        q,
        &[
            ev(0, Some("h1"), "x"),
            ev(S, Some("h1"), "x"),
            ev(2 * S, Some("h1"), "x"),
        ],
    );
    assert_eq!(ids(&three), [["x@0", "x@1000000000", "x@2000000000"]]);
    // Different keys do not add up.
    let mixed = run(
        q,
        &[
            ev(0, Some("h1"), "x"),
            ev(S, Some("h2"), "x"),
            ev(2 * S, Some("h1"), "x"),
        ],
    );
    assert!(mixed.is_empty(), "{:?}", ids(&mixed));

    let q = r#"sequence by host.id [process where process.name == "a"] with runs=2 [process where process.name == "b"]"#;
    let m = run(
        q,
        &[
            ev(0, Some("h1"), "a"),
            ev(S, Some("h1"), "b"),
            ev(2 * S, Some("h1"), "a"),
            ev(3 * S, Some("h1"), "b"),
        ],
    );
    assert_eq!(ids(&m), [["a@0", "a@2000000000", "b@3000000000"]]);
}

#[test]
fn one_event_never_fills_two_stages() {
    // Both stages accept any process event: a single event must not complete.
    let q = r#"sequence by host.id [process where true] [process where true]"#;
    assert!(run(q, &[ev(0, Some("h1"), "x")]).is_empty());
    let m = run(q, &[ev(0, Some("h1"), "x"), ev(S, Some("h1"), "y")]);
    assert_eq!(ids(&m), [["x@0", "y@1000000000"]]);
    // Same timestamp, two distinct events: one match, in arrival order.
    let m = run(q, &[ev(5, Some("h1"), "x"), ev(5, Some("h1"), "y")]);
    assert_eq!(ids(&m), [["x@5", "y@5"]]);

    // `runs` with every event at the same instant.
    let q = r#"sequence by host.id [process where true] with runs=3"#;
    assert!(run(q, &[ev(5, Some("h1"), "x"), ev(5, Some("h1"), "y")]).is_empty());
    let m = run(
        q,
        &[
            ev(5, Some("h1"), "x"),
            ev(5, Some("h1"), "y"),
            ev(5, Some("h1"), "z"),
        ],
    );
    assert_eq!(ids(&m), [["x@5", "y@5", "z@5"]]);
}

#[test]
fn a_null_join_key_never_joins() {
    assert!(run(AB, &[ev(0, None, "a"), ev(S, None, "b")]).is_empty());
    assert!(run(AB, &[ev(0, Some("h1"), "a"), ev(S, None, "b")]).is_empty());
    assert!(run(AB, &[ev(0, None, "a"), ev(S, Some("h1"), "b")]).is_empty());
    // An empty string is a value, not null.
    assert_eq!(
        run(AB, &[ev(0, Some(""), "a"), ev(S, Some(""), "b")]).len(),
        1
    );
    // A `?field` unknown to the schema is always null: such a sequence never fires.
    let q = r#"sequence by ?no.such.field [process where true] [process where true]"#;
    assert!(run(q, &[ev(0, Some("h1"), "a"), ev(S, Some("h1"), "b")]).is_empty());
}

#[test]
fn an_out_of_order_pair_within_the_reorder_window_still_completes() {
    // No maxspan, so only the reorder window decides.
    let q = r#"sequence by host.id [process where process.name == "a"] [process where process.name == "b"]"#;
    let t = 100 * S;
    // b arrives first, a (500 ms earlier in event time) right after.
    let m = run(
        q,
        &[ev(t + 500 * MS, Some("h1"), "b"), ev(t, Some("h1"), "a")],
    );
    assert_eq!(ids(&m), [[format!("a@{t}"), format!("b@{}", t + 500 * MS)]]);

    // Other traffic moves event time on, but by less than the window past b.
    let m = run(
        q,
        &[
            ev(t + 500 * MS, Some("h1"), "b"),
            ev(t + 2_400 * MS, Some("h2"), "x"),
            ev(t, Some("h1"), "a"),
        ],
    );
    assert_eq!(m.len(), 1);

    // Event time moved on more than the 2 s window past b: b is gone.
    let m = run(
        q,
        &[
            ev(t + 500 * MS, Some("h1"), "b"),
            ev(t + 2_600 * MS, Some("h2"), "x"),
            ev(t, Some("h1"), "a"),
        ],
    );
    assert!(m.is_empty(), "{:?}", ids(&m));

    // With maxspan the window closes at first + maxspan + 2 s.
    let m = run(
        AB,
        &[
            ev(t + 500 * MS, Some("h1"), "b"),
            ev(t + 20 * S, Some("h2"), "x"),
            ev(t, Some("h1"), "a"),
        ],
    );
    assert!(m.is_empty(), "{:?}", ids(&m));

    // A window of 0 disables reordering.
    let no_reorder = CorrelatorConfig {
        reorder_window_ns: 0,
        ..CorrelatorConfig::default()
    };
    let (m, _) = run_with(
        q,
        no_reorder,
        &[ev(t + 500 * MS, Some("h1"), "b"), ev(t, Some("h1"), "a")],
    );
    assert!(m.is_empty());
    // And the held event is used once only.
    let m = run(
        q,
        &[
            ev(t + 500 * MS, Some("h1"), "b"),
            ev(t, Some("h1"), "a"),
            ev(t + 100 * MS, Some("h1"), "a"),
        ],
    );
    assert_eq!(m.len(), 1, "{:?}", ids(&m));
}

#[test]
fn three_stages_out_of_order() {
    let q = r#"sequence by host.id with maxspan=30s
        [process where process.name == "a"]
        [process where process.name == "b"]
        [process where process.name == "c"]"#;
    // c, then b, then a, each within the window: they chain up on `a`.
    let m = run(
        q,
        &[
            ev(1_200 * MS, Some("h1"), "c"),
            ev(1_100 * MS, Some("h1"), "b"),
            ev(1_000 * MS, Some("h1"), "a"),
        ],
    );
    assert_eq!(ids(&m), [["a@1000000000", "b@1100000000", "c@1200000000"]]);
}

#[test]
fn open_chains_are_bounded_and_the_oldest_are_evicted_first() {
    let cfg = CorrelatorConfig {
        max_open_per_rule: 16,
        ..CorrelatorConfig::default()
    };
    let q = r#"sequence by host.id [process where process.name == "a"] [process where process.name == "b"]"#;
    let spec = spec(q);
    let mut state = SequenceState::new(&spec);
    let mut out = Vec::new();
    let n = 100_000;
    let mut max_open = 0;
    for i in 0..n {
        state.process(
            &spec,
            &cfg,
            &ev(i * MS, Some(&format!("k{i}")), "a"),
            &mut out,
        );
        max_open = max_open.max(state.stats().open);
    }
    assert!(out.is_empty());
    assert_eq!(max_open, 16);
    let stats = state.stats();
    assert_eq!(stats.open, 16);
    assert_eq!(stats.evicted, (n - 16) as u64);
    // The survivors are the newest keys.
    let t = n * MS;
    state.process(&spec, &cfg, &ev(t, Some("k0"), "b"), &mut out);
    state.process(
        &spec,
        &cfg,
        &ev(t, Some(&format!("k{}", n - 17)), "b"),
        &mut out,
    );
    assert!(out.is_empty(), "evicted chains completed: {:?}", ids(&out));
    state.process(
        &spec,
        &cfg,
        &ev(t, Some(&format!("k{}", n - 16)), "b"),
        &mut out,
    );
    state.process(
        &spec,
        &cfg,
        &ev(t, Some(&format!("k{}", n - 1)), "b"),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert_eq!(state.stats().completed, 2);
    assert_eq!(state.stats().open, 14);
}

#[test]
fn the_bound_holds_through_the_rule_correlator_too() {
    let rules = load(
        r#"rule(#{ id: "bounded", query: `sequence by process.entity_id [process where process.name == "a"] [process where process.name == "b"]` });"#,
    );
    let cfg = CorrelatorConfig {
        max_open_per_rule: 8,
        ..CorrelatorConfig::default()
    };
    let mut c = Correlator::new(rules, cfg);
    let mut alerts = Vec::new();
    for i in 0..10_000 {
        let mut e = ev(i * MS, Some("h1"), "a");
        e.process.entity_id = Some(i.to_string().into());
        c.process(&e, &mut alerts);
        assert!(c.stats()[0].sequence.open <= 8);
    }
    assert_eq!(c.stats()[0].sequence.evicted, 10_000 - 8);
    assert_eq!(c.events_seen(), 10_000);
}

// ---------------------------------------------------------------------------
// Through rule files

fn load(text: &str) -> Arc<vigil_dsl::rules::RuleSet> {
    let out = load_rules(&[RuleFile {
        path: "test.rhai".into(),
        text: text.into(),
        origin: Origin::User,
    }]);
    assert!(
        out.errors.is_empty(),
        "{:#?}",
        out.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
    );
    Arc::new(out.rules)
}

fn correlate(
    rules: &Arc<vigil_dsl::rules::RuleSet>,
    cfg: CorrelatorConfig,
    events: &[Event],
) -> Vec<Alert> {
    let mut c = Correlator::new(Arc::clone(rules), cfg);
    let mut alerts = Vec::new();
    for e in events {
        c.process(e, &mut alerts);
    }
    alerts
}

/// A reproducible, shuffled stream over a few hosts and names.
fn noisy_stream(n: usize, seed: u64) -> Vec<Event> {
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let names = ["a", "b", "c", "x"];
    let mut t = 1_000 * S;
    (0..n)
        .map(|_| {
            let r = next();
            t += (r % 700) as i64 * MS;
            // Some events arrive up to 1.5 s late.
            let late = if r % 5 == 0 {
                ((r >> 8) % 1_500) as i64 * MS
            } else {
                0
            };
            let mut e = ev(
                t - late,
                Some(&format!("h{}", (r >> 20) % 4)),
                names[((r >> 30) % 4) as usize],
            );
            if (r >> 40) % 3 == 0 {
                e.event.category = Category::Network;
                e.destination = Some(Endpoint {
                    ip: Some(
                        format!("10.0.{}.{}", (r >> 44) % 3, (r >> 48) % 250)
                            .parse()
                            .unwrap(),
                    ),
                    port: Some(443),
                });
            }
            e
        })
        .collect()
}

const MIXED_RULES: &str = r#"
rule(#{ id: "single", query: `process where process.name == "c"` });
rule(#{ id: "pair", query: `sequence by host.id with maxspan=5s [process where process.name == "a"] [process where process.name == "b"]` });
rule(#{ id: "egress", severity: "high",
        query: `sequence by host.id with maxspan=10s [process where process.name : ("a", "b")] [network where not cidrmatch(destination.ip, "10.0.0.0/24")]` });
rule(#{ id: "triple", query: `sequence by host.id with maxspan=20s [any where process.name == "x"] with runs=3` });
"#;

#[test]
fn the_same_input_gives_identical_alerts() {
    let rules = load(MIXED_RULES);
    let events = noisy_stream(3_000, 0x5eed);
    let first = correlate(&rules, CorrelatorConfig::default(), &events);
    let second = correlate(&rules, CorrelatorConfig::default(), &events);
    assert_eq!(first, second);
    for id in ["single", "pair", "egress", "triple"] {
        assert!(
            first.iter().any(|a| a.rule.id == id),
            "no {id} alert in {} alerts",
            first.len()
        );
    }
    // Ids are stable and distinct for distinct matches.
    let mut seen = std::collections::HashSet::new();
    for a in &first {
        assert_eq!(a.id.len(), 32);
        assert!(
            seen.insert(a.id.clone()),
            "duplicate id {} for {}",
            a.id,
            a.rule.id
        );
        assert_eq!(a.timestamp_ns, a.events.last().unwrap().timestamp_ns);
        assert_eq!(a.first_timestamp_ns, a.events[0].timestamp_ns);
    }
    // A fresh load of the same rules agrees too.
    assert_eq!(
        correlate(&load(MIXED_RULES), CorrelatorConfig::default(), &events),
        first
    );
    // A different stream gives different alerts.
    assert_ne!(
        correlate(&rules, CorrelatorConfig::default(), &noisy_stream(3_000, 7)),
        first
    );
}

// ---------------------------------------------------------------------------
// on_match hooks

const HOOKS: &str = r#"
import "lists" as lists;
let quiet = ["quiet"];

rule(#{
    id: "rescore",
    severity: "low",
    tags: ["base"],
    context: ["ancestry"],
    query: `process where process.name == "rescore"`,
    on_match: |alert| {
        alert.severity = "critical";
        alert.risk = 150;
        alert.analyst_note = "escalated";
        alert.parent_name = alert.events[0].process.parent.name;
        alert.add_tag("hooked");
        alert.context(["window:60s", "ancestry"]);
        alert
    },
});

rule(#{
    id: "suppress",
    query: `process where process.name in ("quiet", "loud", "falsy")`,
    on_match: |alert| {
        let name = alert.events[0].process.name;
        if name in quiet { return (); }
        if name == "falsy" { return false; }
        alert
    },
});

rule(#{
    id: "imports",
    query: `process where process.name == "imports"`,
    on_match: |alert| {
        alert.known_shell = alert.events[0].process.name in lists::shells;
        alert
    },
});

rule(#{
    id: "fails",
    severity: "medium",
    query: `process where process.name == "fails"`,
    on_match: |alert| { alert.severity = "high"; alert.no_such_method(); alert },
});

rule(#{
    id: "spins",
    query: `process where process.name == "spins"`,
    on_match: |alert| { loop { } },
});

rule(#{
    id: "wrong-type",
    query: `process where process.name == "wrong-type"`,
    on_match: |alert| 42,
});

fn describe(name) { `${name} (${helper_len(name)})` }
private fn helper_len(s) { s.len() }

rule(#{
    id: "helpers",
    query: `process where process.name == "helpers"`,
    on_match: |alert| { alert.described = describe(alert.events[0].process.name); alert },
});

rule(#{
    id: "seq-hook",
    query: `sequence by host.id [process where process.name == "s1"] [process where process.name == "s2"]`,
    on_match: |alert| { alert.host = alert.key["host.id"]; alert.n = alert.events.len(); alert },
});
"#;

fn hook_rules() -> Arc<vigil_dsl::rules::RuleSet> {
    let out = load_rules(&[
        RuleFile {
            path: "lists.lib.rhai".into(),
            text: r#"export const shells = ["imports", "zsh"];"#.into(),
            origin: Origin::User,
        },
        RuleFile {
            path: "hooks.rhai".into(),
            text: HOOKS.into(),
            origin: Origin::User,
        },
    ]);
    assert!(
        out.errors.is_empty(),
        "{:#?}",
        out.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
    );
    Arc::new(out.rules)
}

fn fire(rules: &Arc<vigil_dsl::rules::RuleSet>, e: Event) -> Vec<Alert> {
    correlate(rules, CorrelatorConfig::default(), &[e])
}

#[test]
fn a_hook_can_rescore_enrich_tag_and_ask_for_context() {
    let rules = hook_rules();
    let mut e = ev(S, Some("h1"), "rescore");
    e.process.parent = Some(Arc::new(Process {
        name: Some("Safari".into()),
        ..Process::default()
    }));
    let alerts = fire(&rules, e);
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(a.rule.severity, Severity::Critical);
    assert_eq!(a.rule.risk_score, 100, "risk is clamped to 0..=100");
    assert_eq!(a.rule.tags, ["base", "hooked"]);
    assert_eq!(
        a.context_requests,
        ["ancestry", "window:60s"],
        "no duplicates"
    );
    assert_eq!(a.enrichments["analyst_note"], "escalated");
    assert_eq!(a.enrichments["parent_name"], "Safari");
    assert!(!a.enrichments.contains_key("on_match_error"));
    // The fixed fields are not enrichments.
    for k in [
        "id", "rule_id", "key", "events", "severity", "risk", "tags", "context",
    ] {
        assert!(!a.enrichments.contains_key(k), "{k}");
    }
}

#[test]
fn a_hook_can_suppress_with_unit_or_false() {
    let rules = hook_rules();
    assert!(fire(&rules, ev(S, Some("h1"), "quiet")).is_empty());
    assert!(fire(&rules, ev(S, Some("h1"), "falsy")).is_empty());
    let loud = fire(&rules, ev(S, Some("h1"), "loud"));
    assert_eq!(loud.len(), 1);
    assert_eq!(loud[0].rule.id, "suppress");
}

#[test]
fn a_hook_can_use_imported_modules() {
    let alerts = fire(&hook_rules(), ev(S, Some("h1"), "imports"));
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0].enrichments.get("known_shell"),
        Some(&serde_json::Value::Bool(true)),
        "{:?}",
        alerts[0].enrichments
    );
}

#[test]
fn a_hook_can_call_functions_of_its_file() {
    let alerts = fire(&hook_rules(), ev(S, Some("h1"), "helpers"));
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0].enrichments.get("described"),
        Some(&serde_json::json!("helpers (7)")),
        "{:?}",
        alerts[0].enrichments
    );
}

#[test]
fn a_failing_hook_still_delivers_the_alert_unchanged_with_the_error() {
    let rules = hook_rules();
    for (name, needle) in [
        ("fails", "no_such_method"),
        ("spins", "too long"),
        ("wrong-type", "must return"),
    ] {
        let alerts = fire(&rules, ev(S, Some("h1"), name));
        assert_eq!(alerts.len(), 1, "{name}");
        let a = &alerts[0];
        let err = a
            .enrichments
            .get("on_match_error")
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("{name}: {a:?}"));
        assert!(err.contains(needle), "{name}: {err}");
        // Nothing the hook did before failing sticks.
        let rule = &rules
            .rules()
            .iter()
            .find(|r| r.meta.id == name)
            .unwrap()
            .meta;
        assert_eq!(a.rule, *rule, "{name}");
        assert_eq!(a.enrichments.len(), 1, "{name}: {:?}", a.enrichments);
    }
}

#[test]
fn a_hook_sees_the_join_key_and_all_events_of_a_sequence() {
    let alerts = correlate(
        &hook_rules(),
        CorrelatorConfig::default(),
        &[ev(S, Some("h9"), "s1"), ev(2 * S, Some("h9"), "s2")],
    );
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].enrichments["host"], "h9");
    assert_eq!(alerts[0].enrichments["n"], 2);
    assert_eq!(alerts[0].join_key["host.id"], "h9");
}

/// `[ ... ] as event0` and `event0.field` in later stages (Elastic Defend's
/// behaviour rules): a later stage is checked against the events of the
/// partial sequence it would join, so a near miss (the wrong file) waits
/// and the right event completes it. Also with events arriving out of
/// order (held, then checked when the partial exists).
#[test]
fn stage_aliases_read_earlier_events_of_the_same_sequence() {
    let q = r#"sequence by host.id with maxspan=1m
        [process where process.name == "curl"] as event0
        [process where process.name == "sh" and
           stringcontains~(event0.process.command_line, process.args)] as event1
        [process where process.name == "chmod" and process.pid == event1.process.pid]"#;
    let with = |mut e: Event, cmd: Option<&str>, args: &[&str], pid: u32| {
        e.process.command_line = cmd.map(Into::into);
        e.process.args = args.iter().map(|a| (*a).into()).collect();
        e.process.pid = Some(pid);
        e
    };
    let curl = with(
        ev(S, Some("h"), "curl"),
        Some("curl -o /tmp/PAYLOAD http://x"),
        &[],
        1,
    );
    let sh_other = with(ev(2 * S, Some("h"), "sh"), None, &["/tmp/other"], 2);
    let sh = with(ev(3 * S, Some("h"), "sh"), None, &["/tmp/payload"], 3);
    let chmod_other = with(ev(4 * S, Some("h"), "chmod"), None, &[], 99);
    let chmod = with(ev(5 * S, Some("h"), "chmod"), None, &[], 3);
    let events = [curl, sh_other, sh, chmod_other, chmod];
    let want = vec![vec![
        "curl@1000000000".to_string(),
        "sh@3000000000".to_string(),
        "chmod@5000000000".to_string(),
    ]];
    assert_eq!(ids(&run(q, &events)), want);
    // Near misses only: no alert.
    assert!(run(q, &events[..4]).is_empty());
    // The same events arriving in reverse order within the reorder window.
    let mut reversed = events.to_vec();
    reversed.reverse();
    assert_eq!(ids(&run(q, &reversed)), want);
    // An alias field vigil never records reads as null: no match, no error.
    let unknown = r#"sequence by host.id
        [process where process.name == "curl"] as event0
        [process where startswith~(process.executable, event0.Persistence.args)]"#;
    assert!(run(unknown, &events).is_empty());
}

#[test]
fn an_alias_names_one_stage_and_only_earlier_stages_read_it() {
    let e =
        query::compile(r#"sequence [process where true] as event0 [process where true] as event0"#)
            .unwrap_err();
    assert!(e.message.contains("names an earlier stage"), "{e}");
    // `event1` is not (yet) a stage in stage 0: a field nobody records.
    let (_, warnings) = query::compile_with_warnings(
        r#"sequence [process where event1.process.pid == 1] as event1 [process where process.pid == event1.process.pid]"#,
    )
    .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

/// `descendant of`, `child of` and `event of` (Elastic Defend's lineage):
/// answered from who started whom as the events tell it (entity ids), with
/// near misses from another tree.
#[test]
fn lineage_terms_follow_the_process_tree_the_events_describe() {
    let proc = |ts: i64, name: &str, id: &str, parent: Option<&str>| {
        let mut e = ev(ts * S, Some("h"), name);
        e.process.entity_id = Some(id.into());
        e.process.parent = parent.map(|p| {
            Arc::new(Process {
                entity_id: Some(p.into()),
                ..Process::default()
            })
        });
        e
    };
    let rules = |query: &str| {
        let text = format!("rule(#{{ id: \"r\", query: `{query}` }});");
        let out = load_rules(&[RuleFile {
            path: "r.rhai".into(),
            text,
            origin: Origin::User,
        }]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        Arc::new(out.rules)
    };
    let alerts_on = |query: &str, events: &[Event]| -> Vec<String> {
        let mut c = Correlator::new(rules(query), CorrelatorConfig::default());
        let mut u = Correlator::unindexed(rules(query), CorrelatorConfig::default());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for e in events {
            c.process(e, &mut a);
            u.process(e, &mut b);
        }
        let ids = |v: &[Alert]| -> Vec<String> {
            v.iter()
                .map(|a| {
                    a.events[0]
                        .process
                        .entity_id
                        .as_deref()
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        // The index and the general path agree.
        assert_eq!(ids(&a), ids(&b), "{query}");
        ids(&a)
    };
    let events = [
        proc(1, "Microsoft Word", "word", Some("launchd")),
        proc(2, "sh", "sh1", Some("word")),
        proc(3, "curl", "curl1", Some("sh1")),
        proc(4, "Terminal", "term", Some("launchd")),
        proc(5, "sh", "sh2", Some("term")),
        proc(6, "curl", "curl2", Some("sh2")),
        proc(7, "curl", "curl3", Some("word")),
    ];
    let word = r#"process where process.name == "Microsoft Word""#;
    assert_eq!(
        alerts_on(
            &format!(r#"process where process.name == "curl" and descendant of [{word}]"#),
            &events
        ),
        ["curl1", "curl3"]
    );
    assert_eq!(
        alerts_on(
            &format!(r#"process where process.name == "curl" and child of [{word}]"#),
            &events
        ),
        ["curl3"]
    );
    assert_eq!(
        alerts_on(
            &format!(r#"process where process.name == "curl" and not descendant of [{word}]"#),
            &events
        ),
        ["curl2"]
    );
    assert_eq!(
        alerts_on(
            r#"process where process.name == "sh" and event of [process where process.name == "sh" and process.entity_id == "sh2"]"#,
            &events
        ),
        ["sh2"]
    );
}

/// A hook whose few steps are each slow (searching a 64 KiB string) stays
/// under the operation limit but not under the time budget: it is stopped,
/// the alert goes out saying so, and after a few overruns the hook is not
/// run again (issue 25, item 1: it used to stall the agent for 32 s per
/// alert).
#[test]
fn a_slow_hook_is_stopped_by_its_time_budget_and_then_disabled() {
    let text = r#"
rule(#{
    id: "slow",
    query: `process where process.name == "slow"`,
    on_match: |alert| {
        let s = "a";
        for i in 0..16 { s += s; }
        let n = 0;
        for i in 0..100000 { n += s.index_of("zz"); }
        alert
    },
});
"#;
    let out = load_rules(&[RuleFile {
        path: "slow.rhai".into(),
        text: text.into(),
        origin: Origin::User,
    }]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let rules = Arc::new(out.rules);
    let errors: Vec<String> = (0..5)
        .map(|i| {
            let alerts = fire(&rules, ev(S + i, Some("h1"), "slow"));
            assert_eq!(alerts.len(), 1, "the alert still goes out");
            alerts[0].enrichments["on_match_error"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for e in &errors[..3] {
        assert!(e.contains("time budget"), "{e}");
    }
    for e in &errors[3..] {
        assert!(e.contains("disabled"), "{e}");
    }
    // `vigil status` shows it per rule.
    assert_eq!(rules.rules()[0].hook_overruns(), 3);
}

/// Events held by a sequence keep their fields outside the schema: a later
/// stage reads the first one's (`event0.process.Ext...`), and the alert
/// carries them, whether events come borrowed (held encoded) or shared.
#[test]
fn held_events_keep_their_extras() {
    let rules = load_rules(&[RuleFile {
        path: "x.rhai".into(),
        text: r#"rule(#{ id: "x", query: `sequence by host.id with maxspan=10s
            [process where process.name == "a" and process.Ext.effective_parent.name != null] as event0
            [process where process.name == "b" and process.parent.name == event0.process.Ext.effective_parent.name]` });"#
            .into(),
        origin: Origin::User,
    }]);
    assert!(rules.errors.is_empty(), "{:?}", rules.errors);
    let rules = Arc::new(rules.rules);
    let mut first = ev(S, Some("h"), "a");
    first.extra.insert(
        "process.Ext.effective_parent.name",
        vigil_dsl::event::ExtraValue::Str("Slack".into()),
    );
    let mut second = ev(2 * S, Some("h"), "b");
    second.process.parent = Some(Arc::new(Process {
        name: Some("Slack".into()),
        ..Process::default()
    }));
    for shared in [false, true] {
        let mut c = Correlator::new(Arc::clone(&rules), CorrelatorConfig::default());
        let mut alerts = Vec::new();
        for e in [&first, &second] {
            if shared {
                c.process_arc(&Arc::new(e.clone()), &mut alerts);
            } else {
                c.process(e, &mut alerts);
            }
        }
        assert_eq!(alerts.len(), 1, "shared: {shared}");
        assert_eq!(alerts[0].events[0].extra, first.extra, "shared: {shared}");
    }
}

/// A rule file that declares rules in a loop cannot flood the agent: the
/// set holds at most `MAX_RULES` (the rest are an error naming the file),
/// and one event raises at most `MAX_ALERTS_PER_EVENT` alerts, the others
/// counted.
#[test]
fn rule_and_alert_floods_are_capped_and_counted() {
    use vigil_dsl::rules::limits::{MAX_ALERTS_PER_EVENT, MAX_RULES};
    let out = load_rules(&[RuleFile {
        path: "flood.rhai".into(),
        text: format!(
            "for i in 0..{} {{ rule(#{{ id: `r${{i}}`, query: `process where process.name == \"a\"` }}); }}",
            MAX_RULES + 250
        ),
        origin: Origin::User,
    }]);
    assert_eq!(out.rules.rules().len(), MAX_RULES);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    assert!(
        out.errors[0]
            .to_string()
            .contains("250 declared here are not loaded"),
        "{}",
        out.errors[0]
    );
    let mut c = Correlator::new(Arc::new(out.rules), CorrelatorConfig::default());
    let mut alerts = Vec::new();
    for ts in 0..3 {
        c.process(&ev(ts * S, Some("h"), "a"), &mut alerts);
    }
    assert_eq!(alerts.len(), 3 * MAX_ALERTS_PER_EVENT);
    assert_eq!(
        c.alerts_capped(),
        3 * (MAX_RULES - MAX_ALERTS_PER_EVENT) as u64
    );
}
