//! `TrafficPolicy` (shipway.dev/v1alpha1): the per-Service routing a rollout drives, in the form
//! the routing table wants. The spec is read by the model's
//! [`TrafficPolicySpec::validated`](shipway_model::types::TrafficPolicySpec::validated), the same
//! reader admission uses, so the proxy accepts exactly the policies the API accepts and says the
//! same thing about the others.

use serde_json::Value;
use shipway_model::Selector;
use shipway_model::types::TrafficPolicySpec;
use shipway_model::types::traffic::ValueMatch;

use crate::table::MatchSpec;

/// The group and kind of the policy objects; one per Service, with the Service's name.
pub use shipway_model::types::traffic::{GROUP, KIND};

/// A backend of a policy: the pods its selector picks among the Service's endpoints.
#[derive(Clone, Debug)]
pub struct PolicyBackend {
    pub name: String,
    pub selector: Selector,
    pub weight: u32,
}

#[derive(Clone, Debug)]
pub struct PolicyRoute {
    pub name: String,
    pub headers: Vec<(String, MatchSpec)>,
    pub cookies: Vec<(String, MatchSpec)>,
    pub backend: String,
}

#[derive(Clone, Debug, Default)]
pub struct TrafficPolicy {
    pub backends: Vec<PolicyBackend>,
    pub routes: Vec<PolicyRoute>,
    /// (backend name, percent).
    pub mirror: Option<(String, u32)>,
}

/// A matcher; validation made sure exactly one of the three is set.
fn match_spec(m: &ValueMatch) -> Option<(String, MatchSpec)> {
    let spec = match (&m.exact, &m.prefix, &m.regex) {
        (Some(s), _, _) => MatchSpec::Exact(s.clone()),
        (_, Some(s), _) => MatchSpec::Prefix(s.clone()),
        (_, _, Some(s)) => MatchSpec::Regex(s.clone()),
        (None, None, None) => return None,
    };
    Some((m.name.clone(), spec))
}

/// A validated weight or percent (0..=100) as the table's type.
fn percent(v: Option<i64>) -> u32 {
    v.unwrap_or(0).clamp(0, 100) as u32
}

impl TrafficPolicy {
    /// Reads `spec` as admission does. Errors are admission's, joined with `; `; since the API
    /// refuses the same policies at apply, an error here means an object stored before a rule
    /// existed.
    pub fn from_spec(spec: &Value) -> Result<TrafficPolicy, String> {
        let spec = TrafficPolicySpec::validated(spec).map_err(|problems| {
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let mut backends = Vec::new();
        for (i, b) in spec.backends.iter().enumerate() {
            let selector = match &b.selector {
                Some(s) => s
                    .to_selector()
                    .map_err(|e| format!("spec.backends[{i}].selector: Invalid value: {e}"))?,
                None => Selector::from_requirements(Vec::new()),
            };
            backends.push(PolicyBackend {
                name: b.name.clone(),
                selector,
                weight: percent(b.weight),
            });
        }
        let routes = spec
            .routes
            .iter()
            .map(|r| {
                let m = r.match_.clone().unwrap_or_default();
                PolicyRoute {
                    name: r.name.clone().unwrap_or_default(),
                    headers: m.headers.iter().filter_map(match_spec).collect(),
                    cookies: m.cookies.iter().filter_map(match_spec).collect(),
                    backend: r.backend.clone(),
                }
            })
            .collect();
        Ok(TrafficPolicy {
            backends,
            routes,
            mirror: spec.mirror.map(|m| (m.backend.clone(), percent(m.percent))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_policy_reads_into_the_tables_form() {
        let p = TrafficPolicy::from_spec(&json!({
            "backends": [
                {"name": "stable", "selector": {"matchLabels": {"v": "1"}}, "weight": 80},
                {"name": "canary", "weight": 20},
            ],
            "routes": [{"name": "beta", "match": {"headers": [{"name": "x-canary", "prefix": "y"}],
                "cookies": [{"name": "c", "regex": "^on$"}]}, "backend": "canary"}],
            "mirror": {"backend": "canary", "percent": 10},
        }))
        .unwrap();
        let weights: Vec<(&str, u32)> = p
            .backends
            .iter()
            .map(|b| (b.name.as_str(), b.weight))
            .collect();
        assert_eq!(weights, [("stable", 80), ("canary", 20)]);
        assert_eq!(p.backends[0].selector.to_string(), "v=1");
        assert!(p.backends[1].selector.is_empty());
        assert_eq!(p.routes[0].name, "beta");
        assert_eq!(
            p.routes[0].headers,
            [("x-canary".into(), MatchSpec::Prefix("y".into()))]
        );
        assert_eq!(
            p.routes[0].cookies,
            [("c".into(), MatchSpec::Regex("^on$".into()))]
        );
        assert_eq!(p.mirror, Some(("canary".into(), 10)));
    }

    /// The proxy used to read this policy (weights summing to 90) and route on it, and to word
    /// its own messages ("needs one of exact, prefix or regex"); now it says what admission says.
    #[test]
    fn the_proxy_refuses_what_admission_refuses_in_admissions_words() {
        let err = TrafficPolicy::from_spec(&json!({
            "backends": [{"name": "a", "weight": 90}],
            "routes": [{"match": {"headers": [{"name": "x"}]}, "backend": "a"}],
        }))
        .unwrap_err();
        assert_eq!(
            err,
            "spec.backends: Invalid value: weights sum to 90, expected 100; \
             spec.routes[0].match.headers[0]: Invalid value: needs exactly one of exact, prefix or regex"
        );
    }
}
