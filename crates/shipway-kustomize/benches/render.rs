//! `kubectl kustomize` against Shipway's renderer, side by side in one run: whole processes on
//! (a) the conformance corpus and (b) a generated tree of 1,000 resources in 3 overlay levels with
//! patches and generators, (c) a patch-heavy tree of 1,000 resources (JSON 6902 patches targeted
//! by name regex and label selector, replicas, images, generators); then the in-process time of
//! a typical base + overlay.
//!
//! Shipway's side runs as a process too: this benchmark re-executes itself with `--render DIR`,
//! which renders and prints exactly as `shipway render` does (process start, read, build, write).
//! `cargo bench -p shipway-kustomize --bench render`; without `kubectl` on the PATH only Shipway's
//! side is measured.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shipway_kustomize::{DiskFs, MemFs, Options, build};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--render") {
        let Some(dir) = args.get(i + 1) else {
            std::process::exit(2);
        };
        match build(&DiskFs, Path::new(dir), &Options::default()) {
            Ok(out) => print!("{out}"),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        return;
    }
    // `--patch-heavy DIR`: only write the patch-heavy tree there (to time or profile by hand).
    if let Some(i) = args.iter().position(|a| a == "--patch-heavy") {
        let Some(dir) = args.get(i + 1) else {
            std::process::exit(2);
        };
        if let Err(e) = generate_patch_heavy_tree(Path::new(dir), 250) {
            eprintln!("cannot write the patch-heavy tree: {e}");
            std::process::exit(1);
        }
        return;
    }
    // `--typical N`: only the in-process typical overlay, N times (for profilers).
    if let Some(i) = args.iter().position(|a| a == "--typical") {
        let n: u32 = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(1000);
        let fs = typical();
        for _ in 0..n {
            let _ = build(&fs, Path::new("/app/overlay"), &Options::default());
        }
        return;
    }
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot find this executable: {e}");
            return;
        }
    };
    let kubectl = Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());

    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "workload", "kubectl", "shipway", "ratio"
    );

    // (a) The corpus: every case once, as processes.
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/kustomize/cases");
    let mut dirs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&corpus) {
        for e in entries.flatten() {
            let case = e.path();
            let text = std::fs::read_to_string(case.join("case.json")).unwrap_or_default();
            let b = text
                .split("\"build\"")
                .nth(1)
                .and_then(|r| r.split('"').nth(1))
                .unwrap_or(".")
                .to_string();
            dirs.push(case.join("fs").join(b));
        }
    }
    dirs.sort();
    if !dirs.is_empty() {
        // Interleaved case by case, so that load from other processes on the machine falls on
        // both sides alike.
        let mut ship = Duration::ZERO;
        let mut kube = Duration::ZERO;
        for d in &dirs {
            let one = std::slice::from_ref(d);
            ship += time_all(&me, one, true);
            if kubectl {
                kube += time_all(Path::new("kubectl"), one, false);
            }
        }
        row(
            &format!("corpus ({} builds, processes)", dirs.len()),
            kubectl.then_some(kube),
            ship,
        );
    }

    // (b) A generated tree: 1,000 resources, base + 2 overlays, patches and generators.
    // SHIPWAY_BENCH_TREE keeps the generated tree there, to compare outputs by hand.
    let keep = std::env::var_os("SHIPWAY_BENCH_TREE").map(PathBuf::from);
    let tree = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("shipway-bench-{}", std::process::id()))
    });
    if let Err(e) = generate_tree(&tree, 1000) {
        eprintln!("cannot write the generated tree: {e}");
        return;
    }
    let top = vec![tree.join("prod")];
    // One warm-up each, then the best of five.
    let ship = best_of(5, || time_all(&me, &top, true));
    let kube = kubectl.then(|| best_of(5, || time_all(Path::new("kubectl"), &top, false)));
    row("1,000 resources, 3 levels (process)", kube, ship);
    let in_process = best_of(5, || {
        let t = Instant::now();
        let _ = build(&DiskFs, &top[0], &Options::default());
        t.elapsed()
    });
    row("1,000 resources, 3 levels (in process)", None, in_process);
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&tree);
    }

    // (c) The patch-heavy tree: 1,000 resources, JSON patches by name regex and label selector.
    let heavy = std::env::temp_dir().join(format!("shipway-bench-heavy-{}", std::process::id()));
    if let Err(e) = generate_patch_heavy_tree(&heavy, 250) {
        eprintln!("cannot write the patch-heavy tree: {e}");
        return;
    }
    let top = vec![heavy.join("production")];
    let ship = best_of(5, || time_all(&me, &top, true));
    let kube = kubectl.then(|| best_of(5, || time_all(Path::new("kubectl"), &top, false)));
    row("1,000 resources, patch-heavy (process)", kube, ship);
    let in_process = best_of(5, || {
        let t = Instant::now();
        let _ = build(&DiskFs, &top[0], &Options::default());
        t.elapsed()
    });
    row(
        "1,000 resources, patch-heavy (in process)",
        None,
        in_process,
    );
    let _ = std::fs::remove_dir_all(&heavy);

    // (d) A typical base + overlay, in process, from memory.
    let fs = typical();
    let dir = Path::new("/app/overlay");
    if let Err(e) = build(&fs, dir, &Options::default()) {
        eprintln!("typical overlay failed: {e}");
        return;
    }
    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        let _ = build(&fs, dir, &Options::default());
    }
    let per = t.elapsed() / n;
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "typical base + overlay (in process, mean)",
        "-",
        fmt(per),
        if per < Duration::from_millis(1) {
            "<1ms ok"
        } else {
            ">1ms!"
        }
    );
}

