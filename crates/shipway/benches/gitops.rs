//! GitOps and CI on the real platform in process (issues 13 and 15), three modes (`cargo bench
//! -p shipway --bench gitops -- push|scale|ci`; all without an argument):
//!
//! - `push`: push → Synced: 50 pushes to a hosted repository through `/git/NAME.git`, and 50
//!   pushes to an external repository (fetched over HTTP, polled only every hour) each
//!   announced by a signed GitHub-style webhook. Each sample runs from just before `git push`
//!   until the Application reports the new sha as Synced with a Succeeded operation. The tree
//!   is one ConfigMap, so only the GitOps path is measured.
//! - `scale`: 1,000 Applications × 20 resources from one hosted repository (1,000
//!   directories), all created at once with automated sync; the time from the first creation
//!   until every one is Synced and Healthy with a Succeeded operation, and the process's RSS
//!   then, beside the Flux benchmark's 1,000 Kustomizations.
//! - `ci`: push → first step started: 50 pushes to a hosted repository with a one-step
//!   workflow; each sample runs from just before `git push` until the run's log holds the
//!   step's start line (read from the store every 2 ms), so it includes the log's 50 ms write
//!   window. Budget ≤ 200 ms p99.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use shipway_app::{Config, Platform, ServiceError};
use shipway_store::{ListQuery, Store};

const PUSHES: usize = 50;
const BUDGET: Duration = Duration::from_secs(1);
/// Longest wait for one push before the bench gives up and shows the app's status.
const GIVE_UP: Duration = Duration::from_secs(60);

struct Server {
    addr: std::net::SocketAddr,
    token: String,
    store: Store,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServiceError>>>,
}

impl Server {
    async fn start(data: PathBuf) -> Server {
        let platform = Platform::start(Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: data.clone(),
            database: None,
            proxy: Default::default(),
            listener: Default::default(),
            max_parallel_jobs: 0,
            runner_labels: Vec::new(),
        })
        .await
        .expect("platform starts");
        let addr = platform.local_addr();
        let store = platform.store().clone();
        let token = std::fs::read_to_string(data.join(shipway_server::ADMIN_TOKEN_FILE))
            .expect("admin token")
            .trim()
            .to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(platform.run(async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            token,
            store,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let code = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn apply(&self, obj: Value) {
        let (code, body) = self
            .call(reqwest::Method::POST, "/api/v1/apply", Some(obj))
            .await;
        assert!(code == 200 || code == 201, "apply: {code} {body}");
    }

    async fn app(&self, name: &str) -> Value {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/resources/applications/{name}?namespace=argocd"),
            None,
        )
        .await
        .1
    }

    /// Polls every 5 ms until the app has synced `sha` and its operation succeeded.
    async fn wait_synced(&self, name: &str, sha: &str) {
        let start = Instant::now();
        loop {
            let a = self.app(name).await;
            if a["status"]["sync"]["revision"] == sha
                && a["status"]["sync"]["status"] == "Synced"
                && a["status"]["operationState"]["phase"] == "Succeeded"
                && a["status"]["operationState"]["syncResult"]["revision"] == sha
            {
                return;
            }
            assert!(
                start.elapsed() < GIVE_UP,
                "application {name} did not sync {sha} within {GIVE_UP:?}: {}",
                a["status"]
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("platform stops cleanly");
        }
    }
}

/// git with a private HOME; the token, when given, comes from an askpass script reading the
/// environment, so it is in no URL and no .git/config.
async fn git(dir: &Path, token: Option<&str>, args: &[&str]) -> String {
    let askpass = dir.join("../askpass.sh");
    if !askpass.exists() {
        std::fs::write(&askpass, "#!/bin/sh\nprintf '%s\\n' \"$BENCH_TOKEN\"\n").expect("askpass");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))
            .expect("chmod askpass");
    }
    let mut c = tokio::process::Command::new("git");
    c.current_dir(dir)
        .args(args)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .env_remove("GIT_ASKPASS");
    if let Some(t) = token {
        c.env("GIT_ASKPASS", &askpass).env("BENCH_TOKEN", t);
    }
    ok(&format!("git {}", args.join(" ")), c.output().await)
}

