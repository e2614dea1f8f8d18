//! Loading a workflow from a repository together with what it refers to: local actions
//! (`uses: ./path`) and local reusable workflows (`uses: ./.github/workflows/x.yml`), checking
//! the calls against what they declare. Every file is read through a [`FileSystem`], so a run
//! can load its workflow from a git tree as well as from disk.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

pub use shipway_fs::{DiskFs, FileSystem, MemFs};
use shipway_fs::{is_file, read_to_string};

use crate::parse::{parse_action, parse_workflow};
use crate::problem::{Problem, Severity};
use crate::workflow::{Action, ActionMeta, CallSecrets, Pos, Step, Uses, Workflow};

/// How deep reusable workflows and composite actions may nest (GitHub allows ten levels).
const MAX_NESTING: usize = 10;

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Turn unsupported `uses:` into warnings and skip those steps, instead of refusing.
    pub allow_unsupported_actions: bool,
}

/// A workflow and everything local it refers to, read from one repository.
#[derive(Clone, Debug, Default)]
pub struct Bundle {
    pub root: PathBuf,
    /// The workflow's path relative to `root`.
    pub path: String,
    pub workflow: Option<Workflow>,
    /// Local actions by their path relative to `root` (without `./`).
    pub actions: HashMap<String, ActionMeta>,
    /// Local reusable workflows by their path relative to `root`.
    pub called: HashMap<String, Workflow>,
    /// Local actions that were read but cannot run (node or docker actions, invalid files):
    /// read once, reported once.
    pub unrunnable_actions: std::collections::HashSet<String>,
    pub problems: Vec<Problem>,
}

impl Bundle {
    /// The problems that stop a run: errors, and unsupported features unless allowed.
    pub fn blocking(&self, options: Options) -> Vec<&Problem> {
        self.problems
            .iter()
            .filter(|p| match p.severity {
                Severity::Error => true,
                Severity::Unsupported => !options.allow_unsupported_actions || !p.is_action(),
                Severity::Warning => false,
            })
            .collect()
    }
}

impl Problem {
    /// Whether the problem is about an unsupported action (which can be skipped) rather than
    /// another unsupported feature (containers, services), which cannot.
    pub fn is_action(&self) -> bool {
        self.message.contains(".uses: ") || self.message.contains("runs.using")
    }
}

