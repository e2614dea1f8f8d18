//! The data path: one listener per route, HTTP/1.1 and h2c to clients, pooled keep-alive
//! connections to upstreams, forwarding headers, connect retries, mirroring and the error
//! responses that say which service failed and why.
//!
//! A request goes through three phases: `route` (pick the backend from the table snapshot it
//! started with), `forward` (endpoint, attempts) and `log` (metrics, access log).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::ProxyMetrics;
use crate::table::{Backend, Route, RoutingTable};

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Limits and options of the data path.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// A client must send a whole request head within this time, or its connection is closed:
    /// slow clients cannot hold connections open (slowloris). Idle keep-alive connections are
    /// closed after it too.
    pub header_read_timeout: Duration,
    /// Largest request head accepted (HTTP/1).
    pub max_header_bytes: usize,
    /// Time to an upstream's response head before answering 504; once a body flows, the longest
    /// wait on any one read or write of it.
    pub upstream_timeout: Duration,
    pub connect_timeout: Duration,
    /// Client connections open at once per listener; further clients wait in the accept queue.
    pub max_connections: usize,
    /// Log every request at info level (target `shipway_proxy::access`).
    pub access_log: bool,
    /// Connect attempts per request (on distinct endpoints when the backend has several).
    pub connect_attempts: usize,
    /// Worker threads, each with its own single-threaded runtime, listeners (`SO_REUSEPORT`) and
    /// upstream pool, as nginx runs worker processes: a request never crosses threads. 0 = one
    /// per core.
    pub workers: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            upstream_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(2),
            max_connections: 10_000,
            access_log: false,
            connect_attempts: 3,
            workers: 0,
        }
    }
}

/// What a worker's connections share.
pub(crate) struct Shared {
    pub(crate) table: watch::Receiver<Arc<RoutingTable>>,
    /// HTTP/2 clients' requests go upstream through hyper's pool; HTTP/1 ones through
    /// [`crate::conn`]'s.
    client: Client<HttpConnector, ProxyBody>,
    pub(crate) metrics: Arc<ProxyMetrics>,
    pub(crate) config: ProxyConfig,
    /// This worker's request counter (the worker's index in the top bits keeps ids unique).
    pub(crate) request_ids: AtomicU64,
    pub(crate) outliers: Arc<Outliers>,
    /// Distinguishes request ids of different runs.
    pub(crate) run_id: u32,
}

/// Consecutive failures (refused connects, broken connections) after which an endpoint is ejected.
const EJECT_AFTER: u32 = 3;
/// How long an ejected endpoint gets no traffic before it is tried again.
const EJECT_FOR: Duration = Duration::from_secs(10);

/// Passive health: endpoints that keep failing are skipped for a while, then re-admitted. Shared by
/// the workers; the request path only takes the lock while some endpoint has failed.
#[derive(Default)]
pub(crate) struct Outliers {
    failing: AtomicU64,
    state: std::sync::Mutex<HashMap<SocketAddr, (u32, Option<Instant>)>>,
}

impl Outliers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, (u32, Option<Instant>)>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn ejected(&self, endpoint: SocketAddr) -> bool {
        if self.failing.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.lock()
            .get(&endpoint)
            .and_then(|(_, until)| *until)
            .is_some_and(|until| Instant::now() < until)
    }

    pub(crate) fn failed(&self, endpoint: SocketAddr) {
        let mut state = self.lock();
        let entry = state.entry(endpoint).or_insert((0, None));
        entry.0 += 1;
        if entry.0 >= EJECT_AFTER {
            if entry.1.is_none_or(|until| Instant::now() >= until) {
                tracing::info!(
                    "proxy: endpoint {endpoint} ejected for {EJECT_FOR:?} after {} failures",
                    entry.0
                );
            }
            entry.1 = Some(Instant::now() + EJECT_FOR);
        }
        self.failing.store(state.len() as u64, Ordering::Relaxed);
    }

    pub(crate) fn succeeded(&self, endpoint: SocketAddr) {
        if self.failing.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut state = self.lock();
        state.remove(&endpoint);
        self.failing.store(state.len() as u64, Ordering::Relaxed);
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) a proxy must not forward.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the few headers there are beats hashing six names.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(n);
    }
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A response the proxy makes itself; the body names the service and the reason.
fn error_response(status: StatusCode, service: &str, why: &str) -> Response<ProxyBody> {
    let body = format!("shipway-proxy: service {service}: {why}\n");
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert("x-shipway-proxy-error", HeaderValue::from_static("1"));
    r
}

