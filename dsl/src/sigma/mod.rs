//! Sigma rules as they are (SigmaHQ/sigma-specification v2): a `.yml` rule
//! becomes an EQL query over vigil's events, which the rule loader then
//! compiles like any other. The translation is the contract: `vigil rules
//! import` writes it into an editable rhai rule, and both raise the same
//! alerts.
//!
//! - Fields map to ECS through [`taxonomy`] (per `logsource` category); a
//!   Sigma field with no vigil field reads as missing, with a warning.
//! - Values are case-insensitive unless `|cased`; `*` and `?` are wildcards
//!   and `\*`, `\?`, `\\` their literal characters.
//! - Modifiers: `contains`, `startswith`, `endswith`, `all`, `re` (with
//!   `i`, `m`, `s`), `cidr`, `cased`, `exists`, `windash`, `base64`,
//!   `base64offset`, `utf16le`/`utf16be`/`utf16`/`wide`, `gt`/`gte`/`lt`/
//!   `lte`, `fieldref`. `expand` (placeholders) is refused.
//! - Conditions: `and`, `or`, `not`, parentheses, `1 of x*`, `all of x*`,
//!   `1 of them`, `all of them` (identifiers starting with `_` are left out
//!   of `them`). The deprecated `| count()` aggregations are refused: a
//!   correlation rule says the same.
//! - Keyword detections (values without a field) match the process command
//!   line, as a case-insensitive substring.
//! - Correlation rules: `temporal_ordered` is a sequence; `temporal` (any
//!   order) one sequence per order of its rules (at most 3 rules);
//!   `event_count` with `gte`/`gt` a sequence of one stage with `runs`;
//!   `value_count` a sequence of N stages, each with a value of the field
//!   no earlier stage had (`field != event0.field`, at most 20).
//!
//! Owns: reading Sigma YAML and writing the EQL. Must not touch: compiling
//! or running it (`crate::query`, `crate::rules`).

pub mod taxonomy;
pub mod yaml;

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::query::fields::{self, FieldKind};
use taxonomy::Taxonomy;
use yaml::{Mark, Node, Scalar};

/// A problem at a place in the Sigma file.
#[derive(Debug, Clone, PartialEq)]
pub struct SigmaError {
    pub at: Mark,
    pub message: String,
}

fn err<T>(at: Mark, message: impl Into<String>) -> Result<T, SigmaError> {
    Err(SigmaError {
        at,
        message: message.into(),
    })
}

/// A Sigma rule, translated.
#[derive(Debug, Clone, PartialEq)]
pub struct SigmaRule {
    pub id: String,
    /// The rule's `name` (what correlation rules refer to), if any.
    pub name: Option<String>,
    pub title: String,
    pub description: String,
    /// `low`, `medium`, `high` or `critical` (`informational` is low).
    pub severity: &'static str,
    pub mitre: Vec<String>,
    pub tags: Vec<String>,
    pub references: Vec<String>,
    pub status: Option<String>,
    pub false_positives: Vec<String>,
    pub author: Option<String>,
    /// The equivalent EQL query.
    pub query: String,
    /// Where the detection (or correlation) starts, for errors in the query.
    pub at: Mark,
    /// Whether other rules of the set must be known first (a correlation).
    pub correlation: Option<Correlation>,
    /// The `logsource` category (for the fields of correlations naming it).
    pub category: Option<String>,
}

/// A correlation rule before the rules it names are known.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    kind: String,
    rules: Vec<(String, Mark)>,
    group_by: Vec<String>,
    timespan: String,
    runs: Option<u32>,
    /// `value_count`: the field whose values must differ.
    distinct: Option<String>,
    /// Whether the rules it names also alert on their own (`generate`,
    /// false by default).
    pub generate: bool,
    at: Mark,
}

impl Correlation {
    /// The rules it names (by `name` or `id`).
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|(n, _)| n.as_str())
    }
}

/// What translating one file gives: the rule, and warnings (fields with no
/// vigil field, logsources vigil has no events of).
#[derive(Debug, Clone)]
pub struct Translated {
    pub rule: SigmaRule,
    pub warnings: Vec<SigmaError>,
}

/// Whether a path names a Sigma rule file.
pub fn is_sigma_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    (lower.ends_with(".yml") || lower.ends_with(".yaml")) && !lower.ends_with(taxonomy::FILE_NAME)
}

/// Translates a Sigma file's documents (a rule and the correlations
/// that use it may share a file, separated by `---`).
pub fn translate_all(text: &str, taxonomy: &Taxonomy) -> Vec<Result<Translated, SigmaError>> {
    match yaml::parse_all(text) {
        Err(e) => vec![Err(SigmaError {
            at: e.at,
            message: format!("not valid YAML: {}", e.message),
        })],
        Ok(docs) => docs
            .iter()
            // An empty document (a trailing `---`) holds no rule.
            .filter(|d| d.scalar() != Some(Scalar::Null))
            .map(|d| translate_doc(d, taxonomy))
            .collect(),
    }
}

