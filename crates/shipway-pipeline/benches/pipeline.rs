//! Side-by-side benchmark (DESIGN §10): engine overhead per `run:` step against spawning the
//! same command with bash, and validating + planning a 1,000-job DAG.
//!
//! `cargo bench -p shipway-pipeline` prints one line per measurement with its budget.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use shipway_pipeline::exec::{Executor, RunSpec, Status, run_workflow};
use shipway_pipeline::load::load;
use shipway_pipeline::parse::parse_workflow;
use shipway_pipeline::plan::plan;

const STEPS: usize = 200;
const JOBS: usize = 1000;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bash_baseline(dir: &std::path::Path) -> Duration {
    // The same work without the engine: write the script, run `bash -e` on it, 200 times.
    let start = Instant::now();
    for i in 0..STEPS {
        let script = dir.join(format!("s{i}.sh"));
        std::fs::write(&script, "true").expect("write");
        // Output captured through pipes, as the engine captures it.
        let out = std::process::Command::new("bash")
            .arg("-e")
            .arg(&script)
            .output()
            .expect("bash");
        assert!(out.status.success());
    }
    start.elapsed()
}

async fn engine(dir: &std::path::Path, round: usize) -> Duration {
    let repo = dir.join("repo");
    let bundle = load(&repo, ".github/workflows/steps.yml");
    let spec = RunSpec {
        repository: "bench/bench".into(),
        actor: "bench".into(),
        run_id: 1,
        ..RunSpec::default()
    };
    let exec = Executor::new(
        repo.clone(),
        dir.join(format!("run{round}")),
        dir.join("cache"),
    )
    .parallel(2)
    .base_env(std::env::vars().collect());
    let start = Instant::now();
    let report = run_workflow(&bundle, spec, exec).await;
    let took = start.elapsed();
    assert_eq!(report.result, Status::Success);
    took
}

fn dag_workflow() -> String {
    let mut y = String::from("on: push\njobs:\n");
    for i in 0..JOBS {
        let _ = writeln!(y, "  j{i}:\n    runs-on: ubuntu-latest");
        // Each job needs up to three earlier ones: a wide, deep graph.
        let needs: Vec<String> = [i / 2, i.saturating_sub(1), i.saturating_sub(7)]
            .iter()
            .filter(|&&n| n < i)
            .map(|n| format!("j{n}"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !needs.is_empty() {
            let _ = writeln!(y, "    needs: [{}]", needs.join(", "));
        }
        let _ = writeln!(
            y,
            "    if: ${{{{ github.event_name == 'push' }}}}\n    steps:\n      - run: echo ${{{{ github.sha }}}}"
        );
    }
    y
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo/.github/workflows");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let mut y = String::from("on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n");
    for _ in 0..STEPS {
        y.push_str("      - run: true\n");
    }
    std::fs::write(repo.join("steps.yml"), y).expect("write");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let rounds = 5;
    let mut bash = Vec::new();
    let mut eng = Vec::new();
    for round in 0..rounds {
        bash.push(bash_baseline(dir.path()));
        eng.push(rt.block_on(engine(dir.path(), round)));
    }
    let (b, e) = (median(bash), median(eng));
    let per_step = (e.as_secs_f64() - b.as_secs_f64()) / STEPS as f64 * 1000.0;
    println!(
        "run steps: {STEPS} `run: true` steps: shipway {:.1} ms, bash {:.1} ms; overhead {per_step:.2} ms/step (budget <= 5 ms) {}",
        e.as_secs_f64() * 1000.0,
        b.as_secs_f64() * 1000.0,
        if per_step <= 5.0 { "OK" } else { "OVER BUDGET" }
    );

    let text = dag_workflow();
    let mut times = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let (w, problems) = parse_workflow("dag.yml", &text);
        assert!(problems.is_empty(), "{problems:?}");
        let jobs = plan(&w.expect("workflow")).expect("plan");
        assert_eq!(jobs.len(), JOBS);
        times.push(start.elapsed());
    }
    let t = median(times);
    println!(
        "plan dag: {JOBS} jobs parsed, validated and planned in {:.1} ms (budget < 1000 ms) {}",
        t.as_secs_f64() * 1000.0,
        if t < Duration::from_secs(1) {
            "OK"
        } else {
            "OVER BUDGET"
        }
    );

    // The same DAG run for real (one `echo` step a job), against one bash per job.
    std::fs::write(repo.join("dag.yml"), &text).expect("write");
    let bundle = load(&dir.path().join("repo"), ".github/workflows/dag.yml");
    let spec = RunSpec {
        sha: "0123".into(),
        repository: "bench/bench".into(),
        actor: "bench".into(),
        run_id: 2,
        ..RunSpec::default()
    };
    let exec = Executor::new(
        dir.path().join("repo"),
        dir.path().join("dagrun"),
        dir.path().join("cache"),
    )
    .parallel(2)
    .base_env(std::env::vars().collect());
    let start = Instant::now();
    let report = rt.block_on(run_workflow(&bundle, spec, exec));
    let engine = start.elapsed();
    assert_eq!(report.result, Status::Success);
    assert_eq!(report.jobs.len(), JOBS);
    let start = Instant::now();
    for _ in 0..JOBS {
        let out = std::process::Command::new("bash")
            .args(["-e", "-c", "echo 0123"])
            .output()
            .expect("bash");
        assert!(out.status.success());
    }
    let bash = start.elapsed();
    println!(
        "run dag: {JOBS} jobs run in {:.0} ms with --parallel 2; bash one after another {:.0} ms",
        engine.as_secs_f64() * 1000.0,
        bash.as_secs_f64() * 1000.0,
    );
}
