//! Type-checks a parsed query against the schema and turns it into a tree of
//! native matchers. Every literal is converted once here: wildcards become
//! [`Pattern`]s, CIDRs become [`Cidr`]s, category and type names become enums.

use std::net::IpAddr;

use super::ast::{self, CmpOp, Expr, MatchOp, Operand, Query};
use super::fields::{self, EventFields, FieldId, FieldKind, FieldValue};
use super::matchers::{CiSet, Cidr, LiteralKind, Pattern, PatternSet, StrTest};
use super::QueryError;
use crate::event::{Category, EventType};

/// A compiled condition. Evaluation is three-valued as in Elasticsearch EQL:
/// `None` is null (a missing field), and only `Some(true)` matches.
#[derive(Debug, Clone)]
pub enum Node {
    Const(Option<bool>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    /// Any string of the field passes the test (lists: any element).
    Str {
        field: FieldId,
        test: StrTest,
    },
    IsNull(FieldId),
    Int {
        value: IntSrc,
        op: CmpOp,
        rhs: i64,
    },
    Bool {
        field: FieldId,
        value: bool,
    },
    IpIn {
        field: FieldId,
        ips: Vec<IpAddr>,
    },
    Cidr {
        field: FieldId,
        nets: Vec<Cidr>,
    },
    /// `event.type == "start"` and friends.
    HasType(Vec<EventType>),
    CategoryIn(Vec<Category>),
    /// Ordering on strings (`process.name < "m"`), rare.
    StrOrd {
        field: FieldId,
        op: CmpOp,
        rhs: String,
    },
    /// Field against field, compared as text.
    FieldEq {
        a: Src,
        b: Src,
    },
    /// `startswith~(file.path, process.executable)`: the first field's
    /// text against the second's, which the rule cannot know in advance.
    FieldText {
        field: Src,
        other: Src,
        kind: LiteralKind,
        insensitive: bool,
    },
    /// `descendant of [process where ...]`: answered from the lineage the
    /// correlator keeps ([`EventFields::lineage`]).
    Lineage {
        kind: ast::LineageKind,
        filter: LineageFilter,
    },
}

/// `descendant of [...]` and its kin: the inner filter, shared so the
/// correlator can tell lineage queries apart by address.
pub type LineageFilter = std::sync::Arc<EventFilter>;

/// Where a field is read: the event at hand, or the event an earlier stage
/// of the sequence matched (`event0.file.path`, after `] as event0`).
#[derive(Debug, Clone, Copy)]
pub enum Src {
    This(FieldId),
    Stage(usize, FieldId),
}

impl Src {
    fn value<'e, E: EventFields + ?Sized>(
        self,
        e: &'e E,
        prior: &'e [std::sync::Arc<crate::Event>],
    ) -> FieldValue<'e> {
        match self {
            Src::This(f) => e.field(f),
            Src::Stage(i, f) => prior.get(i).map_or(FieldValue::Null, |p| f.get(p.as_ref())),
        }
    }

    fn is_prior(self) -> bool {
        matches!(self, Src::Stage(..))
    }
}

#[derive(Debug, Clone, Copy)]
pub enum IntSrc {
    Field(FieldId),
    Length(FieldId),
}

impl Node {
    /// Whether some event could make this `Some(true)`. A stage whose
    /// condition cannot (it tests a field vigil never records, so null
    /// spreads through every `and` to the top) is never evaluated.
    pub fn can_be_true(&self) -> bool {
        match self {
            Node::Const(v) => *v == Some(true),
            Node::And(terms) => terms.iter().all(Node::can_be_true),
            Node::Or(terms) => terms.iter().any(Node::can_be_true),
            // `not x` holds whenever `x` is not true.
            Node::Not(inner) => inner.can_be_other_than_true(),
            _ => true,
        }
    }

    /// Whether some event could make this other than `Some(true)`.
    fn can_be_other_than_true(&self) -> bool {
        match self {
            Node::Const(v) => *v != Some(true),
            Node::And(terms) => terms.iter().any(Node::can_be_other_than_true),
            Node::Or(terms) => terms.iter().all(Node::can_be_other_than_true),
            Node::Not(inner) => inner.can_be_true(),
            _ => true,
        }
    }

    /// Whether this node reads no string: a few instructions at most.
    fn is_trivial(&self) -> bool {
        match self {
            Node::Const(_)
            | Node::CategoryIn(_)
            | Node::HasType(_)
            | Node::Bool { .. }
            | Node::Int { .. }
            | Node::IsNull(_)
            | Node::IpIn { .. } => true,
            Node::Not(inner) => inner.is_trivial(),
            Node::And(terms) | Node::Or(terms) => terms.iter().all(Node::is_trivial),
            _ => false,
        }
    }

    /// Evaluates on any event representation: an owned [`crate::Event`] or
    /// an interned [`crate::codec::EventView`]. Allocates nothing, except
    /// for string tests on IP fields and comparisons of two list fields.
    pub fn eval<E: EventFields + ?Sized>(&self, e: &E) -> Option<bool> {
        self.eval_in(e, &[])
    }

