//! Discovery: watches Services, Endpoints, Pods and TrafficPolicies in the store, builds the
//! routing table and publishes it through a `watch` channel; gives each Service port a listen
//! address and writes it to the Service's status. It also drops the metric series of Services the
//! newest table no longer routes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use serde_json::{Value, json};
use shipway_model::Object;
use shipway_store::{ListQuery, Store, StoreError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::ProxyMetrics;
use crate::policy::{self, TrafficPolicy};
use crate::table::{BackendSpec, RouteSpec, RoutingTable, RuleSpec};

/// The annotation that fixes the listen address of a Service's first port.
pub const LISTEN_ANNOTATION: &str = "shipway.dev/listen";
/// `least-requests` balances a Service by requests in flight instead of round robin.
pub const BALANCE_ANNOTATION: &str = "shipway.dev/load-balancer";
const ACTOR: &str = "controller:proxy";

/// The objects a table is built from.
#[derive(Default)]
pub struct Snapshot {
    pub services: Vec<Object>,
    pub endpoints: Vec<Object>,
    pub pods: Vec<Object>,
    pub policies: Vec<Object>,
}

fn ns(o: &Object) -> &str {
    o.metadata.namespace.as_deref().unwrap_or("default")
}

/// Picks a free loopback port by binding port 0. The proxy binds it moments later; the address is
/// then kept in the Service's status, so it stays put across restarts when still free.
fn allocate() -> Option<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()
}

/// The listen address of each port of `svc`, and the status to write if it changed.
fn listen_addresses(svc: &Object, ports: &[Value]) -> (Vec<Option<SocketAddr>>, Option<Value>) {
    let previous: Vec<Value> = svc
        .status()
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let annotated = svc
        .metadata
        .annotations
        .get(LISTEN_ANNOTATION)
        .and_then(|a| a.trim().parse::<SocketAddr>().ok());
    let mut addrs = Vec::new();
    let mut status_ports = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        let port = p.get("port").cloned().unwrap_or(Value::Null);
        let kept = previous
            .iter()
            .find(|q| {
                q.get("name").and_then(Value::as_str).unwrap_or_default() == name
                    && q["port"] == port
            })
            .and_then(|q| q.get("listen").and_then(Value::as_str))
            .and_then(|l| l.parse::<SocketAddr>().ok());
        let addr = if i == 0 && annotated.is_some() {
            annotated
        } else {
            kept.filter(|k| Some(*k) != annotated).or_else(allocate)
        };
        addrs.push(addr);
        let mut entry = json!({"port": port});
        if !name.is_empty() {
            entry["name"] = json!(name);
        }
        if let Some(a) = addr {
            entry["listen"] = json!(a.to_string());
        }
        status_ports.push(entry);
    }
    let mut status = svc.status().cloned().unwrap_or_else(|| json!({}));
    if let Some(obj) = status.as_object_mut() {
        match addrs.first().copied().flatten() {
            Some(a) => obj.insert("address".into(), json!(a.to_string())),
            None => obj.remove("address"),
        };
        obj.insert("ports".into(), Value::Array(status_ports));
    }
    let changed = svc.status() != Some(&status);
    (addrs, changed.then_some(status))
}

/// Ready endpoints of one Service port: (pod name, address).
fn ready_endpoints(endpoints: Option<&Object>, port_name: &str) -> Vec<(String, SocketAddr)> {
    let mut out = Vec::new();
    let subsets = endpoints
        .and_then(|e| e.body.get("subsets"))
        .and_then(Value::as_array);
    for subset in subsets.into_iter().flatten() {
        let port = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or_default() == port_name)
            .and_then(|p| p.get("port").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else { continue };
        for a in subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(ip) = a
                .get("ip")
                .and_then(Value::as_str)
                .and_then(|ip| ip.parse().ok())
            else {
                continue;
            };
            let pod = a
                .pointer("/targetRef/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            out.push((pod, SocketAddr::new(ip, port)));
        }
    }
    // Stable order, so an unchanged set of endpoints compares equal and costs no rebuild.
    out.sort();
    out
}

