//! `[[sinks]]` tables: one settings struct per kind, chosen by `kind`, plus
//! the delivery settings every kind shares. serde rejects a key no kind has
//! (by name) and an unknown kind; a key of another kind is kept aside and
//! reported by [`validate_all`] with every other problem, so an admin sees
//! them all at once.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::http;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    File,
    Syslog,
    Http,
    /// NATS JetStream (connection settings from `[nats]`).
    Nats,
}

impl SinkKind {
    const ALL: [SinkKind; 4] = [
        SinkKind::File,
        SinkKind::Syslog,
        SinkKind::Http,
        SinkKind::Nats,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::File => "file",
            SinkKind::Syslog => "syslog",
            SinkKind::Http => "http",
            SinkKind::Nats => "nats",
        }
    }

    /// The keys of this kind's settings (besides `kind`, `name` and the
    /// delivery keys).
    fn keys(self) -> &'static [&'static str] {
        match self {
            SinkKind::File => FileSettings::KEYS,
            SinkKind::Syslog => SyslogSettings::KEYS,
            SinkKind::Http => HttpSettings::KEYS,
            SinkKind::Nats => NatsSettings::KEYS,
        }
    }
}

/// Body format of an `http` sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFormat {
    /// Elasticsearch `_bulk`: `create` actions with `_id` = alert id.
    EsBulk,
    /// Splunk HTTP Event Collector: one event object per alert.
    SplunkHec,
    /// A JSON array of alerts.
    Webhook,
}

/// `kind = "file"`: an NDJSON file, rotated by size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Rotate the file when it would grow past this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mb: Option<u64>,
    /// Rotated files kept (`path.1` newest .. `path.N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
}

impl FileSettings {
    const KEYS: &'static [&'static str] = &["path", "max_mb", "keep"];
}

/// `kind = "syslog"`: RFC 5424 over TCP, or TLS with `tls = true`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSettings {
    /// `host:port` of the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
    /// Larger alerts are shrunk (window events, then ancestry dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_kb: Option<u64>,
    /// PEM file of the CA certificates to trust instead of the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Name to verify the server certificate against (default: the host
    /// of `address`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl SyslogSettings {
    const KEYS: &'static [&'static str] = &[
        "address",
        "tls",
        "facility",
        "app_name",
        "max_message_kb",
        "ca_file",
        "server_name",
    ];
}

/// `kind = "http"`: Elasticsearch `_bulk`, Splunk HEC or a JSON webhook.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<HttpFormat>,
    /// Value of the `Authorization` header (`ApiKey ...`, `Splunk <token>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<String>,
    /// Name of an environment variable holding that value instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header_env: Option<String>,
    /// Elasticsearch index / Splunk index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Splunk sourcetype.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourcetype: Option<String>,
    /// PEM file of the CA certificates to trust (https URLs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl HttpSettings {
    const KEYS: &'static [&'static str] = &[
        "url",
        "format",
        "auth_header",
        "auth_header_env",
        "index",
        "sourcetype",
        "ca_file",
    ];
}

/// `kind = "nats"`: JetStream, with the connection from `[nats]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// JetStream stream name (default `VIGIL_ALERTS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Alerts go to `<subject_prefix>.<host>.<severity>` (default `vigil.alerts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_prefix: Option<String>,
    /// Create the stream (subjects `<subject_prefix>.>`) if it is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_stream: Option<bool>,
    /// De-duplication window of a stream this sink creates (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_window_s: Option<u64>,
}

impl NatsSettings {
    const KEYS: &'static [&'static str] = &[
        "stream",
        "subject_prefix",
        "create_stream",
        "duplicate_window_s",
    ];
}

/// What a sink delivers to, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkSettings {
    File(FileSettings),
    Syslog(SyslogSettings),
    Http(HttpSettings),
    Nats(NatsSettings),
}

