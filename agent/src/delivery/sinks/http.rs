//! HTTP sink: one POST per batch in one of three formats.
//!
//! * `es_bulk`: Elasticsearch `_bulk` NDJSON, a `create` action with
//!   `_id` = alert id before each alert. A re-delivered alert gets 409
//!   (version conflict) per item, which counts as delivered: ES itself
//!   de-duplicates the at-least-once redeliveries. Items refused with 429 or
//!   5xx make the whole batch retry (the ones already created then get
//!   409); other per-item errors (mapping) are permanent and counted.
//! * `splunk_hec`: HEC event objects, newline separated, with `time` from
//!   the alert's `@timestamp`.
//! * `webhook`: a JSON array of alerts.
//!
//! 2xx is success; 400, 413 and 422 are permanent (the batch is split, a
//! single alert that still fails is skipped and counted); everything else,
//! including 401/403/404 (a config or credential problem that an admin can
//! fix without losing alerts) and transport errors, is retried.

use std::time::Duration;

use serde::Deserialize;

use super::{
    tls, Delivered, DeliveryError, DeliverySettings, HttpFormat, HttpSettings, SinkSetupError,
    UrlError,
};
use crate::delivery::outbox::OutboxRecord;

pub struct HttpSink {
    agent: ureq::Agent,
    url: String,
    format: HttpFormat,
    auth: Option<String>,
    index: String,
    splunk_index: Option<String>,
    sourcetype: String,
    hostname: String,
}

/// Checks an `http(s)://host[:port]/path` URL; true if https.
pub(crate) fn parse_url(url: &str) -> Result<bool, UrlError> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(UrlError::Scheme);
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(UrlError::NoHost);
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UrlError::Spaces);
    }
    Ok(https)
}

impl HttpSink {
    pub fn new(
        cfg: &HttpSettings,
        delivery: &DeliverySettings,
    ) -> Result<HttpSink, SinkSetupError> {
        let url = cfg.url.clone().ok_or(SinkSetupError::Missing("url"))?;
        let https = parse_url(&url)?;
        let timeout: Duration = delivery.timeout();
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout(timeout)
            .redirects(0)
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")));
        if https {
            builder = builder.tls_config(tls::client_config(cfg.ca_file.as_deref())?);
        }
        let auth = match (&cfg.auth_header, &cfg.auth_header_env) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(var)) => {
                Some(std::env::var(var).map_err(|_| SinkSetupError::AuthEnv(var.clone()))?)
            }
            (None, None) => None,
        };
        Ok(HttpSink {
            agent: builder.build(),
            url,
            format: cfg.format.ok_or(SinkSetupError::Missing("format"))?,
            auth,
            index: cfg.index.clone().unwrap_or_else(|| "vigil-alerts".into()),
            splunk_index: cfg.index.clone(),
            sourcetype: cfg
                .sourcetype
                .clone()
                .unwrap_or_else(|| "vigil:alert".into()),
            hostname: sysinfo::System::host_name().unwrap_or_default(),
        })
    }

    fn body(&self, batch: &[OutboxRecord]) -> (String, &'static str) {
        let mut out = String::with_capacity(batch.iter().map(|r| r.json.len() + 128).sum());
        match self.format {
            HttpFormat::EsBulk => {
                let index = serde_json::to_string(&self.index).unwrap_or_default();
                for r in batch {
                    let id = serde_json::to_string(&r.id).unwrap_or_default();
                    out.push_str(&format!(
                        "{{\"create\":{{\"_index\":{index},\"_id\":{id}}}}}\n"
                    ));
                    out.push_str(&r.json);
                    out.push('\n');
                }
                (out, "application/x-ndjson")
            }
            HttpFormat::SplunkHec => {
                for r in batch {
                    out.push_str(&hec_event(
                        r,
                        &self.hostname,
                        &self.sourcetype,
                        self.splunk_index.as_deref(),
                    ));
                    out.push('\n');
                }
                (out, "application/json")
            }
            HttpFormat::Webhook => {
                out.push('[');
                for (i, r) in batch.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&r.json);
                }
                out.push(']');
                (out, "application/json")
            }
        }
    }
}

/// One HEC event object wrapping the alert document unchanged.
fn hec_event(
    r: &OutboxRecord,
    default_host: &str,
    sourcetype: &str,
    index: Option<&str>,
) -> String {
    #[derive(Deserialize, Default)]
    struct Head {
        #[serde(default, rename = "@timestamp")]
        timestamp: String,
        #[serde(default)]
        host_id: Option<String>,
    }
    let head: Head = serde_json::from_str(&r.json).unwrap_or_default();
    let time = dsl::time::parse_rfc3339(&head.timestamp)
        .map(|ns| {
            format!(
                "{}.{:06}",
                ns.div_euclid(1_000_000_000),
                ns.rem_euclid(1_000_000_000) / 1000
            )
        })
        .unwrap_or_else(|_| "0".into());
    let host = head.host_id.unwrap_or_else(|| default_host.to_string());
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let index = index
        .map(|i| format!(",\"index\":{}", q(i)))
        .unwrap_or_default();
    format!(
        "{{\"time\":{time},\"host\":{},\"source\":\"vigil\",\"sourcetype\":{}{index},\"event\":{}}}",
        q(&host),
        q(sourcetype),
        r.json
    )
}

