//! JSON patches (RFC 6902): add, remove, replace, move, copy, test.

use serde_json::Value;

/// Applies a list of operations (already parsed) to `doc`.
pub fn apply(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let Value::Array(ops) = ops else {
        return Err("a JSON patch must be a list of operations".into());
    };
    for op in ops {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or("JSON patch operation without op")?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("JSON patch {name} without path"))?;
        match name {
            "add" => {
                let v = op.get("value").cloned().ok_or("add without value")?;
                add(doc, path, v)?;
            }
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                let v = op.get("value").cloned().ok_or("replace without value")?;
                replace(doc, path, v)?;
            }
            "move" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or("move without from")?;
                let v = remove(doc, from)?;
                add(doc, path, v)?;
            }
            "copy" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or("copy without from")?;
                let v = lenient_get(doc, from).ok_or_else(|| {
                    format!(
                        "copy operation does not apply: doc is missing from path: {from}: \
                         missing value"
                    )
                })?;
                add(doc, path, v)?;
            }
            "test" => {
                let v = op.get("value").cloned().unwrap_or(Value::Null);
                if lenient_get(doc, path).as_ref() != Some(&v) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

/// The value at `path` as kustomize's patch library reads it for `copy` and `test`: a missing
/// member of an existing object is null; `None` when the parent itself is missing.
fn lenient_get(doc: &Value, path: &str) -> Option<Value> {
    if let Some(v) = doc.pointer(path) {
        return Some(v.clone());
    }
    let (parent, _) = path.rsplit_once('/')?;
    match doc.pointer(parent) {
        Some(Value::Object(_)) => Some(Value::Null),
        _ => None,
    }
}

fn split(path: &str) -> Result<(String, String), String> {
    if path.is_empty() {
        return Err("JSON patch path must not be empty".into());
    }
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("bad JSON pointer {path:?}"))?;
    let last = last.replace("~1", "/").replace("~0", "~");
    Ok((parent.to_string(), last))
}

fn pointer_mut<'a>(doc: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    doc.pointer_mut(path)
}

fn add(doc: &mut Value, path: &str, v: Value) -> Result<(), String> {
    let (parent, last) = split(path)?;
    let missing =
        || format!("add operation does not apply: doc is missing path: {path:?}: missing value");
    let target = pointer_mut(doc, &parent).ok_or_else(missing)?;
    match target {
        Value::Object(m) => {
            m.insert(last, v);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(v);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("bad array index in {path}"))?;
            if i > a.len() {
                return Err(format!(
                    "add operation does not apply: index out of range in {path}"
                ));
            }
            a.insert(i, v);
            Ok(())
        }
        _ => Err(missing()),
    }
}

/// Kustomize's `replace` is lenient: a missing member of an existing object is added, as `add`
/// would; only a missing parent (or array element) is refused.
fn replace(doc: &mut Value, path: &str, v: Value) -> Result<(), String> {
    let missing =
        || format!("replace operation does not apply: doc is missing path: {path}: missing value");
    if let Some(target) = pointer_mut(doc, path) {
        *target = v;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match pointer_mut(doc, &parent) {
        Some(Value::Object(m)) => {
            m.insert(last, v);
            Ok(())
        }
        _ => Err(missing()),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    let missing = || format!("remove operation does not apply: doc is missing path: {path}");
    let target = pointer_mut(doc, &parent).ok_or_else(missing)?;
    match target {
        Value::Object(m) => m.shift_remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i >= a.len() {
                return Err(missing());
            }
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}
