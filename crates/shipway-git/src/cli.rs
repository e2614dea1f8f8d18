//! What goes through the `git` CLI: commits written on a temporary index (no work tree is
//! touched), pushes and fetches. Credentials reach git through the environment and an askpass
//! script in a private temporary directory, never through argv or a URL, and are cut out of
//! every message.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::{Error, Repo, ZERO_SHA};

/// How often a commit is rewritten on the branch's new tip when the branch moved under it.
const COMMIT_ATTEMPTS: u32 = 10;
/// How often a push is retried after a non-fast-forward rejection.
const PUSH_ATTEMPTS: u32 = 10;

/// Who a commit is by (author and committer).
#[derive(Clone, Debug)]
pub struct Signature {
    pub name: String,
    pub email: String,
}

/// Credentials for an external repository (Argo CD's repository Secret keys).
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    pub ssh_private_key: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "ssh_private_key",
                &self.ssh_private_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `url` with any `user:password@` replaced by `***@`, for messages.
pub fn redact(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let host_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..host_end].rfind('@') {
            return format!("{}***@{}", &url[..scheme_end + 3], &rest[at + 1..]);
        }
    }
    url.to_string()
}

/// A `git` command with nothing inherited that could point it elsewhere, and no prompt.
fn git() -> Command {
    let mut c = Command::new("git");
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_CEILING_DIRECTORIES",
        "GIT_ASKPASS",
        "SSH_ASKPASS",
    ] {
        c.env_remove(var);
    }
    c.env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The environment and files that hand credentials to one git command. The directory (0700,
/// removed on drop) holds the askpass script and the ssh key.
struct Auth {
    _dir: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    secrets: Vec<String>,
}

impl Auth {
    fn new(creds: Option<&Credentials>) -> std::io::Result<Auth> {
        let mut auth = Auth {
            _dir: None,
            env: Vec::new(),
            secrets: Vec::new(),
        };
        let Some(creds) = creds else {
            return Ok(auth);
        };
        let dir = tempfile::Builder::new().prefix("shipway-git-").tempdir()?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        if creds.username.is_some() || creds.password.is_some() {
            // git asks "Username for ..." then "Password for ..."; the answers come from the
            // environment of this one git process, so they are never in a file or argv.
            let script = dir.path().join("askpass");
            std::fs::write(
                &script,
                "#!/bin/sh\ncase \"$1\" in\n  Username*) printf '%s\\n' \"$SHIPWAY_GIT_USERNAME\" ;;\n  *) printf '%s\\n' \"$SHIPWAY_GIT_PASSWORD\" ;;\nesac\n",
            )?;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))?;
            auth.env
                .push(("GIT_ASKPASS".into(), script.display().to_string()));
            auth.env.push((
                "SHIPWAY_GIT_USERNAME".into(),
                creds.username.clone().unwrap_or_else(|| "git".into()),
            ));
            let password = creds.password.clone().unwrap_or_default();
            if !password.is_empty() {
                auth.secrets.push(password.clone());
            }
            auth.env.push(("SHIPWAY_GIT_PASSWORD".into(), password));
        }
        if let Some(key) = &creds.ssh_private_key {
            let path = dir.path().join("id");
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(key.as_bytes())?;
            if !key.ends_with('\n') {
                f.write_all(b"\n")?;
            }
            // Host keys are checked against the user's known_hosts as ssh does; BatchMode
            // turns every prompt into a failure.
            auth.env.push((
                "GIT_SSH_COMMAND".into(),
                format!(
                    "ssh -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes",
                    path.display()
                ),
            ));
        }
        auth._dir = Some(dir);
        Ok(auth)
    }

    fn apply(&self, c: &mut Command) {
        // No credential helper of the user's: the askpass answer is the only one.
        c.args(["-c", "credential.helper="]);
        for (k, v) in &self.env {
            c.env(k, v);
        }
    }

    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        for s in &self.secrets {
            text = text.replace(s.as_str(), "***");
        }
        text
    }
}

fn stderr_of(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr);
    let text = text.trim();
    if text.is_empty() {
        format!("exit status {}", out.status)
    } else {
        text.to_string()
    }
}

impl Repo {
    fn git(&self) -> Command {
        let mut c = git();
        c.arg("--git-dir").arg(self.git_dir());
        c
    }

    fn git_err(&self, command: &str, message: impl Into<String>) -> Error {
        Error::Git {
            repo: self.name(),
            command: command.to_string(),
            message: message.into(),
        }
    }

    fn io_err(&self, message: &str, source: std::io::Error) -> Error {
        Error::Io {
            repo: self.name(),
            message: message.to_string(),
            source,
        }
    }

