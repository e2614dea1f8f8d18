//! Shipway's HTTP API server: the one place that speaks HTTP to users.
//!
//! Newcomers: start with [`ApiServer::bind`] (what the server is given: a `Store` for reads, a
//! `Runtime` for writes and logs, the tokens, and other components' metrics) and [`routes`] (the
//! one route table: every route with the role it needs); handlers live in `api`, roles and
//! tokens in `auth`, and `error` is the one place errors become HTTP statuses. The platform
//! around it (store, runtime, proxy) is composed by `shipway-app`.
//!
//! *API Boundary*: routes under `/api/v1` take and return JSON objects shaped like Kubernetes'
//! (objects, `List`, `Status` errors, NDJSON watch events). The CLI is a client of exactly this.

pub mod api;
pub mod auth;
pub mod error;
pub mod git;
pub mod listener;
pub mod metrics;
mod review;
pub mod settings;
mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{
    DefaultBodyLimit, FromRequestParts, MatchedPath, Query, RawPathParams, Request, State,
};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use shipway_model::{Key, Kinds};
use shipway_runtime::Runtime;
use shipway_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::{ADMIN_TOKEN_FILE, AdminToken, Role, Tokens};
pub use error::{ApiError, Status};
pub use listener::ListenerConfig;

/// The default address: loopback only, so nothing is exposed until the operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Another component's Prometheus text, appended to `/metrics` (the proxy's series): the server
/// renders what it is handed and knows nothing of the component.
pub trait MetricsSource: Send + Sync {
    fn render(&self, out: &mut String);
}

/// What every handler shares.
pub struct AppState {
    /// Reads: get, list, watch, events.
    pub store: Store,
    /// Writes (through admission) and logs.
    pub runtime: Arc<dyn Runtime>,
    pub tokens: Tokens,
    pub metrics: metrics::HttpMetrics,
    /// Cancelled on shutdown, so endless watch and log streams end and graceful shutdown can
    /// finish.
    pub shutdown: CancellationToken,
    /// Rendered at `/metrics` after the server's and the store's own series.
    pub metrics_sources: Vec<Arc<dyn MetricsSource>>,
    /// The hosted repositories served at `/git/NAME.git` (none: every such path is a 404).
    pub hosted: Option<Arc<shipway_git::hosted::Hosted>>,
    /// git's own CGI, `$(git --exec-path)/git-http-backend`.
    pub git_backend: std::path::PathBuf,
}

/// The authenticated caller of a request. Taking it as a handler argument is what makes a route
/// require a token: it rejects with 401 otherwise. [`authenticate`] finds it before routing and
/// [`authorize`] checks its role against the route's.
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// The caller a request's `Authorization` field names, if its token is valid: `Bearer
    /// TOKEN`, or HTTP Basic with the token as the password (the user name is ignored), which
    /// is what the git CLI sends. The scheme is case-insensitive (RFC 7235 §2.1).
    fn of(headers: &axum::http::HeaderMap, tokens: &Tokens) -> Option<Caller> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim_start().split_once(' ')?;
        let token = if scheme.eq_ignore_ascii_case("bearer") {
            token.trim().to_string()
        } else if scheme.eq_ignore_ascii_case("basic") {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(token.trim())
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            decoded.split_once(':')?.1.to_string()
        } else {
            return None;
        };
        let identity = tokens.verify(&token)?;
        Some(Caller {
            name: identity.user,
            role: identity.role,
        })
    }

    /// Whether the caller is a workflow run's steps (their `SHIPWAY_TOKEN`), not a person.
    pub fn is_run(&self) -> bool {
        self.name.starts_with(auth::RUN_USER_PREFIX)
    }

    /// The writer of this caller's requests, for the audit trail.
    pub fn actor(&self) -> shipway_model::Actor {
        shipway_model::Actor::user(self.name.clone())
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

/// A bound API server, not yet serving.
pub struct ApiServer {
    listener: TcpListener,
    state: Arc<AppState>,
    limits: ListenerConfig,
}

impl ApiServer {
    /// Binds `listen`. The server reads through `store`, writes and reads logs through
    /// `runtime`, accepts `tokens`, and appends `metrics_sources` to `/metrics`.
    pub async fn bind(
        listen: SocketAddr,
        limits: ListenerConfig,
        store: Store,
        runtime: Arc<dyn Runtime>,
        tokens: Tokens,
        metrics_sources: Vec<Arc<dyn MetricsSource>>,
    ) -> Result<ApiServer, ServerError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: listen,
                source,
            })?;
        let state = Arc::new(AppState {
            store,
            runtime,
            tokens,
            metrics: metrics::HttpMetrics::default(),
            shutdown: CancellationToken::new(),
            metrics_sources,
            hosted: None,
            git_backend: git_backend(),
        });
        Ok(ApiServer {
            listener,
            state,
            limits,
        })
    }

    /// Serves `hosted`'s repositories at `/git/NAME.git`. Before [`ApiServer::serve`] only.
    pub fn with_hosted(mut self, hosted: Arc<shipway_git::hosted::Hosted>) -> ApiServer {
        if let Some(state) = Arc::get_mut(&mut self.state) {
            state.hosted = Some(hosted);
        }
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, ends watch and log streams
    /// and waits for in-flight requests.
    pub async fn serve(self, shutdown: CancellationToken) {
        let ours = self.state.shutdown.clone();
        let app = router(self.state.clone());
        let stop = tokio::spawn(async move {
            shutdown.cancelled().await;
            ours.cancel();
        });
        listener::serve(self.listener, app, self.limits, self.state.shutdown.clone()).await;
        stop.abort();
    }
}

