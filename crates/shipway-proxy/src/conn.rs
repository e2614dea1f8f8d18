//! The HTTP/1 data path: one task per client connection reads a request head, routes it, sends
//! it on a pooled upstream connection and copies the response back, in that task, with no
//! header map, no per-request task and no channel between client and upstream sides, as nginx
//! does per worker. Bodies are streamed, never buffered; one that has arrived whole with its head
//! can be replayed, so such requests are retried and mirrored too.
//!
//! Upstream connections are kept per worker thread (each worker runs its own single-threaded
//! runtime), so taking one is a thread-local lookup.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::h1::{self, Chunked, Framing, MAX_HEADERS, RequestInfo, ResponseInfo};
use crate::server::Shared;
use crate::table::{Backend, Route, RoutingTable};

/// Idle upstream connections kept per endpoint and worker.
const POOL_PER_ENDPOINT: usize = 256;
/// An upstream connection idle this long is closed rather than reused: upstreams close idle
/// connections too, and a request sent on one they are closing fails.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Bodies up to this size are copied behind their head into one write.
const COALESCE: usize = 16 * 1024;
/// HTTP/2 clients with prior knowledge open with this; such connections go to hyper.
pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

thread_local! {
    static POOL: RefCell<HashMap<SocketAddr, Vec<(TcpStream, Instant)>>> = RefCell::default();
}

fn pool_take(endpoint: SocketAddr, now: Instant) -> Option<TcpStream> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(&endpoint)?;
        while let Some((stream, since)) = idle.pop() {
            if now.saturating_duration_since(since) < POOL_IDLE && still_open(&stream) {
                return Some(stream);
            }
        }
        None
    })
}

/// An idle connection has nothing to read: if it is readable, the upstream closed it (or sent
/// bytes no request asked for), and a request written to it would be lost — which only
/// idempotent ones survive. Usually free: tokio answers from its readiness state, no syscall.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

fn pool_put(endpoint: SocketAddr, stream: TcpStream, now: Instant) {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.entry(endpoint).or_default();
        if idle.len() < POOL_PER_ENDPOINT {
            idle.push((stream, now));
        }
    });
}

/// A pooled connection turned out closed: its siblings most likely are too (the upstream
/// restarted or closes idle connections), so they go as well.
fn pool_forget(endpoint: SocketAddr) {
    POOL.with(|pool| pool.borrow_mut().remove(&endpoint));
}

/// Closes idle connections past their time and those of endpoints no longer in `table`.
pub(crate) fn pool_prune(table: &RoutingTable) {
    POOL.with(|pool| {
        let now = Instant::now();
        pool.borrow_mut().retain(|endpoint, idle| {
            idle.retain(|(_, since)| now.saturating_duration_since(*since) < POOL_IDLE);
            !idle.is_empty()
                && table
                    .routes
                    .values()
                    .any(|r| r.backends.iter().any(|b| b.endpoints.contains(endpoint)))
        });
    });
}

/// How a step against a socket failed.
enum Io {
    Timeout,
    Failed(io::Error),
    /// The peer closed before the message ended.
    Closed,
}

impl std::fmt::Display for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Io::Timeout => f.write_str("timed out"),
            Io::Failed(e) => e.fmt(f),
            Io::Closed => f.write_str("connection closed early"),
        }
    }
}

/// One wait at a time, each within `limit`: a connection keeps its timers and re-arms them.
pub(crate) struct Timer {
    sleep: Pin<Box<Sleep>>,
    limit: Duration,
}

impl Timer {
    fn new(limit: Duration) -> Timer {
        Timer {
            sleep: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }

    /// `fut` within the limit. The timer is armed only when `fut` does not finish at once (most
    /// writes do), and moving a deadline later is an atomic update rather than a timer-wheel
    /// insertion, so a timed step costs next to nothing.
    async fn within<T>(&mut self, fut: impl Future<Output = io::Result<T>>) -> Result<T, Io> {
        let mut fut = std::pin::pin!(fut);
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
        if let std::task::Poll::Ready(r) = first {
            return r.map_err(Io::Failed);
        }
        self.sleep
            .as_mut()
            .reset(tokio::time::Instant::now() + self.limit);
        tokio::select! {
            biased;
            r = fut => r.map_err(Io::Failed),
            _ = self.sleep.as_mut() => Err(Io::Timeout),
        }
    }
}

/// Reads more into `buf`; end of stream is [`Io::Closed`].
async fn fill<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    timer: &mut Timer,
) -> Result<(), Io> {
    if buf.capacity() - buf.len() < 2048 {
        buf.reserve(16 * 1024);
    }
    match timer.within(r.read_buf(buf)).await? {
        0 => Err(Io::Closed),
        _ => Ok(()),
    }
}

