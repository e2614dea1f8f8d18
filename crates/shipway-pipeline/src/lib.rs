//! GitHub Actions workflows: parsing, validation, planning and local execution.
//!
//! Newcomers: start with [`parse::parse_workflow`] (text to a validated [`workflow::Workflow`]
//! plus every [`problem::Problem`] with `file:line:col`), then [`trigger::matches`] (does an
//! event start it) and [`matrix::expand`] (GitHub's include/exclude rules).

pub mod graph;
pub mod load;
pub mod matrix;
pub mod parse;
pub mod plan;
pub mod problem;
pub mod scopes;
pub mod trigger;
pub mod workflow;
