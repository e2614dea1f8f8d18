//! Evaluating a parsed [`Expr`] against contexts supplied by a [`Host`].

use crate::parser::{BinOp, Expr, Function, Node};
use crate::value::{Map, Value, lookup, upper};

/// What an evaluation needs from its surroundings: the contexts, the job's status for the status
/// functions, and the workspace for `hashFiles`.
pub trait Host {
    /// The context named `name` (lowercase: `github`, `steps`, ...); `Null` when it is not set.
    fn context(&self, name: &str) -> Value;

    /// The answer of a status function. By default the run is going well: `success()` and
    /// `always()` are true.
    fn status(&self, function: Function) -> bool {
        matches!(function, Function::Success | Function::Always)
    }

    /// `hashFiles(patterns...)`: the hash of the matching files, or `''` when none match.
    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        let _ = patterns;
        Err("hashFiles is not available here".to_string())
    }
}

/// A [`Host`] over a fixed map of contexts, with the default status.
impl Host for Map {
    fn context(&self, name: &str) -> Value {
        lookup(self, name).cloned().unwrap_or(Value::Null)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct EvalError {
    /// 1-based column of the node that failed, within the expression.
    pub column: usize,
    pub message: String,
}

/// An intermediate result: a value, or the array produced by a `*` filter, to which later
/// property accesses apply element by element.
enum Ev {
    V(Value),
    Filtered(Vec<Value>),
}

impl Ev {
    fn value(self) -> Value {
        match self {
            Ev::V(v) => v,
            Ev::Filtered(items) => Value::array(items),
        }
    }
}

/// GitHub refuses evaluations that build more than this many bytes of strings (counted as
/// UTF-16, two bytes a character, as in its runner).
pub const MAX_MEMORY_BYTES: usize = 1024 * 1024;

/// What one evaluation has built so far, for [`MAX_MEMORY_BYTES`].
struct Budget(std::cell::Cell<usize>);

impl Budget {
    fn charge(&self, e: &Expr, v: &Value) -> Result<(), EvalError> {
        let bytes = match v {
            Value::String(s) => s.chars().count() * 2,
            _ => 0,
        };
        let total = self.0.get().saturating_add(bytes);
        self.0.set(total);
        if total > MAX_MEMORY_BYTES {
            return Err(err(e, "The maximum allowed memory size was exceeded"));
        }
        Ok(())
    }
}

impl Expr {
    /// Evaluates the expression.
    pub fn eval(&self, host: &dyn Host) -> Result<Value, EvalError> {
        let budget = Budget(std::cell::Cell::new(0));
        Ok(eval(self, host, &budget)?.value())
    }
}

fn err(e: &Expr, message: impl Into<String>) -> EvalError {
    EvalError {
        column: e.column,
        message: message.into(),
    }
}

fn eval(e: &Expr, host: &dyn Host, budget: &Budget) -> Result<Ev, EvalError> {
    Ok(match &e.node {
        Node::Literal(v) => Ev::V(v.clone()),
        Node::Context(name) => Ev::V(host.context(name)),
        Node::Not(inner) => Ev::V(Value::Bool(!eval(inner, host, budget)?.value().truthy())),
        Node::Binary(BinOp::And, a, b) => {
            let left = eval(a, host, budget)?.value();
            if left.truthy() {
                eval(b, host, budget)?
            } else {
                Ev::V(left)
            }
        }
        Node::Binary(BinOp::Or, a, b) => {
            let left = eval(a, host, budget)?.value();
            if left.truthy() {
                Ev::V(left)
            } else {
                eval(b, host, budget)?
            }
        }
        Node::Binary(op, a, b) => {
            let left = eval(a, host, budget)?.value();
            let right = eval(b, host, budget)?.value();
            let ord = || left.loose_cmp(&right);
            Ev::V(Value::Bool(match op {
                BinOp::Eq => left.loose_eq(&right),
                BinOp::Ne => !left.loose_eq(&right),
                BinOp::Lt => ord().is_some_and(|o| o.is_lt()),
                BinOp::Le => ord().is_some_and(|o| o.is_le()),
                BinOp::Gt => ord().is_some_and(|o| o.is_gt()),
                BinOp::Ge => ord().is_some_and(|o| o.is_ge()),
                // Short-circuited in the arms above.
                BinOp::And | BinOp::Or => false,
            }))
        }
        Node::Index(target, index) => {
            let target = eval(target, host, budget)?;
            let index = eval(index, host, budget)?.value();
            match target {
                Ev::Filtered(items) => Ev::Filtered(
                    items
                        .iter()
                        .filter_map(|item| index_value(item, &index))
                        .collect(),
                ),
                Ev::V(v) => Ev::V(index_value(&v, &index).unwrap_or(Value::Null)),
            }
        }
        Node::Wildcard(target) => match eval(target, host, budget)? {
            Ev::Filtered(items) => {
                let mut out = Vec::new();
                for item in &items {
                    out.extend(children(item));
                }
                Ev::Filtered(out)
            }
            Ev::V(v) => Ev::Filtered(children(&v)),
        },
        Node::Call(Function::Case, args) => {
            // Predicates in order; only the chosen value is evaluated.
            let mut i = 0;
            while i + 1 < args.len() {
                match eval(&args[i], host, budget)?.value() {
                    Value::Bool(true) => return eval(&args[i + 1], host, budget),
                    Value::Bool(false) => i += 2,
                    _ => {
                        return Err(err(
                            &args[i],
                            "case predicate must evaluate to a boolean value",
                        ));
                    }
                }
            }
            match args.last() {
                Some(default) => eval(default, host, budget)?,
                None => Ev::V(Value::Null),
            }
        }
        Node::Call(f, args) => {
            let v = call(e, *f, args, host, budget)?;
            budget.charge(e, &v)?;
            Ev::V(v)
        }
    })
}

fn children(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.as_ref().clone(),
        Value::Object(map) => map.values().cloned().collect(),
        _ => Vec::new(),
    }
}

/// `target[index]`: objects by key ignoring case, arrays by integral index; anything else is
/// missing (`None`).
fn index_value(target: &Value, index: &Value) -> Option<Value> {
    match target {
        Value::Object(map) => {
            if !index.is_primitive() {
                return None;
            }
            lookup(map, &index.to_display()).cloned()
        }
        Value::Array(items) => {
            if !index.is_primitive() {
                return None;
            }
            let n = index.to_number();
            if n.is_nan() || n < 0.0 || n.fract() != 0.0 {
                return None;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            items.get(n as usize).cloned()
        }
        _ => None,
    }
}

fn call(
    e: &Expr,
    f: Function,
    args: &[Expr],
    host: &dyn Host,
    budget: &Budget,
) -> Result<Value, EvalError> {
    let mut values = Vec::with_capacity(args.len());
    for a in args {
        values.push(eval(a, host, budget)?.value());
    }
    let arg = |i: usize| values.get(i).cloned().unwrap_or(Value::Null);
    Ok(match f {
        Function::Contains => {
            let (search, item) = (arg(0), arg(1));
            Value::Bool(match &search {
                Value::Array(items) => items.iter().any(|x| x.loose_eq(&item)),
                _ => upper(&search.to_display()).contains(&upper(&item.to_display())),
            })
        }
        Function::StartsWith => {
            Value::Bool(upper(&arg(0).to_display()).starts_with(&upper(&arg(1).to_display())))
        }
        Function::EndsWith => {
            Value::Bool(upper(&arg(0).to_display()).ends_with(&upper(&arg(1).to_display())))
        }
        Function::Format => {
            let text = arg(0).to_display();
            let rest: Vec<String> = values.iter().skip(1).map(Value::to_display).collect();
            Value::String(format(&text, &rest).map_err(|m| err(e, m))?)
        }
        Function::Join => {
            // A separator that is not a primitive is ignored, as in GitHub.
            let sep = match values.get(1) {
                Some(v) if v.is_primitive() => v.to_display(),
                _ => ",".to_string(),
            };
            match arg(0) {
                Value::Array(items) => Value::String(
                    items
                        .iter()
                        .map(Value::to_display)
                        .collect::<Vec<_>>()
                        .join(&sep),
                ),
                Value::Object(_) => Value::String(String::new()),
                v => Value::String(v.to_display()),
            }
        }
        Function::ToJson => Value::String(arg(0).to_json_pretty()),
        Function::FromJson => {
            let text = arg(0).to_display();
            if text.trim().is_empty() {
                return Err(err(e, "Empty input to fromJSON"));
            }
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => Value::from_json(&v),
                Err(x) => return Err(err(e, format!("Error parsing fromJson: {x}"))),
            }
        }
        Function::HashFiles => {
            let patterns: Vec<String> = values.iter().map(Value::to_display).collect();
            Value::String(host.hash_files(&patterns).map_err(|m| err(e, m))?)
        }
        Function::Success | Function::Always | Function::Cancelled | Function::Failure => {
            Value::Bool(host.status(f))
        }
        Function::Case => unreachable_case(),
    })
}

/// `case` evaluates lazily in [`eval`] and never reaches [`call`].
fn unreachable_case() -> Value {
    Value::Null
}

/// `format()`: `{N}` is replaced by argument N, `{{` and `}}` are literal braces; anything else
/// with a brace is an invalid format string.
pub fn format(text: &str, args: &[String]) -> Result<String, String> {
    let invalid = || format!("The following format string is invalid: '{text}'");
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '{' if chars.get(i + 1) == Some(&'{') => {
                out.push('{');
                i += 2;
            }
            '{' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                if j == i + 1 || chars.get(j) != Some(&'}') {
                    return Err(invalid());
                }
                let n: usize = chars[i + 1..j]
                    .iter()
                    .collect::<String>()
                    .parse()
                    .map_err(|_| invalid())?;
                match args.get(n) {
                    Some(a) => out.push_str(a),
                    None => {
                        return Err(format!(
                            "The following format string references more arguments than were supplied: '{text}'"
                        ));
                    }
                }
                i = j + 1;
            }
            '}' if chars.get(i + 1) == Some(&'}') => {
                out.push('}');
                i += 2;
            }
            '}' => return Err(invalid()),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Builds a map of contexts from JSON values, for hosts and tests.
pub fn contexts(pairs: impl IntoIterator<Item = (String, serde_json::Value)>) -> Map {
    pairs
        .into_iter()
        .map(|(k, v)| (k, Value::from_json(&v)))
        .collect()
}
