//! Whatever text reaches the query compiler (rule files are user input), it
//! returns `Ok` or an `Err` pointing inside the text: no panic, no stack
//! overflow, and whatever compiles can be evaluated.

mod common;

use proptest::prelude::*;
use vigil_dsl::correlate::{CorrelatorConfig, SequenceState};
use vigil_dsl::query::{self, CompiledQuery, QueryError};
use vigil_dsl::Event;

/// Compiles `q`; on error checks the offset is a real position in `q`; on
/// success runs the result over a few events.
fn exercise(q: &str) -> Result<(), TestCaseError> {
    match query::compile(q) {
        Err(QueryError { offset, message }) => {
            prop_assert!(
                offset <= q.len(),
                "offset {} past the end of {:?}",
                offset,
                q
            );
            prop_assert!(
                q.is_char_boundary(offset),
                "offset {} inside a character of {:?}",
                offset,
                q
            );
            prop_assert!(!message.is_empty());
            let (line, col) = query::line_col(q, offset);
            prop_assert!(line >= 1 && col >= 1);
        }
        Ok(CompiledQuery::Event(f)) => {
            for e in events() {
                let _ = f.matches(&e);
            }
        }
        Ok(CompiledQuery::Sequence(spec)) => {
            let mut state = SequenceState::new(&spec);
            let mut out = Vec::new();
            for e in events() {
                state.process(&spec, &CorrelatorConfig::default(), &e, &mut out);
            }
        }
    }
    Ok(())
}

fn events() -> Vec<Event> {
    let mut full = common::proc_start(10, "bash");
    full.process.args = vec!["bash".into(), "-c".into(), "x".into()];
    full.process.pid = Some(7);
    full.destination = Some(vigil_dsl::event::Endpoint {
        ip: Some("10.0.0.1".parse().unwrap()),
        port: Some(443),
    });
    vec![Event::default(), common::proc_start(1, "zsh"), full]
}

const WORDS: &[&str] = &[
    // categories and structure
    "process",
    "file",
    "network",
    "any",
    "where",
    "sequence",
    "by",
    "with",
    "maxspan",
    "runs",
    "until",
    // logic and operators spelled as words
    "and",
    "or",
    "not",
    "in",
    "in~",
    "like",
    "like~",
    "regex",
    "regex~",
    "true",
    "false",
    "null",
    // functions
    "length",
    "cidrmatch",
    "startswith",
    "startswith~",
    "endswith~",
    "stringcontains",
    "wildcard",
    "frob",
    // fields
    "process.name",
    "process.args",
    "process.pid",
    "process.parent.pid",
    "process.code_signature.trusted",
    "destination.ip",
    "destination.port",
    "event.type",
    "event.category",
    "host.id",
    "@timestamp",
    "unknown.field",
    "?unknown.field",
    "?process.name",
    // punctuation
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    ":",
    "=",
    "?",
    ",",
    "(",
    ")",
    "[",
    "]",
    "(",
    ")",
    "~",
    "!",
    "-",
    // literals
    "\"x\"",
    "\"*a*\"",
    "'b?'",
    "\"10.0.0.0/8\"",
    "\"::1\"",
    "\"start\"",
    "\"process\"",
    "\"[bad\"",
    "\"\\u0041\\n\"",
    "\"\"\"raw\\\"\"\"",
    "\"unterminated",
    "\"\\q\"",
    "0",
    "-1",
    "42",
    "5s",
    "15m",
    "2h",
    "99999999999999999999",
    "1x",
    // comments and odd characters
    "/* c */",
    "// line\n",
    "/*",
    "é",
    "日本",
    "\t",
    "\n",
    "#",
    "$",
    ";",
    "\"",
    "'",
];

fn token_soup() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "",
            "process where ",
            "any where ",
            "sequence by host.id ",
            "sequence [process where ",
        ]),
        prop::collection::vec(prop::sample::select(WORDS.to_vec()), 0..40),
        prop::collection::vec(any::<bool>(), 40),
    )
        .prop_map(|(prefix, words, glue)| {
            let mut s = prefix.to_string();
            for (w, tight) in words.iter().zip(glue) {
                s.push_str(w);
                if !tight {
                    s.push(' ');
                }
            }
            s
        })
}

