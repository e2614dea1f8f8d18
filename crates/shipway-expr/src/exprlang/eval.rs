//! Evaluation with expr-lang's rules: ints and floats kept apart (`/` and `**` give floats),
//! `&&`/`||`/`!` only on booleans, `==` false across types but numbers compared by value,
//! a missing map key is nil, and errors worded as expr-lang words them.

use std::cmp::Ordering;

use super::syntax::{Ast, BinOp, Node, UnOp};
use super::{Env, Value};

/// A runtime error, with the column of the node that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (1:{column})")]
pub struct EvalError {
    pub column: usize,
    pub message: String,
}

fn fail<T>(column: usize, message: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError {
        column,
        message: message.into(),
    })
}

const BUILTINS: &[&str] = &[
    "len",
    "all",
    "any",
    "none",
    "one",
    "filter",
    "map",
    "count",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "sum",
    "mean",
    "median",
    "max",
    "min",
    "abs",
    "ceil",
    "floor",
    "round",
    "int",
    "float",
    "string",
    "first",
    "last",
    "keys",
    "values",
    "upper",
    "lower",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "split",
    "join",
    "indexOf",
    "hasPrefix",
    "hasSuffix",
    "reverse",
    "asInt",
    "asFloat",
    "isNaN",
    "isInf",
    "isNil",
    "default",
];

pub(crate) fn is_builtin(name: &str) -> bool {
    BUILTINS.contains(&name)
}

pub(crate) struct Eval<'a> {
    env: &'a Env,
    /// The open closures' pointers: the element and its index.
    stack: Vec<(Value, usize)>,
}

impl<'a> Eval<'a> {
    pub(crate) fn new(env: &'a Env) -> Eval<'a> {
        Eval {
            env,
            stack: Vec::new(),
        }
    }

    pub(crate) fn eval(&mut self, ast: &Ast) -> Result<Value, EvalError> {
        let col = ast.column;
        Ok(match &ast.node {
            Node::Nil => Value::Nil,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(n) => Value::Int(*n),
            Node::Float(n) => Value::Float(*n),
            Node::Str(s) => Value::String(s.clone()),
            Node::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.eval(i))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Map(entries) => {
                let mut map = indexmap::IndexMap::new();
                for (k, v) in entries {
                    map.insert(k.clone(), self.eval(v)?);
                }
                Value::Map(map)
            }
            Node::Name(name) => self.env.vars.get(name).cloned().unwrap_or(Value::Nil),
            Node::Pointer(name) => {
                let Some((element, index)) = self.stack.last() else {
                    return fail(col, "cannot use pointer accessor outside predicate");
                };
                match name.as_str() {
                    "#" => element.clone(),
                    "#index" => Value::Int(*index as i64),
                    other => return fail(col, format!("unknown pointer {other}")),
                }
            }
            Node::Member { obj, key, optional } => {
                let obj = self.eval(obj)?;
                if obj == Value::Nil && *optional {
                    return Ok(Value::Nil);
                }
                let key = self.eval(key)?;
                fetch(&obj, &key, col)?
            }
            Node::Slice { obj, from, to } => {
                let obj = self.eval(obj)?;
                let from = from.as_ref().map(|f| self.eval(f)).transpose()?;
                let to = to.as_ref().map(|t| self.eval(t)).transpose()?;
                slice(&obj, from, to, col)?
            }
            Node::Call { func, args } => self.call(func, args, col)?,
            Node::Closure(_) => return fail(col, "a predicate is allowed only as an argument"),
            Node::Unary { op, expr } => {
                let v = self.eval(expr)?;
                match (op, v) {
                    (UnOp::Not, Value::Bool(b)) => Value::Bool(!b),
                    (UnOp::Neg, Value::Int(n)) => Value::Int(n.wrapping_neg()),
                    (UnOp::Neg, Value::Float(n)) => Value::Float(-n),
                    (UnOp::Plus, v @ (Value::Int(_) | Value::Float(_))) => v,
                    (op, v) => {
                        let sym = match op {
                            UnOp::Not => "!",
                            UnOp::Neg => "-",
                            UnOp::Plus => "+",
                        };
                        return fail(
                            col,
                            format!("invalid operation: {sym} (mismatched type {})", v.go_type()),
                        );
                    }
                }
            }
            Node::Binary { op, left, right } => self.binary(*op, left, right, col)?,
            Node::Ternary {
                cond,
                then,
                otherwise,
            } => match self.eval(cond)? {
                Value::Bool(true) => self.eval(then)?,
                Value::Bool(false) => self.eval(otherwise)?,
                v => {
                    return fail(
                        col,
                        format!(
                            "non-bool expression (type {}) used as condition",
                            v.go_type()
                        ),
                    );
                }
            },
        })
    }

