//! `shipway run`: run GitHub Actions workflows of a repository locally, no server needed.
//!
//! This file only gathers inputs (files, flags, git facts), prints, and maps results to exit
//! codes; parsing, planning and running live in `shipway-pipeline`.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Arc;

use clap::Args;
use indexmap::IndexMap;
use serde_json::{Value, json};
use shipway_pipeline::exec::{
    Executor, Report, RunEvent, RunObserver, RunSpec, Source, Status, check_inputs,
    dispatch_inputs, event_ref, log_text, run_workflow,
};
use shipway_pipeline::load::{Bundle, Options, load};
use shipway_pipeline::plan::{MatrixPlan, plan};
use shipway_pipeline::problem::Severity;
use shipway_pipeline::trigger::{EventFacts, matches};
use tokio_util::sync::CancellationToken;

use crate::Failure;
use crate::cli::Global;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Repository directory [default: the current directory].
    #[arg(short = 'C', value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// A workflow file or a directory of them [default: .github/workflows and .shipway/workflows].
    #[arg(short = 'W', long = "workflows", value_name = "PATH")]
    pub workflows: Option<PathBuf>,
    /// The event that triggers the run.
    #[arg(long, default_value = "push", value_name = "NAME")]
    pub event: String,
    /// The event payload (JSON), as in $GITHUB_EVENT_PATH.
    #[arg(short = 'e', long, value_name = "FILE")]
    pub event_path: Option<PathBuf>,
    /// Run only this job (and the jobs it needs).
    #[arg(short = 'j', long, value_name = "ID")]
    pub job: Option<String>,
    /// An input of workflow_dispatch or workflow_call. Repeatable.
    #[arg(long = "input", value_name = "K=V")]
    pub inputs: Vec<String>,
    /// A secret. Repeatable.
    #[arg(long = "secret", value_name = "K=V")]
    pub secrets: Vec<String>,
    /// Secrets from a dotenv file (KEY=VALUE lines).
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// A configuration variable (`vars.K`). Repeatable.
    #[arg(long = "var", value_name = "K=V")]
    pub vars: Vec<String>,
    /// Print the plan as a table and exit.
    #[arg(long)]
    pub list: bool,
    /// Print the job graph and exit.
    #[arg(long)]
    pub graph: bool,
    /// Validate and plan, print what would run, run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the run report (JSON) to this file.
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// Job instances run at once [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Skip actions Shipway cannot run (with a warning) instead of refusing the workflow.
    #[arg(long)]
    pub allow_unsupported_actions: bool,
    /// Run this commit: workflows and checked-out files from its tree [default: the working
    /// tree, uncommitted changes included].
    #[arg(long = "ref", value_name = "REV")]
    pub git_ref: Option<String>,
}

/// A commit's files, written to a temporary directory for the run and removed after it.
struct Tree {
    dir: PathBuf,
    index: PathBuf,
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.index);
    }
}

/// The files of commit `sha` of `repo`, read through a temporary index so the repository's own
/// index and working tree are left alone.
fn commit_tree(repo: &Path, rev: &str, sha: &str) -> Result<Tree, Failure> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let base = std::env::temp_dir().join(format!("shipway-ref-{}-{stamp}", std::process::id()));
    let tree = Tree {
        dir: base.clone(),
        index: base.with_extension("index"),
    };
    // Private, as the data directory is: the repository's files may be too.
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&tree.dir)
        .map_err(|e| Failure::Failed(format!("--ref {rev}: {}: {e}", tree.dir.display())))?;
    let mut prefix = tree.dir.to_string_lossy().to_string();
    prefix.push('/');
    for args in [
        vec!["read-tree".to_string(), sha.to_string()],
        vec![
            "checkout-index".into(),
            "--all".into(),
            "--force".into(),
            format!("--prefix={prefix}"),
        ],
    ] {
        let out = Process::new("git")
            .arg("-C")
            .arg(repo)
            .args(&args)
            .env("GIT_INDEX_FILE", &tree.index)
            .output()
            .map_err(|e| Failure::Failed(format!("--ref {rev}: cannot run git: {e}")))?;
        if !out.status.success() {
            return Err(Failure::Failed(format!(
                "--ref {rev}: git {}: {}",
                args[0],
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(tree)
}

fn pairs(items: &[String], what: &str) -> Result<IndexMap<String, String>, Failure> {
    let mut out = IndexMap::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            return Err(Failure::Usage(format!(
                "--{what} {item}: expected KEY=VALUE"
            )));
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// A dotenv file: `KEY=VALUE` lines, `#` comments, optional `export`, quoted values.
fn dotenv(path: &Path) -> Result<IndexMap<String, String>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("--secret-file {}: {e}", path.display())))?;
    let mut out = IndexMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(Failure::Usage(format!(
                "{}:{}: expected KEY=VALUE",
                path.display(),
                n + 1
            )));
        };
        let v = v.trim();
        let v = if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            inner.replace("\\n", "\n").replace("\\\"", "\"")
        } else if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            inner.to_string()
        } else {
            v.to_string()
        };
        out.insert(k.trim().to_string(), v);
    }
    Ok(out)
}

