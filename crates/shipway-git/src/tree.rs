//! A commit's tree as a [`FileSystem`], read object by object without a checkout; symbolic links
//! are followed inside the repository only.

use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use shipway_fs::FileSystem;

/// How many links one lookup follows before it gives up, as Linux's `MAXSYMLINKS` (40).
const MAX_LINK_HOPS: u32 = 40;

/// The files of one commit. Paths are relative to the repository root; an absolute path
/// (`/base/kustomization.yaml`) is read from the root too. Cheap to clone; Send + Sync.
#[derive(Clone)]
pub struct Tree {
    inner: Arc<Inner>,
}

struct Inner {
    git: gix::ThreadSafeRepository,
    repo: String,
    commit: ObjectId,
    root: ObjectId,
    /// Decoded trees by id: a render reads the same directories many times.
    trees: Mutex<HashMap<ObjectId, Arc<Vec<Entry>>>>,
}

#[derive(Clone)]
struct Entry {
    name: String,
    kind: EntryKind,
    id: ObjectId,
}

/// What a path resolved to, with the real path of it (every link replaced by its target).
enum Node {
    Dir(ObjectId),
    File(ObjectId),
    /// A submodule's commit: it exists, but its files are in another repository.
    Submodule,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("repo", &self.inner.repo)
            .field("commit", &self.inner.commit.to_string())
            .finish()
    }
}

fn escape(repo: &str, path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{}: {why}, outside repository {repo}; refused",
            path.display()
        ),
    )
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

impl Tree {
    pub(crate) fn new(
        git: gix::ThreadSafeRepository,
        repo: String,
        commit: ObjectId,
        root: ObjectId,
    ) -> Tree {
        Tree {
            inner: Arc::new(Inner {
                git,
                repo,
                commit,
                root,
                trees: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The commit this tree belongs to.
    pub fn commit(&self) -> String {
        self.inner.commit.to_string()
    }

    fn entries(&self, id: ObjectId) -> io::Result<Arc<Vec<Entry>>> {
        if let Some(e) = self.lock().get(&id) {
            return Ok(e.clone());
        }
        let repo = self.inner.git.to_thread_local();
        let tree = repo.find_tree(id).map_err(|e| self.broken(id, e))?;
        let decoded = tree.decode().map_err(|e| self.broken(id, e))?;
        let mut entries: Vec<Entry> = decoded
            .entries
            .iter()
            .map(|e| Entry {
                name: e.filename.to_string(),
                kind: e.mode.kind(),
                id: e.oid.to_owned(),
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let entries = Arc::new(entries);
        self.lock().insert(id, entries.clone());
        Ok(entries)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, Arc<Vec<Entry>>>> {
        // A poisoned cache is still a correct cache: entries are inserted whole.
        self.inner
            .trees
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn broken(&self, id: ObjectId, e: impl std::fmt::Display) -> io::Error {
        io::Error::other(format!(
            "repository {}: cannot read object {id}: {e}",
            self.inner.repo
        ))
    }

    fn blob(&self, id: ObjectId) -> io::Result<Vec<u8>> {
        let repo = self.inner.git.to_thread_local();
        let object = repo.find_object(id).map_err(|e| self.broken(id, e))?;
        Ok(object.detach().data)
    }

    /// Walks `path` from the root, following links (relative targets only, resolved from the
    /// link's directory), and returns what it names and its real path's components.
    fn lookup(&self, path: &Path) -> io::Result<(Vec<String>, Node)> {
        let mut pending: Vec<String> = Vec::new(); // reversed: the next component is last
        for c in path.components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir => pending.push("..".into()),
                Component::Normal(n) => match n.to_str() {
                    Some(n) => pending.push(n.to_string()),
                    None => return Err(not_found(path)),
                },
                Component::Prefix(_) => return Err(not_found(path)),
            }
        }
        pending.reverse();
        // The directories walked so far: (name, tree id).
        let mut stack: Vec<(String, ObjectId)> = Vec::new();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            if c == "." || c.is_empty() {
                continue;
            }
            if c == ".." {
                if stack.pop().is_none() {
                    return Err(escape(&self.inner.repo, path, "it climbs above the root"));
                }
                continue;
            }
            let dir = stack.last().map_or(self.inner.root, |(_, id)| *id);
            let entries = self.entries(dir)?;
            let Some(entry) = entries.iter().find(|e| e.name == c) else {
                return Err(not_found(path));
            };
            match entry.kind {
                EntryKind::Tree => stack.push((c, entry.id)),
                EntryKind::Link => {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(io::Error::other(format!(
                            "{}: too many levels of symbolic links in repository {}",
                            path.display(),
                            self.inner.repo
                        )));
                    }
                    let target = self.blob(entry.id)?;
                    let target = String::from_utf8_lossy(&target).into_owned();
                    if target.starts_with('/') {
                        return Err(escape(
                            &self.inner.repo,
                            path,
                            &format!("link {c} points to the absolute path {target}"),
                        ));
                    }
                    // The target's components replace the link, then the rest of the path.
                    for t in target.split('/').rev() {
                        pending.push(t.to_string());
                    }
                }
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    if pending.iter().any(|p| !p.is_empty() && p != ".") {
                        return Err(io::Error::new(
                            io::ErrorKind::NotADirectory,
                            format!("{}: not a directory", path.display()),
                        ));
                    }
                    let mut real: Vec<String> = stack.into_iter().map(|(n, _)| n).collect();
                    real.push(c);
                    return Ok((real, Node::File(entry.id)));
                }
                EntryKind::Commit => {
                    let mut real: Vec<String> = stack.into_iter().map(|(n, _)| n).collect();
                    real.push(c);
                    return Ok((real, Node::Submodule));
                }
            }
        }
        let dir = stack.last().map_or(self.inner.root, |(_, id)| *id);
        Ok((stack.into_iter().map(|(n, _)| n).collect(), Node::Dir(dir)))
    }
}

impl FileSystem for Tree {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self.lookup(path)? {
            (_, Node::File(id)) => self.blob(id),
            (_, Node::Dir(_)) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{}: is a directory", path.display()),
            )),
            (_, Node::Submodule) => Err(io::Error::other(format!(
                "{}: is a git submodule, whose files are not in repository {}",
                path.display(),
                self.inner.repo
            ))),
        }
    }

    fn is_dir(&self, path: &Path) -> bool {
        matches!(self.lookup(path), Ok((_, Node::Dir(_))))
    }

    fn exists(&self, path: &Path) -> bool {
        // A path refused for leaving the repository "exists", so that reading it reports why
        // instead of a reader concluding the file is simply missing.
        match self.lookup(path) {
            Ok(_) => true,
            Err(e) => e.kind() == io::ErrorKind::PermissionDenied,
        }
    }

    fn real_path(&self, path: &Path) -> io::Result<PathBuf> {
        let (real, _) = self.lookup(path)?;
        let mut out = if path.has_root() {
            PathBuf::from("/")
        } else {
            PathBuf::new()
        };
        out.extend(real);
        Ok(out)
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        match self.lookup(path)? {
            (_, Node::Dir(id)) => Ok(self.entries(id)?.iter().map(|e| e.name.clone()).collect()),
            _ => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{}: not a directory", path.display()),
            )),
        }
    }
}
