//! What the agent knows about live (and recently exited) processes: seeded
//! from `sysinfo` at start, kept current from exec/fork/exit events. Fills
//! the parent and entity-id fields sources could not, and answers ancestry
//! questions for alerts and context requests.

use std::collections::VecDeque;
use std::sync::Arc;

use dsl::event::{Category, EventType, Process, Text};
use dsl::Event;
use serde::Serialize;

/// One process instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub entity_id: Text,
    pub name: Option<Text>,
    pub executable: Option<Text>,
    pub args: Vec<Text>,
    pub user_id: Option<Text>,
    pub start_ns: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_ns: Option<i64>,
}

/// A live process as the table's pid map holds it. `as_parent` is the
/// `process.parent` of its children's events, made once at exec: every
/// event of a child shares it (a count, not a copy of its strings and
/// args).
#[derive(Debug)]
struct Live {
    info: Arc<ProcInfo>,
    as_parent: Arc<Process>,
}

/// How many exited processes stay answerable for context and ancestry.
const EXITED_KEPT: usize = 4096;
const MAX_ANCESTRY: usize = 64;

/// A fast keyed hash: every event looks processes up here.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

pub struct ProcessTable {
    host_tag: String,
    /// Both maps share each process's one `Arc`, which shares the exec
    /// event's strings (`Text` clones, no copies).
    live: HashMap<u32, Live>,
    by_entity: HashMap<Text, Arc<ProcInfo>>,
    exited: VecDeque<Text>,
}

impl ProcessTable {
    pub fn new(host_id: &str) -> ProcessTable {
        ProcessTable {
            host_tag: host_id.chars().take(8).collect(),
            live: HashMap::default(),
            by_entity: HashMap::default(),
            exited: VecDeque::new(),
        }
    }

    /// Entity id for a process we only know from a snapshot: host, pid and
    /// start time identify one process instance.
    pub fn snapshot_entity_id(&self, pid: u32, start_secs: u64) -> Text {
        format!("{}-{pid}-{start_secs}", self.host_tag).into()
    }

    /// Seeds the table with every running process.
    pub fn seed_from_system(&mut self) {
        use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
        let mut sys = System::new();
        sys.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_exe(UpdateKind::Always)
                .with_cmd(UpdateKind::Always)
                .with_user(UpdateKind::Always),
        );
        for (pid, p) in sys.processes() {
            let pid = pid.as_u32();
            let info = ProcInfo {
                pid,
                ppid: p.parent().map(|pp| pp.as_u32()),
                entity_id: self.snapshot_entity_id(pid, p.start_time()),
                name: Some(p.name().to_string_lossy().into()),
                executable: p.exe().map(|e| e.display().to_string().into()),
                args: p.cmd().iter().map(|a| a.to_string_lossy().into()).collect(),
                user_id: p.user_id().map(|u| u.to_string().into()),
                start_ns: (p.start_time() as i64).saturating_mul(1_000_000_000),
                exit_ns: None,
            };
            self.insert(info);
        }
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    fn insert(&mut self, info: ProcInfo) {
        let mut as_parent = Process::default();
        fill_process(&mut as_parent, &info);
        let info = Arc::new(info);
        self.by_entity
            .insert(info.entity_id.clone(), Arc::clone(&info));
        let live = Live {
            info,
            as_parent: Arc::new(as_parent),
        };
        // A pid that starts another process (a recycled pid, or an exit
        // that was dropped under load): the old instance is over.
        let (pid, start, new_id) = (
            live.info.pid,
            live.info.start_ns,
            live.info.entity_id.clone(),
        );
        if let Some(old) = self.live.insert(pid, live) {
            if old.info.entity_id != new_id {
                self.retire(old.info, start);
            }
        }
    }

    /// Keeps an ended process answerable (by entity id) among the last
    /// `EXITED_KEPT` ended ones.
    fn retire(&mut self, mut info: Arc<ProcInfo>, exit_ns: i64) {
        let entity_id = info.entity_id.clone();
        // Out of the pid map, the Arc is (nearly always) ours alone.
        self.by_entity.remove(&entity_id);
        Arc::make_mut(&mut info).exit_ns = Some(exit_ns);
        self.exited.push_back(entity_id.clone());
        self.by_entity.insert(entity_id, info);
        while self.exited.len() > EXITED_KEPT {
            if let Some(old) = self.exited.pop_front() {
                // Unless the id came back to life meanwhile.
                if self
                    .by_entity
                    .get(&old)
                    .is_some_and(|p| p.exit_ns.is_some())
                {
                    self.by_entity.remove(&old);
                }
            }
        }
    }

