//! Git repositories as Shipway uses them: revisions resolved and trees read in process with
//! `gix` (no checkout), and everything that writes or talks to a network through the `git` CLI
//! (commits on a temporary index, pushes, fetches into a bare cache).
//!
//! Start with [`Repo::open`], then [`Repo::resolve`] and [`Repo::tree`] (a
//! [`shipway_fs::FileSystem`] over a commit, what kustomize renders from); [`Repo::commit`]
//! writes; [`fetch`] and [`Repo::push`] reach other repositories; [`hosted`] keeps the
//! repositories Shipway serves itself.

mod cli;
pub mod hosted;
mod tree;
pub mod webhook;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cli::{Credentials, Signature, fetch, redact};
pub use tree::Tree;

/// The sha of a ref that does not exist (a push's `before` for a new ref, `after` for a deleted
/// one), as git and GitHub write it.
pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// A failure of a repository operation. Every message names the repository.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("repository {repo}: cannot open it: {message}")]
    Open { repo: String, message: String },
    #[error(
        "repository {repo}: revision {rev:?} refused: a revision may not start with '-' (it would read as an option)"
    )]
    DashRevision { repo: String, rev: String },
    #[error(
        "repository {repo}: unknown revision {rev:?}: not a branch, tag, commit sha or HEAD of this repository"
    )]
    UnknownRevision { repo: String, rev: String },
    #[error("repository {repo}: {message}")]
    Read { repo: String, message: String },
    #[error("repository {repo}: path {path:?} refused: {reason}")]
    BadPath {
        repo: String,
        path: String,
        reason: &'static str,
    },
    #[error("repository {repo}: git {command} failed: {message}")]
    Git {
        repo: String,
        command: String,
        message: String,
    },
    #[error(
        "repository {repo}: branch {branch} moved under every one of {attempts} attempts to commit; try again"
    )]
    Contended {
        repo: String,
        branch: String,
        attempts: u32,
    },
    #[error("repository {repo}: {message}: {source}")]
    Io {
        repo: String,
        message: String,
        #[source]
        source: std::io::Error,
    },
}

/// A resolved revision: what it was resolved through and the commit it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// The full reference name (`refs/heads/main`, `refs/tags/v1`), `HEAD` for a detached
    /// HEAD, or the full sha when a sha was given.
    pub name: String,
    /// The commit's full hex sha (an annotated tag is peeled to its commit).
    pub sha: String,
}

/// An open repository, bare or not. Cheap to clone and share between threads.
#[derive(Clone)]
pub struct Repo {
    inner: Arc<Inner>,
}

struct Inner {
    /// What the user named, for messages.
    path: PathBuf,
    git_dir: PathBuf,
    git: gix::ThreadSafeRepository,
}

