//! Where committed alerts go: the durable outbox first (the sinks deliver
//! from there, see `outbox.rs`), then stdout and the local NDJSON file,
//! which are written directly, as before.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use dsl::alert::Alert;

use super::PipelineError;
use crate::delivery::outbox::Outbox;

/// How alerts are printed on standard output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StdoutFormat {
    /// One JSON document per line (for pipes and `--json`).
    #[default]
    Json,
    /// One readable line per alert (for a person at a terminal).
    Line,
}

#[derive(Default)]
pub struct AlertOutputs {
    stdout: bool,
    stdout_format: StdoutFormat,
    file: Option<(PathBuf, BufWriter<File>)>,
    outbox: Option<Outbox>,
}

impl AlertOutputs {
    pub fn new(stdout: bool, file: Option<&Path>) -> Result<AlertOutputs, PipelineError> {
        let file = file
            .map(|p| -> Result<_, PipelineError> {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| PipelineError::Output {
                        what: "creating",
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| PipelineError::Output {
                        what: "opening alert file",
                        path: p.to_path_buf(),
                        source,
                    })?;
                Ok((p.to_path_buf(), BufWriter::new(f)))
            })
            .transpose()?;
        Ok(AlertOutputs {
            stdout,
            stdout_format: StdoutFormat::Json,
            file,
            outbox: None,
        })
    }

    /// Every alert is appended to `outbox` before the other outputs see it.
    pub fn with_outbox(mut self, outbox: Outbox) -> AlertOutputs {
        self.outbox = Some(outbox);
        self
    }

    pub fn with_stdout_format(mut self, format: StdoutFormat) -> AlertOutputs {
        self.stdout_format = format;
        self
    }

    pub fn outbox(&self) -> Option<&Outbox> {
        self.outbox.as_ref()
    }

    /// Writes the alert to stdout and the file; the file is flushed per
    /// alert so a crash loses none that were reported.
    pub fn emit(&mut self, alert: &Alert) -> Result<(), PipelineError> {
        let line = serde_json::to_string(alert)?;
        if self.stdout {
            let mut out = std::io::stdout().lock();
            match self.stdout_format {
                StdoutFormat::Json => writeln!(out, "{line}"),
                StdoutFormat::Line => writeln!(out, "{}", readable_line(alert)),
            }
            .and_then(|()| out.flush())
            .map_err(PipelineError::Stdout)?;
        }
        if let Some((path, f)) = self.file.as_mut() {
            writeln!(f, "{line}")
                .and_then(|_| f.flush())
                .map_err(|source| PipelineError::Output {
                    what: "writing",
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Appends the alerts to the outbox (one fsync) and then emits each.
    /// A failing output does not keep the others from their alerts; the
    /// first error is returned.
    pub fn emit_batch(&mut self, alerts: &[Alert]) -> Result<(), PipelineError> {
        let mut first_err = None;
        if let Some(outbox) = &self.outbox {
            if let Err(source) = outbox.append(alerts) {
                first_err = Some(PipelineError::Outbox {
                    dir: outbox.dir().to_path_buf(),
                    source,
                });
            }
        }
        for a in alerts {
            if let Err(e) = self.emit(a) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    pub fn flush(&mut self) -> Result<(), PipelineError> {
        if let Some((path, f)) = self.file.as_mut() {
            f.flush().map_err(|source| PipelineError::Output {
                what: "writing",
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// One line a person reads at a glance: severity, rule, host, what happened
/// as a chain (`installer(17001) → sh → curl → 127.0.0.1:41549`: the first
/// process's parent and the process with its pid, then each later process,
/// connection or file of the matched events) and the alert id.
pub fn readable_line(alert: &Alert) -> String {
    fn push(chain: &mut Vec<String>, node: String) {
        if chain.last() != Some(&node) {
            chain.push(node);
        }
    }
    let mut chain: Vec<String> = Vec::new();
    let named = |p: &dsl::event::Process, with_pid: bool| -> Option<String> {
        let name = p.name.as_deref().or(p.executable.as_deref())?;
        Some(match (with_pid, p.pid) {
            (true, Some(pid)) => format!("{name}({pid})"),
            _ => name.to_string(),
        })
    };
    for (i, e) in alert.events.iter().enumerate() {
        if i == 0 {
            if let Some(parent) = e.process.parent.as_deref().and_then(|p| named(p, true)) {
                push(&mut chain, parent);
            }
        }
        // Names compare without the pid so a process is not repeated.
        let first = chain.is_empty();
        if let Some(name) = named(&e.process, first) {
            if chain.last().map(|l| l.split('(').next()) != Some(Some(name.as_str())) {
                push(&mut chain, name);
            }
        }
        if let Some(ip) = e
            .destination
            .as_ref()
            .and_then(|d| d.ip.map(|ip| (ip, d.port)))
        {
            push(
                &mut chain,
                match ip {
                    (std::net::IpAddr::V6(v6), Some(port)) => format!("[{v6}]:{port}"),
                    (ip, Some(port)) => format!("{ip}:{port}"),
                    (ip, None) => ip.to_string(),
                },
            );
        } else if let Some(path) = e.file.as_ref().and_then(|f| f.path.as_deref()) {
            push(&mut chain, path.to_string());
        }
    }
    let host = alert
        .host_id
        .as_deref()
        .or_else(|| alert.events.first().and_then(|e| e.host.id.as_deref()))
        .unwrap_or("-");
    format!(
        "{:<8} {}  host={}  {}  id={}",
        alert.rule.severity.as_str().to_uppercase(),
        alert.rule.id,
        host,
        if chain.is_empty() {
            "-".to_string()
        } else {
            chain.join(" → ")
        },
        alert.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsl::alert::{AlertRule, Severity};
    use dsl::event::{Endpoint, Event, Process};
    use std::sync::Arc;

    fn process(name: &str, pid: u32) -> Process {
        Process {
            pid: Some(pid),
            name: Some(name.into()),
            ..Process::default()
        }
    }

    #[test]
    fn a_chain_reads_parent_process_child_and_destination() {
        let mut sh = Event {
            process: process("sh", 17002),
            ..Event::default()
        };
        sh.process.parent = Some(Arc::new(process("installer", 17001)));
        let mut curl = Event {
            process: process("curl", 17003),
            ..Event::default()
        };
        curl.process.parent = Some(Arc::new(process("sh", 17002)));
        curl.destination = Some(Endpoint {
            ip: Some("127.0.0.1".parse().unwrap()),
            port: Some(41549),
        });
        let alert = Alert {
            id: "a1b2".into(),
            timestamp_ns: 0,
            first_timestamp_ns: 0,
            rule: AlertRule {
                id: "macos-installer-child-network".into(),
                name: "installer child network".into(),
                description: String::new(),
                severity: Severity::High,
                risk_score: 73,
                mitre: Vec::new(),
                tags: Vec::new(),
                ..AlertRule::default()
            },
            host_id: Some("mac-17".into()),
            join_key: Default::default(),
            events: vec![sh, curl],
            context_requests: Vec::new(),
            enrichments: Default::default(),
            raw_enrichments: Vec::new(),
        };
        assert_eq!(
            readable_line(&alert),
            "HIGH     macos-installer-child-network  host=mac-17  \
             installer(17001) → sh → curl → 127.0.0.1:41549  id=a1b2"
        );
    }
}
