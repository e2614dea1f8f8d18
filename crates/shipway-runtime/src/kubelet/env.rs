//! A container's environment: runtime variables, the image's, envFrom and env with the ConfigMaps
//! and Secrets they name, and Kubernetes' `$(VAR)` expansion.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use shipway_model::{Key, Object};

use super::Kubelet;
use super::sandbox::Sandbox;
use super::worker::PodWorker;

impl PodWorker {
    /// The container's environment: runtime variables, the image's, then the container's own.
    pub(super) fn environment(
        &self,
        c: &Value,
        sandbox: &Sandbox,
        image: &crate::images::ResolvedImage,
        data: &RefData,
    ) -> Result<Vec<(String, String)>, String> {
        let cname = c["name"].as_str().unwrap_or_default();
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            ),
            ("HOSTNAME".into(), self.pod.metadata.name.clone()),
            (
                "HOME".into(),
                Kubelet::container_root(&self.config.data_dir, &self.pod, cname)
                    .display()
                    .to_string(),
            ),
            ("SHIPWAY_POD_NAME".into(), self.pod.metadata.name.clone()),
            (
                "SHIPWAY_POD_NAMESPACE".into(),
                self.pod.metadata.namespace.clone().unwrap_or_default(),
            ),
            (
                "SHIPWAY_POD_UID".into(),
                self.pod.metadata.uid.clone().unwrap_or_default(),
            ),
        ];
        let mine: Vec<&Value> = sandbox
            .port_mappings
            .iter()
            .filter(|m| m["container"] == cname)
            .collect();
        if let Some(first) = mine.first() {
            env.push(("PORT".into(), first["hostPort"].to_string()));
        }
        for m in &mine {
            if let Some(n) = m["name"].as_str() {
                env.push((
                    format!("SHIPWAY_PORT_{}", n.to_ascii_uppercase().replace('-', "_")),
                    m["hostPort"].to_string(),
                ));
            }
        }
        for (name, path) in &sandbox.volumes {
            env.push((
                format!(
                    "SHIPWAY_VOLUME_{}",
                    name.to_ascii_uppercase().replace('-', "_")
                ),
                path.display().to_string(),
            ));
        }
        env.extend(image.env.iter().cloned());
        let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
            env.retain(|(ek, _)| *ek != k);
            env.push((k, v));
        };
        for from in c["envFrom"].as_array().into_iter().flatten() {
            let prefix = from["prefix"].as_str().unwrap_or_default();
            let (kind, r) = match (from.get("configMapRef"), from.get("secretRef")) {
                (Some(r), _) => ("ConfigMap", r),
                (_, Some(r)) => ("Secret", r),
                _ => continue,
            };
            let obj = r["name"].as_str().unwrap_or_default();
            match data.get(&(kind.to_string(), obj.to_string())) {
                Some(Err(msg)) => return Err(msg.clone()),
                Some(Ok(map)) => {
                    for (k, v) in map {
                        set(&mut env, format!("{prefix}{k}"), env_text(kind, obj, k, v)?);
                    }
                }
                None if r["optional"].as_bool() == Some(true) => {}
                None => {
                    return Err(format!(
                        "{kind} {obj:?} not found (container {cname:?} envFrom)"
                    ));
                }
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or_default().to_string();
            let value = if let Some(v) = e.get("value") {
                expand_vars(v.as_str().unwrap_or_default(), &env)
            } else if let Some(from) = e.get("valueFrom") {
                match self.value_from(from, data) {
                    Ok(Some(v)) => v,
                    Ok(None) => continue,
                    Err(msg) => return Err(format!("env {name}: {msg}")),
                }
            } else {
                String::new()
            };
            set(&mut env, name, value);
        }
        Ok(env)
    }

    pub(super) fn value_from(
        &self,
        from: &Value,
        data: &RefData,
    ) -> Result<Option<String>, String> {
        for (field, kind) in [("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")] {
            if let Some(r) = from.get(field) {
                let obj = r["name"].as_str().unwrap_or_default();
                let key = r["key"].as_str().unwrap_or_default();
                let optional = r["optional"].as_bool() == Some(true);
                return match data
                    .get(&(kind.to_string(), obj.to_string()))
                    .map(|m| m.as_ref().map(|m| m.get(key)))
                {
                    Some(Err(msg)) => Err(msg.clone()),
                    Some(Ok(Some(v))) => env_text(kind, obj, key, v).map(Some),
                    _ if optional => Ok(None),
                    None => Err(format!("{kind} {obj:?} not found")),
                    Some(Ok(None)) => Err(format!("couldn't find key {key} in {kind} {obj}")),
                };
            }
        }
        if let Some(path) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
            let m = &self.pod.metadata;
            let v = match path {
                "metadata.name" => Some(m.name.clone()),
                "metadata.namespace" => m.namespace.clone(),
                "metadata.uid" => m.uid.clone(),
                "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
                "spec.nodeName" => Some("local".into()),
                p => {
                    let label = p
                        .strip_prefix("metadata.labels['")
                        .and_then(|r| r.strip_suffix("']"));
                    let annotation = p
                        .strip_prefix("metadata.annotations['")
                        .and_then(|r| r.strip_suffix("']"));
                    match (label, annotation) {
                        (Some(l), _) => Some(m.labels.get(l).cloned().unwrap_or_default()),
                        (_, Some(a)) => Some(m.annotations.get(a).cloned().unwrap_or_default()),
                        _ => return Err(format!("fieldRef {p:?} is not supported")),
                    }
                }
            };
            return Ok(v);
        }
        Err("valueFrom needs configMapKeyRef, secretKeyRef or fieldRef".into())
    }

    /// Reads the ConfigMaps and Secrets a container's env and envFrom name from the shared cache,
    /// at each container start (as in Kubernetes, a running container's environment does not
    /// change).
    pub(super) async fn load_referenced(&self, c: &Value) -> RefData {
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let mut wanted = Vec::new();
        for from in c["envFrom"].as_array().into_iter().flatten() {
            if let Some(n) = from.pointer("/configMapRef/name").and_then(Value::as_str) {
                wanted.push(("ConfigMap", n.to_string()));
            }
            if let Some(n) = from.pointer("/secretRef/name").and_then(Value::as_str) {
                wanted.push(("Secret", n.to_string()));
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            if let Some(n) = e
                .pointer("/valueFrom/configMapKeyRef/name")
                .and_then(Value::as_str)
            {
                wanted.push(("ConfigMap", n.to_string()));
            }
            if let Some(n) = e
                .pointer("/valueFrom/secretKeyRef/name")
                .and_then(Value::as_str)
            {
                wanted.push(("Secret", n.to_string()));
            }
        }
        let mut out = RefData::new();
        for (kind, name) in wanted {
            if let Some(o) = self.cache.get(&Key::new("", kind, &ns, &name)) {
                out.insert((kind.to_string(), name), config_data(&o));
            }
        }
        out
    }
}

