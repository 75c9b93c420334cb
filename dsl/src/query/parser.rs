//! Recursive-descent parser for the EQL subset vigil supports.
//!
//! Precedence, loosest first: `or`, `and`, `not`, comparison. Keywords are
//! plain identifiers checked by text, so field names may contain them.

use super::ast::*;
use super::lexer::{tokenize, Tok, Token};
use super::QueryError;
use crate::time::parse_duration_ns;

pub fn parse_query(src: &str) -> Result<Query, QueryError> {
    let mut p = Parser {
        toks: tokenize(src)?,
        pos: 0,
        depth: 0,
    };
    let q = if p.peek_word("sequence") {
        Query::Sequence(p.sequence()?)
    } else {
        Query::Event(p.event_query()?)
    };
    p.expect_eof()?;
    Ok(q)
}

/// Deeply nested input must not overflow the stack.
const MAX_DEPTH: usize = 64;

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

fn is_keyword(w: &str) -> bool {
    matches!(
        w,
        "and"
            | "or"
            | "not"
            | "in"
            | "in~"
            | "like"
            | "like~"
            | "regex"
            | "regex~"
            | "where"
            | "by"
            | "with"
            | "until"
            | "sequence"
    )
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].tok
    }

    fn offset(&self) -> usize {
        self.toks[self.pos].offset
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == w)
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.peek_word(w) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == t {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: Tok, what: &str) -> Result<(), QueryError> {
        if self.eat(&t) {
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn unexpected(&self, wanted: &str) -> QueryError {
        let found = match self.peek() {
            Tok::Eof => "end of query".to_string(),
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Int(i) => format!("number {i}"),
            Tok::Duration(d) => format!("`{d}`"),
            other => format!("`{}`", tok_text(other)),
        };
        QueryError::new(self.offset(), format!("expected {wanted}, found {found}"))
    }

    fn expect_eof(&self) -> Result<(), QueryError> {
        if *self.peek() == Tok::Eof {
            Ok(())
        } else {
            Err(self.unexpected("end of query"))
        }
    }

    fn event_query(&mut self) -> Result<EventQuery, QueryError> {
        let offset = self.offset();
        // Peek before consuming: at the end of input `bump` stays put, so
        // stepping back after it pointed before the real token (and
        // underflowed on an empty query).
        let category = match self.peek().clone() {
            Tok::Ident(w) if w == "any" => None,
            Tok::Ident(w) if !is_keyword(&w) => Some((w, offset)),
            _ => {
                return Err(self.unexpected(
                    "an event category such as `process`, `file`, `network` or `any`",
                ));
            }
        };
        self.bump();
        if !self.eat_word("where") {
            return Err(self.unexpected("`where`"));
        }
        let condition = self.expr()?;
        Ok(EventQuery {
            category,
            condition,
        })
    }

    fn sequence(&mut self) -> Result<SequenceQuery, QueryError> {
        let offset = self.offset();
        self.bump(); // `sequence`
        let mut by = Vec::new();
        let mut maxspan_ns = None;
        loop {
            if self.eat_word("by") {
                by = self.field_list()?;
            } else if self.eat_word("with") {
                if !self.eat_word("maxspan") {
                    return Err(self.unexpected("`maxspan`"));
                }
                self.expect(Tok::Assign, "`=`")?;
                let at = self.offset();
                match self.bump().tok {
                    Tok::Duration(d) => {
                        maxspan_ns =
                            Some(parse_duration_ns(&d).map_err(|m| QueryError::new(at, m))?)
                    }
                    _ => {
                        return Err(QueryError::new(
                            at,
                            "expected a duration such as `15s`, `1m` or `2h`",
                        ))
                    }
                }
            } else {
                break;
            }
        }
        let mut stages = Vec::new();
        while *self.peek() == Tok::LBracket {
            stages.push(self.stage()?);
        }
        if stages.is_empty() {
            return Err(self.unexpected("a `[` stage"));
        }
        let until = if self.eat_word("until") {
            if *self.peek() != Tok::LBracket {
                return Err(self.unexpected("a `[` stage after `until`"));
            }
            Some(self.stage()?)
        } else {
            None
        };
        Ok(SequenceQuery {
            by,
            maxspan_ns,
            stages,
            until,
            offset,
        })
    }

    fn stage(&mut self) -> Result<Stage, QueryError> {
        let offset = self.offset();
        self.expect(Tok::LBracket, "`[`")?;
        let query = self.event_query()?;
        self.expect(Tok::RBracket, "`]` to close the stage")?;
        let mut by = Vec::new();
        let mut runs = 1;
        let mut alias = None;
        loop {
            if self.eat_word("by") {
                by = self.field_list()?;
            } else if self.eat_word("as") {
                let at = self.offset();
                match self.bump().tok {
                    Tok::Ident(name) if !name.contains('.') => alias = Some((name, at)),
                    _ => {
                        return Err(QueryError::new(
                            at,
                            "`as` needs a name for the stage's event",
                        ))
                    }
                }
            } else if self.peek_word("with") && self.word_at(1, "runs") {
                self.bump();
                self.bump();
                self.expect(Tok::Assign, "`=`")?;
                let at = self.offset();
                match self.bump().tok {
                    Tok::Int(n) if (1..=100).contains(&n) => runs = n as u32,
                    _ => return Err(QueryError::new(at, "`runs` needs a number from 1 to 100")),
                }
            } else {
                break;
            }
        }
        Ok(Stage {
            query,
            by,
            runs,
            alias,
            offset,
        })
    }

    fn word_at(&self, ahead: usize, w: &str) -> bool {
        matches!(self.toks.get(self.pos + ahead).map(|t| &t.tok), Some(Tok::Ident(s)) if s == w)
    }

    fn field_list(&mut self) -> Result<Vec<FieldRef>, QueryError> {
        let mut out = vec![self.field_ref()?];
        while self.eat(&Tok::Comma) {
            out.push(self.field_ref()?);
        }
        Ok(out)
    }

    fn field_ref(&mut self) -> Result<FieldRef, QueryError> {
        let offset = self.offset();
        let optional = self.eat(&Tok::Question);
        match self.peek().clone() {
            Tok::Ident(path) if !is_keyword(&path) => {
                self.bump();
                Ok(FieldRef {
                    path,
                    optional,
                    offset,
                })
            }
            _ => Err(self.unexpected("a field name")),
        }
    }

    fn enter(&mut self) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(QueryError::new(self.offset(), "query nests too deeply"))
        } else {
            Ok(())
        }
    }

    fn expr(&mut self) -> Result<Expr, QueryError> {
        self.enter()?;
        let mut terms = vec![self.and_expr()?];
        while self.eat_word("or") {
            terms.push(self.and_expr()?);
        }
        self.depth -= 1;
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::Or(terms)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, QueryError> {
        let mut terms = vec![self.not_expr()?];
        while self.eat_word("and") {
            terms.push(self.not_expr()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::And(terms)
        })
    }

    fn not_expr(&mut self) -> Result<Expr, QueryError> {
        let offset = self.offset();
        if self.eat_word("not") {
            self.enter()?;
            let inner = self.not_expr()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner), offset));
        }
        if self.eat(&Tok::LParen) {
            let inner = self.expr()?;
            self.expect(Tok::RParen, "`)`")?;
            return Ok(inner);
        }
        let lineage = [
            ("descendant", LineageKind::Descendant),
            ("child", LineageKind::Child),
            ("event", LineageKind::Event),
        ]
        .into_iter()
        .find(|(w, _)| self.peek_word(w) && self.word_at(1, "of"));
        if let Some((_, kind)) = lineage {
            self.bump();
            self.bump();
            self.expect(Tok::LBracket, "`[` after `of`")?;
            self.enter()?;
            let query = self.event_query()?;
            self.depth -= 1;
            self.expect(Tok::RBracket, "`]` to close the lineage query")?;
            return Ok(Expr::Lineage {
                kind,
                query: Box::new(query),
                offset,
            });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, QueryError> {
        let lhs = self.operand()?;
        let offset = self.offset();
        let op = match self.peek() {
            Tok::Eq => Some(CmpOp::Eq),
            Tok::Ne => Some(CmpOp::Ne),
            Tok::Lt => Some(CmpOp::Lt),
            Tok::Le => Some(CmpOp::Le),
            Tok::Gt => Some(CmpOp::Gt),
            Tok::Ge => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let rhs = self.operand()?;
            return Ok(Expr::Compare {
                lhs,
                op,
                rhs,
                offset,
            });
        }
        if self.eat(&Tok::Colon) {
            let patterns = self.value_or_list()?;
            return Ok(Expr::Match {
                value: lhs,
                op: MatchOp::Colon,
                patterns,
                offset,
            });
        }
        let negated = self.peek_word("not") && (self.word_at(1, "in") || self.word_at(1, "in~"));
        if negated {
            self.bump();
        }
        if let Tok::Ident(w) = self.peek().clone() {
            let op = match w.as_str() {
                "in" | "in~" => {
                    self.bump();
                    self.expect(Tok::LParen, "`(` after `in`")?;
                    let list = self.operand_list()?;
                    return Ok(Expr::In {
                        value: lhs,
                        list,
                        insensitive: w == "in~",
                        negated,
                        offset,
                    });
                }
                "like" => MatchOp::Like { insensitive: false },
                "like~" => MatchOp::Like { insensitive: true },
                "regex" => MatchOp::Regex { insensitive: false },
                "regex~" => MatchOp::Regex { insensitive: true },
                _ => return Ok(Expr::Truthy(lhs)),
            };
            self.bump();
            let patterns = self.value_or_list()?;
            return Ok(Expr::Match {
                value: lhs,
                op,
                patterns,
                offset,
            });
        }
        Ok(Expr::Truthy(lhs))
    }

    /// `"x"` or `("x", "y")`.
    fn value_or_list(&mut self) -> Result<Vec<Operand>, QueryError> {
        if self.eat(&Tok::LParen) {
            self.operand_list()
        } else {
            Ok(vec![self.operand()?])
        }
    }

    /// The rest of `(a, b, c)` after the opening parenthesis.
    fn operand_list(&mut self) -> Result<Vec<Operand>, QueryError> {
        let mut out = vec![self.operand()?];
        while self.eat(&Tok::Comma) {
            out.push(self.operand()?);
        }
        self.expect(Tok::RParen, "`,` or `)`")?;
        Ok(out)
    }

    fn operand(&mut self) -> Result<Operand, QueryError> {
        let offset = self.offset();
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(Operand::Str(s, offset))
            }
            Tok::Int(i) => {
                self.bump();
                Ok(Operand::Int(i, offset))
            }
            Tok::Question => Ok(Operand::Field(self.field_ref()?)),
            Tok::Ident(w) if w == "true" || w == "false" => {
                self.bump();
                Ok(Operand::Bool(w == "true", offset))
            }
            Tok::Ident(w) if w == "null" => {
                self.bump();
                Ok(Operand::Null(offset))
            }
            Tok::Ident(w) if !is_keyword(&w) => {
                if self.toks.get(self.pos + 1).map(|t| &t.tok) == Some(&Tok::LParen) {
                    self.bump();
                    self.bump();
                    self.enter()?;
                    let args = if self.eat(&Tok::RParen) {
                        Vec::new()
                    } else {
                        self.operand_list()?
                    };
                    self.depth -= 1;
                    return Ok(Operand::Call {
                        name: w,
                        args,
                        offset,
                    });
                }
                Ok(Operand::Field(self.field_ref()?))
            }
            _ => Err(self.unexpected("a field, value or function call")),
        }
    }
}

fn tok_text(t: &Tok) -> &'static str {
    match t {
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::LBracket => "[",
        Tok::RBracket => "]",
        Tok::Comma => ",",
        Tok::Colon => ":",
        Tok::Question => "?",
        Tok::Assign => "=",
        Tok::Eq => "==",
        Tok::Ne => "!=",
        Tok::Lt => "<",
        Tok::Le => "<=",
        Tok::Gt => ">",
        Tok::Ge => ">=",
        _ => "token",
    }
}
