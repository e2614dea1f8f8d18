//! `shipway-demo-app`: answers `/` with its `$VERSION`, `/healthz` with 200, and fails or slows down
//! on demand (`ERROR_RATE`, `LATENCY_MS`, or `?error_rate=` / `?latency_ms=` per request), like
//! argoproj/rollouts-demo. Listens on `$PORT`; on SIGTERM it finishes in-flight requests and exits.
//! `LOG_REQUESTS=true` writes a line to stderr as each request to `/` starts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use rand::RngExt;
use serde::Deserialize;

struct Settings {
    version: String,
    error_rate: f64,
    latency: Duration,
    /// `LOG_REQUESTS=true`: a line on stderr as each request starts (what an in-flight request
    /// looks like from outside).
    log_requests: bool,
}

#[derive(Deserialize)]
struct Overrides {
    error_rate: Option<f64>,
    latency_ms: Option<u64>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid value")),
        _ => Ok(default),
    }
}

async fn root(State(s): State<Arc<Settings>>, Query(o): Query<Overrides>) -> impl IntoResponse {
    let latency = o.latency_ms.map(Duration::from_millis).unwrap_or(s.latency);
    if s.log_requests {
        eprintln!("shipway-demo-app: request to / started");
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let rate = o.error_rate.unwrap_or(s.error_rate).clamp(0.0, 1.0);
    let fail = rate > 0.0 && rand::rng().random::<f64>() < rate;
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    (
        status,
        format!(
            "{{\"version\":\"{}\",\"host\":\"{host}\",\"status\":{}}}\n",
            s.version,
            status.as_u16()
        ),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let settings = match (|| {
        Ok::<_, String>(Settings {
            version: env_or("VERSION", "v1".to_string())?,
            error_rate: env_or("ERROR_RATE", 0.0)?,
            latency: Duration::from_millis(env_or("LATENCY_MS", 0u64)?),
            log_requests: env_or("LOG_REQUESTS", false)?,
        })
    })() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shipway-demo-app: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let port: u16 = match env_or("PORT", 8080) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shipway-demo-app: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("shipway-demo-app: cannot listen on {addr}: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    eprintln!("shipway-demo-app {} listening on {addr}", settings.version);
    let app = Router::new()
        .route("/", get(root))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Arc::new(settings));
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("shipway-demo-app: draining");
    };
    match axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shipway-demo-app: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
