//! Triggers: a push to a hosted repository reads the workflow files at the pushed commit and
//! makes a `WorkflowRun` for each workflow whose `on:` matches the push (branches, tags, paths
//! and their `-ignore` forms), as GitHub does. A workflow file that does not load makes a run
//! that failed with its problems, so a broken file is seen, not silently skipped.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};
use shipway_fs::FileSystem;
use shipway_git::hosted::{Hosted, Push};
use shipway_git::{Repo, ZERO_SHA};
use shipway_model::types::workflow_run::{
    COMPLETED, GROUP, KIND, REPOSITORY_LABEL, WORKFLOW_LABEL, WorkflowRunSpec, WorkflowRunStatus,
};
use shipway_model::{Object, ObjectMeta};
use shipway_pipeline::load::{Options, load_from};
use shipway_pipeline::trigger::{EventFacts, matches};
use shipway_store::{ListQuery, Store, StoreError};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::{ACTOR, CiError};

/// Where workflow files live, as GitHub reads them (and Shipway's own directory).
pub const WORKFLOW_DIRS: [&str; 2] = [".github/workflows", ".shipway/workflows"];

/// The annotation of a hosted Repository naming, per ref, the commit whose push the triggers
/// last handled (JSON, `{"refs/heads/main": "<sha>"}`): what [`catch_up`] compares the
/// repository with, so a push whose runs a stop or a crash kept from being made is handled
/// after the restart.
pub const TRIGGERED_ANNOTATION: &str = "shipway.dev/triggered-refs";

