//! One job instance (one matrix combination): its workspace, environment, contexts and steps,
//! run in order with GitHub's status rules, plus calls of local reusable workflows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value as Json;
use shipway_expr::{Function, Host, Map, Template, Value};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::commands::{FileCommand, Line, Masker, parse_line};
use super::context::{github_base, strings};
use super::process::{self, Exit};
use super::{
    Executor, GateDecision, Grant, JobReport, RunEvent, RunSpec, Status, StepReport, Stream, files,
};
use crate::load::{ActionError, Bundle, DiskFs};
use crate::matrix::{Combination, display_name};
use crate::workflow::{
    Action, ActionMeta, CallSecrets, Dyn, InputKind, Pairs, Step, Str, Uses, Workflow,
};

/// GitHub's default job timeout.
const DEFAULT_JOB_TIMEOUT_MINUTES: f64 = 360.0;

/// State shared by every job of a run.
pub struct Shared {
    pub spec: Arc<RunSpec>,
    pub exec: Arc<Executor>,
    pub called: HashMap<String, Workflow>,
    github: Map,
    concurrency: Arc<super::concurrency::Groups>,
}

impl Shared {
    pub fn new(bundle: &Bundle, spec: Arc<RunSpec>, exec: Arc<Executor>, w: &Workflow) -> Shared {
        let event_path = exec.run_dir.join("event.json");
        let _ = super::private::create_dir_all(&exec.run_dir);
        let _ = super::private::write(
            &event_path,
            serde_json::to_vec_pretty(&spec.event).unwrap_or_default(),
        );
        let name = w.name.clone().unwrap_or_else(|| w.file.clone());
        let github = github_base(&spec, &name, &event_path.to_string_lossy());
        let concurrency = exec.groups.clone().unwrap_or_default();
        Shared {
            spec,
            exec,
            called: bundle.called.clone(),
            github,
            concurrency,
        }
    }

    /// The contexts available to a job's `if`, strategy and reusable-call `with`.
    pub fn base_contexts(&self, inputs: &Value, needs: &Value) -> Map {
        let mut m = Map::new();
        m.insert("github".into(), Value::object(self.github.clone()));
        m.insert("inputs".into(), inputs.clone());
        m.insert("vars".into(), strings(&self.spec.vars));
        m.insert("needs".into(), needs.clone());
        m
    }
}

/// One job run: a job and one matrix combination.
pub struct Instance {
    pub w: Arc<Workflow>,
    pub job_id: String,
    pub prefix: String,
    pub matrix: Option<Combination>,
    pub index: usize,
    pub total: usize,
    pub fail_fast: bool,
    pub max_parallel: usize,
    pub shared: Arc<Shared>,
    pub inputs: Value,
    pub secrets: Arc<IndexMap<String, String>>,
    pub needs: Value,
    pub cancel: CancellationToken,
}

/// Evaluation with a job's status: what `success()`, `failure()` and `cancelled()` answer.
struct StepHost<'a> {
    contexts: &'a Map,
    status: Status,
    cancelled: bool,
    workspace: &'a Path,
}

impl Host for StepHost<'_> {
    fn context(&self, name: &str) -> Value {
        self.contexts.context(name)
    }
    fn status(&self, f: Function) -> bool {
        match f {
            Function::Always => true,
            Function::Cancelled => self.cancelled,
            Function::Failure => self.status == Status::Failure,
            _ => self.status == Status::Success && !self.cancelled,
        }
    }
    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        super::actions::hash_files(self.workspace, patterns)
    }
}

/// The steps being run: the job's own, or a composite action's (which has its own `steps` and
/// `inputs` contexts).
struct Frame {
    steps: Map,
    inputs: Value,
    status: Status,
    action_path: Option<PathBuf>,
    /// How many composite actions this frame is inside.
    depth: usize,
}

/// How deep composite actions may nest (GitHub allows ten levels).
const MAX_ACTION_NESTING: usize = 10;

/// A job instance's mutable state while its steps run.
struct JobRun {
    shared: Arc<Shared>,
    label: String,
    job_id: String,
    contexts: Map,
    env: IndexMap<String, String>,
    path_prepend: Vec<String>,
    masker: Masker,
    workspace: PathBuf,
    temp: PathBuf,
    cancel: CancellationToken,
    /// Set when the job's timeout fired; the job then counts as cancelled for status functions.
    timed_out: Arc<std::sync::atomic::AtomicBool>,
    defaults_shell: Option<String>,
    defaults_wd: Option<String>,
    /// Cache entries to save when the job succeeds: (key, paths).
    cache_saves: Vec<(String, Vec<String>)>,
    summary: String,
    /// How many steps of this instance have started: the number of the next is one more.
    steps_started: usize,
    /// The step whose lines are being emitted.
    current_step: Option<usize>,
}

impl Instance {
    /// Runs the instance; returns its report and whether the job continues on error. Every
    /// path ends with [`RunEvent::JobFinished`].
    pub async fn run(self, semaphore: Arc<Semaphore>) -> (Vec<JobReport>, bool) {
        let exec = self.shared.exec.clone();
        let (reports, continue_on_error) = self.run_instance(semaphore).await;
        if let Some(r) = reports.first() {
            exec.emit(RunEvent::JobFinished {
                job: r.name.clone(),
                id: r.id.clone(),
                result: r.result,
                outputs: r.outputs.clone(),
            });
        }
        (reports, continue_on_error)
    }