/// Translates one Sigma rule file (its first document).
pub fn translate(text: &str, taxonomy: &Taxonomy) -> Result<Translated, SigmaError> {
    let doc = yaml::parse(text).map_err(|e| SigmaError {
        at: e.at,
        message: format!("not valid YAML: {}", e.message),
    })?;
    translate_doc(&doc, taxonomy)
}

fn translate_doc(doc: &Node, taxonomy: &Taxonomy) -> Result<Translated, SigmaError> {
    if doc.get("action").is_some() {
        return err(
            doc.at(),
            "Sigma rule collections (`action: global`, `reset`, `repeat`) are not supported: write each rule whole",
        );
    }
    if !matches!(doc, Node::Map(..)) {
        return err(
            doc.at(),
            "a Sigma rule is a YAML map (title, logsource, detection...)",
        );
    }
    let text_of = |key: &str| doc.get(key).and_then(Node::text).map(str::to_string);
    let title = text_of("title").unwrap_or_default();
    let id = text_of("id")
        .or_else(|| text_of("name"))
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| SigmaError {
            at: doc.at(),
            message: "a Sigma rule needs an `id` (or a `name`)".into(),
        })?;
    let level = text_of("level").unwrap_or_else(|| "medium".into());
    let severity = match level.to_ascii_lowercase().as_str() {
        "informational" | "low" => "low",
        "medium" => "medium",
        "high" => "high",
        "critical" => "critical",
        _ => {
            return err(
                doc.get("level").map_or(doc.at(), Node::at),
                format!("level {level:?} must be informational, low, medium, high or critical"),
            )
        }
    };
    let tags = doc.get("tags").map(Node::strings).unwrap_or_default();
    let mitre = tags.iter().filter_map(|t| mitre_id(t)).collect();
    let mut t = Translator {
        taxonomy,
        warnings: Vec::new(),
        category: None,
    };
    let (query, at, correlation) = if let Some(c) = doc.get("correlation") {
        let c = t.correlation(c)?;
        (String::new(), c.at, Some(c))
    } else {
        let detection = doc.get("detection").ok_or_else(|| SigmaError {
            at: doc.at(),
            message: "a Sigma rule needs a `detection` (or a `correlation`)".into(),
        })?;
        let class = t.logsource(doc.get("logsource"))?;
        let cond = t.detection(detection)?;
        (format!("{class} and ({cond})"), detection.at(), None)
    };
    Ok(Translated {
        rule: SigmaRule {
            id,
            name: text_of("name"),
            title,
            description: text_of("description").unwrap_or_default(),
            severity,
            mitre,
            tags,
            references: doc.get("references").map(Node::strings).unwrap_or_default(),
            status: text_of("status"),
            false_positives: doc
                .get("falsepositives")
                .map(Node::strings)
                .unwrap_or_default(),
            author: text_of("author"),
            query,
            at,
            correlation,
            category: t.category.clone(),
        },
        warnings: t.warnings,
    })
}

/// `attack.t1059.002` → `T1059.002`; `attack.execution` → `TA0002`.
fn mitre_id(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("attack.")?;
    if rest.len() > 1
        && rest.as_bytes()[0].eq_ignore_ascii_case(&b't')
        && rest.as_bytes()[1].is_ascii_digit()
    {
        return Some(rest.to_ascii_uppercase());
    }
    let tactic = match rest {
        "reconnaissance" => "TA0043",
        "resource_development" | "resource-development" => "TA0042",
        "initial_access" | "initial-access" => "TA0001",
        "execution" => "TA0002",
        "persistence" => "TA0003",
        "privilege_escalation" | "privilege-escalation" => "TA0004",
        "defense_evasion" | "defense-evasion" => "TA0005",
        "credential_access" | "credential-access" => "TA0006",
        "discovery" => "TA0007",
        "lateral_movement" | "lateral-movement" => "TA0008",
        "collection" => "TA0009",
        "exfiltration" => "TA0010",
        "command_and_control" | "command-and-control" => "TA0011",
        "impact" => "TA0040",
        _ => return None,
    };
    Some(tactic.to_string())
}

/// EQL text of a string literal.
fn lit(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

struct Translator<'t> {
    taxonomy: &'t Taxonomy,
    warnings: Vec<SigmaError>,
    category: Option<String>,
}

/// One piece of a Sigma value: text, or a wildcard.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Star,
    One,
}

/// A Sigma string with its escapes read: `\*` `\?` `\\` are the characters,
/// `*` and `?` wildcards, any other backslash itself.
fn pieces(s: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('*' | '?' | '\\')) => {
                    text.push(n);
                    chars.next();
                }
                _ => text.push('\\'),
            },
            '*' | '?' => {
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(if c == '*' { Piece::Star } else { Piece::One });
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    out
}

