//! Stable identities for process instances (`process.entity_id`).
//!
//! A pid alone is reused; `(pid, start_ticks)` identifies a process instance
//! within a boot, and the boot id separates boots. An `execve` keeps pid and
//! start time but replaces the program, so every image gets its own id via an
//! exec sequence number: 0 for the image a process had when vigil first saw it
//! (a fork child, or a process already running), +1 on every exec vigil sees.
//! The id of the image an exec replaced is kept as `previous_entity_id`
//! (lineage: `sh -c '…; exec sleep 1'` → sleep's previous is that sh).

use std::collections::HashMap;

use dsl::event::Text;

/// `{host_id}-{boot_id}-{pid}-{start_ticks}-{exec_seq}`.
pub fn entity_id(
    host_id: &str,
    boot_id: &str,
    pid: u32,
    start_ticks: u64,
    exec_seq: u32,
) -> String {
    format!("{host_id}-{boot_id}-{pid}-{start_ticks}-{exec_seq}")
}

/// Who a process instance is, as tracked by the live source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: u32,
    pub start_ticks: u64,
    pub exec_seq: u32,
    /// Shared (`Text`): every event of the process holds a count on the
    /// table's copy instead of a copy of its own.
    pub entity_id: Text,
    /// The image this one replaced by exec, when known (lineage parent).
    pub previous_entity_id: Option<Text>,
}

/// What vigil remembers about a live process besides its identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Attrs {
    pub ppid: Option<u32>,
    pub name: Option<Text>,
    pub executable: Option<Text>,
    pub uid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcEntry {
    pub id: ProcessIdentity,
    pub attrs: Attrs,
}

/// Live processes by pid. Entries leave on exit events; if exits are lost
/// (netlink overrun) the table is pruned of dead pids when it grows past
/// [`ProcessTable::PRUNE_AT`].
#[derive(Debug)]
pub(crate) struct ProcessTable {
    host_id: String,
    boot_id: String,
    map: HashMap<u32, ProcEntry>,
}

impl ProcessTable {
    pub const PRUNE_AT: usize = 32_768;

    pub fn new(host_id: &str, boot_id: &str) -> ProcessTable {
        ProcessTable {
            host_id: host_id.to_string(),
            boot_id: boot_id.to_string(),
            map: HashMap::new(),
        }
    }

    fn id(&self, pid: u32, start_ticks: u64, exec_seq: u32) -> Text {
        entity_id(&self.host_id, &self.boot_id, pid, start_ticks, exec_seq).into()
    }

