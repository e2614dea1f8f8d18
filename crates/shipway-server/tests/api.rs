//! The HTTP API, in process, on an ephemeral port over a real SQLite store.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shipway_app::{Config, Platform, ServiceError};
use shipway_server::{ADMIN_TOKEN_FILE, ListenerConfig, Role, routes};

struct TestServer {
    addr: SocketAddr,
    token: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServiceError>>>,
}

impl TestServer {
    async fn start() -> TestServer {
        TestServer::start_with(ListenerConfig::default()).await
    }

    async fn start_with(listener: ListenerConfig) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let server = Platform::start(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            database: None,
            proxy: Default::default(),
            listener,
            max_parallel_jobs: 0,
            runner_labels: Vec::new(),
        })
        .await
        .unwrap();
        let addr = server.local_addr();
        let token = std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE))
            .unwrap()
            .trim()
            .to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            token,
            http: reqwest::Client::new(),
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let code = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The `/metrics` text.
    async fn metrics(&self) -> String {
        let resp = self
            .http
            .get(self.url("/metrics"))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        resp.text().await.unwrap()
    }

    async fn apply(&self, object: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, "/api/v1/apply", Some(object))
            .await
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// A route's path with its parameters filled in.
fn concrete(template: &str) -> String {
    template
        .replace("{resource}", "deployments")
        .replace("{name}", "web")
        .replace("{namespace}", "default")
        .replace("{pod}", "web")
        .replace("{repo}", "apps.git")
        .replace("{workflow}", "ci.yml")
        .replace("{*rest}", "info/refs")
}

/// A ConfigMap: no controller acts on it, so every change a test sees is its own.
fn config_map(name: &str, value: i64) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": name}},
        "data": {"value": value.to_string()},
    })
}

#[tokio::test]
async fn every_route_but_health_needs_a_token() {
    let s = TestServer::start().await;
    let anonymous = reqwest::Client::new();
    for route in routes().into_iter().filter(|r| r.role.is_some()) {
        let path = concrete(route.path);
        let method: reqwest::Method = route.method.as_str().parse().unwrap();
        for auth in [
            None,
            Some("Bearer shipway_not_a_token"),
            Some("Basic YWRtaW46YWRtaW4="),
        ] {
            let mut req = anonymous.request(method.clone(), s.url(&path));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 401, "{method} {path} with {auth:?}");
            assert!(resp.headers().contains_key("www-authenticate"));
        }
    }
    // Unknown paths too, so anonymous callers cannot map the API.
    let resp = anonymous.get(s.url("/api/v1/nope")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    for open in ["/healthz", "/readyz"] {
        let resp = anonymous.get(s.url(open)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{open}");
    }
    let (code, _) = s.call(reqwest::Method::GET, "/api/v1/nope", None).await;
    assert_eq!(code, 404);
    s.stop().await;
}

#[tokio::test]
async fn anonymous_callers_get_one_and_the_same_401_for_everything() {
    let s = TestServer::start().await;
    let anonymous = reqwest::Client::new();
    let answer = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        let allow = resp.headers().get("allow").cloned();
        (status, allow, resp.text().await.unwrap())
    };
    let unknown = answer(anonymous.get(s.url("/api/v1/nope")).send().await.unwrap()).await;
    assert_eq!((unknown.0, &unknown.1), (401, &None), "{unknown:?}");
    // A known path with a method it does not allow, a method nothing allows, and the open
    // probes with a method they do not allow: none may say what would have worked.
    let mut cases = vec![
        ("PUT", "/api/v1/apply"),
        ("GET", "/api/v1/apply"),
        ("POST", "/api/v1/resources/deployments/web"),
        ("BREW", "/api/v1/version"),
        ("POST", "/healthz"),
        ("DELETE", "/readyz"),
    ];
    for route in routes() {
        cases.push(("PATCH", route.path));
    }
    for (method, path) in cases {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let got = answer(
            anonymous
                .request(method.clone(), s.url(path))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(got, unknown, "{method} {path}");
    }
    // With a token the caller may learn what the route allows.
    let resp = s
        .http
        .put(s.url("/api/v1/apply"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    s.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let s = TestServer::start().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let resp = reqwest::Client::new()
            .get(s.url("/api/v1/version"))
            .header("Authorization", format!("{scheme} {}", s.token))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{scheme}");
    }
    for wrong in [
        format!("Bearer{}", s.token),
        format!("Token {}", s.token),
        s.token.clone(),
    ] {
        let resp = reqwest::Client::new()
            .get(s.url("/api/v1/version"))
            .header("Authorization", wrong.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{wrong}");
    }
    s.stop().await;
}

#[tokio::test]
async fn unauthenticated_garbage_adds_no_metric_series() {
    let s = TestServer::start().await;
    let anonymous = reqwest::Client::new();
    // Unique, long methods and paths: each would be a series if labels came from the request.
    let filler = "X".repeat(2000);
    for i in 0..500 {
        let method = reqwest::Method::from_bytes(format!("M{i}{filler}").as_bytes()).unwrap();
        let resp = anonymous
            .request(method, s.url(&format!("/api/v1/{i}/{filler}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
    }
    // Authenticated requests to unknown paths stay bounded too.
    for i in 0..50 {
        let (code, _) = s
            .call(reqwest::Method::GET, &format!("/nope/{i}"), None)
            .await;
        assert_eq!(code, 404);
    }
    let text = s.metrics().await;
    let http: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("shipway_http_requests_total{"))
        .collect();
    assert!(
        http.contains(
            &r#"shipway_http_requests_total{method="other",route="unmatched",status="401"} 500"#
        ),
        "{http:#?}"
    );
    assert!(http.len() <= 5, "{http:#?}");
    assert!(!text.contains(&filler), "a request's text became a label");
    assert!(
        text.len() < 64 * 1024,
        "metrics grew to {} bytes",
        text.len()
    );
    s.stop().await;
}

#[tokio::test]
async fn apply_get_list_delete_round_trip() {
    let s = TestServer::start().await;
    let (code, body) = s.apply(config_map("web", 2)).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["outcome"], "created");
    assert_eq!(
        body["object"]["metadata"]["namespace"], "default",
        "namespaced kinds default to `default`"
    );
    let (code, body) = s.apply(config_map("web", 2)).await;
    assert_eq!((code, body["outcome"].as_str()), (200, Some("unchanged")));
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/apply?dryRun=true",
            Some(config_map("web", 3)),
        )
        .await;
    assert_eq!((code, body["outcome"].as_str()), (200, Some("configured")));
    let (_, got) = s
        .call(reqwest::Method::GET, "/api/v1/resources/cm/web", None)
        .await;
    assert_eq!(got["data"]["value"], "2", "a dry run writes nothing");

    s.apply(config_map("api", 1)).await;
    let (_, list) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/resources/configmaps?labelSelector=app%3Dapi",
            None,
        )
        .await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api"]);

    let (code, body) = s
        .call(
            reqwest::Method::DELETE,
            "/api/v1/resources/configmaps/web",
            None,
        )
        .await;
    assert_eq!((code, body["outcome"].as_str()), (200, Some("deleted")));
    let (code, body) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/resources/configmaps/web",
            None,
        )
        .await;
    assert_eq!(code, 404);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("ConfigMap/default/web not found"),
        "{body}"
    );

    let (_, events) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/events/configmaps?name=web",
            None,
        )
        .await;
    let actions: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["create", "delete"]);
    assert!(
        events["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "admin")
    );
    s.stop().await;
}

