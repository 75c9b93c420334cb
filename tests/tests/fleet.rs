//! The fleet over a real nats-server with JetStream: three agents (own
//! spools, host ids and event sets) publish alerts to one stream and answer
//! fleet hunts, context and status requests.
//!
//! Checked: every alert of every agent is in the stream exactly once after
//! the server crashed and came back (with one agent's alerts raised while
//! it was down, and another agent re-sending everything it had already
//! delivered); a fleet hunt returns exactly the union of what each spool
//! holds, labelled with the right host; a stopped agent is reported
//! missing; a user without request permissions gets nothing; an agent
//! answers only the request kinds it allows; answers respect limits.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use vigil_e2e::receivers::{
    alerts_in, wait_until, Agent, NatsServer, NATS_AGENT, NATS_ANALYST, NATS_INTRUDER,
};
use vigil_e2e::{ndjson, stderr, stdout, vigil};

const HOSTS: [&str; 3] = ["host-a", "host-b", "host-c"];
const QUERY: &str = r#"process where process.name == "curl""#;

struct Host {
    id: &'static str,
    events: PathBuf,
    config: PathBuf,
    state: PathBuf,
    spool: PathBuf,
}

fn setup(dir: &Path, i: usize, url: &str) -> Host {
    let id = HOSTS[i];
    let events = dir.join(format!("{id}.ndjson"));
    let o = vigil()
        .args(["synthetic", "--events", "6000", "--plant-every", "300"])
        .args(["--seed", &(11 + i).to_string(), "--host-id", id])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    fs::write(&events, &o.stdout).unwrap();
    // `--state-dir` puts the spool (and alerts.ndjson) there.
    let state = dir.join(format!("{id}.state"));
    let spool = state.join("events.spool");
    // host-b answers status and hunts only.
    let allow = if id == "host-b" {
        r#"allow = ["status", "hunt"]"#
    } else {
        ""
    };
    let config = dir.join(format!("{id}.toml"));
    fs::write(
        &config,
        format!(
            r#"
host_id = "{id}"
[outputs]
stdout = false
[outbox]
drain_timeout_ms = 1000
[nats]
urls = ["{url}"]
user = "{user}"
password = "{password}"
connect_timeout_ms = 1000
[fleet]
enabled = true
heartbeat_s = 1
{allow}
[[sinks]]
kind = "nats"
name = "fleet"
batch_max = 10
timeout_ms = 2000
retry_min_ms = 100
retry_max_ms = 1000
"#,
            user = NATS_AGENT.0,
            password = NATS_AGENT.1,
        ),
    )
    .unwrap();
    Host {
        id,
        events,
        config,
        state,
        spool,
    }
}

fn start(h: &Host) -> Agent {
    Agent::replaying(&h.events, 16, &h.config, &h.state)
}

/// The sink's backlog and delivered count, from `vigil status`.
fn sink(agent: &Agent) -> (u64, u64, u64) {
    let s = agent.status();
    let sink = &s["sinks"][0];
    (
        s["processed"].as_u64().unwrap_or(0),
        sink["backlog"].as_u64().unwrap_or(u64::MAX),
        sink["failures"].as_u64().unwrap_or(0),
    )
}

/// Waits until the agent has replayed everything and its sink has no backlog.
fn wait_delivered(agent: &Agent, h: &Host) {
    let ok = wait_until(Duration::from_secs(60), || {
        let (processed, backlog, _) = sink(agent);
        processed >= 6000 && backlog == 0
    });
    assert!(
        ok,
        "{}: alerts not delivered: status {}",
        h.id,
        agent.status()
    );
}

fn fleet(url: &str, user: (&str, &str), args: &[&str]) -> Output {
    vigil()
        .arg("fleet")
        .args(args)
        .args([
            "--url",
            url,
            "--user",
            user.0,
            "--password-env",
            "VIGIL_TEST_NATS_PASSWORD",
        ])
        .env("VIGIL_TEST_NATS_PASSWORD", user.1)
        .output()
        .unwrap()
}

