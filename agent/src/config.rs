//! `vigil.toml`: every setting has a default, so an empty file (or none) is a
//! working configuration. `validate` reports every problem at once.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Stable id of this host in events and alerts; empty = /etc/machine-id
    /// (Linux) or the host name.
    pub host_id: String,
    /// Where status.json (and later the outbox) live.
    pub state_dir: PathBuf,
    pub spool: SpoolSection,
    pub rules: RulesSection,
    pub queue: QueueSection,
    pub correlator: CorrelatorSection,
    pub source: SourceSection,
    pub outputs: OutputsSection,
    pub outbox: OutboxSection,
    pub alerts: AlertsSection,
    pub control: ControlSection,
    /// NATS servers, for `kind = "nats"` sinks and fleet requests.
    pub nats: crate::nats::NatsSection,
    /// Answer fleet requests (status, context, hunt) over NATS.
    pub fleet: crate::fleet::FleetSection,
    /// Alert sinks (`[[sinks]]`), fed through the durable outbox.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<crate::delivery::sinks::SinkConfig>,
}

/// The durable outbox in `<state_dir>/outbox` (see `outbox.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSection {
    /// Upper bound of the outbox on disk.
    pub max_mb: u64,
    /// Segment size; whole segments are deleted once every sink has them.
    pub segment_kb: u64,
    /// `drop_oldest` or `drop_newest` when undelivered alerts fill `max_mb`.
    pub when_full: crate::delivery::outbox::WhenFull,
    /// On shutdown, sinks keep delivering for at most this long.
    pub drain_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSection {
    /// At most this many spool events in an alert's `window:` context (the
    /// ones nearest the match); 0 turns window context off.
    pub window_max_events: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    /// Serve `vigil status|context|rules reload` on `<state_dir>/vigil.sock`.
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSection {
    /// Set to false to run without history (not recommended).
    pub enabled: bool,
    pub path: PathBuf,
    /// Ring size for a new spool; an existing spool keeps its size.
    pub size_mb: u64,
    /// Raw bytes per block before it is sealed and compressed.
    pub block_kb: u64,
    /// A block is sealed at least this often (bounds loss on a crash).
    pub max_batch_age_ms: u64,
    pub zstd_level: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesSection {
    /// Extra `*.rhai` rules; a rule with a shipped rule's id replaces it.
    pub dir: Option<PathBuf>,
    /// Load the rules embedded in the binary.
    pub shipped: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// Events buffered between sources and the pipeline; beyond it events are dropped and counted.
    pub capacity: usize,
    /// How long the idle pipeline lets events gather before it takes them
    /// as one batch: the longest an event waits, traded against CPU. A
    /// burst that fills a quarter of `capacity` ends the wait early.
    pub batch_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelatorSection {
    pub max_open_per_rule: usize,
    pub reorder_window_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Live Linux telemetry: process connector, fanotify, socket tables (root).
    Linux,
    /// Seeded synthetic macOS traffic at a fixed rate.
    Synthetic,
    /// ECS NDJSON files, in timestamp order.
    Replay,
    /// macOS: spawn `/usr/bin/eslogger` and read its NDJSON (root, Full Disk Access).
    Eslogger,
    /// macOS: an in-process Endpoint Security client (root, Full Disk Access,
    /// the ES client entitlement); the production source for Mac fleets.
    #[serde(rename = "endpoint_security")]
    #[value(name = "endpoint-security")]
    EndpointSecurity,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSection {
    pub kind: SourceKind,
    /// Mount points fanotify watches for file writes and executions.
    pub fanotify_paths: Vec<PathBuf>,
    /// How often socket tables are polled for new connections.
    pub socket_poll_ms: u64,
    /// Events per second from the synthetic source (0 = as fast as possible).
    pub synthetic_rate: u64,
    pub synthetic_seed: u64,
    /// Plant attack chains every N synthetic events (0 = never).
    pub synthetic_plant_every: u64,
    /// Which chains: `installer` (the seed chain) or `all` (one per shipped rule).
    pub synthetic_plant: crate::sources::synthetic::Plant,
    pub replay_files: Vec<PathBuf>,
    /// Replay at the recorded pace instead of as fast as possible.
    pub replay_pace: bool,
    /// Environment variables exec events keep as `process.env_vars`
    /// (`NAME=value`): names, or prefixes ending in `*`. The rest of an
    /// environment (tokens, keys) is never stored.
    pub env_vars: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputsSection {
    /// Print each alert as one JSON line on stdout.
    pub stdout: bool,
    /// Append each alert to this NDJSON file.
    pub file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host_id: String::new(),
            state_dir: PathBuf::from("/var/lib/vigil"),
            spool: SpoolSection::default(),
            rules: RulesSection::default(),
            queue: QueueSection::default(),
            correlator: CorrelatorSection::default(),
            source: SourceSection::default(),
            outputs: OutputsSection::default(),
            outbox: OutboxSection::default(),
            alerts: AlertsSection::default(),
            control: ControlSection::default(),
            nats: Default::default(),
            fleet: Default::default(),
            sinks: Vec::new(),
        }
    }
}

impl Default for OutboxSection {
    fn default() -> Self {
        OutboxSection {
            max_mb: 256,
            segment_kb: 4096,
            when_full: crate::delivery::outbox::WhenFull::DropOldest,
            drain_timeout_ms: 5_000,
        }
    }
}

impl Default for AlertsSection {
    fn default() -> Self {
        AlertsSection {
            window_max_events: 50,
        }
    }
}

impl Default for ControlSection {
    fn default() -> Self {
        ControlSection { enabled: true }
    }
}

impl SpoolSection {
    /// The spool writer's settings for a new or reopened spool.
    pub fn spool_config(&self) -> spool::SpoolConfig {
        spool::SpoolConfig {
            capacity_bytes: self.size_mb << 20,
            block_target_bytes: (self.block_kb << 10) as usize,
            max_batch_age: std::time::Duration::from_millis(self.max_batch_age_ms),
            zstd_level: self.zstd_level,
        }
    }
}

impl CorrelatorSection {
    pub fn correlator_config(&self) -> dsl::correlate::CorrelatorConfig {
        dsl::correlate::CorrelatorConfig {
            max_open_per_rule: self.max_open_per_rule,
            reorder_window_ns: self.reorder_window_ms as i64 * 1_000_000,
            ..dsl::correlate::CorrelatorConfig::default()
        }
    }
}

impl Default for SpoolSection {
    fn default() -> Self {
        SpoolSection {
            enabled: true,
            path: PathBuf::from("/var/lib/vigil/events.spool"),
            size_mb: 1024,
            block_kb: 1024,
            max_batch_age_ms: 1000,
            zstd_level: 1,
        }
    }
}

impl Default for RulesSection {
    fn default() -> Self {
        RulesSection {
            dir: None,
            shipped: true,
        }
    }
}

impl Default for QueueSection {
    fn default() -> Self {
        QueueSection {
            capacity: 65_536,
            batch_ms: 1000,
        }
    }
}

impl Default for CorrelatorSection {
    fn default() -> Self {
        CorrelatorSection {
            max_open_per_rule: 10_000,
            reorder_window_ms: 2_000,
        }
    }
}

impl Default for SourceSection {
    fn default() -> Self {
        SourceSection {
            kind: SourceKind::Linux,
            fanotify_paths: ["/", "/home", "/tmp", "/var/tmp"]
                .map(PathBuf::from)
                .to_vec(),
            socket_poll_ms: 200,
            synthetic_rate: 2_000,
            synthetic_seed: 42,
            synthetic_plant_every: 0,
            synthetic_plant: crate::sources::synthetic::Plant::Installer,
            replay_files: Vec::new(),
            replay_pace: false,
            env_vars: crate::sources::es::mapping::default_env_vars(),
        }
    }
}

impl Default for OutputsSection {
    fn default() -> Self {
        OutputsSection {
            stdout: true,
            file: Some(PathBuf::from("/var/lib/vigil/alerts.ndjson")),
        }
    }
}

impl Config {
    /// Parses TOML; a syntax or unknown-key error names the key and line.
    ///
    /// `state_dir` moves what lives in it by default: the spool
    /// (`events.spool`) and the alerts file (`alerts.ndjson`), unless
    /// `spool.path` or `outputs.file` is set too.
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        // Typed first: its errors name the line.
        let mut cfg: Config = toml::from_str(text)?;
        let table: toml::Table = toml::from_str(text)?;
        let set = |section: &str, key: &str| {
            table
                .get(section)
                .and_then(|s| s.as_table())
                .is_some_and(|s| s.contains_key(key))
        };
        cfg.place_in_state_dir(!set("spool", "path"), !set("outputs", "file"));
        Ok(cfg)
    }

    /// Puts the spool and the alerts file (those not set on their own) in
    /// `state_dir`.
    pub fn place_in_state_dir(&mut self, spool: bool, alerts: bool) {
        if spool {
            self.spool.path = self.state_dir.join("events.spool");
        }
        if alerts {
            self.outputs.file = Some(self.state_dir.join("alerts.ndjson"));
        }
    }

    /// Every problem with the values, not just the first.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.spool.enabled {
            if self.spool.size_mb < 1 {
                errs.push("spool.size_mb must be at least 1".into());
            }
            if self.spool.size_mb > 1 << 20 {
                errs.push("spool.size_mb must be at most 1048576 (1 TiB)".into());
            }
            if !(4..=65_536).contains(&self.spool.block_kb) {
                errs.push("spool.block_kb must be between 4 and 65536".into());
            }
            if self.spool.block_kb * 4 > self.spool.size_mb * 1024 {
                errs.push("spool.block_kb must be at most a quarter of spool.size_mb".into());
            }
            if !(10..=60_000).contains(&self.spool.max_batch_age_ms) {
                errs.push("spool.max_batch_age_ms must be between 10 and 60000".into());
            }
            if !(-7..=19).contains(&self.spool.zstd_level) {
                errs.push("spool.zstd_level must be between -7 and 19".into());
            }
        }
        if self.queue.capacity == 0 || self.queue.capacity > 10_000_000 {
            errs.push("queue.capacity must be between 1 and 10000000".into());
        }
        if !(1..=1000).contains(&self.queue.batch_ms) {
            errs.push("queue.batch_ms must be between 1 and 1000".into());
        }
        if self.correlator.max_open_per_rule == 0 {
            errs.push("correlator.max_open_per_rule must be at least 1".into());
        }
        if self.correlator.reorder_window_ms > 60_000 {
            errs.push("correlator.reorder_window_ms must be at most 60000".into());
        }
        if let Some(dir) = &self.rules.dir {
            if !dir.is_dir() {
                errs.push(format!("rules.dir {} is not a directory", dir.display()));
            }
        }
        if !self.rules.shipped && self.rules.dir.is_none() {
            errs.push("no rules: set rules.dir or leave rules.shipped = true".into());
        }
        match self.source.kind {
            SourceKind::Replay if self.source.replay_files.is_empty() => {
                errs.push("source.kind = \"replay\" needs source.replay_files".into())
            }
            SourceKind::Replay => {
                for f in &self.source.replay_files {
                    if !f.is_file() {
                        errs.push(format!(
                            "source.replay_files: {} is not a file",
                            f.display()
                        ));
                    }
                }
            }
            SourceKind::Linux if !(10..=60_000).contains(&self.source.socket_poll_ms) => {
                errs.push("source.socket_poll_ms must be between 10 and 60000".into())
            }
            _ => {}
        }
        if !self.outputs.stdout && self.outputs.file.is_none() && self.sinks.is_empty() {
            errs.push(
                "no alert output: enable outputs.stdout, set outputs.file or add [[sinks]]".into(),
            );
        }
        if !(1..=1 << 20).contains(&self.outbox.max_mb) {
            errs.push("outbox.max_mb must be between 1 and 1048576".into());
        }
        if self.outbox.segment_kb < 16
            || self.outbox.segment_kb.saturating_mul(4) > self.outbox.max_mb.saturating_mul(1024)
        {
            errs.push(
                "outbox.segment_kb must be at least 16 and at most a quarter of outbox.max_mb"
                    .into(),
            );
        }
        if self.outbox.drain_timeout_ms > 600_000 {
            errs.push("outbox.drain_timeout_ms must be at most 600000".into());
        }
        if self.alerts.window_max_events > 10_000 {
            errs.push("alerts.window_max_events must be at most 10000".into());
        }
        errs.extend(crate::delivery::sinks::validate_all(&self.sinks));
        errs.extend(self.nats.validate());
        errs.extend(self.fleet.validate());
        let wants_nats = self.fleet.enabled
            || self
                .sinks
                .iter()
                .any(|s| s.kind() == crate::delivery::sinks::SinkKind::Nats);
        if wants_nats && !self.nats.is_configured() {
            errs.push(
                "nats.urls is empty, but fleet.enabled or a kind = \"nats\" sink needs it".into(),
            );
        }
        if self.fleet.enabled && !self.control.enabled {
            errs.push(
                "fleet.enabled needs control.enabled (fleet status and context use it)".into(),
            );
        }
        errs
    }

    /// The configured host id, or one derived from the machine.
    pub fn resolved_host_id(&self) -> String {
        if !self.host_id.trim().is_empty() {
            return self.host_id.trim().to_string();
        }
        std::fs::read_to_string("/etc/machine-id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(sysinfo::System::host_name)
            .unwrap_or_else(|| "unknown-host".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults_and_valid_for_linux() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.spool.size_mb, 1024);
        assert_eq!(c.source.kind, SourceKind::Linux);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let c = Config::from_toml(
            "[spool]\nsize_mb = 0\nblock_kb = 1\n[queue]\ncapacity = 0\n[source]\nkind = \"replay\"\n[outputs]\nstdout = false\nfile = \"\"\n",
        )
        .unwrap();
        let mut c = c;
        c.outputs.file = None;
        let errs = c.validate();
        for needle in [
            "spool.size_mb",
            "spool.block_kb",
            "queue.capacity",
            "replay_files",
            "no alert output",
        ] {
            assert!(
                errs.iter().any(|e| e.contains(needle)),
                "missing {needle} in {errs:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = Config::from_toml("[spool]\nsize_gb = 3\n").unwrap_err();
        assert!(err.to_string().contains("size_gb"), "{err}");
    }
}
