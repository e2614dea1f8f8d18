//! Running a workflow locally: the scheduler (a true DAG: a job starts as soon as its own needs
//! are done), matrix instances with fail-fast and max-parallel, and the run report.
//!
//! Start with [`run_workflow`]; one job instance is run by `job::run_instance`.

mod actions;
mod commands;
mod concurrency;
mod context;
mod event;
mod files;
mod job;
mod platform;
mod private;
mod process;
mod runner;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::{Value as Json, json};
use shipway_expr::{Function, Host, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::load::Bundle;
use crate::matrix::{self, Combination};
use crate::workflow::{Dyn, Workflow};

/// The directory of a run directory where each running step's process group is recorded (a
/// file named after it). Every step's environment has `GITHUB_EVENT_PATH=<run dir>/event.json`,
/// which tells a step of this run from a process that reused the pid.
pub const PIDS_DIR: &str = "pids";

pub use commands::{FileCommand, Line, Masker, parse_line};
pub use concurrency::{Groups, Slot};
pub use context::{check_inputs, dispatch_inputs, event_ref};
pub use event::{
    AdmitAll, Collect, Gate, GateDecision, Grant, Ignore, RunEvent, RunObserver, Stream, log_text,
};
pub use files::parse_key_values;
pub use platform::{ACTIONS, PlatformActions, PlatformCall, PlatformOutcome, PlatformRecord};

/// A job's or step's result, as GitHub names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    Failure,
    Cancelled,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Cancelled => "cancelled",
            Status::Skipped => "skipped",
        }
    }
}

/// What a run is: the event and the facts GitHub's contexts are built from. `Default` is a
/// push to `refs/heads/main` with nothing else set.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub event_name: String,
    pub event: Json,
    pub sha: String,
    pub git_ref: String,
    pub repository: String,
    pub actor: String,
    pub run_id: u64,
    /// `github.run_number`: 1, 2, ... per workflow.
    pub run_number: u64,
    /// `github.run_attempt`: 1, then one more per re-run.
    pub run_attempt: u64,
    pub inputs: IndexMap<String, String>,
    pub secrets: IndexMap<String, String>,
    pub vars: IndexMap<String, String>,
    /// Run only this job (and the jobs it needs).
    pub only_job: Option<String>,
    /// Jobs (by key) that count as succeeded with these outputs without running: what a
    /// re-run of failed jobs keeps from the earlier attempt.
    pub reuse: IndexMap<String, IndexMap<String, String>>,
}

impl Default for RunSpec {
    fn default() -> RunSpec {
        RunSpec {
            event_name: "push".into(),
            event: json!({}),
            sha: String::new(),
            git_ref: "refs/heads/main".into(),
            repository: "local/repo".into(),
            actor: "shipway".into(),
            run_id: 0,
            run_number: 1,
            run_attempt: 1,
            inputs: IndexMap::new(),
            secrets: IndexMap::new(),
            vars: IndexMap::new(),
            only_job: None,
            reuse: IndexMap::new(),
        }
    }
}

/// How this executor runs a workflow: where, how many jobs at once, who hears about it, who
/// admits environments, and the cancel. [`Executor::new`] takes the directories; the rest has
/// defaults (one job per core, nothing observed, every environment admitted) set by the
/// builder methods.
#[derive(Clone)]
pub struct Executor {
    /// The repository (what `actions/checkout` copies and `hashFiles` falls back to).
    pub repo: PathBuf,
    /// A directory for this run: job workspaces, temp dirs, artifacts, the event file.
    pub run_dir: PathBuf,
    /// The cache store of `actions/cache`, shared between runs.
    pub cache_dir: PathBuf,
    /// How many job instances run at once.
    pub parallel: usize,
    pub allow_unsupported_actions: bool,
    /// The environment processes start from (PATH, HOME, ...), before GitHub's variables.
    pub base_env: Vec<(String, String)>,
    pub observer: Arc<dyn RunObserver>,
    pub gate: Arc<dyn Gate>,
    /// Cancels the whole run (Ctrl-C): running steps are stopped, `always()` steps still run.
    pub cancel: CancellationToken,
    /// What `actions/checkout` puts in a workspace.
    pub source: Source,
    /// Job slots shared with other runs (a server's `--max-parallel-jobs`); `None`: this run's
    /// own `parallel` slots.
    pub slots: Option<Arc<Semaphore>>,
    /// Job concurrency groups shared with other runs (a server's); `None`: this run's own.
    pub groups: Option<Arc<Groups>>,
    /// The runner labels this executor offers (a server's `--runner-label`s); a job whose
    /// `runs-on` asks for another stays queued. `None`: every label (a local run).
    pub labels: Option<Vec<String>>,
    /// What runs `uses: shipway/NAME@REF` steps; `None`: they fail, saying they need Shipway's
    /// platform.
    pub platform: Option<Arc<dyn PlatformActions>>,
}

