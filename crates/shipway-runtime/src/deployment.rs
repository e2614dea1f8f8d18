//! The Deployment controller: one ReplicaSet per pod template (a revision), rolled with
//! RollingUpdate (maxSurge, maxUnavailable) or Recreate, old revisions kept up to
//! `revisionHistoryLimit`, status and conditions as Kubernetes reports them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shipway_controller::{Cache, Clock, GroupKind};
use shipway_model::Object;
use shipway_model::types::{
    DeploymentSpec, DeploymentStatus, ReplicaSetSpec, ReplicaSetStatus, condition,
};
use shipway_store::{Store, StoreError};

use crate::controller::{Action, ReconcileError, Reconciler};
use crate::replicaset::ReplicaSetController;
use crate::workload::rollout::{self, Desired, NewReplicaSet, ReplicaSetState, Step, Strategy};
use crate::workload::{self, POD_TEMPLATE_HASH, REVISION, is_controlled_by, is_terminating};

pub struct DeploymentController {
    pub store: Store,
    pub cache: Cache,
    pub clock: Clock,
}

const REPLICA_SET: GroupKind = GroupKind::from_static("apps", "ReplicaSet");

const ACTOR: &str = "controller:deployment";

fn shape(e: impl ToString) -> ReconcileError {
    ReconcileError::Other(e.to_string())
}

fn rs_status(rs: &Object) -> ReplicaSetStatus {
    rs.status_as().unwrap_or_default()
}

impl DeploymentController {
    fn replica_sets(&self, d: &Object) -> Vec<Object> {
        let ns = d.metadata.namespace.as_deref().unwrap_or_default();
        self.cache
            .list(&REPLICA_SET, Some(ns))
            .iter()
            .filter(|rs| is_controlled_by(rs, d) && !is_terminating(rs))
            .map(|rs| (**rs).clone())
            .collect()
    }

