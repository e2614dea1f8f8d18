//! The proxy end to end over loopback: real listeners, in-test upstream servers, tables pushed
//! through the watch channel as discovery would.

mod testutil;

use std::time::{Duration, Instant};

use shipway_proxy::ProxyConfig;
use shipway_proxy::table::{MatchSpec, RuleSpec};
use shipway_testkit::eventually;
use testutil::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A bound for a broken build, not a measure.
const WAIT: Duration = Duration::from_secs(30);

fn share(counts: &std::collections::HashMap<String, usize>, name: &str, total: usize) -> f64 {
    *counts.get(name).unwrap_or(&0) as f64 * 100.0 / total as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_are_honoured_within_two_points_over_10000_requests() {
    let (s1, s2, c1) = (
        upstream("stable").await,
        upstream("stable").await,
        upstream("canary").await,
    );
    let p = TestProxy::start(
        route(
            dead_addr(),
            vec![
                backend("stable", 80, &[s1.addr, s2.addr]),
                backend("canary", 20, &[c1.addr]),
            ],
        ),
        ProxyConfig::default(),
    )
    .await;
    let (counts, failures) = load(&client(), &p.url("/"), 10_000, 16).await;
    assert_eq!(failures, 0);
    let canary = share(&counts, "canary", 10_000);
    assert!(
        (18.0..=22.0).contains(&canary),
        "canary got {canary}% ({counts:?})"
    );
    // Round robin inside a backend. Each worker thread keeps its own cursor (as nginx workers
    // do, so no cache line is shared per request): the totals differ by at most one per worker.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (h1, h2) = (
        s1.hits.load(std::sync::atomic::Ordering::Relaxed),
        s2.hits.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(h1.abs_diff(h2) <= workers, "{h1} vs {h2}");
    let stats = p
        .metrics
        .query("default", "web", Some("canary"), Duration::from_secs(60));
    assert_eq!(stats.requests, counts["canary"] as u64);
    assert_eq!(stats.success_rate, Some(1.0));
    assert!(stats.p99.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_or_cookie_route_beats_the_weights() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let mut spec = route(
        dead_addr(),
        vec![
            backend("stable", 100, &[stable.addr]),
            backend("canary", 0, &[canary.addr]),
        ],
    );
    spec.rules = vec![
        RuleSpec {
            name: "testers".into(),
            headers: vec![("x-canary".into(), MatchSpec::Exact("always".into()))],
            cookies: vec![],
            backend: 1,
        },
        RuleSpec {
            name: "beta-cookie".into(),
            headers: vec![],
            cookies: vec![("beta".into(), MatchSpec::Prefix("yes".into()))],
            backend: 1,
        },
    ];
    let p = TestProxy::start(spec, ProxyConfig::default()).await;
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, &p.url("/"), &[]).await, (200, "stable".into()));
        assert_eq!(
            get(&c, &p.url("/"), &[("x-canary", "always")]).await,
            (200, "canary".into())
        );
        assert_eq!(
            get(&c, &p.url("/"), &[("x-canary", "never")]).await,
            (200, "stable".into())
        );
        assert_eq!(
            get(&c, &p.url("/"), &[("cookie", "a=1; beta=yes-please")]).await,
            (200, "canary".into())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_gets_its_share_and_its_failures_never_reach_the_client() {
    let stable = upstream("stable").await;
    // The mirror fails every request, slowly.
    let shadow = upstream_with(
        "shadow",
        Behaviour {
            status: 500,
            delay: Duration::from_millis(300),
        },
    )
    .await;
    let mut spec = route(
        dead_addr(),
        vec![
            backend("stable", 100, &[stable.addr]),
            backend("shadow", 0, &[shadow.addr]),
        ],
    );
    spec.mirror = Some((1, 30));
    let p = TestProxy::start(spec, ProxyConfig::default()).await;
    let started = Instant::now();
    let (counts, failures) = load(&client(), &p.url("/"), 1000, 8).await;
    let took = started.elapsed();
    assert_eq!(failures, 0);
    assert_eq!(counts.get("stable"), Some(&1000));
    // 1,000 requests over 8 connections, each mirror taking 300 ms: waiting on mirrors would take
    // over 10 s.
    assert!(
        took < Duration::from_secs(5),
        "mirroring slowed the main path: {took:?}"
    );
    eventually(WAIT, "300 mirrored requests at the shadow", || async {
        shadow.hits.load(std::sync::atomic::Ordering::Relaxed) >= 300
    })
    .await;
    assert_eq!(shadow.hits.load(std::sync::atomic::Ordering::Relaxed), 300);
    // The mirror's results are kept apart from real traffic, each recorded when its (slow)
    // answer is in.
    let mirrored = || {
        p.metrics
            .query(
                "default",
                "web",
                Some("shadow:mirror"),
                Duration::from_secs(60),
            )
            .requests
    };
    eventually(WAIT, "300 mirror answers recorded", || async {
        mirrored() >= 300
    })
    .await;
    assert_eq!(mirrored(), 300);
    let mirror = p.metrics.query(
        "default",
        "web",
        Some("shadow:mirror"),
        Duration::from_secs(60),
    );
    assert_eq!(mirror.success_rate, Some(0.0));
    assert_eq!(
        p.metrics
            .query("default", "web", Some("stable"), Duration::from_secs(60))
            .success_rate,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_weights_move_from_0_to_100_under_load() {
    let (stable, canary) = (upstream("stable").await, upstream("canary").await);
    let listen = dead_addr();
    let spec = |w: u32| {
        route(
            listen,
            vec![
                backend("stable", 100 - w, &[stable.addr]),
                backend("canary", w, &[canary.addr]),
            ],
        )
    };
    let p = TestProxy::start(spec(0), ProxyConfig::default()).await;
    let c = client();
    let url = p.url("/");
    let load = tokio::spawn(async move { load(&c, &url, 20_000, 16).await });
    for w in (0..=100).step_by(10) {
        p.set(spec(w));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let (counts, failures) = load.await.unwrap();
    assert_eq!(failures, 0, "{counts:?}");
    assert!(counts.get("canary").copied().unwrap_or(0) > 0);
    // At 100 the canary has everything.
    let c = client();
    for _ in 0..10 {
        assert_eq!(get(&c, &p.url("/"), &[]).await.1, "canary");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_endpoints_gone_is_a_503_that_says_why() {
    let up = upstream("v1").await;
    let listen = dead_addr();
    let p = TestProxy::start(
        route(listen, vec![backend("default", 100, &[up.addr])]),
        ProxyConfig::default(),
    )
    .await;
    let c = client();
    assert_eq!(get(&c, &p.url("/"), &[]).await, (200, "v1".into()));
    // No wait: every request head read after the swap is routed by the new table.
    p.set(route(listen, vec![backend("default", 100, &[])]));
    let (status, body) = get(&c, &p.url("/"), &[]).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        "shipway-proxy: service default/web: no ready endpoints (backend default)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_is_retried_on_another_endpoint() {
    let up = upstream("alive").await;
    let p = TestProxy::start(
        route(
            dead_addr(),
            vec![backend(
                "default",
                100,
                &[dead_addr(), up.addr, dead_addr()],
            )],
        ),
        ProxyConfig::default(),
    )
    .await;
    let (counts, failures) = load(&client(), &p.url("/"), 300, 4).await;
    assert_eq!(failures, 0, "{counts:?}");
    // With every endpoint dead the client learns which one and why.
    let listen = p.listen;
    p.set(route(listen, vec![backend("default", 100, &[dead_addr()])]));
    let (status, body) = get(&client(), &p.url("/"), &[]).await;
    assert_eq!(status, 502);
    assert!(
        body.starts_with("shipway-proxy: service default/web: cannot connect to 127.0.0.1:"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_and_request_ids_are_added() {
    let up = upstream("echo").await;
    let p = TestProxy::start(
        route(dead_addr(), vec![backend("default", 100, &[up.addr])]),
        ProxyConfig::default(),
    )
    .await;
    let c = client();
    let (_, xff) = get(&c, &p.url("/"), &[("x-echo", "x-forwarded-for")]).await;
    assert_eq!(xff, "127.0.0.1");
    let (_, xff) = get(
        &c,
        &p.url("/"),
        &[
            ("x-echo", "x-forwarded-for"),
            ("x-forwarded-for", "10.0.0.1"),
        ],
    )
    .await;
    assert_eq!(xff, "10.0.0.1, 127.0.0.1");
    let (_, host) = get(&c, &p.url("/"), &[("x-echo", "x-forwarded-host")]).await;
    assert_eq!(host, p.listen.to_string());
    let (_, id) = get(&c, &p.url("/"), &[("x-echo", "x-request-id")]).await;
    assert!(!id.is_empty() && id != "echo", "{id}");
    let (_, id) = get(
        &c,
        &p.url("/"),
        &[("x-echo", "x-request-id"), ("x-request-id", "abc")],
    )
    .await;
    assert_eq!(id, "abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_that_never_finishes_its_headers_is_cut_off() {
    let up = upstream("v1").await;
    let config = ProxyConfig {
        header_read_timeout: Duration::from_millis(300),
        ..ProxyConfig::default()
    };
    let p = TestProxy::start(
        route(dead_addr(), vec![backend("default", 100, &[up.addr])]),
        config,
    )
    .await;
    // 300 clients start a request head and stall.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = tokio::net::TcpStream::connect(p.listen).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    // Meanwhile others are served at once.
    let started = Instant::now();
    assert_eq!(get(&client(), &p.url("/"), &[]).await, (200, "v1".into()));
    assert!(started.elapsed() < Duration::from_millis(250));
    // And every stalled connection is closed after the timeout.
    let started = Instant::now();
    for mut s in slow {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a stalled client was not cut off");
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_a_deployment_rolls_its_pods() {
    use serde_json::json;
    use shipway_model::{Key, Object};
    use shipway_store::{ListQuery, Store};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let Some(app) = shipway_testkit::demo_app() else {
        eprintln!("skipped: shipway-demo-app could not be built");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&data.path().join("shipway.db"))
        .await
        .unwrap();
    let src = data.path().join("demo-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("README"), "demo\n").unwrap();
    shipway_runtime::images::ImageStore::new(data.path())
        .import("demo:v1", &src, &[app.display().to_string()], &[])
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let (cache, _feed) = shipway_controller::Reflector::spawn(store.clone(), stop.clone());
    let runtime = shipway_runtime::LocalRuntime::start(
        store.clone(),
        cache,
        shipway_runtime::KubeletConfig::new(data.path()),
        stop.clone(),
    );
    let metrics = shipway_proxy::ProxyMetrics::new();
    let (tables, discovery) =
        shipway_proxy::discovery::spawn(store.clone(), Some(metrics.clone()), stop.clone());
    let proxy = shipway_proxy::Proxy::start(
        tables,
        metrics.clone(),
        ProxyConfig::default(),
        stop.clone(),
    );

    let listen = dead_addr();
    let apply = |v: serde_json::Value| {
        let store = store.clone();
        async move {
            let obj: Object = serde_json::from_value(v).unwrap();
            store.apply(obj, "test").await.unwrap();
        }
    };
    apply(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "annotations": {"shipway.dev/listen": listen.to_string()}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
    .await;
    let deployment = |version: &str| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{"name": "web", "image": "demo:v1", "env": [{"name": "VERSION", "value": version}],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}}]}}}})
    };
    apply(deployment("v1")).await;
    let c = client();
    let url = format!("http://{listen}/");
    let answers = |want: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let req = hyper::Request::get(&url)
                .body(http_body_util::Empty::new())
                .unwrap();
            match c.request(req).await {
                Ok(r) if r.status() == 200 => {
                    use http_body_util::BodyExt;
                    let body = r
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    String::from_utf8_lossy(&body).contains(want)
                }
                _ => false,
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers("\"v1\"").await {
        assert!(
            Instant::now() < deadline,
            "v1 never answered through the proxy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Load through the rollout; every failure is counted, none may happen.
    let done = Arc::new(AtomicBool::new(false));
    let (failures, v1, v2) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut load = Vec::new();
    for _ in 0..8 {
        let (c, url, done, failures, v1, v2) = (
            c.clone(),
            url.clone(),
            done.clone(),
            failures.clone(),
            v1.clone(),
            v2.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let req = hyper::Request::get(&url)
                    .body(http_body_util::Empty::new())
                    .unwrap();
                match c.request(req).await {
                    Ok(r) => {
                        let status = r.status();
                        use http_body_util::BodyExt;
                        let body = r
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let body = String::from_utf8_lossy(&body).into_owned();
                        if status != 200 {
                            failures.fetch_add(1, Ordering::Relaxed);
                            seen.push(format!("{status} {body}"));
                        } else if body.contains("\"v2\"") {
                            v2.fetch_add(1, Ordering::Relaxed);
                        } else {
                            v1.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        seen.push(e.to_string());
                    }
                }
            }
            seen
        }));
    }
    // The rollout starts under load: once v1 has answered some of it.
    eventually(WAIT, "load answered by v1", || async {
        v1.load(Ordering::Relaxed) >= 100
    })
    .await;
    apply(deployment("v2")).await;
    // Rolled: two pods left, both answering v2.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pods = store
            .list(&ListQuery::kind("", "Pod").in_namespace("default"))
            .await
            .unwrap()
            .items;
        let rolled = pods.len() == 2
            && pods.iter().all(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.body["spec"]["containers"][0]["env"][0]["value"] == "v2"
            });
        if rolled && answers("\"v2\"").await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout did not finish: {pods:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Keep the load on the new pods for a while before stopping it.
    let at_rolled = v2.load(Ordering::Relaxed);
    eventually(WAIT, "load answered by v2", || async {
        v2.load(Ordering::Relaxed) >= at_rolled + 100
    })
    .await;
    done.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for t in load {
        errors.extend(t.await.unwrap());
    }
    let (v1, v2) = (v1.load(Ordering::Relaxed), v2.load(Ordering::Relaxed));
    assert_eq!(failures.load(Ordering::Relaxed), 0, "{errors:#?}");
    assert!(v1 > 0 && v2 > 0, "v1 {v1}, v2 {v2}");
    eprintln!("rolled under load: {v1} requests answered by v1, {v2} by v2, none failed");

    store
        .delete(&Key::new("apps", "Deployment", "default", "web"), "test")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !store
        .list(&ListQuery::kind("", "Pod"))
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(Instant::now() < deadline, "pods not gone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    runtime.join().await;
    let _ = discovery.await;
    let _ = proxy.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_is_spliced_through() {
    // An upstream that switches protocols and then echoes bytes, as a WebSocket server would.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.contains("upgrade: echo"), "{head}");
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let p = TestProxy::start(
        route(dead_addr(), vec![backend("default", 100, &[up_addr])]),
        ProxyConfig::default(),
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(p.listen).await.unwrap();
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_keeps_failing_is_ejected() {
    let up = upstream("alive").await;
    // One attempt per request, so only ejection keeps the dead endpoint from failing requests.
    let config = ProxyConfig {
        connect_attempts: 1,
        workers: 1,
        ..ProxyConfig::default()
    };
    let p = TestProxy::start(
        route(
            dead_addr(),
            vec![backend("default", 100, &[dead_addr(), up.addr])],
        ),
        config,
    )
    .await;
    let c = client();
    let mut failed = 0;
    for _ in 0..200 {
        if get(&c, &p.url("/"), &[]).await.0 != 200 {
            failed += 1;
        }
    }
    assert_eq!(failed, 3, "ejected after 3 failures, none after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_port_is_passed_through() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = echo.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let mut spec = route(
        dead_addr(),
        vec![backend("default", 100, &[dead_addr(), echo_addr])],
    );
    spec.tcp = true;
    let p = TestProxy::start(spec, ProxyConfig::default()).await;
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(p.listen).await.unwrap();
        s.write_all(b"not http\r\n").await.unwrap();
        let mut back = [0u8; 10];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"not http\r\n");
    }
    // Each connection is counted (TestProxy's readiness probe made one more), and its bytes once
    // it has ended (the clients above closed).
    let want = [
        "shipway_proxy_tcp_connections_total{service=\"default/web\",backend=\"default\",result=\"connected\"} 5",
        "shipway_proxy_tcp_bytes_total{service=\"default/web\",backend=\"default\",direction=\"to_upstream\"} 40",
        "shipway_proxy_tcp_bytes_total{service=\"default/web\",backend=\"default\",direction=\"to_client\"} 40",
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut text = String::new();
        p.metrics.render(&mut text);
        if want.iter().all(|w| text.lines().any(|l| l == *w)) {
            break;
        }
        assert!(Instant::now() < deadline, "TCP metrics missing:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_requests_sends_less_to_a_slow_endpoint() {
    let fast = upstream("fast").await;
    let slow = upstream_with(
        "slow",
        Behaviour {
            status: 200,
            delay: Duration::from_millis(100),
        },
    )
    .await;
    let mut spec = route(
        dead_addr(),
        vec![backend("default", 100, &[fast.addr, slow.addr])],
    );
    spec.least_requests = true;
    let p = TestProxy::start(spec, ProxyConfig::default()).await;
    let (counts, failures) = load(&client(), &p.url("/"), 2000, 8).await;
    assert_eq!(failures, 0);
    let slow_share = share(&counts, "slow", 2000);
    // Round robin would give it half.
    assert!(
        slow_share < 10.0,
        "slow endpoint got {slow_share}% ({counts:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served() {
    let up = upstream("v1").await;
    let p = TestProxy::start(
        route(dead_addr(), vec![backend("default", 100, &[up.addr])]),
        ProxyConfig::default(),
    )
    .await;
    let h2: TestClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let req = hyper::Request::get(p.url("/"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    use http_body_util::BodyExt;
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "v1");
    // Stopping with the HTTP/2 connection still open (pooled in `h2`): it is told to go away,
    // rather than waited on until the drain's 10 s run out.
    p.stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), p.task)
        .await
        .expect("the proxy stops with an idle HTTP/2 client connected")
        .unwrap();
    drop(h2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_proxy_cannot_take_the_address_of_the_first() {
    let (first, second) = (upstream("first").await, upstream("second").await);
    let listen = dead_addr();
    let a = TestProxy::start(
        route(listen, vec![backend("default", 100, &[first.addr])]),
        ProxyConfig::default(),
    )
    .await;
    // Another server (another `shipway up`) with a Service on the same address.
    let b = TestProxy::start(
        route(listen, vec![backend("default", 100, &[second.addr])]),
        ProxyConfig::default(),
    )
    .await;
    let err = shipway_proxy::Listeners::default()
        .bind(listen)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    // A new connection per request: with a shared accept group, the kernel would spread them.
    for _ in 0..100 {
        let (status, body) = get(&client(), &a.url("/"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "first"));
    }
    assert_eq!(second.hits.load(std::sync::atomic::Ordering::Relaxed), 0);
    b.stop.cancel();
    a.stop.cancel();
}
