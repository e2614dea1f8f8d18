//! `TrafficPolicy` (shipway.dev/v1alpha1): the per-Service routing a rollout drives, read from
//! its JSON spec into typed form.

use serde_json::Value;
use shipway_model::Selector;

use crate::table::MatchSpec;

/// The group and kind of the policy objects; one per Service, with the Service's name.
pub const GROUP: &str = "shipway.dev";
pub const KIND: &str = "TrafficPolicy";

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

fn match_spec(v: &Value, at: &str) -> Result<MatchSpec, String> {
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(s) = text("exact") {
        Ok(MatchSpec::Exact(s))
    } else if let Some(s) = text("prefix") {
        Ok(MatchSpec::Prefix(s))
    } else if let Some(s) = text("regex") {
        regex::Regex::new(&s).map_err(|e| format!("{at}.regex: {e}"))?;
        Ok(MatchSpec::Regex(s))
    } else {
        Err(format!("{at}: needs one of exact, prefix or regex"))
    }
}

fn matches(v: Option<&Value>, at: &str) -> Result<Vec<(String, MatchSpec)>, String> {
    let mut out = Vec::new();
    for (i, m) in v
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("{at}[{i}]");
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{at}.name: required"))?;
        out.push((name.to_string(), match_spec(m, &at)?));
    }
    Ok(out)
}

impl TrafficPolicy {
    /// Reads `spec`. Errors name the field; the API validates the same rules at apply, so an error
    /// here means an object that bypassed it.
    pub fn from_spec(spec: &Value) -> Result<TrafficPolicy, String> {
        let mut policy = TrafficPolicy::default();
        for (i, b) in spec
            .get("backends")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("spec.backends[{i}]");
            let name = b
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{at}.name: required"))?;
            let selector = match b.get("selector") {
                Some(s) => {
                    Selector::from_label_selector(s).map_err(|e| format!("{at}.selector: {e}"))?
                }
                None => Selector::from_requirements(Vec::new()),
            };
            let weight = b.get("weight").and_then(Value::as_u64).unwrap_or(0);
            if weight > 100 {
                return Err(format!("{at}.weight: {weight} is over 100"));
            }
            policy.backends.push(PolicyBackend {
                name: name.to_string(),
                selector,
                weight: weight as u32,
            });
        }
        let known = |name: &str| policy.backends.iter().any(|b| b.name == name);
        let mut routes = Vec::new();
        for (i, r) in spec
            .get("routes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("spec.routes[{i}]");
            let backend = r
                .get("backend")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{at}.backend: required"))?;
            if !known(backend) {
                return Err(format!("{at}.backend: no backend named {backend:?}"));
            }
            let m = r.get("match");
            routes.push(PolicyRoute {
                name: r
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                headers: matches(
                    m.and_then(|m| m.get("headers")),
                    &format!("{at}.match.headers"),
                )?,
                cookies: matches(
                    m.and_then(|m| m.get("cookies")),
                    &format!("{at}.match.cookies"),
                )?,
                backend: backend.to_string(),
            });
        }
        if let Some(m) = spec.get("mirror").filter(|m| !m.is_null()) {
            let backend = m
                .get("backend")
                .and_then(Value::as_str)
                .ok_or("spec.mirror.backend: required")?;
            if !known(backend) {
                return Err(format!("spec.mirror.backend: no backend named {backend:?}"));
            }
            let percent = m
                .get("percent")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(100);
            policy.mirror = Some((backend.to_string(), percent as u32));
        }
        policy.routes = routes;
        Ok(policy)
    }
}
