//! Builds from memory: the behaviours the corpus does not pin down, and the failure cases.

use std::path::Path;

use crate::{Error, LoadRestrictor, MemFs, Options, Reorder, build, build_dir};

fn fs(files: &[(&str, &str)]) -> MemFs {
    let mut fs = MemFs::new();
    for (p, c) in files {
        fs.insert(p, *c);
    }
    fs
}

fn render(files: &[(&str, &str)], dir: &str) -> Result<String, Error> {
    build(&fs(files), Path::new(dir), &Options::default())
}

fn err(files: &[(&str, &str)], dir: &str) -> String {
    match render(files, dir) {
        Ok(out) => panic!("expected an error, got:\n{out}"),
        Err(e) => e.to_string(),
    }
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n";

#[test]
fn renders_from_memory() {
    let out = render(
        &[
            (
                "/k/kustomization.yaml",
                "resources:\n- cm.yaml\nnamePrefix: p-\n",
            ),
            ("/k/cm.yaml", CM),
        ],
        "/k",
    );
    assert_eq!(
        out.ok().as_deref(),
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: p-a\n")
    );
}

#[test]
fn unknown_field_names_file_and_line() {
    let e = err(
        &[(
            "/k/kustomization.yaml",
            "resources: []\nresourcez:\n- a.yaml\n",
        )],
        "/k",
    );
    assert_eq!(
        e,
        "/k/kustomization.yaml:2:1: invalid Kustomization: unknown field \"resourcez\""
    );
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let e = err(
        &[
            ("/k/kustomization.yaml", "resources:\n- cm.yaml\n"),
            (
                "/k/cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [a\n",
            ),
        ],
        "/k",
    );
    assert!(e.starts_with("/k/cm.yaml:"), "{e}");
}

#[test]
fn unsupported_fields_are_named() {
    let e = err(
        &[("/k/kustomization.yaml", "helmCharts:\n- name: x\n")],
        "/k",
    );
    assert!(e.contains("helmCharts is not supported"), "{e}");
    let e = err(
        &[(
            "/k/kustomization.yaml",
            "resources:\n- https://github.com/example/repo//base?ref=v1\n",
        )],
        "/k",
    );
    assert!(e.contains("is remote"), "{e}");
    let e = err(
        &[
            ("/k/kustomization.yaml", "transformers:\n- p.yaml\n"),
            (
                "/k/p.yaml",
                "apiVersion: example.com/v1\nkind: Mine\nmetadata:\n  name: p\n",
            ),
        ],
        "/k",
    );
    assert!(e.contains("plugin kind \"Mine\" is not supported"), "{e}");
}

#[test]
fn files_outside_the_root_are_refused_unless_relaxed() {
    let files = [
        ("/k/in/kustomization.yaml", "resources:\n- ../cm.yaml\n"),
        ("/k/cm.yaml", CM),
    ];
    let e = err(&files, "/k/in");
    assert!(e.contains("is not in or below"), "{e}");
    let relaxed = Options {
        load_restrictor: LoadRestrictor::None,
        ..Options::default()
    };
    assert!(build(&fs(&files), Path::new("/k/in"), &relaxed).is_ok());
}

#[test]
fn cycles_and_conflicts_fail() {
    let e = err(
        &[
            ("/k/a/kustomization.yaml", "resources:\n- ../b\n"),
            ("/k/b/kustomization.yaml", "resources:\n- ../a\n"),
        ],
        "/k/a",
    );
    assert!(e.contains("cycle detected"), "{e}");
    let e = err(
        &[
            ("/k/kustomization.yaml", "resources:\n- a.yaml\n- b.yaml\n"),
            ("/k/a.yaml", CM),
            ("/k/b.yaml", CM),
        ],
        "/k",
    );
    assert!(e.contains("already registered id"), "{e}");
    let e = err(
        &[
            (
                "/k/kustomization.yaml",
                "resources:\n- a.yaml\npatches:\n- patch: |\n    apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: nope\n",
            ),
            ("/k/a.yaml", CM),
        ],
        "/k",
    );
    assert!(
        e.contains("no resource matches strategic merge patch"),
        "{e}"
    );
    let e = err(
        &[("/k/kustomization.yaml", "resources:\n- missing.yaml\n")],
        "/k",
    );
    assert!(e.contains("missing.yaml"), "{e}");
}

#[test]
fn directory_without_kustomization_renders_its_files() {
    let files = [
        ("/d/b.yaml", CM),
        (
            "/d/a.json",
            "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"s\"}}",
        ),
        (
            "/d/sub/c.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
        ),
        ("/d/notes.txt", "ignored"),
    ];
    let flat = build_dir(&fs(&files), Path::new("/d"), false).ok();
    assert_eq!(
        flat.as_deref(),
        Some(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"
        )
    );
    let deep = build_dir(&fs(&files), Path::new("/d"), true).unwrap_or_default();
    assert!(deep.ends_with("  name: c\n"), "{deep}");
}

#[test]
fn reorder_none_keeps_accumulation_order() {
    let files = [
        ("/k/kustomization.yaml", "resources:\n- d.yaml\n- ns.yaml\n"),
        ("/k/d.yaml", CM),
        (
            "/k/ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n",
        ),
    ];
    let none = Options {
        reorder: Reorder::None,
        ..Options::default()
    };
    let out = build(&fs(&files), Path::new("/k"), &none).unwrap_or_default();
    assert!(out.starts_with("apiVersion: v1\nkind: ConfigMap"), "{out}");
    let legacy = render(&files, "/k").unwrap_or_default();
    assert!(
        legacy.starts_with("apiVersion: v1\nkind: Namespace"),
        "{legacy}"
    );
}

/// Inputs a fuzzer would try: none may panic. Only that: some of them build (an empty
/// kustomization does); how the others fail is pinned down by the error tests above.
#[test]
fn odd_inputs_do_not_panic() {
    let odd = [
        "",
        "---",
        "- a\n- b\n",
        "a: [",
        "resources: 3\n",
        "resources:\n- {}\n",
        "patches:\n- {}\n",
        "patches:\n- patch: '[1]'\n  target: {kind: X}\n",
        "configMapGenerator:\n- literals: [a]\n",
        "configMapGenerator:\n- name: x\n  literals: ['=a']\n",
        "images:\n- name: '['\n  newTag: x\n",
        "replicas:\n- name: x\n  count: 1\n",
        "vars:\n- name: V\n  objref: {kind: ConfigMap, name: a, apiVersion: v1}\n",
        "replacements:\n- source: {kind: ConfigMap}\n  targets: []\n",
        "sortOptions: {order: weird}\n",
        "namespace: [x]\n",
        "commonLabels: x\n",
        "labels:\n- pairs: {a: b}\n  fields: [{}]\n",
    ];
    for k in odd {
        let files = [("/k/kustomization.yaml", k), ("/k/a.yaml", CM)];
        let _ = render(&files, "/k");
    }
}

/// `render` returns the objects `build` prints, each with the file and line it came from (a
/// List's items with the List's), and generated objects with none.
#[test]
fn render_returns_objects_with_their_file_and_line() {
    let files = [
        (
            "/app/overlay/kustomization.yaml",
            "resources:\n- ../base\n- extra.yaml\nnamePrefix: prod-\nconfigMapGenerator:\n- name: gen\n  literals: [a=b]\n",
        ),
        ("/app/base/kustomization.yaml", "resources:\n- web.yaml\n"),
        (
            "/app/base/web.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n---\n# the app\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
        ),
        (
            "/app/overlay/extra.yaml",
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: one}\n",
        ),
    ];
    let fs = fs(&files);
    let opts = Options {
        reorder: Reorder::None,
        ..Options::default()
    };
    let got: Vec<(String, Option<String>)> = crate::render(&fs, Path::new("/app/overlay"), &opts)
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                format!("{}/{}", r.object.kind, r.object.metadata.name),
                r.source.map(|s| s.to_string()),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "Service/prod-web".to_string(),
                Some("/app/base/web.yaml:1".to_string())
            ),
            (
                "Deployment/prod-web".to_string(),
                Some("/app/base/web.yaml:7".to_string())
            ),
            (
                "ConfigMap/prod-one".to_string(),
                Some("/app/overlay/extra.yaml:1".to_string())
            ),
            // The hash is kubectl kustomize's for this tree.
            ("ConfigMap/prod-gen-4h2mbtbbt6".to_string(), None),
        ]
    );
    // The same build, printed.
    let printed = build(&fs, Path::new("/app/overlay"), &opts).unwrap();
    assert_eq!(printed.matches("\n---\n").count(), 3, "{printed}");
    // A plain directory too (Argo CD's directory source).
    let plain = self::fs(&[("/plain/web.yaml", files[2].1)]);
    let plain: Vec<String> = crate::render_dir(&plain, Path::new("/plain"), false)
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.object.kind, r.source.as_ref().unwrap()))
        .collect();
    assert_eq!(
        plain,
        ["Service /plain/web.yaml:1", "Deployment /plain/web.yaml:7"]
    );
}

