//! Shipway's HTTP API server: the one place that speaks HTTP to users.
//!
//! Newcomers: start with [`Server::start`] (data directory lock, tokens, store, listener) and
//! [`router`] (every route and which need a token); handlers live in `api`, and `error` is the one
//! place errors become HTTP statuses.
//!
//! *API Boundary*: routes under `/api/v1` take and return JSON objects shaped like Kubernetes'
//! (objects, `List`, `Status` errors, NDJSON watch events). The CLI is a client of exactly this.

pub mod api;
pub mod auth;
pub mod error;
pub mod listener;
pub mod metrics;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shipway_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::{ADMIN_TOKEN_FILE, AdminToken, Tokens};
pub use error::{ApiError, Status};
pub use listener::ListenerConfig;
/// `Config::proxy`'s type, so callers need not depend on the proxy crate to fill it in.
pub use shipway_proxy::ProxyConfig;

/// The default address: loopback only, so nothing is exposed until the operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// The SQLite database file inside the data directory.
pub const SQLITE_FILE: &str = "shipway.db";
const LOCK_FILE: &str = "shipway.lock";

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://...`; None is the embedded SQLite database in the data directory.
    pub database: Option<String>,
    /// Timeouts, workers and access log of the built-in proxy.
    pub proxy: shipway_proxy::ProxyConfig,
    /// Timeouts and connection limit of the API listener.
    pub listener: ListenerConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another `shipway up`{pid} is already using the data directory {path}; stop it, or start this one with a different --data"
    )]
    AlreadyRunning { path: PathBuf, pid: String },
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("cannot open the store: {0}")]
    Store(#[from] shipway_store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub tokens: Tokens,
    pub metrics: metrics::HttpMetrics,
    /// Cancelled on shutdown, so endless watch streams end, controllers stop and graceful shutdown
    /// can finish.
    pub shutdown: CancellationToken,
    pub data_dir: PathBuf,
    /// Requests through the built-in proxy; rendered at `/metrics` and queried by analysis.
    pub proxy_metrics: Arc<shipway_proxy::ProxyMetrics>,
}

/// The authenticated caller of a request. Taking it as a handler argument is what makes a route
/// require a token: it rejects with 401 otherwise. [`authenticate`] finds it before routing.
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: String,
    pub role: String,
}

impl Caller {
    /// The caller a request's `Authorization` field names, if its token is valid. The scheme is
    /// case-insensitive (RFC 7235 §2.1): `Bearer`, `bearer` and `BEARER` are one.
    fn of(headers: &axum::http::HeaderMap, tokens: &Tokens) -> Option<Caller> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim_start().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let record = tokens.verify(token.trim())?;
        Some(Caller {
            name: record.name.clone(),
            role: record.role.clone(),
        })
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Caller, ApiError> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        Caller::of(&parts.headers, &state.tokens).ok_or(ApiError::Unauthorized)
    }
}

/// Holds an exclusive lock on the data directory for the life of the server.
struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    fn acquire(dir: &Path) -> Result<DataDirLock, ServerError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| ServerError::DataDir {
            path: dir.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(ServerError::AlreadyRunning {
                    path: dir.to_path_buf(),
                    pid: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // The pid is for the message a second instance prints; the lock itself is what excludes it,
        // and the kernel releases it when this process dies, even by SIGKILL.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

/// Creates the data directory 0700, or makes an existing one 0700 if others may read, write or
/// enter it, saying so: it holds Secret values, tokens and logs. Files inside are created 0600
/// by whoever writes them.
fn private_data_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        tracing::warn!(
            "data directory {} was mode {mode:04o}, readable or writable by other users; changed it to 0700",
            dir.display()
        );
    }
    Ok(())
}

/// A started server: the data directory is locked, the store open and the port bound.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    runtime: shipway_runtime::LocalRuntime,
    /// The proxy's discovery task and listener manager.
    proxy: [tokio::task::JoinHandle<()>; 2],
    /// The shared cache's watch of the store.
    reflector: tokio::task::JoinHandle<()>,
    admin_token: AdminToken,
    limits: ListenerConfig,
    _lock: DataDirLock,
}

