//! The Experiment controller on `shipway-controller`'s runner: reads an Experiment, its
//! ReplicaSets, Services and AnalysisRuns, checks the spec and the analysis templates it names,
//! calls [`super::decide`] and carries the decision out (ReplicaSets created, scaled and given
//! their scale-down deadline, Services, AnalysisRuns created from their templates and
//! terminated), then writes `status` from the object it read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shipway_controller::{Action, Cache, Clock, Controller, GroupKind, exponential_backoff};
use shipway_model::types::{
    AnalysisRunStatus, AnalysisTemplateSpec, Argument, PodTemplateSpec, ReplicaSetSpec,
    ReplicaSetStatus, to_value,
};
use shipway_model::{Key, Object, ObjectMeta};
use shipway_runtime::workload::rollout::{NewReplicaSet, template_hash};
use shipway_runtime::workload::{controller_ref, is_controlled_by, is_terminating};
use shipway_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::{
    Decision, EXPERIMENT_NAME, ExperimentSpec, ExperimentStatus, Input, RunState, TEMPLATE_NAME,
    TemplateSet,
};
use crate::rollout::{POD_TEMPLATE_HASH, SCALE_DOWN_DEADLINE};

pub const ACTOR: &str = "controller:experiments";

pub const EXPERIMENT: GroupKind = GroupKind::from_static("argoproj.io", "Experiment");
const REPLICA_SET: GroupKind = GroupKind::from_static("apps", "ReplicaSet");
const SERVICE: GroupKind = GroupKind::from_static("", "Service");
const ANALYSIS_RUN: GroupKind = GroupKind::from_static("argoproj.io", "AnalysisRun");
const TEMPLATE: GroupKind = GroupKind::from_static("argoproj.io", "AnalysisTemplate");
const CLUSTER_TEMPLATE: GroupKind =
    GroupKind::from_static("argoproj.io", "ClusterAnalysisTemplate");

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

pub struct ExperimentController {
    pub store: Store,
    pub cache: Cache,
    pub clock: Clock,
}

impl ExperimentController {
    pub fn new(store: Store, cache: Cache, clock: Clock) -> Self {
        ExperimentController {
            store,
            cache,
            clock,
        }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let in_namespace = |cache: Cache| {
            move |obj: &Object| {
                let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
                cache
                    .list(&EXPERIMENT, Some(ns))
                    .iter()
                    .map(|o| o.key())
                    .collect::<Vec<Key>>()
            }
        };
        let controller = Controller::new(EXPERIMENT, self.cache.clone())
            .owns(REPLICA_SET)
            .owns(SERVICE)
            .owns(ANALYSIS_RUN)
            // A template appearing can make a pending Experiment startable.
            .watches(TEMPLATE, in_namespace(self.cache.clone()));
        controller
            .run(
                |obj: Arc<Object>, ctx: Arc<ExperimentController>| async move {
                    ctx.reconcile(&obj).await
                },
                |obj: Arc<Object>, e: &ExperimentError, failures, _| {
                    if let ExperimentError::Store(StoreError::Conflict { .. }) = e {
                        return Action::Requeue(Duration::from_millis(20));
                    }
                    let backoff = exponential_backoff(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(30),
                    );
                    tracing::warn!(object = %obj.key(), error = %e, "experiment reconcile failed; retrying in {backoff:?}");
                    Action::Requeue(backoff)
                },
                Arc::new(self),
                shutdown,
            )
            .await;
    }

