//! Every Rollout of Argo's examples, demo and e2e suites (`shared/corpus/argo/rollouts*`) reads
//! as a `RolloutSpec`, passes or fails `validate` with a message, and has the fields Shipway does
//! not implement named. Prints the tally; fails if one does not read or one the e2e suite
//! expects to work is refused.

use std::path::{Path, PathBuf};

use shipway_model::types::rollout::RolloutSpec;
use shipway_rollout::rollout::{unsupported, validate};

fn corpus() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("SHIPWAY_CORPUS") {
        return Some(PathBuf::from(root).join("argo"));
    }
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/argo");
    beside.is_dir().then_some(beside)
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

#[test]
fn the_corpus_rollouts_read_validate_and_name_what_is_not_implemented() {
    let Some(root) = corpus() else {
        println!("SKIPPED: no corpus (set SHIPWAY_CORPUS)");
        return;
    };
    let mut files = Vec::new();
    for dir in ["rollouts", "rollouts-demo", "rollouts-e2e"] {
        yaml_files(&root.join(dir), &mut files);
    }
    let (mut valid, mut invalid, mut unreadable) = (0, Vec::new(), Vec::new());
    let mut not_implemented = std::collections::BTreeMap::<String, usize>::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let Ok(docs) = shipway_model::load_str(&file.display().to_string(), &text) else {
            continue;
        };
        for doc in docs {
            let o = &doc.object;
            if (o.group(), o.kind.as_str()) != ("argoproj.io", "Rollout") {
                continue;
            }
            let spec: RolloutSpec = match o.spec_as() {
                Ok(s) => s,
                Err(e) => {
                    unreadable.push(format!("{}: {e}", file.display()));
                    continue;
                }
            };
            match validate(&o.metadata.name, &spec) {
                Ok(()) => valid += 1,
                Err(message) => invalid.push(format!("{}: {message}", file.display())),
            }
            for field in unsupported(&spec) {
                // Indices vary; the field is what matters.
                let field = regex_free_index(&field);
                *not_implemented.entry(field).or_default() += 1;
            }
        }
    }
    println!(
        "{valid} valid, {} invalid, {} unreadable",
        invalid.len(),
        unreadable.len()
    );
    for i in &invalid {
        println!("  invalid: {i}");
    }
    println!("not implemented (Rollouts naming it): {not_implemented:?}");
    assert!(unreadable.is_empty(), "{}", unreadable.join("\n"));
    assert!(valid > 30, "only {valid} valid Rollouts");
    // The e2e suite's functional Rollouts are meant to run.
    let refused: Vec<&String> = invalid
        .iter()
        .filter(|i| i.contains("rollouts-e2e/functional/"))
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
}

fn regex_free_index(field: &str) -> String {
    let mut out = String::new();
    let mut in_index = false;
    for c in field.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// Every Experiment of the corpus reads as an `ExperimentSpec` and (outside the e2e suite's
/// expected failures) passes `validate`; the fields Shipway does not implement are the ones
/// `unsupported` names (the controller puts them in an `UnsupportedFields` condition), checked
/// against what the file has. Experiments with only `generateName` are read from the raw
/// documents: Shipway's loader refuses them, saying so, and that refusal is checked too.
#[test]
fn the_corpus_experiments_read_validate_and_name_what_is_not_implemented() {
    use shipway_rollout::experiment::{self, ExperimentSpec};
    let Some(root) = corpus() else {
        println!("SKIPPED: no corpus (set SHIPWAY_CORPUS)");
        return;
    };
    let mut files = Vec::new();
    for dir in ["rollouts", "rollouts-demo", "rollouts-e2e"] {
        yaml_files(&root.join(dir), &mut files);
    }
    let known = [
        "duration",
        "progressDeadlineSeconds",
        "terminate",
        "scaleDownDelaySeconds",
        "templates",
        "analyses",
        "dryRun",
        "measurementRetention",
        "analysisRunMetadata",
    ];
    let mut seen = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let Ok(docs) = shipway_model::load::parse_documents(&shown, &text) else {
            continue;
        };
        let loaded = shipway_model::load_str(&shown, &text);
        for doc in docs {
            let v = &doc.value;
            if v["apiVersion"] != "argoproj.io/v1alpha1" || v["kind"] != "Experiment" {
                continue;
            }
            let meta = &v["metadata"];
            let name = meta["name"]
                .as_str()
                .or(meta["generateName"].as_str())
                .unwrap_or_default()
                .to_string();
            seen.push(format!("{shown} {name}"));
            if meta["name"].is_null() {
                let refused = loaded
                    .as_ref()
                    .err()
                    .is_some_and(|errs| errs.iter().any(|e| e.message.contains("generateName")));
                assert!(
                    refused,
                    "{shown}: generateName accepted or refused silently"
                );
            }
            let spec: ExperimentSpec = match serde_json::from_value(v["spec"].clone()) {
                Ok(s) => s,
                Err(e) => {
                    problems.push(format!("{shown}: unreadable: {e}"));
                    continue;
                }
            };
            // The e2e suite's expected failures fail later (a ReplicaSet Kubernetes refuses,
            // a missing template); the others are meant to run.
            let expected_failure = shown.contains("/expectedfailures/");
            match experiment::validate(&name, &spec) {
                Err(m) if !expected_failure => problems.push(format!("{shown}: {m}")),
                r => println!("{shown}: {r:?}"),
            }
            let extra: Vec<String> = v["spec"]
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| !known.contains(&k.as_str()))
                .map(|k| format!("spec.{k}"))
                .collect();
            let named: Vec<String> = experiment::unsupported(&spec)
                .into_iter()
                .filter(|f| !f.starts_with("spec.templates[") && !f.starts_with("spec.analyses["))
                .collect();
            assert_eq!(named, extra, "{shown}");
        }
    }
    println!("{} Experiments: {seen:#?}", seen.len());
    assert!(
        seen.len() >= 14,
        "only {} Experiments in the corpus",
        seen.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
