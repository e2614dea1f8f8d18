//! The Job controller: runs pods until `completions` succeed, at most `parallelism` at once; fails
//! after `backoffLimit` retries or `activeDeadlineSeconds`; deletes finished Jobs after
//! `ttlSecondsAfterFinished`. Conditions and counts as Kubernetes reports them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shipway_controller::{Cache, Clock};
use shipway_model::Object;
use shipway_store::Store;

use crate::controller::{Action, ReconcileError, Reconciler};
use crate::workload::{self, is_terminating, parse_time, spec_i64};

pub struct JobController {
    pub store: Store,
    pub cache: Cache,
    pub clock: Clock,
    /// Delay before recreating a failed pod, doubling per failure (Kubernetes: 10 s, capped at 6 min).
    pub backoff_base: Duration,
}

const ACTOR: &str = "controller:job";

fn phase(pod: &Object) -> &str {
    pod.status()
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        .unwrap_or("Pending")
}

fn finished_condition(job: &Object) -> Option<&str> {
    let conditions = job.status()?.get("conditions")?.as_array()?;
    conditions
        .iter()
        .find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
        .and_then(|c| c["type"].as_str())
}

impl JobController {
    fn new_pod(job: &Object) -> Result<Object, ReconcileError> {
        let name = job.metadata.name.clone();
        let labels = [
            ("job-name", name.clone()),
            ("batch.kubernetes.io/job-name", name),
            (
                "controller-uid",
                job.metadata.uid.clone().unwrap_or_default(),
            ),
        ];
        workload::pod_from_template(job, &labels).map_err(ReconcileError::Other)
    }

    async fn delete_all(&self, pods: &[&Object]) -> Result<(), ReconcileError> {
        for p in pods {
            workload::delete_if_present(&self.store, &p.key(), ACTOR).await?;
        }
        Ok(())
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
        let pods = workload::controlled_pods(&self.cache, &job);
        let now = self.clock.now();
        let timestamp = self.clock.timestamp();
        let status = job.status().cloned().unwrap_or(json!({}));

        if let Some(done) = finished_condition(&job) {
            // Finished: only the TTL is left to honour.
            let active: Vec<&Object> = pods
                .iter()
                .filter(|p| !is_terminating(p) && !workload::pod_finished(p))
                .collect();
            self.delete_all(&active).await?;
            let Some(ttl) = job
                .spec()
                .and_then(|s| s.get("ttlSecondsAfterFinished"))
                .and_then(Value::as_i64)
            else {
                return Ok(Action::AwaitChange);
            };
            let finished = status
                .get(if done == "Complete" {
                    "completionTime"
                } else {
                    "failedTime"
                })
                .or_else(|| status.get("completionTime"))
                .and_then(Value::as_str)
                .and_then(parse_time)
                .unwrap_or(now);
            let age = (now - finished).whole_milliseconds() as i64;
            if age >= ttl * 1000 {
                workload::delete_if_present(&self.store, &job.key(), ACTOR).await?;
                return Ok(Action::AwaitChange);
            }
            return Ok(Action::Requeue(Duration::from_millis(
                (ttl * 1000 - age) as u64 + 10,
            )));
        }

        let completions = spec_i64(&job, "/completions", 1).max(0);
        let parallelism = spec_i64(&job, "/parallelism", 1).max(0);
        let backoff_limit = spec_i64(&job, "/backoffLimit", 6).max(0);
        let on_failure = job
            .spec()
            .and_then(|s| s.pointer("/template/spec/restartPolicy"))
            .and_then(Value::as_str)
            == Some("OnFailure");
        let live: Vec<&Object> = pods.iter().filter(|p| !is_terminating(p)).collect();
        let succeeded = live.iter().filter(|p| phase(p) == "Succeeded").count() as i64;
        let failed_pods = live.iter().filter(|p| phase(p) == "Failed").count() as i64;
        let active: Vec<&Object> = live
            .iter()
            .copied()
            .filter(|p| !workload::pod_finished(p))
            .collect();
        // With OnFailure the pod is kept and its containers restart; those restarts are the retries.
        let restarts: i64 = if on_failure {
            active
                .iter()
                .filter_map(|p| p.status()?.get("containerStatuses")?.as_array().cloned())
                .flatten()
                .filter_map(|c| c["restartCount"].as_i64())
                .sum()
        } else {
            0
        };
        let failures = failed_pods + restarts;
        let start = status
            .get("startTime")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| timestamp.clone());
        let mut conditions: Vec<Value> = status
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut new_status = json!({
            "startTime": start,
            "active": active.len(),
            "succeeded": succeeded,
            "failed": failures,
            "ready": active.iter().filter(|p| workload::pod_ready_since(p).is_some()).count(),
        });
        let elapsed = parse_time(&start)
            .map(|t| (now - t).whole_milliseconds() as i64)
            .unwrap_or(0);
        let deadline = job
            .spec()
            .and_then(|s| s.get("activeDeadlineSeconds"))
            .and_then(Value::as_i64);
        let mut requeue =
            deadline.map(|d| Duration::from_millis((d * 1000 - elapsed).max(0) as u64 + 10));

        let failure = if failures > backoff_limit {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".to_string(),
            ))
        } else if deadline.is_some_and(|d| elapsed >= d * 1000) {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline".to_string(),
            ))
        } else {
            None
        };
        if let Some((reason, message)) = failure {
            self.delete_all(&active).await?;
            new_status["active"] = json!(0);
            new_status["failedTime"] = json!(timestamp);
            workload::set_condition(
                &mut conditions,
                "Failed",
                true,
                reason,
                &message,
                &timestamp,
            );
            requeue = Some(Duration::from_millis(10));
        } else if succeeded >= completions {
            new_status["completionTime"] = json!(timestamp);
            workload::set_condition(
                &mut conditions,
                "Complete",
                true,
                "Completed",
                "Job completed",
                &timestamp,
            );
            requeue = Some(Duration::from_millis(10));
        } else {
            let want = parallelism.min(completions - succeeded);
            let missing = want - active.len() as i64;
            if missing > 0 {
                // Failed pods are replaced after a delay that doubles per failure, as Kubernetes does.
                let delay = if failed_pods == 0 {
                    Duration::ZERO
                } else {
                    self.backoff_base
                        .saturating_mul(2u32.saturating_pow((failed_pods - 1).min(16) as u32))
                        .min(Duration::from_secs(360))
                };
                let last_failure = live
                    .iter()
                    .filter(|p| phase(p) == "Failed")
                    .filter_map(|p| {
                        p.status()?
                            .pointer("/containerStatuses/0/state/terminated/finishedAt")?
                            .as_str()
                            .and_then(parse_time)
                    })
                    .max();
                let since = last_failure
                    .map(|t| (now - t).whole_milliseconds().max(0) as u128)
                    .unwrap_or(u128::MAX);
                if since >= delay.as_millis() {
                    for _ in 0..missing {
                        self.store.create(Self::new_pod(&job)?, ACTOR).await?;
                    }
                    new_status["active"] = json!(active.len() as i64 + missing);
                } else {
                    let wait = Duration::from_millis((delay.as_millis() - since) as u64 + 10);
                    requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
                }
            }
        }
        if !conditions.is_empty() {
            new_status["conditions"] = json!(conditions);
        }
        if job.status() != Some(&new_status) {
            let mut updated = (*job).clone();
            updated.body.insert("status".into(), new_status);
            self.store.update_status(updated, ACTOR).await?;
        }
        Ok(requeue.map_or(Action::AwaitChange, Action::Requeue))
    }
}
