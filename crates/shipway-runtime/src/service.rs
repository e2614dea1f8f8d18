//! The endpoints controller: for each Service with a selector, an `Endpoints` object listing the
//! matching pods with the loopback ports their containers were given, ready ones apart from the
//! rest. This is what the proxy routes to.
//!
//! Every pod has its own host port, so each address gets its own subset (a valid Kubernetes
//! `Endpoints` shape: subsets with one address and its ports).

use std::sync::Arc;

use shipway_controller::{Cache, GroupKind};
use shipway_model::types::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, ServiceSpec,
    to_value,
};
use shipway_model::{Key, Object, ObjectMeta, Selector};
use shipway_store::Store;

use crate::controller::{Action, ReconcileError, Reconciler};
use crate::workload::{self, controller_ref, is_terminating};

pub struct EndpointsController {
    pub store: Store,
    pub cache: Cache,
}

const POD: GroupKind = GroupKind::from_static("", "Pod");

const ACTOR: &str = "controller:endpoints";

/// The `subsets` of a Service's Endpoints: one per pod that serves at least one of its ports,
/// through the host ports the kubelet gave it (`PodStatus::port_mappings`).
pub fn subsets(service: &ServiceSpec, pods: &[Object]) -> Vec<EndpointSubset> {
    let mut out = Vec::new();
    for pod in pods {
        let status = workload::pod_status(pod);
        let mut ports = Vec::new();
        for p in &service.ports {
            let target = p.target();
            if let Some(m) = status.port_mappings.iter().find(|m| m.serves(&target)) {
                ports.push(EndpointPort {
                    port: m.host_port,
                    protocol: Some(p.protocol().to_string()),
                    name: p.name.clone(),
                    ..EndpointPort::default()
                });
            }
        }
        if ports.is_empty() {
            continue;
        }
        let address = EndpointAddress {
            ip: "127.0.0.1".into(),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: Some(pod.metadata.name.clone()),
                uid: pod.metadata.uid.clone(),
                ..ObjectReference::default()
            }),
            ..EndpointAddress::default()
        };
        let mut subset = EndpointSubset {
            ports,
            ..EndpointSubset::default()
        };
        if status.ready_condition().is_some() {
            subset.addresses.push(address);
        } else {
            subset.not_ready_addresses.push(address);
        }
        out.push(subset);
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
        let spec: ServiceSpec = service
            .spec_as()
            .map_err(|e| ReconcileError::Other(e.to_string()))?;
        // A Service without a selector has endpoints managed by someone else, as in Kubernetes.
        let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
            return Ok(Action::AwaitChange);
        };
        if is_terminating(&service) {
            return Ok(Action::AwaitChange);
        }
        let labels = selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
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
        let endpoints = Endpoints {
            subsets: subsets(&spec, &pods),
            ..Endpoints::default()
        };
        let key = Key::new("", "Endpoints", &ns, &service.metadata.name);
        let existing = self.cache.get(&key).map(|e| (*e).clone());
        let subsets = to_value(&endpoints.subsets);
        if existing.as_ref().and_then(|e| e.body.get("subsets")) == Some(&subsets) {
            return Ok(Action::AwaitChange);
        }
        let mut body = serde_json::Map::new();
        body.insert("subsets".into(), subsets);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shipway_model::types::PORT_MAPPINGS;

    /// The kubelet's side of the contract, as it writes it today (a port without a name has
    /// `"name": null`), read through `PodStatus::port_mappings`.
    #[test]
    fn endpoints_use_the_host_ports_in_the_pods_port_mappings() {
        let pod = |name: &str, ready: &str| -> Object {
            serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": ready}],
                    PORT_MAPPINGS: [
                        {"container": "c", "name": "http", "containerPort": 8080, "hostPort": 40001, "protocol": "TCP"},
                        {"container": "c", "name": null, "containerPort": 9000, "hostPort": 40002, "protocol": "TCP"},
                    ],
                },
            }))
            .unwrap()
        };
        let spec: ServiceSpec = serde_json::from_value(json!({
            "selector": {"app": "web"},
            "ports": [
                {"name": "web", "port": 80, "targetPort": "http"},
                {"name": "admin", "port": 81, "targetPort": 9000, "protocol": "TCP"},
                {"name": "none", "port": 82},
            ],
        }))
        .unwrap();
        let got = to_value(&subsets(&spec, &[pod("a", "True"), pod("b", "False")]));
        assert_eq!(
            got,
            json!([
                {"addresses": [{"ip": "127.0.0.1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}}],
                 "ports": [{"port": 40001, "protocol": "TCP", "name": "web"}, {"port": 40002, "protocol": "TCP", "name": "admin"}]},
                {"notReadyAddresses": [{"ip": "127.0.0.1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "b", "uid": "uid-b"}}],
                 "ports": [{"port": 40001, "protocol": "TCP", "name": "web"}, {"port": 40002, "protocol": "TCP", "name": "admin"}]},
            ])
        );
    }
}