#[derive(Debug, Default, Clone)]
struct Modifiers {
    contains: bool,
    startswith: bool,
    endswith: bool,
    all: bool,
    re: bool,
    re_i: bool,
    re_m: bool,
    re_s: bool,
    cidr: bool,
    cased: bool,
    exists: bool,
    windash: bool,
    /// `windash` written before `base64`/`base64offset`: the dashes are
    /// varied before encoding (modifiers apply left to right).
    windash_first: bool,
    base64: bool,
    base64offset: bool,
    utf16: Option<&'static str>,
    compare: Option<&'static str>,
    fieldref: bool,
}

impl Translator<'_> {
    /// The EQL event class and filter of a `logsource`.
    fn logsource(&mut self, ls: Option<&Node>) -> Result<String, SigmaError> {
        let Some(ls) = ls else {
            return Ok("any where true".into());
        };
        let get = |k: &str| ls.get(k).and_then(Node::text).map(str::to_ascii_lowercase);
        let (product, category, service) = (get("product"), get("category"), get("service"));
        self.category = category.clone();
        let mut nothing = |what: String| {
            self.warnings.push(SigmaError {
                at: ls.at(),
                message: format!(
                    "vigil records no {what} events, so this rule matches nothing here"
                ),
            });
            Ok("any where false".to_string())
        };
        if let Some(p) = &product {
            if !matches!(p.as_str(), "macos" | "linux") {
                return nothing(format!("`{p}`"));
            }
        }
        if let Some(s) = &service {
            return nothing(format!("`{s}` service"));
        }
        Ok(match category.as_deref() {
            None => "any where true".into(),
            Some("process_creation") => {
                "process where event.type == \"start\" and event.action != \"fork\"".into()
            }
            Some("file_event") => "file where event.type in (\"creation\", \"change\")".into(),
            Some("file_rename") => "file where event.action == \"rename\"".into(),
            Some("file_delete") => "file where event.type == \"deletion\"".into(),
            Some("network_connection") => "network where true".into(),
            Some(other) => return nothing(format!("`{other}`")),
        })
    }

    /// The EQL condition of a `detection`.
    fn detection(&mut self, det: &Node) -> Result<String, SigmaError> {
        let Node::Map(entries, at) = det else {
            return err(
                det.at(),
                "`detection` must be a map of search identifiers and a condition",
            );
        };
        let mut searches: BTreeMap<String, String> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut condition = None;
        for (k, v) in entries {
            let Some(name) = k.text() else {
                return err(k.at(), "a search identifier must be text");
            };
            match name {
                "condition" => condition = Some(v),
                "timeframe" => {}
                _ => {
                    let expr = self.search(v)?;
                    order.push(name.to_string());
                    searches.insert(name.to_string(), expr);
                }
            }
        }
        let Some(condition) = condition else {
            return err(*at, "`detection` needs a `condition`");
        };
        let conditions: Vec<&Node> = match condition {
            Node::Seq(items, _) => items.iter().collect(),
            single => vec![single],
        };
        let mut out = Vec::new();
        for c in conditions {
            let Some(text) = c.text() else {
                return err(
                    c.at(),
                    "a condition is text such as `selection and not filter`",
                );
            };
            out.push(parse_condition(text, c.at(), &searches, &order)?);
        }
        Ok(if out.len() == 1 {
            out.pop().expect("one")
        } else {
            format!("({})", out.join(") or ("))
        })
    }

    /// One search identifier's value: a map (all of its fields), a list of
    /// maps (any of them) or of keywords.
    fn search(&mut self, v: &Node) -> Result<String, SigmaError> {
        match v {
            Node::Map(entries, at) => {
                if entries.is_empty() {
                    return err(*at, "an empty selection matches nothing");
                }
                let parts = entries
                    .iter()
                    .map(|(k, val)| self.field_test(k, val))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(join(parts, "and"))
            }
            Node::Seq(items, at) => {
                if items.is_empty() {
                    return err(*at, "an empty list matches nothing");
                }
                if items.iter().all(|i| matches!(i, Node::Map(..))) {
                    let parts = items
                        .iter()
                        .map(|i| self.search(i))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(join(parts, "or"))
                } else if items.iter().all(|i| matches!(i, Node::Scalar { .. })) {
                    let parts = items
                        .iter()
                        .map(|i| self.keyword(i))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(join(parts, "or"))
                } else {
                    err(*at, "a list mixes maps and keywords")
                }
            }
            scalar => self.keyword(scalar),
        }
    }

    /// A value without a field: a substring of the process command line.
    fn keyword(&mut self, v: &Node) -> Result<String, SigmaError> {
        let Some(text) = v.text() else {
            return err(v.at(), "a keyword must be a value");
        };
        let mut p = pieces(text);
        p.insert(0, Piece::Star);
        p.push(Piece::Star);
        Ok(pattern_test("process.command_line", &p, false))
    }

    /// `Field|mod|mod: value(s)`.
    fn field_test(&mut self, key: &Node, val: &Node) -> Result<String, SigmaError> {
        let Some(key_text) = key.text() else {
            return err(key.at(), "a field name must be text");
        };
        let mut parts = key_text.split('|');
        let sigma_field = parts.next().unwrap_or_default();
        let mut m = Modifiers::default();
        for name in parts {
            match name {
                "contains" => m.contains = true,
                "startswith" => m.startswith = true,
                "endswith" => m.endswith = true,
                "all" => m.all = true,
                "re" => m.re = true,
                "i" => m.re_i = true,
                "m" => m.re_m = true,
                "s" => m.re_s = true,
                "cidr" => m.cidr = true,
                "cased" => m.cased = true,
                "exists" => m.exists = true,
                "windash" => {
                    m.windash = true;
                    m.windash_first = !(m.base64 || m.base64offset);
                }
                "base64" => m.base64 = true,
                "base64offset" => m.base64offset = true,
                "utf16le" | "wide" => m.utf16 = Some("le"),
                "utf16be" => m.utf16 = Some("be"),
                "utf16" => m.utf16 = Some("bom"),
                "gt" | "gte" | "lt" | "lte" => {
                    m.compare = Some(match name {
                        "gt" => ">",
                        "gte" => ">=",
                        "lt" => "<",
                        _ => "<=",
                    })
                }
                "fieldref" => m.fieldref = true,
                "expand" => {
                    return err(key.at(), "the `expand` modifier (placeholders) is not supported")
                }
                other => {
                    return err(
                        key.at(),
                        format!("unknown modifier `{other}` (known: contains, startswith, endswith, all, re, i, m, s, cidr, cased, exists, windash, base64, base64offset, utf16le, utf16be, utf16, wide, gt, gte, lt, lte, fieldref)"),
                    )
                }
            }
        }
        if (m.re_i || m.re_m || m.re_s) && !m.re {
            return err(key.at(), "`i`, `m` and `s` modify `re` only");
        }
        if m.utf16.is_some() && !(m.base64 || m.base64offset) {
            return err(
                key.at(),
                "utf16 modifiers only apply before `base64` or `base64offset`",
            );
        }
        // `'|all': [...]`: keywords with modifiers, read as keywords are
        // (substrings of the command line).
        let field = if sigma_field.is_empty() {
            if !(m.startswith || m.endswith || m.re || m.cased) {
                m.contains = true;
            }
            "process.command_line".to_string()
        } else {
            self.field(sigma_field, key.at())?
        };
        let values: Vec<&Node> = match val {
            Node::Seq(items, _) => items.iter().collect(),
            Node::Map(_, at) => return err(*at, "a field's value is a value or a list of values"),
            single => vec![single],
        };
        if values.is_empty() {
            return err(val.at(), "an empty list matches nothing");
        }
        // A value's variants (windash, base64offset) are alternatives; the
        // values themselves are joined by `and` under `all`.
        let mut tests = Vec::new();
        for v in values {
            tests.push(join(self.value_tests(&field, &m, v)?, "or"));
        }
        Ok(join(tests, if m.all { "and" } else { "or" }))
    }

    /// The vigil field for a Sigma field (warned when there is none).
    fn field(&mut self, sigma: &str, at: Mark) -> Result<String, SigmaError> {
        let valid = |s: &str| {
            s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '@')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@'))
        };
        if let Some(ecs) = self.taxonomy.field(self.category.as_deref(), sigma) {
            if !valid(ecs) {
                return err(
                    at,
                    format!("the taxonomy maps `{sigma}` to `{ecs}`, not a field name"),
                );
            }
            return Ok(ecs.to_string());
        }
        if !valid(sigma) {
            // A web or proxy log's `cs-method`: no vigil event has it.
            let safe: String = sigma
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            self.warnings.push(SigmaError {
                at,
                message: format!("`{sigma}` is no field of vigil's events: it reads as missing"),
            });
            let safe = if safe.starts_with(|c: char| c.is_ascii_alphabetic()) {
                safe
            } else {
                format!("f_{safe}")
            };
            return Ok(format!("?{safe}"));
        }
        if fields::lookup(sigma).is_none() {
            self.warnings.push(SigmaError {
                at,
                message: format!(
                    "Sigma field `{sigma}` has no vigil field for logsource `{}` (add it to {}): it reads as missing",
                    self.category.as_deref().unwrap_or("any"),
                    taxonomy::FILE_NAME
                ),
            });
            // Marked optional: the warning above is the one to show.
            return Ok(format!("?{sigma}"));
        }
        Ok(sigma.to_string())
    }

    /// The tests one value stands for (several for `windash` and
    /// `base64offset`).
    fn value_tests(
        &mut self,
        field: &str,
        m: &Modifiers,
        v: &Node,
    ) -> Result<Vec<String>, SigmaError> {
        let scalar = v.scalar().ok_or_else(|| SigmaError {
            at: v.at(),
            message: "expected a value".into(),
        })?;
        let bare = field.trim_start_matches('?');
        let kind = fields::lookup(bare).map(|f| f.kind());
        if m.exists {
            return match scalar {
                Scalar::Bool(true) => Ok(vec![format!("{field} != null")]),
                Scalar::Bool(false) => Ok(vec![format!("{field} == null")]),
                _ => err(v.at(), "`exists` takes true or false"),
            };
        }
        if let Some(op) = m.compare {
            return match scalar {
                Scalar::Int(i) => Ok(vec![format!("{field} {op} {i}")]),
                _ => err(v.at(), "`gt`, `gte`, `lt` and `lte` take a whole number"),
            };
        }
        let text = match scalar {
            Scalar::Null => return Ok(vec![format!("{field} == null")]),
            Scalar::Bool(b) => return Ok(vec![format!("{field} == {b}")]),
            Scalar::Int(i)
                if !(m.contains
                    || m.startswith
                    || m.endswith
                    || m.re
                    || m.base64
                    || m.base64offset
                    || m.windash) =>
            {
                return Ok(vec![format!("{field} == {i}")])
            }
            Scalar::Int(_) | Scalar::Str(_) => v.text().unwrap_or_default().to_string(),
        };
        if m.fieldref {
            let other = self.field(&text, v.at())?;
            let f = if m.contains {
                "stringcontains~"
            } else if m.startswith {
                "startswith~"
            } else if m.endswith {
                "endswith~"
            } else {
                return Ok(vec![format!("{field} == {other}")]);
            };
            return Ok(vec![format!("{f}({field}, {other})")]);
        }
        if m.cidr {
            return Ok(vec![format!("cidrmatch({field}, {})", lit(&text))]);
        }
        if m.re {
            if regex::Regex::new(&text).is_err() {
                return err(
                    v.at(),
                    format!("{text:?} is not a regular expression vigil can run"),
                );
            }
            let mut inner = if m.re_s {
                format!("(?s:{text})")
            } else {
                format!("(?-s:{text})")
            };
            if m.re_m {
                inner = format!("(?m:{inner})");
            }
            // Sigma searches; EQL regexes match the whole value.
            let re = format!("(?s:.*){inner}(?s:.*)");
            let op = if m.re_i { "regex~" } else { "regex" };
            return Ok(vec![format!("{field} {op} {}", lit(&re))]);
        }
        if matches!(kind, Some(FieldKind::Int)) {
            return match text.parse::<i64>() {
                Ok(i) => Ok(vec![format!("{field} == {i}")]),
                Err(_) => err(v.at(), format!("`{bare}` is a number, not {text:?}")),
            };
        }
        // The literal values: as written, or encoded (with the dashes
        // varied before or after, as the modifiers are written).
        let mut values: Vec<Vec<Piece>> = if m.base64 || m.base64offset {
            // The value's characters, escapes read; a wildcard cannot be
            // encoded.
            let text = match pieces(&text).as_slice() {
                [] => String::new(),
                [Piece::Text(t)] => t.clone(),
                _ => {
                    return err(
                        v.at(),
                        "a wildcard cannot be base64-encoded: escape it (\\*) or use contains",
                    )
                }
            };
            let texts: Vec<String> = if m.windash && m.windash_first {
                windash(vec![Piece::Text(text.clone())])
                    .iter()
                    .map(|p| piece_text(p))
                    .collect()
            } else {
                vec![text.clone()]
            };
            let mut encoded = Vec::new();
            for t in texts {
                let bytes = encode_utf16(&t, m.utf16);
                if m.base64 {
                    encoded.push(vec![Piece::Text(
                        base64::engine::general_purpose::STANDARD.encode(&bytes),
                    )]);
                } else {
                    encoded.extend(
                        base64_offsets(&bytes)
                            .into_iter()
                            .map(|s| vec![Piece::Text(s)]),
                    );
                }
            }
            encoded
        } else {
            vec![pieces(&text)]
        };
        if m.windash && !((m.base64 || m.base64offset) && m.windash_first) {
            values = values.into_iter().flat_map(windash).collect();
        }
        Ok(values
            .into_iter()
            .map(|mut p| {
                if m.contains || m.endswith {
                    p.insert(0, Piece::Star);
                }
                if m.contains || m.startswith {
                    p.push(Piece::Star);
                }
                pattern_test(field, &p, m.cased)
            })
            .collect())
    }

    fn correlation(&mut self, c: &Node) -> Result<Correlation, SigmaError> {
        let kind = c
            .get("type")
            .and_then(Node::text)
            .ok_or_else(|| SigmaError {
                at: c.at(),
                message: "a correlation needs a `type`".into(),
            })?
            .to_string();
        let rules: Vec<(String, Mark)> = match c.get("rules") {
            Some(Node::Seq(items, _)) => items
                .iter()
                .filter_map(|i| i.text().map(|t| (t.to_string(), i.at())))
                .collect(),
            Some(single @ Node::Scalar { .. }) => {
                vec![(single.text().unwrap_or_default().to_string(), single.at())]
            }
            _ => return err(c.at(), "a correlation needs `rules`"),
        };
        let group_by = c.get("group-by").map(Node::strings).unwrap_or_default();
        let timespan = c
            .get("timespan")
            .and_then(Node::text)
            .ok_or_else(|| SigmaError {
                at: c.at(),
                message: "a correlation needs a `timespan`".into(),
            })?
            .to_string();
        let count = |what: &str| -> Result<(u32, Option<String>), SigmaError> {
            let cond = c.get("condition").ok_or_else(|| SigmaError {
                at: c.at(),
                message: format!("a {what} correlation needs a `condition` (gte: N)"),
            })?;
            let n = |k: &str| cond.get(k).and_then(Node::scalar);
            let runs = match (n("gte"), n("gt")) {
                (Some(Scalar::Int(n)), _) if (1..=100).contains(&n) => n as u32,
                (_, Some(Scalar::Int(n))) if (0..100).contains(&n) => n as u32 + 1,
                (Some(Scalar::Int(_)), _) | (_, Some(Scalar::Int(_))) => {
                    return err(cond.at(), "vigil counts at most 100 events in a window")
                }
                _ => {
                    return err(
                        cond.at(),
                        format!(
                            "vigil counts upwards only: a {what} condition is `gte: N` or `gt: N`"
                        ),
                    )
                }
            };
            Ok((
                runs,
                cond.get("field").and_then(Node::text).map(str::to_string),
            ))
        };
        let mut distinct = None;
        let runs = match kind.as_str() {
            "temporal_ordered" | "temporal" => None,
            "value_count" => {
                let (runs, field) = count("value_count")?;
                let Some(field) = field else {
                    return err(c.at(), "a value_count condition names its `field`");
                };
                if runs > 20 {
                    return err(
                        c.at(),
                        "vigil counts at most 20 distinct values in a window",
                    );
                }
                distinct = Some(self.field(&field, c.at())?);
                Some(runs)
            }
            "event_count" => Some(count("event_count")?.0),
            other => return err(c.at(), format!("unknown correlation type `{other}`")),
        };
        if runs.is_some_and(|r| r > 100) {
            return err(c.at(), "vigil counts at most 100 events in a window");
        }
        Ok(Correlation {
            kind,
            rules,
            group_by,
            timespan,
            runs,
            distinct,
            generate: c
                .get("generate")
                .and_then(Node::scalar)
                .is_some_and(|g| g == Scalar::Bool(true)),
            at: c.at(),
        })
    }
}

