//! The canary decisions as tables: a spec, a stored status and the ReplicaSets in; the
//! decision out. No store, no clock: time is an argument.

use super::*;
use serde_json::json;
use shipway_model::types::rollout::{RolloutSpec, RolloutStatus};

const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(T0 + secs).unwrap()
}

fn ts(secs: i64) -> String {
    shipway_controller::clock::format_timestamp(at(secs))
}

fn spec(v: serde_json::Value) -> RolloutSpec {
    let mut base = json!({
        "replicas": 5,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:2"}]}},
        "strategy": {"canary": {}},
    });
    merge(&mut base, v);
    serde_json::from_value(base).unwrap()
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn routed(steps: serde_json::Value) -> RolloutSpec {
    spec(json!({"strategy": {"canary": {
        "stableService": "web", "canaryService": "web-canary",
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": steps,
    }}}))
}

fn status(v: serde_json::Value) -> RolloutStatus {
    serde_json::from_value(v).unwrap()
}

/// A ReplicaSet with hash `hash` at `revision`: (spec replicas, available).
fn rs(hash: &str, revision: i64, replicas: i64, available: i64) -> Set {
    Set {
        name: format!("web-{hash}"),
        hash: hash.into(),
        revision,
        replicas,
        status_replicas: replicas,
        ready: available,
        available,
        scale_down_deadline: None,
    }
}

struct Case {
    spec: RolloutSpec,
    status: RolloutStatus,
    hash: &'static str,
    sets: Vec<Set>,
    step_run: Option<Run>,
    step_experiment: Option<Run>,
    now: i64,
}

impl Case {
    fn new(spec: RolloutSpec, status: RolloutStatus, hash: &'static str, sets: Vec<Set>) -> Case {
        Case {
            spec,
            status,
            hash,
            sets,
            step_run: None,
            step_experiment: None,
            now: 0,
        }
    }

    fn decide(&self) -> Decision {
        let canary = self.spec.strategy.canary.clone().unwrap();
        let step_hash = "steps";
        decide(&Input {
            name: "web",
            generation: 3,
            spec: &self.spec,
            canary: &canary,
            status: &self.status,
            hash: self.hash,
            step_hash,
            sets: &self.sets,
            step_run: self.step_run.clone(),
            background_run: None,
            step_experiment: self.step_experiment.clone(),
            now: at(self.now),
        })
    }
}

fn phase_of(d: &Decision) -> (String, String) {
    (
        d.status.phase.clone().unwrap_or_default(),
        d.status.message.clone().unwrap_or_default(),
    )
}

fn weight(d: &Decision) -> i64 {
    d.traffic.as_ref().unwrap().canary_weight
}

/// A rollout mid-update from `a` (stable) to `b`, at step `index`.
fn mid(index: i64, extra: serde_json::Value) -> RolloutStatus {
    let mut s = json!({"stableRS": "a", "currentPodHash": "b", "currentStepHash": "steps",
        "currentStepIndex": index, "observedGeneration": "3"});
    merge(&mut s, extra);
    status(s)
}

#[test]
fn a_first_deploy_goes_straight_to_full_and_is_healthy_once_available() {
    let s = routed(json!([{"setWeight": 20}, {"pause": {}}]));
    let d = Case::new(s.clone(), RolloutStatus::default(), "a", vec![]).decide();
    assert_eq!(d.create, Some((1, 5)));
    assert_eq!(d.status.stable_rs.as_deref(), Some("a"));
    assert_eq!(d.status.current_step_index, Some(2));
    assert_eq!(
        phase_of(&d),
        (
            "Progressing".into(),
            "more replicas need to be updated".into()
        )
    );
    let d = Case::new(s, d.status.clone(), "a", vec![rs("a", 1, 5, 5)]).decide();
    assert_eq!(d.create, None);
    assert!(d.scale.is_empty());
    assert_eq!(phase_of(&d), ("Healthy".into(), String::new()));
    let progressing = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        progressing.message.as_deref(),
        Some("ReplicaSet \"web-a\" has successfully progressed.")
    );
    assert_eq!(weight(&d), 0);
}

#[test]
fn traffic_weight_updated_only_when_the_weight_changes() {
    let s = routed(json!([{"setWeight": 20}, {"pause": {}}]));
    let start = status(
        json!({"stableRS": "a", "currentPodHash": "a", "currentStepIndex": 2,
        "currentStepHash": "steps", "canary": {"weights": {
            "canary": {"weight": 0, "serviceName": "web-canary", "podTemplateHash": "a"},
            "stable": {"weight": 100, "serviceName": "web", "podTemplateHash": "a"}}}}),
    );
    let updated = |d: &Decision| -> Vec<String> {
        d.events
            .iter()
            .filter(|e| e.0 == "TrafficWeightUpdated")
            .map(|e| e.1.clone())
            .collect()
    };
    // A new canary hash at weight 0: not "from 0 to 0".
    let d = Case::new(s.clone(), start, "b", vec![rs("a", 1, 5, 5)]).decide();
    assert_eq!(weight(&d), 0);
    assert_eq!(updated(&d), Vec::<String>::new());
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 1, 1)];
    let d = Case::new(s.clone(), d.status.clone(), "b", sets.clone()).decide();
    assert_eq!(
        updated(&d),
        vec!["Traffic weight updated from 0 to 20".to_string()]
    );
    // Unchanged on the next pass.
    let d = Case::new(s, d.status.clone(), "b", sets).decide();
    assert_eq!(updated(&d), Vec::<String>::new());
}