    fn binary(&mut self, op: BinOp, l: &Ast, r: &Ast, col: usize) -> Result<Value, EvalError> {
        // The short-circuiting ones first: the right side may not be evaluable.
        match op {
            BinOp::And | BinOp::Or => {
                let left = self.boolean(l, op)?;
                if left == (op == BinOp::Or) {
                    return Ok(Value::Bool(left));
                }
                return Ok(Value::Bool(self.boolean(r, op)?));
            }
            BinOp::Coalesce => {
                let left = self.eval(l)?;
                return if left == Value::Nil {
                    self.eval(r)
                } else {
                    Ok(left)
                };
            }
            _ => {}
        }
        let a = self.eval(l)?;
        let b = self.eval(r)?;
        let mismatch = || {
            fail(
                col,
                format!(
                    "invalid operation: {} (mismatched types {} and {})",
                    op.symbol(),
                    a.go_type(),
                    b.go_type()
                ),
            )
        };
        Ok(match op {
            BinOp::Eq => Value::Bool(equal(&a, &b)),
            BinOp::Ne => Value::Bool(!equal(&a, &b)),
            BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
                let Some(ord) = compare(&a, &b) else {
                    // NaN compares false with everything, as in Go.
                    if matches!(
                        (&a, &b),
                        (
                            Value::Int(_) | Value::Float(_),
                            Value::Int(_) | Value::Float(_)
                        )
                    ) {
                        return Ok(Value::Bool(false));
                    }
                    return mismatch();
                };
                Value::Bool(match op {
                    BinOp::Lt => ord == Ordering::Less,
                    BinOp::Gt => ord == Ordering::Greater,
                    BinOp::Le => ord != Ordering::Greater,
                    _ => ord != Ordering::Less,
                })
            }
            BinOp::In | BinOp::NotIn => {
                let found = match &b {
                    Value::Array(items) => items.iter().any(|i| equal(i, &a)),
                    Value::Map(map) => match &a {
                        Value::String(k) => map.contains_key(k),
                        _ => return mismatch(),
                    },
                    Value::Nil => false,
                    _ => return mismatch(),
                };
                Value::Bool(found == (op == BinOp::In))
            }
            BinOp::Matches | BinOp::Contains | BinOp::StartsWith | BinOp::EndsWith => {
                let (Value::String(s), Value::String(t)) = (&a, &b) else {
                    return mismatch();
                };
                Value::Bool(match op {
                    BinOp::Contains => s.contains(t.as_str()),
                    BinOp::StartsWith => s.starts_with(t.as_str()),
                    BinOp::EndsWith => s.ends_with(t.as_str()),
                    _ => match regex::Regex::new(t) {
                        Ok(re) => re.is_match(s),
                        Err(e) => return fail(col, format!("invalid regular expression: {e}")),
                    },
                })
            }
            BinOp::Range => match (&a, &b) {
                (Value::Int(x), Value::Int(y)) => {
                    if y.saturating_sub(*x) > 1_000_000 {
                        return fail(col, "range too large");
                    }
                    Value::Array((*x..=*y).map(Value::Int).collect())
                }
                _ => return mismatch(),
            },
            BinOp::Add => match (&a, &b) {
                (Value::Int(x), Value::Int(y)) => Value::Int(x.wrapping_add(*y)),
                (Value::String(x), Value::String(y)) => Value::String(format!("{x}{y}")),
                (Value::Array(x), Value::Array(y)) => {
                    Value::Array(x.iter().chain(y).cloned().collect())
                }
                _ => match (a.float(), b.float()) {
                    (Some(x), Some(y)) => Value::Float(x + y),
                    _ => return mismatch(),
                },
            },
            BinOp::Sub | BinOp::Mul => match (&a, &b) {
                (Value::Int(x), Value::Int(y)) => Value::Int(if op == BinOp::Sub {
                    x.wrapping_sub(*y)
                } else {
                    x.wrapping_mul(*y)
                }),
                _ => match (a.float(), b.float()) {
                    (Some(x), Some(y)) => {
                        Value::Float(if op == BinOp::Sub { x - y } else { x * y })
                    }
                    _ => return mismatch(),
                },
            },
            BinOp::Div | BinOp::Pow => match (a.float(), b.float()) {
                (Some(x), Some(y)) => {
                    Value::Float(if op == BinOp::Div { x / y } else { x.powf(y) })
                }
                _ => return mismatch(),
            },
            BinOp::Mod => match (&a, &b) {
                (Value::Int(_), Value::Int(0)) => return fail(col, "integer divide by zero"),
                (Value::Int(x), Value::Int(y)) => Value::Int(x.wrapping_rem(*y)),
                _ => return mismatch(),
            },
            BinOp::And | BinOp::Or | BinOp::Coalesce => unreachable!("handled above"),
        })
    }

    fn boolean(&mut self, ast: &Ast, op: BinOp) -> Result<bool, EvalError> {
        match self.eval(ast)? {
            Value::Bool(b) => Ok(b),
            v => fail(
                ast.column,
                format!(
                    "invalid operation: {} (mismatched types {} and bool)",
                    op.symbol(),
                    v.go_type()
                ),
            ),
        }
    }

    fn call(&mut self, func: &str, args: &[Ast], col: usize) -> Result<Value, EvalError> {
        let arity = |n: usize| -> Result<(), EvalError> {
            if args.len() == n {
                Ok(())
            } else {
                fail(
                    col,
                    format!(
                        "{}: {func} takes {n} argument{}, not {}",
                        if args.len() < n {
                            "not enough arguments"
                        } else {
                            "too many arguments"
                        },
                        if n == 1 { "" } else { "s" },
                        args.len()
                    ),
                )
            }
        };
        if super::syntax::PREDICATE_BUILTINS.contains(&func) && func != "sum" {
            arity(2)?;
            return self.predicate(func, args, col);
        }
        if func == "sum" && args.len() == 2 {
            return self.predicate(func, args, col);
        }
        let values: Vec<Value> = args
            .iter()
            .map(|a| self.eval(a))
            .collect::<Result<_, _>>()?;
        let bad = |v: &Value| {
            fail(
                col,
                format!("invalid argument for {func} (type {})", v.go_type()),
            )
        };
        let one = |values: &[Value]| -> Result<Value, EvalError> {
            arity(1)?;
            Ok(values[0].clone())
        };
        Ok(match func {
            "len" => match one(&values)? {
                Value::String(s) => Value::Int(s.chars().count() as i64),
                Value::Array(a) => Value::Int(a.len() as i64),
                Value::Map(m) => Value::Int(m.len() as i64),
                v => return bad(&v),
            },
            "abs" => match one(&values)? {
                Value::Int(n) => Value::Int(n.wrapping_abs()),
                Value::Float(n) => Value::Float(n.abs()),
                v => return bad(&v),
            },
            "ceil" | "floor" | "round" => {
                let v = one(&values)?;
                let Some(x) = v.float() else { return bad(&v) };
                Value::Float(match func {
                    "ceil" => x.ceil(),
                    "floor" => x.floor(),
                    _ => x.round(),
                })
            }
            "int" => match one(&values)? {
                Value::Int(n) => Value::Int(n),
                Value::Float(n) => Value::Int(n as i64),
                Value::String(s) => match s.trim().parse::<i64>() {
                    Ok(n) => Value::Int(n),
                    Err(_) => {
                        return fail(col, format!("strconv.Atoi: parsing {s:?}: invalid syntax"));
                    }
                },
                v => return bad(&v),
            },
            "float" => match one(&values)? {
                Value::String(s) => match s.trim().parse::<f64>() {
                    Ok(n) => Value::Float(n),
                    Err(_) => {
                        return fail(
                            col,
                            format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"),
                        );
                    }
                },
                v => match v.float() {
                    Some(x) => Value::Float(x),
                    None => return bad(&v),
                },
            },
            "string" => Value::String(one(&values)?.to_string()),
            // Argo Rollouts' own: integers truncated, strings parsed (a non-integer string is
            // an error, as its asInt panics on it).
            "asInt" => match one(&values)? {
                Value::Int(n) => Value::Int(n),
                Value::Float(n) => Value::Int(n as i64),
                Value::String(s) => match s.parse::<i64>() {
                    Ok(n) => Value::Int(n),
                    Err(_) => {
                        return fail(
                            col,
                            format!("strconv.ParseInt: parsing {s:?}: invalid syntax"),
                        );
                    }
                },
                v => return fail(col, format!("asInt() not supported on {} {v}", v.go_type())),
            },
            "asFloat" => match one(&values)? {
                Value::String(s) => match s.parse::<f64>() {
                    Ok(n) => Value::Float(n),
                    Err(_) => {
                        return fail(
                            col,
                            format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"),
                        );
                    }
                },
                v => match v.float() {
                    Some(x) => Value::Float(x),
                    None => {
                        return fail(
                            col,
                            format!("asFloat() not supported on {} {v}", v.go_type()),
                        );
                    }
                },
            },
            "isNaN" | "isInf" => {
                let v = one(&values)?;
                let Some(x) = v.float() else { return bad(&v) };
                Value::Bool(if func == "isNaN" {
                    x.is_nan()
                } else {
                    x.is_infinite()
                })
            }
            // Argo's isNil and default look at `result` whatever their argument; here they look
            // at the argument, which is what `default(result, 0)` and `isNil(result)` — every use in
            // Argo's docs — mean in both.
            "isNil" => Value::Bool(one(&values)?.is_nil()),
            "default" => {
                arity(2)?;
                if values[0].is_nil() {
                    values[1].clone()
                } else {
                    values[0].clone()
                }
            }
            "sum" | "mean" | "median" | "max" | "min" => {
                let items: Vec<Value> = match values.as_slice() {
                    [Value::Array(a)] => a.clone(),
                    [v] if func == "sum" || func == "mean" || func == "median" => return bad(v),
                    [] => return arity(1).map(|_| Value::Nil),
                    many => many.to_vec(),
                };
                aggregate(func, &items, col)?
            }
            "first" | "last" => match one(&values)? {
                Value::Array(a) => {
                    let item = if func == "first" { a.first() } else { a.last() };
                    item.cloned().unwrap_or(Value::Nil)
                }
                v => return bad(&v),
            },
            "reverse" => match one(&values)? {
                Value::Array(mut a) => {
                    a.reverse();
                    Value::Array(a)
                }
                v => return bad(&v),
            },
            "keys" | "values" => match one(&values)? {
                Value::Map(m) => Value::Array(if func == "keys" {
                    m.keys().map(|k| Value::String(k.clone())).collect()
                } else {
                    m.values().cloned().collect()
                }),
                v => return bad(&v),
            },
            "upper" | "lower" | "trim" => match one(&values)? {
                Value::String(s) => Value::String(match func {
                    "upper" => s.to_uppercase(),
                    "lower" => s.to_lowercase(),
                    _ => s.trim().to_string(),
                }),
                v => return bad(&v),
            },
            "trimPrefix" | "trimSuffix" | "hasPrefix" | "hasSuffix" | "split" | "indexOf" => {
                arity(2)?;
                let (Value::String(s), Value::String(t)) = (&values[0], &values[1]) else {
                    return bad(&values[0]);
                };
                match func {
                    "trimPrefix" => Value::String(s.strip_prefix(t.as_str()).unwrap_or(s).into()),
                    "trimSuffix" => Value::String(s.strip_suffix(t.as_str()).unwrap_or(s).into()),
                    "hasPrefix" => Value::Bool(s.starts_with(t.as_str())),
                    "hasSuffix" => Value::Bool(s.ends_with(t.as_str())),
                    "indexOf" => Value::Int(
                        s.find(t.as_str())
                            .map(|i| s[..i].chars().count() as i64)
                            .unwrap_or(-1),
                    ),
                    _ => Value::Array(
                        s.split(t.as_str())
                            .map(|p| Value::String(p.into()))
                            .collect(),
                    ),
                }
            }
            "join" => {
                let (items, sep) = match values.as_slice() {
                    [Value::Array(a)] => (a, ""),
                    [Value::Array(a), Value::String(sep)] => (a, sep.as_str()),
                    [v, ..] => return bad(v),
                    [] => return arity(1).map(|_| Value::Nil),
                };
                let parts: Vec<String> = items.iter().map(|v| v.to_string()).collect();
                Value::String(parts.join(sep))
            }
            // A name the environment defines but this evaluator cannot call.
            other => return fail(col, format!("{other} is not a function")),
        })
    }

    fn predicate(&mut self, func: &str, args: &[Ast], col: usize) -> Result<Value, EvalError> {
        let items = match self.eval(&args[0])? {
            Value::Array(a) => a,
            Value::Nil => Vec::new(),
            v => {
                return fail(
                    col,
                    format!("cannot iterate over {} in {func}", v.go_type()),
                );
            }
        };
        let Node::Closure(body) = &args[1].node else {
            return fail(args[1].column, "a predicate is expected");
        };
        let mut out = Vec::new();
        let mut count = 0usize;
        for (index, item) in items.iter().enumerate() {
            self.stack.push((item.clone(), index));
            let v = self.eval(body);
            self.stack.pop();
            let v = v?;
            let truth = || match &v {
                Value::Bool(b) => Ok(*b),
                other => fail(
                    body.column,
                    format!("predicate should return boolean, got {}", other.go_type()),
                ),
            };
            match func {
                "map" => out.push(v),
                "sum" => out.push(v),
                "all" if !truth()? => return Ok(Value::Bool(false)),
                "any" if truth()? => return Ok(Value::Bool(true)),
                "none" if truth()? => return Ok(Value::Bool(false)),
                "find" if truth()? => return Ok(item.clone()),
                "findIndex" if truth()? => return Ok(Value::Int(index as i64)),
                "findLast" | "findLastIndex" if truth()? => {
                    out.clear();
                    out.push(Value::Int(index as i64));
                }
                "one" | "count" if truth()? => count += 1,
                "filter" if truth()? => out.push(item.clone()),
                "groupBy" | "sortBy" => {
                    return fail(col, format!("{func} is not supported"));
                }
                _ => {}
            }
        }
        Ok(match func {
            "map" | "filter" => Value::Array(out),
            "sum" => aggregate("sum", &out, col)?,
            "all" | "none" => Value::Bool(true),
            "any" => Value::Bool(false),
            "one" => Value::Bool(count == 1),
            "count" => Value::Int(count as i64),
            "find" => Value::Nil,
            "findIndex" => Value::Int(-1),
            "findLast" => match out.first() {
                Some(Value::Int(i)) => items[*i as usize].clone(),
                _ => Value::Nil,
            },
            "findLastIndex" => out.first().cloned().unwrap_or(Value::Int(-1)),
            _ => Value::Nil,
        })
    }
}