#[test]
fn a_plain_directory_refuses_links_out_of_it_and_does_not_loop() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(tmp.path().join("elsewhere")).unwrap();
    std::fs::write(dir.join("a.yaml"), CM).unwrap();
    std::fs::write(dir.join("sub/b.yaml"), CM.replace("name: a", "name: b")).unwrap();
    std::fs::write(
        tmp.path().join("secret.yaml"),
        CM.replace("name: a", "name: s"),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("elsewhere/c.yaml"),
        CM.replace("name: a", "name: c"),
    )
    .unwrap();
    // Links inside the directory: to a file in it, a cycle back to it, and one to a sibling.
    symlink(dir.join("a.yaml"), dir.join("again.yaml")).unwrap();
    symlink(&dir, dir.join("sub/loop")).unwrap();
    symlink(dir.join("sub"), dir.join("side")).unwrap();
    let out = build_dir(&crate::DiskFs, &dir, true).unwrap();
    let names: Vec<&str> = out.lines().filter(|l| l.starts_with("  name:")).collect();
    assert_eq!(names, ["  name: a", "  name: a", "  name: b"], "{out}");

    symlink(tmp.path().join("secret.yaml"), dir.join("z.yaml")).unwrap();
    let e = build_dir(&crate::DiskFs, &dir, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("z.yaml: security; file '"), "{e}");
    assert!(e.contains("secret.yaml' is not in or below '"), "{e}");
    std::fs::remove_file(dir.join("z.yaml")).unwrap();

    symlink(tmp.path().join("elsewhere"), dir.join("sub/out")).unwrap();
    let e = build_dir(&crate::DiskFs, &dir, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("elsewhere' is not in or below '"), "{e}");
}

