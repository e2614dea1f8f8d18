//! Expression languages: GitHub Actions' `${{ }}` with GitHub's types, coercions and functions,
//! and (in [`exprlang`]) Argo Rollouts' metric conditions.
//!
//! Newcomers: start with [`parse`] (text to [`Expr`], errors with the exact column) and
//! [`Expr::eval`] (against a [`Host`] that supplies contexts and status). [`Template`] handles
//! strings with embedded `${{ }}`, [`Condition`] handles `if:` (implicit `success() &&`), and
//! [`Value`] holds the coercion rules (truthiness, numbers, strings, loose equality).

mod eval;
pub mod exprlang;
mod lexer;
mod parser;
mod template;
mod value;

pub use eval::{EvalError, Host, contexts, format};
pub use parser::{
    ALL_CONTEXTS, BinOp, Expr, Function, MAX_DEPTH, MAX_EXPRESSION_LENGTH, Node, Scope, parse,
};
pub use template::{Condition, Part, Template, has_expression};
pub use value::{Map, Value, eq_ignore_case, format_number, parse_number};

/// A syntax error: the 1-based column (in characters) where it was found, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

impl ParseError {
    pub fn new(column: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            column,
            message: message.into(),
        }
    }
}