impl SinkSettings {
    pub fn kind(&self) -> SinkKind {
        match self {
            SinkSettings::File(_) => SinkKind::File,
            SinkSettings::Syslog(_) => SinkKind::Syslog,
            SinkSettings::Http(_) => SinkKind::Http,
            SinkSettings::Nats(_) => SinkKind::Nats,
        }
    }
}

/// How every kind of sink batches and retries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_max: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_max_kb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_min_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_max_ms: Option<u64>,
}

impl DeliverySettings {
    const KEYS: &'static [&'static str] = &[
        "timeout_ms",
        "batch_max",
        "batch_max_kb",
        "retry_min_ms",
        "retry_max_ms",
    ];

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.unwrap_or(10_000))
    }

    pub fn batch_max(&self) -> usize {
        self.batch_max.unwrap_or(100)
    }

    pub fn batch_max_bytes(&self) -> usize {
        (self.batch_max_kb.unwrap_or(1024) as usize).saturating_mul(1024)
    }

    pub fn retry_min(&self) -> Duration {
        Duration::from_millis(self.retry_min_ms.unwrap_or(500))
    }

    pub fn retry_max(&self) -> Duration {
        Duration::from_millis(self.retry_max_ms.unwrap_or(60_000))
    }
}

/// One `[[sinks]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Unique; names the cursor file, so `[A-Za-z0-9_-]`.
    pub name: String,
    pub settings: SinkSettings,
    pub delivery: DeliverySettings,
    /// Keys of another kind that were set (reported by [`validate_all`]).
    misplaced: Vec<String>,
}

/// Every key a `[[sinks]]` table may have, for "unknown field" errors.
const ALL_KEYS: &[&str] = &[
    "kind",
    "name",
    "path",
    "max_mb",
    "keep",
    "address",
    "tls",
    "facility",
    "app_name",
    "max_message_kb",
    "ca_file",
    "server_name",
    "url",
    "format",
    "auth_header",
    "auth_header_env",
    "index",
    "sourcetype",
    "stream",
    "subject_prefix",
    "create_stream",
    "duplicate_window_s",
    "timeout_ms",
    "batch_max",
    "batch_max_kb",
    "retry_min_ms",
    "retry_max_ms",
];

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SinkConfig, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let kind: SinkKind = table
            .get("kind")
            .cloned()
            .ok_or_else(|| D::Error::missing_field("kind"))?
            .try_into()
            .map_err(D::Error::custom)?;
        let name: String = table
            .remove("name")
            .ok_or_else(|| D::Error::missing_field("name"))?
            .try_into()
            .map_err(|e| D::Error::custom(format!("name: {e}")))?;
        let mut delivery = toml::Table::new();
        for key in DeliverySettings::KEYS {
            if let Some(v) = table.remove(*key) {
                delivery.insert((*key).to_string(), v);
            }
        }
        let mut misplaced = Vec::new();
        let others: Vec<String> = table
            .keys()
            .filter(|k| *k != "kind" && !kind.keys().contains(&k.as_str()))
            .cloned()
            .collect();
        for key in others {
            if !SinkKind::ALL
                .iter()
                .any(|k| k.keys().contains(&key.as_str()))
            {
                return Err(D::Error::unknown_field(&key, ALL_KEYS));
            }
            table.remove(&key);
            misplaced.push(key);
        }
        Ok(SinkConfig {
            name,
            settings: toml::Value::Table(table)
                .try_into()
                .map_err(D::Error::custom)?,
            delivery: toml::Value::Table(delivery)
                .try_into()
                .map_err(D::Error::custom)?,
            misplaced,
        })
    }
}

impl Serialize for SinkConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        /// The table as written: `kind`, the kind's keys, `name`, delivery.
        #[derive(Serialize)]
        struct Flat<'a> {
            #[serde(flatten)]
            settings: &'a SinkSettings,
            name: &'a str,
            #[serde(flatten)]
            delivery: &'a DeliverySettings,
        }
        Flat {
            settings: &self.settings,
            name: &self.name,
            delivery: &self.delivery,
        }
        .serialize(s)
    }
}