/// `a and b` with parentheses when there are several.
fn join(parts: Vec<String>, op: &str) -> String {
    if parts.len() == 1 {
        return parts.into_iter().next().expect("one");
    }
    format!("({})", parts.join(&format!(" {op} ")))
}

/// One value's test: equality, a wildcard pattern, or (for a literal `*` or
/// `?` among wildcards) a regex.
fn pattern_test(field: &str, p: &[Piece], cased: bool) -> String {
    let wild = p.iter().any(|x| !matches!(x, Piece::Text(_)));
    let text_has_wild = p
        .iter()
        .any(|x| matches!(x, Piece::Text(t) if t.contains(['*', '?'])));
    let joined = piece_text(p);
    if !wild {
        return if cased {
            format!("{field} == {}", lit(&joined))
        } else {
            format!("{field} in~ ({})", lit(&joined))
        };
    }
    if !text_has_wild {
        let op = if cased { "like" } else { ":" };
        return format!("{field} {op} {}", lit(&joined));
    }
    let re: String = p
        .iter()
        .map(|x| match x {
            Piece::Text(t) => regex::escape(t),
            Piece::Star => ".*".into(),
            Piece::One => ".".into(),
        })
        .collect();
    let op = if cased { "regex" } else { "regex~" };
    format!("{field} {op} {}", lit(&re))
}

