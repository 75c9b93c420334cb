//! Syslog sink: RFC 5424 messages over TCP or TLS with octet-counted framing
//! (RFC 6587 3.4.1, `<len> <message>`), so a message may hold any byte.
//!
//! `<PRI>1 <time, µs> <hostname> vigil <pid> alert [vigil@32473 id=.. rule=..
//! severity=.. risk=..] <alert JSON>`. PRI is the configured facility and a
//! severity from the alert's (critical → crit, high → err, medium →
//! warning, low → notice). The MSG has no BOM (it is MSG-ANY): receivers
//! then store the JSON untouched. 32473 is the documentation enterprise
//! number of RFC 5612.
//!
//! Syslog over TCP has no application acknowledgement: a batch counts as
//! delivered once the kernel took it. Before each batch the connection is
//! checked for a peer that closed it, which catches a restarted receiver;
//! a receiver that dies with unread data in its socket can still lose that
//! batch.

use std::borrow::Cow;
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;
use serde::Deserialize;

use super::{
    facility_code, split_host_port, tls, Delivered, DeliveryError, DeliverySettings,
    SinkSetupError, SyslogSettings,
};
use crate::delivery::outbox::OutboxRecord;

enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn sock(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    fn write_all_flush(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(buf).and_then(|()| s.flush()),
            Conn::Tls(s) => s.write_all(buf).and_then(|()| s.flush()),
        }
    }

    /// True if the receiver closed the connection (or it broke): sending
    /// into it would lose the batch.
    fn peer_closed(&mut self) -> bool {
        if self.sock().set_nonblocking(true).is_err() {
            return true;
        }
        let mut one = [0u8; 1];
        let closed = match self.sock().peek(&mut one) {
            Ok(0) => true,
            Ok(_) => match self {
                // Receivers do not talk back on plain syslog; ignore it.
                Conn::Plain(_) => false,
                // TLS records (session tickets, close_notify): let rustls read them.
                Conn::Tls(s) => match s.conn.read_tls(&mut s.sock) {
                    Ok(0) => true,
                    Ok(_) => s
                        .conn
                        .process_new_packets()
                        .map_or(true, |st| st.peer_has_closed()),
                    Err(e) => e.kind() != io::ErrorKind::WouldBlock,
                },
            },
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        closed || self.sock().set_nonblocking(false).is_err()
    }
}

pub struct SyslogSink {
    host: String,
    port: u16,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    timeout: Duration,
    facility: u8,
    app_name: String,
    hostname: String,
    max_message: usize,
    conn: Option<Conn>,
}

impl SyslogSink {
    pub fn new(
        cfg: &SyslogSettings,
        delivery: &DeliverySettings,
    ) -> Result<SyslogSink, SinkSetupError> {
        let address = cfg.address.as_deref();
        let (host, port) = split_host_port(address.ok_or(SinkSetupError::Missing("address"))?)?;
        let tls = if cfg.tls == Some(true) {
            let name = cfg.server_name.clone().unwrap_or_else(|| host.clone());
            Some((
                tls::client_config(cfg.ca_file.as_deref())?,
                tls::server_name(&name)?,
            ))
        } else {
            None
        };
        Ok(SyslogSink {
            host,
            port,
            tls,
            timeout: delivery.timeout(),
            facility: facility_code(cfg.facility.as_deref().unwrap_or("auth")).unwrap_or(4),
            app_name: cfg.app_name.clone().unwrap_or_else(|| "vigil".into()),
            hostname: local_hostname(),
            max_message: (cfg.max_message_kb.unwrap_or(64) as usize).saturating_mul(1024),
            conn: None,
        })
    }

    fn connect(&self) -> io::Result<Conn> {
        let mut last = None;
        let mut tcp = None;
        for addr in (self.host.as_str(), self.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
        })?;
        tcp.set_write_timeout(Some(self.timeout))?;
        tcp.set_read_timeout(Some(self.timeout))?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Conn::Plain(tcp)),
            Some((cfg, name)) => {
                let conn = ClientConnection::new(Arc::clone(cfg), name.clone())
                    .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
                let mut s = StreamOwned::new(conn, tcp);
                // Handshake now, so certificate problems show as such.
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock)?;
                }
                Ok(Conn::Tls(Box::new(s)))
            }
        }
    }

    fn send(&mut self, batch: &[OutboxRecord]) -> io::Result<()> {
        if self.conn.as_mut().is_some_and(Conn::peer_closed) {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect()?);
        }
        let mut buf = Vec::new();
        for r in batch {
            let msg = format_rfc5424(
                &shrink(&r.json, self.max_message),
                self.facility,
                &self.hostname,
                &self.app_name,
                std::process::id(),
            );
            write!(buf, "{} ", msg.len())?;
            buf.extend_from_slice(msg.as_bytes());
        }
        self.conn
            .as_mut()
            .expect("connected above")
            .write_all_flush(&buf)
    }
}

