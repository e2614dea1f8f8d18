//! CI inside the platform against real git repositories and real processes: pushes to a hosted
//! bare repository (made with the `git` CLI) trigger the workflows whose `on:` matches, the
//! scheduler runs them, and their status and logs land in the store.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use shipway_ci::scheduler::{INTERRUPTED, Scheduler};
use shipway_ci::trigger::{TRIGGERED_ANNOTATION, catch_up};
use shipway_controller::{Cache, Reflector};
use shipway_git::hosted::Hosted;
use shipway_model::types::workflow_run::{WorkflowRunSpec, WorkflowRunStatus};
use shipway_model::{Key, Object};
use shipway_store::seal::{Sealer, SecretKey};
use shipway_store::{ListQuery, Scope, SettingKind, Store, StoreOptions};
use shipway_testkit::eventually;
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(60);

struct Ci {
    _dir: tempfile::TempDir,
    data: PathBuf,
    work: PathBuf,
    store: Store,
    cache: Cache,
    hosted: Arc<Hosted>,
    shutdown: CancellationToken,
}

impl Drop for Ci {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

impl Ci {
    /// A store, the shared cache, a hosted repository `app` with a clone in `work`; the
    /// triggers and the scheduler run when `max_parallel_jobs` is given.
    async fn start(max_parallel_jobs: Option<usize>) -> Ci {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // As `shipway up` opens it: with a key, so pipeline secrets can be kept.
        let options = StoreOptions {
            sealer: Some(Sealer::new(&SecretKey::generate())),
            ..StoreOptions::default()
        };
        let store = Store::open_sqlite_with(&data.join("shipway.db"), options)
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let (cache, _feed) = Reflector::spawn(store.clone(), shutdown.clone());
        let hosted = Hosted::new(data.join("git"), "http://127.0.0.1:9/git", store.clone());
        let repo: Object = serde_json::from_value(json!({
            "apiVersion": "shipway.dev/v1alpha1", "kind": "Repository",
            "metadata": {"name": "app", "namespace": "default"},
            "spec": {"hosted": true},
        }))
        .unwrap();
        let repo = store.create(repo, "test").await.unwrap();
        hosted.reconcile(&repo).await.unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q", "-b", "main"]);
        let ci = Ci {
            _dir: dir,
            data,
            work,
            store,
            cache,
            hosted,
            shutdown,
        };
        if let Some(n) = max_parallel_jobs {
            ci.run_ci(n);
        }
        ci
    }

    fn run_ci(&self, max_parallel_jobs: usize) {
        tokio::spawn(shipway_ci::trigger::run(
            self.store.clone(),
            self.hosted.clone(),
            self.shutdown.clone(),
        ));
        let scheduler = Scheduler::new(
            self.store.clone(),
            self.cache.clone(),
            self.hosted.clone(),
            &self.data,
            max_parallel_jobs,
            Vec::new(),
            None,
        );
        tokio::spawn(scheduler.run(self.shutdown.clone()));
    }

    /// Commits everything in the clone and pushes `refspec` to the hosted repository as `by`,
    /// then tells `Hosted` as the git route does after a receive-pack.
    async fn push(&self, refspec: &str, by: &str) {
        let bare = self.hosted.dir("app").unwrap();
        git(&self.work, &["push", "-q", bare.to_str().unwrap(), refspec]);
        self.hosted.pushed("app", by).await.unwrap();
    }

    fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.work)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    async fn runs(&self) -> Vec<Object> {
        let mut items = self
            .store
            .list(&ListQuery::kind("shipway.dev", "WorkflowRun"))
            .await
            .unwrap()
            .items;
        items.sort_by_key(|o| o.resource_version());
        items
    }

    async fn run(&self, name: &str) -> Option<Object> {
        self.store
            .get(&Key::new("shipway.dev", "WorkflowRun", "default", name))
            .await
            .unwrap()
    }

    async fn completed(&self, name: &str) -> WorkflowRunStatus {
        eventually(PATIENCE, &format!("run {name} completed"), || async {
            self.run(name)
                .await
                .and_then(|o| o.status_as::<WorkflowRunStatus>().ok())
                .is_some_and(|s| s.is_completed())
        })
        .await;
        self.run(name).await.unwrap().status_as().unwrap()
    }

    async fn log(&self, name: &str) -> Vec<String> {
        let key = Key::new("shipway.dev", "WorkflowRun", "default", name);
        self.store
            .logs(&key, 0, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|l| format!("[{}] {}", l.job, l.text))
            .collect()
    }
}

fn names(runs: &[Object]) -> Vec<String> {
    runs.iter().map(|o| o.metadata.name.clone()).collect()
}

const CI: &str = "name: CI
on:
  push:
    branches: [main]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo \"built $GITHUB_REF at $GITHUB_SHA by $GITHUB_ACTOR, run $GITHUB_RUN_NUMBER\"; cat VERSION
      - id: out
        run: echo \"version=$(cat VERSION)\" >> \"$GITHUB_OUTPUT\"
    outputs:
      version: ${{ steps.out.outputs.version }}
";

const CODE_ONLY: &str = "on:
  push:
    paths-ignore: ['docs/**']
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: echo code changed
";

const RELEASE: &str = "on:
  push:
    tags: ['v*']
jobs:
  publish:
    runs-on: ubuntu-latest
    steps:
      - run: echo \"publishing ${{ github.ref_name }}\"
";

