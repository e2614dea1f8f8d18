//! Supervised processes (the runtime's containers): started in their own group with output
//! appended to a size-capped log, waited for with the group's leftovers killed, stopped with
//! SIGTERM to the group, a grace period, then SIGKILL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::Signal;
use tokio::process::{Child, Command};

use crate::log::{LogWriter, copy_to_log};
use crate::{Exit, resolve, signal_group};

/// How long the log copiers may take to finish once a container's group is killed.
const COPIER_DRAIN: Duration = Duration::from_secs(2);

pub struct Spec<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
    pub log: PathBuf,
}

/// A running container process.
pub struct Process {
    child: Child,
    pgid: i32,
    copiers: Vec<tokio::task::JoinHandle<()>>,
}

impl Process {
    /// Starts the program in a new process group with exactly `env` (plus nothing inherited but
    /// what the caller put there), its output appended to `log`.
    pub fn spawn(spec: &Spec<'_>) -> std::io::Result<Process> {
        if let Some(parent) = spec.log.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let program = resolve(spec.program, spec.cwd, spec.env);
        let mut child = Command::new(&program)
            .args(spec.args)
            .current_dir(spec.cwd)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false)
            .spawn()?;
        let pid = child.id().ok_or_else(|| {
            std::io::Error::other("the process exited before it could be tracked")
        })?;
        let log = std::sync::Arc::new(tokio::sync::Mutex::new(LogWriter::new(spec.log.clone())));
        let mut copiers = Vec::new();
        if let Some(out) = child.stdout.take() {
            copiers.push(tokio::spawn(copy_to_log(out, log.clone())));
        }
        if let Some(err) = child.stderr.take() {
            copiers.push(tokio::spawn(copy_to_log(err, log)));
        }
        Ok(Process {
            child,
            pgid: pid as i32,
            copiers,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pgid
    }

    /// Waits for the process to exit, then kills what it left in its group (as a container's
    /// processes die with its PID namespace when the main one ends); returns its exit code
    /// (128 + signal when killed, -1 when it could not be waited for).
    pub async fn wait(&mut self) -> i32 {
        self.wait_exit().await.code().unwrap_or(-1)
    }

    /// [`Process::wait`] with the exit as an [`Exit`] (`Code` or `Signal`; `NotStarted` when
    /// waiting failed).
    pub async fn wait_exit(&mut self) -> Exit {
        let status = self.child.wait().await;
        // Before the copiers are awaited: a surviving child holds the pipes open, so they would
        // never end, and it would outlive restarts and the pod itself.
        signal_group(self.pgid, Signal::KILL);
        // A child that left the group (setsid) may still hold a pipe: the log then loses the
        // rest of its output rather than the container never ending.
        let deadline = tokio::time::Instant::now() + COPIER_DRAIN;
        for mut c in self.copiers.drain(..) {
            if tokio::time::timeout_at(deadline, &mut c).await.is_err() {
                c.abort();
            }
        }
        status.map_or(Exit::NotStarted, Exit::of)
    }

    /// SIGTERM to the whole group; SIGKILL when it has not exited after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> i32 {
        signal_group(self.pgid, Signal::TERM);
        tokio::select! {
            // `wait` kills what the main process left behind in its group.
            code = self.wait() => code,
            _ = tokio::time::sleep(grace) => {
                signal_group(self.pgid, Signal::KILL);
                self.wait().await
            }
        }
    }
}