    /// One pass over `ex`.
    pub async fn reconcile(&self, ex: &Object) -> Result<Action, ExperimentError> {
        if is_terminating(ex) {
            return Ok(Action::AwaitChange);
        }
        let now = self.clock.now();
        let now_ts = self.clock.timestamp();
        let status: ExperimentStatus = ex
            .status_as()
            .map_err(|e| ExperimentError::Other(e.to_string()))?;
        let name = &ex.metadata.name;
        let spec: ExperimentSpec = match ex.spec_as() {
            Ok(s) => s,
            Err(e) => {
                let message = format!(
                    "The Experiment \"{name}\" is invalid: spec: Invalid value: {}",
                    e.source
                );
                return self.invalid(ex, &status, &message, &now_ts).await;
            }
        };
        if let Err(message) = super::validate(name, &spec) {
            return self.invalid(ex, &status, &message, &now_ts).await;
        }
        let ns = ex.metadata.namespace.as_deref().unwrap_or_default();
        let mut missing = BTreeMap::new();
        for a in &spec.analyses {
            if let Err(e) = self.template(ns, a.cluster_scope == Some(true), &a.template_name) {
                missing.insert(a.name.clone(), e);
            }
        }
        let owned = self.owned(ex);
        let mut sets: BTreeMap<String, TemplateSet> = BTreeMap::new();
        let mut rs_objects: BTreeMap<String, Object> = BTreeMap::new();
        for rs in owned.iter().filter(|o| REPLICA_SET.is(o)) {
            if let Some(t) = rs.metadata.annotations.get(TEMPLATE_NAME) {
                sets.insert(t.clone(), set_of(rs));
                rs_objects.insert(rs.metadata.name.clone(), rs.clone());
            }
        }
        for svc in owned.iter().filter(|o| SERVICE.is(o)) {
            if let Some(t) = svc.metadata.annotations.get(TEMPLATE_NAME)
                && let Some(s) = sets.get_mut(t)
            {
                s.service = Some(svc.metadata.name.clone());
            }
        }
        let mut runs = BTreeMap::new();
        for r in &status.analysis_runs {
            if r.analysis_run.is_empty() || super::completed(&r.phase) {
                continue;
            }
            let key = ANALYSIS_RUN.key(ns, &r.analysis_run);
            let obj = match self.cache.get(&key) {
                Some(o) => Some((*o).clone()),
                // Made by the last pass, not in the cache yet.
                None => self.store.get(&key).await?,
            };
            let state = match obj {
                Some(o) => {
                    let s: AnalysisRunStatus = o.status_as().unwrap_or_default();
                    Ok(RunState {
                        phase: s.phase,
                        message: s.message,
                        terminate: o.spec().and_then(|s| s.get("terminate"))
                            == Some(&Value::Bool(true)),
                    })
                }
                None => Err(format!(
                    "analysisruns.argoproj.io \"{}\" not found",
                    r.analysis_run
                )),
            };
            runs.insert(r.name.clone(), state);
        }
        let input = Input {
            name,
            spec: &spec,
            status: &status,
            sets: &sets,
            runs: &runs,
            missing_templates: &missing,
            now,
        };
        let mut d = super::decide(&input);
        self.execute(ex, &spec, &sets, &mut rs_objects, &mut d)
            .await?;
        self.write_status(ex, &status, &d.status).await?;
        for (reason, message, warning) in &d.events {
            if *warning {
                tracing::warn!(experiment = %ex.key(), reason, "{message}");
            } else {
                tracing::info!(experiment = %ex.key(), reason, "{message}");
            }
            if let Err(e) = self
                .store
                .record_event(&ex.key(), ACTOR, reason, message)
                .await
            {
                tracing::warn!(object = %ex.key(), reason, error = %e, "cannot record an event");
            }
        }
        Ok(d.requeue.map_or(Action::AwaitChange, Action::Requeue))
    }

    async fn invalid(
        &self,
        ex: &Object,
        old: &ExperimentStatus,
        message: &str,
        now: &str,
    ) -> Result<Action, ExperimentError> {
        let st = super::invalid_status(old, message, now);
        let changed = old.conditions != st.conditions;
        self.write_status(ex, old, &st).await?;
        if changed {
            tracing::warn!(experiment = %ex.key(), "{message}");
            let _ = self
                .store
                .record_event(&ex.key(), ACTOR, "InvalidSpec", message)
                .await;
        }
        Ok(Action::AwaitChange)
    }

    fn owned(&self, ex: &Object) -> Vec<Object> {
        let uid = ex.metadata.uid.clone().unwrap_or_default();
        self.cache
            .owned_by(&uid)
            .iter()
            .filter(|o| is_controlled_by(o, ex) && !is_terminating(o))
            .map(|o| (**o).clone())
            .collect()
    }

