//! The routing table the proxy serves from: plain data specs (compared to skip no-op updates) and
//! the compiled routes built from them, with the pure routing decisions (which backend, which
//! endpoint, whether to mirror).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use hyper::HeaderMap;
use hyper::header::{COOKIE, HeaderName};

/// A request's headers as routing reads them: hyper's map (HTTP/2) or the HTTP/1 parser's
/// fields, which the data path never turns into a map.
pub trait RequestHeaders {
    /// Every value of header `name` (given in lower case; field names match case-insensitively).
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;
}

impl RequestHeaders for HeaderMap {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name).iter().map(|v| v.as_bytes())
    }
}

impl RequestHeaders for [httparse::Header<'_>] {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}
use hyper::http::uri::Authority;

use crate::metrics::SeriesHandle;

/// How a header or cookie value is compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchSpec {
    Exact(String),
    Prefix(String),
    Regex(String),
}

/// A route of a traffic policy: every listed header and cookie must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    pub name: String,
    pub headers: Vec<(String, MatchSpec)>,
    pub cookies: Vec<(String, MatchSpec)>,
    /// Index into the route's backends.
    pub backend: usize,
}

/// A named group of endpoints (a revision: stable, canary, blue, green) and its share of traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    pub name: String,
    /// Percent of the traffic no rule claims; the weights of a route sum to 100 (or all are 0).
    pub weight: u32,
    /// Ready endpoints only: readiness gates traffic.
    pub endpoints: Vec<SocketAddr>,
}

/// One Service port: where it listens and how its requests are routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub namespace: String,
    pub service: String,
    /// The Service port's name (empty when unnamed).
    pub port_name: String,
    pub listen: SocketAddr,
    pub backends: Vec<BackendSpec>,
    pub rules: Vec<RuleSpec>,
    /// (backend index, percent 0..=100).
    pub mirror: Option<(usize, u32)>,
    /// Not HTTP: connections are passed through to an endpoint chosen by weight (rules and
    /// mirroring need HTTP and do not apply).
    pub tcp: bool,
    /// Send each request to the endpoint with the fewest requests in flight (ties in round-robin
    /// order) instead of plain round robin: slow endpoints get less.
    pub least_requests: bool,
}

/// What the proxy serves: one route per listen address. Shared immutably; a new policy is a new
/// table, so a change is atomic for every request that starts after it.
#[derive(Debug, Default)]
pub struct RoutingTable {
    pub routes: HashMap<SocketAddr, Arc<Route>>,
}

impl RoutingTable {
    /// Compiles specs; a later spec for an address already taken is skipped (logged), so two
    /// Services asking for one address cannot take each other's traffic.
    pub fn build(specs: &[RouteSpec]) -> RoutingTable {
        let mut routes = HashMap::new();
        for spec in specs {
            if routes.contains_key(&spec.listen) {
                tracing::warn!(
                    "service {}/{} port {:?}: {} is already used by another service; not listening",
                    spec.namespace,
                    spec.service,
                    spec.port_name,
                    spec.listen
                );
                continue;
            }
            routes.insert(spec.listen, Arc::new(Route::new(spec.clone())));
        }
        RoutingTable { routes }
    }
}

enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(regex::Regex),
}

impl Matcher {
    fn compile(spec: &MatchSpec) -> Result<Matcher, regex::Error> {
        Ok(match spec {
            MatchSpec::Exact(s) => Matcher::Exact(s.clone()),
            MatchSpec::Prefix(s) => Matcher::Prefix(s.clone()),
            MatchSpec::Regex(r) => Matcher::Regex(regex::Regex::new(r)?),
        })
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => value == s,
            Matcher::Prefix(s) => value.starts_with(s.as_str()),
            Matcher::Regex(r) => r.is_match(value),
        }
    }
}

struct Rule {
    headers: Vec<(HeaderName, Matcher)>,
    cookies: Vec<(String, Matcher)>,
    backend: usize,
}

