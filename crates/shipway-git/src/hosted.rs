//! Hosted repositories: bare repositories under `<data-dir>/git/NAME.git` that Shipway serves
//! itself (the HTTP glue is in `shipway-server`). [`Hosted`] creates them for hosted
//! `Repository` objects, says which exist, and after each push wakes the subscribers of that
//! repository, writes the Repository's `status.heads` and records a `Pushed` event per ref.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use shipway_model::Object;
use shipway_model::types::Condition;
use shipway_model::types::repository::{GROUP, KIND, RepositorySpec, RepositoryStatus};
use shipway_store::{ListQuery, Store, StoreError};
use tokio::sync::watch;

use crate::{Error, Repo, ZERO_SHA};

/// Each branch (short name) and its commit sha.
pub type Heads = BTreeMap<String, String>;

/// Each branch and tag by full name and the commit it points at.
type Refs = BTreeMap<String, String>;

/// One ref a push changed: what CI triggers match (`on: push` with branches and tags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    pub repository: String,
    /// `refs/heads/main`, `refs/tags/v1`.
    pub git_ref: String,
    /// The previous commit, [`ZERO_SHA`] for a new ref.
    pub before: String,
    /// The new commit, [`ZERO_SHA`] for a deleted ref.
    pub after: String,
    /// The identity that pushed.
    pub by: String,
}

/// Pushes kept for a subscriber that is behind; one that falls further behind is told it lagged.
const PUSH_BUFFER: usize = 1024;

/// The writer named in the audit trail for what this module writes.
pub const ACTOR: &str = "shipway-git";

#[derive(Debug, thiserror::Error)]
pub enum HostedError {
    #[error("repository name {name:?} refused: {reason}")]
    BadName { name: String, reason: String },
    #[error(transparent)]
    Git(#[from] Error),
    #[error("hosted repository {name}: {source}")]
    Store {
        name: String,
        #[source]
        source: Box<StoreError>,
    },
}

/// The hosted repositories of one data directory.
pub struct Hosted {
    root: PathBuf,
    /// `http://ADDR/git`: a repository's clone URL is this plus `/NAME.git`.
    base_url: String,
    store: Store,
    subscribers: Mutex<HashMap<String, watch::Sender<Heads>>>,
    /// The refs each repository had after the last push seen; a push's changes are the
    /// difference. Locked across the read of the new refs, so two pushes' diffs never overlap.
    refs: tokio::sync::Mutex<HashMap<String, Refs>>,
    pushes: tokio::sync::broadcast::Sender<Push>,
}

impl std::fmt::Debug for Hosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosted").field("root", &self.root).finish()
    }
}

impl Hosted {
    /// Hosted repositories under `root` (`<data-dir>/git`), cloned from `base_url`
    /// (`http://127.0.0.1:7070/git`).
    pub fn new(root: impl Into<PathBuf>, base_url: impl Into<String>, store: Store) -> Arc<Hosted> {
        Arc::new(Hosted {
            root: root.into(),
            base_url: base_url.into().trim_end_matches('/').to_string(),
            store,
            subscribers: Mutex::new(HashMap::new()),
            refs: tokio::sync::Mutex::new(HashMap::new()),
            pushes: tokio::sync::broadcast::channel(PUSH_BUFFER).0,
        })
    }

    /// The directory bare repositories live in (git http-backend's `GIT_PROJECT_ROOT`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The clone URL of repository `name`.
    pub fn clone_url(&self, name: &str) -> String {
        format!("{}/{name}.git", self.base_url)
    }

    /// The bare repository's directory; `name` must be a DNS-1123 label, so it is one path
    /// segment and never `..`.
    pub fn dir(&self, name: &str) -> Result<PathBuf, HostedError> {
        shipway_model::name::validate_dns1123_label(name).map_err(|reason| {
            HostedError::BadName {
                name: name.to_string(),
                reason,
            }
        })?;
        Ok(self.root.join(format!("{name}.git")))
    }

    /// The hosted Repository object that owns `name`, if its bare repository exists: what the
    /// server serves (`None`: 404). The URL has no namespace, so of hosted Repositories of one
    /// name in several namespaces the oldest owns it and the others are told so in their status.
    pub async fn owner(&self, name: &str) -> Result<Option<Object>, HostedError> {
        let dir = self.dir(name)?;
        if !dir.join("HEAD").is_file() {
            return Ok(None);
        }
        self.claimant(name).await
    }