    async fn run_instance(self, semaphore: Arc<Semaphore>) -> (Vec<JobReport>, bool) {
        let job = self.w.jobs[&self.job_id].clone();
        let exec = self.shared.exec.clone();
        let full_id = format!("{}{}", self.prefix, self.job_id);
        let mut contexts = self.shared.base_contexts(&self.inputs, &self.needs);
        let matrix_value = self.matrix.as_ref().map_or(Value::object(Map::new()), |m| {
            Value::from_json(&Json::Object(m.clone()))
        });
        contexts.insert("matrix".into(), matrix_value);
        let mut strategy = Map::new();
        strategy.insert("fail-fast".into(), Value::Bool(self.fail_fast));
        strategy.insert("job-index".into(), Value::Number(self.index as f64));
        strategy.insert("job-total".into(), Value::Number(self.total as f64));
        strategy.insert(
            "max-parallel".into(),
            Value::Number(self.max_parallel as f64),
        );
        contexts.insert("strategy".into(), Value::object(strategy));
        contexts.insert("secrets".into(), strings(&self.secrets));
        let base = full_id.clone();
        let label = match &job.name {
            Some(n) => n
                .template
                .eval_string(&contexts)
                .unwrap_or_else(|_| n.raw.clone()),
            None => match &self.matrix {
                Some(m) => display_name(&base, m),
                None => base.clone(),
            },
        };
        let dyn_value =
            |d: &Option<Dyn>, default: Json| Dyn::value_or(d.as_ref(), &contexts, default);
        let continue_on_error =
            Value::from_json(&dyn_value(&job.continue_on_error, Json::Bool(false))).truthy();
        exec.emit(RunEvent::Queued { job: label.clone() });
        let ended = |result: Status| {
            (
                vec![JobReport {
                    id: full_id.clone(),
                    name: label.clone(),
                    matrix: self.matrix.clone(),
                    result,
                    outputs: IndexMap::new(),
                    steps: Vec::new(),
                }],
                continue_on_error,
            )
        };
        if let Some(call) = &job.uses {
            let reports = self
                .call(&full_id, &label, call, &contexts, semaphore)
                .await;
            return (reports, continue_on_error);
        }
        let cancel = self.cancel.child_token();
        let mut secrets = self.secrets.clone();
        // A runner with the labels `runs-on` asks for, before any environment or group: a job
        // no runner can take waits queued, as on GitHub, until the run is cancelled.
        if let Some(offered) = &exec.labels {
            let wanted = match super::runner::wanted_labels(job.runs_on.as_ref(), &contexts) {
                Ok(w) => w,
                Err(why) => {
                    exec.say(&label, format!("error: {why}"));
                    return ended(Status::Failure);
                }
            };
            if let Some(reason) = super::runner::no_runner(&wanted, offered) {
                exec.emit(RunEvent::NoRunner {
                    job: label.clone(),
                    reason,
                });
                cancel.cancelled().await;
                exec.say(&label, "cancelled while waiting for a runner");
                return ended(Status::Cancelled);
            }
        }
        if let Some(env) = &job.environment {
            let env = env
                .template
                .eval_string(&contexts)
                .unwrap_or_else(|_| env.raw.clone());
            match self.gate(&label, &env, &cancel).await {
                Ok(grant) => {
                    if !grant.secrets.is_empty() {
                        let mut all = secrets.as_ref().clone();
                        all.extend(grant.secrets);
                        secrets = Arc::new(all);
                        contexts.insert("secrets".into(), strings(&secrets));
                    }
                    if !grant.vars.is_empty() {
                        let mut all = self.shared.spec.vars.clone();
                        all.extend(grant.vars);
                        contexts.insert("vars".into(), strings(&all));
                    }
                }
                Err(result) => return ended(result),
            }
        }
        // The contexts may have gained the environment's secrets and variables.
        let dyn_value =
            |d: &Option<Dyn>, default: Json| Dyn::value_or(d.as_ref(), &contexts, default);
        // Job concurrency: one running and one pending per group; a newer arrival cancels the
        // pending one, and with cancel-in-progress the running one too.
        let _slot = match &job.concurrency {
            None => None,
            Some(c) => {
                let (group, cancel_in_progress) = super::concurrency::evaluate(c, &contexts);
                match self
                    .shared
                    .concurrency
                    .enter(&group, cancel_in_progress, &cancel)
                    .await
                {
                    Some(slot) => Some(slot),
                    None => {
                        exec.say(
                            &label,
                            format!("cancelled: a newer job took concurrency group '{group}'"),
                        );
                        return ended(Status::Cancelled);
                    }
                }
            }
        };
        let _permit = semaphore.acquire_owned().await;
        let timeout_minutes = Value::from_json(&dyn_value(
            &job.timeout_minutes,
            Json::from(DEFAULT_JOB_TIMEOUT_MINUTES),
        ))
        .to_number();
        let slug: String = format!("{full_id}-{}", self.index)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = exec.run_dir.join("jobs").join(&slug);
        let workspace = dir.join("workspace");
        let temp = dir.join("temp");
        for d in [&workspace, &temp, &dir.join("tool_cache")] {
            if let Err(e) = super::private::create_dir_all(d) {
                exec.say(&label, format!("error: cannot create {}: {e}", d.display()));
            }
        }
        let mut masker = Masker::default();
        for v in secrets.values() {
            masker.add(v);
        }
        // `github` gains the job's own fields.
        if let Some(Value::Object(g)) = contexts.get("github") {
            let mut g = g.as_ref().clone();
            g.insert("job".into(), Value::string(self.job_id.clone()));
            g.insert(
                "workspace".into(),
                Value::string(workspace.to_string_lossy()),
            );
            contexts.insert("github".into(), Value::object(g));
        }
        let mut runner = Map::new();
        runner.insert("os".into(), Value::string(runner_os()));
        runner.insert("arch".into(), Value::string(runner_arch()));
        runner.insert("name".into(), Value::string("shipway"));
        runner.insert("environment".into(), Value::string("self-hosted"));
        runner.insert("temp".into(), Value::string(temp.to_string_lossy()));
        runner.insert(
            "tool_cache".into(),
            Value::string(dir.join("tool_cache").to_string_lossy()),
        );
        runner.insert("debug".into(), Value::string(""));
        contexts.insert("runner".into(), Value::object(runner));
        let mut job_ctx = Map::new();
        job_ctx.insert("status".into(), Value::string("success"));
        contexts.insert("job".into(), Value::object(job_ctx));
        contexts.insert("steps".into(), Value::object(Map::new()));
        contexts.insert("env".into(), Value::object(Map::new()));

        let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut run = JobRun {
            shared: self.shared.clone(),
            label: label.clone(),
            job_id: self.job_id.clone(),
            contexts,
            env: IndexMap::new(),
            path_prepend: Vec::new(),
            masker,
            workspace,
            temp,
            cancel: cancel.clone(),
            timed_out: timed_out.clone(),
            defaults_shell: None,
            defaults_wd: None,
            cache_saves: Vec::new(),
            summary: String::new(),
            steps_started: 0,
            current_step: None,
        };
        // Workflow env, then job env: later ones see earlier ones in `env`.
        for pairs in [&self.w.env, &job.env] {
            run.add_env(pairs);
        }
        let defaults = [&job.defaults, &self.w.defaults];
        run.defaults_shell = defaults
            .iter()
            .find_map(|d| d.shell.as_ref())
            .map(|s| run.eval_str(s));
        run.defaults_wd = defaults
            .iter()
            .find_map(|d| d.working_directory.as_ref())
            .map(|s| run.eval_str(s));
        exec.emit(RunEvent::JobStarted {
            job: label.clone(),
            id: full_id.clone(),
            matrix: self.matrix.clone(),
        });
        // The job timeout cancels the job's token; steps see cancelled() from then on.
        let timer = if timeout_minutes.is_finite() && timeout_minutes > 0.0 {
            let cancel = cancel.clone();
            let flag = timed_out.clone();
            let limit = Duration::from_secs_f64(timeout_minutes * 60.0);
            Some(tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                flag.store(true, Ordering::SeqCst);
                cancel.cancel();
            }))
        } else {
            None
        };
        let mut frame = Frame {
            steps: Map::new(),
            inputs: self.inputs.clone(),
            status: Status::Success,
            action_path: None,
            depth: 0,
        };
        let mut reports = Vec::new();
        for step in &job.steps {
            let r = run.step(step, &mut frame, &IndexMap::new()).await;
            reports.push(r);
        }
        if let Some(t) = timer {
            t.abort();
        }
        let was_timed_out = timed_out.load(Ordering::SeqCst);
        if was_timed_out {
            exec.say(
                &label,
                format!("error: the job exceeded its timeout of {timeout_minutes} minutes"),
            );
        }
        let mut result = frame.status;
        if was_timed_out {
            result = Status::Failure;
        } else if cancel.is_cancelled() && result == Status::Success {
            result = Status::Cancelled;
        }
        if result == Status::Success {
            for (key, paths) in std::mem::take(&mut run.cache_saves) {
                match super::actions::cache_save(&exec.cache_dir, &run.workspace, &key, &paths) {
                    Ok(msg) => exec.say(&label, msg),
                    Err(e) => exec.say(&label, format!("warning: cache not saved: {e}")),
                }
            }
        }
        if !run.summary.is_empty() {
            let _ = super::private::write(&dir.join("summary.md"), &run.summary);
        }
        // As on GitHub, the runner's temp directory is emptied at the end of the job: its step
        // scripts and file commands ($GITHUB_OUTPUT, _ENV, _STATE, ...) hold secrets unmasked.
        empty_dir(&run.temp);
        run.set_job_status(result);
        run.contexts
            .insert("steps".into(), Value::object(frame.steps.clone()));
        let mut outputs = IndexMap::new();
        for (k, s) in &job.outputs {
            let v = run.eval_str(s);
            if run.masker.mask(&v) != v {
                exec.say(
                    &label,
                    format!("warning: output '{k}' is not set: it may contain a secret"),
                );
                continue;
            }
            outputs.insert(k.clone(), v);
        }
        (
            vec![JobReport {
                id: full_id,
                name: label,
                matrix: self.matrix.clone(),
                result,
                outputs,
                steps: reports,
            }],
            continue_on_error,
        )
    }

    /// Asks the run's gate to admit the job to `env`: what the environment grants, else the
    /// job's result.
    /// [`RunEvent::Waiting`] is emitted only when the gate does not answer at once, so a local
    /// run (which admits everything) prints nothing.
    async fn gate(
        &self,
        label: &str,
        env: &str,
        cancel: &CancellationToken,
    ) -> Result<Grant, Status> {
        let exec = &self.shared.exec;
        let mut decision = exec.gate.admit(label, env);
        let decision = tokio::select! {
            biased;
            d = &mut decision => d,
            () = std::future::ready(()) => {
                exec.emit(RunEvent::Waiting {
                    job: label.to_string(),
                    environment: env.to_string(),
                    reason: format!("waiting for approval of environment {env}"),
                });
                tokio::select! {
                    d = &mut decision => d,
                    () = cancel.cancelled() => {
                        exec.say(
                            label,
                            format!("cancelled while waiting for approval of environment {env}"),
                        );
                        return Err(Status::Cancelled);
                    }
                }
            }
        };
        match decision {
            GateDecision::Admit(grant) => {
                exec.emit(RunEvent::Admitted {
                    job: label.to_string(),
                    environment: env.to_string(),
                });
                Ok(grant)
            }
            GateDecision::Reject { reason } => {
                exec.emit(RunEvent::Rejected {
                    job: label.to_string(),
                    environment: env.to_string(),
                    reason: reason.clone(),
                });
                // GitHub's words for a rejected deployment.
                let mut text = format!(
                    "error: environment {env}: The deployment was rejected or didn't satisfy \
                     other protection rules."
                );
                if !reason.is_empty() {
                    text.push(' ');
                    text.push_str(&reason);
                }
                exec.say(label, text);
                Err(Status::Failure)
            }
        }
    }

    /// A job that calls a local reusable workflow: its jobs run as `caller/job`.
    async fn call(
        &self,
        full_id: &str,
        label: &str,
        call: &crate::workflow::ReusableCall,
        contexts: &Map,
        semaphore: Arc<Semaphore>,
    ) -> Vec<JobReport> {
        let exec = &self.shared.exec;
        let failed = |why: String| {
            exec.say(label, format!("error: {why}"));
            vec![JobReport {
                id: full_id.to_string(),
                name: label.to_string(),
                matrix: self.matrix.clone(),
                result: Status::Failure,
                outputs: IndexMap::new(),
                steps: Vec::new(),
            }]
        };
        let Some(called) = self.shared.called.get(&call.path).cloned() else {
            return failed(format!(
                "reusable workflow './{}' was not loaded",
                call.path
            ));
        };
        let declared = called
            .on
            .events
            .get("workflow_call")
            .map(|e| e.inputs.clone())
            .unwrap_or_default();
        let mut inputs = Map::new();
        for (name, input) in &declared {
            let given = match call.with.get(name) {
                Some(Dyn::Value(v)) => Some(v.clone()),
                Some(Dyn::Expr(s)) => match s.template.eval(contexts) {
                    Ok(v) => Some(v.to_json()),
                    Err(e) => return failed(format!("with.{name}: {e}")),
                },
                None => input.default.clone().map(|d| match d {
                    Json::String(s) => Template::parse(&s, &shipway_expr::Scope::ANY)
                        .ok()
                        .and_then(|t| t.eval(contexts).ok())
                        .map_or(Json::String(s), |v| v.to_json()),
                    other => other,
                }),
            };
            let v = match (input.kind, given) {
                (InputKind::Boolean, None) => Value::Bool(false),
                (_, None) => Value::string(""),
                (InputKind::Boolean, Some(Json::String(s))) => Value::Bool(s == "true"),
                (InputKind::Number, Some(Json::String(s))) => {
                    Value::Number(shipway_expr::parse_number(s.trim()).unwrap_or(f64::NAN))
                }
                (_, Some(j)) => Value::from_json(&j),
            };
            inputs.insert(name.clone(), v);
        }
        let secrets = match &call.secrets {
            CallSecrets::Inherit => self.secrets.as_ref().clone(),
            CallSecrets::None => IndexMap::new(),
            CallSecrets::Map(pairs) => {
                let mut with_secrets = contexts.clone();
                with_secrets.insert("secrets".into(), strings(&self.secrets));
                pairs
                    .iter()
                    .map(|(k, s)| {
                        let v = s.template.eval_string(&with_secrets).unwrap_or_default();
                        (k.clone(), v)
                    })
                    .collect()
            }
        };
        exec.say(label, format!("calling ./{}", call.path));
        let prefix = format!("{full_id}/");
        let (reports, finished) = super::run_jobs(
            Arc::new(called.clone()),
            self.shared.clone(),
            Value::object(inputs.clone()),
            secrets,
            semaphore,
            None,
            &prefix,
        )
        .await;
        // `jobs` context for the called workflow's outputs.
        let mut jobs = Map::new();
        for (id, f) in &finished {
            let mut e = Map::new();
            e.insert("result".into(), Value::string(f.result.as_str()));
            e.insert("outputs".into(), strings(&f.outputs));
            jobs.insert(id.clone(), Value::object(e));
        }
        let mut out_ctx = self
            .shared
            .base_contexts(&Value::object(inputs), &Value::Null);
        out_ctx.insert("jobs".into(), Value::object(jobs));
        let mut outputs = IndexMap::new();
        if let Some(e) = called.on.events.get("workflow_call") {
            for (k, s) in &e.outputs {
                outputs.insert(
                    k.clone(),
                    s.template.eval_string(&out_ctx).unwrap_or_default(),
                );
            }
        }
        let result = if finished.values().any(|f| f.result == Status::Failure) {
            Status::Failure
        } else if finished.values().any(|f| f.result == Status::Cancelled) {
            Status::Cancelled
        } else {
            Status::Success
        };
        let mut all = vec![JobReport {
            id: full_id.to_string(),
            name: label.to_string(),
            matrix: self.matrix.clone(),
            result,
            outputs,
            steps: Vec::new(),
        }];
        all.extend(reports);
        all
    }
}

