//! Argo Rollouts' `Rollout` (canary strategy) as pure decisions: [`validate`] (Argo's
//! InvalidSpec messages), [`unsupported`] (fields Shipway does not implement, named),
//! [`decide`] (one pass of Argo's canary reconcile: steps, pauses, analysis outcomes, abort,
//! retry, promote, weights and replica counts, conditions) and [`phase`] (Argo's
//! `CalculateRolloutPhase`). [`controller`] reads the store, calls them and carries out the
//! [`Decision`].
//!
//! The user's intents arrive as Argo's CLI writes them, and [`decide`] reads exactly these:
//! promote = `status.pauseConditions` emptied while `status.controllerPause` is true (and
//! `spec.paused: false`); promote --full = `status.promoteFull: true`; abort =
//! `status.abort: true`; retry = `status.abort` false again after an abort (`abortedAt` set);
//! pause = `spec.paused: true`; restart = `spec.restartAt`; undo = the template set back to an
//! older revision's (a fast rollback when it is the stable one).

pub mod bluegreen;
pub mod controller;

use std::time::Duration;

use shipway_model::types::condition::Condition;
use shipway_model::types::rollout::{
    CanaryStep, CanaryStrategy, PauseCondition, RolloutAnalysisRunStatus, RolloutSpec,
    RolloutStatus, TrafficWeights, WeightDestination,
};
use time::OffsetDateTime;

/// The label tying a ReplicaSet, its pods and its AnalysisRuns to one pod template.
pub const POD_TEMPLATE_HASH: &str = "rollouts-pod-template-hash";
/// A ReplicaSet's (and the Rollout's) revision.
pub const REVISION: &str = "rollout.argoproj.io/revision";
/// When an old ReplicaSet is scaled down (RFC 3339), as Argo annotates it.
pub const SCALE_DOWN_DEADLINE: &str = "scale-down-deadline";
/// Services and TrafficPolicies the controller writes name their Rollout here.
pub const MANAGED_BY: &str = "argo-rollouts.argoproj.io/managed-by-rollouts";
/// Which router the Rollout named (nginx, istio, ...): Shipway's proxy serves them all.
pub const ROUTER: &str = "rollouts.shipway.dev/traffic-router";

pub const CANARY_PAUSE_STEP: &str = "CanaryPauseStep";
pub const INCONCLUSIVE: &str = "InconclusiveAnalysisRun";
pub const INCONCLUSIVE_EXPERIMENT: &str = "InconclusiveExperiment";

/// Argo's defaults.
pub const DEFAULT_PROGRESS_DEADLINE: i64 = 600;
pub const DEFAULT_ABORT_SCALE_DOWN_DELAY: i64 = 30;
pub const DEFAULT_SCALE_DOWN_DELAY: i64 = 30;

/// `v` with every object's keys sorted, so a template hashes the same however its keys are
/// ordered: `undo` writes a ReplicaSet's template (in the typed view's field order) back into
/// the Rollout, and must land on that ReplicaSet's hash.
pub fn canonical(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            serde_json::Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k])))
                    .collect(),
            )
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// `field.Invalid(path, value, message)` as Argo words it, inside its InvalidSpec message.
pub fn invalid(rollout: &str, path: &str, value: &str, message: &str) -> String {
    format!("The Rollout \"{rollout}\" is invalid: {path}: Invalid value: {value:?}: {message}")
}

fn required(rollout: &str, path: &str, message: &str) -> String {
    format!("The Rollout \"{rollout}\" is invalid: {path}: Required value: {message}")
}

/// The annotation naming an AWS CodeDeploy deployment configuration as a canary's steps
/// (`Canary10Percent5Minutes`, `Linear10PercentEvery1Minute`, `AllAtOnce`), for users who know
/// those names; `spec.strategy.canary.steps` must then be left out.
pub const STEPS_PRESET: &str = "rollouts.shipway.dev/steps-preset";

/// The steps of a CodeDeploy preset, as CodeDeploy shifts traffic: `Canary{P}Percent{M}Minutes`
/// is P % for M minutes then all; `Linear{P}PercentEvery{M}Minute(s)` adds P % every M minutes;
/// `AllAtOnce` is no steps (straight to the new version). The `CodeDeployDefault.` prefix and
/// the `ECS`/`Lambda` platform word are accepted and ignored.
pub fn preset_steps(preset: &str) -> Result<Vec<CanaryStep>, String> {
    let name = preset.trim();
    let name = name.strip_prefix("CodeDeployDefault.").unwrap_or(name);
    let name = name
        .strip_prefix("ECS")
        .or_else(|| name.strip_prefix("Lambda"))
        .unwrap_or(name);
    let weight = |w: i64| CanaryStep {
        set_weight: Some(w),
        ..CanaryStep::default()
    };
    let pause = |minutes: i64| CanaryStep {
        pause: Some(shipway_model::types::rollout::RolloutPause {
            duration: Some(shipway_model::types::IntOrString::String(format!(
                "{minutes}m"
            ))),
            ..Default::default()
        }),
        ..CanaryStep::default()
    };
    let number = |s: &str| s.parse::<i64>().ok().filter(|n| *n > 0);
    let bad = || {
        format!(
            "unknown CodeDeploy preset {preset:?}: expected Canary<P>Percent<M>Minutes, \
             Linear<P>PercentEvery<M>Minute(s) or AllAtOnce"
        )
    };
    if name == "AllAtOnce" {
        return Ok(Vec::new());
    }
    if let Some(rest) = name.strip_prefix("Canary") {
        let (p, m) = rest.split_once("Percent").ok_or_else(bad)?;
        let m = m
            .strip_suffix("Minutes")
            .or_else(|| m.strip_suffix("Minute"));
        let (Some(p), Some(m)) = (number(p), m.and_then(number)) else {
            return Err(bad());
        };
        if p >= 100 {
            return Err(bad());
        }
        return Ok(vec![weight(p), pause(m)]);
    }
    if let Some(rest) = name.strip_prefix("Linear") {
        let (p, m) = rest.split_once("PercentEvery").ok_or_else(bad)?;
        let m = m
            .strip_suffix("Minutes")
            .or_else(|| m.strip_suffix("Minute"));
        let (Some(p), Some(m)) = (number(p), m.and_then(number)) else {
            return Err(bad());
        };
        if p >= 100 {
            return Err(bad());
        }
        let mut steps = Vec::new();
        let mut w = p;
        while w < 100 {
            steps.push(weight(w));
            steps.push(pause(m));
            w += p;
        }
        return Ok(steps);
    }
    Err(bad())
}

/// Puts the steps of the [`STEPS_PRESET`] annotation into a canary that has none; an error (in
/// an InvalidSpec message) for an unknown preset, one given with steps, or one on blue-green.
pub fn apply_preset(
    name: &str,
    annotations: &std::collections::BTreeMap<String, String>,
    spec: &mut RolloutSpec,
) -> Result<(), String> {
    let Some(preset) = annotations.get(STEPS_PRESET) else {
        return Ok(());
    };
    let path = format!("metadata.annotations[{STEPS_PRESET}]");
    let Some(canary) = spec.strategy.canary.as_mut() else {
        return Err(invalid(
            name,
            &path,
            preset,
            "a steps preset needs the canary strategy",
        ));
    };
    if canary.steps.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(invalid(
            name,
            &path,
            preset,
            "give either spec.strategy.canary.steps or the preset, not both",
        ));
    }
    canary.steps = Some(preset_steps(preset).map_err(|e| invalid(name, &path, preset, &e))?);
    Ok(())
}