/// A merge patch changes what it names and keeps the rest; `?subresource=status` patches the
/// status only (what `kubectl argo rollouts abort` sends), and neither writes the other's half,
/// while the Rollout controller writes the same status.
#[tokio::test]
async fn patches_merge_into_the_desired_state_or_the_status() {
    let s = TestServer::start().await;
    let patch = |path: &'static str, body: Value| s.call(reqwest::Method::PATCH, path, Some(body));
    s.apply(config_map("web", 2)).await;
    let (code, got) = patch(
        "/api/v1/resources/cm/web",
        json!({"data": {"extra": "x"}, "metadata": {"labels": {"app": null, "tier": "a"}}}),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["data"], json!({"value": "2", "extra": "x"}));
    assert_eq!(got["metadata"]["labels"], json!({"tier": "a"}));

    let rollout = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "web:v1"}]}},
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
        },
    });
    let (code, body) = s.apply(rollout).await;
    assert_eq!(code, 201, "{body}");
    let (code, got) = patch(
        "/api/v1/resources/rollouts/web?subresource=status",
        json!({"status": {"abort": true, "pauseConditions": [{"reason": "CanaryPauseStep"}]}}),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["status"]["abort"], true);
    let generation = got["metadata"]["generation"].clone();
    let (code, got) = patch(
        "/api/v1/resources/rollouts/web?subresource=status",
        json!({"status": {"pauseConditions": null}}),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    // The Rollout controller writes this status too: the patch changed only what it named.
    assert_eq!(got["status"]["abort"], true, "{got}");
    assert!(got["status"].get("pauseConditions").is_none(), "{got}");
    assert_eq!(
        got["metadata"]["generation"], generation,
        "a status patch is no new spec"
    );
    // The desired state, through admission, with the status left as it was.
    let (code, got) = patch(
        "/api/v1/resources/ro/web",
        json!({"spec": {"paused": true}}),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["spec"]["paused"], true);
    assert_eq!(got["spec"]["replicas"], 1);
    assert_eq!(got["status"]["abort"], true, "{got}");
    s.apply(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "web:v1"}]}}}}),
    )
    .await;
    let (code, got) = patch(
        "/api/v1/resources/deploy/web",
        json!({"spec": {"selector": null}}),
    )
    .await;
    assert_eq!(
        code, 422,
        "admission refuses a bad patch as it refuses a bad apply: {got}"
    );
    assert!(
        got["message"]
            .as_str()
            .unwrap()
            .contains("spec.selector: Required value"),
        "{got}"
    );

    for (path, body, says) in [
        (
            "/api/v1/resources/ro/web",
            json!({"status": {"abort": false}}),
            "?subresource=status",
        ),
        (
            "/api/v1/resources/ro/web?subresource=status",
            json!({"spec": {"paused": false}}),
            "only `status`",
        ),
        (
            "/api/v1/resources/ro/web?subresource=scale",
            json!({}),
            "unknown subresource",
        ),
        (
            "/api/v1/resources/ro/web?subresource=status&dryRun=true",
            json!({"status": {}}),
            "no dry run",
        ),
        (
            "/api/v1/resources/ro/web",
            json!({"metadata": {"name": "other"}}),
            "metadata.name",
        ),
        ("/api/v1/resources/ro/web", json!([1]), "JSON object"),
    ] {
        let (code, got) = patch(path, body).await;
        assert_eq!(code, 400, "{path}: {got}");
        assert!(
            got["message"].as_str().unwrap().contains(says),
            "{path}: {got}"
        );
    }
    let (code, _) = patch(
        "/api/v1/resources/ro/nothing",
        json!({"spec": {"paused": true}}),
    )
    .await;
    assert_eq!(code, 404);
    s.stop().await;
}

