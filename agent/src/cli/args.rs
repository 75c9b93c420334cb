//! Command-line interface definition.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "vigil",
    version,
    about = "Low-footprint endpoint agent: collect, spool, correlate, hunt."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent: sources -> pipeline -> spool + rules -> alerts.
    Run(RunArgs),
    /// Show the running agent's counters (from its state directory).
    Status(StatusArgs),
    /// What happened around an alert or a process: its process tree,
    /// children, files written, connections and the events around it.
    Context(ContextArgs),
    /// Run events from NDJSON files through the rules; print alerts as NDJSON.
    Replay(ReplayArgs),
    /// Search the spooled history with a query or a rule.
    Hunt(HuntArgs),
    /// Ask every agent of the fleet over NATS: hunts, context, status.
    Fleet(FleetArgs),
    /// Check, test and list rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Inspect a spool file.
    #[command(subcommand)]
    Spool(SpoolCommand),
    /// Print seeded, realistic synthetic events as ECS NDJSON.
    Synthetic(SyntheticArgs),
}

#[derive(Args, Debug)]
pub struct SyntheticArgs {
    /// How many events in all (planted chains and near misses are part of them).
    #[arg(long, default_value_t = 10_000)]
    pub events: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// `host.id` of the events (default: a fixed UUID).
    #[arg(long)]
    pub host_id: Option<String>,
    /// Plant attack chains (and near misses) every N events; 0 = never.
    #[arg(long, default_value_t = 0)]
    pub plant_every: u64,
    /// Which chains: the installer seed chain, or one for every shipped rule.
    #[arg(long, value_enum, default_value_t = crate::sources::synthetic::Plant::Installer)]
    pub plant: crate::sources::synthetic::Plant,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// NDJSON files (`-` for stdin), in the format given by --format.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Input format: ECS documents, or Apple eslogger output.
    #[arg(long, value_enum, default_value_t = ReplayFormat::Ecs)]
    pub format: ReplayFormat,
    /// host.id for eslogger input (eslogger does not record the host);
    /// default: this machine's id.
    #[arg(long)]
    pub host_id: Option<String>,
    /// Directory of extra `*.rhai` rule files (may override shipped rules by id).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Use only the rules from --rules, not the shipped ones.
    #[arg(long)]
    pub no_shipped_rules: bool,
    /// Also write the events into this spool file.
    #[arg(long)]
    pub spool: Option<PathBuf>,
    /// Spool size for a new spool, in MiB.
    #[arg(long, default_value_t = 256)]
    pub spool_size_mb: u64,
    /// Sleep between events to reproduce their recorded pace.
    #[arg(long)]
    pub pace: bool,
}

/// What `vigil replay` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayFormat {
    /// ECS NDJSON (one ECS document per line).
    Ecs,
    /// `eslogger` NDJSON (one Endpoint Security message per line).
    Eslogger,
}

