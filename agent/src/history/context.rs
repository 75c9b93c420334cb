//! Context on demand: what happened around an alert, a process or a host
//! time window. The pipeline thread answers what only it knows (recent
//! alerts, the process table: who a process is and its ancestry); the rest
//! comes from the spool (children, files written, connections, the events
//! around), read here, off the pipeline thread.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::ControlFlow;

use dsl::alert::Alert;
use dsl::event::{Category, EventType, Text};
use dsl::time::format_rfc3339;
use dsl::Event;
use serde::{Deserialize, Serialize};
use spool::{SpoolError, SpoolReader, TimeRange};

use crate::history::store::{for_each_event, key_hash};
use crate::pipeline::process_table::ProcInfo;

/// Windows and time ranges longer than this are refused.
pub const MAX_WINDOW_NS: i64 = 24 * 3600 * dsl::time::NS_PER_SEC;
pub const DEFAULT_WINDOW_NS: i64 = 5 * 60 * dsl::time::NS_PER_SEC;
pub const DEFAULT_LIMIT: usize = 200;
pub const MAX_LIMIT: usize = 5_000;
/// Children, files and connections listed per entity, at most.
const MAX_FACTS: usize = 1_000;

/// The facts of an alert that context needs (the pipeline keeps these for
/// its recent alerts; full alerts live in the outbox).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSummary {
    pub id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub severity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    #[serde(rename = "@timestamp", with = "dsl_ts")]
    pub timestamp_ns: i64,
    #[serde(with = "dsl_ts")]
    pub first_timestamp_ns: i64,
    /// Process entities of the matched events, in order, once each.
    pub entity_ids: Vec<String>,
}

/// RFC 3339 on the wire, ns in memory.
mod dsl_ts {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&dsl::time::format_rfc3339(*ns))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = String::deserialize(d)?;
        dsl::time::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

impl AlertSummary {
    pub fn of(a: &Alert) -> AlertSummary {
        let mut entity_ids: Vec<String> = Vec::new();
        for e in &a.events {
            if let Some(id) = e.process.entity_id.as_deref() {
                if !entity_ids.iter().any(|x| x == id) {
                    entity_ids.push(id.to_string());
                }
            }
        }
        AlertSummary {
            id: a.id.clone(),
            rule_id: a.rule.id.clone(),
            rule_name: a.rule.name.clone(),
            severity: a.rule.severity.as_str().into(),
            host_id: a.host_id.clone().or_else(|| {
                a.events
                    .first()
                    .and_then(|e| e.host.id.as_deref().map(str::to_string))
            }),
            timestamp_ns: a.timestamp_ns,
            first_timestamp_ns: a.first_timestamp_ns,
            entity_ids,
        }
    }
}

/// The pipeline's answer about one entity.
#[derive(Debug, Clone, Default)]
pub struct EntityTable {
    pub entity_id: String,
    pub process: Option<ProcInfo>,
    /// The process itself first, then its parent, up to the root.
    pub ancestry: Vec<ProcInfo>,
}

/// The pipeline's answer to a lookup.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub alert: Option<AlertSummary>,
    pub entities: Vec<EntityTable>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Child {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub entity_id: Option<Text>,
    pub pid: Option<u32>,
    pub name: Option<Text>,
    pub executable: Option<Text>,
    pub args: Vec<Text>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileActivity {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub action: Option<Text>,
    pub path: Option<Text>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub action: Option<Text>,
    pub destination: Option<String>,
    pub transport: Option<Text>,
}

/// Everything known about one process entity.
#[derive(Debug, Clone, Serialize)]
pub struct EntityContext {
    pub entity_id: String,
    /// From the process table, or rebuilt from its spooled events.
    pub process: Option<ProcInfo>,
    pub ancestry: Vec<ProcInfo>,
    pub children: Vec<Child>,
    pub files_written: Vec<FileActivity>,
    pub connections: Vec<Connection>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub start: String,
    pub end: String,
}

/// The `context` answer.
#[derive(Debug, Clone, Serialize)]
pub struct ContextAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    pub window: Window,
    pub entities: Vec<EntityContext>,
    /// Events around the anchor (the alert, the process start, the window
    /// start), in time order; at most `limit`, the nearest to the anchor.
    pub events: Vec<Event>,
    /// More events matched than `limit`.
    pub events_truncated: bool,
    /// Spool blocks that were overwritten or damaged while reading.
    pub blocks_unreadable: usize,
}

