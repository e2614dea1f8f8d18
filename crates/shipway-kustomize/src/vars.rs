//! `vars`: `$(NAME)` in the fields kustomize's varReference specs list, replaced with a field
//! of the resource each var points at.

use serde_json::Value;

use crate::build::Acc;
use crate::config::{Create, spec_matches, split_path, walk};
use crate::resource::{Gvk, ResId};

/// A matcher for the ids a var's `objref` means.
pub fn target_of(var: &Value) -> impl Fn(&ResId) -> bool + use<> {
    let objref = var.get("objref").cloned().unwrap_or(Value::Null);
    let s = |k: &str| {
        objref
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut gvk = Gvk::from_api_version(&s("apiVersion"), &s("kind"));
    if !s("group").is_empty() {
        gvk.group = s("group");
    }
    if !s("version").is_empty() {
        gvk.version = s("version");
    }
    let target = ResId {
        gvk,
        name: s("name"),
        namespace: s("namespace"),
    };
    let strict = !target.namespace.is_empty() || target.gvk.is_cluster_scoped();
    move |id: &ResId| {
        id.gvk == target.gvk && id.name == target.name && (!strict || id.ns_equals(&target))
    }
}

/// Reads `a.b[0].c` (or `a.b[name=x].c`) from an object.
fn field_value(obj: &Value, path: &str) -> Option<Value> {
    let mut cur = obj;
    for part in path.split('.') {
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        let mut rest = rest;
        while let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if let Ok(i) = inner.parse::<usize>() {
                cur = cur.get(i)?;
            } else if let Some((k, v)) = inner.split_once('=') {
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|x| x.get(k).map(crate::resource::scalar_string).as_deref() == Some(v))?;
            } else {
                cur = cur.get(inner)?;
            }
        }
    }
    Some(cur.clone())
}

/// Replaces `$(VAR)` references, as kustomize's `DoReplacements`: a string that is exactly one
/// reference takes the var's value with its type.
fn expand(input: &str, vars: &[(String, Value)], used: &mut Vec<String>) -> Value {
    let b = input.as_bytes();
    let mut out = String::new();
    let mut checkpoint = 0;
    let mut cursor = 0;
    let lookup = |name: &str, used: &mut Vec<String>| -> Value {
        match vars.iter().find(|(n, _)| n == name) {
            Some((_, v)) if !v.is_object() && !v.is_array() && !v.is_null() => {
                used.push(name.to_string());
                v.clone()
            }
            _ => Value::String(format!("$({name})")),
        }
    };
    while cursor < b.len() {
        if b[cursor] == b'$' && cursor + 1 < b.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance;
            if rest.starts_with('$') {
                out.push('$');
                advance = 1;
            } else if rest.starts_with('(') {
                match rest.find(')') {
                    Some(end) => {
                        let name = &rest[1..end];
                        let mapped = lookup(name, used);
                        if input == format!("$({name})") {
                            return mapped;
                        }
                        match &mapped {
                            Value::String(s) => out.push_str(s),
                            other => out.push_str(&crate::resource::scalar_string(other)),
                        }
                        advance = end + 1;
                    }
                    None => {
                        out.push_str("$(");
                        advance = 1;
                    }
                }
            } else {
                let c = rest.chars().next().unwrap_or(' ');
                out.push('$');
                out.push(c);
                advance = c.len_utf8();
            }
            cursor += advance + 1;
            checkpoint = cursor;
            continue;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    Value::String(out)
}

fn replace_in(
    node: &mut Value,
    vars: &[(String, Value)],
    used: &mut Vec<String>,
) -> Result<(), String> {
    match node {
        Value::String(s) => {
            let s = s.clone();
            *node = expand(&s, vars, used);
        }
        Value::Object(m) => {
            for (_, v) in m.iter_mut() {
                if let Value::String(s) = v {
                    let s = s.clone();
                    *v = expand(&s, vars, used);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) => {
                        let s = s.clone();
                        *item = expand(&s, vars, used);
                    }
                    _ => return Err("invalid value type expect a string".into()),
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Resolves every var and replaces its references.
pub(crate) fn resolve(acc: &mut Acc) -> Result<(), String> {
    let mut values: Vec<(String, Value)> = Vec::new();
    for v in &acc.vars {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let path = v
            .get("fieldref")
            .and_then(|f| f.get("fieldpath"))
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .unwrap_or("metadata.name");
        let holder = acc.res.iter().find(|r| r.ref_var_names.contains(&name));
        let Some(holder) = holder else {
            return Err(format!(
                "var '{name}' cannot be mapped to a field in the set of known resources"
            ));
        };
        let value = field_value(&holder.obj, path).ok_or_else(|| {
            format!("field specified in var '{name}' not found in corresponding resource")
        })?;
        values.push((name, value));
    }
    if values.is_empty() {
        return Ok(());
    }
    let specs = acc.config.var_reference.clone();
    let mut used = Vec::new();
    for r in &mut acc.res {
        for fs in &specs {
            if !spec_matches(fs, &r.obj) {
                continue;
            }
            let path = split_path(&fs.path);
            walk(&mut r.obj, &path, false, Create::Nothing, &mut |node| {
                replace_in(node, &values, &mut used)
            })?;
        }
    }
    Ok(())
}
