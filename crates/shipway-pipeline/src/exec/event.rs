//! What a run tells the outside while it happens: typed [`RunEvent`]s to a [`RunObserver`], and
//! the [`Gate`] a job with `environment:` waits on before it starts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use indexmap::IndexMap;

use super::Status;
use crate::matrix::Combination;

/// Where a [`RunEvent::Line`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// The executor itself: errors, warnings, what a built-in action did.
    Runner,
}

/// One thing that happened in a run. `job` is the job instance's display name (`build (linux)`,
/// `caller/job` inside a reusable workflow), as a log prefixes its lines; steps are numbered from
/// 1 in the order they start within their job instance (a composite action's steps included).
#[derive(Clone, Debug, PartialEq)]
pub enum RunEvent {
    /// A job instance is ready (its needs are done, its `if` holds) and waits for the gate, its
    /// concurrency group or a parallelism slot.
    Queued {
        job: String,
    },
    /// The job waits for the protection rules of `environment` (approvals, a wait timer);
    /// `reason` says what it waits for. A gate may send it again as the reason changes.
    Waiting {
        job: String,
        environment: String,
        reason: String,
    },
    /// The gate admitted the job to `environment`: its steps start next.
    Admitted {
        job: String,
        environment: String,
    },
    /// The gate refused the job to `environment` (a rejection, a branch outside the policy):
    /// it finishes as failed without starting; `reason` says why.
    Rejected {
        job: String,
        environment: String,
        reason: String,
    },
    /// No runner offers the labels the job's `runs-on` asks for: it stays queued (GitHub's
    /// status) until the run is cancelled; `reason` names the missing and the offered labels.
    NoRunner {
        job: String,
        reason: String,
    },
    /// The job's steps start: `id` is the job's key (with a `caller/` prefix in a called
    /// workflow), `matrix` its combination.
    JobStarted {
        job: String,
        id: String,
        matrix: Option<Combination>,
    },
    StepStarted {
        job: String,
        step: usize,
        name: String,
    },
    /// A line of output or a message of the executor, masked. `step` is the step it belongs to.
    Line {
        job: String,
        step: Option<usize>,
        stream: Stream,
        text: String,
    },
    /// A platform action of the job (`shipway/image`, `shipway/promote`) did something the
    /// run keeps: an image published, a promotion pushed.
    Platform {
        job: String,
        record: super::PlatformRecord,
    },
    /// A step that started has finished (steps whose `if` is false never start; the report
    /// lists them as skipped).
    StepFinished {
        job: String,
        step: usize,
        name: String,
        outcome: Status,
        conclusion: Status,
    },
    /// The job instance is done, whether it started or not (skipped, rejected, cancelled while
    /// it waited).
    JobFinished {
        job: String,
        id: String,
        result: Status,
        outputs: IndexMap<String, String>,
    },
    RunFinished {
        result: Status,
    },
}

impl RunEvent {
    /// The job instance the event is about (none for [`RunEvent::RunFinished`]).
    pub fn job(&self) -> Option<&str> {
        match self {
            RunEvent::Queued { job }
            | RunEvent::Waiting { job, .. }
            | RunEvent::Admitted { job, .. }
            | RunEvent::Rejected { job, .. }
            | RunEvent::NoRunner { job, .. }
            | RunEvent::JobStarted { job, .. }
            | RunEvent::StepStarted { job, .. }
            | RunEvent::Line { job, .. }
            | RunEvent::Platform { job, .. }
            | RunEvent::StepFinished { job, .. }
            | RunEvent::JobFinished { job, .. } => Some(job),
            RunEvent::RunFinished { .. } => None,
        }
    }
}

/// Receives every event of a run, in order per job, from the executor's tasks (so it must be
/// quick: queue the event, do not block on IO).
pub trait RunObserver: Send + Sync {
    fn event(&self, e: &RunEvent);
}

/// An observer that drops everything.
pub struct Ignore;

impl RunObserver for Ignore {
    fn event(&self, _: &RunEvent) {}
}

/// An observer that keeps every event, for tests and tools.
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<RunEvent>>);

impl Collect {
    pub fn events(&self) -> Vec<RunEvent> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The lines a log would show: `[job] text`, with the lifecycle events as the CLI words them.
    pub fn lines(&self) -> Vec<String> {
        let mut started = std::collections::HashMap::new();
        self.events()
            .iter()
            .filter_map(|e| Some(format!("[{}] {}", e.job()?, log_text(e, &mut started)?)))
            .collect()
    }
}

impl RunObserver for Collect {
    fn event(&self, e: &RunEvent) {
        if let Ok(mut v) = self.0.lock() {
            v.push(e.clone());
        }
    }
}

/// The log line of an event, as `shipway run` prints it after the `[job]` prefix, or none.
/// `started` counts job instances by name whose `JobStarted` was seen: only those print their
/// result (a skipped job says why instead).
pub fn log_text(
    e: &RunEvent,
    started: &mut std::collections::HashMap<String, usize>,
) -> Option<String> {
    match e {
        // A rejection's words are the executor's own error line, printed beside it; a platform
        // action logs its own lines.
        RunEvent::Queued { .. }
        | RunEvent::Admitted { .. }
        | RunEvent::Rejected { .. }
        | RunEvent::Platform { .. }
        | RunEvent::RunFinished { .. } => None,
        RunEvent::Waiting { reason, .. } | RunEvent::NoRunner { reason, .. } => {
            Some(reason.clone())
        }
        RunEvent::JobStarted { job, .. } => {
            *started.entry(job.clone()).or_default() += 1;
            Some("job started".into())
        }
        RunEvent::StepStarted { name, .. } => Some(format!("▶ {name}")),
        RunEvent::Line { text, .. } => Some(text.clone()),
        RunEvent::StepFinished { name, outcome, .. } => {
            (*outcome != Status::Success).then(|| format!("✗ {name}: {}", outcome.as_str()))
        }
        RunEvent::JobFinished { job, result, .. } => {
            let n = started.get_mut(job).filter(|n| **n > 0)?;
            *n -= 1;
            Some(format!("job {}", result.as_str()))
        }
    }
}

/// What a [`Gate`] decided about a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateDecision {
    /// The job runs, with the environment's own secrets and variables on top of the run's.
    Admit(Grant),
    /// The job fails without running; `reason` (who rejected it and why) is logged after
    /// GitHub's message.
    Reject { reason: String },
}

/// What an environment gives the jobs it admits (GitHub's environment secrets and variables):
/// each overrides the run's value of the same name for that job only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    pub secrets: IndexMap<String, String>,
    pub vars: IndexMap<String, String>,
}

/// Consulted before a job with `environment:` starts (required reviewers, wait timers, branch
/// policies). While the future is pending the job waits and other jobs go on; a cancel of the
/// run ends the wait.
pub trait Gate: Send + Sync {
    /// `job` is the instance's display name, `environment` the evaluated environment name.
    fn admit<'a>(
        &'a self,
        job: &'a str,
        environment: &'a str,
    ) -> Pin<Box<dyn Future<Output = GateDecision> + Send + 'a>>;
}

/// The gate of a local run: every environment is admitted at once.
pub struct AdmitAll;

impl Gate for AdmitAll {
    fn admit<'a>(
        &'a self,
        _job: &'a str,
        _environment: &'a str,
    ) -> Pin<Box<dyn Future<Output = GateDecision> + Send + 'a>> {
        Box::pin(std::future::ready(GateDecision::Admit(Grant::default())))
    }
}