/// A request whose head has been read and routed.
struct Prepared {
    info: RequestInfo,
    /// Index of the backend in the route; `None` when the route has none.
    backend: Option<usize>,
    mirror: Option<usize>,
    /// Length of the body when all of it is already in the read buffer (0 without a body): such
    /// a request can be sent again.
    whole_body: Option<usize>,
    /// Method and target, for the access log.
    logged: Option<(String, String)>,
}

/// The outcome of reading one request head.
enum Head {
    Request(Prepared),
    /// The client sent something that is not a request we serve; answer and close.
    Refuse(u16, &'static str, String),
    /// An HTTP/2 client with prior knowledge.
    H2,
    Closed,
}

/// One client connection.
pub(crate) struct Conn {
    shared: Arc<Shared>,
    listen: SocketAddr,
    peer: SocketAddr,
    peer_ip: String,
    listen_host: String,
    pub(crate) client: TcpStream,
    /// Bytes read from the client and not yet forwarded.
    pub(crate) cbuf: BytesMut,
    ubuf: BytesMut,
    /// The upstream request head being sent.
    head: Vec<u8>,
    /// The client response head being sent.
    out: Vec<u8>,
    /// Client-side waits: the next request head, request body reads.
    client_timer: Pin<Box<Sleep>>,
    /// Upstream-side waits: connect, response head, body reads, writes.
    upstream_timer: Timer,
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Set once the listener stops: the connection ends after its request in flight.
    stopping: Arc<AtomicBool>,
    /// When the last request ended: near enough to now for the idle deadline and the pool.
    now: Instant,
    /// The last request's body was not read to its end: close with a linger.
    linger: bool,
}

/// What became of a connection.
pub(crate) enum Ended {
    Done,
    /// The client speaks HTTP/2: hand `client` with the bytes read so far to the HTTP/2 server.
    H2(Box<Conn>),
}

impl Conn {
    pub(crate) fn new(
        shared: Arc<Shared>,
        listen: SocketAddr,
        client: TcpStream,
        peer: SocketAddr,
        stop: CancellationToken,
        stopping: Arc<AtomicBool>,
    ) -> Conn {
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        Conn {
            listen,
            peer,
            peer_ip: peer.ip().to_string(),
            listen_host: listen.to_string(),
            client,
            // Buffers grow on first use: a connection that never sends a request costs little.
            cbuf: BytesMut::new(),
            ubuf: BytesMut::new(),
            head: Vec::new(),
            out: Vec::new(),
            client_timer: Box::pin(tokio::time::sleep_until(far)),
            upstream_timer: Timer::new(shared.config.upstream_timeout),
            stopped: Box::pin(stop.cancelled_owned()),
            stopping,
            now: Instant::now(),
            linger: false,
            shared,
        }
    }

    /// Serves requests until the client closes, an error ends the connection or the proxy stops.
    pub(crate) async fn run(mut self) -> Ended {
        let mut tables = self.shared.table.clone();
        let mut route = tables.borrow_and_update().routes.get(&self.listen).cloned();
        let mut first = true;
        loop {
            let head = self.read_head(&mut tables, &mut route, first).await;
            first = false;
            let route = route.as_deref();
            let keep_alive = match head {
                Head::Closed => return Ended::Done,
                Head::H2 => return Ended::H2(Box::new(self)),
                Head::Refuse(status, reason, why) => {
                    let service = route.map_or(self.listen_host.clone(), |r| r.key.clone());
                    self.refuse(status, reason, &service, &why, false).await;
                    return Ended::Done;
                }
                Head::Request(p) => match route {
                    Some(route) => self.request(route, p).await,
                    None => {
                        let listen = self.listen_host.clone();
                        self.refuse(
                            503,
                            "Service Unavailable",
                            &listen,
                            "no service listens here any more",
                            false,
                        )
                        .await;
                        false
                    }
                },
            };
            if !keep_alive || self.stopping.load(Ordering::Relaxed) {
                if self.linger {
                    self.linger_close().await;
                }
                return Ended::Done;
            }
            // The next head is due within the header timeout of this exchange's end, which can
            // be long after its response head (a slow body) or come without one (a 504).
            self.now = Instant::now();
        }
    }

    /// Closes our side, then reads and drops what the client still sends (the rest of a body
    /// the upstream did not want) for a while, as nginx's lingering close does: closing with
    /// unread data would send a reset, and the client could lose the response it has not read.
    async fn linger_close(&mut self) {
        const LINGER: Duration = Duration::from_secs(5);
        if self.client.shutdown().await.is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut sink = [0u8; 16 * 1024];
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, self.client.read(&mut sink)).await {
            if n == 0 {
                return;
            }
        }
    }

