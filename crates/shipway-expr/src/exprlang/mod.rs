//! Argo Rollouts' metric conditions: the expr-lang language (`result[0] >= 0.95`,
//! `len(result) > 0`, `all(result, {# < 1000})`, `default(result, 0) < 500`) with the functions
//! Argo adds (`asInt`, `asFloat`, `isNaN`, `isInf`, `isNil`, `default`), and Argo's rule for
//! turning a success and a failure condition into a measurement's phase.
//!
//! Newcomers: [`Conditions::compile`] checks both conditions once (syntax and unknown names, with
//! the column), [`Conditions::assess`] judges one measurement. [`Program`] is one compiled
//! expression; [`Value`] is a provider's result.

mod eval;
mod syntax;

use indexmap::IndexMap;

use crate::ParseError;
pub use eval::EvalError;
use syntax::{Ast, BinOp, Node};

/// A value as expr-lang sees one: ints and floats are distinct types.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Array(Vec<Value>),
    Map(IndexMap<String, Value>),
}

impl Value {
    /// The Go type expr-lang's messages name.
    pub fn go_type(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::String(_) => "string",
            Value::Array(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
        }
    }

    fn float(&self) -> Option<f64> {
        match self {
            Value::Int(n) => Some(*n as f64),
            Value::Float(n) => Some(*n),
            _ => None,
        }
    }

    fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// Nil, as Argo's `isNil` sees a provider's result: no value at all.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// Argo's "nil or empty": no data from the provider, which it names in its error message.
    pub fn is_nil_or_empty(&self) -> bool {
        match self {
            Value::Nil => true,
            Value::Array(a) => a.is_empty(),
            _ => false,
        }
    }
}

/// Go's `%v` for the values a condition can hold.
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Nil => f.write_str("<nil>"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(n) if n.is_nan() => f.write_str("NaN"),
            Value::Float(n) if n.is_infinite() => {
                f.write_str(if *n > 0.0 { "+Inf" } else { "-Inf" })
            }
            Value::Float(n) => write!(f, "{n}"),
            Value::String(s) => f.write_str(s),
            Value::Array(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(map) => {
                f.write_str("map[")?;
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{k}:{}", map[k])?;
                }
                f.write_str("]")
            }
        }
    }
}

/// A JSON result (a web provider's body, a Prometheus vector) as a condition sees it: integral
/// JSON numbers are ints, others floats.
impl From<&serde_json::Value> for Value {
    fn from(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(a) => Value::Array(a.iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => {
                Value::Map(o.iter().map(|(k, v)| (k.clone(), Value::from(v))).collect())
            }
        }
    }
}

/// The variables an expression may name.
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub vars: IndexMap<String, Value>,
}

impl Env {
    /// The environment of a metric condition: `result` and nothing else.
    pub fn with_result(result: Value) -> Env {
        let mut vars = IndexMap::new();
        vars.insert("result".to_string(), result);
        Env { vars }
    }
}

/// One compiled expression.
#[derive(Clone, Debug)]
pub struct Program {
    ast: Ast,
}

impl Program {
    /// Parses `text` and checks it against the names `vars` lists (the builtins are always
    /// known): an unknown name, a syntax error, or `==` between a number and a string written
    /// as such is refused here, with its column.
    pub fn compile(text: &str, vars: &[&str]) -> Result<Program, ParseError> {
        let ast = syntax::parse(text, &|name| vars.contains(&name))?;
        check_types(&ast)?;
        Ok(Program { ast })
    }

    pub fn run(&self, env: &Env) -> Result<Value, EvalError> {
        eval::Eval::new(env).eval(&self.ast)
    }

    /// Runs a condition: its value must be a boolean.
    pub fn run_bool(&self, env: &Env) -> Result<bool, String> {
        match self.run(env).map_err(|e| e.message)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("expected bool, but got {}", other.go_type())),
        }
    }
}

/// The static types expr-lang's checker knows without the environment's values.
fn static_type(ast: &Ast) -> Option<&'static str> {
    Some(match &ast.node {
        Node::Bool(_) => "bool",
        Node::Int(_) => "int",
        Node::Float(_) => "float64",
        Node::Str(_) => "string",
        Node::Call { func, .. } => match func.as_str() {
            "asInt" | "len" | "count" | "findIndex" => "int",
            "asFloat" | "float" | "mean" | "median" | "ceil" | "floor" | "round" => "float64",
            "isNaN" | "isInf" | "isNil" | "all" | "any" | "none" | "one" => "bool",
            "string" | "upper" | "lower" | "trim" | "join" => "string",
            _ => return None,
        },
        Node::Binary {
            op:
                BinOp::Eq
                | BinOp::Ne
                | BinOp::Lt
                | BinOp::Gt
                | BinOp::Le
                | BinOp::Ge
                | BinOp::And
                | BinOp::Or
                | BinOp::In
                | BinOp::NotIn
                | BinOp::Matches
                | BinOp::Contains
                | BinOp::StartsWith
                | BinOp::EndsWith,
            ..
        } => "bool",
        _ => return None,
    })
}