#[test]
fn set_weight_waits_for_the_canary_before_moving_traffic_then_completes() {
    let s = routed(json!([{"setWeight": 20}, {"pause": {}}]));
    let start = status(
        json!({"stableRS": "a", "currentPodHash": "a", "currentStepIndex": 2,
        "currentStepHash": "steps"}),
    );
    // New template: a ReplicaSet of 1 (20 % of 5), no traffic until it is available.
    let d = Case::new(s.clone(), start, "b", vec![rs("a", 1, 5, 5)]).decide();
    assert_eq!(d.create, Some((2, 1)));
    assert_eq!(d.status.current_step_index, Some(0));
    assert_eq!(weight(&d), 0);
    assert_eq!(
        phase_of(&d),
        (
            "Progressing".into(),
            "more replicas need to be updated".into()
        )
    );
    // Available: 20 % now.
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 1, 1)];
    let d = Case::new(s.clone(), d.status.clone(), "b", sets.clone()).decide();
    assert_eq!(weight(&d), 20);
    assert_eq!(d.status.current_step_index, Some(0));
    let w = d.status.canary().weights.clone().unwrap();
    assert_eq!((w.canary.weight, w.stable.weight), (20, 80));
    assert_eq!(w.canary.pod_template_hash.as_deref(), Some("b"));
    assert_eq!(w.stable.service_name.as_deref(), Some("web"));
    // The weight is in place: the step is done; the pause step then waits.
    let d = Case::new(s.clone(), d.status.clone(), "b", sets.clone()).decide();
    assert_eq!(d.status.current_step_index, Some(1));
    assert!(
        d.events
            .iter()
            .any(|e| e.1 == "Rollout step 1/2 completed (setWeight: 20)")
    );
    let d = Case::new(s, d.status.clone(), "b", sets).decide();
    assert_eq!(d.status.pause_conditions[0].reason, "CanaryPauseStep");
    assert!(d.status.controller_pause);
    assert_eq!(phase_of(&d), ("Paused".into(), "CanaryPauseStep".into()));
    assert_eq!(weight(&d), 20);
}

#[test]
fn pause_without_duration_waits_for_the_promote_the_cli_writes() {
    let s = routed(json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 40}]));
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 1, 1)];
    let paused = mid(
        1,
        json!({"controllerPause": true,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": ts(0)}],
        "canary": {"weights": {"canary": {"weight": 20, "podTemplateHash": "b"}, "stable": {"weight": 80, "podTemplateHash": "a"}}}}),
    );
    let mut c = Case::new(s.clone(), paused.clone(), "b", sets.clone());
    c.now = 100_000;
    let d = c.decide();
    assert_eq!(d.status.current_step_index, Some(1));
    assert_eq!(d.status.pause_conditions.len(), 1);
    assert_eq!(d.requeue, None);
    // `kubectl argo rollouts promote`: pauseConditions null, controllerPause still true.
    let mut promoted = paused;
    promoted.pause_conditions.clear();
    let d = Case::new(s, promoted, "b", sets).decide();
    assert_eq!(d.status.current_step_index, Some(2));
    assert!(!d.status.controller_pause);
    assert!(d.status.pause_conditions.is_empty());
}

#[test]
fn pause_with_a_duration_resumes_by_itself() {
    let s = routed(json!([{"setWeight": 20}, {"pause": {"duration": "10s"}}, {"setWeight": 40}]));
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 1, 1)];
    let w = json!({"canary": {"weights": {"canary": {"weight": 20, "podTemplateHash": "b"}, "stable": {"weight": 80, "podTemplateHash": "a"}}}});
    let d = Case::new(s.clone(), mid(1, w.clone()), "b", sets.clone()).decide();
    assert_eq!(
        d.status.pause_conditions[0].start_time.as_deref(),
        Some(ts(0).as_str())
    );
    assert_eq!(d.requeue, Some(Duration::from_secs(10)));
    let mut c = Case::new(s.clone(), d.status.clone(), "b", sets.clone());
    c.now = 4;
    let d4 = c.decide();
    assert_eq!(d4.status.current_step_index, Some(1));
    assert_eq!(d4.requeue, Some(Duration::from_secs(6)));
    c.now = 10;
    let d10 = c.decide();
    assert_eq!(d10.status.current_step_index, Some(2));
    assert!(d10.status.pause_conditions.is_empty());
}