/// Argo's `ValidateRollout` checks that need no other object, in its order; the first problem
/// is the message (Argo reports the first).
pub fn validate(name: &str, spec: &RolloutSpec) -> Result<(), String> {
    let strategy = &spec.strategy;
    let selector = spec.selector.as_ref();
    if spec.workload_ref.is_none() {
        match selector {
            None => {
                return Err(required(
                    name,
                    "spec.selector",
                    "Rollout has missing field '.spec.selector'",
                ));
            }
            Some(s) if s.match_labels.is_empty() && s.match_expressions.is_empty() => {
                return Err(format!(
                    "The Rollout \"{name}\" is invalid: spec.selector: Invalid value: \"{{}}\": empty selector is invalid for deployment"
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(sel) = selector {
        let parsed = sel
            .to_selector()
            .map_err(|_| invalid(name, "spec.selector", "", "invalid label selector"))?;
        let labels = spec
            .template
            .as_ref()
            .map(|t| t.labels())
            .unwrap_or_default();
        if spec.workload_ref.is_none() && !parsed.matches(&labels) {
            let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
            return Err(format!(
                "The Rollout \"{name}\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{{{}}}: `selector` does not match template `labels`",
                shown.join(", ")
            ));
        }
    }
    let deadline = spec
        .progress_deadline_seconds
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE);
    if deadline <= spec.min_ready_seconds.unwrap_or(0) {
        return Err(format!(
            "The Rollout \"{name}\" is invalid: spec.progressDeadlineSeconds: Invalid value: {deadline}: must be greater than minReadySeconds"
        ));
    }
    match (&strategy.canary, &strategy.blue_green) {
        (None, None) => Err(required(
            name,
            "spec.strategy.strategy",
            "Rollout has missing field '.spec.strategy.canary or .spec.strategy.blueGreen'",
        )),
        (Some(_), Some(_)) => Err(invalid(
            name,
            "spec.strategy.strategy",
            "blueGreen: true canary: true",
            "Multiple Strategies can not be listed",
        )),
        (None, Some(bg)) => {
            if bg.active_service == bg.preview_service {
                return Err(invalid(
                    name,
                    "spec.strategy.activeService",
                    bg.active_service.as_deref().unwrap_or_default(),
                    "This rollout uses the same service for the active and preview services, but two different services are required.",
                ));
            }
            Ok(())
        }
        (Some(c), None) => validate_canary(name, c),
    }
}

/// Argo's `requireCanaryStableServices`: the routers that need both Services named.
fn requires_services(c: &CanaryStrategy) -> bool {
    let Some(r) = &c.traffic_routing else {
        return false;
    };
    let ping_pong = c.rest.contains_key("pingPong");
    let has = |k: &str| r.contains_key(k);
    (has("alb") && !ping_pong)
        || (has("istio") && r["istio"].get("destinationRule").is_none() && !ping_pong)
        || ["smi", "apisix", "ambassador", "nginx", "appMesh", "traefik"]
            .iter()
            .any(|k| has(k))
}

/// Whether Shipway's proxy splits the traffic: a router is named and there is a stable Service
/// to put the TrafficPolicy on. Without one (Istio subsets, ping-pong) weights follow replica
/// counts, which `unsupported` says.
pub fn proxy_routed(c: &CanaryStrategy) -> bool {
    c.traffic_routing.is_some() && c.stable_service.is_some()
}

fn validate_canary(name: &str, c: &CanaryStrategy) -> Result<(), String> {
    let zero = shipway_model::types::IntOrString::Int(0);
    if c.max_surge.as_ref() == Some(&zero) && c.max_unavailable.as_ref() == Some(&zero) {
        return Err(invalid(
            name,
            "spec.strategy.maxSurge",
            "0",
            "MaxSurge and MaxUnavailable both can not be zero",
        ));
    }
    if let (Some(canary), Some(stable)) = (&c.canary_service, &c.stable_service)
        && canary == stable
    {
        return Err(invalid(
            name,
            "spec.strategy.stableService",
            stable,
            "This rollout uses the same service for the stable and canary services, but two different services are required.",
        ));
    }
    let routed = c.traffic_routing.is_some();
    if requires_services(c) {
        for (field, service) in [
            ("stableService", &c.stable_service),
            ("canaryService", &c.canary_service),
        ] {
            if service.is_none() {
                return Err(invalid(
                    name,
                    &format!("spec.strategy.{field}"),
                    "",
                    "Canary service and Stable service must to be set to use Traffic Routing",
                ));
            }
        }
    }
    if !routed {
        if let Some(d) = c.scale_down_delay_seconds {
            return Err(invalid(
                name,
                "spec.strategy.scaleDownDelaySeconds",
                &d.to_string(),
                "Canary scaleDownDelaySeconds can only be used with traffic routing",
            ));
        }
        if c.dynamic_stable_scale == Some(true) {
            return Err(invalid(
                name,
                "spec.strategy.dynamicStableScale",
                "true",
                "Canary dynamicStableScale can only be used with traffic routing",
            ));
        }
    }
    for (i, step) in c.steps().iter().enumerate() {
        let path = format!("spec.strategy.canary.steps[{i}]");
        if let Some(e) = &step.experiment {
            crate::experiment::step::validate(name, e, i, c.traffic_routing.is_some())?;
        }
        // Argo's two rules: at most one of setWeight, pause, experiment and analysis; at
        // least one step type of any kind.
        let (e, p, w, a) = (
            step.experiment.is_some(),
            step.pause.is_some(),
            step.set_weight.is_some(),
            step.analysis.is_some(),
        );
        if [w, p, e, a].iter().filter(|b| **b).count() > 1 {
            return Err(invalid(
                name,
                &path,
                &format!(
                    "step.Experiment: {e} step.Pause: {p} step.SetWeight: {w} step.Analysis: {a}"
                ),
                "Step must have one of the following set: experiment, setWeight, setCanaryScale, plugin or pause",
            ));
        }
        let (scale, header, mirror, plugin) = (
            step.set_canary_scale.is_some(),
            step.set_header_route.is_some(),
            step.set_mirror_route.is_some(),
            step.rest.contains_key("plugin"),
        );
        if !(e || p || w || a || scale || header || mirror || plugin) {
            return Err(invalid(
                name,
                &path,
                "step.Experiment: true step.Pause: true step.SetWeight: true step.Analysis: true step.SetCanaryScale: true step.SetHeaderRoute: true step.SetMirrorRoute: true step.Plugin: true",
                "Step must have one of the following set: experiment, setWeight, setCanaryScale, plugin or pause",
            ));
        }
        if let Some(w) = step.set_weight
            && !(0..=100).contains(&w)
        {
            return Err(invalid(
                name,
                &format!("{path}.setWeight"),
                &w.to_string(),
                "SetWeight needs to be between 0 and 100",
            ));
        }
        if let Some(p) = &step.pause {
            match p.duration_seconds() {
                Some(Ok(d)) if d < 0 => {
                    return Err(invalid(
                        name,
                        &format!("{path}.pause.duration"),
                        &d.to_string(),
                        "Duration needs to be greater than 0",
                    ));
                }
                Some(Err(e)) => {
                    return Err(invalid(name, &format!("{path}.pause.duration"), "", &e));
                }
                _ => {}
            }
        }
        if step.set_canary_scale.is_some() && !routed {
            return Err(invalid(
                name,
                &format!("{path}.setCanaryScale"),
                "",
                "SetCanaryScale requires TrafficRouting to be set",
            ));
        }
        if step.set_header_route.is_some() && !routed {
            return Err(invalid(
                name,
                &format!("{path}.setHeaderRoute"),
                "",
                "SetHeaderRoute requires TrafficRouting, supports Istio and ALB and Apisix",
            ));
        }
        if let Some(h) = &step.set_header_route {
            for (j, m) in h.match_.iter().enumerate() {
                let v = &m.header_value;
                let n = [v.exact.is_some(), v.prefix.is_some(), v.regex.is_some()]
                    .iter()
                    .filter(|b| **b)
                    .count();
                if n != 1 {
                    let msg = if n == 0 {
                        "StringMatch value missed, match value must have one of the following: exact, regex, prefix"
                    } else {
                        "StringMatch match value must have exactly one of the following: exact, regex, prefix"
                    };
                    return Err(invalid(
                        name,
                        &format!("{path}.setHeaderRoute.match[{j}].headerValue"),
                        "",
                        msg,
                    ));
                }
            }
        }
        if step.set_mirror_route.is_some() && !routed {
            return Err(invalid(
                name,
                &format!("{path}.setMirrorRoute"),
                "",
                "SetMirrorRoute requires TrafficRouting, supports Istio and Plugins",
            ));
        }
    }
    Ok(())
}

/// The fields Shipway reads but does not act on (yet), by path; the controller names them in
/// a condition and an event instead of ignoring them silently.
pub fn unsupported(spec: &RolloutSpec) -> Vec<String> {
    let mut out = Vec::new();
    if spec.workload_ref.is_some() {
        out.push("spec.workloadRef".to_string());
    }
    if spec.rollback_window.is_some() {
        out.push("spec.rollbackWindow".to_string());
    }
    if let Some(bg) = &spec.strategy.blue_green {
        if bg.scale_down_delay_revision_limit.is_some() {
            out.push("spec.strategy.blueGreen.scaleDownDelayRevisionLimit".to_string());
        }
        for key in ["antiAffinity", "previewMetadata", "activeMetadata"] {
            if bg.rest.contains_key(key) {
                out.push(format!("spec.strategy.blueGreen.{key}"));
            }
        }
    }
    if let Some(c) = &spec.strategy.canary {
        if c.dynamic_stable_scale == Some(true) {
            out.push("spec.strategy.canary.dynamicStableScale".to_string());
        }
        if c.traffic_routing.is_some() && c.stable_service.is_none() {
            out.push(
                "spec.strategy.canary.trafficRouting (without a stableService Shipway's proxy has no Service to split; weights follow replica counts)"
                    .to_string(),
            );
        }
        for key in [
            "antiAffinity",
            "canaryMetadata",
            "stableMetadata",
            "pingPong",
            "minPodsPerReplicaSet",
        ] {
            if c.rest.contains_key(key) {
                out.push(format!("spec.strategy.canary.{key}"));
            }
        }
        for (i, s) in c.steps().iter().enumerate() {
            if let Some(e) = &s.experiment {
                out.extend(crate::experiment::step::unsupported(e, i));
            }
            if s.rest.contains_key("plugin") {
                out.push(format!("spec.strategy.canary.steps[{i}].plugin"));
            }
            // The proxy mirrors a share of all requests; it cannot pick them by method or path.
            if s.set_mirror_route
                .as_ref()
                .is_some_and(|m| !m.match_.is_empty())
            {
                out.push(format!(
                    "spec.strategy.canary.steps[{i}].setMirrorRoute.match"
                ));
            }
        }
    }
    out
}

/// Argo's `CanaryStepString`, for the `RolloutStepCompleted` event.
pub fn step_string(step: &CanaryStep) -> String {
    if let Some(w) = step.set_weight {
        return format!("setWeight: {w}");
    }
    if let Some(p) = &step.pause {
        return match &p.duration {
            None => "pause".to_string(),
            Some(d) => format!("pause: {}", int_or_string(d)),
        };
    }
    if step.analysis.is_some() {
        return "analysis".to_string();
    }
    if step.experiment.is_some() {
        return "experiment".to_string();
    }
    if let Some(s) = &step.set_canary_scale {
        if s.match_traffic_weight == Some(true) {
            return "setCanaryScale{matchTrafficWeight: true}".to_string();
        }
        if let Some(r) = s.replicas {
            return format!("setCanaryScale{{replicas: {r}}}");
        }
        if let Some(w) = s.weight {
            return format!("setCanaryScale{{weight: {w}}}");
        }
    }
    if step.set_header_route.is_some() {
        return "setHeaderRoute".to_string();
    }
    if step.set_mirror_route.is_some() {
        return "setMirrorRoute".to_string();
    }
    "invalid".to_string()
}

fn int_or_string(v: &shipway_model::types::IntOrString) -> String {
    match v {
        shipway_model::types::IntOrString::Int(n) => n.to_string(),
        shipway_model::types::IntOrString::String(s) => s.clone(),
    }
}

/// Argo's `CalculateRolloutPhase`: the phase and message for a spec and the status just
/// computed.
pub fn phase(spec: &RolloutSpec, status: &RolloutStatus) -> (String, String) {
    let out = |p: &str, m: &str| (p.to_string(), m.to_string());
    for c in &status.conditions {
        let message = c.message.as_deref().unwrap_or_default();
        if c.type_ == "InvalidSpec" {
            return out("Degraded", &format!("InvalidSpec: {message}"));
        }
        if let Some(r @ ("RolloutAborted" | "ProgressDeadlineExceeded")) = c.reason.as_deref() {
            return out("Degraded", &format!("{r}: {message}"));
        }
    }
    if spec.is_paused() {
        return out("Paused", "manually paused");
    }
    if let Some(p) = status.pause_conditions.first() {
        return out("Paused", &p.reason);
    }
    if spec.restart_at.is_some() && spec.restart_at != status.restarted_at {
        return out("Progressing", "rollout is restarting");
    }
    let updated = status.updated_replicas.unwrap_or(0);
    if updated < spec.replicas() {
        return out("Progressing", "more replicas need to be updated");
    }
    if status.available_replicas.unwrap_or(0) < updated {
        return out(
            "Progressing",
            "updated replicas are still becoming available",
        );
    }
    if spec.strategy.blue_green.is_some() {
        let bg = status.blue_green.clone().unwrap_or_default();
        if bg.active_selector.is_none() || bg.active_selector != status.current_pod_hash {
            return out("Progressing", "active service cutover pending");
        }
        if status.stable_rs.is_none() || status.stable_rs != status.current_pod_hash {
            let post = spec
                .strategy
                .blue_green
                .as_ref()
                .is_some_and(|b| b.post_promotion_analysis.is_some());
            let done = bg
                .post_promotion_analysis_run_status
                .as_ref()
                .is_some_and(|r| completed_phase(&r.status));
            if post && !done {
                return out("Progressing", "waiting for analysis to complete");
            }
            return out(
                "Progressing",
                "waiting for post-promotion verification to complete",
            );
        }
    } else if let Some(c) = &spec.strategy.canary {
        if c.traffic_routing.is_none() && status.replicas.unwrap_or(0) > updated {
            return out("Progressing", "old replicas are pending termination");
        }
        if status.stable_rs.is_none() || status.stable_rs != status.current_pod_hash {
            return out("Progressing", "waiting for all steps to complete");
        }
    }
    out("Healthy", "")
}

/// What [`decide`] needs of one of the Rollout's ReplicaSets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Set {
    pub name: String,
    pub hash: String,
    pub revision: i64,
    /// `spec.replicas`.
    pub replicas: i64,
    /// `status.replicas`, `readyReplicas`, `availableReplicas`.
    pub status_replicas: i64,
    pub ready: i64,
    pub available: i64,
    /// Its `scale-down-deadline` annotation.
    pub scale_down_deadline: Option<OffsetDateTime>,
}

/// An AnalysisRun the status names, as it is now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Run {
    pub name: String,
    pub phase: String,
    pub message: String,
}

pub struct Input<'a> {
    pub name: &'a str,
    pub generation: i64,
    pub spec: &'a RolloutSpec,
    pub canary: &'a CanaryStrategy,
    /// The stored status, with the user's writes.
    pub status: &'a RolloutStatus,
    /// The hash of the current pod template, and of the steps.
    pub hash: &'a str,
    pub step_hash: &'a str,
    pub sets: &'a [Set],
    /// The run `status.canary().currentStepAnalysisRunStatus` names, when it exists.
    pub step_run: Option<Run>,
    /// Likewise for `currentBackgroundAnalysisRunStatus`.
    pub background_run: Option<Run>,
    /// The Experiment `status.canary.currentExperiment` names, when it exists.
    pub step_experiment: Option<Run>,
    pub now: OffsetDateTime,
}

/// What to start: the controller builds the run from the templates and records its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartRun {
    Step(usize),
    Background,
    /// Blue-green's `prePromotionAnalysis` and `postPromotionAnalysis`.
    PrePromotion,
    PostPromotion,
}

