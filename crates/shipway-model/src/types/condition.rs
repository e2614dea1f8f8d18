//! The condition every kind's status shares (`type`, `status`, `reason`, `message` and the two
//! times), and setting one as Kubernetes' controllers do.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    /// `lastProbeTime` (Pods; often `null`) and anything else, as written.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl Condition {
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// The condition of type `type_`.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Sets a condition, keeping `lastTransitionTime` when the status did not change; `now` becomes
/// its `lastUpdateTime`.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
) {
    let status = if status { "True" } else { "False" };
    let c = match conditions.iter_mut().position(|c| c.type_ == type_) {
        Some(i) => &mut conditions[i],
        None => {
            conditions.push(Condition {
                type_: type_.to_string(),
                last_transition_time: Some(now.to_string()),
                ..Condition::default()
            });
            conditions.last_mut().expect("just pushed")
        }
    };
    if c.status != status {
        c.last_transition_time = Some(now.to_string());
    }
    c.status = status.to_string();
    c.reason = Some(reason.to_string());
    c.message = Some(message.to_string());
    c.last_update_time = Some(now.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_time_moves_only_when_the_status_does() {
        let mut cs = Vec::new();
        set(&mut cs, "Available", false, "R", "m", "t1");
        set(&mut cs, "Available", false, "R", "m", "t2");
        assert_eq!(cs[0].last_transition_time.as_deref(), Some("t1"));
        assert_eq!(cs[0].last_update_time.as_deref(), Some("t2"));
        set(&mut cs, "Available", true, "R2", "m2", "t3");
        assert_eq!(
            serde_json::to_value(&cs).unwrap(),
            serde_json::json!([{"type": "Available", "status": "True", "reason": "R2", "message": "m2",
                "lastTransitionTime": "t3", "lastUpdateTime": "t3"}])
        );
        assert!(find(&cs, "Available").unwrap().is_true());
        assert!(find(&cs, "Progressing").is_none());
    }
}
