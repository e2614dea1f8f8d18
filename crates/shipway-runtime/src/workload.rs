//! Helpers the workload controllers share: owner references, template hashes, int-or-percent values,
//! pod readiness and conditions.

use serde_json::{Value, json};
use shipway_controller::Cache;
use shipway_model::{Object, OwnerReference};
use shipway_store::{Store, StoreError};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The label that ties a ReplicaSet and its pods to one pod template, as Kubernetes names it.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The annotation holding a ReplicaSet's revision number within its Deployment.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// A new Pod from `owner`'s `spec.template`, named `<owner>-<random>`, controlled by `owner`, with
/// `extra_labels` added to the template's.
pub fn pod_from_template(
    owner: &Object,
    extra_labels: &[(&str, String)],
) -> Result<Object, String> {
    let template = owner
        .spec()
        .and_then(|s| s.get("template"))
        .cloned()
        .unwrap_or(Value::Null);
    let spec = template
        .get("spec")
        .cloned()
        .ok_or_else(|| format!("{} has no spec.template.spec", owner.key()))?;
    let meta = |field: &str| -> std::collections::BTreeMap<String, String> {
        serde_json::from_value(
            template
                .pointer(&format!("/metadata/{field}"))
                .cloned()
                .unwrap_or(json!({})),
        )
        .unwrap_or_default()
    };
    let mut labels = meta("labels");
    for (k, v) in extra_labels {
        labels.insert((*k).to_string(), v.clone());
    }
    let mut body = serde_json::Map::new();
    body.insert("spec".into(), spec);
    Ok(Object {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: shipway_model::ObjectMeta {
            name: format!("{}-{}", owner.metadata.name, random_suffix(5)),
            namespace: owner.metadata.namespace.clone(),
            labels,
            annotations: meta("annotations"),
            owner_references: vec![controller_ref(owner)],
            ..Default::default()
        },
        body,
    })
}

/// The pods `owner` controls, from the shared cache's owner index.
pub fn controlled_pods(cache: &Cache, owner: &Object) -> Vec<Object> {
    let uid = owner.metadata.uid.as_deref().unwrap_or_default();
    cache
        .owned_by(uid)
        .iter()
        .filter(|p| p.group().is_empty() && p.kind == "Pod" && is_controlled_by(p, owner))
        .map(|p| (**p).clone())
        .collect()
}

