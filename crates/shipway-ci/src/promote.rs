//! Promotion: a commit that sets an image in an environment's overlay, exactly as `kustomize
//! edit set image` rewrites the kustomization, pushed to the branch the GitOps controller
//! watches. When the push is not a fast-forward (someone pushed meanwhile), the branch is
//! fetched again and the edit made anew on its new tip, so a concurrent change is never lost.

use std::path::Path;

use shipway_fs::FileSystem;
use shipway_git::{Credentials, Signature};
use shipway_model::types::workflow_run::{APPROVED, WorkflowRunSpec};

/// How often a promotion is tried again on a branch that moved.
const ATTEMPTS: u32 = 10;

/// A promotion to make.
#[derive(Clone, Debug)]
pub struct Promotion {
    /// The repository's URL.
    pub url: String,
    pub credentials: Option<Credentials>,
    /// The overlay directory in the repository (`overlays/production`; `.` for the root).
    pub path: String,
    /// `kustomize edit set image` arguments (`app=app@sha256:...`, `app:1.2`).
    pub images: Vec<String>,
    /// The branch to commit to; `None`: the repository's default branch.
    pub branch: Option<String>,
    pub author: Signature,
    pub message: String,
}

/// What a promotion did.
#[derive(Clone, Debug, PartialEq)]
pub struct Promoted {
    pub branch: String,
    /// The pushed commit, or the branch's tip when the overlay already said this.
    pub commit: String,
    /// The kustomization file changed, relative to the repository.
    pub file: String,
    /// False when the overlay already had these images: nothing was committed.
    pub changed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error(transparent)]
    Git(#[from] shipway_git::Error),
    #[error("{0}")]
    Edit(#[from] shipway_kustomize::edit::EditError),
    #[error(
        "{url}: {path:?} is not a directory with a kustomization at {branch} ({commit}); promote into an overlay (a directory with kustomization.yaml)"
    )]
    NoKustomization {
        url: String,
        path: String,
        branch: String,
        commit: String,
    },
    #[error("{url}: {path:?} holds more than one kustomization file ({files}); keep one")]
    Multiple {
        url: String,
        path: String,
        files: String,
    },
    #[error("{url}: has no branch {branch:?}; name an existing branch")]
    NoBranch { url: String, branch: String },
    #[error("{url}: has no commits yet; push the overlay first")]
    Empty { url: String },
    #[error(
        "{url}: the push of {branch} was rejected {ATTEMPTS} times as the branch kept moving; try again"
    )]
    Contended { url: String, branch: String },
    #[error("cannot make a scratch repository: {0}")]
    Io(#[from] std::io::Error),
}