/// The JSON summary `vigil fleet --json` prints last on stderr.
fn summary(o: &Output) -> Value {
    let err = stderr(o);
    let line = err
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"summary\""))
        .unwrap_or_else(|| panic!("no summary on stderr: {err}"));
    serde_json::from_str::<Value>(line).unwrap()["summary"].clone()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// (host, event JSON) of a local `vigil hunt` over each spool: the truth a
/// fleet hunt must reproduce.
fn local_hunt(hosts: &[&Host]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for h in hosts {
        let o = vigil()
            .args(["hunt", QUERY, "--json", "--no-progress", "--spool"])
            .arg(&h.spool)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        for e in ndjson(&stdout(&o)) {
            out.insert((h.id.to_string(), e.to_string()));
        }
    }
    out
}

fn fleet_results(o: &Output) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for line in ndjson(&stdout(o)) {
        let host = line["host"].as_str().unwrap().to_string();
        let fresh = out.insert((host, line["event"].to_string()));
        assert!(fresh, "the same event twice from one host: {line}");
    }
    out
}

#[test]
fn fleet_alerts_land_once_and_hunts_gather_every_host() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(&dir.path().join("nats"));
    let url = nats.url();
    let hosts: Vec<Host> = (0..3).map(|i| setup(dir.path(), i, &url)).collect();
    let (a, b, c) = (&hosts[0], &hosts[1], &hosts[2]);

    // host-a and host-b deliver while the server is up.
    let agent_a = start(a);
    let agent_b = start(b);
    wait_delivered(&agent_a, a);
    wait_delivered(&agent_b, b);

    // The server crashes; host-c raises all its alerts meanwhile.
    nats.kill();
    let agent_c = start(c);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let (processed, backlog, failures) = sink(&agent_c);
            processed >= 6000 && backlog > 0 && failures > 0
        }),
        "host-c should hold its alerts while NATS is down: {}",
        agent_c.status()
    );
    // host-b forgets what it delivered (its sink cursor is gone) and will
    // send every alert again: JetStream must drop the copies by id.
    let (st, err) = agent_b.stop();
    assert!(st.success(), "host-b did not stop cleanly ({st}): {err}");
    fs::remove_file(b.state.join("outbox/cursor.fleet")).unwrap();
    let empty = dir.path().join("empty.ndjson");
    fs::write(&empty, "").unwrap();
    let agent_b = Agent::replaying(&empty, 16, &b.config, &b.state);

    nats.restart();
    wait_delivered(&agent_c, c);
    assert!(
        wait_until(Duration::from_secs(60), || sink(&agent_b).1 == 0),
        "host-b did not re-send: {}",
        agent_b.status()
    );
    let resent = agent_b.status()["sinks"][0]["delivered"].as_u64().unwrap();
    let raised_b = alerts_in(&b.state.join("alerts.ndjson")).len() as u64;
    assert_eq!(resent, raised_b, "host-b should have re-sent every alert");

    // Exactly once: the stream holds each agent's alerts, each id once,
    // under vigil.alerts.<host>.<severity>.
    let o = fleet(
        &url,
        NATS_ANALYST,
        &["alerts", "--last", "100000", "--json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stored = ndjson(&stdout(&o));
    let mut by_host: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &stored {
        let alert = &m["alert"];
        let id = alert["id"].as_str().unwrap().to_string();
        assert_eq!(
            m["msg_id"].as_str(),
            Some(id.as_str()),
            "Nats-Msg-Id is the alert id"
        );
        let host = alert["host_id"].as_str().unwrap();
        let severity = alert["rule"]["severity"].as_str().unwrap();
        assert_eq!(
            m["subject"].as_str().unwrap(),
            format!("vigil.alerts.{host}.{severity}")
        );
        by_host.entry(host.to_string()).or_default().push(id);
    }
    for h in &hosts {
        let mut want: Vec<String> = alerts_in(&h.state.join("alerts.ndjson"))
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        assert!(
            want.len() >= 20,
            "{}: too few alerts ({}) to mean anything",
            h.id,
            want.len()
        );
        want.sort();
        let mut got = by_host.remove(h.id).unwrap_or_default();
        got.sort();
        let unique: BTreeSet<&String> = got.iter().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "{}: an alert id twice in the stream",
            h.id
        );
        assert_eq!(
            got.len(),
            want.len(),
            "{}: alerts in the stream vs raised",
            h.id
        );
        assert_eq!(got, want, "{}: the stream's alert ids", h.id);
    }
    assert!(by_host.is_empty(), "alerts of unknown hosts: {by_host:?}");

    // The registry knows all three. host-c records itself at a heartbeat
    // once its fleet connection is back, which reconnects on its own
    // backoff, independent of the alert sink that delivered above.
    let all: BTreeSet<String> = HOSTS.iter().map(|h| h.to_string()).collect();
    let mut known = BTreeSet::new();
    wait_until(Duration::from_secs(30), || {
        let o = fleet(&url, NATS_ANALYST, &["hosts", "--json"]);
        known = ndjson(&stdout(&o))
            .iter()
            .map(|e| e["host"].as_str().unwrap().to_string())
            .collect();
        known == all
    });
    assert_eq!(known, all);

    // A fleet hunt is the union of the three local hunts, host-labelled.
    let o = fleet(
        &url,
        NATS_ANALYST,
        &["hunt", QUERY, "--json", "--timeout", "15s"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let want = local_hunt(&[a, b, c]);
    assert!(
        want.len() > 100,
        "the query should find plenty: {}",
        want.len()
    );
    assert_eq!(fleet_results(&o), want, "fleet hunt vs local hunts");
    let s = summary(&o);
    assert_eq!(strings(&s["answered"]).len(), 3, "{s}");
    assert!(strings(&s["missing"]).is_empty(), "{s}");

    // Limits: at most --limit results per host, flagged as cut short.
    let o = fleet(
        &url,
        NATS_ANALYST,
        &["hunt", "any where true", "--limit", "5", "--json"],
    );
    let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
    for line in ndjson(&stdout(&o)) {
        *per_host
            .entry(line["host"].as_str().unwrap().into())
            .or_default() += 1;
    }
    assert_eq!(
        per_host.values().copied().collect::<Vec<_>>(),
        vec![5, 5, 5]
    );
    let s = summary(&o);
    for h in HOSTS {
        assert_eq!(s["hosts"][h]["truncated"], true, "{h}: {s}");
    }

    // Context from the host that has the process; host-b does not serve it.
    let alert = &alerts_in(&a.state.join("alerts.ndjson"))[0];
    let entity = alert["events"][0]["process"]["entity_id"].as_str().unwrap();
    let o = fleet(
        &url,
        NATS_ANALYST,
        &["context", entity, "--host", "host-a", "--json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ctx = ndjson(&stdout(&o));
    assert_eq!(ctx.len(), 1);
    assert_eq!(ctx[0]["host"], "host-a");
    assert!(ctx[0]["result"].to_string().contains(entity));
    let o = fleet(
        &url,
        NATS_ANALYST,
        &["context", entity, "--host", "host-b", "--json"],
    );
    assert_eq!(o.status.code(), Some(1));
    let s = summary(&o);
    assert!(
        s["failed"].to_string().contains("not_allowed"),
        "host-b must refuse context: {s}"
    );

    // Status from everyone.
    let o = fleet(&url, NATS_ANALYST, &["status", "--json"]);
    let answered: BTreeSet<String> = ndjson(&stdout(&o))
        .iter()
        .map(|l| l["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(answered.len(), 3, "{}", stderr(&o));

    // A user without request permissions reaches nobody.
    let o = fleet(
        &url,
        NATS_INTRUDER,
        &["hunt", QUERY, "--json", "--timeout", "2s"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty(), "the intruder got results");
    assert_eq!(strings(&summary(&o)["missing"]).len(), 3);

    // host-c goes down: the hunt says so and still answers for the others.
    let (st, err) = agent_c.stop();
    assert!(st.success(), "host-c did not stop cleanly ({st}): {err}");
    let o = fleet(
        &url,
        NATS_ANALYST,
        &["hunt", QUERY, "--json", "--timeout", "3s"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = summary(&o);
    assert_eq!(
        strings(&s["missing"]),
        BTreeSet::from(["host-c".to_string()]),
        "{s}"
    );
    assert_eq!(fleet_results(&o), local_hunt(&[a, b]));
    drop(agent_a);
    drop(agent_b);
}

/// TLS with a private CA, from the agent's `[nats]` section and the
/// client's `--ca-file`; without the CA the client refuses the server.
#[test]
fn alerts_reach_jetstream_over_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = vigil_e2e::receivers::test_certs(&dir.path().join("certs"));
    let nats = NatsServer::start_tls(&dir.path().join("nats"), &certs);
    let url = format!("tls://127.0.0.1:{}", nats.port);
    let h = setup(dir.path(), 0, &url);
    let ca = certs.join("ca.pem");
    let mut cfg = fs::read_to_string(&h.config).unwrap();
    cfg = cfg.replace(
        "connect_timeout_ms = 1000",
        &format!("connect_timeout_ms = 1000\nca_file = \"{}\"", ca.display()),
    );
    fs::write(&h.config, cfg).unwrap();
    let agent = start(&h);
    wait_delivered(&agent, &h);
    let raised = alerts_in(&h.state.join("alerts.ndjson")).len();
    assert!(raised >= 20, "too few alerts: {raised}");

    let ca_arg = ca.to_str().unwrap();
    let o = fleet(
        &url,
        NATS_ANALYST,
        &["alerts", "--last", "100000", "--json", "--ca-file", ca_arg],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(ndjson(&stdout(&o)).len(), raised);
    let o = fleet(
        &url,
        NATS_ANALYST,
        &["hunt", QUERY, "--json", "--ca-file", ca_arg],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(fleet_results(&o), local_hunt(&[&h]));

    // The public roots do not know the test CA.
    let o = fleet(&url, NATS_ANALYST, &["alerts", "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    drop(agent);
}

/// An agent that logs in with an nkey seed file (no password anywhere).
#[test]
fn an_agent_logs_in_with_an_nkey() {
    let dir = tempfile::tempdir().unwrap();
    let key = nkeys::KeyPair::new_user();
    let nats = NatsServer::start_with(
        &dir.path().join("nats"),
        None,
        &format!(
            r#"{{ nkey: "{}", permissions: {{
        publish: ["vigil.alerts.>", "vigil.hosts.*", "$JS.API.>", "_INBOX.>"],
        subscribe: ["vigil.req.>", "vigil.cancel.*", "_INBOX.>"] }} }}"#,
            key.public_key()
        ),
    );
    let h = setup(dir.path(), 1, &nats.url());
    let seed = dir.path().join("agent.nk");
    fs::write(&seed, key.seed().unwrap()).unwrap();
    let cfg = fs::read_to_string(&h.config).unwrap().replace(
        &format!(
            "user = \"{}\"\npassword = \"{}\"",
            NATS_AGENT.0, NATS_AGENT.1
        ),
        &format!("nkey_seed_file = \"{}\"", seed.display()),
    );
    assert!(cfg.contains("nkey_seed_file") && !cfg.contains("password"));
    fs::write(&h.config, cfg).unwrap();
    let agent = start(&h);
    wait_delivered(&agent, &h);
    let raised = alerts_in(&h.state.join("alerts.ndjson")).len();
    assert!(raised >= 20, "too few alerts: {raised}");
    let o = fleet(
        &nats.url(),
        NATS_ANALYST,
        &["alerts", "--last", "100000", "--json"],
    );
    assert_eq!(ndjson(&stdout(&o)).len(), raised, "{}", stderr(&o));
    drop(agent);
}
