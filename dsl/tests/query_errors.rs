//! Every kind of query error points at the right place; rule files report
//! script and query errors with file, line and column, and one bad rule
//! never keeps the good ones from loading.

mod common;

use std::sync::Arc;

use vigil_dsl::alert::Severity;
use vigil_dsl::correlate::Correlator;
use vigil_dsl::query::{self, CompiledQuery};
use vigil_dsl::rules::{load_rules, sandboxed_engine, LoadOutcome, Origin, RuleError, RuleFile};

/// Asserts that `q` fails to compile at the byte offset of `needle` (its
/// `nth` occurrence, 0-based; `None` means the end of the query), with a
/// message containing `msg`.
#[track_caller]
fn fails_at(q: &str, needle: Option<(&str, usize)>, msg: &str) {
    let err = match query::compile(q) {
        Ok(_) => panic!("compiled but should not: {q}"),
        Err(e) => e,
    };
    let want = match needle {
        None => q.len(),
        Some((n, nth)) => {
            q.match_indices(n)
                .nth(nth)
                .unwrap_or_else(|| panic!("{n:?} not in {q}"))
                .0
        }
    };
    assert_eq!(
        err.offset,
        want,
        "{q}\n  error {:?} at {} ({:?}), expected at {want} ({:?})",
        err.message,
        err.offset,
        q.get(err.offset..).unwrap_or(""),
        q.get(want..).unwrap_or("")
    );
    assert!(
        err.message.contains(msg),
        "{q}\n  message {:?} lacks {msg:?}",
        err.message
    );
    // line_col agrees with counting by hand.
    let before = &q[..want];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap().chars().count() + 1;
    assert_eq!(err.line_col(q), (line, col), "{q}");
}

/// Asserts that `q` compiles, with a warning at the byte offset of
/// `needle` whose message contains `msg`: what vigil's events never carry
/// reads as missing, as Elasticsearch's open mapping would take it.
#[track_caller]
fn warns_at(q: &str, needle: &str, msg: &str) {
    let (_, warnings) = query::compile_with_warnings(q)
        .unwrap_or_else(|e| panic!("{q}\n  should compile, failed: {e}"));
    let want = q
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {q}"));
    assert!(
        warnings
            .iter()
            .any(|w| w.offset == want && w.message.contains(msg)),
        "{q}\n  no warning {msg:?} at {want} ({needle:?}) in {warnings:?}"
    );
}

fn at(needle: &str) -> Option<(&str, usize)> {
    Some((needle, 0))
}