#[test]
fn abort_sends_traffic_back_at_once_and_scales_the_canary_down_after_the_delay() {
    let s = routed(json!([{"setWeight": 40}, {"pause": {}}]));
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 2, 2)];
    let aborting = mid(
        1,
        json!({"abort": true, "controllerPause": true,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": ts(0)}],
        "canary": {"weights": {"canary": {"weight": 40, "podTemplateHash": "b"}, "stable": {"weight": 60, "podTemplateHash": "a"}}}}),
    );
    let d = Case::new(s.clone(), aborting, "b", sets.clone()).decide();
    assert_eq!(weight(&d), 0);
    assert!(d.scale.is_empty(), "{:?}", d.scale);
    assert_eq!(d.status.aborted_at.as_deref(), Some(ts(0).as_str()));
    assert_eq!(d.status.current_step_index, Some(0));
    assert!(d.status.pause_conditions.is_empty());
    assert_eq!(
        phase_of(&d),
        (
            "Degraded".into(),
            "RolloutAborted: Rollout aborted update to revision 2".into()
        )
    );
    assert!(d.events.iter().any(|e| e.0 == "RolloutAborted" && e.2));
    assert_eq!(d.requeue, Some(Duration::from_secs(30)));
    let mut c = Case::new(s, d.status.clone(), "b", sets);
    c.now = 30;
    let d = c.decide();
    assert_eq!(d.scale, vec![("web-b".to_string(), 0)]);
    assert_eq!(phase_of(&d).0, "Degraded");
}

#[test]
fn a_failed_step_analysis_aborts_with_the_metrics_message_and_retry_restarts_the_steps() {
    let s =
        routed(json!([{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "rate"}]}}]));
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 1, 1)];
    let w = json!({"canary": {"currentStepAnalysisRunStatus": {"name": "web-b-2-1", "status": "Running"},
        "weights": {"canary": {"weight": 20, "podTemplateHash": "b"}, "stable": {"weight": 80, "podTemplateHash": "a"}}}});
    let mut c = Case::new(s.clone(), mid(1, w), "b", sets.clone());
    c.step_run = Some(Run {
        name: "web-b-2-1".into(),
        phase: "Running".into(),
        message: String::new(),
    });
    let d = c.decide();
    assert_eq!(d.status.current_step_index, Some(1));
    assert!(!d.status.aborted());
    let message = "Metric \"rate\" assessed Failed due to failed (1) > failureLimit (0)";
    c.step_run = Some(Run {
        name: "web-b-2-1".into(),
        phase: "Failed".into(),
        message: message.into(),
    });
    let d = c.decide();
    assert!(d.status.aborted());
    assert_eq!(weight(&d), 0);
    assert_eq!(d.status.current_step_index, Some(0));
    assert_eq!(
        phase_of(&d),
        (
            "Degraded".into(),
            format!("RolloutAborted: Rollout aborted update to revision 2: {message}")
        )
    );
    let run = d
        .status
        .canary()
        .current_step_analysis_run_status
        .clone()
        .unwrap();
    assert_eq!(
        (run.status.as_str(), run.message.as_deref()),
        ("Failed", Some(message))
    );
    // The message stays while aborted.
    let mut again = Case::new(s.clone(), d.status.clone(), "b", sets.clone());
    again.now = 5;
    assert_eq!(phase_of(&again.decide()).1, phase_of(&d).1);
    // `kubectl argo rollouts retry`: abort false. The steps start over.
    let mut retried = d.status.clone();
    retried.abort = Some(serde_json::Value::Bool(false));
    let d = Case::new(s, retried, "b", sets).decide();
    assert!(!d.status.aborted());
    assert_eq!(d.status.aborted_at, None);
    assert_eq!(d.status.current_step_index, Some(0));
    assert_eq!(d.status.canary().current_step_analysis_run_status, None);
    assert_eq!(weight(&d), 20);
    assert_eq!(phase_of(&d).0, "Progressing");
}

#[test]
fn an_inconclusive_analysis_pauses_and_a_promote_moves_past_it() {
    let s =
        routed(json!([{"analysis": {"templates": [{"templateName": "rate"}]}}, {"setWeight": 50}]));
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 0, 0)];
    let st = mid(
        0,
        json!({"canary": {"currentStepAnalysisRunStatus": {"name": "r", "status": "Running"}}}),
    );
    let mut c = Case::new(s.clone(), st, "b", sets.clone());
    c.step_run = Some(Run {
        name: "r".into(),
        phase: "Inconclusive".into(),
        message: String::new(),
    });
    let d = c.decide();
    assert_eq!(
        d.status.pause_conditions[0].reason,
        "InconclusiveAnalysisRun"
    );
    assert!(d.status.controller_pause);
    assert_eq!(
        phase_of(&d),
        ("Paused".into(), "InconclusiveAnalysisRun".into())
    );
    let mut promoted = d.status.clone();
    promoted.pause_conditions.clear();
    c.status = promoted;
    let d = c.decide();
    assert_eq!(d.status.current_step_index, Some(1));
    assert!(!d.status.controller_pause);
}

