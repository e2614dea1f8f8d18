//! The endpoints controller: for each Service with a selector, an `Endpoints` object listing the
//! matching pods with the loopback ports their containers were given, ready ones apart from the
//! rest. This is what the proxy routes to.
//!
//! Every pod has its own host port, so each address gets its own subset (a valid Kubernetes
//! `Endpoints` shape: subsets with one address and its ports).

use std::sync::Arc;

use serde_json::{Value, json};
use shipway_controller::{Cache, GroupKind};
use shipway_model::{Key, Object, ObjectMeta, Selector};
use shipway_store::Store;

use crate::controller::{Action, ReconcileError, Reconciler};
use crate::workload::{controller_ref, is_terminating, pod_ready_since};

pub struct EndpointsController {
    pub store: Store,
    pub cache: Cache,
}

const POD: GroupKind = GroupKind::from_static("", "Pod");

const ACTOR: &str = "controller:endpoints";

/// The host port serving `target` (a container port number or a port name) in `pod`.
fn host_port(pod: &Object, target: &Value) -> Option<i64> {
    let mappings = pod.status()?.get("portMappings")?.as_array()?;
    mappings
        .iter()
        .find(|m| match target {
            Value::Number(n) => m["containerPort"].as_i64() == n.as_i64(),
            Value::String(name) => m["name"] == name.as_str(),
            _ => false,
        })
        .and_then(|m| m["hostPort"].as_i64())
}

/// The `subsets` of a Service's Endpoints: one per pod that serves at least one of its ports.
pub fn subsets(service: &Object, pods: &[Object]) -> Vec<Value> {
    let ports: Vec<Value> = service
        .spec()
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for pod in pods {
        let ready = pod_ready_since(pod).is_some();
        let mut endpoint_ports = Vec::new();
        for p in &ports {
            let target = p
                .get("targetPort")
                .cloned()
                .unwrap_or_else(|| p["port"].clone());
            if let Some(port) = host_port(pod, &target) {
                let mut ep =
                    json!({"port": port, "protocol": p["protocol"].as_str().unwrap_or("TCP")});
                if let Some(name) = p.get("name") {
                    ep["name"] = name.clone();
                }
                endpoint_ports.push(ep);
            }
        }
        if endpoint_ports.is_empty() {
            continue;
        }
        let address = json!({
            "ip": "127.0.0.1",
            "targetRef": {"kind": "Pod", "namespace": pod.metadata.namespace, "name": pod.metadata.name, "uid": pod.metadata.uid},
        });
        let field = if ready {
            "addresses"
        } else {
            "notReadyAddresses"
        };
        out.push(json!({field: [address], "ports": endpoint_ports}));
    }
    out
}

impl Reconciler for EndpointsController {
    fn kind(&self) -> (&'static str, &'static str) {
        ("", "Service")
    }

    /// A deleted or edited Endpoints object is put back.
    fn owns(&self) -> &'static [(&'static str, &'static str)] {
        &[("", "Endpoints")]
    }

    /// Any pod may start or stop matching a Service's selector, so a pod wakes the Services of
    /// its namespace.
    fn watches_namespace(&self) -> &'static [(&'static str, &'static str)] {
        &[("", "Pod")]
    }

    async fn reconcile(&self, service: Arc<Object>) -> Result<Action, ReconcileError> {
        let selector = service
            .spec()
            .and_then(|s| s.get("selector"))
            .and_then(Value::as_object);
        // A Service without a selector has endpoints managed by someone else, as in Kubernetes.
        let Some(selector) = selector.filter(|s| !s.is_empty()) else {
            return Ok(Action::AwaitChange);
        };
        if is_terminating(&service) {
            return Ok(Action::AwaitChange);
        }
        let labels = selector
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(",");
        let selector = Selector::parse(&labels)
            .map_err(|e| ReconcileError::Other(format!("{}: spec.selector: {e}", service.key())))?;
        let ns = service.metadata.namespace.clone().unwrap_or_default();
        let pods: Vec<Object> = self
            .cache
            .select(&POD, Some(&ns), &selector)
            .iter()
            .filter(|p| !is_terminating(p))
            .map(|p| (**p).clone())
            .collect();
        let subsets = subsets(&service, &pods);
        let key = Key::new("", "Endpoints", &ns, &service.metadata.name);
        let existing = self.cache.get(&key).map(|e| (*e).clone());
        if existing.as_ref().and_then(|e| e.body.get("subsets"))
            == Some(&Value::Array(subsets.clone()))
        {
            return Ok(Action::AwaitChange);
        }
        let mut body = serde_json::Map::new();
        body.insert("subsets".into(), Value::Array(subsets));
        let endpoints = Object {
            api_version: "v1".into(),
            kind: "Endpoints".into(),
            metadata: ObjectMeta {
                name: service.metadata.name.clone(),
                namespace: service.metadata.namespace.clone(),
                labels: service.metadata.labels.clone(),
                owner_references: vec![controller_ref(&service)],
                resource_version: existing.and_then(|e| e.metadata.resource_version),
                ..ObjectMeta::default()
            },
            body,
        };
        self.store.apply(endpoints, ACTOR).await?;
        Ok(Action::AwaitChange)
    }
}
