//! Metric providers: each takes one measurement of a metric whose arguments are resolved.
//! `web` (an HTTP endpoint and a JSONPath), `prometheus` (an instant query), `shipway` (the
//! proxy's own counters, in process) and `job` (a Job through the store; success when it
//! completes). Any other provider Argo knows is an Error measurement naming it.
//!
//! A provider gives a [`Reading`]; [`Providers::measure`] turns it into a [`Measurement`] with the
//! metric's conditions (Argo's `EvaluateResult`), under the provider's timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use shipway_controller::{Cache, Clock};
use shipway_expr::exprlang::{self, Assessment, Conditions};
use shipway_model::Object;
use shipway_model::types::repository::parse_duration;
use shipway_model::types::{Measurement, Metric, PrometheusMetric, ShipwayMetric, WebMetric};
use shipway_proxy::metrics::ProxyMetrics;
use shipway_store::Store;

use super::{Phase, Task};

/// What a provider saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    /// A result for the metric's conditions (NaN and infinities kept as numbers, as Argo's Go
    /// floats are), and its text for `measurement.value`.
    Value {
        result: exprlang::Value,
        text: String,
    },
    /// No verdict can be drawn (too little traffic); never a pass.
    Inconclusive { text: String, message: String },
    /// The provider decided (a Job completed or failed).
    Decided { phase: Phase, message: String },
    /// Still in flight (a Job running): resumed on the next pass; `metadata` goes into the
    /// measurement (which Job).
    Running { metadata: Map<String, Value> },
}

/// One kind of metric provider.
pub trait Provider: Send + Sync {
    /// Takes one measurement; `Err` is the measurement's Error message.
    fn measure(
        &self,
        metric: &Metric,
        run: &Object,
    ) -> impl Future<Output = Result<Reading, String>> + Send;
}

/// The `web` provider: Argo's `webmetric`.
pub struct Web {
    client: reqwest::Client,
    insecure: reqwest::Client,
}

impl Default for Web {
    fn default() -> Web {
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .danger_accept_invalid_certs(insecure)
                .build()
                .unwrap_or_default()
        };
        Web {
            client: build(false),
            insecure: build(true),
        }
    }
}

pub const DEFAULT_WEB_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);

fn web_timeout(w: &WebMetric) -> Duration {
    match w.timeout_seconds {
        Some(s) if s > 0 => Duration::from_secs(s.unsigned_abs()),
        _ => DEFAULT_WEB_TIMEOUT,
    }
}

impl Provider for Web {
    async fn measure(&self, metric: &Metric, _run: &Object) -> Result<Reading, String> {
        let Some(w) = &metric.provider.web else {
            return Err(format!("metric \"{}\" has no web provider", metric.name));
        };
        let method = w
            .method
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or("GET");
        let body = w.body.as_deref().filter(|b| !b.is_empty());
        if body.is_some() && w.json_body.is_some() {
            return Err(
                "use either Body or JSONBody; both cannot exists for WebMetric payload".into(),
            );
        }
        if (body.is_some() || w.json_body.is_some()) && method == "GET" {
            return Err(
                "Body/JSONBody can only be used with POST or PUT WebMetric Method types".into(),
            );
        }
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("net/http: invalid method {method:?}"))?;
        let client = if w.insecure {
            &self.insecure
        } else {
            &self.client
        };
        let mut req = client.request(method, &w.url).timeout(web_timeout(w));
        for h in &w.headers {
            req = req.header(&h.key, &h.value);
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        } else if let Some(j) = &w.json_body {
            req = req
                .header("Content-Type", "application/json")
                .body(j.to_string());
        }
        let resp = req.send().await.map_err(|e| http_error(&w.url, e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!(
                "received non 2xx response code: {}",
                status.as_u16()
            ));
        }
        let bytes = resp.bytes().await.map_err(|e| http_error(&w.url, e))?;
        let Ok(data) = serde_json::from_slice::<Value>(&bytes) else {
            // Argo evaluates a body that is no JSON as a string.
            let text = String::from_utf8_lossy(&bytes).into_owned();
            return Ok(Reading::Value {
                result: exprlang::Value::String(text.clone()),
                text,
            });
        };
        let found = match w.json_path.as_deref().filter(|p| !p.trim().is_empty()) {
            Some(path) => json_path(&data, path)
                .map_err(|e| format!("Could not find JSONPath in body: {e}"))?,
            None => data,
        };
        Ok(Reading::Value {
            text: found.to_string(),
            result: exprlang::Value::from(&found),
        })
    }
}