fn aggregate(func: &str, items: &[Value], col: usize) -> Result<Value, EvalError> {
    let mut ints = true;
    let mut nums = Vec::with_capacity(items.len());
    for v in items {
        match v {
            Value::Int(_) => {}
            Value::Float(_) => ints = false,
            other => {
                return fail(
                    col,
                    format!("invalid argument for {func} (type {})", other.go_type()),
                );
            }
        }
        nums.push(v.float().unwrap_or_default());
    }
    Ok(match func {
        "sum" if ints => Value::Int(items.iter().map(|v| v.int().unwrap_or_default()).sum()),
        "sum" => Value::Float(nums.iter().sum()),
        "mean" if nums.is_empty() => Value::Float(0.0),
        "mean" => Value::Float(nums.iter().sum::<f64>() / nums.len() as f64),
        "median" if nums.is_empty() => Value::Float(0.0),
        "median" => {
            nums.sort_by(|a, b| a.total_cmp(b));
            let n = nums.len();
            Value::Float(if n % 2 == 1 {
                nums[n / 2]
            } else {
                (nums[n / 2 - 1] + nums[n / 2]) / 2.0
            })
        }
        _ => {
            // max / min keep the winner's own type.
            let mut best: Option<&Value> = None;
            for v in items {
                let better = match best {
                    None => true,
                    Some(b) => {
                        let ord = compare(v, b).unwrap_or(Ordering::Equal);
                        if func == "max" {
                            ord == Ordering::Greater
                        } else {
                            ord == Ordering::Less
                        }
                    }
                };
                if better {
                    best = Some(v);
                }
            }
            best.cloned().unwrap_or(Value::Nil)
        }
    })
}

