//! The ReplicaSet machinery of an owner that rolls pod templates out as revisions (a Deployment;
//! an Argo Rollout uses the same): one ReplicaSet per template, found by its
//! `pod-template-hash` label; the revision annotation; the surge and unavailability budget of a
//! rolling update, or Recreate's stop-then-start; and the history limit.
//!
//! The decisions are one pure function, [`plan`]: what the owner wants ([`Desired`]) and what its
//! ReplicaSets say ([`ReplicaSetState`]) in, the [`Step`]s to take out. The controller executes
//! them; the tests below check the decisions without a store or a process.

use serde_json::Value;
use shipway_model::types::{
    LabelSelector, PodTemplateSpec, ReplicaSetSpec, ReplicaSetStatus, ShapeError, TemplateMeta,
};
use shipway_model::{Object, ObjectMeta};

/// The label that ties a ReplicaSet and its pods to one pod template, as Kubernetes names it.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The annotation holding a ReplicaSet's revision number within its owner.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// A short stable hash of a pod template, in the alphabet Kubernetes uses for generated names
/// (no vowels, so no words; no confusable characters). It hashes the template as stored, not a
/// typed view of it, so a ReplicaSet keeps its hash across Shipway versions.
pub fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    // FNV-1a 32: what Kubernetes uses; any stable hash would do.
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let mut out = String::new();
    let mut n = u64::from(h);
    while out.len() < 10 {
        out.push(ALPHABET[(n % ALPHABET.len() as u64) as usize] as char);
        n /= ALPHABET.len() as u64;
        if n == 0 {
            n = u64::from(h.rotate_left(out.len() as u32)) + 1;
        }
    }
    out
}

/// What a rolling owner's ReplicaSet for one template is made of: the owner's selector and
/// template, the label that carries the template's hash (`pod-template-hash` for a Deployment,
/// `rollouts-pod-template-hash` for a Rollout) and the annotation that carries the revision.
pub struct NewReplicaSet<'a> {
    pub owner: &'a Object,
    pub name: String,
    pub hash_label: &'a str,
    pub hash: &'a str,
    pub revision_annotation: &'a str,
    pub revision: i64,
    pub replicas: i64,
    pub min_ready_seconds: i64,
    pub selector: LabelSelector,
    pub template: PodTemplateSpec,
}

impl NewReplicaSet<'_> {
    /// The ReplicaSet object, controlled by the owner, its selector and pods labelled with the
    /// hash; the caller creates it.
    pub fn object(self) -> Object {
        let mut template = self.template;
        template
            .metadata
            .get_or_insert_with(TemplateMeta::default)
            .labels
            .insert(self.hash_label.into(), self.hash.into());
        let mut selector = self.selector;
        selector
            .match_labels
            .insert(self.hash_label.into(), self.hash.into());
        let mut rs = Object {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            metadata: ObjectMeta {
                name: self.name,
                namespace: self.owner.metadata.namespace.clone(),
                labels: template.labels(),
                annotations: [(
                    self.revision_annotation.to_string(),
                    self.revision.to_string(),
                )]
                .into(),
                owner_references: vec![super::controller_ref(self.owner)],
                ..ObjectMeta::default()
            },
            body: serde_json::Map::new(),
        };
        rs.set_spec(&ReplicaSetSpec {
            replicas: Some(self.replicas),
            min_ready_seconds: Some(self.min_ready_seconds),
            selector: Some(selector),
            template: Some(template),
            ..ReplicaSetSpec::default()
        });
        rs
    }
}

/// A ReplicaSet's revision annotation, when it has a readable one.
pub fn revision(rs: &Object) -> Option<i64> {
    rs.metadata.annotations.get(REVISION)?.parse().ok()
}

/// What [`plan`] needs to know of one ReplicaSet the owner controls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicaSetState {
    pub name: String,
    pub revision: Option<i64>,
    /// Its `pod-template-hash` label.
    pub hash: Option<String>,
    /// `spec.replicas`: what this controller last asked for.
    pub replicas: i64,
    /// `status.replicas`: the pods it has.
    pub status_replicas: i64,
    /// `status.availableReplicas`.
    pub available: i64,
    /// The pods it controls, stopping ones included (Recreate waits for them).
    pub pods: usize,
}