    /// The ReplicaSet of `d`'s current template, at `revision` with `replicas`.
    async fn create_replica_set(
        &self,
        d: &Object,
        spec: &DeploymentSpec,
        name: &str,
        hash: &str,
        revision: i64,
        replicas: i64,
    ) -> Result<Object, ReconcileError> {
        let rs = NewReplicaSet {
            owner: d,
            name: name.to_string(),
            hash_label: POD_TEMPLATE_HASH,
            hash,
            revision_annotation: REVISION,
            revision,
            replicas,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            selector: spec.selector.clone().unwrap_or_default(),
            template: spec.template.clone().unwrap_or_default(),
        }
        .object();
        match self.store.create(rs, ACTOR).await {
            Ok(rs) => Ok(rs),
            Err(StoreError::AlreadyExists(key)) => Err(ReconcileError::Other(format!(
                "{key} exists but is not controlled by {}; rename or delete it",
                d.key()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Kubernetes' `ScalingReplicaSet` event on the Deployment.
    async fn scaled(&self, d: &Object, rs: &str, from: i64, to: i64) {
        let way = if to > from { "up" } else { "down" };
        let message = format!("Scaled {way} replica set {rs} to {to}");
        workload::record_event(&self.store, &d.key(), ACTOR, "ScalingReplicaSet", &message).await;
    }

    /// Carries out `step` on the ReplicaSets in `sets` (by name), keeping each one as written.
    async fn execute(
        &self,
        d: &Object,
        spec: &DeploymentSpec,
        desired: &Desired,
        step: Step,
        sets: &mut HashMap<String, Object>,
    ) -> Result<(), ReconcileError> {
        let current = |sets: &HashMap<String, Object>, name: &str| {
            sets.get(name).cloned().ok_or_else(|| {
                ReconcileError::Other(format!("{}: no ReplicaSet {name} to act on", d.key()))
            })
        };
        match step {
            Step::Create { revision, replicas } => {
                let rs = self
                    .create_replica_set(
                        d,
                        spec,
                        &desired.new_name,
                        &desired.hash,
                        revision,
                        replicas,
                    )
                    .await?;
                if replicas > 0 {
                    self.scaled(d, &rs.metadata.name, 0, replicas).await;
                }
                sets.insert(rs.metadata.name.clone(), rs);
            }
            Step::SetRevision { name, revision } => {
                let mut rs = current(sets, &name)?;
                rs.metadata
                    .annotations
                    .insert(REVISION.into(), revision.to_string());
                sets.insert(name, self.store.update(rs, ACTOR).await?);
            }
            Step::Scale { name, replicas } => {
                let mut rs = current(sets, &name)?;
                let mut rs_spec: ReplicaSetSpec = rs.spec_as().map_err(shape)?;
                let from = rs_spec.replicas.unwrap_or(0);
                rs_spec.replicas = Some(replicas);
                rs.set_spec(&rs_spec);
                sets.insert(name.clone(), self.store.update(rs, ACTOR).await?);
                self.scaled(d, &name, from, replicas).await;
            }
            Step::Delete { name } => {
                let rs = current(sets, &name)?;
                workload::delete_if_present(&self.store, &rs.key(), ACTOR).await?;
            }
        }
        Ok(())
    }
}

impl Reconciler for DeploymentController {
    fn kind(&self) -> (&'static str, &'static str) {
        ("apps", "Deployment")
    }

    fn owns(&self) -> &'static [(&'static str, &'static str)] {
        &[("apps", "ReplicaSet")]
    }

    async fn reconcile(&self, d: Arc<Object>) -> Result<Action, ReconcileError> {
        if is_terminating(&d) {
            return Ok(Action::AwaitChange);
        }
        let spec: DeploymentSpec = d.spec_as().map_err(shape)?;
        let want = spec.replicas();
        // The hash is of the template as stored (see `template_hash`).
        let raw_template = d
            .spec()
            .and_then(|s| s.get("template"))
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        let hash = rollout::template_hash(&raw_template);
        let strategy = if spec.is_recreate() {
            Strategy::Recreate
        } else {
            let bad = |e: String| ReconcileError::Other(format!("{}: {e}", d.key()));
            Strategy::RollingUpdate {
                max_surge: spec.max_surge(want).map_err(bad)?,
                max_unavailable: spec.max_unavailable(want).map_err(bad)?,
            }
        };
        let desired = Desired {
            replicas: want,
            new_name: format!("{}-{hash}", d.metadata.name),
            hash,
            strategy,
            history_limit: spec.revision_history_limit.unwrap_or(10).max(0) as usize,
            paused: spec.is_paused(),
        };
        let mut sets: HashMap<String, Object> = HashMap::new();
        let mut states = Vec::new();
        for rs in self.replica_sets(&d) {
            let pods = ReplicaSetController::pods(&self.cache, &rs).len();
            states.push(ReplicaSetState::of(&rs, pods).map_err(shape)?);
            sets.insert(rs.metadata.name.clone(), rs);
        }
        let plan = rollout::plan(&desired, &states);
        for step in plan.steps {
            self.execute(&d, &spec, &desired, step, &mut sets).await?;
        }
        let new_rs = plan.new.as_ref().and_then(|n| sets.get(n));
        let old: Vec<Object> = plan
            .old
            .iter()
            .filter_map(|n| sets.get(n).cloned())
            .collect();
        let action = self.write_status(&d, &spec, new_rs, &old, want).await?;
        Ok(match (plan.waiting, action) {
            (true, Action::Requeue(a)) => Action::Requeue(RECREATE_RECHECK.min(a)),
            (true, _) => Action::Requeue(RECREATE_RECHECK),
            (false, a) => a,
        })
    }
}

/// How soon Recreate looks again for old pods that are stopping.
const RECREATE_RECHECK: Duration = Duration::from_millis(200);

impl DeploymentController {
    async fn write_status(
        &self,
        d: &Object,
        spec: &DeploymentSpec,
        new_rs: Option<&Object>,
        old: &[Object],
        want: i64,
    ) -> Result<Action, ReconcileError> {
        // Re-read the ReplicaSets: their status is what the pods say now.
        let sets = self.replica_sets(d);
        let now = self.clock.timestamp();
        let fresh = |rs: &Object| {
            sets.iter()
                .find(|s| s.metadata.uid == rs.metadata.uid)
                .cloned()
                .unwrap_or_else(|| rs.clone())
        };
        let new_status = new_rs.map(|rs| rs_status(&fresh(rs)));
        let new_name = new_rs.map(|rs| rs.metadata.name.as_str());
        let all: Vec<ReplicaSetStatus> = old
            .iter()
            .map(|rs| rs_status(&fresh(rs)))
            .chain(new_status.clone())
            .collect();
        let sum = |f: fn(&ReplicaSetStatus) -> i64| all.iter().map(f).sum::<i64>();
        let updated = new_status.as_ref().map_or(0, |s| s.replicas);
        let available = sum(|s| s.available_replicas.unwrap_or(0));
        let total = sum(|s| s.replicas);
        let max_unavailable = spec.max_unavailable(want).unwrap_or(0);
        let current: DeploymentStatus = d.status_as().unwrap_or_default();
        let mut conditions = current.conditions.clone();
        let is_available = available >= want - max_unavailable;
        condition::set(
            &mut conditions,
            "Available",
            is_available,
            if is_available {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            },
            if is_available {
                "Deployment has minimum availability."
            } else {
                "Deployment does not have minimum availability."
            },
            &now,
        );
        let complete = new_status.as_ref().is_some_and(|s| {
            updated == want && s.available_replicas.unwrap_or(0) == want && total == want
        });
        let deadline = spec.progress_deadline_seconds.unwrap_or(600);
        let mut requeue = None;
        match new_name {
            _ if spec.is_paused() => condition::set(
                &mut conditions,
                "Progressing",
                false,
                "DeploymentPaused",
                "Deployment is paused",
                &now,
            ),
            None => {}
            Some(name) if complete => {
                let message = format!("ReplicaSet \"{name}\" has successfully progressed.");
                condition::set(
                    &mut conditions,
                    "Progressing",
                    true,
                    "NewReplicaSetAvailable",
                    &message,
                    &now,
                );
            }
            Some(name) => {
                let progressing = condition::find(&current.conditions, "Progressing");
                let reason = progressing.and_then(|c| c.reason.as_deref());
                let timed_out = reason == Some("ProgressDeadlineExceeded");
                // A rollout that timed out stays failed until its counts move again, as
                // Kubernetes keeps ProgressDeadlineExceeded.
                let moving = !matches!(
                    reason,
                    Some("ReplicaSetUpdated" | "ProgressDeadlineExceeded")
                ) || counts_moved(d, &current, updated, available);
                if timed_out && !moving {
                    // Nothing to do until something changes.
                } else if moving {
                    let message = format!("ReplicaSet \"{name}\" is progressing.");
                    condition::set(
                        &mut conditions,
                        "Progressing",
                        true,
                        "ReplicaSetUpdated",
                        &message,
                        &now,
                    );
                    requeue = Some(Duration::from_secs(deadline.max(1) as u64));
                } else {
                    // No movement since the last update: past the deadline the rollout has failed.
                    let since = progressing
                        .and_then(|c| c.last_update_time.as_deref())
                        .and_then(workload::parse_time)
                        .map_or(0, |t| (self.clock.now() - t).whole_seconds());
                    if since > deadline {
                        let message = format!("ReplicaSet \"{name}\" has timed out progressing.");
                        condition::set(
                            &mut conditions,
                            "Progressing",
                            false,
                            "ProgressDeadlineExceeded",
                            &message,
                            &now,
                        );
                    } else {
                        requeue = Some(Duration::from_secs((deadline - since).max(1) as u64));
                    }
                }
            }
        }
        let status = DeploymentStatus {
            observed_generation: Some(d.metadata.generation),
            replicas: Some(total),
            updated_replicas: Some(updated),
            ready_replicas: Some(sum(|s| s.ready_replicas.unwrap_or(0))),
            available_replicas: Some(available),
            unavailable_replicas: Some((want - available).max(0)),
            conditions,
            ..DeploymentStatus::default()
        };
        if !same_status_ignoring_times(d.status().is_some().then_some(&current), &status) {
            let mut updated_d = d.clone();
            updated_d.set_status(&status);
            self.store.update_status(updated_d, ACTOR).await?;
        }
        Ok(requeue.map_or(Action::AwaitChange, Action::Requeue))
    }
}

/// Whether the counts moved since the stored status, which is what "progress" means.
fn counts_moved(d: &Object, current: &DeploymentStatus, updated: i64, available: i64) -> bool {
    d.status().is_none()
        || current.updated_replicas != Some(updated)
        || current.available_replicas != Some(available)
}

/// Compares statuses without `lastUpdateTime`, so an unchanged status is not rewritten every second.
fn same_status_ignoring_times(old: Option<&DeploymentStatus>, new: &DeploymentStatus) -> bool {
    let strip = |s: &DeploymentStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_update_time = None;
        }
        s
    };
    old.is_some_and(|o| strip(o) == strip(new))
}