#[derive(Args, Debug)]
pub struct HuntArgs {
    /// The query (same language as rules), e.g. `process where process.name : "curl"`.
    #[arg(required_unless_present = "rule")]
    pub query: Option<String>,
    /// Hunt with a rule instead: a shipped rule id or a `.rhai` file.
    #[arg(long, conflicts_with = "query")]
    pub rule: Option<String>,
    /// The spool file to search.
    #[arg(long, default_value = crate::cli::DEFAULT_SPOOL)]
    pub spool: PathBuf,
    /// Start of the window: a duration back from now (`2h`) or RFC 3339.
    #[arg(long)]
    pub since: Option<String>,
    /// End of the window: a duration back from now or RFC 3339.
    #[arg(long)]
    pub until: Option<String>,
    /// Stop after this many results.
    #[arg(long)]
    pub limit: Option<u64>,
    /// NDJSON output (the default when stdout is not a terminal).
    #[arg(long, conflicts_with_all = ["table", "count"])]
    pub json: bool,
    /// An aligned table of `--fields`.
    #[arg(long, conflicts_with = "count")]
    pub table: bool,
    /// Print only the number of matches.
    #[arg(long)]
    pub count: bool,
    /// Count matches per value of this field, most frequent first.
    #[arg(long)]
    pub count_by: Option<String>,
    /// Columns for --table, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "@timestamp,host.id,event.action,process.pid,process.name,process.args"
    )]
    pub fields: Vec<String>,
    /// Worker threads for decompression and filtering (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Load and compile every rule; report every error (exit 1 on any).
    Check {
        /// Rules directory (shipped rules are checked too).
        dir: Option<PathBuf>,
        /// Warnings are errors: fields and values vigil's events never
        /// carry (a typo shows up as one) fail the check.
        #[arg(long)]
        strict: bool,
    },
    /// Turn Elastic's rule TOML files (elastic/detection-rules,
    /// elastic/protections-artifacts) into vigil rule files, queries verbatim.
    Import {
        /// TOML files or folders (searched for `*.toml`).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Where the rule files go (one `<rule id>.rhai` each).
        #[arg(long)]
        out: PathBuf,
    },
    /// Run every fixture case: `<dir>/fixtures/<rule-id>/<case>/{events,expected}.ndjson`.
    Test {
        /// Rules directory with a `fixtures/` folder (default: the shipped fixtures, if present).
        dir: Option<PathBuf>,
    },
    /// List the loaded rules.
    List {
        dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Make the running agent load its rules again (a set with errors is
    /// rejected and the running rules stay).
    Reload {
        /// The agent's state directory (where vigil.sock is).
        #[arg(long, default_value = "/var/lib/vigil")]
        state_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum SpoolCommand {
    /// Capacity, usage, time span, events, compression, damage.
    Info {
        path: PathBuf,
        #[arg(long)]
        json: bool,
        /// Read and decode every block and record (the default looks at
        /// block headers only); exit 1 on any damage.
        #[arg(long)]
        verify: bool,
    },
    /// Print the stored events.
    Dump {
        path: PathBuf,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// ECS NDJSON (default: one readable line per event).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Configuration file (TOML). Missing settings take their defaults.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Override `source.kind`.
    #[arg(long, value_enum)]
    pub source: Option<crate::config::SourceKind>,
    /// Override `spool.path`.
    #[arg(long)]
    pub spool: Option<PathBuf>,
    /// Override `spool.size_mb` (for a new spool).
    #[arg(long)]
    pub spool_size_mb: Option<u64>,
    /// Override `rules.dir`.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Override `state_dir` (status.json; alerts.ndjson unless outputs.file is set).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Override `outputs.file`.
    #[arg(long)]
    pub alerts_file: Option<PathBuf>,
    /// Replay these ECS NDJSON files (implies --source replay).
    #[arg(long)]
    pub replay: Vec<PathBuf>,
    /// Stop after this many synthetic events.
    #[arg(long)]
    pub synthetic_events: Option<u64>,
    /// Override `source.synthetic_rate` (events/s, 0 = flat out).
    #[arg(long)]
    pub synthetic_rate: Option<u64>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Keep running (control socket, sinks) after a replay or bounded
    /// synthetic source has ended, until SIGINT/SIGTERM.
    #[arg(long)]
    pub keep_running: bool,
    /// Print alerts as NDJSON even on a terminal (pipes always get NDJSON;
    /// a terminal gets one readable line per alert).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ContextArgs {
    /// An alert id or a process entity id.
    #[arg(required_unless_present = "host")]
    pub id: Option<String>,
    /// How far around the alert (or the process's lifetime) to look.
    #[arg(long, default_value = "5m")]
    pub window: String,
    /// Instead of an id: the events of this host between --since and --until.
    #[arg(long, conflicts_with = "id", requires_all = ["since", "until"])]
    pub host: Option<String>,
    /// With --host: start (a duration back from now, or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// With --host: end.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many events (those nearest the alert or process start).
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// The agent's answer as JSON.
    #[arg(long)]
    pub json: bool,
    /// The agent's state directory (where vigil.sock is).
    #[arg(long, default_value = "/var/lib/vigil")]
    pub state_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The agent's state directory.
    #[arg(long, default_value = "/var/lib/vigil")]
    pub state_dir: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct FleetArgs {
    #[command(subcommand)]
    pub command: FleetCommand,
    /// Take `[nats]` and `[fleet]` from this agent configuration.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// NATS server URL (repeatable); overrides the configuration's.
    #[arg(long = "url", global = true)]
    pub urls: Vec<String>,
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Environment variable holding the password.
    #[arg(long, global = true)]
    pub password_env: Option<String>,
    /// A NATS `.creds` file.
    #[arg(long, global = true)]
    pub creds: Option<PathBuf>,
    /// A file holding an nkey seed.
    #[arg(long, global = true)]
    pub nkey_seed_file: Option<PathBuf>,
    /// CA certificates (PEM) for the server's TLS certificate.
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// How long to wait for answers.
    #[arg(long, global = true, default_value = "10s")]
    pub timeout: String,
    /// Print answers as NDJSON (default: a table on a terminal).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Hunt every host's spool; results carry the answering host.
    Hunt {
        /// The query (same language as rules).
        query: String,
        /// Start: a duration back from now (1h) or RFC 3339.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// At most this many results per host.
        #[arg(long)]
        limit: Option<u64>,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Context of an alert or process entity id from the host that has it.
    Context {
        id: String,
        /// The host to ask (default: every host; those that know the id answer).
        #[arg(long)]
        host: Option<String>,
        #[arg(long, default_value = "5m")]
        window: String,
        #[arg(long, default_value_t = 200)]
        limit: usize,
    },
    /// Counters of every agent.
    Status {
        #[arg(long)]
        host: Option<String>,
    },
    /// The hosts registered in the fleet and when each was last seen.
    Hosts,
    /// The latest alerts in the fleet's JetStream stream.
    Alerts {
        #[arg(long, default_value = "VIGIL_ALERTS")]
        stream: String,
        /// How many of the newest alerts.
        #[arg(long, default_value_t = 1000)]
        last: u64,
    },
}
