//! The ReplicaSet controller: keeps `spec.replicas` pods of its template, and reports how many are
//! ready and available.

use std::sync::Arc;
use std::time::Duration;

use shipway_controller::{Cache, Clock};
use shipway_model::Object;
use shipway_model::types::{ReplicaSetSpec, ReplicaSetStatus};
use shipway_store::Store;

use crate::controller::{Action, ReconcileError, Reconciler};
use crate::workload::{self, is_terminating, pod_available, pod_finished};

pub struct ReplicaSetController {
    pub store: Store,
    pub cache: Cache,
    pub clock: Clock,
}

const ACTOR: &str = "controller:replicaset";

impl ReplicaSetController {
    /// The pods `rs` controls.
    pub fn pods(cache: &Cache, rs: &Object) -> Vec<Object> {
        workload::controlled_pods(cache, rs)
    }
}

impl Reconciler for ReplicaSetController {
    fn kind(&self) -> (&'static str, &'static str) {
        ("apps", "ReplicaSet")
    }

    fn owns(&self) -> &'static [(&'static str, &'static str)] {
        &[("", "Pod")]
    }

    async fn reconcile(&self, rs: Arc<Object>) -> Result<Action, ReconcileError> {
        if is_terminating(&rs) {
            return Ok(Action::AwaitChange);
        }
        let spec: ReplicaSetSpec = rs
            .spec_as()
            .map_err(|e| ReconcileError::Other(e.to_string()))?;
        let want = spec.replicas();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let pods = Self::pods(&self.cache, &rs);
        let mut active: Vec<&Object> = pods
            .iter()
            .filter(|p| !is_terminating(p) && !pod_finished(p))
            .collect();
        let have = active.len() as i64;
        if have < want {
            for _ in have..want {
                let pod = self
                    .store
                    .create(
                        workload::pod_from_template(&rs, spec.template.as_ref(), &[])
                            .map_err(ReconcileError::Other)?,
                        ACTOR,
                    )
                    .await?;
                let message = format!("Created pod: {}", pod.metadata.name);
                workload::record_event(&self.store, &rs.key(), ACTOR, "SuccessfulCreate", &message)
                    .await;
            }
        } else if have > want {
            // Delete the least useful first: not ready before ready, newest before oldest.
            active.sort_by_key(|p| {
                (
                    workload::pod_ready_since(p).is_some(),
                    std::cmp::Reverse(p.metadata.creation_timestamp.clone()),
                )
            });
            for pod in active.iter().take((have - want) as usize) {
                workload::delete_if_present(&self.store, &pod.key(), ACTOR).await?;
                let message = format!("Deleted pod: {}", pod.metadata.name);
                workload::record_event(&self.store, &rs.key(), ACTOR, "SuccessfulDelete", &message)
                    .await;
            }
            active.drain(..(have - want) as usize);
        }
        let mut ready = 0;
        let mut available = 0;
        let mut recheck: Option<Duration> = None;
        for pod in &active {
            if workload::pod_ready_since(pod).is_some() {
                ready += 1;
            }
            match pod_available(pod, min_ready, self.clock.now()) {
                (true, _) => available += 1,
                (false, Some(wait)) => recheck = Some(recheck.map_or(wait, |r| r.min(wait))),
                (false, None) => {}
            }
        }
        let status = ReplicaSetStatus {
            replicas: active.len() as i64,
            fully_labeled_replicas: Some(active.len() as i64),
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            observed_generation: Some(rs.metadata.generation),
            ..ReplicaSetStatus::default()
        };
        if rs.status() != Some(&shipway_model::types::to_value(&status)) {
            let mut updated = (*rs).clone();
            updated.set_status(&status);
            self.store.update_status(updated, ACTOR).await?;
        }
        Ok(match recheck {
            Some(d) => Action::Requeue(d + Duration::from_millis(10)),
            None => Action::AwaitChange,
        })
    }
}