    /// Retires the live processes `alive` says are gone: their exits were
    /// dropped (a full queue) or never seen. Keeps the table bounded by the
    /// processes that really run.
    pub fn sweep(&mut self, alive: impl Fn(u32) -> bool, now_ns: i64) -> usize {
        let dead: Vec<u32> = self
            .live
            .keys()
            .copied()
            .filter(|&pid| !alive(pid))
            .collect();
        for pid in &dead {
            if let Some(Live { info, .. }) = self.live.remove(pid) {
                self.retire(info, now_ns);
            }
        }
        dead.len()
    }

    pub fn by_pid(&self, pid: u32) -> Option<&ProcInfo> {
        self.live.get(&pid).map(|p| &*p.info)
    }

    pub fn by_entity(&self, entity_id: &str) -> Option<&ProcInfo> {
        self.by_entity.get(entity_id).map(|p| &**p)
    }

    /// Fills missing process/parent fields from the table, then learns from
    /// the event (exec/fork add or replace a process, exit retires it).
    pub fn observe(&mut self, e: &mut Event) {
        let Some(pid) = e.process.pid else { return };
        // The source's parent entity id is authoritative: adopt it.
        if let Some(parent) = e.process.parent.as_deref() {
            if let (Some(ppid), Some(peid)) = (parent.pid, &parent.entity_id) {
                if let Some(known) = self.live.get(&ppid) {
                    if known.info.entity_id != *peid {
                        let mut info = ProcInfo::clone(&known.info);
                        info.entity_id = Text::clone(peid);
                        self.insert(info);
                    }
                }
            }
        }
        let is_start = e.event.category == Category::Process && e.has_type(EventType::Start);
        let is_end = e.event.category == Category::Process && e.has_type(EventType::End);
        if is_start {
            let ppid = e
                .process
                .parent
                .as_ref()
                .and_then(|p| p.pid)
                .or_else(|| self.live.get(&pid).and_then(|p| p.info.ppid));
            let entity_id =
                e.process.entity_id.clone().unwrap_or_else(|| {
                    format!("{}-{pid}-{}", self.host_tag, e.timestamp_ns).into()
                });
            self.insert(ProcInfo {
                pid,
                ppid,
                entity_id,
                name: e.process.name.clone(),
                executable: e.process.executable.clone(),
                args: e.process.args.clone(),
                user_id: e.user.id.clone(),
                start_ns: e.timestamp_ns,
                exit_ns: None,
            });
        }
        self.fill(e);
        if is_end {
            if let Some(Live { info, .. }) = self.live.remove(&pid) {
                self.retire(info, e.timestamp_ns);
            }
        }
    }

    /// Names the responsible process a source gave by id only
    /// (`process.Ext.effective_parent.entity_id`, from ES).
    fn fill_effective_parent(&self, e: &mut Event) {
        use dsl::event::ExtraValue;
        if e.extra.is_empty()
            || e.extra
                .get("process.Ext.effective_parent.executable")
                .is_some()
        {
            return;
        }
        let Some(ExtraValue::Str(id)) = e.extra.get("process.Ext.effective_parent.entity_id")
        else {
            return;
        };
        let Some(info) = self.by_entity.get(id.as_str()).cloned() else {
            return;
        };
        if let Some(exe) = &info.executable {
            e.extra.insert(
                "process.Ext.effective_parent.executable",
                ExtraValue::Str(exe.clone()),
            );
        }
        if let Some(name) = &info.name {
            e.extra.insert(
                "process.Ext.effective_parent.name",
                ExtraValue::Str(name.clone()),
            );
        }
    }

    fn fill(&self, e: &mut Event) {
        self.fill_effective_parent(e);
        let Some(pid) = e.process.pid else { return };
        let Some(me) = self.live.get(&pid) else {
            return;
        };
        fill_process(&mut e.process, &me.info);
        if let Some(pp) = me.info.ppid.and_then(|pp| self.live.get(&pp)) {
            match &mut e.process.parent {
                None => e.process.parent = Some(Arc::clone(&pp.as_parent)),
                Some(parent) if lacks_any(parent, &pp.info) => {
                    fill_process(Arc::make_mut(parent), &pp.info)
                }
                Some(_) => {}
            }
        }
    }

    /// The chain from `entity_id` up to the root (the process itself first).
    pub fn ancestry(&self, entity_id: &str) -> Vec<ProcInfo> {
        let mut out = Vec::new();
        let mut cur = self.by_entity(entity_id);
        while let Some(p) = cur {
            let next = p
                .ppid
                .filter(|&pp| pp != p.pid)
                .and_then(|pp| self.by_pid(pp));
            out.push(p.clone());
            if out.len() >= MAX_ANCESTRY {
                break;
            }
            cur = next;
        }
        out
    }
}