    /// Runs a git command; its trimmed standard output, or an error with its standard error.
    fn run(&self, what: &str, mut c: Command, input: Option<&[u8]>) -> Result<String, Error> {
        if input.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().map_err(|e| self.io_err("cannot run git", e))?;
        if let Some(input) = input {
            let mut stdin = child.stdin.take().expect("stdin was piped");
            stdin
                .write_all(input)
                .map_err(|e| self.io_err(&format!("git {what}: writing its input"), e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| self.io_err(&format!("git {what}"), e))?;
        if !out.status.success() {
            return Err(self.git_err(what, stderr_of(&out)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The commit `refs/heads/<branch>` points at, if the branch exists.
    fn branch_tip(&self, branch: &str) -> Result<Option<String>, Error> {
        let mut c = self.git();
        c.args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("refs/heads/{branch}^{{commit}}"));
        let out = c
            .output()
            .map_err(|e| self.io_err("cannot run git rev-parse", e))?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()))
    }

    fn check_branch(&self, branch: &str) -> Result<(), Error> {
        let mut c = git();
        c.args(["check-ref-format", "--branch", branch]);
        let ok = !branch.starts_with('-')
            && c.output()
                .map_err(|e| self.io_err("cannot run git", e))?
                .status
                .success();
        if ok {
            Ok(())
        } else {
            Err(Error::BadPath {
                repo: self.name(),
                path: branch.to_string(),
                reason: "not a valid branch name",
            })
        }
    }

    /// Commits `changes` (a path and its new contents, or `None` to delete it) on top of
    /// `branch` (created if missing) without touching any work tree or the repository's index,
    /// and moves the branch only if it still points where the commit started from; when it
    /// moved, the same changes are applied again on its new tip (up to 10 times). Returns the new
    /// commit's sha, or the tip's when the changes change nothing.
    pub fn commit(
        &self,
        branch: &str,
        changes: &[(&str, Option<&[u8]>)],
        author: &Signature,
        message: &str,
    ) -> Result<String, Error> {
        self.check_branch(branch)?;
        for (path, _) in changes {
            check_path(self, path)?;
        }
        for attempt in 0..COMMIT_ATTEMPTS {
            if attempt > 0 {
                // Writers that collided retry at different moments rather than in lockstep.
                std::thread::sleep(jitter(attempt));
            }
            let old = self.branch_tip(branch)?;
            let new = self.commit_on(old.as_deref(), changes, author, message)?;
            if Some(&new) == old.as_ref() {
                return Ok(new);
            }
            let mut c = self.git();
            c.args(["update-ref", "-m", "shipway commit"])
                .arg(format!("refs/heads/{branch}"))
                .arg(&new)
                .arg(old.as_deref().unwrap_or(ZERO_SHA));
            match self.run("update-ref", c, None) {
                Ok(_) => return Ok(new),
                // The compare-and-swap lost: someone else moved the branch. Try again on theirs.
                Err(e) if self.branch_tip(branch)? != old => {
                    tracing::debug!(branch, error = %e, "branch moved during commit; retrying");
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Contended {
            repo: self.name(),
            branch: branch.to_string(),
            attempts: COMMIT_ATTEMPTS,
        })
    }

    /// Writes the commit object (blobs, tree, commit) for `changes` on `parent`; moves nothing.
    fn commit_on(
        &self,
        parent: Option<&str>,
        changes: &[(&str, Option<&[u8]>)],
        author: &Signature,
        message: &str,
    ) -> Result<String, Error> {
        let dir = tempfile::Builder::new()
            .prefix("shipway-index-")
            .tempdir()
            .map_err(|e| self.io_err("cannot make a temporary index", e))?;
        let index = dir.path().join("index");
        let with_index = |args: &[&str]| {
            let mut c = self.git();
            c.env("GIT_INDEX_FILE", &index).args(args);
            c
        };
        match parent {
            Some(p) => self.run("read-tree", with_index(&["read-tree", p]), None)?,
            None => self.run("read-tree", with_index(&["read-tree", "--empty"]), None)?,
        };
        let mut info = String::new();
        for (path, contents) in changes {
            match contents {
                Some(bytes) => {
                    let mut c = self.git();
                    c.args(["hash-object", "-w", "--stdin"]);
                    let sha = self.run("hash-object", c, Some(bytes))?;
                    let mode = self.mode_in(parent, path).unwrap_or("100644");
                    info.push_str(&format!("{mode} {sha}\t{path}\n"));
                }
                // Mode 0 removes the path from the index.
                None => info.push_str(&format!("0 {ZERO_SHA}\t{path}\n")),
            }
        }
        self.run(
            "update-index",
            with_index(&["update-index", "--index-info"]),
            Some(info.as_bytes()),
        )?;
        let tree = self.run("write-tree", with_index(&["write-tree"]), None)?;
        if let Some(p) = parent {
            let mut c = self.git();
            c.args(["rev-parse", &format!("{p}^{{tree}}")]);
            if self.run("rev-parse", c, None)? == tree {
                return Ok(p.to_string());
            }
        }
        let mut c = self.git();
        c.args(["commit-tree", &tree]);
        if let Some(p) = parent {
            c.args(["-p", p]);
        }
        c.args(["-F", "-"])
            .env("GIT_AUTHOR_NAME", &author.name)
            .env("GIT_AUTHOR_EMAIL", &author.email)
            .env("GIT_COMMITTER_NAME", &author.name)
            .env("GIT_COMMITTER_EMAIL", &author.email);
        self.run("commit-tree", c, Some(message.as_bytes()))
    }

    /// An existing file's mode at `parent`, so an executable file stays executable.
    fn mode_in(&self, parent: Option<&str>, path: &str) -> Option<&'static str> {
        let parent = parent?;
        let mut c = self.git();
        c.args(["ls-tree", parent, "--", path]);
        let out = self.run("ls-tree", c, None).ok()?;
        out.starts_with("100755").then_some("100755")
    }

    /// Pushes `branch` to the same branch of `remote` (a URL) through the git CLI.
    pub fn push(
        &self,
        remote: &str,
        branch: &str,
        creds: Option<&Credentials>,
    ) -> Result<(), Error> {
        self.check_branch(branch)?;
        let auth = Auth::new(creds).map_err(|e| self.io_err("cannot prepare credentials", e))?;
        let mut c = self.git();
        auth.apply(&mut c);
        c.args(["push", "--porcelain", "--", remote])
            .arg(format!("refs/heads/{branch}:refs/heads/{branch}"));
        let out = c
            .output()
            .map_err(|e| self.io_err("cannot run git push", e))?;
        if out.status.success() {
            return Ok(());
        }
        let message = auth.scrub(&stderr_of(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        // The remote moved: before our push was sent (rejected, not a fast-forward) or while it
        // was applied (the remote's ref lock saw another value than it advertised).
        let rejected = stdout.contains("[rejected]")
            || message.contains("non-fast-forward")
            || message.contains("cannot lock ref");
        Err(Error::Git {
            repo: self.name(),
            command: if rejected {
                format!("push to {} (rejected: not a fast-forward)", redact(remote))
            } else {
                format!("push to {}", redact(remote))
            },
            message,
        })
    }

    /// Commits `changes` on `branch` of `remote` and pushes them: the remote branch is fetched
    /// into this repository, the commit is made on its tip, and when the push is rejected
    /// because the remote moved, the changes are committed again on the new tip (no rebase).
    pub fn commit_and_push(
        &self,
        remote: &str,
        branch: &str,
        changes: &[(&str, Option<&[u8]>)],
        author: &Signature,
        message: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, Error> {
        self.check_branch(branch)?;
        let mut last = None;
        for _ in 0..PUSH_ATTEMPTS {
            self.fetch_branch(remote, branch, creds)?;
            let sha = self.commit(branch, changes, author, message)?;
            match self.push(remote, branch, creds) {
                Ok(()) => return Ok(sha),
                Err(Error::Git {
                    command, message, ..
                }) if command.contains("rejected") => {
                    last = Some(message);
                }
                Err(e) => return Err(e),
            }
        }
        Err(self.git_err(
            &format!("push to {}", redact(remote)),
            format!(
                "rejected {PUSH_ATTEMPTS} times as the remote kept moving: {}",
                last.unwrap_or_default()
            ),
        ))
    }

    /// Makes the local branch the remote's (forced: the remote is the truth). A branch the
    /// remote does not have yet is left as it is, so a first push creates it.
    fn fetch_branch(
        &self,
        remote: &str,
        branch: &str,
        creds: Option<&Credentials>,
    ) -> Result<(), Error> {
        let auth = Auth::new(creds).map_err(|e| self.io_err("cannot prepare credentials", e))?;
        let mut c = self.git();
        auth.apply(&mut c);
        c.args(["ls-remote", "--heads", "--", remote])
            .arg(format!("refs/heads/{branch}"));
        let out = c.output().map_err(|e| self.io_err("cannot run git", e))?;
        if !out.status.success() {
            return Err(self.git_err(
                &format!("ls-remote {}", redact(remote)),
                auth.scrub(&stderr_of(&out)),
            ));
        }
        if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return Ok(());
        }
        let mut c = self.git();
        auth.apply(&mut c);
        c.args(["fetch", "--quiet", "--no-tags", "--", remote])
            .arg(format!("+refs/heads/{branch}:refs/heads/{branch}"));
        let out = c.output().map_err(|e| self.io_err("cannot run git", e))?;
        if !out.status.success() {
            return Err(self.git_err(
                &format!("fetch {}", redact(remote)),
                auth.scrub(&stderr_of(&out)),
            ));
        }
        Ok(())
    }
}

/// Up to `5 ms × attempt`, varied by the clock and the thread, so colliding writers spread out.
fn jitter(attempt: u32) -> std::time::Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let spread = 5_000 * u64::from(attempt);
    std::time::Duration::from_micros(h.finish() % spread.max(1))
}

/// A path a commit may write: relative, inside the repository, never into `.git`.
fn check_path(repo: &Repo, path: &str) -> Result<(), Error> {
    let bad = |reason| Error::BadPath {
        repo: repo.name(),
        path: path.to_string(),
        reason,
    };
    if path.is_empty() || path.starts_with('/') {
        return Err(bad("expected a relative path inside the repository"));
    }
    for part in path.split('/') {
        match part {
            "" | "." | ".." => {
                return Err(bad("expected a path without empty, '.' or '..' components"));
            }
            p if p.eq_ignore_ascii_case(".git") => return Err(bad("a path may not enter .git")),
            p if p.contains(['\n', '\t', '\0']) => {
                return Err(bad("a path may not contain a newline, tab or NUL"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Fetches every branch and tag of `url` (`https://`, `http://`, `ssh://`, `file://`, scp-like)
/// into the bare repository `cache` (created when missing; one cache per repository however
/// many users read it), prunes what the remote deleted, points the cache's HEAD where the
/// remote's HEAD points, and opens it.
pub fn fetch(url: &str, cache: &Path, creds: Option<&Credentials>) -> Result<Repo, Error> {
    let shown = redact(url);
    let fail = |command: &str, message: String| Error::Git {
        repo: shown.clone(),
        command: command.to_string(),
        message,
    };
    let io = |message: &str, source| Error::Io {
        repo: shown.clone(),
        message: message.to_string(),
        source,
    };
    if url.starts_with('-') {
        return Err(fail("fetch", "a URL may not start with '-'".into()));
    }
    if !cache.join("HEAD").exists() {
        std::fs::create_dir_all(cache).map_err(|e| io("cannot create the fetch cache", e))?;
        let mut c = git();
        c.args(["init", "--quiet", "--bare"]).arg(cache);
        let out = c.output().map_err(|e| io("cannot run git init", e))?;
        if !out.status.success() {
            return Err(fail("init", stderr_of(&out)));
        }
    }
    let auth = Auth::new(creds).map_err(|e| io("cannot prepare credentials", e))?;
    let cache_dir: PathBuf = cache.to_path_buf();
    let mut c = git();
    c.arg("--git-dir").arg(&cache_dir);
    auth.apply(&mut c);
    c.args([
        "fetch",
        "--quiet",
        "--prune",
        "--prune-tags",
        "--force",
        "--",
        url,
        "+refs/heads/*:refs/heads/*",
        "+refs/tags/*:refs/tags/*",
    ]);
    let out = c.output().map_err(|e| io("cannot run git fetch", e))?;
    if !out.status.success() {
        return Err(fail("fetch", auth.scrub(&stderr_of(&out))));
    }
    // The remote's HEAD, so resolving HEAD in the cache means the remote's default branch.
    let mut c = git();
    c.arg("--git-dir").arg(&cache_dir);
    auth.apply(&mut c);
    c.args(["ls-remote", "--symref", "--", url, "HEAD"]);
    let out = c.output().map_err(|e| io("cannot run git ls-remote", e))?;
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        let head = text.lines().find_map(|l| {
            l.strip_prefix("ref: ")
                .and_then(|r| r.strip_suffix("\tHEAD"))
                .map(str::to_string)
        });
        if let Some(head) = head {
            let mut c = git();
            c.arg("--git-dir")
                .arg(&cache_dir)
                .args(["symbolic-ref", "HEAD", &head]);
            let out = c
                .output()
                .map_err(|e| io("cannot run git symbolic-ref", e))?;
            if !out.status.success() {
                return Err(fail("symbolic-ref", stderr_of(&out)));
            }
        }
    }
    Repo::open(cache)
}
