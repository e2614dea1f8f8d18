//! The Application controller on `shipway-controller`'s runner: each reconcile resolves the
//! source's revision, renders the commit's tree, checks the spec, diffs against the live objects
//! of the shared cache and writes Argo CD's status; a sync (an `operation`, or the automated
//! policy) is a state machine persisted in `status.operationState` and advanced one step per
//! reconcile (see [`crate::sync`]).
//!
//! *Fail closed*: when the repository, the revision or the render fails, the status says
//! `ComparisonError` and `Unknown`, and nothing is applied or pruned.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use shipway_controller::{Action, Cache, Clock, Controller, GroupKind, exponential_backoff};
use shipway_git::hosted::Hosted;
use shipway_model::types::repository::RepositorySpec;
use shipway_model::types::{
    AppProjectSpec, ApplicationCondition, ApplicationSource, ApplicationSpec, ApplicationStatus,
    HealthStatus, ResourceStatus, SyncStatus, application::ComparedTo,
};
use shipway_model::{Actor, Key, Object};
use shipway_runtime::Runtime;
use shipway_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::condition::{COMPARISON_ERROR, INVALID_SPEC_ERROR};
use crate::diff::ResourceDiff;
use crate::plan::is_hook;
use crate::tracking::TRACKING_ANNOTATION;

/// Who the controller's writes are by, in the audit trail.
pub const ACTOR: Actor = Actor::component("shipway-gitops");
/// Argo CD's finalizer for cascading deletes (also as `.../foreground` and `.../background`).
pub const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";
/// While a cascading delete waits for the resources to go, how often to look again.
const FINALIZE_POLL: Duration = Duration::from_millis(500);

pub const GROUP: &str = "argoproj.io";
pub const APPLICATION: GroupKind = GroupKind::from_static(GROUP, "Application");
pub const APP_PROJECT: GroupKind = GroupKind::from_static(GROUP, "AppProject");

/// The kinds a sync may create, watched so a change to a tracked object (drift, health)
/// wakes its Application. The runner watches kinds, not annotations, so this is a list.
const MANAGED: &[(&str, &str)] = &[
    ("", "ConfigMap"),
    ("", "Secret"),
    ("", "Service"),
    ("", "Pod"),
    ("", "Namespace"),
    ("", "ServiceAccount"),
    ("", "PersistentVolumeClaim"),
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("networking.k8s.io", "Ingress"),
    ("argoproj.io", "Rollout"),
    ("argoproj.io", "Application"),
    ("shipway.dev", "TrafficPolicy"),
];

/// Argo CD's default `timeout.reconciliation` for a repository nobody notifies us about.
const DEFAULT_POLL: Duration = Duration::from_secs(180);
/// A `file://` repository has no push notification; reading its ref is cheap, so it is read
/// this often.
const FILE_POLL: Duration = Duration::from_secs(2);

/// What the controller needs: the store (status writes, events), the cache (every read), the
/// runtime (what a sync applies to), the clock, and where repositories live.
pub struct ApplicationController {
    pub store: Store,
    pub cache: Cache,
    pub runtime: Arc<dyn Runtime>,
    pub clock: Clock,
    /// `<data>`: fetch caches go under `<data>/gitops/cache/`.
    pub data_dir: PathBuf,
    /// The hosted repositories, read locally when an app's `repoURL` names one.
    pub hosted: Option<Arc<Hosted>>,
    /// When each external URL was last fetched, so polling follows `pollInterval`, and the
    /// Repository's `status.lastWebhook` then, so a new delivery fetches at once.
    fetched: Mutex<HashMap<String, (tokio::time::Instant, Option<serde_json::Value>)>>,
    /// Each app's tracked objects and the apps by name, so no reconcile scans the cache.
    tracked: Arc<crate::tracked::TrackedIndex>,
    /// Repositories opened once and renders made once per (commit, source, namespace), shared
    /// by every app reading the same repository.
    renders: Arc<RenderCache>,
    /// At most this many reconciles at once (Argo's status and operation processors): the
    /// runner starts every due key at once, and 1,000 apps rendering and writing together
    /// only grow the blocking pool and the heap.
    permits: tokio::sync::Semaphore,
}