/// The TrafficPolicy to write (traffic-routed canaries).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Traffic {
    pub stable_hash: String,
    pub canary_hash: String,
    /// Out of 100.
    pub canary_weight: i64,
    /// The header routes in force, in step order.
    pub header_routes: Vec<shipway_model::types::rollout::SetHeaderRoute>,
    pub mirror: Option<(String, i64)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub status: RolloutStatus,
    /// Create the current template's ReplicaSet at this revision with these replicas.
    pub create: Option<(i64, i64)>,
    /// An existing ReplicaSet of the current template becomes the newest revision (a rollback).
    pub set_revision: Option<(String, i64)>,
    /// `(name, replicas)`, scale-ups first.
    pub scale: Vec<(String, i64)>,
    /// `(name, deadline)`: set or (None) remove the scale-down deadline annotation.
    pub deadlines: Vec<(String, Option<OffsetDateTime>)>,
    pub delete: Vec<String>,
    pub traffic: Option<Traffic>,
    /// Blue-green: `(service, hash)` selectors to set, the active one first.
    pub services: Vec<(String, String)>,
    pub start_runs: Vec<StartRun>,
    /// Create the Experiment of the `experiment` step at this index.
    pub start_experiment: Option<usize>,
    /// Runs to stop (`spec.terminate`).
    pub terminate_runs: Vec<String>,
    /// (reason, message, warning).
    pub events: Vec<(String, String, bool)>,
    pub requeue: Option<Duration>,
}

