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
