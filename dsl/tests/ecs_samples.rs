//! Real ECS documents (see tests/data/SOURCES.md) parse into the right
//! fields, survive a JSON round trip, and bad lines in a stream are reported
//! one by one without stopping the reader.

mod common;

use std::fs;
use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use vigil_dsl::ecs::{parse_ecs_json, to_ecs_json, EcsReader};
use vigil_dsl::event::{Category, EventType};
use vigil_dsl::query;
use vigil_dsl::Event;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ecs")
}

/// Every sample file's events, by file name.
fn sample(name: &str) -> Vec<Event> {
    let text = fs::read_to_string(data_dir().join(name)).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| parse_ecs_json(l).unwrap_or_else(|e| panic!("{name}:{}: {e}", i + 1)))
        .collect()
}

fn sample_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_line_of_every_sample_parses() {
    let files = sample_files();
    assert_eq!(files.len(), 6, "{files:?}");
    let mut total = 0;
    let mut failures = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            total += 1;
            if let Err(e) = parse_ecs_json(line) {
                failures.push(format!(
                    "{}:{}: {e}",
                    f.file_name().unwrap().to_string_lossy(),
                    i + 1
                ));
            }
        }
        // The streaming reader agrees with line-by-line parsing.
        let via_reader: Vec<_> =
            EcsReader::new(BufReader::new(fs::File::open(f).unwrap())).collect();
        assert!(via_reader.iter().all(Result::is_ok), "{}", f.display());
    }
    assert_eq!(total, 18);
    assert!(
        failures.is_empty(),
        "{} of {total} documents failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn jamf_exec_sample_fields() {
    let events = sample("jamf-protect-telemetry-ecs-macos14-exec-sample-event.ndjson");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    // 2024-09-04T07:32:31.324Z
    assert_eq!(e.timestamp_ns, 1_725_435_151_324_000_000);
    assert_eq!(e.event.category, Category::Process);
    assert!(e.has_type(EventType::Start));
    assert!(e.has_type(EventType::Info));
    assert_eq!(e.event.action.as_deref(), Some("exec"));
    assert_eq!(
        e.event.id.as_deref(),
        Some("CDB31202-8CB4-4C72-A9C6-7F494CD5F598")
    );
    assert_eq!(e.host.os.os_type.as_deref(), Some("macos"));
    assert_eq!(e.host.os.version.as_deref(), Some("14.5"));
    assert_eq!(e.host.id.as_deref(), Some("00006030-001E301C0228001C"));
    assert_eq!(e.process.name.as_deref(), Some("zsh"));
    assert_eq!(e.process.pid, Some(91306));
    assert_eq!(e.process.executable.as_deref(), Some("/bin/zsh"));
    assert_eq!(
        e.process.args.iter().map(|a| &**a).collect::<Vec<_>>(),
        [
            "/bin/zsh",
            "-c",
            "/var/folders/fm/j970swbn73dfnkjgsqjxxvj40000gp/T/eicar"
        ]
    );
    assert_eq!(
        e.process.code_signature.signing_id.as_deref(),
        Some("com.apple.zsh")
    );
    let parent = e.process.parent.as_ref().expect("parent");
    assert_eq!(parent.pid, Some(64632));
    assert_eq!(
        parent.entity_id.as_deref(),
        Some("A7EDC884-C034-50E7-A3AA-2E281B3E0777")
    );
    // `user.effective.id` is not `user.id`.
    assert_eq!(e.user.id, None);
}