const JSON_PATCHED_CM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n";

fn json_patched(ops: &str) -> Result<String, Error> {
    let k = format!(
        "resources:\n- cm.yaml\npatches:\n- target:\n    kind: ConfigMap\n  patch: |\n{ops}"
    );
    render(
        &[
            ("/k/kustomization.yaml", &k),
            ("/k/cm.yaml", JSON_PATCHED_CM),
        ],
        "/k",
    )
}

#[test]
fn json_patch_replace_of_a_missing_member_adds_it() {
    let out = json_patched("    - op: replace\n      path: /data/missing\n      value: x\n");
    assert_eq!(
        out.unwrap(),
        "apiVersion: v1\ndata:\n  a: \"1\"\n  missing: x\nkind: ConfigMap\nmetadata:\n  name: c\n"
    );
    let e = json_patched("    - op: replace\n      path: /spec/x\n      value: x\n").unwrap_err();
    assert!(
        e.to_string().contains(
            "replace operation does not apply: doc is missing path: /spec/x: missing value"
        ),
        "{e}"
    );
}

#[test]
fn json_patch_add_under_missing_annotations_creates_them_as_strings() {
    let out = json_patched(
        "    - op: add\n      path: /metadata/annotations/n\n      value: 5\n    - op: add\n      path: /metadata/annotations/m\n      value: [1]\n",
    );
    assert_eq!(
        out.unwrap(),
        "apiVersion: v1\ndata:\n  a: \"1\"\nkind: ConfigMap\nmetadata:\n  annotations:\n    m: \"\"\n    \"n\": \"5\"\n  name: c\n"
    );
    // Labels get no such help in kustomize either.
    let e = json_patched("    - op: add\n      path: /metadata/labels/l\n      value: v\n")
        .unwrap_err();
    assert!(
        e.to_string().contains(
            "add operation does not apply: doc is missing path: \"/metadata/labels/l\": missing value"
        ),
        "{e}"
    );
}

