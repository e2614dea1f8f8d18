//! The Rollout controller on `shipway-controller`'s runner: reads a Rollout, its ReplicaSets
//! and AnalysisRuns from the shared cache, checks the spec and what it references, calls
//! [`super::decide`] and carries the decision out — ReplicaSets created and scaled, the stable
//! Service's `TrafficPolicy` written in one apply, the canary Service's selector, AnalysisRuns
//! created from their templates, `status` written last from the object it read (a conflict
//! with a user's write retries, so an intent is never overwritten).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shipway_controller::{Action, Cache, Clock, Controller, GroupKind, exponential_backoff};
use shipway_model::types::rollout::{CanaryStrategy, RolloutAnalysis, RolloutSpec, RolloutStatus};
use shipway_model::types::{
    AnalysisRunStatus, AnalysisTemplateSpec, Argument, ReplicaSetSpec, ReplicaSetStatus,
    ServiceSpec, to_value,
};
use shipway_model::{Key, Object, ObjectMeta};
use shipway_runtime::workload::rollout::{NewReplicaSet, template_hash};
use shipway_runtime::workload::{controller_ref, is_controlled_by, is_terminating};
use shipway_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::{
    Decision, Input, MANAGED_BY, POD_TEMPLATE_HASH, REVISION, ROUTER, Run, SCALE_DOWN_DEADLINE,
    Set, StartRun, Traffic,
};

pub const ACTOR: &str = "controller:rollouts";

const ROLLOUT: GroupKind = GroupKind::from_static("argoproj.io", "Rollout");
const REPLICA_SET: GroupKind = GroupKind::from_static("apps", "ReplicaSet");
const ANALYSIS_RUN: GroupKind = GroupKind::from_static("argoproj.io", "AnalysisRun");
const TEMPLATE: GroupKind = GroupKind::from_static("argoproj.io", "AnalysisTemplate");
const CLUSTER_TEMPLATE: GroupKind =
    GroupKind::from_static("argoproj.io", "ClusterAnalysisTemplate");
const SERVICE: GroupKind = GroupKind::from_static("", "Service");
const POLICY: GroupKind = GroupKind::from_static("shipway.dev", "TrafficPolicy");
const EXPERIMENT: GroupKind = crate::experiment::controller::EXPERIMENT;

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

pub struct RolloutController {
    pub store: Store,
    pub cache: Cache,
    pub clock: Clock,
}

