//! Request metrics per Service and backend: counts by status class and latency histograms,
//! rendered as Prometheus text and queried in process over a sliding window (the rollout analysis
//! reads success rate and p50/p95/p99 from here).

use shipway_model::exposition::{Exposition, MetricType};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Finest bucket bound; bucket `i` ends at `BASE * 2^(i/4)`: about 19 % wide, so an interpolated
/// percentile is within a few percent. The last bucket (≈ 70 s) catches everything above.
const BASE_SECS: f64 = 25e-6;
const BUCKETS: usize = 90;
/// The query window's resolution and reach: one slot per second, five minutes kept.
const SLOTS: usize = 300;

fn bucket_of(d: Duration) -> usize {
    let s = d.as_secs_f64();
    if s <= BASE_SECS {
        return 0;
    }
    ((4.0 * (s / BASE_SECS).log2()).ceil() as usize).min(BUCKETS - 1)
}

fn bucket_bound(i: usize) -> f64 {
    BASE_SECS * 2f64.powf(i as f64 / 4.0)
}

/// 1xx..5xx as 0..4; anything else is counted as a 5xx.
fn class_of(status: u16) -> usize {
    match status / 100 {
        1..=5 => usize::from(status / 100 - 1),
        _ => 4,
    }
}

#[derive(Clone)]
struct Slot {
    second: u64,
    classes: [u32; 5],
    hist: [u32; BUCKETS],
}

struct Series {
    classes: [u64; 5],
    hist: [u64; BUCKETS],
    sum_secs: f64,
    /// Allocated on the first request, so idle backends cost nothing.
    ring: Vec<Slot>,
}

impl Series {
    fn new() -> Series {
        Series {
            classes: [0; 5],
            hist: [0; BUCKETS],
            sum_secs: 0.0,
            ring: Vec::new(),
        }
    }

    fn record(&mut self, second: u64, status: u16, d: Duration) {
        let (c, b) = (class_of(status), bucket_of(d));
        self.classes[c] += 1;
        self.hist[b] += 1;
        self.sum_secs += d.as_secs_f64();
        if self.ring.is_empty() {
            self.ring = vec![
                Slot {
                    second: u64::MAX,
                    classes: [0; 5],
                    hist: [0; BUCKETS],
                };
                SLOTS
            ];
        }
        let slot = &mut self.ring[(second % SLOTS as u64) as usize];
        if slot.second != second {
            slot.second = second;
            slot.classes = [0; 5];
            slot.hist = [0; BUCKETS];
        }
        slot.classes[c] = slot.classes[c].saturating_add(1);
        slot.hist[b] = slot.hist[b].saturating_add(1);
    }
}

/// What one window of traffic looked like.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowStats {
    pub requests: u64,
    /// Responses by class: `[1xx, 2xx, 3xx, 4xx, 5xx]`. The proxy's own 502/503/504 are 5xx.
    pub by_class: [u64; 5],
    /// Share of responses that are not 5xx; `None` without traffic.
    pub success_rate: Option<f64>,
    /// Time to the response head.
    pub p50: Option<Duration>,
    pub p95: Option<Duration>,
    pub p99: Option<Duration>,
}

impl WindowStats {
    fn from_counts(by_class: [u64; 5], hist: &[u64; BUCKETS]) -> WindowStats {
        let requests: u64 = by_class.iter().sum();
        let q = |q: f64| quantile(hist, q);
        WindowStats {
            requests,
            by_class,
            success_rate: (requests > 0).then(|| 1.0 - by_class[4] as f64 / requests as f64),
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
        }
    }
}

/// Linear interpolation inside the bucket that holds the rank, as Prometheus'
/// `histogram_quantile` does.
fn quantile(hist: &[u64; BUCKETS], q: f64) -> Option<Duration> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, n) in hist.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        if (seen + n) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { bucket_bound(i - 1) };
            let upper = bucket_bound(i);
            let within = ((rank - seen as f64) / *n as f64).clamp(0.0, 1.0);
            return Some(Duration::from_secs_f64(lower + (upper - lower) * within));
        }
        seen += n;
    }
    Some(Duration::from_secs_f64(bucket_bound(BUCKETS - 1)))
}

/// One series kept per worker slot, so workers recording the same backend do not contend for
/// one lock; readers add the shards up.
struct Shards([Shard; crate::worker::SLOTS]);

#[repr(align(64))]
struct Shard(Mutex<Series>);

impl Shards {
    fn new() -> Shards {
        Shards(std::array::from_fn(|_| Shard(Mutex::new(Series::new()))))
    }

