//! The Job controller: runs pods until `completions` succeed, at most `parallelism` at once; fails
//! after `backoffLimit` retries or `activeDeadlineSeconds`; deletes finished Jobs after
//! `ttlSecondsAfterFinished`. Conditions and counts as Kubernetes reports them.
//!
//! The decisions are one pure function, [`plan`] (the Job and what its pods say in, the pods to
//! create and delete and the status to write out), tested below without processes.

use std::sync::Arc;
use std::time::Duration;

use shipway_controller::{Cache, Clock};
use shipway_model::Object;
use shipway_model::types::{JobSpec, JobStatus, condition, to_value};
use shipway_store::Store;
use time::OffsetDateTime;

use crate::controller::{Action, ReconcileError, Reconciler};
use crate::workload::{self, is_terminating, parse_time};

pub struct JobController {
    pub store: Store,
    pub cache: Cache,
    pub clock: Clock,
    /// Delay before recreating a failed pod, doubling per failure (Kubernetes: 10 s, capped at 6 min).
    pub backoff_base: Duration,
}

const ACTOR: &str = "controller:job";

/// What [`plan`] needs to know of one of the Job's pods.
#[derive(Clone, Debug, PartialEq)]
pub struct PodState {
    pub name: String,
    /// `Pending` until the kubelet says otherwise.
    pub phase: String,
    pub terminating: bool,
    pub ready: bool,
    /// The restarts of its containers (with `restartPolicy: OnFailure`, the Job's retries).
    pub restarts: i64,
    /// When its first container terminated, for a failed pod.
    pub finished_at: Option<OffsetDateTime>,
}

impl PodState {
    pub fn of(pod: &Object) -> PodState {
        let status = workload::pod_status(pod);
        PodState {
            name: pod.metadata.name.clone(),
            ready: status.ready_condition().is_some(),
            restarts: status
                .container_statuses
                .iter()
                .map(|c| c.restart_count)
                .sum(),
            finished_at: status
                .container_statuses
                .first()
                .and_then(|c| {
                    c.state
                        .as_ref()?
                        .terminated
                        .as_ref()?
                        .finished_at
                        .as_deref()
                })
                .and_then(parse_time),
            phase: status.phase.unwrap_or_else(|| "Pending".into()),
            terminating: is_terminating(pod),
        }
    }

    fn finished(&self) -> bool {
        matches!(self.phase.as_str(), "Succeeded" | "Failed")
    }
}

/// What the Job controller does in one pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods to delete (a finished or failed Job's running ones).
    pub delete_pods: Vec<String>,
    pub create_pods: i64,
    /// The status to write when it differs from the stored one; `None` leaves it alone.
    pub status: Option<JobStatus>,
    /// The Job outlived `ttlSecondsAfterFinished`.
    pub delete_job: bool,
    pub requeue: Option<Duration>,
}

fn millis(d: time::Duration) -> i64 {
    d.whole_milliseconds() as i64
}

/// The type of the Job's finished condition (`Complete` or `Failed`), if it has one.
fn finished_condition(status: &JobStatus) -> Option<&str> {
    status
        .conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.is_true())
        .map(|c| c.type_.as_str())
}

/// The finished condition `new` has and `old` had not: the Job just completed or failed.
fn finished_now<'a>(old: &JobStatus, new: &'a JobStatus) -> Option<&'a condition::Condition> {
    if finished_condition(old).is_some() {
        return None;
    }
    let done = finished_condition(new)?;
    condition::find(&new.conditions, done)
}