#[test]
fn elastic_defend_windows_samples_fields() {
    let file = &sample("elastic-defend-endpoint-package-sample-file-windows.ndjson")[0];
    // Seven fraction digits: 2022-04-04T18:37:01.5775771Z.
    assert_eq!(file.timestamp_ns, 1_649_097_421_577_577_100);
    assert_eq!(file.event.category, Category::File);
    assert_eq!(file.event.types, [EventType::Creation]);
    let f = file.file.as_ref().unwrap();
    assert_eq!(
        f.path.as_deref(),
        Some("C:\\ProgramData\\winlogbeat\\.winlogbeat.yml.new")
    );
    assert_eq!(f.name.as_deref(), Some(".winlogbeat.yml.new"));
    assert_eq!(f.extension.as_deref(), Some("new"));
    assert_eq!(file.process.pid, Some(4512));
    assert_eq!(file.process.parent.as_ref().unwrap().pid, Some(604));
    assert_eq!(file.user.id.as_deref(), Some("S-1-5-18"));
    assert_eq!(file.user.name.as_deref(), Some("SYSTEM"));
    assert_eq!(file.process.code_signature.trusted, Some(true));

    let proc = &sample("elastic-defend-endpoint-package-sample-process-windows.ndjson")[0];
    assert_eq!(proc.event.category, Category::Process);
    assert_eq!(proc.event.types, [EventType::Start]);
    assert_eq!(proc.process.name.as_deref(), Some("svchost.exe"));
    assert_eq!(
        proc.process.args.iter().map(|a| &**a).collect::<Vec<_>>(),
        ["C:\\Windows\\System32\\svchost.exe", "-k", "WerSvcGroup"]
    );
    assert_eq!(
        proc.process.command_line.as_deref(),
        Some("C:\\Windows\\System32\\svchost.exe -k WerSvcGroup")
    );
    assert_eq!(
        proc.process.hash.sha256.as_deref(),
        Some("cb19fd67b1d028e01f54c426a0924528c4a8d8ed8996cfe0ee0c6e45285436a1")
    );
    let parent = proc.process.parent.as_ref().unwrap();
    assert_eq!(
        (parent.pid, parent.name.as_deref()),
        (Some(600), Some("services.exe"))
    );
    // `"args": []` upstream is an empty list, not a missing one.
    assert!(parent.args.is_empty());

    let sec = &sample("elastic-defend-endpoint-package-sample-security-windows.ndjson")[0];
    // ["authentication", "session"]: the first specific category wins.
    assert_eq!(sec.event.category, Category::Authentication);
    assert_eq!(sec.event.outcome.as_deref(), Some("success"));
    let src = sec.source.as_ref().unwrap();
    assert_eq!(src.ip, Some("fe80::8ff:be62:afa2:6258".parse().unwrap()));
    assert_eq!(src.port, Some(53663));
    assert_eq!(sec.process.pid, None);
    assert_eq!(sec.process.parent.as_ref().unwrap().pid, Some(351));
}