/// Deletes an object; one that is already gone is fine (another reconcile or the user got there).
pub async fn delete_if_present(
    store: &Store,
    key: &shipway_model::Key,
    actor: &str,
) -> Result<(), StoreError> {
    match store.delete(key, actor).await {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The strings of a JSON array (`command`, `args`, an image's `Entrypoint`); other values are skipped.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// An owner reference marking `owner` as the controller of a child.
pub fn controller_ref(owner: &Object) -> OwnerReference {
    OwnerReference {
        api_version: owner.api_version.clone(),
        kind: owner.kind.clone(),
        name: owner.metadata.name.clone(),
        uid: owner.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `owner` is the controller of `child` (same uid, so a recreated owner does not adopt
/// the children of its predecessor).
pub fn is_controlled_by(child: &Object, owner: &Object) -> bool {
    let uid = owner.metadata.uid.as_deref().unwrap_or_default();
    child
        .metadata
        .owner_references
        .iter()
        .any(|r| r.controller == Some(true) && r.kind == owner.kind && r.uid == uid)
}

/// A short stable hash of a pod template, in the alphabet Kubernetes uses for generated names
/// (no vowels, so no words; no confusable characters).
pub fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    // FNV-1a 32: what Kubernetes uses; any stable hash would do.
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let mut out = String::new();
    let mut n = u64::from(h);
    while out.len() < 10 {
        out.push(ALPHABET[(n % ALPHABET.len() as u64) as usize] as char);
        n /= ALPHABET.len() as u64;
        if n == 0 {
            n = u64::from(h.rotate_left(out.len() as u32)) + 1;
        }
    }
    out
}

pub fn random_suffix(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Resolves an IntOrString like `25%` or `1` against `total`; percentages round up or down.
pub fn int_or_percent(
    v: Option<&Value>,
    total: i64,
    default: &str,
    round_up: bool,
) -> Result<i64, String> {
    let v = v
        .cloned()
        .unwrap_or_else(|| Value::String(default.to_string()));
    match &v {
        Value::Number(n) => n
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("{v} is not a non-negative integer")),
        Value::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| {
                    format!("{s:?} is neither an integer nor a percentage like \"25%\"")
                })?;
            let scaled = pct * total;
            Ok(if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            })
        }
        _ => Err(format!("{v} is neither an integer nor a percentage")),
    }
}

pub fn spec_i64(o: &Object, pointer: &str, default: i64) -> i64 {
    o.spec()
        .and_then(|s| s.pointer(pointer))
        .and_then(Value::as_i64)
        .unwrap_or(default)
}

pub fn status_i64(o: &Object, field: &str) -> i64 {
    o.status()
        .and_then(|s| s.get(field))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// A condition of `obj`'s status by type.
pub fn condition<'a>(o: &'a Object, kind: &str) -> Option<&'a Value> {
    o.status()?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Sets a condition, keeping `lastTransitionTime` when the status did not change.
pub fn set_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
) {
    let status_str = if status { "True" } else { "False" };
    if let Some(c) = conditions.iter_mut().find(|c| c["type"] == kind) {
        if c["status"] != status_str {
            c["lastTransitionTime"] = json!(now);
        }
        c["status"] = json!(status_str);
        c["reason"] = json!(reason);
        c["message"] = json!(message);
        c["lastUpdateTime"] = json!(now);
    } else {
        conditions.push(json!({
            "type": kind, "status": status_str, "reason": reason, "message": message,
            "lastTransitionTime": now, "lastUpdateTime": now,
        }));
    }
}

/// Whether a pod is Ready, and since when.
pub fn pod_ready_since(pod: &Object) -> Option<OffsetDateTime> {
    let c = condition(pod, "Ready")?;
    if c["status"] != "True" {
        return None;
    }
    c["lastTransitionTime"]
        .as_str()
        .and_then(parse_time)
        .or(Some(OffsetDateTime::UNIX_EPOCH))
}

/// Whether a pod has been ready for `min_ready` seconds at `now`; otherwise how long until it
/// will be.
pub fn pod_available(
    pod: &Object,
    min_ready_secs: i64,
    now: OffsetDateTime,
) -> (bool, Option<std::time::Duration>) {
    match pod_ready_since(pod) {
        None => (false, None),
        Some(since) => {
            let ready_for = (now - since).whole_milliseconds() as i64;
            let need = min_ready_secs * 1000;
            if ready_for >= need {
                (true, None)
            } else {
                (
                    false,
                    Some(std::time::Duration::from_millis((need - ready_for) as u64)),
                )
            }
        }
    }
}

pub fn is_terminating(o: &Object) -> bool {
    o.metadata.deletion_timestamp.is_some()
}

pub fn pod_finished(pod: &Object) -> bool {
    matches!(
        pod.status()
            .and_then(|s| s.get("phase"))
            .and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_percent_rounds_like_kubernetes() {
        assert_eq!(int_or_percent(None, 10, "25%", true), Ok(3));
        assert_eq!(int_or_percent(None, 10, "25%", false), Ok(2));
        assert_eq!(int_or_percent(Some(&json!(2)), 10, "25%", true), Ok(2));
        assert_eq!(int_or_percent(Some(&json!("100%")), 3, "25%", false), Ok(3));
        assert!(int_or_percent(Some(&json!("x%")), 3, "25%", false).is_err());
    }

    #[test]
    fn template_hashes_are_stable_and_distinct() {
        let a = template_hash(&json!({"spec": {"containers": [{"image": "a"}]}}));
        let b = template_hash(&json!({"spec": {"containers": [{"image": "b"}]}}));
        assert_eq!(
            a,
            template_hash(&json!({"spec": {"containers": [{"image": "a"}]}}))
        );
        assert_ne!(a, b);
        assert_eq!(a.len(), 10);
    }
}
