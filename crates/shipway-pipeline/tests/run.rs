//! Execution semantics with real processes (bash): DAG order, skips, status functions,
//! continue-on-error, outputs, env precedence, matrix, fail-fast, timeouts, masking, composite
//! actions, reusable workflows, cancellation, and the built-in actions.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde_json::json;
use shipway_pipeline::exec::{
    Collect, Executor, Gate, GateDecision, Grant, Report, RunEvent, RunObserver, RunSpec, Status,
    Stream, run_workflow,
};
use shipway_pipeline::load::{MemFs, load, load_from};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

struct Run {
    report: Report,
    logs: Vec<String>,
    events: Vec<RunEvent>,
    /// Every file left under the run directory after the run: (path relative to it, contents).
    files: Vec<(String, String)>,
}

/// The files under `dir`, recursively, read lossily.
fn files_under(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                out.push((
                    rel.display().to_string(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
            }
        }
    }
    out.sort();
    out
}

impl Run {
    fn job(&self, id: &str) -> &shipway_pipeline::exec::JobReport {
        self.report
            .jobs
            .iter()
            .find(|j| j.id == id)
            .unwrap_or_else(|| panic!("no job {id} in {:#?}", self.report))
    }
    fn result(&self, id: &str) -> &'static str {
        self.job(id).result.as_str()
    }
    fn steps(&self, id: &str) -> Vec<String> {
        self.job(id)
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{}:{}/{}",
                    s.name,
                    s.outcome.as_str(),
                    s.conclusion.as_str()
                )
            })
            .collect()
    }
    fn output(&self, id: &str, key: &str) -> String {
        self.job(id).outputs.get(key).cloned().unwrap_or_default()
    }
    fn logged(&self, text: &str) -> bool {
        self.logs.iter().any(|l| l.contains(text))
    }
}

#[derive(Default)]
struct Opts {
    files: Vec<(&'static str, &'static str)>,
    secrets: Vec<(&'static str, &'static str)>,
    cancel_after: Option<Duration>,
    parallel: Option<usize>,
    gate: Option<Arc<dyn Gate>>,
    /// Hears every event as it happens, besides the collector.
    observer: Option<Arc<dyn RunObserver>>,
    cancel: Option<CancellationToken>,
}

async fn run_with(yaml: &str, opts: Opts) -> Run {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = root.path().join("repo");
    std::fs::create_dir_all(repo.join(".github/workflows")).expect("mkdir");
    std::fs::write(repo.join(".github/workflows/w.yml"), yaml).expect("write");
    for (path, text) in &opts.files {
        let p = repo.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    let bundle = load(&repo, ".github/workflows/w.yml");
    let blocking: Vec<String> = bundle
        .blocking(Default::default())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(blocking.is_empty(), "workflow problems: {blocking:#?}");
    let sink = Arc::new(Collect::default());
    let cancel = opts.cancel.clone().unwrap_or_default();
    let spec = RunSpec {
        repository: "octo/repo".into(),
        actor: "tester".into(),
        run_id: 7,
        secrets: opts
            .secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        vars: IndexMap::from([("COLOR".to_string(), "blue".to_string())]),
        ..RunSpec::default()
    };
    let exec = Executor::new(
        repo.clone(),
        root.path().join("run"),
        root.path().join("cache"),
    )
    .parallel(opts.parallel.unwrap_or(4))
    .base_env(
        std::env::vars()
            .filter(|(k, _)| k == "PATH" || k == "HOME")
            .collect(),
    )
    .observer(match opts.observer.clone() {
        Some(o) => Arc::new(Both(sink.clone(), o)),
        None => sink.clone(),
    })
    .cancel(cancel.clone());
    let exec = match opts.gate.clone() {
        Some(g) => exec.gate(g),
        None => exec,
    };
    if let Some(after) = opts.cancel_after {
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            c.cancel();
        });
    }
    let report = run_workflow(&bundle, spec, exec).await;
    let logs = sink.lines();
    let events = sink.events();
    let files = files_under(&root.path().join("run"));
    Run {
        report,
        logs,
        events,
        files,
    }
}

async fn run(yaml: &str) -> Run {
    run_with(yaml, Opts::default()).await
}

/// Two observers in one.
struct Both(Arc<Collect>, Arc<dyn RunObserver>);

impl RunObserver for Both {
    fn event(&self, e: &RunEvent) {
        self.0.event(e);
        self.1.event(e);
    }
}

/// Sends every event to the test as it happens.
struct Forward(mpsc::UnboundedSender<RunEvent>);

impl RunObserver for Forward {
    fn event(&self, e: &RunEvent) {
        let _ = self.0.send(e.clone());
    }
}

/// Starts a run in its own task, with every event sent to the test as it happens.
fn spawn_run(
    yaml: String,
    opts: Opts,
) -> (
    tokio::task::JoinHandle<Run>,
    mpsc::UnboundedReceiver<RunEvent>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let opts = Opts {
        observer: Some(Arc::new(Forward(tx))),
        ..opts
    };
    (tokio::spawn(async move { run_with(&yaml, opts).await }), rx)
}

/// Waits for the first event that `want` accepts (the run's end without one fails the test).
async fn until(events: &mut mpsc::UnboundedReceiver<RunEvent>, want: impl Fn(&RunEvent) -> bool) {
    loop {
        match events.recv().await {
            Some(e) if want(&e) => return,
            Some(RunEvent::RunFinished { .. }) | None => panic!("the run ended first"),
            Some(_) => {}
        }
    }
}

fn finished(e: &RunEvent, name: &str) -> bool {
    matches!(e, RunEvent::JobFinished { job, .. } if job == name)
}

/// `until [ -e DIR/NAME ]`: a step that waits for a file the test writes.
fn wait_for(dir: &std::path::Path, name: &str) -> String {
    format!(
        "until [ -e '{}' ]; do sleep 0.01; done",
        dir.join(name).display()
    )
}

fn touch(dir: &std::path::Path, name: &str) {
    std::fs::write(dir.join(name), "").expect("write a gate file");
}

/// A request to the test's gate: the job, the environment and where the decision goes.
type GateRequest = (String, String, oneshot::Sender<GateDecision>);

/// A gate the test answers: each request arrives on a channel with the sender of its decision.
struct TestGate(mpsc::UnboundedSender<GateRequest>);

