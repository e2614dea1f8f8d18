//! The AnalysisRun state machine at explicit instants: when measurements are due, each metric's
//! phase and the run's with Argo's messages, limits, dry runs, termination and retention.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::json;
use shipway_model::types::{AnalysisRunSpec, AnalysisRunStatus, Measurement};
use shipway_rollout::analysis::{self, Decision, Phase, Task};
use time::OffsetDateTime;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-12-03 08:00:00 UTC);

fn spec(v: serde_json::Value) -> AnalysisRunSpec {
    serde_json::from_value(v).unwrap()
}

fn web(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut m = json!({"name": name, "provider": {"web": {"url": "http://x/"}}});
    m.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    m
}

fn measurement(phase: Phase, message: &str) -> Measurement {
    Measurement {
        phase: phase.as_str().into(),
        message: message.into(),
        ..Measurement::default()
    }
}

/// Drives a run: at each second from T0 takes the due measurements, giving each metric its next
/// phase from `results` (the last one repeats); stops when the run completes or after `limit`
/// seconds. Returns the last decision and the seconds at which each measurement was taken.
fn drive(
    spec: &AnalysisRunSpec,
    results: &HashMap<&str, Vec<(Phase, &str)>>,
    limit: u64,
) -> (Decision, Vec<(u64, String)>) {
    let dry = analysis::dry_run_metrics(spec, &spec.metrics).unwrap();
    let limits = analysis::retention_limits(spec, &spec.metrics).unwrap();
    let mut status = AnalysisRunStatus::default();
    let mut taken = Vec::new();
    let mut used: HashMap<String, usize> = HashMap::new();
    let mut last = None;
    for s in 0..=limit {
        let now = T0 + Duration::from_secs(s);
        let terminating = analysis::is_terminating(spec, &status);
        let tasks = analysis::due(&spec.metrics, &status, terminating, now);
        let ms: Vec<(Task, Measurement)> = tasks
            .iter()
            .map(|t| {
                let name = spec.metrics[t.index].name.clone();
                let seq = &results[name.as_str()];
                let i = used.entry(name.clone()).or_default();
                let (p, msg) = seq[(*i).min(seq.len() - 1)];
                *i += 1;
                taken.push((s, name));
                (*t, measurement(p, msg))
            })
            .collect();
        let d = analysis::step(spec, &spec.metrics, &dry, &limits, &status, now, ms);
        status = d.status.clone();
        let done = d.phase.completed();
        last = Some(d);
        if done {
            break;
        }
    }
    (last.unwrap(), taken)
}

#[test]
fn count_three_every_second_ends_successful_after_the_third() {
    let s = spec(json!({"metrics": [web("ok", json!({"count": 3, "interval": "1s"}))]}));
    let results = HashMap::from([("ok", vec![(Phase::Successful, "")])]);
    let (d, taken) = drive(&s, &results, 30);
    assert_eq!(d.phase, Phase::Successful);
    assert_eq!(d.status.message, "");
    let at: Vec<u64> = taken.iter().map(|t| t.0).collect();
    assert_eq!(at, vec![0, 1, 2]);
    let r = &d.status.metric_results[0];
    assert_eq!(
        (r.count, r.successful, r.phase.as_str()),
        (3, 3, "Successful")
    );
    let summary = d.status.run_summary.as_ref().unwrap();
    assert_eq!((summary.count, summary.successful), (1, 1));
    assert_eq!(
        d.status.completed_at.as_deref(),
        Some("2026-12-03T08:00:02Z")
    );
}

#[test]
fn one_failure_over_failure_limit_zero_fails_with_argos_message() {
    let s = spec(json!({"metrics": [web("x", json!({"count": 5, "interval": "1s"}))]}));
    let results = HashMap::from([("x", vec![(Phase::Successful, ""), (Phase::Failed, "")])]);
    let (d, _) = drive(&s, &results, 30);
    assert_eq!(d.phase, Phase::Failed);
    assert_eq!(
        d.status.message,
        "Metric \"x\" assessed Failed due to failed (1) > failureLimit (0)"
    );
    assert_eq!(d.status.run_summary.as_ref().unwrap().failed, 1);
}

#[test]
fn failure_limit_allows_that_many_failures() {
    let s = spec(
        json!({"metrics": [web("x", json!({"count": 4, "interval": "1s", "failureLimit": 2}))]}),
    );
    let two = HashMap::from([(
        "x",
        vec![
            (Phase::Failed, ""),
            (Phase::Successful, ""),
            (Phase::Failed, ""),
            (Phase::Successful, ""),
        ],
    )]);
    assert_eq!(drive(&s, &two, 30).0.phase, Phase::Successful);
    let three = HashMap::from([("x", vec![(Phase::Failed, "")])]);
    let (d, taken) = drive(&s, &three, 30);
    assert_eq!(d.phase, Phase::Failed);
    assert_eq!(taken.len(), 3);
    assert_eq!(
        d.status.message,
        "Metric \"x\" assessed Failed due to failed (3) > failureLimit (2)"
    );
}