    /// Reads the next request head (the connection may idle before it, up to the header
    /// timeout), routes it and writes the upstream head.
    async fn read_head(
        &mut self,
        tables: &mut watch::Receiver<Arc<RoutingTable>>,
        route: &mut Option<Arc<Route>>,
        first: bool,
    ) -> Head {
        let limit = self.shared.config.header_read_timeout;
        let max = self.shared.config.max_header_bytes;
        // When the previous request ended (or the connection was accepted).
        self.client_timer
            .as_mut()
            .reset(tokio::time::Instant::from_std(self.now) + limit);
        loop {
            if !self.cbuf.is_empty() {
                if first
                    && self
                        .cbuf
                        .starts_with(&H2_PREFACE[..self.cbuf.len().min(H2_PREFACE.len())])
                {
                    if self.cbuf.len() >= H2_PREFACE.len() {
                        return Head::H2;
                    }
                } else {
                    // A policy change applies to every request that arrives after it.
                    if tables.has_changed().unwrap_or(false) {
                        *route = tables.borrow_and_update().routes.get(&self.listen).cloned();
                    }
                    if let Some(head) = self.parse_head(route.as_deref(), max) {
                        return head;
                    }
                }
            }
            if self.cbuf.capacity() - self.cbuf.len() < 2048 {
                self.cbuf.reserve(8 * 1024);
            }
            tokio::select! {
                biased;
                r = self.client.read_buf(&mut self.cbuf) => match r {
                    Ok(0) | Err(_) => return Head::Closed,
                    Ok(_) => {}
                },
                // Slow or idle clients are cut off, so they cannot hold connections.
                _ = self.client_timer.as_mut() => return Head::Closed,
                _ = self.stopped.as_mut(), if self.cbuf.is_empty() => return Head::Closed,
            }
        }
    }

