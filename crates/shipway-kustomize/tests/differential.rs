//! Differential property test: random bases and overlays rendered by Shipway and by
//! `kubectl kustomize` (when it is on the PATH) must print the same bytes, or both fail.
//!
//! Scalars are drawn from strings that stress the YAML printer (ones that read back as bools,
//! numbers, dates or nulls, indicators, multi-line text, long lines). `PROPTEST_CASES` sets how
//! many trees are tried (default 24: each one runs kubectl).

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use shipway_kustomize::{DiskFs, Options, build};

/// Whether the oracle is here. Without it the tests say SKIPPED, or fail when
/// `SHIPWAY_REQUIRE_KUBECTL` is set (`cargo xtask test --require-kubectl`, as CI runs).
fn kubectl_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let available = *AVAILABLE.get_or_init(|| {
        let found = Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("SKIPPED: the differential tests need `kubectl kustomize` on the PATH");
        }
        found
    });
    assert!(
        available || std::env::var_os("SHIPWAY_REQUIRE_KUBECTL").is_none(),
        "SHIPWAY_REQUIRE_KUBECTL is set but kubectl is not on the PATH"
    );
    available
}

const TRICKY: &[&str] = &[
    "true",
    "false",
    "yes",
    "No",
    "on",
    "OFF",
    "y",
    "n",
    "1",
    "-1",
    "+1",
    "1.0",
    "1e3",
    ".5",
    "0x1F",
    "0o17",
    "017",
    "08",
    "1_000",
    "1:20",
    "2020-01-02",
    "2001-12-14T21:59:43.10-05:00",
    "",
    "~",
    "null",
    "Null",
    ": x",
    "- x",
    "a: b",
    "#c",
    "a #b",
    "a#b",
    "?x",
    "x?",
    "[a]",
    "{b}",
    "*a",
    "&a",
    "!t",
    "%p",
    "@a",
    "`b",
    "'q'",
    "\"dq\"",
    "---",
    "...",
    "a,b",
    "x\ny",
    "x\ny\n",
    "x\n\ny\n\n",
    "\nlead",
    "  lead",
    "trail ",
    "tab\there",
    "é ü",
    "日本",
    "a\\b",
    "=",
    "a=b",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore",
    "word word word word word word word word word word word word word word word word word word",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(TRICKY).prop_map(str::to_string),
        1 => "[a-z][a-z0-9-]{0,12}",
    ]
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

#[derive(Debug, Clone)]
struct Tree {
    apps: Vec<(Vec<String>, Vec<String>)>,
    literals: Vec<String>,
    prefix: Option<&'static str>,
    suffix: Option<&'static str>,
    namespace: Option<&'static str>,
    label: Option<String>,
    annotation: Option<String>,
    image_tag: Option<&'static str>,
    replicas: Option<u8>,
    patch_env: Option<String>,
    merge_literal: Option<String>,
    reorder_none: bool,
    json_patch: Option<String>,
    delete_service: bool,
    secret: Option<String>,
    include_templates: bool,
}

fn tree() -> impl Strategy<Value = Tree> {
    let app = (
        proptest::collection::vec(scalar(), 0..3),
        proptest::collection::vec(scalar(), 0..3),
    );
    (
        proptest::collection::vec(app, 1..3),
        proptest::collection::vec(scalar(), 0..3),
        proptest::option::of(proptest::sample::select(&["p-", "team-"][..])),
        proptest::option::of(proptest::sample::select(&["-s", "-v2"][..])),
        proptest::option::of(proptest::sample::select(&["prod", "kube-system"][..])),
        proptest::option::of(scalar()),
        proptest::option::of(scalar()),
        proptest::option::of(proptest::sample::select(&["1.25", "2.0", "latest"][..])),
        proptest::option::of(0u8..5),
        proptest::option::of(scalar()),
        proptest::option::of(scalar()),
        (
            any::<bool>(),
            proptest::option::of(scalar()),
            any::<bool>(),
            proptest::option::of(scalar()),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                apps,
                literals,
                prefix,
                suffix,
                namespace,
                label,
                annotation,
                image_tag,
                replicas,
                patch_env,
                merge_literal,
                (reorder_none, json_patch, delete_service, secret, include_templates),
            )| Tree {
                apps,
                literals,
                prefix,
                suffix,
                namespace,
                label,
                annotation,
                image_tag,
                replicas,
                patch_env,
                merge_literal,
                reorder_none,
                json_patch,
                delete_service,
                secret,
                include_templates,
            },
        )
}

