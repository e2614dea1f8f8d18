//! The Application controller with real parts: a store, the local runtime running pods as
//! processes, and Argo's guestbook committed to a real git repository (file://) with the git
//! CLI.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shipway_gitops::controller::ApplicationController;
use shipway_model::{Key, Object};
use shipway_runtime::images::ImageStore;
use shipway_runtime::{KubeletConfig, LocalRuntime, StoreRuntime};
use shipway_store::{ListQuery, Store};
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "gcr.io/google-samples/gb-frontend:v5";

fn corpus() -> Option<std::path::PathBuf> {
    if let Some(root) = std::env::var_os("SHIPWAY_CORPUS") {
        return Some(std::path::PathBuf::from(root).join("argo"));
    }
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/argo");
    beside.is_dir().then_some(beside)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn start_controller(
    store: &Store,
    cache: &shipway_controller::Cache,
    data: &Path,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let controller = ApplicationController::new(
        store.clone(),
        cache.clone(),
        Arc::new(StoreRuntime::new(store.clone(), data)),
        data,
        None,
    );
    let token = CancellationToken::new();
    (token.clone(), tokio::spawn(controller.run(token)))
}

struct Env {
    store: Store,
    data: tempfile::TempDir,
    repo: std::path::PathBuf,
    cache: shipway_controller::Cache,
    shutdown: CancellationToken,
    /// The controller's own token, so a test can stop it and start another (a restart).
    controller: (CancellationToken, tokio::task::JoinHandle<()>),
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Env {
    /// A store, the runtime and the controller, and a git repository holding `tree` at
    /// `guestbook/`.
    async fn start(tree: &Path) -> Env {
        let data = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&data.path().join("shipway.db"))
            .await
            .unwrap();
        // The guestbook's image, as a process that stays up.
        let src = data.path().join("image-src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("README"), "guestbook stand-in\n").unwrap();
        for image in [
            IMAGE,
            "gcr.io/google-samples/gb-frontend:v6",
            "alpine:latest",
            "nginx:latest",
        ] {
            ImageStore::new(data.path())
                .import(
                    image,
                    &src,
                    &["/bin/sh".into(), "-c".into(), "exec sleep 600".into()],
                    &[],
                )
                .unwrap();
        }
        let repo = data.path().join("repo");
        copy_tree(tree, &repo.join("guestbook"));
        git(&repo, &["init", "-q"]);
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-qm", "guestbook"]);

        let shutdown = CancellationToken::new();
        let (cache, feed) = shipway_controller::Reflector::spawn(store.clone(), shutdown.clone());
        let runtime = LocalRuntime::start(
            store.clone(),
            cache.clone(),
            KubeletConfig::new(data.path()),
            shutdown.clone(),
        );
        let controller = start_controller(&store, &cache, data.path());
        let tasks = vec![feed, tokio::spawn(runtime.join())];
        Env {
            store,
            data,
            repo,
            cache,
            shutdown,
            controller,
            tasks,
        }
    }

    /// Registers `image` as a directory holding `files`, run as `sh -c script`.
    fn import(&self, image: &str, files: &[(&str, &str)], script: &str) {
        let src = self
            .data
            .path()
            .join("image-src")
            .join(image.replace(['/', ':'], "_"));
        std::fs::create_dir_all(&src).unwrap();
        for (name, text) in files {
            std::fs::write(src.join(name), text).unwrap();
        }
        ImageStore::new(self.data.path())
            .import(
                image,
                &src,
                &["/bin/sh".into(), "-c".into(), script.into()],
                &[],
            )
            .unwrap();
    }

    /// Stops the controller and starts a new one on the same store, as a restarted
    /// `shipway up` would.
    async fn restart_controller(&mut self) {
        let (token, task) = std::mem::replace(
            &mut self.controller,
            start_controller(&self.store, &self.cache, self.data.path()),
        );
        token.cancel();
        task.await.unwrap();
    }

    fn head(&self) -> String {
        git(&self.repo, &["rev-parse", "HEAD"])
    }

    async fn application(&self, name: &str, sync_policy: Value) -> Key {
        self.application_at(name, "guestbook", sync_policy).await
    }

    async fn application_at(&self, name: &str, path: &str, sync_policy: Value) -> Key {
        let app: Object = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": "argocd"},
            "spec": {
                "project": "default",
                "source": {"repoURL": format!("file://{}", self.repo.display()), "path": path, "targetRevision": "HEAD"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
                "syncPolicy": sync_policy,
            },
        }))
        .unwrap();
        let key = app.key();
        self.store.apply(app, "test").await.unwrap();
        key
    }

    async fn status(&self, key: &Key) -> Value {
        let app = self.store.get(key).await.unwrap().unwrap();
        app.body.get("status").cloned().unwrap_or(Value::Null)
    }

    async fn until_status(
        &self,
        key: &Key,
        secs: u64,
        what: &str,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status(key).await;
            if f(&s) {
                return s;
            }
            if tokio::time::Instant::now() > deadline {
                let pods: Vec<String> = self
                    .store
                    .list(&ListQuery::kind("", "Pod"))
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .map(|p| format!("{} {}", p.metadata.name, p.body["status"]))
                    .collect();
                panic!("timed out waiting for {what}; status: {s:#}; pods: {pods:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        for kind in [
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("batch", "Job"),
            ("", "Pod"),
        ] {
            for o in self
                .store
                .list(&ListQuery::kind(kind.0, kind.1))
                .await
                .unwrap()
                .items
            {
                let _ = self.store.delete(&o.key(), "test").await;
            }
        }
        let store = self.store.clone();
        shipway_testkit::eventually(Duration::from_secs(30), "pods to be gone", || {
            let store = store.clone();
            async move {
                store
                    .list(&ListQuery::kind("", "Pod"))
                    .await
                    .unwrap()
                    .items
                    .is_empty()
            }
        })
        .await;
        self.controller.0.cancel();
        let _ = self.controller.1.await;
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        drop(self.data);
    }
}

/// Copies the directory `from` to `to`, subdirectories included.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &target);
        } else {
            std::fs::copy(&p, target).unwrap();
        }
    }
}

