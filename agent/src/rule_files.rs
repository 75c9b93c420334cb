//! Gathers rule files: the shipped ones, then `*.rhai` and Sigma's `*.yml`
//! from a rules directory (which may override shipped rules by id).

use std::path::Path;

use std::path::PathBuf;

use dsl::rules::{load_rules, LoadOutcome, Origin, RuleFile};
use dsl::shipped::shipped_rule_files;

/// A rules directory or file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {what} {}: {source}", path.display())]
pub struct RuleFilesError {
    what: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

impl RuleFilesError {
    fn reading(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RuleFilesError {
        let path = path.to_path_buf();
        move |source| RuleFilesError { what, path, source }
    }
}

/// Shipped rules plus the `*.rhai` files of `dir` (sorted by name, so load
/// order and therefore error order are stable).
pub fn collect(dir: Option<&Path>, include_shipped: bool) -> Result<Vec<RuleFile>, RuleFilesError> {
    let mut files = if include_shipped {
        shipped_rule_files()
    } else {
        Vec::new()
    };
    if let Some(dir) = dir {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(RuleFilesError::reading("rules directory", dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                // rhai rules and modules, Sigma rules and Sigma's field table.
                p.extension()
                    .is_some_and(|x| x == "rhai" || x == "yml" || x == "yaml")
            })
            .collect();
        paths.sort();
        for p in paths {
            let text =
                std::fs::read_to_string(&p).map_err(RuleFilesError::reading("rule file", &p))?;
            files.push(RuleFile {
                path: p.display().to_string(),
                text,
                origin: Origin::User,
            });
        }
    }
    Ok(files)
}

/// Loads rules; errors are returned for the caller to report.
pub fn load(dir: Option<&Path>, include_shipped: bool) -> Result<LoadOutcome, RuleFilesError> {
    Ok(load_rules(&collect(dir, include_shipped)?))
}