const OTHER_BRANCH: &str = "on:
  push:
    branches: [release/**]
jobs:
  x:
    runs-on: ubuntu-latest
    steps:
      - run: echo release branch
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_runs_the_workflows_whose_filters_match_and_not_the_others() {
    let ci = Ci::start(Some(4)).await;
    write(&ci.work, ".github/workflows/ci.yml", CI);
    write(&ci.work, ".github/workflows/code.yml", CODE_ONLY);
    write(&ci.work, ".github/workflows/release.yml", RELEASE);
    write(&ci.work, ".github/workflows/other.yml", OTHER_BRANCH);
    write(&ci.work, "VERSION", "1.0\n");
    let first = ci.commit("first");
    ci.push("main", "alice").await;

    // main: CI (branch filter) and code (paths-ignore; a new branch has nothing to compare
    // with, so path filters pass); not the tag nor the release-branch workflow.
    eventually(PATIENCE, "two runs", || async {
        ci.runs().await.len() == 2
    })
    .await;
    let runs = ci.runs().await;
    let mut made = names(&runs);
    made.sort();
    assert_eq!(made, ["app-ci-1", "app-code-1"]);
    let status = ci.completed("app-ci-1").await;
    assert_eq!(status.conclusion.as_deref(), Some("success"), "{status:?}");
    assert_eq!(status.name.as_deref(), Some("CI"));
    let build = &status.jobs[0];
    assert_eq!(build.name, "build");
    assert_eq!(build.conclusion.as_deref(), Some("success"));
    assert_eq!(
        build.outputs.get("version").map(String::as_str),
        Some("1.0")
    );
    let steps: Vec<(&str, Option<&str>)> = build
        .steps
        .iter()
        .map(|s| (s.status.as_str(), s.conclusion.as_deref()))
        .collect();
    assert_eq!(steps, [("completed", Some("success")); 3]);
    assert!(build.started_at.is_some() && build.completed_at.is_some());
    let spec: WorkflowRunSpec = runs
        .iter()
        .find(|o| o.metadata.name == "app-ci-1")
        .unwrap()
        .spec_as()
        .unwrap();
    assert_eq!(
        (
            spec.event.as_str(),
            spec.git_ref.as_str(),
            spec.head_sha.as_str(),
            spec.actor.as_str()
        ),
        ("push", "refs/heads/main", first.as_str(), "alice")
    );
    let log = ci.log("app-ci-1").await;
    let expect = format!("[build] built refs/heads/main at {first} by alice, run 1");
    assert!(log.contains(&expect), "{log:#?}");
    assert!(log.contains(&"[build] 1.0".to_string()), "{log:#?}");
    assert!(log.contains(&"[build] job success".to_string()), "{log:#?}");
    ci.completed("app-code-1").await;

    // A change under docs/ only: CI runs again (number 2), code.yml does not.
    write(&ci.work, "docs/guide.md", "# guide\n");
    ci.commit("docs");
    ci.push("main", "bob").await;
    eventually(PATIENCE, "app-ci-2", || async {
        ci.run("app-ci-2").await.is_some()
    })
    .await;
    ci.completed("app-ci-2").await;
    // A tag: only the tag workflow.
    git(&ci.work, &["tag", "v1.2.0"]);
    ci.push("v1.2.0", "carol").await;
    eventually(PATIENCE, "app-release-1", || async {
        ci.run("app-release-1").await.is_some()
    })
    .await;
    ci.completed("app-release-1").await;
    assert!(
        ci.log("app-release-1")
            .await
            .contains(&"[publish] publishing v1.2.0".to_string())
    );
    // A release branch: only its workflow (ci.yml wants main).
    git(&ci.work, &["checkout", "-q", "-b", "release/1.2"]);
    ci.push("release/1.2", "dave").await;
    eventually(PATIENCE, "app-other-1", || async {
        ci.run("app-other-1").await.is_some()
    })
    .await;
    ci.completed("app-other-1").await;
    // code.yml has no branch or tag filter: it runs for the tag (path filters are not
    // evaluated for tags) and for the new branch (nothing to compare with), not for the docs
    // change. Nothing else ran.
    let mut all: Vec<(String, String)> = ci
        .runs()
        .await
        .iter()
        .map(|o| {
            let spec: WorkflowRunSpec = o.spec_as().unwrap();
            (o.metadata.name.clone(), spec.git_ref)
        })
        .collect();
    all.sort();
    let expect = [
        ("app-ci-1", "refs/heads/main"),
        ("app-ci-2", "refs/heads/main"),
        ("app-code-1", "refs/heads/main"),
        ("app-code-2", "refs/tags/v1.2.0"),
        ("app-code-3", "refs/heads/release/1.2"),
        ("app-other-1", "refs/heads/release/1.2"),
        ("app-release-1", "refs/tags/v1.2.0"),
    ]
    .map(|(n, r)| (n.to_string(), r.to_string()));
    assert_eq!(all, expect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_file_that_does_not_load_makes_a_failed_run_naming_the_problem() {
    let ci = Ci::start(Some(2)).await;
    write(
        &ci.work,
        ".github/workflows/broken.yml",
        "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n        uses: actions/checkout@v4\n",
    );
    ci.commit("broken");
    ci.push("main", "alice").await;
    let status = ci.completed("app-broken-1").await;
    assert_eq!(status.conclusion.as_deref(), Some("failure"));
    let message = status.message.unwrap();
    assert!(
        message.starts_with("Invalid workflow file: .github/workflows/broken.yml:"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_in_progress_by_an_earlier_process_is_recorded_failed_with_the_reason() {
    let ci = Ci::start(None).await;
    // What a process killed mid-run leaves: a run that says it is running, a job and a step
    // in progress, and the log lines written so far.
    let run: Object = serde_json::from_value(json!({
        "apiVersion": "shipway.dev/v1alpha1", "kind": "WorkflowRun",
        "metadata": {"name": "app-ci-7", "namespace": "default"},
        "spec": {"repository": "app", "workflow": ".github/workflows/ci.yml", "event": "push",
                 "ref": "refs/heads/main", "headSha": "0".repeat(40), "actor": "alice",
                 "runNumber": 7},
        "status": {"status": "in_progress", "startedAt": "2026-12-03T10:00:00Z",
                   "jobs": [{"name": "build", "status": "in_progress",
                             "steps": [{"number": 1, "name": "Run sleep 600", "status": "in_progress"}]}]},
    }))
    .unwrap();
    let run = ci.store.create(run, "test").await.unwrap();
    ci.store
        .append_logs(
            &run.key(),
            vec![shipway_store::NewLogLine {
                job: "build".into(),
                step: Some(1),
                stream: "stdout".into(),
                text: "before the kill".into(),
            }],
        )
        .await
        .unwrap();
    ci.run_ci(2);
    let status = ci.completed("app-ci-7").await;
    assert_eq!(status.conclusion.as_deref(), Some("failure"));
    assert_eq!(status.message.as_deref(), Some(INTERRUPTED));
    let job = &status.jobs[0];
    assert_eq!(
        (job.status.as_str(), job.conclusion.as_deref()),
        ("completed", Some("failure"))
    );
    assert_eq!(job.steps[0].conclusion.as_deref(), Some("failure"));
    let log = ci.log("app-ci-7").await;
    assert_eq!(
        log[0], "[build] before the kill",
        "the lines written are kept"
    );
    assert_eq!(log.last().unwrap(), &format!("[] {INTERRUPTED}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_run_and_always_steps_still_run() {
    let ci = Ci::start(Some(2)).await;
    write(
        &ci.work,
        ".github/workflows/slow.yml",
        "on: push\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo started; sleep 600\n      - if: always()\n        run: echo cleanup\n",
    );
    ci.commit("slow");
    ci.push("main", "alice").await;
    eventually(PATIENCE, "the slow step printed", || async {
        ci.log("app-slow-1")
            .await
            .contains(&"[slow] started".to_string())
    })
    .await;
    let mut run = ci.run("app-slow-1").await.unwrap();
    run.body["spec"]["cancel"] = json!(true);
    run.metadata.resource_version = None;
    ci.store.update(run, "test").await.unwrap();
    let status = ci.completed("app-slow-1").await;
    assert_eq!(
        status.conclusion.as_deref(),
        Some("cancelled"),
        "{status:?}"
    );
    let log = ci.log("app-slow-1").await;
    assert!(log.contains(&"[slow] cleanup".to_string()), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_wide_job_limit_holds_across_runs() {
    let ci = Ci::start(Some(1)).await;
    // Three workflows on one push; each job holds a lock directory while it runs and fails if
    // another job holds it: with one slot for the server, none may.
    let lock = ci.data.join("held-by-a-job");
    let step = format!(
        "mkdir {0} || {{ echo another job is running; exit 1; }}; sleep 0.3; rmdir {0}",
        lock.display()
    );
    for name in ["a", "b", "c"] {
        write(
            &ci.work,
            &format!(".github/workflows/{name}.yml"),
            &format!(
                "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: {step}\n"
            ),
        );
    }
    ci.commit("three");
    ci.push("main", "alice").await;
    for name in ["app-a-1", "app-b-1", "app-c-1"] {
        eventually(PATIENCE, name, || async { ci.run(name).await.is_some() }).await;
        let status = ci.completed(name).await;
        assert_eq!(
            status.conclusion.as_deref(),
            Some("success"),
            "{name}: {:#?}",
            ci.log(name).await
        );
    }
}

/// A push of `refs/pull/N/head` is pull request N into the default branch, as GitHub's: the
/// `pull_request` workflows of the test merge run on it (`refs/pull/N/merge`, a commit with
/// base and head as parents), `opened` then `synchronize`, with the head and base refs and the
/// number in the context; `pull_request_target` runs on the base; push workflows do not run;
/// a path filter sees the pull request's changes; a head that conflicts runs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_ref_runs_the_pull_request_workflows_on_the_test_merge() {
    let ci = Ci::start(Some(4)).await;
    let echo = "echo \"${{ github.event_name }} ${{ github.event.action }} #${{ github.event.number }} ${{ github.ref }} ${{ github.head_ref }}->${{ github.base_ref }} at $GITHUB_SHA\"";
    write(
        &ci.work,
        ".github/workflows/pr.yml",
        &format!(
            "on:\n  pull_request:\n    branches: [main]\n    paths: ['src/**']\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: |\n          {echo}\n          cat src/app.txt\n"
        ),
    );
    write(
        &ci.work,
        ".github/workflows/target.yml",
        &format!(
            "on: pull_request_target\njobs:\n  label:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          {echo}\n"
        ),
    );
    write(
        &ci.work,
        ".github/workflows/push.yml",
        "on: push\njobs:\n  p:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo push\n",
    );
    write(&ci.work, "src/app.txt", "v1\n");
    write(&ci.work, "README", "main\n");
    let base = ci.commit("base");
    ci.push("main", "alice").await;
    eventually(PATIENCE, "the push run", || async {
        ci.run("app-push-1").await.is_some()
    })
    .await;
    ci.completed("app-push-1").await;

    // A feature commit, and main moving on meanwhile: the test merge holds both.
    git(&ci.work, &["checkout", "-q", "-b", "feature"]);
    write(&ci.work, "src/app.txt", "v2\n");
    let head = ci.commit("feature");
    git(&ci.work, &["checkout", "-q", "main"]);
    write(&ci.work, "README", "main moved\n");
    let main2 = ci.commit("main moves");
    ci.push("main", "alice").await;
    ci.completed("app-push-2").await;
    ci.push("feature:refs/heads/feature", "bob").await;
    ci.completed("app-push-3").await;
    ci.push("feature:refs/pull/7/head", "bob").await;
    eventually(PATIENCE, "the pull request runs", || async {
        ci.run("app-pr-1").await.is_some() && ci.run("app-target-1").await.is_some()
    })
    .await;
    let pr = ci.completed("app-pr-1").await;
    assert_eq!(
        pr.conclusion.as_deref(),
        Some("success"),
        "{pr:#?} {:#?}",
        ci.log("app-pr-1").await
    );
    let bare = ci.hosted.dir("app").unwrap();
    let rev = |r: &str| {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(&bare)
            .args(["rev-parse", r])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let merge = rev("refs/pull/7/merge");
    assert_eq!(rev("refs/pull/7/merge^1"), main2);
    assert_eq!(rev("refs/pull/7/merge^2"), head);
    let log = ci.log("app-pr-1").await;
    assert!(
        log.contains(&format!(
            "[test] pull_request opened #7 refs/pull/7/merge feature->main at {merge}"
        )),
        "{log:#?}"
    );
    // The merge has the feature's change and main's.
    assert!(log.contains(&"[test] v2".to_string()), "{log:#?}");
    let spec: WorkflowRunSpec = ci.run("app-pr-1").await.unwrap().spec_as().unwrap();
    assert_eq!(
        (spec.event.as_str(), spec.actor.as_str()),
        ("pull_request", "bob")
    );
    ci.completed("app-target-1").await;
    let log = ci.log("app-target-1").await;
    assert!(
        log.contains(&format!(
            "[label] pull_request_target opened #7 refs/heads/main feature->main at {main2}"
        )),
        "{log:#?}"
    );
    assert!(
        ci.run("app-push-4").await.is_none(),
        "a pull request ref ran a push workflow"
    );

    // Another commit on the pull request: synchronize.
    git(&ci.work, &["checkout", "-q", "feature"]);
    write(&ci.work, "src/app.txt", "v3\n");
    ci.commit("feature 2");
    ci.push("feature:refs/pull/7/head", "bob").await;
    ci.completed("app-pr-2").await;
    let log = ci.log("app-pr-2").await;
    assert!(
        log.iter()
            .any(|l| l.starts_with("[test] pull_request synchronize #7 ")),
        "{log:#?}"
    );
    assert!(log.contains(&"[test] v3".to_string()), "{log:#?}");
    ci.completed("app-target-2").await;

    // A pull request changing only the README: the paths filter leaves pr.yml out.
    git(&ci.work, &["checkout", "-q", "-b", "docs", &base]);
    write(&ci.work, "NOTES", "notes\n");
    ci.commit("notes");
    ci.push("docs:refs/pull/8/head", "bob").await;
    ci.completed("app-target-3").await;
    assert!(
        ci.run("app-pr-3").await.is_none(),
        "pr.yml ran for a change outside src/"
    );

    // A head that conflicts with main: no runs at all.
    git(&ci.work, &["checkout", "-q", "-b", "clash", &base]);
    write(&ci.work, "README", "clash\n");
    ci.commit("clash");
    ci.push("clash:refs/pull/9/head", "bob").await;
    // Evidence that the trigger has handled it: a later push's run exists.
    git(&ci.work, &["checkout", "-q", "main"]);
    ci.push("main:refs/heads/after", "alice").await;
    ci.completed("app-push-4").await;
    assert!(ci.run("app-target-4").await.is_none());
    assert!(ci.run("app-pr-3").await.is_none());
    assert_eq!(rev("refs/pull/9/merge"), "refs/pull/9/merge");
}

/// Deleting a run deletes its records: its log lines and its run directory go, then the run
/// (its finalizer); a run deleted while it runs is cancelled first. Other runs keep theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_run_takes_its_log_and_run_directory_with_it() {
    let ci = Ci::start(Some(2)).await;
    write(
        &ci.work,
        ".github/workflows/a.yml",
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hello\n",
    );
    write(
        &ci.work,
        ".github/workflows/b.yml",
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo other\n",
    );
    write(
        &ci.work,
        ".github/workflows/slow.yml",
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo started; sleep 60\n",
    );
    ci.commit("three");
    ci.push("main", "alice").await;
    ci.completed("app-a-1").await;
    ci.completed("app-b-1").await;
    eventually(PATIENCE, "the slow run started", || async {
        ci.log("app-slow-1")
            .await
            .contains(&"[j] started".to_string())
    })
    .await;
    let dir = |name: &str| ci.data.join("runs/default").join(name);
    assert!(dir("app-a-1").is_dir());
    assert!(!ci.log("app-a-1").await.is_empty());
    let run = ci.run("app-a-1").await.unwrap();
    assert_eq!(run.metadata.finalizers, ["shipway.dev/run-records"]);

    for name in ["app-a-1", "app-slow-1"] {
        let key = Key::new("shipway.dev", "WorkflowRun", "default", name);
        ci.store.delete(&key, "alice").await.unwrap();
    }
    for name in ["app-a-1", "app-slow-1"] {
        eventually(PATIENCE, &format!("{name} gone"), || async {
            ci.run(name).await.is_none()
        })
        .await;
        assert!(ci.log(name).await.is_empty(), "{name}: log lines left");
        assert!(!dir(name).exists(), "{name}: run directory left");
    }
    assert!(ci.log("app-b-1").await.contains(&"[j] other".to_string()));
    assert!(dir("app-b-1").is_dir());
}

/// A push made while the triggers were not running (a stop, a crash between the push and its
/// runs) is handled when they start again: the repository is compared with what they last
/// handled, and the push runs its workflows, as its pusher. Catching up again makes nothing
/// twice, even when the note of a handled push was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_the_triggers_did_not_hear_runs_when_they_start_again() {
    let ci = Ci::start(None).await;
    let repo_key = Key::new("shipway.dev", "Repository", "default", "app");
    let noted = || async {
        ci.store
            .get(&repo_key)
            .await
            .unwrap()
            .and_then(|r| r.metadata.annotations.get(TRIGGERED_ANNOTATION).cloned())
    };
    // The triggers ran once (noting the repository as it was), then stopped.
    let first = CancellationToken::new();
    let triggers = tokio::spawn(shipway_ci::trigger::run(
        ci.store.clone(),
        ci.hosted.clone(),
        first.clone(),
    ));
    eventually(PATIENCE, "the repository noted", || async {
        noted().await.is_some()
    })
    .await;
    assert_eq!(noted().await.as_deref(), Some("{}"));
    first.cancel();
    triggers.await.unwrap();

    write(
        &ci.work,
        ".github/workflows/ci.yml",
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"built by $GITHUB_ACTOR\"\n",
    );
    let sha = ci.commit("while nobody listened");
    ci.push("main", "alice").await;
    assert!(ci.runs().await.is_empty());

    ci.run_ci(2);
    let status = ci.completed("app-ci-1").await;
    assert_eq!(status.conclusion.as_deref(), Some("success"));
    let spec: WorkflowRunSpec = ci.run("app-ci-1").await.unwrap().spec_as().unwrap();
    assert_eq!(
        (
            spec.event.as_str(),
            spec.git_ref.as_str(),
            spec.head_sha.as_str(),
            spec.actor.as_str()
        ),
        ("push", "refs/heads/main", sha.as_str(), "alice")
    );
    assert!(
        ci.log("app-ci-1")
            .await
            .contains(&"[j] built by alice".to_string())
    );
    eventually(PATIENCE, "the push noted", || async {
        noted().await == Some(format!("{{\"refs/heads/main\":\"{sha}\"}}"))
    })
    .await;
    assert_eq!(catch_up(&ci.store, &ci.hosted).await.unwrap(), 0);

    // The runs were made but the note of it lost: caught up, and still one run.
    let mut repo = ci.store.get(&repo_key).await.unwrap().unwrap();
    repo.metadata
        .annotations
        .insert(TRIGGERED_ANNOTATION.into(), "{}".into());
    ci.store.update(repo, "test").await.unwrap();
    assert_eq!(catch_up(&ci.store, &ci.hosted).await.unwrap(), 1);
    assert_eq!(names(&ci.runs().await), ["app-ci-1"]);
}

/// Twenty runs at once (twenty workflows on one push) with three job slots for the server:
/// each job marks itself running in a shared directory and writes down how many it sees
/// running; never more than three, all twenty succeed, and the three slots are used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_simultaneous_runs_never_hold_more_jobs_than_the_server_limit() {
    let ci = Ci::start(Some(3)).await;
    let running = ci.data.join("running");
    let seen = ci.data.join("seen");
    std::fs::create_dir_all(&running).unwrap();
    let step = format!(
        "f=$(mktemp -p {r}); ls {r} | wc -l >> {s}; sleep 0.4; ls {r} | wc -l >> {s}; rm $f",
        r = running.display(),
        s = seen.display()
    );
    for i in 0..20 {
        write(
            &ci.work,
            &format!(".github/workflows/w{i:02}.yml"),
            &format!(
                "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: {step}\n"
            ),
        );
    }
    ci.commit("twenty");
    ci.push("main", "alice").await;
    for i in 0..20 {
        let name = format!("app-w{i:02}-1");
        eventually(PATIENCE, &name, || async { ci.run(&name).await.is_some() }).await;
        let status = ci.completed(&name).await;
        assert_eq!(
            status.conclusion.as_deref(),
            Some("success"),
            "{name}: {:#?}",
            ci.log(&name).await
        );
    }
    let counts: Vec<usize> = std::fs::read_to_string(&seen)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 40, "{counts:?}");
    assert_eq!(counts.iter().max(), Some(&3), "{counts:?}");
}

/// A workflow whose one job sleeps while the commit has a file `slow`.
fn grouped(cancel_in_progress: bool) -> String {
    format!(
        "on: push\nconcurrency:\n  group: deploy-${{{{ github.ref }}}}\n  cancel-in-progress: {cancel_in_progress}\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: echo deploying; if [ -f slow ]; then sleep 30; fi; echo deployed\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_run_of_a_group_with_cancel_in_progress_cancels_the_running_one() {
    let ci = Ci::start(Some(4)).await;
    write(&ci.work, ".github/workflows/deploy.yml", &grouped(true));
    write(&ci.work, "slow", "");
    ci.commit("slow deploy");
    ci.push("main", "alice").await;
    eventually(PATIENCE, "the first deploy is running", || async {
        ci.log("app-deploy-1")
            .await
            .contains(&"[deploy] deploying".to_string())
    })
    .await;
    std::fs::remove_file(ci.work.join("slow")).unwrap();
    ci.commit("fast deploy");
    ci.push("main", "bob").await;
    let first = ci.completed("app-deploy-1").await;
    assert_eq!(first.conclusion.as_deref(), Some("cancelled"), "{first:?}");
    assert_eq!(
        first.message.as_deref(),
        Some(
            "Canceling since a higher priority waiting request for 'deploy-refs/heads/main' exists"
        )
    );
    assert!(
        !ci.log("app-deploy-1")
            .await
            .contains(&"[deploy] deployed".to_string())
    );
    let second = ci.completed("app-deploy-2").await;
    assert_eq!(second.conclusion.as_deref(), Some("success"), "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cancel_in_progress_a_newer_run_of_a_group_waits_for_the_running_one() {
    let ci = Ci::start(Some(4)).await;
    write(
        &ci.work,
        ".github/workflows/deploy.yml",
        &grouped(false).replace("sleep 30", "sleep 5"),
    );
    write(&ci.work, "slow", "");
    ci.commit("slow deploy");
    ci.push("main", "alice").await;
    eventually(PATIENCE, "the first deploy is running", || async {
        ci.log("app-deploy-1")
            .await
            .contains(&"[deploy] deploying".to_string())
    })
    .await;
    write(&ci.work, "NOTE", "again\n");
    ci.commit("again");
    ci.push("main", "bob").await;
    // The second waits, queued with the reason, while the first still runs.
    eventually(PATIENCE, "the second queued behind the first", || async {
        let Some(second) = ci.run("app-deploy-2").await else {
            return false;
        };
        let status: WorkflowRunStatus = second.status_as().unwrap();
        status.status.as_deref() == Some("queued")
            && status.message.as_deref()
                == Some(
                    "Waiting for a run of concurrency group 'deploy-refs/heads/main' to complete",
                )
    })
    .await;
    let first: WorkflowRunStatus = ci.run("app-deploy-1").await.unwrap().status_as().unwrap();
    assert!(!first.is_completed(), "the first still runs: {first:?}");
    assert!(
        ci.log("app-deploy-2").await.is_empty(),
        "the second has not started"
    );
    let first = ci.completed("app-deploy-1").await;
    assert_eq!(first.conclusion.as_deref(), Some("success"));
    let second = ci.completed("app-deploy-2").await;
    assert_eq!(second.conclusion.as_deref(), Some("success"));
    assert!(
        ci.log("app-deploy-2")
            .await
            .contains(&"[deploy] deployed".to_string())
    );
}

/// The environment gate on virtual time: a job of an environment with a 5-minute wait timer is
/// admitted exactly when the timer ends, not before; a tag outside the branch policy is
/// refused at once.
#[tokio::test(start_paused = true)]
async fn the_wait_timer_holds_a_job_for_exactly_its_time() {
    use shipway_ci::gate::EnvironmentGate;
    use shipway_pipeline::exec::{Gate, GateDecision};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("shipway.db"))
        .await
        .unwrap();
    let env: Object = serde_json::from_value(json!({
        "apiVersion": "shipway.dev/v1alpha1", "kind": "Environment",
        "metadata": {"name": "staging", "namespace": "default"},
        "spec": {"waitTimer": 5, "deploymentBranchPolicy": {"branches": ["main"], "tags": ["v*"]}},
    }))
    .unwrap();
    store.create(env, "test").await.unwrap();
    let run: Object = serde_json::from_value(json!({
        "apiVersion": "shipway.dev/v1alpha1", "kind": "WorkflowRun",
        "metadata": {"name": "app-ci-1", "namespace": "default"},
        "spec": {"repository": "app", "workflow": ".github/workflows/ci.yml", "event": "push",
                 "ref": "refs/heads/main", "headSha": "0123", "actor": "alice", "runNumber": 1},
    }))
    .unwrap();
    let run = store.create(run, "test").await.unwrap();
    let clock = shipway_controller::Clock::new();
    let gate = |git_ref: &str| {
        let (recorder, _writer) =
            shipway_ci::record::recorder(store.clone(), clock, run.clone(), Default::default());
        EnvironmentGate {
            store: store.clone(),
            clock,
            run: run.key(),
            repository: "app".into(),
            actor: "alice".into(),
            git_ref: git_ref.into(),
            attempt: 1,
            wake: Arc::new(tokio::sync::Notify::new()),
            recorder,
        }
    };
    let main = gate("refs/heads/main");
    let start = tokio::time::Instant::now();
    let admit = main.admit("deploy", "staging");
    tokio::pin!(admit);
    assert!(
        tokio::time::timeout(Duration::from_secs(299), &mut admit)
            .await
            .is_err(),
        "admitted before the wait timer ended"
    );
    assert!(matches!(admit.await, GateDecision::Admit(_)));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(300) && waited < Duration::from_secs(301),
        "{waited:?}"
    );

    let tag = gate("refs/tags/beta");
    let start = tokio::time::Instant::now();
    match tag.admit("deploy", "staging").await {
        GateDecision::Reject { reason } => assert_eq!(
            reason,
            "Tag \"beta\" is not allowed to deploy to staging due to environment protection rules."
        ),
        GateDecision::Admit(_) => panic!("a tag outside the policy was admitted"),
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
}

const EVERY_15: &str = "name: Nightly
on:
  schedule:
    - cron: '*/15 * * * *'
jobs:
  sweep:
    runs-on: ubuntu-latest
    steps:
      - run: echo \"${{ github.event.schedule }}\"
";

#[tokio::test(start_paused = true)]
async fn a_schedule_fires_at_its_minutes_and_not_between_and_follows_the_default_branch() {
    let ci = Ci::start(None).await;
    write(&ci.work, ".github/workflows/nightly.yml", EVERY_15);
    write(&ci.work, ".github/workflows/ci.yml", CI);
    write(&ci.work, "VERSION", "1\n");
    let first = ci.commit("schedules");
    ci.push("main", "dev").await;

    let start = time::macros::datetime!(2026-01-05 10:07:00 UTC);
    let clock = shipway_controller::Clock::starting_at(start);
    // The instant the clock reads `start` at (time is paused: nothing moved since).
    let t0 = tokio::time::Instant::now();
    let when = |h, m, s| {
        let wall = start.replace_time(time::Time::from_hms(h, m, s).unwrap());
        t0 + Duration::try_from(wall - start).unwrap()
    };
    tokio::spawn(shipway_ci::schedule::run(
        ci.store.clone(),
        ci.hosted.clone(),
        clock,
        ci.shutdown.clone(),
    ));
    let scheduled = |o: &Object| {
        o.metadata
            .annotations
            .get(shipway_ci::schedule::SCHEDULED_FOR)
            .cloned()
            .unwrap_or_default()
    };

    tokio::time::sleep_until(when(10, 14, 59)).await;
    assert_eq!(
        names(&ci.runs().await),
        Vec::<String>::new(),
        "nothing before 10:15"
    );
    eventually(PATIENCE, "the 10:15 fire", || async {
        ci.runs().await.len() == 1
    })
    .await;
    assert!(
        clock.now() < start.replace_time(time::Time::from_hms(10, 15, 1).unwrap()),
        "fired late: {}",
        clock.timestamp()
    );
    let runs = ci.runs().await;
    let run = &runs[0];
    assert_eq!(run.metadata.name, "app-nightly-1");
    assert_eq!(scheduled(run), "2026-01-05T10:15:00Z");
    let spec: WorkflowRunSpec = run.spec_as().unwrap();
    assert_eq!(spec.event, "schedule");
    assert_eq!(spec.workflow, ".github/workflows/nightly.yml");
    assert_eq!(spec.git_ref, "refs/heads/main");
    assert_eq!(spec.head_sha, first);
    assert_eq!(spec.actor, "Dev", "the tip's committer");
    assert_eq!(
        run.field("spec.payload.schedule"),
        Some(&json!("*/15 * * * *"))
    );

    tokio::time::sleep_until(when(10, 29, 59)).await;
    assert_eq!(ci.runs().await.len(), 1, "nothing between 10:15 and 10:30");
    eventually(PATIENCE, "the 10:30 fire", || async {
        ci.runs().await.len() == 2
    })
    .await;
    let runs = ci.runs().await;
    assert_eq!(names(&runs), ["app-nightly-1", "app-nightly-2"]);
    assert_eq!(scheduled(&runs[1]), "2026-01-05T10:30:00Z");

    // The default branch moves: the new cron line counts from then on, the old one no more.
    tokio::time::sleep_until(when(10, 31, 0)).await;
    write(
        &ci.work,
        ".github/workflows/nightly.yml",
        &EVERY_15.replace("*/15 * * * *", "40 10 * * MON"),
    );
    let second = ci.commit("at 10:40 on Mondays");
    ci.push("main", "dev").await;
    tokio::time::sleep_until(when(10, 39, 59)).await;
    assert_eq!(ci.runs().await.len(), 2);
    eventually(PATIENCE, "the 10:40 fire", || async {
        ci.runs().await.len() == 3
    })
    .await;
    let runs = ci.runs().await;
    assert_eq!(scheduled(&runs[2]), "2026-01-05T10:40:00Z");
    assert_eq!(
        runs[2].spec_as::<WorkflowRunSpec>().unwrap().head_sha,
        second
    );
    assert_eq!(
        runs[2].field("spec.payload.schedule"),
        Some(&json!("40 10 * * MON"))
    );
    tokio::time::sleep_until(when(11, 50, 0)).await;
    // 10:45 is no longer a fire, and the push-only workflow never fired.
    assert_eq!(
        names(&ci.runs().await),
        ["app-nightly-1", "app-nightly-2", "app-nightly-3"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_asking_for_a_label_not_offered_stays_queued_saying_so_until_cancelled() {
    let ci = Ci::start(Some(2)).await;
    write(
        &ci.work,
        ".github/workflows/labels.yml",
        "on: push
jobs:
  build:
    runs-on: [self-hosted, Linux]
    steps:
      - run: echo built
  gpu:
    runs-on: [self-hosted, gpu]
    steps:
      - run: echo never
",
    );
    write(
        &ci.work,
        ".github/workflows/group.yml",
        "on: push\njobs:\n  grouped:\n    runs-on: {group: big-ones}\n    steps:\n      - run: echo never either\n",
    );
    ci.commit("labels");
    ci.push("main", "alice").await;
    let job = |status: &WorkflowRunStatus, name: &str| {
        status.jobs.iter().find(|j| j.name == name).cloned()
    };
    eventually(
        PATIENCE,
        "build done, gpu queued with the reason",
        || async {
            let Some(run) = ci.run("app-labels-1").await else {
                return false;
            };
            let status: WorkflowRunStatus = run.status_as().unwrap();
            job(&status, "build").is_some_and(|j| j.conclusion.as_deref() == Some("success"))
                && job(&status, "gpu").is_some_and(|j| j.message.is_some())
        },
    )
    .await;
    // Runner groups: the job fails saying why.
    let grouped = ci.completed("app-group-1").await;
    assert_eq!(
        grouped.conclusion.as_deref(),
        Some("failure"),
        "{grouped:?}"
    );
    assert!(
        ci.log("app-group-1").await.iter().any(|l| l.contains(
            "[grouped] error: runs-on.group 'big-ones': runner groups are not supported"
        )),
        "{:#?}",
        ci.log("app-group-1").await
    );
    let status: WorkflowRunStatus = ci.run("app-labels-1").await.unwrap().status_as().unwrap();
    let gpu = job(&status, "gpu").unwrap();
    assert_eq!(gpu.status, "queued");
    assert_eq!(
        gpu.message.as_deref(),
        Some(
            "Waiting for a runner to pick up this job... No runner offers the label gpu (this server offers: self-hosted, linux, x64, ubuntu-latest; `shipway up --runner-label LABEL` adds one)"
        )
    );
    assert!(!status.is_completed(), "{status:?}");
    let log = ci.log("app-labels-1").await;
    assert!(
        log.iter()
            .any(|l| l.starts_with("[gpu] Waiting for a runner to pick up this job...")),
        "{log:#?}"
    );
    assert!(!log.iter().any(|l| l.contains("never")), "{log:#?}");

    let mut run = ci.run("app-labels-1").await.unwrap();
    run.body["spec"]["cancel"] = json!(true);
    run.metadata.resource_version = None;
    ci.store.update(run, "test").await.unwrap();
    let status = ci.completed("app-labels-1").await;
    assert_eq!(
        status.conclusion.as_deref(),
        Some("cancelled"),
        "{status:?}"
    );
    let gpu = job(&status, "gpu").unwrap();
    assert_eq!(
        (gpu.status.as_str(), gpu.conclusion.as_deref()),
        ("completed", Some("cancelled"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_of_failed_jobs_keeps_the_successful_ones_and_their_outputs() {
    let ci = Ci::start(Some(2)).await;
    write(
        &ci.work,
        ".github/workflows/flaky.yml",
        "on: push
jobs:
  build:
    runs-on: ubuntu-latest
    outputs:
      version: ${{ steps.v.outputs.version }}
    steps:
      - id: v
        run: echo \"building, attempt $GITHUB_RUN_ATTEMPT\"; echo \"version=1.$GITHUB_RUN_ATTEMPT\" >> \"$GITHUB_OUTPUT\"
  lint:
    runs-on: ubuntu-latest
    steps:
      - run: echo \"linting, attempt $GITHUB_RUN_ATTEMPT\"
  test:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo \"testing ${{ needs.build.outputs.version }}, attempt $GITHUB_RUN_ATTEMPT\"; test $GITHUB_RUN_ATTEMPT -gt 1
  deploy:
    needs: [build, test]
    runs-on: ubuntu-latest
    steps:
      - run: echo \"deploying ${{ needs.build.outputs.version }}\"
",
    );
    ci.commit("flaky");
    ci.push("main", "alice").await;
    let first = ci.completed("app-flaky-1").await;
    assert_eq!(first.conclusion.as_deref(), Some("failure"), "{first:?}");
    let conclusion = |s: &WorkflowRunStatus, name: &str| {
        s.jobs
            .iter()
            .find(|j| j.name == name)
            .and_then(|j| j.conclusion.clone())
    };
    assert_eq!(conclusion(&first, "deploy").as_deref(), Some("skipped"));

    let mut run = ci.run("app-flaky-1").await.unwrap();
    run.body["spec"]["runAttempt"] = json!(2);
    run.body["spec"]["rerunFailed"] = json!(true);
    run.metadata.resource_version = None;
    ci.store.update(run, "test").await.unwrap();
    eventually(PATIENCE, "attempt 2 completed", || async {
        ci.run("app-flaky-1")
            .await
            .and_then(|o| o.status_as::<WorkflowRunStatus>().ok())
            .is_some_and(|s| s.attempt() == 2 && s.is_completed())
    })
    .await;
    let second: WorkflowRunStatus = ci.run("app-flaky-1").await.unwrap().status_as().unwrap();
    assert_eq!(second.conclusion.as_deref(), Some("success"), "{second:?}");
    for job in ["build", "lint", "test", "deploy"] {
        assert_eq!(
            conclusion(&second, job).as_deref(),
            Some("success"),
            "{job}"
        );
    }
    // The kept jobs' records are those of attempt 1.
    let build = |s: &WorkflowRunStatus| s.jobs.iter().find(|j| j.name == "build").cloned();
    assert_eq!(build(&second), build(&first));
    let log = ci.log("app-flaky-1").await;
    let count = |needle: &str| log.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("] building, attempt 1"), 1, "{log:#?}");
    assert_eq!(count("] linting, attempt 1"), 1, "{log:#?}");
    assert_eq!(count("building, attempt 2"), 0, "{log:#?}");
    assert_eq!(count("linting, attempt 2"), 0, "{log:#?}");
    assert!(
        log.iter().any(|l| l == "[] Re-run: attempt 2 (failed jobs and their dependents; kept from attempt 1: build, lint)"),
        "{log:#?}"
    );
    // The re-run jobs read the kept job's outputs from attempt 1.
    assert!(
        log.contains(&"[test] testing 1.1, attempt 2".to_string()),
        "{log:#?}"
    );
    assert!(
        log.contains(&"[deploy] deploying 1.1".to_string()),
        "{log:#?}"
    );
}

/// Secrets and variables reach the steps at run start, the repository's overriding the global
/// ones, and no stored log line shows a secret's value, whatever the step does with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_gets_global_and_repository_secrets_and_vars_and_its_log_masks_them() {
    let ci = Ci::start(Some(2)).await;
    let (global, repo) = (Scope::default(), Scope::new(Some("app"), None));
    let set = |kind, scope: &Scope, name: &str, value: &str| {
        let (store, scope, name, value) = (
            ci.store.clone(),
            scope.clone(),
            name.to_string(),
            value.to_string(),
        );
        async move {
            store
                .set_setting(kind, &scope, &name, &value, "admin")
                .await
                .unwrap();
        }
    };
    set(SettingKind::Secret, &global, "token", "global-token-11aa").await;
    set(SettingKind::Secret, &repo, "token", "repo-token-22bb").await;
    set(SettingKind::Secret, &global, "other", "other-secret-33cc").await;
    set(
        SettingKind::Secret,
        &Scope::new(Some("elsewhere"), None),
        "LEAK",
        "x",
    )
    .await;
    set(SettingKind::Variable, &repo, "region", "eu-west-1").await;
    write(
        &ci.work,
        ".github/workflows/secrets.yml",
        "on: push
jobs:
  use:
    runs-on: ubuntu-latest
    steps:
      - run: |
          printf '%s' '${{ secrets.TOKEN }}' > seen-token
          echo \"token is ${{ secrets.TOKEN }}, other is $OTHER\"
          echo \"region ${{ vars.REGION }}, leak '${{ secrets.LEAK }}'\"
          test \"$(cat seen-token)\" = repo-token-22bb && echo token-file-ok
        env:
          OTHER: ${{ secrets.other }}
",
    );
    ci.commit("secrets");
    ci.push("main", "alice").await;
    let status = ci.completed("app-secrets-1").await;
    assert_eq!(status.conclusion.as_deref(), Some("success"), "{status:?}");
    let log = ci.log("app-secrets-1").await.join("\n");
    assert!(log.contains("token is ***, other is ***"), "{log}");
    assert!(log.contains("region eu-west-1, leak ''"), "{log}");
    assert!(log.contains("token-file-ok"), "{log}");
    for plain in ["global-token-11aa", "repo-token-22bb", "other-secret-33cc"] {
        assert!(!log.contains(plain), "{plain} in the log: {log}");
    }
}
