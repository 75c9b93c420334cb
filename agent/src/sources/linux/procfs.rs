//! Readers and parsers for `/proc/<pid>/…`.
//!
//! Every reader tolerates the process vanishing underneath it: a missing file
//! is a `None`, never an error or a panic. Parsers take bytes so that tests can
//! feed them fixed inputs.

use std::fs;

/// The parts of `/proc/<pid>/stat` vigil uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    pub comm: String,
    pub state: u8,
    pub ppid: u32,
    /// Field 22 (`starttime`): clock ticks after boot at which the process
    /// started. With the pid it identifies a process instance within a boot.
    pub start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. `comm` sits in parentheses and may itself hold
/// spaces and parentheses, so the fields after it are located from the *last*
/// `)`; the kernel never puts a `)` after it.
pub(crate) fn parse_stat(buf: &[u8]) -> Option<Stat> {
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    if close <= open {
        return None;
    }
    let comm = String::from_utf8_lossy(&buf[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(&buf[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // `fields` starts at field 3 (state); field 4 is ppid; field 22 is starttime.
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    let start_ticks = fields.nth(22 - 5)?.parse().ok()?;
    Some(Stat {
        comm,
        state,
        ppid,
        start_ticks,
    })
}

/// The parts of `/proc/<pid>/status` vigil uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Status {
    pub ppid: Option<u32>,
    /// Real uid (first column of `Uid:`).
    pub uid: Option<u32>,
}

pub(crate) fn parse_status(buf: &[u8]) -> Status {
    let mut out = Status::default();
    for line in buf.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        if let Some(v) = line.strip_prefix("PPid:") {
            out.ppid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("Uid:") {
            out.uid = v
                .split_ascii_whitespace()
                .next()
                .and_then(|u| u.parse().ok());
        }
    }
    out
}

/// Splits `/proc/<pid>/cmdline` (NUL-terminated arguments) into arguments.
pub(crate) fn parse_cmdline(buf: &[u8]) -> Vec<String> {
    if buf.is_empty() {
        return Vec::new();
    }
    let body = buf.strip_suffix(b"\0").unwrap_or(buf);
    body.split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The last path component (`/usr/bin/sleep` → `sleep`).
pub(crate) fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn proc_file(pid: u32, name: &str) -> String {
    format!("/proc/{pid}/{name}")
}

pub(crate) fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read(proc_file(pid, "stat")).ok()?)
}

pub(crate) fn read_status(pid: u32) -> Option<Status> {
    Some(parse_status(&fs::read(proc_file(pid, "status")).ok()?))
}

pub(crate) fn read_link(path: &str) -> Option<String> {
    fs::read_link(path)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// `/proc/<pid>/environ` as `NAME=value` entries (empty if unreadable).
pub(crate) fn read_environ(pid: u32) -> Vec<String> {
    std::fs::read(proc_file(pid, "environ"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|e| !e.is_empty())
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn read_exe(pid: u32) -> Option<String> {
    read_link(&proc_file(pid, "exe"))
}

/// Everything an exec event reports about a process, read from `/proc/<pid>`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcInfo {
    pub stat: Option<Stat>,
    pub exe: Option<String>,
    pub args: Vec<String>,
    pub cwd: Option<String>,
    pub status: Option<Status>,
}

/// `comm` is the name the program was started as (`sh` for /bin/sh, even
/// though the image is /usr/bin/dash), cut to 15 bytes; rules match on that
/// name. When the executable's basename extends `comm`, it is the same name
/// untruncated, so prefer it.
pub fn process_name(comm: Option<&str>, exe: Option<&str>) -> Option<String> {
    let base = exe.map(basename);
    match (comm, base) {
        (Some(c), Some(b)) if !c.is_empty() && b.starts_with(c) => Some(b.to_string()),
        (Some(c), _) if !c.is_empty() => Some(c.to_string()),
        (_, Some(b)) => Some(b.to_string()),
        _ => None,
    }
}

impl ProcInfo {
    /// The name the process runs under, as `ps` shows it (see [`process_name`]).
    pub fn name(&self) -> Option<String> {
        process_name(
            self.stat.as_ref().map(|s| s.comm.as_str()),
            self.exe.as_deref(),
        )
    }

    /// Whether the process was still there to be read (its image is known).
    pub fn complete(&self) -> bool {
        self.stat.is_some() && self.exe.is_some()
    }
}

/// Reads the whole of what an exec event needs. Fields of a process that has
/// already exited come back `None`/empty.
///
/// Read in the order things disappear when a process exits: its memory
/// (exe, cmdline) goes first, then its cwd; stat and status last until the
/// zombie is reaped.
pub(crate) fn read_process(pid: u32) -> ProcInfo {
    let exe = read_exe(pid);
    let args = fs::read(proc_file(pid, "cmdline"))
        .map(|b| parse_cmdline(&b))
        .unwrap_or_default();
    let cwd = read_link(&proc_file(pid, "cwd"));
    ProcInfo {
        stat: read_stat(pid),
        exe,
        args,
        cwd,
        status: read_status(pid),
    }
}

/// The pids (thread-group ids) currently in `/proc`.
pub(crate) fn list_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// `/proc/sys/kernel/random/boot_id` without dashes, shortened: it keeps
/// entity ids from colliding across reboots (pids and start ticks repeat).
pub(crate) fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().replace('-', "").chars().take(8).collect())
        .unwrap_or_else(|_| "0".to_string())
}

/// `(family, version)` from `/etc/os-release`: family is the first `ID_LIKE`
/// entry (ubuntu → debian, rocky → rhel), else `ID`.
pub(crate) fn os_release() -> (Option<String>, Option<String>) {
    let text = fs::read_to_string("/etc/os-release")
        .or_else(|_| fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    parse_os_release(&text)
}

pub(crate) fn parse_os_release(text: &str) -> (Option<String>, Option<String>) {
    let mut id = None;
    let mut id_like = None;
    let mut version = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
        if v.is_empty() {
            continue;
        }
        match k.trim() {
            "ID" => id = Some(v),
            "ID_LIKE" => id_like = v.split_ascii_whitespace().next().map(str::to_string),
            "VERSION_ID" => version = Some(v),
            _ => {}
        }
    }
    (id_like.or(id), version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_line(comm: &str) -> Vec<u8> {
        // 52 fields as in a 6.x kernel; starttime (field 22) is 987654.
        let mut s =
            format!("4242 ({comm}) S 17 4242 4242 0 -1 4194560 120 0 0 0 1 2 0 0 20 0 1 0 987654 ");
        s.push_str("10485760 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n");
        s.into_bytes()
    }

    #[test]
    fn stat_plain() {
        let s = parse_stat(&stat_line("sleep")).unwrap();
        assert_eq!(s.comm, "sleep");
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 17);
        assert_eq!(s.start_ticks, 987654);
    }

    #[test]
    fn stat_tricky_comm() {
        for comm in [
            "a b",
            "x) R 1 2 (",
            ")",
            "((",
            "evil) S 99 1 1 0 -1 0 0 0 0 0 0 0 0 0 0 0 0 0 5 (",
        ] {
            let s = parse_stat(&stat_line(comm)).unwrap_or_else(|| panic!("comm {comm:?}"));
            assert_eq!(s.comm, comm);
            assert_eq!(s.ppid, 17, "comm {comm:?}");
            assert_eq!(s.start_ticks, 987654, "comm {comm:?}");
        }
    }

    #[test]
    fn stat_non_utf8_comm() {
        let mut line = b"7 (a\xffb) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0".to_vec();
        line.push(b'\n');
        let s = parse_stat(&line).unwrap();
        assert_eq!(s.comm, "a\u{fffd}b");
        assert_eq!(s.start_ticks, 55);
    }

    #[test]
    fn stat_garbage_is_none() {
        for bad in [
            &b""[..],
            b"1 (x",
            b"1 x) S",
            b") 1 (x",
            b"1 (x) S 1 2 3",
            b"1 (x) S notanumber 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55",
            b"1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -55",
        ] {
            assert_eq!(parse_stat(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn status_fields() {
        let s = parse_status(b"Name:\tbash\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t10\nPid:\t10\nPPid:\t3\nUid:\t1000\t0\t1000\t1000\nGid:\t1\t1\t1\t1\n");
        assert_eq!(s.ppid, Some(3));
        assert_eq!(s.uid, Some(1000));
        assert_eq!(parse_status(b"garbage"), Status::default());
    }

    #[test]
    fn cmdline_split() {
        assert_eq!(
            parse_cmdline(b"sh\0-c\0echo hi > /tmp/x\0"),
            ["sh", "-c", "echo hi > /tmp/x"]
        );
        assert_eq!(parse_cmdline(b"a\0\0b\0"), ["a", "", "b"]);
        assert_eq!(parse_cmdline(b"setproctitle style"), ["setproctitle style"]);
        assert!(parse_cmdline(b"").is_empty());
    }

    #[test]
    fn os_release_family() {
        let ubuntu = "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"\n";
        assert_eq!(
            parse_os_release(ubuntu),
            (Some("debian".into()), Some("22.04".into()))
        );
        let rocky = "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n";
        assert_eq!(parse_os_release(rocky).0.as_deref(), Some("rhel"));
        assert_eq!(parse_os_release("ID=debian\n").0.as_deref(), Some("debian"));
        assert_eq!(parse_os_release(""), (None, None));
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        let info = read_process(me);
        assert!(info.complete());
        assert_eq!(
            info.stat.as_ref().unwrap().ppid,
            info.status.as_ref().unwrap().ppid.unwrap()
        );
        assert_eq!(
            info.exe.as_deref().map(std::path::Path::new),
            std::env::current_exe().ok().as_deref()
        );
        assert!(!info.args.is_empty());
        assert!(list_pids().contains(&me));
    }

    #[test]
    fn process_name_is_the_invoked_name_untruncated_when_possible() {
        assert_eq!(
            process_name(Some("sh"), Some("/usr/bin/dash")).as_deref(),
            Some("sh")
        );
        assert_eq!(
            process_name(Some("python3"), Some("/usr/bin/python3.11")).as_deref(),
            Some("python3.11")
        );
        assert_eq!(
            process_name(
                Some("package_script_"),
                Some("/System/Library/package_script_service")
            )
            .as_deref(),
            Some("package_script_service")
        );
        assert_eq!(
            process_name(None, Some("/bin/true")).as_deref(),
            Some("true")
        );
        assert_eq!(
            process_name(Some("kworker/0:1"), None).as_deref(),
            Some("kworker/0:1")
        );
        assert_eq!(process_name(None, None), None);
    }
}