fn write_tree(root: &Path, t: &Tree) -> std::io::Result<()> {
    let base = root.join("base");
    let overlay = root.join("overlay");
    std::fs::create_dir_all(&base)?;
    std::fs::create_dir_all(&overlay)?;
    let mut resources = String::new();
    for (i, (env, args)) in t.apps.iter().enumerate() {
        let mut env_text = String::new();
        for (k, v) in env.iter().enumerate() {
            env_text.push_str(&format!(
                "        - name: V{k}\n          value: {}\n",
                q(v)
            ));
        }
        let args_text: Vec<String> = args.iter().map(|a| q(a)).collect();
        let doc = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app{i}\n  labels:\n    app: app{i}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: app{i}\n  template:\n    metadata:\n      labels:\n        app: app{i}\n    spec:\n      containers:\n      - name: main\n        image: nginx:1.0\n        args: [{}]\n        env:\n{env_text}        - name: FIXED\n          value: \"x\"\n        envFrom:\n        - configMapRef:\n            name: settings\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: app{i}\nspec:\n  selector:\n    app: app{i}\n  ports:\n  - port: 80\n    targetPort: 8080\n",
            args_text.join(", ")
        );
        std::fs::write(base.join(format!("app{i}.yaml")), doc)?;
        resources.push_str(&format!("- app{i}.yaml\n"));
    }
    let mut k =
        format!("resources:\n{resources}configMapGenerator:\n- name: settings\n  literals:\n");
    for (i, l) in t.literals.iter().enumerate() {
        k.push_str(&format!("  - {}\n", q(&format!("K{i}={l}"))));
    }
    k.push_str("  - BASE=1\n");
    std::fs::write(base.join("kustomization.yaml"), k)?;

    let mut k = String::from("resources:\n- ../base\n");
    if let Some(p) = t.prefix {
        k.push_str(&format!("namePrefix: {p}\n"));
    }
    if let Some(s) = t.suffix {
        k.push_str(&format!("nameSuffix: {s}\n"));
    }
    if let Some(ns) = t.namespace {
        k.push_str(&format!("namespace: {ns}\n"));
    }
    if let Some(l) = &t.label {
        k.push_str(&format!("commonLabels:\n  env: {}\n", q(l)));
    }
    if let Some(a) = &t.annotation {
        k.push_str(&format!("commonAnnotations:\n  note: {}\n", q(a)));
    }
    if let Some(tag) = t.image_tag {
        k.push_str(&format!("images:\n- name: nginx\n  newTag: \"{tag}\"\n"));
    }
    if let Some(n) = t.replicas {
        k.push_str(&format!("replicas:\n- name: app0\n  count: {n}\n"));
    }
    if let Some(v) = &t.patch_env {
        k.push_str(&format!(
            "patches:\n- patch: |\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: app0\n    spec:\n      template:\n        spec:\n          containers:\n          - name: main\n            env:\n            - name: PATCHED\n              value: {}\n",
            q(v)
        ));
    }
    let mut patches = String::new();
    if let Some(v) = &t.json_patch {
        patches.push_str(&format!(
            "- target:\n    kind: Deployment\n  patch: |\n    - op: add\n      path: /metadata/annotations\n      value: {{json: {}}}\n",
            q(v)
        ));
    }
    if t.delete_service {
        patches.push_str(
            "- patch: |\n    $patch: delete\n    apiVersion: v1\n    kind: Service\n    metadata:\n      name: app0\n",
        );
    }
    if !patches.is_empty() {
        if t.patch_env.is_none() {
            k.push_str("patches:\n");
        }
        k.push_str(&patches);
    }
    if let Some(v) = &t.secret {
        k.push_str(&format!(
            "secretGenerator:\n- name: creds\n  literals:\n  - {}\n",
            q(&format!("password={v}"))
        ));
    }
    if t.include_templates {
        k.push_str("labels:\n- pairs:\n    tier: web\n  includeTemplates: true\n");
    }
    if let Some(l) = &t.merge_literal {
        k.push_str(&format!(
            "configMapGenerator:\n- name: settings\n  behavior: merge\n  literals:\n  - {}\n",
            q(&format!("OVERLAY={l}"))
        ));
    }
    std::fs::write(overlay.join("kustomization.yaml"), k)?;
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(24);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn shipway_prints_what_kubectl_prints(t in tree()) {
        if !kubectl_available() {
            return Ok(());
        }
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        write_tree(dir.path(), &t).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let overlay = dir.path().join("overlay");
        let mut cmd = Command::new("kubectl");
        cmd.arg("kustomize").arg(&overlay);
        if t.reorder_none {
            cmd.args(["--reorder", "none"]);
        }
        let want = cmd.output().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let opts = Options {
            reorder: if t.reorder_none { shipway_kustomize::Reorder::None } else { shipway_kustomize::Reorder::Legacy },
            ..Options::default()
        };
        let got = build(&DiskFs, &overlay, &opts);
        match got {
            Ok(text) => {
                prop_assert!(want.status.success(), "kubectl failed but Shipway rendered:\n{}\nkubectl: {}", text, String::from_utf8_lossy(&want.stderr));
                prop_assert_eq!(text, String::from_utf8_lossy(&want.stdout).into_owned());
            }
            Err(e) => {
                prop_assert!(!want.status.success(), "Shipway failed ({}) but kubectl rendered:\n{}", e, String::from_utf8_lossy(&want.stdout));
            }
        }
    }
}

