//! Container processes: each in its own process group, stopped with SIGTERM to the group, a grace
//! period, then SIGKILL; output captured into size-capped log files.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Log files are rotated at this size; one rotated file is kept per container instance.
pub const LOG_FILE_LIMIT: u64 = 10 * 1024 * 1024;

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
    pgid: Pid,
    copiers: Vec<tokio::task::JoinHandle<()>>,
}

impl Process {
    /// Starts the program in a new process group with exactly `env` (plus nothing inherited but
    /// what the caller put there), its output appended to `log`.
    pub fn spawn(spec: &Spec<'_>) -> std::io::Result<Process> {
        if let Some(parent) = spec.log.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let program = resolve_program(spec.program, spec.cwd, spec.env);
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
            pgid: Pid::from_raw(pid as i32),
            copiers,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pgid.as_raw()
    }

    /// Waits for the process to exit, then kills what it left in its group (as a container's
    /// processes die with its PID namespace when the main one ends); returns its exit code
    /// (128 + signal when killed).
    pub async fn wait(&mut self) -> i32 {
        let status = self.child.wait().await;
        // Before the copiers are awaited: a surviving child holds the pipes open, so they would
        // never end, and it would outlive restarts and the pod itself.
        let _ = killpg(self.pgid, Signal::SIGKILL);
        // A child that left the group (setsid) may still hold a pipe: the log then loses the
        // rest of its output rather than the container never ending.
        let deadline = tokio::time::Instant::now() + COPIER_DRAIN;
        for mut c in self.copiers.drain(..) {
            if tokio::time::timeout_at(deadline, &mut c).await.is_err() {
                c.abort();
            }
        }
        match status {
            Ok(s) => {
                use std::os::unix::process::ExitStatusExt;
                s.code()
                    .or_else(|| s.signal().map(|sig| 128 + sig))
                    .unwrap_or(-1)
            }
            Err(_) => -1,
        }
    }

    /// SIGTERM to the whole group; SIGKILL when it has not exited after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> i32 {
        let _ = killpg(self.pgid, Signal::SIGTERM);
        tokio::select! {
            // `wait` kills what the main process left behind in its group.
            code = self.wait() => code,
            _ = tokio::time::sleep(grace) => {
                let _ = killpg(self.pgid, Signal::SIGKILL);
                self.wait().await
            }
        }
    }
}

/// Stops a process group left by an earlier `shipway up`, if it is still alive and still ours:
/// its environment must carry our marker, so a reused pid is never signalled.
pub async fn stop_orphan(pgid: i32, marker: &str, grace: Duration) -> bool {
    let ours = std::fs::read(format!("/proc/{pgid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
        .unwrap_or(false);
    if !ours {
        return false;
    }
    let pid = Pid::from_raw(pgid);
    let _ = killpg(pid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if killpg(pid, None).is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = killpg(pid, Signal::SIGKILL);
    true
}

/// A relative program with a slash runs from the working directory; a bare name is looked up in
/// the container's PATH, as execvp would with the container's environment.
fn resolve_program(program: &str, cwd: &Path, env: &[(String, String)]) -> PathBuf {
    if program.contains('/') {
        return cwd.join(program);
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = cwd.join(dir).join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from(program)
}

struct LogWriter {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    written: u64,
    limit: u64,
}

impl LogWriter {
    fn new(path: PathBuf) -> LogWriter {
        LogWriter {
            path,
            file: None,
            written: 0,
            limit: LOG_FILE_LIMIT,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            // 0600: logs may show Secret values.
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)
                .await?;
            self.written = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            self.file = Some(file);
        }
        if self.written + bytes.len() as u64 > self.limit && self.written > 0 {
            self.file = None;
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            tokio::fs::rename(&self.path, &rotated).await?;
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)
                .await?;
            self.written = 0;
            self.file = Some(file);
        }
        if let Some(f) = &mut self.file {
            f.write_all(bytes).await?;
            // tokio's File writes in the background; flush so readers see each line at once.
            f.flush().await?;
            self.written += bytes.len() as u64;
        }
        Ok(())
    }
}

/// Copies whole lines where possible, so stdout and stderr interleave by line, not by byte.
async fn copy_to_log(
    mut from: impl AsyncRead + Unpin,
    log: std::sync::Arc<tokio::sync::Mutex<LogWriter>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                if let Some(last_nl) = pending.iter().rposition(|b| *b == b'\n') {
                    let rest = pending.split_off(last_nl + 1);
                    let _ = log.lock().await.write(&pending).await;
                    pending = rest;
                } else if pending.len() > 64 * 1024 {
                    let _ = log.lock().await.write(&pending).await;
                    pending.clear();
                }
            }
        }
    }
    if !pending.is_empty() {
        let _ = log.lock().await.write(&pending).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn logs_rotate_at_their_size_cap_keeping_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::new(path.clone());
        w.limit = 100;
        for i in 0..30 {
            w.write(format!("line {i:02}\n").as_bytes()).await.unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let rotated = std::fs::read_to_string(dir.path().join("0.log.1")).unwrap();
        assert!(current.len() <= 100 && rotated.len() <= 100);
        assert!(current.ends_with("line 29\n"), "{current}");
        assert!(
            rotated.ends_with(&format!("line {:02}\n", 29 - current.lines().count())),
            "{rotated}"
        );
    }
}