#[tokio::test]
async fn bad_objects_are_rejected_with_reasons_and_nothing_is_stored() {
    let s = TestServer::start().await;
    let cases = [
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a/b"}}),
            "a/b",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ".."}}),
            "..",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ok", "labels": {"n": 5}}}),
            "labels",
        ),
        (
            json!({"apiVersion": "v1", "metadata": {"name": "ok"}}),
            "kind",
        ),
        (
            json!({"kind": "ConfigMap", "metadata": {"name": "ok"}}),
            "apiVersion",
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}}),
            "Deployment.apps \"web\" is invalid: spec.selector: Required value; spec.template: Required value",
        ),
    ];
    for (object, mentions) in cases {
        let (code, body) = s.apply(object.clone()).await;
        assert_eq!(code, 422, "{object} → {body}");
        assert!(
            body["message"].as_str().unwrap().contains(mentions),
            "{body} should mention {mentions}"
        );
    }
    let resp = reqwest::Client::new()
        .post(s.url("/api/v1/apply"))
        .bearer_auth(&s.token)
        .body(vec![b' '; 50 * 1024 * 1024])
        .send()
        .await;
    // The server may answer before reading the whole body, or close it; either way it refuses.
    if let Ok(resp) = resp {
        assert_eq!(resp.status().as_u16(), 400);
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("MiB limit"),
            "{body}"
        );
    }
    let (_, list) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/resources/configmaps?namespace=",
            None,
        )
        .await;
    assert_eq!(list["items"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version_over_http() {
    let s = TestServer::start().await;
    let (_, first) = s.apply(config_map("web", 1)).await;
    let rv: u64 = first["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for replicas in 2..=4 {
        s.apply(config_map("web", replicas)).await;
    }
    let resp = s
        .http
        .get(s.url(&format!("/api/v1/watch/configmaps?resourceVersion={rv}")))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    use futures_util::StreamExt;
    while buf.lines().count() < 3 {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let events: Vec<Value> = buf
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let values: Vec<i64> = events
        .iter()
        .map(|e| {
            e["object"]["data"]["value"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        })
        .collect();
    assert_eq!(values, [2, 3, 4]);
    assert!(events.iter().all(|e| e["type"] == "MODIFIED"));
    drop(stream);
    // Shutdown ends open watch streams instead of waiting for them forever.
    s.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_and_store_operations() {
    let s = TestServer::start().await;
    s.apply(config_map("web", 1)).await;
    let text = s.metrics().await;
    assert!(
        text.contains(
            r#"shipway_http_requests_total{method="POST",route="/api/v1/apply",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("shipway_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("shipway_store_operations_total"), "{text}");
    s.stop().await;
}

/// A free loopback address (bound, then released).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_gets_a_proxy_listener_and_its_traffic_is_in_the_metrics() {
    let s = TestServer::start().await;
    // An upstream standing in for a pod; a Service without a selector takes its Endpoints as
    // written, as in Kubernetes.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    tokio::spawn(async move {
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello\n" }));
        axum::serve(upstream, app).await.unwrap();
    });
    let listen = free_addr();
    let (code, body) = s
        .apply(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "annotations": {"shipway.dev/listen": listen.to_string()}},
                "spec": {"ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 81}]}}),
        )
        .await;
    assert!(code < 300, "{code} {body}");
    let (code, body) = s
        .apply(json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": upstream_port}]}]}),
        )
        .await;
    assert!(code < 300, "{code} {body}");
    // The Service's status shows where it listens; the second port got an address of its own.
    let mut status = Value::Null;
    for _ in 0..100 {
        status = s
            .call(reqwest::Method::GET, "/api/v1/resources/services/web", None)
            .await
            .1["status"]
            .clone();
        if status["address"] == listen.to_string() && status["ports"][1]["listen"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status["address"], listen.to_string(), "{status}");
    assert_eq!(
        status["ports"][0],
        json!({"name": "http", "port": 80, "listen": listen.to_string()})
    );
    assert_ne!(status["ports"][1]["listen"], status["ports"][0]["listen"]);
    let mut answer = String::new();
    for _ in 0..100 {
        if let Ok(r) = s.http.get(format!("http://{listen}/")).send().await
            && r.status() == 200
        {
            answer = r.text().await.unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(answer, "hello\n");
    // The request is counted as its exchange ends, which may be just after the client has read
    // the answer.
    let counted = r#"shipway_proxy_requests_total{service="default/web",backend="default",code_class="2xx"} 1"#;
    shipway_testkit::eventually(
        std::time::Duration::from_secs(10),
        "the request in the metrics",
        || async { s.metrics().await.contains(counted) },
    )
    .await;
    // Policies are validated at apply.
    let (code, body) = s
        .apply(json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "TrafficPolicy", "metadata": {"name": "web"},
                "spec": {"backends": [{"name": "stable", "weight": 90}]}}),
        )
        .await;
    assert!(code >= 400, "{code} {body}");
    assert!(
        body.to_string().contains("weights sum to 90, expected 100"),
        "{body}"
    );
    s.stop().await;
}

/// One admission path: what the API refuses, a write through the runtime (the seam GitOps and
/// the Rollout controller write through) refuses too, with the same problems.
#[tokio::test]
async fn a_runtime_write_is_refused_by_admission_exactly_as_the_api_refuses_it() {
    use shipway_runtime::Runtime as _;
    let policy = json!({
        "apiVersion": "shipway.dev/v1alpha1", "kind": "TrafficPolicy",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"backends": [
            {"name": "stable", "selector": {"matchLabels": {"pod-template-hash": "a"}}, "weight": 70},
            {"name": "canary", "selector": {"matchLabels": {"pod-template-hash": "b"}}, "weight": 20},
        ]},
    });
    let server = TestServer::start().await;
    let (code, status) = server.apply(policy.clone()).await;
    assert_eq!(code, 422, "{status}");
    let api_problems: Vec<String> =
        serde_json::from_value(status["details"].clone()).unwrap_or_default();
    assert_eq!(
        api_problems,
        ["spec.backends: Invalid value: weights sum to 90, expected 100"],
        "{status}"
    );
    server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let store = shipway_store::Store::open_sqlite(&dir.path().join("shipway.db"))
        .await
        .unwrap();
    let runtime = shipway_runtime::StoreRuntime::new(store.clone(), dir.path());
    let refused = runtime
        .apply(
            serde_json::from_value(policy).unwrap(),
            shipway_runtime::ApplyOptions::by(shipway_model::Actor::component(
                "controller:rollout",
            )),
        )
        .await
        .expect_err("refused by admission");
    assert_eq!(refused.kind, shipway_runtime::RuntimeErrorKind::Invalid);
    assert_eq!(refused.details, api_problems);
    assert!(
        store
            .list(&shipway_store::ListQuery::kind(
                "shipway.dev",
                "TrafficPolicy"
            ))
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing was stored"
    );
}

/// Kinds are known or refused, as Kubernetes does: a typo is refused with the nearest kind, and a
/// custom kind works once its CustomResourceDefinition is applied.
#[tokio::test]
async fn unknown_kinds_are_refused_until_a_crd_defines_them() {
    let server = TestServer::start().await;
    let (code, status) = server
        .apply(json!({"apiVersion": "apps/v1", "kind": "Deploymnt", "metadata": {"name": "web"}}))
        .await;
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"].as_str().unwrap_or_default().contains(
            "no matches for kind \"Deploymnt\" in version \"apps/v1\" (did you mean \"Deployment\"?)"
        ),
        "{status}"
    );
    let (code, status) = server
        .call(reqwest::Method::GET, "/api/v1/resources/deploymnt", None)
        .await;
    assert_eq!(code, 404, "{status}");
    assert_eq!(
        status["message"],
        "the server doesn't have a resource type \"deploymnt\" (did you mean \"deployments\"?); types are built in or defined by a CustomResourceDefinition (`shipway get crd`)"
    );

    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}});
    let (code, _) = server.apply(widget.clone()).await;
    assert_eq!(code, 422, "no CRD yet");
    let (code, status) = server
        .apply(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
        }))
        .await;
    assert_eq!(code, 201, "{status}");
    let (code, status) = server.apply(widget).await;
    assert_eq!(code, 201, "{status}");
    for name in ["widgets", "wd", "Widget.example.com"] {
        let (code, list) = server
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/resources/{name}"),
                None,
            )
            .await;
        assert_eq!(code, 200, "{name}: {list}");
        assert_eq!(list["items"][0]["metadata"]["name"], "w", "{name}");
    }
    // A cluster-scoped custom kind is stored and read without a namespace.
    let (code, status) = server
        .apply(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "fleets.example.com"},
            "spec": {"group": "example.com", "scope": "Cluster",
                     "names": {"kind": "Fleet", "plural": "fleets"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]},
        }))
        .await;
    assert_eq!(code, 201, "{status}");
    let (code, status) = server
        .apply(
            json!({"apiVersion": "example.com/v1", "kind": "Fleet", "metadata": {"name": "all"}}),
        )
        .await;
    assert_eq!(code, 201, "{status}");
    let (code, fleet) = server
        .call(reqwest::Method::GET, "/api/v1/resources/fleets/all", None)
        .await;
    assert_eq!(code, 200, "{fleet}");
    assert_eq!(fleet["metadata"]["name"], "all", "{fleet}");
    assert_eq!(fleet["metadata"].get("namespace"), None, "{fleet}");
    let (code, status) = server
        .apply(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "gadgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"kind": "Gadget", "plural": "gadgets"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "map"}}}}}]},
        }))
        .await;
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"].as_str().unwrap_or_default().contains(
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Unsupported value: \"map\""
        ),
        "{status}"
    );
    server.stop().await;
}

