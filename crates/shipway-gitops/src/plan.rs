//! The sync plan: a pure function of (desired, live, options) that says what one sync does, in
//! gitops-engine's order: phases (PreSync, Sync, PostSync, SyncFail), waves ascending inside a
//! phase (`argocd.argoproj.io/sync-wave`, default 0), and inside a wave prunes first, then
//! applies and hooks by Argo's kind order and name. Prunes run in reverse wave order; with
//! `PruneLast` after the last wave. One executor (the controller's) runs any plan; this module
//! decides nothing at run time.

use std::collections::{BTreeMap, BTreeSet};

use shipway_model::crd::CustomKind;
use shipway_model::types::SyncOperationResource;
use shipway_model::{Key, Object};

use crate::diff::{self, SyncStatus};
use crate::tracking::is_tracked_by;

pub const HOOK_ANNOTATION: &str = "argocd.argoproj.io/hook";
pub const HOOK_DELETE_POLICY_ANNOTATION: &str = "argocd.argoproj.io/hook-delete-policy";
pub const SYNC_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";
pub const SYNC_OPTIONS_ANNOTATION: &str = "argocd.argoproj.io/sync-options";
const HELM_HOOK: &str = "helm.sh/hook";
const HELM_HOOK_WEIGHT: &str = "helm.sh/hook-weight";
const HELM_DELETE_POLICY: &str = "helm.sh/hook-delete-policy";

/// A sync phase, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    PreSync,
    Sync,
    PostSync,
    SyncFail,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PreSync => "PreSync",
            Phase::Sync => "Sync",
            Phase::PostSync => "PostSync",
            Phase::SyncFail => "SyncFail",
        }
    }
}

/// Argo's hook delete policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletePolicy {
    HookSucceeded,
    HookFailed,
    BeforeHookCreation,
}

/// What a task does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Apply the desired object (with the app's tracking id).
    Apply,
    /// Delete the live object.
    Prune,
    /// Create the hook (and wait for its health), deleting it as its policies say.
    Hook { delete_policies: Vec<DeletePolicy> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub action: Action,
    pub key: Key,
    /// The desired object (apply, hook) or the live one (prune).
    pub object: Object,
    /// Whether the resource differs from live (always true for prunes).
    pub out_of_sync: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Wave {
    pub wave: i64,
    pub tasks: Vec<Task>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PhasePlan {
    pub phase: Phase,
    pub waves: Vec<Wave>,
}

/// A resource the plan leaves alone, with Argo's result for it (`PruneSkipped`, `ignored
/// (requires pruning)`).
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub key: Key,
    pub status: &'static str,
    pub message: &'static str,
}

/// The plan: the phases to run (SyncFail only when the sync fails), and what is skipped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub phases: Vec<PhasePlan>,
    pub skipped: Vec<Skipped>,
}

impl Plan {
    /// Every task in run order, as (phase, wave, task).
    pub fn tasks(&self) -> impl Iterator<Item = (Phase, i64, &Task)> {
        self.phases.iter().flat_map(|p| {
            p.waves
                .iter()
                .flat_map(move |w| w.tasks.iter().map(move |t| (p.phase, w.wave, t)))
        })
    }
}

/// How to sync (the Application's sync policy and options, and the operation's).
#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    pub app: String,
    /// The revision synced to, for messages and hook names.
    pub revision: String,
    /// When the operation started (Unix seconds): part of the name of a hook named by
    /// `generateName` alone.
    pub started_at: i64,
    pub prune: bool,
    /// `PruneLast=true`: every prune after the last wave.
    pub prune_last: bool,
    /// `ApplyOutOfSyncOnly=true`.
    pub apply_out_of_sync_only: bool,
    /// `CreateNamespace=true`, with the destination namespace.
    pub create_namespace: bool,
    pub namespace: String,
    /// An automated sync (its `allowEmpty` guard applies).
    pub automated: bool,
    pub allow_empty: bool,
    /// The kinds of the stored CRDs, for admission.
    pub custom: Vec<CustomKind>,
    /// A selective sync (`operation.sync.resources`, `argocd app sync --resource`): only these
    /// resources are applied or pruned, and no hook runs, as in Argo CD. Empty: everything.
    pub only: Vec<SyncOperationResource>,
}