    pub fn get(&self, pid: u32) -> Option<&ProcEntry> {
        self.map.get(&pid)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Records a process as found (fork child, `/proc` lookup). An entry for
    /// the same instance is kept, its unknown attributes filled in; a stale
    /// entry (pid reused) is replaced by a fresh instance at exec_seq 0.
    pub fn observe(&mut self, pid: u32, start_ticks: u64, attrs: Attrs) -> ProcEntry {
        if let Some(e) = self.map.get_mut(&pid) {
            if e.id.start_ticks == start_ticks {
                let a = &mut e.attrs;
                a.ppid = a.ppid.or(attrs.ppid);
                a.uid = a.uid.or(attrs.uid);
                if a.executable.is_none() {
                    a.executable = attrs.executable;
                    a.name = attrs.name.or(a.name.take());
                }
                return e.clone();
            }
        }
        self.maybe_prune();
        let entry = ProcEntry {
            id: ProcessIdentity {
                pid,
                start_ticks,
                exec_seq: 0,
                entity_id: self.id(pid, start_ticks, 0),
                previous_entity_id: None,
            },
            attrs,
        };
        self.map.insert(pid, entry.clone());
        entry
    }

    /// Records an exec: a new image of the same instance. `start_ticks` is
    /// `None` when `/proc` could not be read; the known instance is then
    /// assumed. Returns `None` when the instance is unknown either way.
    pub fn exec(&mut self, pid: u32, start_ticks: Option<u64>, attrs: Attrs) -> Option<ProcEntry> {
        let prev = self.map.get(&pid);
        let start = start_ticks.or(prev.map(|p| p.id.start_ticks))?;
        let (seq, previous, old_attrs) = match prev {
            Some(p) if p.id.start_ticks == start => (
                p.id.exec_seq.saturating_add(1),
                p.id.entity_id.clone(),
                Some(p.attrs.clone()),
            ),
            // Never seen this instance: the image it replaced is the one
            // a `/proc` lookup would have named exec_seq 0.
            _ => (1, self.id(pid, start, 0), None),
        };
        let mut attrs = attrs;
        if let Some(old) = old_attrs {
            attrs.ppid = attrs.ppid.or(old.ppid);
            attrs.uid = attrs.uid.or(old.uid);
        }
        self.maybe_prune();
        let entry = ProcEntry {
            id: ProcessIdentity {
                pid,
                start_ticks: start,
                exec_seq: seq,
                entity_id: self.id(pid, start, seq),
                previous_entity_id: Some(previous),
            },
            attrs,
        };
        self.map.insert(pid, entry.clone());
        Some(entry)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u32, &ProcEntry)> {
        self.map.iter()
    }

    pub fn exit(&mut self, pid: u32) -> Option<ProcEntry> {
        self.map.remove(&pid)
    }

    fn maybe_prune(&mut self) {
        if self.map.len() >= Self::PRUNE_AT {
            self.map
                .retain(|pid, _| std::path::Path::new(&format!("/proc/{pid}")).exists());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(exe: &str) -> Attrs {
        Attrs {
            ppid: Some(1),
            name: Some(exe.rsplit('/').next().unwrap().into()),
            executable: Some(exe.into()),
            uid: Some(0),
        }
    }

    #[test]
    fn events_share_the_tables_strings() {
        let mut t = ProcessTable::new("h", "b");
        t.observe(10, 500, attrs("/bin/a"));
        let entry = t.get(10).cloned().unwrap();
        let p = super::super::Shared::process_from_view(10, Some(&entry));
        let q = super::super::Shared::process_from_view(10, t.get(10));
        let addr = |t: &Option<Text>| t.as_ref().map(Text::addr).unwrap();
        assert_eq!(addr(&p.entity_id), addr(&q.entity_id));
        assert_eq!(addr(&p.executable), addr(&q.executable));
        assert_eq!(addr(&p.name), addr(&q.name));
        assert_eq!(p.executable.as_deref(), Some("/bin/a"));
    }

    #[test]
    fn format() {
        assert_eq!(entity_id("h", "b00t", 42, 1000, 3), "h-b00t-42-1000-3");
    }

    #[test]
    fn fork_exec_exec_exit() {
        let mut t = ProcessTable::new("h", "b");
        let f = t.observe(10, 500, attrs("/bin/bash"));
        assert_eq!(f.id.entity_id, "h-b-10-500-0");
        // Observing the same instance again keeps the id.
        assert_eq!(t.observe(10, 500, Attrs::default()).id, f.id);
        let e1 = t.exec(10, Some(500), attrs("/bin/sh")).unwrap();
        assert_eq!(e1.id.entity_id, "h-b-10-500-1");
        assert_eq!(e1.id.previous_entity_id.as_deref(), Some("h-b-10-500-0"));
        // /proc unreadable at the second exec: the known start time is used,
        // and ppid/uid carry over.
        let e2 = t.exec(10, None, Attrs::default()).unwrap();
        assert_eq!(e2.id.entity_id, "h-b-10-500-2");
        assert_eq!(e2.id.previous_entity_id.as_deref(), Some("h-b-10-500-1"));
        assert_eq!(e2.attrs.ppid, Some(1));
        assert_eq!(t.exit(10).unwrap().id, e2.id);
        assert!(t.get(10).is_none());
        assert!(t.exec(10, None, Attrs::default()).is_none());
    }

    #[test]
    fn pid_reuse_and_unseen_exec() {
        let mut t = ProcessTable::new("h", "b");
        t.observe(7, 100, attrs("/bin/a"));
        // Same pid, different start: a new instance.
        let n = t.observe(7, 900, attrs("/bin/b"));
        assert_eq!(n.id.entity_id, "h-b-7-900-0");
        assert_eq!(n.attrs.executable.as_deref(), Some("/bin/b"));
        // Exec of an instance never seen: seq 1, previous is the seq-0 id.
        let e = t.exec(8, Some(300), attrs("/bin/c")).unwrap();
        assert_eq!(e.id.entity_id, "h-b-8-300-1");
        assert_eq!(e.id.previous_entity_id.as_deref(), Some("h-b-8-300-0"));
        assert_eq!(t.len(), 2);
    }
}