fn git(repo: &Path, args: &[&str]) -> Option<String> {
    let out = Process::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The workflow files to consider, relative to the repository.
fn workflow_files(repo: &Path, given: Option<&Path>) -> Result<Vec<String>, Failure> {
    let dirs: Vec<PathBuf> = match given {
        Some(p) => {
            let full = if p.is_absolute() {
                p.to_path_buf()
            } else {
                repo.join(p)
            };
            if full.is_file() {
                return Ok(vec![relative(repo, &full)?]);
            }
            if !full.is_dir() {
                return Err(Failure::Usage(format!(
                    "-W {}: no such file or directory",
                    p.display()
                )));
            }
            vec![full]
        }
        None => vec![
            repo.join(".github/workflows"),
            repo.join(".shipway/workflows"),
        ],
    };
    let mut files = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
            .collect();
        found.sort();
        for f in found {
            files.push(relative(repo, &f)?);
        }
    }
    if files.is_empty() {
        return Err(Failure::Usage(format!(
            "no workflow files in {}: looked in .github/workflows and .shipway/workflows (use -W)",
            repo.display()
        )));
    }
    Ok(files)
}

fn relative(repo: &Path, file: &Path) -> Result<String, Failure> {
    let repo = repo.canonicalize().unwrap_or_else(|_| repo.to_path_buf());
    let file = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    file.strip_prefix(&repo)
        .map(|p| p.to_string_lossy().to_string())
        .map_err(|_| {
            Failure::Usage(format!(
                "{} is outside the repository {}",
                file.display(),
                repo.display()
            ))
        })
}

/// A push event payload from the repository's HEAD, with the fields workflows read most
/// (`ref`, `before`, `after`, `head_commit`), so `github.event.head_commit.message` works
/// without `-e`.
fn push_payload(repo: &Path, sha: &str, branch: &str) -> Value {
    let field = |format: &str| git(repo, &["log", "-1", &format!("--format={format}"), sha]);
    let before = git(repo, &["rev-parse", &format!("{sha}~1")])
        .unwrap_or_else(|| "0000000000000000000000000000000000000000".into());
    let mut payload = json!({
        "ref": format!("refs/heads/{branch}"),
        "before": before,
        "after": sha,
        "created": false,
        "deleted": false,
        "forced": false,
    });
    if !sha.is_empty() {
        payload["head_commit"] = json!({
            "id": sha,
            "message": field("%B").unwrap_or_default(),
            "timestamp": field("%cI").unwrap_or_default(),
            "author": {
                "name": field("%an").unwrap_or_default(),
                "email": field("%ae").unwrap_or_default(),
            },
        });
    }
    payload
}

