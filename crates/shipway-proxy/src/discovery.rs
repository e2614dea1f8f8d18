//! Discovery: reads Services, Endpoints, Pods and TrafficPolicies from the shared cache, builds the
//! routing table and publishes it through a `watch` channel; gives each Service port a listen
//! address and writes it to the Service's status, and writes each TrafficPolicy's status (ready
//! endpoints per backend, a warning when one that takes traffic selects none). It also drops the
//! metric series of Services the newest table no longer routes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shipway_controller::{Cache, Change, Clock, GroupKind, Reflector};
use shipway_model::Object;
use shipway_store::Store;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::ProxyMetrics;
use crate::policy::{self, TrafficPolicy};
use crate::server::Listeners;
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

/// What discovery needs besides the store.
#[derive(Clone, Default)]
pub struct Options {
    /// The sockets the proxy serves from: discovery binds each address before it publishes it,
    /// so a Service whose address cannot be had says so in its status. Without them, addresses
    /// are published unbound and the proxy binds them.
    pub listeners: Option<Listeners>,
    /// Addresses this server holds itself, with what holds them ("the API listener").
    pub reserved: Vec<(SocketAddr, String)>,
    /// Non-loopback addresses may be listened on (`ProxyConfig::allow_public`).
    pub allow_public: bool,
}

/// The condition of a Service's status that says whether its ports are listened on.
pub const LISTENER_READY: &str = "ListenerReady";

/// Why a port of a Service gets no listener: (reason, message).
type Problem = (&'static str, String);

/// The address each port of `svc` asks for, and whether the annotation chose it.
fn wanted_addresses(svc: &Object, ports: &[Value]) -> Vec<Option<(SocketAddr, bool)>> {
    let previous = previous_ports(svc);
    let annotated = svc
        .metadata
        .annotations
        .get(LISTEN_ANNOTATION)
        .and_then(|a| a.trim().parse::<SocketAddr>().ok());
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i == 0 && annotated.is_some() {
                return annotated.map(|a| (a, true));
            }
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
            kept.filter(|k| Some(*k) != annotated)
                .or_else(allocate)
                .map(|a| (a, false))
        })
        .collect()
}