/// `$(git --exec-path)/git-http-backend`, or `git-http-backend` on the PATH when git cannot say.
fn git_backend() -> std::path::PathBuf {
    let exec = std::process::Command::new("git")
        .arg("--exec-path")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match exec {
        Some(dir) if !dir.is_empty() => std::path::Path::new(&dir).join("git-http-backend"),
        _ => "git-http-backend".into(),
    }
}

/// One route: what it answers and the least role that may call it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    /// `None`: open to anyone (the health probes). Otherwise a token whose role is at least this.
    pub role: Option<Role>,
    /// The verb a refusal names, as Kubernetes' RBAC words it (`get`, `list`, `delete`...).
    pub verb: &'static str,
}

/// The one route table: [`router`] is built from it and tests iterate [`routes`], so a route
/// cannot be served without a role or be missed by the tests.
fn table() -> Vec<(Route, MethodRouter<Arc<AppState>>)> {
    use Role::{Admin, Deployer, Viewer};
    let route = |method: Method, path, role, verb| Route {
        method,
        path,
        role,
        verb,
    };
    let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
    vec![
        (
            route(get.clone(), "/healthz", None, "get"),
            on(MethodFilter::GET, healthz),
        ),
        (
            route(get.clone(), "/readyz", None, "get"),
            on(MethodFilter::GET, readyz),
        ),
        (
            route(get.clone(), "/metrics", Some(Viewer), "get"),
            on(MethodFilter::GET, metrics_handler),
        ),
        (
            route(get.clone(), "/api/v1/version", Some(Viewer), "get"),
            on(MethodFilter::GET, api::version),
        ),
        (
            route(post.clone(), "/api/v1/apply", Some(Deployer), "apply"),
            on(MethodFilter::POST, api::apply),
        ),
        (
            route(
                get.clone(),
                "/api/v1/resources/{resource}",
                Some(Viewer),
                "list",
            ),
            on(MethodFilter::GET, api::list),
        ),
        (
            route(
                get.clone(),
                "/api/v1/resources/{resource}/{name}",
                Some(Viewer),
                "get",
            ),
            on(MethodFilter::GET, api::get),
        ),
        (
            route(
                delete.clone(),
                "/api/v1/resources/{resource}/{name}",
                Some(Deployer),
                "delete",
            ),
            on(MethodFilter::DELETE, api::delete),
        ),
        (
            route(
                Method::PATCH,
                "/api/v1/resources/{resource}/{name}",
                Some(Deployer),
                "patch",
            ),
            on(MethodFilter::PATCH, api::patch),
        ),
        (
            route(get.clone(), "/api/v1/watch", Some(Viewer), "watch"),
            on(MethodFilter::GET, api::watch),
        ),
        (
            route(
                get.clone(),
                "/api/v1/watch/{resource}",
                Some(Viewer),
                "watch",
            ),
            on(MethodFilter::GET, api::watch),
        ),
        (
            route(get.clone(), "/api/v1/events", Some(Viewer), "list"),
            on(MethodFilter::GET, api::events),
        ),
        (
            route(
                get.clone(),
                "/api/v1/events/{resource}",
                Some(Viewer),
                "list",
            ),
            on(MethodFilter::GET, api::events),
        ),
        (
            route(
                get.clone(),
                "/api/v1/logs/{namespace}/{pod}",
                Some(Viewer),
                "get",
            ),
            on(MethodFilter::GET, api::logs),
        ),
        (
            route(
                get.clone(),
                "/api/v1/runs/{namespace}/{name}/logs",
                Some(Viewer),
                "get",
            ),
            on(MethodFilter::GET, api::run_logs),
        ),
        (
            route(
                post.clone(),
                "/api/v1/runs/{namespace}/{name}/reviews",
                Some(Deployer),
                "review",
            ),
            on(MethodFilter::POST, review::review),
        ),
        (
            route(
                post.clone(),
                "/api/v1/repos/{repo}/workflows/{workflow}/dispatches",
                Some(Deployer),
                "create",
            ),
            on(MethodFilter::POST, api::dispatch),
        ),
        (
            route(get.clone(), "/api/v1/tokens", Some(Admin), "list"),
            on(MethodFilter::GET, api::list_tokens),
        ),
        (
            route(post.clone(), "/api/v1/tokens", Some(Admin), "create"),
            on(MethodFilter::POST, api::create_token),
        ),
        (
            route(
                delete.clone(),
                "/api/v1/tokens/{name}",
                Some(Admin),
                "delete",
            ),
            on(MethodFilter::DELETE, api::delete_token),
        ),
        (
            route(get.clone(), "/api/v1/users", Some(Admin), "list"),
            on(MethodFilter::GET, api::list_users),
        ),
        (
            route(post.clone(), "/api/v1/users", Some(Admin), "create"),
            on(MethodFilter::POST, api::create_user),
        ),
        (
            route(
                delete.clone(),
                "/api/v1/users/{name}",
                Some(Admin),
                "delete",
            ),
            on(MethodFilter::DELETE, api::delete_user),
        ),
        // Pipeline secrets and variables: admins write; viewers read names (and variables'
        // values); a secret's value is never returned.
        (
            route(get.clone(), "/api/v1/secrets", Some(Viewer), "list"),
            on(MethodFilter::GET, settings::list_secrets),
        ),
        (
            route(Method::PUT, "/api/v1/secrets/{name}", Some(Admin), "update"),
            on(MethodFilter::PUT, settings::put_secret),
        ),
        (
            route(
                delete.clone(),
                "/api/v1/secrets/{name}",
                Some(Admin),
                "delete",
            ),
            on(MethodFilter::DELETE, settings::delete_secret),
        ),
        (
            route(get.clone(), "/api/v1/variables", Some(Viewer), "list"),
            on(MethodFilter::GET, settings::list_variables),
        ),
        (
            route(get.clone(), "/api/v1/variables/{name}", Some(Viewer), "get"),
            on(MethodFilter::GET, settings::get_variable),
        ),
        (
            route(
                Method::PUT,
                "/api/v1/variables/{name}",
                Some(Admin),
                "update",
            ),
            on(MethodFilter::PUT, settings::put_variable),
        ),
        (
            route(
                delete.clone(),
                "/api/v1/variables/{name}",
                Some(Admin),
                "delete",
            ),
            on(MethodFilter::DELETE, settings::delete_variable),
        ),
        // Push notifications from git hosts: no token, the signature is the credential
        // (checked by the handler against the matching Repository's webhook secret).
        (
            route(post.clone(), "/api/v1/webhooks/git", None, "create"),
            on(MethodFilter::POST, webhook::git),
        ),
        // Hosted git: viewers fetch; pushing (receive-pack) needs a deployer, checked by the
        // handler since the service is named in the path or the query.
        (
            route(get.clone(), "/git/{repo}/{*rest}", Some(Viewer), "get"),
            on(MethodFilter::GET, git::serve),
        ),
        (
            route(post.clone(), "/git/{repo}/{*rest}", Some(Viewer), "get"),
            on(MethodFilter::POST, git::serve).layer(DefaultBodyLimit::disable()),
        ),
    ]
}