/// A client connection's address, and its IP as the header value `X-Forwarded-For` appends.
struct Peer {
    addr: SocketAddr,
    ip: Option<HeaderValue>,
}

/// The proxy: serves the routes of the newest table until shutdown.
pub struct Proxy;

impl Proxy {
    /// Starts the listener manager; it binds and unbinds listeners as the table changes and ends
    /// (after its listeners have drained) when `shutdown` is cancelled.
    pub fn start(
        table: watch::Receiver<Arc<RoutingTable>>,
        metrics: Arc<ProxyMetrics>,
        config: ProxyConfig,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let workers = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let outliers = Arc::new(Outliers::default());
        let mut threads = Vec::new();
        for i in 0..workers {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(config.connect_timeout));
            let client = Client::builder(TokioExecutor::new())
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector);
            let shared = Arc::new(Shared {
                table: table.clone(),
                client,
                metrics: metrics.clone(),
                config: config.clone(),
                request_ids: AtomicU64::new((i as u64) << 48),
                outliers: outliers.clone(),
                run_id: std::process::id(),
            });
            let (table, shutdown) = (table.clone(), shutdown.clone());
            let worker = std::thread::Builder::new()
                .name(format!("shipway-proxy-{i}"))
                .spawn(move || {
                    crate::worker::set(i);
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(manage(shared, table, shutdown)),
                        Err(e) => tracing::error!("proxy worker {i}: no runtime: {e}"),
                    }
                });
            match worker {
                Ok(t) => threads.push(t),
                Err(e) => tracing::error!("proxy worker {i} not started: {e}"),
            }
        }
        tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
    }
}

