//! The static plan of a workflow: jobs in dependency order with their matrices expanded where
//! that needs no run-time value. Used by `--list`, `--graph`, `--dry-run` and the corpus test.

use crate::matrix::{self, Combination};
use crate::workflow::{Action, Uses, Workflow};

#[derive(Clone, Debug, PartialEq)]
pub enum MatrixPlan {
    /// No strategy.matrix.
    None,
    /// Expanded now.
    Static(Vec<Combination>),
    /// Holds expressions (`fromJSON(needs.x.outputs.y)`, inputs): expanded when the job starts.
    Dynamic,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlannedJob {
    pub id: String,
    pub needs: Vec<String>,
    pub matrix: MatrixPlan,
    /// Steps, or the called workflow's path for a reusable-workflow job.
    pub steps: usize,
    pub calls: Option<String>,
    /// Steps whose action cannot run here (skipped with a warning when allowed).
    pub unsupported_steps: usize,
}

impl PlannedJob {
    /// How many job runs the job becomes (unknown for a dynamic matrix).
    pub fn instances(&self) -> Option<usize> {
        match &self.matrix {
            MatrixPlan::None => Some(1),
            MatrixPlan::Static(c) => Some(c.len()),
            MatrixPlan::Dynamic => None,
        }
    }
}

/// Plans a workflow: jobs in an order where needs come first; errors name the problem.
pub fn plan(w: &Workflow) -> Result<Vec<PlannedJob>, String> {
    let order = crate::graph::order(w)
        .map_err(|cycle| format!("the jobs' needs form a cycle: {}", cycle.join(" -> ")))?;
    let mut out = Vec::with_capacity(order.len());
    for id in order {
        let job = &w.jobs[&id];
        let matrix = match job.strategy.as_ref().and_then(|s| s.matrix.as_ref()) {
            None => MatrixPlan::None,
            Some(m) if crate::matrix::has_expression(m) => MatrixPlan::Dynamic,
            Some(m) => MatrixPlan::Static(
                matrix::expand(m).map_err(|e| format!("jobs.{id}.strategy.matrix: {e}"))?,
            ),
        };
        out.push(PlannedJob {
            id: id.clone(),
            needs: job.needs.iter().map(|(n, _)| n.clone()).collect(),
            matrix,
            steps: job.steps.len(),
            calls: job.uses.as_ref().map(|c| c.path.clone()),
            unsupported_steps: job
                .steps
                .iter()
                .filter(|s| matches!(s.action, Action::Uses(Uses::Unsupported(_))))
                .count(),
        });
    }
    Ok(out)
}
