//! The durable outbox between the correlator and the sinks. Every alert is
//! appended here, and the append is fsync'd, before any sink sees it; each
//! sink then reads the outbox at its own pace and acknowledges what its
//! receiver accepted. A sink that is down delays alerts, it does not lose
//! them, and a restarted agent resumes each sink where it stopped.
//!
//! # On disk (`<state_dir>/outbox/`)
//!
//! * Segments `<base-seq, 20 digits>.seg`: one record per line,
//!   `<seq> <crc32 of json, 8 hex> <alert json>\n`. Sequence numbers are
//!   contiguous across segments. A line counts only if it is complete, its
//!   checksum matches and its seq is the expected one: on open, the first bad
//!   line of the last segment and everything after it is cut off (a torn
//!   append of a crash) and reported; a bad line inside an older segment ends
//!   that segment for readers and is reported as corrupt.
//! * Cursors `cursor.<sink>`: the sequence number of the first record that
//!   sink has not had acknowledged, written to a temp file, fsync'd and
//!   renamed over the old one, so a cursor is never torn.
//!
//! # Delivery guarantee (at least once)
//!
//! A record is durable once `append` returns. A sink's cursor moves only
//! after its receiver acknowledged a batch, so a crash (or SIGKILL) between
//! the receiver's acknowledgement and the cursor write re-delivers that one
//! batch after restart: duplicates are bounded by one batch per sink and
//! carry the same alert `id`, by which receivers de-duplicate (the
//! Elasticsearch sink uses it as `_id` with `create`, so ES drops them).
//!
//! Alerts are appended in commit groups (see `pipeline/mod.rs`), before
//! stdout and `outputs.file` get them: an agent killed between the two has
//! alerts in the outbox (and so at the sinks) that the local file lacks,
//! never the other way round. An append that fails (disk full, I/O error)
//! is logged and counted as an output error; those alerts do not reach the
//! sinks.
//!
//! # When full (`outbox.max_mb`)
//!
//! Segments that every sink has acknowledged are deleted as soon as they are
//! sealed. If the unacknowledged records still leave no room for an alert:
//! `drop_oldest` (default) deletes the oldest segments (the newest alerts
//! are the most actionable) and counts, per sink, the records it never got;
//! `drop_newest` refuses the new alert and counts it. Either way the alert
//! still reaches stdout and `outputs.file`, which do not go through the
//! outbox.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dsl::alert::Alert;
use serde::{Deserialize, Serialize};

/// What to do when an alert does not fit in `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Delete the oldest segments, even if a sink has not delivered them.
    #[default]
    DropOldest,
    /// Refuse the new alert.
    DropNewest,
}

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    pub dir: PathBuf,
    /// Upper bound of all segment bytes together.
    pub max_bytes: u64,
    /// A segment is sealed (and a new one started) past this size.
    pub segment_bytes: u64,
    pub when_full: WhenFull,
    /// fsync appends and cursors. Only tests turn this off.
    pub sync: bool,
}

/// One alert as stored: its sequence number, id and JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    pub seq: u64,
    pub id: String,
    pub json: String,
}

/// What `open` found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    /// Bytes cut off the end of the last segment (a torn append).
    pub torn_bytes: u64,
    /// Lines after a damaged line of an older segment, not delivered.
    pub corrupt_lines: u64,
    /// Cursor files of sinks that are no longer configured (left in place).
    pub stale_cursors: Vec<String>,
}

/// Counters and backlogs for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxStatus {
    /// Records appended since start.
    pub appended: u64,
    /// Alerts refused: `drop_newest` when full, or a single alert larger
    /// than the whole outbox.
    pub rejected: u64,
    /// Records deleted by `drop_oldest` before every sink had them.
    pub dropped_oldest: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub segments: usize,
    /// Sequence number the next alert gets.
    pub next_seq: u64,
    pub sinks: Vec<SinkBacklog>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkBacklog {
    pub name: String,
    /// First sequence number not yet acknowledged.
    pub acked_seq: u64,
    /// Records waiting for this sink.
    pub backlog: u64,
    /// Records this sink lost to `drop_oldest`.
    pub dropped: u64,
}

