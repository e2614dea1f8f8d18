//! Argo CD's Application, as pure functions the GitOps controller calls: [`spec::check`] (what
//! Shipway refuses, what it does not implement, what the AppProject forbids), [`render::render`]
//! (a source's tree to objects), [`diff::diff`] (normalised desired against live, per resource),
//! [`plan::plan`] (phases, waves and tasks for one executor) and [`health::app_health`].
//!
//! Those are pure: no IO but through a `shipway_fs::FileSystem`, no store, no HTTP. The
//! [`controller`] (with its sync executor, `sync`) is the one part that reads the cache and git,
//! writes through the runtime and the store, and feeds those functions what it read.
//!
//! Newcomers: start with [`controller::ApplicationController::reconcile`].

pub mod controller;
pub mod diff;
pub mod glob;
pub mod health;
pub mod jq;
pub mod plan;
pub mod render;
pub mod spec;
mod sync;
mod tracked;
pub mod tracking;

pub use diff::{ResourceDiff, SyncStatus, diff};
pub use health::app_health;
pub use plan::{Plan, PlanError, SyncOptions, plan};
pub use render::{RenderError, render};
pub use spec::check;
pub use tracking::{TRACKING_ANNOTATION, tracking_id};

/// Argo CD's condition types (`status.conditions[].type`). Types ending in `Error` are errors,
/// the others warnings, as Argo's `IsError` has it.
pub mod condition {
    pub const INVALID_SPEC_ERROR: &str = "InvalidSpecError";
    pub const COMPARISON_ERROR: &str = "ComparisonError";
    pub const SYNC_ERROR: &str = "SyncError";
    /// Shipway's: a field Argo CD knows and Shipway accepts but does not act on.
    pub const UNSUPPORTED_WARNING: &str = "UnsupportedFieldWarning";
}