/// Whether `key` is one of `only` (group, kind and name equal; a namespace when given).
fn selected(only: &[SyncOperationResource], key: &Key) -> bool {
    only.is_empty()
        || only.iter().any(|r| {
            r.group.as_deref().unwrap_or("") == key.group
                && r.kind == key.kind
                && r.name == key.name
                && r.namespace
                    .as_deref()
                    .is_none_or(|n| n.is_empty() || n == key.namespace)
        })
}

impl SyncOptions {
    /// The options an Application's `syncOptions` list turns on (`PruneLast=true`, ...).
    pub fn apply_list(&mut self, options: &[String]) {
        for o in options {
            match o.as_str() {
                "PruneLast=true" => self.prune_last = true,
                "ApplyOutOfSyncOnly=true" => self.apply_out_of_sync_only = true,
                "CreateNamespace=true" => self.create_namespace = true,
                _ => {}
            }
        }
    }
}

/// Why there is no plan.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// An annotation the plan reads is malformed; names the object.
    #[error("{key}: annotation {annotation}: {value:?} is not an integer")]
    BadWave {
        key: Box<Key>,
        annotation: &'static str,
        value: String,
    },
    /// An automated sync with prune on would delete every resource (Argo's words).
    #[error("Skipping sync attempt to {revision}: auto-sync will wipe out all resources")]
    WouldPruneEverything { revision: String },
}

impl PlanError {
    pub fn condition_type(&self) -> &'static str {
        match self {
            PlanError::BadWave { .. } => crate::condition::INVALID_SPEC_ERROR,
            PlanError::WouldPruneEverything { .. } => crate::condition::SYNC_ERROR,
        }
    }
}

/// gitops-engine's `kindOrder` (Helm's kind sorter): kinds not listed go after all of these.
const KIND_ORDER: &[&str] = &[
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
];

fn kind_rank(kind: &str) -> usize {
    KIND_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KIND_ORDER.len())
}

