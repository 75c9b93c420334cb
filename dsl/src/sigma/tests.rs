//! The translation, value by value and modifier by modifier.

use super::*;

fn q(yaml: &str) -> String {
    translate(yaml, &Taxonomy::shipped())
        .unwrap_or_else(|e| panic!("{e:?}"))
        .rule
        .query
}

fn rule(detection: &str) -> String {
    q(&format!(
        "title: t\nid: x\nlogsource:\n  product: macos\n  category: process_creation\ndetection:\n{detection}"
    ))
}

#[test]
fn modifiers_become_eql() {
    let cases = [
        ("  sel:\n    Image|endswith: '/curl'\n  condition: sel", r#"process.executable : "*/curl""#),
        ("  sel:\n    CommandLine|contains|all:\n      - ' -e '\n      - 'x'\n  condition: sel", r#"(process.command_line : "* -e *" and process.command_line : "*x*")"#),
        ("  sel:\n    Image|startswith: '/tmp/'\n  condition: sel", r#"process.executable : "/tmp/*""#),
        ("  sel:\n    Image: '/bin/sh'\n  condition: sel", r#"process.executable in~ ("/bin/sh")"#),
        ("  sel:\n    Image|cased: '/bin/sh'\n  condition: sel", r#"process.executable == "/bin/sh""#),
        ("  sel:\n    Image|cased|endswith: '/Sh'\n  condition: sel", r#"process.executable like "*/Sh""#),
        ("  sel:\n    Image: 'a\\*b*'\n  condition: sel", r#"process.executable regex~ "a\\*b.*""#),
        ("  sel:\n    Image: null\n  condition: sel", "process.executable == null"),
        ("  sel:\n    ProcessId|gt: 100\n  condition: sel", "process.pid > 100"),
        ("  sel:\n    ProcessId: 100\n  condition: sel", "process.pid == 100"),
        ("  sel:\n    CommandLine|exists: true\n  condition: sel", "process.command_line != null"),
        ("  sel:\n    Image|fieldref: ParentImage\n  condition: sel", "process.executable == process.parent.executable"),
        ("  sel:\n    CommandLine|fieldref|contains: ParentImage\n  condition: sel", "stringcontains~(process.command_line, process.parent.executable)"),
        ("  sel:\n    CommandLine|re|i: 'osascript.*-e'\n  condition: sel", r#"process.command_line regex~ "(?s:.*)(?-s:osascript.*-e)(?s:.*)""#),
        ("  sel:\n    CommandLine|base64: 'ab'\n  condition: sel", r#"process.command_line in~ ("YWI=")"#),
        ("  sel:\n    CommandLine|windash|contains: ' -c '\n  condition: sel", "(process.command_line : \"* -c *\" or process.command_line : \"* /c *\" or process.command_line : \"* \u{2013}c *\" or process.command_line : \"* \u{2014}c *\" or process.command_line : \"* \u{2015}c *\")"),
        ("  - 'evil'\n  - 'bad'\n", ""),
    ];
    for (det, want) in cases.iter().take(cases.len() - 1) {
        let got = rule(det);
        assert!(
            got.ends_with(&format!("and ({want})")),
            "{det}\n got: {got}\nwant: {want}"
        );
    }
}

#[test]
fn base64offset_gives_the_three_alignments() {
    // pySigma's values for "/bin/bash".
    assert_eq!(
        base64_offsets(b"/bin/bash"),
        ["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]
    );
}

#[test]
fn conditions_and_their_errors() {
    let det = "  sel_a:\n    Image: a\n  sel_b:\n    Image: b\n  filter:\n    User: root\n";
    let got = rule(&format!("{det}  condition: 1 of sel_* and not filter"));
    assert!(got.ends_with(r#"and (((process.executable in~ ("a") or process.executable in~ ("b")) and not user.name in~ ("root")))"#), "{got}");
    let got = rule(&format!("{det}  condition: all of them"));
    assert!(
        got.contains(" and process.executable in~ (\"b\") and "),
        "{got}"
    );
    let bad = translate(
        &format!("title: t\nid: x\nlogsource:\n  category: process_creation\ndetection:\n{det}  condition: sel_a and nope"),
        &Taxonomy::shipped(),
    )
    .unwrap_err();
    assert_eq!(bad.at.line, 12);
    assert_eq!(bad.at.column, 24, "{bad:?}");
    assert!(bad.message.contains("`nope`"), "{bad:?}");
    let bad = translate(
        "title: t\nid: x\ndetection:\n  sel:\n    Image|endwith: a\n  condition: sel\n",
        &Taxonomy::shipped(),
    )
    .unwrap_err();
    assert_eq!((bad.at.line, bad.at.column), (5, 5));
    assert!(
        bad.message.contains("unknown modifier `endwith`"),
        "{bad:?}"
    );
}

#[test]
fn unknown_fields_and_logsources_are_warnings() {
    let t = translate(
        "title: t\nid: x\nlogsource:\n  product: macos\n  category: process_creation\ndetection:\n  sel:\n    Hashes|contains: 'MD5='\n  condition: sel\n",
        &Taxonomy::shipped(),
    )
    .unwrap();
    assert!(
        t.rule.query.contains("?Hashes : \"*MD5=*\""),
        "{}",
        t.rule.query
    );
    assert_eq!(t.warnings.len(), 1);
    assert!(t.warnings[0].message.contains("Hashes"));
    let t = translate(
        "title: t\nid: x\nlogsource:\n  product: windows\n  category: process_creation\ndetection:\n  sel:\n    Image: a\n  condition: sel\n",
        &Taxonomy::shipped(),
    )
    .unwrap();
    assert!(t.rule.query.starts_with("any where false"));
    assert!(t.warnings[0].message.contains("windows"));
}

#[test]
fn tags_give_mitre_ids() {
    assert_eq!(mitre_id("attack.t1059.002").as_deref(), Some("T1059.002"));
    assert_eq!(mitre_id("attack.execution").as_deref(), Some("TA0002"));
    assert_eq!(mitre_id("cve.2021-1234"), None);
}

#[test]
fn modifiers_apply_left_to_right() {
    // Dashes varied, then each variant encoded: 5 × 3 alignments.
    let q = rule("  sel:\n    CommandLine|windash|base64offset|contains: ' -e '\n  condition: sel");
    assert_eq!(q.matches("process.command_line : ").count(), 15, "{q}");
    // Encoded first: the base64 text has no dash to vary.
    let q = rule("  sel:\n    CommandLine|base64offset|windash|contains: ' -e '\n  condition: sel");
    assert_eq!(q.matches("process.command_line : ").count(), 3, "{q}");
}

/// Found by a review against pySigma: each was a panic or a rule that
/// could never match.
#[test]
fn review_findings_stay_fixed() {
    let t = Taxonomy::shipped();
    // A non-ASCII timespan and a count past u32 were panics.
    for (timespan, cond) in [
        ("'é'", "gte: 2"),
        ("1m", "gt: 4294967295"),
        ("1m", "gte: 4294967297"),
    ] {
        let c = translate(
            &format!("title: c\nid: c\ncorrelation:\n    type: event_count\n    rules: r\n    timespan: {timespan}\n    condition:\n        {cond}\n"),
            &t,
        );
        let refused = match c {
            Err(_) => true,
            Ok(c) => correlation_query(
                c.rule.correlation.as_ref().unwrap(),
                &|_| Some(("any where true".into(), None)),
                &t,
            )
            .is_err(),
        };
        assert!(refused, "{timespan} {cond}");
    }
    // `all` with variants: each value's variants are alternatives.
    let q = rule("  sel:\n    CommandLine|windash|contains|all:\n      - ' -a'\n      - ' -b'\n  condition: sel");
    assert!(q.contains(") and ("), "{q}");
    assert_eq!(q.matches(" or ").count(), 8, "{q}");
    // Escapes are read before encoding; a wildcard cannot be encoded.
    let q = rule("  sel:\n    CommandLine|base64: 'a\\*b'\n  condition: sel");
    assert!(q.contains("YSpi"), "{q}");
    assert!(translate(
        "title: t\nid: x\ndetection:\n  sel:\n    CommandLine|base64: 'pi*ng'\n  condition: sel\n",
        &t
    )
    .is_err());
    // `1 of x*` leaves out `_` identifiers, as `them` does.
    let q = rule("  sel_a:\n    Image: a\n  _sel_b:\n    Image: b\n  condition: 1 of *");
    assert!(!q.contains("\"b\""), "{q}");
    // Keywords with modifiers, and a web log's field name: no error.
    let q = rule("  keywords:\n    '|all':\n      - 'x'\n      - 'y'\n  condition: keywords");
    assert!(
        q.contains(r#"process.command_line : "*x*" and process.command_line : "*y*""#),
        "{q}"
    );
    let w = translate(
        "title: t\nid: x\nlogsource:\n  category: proxy\ndetection:\n  sel:\n    cs-method: GET\n  condition: sel\n",
        &t,
    )
    .unwrap();
    assert!(
        w.warnings.iter().any(|w| w.message.contains("cs-method")),
        "{:?}",
        w.warnings
    );
    // windash leaves an en dash already there, and `_-x`, alone.
    let q = rule("  sel:\n    CommandLine|windash: 'a_-x \u{2013}y'\n  condition: sel");
    assert!(!q.contains(" or "), "{q}");
}

#[test]
fn group_by_maps_through_the_named_rules_category() {
    let t = Taxonomy::shipped();
    let c = translate(
        "title: c\nid: c\ncorrelation:\n    type: event_count\n    rules: r\n    group-by: [TargetFilename]\n    timespan: 1m\n    condition:\n        gte: 2\n",
        &t,
    )
    .unwrap();
    let q = correlation_query(
        c.rule.correlation.as_ref().unwrap(),
        &|_| Some(("file where true".into(), Some("file_event".into()))),
        &t,
    )
    .unwrap();
    assert!(
        q[0].starts_with("sequence by file.path with maxspan=1m"),
        "{q:?}"
    );
}