fn snippet(body: &str) -> String {
    let one_line: String = body.chars().filter(|c| !c.is_control()).take(300).collect();
    one_line
}

fn status_error(url: &str, code: u16, body: &str) -> DeliveryError {
    let msg = format!("HTTP {code} from {url}: {}", snippet(body));
    match code {
        400 | 413 | 422 => DeliveryError::Permanent(msg),
        _ => DeliveryError::Retry(msg),
    }
}

/// Per-item outcome of an Elasticsearch `_bulk` response.
fn bulk_outcome(batch: &[OutboxRecord], body: &str) -> Result<Delivered, DeliveryError> {
    #[derive(Deserialize)]
    struct Resp {
        #[serde(default)]
        errors: bool,
        #[serde(default)]
        items: Vec<serde_json::Map<String, serde_json::Value>>,
    }
    let resp: Resp = serde_json::from_str(body).map_err(|e| {
        DeliveryError::Retry(format!(
            "unreadable _bulk response ({e}): {}",
            snippet(body)
        ))
    })?;
    if !resp.errors {
        return Ok(Delivered::default());
    }
    if resp.items.len() != batch.len() {
        return Err(DeliveryError::Retry(format!(
            "_bulk response has {} items for {} alerts",
            resp.items.len(),
            batch.len()
        )));
    }
    let mut delivered = Delivered::default();
    for (item, rec) in resp.items.iter().zip(batch) {
        let Some(result) = item.values().next() else {
            return Err(DeliveryError::Retry("empty _bulk response item".into()));
        };
        let status = result.get("status").and_then(|s| s.as_u64()).unwrap_or(0);
        match status {
            200..=299 | 409 => {}
            429 | 500..=599 | 0 => {
                return Err(DeliveryError::Retry(format!(
                    "_bulk item {} got {status}; retrying the batch",
                    rec.id
                )))
            }
            _ => delivered.rejected.push((
                rec.seq,
                format!(
                    "_bulk item {} got {status}: {}",
                    rec.id,
                    snippet(
                        &result
                            .get("error")
                            .map(|e| e.to_string())
                            .unwrap_or_default()
                    )
                ),
            )),
        }
    }
    Ok(delivered)
}

impl super::Sink for HttpSink {
    fn deliver(&mut self, batch: &[OutboxRecord]) -> Result<Delivered, DeliveryError> {
        let (body, content_type) = self.body(batch);
        let mut req = self.agent.post(&self.url).set("Content-Type", content_type);
        if let Some(a) = &self.auth {
            req = req.set("Authorization", a);
        }
        let resp = match req.send_bytes(body.as_bytes()) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                return Err(status_error(&self.url, code, &text));
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(DeliveryError::Retry(format!("POST {}: {t}", self.url)))
            }
        };
        let code = resp.status();
        let text = resp.into_string().map_err(|e| {
            DeliveryError::Retry(format!("reading the response of {}: {e}", self.url))
        })?;
        if !(200..300).contains(&code) {
            return Err(DeliveryError::Retry(format!(
                "HTTP {code} from {} (redirects are not followed): {}",
                self.url,
                snippet(&text)
            )));
        }
        match self.format {
            HttpFormat::EsBulk => bulk_outcome(batch, &text),
            HttpFormat::SplunkHec | HttpFormat::Webhook => Ok(Delivered::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, id: &str) -> OutboxRecord {
        OutboxRecord {
            seq,
            id: id.into(),
            json: format!(
                "{{\"id\":\"{id}\",\"@timestamp\":\"2024-05-31T09:47:12.5Z\",\"host_id\":\"h1\"}}"
            ),
        }
    }

    #[test]
    fn urls_are_checked() {
        assert_eq!(parse_url("https://es:9200/_bulk"), Ok(true));
        assert_eq!(
            parse_url("http://127.0.0.1:8088/services/collector/event"),
            Ok(false)
        );
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http:///path").is_err());
        assert!(parse_url("http://a b/").is_err());
    }

    #[test]
    fn bulk_items_409_is_delivered_429_retries_400_is_rejected() {
        let batch = [rec(1, "a"), rec(2, "b"), rec(3, "c")];
        let ok = r#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":409}},{"create":{"status":400,"error":{"type":"mapper_parsing_exception"}}}]}"#;
        let d = bulk_outcome(&batch, ok).unwrap();
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected[0].0, 3);
        assert!(d.rejected[0].1.contains("mapper_parsing_exception"));
        let busy = r#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":429}},{"create":{"status":201}}]}"#;
        assert!(matches!(
            bulk_outcome(&batch, busy),
            Err(DeliveryError::Retry(_))
        ));
        assert!(bulk_outcome(&batch, r#"{"errors":false,"items":[]}"#)
            .unwrap()
            .rejected
            .is_empty());
        assert!(matches!(
            bulk_outcome(&batch, "<html>"),
            Err(DeliveryError::Retry(_))
        ));
    }

    #[test]
    fn hec_event_wraps_the_alert_with_its_time_and_host() {
        let e = hec_event(&rec(1, "a"), "mbp", "vigil:alert", Some("sec"));
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["time"].as_f64().unwrap(), 1717148832.5);
        assert_eq!(v["host"], "h1");
        assert_eq!(v["index"], "sec");
        assert_eq!(v["event"]["id"], "a");
    }
}