#[test]
fn five_consecutive_errors_are_the_runs_error_retried_every_ten_seconds() {
    let s = spec(json!({"metrics": [web("x", json!({"interval": "1s"}))]}));
    let results = HashMap::from([(
        "x",
        vec![(Phase::Error, "received non 2xx response code: 500")],
    )]);
    let (d, taken) = drive(&s, &results, 100);
    assert_eq!(d.phase, Phase::Error);
    assert_eq!(
        d.status.message,
        "Metric \"x\" assessed Error due to consecutiveErrors (5) > consecutiveErrorLimit (4): \"Error Message: received non 2xx response code: 500\""
    );
    let at: Vec<u64> = taken.iter().map(|t| t.0).collect();
    assert_eq!(at, vec![0, 10, 20, 30, 40]);
}

#[test]
fn an_error_then_a_success_resets_the_consecutive_count() {
    let s = spec(
        json!({"metrics": [web("x", json!({"count": 2, "interval": "1s", "consecutiveErrorLimit": 1}))]}),
    );
    let results = HashMap::from([(
        "x",
        vec![
            (Phase::Error, "e"),
            (Phase::Successful, ""),
            (Phase::Error, "e"),
            (Phase::Successful, ""),
        ],
    )]);
    let (d, taken) = drive(&s, &results, 100);
    assert_eq!(d.phase, Phase::Successful);
    let r = &d.status.metric_results[0];
    assert_eq!((r.error, r.consecutive_error, r.count), (2, 0, 2));
    assert_eq!(taken.len(), 4);
}

#[test]
fn inconclusive_over_its_limit_ends_the_run_inconclusive() {
    let s = spec(json!({"metrics": [web("x", json!({"count": 3, "interval": "1s"}))]}));
    let results = HashMap::from([("x", vec![(Phase::Inconclusive, "")])]);
    let (d, _) = drive(&s, &results, 30);
    assert_eq!(d.phase, Phase::Inconclusive);
    assert_eq!(
        d.status.message,
        "Metric \"x\" assessed Inconclusive due to inconclusive (1) > inconclusiveLimit (0)"
    );
}

#[test]
fn a_failing_dry_run_metric_never_fails_the_run() {
    let s = spec(json!({
        "metrics": [
            web("real", json!({"count": 2, "interval": "1s"})),
            web("trial", json!({"count": 2, "interval": "1s"})),
        ],
        "dryRun": [{"metricName": "tri.*"}],
    }));
    let results = HashMap::from([
        ("real", vec![(Phase::Successful, "")]),
        ("trial", vec![(Phase::Failed, "")]),
    ]);
    let (d, _) = drive(&s, &results, 30);
    assert_eq!(d.phase, Phase::Successful);
    let trial = d
        .status
        .metric_results
        .iter()
        .find(|r| r.name == "trial")
        .unwrap();
    assert!(trial.dry_run);
    assert_eq!(trial.phase, "Failed");
    assert_eq!(
        trial.message,
        "Metric assessed Failed due to failed (1) > failureLimit (0)"
    );
    assert_eq!(d.status.dry_run_summary.as_ref().unwrap().failed, 1);
    assert_eq!(d.status.run_summary.as_ref().unwrap().successful, 1);
}

#[test]
fn a_failed_metric_terminates_the_others() {
    let s = spec(json!({"metrics": [
        web("bad", json!({"count": 1})),
        web("forever", json!({"interval": "1s"})),
    ]}));
    let results = HashMap::from([
        ("bad", vec![(Phase::Failed, "")]),
        ("forever", vec![(Phase::Successful, "")]),
    ]);
    let (d, taken) = drive(&s, &results, 30);
    assert_eq!(d.phase, Phase::Failed);
    assert_eq!(taken.len(), 2, "{taken:?}");
    assert_eq!(
        d.status.message,
        "Metric \"bad\" assessed Failed due to failed (1) > failureLimit (0)"
    );
}