    /// The oldest hosted Repository named `name` (then by namespace), whatever is on disk.
    async fn claimant(&self, name: &str) -> Result<Option<Object>, HostedError> {
        let list = self
            .store
            .list(&ListQuery::kind(GROUP, KIND))
            .await
            .map_err(|source| HostedError::Store {
                name: name.to_string(),
                source: Box::new(source),
            })?;
        Ok(list
            .items
            .into_iter()
            .filter(|o| o.metadata.name == name)
            .filter(|o| o.spec_as::<RepositorySpec>().is_ok_and(|s| s.is_hosted()))
            .min_by(|a, b| {
                (&a.metadata.creation_timestamp, &a.metadata.namespace)
                    .cmp(&(&b.metadata.creation_timestamp, &b.metadata.namespace))
            }))
    }

    /// Creates the bare repository `name` (initial branch `main`) unless it exists.
    pub fn ensure(&self, name: &str) -> Result<Repo, HostedError> {
        ensure_bare(&self.root, name)
    }

    /// A receiver that changes whenever a push to `name` lands, holding its heads.
    pub fn subscribe(&self, name: &str) -> watch::Receiver<Heads> {
        self.sender(name).subscribe()
    }

    /// Every ref change of every push from now on, one [`Push`] per ref, in the order they
    /// were seen.
    pub fn pushes(&self) -> tokio::sync::broadcast::Receiver<Push> {
        self.pushes.subscribe()
    }

    async fn refs(&self, name: &str) -> Result<Refs, HostedError> {
        let dir = self.dir(name)?;
        let refs = tokio::task::spawn_blocking(move || Repo::open(dir)?.refs())
            .await
            .map_err(|e| Error::Read {
                repo: name.to_string(),
                message: format!("reading refs: {e}"),
            })??;
        Ok(refs.into_iter().collect())
    }

    /// Notes the refs of `name` as they are now unless already noted, so the next push is
    /// diffed against them (the reconcile at start does it for every hosted repository).
    async fn observe(&self, name: &str) -> Result<(), HostedError> {
        let mut known = self.refs.lock().await;
        if !known.contains_key(name) {
            let refs = self.refs(name).await?;
            known.insert(name.to_string(), refs);
        }
        Ok(())
    }

    fn sender(&self, name: &str) -> watch::Sender<Heads> {
        let mut subs = self
            .subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        subs.entry(name.to_string())
            .or_insert_with(|| {
                let heads = self
                    .dir(name)
                    .ok()
                    .and_then(|d| Repo::open(d).ok())
                    .and_then(|r| r.heads().ok())
                    .map(|h| h.into_iter().collect())
                    .unwrap_or_default();
                watch::channel(heads).0
            })
            .clone()
    }

    async fn heads(&self, name: &str) -> Result<Heads, HostedError> {
        let dir = self.dir(name)?;
        let heads = tokio::task::spawn_blocking(move || Repo::open(dir)?.heads())
            .await
            .map_err(|e| Error::Read {
                repo: name.to_string(),
                message: format!("reading heads: {e}"),
            })??;
        Ok(heads.into_iter().collect())
    }

    /// Notes that Shipway itself set `git_ref` of `name` to `sha` (a pull request's merge ref),
    /// so the next push is not told as having changed it.
    pub async fn note_ref(&self, name: &str, git_ref: &str, sha: &str) {
        if let Some(refs) = self.refs.lock().await.get_mut(name) {
            refs.insert(git_ref.to_string(), sha.to_string());
        }
    }