#[test]
fn an_analysis_step_starts_its_run_once() {
    let s = routed(json!([{"analysis": {"templates": [{"templateName": "rate"}]}}]));
    let d = Case::new(
        s,
        mid(0, json!({})),
        "b",
        vec![rs("a", 1, 5, 5), rs("b", 2, 0, 0)],
    )
    .decide();
    assert_eq!(d.start_runs, vec![StartRun::Step(0)]);
}

#[test]
fn promote_full_skips_the_remaining_steps() {
    let s = routed(json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]));
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 1, 1)];
    let st = mid(
        1,
        json!({"promoteFull": true, "controllerPause": true,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": ts(0)}]}),
    );
    let d = Case::new(s.clone(), st, "b", sets).decide();
    assert_eq!(d.status.current_step_index, Some(3));
    assert!(d.status.pause_conditions.is_empty());
    assert_eq!(d.scale, vec![("web-b".to_string(), 5)]);
    // Once the canary is fully available it becomes stable; the old one waits its delay.
    let d = Case::new(
        s.clone(),
        d.status.clone(),
        "b",
        vec![rs("a", 1, 5, 5), rs("b", 2, 5, 5)],
    )
    .decide();
    assert_eq!(d.status.stable_rs.as_deref(), Some("b"));
    assert!(!d.status.promote_full);
    let d = Case::new(
        s,
        d.status.clone(),
        "b",
        vec![rs("a", 1, 5, 5), rs("b", 2, 5, 5)],
    )
    .decide();
    assert_eq!(weight(&d), 0);
    assert_eq!(d.traffic.as_ref().unwrap().stable_hash, "b");
    assert_eq!(d.deadlines.len(), 1);
    assert_eq!(d.deadlines[0].0, "web-a");
}

#[test]
fn going_back_to_the_stable_template_is_a_fast_rollback() {
    let s = routed(json!([{"setWeight": 20}, {"pause": {}}]));
    let st = mid(
        1,
        json!({"controllerPause": true,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": ts(0)}]}),
    );
    let d = Case::new(s, st, "a", vec![rs("a", 1, 5, 5), rs("b", 2, 1, 1)]).decide();
    assert_eq!(d.status.current_step_index, Some(2));
    assert_eq!(d.status.current_pod_hash.as_deref(), Some("a"));
    assert!(d.status.pause_conditions.is_empty());
    assert!(d.events.iter().any(|e| e.0 == "SkipSteps"));
    assert_eq!(d.set_revision, Some(("web-a".to_string(), 3)));
    assert_eq!(weight(&d), 0);
}

#[test]
fn a_basic_canary_follows_replica_counts() {
    assert_eq!(basic_counts(5, 20, 2), (1, 4));
    assert_eq!(basic_counts(10, 40, 3), (4, 6));
    assert_eq!(basic_counts(4, 50, 1), (2, 2));
    assert_eq!(basic_counts(1, 50, 0), (1, 0));
    assert_eq!(basic_counts(3, 0, 1), (0, 3));
    let s = spec(json!({"strategy": {"canary": {"maxUnavailable": 0,
        "steps": [{"setWeight": 20}, {"pause": {}}]}}}));
    let d = Case::new(s.clone(), mid(0, json!({})), "b", vec![rs("a", 1, 5, 5)]).decide();
    assert_eq!(d.create, Some((2, 1)));
    assert!(d.traffic.is_none());
    // With maxUnavailable 0 the stable side scales down only once the canary is available.
    let d = Case::new(
        s.clone(),
        mid(0, json!({})),
        "b",
        vec![rs("a", 1, 5, 5), rs("b", 2, 1, 0)],
    )
    .decide();
    assert!(d.scale.iter().all(|(n, _)| n != "web-a"), "{:?}", d.scale);
    let d = Case::new(
        s,
        mid(0, json!({})),
        "b",
        vec![rs("a", 1, 5, 5), rs("b", 2, 1, 1)],
    )
    .decide();
    assert_eq!(d.scale, vec![("web-a".to_string(), 4)]);
}

#[test]
fn spec_paused_holds_the_steps() {
    let mut s = routed(json!([{"setWeight": 20}, {"pause": {"duration": 1}}]));
    s.paused = Some(true);
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 1, 1)];
    let w = json!({"canary": {"weights": {"canary": {"weight": 20, "podTemplateHash": "b"}, "stable": {"weight": 80, "podTemplateHash": "a"}}}});
    let d = Case::new(s, mid(0, w), "b", sets).decide();
    assert_eq!(d.status.current_step_index, Some(0));
    assert_eq!(phase_of(&d), ("Paused".into(), "manually paused".into()));
}

#[test]
fn invalid_specs_get_argos_messages() {
    let both =
        spec(json!({"strategy": {"blueGreen": {"activeService": "a", "previewService": "b"}}}));
    assert_eq!(
        validate("web", &both).unwrap_err(),
        "The Rollout \"web\" is invalid: spec.strategy.strategy: Invalid value: \"blueGreen: true canary: true\": Multiple Strategies can not be listed"
    );
    let same = spec(json!({"strategy": {"canary": {"stableService": "s", "canaryService": "s"}}}));
    assert_eq!(
        validate("web", &same).unwrap_err(),
        "The Rollout \"web\" is invalid: spec.strategy.stableService: Invalid value: \"s\": This rollout uses the same service for the stable and canary services, but two different services are required."
    );
    // The corpus' rollout-invalid, word for word.
    let labels = spec(json!({"selector": {"matchLabels": {"app": "basic"}},
        "template": {"metadata": {"labels": {"app": "doesnt-match"}}}}));
    assert_eq!(
        validate("rollout-invalid", &labels).unwrap_err(),
        "The Rollout \"rollout-invalid\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"doesnt-match\"}: `selector` does not match template `labels`"
    );
    let weight = spec(json!({"strategy": {"canary": {"steps": [{"setWeight": 120}]}}}));
    assert!(
        validate("web", &weight)
            .unwrap_err()
            .ends_with("SetWeight needs to be between 0 and 100")
    );
    let st = invalid_status(&RolloutStatus::default(), 3, "bad", &ts(0), &same);
    assert_eq!(st.phase.as_deref(), Some("Degraded"));
    assert_eq!(st.message.as_deref(), Some("InvalidSpec: bad"));
    assert_eq!(st.observed_generation.as_deref(), Some("3"));
}

#[test]
fn unimplemented_fields_are_named() {
    let s = spec(json!({"workloadRef": {"kind": "Deployment", "name": "x"},
        "strategy": {"canary": {"steps": [{"experiment": {"templates": [
            {"name": "a", "specRef": "canary"},
            {"name": "b", "specRef": "canary", "weight": 5}]}}]}}}));
    // The experiment step runs; only a template's traffic share does not.
    assert_eq!(
        unsupported(&s),
        [
            "spec.workloadRef",
            "spec.strategy.canary.steps[0].experiment.templates[1].weight (Shipway's proxy does not route a share of traffic to an experiment's Service)"
        ]
    );
}

#[test]
fn the_progress_deadline_turns_a_stuck_update_degraded() {
    let s = spec(json!({"progressDeadlineSeconds": 60,
        "strategy": {"canary": {"steps": [{"setWeight": 20}]}}}));
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 1, 0)];
    let d = Case::new(s.clone(), mid(0, json!({})), "b", sets.clone()).decide();
    let c = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(c.reason.as_deref(), Some("ReplicaSetUpdated"));
    assert_eq!(d.requeue, Some(Duration::from_secs(60)));
    let mut later = Case::new(s, d.status.clone(), "b", sets);
    later.now = 61;
    let d = later.decide();
    assert_eq!(
        phase_of(&d),
        (
            "Degraded".into(),
            "ProgressDeadlineExceeded: ReplicaSet \"web-b\" has timed out progressing.".into()
        )
    );
}