fn fetch(obj: &Value, key: &Value, col: usize) -> Result<Value, EvalError> {
    match (obj, key) {
        (Value::Map(m), Value::String(k)) => Ok(m.get(k).cloned().unwrap_or(Value::Nil)),
        (Value::Array(a), Value::Int(i)) => index(a.len(), *i, col).map(|i| a[i].clone()),
        (Value::String(s), Value::Int(i)) => {
            let chars: Vec<char> = s.chars().collect();
            index(chars.len(), *i, col).map(|i| Value::String(chars[i].to_string()))
        }
        (Value::Nil, Value::String(k)) => fail(col, format!("cannot fetch {k} from <nil>")),
        (Value::Nil, _) => fail(col, format!("cannot fetch {key} from <nil>")),
        (obj, key) => fail(col, format!("cannot fetch {key} from {}", obj.go_type())),
    }
}

fn index(len: usize, i: i64, col: usize) -> Result<usize, EvalError> {
    let j = if i < 0 { len as i64 + i } else { i };
    if j < 0 || j >= len as i64 {
        return fail(
            col,
            format!("index out of range: {i} (array length is {len})"),
        );
    }
    Ok(j as usize)
}

fn slice(
    obj: &Value,
    from: Option<Value>,
    to: Option<Value>,
    col: usize,
) -> Result<Value, EvalError> {
    let len = match obj {
        Value::Array(a) => a.len(),
        Value::String(s) => s.chars().count(),
        other => return fail(col, format!("cannot slice {}", other.go_type())),
    } as i64;
    let bound = |v: Option<Value>, default: i64| -> Result<usize, EvalError> {
        let n = match v {
            None => default,
            Some(Value::Int(n)) => n,
            Some(other) => {
                return fail(
                    col,
                    format!("non-integer slice index of type {}", other.go_type()),
                );
            }
        };
        let n = if n < 0 { len + n } else { n };
        Ok(n.clamp(0, len) as usize)
    };
    let from = bound(from, 0)?;
    let to = bound(to, len)?.max(from);
    Ok(match obj {
        Value::Array(a) => Value::Array(a[from..to].to_vec()),
        Value::String(s) => Value::String(s.chars().skip(from).take(to - from).collect()),
        _ => Value::Nil,
    })
}

/// expr-lang's `==`: numbers by value across int and float, everything else by type and value.
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            a.float() == b.float()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equal(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => a.float()?.partial_cmp(&b.float()?),
    }
}
