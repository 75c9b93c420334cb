//! Alert delivery through the outbox to real receivers: HTTP in the three
//! body formats, a receiver that is down while alerts are raised, and an
//! agent killed with SIGKILL mid-delivery.

use std::fs;
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_e2e::receivers::{
    alerts_in, free_port, positive_fixtures, wait_until, Agent, HttpReceiver,
};
use vigil_e2e::{stderr, vigil};

fn ids(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

/// Panics with a short account of where two id sequences part.
fn assert_same_ids(got: &[String], want: &[String], what: &str) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(g, w)| g != w)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: got {} ids, want {}; first difference at {at}: got {:?}, want {:?}",
            got.len(),
            want.len(),
            got.get(at),
            want.get(at)
        );
    }
}

#[test]
fn http_sinks_send_valid_es_bulk_hec_and_webhook_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let events = positive_fixtures(dir.path());
    let rx = HttpReceiver::start(0);
    let base = format!("http://127.0.0.1:{}", rx.port);
    let state = dir.path().join("state");
    let cfg = dir.path().join("vigil.toml");
    fs::write(
        &cfg,
        format!(
            r#"
[outputs]
stdout = false
[outbox]
drain_timeout_ms = 20000
[[sinks]]
kind = "http"
name = "es"
url = "{base}/_bulk"
format = "es_bulk"
auth_header = "ApiKey test-key"
batch_max = 3
[[sinks]]
kind = "http"
name = "splunk"
url = "{base}/services/collector/event"
format = "splunk_hec"
auth_header_env = "VIGIL_TEST_HEC"
sourcetype = "vigil:test"
index = "security"
[[sinks]]
kind = "http"
name = "hook"
url = "{base}/hook"
format = "webhook"
[[sinks]]
kind = "file"
name = "archive"
path = "{}/archive/alerts.ndjson"
max_mb = 1
"#,
            dir.path().display()
        ),
    )
    .unwrap();
    let o = vigil()
        .env("VIGIL_TEST_HEC", "Splunk hec-token")
        .args(["run", "--spool-size-mb", "8", "--replay"])
        .arg(&events)
        .arg("--config")
        .arg(&cfg)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = alerts_in(&state.join("alerts.ndjson"));
    assert!(reference.len() >= 6, "{} alerts", reference.len());
    rx.with(|got| {
        assert!(
            got.errors.is_empty(),
            "receiver found bad bodies: {:#?}",
            got.errors
        );
        // Every alert arrives intact, once, in order, in every format.
        assert_eq!(got.es_docs, reference);
        assert_eq!(got.es_attempts, ids(&reference), "each alert sent once");
        let hec: Vec<Value> = got.hec_events.iter().map(|e| e["event"].clone()).collect();
        assert_eq!(hec, reference);
        assert!(got
            .hec_events
            .iter()
            .all(|e| e["sourcetype"] == "vigil:test" && e["index"] == "security"));
        assert_eq!(got.webhook, reference);
        assert!(
            got.auth.iter().any(|a| a == "ApiKey test-key"),
            "{:?}",
            got.auth
        );
        assert!(
            got.auth.iter().any(|a| a == "Splunk hec-token"),
            "{:?}",
            got.auth
        );
    });
    assert_eq!(
        alerts_in(&dir.path().join("archive/alerts.ndjson")),
        reference
    );
    // Nothing left behind: every sink acknowledged everything.
    let st = vigil()
        .args(["status", "--json", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let st: Value = serde_json::from_str(&vigil_e2e::stdout(&st)).unwrap();
    for s in st["sinks"].as_array().unwrap() {
        assert_eq!(s["backlog"], 0, "{s}");
        assert_eq!(
            s["delivered"].as_u64().unwrap() as usize,
            reference.len(),
            "{s}"
        );
    }
}

fn fault_config(dir: &std::path::Path, port: u16, batch_max: usize) -> std::path::PathBuf {
    let cfg = dir.join(format!("fault-{batch_max}.toml"));
    fs::write(
        &cfg,
        format!(
            r#"
[outputs]
stdout = false
# Window context is covered by the golden test; off here, it would only
# slow the debug build down on a burst of 1,000 alerts.
[alerts]
window_max_events = 0
[outbox]
drain_timeout_ms = 2000
[[sinks]]
kind = "http"
name = "es"
url = "http://127.0.0.1:{port}/_bulk"
format = "es_bulk"
batch_max = {batch_max}
timeout_ms = 2000
retry_min_ms = 50
retry_max_ms = 300
"#
        ),
    )
    .unwrap();
    cfg
}

fn synthetic(dir: &std::path::Path, name: &str, events: u64, seed: u64) -> std::path::PathBuf {
    let o = vigil()
        .args([
            "synthetic",
            "--plant-every",
            "20",
            "--events",
            &events.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let p = dir.join(name);
    fs::write(&p, &o.stdout).unwrap();
    p
}

/// Waits until the agent has committed every alert of its finished replay.
fn wait_idle(agent: &Agent, events: u64) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(120), || {
        last = agent.status();
        last["processed"].as_u64() == Some(events)
            && last["outbox"]["appended"].as_u64().is_some()
            && last["outbox"]["appended"] == last["alerts"]
    });
    assert!(ok, "the agent did not finish its replay: {last}");
    last
}

#[test]
fn receiver_down_then_up_gets_every_alert_once_in_order_and_sigkill_loses_nothing() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let state = dir.path().join("state");
    let first = synthetic(dir.path(), "first.ndjson", 14_000, 42);
    let events1 = fs::read_to_string(&first).unwrap().lines().count() as u64;

    // 1. The receiver is down while the alerts are raised.
    let agent = Agent::replaying(&first, 32, &fault_config(dir.path(), port, 50), &state);
    let st = wait_idle(&agent, events1);
    let n = st["alerts"].as_u64().unwrap();
    assert!(n >= 1000, "only {n} alerts: plant more chains");
    let es = &st["sinks"][0];
    assert_eq!(
        es["backlog"].as_u64(),
        Some(n),
        "nothing delivered while down: {es}"
    );
    assert!(es["failures"].as_u64().unwrap() > 0, "{es}");
    let reference = alerts_in(&state.join("alerts.ndjson"));
    assert_eq!(reference.len() as u64, n);

    eprintln!("phase 1 done at {:?}", started.elapsed());
    // 2. It comes back: all of them arrive, each once, in order.
    let mut rx = HttpReceiver::start(port);
    assert!(
        wait_until(Duration::from_secs(60), || rx
            .with(|g| g.es_docs.len() as u64 >= n)),
        "only {} of {n} arrived",
        rx.with(|g| g.es_docs.len())
    );
    rx.with(|got| {
        assert!(got.errors.is_empty(), "{:?}", got.errors);
        assert_same_ids(
            &ids(&got.es_docs),
            &ids(&reference),
            "every alert, in order",
        );
        assert_eq!(got.es_attempts.len() as u64, n, "each sent exactly once");
    });
    assert!(wait_until(Duration::from_secs(10), || agent.status()
        ["sinks"][0]["backlog"]
        == 0));
    let (status, err) = agent.stop();
    assert!(status.success(), "{err}");

    eprintln!("phase 2 done at {:?}", started.elapsed());
    // 3. A slow receiver, more alerts, and a SIGKILL mid-delivery.
    rx.set_delay(60);
    let second = synthetic(dir.path(), "second.ndjson", 4_000, 7);
    let events2 = fs::read_to_string(&second).unwrap().lines().count() as u64;
    let agent = Agent::replaying(&second, 32, &fault_config(dir.path(), port, 10), &state);
    let before = rx.with(|g| g.es_docs.len());
    assert!(
        wait_until(Duration::from_secs(60), || rx.with(|g| g.es_docs.len())
            >= before + 30),
        "delivery did not start"
    );
    agent.kill9();
    let all = alerts_in(&state.join("alerts.ndjson"));
    let delivered_at_kill = rx.with(|g| g.es_docs.len());
    assert!(
        delivered_at_kill < all.len(),
        "killed too late to be mid-delivery"
    );

    eprintln!("phase 3 done at {:?}", started.elapsed());
    // 4. Restarted with nothing new to raise: it resumes from its cursor.
    rx.set_delay(0);
    let empty = dir.path().join("empty.ndjson");
    fs::write(&empty, "").unwrap();
    let agent = Agent::spawn(
        &["--keep-running", "--replay", empty.to_str().unwrap()],
        &fault_config(dir.path(), port, 10),
        &state,
    );
    let _ = events2;
    assert!(
        wait_until(Duration::from_secs(60), || rx.with(|g| g.es_docs.len())
            >= all.len()),
        "after the restart only {} of {} arrived",
        rx.with(|g| g.es_docs.len()),
        all.len()
    );
    assert!(wait_until(Duration::from_secs(10), || agent.status()
        ["sinks"][0]["backlog"]
        == 0));
    let (status, err) = agent.stop();
    assert!(status.success(), "{err}");
    rx.stop();
    rx.with(|got| {
        assert!(got.errors.is_empty(), "{:?}", got.errors);
        // Nothing lost: every alert the agent reported is stored once, in
        // order. The kill may land between the outbox append and the
        // alerts.ndjson write of a commit: those alerts are in the outbox,
        // so they arrive too, after the reported ones.
        let got_ids = ids(&got.es_docs);
        let all_ids = ids(&all);
        assert!(
            got_ids.len() >= all_ids.len(),
            "{} of {} arrived",
            got_ids.len(),
            all_ids.len()
        );
        assert_same_ids(&got_ids[..all_ids.len()], &all_ids, "after the SIGKILL");
        assert!(
            got_ids.len() - all_ids.len() <= 256,
            "more unreported alerts than one commit"
        );
        let unique: std::collections::HashSet<&String> = got_ids.iter().collect();
        assert_eq!(unique.len(), got_ids.len(), "stored once each");
        // Re-sent only within the documented boundary: the batch in flight
        // at the kill (at most batch_max = 10), recognised by id (409).
        let resent = got.es_attempts.len() - got.es_docs.len();
        assert!(resent <= 10, "{resent} alerts re-sent");
    });
    eprintln!("fault test took {:?}", started.elapsed());
}