fn runner_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "macOS",
        "windows" => "Windows",
        _ => "Linux",
    }
}

fn runner_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "ARM64",
        "arm" => "ARM",
        "x86" => "X86",
        _ => "X64",
    }
}

/// How a step's command is started: the program, its arguments with `{0}` replaced, and the
/// script file's extension. Errors name shells that cannot run here.
fn shell_command(shell: Option<&str>, script: &Path) -> Result<(String, Vec<String>), String> {
    let file = script.to_string_lossy().to_string();
    let template: Vec<&str> = match shell {
        None => vec!["bash", "-e", "{0}"],
        Some("bash") => vec!["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"],
        Some("sh") => vec!["sh", "-e", "{0}"],
        Some("python") => vec!["python3", "{0}"],
        Some("pwsh") => vec!["pwsh", "-command", ". '{0}'"],
        Some(s @ ("cmd" | "powershell")) => {
            return Err(format!("shell '{s}' runs only on Windows runners"));
        }
        Some(custom) if custom.contains("{0}") => custom.split_whitespace().collect(),
        Some(other) => vec![other, "{0}"],
    };
    let mut parts = template.iter().map(|p| p.replace("{0}", &file));
    let program = parts.next().unwrap_or_default();
    Ok((program, parts.collect()))
}

fn extension(shell: Option<&str>) -> &'static str {
    match shell {
        Some("python") => ".py",
        Some("pwsh" | "powershell") => ".ps1",
        Some("cmd") => ".cmd",
        _ => ".sh",
    }
}

