//! `replacements:`: copy a field of one resource (the source) into fields of others (targets).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use shipway_model::Selector;

use crate::generate::Loader;
use crate::resource::{Gvk, ResId, Resource};

/// Applies one `replacements:` entry: inline, or `path:` to a file holding a list of them.
pub fn apply(res: &mut [Resource], rep: &Value, ldr: &dyn Loader) -> Result<(), String> {
    if let Some(path) = rep.get("path").and_then(Value::as_str) {
        let bytes = ldr.load(path)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let docs = shipway_model::parse_documents(path, &text).map_err(|e| {
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        for doc in docs {
            match doc.value {
                Value::Array(items) => {
                    for item in &items {
                        apply_one(res, item)?;
                    }
                }
                Value::Null => {}
                other => apply_one(res, &other)?,
            }
        }
        return Ok(());
    }
    apply_one(res, rep)
}

fn str_of(v: &Value, k: &str) -> String {
    v.get(k)
        .map(crate::resource::scalar_string)
        .unwrap_or_default()
}

/// A `ResId` selector: empty fields match anything, others exactly.
fn id_selector(v: &Value) -> ResId {
    let mut gvk = Gvk::from_api_version(&str_of(v, "apiVersion"), &str_of(v, "kind"));
    if !str_of(v, "group").is_empty() {
        gvk.group = str_of(v, "group");
    }
    if !str_of(v, "version").is_empty() {
        gvk.version = str_of(v, "version");
    }
    ResId {
        gvk,
        name: str_of(v, "name"),
        namespace: str_of(v, "namespace"),
    }
}

fn is_selected_by(id: &ResId, sel: &ResId) -> bool {
    (sel.name.is_empty() || sel.name == id.name)
        && (sel.namespace.is_empty() || sel.ns_equals(id))
        && id.gvk.is_selected(&sel.gvk)
}

fn is_empty_id(id: &ResId) -> bool {
    id.name.is_empty()
        && id.namespace.is_empty()
        && id.gvk.group.is_empty()
        && id.gvk.version.is_empty()
        && id.gvk.kind.is_empty()
}

fn matches_selectors(r: &Resource, sel: &Value) -> Result<bool, String> {
    for (field, key) in [
        ("labels", "labelSelector"),
        ("annotations", "annotationSelector"),
    ] {
        let text = str_of(sel, key);
        if text.is_empty() {
            continue;
        }
        let s = Selector::parse(&text).map_err(|e| e.to_string())?;
        let map: BTreeMap<String, String> = r.string_map(field).into_iter().collect();
        if !s.matches(&map) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Splits `a.b[name=x].c`, keeping dots inside brackets.
fn split_path(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in p.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth -= 1;
                cur.push(c);
            }
            '.' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(v);
    };
    if let Some(inner) = first.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        let (k, want) = inner.split_once('=')?;
        let item = v
            .as_array()?
            .iter()
            .find(|i| i.get(k).map(crate::resource::scalar_string).as_deref() == Some(want))?;
        return lookup(item, rest);
    }
    match v {
        Value::Array(a) => lookup(a.get(first.parse::<usize>().ok()?)?, rest),
        Value::Object(m) => lookup(m.get(first.as_str())?, rest),
        _ => None,
    }
}

/// Every node at `path` (with `*` and `[k=v]` matching several), creating missing map fields
/// when `create` is set.
fn targets<'a>(v: &'a mut Value, path: &[String], create: bool, out: &mut Vec<&'a mut Value>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(v);
        return;
    };
    if let Some(inner) = first.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        let Some((k, want)) = inner.split_once('=') else {
            return;
        };
        if let Value::Array(items) = v {
            for item in items {
                let hit = want == "*"
                    || item.get(k).map(crate::resource::scalar_string).as_deref() == Some(want);
                if hit {
                    targets(item, rest, create, out);
                }
            }
        }
        return;
    }
    if first == "*" {
        match v {
            Value::Array(items) => items.iter_mut().for_each(|i| targets(i, rest, create, out)),
            Value::Object(m) => m.values_mut().for_each(|i| targets(i, rest, create, out)),
            _ => {}
        }
        return;
    }
    if v.is_null() && create {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Array(items) => {
            if let Some(item) = first.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                targets(item, rest, create, out);
            }
        }
        Value::Object(m) => {
            if !m.contains_key(first.as_str()) {
                if !create {
                    return;
                }
                m.insert(first.clone(), Value::Null);
            }
            if let Some(child) = m.get_mut(first.as_str()) {
                targets(child, rest, create, out);
            }
        }
        _ => {}
    }
}