/// What `actions/checkout` checks out of [`Executor::repo`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// The commit [`RunSpec::sha`], cloned (a copy of the files when the repository has no
    /// commit), as on GitHub.
    #[default]
    Commit,
    /// The files as they are on disk, uncommitted changes and `.git` included and what git
    /// ignores left out, as act does: the tree the workflow files were read from.
    WorkingTree,
}

impl Executor {
    pub fn new(repo: PathBuf, run_dir: PathBuf, cache_dir: PathBuf) -> Executor {
        Executor {
            repo,
            run_dir,
            cache_dir,
            parallel: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            allow_unsupported_actions: false,
            base_env: Vec::new(),
            observer: Arc::new(Ignore),
            gate: Arc::new(AdmitAll),
            cancel: CancellationToken::new(),
            source: Source::default(),
            slots: None,
            groups: None,
            labels: None,
            platform: None,
        }
    }

    pub fn platform(mut self, platform: Arc<dyn PlatformActions>) -> Executor {
        self.platform = Some(platform);
        self
    }

    /// Offers only these runner labels (matched case-insensitively, as GitHub does).
    pub fn labels(mut self, labels: Vec<String>) -> Executor {
        self.labels = Some(labels);
        self
    }

    pub fn source(mut self, source: Source) -> Executor {
        self.source = source;
        self
    }

    pub fn parallel(mut self, n: usize) -> Executor {
        self.parallel = n;
        self
    }

    pub fn base_env(mut self, env: Vec<(String, String)>) -> Executor {
        self.base_env = env;
        self
    }

    pub fn allow_unsupported_actions(mut self, allow: bool) -> Executor {
        self.allow_unsupported_actions = allow;
        self
    }

    pub fn observer(mut self, observer: Arc<dyn RunObserver>) -> Executor {
        self.observer = observer;
        self
    }

    pub fn gate(mut self, gate: Arc<dyn Gate>) -> Executor {
        self.gate = gate;
        self
    }

    /// Takes job slots from `slots`, shared with every run given the same semaphore, instead
    /// of `parallel` slots of its own.
    pub fn slots(mut self, slots: Arc<Semaphore>) -> Executor {
        self.slots = Some(slots);
        self
    }

    /// Enters job `concurrency:` groups in `groups`, shared with every run given the same,
    /// so a group holds across runs as on GitHub.
    pub fn groups(mut self, groups: Arc<Groups>) -> Executor {
        self.groups = Some(groups);
        self
    }

    pub fn cancel(mut self, cancel: CancellationToken) -> Executor {
        self.cancel = cancel;
        self
    }

    pub(crate) fn emit(&self, e: RunEvent) {
        self.observer.event(&e);
    }