fn blue_green(bg: serde_json::Value) -> RolloutSpec {
    let mut s = spec(json!({}));
    s.strategy.canary = None;
    s.strategy.blue_green = Some(serde_json::from_value(bg).unwrap());
    s
}

fn decide_bg(c: &Case) -> Decision {
    let bg = c.spec.strategy.blue_green.clone().unwrap();
    let canary = CanaryStrategy::default();
    bluegreen::decide_blue_green(
        &Input {
            name: "web",
            generation: 3,
            spec: &c.spec,
            canary: &canary,
            status: &c.status,
            hash: c.hash,
            step_hash: "",
            sets: &c.sets,
            step_run: c.step_run.clone(),
            background_run: None,
            step_experiment: None,
            now: at(c.now),
        },
        &bg,
    )
}

fn active_of(d: &Decision) -> Option<String> {
    d.status
        .blue_green
        .as_ref()
        .unwrap()
        .active_selector
        .clone()
}

#[test]
fn blue_green_switches_the_active_service_once_the_preview_is_ready_and_promoted() {
    let s = blue_green(
        json!({"activeService": "web", "previewService": "web-preview",
        "autoPromotionEnabled": false, "previewReplicaCount": 2}),
    );
    // First deploy: active at once.
    let d = decide_bg(&Case::new(s.clone(), RolloutStatus::default(), "a", vec![]));
    assert_eq!(d.create, Some((1, 5)));
    assert_eq!(active_of(&d).as_deref(), Some("a"));
    assert_eq!(d.services[0], ("web".to_string(), "a".to_string()));
    let healthy = decide_bg(&Case::new(
        s.clone(),
        d.status.clone(),
        "a",
        vec![rs("a", 1, 5, 5)],
    ));
    assert_eq!(phase_of(&healthy), ("Healthy".into(), String::new()));
    // An update comes up behind the preview Service, 2 replicas.
    let d = decide_bg(&Case::new(
        s.clone(),
        healthy.status.clone(),
        "b",
        vec![rs("a", 1, 5, 5)],
    ));
    assert_eq!(d.create, Some((2, 2)));
    assert_eq!(active_of(&d).as_deref(), Some("a"));
    assert_eq!(
        d.services,
        vec![
            ("web".into(), "a".into()),
            ("web-preview".into(), "b".into())
        ]
    );
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 2, 2)];
    let d = decide_bg(&Case::new(s.clone(), d.status.clone(), "b", sets.clone()));
    assert_eq!(d.status.pause_conditions[0].reason, "BlueGreenPause");
    assert_eq!(phase_of(&d), ("Paused".into(), "BlueGreenPause".into()));
    // Promote: full size first, then the switch.
    let mut promoted = d.status.clone();
    promoted.pause_conditions.clear();
    let d = decide_bg(&Case::new(s.clone(), promoted, "b", sets));
    assert_eq!(d.scale, vec![("web-b".to_string(), 5)]);
    assert_eq!(active_of(&d).as_deref(), Some("a"));
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 5, 5)];
    let d = decide_bg(&Case::new(s.clone(), d.status.clone(), "b", sets.clone()));
    assert_eq!(active_of(&d).as_deref(), Some("b"));
    assert_eq!(d.status.stable_rs.as_deref(), Some("b"));
    assert_eq!(d.services[0], ("web".to_string(), "b".to_string()));
    // The old revision waits its scale-down delay.
    assert_eq!(d.deadlines.len(), 1);
    let mut sets = sets;
    sets[0].scale_down_deadline = Some(at(30));
    let mut c = Case::new(s, d.status.clone(), "b", sets);
    c.now = 30;
    let d = decide_bg(&c);
    assert_eq!(d.scale, vec![("web-a".to_string(), 0)]);
}