fn previous_ports(svc: &Object) -> Vec<Value> {
    svc.status()
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether `svc` was listening on `addr` already, by its status: the first holder keeps an
/// address, across restarts too.
fn holds(svc: &Object, addr: SocketAddr) -> bool {
    let a = addr.to_string();
    svc.status()
        .and_then(|s| s.get("address"))
        .and_then(Value::as_str)
        == Some(a.as_str())
        || previous_ports(svc)
            .iter()
            .any(|p| p.get("listen").and_then(Value::as_str) == Some(a.as_str()))
}

/// Two addresses that cannot both be bound: the same port on the same IP or on a wildcard.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The status of `svc` with `served` as its listen addresses (None: no listener, for
/// `problems`), and whether it differs from the stored one.
fn listener_status(
    svc: &Object,
    ports: &[Value],
    served: &[Option<SocketAddr>],
    problems: &[Problem],
) -> Option<Value> {
    let mut status_ports = Vec::new();
    for (p, addr) in ports.iter().zip(served) {
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        let mut entry = json!({"port": p.get("port").cloned().unwrap_or(Value::Null)});
        if !name.is_empty() {
            entry["name"] = json!(name);
        }
        if let Some(a) = addr {
            entry["listen"] = json!(a.to_string());
        }
        status_ports.push(entry);
    }
    let condition = match problems.first() {
        None => json!({"type": LISTENER_READY, "status": "True", "reason": "Listening"}),
        Some((reason, _)) => json!({"type": LISTENER_READY, "status": "False", "reason": reason,
            "message": problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ")}),
    };
    let mut status = svc.status().cloned().unwrap_or_else(|| json!({}));
    if let Some(obj) = status.as_object_mut() {
        match served.first().copied().flatten() {
            Some(a) => obj.insert("address".into(), json!(a.to_string())),
            None => obj.remove("address"),
        };
        obj.insert("ports".into(), Value::Array(status_ports));
        let mut conditions: Vec<Value> = obj
            .get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| c.get("type").and_then(Value::as_str) != Some(LISTENER_READY))
            .cloned()
            .collect();
        conditions.push(condition);
        obj.insert("conditions".into(), Value::Array(conditions));
    }
    (svc.status() != Some(&status)).then_some(status)
}

/// Decides which Service gets each wanted address: the one whose status holds it already, then
/// the oldest (creationTimestamp, then resourceVersion), never the name. The others get no
/// listener and a problem naming the holder; so do addresses this server holds itself, and
/// non-loopback ones unless allowed. `bind` is asked for each address that is to be served.
fn assign(
    services: &[Object],
    wanted: &mut [Vec<Option<(SocketAddr, bool)>>],
    options: &Options,
    bind: &mut dyn FnMut(SocketAddr) -> Result<(), String>,
) -> (Vec<Vec<Option<SocketAddr>>>, Vec<Vec<Problem>>) {
    let n = services.len();
    let mut problems: Vec<Vec<Problem>> = vec![Vec::new(); n];
    // Refusals that do not depend on other Services first: those claims hold nothing.
    for (i, ports) in wanted.iter_mut().enumerate() {
        for claim in ports.iter_mut() {
            let Some((addr, _)) = *claim else { continue };
            let problem = if let Some((_, who)) =
                options.reserved.iter().find(|(r, _)| overlaps(*r, addr))
            {
                Some(("AddressInUse", format!("{addr} is held by {who}")))
            } else if !addr.ip().is_loopback() && !options.allow_public {
                Some((
                    "PublicAddressRefused",
                    format!(
                        "{addr} is not a loopback address: start shipway up with --proxy-allow-public to listen on it"
                    ),
                ))
            } else {
                None
            };
            if let Some(p) = problem {
                problems[i].push(p);
                *claim = None;
            }
        }
    }
    let rank = |i: usize, addr: SocketAddr| {
        let s = &services[i];
        (
            !holds(s, addr),
            s.metadata.creation_timestamp.is_none(),
            s.metadata.creation_timestamp.clone(),
            s.resource_version().unwrap_or(u64::MAX),
            ns(s).to_string(),
            s.metadata.name.clone(),
        )
    };
    let mut holder: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, ports) in wanted.iter().enumerate() {
        for (addr, _) in ports.iter().flatten() {
            let h = holder.entry(*addr).or_insert(i);
            if rank(i, *addr) < rank(*h, *addr) {
                *h = i;
            }
        }
    }
    let mut served = vec![Vec::new(); n];
    for (i, ports) in wanted.iter().enumerate() {
        for claim in ports {
            let mut addr = claim.map(|(a, _)| a);
            if let Some((a, annotated)) = *claim {
                let h = holder[&a];
                if h != i && annotated {
                    let s = &services[h];
                    problems[i].push((
                        "AddressInUse",
                        format!("{a} is held by Service {}/{}", ns(s), s.metadata.name),
                    ));
                    addr = None;
                } else if h != i {
                    // An address we picked: pick another.
                    addr = allocate();
                }
            }
            if let Some(a) = addr
                && let Err(e) = bind(a)
            {
                problems[i].push(("BindFailed", format!("cannot listen on {a}: {e}")));
                addr = None;
            }
            served[i].push(addr);
        }
    }
    (served, problems)
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
    build_with(snapshot, &Options::default(), &mut |_| Ok(()))
}

/// [`build`] with the listener rules of `options`; `bind` is asked for every address to serve
/// and a failure leaves the port without a listener, its reason in the status.
pub fn build_with(
    snapshot: &Snapshot,
    options: &Options,
    bind: &mut dyn FnMut(SocketAddr) -> Result<(), String>,
) -> (Vec<RouteSpec>, Vec<(Object, Value)>) {
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
    let all_ports: Vec<Vec<Value>> = snapshot
        .services
        .iter()
        .map(|svc| {
            svc.spec()
                .and_then(|s| s.get("ports"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let mut wanted: Vec<_> = snapshot
        .services
        .iter()
        .zip(&all_ports)
        .map(|(svc, ports)| wanted_addresses(svc, ports))
        .collect();
    let (served, problems) = assign(&snapshot.services, &mut wanted, options, bind);
    for (i, svc) in snapshot.services.iter().enumerate() {
        let (namespace, name) = (ns(svc), svc.metadata.name.as_str());
        let ports = &all_ports[i];
        let addrs = served[i].clone();
        if let Some(status) = listener_status(svc, ports, &addrs, &problems[i]) {
            for (reason, message) in &problems[i] {
                tracing::warn!("proxy: service {namespace}/{name}: {reason}: {message}");
            }
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

/// The condition of a TrafficPolicy's status: whether every backend that takes traffic (a weight
/// above 0, a route's or the mirror's target) selects a ready endpoint of its Service now.
pub const BACKENDS_READY: &str = "BackendsReady";

/// A TrafficPolicy whose status is to be written, and the warning to record as an event when its
/// condition turned `False`.
pub struct PolicyStatus {
    pub policy: Object,
    pub status: Value,
    pub warning: Option<(String, String)>,
}

/// The status of each TrafficPolicy that differs from the stored one: per backend its weight and
/// how many ready endpoints of the Service its selector picks, and [`BACKENDS_READY`] saying, when
/// a backend that takes traffic picks none, where that traffic goes instead. A stale
/// `pod-template-hash` in a selector otherwise sends every request to the other backend without a
/// word. `now` stamps a condition that changes.
pub fn policy_statuses(snapshot: &Snapshot, now: &str) -> Vec<PolicyStatus> {
    let labels: HashMap<(&str, &str), &BTreeMap<String, String>> = snapshot
        .pods
        .iter()
        .map(|p| ((ns(p), p.metadata.name.as_str()), &p.metadata.labels))
        .collect();
    let mut out = Vec::new();
    for p in &snapshot.policies {
        let (namespace, name) = (ns(p), p.metadata.name.as_str());
        let same = |o: &&Object| ns(o) == namespace && o.metadata.name == name;
        let service = snapshot.services.iter().find(same).is_some();
        let ready = ready_pods(snapshot.endpoints.iter().find(same));
        let mut backends = Vec::new();
        let verdict = match TrafficPolicy::from_spec(p.spec().unwrap_or(&Value::Null)) {
            // Admission refuses such a policy; one stored before a rule existed is ignored.
            Err(e) => Err((
                "InvalidPolicy",
                format!(
                    "{e}; the proxy routes Service {name} round robin over its ready endpoints"
                ),
            )),
            Ok(policy) => {
                let counts: Vec<usize> = policy
                    .backends
                    .iter()
                    .map(|b| {
                        ready
                            .iter()
                            .filter(|pod| {
                                labels
                                    .get(&(namespace, pod.as_str()))
                                    .is_some_and(|l| b.selector.matches(l))
                            })
                            .count()
                    })
                    .collect();
                for (b, n) in policy.backends.iter().zip(&counts) {
                    backends.push(json!({"name": b.name, "weight": b.weight, "readyEndpoints": n}));
                }
                backends_verdict(&policy, &counts, name, service)
            }
        };
        let condition = match &verdict {
            Ok(message) => json!({"type": BACKENDS_READY, "status": "True",
                "reason": "EndpointsSelected", "message": message}),
            Err((reason, message)) => json!({"type": BACKENDS_READY, "status": "False",
                "reason": reason, "message": message}),
        };
        let mut status = p.status().cloned().unwrap_or_else(|| json!({}));
        let Some(obj) = status.as_object_mut() else {
            continue;
        };
        let mut conditions: Vec<Value> = obj
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let previous = conditions.iter().position(|c| c["type"] == BACKENDS_READY);
        let unchanged = previous.is_some_and(|i| {
            let c = &conditions[i];
            ["status", "reason", "message"]
                .iter()
                .all(|f| c[f] == condition[f])
        });
        if !unchanged {
            let mut condition = condition;
            // The transition time moves only when the status does, as Kubernetes' conditions.
            condition["lastTransitionTime"] = match previous {
                Some(i) if conditions[i]["status"] == condition["status"] => {
                    conditions[i]["lastTransitionTime"].clone()
                }
                _ => json!(now),
            };
            match previous {
                Some(i) => conditions[i] = condition,
                None => conditions.push(condition),
            }
        }
        obj.insert("observedGeneration".into(), json!(p.metadata.generation));
        obj.insert("backends".into(), Value::Array(backends));
        obj.insert("conditions".into(), Value::Array(conditions));
        if p.status() == Some(&status) {
            continue;
        }
        let warning = match verdict {
            Err((reason, message)) if !unchanged => Some((reason.to_string(), message)),
            _ => None,
        };
        out.push(PolicyStatus {
            policy: p.clone(),
            status,
            warning,
        });
    }
    out
}

/// Whether every backend of `policy` that takes traffic selects a ready endpoint (`counts`, in
/// the order of its backends), in words that say what the proxy does instead when one does not.
fn backends_verdict(
    policy: &TrafficPolicy,
    counts: &[usize],
    service: &str,
    service_exists: bool,
) -> Result<String, (&'static str, String)> {
    if !service_exists {
        return Err((
            "ServiceNotFound",
            format!("Service {service} does not exist: this policy routes nothing until it does"),
        ));
    }
    if counts.iter().all(|n| *n == 0) {
        return Err((
            "NoReadyEndpoints",
            format!(
                "no backend selects a ready endpoint of Service {service}: its requests get 503"
            ),
        ));
    }
    let mut problems = Vec::new();
    for (b, n) in policy.backends.iter().zip(counts) {
        if *n > 0 {
            continue;
        }
        let quoted = format!("backend {:?}", b.name);
        if b.weight > 0 {
            problems.push(format!(
                "{quoted} (weight {}) selects no ready endpoint: its share goes to the other backends",
                b.weight
            ));
        }
        for (i, r) in policy.routes.iter().enumerate() {
            if r.backend != b.name {
                continue;
            }
            let route = match r.name.as_str() {
                "" => format!("routes[{i}]"),
                named => format!("route {named:?}"),
            };
            problems.push(format!(
                "{quoted} selects no ready endpoint: requests of {route} get 503"
            ));
        }
        if policy.mirror.as_ref().is_some_and(|(m, _)| *m == b.name) {
            problems.push(format!(
                "{quoted} selects no ready endpoint: mirrored copies are dropped"
            ));
        }
    }
    if problems.is_empty() {
        Ok("every backend that takes traffic selects a ready endpoint".into())
    } else {
        Err(("BackendWithoutEndpoints", problems.join("; ")))
    }
}

/// The pods with a ready address in `endpoints`, whatever the port.
fn ready_pods(endpoints: Option<&Object>) -> std::collections::BTreeSet<String> {
    endpoints
        .and_then(|e| e.body.get("subsets"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("addresses").and_then(Value::as_array))
        .flatten()
        .filter_map(|a| a.pointer("/targetRef/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// The objects routing depends on, from the shared cache.
fn snapshot(cache: &Cache) -> Snapshot {
    let of = |kind: &GroupKind| -> Vec<Object> {
        cache
            .list(kind, None)
            .iter()
            .map(|o| (**o).clone())
            .collect()
    };
    Snapshot {
        services: of(&SERVICE),
        endpoints: of(&ENDPOINTS),
        pods: of(&POD),
        policies: of(&GroupKind::from_static(policy::GROUP, policy::KIND)),
    }
}

const SERVICE: GroupKind = GroupKind::from_static("", "Service");
const ENDPOINTS: GroupKind = GroupKind::from_static("", "Endpoints");
const POD: GroupKind = GroupKind::from_static("", "Pod");

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

/// Rebuilds from the cache and publishes; returns whether some address could not be bound.
async fn refresh(
    store: &Store,
    cache: &Cache,
    tx: &watch::Sender<Arc<RoutingTable>>,
    last: &mut Vec<RouteSpec>,
    metrics: Option<&ProxyMetrics>,
    options: &Options,
    clock: &Clock,
) -> bool {
    let snap = snapshot(cache);
    let mut bind_failed = false;
    let mut bind = |addr: SocketAddr| match &options.listeners {
        Some(l) => l.bind(addr).map_err(|e| {
            bind_failed = true;
            e.to_string()
        }),
        None => Ok(()),
    };
    let (specs, statuses) = build_with(&snap, options, &mut bind);
    for (mut svc, status) in statuses {
        let refused = status
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == LISTENER_READY))
            .filter(|c| c["status"] == "False")
            .map(|c| {
                (
                    c["reason"].as_str().unwrap_or("ListenerFailed").to_string(),
                    c["message"].as_str().unwrap_or_default().to_string(),
                )
            });
        svc.body.insert("status".into(), status);
        let key = svc.key();
        // A conflict means the Service changed meanwhile; its change event brings us back here.
        match store.update_status(svc, ACTOR).await {
            // The status changed to say the listener is refused: say so in the events too, as
            // kubectl users look there first.
            Ok(_) => {
                if let Some((reason, message)) = refused
                    && let Err(e) = store.record_event(&key, ACTOR, &reason, &message).await
                {
                    tracing::debug!("proxy discovery: event not recorded: {e}");
                }
            }
            Err(e) => tracing::debug!("proxy discovery: status not written: {e}"),
        }
    }
    for PolicyStatus {
        mut policy,
        status,
        warning,
    } in policy_statuses(&snap, &clock.timestamp())
    {
        policy.body.insert("status".into(), status);
        let key = policy.key();
        match store.update_status(policy, ACTOR).await {
            Ok(_) => {
                if let Some((reason, message)) = warning {
                    tracing::warn!("proxy: TrafficPolicy {key}: {reason}: {message}");
                    if let Err(e) = store.record_event(&key, ACTOR, &reason, &message).await {
                        tracing::debug!("proxy discovery: event not recorded: {e}");
                    }
                }
            }
            // As for Services: a conflict brings the policy's change event, and us, back.
            Err(e) => tracing::debug!("proxy discovery: policy status not written: {e}"),
        }
    }
    if specs != *last {
        tx.send_replace(Arc::new(RoutingTable::build(&specs)));
        *last = specs;
    }
    // After publishing: the workers drop their handles of an address as they see it gone.
    if let Some(l) = &options.listeners {
        l.retain(|a| last.iter().any(|s| s.listen == *a));
    }
    // On every refresh, not only when a table is published: a request still in flight on an
    // older table can record to (and so re-create) a series after its service was pruned.
    if let Some(metrics) = metrics {
        let table = tx.borrow().clone();
        prune_metrics(metrics, &table);
    }
    bind_failed
}

/// Starts discovery with a cache of its own (for a proxy without the rest of the server, and
/// tests); the receiver always holds the newest table. With `metrics`, the series of services
/// that no longer have a route are dropped as tables change.
pub fn spawn(
    store: Store,
    metrics: Option<Arc<ProxyMetrics>>,
    shutdown: CancellationToken,
) -> (
    watch::Receiver<Arc<RoutingTable>>,
    tokio::task::JoinHandle<()>,
) {
    let (cache, _feed) = Reflector::spawn(store.clone(), shutdown.clone());
    spawn_with(store, cache, metrics, Options::default(), shutdown)
}

/// Discovery on the process's shared `cache` (reads) and `store` (status writes), with the
/// listener rules and sockets of `options`.
pub fn spawn_with(
    store: Store,
    cache: Cache,
    metrics: Option<Arc<ProxyMetrics>>,
    options: Options,
    shutdown: CancellationToken,
) -> (
    watch::Receiver<Arc<RoutingTable>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = watch::channel(Arc::new(RoutingTable::default()));
    let task = tokio::spawn(run(store, cache, tx, metrics, options, shutdown));
    (rx, task)
}

/// How often addresses that could not be bound are tried again.
const BIND_RETRY: Duration = Duration::from_secs(5);

async fn run(
    store: Store,
    cache: Cache,
    tx: watch::Sender<Arc<RoutingTable>>,
    metrics: Option<Arc<ProxyMetrics>>,
    options: Options,
    shutdown: CancellationToken,
) {
    let metrics = metrics.as_deref();
    let options = &options;
    let mut last = Vec::new();
    let clock = Clock::new();
    let mut changes = cache.subscribe();
    tokio::select! {
        _ = cache.ready() => {}
        _ = shutdown.cancelled() => return,
    }
    let mut retry = refresh(&store, &cache, &tx, &mut last, metrics, options, &clock).await;
    loop {
        let rebuild = tokio::select! {
            _ = shutdown.cancelled() => return,
            change = changes.recv() => match change {
                Ok(Change::Applied(o) | Change::Deleted(o)) => relevant(&o),
                Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            },
            // An address held by another process may be free now.
            _ = tokio::time::sleep(BIND_RETRY), if retry => true,
        };
        if !rebuild {
            continue;
        }
        // Take every change already waiting, then rebuild once.
        while !matches!(
            changes.try_recv(),
            Err(TryRecvError::Empty | TryRecvError::Closed)
        ) {}
        retry = refresh(&store, &cache, &tx, &mut last, metrics, options, &clock).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipway_testkit::eventually;

    /// A bound for a broken build, not a measure.
    const WAIT: Duration = Duration::from_secs(10);

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
            json!({"address": "127.0.0.1:18080", "ports": [{"port": 80, "name": "http", "listen": "127.0.0.1:18080"}],
                "conditions": [{"type": "ListenerReady", "status": "True", "reason": "Listening"}]})
        );
    }

    /// A Service asking for `listen`, created at `created` with resourceVersion `rv`, with
    /// `listen` in its status or not.
    fn claimant(name: &str, listen: &str, created: &str, rv: u64, holds: bool) -> Object {
        let mut o = obj(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                "resourceVersion": rv.to_string(), "annotations": {"shipway.dev/listen": listen}},
            "spec": {"ports": [{"name": "http", "port": 80}]}}));
        if holds {
            o.body.insert(
                "status".into(),
                json!({"address": listen,
                "ports": [{"port": 80, "name": "http", "listen": listen}]}),
            );
        }
        o
    }

    /// (listen address of each Service, condition of each Service) after a build.
    fn assigned(
        services: Vec<Object>,
        options: &Options,
        bind: &mut dyn FnMut(SocketAddr) -> Result<(), String>,
    ) -> Vec<(String, Option<String>, Value)> {
        let snap = Snapshot {
            services,
            ..Snapshot::default()
        };
        let (specs, statuses) = build_with(&snap, options, bind);
        snap.services
            .iter()
            .map(|svc| {
                let status = statuses
                    .iter()
                    .find(|(o, _)| o.metadata.name == svc.metadata.name)
                    .map(|(_, s)| s.clone())
                    .or_else(|| svc.status().cloned())
                    .unwrap_or(Value::Null);
                let served = specs
                    .iter()
                    .find(|s| s.service == svc.metadata.name)
                    .map(|s| s.listen.to_string());
                assert_eq!(
                    status
                        .get("address")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    served,
                    "the status shows an address only when it is served"
                );
                (
                    svc.metadata.name.clone(),
                    served,
                    status["conditions"][0].clone(),
                )
            })
            .collect()
    }

    fn refused(reason: &str, message: &str) -> Value {
        json!({"type": "ListenerReady", "status": "False", "reason": reason, "message": message})
    }

    #[test]
    fn the_first_holder_of_an_address_keeps_it_whatever_the_names() {
        let ok = json!({"type": "ListenerReady", "status": "True", "reason": "Listening"});
        let addr = "127.0.0.1:18080";
        let options = Options::default();
        // "a" sorts first and is even older, but "web" has the address in its status.
        let got = assigned(
            vec![
                claimant("a", addr, "2026-01-01T00:00:00Z", 5, false),
                claimant("web", addr, "2026-02-01T00:00:00Z", 9, true),
            ],
            &options,
            &mut |_| Ok(()),
        );
        assert_eq!(
            got,
            [
                (
                    "a".into(),
                    None,
                    refused(
                        "AddressInUse",
                        "127.0.0.1:18080 is held by Service default/web"
                    )
                ),
                ("web".into(), Some(addr.into()), ok.clone()),
            ]
        );
        // Neither holds it yet: the older one gets it, then the lower resourceVersion.
        let got = assigned(
            vec![
                claimant("a", addr, "2026-02-01T00:00:00Z", 5, false),
                claimant("b", addr, "2026-01-01T00:00:00Z", 9, false),
                claimant("c", addr, "2026-01-01T00:00:00Z", 7, false),
            ],
            &options,
            &mut |_| Ok(()),
        );
        let held = refused(
            "AddressInUse",
            "127.0.0.1:18080 is held by Service default/c",
        );
        assert_eq!(
            got,
            [
                ("a".into(), None, held.clone()),
                ("b".into(), None, held),
                ("c".into(), Some(addr.into()), ok),
            ]
        );
    }

    #[test]
    fn api_public_and_unbindable_addresses_get_no_listener_and_say_why() {
        let svc =
            |name: &str, listen: &str| claimant(name, listen, "2026-01-01T00:00:00Z", 1, false);
        let options = Options {
            reserved: vec![(
                "127.0.0.1:7000".parse().unwrap(),
                "the API listener (shipway up --listen)".into(),
            )],
            ..Options::default()
        };
        let mut bind = |a: SocketAddr| match a.port() {
            7001 => Err("Address already in use (os error 98)".to_string()),
            _ => Ok(()),
        };
        let got = assigned(
            vec![
                svc("api", "127.0.0.1:7000"),
                svc("public", "0.0.0.0:7002"),
                svc("taken", "127.0.0.1:7001"),
            ],
            &options,
            &mut bind,
        );
        assert_eq!(
            got,
            [
                (
                    "api".into(),
                    None,
                    refused(
                        "AddressInUse",
                        "127.0.0.1:7000 is held by the API listener (shipway up --listen)"
                    )
                ),
                (
                    "public".into(),
                    None,
                    refused(
                        "PublicAddressRefused",
                        "0.0.0.0:7002 is not a loopback address: start shipway up with --proxy-allow-public to listen on it"
                    )
                ),
                (
                    "taken".into(),
                    None,
                    refused(
                        "BindFailed",
                        "cannot listen on 127.0.0.1:7001: Address already in use (os error 98)"
                    )
                ),
            ]
        );
        // Allowed, a public address is served.
        let allowed = Options {
            allow_public: true,
            ..options
        };
        let got = assigned(vec![svc("public", "0.0.0.0:7002")], &allowed, &mut bind);
        assert_eq!(got[0].1.as_deref(), Some("0.0.0.0:7002"));
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

    /// Whether discovery recorded an event `action` on `web` whose message starts with `prefix`.
    async fn proxy_event(store: &Store, action: &str, prefix: &str) -> bool {
        let query = shipway_store::EventQuery {
            name: Some("web".into()),
            ..Default::default()
        };
        store
            .events(&query)
            .await
            .unwrap()
            .iter()
            .any(|e| e.actor == ACTOR && e.action == action && e.message.starts_with(prefix))
    }

    fn canary_policy(canary_hash: &str) -> Value {
        json!({
            "backends": [
                {"name": "stable", "selector": {"matchLabels": {"pod-template-hash": "aaa"}}, "weight": 80},
                {"name": "canary", "selector": {"matchLabels": {"pod-template-hash": canary_hash}}, "weight": 20},
            ],
        })
    }

    /// The one status of `snap`'s policy, as written back, with the statuses it had.
    fn written(snap: &mut Snapshot, now: &str) -> Option<PolicyStatus> {
        let mut out = policy_statuses(snap, now);
        assert!(out.len() <= 1);
        let s = out.pop()?;
        snap.policies[0]
            .body
            .insert("status".into(), s.status.clone());
        Some(s)
    }

    #[test]
    fn a_policy_status_counts_ready_endpoints_per_backend() {
        let mut snap = snapshot(Some(canary_policy("bbb")));
        let s = written(&mut snap, "t1").expect("a first status");
        assert_eq!(
            s.status["backends"],
            json!([{"name": "stable", "weight": 80, "readyEndpoints": 2},
                {"name": "canary", "weight": 20, "readyEndpoints": 1}])
        );
        assert_eq!(
            s.status["conditions"],
            json!([{"type": BACKENDS_READY, "status": "True", "reason": "EndpointsSelected",
                "message": "every backend that takes traffic selects a ready endpoint",
                "lastTransitionTime": "t1"}])
        );
        assert!(s.warning.is_none());
        // Unchanged, nothing is written: the write would wake discovery again.
        assert!(written(&mut snap, "t2").is_none());
    }

    #[test]
    fn a_stale_selector_is_a_warning_that_says_where_the_traffic_goes() {
        let mut snap = snapshot(Some(canary_policy("aaa")));
        written(&mut snap, "t1").unwrap();
        // The rollout moved on: the canary's hash names no pod.
        snap.policies[0].body["spec"] = canary_policy("ccc");
        let s = written(&mut snap, "t2").unwrap();
        assert_eq!(s.status["backends"][1]["readyEndpoints"], 0);
        let c = &s.status["conditions"][0];
        assert_eq!(c["status"], "False");
        assert_eq!(c["reason"], "BackendWithoutEndpoints");
        let message = "backend \"canary\" (weight 20) selects no ready endpoint: its share goes to the other backends";
        assert_eq!(c["message"], message);
        assert_eq!(c["lastTransitionTime"], "t2");
        assert_eq!(
            s.warning,
            Some(("BackendWithoutEndpoints".to_string(), message.to_string()))
        );
        // Said once: the next refresh writes nothing and warns no more.
        assert!(written(&mut snap, "t3").is_none());

        snap.policies[0].body["spec"] = canary_policy("bbb");
        let s = written(&mut snap, "t4").unwrap();
        assert_eq!(s.status["conditions"][0]["status"], "True");
        assert_eq!(s.status["conditions"][0]["lastTransitionTime"], "t4");
        assert!(s.warning.is_none());
    }

    #[test]
    fn routes_mirrors_and_missing_services_are_named() {
        // A 0-weight backend without endpoints is no problem until a route or the mirror needs it.
        let policy = |with_route: bool| {
            let mut p = json!({"backends": [
                {"name": "stable", "selector": {"matchLabels": {"pod-template-hash": "aaa"}}, "weight": 100},
                {"name": "preview", "selector": {"matchLabels": {"pod-template-hash": "zzz"}}, "weight": 0},
            ]});
            if with_route {
                p["routes"] = json!([{"name": "qa", "match": {"headers": [{"name": "x-qa", "exact": "1"}]}, "backend": "preview"}]);
                p["mirror"] = json!({"backend": "preview", "percent": 10});
            }
            p
        };
        let mut snap = snapshot(Some(policy(false)));
        let s = written(&mut snap, "t1").unwrap();
        assert_eq!(s.status["conditions"][0]["status"], "True");
        snap.policies[0].body["spec"] = policy(true);
        let s = written(&mut snap, "t2").unwrap();
        assert_eq!(
            s.status["conditions"][0]["message"],
            "backend \"preview\" selects no ready endpoint: requests of route \"qa\" get 503; backend \"preview\" selects no ready endpoint: mirrored copies are dropped"
        );

        let mut snap = snapshot(Some(canary_policy("bbb")));
        snap.endpoints.clear();
        let s = written(&mut snap, "t1").unwrap();
        assert_eq!(s.status["conditions"][0]["reason"], "NoReadyEndpoints");
        assert_eq!(
            s.status["conditions"][0]["message"],
            "no backend selects a ready endpoint of Service web: its requests get 503"
        );
        snap.services.clear();
        let s = written(&mut snap, "t2").unwrap();
        assert_eq!(s.status["conditions"][0]["reason"], "ServiceNotFound");
        assert_eq!(s.status["conditions"][0]["lastTransitionTime"], "t1");
    }

    #[tokio::test]
    async fn discovery_writes_policy_status_and_warns_in_the_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("shipway.db"))
            .await
            .unwrap();
        let snap = snapshot(Some(canary_policy("ccc")));
        for o in snap
            .services
            .into_iter()
            .chain(snap.endpoints)
            .chain(snap.pods)
            .chain(snap.policies)
        {
            store.apply(o, "test").await.unwrap();
        }
        let stop = CancellationToken::new();
        let (_tables, task) = spawn(store.clone(), None, stop.clone());
        let key = shipway_model::Key::new(policy::GROUP, policy::KIND, "default", "web");
        let condition = || async {
            let p = store.get(&key).await.unwrap().unwrap();
            p.status().map(|s| s["conditions"][0].clone())
        };
        eventually(WAIT, "the policy's condition", || async {
            condition().await.is_some()
        })
        .await;
        assert_eq!(
            condition().await.unwrap()["reason"],
            "BackendWithoutEndpoints"
        );
        eventually(WAIT, "a BackendWithoutEndpoints event", || {
            proxy_event(&store, "BackendWithoutEndpoints", "backend \"canary\"")
        })
        .await;
        stop.cancel();
        task.await.unwrap();
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
        eventually(WAIT, "both services routed", || async {
            tables.borrow().routes.len() == 2
        })
        .await;
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
        eventually(WAIT, "api's series dropped", || async {
            requests("api", None) == 0
        })
        .await;
        assert_eq!(tables.borrow().routes.len(), 1);
        // web still has a route: both its backends keep their series.
        assert_eq!(requests("web", Some("stable")), 1);
        assert_eq!(requests("web", Some("canary")), 1);
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn an_address_another_process_holds_is_reported_then_taken_when_freed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("shipway.db"))
            .await
            .unwrap();
        // Another process's socket, not SO_REUSEPORT.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = other.local_addr().unwrap();
        store
            .apply(
                obj(json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "web", "namespace": "default",
                        "annotations": {"shipway.dev/listen": addr.to_string()}},
                    "spec": {"ports": [{"name": "http", "port": 80}]}})),
                "test",
            )
            .await
            .unwrap();
        let sockets = Listeners::default();
        let options = Options {
            listeners: Some(sockets.clone()),
            ..Options::default()
        };
        let stop = CancellationToken::new();
        let (cache, _feed) = Reflector::spawn(store.clone(), stop.clone());
        let (tables, task) = spawn_with(store.clone(), cache, None, options, stop.clone());
        let key = shipway_model::Key::new("", "Service", "default", "web");
        let condition = || async {
            let svc = store.get(&key).await.unwrap().unwrap();
            let status = svc.status().cloned().unwrap_or(Value::Null);
            (
                status["conditions"][0].clone(),
                status.get("address").cloned(),
            )
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (refused, address) = loop {
            let (c, a) = condition().await;
            if c["reason"] == "BindFailed" || std::time::Instant::now() > deadline {
                break (c, a);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(refused["status"], "False", "{refused}");
        let message = refused["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("cannot listen on {addr}: Address already in use")),
            "{message}"
        );
        assert_eq!(address, None);
        assert!(tables.borrow().routes.is_empty());
        // The event is recorded after the status that says so: wait for it too.
        let listen = format!("cannot listen on {addr}");
        eventually(WAIT, "a BindFailed event", || {
            proxy_event(&store, "BindFailed", &listen)
        })
        .await;

        // Freed, it is taken on the next retry, without any change to the Service.
        drop(other);
        eventually(WAIT, "the address served", || async {
            tables.borrow().routes.contains_key(&addr)
        })
        .await;
        eventually(WAIT, "ListenerReady True", || async {
            condition().await.0["status"] == "True"
        })
        .await;
        assert_eq!(condition().await.1, Some(json!(addr.to_string())));
        // Held by this server now: nobody else can bind it.
        assert!(std::net::TcpListener::bind(addr).is_err());
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
