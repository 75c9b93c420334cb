//! Where committed alerts go: the durable outbox first (the sinks deliver
//! from there, see `outbox.rs`), then stdout and the local NDJSON file,
//! which are written directly, as before.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dsl::alert::Alert;

use crate::delivery::outbox::Outbox;

#[derive(Default)]
pub struct AlertOutputs {
    stdout: bool,
    file: Option<(PathBuf, BufWriter<File>)>,
    outbox: Option<Outbox>,
}

impl AlertOutputs {
    pub fn new(stdout: bool, file: Option<&Path>) -> Result<AlertOutputs> {
        let file = file
            .map(|p| -> Result<_> {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening alert file {}", p.display()))?;
                Ok((p.to_path_buf(), BufWriter::new(f)))
            })
            .transpose()?;
        Ok(AlertOutputs {
            stdout,
            file,
            outbox: None,
        })
    }

    /// Every alert is appended to `outbox` before the other outputs see it.
    pub fn with_outbox(mut self, outbox: Outbox) -> AlertOutputs {
        self.outbox = Some(outbox);
        self
    }

    pub fn outbox(&self) -> Option<&Outbox> {
        self.outbox.as_ref()
    }

    /// Writes the alert to stdout and the file; the file is flushed per
    /// alert so a crash loses none that were reported.
    pub fn emit(&mut self, alert: &Alert) -> Result<()> {
        let line = serde_json::to_string(alert)?;
        if self.stdout {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")?;
            out.flush()?;
        }
        if let Some((path, f)) = self.file.as_mut() {
            writeln!(f, "{line}")
                .and_then(|_| f.flush())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// Appends the alerts to the outbox (one fsync) and then emits each.
    /// A failing output does not keep the others from their alerts; the
    /// first error is returned.
    pub fn emit_batch(&mut self, alerts: &[Alert]) -> Result<()> {
        let mut first_err = None;
        if let Some(outbox) = &self.outbox {
            if let Err(e) = outbox.append(alerts) {
                first_err = Some(anyhow::Error::from(e).context(format!(
                    "appending to the outbox {}",
                    outbox.dir().display()
                )));
            }
        }
        for a in alerts {
            if let Err(e) = self.emit(a) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    pub fn flush(&mut self) -> Result<()> {
        if let Some((_, f)) = self.file.as_mut() {
            f.flush()?;
        }
        Ok(())
    }
}
