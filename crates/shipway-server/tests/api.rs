//! The HTTP API, in process, on an ephemeral port over a real SQLite store.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shipway_server::{ADMIN_TOKEN_FILE, Config, ListenerConfig, ROUTES, Server};

struct TestServer {
    addr: SocketAddr,
    token: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    async fn start() -> TestServer {
        TestServer::start_with(ListenerConfig::default()).await
    }

    async fn start_with(listener: ListenerConfig) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            database: None,
            proxy: Default::default(),
            listener,
        })
        .await
        .unwrap();
        let addr = server.local_addr();
        let token = std::fs::read_to_string(dir.path().join(ADMIN_TOKEN_FILE))
            .unwrap()
            .trim()
            .to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(server.serve(async {
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
    for (method, route) in ROUTES {
        let path = route
            .replace("{resource}", "deployments")
            .replace("{name}", "web");
        let method: reqwest::Method = method.parse().unwrap();
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
    for (_, route) in ROUTES {
        cases.push(("PATCH", route));
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
    let text = s.metrics().await;
    assert!(
        text.contains(r#"shipway_proxy_requests_total{service="default/web",backend="default",code_class="2xx"} 1"#),
        "{text}"
    );
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
    let runtime = shipway_runtime::StoreRuntime {
        store: store.clone(),
    };
    let refused = runtime
        .apply(
            serde_json::from_value(policy).unwrap(),
            "controller:rollout",
        )
        .await
        .expect_err("refused by admission");
    match refused {
        shipway_store::StoreError::Invalid { message, .. } => {
            assert_eq!(message.split("; ").collect::<Vec<_>>(), api_problems)
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
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

/// Lists page as Kubernetes' do: `limit` and `continue`, `metadata.continue` and
/// `remainingItemCount` while a page follows; the pages together are the whole list, a write
/// between pages neither repeats nor loses what existed before, and a garbled token is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_with_limit_and_continue() {
    let s = TestServer::start().await;
    for i in 0..120 {
        let (code, body) = s.apply(config_map(&format!("cm-{i:03}"), i)).await;
        assert_eq!(code, 201, "{body}");
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, whole) = s
        .call(reqwest::Method::GET, "/api/v1/resources/configmaps", None)
        .await;
    assert!(
        whole["metadata"].get("continue").is_none(),
        "{}",
        whole["metadata"]
    );
    let mut paged = Vec::new();
    let mut path = "/api/v1/resources/configmaps?limit=50".to_string();
    let mut pages = 0;
    loop {
        let (code, page) = s.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(code, 200, "{page}");
        pages += 1;
        paged.extend(names(&page));
        if pages == 1 {
            assert_eq!(page["metadata"]["remainingItemCount"], 70);
            // Written between pages: an object before the cursor and one after it.
            s.apply(config_map("cm-000", 999)).await;
            s.apply(config_map("cm-119", 999)).await;
        }
        match page["metadata"]["continue"].as_str() {
            Some(token) => path = format!("/api/v1/resources/configmaps?limit=50&continue={token}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, names(&whole), "every object once, in order");
    let (code, body) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/resources/configmaps?limit=50&continue=garbled",
            None,
        )
        .await;
    assert_eq!(code, 400, "{body}");
    s.stop().await;
}