fn ok(what: &str, out: std::io::Result<Output>) -> String {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A work tree on `main` holding one ConfigMap `name` with `data.v: v`.
async fn commit(work: &Path, name: &str, v: usize) -> String {
    std::fs::write(
        work.join("settings.yaml"),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: \"{v}\"\n"
        ),
    )
    .expect("write the ConfigMap");
    git(work, None, &["add", "-A"]).await;
    git(work, None, &["commit", "--quiet", "-m", &format!("v{v}")]).await;
    git(work, None, &["rev-parse", "HEAD"]).await
}

fn application(name: &str, url: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {"project": "default",
            "source": {"repoURL": url, "path": ".", "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
            "syncPolicy": {"automated": {"prune": true}}}})
}

/// The bare repository appears once the Repository is reconciled: retries the first push.
async fn first_push(work: &Path, url: &str, token: &str) {
    let start = Instant::now();
    loop {
        let out = tokio::process::Command::new("git")
            .current_dir(work)
            .args(["push", "--quiet", "origin", "main"])
            .env("HOME", work)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", work.join("../askpass.sh"))
            .env("BENCH_TOKEN", token)
            .stderr(Stdio::piped())
            .output()
            .await
            .expect("git push");
        if out.status.success() {
            return;
        }
        assert!(
            start.elapsed() < GIVE_UP,
            "first push to {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn hosted(s: &Server, root: &Path, token: &str) -> Vec<Duration> {
    s.apply(
        json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "Repository",
                   "metadata": {"name": "config"}, "spec": {"hosted": true}}),
    )
    .await;
    let url = s.url("/git/config.git");
    let work = root.join("hosted");
    std::fs::create_dir_all(&work).expect("work dir");
    git(&work, None, &["init", "--quiet", "-b", "main"]).await;
    git(&work, None, &["remote", "add", "origin", &url]).await;
    let mut sha = commit(&work, "settings", 0).await;
    first_push(&work, &url, token).await;
    s.apply(application("settings", &url)).await;
    s.wait_synced("settings", &sha).await;
    let mut times = Vec::with_capacity(PUSHES);
    for v in 1..=PUSHES {
        sha = commit(&work, "settings", v).await;
        let t0 = Instant::now();
        git(&work, Some(token), &["push", "--quiet", "origin", "main"]).await;
        s.wait_synced("settings", &sha).await;
        times.push(t0.elapsed());
    }
    times
}

async fn webhook(s: &Server, root: &Path, token: &str) -> Vec<Duration> {
    // The git host: a second hosted repository, pushed to as usual. The Application reads it
    // through `URL/` (trailing slash), which git fetches like any remote but which does not
    // name a hosted repository, so Shipway treats it as external: fetched into its cache with
    // the credentials of an Argo CD repository Secret, and not woken by the push itself.
    s.apply(
        json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "Repository",
                   "metadata": {"name": "githost"}, "spec": {"hosted": true}}),
    )
    .await;
    let push_url = s.url("/git/githost.git");
    let url = format!("{push_url}/");
    let work = root.join("external");
    std::fs::create_dir_all(&work).expect("work dir");
    git(&work, None, &["init", "--quiet", "-b", "main"]).await;
    git(&work, None, &["remote", "add", "origin", &push_url]).await;
    let mut sha = commit(&work, "upstream-settings", 0).await;
    first_push(&work, &push_url, token).await;
    s.apply(json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "githost-creds",
                                "labels": {"argocd.argoproj.io/secret-type": "repository"}},
                   "stringData": {"url": url, "username": "ci", "password": token}}))
        .await;
    let secret = "bench-webhook-secret";
    s.apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook"},
                   "stringData": {"secret": secret}}),
    )
    .await;
    // An hour between polls: within the bench only the webhook can bring a push in.
    s.apply(json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "Repository",
                   "metadata": {"name": "external"},
                   "spec": {"url": url, "pollInterval": "1h", "webhookSecretRef": {"name": "hook"}}}))
        .await;
    s.apply(application("upstream-settings", &url)).await;
    s.wait_synced("upstream-settings", &sha).await;
    let anonymous = reqwest::Client::new();
    let mut times = Vec::with_capacity(PUSHES);
    for v in 1..=PUSHES {
        sha = commit(&work, "upstream-settings", v).await;
        let body = json!({"ref": "refs/heads/main", "after": sha,
                          "repository": {"clone_url": url}})
        .to_string();
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
        mac.update(body.as_bytes());
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let t0 = Instant::now();
        git(&work, Some(token), &["push", "--quiet", "origin", "main"]).await;
        let resp = anonymous
            .post(s.url("/api/v1/webhooks/git"))
            .header("content-type", "application/json")
            .header("X-GitHub-Event", "push")
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .await
            .expect("webhook delivery");
        let code = resp.status();
        assert!(
            code.is_success(),
            "webhook: {code} {}",
            resp.text().await.unwrap_or_default()
        );
        s.wait_synced("upstream-settings", &sha).await;
        times.push(t0.elapsed());
    }
    times
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn row(name: &str, times: Vec<Duration>) {
    row_within(name, times, BUDGET, "1 s");
}

