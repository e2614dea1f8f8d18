//! `crds:`: OpenAPI definitions of custom kinds whose `x-kubernetes-object-ref-*` annotations
//! add name-reference field specs.

use serde_json::Value;

use crate::config::{FieldSpec, NameBackRef, TransformerConfig};
use crate::generate::Loader;
use crate::resource::Gvk;

/// Reads one CRD definitions file (JSON or YAML) into field specs.
pub fn load(ldr: &dyn Loader, path: &str) -> Result<TransformerConfig, String> {
    let bytes = ldr.load(path)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let docs = shipway_model::parse_documents(path, &text).map_err(|e| {
        e.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let mut tc = TransformerConfig::default();
    for doc in docs {
        let Value::Object(defs) = &doc.value else {
            continue;
        };
        for (def_name, def) in defs {
            let Some(kind) = def_name.rsplit('.').next() else {
                continue;
            };
            let gvk = Gvk {
                kind: kind.to_string(),
                ..Gvk::default()
            };
            let mut path = Vec::new();
            visit(def, defs, &gvk, &mut path, &mut tc, 0);
        }
    }
    Ok(tc)
}

fn visit(
    def: &Value,
    defs: &serde_json::Map<String, Value>,
    owner: &Gvk,
    path: &mut Vec<String>,
    tc: &mut TransformerConfig,
    depth: usize,
) {
    if depth > 20 {
        return;
    }
    let Some(Value::Object(props)) = def.get("properties") else {
        return;
    };
    for (name, prop) in props {
        path.push(name.clone());
        if let Some(kind) = prop
            .get("x-kubernetes-object-ref-kind")
            .and_then(Value::as_str)
        {
            let name_key = prop
                .get("x-kubernetes-object-ref-name-key")
                .and_then(Value::as_str)
                .unwrap_or("name");
            let fs_path = if path.last().map(String::as_str) == Some(name_key)
                || prop.get("type").and_then(Value::as_str) == Some("string")
            {
                path.join("/")
            } else {
                format!("{}/{name_key}", path.join("/"))
            };
            let mut one = TransformerConfig::default();
            one.name_reference.push(NameBackRef {
                gvk: Gvk {
                    kind: kind.to_string(),
                    ..Gvk::default()
                },
                referrers: vec![FieldSpec {
                    gvk: owner.clone(),
                    path: fs_path,
                    create: false,
                }],
            });
            tc.merge(&one);
        }
        if let Some(r) = prop.get("$ref").and_then(Value::as_str) {
            let target = r.trim_start_matches("#/definitions/");
            if let Some(d) = defs.get(target) {
                visit(d, defs, owner, path, tc, depth + 1);
            }
        } else {
            visit(prop, defs, owner, path, tc, depth + 1);
        }
        path.pop();
    }
}
