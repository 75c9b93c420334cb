//! The `vigil` binary against real files: replay, run, hunt, rules, spool.

use std::fs;

use vigil_e2e::{ndjson, repo, stderr, stdout, vigil, SHIPPED_RULE_IDS};

fn positive_fixture_events(dir: &std::path::Path) -> std::path::PathBuf {
    let mut all = String::new();
    let root = repo().join("dsl/rules/fixtures");
    let mut rules: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    rules.sort();
    for rule in rules {
        let mut cases: Vec<_> = fs::read_dir(&rule)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        cases.sort();
        for case in cases.iter().filter(|c| {
            c.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("positive")
        }) {
            all.push_str(&fs::read_to_string(case.join("events.ndjson")).unwrap());
        }
    }
    let out = dir.join("positives.ndjson");
    fs::write(&out, all).unwrap();
    out
}

#[test]
fn replay_raises_every_shipped_rule_and_fills_a_spool() {
    let dir = tempfile::tempdir().unwrap();
    let events = positive_fixture_events(dir.path());
    let spool = dir.path().join("r.spool");
    let o = vigil()
        .args(["replay"])
        .arg(&events)
        .arg("--spool")
        .arg(&spool)
        .args(["--spool-size-mb", "4"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let alerts = ndjson(&stdout(&o));
    for id in SHIPPED_RULE_IDS {
        assert!(
            alerts.iter().any(|a| a["rule"]["id"] == id),
            "no alert for {id}"
        );
    }
    for a in &alerts {
        assert_eq!(
            a["id"].as_str().unwrap().len(),
            32,
            "stable 128-bit alert id"
        );
        assert!(!a["events"].as_array().unwrap().is_empty());
    }
    let lines = fs::read_to_string(&events).unwrap().lines().count() as u64;
    let info = vigil()
        .args(["spool", "info", "--json"])
        .arg(&spool)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(&stdout(&info)).unwrap();
    assert_eq!(info["events"].as_u64().unwrap(), lines);
    assert_eq!(info["corrupt_blocks"].as_u64().unwrap(), 0);
    // The same alerts again: replay is deterministic.
    let again = vigil().args(["replay"]).arg(&events).output().unwrap();
    assert_eq!(ndjson(&stdout(&again)), alerts);
}

#[test]
fn a_malformed_line_is_skipped_and_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let events = positive_fixture_events(dir.path());
    let mut text = fs::read_to_string(&events).unwrap();
    text.insert_str(0, "{not json\n");
    fs::write(&events, text).unwrap();
    let o = vigil().arg("replay").arg(&events).output().unwrap();
    assert!(o.status.success());
    assert!(stderr(&o).contains("line 1"), "{}", stderr(&o));
    assert!(!ndjson(&stdout(&o)).is_empty());
}

#[test]
fn run_synthetic_then_hunt_finds_exactly_the_planted_chains() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cfg = dir.path().join("vigil.toml");
    fs::write(
        &cfg,
        "[source]\nsynthetic_plant_every = 1000\n[outputs]\nstdout = false\n",
    )
    .unwrap();
    let o = vigil()
        .args([
            "run",
            "--source",
            "synthetic",
            "--synthetic-events",
            "30000",
            "--synthetic-rate",
            "0",
            "--spool-size-mb",
            "64",
        ])
        .arg("--config")
        .arg(&cfg)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let status = vigil()
        .args(["status", "--json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["received"], 30000);
    let (processed, dropped) = (
        status["processed"].as_u64().unwrap(),
        status["dropped"].as_u64().unwrap(),
    );
    assert_eq!(processed + dropped, 30000);
    assert_eq!(status["spooled"].as_u64().unwrap(), processed);

    let spool = state.join("events.spool");
    // The rule, hunted over the history, finds exactly what it raised live:
    // every planted chain and none of the near misses.
    let live: Vec<_> = ndjson(&fs::read_to_string(state.join("alerts.ndjson")).unwrap())
        .into_iter()
        .filter(|a| a["rule"]["id"] == "macos-installer-child-network")
        .collect();
    assert!(
        live.len() >= 25,
        "planted chains raised {} alerts",
        live.len()
    );
    let hunted = vigil()
        .args([
            "hunt",
            "--json",
            "--rule",
            "macos-installer-child-network",
            "--spool",
        ])
        .arg(&spool)
        .output()
        .unwrap();
    assert_eq!(hunted.status.code(), Some(0), "{}", stderr(&hunted));
    let hunted = ndjson(&stdout(&hunted));
    let ids = |v: &[serde_json::Value]| {
        v.iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&hunted), ids(&live));
    for a in &hunted {
        let sh = a["join_key"]["process.entity_id"].as_str().unwrap();
        assert!(
            sh.starts_with("sh-"),
            "only planted installer shells match, not near misses: {sh}"
        );
    }
    // The same sequence typed as a query finds the same chains.
    let q = "sequence by host.id with maxspan=15s [process where event.action == \"exec\" and process.parent.name : \"installer\" and process.name : \"sh\"] by process.entity_id [network where process.name : \"curl\"] by process.parent.entity_id";
    let seq = vigil()
        .args(["hunt", "--count", "--spool"])
        .arg(&spool)
        .arg(q)
        .output()
        .unwrap();
    assert_eq!(
        stdout(&seq).trim(),
        live.len().to_string(),
        "{}",
        stderr(&seq)
    );
    // A filter hunt agrees with a stacking count of the same query.
    let curl = vigil()
        .args(["hunt", "--json", "--spool"])
        .arg(&spool)
        .arg("process where process.name : \"CURL\"")
        .output()
        .unwrap();
    assert_eq!(curl.status.code(), Some(0), "{}", stderr(&curl));
    let hits = ndjson(&stdout(&curl));
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|e| e["process"]["name"] == "curl"));
    let count = vigil()
        .args(["hunt", "--count", "--spool"])
        .arg(&spool)
        .arg("process where process.name : \"CURL\"")
        .output()
        .unwrap();
    assert_eq!(stdout(&count).trim(), hits.len().to_string());
    // Nothing found: exit 1.
    let none = vigil()
        .args(["hunt", "--count", "--spool"])
        .arg(&spool)
        .arg("process where process.name == \"no-such-program\"")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(1));
    // A bad query: exit 2 with a position.
    let bad = vigil()
        .args(["hunt", "--spool"])
        .arg(&spool)
        .arg("process where process.nmae == \"x\"")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("query:1:15"), "{}", stderr(&bad));
}