#[test]
fn https_sink_trusts_its_ca_file_and_refuses_an_unknown_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let certs = vigil_e2e::receivers::test_certs(&dir.path().join("certs"));
    let rx = HttpReceiver::start_tls(0, &certs);
    let events = positive_fixtures(dir.path());
    let cfg = dir.path().join("vigil.toml");
    fs::write(
        &cfg,
        format!(
            r#"
[outputs]
stdout = false
[outbox]
drain_timeout_ms = 500
[[sinks]]
kind = "http"
name = "private-ca"
url = "https://127.0.0.1:{port}/hook"
format = "webhook"
ca_file = "{ca}"
[[sinks]]
kind = "http"
name = "public-roots"
url = "https://127.0.0.1:{port}/hook"
format = "webhook"
retry_min_ms = 50
"#,
            port = rx.port,
            ca = certs.join("ca.pem").display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let agent = Agent::replaying(&events, 8, &cfg, &state);
    let mut st = Value::Null;
    let settled = wait_until(Duration::from_secs(30), || {
        st = agent.status();
        let sinks = st["sinks"].as_array().cloned().unwrap_or_default();
        sinks.len() == 2
            && sinks[0]["backlog"] == 0
            && sinks[0]["delivered"].as_u64() > Some(0)
            && sinks[1]["last_error"].is_string()
    });
    assert!(settled, "{st}");
    let reference = alerts_in(&state.join("alerts.ndjson"));
    rx.with(|got| {
        assert!(got.errors.is_empty(), "{:?}", got.errors);
        assert_eq!(got.webhook, reference, "over TLS, intact, once, in order");
    });
    let public = &st["sinks"][1];
    assert_eq!(public["delivered"], 0, "{public}");
    assert!(
        public["last_error"]
            .as_str()
            .unwrap()
            .contains("UnknownIssuer"),
        "{public}"
    );
    let (status, err) = agent.stop();
    assert!(status.success(), "{err}");
}
