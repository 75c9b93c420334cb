//! Scatter a fleet request and gather the answers (protocol in
//! `fleet/mod.rs`): one publish, answers from every host that replies
//! before the deadline, results handed over as they arrive, and the hosts
//! of the registry that did not answer named at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use serde_json::Value;

use super::{cancel_subject, request_subject, Chunk, Done, FleetError, HostEntry};
use crate::nats::NatsSection;

/// Where to send and how long to wait.
pub struct Target {
    pub nats: NatsSection,
    pub prefix: String,
    pub hosts_stream: String,
    /// `None`: every host.
    pub host: Option<String>,
    pub timeout: Duration,
}

/// What came back.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Final answers by host.
    pub done: BTreeMap<String, Done>,
    /// Results received per host (also for hosts whose final answer did
    /// not arrive in time).
    pub results: BTreeMap<String, u64>,
    /// Registry entries (or the one host asked), by host id.
    pub expected: BTreeMap<String, Option<HostEntry>>,
    /// Expected hosts without a final answer.
    pub missing: Vec<String>,
    pub cancelled: bool,
}

/// The registry: every host that has recorded itself in the hosts stream.
pub async fn known_hosts(
    client: &async_nats::Client,
    prefix: &str,
    hosts_stream: &str,
) -> Result<BTreeMap<String, HostEntry>, FleetError> {
    let js = jetstream::new(client.clone());
    let Ok(stream) = js.get_stream(hosts_stream).await else {
        // No agent has registered yet.
        return Ok(BTreeMap::new());
    };
    let mut subjects = stream
        .info_with_subjects(format!("{prefix}.hosts.*"))
        .await
        .map_err(FleetError::nats(format!("listing {hosts_stream}")))?;
    let mut out = BTreeMap::new();
    while let Some(item) = subjects.next().await {
        let (subject, _) = item.map_err(FleetError::nats(format!("listing {hosts_stream}")))?;
        if let Ok(m) = stream.get_last_raw_message_by_subject(&subject).await {
            if let Ok(entry) = serde_json::from_slice::<HostEntry>(&m.payload) {
                out.insert(entry.host.clone(), entry);
            }
        }
    }
    Ok(out)
}

/// Sends `request` (`kind` = status, context or hunt) and gathers answers
/// until every expected host is done, the deadline passes or `interrupt`
/// is set (then the agents are told to cancel). `on_results` sees each
/// chunk as it arrives.
pub async fn scatter(
    target: &Target,
    kind: &str,
    mut request: serde_json::Map<String, Value>,
    interrupt: &AtomicBool,
    on_results: &mut dyn FnMut(&str, Vec<Value>),
) -> Result<Gathered, FleetError> {
    let client = target.nats.connect("vigil-fleet-client").await?;
    let mut gathered = Gathered::default();
    match &target.host {
        Some(h) => {
            let known = known_hosts(&client, &target.prefix, &target.hosts_stream)
                .await
                .unwrap_or_default();
            gathered.expected.insert(h.clone(), known.get(h).cloned());
        }
        None => {
            for (h, e) in known_hosts(&client, &target.prefix, &target.hosts_stream).await? {
                gathered.expected.insert(h, Some(e));
            }
        }
    }
    let request_id = client
        .new_inbox()
        .rsplit('.')
        .next()
        .unwrap_or("r")
        .to_string();
    // Agents stop a little before we do, so their final answers arrive.
    let agent_deadline = target
        .timeout
        .saturating_sub(Duration::from_millis(300))
        .max(Duration::from_millis(100));
    request.insert("request_id".into(), Value::String(request_id.clone()));
    request.insert(
        "deadline_ms".into(),
        Value::from(agent_deadline.as_millis() as u64),
    );
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(FleetError::nats("subscribing to answers"))?;
    let subject = request_subject(&target.prefix, target.host.as_deref(), kind);
    client
        .publish_with_reply(
            subject.clone(),
            inbox,
            serde_json::to_vec(&Value::Object(request))
                .expect("plain JSON")
                .into(),
        )
        .await
        .map_err(FleetError::nats(format!(
            "sending the request to {subject}"
        )))?;
    client.flush().await.map_err(FleetError::nats(format!(
        "sending the request to {subject}"
    )))?;

    let deadline = Instant::now() + target.timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        let all_done = !gathered.expected.is_empty()
            && gathered
                .expected
                .keys()
                .all(|h| gathered.done.contains_key(h));
        if all_done {
            break;
        }
        tokio::select! {
            msg = answers.next() => {
                let Some(msg) = msg else { break };
                absorb(&msg.payload, &request_id, &mut gathered, on_results);
            }
            _ = tokio::time::sleep_until(deadline.into()) => break,
            _ = tick.tick() => {
                if interrupt.load(Ordering::Relaxed) {
                    gathered.cancelled = true;
                    break;
                }
            }
        }
    }
    let unfinished = gathered.done.len() < gathered.expected.len() || gathered.cancelled;
    if unfinished && kind == "hunt" {
        // Whoever is still scanning can stop.
        let _ = client
            .publish(cancel_subject(&target.prefix, &request_id), "".into())
            .await;
        let _ = client.flush().await;
    }
    gathered.missing = gathered
        .expected
        .keys()
        .filter(|h| !gathered.done.contains_key(*h))
        .cloned()
        .collect();
    Ok(gathered)
}

fn absorb(
    payload: &[u8],
    request_id: &str,
    gathered: &mut Gathered,
    on_results: &mut dyn FnMut(&str, Vec<Value>),
) {
    if payload.is_empty() {
        // A status message (503 "no responders" when no agent listens).
        return;
    }
    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
        tracing::warn!("fleet: an answer was not JSON; ignored");
        return;
    };
    if v.get("request_id").and_then(Value::as_str) != Some(request_id) {
        return;
    }
    if v.get("done").and_then(Value::as_bool) == Some(true) {
        if let Ok(done) = serde_json::from_value::<Done>(v) {
            gathered.done.insert(done.host.clone(), done);
        }
    } else if let Ok(chunk) = serde_json::from_value::<Chunk>(v) {
        *gathered.results.entry(chunk.host.clone()).or_default() += chunk.events.len() as u64;
        on_results(&chunk.host, chunk.events);
    }
}
