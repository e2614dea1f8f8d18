//! Planning: matrix expansion as GitHub documents it, trigger filters, and job order.

use serde_json::json;
use shipway_pipeline::matrix::{display_name, expand};
use shipway_pipeline::parse::parse_workflow;
use shipway_pipeline::plan::{MatrixPlan, plan};
use shipway_pipeline::trigger::{EventFacts, filter_matches, glob_matches, matches};

fn combos(m: serde_json::Value) -> Vec<String> {
    match expand(&m) {
        Ok(cs) => cs
            .iter()
            .map(|c| serde_json::to_string(c).unwrap_or_default())
            .collect(),
        Err(e) => vec![format!("error: {e}")],
    }
}

#[test]
fn matrix_product_is_first_axis_outermost() {
    assert_eq!(
        combos(json!({"os": ["a", "b"], "v": [1, 2]})),
        [
            r#"{"os":"a","v":1}"#,
            r#"{"os":"a","v":2}"#,
            r#"{"os":"b","v":1}"#,
            r#"{"os":"b","v":2}"#
        ]
    );
}

/// The example from GitHub's docs ("Expanding or adding matrix configurations").
#[test]
fn matrix_include_follows_githubs_documented_example() {
    assert_eq!(
        combos(json!({
            "fruit": ["apple", "pear"],
            "animal": ["cat", "dog"],
            "include": [
                {"color": "green"},
                {"color": "pink", "animal": "cat"},
                {"fruit": "apple", "shape": "circle"},
                {"fruit": "banana"},
                {"fruit": "banana", "animal": "cat"}
            ]
        })),
        [
            r#"{"fruit":"apple","animal":"cat","color":"pink","shape":"circle"}"#,
            r#"{"fruit":"apple","animal":"dog","color":"green","shape":"circle"}"#,
            r#"{"fruit":"pear","animal":"cat","color":"pink"}"#,
            r#"{"fruit":"pear","animal":"dog","color":"green"}"#,
            r#"{"fruit":"banana"}"#,
            r#"{"fruit":"banana","animal":"cat"}"#
        ]
    );
}

