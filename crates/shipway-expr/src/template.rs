//! Strings with embedded `${{ }}` expressions, and `if:` conditions.

use crate::ParseError;
use crate::eval::{EvalError, Host};
use crate::parser::{Expr, Function, Node, Scope, parse};
use crate::value::Value;

#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text(String),
    /// An expression and the 1-based column, within the whole string, where its text starts
    /// (after `${{`).
    Expr(Expr, usize),
}

/// A string value that may contain `${{ }}` expressions.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pub parts: Vec<Part>,
}

/// Whether `s` contains an expression at all.
pub fn has_expression(s: &str) -> bool {
    s.contains("${{")
}

impl Template {
    /// Parses every `${{ }}` in `s`; error columns are within `s`. `}}` inside a quoted string
    /// does not end the expression.
    pub fn parse(s: &str, scope: &Scope) -> Result<Template, ParseError> {
        let chars: Vec<char> = s.chars().collect();
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '$' && chars.get(i + 1) == Some(&'{') && chars.get(i + 2) == Some(&'{') {
                let start = i + 3;
                let mut j = start;
                let mut quoted = false;
                let end = loop {
                    match chars.get(j) {
                        None => {
                            return Err(ParseError::new(
                                i + 1,
                                "the expression starting here is not closed with '}}'",
                            ));
                        }
                        Some('\'') => quoted = !quoted,
                        Some('}') if !quoted && chars.get(j + 1) == Some(&'}') => break j,
                        _ => {}
                    }
                    j += 1;
                };
                let inner: String = chars[start..end].iter().collect();
                let expr = parse(&inner, scope)
                    .map_err(|e| ParseError::new(e.column + start, e.message))?;
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Expr(expr, start + 1));
                i = end + 2;
            } else {
                text.push(chars[i]);
                i += 1;
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    /// A template that is only text.
    pub fn literal(s: &str) -> Template {
        Template {
            parts: vec![Part::Text(s.to_string())],
        }
    }

    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The expressions, with their columns.
    pub fn expressions(&self) -> impl Iterator<Item = (&Expr, usize)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e, c) => Some((e, *c)),
            Part::Text(_) => None,
        })
    }

    /// Evaluates the template. A string that is exactly one `${{ }}` keeps the expression's type
    /// (so `${{ fromJSON('[1]') }}` is an array); otherwise the parts are joined as strings.
    /// Error columns are within the whole string.
    pub fn eval(&self, host: &dyn Host) -> Result<Value, EvalError> {
        if let [Part::Expr(e, col)] = self.parts.as_slice() {
            return e.eval(host).map_err(|x| shift(x, *col));
        }
        Ok(Value::String(self.eval_string(host)?))
    }

    /// Evaluates the template to a string.
    pub fn eval_string(&self, host: &dyn Host) -> Result<String, EvalError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e, col) => {
                    out.push_str(&e.eval(host).map_err(|x| shift(x, *col))?.to_display());
                }
            }
        }
        Ok(out)
    }
}

fn shift(e: EvalError, col: usize) -> EvalError {
    EvalError {
        column: e.column + col - 1,
        message: e.message,
    }
}

/// An `if:` condition. Written with or without `${{ }}`; without a status function it means
/// `success() && (...)`.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// An expression, and the column where its text starts within the written value.
    Expr(Expr, usize),
    /// Text mixed with `${{ }}` (`if: ${{ a }} == b`): GitHub evaluates it as a string, which is
    /// true whenever it is not empty. Kept for fidelity; validation warns about it.
    Template(Template),
}

impl Condition {
    pub fn parse(s: &str, scope: &Scope) -> Result<Condition, ParseError> {
        let trimmed = s.trim();
        let lead = s.chars().count() - s.trim_start().chars().count();
        if trimmed.is_empty() {
            // An empty condition is the default: run when everything before succeeded.
            return Ok(Condition::Expr(
                Expr {
                    node: Node::Call(Function::Success, Vec::new()),
                    column: 1,
                },
                1,
            ));
        }
        if has_expression(trimmed) {
            let t = Template::parse(trimmed, scope)
                .map_err(|e| ParseError::new(e.column + lead, e.message))?;
            if let [Part::Expr(e, col)] = t.parts.as_slice() {
                return Ok(Condition::Expr(e.clone(), col + lead));
            }
            return Ok(Condition::Template(t));
        }
        let e = parse(trimmed, scope).map_err(|e| ParseError::new(e.column + lead, e.message))?;
        Ok(Condition::Expr(e, lead + 1))
    }

    /// Whether the condition calls `always()`, `failure()`, `cancelled()` or `success()`.
    pub fn calls_status_function(&self) -> bool {
        match self {
            Condition::Expr(e, _) => e.calls_status_function(),
            Condition::Template(t) => t.expressions().any(|(e, _)| e.calls_status_function()),
        }
    }

    pub fn eval(&self, host: &dyn Host) -> Result<bool, EvalError> {
        let implicit_success = !self.calls_status_function();
        if implicit_success && !host.status(Function::Success) {
            return Ok(false);
        }
        match self {
            Condition::Expr(e, col) => Ok(e.eval(host).map_err(|x| shift(x, *col))?.truthy()),
            Condition::Template(t) => Ok(t.eval(host)?.truthy()),
        }
    }
}
