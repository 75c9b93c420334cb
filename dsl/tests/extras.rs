//! Fields outside the schema ("extras"): what a replayed ECS document
//! carries beyond vigil's typed fields stays readable by rules, through the
//! spool's binary records, and in the JSON an alert writes out.

mod common;

use vigil_dsl::codec::{decode_event, encode_event, BlockDecoder, EventEncoder};
use vigil_dsl::ecs::{parse_ecs_json, to_ecs_json};
use vigil_dsl::query::{self, CompiledQuery, EventFilter};
use vigil_dsl::Event;

const T: Option<bool> = Some(true);
const F: Option<bool> = Some(false);
const N: Option<bool> = None;

fn filter(q: &str) -> EventFilter {
    match query::compile(q) {
        Ok(CompiledQuery::Event(f)) => f,
        other => panic!("{q}: {other:?}"),
    }
}

/// An Elastic Defend process event (trimmed from the shape of the public
/// samples): the responsible process, signing facts with `exists` and no
/// signing id, environment variables, an array of signer objects.
const DEFEND: &str = r#"{
  "@timestamp": "2024-05-01T10:00:00.000Z",
  "event": {"category": ["process"], "type": ["start"], "action": "exec", "dataset": "endpoint.events.process", "risk_score": 47.5},
  "host": {"name": "mac-1", "os": {"type": "macos"}},
  "process": {
    "pid": 812, "name": "osascript", "executable": "/usr/bin/osascript",
    "args": ["osascript", "-e", "display dialog"],
    "code_signature": {"exists": true, "trusted": true, "status": "trusted"},
    "Ext": {"effective_parent": {"executable": "/Applications/Slack.app/Contents/MacOS/Slack", "name": "Slack", "pid": 77},
            "relative_file_creation_time": 120},
    "env_vars": ["DYLD_INSERT_LIBRARIES=/tmp/evil.dylib", "HOME=/Users/a"],
    "parent": {"name": "launchd", "pid": 1, "code_signature": {"exists": false}}
  },
  "dll": [{"name": "libA.dylib", "code_signature": {"trusted": false}}, {"name": "libB.dylib", "code_signature": {"trusted": true}}],
  "destination": {"address": "10.2.3.4"},
  "user": {"id": "501", "name": "a"}
}"#;

fn defend() -> Event {
    parse_ecs_json(&DEFEND.replace('\n', " ")).unwrap()
}

/// Each query on the document as parsed, as decoded from a standalone
/// record, and as a view of a record in a block; all three agree.
#[test]
fn rules_read_extras_the_same_on_events_records_and_views() {
    let e = defend();
    let record = encode_event(&e).unwrap();
    assert_eq!(record[0], 3, "an event with extras is a version-3 record");
    let decoded = decode_event(&record).unwrap();
    assert_eq!(decoded, e);
    // In a block, after another event.
    let mut enc = EventEncoder::new();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    enc.encode_into(&common::proc_start(1, "zsh"), &mut first)
        .unwrap();
    enc.encode_into(&e, &mut second).unwrap();
    let mut dec = BlockDecoder::new();
    dec.decode_view(&first).unwrap();
    let view = dec.decode_view(&second).unwrap();
    assert_eq!(view.to_event(), e);

    let table: &[(&str, Option<bool>)] = &[
        // The document's own `exists`, with no signing id to derive it from.
        (r#"process where process.code_signature.exists == true"#, T),
        (
            r#"process where process.parent.code_signature.exists == false"#,
            T,
        ),
        (
            r#"process where not process.parent.code_signature.exists"#,
            T,
        ),
        (
            r#"process where process.code_signature.status : "trusted""#,
            T,
        ),
        (
            r#"process where process.Ext.effective_parent.executable : "/Applications/*""#,
            T,
        ),
        (
            r#"process where process.Ext.effective_parent.name == "Slac""#,
            F,
        ),
        (r#"process where process.Ext.effective_parent.pid == 77"#, T),
        (r#"process where process.Ext.effective_parent.pid > 100"#, F),
        (
            r#"process where process.Ext.relative_file_creation_time <= 500"#,
            T,
        ),
        (
            r#"process where process.env_vars : "DYLD_INSERT_LIBRARIES=*""#,
            T,
        ),
        (r#"process where process.env_vars : "LD_PRELOAD=*""#, F),
        (
            r#"process where event.dataset == "endpoint.events.process""#,
            T,
        ),
        (r#"process where event.risk_score == "47.5""#, T),
        // An array of objects: each leaf is a multi-valued field.
        (r#"process where dll.name : "libB.dylib""#, T),
        (r#"process where dll.code_signature.trusted == false"#, T),
        (r#"process where dll.name in ("libA.dylib", 3)"#, T),
        (
            r#"process where cidrmatch(destination.address, "10.0.0.0/8")"#,
            T,
        ),
        (
            r#"process where cidrmatch(destination.address, "192.168.0.0/16")"#,
            F,
        ),
        (
            r#"process where startswith~(process.Ext.effective_parent.executable, "/applications")"#,
            T,
        ),
        (r#"process where length(process.env_vars) == 2"#, T),
        // Absent extras are null: `==` is null, `!=` and `not` hold.
        (r#"process where process.Ext.nothing == "x""#, N),
        (r#"process where process.Ext.nothing != "x""#, T),
        (r#"process where process.Ext.nothing == null"#, T),
    ];
    for (q, want) in table {
        let f = filter(q);
        assert_eq!(f.condition.eval(&e), *want, "event: {q}");
        assert_eq!(f.condition.eval(&decoded), *want, "decoded: {q}");
        assert_eq!(f.condition.eval(&view), *want, "view: {q}");
    }
}

/// vigil's own events have no extras: a field outside the schema is null
/// there, and `code_signature.exists` still derives from the signing id.
#[test]
fn own_events_derive_exists_and_lack_extras() {
    let mut e = common::proc_start(1, "curl");
    assert_eq!(
        filter("process where process.code_signature.exists")
            .condition
            .eval(&e),
        F
    );
    e.process.code_signature.signing_id = Some("com.apple.curl".into());
    assert_eq!(
        filter("process where process.code_signature.exists")
            .condition
            .eval(&e),
        T
    );
    assert_eq!(
        filter(r#"process where dll.name == "a""#)
            .condition
            .eval(&e),
        N
    );
}

/// Written out (alerts, `--format ecs`), the extras are back at their
/// paths, beside the typed fields, and read back the same.
#[test]
fn extras_survive_the_json_an_alert_carries() {
    let e = defend();
    let json = to_ecs_json(&e);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["process"]["Ext"]["effective_parent"]["name"], "Slack");
    assert_eq!(doc["process"]["name"], "osascript");
    assert_eq!(doc["process"]["code_signature"]["exists"], true);
    assert_eq!(doc["event"]["risk_score"], 47.5);
    assert_eq!(
        doc["dll"]["name"],
        serde_json::json!(["libA.dylib", "libB.dylib"])
    );
    assert_eq!(parse_ecs_json(&json).unwrap(), e);
    // And through serde, as an alert's context serializes its events.
    let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
    assert_eq!(back, e);
}