impl fmt::Debug for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repo")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Repo {
    /// Opens the repository at `path` (a bare repository or a work tree with `.git`).
    pub fn open(path: impl AsRef<Path>) -> Result<Repo, Error> {
        let path = path.as_ref().to_path_buf();
        // Isolated: the repository is read as it is, whatever GIT_DIR or the user's config say.
        let opts = gix::open::Options::isolated();
        let git = gix::open_opts(&path, opts).map_err(|e| Error::Open {
            repo: path.display().to_string(),
            message: e.to_string(),
        })?;
        let git_dir = git.git_dir().to_path_buf();
        Ok(Repo {
            inner: Arc::new(Inner {
                path,
                git_dir,
                git: git.into_sync(),
            }),
        })
    }

    /// The path the repository was opened at.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The git directory (the repository itself when bare).
    pub fn git_dir(&self) -> &Path {
        &self.inner.git_dir
    }

    fn name(&self) -> String {
        self.inner.path.display().to_string()
    }

    fn read_err(&self, message: impl fmt::Display) -> Error {
        Error::Read {
            repo: self.name(),
            message: message.to_string(),
        }
    }

    /// Resolves a branch, a tag (annotated tags peeled to their commit), a full or abbreviated
    /// commit sha, a full reference name, or `HEAD` (also for an empty revision, as Argo CD
    /// reads an empty `targetRevision`) to a commit.
    pub fn resolve(&self, rev: &str) -> Result<Revision, Error> {
        if rev.starts_with('-') {
            return Err(Error::DashRevision {
                repo: self.name(),
                rev: rev.to_string(),
            });
        }
        let unknown = || Error::UnknownRevision {
            repo: self.name(),
            rev: rev.to_string(),
        };
        let repo = self.inner.git.to_thread_local();
        if rev.is_empty() || rev == "HEAD" {
            let head = repo.head().map_err(|e| self.read_err(e))?;
            let name = head
                .referent_name()
                .map(|n| n.as_bstr().to_string())
                .unwrap_or_else(|| "HEAD".to_string());
            let id = head.try_into_peeled_id().map_err(|e| self.read_err(e))?;
            let Some(id) = id else {
                return Err(unknown());
            };
            let sha = self.peel_commit(&repo, id.detach(), rev)?;
            return Ok(Revision { name, sha });
        }
        // Refs first, in git's order for a short name (heads before tags, as Argo CD tries a
        // branch before a tag), then a sha. No rev-parse syntax (`main~1`, `@{...}`): a target
        // revision names a ref or a commit.
        let candidates: Vec<String> = if rev.starts_with("refs/") {
            vec![rev.to_string()]
        } else {
            vec![format!("refs/heads/{rev}"), format!("refs/tags/{rev}")]
        };
        for full in &candidates {
            // A name git would not accept as a ref is simply not one of this repository's.
            let Ok(found) = repo.try_find_reference(full.as_str()) else {
                continue;
            };
            if let Some(mut r) = found {
                let id = r.peel_to_id().map_err(|e| self.read_err(e))?;
                let sha = self.peel_commit(&repo, id.detach(), rev)?;
                return Ok(Revision {
                    name: full.clone(),
                    sha,
                });
            }
        }
        let is_hex =
            rev.len() >= 4 && rev.len() <= 40 && rev.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex {
            // rev_parse finds an abbreviated sha and says when it is ambiguous.
            let id = match repo.rev_parse_single(rev) {
                Ok(id) => id.detach(),
                Err(e) if e.to_string().contains("ambiguous") => {
                    return Err(self.read_err(format_args!(
                        "revision {rev:?} is an ambiguous abbreviated sha; give more digits"
                    )));
                }
                Err(_) => return Err(unknown()),
            };
            let sha = self.peel_commit(&repo, id, rev)?;
            return Ok(Revision {
                name: sha.clone(),
                sha,
            });
        }
        Err(unknown())
    }

    fn peel_commit(
        &self,
        repo: &gix::Repository,
        id: gix::ObjectId,
        rev: &str,
    ) -> Result<String, Error> {
        let object = repo.find_object(id).map_err(|_| Error::UnknownRevision {
            repo: self.name(),
            rev: rev.to_string(),
        })?;
        let commit = object.peel_to_commit().map_err(|_| {
            self.read_err(format_args!(
                "revision {rev:?} ({id}) does not name a commit"
            ))
        })?;
        Ok(commit.id.to_string())
    }

    /// The tree of commit `sha` as a filesystem, read without a checkout.
    pub fn tree(&self, sha: &str) -> Result<Tree, Error> {
        let repo = self.inner.git.to_thread_local();
        let id = gix::ObjectId::from_hex(sha.as_bytes())
            .map_err(|_| self.read_err(format_args!("{sha:?} is not a full commit sha")))?;
        let commit = repo
            .find_commit(id)
            .map_err(|e| self.read_err(format_args!("commit {sha}: {e}")))?;
        let root = commit
            .tree_id()
            .map_err(|e| self.read_err(format_args!("commit {sha}: {e}")))?
            .detach();
        Ok(Tree::new(self.inner.git.clone(), self.name(), id, root))
    }

    /// Every branch, tag and pull request ref by full name (`refs/heads/main`, `refs/tags/v1`,
    /// `refs/pull/7/head`) and the commit it points at (an annotated tag peeled), in name
    /// order. What a push changed is the difference of two of these.
    pub fn refs(&self) -> Result<Vec<(String, String)>, Error> {
        let repo = self.inner.git.to_thread_local();
        let refs = repo.references().map_err(|e| self.read_err(e))?;
        let mut out = Vec::new();
        let branches = refs.local_branches().map_err(|e| self.read_err(e))?;
        let tags = refs.tags().map_err(|e| self.read_err(e))?;
        let pulls = refs.prefixed("refs/pull/").map_err(|e| self.read_err(e))?;
        for r in branches.chain(tags).chain(pulls) {
            let mut r = r.map_err(|e| self.read_err(e))?;
            let name = r.name().as_bstr().to_string();
            let Ok(id) = r.peel_to_id() else { continue };
            out.push((name, id.to_string()));
        }
        out.sort();
        Ok(out)
    }

    /// Every branch and its commit sha, in name order.
    pub fn heads(&self) -> Result<Vec<(String, String)>, Error> {
        let repo = self.inner.git.to_thread_local();
        let refs = repo.references().map_err(|e| self.read_err(e))?;
        let mut out = Vec::new();
        for r in refs.local_branches().map_err(|e| self.read_err(e))? {
            let mut r = r.map_err(|e| self.read_err(e))?;
            let name = r.name().shorten().to_string();
            let Ok(id) = r.peel_to_id() else { continue };
            out.push((name, id.to_string()));
        }
        out.sort();
        Ok(out)
    }
}