fn check_types(ast: &Ast) -> Result<(), ParseError> {
    let mut result = Ok(());
    visit(ast, &mut |node| {
        if result.is_err() {
            return;
        }
        if let Node::Binary { op, left, right } = &node.node {
            let comparison = matches!(
                op,
                BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge
            );
            if let (true, Some(a), Some(b)) = (comparison, static_type(left), static_type(right)) {
                let numeric = |t: &str| t == "int" || t == "float64";
                let ordered = |t: &str| numeric(t) || t == "string";
                let ok = if matches!(op, BinOp::Eq | BinOp::Ne) {
                    a == b || (numeric(a) && numeric(b))
                } else {
                    (numeric(a) && numeric(b)) || (a == b && ordered(a))
                };
                if !ok {
                    result = Err(ParseError::new(
                        node.column,
                        format!(
                            "invalid operation: {} (mismatched types {a} and {b})",
                            op.symbol()
                        ),
                    ));
                }
            }
        }
    });
    result
}

fn visit(ast: &Ast, f: &mut dyn FnMut(&Ast)) {
    f(ast);
    match &ast.node {
        Node::Array(items) => items.iter().for_each(|i| visit(i, f)),
        Node::Map(entries) => entries.iter().for_each(|(_, v)| visit(v, f)),
        Node::Member { obj, key, .. } => {
            visit(obj, f);
            visit(key, f);
        }
        Node::Slice { obj, from, to } => {
            visit(obj, f);
            from.iter().chain(to).for_each(|a| visit(a, f));
        }
        Node::Call { args, .. } => args.iter().for_each(|a| visit(a, f)),
        Node::Closure(body) => visit(body, f),
        Node::Unary { expr, .. } => visit(expr, f),
        Node::Binary { left, right, .. } => {
            visit(left, f);
            visit(right, f);
        }
        Node::Ternary {
            cond,
            then,
            otherwise,
        } => {
            visit(cond, f);
            visit(then, f);
            visit(otherwise, f);
        }
        _ => {}
    }
}

/// A measurement's verdict, before failure and inconclusive limits are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assessment {
    Successful,
    Failed,
    Inconclusive,
}

/// A condition that does not compile: which one, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {text:?}: {error}")]
pub struct ConditionError {
    /// `successCondition` or `failureCondition`.
    pub field: &'static str,
    pub text: String,
    pub error: ParseError,
}

/// A metric's `successCondition` and `failureCondition`, compiled.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    success: Option<(String, Program)>,
    failure: Option<(String, Program)>,
}

impl Conditions {
    /// Empty conditions are absent, as in Argo.
    pub fn compile(
        success: Option<&str>,
        failure: Option<&str>,
    ) -> Result<Conditions, ConditionError> {
        let one = |field: &'static str, text: Option<&str>| {
            text.filter(|t| !t.trim().is_empty())
                .map(|text| {
                    Program::compile(text, &["result"])
                        .map(|p| (text.to_string(), p))
                        .map_err(|error| ConditionError {
                            field,
                            text: text.to_string(),
                            error,
                        })
                })
                .transpose()
        };
        Ok(Conditions {
            success: one("successCondition", success)?,
            failure: one("failureCondition", failure)?,
        })
    }

    /// Argo's rule: with no conditions every measurement succeeds; with only one, the other is
    /// its negation; failure wins; neither true is Inconclusive. An evaluation error is the
    /// measurement's Error, worded as Argo's ("could not evaluate successCondition ...", and
    /// "metric result is nil or empty" when the provider returned no data).
    pub fn assess(&self, result: &Value) -> Result<Assessment, String> {
        let env = Env::with_result(result.clone());
        let run = |field: &str, c: &Option<(String, Program)>| -> Result<Option<bool>, String> {
            let Some((text, program)) = c else {
                return Ok(None);
            };
            program.run_bool(&env).map(Some).map_err(|e| {
                if result.is_nil_or_empty() {
                    format!(
                        "could not evaluate {field} \"{text}\": metric result is nil or empty: no data returned from the metric provider"
                    )
                } else {
                    format!("could not evaluate {field} \"{text}\": {e}")
                }
            })
        };
        let success = run("successCondition", &self.success)?;
        let failure = run("failureCondition", &self.failure)?;
        let (success, failure) = match (success, failure) {
            (None, None) => return Ok(Assessment::Successful),
            (Some(s), None) => (s, !s),
            (None, Some(f)) => (!f, f),
            (Some(s), Some(f)) => (s, f),
        };
        Ok(if failure {
            Assessment::Failed
        } else if success {
            Assessment::Successful
        } else {
            Assessment::Inconclusive
        })
    }
}