impl Decision {
    fn event(&mut self, reason: &str, message: String, warning: bool) {
        self.events.push((reason.to_string(), message, warning));
    }

    fn requeue_in(&mut self, d: Duration) {
        let d = d.max(Duration::from_millis(100));
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }
}

fn completed_phase(p: &str) -> bool {
    matches!(p, "Successful" | "Failed" | "Error" | "Inconclusive")
}

fn run_status(run: &Run) -> RolloutAnalysisRunStatus {
    RolloutAnalysisRunStatus {
        name: run.name.clone(),
        status: run.phase.clone(),
        message: (!run.message.is_empty()).then(|| run.message.clone()),
        ..Default::default()
    }
}

fn ceil_share(replicas: i64, weight: i64) -> i64 {
    (replicas * weight + 99) / 100
}

/// Argo's `approximateWeightedCanaryStableReplicaCounts`: the canary and stable counts whose
/// ratio is nearest `weight`, allowing one surge replica when maxSurge permits.
pub fn basic_counts(replicas: i64, weight: i64, max_surge: i64) -> (i64, i64) {
    if replicas == 0 {
        return (0, 0);
    }
    let ceil = ceil_share(replicas, weight);
    let floor = replicas * weight / 100;
    let tied = |total: i64| (total * weight) % 100 == 0;
    let zero_allowed = weight == 100 || weight == 0 || (replicas == 1 && max_surge == 0);
    let mut options = Vec::new();
    if ceil < replicas || zero_allowed {
        options.push((ceil, replicas));
    }
    if !tied(replicas) && (floor != 0 || zero_allowed) {
        options.push((floor, replicas));
    }
    if max_surge > 0 {
        options.push((ceil, replicas + 1));
        if !tied(replicas + 1) && (floor != 0 || zero_allowed) {
            options.push((floor, replicas + 1));
        }
    }
    let delta = |(c, t): (i64, i64)| ((c as f64 / t as f64) * 100.0 - weight as f64).abs();
    let best = options
        .iter()
        .copied()
        .fold(None::<(i64, i64)>, |best, o| match best {
            Some(b) if delta(b) <= delta(o) => Some(b),
            _ => Some(o),
        });
    match best {
        Some((c, t)) => (c, t - c),
        None => (0, replicas),
    }
}

/// The weight the steps up to `index` ask for (Argo's `GetCurrentSetWeight`).
fn step_weight(steps: &[CanaryStep], index: usize) -> i64 {
    if index >= steps.len() {
        return 100;
    }
    steps[..=index]
        .iter()
        .rev()
        .find_map(|s| s.set_weight)
        .unwrap_or(0)
}

/// The canary replicas a `setCanaryScale` before `index` fixes (Argo's `UseSetCanaryScale`):
/// the newest one, unless it says `matchTrafficWeight`.
fn canary_scale(steps: &[CanaryStep], index: usize, replicas: i64) -> Option<i64> {
    if index >= steps.len() {
        return None;
    }
    let s = steps[..=index]
        .iter()
        .rev()
        .find_map(|s| s.set_canary_scale.as_ref())?;
    if s.match_traffic_weight == Some(true) {
        return None;
    }
    s.replicas
        .or_else(|| s.weight.map(|w| ceil_share(replicas, w)))
}

fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) -> bool {
    let c = match conditions.iter_mut().position(|c| c.type_ == type_) {
        Some(i) => &mut conditions[i],
        None => {
            conditions.push(Condition {
                type_: type_.to_string(),
                ..Condition::default()
            });
            conditions.last_mut().expect("just pushed")
        }
    };
    let same = c.status == status
        && c.reason.as_deref() == Some(reason)
        && c.message.as_deref() == Some(message);
    if same {
        return false;
    }
    if c.status != status || c.last_transition_time.is_none() {
        c.last_transition_time = Some(now.to_string());
    }
    c.status = status.to_string();
    c.reason = Some(reason.to_string());
    c.message = Some(message.to_string());
    c.last_update_time = Some(now.to_string());
    true
}

fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

fn until(now: OffsetDateTime, then: OffsetDateTime) -> Duration {
    (then - now).try_into().unwrap_or(Duration::ZERO)
}

/// The InvalidSpec status: Argo's condition, phase Degraded, nothing else changed.
pub fn invalid_status(
    status: &RolloutStatus,
    generation: i64,
    message: &str,
    now: &str,
    spec: &RolloutSpec,
) -> RolloutStatus {
    let mut st = status.clone();
    st.observed_generation = Some(generation.to_string());
    set_condition(
        &mut st.conditions,
        "InvalidSpec",
        "True",
        "InvalidSpec",
        message,
        now,
    );
    let (p, m) = phase(spec, &st);
    st.phase = Some(p);
    st.message = Some(m);
    st
}

