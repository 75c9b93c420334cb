//! The syslog sink against a real rsyslog (Debian's, started privately by
//! scripts/rsyslog-test.sh): RFC 5424 with octet-counted framing over TCP
//! and over TLS; every alert arrives intact, in order. A sink that does not
//! trust the server's certificate delivers nothing and says why.

use std::fs;
use std::time::Duration;

use serde_json::Value;
use vigil_e2e::receivers::{alerts_in, positive_fixtures, wait_until, Agent, Rsyslog};

/// (facility.severity, app-name, msgid, structured data, alert) of one
/// rsyslog output line.
fn parse(line: &str) -> (String, String, String, String, Value) {
    let f: Vec<&str> = line.splitn(5, '\t').collect();
    assert_eq!(f.len(), 5, "{line}");
    let alert = serde_json::from_str(f[4].trim())
        .unwrap_or_else(|e| panic!("message is not the alert JSON ({e}): {}", f[4]));
    (f[0].into(), f[1].into(), f[2].into(), f[3].into(), alert)
}

#[test]
fn rsyslog_receives_every_alert_intact_over_tcp_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let rs = Rsyslog::start(&dir.path().join("rsyslog"));
    let events = positive_fixtures(dir.path());
    let cfg = dir.path().join("vigil.toml");
    fs::write(
        &cfg,
        format!(
            r#"
[outputs]
stdout = false
[outbox]
drain_timeout_ms = 1000
[[sinks]]
kind = "syslog"
name = "tcp"
address = "127.0.0.1:{tcp}"
facility = "local3"
batch_max = 2
[[sinks]]
kind = "syslog"
name = "tls"
address = "127.0.0.1:{tls}"
tls = true
ca_file = "{ca}"
[[sinks]]
kind = "syslog"
name = "untrusted"
address = "127.0.0.1:{tls}"
tls = true
retry_min_ms = 50
"#,
            tcp = rs.tcp_port,
            tls = rs.tls_port,
            ca = rs.dir.join("ca.pem").display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let agent = Agent::replaying(&events, 8, &cfg, &state);
    let expected = |n: usize| {
        move |rs: &Rsyslog| rs.lines("tcp.log").len() >= n && rs.lines("tls.log").len() >= n
    };
    let mut reference = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            reference = alerts_in(&state.join("alerts.ndjson"));
            reference.len() >= 6 && expected(reference.len())(&rs)
        }),
        "rsyslog got {} (tcp) and {} (tls) lines of {} alerts",
        rs.lines("tcp.log").len(),
        rs.lines("tls.log").len(),
        reference.len()
    );
    for (file, facility) in [("tcp.log", "local3"), ("tls.log", "auth")] {
        let got: Vec<_> = rs.lines(file).iter().map(|l| parse(l)).collect();
        assert_eq!(got.len(), reference.len(), "{file}: one message per alert");
        for ((pri, app, msgid, sd, alert), want) in got.iter().zip(&reference) {
            assert_eq!(alert, want, "{file}: the alert arrives intact");
            let severity = match want["rule"]["severity"].as_str().unwrap() {
                "critical" => "crit",
                "high" => "err",
                "medium" => "warning",
                _ => "notice",
            };
            assert_eq!(pri, &format!("{facility}.{severity}"));
            assert_eq!((app.as_str(), msgid.as_str()), ("vigil", "alert"));
            let id = want["id"].as_str().unwrap();
            assert!(
                sd.starts_with(&format!(
                    "[vigil@32473 id=\"{id}\" rule=\"{}\"",
                    want["rule"]["id"].as_str().unwrap()
                )),
                "{sd}"
            );
        }
    }
    let st = agent.status();
    let untrusted = st["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "untrusted")
        .unwrap()
        .clone();
    assert_eq!(untrusted["delivered"], 0, "{untrusted}");
    assert_eq!(
        untrusted["backlog"].as_u64().unwrap() as usize,
        reference.len()
    );
    assert!(
        untrusted["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("UnknownIssuer"),
        "{untrusted}"
    );
    let (status, err) = agent.stop();
    assert!(status.success(), "{err}");
}