impl super::Sink for SyslogSink {
    fn deliver(&mut self, batch: &[OutboxRecord]) -> Result<Delivered, DeliveryError> {
        self.send(batch).map_err(|e| {
            self.conn = None;
            DeliveryError::Retry(format!(
                "syslog {}:{}{}: {e}",
                self.host,
                self.port,
                if self.tls.is_some() { " (TLS)" } else { "" }
            ))
        })?;
        Ok(Delivered::default())
    }
}

fn local_hostname() -> String {
    let name = sysinfo::System::host_name().unwrap_or_default();
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if clean.is_empty() {
        "-".into()
    } else {
        clean
    }
}

/// SD-PARAM value escaping (RFC 5424 6.3.3).
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(Deserialize, Default)]
struct Head {
    #[serde(default)]
    id: String,
    #[serde(default, rename = "@timestamp")]
    timestamp: String,
    #[serde(default)]
    rule: HeadRule,
}

#[derive(Deserialize, Default)]
struct HeadRule {
    #[serde(default)]
    id: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    risk_score: u32,
}

/// One RFC 5424 message (without the octet count) for an alert document.
pub fn format_rfc5424(
    json: &str,
    facility: u8,
    hostname: &str,
    app_name: &str,
    procid: u32,
) -> String {
    let head: Head = serde_json::from_str(json).unwrap_or_default();
    let severity = match head.rule.severity.as_str() {
        "critical" => 2,
        "high" => 3,
        "medium" => 4,
        _ => 5,
    };
    let pri = u32::from(facility) * 8 + severity;
    // RFC 5424 allows at most 6 fraction digits.
    let time = dsl::time::parse_rfc3339(&head.timestamp)
        .ok()
        .and_then(|ns| {
            chrono::DateTime::from_timestamp(
                ns.div_euclid(1_000_000_000),
                ns.rem_euclid(1_000_000_000) as u32,
            )
        })
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_else(|| "-".into());
    format!(
        "<{pri}>1 {time} {hostname} {app_name} {procid} alert [vigil@32473 id=\"{}\" rule=\"{}\" severity=\"{}\" risk=\"{}\"] {json}",
        sd_escape(&head.id),
        sd_escape(&head.rule.id),
        sd_escape(&head.rule.severity),
        head.rule.risk_score,
    )
}

/// An alert that fits in `max` bytes (plus header room): first without the
/// window events, then without ancestry, then only the rule block. What was
/// left out is listed in a top-level `truncated` array.
fn shrink(json: &str, max: usize) -> Cow<'_, str> {
    // Room for the header in front of the JSON.
    let budget = max.saturating_sub(400);
    if json.len() <= budget {
        return Cow::Borrowed(json);
    }
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(json) else {
        return Cow::Borrowed(json);
    };
    let mut cut = Vec::new();
    let fits = |d: &serde_json::Value| serde_json::to_string(d).map_or(0, |s| s.len()) <= budget;
    if let Some(w) = doc
        .pointer_mut("/enrichments/window")
        .and_then(|w| w.as_object_mut())
    {
        if w.remove("events").is_some() {
            cut.push("enrichments.window.events");
        }
    }
    if !fits(&doc) {
        if let Some(e) = doc
            .pointer_mut("/enrichments")
            .and_then(|w| w.as_object_mut())
        {
            if e.remove("ancestry").is_some() {
                cut.push("enrichments.ancestry");
            }
        }
    }
    if !fits(&doc) {
        if let Some(o) = doc.as_object_mut() {
            o.retain(|k, _| {
                matches!(
                    k.as_str(),
                    "id" | "@timestamp" | "first_timestamp" | "rule" | "host_id" | "join_key"
                )
            });
            cut.push("events");
            cut.push("enrichments");
        }
    }
    if let Some(o) = doc.as_object_mut() {
        o.insert("truncated".into(), serde_json::json!(cut));
    }
    Cow::Owned(serde_json::to_string(&doc).unwrap_or_else(|_| json.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_header_structured_data_and_escaping() {
        let json = r#"{"id":"abc","@timestamp":"2024-05-31T09:47:12.209157409Z","rule":{"id":"r\"]1","severity":"high","risk_score":73}}"#;
        let m = format_rfc5424(json, 4, "mbp", "vigil", 42);
        assert_eq!(
            m,
            format!("<35>1 2024-05-31T09:47:12.209157Z mbp vigil 42 alert [vigil@32473 id=\"abc\" rule=\"r\\\"\\]1\" severity=\"high\" risk=\"73\"] {json}")
        );
    }

    #[test]
    fn oversized_alerts_lose_window_events_first() {
        let big = serde_json::json!({
            "id": "x", "rule": {"id": "r"}, "events": [{"a": 1}],
            "enrichments": {"ancestry": {"e": [1]}, "window": {"total": 3, "events": ["y".repeat(5000)]}}
        })
        .to_string();
        let small = shrink(&big, 2000);
        let v: serde_json::Value = serde_json::from_str(&small).unwrap();
        assert_eq!(
            v["truncated"],
            serde_json::json!(["enrichments.window.events"])
        );
        assert_eq!(v["enrichments"]["window"]["total"], 3);
        assert_eq!(v["events"][0]["a"], 1);
        assert!(matches!(shrink(&big, 1 << 20), Cow::Borrowed(_)));
    }
}