const FACILITIES: &[&str] = &[
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

pub(crate) fn facility_code(name: &str) -> Option<u8> {
    FACILITIES
        .iter()
        .position(|f| *f == name)
        .and_then(|i| u8::try_from(i).ok())
}

impl SinkConfig {
    pub fn kind(&self) -> SinkKind {
        self.settings.kind()
    }

    /// Every problem with this sink, each prefixed with where it is.
    pub fn validate(&self, index: usize) -> Vec<String> {
        let kind = self.kind();
        let at = format!("sinks[{index}] ({} {:?})", kind.as_str(), self.name);
        let mut errs = Vec::new();
        let mut err = |m: String| errs.push(format!("{at}: {m}"));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            err("name must be 1-64 characters of A-Z a-z 0-9 - _".into());
        }
        for key in &self.misplaced {
            err(format!(
                "key `{key}` does not apply to kind = \"{}\"",
                kind.as_str()
            ));
        }
        let ca_file = match &self.settings {
            SinkSettings::File(s) => {
                validate_file(s, &mut err);
                None
            }
            SinkSettings::Syslog(s) => {
                validate_syslog(s, &mut err);
                s.ca_file.as_ref()
            }
            SinkSettings::Http(s) => {
                validate_http(s, &mut err);
                s.ca_file.as_ref()
            }
            SinkSettings::Nats(s) => {
                validate_nats(s, &mut err);
                None
            }
        };
        if let Some(ca) = ca_file {
            if !ca.is_file() {
                err(format!("ca_file {} is not a file", ca.display()));
            }
        }
        validate_delivery(&self.delivery, &mut err);
        errs
    }
}

fn validate_file(s: &FileSettings, err: &mut impl FnMut(String)) {
    if s.path.as_ref().is_none_or(|p| p.as_os_str().is_empty()) {
        err("needs path".into());
    }
    if s.max_mb.is_some_and(|m| !(1..=1 << 20).contains(&m)) {
        err("max_mb must be between 1 and 1048576".into());
    }
    if s.keep.is_some_and(|k| !(1..=1000).contains(&k)) {
        err("keep must be between 1 and 1000".into());
    }
}

fn validate_syslog(s: &SyslogSettings, err: &mut impl FnMut(String)) {
    match s.address.as_deref() {
        None => err("needs address (host:port)".into()),
        Some(a) => {
            if let Err(m) = split_host_port(a) {
                err(format!("address {a:?}: {m}"));
            }
        }
    }
    if let Some(f) = &s.facility {
        if facility_code(f).is_none() {
            err(format!(
                "unknown facility {f:?} (one of {})",
                FACILITIES.join(", ")
            ));
        }
    }
    if let Some(a) = &s.app_name {
        if a.is_empty() || a.len() > 48 || !a.bytes().all(|b| (33..=126).contains(&b)) {
            err("app_name must be 1-48 printable ASCII characters without spaces".into());
        }
    }
    if s.max_message_kb.is_some_and(|m| !(1..=65_536).contains(&m)) {
        err("max_message_kb must be between 1 and 65536".into());
    }
    if s.tls != Some(true) {
        for (set, key) in [
            (s.ca_file.is_some(), "ca_file"),
            (s.server_name.is_some(), "server_name"),
        ] {
            if set {
                err(format!("{key} only applies with tls = true"));
            }
        }
    }
}