macro_rules! corpus_or_skip {
    () => {
        match corpus() {
            Some(c) => c,
            None => {
                println!("SKIPPED: no corpus (set SHIPWAY_CORPUS)");
                return;
            }
        }
    };
}

fn resources(status: &Value) -> Vec<String> {
    status["resources"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    format!(
                        "{} {} {} {}",
                        r["kind"].as_str().unwrap_or_default(),
                        r["name"].as_str().unwrap_or_default(),
                        r["status"].as_str().unwrap_or_default(),
                        r["health"]["status"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guestbook_without_a_sync_policy_is_out_of_sync_and_missing() {
    let corpus = corpus_or_skip!();
    let env = Env::start(&corpus.join("example-apps/guestbook")).await;
    let key = env.application("guestbook", Value::Null).await;
    let s = env
        .until_status(&key, 20, "a comparison", |s| {
            s["sync"]["status"] == "OutOfSync"
        })
        .await;
    assert_eq!(s["sync"]["revision"], env.head());
    assert_eq!(s["health"]["status"], "Missing", "{s:#}");
    assert_eq!(
        resources(&s),
        [
            "Deployment guestbook-ui OutOfSync Missing",
            "Service guestbook-ui OutOfSync Missing"
        ]
    );
    assert_eq!(s["summary"]["images"], json!([IMAGE]));
    assert_eq!(
        s["sync"]["comparedTo"]["destination"]["namespace"],
        "default"
    );
    assert!(s["reconciledAt"].is_string());
    // Nothing applied without a sync.
    assert!(
        env.store
            .get(&Key::new("apps", "Deployment", "default", "guestbook-ui"))
            .await
            .unwrap()
            .is_none()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guestbook_automated_syncs_heals_and_follows_new_commits() {
    let corpus = corpus_or_skip!();
    let env = Env::start(&corpus.join("example-apps/guestbook")).await;
    let key = env
        .application(
            "guestbook",
            json!({"automated": {"selfHeal": true, "prune": true}}),
        )
        .await;
    let first = env.head();
    let s = env
        .until_status(&key, 60, "Synced and Healthy", |s| {
            s["sync"]["status"] == "Synced" && s["health"]["status"] == "Healthy"
        })
        .await;
    let op = &s["operationState"];
    assert_eq!(op["phase"], "Succeeded", "{s:#}");
    assert_eq!(op["message"], "successfully synced (all tasks run)");
    assert_eq!(op["syncResult"]["revision"], first);
    let results: Vec<String> = op["syncResult"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["kind"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
                r["message"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            "Service Synced service/guestbook-ui created",
            "Deployment Synced deployment/guestbook-ui created"
        ]
    );
    assert_eq!(s["history"][0]["revision"], first);
    assert_eq!(s["history"][0]["id"], 0);
    // Its pod runs as a process.
    let pods = env
        .store
        .list(&ListQuery::kind("", "Pod"))
        .await
        .unwrap()
        .items;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].body["status"]["phase"], "Running");
    let events = env
        .store
        .events(&shipway_store::EventQuery::default())
        .await
        .unwrap();
    assert!(
        events.iter().any(|e| e.message.contains(&format!(
            "sync initiated by automated sync policy to {first}: Succeeded"
        ))),
        "{events:?}"
    );

    // Drift: a deleted Service comes back (selfHeal).
    let svc = Key::new("", "Service", "default", "guestbook-ui");
    env.store.delete(&svc, "someone").await.unwrap();
    let store = env.store.clone();
    shipway_testkit::eventually(Duration::from_secs(30), "the Service healed", || {
        let store = store.clone();
        let svc = svc.clone();
        async move { store.get(&svc).await.unwrap().is_some() }
    })
    .await;

    // Drift: replicas edited through the store are set back.
    let dkey = Key::new("apps", "Deployment", "default", "guestbook-ui");
    let mut d = env.store.get(&dkey).await.unwrap().unwrap();
    d.body["spec"]["replicas"] = json!(3);
    env.store.update(d, "someone").await.unwrap();
    shipway_testkit::eventually(Duration::from_secs(30), "replicas healed to 1", || {
        let store = env.store.clone();
        let dkey = dkey.clone();
        async move {
            let d = store.get(&dkey).await.unwrap().unwrap();
            d.body["spec"]["replicas"] == 1 && d.metadata.generation >= 3
        }
    })
    .await;

    // A new commit changing the image tag: synced at the new revision.
    let file = env.repo.join("guestbook/guestbook-ui-deployment.yaml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("gb-frontend:v5", "gb-frontend:v6");
    std::fs::write(&file, text).unwrap();
    git(&env.repo, &["commit", "-qam", "v6"]);
    let second = env.head();
    let s = env
        .until_status(&key, 60, "Synced at the new revision", |s| {
            s["sync"]["status"] == "Synced"
                && s["sync"]["revision"] == second.as_str()
                && s["operationState"]["phase"] == "Succeeded"
                && s["operationState"]["syncResult"]["revision"] == second.as_str()
        })
        .await;
    assert_eq!(
        s["summary"]["images"],
        json!(["gcr.io/google-samples/gb-frontend:v6"])
    );
    let d = env
        .store
        .get(&Key::new("apps", "Deployment", "default", "guestbook-ui"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        d.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "gcr.io/google-samples/gb-frontend:v6"
    );

    // A file removed: pruned (prune on).
    git(&env.repo, &["rm", "-q", "guestbook/guestbook-ui-svc.yaml"]);
    git(&env.repo, &["commit", "-qm", "no service"]);
    shipway_testkit::eventually(Duration::from_secs(30), "the Service pruned", || {
        let store = env.store.clone();
        let svc = svc.clone();
        async move { store.get(&svc).await.unwrap().is_none() }
    })
    .await;
    let s = env
        .until_status(&key, 30, "the prune recorded", |s| {
            s["operationState"]["syncResult"]["resources"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| r["status"] == "Pruned"))
        })
        .await;
    assert!(s["history"].as_array().unwrap().len() >= 3, "{s:#}");

    // A render error: ComparisonError, Unknown, nothing pruned.
    std::fs::write(env.repo.join("guestbook/broken.yaml"), "kind: [").unwrap();
    git(&env.repo, &["add", "."]);
    git(&env.repo, &["commit", "-qm", "broken"]);
    let s = env
        .until_status(&key, 30, "a ComparisonError", |s| {
            s["sync"]["status"] == "Unknown"
        })
        .await;
    let cond = &s["conditions"][0];
    assert_eq!(cond["type"], "ComparisonError", "{s:#}");
    assert!(
        cond["message"].as_str().unwrap().contains("broken.yaml"),
        "{s:#}"
    );
    assert!(
        env.store
            .get(&Key::new("apps", "Deployment", "default", "guestbook-ui"))
            .await
            .unwrap()
            .is_some()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_self_heal_or_prune_drift_stays_and_prunes_are_skipped() {
    let corpus = corpus_or_skip!();
    let env = Env::start(&corpus.join("example-apps/guestbook")).await;
    let key = env.application("guestbook", json!({"automated": {}})).await;
    env.until_status(&key, 60, "Synced and Healthy", |s| {
        s["sync"]["status"] == "Synced" && s["health"]["status"] == "Healthy"
    })
    .await;
    let dkey = Key::new("apps", "Deployment", "default", "guestbook-ui");
    let mut d = env.store.get(&dkey).await.unwrap().unwrap();
    d.body["spec"]["replicas"] = json!(2);
    env.store.update(d, "someone").await.unwrap();
    let s = env
        .until_status(&key, 20, "OutOfSync", |s| {
            s["sync"]["status"] == "OutOfSync"
        })
        .await;
    let at = s["reconciledAt"].clone();
    assert!(
        resources(&s).contains(&"Deployment guestbook-ui OutOfSync Healthy".to_string())
            || resources(&s)
                .iter()
                .any(|r| r.starts_with("Deployment guestbook-ui OutOfSync")),
        "{s:#}"
    );
    // Several reconciles later (a file:// repository is read every 2 s) it is still edited.
    env.until_status(&key, 20, "a later reconcile", |s| s["reconciledAt"] != at)
        .await;
    let d = env.store.get(&dkey).await.unwrap().unwrap();
    assert_eq!(d.body["spec"]["replicas"], 2);
    assert_eq!(env.status(&key).await["sync"]["status"], "OutOfSync");

    // A removed file at a new revision: the automated sync runs, the Service is left alone.
    git(&env.repo, &["rm", "-q", "guestbook/guestbook-ui-svc.yaml"]);
    git(&env.repo, &["commit", "-qm", "no service"]);
    let head = env.head();
    let s = env
        .until_status(&key, 30, "the sync of the new revision", |s| {
            s["operationState"]["syncResult"]["revision"] == head.as_str()
                && s["operationState"]["phase"] == "Succeeded"
        })
        .await;
    let skipped: Vec<&Value> = s["operationState"]["syncResult"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "Service")
        .collect();
    assert_eq!(skipped.len(), 1, "{s:#}");
    assert_eq!(skipped[0]["status"], "PruneSkipped");
    assert_eq!(skipped[0]["message"], "ignored (requires pruning)");
    assert!(
        env.store
            .get(&Key::new("", "Service", "default", "guestbook-ui"))
            .await
            .unwrap()
            .is_some()
    );
    let s = env.status(&key).await;
    assert_eq!(s["sync"]["status"], "OutOfSync");
    assert!(
        s["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "Service" && r["requiresPruning"] == true),
        "{s:#}"
    );
    env.stop().await;
}

/// Argo's sync-waves example (its PreSync hook named by generateName): the results record
/// PreSync, then waves 0..3 in order; each wave started only after the one before was done;
/// and a controller restarted in the middle resumes the persisted operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_waves_run_in_order_and_resume_after_a_restart() {
    let corpus = corpus_or_skip!();
    let mut env = Env::start(&corpus.join("example-apps/sync-waves")).await;
    let key = env.application("waves", json!({"automated": {}})).await;
    // The PreSync hook sleeps 5 s: stop the controller while it waits for it.
    env.until_status(&key, 30, "the PreSync hook running", |s| {
        s["operationState"]["phase"] == "Running"
            && s["operationState"]["syncResult"]["resources"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
    })
    .await;
    env.restart_controller().await;
    let s = env
        .until_status(&key, 90, "the sync to finish", |s| {
            s["operationState"]["phase"] == "Succeeded" || s["operationState"]["phase"] == "Failed"
        })
        .await;
    let op = &s["operationState"];
    assert_eq!(op["phase"], "Succeeded", "{s:#}");
    let head = env.head();
    let order: Vec<String> = op["syncResult"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["syncPhase"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                r["name"].as_str().unwrap(),
                r["hookPhase"].as_str().unwrap_or("-")
            )
        })
        .collect();
    let started = op["startedAt"].as_str().unwrap();
    let unix = time_unix(started);
    let presync = format!("upgrade-sql-schema{}-presync-{unix}", &head[..7]);
    assert_eq!(
        order,
        [
            format!("PreSync Job {presync} Succeeded"),
            "Sync Service backend -".to_string(),
            "Sync ReplicaSet backend -".to_string(),
            "Sync Job maint-page-up Succeeded".to_string(),
            "Sync Service frontend -".to_string(),
            "Sync ReplicaSet frontend -".to_string(),
            "Sync Job maint-page-down Succeeded".to_string(),
        ],
        "{s:#}"
    );
    // Wave order as evidence: each wave's objects were created after the previous wave's hook
    // completed.
    let get = |k: Key| {
        let store = env.store.clone();
        async move { store.get(&k).await.unwrap().unwrap() }
    };
    let pre = get(Key::new("batch", "Job", "default", &presync)).await;
    let backend = get(Key::new("apps", "ReplicaSet", "default", "backend")).await;
    let up = get(Key::new("batch", "Job", "default", "maint-page-up")).await;
    let frontend = get(Key::new("apps", "ReplicaSet", "default", "frontend")).await;
    let done = |j: &Object| {
        j.body["status"]["completionTime"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let created = |o: &Object| o.metadata.creation_timestamp.clone().unwrap();
    assert!(
        done(&pre) <= created(&backend),
        "{} > {}",
        done(&pre),
        created(&backend)
    );
    assert!(
        done(&up) <= created(&frontend),
        "{} > {}",
        done(&up),
        created(&frontend)
    );
    for rs in ["backend", "frontend"] {
        env.store
            .delete(&Key::new("apps", "ReplicaSet", "default", rs), "test")
            .await
            .unwrap();
    }
    env.stop().await;
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp (`2026-12-03T07:43:30Z`).
fn time_unix(t: &str) -> i64 {
    let out = Command::new("date")
        .args(["-u", "-d", t, "+%s"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// `operation` as `argocd app sync` writes it, on a tree whose PreSync hook fails: the
/// operation fails, nothing of the Sync phase is applied, the SyncFail hook runs, the event
/// names who asked, and `operation` is cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_presync_hook_fails_the_sync_and_runs_the_syncfail_hook() {
    let tree = tempfile::tempdir().unwrap();
    let job = |name: &str, hook: &str, script: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  annotations:\n    argocd.argoproj.io/hook: {hook}\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: alpine:latest\n        command: [\"sh\", \"-c\", \"{script}\"]\n"
        )
    };
    std::fs::write(
        tree.path().join("pre.yaml"),
        job("migrate", "PreSync", "exit 3"),
    )
    .unwrap();
    std::fs::write(
        tree.path().join("fail.yaml"),
        job("cleanup", "SyncFail", "true"),
    )
    .unwrap();
    std::fs::write(
        tree.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n",
    )
    .unwrap();
    let env = Env::start(tree.path()).await;
    let key = env.application("hooks", Value::Null).await;
    env.until_status(&key, 20, "OutOfSync", |s| {
        s["sync"]["status"] == "OutOfSync"
    })
    .await;
    let mut app = env.store.get(&key).await.unwrap().unwrap();
    app.body.insert(
        "operation".into(),
        json!({"sync": {"prune": false}, "initiatedBy": {"username": "alice"}}),
    );
    env.store.update(app, "alice").await.unwrap();
    let s = env
        .until_status(&key, 60, "the sync to fail", |s| {
            s["operationState"]["phase"] == "Failed"
        })
        .await;
    let op = &s["operationState"];
    assert!(
        op["message"]
            .as_str()
            .unwrap()
            .contains("Job default/migrate"),
        "{s:#}"
    );
    let results: Vec<String> = op["syncResult"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["syncPhase"].as_str().unwrap(),
                r["name"].as_str().unwrap(),
                r["hookPhase"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        results,
        ["PreSync migrate Failed", "SyncFail cleanup Running"],
        "{s:#}"
    );
    assert!(
        env.store
            .get(&Key::new("", "ConfigMap", "default", "settings"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        env.store
            .get(&Key::new("batch", "Job", "default", "cleanup"))
            .await
            .unwrap()
            .is_some()
    );
    let app = env.store.get(&key).await.unwrap().unwrap();
    assert!(app.body.get("operation").is_none(), "operation not cleared");
    let events = env
        .store
        .events(&shipway_store::EventQuery::default())
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.message.starts_with("sync initiated by alice to ")
                && e.message.contains(": Failed: ")),
        "{events:?}"
    );
    env.stop().await;
}

/// A URL that is neither hosted nor file:// is fetched into the shared cache; an unreachable
/// one and an unknown revision are `ComparisonError`s with sync `Unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_repositories_and_fail_closed_comparisons() {
    let corpus = corpus_or_skip!();
    let env = Env::start(&corpus.join("example-apps/guestbook")).await;
    let app = |name: &str, url: String, rev: &str| -> Object {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": "argocd"},
            "spec": {"source": {"repoURL": url, "path": "guestbook", "targetRevision": rev},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"}},
        }))
        .unwrap()
    };
    // A plain path is a URL git fetches (as it would an https:// one).
    let fetched = app("fetched", env.repo.display().to_string(), "main");
    let fetched_key = fetched.key();
    env.store.apply(fetched, "test").await.unwrap();
    let s = env
        .until_status(&fetched_key, 20, "a comparison", |s| {
            s["sync"]["status"] == "OutOfSync"
        })
        .await;
    assert_eq!(s["sync"]["revision"], env.head());
    let caches: Vec<_> = std::fs::read_dir(env.data.path().join("gitops/cache"))
        .unwrap()
        .collect();
    assert_eq!(caches.len(), 1);

    let gone = app("gone", "/nonexistent/repo.git".into(), "HEAD");
    let gone_key = gone.key();
    env.store.apply(gone, "test").await.unwrap();
    let s = env
        .until_status(&gone_key, 20, "a ComparisonError", |s| {
            s["sync"]["status"] == "Unknown" && s["conditions"].is_array()
        })
        .await;
    assert_eq!(s["conditions"][0]["type"], "ComparisonError", "{s:#}");
    assert!(
        s["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("failed to fetch"),
        "{s:#}"
    );

    let unknown = app(
        "unknown",
        format!("file://{}", env.repo.display()),
        "no-such-branch",
    );
    let unknown_key = unknown.key();
    env.store.apply(unknown, "test").await.unwrap();
    let s = env
        .until_status(&unknown_key, 20, "a ComparisonError", |s| {
            s["sync"]["status"] == "Unknown" && s["conditions"].is_array()
        })
        .await;
    assert!(
        s["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown revision \"no-such-branch\""),
        "{s:#}"
    );
    env.stop().await;
}

/// Argo CD's cascading delete: with the resources finalizer the app's tracked resources go
/// first, then the Application; an object it did not create stays. Without the finalizer
/// (`--cascade=false`) the resources stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_application_cascades_through_the_resources_finalizer() {
    let corpus = corpus_or_skip!();
    let env = Env::start(&corpus.join("example-apps/guestbook")).await;
    let store = env.store.clone();
    let exists = |group: &'static str, kind: &'static str, name: &'static str| {
        let store = store.clone();
        async move {
            store
                .get(&Key::new(group, kind, "default", name))
                .await
                .unwrap()
                .is_some()
        }
    };
    // Someone else's object beside the app's: never the app's to delete.
    let other: Object = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "not-ours", "namespace": "default"}, "data": {"a": "b"},
    }))
    .unwrap();
    env.store.apply(other, "test").await.unwrap();

    for (name, cascade) in [("guestbook", true), ("kept", false)] {
        let key = env.application(name, json!({"automated": {}})).await;
        env.until_status(&key, 60, "Synced", |s| s["sync"]["status"] == "Synced")
            .await;
        let mut app = env.store.get(&key).await.unwrap().unwrap();
        if cascade {
            app.metadata
                .finalizers
                .push("resources-finalizer.argocd.argoproj.io".into());
            env.store.apply(app, "test").await.unwrap();
        }
        env.store.delete(&key, "test").await.unwrap();
        let s = env.store.clone();
        shipway_testkit::eventually(Duration::from_secs(30), "the Application gone", || {
            let s = s.clone();
            let key = key.clone();
            async move { s.get(&key).await.unwrap().is_none() }
        })
        .await;
        let deployment = exists("apps", "Deployment", "guestbook-ui").await;
        let service = exists("", "Service", "guestbook-ui").await;
        if cascade {
            assert!(
                !deployment && !service,
                "cascade left deployment={deployment} service={service}"
            );
        } else {
            assert!(deployment && service, "without cascade the resources stay");
        }
    }
    assert!(exists("", "ConfigMap", "not-ours").await);
    env.stop().await;
}

/// An external repository polled hourly is fetched again at once when its Repository's
/// `status.lastWebhook` changes (what a verified webhook delivery writes); without that the
/// write wakes the app but the hourly limit keeps the old commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_webhook_on_the_repository_forces_a_fetch() {
    let corpus = corpus_or_skip!();
    let env = Env::start(&corpus.join("example-apps/guestbook")).await;
    let url = env.repo.display().to_string();
    let repo: Object = serde_json::from_value(json!({
        "apiVersion": "shipway.dev/v1alpha1", "kind": "Repository",
        "metadata": {"name": "upstream", "namespace": "default"},
        // Spelled differently from the app's repoURL: the same repository, as Argo compares.
        "spec": {"url": format!("{url}.git/"), "pollInterval": "1h"},
    }))
    .unwrap();
    let repo_key = repo.key();
    env.store.apply(repo, "test").await.unwrap();
    let app: Object = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "hooked", "namespace": "argocd"},
        "spec": {"source": {"repoURL": url, "path": "guestbook", "targetRevision": "main"},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"}},
    }))
    .unwrap();
    let key = app.key();
    env.store.apply(app, "test").await.unwrap();
    let first = env.head();
    env.until_status(&key, 20, "the first fetch", |s| {
        s["sync"]["revision"] == json!(first)
    })
    .await;
    std::fs::write(
        env.repo.join("guestbook/extra.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n",
    )
    .unwrap();
    git(&env.repo, &["add", "."]);
    git(&env.repo, &["commit", "-qm", "extra"]);
    let second = env.head();
    let mut repo = env.store.get(&repo_key).await.unwrap().unwrap();
    repo.body.insert(
        "status".into(),
        json!({"lastWebhook": {"provider": "github", "event": "push",
                               "ref": "refs/heads/main", "revision": second}}),
    );
    env.store.update_status(repo, "test").await.unwrap();
    env.until_status(&key, 20, "the commit the webhook announced", |s| {
        s["sync"]["revision"] == json!(second)
    })
    .await;
    env.stop().await;
}

/// Argo's example trees as they are: kustomize-guestbook (a kustomization with a name prefix)
/// becomes Synced and Healthy with its pod running; pre-post-sync runs its PreSync Job (10 s
/// of `sleep`), syncs, runs its PostSync Job and ends Succeeded, the hook deleted by its
/// HookSucceeded policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kustomize_guestbook_and_pre_post_sync_sync_as_they_are() {
    let corpus = corpus_or_skip!();
    let env = Env::start(&corpus.join("example-apps/kustomize-guestbook")).await;
    let key = env
        .application("kguestbook", json!({"automated": {}}))
        .await;
    env.until_status(&key, 60, "Synced and Healthy", |s| {
        s["sync"]["status"] == "Synced" && s["health"]["status"] == "Healthy"
    })
    .await;
    let pods = env
        .store
        .list(&ListQuery::kind("", "Pod"))
        .await
        .unwrap()
        .items;
    assert!(
        pods.iter()
            .any(|p| p.metadata.name.starts_with("kustomize-guestbook-ui-")
                && p.body["status"]["phase"] == "Running"),
        "{:#?}",
        pods.iter().map(|p| &p.metadata.name).collect::<Vec<_>>()
    );
    env.stop().await;

    // pre-post-sync's kustomization builds on its sibling `../kustomize-guestbook`, as in
    // argocd-example-apps: the repository holds both.
    let env = Env::start(&corpus.join("example-apps/pre-post-sync")).await;
    let sibling = env.repo.join("kustomize-guestbook");
    std::fs::create_dir_all(&sibling).unwrap();
    for e in std::fs::read_dir(corpus.join("example-apps/kustomize-guestbook")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, sibling.join(p.file_name().unwrap())).unwrap();
    }
    git(&env.repo, &["add", "."]);
    git(&env.repo, &["commit", "-qm", "the sibling tree"]);
    let key = env.application("prepost", json!({"automated": {}})).await;
    let s = env
        .until_status(&key, 90, "the sync to end", |s| {
            matches!(
                s["operationState"]["phase"].as_str(),
                Some("Succeeded" | "Failed" | "Error")
            )
        })
        .await;
    let op = &s["operationState"];
    assert_eq!(op["phase"], "Succeeded", "{op:#}");
    let hooks: Vec<(String, String)> = op["syncResult"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["hookType"].is_string())
        .map(|r| {
            (
                r["hookType"].as_str().unwrap().to_string(),
                r["hookPhase"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        hooks,
        [
            ("PreSync".to_string(), "Succeeded".to_string()),
            ("PostSync".to_string(), "Succeeded".to_string())
        ],
        "{op:#}"
    );
    env.stop().await;
}

/// Writes `files` (name, YAML) into a fresh directory, for `Env::start`.
fn tree(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn config_map(name: &str, wave: i64, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    argocd.argoproj.io/sync-wave: \"{wave}\"\ndata:\n  v: \"{value}\"\n"
    )
}

/// gitops-engine: a wave waits until its resources are healthy; a Degraded one fails the
/// operation ("one or more synchronization tasks completed unsuccessfully"), its result
/// `hookPhase: Failed` with the health's message, and the later waves are never applied.
/// Wave 0's Deployment crash-loops (`exit 1`) and exceeds its 2 s progress deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_wave_stops_the_later_waves() {
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: broken\n  annotations:\n    argocd.argoproj.io/sync-wave: \"0\"\nspec:\n  replicas: 1\n  progressDeadlineSeconds: 2\n  selector:\n    matchLabels: {app: broken}\n  template:\n    metadata:\n      labels: {app: broken}\n    spec:\n      containers:\n      - name: main\n        image: alpine:latest\n        command: [\"sh\", \"-c\", \"exit 1\"]\n";
    let files = tree(&[
        ("deploy.yaml", deployment.to_string()),
        ("after.yaml", config_map("after", 1, "x")),
    ]);
    let env = Env::start(files.path()).await;
    let key = env.application("waves", json!({"automated": {}})).await;
    let after = Key::new("", "ConfigMap", "default", "after");
    // While the Deployment progresses the operation waits on it, in Argo's words.
    let s = env
        .until_status(&key, 30, "waiting on wave 0", |s| {
            s["operationState"]["phase"] == "Running"
                && s["operationState"]["message"]
                    == "waiting for healthy state of apps/Deployment/broken"
        })
        .await;
    assert!(env.store.get(&after).await.unwrap().is_none(), "{s:#}");
    let s = env
        .until_status(&key, 60, "the sync to end", |s| {
            matches!(
                s["operationState"]["phase"].as_str(),
                Some("Succeeded" | "Failed" | "Error")
            )
        })
        .await;
    let op = &s["operationState"];
    assert_eq!(op["phase"], "Failed", "{s:#}");
    let message = op["message"].as_str().unwrap();
    assert!(
        message.starts_with("one or more synchronization tasks completed unsuccessfully"),
        "{message}"
    );
    assert!(message.contains("Deployment default/broken"), "{message}");
    let results = op["syncResult"]["resources"].as_array().unwrap();
    assert_eq!(results.len(), 1, "only wave 0 ran: {s:#}");
    assert_eq!(results[0]["kind"], "Deployment");
    assert_eq!(results[0]["status"], "Synced");
    assert_eq!(results[0]["hookPhase"], "Failed");
    assert_eq!(
        results[0]["message"],
        "Deployment \"broken\" exceeded its progress deadline"
    );
    assert_eq!(s["health"]["status"], "Degraded", "{s:#}");
    // The automated policy does not retry the same revision: wave 1 stays unapplied across
    // later reconciles (a file:// repository is read every 2 s).
    let at = s["reconciledAt"].clone();
    env.until_status(&key, 20, "a later reconcile", |s| s["reconciledAt"] != at)
        .await;
    assert!(env.store.get(&after).await.unwrap().is_none());
    assert_eq!(env.status(&key).await["operationState"]["phase"], "Failed");
    env.stop().await;
}

/// `status.history` keeps the last `revisionHistoryLimit` syncs (3 here, of 5 commits); ids
/// keep increasing (Argo: the last id + 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_capped_at_revision_history_limit() {
    let files = tree(&[("cm.yaml", config_map("settings", 0, "0"))]);
    let env = Env::start(files.path()).await;
    let app: Object = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "capped", "namespace": "argocd"},
        "spec": {
            "source": {"repoURL": format!("file://{}", env.repo.display()), "path": "guestbook"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
            "syncPolicy": {"automated": {}},
            "revisionHistoryLimit": 3,
        },
    }))
    .unwrap();
    let key = app.key();
    env.store.apply(app, "test").await.unwrap();
    let mut shas = Vec::new();
    for v in 0..5 {
        if v > 0 {
            std::fs::write(
                env.repo.join("guestbook/cm.yaml"),
                config_map("settings", 0, &v.to_string()),
            )
            .unwrap();
            git(&env.repo, &["commit", "-qam", &format!("v{v}")]);
        }
        let head = env.head();
        env.until_status(&key, 30, "the commit synced", |s| {
            s["history"]
                .as_array()
                .and_then(|h| h.last())
                .is_some_and(|h| h["revision"] == head.as_str())
        })
        .await;
        shas.push(head);
    }
    let s = env.status(&key).await;
    let history = s["history"].as_array().unwrap();
    let got: Vec<(i64, &str)> = history
        .iter()
        .map(|h| (h["id"].as_i64().unwrap(), h["revision"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (2, shas[2].as_str()),
            (3, shas[3].as_str()),
            (4, shas[4].as_str())
        ],
        "{s:#}"
    );
    env.stop().await;
}