#[test]
fn jamf_documents_without_timestamp_and_with_host_category_lists() {
    let alerts = sample("jamf-protect-alerts-expected.ndjson");
    assert_eq!(alerts.len(), 3);
    // No `@timestamp` in these pipeline outputs: the time is `event.start`
    // (was 0, which put them at 1970, outside every time range).
    assert_eq!(
        alerts[0].timestamp_ns,
        vigil_dsl::time::parse_rfc3339("2023-11-21T11:32:44.184Z").unwrap()
    );
    assert!(alerts.iter().all(|e| e.timestamp_ns > 0));
    // ["host", "file"] / ["host", "process"]: the specific one wins.
    let cats: Vec<Category> = alerts.iter().map(|e| e.event.category).collect();
    assert_eq!(cats, [Category::File, Category::Process, Category::File]);
    assert_eq!(
        alerts[1].process.name.as_deref(),
        Some("security_authtrampoline")
    );
    assert_eq!(alerts[1].process.parent.as_ref().unwrap().pid, Some(3099));
    assert_eq!(alerts[1].host.os.family.as_deref(), Some("macos"));
    // Nested escaped quotes survive.
    assert_eq!(alerts[2].process.args.len(), 4);
    assert!(alerts[2].process.args[2].contains(r#"{\"computer_name\": \"VMAC-41L97RNJT\"}"#));

    let telemetry = sample("jamf-protect-telemetry-expected.ndjson");
    assert_eq!(telemetry.len(), 11);
    let actions: Vec<&str> = telemetry
        .iter()
        .map(|e| e.event.action.as_deref().unwrap())
        .collect();
    assert_eq!(actions[0], "lw_session_unlock");
    assert_eq!(actions[10], "screensharing_attach");
    let ssh = telemetry
        .iter()
        .find(|e| e.event.action.as_deref() == Some("openssh_login"))
        .unwrap();
    assert_eq!(
        ssh.source.as_ref().unwrap().ip,
        Some("192.168.4.252".parse().unwrap())
    );
    assert_eq!(ssh.user.name.as_deref(), Some("jappleseed"));
    let logout = telemetry
        .iter()
        .find(|e| e.event.action.as_deref() == Some("login_logout"))
        .unwrap();
    assert_eq!(logout.event.types, [EventType::Info, EventType::End]);
    assert_eq!(logout.user.id.as_deref(), Some("502"));
}

#[test]
fn queries_select_the_real_samples() {
    let all: Vec<Event> = sample_files()
        .iter()
        .flat_map(|f| sample(f.file_name().unwrap().to_str().unwrap()))
        .collect();
    let count = |q: &str| {
        let vigil_dsl::query::CompiledQuery::Event(f) = query::compile(q).unwrap() else {
            panic!("{q}")
        };
        all.iter().filter(|e| f.matches(e)).count()
    };
    assert_eq!(
        count(
            r#"process where host.os.type == "macos" and process.args : "-c" and process.parent.pid == 64632"#
        ),
        1
    );
    assert_eq!(count(r#"any where host.os.family == "windows""#), 3);
    assert_eq!(count(r#"process where process.name : "SVCHOST.EXE""#), 1);
    assert_eq!(
        count(r#"authentication where cidrmatch(source.ip, "fe80::/10")"#),
        1
    );
    assert_eq!(
        count(r#"process where event.action == "su" and length(process.args) == 1"#),
        1
    );
    assert_eq!(
        count(r#"file where file.path : "*com.apple.Terminal.plist""#),
        1
    );
}

#[test]
fn samples_round_trip_through_ecs_json() {
    for f in sample_files() {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        for (i, e) in sample(&name).into_iter().enumerate() {
            let json = to_ecs_json(&e);
            assert!(!json.contains('\n'), "{name}:{}: one line per event", i + 1);
            let back = parse_ecs_json(&json)
                .unwrap_or_else(|err| panic!("{name}:{}: {err}\n{json}", i + 1));
            assert_eq!(back, e, "{name}:{}", i + 1);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_events_round_trip_through_ecs_json(e in common::arb_event()) {
        let json = to_ecs_json(&e);
        let back = parse_ecs_json(&json).map_err(|m| TestCaseError::fail(format!("{m}\n{json}")))?;
        prop_assert_eq!(back, e);
    }
}

#[test]
fn a_bad_line_is_one_error_with_its_line_number_and_reading_goes_on() {
    let good = |name: &str| {
        let mut e = common::proc_start(100, name);
        e.process.args = vec![name.into(), "-c".into()];
        to_ecs_json(&e)
    };
    let mut input: Vec<u8> = Vec::new();
    input.extend_from_slice(format!("{}\n", good("one")).as_bytes()); // 1
    input.extend_from_slice(b"\n"); // 2: blank, skipped
    input.extend_from_slice(
        b"{\"@timestamp\": \"2024-09-04T07:32:31Z\", \"event\": {\"category\": \n",
    ); // 3: truncated JSON
    input.extend_from_slice(format!("{}\r\n", good("two")).as_bytes()); // 4: CRLF is fine
    input.extend_from_slice(b"{\"@timestamp\": \"yesterday\"}\n"); // 5: bad timestamp
    input.extend_from_slice(b"{\"@timestamp\": 0, \"destination\": {\"ip\": \"999.1.1.1\"}}\n"); // 6: bad IP
    input.extend_from_slice(b"{\"@timestamp\": 0, \"process\": {\"name\": \"\xff\xfe\"}}\n"); // 7: not UTF-8
    input.extend_from_slice(b"   \t  \n"); // 8: whitespace only
    input.extend_from_slice(good("three").as_bytes()); // 9: no final newline

    let results: Vec<_> = EcsReader::new(Cursor::new(input)).collect();
    let summary: Vec<Result<String, u64>> = results
        .iter()
        .map(|r| match r {
            Ok(e) => Ok(e.process.name.as_deref().unwrap().to_string()),
            Err(e) => Err(e.line),
        })
        .collect();
    assert_eq!(
        summary,
        [
            Ok("one".to_string()),
            Err(3),
            Ok("two".to_string()),
            Err(5),
            Err(6),
            Err(7),
            Ok("three".to_string()),
        ]
    );
    let msg = |line: u64| {
        results
            .iter()
            .find_map(|r| r.as_ref().err().filter(|e| e.line == line))
            .unwrap()
            .to_string()
    };
    assert!(msg(3).starts_with("line 3: "), "{}", msg(3));
    assert!(
        msg(5).contains("RFC 3339") || msg(5).contains("timestamp"),
        "{}",
        msg(5)
    );
    assert!(msg(6).contains("999.1.1.1"), "{}", msg(6));
}

#[test]
fn loose_ecs_shapes_are_accepted() {
    // Single strings where ECS allows lists, numeric ids, epoch millis,
    // unknown event types dropped, unknown categories become `other`.
    let e = parse_ecs_json(
        r#"{"@timestamp": 1725435151324, "event": {"category": "network", "type": ["connection", "bogus"], "id": 42},
            "host": {"id": 7}, "user": {"id": ["502", "0"]}, "destination": {"ip": "::ffff:10.0.0.1", "port": 443}}"#,
    )
    .unwrap();
    assert_eq!(e.timestamp_ns, 1_725_435_151_324_000_000);
    assert_eq!(e.event.category, Category::Network);
    assert_eq!(e.event.types, [EventType::Connection]);
    assert_eq!(e.event.id.as_deref(), Some("42"));
    assert_eq!(e.host.id.as_deref(), Some("7"));
    assert_eq!(e.user.id.as_deref(), Some("502"));
    let other =
        parse_ecs_json(r#"{"@timestamp": "2024-01-01T00:00:00Z", "event": {"category": ["web"]}}"#)
            .unwrap();
    assert_eq!(other.event.category, Category::Other);
    assert!(
        parse_ecs_json(r#"{"@timestamp": "2024-01-01T00:00:00Z", "process": {"pid": -1}}"#)
            .is_err()
    );
    assert!(parse_ecs_json("42").is_err());
}

#[test]
fn absurdly_nested_parents_are_an_error_not_a_crash() {
    let depth = 5_000;
    let mut json = String::from(r#"{"@timestamp": 0, "process": "#);
    for _ in 0..depth {
        json.push_str(r#"{"parent": "#);
    }
    json.push_str("{}");
    for _ in 0..depth {
        json.push('}');
    }
    json.push('}');
    assert!(parse_ecs_json(&json).is_err());
}

/// Documents as other tools write them: dotted keys are object paths (as
/// Elasticsearch reads them), and a document without `@timestamp` is an
/// error for its line, not an event at 1970.
#[test]
fn dotted_keys_are_paths_and_a_missing_timestamp_is_an_error() {
    let e = parse_ecs_json(
        r#"{"@timestamp": "2024-01-01T00:00:00Z", "event.category": "process", "process.name": "curl", "process": {"pid": 7, "parent.name": "sh"}, "note": "a.b: not a key"}"#,
    )
    .unwrap();
    assert_eq!(e.process.name.as_deref(), Some("curl"));
    assert_eq!(e.process.pid, Some(7));
    assert_eq!(
        e.process.parent.as_ref().and_then(|p| p.name.as_deref()),
        Some("sh")
    );
    assert_eq!(e.event.category, vigil_dsl::event::Category::Process);
    // The same document nested reads the same.
    let nested = parse_ecs_json(
        r#"{"@timestamp": "2024-01-01T00:00:00Z", "event": {"category": "process"}, "process": {"name": "curl", "pid": 7, "parent": {"name": "sh"}}}"#,
    )
    .unwrap();
    // The rest of the document is kept too, outside the schema.
    assert_eq!(
        e.extra.get("note"),
        Some(&vigil_dsl::event::ExtraValue::Str("a.b: not a key".into()))
    );
    let mut without_note = e.clone();
    without_note.extra = Default::default();
    assert_eq!(without_note, nested);
    let err = parse_ecs_json(r#"{"process": {"name": "curl"}}"#).unwrap_err();
    assert!(err.contains("@timestamp"), "{err}");
    // A string value that looks like a dotted key changes nothing.
    let plain = parse_ecs_json(
        r#"{"@timestamp": "2024-01-01T00:00:00Z", "process": {"command_line": "x \"a.b\": y"}}"#,
    )
    .unwrap();
    assert_eq!(plain.process.command_line.as_deref(), Some("x \"a.b\": y"));
}

/// A read error ends the stream after one report: reading a directory or
/// a broken device fails on every call, and must not loop forever.
#[test]
fn a_read_error_is_reported_once_and_ends_the_stream() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("Is a directory"))
        }
    }
    let results: Vec<_> = EcsReader::new(std::io::BufReader::new(Broken))
        .take(10)
        .collect();
    assert_eq!(results.len(), 1);
    assert!(results[0]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("read error"));
}
