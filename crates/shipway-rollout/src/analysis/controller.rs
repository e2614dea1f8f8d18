//! The AnalysisRun controller on `shipway-controller`'s runner: resolve arguments, take the
//! measurements that are due (concurrently), decide with [`super::step`], write `status`, and
//! come back when the next measurement is due. Jobs a `job` metric created are owned by the run,
//! so their changes wake it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use shipway_controller::{Action, Cache, Clock, Controller, GroupKind, exponential_backoff};
use shipway_model::types::{
    AnalysisRunSpec, AnalysisRunStatus, JobStatus, Measurement, Metric, to_value,
};
use shipway_model::{Object, ObjectMeta, OwnerReference};
use shipway_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::provider::{Providers, Reading};
use super::{Phase, args};

pub const ACTOR: &str = "controller:analysis";

/// Label on a job metric's Job (and its pods) naming the run's uid, as Argo's.
pub const RUN_UID_LABEL: &str = "analysisrun.argoproj.io/uid";
const JOB_NAME: &str = "job-name";

pub struct AnalysisController {
    pub store: Store,
    pub cache: Cache,
    pub clock: Clock,
    pub providers: Providers,
}

impl AnalysisController {
    pub fn new(store: Store, cache: Cache, clock: Clock, providers: Providers) -> Self {
        AnalysisController {
            store,
            cache,
            clock,
            providers,
        }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let controller = Controller::new(
            GroupKind::from_static("argoproj.io", "AnalysisRun"),
            self.cache.clone(),
        )
        .owns(GroupKind::from_static("batch", "Job"));
        controller
            .run(
                |obj: Arc<Object>, ctx: Arc<AnalysisController>| async move {
                    ctx.reconcile(&obj).await
                },
                |obj: Arc<Object>, e: &StoreError, failures, _| {
                    if let StoreError::Conflict { .. } = e {
                        return Action::Requeue(Duration::from_millis(20));
                    }
                    let backoff = exponential_backoff(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(30),
                    );
                    tracing::warn!(object = %obj.key(), error = %e, "analysis reconcile failed; retrying in {backoff:?}");
                    Action::Requeue(backoff)
                },
                Arc::new(self),
                shutdown,
            )
            .await;
    }

