//! One process supervisor for the runtime's containers and the pipeline's steps: every process
//! in its own process group, stopped by signalling the whole group; exit status as [`Exit`]
//! (with the shell's `128 + signal` from [`Exit::code`]); `PATH` lookup as `execvp` does it
//! (first executable match wins); output streamed line by line ([`stream::run`], for steps) or
//! appended to size-capped log files ([`Process`], for containers); and [`stop_orphan`], which
//! stops a group a crashed parent left behind, recognised by an environment marker.
//!
//! Start with [`Process::spawn`] or [`stream::run`].

mod log;
pub mod stream;
mod supervised;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::{Pid, Signal};

pub use log::LOG_FILE_LIMIT;
pub use supervised::{Process, Spec};

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// Killed by this signal, which it did not handle.
    Signal(i32),
    /// Its timeout fired and its group was killed.
    TimedOut,
    /// It was cancelled: its group got SIGTERM, then SIGKILL after the grace period.
    Cancelled,
    /// It could not be started (missing program, bad directory).
    NotStarted,
}

impl Exit {
    /// The exit code a shell reports: the code, or `128 + signal`; none when the process timed
    /// out, was cancelled or never started.
    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(c),
            Exit::Signal(s) => Some(128 + s),
            Exit::TimedOut | Exit::Cancelled | Exit::NotStarted => None,
        }
    }

    fn of(status: std::process::ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            // Neither: stopped or continued, which `wait` does not report; treat as a failure.
            (None, None) => Exit::Code(-1),
        }
    }
}

/// Sends `signal` to the process group `pgid`. A group that is gone already is the goal, not an
/// error.
pub fn signal_group(pgid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Whether any process of group `pgid` is alive (zombies included).
pub fn group_alive(pgid: i32) -> bool {
    Pid::from_raw(pgid).is_some_and(|pid| rustix::process::test_kill_process_group(pid).is_ok())
}

/// The search path when the environment has no `PATH`, as glibc's `execvp` uses.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Finds `program` as `execvp` would with `env`: a name with a slash is a path (relative to
/// `cwd`); a bare name is looked up in `PATH` (the last `PATH` in `env`, which is the one the
/// child gets), directory by directory in order, the first regular file with an execute bit
/// winning; relative directories are relative to `cwd`. A name not found is returned as given,
/// so spawning it fails with "not found".
///
/// An absolute path also lets the standard library start the process with `posix_spawn`
/// instead of `fork` (which copies this process's page tables).
pub fn resolve(program: &str, cwd: &Path, env: &[(String, String)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return cwd.join(program);
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = cwd.join(dir).join(program);
        if std::fs::metadata(&candidate)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        {
            return candidate;
        }
    }
    PathBuf::from(program)
}

/// Stops a process group left by an earlier run of this program, if it is still alive and still
/// ours: a member's environment must carry `marker` (`KEY=value`), so a reused pid is never
/// signalled. The leader is looked at first, then (when it is gone: the group's other processes
/// live on) every process of the group. SIGTERM, then SIGKILL after `grace`. Returns whether
/// it was ours.
pub async fn stop_orphan(pgid: i32, marker: &str, grace: Duration) -> bool {
    let has_marker = |pid: &str| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .map(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
            .unwrap_or(false)
    };
    let ours =
        has_marker(&pgid.to_string()) || group_members(pgid).iter().any(|pid| has_marker(pid));
    if !ours {
        return false;
    }
    signal_group(pgid, Signal::TERM);
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if !group_alive(pgid) {
            return true;
        }
        // Not our child: there is nothing to wait on but the group's disappearance.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal_group(pgid, Signal::KILL);
    true
}

/// The pids of the processes in group `pgid`, from `/proc/PID/stat` (its fifth field).
fn group_members(pgid: i32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<i32>().ok())
                    == Some(pgid)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn path_lookup_takes_the_first_executable_match_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let [a, b, c] = ["a", "b", "c"].map(|d| dir.path().join(d));
        for d in [&a, &b, &c] {
            std::fs::create_dir(d).unwrap();
        }
        write(&a.join("tool"), 0o644); // not executable: skipped
        write(&b.join("tool"), 0o755);
        write(&c.join("tool"), 0o755);
        let path = |p: String| vec![("PATH".to_string(), p)];
        let env = path(format!("{}:{}:{}", a.display(), b.display(), c.display()));
        assert_eq!(resolve("tool", dir.path(), &env), b.join("tool"));
        // The last PATH is the one the child gets, so it is the one searched.
        let mut env = path(c.display().to_string());
        env.extend(path(format!("{}:{}", b.display(), c.display())));
        assert_eq!(resolve("tool", dir.path(), &env), b.join("tool"));
        // Relative directories and names with a slash are relative to the working directory.
        assert_eq!(
            resolve("tool", dir.path(), &path("c".into())),
            c.join("tool")
        );
        assert_eq!(
            resolve("./b/tool", dir.path(), &[]),
            dir.path().join("./b/tool")
        );
        assert_eq!(
            resolve("missing", dir.path(), &env),
            PathBuf::from("missing")
        );
    }

    #[test]
    fn a_signal_is_an_exit_of_its_own_with_the_shells_code() {
        let status = std::process::Command::new("sh")
            .args(["-c", "kill -TERM $$"])
            .status()
            .unwrap();
        assert_eq!(Exit::of(status), Exit::Signal(15));
        assert_eq!(Exit::of(status).code(), Some(143));
        let status = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .status()
            .unwrap();
        assert_eq!(Exit::of(status).code(), Some(3));
    }
}