impl Rule {
    fn matches<H: RequestHeaders + ?Sized>(&self, headers: &H) -> bool {
        self.headers.iter().all(|(name, m)| {
            headers
                .values(name.as_str())
                .any(|v| std::str::from_utf8(v).is_ok_and(|v| m.matches(v)))
        }) && self
            .cookies
            .iter()
            .all(|(name, m)| cookie(headers, name).is_some_and(|v| m.matches(v)))
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a, H: RequestHeaders + ?Sized>(headers: &'a H, name: &str) -> Option<&'a str> {
    headers
        .values(COOKIE.as_str())
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// A backend with its round-robin cursor.
pub struct Backend {
    pub name: String,
    pub endpoints: Vec<SocketAddr>,
    /// The endpoints as URI authorities, made once rather than per request.
    pub authorities: Vec<Authority>,
    /// The backend's metrics series, looked up on its first request.
    pub stats: OnceLock<SeriesHandle>,
    /// Requests sent to each endpoint and not yet answered.
    in_flight: Box<[AtomicUsize]>,
    least_requests: bool,
    next: crate::worker::Counter,
}

/// Counts a request in flight to one endpoint until dropped.
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Backend {
    /// The endpoint for attempt `attempt` of one request: consecutive attempts get consecutive
    /// endpoints, so a connect retry lands on another one.
    pub fn endpoint(&self, start: usize, attempt: usize) -> Option<(SocketAddr, &Authority)> {
        if self.endpoints.is_empty() {
            return None;
        }
        let i = (start + attempt) % self.endpoints.len();
        Some((self.endpoints[i], &self.authorities[i]))
    }

    /// Where this request's search for an endpoint starts: the next in round robin, or with
    /// least-requests the one with the fewest in flight.
    pub fn start(&self) -> usize {
        let rr = self.next.next();
        let n = self.in_flight.len();
        if !self.least_requests || n < 2 {
            return rr;
        }
        (rr..rr + n)
            .min_by_key(|i| self.in_flight[i % n].load(Ordering::Relaxed))
            .unwrap_or(rr)
    }

    /// With least-requests, marks a request in flight to `endpoint` until the guard is dropped
    /// (plain round robin needs no count, so it keeps no shared counter busy).
    pub fn track_endpoint(&self, endpoint: SocketAddr) -> Option<InFlight<'_>> {
        if !self.least_requests {
            return None;
        }
        let index = self.endpoints.iter().position(|e| *e == endpoint)?;
        self.track(index)
    }

    /// Marks a request in flight to endpoint `index` until the guard is dropped.
    pub fn track(&self, index: usize) -> Option<InFlight<'_>> {
        let slot = self.in_flight.get(index)?;
        slot.fetch_add(1, Ordering::Relaxed);
        Some(InFlight(slot))
    }
}

/// A compiled route: immutable but for its counters.
pub struct Route {
    pub spec: RouteSpec,
    /// "namespace/service", the metrics' service label.
    pub key: String,
    pub backends: Vec<Backend>,
    rules: Vec<Rule>,
    /// Backend indexes in smooth weighted round-robin order, one slot per weight point: a
    /// deterministic schedule honours the weights exactly over every 100 requests instead of only
    /// on average, as random choice would.
    schedule: Vec<usize>,
    next: crate::worker::Counter,
    mirrored: AtomicU64,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.spec.fmt(f)
    }
}

/// Smooth weighted round robin (nginx's): spreads each backend's slots evenly.
fn schedule(weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(weights) {
            *c += i64::from(*w);
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, -(*i as i64)))
        else {
            break;
        };
        current[best] -= total;
        out.push(best);
    }
    out
}

impl Route {
    pub fn new(spec: RouteSpec) -> Route {
        let rules = spec
            .rules
            .iter()
            .filter_map(|r| {
                let compile = || -> Result<Rule, String> {
                    Ok(Rule {
                        headers: r
                            .headers
                            .iter()
                            .map(|(n, m)| {
                                let name = HeaderName::from_bytes(n.as_bytes())
                                    .map_err(|e| format!("header {n:?}: {e}"))?;
                                Ok((name, Matcher::compile(m).map_err(|e| e.to_string())?))
                            })
                            .collect::<Result<_, String>>()?,
                        cookies: r
                            .cookies
                            .iter()
                            .map(|(n, m)| {
                                Ok((n.clone(), Matcher::compile(m).map_err(|e| e.to_string())?))
                            })
                            .collect::<Result<_, String>>()?,
                        backend: r.backend,
                    })
                };
                // Validation at apply refuses these; an object written around it loses only the
                // broken rule, not the whole Service.
                compile()
                    .inspect_err(|e| {
                        tracing::warn!(
                            "service {}/{} route {:?} ignored: {e}",
                            spec.namespace,
                            spec.service,
                            r.name
                        )
                    })
                    .ok()
                    .filter(|rule| rule.backend < spec.backends.len())
            })
            .collect();
        let weights: Vec<u32> = spec.backends.iter().map(|b| b.weight.min(100)).collect();
        Route {
            backends: spec
                .backends
                .iter()
                .map(|b| {
                    // A SocketAddr always prints as a valid authority; one that did not parse
                    // would be dropped with its endpoint.
                    let (endpoints, authorities): (Vec<_>, _) = b
                        .endpoints
                        .iter()
                        .filter_map(|e| Some((*e, Authority::try_from(e.to_string()).ok()?)))
                        .unzip();
                    Backend {
                        name: b.name.clone(),
                        in_flight: endpoints.iter().map(|_| AtomicUsize::new(0)).collect(),
                        least_requests: spec.least_requests,
                        endpoints,
                        authorities,
                        stats: OnceLock::new(),
                        next: crate::worker::Counter::default(),
                    }
                })
                .collect(),
            rules,
            schedule: schedule(&weights),
            next: crate::worker::Counter::default(),
            mirrored: AtomicU64::new(0),
            key: format!("{}/{}", spec.namespace, spec.service),
            spec,
        }
    }

