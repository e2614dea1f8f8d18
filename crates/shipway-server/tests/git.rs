//! Hosted git over HTTP with the real git CLI: clone and push through `/git/NAME.git` with
//! tokens, the refusals, and what a push wakes.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use shipway_app::{Config, Platform, ServiceError};
use shipway_server::ADMIN_TOKEN_FILE;
use shipway_testkit::eventually;

struct Server {
    addr: std::net::SocketAddr,
    token: String,
    http: reqwest::Client,
    hosted: std::sync::Arc<shipway_git::hosted::Hosted>,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServiceError>>>,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::start(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("data"),
            database: None,
            proxy: Default::default(),
            listener: Default::default(),
            max_parallel_jobs: 0,
            runner_labels: Vec::new(),
        })
        .await
        .unwrap();
        let addr = platform.local_addr();
        let hosted = platform.hosted().clone();
        let token = std::fs::read_to_string(dir.path().join("data").join(ADMIN_TOKEN_FILE))
            .unwrap()
            .trim()
            .to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(platform.run(async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            token,
            http: reqwest::Client::new(),
            hosted,
            dir,
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
        let resp = req.send().await.unwrap();
        let code = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn token(&self, name: &str, role: &str) -> String {
        let (code, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": name, "role": role})),
            )
            .await;
        assert_eq!(code, 201, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    async fn repository(&self) -> Value {
        self.call(
            reqwest::Method::GET,
            "/api/v1/resources/repositories/apps?namespace=default",
            None,
        )
        .await
        .1
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// git with a private HOME, and the token handed over by an askpass script reading the
/// environment, so it is in no URL and no .git/config.
fn git(dir: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let askpass = dir.join("../askpass.sh");
    if !askpass.exists() {
        std::fs::write(&askpass, "#!/bin/sh\nprintf '%s\\n' \"$TEST_TOKEN\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let mut c = Command::new("git");
    c.current_dir(dir)
        .args(args)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .env_remove("GIT_ASKPASS");
    if let Some(t) = token {
        c.env("GIT_ASKPASS", &askpass).env("TEST_TOKEN", t);
    }
    c.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_clone_through_the_hosted_url_with_tokens() {
    let s = Server::start().await;
    let ci = s.token("ci", "deployer").await;
    let reader = s.token("reader", "viewer").await;
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/apply",
            Some(
                json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "Repository",
                        "metadata": {"name": "apps"}, "spec": {"hosted": true}}),
            ),
        )
        .await;
    assert!(code == 200 || code == 201, "{code} {body}");
    let url = s.url("/git/apps.git");
    eventually(
        Duration::from_secs(10),
        "the Repository's clone URL in its status",
        || async { s.repository().await["status"]["url"] == json!(url) },
    )
    .await;
    assert!(s.dir.path().join("data/git/apps.git/HEAD").is_file());

    // Anonymous: 401 with a Basic challenge, so git asks for credentials.
    let anon = s
        .http
        .get(s.url("/git/apps.git/info/refs?service=git-receive-pack"))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);
    assert_eq!(
        anon.headers()["www-authenticate"],
        "Basic realm=\"shipway\""
    );

    let work = s.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    ok(git(&work, None, &["init", "--quiet", "-b", "main"]));
    std::fs::write(
        work.join("config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    )
    .unwrap();
    ok(git(&work, None, &["add", "-A"]));
    ok(git(&work, None, &["commit", "--quiet", "-m", "first"]));
    let sha = ok(git(&work, None, &["rev-parse", "HEAD"]));
    ok(git(&work, None, &["remote", "add", "origin", &url]));

    let no_token = git(&work, None, &["push", "origin", "main"]);
    assert!(!no_token.status.success());
    let viewer_push = git(&work, Some(&reader), &["push", "origin", "main"]);
    assert!(!viewer_push.status.success());
    assert!(
        String::from_utf8_lossy(&viewer_push.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&viewer_push.stderr)
    );

    let mut pushes = s.hosted.subscribe("apps");
    ok(git(
        &work,
        Some(&ci),
        &["push", "--quiet", "origin", "main"],
    ));
    tokio::time::timeout(Duration::from_secs(10), pushes.changed())
        .await
        .expect("the subscriber wakes after a push")
        .unwrap();
    assert_eq!(pushes.borrow().get("main"), Some(&sha));
    eventually(
        Duration::from_secs(10),
        "status.heads.main at the pushed sha",
        || async { s.repository().await["status"]["heads"]["main"] == json!(sha) },
    )
    .await;
    let (_, events) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/events/repositories?namespace=default&name=apps",
            None,
        )
        .await;
    let pushed: Vec<&Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "Pushed")
        .collect();
    assert_eq!(pushed.len(), 1, "{events}");
    assert_eq!(
        pushed[0]["message"],
        json!(format!("refs/heads/main updated to {sha} by ci"))
    );
    assert_eq!(pushed[0]["actor"], "ci");
    let config = std::fs::read_to_string(work.join(".git/config")).unwrap();
    assert!(!config.contains(&ci), "the token stays out of .git/config");

    // A viewer clones; the library's fetch (askpass with the token as password) reads it too.
    let clones = s.dir.path().join("clones");
    std::fs::create_dir_all(&clones).unwrap();
    ok(git(
        &clones,
        Some(&reader),
        &["clone", "--quiet", &url, "apps"],
    ));
    assert!(clones.join("apps/config.yaml").is_file());
    let creds = shipway_git::Credentials {
        username: Some("anyone".into()),
        password: Some(reader.clone()),
        ssh_private_key: None,
    };
    let cache = s.dir.path().join("cache/apps.git");
    let url2 = url.clone();
    let fetched =
        tokio::task::spawn_blocking(move || shipway_git::fetch(&url2, &cache, Some(&creds)))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(fetched.resolve("HEAD").unwrap().sha, sha);

    // Not found: unknown repositories and names that are not DNS labels.
    for path in [
        "/git/nope.git/info/refs",
        "/git/Bad_Name.git/info/refs",
        "/git/apps/info/refs",
    ] {
        let resp = s
            .http
            .get(s.url(path))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{path}");
    }
    let resp = s
        .http
        .get(s.url("/git/apps.git/info/refs?service=git-receive-pack"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    // The URL has no namespace: a second hosted "apps" elsewhere is told the name is taken.
    s.call(
        reqwest::Method::POST,
        "/api/v1/apply",
        Some(
            json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "Repository",
                    "metadata": {"name": "apps", "namespace": "other"}, "spec": {"hosted": true}}),
        ),
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "NameTaken on the younger repository",
        || async {
            let (_, other) = s
                .call(
                    reqwest::Method::GET,
                    "/api/v1/resources/repositories/apps?namespace=other",
                    None,
                )
                .await;
            other["status"]["conditions"][0]["reason"] == "NameTaken"
                && other["status"]["url"].is_null()
        },
    )
    .await;
    assert_eq!(s.repository().await["status"]["heads"]["main"], json!(sha));
    s.stop().await;
}

/// The Application controller wired into the platform, on a hosted repository: a push through
/// `/git/NAME.git` is synced at once (the push writes the Repository's status, which wakes the
/// app), and the time from push to Synced is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_on_a_hosted_repository_syncs_each_push() {
    let s = Server::start().await;
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/apply",
            Some(
                json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "Repository",
                        "metadata": {"name": "config"}, "spec": {"hosted": true}}),
            ),
        )
        .await;
    assert!(code == 200 || code == 201, "{code} {body}");
    let url = s.url("/git/config.git");
    assert!(
        eventually_bool(|| s.dir.path().join("data/git/config.git/HEAD").is_file()).await,
        "the bare repository"
    );
    let work = s.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    ok(git(&work, None, &["init", "--quiet", "-b", "main"]));
    let write = |v: &str| {
        std::fs::write(
            work.join("settings.yaml"),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  v: \"{v}\"\n"),
        )
        .unwrap();
    };
    write("1");
    ok(git(&work, None, &["add", "-A"]));
    ok(git(&work, None, &["commit", "--quiet", "-m", "v1"]));
    ok(git(&work, None, &["remote", "add", "origin", &url]));
    let token = s.token("ci", "deployer").await;
    ok(git(
        &work,
        Some(&token),
        &["push", "--quiet", "origin", "main"],
    ));
    let (code, body) = s
        .call(
            reqwest::Method::POST,
            "/api/v1/apply",
            Some(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                "metadata": {"name": "settings", "namespace": "argocd"},
                "spec": {"project": "default",
                    "source": {"repoURL": url, "path": ".", "targetRevision": "main"},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
                    "syncPolicy": {"automated": {"prune": true}}}})),
        )
        .await;
    assert!(code == 200 || code == 201, "{code} {body}");
    let first = ok(git(&work, None, &["rev-parse", "HEAD"]));
    eventually(
        Duration::from_secs(20),
        "Synced at the first push",
        || async {
            let a = settings_app(&s).await;
            a["status"]["sync"]["status"] == "Synced"
                && a["status"]["sync"]["revision"] == json!(first)
        },
    )
    .await;
    let mut times = Vec::new();
    for v in 2..=6 {
        write(&v.to_string());
        ok(git(&work, None, &["commit", "--quiet", "-am", "next"]));
        let sha = ok(git(&work, None, &["rev-parse", "HEAD"]));
        let t0 = std::time::Instant::now();
        ok(git(
            &work,
            Some(&token),
            &["push", "--quiet", "origin", "main"],
        ));
        eventually(
            Duration::from_secs(20),
            "Synced at the new push",
            || async {
                let a = settings_app(&s).await;
                a["status"]["sync"]["status"] == "Synced"
                    && a["status"]["operationState"]["syncResult"]["revision"] == json!(sha)
            },
        )
        .await;
        times.push(t0.elapsed());
    }
    let (_, cm) = s
        .call(
            reqwest::Method::GET,
            "/api/v1/resources/configmaps/settings?namespace=default",
            None,
        )
        .await;
    assert_eq!(cm["data"]["v"], "6", "{cm}");
    println!("hosted push → Synced (push included): {times:?}");
    s.stop().await;
}

async fn eventually_bool(f: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn settings_app(s: &Server) -> Value {
    s.call(
        reqwest::Method::GET,
        "/api/v1/resources/applications/settings?namespace=argocd",
        None,
    )
    .await
    .1
}
