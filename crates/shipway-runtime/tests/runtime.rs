//! The local runtime with real processes over a real SQLite store.

mod common;

use common::Env;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shipway_model::{Key, Object};
use shipway_runtime::images::ImageStore;
use shipway_store::ListQuery;
use shipway_testkit::{Invariant, Objects};

impl Env {
    async fn get(&self, group: &str, kind: &str, name: &str) -> Option<Object> {
        self.store
            .get(&Key::new(group, kind, "default", name))
            .await
            .unwrap()
    }

    async fn pods(&self) -> Vec<Object> {
        self.store
            .list(&ListQuery::kind("", "Pod").in_namespace("default"))
            .await
            .unwrap()
            .items
    }
}

fn deployment(name: &str, replicas: i64, script: &str, extra_spec: Value) -> Value {
    let mut pod_spec = json!({"containers": [{"name": "main", "image": "sh:v1", "args": [script]}], "terminationGracePeriodSeconds": 2});
    if let (Some(p), Some(extra)) = (
        pod_spec.as_object_mut(),
        extra_spec.get("pod").and_then(Value::as_object),
    ) {
        for (k, v) in extra {
            p.insert(k.clone(), v.clone());
        }
    }
    let mut spec = json!({
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec},
    });
    for (k, v) in extra_spec
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "pod")
    {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn pods_query() -> ListQuery {
    ListQuery::kind("", "Pod").in_namespace("default")
}

fn pod_ready(p: &Object) -> bool {
    p.status()
        .and_then(|s| s["conditions"].as_array())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn pid_alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

fn status_i64(o: &Object, field: &str) -> i64 {
    o.status()
        .and_then(|s| s.get(field))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn container_status(pod: &Object) -> Value {
    pod.status()
        .and_then(|s| s.pointer("/containerStatuses/0"))
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_scales_up_and_down_with_real_processes() {
    let env = Env::start().await;
    env.apply(deployment(
        "web",
        3,
        "echo started $HOSTNAME; exec sleep 600",
        json!({}),
    ))
    .await;
    env.until(30, "3 ready replicas", || async {
        env.get("apps", "Deployment", "web").await.is_some_and(|d| {
            status_i64(&d, "readyReplicas") == 3 && status_i64(&d, "availableReplicas") == 3
        })
    })
    .await;
    let d = env.get("apps", "Deployment", "web").await.unwrap();
    let conditions = &d.status().unwrap()["conditions"];
    assert!(
        conditions
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Available" && c["status"] == "True"),
        "{conditions}"
    );
    assert_eq!(d.status().unwrap()["observedGeneration"], 1);
    let pods = env.pods().await;
    assert_eq!(pods.len(), 3);
    let pids: Vec<i64> = pods
        .iter()
        .map(|p| {
            std::fs::read_to_string(
                env.data
                    .path()
                    .join("pods")
                    .join(p.metadata.uid.as_ref().unwrap())
                    .join("pids/main.pid"),
            )
            .unwrap()
            .trim()
            .parse()
            .unwrap()
        })
        .collect();
    assert!(
        pids.iter().all(|p| pid_alive(*p)),
        "every replica is a live process"
    );
    let log = std::fs::read_to_string(
        env.data
            .path()
            .join("pods")
            .join(pods[0].metadata.uid.as_ref().unwrap())
            .join("logs/main/0.log"),
    )
    .unwrap();
    assert_eq!(log, format!("started {}\n", pods[0].metadata.name));

    env.apply(deployment(
        "web",
        1,
        "echo started $HOSTNAME; exec sleep 600",
        json!({}),
    ))
    .await;
    env.until(30, "1 replica", || async { env.pods().await.len() == 1 })
        .await;
    env.until(10, "2 processes stopped", || async {
        pids.iter().filter(|p| pid_alive(**p)).count() == 1
    })
    .await;
    env.stop().await;
    assert!(
        pids.iter().all(|p| !pid_alive(*p)),
        "no process outlives its pod"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_keeps_availability_and_revision_history() {
    let env = Env::start().await;
    let strategy = json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}, "minReadySeconds": 1});
    env.apply(deployment("web", 3, "exec sleep 600", strategy.clone()))
        .await;
    env.until(30, "v1 available", || async {
        env.get("apps", "Deployment", "web")
            .await
            .is_some_and(|d| status_i64(&d, "availableReplicas") == 3)
    })
    .await;
    // From here on, at every change of any pod: at least replicas - maxUnavailable ready, at
    // most replicas + maxSurge not terminating.
    let budget = Invariant::watch(&env.store, pods_query(), |pods: &Objects| {
        let live: Vec<&Object> = pods
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let ready = live.iter().filter(|p| pod_ready(p)).count();
        match (ready, live.len()) {
            (r, _) if r < 2 => Err(format!("{r} ready pods, below replicas - maxUnavailable")),
            (_, n) if n > 4 => Err(format!("{n} pods at once, above replicas + maxSurge")),
            _ => Ok(()),
        }
    })
    .await;
    env.apply(deployment("web", 3, "echo v2; exec sleep 600", strategy))
        .await;
    env.until(60, "the rollout to finish", || async {
        let d = env.get("apps", "Deployment", "web").await.unwrap();
        let observed = d.status().and_then(|s| s["observedGeneration"].as_i64())
            == Some(d.metadata.generation);
        observed
            && status_i64(&d, "updatedReplicas") == 3
            && status_i64(&d, "availableReplicas") == 3
            && status_i64(&d, "replicas") == 3
    })
    .await;
    let states = budget.assert_held(&env.store).await;
    assert!(
        states >= 12,
        "three pods replaced, each created, readied and deleted: only {states} states checked"
    );
    let sets = env
        .store
        .list(&ListQuery::kind("apps", "ReplicaSet").in_namespace("default"))
        .await
        .unwrap()
        .items;
    let mut revisions: Vec<(String, i64)> = sets
        .iter()
        .map(|rs| {
            (
                rs.metadata.annotations["deployment.kubernetes.io/revision"].clone(),
                rs.spec().unwrap()["replicas"].as_i64().unwrap(),
            )
        })
        .collect();
    revisions.sort();
    assert_eq!(
        revisions,
        [("1".to_string(), 0), ("2".to_string(), 3)],
        "the old revision is kept at 0 replicas for rollback"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_container_goes_into_crash_loop_back_off() {
    let env = Env::start().await;
    env.apply(deployment("crash", 1, "echo dying; exit 3", json!({})))
        .await;
    env.until(30, "CrashLoopBackOff", || async {
        env.pods().await.first().is_some_and(|p| {
            let cs = container_status(p);
            cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
                && cs["restartCount"].as_i64().unwrap_or(0) >= 2
        })
    })
    .await;
    let pod = env.pods().await.remove(0);
    let cs = container_status(&pod);
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3, "{cs}");
    assert_eq!(
        cs["lastState"]["terminated"]["message"], "dying",
        "the end of the output explains a failure: {cs}"
    );
    assert!(
        cs["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains("back-off"),
        "{cs}"
    );
    assert_eq!(pod.status().unwrap()["phase"], "Running");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_first_and_the_grace_period_is_honoured() {
    let env = Env::start().await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ordered", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [{"name": "prepare", "image": "sh:v1", "args": ["sleep 0.3; echo prepared > $SHIPWAY_VOLUME_WORK/init"]}],
            "containers": [{"name": "main", "image": "sh:v1", "args": [
                "test -f $SHIPWAY_VOLUME_WORK/init || exit 9; trap 'echo got TERM; sleep 1; echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done"
            ]}],
        },
    });
    env.apply(pod).await;
    env.until(20, "running after init", || async {
        env.get("", "Pod", "ordered").await.is_some_and(|p| {
            p.status().is_some_and(|s| {
                s["phase"] == "Running"
                    && s["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
            })
        })
    })
    .await;
    let p = env.get("", "Pod", "ordered").await.unwrap();
    assert_eq!(
        container_status(&p)["restartCount"],
        0,
        "main saw the init container's file on its first start"
    );
    let log = env
        .data
        .path()
        .join("pods")
        .join(p.metadata.uid.as_ref().unwrap())
        .join("logs/main/0.log");
    env.until(5, "the trap to be set", || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("up")
    })
    .await;
    let started = Instant::now();
    env.store.delete(&p.key(), "test").await.unwrap();
    env.until(15, "the pod to go", || async {
        env.get("", "Pod", "ordered").await.is_none()
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the pod waited for its trap handler"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_references_are_explained_in_the_status() {
    let env = Env::start().await;
    let cases = [
        (
            "noimage",
            json!({"name": "main", "image": "missing:v9", "args": ["true"]}),
            "ErrImagePull",
            "not found in the local image store",
        ),
        (
            "nokey",
            json!({"name": "main", "image": "sh:v1", "args": ["true"], "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "absent"}}}]}),
            "CreateContainerConfigError",
            "couldn't find key absent",
        ),
    ];
    env.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"}, "data": {"present": "1"}})).await;
    for (name, container, _, _) in &cases {
        env.apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": {"containers": [container]}})).await;
    }
    for (name, _, reason, message) in cases {
        env.until(20, &format!("{name} to explain itself"), || async {
            env.get("", "Pod", name).await.is_some_and(|p| {
                let waiting = &container_status(&p)["state"]["waiting"];
                waiting["reason"] == reason
                    && waiting["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(message))
            })
        })
        .await;
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_does_not_exist_is_a_start_error_that_backs_off() {
    let env = Env::start().await;
    env.apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nocmd", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "sh:v1", "command": ["./does-not-exist"]}]}})).await;
    env.until(20, "a start error with its reason", || async {
        env.get("", "Pod", "nocmd").await.is_some_and(|p| {
            let cs = container_status(&p);
            cs["lastState"]["terminated"]["reason"] == "StartError"
                && cs["lastState"]["terminated"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("exec \"./does-not-exist\""))
                && cs["restartCount"].as_i64().unwrap_or(0) >= 2
        })
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_retries_then_fails_after_its_backoff_limit() {
    let env = Env::start().await;
    env.apply(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "flaky", "namespace": "default"},
        "spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "sh:v1", "args": ["echo trying; exit 1"]}]}}}})).await;
    env.until(60, "the Job to fail", || async {
        env.get("batch", "Job", "flaky").await.is_some_and(|j| {
            j.status()
                .and_then(|s| s["conditions"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .any(|c| c["type"] == "Failed" && c["reason"] == "BackoffLimitExceeded")
        })
    })
    .await;
    let job = env.get("batch", "Job", "flaky").await.unwrap();
    assert_eq!(
        job.status().unwrap()["failed"],
        3,
        "backoffLimit 2 allows 3 attempts: {:?}",
        job.status()
    );
    let pods = env.pods().await;
    assert_eq!(pods.len(), 3, "each attempt is a pod, kept for its logs");
    assert!(
        pods.iter()
            .all(|p| p.status().unwrap()["phase"] == "Failed")
    );
    env.store.delete(&job.key(), "test").await.unwrap();
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_completes_its_completions_in_parallel_and_expires_after_its_ttl() {
    let env = Env::start().await;
    // At every change of any pod: at most `parallelism` active.
    let parallel = Invariant::watch(&env.store, pods_query(), |pods: &Objects| {
        let active = pods
            .values()
            .filter(|p| {
                p.status()
                    .is_some_and(|s| s["phase"] == "Running" || s["phase"] == "Pending")
            })
            .count();
        if active <= 2 {
            Ok(())
        } else {
            Err(format!("parallelism 2, saw {active} active pods"))
        }
    })
    .await;
    env.apply(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch", "namespace": "default"},
        "spec": {"completions": 4, "parallelism": 2, "ttlSecondsAfterFinished": 4, "template": {"spec": {"restartPolicy": "OnFailure",
            "containers": [{"name": "main", "image": "sh:v1", "args": ["sleep 0.2; echo done"]}]}}}})).await;
    // The TTL is long enough for this to see the Job complete even on a loaded machine.
    env.until(60, "the Job to complete", || async {
        let job = env
            .get("batch", "Job", "batch")
            .await
            .expect("the Job expired before it was seen complete");
        job.status()
            .is_some_and(|s| s["succeeded"] == 4 && s["conditions"][0]["type"] == "Complete")
    })
    .await;
    let states = parallel.assert_held(&env.store).await;
    assert!(
        states >= 8,
        "four pods, each created and finished: only {states} states checked"
    );
    env.until(20, "the finished Job and its pods to expire", || async {
        env.get("batch", "Job", "batch").await.is_none() && env.pods().await.is_empty()
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_publishes_ready_pods_as_endpoints() {
    let env = Env::start().await;
    let flags = tempfile::tempdir().unwrap();
    let ready = flags.path().join("ready");
    env.apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})).await;
    let probe = json!({"pod": {"containers": [{
        "name": "main", "image": "sh:v1", "args": ["exec sleep 600"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"exec": {"command": ["test", "-f", ready.to_str().unwrap()]}, "periodSeconds": 1},
    }]}});
    env.apply(deployment("web", 2, "", probe)).await;
    let endpoints = || async {
        env.get("", "Endpoints", "web")
            .await
            .and_then(|e| e.body.get("subsets").cloned())
            .unwrap_or(Value::Null)
    };
    env.until(20, "2 not-ready endpoints", || async {
        endpoints()
            .await
            .as_array()
            .is_some_and(|s| s.len() == 2 && s.iter().all(|x| x.get("notReadyAddresses").is_some()))
    })
    .await;
    std::fs::write(&ready, "").unwrap();
    env.until(20, "2 ready endpoints", || async {
        endpoints()
            .await
            .as_array()
            .is_some_and(|s| s.len() == 2 && s.iter().all(|x| x.get("addresses").is_some()))
    })
    .await;
    // Each endpoint's port is the loopback port its pod was given for containerPort 8080.
    let subsets = endpoints().await;
    for pod in env.pods().await {
        let host = pod.status().unwrap()["portMappings"][0]["hostPort"]
            .as_i64()
            .unwrap();
        let listed = subsets.as_array().unwrap().iter().any(|s| {
            s["addresses"][0]["targetRef"]["name"] == pod.metadata.name.as_str()
                && s["ports"][0]["port"] == host
        });
        assert!(
            listed,
            "{} on port {host} not in {subsets}",
            pod.metadata.name
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_already_taken_is_explained_in_the_status() {
    let env = Env::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let script =
        format!("python3 -c \"import socket; socket.socket().bind(('127.0.0.1', {port}))\"");
    env.apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "clash", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "sh:v1", "args": [script]}]}})).await;
    env.until(20, "the bind error in the status", || async {
        env.get("", "Pod", "clash").await.is_some_and(|p| {
            container_status(&p)["lastState"]["terminated"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Address already in use"))
        })
    })
    .await;
    drop(taken);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_appear_at_their_mount_paths_without_touching_the_image() {
    let env = Env::start().await;
    let src = env.data.path().join("etc-image");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/motd"), "from the image\n").unwrap();
    ImageStore::new(env.data.path())
        .import("etc:v1", &src, &["/bin/sh".into(), "-c".into()], &[])
        .unwrap();
    env.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"}, "data": {"greeting": "hello"}})).await;
    env.apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default"}, "data": {"token": "czNjcjN0"}})).await;
    env.apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mounts", "namespace": "default"}, "spec": {
        "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}, {"name": "sec", "secret": {"secretName": "creds"}}],
        "containers": [{"name": "main", "image": "etc:v1",
            "args": ["cat config/greeting; echo; cat /dev/null; cat etc/secret/token; echo; cat etc/motd; stat -c %a $(readlink -f etc/secret)/token; exec sleep 600"],
            "volumeMounts": [{"name": "cfg", "mountPath": "/config"}, {"name": "sec", "mountPath": "/etc/secret"}]}],
    }})).await;
    let pod = || async { env.get("", "Pod", "mounts").await.unwrap() };
    env.until(20, "running", || async {
        container_status(&pod().await)["state"]
            .get("running")
            .is_some()
    })
    .await;
    let p = pod().await;
    let log = env
        .data
        .path()
        .join("pods")
        .join(p.metadata.uid.as_ref().unwrap())
        .join("logs/main/0.log");
    env.until(5, "the output", || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            >= 4
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "hello\ns3cr3t\nfrom the image\n600\n"
    );
    let image_etc: Vec<_> = std::fs::read_dir(
        ImageStore::new(env.data.path())
            .resolve("etc:v1")
            .unwrap()
            .root
            .join("etc"),
    )
    .unwrap()
    .collect();
    assert_eq!(
        image_etc.len(),
        1,
        "the shared image directory is untouched"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_like_paths_in_a_stored_pod_are_refused_by_the_kubelet() {
    // Written straight to the store, as a Pod admitted before the API checked these names.
    let env = Env::start().await;
    let escape = env.data.path().join("escaped");
    env.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"}, "data": {"greeting": "hello"}})).await;
    env.apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vol", "namespace": "default"}, "spec": {
        "volumes": [{"name": "../../../escaped", "configMap": {"name": "settings"}}],
        "containers": [{"name": "main", "image": "sh:v1", "args": ["sleep 600"]}],
    }})).await;
    env.apply(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ctr", "namespace": "default"}, "spec": {
        "containers": [{"name": "../../../escaped", "image": "sh:v1", "args": ["sleep 600"]}],
    }})).await;
    for (pod, message) in [
        (
            "vol",
            "volume \"../../../escaped\": Invalid value: a lowercase RFC 1123 label",
        ),
        (
            "ctr",
            "container name \"../../../escaped\": Invalid value: a lowercase RFC 1123 label",
        ),
    ] {
        env.until(20, "the refusal in the status", || async {
            env.get("", "Pod", pod).await.is_some_and(|p| {
                let w = &container_status(&p)["state"]["waiting"];
                w["reason"] == "CreateContainerConfigError"
                    && w["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(message))
            })
        })
        .await;
    }
    assert!(
        !escape.exists(),
        "nothing was made outside the pod directory"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_trait_applies_observes_and_deletes() {
    use shipway_runtime::{ApplyOptions, Runtime, StoreRuntime};
    let env = Env::start().await;
    let runtime = StoreRuntime::new(env.store.clone(), env.data.path());
    let gitops = shipway_model::Actor::component("gitops");
    let obj: Object =
        serde_json::from_value(deployment("api", 1, "exec sleep 600", json!({}))).unwrap();
    let key = obj.key();
    let dry = ApplyOptions {
        dry_run: true,
        ..ApplyOptions::by(gitops.clone())
    };
    let (_, outcome) = runtime.apply(obj.clone(), dry).await.unwrap();
    assert_eq!(outcome, shipway_store::ApplyOutcome::Created);
    assert!(runtime.observe(&key).await.unwrap().is_none(), "dry run");
    let (_, outcome) = runtime
        .apply(obj.clone(), ApplyOptions::by(gitops.clone()))
        .await
        .unwrap();
    assert_eq!(outcome, shipway_store::ApplyOutcome::Created);
    assert_eq!(
        runtime
            .apply(obj, ApplyOptions::by(gitops.clone()))
            .await
            .unwrap()
            .1,
        shipway_store::ApplyOutcome::Unchanged
    );
    env.until(30, "observed ready", || async {
        runtime
            .observe(&key)
            .await
            .unwrap()
            .is_some_and(|d| status_i64(&d, "readyReplicas") == 1)
    })
    .await;
    assert!(runtime.delete(&key, &gitops).await.unwrap().is_some());
    assert!(runtime.delete(&key, &gitops).await.unwrap().is_none());
    env.until(30, "its pods to go with it", || async {
        env.pods().await.is_empty()
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let env = Env::start().await;
    let strategy = json!({"strategy": {"type": "Recreate"}});
    env.apply(deployment("db", 2, "exec sleep 600", strategy.clone()))
        .await;
    env.until(30, "v1 ready", || async {
        env.get("apps", "Deployment", "db")
            .await
            .is_some_and(|d| status_i64(&d, "readyReplicas") == 2)
    })
    .await;
    let v1: Vec<String> = env
        .pods()
        .await
        .iter()
        .map(|p| p.metadata.labels["pod-template-hash"].clone())
        .collect();
    // At every change of any pod, terminating ones included: one revision only.
    let one_revision = Invariant::watch(&env.store, pods_query(), |pods: &Objects| {
        let hashes: std::collections::BTreeSet<&String> = pods
            .values()
            .map(|p| &p.metadata.labels["pod-template-hash"])
            .collect();
        if hashes.len() <= 1 {
            Ok(())
        } else {
            Err(format!("old and new revisions ran together: {hashes:?}"))
        }
    })
    .await;
    env.apply(deployment("db", 2, "echo v2; exec sleep 600", strategy))
        .await;
    env.until(60, "Recreate to finish", || async {
        let d = env.get("apps", "Deployment", "db").await.unwrap();
        let observed = d.status().and_then(|s| s["observedGeneration"].as_i64())
            == Some(d.metadata.generation);
        let pods = env.pods().await;
        observed
            && status_i64(&d, "updatedReplicas") == 2
            && status_i64(&d, "readyReplicas") == 2
            && pods
                .iter()
                .all(|p| p.metadata.labels["pod-template-hash"] != v1[0])
    })
    .await;
    let states = one_revision.assert_held(&env.store).await;
    assert!(
        states >= 8,
        "two pods replaced, each created, deleted and created: only {states} states checked"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_edits_do_not_restart_pods_and_a_paused_deployment_does_not_roll() {
    let env = Env::start().await;
    env.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"}, "data": {"mode": "a"}})).await;
    let pod = json!({"pod": {"containers": [{"name": "main", "image": "sh:v1", "args": ["echo mode=$MODE; exec sleep 600"],
        "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}}]}]}});
    env.apply(deployment("app", 1, "", pod.clone())).await;
    env.until(30, "ready", || async {
        env.get("apps", "Deployment", "app")
            .await
            .is_some_and(|d| status_i64(&d, "readyReplicas") == 1)
    })
    .await;
    let before = env.pods().await.remove(0);
    // From the ConfigMap edit until the paused Deployment is seen: the one pod, never restarted.
    let uid = before.metadata.uid.clone();
    let untouched = Invariant::watch(&env.store, pods_query(), move |pods: &Objects| {
        let pods: Vec<&Object> = pods.values().collect();
        match &pods[..] {
            [p] if p.metadata.uid == uid && container_status(p)["restartCount"] == 0 => Ok(()),
            _ => Err(format!(
                "a ConfigMap edit or a paused Deployment touched the pod: {:?}",
                pods.iter()
                    .map(|p| (
                        &p.metadata.name,
                        container_status(p)["restartCount"].clone()
                    ))
                    .collect::<Vec<_>>()
            )),
        }
    })
    .await;
    env.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"}, "data": {"mode": "b"}})).await;

    // Paused: a template change makes no new revision until resumed. The controller says it
    // has seen the change by its observedGeneration; only then is "nothing happened" evidence.
    let mut paused = deployment("app", 1, "echo v2; exec sleep 600", json!({"paused": true}));
    paused["spec"]["template"]["spec"]["containers"][0]["env"] =
        pod["pod"]["containers"][0]["env"].clone();
    let generation = env.apply(paused.clone()).await.metadata.generation;
    env.until(30, "the paused template change to be observed", || async {
        env.get("apps", "Deployment", "app").await.is_some_and(|d| {
            d.status().and_then(|s| s["observedGeneration"].as_i64()) == Some(generation)
        })
    })
    .await;
    let sets = env
        .store
        .list(&ListQuery::kind("apps", "ReplicaSet"))
        .await
        .unwrap()
        .items;
    assert_eq!(sets.len(), 1, "no new revision while paused");
    untouched.assert_held(&env.store).await;
    paused["spec"]["paused"] = json!(false);
    env.apply(paused).await;
    env.until(30, "the rollout after resuming", || async {
        env.store
            .list(&ListQuery::kind("apps", "ReplicaSet"))
            .await
            .unwrap()
            .items
            .len()
            == 2
            && env.get("apps", "Deployment", "app").await.is_some_and(|d| {
                status_i64(&d, "updatedReplicas") == 1 && status_i64(&d, "readyReplicas") == 1
            })
    })
    .await;
    env.stop().await;
}

/// The pids a pod's containers wrote to `bg.pids` in their `work` volume, one a line.
fn background_pids(env: &Env, pod: &Object) -> Vec<i64> {
    let file = env
        .data
        .path()
        .join("pods")
        .join(pod.metadata.uid.as_ref().unwrap())
        .join("volumes/work/bg.pids");
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_children_die_when_the_main_process_exits_by_itself() {
    let env = Env::start().await;
    // The main process starts a long sleep in its group and exits at once.
    let script = "sleep 300 & echo $! >> $SHIPWAY_VOLUME_WORK/bg.pids; exit 0";
    for (name, policy) in [("once", "Never"), ("again", "Always")] {
        env.apply(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "restartPolicy": policy,
                "volumes": [{"name": "work", "emptyDir": {}}],
                "containers": [{"name": "main", "image": "sh:v1", "args": [script]}],
            },
        }))
        .await;
    }
    env.until(20, "the Never pod to succeed", || async {
        env.get("", "Pod", "once")
            .await
            .is_some_and(|p| p.status().is_some_and(|s| s["phase"] == "Succeeded"))
    })
    .await;
    let once = env.get("", "Pod", "once").await.unwrap();
    let pids = background_pids(&env, &once);
    assert_eq!(pids.len(), 1, "{pids:?}");
    env.until(
        5,
        "the Succeeded pod's background sleep to be gone",
        || async { !pid_alive(pids[0]) },
    )
    .await;

    env.until(20, "the Always pod to restart twice", || async {
        env.get("", "Pod", "again")
            .await
            .is_some_and(|p| container_status(&p)["restartCount"].as_i64().unwrap_or(0) >= 2)
    })
    .await;
    let again = env.get("", "Pod", "again").await.unwrap();
    let pids = background_pids(&env, &again);
    assert!(pids.len() >= 2, "{pids:?}");
    env.until(
        5,
        "the background sleeps of earlier runs to be gone",
        || async { pids[..2].iter().all(|p| !pid_alive(*p)) },
    )
    .await;
    env.stop().await;
}
