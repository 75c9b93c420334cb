//! Rule files: rhai scripts that call `rule(#{ ... })`.
//!
//! Loading runs in phases: compile each script, run it once (sandboxed) to
//! collect its `rule` calls, then parse and compile each rule's query. Every
//! problem becomes a [`RuleError`] with file, line and column, and one bad
//! rule never keeps the others from loading. rhai runs again only when a
//! rule with an `on_match` hook matches.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use rhai::module_resolvers::StaticModuleResolver;
use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, Map, Position, AST};

use crate::alert::{alert_id, Alert, AlertRule, Severity};
use crate::correlate::Match;
use crate::event::{Category, Event};
use crate::query::{self, CompiledQuery};

/// Where a rule file came from: shipped rules may be overridden by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Shipped,
    User,
}

#[derive(Debug, Clone)]
pub struct RuleFile {
    /// Shown in errors; for shipped rules `shipped:<name>`.
    pub path: String,
    pub text: String,
    pub origin: Origin,
}

impl RuleFile {
    /// Files named `<name>.lib.rhai` are modules other rule files `import`.
    fn module_name(&self) -> Option<&str> {
        let base = self
            .path
            .rsplit(['/', '\\', ':'])
            .next()
            .unwrap_or(&self.path);
        base.strip_suffix(".lib.rhai")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub rule_id: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(id) = &self.rule_id {
            write!(f, "rule {id}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for RuleError {}

/// One loaded rule.
pub struct Rule {
    pub meta: AlertRule,
    pub query_text: String,
    pub query: CompiledQuery,
    pub file: String,
    pub origin: Origin,
    /// Context kinds the rule asks the agent to attach (`ancestry`, `window:60s`).
    pub context: Vec<String>,
    on_match: Option<(FnPtr, Arc<AST>)>,
    /// Times the hook ran over [`limits::HOOK_BUDGET`].
    hook_overruns: std::sync::atomic::AtomicU32,
}

/// The compiled rules, indexed by event category.
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    by_category: Vec<Vec<usize>>,
    engine: Arc<Engine>,
}

/// A `rule(...)` call seen while running a file.
struct PendingRule {
    map: Map,
    position: Position,
}

type Collector = Arc<Mutex<Vec<PendingRule>>>;

/// Limits that keep a rule script from hurting the agent.
pub mod limits {
    pub const MAX_OPERATIONS: u64 = 1_000_000;
    /// Wall time one `on_match` hook may take: the operation limit counts
    /// steps, and a few costly steps (searching a long string) can take
    /// seconds while the pipeline waits and the queue overflows.
    pub const HOOK_BUDGET: std::time::Duration = std::time::Duration::from_millis(50);
    /// Overruns after which a rule's hook is no longer run (its alerts go
    /// out as the rule raised them, saying so).
    pub const HOOK_OVERRUNS: u32 = 3;
    pub const MAX_CALL_LEVELS: usize = 32;
    pub const MAX_EXPR_DEPTH: usize = 64;
    pub const MAX_STRING: usize = 256 * 1024;
    pub const MAX_ARRAY: usize = 10_000;
    pub const MAX_MAP: usize = 10_000;
    /// Rules in one set: ten times Elastic's whole macOS content. A file
    /// that declares more in a loop would otherwise cost memory per rule
    /// and alerts per rule for every event.
    pub const MAX_RULES: usize = 5_000;
    /// Alerts one event may raise; more are counted, not raised.
    pub const MAX_ALERTS_PER_EVENT: usize = 100;
}

thread_local! {
    /// When the `on_match` hook running on this thread must stop.
    static HOOK_DEADLINE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// The sandboxed engine exactly as rule loading builds it, without modules.
pub fn sandboxed_engine() -> Engine {
    build_engine(StaticModuleResolver::new(), None)
}

/// The one constructor of the sandboxed rule engine, for production and tests.
/// No file, process or network access: `import` only reaches rule modules
/// handed to the loader, and `eval` is disabled.
fn build_engine(modules: StaticModuleResolver, collector: Option<Collector>) -> Engine {
    let mut engine = Engine::new();
    engine.set_max_operations(limits::MAX_OPERATIONS);
    engine.set_max_call_levels(limits::MAX_CALL_LEVELS);
    engine.set_max_expr_depths(limits::MAX_EXPR_DEPTH, limits::MAX_EXPR_DEPTH);
    engine.set_max_string_size(limits::MAX_STRING);
    engine.set_max_array_size(limits::MAX_ARRAY);
    engine.set_max_map_size(limits::MAX_MAP);
    engine.set_max_modules(64);
    engine.disable_symbol("eval");
    engine.set_module_resolver(modules);
    // A hook's wall-time budget, checked every 256 operations while a
    // deadline is set (only around `on_match` calls).
    engine.on_progress(|ops| {
        let over = ops % 256 == 0
            && HOOK_DEADLINE.with(|d| d.get().is_some_and(|t| std::time::Instant::now() > t));
        over.then(|| Dynamic::from("time budget"))
    });
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    let collector = collector.unwrap_or_default();
    engine.register_fn("rule", move |ctx: rhai::NativeCallContext, map: Map| {
        collector
            .lock()
            .expect("rule collector lock is never poisoned: pushes cannot panic")
            .push(PendingRule {
                map,
                position: ctx.call_position(),
            });
    });
    // `eql_list(["a", "b"])` renders `("a", "b")` for use inside a query.
    engine.register_fn(
        "eql_list",
        |items: Array| -> Result<String, Box<EvalAltResult>> {
            let mut quoted = Vec::with_capacity(items.len());
            for item in items {
                let text = item
                    .into_string()
                    .map_err(|t| format!("eql_list takes strings, found {t}"))?;
                quoted.push(serde_json::to_string(&text).expect("a string always serialises"));
            }
            Ok(format!("({})", quoted.join(", ")))
        },
    );
    // Helpers for on_match hooks, callable as methods on the alert map.
    engine.register_fn("context", |alert: &mut Map, kinds: Array| {
        let list = alert
            .entry("context".into())
            .or_insert_with(|| Dynamic::from_array(Array::new()));
        if let Some(mut arr) = list.write_lock::<Array>() {
            arr.extend(kinds);
        }
    });
    engine.register_fn("add_tag", |alert: &mut Map, tag: &str| {
        let list = alert
            .entry("tags".into())
            .or_insert_with(|| Dynamic::from_array(Array::new()));
        if let Some(mut arr) = list.write_lock::<Array>() {
            arr.push(tag.into());
        }
    });
    engine
}

/// The result of loading: the rules that compiled and every error found.
pub struct LoadOutcome {
    pub rules: RuleSet,
    pub errors: Vec<RuleError>,
    /// What the loaded rules name that vigil's events never carry (the
    /// rules run; those parts match nothing): see [`crate::query::warnings`].
    pub warnings: Vec<RuleError>,
}

/// Loads rule files in order. A user rule with the id of a shipped rule
/// replaces it; any other duplicate id is an error.
pub fn load_rules(files: &[RuleFile]) -> LoadOutcome {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut resolver = StaticModuleResolver::new();
    let collector: Collector = Arc::default();

    // Sigma's field table: the shipped one, extended by the set's own.
    let mut taxonomy = crate::sigma::taxonomy::Taxonomy::shipped();
    for f in files.iter().filter(|f| is_taxonomy(f)) {
        if let Err((at, message)) = taxonomy.extend_from(&f.text) {
            errors.push(RuleError {
                file: f.path.clone(),
                line: at.line,
                column: at.column,
                rule_id: None,
                message,
            });
        }
    }

    // Phase 1: modules, so rule files can import them.
    let module_engine = sandboxed_engine();
    for f in files {
        let Some(name) = f.module_name() else {
            continue;
        };
        match module_engine
            .compile(&f.text)
            .map_err(|e| script_error(f, &e.to_string(), e.position()))
            .and_then(|ast| {
                rhai::Module::eval_ast_as_new(rhai::Scope::new(), &ast, &module_engine)
                    .map_err(|e| script_error(f, &e.to_string(), e.position()))
            }) {
            Ok(module) => resolver.insert(name, module),
            Err(e) => errors.push(e),
        }
    }
    let engine = Arc::new(build_engine(resolver, Some(collector.clone())));

    // Phase 2: run each rule file once to collect its rules.
    let mut rules: Vec<Rule> = Vec::new();
    let mut ids: BTreeMap<String, (usize, Origin)> = BTreeMap::new();
    let mut sigma: Vec<(&RuleFile, crate::sigma::SigmaRule)> = Vec::new();
    for f in files
        .iter()
        .filter(|f| f.module_name().is_none() && !is_taxonomy(f))
    {
        if crate::sigma::is_sigma_path(&f.path) {
            // A rule and the correlations that use it may share a file.
            for t in crate::sigma::translate_all(&f.text, &taxonomy) {
                match t {
                    Ok(t) => {
                        warnings.extend(
                            t.warnings
                                .iter()
                                .map(|w| sigma_error(f, Some(&t.rule.id), w)),
                        );
                        sigma.push((f, t.rule));
                    }
                    Err(e) => errors.push(sigma_error(f, None, &e)),
                }
            }
            continue;
        }
        let mut ast = match engine.compile(&f.text) {
            Ok(ast) => Arc::new(ast),
            Err(e) => {
                errors.push(script_error(f, &e.to_string(), e.position()));
                continue;
            }
        };
        collector.lock().expect("never poisoned").clear();
        // Run as a module: its functions (the `on_match` closures among them)
        // then carry the file's imports, so hooks can use `lists::shells`
        // long after the `import` statement ran.
        match rhai::Module::eval_ast_as_new(rhai::Scope::new(), &ast, &engine) {
            Ok(module) => ast = Arc::new(AST::new_from_module(module)),
            Err(e) => {
                errors.push(script_error(f, &runtime_message(&e), e.position()));
                // Rules declared before the failure still load.
            }
        }
        let mut pending: Vec<PendingRule> =
            std::mem::take(&mut *collector.lock().expect("never poisoned"));
        let room = limits::MAX_RULES.saturating_sub(rules.len());
        if pending.len() > room {
            errors.push(RuleError {
                file: f.path.clone(),
                line: 0,
                column: 0,
                rule_id: None,
                message: format!(
                    "a rule set holds at most {} rules: {} declared here are not loaded",
                    limits::MAX_RULES,
                    pending.len() - room
                ),
            });
            pending.truncate(room);
        }
        // Phase 3: validate and compile each declared rule.
        for p in pending {
            match build_rule(f, &ast, p, &mut warnings) {
                Ok(rule) => add_rule(f, rule, &mut rules, &mut ids, &mut errors),
                Err(e) => errors.push(e),
            }
        }
    }
    // Sigma rules: plain ones first, then the correlations that name them.
    let queries: BTreeMap<String, (String, Option<String>)> = sigma
        .iter()
        .filter(|(_, r)| r.correlation.is_none())
        .flat_map(|(_, r)| {
            let q = (r.query.clone(), r.category.clone());
            [Some(r.id.clone()), r.name.clone()]
                .into_iter()
                .flatten()
                .map(move |k| (k, q.clone()))
        })
        .collect();
    // Rules a correlation names alert only through it, unless it says
    // `generate: true` (the specification's default is false).
    let quiet: std::collections::BTreeSet<String> = sigma
        .iter()
        .filter_map(|(_, r)| r.correlation.as_ref())
        .filter(|c| !c.generate)
        .flat_map(|c| c.rule_names().map(str::to_string).collect::<Vec<_>>())
        .collect();
    // A `temporal` correlation is one rule per order of its rules: the
    // first keeps the id, the others add `/order-N`.
    let mut expanded = Vec::new();
    for (f, r) in sigma {
        let Some(c) = &r.correlation else {
            let named = quiet.contains(&r.id) || r.name.as_ref().is_some_and(|n| quiet.contains(n));
            if !named {
                expanded.push((f, r));
            }
            continue;
        };
        match crate::sigma::correlation_query(c, &|n| queries.get(n).cloned(), &taxonomy) {
            Ok(qs) => {
                for (n, q) in qs.into_iter().enumerate() {
                    let mut one = r.clone();
                    if n > 0 {
                        one.id = format!("{}/order-{}", r.id, n + 1);
                    }
                    one.query = q;
                    expanded.push((f, one));
                }
            }
            Err(e) => errors.push(sigma_error(f, Some(&r.id), &e)),
        }
    }
    for (f, r) in expanded {
        if rules.len() >= limits::MAX_RULES {
            errors.push(sigma_error(
                f,
                Some(&r.id),
                &crate::sigma::SigmaError {
                    at: r.at,
                    message: format!("a rule set holds at most {} rules", limits::MAX_RULES),
                },
            ));
            continue;
        }
        match sigma_rule(f, r, &mut warnings) {
            Ok(rule) => add_rule(f, rule, &mut rules, &mut ids, &mut errors),
            Err(e) => errors.push(e),
        }
    }
    LoadOutcome {
        rules: RuleSet::new(rules, engine),
        errors,
        warnings,
    }
}

/// Adds a loaded rule: a user rule with a shipped rule's id replaces it;
/// any other repeated id is an error.
fn add_rule(
    f: &RuleFile,
    rule: Rule,
    rules: &mut Vec<Rule>,
    ids: &mut BTreeMap<String, (usize, Origin)>,
    errors: &mut Vec<RuleError>,
) {
    match ids.get(&rule.meta.id).copied() {
        Some((idx, Origin::Shipped)) if f.origin == Origin::User => {
            rules[idx] = rule;
            ids.insert(rules[idx].meta.id.clone(), (idx, Origin::User));
        }
        Some((idx, _)) => errors.push(RuleError {
            file: f.path.clone(),
            line: 0,
            column: 0,
            rule_id: Some(rule.meta.id.clone()),
            message: format!("duplicate rule id (first defined in {})", rules[idx].file),
        }),
        None => {
            ids.insert(rule.meta.id.clone(), (rules.len(), f.origin));
            rules.push(rule);
        }
    }
}

/// `sigma-taxonomy.yml`: Sigma's field table, not a rule.
fn is_taxonomy(f: &RuleFile) -> bool {
    f.path
        .rsplit(['/', '\\'])
        .next()
        .is_some_and(|b| b == crate::sigma::taxonomy::FILE_NAME)
}

fn sigma_error(f: &RuleFile, id: Option<&str>, e: &crate::sigma::SigmaError) -> RuleError {
    RuleError {
        file: f.path.clone(),
        line: e.at.line,
        column: e.at.column,
        rule_id: id.map(str::to_string),
        message: e.message.clone(),
    }
}

/// A translated Sigma rule, compiled. A query that does not compile is
/// reported at the rule's detection (the query is vigil's, not the
/// author's: `vigil rules import` shows it).
fn sigma_rule(
    f: &RuleFile,
    r: crate::sigma::SigmaRule,
    warnings: &mut Vec<RuleError>,
) -> Result<Rule, RuleError> {
    let at_detection = |message: String| RuleError {
        file: f.path.clone(),
        line: r.at.line,
        column: r.at.column,
        rule_id: Some(r.id.clone()),
        message,
    };
    let (query, query_warnings) = query::compile_with_warnings(&r.query).map_err(|e| {
        at_detection(format!(
            "{} (in the EQL it becomes: {})",
            e.message, r.query
        ))
    })?;
    warnings.extend(query_warnings.into_iter().map(|w| at_detection(w.message)));
    let severity = Severity::parse(r.severity).unwrap_or(Severity::Medium);
    Ok(Rule {
        meta: AlertRule {
            id: r.id.clone(),
            name: if r.title.is_empty() {
                r.id.clone()
            } else {
                r.title
            },
            description: r.description,
            severity,
            risk_score: severity.default_risk(),
            mitre: r.mitre,
            tags: r.tags,
            references: r.references,
            status: r.status,
            false_positives: r.false_positives,
            author: r.author,
        },
        query_text: r.query,
        query,
        file: f.path.clone(),
        origin: f.origin,
        context: Vec::new(),
        on_match: None,
        hook_overruns: Default::default(),
    })
}

fn runtime_message(e: &EvalAltResult) -> String {
    match e {
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "script ran too long (more than {} operations); rule files must only declare rules",
            limits::MAX_OPERATIONS
        ),
        EvalAltResult::ErrorTerminated(..) => format!(
            "on_match ran longer than its time budget ({} ms)",
            limits::HOOK_BUDGET.as_millis()
        ),
        other => other.to_string(),
    }
}

fn script_error(f: &RuleFile, message: &str, pos: Position) -> RuleError {
    // rhai appends " (line L, position C)" to messages; the position fields carry it.
    let message = message
        .rsplit_once(" (line ")
        .map_or(message, |(m, _)| m)
        .to_string();
    RuleError {
        file: f.path.clone(),
        line: pos.line().unwrap_or(0),
        column: pos.position().unwrap_or(0),
        rule_id: None,
        message,
    }
}

const KNOWN_KEYS: [&str; 11] = [
    "id",
    "name",
    "description",
    "severity",
    "risk",
    "mitre",
    "tags",
    "query",
    "on_match",
    "context",
    "enabled",
];

/// Builds one declared rule; what its query names that vigil's events never
/// carry goes to `warnings` (only for a rule that builds).
fn build_rule(
    f: &RuleFile,
    ast: &Arc<AST>,
    p: PendingRule,
    warnings: &mut Vec<RuleError>,
) -> Result<Rule, RuleError> {
    let at_call = |rule_id: Option<&str>, message: String| RuleError {
        file: f.path.clone(),
        line: p.position.line().unwrap_or(0),
        column: p.position.position().unwrap_or(0),
        rule_id: rule_id.map(str::to_string),
        message,
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        match p.map.get(key) {
            None => Ok(None),
            Some(v) if v.is_string() => {
                Ok(Some(v.clone().into_string().expect("checked is_string")))
            }
            Some(v) => Err(format!("`{key}` must be a string, not {}", v.type_name())),
        }
    };
    let strings = |key: &str| -> Result<Vec<String>, String> {
        match p.map.get(key) {
            None => Ok(Vec::new()),
            Some(v) if v.is_array() => v
                .clone()
                .into_array()
                .expect("checked is_array")
                .into_iter()
                .map(|x| {
                    x.into_string()
                        .map_err(|t| format!("`{key}` must be a list of strings, found {t}"))
                })
                .collect(),
            Some(v) if v.is_string() => {
                Ok(vec![v.clone().into_string().expect("checked is_string")])
            }
            Some(v) => Err(format!(
                "`{key}` must be a list of strings, not {}",
                v.type_name()
            )),
        }
    };
    let id = text("id")
        .map_err(|m| at_call(None, m))?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| at_call(None, "rule needs an `id`".into()))?;
    let err = |m: String| at_call(Some(&id), m);
    if let Some(unknown) = p.map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        return Err(err(format!(
            "unknown key `{unknown}` (known: {})",
            KNOWN_KEYS.join(", ")
        )));
    }
    let severity = match text("severity").map_err(err)? {
        None => Severity::Medium,
        Some(s) => Severity::parse(&s).ok_or_else(|| {
            err(format!(
                "severity {s:?} must be low, medium, high or critical"
            ))
        })?,
    };
    let risk_score = match p.map.get("risk") {
        None => severity.default_risk(),
        Some(v) => match v.as_int() {
            Ok(r) if (0..=100).contains(&r) => r as u8,
            _ => return Err(err("`risk` must be a whole number from 0 to 100".into())),
        },
    };
    let query_text = text("query")
        .map_err(err)?
        .ok_or_else(|| err("rule needs a `query`".into()))?;
    let on_match = match p.map.get("on_match") {
        None => None,
        Some(v) if v.is_fnptr() => Some((v.clone().cast::<FnPtr>(), ast.clone())),
        Some(v) => {
            return Err(err(format!(
                "`on_match` must be a function (`|alert| {{ ... }}`), not {}",
                v.type_name()
            )))
        }
    };
    let located = |qe: query::QueryError| {
        let (line, column) = locate_in_file(&f.text, p.position, &query_text, qe.offset);
        RuleError {
            file: f.path.clone(),
            line,
            column,
            rule_id: Some(id.clone()),
            message: qe.message,
        }
    };
    let (query, query_warnings) = query::compile_with_warnings(&query_text).map_err(located)?;
    let query_warnings: Vec<RuleError> = query_warnings.into_iter().map(located).collect();
    let rule = Rule {
        meta: AlertRule {
            name: text("name").map_err(err)?.unwrap_or_else(|| id.clone()),
            description: text("description").map_err(err)?.unwrap_or_default(),
            severity,
            risk_score,
            mitre: strings("mitre").map_err(err)?,
            tags: strings("tags").map_err(err)?,
            id: id.clone(),
            ..AlertRule::default()
        },
        query_text,
        query,
        file: f.path.clone(),
        origin: f.origin,
        context: strings("context").map_err(err)?,
        on_match,
        hook_overruns: Default::default(),
    };
    warnings.extend(query_warnings);
    Ok(rule)
}

/// Maps an offset inside the evaluated query string back to the rule file:
/// finds the `query:` literal after the `rule(` call and counts from its
/// opening quote. Exact for literals; for interpolated strings the line is
/// exact and the column is exact unless an interpolation precedes it.
fn locate_in_file(file: &str, call: Position, query_text: &str, offset: usize) -> (usize, usize) {
    let (ql, qc) = query::line_col(query_text, offset);
    let call_line = call.line().unwrap_or(1);
    let call_offset: usize = file
        .split_inclusive('\n')
        .take(call_line.saturating_sub(1))
        .map(str::len)
        .sum();
    let after = &file[call_offset.min(file.len())..];
    // A plain literal holds the query text verbatim: find it exactly. Else
    // (interpolation, escapes) take the literal after the `query:` key; the
    // word "query" may also appear earlier, in a name or description.
    let exact = (!query_text.trim().is_empty())
        .then(|| after.find(query_text))
        .flatten()
        .map(|k| call_offset + k);
    let literal_start = exact.or_else(|| {
        after.match_indices("query").find_map(|(k, _)| {
            let key_end = &after[k + "query".len()..];
            let rest = key_end
                .strip_prefix(['"', '\''])
                .unwrap_or(key_end)
                .trim_start();
            let rest = rest.strip_prefix(':')?.trim_start();
            let quote = rest
                .chars()
                .next()
                .filter(|c| matches!(c, '`' | '"' | '\''))?;
            let mut start = after.len() - rest.len() + 1;
            // rhai drops a line break right after an opening back-tick.
            if quote == '`' {
                start += ["\r\n", "\n"]
                    .into_iter()
                    .find(|nl| after[start..].starts_with(nl))
                    .map_or(0, str::len);
            }
            Some(call_offset + start)
        })
    });
    match literal_start {
        None => (call_line, call.position().unwrap_or(1)),
        Some(start) => {
            let (sl, sc) = query::line_col(file, start);
            if ql == 1 {
                (sl, sc + qc - 1)
            } else {
                (sl + ql - 1, qc)
            }
        }
    }
}

impl Rule {
    /// Times the `on_match` hook ran over its time budget.
    pub fn hook_overruns(&self) -> u32 {
        self.hook_overruns
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl RuleSet {
    fn new(rules: Vec<Rule>, engine: Arc<Engine>) -> RuleSet {
        let mut by_category = vec![Vec::new(); Category::ALL.len()];
        for (i, r) in rules.iter().enumerate() {
            for cat in r.query.categories() {
                match cat {
                    Some(c) => by_category[c.index()].push(i),
                    None => by_category.iter_mut().for_each(|v| v.push(i)),
                }
            }
        }
        for v in &mut by_category {
            v.sort_unstable();
            v.dedup();
        }
        RuleSet {
            rules,
            by_category,
            engine,
        }
    }

    /// An empty set (no rules loaded yet).
    pub fn empty() -> RuleSet {
        RuleSet::new(Vec::new(), Arc::new(sandboxed_engine()))
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rules that can match an event of this category.
    pub fn candidates(&self, c: Category) -> &[usize] {
        &self.by_category[c.index()]
    }

    /// Turns a match into an alert and runs the rule's `on_match` hook, which
    /// may enrich, re-score or suppress it (`None`). A failing hook never loses
    /// the alert: it is delivered unchanged with the error noted.
    pub fn make_alert(&self, rule_idx: usize, m: Match) -> Option<Alert> {
        let rule = &self.rules[rule_idx];
        let key_names = match &rule.query {
            CompiledQuery::Sequence(s) => s.key_names.clone(),
            CompiledQuery::Event(_) => Vec::new(),
        };
        let events: Vec<Event> = m.events.iter().map(|e| Event::clone(e)).collect();
        let first = events.first().map_or(0, |e| e.timestamp_ns);
        let last = events.last().map_or(0, |e| e.timestamp_ns);
        let mut alert = Alert {
            id: alert_id(&rule.meta.id, &events),
            timestamp_ns: last,
            first_timestamp_ns: first,
            rule: rule.meta.clone(),
            host_id: m
                .events
                .first()
                .and_then(|e| e.host.id.as_deref().map(str::to_string)),
            join_key: key_names.into_iter().zip(m.key).collect(),
            events,
            context_requests: rule.context.clone(),
            enrichments: serde_json::Map::new(),
            raw_enrichments: Vec::new(),
        };
        if let Some((hook, ast)) = &rule.on_match {
            use std::sync::atomic::Ordering::Relaxed;
            let overruns = rule.hook_overruns.load(Relaxed);
            let outcome = if overruns >= limits::HOOK_OVERRUNS {
                Err(format!(
                    "on_match disabled: it ran over its time budget {overruns} times"
                ))
            } else {
                HOOK_DEADLINE
                    .with(|d| d.set(Some(std::time::Instant::now() + limits::HOOK_BUDGET)));
                let outcome = run_hook(&self.engine, hook, ast, &alert);
                HOOK_DEADLINE.with(|d| d.set(None));
                if matches!(&outcome, Err(m) if m.starts_with("on_match ran longer")) {
                    rule.hook_overruns.fetch_add(1, Relaxed);
                }
                outcome
            };
            match outcome {
                Ok(HookOutcome::Keep(map)) => apply_hook_result(&mut alert, map),
                Ok(HookOutcome::Suppress) => return None,
                Err(message) => {
                    alert
                        .enrichments
                        .insert("on_match_error".into(), serde_json::Value::String(message));
                }
            }
        }
        Some(alert)
    }
}

enum HookOutcome {
    Keep(Map),
    Suppress,
}

fn run_hook(
    engine: &Engine,
    hook: &FnPtr,
    ast: &AST,
    alert: &Alert,
) -> Result<HookOutcome, String> {
    let mut map = Map::new();
    map.insert("id".into(), alert.id.clone().into());
    map.insert("rule_id".into(), alert.rule.id.clone().into());
    map.insert("severity".into(), alert.rule.severity.as_str().into());
    map.insert("risk".into(), (alert.rule.risk_score as i64).into());
    map.insert(
        "tags".into(),
        Dynamic::from_array(alert.rule.tags.iter().map(|t| t.clone().into()).collect()),
    );
    map.insert(
        "context".into(),
        Dynamic::from_array(
            alert
                .context_requests
                .iter()
                .map(|t| t.clone().into())
                .collect(),
        ),
    );
    let key: Map = alert
        .join_key
        .iter()
        .map(|(k, v)| (k.as_str().into(), v.clone().into()))
        .collect();
    map.insert("key".into(), key.into());
    let events = rhai::serde::to_dynamic(&alert.events).map_err(|e| e.to_string())?;
    map.insert("events".into(), events);
    let result: Dynamic = hook
        .call(engine, ast, (map,))
        .map_err(|e| runtime_message(&e))?;
    if result.is_unit() || result.as_bool() == Ok(false) {
        Ok(HookOutcome::Suppress)
    } else if result.is_map() {
        Ok(HookOutcome::Keep(result.cast::<Map>()))
    } else {
        Err(format!(
            "on_match must return the alert, () or false, not {}",
            result.type_name()
        ))
    }
}

fn apply_hook_result(alert: &mut Alert, mut map: Map) {
    if let Some(s) = map.remove("severity").and_then(|v| v.into_string().ok()) {
        if let Some(sev) = Severity::parse(&s) {
            alert.rule.severity = sev;
        }
    }
    if let Some(r) = map.remove("risk").and_then(|v| v.as_int().ok()) {
        alert.rule.risk_score = r.clamp(0, 100) as u8;
    }
    let strings = |v: Dynamic| -> Vec<String> {
        v.into_array()
            .map(|a| a.into_iter().filter_map(|x| x.into_string().ok()).collect())
            .unwrap_or_default()
    };
    if let Some(tags) = map.remove("tags") {
        alert.rule.tags = strings(tags);
    }
    if let Some(ctx) = map.remove("context") {
        // Drop repeats anywhere in the list (`dedup` only drops adjacent ones),
        // keeping first-seen order.
        let mut seen = std::collections::HashSet::new();
        alert.context_requests = strings(ctx)
            .into_iter()
            .filter(|c| seen.insert(c.clone()))
            .collect();
    }
    for fixed in ["id", "rule_id", "key", "events"] {
        map.remove(fixed);
    }
    for (k, v) in map {
        if let Ok(json) = rhai::serde::from_dynamic::<serde_json::Value>(&v) {
            alert.enrichments.insert(k.to_string(), json);
        }
    }
}
