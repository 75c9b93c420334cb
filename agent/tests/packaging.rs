//! Checks the files in `packaging/`: every macOS property list (LaunchDaemon,
//! Info.plist, entitlements, configuration profile) parses and has the keys
//! macOS and MDM need; the install scripts parse and agree with the plists;
//! the systemd unit has its hardening keys (and passes `systemd-analyze
//! verify` where that exists); the Debian metadata points at real files.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use plist::{Dictionary, Value};

const LABEL: &str = "com.vigil.agent";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn macos() -> PathBuf {
    repo().join("packaging/macos")
}

fn linux() -> PathBuf {
    repo().join("packaging/linux")
}

fn read_dict(path: &Path) -> Dictionary {
    let v = Value::from_file(path)
        .unwrap_or_else(|e| panic!("{}: not a property list: {e}", path.display()));
    v.into_dictionary()
        .unwrap_or_else(|| panic!("{}: top level is not a dictionary", path.display()))
}

fn string<'a>(d: &'a Dictionary, key: &str, what: &str) -> &'a str {
    d.get(key)
        .and_then(Value::as_string)
        .unwrap_or_else(|| panic!("{what}: {key} missing or not a string"))
}

fn boolean(d: &Dictionary, key: &str, what: &str) -> bool {
    d.get(key)
        .and_then(Value::as_boolean)
        .unwrap_or_else(|| panic!("{what}: {key} missing or not a boolean"))
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Every property list under packaging/macos, so a new one is checked too.
#[test]
fn every_macos_property_list_parses() {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(macos()).expect("packaging/macos") {
        let path = entry.expect("dir entry").path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "plist" | "mobileconfig" | "entitlements") {
            read_dict(&path);
            found.push(path.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
    }
    found.sort();
    assert_eq!(
        found.into_iter().flatten().collect::<Vec<_>>(),
        [
            "Info.plist",
            "com.vigil.agent.plist",
            "vigil-pppc.mobileconfig",
            "vigil.entitlements"
        ]
    );
}

#[test]
fn launch_daemon_runs_the_bundled_binary_as_root_and_stays_up() {
    let path = macos().join(format!("{LABEL}.plist"));
    let d = read_dict(&path);
    let what = "LaunchDaemon";
    assert_eq!(
        string(&d, "Label", what),
        LABEL,
        "file name and Label must agree"
    );
    let args: Vec<&str> = d
        .get("ProgramArguments")
        .and_then(Value::as_array)
        .expect("ProgramArguments array")
        .iter()
        .map(|v| v.as_string().expect("ProgramArguments are strings"))
        .collect();
    assert!(args[0].starts_with('/'), "absolute program path: {args:?}");
    assert!(
        args[0].ends_with("Vigil.app/Contents/MacOS/vigil"),
        "the ES entitlement needs the binary inside the app bundle: {args:?}"
    );
    assert_eq!(&args[1..3], ["run", "--config"]);
    assert!(boolean(&d, "RunAtLoad", what));
    assert!(boolean(&d, "KeepAlive", what));
    assert_eq!(string(&d, "UserName", what), "root");
    assert!(d.contains_key("StandardErrorPath"));
    // The bundle's executable is what launchd starts.
    let info = read_dict(&macos().join("Info.plist"));
    let exe = string(&info, "CFBundleExecutable", "Info.plist");
    assert!(args[0].ends_with(&format!("/MacOS/{exe}")));
    assert_eq!(string(&info, "CFBundleIdentifier", "Info.plist"), LABEL);
    assert_eq!(string(&info, "CFBundlePackageType", "Info.plist"), "APPL");
    assert!(boolean(&info, "LSUIElement", "Info.plist"));
}

#[test]
fn entitlements_grant_the_endpoint_security_client() {
    let d = read_dict(&macos().join("vigil.entitlements"));
    assert!(boolean(
        &d,
        "com.apple.developer.endpoint-security.client",
        "entitlements"
    ));
    assert_eq!(
        d.len(),
        1,
        "no entitlement beyond what the agent needs: {d:?}"
    );
}

#[test]
fn profile_grants_full_disk_access_and_approves_the_daemon() {
    let d = read_dict(&macos().join("vigil-pppc.mobileconfig"));
    let what = "profile";
    assert_eq!(string(&d, "PayloadType", what), "Configuration");
    assert_eq!(string(&d, "PayloadScope", what), "System");
    assert!(!string(&d, "PayloadIdentifier", what).is_empty());
    assert!(!string(&d, "PayloadDisplayName", what).is_empty());
    assert!(d
        .get("PayloadVersion")
        .and_then(Value::as_signed_integer)
        .is_some());
    let mut uuids = HashSet::new();
    assert!(uuids.insert(string(&d, "PayloadUUID", what).to_string()));
    let payloads = d
        .get("PayloadContent")
        .and_then(Value::as_array)
        .expect("PayloadContent array");
    let mut by_type = BTreeMap::new();
    for p in payloads {
        let p = p.as_dictionary().expect("payload is a dictionary");
        let ty = string(p, "PayloadType", "payload").to_string();
        for key in ["PayloadIdentifier", "PayloadUUID", "PayloadDisplayName"] {
            assert!(!string(p, key, &ty).is_empty());
        }
        let uuid = string(p, "PayloadUUID", &ty);
        assert!(is_uuid(uuid), "{ty}: PayloadUUID {uuid}");
        assert!(
            uuids.insert(uuid.to_string()),
            "duplicate PayloadUUID {uuid}"
        );
        assert!(p
            .get("PayloadVersion")
            .and_then(Value::as_signed_integer)
            .is_some());
        by_type.insert(ty, p);
    }
    assert!(uuids.iter().all(|u| is_uuid(u)));

    let tcc = by_type
        .get("com.apple.TCC.configuration-profile-policy")
        .expect("PPPC payload");
    let fda = tcc
        .get("Services")
        .and_then(Value::as_dictionary)
        .and_then(|s| s.get("SystemPolicyAllFiles"))
        .and_then(Value::as_array)
        .expect("Services.SystemPolicyAllFiles");
    let entry = fda[0].as_dictionary().expect("FDA entry");
    assert_eq!(string(entry, "Identifier", "FDA"), LABEL);
    assert_eq!(string(entry, "IdentifierType", "FDA"), "bundleID");
    assert_eq!(string(entry, "Authorization", "FDA"), "Allow");
    let req = string(entry, "CodeRequirement", "FDA");
    assert!(req.contains(&format!("identifier \"{LABEL}\"")), "{req}");
    assert!(req.contains("anchor apple generic"), "{req}");

    let sm = by_type
        .get("com.apple.servicemanagement")
        .expect("managed login items payload");
    let rules = sm.get("Rules").and_then(Value::as_array).expect("Rules");
    assert!(rules.iter().any(|r| {
        r.as_dictionary().is_some_and(|r| {
            r.get("RuleType").and_then(Value::as_string) == Some("Label")
                && r.get("RuleValue").and_then(Value::as_string) == Some(LABEL)
        })
    }));
}

fn shell_syntax_ok(shell: &str, path: &Path) {
    let out = Command::new(shell)
        .arg("-n")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running {shell}: {e}"));
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[test]
fn pkg_scripts_load_and_unload_the_daemon() {
    let scripts = macos().join("scripts");
    let pre = scripts.join("preinstall");
    let post = scripts.join("postinstall");
    for p in [&pre, &post] {
        assert!(
            is_executable(p),
            "{} must be executable for pkgbuild",
            p.display()
        );
        shell_syntax_ok("sh", p);
    }
    let pre_text = std::fs::read_to_string(&pre).expect("preinstall");
    assert!(pre_text.contains("launchctl bootout \"system/$LABEL\""));
    assert!(pre_text.contains(&format!("LABEL={LABEL}")));
    let post_text = std::fs::read_to_string(&post).expect("postinstall");
    assert!(post_text.contains("launchctl bootstrap system \"$PLIST\""));
    assert!(post_text.contains("PLIST=/Library/LaunchDaemons/$LABEL.plist"));
    // The config path the daemon is started with is the one postinstall makes.
    let d = read_dict(&macos().join(format!("{LABEL}.plist")));
    let args = d
        .get("ProgramArguments")
        .and_then(Value::as_array)
        .expect("args");
    let config = args[3].as_string().expect("config path");
    assert_eq!(config, "/Library/Application Support/vigil/vigil.toml");
    assert!(post_text.contains("SUPPORT=\"/Library/Application Support/vigil\""));

    let build = macos().join("build-pkg.sh");
    assert!(is_executable(&build));
    shell_syntax_ok("bash", &build);
    let build_text = std::fs::read_to_string(&build).expect("build-pkg.sh");
    for tool in [
        "pkgbuild",
        "productbuild",
        "codesign",
        "notarytool",
        "stapler",
    ] {
        assert!(
            build_text.contains(tool),
            "build-pkg.sh does not use {tool}"
        );
    }
    shell_syntax_ok("sh", &macos().join("uninstall.sh"));
}

#[test]
fn shipped_configs_load_and_validate() {
    for (path, kind) in [
        (
            macos().join("vigil.toml"),
            vigil::config::SourceKind::Eslogger,
        ),
        (linux().join("vigil.toml"), vigil::config::SourceKind::Linux),
    ] {
        let text = std::fs::read_to_string(&path).expect("config");
        let cfg = vigil::config::Config::from_toml(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(cfg.source.kind, kind, "{}", path.display());
        let errs = cfg.validate();
        assert!(errs.is_empty(), "{}: {errs:?}", path.display());
    }
}

/// `[Section] Key=Value` lines; repeated keys keep every value.
fn unit_keys(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut section = String::new();
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not Key=Value: {line}"));
        out.entry((section.clone(), k.trim().to_string()))
            .or_default()
            .push(v.trim().to_string());
    }
    out
}

#[test]
fn systemd_unit_is_hardened_but_keeps_the_host_mounts() {
    let path = linux().join("vigil.service");
    let text = std::fs::read_to_string(&path).expect("vigil.service");
    let keys = unit_keys(&text);
    let get = |s: &str, k: &str| -> &str {
        keys.get(&(s.to_string(), k.to_string()))
            .and_then(|v| v.last())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("[{s}] {k} missing"))
    };
    assert!(get("Service", "ExecStart")
        .starts_with("/usr/bin/vigil run --config /etc/vigil/vigil.toml"));
    assert_eq!(get("Service", "Type"), "simple");
    assert_eq!(get("Service", "Restart"), "on-failure");
    assert_eq!(get("Service", "StateDirectory"), "vigil");
    assert_eq!(get("Service", "NoNewPrivileges"), "yes");
    assert_eq!(get("Service", "UMask"), "0077");
    assert_eq!(get("Install", "WantedBy"), "multi-user.target");
    let caps: HashSet<&str> = get("Service", "CapabilityBoundingSet")
        .split_whitespace()
        .collect();
    assert_eq!(
        caps,
        HashSet::from([
            "CAP_SYS_ADMIN",
            "CAP_NET_ADMIN",
            "CAP_SYS_PTRACE",
            "CAP_DAC_READ_SEARCH"
        ])
    );
    let filters = keys
        .get(&("Service".into(), "SystemCallFilter".into()))
        .expect("SystemCallFilter");
    assert!(filters[0].contains("@system-service") && filters[0].contains("fanotify_init"));
    for k in [
        "RestrictAddressFamilies",
        "RestrictNamespaces",
        "MemoryDenyWriteExecute",
        "SystemCallArchitectures",
        "LockPersonality",
        "MemoryMax",
    ] {
        get("Service", k);
    }
    // A private mount namespace would blind fanotify's mount marks.
    for k in [
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ReadWritePaths",
        "ProtectKernelModules",
        "ProtectControlGroups",
    ] {
        assert!(
            !keys.contains_key(&("Service".to_string(), k.to_string())),
            "{k} gives the service its own mount namespace"
        );
    }
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: skipped");
        return;
    };
    assert!(probe.status.success());
    // verify wants ExecStart to exist: point it at the binary just built.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(linux().join("vigil.service")).expect("unit");
    let text = text.replace("/usr/bin/vigil", env!("CARGO_BIN_EXE_vigil"));
    let unit = dir.path().join("vigil.service");
    std::fs::write(&unit, text).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("vigil.service"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}

#[test]
fn debian_metadata_points_at_real_files() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(manifest.join("Cargo.toml")).expect("agent/Cargo.toml");
    let doc: toml::Value = toml::from_str(&text).expect("Cargo.toml parses");
    let deb = &doc["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().expect("assets");
    for a in assets {
        let src = a[0].as_str().expect("asset source");
        if src.starts_with("target/") {
            continue; // built by cargo deb
        }
        assert!(manifest.join(src).is_file(), "asset {src} missing");
    }
    assert!(assets.iter().any(|a| a[1].as_str() == Some("usr/bin/")));
    let units = deb["systemd-units"]["unit-scripts"]
        .as_str()
        .expect("unit-scripts");
    assert!(manifest.join(units).join("vigil.service").is_file());
    let scripts = manifest.join(
        deb["maintainer-scripts"]
            .as_str()
            .expect("maintainer-scripts"),
    );
    for entry in std::fs::read_dir(&scripts).expect("maintainer scripts dir") {
        let p = entry.expect("entry").path();
        let body = std::fs::read_to_string(&p).expect("script");
        assert!(
            body.contains("#DEBHELPER#"),
            "{} lacks #DEBHELPER#",
            p.display()
        );
        assert!(is_executable(&p), "{} not executable", p.display());
        shell_syntax_ok("sh", &p);
    }
    assert!(deb["conf-files"].as_array().is_some_and(|c| c
        .iter()
        .any(|f| f.as_str() == Some("/etc/vigil/vigil.toml"))));
    shell_syntax_ok("bash", &linux().join("build-deb.sh"));
}