fn http_error(url: &str, e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".to_string()
    } else {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        s
    };
    format!("Get \"{url}\": {what}")
}

/// The JSONPath subset Argo's users write, as Kubernetes' jsonpath reads it: `{$.a.b}`,
/// `{.items[0].x}`, `{$.data['key']}`, `{$}`.
pub fn json_path(data: &Value, path: &str) -> Result<Value, String> {
    let inner = path
        .trim()
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path.trim())
        .trim();
    let mut rest = inner.strip_prefix('$').unwrap_or(inner);
    let mut v = data;
    let missing = |what: &str| format!("{what} is not found");
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            if !name.is_empty() {
                v = v.get(name).ok_or_else(|| missing(name))?;
            }
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("unterminated array in {path}"))?;
            let index = r[..end].trim();
            if let Some(name) = index
                .strip_prefix('\'')
                .and_then(|i| i.strip_suffix('\''))
                .or_else(|| index.strip_prefix('"').and_then(|i| i.strip_suffix('"')))
            {
                v = v.get(name).ok_or_else(|| missing(name))?;
            } else {
                let i: i64 = index
                    .parse()
                    .map_err(|_| format!("invalid array index {index} in {path}"))?;
                let items = v
                    .as_array()
                    .ok_or_else(|| format!("{index} is not an array index of an array"))?;
                let at = if i < 0 { items.len() as i64 + i } else { i };
                v = usize::try_from(at)
                    .ok()
                    .and_then(|at| items.get(at))
                    .ok_or_else(|| "array index out of bounds".to_string())?;
            }
            rest = &r[end + 1..];
        } else {
            return Err(format!("unrecognized character in {path}: {rest}"));
        }
    }
    Ok(v.clone())
}

/// The `prometheus` provider: an instant query against Prometheus' HTTP API.
#[derive(Default)]
pub struct Prometheus {
    client: reqwest::Client,
}

fn prometheus_timeout(p: &PrometheusMetric) -> Duration {
    match p.timeout {
        Some(s) if s > 0 => Duration::from_secs(s.unsigned_abs()),
        _ => DEFAULT_PROMETHEUS_TIMEOUT,
    }
}

impl Provider for Prometheus {
    async fn measure(&self, metric: &Metric, _run: &Object) -> Result<Reading, String> {
        let Some(p) = &metric.provider.prometheus else {
            return Err(format!(
                "metric \"{}\" has no prometheus provider",
                metric.name
            ));
        };
        if matches!(p.timeout, Some(t) if t < 0) {
            return Err("prometheus timeout should not be negative".into());
        }
        let url = format!("{}/api/v1/query", p.address.trim_end_matches('/'));
        let mut req = self
            .client
            .get(&url)
            .query(&[("query", p.query.as_str())])
            .timeout(prometheus_timeout(p));
        for h in &p.headers {
            req = req.header(&h.key, &h.value);
        }
        let resp = req.send().await.map_err(|e| http_error(&url, e))?;
        let code = resp.status();
        let bytes = resp.bytes().await.map_err(|e| http_error(&url, e))?;
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|_| format!("server_error: server error: {}", code.as_u16()))?;
        if body.get("status").and_then(Value::as_str) != Some("success") {
            // Prometheus' error envelope: `{"status":"error","errorType":...,"error":...}`.
            let kind = body
                .get("errorType")
                .and_then(Value::as_str)
                .unwrap_or("error");
            let msg = body.get("error").and_then(Value::as_str).unwrap_or("");
            return Err(format!("{kind}: {msg}"));
        }
        let data = body.get("data").cloned().unwrap_or_default();
        let number = |v: &Value| -> Option<f64> {
            let s = v.as_array()?.get(1)?.as_str()?;
            match s {
                "NaN" => Some(f64::NAN),
                "+Inf" => Some(f64::INFINITY),
                "-Inf" => Some(f64::NEG_INFINITY),
                s => s.parse().ok(),
            }
        };
        let result = data.get("result");
        match data.get("resultType").and_then(Value::as_str) {
            Some("scalar") => {
                let v = result
                    .and_then(number)
                    .ok_or("Prometheus returned a scalar without a value")?;
                Ok(Reading::Value {
                    result: exprlang::Value::Float(v),
                    text: go_float(v),
                })
            }
            Some(kind @ ("vector" | "matrix")) => {
                let mut values = Vec::new();
                for series in result.and_then(Value::as_array).into_iter().flatten() {
                    if kind == "vector" {
                        values.extend(series.get("value").and_then(number));
                    } else {
                        for s in series
                            .get("values")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            values.extend(number(s));
                        }
                    }
                }
                let text = format!(
                    "[{}]",
                    values
                        .iter()
                        .map(|v| go_float(*v))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                Ok(Reading::Value {
                    result: exprlang::Value::Array(
                        values.into_iter().map(exprlang::Value::Float).collect(),
                    ),
                    text,
                })
            }
            _ => Err("Prometheus metric type not supported".into()),
        }
    }
}

