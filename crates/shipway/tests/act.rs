//! Conformance over nektos/act's runner test cases (`shared/corpus/act`): each case's `repo/`
//! copied to a fresh git repository (one commit, `origin` = nektos/act) and run with
//! `shipway run` as the case says, the exit code compared with `expect_exit_code`.
//!
//! Prints `act corpus: N passed, M failed`. Fails when a case outside `act-known-failures.txt`
//! fails, or a listed one now passes (the list only shrinks). `SHIPWAY_CASE=substring` runs only
//! matching cases and prints their output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_shipway");

/// `$SHIPWAY_CORPUS/act` (set by `cargo xtask test`), else `shared/corpus/act` beside the checkout.
fn corpus() -> PathBuf {
    std::env::var_os("SHIPWAY_CORPUS")
        .map(|r| PathBuf::from(r).join("act"))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/act"))
}

/// `name reason...` lines of the known-failures file.
fn known_failures() -> Vec<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/act-known-failures.txt"),
    )
    .unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read corpus dir").flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_dir(&src, &dst);
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&src).expect("readlink");
            std::os::unix::fs::symlink(target, &dst).expect("symlink");
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

/// A command with no `GITHUB_*`/`RUNNER_*`/`ACTIONS_*`/`GIT_*`/`SHIPWAY_*` variable inherited.
fn clean(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if ["GITHUB_", "RUNNER_", "ACTIONS_", "GIT_", "SHIPWAY_"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd
}

fn git(dir: &Path, args: &[&str]) {
    let o = clean("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=act", "-c", "user.email=act@example.com"])
        .args([
            "-c",
            "init.defaultBranch=master",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(o.status.success(), "git {args:?}: {}", text(&o));
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn strings(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one case; `Err` says why it failed.
fn run_case(case: &Path, verbose: bool) -> Result<(), String> {
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(case.join("case.json")).map_err(|e| format!("case.json: {e}"))?,
    )
    .map_err(|e| format!("case.json: {e}"))?;
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    copy_dir(&case.join("repo"), &repo);
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "act corpus case"]);
    git(
        &repo,
        &["remote", "add", "origin", "https://github.com/nektos/act"],
    );
    let mut cmd = clean(BIN);
    cmd.arg("run")
        .arg("-C")
        .arg(&repo)
        .arg("--data")
        .arg(tmp.path().join("data"))
        .args(["--event", spec["event"].as_str().unwrap_or("push")])
        .args(["-W", spec["workflow_path"].as_str().unwrap_or_default()]);
    if let Some(e) = spec["event_path"].as_str() {
        cmd.arg("-e").arg(repo.join(e));
    }
    for (k, v) in strings(&spec["secrets"]) {
        cmd.arg("--secret").arg(format!("{k}={v}"));
    }
    for (k, v) in strings(&spec["inputs"]) {
        cmd.arg("--input").arg(format!("{k}={v}"));
    }
    cmd.envs(strings(&spec["env"]));
    let o = cmd
        .output()
        .map_err(|e| format!("cannot run shipway: {e}"))?;
    if verbose {
        println!("{}", text(&o));
    }
    let want = spec["expect_exit_code"].as_i64().unwrap_or(0);
    let got = o.status.code().map_or(-1, i64::from);
    if got == want {
        return Ok(());
    }
    // A refused file says why on its last line; a failed run, on the first failed step.
    let output = text(&o);
    let lines: Vec<&str> = output.lines().collect();
    let why = match lines.iter().position(|l| l.contains("\u{2717} ")) {
        Some(at) => {
            let error = lines[..at].iter().rev().find(|l| l.contains("error"));
            format!("{} ({})", lines[at].trim(), error.map_or("", |l| l.trim()))
        }
        None => lines
            .iter()
            .rev()
            .find(|l| l.starts_with("error"))
            .map_or(String::new(), |l| l.trim().to_string()),
    };
    Err(format!("exit {got}, want {want}: {why}"))
}

#[test]
fn act_corpus() {
    let root = corpus().join("cases");
    let Ok(entries) = std::fs::read_dir(&root) else {
        println!("act corpus not found at {}: SKIPPED", root.display());
        return;
    };
    let mut cases: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    cases.sort();
    let filter = std::env::var("SHIPWAY_CASE").ok();
    let known = known_failures();
    let (mut passed, mut failed) = (0, 0);
    let (mut unexpected, mut now_passing) = (Vec::new(), Vec::new());
    for case in &cases {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let is_known = known.contains(&name);
        match run_case(case, filter.is_some()) {
            Ok(()) => {
                passed += 1;
                if is_known {
                    now_passing.push(name);
                }
            }
            Err(why) => {
                failed += 1;
                println!("FAIL {name}: {why}");
                if !is_known {
                    unexpected.push(name);
                }
            }
        }
    }
    println!("act corpus: {passed} passed, {failed} failed");
    assert!(
        unexpected.is_empty() || filter.is_some(),
        "failing but not in act-known-failures.txt: {}",
        unexpected.join(", ")
    );
    assert!(
        now_passing.is_empty(),
        "passing now, remove from act-known-failures.txt: {}",
        now_passing.join(", ")
    );
}
