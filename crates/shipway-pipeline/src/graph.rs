//! The job graph: `needs` must name jobs of the workflow and must not form a cycle.

use indexmap::IndexMap;

use crate::problem::{Problem, Severity};
use crate::workflow::Workflow;

/// Reports unknown needs and every cycle (once, at the first job of the cycle in file order).
pub fn check(w: &Workflow, file: &str, problems: &mut Vec<Problem>) {
    for job in w.jobs.values() {
        for (need, pos) in &job.needs {
            if !w.jobs.contains_key(need) {
                problems.push(Problem::new(
                    file,
                    *pos,
                    Severity::Error,
                    format!(
                        "jobs.{}.needs: job '{need}' does not exist; jobs are: {}",
                        job.id,
                        w.jobs.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            } else if need == &job.id {
                problems.push(Problem::new(
                    file,
                    *pos,
                    Severity::Error,
                    format!("jobs.{}.needs: a job cannot need itself", job.id),
                ));
            }
        }
    }
    if let Err(cycle) = order(w) {
        let first = &w.jobs[&cycle[0]];
        problems.push(Problem::new(
            file,
            first.pos,
            Severity::Error,
            format!(
                "jobs.{}.needs: the jobs' needs form a cycle: {} -> {}",
                first.id,
                cycle.join(" -> "),
                cycle[0]
            ),
        ));
    }
}

/// Jobs in an order where each comes after its needs (Kahn's algorithm, file order among
/// ready jobs); `Err` with one cycle when there is none. Unknown needs are ignored here.
pub fn order(w: &Workflow) -> Result<Vec<String>, Vec<String>> {
    let mut indegree: IndexMap<&str, usize> = w.jobs.keys().map(|k| (k.as_str(), 0)).collect();
    for job in w.jobs.values() {
        for (need, _) in &job.needs {
            if w.jobs.contains_key(need) && need != &job.id {
                *indegree.entry(job.id.as_str()).or_default() += 1;
            }
        }
    }
    let mut out: Vec<String> = Vec::with_capacity(w.jobs.len());
    let mut ready: std::collections::VecDeque<&str> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(k, _)| *k)
        .collect();
    // Reverse edges: who needs me.
    let mut dependents: IndexMap<&str, Vec<&str>> = IndexMap::new();
    for job in w.jobs.values() {
        for (need, _) in &job.needs {
            if w.jobs.contains_key(need) && need != &job.id {
                dependents
                    .entry(need.as_str())
                    .or_default()
                    .push(job.id.as_str());
            }
        }
    }
    while let Some(id) = ready.pop_front() {
        out.push(id.to_string());
        for d in dependents.get(id).map(Vec::as_slice).unwrap_or_default() {
            if let Some(n) = indegree.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    ready.push_back(d);
                }
            }
        }
    }
    if out.len() == w.jobs.len() {
        return Ok(out);
    }
    // Walk needs from a job left over until a job repeats: that is a cycle.
    let done: std::collections::HashSet<&str> = out.iter().map(String::as_str).collect();
    let start = w
        .jobs
        .keys()
        .find(|k| !done.contains(k.as_str()))
        .cloned()
        .unwrap_or_default();
    let mut path: Vec<String> = vec![start];
    loop {
        let current = &w.jobs[path.last().map(String::as_str).unwrap_or_default()];
        let next =
            current.needs.iter().map(|(n, _)| n).find(|n| {
                w.jobs.contains_key(*n) && !done.contains(n.as_str()) && *n != &current.id
            });
        let Some(next) = next else {
            return Err(path);
        };
        if let Some(i) = path.iter().position(|p| p == next) {
            return Err(path[i..].to_vec());
        }
        path.push(next.clone());
    }
}
