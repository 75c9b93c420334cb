//! SigmaHQ's macOS rules as their authors wrote them
//! (tests/fixtures/sigma, Detection Rule License 1.1, see SOURCE.md) load,
//! and Sigma rules match what they describe: a positive and a near miss
//! for each modifier and condition form, through the rule loader.

use std::path::Path;
use std::sync::Arc;

use vigil_dsl::correlate::{Correlator, CorrelatorConfig};
use vigil_dsl::event::{Category, EventType, File, Process};
use vigil_dsl::rules::{load_rules, Origin, RuleFile};
use vigil_dsl::Event;

fn sigma_files(dir: &Path, out: &mut Vec<RuleFile>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sigma_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yml") {
            out.push(RuleFile {
                path: p.display().to_string(),
                text: std::fs::read_to_string(&p).unwrap(),
                origin: Origin::User,
            });
        }
    }
}

#[test]
fn every_sigmahq_macos_rule_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sigma/macos");
    let mut files = Vec::new();
    sigma_files(&dir, &mut files);
    assert_eq!(files.len(), 69);
    let out = load_rules(&files);
    let errors: Vec<String> = out.errors.iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(out.rules.rules().len(), 69);
    // Each keeps its metadata.
    let r = out
        .rules
        .rules()
        .iter()
        .find(|r| r.meta.id == "1bc2e6c5-0885-472b-bed6-be5ea8eace55")
        .expect("the AppleScript rule");
    assert_eq!(r.meta.name, "MacOS Scripting Interpreter AppleScript");
    assert!(
        r.meta.mitre.contains(&"T1059.002".to_string()),
        "{:?}",
        r.meta.mitre
    );
    assert!(r.meta.mitre.contains(&"TA0002".to_string()));
    assert_eq!(r.meta.status.as_deref(), Some("test"));
    assert!(!r.meta.references.is_empty() && !r.meta.false_positives.is_empty());
}

fn exec(ts: i64, exe: &str, args: &[&str], parent: &str) -> Event {
    let mut e = Event {
        timestamp_ns: ts * 1_000_000_000,
        ..Event::default()
    };
    e.event.category = Category::Process;
    e.event.types = vec![EventType::Start];
    e.event.action = Some("exec".into());
    e.host.id = Some("h".into());
    e.process.executable = Some(exe.into());
    e.process.name = exe.rsplit('/').next().map(Into::into);
    e.process.args = args.iter().map(|a| (*a).into()).collect();
    e.process.command_line = (!args.is_empty()).then(|| args.join(" ").into());
    e.process.entity_id = Some(format!("p{ts}").into());
    e.process.pid = Some(ts as u32 + 1);
    e.process.parent = Some(Arc::new(Process {
        executable: Some(parent.into()),
        name: parent.rsplit('/').next().map(Into::into),
        ..Process::default()
    }));
    e
}

/// Which of `events` each rule of `yaml` files raises an alert on.
fn alerts(files: &[(&str, &str)], events: &[Event]) -> Vec<(String, i64)> {
    let files: Vec<RuleFile> = files
        .iter()
        .map(|(name, text)| RuleFile {
            path: (*name).into(),
            text: (*text).into(),
            origin: Origin::User,
        })
        .collect();
    let out = load_rules(&files);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let mut c = Correlator::new(Arc::new(out.rules), CorrelatorConfig::default());
    let mut alerts = Vec::new();
    for e in events {
        c.process(e, &mut alerts);
    }
    alerts
        .iter()
        .map(|a| (a.rule.id.clone(), a.timestamp_ns / 1_000_000_000))
        .collect()
}

const OSASCRIPT: &str = r#"
title: AppleScript with -e
id: osa
logsource:
    product: macos
    category: process_creation
detection:
    selection:
        Image|endswith: '/osascript'
        CommandLine|contains: ' -e '
    filter:
        ParentImage|endswith: '/opencode'
    condition: selection and not filter
level: high
"#;

#[test]
fn a_rule_matches_and_its_near_misses_do_not() {
    let events = [
        exec(
            1,
            "/usr/bin/osascript",
            &["osascript", "-e", "x"],
            "/bin/zsh",
        ),
        // Near misses: no ` -e `; another program; the filtered parent.
        exec(
            2,
            "/usr/bin/osascript",
            &["osascript", "script.scpt"],
            "/bin/zsh",
        ),
        exec(3, "/usr/bin/python3", &["python3", "-e", "x"], "/bin/zsh"),
        exec(
            4,
            "/usr/bin/osascript",
            &["osascript", "-e", "x"],
            "/usr/local/bin/opencode",
        ),
        // Case does not matter unless `cased`.
        exec(
            5,
            "/USR/BIN/OSASCRIPT",
            &["OSASCRIPT", "-E", "X"],
            "/bin/zsh",
        ),
    ];
    assert_eq!(
        alerts(&[("osa.yml", OSASCRIPT)], &events),
        [("osa".to_string(), 1), ("osa".to_string(), 5)]
    );
}

