//! The metric providers against real local HTTP servers (an axum app answering as a web
//! endpoint and as Prometheus' query API), the proxy's own counters, and unsupported providers.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use shipway_controller::Clock;
use shipway_model::Object;
use shipway_model::types::{Measurement, Metric};
use shipway_proxy::metrics::ProxyMetrics;
use shipway_rollout::analysis::Task;
use shipway_rollout::analysis::provider::{Providers, json_path};

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn run() -> Object {
    serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": "r", "namespace": "shop", "uid": "u-1"},
    }))
    .unwrap()
}

fn metric(v: Value) -> Metric {
    serde_json::from_value(v).unwrap()
}

async fn measure(p: &Providers, m: Value) -> Measurement {
    let task = Task {
        index: 0,
        resume: false,
    };
    p.measure(&metric(m), &run(), task, None, false, &["s3cr3t".into()])
        .await
}

fn app() -> axum::Router {
    axum::Router::new()
        .route(
            "/health",
            get(|| async {
                Json(
                    json!({"data": {"ok": true, "rate": 0.99, "items": [{"ms": 12}, {"ms": 700}]}}),
                )
            }),
        )
        .route("/text", get(|| async { "ready" }))
        .route(
            "/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/echo",
            post(|headers: HeaderMap, body: String| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                Json(json!({"auth": auth, "contentType": ct, "body": body}))
            }),
        )
}

#[tokio::test]
async fn web_selects_a_json_path_and_judges_it() {
    let base = serve(app()).await;
    let p = Providers::new(Clock::new(), None);
    let m = measure(
        &p,
        json!({"name": "rate", "successCondition": "result >= 0.95",
        "provider": {"web": {"url": format!("{base}/health"), "jsonPath": "{$.data.rate}"}}}),
    )
    .await;
    assert_eq!(
        (m.phase.as_str(), m.value.as_str()),
        ("Successful", "0.99"),
        "{m:?}"
    );
    assert!(m.started_at.is_some() && m.finished_at.is_some());
    let m = measure(&p, json!({"name": "p", "successCondition": "result < 500",
        "provider": {"web": {"url": format!("{base}/health"), "jsonPath": "{$.data.items[1].ms}"}}})).await;
    assert_eq!((m.phase.as_str(), m.value.as_str()), ("Failed", "700"));
    let m = measure(
        &p,
        json!({"name": "b", "successCondition": "result == true",
        "provider": {"web": {"url": format!("{base}/health"), "jsonPath": "{.data.ok}"}}}),
    )
    .await;
    assert_eq!(m.phase, "Successful");
    // A body that is no JSON is the result as a string.
    let m = measure(
        &p,
        json!({"name": "t", "successCondition": "result == \"ready\"",
        "provider": {"web": {"url": format!("{base}/text")}}}),
    )
    .await;
    assert_eq!(
        (m.phase.as_str(), m.value.as_str()),
        ("Successful", "ready")
    );
}