const VALID: &[&str] = &[
    r#"process where process.name : ("bash", "zsh") and not process.args : "*-c*""#,
    r#"network where not cidrmatch(destination.ip, "10.0.0.0/8", "::1") and destination.port in (80, 443)"#,
    r#"sequence by host.id with maxspan=15s [process where event.type == "start"] by process.pid [network where true] by process.parent.pid until [process where process.name == "x"] by process.pid"#,
    r#"any where length(process.args) > 2 or startswith~(process.name, "py") /* c */ // d"#,
    r#"file where ?unknown.field == null and process.name regex~ "ba.*" and process.name like "B?sh""#,
    r#"sequence [process where true] with runs=3 [file where true]"#,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(q in any::<String>()) {
        exercise(&q)?;
    }

    #[test]
    fn arbitrary_printable_text_after_a_valid_prefix_never_panics(q in "\\PC{0,80}") {
        exercise(&q)?;
        exercise(&format!("process where {q}"))?;
        exercise(&format!("sequence by host.id [process where {q}] [network where true]"))?;
    }

    #[test]
    fn token_soups_never_panic(q in token_soup()) {
        exercise(&q)?;
    }

    #[test]
    fn mutated_valid_queries_never_panic(
        base in prop::sample::select(VALID.to_vec()),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(WORDS.to_vec())), 1..6),
    ) {
        let mut q: Vec<char> = base.chars().collect();
        for (at, kind, word) in edits {
            if q.is_empty() {
                break;
            }
            let i = at.index(q.len());
            match kind {
                0 => { q.remove(i); }
                1 => { q.splice(i..i, word.chars()); }
                _ => { q.truncate(i); }
            }
        }
        exercise(&q.into_iter().collect::<String>())?;
    }
}

#[test]
fn the_valid_seed_queries_compile() {
    for q in VALID {
        query::compile(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    }
}

#[track_caller]
fn rejects(q: &str) {
    match query::compile(q) {
        Ok(_) => panic!("compiled: {}…", &q[..q.len().min(60)]),
        Err(e) => {
            assert!(e.offset <= q.len());
            assert!(!e.message.is_empty());
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let n = 10_000;
    rejects(&"(".repeat(n));
    rejects(&format!("process where {}", "(".repeat(n)));
    rejects(&format!(
        "process where {}true{}",
        "(".repeat(n),
        ")".repeat(n)
    ));
    rejects(&format!("process where {}true", "not ".repeat(n)));
    rejects(&format!(
        "process where {}true{}",
        "not (".repeat(n),
        ")".repeat(n)
    ));
    rejects(&format!(
        "process where {}process.name{} > 1",
        "length(".repeat(n),
        ")".repeat(n)
    ));
    rejects(&format!(
        "process where {}process.name, \"x\"{}",
        "startswith(".repeat(n),
        ")".repeat(n)
    ));
    rejects(&format!(
        "process where process.name in {}\"x\"{}",
        "(".repeat(n),
        ")".repeat(n)
    ));
    rejects(&format!("sequence {}", "[".repeat(n)));
    rejects(&format!(
        "sequence {}process where true{}",
        "[".repeat(n),
        "]".repeat(n)
    ));
    rejects(&"?".repeat(n));
    rejects(&format!("process where {}", "-".repeat(n)));
    // The error for nesting says so, at the point it got too deep.
    let q = format!("process where {}true{}", "(".repeat(n), ")".repeat(n));
    let e = query::compile(&q).unwrap_err();
    assert!(e.message.contains("nest"), "{}", e.message);
    assert!(e.offset < 14 + n, "{}", e.offset);
}

#[test]
fn reasonable_nesting_still_compiles() {
    for depth in [1, 10, 30] {
        let q = format!(
            "process where {}process.name == \"bash\"{}",
            "(".repeat(depth),
            ")".repeat(depth)
        );
        let CompiledQuery::Event(f) =
            query::compile(&q).unwrap_or_else(|e| panic!("depth {depth}: {e}"))
        else {
            panic!()
        };
        assert!(f.matches(&common::proc_start(1, "bash")));
        let q = format!(
            "process where {}process.name == \"bash\"",
            "not ".repeat(depth * 2)
        );
        let CompiledQuery::Event(f) =
            query::compile(&q).unwrap_or_else(|e| panic!("depth {depth}: {e}"))
        else {
            panic!()
        };
        assert!(f.matches(&common::proc_start(1, "bash")));
    }
}

#[test]
fn long_flat_queries_are_fine() {
    // Width is not depth: ten thousand terms compile and evaluate.
    let terms: Vec<String> = (0..10_000)
        .map(|i| format!("process.name == \"n{i}\""))
        .collect();
    let q = format!("process where {}", terms.join(" or "));
    let CompiledQuery::Event(f) = query::compile(&q).unwrap() else {
        panic!()
    };
    assert!(f.matches(&common::proc_start(1, "n9999")));
    assert!(!f.matches(&common::proc_start(1, "n10000")));
    let list: Vec<String> = (0..10_000).map(|i| format!("\"n{i}\"")).collect();
    let q = format!("process where process.name in~ ({})", list.join(", "));
    let CompiledQuery::Event(f) = query::compile(&q).unwrap() else {
        panic!()
    };
    assert!(f.matches(&common::proc_start(1, "N42")));
}

#[test]
fn huge_inputs_are_handled() {
    rejects(&"\"".repeat(100_000));
    rejects(&format!(
        "process where process.name == \"{}",
        "a".repeat(1_000_000)
    ));
    rejects(&"/*".repeat(50_000));
    // A regex that would compile to something enormous is refused, not built.
    rejects(r#"process where process.name regex "(((a{100}){100}){100})""#);
}