/// Bad input through the controller: no destination, a path escaping the repository, a
/// path that does not exist, a repository the AppProject does not allow — each a condition
/// in Argo's words (InvalidSpecError or ComparisonError), sync `Unknown`, nothing applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_applications_get_conditions_and_apply_nothing() {
    let files = tree(&[("cm.yaml", config_map("settings", 0, "0"))]);
    let env = Env::start(files.path()).await;
    let project: Object = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
        "metadata": {"name": "locked", "namespace": "argocd"},
        "spec": {"sourceRepos": ["https://github.com/example/*"],
                 "destinations": [{"server": "*", "namespace": "*"}]},
    }))
    .unwrap();
    env.store.apply(project, "test").await.unwrap();
    let url = format!("file://{}", env.repo.display());
    let destination = json!({"server": "https://kubernetes.default.svc", "namespace": "default"});
    let cases = [
        (
            "no-destination",
            json!({"source": {"repoURL": url, "path": "guestbook"}}),
            "InvalidSpecError",
            "Destination server missing from app spec".to_string(),
        ),
        (
            "escapes",
            json!({"source": {"repoURL": url, "path": "../x"}, "destination": destination}),
            "ComparisonError",
            "Failed to load target state: failed to generate manifest for source 1 of 1: ../x: app path outside root".to_string(),
        ),
        (
            "missing-path",
            json!({"source": {"repoURL": url, "path": "nope"}, "destination": destination}),
            "ComparisonError",
            "Failed to load target state: failed to generate manifest for source 1 of 1: nope: app path does not exist".to_string(),
        ),
        (
            "denied-repo",
            json!({"project": "locked", "source": {"repoURL": url, "path": "guestbook"},
                   "destination": destination}),
            "InvalidSpecError",
            format!("application repo {url} is not permitted in project 'locked'"),
        ),
    ];
    for (name, mut spec, kind, message) in cases {
        spec["syncPolicy"] = json!({"automated": {"prune": true, "selfHeal": true}});
        let app: Object = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": "argocd"}, "spec": spec,
        }))
        .unwrap();
        let key = app.key();
        env.store.apply(app, "test").await.unwrap();
        let s = env
            .until_status(&key, 20, "a condition", |s| {
                s["conditions"].as_array().is_some_and(|c| !c.is_empty())
            })
            .await;
        let conditions: Vec<(&str, &str)> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["type"].as_str().unwrap(), c["message"].as_str().unwrap()))
            .collect();
        assert_eq!(conditions, [(kind, message.as_str())], "{name}: {s:#}");
        assert_eq!(s["sync"]["status"], "Unknown", "{name}: {s:#}");
        assert!(s["operationState"].is_null(), "{name}: {s:#}");
    }
    // A few reconciles later nothing has been applied by any of them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let configmaps = env
        .store
        .list(&ListQuery::kind("", "ConfigMap"))
        .await
        .unwrap()
        .items;
    assert!(
        configmaps.iter().all(|c| !c
            .metadata
            .annotations
            .contains_key("argocd.argoproj.io/tracking-id")),
        "{configmaps:#?}"
    );
    env.stop().await;
}

