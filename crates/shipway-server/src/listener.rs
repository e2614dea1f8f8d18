//! The API's accept loop: HTTP/1 on hyper with a header-read timeout, an idle timeout and a
//! connection limit, so clients that never finish a request cannot hold descriptors.
//!
//! The timers are kept here rather than by hyper's `header_read_timeout`, because hyper starts
//! that one whenever it waits for a head, keep-alive waits included, so idle and slow clients
//! could not be told apart. A connection is in one of two phases:
//! - waiting, with no request in flight: closed `idle_timeout` after its last response (or its
//!   accept), or `header_read_timeout` after the first byte of a new head, whichever comes first;
//! - busy, from a complete head until the response body is done or dropped: no timer, because
//!   watch streams and `logs?follow` are long-lived by design and end on the shutdown token.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

/// Limits of the API listener.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// From the first byte of a request head to its end; a slower client is disconnected.
    pub header_read_timeout: Duration,
    /// How long a connection may wait with no request in flight and no byte of a new one.
    pub idle_timeout: Duration,
    /// Connections served at once. Further clients wait in the kernel's accept queue, where they
    /// cost this process no descriptor, rather than being refused: a burst of legitimate clients
    /// is served late instead of failing, and the timeouts bound how long anyone holds a slot.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests before closing their connections.
    pub drain_timeout: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `stop`, then lets in-flight requests finish (watch streams
/// end on `stop` themselves) for up to `drain_timeout`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    config: ListenerConfig,
    stop: CancellationToken,
) {
    // `acquire_many`, which the drain uses, counts in u32.
    let max =
        u32::try_from(config.max_connections.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
    let limit = Arc::new(Semaphore::new(max as usize));
    let config = Arc::new(config);
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => match a {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!("API listener: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (app, config, stop) = (app.clone(), config.clone(), stop.clone());
        tokio::spawn(async move {
            connection(stream, app, &config, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every permit back means every connection has ended.
    if tokio::time::timeout(config.drain_timeout, limit.acquire_many(max))
        .await
        .is_err()
    {
        tracing::warn!(
            "API listener: {} connections still busy after {:?}; closing them",
            max as usize - limit.available_permits(),
            config.drain_timeout
        );
    }
}

async fn connection(
    stream: TcpStream,
    app: Router,
    config: &ListenerConfig,
    stop: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        stream,
        activity: activity.clone(),
    });
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |request: hyper::Request<Incoming>| {
            let busy = activity.begin();
            let mut app = app.clone();
            async move {
                let response = match app.call(request).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                // The request stays busy until hyper is done with the body (or drops it).
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &busy;
                        frame
                    }))
                }))
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let changed = activity.changed.notified();
        let deadline = activity.deadline(config);
        let expiry = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!("API connection: {e}");
                }
                return;
            }
            _ = changed => {}
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                // Closes an idle connection now, a busy one after its response.
                conn.as_mut().graceful_shutdown();
            }
            _ = expiry => {
                if activity.deadline(config).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!("API connection: closed, no complete request in time");
                    return;
                }
            }
        }
    }
}

/// Which phase a connection is in, updated by its reads and its requests.
struct Activity {
    phase: Mutex<Phase>,
    /// Wakes the connection's timer when its deadline may have moved.
    changed: Notify,
}

struct Phase {
    busy: usize,
    /// When the connection last became idle (accepted, or its last response ended).
    idle_since: Instant,
    /// The first byte read since then: a new head has begun.
    head_started: Option<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            phase: Mutex::new(Phase {
                busy: 0,
                idle_since: Instant::now(),
                head_started: None,
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deadline(&self, config: &ListenerConfig) -> Option<Instant> {
        let phase = self.phase();
        if phase.busy > 0 {
            return None;
        }
        let idle = phase.idle_since + config.idle_timeout;
        Some(match phase.head_started {
            Some(t) => idle.min(t + config.header_read_timeout),
            None => idle,
        })
    }

    fn read(&self) {
        let mut phase = self.phase();
        if phase.busy == 0 && phase.head_started.is_none() {
            phase.head_started = Some(Instant::now());
            drop(phase);
            // `notify_one` keeps the wake-up if the timer is not waiting yet.
            self.changed.notify_one();
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.phase().busy += 1;
        Busy(self.clone())
    }
}

/// A request in flight; dropped when its response body is done.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        phase.busy -= 1;
        if phase.busy == 0 {
            phase.idle_since = Instant::now();
            phase.head_started = None;
            drop(phase);
            self.0.changed.notify_one();
        }
    }
}

/// The client's stream, telling its `Activity` when bytes arrive.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