/// How many Applications are reconciled at once.
const CONCURRENT_RECONCILES: usize = 16;

/// Opened repositories, and rendered sources by (repository, commit, source without its
/// `targetRevision`, namespace). A commit's tree never changes, so an entry is never stale;
/// the map is emptied when it grows past [`RenderCache::MAX`].
#[derive(Default)]
pub(crate) struct RenderCache {
    repos: Mutex<HashMap<PathBuf, shipway_git::Repo>>,
    rendered: Mutex<HashMap<RenderKey, Vec<Object>>>,
}

/// (repository directory, commit, the source as JSON without `targetRevision`, namespace).
type RenderKey = (PathBuf, String, String, String);

impl RenderCache {
    /// Enough for the apps being reconciled around the same time (an app's reconciles come in
    /// bursts); a copy of every app's desired objects would cost as much memory as the cache.
    const MAX: usize = 512;

    fn repo(&self, dir: &Path, fresh: bool) -> Result<shipway_git::Repo, shipway_git::Error> {
        let mut repos = self.repos.lock().unwrap_or_else(|p| p.into_inner());
        if !fresh && let Some(r) = repos.get(dir) {
            return Ok(r.clone());
        }
        let r = shipway_git::Repo::open(dir)?;
        repos.insert(dir.to_path_buf(), r.clone());
        Ok(r)
    }

    /// `render_at`, with the repository kept open and the render kept per commit. A resolve
    /// that fails on the kept repository is tried once more on a freshly opened one.
    fn render(
        &self,
        dir: &Path,
        source: &ApplicationSource,
        namespace: &str,
    ) -> Result<Compared, CompareError> {
        let rev = source.target_revision.as_deref().unwrap_or("HEAD");
        let resolved = self
            .repo(dir, false)
            .and_then(|r| r.resolve(rev).map(|v| (r, v)))
            .or_else(|_| {
                self.repo(dir, true)
                    .and_then(|r| r.resolve(rev).map(|v| (r, v)))
            });
        let (repo, revision) = resolved.map_err(|e| load_failed(e.to_string()))?;
        let mut plain = source.clone();
        plain.target_revision = None;
        let key = (
            dir.to_path_buf(),
            revision.sha.clone(),
            serde_json::to_string(&plain).unwrap_or_default(),
            namespace.to_string(),
        );
        if let Some(desired) = self
            .rendered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(Compared {
                revision: revision.sha,
                desired: desired.clone(),
            });
        }
        let compared = render_commit(&repo, revision.sha, source, namespace)?;
        let mut rendered = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
        if rendered.len() >= Self::MAX {
            rendered.clear();
        }
        rendered.insert(key, compared.desired.clone());
        Ok(compared)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] shipway_runtime::RuntimeError),
    #[error("{0}")]
    Other(String),
}

/// A source rendered at a commit: the commit's sha and the objects.
#[derive(Clone, Debug)]
pub struct Compared {
    pub revision: String,
    pub desired: Vec<Object>,
}