/// ConfigMap and Secret data a container's environment refers to, by (kind, name).
/// A ConfigMap or Secret whose data cannot be decoded is kept as the error, so the container that
/// names it says why instead of seeing an empty value.
pub(super) type RefData = HashMap<(String, String), Result<BTreeMap<String, Vec<u8>>, String>>;

/// One value of a ConfigMap or Secret as an environment variable: environment values are text,
/// and bytes that are not UTF-8 are refused (kubelet would pass them on, a Rust process could not
/// even read `std::env::var`), naming the key and what to do.
fn env_text(kind: &str, obj: &str, key: &str, value: &[u8]) -> Result<String, String> {
    String::from_utf8(value.to_vec()).map_err(|e| {
        format!(
            "couldn't use key {key} in {kind} {obj}: the value is not valid UTF-8 (invalid byte at offset {}); \
             environment variables hold text, mount the {kind} as a volume to read binary data",
            e.utf8_error().valid_up_to()
        )
    })
}

/// A ConfigMap's or Secret's data as bytes: Secret `data` and ConfigMap `binaryData` are base64,
/// ConfigMap `data` and `stringData` plain text. Bytes stay bytes: a volume gets them exactly.
pub(super) fn config_data(o: &Object) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    let decode = o.kind == "Secret";
    for (field, b64) in [
        ("data", decode),
        ("binaryData", true),
        ("stringData", false),
    ] {
        for (k, v) in o
            .body
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let Some(s) = v.as_str() else { continue };
            let value = if b64 {
                base64_decode(s).map_err(|e| {
                    format!(
                        "{} {}/{}: {field}[{k}]: Invalid value: {e}",
                        o.kind,
                        o.metadata.namespace.as_deref().unwrap_or_default(),
                        o.metadata.name
                    )
                })?
            } else {
                s.as_bytes().to_vec()
            };
            out.insert(k.clone(), value);
        }
    }
    Ok(out)
}

/// Standard base64 as Kubernetes stores it, with Go's wording for bad input (what kubectl users
/// see from the API server).
pub(super) fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| match e {
            base64::DecodeError::InvalidByte(at, _)
            | base64::DecodeError::InvalidLastSymbol(at, _) => {
                format!("illegal base64 data at input byte {at}")
            }
            base64::DecodeError::InvalidLength(len) => {
                format!("illegal base64 data at input byte {len}")
            }
            base64::DecodeError::InvalidPadding => "illegal base64 data: bad padding".into(),
        })
}

/// Kubernetes' `$(VAR)` expansion in env values, command and args; `$$(VAR)` escapes it and an
/// unknown variable is left as written.
pub(super) fn expand_vars(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(") {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&tail[..end + 3]),
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str(tail);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_kubernetes() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "x".to_string()),
        ];
        assert_eq!(expand_vars("$(A)-$(B)", &env), "1-x");
        assert_eq!(expand_vars("$$(A) $(C) $A", &env), "$(A) $(C) $A");
        assert_eq!(expand_vars("$(A", &env), "$(A");
    }

    #[test]
    fn secrets_decode() {
        assert_eq!(base64_decode("aGVsbG8="), Ok(b"hello".to_vec()));
        // Bytes that are not UTF-8 stay bytes (the hand-written decoder returned nothing for them).
        assert_eq!(base64_decode("/wD+gA=="), Ok(vec![0xff, 0x00, 0xfe, 0x80]));
        assert_eq!(
            base64_decode("aGVsbG8-"),
            Err("illegal base64 data at input byte 7".to_string())
        );
    }
}
