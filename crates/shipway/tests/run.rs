//! `shipway run` as users run it: exit codes (0 success, 1 a job failed, 2 invalid workflow),
//! the report file, `--list`, and inputs, secrets and vars from flags.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_shipway");

fn repo(workflow: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join(".github/workflows")).expect("mkdir");
    std::fs::write(dir.path().join(".github/workflows/ci.yml"), workflow).expect("write");
    dir
}

/// `shipway run -C DIR --data DIR/.data`.
fn run_in(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("run")
        .arg("-C")
        .arg(dir)
        .arg("--data")
        .arg(dir.join(".data"));
    cmd
}

fn shipway(dir: &Path, args: &[&str]) -> Output {
    run_in(dir).args(args).output().expect("run shipway")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn success_failure_and_invalid_map_to_exit_codes() {
    let ok = repo("on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: echo hi}]\n");
    let o = shipway(ok.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("[a] hi"));

    let failing = repo("on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: exit 4}]\n");
    let o = shipway(failing.path(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    let invalid =
        repo("on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: 'echo ${{ nope }}'}]\n");
    let o = shipway(invalid.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(
            ".github/workflows/ci.yml:5:29: jobs.a.steps[0].run: Unrecognized named-value: 'nope'"
        ),
        "{}",
        text(&o)
    );
}

#[test]
fn report_json_inputs_secrets_and_vars() {
    let dir = repo(
        r#"
on:
  workflow_dispatch:
    inputs:
      who: {type: string, default: nobody}
jobs:
  a:
    runs-on: x
    outputs:
      said: ${{ steps.s.outputs.said }}
    steps:
      - id: s
        run: |
          echo "said=${{ inputs.who }} ${{ vars.V }}" >> "$GITHUB_OUTPUT"
          echo "secret ${{ secrets.S }} and ${{ secrets.F }}"
"#,
    );
    std::fs::write(
        dir.path().join("secrets.env"),
        "# comment\nexport F=\"from file\"\n",
    )
    .expect("write");
    let report = dir.path().join("report.json");
    let o = shipway(
        dir.path(),
        &[
            "--event",
            "workflow_dispatch",
            "--input",
            "who=Mona",
            "--var",
            "V=blue",
            "--secret",
            "S=hunter22",
            "--secret-file",
            &dir.path().join("secrets.env").to_string_lossy(),
            "--report-json",
            &report.to_string_lossy(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("secret *** and ***"), "{}", text(&o));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(r["result"], "success");
    assert_eq!(r["jobs"][0]["outputs"]["said"], "Mona blue");
    assert_eq!(r["jobs"][0]["steps"][0]["outcome"], "success");
}

#[test]
fn list_and_untriggered_events() {
    let dir = repo(
        "on:\n  push:\n    branches: [main]\njobs:\n  a:\n    runs-on: x\n    strategy:\n      matrix:\n        n: [1, 2, 3]\n    steps: [{run: 'true'}]\n  b:\n    needs: a\n    runs-on: x\n    steps: [{run: 'true'}]\n",
    );
    let o = shipway(dir.path(), &["--list"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("JOB"), "{out}");
    assert!(
        out.lines().any(|l| l.contains(" a ") && l.contains(" 3 ")),
        "{out}"
    );
    let o = shipway(dir.path(), &["--event", "release"]);
    assert!(text(&o).contains("not triggered"), "{}", text(&o));
}

#[test]
fn ctrl_c_cancels_the_run_and_always_steps_still_run() {
    use std::io::{BufRead, BufReader};
    let dir = repo(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo started; sleep 30\n      - if: always()\n        run: echo cleaned-up\n",
    );
    let mut child = run_in(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut all = String::new();
    let mut line = String::new();
    while out.read_line(&mut line).expect("read") > 0 {
        all.push_str(&line);
        if line.contains("] started") {
            break;
        }
        line.clear();
    }
    // What a terminal's Ctrl-C sends to the foreground process.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    for l in out.lines() {
        all.push_str(&l.expect("line"));
        all.push('\n');
    }
    let code = child.wait().expect("wait").code();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{all}"
    );
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("cleaned-up"), "{all}");
    assert!(all.contains("run cancelled"), "{all}");
}

#[test]
fn dispatch_inputs_are_checked_against_their_declaration() {
    let dir = repo(
        "on:\n  workflow_dispatch:\n    inputs:\n      level:\n        type: choice\n        options: [low, high]\n        required: true\n      dry:\n        type: boolean\njobs:\n  a:\n    runs-on: x\n    steps: [{run: 'echo ${{ inputs.level }} ${{ inputs.dry }}'}]\n",
    );
    let o = shipway(dir.path(), &["--event", "workflow_dispatch"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(
            ".github/workflows/ci.yml:4:7: input 'level' is required: give it with --input level=VALUE"
        ),
        "{}",
        text(&o)
    );
    let o = shipway(
        dir.path(),
        &[
            "--event",
            "workflow_dispatch",
            "--input",
            "level=mid",
            "--input",
            "dry=yes",
            "--input",
            "x=1",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("ci.yml:4:7: input 'level': 'mid' is not one of: low, high"),
        "{t}"
    );
    assert!(t.contains("expected true or false, got 'yes'"), "{t}");
    assert!(t.contains("input 'x' is not declared"), "{t}");
    let o = shipway(
        dir.path(),
        &[
            "--event",
            "workflow_dispatch",
            "--input",
            "level=high",
            "--input",
            "dry=true",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("[a] high true"), "{}", text(&o));
}

#[test]
fn push_runs_get_a_payload_from_the_head_commit() {
    let dir = repo(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: 'echo \"msg=${{ github.event.head_commit.message }} ref=${{ github.ref }} sha=${{ github.sha == github.event.after }}\"'}]\n",
    );
    let git = |args: &[&str]| {
        let s = Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(args)
            .output()
            .expect("git");
        assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    };
    git(&["init", "-q", "-b", "trunk"]);
    git(&["add", "."]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@e",
        "commit",
        "-qm",
        "the commit message",
    ]);
    let o = shipway(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("msg=the commit message ref=refs/heads/trunk sha=true"),
        "{}",
        text(&o)
    );
}

#[test]
fn job_filter_runs_the_job_and_what_it_needs() {
    let dir = repo(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: echo ran-a}]\n  b:\n    needs: a\n    runs-on: x\n    steps: [{run: echo ran-b}]\n  c:\n    runs-on: x\n    steps: [{run: echo ran-c}]\n",
    );
    let o = shipway(dir.path(), &["-j", "b"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("ran-a") && t.contains("ran-b") && !t.contains("ran-c"),
        "{t}"
    );
    let o = shipway(dir.path(), &["-j", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// Under umask 022 the run records (event payload, step scripts and command files, summaries)
/// are their owner's only: steps see secrets. Files the steps make in their workspace follow the
/// steps' umask and are not checked.
#[test]
fn run_records_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = repo(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo '# summary of ${{ secrets.S }}' >> \"$GITHUB_STEP_SUMMARY\"\n",
    );
    let o = Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" \"$@\"", BIN, "run", "-C"])
        .arg(dir.path())
        .arg("--data")
        .arg(dir.path().join(".data"))
        .args(["--secret", "S=hunter2"])
        .output()
        .expect("run shipway");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let runs = dir.path().join(".data/runs");
    let mut wrong = Vec::new();
    let mut summaries = 0;
    let mut stack = vec![runs.clone()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let private = if meta.is_dir() {
            if !path.ends_with("workspace") {
                for entry in std::fs::read_dir(&path).unwrap() {
                    stack.push(entry.unwrap().path());
                }
            }
            mode == 0o700
        } else {
            summaries += usize::from(path.ends_with("summary.md"));
            mode == 0o600
        };
        if !private {
            wrong.push(format!("{mode:04o} {}", path.display()));
        }
    }
    assert_eq!(summaries, 1, "the job's summary was kept");
    assert!(wrong.is_empty(), "not private:\n{}", wrong.join("\n"));
    let mode = std::fs::metadata(dir.path().join(".data"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

/// `shipway run ... | head`: when the reader goes away the run does not panic; it finishes its
/// steps and exits with the workflow's result.
#[test]
fn a_closed_stdout_does_not_stop_or_crash_a_run() {
    let marker = tempfile::tempdir().expect("tempdir");
    let finished = marker.path().join("finished");
    let dir = repo(&format!(
        "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n    - run: seq 1 20000\n    - run: echo done > {}\n",
        finished.display()
    ));
    let mut child = run_in(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run shipway");
    // Read one line, then close the pipe, as `head -1` does.
    {
        use std::io::BufRead;
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut first)
            .expect("a line");
        assert!(!first.is_empty());
    }
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(finished.exists(), "the second step ran");
}

#[test]
fn dispatch_inputs_from_the_payload_and_flags_reach_both_contexts() {
    let dir = repo(
        r#"
on:
  workflow_dispatch:
    inputs:
      required: {required: true}
      flag: {type: boolean}
      n: {type: number}
      with_default: {default: dflt}
jobs:
  a:
    runs-on: x
    steps:
      - run: |
          echo "inputs ${{ inputs.required }} ${{ inputs.flag == true }} ${{ inputs.n == 4 }} ${{ inputs.with_default }}"
          echo "event ${{ github.event.inputs.required }} ${{ github.event.inputs.flag == 'true' }} ${{ github.event.inputs.n == '4' }}"
"#,
    );
    let payload = dir.path().join("event.json");
    std::fs::write(
        &payload,
        r#"{"inputs": {"required": "from-payload", "flag": "true", "n": "3"}}"#,
    )
    .expect("write");
    let o = shipway(
        dir.path(),
        &[
            "--event",
            "workflow_dispatch",
            "-e",
            &payload.to_string_lossy(),
            "--input",
            "n=4",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("[a] inputs from-payload true true dflt"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("[a] event from-payload true true"),
        "{}",
        text(&o)
    );
}

#[test]
fn pull_request_runs_on_the_merge_ref_with_head_and_base_refs() {
    let dir = repo(
        r#"
on: pull_request
jobs:
  a:
    runs-on: x
    steps:
      - run: echo "refs ${{ github.ref }} $GITHUB_REF_NAME ${{ github.head_ref }} $GITHUB_BASE_REF"
"#,
    );
    let payload = dir.path().join("event.json");
    std::fs::write(
        &payload,
        r#"{"number": 12, "pull_request": {"head": {"ref": "feature"}, "base": {"ref": "main"}}}"#,
    )
    .expect("write");
    let o = shipway(
        dir.path(),
        &["--event", "pull_request", "-e", &payload.to_string_lossy()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("[a] refs refs/pull/12/merge 12/merge feature main"),
        "{}",
        text(&o)
    );
}

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("git");
    assert!(o.status.success(), "git {args:?}: {}", text(&o));
}

/// A repository with two commits of `.github/workflows/ci.yml` and `data.txt`.
fn two_commits() -> tempfile::TempDir {
    let workflow = |word: &str| {
        format!(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - uses: actions/checkout@v4\n      - run: echo \"workflow {word} data $(cat data.txt) extra $(cat new.txt 2>/dev/null) $(test -e ignored.txt && echo ignored-copied)\"\n"
        )
    };
    let dir = repo(&workflow("one"));
    std::fs::write(dir.path().join(".gitignore"), ".data/\nignored.txt\n").expect("write");
    std::fs::write(dir.path().join("data.txt"), "first").expect("write");
    git(dir.path(), &["init", "-q"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "one"]);
    std::fs::write(dir.path().join(".github/workflows/ci.yml"), workflow("two")).expect("write");
    std::fs::write(dir.path().join("data.txt"), "second").expect("write");
    git(dir.path(), &["commit", "-qam", "two"]);
    // Uncommitted changes on top.
    std::fs::write(
        dir.path().join(".github/workflows/ci.yml"),
        workflow("three"),
    )
    .expect("write");
    std::fs::write(dir.path().join("data.txt"), "third").expect("write");
    std::fs::write(dir.path().join("new.txt"), "new").expect("write");
    std::fs::write(dir.path().join("ignored.txt"), "ignored").expect("write");
    dir
}

#[test]
fn the_working_tree_is_run_by_default_and_ref_runs_a_commit() {
    let dir = two_commits();
    let o = shipway(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("[a] workflow three data third extra new \n"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("from the working tree of")
            && text(&o).contains("uncommitted changes included"),
        "{}",
        text(&o)
    );

    let o = shipway(dir.path(), &["--ref", "HEAD~1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("[a] workflow one data first extra  \n"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("from commit "), "{}", text(&o));

    let o = shipway(
        dir.path(),
        &["--ref", "HEAD", "-W", ".github/workflows/ci.yml"],
    );
    assert!(
        text(&o).contains("[a] workflow two data second"),
        "{}",
        text(&o)
    );

    let o = shipway(dir.path(), &["--ref", "no-such-branch"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--ref no-such-branch: not a commit of"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_bad_event_payload_is_refused_with_its_position() {
    let dir = repo("on: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: 'true'}]\n");
    let payload = dir.path().join("event.json");
    std::fs::write(&payload, "{\n  \"ref\": \"main\",\n  oops\n}\n").expect("write");
    let o = shipway(dir.path(), &["-e", &payload.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "{}:3:3: the event payload (-e) is not JSON: key must be a string; give the webhook payload as a JSON object",
            payload.display()
        )),
        "{}",
        text(&o)
    );
    std::fs::write(&payload, "[1]").expect("write");
    let o = shipway(dir.path(), &["-e", &payload.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(
            ":1:1: the event payload (-e) must be a JSON object (a webhook payload), found an array"
        ),
        "{}",
        text(&o)
    );
}
