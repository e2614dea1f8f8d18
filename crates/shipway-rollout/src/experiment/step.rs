//! The canary `experiment` step: its fields, the checks Argo makes of it, and the Experiment
//! it becomes (Argo's `GetExperimentFromTemplate`): each template a copy of the stable or
//! canary ReplicaSet's pod template, named `<rollout>-<podhash>-<revision>-<stepindex>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use shipway_model::types::{IntOrString, LabelSelector, MetricRule, ReplicaSetSpec};
use shipway_model::{Object, ObjectMeta};
use shipway_runtime::workload::controller_ref;

use super::{ExperimentAnalysis, RunMetadata, TemplateService};
use crate::rollout::{POD_TEMPLATE_HASH, REVISION};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStep {
    #[serde(default)]
    pub templates: Vec<StepTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<ExperimentAnalysis>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<MetricRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_run_metadata: Option<RunMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i64>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepTemplate {
    #[serde(default)]
    pub name: String,
    /// `stable` or `canary`: whose pod template to run.
    #[serde(default)]
    pub spec_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RunMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<TemplateService>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

pub fn parse(v: &Value) -> Result<ExperimentStep, String> {
    serde_json::from_value(v.clone()).map_err(|e| e.to_string())
}

/// The step's fields Shipway does not act on, by path.
pub fn unsupported(v: &Value, i: usize) -> Vec<String> {
    let Ok(step) = parse(v) else {
        return Vec::new();
    };
    let path = format!("spec.strategy.canary.steps[{i}].experiment");
    let mut out: Vec<String> = step.rest.keys().map(|k| format!("{path}.{k}")).collect();
    for (j, t) in step.templates.iter().enumerate() {
        if t.weight.is_some() {
            out.push(format!(
                "{path}.templates[{j}].weight (Shipway's proxy does not route a share of traffic to an experiment's Service)"
            ));
        }
        out.extend(t.rest.keys().map(|k| format!("{path}.templates[{j}].{k}")));
    }
    out
}

/// What Argo's validation checks of the step (and what its Experiment needs to be built).
pub fn validate(rollout: &str, v: &Value, i: usize, traffic_routing: bool) -> Result<(), String> {
    let path = format!("spec.strategy.canary.steps[{i}].experiment");
    let step = parse(v).map_err(|e| crate::rollout::invalid(rollout, &path, &v.to_string(), &e))?;
    for (j, t) in step.templates.iter().enumerate() {
        if let Some(w) = t.weight
            && !traffic_routing
        {
            return Err(crate::rollout::invalid(
                rollout,
                &format!("{path}.templates[{j}].weight"),
                &w.to_string(),
                "Experiment template weight cannot be set unless TrafficRouting is enabled",
            ));
        }
        if t.spec_ref != "stable" && t.spec_ref != "canary" {
            return Err(crate::rollout::invalid(
                rollout,
                &format!("{path}.templates[{j}].specRef"),
                &t.spec_ref,
                "Invalid template step SpecRef: must be canary or stable",
            ));
        }
    }
    Ok(())
}

/// The Experiment for the step at `index` (Argo's `GetExperimentFromTemplate`).
#[allow(clippy::too_many_arguments)]
pub fn experiment(
    ro: &Object,
    step: &ExperimentStep,
    index: usize,
    hash: &str,
    revision: i64,
    progress_deadline_seconds: Option<i64>,
    stable_rs: &Object,
    canary_rs: &Object,
) -> Result<Object, String> {
    let mut templates = Vec::new();
    for t in &step.templates {
        let rs = match t.spec_ref.as_str() {
            "canary" => canary_rs,
            "stable" => stable_rs,
            _ => return Err("Invalid template step SpecRef: must be canary or stable".into()),
        };
        let rs_spec: ReplicaSetSpec = rs.spec_as().map_err(|e| e.to_string())?;
        let mut template = rs
            .spec()
            .and_then(|s| s.get("template"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut selector = t
            .selector
            .clone()
            .or(rs_spec.selector.clone())
            .unwrap_or_default();
        if let Some(m) = &t.metadata {
            let meta = template
                .as_object_mut()
                .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
            if let Some(meta) = meta.and_then(Value::as_object_mut) {
                for (field, values) in [("labels", &m.labels), ("annotations", &m.annotations)] {
                    if values.is_empty() {
                        continue;
                    }
                    let map = meta.entry(field).or_insert_with(|| json!({}));
                    if let Some(map) = map.as_object_mut() {
                        for (k, v) in values {
                            map.insert(k.clone(), Value::String(v.clone()));
                        }
                    }
                }
            }
            for (k, v) in &m.labels {
                selector.match_labels.insert(k.clone(), v.clone());
            }
        }
        let mut out = json!({
            "name": t.name,
            "template": template,
            "selector": selector,
        });
        if let Some(r) = t.replicas {
            out["replicas"] = json!(r);
        }
        if let Some(s) = rs_spec.min_ready_seconds.filter(|s| *s > 0) {
            out["minReadySeconds"] = json!(s);
        }
        if t.weight.is_some() || t.service.is_some() {
            let name = t
                .service
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            out["service"] = if name.is_empty() {
                json!({})
            } else {
                json!({ "name": name })
            };
        }
        templates.push(out);
    }
    let mut spec = json!({ "templates": templates });
    if let Some(d) = &step.duration {
        spec["duration"] = serde_json::to_value(d).unwrap_or_default();
    }
    if let Some(p) = progress_deadline_seconds {
        spec["progressDeadlineSeconds"] = json!(p);
    }
    if !step.dry_run.is_empty() {
        spec["dryRun"] = serde_json::to_value(&step.dry_run).unwrap_or_default();
    }
    if let Some(m) = &step.analysis_run_metadata {
        spec["analysisRunMetadata"] = serde_json::to_value(m).unwrap_or_default();
    }
    if let Some(s) = step.scale_down_delay_seconds {
        spec["scaleDownDelaySeconds"] = json!(s);
    }
    if !step.analyses.is_empty() {
        spec["analyses"] = serde_json::to_value(&step.analyses).unwrap_or_default();
    }
    let mut labels: BTreeMap<String, String> = ro.metadata.labels.clone();
    labels.insert(POD_TEMPLATE_HASH.into(), hash.into());
    Ok(Object {
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Experiment".into(),
        metadata: ObjectMeta {
            name: format!("{}-{hash}-{revision}-{index}", ro.metadata.name),
            namespace: ro.metadata.namespace.clone(),
            labels,
            annotations: [(REVISION.to_string(), revision.to_string())].into(),
            owner_references: vec![controller_ref(ro)],
            ..ObjectMeta::default()
        },
        body: [("spec".to_string(), spec)].into_iter().collect(),
    })
}
