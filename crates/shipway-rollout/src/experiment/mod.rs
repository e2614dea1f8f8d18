//! Argo Rollouts' Experiment: one ReplicaSet per template (`<experiment>-<template>`, owned by
//! the Experiment), AnalysisRuns (`<experiment>-<analysis>`) once every template is available,
//! and Argo's status (`phase`, `templateStatuses`, `analysisRuns`, `availableAt`, the
//! `Progressing` condition). [`decide`] is one pass as a pure function, following Argo's
//! `experiments/experiment.go`; [`controller`] reads the objects and carries it out.

pub mod controller;
pub mod step;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shipway_model::types::{
    Argument, Condition, IntOrString, LabelSelector, MeasurementRetention, MetricRule,
};
use time::OffsetDateTime;

/// Annotations on an Experiment's ReplicaSets and Services naming what they are for (Argo's).
pub const EXPERIMENT_NAME: &str = "experiment.argoproj.io/name";
pub const TEMPLATE_NAME: &str = "experiment.argoproj.io/template-name";
pub const DEFAULT_PROGRESS_DEADLINE: i64 = 600;
pub const DEFAULT_SCALE_DOWN_DELAY: i64 = 30;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    /// `"30s"`, `"1h"` or seconds; none runs until the required analyses complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terminate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<TemplateSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<ExperimentAnalysis>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<MetricRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<RunMetadata>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Kept as written: its hash names the ReplicaSet's pods.
    #[serde(default)]
    pub template: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<TemplateService>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl TemplateSpec {
    pub fn replicas(&self) -> i64 {
        self.replicas.unwrap_or(1)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateService {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentAnalysis {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub template_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required_for_completion: bool,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template_statuses: Vec<TemplateStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis_runs: Vec<ExperimentAnalysisRunStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_at: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateStatus {
    pub name: String,
    #[serde(default)]
    pub replicas: i64,
    #[serde(default)]
    pub updated_replicas: i64,
    #[serde(default)]
    pub ready_replicas: i64,
    #[serde(default)]
    pub available_replicas: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod_template_hash: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentAnalysisRunStatus {
    pub name: String,
    #[serde(default)]
    pub analysis_run: String,
    #[serde(default)]
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

pub fn completed(phase: &str) -> bool {
    matches!(phase, "Successful" | "Failed" | "Error" | "Inconclusive")
}

/// Whether a template status is final: a template does not leave these (Argo's `Completed`).
fn template_completed(status: &str) -> bool {
    matches!(status, "Successful" | "Failed" | "Error")
}

/// Argo's orders, best to worst.
const TEMPLATE_ORDER: [&str; 5] = ["Successful", "Running", "Progressing", "Error", "Failed"];
const ANALYSIS_ORDER: [&str; 6] = [
    "Successful",
    "Running",
    "Pending",
    "Inconclusive",
    "Error",
    "Failed",
];

/// `new` ranks worse than `current` (an unknown status ranks as the best, as in Argo).
fn worse(order: &[&str], current: &str, new: &str) -> bool {
    let at = |s: &str| order.iter().position(|o| *o == s).unwrap_or(0);
    at(new) > at(current)
}

/// `spec.duration` in seconds, as Argo's `DurationString` reads it.
pub fn duration_seconds(d: &IntOrString) -> Result<i64, String> {
    match d {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => s.parse::<i64>().or_else(|_| {
            shipway_model::types::repository::parse_duration(s)
                .map(|d| d.as_secs() as i64)
                .ok_or_else(|| format!("invalid duration {s:?}"))
        }),
    }
}

pub fn progress_deadline(spec: &ExperimentSpec) -> i64 {
    spec.progress_deadline_seconds
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE)
}

/// Argo's `VerifyExperimentSpec`, with its messages, plus what Kubernetes would refuse when
/// the ReplicaSet is created (a selector that does not select the template's pods) and a
/// duration that does not read: checked before anything is applied.
pub fn validate(name: &str, spec: &ExperimentSpec) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in spec.templates.iter().enumerate() {
        let Some(selector) = &t.selector else {
            return Err(format!(
                "Rollout has missing field '.Spec.Templates[{i}].Selector'"
            ));
        };
        if selector == &LabelSelector::default() {
            return Err(format!(
                "This experiment is selecting all pods at index {i}. A non-empty selector is required."
            ));
        }
        if t.min_ready_seconds.unwrap_or(0) > progress_deadline(spec) {
            return Err(format!(
                "MinReadySeconds cannot be longer than ProgressDeadlineSeconds. Check template index {i}"
            ));
        }
        if t.name.is_empty() {
            return Err(format!(
                "Experiment {name} has empty template name at index {i}"
            ));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(format!(
                "Experiment {name} has repeated template name '{}' in templates",
                t.name
            ));
        }
        let sel = selector.to_selector().map_err(|e| {
            format!(
                "The Experiment \"{name}\" is invalid: spec.templates[{i}].selector: Invalid value: {e}"
            )
        })?;
        let labels: BTreeMap<String, String> = t
            .template
            .pointer("/metadata/labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        if !sel.matches(&labels) {
            return Err(format!(
                "The Experiment \"{name}\" is invalid: spec.templates[{i}].template.metadata.labels: Invalid value: {}: `selector` does not match template `labels`",
                serde_json::to_string(&labels).unwrap_or_default()
            ));
        }
    }
    let mut runs = std::collections::BTreeSet::new();
    for (i, a) in spec.analyses.iter().enumerate() {
        if a.name.is_empty() {
            return Err(format!(
                "Rollout has missing field '.Spec.Analyses[{i}].Name'"
            ));
        }
        if !runs.insert(a.name.as_str()) {
            return Err(format!(
                "Experiment {name} has repeated analysis name '{}' in analyses",
                a.name
            ));
        }
    }
    if let Some(d) = &spec.duration {
        duration_seconds(d).map_err(|e| {
            format!("The Experiment \"{name}\" is invalid: spec.duration: Invalid value: {e}")
        })?;
    }
    Ok(())
}

/// The fields Shipway reads but does not act on, by path: named in an `UnsupportedFields`
/// condition rather than ignored.
pub fn unsupported(spec: &ExperimentSpec) -> Vec<String> {
    let mut out: Vec<String> = spec.rest.keys().map(|k| format!("spec.{k}")).collect();
    for (i, t) in spec.templates.iter().enumerate() {
        out.extend(t.rest.keys().map(|k| format!("spec.templates[{i}].{k}")));
        if let Some(s) = &t.service {
            out.extend(
                s.rest
                    .keys()
                    .map(|k| format!("spec.templates[{i}].service.{k}")),
            );
        }
    }
    for (i, a) in spec.analyses.iter().enumerate() {
        out.extend(a.rest.keys().map(|k| format!("spec.analyses[{i}].{k}")));
    }
    out
}

/// What [`decide`] needs of a template's ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TemplateSet {
    pub name: String,
    pub hash: String,
    /// `spec.replicas`.
    pub replicas: i64,
    pub status_replicas: i64,
    pub ready: i64,
    pub available: i64,
    pub scale_down_deadline: Option<OffsetDateTime>,
    /// The Service the Experiment made for the template, when there is one.
    pub service: Option<String>,
}

/// A recorded AnalysisRun as it is now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunState {
    pub phase: String,
    pub message: String,
    pub terminate: bool,
}

pub struct Input<'a> {
    pub name: &'a str,
    pub spec: &'a ExperimentSpec,
    pub status: &'a ExperimentStatus,
    /// By template name.
    pub sets: &'a BTreeMap<String, TemplateSet>,
    /// By analysis name, for the runs the status records; `Err` says why it cannot be read.
    pub runs: &'a BTreeMap<String, Result<RunState, String>>,
    /// By analysis name: why its template cannot be used (Argo's verification).
    pub missing_templates: &'a BTreeMap<String, String>,
    pub now: OffsetDateTime,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub status: ExperimentStatus,
    /// Templates (by index) whose ReplicaSet to create, with the replicas.
    pub create: Vec<(usize, i64)>,
    /// `(ReplicaSet, replicas)`.
    pub scale: Vec<(String, i64)>,
    /// `(ReplicaSet, deadline)`: set or (None) remove the scale-down deadline.
    pub deadlines: Vec<(String, Option<OffsetDateTime>)>,
    /// Templates (by index) whose Service to create.
    pub create_services: Vec<usize>,
    pub delete_services: Vec<String>,
    /// Analyses (by index) whose run to create.
    pub start_runs: Vec<usize>,
    pub terminate_runs: Vec<String>,
    /// (reason, message, warning).
    pub events: Vec<(String, String, bool)>,
    pub requeue: Option<Duration>,
}

impl Decision {
    fn requeue_in(&mut self, d: Duration) {
        let d = d.max(Duration::from_millis(100));
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

fn until(now: OffsetDateTime, then: OffsetDateTime) -> Duration {
    (then - now).try_into().unwrap_or(Duration::ZERO)
}

/// Whether every requiredForCompletion analysis (there is at least one) succeeded.
fn required_successful(spec: &ExperimentSpec, st: &ExperimentStatus) -> bool {
    let required: Vec<&ExperimentAnalysis> = spec
        .analyses
        .iter()
        .filter(|a| a.required_for_completion)
        .collect();
    !required.is_empty()
        && required.iter().all(|a| {
            st.analysis_runs
                .iter()
                .any(|r| r.name == a.name && r.phase == "Successful")
        })
}

/// `availableAt + duration` has passed.
fn passed_duration(spec: &ExperimentSpec, st: &ExperimentStatus, now: OffsetDateTime) -> bool {
    duration_end(spec, st).is_some_and(|end| now > end)
}

fn duration_end(spec: &ExperimentSpec, st: &ExperimentStatus) -> Option<OffsetDateTime> {
    let secs = duration_seconds(spec.duration.as_ref()?).ok()?;
    let at = parse_time(st.available_at.as_deref()?)?;
    Some(at + time::Duration::seconds(secs))
}

/// Argo's `IsTerminating`: told to, finished, a template or analysis failed, or the required
/// analyses succeeded.
pub fn is_terminating(spec: &ExperimentSpec, st: &ExperimentStatus) -> bool {
    spec.terminate
        || completed(&st.phase)
        || st
            .template_statuses
            .iter()
            .any(|t| matches!(t.status.as_str(), "Failed" | "Error"))
        || st
            .analysis_runs
            .iter()
            .any(|r| matches!(r.phase.as_str(), "Failed" | "Error" | "Inconclusive"))
        || required_successful(spec, st)
}

/// Argo's `SetExperimentCondition`: no change when status and reason are the same; the
/// transition time kept when only the reason changes.
fn set_condition(st: &mut ExperimentStatus, c: Condition) {
    let current = st.conditions.iter().find(|o| o.type_ == c.type_);
    if current.is_some_and(|o| o.status == c.status && o.reason == c.reason) {
        return;
    }
    let mut c = c;
    if let Some(o) = current
        && o.status == c.status
    {
        c.last_transition_time = o.last_transition_time.clone();
    }
    st.conditions.retain(|o| o.type_ != c.type_);
    st.conditions.push(c);
}

fn condition(type_: &str, status: &str, reason: &str, message: String, now: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(now.into()),
        last_update_time: Some(now.into()),
        ..Default::default()
    }
}

/// The status of an invalid Experiment: Argo's `InvalidSpec` condition; phase Error with the
/// same message (so the Rollout that made it aborts with it); nothing applied.
pub fn invalid_status(old: &ExperimentStatus, message: &str, now: &str) -> ExperimentStatus {
    let mut st = old.clone();
    if st
        .conditions
        .iter()
        .any(|c| c.type_ == "InvalidSpec" && c.message.as_deref() != Some(message))
    {
        st.conditions.retain(|c| c.type_ != "InvalidSpec");
    }
    set_condition(
        &mut st,
        condition("InvalidSpec", "True", "InvalidSpec", message.into(), now),
    );
    st.phase = "Error".into();
    st.message = message.into();
    st
}

/// One pass over an Experiment (Argo's `reconcile`).
pub fn decide(input: &Input) -> Decision {
    let Input {
        name,
        spec,
        status: old,
        sets,
        now,
        ..
    } = *input;
    let now_ts = shipway_controller::clock::format_timestamp(now);
    let mut d = Decision::default();
    let mut st = old.clone();
    // A spec made valid again starts over from where it was.
    if let Some(i) = st.conditions.iter().position(|c| c.type_ == "InvalidSpec") {
        if st.phase == "Error" && Some(st.message.as_str()) == st.conditions[i].message.as_deref() {
            st.phase.clear();
            st.message.clear();
        }
        st.conditions.remove(i);
    }
    let fields = unsupported(spec);
    if fields.is_empty() {
        st.conditions.retain(|c| c.type_ != "UnsupportedFields");
    } else {
        let message = format!(
            "Shipway does not implement these fields; they are ignored: {}",
            fields.join(", ")
        );
        let same = st.conditions.iter().any(|c| {
            c.type_ == "UnsupportedFields" && c.message.as_deref() == Some(message.as_str())
        });
        if !same {
            st.conditions.retain(|c| c.type_ != "UnsupportedFields");
            st.conditions.push(condition(
                "UnsupportedFields",
                "True",
                "NotImplemented",
                message,
                &now_ts,
            ));
        }
    }

    // A missing template fails the Experiment before anything runs (Argo marks the analysis
    // Error, which fails it on the next pass; here nothing is created in between).
    if old.available_at.is_none() && !input.missing_templates.is_empty() && !completed(&old.phase) {
        for a in &spec.analyses {
            if let Some(err) = input.missing_templates.get(&a.name) {
                let message = format!(
                    "AnalysisTemplate verification failed for analysis '{}': {err}",
                    a.name
                );
                set_run_status(
                    &mut st,
                    ExperimentAnalysisRunStatus {
                        name: a.name.clone(),
                        phase: "Error".into(),
                        message: message.clone(),
                        ..Default::default()
                    },
                );
                if st.phase != "Error" {
                    st.phase = "Error".into();
                    st.message = message.clone();
                }
                d.events.push((
                    "AnalysisRunError".into(),
                    format!(
                        "AnalysisRun '{}' transitioned from {} -> Error: {message}",
                        a.name,
                        old.analysis_runs
                            .iter()
                            .find(|r| r.name == a.name)
                            .map_or("", |r| r.phase.as_str())
                    ),
                    true,
                ));
            }
        }
        d.events.push((
            "ExperimentError".into(),
            format!("Experiment transitioned from {} -> Error", old.phase),
            true,
        ));
        d.status = st;
        return d;
    }

    let terminating = is_terminating(spec, old);
    let deadline_secs = progress_deadline(spec);
    let delay = spec
        .scale_down_delay_seconds
        .unwrap_or(DEFAULT_SCALE_DOWN_DELAY);

    for (i, t) in spec.templates.iter().enumerate() {
        let prev = old
            .template_statuses
            .iter()
            .find(|s| s.name == t.name)
            .cloned()
            .unwrap_or_else(|| TemplateStatus {
                name: t.name.clone(),
                ..Default::default()
            });
        let mut ts = prev.clone();
        let desired = if terminating || template_completed(&prev.status) {
            0
        } else {
            t.replicas()
        };
        let set = sets.get(&t.name);
        match set {
            // Nothing new once it is over.
            None if terminating => {}
            None => {
                d.create.push((i, desired));
                ts.last_transition_time = Some(now_ts.clone());
            }
            Some(s) => {
                if t.service.is_some() {
                    if desired != 0 {
                        if s.service.is_none() {
                            d.create_services.push(i);
                        }
                    } else if s.available == 0
                        && let Some(svc) = &s.service
                    {
                        d.delete_services.push(svc.clone());
                        ts.service_name.clear();
                        ts.pod_template_hash.clear();
                    }
                } else if let Some(svc) = &s.service {
                    d.delete_services.push(svc.clone());
                    ts.service_name.clear();
                    ts.pod_template_hash.clear();
                }
                let mut deadline = s.scale_down_deadline;
                if desired == 0 {
                    if delay == 0 {
                        if deadline.take().is_some() {
                            d.deadlines.push((s.name.clone(), None));
                        }
                    } else if deadline.is_none() && s.replicas > 0 {
                        let end = now + time::Duration::seconds(delay);
                        deadline = Some(end);
                        d.deadlines.push((s.name.clone(), Some(end)));
                    }
                }
                if s.replicas != desired {
                    match deadline {
                        Some(end) if desired == 0 && now < end => d.requeue_in(until(now, end)),
                        _ => {
                            d.scale.push((s.name.clone(), desired));
                            ts.last_transition_time = Some(now_ts.clone());
                        }
                    }
                }
            }
        }
        let (replicas, ready, available) =
            set.map_or((0, 0, 0), |s| (s.status_replicas, s.ready, s.available));
        ts.replicas = replicas;
        ts.updated_replicas = replicas;
        ts.ready_replicas = ready;
        ts.available_replicas = available;
        if (prev.replicas, prev.updated_replicas, prev.ready_replicas)
            != (ts.replicas, ts.updated_replicas, ts.ready_replicas)
            || prev.available_replicas != ts.available_replicas
        {
            ts.last_transition_time = Some(now_ts.clone());
        }
        if !template_completed(&ts.status) {
            if desired == ts.available_replicas {
                ts.status = if passed_duration(spec, old, now) || terminating {
                    "Successful"
                } else {
                    "Running"
                }
                .into();
            } else {
                let from = ts
                    .last_transition_time
                    .as_deref()
                    .and_then(parse_time)
                    .unwrap_or(now);
                let deadline = from + time::Duration::seconds(deadline_secs);
                if now > deadline {
                    ts.status = "Failed".into();
                    ts.message = format!(
                        "Template '{}' exceeded its progressDeadlineSeconds ({deadline_secs})",
                        t.name
                    );
                } else if terminating {
                    ts.status = "Successful".into();
                } else {
                    ts.status = "Progressing".into();
                }
            }
        }
        if prev.status != ts.status {
            let mut msg = format!(
                "Template '{}' transitioned from {} -> {}",
                t.name, prev.status, ts.status
            );
            if !ts.message.is_empty() {
                msg = format!("{msg}: {}", ts.message);
            }
            let warning = matches!(ts.status.as_str(), "Failed" | "Error");
            d.events
                .push((format!("Template{}", ts.status), msg, warning));
        }
        match st.template_statuses.iter_mut().find(|s| s.name == t.name) {
            Some(s) => *s = ts,
            None => st.template_statuses.push(ts),
        }
    }

    for (i, a) in spec.analyses.iter().enumerate() {
        let prev = old
            .analysis_runs
            .iter()
            .find(|r| r.name == a.name)
            .cloned()
            .unwrap_or_else(|| ExperimentAnalysisRunStatus {
                name: a.name.clone(),
                ..Default::default()
            });
        let mut rs = prev.clone();
        if old.available_at.is_none() {
            // Not available yet: no runs (the templates were checked above).
        } else if prev.analysis_run.is_empty() {
            if !terminating {
                d.start_runs.push(i);
                rs.phase = "Pending".into();
                rs.analysis_run = format!("{name}-{}", a.name);
            }
        } else if !completed(&prev.phase) {
            match input.runs.get(&a.name) {
                None => {}
                Some(Err(e)) => {
                    rs.phase = "Error".into();
                    rs.message = e.clone();
                }
                Some(Ok(run)) => {
                    if terminating {
                        if !completed(&run.phase) && !run.terminate {
                            d.terminate_runs.push(prev.analysis_run.clone());
                            d.events.push((
                                "AnalysisRunTerminating".into(),
                                format!("Terminating {} ({})", a.name, prev.analysis_run),
                                false,
                            ));
                        }
                    } else {
                        rs.phase = run.phase.clone();
                        rs.message = run.message.clone();
                    }
                }
            }
        }
        if prev.phase != rs.phase && !rs.phase.is_empty() {
            let mut msg = format!(
                "AnalysisRun '{}' transitioned from {} -> {}",
                a.name, prev.phase, rs.phase
            );
            if !rs.message.is_empty() {
                msg = format!("{msg}: {}", rs.message);
            }
            let warning = matches!(rs.phase.as_str(), "Failed" | "Error" | "Inconclusive");
            d.events
                .push((format!("AnalysisRun{}", rs.phase), msg, warning));
        }
        set_run_status(&mut st, rs);
    }

    // The phase (Argo's `calculateStatus`).
    match st.phase.as_str() {
        "" => st.phase = "Pending".into(),
        "Pending" | "Running" => {
            let (tp, tm) = assess_templates(spec, &st);
            let (ap, am) = assess_analyses(spec, &st);
            if tp == "Running" && st.available_at.is_none() {
                st.available_at = Some(now_ts.clone());
            }
            let (p, m) = if completed(&tp) {
                let defer =
                    completed(&ap) || spec.analyses.iter().any(|a| a.required_for_completion);
                if tp == "Successful" && defer {
                    (ap, am)
                } else {
                    (tp, tm)
                }
            } else if (completed(&ap) && ap != "Successful") || required_successful(spec, &st) {
                (ap, am)
            } else {
                (tp, tm)
            };
            st.phase = p;
            st.message = m;
        }
        _ => {}
    }
    if old.phase != st.phase {
        let warning = matches!(st.phase.as_str(), "Error" | "Failed" | "Inconclusive");
        d.events.push((
            format!("Experiment{}", st.phase),
            format!("Experiment transitioned from {} -> {}", old.phase, st.phase),
            warning,
        ));
    }

    // The Progressing condition (Argo's `calculateExperimentConditions`).
    if st.phase == "Successful" {
        set_condition(
            &mut st,
            condition(
                "Progressing",
                "False",
                "ExperimentCompleted",
                format!("Experiment \"{name}\" has successfully ran and completed."),
                &now_ts,
            ),
        );
    } else if progressed(old, &st) {
        let mut c = condition(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            format!("Experiment \"{name}\" is progressing."),
            &now_ts,
        );
        if let Some(o) = old.conditions.iter().find(|c| c.type_ == "Progressing") {
            if o.status == "True" {
                c.last_transition_time = o.last_transition_time.clone();
            }
            st.conditions.retain(|c| c.type_ != "Progressing");
        }
        set_condition(&mut st, c);
    } else if old.available_at.is_some() && !passed_duration(spec, old, now) {
        set_condition(
            &mut st,
            condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("Experiment \"{name}\" is running."),
                &now_ts,
            ),
        );
    }

    // When to look again (Argo's `calculateEnqueueDuration`).
    if !is_terminating(spec, &st) {
        if let Some(end) = duration_end(spec, &st)
            && now <= end
        {
            // Just past the end: Argo's check is strictly after.
            d.requeue_in(until(now, end) + Duration::from_millis(1));
        }
        for t in &spec.templates {
            let Some(ts) = st.template_statuses.iter().find(|s| s.name == t.name) else {
                continue;
            };
            if !matches!(ts.status.as_str(), "Progressing" | "Running") {
                continue;
            }
            if ts.available_replicas != t.replicas()
                && let Some(from) = ts.last_transition_time.as_deref().and_then(parse_time)
            {
                let end = from + time::Duration::seconds(deadline_secs);
                d.requeue_in(until(now, end) + Duration::from_millis(1));
            }
        }
    }
    // Finished (or told to stop) this pass: the next one scales the templates down.
    if is_terminating(spec, &st) && !terminating {
        d.requeue_in(Duration::ZERO);
    }
    d.status = st;
    d
}

fn set_run_status(st: &mut ExperimentStatus, rs: ExperimentAnalysisRunStatus) {
    match st.analysis_runs.iter_mut().find(|r| r.name == rs.name) {
        Some(r) => *r = rs,
        None => st.analysis_runs.push(rs),
    }
}

/// The worst template status as an experiment phase, with its message.
fn assess_templates(spec: &ExperimentSpec, st: &ExperimentStatus) -> (String, String) {
    let mut worst = "Successful".to_string();
    let mut message = String::new();
    for t in &spec.templates {
        match st.template_statuses.iter().find(|s| s.name == t.name) {
            None => {
                if worse(&TEMPLATE_ORDER, &worst, "Progressing") {
                    worst = "Progressing".into();
                }
            }
            Some(s) => {
                if worse(&TEMPLATE_ORDER, &worst, &s.status) {
                    worst = s.status.clone();
                    message = s.message.clone();
                }
            }
        }
    }
    let phase = match worst.as_str() {
        "Progressing" => "Pending",
        "Failed" => "Failed",
        "Error" => "Error",
        "Successful" => "Successful",
        _ => "Running",
    };
    (phase.into(), message)
}

/// The worst analysis phase (Pending shown as Running), or Successful once the required runs
/// succeeded and none is worse than Running.
fn assess_analyses(spec: &ExperimentSpec, st: &ExperimentStatus) -> (String, String) {
    let mut worst = "Successful".to_string();
    let mut message = String::new();
    for a in &spec.analyses {
        if let Some(r) = st.analysis_runs.iter().find(|r| r.name == a.name)
            && worse(&ANALYSIS_ORDER, &worst, &r.phase)
        {
            worst = r.phase.clone();
            message = r.message.clone();
        }
    }
    if required_successful(spec, st) && !worse(&ANALYSIS_ORDER, "Running", &worst) {
        return (
            "Successful".into(),
            "Required AnalysisRuns completed".into(),
        );
    }
    if worst == "Pending" {
        worst = "Running".into();
    }
    (worst, message)
}

/// Argo's `ExperimentProgressing`: a template appeared or its counts changed.
fn progressed(old: &ExperimentStatus, new: &ExperimentStatus) -> bool {
    if old.template_statuses.len() < new.template_statuses.len() {
        return true;
    }
    old.template_statuses.iter().any(|o| {
        new.template_statuses.iter().any(|n| {
            n.name == o.name
                && (
                    n.replicas,
                    n.updated_replicas,
                    n.ready_replicas,
                    n.available_replicas,
                ) != (
                    o.replicas,
                    o.updated_replicas,
                    o.ready_replicas,
                    o.available_replicas,
                )
        })
    })
}

/// Argo's experiment argument values: `{{templates.<name>.podTemplateHash}}`,
/// `{{templates.<name>.replicaset.name}}`, `{{experiment.availableAt}}` and
/// `{{experiment.finishedAt}}`; an unknown one is an error naming it.
pub fn resolve_arg(
    value: &str,
    spec: &ExperimentSpec,
    st: &ExperimentStatus,
    sets: &BTreeMap<String, TemplateSet>,
) -> Result<String, String> {
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    if let Some(at) = &st.available_at {
        known.insert("experiment.availableAt".into(), at.clone());
        if let Some(end) = duration_end(spec, st) {
            known.insert(
                "experiment.finishedAt".into(),
                shipway_controller::clock::format_timestamp(end),
            );
        }
    }
    for t in &spec.templates {
        if let Some(s) = sets.get(&t.name) {
            known.insert(
                format!("templates.{}.podTemplateHash", t.name),
                s.hash.clone(),
            );
            known.insert(
                format!("templates.{}.replicaset.name", t.name),
                s.name.clone(),
            );
        }
    }
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let tag = &after[..end];
        match known.get(tag.trim()) {
            Some(v) => out.push_str(v),
            None => return Err(format!("failed to resolve {{{{{tag}}}}}")),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