    fn record(&self, second: u64, status: u16, latency: Duration) {
        let shard = &self.0[crate::worker::index() % crate::worker::SLOTS].0;
        shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(second, status, latency);
    }

    fn each(&self, mut f: impl FnMut(&Series)) {
        for shard in &self.0 {
            f(&shard.0.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

type Backends = HashMap<String, Arc<Shards>>;

/// One series (a service's backend), looked up once and kept by the routing table, so recording
/// a request takes no map lookup.
#[derive(Clone)]
pub struct SeriesHandle(Arc<Shards>);

/// The proxy's metrics. Cheap to share (`Arc`); recording takes one uncontended lock per request.
pub struct ProxyMetrics {
    epoch: Instant,
    /// "namespace/service" → backend → series.
    series: RwLock<HashMap<String, Backends>>,
    /// Plain TCP ports: ("namespace/service", backend) → counters.
    tcp: Mutex<HashMap<(String, String), TcpCounters>>,
}

/// A TCP port's connections: nothing per request to measure, so counts and bytes.
#[derive(Clone, Copy, Default)]
struct TcpCounters {
    connected: u64,
    /// No endpoint of the backend accepted the connection.
    failed: u64,
    to_upstream: u64,
    to_client: u64,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        ProxyMetrics {
            epoch: Instant::now(),
            series: RwLock::default(),
            tcp: Mutex::default(),
        }
    }
}

impl ProxyMetrics {
    pub fn new() -> Arc<ProxyMetrics> {
        Arc::new(ProxyMetrics::default())
    }

    fn second(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_secs()
    }

    fn series(&self, service: &str, backend: &str) -> Arc<Shards> {
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .and_then(|b| b.get(backend))
        {
            return s.clone();
        }
        self.series
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(service.to_string())
            .or_default()
            .entry(backend.to_string())
            .or_insert_with(|| Arc::new(Shards::new()))
            .clone()
    }

    /// The series of `service` ("namespace/name") and `backend`, for [`ProxyMetrics::record_to`].
    pub fn handle(&self, service: &str, backend: &str) -> SeriesHandle {
        SeriesHandle(self.series(service, backend))
    }

    /// Records one response, finished at `at`, to a series from [`ProxyMetrics::handle`].
    pub fn record_to(&self, series: &SeriesHandle, status: u16, latency: Duration, at: Instant) {
        series.0.record(self.second(at), status, latency);
    }

    /// Records one response of `service` ("namespace/name") from `backend`, finished now.
    pub fn record(&self, service: &str, backend: &str, status: u16, latency: Duration) {
        self.record_at(service, backend, status, latency, Instant::now());
    }

    pub fn record_at(
        &self,
        service: &str,
        backend: &str,
        status: u16,
        latency: Duration,
        at: Instant,
    ) {
        self.series(service, backend)
            .record(self.second(at), status, latency);
    }

    /// Drops every series of the services ("namespace/name") `keep` refuses, so a deleted Service
    /// does not stay in `/metrics` and in memory for the life of the process. Backends of a kept
    /// service are all kept: a canary that comes back keeps its history for the analysis. Returns
    /// how many services were dropped.
    ///
    /// Only drop services no route serves any more: a route keeps the [`SeriesHandle`]s it looked
    /// up, and a dropped series it still records to is no longer rendered or queried.
    pub fn retain_services(&self, keep: impl Fn(&str) -> bool) -> usize {
        // Usually nothing goes: check under the read lock, so recorders are not held up.
        let any = self
            .series
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .any(|s| !keep(s));
        if !any {
            return 0;
        }
        self.tcp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(s, _), _| keep(s));
        let mut all = self.series.write().unwrap_or_else(|p| p.into_inner());
        let before = all.len();
        all.retain(|s, _| keep(s));
        before - all.len()
    }

    /// Counts a plain TCP connection of `service` ("namespace/name") to `backend`: whether an
    /// endpoint accepted it.
    pub fn record_tcp(&self, service: &str, backend: &str, connected: bool) {
        let mut tcp = self.tcp.lock().unwrap_or_else(|p| p.into_inner());
        let c = tcp
            .entry((service.to_string(), backend.to_string()))
            .or_default();
        if connected {
            c.connected += 1;
        } else {
            c.failed += 1;
        }
    }

    /// Adds the bytes of a TCP connection counted by [`ProxyMetrics::record_tcp`] when it ends.
    pub fn record_tcp_bytes(&self, service: &str, backend: &str, to_upstream: u64, to_client: u64) {
        let mut tcp = self.tcp.lock().unwrap_or_else(|p| p.into_inner());
        let c = tcp
            .entry((service.to_string(), backend.to_string()))
            .or_default();
        c.to_upstream += to_upstream;
        c.to_client += to_client;
    }

    /// Every response of `service` ("namespace/name") from `backend` since the proxy started (the
    /// `shipway_proxy_requests_total` counter, all classes): unlike a window it only grows, so a
    /// reader can tell the instant a backend stopped answering.
    pub fn requests_total(&self, service: &str, backend: &str) -> u64 {
        let all = self.series.read().unwrap_or_else(|p| p.into_inner());
        let Some(series) = all.get(service).and_then(|b| b.get(backend)) else {
            return 0;
        };
        let mut total = 0;
        series.each(|s| total += s.classes.iter().sum::<u64>());
        total
    }

    /// The last `window` (at most five minutes, whole seconds, the current one included) of
    /// `namespace/service`, for one backend or all of them.
    pub fn query(
        &self,
        namespace: &str,
        service: &str,
        backend: Option<&str>,
        window: Duration,
    ) -> WindowStats {
        self.query_at(namespace, service, backend, window, Instant::now())
    }

    pub fn query_at(
        &self,
        namespace: &str,
        service: &str,
        backend: Option<&str>,
        window: Duration,
        at: Instant,
    ) -> WindowStats {
        let now = self.second(at);
        let span = window.as_secs().clamp(1, SLOTS as u64);
        let oldest = now.saturating_sub(span - 1);
        let mut classes = [0u64; 5];
        let mut hist = [0u64; BUCKETS];
        let all = self.series.read().unwrap_or_else(|p| p.into_inner());
        let Some(backends) = all.get(&format!("{namespace}/{service}")) else {
            return WindowStats::default();
        };
        for (name, series) in backends {
            if backend.is_some_and(|b| b != name) {
                continue;
            }
            series.each(|series| {
                for slot in &series.ring {
                    if slot.second == u64::MAX || slot.second < oldest || slot.second > now {
                        continue;
                    }
                    for (t, n) in classes.iter_mut().zip(slot.classes) {
                        *t += u64::from(n);
                    }
                    for (t, n) in hist.iter_mut().zip(slot.hist) {
                        *t += u64::from(n);
                    }
                }
            });
        }
        WindowStats::from_counts(classes, &hist)
    }

    /// Prometheus text: `shipway_proxy_requests_total{service,backend,code_class}` and
    /// `shipway_proxy_request_duration_seconds` (time to the response head).
    pub fn render(&self, out: &mut String) {
        let all = self.series.read().unwrap_or_else(|p| p.into_inner());
        let mut keys: Vec<(&String, &String, &Arc<Shards>)> = all
            .iter()
            .flat_map(|(s, b)| b.iter().map(move |(b, series)| (s, b, series)))
            .collect();
        keys.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut e = Exposition::new(out);
        e.family(
            "shipway_proxy_requests_total",
            MetricType::Counter,
            "Requests through the proxy by service, backend and status class.",
        );
        let snapshot: Vec<_> = keys
            .iter()
            .map(|(s, b, series)| {
                let (mut classes, mut hist, mut sum) = ([0u64; 5], [0u64; BUCKETS], 0.0);
                series.each(|series| {
                    for (t, n) in classes.iter_mut().zip(series.classes) {
                        *t += n;
                    }
                    for (t, n) in hist.iter_mut().zip(series.hist) {
                        *t += n;
                    }
                    sum += series.sum_secs;
                });
                (*s, *b, classes, hist, sum)
            })
            .collect();
        const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        for (service, backend, classes, _, _) in &snapshot {
            for (class, n) in CLASSES.iter().zip(classes) {
                if *n > 0 {
                    e.sample(
                        "shipway_proxy_requests_total",
                        &[
                            ("service", service),
                            ("backend", backend),
                            ("code_class", class),
                        ],
                        n,
                    );
                }
            }
        }
        let name = "shipway_proxy_request_duration_seconds";
        e.family(
            name,
            MetricType::Histogram,
            "Time to the upstream's response head, by service and backend.",
        );
        for (service, backend, _, hist, sum) in &snapshot {
            let cumulative: Vec<u64> = hist
                .iter()
                .scan(0, |total, n| {
                    *total += n;
                    Some(*total)
                })
                .collect();
            // Every fourth bound (powers of two from 25 µs) keeps the exposition short.
            let buckets = (0..BUCKETS - 1)
                .step_by(4)
                .map(|i| (bucket_bound(i), cumulative[i]));
            let count = cumulative.last().copied().unwrap_or(0);
            e.histogram(
                name,
                &[("service", service), ("backend", backend)],
                buckets,
                *sum,
                count,
            );
        }
        let mut tcp: Vec<((String, String), TcpCounters)> = self
            .tcp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if tcp.is_empty() {
            return;
        }
        tcp.sort_by(|a, b| a.0.cmp(&b.0));
        e.family(
            "shipway_proxy_tcp_connections_total",
            MetricType::Counter,
            "Plain TCP connections by service, backend and result (connected: an endpoint accepted; failed: none did).",
        );
        for ((service, backend), c) in &tcp {
            for (result, n) in [("connected", c.connected), ("failed", c.failed)] {
                e.sample(
                    "shipway_proxy_tcp_connections_total",
                    &[
                        ("service", service),
                        ("backend", backend),
                        ("result", result),
                    ],
                    n,
                );
            }
        }
        e.family(
            "shipway_proxy_tcp_bytes_total",
            MetricType::Counter,
            "Bytes passed through plain TCP connections that have ended, by direction.",
        );
        for ((service, backend), c) in &tcp {
            for (direction, n) in [("to_upstream", c.to_upstream), ("to_client", c.to_client)] {
                e.sample(
                    "shipway_proxy_tcp_bytes_total",
                    &[
                        ("service", service),
                        ("backend", backend),
                        ("direction", direction),
                    ],
                    n,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_success_rate_and_percentiles() {
        let m = ProxyMetrics::default();
        let t0 = m.epoch;
        // An old failure outside the window, then 99 fast OKs and one slow 500.
        m.record_at("default/web", "canary", 500, Duration::from_millis(1), t0);
        let now = t0 + Duration::from_secs(120);
        for _ in 0..99 {
            m.record_at("default/web", "canary", 200, Duration::from_millis(10), now);
        }
        m.record_at(
            "default/web",
            "canary",
            503,
            Duration::from_millis(900),
            now,
        );
        m.record_at("default/web", "stable", 200, Duration::from_millis(2), now);
        let s = m.query_at(
            "default",
            "web",
            Some("canary"),
            Duration::from_secs(60),
            now,
        );
        assert_eq!(s.requests, 100);
        assert_eq!(s.success_rate, Some(0.99));
        let p50 = s.p50.unwrap().as_secs_f64();
        assert!((0.0085..=0.0101).contains(&p50), "{p50}");
        assert!(s.p99.unwrap() <= Duration::from_millis(11), "{:?}", s.p99);
        let all = m.query_at("default", "web", None, Duration::from_secs(300), now);
        assert_eq!(all.requests, 102);
        assert_eq!(
            m.query_at("default", "nope", None, Duration::from_secs(60), now)
                .success_rate,
            None
        );
        let mut text = String::new();
        m.render(&mut text);
        assert!(text.contains(
            "shipway_proxy_requests_total{service=\"default/web\",backend=\"canary\",code_class=\"5xx\"} 2"
        ));
        assert!(text.contains("shipway_proxy_request_duration_seconds_count{service=\"default/web\",backend=\"stable\"} 1"));
    }

    #[test]
    fn retain_services_drops_only_the_services_not_kept() {
        let m = ProxyMetrics::default();
        let now = m.epoch + Duration::from_secs(5);
        let ok = Duration::from_millis(1);
        m.record_at("default/web", "stable", 200, ok, now);
        m.record_at("default/web", "canary", 200, ok, now);
        m.record_at("default/gone", "default", 200, ok, now);
        m.record_at("other/gone", "", 503, ok, now);

        assert_eq!(
            m.retain_services(|s| s != "default/gone" && s != "other/gone"),
            2
        );
        let mut text = String::new();
        m.render(&mut text);
        assert!(!text.contains("gone"), "{text}");
        // Every backend of a kept service stays, with its window.
        for backend in ["stable", "canary"] {
            let s = m.query_at(
                "default",
                "web",
                Some(backend),
                Duration::from_secs(60),
                now,
            );
            assert_eq!(s.requests, 1, "{backend}");
        }
        assert_eq!(
            m.query_at("default", "gone", None, Duration::from_secs(60), now)
                .requests,
            0
        );
        assert_eq!(m.retain_services(|_| true), 0);
        assert_eq!(m.retain_services(|_| false), 1);
        let mut text = String::new();
        m.render(&mut text);
        assert!(!text.contains("service="), "{text}");
    }
}
