//! Golden tests for the eslogger → ECS mapping, and the shipped rules on an
//! installer → sh → curl chain written as eslogger lines.
//!
//! Golden files live in `agent/tests/golden/eslogger/`. After an intended
//! mapping change, regenerate them and review the diff:
//!
//!     UPDATE_GOLDEN=1 cargo test -p vigil --test eslogger_golden

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use dsl::correlate::Correlator;
use dsl::correlate::CorrelatorConfig;
use dsl::event::{Category, EventType, Process};
use dsl::Event;
use serde_json::{json, Value};
use vigil::sources::es::eslogger::EsloggerMapper;
use vigil::sources::es::mapping::{network_event, MapContext, SocketConn};

const HOST: &str = "golden-mac";

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_dir() -> PathBuf {
    manifest().join("tests/golden/eslogger")
}

/// The real eslogger lines (see ../shared/samples/SOURCES.md).
fn sample_files() -> Vec<PathBuf> {
    let dir = manifest().join("../dsl/tests/data/eslogger");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no eslogger samples in {}",
        dir.display()
    );
    files
}

fn ctx() -> MapContext {
    MapContext::macos(HOST, None, None, None)
}

/// One entry per non-blank input line: the ECS document, or why none.
fn render(input: &str) -> (Value, Vec<Event>) {
    let mut mapper = EsloggerMapper::new(ctx());
    let mut entries = Vec::new();
    let mut events = Vec::new();
    for (i, line) in input.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry = match mapper.map_line(line) {
            Ok(Some(e)) => {
                let doc: Value =
                    serde_json::from_str(&dsl::ecs::to_ecs_json(&e)).expect("ECS JSON");
                events.push(e);
                json!({ "line": i + 1, "ecs": doc })
            }
            Ok(None) => json!({ "line": i + 1, "skipped": true }),
            Err(err) => json!({ "line": i + 1, "malformed": err.to_string() }),
        };
        entries.push(entry);
    }
    let s = mapper.stats();
    let doc = json!({
        "entries": entries,
        "stats": {
            "lines": s.lines,
            "mapped": s.mapped,
            "malformed": s.malformed,
            "skipped": s.skipped,
            "kernel_dropped": s.kernel_dropped,
            "seq_restarts": s.seq_restarts,
        },
    });
    (doc, events)
}

/// Compares with the golden file, or rewrites it under UPDATE_GOLDEN=1.
fn check_golden(name: &str, actual: &Value) {
    let path = golden_dir().join(name);
    let text = serde_json::to_string_pretty(actual).expect("JSON") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir()).expect("golden dir");
        std::fs::write(&path, &text).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with UPDATE_GOLDEN=1 cargo test -p vigil --test eslogger_golden",
            path.display()
        )
    });
    if expected != text {
        let at = expected
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(text.lines().count()));
        let show = |s: &str| {
            s.lines()
                .skip(at.saturating_sub(3))
                .take(7)
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "{} differs from the mapping at line {}:\n--- golden\n{}\n--- actual\n{}\n\
             (if the change is intended: UPDATE_GOLDEN=1 cargo test -p vigil --test eslogger_golden)",
            path.display(),
            at + 1,
            show(&expected),
            show(&text)
        );
    }
}

fn golden_name(input: &Path) -> String {
    format!(
        "{}.golden.json",
        input
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name")
    )
}

#[test]
fn every_real_eslogger_line_maps_to_its_golden_ecs_event() {
    for file in sample_files() {
        let input = std::fs::read_to_string(&file).expect("read sample");
        let (doc, events) = render(&input);
        let real_lines = input.lines().filter(|l| !l.trim().is_empty()).count();
        assert_eq!(
            events.len(),
            real_lines,
            "{}: every real line must map to an event: {}",
            file.display(),
            doc["stats"]
        );
        check_golden(&golden_name(&file), &doc);
    }
}

