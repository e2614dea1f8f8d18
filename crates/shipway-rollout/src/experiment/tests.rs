//! [`super::decide`] pass by pass: the ReplicaSets it asks for, the phases Argo's rules give,
//! and the scale-down after the delay.

use std::collections::BTreeMap;

use serde_json::json;
use time::OffsetDateTime;

use super::*;

fn spec(v: Value) -> ExperimentSpec {
    serde_json::from_value(v).unwrap()
}

fn two_templates(extra: Value) -> ExperimentSpec {
    let mut v = json!({
        "templates": [
            {"name": "baseline", "selector": {"matchLabels": {"app": "b"}},
             "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}},
            {"name": "canary", "replicas": 2, "selector": {"matchLabels": {"app": "c"}},
             "template": {"metadata": {"labels": {"app": "c"}}, "spec": {"containers": [{"name": "c", "image": "i:2"}]}}},
        ],
    });
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    spec(v)
}

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
}

fn set(name: &str, replicas: i64, available: i64) -> TemplateSet {
    TemplateSet {
        name: name.into(),
        hash: "h".into(),
        replicas,
        status_replicas: available,
        ready: available,
        available,
        ..Default::default()
    }
}

struct World {
    spec: ExperimentSpec,
    status: ExperimentStatus,
    sets: BTreeMap<String, TemplateSet>,
    runs: BTreeMap<String, Result<RunState, String>>,
    missing: BTreeMap<String, String>,
}

impl World {
    fn new(spec: ExperimentSpec) -> World {
        World {
            spec,
            status: ExperimentStatus::default(),
            sets: BTreeMap::new(),
            runs: BTreeMap::new(),
            missing: BTreeMap::new(),
        }
    }

    /// One pass at `now`, its decision applied as the controller and a kubelet would (every
    /// ReplicaSet's replicas available at once).
    fn pass(&mut self, now: OffsetDateTime) -> Decision {
        let d = decide(&Input {
            name: "ex",
            spec: &self.spec,
            status: &self.status,
            sets: &self.sets,
            runs: &self.runs,
            missing_templates: &self.missing,
            now,
        });
        for (i, n) in &d.create {
            let t = &self.spec.templates[*i];
            self.sets
                .insert(t.name.clone(), set(&format!("ex-{}", t.name), *n, 0));
        }
        for (rs, deadline) in &d.deadlines {
            for s in self.sets.values_mut() {
                if &s.name == rs {
                    s.scale_down_deadline = *deadline;
                }
            }
        }
        for (rs, n) in &d.scale {
            for s in self.sets.values_mut() {
                if &s.name == rs {
                    s.replicas = *n;
                }
            }
        }
        self.status = d.status.clone();
        d
    }

    fn pods_start(&mut self) {
        for s in self.sets.values_mut() {
            s.status_replicas = s.replicas;
            s.ready = s.replicas;
            s.available = s.replicas;
        }
    }
}

fn at(secs: i64) -> OffsetDateTime {
    t0() + time::Duration::seconds(secs)
}