#[test]
fn json_patch_touching_metadata_leaves_no_empty_annotations() {
    let out =
        json_patched("    - op: add\n      path: /metadata/labels\n      value: {x: \"1\"}\n");
    assert_eq!(
        out.unwrap(),
        "apiVersion: v1\ndata:\n  a: \"1\"\nkind: ConfigMap\nmetadata:\n  labels:\n    x: \"1\"\n  name: c\n"
    );
}

const REPLACED: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: src\n  labels:\n    acme.io/cluster: east\ndata:\n  port: 8080\n  sport: \"8080\"\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.0\n        env:\n        - name: PORT\n          value: x\n";

fn replaced(reps: &str) -> Result<String, Error> {
    let k = format!("resources:\n- r.yaml\nreplacements:\n{reps}");
    render(
        &[("/k/kustomization.yaml", &k), ("/k/r.yaml", REPLACED)],
        "/k",
    )
}

fn deployment_of(out: &str) -> &str {
    out.split("---\n").nth(1).unwrap_or_default()
}

#[test]
fn replacement_field_paths_name_keys_with_dots_in_brackets() {
    let out = replaced(
        "- source:\n    kind: ConfigMap\n    fieldPath: metadata.labels.[acme.io/cluster]\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths:\n    - metadata.labels.[acme.io/cluster]\n    - spec.template.spec.containers.[name=web].env.[name=ZONE].value\n    options: {create: true}\n",
    )
    .unwrap();
    assert_eq!(
        deployment_of(&out),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  labels:\n    acme.io/cluster: east\n  name: web\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n      - env:\n        - name: PORT\n          value: x\n        - name: ZONE\n          value: east\n        image: nginx:1.0\n        name: web\n"
    );
    // A bracketed part with neither `=` nor a dot is refused, as kustomize refuses it.
    let e = replaced(
        "- source:\n    kind: ConfigMap\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths:\n    - spec.[template].x\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("/k/kustomization.yaml:")
            && e.contains("list path element must contain fieldName=fieldValue"),
        "{e}"
    );
}

#[test]
fn replacement_targets_keep_their_type_and_created_fields_read_the_text() {
    // A number into a string keeps the string; a quoted "8080" into an integer is the number;
    // into a field just created it reads as YAML reads `8080`; annotations stay strings.
    let out = replaced(
        "- source: {kind: ConfigMap, fieldPath: data.port}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths:\n    - spec.template.spec.containers.[name=web].env.[name=PORT].value\n- source: {kind: ConfigMap, fieldPath: data.sport}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths: [spec.replicas, spec.made, metadata.annotations.port]\n    options: {create: true}\n",
    )
    .unwrap();
    assert_eq!(
        deployment_of(&out),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  annotations:\n    port: \"8080\"\n  name: web\nspec:\n  made: 8080\n  replicas: 8080\n  template:\n    spec:\n      containers:\n      - env:\n        - name: PORT\n          value: \"8080\"\n        image: nginx:1.0\n        name: web\n"
    );
    let e = replaced(
        "- source: {kind: ConfigMap, fieldPath: metadata.name}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths: [spec.replicas]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("field spec.replicas: the field holds an integer") && e.contains("\"src\""),
        "{e}"
    );
}

#[test]
fn replacement_creates_list_elements_and_refuses_indexes_past_the_end() {
    let out = replaced(
        "- source: {kind: ConfigMap, fieldPath: data.sport}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths:\n    - spec.template.spec.containers.[name=side].image\n    - spec.template.spec.containers.[name=web].args.0\n    options: {create: true}\n",
    )
    .unwrap();
    assert!(
        out.contains("      - args:\n        - 8080\n")
            && out.contains("      - image: 8080\n        name: side\n"),
        "{out}"
    );
    let e = replaced(
        "- source: {kind: ConfigMap, fieldPath: data.sport}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths: [spec.template.spec.containers.3.image]\n    options: {create: true}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("index 3 specified but only 1 elements found"),
        "{e}"
    );
}