#[test]
fn correlations_are_sequences() {
    let base = r#"
title: curl
id: curl-run
name: curl_run
logsource:
    product: macos
    category: process_creation
detection:
    sel:
        Image|endswith: '/curl'
    condition: sel
"#;
    let ordered = r#"
title: osascript then curl
id: osa-curl
correlation:
    type: temporal_ordered
    rules:
        - osa
        - curl_run
    group-by:
        - host.id
    timespan: 10s
level: high
"#;
    let count = r#"
title: curl three times
id: curl-3
correlation:
    type: event_count
    rules: curl-run
    group-by:
        - host.id
    timespan: 1m
    condition:
        gte: 3
"#;
    let files = [
        ("osa.yml", OSASCRIPT),
        ("curl.yml", base),
        ("ordered.yml", ordered),
        ("count.yml", count),
    ];
    let events = [
        exec(1, "/usr/bin/curl", &["curl", "x"], "/bin/zsh"),
        exec(
            2,
            "/usr/bin/osascript",
            &["osascript", "-e", "x"],
            "/bin/zsh",
        ),
        exec(3, "/usr/bin/curl", &["curl", "y"], "/bin/zsh"),
        // Too late for the ordered pair (10 s), in time for the count.
        exec(30, "/usr/bin/curl", &["curl", "z"], "/bin/zsh"),
    ];
    let got = alerts(&files, &events);
    let of = |id: &str| {
        got.iter()
            .filter(|(r, _)| r == id)
            .map(|(_, t)| *t)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("osa-curl"), [3]);
    assert_eq!(of("curl-3"), [30]);
    // Rules a correlation names alert only through it (`generate`
    // defaults to false).
    assert!(of("curl-run").is_empty() && of("osa").is_empty(), "{got:?}");
}

#[test]
fn file_events_and_keywords() {
    let yaml = r#"
title: launch agent written
id: la
logsource:
    product: macos
    category: file_event
detection:
    sel:
        TargetFilename|contains: '/Library/LaunchAgents/'
        TargetFilename|endswith: '.plist'
    condition: sel
"#;
    let kw = r#"
title: keyword
id: kw
logsource:
    product: macos
    category: process_creation
detection:
    keywords:
        - 'with administrator privileges'
    condition: keywords
"#;
    let mut write = exec(1, "/bin/cp", &["cp"], "/bin/zsh");
    write.event.category = Category::File;
    write.event.types = vec![EventType::Creation];
    write.event.action = Some("create".into());
    write.file = Some(File::from_path("/Users/a/Library/LaunchAgents/x.plist"));
    let mut near = write.clone();
    near.timestamp_ns = 2_000_000_000;
    near.file = Some(File::from_path("/Users/a/Library/LaunchAgents/x.txt"));
    let admin = exec(
        3,
        "/usr/bin/osascript",
        &[
            "osascript",
            "-e",
            "do shell script \"id\" with administrator privileges",
        ],
        "/bin/zsh",
    );
    let got = alerts(&[("la.yml", yaml), ("kw.yml", kw)], &[write, near, admin]);
    assert_eq!(got, [("la".to_string(), 1), ("kw".to_string(), 3)]);
}

#[test]
fn errors_point_into_the_yaml() {
    let out = load_rules(&[RuleFile {
        path: "bad.yml".into(),
        text: "title: t\nid: b\nlogsource:\n    category: process_creation\ndetection:\n    sel:\n        Image|endwith: x\n    condition: sel\n".into(),
        origin: Origin::User,
    }]);
    assert_eq!(out.errors.len(), 1);
    let e = out.errors[0].to_string();
    assert!(e.starts_with("bad.yml:7:9: "), "{e}");
    assert!(e.contains("unknown modifier `endwith`"), "{e}");
}

/// One selection `key: value` on process_creation, against a command line
/// that should match and one that should not.
fn check_modifier(key: &str, value: &str, hit: &[&str], miss: &[&str]) {
    let yaml = format!(
        "title: m\nid: m\nlogsource:\n    product: macos\n    category: process_creation\ndetection:\n    sel:\n        {key}: {value}\n    condition: sel\n"
    );
    let events = [
        exec(1, "/usr/bin/tool", hit, "/bin/zsh"),
        exec(2, "/usr/bin/tool", miss, "/bin/zsh"),
    ];
    let got = alerts(&[("m.yml", yaml.as_str())], &events);
    assert_eq!(got, [("m".to_string(), 1)], "{key}: {value}");
}