fn csv<'a>(obj: &'a Object, annotation: &str) -> Vec<&'a str> {
    obj.metadata
        .annotations
        .get(annotation)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The hook types of `obj`: Argo's annotation, or else Helm's (`pre-install`/`pre-upgrade` are
/// PreSync, `post-install`/`post-upgrade` PostSync); unknown values are ignored. `Skip` is
/// returned as `None` in the list's place.
fn hook_types(obj: &Object) -> Vec<Option<Phase>> {
    let argo: Vec<Option<Phase>> = csv(obj, HOOK_ANNOTATION)
        .into_iter()
        .filter_map(|t| match t {
            "PreSync" => Some(Some(Phase::PreSync)),
            "Sync" => Some(Some(Phase::Sync)),
            "PostSync" => Some(Some(Phase::PostSync)),
            "SyncFail" => Some(Some(Phase::SyncFail)),
            "Skip" => Some(None),
            _ => None,
        })
        .collect();
    if !argo.is_empty() {
        return argo;
    }
    csv(obj, HELM_HOOK)
        .into_iter()
        .filter_map(|t| match t {
            "pre-install" | "pre-upgrade" => Some(Some(Phase::PreSync)),
            "post-install" | "post-upgrade" => Some(Some(Phase::PostSync)),
            _ => None,
        })
        .collect()
}

/// Whether `obj` is a hook: it has Argo's hook annotation (and is not only `Skip`), or a Helm
/// hook annotation Argo maps.
pub fn is_hook(obj: &Object) -> bool {
    if obj.metadata.annotations.contains_key(HOOK_ANNOTATION) {
        return !is_skipped(obj);
    }
    !hook_types(obj).is_empty()
}

/// `argocd.argoproj.io/hook: Skip` alone: the resource is not synced at all.
pub fn is_skipped(obj: &Object) -> bool {
    let t = hook_types(obj);
    t.contains(&None) && t.len() == 1
}

/// The hook's delete policies; `BeforeHookCreation` when none is given.
pub fn delete_policies(obj: &Object) -> Vec<DeletePolicy> {
    let mut out: Vec<DeletePolicy> = csv(obj, HOOK_DELETE_POLICY_ANNOTATION)
        .into_iter()
        .filter_map(|p| match p {
            "HookSucceeded" => Some(DeletePolicy::HookSucceeded),
            "HookFailed" => Some(DeletePolicy::HookFailed),
            "BeforeHookCreation" => Some(DeletePolicy::BeforeHookCreation),
            _ => None,
        })
        .collect();
    out.extend(
        csv(obj, HELM_DELETE_POLICY)
            .into_iter()
            .filter_map(|p| match p {
                "hook-succeeded" => Some(DeletePolicy::HookSucceeded),
                "hook-failed" => Some(DeletePolicy::HookFailed),
                "before-hook-creation" => Some(DeletePolicy::BeforeHookCreation),
                _ => None,
            }),
    );
    if out.is_empty() {
        out.push(DeletePolicy::BeforeHookCreation);
    }
    out
}

/// The object's wave: `argocd.argoproj.io/sync-wave`, else `helm.sh/hook-weight`, else 0. A
/// value that is not an integer is an error naming the object (Argo silently uses 0).
pub fn wave(obj: &Object) -> Result<i64, PlanError> {
    for annotation in [SYNC_WAVE_ANNOTATION, HELM_HOOK_WEIGHT] {
        if let Some(v) = obj.metadata.annotations.get(annotation) {
            return v.trim().parse().map_err(|_| PlanError::BadWave {
                key: Box::new(obj.key()),
                annotation,
                value: v.clone(),
            });
        }
    }
    Ok(0)
}

/// Whether `obj` has sync option `option` in its `argocd.argoproj.io/sync-options` annotation.
pub fn has_sync_option(obj: &Object, option: &str) -> bool {
    csv(obj, SYNC_OPTIONS_ANNOTATION).contains(&option)
}

/// A hook named by `generateName` alone gets gitops-engine's name for it: generateName, the
/// revision's first 7 characters, the phase and the operation's start, lowercased
/// (`upgrade-sql-schema` + `9e7a1c2-presync-1764747000`). One hook in two phases is two objects.
pub fn named_hook(hook: &Object, phase: Phase, opts: &SyncOptions) -> Object {
    let mut obj = hook.clone();
    if obj.metadata.name.is_empty()
        && let Some(generate) = obj.metadata.generate_name.take()
    {
        let revision = if opts.revision.len() >= 8 {
            opts.revision.get(..7).unwrap_or(&opts.revision)
        } else {
            &opts.revision
        };
        let postfix = format!("{revision}-{}-{}", phase.as_str(), opts.started_at).to_lowercase();
        obj.metadata.name = format!("{generate}{postfix}");
    }
    obj
}

/// A task before grouping.
struct Pending {
    phase: Phase,
    wave: i64,
    task: Task,
}

/// Plans a sync of `desired` (the rendered objects) against `live` (the live objects of the app
/// and of the desired keys) for `opts`.
pub fn plan(desired: &[Object], live: &[Object], opts: &SyncOptions) -> Result<Plan, PlanError> {
    let mut pending = Vec::new();
    let mut skipped = Vec::new();
    let resources: Vec<&Object> = desired.iter().filter(|o| !is_skipped(o)).collect();
    let (hooks, plain): (Vec<&Object>, Vec<&Object>) =
        resources.into_iter().partition(|o| is_hook(o));

    let plain_owned: Vec<Object> = plain.iter().map(|o| (*o).clone()).collect();
    let diffs = diff::diff(&opts.app, &plain_owned, live, &[], &opts.custom);
    let prunable: Vec<&diff::ResourceDiff> = diffs.iter().filter(|d| d.requires_pruning).collect();

    if opts.automated && opts.prune && !opts.allow_empty && plain.is_empty() && !prunable.is_empty()
    {
        return Err(PlanError::WouldPruneEverything {
            revision: opts.revision.clone(),
        });
    }

    for d in diffs.iter().filter(|d| !d.requires_pruning) {
        let target = d.target.clone().expect("a desired resource has a target");
        let out_of_sync = d.status == SyncStatus::OutOfSync;
        if opts.apply_out_of_sync_only && !out_of_sync {
            continue;
        }
        pending.push(Pending {
            phase: Phase::Sync,
            wave: wave(&target)?,
            task: Task {
                action: Action::Apply,
                key: d.key.clone(),
                object: target,
                out_of_sync,
            },
        });
    }
    for h in hooks {
        let w = wave(h)?;
        let mut phases: Vec<Phase> = hook_types(h).into_iter().flatten().collect();
        phases.dedup();
        for phase in phases {
            let object = named_hook(h, phase, opts);
            pending.push(Pending {
                phase,
                wave: w,
                task: Task {
                    action: Action::Hook {
                        delete_policies: delete_policies(h),
                    },
                    key: object.key(),
                    object,
                    out_of_sync: true,
                },
            });
        }
    }
    let mut prunes = Vec::new();
    for d in prunable {
        let l = d.live.clone().expect("a prunable resource is live");
        if !opts.prune {
            skipped.push(Skipped {
                key: d.key.clone(),
                status: "PruneSkipped",
                message: "ignored (requires pruning)",
            });
        } else if has_sync_option(&l, "Prune=false") {
            skipped.push(Skipped {
                key: d.key.clone(),
                status: "PruneSkipped",
                message: "ignored (no prune)",
            });
        } else {
            prunes.push(Pending {
                phase: Phase::Sync,
                wave: wave(&l)?,
                task: Task {
                    action: Action::Prune,
                    key: d.key.clone(),
                    object: l,
                    out_of_sync: true,
                },
            });
        }
    }
    // Prunes undo creation: the waves they occupy are mirrored (the highest pruned first).
    let waves: Vec<i64> = prunes
        .iter()
        .map(|p| p.wave)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mirror: BTreeMap<i64, i64> = waves
        .iter()
        .zip(waves.iter().rev())
        .map(|(a, b)| (*a, *b))
        .collect();
    for p in &mut prunes {
        p.wave = mirror[&p.wave];
    }
    let last_sync_wave = pending
        .iter()
        .chain(prunes.iter())
        .filter(|p| p.phase == Phase::Sync)
        .map(|p| p.wave)
        .max()
        .unwrap_or(0)
        .max(0);
    for p in &mut prunes {
        if opts.prune_last || has_sync_option(&p.task.object, "PruneLast=true") {
            p.wave = last_sync_wave + 1;
        }
    }
    pending.extend(prunes);

    if opts.create_namespace && !opts.namespace.is_empty() {
        let ns_key = Key::new("", "Namespace", "", &opts.namespace);
        let desired_has = desired.iter().any(|o| o.key() == ns_key);
        let live_has = live.iter().any(|o| o.key() == ns_key);
        if !desired_has && !live_has {
            let ns: Object = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": opts.namespace},
            }))
            .expect("a namespace is an object");
            // First of the PreSync phase: its lowest wave, and Namespace sorts first in a wave.
            let wave = pending
                .iter()
                .filter(|p| p.phase == Phase::PreSync)
                .map(|p| p.wave)
                .min()
                .unwrap_or(0)
                .min(0);
            pending.push(Pending {
                phase: Phase::PreSync,
                wave,
                task: Task {
                    action: Action::Apply,
                    key: ns_key,
                    object: ns,
                    out_of_sync: true,
                },
            });
        }
    }

    if !opts.only.is_empty() {
        pending.retain(|p| {
            !matches!(p.task.action, Action::Hook { .. }) && selected(&opts.only, &p.task.key)
        });
        skipped.retain(|s| selected(&opts.only, &s.key));
    }
    sort(&mut pending);
    namespaces_first(&mut pending);

    let mut plan = Plan {
        phases: Vec::new(),
        skipped,
    };
    for p in pending {
        if plan.phases.last().is_none_or(|last| last.phase != p.phase) {
            plan.phases.push(PhasePlan {
                phase: p.phase,
                waves: Vec::new(),
            });
        }
        let phase = plan.phases.last_mut().expect("just pushed");
        if phase.waves.last().is_none_or(|w| w.wave != p.wave) {
            phase.waves.push(Wave {
                wave: p.wave,
                tasks: Vec::new(),
            });
        }
        phase
            .waves
            .last_mut()
            .expect("just pushed")
            .tasks
            .push(p.task);
    }
    Ok(plan)
}