    /// The backend for a request: the first matching rule's, else the next by weight. A backend
    /// chosen by weight that has no ready endpoint hands its share to the others (a canary that is
    /// not up yet must not fail requests); a rule's backend does not, since the client asked for it.
    pub fn choose<H: RequestHeaders + ?Sized>(&self, headers: &H) -> Option<&Backend> {
        if let Some(rule) = self.rules.iter().find(|r| r.matches(headers)) {
            return self.backends.get(rule.backend);
        }
        let chosen = if self.schedule.is_empty() {
            self.backends.first()?
        } else {
            let n = self.next.next();
            &self.backends[self.schedule[n % self.schedule.len()]]
        };
        if !chosen.endpoints.is_empty() {
            return Some(chosen);
        }
        let mut others = self.backends.iter().filter(|b| !b.endpoints.is_empty());
        // Weighted ones first, so a 0-weight backend only serves when nothing else can.
        let weighted = self
            .spec
            .backends
            .iter()
            .zip(&self.backends)
            .find(|(s, b)| s.weight > 0 && !b.endpoints.is_empty());
        Some(
            weighted
                .map(|(_, b)| b)
                .or_else(|| others.next())
                .unwrap_or(chosen),
        )
    }

    /// The backend to mirror this request to, if it is one of the mirrored share. Counting
    /// (Bresenham) rather than drawing keeps the share exact.
    pub fn mirror(&self) -> Option<&Backend> {
        let (backend, percent) = self.spec.mirror?;
        let percent = u64::from(percent.min(100));
        if percent == 0 {
            return None;
        }
        let n = self.mirrored.fetch_add(1, Ordering::Relaxed);
        if (n + 1) * percent / 100 > n * percent / 100 {
            self.backends.get(backend)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(weights: &[u32]) -> RouteSpec {
        RouteSpec {
            namespace: "default".into(),
            service: "web".into(),
            port_name: String::new(),
            listen: "127.0.0.1:1".parse().unwrap(),
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, w)| BackendSpec {
                    name: format!("b{i}"),
                    weight: *w,
                    endpoints: vec![format!("127.0.0.1:{}", 1000 + i).parse().unwrap()],
                })
                .collect(),
            rules: vec![],
            mirror: None,
            tcp: false,
            least_requests: false,
        }
    }

    fn shares(route: &Route, n: usize) -> Vec<usize> {
        let mut counts = vec![0; route.backends.len()];
        for _ in 0..n {
            let b = route.choose(&HeaderMap::new()).unwrap();
            counts[route
                .backends
                .iter()
                .position(|x| x.name == b.name)
                .unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn weights_are_exact_over_each_hundred() {
        assert_eq!(shares(&Route::new(spec(&[80, 20])), 100), [80, 20]);
        assert_eq!(shares(&Route::new(spec(&[33, 67])), 1000), [330, 670]);
        assert_eq!(shares(&Route::new(spec(&[0, 100])), 50), [0, 50]);
        // Smooth: a 50/50 split alternates instead of sending 50 in a row to each.
        let r = Route::new(spec(&[50, 50]));
        let first: Vec<_> = (0..4)
            .map(|_| r.choose(&HeaderMap::new()).unwrap().name.clone())
            .collect();
        assert_eq!(first, ["b0", "b1", "b0", "b1"]);
    }

    #[test]
    fn a_backend_without_endpoints_gives_its_share_away() {
        let mut s = spec(&[80, 20]);
        s.backends[1].endpoints.clear();
        assert_eq!(shares(&Route::new(s), 100), [100, 0]);
    }

    #[test]
    fn rules_match_headers_and_cookies() {
        let mut s = spec(&[100, 0]);
        s.rules = vec![
            RuleSpec {
                name: "beta".into(),
                headers: vec![("x-canary".into(), MatchSpec::Exact("yes".into()))],
                cookies: vec![],
                backend: 1,
            },
            RuleSpec {
                name: "cookie".into(),
                headers: vec![],
                cookies: vec![("user".into(), MatchSpec::Regex("^qa-[0-9]+$".into()))],
                backend: 1,
            },
        ];
        let r = Route::new(s);
        let mut h = HeaderMap::new();
        assert_eq!(r.choose(&h).unwrap().name, "b0");
        h.insert("x-canary", "yes".parse().unwrap());
        assert_eq!(r.choose(&h).unwrap().name, "b1");
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=b; user=qa-42".parse().unwrap());
        assert_eq!(r.choose(&h).unwrap().name, "b1");
        h.insert(COOKIE, "user=qa-x".parse().unwrap());
        assert_eq!(r.choose(&h).unwrap().name, "b0");
    }

    #[test]
    fn mirror_share_is_exact() {
        let mut s = spec(&[100, 0]);
        s.mirror = Some((1, 25));
        let r = Route::new(s);
        assert_eq!((0..1000).filter(|_| r.mirror().is_some()).count(), 250);
    }
}