/// Facts checked by hand against the raw lines, so the golden files are not
/// the only judge.
#[test]
fn real_samples_keep_identity_and_paths() {
    let input = std::fs::read_to_string(&sample_files()[0]).expect("read");
    let (_, ev) = render(&input);
    assert_eq!(ev.len(), 4);

    // Line 1: exit of /usr/sbin/ipconfig (object token, pid 11221 v170692).
    assert_eq!(ev[0].event.action.as_deref(), Some("exit"));
    assert_eq!(
        ev[0].process.executable.as_deref(),
        Some("/usr/sbin/ipconfig")
    );
    assert_eq!(
        ev[0].process.entity_id.as_deref(),
        Some("golden-mac-11221-170692")
    );
    assert_eq!(ev[0].process.exit_code, Some(0));
    assert_eq!(ev[0].process.parent.as_ref().and_then(|p| p.pid), Some(532));

    // Line 2: /bin/nu execs /bin/connection-checker; the new image has the
    // next pidversion, args come from event.exec.args, env is ignored.
    let exec = &ev[1];
    assert_eq!(exec.event.types, [EventType::Start]);
    assert_eq!(exec.process.pid, Some(97391));
    assert_eq!(
        exec.process.entity_id.as_deref(),
        Some("golden-mac-97391-149092")
    );
    assert_eq!(&*exec.process.args[0], "/bin/connection-checker");
    assert_eq!(exec.process.args.len(), 1);
    assert_eq!(
        exec.process.working_directory.as_deref(),
        Some("/bin/mullvadvpn-app")
    );
    assert_eq!(
        exec.process.code_signature.signing_id.as_deref(),
        Some("connection_checker-04fde7bdb8bceee3")
    );
    assert_eq!(
        exec.process.code_signature.trusted,
        Some(false),
        "ad-hoc signed"
    );
    assert_eq!(
        exec.process
            .parent
            .as_ref()
            .and_then(|p| p.entity_id.as_deref()),
        Some("golden-mac-58916-87724")
    );
    let doc = dsl::ecs::to_ecs_json(exec);
    assert!(!doc.contains("FOO=bar"), "env must not be mapped: {doc}");

    // Line 3 (macOS 26): array tokens [auid, euid, egid, ruid, rgid, pid, asid, pidversion].
    let fork = &ev[2];
    assert_eq!(fork.event.action.as_deref(), Some("fork"));
    assert_eq!(fork.process.pid, Some(21497));
    assert_eq!(
        fork.process.entity_id.as_deref(),
        Some("golden-mac-21497-38282")
    );
    assert_eq!(fork.user.id.as_deref(), Some("501"));
    let parent = fork.process.parent.as_deref().expect("fork parent");
    assert_eq!(parent.entity_id.as_deref(), Some("golden-mac-19745-35165"));
    assert_eq!(parent.name.as_deref(), Some("Mullvad VPN"));
    assert_eq!(
        fork.process.code_signature.team_id.as_deref(),
        Some("CKG9MXH72F")
    );

    // Line 4 (macOS 27 beta, version 11): object tokens again.
    let x = &ev[3];
    assert_eq!(
        x.process.executable.as_deref(),
        Some("/System/Library/PrivateFrameworks/IntlPreferences.framework/Support/localizationswitcherd")
    );
    assert_eq!(
        x.process.entity_id.as_deref(),
        Some("golden-mac-11085-25189")
    );
    assert_eq!(x.process.parent.as_ref().and_then(|p| p.pid), Some(1));
    assert_eq!(x.process.code_signature.platform_binary, Some(true));
    assert!(ev
        .iter()
        .all(|e| e.host.os.os_type.as_deref() == Some("macos")));
}

fn chain_input() -> String {
    std::fs::read_to_string(golden_dir().join("installer-chain.ndjson")).expect("chain input")
}

#[test]
fn installer_chain_maps_to_its_golden_ecs_events() {
    let (doc, events) = render(&chain_input());
    assert_eq!(doc["stats"]["malformed"], 0);
    assert_eq!(events.len(), 13);
    check_golden("installer-chain.golden.json", &doc);
}

/// The network event the macOS socket poller would emit for curl's
/// connection: eslogger has no TCP events (nor does Endpoint Security), so
/// on a Mac this stage comes from libproc polling, not from eslogger.
fn curl_connection(events: &[Event]) -> Event {
    let curl = events
        .iter()
        .find(|e| {
            e.process.name.as_deref() == Some("curl") && e.event.action.as_deref() == Some("exec")
        })
        .expect("curl exec in the chain");
    let conn = SocketConn {
        pid: curl.process.pid.expect("pid") as i32,
        local: "192.168.1.23:50744".parse().expect("addr"),
        remote: "203.0.113.50:443".parse().expect("addr"),
        transport: "tcp",
    };
    let process = Process {
        pid: curl.process.pid,
        entity_id: curl.process.entity_id.clone(),
        name: curl.process.name.clone(),
        executable: curl.process.executable.clone(),
        parent: curl.process.parent.as_ref().map(|p| {
            Arc::new(Process {
                pid: p.pid,
                entity_id: p.entity_id.clone(),
                ..Process::default()
            })
        }),
        ..Process::default()
    };
    network_event(&conn, process, &ctx(), curl.timestamp_ns + 180_000_000)
}