impl Server {
    pub async fn start(config: Config) -> Result<Server, ServerError> {
        let dir = &config.data_dir;
        private_data_dir(dir).map_err(|source| ServerError::DataDir {
            path: dir.clone(),
            source,
        })?;
        // Lock before anything else touches the directory, so a second instance changes nothing.
        let lock = DataDirLock::acquire(dir)?;
        let (tokens, admin_token) = Tokens::load_or_init(dir)?;
        let store = match &config.database {
            // One server per database: its controllers and kubelet would otherwise run every
            // Pod twice.
            Some(url) => {
                let options = shipway_store::StoreOptions {
                    exclusive: true,
                    ..Default::default()
                };
                Store::open_with(url, options).await?
            }
            None => Store::open_sqlite(&dir.join(SQLITE_FILE)).await?,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let shutdown = CancellationToken::new();
        // The process's one watch of the store, shared by every controller.
        let (cache, reflector) =
            shipway_controller::Reflector::spawn(store.clone(), shutdown.clone());
        let runtime = shipway_runtime::LocalRuntime::start(
            store.clone(),
            cache.clone(),
            shipway_runtime::KubeletConfig::new(dir),
            shutdown.clone(),
        );
        // Discovery turns Services, Endpoints, Pods and TrafficPolicies into routing tables (and
        // drops the metrics of Services that are gone); the proxy serves each table it is handed.
        let proxy_metrics = shipway_proxy::ProxyMetrics::new();
        // Discovery binds each Service address in the sockets the proxy serves from, so a Service
        // whose address is taken (by another Service, the API or another process) says so.
        let sockets = shipway_proxy::Listeners::default();
        let api = listener.local_addr().unwrap_or(config.listen);
        let options = shipway_proxy::discovery::Options {
            listeners: Some(sockets.clone()),
            reserved: vec![(api, "the API listener (shipway up --listen)".into())],
            allow_public: config.proxy.allow_public,
        };
        let (tables, discovery) = shipway_proxy::discovery::spawn_with(
            store.clone(),
            cache,
            Some(proxy_metrics.clone()),
            options,
            shutdown.clone(),
        );
        let proxy = shipway_proxy::Proxy::start_with(
            tables,
            proxy_metrics.clone(),
            config.proxy.clone(),
            sockets,
            shutdown.clone(),
        );
        let state = Arc::new(AppState {
            store,
            tokens,
            metrics: metrics::HttpMetrics::default(),
            shutdown,
            data_dir: dir.clone(),
            proxy_metrics,
        });
        Ok(Server {
            listener,
            state,
            runtime,
            proxy: [discovery, proxy],
            reflector,
            admin_token,
            limits: config.listener.clone(),
            _lock: lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn admin_token(&self) -> &AdminToken {
        &self.admin_token
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// The proxy's metrics: success rate and latency percentiles per Service and backend.
    pub fn proxy_metrics(&self) -> &Arc<shipway_proxy::ProxyMetrics> {
        &self.state.proxy_metrics
    }

    /// Serves until `shutdown` completes, then stops accepting, ends watch streams, waits for
    /// in-flight requests, and stops the controllers (and with them the pods' processes) and the
    /// proxy (its listeners finish their in-flight requests first).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let cancel = self.state.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown => cancel.cancel(),
                _ = cancel.cancelled() => {}
            }
        });
        let app = router(self.state.clone());
        listener::serve(self.listener, app, self.limits, self.state.shutdown.clone()).await;
        self.state.shutdown.cancel();
        self.runtime.join().await;
        for task in self.proxy {
            let _ = task.await;
        }
        let _ = self.reflector.await;
        Ok(())
    }
}

/// Every route. Only `GET`/`HEAD` of `/healthz` and `/readyz` answer without a token.
pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/api/v1/version", get(api::version))
        .route("/api/v1/apply", axum::routing::post(api::apply))
        .route("/api/v1/resources/{resource}", get(api::list))
        .route(
            "/api/v1/resources/{resource}/{name}",
            get(api::get).delete(api::delete),
        )
        .route("/api/v1/watch", get(api::watch))
        .route("/api/v1/watch/{resource}", get(api::watch))
        .route("/api/v1/events", get(api::events))
        .route("/api/v1/events/{resource}", get(api::events))
        .route("/api/v1/logs/{namespace}/{pod}", get(api::logs))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(
            shipway_model::load::MAX_DOCUMENT_BYTES,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .with_state(state.clone());
    // `Router::layer` runs after routing, where a wrong method is already a 405 listing the
    // allowed ones: authentication wraps the whole router instead, so it comes first.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn_with_state(state, authenticate))
}

/// Paths anyone may `GET`: liveness and readiness probes carry no token.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Refuses every request without a valid token, before routing, with one and the same 401:
/// an anonymous caller learns neither which paths exist nor which methods they allow.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let open = matches!(*request.method(), Method::GET | Method::HEAD)
        && OPEN_PATHS.contains(&request.uri().path());
    if !open {
        let start = Instant::now();
        match Caller::of(request.headers(), &state.tokens) {
            Some(caller) => {
                request.extensions_mut().insert(caller);
            }
            None => {
                let response = ApiError::Unauthorized.into_response();
                state.metrics.observe(
                    request.method(),
                    metrics::UNMATCHED,
                    response.status().as_u16(),
                    start.elapsed(),
                );
                return response;
            }
        }
    }
    next.run(request).await
}

/// The routes `router` serves, for tests that must cover each one.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/metrics"),
    ("GET", "/api/v1/version"),
    ("POST", "/api/v1/apply"),
    ("GET", "/api/v1/resources/{resource}"),
    ("GET", "/api/v1/resources/{resource}/{name}"),
    ("DELETE", "/api/v1/resources/{resource}/{name}"),
    ("GET", "/api/v1/watch"),
    ("GET", "/api/v1/watch/{resource}"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/events/{resource}"),
    ("GET", "/api/v1/logs/{namespace}/{pod}"),
];

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.current_resource_version().await {
        Ok(_) => "ok\n".into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store not ready: {e}\n"),
        )
            .into_response(),
    }
}

async fn metrics_handler(State(state): State<Arc<AppState>>, _caller: Caller) -> Response {
    let mut out = String::new();
    state.metrics.render(&mut out);
    out.push_str(&state.store.metrics_text());
    state.proxy_metrics.render(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Unknown paths need a token too, so an anonymous caller learns nothing about which routes exist.
async fn fallback(_caller: Caller, request: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route {} {}",
        request.method(),
        request.uri().path()
    ))
}

async fn record_metrics(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    // Templates only: a raw path would let callers mint series.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| metrics::UNMATCHED.to_string());
    let response = next.run(request).await;
    state
        .metrics
        .observe(&method, &route, response.status().as_u16(), start.elapsed());
    response
}