/// Argo's helm-hooks example as it is (plain YAML with Helm's hook annotations): the
/// pre-install Jobs run as PreSync hooks in weight order (the first named by generateName as
/// gitops-engine names it), then the ReplicaSet, then the Service (hook-weight 2: wave 2), then
/// the post-install Job as PostSync; Synced and Healthy with the frontend's pod running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_hooks_sync_in_helm_order_with_the_pod_running() {
    let corpus = corpus_or_skip!();
    let env = Env::start(&corpus.join("example-apps/helm-hooks")).await;
    let key = env
        .application("helm-hooks", json!({"automated": {}}))
        .await;
    let s = env
        .until_status(&key, 90, "the sync to end", |s| {
            matches!(
                s["operationState"]["phase"].as_str(),
                Some("Succeeded" | "Failed" | "Error")
            )
        })
        .await;
    let op = &s["operationState"];
    assert_eq!(op["phase"], "Succeeded", "{s:#}");
    let head = env.head();
    let unix = time_unix(op["startedAt"].as_str().unwrap());
    let order: Vec<String> = op["syncResult"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["syncPhase"].as_str().unwrap(),
                r["kind"].as_str().unwrap(),
                r["name"].as_str().unwrap(),
                r["hookPhase"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            format!(
                "PreSync Job upgrade-sql-schema{}-presync-{unix} Succeeded",
                &head[..7]
            ),
            "PreSync Job maint-page-up Succeeded".to_string(),
            "Sync ReplicaSet frontend -".to_string(),
            "Sync Service frontend -".to_string(),
            "PostSync Job maint-page-down Succeeded".to_string(),
        ],
        "{s:#}"
    );
    env.until_status(&key, 30, "Synced and Healthy", |s| {
        s["sync"]["status"] == "Synced" && s["health"]["status"] == "Healthy"
    })
    .await;
    let pods = env
        .store
        .list(&ListQuery::kind("", "Pod"))
        .await
        .unwrap()
        .items;
    assert!(
        pods.iter().any(|p| p.metadata.name.starts_with("frontend-")
            && p.body
                .get("status")
                .is_some_and(|s| s["phase"] == "Running")),
        "{:#?}",
        pods.iter()
            .map(|p| (&p.metadata.name, p.body.get("status")))
            .collect::<Vec<_>>()
    );
    env.store
        .delete(
            &Key::new("apps", "ReplicaSet", "default", "frontend"),
            "test",
        )
        .await
        .unwrap();
    env.stop().await;
}

