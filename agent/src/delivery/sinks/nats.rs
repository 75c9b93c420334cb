//! NATS JetStream sink: each alert is published to
//! `<subject_prefix>.<host>.<severity>` with header `Nats-Msg-Id` = alert id,
//! and the batch counts as delivered only when JetStream has acknowledged
//! every message (stored it). Re-sending after a lost ack (server restart,
//! agent killed mid-batch) is harmless: JetStream drops a message whose id
//! it has seen within the stream's duplicate window, so each alert lands
//! once. The connection reconnects on its own with backoff.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;

use super::{Delivered, DeliveryError, DeliverySettings, NatsSettings, SinkSetupError};
use crate::delivery::outbox::OutboxRecord;
use crate::nats::{runtime, subject_token, NatsSection};

pub const DEFAULT_STREAM: &str = "VIGIL_ALERTS";
pub const DEFAULT_SUBJECT_PREFIX: &str = "vigil.alerts";

pub struct NatsSink {
    nats: NatsSection,
    name: String,
    stream: String,
    prefix: String,
    create_stream: bool,
    duplicate_window: Duration,
    timeout: Duration,
    js: Option<jetstream::Context>,
}

impl NatsSink {
    pub fn new(
        name: &str,
        cfg: &NatsSettings,
        delivery: &DeliverySettings,
        nats: &NatsSection,
    ) -> Result<NatsSink, SinkSetupError> {
        if !nats.is_configured() {
            return Err(SinkSetupError::NoNats);
        }
        Ok(NatsSink {
            nats: nats.clone(),
            name: format!("vigil-sink-{name}"),
            stream: cfg.stream.clone().unwrap_or_else(|| DEFAULT_STREAM.into()),
            prefix: cfg
                .subject_prefix
                .clone()
                .unwrap_or_else(|| DEFAULT_SUBJECT_PREFIX.into()),
            create_stream: cfg.create_stream.unwrap_or(true),
            duplicate_window: Duration::from_secs(cfg.duplicate_window_s.unwrap_or(600)),
            timeout: delivery.timeout(),
            js: None,
        })
    }

    /// The JetStream context, connecting (and making sure the stream
    /// exists) on first use or after a failed attempt.
    async fn context(&mut self) -> Result<jetstream::Context, DeliveryError> {
        if let Some(js) = &self.js {
            return Ok(js.clone());
        }
        let client = self
            .nats
            .connect(&self.name)
            .await
            .map_err(|e| DeliveryError::Retry(e.to_string()))?;
        let mut js = jetstream::new(client);
        js.set_timeout(self.timeout);
        match js.get_stream(&self.stream).await {
            Ok(_) => {}
            Err(e) if self.create_stream => {
                tracing::debug!(error = %e, stream = %self.stream, "stream lookup failed; creating it");
                js.get_or_create_stream(jetstream::stream::Config {
                    name: self.stream.clone(),
                    subjects: vec![format!("{}.>", self.prefix)],
                    duplicate_window: self.duplicate_window,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    DeliveryError::Retry(format!("creating JetStream stream {}: {e}", self.stream))
                })?;
            }
            Err(e) => {
                return Err(DeliveryError::Retry(format!(
                    "JetStream stream {} is not available (create_stream = false): {e}",
                    self.stream
                )))
            }
        }
        self.js = Some(js.clone());
        Ok(js)
    }

    async fn publish_all(&mut self, batch: &[OutboxRecord]) -> Result<Delivered, DeliveryError> {
        let js = self.context().await?;
        let mut delivered = Delivered::default();
        let mut pending = Vec::with_capacity(batch.len());
        // Publish everything first, then wait for the acks: one round trip
        // per batch instead of per alert.
        for rec in batch {
            let subject = subject_for(&self.prefix, &rec.json);
            let msg = jetstream::message::PublishMessage::build()
                .message_id(rec.id.as_str())
                .payload(Bytes::from(rec.json.clone().into_bytes()));
            match js.send_publish(subject, msg).await {
                Ok(ack) => pending.push(ack),
                Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    delivered
                        .rejected
                        .push((rec.seq, format!("alert larger than the server allows: {e}")));
                }
                Err(e) => return Err(self.lost(format!("publishing to JetStream: {e}"))),
            }
        }
        for ack in pending {
            match ack.await {
                Ok(_) => {}
                Err(e) => {
                    return Err(self.lost(format!(
                        "JetStream did not acknowledge (stream {}): {e}",
                        self.stream
                    )))
                }
            }
        }
        Ok(delivered)
    }

    /// A failed batch: retry later; look the stream up again in case the
    /// server came back without it.
    fn lost(&mut self, m: String) -> DeliveryError {
        self.js = None;
        DeliveryError::Retry(m)
    }
}

impl super::Sink for NatsSink {
    fn deliver(&mut self, batch: &[OutboxRecord]) -> Result<Delivered, DeliveryError> {
        let timeout = self.timeout.saturating_mul(2);
        runtime().block_on(async {
            match tokio::time::timeout(timeout, self.publish_all(batch)).await {
                Ok(r) => r,
                Err(_) => Err(self.lost(format!(
                    "JetStream publish of {} alerts timed out after {timeout:?}",
                    batch.len()
                ))),
            }
        })
    }
}

/// `<prefix>.<host>.<severity>` from the alert JSON (`host_id`,
/// `rule.severity`); unknown parts become `unknown`.
pub fn subject_for(prefix: &str, alert_json: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default)]
        host_id: Option<String>,
        #[serde(default)]
        rule: Option<RuleHead>,
    }
    #[derive(serde::Deserialize)]
    struct RuleHead {
        #[serde(default)]
        severity: Option<String>,
    }
    let head: Option<Head> = serde_json::from_str(alert_json).ok();
    let host = head
        .as_ref()
        .and_then(|h| h.host_id.as_deref())
        .filter(|h| !h.is_empty())
        .unwrap_or("unknown");
    let severity = head
        .as_ref()
        .and_then(|h| h.rule.as_ref())
        .and_then(|r| r.severity.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown");
    format!(
        "{prefix}.{}.{}",
        subject_token(host),
        subject_token(&severity.to_ascii_lowercase())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_has_host_and_severity_tokens() {
        let a = r#"{"id":"x","host_id":"mac.01","rule":{"id":"r","severity":"High"}}"#;
        assert_eq!(subject_for("vigil.alerts", a), "vigil.alerts.mac_01.high");
        assert_eq!(
            subject_for("vigil.alerts", "not json"),
            "vigil.alerts.unknown.unknown"
        );
    }
}
