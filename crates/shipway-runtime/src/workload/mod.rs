//! Helpers the workload controllers share: owner references, pods from templates, pod readiness;
//! [`rollout`] is the ReplicaSet machinery of a rolling owner (Deployments, later Rollouts).

pub mod rollout;

use serde_json::Value;
use shipway_controller::Cache;
use shipway_model::types::{PodStatus, PodTemplateSpec};
use shipway_model::{Object, OwnerReference};
use shipway_store::{Store, StoreError};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use rollout::{POD_TEMPLATE_HASH, REVISION};

/// A new Pod from `template` (`owner`'s `spec.template`), named `<owner>-<random>`, controlled
/// by `owner`, with `extra_labels` added to the template's.
pub fn pod_from_template(
    owner: &Object,
    template: Option<&PodTemplateSpec>,
    extra_labels: &[(&str, String)],
) -> Result<Object, String> {
    let template = template.cloned().unwrap_or_default();
    let spec = template
        .spec
        .as_ref()
        .ok_or_else(|| format!("{} has no spec.template.spec", owner.key()))?;
    let mut labels = template.labels();
    for (k, v) in extra_labels {
        labels.insert((*k).to_string(), v.clone());
    }
    let mut pod = Object {
        api_version: "v1".into(),
        kind: "Pod".into(),
        metadata: shipway_model::ObjectMeta {
            name: format!("{}-{}", owner.metadata.name, random_suffix(5)),
            namespace: owner.metadata.namespace.clone(),
            labels,
            annotations: template.annotations(),
            owner_references: vec![controller_ref(owner)],
            ..Default::default()
        },
        body: serde_json::Map::new(),
    };
    pod.set_spec(spec);
    Ok(pod)
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

/// Records a kubectl-style event (`reason`, `message`) about `key`. An event is information, not
/// state: one that cannot be recorded is logged and the reconcile goes on.
pub async fn record_event(
    store: &Store,
    key: &shipway_model::Key,
    actor: &str,
    reason: &str,
    message: &str,
) {
    if let Err(e) = store.record_event(key, actor, reason, message).await {
        tracing::warn!(object = %key, reason, error = %e, "cannot record an event");
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

pub fn random_suffix(len: usize) -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn spec_i64(o: &Object, pointer: &str, default: i64) -> i64 {
    o.spec()
        .and_then(|s| s.pointer(pointer))
        .and_then(Value::as_i64)
        .unwrap_or(default)
}

/// A pod's status as the kubelet wrote it. The kubelet is the only writer and always writes
/// this shape; anything else reads as a pod that has not started.
pub fn pod_status(pod: &Object) -> PodStatus {
    pod.status_as().unwrap_or_default()
}

/// Whether a pod is Ready, and since when.
pub fn pod_ready_since(pod: &Object) -> Option<OffsetDateTime> {
    let status = pod_status(pod);
    let c = status.ready_condition()?;
    Some(
        c.last_transition_time
            .as_deref()
            .and_then(parse_time)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    )
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
    pod_status(pod).is_finished()
}