#[test]
fn terminate_ends_a_run_successful_with_argos_message() {
    let s = spec(json!({"terminate": true, "metrics": [web("x", json!({"interval": "1s"}))]}));
    let d = analysis::step(
        &s,
        &s.metrics,
        &HashSet::new(),
        &HashMap::new(),
        &AnalysisRunStatus::default(),
        T0,
        Vec::new(),
    );
    assert_eq!(
        (d.phase, d.status.message.as_str()),
        (Phase::Successful, "Run Terminated")
    );
    assert!(analysis::due(&s.metrics, &d.status, true, T0).is_empty());
    // A run measured for a while, then told to stop: what it has decides.
    let mut running = s.clone();
    running.terminate = false;
    let results = HashMap::from([("x", vec![(Phase::Successful, "")])]);
    let (d, _) = drive(&running, &results, 3);
    assert_eq!(d.phase, Phase::Running);
    let d = analysis::step(
        &s,
        &s.metrics,
        &HashSet::new(),
        &HashMap::new(),
        &d.status,
        T0 + Duration::from_secs(4),
        Vec::new(),
    );
    assert_eq!(
        (d.phase, d.status.message.as_str()),
        (Phase::Successful, "Run Terminated")
    );
}

#[test]
fn initial_delay_holds_the_first_measurement() {
    let s = spec(json!({"metrics": [web("x", json!({"initialDelay": "5s", "count": 1}))]}));
    let results = HashMap::from([("x", vec![(Phase::Successful, "")])]);
    let (d, taken) = drive(&s, &results, 30);
    assert_eq!(d.phase, Phase::Successful);
    assert_eq!(taken[0].0, 5);
    // Before any measurement the run is Running and asks to come back at the delay's end.
    let first = analysis::step(
        &s,
        &s.metrics,
        &HashSet::new(),
        &HashMap::new(),
        &AnalysisRunStatus::default(),
        T0,
        Vec::new(),
    );
    assert_eq!(first.phase, Phase::Running);
    assert_eq!(first.requeue, Some(Duration::from_secs(5)));
}

#[test]
fn ten_measurements_are_kept_unless_a_rule_says_otherwise() {
    let s = spec(json!({"metrics": [
        web("a", json!({"count": 12, "interval": "1s"})),
        web("b", json!({"count": 12, "interval": "1s"})),
    ], "measurementRetention": [{"metricName": "b", "limit": 2}]}));
    let results = HashMap::from([
        ("a", vec![(Phase::Successful, "")]),
        ("b", vec![(Phase::Successful, "")]),
    ]);
    let (d, _) = drive(&s, &results, 30);
    assert_eq!(d.phase, Phase::Successful);
    let kept: Vec<usize> = d
        .status
        .metric_results
        .iter()
        .map(|r| r.measurements.len())
        .collect();
    assert_eq!(kept, vec![10, 2]);
    assert_eq!(d.status.metric_results[0].count, 12);
}

#[test]
fn consecutive_success_limit_succeeds_early_and_fails_when_never_reached() {
    let s = spec(
        json!({"metrics": [web("x", json!({"count": 5, "interval": "1s", "consecutiveSuccessLimit": 2, "failureLimit": -1}))]}),
    );
    let early = HashMap::from([("x", vec![(Phase::Failed, ""), (Phase::Successful, "")])]);
    let (d, taken) = drive(&s, &early, 30);
    assert_eq!((d.phase, taken.len()), (Phase::Successful, 3));
    let never = HashMap::from([("x", vec![(Phase::Successful, ""), (Phase::Failed, "")])]);
    assert_eq!(drive(&s, &never, 30).0.phase, Phase::Failed);
}

#[test]
fn invalid_specs_are_refused_with_argos_words() {
    let cases = [
        (json!([]), "no metrics specified"),
        (
            json!([web("a", json!({})), web("a", json!({}))]),
            "metrics[1]: duplicate name 'a'",
        ),
        (
            json!([web("a", json!({"count": 3}))]),
            "metrics[0]: interval must be specified when count > 1",
        ),
        (
            json!([web("a", json!({"interval": "soon"}))]),
            "metrics[0]: invalid interval string: time: invalid duration \"soon\"",
        ),
        (
            json!([{"name": "a", "provider": {}}]),
            "metrics[0]: no provider specified",
        ),
        (
            json!([web("a", json!({"failureLimit": -1}))]),
            "metrics[0]: failureLimit and consecutiveSuccessLimit cannot both be disabled",
        ),
    ];
    for (metrics, want) in cases {
        let s = spec(json!({"metrics": metrics}));
        assert_eq!(analysis::validate(&s.metrics), Err(want.to_string()));
    }
    let s = spec(json!({"metrics": [web("a", json!({}))], "dryRun": [{"metricName": "zzz"}]}));
    assert_eq!(
        analysis::dry_run_metrics(&s, &s.metrics),
        Err("dryRun[0]: Rule didn't match any metric name(s)".into())
    );
}
