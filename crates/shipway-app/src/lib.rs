//! The platform `shipway up` runs: the store, then a list of services under one supervisor.
//!
//! Newcomers: start with [`Platform::start`], which locks the data directory, loads the tokens,
//! opens the store and builds the services in dependency order (the shared cache's watch of the
//! store, the local runtime's controllers, the proxy's discovery and listeners, the hosted git
//! repositories' controller, Argo Rollouts' AnalysisRun and Rollout controllers, CI's triggers
//! and run scheduler, the API server);
//! [`Platform::run`] supervises them ([`service::supervise`]). GitOps, rollouts and CI join the
//! list as more [`Service`]s; nothing in `shipway-server` starts them.

pub mod datadir;
pub mod service;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use shipway_controller::{Cache, Reflector};
use shipway_proxy::{Listeners, ProxyMetrics};
use shipway_server::{AdminToken, ApiServer, ListenerConfig, MetricsSource, Tokens};
use shipway_store::Store;
use tokio_util::sync::CancellationToken;

pub use service::{Service, ServiceError, supervise};
/// `Config::proxy`'s type, so callers need not depend on the proxy crate to fill it in.
pub use shipway_proxy::ProxyConfig;

/// The SQLite database file inside the data directory.
pub const SQLITE_FILE: &str = "shipway.db";
/// The key that seals secrets at rest, inside the data directory (unless `SHIPWAY_SECRET_KEY`
/// gives it).
pub const SECRET_KEY_FILE: &str = "secret.key";
/// The hosted repositories' directory inside the data directory (`git/NAME.git`).
pub const GIT_DIR: &str = "git";

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://...`; None is the embedded SQLite database in the data directory.
    pub database: Option<String>,
    /// Timeouts, workers and access log of the built-in proxy.
    pub proxy: ProxyConfig,
    /// Timeouts and connection limit of the API listener.
    pub listener: ListenerConfig,
    /// Jobs of all workflow runs at once; 0 is the number of cores.
    pub max_parallel_jobs: usize,
    /// The runner labels jobs' `runs-on` may ask for; empty is
    /// `shipway_ci::scheduler::DEFAULT_RUNNER_LABELS`.
    pub runner_labels: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DataDir(#[from] datadir::DataDirError),
    #[error(transparent)]
    Auth(#[from] shipway_server::auth::AuthError),
    #[error("cannot open the store: {0}")]
    Store(#[from] shipway_store::StoreError),
    #[error("secret key: {0}")]
    SecretKey(#[from] shipway_store::seal::SealError),
    #[error(transparent)]
    Listen(#[from] shipway_server::ServerError),
}

/// A started platform: the data directory is locked, the store open, the API port bound and
/// the services built; [`Platform::run`] runs them.
pub struct Platform {
    services: Vec<Box<dyn Service>>,
    shutdown: CancellationToken,
    store: Store,
    local_addr: SocketAddr,
    admin_token: AdminToken,
    proxy_metrics: Arc<ProxyMetrics>,
    hosted: Arc<shipway_git::hosted::Hosted>,
    lock: datadir::DataDirLock,
}

impl Platform {
    pub async fn start(config: Config) -> Result<Platform, StartError> {
        let dir = &config.data_dir;
        datadir::private_data_dir(dir)?;
        // Lock before anything else touches the directory, so a second instance changes nothing.
        let lock = datadir::DataDirLock::acquire(dir)?;
        let (tokens, admin_token) = Tokens::load_or_init(dir)?;
        // The key lives beside the data, never in the database (PostgreSQL included), so a dump
        // or a copy of the database alone opens no secret.
        let key = shipway_store::seal::SecretKey::from_env_or_file(&dir.join(SECRET_KEY_FILE))?;
        let sealer = Some(shipway_store::seal::Sealer::new(&key));
        let store = match &config.database {
            // One server per database: its controllers and kubelet would otherwise run every
            // Pod twice.
            Some(url) => {
                let options = shipway_store::StoreOptions {
                    exclusive: true,
                    sealer,
                    ..Default::default()
                };
                Store::open_with(url, options).await?
            }
            None => {
                let options = shipway_store::StoreOptions {
                    sealer,
                    ..Default::default()
                };
                Store::open_sqlite_with(&dir.join(SQLITE_FILE), options).await?
            }
        };
        let shutdown = CancellationToken::new();
        // The process's one watch of the store, shared by every controller. Its task starts
        // here: the cache must exist before the services that read it are built.
        let (cache, reflector) = Reflector::spawn(store.clone(), shutdown.clone());
        let runtime = Arc::new(shipway_runtime::StoreRuntime::new(store.clone(), dir));
        let gitops_runtime: Arc<dyn shipway_runtime::Runtime> = runtime.clone();
        let proxy_metrics = ProxyMetrics::new();
        let metrics: Arc<dyn MetricsSource> = Arc::new(ProxyMetricsSource(proxy_metrics.clone()));
        let api = ApiServer::bind(
            config.listen,
            config.listener.clone(),
            store.clone(),
            runtime,
            tokens.clone(),
            vec![metrics],
        )
        .await?;
        let local_addr = api.local_addr();
        let hosted = shipway_git::hosted::Hosted::new(
            dir.join(GIT_DIR),
            format!("http://{local_addr}/git"),
            store.clone(),
        );
        let api = api.with_hosted(hosted.clone());
        let services: Vec<Box<dyn Service>> = vec![
            Box::new(CacheService { task: reflector }),
            Box::new(RuntimeService {
                store: store.clone(),
                cache: cache.clone(),
                config: shipway_runtime::KubeletConfig::new(dir),
            }),
            Box::new(ProxyService {
                store: store.clone(),
                cache: cache.clone(),
                metrics: proxy_metrics.clone(),
                config: config.proxy.clone(),
                api: local_addr,
            }),
            Box::new(GitService {
                cache: cache.clone(),
                hosted: hosted.clone(),
            }),
            Box::new(GitOpsService {
                controller: shipway_gitops::controller::ApplicationController::new(
                    store.clone(),
                    cache.clone(),
                    gitops_runtime,
                    dir.clone(),
                    Some(hosted.clone()),
                ),
            }),
            Box::new(AnalysisService {
                store: store.clone(),
                cache: cache.clone(),
                metrics: proxy_metrics.clone(),
            }),
            Box::new(RolloutsService {
                store: store.clone(),
                cache: cache.clone(),
            }),
            Box::new(ExperimentsService {
                store: store.clone(),
                cache: cache.clone(),
            }),
            Box::new(CiService {
                store: store.clone(),
                hosted: hosted.clone(),
                scheduler: shipway_ci::scheduler::Scheduler::new(
                    store.clone(),
                    cache.clone(),
                    hosted.clone(),
                    dir,
                    match config.max_parallel_jobs {
                        0 => std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
                        n => n,
                    },
                    config.runner_labels.clone(),
                    Some(shipway_ci::scheduler::RunAccess {
                        server: format!("http://{local_addr}"),
                        tokens: Arc::new(tokens),
                    }),
                ),
            }),
            Box::new(ApiService { server: api }),
        ];
        Ok(Platform {
            services,
            shutdown,
            store,
            local_addr,
            admin_token,
            proxy_metrics,
            hosted,
            lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn admin_token(&self) -> &AdminToken {
        &self.admin_token
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The hosted git repositories (`subscribe` to hear of pushes).
    pub fn hosted(&self) -> &Arc<shipway_git::hosted::Hosted> {
        &self.hosted
    }

    /// The proxy's metrics: success rate and latency percentiles per Service and backend.
    pub fn proxy_metrics(&self) -> &Arc<ProxyMetrics> {
        &self.proxy_metrics
    }

    /// Runs every service until `stop` completes or one fails; either way the others are
    /// stopped (the API finishes in-flight requests, the runtime stops the pods' processes,
    /// the proxy's listeners finish theirs) before this returns. The data directory stays
    /// locked until then.
    pub async fn run(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServiceError> {
        let shutdown = self.shutdown.clone();
        let trigger = tokio::spawn(async move {
            tokio::select! {
                _ = stop => shutdown.cancel(),
                _ = shutdown.cancelled() => {}
            }
        });
        let result = supervise(self.services, self.shutdown).await;
        trigger.abort();
        drop(self.lock);
        result
    }
}

/// The proxy's series on the API's `/metrics`.
struct ProxyMetricsSource(Arc<ProxyMetrics>);

impl MetricsSource for ProxyMetricsSource {
    fn render(&self, out: &mut String) {
        self.0.render(out);
    }
}

/// The shared cache's watch of the store (`shipway_controller::Reflector`).
struct CacheService {
    task: tokio::task::JoinHandle<()>,
}

impl Service for CacheService {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn run(self: Box<Self>, _: CancellationToken) -> BoxFuture<'static, Result<(), ServiceError>> {
        Box::pin(async move {
            self.task
                .await
                .map_err(|e| ServiceError::from_join("cache", e))
        })
    }
}

/// The local runtime's controllers and kubelet.
struct RuntimeService {
    store: Store,
    cache: Cache,
    config: shipway_runtime::KubeletConfig,
}

impl Service for RuntimeService {
    fn name(&self) -> &'static str {
        "runtime"
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ServiceError>> {
        Box::pin(async move {
            shipway_runtime::LocalRuntime::start(self.store, self.cache, self.config, shutdown)
                .join()
                .await;
            Ok(())
        })
    }
}

/// The proxy: discovery turns Services, Endpoints, Pods and TrafficPolicies into routing tables
/// (binding each Service address in the sockets the proxy serves from, so a Service whose
/// address is taken says so), and the proxy serves each table it is handed.
struct ProxyService {
    store: Store,
    cache: Cache,
    metrics: Arc<ProxyMetrics>,
    config: ProxyConfig,
    /// The API listener's address, which no Service may take.
    api: SocketAddr,
}

impl Service for ProxyService {
    fn name(&self) -> &'static str {
        "proxy"
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ServiceError>> {
        Box::pin(async move {
            let sockets = Listeners::default();
            let options = shipway_proxy::discovery::Options {
                listeners: Some(sockets.clone()),
                reserved: vec![(self.api, "the API listener (shipway up --listen)".into())],
                allow_public: self.config.allow_public,
            };
            let (tables, discovery) = shipway_proxy::discovery::spawn_with(
                self.store,
                self.cache,
                Some(self.metrics.clone()),
                options,
                shutdown.clone(),
            );
            let proxy = shipway_proxy::Proxy::start_with(
                tables,
                self.metrics,
                self.config,
                sockets,
                shutdown,
            );
            let (discovery, proxy) = tokio::join!(discovery, proxy);
            discovery.map_err(|e| ServiceError::from_join("proxy", e))?;
            proxy.map_err(|e| ServiceError::from_join("proxy", e))
        })
    }
}

/// Argo Rollouts' AnalysisRuns, measured with the proxy's own counters in process.
struct AnalysisService {
    store: Store,
    cache: Cache,
    metrics: Arc<ProxyMetrics>,
}

impl Service for AnalysisService {
    fn name(&self) -> &'static str {
        "analysis"
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ServiceError>> {
        Box::pin(async move {
            use shipway_rollout::analysis::{controller::AnalysisController, provider::Providers};
            let clock = shipway_controller::Clock::new();
            let providers = Providers::new(clock, Some(self.metrics))
                .with_jobs(self.store.clone(), self.cache.clone());
            AnalysisController::new(self.store, self.cache, clock, providers)
                .run(shutdown)
                .await;
            Ok(())
        })
    }
}

/// Argo Rollouts' Rollouts (canary): ReplicaSets, the stable Service's TrafficPolicy and
/// AnalysisRuns, written as `controller:rollouts`.
struct RolloutsService {
    store: Store,
    cache: Cache,
}

impl Service for RolloutsService {
    fn name(&self) -> &'static str {
        "rollouts"
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ServiceError>> {
        Box::pin(async move {
            let clock = shipway_controller::Clock::new();
            shipway_rollout::rollout::controller::RolloutController::new(
                self.store, self.cache, clock,
            )
            .run(shutdown)
            .await;
            Ok(())
        })
    }
}

/// Argo Rollouts' Experiments: a ReplicaSet (and optionally a Service) per template and their
/// AnalysisRuns, written as `controller:experiments`.
struct ExperimentsService {
    store: Store,
    cache: Cache,
}

impl Service for ExperimentsService {
    fn name(&self) -> &'static str {
        "experiments"
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ServiceError>> {
        Box::pin(async move {
            let clock = shipway_controller::Clock::new();
            shipway_rollout::experiment::controller::ExperimentController::new(
                self.store, self.cache, clock,
            )
            .run(shutdown)
            .await;
            Ok(())
        })
    }
}

/// Pipelines: push triggers and schedules make WorkflowRuns, the scheduler runs them, written
/// as `shipway-ci`.
struct CiService {
    store: Store,
    hosted: Arc<shipway_git::hosted::Hosted>,
    scheduler: Arc<shipway_ci::scheduler::Scheduler>,
}

impl Service for CiService {
    fn name(&self) -> &'static str {
        "ci"
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ServiceError>> {
        Box::pin(async move {
            let triggers =
                shipway_ci::trigger::run(self.store.clone(), self.hosted.clone(), shutdown.clone());
            let schedules = shipway_ci::schedule::run(
                self.store,
                self.hosted,
                shipway_controller::Clock::new(),
                shutdown.clone(),
            );
            tokio::join!(triggers, schedules, self.scheduler.run(shutdown));
            Ok(())
        })
    }
}

/// Hosted repositories: a bare repository and a status (clone URL, heads) for each hosted
/// `Repository` object, on the shared cache.
struct GitService {
    cache: Cache,
    hosted: Arc<shipway_git::hosted::Hosted>,
}

impl Service for GitService {
    fn name(&self) -> &'static str {
        "git"
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ServiceError>> {
        use shipway_controller::{Action, Controller, GroupKind, exponential_backoff};
        use std::time::Duration;
        let kind = GroupKind::new(
            shipway_model::types::repository::GROUP,
            shipway_model::types::repository::KIND,
        );
        Box::pin(async move {
            Controller::new(kind, self.cache)
                .run(
                    |obj, hosted: Arc<shipway_git::hosted::Hosted>| async move {
                        hosted.reconcile(&obj).await.map(|()| Action::AwaitChange)
                    },
                    |obj, e: &shipway_git::hosted::HostedError, failures, _| {
                        tracing::warn!(repository = %obj.key(), error = %e, "hosted repository");
                        Action::Requeue(exponential_backoff(
                            failures,
                            Duration::from_millis(500),
                            Duration::from_secs(60),
                        ))
                    },
                    self.hosted,
                    shutdown,
                )
                .await;
            Ok(())
        })
    }
}

/// The HTTP API.
/// The Application controller (`shipway-gitops`), writing as `shipway-gitops`.
struct GitOpsService {
    controller: shipway_gitops::controller::ApplicationController,
}

impl Service for GitOpsService {
    fn name(&self) -> &'static str {
        "gitops"
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ServiceError>> {
        Box::pin(async move {
            self.controller.run(shutdown).await;
            Ok(())
        })
    }
}

struct ApiService {
    server: ApiServer,
}

impl Service for ApiService {
    fn name(&self) -> &'static str {
        "api"
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), ServiceError>> {
        Box::pin(async move {
            self.server.serve(shutdown).await;
            Ok(())
        })
    }
}
