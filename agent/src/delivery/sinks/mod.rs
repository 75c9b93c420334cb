//! Sinks deliver alerts from the outbox to the people who act on them: an
//! NDJSON file, syslog (RFC 5424 over TCP or TLS) and HTTP (Elasticsearch
//! `_bulk`, Splunk HEC, a JSON webhook). Each sink runs on its own thread
//! with its own outbox cursor: it reads a batch, delivers it, and only then
//! acknowledges it, retrying with exponential backoff while the receiver is
//! down. See `delivery/outbox.rs` for the at-least-once boundary.
//!
//! Owns: sink configuration, validation and delivery threads. Must not
//! touch: alerts before the outbox holds them.

mod config;
mod file;
mod http;
mod nats;
mod syslog;
mod tls;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::delivery::outbox::{Outbox, OutboxReader, OutboxRecord};

pub(crate) use config::{facility_code, split_host_port};
pub use config::{
    validate_all, AddressError, DeliverySettings, FileSettings, HttpFormat, HttpSettings,
    NatsSettings, SinkConfig, SinkKind, SinkSettings, SinkSetupError, SyslogSettings, UrlError,
};
pub use file::FileSink;
pub use http::HttpSink;
pub use nats::{subject_for as nats_subject_for, NatsSink};
pub use syslog::{format_rfc5424, SyslogSink};

/// Accepted records, with the ones the receiver refused for good.
#[derive(Debug, Default)]
pub struct Delivered {
    /// `(seq, reason)` of records the receiver will never accept.
    pub rejected: Vec<(u64, String)>,
}

#[derive(Debug)]
pub enum DeliveryError {
    /// The receiver is down, slow or refusing for now: retry later.
    Retry(String),
    /// The receiver says this request can never succeed (bad data, too
    /// large): split the batch, and drop a single record that still fails.
    Permanent(String),
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Retry(m) | DeliveryError::Permanent(m) => f.write_str(m),
        }
    }
}

pub trait Sink: Send {
    /// Returns once the receiver has accepted the batch.
    fn deliver(&mut self, batch: &[OutboxRecord]) -> Result<Delivered, DeliveryError>;
}

/// A sink that could not be built: which one, and what is wrong in words
/// an admin can act on (a missing key, an unreadable CA file, ...).
#[derive(Debug, thiserror::Error)]
#[error("sink {name:?}: {source}")]
pub struct SinkBuildError {
    pub name: String,
    pub source: SinkSetupError,
}

/// Builds the sink a config describes (reads CA files, resolves secrets);
/// `nats` sinks connect with the `[nats]` settings.
pub fn build(
    cfg: &SinkConfig,
    nats: &crate::nats::NatsSection,
) -> Result<Box<dyn Sink>, SinkBuildError> {
    let at = |source: SinkSetupError| SinkBuildError {
        name: cfg.name.clone(),
        source,
    };
    let d = &cfg.delivery;
    Ok(match &cfg.settings {
        SinkSettings::File(s) => Box::new(FileSink::new(s).map_err(at)?),
        SinkSettings::Syslog(s) => Box::new(SyslogSink::new(s, d).map_err(at)?),
        SinkSettings::Http(s) => Box::new(HttpSink::new(s, d).map_err(at)?),
        SinkSettings::Nats(s) => Box::new(NatsSink::new(&cfg.name, s, d, nats).map_err(at)?),
    })
}

/// Per-sink counters (status).
#[derive(Debug, Default)]
pub struct SinkStats {
    pub delivered: AtomicU64,
    pub batches: AtomicU64,
    pub failures: AtomicU64,
    pub rejected: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SinkStats {
    fn set_error(&self, e: Option<String>) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = e;
        }
    }
}

/// What `status` shows per sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStatus {
    pub name: String,
    pub kind: String,
    pub delivered: u64,
    pub batches: u64,
    pub failures: u64,
    pub rejected: u64,
    /// Alerts in the outbox this sink has not had acknowledged.
    pub backlog: u64,
    /// Alerts this sink lost to a full outbox (`drop_oldest`).
    pub dropped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Read-only handle on the running sinks for `status`.
#[derive(Clone)]
pub struct SinkMonitor {
    outbox: Outbox,
    sinks: Arc<Vec<(String, SinkKind, Arc<SinkStats>)>>,
}

impl SinkMonitor {
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn status(&self) -> Vec<SinkStatus> {
        let ob = self.outbox.status();
        self.sinks
            .iter()
            .map(|(name, kind, st)| {
                let b = ob.sinks.iter().find(|b| &b.name == name);
                SinkStatus {
                    name: name.clone(),
                    kind: kind.as_str().into(),
                    delivered: st.delivered.load(Ordering::Relaxed),
                    batches: st.batches.load(Ordering::Relaxed),
                    failures: st.failures.load(Ordering::Relaxed),
                    rejected: st.rejected.load(Ordering::Relaxed),
                    backlog: b.map_or(0, |b| b.backlog),
                    dropped: b.map_or(0, |b| b.dropped),
                    last_error: st.last_error.lock().ok().and_then(|g| g.clone()),
                }
            })
            .collect()
    }
}