/// A listener that shares its address with the other workers' (`SO_REUSEPORT`): the kernel
/// spreads connections between them.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Keeps one listener per address in the table.
async fn manage(
    shared: Arc<Shared>,
    mut table: watch::Receiver<Arc<RoutingTable>>,
    shutdown: CancellationToken,
) {
    let mut listeners: HashMap<SocketAddr, (CancellationToken, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    loop {
        crate::conn::pool_prune(&table.borrow());
        let wanted: Vec<(SocketAddr, String)> = table
            .borrow_and_update()
            .routes
            .iter()
            .map(|(a, r)| (*a, format!("{}/{}", r.spec.namespace, r.spec.service)))
            .collect();
        listeners.retain(|addr, (stop, _)| {
            let keep = wanted.iter().any(|(a, _)| a == addr);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for (addr, service) in wanted {
            if listeners.contains_key(&addr) {
                continue;
            }
            match bind(addr) {
                Ok(l) => {
                    tracing::info!("proxy: service {service} listens on {addr}");
                    let stop = shutdown.child_token();
                    let task = tokio::spawn(listen(shared.clone(), l, addr, stop.clone()));
                    listeners.insert(addr, (stop, task));
                }
                // Retried on the next table change or tick.
                Err(e) => tracing::warn!("proxy: service {service}: cannot listen on {addr}: {e}"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = table.changed() => if changed.is_err() { break },
            // Addresses that could not be bound (in use) are tried again.
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    for (_, (stop, task)) in listeners {
        stop.cancel();
        let _ = task.await;
    }
}

/// Accepts connections on one address until `stop`; then lets open connections finish their
/// requests (up to 10 s).
async fn listen(
    shared: Arc<Shared>,
    listener: TcpListener,
    addr: SocketAddr,
    stop: CancellationToken,
) {
    let max = shared
        .config
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS) as u32;
    let limit = Arc::new(Semaphore::new(max as usize));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Read by connections after each request (cheaper than asking the token).
    let stopping = Arc::new(AtomicBool::new(false));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("proxy {addr}: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if route(&shared, addr).is_some_and(|r| r.spec.tcp) {
            tokio::spawn(pass_through(shared.clone(), addr, stream, permit));
            continue;
        }
        let conn = crate::conn::Conn::new(
            shared.clone(),
            addr,
            stream,
            peer,
            stop.clone(),
            stopping.clone(),
        );
        let (shared, watcher) = (shared.clone(), graceful.watcher());
        tokio::spawn(async move {
            if let crate::conn::Ended::H2(conn) = conn.run().await {
                serve_h2(shared, addr, *conn, peer, watcher).await;
            }
            drop(permit);
        });
    }
    drop(listener);
    stopping.store(true, Ordering::Relaxed);
    // Connections end after their request in flight once `stop` is cancelled; all permits back
    // means all have.
    // HTTP/2 connections hold their permits until told to go away: both at once.
    let drained = async {
        let _ = tokio::join!(limit.acquire_many(max), graceful.shutdown());
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drained).await;
}

/// An HTTP/2 (prior knowledge) client, served by hyper; the bytes already read come first.
async fn serve_h2(
    shared: Arc<Shared>,
    addr: SocketAddr,
    conn: crate::conn::Conn,
    peer: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let max_header_bytes = u32::try_from(shared.config.max_header_bytes).unwrap_or(u32::MAX);
    let peer = Arc::new(Peer {
        addr: peer,
        ip: HeaderValue::from_str(&peer.ip().to_string()).ok(),
    });
    let service = hyper::service::service_fn(move |req| {
        let (shared, peer) = (shared.clone(), peer.clone());
        async move { Ok::<_, Infallible>(handle(&shared, addr, &peer, req).await) }
    });
    let io = Prefixed {
        prefix: conn.cbuf.freeze(),
        inner: conn.client,
    };
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(max_header_bytes);
    let _ = watcher
        .watch(builder.serve_connection(TokioIo::new(io), service))
        .await;
}

/// A connection whose first bytes were read already (to tell HTTP/2 from HTTP/1): they are
/// read again first.
struct Prefixed {
    prefix: Bytes,
    inner: tokio::net::TcpStream,
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Phase one: the route and backend for a request, from the table as it is now.
fn route(shared: &Shared, listen: SocketAddr) -> Option<Arc<Route>> {
    shared.table.borrow().routes.get(&listen).cloned()
}

async fn handle(
    shared: &Shared,
    listen: SocketAddr,
    peer: &Peer,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let Some(route) = route(shared, listen) else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &listen.to_string(),
            "no service listens here any more",
        );
    };
    let service = route.key.as_str();
    let Some(backend) = route.choose(req.headers()) else {
        let r = error_response(StatusCode::SERVICE_UNAVAILABLE, service, "no backends");
        shared
            .metrics
            .record(service, "", r.status().as_u16(), started.elapsed());
        return r;
    };
    // Only the access log needs these after the request is gone.
    let logged = shared
        .config
        .access_log
        .then(|| (req.method().clone(), req.uri().clone()));
    let response = forward(shared, listen, &route, service, backend, peer, req).await;
    if let Some((method, uri)) = logged {
        tracing::info!(
            target: "shipway_proxy::access",
            "{} {service} {} {method} {uri} {} {:.3}ms",
            peer.addr,
            backend.name,
            response.status().as_u16(),
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    let stats = backend
        .stats
        .get_or_init(|| shared.metrics.handle(service, &backend.name));
    shared.metrics.record_to(
        stats,
        response.status().as_u16(),
        started.elapsed(),
        Instant::now(),
    );
    response
}

fn upstream_uri(authority: &Authority, path: Option<&PathAndQuery>) -> Option<Uri> {
    let mut parts = hyper::http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(
        path.cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts).ok()
}

/// Phase two: sends the request to an endpoint of `backend`. A request without a body to replay is
/// retried on the next endpoint, taken from the newest table, when the connect fails or, for safe
/// methods, when the connection breaks before a response: that is how a pod that is shutting down
/// (its endpoint not yet gone from the table, its pooled connections closing) loses no request.
async fn forward(
    shared: &Shared,
    listen: SocketAddr,
    route: &Route,
    service: &str,
    backend: &Backend,
    peer: &Peer,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if backend.endpoints.is_empty() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            service,
            &format!("no ready endpoints (backend {})", backend.name),
        );
    }
    let mut req = req;
    // WebSocket and other HTTP/1.1 upgrades: the upgrade headers are kept (they are hop-by-hop
    // otherwise) and, once the upstream answers 101, the two connections are spliced.
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .cloned()
        .filter(|_| req.version() == hyper::Version::HTTP_11)
        .map(|protocol| (protocol, hyper::upgrade::on(&mut req)));
    let (mut parts, body) = req.into_parts();
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    strip_hop_by_hop(&mut parts.headers);
    if let Some((protocol, _)) = &upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol.clone());
    }
    let xff = match (parts.headers.get(&X_FORWARDED_FOR), &peer.ip) {
        (Some(prev), Some(ip)) => {
            let mut v = prev.as_bytes().to_vec();
            v.extend_from_slice(b", ");
            v.extend_from_slice(ip.as_bytes());
            HeaderValue::from_bytes(&v).ok()
        }
        (_, ip) => ip.clone(),
    };
    if let Some(v) = xff {
        parts.headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    parts
        .headers
        .insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if let Some(h) = host {
        parts.headers.insert(X_FORWARDED_HOST.clone(), h);
    }
    if !parts.headers.contains_key(&X_REQUEST_ID) {
        let n = shared.request_ids.fetch_add(1, Ordering::Relaxed);
        if let Ok(v) = HeaderValue::from_str(&format!("{:08x}-{n:x}", shared.run_id)) {
            parts.headers.insert(X_REQUEST_ID.clone(), v);
        }
    }
    // Upstreams get HTTP/1.1 whatever the client spoke.
    parts.version = hyper::Version::HTTP_11;
    let path = parts.uri.path_and_query().cloned();
    let bodyless = body.is_end_stream();
    if bodyless && let Some(mirror) = route.mirror() {
        spawn_mirror(shared, service, mirror, &parts, path.as_ref());
    }
    let attempts = if bodyless {
        shared.config.connect_attempts.max(1)
    } else {
        1
    };
    let safe = matches!(
        parts.method,
        hyper::Method::GET | hyper::Method::HEAD | hyper::Method::OPTIONS
    );
    let start = backend.start();
    let mut body = Some(body.boxed());
    let mut last_error = String::new();
    for attempt in 0..attempts {
        let fresh = if attempt > 0 {
            self::route(shared, listen)
        } else {
            None
        };
        let backend = fresh
            .as_deref()
            .and_then(|r| r.backends.iter().find(|b| b.name == backend.name))
            .filter(|b| !b.endpoints.is_empty())
            .unwrap_or(backend);
        // Skip ejected endpoints, unless every one is: then trying beats refusing.
        let n = backend.endpoints.len();
        let Some((endpoint, authority)) = (0..n)
            .filter_map(|k| backend.endpoint(start, attempt + k))
            .find(|(e, _)| !shared.outliers.ejected(*e))
            .or_else(|| backend.endpoint(start, attempt))
        else {
            break;
        };
        // Until the response head arrives (or the attempt fails).
        let _in_flight = backend
            .endpoints
            .iter()
            .position(|e| *e == endpoint)
            .and_then(|i| backend.track(i));
        let Some(uri) = upstream_uri(authority, path.as_ref()) else {
            return error_response(
                StatusCode::BAD_REQUEST,
                service,
                "request target is not a valid path",
            );
        };
        let mut upstream = Request::new(body.take().unwrap_or_else(empty));
        *upstream.method_mut() = parts.method.clone();
        *upstream.uri_mut() = uri;
        *upstream.version_mut() = parts.version;
        *upstream.headers_mut() = parts.headers.clone();
        match tokio::time::timeout(
            shared.config.upstream_timeout,
            shared.client.request(upstream),
        )
        .await
        {
            Ok(Ok(mut resp)) => {
                shared.outliers.succeeded(endpoint);
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS
                    && let Some((_, client_side)) = upgrade
                {
                    let upstream_side = hyper::upgrade::on(&mut resp);
                    tokio::spawn(splice(client_side, upstream_side));
                    let (head, body) = resp.into_parts();
                    return Response::from_parts(head, body.boxed());
                }
                let (mut head, body) = resp.into_parts();
                strip_hop_by_hop(&mut head.headers);
                return Response::from_parts(head, body.boxed());
            }
            Ok(Err(e)) if e.is_connect() => {
                shared.outliers.failed(endpoint);
                last_error = format!(
                    "cannot connect to {endpoint} (backend {}): {e}",
                    backend.name
                );
            }
            Ok(Err(e)) if safe && bodyless && attempt + 1 < attempts => {
                shared.outliers.failed(endpoint);
                last_error = format!("upstream {endpoint} (backend {}) failed: {e}", backend.name);
            }
            Ok(Err(e)) => {
                shared.outliers.failed(endpoint);
                return error_response(
                    StatusCode::BAD_GATEWAY,
                    service,
                    &format!("upstream {endpoint} (backend {}) failed: {e}", backend.name),
                );
            }
            Err(_) => {
                return error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    service,
                    &format!(
                        "upstream {endpoint} (backend {}) sent no response within {:?}",
                        backend.name, shared.config.upstream_timeout
                    ),
                );
            }
        }
    }
    error_response(StatusCode::BAD_GATEWAY, service, &last_error)
}

/// A plain TCP connection: an endpoint by weight (connect failures retried on the next one), then
/// bytes both ways until either side closes.
async fn pass_through(
    shared: Arc<Shared>,
    listen: SocketAddr,
    mut client: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let Some(route) = route(&shared, listen) else {
        return;
    };
    let Some(backend) = route.choose(&HeaderMap::new()) else {
        return;
    };
    let start = backend.start();
    for attempt in 0..shared.config.connect_attempts.max(1) {
        let Some((endpoint, _)) = backend.endpoint(start, attempt) else {
            break;
        };
        let connect = tokio::net::TcpStream::connect(endpoint);
        match tokio::time::timeout(shared.config.connect_timeout, connect).await {
            Ok(Ok(mut upstream)) => {
                shared.outliers.succeeded(endpoint);
                let metrics = &shared.metrics;
                metrics.record_tcp(&route.key, &backend.name, true);
                let _ = upstream.set_nodelay(true);
                if let Ok((up, down)) =
                    tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                {
                    metrics.record_tcp_bytes(&route.key, &backend.name, up, down);
                }
                return;
            }
            _ => shared.outliers.failed(endpoint),
        }
    }
    shared.metrics.record_tcp(&route.key, &backend.name, false);
    tracing::debug!(
        "proxy: service {}: no endpoint of backend {} accepted a TCP connection",
        route.key,
        backend.name
    );
}

/// Copies bytes both ways between an upgraded client connection and its upstream until either
/// side closes.
async fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (Ok(client), Ok(upstream)) = (client.await, upstream.await) else {
        return;
    };
    let _ =
        tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(upstream)).await;
}

/// Sends a copy of a bodyless request to the mirror backend in its own task: its response is
/// discarded and its failure or slowness never touches the client's request.
fn spawn_mirror(
    shared: &Shared,
    service: &str,
    backend: &Backend,
    parts: &hyper::http::request::Parts,
    path: Option<&PathAndQuery>,
) {
    let Some((_, authority)) = backend.endpoint(backend.start(), 0) else {
        return;
    };
    let Some(uri) = upstream_uri(authority, path) else {
        return;
    };
    let mut req = Request::new(empty());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = parts.headers.clone();
    let client = shared.client.clone();
    let metrics = shared.metrics.clone();
    let timeout = shared.config.upstream_timeout;
    let (service, name) = (service.to_string(), format!("{}:mirror", backend.name));
    tokio::spawn(async move {
        let started = Instant::now();
        let status = match tokio::time::timeout(timeout, client.request(req)).await {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                // Read to the end so the connection goes back to the pool.
                let _ = resp.into_body().collect().await;
                status
            }
            Ok(Err(_)) => 502,
            Err(_) => 504,
        };
        metrics.record(&service, &name, status, started.elapsed());
    });
}