/// One pass of the canary strategy.
pub fn decide(input: &Input) -> Decision {
    let Input {
        name,
        generation,
        spec,
        canary,
        status: old,
        hash,
        step_hash,
        sets,
        now,
        ..
    } = *input;
    let now_ts = shipway_controller::clock::format_timestamp(now);
    let steps = canary.steps();
    let n = steps.len();
    let want = spec.replicas();
    let routed = proxy_routed(canary);
    let mut d = Decision::default();
    let mut st = old.clone();
    st.observed_generation = Some(generation.to_string());
    remove_condition(&mut st.conditions, "InvalidSpec");
    st.selector = spec.selector.as_ref().and_then(|s| {
        s.to_selector()
            .ok()
            .map(|sel| sel.to_string())
            .filter(|s| !s.is_empty())
    });
    st.current_step_hash = Some(step_hash.to_string());
    // Argo writes both, empty or not.
    st.blue_green.get_or_insert_with(Default::default);
    st.canary_mut();

    let max_revision = sets.iter().map(|s| s.revision).max().unwrap_or(0);
    let new_set = sets.iter().find(|s| s.hash == hash);
    let revision = match new_set {
        Some(s) if s.revision >= max_revision => s.revision,
        Some(s) => {
            d.set_revision = Some((s.name.clone(), max_revision + 1));
            max_revision + 1
        }
        None => max_revision + 1,
    };

    // A new template (or new steps) restarts the steps; back to the stable one skips them.
    let template_changed = old.current_pod_hash.as_deref() != Some(hash);
    let steps_changed = old
        .current_step_hash
        .as_deref()
        .is_some_and(|h| h != step_hash);
    if old.current_pod_hash.is_some() && (template_changed || steps_changed) {
        st.current_step_index = Some(0);
        st.pause_conditions.clear();
        st.controller_pause = false;
        st.set_abort(false);
        st.aborted_at = None;
        st.promote_full = false;
        for r in [
            &old.canary().current_step_analysis_run_status,
            &old.canary().current_background_analysis_run_status,
        ]
        .into_iter()
        .flatten()
        {
            if !completed_phase(&r.status) {
                d.terminate_runs.push(r.name.clone());
            }
        }
        st.canary_mut().current_step_analysis_run_status = None;
        st.canary_mut().current_experiment = None;
        st.canary_mut().current_background_analysis_run_status = None;
        if old.stable_rs.as_deref() == Some(hash) && n > 0 {
            st.current_step_index = Some(n as i64);
            d.event("SkipSteps", "Rollback to stable ReplicaSets".into(), false);
        }
        remove_condition(&mut st.conditions, "Progressing");
    }
    if template_changed {
        st.current_pod_hash = Some(hash.to_string());
        if new_set.is_none() {
            let rs = format!("{name}-{hash}");
            d.event(
                "RolloutUpdated",
                format!("Rollout updated to revision {revision}"),
                false,
            );
            d.event(
                "NewReplicaSetCreated",
                format!("Created ReplicaSet {rs} (revision {revision})"),
                false,
            );
        }
    }
    // First deploy: nothing to compare with, so straight to 100 %.
    if st.stable_rs.is_none() {
        st.stable_rs = Some(hash.to_string());
        st.current_step_index = (n > 0).then_some(n as i64);
    }
    let stable_hash = st.stable_rs.clone().unwrap_or_default();
    let promoted = stable_hash == hash;

    if st.promote_full && !promoted {
        st.pause_conditions.clear();
        st.controller_pause = false;
        st.set_abort(false);
        if n > 0 {
            st.current_step_index = Some(n as i64);
        }
    }
    if n == 0 {
        st.current_step_index = None;
    } else if st.current_step_index.is_none() {
        st.current_step_index = Some(0);
    }
    let mut index = st.current_step_index.unwrap_or(0).clamp(0, n as i64) as usize;
    // Off an experiment step (promoted, skipped, steps changed): no current Experiment, so
    // the controller terminates it.
    if steps.get(index).is_none_or(|s| s.experiment.is_none()) {
        st.canary_mut().current_experiment = None;
    }

    // Retry: the user set abort back to false.
    if !st.aborted() && st.aborted_at.is_some() {
        st.aborted_at = None;
        st.canary_mut().current_step_analysis_run_status = None;
        st.canary_mut().current_experiment = None;
        st.canary_mut().current_background_analysis_run_status = None;
        remove_condition(&mut st.conditions, "Progressing");
    }
    let mut abort_message: Option<String> = None;

    // The step analysis and background analysis outcomes.
    let mut add_pause: Option<&str> = None;
    let mut step_done = false;
    if !promoted
        && !st.aborted()
        && let Some(bg) = &canary.analysis
    {
        let from = bg.starting_step.unwrap_or(0).max(0) as usize;
        let recorded = st.canary().current_background_analysis_run_status.is_some();
        match (&input.background_run, recorded) {
            (Some(run), true) => {
                st.canary_mut().current_background_analysis_run_status = Some(run_status(run));
                let paused_already = pause_acknowledged(&st, INCONCLUSIVE)
                    || st.pause_conditions.iter().any(|c| c.reason == INCONCLUSIVE);
                match run.phase.as_str() {
                    "Failed" | "Error" => abort_message = Some(run.message.clone()),
                    "Inconclusive" if !paused_already => add_pause = Some(INCONCLUSIVE),
                    _ => {}
                }
            }
            // Created, not in the cache yet.
            (None, true) => {}
            (_, false) if index >= from => d.start_runs.push(StartRun::Background),
            (_, false) => {}
        }
    }
    if !promoted && !st.aborted() && abort_message.is_none() && index < n && !spec.is_paused() {
        let step = &steps[index];
        if let Some(p) = &step.pause {
            let cond = st
                .pause_conditions
                .iter()
                .find(|c| c.reason == CANARY_PAUSE_STEP);
            if st.controller_pause && cond.is_none() {
                // The user cleared the pause conditions: promoted.
                step_done = true;
            } else if let Some(Ok(secs)) = p.duration_seconds() {
                let start = cond
                    .and_then(|c| c.start_time.as_deref())
                    .and_then(parse_time);
                match start {
                    Some(start) => {
                        let end = start + time::Duration::seconds(secs);
                        if now >= end {
                            step_done = true;
                        } else {
                            d.requeue_in(until(now, end));
                        }
                    }
                    None => {
                        add_pause = Some(CANARY_PAUSE_STEP);
                        d.requeue_in(Duration::from_secs(secs.max(0) as u64));
                    }
                }
            } else if cond.is_none() {
                add_pause = Some(CANARY_PAUSE_STEP);
            }
        } else if step.analysis.is_some() {
            let recorded = st.canary().current_step_analysis_run_status.is_some();
            match (&input.step_run, recorded) {
                (Some(run), true) => {
                    st.canary_mut().current_step_analysis_run_status = Some(run_status(run));
                    match run.phase.as_str() {
                        "Successful" => step_done = true,
                        "Failed" | "Error" => abort_message = Some(run.message.clone()),
                        "Inconclusive" => {
                            if pause_acknowledged(&st, INCONCLUSIVE) {
                                step_done = true;
                            } else if !st.pause_conditions.iter().any(|c| c.reason == INCONCLUSIVE)
                            {
                                add_pause = Some(INCONCLUSIVE);
                            }
                        }
                        _ => {}
                    }
                }
                (None, true) => {}
                (_, false) => d.start_runs.push(StartRun::Step(index)),
            }
        } else if step.experiment.is_some() {
            // Argo's `reconcileExperiments`: made once the stable ReplicaSet exists, waited on
            // while it runs; its failure aborts, inconclusive pauses.
            let recorded = st.canary().current_experiment.is_some();
            match (&input.step_experiment, recorded) {
                (Some(ex), true) => match ex.phase.as_str() {
                    "Successful" => {
                        step_done = true;
                        st.canary_mut().current_experiment = None;
                    }
                    "Failed" | "Error" => {
                        let mut m = "Experiment analysis phase is error/failed".to_string();
                        if !ex.message.is_empty() {
                            m = format!("{m}: {}", ex.message);
                        }
                        abort_message = Some(m);
                    }
                    "Inconclusive" => {
                        if pause_acknowledged(&st, INCONCLUSIVE_EXPERIMENT) {
                            step_done = true;
                            st.canary_mut().current_experiment = None;
                        } else if !st
                            .pause_conditions
                            .iter()
                            .any(|c| c.reason == INCONCLUSIVE_EXPERIMENT)
                        {
                            add_pause = Some(INCONCLUSIVE_EXPERIMENT);
                        }
                    }
                    _ => {}
                },
                // Created, not in the cache yet.
                (None, true) => {}
                (_, false) => {
                    if sets
                        .iter()
                        .any(|s| s.hash == st.stable_rs.as_deref().unwrap_or_default())
                    {
                        d.start_experiment = Some(index);
                    }
                }
            }
        } else if step.rest.contains_key("plugin") {
            // Not implemented: named in the UnsupportedFields condition, passed over.
            step_done = true;
        } else if (step.set_header_route.is_some() || step.set_mirror_route.is_some())
            && step.set_canary_scale.is_none()
            && step.set_weight.is_none()
        {
            step_done = true;
        }
        // setWeight and setCanaryScale complete once the counts are reached (below).
    }
    if let Some(msg) = abort_message.take() {
        st.set_abort(true);
        abort_message = Some(msg);
    }
    if st.aborted() {
        // The controller terminates every Experiment but the current one: none now.
        st.canary_mut().current_experiment = None;
        if st.aborted_at.is_none() {
            st.aborted_at = Some(now_ts.clone());
        }
        st.pause_conditions.clear();
        st.controller_pause = false;
        for r in [
            &st.canary().current_step_analysis_run_status,
            &st.canary().current_background_analysis_run_status,
        ]
        .into_iter()
        .flatten()
        {
            if !completed_phase(&r.status) {
                d.terminate_runs.push(r.name.clone());
            }
        }
        if n > 0 {
            index = if promoted { n } else { 0 };
        }
    }
    if let Some(reason) = add_pause {
        st.pause_conditions.push(PauseCondition {
            reason: reason.to_string(),
            start_time: Some(now_ts.clone()),
            ..Default::default()
        });
        st.controller_pause = true;
    }

    // Desired weight and replica counts.
    let aborted = st.aborted();
    let weight = if promoted {
        100
    } else if aborted {
        0
    } else {
        step_weight(steps, index)
    };
    let stable_set = sets.iter().find(|s| s.hash == stable_hash && !promoted);
    let canary_set = new_set;
    let canary_replicas = canary_set.map_or(0, |s| s.replicas);
    let canary_available = canary_set.map_or(0, |s| s.available.min(s.replicas));
    let old_weights = old.canary().weights.as_ref();
    let applied = old_weights
        .filter(|w| w.canary.pod_template_hash.as_deref() == Some(hash))
        .map_or(0, |w| w.canary.weight);
    let mut canary_target;
    let mut stable_target = 0;
    let mut effective_weight = weight;
    let max_surge = canary
        .max_surge
        .as_ref()
        .map_or(Ok(ceil_share(want, 25)), |v| v.scaled_value(want, true))
        .unwrap_or(1);
    let max_unavailable = canary
        .max_unavailable
        .as_ref()
        .map_or(Ok(want / 4), |v| v.scaled_value(want, false))
        .unwrap_or(0);
    if promoted {
        canary_target = want;
    } else if routed {
        canary_target =
            canary_scale(steps, index, want).unwrap_or_else(|| ceil_share(want, weight));
        stable_target = want;
        if aborted {
            // Traffic goes back at once; the canary's pods stay until the delay has passed.
            let delay = canary
                .abort_scale_down_delay_seconds
                .unwrap_or(DEFAULT_ABORT_SCALE_DOWN_DELAY);
            let since = st.aborted_at.as_deref().and_then(parse_time).unwrap_or(now);
            let end = since + time::Duration::seconds(delay);
            if delay > 0 && now < end {
                canary_target = canary_replicas;
                d.requeue_in(until(now, end));
            } else {
                canary_target = 0;
            }
        }
        // More weight only once the canary can take it; less at once.
        let needed = ceil_share(want, weight).max(i64::from(weight > 0));
        if weight > applied && canary_available < needed.min(canary_target.max(1)) {
            effective_weight = applied;
        }
    } else {
        let (c, s) = basic_counts(want, weight, max_surge);
        let stable_available = stable_set.map_or(0, |s| s.available.min(s.replicas));
        let increasing = c >= canary_replicas;
        if increasing {
            canary_target = c;
            // Keep the stable pods that availability still needs.
            stable_target = s.max(want - max_unavailable - canary_available).min(want);
            stable_target = stable_target.min(stable_set.map_or(0, |s| s.replicas).max(s));
        } else {
            stable_target = s;
            canary_target = c.max(want - max_unavailable - stable_available).max(0);
            canary_target = canary_target.min(canary_replicas);
        }
    }

    // The ReplicaSets: the current template's, the stable one, and the others.
    match canary_set {
        None => d.create = Some((revision, canary_target)),
        Some(s) if s.replicas != canary_target => d.scale.push((s.name.clone(), canary_target)),
        Some(_) => {}
    }
    if let Some(s) = stable_set
        && s.replicas != stable_target
    {
        d.scale.push((s.name.clone(), stable_target));
    }
    let delay = canary
        .scale_down_delay_seconds
        .unwrap_or(DEFAULT_SCALE_DOWN_DELAY);
    let serving = canary_available + stable_set.map_or(0, |s| s.available.min(s.replicas));
    for s in sets {
        if s.hash == hash || (s.hash == stable_hash && !promoted) {
            if s.scale_down_deadline.is_some() {
                d.deadlines.push((s.name.clone(), None));
            }
            continue;
        }
        if s.replicas == 0 {
            continue;
        }
        if routed && delay > 0 {
            // Its traffic moved away in this pass; the proxy needs a moment to let go of it.
            match s.scale_down_deadline {
                None => {
                    let end = now + time::Duration::seconds(delay);
                    d.deadlines.push((s.name.clone(), Some(end)));
                    d.requeue_in(Duration::from_secs(delay as u64));
                }
                Some(end) if now >= end => d.scale.push((s.name.clone(), 0)),
                Some(end) => d.requeue_in(until(now, end)),
            }
        } else if serving >= want - max_unavailable || routed {
            d.scale.push((s.name.clone(), 0));
        }
    }
    // History: old, empty revisions beyond the limit go, oldest first.
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let mut idle: Vec<&Set> = sets
        .iter()
        .filter(|s| {
            s.hash != hash && s.hash != stable_hash && s.replicas == 0 && s.status_replicas == 0
        })
        .collect();
    idle.sort_by_key(|s| s.revision);
    if idle.len() > limit {
        d.delete = idle[..idle.len() - limit]
            .iter()
            .map(|s| s.name.clone())
            .collect();
    }

    // Traffic.
    if routed {
        let stable_service = canary.stable_service.clone();
        let canary_service = canary.canary_service.clone();
        let (header_routes, mirror) = if promoted || aborted {
            (Vec::new(), None)
        } else {
            routes_up_to(steps, index)
        };
        let canary_hash = if promoted { &stable_hash } else { hash };
        d.traffic = Some(Traffic {
            stable_hash: stable_hash.clone(),
            canary_hash: canary_hash.to_string(),
            canary_weight: if promoted { 0 } else { effective_weight },
            header_routes,
            mirror,
        });
        let cw = if promoted { 0 } else { effective_weight };
        st.canary_mut().weights = Some(TrafficWeights {
            canary: WeightDestination {
                weight: cw,
                service_name: canary_service,
                pod_template_hash: Some(canary_hash.to_string()),
                ..Default::default()
            },
            stable: WeightDestination {
                weight: 100 - cw,
                service_name: stable_service,
                pod_template_hash: Some(stable_hash.clone()),
                ..Default::default()
            },
            ..Default::default()
        });
        // Only a change of weight is news: a new canary hash at the same weight (0 to 0 when
        // an update starts) is not an event, as in Argo.
        if old_weights.map_or(0, |w| w.canary.weight) != cw {
            d.event(
                "TrafficWeightUpdated",
                format!(
                    "Traffic weight updated from {} to {cw}",
                    old_weights.map_or(0, |w| w.canary.weight)
                ),
                false,
            );
        }
    } else {
        st.canary_mut().weights = None;
    }

    // setWeight / setCanaryScale steps complete at their counts.
    if !promoted && !aborted && index < n && !spec.is_paused() {
        let step = &steps[index];
        if step.set_weight.is_some() || step.set_canary_scale.is_some() {
            let canary_at = canary_set
                .is_some_and(|s| s.replicas == canary_target && s.available >= canary_target);
            let stable_at = stable_set.is_none_or(|s| {
                s.replicas == stable_target && s.available >= stable_target.min(s.replicas)
            });
            let weight_at = !routed || applied == weight;
            if canary_at && stable_at && weight_at {
                step_done = true;
            }
        }
    }
    if step_done && !aborted {
        d.event(
            "RolloutStepCompleted",
            format!(
                "Rollout step {}/{n} completed ({})",
                index + 1,
                step_string(&steps[index])
            ),
            false,
        );
        index += 1;
        st.canary_mut().current_step_analysis_run_status = None;
        st.canary_mut().current_experiment = None;
        st.pause_conditions.retain(|c| {
            c.reason != CANARY_PAUSE_STEP
                && c.reason != INCONCLUSIVE
                && c.reason != INCONCLUSIVE_EXPERIMENT
        });
        if st.pause_conditions.is_empty() {
            st.controller_pause = false;
        }
        // The next step starts on the next pass (the status write wakes it).
        d.requeue_in(Duration::ZERO);
    }
    if n > 0 {
        st.current_step_index = Some(index as i64);
    }

    // Full promotion: every step done and the canary fully available.
    let new_available = canary_set.map_or(0, |s| s.available);
    if !promoted && !aborted && index >= n && canary_set.is_some() && new_available >= want {
        st.stable_rs = Some(hash.to_string());
        st.promote_full = false;
        st.canary_mut().current_step_analysis_run_status = None;
        st.canary_mut().current_experiment = None;
        if let Some(r) = &st.canary().current_background_analysis_run_status
            && !completed_phase(&r.status)
        {
            d.terminate_runs.push(r.name.clone());
        }
        st.canary_mut().current_background_analysis_run_status = None;
        d.event(
            "RolloutCompleted",
            format!(
                "Rollout completed update to revision {revision} ({hash}): Completed all steps"
            ),
            false,
        );
        d.requeue_in(Duration::ZERO);
    }

    // Counts.
    let sum = |f: fn(&Set) -> i64| sets.iter().map(f).sum::<i64>();
    // Argo's counts are `omitempty`: a zero is not written.
    let nonzero = |n: i64| (n != 0).then_some(n);
    st.replicas = nonzero(sum(|s| s.status_replicas));
    st.hpa_replicas = st.replicas;
    st.updated_replicas = nonzero(canary_set.map_or(0, |s| s.status_replicas));
    st.ready_replicas = nonzero(sum(|s| s.ready));
    st.available_replicas = nonzero(sum(|s| s.available));

    conditions(
        input,
        old,
        &mut st,
        &mut d,
        abort_message,
        revision,
        &now_ts,
    );
    let (p, m) = phase(spec, &st);
    st.phase = Some(p);
    st.message = Some(m);
    d.status = st;
    d
}

