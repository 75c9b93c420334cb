//! The EQL-style query language: lex, parse, type-check and compile to
//! native matchers. Used by rules and by hunts alike.

pub mod ast;
pub mod compile;
pub mod fields;
pub mod guard;
mod lexer;
pub mod matchers;
pub mod memo;
mod parser;
mod warnings;

use thiserror::Error;

pub use compile::{CompiledQuery, EventFilter, Node, SequenceSpec, StageSpec};
pub use fields::EventFields;
pub use parser::parse_query;
pub use warnings::warnings;

/// An error in a query, at a byte offset of the query text.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("{message}")]
pub struct QueryError {
    pub offset: usize,
    pub message: String,
}

impl QueryError {
    pub fn new(offset: usize, message: impl Into<String>) -> QueryError {
        QueryError {
            offset,
            message: message.into(),
        }
    }

    /// 1-based line and column of the error within `text`.
    pub fn line_col(&self, text: &str) -> (usize, usize) {
        line_col(text, self.offset)
    }
}

/// 1-based (line, column in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// Parses and compiles a query in one step.
pub fn compile(text: &str) -> Result<CompiledQuery, QueryError> {
    compile::compile_query(&parse_query(text)?)
}

/// Compiles a query and says what in it vigil's events cannot match
/// ([`warnings`]): the query runs either way.
pub fn compile_with_warnings(text: &str) -> Result<(CompiledQuery, Vec<QueryError>), QueryError> {
    let ast = parse_query(text)?;
    let compiled = compile::compile_query(&ast)?;
    Ok((compiled, warnings(&ast)))
}
