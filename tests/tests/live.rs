//! The live agent on this machine: real processes, real sockets, real
//! kernel sources. Needs root (process connector, fanotify); without it each
//! test prints SKIP and returns.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vigil_e2e::{is_root, ndjson, stdout, vigil, vigil_bin};

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(mut f: impl FnMut() -> bool, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn installer_chain_raises_the_alert_with_its_process_tree_and_is_spooled() {
    if !is_root() {
        eprintln!("SKIP: the live agent needs root (process connector, fanotify)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let agent = Agent(
        Command::new(vigil_bin())
            .args([
                "run",
                "--source",
                "linux",
                "--spool-size-mb",
                "64",
                "--state-dir",
            ])
            .arg(&state)
            .env("VIGIL_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for(
            || state.join("status.json").exists(),
            Duration::from_secs(10)
        ),
        "agent did not start"
    );

    // A local listener that holds each connection so the socket poller sees it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            std::thread::sleep(Duration::from_millis(800));
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let installer = dir.path().join("installer");
    std::fs::copy("/bin/bash", &installer).unwrap();
    let started = Instant::now();
    let status = Command::new(&installer)
        .arg("-c")
        .arg(format!(
            "sh -c 'curl -s http://127.0.0.1:{port}/; true'; true"
        ))
        .status()
        .unwrap();
    assert!(status.success());

    let alerts_path = state.join("alerts.ndjson");
    let mut alert = None;
    let found = wait_for(
        || {
            let text = std::fs::read_to_string(&alerts_path).unwrap_or_default();
            alert = ndjson(&text)
                .into_iter()
                .find(|a| a["rule"]["id"] == "macos-installer-child-network");
            alert.is_some()
        },
        Duration::from_secs(10),
    );
    assert!(found, "no installer-network alert within 10 s");
    eprintln!(
        "alert after {:?} (including the 0.8 s the listener holds curl)",
        started.elapsed()
    );
    let alert = alert.unwrap();
    let events = alert["events"].as_array().unwrap();
    assert_eq!(events[0]["process"]["name"], "sh");
    assert_eq!(events[0]["process"]["parent"]["name"], "installer");
    assert_eq!(events[1]["process"]["name"], "curl");
    assert_eq!(events[1]["destination"]["port"], port);
    assert_eq!(
        events[1]["process"]["parent"]["entity_id"],
        events[0]["process"]["entity_id"]
    );
    // The process tree: sh <- installer <- this test.
    let sh_id = events[0]["process"]["entity_id"].as_str().unwrap();
    let chain = alert["enrichments"]["ancestry"][sh_id]
        .as_array()
        .expect("ancestry of sh");
    let names: Vec<_> = chain
        .iter()
        .map(|p| p["name"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(&names[..2], ["sh", "installer"], "{names:?}");
    assert_eq!(chain[1]["executable"], installer.display().to_string());
    assert!(
        chain.iter().any(|p| p["pid"] == std::process::id()),
        "the test process is an ancestor: {names:?}"
    );

    // Stop the agent cleanly; the spool holds the chain.
    // SAFETY: kill with a valid pid and signal number has no memory effects.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    let mut agent = agent;
    let exit = agent.0.wait().unwrap();
    assert!(exit.success(), "agent exit: {exit:?}");
    let spool = state.join("events.spool");
    let hunt = vigil()
        .args(["hunt", "--json", "--spool"])
        .arg(&spool)
        .arg(format!("any where process.parent.name == \"installer\" or (process.name == \"curl\" and destination.port == {port})"))
        .output()
        .unwrap();
    let found = ndjson(&stdout(&hunt));
    assert!(
        found
            .iter()
            .any(|e| e["process"]["name"] == "sh" && e["event"]["action"] == "exec"),
        "sh exec is spooled"
    );
    assert!(
        found.iter().any(|e| e["event"]["category"][0] == "network"),
        "curl's connection is spooled"
    );
}

#[test]
fn without_root_run_explains_what_is_missing_and_exits_2() {
    if !is_root() {
        // Running as a normal user is exactly the case under test.
        let o = vigil()
            .args([
                "run",
                "--source",
                "linux",
                "--state-dir",
                "/tmp/vigil-nonroot-test",
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("root"));
        return;
    }
    // As root, drop to `nobody` for the child.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    std::fs::create_dir_all(&state).unwrap();
    // SAFETY: chown on a path we own; no memory effects.
    let c = std::ffi::CString::new(state.to_str().unwrap()).unwrap();
    unsafe { libc::chown(c.as_ptr(), 65534, 65534) };
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(vigil_bin())
        .args([
            "run",
            "--source",
            "linux",
            "--spool-size-mb",
            "4",
            "--state-dir",
        ])
        .arg(&state)
        .env("VIGIL_LOG", "error")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("root"), "{err}");
}