    /// `None` while the head is incomplete.
    fn parse_head(&mut self, route: Option<&Route>, max: usize) -> Option<Head> {
        // Left uninitialised: httparse writes the fields it finds, and zeroing a hundred for
        // every request costs more than parsing a typical head.
        let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(&self.cbuf, &mut fields) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if self.cbuf.len() > max => {
                return Some(Head::Refuse(
                    431,
                    "Request Header Fields Too Large",
                    format!("request head larger than {max} bytes"),
                ));
            }
            Ok(httparse::Status::Partial) => return None,
            Err(httparse::Error::TooManyHeaders) => {
                return Some(Head::Refuse(
                    431,
                    "Request Header Fields Too Large",
                    format!("more than {MAX_HEADERS} header fields"),
                ));
            }
            Err(e) => {
                return Some(Head::Refuse(
                    400,
                    "Bad Request",
                    format!("malformed request: {e}"),
                ));
            }
        };
        if len > max {
            return Some(Head::Refuse(
                431,
                "Request Header Fields Too Large",
                format!("request head larger than {max} bytes"),
            ));
        }
        let n = self.shared.request_ids.fetch_add(1, Ordering::Relaxed);
        let fwd = h1::Forwarding {
            client_ip: &self.peer_ip,
            request_id: (self.shared.run_id, n),
            default_host: &self.listen_host,
        };
        let info = match h1::upstream_request(&req, &fwd, &mut self.head) {
            Ok(info) => info,
            Err(r) => {
                let reason = match r.status {
                    405 => "Method Not Allowed",
                    501 => "Not Implemented",
                    _ => "Bad Request",
                };
                return Some(Head::Refuse(r.status, reason, r.why.to_string()));
            }
        };
        let body = &self.cbuf[len..];
        let whole_body = match info.framing {
            Framing::Empty => Some(0),
            Framing::Length(n) => usize::try_from(n).ok().filter(|n| body.len() >= *n),
            Framing::Chunked => {
                let mut c = Chunked::default();
                match c.scan(body, |_| {}) {
                    Ok(n) if c.done() => Some(n),
                    Ok(_) => None,
                    Err(_) => {
                        return Some(Head::Refuse(
                            400,
                            "Bad Request",
                            "malformed chunked body".into(),
                        ));
                    }
                }
            }
            Framing::Close => None,
        };
        let index =
            |b: &Backend| route.and_then(|r| r.backends.iter().position(|x| std::ptr::eq(x, b)));
        let backend = route
            .and_then(|r| r.choose(req.headers as &[_]))
            .and_then(index);
        let mirror = match (route, whole_body) {
            (Some(r), Some(_)) if !info.upgrade => r.mirror().and_then(index),
            _ => None,
        };
        let logged = self.shared.config.access_log.then(|| {
            (
                req.method.unwrap_or("").to_string(),
                req.path.unwrap_or("").to_string(),
            )
        });
        self.cbuf.advance(len);
        Some(Head::Request(Prepared {
            info,
            backend,
            mirror,
            whole_body,
            logged,
        }))
    }

    /// Answers with the proxy's own response; `keep_alive` only when the request was read whole.
    async fn refuse(
        &mut self,
        status: u16,
        reason: &str,
        service: &str,
        why: &str,
        keep_alive: bool,
    ) {
        let body = format!("shipway-proxy: service {service}: {why}\n");
        h1::own_response(&mut self.out, status, reason, &body, keep_alive);
        let _ = self
            .upstream_timer
            .within(self.client.write_all(&self.out))
            .await;
    }

    /// Forwards one request and its response; whether the client connection may be reused.
    async fn request(&mut self, route: &Route, mut p: Prepared) -> bool {
        let started = Instant::now();
        if self.stopping.load(Ordering::Relaxed) {
            p.info.keep_alive = false;
        }
        let Some(backend) = p.backend.and_then(|i| route.backends.get(i)) else {
            let status = 503;
            self.shared
                .metrics
                .record(&route.key, "", status, started.elapsed());
            let keep = p.info.keep_alive && p.whole_body.is_some();
            self.skip_body(&p);
            self.refuse(
                status,
                "Service Unavailable",
                &route.key,
                "no backends",
                keep,
            )
            .await;
            return keep;
        };
        if let Some(m) = p.mirror.and_then(|i| route.backends.get(i)) {
            self.mirror(route, m, &p);
        }
        let (status, keep_alive) = match self.forward(route, backend, &p, started).await {
            Ok(r) => r,
            Err((status, why)) => {
                let latency = started.elapsed();
                self.record(route, backend, status, latency, started + latency);
                let reason = match status {
                    504 => "Gateway Timeout",
                    503 => "Service Unavailable",
                    _ => "Bad Gateway",
                };
                let keep = p.info.keep_alive && p.whole_body.is_some();
                self.skip_body(&p);
                self.refuse(status, reason, &route.key, &why, keep).await;
                (status, keep)
            }
        };
        if let Some((method, target)) = &p.logged {
            let latency = started.elapsed();
            tracing::info!(
                target: "shipway_proxy::access",
                "{} {} {} {method} {target} {status} {:.3}ms",
                self.peer,
                route.key,
                backend.name,
                latency.as_secs_f64() * 1e3
            );
        }
        keep_alive
    }

    /// Counts a response from `backend` (the proxy's own 502/503/504 on its behalf too), its head
    /// `latency` after the request began, at `at`.
    fn record(
        &self,
        route: &Route,
        backend: &Backend,
        status: u16,
        latency: Duration,
        at: Instant,
    ) {
        let stats = backend
            .stats
            .get_or_init(|| self.shared.metrics.handle(&route.key, &backend.name));
        self.shared.metrics.record_to(stats, status, latency, at);
    }

    /// Drops a request body that is already in the buffer, after the proxy answered itself.
    fn skip_body(&mut self, p: &Prepared) {
        if let Some(n) = p.whole_body {
            self.cbuf.advance(n.min(self.cbuf.len()));
        }
    }

    /// Sends a copy of a request whose body is in the buffer to the mirror backend, in its own
    /// task: its response is read and dropped, its failure or slowness never touches the client.
    fn mirror(&self, route: &Route, backend: &Backend, p: &Prepared) {
        let Some((endpoint, _)) = backend.endpoint(backend.start(), 0) else {
            return;
        };
        let mut message = self.head.clone();
        message.extend_from_slice(&self.cbuf[..p.whole_body.unwrap_or(0)]);
        let info = RequestInfo {
            keep_alive: true,
            ..p.info
        };
        let shared = self.shared.clone();
        let (service, name) = (route.key.clone(), format!("{}:mirror", backend.name));
        tokio::spawn(async move {
            let started = Instant::now();
            let mut timer = Timer::new(shared.config.upstream_timeout);
            let exchange = async {
                let mut up = match pool_take(endpoint, started) {
                    Some(s) => s,
                    None => connect(endpoint, shared.config.connect_timeout).await?,
                };
                timer.within(up.write_all(&message)).await?;
                let (mut ubuf, mut out) = (BytesMut::with_capacity(8 * 1024), Vec::new());
                let mut sink = tokio::io::sink();
                let r = response_head(
                    &mut up,
                    &mut ubuf,
                    &mut sink,
                    &info,
                    &AtomicBool::new(true),
                    &mut out,
                    &mut timer,
                )
                .await?;
                let clean = response_body(&mut up, &mut ubuf, &mut sink, &r, &mut out, &mut timer)
                    .await
                    .map_err(|(e, _)| e)?;
                if clean && r.reusable {
                    pool_put(endpoint, up, Instant::now());
                }
                Ok::<u16, Io>(r.status)
            };
            let status = match exchange.await {
                Ok(s) => s,
                Err(Io::Timeout) => 504,
                Err(_) => 502,
            };
            shared
                .metrics
                .record(&service, &name, status, started.elapsed());
        });
    }

    /// Sends the request to an endpoint of `backend` and relays the response. Connect failures
    /// move on to the next endpoint; a pooled connection that turns out closed is replaced;
    /// an idempotent request whose body is in the buffer is retried elsewhere when its
    /// connection breaks before a response, which is how a pod shutting down loses no request.
    /// `Err` is a status and reason for the proxy's own response, before anything was sent.
    async fn forward(
        &mut self,
        route: &Route,
        backend: &Backend,
        p: &Prepared,
        started: Instant,
    ) -> Result<(u16, bool), (u16, String)> {
        let shared = self.shared.clone();
        let config = &shared.config;
        let (limit, connect_timeout) = (config.upstream_timeout, config.connect_timeout);
        if backend.endpoints.is_empty() {
            return Err((
                503,
                format!("no ready endpoints (backend {})", backend.name),
            ));
        }
        // Until the head is written nothing of the request is spent, whatever its body: connect
        // and write failures move on to the next endpoint for every request.
        let attempts = config.connect_attempts.max(1);
        let start = backend.start();
        let mut last_error = String::new();
        let mut attempt = 0;
        let mut replaced_stale = false;
        while attempt < attempts {
            let n = backend.endpoints.len();
            let outliers = &shared.outliers;
            let Some((endpoint, _)) = (0..n)
                .filter_map(|k| backend.endpoint(start, attempt + k))
                .find(|(e, _)| !outliers.ejected(*e))
                .or_else(|| backend.endpoint(start, attempt))
            else {
                break;
            };
            let _in_flight = backend.track_endpoint(endpoint);
            let pooled = if replaced_stale {
                None
            } else {
                pool_take(endpoint, started)
            };
            let reused = pooled.is_some();
            let mut up = match pooled {
                Some(s) => s,
                None => match connect(endpoint, connect_timeout).await {
                    Ok(s) => s,
                    Err(e) => {
                        outliers.failed(endpoint);
                        last_error = format!(
                            "cannot connect to {endpoint} (backend {}): {e}",
                            backend.name
                        );
                        attempt += 1;
                        continue;
                    }
                },
            };
            let sent = match p.whole_body {
                Some(n) if n > 0 && n <= COALESCE => {
                    self.head.extend_from_slice(&self.cbuf[..n]);
                    let r = self.upstream_timer.within(up.write_all(&self.head)).await;
                    self.head.truncate(self.head.len() - n);
                    r
                }
                Some(n) if n > 0 => {
                    let r = self.upstream_timer.within(up.write_all(&self.head)).await;
                    match r {
                        Ok(()) => {
                            self.upstream_timer
                                .within(up.write_all(&self.cbuf[..n]))
                                .await
                        }
                        e => e,
                    }
                }
                _ => self.upstream_timer.within(up.write_all(&self.head)).await,
            };
            if let Err(e) = sent {
                if reused && !replaced_stale {
                    // Closed while it sat in the pool: nothing reached the upstream.
                    pool_forget(endpoint);
                    replaced_stale = true;
                    continue;
                }
                outliers.failed(endpoint);
                last_error = format!("upstream {endpoint} (backend {}) failed: {e}", backend.name);
                attempt += 1;
                continue;
            }
            let result = match p.whole_body {
                Some(_) => self.respond(&mut up, p, started).await,
                None => self.respond_streaming(&mut up, p, started).await,
            };
            match result {
                Ok(Relayed {
                    status,
                    upstream_clean,
                    client_keep_alive,
                    latency,
                }) => {
                    outliers.succeeded(endpoint);
                    // The head's arrival stands in for "now": one clock read fewer.
                    self.now = started + latency;
                    self.record(route, backend, status, latency, self.now);
                    if let Some(n) = p.whole_body {
                        // (A splice has emptied the buffer already.)
                        let n = n.min(self.cbuf.len());
                        self.cbuf.advance(n);
                    }
                    if upstream_clean {
                        pool_put(endpoint, up, self.now);
                    }
                    return Ok((status, client_keep_alive));
                }
                Err(Failed::BeforeResponse(e)) => {
                    let replayable = p.whole_body.is_some();
                    if reused
                        && replayable
                        && p.info.idempotent
                        && !replaced_stale
                        && !matches!(e, Io::Timeout)
                    {
                        pool_forget(endpoint);
                        replaced_stale = true;
                        continue;
                    }
                    if matches!(e, Io::Timeout) {
                        return Err((
                            504,
                            format!(
                                "upstream {endpoint} (backend {}) sent no response within {limit:?}",
                                backend.name
                            ),
                        ));
                    }
                    outliers.failed(endpoint);
                    last_error =
                        format!("upstream {endpoint} (backend {}) failed: {e}", backend.name);
                    if replayable && p.info.idempotent && attempt + 1 < attempts {
                        attempt += 1;
                        continue;
                    }
                    return Err((502, last_error));
                }
                Err(Failed::Invalid(why)) => {
                    return Err((
                        502,
                        format!("upstream {endpoint} (backend {}): {why}", backend.name),
                    ));
                }
                Err(Failed::After(status, latency)) => {
                    // The head went out: the client learns of the failure by the close.
                    self.record(route, backend, status, latency, started + latency);
                    return Ok((status, false));
                }
            }
        }
        Err((502, last_error))
    }

    /// Reads the response and relays it to the client (the request body, if any, is already
    /// sent). An upgrade answered 101 splices the two connections until either closes.
    async fn respond(
        &mut self,
        up: &mut TcpStream,
        p: &Prepared,
        started: Instant,
    ) -> Result<Relayed, Failed> {
        self.ubuf.clear();
        // The body (if any) went out with the head.
        let r = response_head(
            up,
            &mut self.ubuf,
            &mut self.client,
            &p.info,
            &AtomicBool::new(true),
            &mut self.out,
            &mut self.upstream_timer,
        )
        .await
        .map_err(head_failed)?;
        let latency = started.elapsed();
        if r.status == 101 && p.info.upgrade {
            return self
                .splice(up, p.whole_body.unwrap_or(0), r.status, latency)
                .await;
        }
        match response_body(
            up,
            &mut self.ubuf,
            &mut self.client,
            &r,
            &mut self.out,
            &mut self.upstream_timer,
        )
        .await
        {
            Ok(clean) => Ok(Relayed {
                status: r.status,
                upstream_clean: clean && r.reusable,
                client_keep_alive: r.keep_alive,
                latency,
            }),
            Err(_) => Err(Failed::After(r.status, latency)),
        }
    }

    /// The client's side of a 101: the head, then bytes both ways.
    /// `sent` bytes of the read buffer (the request's body) went upstream already.
    async fn splice(
        &mut self,
        up: &mut TcpStream,
        sent: usize,
        status: u16,
        latency: Duration,
    ) -> Result<Relayed, Failed> {
        self.cbuf.advance(sent.min(self.cbuf.len()));
        self.out.extend_from_slice(&self.ubuf);
        self.ubuf.clear();
        if self
            .upstream_timer
            .within(self.client.write_all(&self.out))
            .await
            .is_err()
        {
            return Err(Failed::After(status, latency));
        }
        if !self.cbuf.is_empty() {
            if self
                .upstream_timer
                .within(up.write_all(&self.cbuf))
                .await
                .is_err()
            {
                return Err(Failed::After(status, latency));
            }
            self.cbuf.clear();
        }
        let _ = tokio::io::copy_bidirectional(&mut self.client, up).await;
        Ok(Relayed {
            status,
            upstream_clean: false,
            client_keep_alive: false,
            latency,
        })
    }

    /// A request whose body is still arriving: the body is copied to the upstream while the
    /// response is read, since an upstream may answer first (100 Continue, 413) — and waiting
    /// for the whole body before reading could deadlock with one that does.
    async fn respond_streaming(
        &mut self,
        up: &mut TcpStream,
        p: &Prepared,
        started: Instant,
    ) -> Result<Relayed, Failed> {
        let limit = self.shared.config.upstream_timeout;
        let body_limit = self.shared.config.header_read_timeout.max(limit);
        let mut body_timer = Timer::new(body_limit);
        let Conn {
            client,
            cbuf,
            ubuf,
            out,
            upstream_timer,
            ..
        } = self;
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = up.split();
        let body_complete = AtomicBool::new(false);
        let body = async {
            let r = request_body(&mut cr, cbuf, &mut uw, p.info.framing, &mut body_timer).await;
            body_complete.store(r.is_ok(), Ordering::Relaxed);
            r
        };
        let response = async {
            ubuf.clear();
            let r = response_head(
                &mut ur,
                ubuf,
                &mut cw,
                &p.info,
                &body_complete,
                out,
                upstream_timer,
            )
            .await
            .map_err(head_failed)?;
            let latency = started.elapsed();
            let clean = response_body(&mut ur, ubuf, &mut cw, &r, out, upstream_timer)
                .await
                .map_err(|_| Failed::After(r.status, latency))?;
            Ok(Relayed {
                status: r.status,
                upstream_clean: clean && r.reusable,
                client_keep_alive: r.keep_alive,
                latency,
            })
        };
        tokio::pin!(body, response);
        let mut body_done = false;
        let mut body_whole = false;
        let result = loop {
            tokio::select! {
                biased;
                r = &mut response => break r,
                b = &mut body, if !body_done => {
                    body_done = true;
                    match b {
                        Ok(()) => body_whole = true,
                        // The client went away mid-body: nothing more to answer.
                        Err(BodyError::Client) => break Err(Failed::After(499, started.elapsed())),
                        // The upstream stopped reading: it may still answer (413 and the like).
                        Err(BodyError::Upstream) => {}
                    }
                }
            }
        };
        // A body not read to its end leaves the client connection unusable for another request,
        // and the upstream one too; the client's connection is closed with a linger, so the rest
        // of its body does not turn into a reset that could destroy the response in flight.
        self.linger = !body_whole;
        result.map(|mut r| {
            if !body_whole {
                r.client_keep_alive = false;
                r.upstream_clean = false;
            }
            r
        })
    }
}

