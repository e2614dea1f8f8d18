//! Building the expression contexts (`github`, `inputs`, `needs`, ...) and evaluating the
//! expression-bearing parts of a workflow with them.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::Value as Json;
use shipway_expr::{Host, Map, Value};

use super::{Finished, RunSpec};
use crate::workflow::{InputKind, Job, Pos, Workflow};

/// The `inputs` context: given values, else declared defaults, typed as declared (booleans and
/// numbers are not strings in `inputs`).
pub fn resolve_inputs(w: &Workflow, event: &str, given: &IndexMap<String, String>) -> Value {
    let mut map = Map::new();
    let declared =
        w.on.events
            .get(event)
            .or_else(|| w.on.events.get("workflow_dispatch"))
            .map(|e| e.inputs.clone())
            .unwrap_or_default();
    for (name, input) in &declared {
        let raw = given.get(name).map(|s| Json::String(s.clone()));
        let v = raw.or_else(|| input.default.clone());
        let value = match (input.kind, v) {
            (_, None) => match input.kind {
                InputKind::Boolean => Value::Bool(false),
                _ => Value::string(""),
            },
            (InputKind::Boolean, Some(Json::String(s))) => Value::Bool(s == "true"),
            (InputKind::Number, Some(Json::String(s))) => {
                Value::Number(shipway_expr::parse_number(s.trim()).unwrap_or(f64::NAN))
            }
            (_, Some(Json::String(s))) => Value::String(s),
            (_, Some(other)) => Value::from_json(&other),
        };
        map.insert(name.clone(), value);
    }
    // Inputs given but not declared are still visible (GitHub refuses them; we warn in the CLI).
    for (k, v) in given {
        if !map.contains_key(k) {
            map.insert(k.clone(), Value::string(v.clone()));
        }
    }
    Value::object(map)
}

/// The inputs of a `workflow_dispatch` run: the payload's `inputs` (as strings, the way the
/// dispatch API takes them), then `given`, which win.
pub fn dispatch_inputs(
    payload: &Json,
    given: &IndexMap<String, String>,
) -> IndexMap<String, String> {
    let mut out = IndexMap::new();
    if let Some(Json::Object(inputs)) = payload.get("inputs") {
        for (k, v) in inputs {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            out.insert(k.clone(), v);
        }
    }
    out.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// Whether GitHub runs the event on the pull request's merge ref (`refs/pull/N/merge`).
fn on_merge_ref(event_name: &str) -> bool {
    matches!(
        event_name,
        "pull_request" | "pull_request_review" | "pull_request_review_comment"
    )
}

/// `github.ref` as GitHub sets it for the event: `refs/pull/N/merge` for pull request events (N
/// from the payload's `number` or `pull_request.number`, else 1), else the payload's `ref`, else
/// the branch.
pub fn event_ref(event_name: &str, payload: &Json, branch: &str) -> String {
    if on_merge_ref(event_name) {
        let n = payload
            .get("number")
            .and_then(Json::as_u64)
            .or_else(|| {
                payload
                    .pointer("/pull_request/number")
                    .and_then(Json::as_u64)
            })
            .unwrap_or(1);
        return format!("refs/pull/{n}/merge");
    }
    match payload.get("ref").and_then(Json::as_str) {
        Some(r) if r.starts_with("refs/") => r.to_string(),
        Some(r) if !r.is_empty() => format!("refs/heads/{r}"),
        _ => format!("refs/heads/{branch}"),
    }
}

/// `needs.<id>.result` and `needs.<id>.outputs` for the jobs `job` lists.
pub fn needs_context(job: &Job, finished: &HashMap<String, Finished>) -> Value {
    let mut map = Map::new();
    for (n, _) in &job.needs {
        let Some(f) = finished.get(n) else { continue };
        let outputs: Map = f
            .outputs
            .iter()
            .map(|(k, v)| (k.clone(), Value::string(v.clone())))
            .collect();
        let mut entry = Map::new();
        entry.insert("result".into(), Value::string(f.result.as_str()));
        entry.insert("outputs".into(), Value::object(outputs));
        map.insert(n.clone(), Value::object(entry));
    }
    Value::object(map)
}

/// Evaluates a matrix as GitHub does: every `${{ }}` inside it, a string that is one whole
/// expression taking the expression's value and type (`${{ fromJSON(...) }}` becomes an array or
/// object); besides, an item of a sequence
/// that is one expression yielding a sequence is spliced into it, a `${{ insert }}` key merges
/// the mapping its value yields, and any other key holding an expression is evaluated.
pub fn eval_matrix(v: &Json, host: &dyn Host) -> Result<Json, String> {
    let eval = |s: &str| -> Result<Json, String> {
        let t = shipway_expr::Template::parse(s, &shipway_expr::Scope::ANY)
            .map_err(|e| e.to_string())?;
        Ok(t.eval(host).map_err(|e| e.to_string())?.to_json())
    };
    Ok(match v {
        Json::String(s) if shipway_expr::has_expression(s) => eval(s)?,
        Json::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match (item, eval_matrix(item, host)?) {
                    (Json::String(s), Json::Array(spliced)) if is_one_expression(s) => {
                        out.extend(spliced);
                    }
                    (_, value) => out.push(value),
                }
            }
            Json::Array(out)
        }
        Json::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, item) in map {
                let value = eval_matrix(item, host)?;
                if crate::matrix::is_insert(k) {
                    let Json::Object(merged) = value else {
                        return Err(format!(
                            "'{k}' must yield a mapping to merge, found {}",
                            crate::matrix::short(&value)
                        ));
                    };
                    out.extend(merged);
                } else if shipway_expr::has_expression(k) {
                    let key = match eval(k)? {
                        Json::String(s) => s,
                        other => shipway_expr::Value::from_json(&other).to_display(),
                    };
                    out.insert(key, value);
                } else {
                    out.insert(k.clone(), value);
                }
            }
            Json::Object(out)
        }
        other => other.clone(),
    })
}

