//! Argo Rollouts on Shipway. For now the analysis half: [`analysis`] runs AnalysisRuns (the
//! state machine, argument resolution, metric providers and the controller).

pub mod analysis;