#[test]
fn blue_green_auto_promotes_after_its_seconds_and_a_failed_pre_promotion_analysis_aborts() {
    let s = blue_green(
        json!({"activeService": "web", "previewService": "web-preview",
        "autoPromotionSeconds": 20}),
    );
    let st = status(json!({"stableRS": "a", "currentPodHash": "b",
        "blueGreen": {"activeSelector": "a"}}));
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 5, 5)];
    let d = decide_bg(&Case::new(s.clone(), st, "b", sets.clone()));
    assert_eq!(d.status.pause_conditions[0].reason, "BlueGreenPause");
    assert_eq!(d.requeue, Some(Duration::from_secs(20)));
    let mut c = Case::new(s, d.status.clone(), "b", sets.clone());
    c.now = 20;
    assert_eq!(active_of(&decide_bg(&c)).as_deref(), Some("b"));

    let s = blue_green(
        json!({"activeService": "web", "previewService": "web-preview",
        "prePromotionAnalysis": {"templates": [{"templateName": "t"}]}}),
    );
    let st = status(json!({"stableRS": "a", "currentPodHash": "b",
        "blueGreen": {"activeSelector": "a", "prePromotionAnalysisRunStatus": {"name": "r", "status": "Running"}}}));
    let mut c = Case::new(s, st, "b", sets);
    c.step_run = Some(Run {
        name: "r".into(),
        phase: "Failed".into(),
        message: "Metric \"m\" assessed Failed due to failed (1) > failureLimit (0)".into(),
    });
    let d = decide_bg(&c);
    assert!(d.status.aborted());
    assert_eq!(active_of(&d).as_deref(), Some("a"));
    assert_eq!(
        phase_of(&d).1,
        "RolloutAborted: Rollout aborted update to revision 2: Metric \"m\" assessed Failed due to failed (1) > failureLimit (0)"
    );
}

