//! `vigil hunt`: the rule language over the spooled history.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use dsl::ecs::to_ecs_json;
use dsl::query::fields::{self, FieldId};
use dsl::rules::{load_rules, Origin, RuleFile, RuleSet};
use dsl::time::format_rfc3339;
use dsl::Event;
use spool::SpoolReader;

use crate::cli::HuntArgs;
use crate::history::query::{run_query, Found, Hunt, HuntReport};
use crate::history::timearg::time_range;

enum Output {
    Json,
    Table(Vec<Column>),
    Count,
    CountBy(Column),
}

struct Column {
    name: String,
    field: Option<FieldId>,
}

impl Column {
    fn parse(name: &str) -> Result<Column> {
        let name = name.trim();
        // Any name: fields outside the schema print what replayed
        // documents carried, `-` elsewhere.
        let field = fields::resolve(name.trim_start_matches('?'));
        if field.is_none() {
            bail!("too many distinct field names to print `{name}`");
        }
        Ok(Column {
            name: name.to_string(),
            field,
        })
    }

    fn value(&self, e: &Event) -> String {
        match self.field {
            Some(f) if f.path() == "@timestamp" => format_rfc3339(e.timestamp_ns),
            Some(f) => f.get(e).to_text().unwrap_or_else(|| "-".into()),
            None => "-".into(),
        }
    }
}

/// One readable line for an event (used by `spool dump` too).
pub fn one_line(e: &Event) -> String {
    let args = if e.process.args.is_empty() {
        e.process.command_line.clone().unwrap_or_default()
    } else {
        e.process.args.join(" ").into()
    };
    let mut line = format!(
        "{} {} {} pid={} {}",
        format_rfc3339(e.timestamp_ns),
        e.event.category.as_str(),
        e.event.action.as_deref().unwrap_or("-"),
        e.process.pid.map_or("-".into(), |p| p.to_string()),
        e.process.name.as_deref().unwrap_or("-"),
    );
    if !args.is_empty() {
        line.push_str(&format!(" [{args}]"));
    }
    if let Some(f) = e.file.as_ref().and_then(|f| f.path.as_deref()) {
        line.push_str(&format!(" file={f}"));
    }
    if let Some(d) = &e.destination {
        if let Some(ip) = d.ip {
            line.push_str(&format!(" dst={ip}:{}", d.port.unwrap_or(0)));
        }
    }
    line
}