    /// The inner filters of its `descendant of [...]` terms (nested ones
    /// too), for the correlator to watch.
    pub fn lineage_filters(&self, out: &mut Vec<LineageFilter>) {
        match self {
            Node::And(terms) | Node::Or(terms) => terms.iter().for_each(|t| t.lineage_filters(out)),
            Node::Not(inner) => inner.lineage_filters(out),
            Node::Lineage { filter, .. } => {
                filter.condition.lineage_filters(out);
                out.push(std::sync::Arc::clone(filter));
            }
            _ => {}
        }
    }

    /// Whether this reads an earlier stage's event (`event0.field`).
    pub fn reads_prior(&self) -> bool {
        match self {
            Node::And(terms) | Node::Or(terms) => terms.iter().any(Node::reads_prior),
            Node::Not(inner) => inner.reads_prior(),
            Node::FieldEq { a, b } => a.is_prior() || b.is_prior(),
            Node::FieldText { field, other, .. } => field.is_prior() || other.is_prior(),
            _ => false,
        }
    }

    /// [`Node::eval`] with the events earlier stages matched (`prior[i]`:
    /// stage `i`'s); an earlier stage's field reads as null without them.
    pub fn eval_in<E: EventFields + ?Sized>(
        &self,
        e: &E,
        prior: &[std::sync::Arc<crate::Event>],
    ) -> Option<bool> {
        match self {
            Node::Const(v) => *v,
            Node::And(terms) => {
                let mut null = false;
                for t in terms {
                    match t.eval_in(e, prior) {
                        Some(false) => return Some(false),
                        None => null = true,
                        Some(true) => {}
                    }
                }
                if null {
                    None
                } else {
                    Some(true)
                }
            }
            Node::Or(terms) => {
                let mut null = false;
                for t in terms {
                    match t.eval_in(e, prior) {
                        Some(true) => return Some(true),
                        None => null = true,
                        Some(false) => {}
                    }
                }
                if null {
                    None
                } else {
                    Some(false)
                }
            }
            // Elasticsearch runs a filter as Query DSL: `not` is `must_not`,
            // which a document whose field is missing matches (README, Rules).
            Node::Not(inner) => Some(inner.eval_in(e, prior) != Some(true)),
            Node::Str { field, test } => e.str_test(*field, test),
            Node::IsNull(field) => Some(matches!(e.field(*field), FieldValue::Null)),
            Node::Int { value, op, rhs } => {
                let lhs = match value {
                    IntSrc::Field(f) => match e.field(*f) {
                        FieldValue::Int(i) => i,
                        // An extra number as text, or a list of them: any
                        // element, as Elasticsearch's range query.
                        v @ (FieldValue::Str(_) | FieldValue::StrList(_) | FieldValue::Syms(_)) => {
                            return v.any_str(|s| {
                                s.parse::<i64>().is_ok_and(|x| compare(x.cmp(rhs), *op))
                            })
                        }
                        _ => return None,
                    },
                    IntSrc::Length(f) => match e.field(*f) {
                        FieldValue::Str(s) => s.chars().count() as i64,
                        FieldValue::StrList(l) => l.len() as i64,
                        FieldValue::Syms(l) => l.len() as i64,
                        FieldValue::EventTypes(t) => t.len() as i64,
                        _ => return None,
                    },
                };
                Some(compare(lhs.cmp(rhs), *op))
            }
            Node::Bool { field, value } => match e.field(*field) {
                FieldValue::Bool(b) => Some(b == *value),
                // An extra boolean as text, or a list of them (any element).
                v @ (FieldValue::Str(_) | FieldValue::StrList(_) | FieldValue::Syms(_)) => {
                    let want = if *value { "true" } else { "false" };
                    v.any_str(|s| s == want)
                }
                _ => None,
            },
            Node::IpIn { field, ips } => match e.field(*field) {
                FieldValue::Ip(ip) => Some(ips.contains(&ip)),
                _ => None,
            },
            Node::Cidr { field, nets } => match e.field(*field) {
                FieldValue::Ip(ip) => Some(nets.iter().any(|n| n.contains(ip))),
                // An extra address (`destination.address`) as text.
                FieldValue::Str(s) => s.parse().ok().map(|ip| nets.iter().any(|n| n.contains(ip))),
                _ => None,
            },
            Node::HasType(types) => e.has_any_type(types),
            Node::CategoryIn(cats) => Some(cats.contains(&e.category())),
            Node::StrOrd { field, op, rhs } => match e.field(*field) {
                FieldValue::Str(s) => Some(compare(s.cmp(rhs.as_str()), *op)),
                _ => None,
            },
            Node::FieldEq { a, b } => text_eq(a.value(e, prior), b.value(e, prior)),
            Node::Lineage { kind, filter } => e.lineage(*kind, filter),
            Node::FieldText {
                field,
                other,
                kind,
                insensitive,
            } => {
                let needle = other.value(e, prior).to_text()?;
                let text = field.value(e, prior);
                if *insensitive {
                    let needle = needle.to_lowercase();
                    text.any_str(|s| kind.holds(&s.to_lowercase(), &needle))
                } else {
                    text.any_str(|s| kind.holds(s, &needle))
                }
            }
        }
    }
}

