//! Pipeline secrets and variables over HTTP: admins write, viewers read names and update times;
//! a secret's value goes in once (the request body, never the URL) and never comes back out.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use shipway_store::{Scope, Setting, SettingKind};

use crate::error::ApiError;
use crate::{AppState, Caller};

/// `?repo=R&env=E`: the scope a write names, or what a list is narrowed to.
#[derive(Debug, Default, Deserialize)]
pub struct ScopeParams {
    repo: Option<String>,
    env: Option<String>,
}

impl ScopeParams {
    fn scope(&self) -> Scope {
        Scope::new(self.repo.as_deref(), self.env.as_deref())
    }

    /// A list filter: each parameter given must match; one not given matches any.
    fn matches(&self, s: &Setting) -> bool {
        fn given(p: &Option<String>) -> Option<&str> {
            p.as_deref().filter(|v| !v.is_empty())
        }
        given(&self.repo).is_none_or(|r| s.scope.repo.as_deref() == Some(r))
            && given(&self.env).is_none_or(|e| s.scope.env.as_deref() == Some(e))
    }
}

#[derive(Debug, Deserialize)]
pub struct NewValue {
    value: String,
}

fn list_kind(kind: SettingKind) -> &'static str {
    match kind {
        SettingKind::Secret => "SecretList",
        SettingKind::Variable => "VariableList",
    }
}

fn parse_body(
    kind: SettingKind,
    body: Result<Json<NewValue>, axum::extract::rejection::JsonRejection>,
) -> Result<String, ApiError> {
    let what = match kind {
        SettingKind::Secret => "secret",
        SettingKind::Variable => "variable",
    };
    body.map(|Json(b)| b.value).map_err(|e| {
        ApiError::BadRequest(format!(
            "a {what} is set with {{\"value\": TEXT}}: {}",
            e.body_text()
        ))
    })
}

async fn list(
    state: &AppState,
    kind: SettingKind,
    params: &ScopeParams,
) -> Result<Json<Value>, ApiError> {
    let items: Vec<Setting> = state
        .store
        .list_settings(kind, None)
        .await?
        .into_iter()
        .filter(|s| params.matches(s))
        .collect();
    Ok(Json(json!({"kind": list_kind(kind), "items": items})))
}

async fn set(
    state: &AppState,
    caller: &Caller,
    kind: SettingKind,
    name: &str,
    params: &ScopeParams,
    value: &str,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.actor().to_string();
    let setting = state
        .store
        .set_setting(kind, &params.scope(), name, value, &actor)
        .await?;
    Ok(Json(
        serde_json::to_value(setting).expect("a setting serializes"),
    ))
}

async fn delete(
    state: &AppState,
    caller: &Caller,
    kind: SettingKind,
    name: &str,
    params: &ScopeParams,
) -> Result<Json<Value>, ApiError> {
    let actor = caller.actor().to_string();
    let scope = params.scope();
    state
        .store
        .delete_setting(kind, &scope, name, &actor)
        .await?;
    let name = shipway_store::settings::normalize_name(kind, name).unwrap_or_else(|_| name.into());
    Ok(Json(
        json!({"name": name, "scope": scope, "outcome": "deleted"}),
    ))
}

/// `GET /api/v1/secrets?repo=&env=`: names, scopes and update times; never a value.
pub async fn list_secrets(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Query(params): Query<ScopeParams>,
) -> Result<Json<Value>, ApiError> {
    list(&state, SettingKind::Secret, &params).await
}

/// `PUT /api/v1/secrets/{name}?repo=&env=` `{"value": TEXT}`: sealed at rest, audited without
/// the value.
pub async fn put_secret(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(params): Query<ScopeParams>,
    body: Result<Json<NewValue>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let value = parse_body(SettingKind::Secret, body)?;
    set(&state, &caller, SettingKind::Secret, &name, &params, &value).await
}

/// `DELETE /api/v1/secrets/{name}?repo=&env=`.
pub async fn delete_secret(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(params): Query<ScopeParams>,
) -> Result<Json<Value>, ApiError> {
    delete(&state, &caller, SettingKind::Secret, &name, &params).await
}

/// `GET /api/v1/variables?repo=&env=`: variables with their values.
pub async fn list_variables(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Query(params): Query<ScopeParams>,
) -> Result<Json<Value>, ApiError> {
    list(&state, SettingKind::Variable, &params).await
}

/// `GET /api/v1/variables/{name}?repo=&env=`: one variable of exactly that scope.
pub async fn get_variable(
    State(state): State<Arc<AppState>>,
    _caller: Caller,
    Path(name): Path<String>,
    Query(params): Query<ScopeParams>,
) -> Result<Json<Value>, ApiError> {
    let kind = SettingKind::Variable;
    let wanted = shipway_store::settings::normalize_name(kind, &name).map_err(|m| {
        ApiError::Store(shipway_store::StoreError::Invalid {
            key: shipway_store::settings::audit_key(kind, &name),
            message: m,
        })
    })?;
    let scope = params.scope();
    let found = state
        .store
        .list_settings(kind, Some(&scope))
        .await?
        .into_iter()
        .find(|s| s.name == wanted);
    match found {
        Some(s) => Ok(Json(serde_json::to_value(s).expect("a setting serializes"))),
        None => Err(ApiError::Store(shipway_store::StoreError::NotFound(
            shipway_store::settings::audit_key(kind, &wanted),
        ))),
    }
}

/// `PUT /api/v1/variables/{name}?repo=&env=` `{"value": TEXT}`.
pub async fn put_variable(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(params): Query<ScopeParams>,
    body: Result<Json<NewValue>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let value = parse_body(SettingKind::Variable, body)?;
    set(
        &state,
        &caller,
        SettingKind::Variable,
        &name,
        &params,
        &value,
    )
    .await
}

/// `DELETE /api/v1/variables/{name}?repo=&env=`.
pub async fn delete_variable(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    Query(params): Query<ScopeParams>,
) -> Result<Json<Value>, ApiError> {
    delete(&state, &caller, SettingKind::Variable, &name, &params).await
}