#[derive(Debug)]
struct Segment {
    base: u64,
    /// Valid records (readers never read past them).
    count: u64,
    bytes: u64,
    path: PathBuf,
}

struct State {
    segments: VecDeque<Segment>,
    /// Append handle of the last segment.
    active: Option<File>,
    next_seq: u64,
    total_bytes: u64,
    cursors: BTreeMap<String, u64>,
    dropped: BTreeMap<String, u64>,
    appended: u64,
    rejected: u64,
    dropped_oldest: u64,
}

struct Shared {
    cfg: OutboxConfig,
    state: Mutex<State>,
    /// Signalled after every append (readers wait on it).
    appended: Condvar,
}

/// The outbox; clones share it.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

fn segment_name(base: u64) -> String {
    format!("{base:020}.seg")
}

fn cursor_path(dir: &Path, sink: &str) -> PathBuf {
    dir.join(format!("cursor.{sink}"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Parses one line (without its newline): `(seq, json)` if well formed and
/// its checksum matches.
fn parse_line(line: &[u8]) -> Option<(u64, &str)> {
    let text = std::str::from_utf8(line).ok()?;
    let (seq, rest) = text.split_once(' ')?;
    let (crc, json) = rest.split_once(' ')?;
    let seq: u64 = seq.parse().ok()?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    (crc32fast::hash(json.as_bytes()) == crc).then_some((seq, json))
}

fn format_line(seq: u64, json: &str) -> String {
    format!("{seq} {:08x} {json}\n", crc32fast::hash(json.as_bytes()))
}

/// The alert id inside a stored document.
fn id_of(json: &str) -> String {
    #[derive(Deserialize)]
    struct Head {
        id: String,
    }
    serde_json::from_str::<Head>(json)
        .map(|h| h.id)
        .unwrap_or_default()
}

/// Reads a segment: (valid records, byte length of the valid prefix, whether
/// something invalid follows it, lines after the first bad one).
fn scan_segment(path: &Path, base: u64) -> io::Result<(u64, u64, bool, u64)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let (mut count, mut valid_len) = (0u64, 0usize);
    let mut rest = &data[..];
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        match parse_line(&rest[..nl]) {
            Some((seq, _)) if seq == base + count => {
                count += 1;
                valid_len += nl + 1;
                rest = &rest[nl + 1..];
            }
            _ => break,
        }
    }
    let damaged = valid_len < data.len();
    let after = data[valid_len..].iter().filter(|&&b| b == b'\n').count() as u64;
    Ok((count, valid_len as u64, damaged, after))
}

impl Outbox {
    /// Opens (or creates) the outbox, recovers from a crash and loads the
    /// cursors of `sinks`; sinks without a cursor start at the oldest record.
    pub fn open(cfg: OutboxConfig, sinks: &[String]) -> io::Result<(Outbox, RecoveryReport)> {
        std::fs::create_dir_all(&cfg.dir)?;
        let mut report = RecoveryReport::default();
        let mut bases = Vec::new();
        let mut cursor_files = Vec::new();
        for entry in std::fs::read_dir(&cfg.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(base) = name
                .strip_suffix(".seg")
                .and_then(|b| b.parse::<u64>().ok())
            {
                bases.push(base);
            } else if let Some(sink) = name.strip_prefix("cursor.") {
                if !sink.ends_with(".tmp") {
                    cursor_files.push(sink.to_string());
                }
            }
        }
        bases.sort_unstable();
        let mut segments = VecDeque::new();
        let last = bases.len().checked_sub(1);
        for (i, &base) in bases.iter().enumerate() {
            let path = cfg.dir.join(segment_name(base));
            let (count, valid_len, damaged, after) = scan_segment(&path, base)?;
            let file_len = std::fs::metadata(&path)?.len();
            if damaged && Some(i) == last {
                // A torn append: cut it off so the next append starts clean.
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(valid_len)?;
                f.sync_all()?;
                report.torn_bytes += file_len - valid_len;
                tracing::warn!(segment = %path.display(), bytes = file_len - valid_len, "outbox: cut off a torn last record");
            } else if damaged {
                report.corrupt_lines += after.max(1);
                tracing::error!(segment = %path.display(), lines = after.max(1), "outbox: damaged segment, records after the damage are skipped");
            }
            report.records += count;
            segments.push_back(Segment {
                base,
                count,
                // A damaged older segment still takes its whole size on disk.
                bytes: if damaged && Some(i) != last {
                    file_len
                } else {
                    valid_len
                },
                path,
            });
        }
        let total_bytes = segments.iter().map(|s| s.bytes).sum();
        report.segments = segments.len();
        let mut cursors = BTreeMap::new();
        for sink in sinks {
            let saved = std::fs::read_to_string(cursor_path(&cfg.dir, sink))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok());
            cursors.insert(sink.clone(), saved);
        }
        report.stale_cursors = cursor_files
            .into_iter()
            .filter(|c| !sinks.contains(c))
            .collect();
        let max_cursor = cursors.values().flatten().copied().max().unwrap_or(0);
        let next_seq = segments
            .back()
            .map(|s| s.base + s.count)
            .unwrap_or(max_cursor);
        let oldest = segments.front().map(|s| s.base).unwrap_or(next_seq);
        let cursors = cursors
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or(oldest).clamp(oldest, next_seq)))
            .collect::<BTreeMap<_, _>>();
        let active = match segments.back() {
            Some(s) => Some(OpenOptions::new().append(true).open(&s.path)?),
            None => None,
        };
        let dropped = cursors.keys().map(|k| (k.clone(), 0)).collect();
        let outbox = Outbox {
            shared: Arc::new(Shared {
                cfg,
                state: Mutex::new(State {
                    segments,
                    active,
                    next_seq,
                    total_bytes,
                    cursors,
                    dropped,
                    appended: 0,
                    rejected: 0,
                    dropped_oldest: 0,
                }),
                appended: Condvar::new(),
            }),
        };
        Ok((outbox, report))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking holder leaves consistent state (all fields are updated
        // after the I/O that could fail), so poisoning is ignored.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn dir(&self) -> &Path {
        &self.shared.cfg.dir
    }

    /// Appends alerts (one fsync for all of them). Returns how many were
    /// stored; the others were refused by the `drop_newest` policy or were
    /// too large, and are counted.
    pub fn append(&self, alerts: &[Alert]) -> io::Result<usize> {
        let docs: Vec<String> = alerts
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        self.append_json(&docs)
    }

    /// Appends alert documents given as JSON text (one line each, no newline).
    pub fn append_json(&self, docs: &[String]) -> io::Result<usize> {
        let cfg = &self.shared.cfg;
        let mut st = self.lock();
        self.collect_garbage(&mut st, false)?;
        let mut buf = String::new();
        let mut stored = 0u64;
        for json in docs {
            debug_assert!(!json.contains('\n'));
            let line = format_line(st.next_seq + stored, json);
            let len = line.len() as u64;
            if len > cfg.max_bytes {
                st.rejected += 1;
                tracing::error!(
                    bytes = len,
                    "outbox: alert larger than outbox.max_mb, not stored"
                );
                continue;
            }
            let mut refused = false;
            let mut collected = false;
            while st.total_bytes + buf.len() as u64 + len > cfg.max_bytes {
                if !collected {
                    // Acknowledged records go first, even those of the active segment.
                    self.collect_garbage(&mut st, true)?;
                    collected = true;
                    continue;
                }
                let dropped = match cfg.when_full {
                    WhenFull::DropNewest => false,
                    WhenFull::DropOldest => self.drop_oldest_segment(&mut st)?,
                };
                if !dropped {
                    refused = true;
                    break;
                }
            }
            if refused {
                st.rejected += 1;
                tracing::error!("outbox full (outbox.max_mb): alert not stored for the sinks");
                continue;
            }
            buf.push_str(&line);
            stored += 1;
        }
        if stored == 0 {
            return Ok(0);
        }
        let seal = st
            .segments
            .back()
            .is_none_or(|s| s.count > 0 && s.bytes + buf.len() as u64 > cfg.segment_bytes);
        if seal {
            self.start_segment(&mut st)?;
        }
        let file = st
            .active
            .as_mut()
            .expect("start_segment leaves an active segment");
        let before = file.metadata()?.len();
        let written = file.write_all(buf.as_bytes()).and_then(|()| {
            // This fsync is what makes the alerts durable.
            if cfg.sync {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // Cut a partial write off so the next append starts on a line boundary.
            let _ = file.set_len(before);
            return Err(e);
        }
        let seg = st.segments.back_mut().expect("active segment exists");
        seg.count += stored;
        seg.bytes += buf.len() as u64;
        st.total_bytes += buf.len() as u64;
        st.next_seq += stored;
        st.appended += stored;
        drop(st);
        self.shared.appended.notify_all();
        Ok(stored as usize)
    }

    fn start_segment(&self, st: &mut State) -> io::Result<()> {
        let path = self.shared.cfg.dir.join(segment_name(st.next_seq));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        if self.shared.cfg.sync {
            sync_dir(&self.shared.cfg.dir)?;
        }
        // An empty segment left by a failed append is replaced, not kept twice.
        if st.segments.back().is_some_and(|s| s.base == st.next_seq) {
            st.segments.pop_back();
        }
        st.segments.push_back(Segment {
            base: st.next_seq,
            count: 0,
            bytes: 0,
            path,
        });
        st.active = Some(file);
        Ok(())
    }

    /// Deletes the oldest segment (sealing the active one first if it is the
    /// only one). False if there is nothing to drop.
    fn drop_oldest_segment(&self, st: &mut State) -> io::Result<bool> {
        if st.segments.len() == 1 && st.segments[0].count > 0 {
            self.start_segment(st)?;
        }
        if st.segments.len() < 2 {
            return Ok(false);
        }
        let seg = st.segments.pop_front().expect("two segments");
        let end = seg.base + seg.count;
        let next_base = st.segments.front().map_or(end, |s| s.base);
        let mut lost_any = 0;
        for (sink, cursor) in st.cursors.iter_mut() {
            if *cursor < next_base {
                let lost = next_base - *cursor;
                *st.dropped.entry(sink.clone()).or_default() += lost;
                lost_any = lost_any.max(lost);
                *cursor = next_base;
            }
        }
        st.dropped_oldest += lost_any;
        st.total_bytes -= seg.bytes;
        std::fs::remove_file(&seg.path)?;
        tracing::error!(
            records = lost_any,
            "outbox full (outbox.max_mb): dropped the oldest undelivered alerts"
        );
        Ok(true)
    }

    /// Deletes segments every sink has acknowledged: sealed ones always,
    /// the active one only if `active` (when space is needed; otherwise it
    /// would be recreated for every alert).
    fn collect_garbage(&self, st: &mut State, active: bool) -> io::Result<()> {
        let min_cursor = st.cursors.values().copied().min().unwrap_or(st.next_seq);
        while st.segments.len() > usize::from(!active) {
            let front = &st.segments[0];
            if front.base + front.count > min_cursor || front.count == 0 {
                break;
            }
            let seg = st.segments.pop_front().expect("checked");
            st.total_bytes -= seg.bytes;
            std::fs::remove_file(&seg.path)?;
            if st.segments.is_empty() {
                st.active = None;
            }
        }
        Ok(())
    }

    /// A reader for one sink, starting at its acknowledged position.
    pub fn reader(&self, sink: &str) -> OutboxReader {
        let next = {
            let mut st = self.lock();
            let oldest = st.segments.front().map_or(st.next_seq, |s| s.base);
            let next_seq = st.next_seq;
            st.dropped.entry(sink.to_string()).or_default();
            (*st.cursors.entry(sink.to_string()).or_insert(oldest)).min(next_seq)
        };
        OutboxReader {
            outbox: self.clone(),
            sink: sink.to_string(),
            next,
            open: None,
        }
    }

    /// Records the sink's receiver accepted everything before `upto`; the
    /// cursor file is durable when this returns.
    pub fn ack(&self, sink: &str, upto: u64) -> io::Result<()> {
        let dir = &self.shared.cfg.dir;
        let path = cursor_path(dir, sink);
        let tmp = path.with_extension(format!("{sink}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            writeln!(f, "{upto}")?;
            if self.shared.cfg.sync {
                f.sync_all()?;
            }
        }
        std::fs::rename(&tmp, &path)?;
        if self.shared.cfg.sync {
            sync_dir(dir)?;
        }
        let mut st = self.lock();
        let c = st.cursors.entry(sink.to_string()).or_insert(0);
        *c = (*c).max(upto);
        self.collect_garbage(&mut st, false)
    }

    pub fn status(&self) -> OutboxStatus {
        let st = self.lock();
        OutboxStatus {
            appended: st.appended,
            rejected: st.rejected,
            dropped_oldest: st.dropped_oldest,
            bytes: st.total_bytes,
            max_bytes: self.shared.cfg.max_bytes,
            segments: st.segments.len(),
            next_seq: st.next_seq,
            sinks: st
                .cursors
                .iter()
                .map(|(name, &c)| SinkBacklog {
                    name: name.clone(),
                    acked_seq: c,
                    backlog: st.next_seq.saturating_sub(c),
                    dropped: st.dropped.get(name).copied().unwrap_or(0),
                })
                .collect(),
        }
    }

    /// Records waiting for `sink`.
    pub fn backlog(&self, sink: &str) -> u64 {
        let st = self.lock();
        let c = st.cursors.get(sink).copied().unwrap_or(0);
        st.next_seq.saturating_sub(c)
    }

    /// The stored alert with this id, newest segment first (for `context`).
    pub fn find(&self, id: &str) -> Option<String> {
        let paths: Vec<(PathBuf, u64)> = {
            let st = self.lock();
            st.segments
                .iter()
                .rev()
                .map(|s| (s.path.clone(), s.count))
                .collect()
        };
        let needle = format!("\"id\":\"{id}\"");
        for (path, count) in paths {
            let Ok(f) = File::open(&path) else { continue };
            for line in BufReader::new(f)
                .split(b'\n')
                .take(count as usize)
                .map_while(Result::ok)
            {
                if let Some((_, json)) = parse_line(&line) {
                    if json.contains(&needle) && id_of(json) == id {
                        return Some(json.to_string());
                    }
                }
            }
        }
        None
    }
}

/// A sink's view of the outbox.
pub struct OutboxReader {
    outbox: Outbox,
    sink: String,
    /// Next sequence number to read.
    next: u64,
    /// The open segment: (base, valid records, reader, seq of its next line).
    open: Option<(u64, u64, BufReader<File>, u64)>,
}

impl OutboxReader {
    pub fn sink(&self) -> &str {
        &self.sink
    }

    /// Sequence number of the next record this reader returns.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// True if every appended record has been read.
    pub fn caught_up(&self) -> bool {
        self.outbox.lock().next_seq <= self.next
    }

    /// Up to `max_records` records (and about `max_bytes` of JSON, at least
    /// one record), waiting up to `wait` for the first. Empty on timeout.
    pub fn read_batch(
        &mut self,
        max_records: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> io::Result<Vec<OutboxRecord>> {
        let deadline = Instant::now() + wait;
        let (committed, segs) = {
            let mut st = self.outbox.lock();
            loop {
                let oldest = st.segments.front().map_or(st.next_seq, |s| s.base);
                if self.next < oldest {
                    // drop_oldest removed records this reader had not read.
                    self.next = oldest;
                    self.open = None;
                }
                if st.next_seq > self.next {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(Vec::new());
                }
                st = self
                    .outbox
                    .shared
                    .appended
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            let segs: Vec<(u64, u64, PathBuf)> = st
                .segments
                .iter()
                .filter(|s| s.base + s.count > self.next || s.base >= self.next)
                .map(|s| (s.base, s.count, s.path.clone()))
                .collect();
            (st.next_seq, segs)
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for (base, count, path) in segs {
            if out.len() >= max_records.max(1) || (bytes >= max_bytes && !out.is_empty()) {
                break;
            }
            if self.next < base {
                // A gap (damaged older segment): continue at the next segment.
                self.next = base;
            }
            if self.next >= base + count {
                continue;
            }
            let reuse = matches!(&self.open, Some((b, _, _, at)) if *b == base && *at == self.next);
            if !reuse {
                let f = match File::open(&path) {
                    Ok(f) => f,
                    // Dropped (drop_oldest) since the listing: the next call skips it.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) => return Err(e),
                };
                let mut r = BufReader::new(f);
                let mut at = base;
                let mut line = Vec::new();
                while at < self.next {
                    line.clear();
                    r.read_until(b'\n', &mut line)?;
                    at += 1;
                }
                self.open = Some((base, count, r, at));
            }
            let (_, _, r, at) = self.open.as_mut().expect("just opened");
            let mut line = Vec::new();
            while *at < (base + count).min(committed)
                && out.len() < max_records.max(1)
                && (bytes < max_bytes || out.is_empty())
            {
                line.clear();
                r.read_until(b'\n', &mut line)?;
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                let Some((seq, json)) = parse_line(text).filter(|(s, _)| *s == *at) else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("outbox record {at} in {} is damaged", path.display()),
                    ));
                };
                bytes += json.len();
                out.push(OutboxRecord {
                    seq,
                    id: id_of(json),
                    json: json.to_string(),
                });
                *at += 1;
                self.next = *at;
            }
            if self.next < base + count {
                break;
            }
        }
        Ok(out)
    }

    /// Acknowledges everything before `upto` (see [`Outbox::ack`]).
    pub fn ack(&mut self, upto: u64) -> io::Result<()> {
        self.outbox.ack(&self.sink, upto)
    }
}

/// The raw segments, for damage tests.
#[cfg(test)]
fn segment_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v.into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn cfg(dir: &Path, max_bytes: u64, segment_bytes: u64, when_full: WhenFull) -> OutboxConfig {
        OutboxConfig {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            when_full,
            sync: false,
        }
    }

    fn doc(n: u64) -> String {
        format!(
            "{{\"id\":\"a{n:08}\",\"n\":\"{n:06}\",\"pad\":\"{}\"}}",
            "x".repeat((n % 7) as usize * 10)
        )
    }

    fn sinks() -> Vec<String> {
        vec!["es".into(), "syslog".into()]
    }

    /// Random appends, reads, acks and restarts against a model: per sink, a
    /// queue of unacknowledged ids and a count of read-but-unacked ones.
    /// Reads must return exactly the model's next records; a restart
    /// re-delivers what was read and not acknowledged (at least once, never
    /// more than the unacked batch).
    #[test]
    fn model_random_operations() {
        for seed in 0..40u64 {
            let dir = tempfile::tempdir().unwrap();
            let mut rng = StdRng::seed_from_u64(seed);
            let c = cfg(
                dir.path(),
                u64::MAX / 4,
                300 + seed * 37,
                WhenFull::DropOldest,
            );
            let (mut ob, _) = Outbox::open(c.clone(), &sinks()).unwrap();
            let mut readers: Vec<OutboxReader> = sinks().iter().map(|s| ob.reader(s)).collect();
            let mut model: Vec<VecDeque<String>> = vec![VecDeque::new(); 2];
            let mut in_flight = [0usize; 2];
            let mut next_doc = 0u64;
            for step in 0..250 {
                match rng.gen_range(0..10) {
                    0..=3 => {
                        let n = rng.gen_range(1..4);
                        let docs: Vec<String> = (0..n).map(|i| doc(next_doc + i)).collect();
                        assert_eq!(ob.append_json(&docs).unwrap(), n as usize);
                        for d in &docs {
                            for m in model.iter_mut() {
                                m.push_back(id_of(d));
                            }
                        }
                        next_doc += n;
                    }
                    4..=6 => {
                        let s = rng.gen_range(0..2);
                        let want = rng.gen_range(1..6);
                        let got = readers[s]
                            .read_batch(want, usize::MAX, Duration::ZERO)
                            .unwrap();
                        let expect: Vec<String> = model[s]
                            .iter()
                            .skip(in_flight[s])
                            .take(want)
                            .cloned()
                            .collect();
                        let ids: Vec<String> = got.iter().map(|r| r.id.clone()).collect();
                        assert_eq!(ids, expect, "seed {seed} step {step} sink {s}");
                        in_flight[s] += got.len();
                    }
                    7..=8 => {
                        let s = rng.gen_range(0..2);
                        let pos = readers[s].position();
                        readers[s].ack(pos).unwrap();
                        for _ in 0..in_flight[s] {
                            model[s].pop_front();
                        }
                        in_flight[s] = 0;
                    }
                    _ => {
                        drop(readers);
                        drop(ob);
                        let (o, rep) = Outbox::open(c.clone(), &sinks()).unwrap();
                        assert_eq!(rep.torn_bytes, 0);
                        ob = o;
                        readers = sinks().iter().map(|s| ob.reader(s)).collect();
                        in_flight = [0, 0];
                    }
                }
                let st = ob.status();
                for (i, b) in st.sinks.iter().enumerate() {
                    assert_eq!(
                        b.backlog as usize,
                        model[i].len(),
                        "seed {seed} step {step}"
                    );
                }
            }
            // Fully acknowledged sealed segments are gone.
            for (s, r) in readers.iter_mut().enumerate() {
                let all = r
                    .read_batch(usize::MAX, usize::MAX, Duration::ZERO)
                    .unwrap();
                assert_eq!(all.len(), model[s].len() - in_flight[s]);
                let pos = r.position();
                r.ack(pos).unwrap();
            }
            ob.append_json(&[doc(1)]).unwrap();
            assert!(ob.status().segments <= 2, "seed {seed}: {:?}", ob.status());
        }
    }

    #[test]
    fn torn_last_line_is_cut_off_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), 1 << 20, 1 << 20, WhenFull::DropOldest);
        {
            let (ob, _) = Outbox::open(c.clone(), &sinks()).unwrap();
            ob.append_json(&[doc(0), doc(1), doc(2)]).unwrap();
        }
        let (path, bytes) = segment_bytes(dir.path()).pop().unwrap();
        // Half of a fourth line, as a crash mid-append leaves it.
        let half = format_line(3, &doc(3));
        let mut torn = bytes.clone();
        torn.extend_from_slice(&half.as_bytes()[..half.len() / 2]);
        std::fs::write(&path, &torn).unwrap();
        let (ob, rep) = Outbox::open(c.clone(), &sinks()).unwrap();
        assert_eq!(rep.torn_bytes, (half.len() / 2) as u64);
        assert_eq!(rep.records, 3);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "file cut back to the valid prefix"
        );
        // The next append continues cleanly at seq 3.
        ob.append_json(&[doc(9)]).unwrap();
        let got = ob
            .reader("es")
            .read_batch(10, usize::MAX, Duration::ZERO)
            .unwrap();
        let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
        assert_eq!(got[3].id, "a00000009");
    }

    #[test]
    fn complete_line_with_bad_checksum_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), 1 << 20, 1 << 20, WhenFull::DropOldest);
        {
            let (ob, _) = Outbox::open(c.clone(), &sinks()).unwrap();
            ob.append_json(&[doc(0), doc(1)]).unwrap();
        }
        let (path, mut bytes) = segment_bytes(dir.path()).pop().unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x20; // flip a bit inside the last record's JSON
        std::fs::write(&path, &bytes).unwrap();
        let (ob, rep) = Outbox::open(c, &sinks()).unwrap();
        assert_eq!(rep.records, 1);
        assert!(rep.torn_bytes > 0);
        assert_eq!(
            ob.reader("es")
                .read_batch(10, usize::MAX, Duration::ZERO)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn drop_oldest_counts_what_each_sink_lost() {
        let dir = tempfile::tempdir().unwrap();
        let line = format_line(0, &doc(0)).len() as u64;
        // Room for about 10 records, segments of about 3.
        let c = cfg(dir.path(), line * 10 + 5, line * 3, WhenFull::DropOldest);
        let (ob, _) = Outbox::open(c, &sinks()).unwrap();
        let mut es = ob.reader("es");
        for n in 0..30 {
            ob.append_json(&[doc(n * 7)]).unwrap(); // same length: n*7 % 7 == 0
            if n < 25 {
                // "es" keeps up, "syslog" is down.
                let got = es.read_batch(10, usize::MAX, Duration::ZERO).unwrap();
                assert_eq!(got.len(), 1);
                es.ack(es.position()).unwrap();
            }
        }
        let st = ob.status();
        assert!(st.bytes <= line * 10 + 5, "{st:?}");
        assert_eq!(st.rejected, 0);
        let sys = &st.sinks[1];
        assert!(sys.dropped > 0 && sys.dropped + sys.backlog == 30, "{st:?}");
        assert_eq!(
            st.sinks[0].dropped, 0,
            "es only lost records it had not read yet: {st:?}"
        );
        // The syslog reader resumes at the oldest record still stored, in order.
        let got = ob
            .reader("syslog")
            .read_batch(100, usize::MAX, Duration::ZERO)
            .unwrap();
        assert_eq!(got.len() as u64, sys.backlog);
        assert_eq!(got.last().unwrap().id, id_of(&doc(29 * 7)));
        assert!(got.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    }

    #[test]
    fn drop_newest_refuses_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let line = format_line(0, &doc(0)).len() as u64;
        let c = cfg(dir.path(), line * 4, line * 2, WhenFull::DropNewest);
        let (ob, _) = Outbox::open(c, &sinks()).unwrap();
        let docs: Vec<String> = (0..6).map(|n| doc(n * 7)).collect();
        assert_eq!(ob.append_json(&docs).unwrap(), 4);
        let st = ob.status();
        assert_eq!((st.rejected, st.next_seq), (2, 4));
        // Once both sinks acknowledged, there is room again.
        for s in sinks() {
            let mut r = ob.reader(&s);
            r.read_batch(10, usize::MAX, Duration::ZERO).unwrap();
            r.ack(r.position()).unwrap();
        }
        assert_eq!(ob.append_json(&docs[..2]).unwrap(), 2);
    }

    #[test]
    fn a_reader_waits_for_appends() {
        let dir = tempfile::tempdir().unwrap();
        let c = cfg(dir.path(), 1 << 20, 1 << 20, WhenFull::DropOldest);
        let (ob, _) = Outbox::open(c, &sinks()).unwrap();
        let mut r = ob.reader("es");
        let writer = ob.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            writer.append_json(&[doc(5)]).unwrap();
        });
        let got = r
            .read_batch(10, usize::MAX, Duration::from_secs(5))
            .unwrap();
        assert_eq!(got.len(), 1);
        t.join().unwrap();
        assert_eq!(ob.find("a00000005").as_deref(), Some(doc(5).as_str()));
        assert!(ob.find("nope").is_none());
    }
}
