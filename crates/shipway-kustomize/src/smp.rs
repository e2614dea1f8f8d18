//! Strategic merge patches as kustomize applies them (kyaml's merge2 with "prepend" lists):
//! maps merge, `null` deletes, `$patch: delete|replace|merge`, lists with a Kubernetes merge key
//! merge element by element (patched elements first), other lists are replaced.

use serde_json::{Map, Value};

use crate::resource::Gvk;

/// Applies `patch` to `dest` (the resource's object); `None` means the patch deleted it.
pub fn apply(dest: &Value, patch: &Value, gvk: &Gvk) -> Result<Option<Value>, String> {
    let schema = has_schema(gvk);
    let mut path = Vec::new();
    merge(
        Some(dest.clone()),
        Some(patch.clone()),
        schema,
        &mut path,
        gvk,
    )
}

/// Whether kyaml's built-in (Kubernetes 1.21) schema knows this GVK: only then do lists merge
/// by key; custom kinds get their lists replaced.
fn has_schema(gvk: &Gvk) -> bool {
    let v = gvk.version.as_str();
    match gvk.group.as_str() {
        "" => v == "v1",
        "apps" => v == "v1",
        "batch" => v == "v1" || v == "v1beta1",
        "extensions" => v == "v1beta1" && matches!(gvk.kind.as_str(), "Ingress"),
        "autoscaling"
        | "policy"
        | "networking.k8s.io"
        | "rbac.authorization.k8s.io"
        | "storage.k8s.io"
        | "admissionregistration.k8s.io"
        | "apiextensions.k8s.io"
        | "scheduling.k8s.io"
        | "coordination.k8s.io"
        | "certificates.k8s.io"
        | "discovery.k8s.io"
        | "node.k8s.io"
        | "events.k8s.io"
        | "apiregistration.k8s.io" => true,
        _ => false,
    }
}

/// The merge keys of a list at `path` (field names only); `None` for lists that are replaced,
/// an empty list for lists of scalars merged by value.
fn list_keys(path: &[String], gvk: &Gvk) -> Option<Vec<&'static str>> {
    let last = path.last()?.as_str();
    let parent = if path.len() >= 2 {
        path[path.len() - 2].as_str()
    } else {
        ""
    };
    let in_container = matches!(
        parent,
        "containers" | "initContainers" | "ephemeralContainers"
    );
    match last {
        "containers" | "initContainers" | "ephemeralContainers" => Some(vec!["name"]),
        "volumes" if gvk.kind != "PersistentVolume" => Some(vec!["name"]),
        "imagePullSecrets" => Some(vec!["name"]),
        "env" if in_container => Some(vec!["name"]),
        "volumeMounts" if in_container => Some(vec!["mountPath"]),
        "volumeDevices" if in_container => Some(vec!["devicePath"]),
        "ports" if in_container => Some(vec!["containerPort", "protocol"]),
        "ports" if gvk.kind == "Service" && path.len() == 2 => Some(vec!["port", "protocol"]),
        "hostAliases" => Some(vec!["ip"]),
        "topologySpreadConstraints" => Some(vec!["topologyKey", "whenUnsatisfiable"]),
        "finalizers" if parent == "metadata" => Some(vec![]),
        "ownerReferences" if parent == "metadata" => Some(vec!["uid"]),
        "secrets" if gvk.kind == "ServiceAccount" && path.len() == 1 => Some(vec!["name"]),
        _ => None,
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "mapping",
        Value::Array(_) => "sequence",
        Value::Null => "null",
        _ => "scalar",
    }
}

/// Takes `$patch` out of a map, returning the directive.
fn take_directive(v: &mut Value) -> Result<Option<String>, String> {
    if let Value::Object(m) = v
        && let Some(d) = m.shift_remove("$patch")
    {
        let d = d.as_str().unwrap_or("").to_string();
        return match d.as_str() {
            "delete" | "replace" | "merge" => Ok(Some(d)),
            other => Err(format!("unknown patch strategy {other:?}")),
        };
    }
    Ok(None)
}

/// Takes a `{$patch: ...}` element out of a list, returning the directive.
fn take_list_directive(v: &mut Value) -> Result<Option<String>, String> {
    let Value::Array(items) = v else {
        return Ok(None);
    };
    let mut found = None;
    let mut err = None;
    items.retain(|item| {
        if let Value::Object(m) = item
            && m.len() == 1
            && let Some(d) = m.get("$patch")
        {
            let d = d.as_str().unwrap_or("").to_string();
            if !matches!(d.as_str(), "delete" | "replace" | "merge") {
                err = Some(format!("unknown patch strategy {d:?}"));
            }
            found = Some(d);
            return false;
        }
        true
    });
    match err {
        Some(e) => Err(e),
        None => Ok(found),
    }
}

/// Removes nulls and directives from a value that lands where nothing was before.
fn clean(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.get("$patch").and_then(Value::as_str) == Some("delete") {
                return None;
            }
            let out: Map<String, Value> = m
                .into_iter()
                .filter(|(k, _)| k != "$patch" && !k.starts_with("$setElementOrder/"))
                .filter_map(|(k, v)| {
                    if v.is_null() {
                        None
                    } else {
                        clean(v).map(|v| (k, v))
                    }
                })
                .collect();
            Some(Value::Object(out))
        }
        Value::Array(a) => Some(Value::Array(
            a.into_iter()
                .filter(|x| {
                    !(x.is_object()
                        && x.as_object()
                            .is_some_and(|m| m.len() == 1 && m.contains_key("$patch")))
                })
                .filter_map(clean)
                .collect(),
        )),
        other => Some(other),
    }
}