/// `path` as the repository names it: no `./`, no trailing `/`, empty for the root.
fn normalize(path: &str) -> String {
    let p = path.trim().trim_matches('/');
    let p = p.strip_prefix("./").unwrap_or(p);
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

/// Makes the promotion: fetch, edit, commit, push; again on the new tip while the push is
/// rejected as not a fast-forward. Blocks (runs `git`).
pub fn promote(p: &Promotion) -> Result<Promoted, PromoteError> {
    let shown = shipway_git::redact(&p.url);
    let scratch = tempfile::Builder::new()
        .prefix("shipway-promote-")
        .tempdir()?;
    let dir = normalize(&p.path);
    // The branch of the last attempt, for the message when every attempt was rejected.
    let mut tried = p.branch.clone().unwrap_or_default();
    for _ in 0..ATTEMPTS {
        let repo = shipway_git::fetch(&p.url, scratch.path(), p.credentials.as_ref())?;
        let branch = match &p.branch {
            Some(b) => b.clone(),
            None => match repo.resolve("HEAD") {
                Ok(head) => head
                    .name
                    .strip_prefix("refs/heads/")
                    .unwrap_or(&head.name)
                    .to_string(),
                Err(_) => return Err(PromoteError::Empty { url: shown }),
            },
        };
        tried.clone_from(&branch);
        let tip =
            repo.resolve(&format!("refs/heads/{branch}"))
                .map_err(|_| PromoteError::NoBranch {
                    url: shown.clone(),
                    branch: branch.clone(),
                })?;
        let tree = repo.tree(&tip.sha)?;
        let files: Vec<String> = shipway_kustomize::FILE_NAMES
            .iter()
            .map(|n| {
                if dir.is_empty() {
                    n.to_string()
                } else {
                    format!("{dir}/{n}")
                }
            })
            .filter(|f| tree.read(Path::new(f)).is_ok())
            .collect();
        let file = match files.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(PromoteError::NoKustomization {
                    url: shown,
                    path: p.path.clone(),
                    branch,
                    commit: tip.sha,
                });
            }
            _ => {
                return Err(PromoteError::Multiple {
                    url: shown,
                    path: p.path.clone(),
                    files: files.join(", "),
                });
            }
        };
        let text = shipway_fs::read_to_string(&tree, Path::new(&file)).map_err(|e| {
            shipway_git::Error::Read {
                repo: shown.clone(),
                message: format!("{file}: {e}"),
            }
        })?;
        let edited = shipway_kustomize::edit::set_image(&file, &text, &p.images)?;
        if edited == text {
            return Ok(Promoted {
                branch,
                commit: tip.sha,
                file,
                changed: false,
            });
        }
        let commit = repo.commit(
            &branch,
            &[(file.as_str(), Some(edited.as_bytes()))],
            &p.author,
            &p.message,
        )?;
        match repo.push(&p.url, &branch, p.credentials.as_ref()) {
            Ok(()) => {
                return Ok(Promoted {
                    branch,
                    commit,
                    file,
                    changed: true,
                });
            }
            Err(shipway_git::Error::Git { command, .. }) if command.contains("rejected") => {
                tracing::debug!(url = %shown, branch, "promotion push rejected; again on the new tip");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(PromoteError::Contended {
        url: shown,
        branch: tried,
    })
}

/// The `kustomize edit set image` argument setting `image` (as the overlay names it) to
/// `new_name` (default: unchanged) at `tag` and/or `digest`.
pub fn image_arg(
    image: &str,
    new_name: Option<&str>,
    tag: Option<&str>,
    digest: Option<&str>,
) -> Result<String, String> {
    if tag.is_none() && digest.is_none() {
        return Err("give a tag or a digest (or both) to promote".into());
    }
    let mut arg = match new_name {
        Some(n) => format!("{image}={n}"),
        None => image.to_string(),
    };
    if let Some(t) = tag {
        arg.push_str(&format!(":{t}"));
    }
    if let Some(d) = digest {
        arg.push_str(&format!("@{d}"));
    }
    Ok(arg)
}

/// The commit message of a promotion: the subject, then trailers naming the run, the commit
/// it built, what was set, its digest and who approved it.
pub fn message(
    subject: &str,
    run: Option<&str>,
    commit: Option<&str>,
    images: &[String],
    digest: Option<&str>,
    approvers: &[String],
) -> String {
    let mut m = format!("{}\n\n", subject.trim());
    if let Some(run) = run {
        m.push_str(&format!("Shipway-Run: {run}\n"));
    }
    if let Some(commit) = commit {
        m.push_str(&format!("Source-Commit: {commit}\n"));
    }
    for i in images {
        m.push_str(&format!("Image: {i}\n"));
    }
    if let Some(d) = digest {
        m.push_str(&format!("Digest: {d}\n"));
    }
    for a in approvers {
        m.push_str(&format!("Approved-by: {a}\n"));
    }
    m
}

/// Who approved attempt `spec.run_attempt`'s deployments: `user (environment)`, each once.
pub fn approvers(spec: &WorkflowRunSpec) -> Vec<String> {
    let mut out: Vec<String> = spec
        .reviews
        .iter()
        .filter(|r| r.attempt == spec.run_attempt && r.state == APPROVED)
        .map(|r| format!("{} ({})", r.user, r.environment))
        .collect();
    out.sort();
    out.dedup();
    out
}
