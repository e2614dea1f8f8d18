//! `Environment` (shipway.dev/v1alpha1): GitHub's deployment environment as an object. A job
//! with `environment: NAME` runs only once the environment's protection rules pass: required
//! reviewers (N distinct approvals, never the run's own actor unless `allowSelfReview`), a wait
//! timer, and the branches and tags allowed to deploy. An environment a workflow names that has
//! no object has no protection, as on GitHub.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const GROUP: &str = "shipway.dev";
pub const KIND: &str = "Environment";
/// GitHub's longest wait timer: 30 days, in minutes.
pub const MAX_WAIT_MINUTES: u64 = 43_200;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentSpec {
    /// Who may approve: users by name, or every user of a role (or a higher one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_reviewers: Vec<Reviewer>,
    /// Distinct approvals a job needs [default: 1 when there are reviewers].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_approvals: Option<u32>,
    /// Whether the identity that caused a run may approve its jobs (GitHub's opposite of
    /// `prevent_self_review`; here off by default, as two-person review intends).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_self_review: bool,
    /// How long a job waits before it may start: minutes (GitHub's `wait_timer`) or a duration
    /// such as `90s` or `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timer: Option<Value>,
    /// The refs allowed to deploy here; none: every ref.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_branch_policy: Option<BranchPolicy>,
    /// Where the environment is reached, shown with its deployments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// One entry of `requiredReviewers`: exactly one of `user` and `role`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reviewer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl Reviewer {
    /// Whether a review by `user`, of `role`, counts for this entry: the user named, or a user
    /// of the role or a higher one.
    pub fn admits(&self, user: &str, role: &str) -> bool {
        let rank = |r: &str| ROLES.iter().position(|x| *x == r);
        match (&self.user, &self.role) {
            (Some(u), _) => u == user,
            (None, Some(r)) => matches!((rank(role), rank(r)), (Some(a), Some(b)) if a >= b),
            (None, None) => false,
        }
    }
}

impl std::fmt::Display for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.user, &self.role) {
            (Some(u), _) => write!(f, "user {u}"),
            (None, Some(r)) => write!(f, "role {r}"),
            (None, None) => f.write_str("nobody"),
        }
    }
}

/// Branch and tag name patterns (GitHub's filter patterns: `*` stops at `/`, `**` does not).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchPolicy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

const ROLES: [&str; 3] = ["viewer", "deployer", "admin"];

impl EnvironmentSpec {
    /// Whether `user` of `role` is one of the required reviewers.
    pub fn is_reviewer(&self, user: &str, role: &str) -> bool {
        self.required_reviewers.iter().any(|r| r.admits(user, role))
    }

    /// The reviewers as a sentence: `user bob, role admin`.
    pub fn reviewers(&self) -> String {
        let all: Vec<String> = self
            .required_reviewers
            .iter()
            .map(|r| r.to_string())
            .collect();
        all.join(", ")
    }

    /// The approvals a job needs: 0 without reviewers.
    pub fn approvals_needed(&self) -> u32 {
        if self.required_reviewers.is_empty() {
            0
        } else {
            self.required_approvals.unwrap_or(1).max(1)
        }
    }

