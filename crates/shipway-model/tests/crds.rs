//! The CustomResourceDefinitions users already have (Argo CD's and Argo Rollouts', from
//! `shared/corpus/argo/crds`) are accepted, each defining the kind it says.

use std::path::{Path, PathBuf};

use shipway_model::crd::custom_kind;

fn corpus() -> Option<PathBuf> {
    // `cargo xtask test` sets SHIPWAY_CORPUS to the corpus it found (and requires it in CI).
    if let Some(root) = std::env::var_os("SHIPWAY_CORPUS") {
        return Some(PathBuf::from(root).join("argo/crds"));
    }
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/argo/crds");
    beside.is_dir().then_some(beside)
}

#[test]
fn the_argo_crds_are_accepted() {
    let Some(root) = corpus() else {
        println!("SKIPPED: no corpus (set SHIPWAY_CORPUS)");
        return;
    };
    let mut kinds = Vec::new();
    for project in ["argo-cd", "argo-rollouts"] {
        let dir = root.join(project);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with("-crd.yaml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let docs = shipway_model::load_str(&file.display().to_string(), &text)
                .unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
            for doc in docs {
                match custom_kind(&doc.object) {
                    Ok(k) => kinds.push(format!(
                        "{}.{} {:?} {}",
                        k.kind, k.group, k.served, k.namespaced
                    )),
                    Err(problems) => panic!("{} refused: {problems:#?}", file.display()),
                }
            }
        }
    }
    assert_eq!(
        kinds,
        [
            "Application.argoproj.io [\"v1alpha1\"] true",
            "ApplicationSet.argoproj.io [\"v1alpha1\"] true",
            "AppProject.argoproj.io [\"v1alpha1\"] true",
            "AnalysisRun.argoproj.io [\"v1alpha1\"] true",
            "AnalysisTemplate.argoproj.io [\"v1alpha1\"] true",
            "ClusterAnalysisTemplate.argoproj.io [\"v1alpha1\"] false",
            "Experiment.argoproj.io [\"v1alpha1\"] true",
            "Rollout.argoproj.io [\"v1alpha1\"] true",
        ]
    );
}
