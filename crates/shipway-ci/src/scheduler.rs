//! The run scheduler: a controller of `WorkflowRun`s on the shared cache. A queued run is
//! executed by `shipway-pipeline` in a checkout of its commit, with job slots shared by every
//! run of the server; its status and log lines are recorded as it goes (`record`). A run this
//! process did not start but that says it is running was cut short by a restart: it is
//! recorded as failed with the reason, never left running.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;
use shipway_controller::{Action, Cache, Clock, Controller, GroupKind, exponential_backoff};
use shipway_git::Repo;
use shipway_git::hosted::Hosted;
use shipway_model::types::workflow_run::{
    COMPLETED, GROUP, IN_PROGRESS, JobStatus, KIND, QUEUED, WAITING, WorkflowRunSpec,
    WorkflowRunStatus,
};
use shipway_model::{Key, Object};
use shipway_pipeline::exec::{
    Executor, Groups, PIDS_DIR, RunSpec, Status, run_workflow, workflow_concurrency,
};
use shipway_pipeline::load::{Options, load_from};
use shipway_runtime::images::ImageStore;
use shipway_store::{SettingKind, Store, StoreError};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::CiError;
use crate::gate::EnvironmentGate;
use crate::platform::RunPlatform;
use crate::record::{recorder, runner_line};
use crate::trigger::RUN_FINALIZER;

/// How long a step left by a killed server gets between SIGTERM and SIGKILL.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// What a run cut short by a restart says.
pub const INTERRUPTED: &str =
    "The run was interrupted: shipway stopped while it was in progress. Re-run it to try again.";

/// The runner labels a server offers unless told others (`shipway up --runner-label`): what
/// GitHub's self-hosted Linux runners carry, and `ubuntu-latest`, which most workflows ask for.
pub const DEFAULT_RUNNER_LABELS: [&str; 4] = ["self-hosted", "linux", "x64", "ubuntu-latest"];

/// Issues the token a run's steps get as `SHIPWAY_TOKEN`, so `shipway app wait` or `shipway
/// promote` work inside a job; implemented by the API server's token list.
pub trait RunTokens: Send + Sync {
    /// A new token acting for run `run` (deployer role, short-lived).
    fn issue(&self, run: &str) -> String;
    /// Voids a token [`RunTokens::issue`] gave: the run ended.
    fn revoke(&self, token: &str);
}

/// What steps need to call back into the server: its address and the run tokens.
#[derive(Clone)]
pub struct RunAccess {
    /// The API's address, given as `SHIPWAY_SERVER`.
    pub server: String,
    pub tokens: Arc<dyn RunTokens>,
}

/// Revokes a run's token however the run ends (an error or a panic included).
struct Revoke(Arc<dyn RunTokens>, String);

impl Drop for Revoke {
    fn drop(&mut self) {
        self.0.revoke(&self.1);
    }
}

/// Runs WorkflowRuns. Cheap to share; one per server.
pub struct Scheduler {
    store: Store,
    cache: Cache,
    hosted: Arc<Hosted>,
    clock: Clock,
    /// `<data-dir>/runs`: one directory per run attempt (workspaces, temp, artifacts).
    runs_dir: PathBuf,
    /// `actions/cache`'s store, shared by every run.
    cache_dir: PathBuf,
    /// The image store `shipway/image` publishes into (the runtime's).
    images: ImageStore,
    /// The server-wide job limit (`--max-parallel-jobs`).
    slots: Arc<Semaphore>,
    /// The runner labels jobs' `runs-on` may ask for.
    labels: Vec<String>,
    /// Runs this process is executing, with their cancels and their gates' wake-ups.
    active: Mutex<HashMap<Key, Active>>,
    /// Concurrency groups per repository (`namespace/name`), as GitHub scopes them: the
    /// workflow-level groups runs enter before they start, and the job-level ones their jobs
    /// enter (apart, so a run never waits for itself).
    groups: Mutex<HashMap<String, RepoGroups>>,
    /// This instance's id, written into the status of the runs it executes.
    instance: String,
    shutdown: CancellationToken,
    /// `None`: steps get no `SHIPWAY_SERVER` nor `SHIPWAY_TOKEN`.
    access: Option<RunAccess>,
}