/// A response relayed to the client.
struct Relayed {
    status: u16,
    /// The upstream connection ended the exchange cleanly and may be pooled.
    upstream_clean: bool,
    client_keep_alive: bool,
    /// Time to the response head.
    latency: Duration,
}

enum Failed {
    /// Nothing of a response arrived.
    BeforeResponse(Io),
    /// The response head was not HTTP.
    Invalid(String),
    /// The head went out, then the exchange broke; the client connection must close.
    After(u16, Duration),
}

/// A failure while waiting for the response head: a head that is not HTTP, or none at all.
fn head_failed(e: Io) -> Failed {
    match e {
        Io::Failed(e) if e.kind() == io::ErrorKind::InvalidData => Failed::Invalid(e.to_string()),
        e => Failed::BeforeResponse(e),
    }
}

enum BodyError {
    Client,
    Upstream,
}

async fn connect(endpoint: SocketAddr, limit: Duration) -> Result<TcpStream, Io> {
    let stream = match tokio::time::timeout(limit, TcpStream::connect(endpoint)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Io::Failed(e)),
        Err(_) => return Err(Io::Timeout),
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Reads the final response head into `out` (rewritten for the client), passing interim (1xx)
/// responses on to HTTP/1.1 clients as they come. The body's first bytes stay in `ubuf`.
async fn response_head<R, W>(
    up: &mut R,
    ubuf: &mut BytesMut,
    client: &mut W,
    req: &RequestInfo,
    body_complete: &AtomicBool,
    out: &mut Vec<u8>,
    timer: &mut Timer,
) -> Result<ResponseInfo, Io>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let invalid = |why: String| Io::Failed(io::Error::new(io::ErrorKind::InvalidData, why));
    loop {
        if !ubuf.is_empty() {
            let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
            let mut resp = httparse::Response::new(&mut []);
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut resp,
                ubuf,
                &mut fields,
            ) {
                Ok(httparse::Status::Complete(n)) => {
                    let code = resp.code.unwrap_or(0);
                    if (100..200).contains(&code) && !(code == 101 && req.upgrade) {
                        let interim = !req.http10;
                        if interim {
                            out.clear();
                            out.extend_from_slice(&ubuf[..n]);
                        }
                        ubuf.advance(n);
                        if interim {
                            timer.within(client.write_all(out)).await?;
                        }
                        continue;
                    }
                    // An answer before the request body has all arrived (413, 417) ends the
                    // connection: the rest of the body is not read, so say so in the head.
                    let req = &RequestInfo {
                        keep_alive: req.keep_alive && body_complete.load(Ordering::Relaxed),
                        ..*req
                    };
                    let r = h1::client_response(&resp, req, out)
                        .map_err(|r| invalid(r.why.to_string()))?;
                    ubuf.advance(n);
                    return Ok(r);
                }
                Ok(httparse::Status::Partial) if ubuf.len() > MAX_RESPONSE_HEAD => {
                    return Err(invalid(format!(
                        "response head larger than {MAX_RESPONSE_HEAD} bytes"
                    )));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(invalid(format!("malformed response: {e}"))),
            }
        }
        fill(up, ubuf, timer).await?;
    }
}