/// Every route the server answers, with the role each needs.
pub fn routes() -> Vec<Route> {
    table().into_iter().map(|(route, _)| route).collect()
}

/// Every route of [`routes`], each behind its role check. Only the open routes (see
/// [`is_open`]) answer without a token.
pub fn router(state: Arc<AppState>) -> Router {
    let mut routes = Router::new();
    for (route, handler) in table() {
        let handler = match route.role {
            Some(_) => handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), route.clone()),
                authorize,
            )),
            None => handler,
        };
        // Routes of one path with different methods merge into one method router.
        routes = routes.route(route.path, handler);
    }
    let routes = routes
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

/// Whether a request may go without a token: liveness and readiness probes (`GET`, and
/// `HEAD` with them), and webhook deliveries (`POST`, authenticated by their signature).
fn is_open(method: &Method, path: &str) -> bool {
    routes().into_iter().any(|r| {
        r.role.is_none()
            && r.path == path
            && (r.method == *method || (r.method == Method::GET && *method == Method::HEAD))
    })
}

/// Refuses every request without a valid token, before routing, with one and the same 401:
/// an anonymous caller learns neither which paths exist nor which methods they allow.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let open = is_open(request.method(), request.uri().path());
    if !open {
        let start = Instant::now();
        match Caller::of(request.headers(), &state.tokens) {
            Some(caller) => {
                request.extensions_mut().insert(caller);
            }
            None => {
                let mut response = ApiError::Unauthorized.into_response();
                // The git CLI answers a Basic challenge with the credentials it is given.
                if request.uri().path().starts_with("/git/") {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        axum::http::HeaderValue::from_static("Basic realm=\"shipway\""),
                    );
                }
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

/// Refuses (403) a caller whose role is below the route's, naming what was refused as
/// Kubernetes' RBAC does, and records the refusal of a write in the audit trail.
async fn authorize(
    State((state, route)): State<(Arc<AppState>, Route)>,
    request: Request,
    next: Next,
) -> Response {
    let Some(needed) = route.role else {
        return next.run(request).await;
    };
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        return ApiError::Unauthorized.into_response();
    };
    if caller.role >= needed {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let params: HashMap<String, String> = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let query: HashMap<String, String> = Query::try_from_uri(&parts.uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    // What was refused: the object named by the path, or for apply by the body.
    let (kind, namespace, name) = if route.path == "/api/v1/apply" {
        let bytes = axum::body::to_bytes(body, shipway_model::load::MAX_DOCUMENT_BYTES)
            .await
            .unwrap_or_default();
        let object: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let text = |v: &serde_json::Value| v.as_str().map(String::from);
        (
            text(&object["kind"]),
            text(&object["metadata"]["namespace"]).or_else(|| query.get("namespace").cloned()),
            text(&object["metadata"]["name"]),
        )
    } else if route.path.ends_with("/dispatches") {
        // A dispatch creates a WorkflowRun.
        (Some("workflowruns".to_string()), None, None)
    } else if let Some(which) = ["tokens", "users", "secrets", "variables"]
        .into_iter()
        .find(|w| route.path.starts_with(&format!("/api/v1/{w}")))
    {
        (Some(which.to_string()), None, params.get("name").cloned())
    } else {
        (
            params.get("resource").cloned(),
            params
                .get("namespace")
                .or_else(|| query.get("namespace"))
                .cloned(),
            params.get("name").cloned(),
        )
    };
    let info = kind.as_deref().and_then(Kinds::resolve);
    let resource = match (&info, &kind) {
        (Some(k), _) => k.plural.to_string(),
        (None, Some(k)) => k.to_ascii_lowercase(),
        (None, None) => "resources".to_string(),
    };
    let namespace = match &info {
        Some(k) if !k.namespaced => None,
        _ if resource == "tokens" || resource == "users" => None,
        _ => Some(
            namespace
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into()),
        ),
    };
    let error = ApiError::Forbidden {
        caller: caller.name.clone(),
        verb: route.verb,
        resource,
        namespace: namespace.clone(),
        role: caller.role,
        needs: route.role.unwrap_or(Role::Admin),
    };
    // A refused write goes in the audit trail of the object it would have written.
    if let (Some(k), Some(name)) = (&info, &name)
        && route.role == Some(Role::Deployer)
    {
        let key = Key::new(k.group, k.kind, namespace.as_deref().unwrap_or(""), name);
        let _ = state
            .store
            .record_event(&key, &caller.name, "Forbidden", &error.to_string())
            .await;
    }
    error.into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

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
    for source in &state.metrics_sources {
        source.render(&mut out);
    }
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
