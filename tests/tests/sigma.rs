//! Sigma rules through the real CLI: SigmaHQ's macOS rules load from a
//! rules directory, and the same events raise the same alerts through the
//! Sigma files and through the rhai rules `vigil rules import` makes of them.

use std::path::{Path, PathBuf};

use vigil_e2e::{ndjson, repo, stderr, stdout, vigil};

fn sigma_dir(dir: &Path) -> PathBuf {
    let out = dir.join("sigma");
    std::fs::create_dir(&out).unwrap();
    for sub in ["process_creation", "file_event"] {
        let from = repo().join("tests/fixtures/sigma/macos").join(sub);
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, out.join(p.file_name().unwrap())).unwrap();
        }
    }
    out
}

fn exec(ts: u32, exe: &str, args: &[&str]) -> String {
    serde_json::json!({
        "@timestamp": format!("2024-05-01T10:00:{ts:02}Z"),
        "event": {"category": ["process"], "type": ["start"], "action": "exec"},
        "host": {"id": "mac-1", "os": {"type": "macos"}},
        "process": {
            "pid": 100 + ts, "entity_id": format!("e{ts}"), "executable": exe,
            "name": exe.rsplit('/').next().unwrap(), "args": args, "command_line": args.join(" "),
            "parent": {"pid": 1, "name": "zsh", "executable": "/bin/zsh"}
        }
    })
    .to_string()
}

fn replay(rules: &Path, events: &Path) -> Vec<(String, String)> {
    let o = vigil()
        .args(["replay", "--no-shipped-rules", "--rules"])
        .arg(rules)
        .arg(events)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut got: Vec<(String, String)> = ndjson(&stdout(&o))
        .iter()
        .map(|a| {
            (
                a["rule"]["id"].as_str().unwrap().to_string(),
                a["@timestamp"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    got
}

#[test]
fn sigma_rules_and_their_imported_form_raise_the_same_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let sigma = sigma_dir(dir.path());
    let check = vigil()
        .args(["rules", "check"])
        .arg(&sigma)
        .output()
        .unwrap();
    assert!(
        stderr(&check).contains("75 rules loaded, 0 errors"),
        "{}",
        stderr(&check)
    );

    let imported = dir.path().join("imported");
    let o = vigil()
        .args(["rules", "import"])
        .arg(&sigma)
        .arg("--out")
        .arg(&imported)
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("69 imported, 0 skipped, 0 failed"),
        "{}",
        stderr(&o)
    );

    let events = dir.path().join("events.ndjson");
    let lines = [
        exec(
            1,
            "/usr/sbin/screencapture",
            &["screencapture", "-x", "/tmp/s.png"],
        ),
        exec(
            2,
            "/usr/bin/osascript",
            &["osascript", "-e", "display dialog \"hi\""],
        ),
        exec(3, "/usr/bin/grep", &["grep", "santad"]),
        exec(4, "/usr/sbin/arp", &["arp", "-a"]),
        exec(
            5,
            "/bin/launchctl",
            &[
                "launchctl",
                "unload",
                "/Library/LaunchDaemons/com.objective-see.lulu.plist",
            ],
        ),
        // Near misses: grep of something else; osascript running a file
        // without ` -e `.
        exec(6, "/usr/bin/grep", &["grep", "-r", "TODO", "."]),
        exec(7, "/usr/bin/osascript", &["osascript", "notes"]),
    ];
    std::fs::write(&events, lines.join("\n")).unwrap();
    let from_sigma = replay(&sigma, &events);
    let from_rhai = replay(&imported, &events);
    assert_eq!(from_sigma, from_rhai);
    let ids: Vec<&str> = from_sigma.iter().map(|(id, _)| id.as_str()).collect();
    // screencapture, AppleScript, security software discovery, arp, LuLu.
    for t in ["10:00:01", "10:00:02", "10:00:03", "10:00:04", "10:00:05"] {
        assert!(
            from_sigma.iter().any(|(_, ts)| ts.contains(t)),
            "nothing at {t}: {from_sigma:?}"
        );
    }
    assert!(
        !from_sigma
            .iter()
            .any(|(_, ts)| ts.contains("10:00:06") || ts.contains("10:00:07")),
        "{from_sigma:?}"
    );
    assert!(
        ids.contains(&"1bc2e6c5-0885-472b-bed6-be5ea8eace55"),
        "{ids:?}"
    );
}

#[test]
fn a_broken_sigma_rule_is_reported_where_it_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yml"),
        "title: bad\nid: bad\nlogsource:\n    category: process_creation\n    product: macos\ndetection:\n    selection:\n        Image|endswith: '/curl'\n    condition: selection and filter\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("good.yml"),
        "title: good\nid: good\nlogsource:\n    category: process_creation\n    product: macos\ndetection:\n    selection:\n        Image|endswith: '/curl'\n    condition: selection\n",
    )
    .unwrap();
    let o = vigil()
        .args(["rules", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.yml:9:30: the condition names `filter`"),
        "{err}"
    );
    // The good one still loads (6 shipped + 1).
    assert!(err.contains("7 rules loaded, 1 errors"), "{err}");
}
