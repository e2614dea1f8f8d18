//! Reviews of jobs waiting on an environment: `POST /api/v1/runs/{namespace}/{name}/reviews`
//! appends the caller's approval or rejection to the run's `spec.reviews`, after checking that
//! a job of the run waits on that environment and that the caller is one of its reviewers (and
//! not the run's own actor, unless the environment allows it). Nothing else may change
//! `spec.reviews` ([`guard`]), so each review names who gave it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use shipway_model::types::EnvironmentSpec;
use shipway_model::types::environment;
use shipway_model::types::workflow_run::{
    self, APPROVED, REJECTED, Review, WAITING, WorkflowRunSpec, WorkflowRunStatus,
};
use shipway_model::{Key, Object};
use shipway_runtime::{ApplyOptions, RuntimeErrorKind};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;
use crate::{AppState, Caller};

/// Attempts at appending a review while other writers change the run.
const ATTEMPTS: usize = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReview {
    environment: String,
    /// `approved` or `rejected`.
    state: String,
    #[serde(default)]
    comment: Option<String>,
}

fn is_run(obj: &Object) -> bool {
    obj.group() == workflow_run::GROUP && obj.kind == workflow_run::KIND
}

fn reviews_of(obj: &Object) -> Value {
    obj.field("spec.reviews").cloned().unwrap_or(Value::Null)
}

/// Refuses a write of a WorkflowRun that changes its reviews: only [`review`] adds them. An
/// update is pinned to the version the check read, so a review added in between is a conflict
/// rather than lost.
pub fn guard(current: Option<&Object>, new: &mut Object) -> Result<(), ApiError> {
    if !is_run(new) {
        return Ok(());
    }
    let before = current.map(reviews_of).unwrap_or(Value::Null);
    let empty = |v: &Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
    let same = before == reviews_of(new) || (empty(&before) && empty(&reviews_of(new)));
    if !same {
        let message = "Forbidden: reviews are added by `shipway pipeline approve|reject` (POST /api/v1/runs/NAMESPACE/NAME/reviews) only, as the identity giving them";
        return Err(ApiError::Invalid {
            message: format!(
                "WorkflowRun.shipway.dev {:?} is invalid: spec.reviews: {message}",
                new.metadata.name
            ),
            details: vec![format!("spec.reviews: {message}")],
        });
    }
    if let Some(current) = current
        && new.metadata.resource_version.is_none()
    {
        new.metadata.resource_version = current.metadata.resource_version.clone();
    }
    Ok(())
}

/// `POST /api/v1/runs/{namespace}/{name}/reviews` `{"environment", "state", "comment"?}`.
pub async fn review(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((namespace, name)): Path<(String, String)>,
    body: Result<Json<NewReview>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(new) = body.map_err(|e| {
        ApiError::BadRequest(format!(
            "a review is {{\"environment\": NAME, \"state\": \"approved\"|\"rejected\", \"comment\": TEXT}}: {}",
            e.body_text()
        ))
    })?;
    if new.state != APPROVED && new.state != REJECTED {
        let why = format!(
            "Unsupported value: {:?}: supported values: \"approved\", \"rejected\"",
            new.state
        );
        return Err(ApiError::Invalid {
            message: format!("review of {name:?} is invalid: state: {why}"),
            details: vec![format!("state: {why}")],
        });
    }
    if caller.is_run() {
        // A run approving a deployment (its own or another's) would make reviewers pointless.
        return Err(ApiError::Refused(format!(
            "user {:?} is a workflow run's token: reviews are given by people (`shipway pipeline approve|reject` with your own token)",
            caller.name
        )));
    }
    let key = Key::new(workflow_run::GROUP, workflow_run::KIND, &namespace, &name);
    let env_key = Key::new(
        environment::GROUP,
        environment::KIND,
        &namespace,
        &new.environment,
    );
    let mut conflict = None;
    for _ in 0..ATTEMPTS {
        let Some(run) = state.store.get(&key).await? else {
            return Err(ApiError::NotFound(format!(
                "workflowruns.shipway.dev {name:?} not found in namespace {namespace:?}; `shipway pipeline list` lists the runs"
            )));
        };
        let mut spec: WorkflowRunSpec = run
            .spec_as()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let status: WorkflowRunStatus = run
            .status_as()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let attempt = spec.run_attempt;
        let waiting = status.jobs.iter().any(|j| {
            j.status == WAITING && j.environment.as_deref() == Some(new.environment.as_str())
        });
        if !waiting || status.is_completed() || status.attempt() != attempt {
            return Err(ApiError::Conflict(format!(
                "run {name:?} has no job waiting for environment {:?}: nothing to approve or reject",
                new.environment
            )));
        }
        let Some(env) = state.store.get(&env_key).await? else {
            return Err(ApiError::Conflict(format!(
                "environment {:?} has no protection rules (no Environment object in namespace {namespace:?}): nothing to review",
                new.environment
            )));
        };
        let env_spec: EnvironmentSpec = env
            .spec_as()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let forbidden = ApiError::Refused;
        if !env_spec.is_reviewer(&caller.name, caller.role.as_str()) {
            return Err(forbidden(format!(
                "user {:?} is not a reviewer of environment {:?}: its reviewers are {}",
                caller.name,
                new.environment,
                env_spec.reviewers()
            )));
        }
        if caller.name == spec.actor && !env_spec.allow_self_review {
            return Err(forbidden(format!(
                "user {:?} caused run {name:?}, and environment {:?} does not allow self-review: another reviewer must review it",
                caller.name, new.environment
            )));
        }
        if let Some(r) = spec.reviews.iter().find(|r| {
            r.user == caller.name && r.environment == new.environment && r.attempt == attempt
        }) {
            return Err(ApiError::AlreadyExists(format!(
                "user {:?} already {} environment {:?} for attempt {attempt} of run {name:?}",
                caller.name, r.state, new.environment
            )));
        }
        let review = Review {
            environment: new.environment.clone(),
            state: new.state.clone(),
            user: caller.name.clone(),
            role: caller.role.as_str().to_string(),
            attempt,
            comment: new.comment.clone().filter(|c| !c.trim().is_empty()),
            submitted_at: now(),
        };
        spec.reviews.push(review.clone());
        let mut updated = run.clone();
        updated.body.insert(
            "spec".into(),
            serde_json::to_value(&spec).map_err(|e| ApiError::Internal(e.to_string()))?,
        );
        let options = ApplyOptions {
            actor: caller.actor(),
            dry_run: false,
        };
        match state.runtime.apply(updated, options).await {
            Err(e) if e.kind == RuntimeErrorKind::Conflict => conflict = Some(e),
            Err(e) => return Err(e.into()),
            Ok(_) => {
                let (action, verb) = if review.state == APPROVED {
                    ("Approved", "approved")
                } else {
                    ("Rejected", "rejected")
                };
                let comment = review
                    .comment
                    .as_deref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                let message = format!(
                    "{} {verb} environment {:?} for attempt {attempt}{comment}",
                    caller.name, review.environment
                );
                if let Err(e) = state
                    .store
                    .record_event(&key, &caller.name, action, &message)
                    .await
                {
                    tracing::warn!(error = %e, "{message}: audit event not recorded");
                }
                let body = serde_json::to_value(&review).unwrap_or_default();
                return Ok((StatusCode::CREATED, Json(body)).into_response());
            }
        }
    }
    Err(conflict.expect("every attempt conflicted").into())
}

fn now() -> String {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}
