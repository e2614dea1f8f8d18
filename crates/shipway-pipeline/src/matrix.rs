//! Matrix expansion exactly as GitHub documents it: the product of the axes (first axis
//! outermost), minus `exclude`, then `include` merged into every combination whose original
//! values it does not change, or appended as a new combination when it fits none.

use serde_json::Value as Json;
use shipway_model::load::{Document, child_path};

use crate::problem::{Problem, Severity};
use crate::workflow::Pos;

/// GitHub's limit on the combinations one matrix may produce.
pub const MAX_COMBINATIONS: usize = 256;

/// One combination: axis name to value, in axis order, then included keys.
pub type Combination = serde_json::Map<String, Json>;

/// Expands a matrix whose expressions have all been evaluated. Errors are messages about the
/// matrix as a whole.
pub fn expand(matrix: &Json) -> Result<Vec<Combination>, String> {
    let Json::Object(map) = matrix else {
        return Err(format!(
            "the matrix must be a mapping, found {}",
            short(matrix)
        ));
    };
    let mut combos: Vec<Combination> = Vec::new();
    let mut axes = 0;
    for (key, values) in map {
        if key == "include" || key == "exclude" {
            continue;
        }
        let Json::Array(values) = values else {
            return Err(format!(
                "matrix axis '{key}' must be a sequence, found {}",
                short(values)
            ));
        };
        if values.is_empty() {
            return Err(format!("matrix axis '{key}' has no values"));
        }
        axes += 1;
        if axes == 1 {
            combos = values
                .iter()
                .map(|v| std::iter::once((key.clone(), v.clone())).collect())
                .collect();
            continue;
        }
        let size = combos.len().saturating_mul(values.len());
        if size > MAX_COMBINATIONS * 64 {
            // Far past the limit: stop before building a huge product.
            return Err(too_many(size));
        }
        combos = combos
            .iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut n = c.clone();
                    n.insert(key.clone(), v.clone());
                    n
                })
            })
            .collect();
    }
    if let Some(exclude) = map.get("exclude") {
        let Json::Array(entries) = exclude else {
            return Err("matrix exclude must be a sequence of mappings".to_string());
        };
        for entry in entries {
            let Json::Object(e) = entry else {
                return Err(format!(
                    "matrix exclude entries must be mappings, found {}",
                    short(entry)
                ));
            };
            for k in e.keys() {
                if !map.contains_key(k) || k == "include" || k == "exclude" {
                    return Err(format!(
                        "matrix exclude key '{k}' does not match any key within the matrix"
                    ));
                }
            }
            combos.retain(|c| {
                !e.iter()
                    .all(|(k, v)| c.get(k).is_some_and(|cv| matches(cv, v)))
            });
        }
    }
    let originals = combos.len();
    let mut result = combos.clone();
    if let Some(include) = map.get("include") {
        let Json::Array(entries) = include else {
            return Err("matrix include must be a sequence of mappings".to_string());
        };
        for entry in entries {
            let Json::Object(inc) = entry else {
                return Err(format!(
                    "matrix include entries must be mappings, found {}",
                    short(entry)
                ));
            };
            let mut added = false;
            for (i, original) in combos.iter().enumerate().take(originals) {
                let fits = inc
                    .iter()
                    .all(|(k, v)| original.get(k).is_none_or(|ov| ov == v));
                if fits {
                    for (k, v) in inc {
                        result[i].insert(k.clone(), v.clone());
                    }
                    added = true;
                }
            }
            if !added {
                result.push(inc.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
            }
        }
    }
    if result.is_empty() {
        return Err("the matrix produces no combinations".to_string());
    }
    if result.len() > MAX_COMBINATIONS {
        return Err(too_many(result.len()));
    }
    Ok(result)
}

/// An exclude entry matches a value when it is equal, or, for mappings, when every key it
/// names matches (so `exclude: [{site: {os: linux}}]` can match part of an object value).
fn matches(value: &Json, pattern: &Json) -> bool {
    match (value, pattern) {
        (Json::Object(v), Json::Object(p)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| matches(vv, pv))),
        _ => value == pattern,
    }
}

fn too_many(n: usize) -> String {
    format!("the matrix produces {n} combinations; GitHub allows at most {MAX_COMBINATIONS}")
}

/// What a JSON value is, for messages ("expected a mapping, found a string").
pub(crate) fn short(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a sequence",
        Json::Object(_) => "a mapping",
    }
}

/// A `${{ insert }}` key (any spacing).
pub(crate) fn is_insert(key: &str) -> bool {
    key.trim()
        .strip_prefix("${{")
        .and_then(|k| k.strip_suffix("}}"))
        .is_some_and(|k| k.trim() == "insert")
}

/// Whether any string inside `v`, mapping keys included, holds `${{ }}`.
pub(crate) fn has_expression(v: &Json) -> bool {
    match v {
        Json::String(s) => shipway_expr::has_expression(s),
        Json::Array(items) => items.iter().any(has_expression),
        Json::Object(map) => map
            .iter()
            .any(|(k, v)| shipway_expr::has_expression(k) || has_expression(v)),
        _ => false,
    }
}

/// Checks a matrix that holds no expressions by expanding it; matrices with expressions are
/// expanded when the job runs.
pub fn check_static(
    matrix: &Json,
    path: &str,
    file: &str,
    doc: &Document,
    problems: &mut Vec<Problem>,
) {
    if has_expression(matrix) {
        return;
    }
    if let Err(message) = expand(matrix) {
        // Point at the exclude key when the message is about one.
        let at = if message.starts_with("matrix exclude") {
            child_path(path, "exclude")
        } else {
            path.to_string()
        };
        let (line, column) = doc.key_position(&at);
        problems.push(Problem::new(
            file,
            Pos { line, column },
            Severity::Error,
            format!("{path}: {message}"),
        ));
    }
}

/// The display name of a matrix job, as GitHub shows it: `build (ubuntu-latest, 20)`.
pub fn display_name(base: &str, combination: &Combination) -> String {
    if combination.is_empty() {
        return base.to_string();
    }
    let values: Vec<String> = combination
        .values()
        .map(|v| match v {
            Json::String(s) => s.clone(),
            Json::Object(_) | Json::Array(_) => shipway_expr::Value::from_json(v).to_display(),
            other => other.to_string(),
        })
        .collect();
    format!("{base} ({})", values.join(", "))
}
