//! Pipelines through the real `shipway up`: a push over `/git/NAME.git` with the git CLI runs the
//! workflow; `shipway pipeline` shows the run and its log; a SIGKILL mid-run leaves, after the
//! restart, a run recorded failed with its log up to the kill.

mod common;

use std::path::Path;

use common::{Up, git_in, text, wait_for};

fn write(dir: &Path, path: &str, body: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// A hosted repository `app`, a deployer token, and a clone with `workflow` committed.
fn repo_with(up: &Up, data: &Path, work: &Path, workflow: &str) -> (String, String) {
    let out = up.cli(data, &["repo", "create", "app"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let url = text(&out.stdout).trim().to_string();
    let out = up.cli(data, &["token", "create", "pusher", "--role", "deployer"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_string();
    write(work, ".github/workflows/ci.yml", workflow);
    git_in(work, None, &["init", "-q", "-b", "main"]);
    git_in(work, None, &["add", "-A"]);
    git_in(work, None, &["commit", "-qm", "ci"]);
    (url, token)
}

fn logs(up: &Up, data: &Path, run: &str) -> String {
    text(&up.cli(data, &["pipeline", "logs", run]).stdout)
}

#[test]
fn a_push_over_http_runs_the_workflow_and_the_cli_shows_run_and_log() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let work = tempfile::tempdir().unwrap();
    let (url, token) = repo_with(
        &up,
        data.path(),
        work.path(),
        "name: CI\non: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: echo \"testing as $GITHUB_ACTOR\"; test -f .github/workflows/ci.yml\n",
    );
    git_in(work.path(), Some(&token), &["push", "-q", &url, "main"]);
    let sha = git_in(work.path(), None, &["rev-parse", "HEAD"]);

    // `logs --follow` waits for the run to appear and ends when it completes.
    let out = up.cli(data.path(), &["pipeline", "logs", "app-ci-1", "--follow"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let log = text(&out.stdout);
    assert!(log.contains("[test] testing as pusher\n"), "{log}");
    assert!(log.ends_with("[test] job success\n"), "{log}");

    let out = up.cli(data.path(), &["pipeline", "get", "app-ci-1"]);
    let shown = text(&out.stdout);
    assert!(shown.contains(&format!("Commit:     {sha}\n")), "{shown}");
    assert!(shown.contains("Actor:      pusher\n"), "{shown}");
    assert!(shown.contains("Status:     success\n"), "{shown}");
    assert!(shown.contains("  2. Run echo"), "{shown}");

    let out = up.cli(data.path(), &["pipeline", "get", "app-ci-1", "-o", "json"]);
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["status"]["conclusion"], "success");
    assert_eq!(run["spec"]["payload"]["after"], sha.as_str());
    assert_eq!(run["spec"]["payload"]["pusher"]["name"], "pusher");

    let out = up.cli(data.path(), &["pipeline", "list", "--status", "success"]);
    let listed = text(&out.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("app-ci-1 ") && l.contains(&sha[..7])),
        "{listed}"
    );
    let out = up.cli(data.path(), &["pipeline", "list", "--status", "failure"]);
    assert!(!text(&out.stdout).contains("app-ci-1"));
    // The log API needs a token like every route.
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{}/api/v1/runs/default/app-ci-1/logs", up.server))
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "401");
}

/// `shipway up` SIGKILLed while a step runs: after the restart the run is completed as failed
/// with the reason, never left running, and the lines the step printed before the kill are in
/// its log.
#[test]
fn a_run_killed_with_the_server_is_recorded_failed_with_its_log_kept() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let work = tempfile::tempdir().unwrap();
    // The sleep outlives the killed server, until the restarted one stops it.
    let pid_file = data.path().join("sleep.pid");
    let (url, token) = repo_with(
        &up,
        data.path(),
        work.path(),
        &format!(
            "on: push\njobs:\n  long:\n    runs-on: ubuntu-latest\n    steps:\n      - run: for i in 1 2 3; do echo \"line $i\"; done; if [ $GITHUB_RUN_ATTEMPT = 1 ]; then sleep 120 & echo $! > {}; wait; echo never; fi; echo \"attempt $GITHUB_RUN_ATTEMPT done\"\n",
            pid_file.display()
        ),
    );
    git_in(work.path(), Some(&token), &["push", "-q", &url, "main"]);
    wait_for(60, "the step's lines in the log", || {
        logs(&up, data.path(), "app-ci-1").contains("[long] line 3\n")
    });
    wait_for(60, "the sleep started", || pid_file.exists());
    let sleep = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    up.kill9();
    // Alive (not a zombie) while no server is there.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{sleep}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
    };
    assert!(
        alive(),
        "the step's sleep {sleep} did not outlive the server"
    );

    let up = Up::start(data.path());
    wait_for(60, "the run completed after the restart", || {
        text(&up.cli(data.path(), &["pipeline", "get", "app-ci-1"]).stdout)
            .contains("Status:     failure\n")
    });
    // The restarted server stopped what the step left running.
    wait_for(30, "the orphaned sleep stopped", || !alive());
    let shown = text(&up.cli(data.path(), &["pipeline", "get", "app-ci-1"]).stdout);
    assert!(
        shown.contains("Message:    The run was interrupted"),
        "{shown}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("long ") && l.contains("failure")),
        "{shown}"
    );
    let log = logs(&up, data.path(), "app-ci-1");
    for i in 1..=3 {
        assert!(log.contains(&format!("[long] line {i}\n")), "{log}");
    }
    assert!(!log.contains("[long] never\n"), "{log}");
    assert!(log.contains("The run was interrupted"), "{log}");

    // A re-run works: the next attempt runs the same commit to the end, after the first's lines.
    let out = up.cli(data.path(), &["pipeline", "rerun", "app-ci-1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_for(60, "the second attempt succeeded", || {
        text(&up.cli(data.path(), &["pipeline", "get", "app-ci-1"]).stdout)
            .contains("Status:     success\n")
    });
    let shown = text(&up.cli(data.path(), &["pipeline", "get", "app-ci-1"]).stdout);
    assert!(shown.contains("Run:        #1 (attempt 2)\n"), "{shown}");
    let log = logs(&up, data.path(), "app-ci-1");
    let first = log.find("[long] line 3\n").unwrap();
    let again = log.find("Re-run: attempt 2\n").expect(&log);
    let done = log.find("[long] attempt 2 done\n").expect(&log);
    assert!(first < again && again < done, "{log}");
    // A run in progress is refused a re-run: here, none is.
    let out = up.cli(data.path(), &["pipeline", "rerun", "nope"]);
    assert_eq!(out.status.code(), Some(1));
}

/// A token of a new user with `role`.
fn user_token(up: &Up, data: &Path, name: &str, role: &str) -> String {
    let out = up.cli(data, &["user", "add", name, "--role", role]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = up.cli(data, &["token", "create", "--user", name]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// `shipway pipeline approve RUN --env ENV` as the user of `token`, which must succeed.
fn approve(up: &Up, data: &Path, token: &str, run: &str, env: &str) {
    let out = up.cli(
        data,
        &["--token", token, "pipeline", "approve", run, "--env", env],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

fn get(up: &Up, data: &Path, run: &str) -> String {
    text(&up.cli(data, &["pipeline", "get", run]).stdout)
}

/// A production job behind two distinct reviewers: it waits after one approval and refuses the
/// actor's own, runs after the second; a rejection fails it; a branch outside the policy is
/// refused; every review is an event naming its reviewer.
#[test]
fn a_protected_environment_waits_for_two_distinct_reviewers() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let d = data.path();
    let out = up.cli(d, &["repo", "create", "app"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let url = text(&out.stdout).trim().to_string();
    let alice = user_token(&up, d, "alice", "deployer");
    let bob = user_token(&up, d, "bob", "deployer");
    let carol = user_token(&up, d, "carol", "admin");
    let val = user_token(&up, d, "val", "viewer");
    let env = "apiVersion: shipway.dev/v1alpha1\nkind: Environment\nmetadata: {name: production}\nspec:\n  requiredReviewers: [{role: deployer}]\n  requiredApprovals: 2\n  deploymentBranchPolicy: {branches: [main]}\n";
    let out = up.cli_with_stdin(d, &["apply", "-f", "-"], env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write(
        w,
        ".github/workflows/ci.yml",
        "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo built\n  deploy:\n    needs: build\n    runs-on: ubuntu-latest\n    environment: production\n    steps:\n      - run: echo \"deploying $GITHUB_SHA\"\n",
    );
    git_in(w, None, &["init", "-q", "-b", "main"]);
    git_in(w, None, &["add", "-A"]);
    git_in(w, None, &["commit", "-qm", "ci"]);
    git_in(w, Some(&alice), &["push", "-q", &url, "main"]);
    wait_for(60, "deploy waiting for review", || {
        get(&up, d, "app-ci-1").contains(
            "Waiting for review: production needs 2 approvals from role deployer (none yet",
        )
    });
    let review = |token: &str, verb: &str, run: &str, comment: &str| {
        let mut args = vec![
            "--token",
            token,
            "pipeline",
            verb,
            run,
            "--env",
            "production",
        ];
        if !comment.is_empty() {
            args.extend(["--comment", comment]);
        }
        up.cli(d, &args)
    };
    // The actor's own approval and a viewer's are refused, with why.
    let out = review(&alice, "approve", "app-ci-1", "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("does not allow self-review"),
        "{}",
        text(&out.stderr)
    );
    let out = review(&val, "approve", "app-ci-1", "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("this needs the deployer role"),
        "{}",
        text(&out.stderr)
    );
    // One approval: still waiting, and saying so.
    let out = review(&bob, "approve", "app-ci-1", "looks good");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "workflowrun/app-ci-1 approved for environment production by bob\n"
    );
    wait_for(60, "the gate saw bob's approval", || {
        get(&up, d, "app-ci-1").contains("(1 so far: bob;")
    });
    let shown = get(&up, d, "app-ci-1");
    assert!(shown.contains("Status:     waiting\n"), "{shown}");
    assert!(!logs(&up, d, "app-ci-1").contains("deploying"));
    let out = review(&bob, "approve", "app-ci-1", "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already approved"),
        "{}",
        text(&out.stderr)
    );
    // A second, distinct reviewer (an admin counts as a deployer): it runs.
    let out = review(&carol, "approve", "app-ci-1", "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_for(60, "the run succeeded", || {
        get(&up, d, "app-ci-1").contains("Status:     success\n")
    });
    let sha = git_in(w, None, &["rev-parse", "HEAD"]);
    assert!(logs(&up, d, "app-ci-1").contains(&format!("[deploy] deploying {sha}\n")));
    let shown = get(&up, d, "app-ci-1");
    assert!(
        shown.lines().any(|l| l.split_whitespace().take(4).eq([
            "production",
            "approved",
            "bob",
            "1"
        ])),
        "{shown}"
    );
    let out = up.cli(
        d,
        &["events", "--for", "workflowrun/app-ci-1", "-o", "json"],
    );
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reviews: Vec<(String, String)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "Approved" || e["action"] == "Rejected")
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        reviews,
        [
            (
                "bob".to_string(),
                "bob approved environment \"production\" for attempt 1: looks good".to_string()
            ),
            (
                "carol".to_string(),
                "carol approved environment \"production\" for attempt 1".to_string()
            ),
        ],
        "{events:#}"
    );
    // Nobody can write a review in by hand.
    let out = up.cli(d, &["get", "workflowrun", "app-ci-1", "-o", "json"]);
    let mut run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    run["spec"]["reviews"][0]["user"] = "mallory".into();
    let out = up.cli_with_stdin(d, &["apply", "-f", "-"], &run.to_string());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("spec.reviews: Forbidden"),
        "{}",
        text(&out.stderr)
    );

    // A rejection fails the job, with who and why.
    write(w, "README", "2\n");
    git_in(w, None, &["add", "-A"]);
    git_in(w, None, &["commit", "-qm", "two"]);
    git_in(w, Some(&alice), &["push", "-q", &url, "main"]);
    wait_for(60, "the second run waits", || {
        get(&up, d, "app-ci-2").contains("Waiting for review")
    });
    let out = review(&bob, "reject", "app-ci-2", "not today");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_for(60, "the second run failed", || {
        get(&up, d, "app-ci-2").contains("Status:     failure\n")
    });
    let log = logs(&up, d, "app-ci-2");
    assert!(log.contains("Rejected by bob: not today"), "{log}");
    assert!(!log.contains("deploying"), "{log}");

    // A branch outside the policy is refused without a review.
    git_in(w, None, &["checkout", "-q", "-b", "feature"]);
    git_in(w, Some(&alice), &["push", "-q", &url, "feature"]);
    wait_for(60, "the feature run failed", || {
        get(&up, d, "app-ci-3").contains("Status:     failure\n")
    });
    let log = logs(&up, d, "app-ci-3");
    assert!(
        log.contains("Branch \"feature\" is not allowed to deploy to production due to environment protection rules."),
        "{log}"
    );

    // `shipway env` says what runs where, from which commit, approved by whom.
    let out = up.cli(d, &["env", "get", "production"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!("Running:      {sha} of app (main)\n")),
        "{shown}"
    );
    assert!(
        shown.contains("From run:     app-ci-1 job deploy\n"),
        "{shown}"
    );
    assert!(shown.contains("Approved by:  bob,carol\n"), "{shown}");
    assert!(
        shown.contains("Protection:   2 of role deployer; refs main\n"),
        "{shown}"
    );
    let out = up.cli(d, &["env", "history", "production"]);
    let history: Vec<Vec<String>> = text(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(8).map(String::from).collect())
        .collect();
    let runs: Vec<(&str, &str, &str, &str)> = history
        .iter()
        .map(|r| (r[0].as_str(), r[4].as_str(), r[6].as_str(), r[7].as_str()))
        .collect();
    assert_eq!(
        runs,
        [
            ("app-ci-3", "-", "failure", "-"),
            ("app-ci-2", "-", "failure", "-"),
            ("app-ci-1", "-", "success", "bob,carol")
        ],
        "{history:?}"
    );
    let out = up.cli(d, &["env", "list"]);
    let listed = text(&out.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("production ") && l.contains("app-ci-3")),
        "{listed}"
    );
}

const DEPLOY: &str = r#"name: Deploy
on:
  workflow_dispatch:
    inputs:
      target:
        type: choice
        options: [staging, production]
        required: true
      dry:
        type: boolean
        default: true
      replicas:
        type: number
        default: 2
      note:
        type: string
jobs:
  go:
    runs-on: ubuntu-latest
    steps:
      - run: echo "target=${{ inputs.target }} dry=${{ inputs.dry }} replicas=${{ inputs.replicas }} note=${{ inputs.note }} by $GITHUB_ACTOR via ${{ github.event_name }} on ${{ github.ref }}"
      - if: inputs.dry == false && inputs.replicas == 2
        run: echo "inputs are typed"
      - if: github.event.inputs.dry == 'false' && github.event.inputs.replicas == '2'
        run: echo "event inputs are strings"
"#;

/// `shipway pipeline run` against a real `shipway up`: the typed inputs reach the steps
/// (`inputs` typed, `github.event.inputs` strings), the run's actor is the token's identity, the
/// run's name is printed alone; bad inputs, an unknown workflow and a workflow without
/// `workflow_dispatch` are usage errors (exit 2) saying what is wrong.
#[test]
fn dispatch_with_typed_inputs_runs_the_workflow_as_the_caller() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let work = tempfile::tempdir().unwrap();
    let (url, token) = repo_with(
        &up,
        data.path(),
        work.path(),
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo pushed\n",
    );
    write(work.path(), ".github/workflows/deploy.yml", DEPLOY);
    git_in(work.path(), None, &["add", "-A"]);
    git_in(work.path(), None, &["commit", "-qm", "deploy"]);
    git_in(work.path(), Some(&token), &["push", "-q", &url, "main"]);
    let sha = git_in(work.path(), None, &["rev-parse", "HEAD"]);
    let as_pusher = |args: &[&str]| {
        let mut all = vec!["--token", token.as_str(), "pipeline", "run"];
        all.extend_from_slice(args);
        up.cli(data.path(), &all)
    };

    let out = as_pusher(&[
        "app",
        "deploy.yml",
        "--input",
        "target=production",
        "--input",
        "dry=false",
        "--input",
        "note=a b=c",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "app-deploy-1\n");
    let out = up.cli(
        data.path(),
        &["pipeline", "logs", "app-deploy-1", "--follow"],
    );
    let log = text(&out.stdout);
    assert!(
        log.contains(
            "[go] target=production dry=false replicas=2 note=a b=c by pusher via workflow_dispatch on refs/heads/main\n"
        ),
        "{log}"
    );
    assert!(log.contains("[go] inputs are typed\n"), "{log}");
    assert!(log.contains("[go] event inputs are strings\n"), "{log}");
    let out = up.cli(
        data.path(),
        &["pipeline", "get", "app-deploy-1", "-o", "json"],
    );
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["spec"]["event"], "workflow_dispatch");
    assert_eq!(run["spec"]["actor"], "pusher");
    assert_eq!(run["spec"]["headSha"], sha.as_str());
    assert_eq!(run["status"]["conclusion"], "success");
    assert_eq!(
        run["spec"]["payload"]["inputs"],
        serde_json::json!({"target": "production", "dry": "false", "replicas": "2", "note": "a b=c"})
    );

    // By stem, on an explicit ref, following the run: exit 0 once it succeeded.
    let out = as_pusher(&[
        "app",
        "deploy",
        "--ref",
        "main",
        "--input",
        "target=staging",
        "--watch",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("app-deploy-2\n"), "{shown}");
    assert!(
        shown.contains("[go] target=staging dry=true replicas=2 note= by pusher"),
        "{shown}"
    );

    // Refusals: exit 2 with what is wrong, and no run made.
    for (args, says) in [
        (
            vec!["app", "deploy", "--input", "target=prod"],
            "input 'target': expected a choice: one of staging, production, got 'prod'",
        ),
        (
            vec![
                "app",
                "deploy",
                "--input",
                "target=staging",
                "--input",
                "dry=maybe",
            ],
            "input 'dry': expected a boolean: true or false, got 'maybe'",
        ),
        (
            vec![
                "app",
                "deploy",
                "--input",
                "target=staging",
                "--input",
                "replicas=two",
            ],
            "input 'replicas': expected a number, got 'two'",
        ),
        (
            vec!["app", "deploy"],
            "Required input 'target' not provided (a choice: one of staging, production)",
        ),
        (
            vec![
                "app",
                "deploy",
                "--input",
                "target=staging",
                "--input",
                "colour=red",
            ],
            "Unexpected input 'colour' (declared inputs: target, dry, replicas, note)",
        ),
        (
            vec!["app", "ci.yml"],
            "Workflow does not have 'workflow_dispatch' trigger: .github/workflows/ci.yml runs on push",
        ),
        (
            vec![
                "app",
                "deploy",
                "--ref",
                "nope",
                "--input",
                "target=staging",
            ],
            "No ref found for: nope",
        ),
    ] {
        let out = as_pusher(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "", "{args:?}");
    }
    let out = as_pusher(&["app", "nope.yml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("workflow \"nope.yml\" not found at refs/heads/main"),
        "{}",
        text(&out.stderr)
    );
    let out = up.cli(data.path(), &["pipeline", "list"]);
    let listed = text(&out.stdout);
    assert!(!listed.contains("app-deploy-3"), "{listed}");
    // Nothing failed: a re-run of failed jobs is refused, saying so.
    let out = up.cli(
        data.path(),
        &["pipeline", "rerun", "app-deploy-1", "--failed"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("succeeded: no job failed"),
        "{}",
        text(&out.stderr)
    );
}

/// `shipway up --runner-label`: the labels offered are those given (not the defaults); a job
/// asking for another is queued with the reason `pipeline get` shows, its sibling runs, and
/// `pipeline cancel` ends the run.
#[test]
fn runner_labels_decide_which_jobs_run_and_the_rest_wait_until_cancelled() {
    let data = tempfile::tempdir().unwrap();
    let bad = std::process::Command::new(common::BIN)
        .args(["up", "--runner-label", "a b"])
        .env("SHIPWAY_DATA", data.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("--runner-label"),
        "{}",
        text(&bad.stderr)
    );

    let up = Up::start_with(
        data.path(),
        &["--runner-label", "gpu", "--runner-label", "Linux"],
    );
    let work = tempfile::tempdir().unwrap();
    let (url, token) = repo_with(
        &up,
        data.path(),
        work.path(),
        "on: push\njobs:\n  train:\n    runs-on: [linux, GPU]\n    steps:\n      - run: echo trained\n  lint:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo never\n",
    );
    git_in(work.path(), Some(&token), &["push", "-q", &url, "main"]);
    wait_for(60, "train done and lint queued with the reason", || {
        let shown = text(&up.cli(data.path(), &["pipeline", "get", "app-ci-1"]).stdout);
        shown
            .lines()
            .any(|l| l.starts_with("train ") && l.contains("success"))
            && shown.lines().any(|l| {
                l.starts_with("lint ")
                    && l.contains("queued")
                    && l.contains(
                        "No runner offers the label ubuntu-latest (this server offers: gpu, Linux;",
                    )
            })
    });
    let out = up.cli(data.path(), &["pipeline", "cancel", "app-ci-1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_for(60, "the run cancelled", || {
        text(&up.cli(data.path(), &["pipeline", "get", "app-ci-1"]).stdout)
            .contains("Status:     cancelled\n")
    });
    let log = logs(&up, data.path(), "app-ci-1");
    assert!(log.contains("[train] trained\n"), "{log}");
    assert!(
        log.contains("[lint] cancelled while waiting for a runner\n"),
        "{log}"
    );
    assert!(!log.contains("never"), "{log}");
}

/// Every byte of every file under `dir`, as text to grep.
fn everything_under(dir: &Path) -> String {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.extend(bytes);
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Files named `name` under `dir`.
fn find_files(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                todo.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                found.push(path);
            }
        }
    }
    found
}

