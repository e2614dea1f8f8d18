//! Deployments and ReplicaSets (`apps/v1`): their specs, strategies and statuses, the pod
//! template both carry, and the label selector.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::condition::Condition;
use super::int_or_string::IntOrString;
use super::pod::PodSpec;
use crate::selector::{Selector, SelectorError};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl LabelSelector {
    /// The selector these fields describe, checked as [`Selector::from_label_selector`] checks it.
    pub fn to_selector(&self) -> Result<Selector, SelectorError> {
        Selector::from_label_selector(&super::to_value(self))
    }
}

/// The metadata of a pod template: the labels and annotations its pods get.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMeta {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PodSpec>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl PodTemplateSpec {
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.metadata
            .as_ref()
            .map(|m| m.labels.clone())
            .unwrap_or_default()
    }

    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.metadata
            .as_ref()
            .map(|m| m.annotations.clone())
            .unwrap_or_default()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<DeploymentStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i64>,
    /// Defaults to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i64>,
    /// Defaults to 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl DeploymentSpec {
    /// `replicas`, defaulted as Kubernetes defaults it.
    pub fn replicas(&self) -> i64 {
        self.replicas.unwrap_or(1).max(0)
    }

    pub fn is_paused(&self) -> bool {
        self.paused == Some(true)
    }

    pub fn is_recreate(&self) -> bool {
        self.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate")
    }

    fn rolling_update(&self) -> Option<&RollingUpdateDeployment> {
        self.strategy.as_ref()?.rolling_update.as_ref()
    }

    /// `maxSurge` against `replicas`: 25% by default, rounded up, as Kubernetes resolves it.
    pub fn max_surge(&self, replicas: i64) -> Result<i64, String> {
        let v = self.rolling_update().and_then(|r| r.max_surge.as_ref());
        scaled(v, replicas, true).map_err(|e| format!("spec.strategy.rollingUpdate.maxSurge: {e}"))
    }

    /// `maxUnavailable` against `replicas`: 25% by default, rounded down.
    pub fn max_unavailable(&self, replicas: i64) -> Result<i64, String> {
        let v = self
            .rolling_update()
            .and_then(|r| r.max_unavailable.as_ref());
        scaled(v, replicas, false)
            .map_err(|e| format!("spec.strategy.rollingUpdate.maxUnavailable: {e}"))
    }
}

fn scaled(v: Option<&IntOrString>, total: i64, round_up: bool) -> Result<i64, String> {
    match v {
        Some(v) => v.scaled_value(total, round_up),
        None => IntOrString::from("25%").scaled_value(total, round_up),
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStrategy {
    /// `RollingUpdate` (the default) or `Recreate`.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdateDeployment>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdateDeployment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A Deployment's status, fields in the order Shipway has always written them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetSpec {
    /// Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl ReplicaSetSpec {
    pub fn replicas(&self) -> i64 {
        self.replicas.unwrap_or(1).max(0)
    }
}

/// A ReplicaSet's status, fields in the order Shipway has always written them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetStatus {
    #[serde(default)]
    pub replicas: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fully_labeled_replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}
