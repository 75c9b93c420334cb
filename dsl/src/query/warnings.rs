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
        Query::Event(e) => event_query(e, &[], &mut w),
        Query::Sequence(s) => {
            s.by.iter().for_each(|f| field(f, &[], &mut w));
            // `] as event0`: later stages may read `event0.field`.
            let mut aliases: Vec<&str> = Vec::new();
            for stage in s.stages.iter().chain(&s.until) {
                event_query(&stage.query, &aliases, &mut w);
                stage.by.iter().for_each(|f| field(f, &[], &mut w));
                if let Some((name, _)) = &stage.alias {
                    aliases.push(name);
                }
            }
        }
    }
    w
}

fn event_query(e: &EventQuery, aliases: &[&str], w: &mut Vec<QueryError>) {
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
    expr(&e.condition, aliases, w);
}

fn expr(e: &Expr, aliases: &[&str], w: &mut Vec<QueryError>) {
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter().for_each(|x| expr(x, aliases, w)),
        Expr::Not(x, _) => expr(x, aliases, w),
        Expr::Compare { lhs, rhs, .. } => {
            operand(lhs, aliases, w);
            operand(rhs, aliases, w);
            values(lhs, std::slice::from_ref(rhs), w);
            values(rhs, std::slice::from_ref(lhs), w);
        }
        Expr::In { value, list, .. } => {
            operand(value, aliases, w);
            list.iter().for_each(|o| operand(o, aliases, w));
            values(value, list, w);
        }
        Expr::Match {
            value, patterns, ..
        } => {
            operand(value, aliases, w);
            patterns.iter().for_each(|o| operand(o, aliases, w));
        }
        Expr::Truthy(o) => operand(o, aliases, w),
        Expr::Lineage { query, .. } => event_query(query, aliases, w),
    }
}

fn operand(o: &Operand, aliases: &[&str], w: &mut Vec<QueryError>) {
    match o {
        Operand::Field(f) => field(f, aliases, w),
        Operand::Call { args, .. } => args.iter().for_each(|a| operand(a, aliases, w)),
        Operand::Str(..) | Operand::Int(..) | Operand::Bool(..) | Operand::Null(..) => {}
    }
}

/// A field outside the schema, unless marked `?` (absent by intent); an
/// earlier stage's (`event0.file.path`) is checked without its alias.
fn field(f: &FieldRef, aliases: &[&str], w: &mut Vec<QueryError>) {
    let path = match f.path.split_once('.') {
        Some((head, rest)) if aliases.contains(&head) => rest,
        _ => f.path.as_str(),
    };
    if f.optional || fields::lookup(path).is_some() {
        return;
    }
    let prefix = path.rsplit_once('.').map_or(path, |(p, _)| p);
    let near: Vec<&str> = fields::all_paths()
        .filter(|p| p.starts_with(prefix) && p.len() <= prefix.len() + 30)
        .take(6)
        .collect();
    let mut message = format!(
        "vigil's own events have no field `{path}`: it reads as missing on them (only replayed ECS documents may carry it; write `?{path}` if that is intended)"
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