    /// A message of the executor about `job`, outside any step.
    pub(crate) fn say(&self, job: &str, text: impl Into<String>) {
        self.emit(RunEvent::Line {
            job: job.to_string(),
            step: None,
            stream: Stream::Runner,
            text: text.into(),
        });
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    pub id: Option<String>,
    pub name: String,
    pub outcome: Status,
    pub conclusion: Status,
}

#[derive(Clone, Debug, PartialEq)]
pub struct JobReport {
    pub id: String,
    pub name: String,
    pub matrix: Option<Combination>,
    pub result: Status,
    pub outputs: IndexMap<String, String>,
    pub steps: Vec<StepReport>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub result: Status,
    pub jobs: Vec<JobReport>,
}

impl Report {
    /// The report JSON contract: `{"result", "jobs": [{"id", "matrix", "result", "outputs",
    /// "steps": [{"id", "name", "outcome", "conclusion"}]}]}`.
    pub fn to_json(&self) -> Json {
        json!({
            "result": self.result.as_str(),
            "jobs": self.jobs.iter().map(|j| json!({
                "id": j.id,
                "name": j.name,
                "matrix": j.matrix.clone().map_or(Json::Null, Json::Object),
                "result": j.result.as_str(),
                "outputs": j.outputs.iter().map(|(k, v)| (k.clone(), Json::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
                "steps": j.steps.iter().map(|s| json!({
                    "id": s.id,
                    "name": s.name,
                    "outcome": s.outcome.as_str(),
                    "conclusion": s.conclusion.as_str(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// What dependents see of a finished job: `needs.<id>.result` and `.outputs`.
#[derive(Clone, Debug)]
pub(crate) struct Finished {
    pub result: Status,
    pub outputs: IndexMap<String, String>,
}

/// The workflow-level `concurrency:` of a run, evaluated as GitHub does (with the `github`,
/// `inputs` and `vars` contexts): the group and whether a newer run cancels the one in
/// progress. A server enters it before the run starts.
pub fn workflow_concurrency(bundle: &Bundle, spec: &RunSpec) -> Option<(String, bool)> {
    let w = bundle.workflow.as_ref()?;
    let c = w.concurrency.as_ref()?;
    let name = w.name.clone().unwrap_or_else(|| w.file.clone());
    let mut contexts = shipway_expr::Map::new();
    contexts.insert(
        "github".into(),
        Value::object(context::github_base(spec, &name, "")),
    );
    contexts.insert(
        "inputs".into(),
        context::resolve_inputs(w, &spec.event_name, &spec.inputs),
    );
    contexts.insert("vars".into(), context::strings(&spec.vars));
    Some(concurrency::evaluate(c, &contexts))
}

/// Runs the bundle's workflow. Never fails: problems become failed jobs and log lines. Ends
/// with [`RunEvent::RunFinished`].
pub async fn run_workflow(bundle: &Bundle, spec: RunSpec, exec: Executor) -> Report {
    let exec = Arc::new(exec);
    // Shared, not cloned per job: a 1,000-job workflow cloned per job is quadratic.
    let Some(w) = bundle.workflow.clone().map(Arc::new) else {
        exec.emit(RunEvent::RunFinished {
            result: Status::Failure,
        });
        return Report {
            result: Status::Failure,
            jobs: Vec::new(),
        };
    };
    let spec = Arc::new(spec);
    let inputs = context::resolve_inputs(&w, &spec.event_name, &spec.inputs);
    let shared = Arc::new(job::Shared::new(bundle, spec.clone(), exec.clone(), &w));
    let semaphore = exec
        .slots
        .clone()
        .unwrap_or_else(|| Arc::new(Semaphore::new(exec.parallel.max(1))));
    let (jobs, finished) = run_jobs(
        w.clone(),
        shared,
        inputs,
        spec.secrets.clone(),
        semaphore,
        spec.only_job.clone(),
        "",
    )
    .await;
    let result = overall(&finished, &exec.cancel);
    exec.emit(RunEvent::RunFinished { result });
    Report { result, jobs }
}

/// The run's result from each job's aggregate (where a job with `continue-on-error` that
/// failed counts as a success, as on GitHub).
fn overall(finished: &HashMap<String, Finished>, cancel: &CancellationToken) -> Status {
    if finished.values().any(|f| f.result == Status::Failure) {
        Status::Failure
    } else if cancel.is_cancelled() || finished.values().any(|f| f.result == Status::Cancelled) {
        Status::Cancelled
    } else {
        Status::Success
    }
}

/// The jobs `only` needs, itself included.
fn with_needs(w: &Workflow, only: &str) -> HashSet<String> {
    let mut keep = HashSet::new();
    let mut stack = vec![only.to_string()];
    while let Some(id) = stack.pop() {
        if keep.insert(id.clone())
            && let Some(j) = w.jobs.get(&id)
        {
            stack.extend(j.needs.iter().map(|(n, _)| n.clone()));
        }
    }
    keep
}

/// What [`run_jobs`] returns: the reports and each job's finished state. Boxed because a
/// reusable-workflow call runs its jobs through the same function, recursively.
pub(crate) type JobsFuture<'a> = std::pin::Pin<
    Box<dyn Future<Output = (Vec<JobReport>, HashMap<String, Finished>)> + Send + 'a>,
>;

/// Runs every job of `w` as a DAG. `prefix` names jobs of a called workflow (`caller/`).
/// Returns the reports and each job's finished state (for `jobs` in workflow_call outputs).
pub(crate) fn run_jobs<'a>(
    w: Arc<Workflow>,
    shared: Arc<job::Shared>,
    inputs: Value,
    secrets: IndexMap<String, String>,
    semaphore: Arc<Semaphore>,
    only: Option<String>,
    prefix: &'a str,
) -> JobsFuture<'a> {
    Box::pin(async move {
        let selected: Option<HashSet<String>> = only.as_deref().map(|o| with_needs(&w, o));
        let ids: Vec<String> = match crate::graph::order(&w) {
            Ok(order) => order
                .into_iter()
                .filter(|id| selected.as_ref().is_none_or(|s| s.contains(id)))
                .collect(),
            Err(_) => Vec::new(),
        };
        let ancestors: HashMap<String, HashSet<String>> = ids
            .iter()
            .map(|id| (id.clone(), with_needs(&w, id)))
            .collect();
        let mut finished: HashMap<String, Finished> = HashMap::new();
        let mut reports: HashMap<String, Vec<JobReport>> = HashMap::new();
        let mut started: HashSet<String> = HashSet::new();
        let mut set: JoinSet<(String, Finished, Vec<JobReport>)> = JoinSet::new();
        let secrets = Arc::new(secrets);
        loop {
            let mut reused = false;
            for id in &ids {
                if started.contains(id) {
                    continue;
                }
                let job = &w.jobs[id];
                if !job.needs.iter().all(|(n, _)| finished.contains_key(n)) {
                    continue;
                }
                started.insert(id.clone());
                // Kept from an earlier attempt (top-level jobs only): done, with its outputs.
                if prefix.is_empty()
                    && let Some(outputs) = shared.spec.reuse.get(id)
                {
                    let f = Finished {
                        result: Status::Success,
                        outputs: outputs.clone(),
                    };
                    finished.insert(id.clone(), f);
                    reused = true;
                    continue;
                }
                let needs = context::needs_context(job, &finished);
                let chain: Vec<Status> = ancestors[id]
                    .iter()
                    .filter(|a| *a != id)
                    .filter_map(|a| finished.get(a).map(|f| f.result))
                    .collect();
                let task = JobTask {
                    w: w.clone(),
                    id: id.clone(),
                    prefix: prefix.to_string(),
                    shared: shared.clone(),
                    inputs: inputs.clone(),
                    secrets: secrets.clone(),
                    needs,
                    chain,
                    semaphore: semaphore.clone(),
                };
                set.spawn(task.run());
            }
            if reused {
                // Their dependents may start now.
                continue;
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            match done {
                Ok((id, f, r)) => {
                    finished.insert(id.clone(), f);
                    reports.insert(id, r);
                }
                Err(e) => {
                    // A panicking job task is a bug; record it as a failure rather than hang.
                    shared.exec.say("shipway", format!("internal error: {e}"));
                    break;
                }
            }
        }
        let mut out = Vec::new();
        for id in &ids {
            out.extend(reports.remove(id).unwrap_or_default());
        }
        (out, finished)
    })
}

struct JobTask {
    w: Arc<Workflow>,
    id: String,
    prefix: String,
    shared: Arc<job::Shared>,
    inputs: Value,
    secrets: Arc<IndexMap<String, String>>,
    needs: Value,
    /// Results of every job this one depends on, directly or not (for status functions).
    chain: Vec<Status>,
    semaphore: Arc<Semaphore>,
}

/// The status functions of a job's `if:` look at the jobs it depends on.
struct JobIfHost<'a> {
    contexts: shipway_expr::Map,
    chain: &'a [Status],
    cancelled: bool,
}

impl Host for JobIfHost<'_> {
    fn context(&self, name: &str) -> Value {
        self.contexts.context(name)
    }
    fn status(&self, f: Function) -> bool {
        match f {
            Function::Always => true,
            Function::Cancelled => self.cancelled,
            Function::Failure => self.chain.contains(&Status::Failure),
            _ => !self.cancelled && self.chain.iter().all(|s| *s == Status::Success),
        }
    }
}

impl JobTask {
    async fn run(self) -> (String, Finished, Vec<JobReport>) {
        let job = &self.w.jobs[&self.id];
        let full_id = format!("{}{}", self.prefix, self.id);
        let exec = &self.shared.exec;
        let base_contexts = self.shared.base_contexts(&self.inputs, &self.needs);
        let skipped = |reason: &str| {
            exec.say(&full_id, format!("skipped: {reason}"));
            exec.emit(RunEvent::JobFinished {
                job: full_id.clone(),
                id: full_id.clone(),
                result: Status::Skipped,
                outputs: IndexMap::new(),
            });
            (
                self.id.clone(),
                Finished {
                    result: Status::Skipped,
                    outputs: IndexMap::new(),
                },
                vec![JobReport {
                    id: full_id.clone(),
                    name: full_id.clone(),
                    matrix: None,
                    result: Status::Skipped,
                    outputs: IndexMap::new(),
                    steps: Vec::new(),
                }],
            )
        };
        let host = JobIfHost {
            contexts: base_contexts.clone(),
            chain: &self.chain,
            cancelled: exec.cancel.is_cancelled(),
        };
        let run = match &job.condition {
            None => host.status(Function::Success),
            Some(c) => match c.condition.eval(&host) {
                Ok(b) => b,
                Err(e) => {
                    exec.say(&full_id, format!("error: jobs.{}.if: {e}", self.id));
                    false
                }
            },
        };
        if !run {
            return skipped("the job's `if` condition is false");
        }
        if exec.cancel.is_cancelled() {
            return skipped("the run was cancelled");
        }
        // The matrix, evaluated with github, needs, vars and inputs, then expanded.
        let combos: Vec<Option<Combination>> =
            match job.strategy.as_ref().and_then(|s| s.matrix.as_ref()) {
                None => vec![None],
                Some(m) => {
                    match context::eval_matrix(m, &base_contexts).and_then(|m| matrix::expand(&m)) {
                        Ok(cs) => cs.into_iter().map(Some).collect(),
                        Err(e) => {
                            let at = job
                                .strategy
                                .as_ref()
                                .map(|s| s.matrix_pos)
                                .unwrap_or_default();
                            exec.say(
                                &full_id,
                                format!(
                                    "error: {}:{}:{}: jobs.{}.strategy.matrix: {e}",
                                    self.w.file, at.line, at.column, self.id
                                ),
                            );
                            return self.failed(&full_id);
                        }
                    }
                }
            };
        let strategy_value =
            |d: &Option<Dyn>, default: Json| Dyn::value_or(d.as_ref(), &base_contexts, default);
        let strategy = job.strategy.as_ref();
        let fail_fast = strategy
            .map(|s| strategy_value(&s.fail_fast, Json::Bool(true)))
            .is_none_or(|v| Value::from_json(&v).truthy());
        let max_parallel = strategy
            .map(|s| strategy_value(&s.max_parallel, Json::Null))
            .and_then(|v| v.as_f64())
            .filter(|n| *n >= 1.0)
            .map_or(combos.len(), |n| n as usize);
        let total = combos.len();
        let matrix_cancel = exec.cancel.child_token();
        let local = Arc::new(Semaphore::new(max_parallel.max(1)));
        let mut set = JoinSet::new();
        for (index, combo) in combos.into_iter().enumerate() {
            let inst = job::Instance {
                w: self.w.clone(),
                job_id: self.id.clone(),
                prefix: self.prefix.clone(),
                matrix: combo,
                index,
                total,
                fail_fast,
                max_parallel,
                shared: self.shared.clone(),
                inputs: self.inputs.clone(),
                secrets: self.secrets.clone(),
                needs: self.needs.clone(),
                cancel: matrix_cancel.clone(),
            };
            let global = self.semaphore.clone();
            let local = local.clone();
            let matrix_cancel = matrix_cancel.clone();
            set.spawn(async move {
                // max-parallel here; the run-wide limit is taken inside, by instances that run
                // steps (a reusable-workflow call must not hold one while its jobs wait).
                let _l = local.acquire_owned().await;
                let (reports, continue_on_error) = inst.run(global).await;
                let failed = reports.first().is_some_and(|r| r.result == Status::Failure);
                if failed && !continue_on_error && fail_fast {
                    matrix_cancel.cancel();
                }
                (index, reports, continue_on_error)
            });
        }
        let mut results = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                results.push(r);
            }
        }
        results.sort_by_key(|(i, _, _)| *i);
        let mut outputs = IndexMap::new();
        let mut result = Status::Success;
        for (_, reports, continue_on_error) in &results {
            let Some(r) = reports.first() else { continue };
            // Matrix outputs: later instances overwrite earlier ones, as on GitHub where the
            // last to finish wins.
            for (k, v) in &r.outputs {
                if !v.is_empty() {
                    outputs.insert(k.clone(), v.clone());
                }
            }
            match r.result {
                Status::Failure if !continue_on_error => result = Status::Failure,
                Status::Cancelled if result == Status::Success => result = Status::Cancelled,
                _ => {}
            }
        }
        let reports = results.into_iter().flat_map(|(_, r, _)| r).collect();
        (self.id.clone(), Finished { result, outputs }, reports)
    }

    fn failed(&self, full_id: &str) -> (String, Finished, Vec<JobReport>) {
        self.shared.exec.emit(RunEvent::JobFinished {
            job: full_id.to_string(),
            id: full_id.to_string(),
            result: Status::Failure,
            outputs: IndexMap::new(),
        });
        (
            self.id.clone(),
            Finished {
                result: Status::Failure,
                outputs: IndexMap::new(),
            },
            vec![JobReport {
                id: full_id.to_string(),
                name: full_id.to_string(),
                matrix: None,
                result: Status::Failure,
                outputs: IndexMap::new(),
                steps: Vec::new(),
            }],
        )
    }
}