    /// One pass over `run`.
    pub async fn reconcile(&self, run: &Object) -> Result<Action, StoreError> {
        let status: AnalysisRunStatus = run.status_as().unwrap_or_default();
        if Phase::parse(&status.phase).is_some_and(Phase::completed) {
            return Ok(Action::AwaitChange);
        }
        let spec: AnalysisRunSpec = match run.spec_as() {
            Ok(s) => s,
            Err(e) => {
                return self
                    .fail(run, status, format!("Analysis spec invalid: {e}"))
                    .await;
            }
        };
        let resolved = match args::resolve(&spec.args, run, |k| self.cache.get(k)) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("Unable to resolve metric arguments: {e}");
                return self.fail(run, status, msg).await;
            }
        };
        let metrics: Result<Vec<Metric>, String> = spec
            .metrics
            .iter()
            .map(|m| args::substitute(m, &resolved))
            .collect();
        let metrics = match metrics {
            Ok(m) => m,
            Err(e) => {
                let msg = format!("Unable to resolve metric arguments: {e}");
                return self.fail(run, status, msg).await;
            }
        };
        let checked = super::validate(&metrics).and_then(|()| {
            Ok((
                super::dry_run_metrics(&spec, &metrics)?,
                super::retention_limits(&spec, &metrics)?,
            ))
        });
        let (dry_run, limits) = match checked {
            Ok(c) => c,
            Err(e) => {
                return self
                    .fail(run, status, format!("Analysis spec invalid: {e}"))
                    .await;
            }
        };
        let terminating = super::is_terminating(&spec, &status);
        let tasks = super::due(&metrics, &status, terminating, self.clock.now());
        let measurements = futures_util::future::join_all(tasks.iter().map(|task| {
            let metric = &metrics[task.index];
            let previous = status
                .metric_results
                .iter()
                .find(|r| r.name == metric.name)
                .and_then(|r| r.measurements.last());
            let secrets = &resolved.secrets;
            async move {
                let m = self
                    .providers
                    .measure(metric, run, *task, previous, terminating, secrets)
                    .await;
                (*task, m)
            }
        }))
        .await;
        let decision = super::step(
            &spec,
            &metrics,
            &dry_run,
            &limits,
            &status,
            self.clock.now(),
            measurements,
        );
        self.write(run, &decision.status).await?;
        // Argo's events: each metric as it completes, then the run.
        for r in &decision.status.metric_results {
            let before = status.metric_results.iter().find(|o| o.name == r.name);
            let done = Phase::parse(&r.phase).filter(|p| p.completed());
            if let Some(p) = done
                && before.is_none_or(|b| b.phase != r.phase)
            {
                let message = format!("Metric '{}' Completed. Result: {}", r.name, p.as_str());
                self.event(run, &format!("Metric{}", p.as_str()), &message)
                    .await;
            }
        }
        if decision.completed_now {
            self.completed(run, decision.phase).await;
        }
        Ok(decision
            .requeue
            .map_or(Action::AwaitChange, Action::Requeue))
    }

    async fn fail(
        &self,
        run: &Object,
        mut status: AnalysisRunStatus,
        message: String,
    ) -> Result<Action, StoreError> {
        tracing::warn!(run = %run.key(), "{message}");
        status.phase = Phase::Error.as_str().into();
        status.message = message;
        status
            .started_at
            .get_or_insert_with(|| self.clock.timestamp());
        status
            .completed_at
            .get_or_insert_with(|| self.clock.timestamp());
        self.write(run, &status).await?;
        self.completed(run, Phase::Error).await;
        Ok(Action::AwaitChange)
    }

    async fn completed(&self, run: &Object, phase: Phase) {
        let message = format!("Analysis Completed. Result: {}", phase.as_str());
        tracing::info!(run = %run.key(), "{message}");
        self.event(run, &format!("AnalysisRun{}", phase.as_str()), &message)
            .await;
    }

    async fn event(&self, run: &Object, reason: &str, message: &str) {
        if let Err(e) = self
            .store
            .record_event(&run.key(), ACTOR, reason, message)
            .await
        {
            tracing::warn!(object = %run.key(), reason, error = %e, "cannot record an event");
        }
    }

    async fn write(&self, run: &Object, status: &AnalysisRunStatus) -> Result<(), StoreError> {
        if run.status() == Some(&to_value(status)) {
            return Ok(());
        }
        let mut updated = run.clone();
        updated.set_status(status);
        self.store.update_status(updated, ACTOR).await?;
        Ok(())
    }
}

/// The `job` provider: a Job from the metric's `job` template, owned by the run; Successful when
/// it completes, Failed when it fails (Argo's job provider).
pub struct JobProvider {
    pub store: Store,
    pub cache: Cache,
    pub clock: Clock,
}

