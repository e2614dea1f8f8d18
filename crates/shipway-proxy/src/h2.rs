//! HTTP/2 clients (prior knowledge, h2c), served by hyper: `serve` answers each request with
//! `handle` (route and backend from the table as it is now) and `forward` (endpoints, attempts),
//! upstream over hyper's pooled HTTP/1.1 client. HTTP/1 clients, by far the common case, take the
//! proxy's own path in `conn`; both share the routing table, metrics, passive ejection and the
//! error bodies' wording.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::server::{ProxyBody, Shared, route};
use crate::table::{Backend, Route};

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

/// An HTTP/2 (prior knowledge) client, served by hyper; the bytes already read come first.
pub(crate) async fn serve(
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

/// Sends the request to an endpoint of `backend`. A request without a body to replay is
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
    // (HTTP/2 has no Upgrade: WebSockets come over HTTP/1, in `conn`.)
    let (mut parts, body) = req.into_parts();
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    strip_hop_by_hop(&mut parts.headers);
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
            Ok(Ok(resp)) => {
                shared.outliers.succeeded(endpoint);
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