/// Prints the run's events live as lines prefixed by the job, in a stable colour per job on a
/// terminal.
struct Printer {
    color: bool,
    /// Job instances started, by name (see `log_text`).
    started: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl RunObserver for Printer {
    fn event(&self, e: &RunEvent) {
        let Some(job) = e.job() else { return };
        let Some(text) = self
            .started
            .lock()
            .ok()
            .and_then(|mut s| log_text(e, &mut s))
        else {
            return;
        };
        if self.color {
            const COLORS: [u8; 6] = [36, 33, 35, 32, 34, 31];
            let h = job
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
            let c = COLORS[h % COLORS.len()];
            outln!("\x1b[{c}m[{job}]\x1b[0m {text}");
        } else {
            outln!("[{job}] {text}");
        }
    }
}

pub async fn run(global: &Global, args: RunArgs) -> Result<(), Failure> {
    let repo = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let repo = repo
        .canonicalize()
        .map_err(|e| Failure::Usage(format!("-C {}: {e}", repo.display())))?;
    let options = Options {
        allow_unsupported_actions: args.allow_unsupported_actions,
    };
    // Workflow files and checked-out files come from one tree: the working tree (as act runs),
    // or the commit `--ref` names.
    let (sha, commit, source) = match &args.git_ref {
        None => (
            git(&repo, &["rev-parse", "HEAD"]).unwrap_or_default(),
            None,
            Source::WorkingTree,
        ),
        Some(rev) => {
            let sha = git(
                &repo,
                &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")],
            )
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "--ref {rev}: not a commit of {}; give a branch, tag or commit (git rev-parse {rev})",
                    repo.display()
                ))
            })?;
            let tree = commit_tree(&repo, rev, &sha)?;
            (sha, Some(tree), Source::Commit)
        }
    };
    let tree_dir = commit.as_ref().map_or(repo.clone(), |t| t.dir.clone());
    // -W names a path of the repository; with --ref, the same path in the commit's tree.
    let given = match args.workflows.as_deref() {
        Some(p) if p.is_absolute() && commit.is_some() => {
            let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
            Some(p.strip_prefix(&repo).map(Path::to_path_buf).unwrap_or(p))
        }
        other => other.map(Path::to_path_buf),
    };
    let files = workflow_files(&tree_dir, given.as_deref())?;
    let mut bundles = Vec::new();
    let mut blocking = Vec::new();
    for f in &files {
        let b = load(&tree_dir, f);
        // Skipped actions are summarised per file (one line, with counts), not per step.
        let mut skipped: IndexMap<String, usize> = IndexMap::new();
        for p in &b.problems {
            if p.severity == Severity::Warning {
                eprintln!("{p}");
            } else if p.severity == Severity::Unsupported
                && options.allow_unsupported_actions
                && p.is_action()
            {
                // `'owner/repo@ref'` in step messages; a local action's kind is reported in
                // its own action.yml.
                let name = if p.message.starts_with("runs.using") {
                    format!("./{}", p.file.rsplit_once('/').map_or("", |(d, _)| d))
                } else {
                    p.message
                        .split('\'')
                        .nth(1)
                        .map_or("?", |t| t.split('@').next().unwrap_or(t))
                        .to_string()
                };
                *skipped.entry(name).or_default() += 1;
            }
        }
        if !skipped.is_empty() {
            let list: Vec<String> = skipped.iter().map(|(n, c)| format!("{n} ({c})")).collect();
            eprintln!(
                "warning: {}: skipping steps whose actions Shipway does not run: {}",
                b.path,
                list.join(", ")
            );
        }
        blocking.extend(b.blocking(options).into_iter().map(ToString::to_string));
        bundles.push(b);
    }
    if !blocking.is_empty() {
        let mut msg = blocking.join("\n");
        msg.push_str(&format!("\n{} problem(s); nothing was run", blocking.len()));
        return Err(Failure::Usage(msg));
    }

    let event: Value = match &args.event_path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Failure::Usage(format!("-e {}: {e}", p.display())))?;
            let payload: Value = serde_json::from_str(&text).map_err(|e| {
                // serde's message ends with its own "at line L column C"; say it as file:line:col.
                let message = e.to_string();
                let message = message
                    .rsplit_once(" at line ")
                    .map_or(message.as_str(), |(m, _)| m);
                Failure::Usage(format!(
                    "{}:{}:{}: the event payload (-e) is not JSON: {message}; give the webhook payload as a JSON object",
                    p.display(),
                    e.line(),
                    e.column()
                ))
            })?;
            if !payload.is_object() {
                return Err(Failure::Usage(format!(
                    "{}:1:1: the event payload (-e) must be a JSON object (a webhook payload), found {}",
                    p.display(),
                    match payload {
                        Value::Array(_) => "an array",
                        Value::String(_) => "a string",
                        Value::Number(_) => "a number",
                        Value::Bool(_) => "a boolean",
                        _ => "null",
                    }
                )));
            }
            payload
        }
        None => json!({}),
    };
    let branch = git(&repo, &["symbolic-ref", "--short", "HEAD"]).unwrap_or_else(|| "main".into());
    let event = if args.event_path.is_none() && args.event == "push" {
        push_payload(&repo, &sha, &branch)
    } else {
        event
    };
    let git_ref = event_ref(&args.event, &event, &branch);
    let filter_ref = if args.event.starts_with("pull_request") {
        // Pull request filters match the base branch.
        event
            .pointer("/pull_request/base/ref")
            .and_then(Value::as_str)
            .map_or_else(
                || format!("refs/heads/{branch}"),
                |b| format!("refs/heads/{b}"),
            )
    } else {
        git_ref.clone()
    };
    let changed_files = git(&repo, &["diff", "--name-only", &format!("{sha}~1"), &sha])
        .map(|s| s.lines().map(str::to_string).collect::<Vec<_>>());
    let facts = EventFacts {
        name: args.event.clone(),
        git_ref: filter_ref,
        changed_files,
        action: event
            .get("action")
            .and_then(Value::as_str)
            .map(str::to_string),
    };

    let mut triggered: Vec<&Bundle> = Vec::new();
    for b in &bundles {
        let Some(w) = &b.workflow else { continue };
        if let Some(j) = &args.job
            && !w.jobs.contains_key(j)
        {
            continue;
        }
        match matches(&w.on, &facts) {
            Ok(()) => triggered.push(b),
            Err(why) => eprintln!("{}: not triggered: {why}", b.path),
        }
    }
    if let Some(j) = &args.job
        && triggered.is_empty()
        && !bundles
            .iter()
            .any(|b| b.workflow.as_ref().is_some_and(|w| w.jobs.contains_key(j)))
    {
        return Err(Failure::Usage(format!(
            "-j {j}: no workflow has a job '{j}'"
        )));
    }

    // A dispatch's inputs also come from the payload's `inputs`; the flags win. They reach
    // `github.event.inputs` as strings and `inputs` typed as each workflow declares them.
    let mut inputs = pairs(&args.inputs, "input")?;
    let mut event = event;
    if args.event == "workflow_dispatch" {
        inputs = dispatch_inputs(&event, &inputs);
        if let Value::Object(payload) = &mut event {
            let strings = inputs
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            payload.insert("inputs".into(), Value::Object(strings));
        }
    }
    let mut input_problems = Vec::new();
    for b in &triggered {
        if let Some(w) = &b.workflow {
            for (pos, p) in check_inputs(w, &args.event, &inputs) {
                input_problems.push(match pos {
                    Some(at) => format!("{}:{}:{}: {p}", b.path, at.line, at.column),
                    None => format!("{}: {p}", b.path),
                });
            }
        }
    }
    if !input_problems.is_empty() {
        return Err(Failure::Usage(input_problems.join("\n")));
    }

    if args.list || args.graph || args.dry_run {
        for b in &triggered {
            print_plan(b, &args)?;
        }
        return Ok(());
    }

    let mut secrets = match &args.secret_file {
        Some(p) => dotenv(p)?,
        None => IndexMap::new(),
    };
    secrets.extend(pairs(&args.secrets, "secret")?);
    let vars = pairs(&args.vars, "var")?;
    let data = crate::commands::data_dir(global)?;
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let repository = git(&repo, &["config", "--get", "remote.origin.url"])
        .and_then(|u| {
            let u = u.trim_end_matches(".git");
            let mut parts = u.rsplit(['/', ':']);
            let name = parts.next()?;
            let owner = parts.next()?;
            Some(format!("{owner}/{name}"))
        })
        .unwrap_or_else(|| {
            format!(
                "local/{}",
                repo.file_name()
                    .map_or("repo".into(), |n| n.to_string_lossy().to_string())
            )
        });
    let cancel = CancellationToken::new();
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\ncancelling: running steps are stopped; `if: always()` steps still run"
                );
                cancel.cancel();
            }
        });
    }
    let printer: Arc<dyn RunObserver> = Arc::new(Printer {
        color: std::io::stdout().is_terminal(),
        started: Default::default(),
    });
    let parallel = args
        .parallel
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZero::get));
    let mut all = Report {
        result: Status::Success,
        jobs: Vec::new(),
    };
    let several = triggered.len() > 1;
    match &args.git_ref {
        None => outln!(
            "workflows and checked-out files from the working tree of {} (uncommitted changes included; --ref REV runs a commit)",
            repo.display()
        ),
        Some(rev) => outln!("workflows and checked-out files from commit {sha} ({rev})"),
    }
    for b in triggered {
        let spec = RunSpec {
            event_name: args.event.clone(),
            event: event.clone(),
            sha: sha.clone(),
            git_ref: git_ref.clone(),
            repository: repository.clone(),
            actor: std::env::var("USER").unwrap_or_else(|_| "shipway".into()),
            run_id,
            inputs: inputs.clone(),
            run_number: 1,
            run_attempt: 1,
            secrets: secrets.clone(),
            vars: vars.clone(),
            only_job: args.job.clone(),
            reuse: Default::default(),
        };
        let run_dir = data
            .join("runs")
            .join(run_id.to_string())
            .join(b.path.replace('/', "_"));
        let exec = Executor::new(repo.clone(), run_dir, data.join("cache"))
            .parallel(parallel)
            .allow_unsupported_actions(args.allow_unsupported_actions)
            .source(source)
            .base_env(std::env::vars().collect())
            .observer(printer.clone())
            .cancel(cancel.clone());
        let report = run_workflow(b, spec, exec).await;
        for mut j in report.jobs {
            if several {
                j.id = format!("{}:{}", b.path, j.id);
            }
            all.jobs.push(j);
        }
        all.result = match (all.result, report.result) {
            (Status::Failure, _) | (_, Status::Failure) => Status::Failure,
            (Status::Cancelled, _) | (_, Status::Cancelled) => Status::Cancelled,
            _ => Status::Success,
        };
        if cancel.is_cancelled() {
            break;
        }
    }
    print_summary(&all);
    // Workspaces, artifacts and step summaries stay there for inspection.
    outln!(
        "run directory: {}",
        data.join("runs").join(run_id.to_string()).display()
    );
    if let Some(path) = &args.report_json {
        let text = serde_json::to_string_pretty(&all.to_json()).unwrap_or_default();
        std::fs::write(path, text + "\n")
            .map_err(|e| Failure::Failed(format!("--report-json {}: {e}", path.display())))?;
    }
    match all.result {
        Status::Success | Status::Skipped => Ok(()),
        Status::Failure => Err(Failure::Failed("a job failed".into())),
        Status::Cancelled => Err(Failure::Failed("the run was cancelled".into())),
    }
}

