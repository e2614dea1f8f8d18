//! The level-triggered controller runner every Shipway controller stands on, shaped like
//! kube-runtime: a [`watcher`] (list, then watch, as an explicit state machine), one
//! [`Reflector`] per process folding the store's changes into a shared, indexed [`Cache`] that
//! controllers read instead of the database, and the [`Controller`] runner
//! (`Controller::new(kind, cache).owns(kind).watches(kind, mapper).run(reconcile, error_policy,
//! ctx, shutdown)`). Time comes from tokio's clock, through [`Clock`] for timestamps, so every
//! controller can be tested with `start_paused = true`.
//!
//! Newcomers: start with [`Controller`], then [`Cache`].
//!
//! *Architecture Invariant*: this crate knows no kind's meaning; the kinds it is given are
//! opaque [`GroupKind`]s.

pub mod clock;
pub mod reflector;
pub mod runner;
pub mod watcher;

pub use clock::Clock;
pub use reflector::{Cache, Change, Reflector};
pub use runner::{Action, Controller, Mapper, exponential_backoff};
pub use shipway_model::{Actor, GroupKind};
pub use watcher::{Event, Source, WatchError, watcher};
