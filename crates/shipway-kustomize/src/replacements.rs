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

/// One step of a replacement `fieldPath`.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// A map key: `image`, or a bracketed key holding dots, `[acme.io/cluster]`.
    Key(String),
    /// A list index: `0`.
    Index(usize),
    /// The list elements whose field `key` is `value` (`[name=web]`), or the scalar elements
    /// equal to `value` when `key` is empty (`[=web]`).
    Match(String, String),
    /// Every element of a list, or every value of a map: `*`.
    Any,
    /// A bracketed part that is neither a key with dots nor `key=value`, as `[image]`:
    /// kustomize refuses it when it gets there.
    Bad(String),
}

/// Splits `a.b.[name=x.y].c` on the dots outside brackets. A bracketed part holding `=` is an
/// element match; one holding a dot and no `=` is a map key written with its dots
/// (`metadata.labels.[acme.io/cluster]`), as kustomize reads them.
fn split_path(p: &str) -> Vec<Part> {
    let mut raw = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in p.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            '.' if depth == 0 => raw.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    raw.push(cur);
    raw.into_iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                return match inner.split_once('=') {
                    Some((k, v)) => Part::Match(k.to_string(), v.to_string()),
                    None if inner.contains('.') => Part::Key(inner.to_string()),
                    None => Part::Bad(s),
                };
            }
            if s == "*" {
                return Part::Any;
            }
            match s.parse::<usize>() {
                Ok(i) if !s.starts_with('+') => Part::Index(i),
                _ => Part::Key(s),
            }
        })
        .collect()
}

fn element_matches(item: &Value, key: &str, want: &str) -> bool {
    if key.is_empty() {
        return !item.is_object()
            && !item.is_array()
            && crate::resource::scalar_string(item) == want;
    }
    item.get(key).map(crate::resource::scalar_string).as_deref() == Some(want)
}

fn lookup<'a>(v: &'a Value, path: &[Part]) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(v);
    };
    match (first, v) {
        (Part::Match(k, want), Value::Array(items)) => {
            let item = items.iter().find(|i| element_matches(i, k, want))?;
            lookup(item, rest)
        }
        (Part::Index(i), Value::Array(items)) => lookup(items.get(*i)?, rest),
        (Part::Key(k), Value::Object(m)) => lookup(m.get(k.as_str())?, rest),
        (Part::Any, Value::Array(items)) => items.iter().find_map(|i| lookup(i, rest)),
        (Part::Any, Value::Object(m)) => m.values().find_map(|i| lookup(i, rest)),
        _ => None,
    }
}

/// A node a replacement writes to, and whether it was just created for it (a created scalar
/// has no type of its own yet: the copied text is read as YAML reads a plain scalar).
struct Slot<'a> {
    node: &'a mut Value,
    created: bool,
}

/// The empty node kustomize creates for a missing field: a list when the next part indexes
/// or matches elements, a map when it names a key, and a scalar still to be written at the end.
fn new_node(next: Option<&Part>) -> Value {
    match next {
        Some(Part::Index(_) | Part::Match(..) | Part::Any) => Value::Array(Vec::new()),
        Some(_) => Value::Object(Map::new()),
        None => Value::Null,
    }
}

/// A path part that needs an `expected` node (kustomize's kind names) where `v` is another: an
/// error when the path is to be created, else nothing to target.
fn wrong_kind(expected: &str, v: &Value, create: bool) -> Result<(), String> {
    if !create {
        return Ok(());
    }
    let found = match v {
        Value::Object(_) => "MappingNode",
        Value::Array(_) => "SequenceNode",
        _ => "ScalarNode",
    };
    Err(format!(
        "wrong node kind: expected {expected} but got {found}"
    ))
}