impl Gate for TestGate {
    fn admit<'a>(
        &'a self,
        job: &'a str,
        environment: &'a str,
    ) -> Pin<Box<dyn Future<Output = GateDecision> + Send + 'a>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            let _ = self.0.send((job.to_string(), environment.to_string(), tx));
            rx.await.unwrap_or(GateDecision::Reject {
                reason: "the test dropped the request".into(),
            })
        })
    }
}

#[tokio::test]
async fn dag_runs_each_job_when_its_own_needs_are_done() {
    // `slow` runs until the test sees `b` finish: `b` needs only `a`, so it must not wait for
    // `slow`. A scheduler that waited would leave `slow` to its timeout (a failure) first.
    let gates = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        r#"
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    outputs:
      x: ${{{{ steps.s.outputs.x }}}}
    steps:
      - id: s
        run: echo "x=from-a" >> "$GITHUB_OUTPUT"
  slow:
    runs-on: ubuntu-latest
    timeout-minutes: 1
    steps:
      - run: {wait}
  b:
    needs: a
    runs-on: ubuntu-latest
    outputs:
      got: ${{{{ steps.r.outputs.got }}}}
    steps:
      - id: r
        run: echo "got=${{{{ needs.a.outputs.x }}}} ${{{{ needs.a.result }}}}" >> "$GITHUB_OUTPUT"
  c:
    needs: [b, slow]
    runs-on: ubuntu-latest
    steps:
      - run: 'true'
"#,
        wait = wait_for(gates.path(), "go")
    );
    let (run, mut events) = spawn_run(yaml, Opts::default());
    until(&mut events, |e| finished(e, "b")).await;
    touch(gates.path(), "go");
    let r = run.await.expect("the run");
    assert_eq!(r.report.result, Status::Success, "{:#?}", r.logs);
    assert_eq!(r.output("b", "got"), "from-a success");
    assert_eq!(r.result("slow"), "success");
    assert_eq!(r.result("c"), "success");
}

