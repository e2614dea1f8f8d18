//! Which contexts and functions each workflow key may use, from GitHub's "context availability"
//! table: an expression naming anything else is an error where it is written.

use shipway_expr::Scope;

const fn scope(contexts: &'static [&'static str], status: bool, hash: bool) -> Scope<'static> {
    Scope {
        contexts,
        status_functions: status,
        hash_files: hash,
    }
}

pub const RUN_NAME: Scope = scope(&["github", "inputs", "vars"], false, false);
pub const WORKFLOW_CONCURRENCY: Scope = scope(&["github", "inputs", "vars"], false, false);
pub const WORKFLOW_ENV: Scope = scope(&["github", "secrets", "inputs", "vars"], false, false);
/// Workflow-level `defaults.run` takes no expressions at all.
pub const WORKFLOW_DEFAULTS: Scope = scope(&[], false, false);
pub const INPUT_DEFAULT: Scope = scope(&["github", "inputs", "vars"], false, false);
pub const CALL_OUTPUT: Scope = scope(&["github", "jobs", "vars", "inputs"], false, false);
pub const JOB_IF: Scope = scope(&["github", "needs", "vars", "inputs"], true, false);
pub const STRATEGY: Scope = scope(&["github", "needs", "vars", "inputs"], false, false);
pub const JOB_NAME: Scope = scope(
    &["github", "needs", "strategy", "matrix", "vars", "inputs"],
    false,
    false,
);
pub const JOB_RUNS_ON: Scope = JOB_NAME;
pub const JOB_CONCURRENCY: Scope = JOB_NAME;
pub const JOB_ENVIRONMENT: Scope = JOB_NAME;
pub const JOB_TIMEOUT: Scope = JOB_NAME;
pub const JOB_WITH: Scope = JOB_NAME;
pub const JOB_ENVIRONMENT_URL: Scope = scope(
    &[
        "github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "steps", "inputs",
    ],
    false,
    false,
);
pub const JOB_SECRETS: Scope = scope(
    &[
        "github", "needs", "strategy", "matrix", "secrets", "inputs", "vars",
    ],
    false,
    false,
);
pub const JOB_ENV: Scope = JOB_SECRETS;
pub const JOB_DEFAULTS: Scope = scope(
    &[
        "github", "needs", "strategy", "matrix", "env", "vars", "inputs",
    ],
    false,
    false,
);
pub const JOB_OUTPUTS: Scope = scope(
    &[
        "github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets",
        "steps", "inputs",
    ],
    false,
    false,
);
/// Step fields (`run`, `with`, `env`, `name`, ...): everything, and `hashFiles`.
pub const STEP: Scope = scope(
    &[
        "github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets",
        "steps", "inputs",
    ],
    false,
    true,
);
/// A step's `if:` has no `secrets`, but has the status functions.
pub const STEP_IF: Scope = scope(
    &[
        "github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "steps", "inputs",
    ],
    true,
    true,
);

/// `action.yml` input defaults.
pub const ACTION_INPUT_DEFAULT: Scope = scope(
    &[
        "github", "inputs", "vars", "env", "runner", "job", "strategy", "matrix", "steps",
    ],
    false,
    false,
);
/// Composite action steps and outputs: no `secrets` (they come in through inputs).
pub const ACTION: Scope = scope(
    &[
        "github", "inputs", "steps", "runner", "env", "job", "strategy", "matrix", "vars", "needs",
    ],
    false,
    true,
);