#[test]
fn a_timed_experiment_runs_its_duration_succeeds_and_scales_down_after_the_delay() {
    let mut w = World::new(two_templates(json!({"duration": "60s"})));
    let d = w.pass(at(0));
    assert_eq!(d.create, vec![(0, 1), (1, 2)]);
    assert_eq!(w.status.phase, "Pending");
    w.pods_start();
    w.pass(at(1));
    assert_eq!(w.status.phase, "Running");
    assert_eq!(
        w.status.available_at.as_deref(),
        Some("2023-11-14T22:13:21Z")
    );
    let statuses: Vec<(&str, &str, i64)> = w
        .status
        .template_statuses
        .iter()
        .map(|t| (t.name.as_str(), t.status.as_str(), t.available_replicas))
        .collect();
    assert_eq!(
        statuses,
        vec![("baseline", "Running", 1), ("canary", "Running", 2)]
    );
    let d = w.pass(at(2));
    let c = &w.status.conditions[0];
    assert_eq!(
        (c.reason.as_deref(), c.message.as_deref()),
        (
            Some("NewReplicaSetAvailable"),
            Some("Experiment \"ex\" is running.")
        )
    );
    // Back just after availableAt + 60 s.
    assert!(d.requeue.unwrap() <= std::time::Duration::from_secs(60));
    assert!(d.requeue.unwrap() >= std::time::Duration::from_secs(58));
    w.pass(at(62));
    assert_eq!(w.status.phase, "Successful");
    let c = &w.status.conditions[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some("ExperimentCompleted"))
    );
    // Finished: a deadline 30 s out (the default), then the scale-down.
    let d = w.pass(at(63));
    assert_eq!(d.deadlines.len(), 2);
    assert!(d.scale.is_empty());
    assert_eq!(d.requeue, Some(std::time::Duration::from_secs(30)));
    let d = w.pass(at(94));
    assert_eq!(
        d.scale,
        vec![("ex-baseline".to_string(), 0), ("ex-canary".to_string(), 0)]
    );
    assert_eq!(w.status.phase, "Successful");
}

#[test]
fn a_failed_analysis_fails_the_experiment_with_its_message() {
    let mut w = World::new(two_templates(json!({
        "analyses": [{"name": "check", "templateName": "t"}],
    })));
    w.pass(at(0));
    w.pods_start();
    w.pass(at(1));
    assert!(w.status.available_at.is_some());
    let d = w.pass(at(2));
    assert_eq!(d.start_runs, vec![0]);
    assert_eq!(w.status.analysis_runs[0].analysis_run, "ex-check");
    assert_eq!(w.status.analysis_runs[0].phase, "Pending");
    assert_eq!(w.status.phase, "Running");
    w.runs.insert(
        "check".into(),
        Ok(RunState {
            phase: "Failed".into(),
            message: "Metric \"m\" assessed Failed".into(),
            terminate: false,
        }),
    );
    w.pass(at(3));
    assert_eq!(w.status.phase, "Failed");
    assert_eq!(w.status.message, "Metric \"m\" assessed Failed");
    // And then the templates are done.
    w.pass(at(4));
    assert!(
        w.status
            .template_statuses
            .iter()
            .all(|t| t.status == "Successful")
    );
}

#[test]
fn without_a_duration_it_completes_with_the_required_analyses() {
    let mut w = World::new(two_templates(json!({
        "analyses": [{"name": "check", "templateName": "t", "requiredForCompletion": true},
                     {"name": "side", "templateName": "t"}],
    })));
    w.pass(at(0));
    w.pods_start();
    w.pass(at(1));
    w.pass(at(2));
    let ok = |phase: &str| {
        Ok(RunState {
            phase: phase.into(),
            ..Default::default()
        })
    };
    w.runs.insert("check".into(), ok("Running"));
    w.runs.insert("side".into(), ok("Running"));
    w.pass(at(3));
    assert_eq!(w.status.phase, "Running");
    w.runs.insert("check".into(), ok("Successful"));
    w.pass(at(4));
    assert_eq!(w.status.phase, "Successful");
    assert_eq!(w.status.message, "Required AnalysisRuns completed");
    // The other run is stopped.
    let d = w.pass(at(5));
    assert_eq!(d.terminate_runs, vec!["ex-side".to_string()]);
}

#[test]
fn without_duration_or_required_analyses_it_runs_until_terminated() {
    let mut w = World::new(two_templates(json!({"scaleDownDelaySeconds": 0})));
    w.pass(at(0));
    w.pods_start();
    for s in 1..5 {
        w.pass(at(s * 1000));
        assert_eq!(w.status.phase, "Running");
    }
    w.spec.terminate = true;
    let d = w.pass(at(6000));
    assert_eq!(w.status.phase, "Successful");
    assert_eq!(d.scale.len(), 2, "no delay: scaled down at once");
}