#[test]
fn matrix_exclude_then_include() {
    assert_eq!(
        combos(json!({
            "os": ["macos", "windows"],
            "version": [12, 14, 16],
            "environment": ["staging", "production"],
            "exclude": [
                {"os": "macos", "version": 12, "environment": "production"},
                {"os": "windows", "version": 16}
            ]
        }))
        .len(),
        12 - 1 - 2
    );
    assert_eq!(
        combos(json!({"include": [{"a": 1}, {"b": 2}]})),
        [r#"{"a":1}"#, r#"{"b":2}"#]
    );
    // Partial match on object values.
    assert_eq!(
        combos(
            json!({"site": [{"os": "l", "n": 1}, {"os": "w", "n": 2}], "exclude": [{"site": {"os": "w"}}]})
        ),
        [r#"{"site":{"os":"l","n":1}}"#]
    );
    assert_eq!(
        combos(json!({"a": [1], "exclude": [{"a": 1}]})),
        ["error: the matrix produces no combinations"]
    );
    let big: Vec<i32> = (0..20).collect();
    assert_eq!(
        combos(json!({"a": big, "b": big})),
        ["error: the matrix produces 400 combinations; GitHub allows at most 256"]
    );
}

#[test]
fn matrix_job_names() {
    let c = expand(&json!({"os": ["ubuntu"], "node": [20], "x": [{"a": 1}]})).unwrap_or_default();
    assert_eq!(display_name("build", &c[0]), "build (ubuntu, 20, Object)");
}

#[test]
fn filter_patterns() {
    let rows = [
        ("main", "main", true),
        ("main", "mainline", false),
        ("releases/*", "releases/v1", true),
        ("releases/*", "releases/v1/x", false),
        ("releases/**", "releases/v1/x", true),
        ("**", "a/b/c", true),
        ("*", "a/b", false),
        ("v[12].[0-9]+", "v1.10", true),
        ("v[12].[0-9]+", "v3.1", false),
        ("v2?", "v", true),
        ("v2?", "v2", true),
        ("**/README.md", "README.md", true),
        ("**/README.md", "a/b/README.md", true),
        ("*.md", "docs/a.md", false),
        ("**.md", "docs/a.md", true),
        ("docs/**", "docs/a/b.txt", true),
        ("a.b", "axb", false),
    ];
    for (pattern, name, want) in rows {
        assert_eq!(glob_matches(pattern, name), want, "{pattern} vs {name}");
    }
    let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(filter_matches(
        &p(&["releases/**", "!releases/**-alpha"]),
        "releases/v1"
    ));
    assert!(!filter_matches(
        &p(&["releases/**", "!releases/**-alpha"]),
        "releases/v1-alpha"
    ));
    assert!(filter_matches(&p(&["!a", "a"]), "a"));
}

fn triggered(yaml: &str, facts: EventFacts) -> Result<(), String> {
    let (w, problems) = parse_workflow("w.yml", yaml);
    assert!(problems.is_empty(), "{problems:?}");
    matches(&w.expect("workflow").on, &facts)
}

fn push(r: &str, files: Option<&[&str]>) -> EventFacts {
    EventFacts {
        name: "push".into(),
        git_ref: r.into(),
        changed_files: files.map(|f| f.iter().map(|s| s.to_string()).collect()),
        action: None,
    }
}

#[test]
fn triggers_filter_branches_tags_and_paths() {
    let w = "on:\n  push:\n    branches: [main]\n    paths: ['src/**']\njobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n";
    assert!(triggered(w, push("refs/heads/main", Some(&["src/a.rs"]))).is_ok());
    assert!(triggered(w, push("refs/heads/main", None)).is_ok());
    assert!(triggered(w, push("refs/heads/dev", Some(&["src/a.rs"]))).is_err());
    assert!(triggered(w, push("refs/heads/main", Some(&["README.md"]))).is_err());
    // Only branch filters: tag pushes do not trigger.
    assert!(triggered(w, push("refs/tags/v1", None)).is_err());
    let tags =
        "on:\n  push:\n    tags: ['v*']\njobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n";
    assert!(triggered(tags, push("refs/tags/v1", None)).is_ok());
    assert!(triggered(tags, push("refs/heads/main", None)).is_err());
    let ignore = "on:\n  push:\n    paths-ignore: ['docs/**']\njobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n";
    assert!(triggered(ignore, push("refs/heads/x", Some(&["docs/a", "docs/b"]))).is_err());
    assert!(triggered(ignore, push("refs/heads/x", Some(&["docs/a", "src/b"]))).is_ok());
    let pr = "on:\n  pull_request:\n    branches: [main]\njobs:\n  a:\n    runs-on: x\n    steps: [{run: a}]\n";
    let facts = |action: &str| EventFacts {
        name: "pull_request".into(),
        git_ref: "refs/heads/main".into(),
        changed_files: None,
        action: Some(action.into()),
    };
    assert!(triggered(pr, facts("opened")).is_ok());
    assert!(triggered(pr, facts("closed")).is_err());
    assert!(triggered(pr, push("refs/heads/main", None)).is_err());
}

#[test]
fn plan_orders_jobs_and_expands_static_matrices() {
    let yaml = r#"
on: push
jobs:
  deploy:
    needs: [test, lint]
    runs-on: x
    steps: [{run: d}]
  test:
    needs: build
    runs-on: x
    strategy:
      matrix:
        os: [a, b]
    steps: [{run: t}]
  lint:
    runs-on: x
    strategy:
      matrix: ${{ fromJSON('{"a":[1]}') }}
    steps: [{run: l}]
  build:
    runs-on: x
    steps: [{run: b}]
"#;
    let (w, problems) = parse_workflow("w.yml", yaml);
    assert!(problems.is_empty(), "{problems:?}");
    let jobs = plan(&w.expect("workflow")).expect("plan");
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["lint", "build", "test", "deploy"]);
    assert_eq!(jobs[0].matrix, MatrixPlan::Dynamic);
    assert_eq!(jobs[2].instances(), Some(2));
}