#[test]
fn every_modifier_has_a_match_and_a_near_miss() {
    check_modifier(
        "CommandLine|contains",
        "'secret'",
        &["x", "my-SECRET-file"],
        &["x", "secre t"],
    );
    check_modifier(
        "CommandLine|startswith",
        "'curl '",
        &["curl", "-s"],
        &["xcurl", "-s"],
    );
    check_modifier(
        "CommandLine|endswith",
        "'.sh'",
        &["bash", "a.SH"],
        &["bash", "a.sh.txt"],
    );
    check_modifier(
        "CommandLine|contains|all",
        "['-s', '-k']",
        &["curl", "-s", "-k"],
        &["curl", "-s"],
    );
    check_modifier(
        "CommandLine",
        "'tool -x*'",
        &["tool", "-x1"],
        &["tool", "-y1"],
    );
    check_modifier("CommandLine", "'tool ?'", &["tool", "a"], &["tool", "ab"]);
    check_modifier(
        "CommandLine",
        "'tool a\\*'",
        &["tool", "a*"],
        &["tool", "ab"],
    );
    check_modifier(
        "CommandLine|cased",
        "'tool X'",
        &["tool", "X"],
        &["tool", "x"],
    );
    check_modifier(
        "CommandLine|re",
        "'\\d{3}-\\d{4}'",
        &["call", "555-1234"],
        &["call", "55-1234"],
    );
    check_modifier("CommandLine|re|i", "'ABC'", &["x", "abc"], &["x", "ab c"]);
    check_modifier(
        "CommandLine|re",
        "'^tool a.b$'",
        &["tool", "a b"],
        &["tool", "a\nb"],
    );
    check_modifier(
        "CommandLine|re|s",
        "'a.b'",
        &["tool", "a\nb"],
        &["tool", "ab"],
    );
    check_modifier(
        "CommandLine|re|m",
        "'^b$'",
        &["tool", "a\nb"],
        &["tool", "a b"],
    );
    check_modifier(
        "CommandLine|windash|contains",
        "' -enc '",
        &["pwsh", "/enc", "x"],
        &["pwsh", "enc", "x"],
    );
    check_modifier(
        "CommandLine|base64offset|contains",
        "'/bin/bash'",
        &["echo", "L2Jpbi9iYXNo"],
        &["echo", "L2Jpbi9iYXN"],
    );
    check_modifier(
        "CommandLine|base64|contains",
        "'id'",
        &["echo", "aWQ="],
        &["echo", "aWR="],
    );
    check_modifier(
        "CommandLine|utf16le|base64offset|contains",
        "'ls'",
        &["x", "bABzA"],
        &["x", "bABzB"],
    );
    check_modifier("CommandLine|exists", "true", &["x"], &[]);
    check_modifier("CommandLine|exists", "false", &[], &["x"]);
    check_modifier("ProcessId|lt", "3", &["x"], &["y"]);
    check_modifier("ProcessId|lte", "2", &["x"], &["y"]);
    check_modifier(
        "CommandLine|fieldref|contains",
        "ParentImage",
        &["run", "/bin/zsh", "-c"],
        &["run", "zsh"],
    );
    check_modifier("CommandLine", "null", &[], &["x"]);
    check_modifier("CommandLine", "['a b', 'c d']", &["c", "d"], &["c", "e"]);
}

#[test]
fn every_condition_form_has_a_match_and_a_near_miss() {
    let rule = |cond: &str| {
        format!(
            "title: c\nid: c\nlogsource:\n    product: macos\n    category: process_creation\ndetection:\n    sel_a:\n        CommandLine|contains: 'alpha'\n    sel_b:\n        CommandLine|contains: 'beta'\n    filter:\n        CommandLine|contains: 'gamma'\n    condition: {cond}\n"
        )
    };
    let run = |cond: &str, line: &[&str]| {
        let yaml = rule(cond);
        !alerts(
            &[("c.yml", yaml.as_str())],
            &[exec(1, "/usr/bin/t", line, "/bin/zsh")],
        )
        .is_empty()
    };
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("sel_a and sel_b", &["alpha", "beta"], &["alpha"]),
        ("sel_a or sel_b", &["beta"], &["delta"]),
        ("sel_a and not filter", &["alpha"], &["alpha", "gamma"]),
        (
            "(sel_a or sel_b) and not filter",
            &["beta"],
            &["beta", "gamma"],
        ),
        ("1 of sel_*", &["beta"], &["gamma"]),
        ("all of sel_*", &["alpha", "beta"], &["beta"]),
        ("1 of them", &["gamma"], &["delta"]),
        (
            "all of them",
            &["alpha", "beta", "gamma"],
            &["alpha", "beta"],
        ),
        ("not 1 of sel_*", &["gamma"], &["alpha"]),
    ];
    for (cond, hit, miss) in cases {
        assert!(run(cond, hit), "{cond} on {hit:?}");
        assert!(!run(cond, miss), "{cond} on {miss:?}");
    }
}