/// Whether [`fill_process`] would change `p`: a parent the source sent
/// complete is left as it is, shared or not.
fn lacks_any(p: &Process, info: &ProcInfo) -> bool {
    p.pid.is_none()
        || p.entity_id.is_none()
        || p.name.is_none()
        || p.executable.is_none()
        || (p.args.is_empty() && !info.args.is_empty())
}

fn fill_process(p: &mut Process, info: &ProcInfo) {
    p.pid.get_or_insert(info.pid);
    if p.entity_id.is_none() {
        p.entity_id = Some(info.entity_id.clone());
    }
    if p.name.is_none() {
        p.name = info.name.clone();
    }
    if p.executable.is_none() {
        p.executable = info.executable.clone();
    }
    if p.args.is_empty() {
        p.args = info.args.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsl::event::EventInfo;

    fn exec(ts: i64, pid: u32, ppid: u32, name: &str, eid: &str) -> Event {
        Event {
            timestamp_ns: ts,
            event: EventInfo {
                category: Category::Process,
                types: vec![EventType::Start],
                action: Some("exec".into()),
                ..Default::default()
            },
            process: Process {
                pid: Some(pid),
                entity_id: Some(eid.into()),
                name: Some(name.into()),
                parent: Some(Arc::new(Process {
                    pid: Some(ppid),
                    ..Default::default()
                })),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Issue 25, item 2: with exits dropped under load, recycled pids and
    /// a sweep against the OS keep the table bounded; an instance a pid no
    /// longer runs stays answerable among the recently ended.
    #[test]
    fn lost_exits_do_not_grow_the_table() {
        let mut t = ProcessTable::new("host0001");
        // 100,000 execs over 1,000 pids and no exit event at all.
        for i in 0..100_000u32 {
            let pid = 1000 + i % 1000;
            t.observe(&mut exec(i64::from(i), pid, 1, "true", &format!("e{i}")));
        }
        assert_eq!(t.len(), 1000);
        assert!(
            t.by_entity.len() <= 1000 + EXITED_KEPT,
            "{}",
            t.by_entity.len()
        );
        // The last instance of a pid is live, the one before it ended.
        assert!(t.by_entity("e99999").unwrap().exit_ns.is_none());
        assert!(t.by_entity("e98999").unwrap().exit_ns.is_some());
        // The OS says only even pids still run.
        let gone = t.sweep(|pid| pid % 2 == 0, 1);
        assert_eq!(gone, 500);
        assert_eq!(t.len(), 500);
        assert!(t.by_pid(1001).is_none());
        assert!(t.by_entity.len() <= 500 + EXITED_KEPT);
    }

    #[test]
    fn exec_events_build_ancestry_and_fill_parents() {
        let mut t = ProcessTable::new("host0001");
        let mut a = exec(1, 10, 1, "installer", "e10");
        let mut b = exec(2, 11, 10, "sh", "e11");
        let mut c = exec(3, 12, 11, "curl", "e12");
        t.observe(&mut a);
        t.observe(&mut b);
        t.observe(&mut c);
        assert_eq!(
            c.process.parent.as_ref().unwrap().name.as_deref(),
            Some("sh")
        );
        assert_eq!(
            c.process.parent.as_ref().unwrap().entity_id.as_deref(),
            Some("e11")
        );
        let chain: Vec<_> = t
            .ancestry("e12")
            .into_iter()
            .map(|p| p.name.unwrap().to_string())
            .collect();
        assert_eq!(chain, ["curl", "sh", "installer"]);
        // A network event with only a pid gets its process filled in.
        let mut net = Event {
            timestamp_ns: 4,
            process: Process {
                pid: Some(12),
                ..Default::default()
            },
            ..Default::default()
        };
        t.observe(&mut net);
        assert_eq!(net.process.entity_id.as_deref(), Some("e12"));
        assert_eq!(
            net.process.parent.unwrap().entity_id.as_deref(),
            Some("e11")
        );
    }

    #[test]
    fn exited_processes_stay_answerable_but_bounded() {
        let mut t = ProcessTable::new("h");
        for pid in 0..(EXITED_KEPT as u32 + 10) {
            let mut e = exec(1, pid + 100, 1, "x", &format!("e{pid}"));
            t.observe(&mut e);
            let mut end = e.clone();
            end.event.types = vec![EventType::End];
            t.observe(&mut end);
        }
        assert!(
            t.by_entity("e0").is_none(),
            "oldest exited process is forgotten"
        );
        assert!(t
            .by_entity(&format!("e{}", EXITED_KEPT as u32 + 9))
            .is_some());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn seeding_sees_this_test_process() {
        let mut t = ProcessTable::new("h");
        t.seed_from_system();
        let me = t
            .by_pid(std::process::id())
            .expect("own pid is in the table");
        assert!(me.executable.is_some());
    }
}
