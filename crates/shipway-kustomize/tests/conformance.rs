//! Conformance over Kustomize's own test cases (`../shared/corpus/kustomize`): every case built
//! with legacy order and with no reordering, compared byte for byte with what `kubectl kustomize`
//! printed. Fails when a case outside `known-failures.txt` fails, or a listed one now passes.
//!
//! `SHIPWAY_CASE=substring` runs only matching cases and prints the first difference.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use shipway_kustomize::{DiskFs, Options, Reorder, build};

fn corpus() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // `cargo xtask test` sets SHIPWAY_CORPUS to the corpus it found (and requires it in CI).
    std::env::var_os("SHIPWAY_KUSTOMIZE_CORPUS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("SHIPWAY_CORPUS").map(|r| PathBuf::from(r).join("kustomize")))
        .unwrap_or_else(|| manifest.join("../../../shared/corpus/kustomize"))
}

/// The directory a case builds: `fs/` joined with case.json's `build`.
fn build_dir(case: &Path) -> Result<PathBuf, String> {
    let path = case.join("case.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let build = value["build"]
        .as_str()
        .ok_or_else(|| format!("{}: no \"build\" string", path.display()))?;
    Ok(case.join("fs").join(build))
}

fn first_difference(got: &str, want: &str) -> String {
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        if g != w {
            return format!("line {}: got {g:?}, want {w:?}", i + 1);
        }
    }
    format!(
        "lengths differ: got {} lines, want {} lines",
        got.lines().count(),
        want.lines().count()
    )
}

fn main() -> ExitCode {
    let root = corpus().join("cases");
    let Ok(entries) = std::fs::read_dir(&root) else {
        println!("SKIPPED: corpus not found at {}", root.display());
        return ExitCode::SUCCESS;
    };
    let mut cases: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    cases.sort();
    let filter = std::env::var("SHIPWAY_CASE").ok();
    let known_text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/known-failures.txt"),
    )
    .unwrap_or_default();
    let known: Vec<&str> = known_text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let (mut passed, mut failed) = (0, 0);
    let mut unexpected = Vec::new();
    let mut now_passing = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let mut problem = None;
        let dir = build_dir(case).unwrap_or_else(|e| {
            problem = Some(e);
            PathBuf::new()
        });
        for (reorder, expected) in [
            (Reorder::Legacy, "expected-legacy.yaml"),
            (Reorder::None, "expected-fifo.yaml"),
        ] {
            if problem.is_some() {
                break;
            }
            // A missing file is a broken case, not an empty expectation (one case's is empty).
            let want = match std::fs::read_to_string(case.join(expected)) {
                Ok(want) => want,
                Err(e) => {
                    problem = Some(format!("{expected}: {e}"));
                    break;
                }
            };
            let opts = Options {
                reorder,
                ..Options::default()
            };
            match build(&DiskFs, &dir, &opts) {
                Ok(got) if got == want => {}
                Ok(got) => {
                    problem = Some(format!("{expected}: {}", first_difference(&got, &want)));
                    if filter.is_some() {
                        println!("--- got\n{got}--- want\n{want}");
                    }
                    break;
                }
                Err(e) => {
                    problem = Some(format!("error: {e}"));
                    break;
                }
            }
        }
        let is_known = known.contains(&name.as_str());
        match problem {
            None => {
                passed += 1;
                if is_known {
                    now_passing.push(name);
                }
            }
            Some(p) => {
                failed += 1;
                println!("FAIL {name}: {p}");
                if !is_known {
                    unexpected.push(name);
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    let mut ok = true;
    if !unexpected.is_empty() && filter.is_none() {
        println!(
            "failing but not in known-failures.txt: {}",
            unexpected.join(", ")
        );
        ok = false;
    }
    if !now_passing.is_empty() {
        println!(
            "passing now, remove from known-failures.txt: {}",
            now_passing.join(", ")
        );
        ok = false;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