impl JobRun {
    fn host(&self, status: Status) -> StepHost<'_> {
        StepHost {
            contexts: &self.contexts,
            status,
            cancelled: self.cancel.is_cancelled(),
            workspace: &self.workspace,
        }
    }

    /// A message of the executor in the current step, masked.
    fn log(&self, text: &str) {
        self.shared.exec.emit(RunEvent::Line {
            job: self.label.clone(),
            step: self.current_step,
            stream: Stream::Runner,
            text: self.masker.mask(text),
        });
    }

    fn set_env_context(&mut self, env: &IndexMap<String, String>) {
        self.contexts.insert("env".into(), strings(env));
    }

    fn set_job_status(&mut self, status: Status) {
        let mut job = Map::new();
        job.insert("status".into(), Value::string(status.as_str()));
        self.contexts.insert("job".into(), Value::object(job));
    }

    /// Evaluates a string field; an error is logged and the raw text kept.
    fn eval_str(&self, s: &Str) -> String {
        match s.template.eval_string(&self.host(Status::Success)) {
            Ok(v) => v,
            Err(e) => {
                self.log(&format!("error: {}:{}: {e}", s.pos.line, s.pos.column));
                s.raw.clone()
            }
        }
    }

    fn add_env(&mut self, pairs: &Pairs) {
        for (k, s) in pairs {
            let v = self.eval_str(s);
            self.env.insert(k.clone(), v);
            let env = self.env.clone();
            self.set_env_context(&env);
        }
    }

    /// Runs one step with GitHub's rules: `if` (default `success()`), outcome and conclusion,
    /// `continue-on-error`, and the step's files.
    fn step<'a>(
        &'a mut self,
        step: &'a Step,
        frame: &'a mut Frame,
        outer_env: &'a IndexMap<String, String>,
    ) -> std::pin::Pin<Box<dyn Future<Output = StepReport> + Send + 'a>> {
        Box::pin(async move {
            self.contexts
                .insert("steps".into(), Value::object(frame.steps.clone()));
            self.contexts.insert("inputs".into(), frame.inputs.clone());
            self.set_job_status(frame.status);
            // The env a step sees: job env (with $GITHUB_ENV), the composite's, then its own.
            let mut env = self.env.clone();
            env.extend(outer_env.iter().map(|(k, v)| (k.clone(), v.clone())));
            self.set_env_context(&env);
            for (k, s) in &step.env {
                let v = self.eval_str(s);
                env.insert(k.clone(), v);
                self.set_env_context(&env);
            }
            let name = match &step.name {
                Some(n) => self.eval_str(n),
                None => match &step.action {
                    Action::Run(r) => format!("Run {}", r.raw.lines().next().unwrap_or_default()),
                    Action::Uses(u) => format!("Run {}", uses_label(u)),
                },
            };
            let run = match &step.condition {
                None => self.host(frame.status).status(Function::Success),
                Some(c) => match c.condition.eval(&self.host(frame.status)) {
                    Ok(b) => b,
                    Err(e) => {
                        self.log(&format!("error: {name}: if: {e}"));
                        frame.status = Status::Failure;
                        false
                    }
                },
            };
            let continue_on_error = match &step.continue_on_error {
                None => false,
                Some(Dyn::Value(v)) => Value::from_json(v).truthy(),
                Some(Dyn::Expr(s)) => s
                    .template
                    .eval(&self.host(frame.status))
                    .is_ok_and(|v| v.truthy()),
            };
            let mut report = StepReport {
                id: step.id.clone(),
                // Names may be built from secrets; the report is written to disk.
                name: self.masker.mask(&name),
                outcome: Status::Skipped,
                conclusion: Status::Skipped,
            };
            let mut outputs = IndexMap::new();
            if run {
                self.steps_started += 1;
                let number = self.steps_started;
                // A composite's steps are numbered on; its own lines resume after them.
                let outer = self.current_step.replace(number);
                self.shared.exec.emit(RunEvent::StepStarted {
                    job: self.label.clone(),
                    step: number,
                    name: report.name.clone(),
                });
                let outcome = self.execute(step, frame, &env, &mut outputs).await;
                report.outcome = outcome;
                report.conclusion = if outcome == Status::Failure && continue_on_error {
                    Status::Success
                } else {
                    outcome
                };
                match report.conclusion {
                    Status::Failure => frame.status = Status::Failure,
                    Status::Cancelled if frame.status == Status::Success => {
                        frame.status = Status::Cancelled;
                    }
                    _ => {}
                }
                self.shared.exec.emit(RunEvent::StepFinished {
                    job: self.label.clone(),
                    step: number,
                    name: report.name.clone(),
                    outcome,
                    conclusion: report.conclusion,
                });
                self.current_step = outer;
            }
            if let Some(id) = &step.id {
                let mut entry = Map::new();
                entry.insert("outputs".into(), strings(&outputs));
                entry.insert("outcome".into(), Value::string(report.outcome.as_str()));
                entry.insert(
                    "conclusion".into(),
                    Value::string(report.conclusion.as_str()),
                );
                frame.steps.insert(id.clone(), Value::object(entry));
            }
            report
        })
    }

    async fn execute(
        &mut self,
        step: &Step,
        frame: &mut Frame,
        env: &IndexMap<String, String>,
        outputs: &mut IndexMap<String, String>,
    ) -> Status {
        let timeout = match &step.timeout_minutes {
            None => None,
            Some(Dyn::Value(v)) => v.as_f64(),
            Some(Dyn::Expr(s)) => s
                .template
                .eval(&self.host(frame.status))
                .ok()
                .map(|v| v.to_number()),
        }
        .filter(|m| m.is_finite() && *m > 0.0)
        .map(|m| Duration::from_secs_f64(m * 60.0));
        match &step.action {
            Action::Run(script) => {
                let script = self.eval_str(script);
                self.run_script(step, frame, env, &script, timeout, outputs)
                    .await
            }
            Action::Uses(uses) => {
                let with: IndexMap<String, String> = step
                    .with
                    .iter()
                    .map(|(k, s)| (k.clone(), self.eval_str(s)))
                    .collect();
                self.uses(uses, frame, env, &with, outputs).await
            }
        }
    }

    async fn uses(
        &mut self,
        uses: &Uses,
        frame: &mut Frame,
        env: &IndexMap<String, String>,
        with: &IndexMap<String, String>,
        outputs: &mut IndexMap<String, String>,
    ) -> Status {
        let cfg = self.shared.exec.clone();
        let result = match uses {
            Uses::Checkout => super::actions::checkout(
                &cfg.repo,
                &self.shared.spec.sha,
                cfg.source,
                &self.workspace,
                with,
            ),
            Uses::Cache | Uses::CacheRestore => {
                let r =
                    super::actions::cache_restore(&cfg.cache_dir, &self.workspace, with, outputs);
                if matches!(uses, Uses::Cache)
                    && outputs.get("cache-hit").map(String::as_str) != Some("true")
                    && let (Some(key), Some(path)) = (with.get("key"), with.get("path"))
                {
                    self.cache_saves
                        .push((key.clone(), super::actions::lines(path)));
                }
                r
            }
            Uses::CacheSave => match (with.get("key"), with.get("path")) {
                (Some(key), Some(path)) => super::actions::cache_save(
                    &cfg.cache_dir,
                    &self.workspace,
                    key,
                    &super::actions::lines(path),
                ),
                _ => Err("actions/cache/save needs `key` and `path`".to_string()),
            },
            Uses::UploadArtifact => super::actions::upload(
                &cfg.run_dir.join("artifacts"),
                &self.workspace,
                with,
                outputs,
            ),
            Uses::DownloadArtifact => super::actions::download(
                &cfg.run_dir.join("artifacts"),
                &self.workspace,
                with,
                outputs,
            ),
            Uses::Local(path) => {
                if frame.depth >= MAX_ACTION_NESTING {
                    self.log(&format!(
                        "error: ./{path}: local actions nest more than {MAX_ACTION_NESTING} levels"
                    ));
                    return Status::Failure;
                }
                // Read now, from the workspace as the earlier steps left it, as GitHub does.
                let action = match crate::load::read_action(&DiskFs, &self.workspace, path) {
                    Ok(a) => a,
                    Err(ActionError::Missing(m) | ActionError::Outside(m)) => {
                        self.log(&format!("error: {m}"));
                        return Status::Failure;
                    }
                    Err(ActionError::Invalid(problems)) => {
                        for p in problems {
                            self.log(&format!("error: {p}"));
                        }
                        return Status::Failure;
                    }
                    Err(ActionError::Unsupported(problems)) => {
                        if cfg.allow_unsupported_actions {
                            self.log(&format!(
                                "warning: skipping ./{path}: its kind of action is not supported"
                            ));
                            return Status::Skipped;
                        }
                        for p in problems {
                            self.log(&format!("error: {p}"));
                        }
                        return Status::Failure;
                    }
                };
                return self
                    .composite(path, &action, frame, env, with, outputs)
                    .await;
            }
            Uses::Platform(action) => {
                return self.platform(action, env, with, outputs).await;
            }
            Uses::Unsupported(name) => {
                if cfg.allow_unsupported_actions {
                    self.log(&format!("warning: skipping unsupported action {name}"));
                    return Status::Skipped;
                }
                Err(format!("action {name} is not supported"))
            }
        };
        match result {
            Ok(msg) => {
                if !msg.is_empty() {
                    self.log(&msg);
                }
                Status::Success
            }
            Err(e) => {
                self.log(&format!("error: {e}"));
                Status::Failure
            }
        }
    }

    /// A `shipway/NAME` step, run by the platform on a blocking thread.
    async fn platform(
        &mut self,
        action: &str,
        env: &IndexMap<String, String>,
        with: &IndexMap<String, String>,
        outputs: &mut IndexMap<String, String>,
    ) -> Status {
        let Some(platform) = self.shared.exec.platform.clone() else {
            self.log(&format!(
                "error: shipway/{action} runs inside Shipway's platform (`shipway up` or `shipway run`), which this executor was not given"
            ));
            return Status::Failure;
        };
        let call = super::PlatformCall {
            action: action.to_string(),
            with: with.clone(),
            workspace: self.workspace.clone(),
            job: self.label.clone(),
            env: env.clone(),
        };
        let done = tokio::task::spawn_blocking(move || platform.run(call))
            .await
            .unwrap_or_else(|e| Err(format!("shipway/{action} stopped: {e}")));
        match done {
            Ok(outcome) => {
                for line in &outcome.lines {
                    self.log(line);
                }
                if let Some(record) = outcome.record {
                    self.shared.exec.emit(RunEvent::Platform {
                        job: self.label.clone(),
                        record,
                    });
                }
                outputs.extend(outcome.outputs);
                Status::Success
            }
            Err(e) => {
                self.log(&format!("error: shipway/{action}: {e}"));
                Status::Failure
            }
        }
    }

    async fn composite(
        &mut self,
        path: &str,
        action: &ActionMeta,
        frame: &mut Frame,
        env: &IndexMap<String, String>,
        with: &IndexMap<String, String>,
        outputs: &mut IndexMap<String, String>,
    ) -> Status {
        let mut inputs = Map::new();
        for (name, (default, required)) in &action.inputs {
            let v = match with.get(name) {
                Some(v) => v.clone(),
                None => match default {
                    Some(d) => match Template::parse(d, &shipway_expr::Scope::ANY) {
                        Ok(t) => t
                            .eval_string(&self.host(frame.status))
                            .unwrap_or_else(|_| d.clone()),
                        Err(_) => d.clone(),
                    },
                    None => {
                        if *required {
                            self.log(&format!(
                                "warning: ./{path}: required input '{name}' is not given"
                            ));
                        }
                        String::new()
                    }
                },
            };
            inputs.insert(name.clone(), Value::string(v));
        }
        for (k, v) in with {
            if !inputs.contains_key(k) {
                self.log(&format!("warning: ./{path}: unexpected input '{k}'"));
            }
            inputs
                .entry(k.clone())
                .or_insert_with(|| Value::string(v.clone()));
        }
        let action_dir = self.workspace.join(path);
        let mut inner = Frame {
            steps: Map::new(),
            inputs: Value::object(inputs),
            status: Status::Success,
            action_path: Some(action_dir),
            depth: frame.depth + 1,
        };
        // A composite's steps see the job's status as it was when the action started.
        if frame.status != Status::Success {
            inner.status = frame.status;
        }
        let saved = (
            self.contexts.get("steps").cloned(),
            self.contexts.get("inputs").cloned(),
            self.contexts.get("github").cloned(),
        );
        // `github.action_path` is the action's directory while its steps run.
        if let Some(Value::Object(g)) = &saved.2 {
            let mut g = g.as_ref().clone();
            g.insert(
                "action_path".into(),
                Value::string(self.workspace.join(path).to_string_lossy()),
            );
            self.contexts.insert("github".into(), Value::object(g));
        }
        for step in &action.steps {
            self.step(step, &mut inner, env).await;
        }
        self.contexts
            .insert("steps".into(), Value::object(inner.steps.clone()));
        self.contexts.insert("inputs".into(), inner.inputs.clone());
        for (k, s) in &action.outputs {
            outputs.insert(k.clone(), self.eval_str(s));
        }
        if let Some(s) = saved.0 {
            self.contexts.insert("steps".into(), s);
        }
        if let Some(i) = saved.1 {
            self.contexts.insert("inputs".into(), i);
        }
        if let Some(g) = saved.2 {
            self.contexts.insert("github".into(), g);
        }
        match inner.status {
            Status::Failure => Status::Failure,
            Status::Cancelled => Status::Cancelled,
            _ => Status::Success,
        }
    }

    async fn run_script(
        &mut self,
        step: &Step,
        frame: &mut Frame,
        env: &IndexMap<String, String>,
        script: &str,
        timeout: Option<Duration>,
        outputs: &mut IndexMap<String, String>,
    ) -> Status {
        let shell = step
            .shell
            .as_ref()
            .map(|s| self.eval_str(s))
            .or_else(|| self.defaults_shell.clone());
        // One script name and one set of command files per job, truncated for each step:
        // creating fresh files for every step made the filesystem the bottleneck (ext4 inode
        // allocation in a growing directory), and steps of a job never run at once.
        let commands_dir = self.temp.join("_runner_file_commands");
        if let Err(e) = super::private::create_dir_all(&commands_dir) {
            self.log(&format!(
                "error: cannot create {}: {e}",
                commands_dir.display()
            ));
            return Status::Failure;
        }
        let script_path = commands_dir.join(format!("step{}", extension(shell.as_deref())));
        if let Err(e) = super::private::write(&script_path, script) {
            self.log(&format!("error: cannot write the script: {e}"));
            return Status::Failure;
        }
        let (program, args) = match shell_command(shell.as_deref(), &script_path) {
            Ok(c) => c,
            Err(e) => {
                self.log(&format!("error: {e}"));
                return Status::Failure;
            }
        };
        let wd = step
            .working_directory
            .as_ref()
            .map(|s| self.eval_str(s))
            .or_else(|| self.defaults_wd.clone());
        let cwd = match &wd {
            Some(d) => self.workspace.join(d),
            None => self.workspace.clone(),
        };
        let file = |kind: &str| commands_dir.join(kind);
        let (out_file, env_file, path_file, summary_file) =
            (file("output"), file("env"), file("path"), file("summary"));
        for f in [&out_file, &env_file, &path_file, &summary_file] {
            let _ = super::private::write(f, "");
        }
        let mut vars = self.process_env(step, frame, env);
        for (k, f) in [
            ("GITHUB_OUTPUT", &out_file),
            ("GITHUB_ENV", &env_file),
            ("GITHUB_PATH", &path_file),
            ("GITHUB_STEP_SUMMARY", &summary_file),
            ("GITHUB_STATE", &file("state")),
        ] {
            vars.push((k.to_string(), f.to_string_lossy().to_string()));
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        // A step that runs after cancellation (an `always()` cleanup) is not interrupted by the
        // same cancellation, as on GitHub; its own timeout still applies, capped.
        let (cancel, timeout) = if self.cancel.is_cancelled() {
            // GitHub gives steps that run after a cancel at most five minutes.
            let cap = Duration::from_secs(5 * 60);
            (
                CancellationToken::new(),
                Some(timeout.map_or(cap, |t| t.min(cap))),
            )
        } else {
            (self.cancel.clone(), timeout)
        };
        // Recorded under the run directory, so a server killed mid-step stops it after its
        // restart (see `PIDS_DIR`).
        let pids = self.shared.exec.run_dir.join(super::PIDS_DIR);
        let proc = process::run(
            &program,
            &args,
            &cwd,
            &vars,
            timeout,
            &cancel,
            tx,
            Some(&pids),
        );
        let exec = self.shared.exec.clone();
        let label = self.label.clone();
        let step_number = self.current_step;
        let emit = |stderr: bool, text: String| {
            exec.emit(RunEvent::Line {
                job: label.clone(),
                step: step_number,
                stream: if stderr {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                },
                text,
            });
        };
        let masker = &mut self.masker;
        let mut file_commands: Vec<(String, FileCommand)> = Vec::new();
        let consume = async {
            let mut stopped: Option<String> = None;
            // Per stream (stdout, stderr): the line being received in pieces, if any.
            let mut long: [Option<LongLine>; 2] = [None, None];
            while let Some(piece) = rx.recv().await {
                let text = piece.text;
                let long = &mut long[usize::from(piece.stderr)];
                if let Some(mut line) = long.take() {
                    if line.mask {
                        masker.add(&text);
                    } else {
                        line.carry.push_str(&text);
                        let rest = std::mem::take(&mut line.carry);
                        if piece.continues {
                            let (shown, used) = masker.mask_start(&rest);
                            emit(piece.stderr, format!("{shown}{CUT}"));
                            line.carry = rest[used..].to_string();
                        } else {
                            emit(piece.stderr, masker.mask(&rest));
                        }
                    }
                    if piece.continues {
                        *long = Some(line);
                    }
                    continue;
                }
                if piece.continues {
                    // An overlong line is printed as text, except that the value of an
                    // `::add-mask::` too long for one piece is masked piece by piece.
                    let line = match parse_line(&text, stopped.as_deref()) {
                        Line::AddMask(v) => {
                            masker.add(&v);
                            LongLine {
                                carry: String::new(),
                                mask: true,
                            }
                        }
                        _ => {
                            let (shown, used) = masker.mask_start(&text);
                            emit(piece.stderr, format!("{shown}{CUT}"));
                            LongLine {
                                carry: text[used..].to_string(),
                                mask: false,
                            }
                        }
                    };
                    *long = Some(line);
                    continue;
                }
                match parse_line(&text, stopped.as_deref()) {
                    Line::Text(t) => emit(piece.stderr, masker.mask(&t)),
                    Line::AddMask(v) => masker.add(&v),
                    Line::Group(t) => emit(piece.stderr, format!("▼ {}", masker.mask(&t))),
                    Line::EndGroup => {}
                    Line::Annotation {
                        level,
                        message,
                        properties,
                    } => {
                        let at = if properties.is_empty() {
                            String::new()
                        } else {
                            format!(" ({properties})")
                        };
                        emit(
                            piece.stderr,
                            masker.mask(&format!("{level}{at}: {message}")),
                        );
                    }
                    Line::File(c) => file_commands.push((text, c)),
                    Line::Debug(_) | Line::Ignored => {}
                    Line::Stop(token) => stopped = Some(token),
                    Line::Resume => stopped = None,
                }
            }
        };
        let (exit, ()) = tokio::join!(proc, consume);
        let exit = match exit {
            Ok(e) => e,
            Err(e) => {
                self.log(&format!("error: {e}"));
                Exit::NotStarted
            }
        };
        let commands_ok = self.file_commands(file_commands, env, outputs);
        // Files are read even after a failure: outputs written before the error count.
        let read = |f: &Path| std::fs::read_to_string(f).unwrap_or_default();
        match files::parse_key_values(&read(&out_file)) {
            Ok(kv) => outputs.extend(kv),
            Err(e) => self.log(&format!("error: $GITHUB_OUTPUT: {e}")),
        }
        match files::parse_key_values(&read(&env_file)) {
            Ok(kv) => {
                for (k, v) in kv {
                    self.env.insert(k, v);
                }
            }
            Err(e) => self.log(&format!("error: $GITHUB_ENV: {e}")),
        }
        let mut added = files::parse_path_file(&read(&path_file));
        added.reverse();
        for p in added {
            self.path_prepend.insert(0, p);
        }
        // The summary is kept on disk after the run: masked like a log line, with the masks the
        // step added too.
        self.summary
            .push_str(&self.masker.mask(&read(&summary_file)));
        match exit {
            Exit::Code(0) if commands_ok => Status::Success,
            Exit::Code(0) => Status::Failure,
            Exit::Code(c) => {
                self.log(&format!("error: process exited with code {c}"));
                Status::Failure
            }
            Exit::Signal(_) => {
                self.log("error: process was killed by a signal");
                Status::Failure
            }
            Exit::TimedOut => {
                self.log(
                    "error: the step exceeded its timeout-minutes; its process group was killed",
                );
                Status::Failure
            }
            Exit::Cancelled => {
                if self.timed_out.load(Ordering::SeqCst) {
                    Status::Failure
                } else {
                    Status::Cancelled
                }
            }
            Exit::NotStarted => Status::Failure,
        }
    }

    /// Applies the old workflow commands a step printed, in order, as GitHub does: `set-output`
    /// and `save-state` with a deprecation warning; `set-env` and `add-path` only when
    /// `ACTIONS_ALLOW_UNSECURE_COMMANDS` is `true` in the step's env (or the runner's), else
    /// refused with GitHub's error, which fails the step (returns false).
    fn file_commands(
        &mut self,
        commands: Vec<(String, FileCommand)>,
        env: &IndexMap<String, String>,
        outputs: &mut IndexMap<String, String>,
    ) -> bool {
        let key = "ACTIONS_ALLOW_UNSECURE_COMMANDS";
        let allowed = env
            .get(key)
            .cloned()
            .or_else(|| {
                let base = &self.shared.exec.base_env;
                base.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
            })
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut ok = true;
        let mut warned = Vec::new();
        for (line, c) in commands {
            if c.is_unsecure() && !allowed {
                self.log(&format!(
                    "error: Unable to process command '{}' successfully.",
                    line.trim()
                ));
                self.log(&format!("error: {}", c.message()));
                ok = false;
                continue;
            }
            if !c.is_unsecure() && !warned.contains(&c.command()) {
                warned.push(c.command());
                self.log(&format!("warning: {}", c.message()));
            }
            match c {
                FileCommand::SetOutput { name, value } => {
                    outputs.insert(name, value);
                }
                // State is for an action's post step; a `run:` step has none to pass it to.
                FileCommand::SaveState { .. } => {}
                FileCommand::SetEnv { name, value } => {
                    self.env.insert(name, value);
                }
                FileCommand::AddPath(p) => self.path_prepend.insert(0, p),
            }
        }
        ok
    }

    /// The environment of a step's process: the host's, GitHub's variables, then `env`.
    fn process_env(
        &self,
        step: &Step,
        frame: &Frame,
        env: &IndexMap<String, String>,
    ) -> Vec<(String, String)> {
        let cfg = &self.shared.exec;
        let g = |k: &str| {
            self.contexts
                .get("github")
                .and_then(|g| g.get(k))
                .map(Value::to_display)
                .unwrap_or_default()
        };
        let mut vars: IndexMap<String, String> = cfg.base_env.iter().cloned().collect();
        let set = |vars: &mut IndexMap<String, String>, k: &str, v: String| {
            vars.insert(k.to_string(), v);
        };
        set(&mut vars, "CI", "true".into());
        set(&mut vars, "GITHUB_ACTIONS", "true".into());
        for (k, field) in [
            ("GITHUB_SHA", "sha"),
            ("GITHUB_REF", "ref"),
            ("GITHUB_REF_NAME", "ref_name"),
            ("GITHUB_REF_TYPE", "ref_type"),
            ("GITHUB_EVENT_NAME", "event_name"),
            ("GITHUB_EVENT_PATH", "event_path"),
            ("GITHUB_RUN_ID", "run_id"),
            ("GITHUB_RUN_NUMBER", "run_number"),
            ("GITHUB_RUN_ATTEMPT", "run_attempt"),
            ("GITHUB_REPOSITORY", "repository"),
            ("GITHUB_REPOSITORY_OWNER", "repository_owner"),
            ("GITHUB_ACTOR", "actor"),
            ("GITHUB_TRIGGERING_ACTOR", "triggering_actor"),
            ("GITHUB_WORKFLOW", "workflow"),
            ("GITHUB_SERVER_URL", "server_url"),
            ("GITHUB_API_URL", "api_url"),
            ("GITHUB_GRAPHQL_URL", "graphql_url"),
            ("GITHUB_BASE_REF", "base_ref"),
            ("GITHUB_HEAD_REF", "head_ref"),
        ] {
            set(&mut vars, k, g(field));
        }
        set(&mut vars, "GITHUB_JOB", self.job_id.clone());
        set(
            &mut vars,
            "GITHUB_ACTION",
            step.id
                .clone()
                .unwrap_or_else(|| format!("__run_{}", step.index)),
        );
        set(
            &mut vars,
            "GITHUB_WORKSPACE",
            self.workspace.to_string_lossy().to_string(),
        );
        set(&mut vars, "RUNNER_OS", runner_os().into());
        set(&mut vars, "RUNNER_ARCH", runner_arch().into());
        set(&mut vars, "RUNNER_NAME", "shipway".into());
        set(&mut vars, "RUNNER_ENVIRONMENT", "self-hosted".into());
        set(
            &mut vars,
            "RUNNER_TEMP",
            self.temp.to_string_lossy().to_string(),
        );
        if let Some(p) = self.temp.parent() {
            set(
                &mut vars,
                "RUNNER_TOOL_CACHE",
                p.join("tool_cache").to_string_lossy().to_string(),
            );
        }
        if let Some(p) = &frame.action_path {
            set(
                &mut vars,
                "GITHUB_ACTION_PATH",
                p.to_string_lossy().to_string(),
            );
        }
        for (k, v) in env {
            vars.insert(k.clone(), v.clone());
        }
        if !self.path_prepend.is_empty() {
            let base = vars.get("PATH").cloned().unwrap_or_default();
            let mut parts = self.path_prepend.clone();
            if !base.is_empty() {
                parts.push(base);
            }
            vars.insert("PATH".into(), parts.join(":"));
        }
        vars.into_iter().collect()
    }
}

fn uses_label(u: &Uses) -> String {
    match u {
        Uses::Checkout => "actions/checkout".into(),
        Uses::Cache => "actions/cache".into(),
        Uses::CacheRestore => "actions/cache/restore".into(),
        Uses::CacheSave => "actions/cache/save".into(),
        Uses::UploadArtifact => "actions/upload-artifact".into(),
        Uses::DownloadArtifact => "actions/download-artifact".into(),
        Uses::Local(p) => format!("./{p}"),
        Uses::Platform(a) => format!("shipway/{a}"),
        Uses::Unsupported(n) => n.clone(),
    }
}

/// Removes what `dir` holds, keeping `dir`. Best effort: what cannot be removed stays.
fn empty_dir(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let _ = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

/// Ends each printed piece of an output line longer than [`shipway_process::stream::MAX_LINE_BYTES`].
pub(crate) const CUT: &str = "…";

/// An output line arriving in pieces.
struct LongLine {
    /// Its unprinted end: possibly the start of a secret the next piece completes.
    carry: String,
    /// It is an `::add-mask::` command: every piece is a value to mask, not text.
    mask: bool,
}
