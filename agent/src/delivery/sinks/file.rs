//! NDJSON file sink with size rotation: `path` grows to `max_mb`, then
//! becomes `path.1` (older ones shift to `path.2` .. `path.<keep>`, the
//! oldest is deleted). A batch is acknowledged after it is fsync'd.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Delivered, DeliveryError, FileSettings, SinkSetupError};
use crate::delivery::outbox::OutboxRecord;

pub struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<(File, u64)>,
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl FileSink {
    pub fn new(cfg: &FileSettings) -> Result<FileSink, SinkSetupError> {
        let path = cfg.path.clone().ok_or(SinkSetupError::Missing("path"))?;
        Ok(FileSink {
            path,
            max_bytes: cfg.max_mb.unwrap_or(100).saturating_mul(1 << 20),
            keep: cfg.keep.unwrap_or(5),
            file: None,
        })
    }

    fn open(&mut self) -> std::io::Result<&mut (File, u64)> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let len = f.metadata()?.len();
            self.file = Some((f, len));
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let _ = std::fs::remove_file(numbered(&self.path, self.keep));
        for n in (1..self.keep).rev() {
            let from = numbered(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))
    }

    fn write(&mut self, batch: &[OutboxRecord]) -> std::io::Result<()> {
        let mut buf = String::with_capacity(batch.iter().map(|r| r.json.len() + 1).sum());
        for r in batch {
            buf.push_str(&r.json);
            buf.push('\n');
        }
        let size = self.open()?.1;
        if size > 0 && size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let (f, size) = self.open()?;
        f.write_all(buf.as_bytes())?;
        // Acknowledged means on disk.
        f.sync_data()?;
        *size += buf.len() as u64;
        Ok(())
    }
}

impl super::Sink for FileSink {
    fn deliver(&mut self, batch: &[OutboxRecord]) -> Result<Delivered, DeliveryError> {
        self.write(batch).map_err(|e| {
            // Reopen next time: the file may have been moved or the disk fixed.
            self.file = None;
            DeliveryError::Retry(format!("writing {}: {e}", self.path.display()))
        })?;
        Ok(Delivered::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::sinks::Sink;

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.ndjson");
        let mut sink = FileSink {
            path: path.clone(),
            max_bytes: 100,
            keep: 2,
            file: None,
        };
        for i in 0..10u64 {
            let rec = OutboxRecord {
                seq: i,
                id: format!("a{i}"),
                json: format!("{{\"id\":\"a{i}\",\"pad\":\"{}\"}}", "x".repeat(20)),
            };
            sink.deliver(&[rec]).unwrap();
        }
        let cur = std::fs::read_to_string(&path).unwrap();
        let one = std::fs::read_to_string(numbered(&path, 1)).unwrap();
        let two = std::fs::read_to_string(numbered(&path, 2)).unwrap();
        assert!(!numbered(&path, 3).exists());
        assert!(cur.len() <= 100 && one.len() <= 100);
        // Newest last, nothing reordered across files.
        let all: Vec<String> = [two, one, cur]
            .concat()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(all.last().unwrap(), "a9");
        assert!(all
            .windows(2)
            .all(|w| w[0][1..].parse::<u32>().unwrap() + 1 == w[1][1..].parse::<u32>().unwrap()));
    }
}
