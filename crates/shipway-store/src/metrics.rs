//! Operation counters and latency histograms, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use shipway_model::exposition::{Exposition, MetricType};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct State {
    operations: BTreeMap<(&'static str, &'static str), u64>,
    durations: BTreeMap<&'static str, Histogram>,
}

/// The store's metrics. A mutex is plenty: every operation it counts does database IO.
pub(crate) struct Metrics {
    backend: &'static str,
    state: Mutex<State>,
}

impl Metrics {
    pub(crate) fn new(backend: &'static str) -> Metrics {
        Metrics {
            backend,
            state: Mutex::default(),
        }
    }

    pub(crate) fn record(&self, op: &'static str, result: &'static str, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state.operations.entry((op, result)).or_default() += 1;
        let h = state.durations.entry(op).or_default();
        let slot = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        h.counts[slot] += 1;
        h.sum += secs;
        h.count += 1;
    }

    pub(crate) fn render(&self) -> String {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let backend = self.backend;
        let mut out = String::new();
        let mut e = Exposition::new(&mut out);
        e.family(
            "shipway_store_operations_total",
            MetricType::Counter,
            "Store operations by backend, operation and result.",
        );
        for ((op, result), n) in &state.operations {
            e.sample(
                "shipway_store_operations_total",
                &[("backend", backend), ("op", op), ("result", result)],
                n,
            );
        }
        let name = "shipway_store_operation_duration_seconds";
        e.family(
            name,
            MetricType::Histogram,
            "Time store operations take, including waiting for the database.",
        );
        for (op, h) in &state.durations {
            let cumulative = h.counts.iter().scan(0, |sum, n| {
                *sum += n;
                Some(*sum)
            });
            e.histogram(
                name,
                &[("backend", backend), ("op", op)],
                BUCKETS.iter().copied().zip(cumulative),
                h.sum,
                h.count,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::new("sqlite");
        m.record("create", "ok", Duration::from_millis(3));
        m.record("create", "conflict", Duration::from_secs(20));
        let text = m.render();
        assert!(text.contains(
            "shipway_store_operations_total{backend=\"sqlite\",op=\"create\",result=\"ok\"} 1\n"
        ));
        assert!(text.contains(
            "shipway_store_operation_duration_seconds_bucket{backend=\"sqlite\",op=\"create\",le=\"0.005\"} 1\n"
        ));
        assert!(text.contains(
            "shipway_store_operation_duration_seconds_bucket{backend=\"sqlite\",op=\"create\",le=\"+Inf\"} 2\n"
        ));
        assert!(text.contains(
            "shipway_store_operation_duration_seconds_count{backend=\"sqlite\",op=\"create\"} 2\n"
        ));
    }
}