/// Builds the route specs and the status updates the Services need. A function of the snapshot,
/// but for ports with neither an annotation nor an address in their status yet: those get a free
/// loopback port.
pub fn build(snapshot: &Snapshot) -> (Vec<RouteSpec>, Vec<(Object, Value)>) {
    let endpoints: HashMap<(&str, &str), &Object> = snapshot
        .endpoints
        .iter()
        .map(|e| ((ns(e), e.metadata.name.as_str()), e))
        .collect();
    let policies: HashMap<(&str, &str), &Object> = snapshot
        .policies
        .iter()
        .map(|p| ((ns(p), p.metadata.name.as_str()), p))
        .collect();
    let labels: HashMap<(&str, &str), &BTreeMap<String, String>> = snapshot
        .pods
        .iter()
        .map(|p| ((ns(p), p.metadata.name.as_str()), &p.metadata.labels))
        .collect();
    let mut specs = Vec::new();
    let mut statuses = Vec::new();
    for svc in &snapshot.services {
        let (namespace, name) = (ns(svc), svc.metadata.name.as_str());
        let ports: Vec<Value> = svc
            .spec()
            .and_then(|s| s.get("ports"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let (addrs, status) = listen_addresses(svc, &ports);
        if let Some(status) = status {
            statuses.push((svc.clone(), status));
        }
        let policy = match policies.get(&(namespace, name)) {
            Some(p) => match TrafficPolicy::from_spec(p.spec().unwrap_or(&Value::Null)) {
                Ok(p) => Some(p),
                Err(e) => {
                    // Fall back to plain round robin rather than taking the Service down.
                    tracing::warn!("TrafficPolicy {namespace}/{name} ignored: {e}");
                    None
                }
            },
            None => None,
        };
        for (p, addr) in ports.iter().zip(addrs) {
            let Some(listen) = addr else { continue };
            if p.get("protocol")
                .and_then(Value::as_str)
                .is_some_and(|p| p != "TCP")
            {
                continue;
            }
            let port_name = p.get("name").and_then(Value::as_str).unwrap_or_default();
            // HTTP unless the port's appProtocol names something else ("tcp", "postgresql", ...):
            // those are passed through as plain TCP.
            let http = p
                .get("appProtocol")
                .and_then(Value::as_str)
                .is_none_or(|a| matches!(a, "http" | "kubernetes.io/h2c" | "kubernetes.io/ws"));
            let ready = ready_endpoints(endpoints.get(&(namespace, name)).copied(), port_name);
            let (backends, rules, mirror) = match &policy {
                None => (
                    vec![BackendSpec {
                        name: "default".into(),
                        weight: 100,
                        endpoints: ready.iter().map(|(_, a)| *a).collect(),
                    }],
                    Vec::new(),
                    None,
                ),
                Some(policy) => {
                    let backends: Vec<BackendSpec> = policy
                        .backends
                        .iter()
                        .map(|b| BackendSpec {
                            name: b.name.clone(),
                            weight: b.weight,
                            endpoints: ready
                                .iter()
                                .filter(|(pod, _)| {
                                    labels
                                        .get(&(namespace, pod.as_str()))
                                        .is_some_and(|l| b.selector.matches(l))
                                })
                                .map(|(_, a)| *a)
                                .collect(),
                        })
                        .collect();
                    let index = |n: &str| policy.backends.iter().position(|b| b.name == n);
                    let rules = policy
                        .routes
                        .iter()
                        .filter_map(|r| {
                            Some(RuleSpec {
                                name: r.name.clone(),
                                headers: r.headers.clone(),
                                cookies: r.cookies.clone(),
                                backend: index(&r.backend)?,
                            })
                        })
                        .collect();
                    let mirror = policy
                        .mirror
                        .as_ref()
                        .and_then(|(b, pct)| Some((index(b)?, *pct)));
                    (backends, rules, mirror)
                }
            };
            specs.push(RouteSpec {
                namespace: namespace.to_string(),
                service: name.to_string(),
                port_name: port_name.to_string(),
                listen,
                backends,
                rules,
                mirror,
                tcp: !http,
                least_requests: svc
                    .metadata
                    .annotations
                    .get(BALANCE_ANNOTATION)
                    .is_some_and(|b| b == "least-requests"),
            });
        }
    }
    (specs, statuses)
}

async fn snapshot(store: &Store) -> Result<(Snapshot, u64), StoreError> {
    let services = store.list(&ListQuery::kind("", "Service")).await?;
    let endpoints = store.list(&ListQuery::kind("", "Endpoints")).await?;
    let pods = store.list(&ListQuery::kind("", "Pod")).await?;
    let policies = store
        .list(&ListQuery::kind(policy::GROUP, policy::KIND))
        .await?;
    // Watching from the oldest list's version replays what changed in between: a rebuild too
    // many, never one too few.
    let rv = services.resource_version;
    Ok((
        Snapshot {
            services: services.items,
            endpoints: endpoints.items,
            pods: pods.items,
            policies: policies.items,
        },
        rv,
    ))
}

fn relevant(obj: &Object) -> bool {
    matches!(
        (obj.group(), obj.kind.as_str()),
        ("", "Service" | "Endpoints" | "Pod") | (policy::GROUP, policy::KIND)
    )
}

/// Drops the series of services `table` has no route for (deleted Services, or ones left without a
/// port to listen on), so they leave `/metrics`. A route's series stay while it exists.
fn prune_metrics(metrics: &ProxyMetrics, table: &RoutingTable) {
    let routed: HashSet<&str> = table.routes.values().map(|r| r.key.as_str()).collect();
    let dropped = metrics.retain_services(|s| routed.contains(s));
    if dropped > 0 {
        tracing::debug!("proxy discovery: metrics of {dropped} service(s) without a route dropped");
    }
}

/// Rebuilds and publishes; returns the resourceVersion the snapshot was read at.
async fn refresh(
    store: &Store,
    tx: &watch::Sender<Arc<RoutingTable>>,
    last: &mut Vec<RouteSpec>,
    metrics: Option<&ProxyMetrics>,
) -> Result<u64, StoreError> {
    let (snap, rv) = snapshot(store).await?;
    let (specs, statuses) = build(&snap);
    for (mut svc, status) in statuses {
        svc.body.insert("status".into(), status);
        // A conflict means the Service changed meanwhile; its change event brings us back here.
        if let Err(e) = store.update_status(svc, ACTOR).await {
            tracing::debug!("proxy discovery: status not written: {e}");
        }
    }
    if specs != *last {
        tx.send_replace(Arc::new(RoutingTable::build(&specs)));
        *last = specs;
    }
    // On every refresh, not only when a table is published: a request still in flight on an
    // older table can record to (and so re-create) a series after its service was pruned.
    if let Some(metrics) = metrics {
        let table = tx.borrow().clone();
        prune_metrics(metrics, &table);
    }
    Ok(rv)
}

/// Starts discovery; the receiver always holds the newest table. With `metrics`, the series of
/// services that no longer have a route are dropped as tables change.
pub fn spawn(
    store: Store,
    metrics: Option<Arc<ProxyMetrics>>,
    shutdown: CancellationToken,
) -> (
    watch::Receiver<Arc<RoutingTable>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = watch::channel(Arc::new(RoutingTable::default()));
    let task = tokio::spawn(run(store, tx, metrics, shutdown));
    (rx, task)
}

async fn run(
    store: Store,
    tx: watch::Sender<Arc<RoutingTable>>,
    metrics: Option<Arc<ProxyMetrics>>,
    shutdown: CancellationToken,
) {
    let metrics = metrics.as_deref();
    let mut last = Vec::new();
    'outer: loop {
        let rv = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = refresh(&store, &tx, &mut last, metrics) => match r {
                Ok(rv) => rv,
                Err(e) => {
                    tracing::warn!("proxy discovery: {e}");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        let mut changes = store.watch(ListQuery::default(), rv);
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                e = changes.next() => e,
            };
            match event {
                Some(Ok(e)) if relevant(&e.object) => {
                    // Take every change already waiting, then rebuild once.
                    while let Some(Some(_)) = changes.next().now_or_never() {}
                    match refresh(&store, &tx, &mut last, metrics).await {
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!("proxy discovery: {e}");
                            continue 'outer;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!("proxy discovery: watch: {e}");
                    continue 'outer;
                }
                None => continue 'outer,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Object {
        serde_json::from_value(v).unwrap()
    }

    fn pod(name: &str, hash: &str) -> Object {
        obj(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web", "pod-template-hash": hash}}}))
    }

    fn subset(pod: &str, port: u16, ready: bool) -> Value {
        let field = if ready {
            "addresses"
        } else {
            "notReadyAddresses"
        };
        json!({field: [{"ip": "127.0.0.1", "targetRef": {"kind": "Pod", "namespace": "default", "name": pod}}],
            "ports": [{"name": "http", "port": port}]})
    }

    fn snapshot(policy: Option<Value>) -> Snapshot {
        Snapshot {
            services: vec![obj(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "default", "annotations": {"shipway.dev/listen": "127.0.0.1:18080"}},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}))],
            endpoints: vec![obj(json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "web", "namespace": "default"},
                "subsets": [subset("a1", 9001, true), subset("a2", 9002, true), subset("b1", 9003, true), subset("b2", 9004, false)]}))],
            pods: vec![
                pod("a1", "aaa"),
                pod("a2", "aaa"),
                pod("b1", "bbb"),
                pod("b2", "bbb"),
            ],
            policies: policy
                .map(|spec| {
                    obj(
                        json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "TrafficPolicy",
                        "metadata": {"name": "web", "namespace": "default"}, "spec": spec}),
                    )
                })
                .into_iter()
                .collect(),
        }
    }

    fn addrs(ports: &[u16]) -> Vec<SocketAddr> {
        ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect()
    }

    #[test]
    fn without_a_policy_every_ready_endpoint_is_one_backend() {
        let (specs, statuses) = build(&snapshot(None));
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].listen, "127.0.0.1:18080".parse().unwrap());
        assert_eq!(specs[0].backends.len(), 1);
        assert_eq!(specs[0].backends[0].endpoints, addrs(&[9001, 9002, 9003]));
        assert_eq!(
            statuses[0].1,
            json!({"address": "127.0.0.1:18080", "ports": [{"port": 80, "name": "http", "listen": "127.0.0.1:18080"}]})
        );
    }

    #[test]
    fn a_policy_splits_endpoints_by_selector_and_names_routes_and_mirror() {
        let (specs, _) = build(&snapshot(Some(json!({
            "backends": [
                {"name": "stable", "selector": {"matchLabels": {"pod-template-hash": "aaa"}}, "weight": 80},
                {"name": "canary", "selector": {"matchLabels": {"pod-template-hash": "bbb"}}, "weight": 20},
            ],
            "routes": [{"name": "qa", "match": {"headers": [{"name": "x-qa", "prefix": "yes"}]}, "backend": "canary"}],
            "mirror": {"backend": "canary", "percent": 5},
        }))));
        let s = &specs[0];
        assert_eq!(s.backends[0].name, "stable");
        assert_eq!(s.backends[0].weight, 80);
        assert_eq!(s.backends[0].endpoints, addrs(&[9001, 9002]));
        // b2 is not ready: only b1 serves the canary.
        assert_eq!(s.backends[1].endpoints, addrs(&[9003]));
        assert_eq!(s.rules[0].backend, 1);
        assert_eq!(
            s.rules[0].headers,
            [(
                "x-qa".to_string(),
                crate::table::MatchSpec::Prefix("yes".into())
            )]
        );
        assert_eq!(s.mirror, Some((1, 5)));
    }

    /// Polls `f` every 20 ms for up to ten seconds.
    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(
                std::time::Instant::now() < deadline,
                "never happened: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_deleted_service_loses_its_metric_series_and_the_others_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("shipway.db"))
            .await
            .unwrap();
        let service = |name: &str| {
            obj(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]}}))
        };
        for name in ["web", "api"] {
            store.apply(service(name), "test").await.unwrap();
        }
        let metrics = ProxyMetrics::new();
        let stop = CancellationToken::new();
        let (tables, task) = spawn(store.clone(), Some(metrics.clone()), stop.clone());
        eventually("both services routed", || tables.borrow().routes.len() == 2).await;
        let ok = Duration::from_millis(1);
        for (service, backend) in [
            ("default/web", "stable"),
            ("default/web", "canary"),
            ("default/api", "default"),
        ] {
            metrics.record(service, backend, 200, ok);
        }
        let requests = |service: &str, backend: Option<&str>| {
            metrics
                .query("default", service, backend, Duration::from_secs(300))
                .requests
        };

        store
            .delete(
                &shipway_model::Key::new("", "Service", "default", "api"),
                "test",
            )
            .await
            .unwrap();
        eventually("api's series dropped", || requests("api", None) == 0).await;
        assert_eq!(tables.borrow().routes.len(), 1);
        // web still has a route: both its backends keep their series.
        assert_eq!(requests("web", Some("stable")), 1);
        assert_eq!(requests("web", Some("canary")), 1);
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn a_broken_policy_falls_back_to_round_robin() {
        let (specs, _) = build(&snapshot(Some(
            json!({"backends": [{"name": "x", "weight": 500}]}),
        )));
        assert_eq!(specs[0].backends[0].name, "default");
    }
}
