//! The Deployment controller: one ReplicaSet per pod template (a revision), rolled with
//! RollingUpdate (maxSurge, maxUnavailable) or Recreate, old revisions kept up to
//! `revisionHistoryLimit`, status and conditions as Kubernetes reports them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shipway_controller::{Cache, Clock, GroupKind};
use shipway_model::{Object, ObjectMeta};
use shipway_store::{Store, StoreError};

use crate::controller::{Action, ReconcileError, Reconciler};
use crate::replicaset::ReplicaSetController;
use crate::workload::{
    self, POD_TEMPLATE_HASH, REVISION, controller_ref, is_controlled_by, is_terminating, spec_i64,
    status_i64,
};

pub struct DeploymentController {
    pub store: Store,
    pub cache: Cache,
    pub clock: Clock,
}

const REPLICA_SET: GroupKind = GroupKind::from_static("apps", "ReplicaSet");

const ACTOR: &str = "controller:deployment";

fn revision(rs: &Object) -> i64 {
    rs.metadata
        .annotations
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn replicas(rs: &Object) -> i64 {
    spec_i64(rs, "/replicas", 0)
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

    /// The ReplicaSet for the current template, created (at 0 replicas) when it does not exist.
    async fn new_replica_set(
        &self,
        d: &Object,
        template: &Value,
        hash: &str,
        next_revision: i64,
        existing: Option<Object>,
    ) -> Result<Object, ReconcileError> {
        if let Some(rs) = existing {
            // Rolling back to an old template makes its ReplicaSet the newest revision again.
            if revision(&rs) < next_revision - 1 || !rs.metadata.annotations.contains_key(REVISION)
            {
                let mut rs = rs;
                rs.metadata
                    .annotations
                    .insert(REVISION.into(), (next_revision).to_string());
                return Ok(self.store.update(rs, ACTOR).await?);
            }
            return Ok(rs);
        }
        let mut template = template.clone();
        template["metadata"]["labels"][POD_TEMPLATE_HASH] = json!(hash);
        let mut selector = d
            .spec()
            .and_then(|s| s.get("selector"))
            .cloned()
            .unwrap_or(json!({}));
        selector["matchLabels"][POD_TEMPLATE_HASH] = json!(hash);
        let mut labels: std::collections::BTreeMap<String, String> =
            serde_json::from_value(template["metadata"]["labels"].clone()).unwrap_or_default();
        labels.insert(POD_TEMPLATE_HASH.into(), hash.into());
        let mut body = serde_json::Map::new();
        body.insert(
            "spec".into(),
            json!({
                "replicas": 0,
                "minReadySeconds": spec_i64(d, "/minReadySeconds", 0),
                "selector": selector,
                "template": template,
            }),
        );
        let rs = Object {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            metadata: ObjectMeta {
                name: format!("{}-{hash}", d.metadata.name),
                namespace: d.metadata.namespace.clone(),
                labels,
                annotations: [(REVISION.to_string(), next_revision.to_string())].into(),
                owner_references: vec![controller_ref(d)],
                ..ObjectMeta::default()
            },
            body,
        };
        match self.store.create(rs, ACTOR).await {
            Ok(rs) => Ok(rs),
            Err(StoreError::AlreadyExists(key)) => Err(ReconcileError::Other(format!(
                "{key} exists but is not controlled by {}; rename or delete it",
                d.key()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    async fn scale(&self, rs: &Object, to: i64) -> Result<(), ReconcileError> {
        if replicas(rs) == to {
            return Ok(());
        }
        let mut rs = rs.clone();
        if let Some(spec) = rs.body.get_mut("spec") {
            spec["replicas"] = json!(to);
        }
        self.store.update(rs, ACTOR).await?;
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
        let want = spec_i64(&d, "/replicas", 1).max(0);
        let template = d
            .spec()
            .and_then(|s| s.get("template"))
            .cloned()
            .unwrap_or(Value::Null);
        let hash = workload::template_hash(&template);
        let mut sets = self.replica_sets(&d);
        sets.sort_by_key(revision);
        let max_revision = sets.iter().map(revision).max().unwrap_or(0);
        let existing = sets
            .iter()
            .position(|rs| rs.metadata.labels.get(POD_TEMPLATE_HASH) == Some(&hash))
            .map(|i| sets.remove(i));
        let paused = d
            .spec()
            .and_then(|s| s.get("paused"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let is_new_template = existing.is_none();
        if paused && is_new_template && !sets.is_empty() {
            // A paused Deployment does not start a new revision; it still reports status.
            return self.write_status(&d, None, &sets, want).await;
        }
        let new_rs = self
            .new_replica_set(&d, &template, &hash, max_revision + 1, existing)
            .await?;
        let old: Vec<Object> = sets;

        let strategy = d
            .spec()
            .and_then(|s| s.pointer("/strategy/type"))
            .and_then(Value::as_str)
            .unwrap_or("RollingUpdate");
        let mut requeue = None;
        if strategy == "Recreate" {
            for rs in &old {
                self.scale(rs, 0).await?;
            }
            let old_pods_left = {
                let mut n = 0;
                for rs in &old {
                    n += ReplicaSetController::pods(&self.cache, rs).len();
                }
                n
            };
            if old_pods_left == 0 {
                self.scale(&new_rs, want).await?;
            } else {
                requeue = Some(Duration::from_millis(200));
            }
        } else {
            let ru = d.spec().and_then(|s| s.pointer("/strategy/rollingUpdate"));
            let bad = |e: String| {
                ReconcileError::Other(format!("{}: spec.strategy.rollingUpdate: {e}", d.key()))
            };
            let max_surge =
                workload::int_or_percent(ru.and_then(|r| r.get("maxSurge")), want, "25%", true)
                    .map_err(bad)?;
            let mut max_unavailable = workload::int_or_percent(
                ru.and_then(|r| r.get("maxUnavailable")),
                want,
                "25%",
                false,
            )
            .map_err(bad)?;
            if max_surge == 0 && max_unavailable == 0 {
                // Kubernetes rejects this; treat it as the smallest step that can make progress.
                max_unavailable = 1;
            }
            // Scale up the new revision within the surge budget.
            let total: i64 = old.iter().map(replicas).sum::<i64>() + replicas(&new_rs);
            let new_target = if replicas(&new_rs) < want {
                let room = (want + max_surge - total).max(0);
                replicas(&new_rs) + room.min(want - replicas(&new_rs))
            } else {
                want
            };
            self.scale(&new_rs, new_target).await?;
            // Scale down old revisions as far as availability allows.
            let sets: Vec<(i64, i64)> = old
                .iter()
                .map(|rs| (replicas(rs), status_i64(rs, "availableReplicas")))
                .collect();
            let new = (new_target, status_i64(&new_rs, "availableReplicas"));
            let down = scale_down(&sets, new, want - max_unavailable);
            for (rs, down) in old.iter().zip(down) {
                if down > 0 {
                    self.scale(rs, replicas(rs) - down).await?;
                }
            }
        }

        // Old revisions beyond the history limit go, oldest first, once they are scaled to zero.
        let limit = spec_i64(&d, "/revisionHistoryLimit", 10).max(0) as usize;
        let idle: Vec<&Object> = old
            .iter()
            .filter(|rs| replicas(rs) == 0 && status_i64(rs, "replicas") == 0)
            .collect();
        if idle.len() > limit {
            for rs in &idle[..idle.len() - limit] {
                workload::delete_if_present(&self.store, &rs.key(), ACTOR).await?;
            }
        }
        let action = self.write_status(&d, Some(&new_rs), &old, want).await?;
        Ok(match (requeue, action) {
            (Some(r), Action::Requeue(a)) => Action::Requeue(r.min(a)),
            (Some(r), _) => Action::Requeue(r),
            (None, a) => a,
        })
    }
}

/// How many replicas to remove from each old revision (`(replicas, availableReplicas)` each,
/// oldest first) while keeping `min_available`, given the new revision's `(replicas, available)`
/// (its replicas as just written). Two bounds, as Kubernetes has them: one from replica counts,
/// which this controller's own writes keep current, one from what is available now. Statuses lag
/// their specs — pods scaled away a moment ago still count as available there — so nothing beyond
/// a set's replicas counts, or one pass after another would remove them again and fall below
/// maxUnavailable.
fn scale_down(old: &[(i64, i64)], new: (i64, i64), min_available: i64) -> Vec<i64> {
    let available_of = |(replicas, available): (i64, i64)| available.min(replicas).max(0);
    let all_pods: i64 = old.iter().map(|s| s.0).sum::<i64>() + new.0;
    let new_unavailable = (new.0 - available_of(new)).max(0);
    let mut budget = (all_pods - min_available - new_unavailable).max(0);
    let available: i64 = old.iter().map(|s| available_of(*s)).sum::<i64>() + available_of(new);
    let mut healthy_budget = (available - min_available).max(0);
    old.iter()
        .map(|&(replicas, available)| {
            // Replicas that are not available cost no availability to remove.
            let unavailable = (replicas - available_of((replicas, available))).max(0);
            let mut down = unavailable.min(budget);
            budget -= down;
            let extra = (replicas - down).min(budget).min(healthy_budget);
            down += extra;
            budget -= extra;
            healthy_budget -= extra;
            down
        })
        .collect()
}

impl DeploymentController {
    async fn write_status(
        &self,
        d: &Object,
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
        let new_rs = new_rs.map(fresh);
        let all: Vec<Object> = old.iter().map(fresh).chain(new_rs.clone()).collect();
        let sum = |f: &str| all.iter().map(|rs| status_i64(rs, f)).sum::<i64>();
        let updated = new_rs.as_ref().map_or(0, |rs| status_i64(rs, "replicas"));
        let available = sum("availableReplicas");
        let total = sum("replicas");
        let ru = d.spec().and_then(|s| s.pointer("/strategy/rollingUpdate"));
        let max_unavailable =
            workload::int_or_percent(ru.and_then(|r| r.get("maxUnavailable")), want, "25%", false)
                .unwrap_or(0);
        let mut conditions: Vec<Value> = d
            .status()
            .and_then(|s| s.get("conditions"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let is_available = available >= want - max_unavailable;
        workload::set_condition(
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
        let complete = new_rs.as_ref().is_some_and(|rs| {
            updated == want && status_i64(rs, "availableReplicas") == want && total == want
        });
        let deadline = spec_i64(d, "/progressDeadlineSeconds", 600);
        let paused = d
            .spec()
            .and_then(|s| s.get("paused"))
            .and_then(Value::as_bool)
            == Some(true);
        let mut requeue = None;
        match &new_rs {
            _ if paused => workload::set_condition(
                &mut conditions,
                "Progressing",
                false,
                "DeploymentPaused",
                "Deployment is paused",
                &now,
            ),
            None => {}
            Some(rs) if complete => {
                let message = format!(
                    "ReplicaSet \"{}\" has successfully progressed.",
                    rs.metadata.name
                );
                workload::set_condition(
                    &mut conditions,
                    "Progressing",
                    true,
                    "NewReplicaSetAvailable",
                    &message,
                    &now,
                );
            }
            Some(rs) => {
                let current = workload::condition(d, "Progressing");
                let reason = current.and_then(|c| c["reason"].as_str());
                let timed_out = reason == Some("ProgressDeadlineExceeded");
                // A rollout that timed out stays failed until its counts move again, as
                // Kubernetes keeps ProgressDeadlineExceeded.
                let moving = !matches!(
                    reason,
                    Some("ReplicaSetUpdated" | "ProgressDeadlineExceeded")
                ) || counts_moved(d, updated, available);
                if timed_out && !moving {
                    // Nothing to do until something changes.
                } else if moving {
                    let message = format!("ReplicaSet \"{}\" is progressing.", rs.metadata.name);
                    workload::set_condition(
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
                    let since = current
                        .and_then(|c| c["lastUpdateTime"].as_str())
                        .and_then(workload::parse_time)
                        .map_or(0, |t| (self.clock.now() - t).whole_seconds());
                    if since > deadline {
                        let message = format!(
                            "ReplicaSet \"{}\" has timed out progressing.",
                            rs.metadata.name
                        );
                        workload::set_condition(
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
        let status = json!({
            "observedGeneration": d.metadata.generation,
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": sum("readyReplicas"),
            "availableReplicas": available,
            "unavailableReplicas": (want - available).max(0),
            "conditions": conditions,
        });
        if !same_status_ignoring_times(d.status(), &status) {
            let mut updated_d = d.clone();
            updated_d.body.insert("status".into(), status);
            self.store.update_status(updated_d, ACTOR).await?;
        }
        Ok(requeue.map_or(Action::AwaitChange, Action::Requeue))
    }
}

/// Whether the counts moved since the stored status, which is what "progress" means.
fn counts_moved(d: &Object, updated: i64, available: i64) -> bool {
    d.status().is_none_or(|s| {
        s.get("updatedReplicas").and_then(Value::as_i64) != Some(updated)
            || s.get("availableReplicas").and_then(Value::as_i64) != Some(available)
    })
}

/// Compares statuses without `lastUpdateTime`, so an unchanged status is not rewritten every second.
fn same_status_ignoring_times(old: Option<&Value>, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(cs) = v.get_mut("conditions").and_then(Value::as_array_mut) {
            for c in cs {
                if let Some(m) = c.as_object_mut() {
                    m.remove("lastUpdateTime");
                }
            }
        }
        v
    };
    old.is_some_and(|o| strip(o) == strip(new))
}

#[cfg(test)]
mod tests {
    use super::scale_down;

    #[test]
    fn old_revisions_scale_down_within_max_unavailable() {
        // 3 replicas, maxUnavailable 1 (2 must stay available), surge already used: the new
        // revision has 1 replica, not yet available; one old replica may go.
        assert_eq!(scale_down(&[(3, 3)], (1, 0), 2), [1]);
        // The next pass, before the old ReplicaSet's status caught up with its scale-down (its
        // status still says 3 available of 2 replicas): nothing more may go.
        assert_eq!(scale_down(&[(2, 3)], (2, 0), 2), [0]);
        // Once the new replicas are available, the old ones go.
        assert_eq!(scale_down(&[(2, 2)], (2, 2), 2), [2]);
        // Unavailable old replicas go first, within the same bounds, oldest revision first.
        assert_eq!(scale_down(&[(2, 0), (2, 2)], (1, 1), 2), [2, 1]);
        assert_eq!(scale_down(&[(1, 1), (2, 2)], (0, 0), 3), [0, 0]);
    }
}