impl ReplicaSetState {
    pub fn of(rs: &Object, pods: usize) -> Result<ReplicaSetState, ShapeError> {
        let spec: ReplicaSetSpec = rs.spec_as()?;
        let status: ReplicaSetStatus = rs.status_as()?;
        Ok(ReplicaSetState {
            name: rs.metadata.name.clone(),
            revision: revision(rs),
            hash: rs.metadata.labels.get(POD_TEMPLATE_HASH).cloned(),
            // A ReplicaSet this machinery made always has replicas; others count as empty.
            replicas: spec.replicas.unwrap_or(0),
            status_replicas: status.replicas,
            available: status.available_replicas.unwrap_or(0),
            pods,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// Stop every old pod, then start the new revision.
    Recreate,
    /// At most `replicas + max_surge` pods, at least `replicas - max_unavailable` available.
    RollingUpdate {
        max_surge: i64,
        max_unavailable: i64,
    },
}

/// What the owner wants.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub replicas: i64,
    /// The hash of the current pod template.
    pub hash: String,
    /// The name a new ReplicaSet for it gets (`<owner>-<hash>`).
    pub new_name: String,
    pub strategy: Strategy,
    /// How many old, empty revisions to keep.
    pub history_limit: usize,
    /// A paused owner starts no new revision.
    pub paused: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create the current template's ReplicaSet, named `Desired::new_name`.
    Create {
        revision: i64,
        replicas: i64,
    },
    /// Make an existing ReplicaSet the newest revision again (a rollback to its template).
    SetRevision {
        name: String,
        revision: i64,
    },
    Scale {
        name: String,
        replicas: i64,
    },
    /// An old revision beyond the history limit.
    Delete {
        name: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// The current template's ReplicaSet; `None` while a paused owner has not started it.
    pub new: Option<String>,
    /// The other ReplicaSets, oldest revision first.
    pub old: Vec<String>,
    /// Recreate is waiting for old pods to stop: look again soon.
    pub waiting: bool,
}

/// The steps that bring `sets` (the owner's ReplicaSets, none of them being deleted) toward
/// `desired`.
pub fn plan(desired: &Desired, sets: &[ReplicaSetState]) -> Plan {
    let mut sets: Vec<&ReplicaSetState> = sets.iter().collect();
    sets.sort_by_key(|rs| rs.revision.unwrap_or(0));
    let max_revision = sets.iter().filter_map(|rs| rs.revision).max().unwrap_or(0);
    let existing = sets
        .iter()
        .position(|rs| rs.hash.as_deref() == Some(desired.hash.as_str()))
        .map(|i| sets.remove(i));
    let old = sets;
    let mut plan = Plan {
        old: old.iter().map(|rs| rs.name.clone()).collect(),
        ..Plan::default()
    };
    if desired.paused && existing.is_none() && !old.is_empty() {
        return plan;
    }
    let next_revision = max_revision + 1;
    let want = desired.replicas.max(0);
    let (new_replicas, new_available) = match existing {
        Some(rs) => {
            if rs.revision.is_none_or(|r| r < max_revision) {
                plan.steps.push(Step::SetRevision {
                    name: rs.name.clone(),
                    revision: next_revision,
                });
            }
            (rs.replicas, rs.available)
        }
        None => (0, 0),
    };
    let mut scale_old = Vec::new();
    let new_target = match desired.strategy {
        Strategy::Recreate => {
            scale_old = old.iter().map(|rs| (*rs, 0)).collect();
            let old_pods_left: usize = old.iter().map(|rs| rs.pods).sum();
            plan.waiting = old_pods_left > 0;
            if plan.waiting { new_replicas } else { want }
        }
        Strategy::RollingUpdate {
            max_surge,
            mut max_unavailable,
        } => {
            if max_surge == 0 && max_unavailable == 0 {
                // Admission refuses this; treat it as the smallest step that can make progress.
                max_unavailable = 1;
            }
            // Scale up the new revision within the surge budget.
            let total: i64 = old.iter().map(|rs| rs.replicas).sum::<i64>() + new_replicas;
            let new_target = if new_replicas < want {
                let room = (want + max_surge - total).max(0);
                new_replicas + room.min(want - new_replicas)
            } else {
                want
            };
            // Scale down old revisions as far as availability allows.
            let counts: Vec<(i64, i64)> =
                old.iter().map(|rs| (rs.replicas, rs.available)).collect();
            let down = scale_down(&counts, (new_target, new_available), want - max_unavailable);
            for (rs, down) in old.iter().zip(down) {
                scale_old.push((*rs, rs.replicas - down));
            }
            new_target
        }
    };
    match existing {
        Some(rs) => {
            if rs.replicas != new_target {
                plan.steps.push(Step::Scale {
                    name: rs.name.clone(),
                    replicas: new_target,
                });
            }
            plan.new = Some(rs.name.clone());
        }
        None => {
            plan.steps.push(Step::Create {
                revision: next_revision,
                replicas: new_target,
            });
            plan.new = Some(desired.new_name.clone());
        }
    }
    for (rs, to) in scale_old {
        if rs.replicas != to {
            plan.steps.push(Step::Scale {
                name: rs.name.clone(),
                replicas: to,
            });
        }
    }
    // Old revisions beyond the history limit go, oldest first, once they were empty before
    // this pass.
    let idle: Vec<&&ReplicaSetState> = old
        .iter()
        .filter(|rs| rs.replicas == 0 && rs.status_replicas == 0)
        .collect();
    if idle.len() > desired.history_limit {
        for rs in &idle[..idle.len() - desired.history_limit] {
            plan.steps.push(Step::Delete {
                name: rs.name.clone(),
            });
        }
    }
    plan
}

/// How many replicas to remove from each old revision (`(replicas, availableReplicas)` each,
/// oldest first) while keeping `min_available`, given the new revision's `(replicas, available)`
/// (its replicas as just written). Two bounds, as Kubernetes has them: one from replica counts,
/// which this controller's own writes keep current, one from what is available now. Statuses lag
/// their specs — pods scaled away a moment ago still count as available there — so nothing beyond
/// a set's replicas counts, or one pass after another would remove them again and fall below
/// maxUnavailable.
pub fn scale_down(old: &[(i64, i64)], new: (i64, i64), min_available: i64) -> Vec<i64> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn template_hashes_are_stable_and_distinct() {
        let a = template_hash(&json!({"spec": {"containers": [{"image": "a"}]}}));
        let b = template_hash(&json!({"spec": {"containers": [{"image": "b"}]}}));
        assert_eq!(
            a,
            template_hash(&json!({"spec": {"containers": [{"image": "a"}]}}))
        );
        assert_ne!(a, b);
        assert_eq!(a.len(), 10);
    }

    /// A ReplicaSet `name` at `revision` with hash `name`, (replicas, status replicas,
    /// available) and its pods.
    fn rs(name: &str, revision: i64, counts: (i64, i64, i64), pods: usize) -> ReplicaSetState {
        ReplicaSetState {
            name: name.into(),
            revision: Some(revision),
            hash: Some(name.into()),
            replicas: counts.0,
            status_replicas: counts.1,
            available: counts.2,
            pods,
        }
    }

    fn rolling(replicas: i64, hash: &str, surge: i64, unavailable: i64) -> Desired {
        Desired {
            replicas,
            hash: hash.into(),
            new_name: hash.into(),
            strategy: Strategy::RollingUpdate {
                max_surge: surge,
                max_unavailable: unavailable,
            },
            history_limit: 10,
            paused: false,
        }
    }

    fn scale(name: &str, replicas: i64) -> Step {
        Step::Scale {
            name: name.into(),
            replicas,
        }
    }

    /// What the owner wants, its ReplicaSets; the steps, the new ReplicaSet, the old ones.
    type Case = (
        Desired,
        Vec<ReplicaSetState>,
        Vec<Step>,
        Option<&'static str>,
        Vec<&'static str>,
    );

    #[test]
    fn plans_of_a_rolling_update() {
        let cases: Vec<Case> = vec![
            // The first revision: created at full size, there is nothing to surge past.
            (
                rolling(3, "a", 1, 0),
                vec![],
                vec![Step::Create {
                    revision: 1,
                    replicas: 3,
                }],
                Some("a"),
                vec![],
            ),
            // Steady state: nothing to do.
            (
                rolling(3, "a", 1, 0),
                vec![rs("a", 1, (3, 3, 3), 3)],
                vec![],
                Some("a"),
                vec![],
            ),
            // Scaling is a step on the current revision.
            (
                rolling(5, "a", 1, 0),
                vec![rs("a", 1, (3, 3, 3), 3)],
                vec![scale("a", 5)],
                Some("a"),
                vec![],
            ),
            // A new template: the new revision gets the surge (1), no old pod may go yet
            // (maxUnavailable 0).
            (
                rolling(3, "b", 1, 0),
                vec![rs("a", 1, (3, 3, 3), 3)],
                vec![Step::Create {
                    revision: 2,
                    replicas: 1,
                }],
                Some("b"),
                vec!["a"],
            ),
            // The new pod is available: one old pod goes; the surge is spent until it has.
            (
                rolling(3, "b", 1, 0),
                vec![rs("a", 1, (3, 3, 3), 3), rs("b", 2, (1, 1, 1), 1)],
                vec![scale("a", 2)],
                Some("b"),
                vec!["a"],
            ),
            // maxUnavailable 1, no surge: one old pod goes first, and the new revision takes
            // its place in the same pass.
            (
                rolling(3, "b", 0, 1),
                vec![rs("a", 1, (3, 3, 3), 3), rs("b", 2, (0, 0, 0), 0)],
                vec![scale("a", 2)],
                Some("b"),
                vec!["a"],
            ),
            (
                rolling(3, "b", 0, 1),
                vec![rs("a", 1, (2, 2, 2), 2), rs("b", 2, (0, 0, 0), 0)],
                vec![scale("b", 1)],
                Some("b"),
                vec!["a"],
            ),
            // Done: the old revision is empty and kept as history.
            (
                rolling(3, "b", 1, 0),
                vec![rs("a", 1, (0, 0, 0), 0), rs("b", 2, (3, 3, 3), 3)],
                vec![],
                Some("b"),
                vec!["a"],
            ),
            // Rolling back to the template of revision 1 makes it revision 3.
            (
                rolling(3, "a", 1, 0),
                vec![rs("a", 1, (0, 0, 0), 0), rs("b", 2, (3, 3, 3), 3)],
                vec![
                    Step::SetRevision {
                        name: "a".into(),
                        revision: 3,
                    },
                    scale("a", 1),
                ],
                Some("a"),
                vec!["b"],
            ),
        ];
        for (i, (desired, sets, steps, new, old)) in cases.into_iter().enumerate() {
            let p = plan(&desired, &sets);
            assert_eq!(p.steps, steps, "case {i}");
            assert_eq!(p.new.as_deref(), new, "case {i}");
            assert_eq!(p.old, old, "case {i}");
            assert!(!p.waiting, "case {i}");
        }
    }

    #[test]
    fn recreate_stops_every_old_pod_before_starting_the_new_revision() {
        let desired = Desired {
            strategy: Strategy::Recreate,
            ..rolling(2, "b", 1, 1)
        };
        // The old revision is scaled to zero; the new one is created empty and waits.
        let p = plan(&desired, &[rs("a", 1, (2, 2, 2), 2)]);
        assert_eq!(
            p.steps,
            [
                Step::Create {
                    revision: 2,
                    replicas: 0
                },
                scale("a", 0)
            ]
        );
        assert!(p.waiting);
        // Its pods are stopping: still waiting.
        let p = plan(
            &desired,
            &[rs("a", 1, (0, 2, 0), 2), rs("b", 2, (0, 0, 0), 0)],
        );
        assert_eq!(p.steps, []);
        assert!(p.waiting);
        // The last one is gone: the new revision starts at full size.
        let p = plan(
            &desired,
            &[rs("a", 1, (0, 0, 0), 0), rs("b", 2, (0, 0, 0), 0)],
        );
        assert_eq!(p.steps, [scale("b", 2)]);
        assert!(!p.waiting);
    }

    #[test]
    fn history_beyond_the_limit_goes_oldest_first_once_empty() {
        let desired = Desired {
            history_limit: 1,
            ..rolling(1, "d", 1, 0)
        };
        let sets = [
            rs("c", 3, (0, 0, 0), 0),
            rs("a", 1, (0, 0, 0), 0),
            rs("b", 2, (0, 0, 0), 0),
            rs("d", 4, (1, 1, 1), 1),
        ];
        let p = plan(&desired, &sets);
        assert_eq!(p.old, ["a", "b", "c"]);
        assert_eq!(
            p.steps,
            [
                Step::Delete { name: "a".into() },
                Step::Delete { name: "b".into() }
            ]
        );
        // One still stopping pods (status.replicas 1) is not history yet.
        let sets = [
            rs("a", 1, (0, 1, 0), 1),
            rs("b", 2, (0, 0, 0), 0),
            rs("d", 4, (1, 1, 1), 1),
        ];
        assert_eq!(plan(&desired, &sets).steps, []);
    }

    #[test]
    fn a_paused_owner_starts_no_new_revision_but_scales_the_current_one() {
        let desired = Desired {
            paused: true,
            ..rolling(3, "b", 1, 0)
        };
        let p = plan(&desired, &[rs("a", 1, (3, 3, 3), 3)]);
        assert_eq!(
            p,
            Plan {
                old: vec!["a".into()],
                ..Plan::default()
            }
        );
        let desired = Desired {
            paused: true,
            ..rolling(4, "a", 1, 0)
        };
        assert_eq!(
            plan(&desired, &[rs("a", 1, (3, 3, 3), 3)]).steps,
            [scale("a", 4)]
        );
    }
}