    /// The template an analysis names, with Kubernetes' NotFound wording when it is missing.
    fn template(
        &self,
        ns: &str,
        cluster: bool,
        name: &str,
    ) -> Result<AnalysisTemplateSpec, String> {
        let (key, resource) = if cluster {
            (
                CLUSTER_TEMPLATE.key("", name),
                "clusteranalysistemplate.argoproj.io",
            )
        } else {
            (TEMPLATE.key(ns, name), "analysistemplate.argoproj.io")
        };
        let obj = self
            .cache
            .get(&key)
            .ok_or_else(|| format!("{resource} \"{name}\" not found"))?;
        obj.spec_as()
            .map_err(|e| format!("{resource} \"{name}\": {}", e.source))
    }

    async fn execute(
        &self,
        ex: &Object,
        spec: &ExperimentSpec,
        sets: &BTreeMap<String, TemplateSet>,
        rs_objects: &mut BTreeMap<String, Object>,
        d: &mut Decision,
    ) -> Result<(), ExperimentError> {
        let ns = ex.metadata.namespace.as_deref().unwrap_or_default();
        let mut sets = sets.clone();
        for (i, replicas) in d.create.clone() {
            let t = &spec.templates[i];
            match self.create_replica_set(ex, t, replicas).await {
                Ok(rs) => {
                    sets.insert(t.name.clone(), set_of(&rs));
                    rs_objects.insert(rs.metadata.name.clone(), rs);
                }
                Err(message) => {
                    if let Some(ts) = d
                        .status
                        .template_statuses
                        .iter_mut()
                        .find(|s| s.name == t.name)
                    {
                        ts.status = "Error".into();
                        ts.message = message;
                    }
                }
            }
        }
        for (name, deadline) in &d.deadlines {
            if let Some(mut rs) = rs_objects.get(name).cloned() {
                match deadline {
                    Some(t) => rs.metadata.annotations.insert(
                        SCALE_DOWN_DEADLINE.into(),
                        shipway_controller::clock::format_timestamp(*t),
                    ),
                    None => rs.metadata.annotations.remove(SCALE_DOWN_DEADLINE),
                };
                rs_objects.insert(name.clone(), self.store.update(rs, ACTOR).await?);
            }
        }
        for (name, to) in &d.scale {
            let Some(mut rs) = rs_objects.get(name).cloned() else {
                continue;
            };
            let mut rs_spec: ReplicaSetSpec = rs
                .spec_as()
                .map_err(|e| ExperimentError::Other(e.to_string()))?;
            let from = rs_spec.replicas.unwrap_or(0);
            rs_spec.replicas = Some(*to);
            rs.set_spec(&rs_spec);
            if *to == 0 {
                rs.metadata.annotations.remove(SCALE_DOWN_DEADLINE);
            }
            rs_objects.insert(name.clone(), self.store.update(rs, ACTOR).await?);
            let way = if *to > from { "up" } else { "down" };
            d.events.push((
                "ScalingReplicaSet".into(),
                format!("Scaled {way} ReplicaSet {name} from {from} to {to}"),
                false,
            ));
        }
        for i in d.create_services.clone() {
            let t = &spec.templates[i];
            let Some(rs) = sets
                .get(&t.name)
                .and_then(|s| rs_objects.get(&s.name))
                .cloned()
            else {
                continue;
            };
            match self.create_service(ex, t, &rs).await {
                Ok(Some(svc)) => {
                    if let Some(ts) = d
                        .status
                        .template_statuses
                        .iter_mut()
                        .find(|s| s.name == t.name)
                    {
                        ts.service_name = svc;
                        ts.pod_template_hash = rs
                            .metadata
                            .labels
                            .get(POD_TEMPLATE_HASH)
                            .cloned()
                            .unwrap_or_default();
                    }
                }
                Ok(None) => {}
                Err(message) => {
                    if let Some(ts) = d
                        .status
                        .template_statuses
                        .iter_mut()
                        .find(|s| s.name == t.name)
                    {
                        ts.status = "Error".into();
                        ts.message = message;
                    }
                }
            }
        }
        for svc in &d.delete_services {
            match self.store.delete(&SERVICE.key(ns, svc), ACTOR).await {
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for run in &d.terminate_runs {
            if let Some(obj) = self.cache.get(&ANALYSIS_RUN.key(ns, run)) {
                let mut obj = (*obj).clone();
                if let Some(s) = obj.body.get_mut("spec").and_then(Value::as_object_mut) {
                    s.insert("terminate".into(), Value::Bool(true));
                    match self.store.update(obj, ACTOR).await {
                        Ok(_) | Err(StoreError::NotFound(_)) | Err(StoreError::Conflict { .. }) => {
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        for i in d.start_runs.clone() {
            let a = &spec.analyses[i];
            let result = self.start_run(ex, spec, &d.status, &sets, a).await;
            if let Some(r) = d.status.analysis_runs.iter_mut().find(|r| r.name == a.name) {
                match result {
                    Ok(name) => r.analysis_run = name,
                    Err(ExperimentError::Other(e)) => {
                        r.analysis_run.clear();
                        r.phase = "Error".into();
                        r.message = format!(
                            "Failed to create AnalysisRun for analysis '{}': {e}",
                            a.name
                        );
                        d.requeue = Some(Duration::ZERO);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The template's ReplicaSet, as Argo builds it: the template's pods labelled with its
    /// hash, the experiment and template names as annotations, owned by the Experiment.
    async fn create_replica_set(
        &self,
        ex: &Object,
        t: &super::TemplateSpec,
        replicas: i64,
    ) -> Result<Object, String> {
        let mut raw = t.template.clone();
        // The hash is of the template without the label that will carry it.
        if let Some(labels) = raw
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.remove(POD_TEMPLATE_HASH);
        }
        let hash = template_hash(&crate::rollout::canonical(&raw));
        let template: PodTemplateSpec = serde_json::from_value(raw)
            .map_err(|e| format!("Failed to create ReplicaSet for template '{}': {e}", t.name))?;
        let mut rs = NewReplicaSet {
            owner: ex,
            name: format!("{}-{}", ex.metadata.name, t.name),
            hash_label: POD_TEMPLATE_HASH,
            hash: &hash,
            revision_annotation: EXPERIMENT_NAME,
            revision: 0,
            replicas,
            min_ready_seconds: t.min_ready_seconds.unwrap_or(0),
            selector: t.selector.clone().unwrap_or_default(),
            template,
        }
        .object();
        rs.metadata.annotations = [
            (EXPERIMENT_NAME.to_string(), ex.metadata.name.clone()),
            (TEMPLATE_NAME.to_string(), t.name.clone()),
        ]
        .into();
        match self.store.create(rs, "controller:experiments").await {
            Ok(rs) => Ok(rs),
            Err(e) => Err(format!(
                "Failed to create ReplicaSet for template '{}': {e}",
                t.name
            )),
        }
    }

    /// Argo's template Service: named after the ReplicaSet (or `service.name`), selecting its
    /// labels, one port per container port; none when the pods have no ports.
    async fn create_service(
        &self,
        ex: &Object,
        t: &super::TemplateSpec,
        rs: &Object,
    ) -> Result<Option<String>, String> {
        let mut ports = Vec::new();
        let containers = rs
            .spec()
            .and_then(|s| s.pointer("/template/spec/containers"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in &containers {
            for p in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(port) = p.get("containerPort").and_then(Value::as_i64) else {
                    continue;
                };
                let mut sp = json!({"port": port, "targetPort": port,
                    "protocol": p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")});
                if let Some(n) = p.get("name").and_then(Value::as_str) {
                    sp["name"] = json!(n);
                }
                ports.push(sp);
            }
        }
        if ports.is_empty() {
            return Ok(None);
        }
        let name = t
            .service
            .as_ref()
            .map(|s| s.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| rs.metadata.name.clone());
        let svc = Object {
            api_version: "v1".into(),
            kind: "Service".into(),
            metadata: ObjectMeta {
                name: name.clone(),
                namespace: ex.metadata.namespace.clone(),
                annotations: [
                    (EXPERIMENT_NAME.to_string(), ex.metadata.name.clone()),
                    (TEMPLATE_NAME.to_string(), t.name.clone()),
                ]
                .into(),
                owner_references: vec![controller_ref(ex)],
                ..ObjectMeta::default()
            },
            body: [(
                "spec".to_string(),
                json!({"selector": rs.metadata.labels, "ports": ports}),
            )]
            .into_iter()
            .collect(),
        };
        match self.store.create(svc, ACTOR).await {
            Ok(_) => Ok(Some(name)),
            Err(e) => Err(format!(
                "Failed to create Service {name} for template '{}': {e}",
                t.name
            )),
        }
    }

    /// Creates (or adopts, after a lost status write) the run for `a`: `<experiment>-<analysis>`,
    /// `.N` on a collision with a run that is not this Experiment's.
    async fn start_run(
        &self,
        ex: &Object,
        spec: &ExperimentSpec,
        st: &ExperimentStatus,
        sets: &BTreeMap<String, TemplateSet>,
        a: &super::ExperimentAnalysis,
    ) -> Result<String, ExperimentError> {
        let ns = ex.metadata.namespace.as_deref().unwrap_or_default();
        let template = self
            .template(ns, a.cluster_scope == Some(true), &a.template_name)
            .map_err(ExperimentError::Other)?;
        let args = a
            .args
            .iter()
            .map(|arg| {
                let mut arg: Argument = arg.clone();
                if let Some(v) = &arg.value {
                    arg.value = Some(super::resolve_arg(v, spec, st, sets)?);
                }
                Ok(arg)
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(ExperimentError::Other)?;
        let run_spec = crate::analysis::template::run_spec(
            &[&template],
            &args,
            &spec.dry_run,
            &spec.measurement_retention,
        )
        .map_err(ExperimentError::Other)?;
        let meta = spec.analysis_run_metadata.clone().unwrap_or_default();
        let base = format!("{}-{}", ex.metadata.name, a.name);
        for attempt in 0..100 {
            let name = if attempt == 0 {
                base.clone()
            } else {
                format!("{base}.{attempt}")
            };
            let mut run = Object {
                api_version: "argoproj.io/v1alpha1".into(),
                kind: "AnalysisRun".into(),
                metadata: ObjectMeta {
                    name: name.clone(),
                    namespace: Some(ns.to_string()),
                    labels: meta.labels.clone(),
                    annotations: meta.annotations.clone(),
                    owner_references: vec![controller_ref(ex)],
                    ..ObjectMeta::default()
                },
                body: serde_json::Map::new(),
            };
            run.set_spec(&run_spec);
            match self.store.create(run, ACTOR).await {
                Ok(_) => return Ok(name),
                Err(StoreError::AlreadyExists(_)) => {
                    let key = ANALYSIS_RUN.key(ns, &name);
                    if let Some(existing) = self.store.get(&key).await?
                        && is_controlled_by(&existing, ex)
                    {
                        return Ok(name);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ExperimentError::Other(format!(
            "no free AnalysisRun name after {base}.99"
        )))
    }

    async fn write_status(
        &self,
        ex: &Object,
        old: &ExperimentStatus,
        st: &ExperimentStatus,
    ) -> Result<(), ExperimentError> {
        if ex.status().is_some() && old == st {
            return Ok(());
        }
        if ex.status() == Some(&to_value(st)) {
            return Ok(());
        }
        let mut updated = ex.clone();
        updated.set_status(st);
        self.store.update_status(updated, ACTOR).await?;
        Ok(())
    }
}

fn set_of(rs: &Object) -> TemplateSet {
    let spec: ReplicaSetSpec = rs.spec_as().unwrap_or_default();
    let status: ReplicaSetStatus = rs.status_as().unwrap_or_default();
    TemplateSet {
        name: rs.metadata.name.clone(),
        hash: rs
            .metadata
            .labels
            .get(POD_TEMPLATE_HASH)
            .cloned()
            .unwrap_or_default(),
        replicas: spec.replicas.unwrap_or(0),
        status_replicas: status.replicas,
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        scale_down_deadline: rs
            .metadata
            .annotations
            .get(SCALE_DOWN_DEADLINE)
            .and_then(|t| super::parse_time(t)),
        service: None,
    }
}