/// How the delivery threads should stop.
#[derive(Default)]
struct StopSignal {
    /// Set: deliver what is in the outbox until `deadline`, then stop.
    draining: AtomicBool,
    deadline: Mutex<Option<Instant>>,
}

impl StopSignal {
    fn past_deadline(&self) -> bool {
        self.draining.load(Ordering::Acquire)
            && self
                .deadline
                .lock()
                .map(|d| d.is_none_or(|d| Instant::now() >= d))
                .unwrap_or(true)
    }

    /// Sleeps up to `d`; false if the sink should stop instead.
    fn pause(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.past_deadline() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }
}

/// The delivery threads of all sinks.
pub struct SinkSet {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<StopSignal>,
    monitor: SinkMonitor,
}

impl SinkSet {
    /// Starts one delivery thread per sink.
    pub fn start(
        outbox: &Outbox,
        sinks: Vec<(SinkConfig, Box<dyn Sink>)>,
    ) -> std::io::Result<SinkSet> {
        let stop = Arc::new(StopSignal::default());
        let mut threads = Vec::new();
        let mut stats = Vec::new();
        for (cfg, sink) in sinks {
            let st = Arc::new(SinkStats::default());
            stats.push((cfg.name.clone(), cfg.kind(), Arc::clone(&st)));
            let reader = outbox.reader(&cfg.name);
            let stop = Arc::clone(&stop);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("sink-{}", cfg.name))
                    .spawn(move || deliver_loop(reader, sink, &cfg, &st, &stop))?,
            );
        }
        Ok(SinkSet {
            threads,
            stop,
            monitor: SinkMonitor {
                outbox: outbox.clone(),
                sinks: Arc::new(stats),
            },
        })
    }

    pub fn monitor(&self) -> SinkMonitor {
        self.monitor.clone()
    }

    /// Lets the sinks deliver what the outbox holds for up to `drain`, then
    /// stops them; what is left is delivered after the next start.
    pub fn shutdown(self, drain: Duration) {
        if let Ok(mut d) = self.stop.deadline.lock() {
            *d = Some(Instant::now() + drain);
        }
        self.stop.draining.store(true, Ordering::Release);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn deliver_loop(
    mut reader: OutboxReader,
    mut sink: Box<dyn Sink>,
    cfg: &SinkConfig,
    stats: &SinkStats,
    stop: &StopSignal,
) {
    let name = cfg.name.as_str();
    let mut pending: Vec<OutboxRecord> = Vec::new();
    let mut backoff = cfg.delivery.retry_min();
    // After a permanent error, records go one by one until this many are past.
    let mut isolate = 0usize;
    loop {
        if pending.is_empty() {
            if stop.draining.load(Ordering::Acquire) && reader.caught_up() {
                return;
            }
            if stop.past_deadline() {
                return;
            }
            match reader.read_batch(
                cfg.delivery.batch_max(),
                cfg.delivery.batch_max_bytes(),
                Duration::from_millis(200),
            ) {
                Ok(b) => pending = b,
                Err(e) => {
                    tracing::error!(sink = name, error = %e, "reading the outbox failed");
                    stats.set_error(Some(format!("outbox: {e}")));
                    if !stop.pause(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(cfg.delivery.retry_max());
                }
            }
            continue;
        }
        if stop.past_deadline() {
            return;
        }
        let n = if isolate > 0 { 1 } else { pending.len() };
        match sink.deliver(&pending[..n]) {
            Ok(d) => {
                let upto = pending[n - 1].seq + 1;
                if let Err(e) = reader.ack(upto) {
                    // Delivered but not recorded: it will be sent again (at least once).
                    tracing::error!(sink = name, error = %e, "writing the sink cursor failed");
                }
                for (seq, why) in &d.rejected {
                    tracing::error!(sink = name, seq, reason = %why, "receiver rejected an alert for good; skipped");
                }
                stats
                    .rejected
                    .fetch_add(d.rejected.len() as u64, Ordering::Relaxed);
                stats
                    .delivered
                    .fetch_add((n - d.rejected.len()) as u64, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.set_error(None);
                pending.drain(..n);
                isolate = isolate.saturating_sub(n);
                backoff = cfg.delivery.retry_min();
            }
            Err(DeliveryError::Permanent(e)) if n == 1 => {
                tracing::error!(sink = name, seq = pending[0].seq, error = %e, "receiver rejected an alert for good; skipped");
                if let Err(e) = reader.ack(pending[0].seq + 1) {
                    tracing::error!(sink = name, error = %e, "writing the sink cursor failed");
                }
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                stats.set_error(Some(e));
                pending.remove(0);
                isolate = isolate.saturating_sub(1);
            }
            Err(DeliveryError::Permanent(e)) => {
                tracing::warn!(sink = name, error = %e, records = n, "receiver refused a batch; retrying one by one");
                isolate = n;
            }
            Err(DeliveryError::Retry(e)) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = name, error = %e, retry_in_ms = backoff.as_millis() as u64, "delivery failed; will retry");
                stats.set_error(Some(e));
                if !stop.pause(backoff) {
                    return;
                }
                backoff = (backoff * 2).min(cfg.delivery.retry_max());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Vec<SinkConfig> {
        #[derive(Deserialize)]
        struct W {
            sinks: Vec<SinkConfig>,
        }
        toml::from_str::<W>(toml_text).unwrap().sinks
    }

    #[test]
    fn every_sink_problem_is_reported_at_once() {
        let sinks = parse(
            r#"
            [[sinks]]
            kind = "file"
            name = "a b"
            url = "http://x"
            [[sinks]]
            kind = "syslog"
            name = "s"
            address = "nohost"
            facility = "bogus"
            ca_file = "/x"
            [[sinks]]
            kind = "http"
            name = "s"
            url = "ftp://x"
            index = "i"
            format = "webhook"
            timeout_ms = 5
            retry_min_ms = 1000
            retry_max_ms = 10
            "#,
        );
        let errs = validate_all(&sinks);
        for needle in [
            "sinks[0] (file \"a b\"): name must be",
            "key `url` does not apply to kind = \"file\"",
            "sinks[0] (file \"a b\"): needs path",
            "address \"nohost\": needs a port",
            "unknown facility \"bogus\"",
            "ca_file only applies with tls = true",
            "ca_file /x is not a file",
            "url \"ftp://x\"",
            "index does not apply to format = \"webhook\"",
            "timeout_ms must be between",
            "retry_max_ms must not be below",
            "sinks[2]: duplicate sink name \"s\"",
        ] {
            assert!(
                errs.iter().any(|e| e.contains(needle)),
                "missing {needle:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn a_good_config_passes() {
        let sinks = parse(
            r#"
            [[sinks]]
            kind = "file"
            name = "local"
            path = "/tmp/alerts.ndjson"
            max_mb = 10
            [[sinks]]
            kind = "syslog"
            name = "rsyslog"
            address = "127.0.0.1:6514"
            tls = true
            [[sinks]]
            kind = "http"
            name = "es"
            url = "https://es.example:9200/_bulk"
            format = "es_bulk"
            auth_header = "ApiKey abc"
            "#,
        );
        assert_eq!(validate_all(&sinks), Vec::<String>::new());
    }

    #[test]
    fn unknown_keys_and_kinds_are_rejected_by_name() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct W {
            sinks: Vec<SinkConfig>,
        }
        let e = toml::from_str::<W>("[[sinks]]\nkind = \"file\"\nname = \"x\"\npth = \"/a\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("pth"), "{e}");
        let e = toml::from_str::<W>("[[sinks]]\nkind = \"kafka\"\nname = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("kafka"), "{e}");
    }

    /// A sink that fails a few times, then refuses one record for good.
    struct Flaky {
        fail_first: usize,
        poison: u64,
        got: Arc<Mutex<Vec<u64>>>,
    }

    impl Sink for Flaky {
        fn deliver(&mut self, batch: &[OutboxRecord]) -> Result<Delivered, DeliveryError> {
            if self.fail_first > 0 {
                self.fail_first -= 1;
                return Err(DeliveryError::Retry("down".into()));
            }
            if batch.iter().any(|r| r.seq == self.poison) {
                return Err(DeliveryError::Permanent("400 bad document".into()));
            }
            self.got.lock().unwrap().extend(batch.iter().map(|r| r.seq));
            Ok(Delivered::default())
        }
    }

    #[test]
    fn retries_then_isolates_a_poison_record_and_drains_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let (ob, _) = Outbox::open(
            crate::delivery::outbox::OutboxConfig {
                dir: dir.path().to_path_buf(),
                max_bytes: 1 << 20,
                segment_bytes: 1 << 16,
                when_full: Default::default(),
                sync: false,
            },
            &["t".to_string()],
        )
        .unwrap();
        let docs: Vec<String> = (0..20).map(|i| format!("{{\"id\":\"a{i}\"}}")).collect();
        ob.append_json(&docs).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let cfg = parse(
            "[[sinks]]\nkind = \"file\"\nname = \"t\"\npath = \"/x\"\nretry_min_ms = 10\nretry_max_ms = 40\nbatch_max = 8\n",
        )
        .remove(0);
        let sink = Flaky {
            fail_first: 3,
            poison: 5,
            got: Arc::clone(&got),
        };
        let set = SinkSet::start(&ob, vec![(cfg, Box::new(sink))]).unwrap();
        let mon = set.monitor();
        set.shutdown(Duration::from_secs(10));
        let seqs = got.lock().unwrap().clone();
        let want: Vec<u64> = (0..20).filter(|&s| s != 5).collect();
        assert_eq!(seqs, want);
        let st = &mon.status()[0];
        assert_eq!(
            (st.failures, st.rejected, st.delivered, st.backlog),
            (3, 1, 19, 0),
            "{st:?}"
        );
    }
}
