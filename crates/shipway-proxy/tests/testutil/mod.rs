//! Helpers: in-test upstream servers on port 0, a keep-alive client, and tables fed to a proxy.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shipway_proxy::table::{BackendSpec, RouteSpec, RoutingTable};
use shipway_proxy::{Proxy, ProxyConfig, ProxyMetrics};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// An upstream answering `name` (or 500 / late, as configured), counting requests.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub stop: CancellationToken,
}

pub struct Behaviour {
    pub status: u16,
    pub delay: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            status: 200,
            delay: Duration::ZERO,
        }
    }
}

pub async fn upstream(name: &str) -> Upstream {
    upstream_with(name, Behaviour::default()).await
}

pub async fn upstream_with(name: &str, behaviour: Behaviour) -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let (name, behaviour) = (Arc::new(name.to_string()), Arc::new(behaviour));
    let (h, s) = (hits.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = s.cancelled() => return,
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            };
            let (name, behaviour, hits, s) =
                (name.clone(), behaviour.clone(), h.clone(), s.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (name, behaviour, hits) = (name.clone(), behaviour.clone(), hits.clone());
                    async move {
                        hits.fetch_add(1, Ordering::Relaxed);
                        let echo = req
                            .headers()
                            .get("x-echo")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|h| req.headers().get(h))
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let _ = req.into_body().collect().await;
                        if !behaviour.delay.is_zero() {
                            tokio::time::sleep(behaviour.delay).await;
                        }
                        let body = echo.unwrap_or_else(|| name.to_string());
                        let mut r = Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = StatusCode::from_u16(behaviour.status).unwrap();
                        Ok::<_, Infallible>(r)
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = s.cancelled() => {}
                }
            });
        }
    });
    Upstream { addr, hits, stop }
}

/// A free loopback address nobody listens on.
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub fn backend(name: &str, weight: u32, endpoints: &[SocketAddr]) -> BackendSpec {
    BackendSpec {
        name: name.into(),
        weight,
        endpoints: endpoints.to_vec(),
    }
}

pub fn route(listen: SocketAddr, backends: Vec<BackendSpec>) -> RouteSpec {
    RouteSpec {
        namespace: "default".into(),
        service: "web".into(),
        port_name: String::new(),
        listen,
        backends,
        rules: vec![],
        mirror: None,
        tcp: false,
        least_requests: false,
    }
}

/// A proxy fed tables by the test.
pub struct TestProxy {
    pub listen: SocketAddr,
    pub tables: watch::Sender<Arc<RoutingTable>>,
    pub metrics: Arc<ProxyMetrics>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestProxy {
    pub async fn start(spec: RouteSpec, config: ProxyConfig) -> TestProxy {
        let (tables, rx) =
            watch::channel(Arc::new(RoutingTable::build(std::slice::from_ref(&spec))));
        let metrics = ProxyMetrics::new();
        let stop = CancellationToken::new();
        let task = Proxy::start(rx, metrics.clone(), config, stop.clone());
        let listen = spec.listen;
        // Wait until the listener is bound.
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(listen).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        TestProxy {
            listen,
            tables,
            metrics,
            stop,
            task,
        }
    }

    pub fn set(&self, spec: RouteSpec) {
        self.tables
            .send_replace(Arc::new(RoutingTable::build(&[spec])));
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }
}

pub type TestClient = Client<HttpConnector, Empty<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET with headers; returns (status, body).
pub async fn get(client: &TestClient, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Runs `n` GETs over `concurrency` connections; returns the bodies' counts and non-200 count.
pub async fn load(
    client: &TestClient,
    url: &str,
    n: usize,
    concurrency: usize,
) -> (std::collections::HashMap<String, usize>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next, failures) = (
            client.clone(),
            url.to_string(),
            next.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut counts = std::collections::HashMap::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let (status, body) = get(&client, &url, &[]).await;
                if status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                *counts.entry(body).or_insert(0usize) += 1;
            }
            counts
        }));
    }
    let mut counts = std::collections::HashMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *counts.entry(k).or_insert(0) += v;
        }
    }
    (counts, failures.load(Ordering::Relaxed) as usize)
}
