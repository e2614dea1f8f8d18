//! Argo Rollouts on Shipway. [`rollout`] is the Rollout controller (the canary strategy as
//! pure decisions in `rollout/mod.rs`, carried out by `rollout::controller`); [`analysis`] runs
//! AnalysisRuns (the state machine, argument resolution, metric providers and the controller);
//! [`experiment`] runs Experiments (a ReplicaSet per template and their AnalysisRuns), which the
//! canary `experiment` step creates.
//!
//! Newcomers: start with `rollout::decide`.

pub mod analysis;
pub mod experiment;
pub mod rollout;