fn merge(
    dest: Option<Value>,
    patch: Option<Value>,
    schema: bool,
    path: &mut Vec<String>,
    gvk: &Gvk,
) -> Result<Option<Value>, String> {
    let Some(mut patch) = patch else {
        return Ok(dest);
    };
    let dest = match dest {
        None | Some(Value::Null) => {
            if patch.is_null() {
                return Ok(None);
            }
            return Ok(clean(patch));
        }
        Some(d) => d,
    };
    if patch.is_null() {
        return Ok(None);
    }
    match (dest, &mut patch) {
        (Value::Object(mut d), Value::Object(_)) => {
            match take_directive(&mut patch)?.as_deref() {
                Some("delete") => return Ok(None),
                Some("replace") => return Ok(clean(patch)),
                _ => {}
            }
            let Value::Object(p) = patch else {
                return Ok(Some(Value::Object(d)));
            };
            for (k, pv) in p {
                if k.starts_with("$setElementOrder/") || k.starts_with("$retainKeys") {
                    continue;
                }
                path.push(k.clone());
                let dv = d.get(&k).cloned();
                let merged = merge(dv, Some(pv), schema, path, gvk);
                path.pop();
                match merged? {
                    Some(v) => {
                        d.insert(k, v);
                    }
                    None => {
                        d.shift_remove(&k);
                    }
                }
            }
            Ok(Some(Value::Object(d)))
        }
        (Value::Array(d), Value::Array(_)) => {
            let keys = if schema { list_keys(path, gvk) } else { None };
            let Some(keys) = keys else {
                return Ok(clean(patch));
            };
            match take_list_directive(&mut patch)?.as_deref() {
                Some("delete") => return Ok(None),
                Some("replace") => return Ok(clean(patch)),
                _ => {}
            }
            let Value::Array(p) = patch else {
                return Ok(Some(Value::Array(d)));
            };
            merge_list(d, p, &keys, schema, path, gvk).map(Some)
        }
        (d, p) if !d.is_object() && !d.is_array() && !p.is_object() && !p.is_array() => {
            Ok(Some(p.clone()))
        }
        (d, p) => Err(format!(
            "wrong node kind at {}: expected {} but got {}",
            path.join("."),
            kind_name(&d),
            kind_name(p)
        )),
    }
}

fn key_tuple(item: &Value, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            item.get(*k)
                .map(crate::resource::scalar_string)
                .unwrap_or_default()
        })
        .collect()
}

fn merge_list(
    dest: Vec<Value>,
    patch: Vec<Value>,
    keys: &[&str],
    schema: bool,
    path: &mut Vec<String>,
    gvk: &Gvk,
) -> Result<Value, String> {
    if keys.is_empty() {
        // Scalars merged by value: the patch's first, then the rest of the destination's.
        let mut out: Vec<Value> = Vec::new();
        for v in patch.into_iter().chain(dest) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
        return Ok(Value::Array(out));
    }
    // Which keys are in use: those with a value in some element on either side.
    let used: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| {
            patch
                .iter()
                .chain(dest.iter())
                .any(|i| i.get(*k).is_some_and(|v| !v.is_null()))
        })
        .collect();
    let used: Vec<&str> = if used.is_empty() { keys.to_vec() } else { used };
    let matches = |a: &[String], b: &[String]| {
        a.iter()
            .zip(b)
            .all(|(x, y)| x == y || x.is_empty() || y.is_empty())
            && a.iter().zip(b).any(|(x, y)| x == y && !x.is_empty())
    };
    let mut dest_items: Vec<(Vec<String>, Option<Value>)> = dest
        .into_iter()
        .map(|v| (key_tuple(&v, &used), Some(v)))
        .collect();
    let mut out: Vec<Value> = Vec::new();
    let mut out_keys: Vec<Vec<String>> = Vec::new();
    for mut item in patch {
        let tuple = key_tuple(&item, &used);
        let directive = take_directive(&mut item)?;
        let found = dest_items
            .iter_mut()
            .find(|(t, v)| v.is_some() && matches(t, &tuple));
        let dv = found.and_then(|(_, v)| v.take());
        if directive.as_deref() == Some("delete") {
            continue;
        }
        if let Some(pos) = out_keys.iter().position(|t| matches(t, &tuple)) {
            // A second patch element for the same key merges into the first.
            let prev = out.remove(pos);
            out_keys.remove(pos);
            let merged = merge(Some(prev), Some(item), schema, path, gvk)?;
            if let Some(v) = merged {
                out.insert(pos, v);
                out_keys.insert(pos, tuple);
            }
            continue;
        }
        let merged = if directive.as_deref() == Some("replace") {
            clean(item)
        } else {
            merge(dv, Some(item), schema, path, gvk)?
        };
        match merged {
            Some(v) if !(v.is_object() && v.as_object().is_some_and(Map::is_empty)) => {
                out.push(v);
                out_keys.push(tuple);
            }
            _ => {}
        }
    }
    for (_, v) in dest_items {
        if let Some(v) = v {
            out.push(v);
        }
    }
    Ok(Value::Array(out))
}
