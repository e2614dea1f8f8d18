//! `{{args.NAME}}` in a run's metrics: values from `value`, a Secret's key (`secretKeyRef`, read
//! from the cache) or a field of the run (`fieldRef`), substituted in every string of each metric
//! (provider fields and conditions), with Argo's error wording.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;
use shipway_model::types::{Argument, Metric, to_value};
use shipway_model::{Key, Object};

/// The arguments' values by name, and the values that came from Secrets (to redact them from
/// measurement messages).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolved {
    pub values: BTreeMap<String, String>,
    pub secrets: Vec<String>,
}

/// Resolves `args` for `run`; `secret(namespace, name)` reads a Secret. The error is what Argo
/// writes after `Unable to resolve metric arguments: `.
pub fn resolve(
    args: &[Argument],
    run: &Object,
    secret: impl Fn(&Key) -> Option<std::sync::Arc<Object>>,
) -> Result<Resolved, String> {
    let namespace = run.metadata.namespace.as_deref().unwrap_or_default();
    let mut out = Resolved::default();
    for arg in args {
        let from = arg.value_from.as_ref();
        let value = if let Some(r) = from.and_then(|f| f.secret_key_ref.as_ref()) {
            let obj = secret(&Key::new("", "Secret", namespace, &r.name))
                .ok_or_else(|| format!("secrets \"{}\" not found", r.name))?;
            let encoded = obj
                .body
                .get("data")
                .and_then(|d| d.get(&r.key))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("key '{}' does not exist in secret '{}'", r.key, r.name))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("secret '{}' key '{}': not base64: {e}", r.name, r.key))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            out.secrets.push(text.clone());
            text
        } else if let Some(f) = from.and_then(|f| f.field_ref.as_ref()) {
            field(run, &f.field_path).ok_or_else(|| {
                format!(
                    "argument \"{}\": fieldPath \"{}\" not found in {}",
                    arg.name,
                    f.field_path,
                    run.key()
                )
            })?
        } else if let Some(v) = &arg.value {
            v.clone()
        } else {
            return Err(format!("argument \"{}\" was not supplied", arg.name));
        };
        out.values.insert(arg.name.clone(), value);
    }
    Ok(out)
}

/// `metadata.name`, `metadata.namespace`, `metadata.uid`, `metadata.labels['k']`,
/// `metadata.annotations['k']`, or any other dotted path into the object's JSON (a string or a
/// number).
fn field(run: &Object, path: &str) -> Option<String> {
    let bracket = |prefix: &str| {
        path.strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
            .map(str::to_string)
    };
    if let Some(k) = bracket("metadata.labels") {
        return run.metadata.labels.get(&k).cloned();
    }
    if let Some(k) = bracket("metadata.annotations") {
        return run.metadata.annotations.get(&k).cloned();
    }
    let json = run.to_json();
    let mut v = &json;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `metric` with every `{{args.NAME}}` (spaces inside the braces allowed) replaced; an unknown
/// name is Argo's `failed to resolve {{args.NAME}}`.
pub fn substitute(metric: &Metric, args: &Resolved) -> Result<Metric, String> {
    let mut json = to_value(metric);
    walk(&mut json, args)?;
    serde_json::from_value(json).map_err(|e| format!("metric \"{}\": {e}", metric.name))
}

fn walk(v: &mut Value, args: &Resolved) -> Result<(), String> {
    match v {
        Value::String(s) if s.contains("{{") => *s = template(s, args)?,
        Value::Array(items) => items.iter_mut().try_for_each(|i| walk(i, args))?,
        Value::Object(map) => map.values_mut().try_for_each(|i| walk(i, args))?,
        _ => {}
    }
    Ok(())
}

fn template(s: &str, args: &Resolved) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let tag = &rest[start + 2..start + 2 + len];
        let value = tag
            .trim()
            .strip_prefix("args.")
            .and_then(|name| args.values.get(name))
            .ok_or_else(|| format!("failed to resolve {{{{{tag}}}}}"))?;
        out.push_str(value);
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipway_model::types::AnalysisRunSpec;

    fn run(spec: Value) -> Object {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": "r1", "namespace": "ns", "labels": {"app": "demo"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn secret() -> Object {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": "ns"},
            "data": {"token": "czNjcjN0"},
        }))
        .unwrap()
    }

    #[test]
    fn values_secrets_and_fields_substitute_into_the_provider_and_conditions() {
        let r = run(serde_json::json!({
            "args": [
                {"name": "host", "value": "example.test"},
                {"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                {"name": "app", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "me", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "limit", "value": "0.9"},
            ],
            "metrics": [{
                "name": "m",
                "successCondition": "result >= {{ args.limit }}",
                "provider": {"web": {
                    "url": "http://{{args.host}}/{{args.app}}/{{args.me}}",
                    "headers": [{"key": "Authorization", "value": "Bearer {{args.token}}"}],
                }},
            }],
        }));
        let spec: AnalysisRunSpec = r.spec_as().unwrap();
        let s = secret();
        let resolved = resolve(&spec.args, &r, |k| {
            (k == &s.key()).then(|| std::sync::Arc::new(s.clone()))
        })
        .unwrap();
        assert_eq!(resolved.secrets, vec!["s3cr3t".to_string()]);
        let m = substitute(&spec.metrics[0], &resolved).unwrap();
        let web = m.provider.web.unwrap();
        assert_eq!(web.url, "http://example.test/demo/r1");
        assert_eq!(web.headers[0].value, "Bearer s3cr3t");
        assert_eq!(m.success_condition.as_deref(), Some("result >= 0.9"));
    }

    #[test]
    fn missing_values_are_argos_errors() {
        let r = run(serde_json::json!({}));
        let none = |_: &Key| None;
        let args: Vec<Argument> =
            serde_json::from_value(serde_json::json!([{"name": "x"}])).unwrap();
        assert_eq!(
            resolve(&args, &r, none),
            Err("argument \"x\" was not supplied".into())
        );
        let args: Vec<Argument> = serde_json::from_value(serde_json::json!([
            {"name": "x", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}
        ]))
        .unwrap();
        assert_eq!(
            resolve(&args, &r, none),
            Err("secrets \"creds\" not found".into())
        );
        let s = secret();
        assert_eq!(
            resolve(&args, &r, |_| Some(std::sync::Arc::new(s.clone()))),
            Err("key 'k' does not exist in secret 'creds'".into())
        );
        let metric: Metric = serde_json::from_value(serde_json::json!({
            "name": "m", "provider": {"web": {"url": "http://{{args.nope}}/"}}
        }))
        .unwrap();
        assert_eq!(
            substitute(&metric, &Resolved::default()),
            Err("failed to resolve {{args.nope}}".into())
        );
    }
}