fn row_within(name: &str, mut times: Vec<Duration>, budget: Duration, budget_text: &str) {
    times.sort();
    let p99 = percentile(&times, 99);
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!(
        "{name:<44} {:>10} {:>10} {:>10}   budget ≤ {budget_text} p99: {}",
        ms(percentile(&times, 50)),
        ms(p99),
        ms(*times.last().expect("samples")),
        if p99 <= budget { "met" } else { "MISSED" }
    );
}

/// CI's budget from a push to its run's first step.
const CI_BUDGET: Duration = Duration::from_millis(200);

/// Pushes to a hosted repository with a one-step workflow: from just before each push until
/// the run's log shows its step started.
async fn ci(s: &Server, root: &Path, token: &str) -> Vec<Duration> {
    s.apply(
        json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "Repository",
                   "metadata": {"name": "app"}, "spec": {"hosted": true}}),
    )
    .await;
    let url = s.url("/git/app.git");
    let work = root.join("ci");
    std::fs::create_dir_all(work.join(".github/workflows")).expect("work dir");
    std::fs::write(
        work.join(".github/workflows/ci.yml"),
        "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo built\n",
    )
    .expect("workflow");
    git(&work, None, &["init", "--quiet", "-b", "main"]).await;
    git(&work, None, &["remote", "add", "origin", &url]).await;
    let commit = |v: usize| {
        let work = work.clone();
        async move {
            std::fs::write(work.join("VERSION"), v.to_string()).expect("write");
            git(&work, None, &["add", "-A"]).await;
            git(&work, None, &["commit", "--quiet", "-m", &format!("v{v}")]).await;
        }
    };
    commit(0).await;
    first_push(&work, &url, token).await;
    wait_first_step(s, "app-ci-1").await;
    let mut times = Vec::with_capacity(PUSHES);
    for v in 1..=PUSHES {
        commit(v).await;
        let t0 = Instant::now();
        git(&work, Some(token), &["push", "--quiet", "origin", "main"]).await;
        wait_first_step(s, &format!("app-ci-{}", v + 1)).await;
        times.push(t0.elapsed());
    }
    times
}