fn fmt(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    }
}

fn row(name: &str, kube: Option<Duration>, ship: Duration) {
    let (k, ratio) = match kube {
        Some(k) => (
            fmt(k),
            format!("{:.1}x", k.as_secs_f64() / ship.as_secs_f64().max(1e-9)),
        ),
        None => ("-".into(), "-".into()),
    };
    println!("{name:<44} {k:>12} {:>12} {ratio:>8}", fmt(ship));
}

fn best_of(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let _ = f();
    (0..n).map(|_| f()).min().unwrap_or_default()
}

/// Runs one process per directory, in sequence, and returns the total wall time.
fn time_all(program: &Path, dirs: &[PathBuf], shipway: bool) -> Duration {
    let t = Instant::now();
    for d in dirs {
        let mut cmd = Command::new(program);
        if shipway {
            cmd.arg("--render").arg(d);
        } else {
            cmd.arg("kustomize").arg(d);
        }
        let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
    t.elapsed()
}

/// The patch-heavy shape: a base of `apps` × (Deployment, Service, ConfigMap, ServiceAccount);
/// `overlay` adds labels, a namePrefix, images and a configMapGenerator; `production` adds
/// replicas, generators, a secretGenerator and JSON 6902 patches targeted by name regex and by
/// label selector.
fn generate_patch_heavy_tree(root: &Path, apps: usize) -> std::io::Result<()> {
    let base = root.join("base");
    let overlay = root.join("overlay");
    let prod = root.join("production");
    for d in [&base, &overlay, &prod] {
        std::fs::create_dir_all(d)?;
    }
    let mut k = String::from("resources:\n");
    for i in 0..apps {
        let name = format!("app{i}");
        let team = i % 10;
        let text = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\n    team: team{team}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      serviceAccountName: {name}\n      containers:\n      - name: main\n        image: example/{name}:1.0\n        envFrom:\n        - configMapRef:\n            name: {name}-config\n        ports:\n        - containerPort: 8080\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\n    team: team{team}\nspec:\n  selector:\n    app: {name}\n  ports:\n  - port: 80\n    targetPort: 8080\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-config\n  labels:\n    app: {name}\ndata:\n  INDEX: \"{i}\"\n  MODE: base\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n  labels:\n    app: {name}\n"
        );
        std::fs::write(base.join(format!("{name}.yaml")), text)?;
        k.push_str(&format!("- {name}.yaml\n"));
    }
    std::fs::write(base.join("kustomization.yaml"), k)?;
    let mut k = String::from(
        "resources:\n- ../base\nnamePrefix: stage-\nlabels:\n- pairs:\n    env: staging\n    owner: platform\n  includeSelectors: false\nimages:\n",
    );
    for i in (0..apps).step_by(5) {
        k.push_str(&format!("- name: example/app{i}\n  newTag: \"2.{i}\"\n"));
    }
    k.push_str("configMapGenerator:\n- name: shared\n  literals:\n  - REGION=eu\n  - TIER=web\n");
    std::fs::write(overlay.join("kustomization.yaml"), k)?;
    std::fs::write(
        prod.join("replicas.yaml"),
        "- op: replace\n  path: /spec/replicas\n  value: 3\n- op: add\n  path: /metadata/annotations/rollout\n  value: canary\n",
    )?;
    std::fs::write(
        prod.join("team.yaml"),
        "- op: add\n  path: /metadata/labels/oncall\n  value: pager\n",
    )?;
    let mut k = String::from("resources:\n- ../overlay\nreplicas:\n");
    for i in (0..apps).step_by(3) {
        k.push_str(&format!("- name: stage-app{i}\n  count: 2\n"));
    }
    k.push_str(
        "configMapGenerator:\n- name: shared\n  behavior: merge\n  literals:\n  - REGION=us\n- name: prod-flags\n  literals:\n  - FEATURE_X=on\nsecretGenerator:\n- name: prod-db\n  literals:\n  - password=s3cret\npatches:\n",
    );
    for t in 0..10 {
        k.push_str(&format!(
            "- target:\n    kind: Deployment\n    name: stage-app{t}.*\n  path: replicas.yaml\n- target:\n    labelSelector: team=team{t}\n  path: team.yaml\n"
        ));
    }
    std::fs::write(prod.join("kustomization.yaml"), k)?;
    Ok(())
}