/// The condition type (`ComparisonError`, `InvalidSpecError`) and its message.
pub type CompareError = (&'static str, String);

impl ApplicationController {
    pub fn new(
        store: Store,
        cache: Cache,
        runtime: Arc<dyn Runtime>,
        data_dir: impl Into<PathBuf>,
        hosted: Option<Arc<Hosted>>,
    ) -> ApplicationController {
        ApplicationController {
            store,
            cache,
            runtime,
            clock: Clock::new(),
            data_dir: data_dir.into(),
            hosted,
            fetched: Mutex::new(HashMap::new()),
            tracked: Arc::default(),
            renders: Arc::default(),
            permits: tokio::sync::Semaphore::new(CONCURRENT_RECONCILES),
        }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let cache = self.cache.clone();
        self.tracked.clone().follow(cache.clone(), shutdown.clone());
        let mut controller = Controller::new(APPLICATION, cache.clone());
        {
            let cache = cache.clone();
            controller = controller.watches(APP_PROJECT, move |project: &Object| {
                let ns = project.metadata.namespace.as_deref().unwrap_or_default();
                cache
                    .list(&APPLICATION, Some(ns))
                    .iter()
                    .filter(|a| project_name(a) == project.metadata.name)
                    .map(|a| a.key())
                    .collect()
            });
        }
        {
            // A push to a hosted repository writes its Repository's status.heads.
            let cache = cache.clone();
            let kind = GroupKind::new(
                shipway_model::types::repository::GROUP,
                shipway_model::types::repository::KIND,
            );
            controller = controller.watches(kind, move |repo: &Object| {
                let name = &repo.metadata.name;
                let url = repo
                    .body
                    .get("spec")
                    .and_then(|s| s.get("url"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                cache
                    .list(&APPLICATION, None)
                    .iter()
                    .filter(|a| {
                        source_of(a).is_some_and(|s| {
                            let u = s.repo_url.as_deref().unwrap_or_default();
                            hosted_name(u).as_deref() == Some(name.as_str())
                                || url.as_deref().is_some_and(|url| same_repository(url, u))
                        })
                    })
                    .map(|a| a.key())
                    .collect()
            });
        }
        for (g, k) in MANAGED {
            let cache = cache.clone();
            let tracked = self.tracked.clone();
            controller = controller.watches(GroupKind::from_static(g, k), move |obj: &Object| {
                let Some(app) = crate::tracked::app_of(obj) else {
                    return Vec::new();
                };
                tracked.apps_named(app).unwrap_or_else(|| {
                    cache
                        .list(&APPLICATION, None)
                        .iter()
                        .filter(|a| a.metadata.name == app)
                        .map(|a| a.key())
                        .collect()
                })
            });
        }
        controller
            .run(
                |app: Arc<Object>, ctl: Arc<ApplicationController>| async move {
                    let _permit = ctl.permits.acquire().await;
                    // The wait may have been long: reconcile what the cache holds now.
                    match ctl.cache.get(&app.key()) {
                        Some(app) => ctl.reconcile(&app).await,
                        None => Ok(Action::AwaitChange),
                    }
                },
                |app: Arc<Object>, e: &ControllerError, failures, _| {
                    if let ControllerError::Store(StoreError::Conflict { .. }) = e {
                        return Action::Requeue(Duration::from_millis(20));
                    }
                    tracing::warn!(application = %app.key(), error = %e, "reconcile failed");
                    Action::Requeue(exponential_backoff(
                        failures,
                        Duration::from_millis(500),
                        Duration::from_secs(60),
                    ))
                },
                Arc::new(self),
                shutdown,
            )
            .await;
    }

    /// One reconcile of `app`: compare, then advance or start a sync, then write the status
    /// when it changed.
    pub async fn reconcile(&self, app: &Object) -> Result<Action, ControllerError> {
        if app.metadata.deletion_timestamp.is_some() {
            return self.finalize(app).await;
        }
        let spec: ApplicationSpec = match app.spec_as() {
            Ok(s) => s,
            Err(e) => {
                let cond = ApplicationCondition::new(
                    INVALID_SPEC_ERROR,
                    format!(
                        "{}: spec does not read as an Application spec: {e}",
                        app.key()
                    ),
                );
                return self
                    .write_status(app, |s| {
                        s.conditions = vec![cond];
                        s.sync = Some(unknown_sync(None));
                    })
                    .await
                    .map(|_| Action::AwaitChange);
            }
        };
        let mut status: ApplicationStatus = app.status_as().unwrap_or_default();
        let project = self.project(app, &spec);
        let mut conditions = crate::spec::check(
            &spec,
            project
                .as_ref()
                .map(|(name, p)| crate::spec::Project { name, spec: p }),
        );
        let source = spec
            .source
            .clone()
            .or_else(|| spec.sources.first().cloned());
        let namespace = spec
            .destination
            .as_ref()
            .and_then(|d| d.namespace.clone())
            .unwrap_or_else(|| "default".to_string());
        let compared_to = ComparedTo {
            source: spec.source.clone(),
            sources: spec.sources.clone(),
            destination: spec.destination.clone(),
            ..ComparedTo::default()
        };
        let mut requeue = self.requeue_for(source.as_ref());

        let spec_error = conditions.iter().any(|c| c.is_error());
        let compared = match (&source, spec_error) {
            (Some(source), false) => Some(self.compare(source, &namespace).await),
            _ => None,
        };
        let mut resources = Vec::new();
        let mut diffs = Vec::new();
        match &compared {
            Some(Ok(c)) => {
                let live = self.live(&app.metadata.name, &c.desired);
                let plain: Vec<Object> = c
                    .desired
                    .iter()
                    .filter(|o| !is_hook(o) && !crate::plan::is_skipped(o))
                    .cloned()
                    .collect();
                diffs = crate::diff::diff(
                    &app.metadata.name,
                    &plain,
                    &live,
                    &spec.ignore_differences,
                    &[],
                );
                resources = diffs.iter().map(resource_status).collect();
                let (health, message) = crate::health::app_health(
                    diffs.iter().map(|d| (d.target.as_ref(), d.live.as_ref())),
                );
                let synced = diffs
                    .iter()
                    .all(|d| d.status == crate::SyncStatus::Synced && !d.requires_pruning);
                status.sync = Some(SyncStatus {
                    status: if synced { "Synced" } else { "OutOfSync" }.into(),
                    revision: Some(c.revision.clone()),
                    compared_to: Some(compared_to.clone()),
                    ..SyncStatus::default()
                });
                status.health = Some(HealthStatus {
                    status: Some(health.to_string()),
                    message: (!message.is_empty() && health.to_string() != "Healthy")
                        .then_some(message),
                    ..HealthStatus::default()
                });
                status
                    .rest
                    .insert("summary".into(), json!({"images": images(&c.desired)}));
            }
            Some(Err((kind, message))) => {
                conditions.push(ApplicationCondition::new(kind, message.clone()));
                status.sync = Some(unknown_sync(Some(compared_to.clone())));
            }
            None => status.sync = Some(unknown_sync(Some(compared_to.clone()))),
        }
        if compared.as_ref().is_some_and(Result::is_ok) {
            status.resources = resources;
        }

        // The sync: only after a good comparison (fail closed), one step per reconcile.
        if let Some(Ok(c)) = &compared {
            let step = crate::sync::step(self, app, &spec, &mut status, c, &diffs).await?;
            if let Some(d) = step {
                requeue = Some(requeue.map_or(d, |r| r.min(d)));
            }
        } else if let Some(op) = status.operation_state.as_mut()
            && op.phase == "Running"
        {
            // A sync cannot go on without its desired state: fail it rather than leave it
            // Running forever.
            op.phase = "Error".into();
            op.message =
                Some("comparison failed; the sync was stopped before its next step".into());
            op.finished_at = Some(self.clock.timestamp());
        }

        // Keep each condition's transition time while it holds.
        let old: ApplicationStatus = app.status_as().unwrap_or_default();
        for c in &mut conditions {
            c.last_transition_time = old
                .conditions
                .iter()
                .find(|o| o.type_ == c.type_ && o.message == c.message)
                .and_then(|o| o.last_transition_time.clone())
                .or_else(|| Some(self.clock.timestamp()));
        }
        status.conditions = conditions;
        let refresh_due = old
            .reconciled_at
            .as_deref()
            .and_then(|t| self.clock.since(t))
            .is_none_or(|age| age >= requeue.unwrap_or(DEFAULT_POLL));
        // `argocd app sync` writes `operation`; once its state is stored it is cleared, as
        // Argo does, so the same request made again runs again.
        let started = app.body.get("operation").is_some_and(|v| {
            serde_json::from_value::<shipway_model::types::Operation>(v.clone()).ok()
                == status
                    .operation_state
                    .as_ref()
                    .and_then(|o| o.operation.clone())
        });
        let mut current = app.clone();
        if status != old || refresh_due {
            status.reconciled_at = Some(self.clock.timestamp());
            current = self.write_status(app, |s| *s = status).await?;
        }
        if started {
            current.body.remove("operation");
            self.store.update(current, ACTOR.as_str()).await?;
        }
        Ok(requeue.map_or(Action::AwaitChange, Action::Requeue))
    }

    /// Argo CD's cascading delete: while the Application carries the resources finalizer
    /// (`argocd app delete` sets it, `--cascade=false` removes it), its tracked resources are
    /// deleted — only those carrying its tracking id, never an object it did not create — and
    /// once none is left the finalizer goes, and with it the Application.
    async fn finalize(&self, app: &Object) -> Result<Action, ControllerError> {
        let is_ours = |f: &String| {
            f == RESOURCES_FINALIZER || f.starts_with(&format!("{RESOURCES_FINALIZER}/"))
        };
        if !app.metadata.finalizers.iter().any(is_ours) {
            return Ok(Action::AwaitChange);
        }
        let name = &app.metadata.name;
        let tracked: Vec<_> = self
            .tracked_objects(name)
            .into_iter()
            .filter(|o| crate::tracking::is_tracked_by(name, o))
            .collect();
        if !tracked.is_empty() {
            for o in tracked
                .iter()
                .filter(|o| o.metadata.deletion_timestamp.is_none())
            {
                if let Err(e) = self.runtime.delete(&o.key(), &ACTOR).await {
                    tracing::warn!("gitops: deleting {} of application {name}: {e}", o.key());
                }
            }
            // Their deletions wake the app through the tracking-id watches; this is the backstop.
            return Ok(Action::Requeue(FINALIZE_POLL));
        }
        let Some(mut current) = self.store.get(&app.key()).await? else {
            return Ok(Action::AwaitChange);
        };
        current.metadata.finalizers.retain(|f| !is_ours(f));
        match self.store.update(current, ACTOR.as_str()).await {
            Ok(_) => Ok(Action::AwaitChange),
            Err(StoreError::Conflict { .. }) => Ok(Action::Requeue(Duration::ZERO)),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_status(
        &self,
        app: &Object,
        f: impl FnOnce(&mut ApplicationStatus),
    ) -> Result<Object, ControllerError> {
        let mut status: ApplicationStatus = app.status_as().unwrap_or_default();
        f(&mut status);
        let mut updated = app.clone();
        updated.set_status(&status);
        Ok(self.store.update_status(updated, ACTOR.as_str()).await?)
    }

    fn project(&self, app: &Object, spec: &ApplicationSpec) -> Option<(String, AppProjectSpec)> {
        let name = spec.project.clone().unwrap_or_else(|| "default".into());
        let ns = app.metadata.namespace.as_deref().unwrap_or_default();
        let key = APP_PROJECT.key(ns, &name);
        // None: `spec::check` allows everything for a missing `default` (Argo's built-in
        // one) and refuses any other missing project.
        self.cache
            .get(&key)
            .map(|p| (name, p.spec_as().unwrap_or_default()))
    }

    /// When to look at the repository again without being told.
    fn requeue_for(&self, source: Option<&ApplicationSource>) -> Option<Duration> {
        let url = source?.repo_url.as_deref()?;
        if url.starts_with("file://") {
            return Some(FILE_POLL);
        }
        if self.hosted_dir(url).is_some() {
            // A push writes the Repository's status, which wakes the app.
            return None;
        }
        Some(self.poll_interval(url))
    }

    fn poll_interval(&self, url: &str) -> Duration {
        self.repository_for(url)
            .map(|(_, spec)| spec.poll_interval())
            .unwrap_or(DEFAULT_POLL)
    }

    /// The newest `status.lastWebhook` of the Repository registered for `url`: the
    /// fetch cache is refreshed whenever it changes, whatever the poll interval says.
    fn last_webhook(&self, url: &str) -> Option<serde_json::Value> {
        let (repo, _) = self.repository_for(url)?;
        repo.body.get("status")?.get("lastWebhook").cloned()
    }

    /// The Repository whose `spec.url` names the same repository as `url`, compared as the
    /// webhook handler compares them, so a delivery it verified wakes and refreshes the apps.
    fn repository_for(&self, url: &str) -> Option<(Arc<Object>, RepositorySpec)> {
        let kind = GroupKind::new(
            shipway_model::types::repository::GROUP,
            shipway_model::types::repository::KIND,
        );
        self.cache.list(&kind, None).into_iter().find_map(|r| {
            let spec: RepositorySpec = r.spec_as().ok()?;
            let same = spec.url.as_deref().is_some_and(|u| same_repository(u, url));
            same.then_some((r, spec))
        })
    }

    fn hosted_dir(&self, url: &str) -> Option<PathBuf> {
        let name = hosted_name(url)?;
        let dir = self.hosted.as_ref()?.dir(&name).ok()?;
        dir.is_dir().then_some(dir)
    }

    /// Resolves the source's revision and renders its tree, off the async threads.
    pub(crate) async fn compare(
        &self,
        source: &ApplicationSource,
        namespace: &str,
    ) -> Result<Compared, CompareError> {
        let url = source.repo_url.clone().unwrap_or_default();
        let dir = if let Some(path) = url.strip_prefix("file://") {
            PathBuf::from(path)
        } else if let Some(dir) = self.hosted_dir(&url) {
            dir
        } else {
            let cache = self
                .data_dir
                .join("gitops")
                .join("cache")
                .join(cache_name(&url));
            let webhook = self.last_webhook(&url);
            let due = {
                let fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
                fetched.get(&url).is_none_or(|(at, seen)| {
                    at.elapsed() >= self.poll_interval(&url) || *seen != webhook
                }) || !cache.is_dir()
            };
            if due {
                let (u, c, creds) = (url.clone(), cache.clone(), self.credentials(&url));
                let fetched = tokio::task::spawn_blocking(move || {
                    shipway_git::fetch(&u, &c, creds.as_ref()).map(|_| ())
                })
                .await
                .map_err(|e| (COMPARISON_ERROR, format!("fetching {url}: {e}")))?;
                fetched.map_err(|e| {
                    (
                        COMPARISON_ERROR,
                        format!(
                            "Failed to load target state: failed to fetch {}: {e}",
                            shipway_git::redact(&url)
                        ),
                    )
                })?;
                self.fetched
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(url.clone(), (tokio::time::Instant::now(), webhook));
            }
            cache
        };
        let source = source.clone();
        let namespace = namespace.to_string();
        let renders = self.renders.clone();
        tokio::task::spawn_blocking(move || renders.render(&dir, &source, &namespace))
            .await
            .map_err(|e| (COMPARISON_ERROR, format!("render: {e}")))?
    }

    /// Credentials for `url` from an Argo CD repository Secret (label
    /// `argocd.argoproj.io/secret-type: repository`) whose `url` is it.
    fn credentials(&self, url: &str) -> Option<shipway_git::Credentials> {
        self.cache
            .labelled("argocd.argoproj.io/secret-type", "repository")
            .iter()
            .filter_map(|s| shipway_model::types::repository::from_argocd_secret(s)?.ok())
            .find(|r| r.url == url)
            .map(|r| shipway_git::Credentials {
                username: r.username,
                password: r.password,
                ssh_private_key: r.ssh_private_key,
            })
    }

    /// The objects that may carry `app`'s tracking id (callers check the id): from the
    /// index, or a scan of the cache before the index is filled.
    fn tracked_objects(&self, app: &str) -> Vec<Arc<Object>> {
        match self.tracked.objects_of(app) {
            Some(keys) => keys.iter().filter_map(|k| self.cache.get(k)).collect(),
            None => self.cache.all(None),
        }
    }

    /// The live objects the comparison needs: each desired key, and every object tracked by
    /// the app.
    pub(crate) fn live(&self, app: &str, desired: &[Object]) -> Vec<Object> {
        let mut out: Vec<Object> = desired
            .iter()
            .filter_map(|d| self.cache.get(&d.key()))
            .map(|o| (*o).clone())
            .collect();
        let prefix = format!("{app}:");
        let mut seen: std::collections::HashSet<Key> = out.iter().map(Object::key).collect();
        for o in self.tracked_objects(app) {
            if o.metadata
                .annotations
                .get(TRACKING_ANNOTATION)
                .is_some_and(|id| id.starts_with(&prefix))
                && seen.insert(o.key())
            {
                out.push((*o).clone());
            }
        }
        out
    }
}

/// Renders `source` at its `targetRevision` from the repository at `dir` (bare or not), as a
/// comparison does; `shipway app manifests` and `diff` call it on a fetched copy.
pub fn render_at(
    dir: &Path,
    source: &ApplicationSource,
    namespace: &str,
) -> Result<Compared, CompareError> {
    let repo = shipway_git::Repo::open(dir).map_err(|e| load_failed(e.to_string()))?;
    let rev = source.target_revision.as_deref().unwrap_or("HEAD");
    let revision = repo.resolve(rev).map_err(|e| load_failed(e.to_string()))?;
    render_commit(&repo, revision.sha, source, namespace)
}

fn load_failed(e: String) -> CompareError {
    (
        COMPARISON_ERROR,
        format!("Failed to load target state: {e}"),
    )
}

/// Renders `source` from the commit `sha` of `repo`.
fn render_commit(
    repo: &shipway_git::Repo,
    sha: String,
    source: &ApplicationSource,
    namespace: &str,
) -> Result<Compared, CompareError> {
    let tree = repo.tree(&sha).map_err(|e| load_failed(e.to_string()))?;
    let rendered = crate::render::render(&tree, Path::new("/"), source, namespace).map_err(|e| {
        (
            e.condition_type(),
            format!("Failed to load target state: failed to generate manifest for source 1 of 1: {e}"),
        )
    })?;
    Ok(Compared {
        revision: sha,
        desired: rendered.into_iter().map(|r| r.object).collect(),
    })
}

fn unknown_sync(compared_to: Option<ComparedTo>) -> SyncStatus {
    SyncStatus {
        status: "Unknown".into(),
        compared_to,
        ..SyncStatus::default()
    }
}

fn project_name(app: &Object) -> String {
    app.body
        .get("spec")
        .and_then(|s| s.get("project"))
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string()
}

fn source_of(app: &Object) -> Option<ApplicationSource> {
    let spec: ApplicationSpec = app.spec_as().ok()?;
    spec.source.or_else(|| spec.sources.into_iter().next())
}

/// `NAME` of `http(s)://HOST/git/NAME.git` (a hosted repository's URL).
pub fn hosted_name(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let (_, path) = rest.split_once('/')?;
    let name = path.strip_prefix("git/")?.strip_suffix(".git")?;
    (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
}

/// One fetch cache per URL: readable, and a hash so two URLs never share one.
fn cache_name(url: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    url.hash(&mut h);
    let readable: String = shipway_git::redact(url)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(60)
        .collect();
    format!("{readable}-{:016x}.git", h.finish())
}

fn resource_status(d: &ResourceDiff) -> ResourceStatus {
    let obj = d.target.as_ref().or(d.live.as_ref());
    let version = obj
        .map(|o| {
            o.api_version
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .filter(|v| !v.is_empty());
    let health = match d.live.as_ref() {
        Some(l) => shipway_model::health::health(l).map(|h| HealthStatus {
            status: Some(h.status.to_string()),
            message: (!h.message.is_empty()).then_some(h.message),
            ..HealthStatus::default()
        }),
        None => Some(HealthStatus {
            status: Some("Missing".into()),
            ..HealthStatus::default()
        }),
    };
    ResourceStatus {
        group: (!d.key.group.is_empty()).then(|| d.key.group.clone()),
        version,
        kind: Some(d.key.kind.clone()),
        namespace: (!d.key.namespace.is_empty()).then(|| d.key.namespace.clone()),
        name: Some(d.key.name.clone()),
        status: Some(d.status.as_str().into()),
        health,
        requires_pruning: d.requires_pruning.then_some(true),
        ..ResourceStatus::default()
    }
}

/// The container images of the desired objects, sorted and unique (`status.summary.images`).
fn images(objects: &[Object]) -> Vec<String> {
    fn walk(v: &Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for key in ["containers", "initContainers"] {
                    if let Some(Value::Array(cs)) = m.get(key) {
                        for c in cs {
                            if let Some(i) = c.get("image").and_then(Value::as_str) {
                                out.insert(i.to_string());
                            }
                        }
                    }
                }
                for (k, v) in m {
                    if k != "containers" && k != "initContainers" {
                        walk(v, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    for o in objects {
        walk(&Value::Object(o.body.clone()), &mut out);
    }
    out.into_iter().collect()
}

/// Argo CD's URL equivalence (host case, `.git`, a trailing slash, scp-like SSH).
fn same_repository(a: &str, b: &str) -> bool {
    a == b || shipway_git::webhook::normalize_url(a) == shipway_git::webhook::normalize_url(b)
}