/// Hears every push of `hosted` until `shutdown` and makes the runs it triggers; first, and
/// whenever it fell behind, it catches up with the pushes it did not hear.
pub async fn run(store: Store, hosted: Arc<Hosted>, shutdown: CancellationToken) {
    // Listening before catching up: a push in between is heard, and made once (see catch_up).
    let mut pushes = hosted.pushes();
    if let Err(e) = catch_up(&store, &hosted).await {
        tracing::warn!(error = %e, "catching up with pushes made while the triggers were not running");
    }
    loop {
        let push = tokio::select! {
            () = shutdown.cancelled() => return,
            p = pushes.recv() => p,
        };
        match push {
            Ok(push) => {
                if let Err(e) = handle(&store, &hosted, &push, false).await {
                    tracing::warn!(repository = %push.repository, git_ref = %push.git_ref, error = %e, "push trigger");
                }
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "push triggers fell behind by {n} pushes; catching up from the repositories"
                );
                if let Err(e) = catch_up(&store, &hosted).await {
                    tracing::warn!(error = %e, "catching up with missed pushes");
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Makes the runs of `push`, then notes it as handled. A `replayed` push (found by
/// [`catch_up`]) makes no run a workflow already has for its event, ref and commit.
async fn handle(
    store: &Store,
    hosted: &Hosted,
    push: &Push,
    replayed: bool,
) -> Result<(), CiError> {
    on_push_as(store, hosted, push, replayed).await?;
    note_handled(store, hosted, push).await
}

fn triggered_refs(repo: &Object) -> Option<std::collections::BTreeMap<String, String>> {
    let text = repo.metadata.annotations.get(TRIGGERED_ANNOTATION)?;
    serde_json::from_str(text).ok()
}

/// Writes `push` into the repository's [`TRIGGERED_ANNOTATION`] (again on a conflict).
async fn note_handled(store: &Store, hosted: &Hosted, push: &Push) -> Result<(), CiError> {
    for _ in 0..10 {
        let Some(mut repo) = hosted.owner(&push.repository).await? else {
            return Ok(());
        };
        let mut refs = triggered_refs(&repo).unwrap_or_default();
        if push.after == ZERO_SHA {
            refs.remove(&push.git_ref);
        } else {
            refs.insert(push.git_ref.clone(), push.after.clone());
        }
        let text = serde_json::to_string(&refs).unwrap_or_default();
        if repo.metadata.annotations.get(TRIGGERED_ANNOTATION) == Some(&text) {
            return Ok(());
        }
        repo.metadata
            .annotations
            .insert(TRIGGERED_ANNOTATION.into(), text);
        match store.update(repo, ACTOR).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CiError::Other(format!(
        "repository {}: cannot note the push of {} as handled: the Repository kept changing",
        push.repository, push.git_ref
    )))
}

/// Compares every hosted repository's refs with what the triggers last handled and handles
/// the difference as pushes (replayed: a workflow that already ran for a ref's commit does not
/// run again). A repository never noted is noted as it is, with no runs: its history predates
/// the triggers.
pub async fn catch_up(store: &Store, hosted: &Hosted) -> Result<usize, CiError> {
    let repos = store
        .list(&ListQuery::kind("shipway.dev", "Repository"))
        .await?;
    let mut replayed = 0;
    for repo in repos.items {
        let spec: shipway_model::types::RepositorySpec = repo.spec_as().unwrap_or_default();
        if !spec.is_hosted() || repo.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = repo.metadata.name.clone();
        let Ok(dir) = hosted.dir(&name) else { continue };
        if !dir.join("HEAD").is_file() {
            continue;
        }
        let refs: std::collections::BTreeMap<String, String> =
            tokio::task::spawn_blocking(move || Repo::open(&dir)?.refs())
                .await
                .map_err(|e| CiError::Other(format!("reading {name}'s refs: {e}")))??
                .into_iter()
                // Shipway's own test merges are not pushes.
                .filter(|(r, _)| !(r.starts_with("refs/pull/") && r.ends_with("/merge")))
                .collect();
        let name = repo.metadata.name.clone();
        let Some(handled) = triggered_refs(&repo) else {
            let mut repo = repo;
            repo.metadata.annotations.insert(
                TRIGGERED_ANNOTATION.into(),
                serde_json::to_string(&refs).unwrap_or_default(),
            );
            match store.update(repo, ACTOR).await {
                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            continue;
        };
        let mut missed: Vec<(String, String, String)> = refs
            .iter()
            .filter(|(r, sha)| handled.get(*r) != Some(*sha))
            .map(|(r, sha)| {
                let before = handled.get(r).cloned().unwrap_or_else(|| ZERO_SHA.into());
                (r.clone(), before, sha.clone())
            })
            .collect();
        missed.extend(
            handled
                .iter()
                .filter(|(r, _)| !refs.contains_key(*r))
                .map(|(r, sha)| (r.clone(), sha.clone(), ZERO_SHA.to_string())),
        );
        for (git_ref, before, after) in missed {
            let by = pusher(store, &repo, &git_ref, &after).await;
            let push = Push {
                repository: name.clone(),
                git_ref,
                before,
                after,
                by,
            };
            tracing::info!(repository = %push.repository, git_ref = %push.git_ref, "handling a push the triggers missed");
            handle(store, hosted, &push, true).await?;
            replayed += 1;
        }
    }
    Ok(replayed)
}

/// Who pushed `git_ref` to `sha`, from the repository's `Pushed` event; `unknown` when the
/// event is missing too (the server stopped between the push and its event).
async fn pusher(store: &Store, repo: &Object, git_ref: &str, sha: &str) -> String {
    let prefix = format!("{git_ref} updated to {sha} by ");
    store
        .events(&shipway_store::EventQuery::for_key(&repo.key(), 0))
        .await
        .ok()
        .and_then(|events| {
            events
                .into_iter()
                .rev()
                .find(|e| e.action == "Pushed" && e.message.starts_with(&prefix))
                .map(|e| e.actor)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The workflow files of a commit's tree, sorted, relative to the repository root.
pub fn workflow_files(tree: &dyn FileSystem) -> Vec<String> {
    let mut files = Vec::new();
    for dir in WORKFLOW_DIRS {
        let path = Path::new("/").join(dir);
        if !tree.is_dir(&path) {
            continue;
        }
        let Ok(mut names) = tree.list(&path) else {
            continue;
        };
        names.sort();
        for n in names {
            if (n.ends_with(".yml") || n.ends_with(".yaml")) && !tree.is_dir(&path.join(&n)) {
                files.push(format!("{dir}/{n}"));
            }
        }
    }
    files
}

/// The files a push changed (`None` for a new ref: path filters then pass, as nothing to
/// compare with is known).
fn changed_files(dir: &Path, before: &str, after: &str) -> Option<Vec<String>> {
    if before == ZERO_SHA {
        return None;
    }
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args(["diff", "--name-only", "-z", "--no-renames", before, after])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        out.stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
    )
}

/// One commit's facts for the push payload: `git log -1` of `sha`.
pub(crate) fn commit_facts(dir: &Path, sha: &str) -> Value {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args([
            "log",
            "-1",
            "--format=%an%x00%ae%x00%cn%x00%ce%x00%cI%x00%B",
            sha,
        ])
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => String::new(),
    };
    let mut parts = text.splitn(6, '\0');
    let mut next = || parts.next().unwrap_or_default();
    let (name, email, c_name, c_email, time) = (next(), next(), next(), next(), next());
    let message = next().trim_end();
    json!({
        "id": sha,
        "message": message,
        "timestamp": time,
        "author": {"name": name, "email": email},
        "committer": {"name": c_name, "email": c_email},
    })
}

/// What a push event's payload holds (`github.event`): GitHub's fields workflows read most.
fn push_payload(push: &Push, clone_url: &str, head: Value) -> Value {
    json!({
        "ref": push.git_ref,
        "before": push.before,
        "after": push.after,
        "created": push.before == ZERO_SHA,
        "deleted": push.after == ZERO_SHA,
        "forced": false,
        "head_commit": head,
        "pusher": {"name": push.by},
        "repository": {
            "name": push.repository,
            "full_name": push.repository,
            "clone_url": clone_url,
        },
    })
}

/// A name part from a workflow file name: `ci` for `.github/workflows/ci.yml`, DNS-safe.
pub fn workflow_stem(file: &str) -> String {
    let base = file.rsplit('/').next().unwrap_or(file);
    let stem = base
        .strip_suffix(".yml")
        .or_else(|| base.strip_suffix(".yaml"))
        .unwrap_or(base);
    let mut out: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(40);
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "workflow".into()
    } else {
        out
    }
}

/// The WorkflowRuns of `namespace`.
async fn runs_in(store: &Store, namespace: &str) -> Result<Vec<Object>, StoreError> {
    let mut query = ListQuery::kind(GROUP, KIND);
    query.namespace = Some(namespace.to_string());
    Ok(store.list(&query).await?.items)
}

/// The next `run_number` of `workflow` in `repository`: one more than the highest so far.
pub(crate) async fn next_run_number(
    store: &Store,
    namespace: &str,
    repository: &str,
    stem: &str,
) -> Result<u64, StoreError> {
    Ok(runs_in(store, namespace)
        .await?
        .iter()
        .filter(|o| {
            o.metadata.labels.get(REPOSITORY_LABEL).map(String::as_str) == Some(repository)
                && o.metadata.labels.get(WORKFLOW_LABEL).map(String::as_str) == Some(stem)
        })
        .filter_map(|o| o.spec_as::<WorkflowRunSpec>().ok())
        .map(|s| s.run_number)
        .max()
        .unwrap_or(0)
        + 1)
}

/// The finalizer of every run: its log lines and run directory go with it (the scheduler
/// removes them, then the finalizer).
pub const RUN_FINALIZER: &str = "shipway.dev/run-records";

/// Whether `workflow` has a run of `spec`'s event, ref and commit in its repository.
async fn has_run(
    store: &Store,
    namespace: &str,
    spec: &WorkflowRunSpec,
    workflow: &str,
) -> Result<bool, StoreError> {
    Ok(runs_in(store, namespace).await?.iter().any(|o| {
        o.spec_as::<WorkflowRunSpec>().is_ok_and(|s| {
            s.repository == spec.repository
                && s.workflow == workflow
                && s.event == spec.event
                && s.git_ref == spec.git_ref
                && s.head_sha == spec.head_sha
        })
    }))
}

/// A new WorkflowRun object (not yet stored).
pub fn run_object(namespace: &str, spec: &WorkflowRunSpec, payload: Value) -> Object {
    let stem = workflow_stem(&spec.workflow);
    let mut metadata = ObjectMeta {
        name: format!("{}-{stem}-{}", spec.repository, spec.run_number),
        namespace: Some(namespace.to_string()),
        finalizers: vec![RUN_FINALIZER.to_string()],
        ..ObjectMeta::default()
    };
    metadata
        .labels
        .insert(REPOSITORY_LABEL.into(), spec.repository.clone());
    metadata.labels.insert(WORKFLOW_LABEL.into(), stem);
    let mut spec_value = shipway_model::types::to_value(spec);
    spec_value["payload"] = payload;
    let mut body = serde_json::Map::new();
    body.insert("spec".into(), spec_value);
    Object {
        api_version: format!("{GROUP}/v1alpha1"),
        kind: KIND.into(),
        metadata,
        body,
    }
}

/// Makes the runs one push triggers; returns them as stored. A push of `refs/pull/N/head` is
/// a pull request against the default branch ([`on_pull_request`]); other `refs/pull/` refs
/// (the `merge` refs Shipway writes) trigger nothing.
pub async fn on_push(store: &Store, hosted: &Hosted, push: &Push) -> Result<Vec<Object>, CiError> {
    on_push_as(store, hosted, push, false).await
}

async fn on_push_as(
    store: &Store,
    hosted: &Hosted,
    push: &Push,
    replayed: bool,
) -> Result<Vec<Object>, CiError> {
    if let Some(rest) = push.git_ref.strip_prefix("refs/pull/") {
        return match rest
            .strip_suffix("/head")
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(number) => on_pull_request(store, hosted, push, number, replayed).await,
            None => Ok(Vec::new()),
        };
    }
    // GitHub runs no push workflow for a deleted ref.
    if push.after == ZERO_SHA {
        return Ok(Vec::new());
    }
    let Some(namespace) = namespace_of(hosted, &push.repository).await? else {
        return Ok(Vec::new());
    };
    let dir = hosted.dir(&push.repository)?;
    let (after, before) = (push.after.clone(), push.before.clone());
    let read_dir = dir.clone();
    // Reading trees and running git are blocking work.
    let (loaded, changed, head) = tokio::task::spawn_blocking(move || {
        let loaded = load_workflows(&read_dir, &after)?;
        let changed = changed_files(&read_dir, &before, &after);
        let head = commit_facts(&read_dir, &after);
        Ok::<_, shipway_git::Error>((loaded, changed, head))
    })
    .await
    .map_err(|e| CiError::Other(format!("reading the pushed commit: {e}")))??;

    let facts = EventFacts {
        name: "push".into(),
        git_ref: push.git_ref.clone(),
        changed_files: changed,
        action: None,
    };
    let payload = push_payload(push, &hosted.clone_url(&push.repository), head);
    let spec = WorkflowRunSpec {
        repository: push.repository.clone(),
        event: "push".into(),
        git_ref: push.git_ref.clone(),
        head_sha: push.after.clone(),
        before: Some(push.before.clone()),
        actor: push.by.clone(),
        run_attempt: 1,
        ..WorkflowRunSpec::default()
    };
    make_runs(store, &namespace, loaded, &facts, &spec, &payload, replayed).await
}

async fn namespace_of(hosted: &Hosted, repository: &str) -> Result<Option<String>, CiError> {
    Ok(hosted
        .owner(repository)
        .await?
        .map(|owner| owner.metadata.namespace.unwrap_or_else(|| "default".into())))
}

fn load_workflows(
    dir: &Path,
    sha: &str,
) -> Result<Vec<shipway_pipeline::load::Bundle>, shipway_git::Error> {
    let repo = Repo::open(dir)?;
    let tree = repo.tree(sha)?;
    Ok(workflow_files(&tree)
        .into_iter()
        .map(|f| load_from(&tree, Path::new("/"), &f))
        .collect())
}

/// A run per workflow of `loaded` that `facts` trigger (`spec` with the workflow and its run
/// number filled in), and a failed one per file that does not load; `replayed`: none for a
/// workflow that has a run of this event, ref and commit already.
async fn make_runs(
    store: &Store,
    namespace: &str,
    loaded: Vec<shipway_pipeline::load::Bundle>,
    facts: &EventFacts,
    spec: &WorkflowRunSpec,
    payload: &Value,
    replayed: bool,
) -> Result<Vec<Object>, CiError> {
    let mut made = Vec::new();
    for bundle in loaded {
        let blocking: Vec<String> = bundle
            .blocking(Options::default())
            .into_iter()
            .map(ToString::to_string)
            .collect();
        let failed_to_load = match &bundle.workflow {
            Some(w) => {
                if let Err(why) = matches(&w.on, facts) {
                    tracing::debug!(workflow = %bundle.path, %why, "not triggered");
                    continue;
                }
                (!blocking.is_empty()).then(|| blocking.join("\n"))
            }
            // A file that does not parse: GitHub shows a failed run for the push.
            None => Some(blocking.join("\n")),
        };
        let stem = workflow_stem(&bundle.path);
        if replayed && has_run(store, namespace, spec, &bundle.path).await? {
            continue;
        }
        let number = next_run_number(store, namespace, &spec.repository, &stem).await?;
        let spec = WorkflowRunSpec {
            workflow: bundle.path.clone(),
            run_number: number,
            ..spec.clone()
        };
        let mut obj = run_object(namespace, &spec, payload.clone());
        if let Some(problems) = failed_to_load {
            let status = WorkflowRunStatus {
                status: Some(COMPLETED.into()),
                conclusion: Some("failure".into()),
                name: bundle.workflow.as_ref().and_then(|w| w.name.clone()),
                message: Some(format!("Invalid workflow file: {problems}")),
                ..WorkflowRunStatus::default()
            };
            obj.set_status(&status);
        }
        let stored = store.create(obj, ACTOR).await?;
        made.push(stored);
    }
    Ok(made)
}

/// What a pull request is made of, read from the repository.
struct PullRequest {
    base: String,
    base_sha: String,
    /// A branch (other than the base) at the head commit, as GitHub's `head.ref`; else
    /// `pull/N/head`.
    head_ref: String,
    /// The test merge of head into base, written to `refs/pull/N/merge` as GitHub keeps it.
    merge_sha: String,
    changed: Option<Vec<String>>,
    head: Value,
    merge_workflows: Vec<shipway_pipeline::load::Bundle>,
    base_workflows: Vec<shipway_pipeline::load::Bundle>,
}

/// A push of `refs/pull/N/head` is pull request N from that commit into the repository's
/// default branch, as GitHub's `pull_request` (`opened` for a new ref, `synchronize` for a
/// moved one): workflows are read from the test merge commit Shipway writes to
/// `refs/pull/N/merge` and run on it; `pull_request_target` workflows are read from and run on
/// the base. A head that does not merge cleanly runs nothing, as on GitHub; deleting the ref
/// closes nothing (no `closed` runs).
pub async fn on_pull_request(
    store: &Store,
    hosted: &Hosted,
    push: &Push,
    number: u64,
    replayed: bool,
) -> Result<Vec<Object>, CiError> {
    if push.after == ZERO_SHA {
        return Ok(Vec::new());
    }
    let Some(namespace) = namespace_of(hosted, &push.repository).await? else {
        return Ok(Vec::new());
    };
    let dir = hosted.dir(&push.repository)?;
    let head_sha = push.after.clone();
    let merge_ref = format!("refs/pull/{number}/merge");
    let read_dir = dir.clone();
    let written_ref = merge_ref.clone();
    let pr = tokio::task::spawn_blocking(move || {
        pull_request(&read_dir, number, &head_sha, &written_ref)
    })
    .await
    .map_err(|e| CiError::Other(format!("reading the pull request: {e}")))??;
    let Some(pr) = pr else {
        tracing::info!(repository = %push.repository, number, "pull request does not merge cleanly into the default branch: no pull_request runs");
        return Ok(Vec::new());
    };
    hosted
        .note_ref(&push.repository, &merge_ref, &pr.merge_sha)
        .await;
    let action = if push.before == ZERO_SHA {
        "opened"
    } else {
        "synchronize"
    };
    let clone_url = hosted.clone_url(&push.repository);
    let payload = json!({
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "state": "open",
            "merged": false,
            "title": pr.head["message"].as_str().unwrap_or_default().lines().next().unwrap_or_default(),
            "user": {"login": push.by},
            "head": {"ref": pr.head_ref, "sha": push.after, "label": pr.head_ref},
            "base": {"ref": pr.base, "sha": pr.base_sha, "label": pr.base},
            "merge_commit_sha": pr.merge_sha,
        },
        "before": push.before,
        "after": push.after,
        "sender": {"login": push.by},
        "repository": {
            "name": push.repository,
            "full_name": push.repository,
            "clone_url": clone_url,
            "default_branch": pr.base,
        },
    });
    let base_ref = format!("refs/heads/{}", pr.base);
    let mut made = Vec::new();
    for (event, loaded, git_ref, sha) in [
        (
            "pull_request",
            pr.merge_workflows,
            merge_ref,
            pr.merge_sha.clone(),
        ),
        (
            "pull_request_target",
            pr.base_workflows,
            base_ref.clone(),
            pr.base_sha.clone(),
        ),
    ] {
        let facts = EventFacts {
            name: event.into(),
            git_ref: base_ref.clone(),
            changed_files: pr.changed.clone(),
            action: Some(action.into()),
        };
        let spec = WorkflowRunSpec {
            repository: push.repository.clone(),
            event: event.into(),
            git_ref,
            head_sha: sha,
            actor: push.by.clone(),
            run_attempt: 1,
            ..WorkflowRunSpec::default()
        };
        made.extend(make_runs(store, &namespace, loaded, &facts, &spec, &payload, replayed).await?);
    }
    Ok(made)
}

/// Reads pull request `number` at `head` against the default branch and writes its test merge
/// to `merge_ref`; `None` when head does not merge cleanly.
fn pull_request(
    dir: &Path,
    number: u64,
    head: &str,
    merge_ref: &str,
) -> Result<Option<PullRequest>, shipway_git::Error> {
    let repo = Repo::open(dir)?;
    let tip = repo.resolve("HEAD")?;
    let base = tip
        .name
        .strip_prefix("refs/heads/")
        .unwrap_or(&tip.name)
        .to_string();
    let git = |args: &[&str]| -> Result<(bool, String), shipway_git::Error> {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "shipway")
            .env("GIT_AUTHOR_EMAIL", "shipway@shipway.invalid")
            .env("GIT_COMMITTER_NAME", "shipway")
            .env("GIT_COMMITTER_EMAIL", "shipway@shipway.invalid")
            .output()
            .map_err(|e| shipway_git::Error::Io {
                repo: dir.display().to_string(),
                message: format!("cannot run git {}", args[0]),
                source: e,
            })?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    };
    let failed = |command: &str, out: String| shipway_git::Error::Git {
        repo: dir.display().to_string(),
        command: command.to_string(),
        message: out,
    };
    let (clean, out) = git(&[
        "merge-tree",
        "--write-tree",
        "--no-messages",
        &tip.sha,
        head,
    ])?;
    if !clean {
        return Ok(None);
    }
    let tree = out.lines().next().unwrap_or_default().to_string();
    let message = format!("Merge {head} into {}", tip.sha);
    let (ok, merge) = git(&[
        "commit-tree",
        &tree,
        "-p",
        &tip.sha,
        "-p",
        head,
        "-m",
        &message,
    ])?;
    if !ok {
        return Err(failed("commit-tree", merge));
    }
    let (ok, out) = git(&[
        "update-ref",
        "-m",
        "shipway pull request merge",
        merge_ref,
        &merge,
    ])?;
    if !ok {
        return Err(failed("update-ref", out));
    }
    let head_ref = repo
        .heads()?
        .into_iter()
        .find(|(branch, sha)| sha == head && *branch != base)
        .map(|(branch, _)| branch)
        .unwrap_or_else(|| format!("pull/{number}/head"));
    let (ok, merge_base) = git(&["merge-base", &tip.sha, head])?;
    let changed = if ok {
        changed_files(dir, &merge_base, head)
    } else {
        None
    };
    Ok(Some(PullRequest {
        base_sha: tip.sha.clone(),
        head_ref,
        head: commit_facts(dir, head),
        merge_workflows: load_workflows(dir, &merge)?,
        base_workflows: load_workflows(dir, &tip.sha)?,
        merge_sha: merge,
        changed,
        base,
    }))
}