/// The pieces as one text, wildcards written `*` and `?`.
fn piece_text(p: &[Piece]) -> String {
    p.iter()
        .map(|x| match x {
            Piece::Text(t) => t.as_str(),
            Piece::Star => "*",
            Piece::One => "?",
        })
        .collect()
}

fn encode_utf16(text: &str, utf16: Option<&str>) -> Vec<u8> {
    match utf16 {
        None => text.as_bytes().to_vec(),
        Some("be") => text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        Some("bom") => [0xff, 0xfe]
            .into_iter()
            .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
            .collect(),
        Some(_) => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
    }
}

/// The three base64 forms of `bytes` at any offset in a longer encoded
/// text, with the characters that depend on the neighbours cut (as
/// pySigma's `base64offset`).
fn base64_offsets(bytes: &[u8]) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    (0..3)
        .map(|i| {
            let mut padded = vec![b' '; i];
            padded.extend_from_slice(bytes);
            let enc = b64.encode(&padded);
            let start = [0, 2, 3][i];
            let cut_end = [0, 3, 2][(bytes.len() + i) % 3];
            let end = enc.len().saturating_sub(cut_end).max(start);
            enc[start..end].to_string()
        })
        .collect()
}

/// `-x` as Windows also writes it: `/x`, `–x`, `—x`, `―x` (every dash or
/// slash that starts an option).
fn windash(p: Vec<Piece>) -> Vec<Vec<Piece>> {
    const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
    let mut out = vec![Vec::new()];
    for piece in p {
        let Piece::Text(t) = piece else {
            out.iter_mut().for_each(|v| v.push(piece.clone()));
            continue;
        };
        // Variants of this text piece.
        let chars: Vec<char> = t.chars().collect();
        let mut variants = vec![String::new()];
        let word = |c: &char| c.is_alphanumeric() || *c == '_';
        for (i, &c) in chars.iter().enumerate() {
            // pySigma's `\B[-/]\b`: a `-` or `/` after a non-word
            // character (or the start) and before a word character.
            let starts_option = matches!(c, '-' | '/')
                && (i == 0 || !word(&chars[i - 1]))
                && chars.get(i + 1).is_some_and(word);
            if starts_option && variants.len() < 64 {
                variants = variants
                    .into_iter()
                    .flat_map(|v| DASHES.iter().map(move |d| format!("{v}{d}")))
                    .collect();
            } else {
                variants.iter_mut().for_each(|v| v.push(c));
            }
        }
        out = out
            .into_iter()
            .flat_map(|prefix| {
                variants.iter().map(move |v| {
                    let mut x = prefix.clone();
                    x.push(Piece::Text(v.clone()));
                    x
                })
            })
            .collect();
    }
    out
}