/// Reads until the server closes `conn`, within `within`; the bytes it sent.
async fn closed_by_server(conn: &mut tokio::net::TcpStream, within: Duration) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    got
}

async fn send(conn: &mut tokio::net::TcpStream, bytes: &str) {
    use tokio::io::AsyncWriteExt;
    conn.write_all(bytes.as_bytes()).await.unwrap();
}

fn limits(header: u64, idle: u64, max_connections: usize) -> ListenerConfig {
    ListenerConfig {
        header_read_timeout: Duration::from_millis(header),
        idle_timeout: Duration::from_millis(idle),
        max_connections,
        ..ListenerConfig::default()
    }
}

#[tokio::test]
async fn a_client_that_sends_half_a_head_is_cut_off_after_the_header_timeout() {
    let s = TestServer::start_with(limits(200, 30_000, 16)).await;
    let mut idle = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    send(&mut slow, "GET /healthz HTTP/1.1\r\nHost: shipway\r\n").await;
    closed_by_server(&mut slow, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    // A connection that has not begun a request is on the idle timeout, not the header one.
    send(
        &mut idle,
        "GET /healthz HTTP/1.1\r\nHost: shipway\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answer = closed_by_server(&mut idle, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    s.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let s = TestServer::start_with(limits(30_000, 300, 16)).await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    send(&mut conn, "GET /healthz HTTP/1.1\r\nHost: shipway\r\n\r\n").await;
    let started = Instant::now();
    let answer = closed_by_server(&mut conn, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    s.stop().await;
}

#[tokio::test]
async fn stalled_connections_beyond_the_limit_wait_and_health_answers_once_they_are_cut() {
    let s = TestServer::start_with(limits(200, 400, 4)).await;
    let mut stalled = Vec::new();
    for i in 0..8 {
        let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        if i % 2 == 0 {
            send(&mut conn, "GET /api/v1/version HTTP/1.1\r\nHost: ").await;
        }
        stalled.push(conn);
    }
    let started = Instant::now();
    let mut probe = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    send(
        &mut probe,
        "GET /healthz HTTP/1.1\r\nHost: shipway\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answer = closed_by_server(&mut probe, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The probe waited in the accept queue until stalled connections had been cut.
    assert!(started.elapsed() >= Duration::from_millis(200));
    for conn in &mut stalled {
        closed_by_server(conn, Duration::from_secs(5)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn a_watch_stream_outlives_the_idle_and_header_timeouts() {
    let s = TestServer::start_with(limits(100, 200, 16)).await;
    let resp = s
        .http
        .get(s.url("/api/v1/watch/configmaps"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut stream = resp.bytes_stream();
    // What is checked is an absence (the stream is not cut while quiet), so it takes waiting
    // well past both timeouts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let applied = reqwest::Client::new()
        .post(s.url("/api/v1/apply"))
        .bearer_auth(&s.token)
        .json(&config_map("web", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(applied.status().as_u16(), 201);
    use futures_util::StreamExt;
    let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event")
        .expect("the stream is open")
        .unwrap();
    let event: Value = serde_json::from_slice(&chunk).unwrap();
    assert_eq!(event["type"], "ADDED", "{event}");
    drop(stream);
    s.stop().await;
}

/// Every controller of the runtime, the garbage collector and the proxy's discovery read one
/// shared cache: a write costs the store one change-log read, not one per reader.
#[tokio::test]
async fn the_whole_server_reads_the_change_log_once_per_write() {
    let server = TestServer::start().await;
    let reads = |text: &str| -> u64 {
        text.lines()
            .filter(|l| {
                l.starts_with("shipway_store_operations_total{") && l.contains("op=\"watch_read\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    // Let start-up settle (the first list and watch).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = reads(&server.metrics().await);
    let writes = 30;
    for i in 0..writes {
        let (code, status) = server.apply(config_map(&format!("c{i}"), i)).await;
        assert_eq!(code, 201, "{status}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = reads(&server.metrics().await);
    // Seven independent watches (five controllers, the collector, discovery) read it at least
    // seven times per write before the shared cache.
    assert!(
        after - before <= writes as u64 + 2,
        "{} change-log reads for {writes} writes",
        after - before
    );
    println!("{} change-log reads for {writes} writes", after - before);
    server.stop().await;
}

impl TestServer {
    /// A new token of `role`, issued through the admin-only API.
    async fn token(&self, name: &str, role: &str) -> String {
        let (code, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": name, "role": role})),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// The status of `method path` sent with `token` (the body is not read: watches stream).
    async fn status_as(
        &self,
        token: &str,
        method: &reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Option<Value>) {
        let mut req = self
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let code = resp.status().as_u16();
        let status = if code == 403 {
            resp.json().await.ok()
        } else {
            None
        };
        (code, status)
    }
}

/// Each role against each route of the route table: allowed exactly when the role is at least
/// the route's (a 403 otherwise, with reason Forbidden), and never a 401 for a valid token.
#[tokio::test]
async fn each_role_may_call_exactly_the_routes_its_role_allows() {
    let s = TestServer::start().await;
    let tokens = [
        (Role::Viewer, s.token("view", "viewer").await),
        (Role::Deployer, s.token("deploy", "deployer").await),
        (Role::Admin, s.token.clone()),
    ];
    let mut table = Vec::new();
    for route in routes().into_iter().filter(|r| r.role.is_some()) {
        let method: reqwest::Method = route.method.as_str().parse().unwrap();
        for (role, token) in &tokens {
            let body = match route.path {
                "/api/v1/apply" => Some(config_map(&format!("by-{role}"), 1)),
                "/api/v1/tokens" => Some(json!({"name": format!("new-{role}"), "role": "viewer"})),
                "/api/v1/users" => Some(json!({"name": format!("user-{role}"), "role": "viewer"})),
                _ => None,
            };
            let (code, status) = s
                .status_as(token, &method, &concrete(route.path), body)
                .await;
            let allowed = *role >= route.role.unwrap();
            table.push(format!(
                "{role:<8} {method:<6} {:<40} {}",
                route.path,
                if allowed { "allowed" } else { "forbidden" }
            ));
            if allowed {
                assert!(
                    code != 403 && code != 401,
                    "{role} {method} {}: {code}",
                    route.path
                );
            } else {
                assert_eq!(code, 403, "{role} {method} {}", route.path);
                assert_eq!(status.unwrap()["reason"], "Forbidden");
            }
        }
    }
    // The classes, spelled out once: reads for everyone, writes from deployer, users and tokens for admin.
    let forbidden: Vec<&String> = table.iter().filter(|l| l.ends_with("forbidden")).collect();
    let forbidden: Vec<String> = forbidden
        .iter()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        forbidden,
        [
            "viewer POST /api/v1/apply",
            "viewer DELETE /api/v1/resources/{resource}/{name}",
            "viewer PATCH /api/v1/resources/{resource}/{name}",
            "viewer POST /api/v1/runs/{namespace}/{name}/reviews",
            "viewer POST /api/v1/repos/{repo}/workflows/{workflow}/dispatches",
            "viewer GET /api/v1/tokens",
            "deployer GET /api/v1/tokens",
            "viewer POST /api/v1/tokens",
            "deployer POST /api/v1/tokens",
            "viewer DELETE /api/v1/tokens/{name}",
            "deployer DELETE /api/v1/tokens/{name}",
            "viewer GET /api/v1/users",
            "deployer GET /api/v1/users",
            "viewer POST /api/v1/users",
            "deployer POST /api/v1/users",
            "viewer DELETE /api/v1/users/{name}",
            "deployer DELETE /api/v1/users/{name}",
            "viewer PUT /api/v1/secrets/{name}",
            "deployer PUT /api/v1/secrets/{name}",
            "viewer DELETE /api/v1/secrets/{name}",
            "deployer DELETE /api/v1/secrets/{name}",
            "viewer PUT /api/v1/variables/{name}",
            "deployer PUT /api/v1/variables/{name}",
            "viewer DELETE /api/v1/variables/{name}",
            "deployer DELETE /api/v1/variables/{name}",
        ],
        "{table:#?}"
    );
    s.stop().await;
}

/// A bad token is a 401; a good token without the role is a 403 that says who could not do what
/// where and why, in Kubernetes' words, and the refused write is in the object's events.
#[tokio::test]
async fn a_refusal_is_a_403_naming_the_token_verb_resource_and_namespace_and_is_audited() {
    let s = TestServer::start().await;
    let ci = s.token("ci", "viewer").await;
    let delete = reqwest::Method::DELETE;
    let path = "/api/v1/resources/deployments/web?namespace=default";
    assert_eq!(
        s.status_as("shipway_nope", &delete, path, None).await.0,
        401
    );
    let (code, status) = s.status_as(&ci, &delete, path, None).await;
    assert_eq!(code, 403);
    assert_eq!(
        status.unwrap()["message"],
        r#"user "ci" cannot delete resource "deployments" in namespace "default": role viewer may only read; this needs the deployer role"#
    );
    let (code, status) = s
        .status_as(
            &ci,
            &reqwest::Method::POST,
            "/api/v1/apply",
            Some(config_map("cm", 1)),
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        status.unwrap()["message"],
        r#"user "ci" cannot apply resource "configmaps" in namespace "default": role viewer may only read; this needs the deployer role"#
    );
    let deployer = s.token("cd", "deployer").await;
    let (_, status) = s
        .status_as(&deployer, &reqwest::Method::GET, "/api/v1/tokens", None)
        .await;
    assert_eq!(
        status.unwrap()["message"],
        r#"user "cd" cannot list resource "tokens": role deployer may read, apply and delete objects, sync, approve and promote, not manage users, tokens or secrets; this needs the admin role"#
    );
    let (code, events) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/events/deployments?namespace=default&name=web",
            None,
        )
        .await;
    assert_eq!(code, 200);
    let refused: Vec<(&str, &str)> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(refused, [("ci", "Forbidden")]);
    s.stop().await;
}

/// Tokens issued through the API work at once, are listed without secrets, and stop working
/// the moment they are deleted.
#[tokio::test]
async fn tokens_are_created_listed_and_revoked_by_an_admin() {
    let s = TestServer::start().await;
    let ci = s.token("ci", "deployer").await;
    let get = reqwest::Method::GET;
    assert_eq!(s.status_as(&ci, &get, "/api/v1/version", None).await.0, 200);
    let (code, list) = s.call(get.clone(), "/api/v1/tokens", None).await;
    assert_eq!(code, 200);
    assert_eq!(
        list["items"],
        json!([
            {"name": "admin", "user": "admin", "role": "admin", "expired": false},
            {"name": "ci", "user": "ci", "role": "deployer", "expired": false}
        ])
    );
    assert!(!list.to_string().contains(&ci));
    let (code, again) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "ci", "role": "viewer"})),
        )
        .await;
    assert_eq!(
        (code, again["reason"].as_str()),
        (409, Some("AlreadyExists")),
        "{again}"
    );
    let (code, bad) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "x", "role": "root"})),
        )
        .await;
    assert_eq!(code, 422, "{bad}");
    assert_eq!(
        bad["message"],
        r#"tokens "x" is invalid: role: Unsupported value: "root": supported values: "viewer", "deployer", "admin""#
    );
    let (code, _) = s
        .call(reqwest::Method::DELETE, "/api/v1/tokens/ci", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(s.status_as(&ci, &get, "/api/v1/version", None).await.0, 401);
    let (code, _) = s
        .call(reqwest::Method::DELETE, "/api/v1/tokens/admin", None)
        .await;
    assert_eq!(
        code, 422,
        "the admin token is rotated through its file, not deleted"
    );
    s.stop().await;
}

/// `?limit=&continue=` as Kubernetes: `metadata.continue` and `remainingItemCount` until the last
/// page, whose items complete the unpaged list; a garbled token is a 400 in Kubernetes' words.
#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    let s = TestServer::start().await;
    for i in 0..5 {
        s.apply(config_map(&format!("cm-{i}"), i)).await;
    }
    let get = reqwest::Method::GET;
    let (_, whole) = s
        .call(get.clone(), "/api/v1/resources/configmaps", None)
        .await;
    let mut items = Vec::new();
    let mut shape = Vec::new();
    let mut path = "/api/v1/resources/configmaps?limit=2".to_string();
    loop {
        let (code, page) = s.call(get.clone(), &path, None).await;
        assert_eq!(code, 200, "{page}");
        items.extend(page["items"].as_array().unwrap().clone());
        shape.push(page["metadata"]["remainingItemCount"].as_u64());
        match page["metadata"]["continue"].as_str() {
            Some(token) => path = format!("/api/v1/resources/configmaps?limit=2&continue={token}"),
            None => break,
        }
    }
    assert_eq!(shape, [Some(3), Some(1), None]);
    assert_eq!(Value::Array(items), whole["items"]);
    let (code, bad) = s
        .call(
            get,
            "/api/v1/resources/configmaps?limit=2&continue=garbage!",
            None,
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid continue token: continue key is not valid: "),
        "{bad}"
    );
    s.stop().await;
}

/// `POST /api/v1/webhooks/git` carries no token: GitHub's HMAC and GitLab's token are checked
/// against the webhook secret of the Repository the payload names, and anything else is one
/// 401 that says what to set up.
#[tokio::test]
async fn git_webhooks_are_verified_by_their_signature() {
    use hmac::{KeyInit, Mac};
    let s = TestServer::start().await;
    for obj in [
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook"}, "stringData": {"secret": "s3cret"}}),
        json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "Repository", "metadata": {"name": "upstream"},
               "spec": {"url": "https://github.com/acme/site.git", "webhookSecretRef": {"name": "hook"}}}),
        json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "Repository", "metadata": {"name": "open"},
               "spec": {"url": "https://github.com/acme/open.git"}}),
    ] {
        let (code, body) = s
            .call(reqwest::Method::POST, "/api/v1/apply", Some(obj))
            .await;
        assert_eq!(code, 201, "{body}");
    }
    let payload = |repo: &str, after: &str| {
        json!({"ref": "refs/heads/main", "after": after,
               "repository": {"html_url": format!("https://github.com/{repo}"), "clone_url": format!("https://github.com/{repo}.git")}})
        .to_string()
    };
    let sign = |secret: &[u8], body: &str| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(body.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let anonymous = reqwest::Client::new();
    let deliver = |headers: Vec<(&'static str, String)>, body: String| {
        let mut req = anonymous
            .post(s.url("/api/v1/webhooks/git"))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let resp = req.send().await.unwrap();
            let code = resp.status().as_u16();
            (code, resp.json::<Value>().await.unwrap_or_default())
        }
    };
    let body = payload("acme/site", "1111111111111111111111111111111111111111");
    let (code, got) = deliver(
        vec![
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", sign(b"s3cret", &body)),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["repositories"], json!(["default/upstream"]));
    let (_, repo) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/resources/repositories/upstream",
            None,
        )
        .await;
    assert_eq!(
        repo["status"]["lastWebhook"],
        json!({"provider": "GitHub", "event": "push", "ref": "refs/heads/main", "revision": "1111111111111111111111111111111111111111"})
    );
    let (_, events) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/events?for=repository/upstream",
            None,
        )
        .await;
    assert!(events.to_string().contains("WebhookReceived"), "{events}");

    // GitLab sends its token as is.
    let body = payload("acme/site", "2222222222222222222222222222222222222222");
    let (code, got) = deliver(
        vec![
            ("X-Gitlab-Event", "Push Hook".into()),
            ("X-Gitlab-Token", "s3cret".into()),
        ],
        body,
    )
    .await;
    assert_eq!(code, 200, "{got}");

    // Refused alike: a wrong secret, a body changed after signing, no signature, a repository
    // without a webhook secret, a repository Shipway does not know.
    let body = payload("acme/site", "3333333333333333333333333333333333333333");
    let good = sign(b"s3cret", &body);
    for (headers, body) in [
        (
            vec![("X-Hub-Signature-256", sign(b"guess", &body))],
            body.clone(),
        ),
        (
            vec![("X-Hub-Signature-256", good.clone())],
            body.replace("3333", "4444"),
        ),
        (vec![("X-Gitlab-Token", "s3cre".into())], body.clone()),
        (vec![], body.clone()),
        (
            vec![(
                "X-Hub-Signature-256",
                sign(b"s3cret", &payload("acme/open", "5")),
            )],
            payload("acme/open", "5"),
        ),
        (
            vec![(
                "X-Hub-Signature-256",
                sign(b"s3cret", &payload("acme/other", "6")),
            )],
            payload("acme/other", "6"),
        ),
    ] {
        let (code, got) = deliver(headers.clone(), body).await;
        assert_eq!(code, 401, "{headers:?}: {got}");
        assert_eq!(got["reason"], "Unauthorized");
    }
    let (_, repo) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/resources/repositories/upstream",
            None,
        )
        .await;
    assert_eq!(
        repo["status"]["lastWebhook"]["revision"],
        "2222222222222222222222222222222222222222"
    );
    // The route takes no other method without a token.
    let resp = anonymous
        .get(s.url("/api/v1/webhooks/git"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    s.stop().await;
}

/// Every byte of every file under `dir` (the SQLite database, its WAL, the key file...), as text.
fn everything_under(dir: &std::path::Path) -> String {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.extend(bytes);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Pipeline secrets: admins set and delete them, viewers see names and times only, the value
/// is in no response, no event and no file of the data directory; variables show their values.
#[tokio::test]
async fn pipeline_secrets_are_write_only_and_sealed_and_variables_readable() {
    let s = TestServer::start().await;
    let viewer = s.token("view", "viewer").await;
    let plain = "pw-7d1e-never-shown";
    let mut seen = String::new();
    let put = reqwest::Method::PUT;
    let (code, body) = s
        .call(
            put.clone(),
            "/api/v1/secrets/db_password?repo=shop",
            Some(json!({"value": plain})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["name"], "DB_PASSWORD");
    assert_eq!(body["repo"], "shop");
    assert!(body.get("value").is_none(), "{body}");
    seen.push_str(&body.to_string());
    let (code, _) = s
        .status_as(
            &viewer,
            &put,
            "/api/v1/secrets/other",
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(code, 403);

    let resp = s
        .http
        .get(s.url("/api/v1/secrets"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let list: Value = resp.json().await.unwrap();
    assert_eq!(list["kind"], "SecretList");
    assert_eq!(list["items"][0]["name"], "DB_PASSWORD");
    assert_eq!(list["items"][0]["updatedBy"], "admin");
    assert!(list["items"][0]["updatedAt"].is_string());
    seen.push_str(&list.to_string());
    let (_, none) = s
        .call(reqwest::Method::GET, "/api/v1/secrets?repo=other", None)
        .await;
    assert_eq!(none["items"], json!([]));

    let (code, bad) = s
        .call(
            put.clone(),
            "/api/v1/secrets/9lives",
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(code, 422, "{bad}");
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .contains("starts with a digit"),
        "{bad}"
    );
    let (code, bad) = s.call(put.clone(), "/api/v1/secrets/x", None).await;
    assert_eq!(code, 400, "{bad}");
    assert!(
        bad["message"].as_str().unwrap().contains("\"value\""),
        "{bad}"
    );

    // Variables are not secret: their values come back.
    let (code, var) = s
        .call(
            put,
            "/api/v1/variables/region?env=prod",
            Some(json!({"value": "eu-west"})),
        )
        .await;
    assert_eq!((code, &var["value"]), (200, &json!("eu-west")), "{var}");
    let (_, var) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/variables/REGION?env=prod",
            None,
        )
        .await;
    assert_eq!(var["value"], "eu-west");
    let (code, _) = s
        .call(reqwest::Method::GET, "/api/v1/variables/REGION", None)
        .await;
    assert_eq!(code, 404, "a variable is looked up in the scope named");

    let (code, gone) = s
        .call(
            reqwest::Method::DELETE,
            "/api/v1/secrets/DB_PASSWORD?repo=shop",
            None,
        )
        .await;
    assert_eq!(code, 200, "{gone}");
    let (code, _) = s
        .call(
            reqwest::Method::DELETE,
            "/api/v1/secrets/DB_PASSWORD?repo=shop",
            None,
        )
        .await;
    assert_eq!(code, 404);
    let (_, events) = s.call(reqwest::Method::GET, "/api/v1/events", None).await;
    let text = events.to_string();
    assert!(
        text.contains("secret DB_PASSWORD created in repository shop"),
        "{text}"
    );
    assert!(
        text.contains("secret DB_PASSWORD deleted from repository shop"),
        "{text}"
    );
    seen.push_str(&text);
    assert!(!seen.contains(plain), "a response carried the value");
    assert!(!everything_under(s._dir.path()).contains(plain));
    s.stop().await;
}

/// A Kubernetes Secret applied with stringData reads back as Kubernetes shows it (base64
/// `data`), while no file of the data directory holds its value, plain or base64.
#[tokio::test]
async fn kubernetes_secrets_read_back_as_written_and_are_sealed_on_disk() {
    use base64::Engine as _;
    let s = TestServer::start().await;
    let plain = "k8s-secret-2b9c-plaintext";
    let b64 = base64::engine::general_purpose::STANDARD.encode(plain);
    let (code, body) = s
        .apply(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db"},
            "stringData": {"password": plain},
        }))
        .await;
    assert!(code == 200 || code == 201, "{code} {body}");
    let (code, got) = s
        .call(reqwest::Method::GET, "/api/v1/resources/secrets/db", None)
        .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["data"]["password"], json!(b64));
    let dump = everything_under(s._dir.path());
    assert!(!dump.contains(plain));
    assert!(!dump.contains(&b64));
    s.stop().await;
}