#[tokio::test]
async fn failures_skip_dependents_unless_their_if_says_otherwise() {
    let r = run(r#"
on: push
jobs:
  a:
    runs-on: x
    steps: [{run: exit 3}]
  b:
    needs: a
    runs-on: x
    steps: [{run: 'true'}]
  c:
    needs: b
    if: always()
    runs-on: x
    steps: [{run: 'echo "b was ${{ needs.b.result }}"'}]
  d:
    needs: a
    if: failure()
    runs-on: x
    steps: [{run: 'true'}]
  e:
    needs: c
    runs-on: x
    steps: [{run: 'true'}]
"#)
    .await;
    assert_eq!(r.result("a"), "failure");
    assert_eq!(r.result("b"), "skipped");
    assert_eq!(r.result("c"), "success");
    assert!(r.logged("b was skipped"));
    assert_eq!(r.result("d"), "success");
    // e's chain includes the failed a: the implicit success() is false.
    assert_eq!(r.result("e"), "skipped");
    assert_eq!(r.report.result, Status::Failure);
}

#[tokio::test]
async fn step_status_functions_and_continue_on_error() {
    let r = run(r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - id: soft
        name: soft
        run: exit 1
        continue-on-error: true
      - name: after-soft
        run: echo "soft ${{ steps.soft.outcome }} ${{ steps.soft.conclusion }}"
      - name: hard
        run: exit 2
      - name: skipped
        run: echo never
      - name: on-failure
        if: failure()
        run: echo "job is ${{ job.status }}"
      - name: always
        if: always()
        run: 'true'
      - name: on-success
        if: success()
        run: 'true'
      - name: on-cancel
        if: cancelled()
        run: 'true'
"#)
    .await;
    assert_eq!(
        r.steps("j"),
        [
            "soft:failure/success",
            "after-soft:success/success",
            "hard:failure/failure",
            "skipped:skipped/skipped",
            "on-failure:success/success",
            "always:success/success",
            "on-success:skipped/skipped",
            "on-cancel:skipped/skipped",
        ]
    );
    assert!(r.logged("soft failure success"));
    assert!(r.logged("job is failure"));
    assert_eq!(r.result("j"), "failure");
}

#[tokio::test]
async fn env_precedence_and_env_files() {
    let r = run(r#"
on: push
env:
  A: workflow
  B: workflow
  C: workflow
jobs:
  j:
    runs-on: x
    env:
      B: job
      C: job
    steps:
      - env:
          C: step
        run: echo "1 $A $B $C ${{ env.C }} ${{ vars.COLOR }}"
      - run: |
          echo "D=from-env-file" >> "$GITHUB_ENV"
          {
            echo "M<<EOF"
            echo "line one"
            echo "line two"
            echo "EOF"
          } >> "$GITHUB_ENV"
          mkdir -p "$RUNNER_TEMP/bin" && printf '#!/bin/sh\necho tool-ran\n' > "$RUNNER_TEMP/bin/mytool" && chmod +x "$RUNNER_TEMP/bin/mytool"
          echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
      - run: |
          echo "2 $D ${{ env.D }}"
          echo "$M" | tail -1
          mytool
          echo "vars $CI $GITHUB_REF_NAME $GITHUB_EVENT_NAME $GITHUB_JOB $RUNNER_OS"
          test -f "$GITHUB_EVENT_PATH"
          test "$GITHUB_WORKSPACE" = "$PWD"
"#)
    .await;
    assert_eq!(r.result("j"), "success", "{:#?}", r.logs);
    assert!(r.logged("1 workflow job step step blue"));
    assert!(r.logged("2 from-env-file from-env-file"));
    assert!(r.logged("] line two"));
    assert!(r.logged("tool-ran"));
    assert!(r.logged("vars true main push j Linux"));
}

#[tokio::test]
async fn matrix_include_exclude_and_names() {
    let r = run(r#"
on: push
jobs:
  m:
    runs-on: x
    strategy:
      matrix:
        os: [linux, mac]
        v: [1, 2]
        exclude:
          - os: mac
            v: 1
        include:
          - os: linux
            extra: yes
          - os: bsd
            v: 9
    steps:
      - run: echo "combo ${{ matrix.os }}-${{ matrix.v }}-${{ matrix.extra }} ${{ strategy.job-index }}/${{ strategy.job-total }}"
"#)
    .await;
    let names: Vec<&str> = r.report.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "m (linux, 1, yes)",
            "m (linux, 2, yes)",
            "m (mac, 2)",
            "m (bsd, 9)"
        ]
    );
    assert!(r.logged("combo linux-1-yes 0/4"));
    assert!(r.logged("combo bsd-9- 3/4"));
    assert_eq!(
        r.report.jobs[2].matrix,
        Some(
            json!({"os": "mac", "v": 2})
                .as_object()
                .cloned()
                .unwrap_or_default()
        )
    );
}

#[tokio::test]
async fn fail_fast_cancels_the_other_instances() {
    // `fail` fails once `slow` runs; `slow` runs until the test says go. With fail-fast the
    // failure cancels `slow` (no go is ever written; a missed cancel ends in the job's timeout,
    // a failure); without it `slow` finishes when the test has seen `fail` end.
    let gates = tempfile::tempdir().expect("tempdir");
    let running = gates.path().join("slow-running");
    let yaml = |ff: bool| {
        format!(
            r#"
on: push
jobs:
  m:
    runs-on: x
    timeout-minutes: 1
    strategy:
      fail-fast: {ff}
      matrix:
        n: [fail, slow]
    steps:
      - run: |
          if [ "${{{{ matrix.n }}}}" = fail ]; then {wait_running}; exit 1; fi
          touch '{running}'
          {wait_go}
"#,
            wait_running = wait_for(gates.path(), "slow-running"),
            running = running.display(),
            wait_go = wait_for(gates.path(), "go"),
        )
    };
    let r = run(&yaml(true)).await;
    let results: Vec<&str> = r.report.jobs.iter().map(|j| j.result.as_str()).collect();
    assert_eq!(results, ["failure", "cancelled"], "{:#?}", r.logs);
    std::fs::remove_file(&running).expect("slow ran");
    let (run, mut events) = spawn_run(yaml(false), Opts::default());
    until(&mut events, |e| finished(e, "m (fail)")).await;
    touch(gates.path(), "go");
    let r = run.await.expect("the run");
    let results: Vec<&str> = r.report.jobs.iter().map(|j| j.result.as_str()).collect();
    assert_eq!(results, ["failure", "success"], "{:#?}", r.logs);
}

#[tokio::test]
async fn step_timeout_kills_the_process_group() {
    // The child's output goes elsewhere and the shell waits in a builtin, so nothing holds the
    // step's pipes but the shell: a kill of the shell alone would end the step and leave the
    // child running; only a kill of the whole group ends it.
    let gates = tempfile::tempdir().expect("tempdir");
    let pid_file = gates.path().join("child.pid");
    let r = run(&format!(
        r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - name: sleepy
        timeout-minutes: 0.01
        run: sleep 300 >/dev/null 2>&1 & echo $! > '{}'; wait
      - name: cleanup
        if: always()
        run: echo cleanup-ran
"#,
        pid_file.display()
    ))
    .await;
    assert_eq!(
        r.steps("j"),
        ["sleepy:failure/failure", "cleanup:success/success"]
    );
    assert!(r.logged("cleanup-ran"));
    let pid = std::fs::read_to_string(&pid_file).expect("the child's pid");
    let stat = format!("/proc/{}/stat", pid.trim());
    // SIGKILL was sent before the run ended; the process is gone once the kernel has run it
    // down (no /proc entry, or a zombie waiting for its new parent to reap it).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive = std::fs::read_to_string(&stat).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        });
        if !alive {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the step's child {} is still running",
            pid.trim()
        );
        tokio::time::sleep(Duration::from_millis(10)).await; // the poll interval of /proc
    }
}

#[tokio::test]
async fn job_timeout_fails_the_job_and_runs_always_steps() {
    let started = Instant::now();
    let r = run(r#"
on: push
jobs:
  j:
    runs-on: x
    timeout-minutes: 0.01
    steps:
      - name: long
        run: sleep 30
      - name: next
        run: echo next
      - name: always
        if: always()
        run: echo always-ran
"#)
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.result("j"), "failure");
    assert_eq!(r.steps("j")[1], "next:skipped/skipped");
    assert!(r.logged("always-ran"));
}

#[tokio::test]
async fn secrets_and_add_mask_are_masked_everywhere() {
    let r = run_with(
        r#"
on: push
jobs:
  j:
    runs-on: x
    outputs:
      leak: ${{ steps.s.outputs.v }}
      fine: ${{ steps.s.outputs.w }}
    steps:
      - id: s
        name: deploy with ${{ secrets.TOKEN }}
        env:
          TOKEN: ${{ secrets.TOKEN }}
          MULTI: ${{ secrets.MULTI }}
        run: |
          echo "token is $TOKEN"
          echo "second line: $(echo "$MULTI" | tail -1)"
          echo "::add-mask::dynamic-value"
          echo "then dynamic-value appears"
          echo "v=$TOKEN" >> "$GITHUB_OUTPUT"
          echo "w=ok" >> "$GITHUB_OUTPUT"
          echo "to stderr $TOKEN" >&2
"#,
        Opts {
            secrets: vec![
                ("TOKEN", "s3cr3t-value"),
                ("MULTI", "first-part\nsecond-part"),
            ],
            ..Opts::default()
        },
    )
    .await;
    assert_eq!(r.result("j"), "success", "{:#?}", r.logs);
    let all = r.logs.join("\n");
    assert!(!all.contains("s3cr3t-value"), "{all}");
    assert!(!all.contains("second-part"), "{all}");
    assert!(!all.contains("dynamic-value"), "{all}");
    assert!(all.contains("token is ***"));
    assert!(all.contains("then *** appears"));
    assert!(all.contains("to stderr ***"));
    assert_eq!(r.output("j", "leak"), "");
    assert_eq!(r.job("j").steps[0].name, "deploy with ***");
    assert_eq!(r.output("j", "fine"), "ok");
}

#[tokio::test]
async fn no_file_the_run_keeps_holds_a_secret_and_the_summary_is_masked() {
    let r = run_with(
        r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - run: |
          echo "deployed with ${{ secrets.TOKEN }}" >> "$GITHUB_STEP_SUMMARY"
          echo "::add-mask::later-value"
          echo "and later-value" >> "$GITHUB_STEP_SUMMARY"
          echo "out=${{ secrets.TOKEN }}" >> "$GITHUB_OUTPUT"
          echo "E=${{ secrets.TOKEN }}" >> "$GITHUB_ENV"
          echo "s=${{ secrets.TOKEN }}" >> "$GITHUB_STATE"
"#,
        Opts {
            secrets: vec![("TOKEN", "s3cr3t-value")],
            ..Opts::default()
        },
    )
    .await;
    assert_eq!(r.result("j"), "success", "{:#?}", r.logs);
    let summary = r
        .files
        .iter()
        .find(|(path, _)| path.ends_with("summary.md"))
        .map(|(_, text)| text.as_str());
    assert_eq!(
        summary,
        Some("deployed with ***\nand ***\n"),
        "{:#?}",
        r.files
    );
    for (path, text) in &r.files {
        assert!(
            !text.contains("s3cr3t-value"),
            "{path} holds the secret: {text}"
        );
        assert!(!text.contains("later-value"), "{path} holds a mask: {text}");
    }
}

#[tokio::test]
async fn an_overlong_line_is_logged_in_bounded_pieces_and_a_secret_across_a_cut_is_masked() {
    // 20 MB without a newline, with the secret across the first 64 KiB cut.
    let r = run_with(
        r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - run: |
          { head -c 65533 /dev/zero | tr '\0' x; printf '%s' "$TOKEN"; head -c 20000000 /dev/zero | tr '\0' y; echo; } >&2
          echo after
        env:
          TOKEN: ${{ secrets.TOKEN }}
"#,
        Opts {
            secrets: vec![("TOKEN", "s3cr3t-value")],
            ..Opts::default()
        },
    )
    .await;
    assert_eq!(r.result("j"), "success");
    let prefix = "[j] ";
    let pieces: Vec<&str> = r
        .logs
        .iter()
        .filter(|l| l.starts_with("[j] x") || l.starts_with("[j] y") || l.starts_with("[j] ***"))
        .map(|l| &l[prefix.len()..])
        .collect();
    const MAX: usize = 64 * 1024;
    let longest_secret = "s3cr3t-value".len();
    assert_eq!(
        pieces.len(),
        (65533 + longest_secret + 20_000_000).div_ceil(MAX)
    );
    let (last, cut) = pieces.split_last().unwrap();
    for p in cut {
        let text = p.strip_suffix('…').expect("a cut piece is marked");
        assert!(
            (MAX - longest_secret..=MAX + longest_secret).contains(&text.len()),
            "piece of {} bytes",
            text.len()
        );
    }
    assert!(!last.ends_with('…') && last.len() <= MAX + longest_secret);
    let whole: String = cut
        .iter()
        .map(|p| p.strip_suffix('…').unwrap())
        .chain([*last])
        .collect();
    assert_eq!(
        whole,
        format!("{}***{}", "x".repeat(65533), "y".repeat(20_000_000))
    );
    assert!(r.logged("[j] after"));
}

#[tokio::test]
async fn composite_action_with_inputs_and_outputs() {
    let r = run_with(
        r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - uses: actions/checkout@v4
      - id: greet
        uses: ./.github/actions/greet
        with:
          who: Mona
      - run: echo "action said ${{ steps.greet.outputs.greeting }}"
"#,
        Opts {
            files: vec![(
                ".github/actions/greet/action.yml",
                r#"
name: greet
inputs:
  who:
    required: true
  punctuation:
    default: "!"
outputs:
  greeting:
    value: ${{ steps.make.outputs.text }}
runs:
  using: composite
  steps:
    - id: make
      shell: bash
      run: echo "text=Hello ${{ inputs.who }}${{ inputs.punctuation }}" >> "$GITHUB_OUTPUT"
    - shell: bash
      run: test -f "$GITHUB_ACTION_PATH/action.yml" && echo "inner saw ${{ steps.make.outputs.text }}"
"#,
            )],
            ..Opts::default()
        },
    )
    .await;
    assert_eq!(r.result("j"), "success", "{:#?}", r.logs);
    assert!(r.logged("inner saw Hello Mona!"));
    assert!(r.logged("action said Hello Mona!"));
}

#[tokio::test]
async fn reusable_workflow_with_inputs_secrets_and_outputs() {
    let r = run_with(
        r#"
on: push
jobs:
  call:
    uses: ./.github/workflows/called.yml
    with:
      name: Octo
    secrets:
      key: ${{ secrets.TOKEN }}
  after:
    needs: call
    runs-on: x
    steps:
      - run: echo "called returned ${{ needs.call.outputs.result }}"
"#,
        Opts {
            files: vec![(
                ".github/workflows/called.yml",
                r#"
on:
  workflow_call:
    inputs:
      name: {type: string, required: true}
      count: {type: number, default: 2}
    secrets:
      key: {required: true}
    outputs:
      result:
        value: ${{ jobs.inner.outputs.r }}
jobs:
  inner:
    runs-on: x
    outputs:
      r: ${{ steps.s.outputs.r }}
    steps:
      - id: s
        run: |
          echo "key=${{ secrets.key }}"
          echo "r=${{ inputs.name }}x${{ inputs.count }}" >> "$GITHUB_OUTPUT"
"#,
            )],
            secrets: vec![("TOKEN", "tok-123456")],
            ..Opts::default()
        },
    )
    .await;
    assert_eq!(r.report.result, Status::Success, "{:#?}", r.logs);
    assert_eq!(r.result("call/inner"), "success");
    assert!(r.logged("key=***"));
    assert!(r.logged("called returned Octox2"));
    let ids: Vec<&str> = r.report.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["call", "call/inner", "after"]);
}