fn validate_http(s: &HttpSettings, err: &mut impl FnMut(String)) {
    match s.url.as_deref() {
        None => err("needs url".into()),
        Some(u) => match http::parse_url(u) {
            Err(m) => err(format!("url {u:?}: {m}")),
            Ok(false) if s.ca_file.is_some() => err("ca_file only applies to https:// URLs".into()),
            Ok(_) => {}
        },
    }
    match s.format {
        None => err("needs format (es_bulk, splunk_hec or webhook)".into()),
        Some(HttpFormat::EsBulk) | Some(HttpFormat::SplunkHec) => {}
        Some(HttpFormat::Webhook) if s.index.is_some() => {
            err("index does not apply to format = \"webhook\"".into())
        }
        Some(HttpFormat::Webhook) => {}
    }
    if s.sourcetype.is_some() && s.format != Some(HttpFormat::SplunkHec) {
        err("sourcetype only applies to format = \"splunk_hec\"".into());
    }
    if s.auth_header.is_some() && s.auth_header_env.is_some() {
        err("set auth_header or auth_header_env, not both".into());
    }
    if let Some(var) = &s.auth_header_env {
        if std::env::var(var).map_or(true, |v| v.is_empty()) {
            err(format!(
                "auth_header_env: environment variable {var} is not set"
            ));
        }
    }
    if let Some(h) = s.auth_header.as_deref() {
        if h.bytes().any(|b| b == b'\r' || b == b'\n') {
            err("auth_header must be one line".into());
        }
    }
}

fn validate_nats(s: &NatsSettings, err: &mut impl FnMut(String)) {
    if let Some(st) = &s.stream {
        if st.is_empty()
            || st.len() > 64
            || !st
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            err("stream must be 1-64 characters of A-Z a-z 0-9 - _".into());
        }
    }
    if let Some(p) = &s.subject_prefix {
        let bad_token = p.split('.').any(|t| {
            t.is_empty()
                || t.contains(['*', '>'])
                || t.chars().any(|c| c.is_whitespace() || c.is_control())
        });
        if bad_token {
            err(format!(
                "subject_prefix {p:?} must be dot-separated tokens without spaces or wildcards"
            ));
        }
    }
    if s.duplicate_window_s
        .is_some_and(|d| !(1..=86_400).contains(&d))
    {
        err("duplicate_window_s must be between 1 and 86400".into());
    }
}

fn validate_delivery(d: &DeliverySettings, err: &mut impl FnMut(String)) {
    if d.timeout_ms.is_some_and(|t| !(100..=300_000).contains(&t)) {
        err("timeout_ms must be between 100 and 300000".into());
    }
    if d.batch_max.is_some_and(|b| !(1..=10_000).contains(&b)) {
        err("batch_max must be between 1 and 10000".into());
    }
    if d.batch_max_kb.is_some_and(|b| !(1..=102_400).contains(&b)) {
        err("batch_max_kb must be between 1 and 102400".into());
    }
    if d.retry_min_ms
        .is_some_and(|r| !(10..=3_600_000).contains(&r))
    {
        err("retry_min_ms must be between 10 and 3600000".into());
    }
    if d.retry_max_ms.is_some_and(|r| r > 3_600_000) {
        err("retry_max_ms must be at most 3600000".into());
    }
    if d.retry_max() < d.retry_min() {
        err("retry_max_ms must not be below retry_min_ms".into());
    }
}

/// Every sink's problems, and duplicate names across sinks.
pub fn validate_all(sinks: &[SinkConfig]) -> Vec<String> {
    let mut errs: Vec<String> = sinks
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.validate(i))
        .collect();
    for (i, s) in sinks.iter().enumerate() {
        if sinks[..i].iter().any(|o| o.name == s.name) {
            errs.push(format!("sinks[{i}]: duplicate sink name {:?}", s.name));
        }
    }
    errs
}

/// `host:port` (or `[v6]:port`).
pub(crate) fn split_host_port(addr: &str) -> Result<(String, u16), AddressError> {
    let (host, port) = addr.rsplit_once(':').ok_or(AddressError::NoPort)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(AddressError::NoHost);
    }
    let port: u16 = port
        .parse()
        .map_err(|_| AddressError::BadPort(port.to_string()))?;
    if port == 0 {
        return Err(AddressError::PortZero);
    }
    Ok((host.to_string(), port))
}