/// Writes base (resources + generators), mid (prefix, labels, patches) and prod (namespace,
/// images, a JSON patch, generator merge) with `n` resources in all.
fn generate_tree(root: &Path, n: usize) -> std::io::Result<()> {
    let base = root.join("base");
    let mid = root.join("mid");
    let prod = root.join("prod");
    for d in [&base, &mid, &prod] {
        std::fs::create_dir_all(d)?;
    }
    let apps = n / 4;
    let mut files = Vec::new();
    for i in 0..apps {
        let name = format!("app{i}");
        let text = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      - name: main\n        image: example/{name}:1.0\n        envFrom:\n        - configMapRef:\n            name: {name}-config\n        ports:\n        - containerPort: 8080\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector:\n    app: {name}\n  ports:\n  - port: 80\n    targetPort: 8080\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n"
        );
        std::fs::write(base.join(format!("{name}.yaml")), text)?;
        files.push(format!("{name}.yaml"));
    }
    let mut k = String::from("resources:\n");
    for f in &files {
        k.push_str(&format!("- {f}\n"));
    }
    k.push_str("configMapGenerator:\n");
    for i in 0..apps {
        k.push_str(&format!(
            "- name: app{i}-config\n  literals:\n  - INDEX={i}\n  - MODE=base\n"
        ));
    }
    std::fs::write(base.join("kustomization.yaml"), k)?;
    let mut k = String::from(
        "resources:\n- ../base\nnamePrefix: mid-\nlabels:\n- pairs:\n    tier: web\n  includeSelectors: true\npatches:\n",
    );
    for i in (0..apps).step_by(10) {
        k.push_str(&format!(
            "- patch: |\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: app{i}\n    spec:\n      replicas: 3\n"
        ));
    }
    std::fs::write(mid.join("kustomization.yaml"), k)?;
    let mut k = String::from(
        "resources:\n- ../mid\nnamespace: prod\ncommonAnnotations:\n  owner: platform\nimages:\n- name: example/app1\n  newTag: \"2.0\"\npatches:\n- target:\n    kind: Deployment\n  patch: |\n    - op: add\n      path: /spec/template/metadata/annotations\n      value: {rollout: canary}\nconfigMapGenerator:\n",
    );
    for i in (0..apps).step_by(20) {
        k.push_str(&format!(
            "- name: app{i}-config\n  behavior: merge\n  literals:\n  - MODE=prod\n"
        ));
    }
    std::fs::write(prod.join("kustomization.yaml"), k)?;
    Ok(())
}

/// A base of a Deployment, Service and ConfigMap generator with an overlay that prefixes,
/// labels, patches and sets an image.
fn typical() -> MemFs {
    let mut fs = MemFs::new();
    fs.insert(
        "/app/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n- service.yaml\nconfigMapGenerator:\n- name: web-config\n  literals:\n  - LOG_LEVEL=info\n",
    );
    fs.insert(
        "/app/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: example/web:1.0\n        envFrom:\n        - configMapRef:\n            name: web-config\n",
    );
    fs.insert(
        "/app/base/service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n",
    );
    fs.insert(
        "/app/overlay/kustomization.yaml",
        "resources:\n- ../base\nnamePrefix: prod-\nnamespace: prod\nlabels:\n- pairs:\n    env: prod\n  includeSelectors: true\nimages:\n- name: example/web\n  newTag: \"2.0\"\npatches:\n- patch: |\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: web\n    spec:\n      replicas: 3\n",
    );
    fs
}