#[test]
fn syntax_errors() {
    fails_at("", None, "event category");
    fails_at("   ", None, "event category");
    fails_at(
        r#"process where process.name == "#,
        None,
        "a field, value or function call",
    );
    fails_at(
        r#"process where process.name === "x""#,
        Some(("=", 2)),
        "a field, value or function call",
    );
    fails_at(r#"process where (process.name == "x""#, None, "`)`");
    fails_at(
        r#"process where process.name == "x" )"#,
        at(")"),
        "end of query",
    );
    fails_at(
        r#"process process.name == "x""#,
        at("process.name"),
        "`where`",
    );
    fails_at(
        r#"where process.name == "x""#,
        at("where"),
        "event category",
    );
    fails_at(
        r#"process where process.name == "x" and"#,
        None,
        "a field, value or function call",
    );
    fails_at(
        r#"process where process.name in "x""#,
        at("\"x\""),
        "`(` after `in`",
    );
    fails_at(
        r#"process where process.name in ("x" "y")"#,
        at("\"y\""),
        "`,` or `)`",
    );
    fails_at(
        r#"process where process.name == "abc"#,
        at("\"abc"),
        "unterminated string",
    );
    fails_at(
        r#"process where process.name == "a\qb""#,
        at("\\q"),
        "unknown escape",
    );
    fails_at(r#"process where process.name == "\u12""#, at("\\u"), "\\u");
    fails_at(
        r#"process where process.name == "\u+041""#,
        at("\\u"),
        "invalid \\u escape",
    );
    fails_at(
        r#"process where process.name == "\ud800""#,
        at("\\u"),
        "invalid \\u escape",
    );
    fails_at(
        r#"process where process.name == # "x""#,
        at("#"),
        "unexpected character",
    );
    fails_at(
        "process where process.name == \"x\" and é",
        at("é"),
        "unexpected character",
    );
    fails_at(
        r#"process where /* never closed"#,
        at("/*"),
        "unterminated comment",
    );
    fails_at(
        r#"process where process.pid == 99999999999999999999"#,
        at("9999"),
        "out of range",
    );
    fails_at(r#"process where ?and == 1"#, at("and"), "a field name");
    fails_at(
        r#"process where process.pid == 15s"#,
        at("15s"),
        "a field, value or function call",
    );
    fails_at(r#"sequence"#, None, "a `[` stage");
    fails_at(r#"sequence ["#, None, "event category");
    fails_at(
        r#"sequence [process where true"#,
        None,
        "`]` to close the stage",
    );
    fails_at(
        r#"sequence [process where true] until"#,
        None,
        "`[` stage after `until`",
    );
    fails_at(
        r#"sequence with maxspan=5y [process where true]"#,
        at("5y"),
        "unknown duration unit",
    );
    fails_at(
        r#"sequence with maxspan=15 [process where true]"#,
        at("15"),
        "a duration",
    );
    fails_at(
        r#"sequence with maxspan 15s [process where true]"#,
        at("15s"),
        "`=`",
    );
    fails_at(
        r#"sequence with runs=2 [process where true]"#,
        at("runs"),
        "`maxspan`",
    );
    fails_at(
        r#"sequence [process where true] with runs=0"#,
        at("0"),
        "from 1 to 100",
    );
    fails_at(
        r#"sequence [process where true] with runs=101"#,
        at("101"),
        "from 1 to 100",
    );
    fails_at(
        r#"sequence [process where true] with runs=100 [process where true] with runs=100"#,
        Some(("sequence", 0)),
        "at most 100 stages",
    );
}

#[test]
fn name_and_type_errors() {
    warns_at(
        r#"process where process.nme == "x""#,
        "process.nme",
        "no field `process.nme`",
    );
    warns_at(
        r#"process where process.name == "x" or unknown.field == 1"#,
        "unknown.field",
        "no field `unknown.field`",
    );
    warns_at(
        r#"process where cidrmatch(destination.ipp, "10.0.0.0/8")"#,
        "destination.ipp",
        "no field",
    );
    warns_at(
        r#"sequence by host.idd [process where true] [process where true]"#,
        "host.idd",
        "no field",
    );
    fails_at(
        r#"process where process.pid : "abc""#,
        at(":"),
        "type mismatch",
    );
    fails_at(
        r#"process where process.pid like "1*""#,
        at("like"),
        "type mismatch",
    );
    fails_at(
        r#"network where destination.ip == 5"#,
        at("=="),
        "type mismatch",
    );
    fails_at(
        r#"network where destination.ip == "not-an-ip""#,
        at("\"not-an-ip\""),
        "not an IP address",
    );
    fails_at(
        r#"network where destination.ip in ("10.0.0.1", "nope")"#,
        at("\"nope\""),
        "not an IP address",
    );
    // `==` of a keyword and a number compares the number's text (Elastic
    // Defend's `user.id == 0`); ordering them is still a mismatch.
    assert!(query::compile(r#"process where process.name == 5"#).is_ok());
    fails_at(
        r#"process where process.name > 5"#,
        at(">"),
        "type mismatch",
    );
    fails_at(
        r#"process where process.name == process.pid"#,
        at("=="),
        "type mismatch",
    );
    fails_at(
        r#"process where process.args < "m""#,
        at("<"),
        "cannot be ordered",
    );
    fails_at(
        r#"process where process.name == null and process.pid < null"#,
        at("<"),
        "type mismatch",
    );
    fails_at(
        r#"process where process.name in ("a", 1)"#,
        at("1"),
        "string literal",
    );
    fails_at(
        r#"process where process.pid in (1, "2")"#,
        at("\"2\""),
        "a number",
    );
    fails_at(
        r#"process where process.code_signature.trusted in ("true")"#,
        at("in"),
        "boolean",
    );
    fails_at(
        r#"process where process.name"#,
        at("process.name"),
        "expected a condition",
    );
    fails_at(
        r#"process where length(process.pid) > 1"#,
        at("process.pid"),
        "string or list",
    );
    fails_at(
        r#"process where length(process.name, process.name) > 1"#,
        at("length"),
        "exactly one argument",
    );
    fails_at(
        r#"process where length(process.name) == "x""#,
        at("=="),
        "number",
    );
    warns_at(
        r#"process where event.type == "begin""#,
        "\"begin\"",
        "never have event.type \"begin\"",
    );
    warns_at(
        r#"process where event.category == "bogus""#,
        "\"bogus\"",
        "never have event.category \"bogus\"",
    );
    warns_at(r#"proces where true"#, "proces", "no `proces` events");
    warns_at(
        r#"sequence [process where true] [netwrk where true]"#,
        "netwrk",
        "no `netwrk` events",
    );
    fails_at(
        r#"process where startswith(process.pid, "1")"#,
        at("process.pid"),
        "string field",
    );
    fails_at(
        r#"process where startswith("x", "1")"#,
        at("\"x\""),
        "must be a field",
    );
    fails_at(
        r#"process where startswith(process.name)"#,
        at("startswith"),
        "at least two",
    );
}

#[test]
fn regex_cidr_and_function_errors_point_at_the_bad_literal() {
    fails_at(
        r#"process where process.name regex "[bad""#,
        at("\"[bad\""),
        "invalid regex",
    );
    fails_at(
        r#"process where process.name regex ("ok", "(unclosed")"#,
        at("\"(unclosed\""),
        "invalid regex",
    );
    fails_at(
        r#"process where process.name regex~ ("a", "b", "x{2,1}")"#,
        at("\"x{2"),
        "invalid regex",
    );
    fails_at(
        r#"network where cidrmatch(destination.ip, "10.0.0.0/33")"#,
        at("\"10.0.0.0/33\""),
        "invalid CIDR",
    );
    fails_at(
        r#"network where cidrmatch(destination.ip, "10.0.0.0/8", "fe80::/129")"#,
        at("\"fe80::/129\""),
        "invalid CIDR",
    );
    fails_at(
        r#"network where cidrmatch(destination.ip, "banana")"#,
        at("\"banana\""),
        "invalid CIDR",
    );
    fails_at(
        r#"network where cidrmatch(process.name, "10.0.0.0/8")"#,
        at("process.name"),
        "IP field",
    );
    fails_at(
        r#"process where frobnicate(process.name, "x")"#,
        at("frobnicate"),
        "unknown function `frobnicate`",
    );
    fails_at(
        r#"process where process.name == "x" and concat(process.name, "x")"#,
        at("concat"),
        "unknown function",
    );
}

#[test]
fn sequence_join_key_errors() {
    fails_at(
        r#"sequence by host.id [process where true] by process.pid [process where true]"#,
        Some(("[", 1)),
        "same number of join keys",
    );
    fails_at(
        r#"sequence [process where true] by process.pid, host.id [network where true] by process.pid"#,
        Some(("[", 1)),
        "the first has 2, this one 1",
    );
    fails_at(
        r#"sequence by host.id [process where true] [process where true] until [process where true] by process.pid"#,
        Some(("[", 2)),
        "same number of join keys",
    );
    fails_at(
        r#"sequence [process where true] by process.args [process where true] by process.args"#,
        at("process.args"),
        "cannot be a join key",
    );
    // Different fields are fine as long as the counts match.
    assert!(query::compile(r#"sequence by host.id [process where true] by process.pid [network where true] by process.parent.pid"#).is_ok());
}

#[test]
fn positions_in_multi_line_and_unicode_queries() {
    let q = "sequence by host.id with maxspan=1m\n  [process where user.name == \"Ünïcødé\" and\n     process.nme == \"x\"]\n  [network where true]";
    let (_, warnings) = query::compile_with_warnings(q).unwrap();
    assert_eq!(warnings[0].line_col(q), (3, 6));
    let q = "process where user.name == \"日本語\" and process.pid : \"x\"";
    let e = query::compile(q).unwrap_err();
    // Columns count characters, not bytes.
    assert_eq!(e.line_col(q), (1, 50));
    assert_eq!(&q[e.offset..e.offset + 1], ":");
}

// ---------------------------------------------------------------------------
// Rule files

fn file(path: &str, text: &str) -> RuleFile {
    RuleFile {
        path: path.to_string(),
        text: text.to_string(),
        origin: Origin::User,
    }
}

fn ids(out: &LoadOutcome) -> Vec<String> {
    let mut v: Vec<String> = out
        .rules
        .rules()
        .iter()
        .map(|r| r.meta.id.clone())
        .collect();
    v.sort();
    v
}

fn errors_in<'a>(out: &'a LoadOutcome, path: &str) -> Vec<&'a RuleError> {
    out.errors.iter().filter(|e| e.file == path).collect()
}

/// 1-based line and column of the `nth` occurrence of `needle` in `text`.
fn pos_of(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    let off = text.match_indices(needle).nth(nth).unwrap().0;
    query::line_col(text, off)
}

const GOOD_OTHER_FILE: &str = r#"
rule(#{ id: "other-good", query: `process where process.name == "zsh"` });
"#;

#[test]
fn a_rhai_syntax_error_is_reported_and_other_files_still_load() {
    let bad = "rule(#{ id: \"a-never\", query: `process where true` });\nlet x = ;\n";
    let out = load_rules(&[
        file("rules/a.rhai", bad),
        file("rules/b.rhai", GOOD_OTHER_FILE),
    ]);
    let errs = errors_in(&out, "rules/a.rhai");
    assert_eq!(errs.len(), 1, "{:?}", out.errors);
    assert_eq!(errs[0].line, 2, "{}", errs[0]);
    assert!(errs[0].column > 0);
    assert!(
        !errs[0].message.contains("(line "),
        "position is in the fields, not the text: {}",
        errs[0]
    );
    // A file that does not parse cannot run, so none of its rules load; the
    // other file's do.
    assert_eq!(ids(&out), ["other-good"]);
    let shown = errs[0].to_string();
    assert!(shown.starts_with("rules/a.rhai:2:"), "{shown}");
}

const MULTI_LINE_QUERY_ERROR: &str = r#"// A rule whose description talks about its query.
rule(#{ id: "b-good-before", query: `process where true` });

rule(#{
    id: "b-bad",
    name: "Bad query rule",
    description: "This query: `never` matches, it has a typo",
    severity: "high",
    query: `
sequence by host.id with maxspan=1m
  [process where process.name == "x"]
  [network where    destination.prot == 443]
`,
});

rule(#{ id: "b-good-after", query: `network where destination.port == 443` });

rule(#{ id: "b-bad-inline", query: `process where process.name == "x" and proces.pid == 1` });
"#;

#[test]
fn a_query_warning_inside_a_multi_line_backtick_query_points_into_the_file() {
    let out = load_rules(&[
        file("rules/b.rhai", MULTI_LINE_QUERY_ERROR),
        file("rules/c.rhai", GOOD_OTHER_FILE),
    ]);
    // Fields vigil's events never carry read as missing: every rule loads,
    // and each such field is a warning at its place in the file.
    assert_eq!(
        ids(&out),
        [
            "b-bad",
            "b-bad-inline",
            "b-good-after",
            "b-good-before",
            "other-good"
        ]
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let warnings: Vec<&RuleError> = out
        .warnings
        .iter()
        .filter(|e| e.file == "rules/b.rhai")
        .collect();
    assert_eq!(warnings.len(), 2, "{:?}", out.warnings);

    let multi = warnings
        .iter()
        .find(|e| e.rule_id.as_deref() == Some("b-bad"))
        .unwrap();
    assert!(
        multi.message.contains("no field `destination.prot`"),
        "{multi}"
    );
    assert_eq!(
        (multi.line, multi.column),
        pos_of(MULTI_LINE_QUERY_ERROR, "destination.prot", 0),
        "{multi}"
    );

    let inline = warnings
        .iter()
        .find(|e| e.rule_id.as_deref() == Some("b-bad-inline"))
        .unwrap();
    assert_eq!(
        (inline.line, inline.column),
        pos_of(MULTI_LINE_QUERY_ERROR, "proces.pid", 0),
        "{inline}"
    );
}

#[test]
fn a_query_warning_after_an_interpolated_list_keeps_the_right_line() {
    let text = r#"let shells = ["bash", "zsh"];
rule(#{
    id: "interp",
    query: `
process where process.name : ${eql_list(shells)} and
    process.bogus == 1`,
});
"#;
    let out = load_rules(&[file("i.rhai", text)]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    let e = &out.warnings[0];
    assert_eq!((e.line, e.column), pos_of(text, "process.bogus", 0), "{e}");
}

#[test]
fn a_type_error_after_an_interpolated_list_keeps_the_right_line() {
    let text = r#"let shells = ["bash", "zsh"];
rule(#{
    id: "interp",
    query: `
process where process.name : ${eql_list(shells)} and
    process.pid == "x"`,
});
"#;
    let out = load_rules(&[file("i.rhai", text)]);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    let e = &out.errors[0];
    assert_eq!((e.line, e.column), pos_of(text, "==", 0), "{e}");
}

const RUNAWAY: &str = r#"
rule(#{ id: "c-before-loop", query: `process where true` });
loop { }
rule(#{ id: "c-after-loop", query: `process where true` });
"#;

#[test]
fn a_runaway_script_is_stopped_and_reported() {
    let start = std::time::Instant::now();
    let out = load_rules(&[
        file("rules/c.rhai", RUNAWAY),
        file("rules/d.rhai", GOOD_OTHER_FILE),
    ]);
    assert!(start.elapsed().as_secs() < 30, "took {:?}", start.elapsed());
    let errs = errors_in(&out, "rules/c.rhai");
    assert_eq!(errs.len(), 1, "{:?}", out.errors);
    let m = errs[0].message.to_lowercase();
    assert!(
        m.contains("too long") && m.contains("operations"),
        "{}",
        errs[0]
    );
    assert_eq!(errs[0].line, 3, "{}", errs[0]);
    // Rules declared before the loop load; the script never reaches the rest.
    assert_eq!(ids(&out), ["c-before-loop", "other-good"]);
}

#[test]
fn other_script_limits_hold() {
    let cases = [
        ("recursion", "fn f(x) { f(x + 1) } f(0);"),
        ("huge string", r#"let s = "x"; loop { s += s; }"#),
        ("huge array", "let a = []; loop { a.push(1); }"),
    ];
    let files: Vec<RuleFile> = cases.iter().map(|(n, t)| file(n, t)).collect();
    let out = load_rules(&files);
    for (name, _) in cases {
        assert_eq!(errors_in(&out, name).len(), 1, "{name}: {:?}", out.errors);
    }
}

const BAD_METADATA: &str = r#"
rule(#{ name: "no id here", query: `process where true` });
rule(#{ id: "d-unknown-key", query: `process where true`, sevrity: "high" });
rule(#{ id: "d-bad-severity", query: `process where true`, severity: "urgent" });
rule(#{ id: "d-bad-risk", query: `process where true`, risk: 101 });
rule(#{ id: "d-no-query" });
rule(#{ id: "d-bad-hook", query: `process where true`, on_match: "not a function" });
rule(#{ id: "", query: `process where true` });
rule(#{ id: "d-good", query: `process where true`, severity: "HIGH", tags: "single-tag" });
rule(#{ id: "d-good", query: `process where true` });
"#;

#[test]
fn bad_metadata_is_reported_per_rule_and_good_rules_in_the_same_file_load() {
    let out = load_rules(&[
        file("rules/d.rhai", BAD_METADATA),
        file("rules/e.rhai", GOOD_OTHER_FILE),
    ]);
    assert_eq!(ids(&out), ["d-good", "other-good"]);
    let errs = errors_in(&out, "rules/d.rhai");
    let summary: Vec<(usize, Option<&str>)> = errs
        .iter()
        .map(|e| (e.line, e.rule_id.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            (2, None),
            (3, Some("d-unknown-key")),
            (4, Some("d-bad-severity")),
            (5, Some("d-bad-risk")),
            (6, Some("d-no-query")),
            (7, Some("d-bad-hook")),
            (8, None),
            (0, Some("d-good")),
        ],
        "{:#?}",
        errs.iter().map(|e| e.to_string()).collect::<Vec<_>>()
    );
    assert!(errs[0].message.contains("`id`"), "{}", errs[0]);
    assert!(
        errs[1].message.contains("unknown key `sevrity`"),
        "{}",
        errs[1]
    );
    assert!(errs[2].message.contains("urgent"), "{}", errs[2]);
    assert!(errs[3].message.contains("risk"), "{}", errs[3]);
    assert!(errs[4].message.contains("`query`"), "{}", errs[4]);
    assert!(errs[5].message.contains("on_match"), "{}", errs[5]);
    assert!(errs[7].message.contains("duplicate"), "{}", errs[7]);
    let good = &out
        .rules
        .rules()
        .iter()
        .find(|r| r.meta.id == "d-good")
        .unwrap()
        .meta;
    assert_eq!(good.severity, Severity::High);
    assert_eq!(good.risk_score, Severity::High.default_risk());
    assert_eq!(good.tags, ["single-tag"]);
}

#[test]
fn a_user_rule_overrides_a_shipped_one_by_id() {
    let shipped = RuleFile {
        path: "shipped:x.rhai".into(),
        text: r#"rule(#{ id: "same", query: `process where true`, severity: "low" });"#.into(),
        origin: Origin::Shipped,
    };
    let user = file(
        "/etc/vigil/x.rhai",
        r#"rule(#{ id: "same", query: `process where true`, severity: "critical" });"#,
    );
    let out = load_rules(&[shipped, user]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.rules.len(), 1);
    assert_eq!(out.rules.rules()[0].meta.severity, Severity::Critical);
    assert_eq!(out.rules.rules()[0].origin, Origin::User);
}

#[test]
fn modules_are_importable_and_eql_list_quotes_safely() {
    let lib = r#"export const shells = ["bash", "zsh", "we\"ird", "back\\slash", "tab	here", "bell\x07", "back\x08space", "form\x0cfeed"];"#;
    let rules = r#"
import "lists" as lists;
rule(#{
    id: "imported",
    query: `process where process.name : ${eql_list(lists::shells)}`,
});
"#;
    let out = load_rules(&[
        file("rules/lists.lib.rhai", lib),
        file("rules/uses.rhai", rules),
    ]);
    assert!(
        out.errors.is_empty(),
        "{:#?}",
        out.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(ids(&out), ["imported"]);
    let rules = Arc::new(out.rules);
    let CompiledQuery::Event(f) = &rules.rules()[0].query else {
        panic!()
    };
    for name in [
        "ZSH",
        "we\"ird",
        "back\\slash",
        "tab\there",
        "bell\u{7}",
        "back\u{8}space",
        "form\u{c}feed",
    ] {
        assert!(f.matches(&common::proc_start(1, name)), "{name:?}");
    }
    assert!(!f.matches(&common::proc_start(1, "fish")));

    // A module that does not exist is an error for the importing file only.
    let out = load_rules(&[
        file(
            "rules/missing.rhai",
            "import \"nope\" as n;\nrule(#{ id: \"m\", query: `process where true` });",
        ),
        file("rules/ok.rhai", GOOD_OTHER_FILE),
    ]);
    assert_eq!(ids(&out), ["other-good"]);
    assert_eq!(errors_in(&out, "rules/missing.rhai").len(), 1);

    // A broken module is reported with its own path.
    let out = load_rules(&[
        file("rules/broken.lib.rhai", "export const = 1;"),
        file("rules/ok.rhai", GOOD_OTHER_FILE),
    ]);
    assert_eq!(
        errors_in(&out, "rules/broken.lib.rhai").len(),
        1,
        "{:?}",
        out.errors
    );
    assert_eq!(ids(&out), ["other-good"]);
}

#[test]
fn eval_is_unavailable_to_scripts() {
    let out = load_rules(&[
        file(
            "rules/eval.rhai",
            r#"eval("rule(#{ id: \"sneaky\", query: `process where true` })");"#,
        ),
        file("rules/ok.rhai", GOOD_OTHER_FILE),
    ]);
    assert_eq!(ids(&out), ["other-good"]);
    assert_eq!(
        errors_in(&out, "rules/eval.rhai").len(),
        1,
        "{:?}",
        out.errors
    );

    let engine = sandboxed_engine();
    assert!(engine.eval::<i64>(r#"eval("40 + 2")"#).is_err());
    assert_eq!(engine.eval::<i64>("40 + 2").unwrap(), 42);
}

#[test]
fn loaded_rules_run_in_a_correlator() {
    let out = load_rules(&[
        file("rules/d.rhai", BAD_METADATA),
        file("rules/e.rhai", GOOD_OTHER_FILE),
    ]);
    let mut c = Correlator::new(Arc::new(out.rules), Default::default());
    let mut alerts = Vec::new();
    c.process(&common::proc_start(1, "zsh"), &mut alerts);
    let mut fired: Vec<&str> = alerts.iter().map(|a| a.rule.id.as_str()).collect();
    fired.sort();
    assert_eq!(fired, ["d-good", "other-good"]);
}