/// A run this process executes.
#[derive(Clone)]
struct Active {
    cancel: CancellationToken,
    /// Tells the run's environment gate that the run changed (a review was added).
    wake: Arc<Notify>,
}

/// One repository's concurrency groups: those runs enter, and those their jobs enter.
#[derive(Clone, Default)]
struct RepoGroups {
    runs: Arc<Groups>,
    jobs: Arc<Groups>,
}

fn kind() -> GroupKind {
    GroupKind::new(GROUP, KIND)
}

impl Scheduler {
    pub fn new(
        store: Store,
        cache: Cache,
        hosted: Arc<Hosted>,
        data_dir: &Path,
        max_parallel_jobs: usize,
        runner_labels: Vec<String>,
        access: Option<RunAccess>,
    ) -> Arc<Scheduler> {
        let labels = if runner_labels.is_empty() {
            DEFAULT_RUNNER_LABELS.map(String::from).to_vec()
        } else {
            runner_labels
        };
        Arc::new(Scheduler {
            store,
            cache,
            hosted,
            clock: Clock::new(),
            runs_dir: data_dir.join("runs"),
            cache_dir: data_dir.join("actions-cache"),
            images: ImageStore::new(data_dir),
            slots: Arc::new(Semaphore::new(max_parallel_jobs.max(1))),
            labels,
            active: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            instance: format!("{:016x}", rand_id()),
            shutdown: CancellationToken::new(),
            access,
        })
    }

    /// The `shipway/image` and `shipway/promote` actions of run `key`: they publish into this
    /// server's image store and push to its hosted repositories with the run's token.
    fn platform(&self, key: &Key, token: Option<String>, sha: &str) -> RunPlatform {
        let store = self.store.clone();
        let run = key.clone();
        let handle = tokio::runtime::Handle::current();
        RunPlatform {
            images: self.images.clone(),
            hosted: self.access.is_some().then(|| self.hosted.clone()),
            token,
            run: key.name.clone(),
            sha: sha.to_string(),
            // Read when a promotion is made (on a blocking thread), so it names the approvals
            // that let its job start.
            approvers: Arc::new(move || {
                let spec = handle
                    .block_on(store.get(&run))
                    .ok()
                    .flatten()
                    .and_then(|r| r.spec_as::<WorkflowRunSpec>().ok());
                spec.map(|s| crate::promote::approvers(&s))
                    .unwrap_or_default()
            }),
        }
    }

