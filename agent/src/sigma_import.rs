//! `vigil rules import` for Sigma: each rule becomes an editable rhai rule
//! file holding the EQL query vigil runs for it (the same query the Sigma
//! file loads as), with its id, title, level, MITRE ids and tags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dsl::sigma::{self, taxonomy::Taxonomy, SigmaRule};

use crate::elastic_import::{rule_file, Imported, RuleText};

/// The Sigma rule files under `paths` (files, or folders searched), and
/// the field table of the first `sigma-taxonomy.yml` among them.
pub fn sigma_files(paths: &[PathBuf]) -> std::io::Result<(Vec<PathBuf>, Option<PathBuf>)> {
    fn walk(
        p: &Path,
        rules: &mut Vec<PathBuf>,
        table: &mut Option<PathBuf>,
    ) -> std::io::Result<()> {
        if p.is_dir() {
            for entry in std::fs::read_dir(p)? {
                walk(&entry?.path(), rules, table)?;
            }
        } else if p
            .file_name()
            .is_some_and(|n| n == sigma::taxonomy::FILE_NAME)
        {
            table.get_or_insert_with(|| p.to_path_buf());
        } else if sigma::is_sigma_path(&p.display().to_string()) {
            rules.push(p.to_path_buf());
        }
        Ok(())
    }
    let (mut rules, mut table) = (Vec::new(), None);
    for p in paths {
        walk(p, &mut rules, &mut table)?;
    }
    rules.sort();
    Ok((rules, table))
}

/// Imports every file of one set: correlations find the rules they name
/// among the others.
pub fn import_all(files: &[(String, String)], taxonomy: &Taxonomy) -> Vec<(String, Imported)> {
    let translated: Vec<(String, Result<SigmaRule, sigma::SigmaError>)> = files
        .iter()
        .map(|(path, text)| {
            (
                path.clone(),
                sigma::translate(text, taxonomy).map(|t| t.rule),
            )
        })
        .collect();
    let queries: BTreeMap<String, (String, Option<String>)> = translated
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .filter(|r| r.correlation.is_none())
        .flat_map(|r| {
            [Some(r.id.clone()), r.name.clone()]
                .into_iter()
                .flatten()
                .map(|k| (k, (r.query.clone(), r.category.clone())))
        })
        .collect();
    let mut out = Vec::new();
    for (path, r) in translated {
        let mut r = match r {
            Err(e) => {
                out.push((path, failed(&e)));
                continue;
            }
            Ok(r) => r,
        };
        let queries = match &r.correlation {
            None => Ok(vec![r.query.clone()]),
            Some(c) => sigma::correlation_query(c, &|n| queries.get(n).cloned(), taxonomy),
        };
        let queries = match queries {
            Ok(q) => q,
            Err(e) => {
                out.push((path, failed(&e)));
                continue;
            }
        };
        // A `temporal` correlation: one rule per order of its rules.
        let id = r.id.clone();
        for (n, q) in queries.into_iter().enumerate() {
            // What loads must compile: the same check as loading.
            if let Err(e) = dsl::query::compile(&q) {
                out.push((
                    path.clone(),
                    Imported::Failed {
                        line: r.at.line,
                        column: r.at.column,
                        message: format!("{} (in the EQL it becomes)", e.message),
                    },
                ));
                break;
            }
            r.id = if n == 0 {
                id.clone()
            } else {
                format!("{id}/order-{}", n + 1)
            };
            r.query = q;
            out.push((
                path.clone(),
                Imported::Rule {
                    id: r.id.clone(),
                    text: rhai_text(&path, &r),
                },
            ));
        }
    }
    out
}

fn failed(e: &sigma::SigmaError) -> Imported {
    Imported::Failed {
        line: e.at.line,
        column: e.at.column,
        message: e.message.clone(),
    }
}

fn rhai_text(source: &str, r: &SigmaRule) -> String {
    rule_file(&RuleText {
        header: format!(
            "// Imported by `vigil rules import` from the Sigma rule {source}\n\
             // (author: {}; keep the author and the rule's licence when you share it).\n",
            r.author.as_deref().unwrap_or("unknown")
        ),
        id: &r.id,
        name: if r.title.is_empty() { &r.id } else { &r.title },
        description: r.description.trim(),
        severity: r.severity,
        risk: dsl::alert::Severity::parse(r.severity).map_or(47, |s| i64::from(s.default_risk())),
        mitre: &r.mitre,
        tags: &r.tags,
        query: &r.query,
    })
}