    /// After a push by `by` (a token's name) landed in `name`: wakes the subscribers, tells
    /// [`Hosted::pushes`] of every ref it changed, records a `Pushed` event per changed ref and
    /// writes the heads into the Repository's status.
    pub async fn pushed(&self, name: &str, by: &str) -> Result<(), HostedError> {
        let owner = self.owner(name).await?;
        let changes = {
            let mut known = self.refs.lock().await;
            let after = self.refs(name).await?;
            let before = match known.get(name) {
                Some(refs) => refs.clone(),
                // Not noted since this process started (its reconcile has not run yet): the
                // branches the status last recorded.
                None => owner
                    .as_ref()
                    .and_then(|o| o.status_as::<RepositoryStatus>().ok())
                    .map(|s| {
                        s.heads
                            .into_iter()
                            .map(|(b, sha)| (format!("refs/heads/{b}"), sha))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let mut changes = Vec::new();
            for (r, sha) in &after {
                if before.get(r) != Some(sha) {
                    let old = before.get(r).map_or(ZERO_SHA, String::as_str);
                    changes.push((r.clone(), old.to_string(), sha.clone()));
                }
            }
            for (r, sha) in &before {
                if !after.contains_key(r) {
                    changes.push((r.clone(), sha.clone(), ZERO_SHA.to_string()));
                }
            }
            known.insert(name.to_string(), after);
            changes
        };
        let heads = self.heads(name).await?;
        self.sender(name).send_replace(heads.clone());
        for (git_ref, before, after) in &changes {
            // No receiver is not an error: nothing listens for pushes.
            let _ = self.pushes.send(Push {
                repository: name.to_string(),
                git_ref: git_ref.clone(),
                before: before.clone(),
                after: after.clone(),
                by: by.to_string(),
            });
        }
        if let Some(object) = owner {
            let key = object.key();
            for (git_ref, _, after) in &changes {
                let message = if after == ZERO_SHA {
                    format!("{git_ref} deleted by {by}")
                } else {
                    format!("{git_ref} updated to {after} by {by}")
                };
                self.event(name, &key, by, &message).await?;
            }
            self.write_status(name, object, &heads).await?;
        }
        Ok(())
    }

    async fn event(
        &self,
        name: &str,
        key: &shipway_model::Key,
        by: &str,
        message: &str,
    ) -> Result<(), HostedError> {
        self.store
            .record_event(key, by, "Pushed", message)
            .await
            .map_err(|source| HostedError::Store {
                name: name.to_string(),
                source: Box::new(source),
            })
    }

    /// What a hosted Repository object needs: its bare repository, and a status with its clone
    /// URL and heads. Written only when it changes, since the write wakes the caller again.
    pub async fn reconcile(&self, object: &Object) -> Result<(), HostedError> {
        let spec: RepositorySpec = object.spec_as().unwrap_or_default();
        if !spec.is_hosted() {
            return Ok(());
        }
        let name = object.metadata.name.clone();
        if let Some(owner) = self.claimant(&name).await?
            && owner.key() != object.key()
        {
            let taken = Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: Some("NameTaken".into()),
                message: Some(format!(
                    "{} is served for {}/{name}, the older hosted Repository of this name; hosted names are unique across namespaces",
                    self.clone_url(&name),
                    owner.metadata.namespace.as_deref().unwrap_or("default")
                )),
                ..Condition::default()
            };
            let status = RepositoryStatus {
                conditions: vec![taken],
                ..RepositoryStatus::default()
            };
            return self.put_status(&name, object.clone(), status).await;
        }
        let (root, n) = (self.root.clone(), name.clone());
        tokio::task::spawn_blocking(move || ensure_bare(&root, &n))
            .await
            .map_err(|e| Error::Read {
                repo: name.clone(),
                message: format!("creating it: {e}"),
            })??;
        self.observe(&name).await?;
        let heads = self.heads(&name).await?;
        self.write_status(&name, object.clone(), &heads).await
    }

    async fn write_status(
        &self,
        name: &str,
        object: Object,
        heads: &Heads,
    ) -> Result<(), HostedError> {
        let old: RepositoryStatus = object.status_as().unwrap_or_default();
        let ready = Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("Hosted".into()),
            message: Some(format!("served at {}", self.clone_url(name))),
            ..Condition::default()
        };
        let mut status = old;
        status.url = Some(self.clone_url(name));
        status.heads = heads.clone();
        status.conditions.retain(|c| c.type_ != "Ready");
        status.conditions.push(ready);
        self.put_status(name, object, status).await
    }

    /// Writes `status` unless the object already has it (the write would wake its reconcile).
    async fn put_status(
        &self,
        name: &str,
        mut object: Object,
        status: RepositoryStatus,
    ) -> Result<(), HostedError> {
        let old: RepositoryStatus = object.status_as().unwrap_or_default();
        if status == old {
            return Ok(());
        }
        object.set_status(&status);
        // Unconditional: the status is this module's alone, and a push must land in it.
        object.metadata.resource_version = None;
        self.store
            .update_status(object, ACTOR)
            .await
            .map_err(|source| HostedError::Store {
                name: name.to_string(),
                source: Box::new(source),
            })?;
        Ok(())
    }
}

/// Creates `<root>/NAME.git` unless it exists, and opens it.
fn ensure_bare(root: &Path, name: &str) -> Result<Repo, HostedError> {
    shipway_model::name::validate_dns1123_label(name).map_err(|reason| HostedError::BadName {
        name: name.to_string(),
        reason,
    })?;
    let dir = root.join(format!("{name}.git"));
    if !dir.join("HEAD").is_file() {
        std::fs::create_dir_all(root).map_err(|source| Error::Io {
            repo: dir.display().to_string(),
            message: "cannot create the hosted repositories' directory".into(),
            source,
        })?;
        let out = Command::new("git")
            .args(["init", "--quiet", "--bare", "--initial-branch=main"])
            .arg(&dir)
            .env_remove("GIT_DIR")
            .output()
            .map_err(|source| Error::Io {
                repo: dir.display().to_string(),
                message: "cannot run git init".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(Error::Git {
                repo: dir.display().to_string(),
                command: "init --bare".into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            }
            .into());
        }
    }
    Ok(Repo::open(&dir)?)
}