/// The next pass of a Job with `spec` and `status` whose pods are `pods`, at `now` (`timestamp`
/// is `now` as written in statuses).
pub fn plan(
    spec: &JobSpec,
    status: &JobStatus,
    pods: &[PodState],
    now: OffsetDateTime,
    timestamp: &str,
    backoff_base: Duration,
) -> Plan {
    let mut plan = Plan::default();
    if let Some(done) = finished_condition(status) {
        // Finished: only the TTL is left to honour.
        plan.delete_pods = pods
            .iter()
            .filter(|p| !p.terminating && !p.finished())
            .map(|p| p.name.clone())
            .collect();
        let Some(ttl) = spec.ttl_seconds_after_finished else {
            return plan;
        };
        let finished = if done == "Complete" {
            status.completion_time.as_ref()
        } else {
            status.failed_time.as_ref()
        }
        .or(status.completion_time.as_ref())
        .and_then(|t| parse_time(t))
        .unwrap_or(now);
        let age = millis(now - finished);
        if age >= ttl * 1000 {
            plan.delete_job = true;
        } else {
            plan.requeue = Some(Duration::from_millis((ttl * 1000 - age) as u64 + 10));
        }
        return plan;
    }

    let completions = spec.completions.unwrap_or(1).max(0);
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(6).max(0);
    let on_failure = spec.restart_policy() == Some("OnFailure");
    let live: Vec<&PodState> = pods.iter().filter(|p| !p.terminating).collect();
    let succeeded = live.iter().filter(|p| p.phase == "Succeeded").count() as i64;
    let failed: Vec<&&PodState> = live.iter().filter(|p| p.phase == "Failed").collect();
    let failed_pods = failed.len() as i64;
    let active: Vec<&&PodState> = live.iter().filter(|p| !p.finished()).collect();
    // With OnFailure the pod is kept and its containers restart; those restarts are the retries.
    let restarts: i64 = if on_failure {
        active.iter().map(|p| p.restarts).sum()
    } else {
        0
    };
    let failures = failed_pods + restarts;
    let start = status
        .start_time
        .clone()
        .unwrap_or_else(|| timestamp.to_string());
    let mut conditions = status.conditions.clone();
    let mut new_status = JobStatus {
        start_time: Some(start.clone()),
        active: Some(active.len() as i64),
        succeeded: Some(succeeded),
        failed: Some(failures),
        ready: Some(active.iter().filter(|p| p.ready).count() as i64),
        ..JobStatus::default()
    };
    let elapsed = parse_time(&start).map_or(0, |t| millis(now - t));
    let deadline = spec.active_deadline_seconds;
    plan.requeue = deadline.map(|d| Duration::from_millis((d * 1000 - elapsed).max(0) as u64 + 10));

    let failure = if failures > backoff_limit {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline.is_some_and(|d| elapsed >= d * 1000) {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    if let Some((reason, message)) = failure {
        plan.delete_pods = active.iter().map(|p| p.name.clone()).collect();
        new_status.active = Some(0);
        new_status.failed_time = Some(timestamp.to_string());
        condition::set(&mut conditions, "Failed", true, reason, message, timestamp);
        plan.requeue = Some(Duration::from_millis(10));
    } else if succeeded >= completions {
        new_status.completion_time = Some(timestamp.to_string());
        condition::set(
            &mut conditions,
            "Complete",
            true,
            "Completed",
            "Job completed",
            timestamp,
        );
        plan.requeue = Some(Duration::from_millis(10));
    } else {
        let want = parallelism.min(completions - succeeded);
        let missing = want - active.len() as i64;
        if missing > 0 {
            // Failed pods are replaced after a delay that doubles per failure, as Kubernetes does.
            let delay = if failed_pods == 0 {
                Duration::ZERO
            } else {
                backoff_base
                    .saturating_mul(2u32.saturating_pow((failed_pods - 1).min(16) as u32))
                    .min(Duration::from_secs(360))
            };
            let last_failure = failed.iter().filter_map(|p| p.finished_at).max();
            let since = last_failure
                .map(|t| millis(now - t).max(0) as u128)
                .unwrap_or(u128::MAX);
            if since >= delay.as_millis() {
                plan.create_pods = missing;
                new_status.active = Some(active.len() as i64 + missing);
            } else {
                let wait = Duration::from_millis((delay.as_millis() - since) as u64 + 10);
                plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
            }
        }
    }
    new_status.conditions = conditions;
    plan.status = Some(new_status);
    plan
}

impl JobController {
    fn new_pod(job: &Object, spec: &JobSpec) -> Result<Object, ReconcileError> {
        let name = job.metadata.name.clone();
        let labels = [
            ("job-name", name.clone()),
            ("batch.kubernetes.io/job-name", name),
            (
                "controller-uid",
                job.metadata.uid.clone().unwrap_or_default(),
            ),
        ];
        workload::pod_from_template(job, spec.template.as_ref(), &labels)
            .map_err(ReconcileError::Other)
    }
}

impl Reconciler for JobController {
    fn kind(&self) -> (&'static str, &'static str) {
        ("batch", "Job")
    }

    fn owns(&self) -> &'static [(&'static str, &'static str)] {
        &[("", "Pod")]
    }

    async fn reconcile(&self, job: Arc<Object>) -> Result<Action, ReconcileError> {
        if is_terminating(&job) {
            return Ok(Action::AwaitChange);
        }
        let bad = |e: shipway_model::types::ShapeError| ReconcileError::Other(e.to_string());
        let spec: JobSpec = job.spec_as().map_err(bad)?;
        let status: JobStatus = job.status_as().map_err(bad)?;
        let pods = workload::controlled_pods(&self.cache, &job);
        let states: Vec<PodState> = pods.iter().map(PodState::of).collect();
        let plan = plan(
            &spec,
            &status,
            &states,
            self.clock.now(),
            &self.clock.timestamp(),
            self.backoff_base,
        );
        for name in &plan.delete_pods {
            if let Some(p) = pods.iter().find(|p| &p.metadata.name == name) {
                workload::delete_if_present(&self.store, &p.key(), ACTOR).await?;
                let message = format!("Deleted pod: {name}");
                workload::record_event(
                    &self.store,
                    &job.key(),
                    ACTOR,
                    "SuccessfulDelete",
                    &message,
                )
                .await;
            }
        }
        if plan.delete_job {
            workload::delete_if_present(&self.store, &job.key(), ACTOR).await?;
            return Ok(Action::AwaitChange);
        }
        for _ in 0..plan.create_pods {
            let pod = self
                .store
                .create(Self::new_pod(&job, &spec)?, ACTOR)
                .await?;
            let message = format!("Created pod: {}", pod.metadata.name);
            workload::record_event(&self.store, &job.key(), ACTOR, "SuccessfulCreate", &message)
                .await;
        }
        if let Some(new_status) = &plan.status
            && job.status() != Some(&to_value(new_status))
        {
            let mut updated = (*job).clone();
            updated.set_status(new_status);
            self.store.update_status(updated, ACTOR).await?;
            // The pass that finished the Job says how, once its status is written.
            if let Some(c) = finished_now(&status, new_status) {
                let reason = c.reason.as_deref().unwrap_or_default();
                let message = c.message.as_deref().unwrap_or_default();
                workload::record_event(&self.store, &job.key(), ACTOR, reason, message).await;
            }
        }
        Ok(plan.requeue.map_or(Action::AwaitChange, Action::Requeue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 12:00:00 UTC);
    const STAMP: &str = "2026-01-01T12:00:00Z";
    const BACKOFF: Duration = Duration::from_secs(10);

    fn spec(v: serde_json::Value) -> JobSpec {
        serde_json::from_value(v).unwrap()
    }

    fn pod(name: &str, phase: &str) -> PodState {
        PodState {
            name: name.into(),
            phase: phase.into(),
            terminating: false,
            ready: phase == "Running",
            restarts: 0,
            finished_at: None,
        }
    }

    fn ago(secs: i64) -> OffsetDateTime {
        NOW - time::Duration::seconds(secs)
    }

    fn stamp(t: OffsetDateTime) -> String {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    }

    fn conditions(p: &Plan) -> Vec<(String, String)> {
        let status = p.status.as_ref().unwrap();
        status
            .conditions
            .iter()
            .map(|c| (c.type_.clone(), c.reason.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn a_new_job_starts_parallelism_pods_and_tops_up_as_they_succeed() {
        let s = spec(json!({"completions": 3, "parallelism": 2}));
        let p = plan(&s, &JobStatus::default(), &[], NOW, STAMP, BACKOFF);
        assert_eq!(p.create_pods, 2);
        let status = p.status.unwrap();
        assert_eq!(
            (
                status.start_time.as_deref(),
                status.active,
                status.succeeded,
                status.failed
            ),
            (Some(STAMP), Some(2), Some(0), Some(0))
        );
        assert_eq!(p.requeue, None);
        // One succeeded, one running: one more, for the third completion.
        let pods = [pod("a", "Succeeded"), pod("b", "Running")];
        let p = plan(&s, &JobStatus::default(), &pods, NOW, STAMP, BACKOFF);
        assert_eq!(p.create_pods, 1);
        assert_eq!(p.status.unwrap().ready, Some(1));
        // Two succeeded, one running: nothing more (parallelism is capped by what is left).
        let pods = [
            pod("a", "Succeeded"),
            pod("b", "Succeeded"),
            pod("c", "Running"),
        ];
        let p = plan(&s, &JobStatus::default(), &pods, NOW, STAMP, BACKOFF);
        assert_eq!(p.create_pods, 0);
    }

    #[test]
    fn a_failed_pod_is_replaced_after_a_backoff_that_doubles() {
        let s = spec(json!({"backoffLimit": 3}));
        let failed = |name: &str, secs_ago: i64| PodState {
            finished_at: Some(ago(secs_ago)),
            ..pod(name, "Failed")
        };
        // One failure 4 s ago, base 10 s: 6 s more to wait.
        let p = plan(
            &s,
            &JobStatus::default(),
            &[failed("a", 4)],
            NOW,
            STAMP,
            BACKOFF,
        );
        assert_eq!(p.create_pods, 0);
        assert_eq!(p.requeue, Some(Duration::from_millis(6_010)));
        assert_eq!(p.status.unwrap().failed, Some(1));
        // Two failures, the last 15 s ago: 20 s for the second, 5 s more.
        let pods = [failed("a", 40), failed("b", 15)];
        let p = plan(&s, &JobStatus::default(), &pods, NOW, STAMP, BACKOFF);
        assert_eq!(p.requeue, Some(Duration::from_millis(5_010)));
        // Waited long enough.
        let p = plan(
            &s,
            &JobStatus::default(),
            &[failed("a", 11)],
            NOW,
            STAMP,
            BACKOFF,
        );
        assert_eq!(p.create_pods, 1);
    }

    #[test]
    fn failures_past_the_backoff_limit_or_the_deadline_fail_the_job() {
        let s = spec(json!({"backoffLimit": 1}));
        let pods = [pod("a", "Failed"), pod("b", "Failed"), pod("c", "Running")];
        let p = plan(&s, &JobStatus::default(), &pods, NOW, STAMP, BACKOFF);
        assert_eq!(p.delete_pods, ["c"]);
        assert_eq!(p.create_pods, 0);
        assert_eq!(
            conditions(&p),
            [("Failed".into(), "BackoffLimitExceeded".into())]
        );
        let status = p.status.unwrap();
        assert_eq!((status.active, status.failed), (Some(0), Some(2)));
        assert_eq!(status.failed_time.as_deref(), Some(STAMP));

        // With OnFailure the pod stays and its restarts are the failures.
        let s =
            spec(json!({"backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure"}}}));
        let restarting = PodState {
            restarts: 3,
            ..pod("a", "Running")
        };
        let p = plan(
            &s,
            &JobStatus::default(),
            &[restarting],
            NOW,
            STAMP,
            BACKOFF,
        );
        assert_eq!(
            conditions(&p),
            [("Failed".into(), "BackoffLimitExceeded".into())]
        );

        // Active for 61 s of a 60 s deadline.
        let s = spec(json!({"activeDeadlineSeconds": 60}));
        let started = JobStatus {
            start_time: Some(stamp(ago(61))),
            ..JobStatus::default()
        };
        let p = plan(&s, &started, &[pod("a", "Running")], NOW, STAMP, BACKOFF);
        assert_eq!(p.delete_pods, ["a"]);
        assert_eq!(
            conditions(&p),
            [("Failed".into(), "DeadlineExceeded".into())]
        );
        // 20 s in: look again when the deadline passes.
        let started = JobStatus {
            start_time: Some(stamp(ago(20))),
            ..JobStatus::default()
        };
        let p = plan(&s, &started, &[pod("a", "Running")], NOW, STAMP, BACKOFF);
        assert_eq!(p.requeue, Some(Duration::from_millis(40_010)));
        assert_eq!(conditions(&p), []);
    }

    #[test]
    fn a_finished_job_waits_for_its_ttl_then_goes() {
        let s = spec(json!({"ttlSecondsAfterFinished": 100}));
        let p = plan(
            &s,
            &JobStatus::default(),
            &[pod("a", "Succeeded")],
            NOW,
            STAMP,
            BACKOFF,
        );
        assert_eq!(conditions(&p), [("Complete".into(), "Completed".into())]);
        assert_eq!(
            p.status.as_ref().unwrap().completion_time.as_deref(),
            Some(STAMP)
        );

        let done = |secs_ago: i64| {
            let mut status = JobStatus {
                completion_time: Some(stamp(ago(secs_ago))),
                ..JobStatus::default()
            };
            condition::set(
                &mut status.conditions,
                "Complete",
                true,
                "Completed",
                "Job completed",
                STAMP,
            );
            status
        };
        let p = plan(&s, &done(40), &[pod("a", "Succeeded")], NOW, STAMP, BACKOFF);
        assert_eq!(
            p,
            Plan {
                requeue: Some(Duration::from_millis(60_010)),
                ..Plan::default()
            }
        );
        let p = plan(&s, &done(100), &[], NOW, STAMP, BACKOFF);
        assert!(p.delete_job);
        // Without a TTL it stays, its status untouched; a pod still running is stopped.
        let p = plan(
            &JobSpec::default(),
            &done(100),
            &[pod("late", "Running")],
            NOW,
            STAMP,
            BACKOFF,
        );
        assert_eq!(
            p,
            Plan {
                delete_pods: vec!["late".into()],
                ..Plan::default()
            }
        );
    }
}
