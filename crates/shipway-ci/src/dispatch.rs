//! `workflow_dispatch`: a run asked for by hand, as GitHub's
//! `POST /repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches` {ref, inputs}. The
//! workflow is read at the ref's commit (the default branch when no ref is given), must declare
//! `on: workflow_dispatch`, and the inputs are checked against its typed inputs (string,
//! boolean, number, choice, environment; required, default) before any run is made: every
//! problem is returned, each naming the input, what was expected and what is allowed.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use shipway_git::Repo;
use shipway_git::hosted::Hosted;
use shipway_model::Object;
use shipway_model::types::workflow_run::WorkflowRunSpec;
use shipway_pipeline::load::load_from;
use shipway_pipeline::workflow::{Input, InputKind};
use shipway_store::Store;

use crate::CiError;
use crate::trigger::{next_run_number, run_object, workflow_files, workflow_stem};

/// What a dispatch asks for.
#[derive(Clone, Debug, Default)]
pub struct Dispatch {
    /// The hosted repository's name.
    pub repository: String,
    /// The workflow: its file name (`build.yml`), its stem (`build`) or its path in the
    /// repository (`.github/workflows/build.yml`).
    pub workflow: String,
    /// A branch or tag (short or full name); `None`: the default branch.
    pub git_ref: Option<String>,
    /// Input values as the API takes them: strings, or JSON booleans and numbers.
    pub inputs: BTreeMap<String, Value>,
    /// The identity that dispatched (the run's actor).
    pub actor: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// No such repository, ref or workflow (404).
    #[error("{0}")]
    NotFound(String),
    /// The workflow cannot be dispatched with these inputs (422): each problem in `details`.
    #[error("{message}")]
    Invalid {
        message: String,
        details: Vec<String>,
    },
    #[error(transparent)]
    Ci(#[from] CiError),
}

impl From<shipway_store::StoreError> for DispatchError {
    fn from(e: shipway_store::StoreError) -> DispatchError {
        DispatchError::Ci(e.into())
    }
}

impl From<shipway_git::hosted::HostedError> for DispatchError {
    fn from(e: shipway_git::hosted::HostedError) -> DispatchError {
        DispatchError::Ci(e.into())
    }
}

fn invalid(message: String, details: Vec<String>) -> DispatchError {
    DispatchError::Invalid { message, details }
}

/// Checks the dispatch and makes its run; returns the stored run.
pub async fn dispatch(
    store: &Store,
    hosted: &Hosted,
    d: Dispatch,
) -> Result<Object, DispatchError> {
    let Some(owner) = hosted.owner(&d.repository).await? else {
        return Err(DispatchError::NotFound(format!(
            "repository {:?} is not a hosted repository (`shipway repo list` shows them)",
            d.repository
        )));
    };
    let namespace = owner
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let dir = hosted.dir(&d.repository)?;
    let (rev, wanted, repo_name) = (
        d.git_ref.clone().unwrap_or_default(),
        d.workflow.clone(),
        d.repository.clone(),
    );
    let read = tokio::task::spawn_blocking(move || {
        let repo = Repo::open(&dir)?;
        let resolved = match repo.resolve(if rev.is_empty() { "HEAD" } else { &rev }) {
            Ok(r) => r,
            Err(_) if rev.is_empty() => {
                return Ok(Err(DispatchError::NotFound(format!(
                    "repository {repo_name:?} has no commits on its default branch yet"
                ))));
            }
            Err(_) => {
                // GitHub's words (a 422).
                return Ok(Err(invalid(
                    format!(
                        "No ref found for: {rev} (not a branch or tag of repository {repo_name:?})"
                    ),
                    Vec::new(),
                )));
            }
        };
        // GitHub dispatches on a branch or a tag, not on a bare commit.
        if !resolved.name.starts_with("refs/heads/") && !resolved.name.starts_with("refs/tags/") {
            return Ok(Err(invalid(
                format!("No ref found for: {rev} (a dispatch runs on a branch or a tag)"),
                Vec::new(),
            )));
        }
        let tree = repo.tree(&resolved.sha)?;
        let files = workflow_files(&tree);
        let Some(file) = find_workflow(&files, &wanted) else {
            let known = if files.is_empty() {
                "it has none".to_string()
            } else {
                files.join(", ")
            };
            return Ok(Err(DispatchError::NotFound(format!(
                "workflow {wanted:?} not found at {} of repository {repo_name:?} (workflows there: {known})",
                resolved.name
            ))));
        };
        let bundle = load_from(&tree, Path::new("/"), &file);
        Ok::<_, shipway_git::Error>(Ok((resolved, bundle)))
    })
    .await
    .map_err(|e| CiError::Other(format!("reading the workflow: {e}")))?
    .map_err(CiError::from)?;
    let (resolved, bundle) = read?;
    let Some(w) = &bundle.workflow else {
        let details: Vec<String> = bundle.problems.iter().map(ToString::to_string).collect();
        return Err(invalid(
            format!("Invalid workflow file {}", bundle.path),
            details,
        ));
    };
    let blocking: Vec<String> = bundle
        .blocking(shipway_pipeline::load::Options::default())
        .into_iter()
        .map(ToString::to_string)
        .collect();
    if !blocking.is_empty() {
        return Err(invalid(
            format!("Invalid workflow file {}", bundle.path),
            blocking,
        ));
    }
    let Some(event) = w.on.events.get("workflow_dispatch") else {
        // GitHub's words.
        return Err(invalid(
            format!(
                "Workflow does not have 'workflow_dispatch' trigger: {} runs on {}",
                bundle.path,
                w.on.events.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            Vec::new(),
        ));
    };
    let inputs = check_inputs(&event.inputs, &d.inputs).map_err(|details| {
        let message = match details.as_slice() {
            [one] => one.clone(),
            many => format!("{} problems with the inputs", many.len()),
        };
        invalid(message, details)
    })?;
    let stem = workflow_stem(&bundle.path);
    let number = next_run_number(store, &namespace, &d.repository, &stem).await?;
    let spec = WorkflowRunSpec {
        repository: d.repository.clone(),
        workflow: bundle.path.clone(),
        event: "workflow_dispatch".into(),
        git_ref: resolved.name.clone(),
        head_sha: resolved.sha.clone(),
        actor: d.actor.clone(),
        run_number: number,
        run_attempt: 1,
        inputs: inputs.clone(),
        ..WorkflowRunSpec::default()
    };
    // `github.event.inputs` holds strings, as GitHub's payload does (`inputs` types them).
    let payload = json!({
        "inputs": inputs,
        "ref": resolved.name,
        "workflow": bundle.path,
        "sender": {"login": d.actor},
        "repository": {
            "name": d.repository,
            "full_name": d.repository,
            "clone_url": hosted.clone_url(&d.repository),
        },
    });
    let obj = run_object(&namespace, &spec, payload);
    // Written as the caller, so the audit trail names who dispatched.
    Ok(store.create(obj, &d.actor).await?)
}

/// The workflow file `wanted` names: a path, a file name or a stem.
fn find_workflow(files: &[String], wanted: &str) -> Option<String> {
    let wanted = wanted.trim_start_matches('/');
    let base = |f: &str| f.rsplit('/').next().unwrap_or(f).to_string();
    let stem = |f: &str| {
        let b = base(f);
        b.strip_suffix(".yml")
            .or_else(|| b.strip_suffix(".yaml"))
            .unwrap_or(&b)
            .to_string()
    };
    files
        .iter()
        .find(|f| f.as_str() == wanted)
        .or_else(|| files.iter().find(|f| base(f) == wanted))
        .or_else(|| files.iter().find(|f| stem(f) == wanted))
        .cloned()
}

fn kind_name(k: InputKind) -> &'static str {
    match k {
        InputKind::String => "string",
        InputKind::Boolean => "boolean",
        InputKind::Number => "number",
        InputKind::Choice => "choice",
        InputKind::Environment => "environment",
    }
}

/// The run's inputs, as strings: the given values checked against the declared ones, then the
/// defaults of those not given. Every problem, each naming its input, on failure.
pub fn check_inputs(
    declared: &indexmap::IndexMap<String, Input>,
    given: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = BTreeMap::new();
    for name in given.keys() {
        if !declared.contains_key(name) {
            let known = if declared.is_empty() {
                "the workflow declares no inputs".to_string()
            } else {
                format!(
                    "declared inputs: {}",
                    declared.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            };
            problems.push(format!("Unexpected input '{name}' ({known})"));
        }
    }
    for (name, input) in declared {
        let kind = kind_name(input.kind);
        let Some(v) = given.get(name) else {
            match &input.default {
                Some(d) => {
                    out.insert(name.clone(), as_text(d));
                }
                None if input.required => problems.push(format!(
                    "Required input '{name}' not provided (a {kind}{})",
                    allowed(input)
                )),
                // Left out: `inputs` then has GitHub's empty value for it ("", or false
                // for a boolean).
                None => {}
            }
            continue;
        };
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            other => {
                problems.push(format!(
                    "input '{name}': expected a {kind}{}, got {other}",
                    allowed(input)
                ));
                continue;
            }
        };
        let ok = match input.kind {
            InputKind::Boolean => text == "true" || text == "false",
            InputKind::Number => shipway_expr::parse_number(text.trim()).is_some(),
            InputKind::Choice => input.options.contains(&text),
            InputKind::String | InputKind::Environment => true,
        };
        if !ok {
            problems.push(format!(
                "input '{name}': expected a {kind}{}, got '{text}'",
                allowed(input)
            ));
            continue;
        }
        out.insert(name.clone(), text);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// What an input allows, for messages.
fn allowed(input: &Input) -> String {
    match input.kind {
        InputKind::Boolean => ": true or false".into(),
        InputKind::Choice => format!(": one of {}", input.options.join(", ")),
        _ => String::new(),
    }
}

fn as_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;
    use shipway_pipeline::workflow::Pos;

    fn input(kind: InputKind, required: bool, default: Option<Value>, options: &[&str]) -> Input {
        Input {
            pos: Pos::default(),
            description: None,
            required,
            default,
            kind,
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn declared() -> IndexMap<String, Input> {
        let mut d = IndexMap::new();
        d.insert(
            "level".into(),
            input(InputKind::Choice, true, None, &["info", "debug"]),
        );
        d.insert(
            "dry".into(),
            input(InputKind::Boolean, false, Some(json!(true)), &[]),
        );
        d.insert("count".into(), input(InputKind::Number, false, None, &[]));
        d.insert("note".into(), input(InputKind::String, false, None, &[]));
        d
    }

    fn given(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_fill_what_is_not_given_and_json_scalars_read_as_text() {
        let got = check_inputs(&declared(), &given(json!({"level": "debug", "count": 3}))).unwrap();
        assert_eq!(
            got,
            given(json!({"level": "debug", "dry": "true", "count": "3"}))
                .into_iter()
                .map(|(k, v)| (k, v.as_str().unwrap().to_string()))
                .collect::<BTreeMap<_, _>>()
        );
        let got =
            check_inputs(&declared(), &given(json!({"level": "info", "dry": false}))).unwrap();
        assert_eq!(got["dry"], "false");
    }

    #[test]
    fn every_problem_names_its_input_and_what_it_allows() {
        let got = check_inputs(
            &declared(),
            &given(json!({"dry": "yes", "count": "many", "extra": "x"})),
        )
        .unwrap_err();
        assert_eq!(
            got,
            [
                "Unexpected input 'extra' (declared inputs: level, dry, count, note)",
                "Required input 'level' not provided (a choice: one of info, debug)",
                "input 'dry': expected a boolean: true or false, got 'yes'",
                "input 'count': expected a number, got 'many'",
            ]
        );
        let got = check_inputs(&declared(), &given(json!({"level": "trace"}))).unwrap_err();
        assert_eq!(
            got,
            ["input 'level': expected a choice: one of info, debug, got 'trace'"]
        );
    }

    #[test]
    fn a_workflow_is_found_by_path_file_name_or_stem() {
        let files = vec![
            ".github/workflows/build.yml".to_string(),
            ".shipway/workflows/deploy.yaml".to_string(),
        ];
        for w in [".github/workflows/build.yml", "build.yml", "build"] {
            assert_eq!(
                find_workflow(&files, w).as_deref(),
                Some(".github/workflows/build.yml")
            );
        }
        assert_eq!(
            find_workflow(&files, "deploy").as_deref(),
            Some(".shipway/workflows/deploy.yaml")
        );
        assert_eq!(find_workflow(&files, "nope.yml"), None);
    }
}
