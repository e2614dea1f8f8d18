//! Running one step's command as a process in its own process group, streaming its output
//! line by line, and killing the whole group on timeout or cancellation.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// Killed by a signal it did not handle.
    Signal,
    TimedOut,
    Cancelled,
    /// It could not be started (missing shell, bad directory).
    NotStarted,
}

/// How long a cancelled process group gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_millis(2500);

/// A line of output, `true` for stderr.
pub type OutputLine = (bool, String);

/// Runs `program args` in `cwd` with exactly `env`, sending each output line to `lines`.
pub async fn run(
    program: &str,
    args: &[String],
    cwd: &Path,
    env: &[(String, String)],
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    lines: mpsc::UnboundedSender<OutputLine>,
) -> Result<Exit, String> {
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or("", |(_, v)| v.as_str());
    let mut cmd = Command::new(resolve(program, path));
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout or cancel reaches the children the script started.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = lines.send((true, format!("cannot start {program}: {e}")));
            return Ok(Exit::NotStarted);
        }
    };
    let pid = child.id().and_then(|id| i32::try_from(id).ok());
    let readers = [
        child
            .stdout
            .take()
            .map(|s| forward(s, false, lines.clone())),
        child.stderr.take().map(|s| forward(s, true, lines.clone())),
    ];
    drop(lines);
    let sleep = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let exit = tokio::select! {
        status = child.wait() => match status {
            Ok(s) => s.code().map_or(Exit::Signal, Exit::Code),
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        },
        () = sleep => {
            kill_group(pid, &mut child).await;
            Exit::TimedOut
        }
        () = cancel.cancelled() => {
            terminate_group(pid, &mut child).await;
            Exit::Cancelled
        }
    };
    // The group may have left children holding the pipes; after the leader exits, kill the
    // rest so the readers finish.
    signal_group(pid, rustix::process::Signal::KILL);
    for r in readers.into_iter().flatten() {
        let _ = r.await;
    }
    Ok(exit)
}

fn forward(
    stream: impl AsyncRead + Unpin + Send + 'static,
    stderr: bool,
    lines: mpsc::UnboundedSender<OutputLine>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    let text = text.trim_end_matches(['\n', '\r']).to_string();
                    if lines.send((stderr, text)).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

fn signal_group(pid: Option<i32>, signal: rustix::process::Signal) {
    if let Some(pid) = pid.and_then(rustix::process::Pid::from_raw) {
        // The group may be gone already; that is the goal, not an error.
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

async fn kill_group(pid: Option<i32>, child: &mut tokio::process::Child) {
    signal_group(pid, rustix::process::Signal::KILL);
    let _ = child.wait().await;
}

/// SIGTERM first, so scripts can clean up; SIGKILL after [`GRACE`].
async fn terminate_group(pid: Option<i32>, child: &mut tokio::process::Child) {
    signal_group(pid, rustix::process::Signal::TERM);
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        kill_group(pid, child).await;
    }
}

/// Finds `program` on the step's `PATH`. Passing an absolute path lets the standard library
/// start the process with `posix_spawn` instead of `fork` (which copies this process's page
/// tables and dominated step overhead); it only looks the name up itself when the child's
/// `PATH` differs from ours.
fn resolve(program: &str, path: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return program.into();
    }
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if std::fs::metadata(&candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        {
            return candidate;
        }
    }
    program.into()
}