fn print_plan(b: &Bundle, args: &RunArgs) -> Result<(), Failure> {
    let Some(w) = &b.workflow else { return Ok(()) };
    let jobs = plan(w).map_err(|e| Failure::Usage(format!("{}: {e}", b.path)))?;
    let keep: Option<HashSet<String>> = args.job.as_ref().map(|j| {
        let mut keep = HashSet::new();
        let mut stack = vec![j.clone()];
        while let Some(id) = stack.pop() {
            if keep.insert(id.clone())
                && let Some(job) = w.jobs.get(&id)
            {
                stack.extend(job.needs.iter().map(|(n, _)| n.clone()));
            }
        }
        keep
    });
    let jobs: Vec<_> = jobs
        .into_iter()
        .filter(|j| keep.as_ref().is_none_or(|k| k.contains(&j.id)))
        .collect();
    if args.graph {
        outln!("{}:", b.path);
        // Levels: a job's level is one more than its deepest need.
        let mut level: IndexMap<String, usize> = IndexMap::new();
        for j in &jobs {
            let l = j
                .needs
                .iter()
                .filter_map(|n| level.get(n))
                .max()
                .map_or(0, |m| m + 1);
            level.insert(j.id.clone(), l);
        }
        for j in &jobs {
            let indent = "  ".repeat(level[&j.id] + 1);
            if j.needs.is_empty() {
                outln!("{indent}{}", j.id);
            } else {
                outln!("{indent}{} <- {}", j.id, j.needs.join(", "));
            }
        }
        return Ok(());
    }
    let rows: Vec<[String; 5]> = jobs
        .iter()
        .map(|j| {
            let instances = match &j.matrix {
                MatrixPlan::None => "1".to_string(),
                MatrixPlan::Static(c) => c.len().to_string(),
                MatrixPlan::Dynamic => "at run time".to_string(),
            };
            let steps = match &j.calls {
                Some(c) => format!("calls ./{c}"),
                None if j.unsupported_steps > 0 => {
                    format!("{} ({} skipped)", j.steps, j.unsupported_steps)
                }
                None => j.steps.to_string(),
            };
            // Long needs lists (a final "all checks passed" job) are cut to keep the table readable.
            let needs = match j.needs.len() {
                0 => "-".to_string(),
                1..=3 => j.needs.join(","),
                n => format!("{} +{}", j.needs[..3].join(","), n - 3),
            };
            [b.path.clone(), j.id.clone(), needs, instances, steps]
        })
        .collect();
    let header = ["WORKFLOW", "JOB", "NEEDS", "INSTANCES", "STEPS"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    for r in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        outln!("{}", line.join("   ").trim_end());
    }
    if args.dry_run {
        outln!("dry run: {} jobs planned, nothing run", jobs.len());
    }
    Ok(())
}

fn print_summary(report: &Report) {
    let width = report
        .jobs
        .iter()
        .map(|j| j.name.len())
        .max()
        .unwrap_or(3)
        .max(3);
    outln!();
    outln!("{:<width$}   RESULT", "JOB");
    for j in &report.jobs {
        let failed_step = j
            .steps
            .iter()
            .find(|s| s.conclusion == Status::Failure)
            .map(|s| format!("   (step: {})", s.name))
            .unwrap_or_default();
        outln!("{:<width$}   {}{failed_step}", j.name, j.result.as_str());
    }
    outln!("run {}", report.result.as_str());
}
