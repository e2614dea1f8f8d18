//! Argo Rollouts on Shipway. [`rollout`] is the Rollout controller (the canary strategy as
//! pure decisions in `rollout/mod.rs`, carried out by `rollout::controller`); [`analysis`] runs
//! AnalysisRuns (the state machine, argument resolution, metric providers and the controller).
//!
//! Newcomers: start with `rollout::decide`.

pub mod analysis;
pub mod rollout;
