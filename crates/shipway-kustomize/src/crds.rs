//! `crds:`: OpenAPI definitions of custom types (`{"pkg.Kind": {"Schema": ..., "Dependencies":
//! ...}}`) whose `x-kubernetes-*` extensions add field specs: name references, annotations,
//! label selectors and names that take the prefix.

use serde_json::Value;

use crate::config::{FieldSpec, NameBackRef, TransformerConfig};
use crate::generate::Loader;
use crate::resource::Gvk;

/// Reads one definitions file (JSON or YAML) into field specs.
pub fn load(ldr: &dyn Loader, path: &str) -> Result<TransformerConfig, String> {
    let bytes = ldr.load(path)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let docs = shipway_model::parse_documents(path, &text).map_err(|e| {
        let msgs: Vec<String> = e.iter().map(ToString::to_string).collect();
        format!(
            "unable to parse open API definition from '{path}': {}",
            msgs.join("; ")
        )
    })?;
    let mut tc = TransformerConfig::default();
    for doc in docs {
        let Value::Object(defs) = &doc.value else {
            continue;
        };
        for (type_name, def) in defs {
            let props = def.get("Schema").and_then(|s| s.get("properties"));
            let looks_like_object = props.is_some_and(|p| {
                p.get("kind").is_some()
                    && p.get("apiVersion").is_some()
                    && p.get("metadata").is_some()
            });
            if !looks_like_object {
                continue;
            }
            let kind = type_name.rsplit('.').next().unwrap_or(type_name);
            let gvk = Gvk {
                kind: kind.to_string(),
                ..Gvk::default()
            };
            let mut one = TransformerConfig::default();
            visit(&mut one, &gvk, defs, type_name, &mut Vec::new(), 0);
            tc.merge(&one);
        }
    }
    Ok(tc)
}

fn spec(gvk: &Gvk, path: &[String]) -> FieldSpec {
    FieldSpec {
        gvk: gvk.clone(),
        path: path.join("/"),
        create: false,
    }
}

fn visit(
    tc: &mut TransformerConfig,
    gvk: &Gvk,
    defs: &serde_json::Map<String, Value>,
    type_name: &str,
    path: &mut Vec<String>,
    depth: usize,
) {
    // Definitions may refer to each other in cycles; kustomize's own walk would not end either.
    if depth > 32 {
        return;
    }
    let Some(Value::Object(props)) = defs
        .get(type_name)
        .and_then(|d| d.get("Schema"))
        .and_then(|s| s.get("properties"))
    else {
        return;
    };
    for (name, prop) in props {
        path.push(name.clone());
        let ext = |k: &str| prop.get(k).and_then(Value::as_str);
        if ext("x-kubernetes-annotation").is_some() {
            crate::config::merge_specs(&mut tc.common_annotations, &[spec(gvk, path)]);
        }
        if ext("x-kubernetes-label-selector").is_some() {
            crate::config::merge_specs(&mut tc.common_labels, &[spec(gvk, path)]);
        }
        if ext("x-kubernetes-identity").is_some() {
            crate::config::merge_specs(&mut tc.name_prefix, &[spec(gvk, path)]);
        }
        if let (Some(version), Some(kind)) = (
            ext("x-kubernetes-object-ref-api-version"),
            ext("x-kubernetes-object-ref-kind"),
        ) {
            let key = ext("x-kubernetes-object-ref-name-key").unwrap_or("name");
            let mut p = path.clone();
            p.push(key.to_string());
            let mut one = TransformerConfig::default();
            one.name_reference.push(NameBackRef {
                gvk: Gvk {
                    group: String::new(),
                    version: version.to_string(),
                    kind: kind.to_string(),
                },
                referrers: vec![spec(gvk, &p)],
            });
            tc.merge(&one);
        }
        if let Some(r) = prop.get("$ref").and_then(Value::as_str) {
            visit(tc, gvk, defs, r, path, depth + 1);
        }
        path.pop();
    }
}
