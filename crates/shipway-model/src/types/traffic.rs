//! `TrafficPolicy` (shipway.dev/v1alpha1): the routing of the Service of the same name that a
//! rollout drives — weighted backends picked by label, header and cookie routes, a mirror.
//! [`TrafficPolicySpec::validated`] is its one reader: admission and the proxy both go through
//! it, so they accept the same policies and word the same problems the same way.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::apps::LabelSelector;
use crate::validate::FieldError;

pub const GROUP: &str = "shipway.dev";
pub const KIND: &str = "TrafficPolicy";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicySpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A backend: the pods its selector picks among the Service's endpoints (all of them without
/// one), with a weight out of 100.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Requests whose headers and cookies all match go to `backend`, whatever the weights say.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "match")]
    pub match_: Option<RouteMatch>,
    pub backend: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<ValueMatch>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A header or cookie by name, with exactly one of `exact`, `prefix` or `regex`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A copy of `percent` percent of the requests goes to `backend`; its answers are dropped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mirror {
    pub backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i64>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl TrafficPolicySpec {
    /// Reads a TrafficPolicy's `spec`, checked by admission's rules: weights 0..=100 that sum to
    /// 100, unique backend names, routes and mirror naming existing backends, one valid matcher
    /// each. Returns every problem, with its field path.
    pub fn validated(spec: &Value) -> Result<TrafficPolicySpec, Vec<FieldError>> {
        let problems = crate::validate::traffic_policy_spec(Some(spec));
        if !problems.is_empty() {
            return Err(problems);
        }
        TrafficPolicySpec::deserialize(spec).map_err(|e| {
            vec![FieldError {
                path: "spec".into(),
                message: format!("Invalid value: {e}"),
            }]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_checked_policy_reads_into_its_fields() {
        let spec = json!({
            "backends": [
                {"name": "stable", "selector": {"matchLabels": {"v": "1"}}, "weight": 90},
                {"name": "canary", "weight": 10},
            ],
            "routes": [{"match": {"headers": [{"name": "x-canary", "exact": "yes"}]}, "backend": "canary"}],
            "mirror": {"backend": "canary", "percent": 5},
        });
        let p = TrafficPolicySpec::validated(&spec).unwrap();
        assert_eq!(p.backends[1].weight, Some(10));
        assert_eq!(
            p.backends[0].selector.as_ref().unwrap().match_labels["v"],
            "1"
        );
        assert_eq!(
            p.routes[0].match_.as_ref().unwrap().headers[0]
                .exact
                .as_deref(),
            Some("yes")
        );
        assert_eq!(p.mirror.as_ref().unwrap().percent, Some(5));
        assert_eq!(super::super::to_value(&p), spec);
    }

    #[test]
    fn problems_are_admissions_problems() {
        let err = TrafficPolicySpec::validated(&json!({"backends": [{"name": "a", "weight": 90}]}))
            .unwrap_err();
        assert_eq!(
            err.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["spec.backends: Invalid value: weights sum to 90, expected 100"]
        );
        let err = TrafficPolicySpec::validated(&json!("x")).unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "spec: expected an object, found a string"
        );
    }
}