fn fired(mut events: Vec<Event>) -> Vec<String> {
    events.sort_by_key(|e| e.timestamp_ns);
    let loaded = vigil::rule_files::load(None, true).expect("shipped rules");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let mut correlator = Correlator::new(Arc::new(loaded.rules), CorrelatorConfig::default());
    let mut alerts = Vec::new();
    for e in &events {
        correlator.process(e, &mut alerts);
    }
    let mut ids: Vec<String> = alerts.into_iter().map(|a| a.rule.id).collect();
    ids.sort();
    ids
}

#[test]
fn shipped_rules_fire_on_the_installer_chain() {
    let (_, events) = render(&chain_input());
    let sh = events
        .iter()
        .find(|e| {
            e.process.name.as_deref() == Some("sh") && e.event.action.as_deref() == Some("exec")
        })
        .expect("sh exec");
    // The parent name comes from the fork line where package_script_service
    // is the acting process: eslogger only gives the parent's audit token.
    assert_eq!(
        sh.process.parent.as_ref().and_then(|p| p.name.as_deref()),
        Some("package_script_service")
    );

    // Process events alone: AN0938 (postinstall shell runs curl, chmod +x
    // and a binary from /private/tmp) fires; the network rules cannot.
    let ids = fired(events.clone());
    assert!(
        ids.iter()
            .any(|i| i == "an0938-installer-postinstall-unusual-child"),
        "{ids:?}"
    );
    assert!(
        !ids.iter().any(|i| i == "macos-installer-child-network"),
        "{ids:?}"
    );

    // With the poller's network event for curl, Elastic's installer rule
    // fires too.
    let mut with_net = events.clone();
    with_net.push(curl_connection(&events));
    let ids = fired(with_net);
    assert!(
        ids.iter().any(|i| i == "macos-installer-child-network"),
        "{ids:?}"
    );
    assert!(
        ids.iter()
            .any(|i| i == "an0938-installer-postinstall-unusual-child"),
        "{ids:?}"
    );
    assert!(
        !ids.iter().any(|i| i.starts_with("an0994-browser")),
        "{ids:?}"
    );
}

#[test]
fn chain_file_events_carry_paths() {
    let (_, events) = render(&chain_input());
    let files: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.event.category == Category::File)
        .map(|e| {
            (
                e.event.action.as_deref().unwrap_or(""),
                e.file
                    .as_ref()
                    .and_then(|f| f.path.as_deref())
                    .unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            ("creation", "/private/tmp/.agent"),
            ("modification", "/private/tmp/.agent")
        ]
    );
}

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

#[test]
fn cli_replays_eslogger_output_and_skips_bad_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("chain.ndjson");
    let mut text = chain_input();
    text.insert_str(0, "this is not json\n{\"truncated\":\n");
    std::fs::write(&input, text).expect("write");
    let out = vigil()
        .args(["replay", "--format", "eslogger", "--host-id", HOST])
        .arg(&input)
        .output()
        .expect("run vigil");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("2 malformed"), "{stderr}");
    let alerts: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert JSON"))
        .collect();
    assert!(
        alerts.iter().any(
            |a| a["rule"]["id"] == "an0938-installer-postinstall-unusual-child"
                && a["host_id"] == HOST
        ),
        "{alerts:?}"
    );
}

#[test]
fn cli_reads_eslogger_from_stdin() {
    use std::io::Write;
    let mut child = vigil()
        .args(["replay", "--format", "eslogger", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run vigil");
    let input = std::fs::read(&sample_files()[0]).expect("sample");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("4 mapped"), "{stderr}");
}

/// Every prefix of every real line, and lines with bytes overwritten, are
/// errors or events, never panics: eslogger output is untrusted input.
#[test]
fn truncated_and_corrupted_lines_never_panic() {
    let mut mapper = EsloggerMapper::new(ctx());
    let mut lines: Vec<String> = std::fs::read_to_string(&sample_files()[0])
        .expect("sample")
        .lines()
        .map(str::to_string)
        .collect();
    lines.extend(chain_input().lines().take(2).map(str::to_string));
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const POOL: &[u8] = b"{}[]\":,09aZ\\/\xff ";
    let mut errors = 0u64;
    for line in &lines {
        let bytes = line.as_bytes();
        for cut in (0..bytes.len()).step_by(3) {
            errors += u64::from(mapper.map_bytes(&bytes[..cut]).is_err());
        }
        for _ in 0..300 {
            let mut b = bytes.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() % b.len() as u64) as usize;
                b[at] = POOL[(next() % POOL.len() as u64) as usize];
            }
            let _ = mapper.map_bytes(&b);
        }
    }
    assert!(
        errors > 1000,
        "truncated lines must be reported as malformed"
    );
    assert!(mapper.stats().malformed >= errors);
}
