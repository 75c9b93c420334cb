//! `vigil rules check|test|list`.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use dsl::ecs::EcsReader;
use dsl::fixture::{run_fixture, ExpectedAlert};

use crate::cli::RulesCommand;
use crate::rule_files;

pub fn run(cmd: RulesCommand) -> Result<ExitCode> {
    match cmd {
        RulesCommand::Check { dir, strict } => check(dir.as_deref(), strict),
        RulesCommand::Test { dir } => test(dir.as_deref()),
        RulesCommand::Import { paths, out } => import(&paths, &out),
        RulesCommand::List { dir, json } => list(dir.as_deref(), json),
        // Talks to the running agent: see cli/context.rs.
        RulesCommand::Reload { state_dir } => super::context::rules_reload(&state_dir),
    }
}

/// Errors always fail the check; warnings (what vigil's events never
/// carry) only with `strict`.
fn check(dir: Option<&Path>, strict: bool) -> Result<ExitCode> {
    let out = rule_files::load(dir, true)?;
    for e in &out.errors {
        eprintln!("{e}");
    }
    let label = if strict { "error" } else { "warning" };
    for w in &out.warnings {
        eprintln!("{label}: {w}");
    }
    eprintln!(
        "{} rules loaded, {} errors, {} warnings",
        out.rules.len(),
        out.errors.len(),
        out.warnings.len()
    );
    let failed = !out.errors.is_empty() || (strict && !out.warnings.is_empty());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Each TOML: imported, skipped (not EQL) or failed (file:line:column).
fn import(paths: &[PathBuf], out_dir: &Path) -> Result<ExitCode> {
    use crate::elastic_import::{import, toml_files, Imported};
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let (mut imported, mut skipped, mut failed) = (0, 0, 0);
    let mut results = Vec::new();
    for path in toml_files(paths)? {
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let source = path.display().to_string();
        let result = import(&source, &text);
        results.push((source, result));
    }
    // Sigma rules, as one set (correlations name the others).
    let (sigma_paths, table) = crate::sigma_import::sigma_files(paths)?;
    let mut taxonomy = dsl::sigma::taxonomy::Taxonomy::shipped();
    if let Some(table) = table {
        let text =
            fs::read_to_string(&table).with_context(|| format!("reading {}", table.display()))?;
        if let Err((at, message)) = taxonomy.extend_from(&text) {
            anyhow::bail!("{}:{}:{}: {message}", table.display(), at.line, at.column);
        }
    }
    let mut sigma = Vec::new();
    for p in sigma_paths {
        let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        sigma.push((p.display().to_string(), text));
    }
    results.extend(crate::sigma_import::import_all(&sigma, &taxonomy));
    for (source, result) in results {
        let path = PathBuf::from(&source);
        match result {
            Imported::Rule { id, text } => {
                let name: String = id
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let target = out_dir.join(format!("{name}.rhai"));
                fs::write(&target, text)
                    .with_context(|| format!("writing {}", target.display()))?;
                println!("imported {} -> {}", path.display(), target.display());
                imported += 1;
            }
            Imported::Skipped(reason) => {
                println!("skipped {}: {reason}", path.display());
                skipped += 1;
            }
            Imported::Failed {
                line,
                column,
                message,
            } => {
                eprintln!("failed {}:{line}:{column}: {message}", path.display());
                failed += 1;
            }
        }
    }
    eprintln!("{imported} imported, {skipped} skipped, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn list(dir: Option<&Path>, json: bool) -> Result<ExitCode> {
    let out = rule_files::load(dir, true)?;
    for e in &out.errors {
        eprintln!("{e}");
    }
    for r in out.rules.rules() {
        if json {
            let doc = serde_json::json!({
                "id": r.meta.id, "name": r.meta.name, "severity": r.meta.severity,
                "risk_score": r.meta.risk_score, "mitre": r.meta.mitre, "tags": r.meta.tags,
                "file": r.file, "query": r.query_text.trim(),
            });
            println!("{doc}");
        } else {
            println!(
                "{:<45} {:<8} {:>3}  {}",
                r.meta.id,
                r.meta.severity.as_str(),
                r.meta.risk_score,
                r.meta.name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The shipped rules' source folder, when running from a checkout.
fn default_rules_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dsl/rules");
    dir.join("fixtures").is_dir().then_some(dir)
}

fn test(dir: Option<&Path>) -> Result<ExitCode> {
    let (fixtures_root, user_dir) = match dir {
        Some(d) => (d.join("fixtures"), Some(d.to_path_buf())),
        None => (
            default_rules_dir()
                .context(
                    "no rules directory given and the shipped fixtures are not on this machine",
                )?
                .join("fixtures"),
            None,
        ),
    };
    let out = rule_files::load(user_dir.as_deref(), true)?;
    for e in &out.errors {
        eprintln!("{e}");
    }
    let rules = Arc::new(out.rules);
    let (mut passed, mut failed) = (0, 0);
    let mut rule_dirs: Vec<PathBuf> = fs::read_dir(&fixtures_root)
        .with_context(|| format!("reading {}", fixtures_root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    rule_dirs.sort();
    for rule_dir in rule_dirs {
        let rule_id = rule_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !rules.rules().iter().any(|r| r.meta.id == rule_id) {
            println!("FAIL {rule_id}: fixtures exist but no rule has this id");
            failed += 1;
            continue;
        }
        let mut cases: Vec<PathBuf> = fs::read_dir(&rule_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        cases.sort();
        for case in cases {
            let name = format!(
                "{rule_id}/{}",
                case.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            );
            match run_case(&rules, &rule_id, &case) {
                Ok(r) if r.passed() => {
                    println!("ok   {name}");
                    passed += 1;
                }
                Ok(r) => {
                    println!("FAIL {name}\n{}", r.diff());
                    failed += 1;
                }
                Err(e) => {
                    println!("FAIL {name}: {e:#}");
                    failed += 1;
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && out.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_case(
    rules: &Arc<dsl::rules::RuleSet>,
    rule_id: &str,
    case: &Path,
) -> Result<dsl::fixture::FixtureResult> {
    let events_path = case.join("events.ndjson");
    let file = fs::File::open(&events_path)
        .with_context(|| format!("opening {}", events_path.display()))?;
    let events = EcsReader::new(BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| events_path.display().to_string())?;
    let expected_path = case.join("expected.ndjson");
    let expected = fs::read_to_string(&expected_path)
        .with_context(|| format!("reading {}", expected_path.display()))?
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<ExpectedAlert>(l)
                .with_context(|| format!("{}:{}", expected_path.display(), i + 1))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(run_fixture(rules, rule_id, &events, expected))
}