/// Two field values compared as text (null if either is), without
/// formatting them when they are of the same scalar kind.
fn text_eq(a: FieldValue<'_>, b: FieldValue<'_>) -> Option<bool> {
    match (a, b) {
        (FieldValue::Null, _) | (_, FieldValue::Null) => None,
        (FieldValue::Str(x), FieldValue::Str(y)) => Some(x == y),
        (FieldValue::Int(x), FieldValue::Int(y)) => Some(x == y),
        (FieldValue::Bool(x), FieldValue::Bool(y)) => Some(x == y),
        (FieldValue::Ip(x), FieldValue::Ip(y)) => Some(x == y),
        (FieldValue::Category(x), FieldValue::Category(y)) => Some(x == y),
        (a, b) => match (a.to_text(), b.to_text()) {
            (Some(x), Some(y)) => Some(x == y),
            _ => None,
        },
    }
}

fn compare(ord: std::cmp::Ordering, op: CmpOp) -> bool {
    use std::cmp::Ordering::*;
    match op {
        CmpOp::Eq => ord == Equal,
        CmpOp::Ne => ord != Equal,
        CmpOp::Lt => ord == Less,
        CmpOp::Le => ord != Greater,
        CmpOp::Gt => ord == Greater,
        CmpOp::Ge => ord != Less,
    }
}

/// `<category> where <condition>`; `category: None` is `any`.
#[derive(Debug, Clone)]
pub struct EventFilter {
    pub category: Option<Category>,
    pub condition: Node,
}

impl EventFilter {
    /// Whether `e` (an [`crate::Event`] or an interned view) matches.
    pub fn matches<E: EventFields + ?Sized>(&self, e: &E) -> bool {
        self.category.is_none_or(|c| c == e.category()) && self.condition.eval(e) == Some(true)
    }

    /// [`EventFilter::matches`] with the events earlier stages matched.
    pub fn matches_in<E: EventFields + ?Sized>(
        &self,
        e: &E,
        prior: &[std::sync::Arc<crate::Event>],
    ) -> bool {
        self.category.is_none_or(|c| c == e.category())
            && self.condition.eval_in(e, prior) == Some(true)
    }

    /// A necessary condition that reads no earlier stage: the terms of the
    /// top-level `and` that read only this event (everything, for a filter
    /// that reads no earlier stage).
    fn without_prior(&self) -> EventFilter {
        let condition = match &self.condition {
            Node::And(terms) => {
                Node::And(terms.iter().filter(|t| !t.reads_prior()).cloned().collect())
            }
            n if n.reads_prior() => Node::Const(Some(true)),
            n => n.clone(),
        };
        EventFilter {
            category: self.category,
            condition,
        }
    }
}

/// One `[ ... ] by ...` of a sequence, with its full join key: the
/// sequence-level `by` fields followed by the stage's own.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// What the event alone must satisfy: the whole condition, or for a
    /// stage that reads an earlier stage's event the part that does not.
    pub filter: EventFilter,
    /// The whole condition when it reads an earlier stage's event
    /// (`event0.file.path`): checked against the partial sequence it joins.
    pub with_prior: Option<Box<EventFilter>>,
    /// `None` for an optional field the schema does not know: always null.
    pub keys: Vec<Option<FieldId>>,
}

impl StageSpec {
    /// The join key of `e`, or `None` when a key field is null (such events
    /// never join a sequence).
    pub fn key_of<E: EventFields + ?Sized>(&self, e: &E) -> Option<Vec<String>> {
        self.keys
            .iter()
            .map(|k| k.and_then(|f| e.field(f).to_text()))
            .collect()
    }

    /// A 64-bit hash of the join key's text (what [`key_of`] returns),
    /// without allocating for string keys; `None` when a key field is
    /// null. The correlator keys its state by this and checks the real
    /// values before it reports a match.
    ///
    /// [`key_of`]: StageSpec::key_of
    pub fn key_hash<E: EventFields + ?Sized>(&self, e: &E) -> Option<u64> {
        let mut h: u64 = 0;
        for k in &self.keys {
            h = match e.field((*k)?) {
                FieldValue::Null => return None,
                FieldValue::Str(s) => crate::fasthash::hash_bytes(h, s.as_bytes()),
                other => crate::fasthash::hash_bytes(h, other.to_text()?.as_bytes()),
            };
        }
        Some(h)
    }
}