/// Every node at `path` (`*` and `[k=v]` may match several), creating missing fields, list
/// elements and an element at index `len` when `create` is set. The error says why a path
/// cannot be followed, in kustomize's words where it has some.
fn targets<'a>(
    v: &'a mut Value,
    path: &[Part],
    create: bool,
    created: bool,
    out: &mut Vec<Slot<'a>>,
) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        out.push(Slot { node: v, created });
        return Ok(());
    };
    match first {
        Part::Bad(_) => {
            Err("list path element must contain fieldName=fieldValue for element to match".into())
        }
        Part::Match(k, want) => {
            let Value::Array(items) = v else {
                return wrong_kind("SequenceNode", v, create);
            };
            let hits: Vec<usize> = (0..items.len())
                .filter(|&i| element_matches(&items[i], k, want))
                .collect();
            if hits.is_empty() {
                if !create {
                    return Ok(());
                }
                items.push(if k.is_empty() {
                    Value::String(want.clone())
                } else {
                    let mut m = Map::new();
                    m.insert(k.clone(), Value::String(want.clone()));
                    Value::Object(m)
                });
                let last = items.len() - 1;
                return targets(&mut items[last], rest, create, false, out);
            }
            for (i, item) in items.iter_mut().enumerate() {
                if hits.contains(&i) {
                    targets(item, rest, create, false, out)?;
                }
            }
            Ok(())
        }
        Part::Any => match v {
            Value::Array(items) => items
                .iter_mut()
                .try_for_each(|i| targets(i, rest, create, false, out)),
            Value::Object(m) => m
                .values_mut()
                .try_for_each(|i| targets(i, rest, create, false, out)),
            _ => Ok(()),
        },
        Part::Index(i) => {
            let Value::Array(items) = v else {
                return wrong_kind("SequenceNode", v, create);
            };
            if *i == items.len() && create {
                items.push(new_node(rest.first()));
                return targets(&mut items[*i], rest, create, rest.is_empty(), out);
            }
            let len = items.len();
            match items.get_mut(*i) {
                Some(item) => targets(item, rest, create, false, out),
                None => Err(format!("index {i} specified but only {len} elements found")),
            }
        }
        Part::Key(k) => {
            if v.is_null() && create {
                *v = Value::Object(Map::new());
            }
            let Value::Object(m) = v else {
                return wrong_kind("MappingNode", v, create);
            };
            let mut fresh = false;
            if !m.contains_key(k.as_str()) {
                if !create {
                    return Ok(());
                }
                m.insert(k.clone(), new_node(rest.first()));
                fresh = rest.is_empty();
            }
            match m.get_mut(k.as_str()) {
                Some(child) => targets(child, rest, create, fresh, out),
                None => Ok(()),
            }
        }
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
    if let Some((_, text)) = untag(&value) {
        value = Value::String(text.to_string());
    }
    let (_, delim, index) = options(source);
    if !delim.is_empty() {
        if value.is_object() || value.is_array() {
            return Err(format!(
                "the replacement source's fieldPath `{field_path}` holds a map or a list, and \
                 options.delimiter can only be used with scalar nodes"
            ));
        }
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
            let id = r.cur_id().id_string();
            for fp in &paths {
                let mut found = Vec::new();
                let what = if create {
                    "unable to find or create field"
                } else {
                    "unable to find field"
                };
                let parts = split_path(fp);
                // An annotation is a string map entry: it takes the text as written.
                let annotation = matches!(parts.as_slice(),
                    [Part::Key(m), Part::Key(a), Part::Key(_)] if m == "metadata" && a == "annotations");
                if let Err(why) = targets(&mut r.obj, &parts, create, false, &mut found) {
                    return Err(format!("{what} {fp:?} in replacement target: {why}"));
                }
                if found.is_empty() {
                    let hint = if create {
                        ""
                    } else {
                        "; set `options: {create: true}` on the target to create it"
                    };
                    return Err(format!("{what} {fp:?} in replacement target {id}{hint}"));
                }
                for slot in found {
                    set_value(slot.node, slot.created, annotation, &value, &delim, index)
                        .map_err(|e| format!("replacement target {id} field {fp}: {e}"))?;
                }
            }
            // Annotations are a string map to kustomize: whatever was copied into them is
            // read back as text. Labels keep what was written.
            crate::resource::annotations_as_strings(&mut r.obj, "");
        }
    }
    Ok(())
}