/// Whether a relative path stays inside the repository.
fn safe_relative(path: &str) -> bool {
    Path::new(path)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Loads the workflow at `rel` (relative to `root`) from disk and, recursively, its local
/// actions and reusable workflows. Never fails: everything wrong is in `problems`.
pub fn load(root: &Path, rel: &str) -> Bundle {
    load_from(&DiskFs, root, rel)
}

/// [`load`] through `fs`: `root` is an absolute path in it.
pub fn load_from(fs: &dyn FileSystem, root: &Path, rel: &str) -> Bundle {
    let mut b = Bundle {
        root: root.to_path_buf(),
        path: rel.to_string(),
        ..Bundle::default()
    };
    match read_to_string(fs, &root.join(rel)) {
        Ok(text) => {
            let (w, problems) = parse_workflow(rel, &text);
            b.problems.extend(problems);
            if let Some(w) = &w {
                resolve_workflow(fs, &mut b, w, 0);
            }
            b.workflow = w;
        }
        Err(e) => b.problems.push(Problem::new(
            rel,
            Pos { line: 1, column: 1 },
            Severity::Error,
            format!("cannot read the workflow: {e}"),
        )),
    }
    crate::problem::sort(&mut b.problems);
    b
}

fn resolve_workflow(fs: &dyn FileSystem, b: &mut Bundle, w: &Workflow, depth: usize) {
    for job in w.jobs.values() {
        resolve_steps(
            fs,
            b,
            &w.file,
            &job.steps,
            &format!("jobs.{}", job.id),
            depth,
        );
        let Some(call) = &job.uses else { continue };
        let at = |message: String| Problem::new(&w.file, call.pos, Severity::Error, message);
        if depth >= MAX_NESTING {
            b.problems.push(at(format!(
                "jobs.{}.uses: reusable workflows nest more than {MAX_NESTING} levels",
                job.id
            )));
            continue;
        }
        if !safe_relative(&call.path) {
            b.problems.push(at(format!(
                "jobs.{}.uses: './{}' leaves the repository",
                job.id, call.path
            )));
            continue;
        }
        if !b.called.contains_key(&call.path) {
            let text = match read_to_string(fs, &b.root.join(&call.path)) {
                Ok(t) => t,
                Err(_) => {
                    b.problems.push(
                        at(format!(
                            "jobs.{}.uses: reusable workflow './{}' not found in the repository",
                            job.id, call.path
                        ))
                        .about_missing(&call.path),
                    );
                    continue;
                }
            };
            let (called, problems) = parse_workflow(&call.path, &text);
            b.problems.extend(problems);
            let Some(called) = called else { continue };
            b.called.insert(call.path.clone(), called.clone());
            resolve_workflow(fs, b, &called, depth + 1);
        }
        let Some(called) = b.called.get(&call.path) else {
            continue;
        };
        let Some(event) = called.on.events.get("workflow_call") else {
            b.problems.push(at(format!(
                "jobs.{}.uses: './{}' is not a reusable workflow: it has no `on: workflow_call`",
                job.id, call.path
            )));
            continue;
        };
        let mut found = Vec::new();
        for key in call.with.keys() {
            if !event.inputs.contains_key(key) {
                found.push(at(format!(
                    "jobs.{}.with.{key}: './{}' declares no input '{key}'; it has: {}",
                    job.id,
                    call.path,
                    event.inputs.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        for (name, input) in &event.inputs {
            if input.required && input.default.is_none() && !call.with.contains_key(name) {
                found.push(at(format!(
                    "jobs.{}.with: './{}' requires input '{name}'",
                    job.id, call.path
                )));
            }
        }
        if let CallSecrets::Map(secrets) = &call.secrets {
            for key in secrets.keys() {
                if !event.secrets.contains_key(key) {
                    found.push(at(format!(
                        "jobs.{}.secrets.{key}: './{}' declares no secret '{key}'",
                        job.id, call.path
                    )));
                }
            }
        }
        b.problems.extend(found);
    }
}

fn resolve_steps(
    fs: &dyn FileSystem,
    b: &mut Bundle,
    file: &str,
    steps: &[Step],
    path: &str,
    depth: usize,
) {
    for step in steps {
        let Action::Uses(Uses::Local(local)) = &step.action else {
            continue;
        };
        let at = |message: String| Problem::new(file, step.pos, Severity::Error, message);
        let uses_path = format!("{path}.steps[{}].uses", step.index);
        if !safe_relative(local) {
            b.problems.push(at(format!(
                "{uses_path}: './{local}' leaves the repository"
            )));
            continue;
        }
        if b.actions.contains_key(local) || b.unrunnable_actions.contains(local) {
            continue;
        }
        if depth >= MAX_NESTING {
            b.problems.push(at(format!(
                "{uses_path}: local actions nest more than {MAX_NESTING} levels"
            )));
            continue;
        }
        let dir = b.root.join(local);
        let found = ["action.yml", "action.yaml"]
            .iter()
            .map(|n| (join_rel(local, n), dir.join(n)))
            .find(|(_, p)| is_file(fs, p));
        // A missing action is not an error here: an earlier step may write it, a skipped step
        // never needs it, and GitHub fails the step that runs it (`read_action`).
        let Some((rel, file_path)) = found else {
            continue;
        };
        let text = match read_to_string(fs, &file_path) {
            Ok(t) => t,
            Err(e) => {
                b.problems
                    .push(at(format!("{uses_path}: cannot read {rel}: {e}")));
                continue;
            }
        };
        let (action, problems) = parse_action(&rel, &text);
        b.problems.extend(problems);
        match action {
            Some(action) => {
                let steps = action.steps.clone();
                b.actions.insert(local.clone(), action);
                resolve_steps(fs, b, &rel, &steps, "runs", depth + 1);
            }
            None => {
                b.unrunnable_actions.insert(local.clone());
            }
        }
    }
}

/// Why a local action cannot run when its step starts.
#[derive(Clone, Debug, PartialEq)]
pub enum ActionError {
    /// Nothing there: GitHub's message, naming the directory.
    Missing(String),
    /// The path leaves the workspace.
    Outside(String),
    /// The file is refused: errors with their positions.
    Invalid(Vec<Problem>),
    /// A kind of action Shipway does not run (node, docker): the problems saying so.
    Unsupported(Vec<Problem>),
}

/// Reads the local action `./local` from `workspace` as GitHub does when the step runs: from the
/// workspace as the job's earlier steps left it, `action.yml`, then `action.yaml`, then a
/// `Dockerfile` (unsupported).
pub fn read_action(
    fs: &dyn FileSystem,
    workspace: &Path,
    local: &str,
) -> Result<ActionMeta, ActionError> {
    if !safe_relative(local) {
        return Err(ActionError::Outside(format!(
            "'./{local}' leaves the repository; a local action's path must stay inside it"
        )));
    }
    let dir = workspace.join(local);
    let at = |message: String| {
        Problem::new(
            &format!("{local}/Dockerfile"),
            Pos { line: 1, column: 1 },
            Severity::Unsupported,
            message,
        )
    };
    let found = ["action.yml", "action.yaml"]
        .iter()
        .map(|n| (join_rel(local, n), dir.join(n)))
        .find(|(_, p)| is_file(fs, p));
    let Some((rel, file_path)) = found else {
        if is_file(fs, &dir.join("Dockerfile")) {
            return Err(ActionError::Unsupported(vec![at(format!(
                "runs.using: './{local}' is a Docker action (a Dockerfile); Shipway runs composite actions only"
            ))]));
        }
        return Err(ActionError::Missing(format!(
            "Can't find 'action.yml', 'action.yaml' or 'Dockerfile' under '{}'. Did you forget to run actions/checkout before running your local action?",
            dir.display()
        )));
    };
    let text = read_to_string(fs, &file_path).map_err(|e| {
        ActionError::Invalid(vec![Problem::new(
            &rel,
            Pos { line: 1, column: 1 },
            Severity::Error,
            format!("cannot read the action: {e}"),
        )])
    })?;
    let (action, problems) = parse_action(&rel, &text);
    let errors: Vec<Problem> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .cloned()
        .collect();
    if !errors.is_empty() {
        return Err(ActionError::Invalid(errors));
    }
    let unsupported: Vec<Problem> = problems
        .into_iter()
        .filter(|p| p.severity == Severity::Unsupported)
        .collect();
    match action {
        Some(a) if unsupported.is_empty() => Ok(a),
        _ => Err(ActionError::Unsupported(unsupported)),
    }
}

/// `local/name`, or `name` for the repository root (`./`).
fn join_rel(local: &str, name: &str) -> String {
    let local = local.trim_end_matches('/');
    if local.is_empty() || local == "." {
        name.to_string()
    } else {
        format!("{local}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_reusable_workflow_is_an_error_that_names_the_file() {
        let mut fs = MemFs::new();
        fs.insert(
            "repo/.github/workflows/ci.yml",
            "on: push\njobs:\n  call:\n    uses: ./.github/workflows/gone.yml\n",
        );
        let b = load_from(&fs, Path::new("/repo"), ".github/workflows/ci.yml");
        assert_eq!(b.problems.len(), 1, "{:?}", b.problems);
        let p = &b.problems[0];
        assert_eq!(
            p.to_string(),
            ".github/workflows/ci.yml:4:11: jobs.call.uses: reusable workflow './.github/workflows/gone.yml' not found in the repository"
        );
        assert_eq!(
            p.missing_file.as_deref(),
            Some(".github/workflows/gone.yml")
        );
    }

    #[test]
    fn read_action_finds_yaml_refuses_escapes_and_says_what_github_says() {
        let mut fs = MemFs::new();
        fs.insert(
            "ws/a/action.yaml",
            "runs:\n  using: composite\n  steps:\n    - run: echo hi\n      shell: bash\n",
        );
        fs.insert("ws/d/Dockerfile", "FROM scratch\n");
        fs.insert("ws/bad/action.yml", "runs: [\n");
        let ws = Path::new("/ws");
        assert_eq!(
            read_action(&fs, ws, "a").map(|a| a.file),
            Ok("a/action.yaml".to_string())
        );
        assert_eq!(
            read_action(&fs, ws, "gone"),
            Err(ActionError::Missing(
                "Can't find 'action.yml', 'action.yaml' or 'Dockerfile' under '/ws/gone'. Did you \
                 forget to run actions/checkout before running your local action?"
                    .to_string()
            ))
        );
        assert!(matches!(
            read_action(&fs, ws, "../etc"),
            Err(ActionError::Outside(m)) if m.contains("leaves the repository")
        ));
        assert!(matches!(
            read_action(&fs, ws, "d"),
            Err(ActionError::Unsupported(_))
        ));
        match read_action(&fs, ws, "bad") {
            Err(ActionError::Invalid(problems)) => {
                assert!(
                    problems[0].to_string().starts_with("bad/action.yml:"),
                    "{problems:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