#[test]
fn invalid_configuration_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vigil.toml");
    fs::write(
        &cfg,
        "[spool]\nsize_mb = 0\n[queue]\ncapacity = 0\n[correlator]\nmax_open_per_rule = 0\n",
    )
    .unwrap();
    let o = vigil()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    for needle in [
        "spool.size_mb",
        "queue.capacity",
        "correlator.max_open_per_rule",
    ] {
        assert!(err.contains(needle), "missing {needle}: {err}");
    }
    fs::write(&cfg, "[spool]\nsize_gb = 1\n").unwrap();
    let o = vigil()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("size_gb"), "{}", stderr(&o));
}

#[test]
fn rules_check_points_at_file_line_column_and_keeps_good_rules() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("mine.rhai"),
        "rule(#{ id: \"good\", query: `process where process.name == \"x\"` });\n\
         rule(#{ id: \"bad\", query: `\nprocess where\n  process.nmae == \"x\"` });\n",
    )
    .unwrap();
    // A field vigil's events never carry is a warning (the rule loads and
    // the field reads as missing, as Elasticsearch's open mapping has it)...
    let o = vigil()
        .args(["rules", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("warning: ")
            && err.contains(
                "mine.rhai:4:3: rule bad: vigil's own events have no field `process.nmae`"
            ),
        "{err}"
    );
    // ... and an error with --strict, at the same place.
    let o = vigil()
        .args(["rules", "check", "--strict"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error: ") && stderr(&o).contains("mine.rhai:4:3: rule bad:"),
        "{}",
        stderr(&o)
    );
    // A real error in the same file: the other rules still load.
    fs::write(
        dir.path().join("broken.rhai"),
        "rule(#{ id: \"broken\", query: `process where process.pid == \"x\"` });\n",
    )
    .unwrap();
    let o = vigil()
        .args(["rules", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("broken.rhai:1:") && stderr(&o).contains("rule broken:"),
        "{}",
        stderr(&o)
    );
    let list = vigil()
        .args(["rules", "list", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    let ids: Vec<_> = ndjson(&stdout(&list))
        .into_iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ids.contains(&"good".to_string())
            && ids.contains(&"bad".to_string())
            && !ids.contains(&"broken".to_string()),
        "{ids:?}"
    );
    assert!(
        ids.len() >= 7,
        "shipped rules load beside the user's: {ids:?}"
    );
}

#[test]
fn rules_test_runs_a_directory_of_fixtures_and_shows_diffs() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("r.rhai"),
        "rule(#{ id: \"curl-seen\", query: `process where process.name == \"curl\"` });",
    )
    .unwrap();
    let case = dir.path().join("fixtures/curl-seen/wrong-expectation");
    fs::create_dir_all(&case).unwrap();
    fs::write(
        case.join("events.ndjson"),
        "{\"@timestamp\":\"2024-01-01T00:00:00Z\",\"event\":{\"id\":\"e1\",\"category\":[\"process\"],\"type\":[\"start\"]},\"process\":{\"name\":\"curl\"}}\n",
    )
    .unwrap();
    fs::write(case.join("expected.ndjson"), "").unwrap();
    let o = vigil()
        .args(["rules", "test"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("+ {\"rule_id\":\"curl-seen\",\"event_ids\":[\"e1\"]"),
        "{}",
        stdout(&o)
    );
    fs::write(
        case.join("expected.ndjson"),
        "{\"rule_id\":\"curl-seen\",\"event_ids\":[\"e1\"]}\n",
    )
    .unwrap();
    let o = vigil()
        .args(["rules", "test"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[cfg(not(target_os = "macos"))]
#[test]
fn macos_sources_explain_themselves_elsewhere_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (source, needle) in [
        ("endpoint-security", "only runs on macOS"),
        ("eslogger", "needs macOS"),
    ] {
        let o = vigil()
            .args([
                "run",
                "--spool-size-mb",
                "4",
                "--source",
                source,
                "--state-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{source}");
        assert!(stderr(&o).contains(needle), "{source}: {}", stderr(&o));
    }
}

/// Input with no readable event is an input error (exit 2), not a quiet
/// "no alerts"; one good line among bad ones is a replay (exit 0), and a
/// document without any time is one of the bad lines.
#[test]
fn replay_of_nothing_but_bad_lines_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ndjson");
    fs::write(&bad, "not json\n{\"process\": {\"name\": \"curl\"}}\n").unwrap();
    let o = vigil().arg("replay").arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("2 bad lines"), "{}", stderr(&o));
    assert!(stderr(&o).contains("@timestamp"), "{}", stderr(&o));
    let mixed = dir.path().join("mixed.ndjson");
    fs::write(
        &mixed,
        "not json\n{\"@timestamp\": \"2024-01-01T00:00:00Z\", \"event.category\": \"process\", \"process.name\": \"curl\"}\n",
    )
    .unwrap();
    let o = vigil().arg("replay").arg(&mixed).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("replayed 1 events (1 bad lines)"),
        "{}",
        stderr(&o)
    );
}

/// Hardening (issue 25, items 5 and 8): `vigil replay DIR` is a clear error
/// at once (it used to read "Is a directory" forever), and a client
/// command whose reader goes away ends quietly, as Unix tools do (it used
/// to panic: "failed printing to stdout: Broken pipe").
#[test]
fn replay_of_a_directory_fails_at_once_and_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let o = vigil().arg("replay").arg(dir.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));

    use std::io::{BufRead, BufReader};
    // --json: more than a pipe holds (~450 KB), so writes go on after the
    // reader has gone.
    let mut child = vigil()
        .args(["rules", "list", "--json"])
        .arg(repo().join("tests/fixtures/elastic-rules/protections-artifacts"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone now (dropped above): like `| head -1`.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!first.is_empty());
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert_ne!(out.status.code(), Some(101), "{err}");
}

/// Hardening (issue 25, item 6): `vigil spool info --verify` reads every
/// block and says what a reader would find (exit 1 on damage); the plain
/// view says it looked at block headers only, and a file shorter than its
/// header claims is called truncated.
#[test]
fn spool_info_verify_reports_what_a_reader_would_find() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("e.ndjson");
    let syn = vigil()
        .args(["synthetic", "--events", "20000"])
        .output()
        .unwrap();
    fs::write(&events, &syn.stdout).unwrap();
    let spool = dir.path().join("s.spool");
    let o = vigil()
        .args(["replay", "--spool-size-mb", "8", "--spool"])
        .arg(&spool)
        .arg(&events)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let plain = vigil()
        .args(["spool", "info"])
        .arg(&spool)
        .output()
        .unwrap();
    assert!(
        stdout(&plain).contains("block headers only"),
        "{}",
        stdout(&plain)
    );
    let good = vigil()
        .args(["spool", "info", "--verify"])
        .arg(&spool)
        .output()
        .unwrap();
    assert_eq!(good.status.code(), Some(0), "{}", stdout(&good));
    assert!(
        stdout(&good).contains("0 unreadable; 20000 events readable, 0 records undecodable"),
        "{}",
        stdout(&good)
    );
    // Damage the middle of the first block's payload.
    let mut bytes = fs::read(&spool).unwrap();
    for b in &mut bytes[4096 + 2000..4096 + 2400] {
        *b ^= 0x5a;
    }
    fs::write(&spool, &bytes).unwrap();
    let bad = vigil()
        .args(["spool", "info", "--verify"])
        .arg(&spool)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));
    assert!(
        !stdout(&bad).contains("20000 events readable"),
        "{}",
        stdout(&bad)
    );
    // A file cut down to its header page.
    fs::write(&spool, &bytes[..4096]).unwrap();
    let cut = vigil()
        .args(["spool", "info"])
        .arg(&spool)
        .output()
        .unwrap();
    assert!(stdout(&cut).contains("TRUNCATED"), "{}", stdout(&cut));
}

/// `state_dir` in the config file moves the spool and the alerts file with
/// it (a test agent must not append to the system agent's alerts), and the
/// agent keeps its history private whatever the umask it was started with:
/// the folder 0700, its files 0600, also when an earlier run left them open.
#[test]
fn state_dir_from_the_config_holds_private_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).unwrap();
    // Left world-readable by an earlier, looser run.
    fs::write(state.join("alerts.ndjson"), "").unwrap();
    fs::set_permissions(
        state.join("alerts.ndjson"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let cfg = dir.path().join("vigil.toml");
    fs::write(
        &cfg,
        format!(
            "state_dir = {:?}\n[source]\nsynthetic_plant_every = 1000\n[outputs]\nstdout = false\n[spool]\nsize_mb = 16\n",
            state.display().to_string()
        ),
    )
    .unwrap();
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 022; exec {} run --source synthetic --synthetic-events 5000 --synthetic-rate 0 --config {}",
            vigil_e2e::vigil_bin().display(),
            cfg.display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    for f in ["alerts.ndjson", "events.spool", "status.json"] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
    // The planted chains were written there, not to /var/lib/vigil.
    let alerts = fs::read_to_string(state.join("alerts.ndjson")).unwrap();
    assert!(!alerts.is_empty());
}