#[tokio::test]
async fn web_posts_bodies_with_headers() {
    let base = serve(app()).await;
    let p = Providers::new(Clock::new(), None);
    let m = measure(&p, json!({"name": "e", "successCondition": "result.auth == \"Bearer t\" && result.contentType == \"application/json\"",
        "provider": {"web": {"url": format!("{base}/echo"), "method": "POST",
            "headers": [{"key": "Authorization", "value": "Bearer t"}],
            "jsonBody": {"a": 1}}}})).await;
    assert_eq!(m.phase, "Successful", "{m:?}");
    assert!(m.value.contains(r#""body":"{\"a\":1}""#), "{}", m.value);
    let m = measure(
        &p,
        json!({"name": "g", "provider": {"web": {"url": format!("{base}/echo"), "body": "x"}}}),
    )
    .await;
    assert_eq!(
        (m.phase.as_str(), m.message.as_str()),
        (
            "Error",
            "Body/JSONBody can only be used with POST or PUT WebMetric Method types"
        )
    );
}

#[tokio::test]
async fn web_errors_name_the_status_the_path_and_the_timeout() {
    let base = serve(app()).await;
    let p = Providers::new(Clock::new(), None);
    let m = measure(
        &p,
        json!({"name": "x", "provider": {"web": {"url": format!("{base}/broken")}}}),
    )
    .await;
    assert_eq!(
        (m.phase.as_str(), m.message.as_str()),
        ("Error", "received non 2xx response code: 500")
    );
    let m = measure(&p, json!({"name": "x", "provider": {"web": {"url": format!("{base}/health"), "jsonPath": "{$.data.nope}"}}})).await;
    assert_eq!(
        (m.phase.as_str(), m.message.as_str()),
        (
            "Error",
            "Could not find JSONPath in body: nope is not found"
        )
    );
    let started = std::time::Instant::now();
    let m = measure(&p, json!({"name": "x", "provider": {"web": {"url": format!("{base}/slow"), "timeoutSeconds": 1}}})).await;
    assert_eq!(m.phase, "Error");
    assert!(
        m.message.contains("Client.Timeout exceeded"),
        "{}",
        m.message
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // A condition that cannot evaluate is the measurement's Error, with Argo's words.
    let m = measure(
        &p,
        json!({"name": "x", "successCondition": "result.missing > 1",
        "provider": {"web": {"url": format!("{base}/health"), "jsonPath": "{$.data}"}}}),
    )
    .await;
    assert_eq!(m.phase, "Error");
    assert!(
        m.message.starts_with("could not evaluate successCondition"),
        "{}",
        m.message
    );
}

#[test]
fn json_path_subset() {
    let v = json!({"a": {"b": [1, {"c": "x"}]}, "k-1": 2});
    assert_eq!(json_path(&v, "{$.a.b[1].c}"), Ok(json!("x")));
    assert_eq!(json_path(&v, "{.a.b[-2]}"), Ok(json!(1)));
    assert_eq!(json_path(&v, "{$['k-1']}"), Ok(json!(2)));
    assert_eq!(json_path(&v, "{$}"), Ok(v.clone()));
    assert_eq!(
        json_path(&v, "{$.a.b[5]}"),
        Err("array index out of bounds".into())
    );
}

fn prometheus() -> axum::Router {
    axum::Router::new().route(
        "/api/v1/query",
        get(
            |Query(q): Query<std::collections::HashMap<String, String>>, headers: HeaderMap| async move {
                let query = q.get("query").cloned().unwrap_or_default();
                if headers.get("x-scope-orgid").is_none() {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"status": "error", "errorType": "unauthorized", "error": "no org id"})));
                }
                let body = match query.as_str() {
                    "vector" => json!({"status": "success", "data": {"resultType": "vector", "result": [
                        {"metric": {"backend": "canary"}, "value": [1700000000.0, "0.97"]},
                        {"metric": {"backend": "stable"}, "value": [1700000000.0, "0.5"]},
                    ]}}),
                    "scalar" => json!({"status": "success", "data": {"resultType": "scalar", "result": [1700000000.0, "42"]}}),
                    "empty" => json!({"status": "success", "data": {"resultType": "vector", "result": []}}),
                    // A ratio of two zero rates: Prometheus answers NaN.
                    "nan" => json!({"status": "success", "data": {"resultType": "vector", "result": [
                        {"metric": {}, "value": [1700000000.0, "NaN"]}]}}),
                    _ => return (StatusCode::BAD_REQUEST, Json(json!({"status": "error", "errorType": "bad_data",
                        "error": format!("invalid parameter \"query\": 1:1: parse error: unexpected identifier {query:?}")}))),
                };
                (StatusCode::OK, Json(body))
            },
        ),
    )
}

#[tokio::test]
async fn prometheus_instant_queries_vectors_scalars_empty_and_errors() {
    let base = serve(prometheus()).await;
    let p = Providers::new(Clock::new(), None);
    let q = |query: &str, cond: &str| {
        json!({"name": "q", "successCondition": cond, "provider": {"prometheus": {
            "address": base.clone(), "query": query, "headers": [{"key": "X-Scope-OrgID", "value": "1"}]}}})
    };
    let m = measure(&p, q("vector", "result[0] >= 0.95")).await;
    assert_eq!(
        (m.phase.as_str(), m.value.as_str()),
        ("Successful", "[0.97,0.5]"),
        "{m:?}"
    );
    let m = measure(&p, q("vector", "all(result, {# >= 0.95})")).await;
    assert_eq!(m.phase, "Failed");
    let m = measure(&p, q("scalar", "result == 42")).await;
    assert_eq!((m.phase.as_str(), m.value.as_str()), ("Successful", "42"));
    let m = measure(&p, q("empty", "len(result) == 0")).await;
    assert_eq!((m.phase.as_str(), m.value.as_str()), ("Successful", "[]"));
    // NaN stays a number for the conditions, as Argo's Go float does.
    let m = measure(&p, q("nan", "isNaN(result[0])")).await;
    assert_eq!(
        (m.phase.as_str(), m.value.as_str()),
        ("Successful", "[NaN]"),
        "{m:?}"
    );
    let m = measure(&p, q("nan", "result[0] >= 0.95")).await;
    assert_eq!(m.phase, "Failed", "NaN passes no threshold: {m:?}");
    let m = measure(&p, q("rate(", "true")).await;
    assert_eq!(m.phase, "Error");
    assert_eq!(
        m.message,
        "bad_data: invalid parameter \"query\": 1:1: parse error: unexpected identifier \"rate(\""
    );
    let m = measure(&p, json!({"name": "q", "provider": {"prometheus": {"address": base.clone(), "query": "vector"}}})).await;
    assert_eq!(
        (m.phase.as_str(), m.message.as_str()),
        ("Error", "unauthorized: no org id")
    );
}

