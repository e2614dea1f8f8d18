//! `runs-on`: the labels a job asks its runner for, against the labels an executor offers. A
//! server offers a fixed set (`shipway up --runner-label`); a job asking for one it lacks waits,
//! as a GitHub job waits for a runner that never comes.

use serde_json::Value as Json;
use shipway_expr::{Host, Template};

use crate::scopes;

/// The labels `runs-on` asks for: a string, a list of strings, or `{labels: ...}`; expressions
/// are evaluated (one that yields a list gives its items). Runner groups are refused: Shipway
/// has none.
pub fn wanted_labels(runs_on: Option<&Json>, host: &dyn Host) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    match runs_on {
        None => {}
        Some(Json::Object(m)) => {
            if let Some(g) = m.get("group") {
                let g = g.as_str().map_or_else(|| g.to_string(), str::to_string);
                return Err(format!(
                    "runs-on.group '{g}': runner groups are not supported (this server has one set of runners); name the labels you need in runs-on.labels"
                ));
            }
            if let Some(l) = m.get("labels") {
                add(l, host, &mut out)?;
            }
        }
        Some(v) => add(v, host, &mut out)?,
    }
    Ok(out)
}

fn add(v: &Json, host: &dyn Host, out: &mut Vec<String>) -> Result<(), String> {
    match v {
        Json::String(s) => {
            let t = Template::parse(s, &scopes::JOB_RUNS_ON)
                .map_err(|e| format!("runs-on '{s}': {e}"))?;
            let value = t
                .eval(host)
                .map_err(|e| format!("runs-on '{s}': {e}"))?
                .to_json();
            match value {
                Json::Array(items) => {
                    for i in &items {
                        add(i, host, out)?;
                    }
                }
                Json::String(s) => out.push(s),
                other => out.push(other.to_string()),
            }
        }
        Json::Array(items) => {
            for i in items {
                add(i, host, out)?;
            }
        }
        other => {
            return Err(format!(
                "runs-on: expected a label or a list of labels, got {other}"
            ));
        }
    }
    Ok(())
}

/// Why no runner of `offered` can take a job asking for `wanted`, or `None` when one can.
/// Labels match without regard to case, as GitHub's do.
pub fn no_runner(wanted: &[String], offered: &[String]) -> Option<String> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|w| !offered.iter().any(|o| o.eq_ignore_ascii_case(w)))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "Waiting for a runner to pick up this job... No runner offers the label{} {} (this server offers: {}; `shipway up --runner-label LABEL` adds one)",
        if missing.len() == 1 { "" } else { "s" },
        missing.join(", "),
        offered.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shipway_expr::{Map, Value};

    fn host() -> Map {
        let mut matrix = Map::new();
        matrix.insert("os".into(), Value::string("gpu-box"));
        let mut m = Map::new();
        m.insert("matrix".into(), Value::object(matrix));
        m
    }

    #[test]
    fn every_form_of_runs_on_gives_its_labels() {
        let h = host();
        let w = |v: Json| wanted_labels(Some(&v), &h);
        assert_eq!(w(json!("ubuntu-latest")).unwrap(), ["ubuntu-latest"]);
        assert_eq!(
            w(json!(["self-hosted", "${{ matrix.os }}"])).unwrap(),
            ["self-hosted", "gpu-box"]
        );
        assert_eq!(w(json!({"labels": "linux"})).unwrap(), ["linux"]);
        assert_eq!(
            w(json!("${{ fromJSON('[\"linux\", \"x64\"]') }}")).unwrap(),
            ["linux", "x64"]
        );
        let err = w(json!({"group": "big", "labels": ["linux"]})).unwrap_err();
        assert!(
            err.contains("runs-on.group 'big': runner groups are not supported"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_label_is_named_with_the_offered_ones() {
        let offered: Vec<String> = ["self-hosted", "linux"].map(String::from).to_vec();
        assert_eq!(no_runner(&["LINUX".into()], &offered), None);
        let why = no_runner(&["linux".into(), "gpu".into(), "arm64".into()], &offered).unwrap();
        assert_eq!(
            why,
            "Waiting for a runner to pick up this job... No runner offers the labels gpu, arm64 (this server offers: self-hosted, linux; `shipway up --runner-label LABEL` adds one)"
        );
    }
}