pub fn run(a: HuntArgs) -> Result<ExitCode> {
    let output = if let Some(f) = &a.count_by {
        Output::CountBy(Column::parse(f)?)
    } else if a.count {
        Output::Count
    } else if a.table || (!a.json && std::io::stdout().is_terminal()) {
        Output::Table(
            a.fields
                .iter()
                .map(|f| Column::parse(f))
                .collect::<Result<_>>()?,
        )
    } else {
        Output::Json
    };
    let range = time_range(a.since.as_deref(), a.until.as_deref())?;
    let reader = SpoolReader::open(&a.spool)
        .with_context(|| format!("opening spool {}", a.spool.display()))?;
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let limit = a.limit.unwrap_or(u64::MAX);

    let show_progress = !a.no_progress && std::io::stderr().is_terminal();
    let bar = show_progress.then(|| {
        let b = indicatif::ProgressBar::new(reader.blocks().len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} blocks  {msg}  [{elapsed}]",
            )
            .expect("static template is valid"),
        );
        b
    });
    let started = std::time::Instant::now();
    let mut progress = |done: usize, total: usize, events: u64| {
        if let Some(b) = &bar {
            b.set_length(total as u64);
            b.set_position(done as u64);
            let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-6);
            b.set_message(format!("{events} events, {:.1}M events/s", rate / 1e6));
        }
        ControlFlow::Continue(())
    };

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut sink = ResultSink::new(output, limit);

    let hunt = match (&a.query, &a.rule) {
        (Some(q), _) => Hunt::query(q)?,
        (None, Some(rule)) => Hunt::rules(rule_set_for(rule)?),
        (None, None) => bail!("give a query or --rule"),
    };
    let report = run_query(
        &reader,
        range,
        &hunt,
        threads,
        &mut |found| match found {
            Found::Event(e) => sink.event(&mut out, e),
            Found::Alert(alert) => sink.alert(&mut out, alert),
        },
        &mut progress,
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    sink.finish(&mut out)?;
    out.flush()?;
    report_damage(&report);
    Ok(if sink.found > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report_damage(r: &HuntReport) {
    if r.corrupt_blocks > 0 || r.overwritten_blocks > 0 || r.bad_records > 0 {
        eprintln!(
            "vigil: hunt skipped {} corrupt blocks, {} blocks overwritten during the scan, {} undecodable records",
            r.corrupt_blocks, r.overwritten_blocks, r.bad_records
        );
    }
}

fn rule_set_for(rule: &str) -> Result<Arc<RuleSet>> {
    let path = Path::new(rule);
    if path
        .extension()
        .is_some_and(|e| e == "rhai" || e == "yml" || e == "yaml")
    {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {rule}"))?;
        let mut files = dsl::shipped::shipped_rule_files();
        files.retain(|f| f.path.ends_with(".lib.rhai"));
        files.push(RuleFile {
            path: rule.to_string(),
            text,
            origin: Origin::User,
        });
        let out = load_rules(&files);
        if let Some(e) = out.errors.first() {
            bail!("{e}");
        }
        return Ok(Arc::new(out.rules));
    }
    let all = load_rules(&dsl::shipped::shipped_rule_files());
    let wanted = all
        .rules
        .rules()
        .iter()
        .find(|r| r.meta.id == rule)
        .map(|r| r.file.clone());
    let Some(file) = wanted else {
        bail!("no shipped rule has id {rule:?}; give a .rhai file instead");
    };
    // Load the rule's file (with its modules) and keep only that rule.
    let files: Vec<RuleFile> = dsl::shipped::shipped_rule_files()
        .into_iter()
        .filter(|f| f.path == file || f.path.ends_with(".lib.rhai"))
        .collect();
    let set = load_rules(&files).rules;
    if set.rules().iter().all(|r| r.meta.id != rule) {
        bail!("rule {rule:?} did not load");
    }
    Ok(Arc::new(set))
}

/// Formats results as they arrive.
struct ResultSink {
    output: Output,
    limit: u64,
    found: u64,
    counts: HashMap<String, u64>,
    table_rows: Vec<Vec<String>>,
}

impl ResultSink {
    fn new(output: Output, limit: u64) -> ResultSink {
        ResultSink {
            output,
            limit,
            found: 0,
            counts: HashMap::new(),
            table_rows: Vec::new(),
        }
    }

    fn event(&mut self, out: &mut dyn Write, e: &Event) -> ControlFlow<()> {
        if self.found >= self.limit {
            return ControlFlow::Break(());
        }
        self.found += 1;
        let ok = match &self.output {
            Output::Json => writeln!(out, "{}", to_ecs_json(e)).is_ok(),
            Output::Table(cols) => {
                let row = cols.iter().map(|c| c.value(e)).collect();
                self.table_rows.push(row);
                // Print in chunks so results stream on long hunts.
                if self.table_rows.len() >= 200 {
                    self.flush_table(out).is_ok()
                } else {
                    true
                }
            }
            Output::Count => true,
            Output::CountBy(col) => {
                *self.counts.entry(col.value(e)).or_default() += 1;
                true
            }
        };
        if !ok || self.found >= self.limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn alert(&mut self, out: &mut dyn Write, a: &dsl::alert::Alert) -> ControlFlow<()> {
        match &self.output {
            Output::Json | Output::Count => {
                if self.found >= self.limit {
                    return ControlFlow::Break(());
                }
                self.found += 1;
                if matches!(self.output, Output::Json)
                    && writeln!(out, "{}", serde_json::to_string(a).unwrap_or_default()).is_err()
                {
                    return ControlFlow::Break(());
                }
                if self.found >= self.limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
            // Tables and stacking show the events of each match.
            _ => {
                for e in &a.events {
                    self.event(out, e)?;
                }
                ControlFlow::Continue(())
            }
        }
    }

    fn flush_table(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        let Output::Table(cols) = &self.output else {
            return Ok(());
        };
        let mut widths: Vec<usize> = cols.iter().map(|c| c.name.len()).collect();
        for row in &self.table_rows {
            for (w, v) in widths.iter_mut().zip(row) {
                *w = (*w).max(v.chars().count().min(80));
            }
        }
        let header: Vec<String> = cols
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{:<w$}", c.name, w = w))
            .collect();
        writeln!(out, "{}", header.join("  ").trim_end())?;
        for row in self.table_rows.drain(..) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(v, w)| {
                    let v: String = if v.chars().count() > 80 {
                        v.chars().take(79).chain(['…']).collect()
                    } else {
                        v.clone()
                    };
                    format!("{v:<w$}", w = w)
                })
                .collect();
            writeln!(out, "{}", cells.join("  ").trim_end())?;
        }
        out.flush()
    }

    fn finish(&mut self, out: &mut dyn Write) -> Result<()> {
        match &self.output {
            Output::Table(_) => self.flush_table(out)?,
            Output::Count => writeln!(out, "{}", self.found)?,
            Output::CountBy(col) => {
                let mut rows: Vec<(&String, &u64)> = self.counts.iter().collect();
                rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                writeln!(out, "{:>10}  {}", "count", col.name)?;
                for (v, n) in rows {
                    writeln!(out, "{n:>10}  {v}")?;
                }
            }
            Output::Json => {}
        }
        Ok(())
    }
}