/// Writes `value` into a target node as kustomize does. A scalar target keeps its type and
/// takes the value's text, which must read as that type (`"8080"` into `replicas: 1` is the
/// number 8080, `"abc"` into it is refused); a scalar just created takes the text read as a plain
/// YAML scalar (so `"8080"` becomes a number), or as it is when `as_text` (an annotation); a map
/// or list target is replaced by the value.
fn set_value(
    node: &mut Value,
    created: bool,
    as_text: bool,
    value: &Value,
    delim: &str,
    index: i64,
) -> Result<(), String> {
    let value_is_scalar = !value.is_object() && !value.is_array();
    let target_is_scalar = !node.is_object() && !node.is_array() && (value_is_scalar || !created);
    if !delim.is_empty() && !target_is_scalar {
        return Err("delimiter option can only be used with scalar nodes".into());
    }
    if !target_is_scalar {
        *node = value.clone();
        return Ok(());
    }
    // The text of a map or list node is empty.
    let mut text = if value_is_scalar {
        crate::resource::scalar_string(value)
    } else {
        String::new()
    };
    if !delim.is_empty() {
        let old = match untag(node) {
            Some((_, text)) => text.to_string(),
            None => crate::resource::scalar_string(node),
        };
        let mut parts: Vec<String> = old.split(delim).map(str::to_string).collect();
        if index < 0 {
            parts.insert(0, text);
        } else if let Some(slot) = usize::try_from(index).ok().and_then(|i| parts.get_mut(i)) {
            *slot = text;
        } else {
            parts.push(text);
        }
        text = parts.join(delim);
    }
    if as_text {
        *node = Value::String(text);
        return Ok(());
    }
    let tag = match untag(node) {
        Some((tag, _)) => tag.to_string(),
        None => tag_of(node).to_string(),
    };
    let new = if created {
        crate::v3scalars::resolve_plain(&text).ok_or_else(|| {
            format!("{text:?} reads as an infinite or NaN number, which JSON cannot hold")
        })?
    } else {
        match (tag.as_str(), crate::v3scalars::resolve_plain(&text)) {
            ("str", _) => Value::String(text),
            ("int", Some(Value::Number(n))) if !n.is_f64() => Value::Number(n),
            ("float", Some(Value::Number(n))) => Value::Number(n),
            ("bool", Some(b @ Value::Bool(_))) => b,
            ("null", Some(Value::Null)) => Value::Null,
            // Kustomize finds out only when it next reads the object, so a later replacement
            // may still write a text that fits; [`check`] refuses what is left.
            _ => Value::String(format!("\0{tag}\0{text}")),
        }
    };
    *node = new;
    Ok(())
}

/// The type a scalar keeps, in YAML's words.
fn tag_of(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "str",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::Bool(_) => "bool",
        _ => "null",
    }
}

/// A scalar written with a text its type cannot read, while replacements run: `"\0int\0abc"`.
fn untag(v: &Value) -> Option<(&str, &str)> {
    v.as_str()?.strip_prefix('\0')?.split_once('\0')
}

/// After a kustomization's replacements: refuses any field left holding a text its type cannot
/// read (`"abc"` written into `replicas: 1`), naming the resource and the field.
pub fn check(res: &[Resource]) -> Result<(), String> {
    fn walk(v: &Value, path: &mut Vec<String>) -> Option<String> {
        match v {
            Value::Object(m) => m.iter().find_map(|(k, c)| {
                path.push(if k.contains('.') {
                    format!("[{k}]")
                } else {
                    k.clone()
                });
                let hit = walk(c, path);
                path.pop();
                hit
            }),
            Value::Array(a) => a.iter().enumerate().find_map(|(i, c)| {
                path.push(i.to_string());
                let hit = walk(c, path);
                path.pop();
                hit
            }),
            _ => {
                let (tag, text) = untag(v)?;
                let got = crate::v3scalars::resolve_plain(text).as_ref().map_or(
                    "an infinite or NaN float",
                    |v| match tag_of(v) {
                        "str" => "a string",
                        "float" => "a float",
                        "int" => "an integer",
                        "bool" => "a boolean",
                        _ => "null",
                    },
                );
                let kind = match tag {
                    "float" => "a float",
                    "int" => "an integer",
                    "bool" => "a boolean",
                    _ => "null",
                };
                Some(format!(
                    "field {}: the field holds {kind} and keeps that type, but {text:?} reads \
                     as {got}; copy a value of that type, or quote the target's value in the \
                     resource to make it a string",
                    path.join(".")
                ))
            }
        }
    }
    for r in res {
        if let Some(e) = walk(&r.obj, &mut Vec::new()) {
            return Err(format!("replacement target {} {e}", r.cur_id().id_string()));
        }
    }
    Ok(())
}