#[test]
fn header_and_mirror_routes_follow_the_steps_and_go_when_the_rollout_ends() {
    let s = routed(json!([
        {"setWeight": 10},
        {"setHeaderRoute": {"name": "testers", "match": [{"headerName": "x-canary", "headerValue": {"exact": "yes"}}]}},
        {"setMirrorRoute": {"name": "shadow", "percentage": 35, "match": [{"method": {"exact": "GET"}}]}},
        {"pause": {}},
        {"setHeaderRoute": {"name": "testers"}},
        {"pause": {}},
    ]));
    let sets = vec![rs("a", 1, 5, 5), rs("b", 2, 1, 1)];
    let w = json!({"canary": {"weights": {"canary": {"weight": 10, "podTemplateHash": "b"}, "stable": {"weight": 90, "podTemplateHash": "a"}}}});
    let d = Case::new(s.clone(), mid(3, w.clone()), "b", sets.clone()).decide();
    let t = d.traffic.unwrap();
    assert_eq!(t.header_routes.len(), 1);
    assert_eq!(t.header_routes[0].match_[0].header_name, "x-canary");
    assert_eq!(t.mirror, Some(("shadow".to_string(), 35)));
    assert_eq!(t.canary_weight, 10);
    // An empty match removes the route; the mirror stays.
    let d = Case::new(s.clone(), mid(5, w.clone()), "b", sets.clone()).decide();
    let t = d.traffic.unwrap();
    assert!(t.header_routes.is_empty());
    assert!(t.mirror.is_some());
    // Aborted: no routes, no mirror, no weight.
    let d = Case::new(s, mid(5, json!({"abort": true})), "b", sets).decide();
    let t = d.traffic.unwrap();
    assert!(t.header_routes.is_empty() && t.mirror.is_none() && t.canary_weight == 0);
}

#[test]
fn a_template_hashes_the_same_whatever_its_key_order() {
    let a: serde_json::Value = serde_json::from_str(
        r#"{"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "x"}]}}"#,
    )
    .unwrap();
    let b: serde_json::Value = serde_json::from_str(
        r#"{"spec": {"containers": [{"image": "x", "name": "web"}]}, "metadata": {"labels": {"app": "web"}}}"#,
    )
    .unwrap();
    assert_ne!(a.to_string(), b.to_string());
    assert_eq!(canonical(&a), canonical(&b));
    assert_eq!(canonical(&a).to_string(), canonical(&b).to_string());
}

#[test]
fn codedeploy_presets_become_steps() {
    let shown = |name: &str| serde_json::to_value(preset_steps(name).unwrap()).unwrap();
    assert_eq!(
        shown("Canary10Percent5Minutes"),
        json!([{"setWeight": 10}, {"pause": {"duration": "5m"}}])
    );
    assert_eq!(
        shown("CodeDeployDefault.ECSCanary10Percent15Minutes"),
        json!([{"setWeight": 10}, {"pause": {"duration": "15m"}}])
    );
    let linear = shown("Linear10PercentEvery1Minute");
    assert_eq!(
        linear.as_array().unwrap().len(),
        18,
        "10 % to 90 %, each with its pause"
    );
    assert_eq!(linear[0], json!({"setWeight": 10}));
    assert_eq!(linear[1], json!({"pause": {"duration": "1m"}}));
    assert_eq!(linear[16], json!({"setWeight": 90}));
    assert_eq!(
        shown("LambdaLinear25PercentEvery3Minutes")
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(shown("AllAtOnce"), json!([]));
    for bad in [
        "Canary100Percent5Minutes",
        "Canary10Percent",
        "Linear0PercentEvery1Minute",
        "Blue",
    ] {
        let e = preset_steps(bad).unwrap_err();
        assert!(
            e.contains("unknown CodeDeploy preset") && e.contains(bad),
            "{e}"
        );
    }
}

#[test]
fn a_preset_fills_the_steps_and_refuses_to_share_them() {
    let annotations = |preset: &str| {
        std::collections::BTreeMap::from([(STEPS_PRESET.to_string(), preset.to_string())])
    };
    let mut s = spec(json!({"strategy": {"canary": {}}}));
    apply_preset("web", &annotations("Canary20Percent5Minutes"), &mut s).unwrap();
    let steps = s.strategy.canary.as_ref().unwrap().steps.clone().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].set_weight, Some(20));
    let mut with_steps = spec(json!({"strategy": {"canary": {"steps": [{"setWeight": 5}]}}}));
    let e = apply_preset("web", &annotations("AllAtOnce"), &mut with_steps).unwrap_err();
    assert_eq!(
        e,
        "The Rollout \"web\" is invalid: metadata.annotations[rollouts.shipway.dev/steps-preset]: Invalid value: \"AllAtOnce\": give either spec.strategy.canary.steps or the preset, not both"
    );
    let mut unknown = spec(json!({"strategy": {"canary": {}}}));
    let e = apply_preset("web", &annotations("Canary10Percent"), &mut unknown).unwrap_err();
    assert!(e.contains("unknown CodeDeploy preset"), "{e}");
    let mut none = spec(json!({"strategy": {"canary": {"steps": [{"setWeight": 5}]}}}));
    apply_preset("web", &Default::default(), &mut none).unwrap();
    assert_eq!(none.strategy.canary.unwrap().steps.unwrap().len(), 1);
}