/// gitops-engine's order: phase, wave, then (inside a wave) prunes before the rest, kind order,
/// name.
fn sort(p: &mut [Pending]) {
    p.sort_by(|a, b| {
        (a.phase, a.wave)
            .cmp(&(b.phase, b.wave))
            .then_with(|| {
                let prune = |t: &Task| !matches!(t.action, Action::Prune);
                prune(&a.task).cmp(&prune(&b.task))
            })
            .then_with(|| kind_rank(&a.task.key.kind).cmp(&kind_rank(&b.task.key.kind)))
            .then_with(|| a.task.key.name.cmp(&b.task.key.name))
    });
}

/// A Namespace the plan applies moves before the first task in it, into that task's phase and
/// wave (gitops-engine's `adjustDeps`), so a namespace exists before what lives in it.
fn namespaces_first(p: &mut Vec<Pending>) {
    let mut i = 0;
    while i < p.len() {
        let t = &p[i].task;
        let is_ns = t.key.group.is_empty()
            && t.key.kind == "Namespace"
            && !matches!(t.action, Action::Prune);
        if is_ns {
            let name = t.key.name.clone();
            let first = p[..i].iter().position(|q| {
                q.task.key.namespace == name && !matches!(q.task.action, Action::Prune)
            });
            if let Some(j) = first {
                let mut ns = p.remove(i);
                ns.phase = p[j].phase;
                ns.wave = p[j].wave;
                p.insert(j, ns);
            }
        }
        i += 1;
    }
}