/// A Sigma condition as EQL, naming the searches by their expressions.
fn parse_condition(
    text: &str,
    at: Mark,
    searches: &BTreeMap<String, String>,
    order: &[String],
) -> Result<String, SigmaError> {
    let tokens = tokenize(text);
    let mut p = CondParser {
        tokens: &tokens,
        pos: 0,
        at,
        searches,
        order,
    };
    let e = p.or()?;
    match tokens.get(p.pos) {
        Some((tok, off)) if tok == "|" => p.error(
            *off,
            "aggregations (`| count() ...`) are deprecated in Sigma: write a correlation rule"
                .into(),
        ),
        Some((tok, off)) => p.error(*off, format!("unexpected `{tok}` in the condition")),
        None => Ok(e),
    }
}

fn tokenize(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    let b = text.as_bytes();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if matches!(c, b'(' | b')' | b'|') {
            out.push(((c as char).to_string(), i));
            i += 1;
        } else {
            let start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'(' | b')' | b'|')
            {
                i += 1;
            }
            out.push((text[start..i].to_string(), start));
        }
    }
    out
}

struct CondParser<'a> {
    tokens: &'a [(String, usize)],
    pos: usize,
    at: Mark,
    searches: &'a BTreeMap<String, String>,
    order: &'a [String],
}