/// Why a sink cannot be set up from its settings, in words an admin can act
/// on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkSetupError {
    #[error("needs {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("ca_file {}: {problem}", path.display())]
    CaFile { path: PathBuf, problem: String },
    #[error("ca_file {} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("{name:?} is not a valid TLS server name: {problem}")]
    ServerName { name: String, problem: String },
    #[error("auth_header_env: environment variable {0} is not set")]
    AuthEnv(String),
    #[error("kind = \"nats\" needs the [nats] section (urls)")]
    NoNats,
}

/// What is wrong with a `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("needs a port (host:port)")]
    NoPort,
    #[error("needs a host")]
    NoHost,
    #[error("port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    #[error("port 0 is not a port")]
    PortZero,
}

/// What is wrong with an HTTP sink's URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must start with http:// or https://")]
    Scheme,
    #[error("needs a host")]
    NoHost,
    #[error("must not contain spaces")]
    Spaces,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Sinks {
        sinks: Vec<SinkConfig>,
    }

    /// A value of the right type for every key a kind lists.
    fn value_for(key: &str) -> &'static str {
        match key {
            "tls" | "create_stream" => "true",
            "max_mb" | "keep" | "max_message_kb" | "duplicate_window_s" => "7",
            "format" => "\"webhook\"",
            _ => "\"x\"",
        }
    }

    #[test]
    fn every_key_a_kind_lists_parses_as_that_kind() {
        for kind in SinkKind::ALL {
            let mut text = format!("[[sinks]]\nkind = \"{}\"\nname = \"n\"\n", kind.as_str());
            for key in kind.keys() {
                text.push_str(&format!("{key} = {}\n", value_for(key)));
            }
            let parsed: Sinks = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(parsed.sinks[0].kind(), kind);
            assert!(parsed.sinks[0].misplaced.is_empty(), "{text}");
        }
    }

    #[test]
    fn the_unknown_key_list_is_every_kind_s_keys_and_the_shared_ones() {
        let mut listed: Vec<&str> = ALL_KEYS.to_vec();
        let mut from_kinds: Vec<&str> = ["kind", "name"]
            .into_iter()
            .chain(SinkKind::ALL.iter().flat_map(|k| k.keys().iter().copied()))
            .chain(DeliverySettings::KEYS.iter().copied())
            .collect();
        listed.sort_unstable();
        from_kinds.sort_unstable();
        from_kinds.dedup();
        assert_eq!(listed, from_kinds);
    }

    #[test]
    fn a_printed_config_reads_back_the_same() {
        let text = r#"
            [[sinks]]
            kind = "syslog"
            name = "rsyslog"
            address = "127.0.0.1:6514"
            tls = true
            timeout_ms = 2000
            [[sinks]]
            kind = "http"
            name = "es"
            url = "https://es.example:9200/_bulk"
            format = "es_bulk"
            batch_max = 50
        "#;
        let parsed: Sinks = toml::from_str(text).unwrap();
        let printed = toml::to_string_pretty(&parsed).unwrap();
        let again: Sinks = toml::from_str(&printed).unwrap();
        assert_eq!(parsed.sinks, again.sinks, "{printed}");
        assert!(printed.contains("kind = \"syslog\""), "{printed}");
    }

    #[test]
    fn a_key_of_another_kind_is_kept_for_the_report_not_a_parse_error() {
        let parsed: Sinks =
            toml::from_str("[[sinks]]\nkind = \"nats\"\nname = \"n\"\npath = \"/x\"\n").unwrap();
        assert_eq!(parsed.sinks[0].misplaced, vec!["path".to_string()]);
        assert_eq!(
            parsed.sinks[0].validate(0),
            vec!["sinks[0] (nats \"n\"): key `path` does not apply to kind = \"nats\"".to_string()]
        );
    }
}
