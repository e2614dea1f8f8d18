//! Pipelines inside the platform: pushes to hosted repositories trigger the workflows whose
//! `on:` matches ([`trigger`]), cron lines fire on their minute ([`schedule`]), a dispatch asks for a run by hand
//! ([`dispatch`]), each a
//! `WorkflowRun` object; the [`scheduler`] runs them
//! with `shipway-pipeline` in a checkout of their commit, sharing the server's job slots, and
//! [`record`] keeps their status and every log line in the store.
//!
//! *Architecture Invariant*: no HTTP. Runs are objects; the API and the CLI read them and their
//! logs from the store.

pub mod dispatch;
pub mod gate;
pub mod platform;
pub mod promote;
pub mod record;
pub mod schedule;
pub mod scheduler;
pub mod trigger;

/// The writer named in the audit trail for what CI writes.
pub const ACTOR: &str = "shipway-ci";

#[derive(Debug, thiserror::Error)]
pub enum CiError {
    #[error(transparent)]
    Store(#[from] shipway_store::StoreError),
    #[error(transparent)]
    Git(#[from] shipway_git::Error),
    #[error(transparent)]
    Hosted(#[from] shipway_git::hosted::HostedError),
    #[error(transparent)]
    Shape(#[from] shipway_model::types::ShapeError),
    #[error("{0}")]
    Other(String),
}
