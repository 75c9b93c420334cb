//! Where alerts go in this release: stdout and an NDJSON file. (The durable
//! outbox and network sinks build on this.)

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dsl::alert::Alert;

#[derive(Default)]
pub struct AlertOutputs {
    stdout: bool,
    file: Option<(PathBuf, BufWriter<File>)>,
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
        Ok(AlertOutputs { stdout, file })
    }

    /// Writes the alert everywhere; the file is flushed per alert so a
    /// crash loses none that were reported.
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

    pub fn flush(&mut self) -> Result<()> {
        if let Some((_, f)) = self.file.as_mut() {
            f.flush()?;
        }
        Ok(())
    }
}