/// `${{ ... }}` and nothing else around it.
fn is_one_expression(s: &str) -> bool {
    let t = s.trim();
    t.starts_with("${{") && t.ends_with("}}") && t[3..].find("${{").is_none()
}

/// The parts of the `github` context that do not depend on the job.
pub fn github_base(cfg: &RunSpec, workflow_name: &str, event_path: &str) -> Map {
    // `1/merge` for a pull request's merge ref, as GitHub names it.
    let ref_name = cfg
        .git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| cfg.git_ref.strip_prefix("refs/tags/"))
        .or_else(|| cfg.git_ref.strip_prefix("refs/pull/"))
        .unwrap_or(&cfg.git_ref)
        .to_string();
    let ref_type = if cfg.git_ref.starts_with("refs/tags/") {
        "tag"
    } else {
        "branch"
    };
    let owner = cfg
        .repository
        .split_once('/')
        .map_or(cfg.repository.as_str(), |(o, _)| o)
        .to_string();
    // Set for pull_request and pull_request_target only, from the payload.
    let pr = |k: &str| {
        if !cfg.event_name.starts_with("pull_request") {
            return String::new();
        }
        cfg.event
            .pointer(&format!("/pull_request/{k}/ref"))
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let s = |v: &str| Value::string(v);
    let mut m = Map::new();
    m.insert("action".into(), s(""));
    m.insert("actor".into(), s(&cfg.actor));
    m.insert("triggering_actor".into(), s(&cfg.actor));
    m.insert("api_url".into(), s("https://api.github.com"));
    m.insert("server_url".into(), s("https://github.com"));
    m.insert("graphql_url".into(), s("https://api.github.com/graphql"));
    m.insert("base_ref".into(), s(&pr("base")));
    m.insert("head_ref".into(), s(&pr("head")));
    m.insert("event".into(), Value::from_json(&cfg.event));
    m.insert("event_name".into(), s(&cfg.event_name));
    m.insert("event_path".into(), s(event_path));
    m.insert("ref".into(), s(&cfg.git_ref));
    m.insert("ref_name".into(), s(&ref_name));
    m.insert("ref_type".into(), s(ref_type));
    m.insert("ref_protected".into(), Value::Bool(false));
    m.insert("repository".into(), s(&cfg.repository));
    m.insert("repository_owner".into(), s(&owner));
    m.insert("run_id".into(), s(&cfg.run_id.to_string()));
    m.insert("run_number".into(), s(&cfg.run_number.to_string()));
    m.insert("run_attempt".into(), s(&cfg.run_attempt.to_string()));
    m.insert("retention_days".into(), s("90"));
    m.insert("sha".into(), s(&cfg.sha));
    m.insert("token".into(), s(""));
    m.insert("workflow".into(), s(workflow_name));
    m
}

/// A map of strings as a context object.
pub fn strings(map: &IndexMap<String, String>) -> Value {
    Value::object(
        map.iter()
            .map(|(k, v)| (k.clone(), Value::string(v.clone())))
            .collect(),
    )
}