    /// The wait timer; zero without one.
    pub fn wait(&self) -> Result<Duration, String> {
        let too_long =
            || format!("Invalid value: must be at most {MAX_WAIT_MINUTES} minutes (30 days)");
        match &self.wait_timer {
            None | Some(Value::Null) => Ok(Duration::ZERO),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(m) if m <= MAX_WAIT_MINUTES => Ok(Duration::from_secs(m * 60)),
                Some(_) => Err(too_long()),
                None => Err(format!(
                    "Invalid value: {n}: expected whole minutes from 0 to {MAX_WAIT_MINUTES}"
                )),
            },
            Some(Value::String(s)) => match crate::types::repository::parse_long_duration(s) {
                Some(d) if d.as_secs() <= MAX_WAIT_MINUTES * 60 => Ok(d),
                Some(_) => Err(too_long()),
                None => Err(format!(
                    "Invalid value: {s:?}: expected minutes (a number) or a duration such as 90s, 5m or 1h"
                )),
            },
            Some(other) => Err(format!(
                "Invalid value: {other}: expected minutes (a number) or a duration such as 5m"
            )),
        }
    }

    /// Every problem of the spec, as `(path, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, r) in self.required_reviewers.iter().enumerate() {
            let path = format!("spec.requiredReviewers[{i}]");
            match (&r.user, &r.role) {
                (Some(_), Some(_)) | (None, None) => out.push((
                    path,
                    "Invalid value: set exactly one of user (a user's name) and role (viewer, deployer or admin)".into(),
                )),
                (Some(u), None) if u.is_empty() => {
                    out.push((format!("{path}.user"), "Required value: a user's name".into()))
                }
                (None, Some(role)) if !ROLES.contains(&role.as_str()) => out.push((
                    format!("{path}.role"),
                    format!(
                        "Unsupported value: {role:?}: supported values: \"deployer\", \"admin\""
                    ),
                )),
                (None, Some(role)) if role == "viewer" => out.push((
                    format!("{path}.role"),
                    "Invalid value: \"viewer\": viewers cannot approve (approving needs the deployer role); use deployer or admin".into(),
                )),
                _ => {}
            }
        }
        if let Some(n) = self.required_approvals {
            if self.required_reviewers.is_empty() {
                out.push((
                    "spec.requiredApprovals".into(),
                    "Forbidden: requiredApprovals needs requiredReviewers (who may approve)".into(),
                ));
            } else if !(1..=10).contains(&n) {
                out.push((
                    "spec.requiredApprovals".into(),
                    format!("Invalid value: {n}: must be from 1 to 10"),
                ));
            }
        }
        if let Err(e) = self.wait() {
            out.push(("spec.waitTimer".into(), e));
        }
        if let Some(p) = &self.deployment_branch_policy {
            for (field, patterns) in [("branches", &p.branches), ("tags", &p.tags)] {
                for (i, pattern) in patterns.iter().enumerate() {
                    if pattern.trim().is_empty() {
                        out.push((
                            format!("spec.deploymentBranchPolicy.{field}[{i}]"),
                            "Required value: a name pattern such as main or release/*".into(),
                        ));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> EnvironmentSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn wait_timers_are_minutes_or_durations() {
        assert_eq!(spec(json!({})).wait(), Ok(Duration::ZERO));
        assert_eq!(
            spec(json!({"waitTimer": 5})).wait(),
            Ok(Duration::from_secs(300))
        );
        assert_eq!(
            spec(json!({"waitTimer": "90s"})).wait(),
            Ok(Duration::from_secs(90))
        );
        assert!(spec(json!({"waitTimer": 43_201})).wait().is_err());
        assert!(spec(json!({"waitTimer": "31d"})).wait().is_err());
        assert!(spec(json!({"waitTimer": -1})).wait().is_err());
        assert!(spec(json!({"waitTimer": "soon"})).wait().is_err());
    }

    #[test]
    fn problems_name_their_fields() {
        let s = spec(json!({
            "requiredReviewers": [{"user": "a", "role": "admin"}, {"role": "viewer"}, {"role": "root"}],
            "requiredApprovals": 11,
            "deploymentBranchPolicy": {"branches": [""]},
        }));
        let paths: Vec<String> = s.problems().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "spec.requiredReviewers[0]",
                "spec.requiredReviewers[1].role",
                "spec.requiredReviewers[2].role",
                "spec.requiredApprovals",
                "spec.deploymentBranchPolicy.branches[0]",
            ]
        );
        assert_eq!(
            spec(json!({"requiredReviewers": [{"role": "deployer"}]})).approvals_needed(),
            1
        );
        assert_eq!(spec(json!({})).approvals_needed(), 0);
        assert!(
            spec(json!({"requiredApprovals": 2})).problems()[0]
                .1
                .contains("needs requiredReviewers")
        );
    }

    #[test]
    fn reviewers_are_users_or_roles_and_higher_roles() {
        let bob = Reviewer {
            user: Some("bob".into()),
            role: None,
        };
        let deployers = Reviewer {
            user: None,
            role: Some("deployer".into()),
        };
        assert!(bob.admits("bob", "viewer"));
        assert!(!bob.admits("carol", "admin"));
        assert!(deployers.admits("carol", "admin"));
        assert!(deployers.admits("dan", "deployer"));
        assert!(!deployers.admits("val", "viewer"));
    }
}
