//! The NATS connection shared by the `nats` alert sink, the fleet responder
//! and the `vigil fleet` client: settings (`[nats]`), authentication (user
//! and password, an nkey seed or a `.creds` file), TLS with a private CA,
//! and one small tokio runtime that only exists once something uses NATS.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[nats]`: where the fleet's NATS servers are and how to log in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSection {
    /// Server URLs (`nats://host:4222`, `tls://host:4222`); the client
    /// fails over between them and reconnects with backoff.
    pub urls: Vec<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Name of an environment variable holding the password instead.
    pub password_env: Option<String>,
    /// File holding an nkey seed (`SU...`).
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (user JWT + nkey seed), for operator-mode servers.
    pub creds_file: Option<PathBuf>,
    /// PEM file of CA certificates for the server's TLS certificate.
    pub ca_file: Option<PathBuf>,
    /// Refuse to talk to a server without TLS.
    pub tls_required: bool,
    /// Per-connect-attempt timeout.
    pub connect_timeout_ms: Option<u64>,
}

impl NatsSection {
    pub fn is_configured(&self) -> bool {
        !self.urls.is_empty()
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.unwrap_or(5_000))
    }

    /// Every problem, prefixed with `nats.`.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for u in &self.urls {
            let ok = ["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .any(|s| u.starts_with(s))
                && u.len() > 7;
            if !ok {
                errs.push(format!(
                    "nats.urls: {u:?} is not a nats://, tls://, ws:// or wss:// URL"
                ));
            }
        }
        let methods = [
            self.user.is_some(),
            self.nkey_seed_file.is_some(),
            self.creds_file.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if methods > 1 {
            errs.push("nats: set one of user, nkey_seed_file or creds_file".into());
        }
        if self.password.is_some() && self.password_env.is_some() {
            errs.push("nats: set password or password_env, not both".into());
        }
        if (self.password.is_some() || self.password_env.is_some()) && self.user.is_none() {
            errs.push("nats: a password needs user".into());
        }
        if let Some(var) = &self.password_env {
            if std::env::var(var).map_or(true, |v| v.is_empty()) {
                errs.push(format!(
                    "nats.password_env: environment variable {var} is not set"
                ));
            }
        }
        for (key, file) in [
            ("nkey_seed_file", &self.nkey_seed_file),
            ("creds_file", &self.creds_file),
            ("ca_file", &self.ca_file),
        ] {
            if let Some(f) = file {
                if !f.is_file() {
                    errs.push(format!("nats.{key}: {} is not a file", f.display()));
                }
            }
        }
        if self
            .connect_timeout_ms
            .is_some_and(|t| !(100..=120_000).contains(&t))
        {
            errs.push("nats.connect_timeout_ms must be between 100 and 120000".into());
        }
        errs
    }

    fn password(&self) -> Option<String> {
        match (&self.password, &self.password_env) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(var)) => std::env::var(var).ok(),
            _ => None,
        }
    }

    /// Connects (one attempt per URL; afterwards the client reconnects on
    /// its own, forever, with backoff capped at 10 s).
    pub async fn connect(&self, name: &str) -> Result<async_nats::Client, NatsConnectError> {
        self.connect_with(name, false).await
    }

    /// A client that keeps trying in the background when no server is up
    /// yet; subscriptions made meanwhile start once it connects.
    pub async fn connect_background(
        &self,
        name: &str,
    ) -> Result<async_nats::Client, NatsConnectError> {
        self.connect_with(name, true).await
    }

    async fn connect_with(
        &self,
        name: &str,
        background: bool,
    ) -> Result<async_nats::Client, NatsConnectError> {
        if self.urls.is_empty() {
            return Err(NatsConnectError::NoServer);
        }
        let mut opts = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(self.connect_timeout())
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                let ms = 100u64.saturating_mul(1 << attempts.min(7));
                Duration::from_millis(ms.min(10_000))
            })
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("nats: connected"),
                    async_nats::Event::Disconnected => tracing::warn!("nats: disconnected"),
                    async_nats::Event::ServerError(e) => {
                        tracing::warn!(error = %e, "nats: server error")
                    }
                    other => tracing::debug!(event = %other, "nats"),
                }
            });
        if let Some(user) = &self.user {
            opts = opts.user_and_password(user.clone(), self.password().unwrap_or_default());
        }
        if let Some(f) = &self.nkey_seed_file {
            let seed = std::fs::read_to_string(f).map_err(|source| NatsConnectError::Read {
                path: f.clone(),
                source,
            })?;
            opts = opts.nkey(seed.trim().to_string());
        }
        if let Some(f) = &self.creds_file {
            opts = opts
                .credentials_file(f)
                .await
                .map_err(|source| NatsConnectError::Read {
                    path: f.clone(),
                    source,
                })?;
        }
        if let Some(ca) = &self.ca_file {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        if self.tls_required {
            opts = opts.require_tls(true);
        }
        if background {
            opts = opts.retry_on_initial_connect();
        }
        let urls: Vec<async_nats::ServerAddr> = self
            .urls
            .iter()
            .map(|u| {
                u.parse()
                    .map_err(|e: std::io::Error| NatsConnectError::Url {
                        url: u.clone(),
                        problem: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        opts.connect(urls)
            .await
            .map_err(|e| NatsConnectError::Connect {
                urls: self.urls.join(","),
                problem: e.to_string(),
            })
    }
}

/// Why a NATS connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NatsConnectError {
    #[error("no NATS server configured (nats.urls)")]
    NoServer,
    #[error("reading {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("nats url {url:?}: {problem}")]
    Url { url: String, problem: String },
    #[error("connecting to {urls}: {problem}")]
    Connect { urls: String, problem: String },
}

/// The runtime behind every NATS connection of this process: one worker
/// thread (NATS traffic is small), started on first use. Callers outside
/// it use `runtime().block_on(..)`.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(4)
            .thread_name("nats")
            .enable_all()
            .build()
            .expect("building the NATS runtime")
    })
}

/// A subject token from free text: NATS separates tokens with `.` and
/// reserves `*`, `>` and whitespace.
pub fn subject_token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .take(128)
        .collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_cannot_split_or_wildcard() {
        assert_eq!(subject_token("mac-01.corp"), "mac-01_corp");
        assert_eq!(subject_token("a b>*"), "a_b__");
        assert_eq!(subject_token(""), "_");
    }

    #[test]
    fn validation_names_every_problem() {
        let n = NatsSection {
            urls: vec!["http://x".into()],
            user: Some("u".into()),
            creds_file: Some("/nonexistent.creds".into()),
            password: Some("p".into()),
            password_env: Some("VIGIL_TEST_UNSET_VAR".into()),
            ..Default::default()
        };
        let errs = n.validate().join("\n");
        for want in [
            "not a nats://",
            "one of user",
            "password or password_env",
            "VIGIL_TEST_UNSET_VAR",
            "creds_file",
        ] {
            assert!(errs.contains(want), "{want} missing from {errs}");
        }
    }
}