fn experiment_steps() -> RolloutSpec {
    spec(json!({"strategy": {"canary": {"steps": [
        {"setWeight": 20},
        {"experiment": {"duration": "1m", "templates": [
            {"name": "baseline", "specRef": "stable"},
            {"name": "canary", "specRef": "canary"}]}},
        {"pause": {}}]}}}))
}

fn experiment_run(phase: &str, message: &str) -> Option<Run> {
    Some(Run {
        name: "web-b-2-1".into(),
        phase: phase.into(),
        message: message.into(),
    })
}

#[test]
fn the_experiment_step_starts_its_experiment_waits_and_advances_on_success() {
    let sets = vec![rs("a", 1, 4, 4), rs("b", 2, 1, 1)];
    let d = Case::new(experiment_steps(), mid(1, json!({})), "b", sets.clone()).decide();
    assert_eq!(d.start_experiment, Some(1));
    assert_eq!(d.status.current_step_index, Some(1));
    // Recorded and running: waits.
    let running = mid(1, json!({"canary": {"currentExperiment": "web-b-2-1"}}));
    let mut c = Case::new(experiment_steps(), running.clone(), "b", sets.clone());
    c.step_experiment = experiment_run("Running", "");
    let d = c.decide();
    assert_eq!(d.start_experiment, None);
    assert_eq!(d.status.current_step_index, Some(1));
    assert_eq!(
        d.status.canary().current_experiment.as_deref(),
        Some("web-b-2-1")
    );
    // Successful: the next step, and no current experiment.
    c.step_experiment = experiment_run("Successful", "");
    let d = c.decide();
    assert_eq!(d.status.current_step_index, Some(2));
    assert_eq!(d.status.canary().current_experiment, None);
    assert!(
        d.events
            .iter()
            .any(|e| e.1 == "Rollout step 2/3 completed (experiment)")
    );
}

#[test]
fn a_failed_experiment_aborts_the_rollout_with_argos_message() {
    let sets = vec![rs("a", 1, 4, 4), rs("b", 2, 1, 1)];
    let running = mid(1, json!({"canary": {"currentExperiment": "web-b-2-1"}}));
    let mut c = Case::new(experiment_steps(), running, "b", sets);
    c.step_experiment = experiment_run("Failed", "Metric \"m\" assessed Failed");
    let d = c.decide();
    assert!(d.status.aborted());
    assert_eq!(d.status.canary().current_experiment, None);
    assert_eq!(
        phase_of(&d),
        (
            "Degraded".into(),
            "RolloutAborted: Rollout aborted update to revision 2: Experiment analysis phase is error/failed: Metric \"m\" assessed Failed".into()
        )
    );
}

#[test]
fn an_experiment_step_needs_canary_or_stable_and_weight_needs_traffic_routing() {
    let bad = spec(json!({"strategy": {"canary": {"steps": [
        {"experiment": {"templates": [{"name": "x", "specRef": "other"}]}}]}}}));
    assert_eq!(
        validate("web", &bad).unwrap_err(),
        "The Rollout \"web\" is invalid: spec.strategy.canary.steps[0].experiment.templates[0].specRef: Invalid value: \"other\": Invalid template step SpecRef: must be canary or stable"
    );
    let weight = spec(json!({"strategy": {"canary": {"steps": [
        {"experiment": {"templates": [{"name": "x", "specRef": "canary", "weight": 10}]}}]}}}));
    assert_eq!(
        validate("web", &weight).unwrap_err(),
        "The Rollout \"web\" is invalid: spec.strategy.canary.steps[0].experiment.templates[0].weight: Invalid value: \"10\": Experiment template weight cannot be set unless TrafficRouting is enabled"
    );
}

#[test]
fn an_inconclusive_experiment_pauses_until_promoted() {
    let sets = vec![rs("a", 1, 4, 4), rs("b", 2, 1, 1)];
    let running = mid(1, json!({"canary": {"currentExperiment": "web-b-2-1"}}));
    let mut c = Case::new(experiment_steps(), running, "b", sets.clone());
    c.step_experiment = experiment_run("Inconclusive", "");
    let d = c.decide();
    assert_eq!(d.status.current_step_index, Some(1));
    assert!(d.status.controller_pause);
    assert_eq!(
        d.status.pause_conditions[0].reason,
        "InconclusiveExperiment"
    );
    // The promote: pause conditions cleared, controllerPause still set.
    let mut promoted = d.status.clone();
    promoted.pause_conditions.clear();
    let mut c = Case::new(experiment_steps(), promoted, "b", sets);
    c.step_experiment = experiment_run("Inconclusive", "");
    let d = c.decide();
    assert_eq!(d.status.current_step_index, Some(2));
    assert_eq!(d.status.canary().current_experiment, None);
}