impl RolloutController {
    pub fn new(store: Store, cache: Cache, clock: Clock) -> Self {
        RolloutController {
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
                    .list(&ROLLOUT, Some(ns))
                    .iter()
                    .map(|o| o.key())
                    .collect::<Vec<Key>>()
            }
        };
        let every = |cache: Cache| {
            move |_: &Object| {
                cache
                    .list(&ROLLOUT, None)
                    .iter()
                    .map(|o| o.key())
                    .collect::<Vec<Key>>()
            }
        };
        let controller = Controller::new(ROLLOUT, self.cache.clone())
            .owns(REPLICA_SET)
            .owns(ANALYSIS_RUN)
            .owns(POLICY)
            .owns(EXPERIMENT)
            // A Service or template appearing can make an invalid spec valid.
            .watches(SERVICE, in_namespace(self.cache.clone()))
            .watches(TEMPLATE, in_namespace(self.cache.clone()))
            .watches(CLUSTER_TEMPLATE, every(self.cache.clone()));
        controller
            .run(
                |obj: Arc<Object>, ctx: Arc<RolloutController>| async move {
                    ctx.reconcile(&obj).await
                },
                |obj: Arc<Object>, e: &RolloutError, failures, _| {
                    if let RolloutError::Store(StoreError::Conflict { .. }) = e {
                        return Action::Requeue(Duration::from_millis(20));
                    }
                    let backoff = exponential_backoff(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(30),
                    );
                    tracing::warn!(object = %obj.key(), error = %e, "rollout reconcile failed; retrying in {backoff:?}");
                    Action::Requeue(backoff)
                },
                Arc::new(self),
                shutdown,
            )
            .await;
    }

    /// One pass over `ro`.
    pub async fn reconcile(&self, ro: &Object) -> Result<Action, RolloutError> {
        if is_terminating(ro) {
            return Ok(Action::AwaitChange);
        }
        let now = self.clock.now();
        let now_ts = self.clock.timestamp();
        // A status that does not read is not overwritten: the user's intents live there.
        let status: RolloutStatus = ro
            .status_as()
            .map_err(|e| RolloutError::Other(e.to_string()))?;
        let mut spec: RolloutSpec = match ro.spec_as() {
            Ok(s) => s,
            Err(e) => {
                let message = format!(
                    "The Rollout \"{}\" is invalid: spec: Invalid value: {}",
                    ro.metadata.name, e.source
                );
                let st = super::invalid_status(
                    &status,
                    ro.metadata.generation,
                    &message,
                    &now_ts,
                    &RolloutSpec::default(),
                );
                return self.invalid(ro, &status, st, &message).await;
            }
        };
        let name = &ro.metadata.name;
        let checked = super::apply_preset(name, &ro.metadata.annotations, &mut spec)
            .and_then(|()| super::validate(name, &spec))
            .and_then(|()| self.check_references(ro, &spec));
        if let Err(message) = checked {
            let st =
                super::invalid_status(&status, ro.metadata.generation, &message, &now_ts, &spec);
            return self.invalid(ro, &status, st, &message).await;
        }
        if spec.workload_ref.is_some() {
            // Without the referenced Deployment's template there is nothing to run: said in
            // the status, nothing applied.
            let message = "Shipway does not implement spec.workloadRef yet; nothing was applied";
            let mut st = status.clone();
            st.observed_generation = Some(ro.metadata.generation.to_string());
            st.phase = Some("Degraded".into());
            st.message = Some(format!("UnsupportedFields: {message}"));
            shipway_model::types::condition::set(
                &mut st.conditions,
                "UnsupportedFields",
                true,
                "NotImplemented",
                message,
                &now_ts,
            );
            self.write_status(ro, &status, &st).await?;
            return Ok(Action::AwaitChange);
        }
        let blue_green = spec.strategy.blue_green.clone();
        // Blue-green runs with an empty canary strategy (no steps, services or routing).
        let canary = spec.strategy.canary.clone().unwrap_or_default();
        let raw_template = ro
            .spec()
            .and_then(|s| s.get("template"))
            .cloned()
            .unwrap_or(Value::Null);
        let hash = template_hash(&super::canonical(&raw_template));
        let step_hash = template_hash(&super::canonical(&to_value(&canary.steps())));
        let replica_sets = self.replica_sets(ro);
        let sets: Vec<Set> = replica_sets.iter().map(set_of).collect();
        let run = |r: &Option<shipway_model::types::rollout::RolloutAnalysisRunStatus>| {
            let r = r.as_ref()?;
            let ns = ro.metadata.namespace.as_deref().unwrap_or_default();
            let obj = self.cache.get(&ANALYSIS_RUN.key(ns, &r.name))?;
            let s: AnalysisRunStatus = obj.status_as().unwrap_or_default();
            Some(Run {
                name: r.name.clone(),
                phase: s.phase,
                message: s.message,
            })
        };
        let bg_status = status.blue_green.clone().unwrap_or_default();
        let input = Input {
            name,
            generation: ro.metadata.generation,
            spec: &spec,
            canary: &canary,
            status: &status,
            hash: &hash,
            step_hash: &step_hash,
            sets: &sets,
            step_run: match &blue_green {
                Some(_) => run(&bg_status.pre_promotion_analysis_run_status),
                None => run(&status.canary().current_step_analysis_run_status),
            },
            background_run: match &blue_green {
                Some(_) => run(&bg_status.post_promotion_analysis_run_status),
                None => run(&status.canary().current_background_analysis_run_status),
            },
            step_experiment: status
                .canary()
                .current_experiment
                .as_ref()
                .and_then(|name| {
                    let ns = ro.metadata.namespace.as_deref().unwrap_or_default();
                    let obj = self.cache.get(&EXPERIMENT.key(ns, name))?;
                    let s: crate::experiment::ExperimentStatus =
                        obj.status_as().unwrap_or_default();
                    Some(Run {
                        name: name.clone(),
                        phase: s.phase,
                        message: s.message,
                    })
                }),
            now,
        };
        let mut decision = match &blue_green {
            Some(bg) => super::bluegreen::decide_blue_green(&input, bg),
            None => super::decide(&input),
        };
        self.restart(&ro.key(), &spec, &replica_sets, &mut decision, now)
            .await?;
        let ro = self
            .execute(ro, &spec, &canary, &hash, &replica_sets, &mut decision)
            .await?;
        self.write_status(&ro, &status, &decision.status).await?;
        for (reason, message, warning) in &decision.events {
            if *warning {
                tracing::warn!(rollout = %ro.key(), reason, "{message}");
            } else {
                tracing::info!(rollout = %ro.key(), reason, "{message}");
            }
            if let Err(e) = self
                .store
                .record_event(&ro.key(), ACTOR, reason, message)
                .await
            {
                tracing::warn!(object = %ro.key(), reason, error = %e, "cannot record an event");
            }
        }
        Ok(decision
            .requeue
            .map_or(Action::AwaitChange, Action::Requeue))
    }

    /// `spec.restartAt` (what `kubectl argo rollouts restart` writes): pods created before it
    /// are deleted one at a time, each only while every ReplicaSet is fully available, then
    /// `status.restartedAt` records it.
    async fn restart(
        &self,
        key: &Key,
        spec: &RolloutSpec,
        replica_sets: &[Object],
        d: &mut Decision,
        now: time::OffsetDateTime,
    ) -> Result<(), RolloutError> {
        let Some(at) = spec.restart_at.clone() else {
            return Ok(());
        };
        if d.status.restarted_at.as_deref() == Some(at.as_str()) {
            return Ok(());
        }
        let Some(t) = super::parse_time(&at) else {
            return Ok(());
        };
        if now < t {
            d.requeue = Some(super::until(now, t).max(Duration::from_millis(100)));
            return Ok(());
        }
        let pods: Vec<Object> = replica_sets
            .iter()
            .flat_map(|rs| shipway_runtime::workload::controlled_pods(&self.cache, rs))
            .collect();
        let mut old: Vec<&Object> = pods
            .iter()
            .filter(|p| !is_terminating(p))
            .filter(|p| {
                p.metadata
                    .creation_timestamp
                    .as_deref()
                    .and_then(super::parse_time)
                    .is_some_and(|c| c < t)
            })
            .collect();
        if old.is_empty() {
            d.status.restarted_at = Some(at);
            let (p, m) = super::phase(spec, &d.status);
            d.status.phase = Some(p);
            d.status.message = Some(m);
            return Ok(());
        }
        let settled = pods.iter().all(|p| !is_terminating(p))
            && replica_sets.iter().all(|rs| {
                let s = set_of(rs);
                s.available >= s.replicas
            });
        if settled {
            old.sort_by_key(|p| p.metadata.creation_timestamp.clone());
            let pod = old[0];
            match self.store.delete(&pod.key(), ACTOR).await {
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            d.events.push((
                "RestartingPod".into(),
                format!("Restarting pod {} of {key}", pod.metadata.name),
                false,
            ));
        }
        d.requeue = Some(
            d.requeue
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1)),
        );
        Ok(())
    }

    async fn invalid(
        &self,
        ro: &Object,
        old: &RolloutStatus,
        st: RolloutStatus,
        message: &str,
    ) -> Result<Action, RolloutError> {
        let changed = old.conditions != st.conditions;
        self.write_status(ro, old, &st).await?;
        if changed {
            let _ = self
                .store
                .record_event(&ro.key(), ACTOR, "InvalidSpec", message)
                .await;
        }
        // A referenced object may appear later; the watches wake the Rollout for those.
        Ok(Action::AwaitChange)
    }

    fn replica_sets(&self, ro: &Object) -> Vec<Object> {
        let ns = ro.metadata.namespace.as_deref().unwrap_or_default();
        self.cache
            .list(&REPLICA_SET, Some(ns))
            .iter()
            .filter(|rs| is_controlled_by(rs, ro) && !is_terminating(rs))
            .map(|rs| (**rs).clone())
            .collect()
    }

    /// What Argo checks against other objects (`ValidateRolloutReferencedResources` and the
    /// analysis templates), with its messages: Services, templates, and (Shipway's addition)
    /// the templates' conditions compile.
    fn check_references(&self, ro: &Object, spec: &RolloutSpec) -> Result<(), String> {
        let name = &ro.metadata.name;
        let ns = ro.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(bg) = &spec.strategy.blue_green {
            for (field, service) in [
                ("activeService", &bg.active_service),
                ("previewService", &bg.preview_service),
            ] {
                if let Some(s) = service
                    && self.cache.get(&SERVICE.key(ns, s)).is_none()
                {
                    return Err(super::invalid(
                        name,
                        &format!("spec.strategy.blueGreen.{field}"),
                        s,
                        &format!("service {s:?} not found"),
                    ));
                }
            }
            for (field, a) in [
                ("prePromotionAnalysis", &bg.pre_promotion_analysis),
                ("postPromotionAnalysis", &bg.post_promotion_analysis),
            ] {
                if let Some(a) = a {
                    self.templates(ro, a, &format!("spec.strategy.blueGreen.{field}.templates"))?;
                }
            }
            return Ok(());
        }
        let Some(c) = &spec.strategy.canary else {
            return Ok(());
        };
        for (field, service) in [
            ("canaryService", &c.canary_service),
            ("stableService", &c.stable_service),
        ] {
            if let Some(s) = service
                && self.cache.get(&SERVICE.key(ns, s)).is_none()
            {
                return Err(super::invalid(
                    name,
                    &format!("spec.strategy.canary.{field}"),
                    s,
                    &format!("service {s:?} not found"),
                ));
            }
        }
        for (i, step) in c.steps().iter().enumerate() {
            if let Some(a) = &step.analysis {
                let path = format!("spec.strategy.canary.steps[{i}].analysis.templates");
                self.templates(ro, a, &path)?;
            }
        }
        if let Some(a) = &c.analysis {
            self.templates(ro, a, "spec.strategy.canary.analysis.templates")?;
        }
        Ok(())
    }

    /// The templates `analysis` names, checked: present, mergeable, conditions that compile.
    fn templates(
        &self,
        ro: &Object,
        analysis: &RolloutAnalysis,
        path: &str,
    ) -> Result<Vec<AnalysisTemplateSpec>, String> {
        let name = &ro.metadata.name;
        let ns = ro.metadata.namespace.as_deref().unwrap_or_default();
        let mut out = Vec::new();
        for t in &analysis.templates {
            let cluster = t.cluster_scope == Some(true);
            let key = if cluster {
                CLUSTER_TEMPLATE.key("", &t.template_name)
            } else {
                TEMPLATE.key(ns, &t.template_name)
            };
            let Some(obj) = self.cache.get(&key) else {
                let kind = if cluster {
                    "ClusterAnalysisTemplate"
                } else {
                    "AnalysisTemplate"
                };
                return Err(super::invalid(
                    name,
                    path,
                    &t.template_name,
                    &format!("{kind} '{}' not found", t.template_name),
                ));
            };
            let spec: AnalysisTemplateSpec = obj
                .spec_as()
                .map_err(|e| super::invalid(name, path, &t.template_name, &e.source.to_string()))?;
            out.push(spec);
        }
        let names: Vec<&str> = analysis
            .templates
            .iter()
            .map(|t| t.template_name.as_str())
            .collect();
        let shown = format!("templateNames: [{}]", names.join(" "));
        let refs: Vec<&AnalysisTemplateSpec> = out.iter().collect();
        let args = resolve_args(&analysis.args, ro, "", "", true);
        let run = crate::analysis::template::run_spec(
            &refs,
            &args,
            &analysis.dry_run,
            &analysis.measurement_retention,
        )
        .map_err(|e| super::invalid(name, path, &shown, &e))?;
        for (i, m) in run.metrics.iter().enumerate() {
            shipway_expr::exprlang::Conditions::compile(
                m.success_condition.as_deref(),
                m.failure_condition.as_deref(),
            )
            .map_err(|e| super::invalid(name, path, &shown, &format!("metrics[{i}]: {e}")))?;
        }
        crate::analysis::validate(&run.metrics)
            .map_err(|e| super::invalid(name, path, &shown, &e))?;
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        ro: &Object,
        spec: &RolloutSpec,
        canary: &CanaryStrategy,
        hash: &str,
        replica_sets: &[Object],
        d: &mut Decision,
    ) -> Result<Object, RolloutError> {
        let mut sets: BTreeMap<String, Object> = replica_sets
            .iter()
            .map(|rs| (rs.metadata.name.clone(), rs.clone()))
            .collect();
        let mut ro = ro.clone();
        let revision;
        // The new revision first: scale-ups before traffic moves to them.
        if let Some((name, rev)) = &d.set_revision
            && let Some(mut rs) = sets.get(name).cloned()
        {
            rs.metadata
                .annotations
                .insert(REVISION.into(), rev.to_string());
            sets.insert(name.clone(), self.store.update(rs, ACTOR).await?);
        }
        if let Some((rev, replicas)) = d.create {
            let rs = self
                .create_replica_set(&ro, spec, hash, rev, replicas)
                .await?;
            if replicas > 0 {
                d.events.push((
                    "ScalingReplicaSet".into(),
                    format!(
                        "Scaled up ReplicaSet {} (revision {rev}) from 0 to {replicas}",
                        rs.metadata.name
                    ),
                    false,
                ));
            }
            sets.insert(rs.metadata.name.clone(), rs);
            revision = rev;
        } else {
            revision = sets
                .values()
                .find(|rs| {
                    rs.metadata
                        .labels
                        .get(POD_TEMPLATE_HASH)
                        .map(String::as_str)
                        == Some(hash)
                })
                .and_then(|rs| rs.metadata.annotations.get(REVISION))
                .and_then(|r| r.parse().ok())
                .unwrap_or(1);
        }
        let (ups, downs): (Vec<_>, Vec<_>) = d.scale.iter().cloned().partition(|(name, to)| {
            sets.get(name)
                .and_then(|rs| rs.spec_as::<ReplicaSetSpec>().ok())
                .is_none_or(|s| s.replicas.unwrap_or(0) <= *to)
        });
        for (name, to) in ups {
            self.scale(&mut sets, &name, to, d).await?;
        }
        // The Rollout's own revision annotation, as Argo keeps it.
        if ro.metadata.annotations.get(REVISION) != Some(&revision.to_string()) {
            ro.metadata
                .annotations
                .insert(REVISION.into(), revision.to_string());
            ro = self.store.update(ro, ACTOR).await?;
        }
        let promoted = d.status.stable_rs.as_deref() == Some(hash);
        let canary_hash = if promoted {
            d.status.stable_rs.clone().unwrap_or_default()
        } else {
            hash.to_string()
        };
        let stable_hash = d.status.stable_rs.clone().unwrap_or_default();
        if let Some(t) = &d.traffic {
            self.write_policy(&ro, canary, t).await?;
        }
        // A policy this Rollout wrote and no longer routes with (trafficRouting removed, another
        // stableService, blue-green now) goes, or it would keep splitting the Service.
        let keep = d.traffic.as_ref().and(canary.stable_service.as_deref());
        let uid = ro.metadata.uid.clone().unwrap_or_default();
        for p in self.cache.owned_by(&uid).iter().filter(|o| POLICY.is(o)) {
            if Some(p.metadata.name.as_str()) != keep {
                match self.store.delete(&p.key(), ACTOR).await {
                    Ok(_) | Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.services(&ro, canary, &stable_hash, &canary_hash)
            .await?;
        // Blue-green: the active Service's selector first, one write each.
        for (service, h) in d.services.clone() {
            self.select(&ro, &service, Some(&h)).await?;
        }
        for (name, deadline) in &d.deadlines {
            if let Some(mut rs) = sets.get(name).cloned() {
                match deadline {
                    Some(t) => rs.metadata.annotations.insert(
                        SCALE_DOWN_DEADLINE.into(),
                        shipway_controller::clock::format_timestamp(*t),
                    ),
                    None => rs.metadata.annotations.remove(SCALE_DOWN_DEADLINE),
                };
                sets.insert(name.clone(), self.store.update(rs, ACTOR).await?);
            }
        }
        for (name, to) in downs {
            self.scale(&mut sets, &name, to, d).await?;
        }
        for name in &d.delete {
            if let Some(rs) = sets.get(name) {
                match self.store.delete(&rs.key(), ACTOR).await {
                    Ok(_) | Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for run in d.terminate_runs.clone() {
            let ns = ro.metadata.namespace.as_deref().unwrap_or_default();
            if let Some(obj) = self.cache.get(&ANALYSIS_RUN.key(ns, &run)) {
                let mut obj = (*obj).clone();
                if let Some(s) = obj.body.get_mut("spec").and_then(Value::as_object_mut)
                    && s.get("terminate") != Some(&Value::Bool(true))
                {
                    s.insert("terminate".into(), Value::Bool(true));
                    match self.store.update(obj, ACTOR).await {
                        Ok(_) | Err(StoreError::NotFound(_)) | Err(StoreError::Conflict { .. }) => {
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        if let Some(index) = d.start_experiment {
            let name = self
                .start_experiment(&ro, spec, index, hash, &stable_hash, revision, &sets)
                .await?;
            d.events.push((
                "ExperimentCreated".into(),
                format!("Created Experiment '{name}'"),
                false,
            ));
            d.status.canary_mut().current_experiment = Some(name);
        }
        // Argo's `cancelExperiments`: every Experiment of the Rollout but the current one stops.
        let keep = d.status.canary().current_experiment.clone();
        for ex in self
            .cache
            .owned_by(&uid)
            .iter()
            .filter(|o| EXPERIMENT.is(o))
        {
            if Some(&ex.metadata.name) == keep.as_ref() {
                continue;
            }
            let st: crate::experiment::ExperimentStatus = ex.status_as().unwrap_or_default();
            let told = ex.spec().and_then(|s| s.get("terminate")) == Some(&Value::Bool(true));
            if told || crate::experiment::completed(&st.phase) {
                continue;
            }
            let mut ex = (**ex).clone();
            if let Some(s) = ex.body.get_mut("spec").and_then(Value::as_object_mut) {
                s.insert("terminate".into(), Value::Bool(true));
                match self.store.update(ex, ACTOR).await {
                    Ok(_) | Err(StoreError::NotFound(_)) | Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for start in d.start_runs.clone() {
            let name = self
                .start_run(&ro, spec, &start, hash, &stable_hash, revision)
                .await?;
            let recorded = Some(shipway_model::types::rollout::RolloutAnalysisRunStatus {
                name,
                ..Default::default()
            });
            match start {
                StartRun::Step(_) => {
                    d.status.canary_mut().current_step_analysis_run_status = recorded
                }
                StartRun::Background => {
                    d.status.canary_mut().current_background_analysis_run_status = recorded
                }
                StartRun::PrePromotion | StartRun::PostPromotion => {
                    if let Some(r) = recorded {
                        super::bluegreen::record_run(&mut d.status, &start, r);
                    }
                }
            }
        }
        Ok(ro)
    }

    async fn scale(
        &self,
        sets: &mut BTreeMap<String, Object>,
        name: &str,
        to: i64,
        d: &mut Decision,
    ) -> Result<(), RolloutError> {
        let Some(mut rs) = sets.get(name).cloned() else {
            return Ok(());
        };
        let mut rs_spec: ReplicaSetSpec = rs
            .spec_as()
            .map_err(|e| RolloutError::Other(e.to_string()))?;
        let from = rs_spec.replicas.unwrap_or(0);
        if from == to {
            return Ok(());
        }
        rs_spec.replicas = Some(to);
        rs.set_spec(&rs_spec);
        if to == 0 {
            rs.metadata.annotations.remove(SCALE_DOWN_DEADLINE);
        }
        let rev = rs
            .metadata
            .annotations
            .get(REVISION)
            .cloned()
            .unwrap_or_default();
        sets.insert(name.to_string(), self.store.update(rs, ACTOR).await?);
        let way = if to > from { "up" } else { "down" };
        d.events.push((
            "ScalingReplicaSet".into(),
            format!("Scaled {way} ReplicaSet {name} (revision {rev}) from {from} to {to}"),
            false,
        ));
        Ok(())
    }

    async fn create_replica_set(
        &self,
        ro: &Object,
        spec: &RolloutSpec,
        hash: &str,
        revision: i64,
        replicas: i64,
    ) -> Result<Object, RolloutError> {
        let rs = NewReplicaSet {
            owner: ro,
            name: format!("{}-{hash}", ro.metadata.name),
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
            Err(StoreError::AlreadyExists(key)) => Err(RolloutError::Other(format!(
                "{key} exists but is not controlled by {}; rename or delete it",
                ro.key()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The stable Service's TrafficPolicy: backends `stable` and `canary` by hash, the weights,
    /// header routes and mirror, in one apply (one atomic change in the proxy). Written only
    /// when it differs.
    async fn write_policy(
        &self,
        ro: &Object,
        canary: &CanaryStrategy,
        t: &Traffic,
    ) -> Result<(), RolloutError> {
        let Some(service) = &canary.stable_service else {
            return Ok(());
        };
        let ns = ro.metadata.namespace.clone();
        let backend = |name: &str, hash: &str, weight: i64| json!({"name": name, "selector": {"matchLabels": {POD_TEMPLATE_HASH: hash}}, "weight": weight});
        let mut spec = json!({
            "backends": [
                backend("stable", &t.stable_hash, 100 - t.canary_weight),
                backend("canary", &t.canary_hash, t.canary_weight),
            ],
        });
        let routes: Vec<Value> = t
            .header_routes
            .iter()
            .map(|r| {
                let headers: Vec<Value> = r
                    .match_
                    .iter()
                    .map(|m| {
                        let mut h = json!({"name": m.header_name});
                        let v = &m.header_value;
                        for (k, x) in [
                            ("exact", &v.exact),
                            ("prefix", &v.prefix),
                            ("regex", &v.regex),
                        ] {
                            if let Some(x) = x {
                                h[k] = json!(x);
                            }
                        }
                        h
                    })
                    .collect();
                json!({"name": r.name, "match": {"headers": headers}, "backend": "canary"})
            })
            .collect();
        if !routes.is_empty() {
            spec["routes"] = Value::Array(routes);
        }
        if let Some((_, percent)) = &t.mirror {
            spec["mirror"] = json!({"backend": "canary", "percent": percent});
        }
        let router = canary
            .traffic_routing
            .as_ref()
            .map(|r| r.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        let key = POLICY.key(ns.as_deref().unwrap_or_default(), service);
        let current = self.cache.get(&key);
        if let Some(c) = &current {
            if c.spec() == Some(&spec) && c.metadata.annotations.get(ROUTER) == Some(&router) {
                return Ok(());
            }
            if !is_controlled_by(c, ro) && !c.metadata.owner_references.is_empty() {
                return Err(RolloutError::Other(format!(
                    "{key} is controlled by another owner; {} cannot route {service}",
                    ro.key()
                )));
            }
        }
        let mut annotations = current
            .as_ref()
            .map(|c| c.metadata.annotations.clone())
            .unwrap_or_default();
        annotations.insert(ROUTER.into(), router);
        annotations.insert(MANAGED_BY.into(), ro.metadata.name.clone());
        let policy: Object = Object {
            api_version: "shipway.dev/v1alpha1".into(),
            kind: "TrafficPolicy".into(),
            metadata: ObjectMeta {
                name: service.clone(),
                namespace: ns,
                labels: current
                    .as_ref()
                    .map(|c| c.metadata.labels.clone())
                    .unwrap_or_default(),
                annotations,
                owner_references: vec![controller_ref(ro)],
                ..ObjectMeta::default()
            },
            body: [("spec".to_string(), spec)].into_iter().collect(),
        };
        self.store.apply(policy, ACTOR).await?;
        Ok(())
    }

    /// Selectors: with traffic routing the stable Service keeps matching both revisions (the
    /// policy's backends split it) and the canary Service selects the canary's hash; without,
    /// as Argo: the stable Service selects the stable hash, the canary Service the canary's.
    async fn services(
        &self,
        ro: &Object,
        canary: &CanaryStrategy,
        stable_hash: &str,
        canary_hash: &str,
    ) -> Result<(), RolloutError> {
        let routed = super::proxy_routed(canary);
        let mut wanted = Vec::new();
        if let Some(s) = &canary.canary_service {
            wanted.push((s, Some(canary_hash)));
        }
        if let Some(s) = &canary.stable_service {
            wanted.push((s, (!routed).then_some(stable_hash)));
        }
        for (name, hash) in wanted {
            self.select(ro, name, hash).await?;
        }
        Ok(())
    }

    /// Sets (or with `None` removes) the hash in a Service's selector, in one write.
    async fn select(
        &self,
        ro: &Object,
        name: &str,
        hash: Option<&str>,
    ) -> Result<(), RolloutError> {
        let ns = ro.metadata.namespace.as_deref().unwrap_or_default();
        let Some(svc) = self.cache.get(&SERVICE.key(ns, name)) else {
            return Ok(());
        };
        let mut svc = (*svc).clone();
        let mut spec: ServiceSpec = svc
            .spec_as()
            .map_err(|e| RolloutError::Other(e.to_string()))?;
        let selector = spec.selector.get_or_insert_with(BTreeMap::new);
        let before = selector.get(POD_TEMPLATE_HASH).cloned();
        match hash {
            Some(h) => {
                selector.insert(POD_TEMPLATE_HASH.into(), h.to_string());
            }
            None => {
                selector.remove(POD_TEMPLATE_HASH);
            }
        }
        let managed = svc.metadata.annotations.get(MANAGED_BY) == Some(&ro.metadata.name);
        if before.as_deref() == hash && (managed || hash.is_none()) {
            return Ok(());
        }
        svc.metadata
            .annotations
            .insert(MANAGED_BY.into(), ro.metadata.name.clone());
        svc.set_spec(&spec);
        self.store.update(svc, ACTOR).await?;
        Ok(())
    }

    /// Creates (or adopts, after a lost status write) the AnalysisRun `start` asks for, named
    /// as Argo names it (`<rollout>-<hash>-<revision>[-<step>]`, `.N` on a collision).
    async fn start_run(
        &self,
        ro: &Object,
        spec: &RolloutSpec,
        start: &StartRun,
        hash: &str,
        stable_hash: &str,
        revision: i64,
    ) -> Result<String, RolloutError> {
        let ns = ro.metadata.namespace.as_deref().unwrap_or_default();
        let canary = spec.strategy.canary.clone().unwrap_or_default();
        let bg = spec.strategy.blue_green.clone().unwrap_or_default();
        let (analysis, kind, index, path) = match start {
            StartRun::PrePromotion => (
                bg.pre_promotion_analysis.clone().unwrap_or_default(),
                "PrePromotion",
                None,
                "spec.strategy.blueGreen.prePromotionAnalysis.templates".to_string(),
            ),
            StartRun::PostPromotion => (
                bg.post_promotion_analysis.clone().unwrap_or_default(),
                "PostPromotion",
                None,
                "spec.strategy.blueGreen.postPromotionAnalysis.templates".to_string(),
            ),
            StartRun::Step(i) => (
                canary.steps()[*i].analysis.clone().unwrap_or_default(),
                "Step",
                Some(*i),
                format!("spec.strategy.canary.steps[{i}].analysis.templates"),
            ),
            StartRun::Background => (
                canary.analysis.clone().unwrap_or_default(),
                "Background",
                None,
                "spec.strategy.canary.analysis.templates".to_string(),
            ),
        };
        let mut labels: BTreeMap<String, String> = [
            (POD_TEMPLATE_HASH.to_string(), hash.to_string()),
            ("rollout-type".to_string(), kind.to_string()),
        ]
        .into();
        if let Some(i) = index {
            labels.insert("step-index".into(), i.to_string());
        }
        // Adopt a run this pass already made when its status write was lost.
        let uid = ro.metadata.uid.clone().unwrap_or_default();
        if let Some(existing) = self.cache.owned_by(&uid).iter().find(|o| {
            ANALYSIS_RUN.is(o)
                && labels
                    .iter()
                    .all(|(k, v)| o.metadata.labels.get(k) == Some(v))
                && !o
                    .status_as::<AnalysisRunStatus>()
                    .map(|s| crate::analysis::Phase::parse(&s.phase).is_some_and(|p| p.completed()))
                    .unwrap_or(false)
                && o.spec().and_then(|s| s.get("terminate")) != Some(&Value::Bool(true))
        }) {
            return Ok(existing.metadata.name.clone());
        }
        let templates = self
            .templates(ro, &analysis, &path)
            .map_err(RolloutError::Other)?;
        let refs: Vec<&AnalysisTemplateSpec> = templates.iter().collect();
        let args = resolve_args(&analysis.args, ro, stable_hash, hash, false);
        let run_spec = crate::analysis::template::run_spec(
            &refs,
            &args,
            &analysis.dry_run,
            &analysis.measurement_retention,
        )
        .map_err(RolloutError::Other)?;
        if let Some(sel) = spec.selector.clone() {
            for (k, v) in sel.match_labels {
                labels.entry(k).or_insert(v);
            }
        }
        let mut base = format!("{}-{hash}-{revision}", ro.metadata.name);
        if let Some(i) = index {
            base.push_str(&format!("-{i}"));
        }
        match start {
            StartRun::PrePromotion => base.push_str("-pre"),
            StartRun::PostPromotion => base.push_str("-post"),
            _ => {}
        }
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
                    labels: labels.clone(),
                    annotations: [(REVISION.to_string(), revision.to_string())].into(),
                    owner_references: vec![controller_ref(ro)],
                    ..ObjectMeta::default()
                },
                body: serde_json::Map::new(),
            };
            run.set_spec(&run_spec);
            match self.store.create(run, ACTOR).await {
                Ok(_) => {
                    tracing::info!(rollout = %ro.key(), run = %name, "created an AnalysisRun");
                    return Ok(name);
                }
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(RolloutError::Other(format!(
            "{}: no free AnalysisRun name after {base}.99",
            ro.key()
        )))
    }

    /// Creates (or adopts, after a lost status write) the Experiment of the step at `index`:
    /// `<rollout>-<hash>-<revision>-<index>`, `-N` on a collision with one that is not this
    /// Rollout's running one, as Argo's `createExperimentWithCollisionHandling`.
    #[allow(clippy::too_many_arguments)]
    async fn start_experiment(
        &self,
        ro: &Object,
        spec: &RolloutSpec,
        index: usize,
        hash: &str,
        stable_hash: &str,
        revision: i64,
        sets: &BTreeMap<String, Object>,
    ) -> Result<String, RolloutError> {
        let canary = spec.strategy.canary.clone().unwrap_or_default();
        let raw = canary.steps()[index]
            .experiment
            .clone()
            .unwrap_or(Value::Null);
        let mut step = crate::experiment::step::parse(&raw).map_err(RolloutError::Other)?;
        for a in &mut step.analyses {
            a.args = resolve_args(&a.args, ro, stable_hash, hash, false);
        }
        let by_hash = |h: &str| {
            sets.values().find(|rs| {
                rs.metadata
                    .labels
                    .get(POD_TEMPLATE_HASH)
                    .map(String::as_str)
                    == Some(h)
            })
        };
        let (Some(stable_rs), Some(canary_rs)) = (by_hash(stable_hash), by_hash(hash)) else {
            return Err(RolloutError::Other(format!(
                "{}: the stable and canary ReplicaSets must exist before the experiment step",
                ro.key()
            )));
        };
        let ex = crate::experiment::step::experiment(
            ro,
            &step,
            index,
            hash,
            revision,
            spec.progress_deadline_seconds,
            stable_rs,
            canary_rs,
        )
        .map_err(RolloutError::Other)?;
        let base = ex.metadata.name.clone();
        for attempt in 0..100 {
            let mut ex = ex.clone();
            if attempt > 0 {
                ex.metadata.name = format!("{base}-{attempt}");
            }
            let name = ex.metadata.name.clone();
            match self.store.create(ex.clone(), ACTOR).await {
                Ok(_) => return Ok(name),
                Err(StoreError::AlreadyExists(key)) => {
                    if let Some(existing) = self.store.get(&key).await? {
                        let st: crate::experiment::ExperimentStatus =
                            existing.status_as().unwrap_or_default();
                        let same = existing.spec().is_some_and(|s| Some(s) == ex.spec());
                        if is_controlled_by(&existing, ro)
                            && same
                            && !crate::experiment::completed(&st.phase)
                        {
                            return Ok(name);
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(RolloutError::Other(format!(
            "{}: no free Experiment name after {base}-99",
            ro.key()
        )))
    }

    async fn write_status(
        &self,
        ro: &Object,
        old: &RolloutStatus,
        st: &RolloutStatus,
    ) -> Result<(), RolloutError> {
        if ro.status().is_some() && old == st {
            return Ok(());
        }
        let mut updated = ro.clone();
        updated.set_status(st);
        self.store.update_status(updated, ACTOR).await?;
        Ok(())
    }
}

fn set_of(rs: &Object) -> Set {
    let spec: ReplicaSetSpec = rs.spec_as().unwrap_or_default();
    let status: ReplicaSetStatus = rs.status_as().unwrap_or_default();
    Set {
        name: rs.metadata.name.clone(),
        hash: rs
            .metadata
            .labels
            .get(POD_TEMPLATE_HASH)
            .cloned()
            .unwrap_or_default(),
        revision: rs
            .metadata
            .annotations
            .get(REVISION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        replicas: spec.replicas.unwrap_or(0),
        status_replicas: status.replicas,
        ready: status.ready_replicas.unwrap_or(0),
        available: status.available_replicas.unwrap_or(0),
        scale_down_deadline: rs
            .metadata
            .annotations
            .get(SCALE_DOWN_DEADLINE)
            .and_then(|t| super::parse_time(t)),
    }
}

/// A Rollout's analysis arguments with what only the Rollout knows filled in, as Argo's
/// `BuildArgumentsForRolloutAnalysisRun`: `valueFrom.podTemplateHashValue` (`Stable` or
/// `Latest`) and `valueFrom.fieldRef` on the Rollout's metadata become values. `checking`
/// puts placeholders where the hashes are not known yet.
pub(crate) fn resolve_args(
    args: &[Argument],
    ro: &Object,
    stable_hash: &str,
    latest_hash: &str,
    checking: bool,
) -> Vec<Argument> {
    args.iter()
        .map(|a| {
            let mut a = a.clone();
            if a.value.is_some() {
                return a;
            }
            let Some(from) = &a.value_from else {
                return a;
            };
            if let Some(which) = from
                .rest
                .get("podTemplateHashValue")
                .and_then(Value::as_str)
            {
                let v = match which {
                    "Stable" => stable_hash,
                    _ => latest_hash,
                };
                a.value = Some(if checking {
                    "hash".into()
                } else {
                    v.to_string()
                });
                a.value_from = None;
            } else if let Some(f) = &from.field_ref
                && let Some(v) = metadata_field(ro, &f.field_path)
            {
                a.value = Some(v);
                a.value_from = None;
            }
            a
        })
        .collect()
}

fn metadata_field(ro: &Object, path: &str) -> Option<String> {
    let m = &ro.metadata;
    let inside = |prefix: &str| {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_string)
    };
    match path {
        "metadata.name" => Some(m.name.clone()),
        "metadata.namespace" => m.namespace.clone(),
        "metadata.uid" => m.uid.clone(),
        _ => {
            if let Some(k) = inside("metadata.labels['") {
                return m.labels.get(&k).cloned();
            }
            if let Some(k) = inside("metadata.annotations['") {
                return m.annotations.get(&k).cloned();
            }
            let v = ro.to_json();
            let mut cur = &v;
            for part in path.split('.') {
                cur = cur.get(part)?;
            }
            Some(match cur {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        }
    }
}
