//! `POST /api/v1/webhooks/git`: push notifications from GitHub, GitLab and Gitea for external
//! repositories. The sender has no token: the delivery is authenticated by its signature,
//! checked in constant time against the `secret` key of the Secret each matching Repository
//! names in `spec.webhookSecretRef`. A verified push lands in that Repository's
//! `status.lastWebhook`, which wakes whatever follows the repository (the GitOps controller
//! fetches it at once instead of at its next poll).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use shipway_git::webhook::{self, Delivery};
use shipway_model::types::{RepositorySpec, RepositoryStatus};
use shipway_model::{Key, Object};
use shipway_store::{ListQuery, StoreError};

use crate::AppState;
use crate::error::ApiError;

const ACTOR: &str = "system:webhook";

/// One answer for a bad, missing or unmatched signature, so a caller without the secret learns
/// nothing about which repositories exist.
fn refused() -> ApiError {
    ApiError::WebhookRefused(
        "the delivery's signature does not verify with the webhook secret of any repository: set spec.webhookSecretRef on the Repository whose spec.url the payload names, and the same secret at the git host".into(),
    )
}

pub async fn git(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let delivery = Delivery::from_headers(|name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    })
    .map_err(|e| ApiError::WebhookRefused(e.to_string()))?;
    let push = webhook::push(body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let wanted: Vec<String> = push
        .urls
        .iter()
        .map(|u| webhook::normalize_url(u))
        .collect();
    let repos = state
        .store
        .list(&ListQuery::kind("shipway.dev", "Repository"))
        .await?;
    let mut verified = Vec::new();
    for repo in repos.items {
        let spec: RepositorySpec = repo.spec_as().unwrap_or_default();
        let Some(url) = spec.url.as_deref().filter(|_| !spec.is_hosted()) else {
            continue;
        };
        if !wanted.contains(&webhook::normalize_url(url)) {
            continue;
        }
        let Some(secret) = webhook_secret(state, &repo, &spec).await? else {
            continue;
        };
        if delivery.verify(&secret, body) {
            verified.push(repo);
        }
    }
    if verified.is_empty() {
        return Err(refused());
    }
    let mut names = Vec::new();
    for repo in verified {
        let key = repo.key();
        record(state, &key, &delivery, &push).await?;
        names.push(format!(
            "{}/{}",
            repo.metadata.namespace.as_deref().unwrap_or("default"),
            repo.metadata.name
        ));
    }
    Ok(json!({"event": delivery.event, "repositories": names}))
}

/// The bytes of the `secret` key of the Repository's webhook Secret; `None` without one.
async fn webhook_secret(
    state: &AppState,
    repo: &Object,
    spec: &RepositorySpec,
) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(secret_ref) = &spec.webhook_secret_ref else {
        return Ok(None);
    };
    let namespace = repo.metadata.namespace.as_deref().unwrap_or("default");
    let key = Key::new("", "Secret", namespace, &secret_ref.name);
    let Some(secret) = state.store.get(&key).await? else {
        tracing::warn!(
            "webhook: repository {namespace}/{} names Secret {:?}, which does not exist",
            repo.metadata.name,
            secret_ref.name
        );
        return Ok(None);
    };
    let encoded = secret.body.get("data").and_then(|d| d.get("secret"));
    Ok(encoded
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .filter(|s| !s.is_empty()))
}

/// Writes the push into the Repository's status (retrying when another write came first) and
/// records it in the audit trail.
async fn record(
    state: &AppState,
    key: &Key,
    delivery: &Delivery,
    push: &webhook::Push,
) -> Result<(), ApiError> {
    let last = json!({
        "provider": delivery.provider.as_str(),
        "event": delivery.event,
        "ref": push.git_ref,
        "revision": push.after,
    });
    for _ in 0..5 {
        let Some(mut repo) = state.store.get(key).await? else {
            return Ok(());
        };
        let mut status: RepositoryStatus = repo.status_as().unwrap_or_default();
        if status.rest.get("lastWebhook") == Some(&last) {
            break;
        }
        status.rest.insert("lastWebhook".into(), last.clone());
        repo.set_status(&status);
        match state.store.update_status(repo, ACTOR).await {
            Ok(_) => break,
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let message = format!(
        "{} {} {} at {}",
        delivery.provider.as_str(),
        if delivery.event.is_empty() {
            "delivery"
        } else {
            delivery.event.as_str()
        },
        push.git_ref.as_deref().unwrap_or("(no ref)"),
        push.after.as_deref().unwrap_or("(no revision)")
    );
    state
        .store
        .record_event(key, ACTOR, "WebhookReceived", &message)
        .await?;
    Ok(())
}