impl CondParser<'_> {
    fn error<T>(&self, offset: usize, message: String) -> Result<T, SigmaError> {
        err(
            Mark {
                line: self.at.line,
                column: self.at.column + offset,
            },
            message,
        )
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(|(t, _)| t.as_str())
    }

    fn offset(&self) -> usize {
        self.tokens
            .get(self.pos)
            .or(self.tokens.last())
            .map_or(0, |(_, o)| *o)
    }

    fn or(&mut self) -> Result<String, SigmaError> {
        let mut parts = vec![self.and()?];
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("or")) {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(join(parts, "or"))
    }

    fn and(&mut self) -> Result<String, SigmaError> {
        let mut parts = vec![self.not()?];
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("and")) {
            self.pos += 1;
            parts.push(self.not()?);
        }
        Ok(join(parts, "and"))
    }

    fn not(&mut self) -> Result<String, SigmaError> {
        if self.peek().is_some_and(|t| t.eq_ignore_ascii_case("not")) {
            self.pos += 1;
            return Ok(format!("not {}", self.not()?));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<String, SigmaError> {
        let off = self.offset();
        let Some(tok) = self.peek().map(str::to_string) else {
            return self.error(off, "the condition ends too early".into());
        };
        self.pos += 1;
        match tok.as_str() {
            "(" => {
                let e = self.or()?;
                if self.peek() != Some(")") {
                    let o = self.offset();
                    return self.error(o, "expected `)`".into());
                }
                self.pos += 1;
                Ok(format!("({e})"))
            }
            "|" => self.error(
                off,
                "aggregations (`| count() ...`) are deprecated in Sigma: write a correlation rule".into(),
            ),
            q if q == "1" || q.eq_ignore_ascii_case("all") || q.eq_ignore_ascii_case("any") => {
                if !self.peek().is_some_and(|t| t.eq_ignore_ascii_case("of")) {
                    return self.error(off, format!("expected `of` after `{q}`"));
                }
                self.pos += 1;
                let target_off = self.offset();
                let Some(target) = self.peek().map(str::to_string) else {
                    return self.error(target_off, "expected a search identifier (or `them`) after `of`".into());
                };
                self.pos += 1;
                let names: Vec<&String> = if target.eq_ignore_ascii_case("them") {
                    self.order.iter().filter(|n| !n.starts_with('_')).collect()
                } else {
                    // As `them`, a pattern leaves out `_` identifiers unless
                    // it starts with `_` itself (pySigma).
                    let re = glob_regex(&target);
                    let hidden_ok = target.starts_with('_');
                    self.order
                        .iter()
                        .filter(|n| re.is_match(n) && (hidden_ok || !n.starts_with('_')))
                        .collect()
                };
                if names.is_empty() {
                    return self.error(target_off, format!("no search identifier matches `{target}`"));
                }
                let parts: Vec<String> = names.iter().map(|n| self.searches[*n].clone()).collect();
                Ok(join(parts, if q == "1" || q.eq_ignore_ascii_case("any") { "or" } else { "and" }))
            }
            name => match self.searches.get(name) {
                Some(e) => Ok(e.clone()),
                None => self.error(
                    off,
                    format!(
                        "the condition names `{name}`, which `detection` does not define (it has: {})",
                        self.order.join(", ")
                    ),
                ),
            },
        }
    }
}

fn glob_regex(pat: &str) -> regex::Regex {
    let re: String = pat
        .chars()
        .map(|c| match c {
            '*' => ".*".to_string(),
            '?' => ".".to_string(),
            c => regex::escape(&c.to_string()),
        })
        .collect();
    regex::Regex::new(&format!("^{re}$")).expect("an escaped glob is a valid regex")
}

/// A rule a correlation names: its EQL query and logsource category.
pub type NamedRule = (String, Option<String>);

/// The EQL of a correlation rule, once the rules it names are known (by
/// `name` or `id`: their translated queries): one query, or for `temporal`
/// one per order of its rules.
pub fn correlation_query(
    c: &Correlation,
    rules: &dyn Fn(&str) -> Option<NamedRule>,
    taxonomy: &Taxonomy,
) -> Result<Vec<String>, SigmaError> {
    let mut stages = Vec::new();
    // `group-by` fields map through the named rules' logsource category.
    let mut category = None;
    for (name, at) in &c.rules {
        let (q, cat) = rules(name).ok_or_else(|| SigmaError {
            at: *at,
            message: format!("the correlation names `{name}`, which no Sigma rule of this set defines (by name or id)"),
        })?;
        category = category.or(cat);
        stages.push(q);
    }
    let by = if c.group_by.is_empty() {
        String::new()
    } else {
        let fields: Vec<String> = c
            .group_by
            .iter()
            .map(|g| {
                taxonomy
                    .field(category.as_deref(), g)
                    .unwrap_or(g)
                    .to_string()
            })
            .collect();
        format!(" by {}", fields.join(", "))
    };
    let span = c.timespan.trim();
    let valid_span = span.len() > 1
        && span.is_ascii()
        && span[..span.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && matches!(span.as_bytes()[span.len() - 1], b's' | b'm' | b'h' | b'd');
    if !valid_span {
        return err(
            c.at,
            format!("timespan {span:?} must be a number and s, m, h or d"),
        );
    }
    let head = format!("sequence{by} with maxspan={span}");
    match (c.runs, &c.distinct) {
        (Some(runs), None) => {
            let [q] = stages.as_slice() else {
                return err(
                    c.at,
                    "an event_count correlation counts the events of one rule",
                );
            };
            Ok(vec![format!("{head} [{q}] with runs={runs}")])
        }
        (Some(runs), Some(field)) => {
            let [q] = stages.as_slice() else {
                return err(
                    c.at,
                    "a value_count correlation counts the values of one rule",
                );
            };
            // Stage k needs a value no earlier stage had.
            let bare = field.trim_start_matches('?');
            let body: Vec<String> = (0..runs)
                .map(|k| {
                    let differs: Vec<String> = (0..k)
                        .map(|j| format!(" and {field} != value{j}.{bare}"))
                        .collect();
                    format!("[{q}{}] as value{k}", differs.concat())
                })
                .collect();
            Ok(vec![format!("{head} {}", body.join(" "))])
        }
        (None, _) => {
            if stages.len() < 2 {
                return err(c.at, "a temporal correlation needs at least two rules");
            }
            let orders: Vec<Vec<&String>> = if c.kind == "temporal" {
                if stages.len() > 3 {
                    return err(
                        c.at,
                        "a temporal correlation (any order) of more than 3 rules is not supported: each order is a sequence",
                    );
                }
                permutations(&stages.iter().collect::<Vec<_>>())
            } else {
                vec![stages.iter().collect()]
            };
            Ok(orders
                .into_iter()
                .map(|order| {
                    let body: Vec<String> = order.iter().map(|q| format!("[{q}]")).collect();
                    format!("{head} {}", body.join(" "))
                })
                .collect())
        }
    }
}

/// Every order of `items` (the given order first).
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests;