#[tokio::test]
async fn shipway_reads_the_proxys_counters_and_too_little_traffic_is_inconclusive() {
    let metrics = ProxyMetrics::new();
    for i in 0..100 {
        let status = if i < 10 { 500 } else { 200 };
        metrics.record("shop/web", "canary", status, Duration::from_millis(20));
    }
    for _ in 0..5 {
        metrics.record("shop/web", "stable", 200, Duration::from_millis(20));
    }
    let p = Providers::new(Clock::new(), Some(metrics.clone()));
    let sw = |metric: &str, backend: &str, cond: &str| {
        json!({"name": "s", "successCondition": cond, "provider": {"shipway": {
            "service": "web", "backend": backend, "metric": metric}}})
    };
    let m = measure(&p, sw("success-rate", "canary", "result >= 0.95")).await;
    assert_eq!(
        (m.phase.as_str(), m.value.as_str()),
        ("Failed", "0.9"),
        "{m:?}"
    );
    let m = measure(&p, sw("error-rate", "canary", "result < 0.2")).await;
    assert_eq!(m.phase, "Successful", "{m:?}");
    let m = measure(&p, sw("latency-p95", "canary", "result < 0.5")).await;
    assert_eq!(m.phase, "Successful", "{m:?}");
    let m = measure(&p, sw("requests", "canary", "result == 100")).await;
    assert_eq!(m.phase, "Successful", "{m:?}");
    let m = measure(&p, sw("success-rate", "stable", "result >= 0.95")).await;
    assert_eq!(m.phase, "Inconclusive");
    assert_eq!(
        m.message,
        "5 requests to backend \"stable\" of service \"web\" in the last 30s, fewer than minRequests (20)"
    );
    let m = measure(&p, sw("throughput", "canary", "true")).await;
    assert_eq!(m.phase, "Error");
    // Without a proxy in the process the metric says so.
    let none = Providers::new(Clock::new(), None);
    let m = measure(&none, sw("success-rate", "canary", "true")).await;
    assert_eq!(m.phase, "Error");
    assert!(m.message.contains("proxy"), "{}", m.message);
}

#[tokio::test]
async fn unsupported_providers_are_errors_naming_them() {
    let p = Providers::new(Clock::new(), Some(Arc::new(ProxyMetrics::default())));
    let m = measure(
        &p,
        json!({"name": "d", "provider": {"datadog": {"query": "avg:x"}}}),
    )
    .await;
    assert_eq!(
        (m.phase.as_str(), m.message.as_str()),
        (
            "Error",
            "provider \"datadog\" is not supported by Shipway (supported: prometheus, web, job, shipway)"
        )
    );
    let m = measure(&p, json!({"name": "n", "provider": {"newRelic": {}}})).await;
    assert!(m.message.contains("\"newRelic\""), "{}", m.message);
}

#[tokio::test]
async fn secrets_are_redacted_from_messages() {
    let base = serve(app()).await;
    let p = Providers::new(Clock::new(), None);
    let m = measure(
        &p,
        json!({"name": "x", "successCondition": "result.s3cr3t > 1",
        "provider": {"web": {"url": format!("{base}/health"), "jsonPath": "{$.data}"}}}),
    )
    .await;
    assert_eq!(m.phase, "Error");
    assert!(
        !m.message.contains("s3cr3t") && m.message.contains("*****"),
        "{}",
        m.message
    );
}
