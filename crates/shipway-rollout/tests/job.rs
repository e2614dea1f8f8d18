//! The `job` provider with the real local runtime: a Job made from the metric's template, owned
//! by the run, succeeds (exit 0, the run Successful) or fails (exit 1, the run Failed).

use std::time::{Duration, Instant};

use serde_json::json;
use shipway_controller::{Clock, Reflector};
use shipway_model::types::AnalysisRunStatus;
use shipway_model::{Key, Object};
use shipway_rollout::analysis::controller::{AnalysisController, RUN_UID_LABEL};
use shipway_rollout::analysis::provider::Providers;
use shipway_runtime::images::ImageStore;
use shipway_runtime::{KubeletConfig, LocalRuntime};
use shipway_store::{ListQuery, Store};
use tokio_util::sync::CancellationToken;

fn run(name: &str, script: &str) -> Object {
    serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"metrics": [{"name": "smoke", "provider": {"job": {
            "metadata": {"labels": {"purpose": "smoke"}},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": "sh:v1", "args": [script]}]}}},
        }}}]},
    }))
    .unwrap()
}

async fn until_done(store: &Store, name: &str) -> AnalysisRunStatus {
    let start = Instant::now();
    loop {
        let key = Key::new("argoproj.io", "AnalysisRun", "default", name);
        let status: AnalysisRunStatus =
            store.get(&key).await.unwrap().unwrap().status_as().unwrap();
        if matches!(status.phase.as_str(), "Successful" | "Failed" | "Error") {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name}: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_job_metric_passes_on_exit_0_and_fails_on_exit_1() {
    let data = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&data.path().join("shipway.db"))
        .await
        .unwrap();
    let app = data.path().join("app-src");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("README"), "test image\n").unwrap();
    ImageStore::new(data.path())
        .import("sh:v1", &app, &["/bin/sh".into(), "-c".into()], &[])
        .unwrap();
    let shutdown = CancellationToken::new();
    let (cache, _feed) = Reflector::spawn(store.clone(), shutdown.clone());
    let runtime = LocalRuntime::start(
        store.clone(),
        cache.clone(),
        KubeletConfig::new(data.path()),
        shutdown.clone(),
    );
    let clock = Clock::new();
    let providers = Providers::new(clock, None).with_jobs(store.clone(), cache.clone());
    let controller = tokio::spawn(
        AnalysisController::new(store.clone(), cache, clock, providers).run(shutdown.clone()),
    );

    let good = store.create(run("good", "exit 0"), "test").await.unwrap();
    store
        .create(run("bad", "echo failing; exit 1"), "test")
        .await
        .unwrap();
    let s = until_done(&store, "good").await;
    assert_eq!(s.phase, "Successful", "{s:#?}");
    let m = &s.metric_results[0].measurements[0];
    assert_eq!(m.metadata["job-name"], "good-smoke-1");
    let s = until_done(&store, "bad").await;
    assert_eq!(s.phase, "Failed", "{s:#?}");
    assert_eq!(
        s.message,
        "Metric \"smoke\" assessed Failed due to failed (1) > failureLimit (0)"
    );

    // The Job is the run's: owned by it, labelled with its uid, the template's labels kept.
    let job = store
        .get(&Key::new("batch", "Job", "default", "good-smoke-1"))
        .await
        .unwrap()
        .unwrap();
    let owner = &job.metadata.owner_references[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("AnalysisRun", "good")
    );
    assert_eq!(Some(&owner.uid), good.metadata.uid.as_ref());
    assert_eq!(
        job.metadata.labels.get(RUN_UID_LABEL),
        good.metadata.uid.as_ref()
    );
    assert_eq!(job.metadata.labels["purpose"], "smoke");

    // Terminating a run whose Job is still running deletes the Job and ends the run.
    store.create(run("long", "sleep 60"), "test").await.unwrap();
    let long_job = Key::new("batch", "Job", "default", "long-smoke-1");
    let start = Instant::now();
    while store.get(&long_job).await.unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no Job for the long run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut long = store
        .get(&Key::new("argoproj.io", "AnalysisRun", "default", "long"))
        .await
        .unwrap()
        .unwrap();
    long.body["spec"]["terminate"] = json!(true);
    store.update(long, "test").await.unwrap();
    let s = until_done(&store, "long").await;
    assert_eq!(
        (s.phase.as_str(), s.message.as_str()),
        ("Successful", "Run Terminated")
    );
    assert_eq!(
        s.metric_results[0].measurements[0].message,
        "Metric Terminated"
    );
    let start = Instant::now();
    while store.get(&long_job).await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the long run's Job outlived it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for j in store
        .list(&ListQuery::kind("batch", "Job"))
        .await
        .unwrap()
        .items
    {
        let _ = store.delete(&j.key(), "test").await;
    }
    shutdown.cancel();
    runtime.join().await;
    let _ = controller.await;
}