/// Checks inputs given for a `workflow_dispatch` run against the declared ones: required
/// inputs without a default must be given, choices must be one of the options, booleans and
/// numbers must read as such. Undeclared inputs are refused, as GitHub refuses them. Each
/// problem comes with the position of the input's declaration, when it has one.
pub fn check_inputs(
    w: &Workflow,
    event: &str,
    given: &IndexMap<String, String>,
) -> Vec<(Option<Pos>, String)> {
    let Some(e) = w.on.events.get(event) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for (name, input) in &e.inputs {
        let mut problem = |m: String| problems.push((Some(input.pos), m));
        match given.get(name) {
            None if input.required && input.default.is_none() => problem(format!(
                "input '{name}' is required: give it with --input {name}=VALUE (or in the -e payload's inputs)"
            )),
            None => {}
            Some(v) => match input.kind {
                InputKind::Choice if !input.options.iter().any(|o| o == v) => problem(format!(
                    "input '{name}': '{v}' is not one of: {}",
                    input.options.join(", ")
                )),
                InputKind::Boolean if v != "true" && v != "false" => {
                    problem(format!("input '{name}': expected true or false, got '{v}'"));
                }
                InputKind::Number if shipway_expr::parse_number(v.trim()).is_none() => {
                    problem(format!("input '{name}': expected a number, got '{v}'"));
                }
                _ => {}
            },
        }
    }
    for name in given.keys() {
        if !e.inputs.contains_key(name) {
            let declared = if e.inputs.is_empty() {
                String::new()
            } else {
                format!(
                    " (declared: {})",
                    e.inputs.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            };
            problems.push((
                None,
                format!(
                    "input '{name}' is not declared by on.{event}.inputs{declared}: declare it or leave it out"
                ),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pull_request_events_run_on_the_merge_ref() {
        let pr = json!({"number": 42, "pull_request": {"number": 7}});
        assert_eq!(event_ref("pull_request", &pr, "main"), "refs/pull/42/merge");
        let nested = json!({"pull_request": {"number": 7}});
        assert_eq!(
            event_ref("pull_request", &nested, "main"),
            "refs/pull/7/merge"
        );
        assert_eq!(
            event_ref("pull_request", &json!({}), "main"),
            "refs/pull/1/merge"
        );
        // pull_request_target runs on the base branch.
        assert_eq!(
            event_ref("pull_request_target", &pr, "main"),
            "refs/heads/main"
        );
        assert_eq!(
            event_ref("push", &json!({"ref": "refs/tags/v1"}), "main"),
            "refs/tags/v1"
        );
        let spec = RunSpec {
            event_name: "pull_request".into(),
            event: json!({"pull_request": {"head": {"ref": "feature"}, "base": {"ref": "main"}}}),
            git_ref: "refs/pull/1/merge".into(),
            ..RunSpec::default()
        };
        let g = github_base(&spec, "w", "/e.json");
        let field = |k: &str| g.get(k).map(Value::to_display).unwrap_or_default();
        assert_eq!(field("head_ref"), "feature");
        assert_eq!(field("base_ref"), "main");
        assert_eq!(field("ref_name"), "1/merge");
        let push = RunSpec {
            event_name: "push".into(),
            ..spec
        };
        assert_eq!(
            github_base(&push, "w", "/e.json")
                .get("head_ref")
                .map(Value::to_display),
            Some(String::new())
        );
    }

    #[test]
    fn dispatch_inputs_come_from_the_payload_and_the_flags_win() {
        let payload = json!({"inputs": {"required": "from payload", "boolean": true, "n": 3}});
        let given = IndexMap::from([("n".to_string(), "4".to_string())]);
        let inputs = dispatch_inputs(&payload, &given);
        assert_eq!(
            inputs.into_iter().collect::<Vec<_>>(),
            [
                ("required".to_string(), "from payload".to_string()),
                ("boolean".to_string(), "true".to_string()),
                ("n".to_string(), "4".to_string()),
            ]
        );
    }

    #[test]
    fn matrix_items_splice_insert_merges_and_keys_are_evaluated() {
        let mut host = Map::new();
        host.insert(
            "needs".into(),
            Value::from_json(&json!({"p": {"outputs": {"k": "helix"}}})),
        );
        let matrix = json!({
            "a": [
                {"env": {
                    "key1": "${{ 'val' }}1",
                    "${{ insert }}": {"key2": "val2"},
                    "${{insert}}": "${{ fromJSON('{\"key3\":\"val3\"}') }}"
                }},
                "${{ fromJSON('[\"b\", \"c\"]') }}",
                "${{ 'd' }}",
                ["kept", "whole"]
            ],
            "${{ needs.p.outputs.k }}": ["h"]
        });
        assert_eq!(
            eval_matrix(&matrix, &host),
            Ok(json!({
                "a": [
                    {"env": {"key1": "val1", "key2": "val2", "key3": "val3"}},
                    "b", "c", "d",
                    ["kept", "whole"]
                ],
                "helix": ["h"]
            }))
        );
        let bad = json!({"a": [{"${{ insert }}": "${{ 'text' }}"}]});
        assert_eq!(
            eval_matrix(&bad, &host),
            Err("'${{ insert }}' must yield a mapping to merge, found a string".to_string())
        );
    }
}