#[test]
fn a_template_that_never_becomes_available_fails_at_its_progress_deadline() {
    let mut w = World::new(two_templates(json!({"progressDeadlineSeconds": 30})));
    w.pass(at(0));
    let d = w.pass(at(1));
    assert!(d.requeue.is_some());
    w.pass(at(40));
    assert_eq!(w.status.phase, "Failed");
    assert_eq!(
        w.status.message,
        "Template 'baseline' exceeded its progressDeadlineSeconds (30)"
    );
}

#[test]
fn a_missing_analysis_template_is_an_error_and_creates_nothing() {
    let mut w = World::new(two_templates(json!({
        "analyses": [{"name": "check", "templateName": "gone"}],
    })));
    w.missing.insert(
        "check".into(),
        "analysistemplate.argoproj.io \"gone\" not found".into(),
    );
    let d = w.pass(at(0));
    assert!(d.create.is_empty());
    assert_eq!(w.status.phase, "Error");
    assert_eq!(
        w.status.message,
        "AnalysisTemplate verification failed for analysis 'check': analysistemplate.argoproj.io \"gone\" not found"
    );
    let d = w.pass(at(1));
    assert!(d.create.is_empty() && d.start_runs.is_empty());
}

#[test]
fn invalid_specs_are_refused_with_argos_wording() {
    let dup = two_templates(json!({}));
    let mut dup_v = serde_json::to_value(&dup).unwrap();
    dup_v["templates"][1]["name"] = json!("baseline");
    let cases = [
        (
            dup_v,
            "Experiment ex has repeated template name 'baseline' in templates",
        ),
        (
            json!({"templates": [{"name": "a", "template": {}}]}),
            "Rollout has missing field '.Spec.Templates[0].Selector'",
        ),
        (
            json!({"templates": [{"name": "a", "selector": {}, "template": {}}]}),
            "This experiment is selecting all pods at index 0. A non-empty selector is required.",
        ),
        (
            json!({"templates": [{"name": "", "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}}}]}),
            "Experiment ex has empty template name at index 0",
        ),
        (
            json!({"templates": [{"name": "a", "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "c"}}}}]}),
            "The Experiment \"ex\" is invalid: spec.templates[0].template.metadata.labels: Invalid value: {\"a\":\"c\"}: `selector` does not match template `labels`",
        ),
    ];
    for (v, want) in cases {
        assert_eq!(validate("ex", &spec(v)), Err(want.to_string()));
    }
    assert_eq!(validate("ex", &two_templates(json!({}))), Ok(()));
    let st = invalid_status(&ExperimentStatus::default(), "bad", "2023-01-01T00:00:00Z");
    assert_eq!((st.phase.as_str(), st.message.as_str()), ("Error", "bad"));
    assert_eq!(st.conditions[0].type_, "InvalidSpec");
}

#[test]
fn unknown_fields_are_named_in_a_condition() {
    let mut w = World::new(two_templates(json!({"someNewField": 1})));
    w.pass(at(0));
    let c = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "UnsupportedFields")
        .unwrap();
    assert!(c.message.as_deref().unwrap().contains("spec.someNewField"));
}

#[test]
fn template_arguments_resolve_from_the_replica_sets() {
    let s = two_templates(json!({}));
    let mut sets = BTreeMap::new();
    sets.insert("canary".to_string(), set("ex-canary", 1, 1));
    let st = ExperimentStatus::default();
    assert_eq!(
        resolve_arg(
            "{{templates.canary.podTemplateHash}}/{{ templates.canary.replicaset.name }}",
            &s,
            &st,
            &sets
        ),
        Ok("h/ex-canary".to_string())
    );
    assert_eq!(
        resolve_arg("{{templates.baseline.podTemplateHash}}", &s, &st, &sets),
        Err("failed to resolve {{templates.baseline.podTemplateHash}}".to_string())
    );
}
