//! The proxy's workers and listeners: a thread per worker with its own runtime, one socket per
//! route address ([`Listeners`]) that every worker accepts from, connections handed to the HTTP/1
//! path (`conn`), to hyper for HTTP/2 (`h2`) or passed through as plain TCP; passive ejection of
//! failing endpoints, shared by all.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::header::HeaderMap;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::ProxyMetrics;
use crate::table::{Route, RoutingTable};

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
    /// Worker threads, each with its own single-threaded runtime, listeners (dups of one socket) and
    /// upstream pool, as nginx runs worker processes: a request never crosses threads. 0 = one
    /// per core.
    pub workers: usize,
    /// Listen on addresses other than loopback ones (`shipway up --proxy-allow-public`):
    /// otherwise a Service asking for `0.0.0.0:80` gets no listener and a condition saying why.
    pub allow_public: bool,
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
            allow_public: false,
        }
    }
}

/// What a worker's connections share.
pub(crate) struct Shared {
    pub(crate) table: watch::Receiver<Arc<RoutingTable>>,
    /// HTTP/2 clients' requests go upstream through hyper's pool; HTTP/1 ones through
    /// [`crate::conn`]'s.
    pub(crate) client: Client<HttpConnector, ProxyBody>,
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

/// The proxy's listening sockets, one per address, shared by the workers and by discovery
/// (which binds first, so a Service's status says whether its address could be had).
///
/// Without `SO_REUSEPORT`: with it, any socket of the same user could join an address's group and
/// take a share of its connections, such as a second `shipway up`. Each worker accepts from a dup
/// of the one socket instead (one accept queue).
#[derive(Clone, Default)]
pub struct Listeners(Arc<std::sync::Mutex<HashMap<SocketAddr, std::net::TcpListener>>>);

impl Listeners {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, std::net::TcpListener>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Binds `addr` unless it is bound already.
    pub fn bind(&self, addr: SocketAddr) -> std::io::Result<()> {
        let mut map = self.lock();
        if let std::collections::hash_map::Entry::Vacant(e) = map.entry(addr) {
            // std sets SO_REUSEADDR (a restart can bind over TIME_WAIT), never SO_REUSEPORT.
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            e.insert(l);
        }
        Ok(())
    }

    /// A handle on the socket of `addr`, bound now if it is not yet.
    fn handle(&self, addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
        self.bind(addr)?;
        self.lock()
            .get(&addr)
            .ok_or_else(|| std::io::Error::other("listener released"))?
            .try_clone()
    }

    /// Closes the sockets of addresses not in `keep` (workers close their handles as they see the
    /// table that dropped them).
    pub fn retain(&self, keep: impl Fn(&SocketAddr) -> bool) {
        self.lock().retain(|a, _| keep(a));
    }
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
        Self::run(table, metrics, config, Listeners::default(), true, shutdown)
    }

    /// [`Proxy::start`] with the sockets discovery binds (and closes).
    pub fn start_with(
        table: watch::Receiver<Arc<RoutingTable>>,
        metrics: Arc<ProxyMetrics>,
        config: ProxyConfig,
        sockets: Listeners,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        Self::run(table, metrics, config, sockets, false, shutdown)
    }

    /// `release`: the workers close the sockets of addresses the table drops (nobody else does).
    fn run(
        table: watch::Receiver<Arc<RoutingTable>>,
        metrics: Arc<ProxyMetrics>,
        config: ProxyConfig,
        sockets: Listeners,
        release: bool,
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
            let (table, shutdown, sockets) = (table.clone(), shutdown.clone(), sockets.clone());
            let worker = std::thread::Builder::new()
                .name(format!("shipway-proxy-{i}"))
                .spawn(move || {
                    crate::worker::set(i);
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(manage(shared, table, sockets, release, shutdown)),
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

/// This worker's listener on `addr`: a dup of the one socket of `addr`.
fn bind(sockets: &Listeners, addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(sockets.handle(addr)?)
}

/// Keeps one listener per address in the table.
async fn manage(
    shared: Arc<Shared>,
    mut table: watch::Receiver<Arc<RoutingTable>>,
    sockets: Listeners,
    release: bool,
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
        if release {
            sockets.retain(|a| wanted.iter().any(|(w, _)| w == a));
        }
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
            match bind(&sockets, addr) {
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
    // Permits are counted in u32 by `acquire_many`, which the drain below uses.
    let max = u32::try_from(
        shared
            .config
            .max_connections
            .clamp(1, Semaphore::MAX_PERMITS),
    )
    .unwrap_or(u32::MAX);
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
                crate::h2::serve(shared, addr, *conn, peer, watcher).await;
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

/// The route of a listen address in the table as it is now.
pub(crate) fn route(shared: &Shared, listen: SocketAddr) -> Option<Arc<Route>> {
    shared.table.borrow().routes.get(&listen).cloned()
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