/// Whether `obj` is one `plan` may prune for `app`: tracked by it and not a hook.
pub fn prunable(app: &str, obj: &Object) -> bool {
    is_tracked_by(app, obj) && !is_hook(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracking::with_tracking_id;
    use serde_json::json;

    fn obj(kind: &str, name: &str, annotations: &[(&str, &str)]) -> Object {
        let (api, spec) = match kind {
            "Deployment" => (
                "apps/v1",
                json!({"selector": {"matchLabels": {"a": name}},
                "template": {"metadata": {"labels": {"a": name}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}}),
            ),
            "Job" => (
                "batch/v1",
                json!({"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "i"}]}}}),
            ),
            "Service" => ("v1", json!({"ports": [{"port": 80}]})),
            _ => ("v1", json!(null)),
        };
        let namespace = if kind == "Namespace" {
            None
        } else {
            Some("default")
        };
        let mut v = json!({"apiVersion": api, "kind": kind,
            "metadata": {"name": name, "namespace": namespace,
                "annotations": annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()}});
        if !spec.is_null() {
            v["spec"] = spec;
        }
        serde_json::from_value(v).unwrap()
    }

    /// `o` as a sync of app `app` stored it.
    fn live(o: &Object) -> Object {
        with_tracking_id("app", shipway_model::admit(o.clone(), &[]).unwrap())
    }

    fn opts() -> SyncOptions {
        SyncOptions {
            app: "app".into(),
            revision: "abc".into(),
            ..SyncOptions::default()
        }
    }

    fn order(p: &Plan) -> Vec<String> {
        p.tasks()
            .map(|(ph, w, t)| {
                let a = match t.action {
                    Action::Apply => "apply",
                    Action::Prune => "prune",
                    Action::Hook { .. } => "hook",
                };
                format!("{} {w} {a} {} {}", ph.as_str(), t.key.kind, t.key.name)
            })
            .collect()
    }

    #[test]
    fn kinds_in_gitops_engines_order_then_names_and_unknown_kinds_last() {
        let desired = [
            obj("Deployment", "b", &[]),
            obj("Widget", "a", &[]),
            obj("Service", "z", &[]),
            obj("ConfigMap", "c", &[]),
            obj("Deployment", "a", &[]),
            obj("Namespace", "n", &[]),
        ];
        let mut desired = desired.to_vec();
        desired[1].api_version = "example.com/v1".into();
        let p = plan(&desired, &[], &opts()).unwrap();
        assert_eq!(
            order(&p),
            [
                "Sync 0 apply Namespace n",
                "Sync 0 apply ConfigMap c",
                "Sync 0 apply Service z",
                "Sync 0 apply Deployment a",
                "Sync 0 apply Deployment b",
                "Sync 0 apply Widget a",
            ]
        );
    }

    #[test]
    fn phases_and_waves_hooks_and_skip() {
        let desired = [
            obj("Job", "post", &[(HOOK_ANNOTATION, "PostSync")]),
            obj(
                "Job",
                "pre",
                &[(HOOK_ANNOTATION, "PreSync"), (SYNC_WAVE_ANNOTATION, "5")],
            ),
            obj("Job", "fail", &[(HOOK_ANNOTATION, "SyncFail")]),
            obj("Job", "both", &[(HOOK_ANNOTATION, "PreSync,PostSync")]),
            obj("Job", "skipped", &[(HOOK_ANNOTATION, "Skip")]),
            obj("Service", "late", &[(SYNC_WAVE_ANNOTATION, "1")]),
            obj("Service", "early", &[(SYNC_WAVE_ANNOTATION, "-1")]),
            obj("Job", "sync-hook", &[(HOOK_ANNOTATION, "Sync")]),
            obj("Service", "mid", &[]),
        ];
        let p = plan(&desired, &[], &opts()).unwrap();
        assert_eq!(
            order(&p),
            [
                "PreSync 0 hook Job both",
                "PreSync 5 hook Job pre",
                "Sync -1 apply Service early",
                "Sync 0 apply Service mid",
                "Sync 0 hook Job sync-hook",
                "Sync 1 apply Service late",
                "PostSync 0 hook Job both",
                "PostSync 0 hook Job post",
                "SyncFail 0 hook Job fail",
            ]
        );
        let (_, _, t) = p.tasks().next().unwrap();
        assert_eq!(
            t.action,
            Action::Hook {
                delete_policies: vec![DeletePolicy::BeforeHookCreation]
            }
        );
    }

    #[test]
    fn delete_policies_argo_and_helm() {
        let o = obj(
            "Job",
            "j",
            &[(
                HOOK_DELETE_POLICY_ANNOTATION,
                "HookSucceeded,HookFailed,Bogus",
            )],
        );
        assert_eq!(
            delete_policies(&o),
            [DeletePolicy::HookSucceeded, DeletePolicy::HookFailed]
        );
        let o = obj("Job", "j", &[(HELM_DELETE_POLICY, "before-hook-creation")]);
        assert_eq!(delete_policies(&o), [DeletePolicy::BeforeHookCreation]);
        // Argo's hook annotation wins over Helm's.
        let o = obj(
            "Job",
            "j",
            &[(HOOK_ANNOTATION, "PostSync"), (HELM_HOOK, "pre-install")],
        );
        assert_eq!(hook_types(&o), [Some(Phase::PostSync)]);
    }

    #[test]
    fn a_bad_wave_names_the_object() {
        let e = plan(
            &[obj("Service", "s", &[(SYNC_WAVE_ANNOTATION, "two")])],
            &[],
            &opts(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Service/default/s: annotation argocd.argoproj.io/sync-wave: \"two\" is not an integer"
        );
    }

    #[test]
    fn prunes_need_prune_on_and_honour_prune_false() {
        let keep = obj("Service", "keep", &[]);
        let gone = live(&obj("Service", "gone", &[]));
        let no_prune = live(&obj(
            "Service",
            "precious",
            &[(SYNC_OPTIONS_ANNOTATION, "Prune=false")],
        ));
        let mut untracked = live(&obj("Service", "someone-elses", &[]));
        untracked.metadata.annotations.clear();
        let live_set = [live(&keep), gone, no_prune, untracked];

        let p = plan(std::slice::from_ref(&keep), &live_set, &opts()).unwrap();
        assert_eq!(order(&p), ["Sync 0 apply Service keep"]);
        let skipped: Vec<(&str, &str)> = p
            .skipped
            .iter()
            .map(|s| (s.key.name.as_str(), s.message))
            .collect();
        assert_eq!(
            skipped,
            [
                ("gone", "ignored (requires pruning)"),
                ("precious", "ignored (requires pruning)")
            ]
        );

        let mut o = opts();
        o.prune = true;
        let p = plan(std::slice::from_ref(&keep), &live_set, &o).unwrap();
        assert_eq!(
            order(&p),
            ["Sync 0 prune Service gone", "Sync 0 apply Service keep"]
        );
        let skipped: Vec<(&str, &str)> = p
            .skipped
            .iter()
            .map(|s| (s.key.name.as_str(), s.message))
            .collect();
        assert_eq!(skipped, [("precious", "ignored (no prune)")]);
    }

    #[test]
    fn prunes_run_in_reverse_wave_order_and_prune_last_after_the_last_wave() {
        let w =
            |name: &str, wave: &str| live(&obj("Service", name, &[(SYNC_WAVE_ANNOTATION, wave)]));
        let desired = [obj("Service", "app", &[(SYNC_WAVE_ANNOTATION, "3")])];
        let live_set = [w("p-1", "-1"), w("p0", "0"), w("p2", "2")];
        let mut o = opts();
        o.prune = true;
        let p = plan(&desired, &live_set, &o).unwrap();
        assert_eq!(
            order(&p),
            [
                "Sync -1 prune Service p2",
                "Sync 0 prune Service p0",
                "Sync 2 prune Service p-1",
                "Sync 3 apply Service app"
            ]
        );
        o.prune_last = true;
        let p = plan(&desired, &live_set, &o).unwrap();
        assert_eq!(
            order(&p),
            [
                "Sync 3 apply Service app",
                "Sync 4 prune Service p-1",
                "Sync 4 prune Service p0",
                "Sync 4 prune Service p2"
            ]
        );
        // The per-resource option does the same for one resource.
        o.prune_last = false;
        let last = live(&obj(
            "Service",
            "last",
            &[(SYNC_OPTIONS_ANNOTATION, "PruneLast=true")],
        ));
        let p = plan(&desired, &[last], &o).unwrap();
        assert_eq!(
            order(&p),
            ["Sync 3 apply Service app", "Sync 4 prune Service last"]
        );
    }

    #[test]
    fn apply_out_of_sync_only_skips_synced_resources() {
        let same = obj("Service", "same", &[]);
        let changed = obj("Service", "changed", &[]);
        let mut old = live(&changed);
        old.body["spec"]["ports"][0]["port"] = json!(8080);
        let mut o = opts();
        o.apply_out_of_sync_only = true;
        let p = plan(&[same.clone(), changed], &[live(&same), old], &o).unwrap();
        assert_eq!(order(&p), ["Sync 0 apply Service changed"]);
        o.apply_out_of_sync_only = false;
        let p = plan(std::slice::from_ref(&same), &[live(&same)], &o).unwrap();
        assert_eq!(order(&p), ["Sync 0 apply Service same"]);
        assert!(!p.tasks().next().unwrap().2.out_of_sync);
    }

    #[test]
    fn an_automated_sync_refuses_to_prune_everything_unless_allow_empty() {
        let live_set = [
            live(&obj("Service", "a", &[])),
            live(&obj("Service", "b", &[])),
        ];
        let mut o = opts();
        o.automated = true;
        o.prune = true;
        let e = plan(&[], &live_set, &o).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Skipping sync attempt to abc: auto-sync will wipe out all resources"
        );
        assert_eq!(e.condition_type(), "SyncError");
        o.allow_empty = true;
        assert_eq!(plan(&[], &live_set, &o).unwrap().tasks().count(), 2);
        // A manual sync is not guarded.
        o.allow_empty = false;
        o.automated = false;
        assert_eq!(plan(&[], &live_set, &o).unwrap().tasks().count(), 2);
    }

    #[test]
    fn live_hooks_are_never_pruned() {
        let hook = live(&obj("Job", "migrate", &[(HOOK_ANNOTATION, "PreSync")]));
        let mut o = opts();
        o.prune = true;
        let p = plan(&[], &[hook], &o).unwrap();
        assert_eq!(p.tasks().count(), 0);
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn create_namespace_adds_the_namespace_first_and_namespaces_precede_their_contents() {
        let mut o = opts();
        o.create_namespace = true;
        o.namespace = "default".into();
        let desired = [
            obj(
                "Job",
                "pre",
                &[(HOOK_ANNOTATION, "PreSync"), (SYNC_WAVE_ANNOTATION, "-2")],
            ),
            obj("Service", "s", &[]),
        ];
        let p = plan(&desired, &[], &o).unwrap();
        assert_eq!(
            order(&p),
            [
                "PreSync -2 apply Namespace default",
                "PreSync -2 hook Job pre",
                "Sync 0 apply Service s"
            ]
        );
        // Not when the namespace is live already.
        let ns = live(&obj("Namespace", "default", &[]));
        let p = plan(&desired, &[ns], &o).unwrap();
        assert_eq!(order(&p)[0], "PreSync -2 hook Job pre");
        // A desired Namespace in a later wave moves ahead of the first object in it.
        let desired = [
            obj("Namespace", "default", &[(SYNC_WAVE_ANNOTATION, "5")]),
            obj("Service", "s", &[(SYNC_WAVE_ANNOTATION, "1")]),
        ];
        let p = plan(&desired, &[], &opts()).unwrap();
        assert_eq!(
            order(&p),
            ["Sync 1 apply Namespace default", "Sync 1 apply Service s"]
        );
    }

    #[test]
    fn a_selective_sync_touches_only_its_resources_and_runs_no_hooks() {
        let desired = [
            obj("Job", "pre", &[(HOOK_ANNOTATION, "PreSync")]),
            obj("Service", "a", &[]),
            obj("Service", "b", &[]),
        ];
        let gone = live(&obj("Service", "gone", &[]));
        let mut o = opts();
        o.prune = true;
        o.only = vec![
            serde_json::from_value(json!({"kind": "Service", "name": "b"})).unwrap(),
            serde_json::from_value(
                json!({"kind": "Service", "name": "gone", "namespace": "default"}),
            )
            .unwrap(),
        ];
        let p = plan(&desired, &[gone], &o).unwrap();
        assert_eq!(
            order(&p),
            ["Sync 0 prune Service gone", "Sync 0 apply Service b"]
        );
        o.only = vec![
            serde_json::from_value(json!({"kind": "Service", "name": "a", "namespace": "other"}))
                .unwrap(),
        ];
        assert_eq!(plan(&desired, &[], &o).unwrap().tasks().count(), 0);
    }

    #[test]
    fn sync_options_list() {
        let mut o = opts();
        o.apply_list(&[
            "PruneLast=true".into(),
            "CreateNamespace=true".into(),
            "Validate=false".into(),
        ]);
        assert!(o.prune_last && o.create_namespace && !o.apply_out_of_sync_only);
    }
}