/// Until the run's log holds a step's start line (`▶ ...`), reading the store every 2 ms.
async fn wait_first_step(s: &Server, run: &str) {
    let key = shipway_model::Key::new("shipway.dev", "WorkflowRun", "default", run);
    let start = Instant::now();
    loop {
        let lines = s.store.logs(&key, 0, 0).await.expect("logs");
        if lines
            .iter()
            .any(|l| l.step.is_some() && l.text.starts_with('▶'))
        {
            return;
        }
        assert!(
            start.elapsed() < GIVE_UP,
            "run {run} started no step within {GIVE_UP:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// How many Applications (`SHIPWAY_BENCH_APPS` overrides, for profiling), and how many
/// resources each, in the `scale` mode.
const APPS: usize = 1000;
const RESOURCES_PER_APP: usize = 20;
/// The scale budget (DESIGN.md §10) and Flux's published figure for 1,000 Kustomizations
/// (fluxcd/flux-benchmark RESULTS.md, kustomize-controller: 4m15s–4m16s, 175Mi max memory,
/// on a 16-core GitHub runner, each Kustomization a Deployment scaled to zero, a
/// ServiceAccount, a Service and an Ingress).
const SCALE_BUDGET: Duration = Duration::from_secs(30);
const SCALE_RSS_BUDGET_MB: f64 = 300.0;

/// One app's directory: a Deployment scaled to zero (as Flux's benchmark apps), a
/// ServiceAccount, a Service and 17 ConfigMaps — 20 objects, 20 files.
fn write_app(dir: &Path, i: usize) {
    std::fs::create_dir_all(dir).expect("app dir");
    let app = format!("a{i:04}");
    std::fs::write(
        dir.join("deployment.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\n  labels: {{app: {app}}}\nspec:\n  replicas: 0\n  selector:\n    matchLabels: {{app: {app}}}\n  template:\n    metadata:\n      labels: {{app: {app}}}\n    spec:\n      serviceAccountName: {app}\n      containers:\n      - name: web\n        image: bench/web:1\n        ports:\n        - containerPort: 8080\n"
        ),
    )
    .expect("write");
    std::fs::write(
        dir.join("serviceaccount.yaml"),
        format!("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {app}\n"),
    )
    .expect("write");
    std::fs::write(
        dir.join("service.yaml"),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {app}\nspec:\n  selector: {{app: {app}}}\n  ports:\n  - port: 80\n    targetPort: 8080\n"
        ),
    )
    .expect("write");
    for c in 0..RESOURCES_PER_APP - 3 {
        std::fs::write(
            dir.join(format!("config-{c:02}.yaml")),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}-config-{c:02}\ndata:\n  app: {app}\n  index: \"{c}\"\n  settings.json: '{{\"replicas\": 0, \"feature\": \"f{c}\"}}'\n"
            ),
        )
        .expect("write");
    }
}

fn rss_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Whether an Application's status is Synced, and Synced + Healthy with a Succeeded operation.
fn state_of(app: &shipway_model::Object) -> (bool, bool) {
    let s = app.body.get("status").cloned().unwrap_or(Value::Null);
    let synced = s["sync"]["status"] == "Synced";
    let done =
        synced && s["health"]["status"] == "Healthy" && s["operationState"]["phase"] == "Succeeded";
    (synced, done)
}

