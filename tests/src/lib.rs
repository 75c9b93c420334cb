//! Helpers for the end-to-end tests in `tests/tests/`: they run the built
//! `vigil` binary (built by `cargo test --workspace`, or `cargo build -p vigil`).

pub mod receivers;

/// The ids of the rules vigil ships (dsl/rules/), each of which the
/// end-to-end tests expect to see fire.
pub const SHIPPED_RULE_IDS: [&str; 6] = [
    "macos-installer-child-network",
    "macos-installer-network-legacy",
    "an0938-installer-postinstall-unusual-child",
    "an0994-browser-spawns-shell",
    "an0994-download-executed",
    "an1316-content-app-write-spawn-egress",
];

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `vigil` binary of this workspace's target directory.
pub fn vigil_bin() -> PathBuf {
    if let Ok(p) = std::env::var("VIGIL_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let bin = target.join(profile).join("vigil");
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build -p vigil` (or `cargo test --workspace`) first, or set VIGIL_BIN",
        bin.display()
    );
    bin
}

pub fn vigil() -> Command {
    let mut c = Command::new(vigil_bin());
    c.env("VIGIL_LOG", "warn");
    c
}

/// The repository root (for fixtures).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parses NDJSON output into JSON values.
pub fn ndjson(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