#[derive(Debug, Clone)]
pub struct SequenceSpec {
    pub maxspan_ns: Option<i64>,
    pub stages: Vec<StageSpec>,
    pub until: Option<StageSpec>,
    /// Names for the join key values in alerts (the first stage's fields).
    pub key_names: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum CompiledQuery {
    Event(EventFilter),
    Sequence(SequenceSpec),
}

impl CompiledQuery {
    /// The categories this query can match; `None` in the list means any.
    pub fn categories(&self) -> Vec<Option<Category>> {
        match self {
            CompiledQuery::Event(f) => vec![f.category],
            CompiledQuery::Sequence(s) => s
                .stages
                .iter()
                .chain(s.until.iter())
                .map(|st| st.filter.category)
                .collect(),
        }
    }
}

pub fn compile_query(q: &Query) -> Result<CompiledQuery, QueryError> {
    match q {
        Query::Event(eq) => Ok(CompiledQuery::Event(compile_event_query(eq)?)),
        Query::Sequence(sq) => compile_sequence(sq).map(CompiledQuery::Sequence),
    }
}

thread_local! {
    /// The stage aliases a sequence stage being compiled may read
    /// (`event0` → compiled stage 0): set only while one is compiled.
    static ALIASES: std::cell::RefCell<Vec<(String, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `event0.file.path` where `event0` names an earlier stage: that stage and
/// the field (`None`: one vigil's events never carry).
fn prior_field(path: &str) -> Option<(usize, Option<FieldId>)> {
    let (head, rest) = path.split_once('.')?;
    ALIASES.with_borrow(|a| {
        a.iter()
            .find(|(n, _)| n == head)
            .map(|&(_, stage)| (stage, fields::resolve(rest)))
    })
}

fn compile_sequence(sq: &ast::SequenceQuery) -> Result<SequenceSpec, QueryError> {
    if sq.stages.iter().map(|s| s.runs as usize).sum::<usize>() > 100 {
        return Err(QueryError::new(
            sq.offset,
            "a sequence may have at most 100 stages",
        ));
    }
    let shared = resolve_keys(&sq.by)?;
    let mut stages = Vec::new();
    let mut key_names: Option<Vec<String>> = None;
    let mut key_count = None;
    for st in sq.stages.iter().chain(sq.until.iter()) {
        let own = resolve_keys(&st.by)?;
        let n = shared.len() + own.len();
        match key_count {
            None => key_count = Some(n),
            Some(expected) if expected != n => {
                return Err(QueryError::new(
                    st.offset,
                    format!("every stage needs the same number of join keys: the first has {expected}, this one {n}"),
                ))
            }
            _ => {}
        }
        if key_names.is_none() {
            key_names = Some(
                sq.by
                    .iter()
                    .chain(st.by.iter())
                    .map(|f| f.path.clone())
                    .collect(),
            );
        }
        stages.push((st, own));
    }
    let mut compiled = Vec::new();
    let mut until = None;
    // `] as event0`: each alias names the first compiled stage of its stage.
    let mut aliases: Vec<(String, usize)> = Vec::new();
    for (i, (st, own)) in stages.into_iter().enumerate() {
        ALIASES.with_borrow_mut(|a| a.clone_from(&aliases));
        let whole = compile_event_query(&st.query);
        ALIASES.with_borrow_mut(Vec::clear);
        let whole = whole?;
        if let Some((name, at)) = &st.alias {
            if aliases.iter().any(|(n, _)| n == name) {
                return Err(QueryError::new(
                    *at,
                    format!("`{name}` names an earlier stage already"),
                ));
            }
            aliases.push((name.clone(), compiled.len()));
        }
        let spec = if whole.condition.reads_prior() {
            StageSpec {
                filter: whole.without_prior(),
                with_prior: Some(Box::new(whole)),
                keys: shared.iter().copied().chain(own).collect(),
            }
        } else {
            StageSpec {
                filter: whole,
                with_prior: None,
                keys: shared.iter().copied().chain(own).collect(),
            }
        };
        if i >= sq.stages.len() {
            until = Some(spec);
        } else {
            for _ in 0..st.runs {
                compiled.push(spec.clone());
            }
        }
    }
    Ok(SequenceSpec {
        maxspan_ns: sq.maxspan_ns,
        stages: compiled,
        until,
        key_names: key_names.unwrap_or_default(),
    })
}

fn resolve_keys(fields: &[ast::FieldRef]) -> Result<Vec<Option<FieldId>>, QueryError> {
    fields
        .iter()
        .map(|f| match resolve_field(f)? {
            Some(id)
                if matches!(
                    id.kind(),
                    FieldKind::Str
                        | FieldKind::Int
                        | FieldKind::Ip
                        | FieldKind::Bool
                        | FieldKind::Any
                ) =>
            {
                Ok(Some(id))
            }
            Some(id) => Err(QueryError::new(
                f.offset,
                format!(
                    "`{}` is a {} and cannot be a join key",
                    f.path,
                    id.kind().name()
                ),
            )),
            None => Ok(None),
        })
        .collect()
}

/// Resolves a field name. Elasticsearch's mapping is open, so a rule may
/// name any field: one outside the schema reads the event's extras (fields
/// a replayed ECS document carried) and is missing on vigil's own events.
/// [`super::warnings`] names such fields for `rules check`.
fn resolve_field(f: &ast::FieldRef) -> Result<Option<FieldId>, QueryError> {
    Ok(fields::resolve(&f.path))
}

pub fn compile_event_query(eq: &ast::EventQuery) -> Result<EventFilter, QueryError> {
    let condition = compile_expr(&eq.condition)?;
    Ok(match &eq.category {
        None => EventFilter {
            category: None,
            condition,
        },
        Some((name, _)) => match Category::parse(name) {
            Some(c) => EventFilter {
                category: Some(c),
                condition,
            },
            // A category vigil's sources never record (Elastic Defend's
            // endpoint-only ones, `persistence`): no event is of it.
            None => EventFilter {
                category: None,
                condition: Node::Const(Some(false)),
            },
        },
    })
}

/// Compiles the terms of an `and` / `or`, the trivial ones (type,
/// category, number, boolean, address checks) first: evaluation stops at
/// the first deciding term, and three-valued `and` / `or` do not depend on
/// the order of their terms (which have no side effects). String tests keep
/// the order the author wrote, which often puts the selective one first.
fn compile_terms(terms: &[Expr]) -> Result<Vec<Node>, QueryError> {
    let mut nodes = terms
        .iter()
        .map(compile_expr)
        .collect::<Result<Vec<_>, _>>()?;
    nodes.sort_by_key(|n| !n.is_trivial());
    Ok(nodes)
}

fn compile_expr(e: &Expr) -> Result<Node, QueryError> {
    Ok(match e {
        Expr::And(terms) => Node::And(compile_terms(terms)?),
        Expr::Or(terms) => Node::Or(compile_terms(terms)?),
        Expr::Not(inner, _) => Node::Not(Box::new(compile_expr(inner)?)),
        Expr::Truthy(op) => compile_truthy(op)?,
        Expr::Lineage { kind, query, .. } => Node::Lineage {
            kind: *kind,
            filter: std::sync::Arc::new(compile_event_query(query)?),
        },
        Expr::Compare {
            lhs,
            op,
            rhs,
            offset,
        } => compile_compare(lhs, *op, rhs, *offset)?,
        Expr::In {
            value,
            list,
            insensitive,
            negated,
            offset,
        } => {
            let node = compile_in(value, list, *insensitive, *offset)?;
            if *negated {
                Node::Not(Box::new(node))
            } else {
                node
            }
        }
        Expr::Match {
            value,
            op,
            patterns,
            offset,
        } => compile_match(value, *op, patterns, *offset)?,
    })
}

/// What an operand is, once names are resolved.
enum Val<'a> {
    Field(FieldId),
    /// A field of the event an earlier stage matched (`event0.file.path`).
    Prior(usize, FieldId),
    /// `?field` unknown to the schema: always null.
    Missing,
    Length(FieldId),
    Str(&'a str, usize),
    Int(i64),
    Bool(bool),
    Null,
    Cond(Node),
}

fn value_of(op: &Operand) -> Result<Val<'_>, QueryError> {
    Ok(match op {
        Operand::Field(f) => match prior_field(&f.path) {
            Some((stage, Some(id))) => Val::Prior(stage, id),
            Some((_, None)) => Val::Missing,
            None => match resolve_field(f)? {
                Some(id) => Val::Field(id),
                None => Val::Missing,
            },
        },
        Operand::Str(s, o) => Val::Str(s, *o),
        Operand::Int(i, _) => Val::Int(*i),
        Operand::Bool(b, _) => Val::Bool(*b),
        Operand::Null(_) => Val::Null,
        Operand::Call { name, args, offset } => {
            if name.eq_ignore_ascii_case("length") {
                match args.as_slice() {
                    [a] => match value_of(a)? {
                        Val::Field(f)
                            if matches!(
                                f.kind(),
                                FieldKind::Str
                                    | FieldKind::StrList
                                    | FieldKind::EventTypes
                                    | FieldKind::Any
                            ) =>
                        {
                            Val::Length(f)
                        }
                        Val::Missing => Val::Missing,
                        _ => {
                            return Err(QueryError::new(
                                a.offset(),
                                "`length` needs a string or list field",
                            ))
                        }
                    },
                    _ => {
                        return Err(QueryError::new(
                            *offset,
                            "`length` takes exactly one argument",
                        ))
                    }
                }
            } else {
                Val::Cond(compile_call(name, args, *offset)?)
            }
        }
    })
}

fn compile_truthy(op: &Operand) -> Result<Node, QueryError> {
    match value_of(op)? {
        Val::Cond(n) => Ok(n),
        Val::Bool(b) => Ok(Node::Const(Some(b))),
        Val::Null | Val::Missing => Ok(Node::Const(None)),
        Val::Field(f) if matches!(f.kind(), FieldKind::Bool | FieldKind::Any) => {
            Ok(Node::Bool { field: f, value: true })
        }
        _ => Err(QueryError::new(
            op.offset(),
            "expected a condition here (a comparison, a boolean field or a function such as cidrmatch)",
        )),
    }
}

fn compile_compare(
    lhs: &Operand,
    op: CmpOp,
    rhs: &Operand,
    offset: usize,
) -> Result<Node, QueryError> {
    let (l, r) = (value_of(lhs)?, value_of(rhs)?);
    // Put the field (or function) on the left.
    let (l, r, op) = match (&l, &r) {
        (
            Val::Str(..) | Val::Int(_) | Val::Bool(_) | Val::Null,
            Val::Field(_) | Val::Length(_) | Val::Missing | Val::Cond(_),
        ) => (r, l, flip(op)),
        // An earlier stage's field on the right of this event's.
        (Val::Prior(..), Val::Field(_)) => (r, l, flip(op)),
        _ => (l, r, op),
    };
    let mismatch =
        |what: &str| -> QueryError { QueryError::new(offset, format!("type mismatch: {what}")) };
    let eq_or_ne = |node: Node| -> Result<Node, QueryError> {
        match op {
            CmpOp::Eq => Ok(node),
            CmpOp::Ne => Ok(Node::Not(Box::new(node))),
            _ => Err(mismatch("only `==` and `!=` apply here")),
        }
    };
    match (l, r) {
        (Val::Missing, Val::Null) => Ok(Node::Const(Some(op == CmpOp::Eq))),
        // `f != "x"` is `must_not term` in Elasticsearch: true when `f` is
        // missing, as for a field the event lacks.
        (Val::Missing, _) if op == CmpOp::Ne => Ok(Node::Not(Box::new(Node::Const(None)))),
        (Val::Missing, _) => Ok(Node::Const(None)),
        (Val::Field(f), Val::Null) => eq_or_ne(Node::IsNull(f)),
        (Val::Field(f), Val::Str(s, soff)) => match f.kind() {
            FieldKind::Str | FieldKind::StrList | FieldKind::Any => match op {
                CmpOp::Eq | CmpOp::Ne => eq_or_ne(Node::Str {
                    field: f,
                    test: StrTest::Exact(vec![s.to_string()]),
                }),
                _ if matches!(f.kind(), FieldKind::Str | FieldKind::Any) => Ok(Node::StrOrd {
                    field: f,
                    op,
                    rhs: s.to_string(),
                }),
                _ => Err(mismatch("lists cannot be ordered")),
            },
            FieldKind::EventTypes => eq_or_ne(Node::HasType(event_type(s).into_iter().collect())),
            FieldKind::Category => eq_or_ne(Node::CategoryIn(category(s).into_iter().collect())),
            FieldKind::Ip => eq_or_ne(Node::IpIn {
                field: f,
                ips: vec![ip(s, soff)?],
            }),
            k => Err(mismatch(&format!(
                "`{}` is a {}, not a string",
                f.path(),
                k.name()
            ))),
        },
        // A number against a keyword (`user.id == 0`, which Elastic Defend's
        // rules write): the number's decimal text, as a term query on a
        // keyword field would match it.
        (Val::Field(f), Val::Int(i))
            if matches!(
                f.kind(),
                FieldKind::Str | FieldKind::StrList | FieldKind::Any
            ) && matches!(op, CmpOp::Eq | CmpOp::Ne) =>
        {
            eq_or_ne(Node::Str {
                field: f,
                test: StrTest::Exact(vec![i.to_string()]),
            })
        }
        // An extra holds a number or its text: both order as numbers.
        (Val::Field(f), Val::Int(i)) if matches!(f.kind(), FieldKind::Int | FieldKind::Any) => {
            Ok(Node::Int {
                value: IntSrc::Field(f),
                op,
                rhs: i,
            })
        }
        (Val::Length(f), Val::Int(i)) => Ok(Node::Int {
            value: IntSrc::Length(f),
            op,
            rhs: i,
        }),
        (Val::Field(f), Val::Bool(b)) if matches!(f.kind(), FieldKind::Bool | FieldKind::Any) => {
            eq_or_ne(Node::Bool { field: f, value: b })
        }
        (Val::Cond(n), Val::Bool(b)) => eq_or_ne(if b { n } else { Node::Not(Box::new(n)) }),
        (Val::Field(a), Val::Field(b)) => {
            if a.kind() != b.kind() && !a.is_extra() && !b.is_extra() {
                return Err(mismatch(&format!(
                    "`{}` is a {} but `{}` is a {}",
                    a.path(),
                    a.kind().name(),
                    b.path(),
                    b.kind().name()
                )));
            }
            eq_or_ne(Node::FieldEq {
                a: Src::This(a),
                b: Src::This(b),
            })
        }
        (Val::Field(a), Val::Prior(stage, b)) => eq_or_ne(Node::FieldEq {
            a: Src::This(a),
            b: Src::Stage(stage, b),
        }),
        (Val::Prior(..), _) | (_, Val::Prior(..)) => Err(mismatch(
            "an earlier stage's field compares with `==` or `!=` against a field of this event",
        )),
        (Val::Field(_), Val::Missing) => Ok(Node::Const(None)),
        (Val::Field(f), _) => Err(mismatch(&format!(
            "`{}` is a {} and cannot be compared with that value",
            f.path(),
            f.kind().name()
        ))),
        (Val::Length(_), _) => Err(mismatch("`length(...)` compares with a number")),
        (Val::Str(a, _), Val::Str(b, _)) => Ok(Node::Const(Some(compare(a.cmp(b), op)))),
        (Val::Int(a), Val::Int(b)) => Ok(Node::Const(Some(compare(a.cmp(&b), op)))),
        _ => Err(mismatch("these two values cannot be compared")),
    }
}

fn flip(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        other => other,
    }
}

/// An `event.type` value; `None` for one vigil's events never carry
/// (Elasticsearch takes any keyword, e.g. `process_started`): it matches no
/// event, and [`super::warnings`] names it.
fn event_type(s: &str) -> Option<EventType> {
    EventType::parse(s)
}

/// An `event.category` value, as [`event_type`].
fn category(s: &str) -> Option<Category> {
    Category::parse(s)
}

fn ip(s: &str, offset: usize) -> Result<IpAddr, QueryError> {
    s.parse()
        .map_err(|_| QueryError::new(offset, format!("{s:?} is not an IP address")))
}

/// The string literals of a list, or an error at the first non-string.
fn string_literals(list: &[Operand]) -> Result<Vec<(&str, usize)>, QueryError> {
    list.iter()
        .map(|o| match o {
            Operand::Str(s, off) => Ok((s.as_str(), *off)),
            other => Err(QueryError::new(other.offset(), "expected a string literal")),
        })
        .collect()
}

fn compile_in(
    value: &Operand,
    list: &[Operand],
    insensitive: bool,
    offset: usize,
) -> Result<Node, QueryError> {
    let field = match value_of(value)? {
        Val::Field(f) => f,
        Val::Missing => return Ok(Node::Const(None)),
        _ => return Err(QueryError::new(offset, "`in` needs a field on its left")),
    };
    match field.kind() {
        // Whatever an extra holds compares as text: numbers by their decimal
        // form, as a term query on a keyword field matches them.
        FieldKind::Any => {
            let values = list
                .iter()
                .map(|o| match o {
                    Operand::Str(s, _) => Ok(s.clone()),
                    Operand::Int(i, _) => Ok(i.to_string()),
                    Operand::Bool(b, _) => Ok(b.to_string()),
                    other => Err(QueryError::new(other.offset(), "expected a literal value")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let test = if insensitive {
                StrTest::ExactCi(CiSet::new(values))
            } else {
                StrTest::Exact(values)
            };
            Ok(Node::Str { field, test })
        }
        FieldKind::Str | FieldKind::StrList => {
            let values = string_literals(list)?;
            let test = if insensitive {
                StrTest::ExactCi(CiSet::new(values.iter().map(|(s, _)| s.to_string())))
            } else {
                StrTest::Exact(values.iter().map(|(s, _)| s.to_string()).collect())
            };
            Ok(Node::Str { field, test })
        }
        FieldKind::EventTypes => Ok(Node::HasType(
            string_literals(list)?
                .into_iter()
                .filter_map(|(s, _)| event_type(s))
                .collect(),
        )),
        FieldKind::Category => Ok(Node::CategoryIn(
            string_literals(list)?
                .into_iter()
                .filter_map(|(s, _)| category(s))
                .collect(),
        )),
        FieldKind::Ip => Ok(Node::IpIn {
            field,
            ips: string_literals(list)?
                .into_iter()
                .map(|(s, o)| ip(s, o))
                .collect::<Result<_, _>>()?,
        }),
        FieldKind::Int => {
            let nodes = list
                .iter()
                .map(|o| match o {
                    Operand::Int(i, _) => Ok(Node::Int {
                        value: IntSrc::Field(field),
                        op: CmpOp::Eq,
                        rhs: *i,
                    }),
                    other => Err(QueryError::new(other.offset(), "expected a number")),
                })
                .collect::<Result<_, _>>()?;
            Ok(Node::Or(nodes))
        }
        FieldKind::Bool => Err(QueryError::new(
            offset,
            "`in` does not apply to a boolean field",
        )),
    }
}

fn compile_match(
    value: &Operand,
    op: MatchOp,
    patterns: &[Operand],
    offset: usize,
) -> Result<Node, QueryError> {
    let field = match value_of(value)? {
        Val::Field(f) => f,
        Val::Missing => return Ok(Node::Const(None)),
        _ => {
            return Err(QueryError::new(
                offset,
                "pattern matching needs a field on its left",
            ))
        }
    };
    if matches!(field.kind(), FieldKind::Int | FieldKind::Bool) {
        return Err(QueryError::new(
            offset,
            format!(
                "type mismatch: `{}` is a {}, not a string",
                field.path(),
                field.kind().name()
            ),
        ));
    }
    let pats = string_literals(patterns)?;
    let test = match op {
        MatchOp::Colon | MatchOp::Like { .. } => {
            let insensitive = !matches!(op, MatchOp::Like { insensitive: false });
            if insensitive && pats.iter().all(|(p, _)| !p.contains(['*', '?'])) {
                StrTest::ExactCi(CiSet::new(pats.iter().map(|(p, _)| p.to_string())))
            } else {
                StrTest::Patterns(PatternSet::new(
                    pats.iter()
                        .map(|(p, _)| Pattern::wildcard(p, insensitive))
                        .collect(),
                ))
            }
        }
        MatchOp::Regex { insensitive } => {
            // Elasticsearch regexes are Lucene's: they match the whole
            // value, and `.` is any character, a newline too (a multi-line
            // `osascript -e` script is one value).
            let alternatives: Vec<String> = pats.iter().map(|(p, _)| format!("(?:{p})")).collect();
            let full = format!("^(?:{})$", alternatives.join("|"));
            let re = regex::RegexBuilder::new(&full)
                .case_insensitive(insensitive)
                .dot_matches_new_line(true)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| {
                    // Point at the pattern that is wrong, not the first one.
                    let at = pats
                        .iter()
                        .find(|(p, _)| regex::Regex::new(&format!("(?:{p})")).is_err())
                        .or(pats.first())
                        .map_or(offset, |(_, o)| *o);
                    QueryError::new(at, format!("invalid regex: {}", first_line(&e.to_string())))
                })?;
            StrTest::Regex(re)
        }
    };
    Ok(Node::Str { field, test })
}

fn first_line(s: &str) -> &str {
    s.lines().last().unwrap_or(s).trim()
}

fn compile_call(name: &str, args: &[Operand], offset: usize) -> Result<Node, QueryError> {
    let lower = name.to_ascii_lowercase();
    let (base, insensitive) = match lower.strip_suffix('~') {
        Some(b) => (b, true),
        None => (lower.as_str(), false),
    };
    let (first, rest) = args
        .split_first()
        .ok_or_else(|| QueryError::new(offset, format!("`{name}` needs arguments")))?;
    if rest.is_empty() {
        return Err(QueryError::new(
            offset,
            format!("`{name}` needs at least two arguments"),
        ));
    }
    let first_src = match value_of(first)? {
        Val::Field(f) => Some(Src::This(f)),
        Val::Prior(stage, f) => Some(Src::Stage(stage, f)),
        Val::Missing => None,
        _ => {
            return Err(QueryError::new(
                first.offset(),
                format!("the first argument of `{name}` must be a field"),
            ))
        }
    };
    // A field as the second argument (of this event or an earlier stage's):
    // its value is only known per event.
    if let ([other], Some(kind)) = (rest, LiteralKind::of_function(base)) {
        if let Operand::Field(_) = other {
            let other = match value_of(other)? {
                Val::Field(o) => Some(Src::This(o)),
                Val::Prior(stage, o) => Some(Src::Stage(stage, o)),
                _ => None,
            };
            return Ok(match (first_src, other) {
                (Some(f), Some(o)) => {
                    let (Src::This(id) | Src::Stage(_, id)) = f;
                    if matches!(id.kind(), FieldKind::Int | FieldKind::Bool) {
                        return Err(QueryError::new(
                            first.offset(),
                            format!(
                                "type mismatch: `{name}` needs a string field, `{}` is a {}",
                                id.path(),
                                id.kind().name()
                            ),
                        ));
                    }
                    Node::FieldText {
                        field: f,
                        other: o,
                        kind,
                        insensitive,
                    }
                }
                // Either field is one vigil's events never carry: null.
                _ => Node::Const(None),
            });
        }
    }
    let field = match first_src {
        Some(Src::This(f)) => Some(f),
        Some(Src::Stage(..)) => {
            return Err(QueryError::new(
                first.offset(),
                format!(
                    "`{name}` reads an earlier stage's field only against a field of this event"
                ),
            ))
        }
        None => None,
    };
    let literal = |kind| -> Result<StrTest, QueryError> {
        Ok(StrTest::Patterns(PatternSet::new(
            string_literals(rest)?
                .into_iter()
                .map(|(s, _)| Pattern::literal(kind, s, insensitive))
                .collect(),
        )))
    };
    let test = match base {
        "cidrmatch" => {
            let nets = string_literals(rest)?
                .into_iter()
                .map(|(s, o)| Cidr::parse(s).map_err(|m| QueryError::new(o, m)))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(match field {
                None => Node::Const(None),
                Some(f) if matches!(f.kind(), FieldKind::Ip | FieldKind::Any) => Node::Cidr { field: f, nets },
                Some(f) => {
                    return Err(QueryError::new(
                        first.offset(),
                        format!("type mismatch: cidrmatch needs an IP field, `{}` is a {}", f.path(), f.kind().name()),
                    ))
                }
            });
        }
        "startswith" => literal(LiteralKind::Prefix)?,
        "endswith" => literal(LiteralKind::Suffix)?,
        "stringcontains" => literal(LiteralKind::Contains)?,
        "wildcard" => StrTest::Patterns(PatternSet::new(
            string_literals(rest)?
                .into_iter()
                .map(|(s, _)| Pattern::wildcard(s, true))
                .collect(),
        )),
        _ => {
            return Err(QueryError::new(
                offset,
                format!("unknown function `{name}` (known: cidrmatch, startswith, endswith, stringcontains, wildcard, length; add `~` for case-insensitive)"),
            ))
        }
    };
    Ok(match field {
        None => Node::Const(None),
        Some(f) if matches!(f.kind(), FieldKind::Int | FieldKind::Bool) => {
            return Err(QueryError::new(
                first.offset(),
                format!(
                    "type mismatch: `{name}` needs a string field, `{}` is a {}",
                    f.path(),
                    f.kind().name()
                ),
            ))
        }
        Some(f) => Node::Str { field: f, test },
    })
}