async fn scale(s: &Server, root: &Path, token: &str) {
    let apps: usize = std::env::var("SHIPWAY_BENCH_APPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(APPS);
    s.apply(
        json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "Repository",
                   "metadata": {"name": "fleet"}, "spec": {"hosted": true}}),
    )
    .await;
    let url = s.url("/git/fleet.git");
    let work = root.join("fleet");
    std::fs::create_dir_all(&work).expect("work dir");
    git(&work, None, &["init", "--quiet", "-b", "main"]).await;
    git(&work, None, &["remote", "add", "origin", &url]).await;
    for i in 0..apps {
        write_app(&work.join(format!("apps/a{i:04}")), i);
    }
    git(&work, None, &["add", "-A"]).await;
    git(&work, None, &["commit", "--quiet", "-m", "fleet"]).await;
    first_push(&work, &url, token).await;
    let rss_before = rss_mb("VmRSS:");
    let since = s
        .store
        .list(&ListQuery::kind("argoproj.io", "Application"))
        .await
        .expect("list applications")
        .resource_version;
    let mut changes = s
        .store
        .watch(ListQuery::kind("argoproj.io", "Application"), since);

    let rv0 = s.store.current_resource_version().await.expect("version");
    let t0 = Instant::now();
    // Created through the API, 8 requests at a time, as a script would.
    let names: Vec<usize> = (0..apps).collect();
    for chunk in names.chunks(8) {
        let mut calls = Vec::new();
        for &i in chunk {
            let mut app = application(&format!("a{i:04}"), &url);
            app["spec"]["source"]["path"] = json!(format!("apps/a{i:04}"));
            calls.push(s.apply(app));
        }
        futures_util::future::join_all(calls).await;
    }
    let created = t0.elapsed();
    // Every Application change, from before the first creation: each app's latest state,
    // read as the store commits it (no listing of 1,000 statuses per poll).
    let mut states: std::collections::HashMap<String, (bool, bool)> = Default::default();
    let mut all_synced = None;
    let finished = loop {
        let event = tokio::time::timeout(Duration::from_secs(600), changes.next())
            .await
            .expect("an Application change within 600 s")
            .expect("the watch goes on")
            .expect("a watch event");
        states.insert(event.object.metadata.name.clone(), state_of(&event.object));
        let synced = states.values().filter(|s| s.0).count();
        let done = states.values().filter(|s| s.1).count();
        if synced == apps && all_synced.is_none() {
            all_synced = Some(t0.elapsed());
        }
        if done == apps {
            break t0.elapsed();
        }
    };
    let writes = s.store.current_resource_version().await.expect("version") - rv0;
    let rss = rss_mb("VmRSS:");
    let peak = rss_mb("VmHWM:");
    let objects = s
        .store
        .list(&ListQuery::default())
        .await
        .expect("list everything")
        .items
        .len();
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    println!(
        "{apps} Applications × {RESOURCES_PER_APP} resources, one hosted repository ({objects} objects in the store after)"
    );
    println!(
        "  created (API, 8 at a time)              {:>10}",
        secs(created)
    );
    println!(
        "  store writes until then                 {writes:>10}   ({:.0}/s, {:.1} per app; each durable when acknowledged, overlapping ones sharing an fsync)",
        writes as f64 / finished.as_secs_f64(),
        writes as f64 / apps as f64
    );
    println!(
        "  all Synced                              {:>10}",
        secs(all_synced.unwrap_or(finished))
    );
    println!(
        "  all Synced + Healthy, sync Succeeded    {:>10}   budget < 30 s: {}",
        secs(finished),
        if finished < SCALE_BUDGET {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  RSS after (whole process: server + bench client) {rss:.0} MB (peak {peak:.0} MB, before the apps {rss_before:.0} MB)   budget < 300 MB: {}",
        if rss < SCALE_RSS_BUDGET_MB {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  Flux, 1,000 Kustomizations (flux-benchmark RESULTS.md, 16-core runner): 4 m 16 s, 175 MiB"
    );
}

fn main() {
    // `cargo bench` passes `--bench`; the modes are the other arguments.
    let mut modes: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if modes.is_empty() {
        modes = vec!["push".into(), "scale".into(), "ci".into()];
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        // `SHIPWAY_BENCH_DIR` puts the data directory elsewhere (a tmpfs, to see what the
        // disk's fsync costs: every acknowledged write is one).
        let dir = match std::env::var_os("SHIPWAY_BENCH_DIR") {
            Some(d) => tempfile::tempdir_in(d),
            None => tempfile::tempdir(),
        }
        .expect("temp dir");
        let s = Server::start(dir.path().join("data")).await;
        let (code, body) = s
            .call(
                reqwest::Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": "ci", "role": "deployer"})),
            )
            .await;
        assert_eq!(code, 201, "token: {body}");
        let token = body["token"].as_str().expect("token").to_string();
        if modes.iter().any(|m| m == "push") {
            let hosted = hosted(&s, dir.path(), &token).await;
            let webhook = webhook(&s, dir.path(), &token).await;
            println!("push → Synced over {PUSHES} pushes (push included; ConfigMap only)");
            println!("{:<44} {:>10} {:>10} {:>10}", "source", "p50", "p99", "max");
            row("hosted repository (git push /git/NAME.git)", hosted);
            row("external (fetched) + GitHub push webhook", webhook);
            println!("Argo CD: 180 s poll by default (webhook-driven: \"refresh within seconds\")");
        }
        if modes.iter().any(|m| m == "scale") {
            scale(&s, dir.path(), &token).await;
        }
        if modes.iter().any(|m| m == "ci") {
            let times = ci(&s, dir.path(), &token).await;
            println!("push → first step started over {PUSHES} pushes (push included)");
            println!("{:<44} {:>10} {:>10} {:>10}", "source", "p50", "p99", "max");
            row_within(
                "hosted repository (git push /git/NAME.git)",
                times,
                CI_BUDGET,
                "200 ms",
            );
            println!(
                "GitHub Actions: a webhook, then a runner picks the job up: seconds to minutes"
            );
        }
        s.stop().await;
    });
}
