//! Argo Rollouts' `Rollout` (`argoproj.io/v1alpha1`): its spec (canary and blue-green
//! strategies, steps, analysis references, traffic routing) and its status as Argo's controller
//! writes it (phase, message, conditions, `currentStepIndex`, `stableRS`, `canary.weights`,
//! `pauseConditions`, `abort`, ...), with Argo's field names. The controller lives in
//! `shipway-rollout`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::analysis::{Argument, MeasurementRetention, MetricRule};
use super::apps::{LabelSelector, PodTemplateSpec};
use super::condition::Condition;
use super::int_or_string::IntOrString;

pub const GROUP: &str = "argoproj.io";
pub const KIND: &str = "Rollout";

fn is_false(b: &bool) -> bool {
    !*b
}

/// `null` read as absent: `kubectl argo rollouts promote` writes `pauseConditions: null`.
/// A field that is present stays present, `null` included (absent is `None`).
fn keep_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
    /// A Deployment whose template the Rollout uses (kept as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i64>,
    /// Defaults to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i64>,
    /// Defaults to 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_abort: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// RFC 3339: pods older than this are restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_window: Option<Value>,
    #[serde(default)]
    pub strategy: RolloutStrategy,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl RolloutSpec {
    pub fn replicas(&self) -> i64 {
        self.replicas.unwrap_or(1).max(0)
    }

    pub fn is_paused(&self) -> bool {
        self.paused == Some(true)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_service: Option<String>,
    /// Kept as written (`steps: []` included); read through [`CanaryStrategy::steps`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<CanaryStep>>,
    /// Background analysis, from `startingStep` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    /// The routers named (`nginx`, `istio`, `smi`, `alb`, ...), kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_scale_down_delay_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_stable_scale: Option<bool>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl CanaryStrategy {
    pub fn steps(&self) -> &[CanaryStep] {
        self.steps.as_deref().unwrap_or_default()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<RolloutPause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_canary_scale: Option<SetCanaryScale>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_header_route: Option<SetHeaderRoute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_mirror_route: Option<SetMirrorRoute>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPause {
    /// Seconds (`30`) or a duration (`"30s"`, `"1h"`); none waits for a promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<IntOrString>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl RolloutPause {
    /// The duration in seconds, as Argo's `DurationSeconds` reads it; `Err` names what is wrong.
    pub fn duration_seconds(&self) -> Option<Result<i64, String>> {
        let d = self.duration.as_ref()?;
        Some(match d {
            IntOrString::Int(n) => Ok(*n),
            IntOrString::String(s) => s.parse::<i64>().or_else(|_| {
                super::repository::parse_duration(s)
                    .map(|d| d.as_secs() as i64)
                    .ok_or_else(|| format!("invalid duration {s:?}"))
            }),
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetCanaryScale {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_traffic_weight: Option<bool>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetHeaderRoute {
    #[serde(default)]
    pub name: String,
    /// No match removes the route.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<HeaderRoutingMatch>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderRoutingMatch {
    pub header_name: String,
    #[serde(default)]
    pub header_value: StringMatch,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetMirrorRoute {
    #[serde(default)]
    pub name: String,
    /// Percent of the requests copied to the canary (Argo's default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<i64>,
    /// Which requests are mirrored (method, path, headers), kept as written.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<Value>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// An analysis a Rollout starts: templates, the arguments it gives them, and for background
/// analysis the step it starts at.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysis {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<AnalysisTemplateRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<MetricRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_step: Option<i64>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateRef {
    #[serde(default)]
    pub template_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_scope: Option<bool>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promotion_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_replica_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay_revision_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_scale_down_delay_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<RolloutAnalysis>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// The status as Argo's controller writes it. The user's intents arrive here too, as
/// `kubectl argo rollouts` patches them: `abort: true` (abort), `abort: false` (retry),
/// `promoteFull: true` (promote --full), `pauseConditions: null` (promote).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "HPAReplicas"
    )]
    pub hpa_replicas: Option<i64>,
    /// Read through [`RolloutStatus::aborted`], written through [`RolloutStatus::set_abort`];
    /// kept as written (`null` and `false` included) until then.
    #[serde(
        default,
        deserialize_with = "keep_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub abort: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_replicas: Option<i64>,
    /// Argo writes `blueGreen: {}` and `canary: {}` always; absent ones stay absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collision_count: Option<i64>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub conditions: Vec<Condition>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub controller_pause: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_pod_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_index: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A string, as Argo writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub pause_conditions: Vec<PauseCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub promote_full: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "stableRS")]
    pub stable_rs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_replicas: Option<i64>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl RolloutStatus {
    pub fn aborted(&self) -> bool {
        self.abort == Some(Value::Bool(true))
    }

    /// `abort: true`, or no `abort` (as Argo omits a false one).
    pub fn set_abort(&mut self, abort: bool) {
        self.abort = abort.then_some(Value::Bool(true));
    }

    pub fn canary(&self) -> &CanaryStatus {
        static EMPTY: std::sync::LazyLock<CanaryStatus> =
            std::sync::LazyLock::new(CanaryStatus::default);
        self.canary.as_ref().unwrap_or(&EMPTY)
    }

    pub fn canary_mut(&mut self) -> &mut CanaryStatus {
        self.canary.get_or_insert_with(CanaryStatus::default)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseCondition {
    /// `CanaryPauseStep`, `BlueGreenPause` or `InconclusiveAnalysisRun`.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_background_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<TrafficWeights>,
    /// The Experiment of the current `experiment` step while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_experiment: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutAnalysisRunStatus {
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficWeights {
    pub canary: WeightDestination,
    pub stable: WeightDestination,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightDestination {
    #[serde(default)]
    pub weight: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_preview_check_point: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis_run_status: Option<RolloutAnalysisRunStatus>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_aborted_status_reads_as_argo_wrote_it_and_writes_back_the_same() {
        let status = json!({
            "HPAReplicas": 1, "abort": true, "abortedAt": "2020-09-22T09:10:05Z",
            "availableReplicas": 1, "blueGreen": {},
            "canary": {"currentBackgroundAnalysisRunStatus": {"message": "m", "name": "r", "status": "Failed"},
                "weights": {"canary": {"weight": 0, "podTemplateHash": "a", "serviceName": "c"},
                    "stable": {"weight": 100, "podTemplateHash": "b", "serviceName": "s"}}},
            "conditions": [{"type": "Progressing", "status": "False", "reason": "RolloutAborted", "message": "m",
                "lastTransitionTime": "t", "lastUpdateTime": "t"}],
            "currentPodHash": "db976bc44", "currentStepIndex": 0, "observedGeneration": "15",
            "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "t"}],
            "stableRS": "7d84d44bb8", "selector": "app=x", "somethingNew": [1],
        });
        let s: RolloutStatus = serde_json::from_value(status.clone()).unwrap();
        assert!(s.aborted());
        assert_eq!(s.stable_rs.as_deref(), Some("7d84d44bb8"));
        assert_eq!(s.observed_generation.as_deref(), Some("15"));
        assert_eq!(s.canary().weights.as_ref().unwrap().stable.weight, 100);
        assert_eq!(s.pause_conditions[0].reason, "CanaryPauseStep");
        assert_eq!(super::super::to_value(&s), status);
        // What `kubectl argo rollouts promote` writes.
        let promoted: RolloutStatus =
            serde_json::from_value(json!({"pauseConditions": null, "controllerPause": true}))
                .unwrap();
        assert!(promoted.pause_conditions.is_empty() && promoted.controller_pause);
    }

    #[test]
    fn pause_durations_read_as_argo_reads_them() {
        let p = |v: Value| serde_json::from_value::<RolloutPause>(json!({"duration": v})).unwrap();
        assert_eq!(p(json!(30)).duration_seconds(), Some(Ok(30)));
        assert_eq!(p(json!("30")).duration_seconds(), Some(Ok(30)));
        assert_eq!(p(json!("1m")).duration_seconds(), Some(Ok(60)));
        assert!(p(json!("soon")).duration_seconds().unwrap().is_err());
        assert_eq!(RolloutPause::default().duration_seconds(), None);
    }
}