#[test]
fn network_connections_and_cidr() {
    let yaml = "title: n\nid: n\nlogsource:\n    product: macos\n    category: network_connection\ndetection:\n    sel:\n        DestinationIp|cidr: '10.0.0.0/8'\n        DestinationPort: 4444\n    condition: sel\n";
    let net = |ts: i64, ip: &str, port: u16| {
        let mut e = exec(ts, "/usr/bin/nc", &["nc"], "/bin/zsh");
        e.event.category = Category::Network;
        e.event.types = vec![EventType::Connection, EventType::Start];
        e.destination = Some(vigil_dsl::event::Endpoint {
            ip: Some(ip.parse().unwrap()),
            port: Some(port),
        });
        e
    };
    let got = alerts(
        &[("n.yml", yaml)],
        &[
            net(1, "10.1.2.3", 4444),
            net(2, "11.1.2.3", 4444),
            net(3, "10.1.2.3", 4445),
        ],
    );
    assert_eq!(got, [("n".to_string(), 1)]);
}

#[test]
fn temporal_in_any_order_and_value_count() {
    let a = "title: a\nid: a\nname: rule_a\nlogsource:\n    product: macos\n    category: process_creation\ndetection:\n    sel:\n        Image|endswith: '/a'\n    condition: sel\n";
    let b = "title: b\nid: b\nname: rule_b\nlogsource:\n    product: macos\n    category: process_creation\ndetection:\n    sel:\n        Image|endswith: '/b'\n    condition: sel\n";
    let temporal = "title: a and b\nid: ab\ncorrelation:\n    type: temporal\n    rules: [rule_a, rule_b]\n    group-by: [host.id]\n    timespan: 10s\n";
    let values = "title: three parents\nid: v3\ncorrelation:\n    type: value_count\n    rules: [rule_a]\n    group-by: [host.id]\n    timespan: 1m\n    condition:\n        gte: 3\n        field: ParentImage\n";
    let files = [
        ("a.yml", a),
        ("b.yml", b),
        ("t.yml", temporal),
        ("v.yml", values),
    ];
    // b before a: the second order; then a from three parents, one twice.
    let events = [
        exec(1, "/x/b", &["b"], "/p/1"),
        exec(2, "/x/a", &["a"], "/p/1"),
        exec(3, "/x/a", &["a"], "/p/1"),
        exec(4, "/x/a", &["a"], "/p/2"),
        exec(30, "/x/a", &["a"], "/p/3"),
    ];
    let got = alerts(&files, &events);
    let of = |id: &str| {
        got.iter()
            .filter(|(r, _)| r == id)
            .map(|(_, t)| *t)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("ab"), Vec::<i64>::new(), "{got:?}");
    assert_eq!(of("ab/order-2"), [2], "{got:?}");
    // The third distinct parent arrives at 30 s, within the minute.
    assert_eq!(of("v3"), [30], "{got:?}");
    // Two values only: no alert.
    let got = alerts(&files, &events[..4]);
    assert!(!got.iter().any(|(r, _)| r == "v3"), "{got:?}");
}

/// The specification's example form: a rule and its correlation in one
/// file, `---` between them; `generate: true` lets the rule alert too.
#[test]
fn a_rule_and_its_correlation_share_a_file() {
    let yaml = "title: curl\nid: c1\nname: curl_run\nlogsource:\n    product: macos\n    category: process_creation\ndetection:\n    sel:\n        Image|endswith: '/curl'\n    condition: sel\n---\ntitle: two curls\nid: c2\ncorrelation:\n    type: event_count\n    rules: curl_run\n    generate: true\n    group-by: [host.id]\n    timespan: 1m\n    condition:\n        gte: 2\n---\n";
    let events = [
        exec(1, "/usr/bin/curl", &["curl"], "/bin/zsh"),
        exec(2, "/usr/bin/curl", &["curl"], "/bin/zsh"),
    ];
    let got = alerts(&[("both.yml", yaml)], &events);
    assert_eq!(
        got,
        [
            ("c1".to_string(), 1),
            ("c1".to_string(), 2),
            ("c2".to_string(), 2)
        ]
    );
}
