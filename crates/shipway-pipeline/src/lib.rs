//! GitHub Actions workflows: parsing, validation, planning and local execution.
//!
//! Newcomers: start with [`parse::parse_workflow`] (text to a validated [`workflow::Workflow`]
//! plus every [`problem::Problem`] with `file:line:col`) and [`load::load`] (a workflow with
//! the local actions and reusable workflows it uses). Then [`trigger::matches`] (does an event
//! start it), [`plan::plan`] and [`matrix::expand`] (GitHub's include/exclude rules), and
//! [`exec::run_workflow`], which runs it and returns the [`exec::Report`].

pub mod cron;
pub mod exec;
pub mod graph;
pub mod load;
pub mod matrix;
pub mod parse;
pub mod plan;
pub mod problem;
pub mod scopes;
pub mod trigger;
pub mod workflow;