/// Argo's sock-shop as it is (a kustomization over `base/`), its 14 images stood in for by
/// local images serving HTTP on `$PORT`: Synced, with every Deployment's pod running. Healthy
/// it cannot be here, and the test says why in gitops-engine's terms: the Ingress has no
/// controller writing `status.loadBalancer.ingress` (Progressing), and the Deployments'
/// readiness probes start only after `initialDelaySeconds` 180 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sock_shop_syncs_with_every_pod_running() {
    let corpus = corpus_or_skip!();
    let env = Env::start(&corpus.join("example-apps/sock-shop")).await;
    for image in [
        "kbudde/rabbitmq-exporter",
        "mongo",
        "rabbitmq:3.6.8-management",
        "redis:alpine",
        "weaveworksdemos/carts:0.4.8",
        "weaveworksdemos/catalogue-db:0.3.0",
        "weaveworksdemos/catalogue:0.3.5",
        "weaveworksdemos/front-end:0.3.12",
        "weaveworksdemos/orders:0.4.7",
        "weaveworksdemos/payment:0.4.3",
        "weaveworksdemos/queue-master:0.3.1",
        "weaveworksdemos/shipping:0.4.8",
        "weaveworksdemos/user-db:0.3.0",
        "weaveworksdemos/user:0.4.7",
    ] {
        // Answers every probe path (`/`, `/health`) with 200 on the port it is given.
        env.import(
            image,
            &[("health", "ok\n"), ("index.html", "ok\n")],
            "if [ -n \"$PORT\" ]; then exec /usr/bin/python3 -m http.server \"$PORT\" --bind 127.0.0.1; else exec sleep 600; fi",
        );
    }
    let key = env.application("sock-shop", json!({"automated": {}})).await;
    let s = env
        .until_status(&key, 90, "Synced with a Succeeded operation", |s| {
            s["sync"]["status"] == "Synced" && s["operationState"]["phase"] == "Succeeded"
        })
        .await;
    let synced = resources(&s);
    assert_eq!(synced.len(), 29, "{synced:#?}");
    let deployments: Vec<&String> = synced
        .iter()
        .filter(|r| r.starts_with("Deployment "))
        .collect();
    assert_eq!(deployments.len(), 14, "{synced:#?}");
    // Every Deployment's pod runs as a process.
    let store = env.store.clone();
    shipway_testkit::eventually(Duration::from_secs(60), "14 pods running", || {
        let store = store.clone();
        async move {
            let pods = store.list(&ListQuery::kind("", "Pod")).await.unwrap().items;
            pods.iter()
                .filter(|p| {
                    p.body
                        .get("status")
                        .is_some_and(|s| s["phase"] == "Running")
                })
                .count()
                == 14
        }
    })
    .await;
    let s = env.status(&key).await;
    assert_eq!(s["health"]["status"], "Progressing", "{s:#}");
    assert!(
        resources(&s).contains(&"Ingress front-end-ingress Synced Progressing".to_string()),
        "{:#?}",
        resources(&s)
    );
    env.stop().await;
}
