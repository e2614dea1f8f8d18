//! The `Service` trait and the supervisor that runs a list of them under one shutdown token.

use futures_util::future::BoxFuture;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A long-running part of the platform (the cache's watch, the runtime's controllers, the
/// proxy, the API listener; later GitOps, rollouts, CI). `run` returns when `shutdown` is
/// cancelled and the service has stopped, or earlier with the error that stopped it.
pub trait Service: Send {
    fn name(&self) -> &'static str;
    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ServiceError>>;
}

/// Why a service stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{service} failed: {message}")]
    Failed {
        service: &'static str,
        message: String,
    },
    #[error("{0} stopped before shutdown was asked for")]
    StoppedEarly(&'static str),
    #[error("{service} panicked: {message}")]
    Panicked {
        service: &'static str,
        message: String,
    },
}

impl ServiceError {
    pub fn failed(service: &'static str, error: impl std::fmt::Display) -> ServiceError {
        ServiceError::Failed {
            service,
            message: error.to_string(),
        }
    }

    /// What a task's join error means for `service`.
    pub fn from_join(service: &'static str, e: tokio::task::JoinError) -> ServiceError {
        ServiceError::Panicked {
            service,
            message: e.to_string(),
        }
    }
}

/// Runs every service until `shutdown` is cancelled and all have stopped. The first to fail,
/// or to stop on its own, cancels `shutdown` for the others; its error is returned once every
/// service has stopped.
pub async fn supervise(
    services: Vec<Box<dyn Service>>,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let mut running = JoinSet::new();
    // A panicking task's join error carries only its id.
    let mut names = std::collections::HashMap::new();
    for service in services {
        let name = service.name();
        tracing::info!(service = name, "service started");
        let run = service.run(shutdown.clone());
        let task = running.spawn(async move { (name, run.await) });
        names.insert(task.id(), name);
    }
    let mut first_failure = None;
    while let Some(joined) = running.join_next().await {
        let outcome = match joined {
            Ok((name, Ok(()))) if shutdown.is_cancelled() => {
                tracing::info!(service = name, "service stopped");
                continue;
            }
            Ok((name, Ok(()))) => ServiceError::StoppedEarly(name),
            Ok((_, Err(e))) => e,
            Err(e) => {
                let name = names.get(&e.id()).copied().unwrap_or("a service");
                ServiceError::from_join(name, e)
            }
        };
        tracing::error!("{outcome}; stopping the other services");
        shutdown.cancel();
        first_failure.get_or_insert(outcome);
    }
    first_failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A service that records when it stopped, and fails after `fail_after` if set.
    struct Probe {
        name: &'static str,
        fail_after: Option<std::time::Duration>,
        stopped: Arc<Mutex<Vec<&'static str>>>,
    }

    impl Service for Probe {
        fn name(&self) -> &'static str {
            self.name
        }

        fn run(
            self: Box<Self>,
            shutdown: CancellationToken,
        ) -> BoxFuture<'static, Result<(), ServiceError>> {
            Box::pin(async move {
                let result = match self.fail_after {
                    Some(after) => {
                        tokio::time::sleep(after).await;
                        Err(ServiceError::failed(self.name, "address in use"))
                    }
                    None => {
                        shutdown.cancelled().await;
                        Ok(())
                    }
                };
                self.stopped.lock().unwrap().push(self.name);
                result
            })
        }
    }

    fn probe(
        name: &'static str,
        fail_after: Option<u64>,
        stopped: &Arc<Mutex<Vec<&'static str>>>,
    ) -> Box<dyn Service> {
        Box::new(Probe {
            name,
            fail_after: fail_after.map(std::time::Duration::from_secs),
            stopped: stopped.clone(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn one_failing_service_stops_the_others_and_its_error_is_returned() {
        let stopped = Arc::default();
        let shutdown = CancellationToken::new();
        let services = vec![
            probe("cache", None, &stopped),
            probe("proxy", Some(5), &stopped),
            probe("api", None, &stopped),
        ];
        let err = supervise(services, shutdown.clone()).await.unwrap_err();
        assert_eq!(err.to_string(), "proxy failed: address in use");
        assert!(shutdown.is_cancelled());
        let mut stopped = stopped.lock().unwrap().clone();
        stopped.sort();
        assert_eq!(stopped, ["api", "cache", "proxy"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_token_stops_every_service_cleanly() {
        let stopped = Arc::default();
        let shutdown = CancellationToken::new();
        let services = vec![probe("cache", None, &stopped), probe("api", None, &stopped)];
        let run = tokio::spawn(supervise(services, shutdown.clone()));
        shutdown.cancel();
        run.await.unwrap().unwrap();
        assert_eq!(stopped.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_that_returns_on_its_own_is_a_failure() {
        struct Quits;
        impl Service for Quits {
            fn name(&self) -> &'static str {
                "quits"
            }
            fn run(
                self: Box<Self>,
                _: CancellationToken,
            ) -> BoxFuture<'static, Result<(), ServiceError>> {
                Box::pin(async { Ok(()) })
            }
        }
        let stopped = Arc::default();
        let shutdown = CancellationToken::new();
        let services = vec![
            Box::new(Quits) as Box<dyn Service>,
            probe("api", None, &stopped),
        ];
        let err = supervise(services, shutdown).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "quits stopped before shutdown was asked for"
        );
        assert_eq!(*stopped.lock().unwrap(), ["api"]);
    }
}
