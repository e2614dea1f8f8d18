//! The compatibility corpus (`shared/corpus/workflows`): real workflow files that GitHub accepts.
//! Each must load and plan with no error but one about a repository file the corpus does not
//! have (a reusable workflow); features Shipway does not run (marketplace actions, containers,
//! node/docker actions) are `Unsupported` problems, not errors, and each names its feature.
//! Prints `N passed, M failed`; the known-failures list may only shrink.

use std::path::{Path, PathBuf};

use shipway_pipeline::load::load;
use shipway_pipeline::plan::plan;
use shipway_pipeline::problem::{Problem, Severity};

/// Files expected to fail today, with the reason. Shrink this list; never grow it.
const KNOWN_FAILURES: &[&str] = &[];

/// `$SHIPWAY_CORPUS/workflows` (set by `cargo xtask test`), else `shared/` beside the checkout.
fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("SHIPWAY_CORPUS") {
        Some(root) => PathBuf::from(root).join("workflows"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/workflows"),
    };
    dir.is_dir().then_some(dir)
}

/// Rows of a MANIFEST.tsv: (file name, path in its repository, repository).
fn manifest(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols.len() >= 3).then(|| {
                (
                    cols[0].to_string(),
                    cols[2].to_string(),
                    cols[1].to_string(),
                )
            })
        })
        .collect()
}

/// An error is acceptable when it is about a repository file the corpus does not include (a
/// reusable workflow of the same repository), and that file really is absent.
fn about_a_file_the_corpus_lacks(p: &Problem, root: &Path) -> bool {
    p.missing_file
        .as_deref()
        .is_some_and(|f| !root.join(f).exists())
}

/// `<path>: <why>`, the path ending in the unsupported key and the reason quoting its value.
fn names_its_feature(message: &str) -> bool {
    let Some((path, why)) = message.split_once(": ") else {
        return false;
    };
    let keyed = [".uses", ".container", ".services", "runs.using"]
        .iter()
        .any(|k| path.ends_with(k));
    keyed && (why.contains('\'') || why.contains('`'))
}

#[test]
fn corpus() {
    let Some(dir) = corpus_dir() else {
        println!("SKIPPED: workflow corpus not found (set SHIPWAY_CORPUS)");
        return;
    };
    let files = manifest(&dir.join("MANIFEST.tsv"));
    let actions = manifest(&dir.join("actions/MANIFEST.tsv"));
    assert!(!files.is_empty(), "empty corpus manifest");
    let (mut passed, mut failed) = (0, Vec::new());
    let mut slowest = (String::new(), std::time::Duration::ZERO);
    for (name, path, repo) in &files {
        // A throwaway repository with this repository's corpus files at their original paths,
        // so local actions and reusable workflows resolve.
        let root = tempfile::tempdir().expect("tempdir");
        for (n, p, r) in files
            .iter()
            .map(|f| (&f.0, &f.1, &f.2))
            .map(|x| (x.0, x.1, x.2, "files"))
            .map(|(n, p, r, sub)| (dir.join(sub).join(n), p, r))
            .chain(
                actions
                    .iter()
                    .map(|(n, p, r)| (dir.join("actions").join(n), p, r)),
            )
        {
            if r == repo {
                let target = root.path().join(p);
                std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
                std::fs::copy(&n, &target).expect("copy");
            }
        }
        let started = std::time::Instant::now();
        let bundle = load(root.path(), path);
        let took = started.elapsed();
        if took > slowest.1 {
            slowest = (name.clone(), took);
        }
        let errors: Vec<String> = bundle
            .problems
            .iter()
            .filter(|p| {
                p.severity == Severity::Error && !about_a_file_the_corpus_lacks(p, root.path())
            })
            .map(|p| format!("{name}: {p}"))
            .collect();
        // What Shipway does not run is named: the key (`uses`, `container`, `services`,
        // `runs.using`) and, quoted, the value.
        let unnamed: Vec<String> = bundle
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Unsupported && !names_its_feature(&p.message))
            .map(|p| format!("{name}: unsupported without naming what: {p}"))
            .collect();
        let errors: Vec<String> = errors.into_iter().chain(unnamed).collect();
        let planned = match &bundle.workflow {
            Some(w) => plan(w)
                .map(|_| ())
                .map_err(|e| format!("{name}: plan: {e}")),
            None => Err(format!("{name}: not loaded")),
        };
        match (errors.is_empty(), planned) {
            (true, Ok(())) => passed += 1,
            (_, planned) => {
                let mut why = errors;
                if let Err(e) = planned {
                    why.push(e);
                }
                failed.push((name.clone(), why));
            }
        }
    }
    println!("corpus: {passed} passed, {} failed", failed.len());
    println!("slowest to load: {} in {:?}", slowest.0, slowest.1);
    let mut unexpected = Vec::new();
    for (name, why) in &failed {
        println!("FAIL {name}");
        for w in why {
            println!("    {w}");
        }
        if !KNOWN_FAILURES.contains(&name.as_str()) {
            unexpected.push(name.clone());
        }
    }
    assert!(
        unexpected.is_empty(),
        "unexpected corpus failures: {unexpected:?}"
    );
}

/// Every corpus file cut short at many places (snapped to character boundaries) must load or
/// be refused with problems, never panic: cheap, deterministic fuzzing with realistic input.
#[test]
fn truncated_corpus_files_never_panic() {
    let Some(dir) = corpus_dir() else {
        return;
    };
    let mut parsed = 0;
    for (name, _, _) in manifest(&dir.join("MANIFEST.tsv")) {
        let text = std::fs::read_to_string(dir.join("files").join(&name)).unwrap_or_default();
        // Big files get fewer cuts so the test stays fast.
        let cuts = if text.len() > 100_000 { 2 } else { 16 };
        for k in 1..=cuts {
            let mut at = text.len() * k / (cuts + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let (w, _) = shipway_pipeline::parse::parse_workflow(&name, &text[..at]);
            if let Some(w) = w {
                let _ = plan(&w);
            }
            parsed += 1;
        }
    }
    println!("{parsed} truncated files parsed without a panic");
}
