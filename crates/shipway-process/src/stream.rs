//! Streamed processes (the pipeline's steps): one command in its own process group, each output
//! line sent as it comes, the whole group killed on timeout or cancellation.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::Signal;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Exit, resolve, signal_group};

/// How long a cancelled process group gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_millis(2500);

/// Longest piece of an output line: a longer line is sent in pieces of at most this many bytes,
/// so a process printing without newlines cannot make the runner buffer without bound. GitHub's
/// runner documents no such limit for stored logs (its live console cuts at 1,024 characters);
/// 64 KiB is ours.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// A line of output, or a piece of one longer than [`MAX_LINE_BYTES`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputLine {
    pub stderr: bool,
    pub text: String,
    /// The line goes on in the next piece of the same stream.
    pub continues: bool,
}

/// Runs `program args` in `cwd` with exactly `env`, sending each output line to `lines`. With
/// `pids`, the process group is recorded in that directory (a file named after it) while it
/// runs, so a successor of a killed parent can stop what it left ([`crate::stop_orphan`]).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    program: &str,
    args: &[String],
    cwd: &Path,
    env: &[(String, String)],
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    lines: mpsc::UnboundedSender<OutputLine>,
    pids: Option<&Path>,
) -> Result<Exit, String> {
    let mut cmd = Command::new(resolve(program, cwd, env));
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
            let _ = lines.send(OutputLine {
                stderr: true,
                text: format!("cannot start {program}: {e}"),
                continues: false,
            });
            return Ok(Exit::NotStarted);
        }
    };
    let pid = child.id().and_then(|id| i32::try_from(id).ok());
    let pid_file = match (pids, pid) {
        (Some(dir), Some(pid)) => {
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            let file = dir.join(pid.to_string());
            // Private, as every run record is; best effort: without the record only the
            // cleanup after a crash is lost.
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&file)
                .and_then(|mut f| std::io::Write::write_all(&mut f, pid.to_string().as_bytes()));
            Some(file)
        }
        _ => None,
    };
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
            Ok(s) => Exit::of(s),
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
    if let Some(pid) = pid {
        signal_group(pid, Signal::KILL);
    }
    for r in readers.into_iter().flatten() {
        let _ = r.await;
    }
    if let Some(f) = pid_file {
        let _ = std::fs::remove_file(f);
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
            let (used, newline) = match reader.fill_buf().await {
                Ok([]) | Err(_) => break,
                Ok(chunk) => {
                    let room = MAX_LINE_BYTES - buf.len();
                    match chunk.iter().take(room).position(|&b| b == b'\n') {
                        Some(i) => {
                            buf.extend_from_slice(&chunk[..i]);
                            (i + 1, true)
                        }
                        None => {
                            let n = chunk.len().min(room);
                            buf.extend_from_slice(&chunk[..n]);
                            (n, false)
                        }
                    }
                }
            };
            reader.consume(used);
            if newline {
                let text = String::from_utf8_lossy(&buf);
                let text = text.trim_end_matches('\r').to_string();
                buf.clear();
                if lines
                    .send(OutputLine {
                        stderr,
                        text,
                        continues: false,
                    })
                    .is_err()
                {
                    return;
                }
            } else if buf.len() >= MAX_LINE_BYTES {
                // Cut where a character ends: the bytes of one cut in two go with the next piece.
                let cut = match std::str::from_utf8(&buf) {
                    Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
                    _ => buf.len(),
                };
                let text = String::from_utf8_lossy(&buf[..cut]).into_owned();
                buf.drain(..cut);
                if lines
                    .send(OutputLine {
                        stderr,
                        text,
                        continues: true,
                    })
                    .is_err()
                {
                    return;
                }
            }
        }
        // Output that ends without a newline is a line too.
        if !buf.is_empty() {
            let text = String::from_utf8_lossy(&buf)
                .trim_end_matches('\r')
                .to_string();
            let _ = lines.send(OutputLine {
                stderr,
                text,
                continues: false,
            });
        }
    })
}

async fn kill_group(pid: Option<i32>, child: &mut tokio::process::Child) {
    if let Some(pid) = pid {
        signal_group(pid, Signal::KILL);
    }
    let _ = child.wait().await;
}

/// SIGTERM first, so scripts can clean up; SIGKILL after [`GRACE`].
async fn terminate_group(pid: Option<i32>, child: &mut tokio::process::Child) {
    if let Some(pid) = pid {
        signal_group(pid, Signal::TERM);
    }
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        kill_group(pid, child).await;
    }
}