/// Whether the user acknowledged (promoted past) a pause the controller set for `reason`:
/// `controllerPause` still true but the pause conditions cleared.
fn pause_acknowledged(st: &RolloutStatus, reason: &str) -> bool {
    st.controller_pause && !st.pause_conditions.iter().any(|c| c.reason == reason)
}

/// The header routes and mirror the steps up to `index` set (the newest per name; an empty
/// match removes a header route).
fn routes_up_to(
    steps: &[CanaryStep],
    index: usize,
) -> (
    Vec<shipway_model::types::rollout::SetHeaderRoute>,
    Option<(String, i64)>,
) {
    let mut routes: Vec<shipway_model::types::rollout::SetHeaderRoute> = Vec::new();
    let mut mirror = None;
    for s in steps
        .iter()
        .take(index.min(steps.len().saturating_sub(1)) + 1)
    {
        if let Some(h) = &s.set_header_route {
            routes.retain(|r| r.name != h.name);
            if !h.match_.is_empty() {
                routes.push(h.clone());
            }
        }
        if let Some(m) = &s.set_mirror_route {
            mirror = (!m.match_.is_empty() || m.percentage.is_some())
                .then(|| (m.name.clone(), m.percentage.unwrap_or(100)));
        }
    }
    (routes, mirror)
}

