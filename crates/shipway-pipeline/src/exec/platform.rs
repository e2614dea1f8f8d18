//! Actions the platform running the executor provides (`uses: shipway/NAME@REF`): publishing a
//! directory as an image, promoting an image into an overlay. The executor knows their names
//! only; what they do (an image store, a git push) belongs to whoever embeds it, so a server and
//! a local `shipway run` each give their own.

use std::path::PathBuf;

use indexmap::IndexMap;

/// The platform actions this executor can run: `image`, `promote`.
pub const ACTIONS: [&str; 2] = ["image", "promote"];

/// One step's call of a platform action.
#[derive(Clone, Debug)]
pub struct PlatformCall {
    /// `image` or `promote` (the `NAME` of `shipway/NAME@REF`).
    pub action: String,
    /// The step's `with:` inputs, evaluated.
    pub with: IndexMap<String, String>,
    /// The job's workspace (`GITHUB_WORKSPACE`): relative paths of `with:` resolve in it.
    pub workspace: PathBuf,
    /// The job instance, as [`super::RunEvent`]s name it.
    pub job: String,
    /// The step's environment (the workflow's, job's and step's `env:`).
    pub env: IndexMap<String, String>,
}

/// What a platform action did: its outputs (`steps.ID.outputs.*`), the lines it logs, and what
/// the run should record of it.
#[derive(Clone, Debug, Default)]
pub struct PlatformOutcome {
    pub outputs: IndexMap<String, String>,
    pub lines: Vec<String>,
    pub record: Option<PlatformRecord>,
}

/// What a run keeps of a platform action.
#[derive(Clone, Debug, PartialEq)]
pub enum PlatformRecord {
    /// An image published into the image store.
    Image {
        name: String,
        tag: String,
        digest: String,
    },
    /// A commit setting `image` in the kustomization at `path` of `repo`, pushed to `branch`.
    Promotion {
        repo: String,
        path: String,
        branch: String,
        commit: String,
        image: String,
    },
}

/// Runs platform actions. Called from a blocking thread: implementations may block (file
/// copies, `git`); an `Err` fails the step with that message.
pub trait PlatformActions: Send + Sync {
    fn run(&self, call: PlatformCall) -> Result<PlatformOutcome, String>;
}