/// Writes `piece` to the client, behind the response head in `out` while that is still unsent
/// (in one write when the piece is small).
async fn send<W: AsyncWrite + Unpin>(
    client: &mut W,
    timer: &mut Timer,
    out: &mut Vec<u8>,
    head_pending: &mut bool,
    piece: &[u8],
) -> Result<(), (Io, bool)> {
    if std::mem::take(head_pending) {
        if piece.len() <= COALESCE {
            out.extend_from_slice(piece);
            return timer
                .within(client.write_all(out))
                .await
                .map_err(|e| (e, true));
        }
        timer
            .within(client.write_all(out))
            .await
            .map_err(|e| (e, true))?;
    }
    if piece.is_empty() {
        return Ok(());
    }
    timer
        .within(client.write_all(piece))
        .await
        .map_err(|e| (e, true))
}

fn bad_chunk() -> (Io, bool) {
    let e = io::Error::new(io::ErrorKind::InvalidData, "malformed chunked body");
    (Io::Failed(e), false)
}

/// Copies the response body (framed as `r` says) to the client behind the head in `out`.
/// `Ok(true)` when the upstream connection ended exactly at the body's end. On `Err`, whether
/// the client side (`true`) failed.
async fn response_body<R, W>(
    up: &mut R,
    ubuf: &mut BytesMut,
    client: &mut W,
    r: &ResponseInfo,
    out: &mut Vec<u8>,
    timer: &mut Timer,
) -> Result<bool, (Io, bool)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut pending = true;
    match r.framing {
        Framing::Empty => {
            send(client, timer, out, &mut pending, &[]).await?;
            Ok(ubuf.is_empty())
        }
        Framing::Length(total) => {
            let mut left = total;
            loop {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(ubuf.len());
                send(client, timer, out, &mut pending, &ubuf[..take]).await?;
                ubuf.advance(take);
                left -= take as u64;
                if left == 0 {
                    return Ok(ubuf.is_empty());
                }
                ubuf.clear();
                fill(up, ubuf, timer).await.map_err(|e| (e, false))?;
            }
        }
        Framing::Chunked if !r.dechunk => {
            let mut chunks = Chunked::default();
            loop {
                let take = chunks.scan(ubuf, |_| {}).map_err(|_| bad_chunk())?;
                send(client, timer, out, &mut pending, &ubuf[..take]).await?;
                ubuf.advance(take);
                if chunks.done() {
                    return Ok(ubuf.is_empty());
                }
                ubuf.clear();
                fill(up, ubuf, timer).await.map_err(|e| (e, false))?;
            }
        }
        Framing::Chunked => {
            // An HTTP/1.0 client: the chunks' data only, ended by the close.
            let mut chunks = Chunked::default();
            let mut data = Vec::new();
            loop {
                data.clear();
                let take = chunks
                    .scan(ubuf, |d| data.extend_from_slice(d))
                    .map_err(|_| bad_chunk())?;
                send(client, timer, out, &mut pending, &data).await?;
                ubuf.advance(take);
                if chunks.done() {
                    return Ok(ubuf.is_empty());
                }
                ubuf.clear();
                fill(up, ubuf, timer).await.map_err(|e| (e, false))?;
            }
        }
        Framing::Close => loop {
            send(client, timer, out, &mut pending, ubuf).await?;
            ubuf.clear();
            match fill(up, ubuf, timer).await {
                Ok(()) => {}
                Err(Io::Closed) => return Ok(false),
                Err(e) => return Err((e, false)),
            }
        },
    }
}

/// Copies a request body still arriving from the client to the upstream.
async fn request_body<R, W>(
    client: &mut R,
    cbuf: &mut BytesMut,
    up: &mut W,
    framing: Framing,
    timer: &mut Timer,
) -> Result<(), BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut left = match framing {
        Framing::Length(n) => n,
        Framing::Empty | Framing::Close => return Ok(()),
        Framing::Chunked => u64::MAX,
    };
    let mut chunks = Chunked::default();
    loop {
        let take = if framing == Framing::Chunked {
            chunks.scan(cbuf, |_| {}).map_err(|_| BodyError::Client)?
        } else {
            usize::try_from(left).unwrap_or(usize::MAX).min(cbuf.len())
        };
        if take > 0 {
            timer
                .within(up.write_all(&cbuf[..take]))
                .await
                .map_err(|_| BodyError::Upstream)?;
            cbuf.advance(take);
            if framing != Framing::Chunked {
                left -= take as u64;
            }
        }
        if left == 0 || chunks.done() {
            return Ok(());
        }
        fill(client, cbuf, timer)
            .await
            .map_err(|_| BodyError::Client)?;
    }
}