/// Available, Progressing, Paused and Completed, as Argo's `calculateRolloutConditions` and
/// `checkPausedConditions` set them.
fn conditions(
    input: &Input,
    old: &RolloutStatus,
    st: &mut RolloutStatus,
    d: &mut Decision,
    abort_message: Option<String>,
    revision: i64,
    now: &str,
) {
    let spec = input.spec;
    let want = spec.replicas();
    let rs_name = format!("{}-{}", input.name, input.hash);
    let available = st.available_replicas.unwrap_or(0);
    if available >= want {
        set_condition(
            &mut st.conditions,
            "Available",
            "True",
            "AvailableReason",
            "Rollout has minimum availability",
            now,
        );
    } else {
        set_condition(
            &mut st.conditions,
            "Available",
            "False",
            "AvailableReason",
            "Rollout does not have minimum availability",
            now,
        );
    }
    let paused = !st.pause_conditions.is_empty() || spec.is_paused();
    let was_paused = st
        .conditions
        .iter()
        .any(|c| c.type_ == "Paused" && c.status == "True");
    let promoted = st.stable_rs == st.current_pod_hash;
    let complete = promoted
        && st.updated_replicas.unwrap_or(0) == want
        && available >= want
        && st.replicas.unwrap_or(0) == want;
    if st.aborted() {
        // Keep the first abort's message (the failing metric) while the rollout stays aborted.
        let kept = input
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("RolloutAborted"))
            .and_then(|c| c.message.clone())
            .filter(|_| abort_message.is_none());
        let message = kept.unwrap_or_else(|| {
            let base = format!("Rollout aborted update to revision {revision}");
            match abort_message.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => format!("{base}: {m}"),
                None => base,
            }
        });
        if set_condition(
            &mut st.conditions,
            "Progressing",
            "False",
            "RolloutAborted",
            &message,
            now,
        ) {
            d.event("RolloutAborted", message, true);
        }
    } else if paused {
        set_condition(
            &mut st.conditions,
            "Progressing",
            "Unknown",
            "RolloutPaused",
            "Rollout is paused",
            now,
        );
    } else if complete {
        set_condition(
            &mut st.conditions,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet {rs_name:?} has successfully progressed."),
            now,
        );
    } else {
        let moved = old.current_pod_hash != st.current_pod_hash
            || old.replicas != st.replicas
            || old.updated_replicas != st.updated_replicas
            || old.ready_replicas != st.ready_replicas
            || old.available_replicas != st.available_replicas
            || old.current_step_index != st.current_step_index
            || old.stable_rs != st.stable_rs;
        let current = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Progressing")
            .cloned();
        let reason = current.as_ref().and_then(|c| c.reason.clone());
        let timed_out = reason.as_deref() == Some("ProgressDeadlineExceeded");
        let fresh = !matches!(reason.as_deref(), Some("ReplicaSetUpdated"));
        if moved || (fresh && !timed_out) || was_paused {
            let message = format!("ReplicaSet {rs_name:?} is progressing.");
            set_condition(
                &mut st.conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &message,
                now,
            );
            // A new update time even when the message is the same: progress was made.
            if let Some(c) = st.conditions.iter_mut().find(|c| c.type_ == "Progressing") {
                c.last_update_time = Some(now.to_string());
            }
        }
        let deadline = spec
            .progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE);
        let indefinite = input
            .canary
            .steps()
            .get(st.current_step_index.unwrap_or(0) as usize)
            .is_some_and(|s| {
                s.analysis.is_some()
                    || s.experiment.is_some()
                    || s.pause.as_ref().is_some_and(|p| p.duration.is_none())
            });
        let progressing = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("ReplicaSetUpdated"))
            .and_then(|c| c.last_update_time.as_deref())
            .and_then(parse_time);
        if let Some(since) = progressing
            && !indefinite
        {
            let end = since + time::Duration::seconds(deadline);
            if input.now >= end {
                let message = format!("ReplicaSet {rs_name:?} has timed out progressing.");
                set_condition(
                    &mut st.conditions,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    &message,
                    now,
                );
                d.event("ProgressDeadlineExceeded", message.clone(), true);
                if spec.progress_deadline_abort == Some(true) && !promoted {
                    st.set_abort(true);
                    st.aborted_at = Some(now.to_string());
                    d.requeue_in(Duration::ZERO);
                }
            } else {
                d.requeue_in(until(input.now, end));
            }
        }
    }
    if paused {
        if set_condition(
            &mut st.conditions,
            "Paused",
            "True",
            "RolloutPaused",
            "Rollout is paused",
            now,
        ) {
            let reason = st
                .pause_conditions
                .first()
                .map_or("manually paused".to_string(), |p| p.reason.clone());
            d.event(
                "RolloutPaused",
                format!("Rollout is paused ({reason})"),
                false,
            );
        }
    } else if was_paused {
        set_condition(
            &mut st.conditions,
            "Paused",
            "False",
            "RolloutResumed",
            "Rollout is resumed",
            now,
        );
        d.event("RolloutResumed", "Rollout is resumed".into(), false);
    }
    if complete {
        set_condition(
            &mut st.conditions,
            "Completed",
            "True",
            "RolloutCompleted",
            "RolloutCompleted",
            now,
        );
    } else {
        set_condition(
            &mut st.conditions,
            "Completed",
            "False",
            "RolloutCompleted",
            "RolloutCompleted",
            now,
        );
    }
    let unsupported = unsupported(spec);
    if unsupported.is_empty() {
        remove_condition(&mut st.conditions, "UnsupportedFields");
    } else {
        let message = format!(
            "Shipway does not implement {}; they have no effect",
            unsupported.join(", ")
        );
        if set_condition(
            &mut st.conditions,
            "UnsupportedFields",
            "True",
            "NotImplemented",
            &message,
            now,
        ) {
            d.event("UnsupportedFields", message, true);
        }
    }
}

#[cfg(test)]
mod tests;