/// Prometheus' `SampleValue.String()` (Go's `%g`-like shortest form).
fn go_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// The `shipway` provider: the proxy's counters for one Service of the run's namespace.
pub struct ShipwayProvider {
    pub metrics: Arc<ProxyMetrics>,
}

pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
pub const DEFAULT_MIN_REQUESTS: i64 = 20;

impl ShipwayProvider {
    /// The reading of `m` in namespace `namespace` from the window's statistics.
    pub fn read(&self, m: &ShipwayMetric, namespace: &str) -> Result<Reading, String> {
        let window = match m.window.as_deref() {
            None | Some("") => DEFAULT_WINDOW,
            Some(w) => parse_duration(w).ok_or_else(|| {
                format!("shipway.window: {w:?} is not a duration such as \"30s\" or \"1m\"")
            })?,
        };
        let stats = self
            .metrics
            .query(namespace, &m.service, m.backend.as_deref(), window);
        let min = m.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS);
        let requests = i64::try_from(stats.requests).unwrap_or(i64::MAX);
        let value = match m.metric.as_str() {
            "requests" => Some(requests as f64),
            "success-rate" => stats.success_rate,
            "error-rate" => stats.success_rate.map(|s| 1.0 - s),
            "latency-p50" => stats.p50.map(|d| d.as_secs_f64()),
            "latency-p95" => stats.p95.map(|d| d.as_secs_f64()),
            "latency-p99" => stats.p99.map(|d| d.as_secs_f64()),
            other => {
                return Err(format!(
                    "shipway.metric: {other:?} is not one of success-rate, error-rate, latency-p50, latency-p95, latency-p99, requests"
                ));
            }
        };
        let target = match &m.backend {
            Some(b) => format!("backend \"{b}\" of service \"{}\"", m.service),
            None => format!("service \"{}\"", m.service),
        };
        if m.metric != "requests" && requests < min {
            return Ok(Reading::Inconclusive {
                text: value.map(go_float).unwrap_or_default(),
                message: format!(
                    "{requests} requests to {target} in the last {}s, fewer than minRequests ({min})",
                    window.as_secs()
                ),
            });
        }
        let Some(v) = value else {
            return Ok(Reading::Inconclusive {
                text: String::new(),
                message: format!("no requests to {target} in the last {}s", window.as_secs()),
            });
        };
        Ok(Reading::Value {
            result: exprlang::Value::Float(v),
            text: go_float(v),
        })
    }
}

impl Provider for ShipwayProvider {
    async fn measure(&self, metric: &Metric, run: &Object) -> Result<Reading, String> {
        let Some(m) = &metric.provider.shipway else {
            return Err(format!(
                "metric \"{}\" has no shipway provider",
                metric.name
            ));
        };
        self.read(m, run.metadata.namespace.as_deref().unwrap_or_default())
    }
}

/// The providers Argo has that Shipway does not run.
pub const UNSUPPORTED: &[&str] = &[
    "datadog",
    "newRelic",
    "wavefront",
    "kayenta",
    "cloudWatch",
    "graphite",
    "influxdb",
    "skywalking",
    "plugin",
];

/// Every provider, and what a measurement needs around it.
pub struct Providers {
    pub web: Web,
    pub prometheus: Prometheus,
    /// `None` where no proxy runs: `shipway` metrics are then Errors saying so.
    pub shipway: Option<ShipwayProvider>,
    pub job: Option<super::controller::JobProvider>,
    pub clock: Clock,
}

impl Providers {
    pub fn new(clock: Clock, proxy: Option<Arc<ProxyMetrics>>) -> Providers {
        Providers {
            web: Web::default(),
            prometheus: Prometheus::default(),
            shipway: proxy.map(|metrics| ShipwayProvider { metrics }),
            job: None,
            clock,
        }
    }

    /// With the `job` provider, which creates Jobs through `store`.
    pub fn with_jobs(mut self, store: Store, cache: Cache) -> Providers {
        self.job = Some(super::controller::JobProvider {
            store,
            cache,
            clock: self.clock,
        });
        self
    }