    /// Reconciles runs until `shutdown`; then cancels the runs in flight and waits for them
    /// to record how they ended.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let controller = Controller::new(kind(), self.cache.clone());
        let stop = self.shutdown.clone();
        controller
            .run(
                |obj: Arc<Object>, ctx: Arc<Scheduler>| async move { ctx.reconcile(&obj).await },
                |obj, e: &CiError, failures, _| {
                    tracing::warn!(run = %obj.key(), error = %e, "workflow run");
                    Action::Requeue(exponential_backoff(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(30),
                    ))
                },
                self.clone(),
                shutdown,
            )
            .await;
        stop.cancel();
        // The runs see the cancel and record themselves as cancelled.
        for _ in 0..600 {
            if self.active_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Active>> {
        self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The workflow-level and job-level concurrency groups of a repository.
    fn groups(&self, repository: &str) -> RepoGroups {
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(repository.to_string())
            .or_default()
            .clone()
    }

    fn active_count(&self) -> usize {
        self.active().len()
    }

    async fn reconcile(self: &Arc<Self>, run: &Object) -> Result<Action, CiError> {
        if run.metadata.deletion_timestamp.is_some() {
            return self.finalize(run).await;
        }
        let status: WorkflowRunStatus = run.status_as()?;
        let spec: WorkflowRunSpec = run.spec_as()?;
        let rerun = status.is_completed() && spec.run_attempt > status.attempt();
        if status.is_completed() && !rerun {
            return Ok(Action::AwaitChange);
        }
        let key = run.key();
        if let Some(active) = self.active().get(&key) {
            if spec.cancel {
                active.cancel.cancel();
            }
            active.wake.notify_waiters();
            return Ok(Action::AwaitChange);
        }
        let state = status.status.as_deref();
        if !rerun
            && (state == Some(IN_PROGRESS) || state == Some(WAITING) || state == Some(QUEUED))
            && status.runner.as_deref() == Some(self.instance.as_str())
        {
            // Ours, and no longer running here: the cache has not yet seen its last status
            // write (the task records its own end, failures included).
            return Ok(Action::AwaitChange);
        }
        if !rerun && (state == Some(IN_PROGRESS) || state == Some(WAITING)) {
            self.interrupted(run, status).await?;
            return Ok(Action::AwaitChange);
        }
        if spec.cancel {
            let mut status = status;
            status.status = Some(COMPLETED.into());
            status.attempt = Some(spec.run_attempt);
            status.conclusion = Some("cancelled".into());
            status.completed_at = Some(self.clock.timestamp());
            status.message = Some("The run was cancelled before it started.".into());
            put_status(&self.store, run, &status).await?;
            return Ok(Action::AwaitChange);
        }
        let active = Active {
            cancel: self.shutdown.child_token(),
            wake: Arc::new(Notify::new()),
        };
        self.active().insert(key.clone(), active.clone());
        let this = self.clone();
        let run = run.clone();
        tokio::spawn(async move {
            if let Err(e) = this.execute(&run, spec, active).await {
                tracing::warn!(run = %run.key(), error = %e, "recording a workflow run");
                // Never leave it in progress: record the failure if the store takes it.
                if let Ok(Some(now)) = this.store.get(&run.key()).await
                    && let Ok(mut status) = now.status_as::<WorkflowRunStatus>()
                    && !status.is_completed()
                {
                    status.status = Some(COMPLETED.into());
                    status.conclusion = Some("failure".into());
                    status.completed_at = Some(this.clock.timestamp());
                    status.message = Some(format!("The run could not be recorded: {e}"));
                    let _ = put_status(&this.store, &now, &status).await;
                }
            }
            this.active().remove(&run.key());
        });
        Ok(Action::AwaitChange)
    }

    /// A deleted run: cancelled if it runs here, then its log lines and its run directory (every
    /// attempt's workspace and artifacts) removed, then the finalizer.
    async fn finalize(&self, run: &Object) -> Result<Action, CiError> {
        if !run.metadata.finalizers.iter().any(|f| f == RUN_FINALIZER) {
            return Ok(Action::AwaitChange);
        }
        if let Some(active) = self.active().get(&run.key()) {
            active.cancel.cancel();
            // It records its end, then leaves `active`; look again then.
            return Ok(Action::Requeue(Duration::from_millis(100)));
        }
        self.store.delete_logs(&run.key()).await?;
        let dir = self
            .runs_dir
            .join(run.metadata.namespace.as_deref().unwrap_or("default"))
            .join(&run.metadata.name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(CiError::Other(format!(
                    "removing the run directory {}: {e}",
                    dir.display()
                )));
            }
        }
        let Some(mut current) = self.store.get(&run.key()).await? else {
            return Ok(Action::AwaitChange);
        };
        current.metadata.finalizers.retain(|f| f != RUN_FINALIZER);
        match self.store.update(current, crate::ACTOR).await {
            Ok(_) => Ok(Action::AwaitChange),
            Err(StoreError::Conflict { .. }) => Ok(Action::Requeue(Duration::ZERO)),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops the step processes an earlier process left running for attempt `attempt` of
    /// `run` (recorded under its run directory; each checked to be a step of this run), so a
    /// killed server leaves no orphan behind once it is back.
    async fn stop_left_steps(&self, run: &Object, attempt: u64) {
        let run_dir = self
            .runs_dir
            .join(run.metadata.namespace.as_deref().unwrap_or("default"))
            .join(&run.metadata.name)
            .join(attempt.to_string());
        let marker = format!("GITHUB_EVENT_PATH={}", run_dir.join("event.json").display());
        let Ok(entries) = std::fs::read_dir(run_dir.join(PIDS_DIR)) else {
            return;
        };
        for entry in entries.flatten() {
            if let Some(pgid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
                && shipway_process::stop_orphan(pgid, &marker, ORPHAN_GRACE).await
            {
                tracing::info!(run = %run.key(), pgid, "stopped a step left running by the previous process");
            }
            let _ = std::fs::remove_file(entry.path());
        }
    }

    /// A run an earlier process started: failed, its unfinished jobs and steps with it.
    async fn interrupted(
        &self,
        run: &Object,
        mut status: WorkflowRunStatus,
    ) -> Result<(), CiError> {
        let now = self.clock.timestamp();
        for job in &mut status.jobs {
            if job.status == COMPLETED {
                continue;
            }
            job.status = COMPLETED.into();
            job.conclusion = Some("failure".into());
            job.completed_at = Some(now.clone());
            for step in &mut job.steps {
                if step.status != COMPLETED {
                    step.status = COMPLETED.into();
                    step.conclusion = Some("failure".into());
                    step.completed_at = Some(now.clone());
                }
            }
        }
        status.status = Some(COMPLETED.into());
        status.conclusion = Some("failure".into());
        status.completed_at = Some(now);
        status.message = Some(INTERRUPTED.into());
        self.stop_left_steps(run, status.attempt()).await;
        let lines = vec![runner_line(INTERRUPTED)];
        self.store.append_logs(&run.key(), lines).await?;
        put_status(&self.store, run, &status).await?;
        Ok(())
    }

    async fn execute(
        &self,
        run: &Object,
        spec: WorkflowRunSpec,
        active: Active,
    ) -> Result<(), CiError> {
        let Active { cancel, wake } = active;
        let earlier: WorkflowRunStatus = run.status_as().unwrap_or_default();
        let mut status = WorkflowRunStatus {
            status: Some(IN_PROGRESS.into()),
            attempt: Some(spec.run_attempt),
            runner: Some(self.instance.clone()),
            started_at: Some(self.clock.timestamp()),
            ..WorkflowRunStatus::default()
        };
        let run = put_status(&self.store, run, &status).await?;
        let dir = self.hosted.dir(&spec.repository)?;
        let (sha, file, read_dir) = (spec.head_sha.clone(), spec.workflow.clone(), dir.clone());
        let bundle = tokio::task::spawn_blocking(move || {
            let tree = Repo::open(&read_dir)?.tree(&sha)?;
            Ok::<_, shipway_git::Error>(load_from(&tree, Path::new("/"), &file))
        })
        .await
        .map_err(|e| CiError::Other(format!("reading the workflow: {e}")))?;
        let bundle = match bundle {
            Ok(b) => b,
            Err(e) => {
                return self
                    .fail_before_start(&run, status, format!("cannot read {}: {e}", spec.workflow))
                    .await;
            }
        };
        let blocking: Vec<String> = bundle
            .blocking(Options::default())
            .into_iter()
            .map(ToString::to_string)
            .collect();
        if bundle.workflow.is_none() || !blocking.is_empty() {
            return self
                .fail_before_start(
                    &run,
                    status,
                    format!("Invalid workflow file: {}", blocking.join("\n")),
                )
                .await;
        }
        status.name = bundle.workflow.as_ref().and_then(|w| w.name.clone());
        let reuse = if spec.rerun_failed && spec.run_attempt > 1 {
            let (kept, reuse) = bundle
                .workflow
                .as_ref()
                .map(|w| kept_jobs(w, &earlier))
                .unwrap_or_default();
            status.jobs = kept;
            reuse
        } else {
            Default::default()
        };
        if spec.run_attempt > 1 {
            // The earlier attempts' lines stay; this marks where the new one begins.
            let mut text = format!("Re-run: attempt {}", spec.run_attempt);
            if spec.rerun_failed {
                let kept: Vec<&str> = reuse.keys().map(String::as_str).collect();
                text.push_str(&format!(
                    " (failed jobs and their dependents; kept from attempt {}: {})",
                    earlier.attempt(),
                    if kept.is_empty() {
                        "none".to_string()
                    } else {
                        kept.join(", ")
                    }
                ));
            }
            self.store
                .append_logs(&run.key(), vec![runner_line(text)])
                .await?;
        }
        let namespace = run.metadata.namespace.clone().unwrap_or_default();
        // Read at run start, so a secret set before the push is the one the steps see.
        let (secrets, vars) = match (
            secrets_for(&self.store, &spec.repository, None).await,
            vars_for(&self.store, &spec.repository, None).await,
        ) {
            (Ok(s), Ok(v)) => (s, v),
            (Err(e), _) | (_, Err(e)) => {
                return self
                    .fail_before_start(
                        &run,
                        status,
                        format!("cannot read the run's secrets and variables: {e}"),
                    )
                    .await;
            }
        };
        let mut run_spec = RunSpec {
            event_name: spec.event.clone(),
            event: run
                .field("spec.payload")
                .cloned()
                .unwrap_or(Value::Object(Default::default())),
            sha: spec.head_sha.clone(),
            git_ref: spec.git_ref.clone(),
            repository: format!("{namespace}/{}", spec.repository),
            actor: spec.actor.clone(),
            run_id: run.resource_version().unwrap_or(0),
            run_number: spec.run_number,
            run_attempt: spec.run_attempt,
            inputs: spec
                .inputs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            reuse,
            secrets,
            vars,
            ..RunSpec::default()
        };
        let run_dir = self
            .runs_dir
            .join(&namespace)
            .join(&run.metadata.name)
            .join(spec.run_attempt.to_string());
        create_private_dir(&run_dir)?;
        create_private_dir(&self.cache_dir)?;
        let RepoGroups {
            runs: run_groups,
            jobs: job_groups,
        } = self.groups(&format!("{namespace}/{}", spec.repository));
        // A workflow-level concurrency group is held for the whole run; a newer run of the
        // group replaces a waiting one, and with cancel-in-progress cancels a running one.
        let _held = match workflow_concurrency(&bundle, &run_spec) {
            None => None,
            Some((group, cancel_in_progress)) => {
                let entering = run_groups.enter(&group, cancel_in_progress, &cancel);
                tokio::pin!(entering);
                let entered = tokio::select! {
                    biased;
                    slot = &mut entering => slot,
                    () = std::future::ready(()) => {
                        status.status = Some(QUEUED.into());
                        status.message = Some(format!(
                            "Waiting for a run of concurrency group '{group}' to complete"
                        ));
                        let run = put_status(&self.store, &run, &status).await?;
                        let slot = entering.await;
                        status.status = Some(IN_PROGRESS.into());
                        status.message = None;
                        put_status(&self.store, &run, &status).await?;
                        slot
                    }
                };
                match entered {
                    Some(slot) => Some((slot, group.clone())),
                    None => {
                        let message = if self.shutdown.is_cancelled() {
                            "The run was cancelled: shipway was stopped.".to_string()
                        } else if self.cancel_requested(&run).await {
                            "The run was cancelled before it started.".to_string()
                        } else {
                            superseded(&group)
                        };
                        let run = self.store.get(&run.key()).await?.unwrap_or(run);
                        status.status = Some(COMPLETED.into());
                        status.conclusion = Some("cancelled".into());
                        status.completed_at = Some(self.clock.timestamp());
                        status.message = Some(message);
                        put_status(&self.store, &run, &status).await?;
                        return Ok(());
                    }
                }
            }
        };
        let run = self.store.get(&run.key()).await?.unwrap_or(run);
        let key = run.key();
        let mut env = base_env();
        let mut run_token = None;
        let _revoke = self.access.as_ref().map(|access| {
            let token = access.tokens.issue(&key.name);
            run_token = Some(token.clone());
            env.push(("SHIPWAY_SERVER".into(), access.server.clone()));
            env.push(("SHIPWAY_TOKEN".into(), token.clone()));
            // So `shipway promote` inside a job names its run, commit and approvers.
            env.push(("SHIPWAY_RUN".into(), key.name.clone()));
            env.push(("SHIPWAY_NAMESPACE".into(), key.namespace.clone()));
            // Also `secrets.SHIPWAY_TOKEN`, as GitHub gives `secrets.GITHUB_TOKEN`: that makes
            // it masked in every line like any secret.
            run_spec
                .secrets
                .insert("SHIPWAY_TOKEN".into(), token.clone());
            Revoke(access.tokens.clone(), token)
        });
        let (observer, mut writer) = recorder(self.store.clone(), self.clock, run, status);
        writer.mask(run_spec.secrets.values());
        let platform = self.platform(&key, run_token, &spec.head_sha);
        let gate = EnvironmentGate {
            store: self.store.clone(),
            clock: self.clock,
            run: key,
            repository: spec.repository.clone(),
            actor: spec.actor.clone(),
            git_ref: spec.git_ref.clone(),
            attempt: spec.run_attempt,
            wake,
            recorder: observer.clone(),
        };
        let exec = Executor::new(dir, run_dir, self.cache_dir.clone())
            .base_env(env)
            .slots(self.slots.clone())
            .labels(self.labels.clone())
            .groups(job_groups)
            .observer(Arc::new(observer))
            .gate(Arc::new(gate))
            .platform(Arc::new(platform))
            .cancel(cancel.clone());
        let record = tokio::spawn(async move {
            let res = writer.drain().await;
            (writer, res)
        });
        // The executor owns the observer; when the run ends it is dropped and the writer drains.
        let report = run_workflow(&bundle, run_spec, exec).await;
        let (mut writer, recorded) = record
            .await
            .map_err(|e| CiError::Other(format!("the run's recorder stopped: {e}")))?;
        if let Err(e) = recorded {
            // The status may be behind; the end is written below all the same.
            tracing::warn!(run = %writer.key(), error = %e, "recording the run");
        }
        writer.status.status = Some(COMPLETED.into());
        writer.status.conclusion = Some(report.result.as_str().into());
        writer.status.completed_at = Some(self.clock.timestamp());
        if cancel.is_cancelled() && report.result == Status::Cancelled {
            let run = self.store.get(&writer.key()).await?;
            writer.status.message = if self.shutdown.is_cancelled() {
                Some("The run was cancelled: shipway was stopped.".into())
            } else if run
                .as_ref()
                .is_some_and(|r| r.spec_as::<WorkflowRunSpec>().is_ok_and(|s| s.cancel))
            {
                Some("The run was cancelled.".into())
            } else {
                // Nothing else cancels a run: a newer one of its group, with cancel-in-progress.
                _held.as_ref().map(|(_, group)| superseded(group))
            };
        }
        writer.flush().await?;
        writer.write_status().await?;
        Ok(())
    }

    async fn cancel_requested(&self, run: &Object) -> bool {
        matches!(self.store.get(&run.key()).await, Ok(Some(r)) if r.spec_as::<WorkflowRunSpec>().is_ok_and(|s| s.cancel))
    }

    async fn fail_before_start(
        &self,
        run: &Object,
        mut status: WorkflowRunStatus,
        message: String,
    ) -> Result<(), CiError> {
        status.status = Some(COMPLETED.into());
        status.conclusion = Some("failure".into());
        status.completed_at = Some(self.clock.timestamp());
        status.message = Some(message.clone());
        let line = runner_line(message);
        self.store.append_logs(&run.key(), vec![line]).await?;
        put_status(&self.store, run, &status).await?;
        Ok(())
    }
}

/// What a re-run of failed jobs keeps from the `earlier` attempt: the jobs (all their
/// instances) that succeeded and need no job that runs again, as GitHub keeps them; their
/// statuses as they were, and their outputs by job key for the executor.
fn kept_jobs(
    w: &shipway_pipeline::workflow::Workflow,
    earlier: &WorkflowRunStatus,
) -> (
    Vec<JobStatus>,
    indexmap::IndexMap<String, indexmap::IndexMap<String, String>>,
) {
    // A job's key: `build` for `build (linux)` and `call/inner` alike.
    let key = |j: &JobStatus| {
        let id = j.id.clone().unwrap_or_else(|| j.name.clone());
        id.split('/').next().unwrap_or_default().to_string()
    };
    let mut ok: HashMap<String, bool> = HashMap::new();
    for j in &earlier.jobs {
        let good = j.conclusion.as_deref() == Some("success");
        *ok.entry(key(j)).or_insert(true) &= good;
    }
    // In the workflow's order, so a job's needs are decided before it.
    let order = shipway_pipeline::graph::order(w).unwrap_or_default();
    let mut keep: Vec<String> = Vec::new();
    for id in order {
        let needs_kept = w.jobs[&id].needs.iter().all(|(n, _)| keep.contains(n));
        if ok.get(&id).copied().unwrap_or(false) && needs_kept {
            keep.push(id);
        }
    }
    let mut reuse: indexmap::IndexMap<String, indexmap::IndexMap<String, String>> = keep
        .iter()
        .map(|k| (k.clone(), Default::default()))
        .collect();
    let mut kept = Vec::new();
    for j in &earlier.jobs {
        if let Some(outputs) = reuse.get_mut(&key(j)) {
            outputs.extend(j.outputs.iter().map(|(a, b)| (a.clone(), b.clone())));
            kept.push(j.clone());
        }
    }
    (kept, reuse)
}

/// The `secrets` context of a run of hosted repository `repo`: the global secrets, overridden by
/// the repository's, and with `env` (a job bound to that environment) by the environment's.
/// Values are plaintext: hand them only to the executor, which masks them in every line.
pub async fn secrets_for(
    store: &Store,
    repo: &str,
    env: Option<&str>,
) -> Result<IndexMap<String, String>, StoreError> {
    let map = store
        .settings_for(SettingKind::Secret, Some(repo), env)
        .await?;
    Ok(map.into_iter().collect())
}

/// The `vars` context, resolved as [`secrets_for`] resolves secrets.
pub async fn vars_for(
    store: &Store,
    repo: &str,
    env: Option<&str>,
) -> Result<IndexMap<String, String>, StoreError> {
    let map = store
        .settings_for(SettingKind::Variable, Some(repo), env)
        .await?;
    Ok(map.into_iter().collect())
}

/// A random id, from the standard library's randomly seeded hasher (no extra dependency).
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// GitHub's words for a run a newer one of its concurrency group replaced or cancelled.
fn superseded(group: &str) -> String {
    format!("Canceling since a higher priority waiting request for '{group}' exists")
}

/// The environment steps start from: the server's PATH and HOME, nothing else of its own
/// environment (its token and database URL stay out of steps).
fn base_env() -> Vec<(String, String)> {
    ["PATH", "HOME", "LANG", "TZ"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect()
}

fn create_private_dir(dir: &Path) -> Result<(), CiError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CiError::Other(format!("cannot create {}: {e}", dir.display())))
}

/// Writes `status` on `run` unconditionally (the status is the scheduler's alone); returns the
/// stored object.
async fn put_status(
    store: &Store,
    run: &Object,
    status: &WorkflowRunStatus,
) -> Result<Object, StoreError> {
    let mut obj = run.clone();
    obj.set_status(status);
    obj.metadata.resource_version = None;
    store.update_status(obj, crate::ACTOR).await
}