/// A secret set through the CLI from stdin reaches the step (the file it wrote holds it), and
/// appears nowhere else: not in any API response (secret list, run, logs, events, watch), not in
/// the log (`***`), not in any file of the data directory (database, WAL, key, runs). A Kubernetes
/// Secret applied with stringData reads back as Kubernetes shows it and is sealed on disk too.
#[test]
fn a_secret_set_from_stdin_reaches_the_step_masked_and_is_nowhere_at_rest_or_in_responses() {
    use base64::Engine as _;
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let plain = "e2e-secret-5a7c9e1b";
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let out = up.cli_with_stdin(
        data.path(),
        &["secret", "set", "deploy_token", "--repo", "app"],
        &format!("{plain}\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "secret DEPLOY_TOKEN set in repository app\n"
    );
    let out = up.cli_with_stdin(data.path(), &["secret", "set", "EMPTY"], "\n");
    assert_eq!(out.status.code(), Some(2), "an empty value is refused");
    let out = up.cli(data.path(), &["var", "set", "region", "eu-west-1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let work = tempfile::tempdir().unwrap();
    let (url, token) = repo_with(
        &up,
        data.path(),
        work.path(),
        "on: push\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n    steps:\n      - run: printf '%s' '${{ secrets.DEPLOY_TOKEN }}' > seen-token.txt; echo \"token ${{ secrets.DEPLOY_TOKEN }} in ${{ vars.REGION }}\"\n",
    );
    git_in(work.path(), Some(&token), &["push", "-q", &url, "main"]);
    let out = up.cli(data.path(), &["pipeline", "logs", "app-ci-1", "--follow"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let log = text(&out.stdout);
    assert!(log.contains("[deploy] token *** in eu-west-1\n"), "{log}");
    assert!(log.ends_with("[deploy] job success\n"), "{log}");

    // The step saw the value: the file it wrote in its workspace holds it, exactly (the
    // trailing newline from stdin stripped).
    let seen = find_files(&data.path().join("runs"), "seen-token.txt");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(std::fs::read_to_string(&seen[0]).unwrap(), plain);
    // That file is the step's own doing; everything else must not hold the value.
    std::fs::remove_file(&seen[0]).unwrap();

    let k8s_plain = "e2e-k8s-secret-3d4f6a8c";
    let out = up.cli_with_stdin(
        data.path(),
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {k8s_plain}\n"
        ),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = up.cli(data.path(), &["get", "secret", "db", "-o", "json"]);
    let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(secret["data"]["password"], b64(k8s_plain).as_str());

    // Every API response a client could get about it.
    let admin = std::fs::read_to_string(data.path().join("admin.token")).unwrap();
    let curl = |path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "3", "-H"])
            .arg(format!("Authorization: Bearer {}", admin.trim()))
            .arg(format!("{}{path}", up.server))
            .output()
            .unwrap();
        let body = text(&out.stdout);
        assert!(!body.is_empty(), "{path} answered nothing");
        body
    };
    let mut responses = vec![
        curl("/api/v1/secrets"),
        curl("/api/v1/secrets?repo=app"),
        curl("/api/v1/resources/workflowruns/app-ci-1?namespace=default"),
        curl("/api/v1/runs/default/app-ci-1/logs"),
        curl("/api/v1/events"),
        curl("/api/v1/resources/secrets"),
        // A watch from the start replays every retained change, then is cut by --max-time.
        curl("/api/v1/watch?resourceVersion=0"),
    ];
    for args in [
        &["secret", "list", "-o", "json"][..],
        &["secret", "list"],
        &["pipeline", "get", "app-ci-1", "-o", "json"],
        &["pipeline", "logs", "app-ci-1"],
        &["events"],
    ] {
        let out = up.cli(data.path(), args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        responses.push(text(&out.stdout));
    }
    assert!(responses[0].contains("DEPLOY_TOKEN"), "{}", responses[0]);
    assert!(responses[4].contains("secret DEPLOY_TOKEN created in repository app"));
    assert!(
        responses[6].contains("app-ci-1"),
        "the watch replayed the run"
    );
    for (i, body) in responses.iter().enumerate() {
        assert!(
            !body.contains(plain),
            "response {i} holds the secret: {body}"
        );
        assert!(!body.contains(&b64(plain)), "response {i}: {body}");
        assert!(!body.contains(k8s_plain), "response {i}: {body}");
    }
    let at_rest = everything_under(data.path());
    assert!(
        at_rest.contains("DEPLOY_TOKEN"),
        "the grep reads the database"
    );
    for needle in [
        plain.to_string(),
        b64(plain),
        k8s_plain.to_string(),
        b64(k8s_plain),
    ] {
        assert!(
            !at_rest.contains(&needle),
            "{needle} found in the data directory"
        );
    }
    let key = data.path().join("secret.key");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// A secret scoped to repository `app` and environment `production` reaches only the job bound
/// to `production`: a job without an environment and a job bound to `staging` see it empty, as
/// GitHub gives an environment secret to no other job. The stored log shows it as `***`.
#[test]
fn an_environment_secret_reaches_only_the_job_of_that_environment_masked_in_the_stored_log() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let plain = "e2e-prod-only-8b2d4f6e";
    let out = up.cli_with_stdin(
        data.path(),
        &[
            "secret",
            "set",
            "PROD_KEY",
            "--repo",
            "app",
            "--env",
            "production",
        ],
        &format!("{plain}\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for name in ["production", "staging"] {
        let env = format!(
            "apiVersion: shipway.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {name}}}\nspec: {{}}\n"
        );
        let out = up.cli_with_stdin(data.path(), &["apply", "-f", "-"], &env);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let work = tempfile::tempdir().unwrap();
    let step = |job: &str| {
        format!(
            "      - run: printf '%s' '${{{{ secrets.PROD_KEY }}}}' > {job}-saw.txt; echo \"{job} key [${{{{ secrets.PROD_KEY }}}}]\"\n"
        )
    };
    let workflow = format!(
        "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n{}  stage:\n    runs-on: ubuntu-latest\n    environment: staging\n    steps:\n{}  deploy:\n    runs-on: ubuntu-latest\n    environment: production\n    steps:\n{}",
        step("build"),
        step("stage"),
        step("deploy")
    );
    let (url, token) = repo_with(&up, data.path(), work.path(), &workflow);
    git_in(work.path(), Some(&token), &["push", "-q", &url, "main"]);
    let out = up.cli(data.path(), &["pipeline", "logs", "app-ci-1", "--follow"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let log = text(&out.stdout);
    assert!(log.contains("[build] build key []\n"), "{log}");
    assert!(log.contains("[stage] stage key []\n"), "{log}");
    assert!(log.contains("[deploy] deploy key [***]\n"), "{log}");
    assert!(!log.contains(plain), "{log}");

    // What each job saw, from the files its step wrote.
    let runs = data.path().join("runs");
    for (job, want) in [("build", ""), ("stage", ""), ("deploy", plain)] {
        let seen = find_files(&runs, &format!("{job}-saw.txt"));
        assert_eq!(seen.len(), 1, "{job}: {seen:?}");
        assert_eq!(std::fs::read_to_string(&seen[0]).unwrap(), want, "{job}");
        std::fs::remove_file(&seen[0]).unwrap();
    }
    // The stored log, read after the run through the API and from disk, is masked too.
    let stored = logs(&up, data.path(), "app-ci-1");
    assert!(stored.contains("[deploy] deploy key [***]\n"), "{stored}");
    let at_rest = everything_under(data.path());
    assert!(
        at_rest.contains("deploy key [***]"),
        "the grep reads the stored log"
    );
    assert!(
        !at_rest.contains(plain),
        "the value is in the data directory"
    );
}

/// Steps get `SHIPWAY_SERVER` and a `SHIPWAY_TOKEN` of their run: the CLI inside a job works
/// with them as the deployer `run:NAME` (its writes attributed to the run), the token is masked,
/// it cannot create tokens nor approve a deployment, and it stops working when the run ends.
#[test]
fn steps_call_the_server_with_a_masked_deployer_token_of_their_run_that_dies_with_it() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let up = Up::start(d);
    let env = "apiVersion: shipway.dev/v1alpha1\nkind: Environment\nmetadata: {name: production}\nspec:\n  requiredReviewers: [{role: deployer}]\n";
    let out = up.cli_with_stdin(d, &["apply", "-f", "-"], env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let bin = env!("CARGO_BIN_EXE_shipway");
    let workflow = format!(
        r#"on: push
jobs:
  use:
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo "server $SHIPWAY_SERVER token $SHIPWAY_TOKEN"
          printf '%s' "$SHIPWAY_TOKEN" > run-token.txt
      - run: |
          printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: from-run}}\ndata: {{a: b}}\n' | {bin} apply -f -
      - run: |
          {bin} token create sneaky --role admin || echo "token create refused"
  deploy:
    needs: use
    runs-on: ubuntu-latest
    environment: production
    steps:
      - run: echo deployed
"#
    );
    let work = tempfile::tempdir().unwrap();
    let (url, token) = repo_with(&up, d, work.path(), &workflow);
    git_in(work.path(), Some(&token), &["push", "-q", &url, "main"]);
    wait_for(60, "deploy waiting for review", || {
        get(&up, d, "app-ci-1").contains("Waiting for review: production")
    });
    let log = logs(&up, d, "app-ci-1");
    assert!(
        log.contains(&format!("[use] server {} token ***\n", up.server)),
        "{log}"
    );
    assert!(log.contains("configmap/from-run created"), "{log}");
    assert!(log.contains("[use] token create refused\n"), "{log}");
    let saved = find_files(&d.join("runs"), "run-token.txt");
    assert_eq!(saved.len(), 1, "{saved:?}");
    let run_token = std::fs::read_to_string(&saved[0]).unwrap();
    assert!(run_token.starts_with("shipway_"), "{run_token}");
    assert!(!log.contains(&run_token));

    // The ConfigMap was written by the run, and the audit trail says so.
    let out = up.cli(d, &["events", "--for", "configmap/from-run", "-o", "json"]);
    let events = text(&out.stdout);
    assert!(events.contains("\"actor\": \"run:app-ci-1\""), "{events}");
    // A run's token reviews nothing: not its own deployment.
    let out = up.cli(
        d,
        &[
            "--token",
            &run_token,
            "pipeline",
            "approve",
            "app-ci-1",
            "--env",
            "production",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is a workflow run's token: reviews are given by people"),
        "{}",
        text(&out.stderr)
    );
    let bob = user_token(&up, d, "bob", "deployer");
    approve(&up, d, &bob, "app-ci-1", "production");
    let out = up.cli(d, &["pipeline", "logs", "app-ci-1", "--follow"]);
    assert!(text(&out.stdout).contains("[deploy] deployed\n"));
    // The run ended: its token is void.
    let out = up.cli(d, &["--token", &run_token, "get", "configmaps"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("missing or invalid bearer token"),
        "{}",
        text(&out.stderr)
    );
}

/// A `SHIPWAY_SECRET_KEY` that is not base64 of 32 bytes stops `shipway up` with a message
/// naming the variable, before anything is opened.
#[test]
fn a_bad_secret_key_in_the_environment_is_a_clear_startup_error() {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipway"))
        .args(["up", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("SHIPWAY_SECRET_KEY", "dG9vLXNob3J0")
        .env_remove("SHIPWAY_DATABASE")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(err.contains("SHIPWAY_SECRET_KEY"), "{err}");
    assert!(err.contains("decodes to 9 bytes, a key is 32"), "{err}");
    assert!(!data.path().join("secret.key").exists());
}

/// Build, gate, promote: `shipway/image` publishes a directory of the checkout, its digest goes
/// through the job outputs to a job behind a protected environment, and after the approval
/// `shipway/promote` commits the digest into the production overlay of the hosted config
/// repository (kustomize's `edit set image`, the file's comments kept), pushed with the run's
/// token: the commit names the run, the source commit, the digest and the approver, and the
/// run's status records the image and the promotion.
#[test]
fn a_run_publishes_an_image_and_after_approval_promotes_its_digest_into_the_overlay() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let d = data.path();
    let alice = user_token(&up, d, "alice", "deployer");
    let bob = user_token(&up, d, "bob", "deployer");
    let env = "apiVersion: shipway.dev/v1alpha1\nkind: Environment\nmetadata: {name: production}\nspec:\n  requiredReviewers: [{role: deployer}]\n  requiredApprovals: 1\n";
    let out = up.cli_with_stdin(d, &["apply", "-f", "-"], env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // The config repository: a base and a production overlay.
    let out = up.cli(d, &["repo", "create", "deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let deploy_url = text(&out.stdout).trim().to_string();
    let config = tempfile::tempdir().unwrap();
    let c = config.path();
    write(
        c,
        "base/kustomization.yaml",
        "resources:\n- deployment.yaml\n",
    );
    write(
        c,
        "base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers: [{name: web, image: web}]\n",
    );
    let overlay =
        "# production: what runs for users\nresources:\n- ../../base\nnamePrefix: prod-\n";
    write(c, "overlays/production/kustomization.yaml", overlay);
    write(
        c,
        "overlays/staging/kustomization.yaml",
        "resources:\n- ../../base\n",
    );
    git_in(c, None, &["init", "-q", "-b", "main"]);
    git_in(c, None, &["add", "-A"]);
    git_in(c, None, &["commit", "-qm", "config"]);
    git_in(c, Some(&alice), &["push", "-q", &deploy_url, "main"]);

    // The application: a site to publish and the workflow.
    let out = up.cli(d, &["repo", "create", "app"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let app_url = text(&out.stdout).trim().to_string();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write(w, "site/index.html", "<h1>hello</h1>\n");
    let bin = env!("CARGO_BIN_EXE_shipway");
    write(
        w,
        ".github/workflows/ci.yml",
        &format!(
            r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    outputs:
      digest: ${{{{ steps.img.outputs.digest }}}}
    steps:
      - uses: actions/checkout@v4
      - id: img
        uses: shipway/image@v1
        with:
          name: web
          path: site
          entrypoint: python3 -m http.server
      - run: |
          echo "built ${{{{ steps.img.outputs.image }}}} ${{{{ steps.img.outputs.digest }}}}"
  deploy:
    needs: build
    runs-on: ubuntu-latest
    environment: production
    steps:
      - id: promote
        uses: shipway/promote@v1
        with:
          repo: deploy
          path: overlays/production
          image: web
          digest: ${{{{ needs.build.outputs.digest }}}}
      - run: |
          echo "promoted as ${{{{ steps.promote.outputs.commit }}}} changed=${{{{ steps.promote.outputs.changed }}}}"
      - run: |
          {bin} promote deploy overlays/staging web --tag "$GITHUB_SHA"
"#
        ),
    );
    git_in(w, None, &["init", "-q", "-b", "main"]);
    git_in(w, None, &["add", "-A"]);
    git_in(w, None, &["commit", "-qm", "app"]);
    let sha = git_in(w, None, &["rev-parse", "HEAD"]);
    git_in(w, Some(&alice), &["push", "-q", &app_url, "main"]);

    wait_for(60, "deploy waiting for review", || {
        get(&up, d, "app-ci-1").contains("Waiting for review: production")
    });
    // Built and published before the gate; nothing promoted yet.
    let out = up.cli(d, &["image", "list", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let image = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"] == format!("web:{sha}"))
        .unwrap_or_else(|| panic!("web:{sha} not published: {listed:#}"));
    let digest = image["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(
        logs(&up, d, "app-ci-1").contains(&format!("built web:{sha} {digest}\n")),
        "{}",
        logs(&up, d, "app-ci-1")
    );
    let before = git_in(c, Some(&alice), &["ls-remote", &deploy_url, "main"]);

    approve(&up, d, &bob, "app-ci-1", "production");
    wait_for(60, "the run succeeded", || {
        get(&up, d, "app-ci-1").contains("Status:     success\n")
    });

    // The promotion is one commit on top of the config repository's main, and the CLI's
    // promotion of staging inside the same job one more, both by the run.
    git_in(c, Some(&alice), &["pull", "-q", &deploy_url, "main"]);
    let head = git_in(c, None, &["rev-parse", "HEAD~1"]);
    assert_eq!(
        before.split_whitespace().next(),
        Some(git_in(c, None, &["rev-parse", "HEAD~2"]).as_str())
    );
    assert_eq!(
        git_in(c, None, &["log", "-2", "--format=%an <%ae>"]),
        "run:app-ci-1 <app-ci-1@runs.shipway.invalid>\nrun:app-ci-1 <app-ci-1@runs.shipway.invalid>"
    );
    assert_eq!(
        git_in(c, None, &["log", "-1", "--format=%B"]),
        format!(
            "Promote web:{sha} in overlays/staging\n\nShipway-Run: app-ci-1\nSource-Commit: {sha}\nImage: web:{sha}\nApproved-by: bob (production)"
        )
    );
    assert_eq!(
        git_in(c, None, &["log", "-1", "--format=%B", "HEAD~1"]),
        format!(
            "Promote web@{digest} in overlays/production\n\nShipway-Run: app-ci-1\nSource-Commit: {sha}\nImage: web@{digest}\nDigest: {digest}\nApproved-by: bob (production)"
        )
    );
    assert_eq!(
        git_in(c, None, &["diff", "--name-only", "HEAD~2", "HEAD~1"]),
        "overlays/production/kustomization.yaml"
    );
    assert_eq!(
        std::fs::read_to_string(c.join("overlays/production/kustomization.yaml")).unwrap(),
        // As `kustomize edit set image` writes it: the original fields first, then the missing
        // ones in kustomize's order, apiVersion and kind filled in.
        format!(
            "{overlay}apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n- digest: {digest}\n  name: web\n"
        )
    );
    let log = logs(&up, d, "app-ci-1");
    assert!(
        log.contains(&format!("promoted as {head} changed=true\n")),
        "{log}"
    );

    // The run's status records both, as JSON scripts read it.
    let out = up.cli(d, &["get", "workflowrun", "app-ci-1", "-o", "json"]);
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        run["status"]["images"],
        serde_json::json!([{"job": "build", "name": "web", "tag": sha, "digest": digest}]),
        "{run:#}"
    );
    assert_eq!(
        run["status"]["promotions"],
        serde_json::json!([{"job": "deploy", "repository": "deploy", "path": "overlays/production", "branch": "main", "commit": head, "image": format!("web@{digest}")}]),
        "{run:#}"
    );

    // `shipway env` says which digest runs in production, from which run, approved by whom.
    let out = up.cli(d, &["env", "get", "production"]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!("Image:        web@{digest}\n")),
        "{shown}"
    );
    assert!(shown.contains("Approved by:  bob\n"), "{shown}");
    let out = up.cli(d, &["env", "history", "production"]);
    let history = text(&out.stdout);
    let short = format!("web@{}", &digest[..19]);
    assert!(
        history
            .lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().take(5).eq([
                "app-ci-1",
                "deploy",
                "main",
                &sha[..7],
                short.as_str()
            ])),
        "{history}"
    );

    // From a terminal: the token's user is the author.
    let out = up.cli(
        d,
        &[
            "--token",
            &alice,
            "promote",
            "deploy",
            "overlays/staging",
            "web",
            "--tag",
            "v9",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    git_in(c, Some(&alice), &["pull", "-q", &deploy_url, "main"]);
    let cli_commit = git_in(c, None, &["rev-parse", "HEAD"]);
    assert_eq!(
        text(&out.stdout),
        format!("promoted web:v9 in overlays/staging/kustomization.yaml on main: {cli_commit}\n")
    );
    assert_eq!(
        git_in(c, None, &["log", "-1", "--format=%an <%ae>%n%B"]),
        "alice <alice@users.shipway.invalid>\nPromote web:v9 in overlays/staging\n\nImage: web:v9"
    );
    assert!(
        std::fs::read_to_string(c.join("overlays/staging/kustomization.yaml"))
            .unwrap()
            .ends_with("images:\n- name: web\n  newTag: v9\n")
    );
    // Neither a tag nor a digest: a usage error before anything is fetched.
    let out = up.cli(d, &["promote", "deploy", "overlays/staging", "web"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