#[tokio::test]
async fn cancellation_stops_the_step_and_still_runs_always_steps() {
    let started = Instant::now();
    let r = run_with(
        r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - name: long
        run: sleep 30
      - name: normal
        run: echo normal
      - name: cleanup
        if: always()
        run: echo cleanup-after-cancel
  later:
    needs: j
    runs-on: x
    steps: [{run: 'true'}]
"#,
        Opts {
            cancel_after: Some(Duration::from_millis(400)),
            ..Opts::default()
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.report.result, Status::Cancelled);
    assert_eq!(
        r.steps("j"),
        [
            "long:cancelled/cancelled",
            "normal:skipped/skipped",
            "cleanup:success/success"
        ]
    );
    assert_eq!(r.result("later"), "skipped");
}

#[tokio::test]
async fn artifacts_and_cache_between_jobs() {
    let r = run(r#"
on: push
jobs:
  produce:
    runs-on: x
    steps:
      - run: mkdir -p out/sub && echo data > out/sub/a.txt && echo other > out/b.log
      - uses: actions/upload-artifact@v4
        with:
          name: build
          path: |
            out/**/*.txt
      - id: cache
        uses: actions/cache@v4
        with:
          key: deps-v1
          path: out
      - run: echo "hit=${{ steps.cache.outputs.cache-hit }}"
  consume:
    needs: produce
    runs-on: x
    steps:
      - uses: actions/download-artifact@v4
        with:
          name: build
          path: got
      - run: cat got/sub/a.txt && test ! -e got/b.log
      - id: cache
        uses: actions/cache/restore@v4
        with:
          key: deps-v2
          restore-keys: deps-
          path: out
      - run: echo "restored ${{ steps.cache.outputs.cache-hit }} ${{ steps.cache.outputs.cache-matched-key }} $(cat out/b.log)"
      - run: echo "hash ${{ hashFiles('got/**') != '' }} ${{ hashFiles('nothing/*') == '' }} ${{ hashFiles('./got/sub/a.txt') == hashFiles('got/sub/a.txt') }}"
      - uses: actions/upload-artifact@v4
        with:
          name: again
          path: ./got/
      - uses: actions/download-artifact@v4
        with:
          name: again
          path: again
      - run: cat again/sub/a.txt
"#)
    .await;
    assert_eq!(r.report.result, Status::Success, "{:#?}", r.logs);
    assert!(r.logged("hit=false"));
    assert!(r.logged("] data"));
    assert!(r.logged("restored false deps-v1 other"));
    assert!(r.logged("hash true true true"));
}

#[tokio::test]
async fn artifact_downloads_stay_inside_the_store_and_the_destination() {
    // The run directory is three levels above a job's workspace (run/jobs/<job>/workspace).
    let r = run(r#"
on: push
jobs:
  produce:
    runs-on: x
    steps:
      - run: mkdir -p ../../../outside && echo secret > ../../../outside/secret && echo private > ../../../private.txt
      - run: mkdir -p a b/d && ln -s "$PWD/../../../outside" a/d && echo evil > b/d/evil && ln -s "$PWD/../../../private.txt" a/link.txt
      - uses: actions/upload-artifact@v4
        with:
          name: a
          path: a
      - uses: actions/upload-artifact@v4
        with:
          name: b
          path: b
  consume:
    needs: produce
    runs-on: x
    steps:
      - id: climb
        continue-on-error: true
        uses: actions/download-artifact@v4
        with:
          name: ../outside
          path: stolen
      - run: test ! -e stolen/secret && echo "climb ${{ steps.climb.outcome }}"
      - uses: actions/download-artifact@v4
        with:
          path: merged
          merge-multiple: true
      - run: test ! -L merged/d && test ! -L merged/link.txt && cat merged/link.txt merged/d/secret merged/d/evil && test ! -e ../../../outside/evil && echo merged-inside
      - run: mkdir -p ../../../elsewhere && ln -s "$PWD/../../../elsewhere" linked
      - id: through
        continue-on-error: true
        uses: actions/download-artifact@v4
        with:
          name: b
          path: linked
      - run: test ! -e ../../../elsewhere/d && echo "through ${{ steps.through.outcome }}"
"#)
    .await;
    assert_eq!(r.report.result, Status::Success, "{:#?}", r.logs);
    assert!(r.logged("climb failure"), "{:#?}", r.logs);
    assert!(
        r.logged("artifact name '../outside' has characters that are not allowed"),
        "{:#?}",
        r.logs
    );
    // Upload followed the links, as GitHub's does: the artifact holds their contents.
    assert!(r.logged("] private"), "{:#?}", r.logs);
    assert!(r.logged("] secret"), "{:#?}", r.logs);
    assert!(r.logged("] evil"), "{:#?}", r.logs);
    assert!(r.logged("merged-inside"), "{:#?}", r.logs);
    assert!(r.logged("through failure"), "{:#?}", r.logs);
    assert!(
        r.logged("linked is a symbolic link; download-artifact does not write through links"),
        "{:#?}",
        r.logs
    );
}

#[tokio::test]
async fn report_json_has_the_documented_shape() {
    let r = run(r#"
on: push
jobs:
  j:
    runs-on: x
    outputs: {o: v}
    steps:
      - id: one
        run: 'true'
      - run: 'true'
"#)
    .await;
    assert_eq!(
        r.report.to_json(),
        json!({
            "result": "success",
            "jobs": [{
                "id": "j", "name": "j", "matrix": null, "result": "success",
                "outputs": {"o": "v"},
                "steps": [
                    {"id": "one", "name": "Run true", "outcome": "success", "conclusion": "success"},
                    {"id": null, "name": "Run true", "outcome": "success", "conclusion": "success"}
                ]
            }]
        })
    );
}

#[tokio::test]
async fn shells_and_working_directory() {
    let r = run(r#"
on: push
defaults:
  run:
    working-directory: sub
jobs:
  j:
    runs-on: x
    steps:
      - working-directory: .
        run: mkdir -p sub/deeper
      - run: basename "$PWD"
      - shell: sh
        run: echo "sh says hi"
      - shell: perl {0}
        working-directory: .
        run: print "perl ok\n";
      - run: false | true
      - shell: bash
        run: false | true
"#)
    .await;
    // The default shell is `bash -e`; `shell: bash` adds -o pipefail, so only the second fails.
    assert_eq!(r.steps("j")[4], "Run false | true:success/success");
    assert_eq!(r.steps("j")[5], "Run false | true:failure/failure");
    assert!(r.logged("] sub"));
    assert!(r.logged("sh says hi"));
    assert!(r.logged("perl ok"));
}

/// `a` holds group g until the test says go; `b` and `c` join g in turn, each when the test
/// releases the job it needs.
fn concurrency_workflow(gates: &std::path::Path, cancel_in_progress: bool) -> String {
    format!(
        r#"
on: push
jobs:
  a:
    runs-on: x
    concurrency: g
    steps:
      - run: echo a-holds-g; {a}
  w:
    runs-on: x
    steps: [{{run: "{w}"}}]
  b:
    needs: w
    runs-on: x
    concurrency: g
    steps: [{{run: 'true'}}]
  w2:
    runs-on: x
    steps: [{{run: "{w2}"}}]
  c:
    needs: w2
    runs-on: x
    concurrency:
      group: g
      cancel-in-progress: {cancel_in_progress}
    steps: [{{run: 'true'}}]
"#,
        a = wait_for(gates, "a-go"),
        w = wait_for(gates, "w-go"),
        w2 = wait_for(gates, "w2-go"),
    )
}

#[tokio::test]
async fn concurrency_groups_keep_one_running_and_one_pending() {
    for cancel_in_progress in [false, true] {
        let gates = tempfile::tempdir().expect("tempdir");
        let (run, mut events) = spawn_run(
            concurrency_workflow(gates.path(), cancel_in_progress),
            Opts::default(),
        );
        until(
            &mut events,
            |e| matches!(e, RunEvent::Line { job, text, .. } if job == "a" && text == "a-holds-g"),
        )
        .await;
        touch(gates.path(), "w-go");
        // `b` joins g in the same poll that queues it (this test runs on one thread), so once
        // it is queued it is the pending job.
        until(
            &mut events,
            |e| matches!(e, RunEvent::Queued { job } if job == "b"),
        )
        .await;
        touch(gates.path(), "w2-go");
        // `c` replaces `b` as the pending job (and with cancel-in-progress cancels `a`).
        until(&mut events, |e| finished(e, "b")).await;
        touch(gates.path(), "a-go");
        let r = run.await.expect("the run");
        let a = if cancel_in_progress {
            "cancelled"
        } else {
            "success"
        };
        assert_eq!(
            (r.result("a"), r.result("b"), r.result("c")),
            (a, "cancelled", "success"),
            "{:#?}",
            r.logs
        );
    }
}

#[tokio::test]
async fn matrix_from_needs_outputs_max_parallel_and_job_continue_on_error() {
    let r = run(r#"
on: push
jobs:
  gen:
    runs-on: x
    outputs:
      m: ${{ steps.s.outputs.m }}
    steps:
      - id: s
        run: echo 'm={"n":[1,2,3],"include":[{"n":3,"big":true}]}' >> "$GITHUB_OUTPUT"
  use:
    needs: gen
    runs-on: x
    continue-on-error: ${{ matrix.big == true }}
    strategy:
      max-parallel: 1
      matrix: ${{ fromJSON(needs.gen.outputs.m) }}
    steps:
      - run: |
          # max-parallel 1: no other instance may be running now.
          mkdir "$RUNNER_TEMP/../../../lock" || exit 9
          sleep 0.2
          rmdir "$RUNNER_TEMP/../../../lock"
          if [ "${{ matrix.big }}" = true ]; then exit 1; fi
  after:
    needs: use
    runs-on: x
    steps:
      - run: echo "use was ${{ needs.use.result }}"
"#)
    .await;
    let results: Vec<(String, &str)> = r
        .report
        .jobs
        .iter()
        .map(|j| (j.name.clone(), j.result.as_str()))
        .collect();
    assert_eq!(
        results,
        [
            ("gen".to_string(), "success"),
            ("use (1)".to_string(), "success"),
            ("use (2)".to_string(), "success"),
            ("use (3, true)".to_string(), "failure"),
            ("after".to_string(), "success"),
        ],
        "{:#?}",
        r.logs
    );
    // A failed job with continue-on-error does not fail the run or its dependents.
    assert!(r.logged("use was success"));
    assert_eq!(r.report.result, Status::Success);
}

#[tokio::test]
async fn nested_composite_actions_and_failures_inside_them() {
    let r = run_with(
        r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - uses: actions/checkout@v4
      - id: outer
        uses: ./actions/outer
        with:
          fail: "false"
      - run: echo "outer said ${{ steps.outer.outputs.said }}"
      - id: failing
        uses: ./actions/outer
        with:
          fail: "true"
        continue-on-error: true
      - run: echo "failing was ${{ steps.failing.outcome }}/${{ steps.failing.conclusion }}"
"#,
        Opts {
            files: vec![
                (
                    "actions/outer/action.yml",
                    r#"
inputs:
  fail: {default: "false"}
outputs:
  said: {value: "${{ steps.inner.outputs.word }}"}
runs:
  using: composite
  steps:
    - id: inner
      uses: ./actions/inner
    - if: inputs.fail == 'true'
      shell: bash
      run: exit 1
    - if: failure()
      shell: bash
      run: echo "cleanup inside the action"
"#,
                ),
                (
                    "actions/inner/action.yml",
                    r#"
outputs:
  word: {value: "${{ steps.w.outputs.word }}"}
runs:
  using: composite
  steps:
    - id: w
      shell: bash
      run: echo "word=nested" >> "$GITHUB_OUTPUT"
"#,
                ),
            ],
            ..Opts::default()
        },
    )
    .await;
    assert_eq!(r.result("j"), "success", "{:#?}", r.logs);
    assert!(r.logged("outer said nested"));
    assert!(r.logged("cleanup inside the action"));
    assert!(r.logged("failing was failure/success"));
}

#[tokio::test]
async fn events_tell_the_lifecycle_typed_and_lines_masked_with_their_step_and_stream() {
    let r = run_with(
        r#"
on: push
jobs:
  j:
    runs-on: x
    environment: production
    outputs:
      o: ${{ steps.s.outputs.o }}
    steps:
      - name: skipped
        if: false
        run: echo never
      - id: s
        name: talk
        run: |
          echo "out ${{ secrets.TOKEN }}"
          echo "o=1" >> "$GITHUB_OUTPUT"
      - name: fails
        run: echo err >&2; exit 3
        continue-on-error: true
  later:
    needs: j
    if: false
    runs-on: x
    steps: [{run: 'true'}]
"#,
        Opts {
            secrets: vec![("TOKEN", "tok-123456")],
            ..Opts::default()
        },
    )
    .await;
    let job = |s: &str| s.to_string();
    let line = |step: Option<usize>, stream: Stream, text: &str| RunEvent::Line {
        job: job("j"),
        step,
        stream,
        text: text.into(),
    };
    // The default gate admits at once: no Waiting, only the admission.
    assert_eq!(
        r.events,
        [
            RunEvent::Queued { job: job("j") },
            RunEvent::Admitted {
                job: job("j"),
                environment: job("production")
            },
            RunEvent::JobStarted {
                job: job("j"),
                id: job("j"),
                matrix: None
            },
            RunEvent::StepStarted {
                job: job("j"),
                step: 1,
                name: job("talk")
            },
            line(Some(1), Stream::Stdout, "out ***"),
            RunEvent::StepFinished {
                job: job("j"),
                step: 1,
                name: job("talk"),
                outcome: Status::Success,
                conclusion: Status::Success
            },
            RunEvent::StepStarted {
                job: job("j"),
                step: 2,
                name: job("fails")
            },
            line(Some(2), Stream::Stderr, "err"),
            line(Some(2), Stream::Runner, "error: process exited with code 3"),
            RunEvent::StepFinished {
                job: job("j"),
                step: 2,
                name: job("fails"),
                outcome: Status::Failure,
                conclusion: Status::Success
            },
            RunEvent::JobFinished {
                job: job("j"),
                id: job("j"),
                result: Status::Success,
                outputs: IndexMap::from([(job("o"), job("1"))]),
            },
            RunEvent::Line {
                job: job("later"),
                step: None,
                stream: Stream::Runner,
                text: "skipped: the job's `if` condition is false".into()
            },
            RunEvent::JobFinished {
                job: job("later"),
                id: job("later"),
                result: Status::Skipped,
                outputs: IndexMap::new(),
            },
            RunEvent::RunFinished {
                result: Status::Success
            },
        ],
        "{:#?}",
        r.events
    );
    // The log as `shipway run` prints it, made from those events.
    assert_eq!(
        r.logs,
        [
            "[j] job started",
            "[j] ▶ talk",
            "[j] out ***",
            "[j] ▶ fails",
            "[j] err",
            "[j] error: process exited with code 3",
            "[j] ✗ fails: failure",
            "[j] job success",
            "[later] skipped: the job's `if` condition is false",
        ]
    );
}

const GATED: &str = r#"
on: push
jobs:
  deploy:
    runs-on: x
    environment:
      name: prod-${{ vars.COLOR }}
    steps:
      - run: echo deployed
      - run: echo "key ${{ secrets.DEPLOY_KEY }} region ${{ vars.REGION }} color ${{ vars.COLOR }}"
  other:
    runs-on: x
    steps: [{run: echo other-ran}]
  after:
    needs: deploy
    runs-on: x
    steps: [{run: 'echo "after-ran key [${{ secrets.DEPLOY_KEY }}] region [${{ vars.REGION }}]"'}]
"#;

/// Starts [`GATED`] with a gate the test answers and a cancel it holds; returns the run, the
/// gate's requests and the events as they happen.
fn gated_run(
    cancel: CancellationToken,
) -> (
    tokio::task::JoinHandle<Run>,
    mpsc::UnboundedReceiver<GateRequest>,
    mpsc::UnboundedReceiver<RunEvent>,
) {
    let (gate_tx, gate_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let opts = Opts {
        gate: Some(Arc::new(TestGate(gate_tx))),
        observer: Some(Arc::new(Forward(event_tx))),
        cancel: Some(cancel),
        ..Opts::default()
    };
    (
        tokio::spawn(async move { run_with(GATED, opts).await }),
        gate_rx,
        event_rx,
    )
}

#[tokio::test]
async fn a_gated_environment_waits_while_other_jobs_run_and_starts_when_admitted() {
    let (run, mut requests, mut events) = gated_run(CancellationToken::new());
    let (job, env, answer) = requests.recv().await.expect("the gate is asked");
    assert_eq!((job.as_str(), env.as_str()), ("deploy", "prod-blue"));
    // Evidence, not time: `other` runs to its end while `deploy` waits, and `deploy` does not
    // start before the answer.
    let (mut waiting, mut other_done) = (false, false);
    while !(waiting && other_done) {
        let e = events.recv().await.expect("an event");
        match &e {
            RunEvent::Waiting { job, reason, .. } if job == "deploy" => {
                assert_eq!(reason, "waiting for approval of environment prod-blue");
                waiting = true;
            }
            RunEvent::JobFinished { job, result, .. } if job == "other" => {
                assert_eq!(*result, Status::Success);
                other_done = true;
            }
            RunEvent::JobStarted { job, .. } if job == "deploy" => {
                panic!("deploy started before it was admitted")
            }
            _ => {}
        }
    }
    // The environment's own secret and variable, for this job only.
    let grant = Grant {
        secrets: [("DEPLOY_KEY".to_string(), "k3y-of-prod".to_string())].into(),
        vars: [("REGION".to_string(), "eu-west".to_string())].into(),
    };
    answer
        .send(GateDecision::Admit(grant))
        .expect("the job waits");
    let r = run.await.expect("the run");
    assert_eq!(r.report.result, Status::Success, "{:#?}", r.logs);
    assert_eq!(r.result("deploy"), "success");
    assert_eq!(r.result("after"), "success");
    assert!(r.logged("[deploy] waiting for approval of environment prod-blue"));
    assert!(r.logged("[deploy] deployed"));
    // The granted secret is seen (and masked), the run's variables stay beside the granted one.
    assert!(
        r.logged("[deploy] key *** region eu-west color blue"),
        "{:#?}",
        r.logs
    );
    assert!(
        r.logged("[after] after-ran key [] region []"),
        "{:#?}",
        r.logs
    );
    assert!(!r.logs.iter().any(|l| l.contains("k3y-of-prod")));
}

#[tokio::test]
async fn a_rejected_environment_fails_the_job_as_github_words_it() {
    let (run, mut requests, _events) = gated_run(CancellationToken::new());
    let (_, _, answer) = requests.recv().await.expect("the gate is asked");
    answer
        .send(GateDecision::Reject {
            reason: "Rejected by alice: not today.".into(),
        })
        .expect("the job waits");
    let r = run.await.expect("the run");
    assert_eq!(r.report.result, Status::Failure);
    assert_eq!(r.result("deploy"), "failure");
    assert!(r.job("deploy").steps.is_empty());
    assert_eq!(r.result("after"), "skipped");
    assert_eq!(r.result("other"), "success");
    assert!(
        r.logged(
            "[deploy] error: environment prod-blue: The deployment was rejected or didn't \
             satisfy other protection rules. Rejected by alice: not today."
        ),
        "{:#?}",
        r.logs
    );
    assert!(!r.logged("deployed"));
    // The refusal names its environment as an event, so a recorder can file the job under
    // that environment's history even when the gate answered before any Waiting.
    assert!(
        r.events.iter().any(|e| matches!(e,
            RunEvent::Rejected { job, environment, reason }
                if job == "deploy" && environment == "prod-blue"
                    && reason == "Rejected by alice: not today.")),
        "{:#?}",
        r.events
    );
}

#[tokio::test]
async fn a_cancel_while_waiting_for_approval_cancels_the_job() {
    let cancel = CancellationToken::new();
    let (run, mut requests, _events) = gated_run(cancel.clone());
    let (_, _, answer) = requests.recv().await.expect("the gate is asked");
    cancel.cancel();
    let r = run.await.expect("the run");
    drop(answer);
    assert_eq!(r.report.result, Status::Cancelled);
    assert_eq!(r.result("deploy"), "cancelled");
    assert_eq!(r.result("after"), "skipped");
    assert!(r.logged("[deploy] cancelled while waiting for approval of environment prod-blue"));
}

#[tokio::test]
async fn a_workflow_and_its_local_actions_load_from_memory() {
    // Nothing of the repository is on disk: a server run reads these from a git tree.
    let mut fs = MemFs::new();
    fs.insert(
        "repo/.github/workflows/w.yml",
        r#"
on: push
jobs:
  j:
    runs-on: x
    steps:
      - id: greet
        uses: ./actions/greet
        with:
          who: memory
      - run: echo "action said ${{ steps.greet.outputs.said }}"
      - uses: ./actions/missing
"#,
    );
    fs.insert(
        "repo/actions/greet/action.yml",
        r#"
name: greet
inputs:
  who: {required: true}
outputs:
  said: {value: "${{ steps.s.outputs.said }}"}
runs:
  using: composite
  steps:
    - id: s
      shell: bash
      run: echo "said=hello ${{ inputs.who }}" >> "$GITHUB_OUTPUT"
"#,
    );
    let bundle = load_from(
        &fs,
        std::path::Path::new("/repo"),
        ".github/workflows/w.yml",
    );
    // A missing action is no problem when loading: GitHub looks for it when its step runs.
    let problems: Vec<String> = bundle.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(bundle.actions.keys().collect::<Vec<_>>(), ["actions/greet"]);
    // Run, the action is read from the workspace, where nothing checked it out: the step
    // fails as on GitHub.
    let root = tempfile::tempdir().expect("tempdir");
    let sink = Arc::new(Collect::default());
    let exec = Executor::new(
        root.path().join("repo"),
        root.path().join("run"),
        root.path().join("cache"),
    )
    .base_env(
        std::env::vars()
            .filter(|(k, _)| k == "PATH" || k == "HOME")
            .collect(),
    )
    .observer(sink.clone());
    let report = run_workflow(&bundle, RunSpec::default(), exec).await;
    assert_eq!(report.result, Status::Failure, "{:#?}", sink.lines());
    assert!(
        sink.lines().iter().any(|l| l.contains(
            "/workspace/actions/greet'. Did you forget to run actions/checkout before running your local action?"
        )),
        "{:#?}",
        sink.lines()
    );
}

#[tokio::test]
async fn local_actions_are_read_from_the_workspace_when_their_step_runs() {
    let r = run(r#"
on: push
jobs:
  written:
    runs-on: x
    steps:
      - run: |
          mkdir -p made
          printf '%s\n' 'runs:' '  using: composite' '  steps:' \
            '    - shell: bash' \
            '      run: echo "made ran in $''{{ github.action_path }} $GITHUB_ACTION_PATH"' > made/action.yml
      - uses: ./made
      - if: false
        uses: ./never/there
      - run: echo "after the action github.action_path=[${{ github.action_path }}]"
  missing:
    runs-on: x
    steps:
      - uses: ./not/there
      - if: always()
        run: echo "missing failed first"
"#)
    .await;
    assert_eq!(r.result("written"), "success", "{:#?}", r.logs);
    assert!(
        r.logs.iter().any(|l| l.contains("made ran in /")
            && l.contains("/workspace/made /")
            && l.ends_with("/workspace/made")),
        "{:#?}",
        r.logs
    );
    assert!(
        r.logged("after the action github.action_path=[]"),
        "{:#?}",
        r.logs
    );
    assert_eq!(r.result("missing"), "failure");
    assert_eq!(
        r.steps("missing"),
        [
            "Run ./not/there:failure/failure",
            "Run echo \"missing failed first\":success/success"
        ]
    );
    assert!(r.logged("Can't find 'action.yml', 'action.yaml' or 'Dockerfile' under '"));
    assert!(r.logged(
        "/workspace/not/there'. Did you forget to run actions/checkout before running your local action?"
    ));
}

#[tokio::test]
async fn set_output_and_save_state_warn_and_unsecure_commands_need_the_opt_in() {
    let r = run(r#"
on: push
jobs:
  allowed:
    runs-on: x
    env:
      ACTIONS_ALLOW_UNSECURE_COMMANDS: "true"
    outputs:
      zoo: ${{ steps.s.outputs.zoo }}
    steps:
      - id: s
        run: |
          echo "::set-output name=zoo::zar"
          echo "::save-state name=st::1"
          echo "::set-env name=FOO::bar"
          echo "::add-path::/zip"
      - run: |
          echo "foo=$FOO"
          case ":$PATH:" in *:/zip:*) echo "has zip";; esac
  refused:
    runs-on: x
    steps:
      - run: echo "::set-env name=FOO::bar"
      - if: always()
        run: echo "after foo=$FOO."
"#)
    .await;
    assert_eq!(r.result("allowed"), "success", "{:#?}", r.logs);
    assert_eq!(r.output("allowed", "zoo"), "zar");
    assert!(r.logged("foo=bar"), "{:#?}", r.logs);
    assert!(r.logged("has zip"), "{:#?}", r.logs);
    assert!(r.logged("The `set-output` command is deprecated and will be disabled soon."));
    assert!(r.logged("The `save-state` command is deprecated and will be disabled soon."));
    assert_eq!(r.result("refused"), "failure");
    assert!(r.logged("Unable to process command '::set-env name=FOO::bar' successfully."));
    assert!(r.logged(
        "The `set-env` command is disabled. Please upgrade to using Environment Files or opt into \
         unsecure command execution by setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` environment \
         variable to `true`."
    ));
    assert!(r.logged("after foo=."), "{:#?}", r.logs);
}

#[tokio::test]
async fn a_matrix_that_evaluates_wrong_fails_its_job_naming_where_it_is() {
    let r = run(r#"
on: push
jobs:
  m:
    runs-on: x
    strategy:
      matrix:
        a:
          - ${{ insert }}: ${{ 'not a mapping' }}
    steps:
      - run: echo never
"#)
    .await;
    assert_eq!(r.result("m"), "failure", "{:#?}", r.logs);
    assert!(
        r.logged(
            "error: .github/workflows/w.yml:8:9: jobs.m.strategy.matrix: '${{ insert }}' must \
             yield a mapping to merge, found a string"
        ),
        "{:#?}",
        r.logs
    );
}