/// Decodes the events of every block overlapping `range` (and possibly
/// holding `key`), calling `f` for those in the range.
fn scan(
    reader: &SpoolReader,
    range: TimeRange,
    key: Option<u64>,
    unreadable: &mut usize,
    mut f: impl FnMut(Event),
) -> Result<(), SpoolError> {
    for info in reader.blocks() {
        if !info.overlaps(&range) || key.is_some_and(|k| !info.may_contain_key(k)) {
            continue;
        }
        let block = match reader.read_block(info) {
            Ok(b) => b,
            Err(SpoolError::Overwritten { .. }) | Err(SpoolError::Corrupt { .. }) => {
                *unreadable += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let (_, err) = for_each_event(
            &block,
            |ts| range.contains(ts),
            |d| {
                f(d.into_event());
                ControlFlow::Continue(())
            },
        );
        if err.is_some() {
            *unreadable += 1;
        }
    }
    Ok(())
}

/// Keeps the `limit` events nearest to `anchor` (ties: the earlier).
struct Nearest {
    anchor: i64,
    limit: usize,
    seen: usize,
    heap: BinaryHeap<(u64, Reverse<u64>, OrdEvent)>,
    order: u64,
}

/// Events ordered by arrival only (the heap key decides, never this).
struct OrdEvent(Event);

impl PartialEq for OrdEvent {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for OrdEvent {}
impl PartialOrd for OrdEvent {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdEvent {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Nearest {
    fn new(anchor: i64, limit: usize) -> Nearest {
        Nearest {
            anchor,
            limit,
            seen: 0,
            heap: BinaryHeap::new(),
            order: 0,
        }
    }

    fn push(&mut self, e: Event) {
        self.seen += 1;
        self.order += 1;
        let dist = e.timestamp_ns.abs_diff(self.anchor);
        // Max-heap on distance: the farthest is dropped first.
        self.heap.push((dist, Reverse(self.order), OrdEvent(e)));
        if self.heap.len() > self.limit {
            self.heap.pop();
        }
    }

    fn into_sorted(self) -> (Vec<Event>, bool) {
        let truncated = self.seen > self.limit;
        let mut v: Vec<Event> = self.heap.into_iter().map(|(_, _, e)| e.0).collect();
        v.sort_by_key(|e| e.timestamp_ns);
        (v, truncated)
    }
}

fn is_file_write(e: &Event) -> bool {
    e.event.category == Category::File
        && (e.event.types.is_empty()
            || e.event.types.iter().any(|t| {
                matches!(
                    t,
                    EventType::Creation | EventType::Change | EventType::Deletion
                )
            }))
}

/// Adds what the spool says about one entity (its children, files,
/// connections) within `range`.
fn entity_facts(
    reader: &SpoolReader,
    ent: &mut EntityContext,
    range: TimeRange,
    unreadable: &mut usize,
    events: Option<&mut Nearest>,
) -> Result<(), SpoolError> {
    let id = ent.entity_id.clone();
    let mut events = events;
    let mut first_seen: Option<Event> = None;
    scan(reader, range, Some(key_hash(&id)), unreadable, |e| {
        let mine = e.process.entity_id.as_deref() == Some(id.as_str());
        let child = e
            .process
            .parent
            .as_ref()
            .and_then(|p| p.entity_id.as_deref())
            == Some(id.as_str());
        if !mine && !child {
            return; // a bloom false positive
        }
        let ts = format_rfc3339(e.timestamp_ns);
        if child
            && e.event.category == Category::Process
            && e.has_type(EventType::Start)
            && ent.children.len() < MAX_FACTS
        {
            ent.children.push(Child {
                timestamp: ts.clone(),
                entity_id: e.process.entity_id.clone(),
                pid: e.process.pid,
                name: e.process.name.clone(),
                executable: e.process.executable.clone(),
                args: e.process.args.clone(),
            });
        }
        if mine && is_file_write(&e) && ent.files_written.len() < MAX_FACTS {
            ent.files_written.push(FileActivity {
                timestamp: ts.clone(),
                action: e.event.action.clone(),
                path: e.file.as_ref().and_then(|f| f.path.clone()),
            });
        }
        if mine && e.event.category == Category::Network && ent.connections.len() < MAX_FACTS {
            ent.connections.push(Connection {
                timestamp: ts,
                action: e.event.action.clone(),
                destination: e.destination.as_ref().and_then(|d| {
                    d.ip.map(|ip| match d.port {
                        Some(p) if ip.is_ipv6() => format!("[{ip}]:{p}"),
                        Some(p) => format!("{ip}:{p}"),
                        None => ip.to_string(),
                    })
                }),
                transport: e.network.as_ref().and_then(|n| n.transport.clone()),
            });
        }
        if mine && first_seen.is_none() {
            first_seen = Some(e.clone());
        }
        if let Some(n) = events.as_deref_mut() {
            n.push(e);
        }
    })?;
    if ent.process.is_none() {
        // Gone from the process table: rebuild what the spool remembers.
        if let Some(e) = first_seen {
            ent.process = Some(ProcInfo {
                pid: e.process.pid.unwrap_or(0),
                ppid: e.process.parent.as_ref().and_then(|p| p.pid),
                entity_id: ent.entity_id.as_str().into(),
                name: e.process.name.clone(),
                executable: e.process.executable.clone(),
                args: e.process.args.clone(),
                user_id: e.user.id.clone(),
                start_ns: e.timestamp_ns,
                exit_ns: None,
            });
        }
    }
    Ok(())
}

/// The range as people read it: both ends inclusive.
fn window(range: TimeRange) -> Window {
    Window {
        start: format_rfc3339(range.start_ns),
        end: format_rfc3339(range.end_ns.saturating_sub(1)),
    }
}

fn range_around(start: i64, end: i64, w: i64) -> TimeRange {
    TimeRange::new(
        start.saturating_sub(w),
        end.saturating_add(w).saturating_add(1),
    )
}

/// Context of an alert: its entities (ancestry from the table; children,
/// files and connections from the spool) and the host's events within
/// `window_ns` before its first and after its last event.
pub fn for_alert(
    reader: Option<&SpoolReader>,
    alert: AlertSummary,
    table: Vec<EntityTable>,
    window_ns: i64,
    limit: usize,
) -> Result<ContextAnswer, SpoolError> {
    let range = range_around(alert.first_timestamp_ns, alert.timestamp_ns, window_ns);
    let mut unreadable = 0;
    let mut entities = Vec::new();
    for t in table {
        let mut ent = EntityContext {
            entity_id: t.entity_id,
            process: t.process,
            ancestry: t.ancestry,
            children: Vec::new(),
            files_written: Vec::new(),
            connections: Vec::new(),
        };
        if let Some(r) = reader {
            entity_facts(r, &mut ent, range, &mut unreadable, None)?;
        }
        entities.push(ent);
    }
    let mut near = Nearest::new(alert.timestamp_ns, limit);
    if let Some(r) = reader {
        let host = alert.host_id.clone();
        let key = host.as_deref().map(key_hash);
        scan(r, range, key, &mut unreadable, |e| {
            if host.is_none() || e.host.id.as_deref() == host.as_deref() {
                near.push(e);
            }
        })?;
    }
    let (events, events_truncated) = near.into_sorted();
    Ok(ContextAnswer {
        host_id: alert.host_id.clone(),
        alert: Some(alert),
        window: window(range),
        entities,
        events,
        events_truncated,
        blocks_unreadable: unreadable,
    })
}

/// Context of one process: from `window_ns` before it started to
/// `window_ns` after it exited (or now); the events are its own and its
/// children's. `None` if neither the table nor the spool knows it.
pub fn for_entity(
    reader: Option<&SpoolReader>,
    table: EntityTable,
    window_ns: i64,
    limit: usize,
    now_ns: i64,
) -> Result<Option<ContextAnswer>, SpoolError> {
    let mut ent = EntityContext {
        entity_id: table.entity_id,
        process: table.process,
        ancestry: table.ancestry,
        children: Vec::new(),
        files_written: Vec::new(),
        connections: Vec::new(),
    };
    let mut unreadable = 0;
    // Unknown to the table: search the whole spool (the bloom filters keep
    // this to the blocks that mention it), then narrow to its lifetime.
    let range = match &ent.process {
        Some(p) => range_around(p.start_ns, p.exit_ns.unwrap_or(now_ns), window_ns),
        None => TimeRange::all(),
    };
    let mut near = Nearest::new(ent.process.as_ref().map_or(0, |p| p.start_ns), limit);
    if let Some(r) = reader {
        entity_facts(r, &mut ent, range, &mut unreadable, Some(&mut near))?;
    }
    let Some(p) = ent.process.as_ref() else {
        return Ok(None);
    };
    let (mut events, events_truncated) = near.into_sorted();
    let range = if range == TimeRange::all() {
        let last = events.last().map_or(p.start_ns, |e| e.timestamp_ns);
        let r = range_around(p.start_ns, last, window_ns);
        events.retain(|e| r.contains(e.timestamp_ns));
        r
    } else {
        range
    };
    Ok(Some(ContextAnswer {
        alert: None,
        host_id: None,
        window: window(range),
        entities: vec![ent],
        events,
        events_truncated,
        blocks_unreadable: unreadable,
    }))
}

/// The events of `host` in `range` (the earliest `limit` of them).
pub fn for_host(
    reader: Option<&SpoolReader>,
    host: &str,
    range: TimeRange,
    limit: usize,
) -> Result<ContextAnswer, SpoolError> {
    let mut unreadable = 0;
    let mut near = Nearest::new(range.start_ns, limit);
    if let Some(r) = reader {
        scan(r, range, Some(key_hash(host)), &mut unreadable, |e| {
            if e.host.id.as_deref() == Some(host) {
                near.push(e);
            }
        })?;
    }
    let (events, events_truncated) = near.into_sorted();
    Ok(ContextAnswer {
        alert: None,
        host_id: Some(host.to_string()),
        window: window(range),
        entities: Vec::new(),
        events,
        events_truncated,
        blocks_unreadable: unreadable,
    })
}

/// The spooled events of `host` from `window_ns` before the alert's first
/// event up to (not including) the time of its last one, for the alert
/// document itself: what led up to the match. Events after the match are
/// not known yet when it is raised, and stopping short of the last event's
/// time keeps the result independent of how events of that same instant
/// were batched. At most `limit`, the latest. Returns `(events, truncated)`;
/// `truncated` says older events of the window were left out.
pub fn alert_window(
    reader: &SpoolReader,
    host: Option<&str>,
    first_ns: i64,
    last_ns: i64,
    window_ns: i64,
    limit: usize,
) -> Result<(Vec<Event>, bool), SpoolError> {
    let range = TimeRange::new(first_ns.saturating_sub(window_ns), last_ns);
    let key = host.map(key_hash);
    let mut unreadable = 0;
    let mut collected: Vec<Event> = Vec::new();
    let mut truncated = false;
    // Newest blocks first, and of each block only the newest records that
    // are needed get decoded: this runs on the pipeline thread.
    for info in reader.blocks().iter().rev() {
        if !info.overlaps(&range) || key.is_some_and(|k| !info.may_contain_key(k)) {
            continue;
        }
        if collected.len() >= limit {
            truncated = true;
            break;
        }
        let block = match reader.read_block(info) {
            Ok(b) => b,
            Err(SpoolError::Overwritten { .. }) | Err(SpoolError::Corrupt { .. }) => {
                unreadable += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        // Timestamps alone (no decoding) tell how many records are in range.
        let in_range = block
            .records()
            .filter_map(Result::ok)
            .filter(|r| range.contains(r.ts_ns))
            .count();
        let need = limit - collected.len();
        let mut tail = need;
        loop {
            let skip = in_range.saturating_sub(tail);
            let mut index = 0usize;
            let mut mine = Vec::new();
            for_each_event(
                &block,
                |ts| {
                    if !range.contains(ts) {
                        return false;
                    }
                    index += 1;
                    index > skip
                },
                |d| {
                    let e = d.into_event();
                    if host.is_none() || e.host.id.as_deref() == host {
                        mine.push(e);
                    }
                    ControlFlow::Continue(())
                },
            );
            // Other hosts' records took places: decode further back.
            if mine.len() < need && skip > 0 {
                tail = tail.saturating_mul(4).min(in_range);
                continue;
            }
            truncated |= skip > 0 || mine.len() > need;
            // Older block first, so equal timestamps keep spool order below.
            mine.append(&mut collected);
            collected = mine;
            break;
        }
    }
    if unreadable > 0 {
        tracing::debug!(unreadable, "alert window: skipped unreadable spool blocks");
    }
    // Stable sort keeps the spool order of equal timestamps.
    collected.sort_by_key(|e| e.timestamp_ns);
    if collected.len() > limit {
        truncated = true;
        collected.drain(..collected.len() - limit);
    }
    Ok((collected, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: i64) -> Event {
        Event {
            timestamp_ns: ts,
            ..Default::default()
        }
    }

    #[test]
    fn nearest_keeps_the_events_closest_to_the_anchor_in_time_order() {
        let mut n = Nearest::new(50, 3);
        for ts in [10, 49, 90, 51, 50, 0] {
            n.push(ev(ts));
        }
        let (v, truncated) = n.into_sorted();
        assert!(truncated);
        assert_eq!(
            v.iter().map(|e| e.timestamp_ns).collect::<Vec<_>>(),
            [49, 50, 51]
        );
    }
}