impl JobProvider {
    pub(crate) async fn measure_job(
        &self,
        metric: &Metric,
        run: &Object,
        current: &Measurement,
    ) -> Result<Reading, String> {
        let namespace = run.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(name) = current.metadata.get(JOB_NAME).and_then(Value::as_str) {
            let key = GroupKind::from_static("batch", "Job").key(namespace, name);
            let Some(job) = self.cache.get(&key) else {
                return Err(format!("job {namespace}/{name} not found"));
            };
            let status: JobStatus = job.status_as().map_err(|e| e.to_string())?;
            let finished = status
                .conditions
                .iter()
                .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.is_true());
            return Ok(match finished.map(|c| c.type_.as_str()) {
                Some("Complete") => Reading::Decided {
                    phase: Phase::Successful,
                    message: String::new(),
                },
                // As Argo's: the phase alone (the Job's own status says why).
                Some(_) => Reading::Decided {
                    phase: Phase::Failed,
                    message: String::new(),
                },
                None => Reading::Running {
                    metadata: Map::new(),
                },
            });
        }
        let job_metric = metric
            .provider
            .job
            .as_ref()
            .ok_or_else(|| format!("metric \"{}\" has no job provider", metric.name))?;
        let uid = run.metadata.uid.clone().unwrap_or_default();
        // One Job per measurement: numbered after the run's Jobs so far.
        let n = self.cache.owned_by(&uid).len() + 1;
        let name = job_name(&run.metadata.name, &metric.name, n);
        // The template's metadata has labels and annotations but no name: the name is ours.
        let mut given = job_metric.metadata.clone().unwrap_or_else(|| json!({}));
        if let Some(m) = given.as_object_mut() {
            m.insert("name".into(), Value::String(name.clone()));
        }
        let mut meta: ObjectMeta = serde_json::from_value(given)
            .map_err(|e| format!("metric \"{}\": job metadata: {e}", metric.name))?;
        meta.namespace = Some(namespace.to_string());
        meta.labels.insert(RUN_UID_LABEL.into(), uid.clone());
        meta.annotations.insert(
            "analysisrun.argoproj.io/name".into(),
            run.metadata.name.clone(),
        );
        meta.annotations
            .insert("analysisrun.argoproj.io/namespace".into(), namespace.into());
        meta.annotations.insert(
            "analysisrun.argoproj.io/metric-name".into(),
            metric.name.clone(),
        );
        meta.owner_references = vec![OwnerReference {
            api_version: run.api_version.clone(),
            kind: "AnalysisRun".into(),
            name: run.metadata.name.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }];
        let mut spec = job_metric.spec.clone();
        if let Some(labels) = spec
            .pointer_mut("/template/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.insert(RUN_UID_LABEL.into(), Value::String(uid));
        } else if let Some(template) = spec.get_mut("template").and_then(Value::as_object_mut) {
            let md = template.entry("metadata").or_insert_with(|| json!({}));
            if let Some(md) = md.as_object_mut() {
                md.insert("labels".into(), json!({ RUN_UID_LABEL: uid }));
            }
        }
        let job: Object = serde_json::from_value(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta,
            "spec": spec,
        }))
        .map_err(|e| format!("job {name}: {e}"))?;
        match self.store.create(job, ACTOR).await {
            Ok(_) => {}
            // A retried pass finds its Job already made.
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(format!("job create {name} failed: {e}")),
        }
        let mut metadata = Map::new();
        metadata.insert(JOB_NAME.into(), Value::String(name));
        Ok(Reading::Running { metadata })
    }
}

impl JobProvider {
    /// Deletes the Job of an in-flight measurement (the run was told to stop).
    pub(crate) async fn terminate(&self, run: &Object, current: &Measurement) {
        let Some(name) = current.metadata.get(JOB_NAME).and_then(Value::as_str) else {
            return;
        };
        let namespace = run.metadata.namespace.as_deref().unwrap_or_default();
        let key = GroupKind::from_static("batch", "Job").key(namespace, name);
        if let Err(e) = self.store.delete(&key, ACTOR).await
            && !matches!(e, StoreError::NotFound(_))
        {
            tracing::warn!(job = %key, error = %e, "cannot delete a terminated measurement's Job");
        }
    }
}

/// `<run>-<metric>-<n>`, cut to fit the 63 characters of a label value (the Job's pods carry
/// its name as one).
fn job_name(run: &str, metric: &str, n: usize) -> String {
    let suffix = format!("-{n}");
    let mut base = format!("{run}-{metric}")
        .to_lowercase()
        .replace(|c: char| !(c.is_ascii_alphanumeric() || c == '-'), "-");
    base.truncate(63 - suffix.len());
    let base = base.trim_end_matches('-');
    format!("{base}{suffix}")
}