#[test]
fn empty_annotations_never_come_out_but_empty_labels_do() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations:\n    x: \"1\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\n  annotations: {}\n  labels: {}\n";
    let k = "resources:\n- cm.yaml\npatchesJson6902:\n- target:\n    version: v1\n    kind: ConfigMap\n    name: c\n  path: p.yaml\n";
    let p = "- op: remove\n  path: /metadata/annotations/x\n";
    let out = render(
        &[
            ("/k/kustomization.yaml", k),
            ("/k/cm.yaml", cm),
            ("/k/p.yaml", p),
        ],
        "/k",
    )
    .unwrap();
    assert_eq!(
        out,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {}\n  name: e\n"
    );
}

#[test]
fn patches_json6902_without_bookkeeping_has_no_annotations_to_add_under() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n";
    let p = "- op: add\n  path: /metadata/annotations/n\n  value: 5\n";
    let k = "resources:\n- cm.yaml\npatchesJson6902:\n- target:\n    version: v1\n    kind: ConfigMap\n    name: c\n  path: p.yaml\n";
    let files = |k: &'static str| {
        [
            ("/k/kustomization.yaml", k),
            ("/k/cm.yaml", cm),
            ("/k/p.yaml", p),
        ]
    };
    let e = render(&files(k), "/k").unwrap_err().to_string();
    assert!(e.contains("doc is missing path"), "{e}");
    // After a prefix kustomize keeps the earlier name in annotations, so the add works.
    let k2 = "namePrefix: p-\nresources:\n- cm.yaml\npatchesJson6902:\n- target:\n    version: v1\n    kind: ConfigMap\n    name: c\n  path: p.yaml\n";
    let out = render(&files(k2), "/k").unwrap();
    assert!(
        out.contains("  annotations:\n    \"n\": \"5\"\n  name: p-c\n"),
        "{out}"
    );
}

#[test]
fn json_patch_copy_and_test_read_a_missing_member_as_null() {
    let out = json_patched(
        "    - op: copy\n      from: /data/missing\n      path: /data/c\n    - op: test\n      path: /data/gone\n      value: null\n",
    );
    assert_eq!(
        out.unwrap(),
        "apiVersion: v1\ndata:\n  a: \"1\"\n  c: null\nkind: ConfigMap\nmetadata:\n  name: c\n"
    );
    let e = json_patched("    - op: copy\n      from: /spec/x/y\n      path: /data/c\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("copy operation does not apply: doc is missing from path: /spec/x/y"),
        "{e}"
    );
}

#[test]
fn json_patch_leaving_annotations_a_scalar_drops_them_and_a_list_is_refused() {
    let out = json_patched("    - op: add\n      path: /metadata/annotations\n      value: east\n");
    assert_eq!(
        out.unwrap(),
        "apiVersion: v1\ndata:\n  a: \"1\"\nkind: ConfigMap\nmetadata:\n  name: c\n"
    );
    let e = json_patched("    - op: add\n      path: /metadata/annotations\n      value: [a]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("annotations must be a map of strings"), "{e}");
    let e = json_patched("    - op: remove\n      path: /metadata/name\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("without metadata.name"), "{e}");
}

#[test]
fn a_replacement_may_fix_a_mismatch_an_earlier_one_left() {
    // "src" does not read as an integer, but the second replacement writes 3 before kustomize
    // reads the object back; only a mismatch left at the end is refused.
    let out = replaced(
        "- source: {kind: ConfigMap, fieldPath: metadata.name}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths: [spec.replicas]\n- source: {kind: ConfigMap, fieldPath: data.sport}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths: [spec.replicas]\n",
    )
    .unwrap();
    assert!(out.contains("  replicas: 8080\n"), "{out}");
}

#[test]
fn a_replacement_into_an_annotation_writes_the_text() {
    // Into a field with no type "null" would read as null; an annotation keeps the text.
    let r = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: src\n  labels:\n    v: \"null\"\n";
    let k = "resources:\n- r.yaml\nreplacements:\n- source: {kind: ConfigMap, fieldPath: metadata.labels.v}\n  targets:\n  - select: {kind: ConfigMap}\n    fieldPaths: [metadata.annotations.copied, data.made]\n    options: {create: true}\n";
    let out = render(&[("/k/kustomization.yaml", k), ("/k/r.yaml", r)], "/k").unwrap();
    assert_eq!(
        out,
        "apiVersion: v1\ndata:\n  made: null\nkind: ConfigMap\nmetadata:\n  annotations:\n    copied: \"null\"\n  labels:\n    v: \"null\"\n  name: src\n"
    );
}
