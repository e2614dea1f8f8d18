//! HTTP request metrics in the Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::Method;
use shipway_model::exposition::{Exposition, MetricType};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    /// (method, route, status) → requests.
    requests: BTreeMap<(String, String, u16), u64>,
    /// (method, route) → latency.
    latency: BTreeMap<(String, String), Histogram>,
}

/// The route label of requests no route matched (unknown paths, and requests refused before routing).
pub const UNMATCHED: &str = "unmatched";

/// Counters for every request the API served. Labels come from closed sets: methods are the
/// standard ones or `other` ([`method_label`]), routes are the matched templates
/// (`/api/v1/resources/{resource}`) or [`UNMATCHED`], never raw paths, so nothing a caller sends
/// adds series.
#[derive(Default)]
pub struct HttpMetrics {
    inner: Mutex<Inner>,
}

impl HttpMetrics {
    /// `route` must be a route template or [`UNMATCHED`], never a path from the request.
    pub fn observe(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner
            .requests
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
        let h = inner
            .latency
            .entry((method.to_string(), route.to_string()))
            .or_default();
        let secs = elapsed.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn render(&self, out: &mut String) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut e = Exposition::new(out);
        e.family(
            "shipway_http_requests_total",
            MetricType::Counter,
            "HTTP requests served by the API, by route and status.",
        );
        for ((method, route, status), n) in &inner.requests {
            e.sample(
                "shipway_http_requests_total",
                &[
                    ("method", method),
                    ("route", route),
                    ("status", &status.to_string()),
                ],
                n,
            );
        }
        let name = "shipway_http_request_duration_seconds";
        e.family(
            name,
            MetricType::Histogram,
            "Time to the response head, by route.",
        );
        for ((method, route), h) in &inner.latency {
            e.histogram(
                name,
                &[("method", method), ("route", route)],
                BUCKETS.iter().copied().zip(h.counts),
                h.sum,
                h.count,
            );
        }
    }
}

/// A method as a metric label: the standard methods by name, any other (a client may send any
/// token up to the head limit) as `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = HttpMetrics::default();
        m.observe(&Method::GET, "/healthz", 200, Duration::from_micros(300));
        m.observe(&Method::GET, "/healthz", 200, Duration::from_millis(30));
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "shipway_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2"
        ));
        assert!(out.contains("le=\"0.0005\"} 1"));
        assert!(out.contains("le=\"0.05\"} 2"));
        assert!(out.contains("le=\"+Inf\"} 2"));
    }

    #[test]
    fn unknown_methods_share_one_label() {
        let m = HttpMetrics::default();
        for name in ["FOO", "BAR", "PROPFIND"] {
            let method = Method::from_bytes(name.as_bytes()).unwrap();
            m.observe(&method, UNMATCHED, 401, Duration::from_millis(1));
        }
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains(
                "shipway_http_requests_total{method=\"other\",route=\"unmatched\",status=\"401\"} 3"
            ),
            "{out}"
        );
        assert!(!out.contains("FOO"), "{out}");
    }
}
