//! API errors and the one place that maps them to HTTP statuses.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shipway_model::LoadError;
use shipway_runtime::{RuntimeError, RuntimeErrorKind};
use shipway_store::StoreError;

use crate::auth::{Role, TokenError};

/// The body of every error response, shaped like Kubernetes' `Status` so tools that know it can read it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub kind: String,
    pub status: String,
    pub code: u16,
    pub reason: String,
    pub message: String,
    /// Every problem found, for validation errors (`file:line:col: message`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// Whether sending the same request again may succeed.
    #[serde(default)]
    pub retryable: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("{message}")]
    Invalid {
        message: String,
        details: Vec<String>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The object is not in a state the request applies to (no job waits for that review).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// A caller whose role allows the route, refused by a rule of the object (not a reviewer
    /// of the environment, reviewing its own run).
    #[error("{0}")]
    Refused(String),
    /// A failure of the server's own machinery (git http-backend would not start, say).
    #[error("{0}")]
    Internal(String),
    #[error(
        "missing or invalid bearer token: send `Authorization: Bearer <token>` (the admin token is in the data directory's admin.token)"
    )]
    Unauthorized,
    /// A webhook delivery whose signature does not verify (it carries no token).
    #[error("{0}")]
    WebhookRefused(String),
    /// A valid token whose role lacks the verb, worded as Kubernetes' RBAC refusals, with the
    /// role that would do.
    #[error(
        "user {caller:?} cannot {verb} resource {resource:?}{}: role {role} {}; this needs the {needs} role",
        namespace.as_ref().map(|ns| format!(" in namespace {ns:?}")).unwrap_or_default(),
        role.scope()
    )]
    Forbidden {
        caller: String,
        verb: &'static str,
        resource: String,
        namespace: Option<String>,
        role: Role,
        needs: Role,
    },
}

impl From<shipway_model::Invalid> for ApiError {
    fn from(invalid: shipway_model::Invalid) -> ApiError {
        ApiError::Invalid {
            message: invalid.to_string(),
            details: invalid.problems.iter().map(ToString::to_string).collect(),
        }
    }
}

impl ApiError {
    pub fn invalid(errors: Vec<LoadError>) -> ApiError {
        let details: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let message = match details.as_slice() {
            [one] => one.clone(),
            many => format!("{} problems in the object", many.len()),
        };
        ApiError::Invalid { message, details }
    }

    fn status_and_reason(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Store(e) => match e {
                StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
                StoreError::AlreadyExists(_) => (StatusCode::CONFLICT, "AlreadyExists"),
                StoreError::Conflict { .. } => (StatusCode::CONFLICT, "Conflict"),
                StoreError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
                StoreError::Expired { .. } | StoreError::ContinueExpired => {
                    (StatusCode::GONE, "Expired")
                }
                StoreError::InvalidContinue(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
                StoreError::Backend { .. } => (StatusCode::SERVICE_UNAVAILABLE, "StoreUnavailable"),
            },
            ApiError::Runtime(e) => match e.kind {
                RuntimeErrorKind::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
                RuntimeErrorKind::BadRequest => (StatusCode::BAD_REQUEST, "BadRequest"),
                RuntimeErrorKind::NotFound => (StatusCode::NOT_FOUND, "NotFound"),
                RuntimeErrorKind::AlreadyExists => (StatusCode::CONFLICT, "AlreadyExists"),
                RuntimeErrorKind::Conflict => (StatusCode::CONFLICT, "Conflict"),
                RuntimeErrorKind::Expired => (StatusCode::GONE, "Expired"),
                // The local runtime's backend is the store; the reason stays the one users know.
                RuntimeErrorKind::Unavailable { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "StoreUnavailable")
                }
            },
            ApiError::Token(e) => match e {
                TokenError::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists"),
                TokenError::NotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
                TokenError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
                TokenError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "StoreUnavailable"),
            },
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
            ApiError::AlreadyExists(_) => (StatusCode::CONFLICT, "AlreadyExists"),
            ApiError::Refused(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            ApiError::Unauthorized | ApiError::WebhookRefused(_) => {
                (StatusCode::UNAUTHORIZED, "Unauthorized")
            }
        }
    }

    pub fn to_status(&self) -> Status {
        let (code, reason) = self.status_and_reason();
        Status {
            kind: "Status".into(),
            status: "Failure".into(),
            code: code.as_u16(),
            reason: reason.into(),
            message: self.to_string(),
            details: match self {
                ApiError::Invalid { details, .. } => details.clone(),
                ApiError::Runtime(e) => e.details.clone(),
                _ => Vec::new(),
            },
            retryable: match self {
                ApiError::Store(e) => e.is_retryable(),
                ApiError::Runtime(e) => e.is_retryable(),
                _ => false,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.to_status();
        let code = StatusCode::from_u16(status.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let mut response = (code, Json(status)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"shipway\""),
            );
        }
        response
    }
}
