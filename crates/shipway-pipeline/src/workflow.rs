//! The validated workflow: what a `.github/workflows/*.yml` file means, with positions kept for
//! messages. Built by `parse`; the raw YAML never leaves that module.

use indexmap::IndexMap;
use serde_json::Value as Json;
use shipway_expr::{Condition, Template};

/// A 1-based position in the workflow file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A string field that may contain `${{ }}`, and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Str {
    pub raw: String,
    pub template: Template,
    pub pos: Pos,
}

impl Str {
    pub fn literal(raw: &str) -> Str {
        Str {
            raw: raw.to_string(),
            template: Template::literal(raw),
            pos: Pos::default(),
        }
    }
}

/// A field that is either a literal YAML value or an expression evaluated at run time
/// (`timeout-minutes: ${{ inputs.t }}`, `strategy.matrix: ${{ fromJSON(...) }}`).
#[derive(Clone, Debug, PartialEq)]
pub enum Dyn {
    Value(Json),
    Expr(Str),
}

impl Dyn {
    /// The value of an optional field: `default` when absent or when its expression fails.
    pub fn value_or(d: Option<&Dyn>, host: &dyn shipway_expr::Host, default: Json) -> Json {
        match d {
            None => default,
            Some(Dyn::Value(v)) => v.clone(),
            Some(Dyn::Expr(s)) => s
                .template
                .eval(host)
                .map(|v| v.to_json())
                .unwrap_or(default),
        }
    }
}

/// An `if:` condition and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct If {
    pub raw: String,
    pub condition: Condition,
    pub pos: Pos,
}

/// Ordered `name: value` pairs (env, with, outputs); order matters for display and for env files.
pub type Pairs = IndexMap<String, Str>;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Workflow {
    pub file: String,
    pub name: Option<String>,
    pub run_name: Option<Str>,
    pub on: Triggers,
    pub env: Pairs,
    pub defaults: RunDefaults,
    pub concurrency: Option<Concurrency>,
    pub jobs: IndexMap<String, Job>,
}

/// The events that start a workflow, with their filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Triggers {
    pub events: IndexMap<String, Event>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub branches: Option<Vec<String>>,
    pub branches_ignore: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub tags_ignore: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub paths_ignore: Option<Vec<String>>,
    pub types: Vec<String>,
    /// `workflow_dispatch` and `workflow_call` inputs.
    pub inputs: IndexMap<String, Input>,
    /// `workflow_call` outputs.
    pub outputs: IndexMap<String, Str>,
    /// `workflow_call` secrets: name and whether it is required.
    pub secrets: IndexMap<String, bool>,
    /// `schedule` cron lines.
    pub crons: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// Where its name is written.
    pub pos: Pos,
    pub description: Option<String>,
    pub required: bool,
    pub default: Option<Json>,
    pub kind: InputKind,
    pub options: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    String,
    Boolean,
    Number,
    Choice,
    Environment,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunDefaults {
    pub shell: Option<Str>,
    pub working_directory: Option<Str>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Concurrency {
    pub group: Str,
    pub cancel_in_progress: Option<Dyn>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: String,
    pub pos: Pos,
    pub name: Option<Str>,
    pub needs: Vec<(String, Pos)>,
    pub condition: Option<If>,
    pub runs_on: Option<Json>,
    pub environment: Option<Str>,
    pub concurrency: Option<Concurrency>,
    pub outputs: Pairs,
    pub env: Pairs,
    pub defaults: RunDefaults,
    pub timeout_minutes: Option<Dyn>,
    pub continue_on_error: Option<Dyn>,
    pub strategy: Option<Strategy>,
    pub steps: Vec<Step>,
    /// A job that calls a reusable workflow instead of running steps.
    pub uses: Option<ReusableCall>,
    /// `container:` or `services:` was given (validation reports them: they need a container
    /// engine).
    pub container: bool,
    pub services: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReusableCall {
    /// The path of the called workflow, relative to the repository root.
    pub path: String,
    pub pos: Pos,
    pub with: IndexMap<String, Dyn>,
    pub secrets: CallSecrets,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum CallSecrets {
    #[default]
    None,
    Inherit,
    Map(Pairs),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Strategy {
    /// The matrix as written (a mapping, or a string holding an expression), evaluated and
    /// expanded by `matrix::expand` when the job is planned.
    pub matrix: Option<Json>,
    pub matrix_pos: Pos,
    pub fail_fast: Option<Dyn>,
    pub max_parallel: Option<Dyn>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub index: usize,
    pub pos: Pos,
    pub id: Option<String>,
    pub name: Option<Str>,
    pub condition: Option<If>,
    pub action: Action,
    pub shell: Option<Str>,
    pub working_directory: Option<Str>,
    pub env: Pairs,
    pub with: Pairs,
    pub continue_on_error: Option<Dyn>,
    pub timeout_minutes: Option<Dyn>,
}

/// What a step does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Run(Str),
    Uses(Uses),
}

/// The target of a step's `uses:`.
#[derive(Clone, Debug, PartialEq)]
pub enum Uses {
    Checkout,
    Cache,
    CacheRestore,
    CacheSave,
    UploadArtifact,
    DownloadArtifact,
    /// `uses: shipway/NAME@REF`: an action of the platform running the workflow (`image`,
    /// `promote`), the name without its `shipway/` prefix.
    Platform(String),
    /// `uses: ./path`: a local action, resolved against the repository.
    Local(String),
    /// Anything else (marketplace actions, `docker://`): reported by validation, skipped with a
    /// warning when unsupported actions are allowed.
    Unsupported(String),
}

/// A local action's metadata (`action.yml`).
#[derive(Clone, Debug, PartialEq)]
pub struct ActionMeta {
    pub file: String,
    pub name: Option<String>,
    /// Input name, its default (if any), and whether it is required.
    pub inputs: IndexMap<String, (Option<String>, bool)>,
    pub outputs: Pairs,
    /// The steps of a composite action.
    pub steps: Vec<Step>,
}