/// Hand-written trees for what the random ones do not reach (components, vars, replacements,
/// JSON patch files, number spellings, printer edge cases), each compared with kubectl.
const SCENARIOS: &[(&str, &[(&str, &str)])] = &[
    (
        "components",
        &[
            (
                "base/d.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx\n",
            ),
            ("base/kustomization.yaml", "resources:\n- d.yaml\n"),
            (
                "comp/kustomization.yaml",
                "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n- extra.yaml\npatches:\n- patch: |\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: web\n    spec:\n      replicas: 5\nconfigMapGenerator:\n- name: comp-cm\n  literals: [a=b]\n",
            ),
            (
                "comp/extra.yaml",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: extra\nspec:\n  ports:\n  - port: 1\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- ../base\ncomponents:\n- ../comp\nnamePrefix: o-\n",
            ),
        ],
    ),
    (
        "vars",
        &[
            (
                "top/r.yaml",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\nspec:\n  ports:\n  - port: 5432\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  template:\n    spec:\n      serviceAccountName: sa\n      containers:\n      - name: app\n        image: app\n        command: [\"run\", \"--db=$(DB_HOST):$(DB_PORT)\", \"$(DB_PORT)\", \"$$(KEEP)\"]\n        env:\n        - name: X\n          value: $(DB_PORT)\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: rb\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: r\nsubjects:\n- kind: ServiceAccount\n  name: sa\n- kind: ServiceAccount\n  name: default\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: r\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- r.yaml\nnamespace: ns1\nnamePrefix: v-\nvars:\n- name: DB_HOST\n  objref:\n    kind: Service\n    name: db\n    apiVersion: v1\n- name: DB_PORT\n  objref:\n    kind: Service\n    name: db\n    apiVersion: v1\n  fieldref:\n    fieldpath: spec.ports[0].port\n",
            ),
        ],
    ),
    (
        "replacements",
        &[
            (
                "top/r.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: src\ndata:\n  host: db.example.com\n  port: \"5432\"\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n      - name: app\n        image: app:1\n        env:\n        - name: HOST\n          value: x\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- r.yaml\nreplacements:\n- source:\n    kind: ConfigMap\n    name: src\n    fieldPath: data.host\n  targets:\n  - select:\n      kind: Deployment\n    fieldPaths:\n    - spec.template.spec.containers.[name=app].env.[name=HOST].value\n    - spec.template.metadata.annotations.host\n    options:\n      create: true\n- source:\n    kind: ConfigMap\n    name: src\n    fieldPath: data.port\n  targets:\n  - select:\n      kind: Deployment\n    fieldPaths:\n    - spec.replicas\n- source:\n    kind: Deployment\n    fieldPath: spec.template.spec.containers.0.image\n    options:\n      delimiter: \":\"\n      index: 1\n  targets:\n  - select:\n      kind: ConfigMap\n    fieldPaths:\n    - data.host\n    options:\n      delimiter: \".\"\n      index: 0\n",
            ),
        ],
    ),
    (
        "json6902-file-images-replicas",
        &[
            (
                "top/d.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      volumes:\n      - name: v\n        configMap:\n          name: c\n          defaultMode: 0644\n      containers:\n      - name: web\n        image: nginx\n        ports:\n        - containerPort: 1_000\n",
            ),
            (
                "top/p.yaml",
                "- op: replace\n  path: /spec/template/spec/containers/0/name\n  value: renamed\n- op: add\n  path: /metadata/labels\n  value: {x: \"1\"}\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- d.yaml\npatchesJson6902:\n- target:\n    group: apps\n    version: v1\n    kind: Deployment\n    name: web\n  path: p.yaml\nimages:\n- name: nginx\n  newName: registry.example.com:5000/nginx\n  digest: sha256:0123456789abcdef\nreplicas:\n- name: web\n  count: 2\n",
            ),
        ],
    ),
    (
        "json6902-replace-missing-member",
        &[
            (
                "top/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- cm.yaml\npatches:\n- target:\n    kind: ConfigMap\n  patch: |\n    - op: replace\n      path: /data/missing\n      value: x\n",
            ),
        ],
    ),
    (
        "json6902-replace-missing-parent",
        &[
            (
                "top/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- cm.yaml\npatches:\n- target:\n    kind: ConfigMap\n  patch: |\n    - op: replace\n      path: /spec/x\n      value: x\n",
            ),
        ],
    ),
    (
        "json6902-add-under-missing-annotations",
        &[
            (
                "top/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- cm.yaml\npatches:\n- target:\n    kind: ConfigMap\n  patch: |\n    - op: add\n      path: /metadata/annotations/n\n      value: 5\n    - op: add\n      path: /metadata/annotations/m\n      value: [1]\n",
            ),
        ],
    ),
    (
        "json6902-add-under-missing-labels",
        &[
            (
                "top/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- cm.yaml\npatches:\n- target:\n    kind: ConfigMap\n  patch: |\n    - op: add\n      path: /metadata/labels/l\n      value: v\n",
            ),
        ],
    ),
    (
        "json6902-add-labels-no-empty-annotations",
        &[
            (
                "top/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- cm.yaml\npatches:\n- target:\n    kind: ConfigMap\n  patch: |\n    - op: add\n      path: /metadata/labels\n      value: {x: \"1\"}\n",
            ),
        ],
    ),
    (
        "replacements-dotted-keys-delimiter",
        &[
            (
                "top/r.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: src\n  labels:\n    acme.io/cluster: east\ndata:\n  port: 8080\n  replicas: \"3\"\n  image: nginx:1.25\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n    acme.io/cluster: west\nspec:\n  replicas: 1\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.0\n        env:\n        - name: PORT\n          value: \"1\"\n      - name: side\n        image: busybox\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- r.yaml\nreplacements:\n- source:\n    kind: ConfigMap\n    name: src\n    fieldPath: metadata.labels.[acme.io/cluster]\n  targets:\n  - select:\n      kind: Deployment\n    fieldPaths:\n    - metadata.labels.[acme.io/cluster]\n    - spec.template.metadata.labels.[acme.io/cluster]\n    - spec.template.metadata.annotations.[x.y/z]\n    options:\n      create: true\n- source:\n    kind: ConfigMap\n    name: src\n    fieldPath: data.port\n  targets:\n  - select:\n      kind: Deployment\n    fieldPaths:\n    - spec.template.spec.containers.[name=web].env.[name=PORT].value\n    - metadata.annotations.[port.acme.io/n]\n    options:\n      create: true\n- source:\n    kind: ConfigMap\n    name: src\n    fieldPath: data.image\n    options:\n      delimiter: ':'\n      index: 1\n  targets:\n  - select:\n      kind: Deployment\n    fieldPaths:\n    - spec.template.spec.containers.[name=web].image\n    options:\n      delimiter: ':'\n      index: 1\n",
            ),
        ],
    ),
    (
        "replacements-number-and-string-types",
        &[
            (
                "top/r.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: src\n  labels:\n    acme.io/cluster: east\n    n: \"42\"\n  annotations:\n    a.b/c: \"7\"\ndata:\n  port: 8080\n  sport: \"8080\"\n  yes: \"yes\"\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n    acme.io/cluster: west\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.0\n        ports:\n        - containerPort: 80\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- r.yaml\nreplacements:\n- source: {kind: ConfigMap, name: src, fieldPath: data.sport}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths:\n    - spec.replicas\n    - spec.template.spec.containers.[name=web].ports.0.containerPort\n    - metadata.annotations.made\n    - spec.made\n    options: {create: true}\n- source: {kind: ConfigMap, name: src, fieldPath: data.port}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths:\n    - metadata.labels.[acme.io/port]\n    - metadata.labels.plain\n    options: {create: true}\n- source: {kind: ConfigMap, name: src, fieldPath: metadata.labels.n}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths: [spec.made2]\n    options: {create: true}\n- source: {kind: ConfigMap, name: src, fieldPath: data.yes}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths: [spec.made3]\n    options: {create: true}\n- source:\n    kind: ConfigMap\n    name: src\n    fieldPath: metadata.labels.[acme.io/cluster]\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths: [spec.made4]\n    options: {create: true}\n",
            ),
        ],
    ),
    (
        "replacements-create-elements-and-keys",
        &[
            (
                "top/r.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: src\ndata:\n  v: x1\n  m:\n    a: 1\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.0\n        args: [a, b]\n      - name: side\n        image: busybox\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- r.yaml\nreplacements:\n- source:\n    kind: ConfigMap\n    name: src\n    fieldPath: data.v\n  targets:\n  - select:\n      kind: Deployment\n    fieldPaths:\n    - spec.template.spec.containers.[name=new].image\n    - spec.template.spec.containers.[name=web].args.[=b]\n    - spec.template.spec.containers.0.args.2\n    - spec.template.spec.containers.[name=web].env.[name=X].value\n    - spec.newlist.[name=a].x\n    - metadata.annotations.[x.y].z\n    - spec.template.spec.containers.*.newf\n    options: {create: true}\n- source:\n    kind: ConfigMap\n    name: src\n    fieldPath: data.m\n  targets:\n  - select:\n      kind: Deployment\n    fieldPaths:\n    - spec.template.spec.containers.[name=side].image\n",
            ),
        ],
    ),
    (
        "json6902-file-empties-annotations",
        &[
            (
                "top/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations:\n    x: \"1\"\n  labels:\n    l: v\ndata:\n  a: \"1\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\n  annotations: {}\n  labels: {}\n",
            ),
            (
                "top/p.yaml",
                "- op: remove\n  path: /metadata/annotations/x\n- op: remove\n  path: /metadata/labels/l\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- cm.yaml\npatchesJson6902:\n- target:\n    version: v1\n    kind: ConfigMap\n    name: c\n  path: p.yaml\n",
            ),
        ],
    ),
    (
        "patches-file-moves-the-last-annotation",
        &[
            (
                "top/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations:\n    x: \"1\"\n  labels:\n    l: v\ndata:\n  a: \"1\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\n  annotations: {}\n  labels: {}\n",
            ),
            (
                "top/p.yaml",
                "- op: move\n  from: /metadata/annotations/x\n  path: /metadata/labels\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- cm.yaml\npatches:\n- target:\n    kind: ConfigMap\n    name: c\n  path: p.yaml\n",
            ),
        ],
    ),
    (
        "json6902-file-add-under-missing-annotations",
        &[
            (
                "top/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
            ),
            (
                "top/p.yaml",
                "- op: add\n  path: /metadata/annotations/n\n  value: x\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- cm.yaml\npatchesJson6902:\n- target:\n    version: v1\n    kind: ConfigMap\n    name: c\n  path: p.yaml\n",
            ),
        ],
    ),
    (
        "json6902-file-add-under-annotations-after-prefix",
        &[
            (
                "top/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
            ),
            (
                "top/p.yaml",
                "- op: add\n  path: /metadata/annotations/n\n  value: 5\n",
            ),
            (
                "top/kustomization.yaml",
                "namePrefix: p-\nresources:\n- cm.yaml\npatchesJson6902:\n- target:\n    version: v1\n    kind: ConfigMap\n    name: c\n  path: p.yaml\n",
            ),
        ],
    ),
    (
        "json6902-file-rename-leaves-references",
        &[
            (
                "top/r.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: x\n    envFrom:\n    - configMapRef:\n        name: c\n",
            ),
            (
                "top/p.yaml",
                "- op: replace\n  path: /metadata/name\n  value: d\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- r.yaml\npatchesJson6902:\n- target:\n    version: v1\n    kind: ConfigMap\n    name: c\n  path: p.yaml\n",
            ),
        ],
    ),
    (
        "json6902-empty-operations",
        &[
            (
                "top/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations:\n    x: \"1\"\n  labels:\n    l: v\ndata:\n  a: \"1\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\n  annotations: {}\n  labels: {}\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- cm.yaml\npatches:\n- target:\n    kind: ConfigMap\n  patch: \"[]\"\n",
            ),
        ],
    ),
    (
        "json6902-copy-test-missing-members",
        &[
            (
                "top/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n  annotations:\n    x: \"1\"\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- cm.yaml\npatches:\n- target:\n    name: c\n  patch: |\n    - op: copy\n      from: /data/missing\n      path: /data/c\n    - op: test\n      path: /data/gone\n      value: null\n- target:\n    name: d\n  patch: |\n    - op: replace\n      path: /metadata/annotations\n      value: east\n",
            ),
        ],
    ),
    (
        "replacements-later-fixes-a-mismatch",
        &[
            (
                "top/r.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: src\ndata:\n  n: \"3\"\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n  - port: 80\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- r.yaml\nreplacements:\n- source: {kind: ConfigMap, name: src}\n  targets:\n  - select: {kind: Service}\n    fieldPaths: [spec.ports.0.port]\n- source: {kind: ConfigMap, name: src, fieldPath: data.n}\n  targets:\n  - select: {kind: Service}\n    fieldPaths: [spec.ports.0.port]\n",
            ),
        ],
    ),
    (
        "replacements-annotation-takes-the-text",
        &[
            (
                "top/r.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: src\n  labels:\n    v: \"null\"\n",
            ),
            (
                "top/kustomization.yaml",
                "resources:\n- r.yaml\nreplacements:\n- source: {kind: ConfigMap, fieldPath: metadata.labels.v}\n  targets:\n  - select: {kind: ConfigMap}\n    fieldPaths: [metadata.annotations.copied, data.made]\n    options: {create: true}\n",
            ),
        ],
    ),
];

#[test]
fn scenarios_print_what_kubectl_prints() {
    if !kubectl_available() {
        return;
    }
    let mut failures = Vec::new();
    for (name, files) in SCENARIOS {
        let Ok(dir) = tempfile::tempdir() else {
            failures.push(format!("{name}: no temp dir"));
            continue;
        };
        for (path, text) in *files {
            let p = dir.path().join(path);
            if let Some(parent) = p.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(&p, text);
        }
        let top = dir.path().join("top");
        let want = Command::new("kubectl").arg("kustomize").arg(&top).output();
        let Ok(want) = want else {
            failures.push(format!("{name}: kubectl did not run"));
            continue;
        };
        let got = build(&DiskFs, &top, &Options::default());
        match got {
            Ok(text) if want.status.success() && text.as_bytes() == want.stdout.as_slice() => {}
            Ok(text) => failures.push(format!(
                "{name}: differs\n--- shipway\n{text}--- kubectl\n{}",
                String::from_utf8_lossy(&want.stdout)
            )),
            Err(e) if !want.status.success() => {
                let _ = e;
            }
            Err(e) => failures.push(format!("{name}: shipway failed: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
