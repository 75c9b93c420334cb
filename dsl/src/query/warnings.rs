//! What a query names that vigil's events never carry: fields outside its
//! schema, `event.type` and `event.category` values it does not record, an
//! event category it has no events of. Such a query still compiles (the
//! names read as missing, the values match nothing), as Elasticsearch's open
//! mapping would take it; these warnings say where, so that a typo still
//! shows (`vigil rules check`, and `--strict` makes them errors).

use super::ast::{EventQuery, Expr, FieldRef, Operand, Query};
use super::fields;
use super::QueryError;
use crate::event::{Category, EventType};

/// Everything in `q` vigil's events cannot match, at its offset.
pub fn warnings(q: &Query) -> Vec<QueryError> {
    let mut w = Vec::new();
    match q {
        Query::Event(e) => event_query(e, &mut w),
        Query::Sequence(s) => {
            s.by.iter().for_each(|f| field(f, &mut w));
            for stage in s.stages.iter().chain(&s.until) {
                event_query(&stage.query, &mut w);
                stage.by.iter().for_each(|f| field(f, &mut w));
            }
        }
    }
    w
}

fn event_query(e: &EventQuery, w: &mut Vec<QueryError>) {
    if let Some((name, offset)) = &e.category {
        if Category::parse(name).is_none() {
            w.push(QueryError::new(
                *offset,
                format!(
                    "vigil records no `{name}` events, so this matches nothing here (categories: any, {})",
                    Category::ALL.map(|c| c.as_str()).join(", ")
                ),
            ));
        }
    }
    expr(&e.condition, w);
}

fn expr(e: &Expr, w: &mut Vec<QueryError>) {
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter().for_each(|x| expr(x, w)),
        Expr::Not(x, _) => expr(x, w),
        Expr::Compare { lhs, rhs, .. } => {
            operand(lhs, w);
            operand(rhs, w);
            values(lhs, std::slice::from_ref(rhs), w);
            values(rhs, std::slice::from_ref(lhs), w);
        }
        Expr::In { value, list, .. } => {
            operand(value, w);
            list.iter().for_each(|o| operand(o, w));
            values(value, list, w);
        }
        Expr::Match {
            value, patterns, ..
        } => {
            operand(value, w);
            patterns.iter().for_each(|o| operand(o, w));
        }
        Expr::Truthy(o) => operand(o, w),
    }
}

fn operand(o: &Operand, w: &mut Vec<QueryError>) {
    match o {
        Operand::Field(f) => field(f, w),
        Operand::Call { args, .. } => args.iter().for_each(|a| operand(a, w)),
        Operand::Str(..) | Operand::Int(..) | Operand::Bool(..) | Operand::Null(..) => {}
    }
}

/// A field outside the schema, unless marked `?` (absent by intent).
fn field(f: &FieldRef, w: &mut Vec<QueryError>) {
    if f.optional || fields::lookup(&f.path).is_some() {
        return;
    }
    let prefix = f.path.rsplit_once('.').map_or(f.path.as_str(), |(p, _)| p);
    let near: Vec<&str> = fields::all_paths()
        .filter(|p| p.starts_with(prefix) && p.len() <= prefix.len() + 30)
        .take(6)
        .collect();
    let mut message = format!(
        "vigil's events have no field `{}`: it reads as missing here",
        f.path
    );
    if !near.is_empty() {
        message.push_str(&format!("; fields nearby: {}", near.join(", ")));
    }
    w.push(QueryError::new(f.offset, message));
}

/// `event.type` / `event.category` values vigil never records.
fn values(value: &Operand, list: &[Operand], w: &mut Vec<QueryError>) {
    let Operand::Field(f) = value else {
        return;
    };
    let known: fn(&str) -> bool = match f.path.as_str() {
        "event.type" => |s| EventType::parse(s).is_some(),
        "event.category" => |s| Category::parse(s).is_some(),
        _ => return,
    };
    for o in list {
        if let Operand::Str(s, offset) = o {
            if !known(s) {
                w.push(QueryError::new(
                    *offset,
                    format!(
                        "vigil's events never have {} {s:?}, so this value matches nothing here",
                        f.path
                    ),
                ));
            }
        }
    }
}
