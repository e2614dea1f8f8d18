//! Numbers as kustomize reads them: kyaml uses go-yaml v3, which resolves some plain scalars
//! differently from the YAML 1.2 core schema Shipway's loader follows: `0644` is octal (420, the
//! usual `defaultMode`), underscores are dropped (`1_000` is 1000) and `0b11` is binary.
//!
//! The loader keeps no source text, so the few documents whose text could hold such a scalar get
//! a second pass that looks each number and plain string up at its position and resolves it again.

use std::sync::OnceLock;

use serde_json::{Number, Value};
use shipway_model::Document;
use shipway_model::load::{child_path, index_path};

/// Re-resolves the scalars of `doc` (read from `text`) the way go-yaml v3 would.
pub fn fix(doc: &mut Document, text: &str) {
    static CANDIDATE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let candidate = CANDIDATE
        .get_or_init(|| regex::Regex::new(r"(?:^|[\s\[{,:-])[-+]?(?:0[0-9]|0b|[0-9.]*_)").ok());
    if !candidate.as_ref().is_some_and(|re| re.is_match(text)) {
        return;
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut value = std::mem::take(&mut doc.value);
    visit(&mut value, "", doc, &lines);
    doc.value = value;
}

fn visit(v: &mut Value, path: &str, doc: &Document, lines: &[&str]) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                visit(child, &child_path(path, k), doc, lines);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                visit(child, &index_path(path, i), doc, lines);
            }
        }
        Value::Number(_) | Value::String(_) => {
            let (line, col) = doc.position(path);
            let Some(text) = lines.get(line.saturating_sub(1)) else {
                return;
            };
            let token: String = text
                .chars()
                .skip(col.saturating_sub(1))
                .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}' | '#'))
                .collect();
            if let Some(n) = v3_number(&token)
                && matches_kind(v, &token)
                && differs(v, &n)
            {
                *v = n;
            }
        }
        _ => {}
    }
}

/// Whether `token` really is this node's plain text (and not, say, an alias or a quoted string).
fn matches_kind(v: &Value, token: &str) -> bool {
    match v {
        Value::String(s) => s == token,
        Value::Number(_) => true,
        _ => false,
    }
}

/// Whether replacing `old` with `new` changes anything (`09` is 9 either way).
fn differs(old: &Value, new: &Value) -> bool {
    match (old, new) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() != b.as_f64(),
        _ => true,
    }
}

/// go-yaml v3's reading of a plain scalar's text, as kustomize reads a value copied into a
/// field that has no type yet: null, a boolean, a number or a string. `None` for the infinite
/// and NaN floats, which kustomize cannot turn into JSON.
pub(crate) fn resolve_plain(text: &str) -> Option<Value> {
    Some(match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return None,
        _ => {
            let number = if text.starts_with('.') {
                is_yaml_float(text)
                    .then(|| text.parse::<f64>().ok())
                    .flatten()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            } else {
                v3_number(text)
            };
            number.unwrap_or_else(|| Value::String(text.to_string()))
        }
    })
}

/// go-yaml v3's reading of a plain scalar that starts with a digit or a sign, if it is a number.
fn v3_number(token: &str) -> Option<Value> {
    let first = token.chars().next()?;
    if !(first.is_ascii_digit() || first == '-' || first == '+') {
        return None;
    }
    let plain: String = token.chars().filter(|&c| c != '_').collect();
    if let Some(i) = go_parse_int(&plain) {
        return Some(if let Ok(small) = i64::try_from(i) {
            Value::Number(small.into())
        } else {
            Value::Number(u64::try_from(i).ok()?.into())
        });
    }
    if is_yaml_float(&plain) {
        let f: f64 = plain.parse().ok()?;
        return Number::from_f64(f).map(Value::Number);
    }
    None
}

/// Go's `strconv.ParseInt(s, 0, 64)`, widened to also accept what `ParseUint` would.
fn go_parse_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (digits, radix) = crate::v3scalars::radix(body);
    if digits.is_empty() {
        return None;
    }
    let v = u64::from_str_radix(digits, radix).ok()?;
    let v = i128::from(v);
    if neg {
        (v <= 1 << 63).then_some(-v)
    } else if s.starts_with('+') {
        (v < 1 << 63).then_some(v)
    } else {
        Some(v)
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_float(s: &str) -> bool {
    static RE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$").ok()
    })
    .as_ref()
    .is_some_and(|re| re.is_match(s))
}

/// An unsigned integer literal's digits and base, by its prefix as YAML 1.1 and Go read them
/// (`0x`, `0b`, `0o`, and a leading `0` for octal).
pub(crate) fn radix(body: &str) -> (&str, u32) {
    if let Some(r) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (r, 16)
    } else if let Some(r) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (r, 2)
    } else if let Some(r) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (r, 8)
    } else if body.len() > 1 && body.starts_with('0') {
        (&body[1..], 8)
    } else {
        (body, 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Value {
        let mut docs = shipway_model::parse_documents("t.yaml", text).unwrap_or_default();
        let Some(mut doc) = docs.pop() else {
            return Value::Null;
        };
        fix(&mut doc, text);
        doc.value
    }

    #[test]
    fn octal_underscores_and_binary_read_as_kustomize_reads_them() {
        let v = read("a: 0644\nb: 1_000\nc: 0b11\nd: '0644'\ne: 09\nf: [010, x_1]\ng: 1_0.5\n");
        assert_eq!(
            v,
            serde_json::json!({"a": 420, "b": 1000, "c": 3, "d": "0644", "e": 9, "f": [8, "x_1"], "g": 10.5})
        );
    }
}