    /// One measurement of `metric` (arguments resolved) for `run`: the reading judged by the
    /// metric's conditions; an error is an Error measurement with its message, `secrets`
    /// redacted from it. `previous` is the in-flight measurement a resumed task continues; when
    /// the run is `terminating` that one is stopped instead (its Job deleted), as Argo's
    /// `Terminate`: Successful, "Metric Terminated".
    pub async fn measure(
        &self,
        metric: &Metric,
        run: &Object,
        task: Task,
        previous: Option<&Measurement>,
        terminating: bool,
        secrets: &[String],
    ) -> Measurement {
        let started = super::precise_timestamp(self.clock.now());
        let mut m = match (task.resume, previous) {
            (true, Some(p)) => p.clone(),
            _ => Measurement {
                started_at: Some(started),
                ..Measurement::default()
            },
        };
        let reading = if task.resume && terminating {
            if let Some(job) = &self.job {
                job.terminate(run, &m).await;
            }
            Ok(Reading::Decided {
                phase: Phase::Successful,
                message: "Metric Terminated".into(),
            })
        } else {
            self.read(metric, run, m.clone()).await
        };
        match reading {
            Ok(Reading::Value { result, text }) => {
                m.value = text;
                match judge(metric, &result) {
                    Ok(phase) => m.phase = phase.as_str().into(),
                    Err(e) => {
                        m.phase = Phase::Error.as_str().into();
                        m.message = e;
                    }
                }
            }
            Ok(Reading::Inconclusive { text, message }) => {
                m.value = text;
                m.phase = Phase::Inconclusive.as_str().into();
                m.message = message;
            }
            Ok(Reading::Decided { phase, message }) => {
                m.phase = phase.as_str().into();
                m.message = message;
            }
            Ok(Reading::Running { metadata }) => {
                m.phase = Phase::Running.as_str().into();
                m.metadata.extend(metadata);
                return m;
            }
            Err(e) => {
                m.phase = Phase::Error.as_str().into();
                m.message = e;
            }
        }
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            m.message = m.message.replace(s.as_str(), "*****");
        }
        m.finished_at = Some(super::precise_timestamp(self.clock.now()));
        m
    }

    async fn read(
        &self,
        metric: &Metric,
        run: &Object,
        current: Measurement,
    ) -> Result<Reading, String> {
        let p = &metric.provider;
        // A provider's own timeout, plus slack, bounds every measurement: none hangs a run.
        let (limit, name) = if let Some(w) = &p.web {
            (web_timeout(w), "web")
        } else if let Some(q) = &p.prometheus {
            (prometheus_timeout(q), "prometheus")
        } else {
            (DEFAULT_WEB_TIMEOUT, "")
        };
        let limit = limit + Duration::from_secs(1);
        let fut = async {
            if p.web.is_some() {
                self.web.measure(metric, run).await
            } else if p.prometheus.is_some() {
                self.prometheus.measure(metric, run).await
            } else if p.shipway.is_some() {
                match &self.shipway {
                    Some(s) => s.measure(metric, run).await,
                    None => Err("the shipway provider needs Shipway's proxy, which is not running in this process".into()),
                }
            } else if p.job.is_some() {
                match &self.job {
                    Some(j) => j.measure_job(metric, run, &current).await,
                    None => Err("the job provider is not available in this process".into()),
                }
            } else if let Some(other) = p.rest.keys().next() {
                tracing::warn!(metric = %metric.name, provider = %other, "metric provider not supported");
                if UNSUPPORTED.contains(&other.as_str()) {
                    Err(format!(
                        "provider \"{other}\" is not supported by Shipway (supported: prometheus, web, job, shipway)"
                    ))
                } else {
                    Err(format!(
                        "unknown provider \"{other}\" (supported: prometheus, web, job, shipway)"
                    ))
                }
            } else {
                Err(format!("no valid provider in metric '{}'", metric.name))
            }
        };
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "{name} measurement timed out after {}s",
                limit.as_secs()
            )),
        }
    }
}

/// Argo's `EvaluateResult`: the conditions applied to `result`.
pub fn judge(metric: &Metric, result: &exprlang::Value) -> Result<Phase, String> {
    let conditions = Conditions::compile(
        metric.success_condition.as_deref(),
        metric.failure_condition.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    Ok(match conditions.assess(result)? {
        Assessment::Successful => Phase::Successful,
        Assessment::Failed => Phase::Failed,
        Assessment::Inconclusive => Phase::Inconclusive,
    })
}
