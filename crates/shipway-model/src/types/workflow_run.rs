//! `WorkflowRun` (shipway.dev/v1alpha1): one run of one workflow file at one commit, as GitHub's
//! workflow run: the event that started it, the commit, the actor, and per job and step the
//! status, conclusion and times. Written by the triggers (`spec`) and by the run scheduler
//! (`status`); the run's log lines live beside it in the store, not in the object.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const GROUP: &str = "shipway.dev";
pub const KIND: &str = "WorkflowRun";
/// Labels a trigger puts on every run, so a list can select by repository or workflow.
pub const REPOSITORY_LABEL: &str = "shipway.dev/repository";
pub const WORKFLOW_LABEL: &str = "shipway.dev/workflow";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRunSpec {
    /// The Repository (same namespace) the workflow file and the checkout come from.
    pub repository: String,
    /// The workflow file, relative to the repository (`.github/workflows/ci.yml`).
    pub workflow: String,
    /// GitHub's event name: `push`, `pull_request`, `schedule`, `workflow_dispatch`.
    pub event: String,
    /// `refs/heads/main`, `refs/tags/v1`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The commit the run checks out and reads the workflow from.
    pub head_sha: String,
    /// The previous tip of the ref for a push (GitHub's `before`), all zeros for a new ref.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// The identity that caused the run (who pushed, who dispatched).
    pub actor: String,
    /// GitHub's `run_number`: 1, 2, ... per workflow of a repository.
    pub run_number: u64,
    /// `run_attempt`: 1, then one more per re-run.
    #[serde(default = "one")]
    pub run_attempt: u64,
    /// workflow_dispatch inputs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
    /// With a higher `runAttempt`: re-run only the jobs that did not succeed and those that
    /// depend on them; the others keep their results and outputs (`rerun --failed`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rerun_failed: bool,
    /// Set to cancel the run (`shipway pipeline cancel`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,
    /// Approvals and rejections of the run's jobs waiting on an environment, in the order
    /// given. Only the review route appends here, as the caller; the API refuses any other
    /// change, so a review always names who gave it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviews: Vec<Review>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// `approved` or `rejected`, GitHub's review states for a pending deployment.
pub const APPROVED: &str = "approved";
pub const REJECTED: &str = "rejected";

/// One reviewer's decision on the jobs of one attempt waiting on one environment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    pub environment: String,
    /// `approved` or `rejected`.
    pub state: String,
    /// Who reviewed, and their role then.
    pub user: String,
    pub role: String,
    /// The attempt reviewed: a re-run waits for new reviews.
    pub attempt: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// RFC 3339.
    pub submitted_at: String,
}

fn one() -> u64 {
    1
}

/// GitHub's run and job `status`: `queued`, `waiting`, `in_progress`, `completed`.
pub const QUEUED: &str = "queued";
pub const WAITING: &str = "waiting";
pub const IN_PROGRESS: &str = "in_progress";
pub const COMPLETED: &str = "completed";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRunStatus {
    /// `queued`, `waiting`, `in_progress` or `completed`; absent until the scheduler saw the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Once completed: `success`, `failure`, `cancelled`, `skipped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    /// The workflow's `name:` (the file name when it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// The attempt this status is of (`spec.runAttempt` when it started); a higher
    /// `spec.runAttempt` asks for a re-run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u64>,
    /// The server instance executing the run (a random id per start of `shipway up`): a run
    /// in progress under another instance's id was cut short by a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// Why the run is queued, failed before its jobs ran, or was cut short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<JobStatus>,
    /// Images the run's `shipway/image` steps published, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<PublishedImage>,
    /// Commits the run's `shipway/promote` steps pushed, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotions: Vec<Promotion>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// An image a run published into the image store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedImage {
    /// The job instance whose step published it.
    pub job: String,
    pub name: String,
    pub tag: String,
    /// `sha256:...` of the image manifest.
    pub digest: String,
}

/// A promotion a run pushed: the commit setting `image` in the kustomization under `path`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    pub job: String,
    /// The repository promoted into: a hosted repository's name, or its URL.
    pub repository: String,
    pub path: String,
    pub branch: String,
    pub commit: String,
    /// What was set, as `kustomize edit set image` takes it (`app=app@sha256:...`).
    pub image: String,
}

/// One job instance (a matrix combination is its own instance).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// The display name logs prefix lines with (`build (linux)`).
    pub name: String,
    /// The job's key in the workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    /// What a waiting job waits for (an approval, a concurrency group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The environment the job deploys to (`environment:`), once it asked to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepStatus>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// 1, 2, ... in the order the steps started.
    pub number: u32,
    pub name: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl WorkflowRunStatus {
    pub fn is_completed(&self) -> bool {
        self.status.as_deref() == Some(COMPLETED)
    }

    /// The attempt the status is of: 1 for a status written before attempts were recorded.
    pub fn attempt(&self) -> u64 {
        self.attempt.unwrap_or(1)
    }
}