fn options(v: &Value) -> (bool, String, i64) {
    let o = v.get("options");
    let create = o
        .and_then(|o| o.get("create"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let delimiter = o.map(|o| str_of(o, "delimiter")).unwrap_or_default();
    let index = o
        .and_then(|o| o.get("index"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    (create, delimiter, index)
}

fn apply_one(res: &mut [Resource], rep: &Value) -> Result<(), String> {
    let (Some(source), Some(Value::Array(target_list))) = (rep.get("source"), rep.get("targets"))
    else {
        return Err("replacements must specify a source and at least one target".into());
    };
    let sel = id_selector(source);
    let matches: Vec<usize> = (0..res.len())
        .filter(|&i| res[i].all_ids().iter().any(|id| is_selected_by(id, &sel)))
        .collect();
    let src = match matches.as_slice() {
        [i] => *i,
        [] => return Err(format!("nothing selected by {}", sel.id_string())),
        _ => {
            return Err(format!("multiple matches for selector {}", sel.id_string()));
        }
    };
    let field_path = match str_of(source, "fieldPath") {
        p if p.is_empty() => "metadata.name".to_string(),
        p => p,
    };
    let mut value = lookup(&res[src].obj, &split_path(&field_path))
        .filter(|v| !v.is_null())
        .cloned()
        .ok_or_else(|| {
            format!(
                "fieldPath `{field_path}` is missing for replacement source {}",
                sel.id_string()
            )
        })?;
    let (_, delim, index) = options(source);
    if !delim.is_empty() {
        let text = crate::resource::scalar_string(&value);
        let parts: Vec<&str> = text.split(delim.as_str()).collect();
        let part = usize::try_from(index)
            .ok()
            .and_then(|i| parts.get(i))
            .ok_or_else(|| format!("options.index {index} is out of bounds for value {text}"))?;
        value = Value::String((*part).to_string());
    }
    for t in target_list {
        let select = t
            .get("select")
            .ok_or("target must specify resources to select")?;
        let sel = id_selector(select);
        let rejects: Vec<&Value> = t
            .get("reject")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let mut paths: Vec<String> = t
            .get("fieldPaths")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(crate::resource::scalar_string).collect())
            .unwrap_or_default();
        if paths.is_empty() {
            paths.push("metadata.name".into());
        }
        let (create, delim, index) = options(t);
        for r in res.iter_mut() {
            if !matches_selectors(r, select)? {
                continue;
            }
            let mut rejected = false;
            for rej in &rejects {
                let has_selectors = !str_of(rej, "labelSelector").is_empty()
                    || !str_of(rej, "annotationSelector").is_empty();
                if has_selectors && matches_selectors(r, rej)? {
                    rejected = true;
                }
            }
            let ids = r.all_ids();
            let by_id = rejects.iter().any(|rej| {
                let rid = id_selector(rej);
                !is_empty_id(&rid) && ids.iter().any(|id| is_selected_by(id, &rid))
            });
            if rejected || by_id || !ids.iter().any(|id| is_selected_by(id, &sel)) {
                continue;
            }
            for fp in &paths {
                let mut found = Vec::new();
                targets(&mut r.obj, &split_path(fp), create, &mut found);
                if found.is_empty() {
                    return Err(if create {
                        format!("unable to find or create field {fp:?} in replacement target")
                    } else {
                        format!("unable to find field {fp:?} in replacement target")
                    });
                }
                for node in found {
                    set_value(node, &value, &delim, index)?;
                }
            }
        }
    }
    Ok(())
}

/// Writes `value` into a target node: a scalar keeps its own type (kyaml replaces only the
/// text), anything else is replaced by the value.
fn set_value(node: &mut Value, value: &Value, delim: &str, index: i64) -> Result<(), String> {
    let mut value = value.clone();
    if !delim.is_empty() {
        if node.is_object() || node.is_array() {
            return Err("delimiter option can only be used with scalar nodes".into());
        }
        let text = crate::resource::scalar_string(node);
        let mut parts: Vec<String> = text.split(delim).map(str::to_string).collect();
        let v = crate::resource::scalar_string(&value);
        if index < 0 {
            parts.insert(0, v);
        } else if let Some(slot) = usize::try_from(index).ok().and_then(|i| parts.get_mut(i)) {
            *slot = v;
        } else {
            parts.push(v);
        }
        value = Value::String(parts.join(delim));
    }
    let scalar_value = !value.is_object() && !value.is_array();
    match node {
        Value::String(_) if scalar_value => {
            *node = Value::String(crate::resource::scalar_string(&value));
        }
        Value::Number(_) if scalar_value => {
            let text = crate::resource::scalar_string(&value);
            *node = serde_json::from_str::<serde_json::Number>(&text)
                .map(Value::Number)
                .unwrap_or(Value::String(text));
        }
        Value::Bool(_) if scalar_value => {
            let text = crate::resource::scalar_string(&value);
            *node = match text.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(text),
            };
        }
        _ => *node = value,
    }
    Ok(())
}
