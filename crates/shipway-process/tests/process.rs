//! The supervisor with real processes: group kills, exit status, logs and orphans.

use std::path::Path;
use std::time::{Duration, Instant};

use shipway_process::{Exit, Process, Spec, group_alive, stop_orphan};

fn env() -> Vec<(String, String)> {
    std::env::vars().filter(|(k, _)| k == "PATH").collect()
}

fn spawn(dir: &Path, script: &str, env: &[(String, String)]) -> Process {
    let args = ["-c".to_string(), script.to_string()];
    Process::spawn(&Spec {
        program: "sh",
        args: &args,
        cwd: dir,
        env,
        log: dir.join("logs/0.log"),
    })
    .expect("spawn")
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// Waits until `pid` is no longer running; false if it still runs after 10 s.
async fn gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(pid) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await; // the poll interval of /proc
    }
    true
}

#[tokio::test]
async fn wait_kills_what_the_main_process_left_in_its_group_and_logs_its_output() {
    let dir = tempfile::tempdir().unwrap();
    // The leftover holds no pipe, so only the group kill can end it.
    let mut p = spawn(
        dir.path(),
        "sleep 300 >/dev/null 2>&1 & echo $! > child.pid; echo hello; exit 7",
        &env(),
    );
    assert_eq!(p.wait_exit().await, Exit::Code(7));
    let child: i32 = std::fs::read_to_string(dir.path().join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(gone(child).await, "the leftover {child} still runs");
    let log = std::fs::read_to_string(dir.path().join("logs/0.log")).unwrap();
    assert_eq!(log, "hello\n");
}

#[tokio::test]
async fn a_process_killed_by_a_signal_exits_with_128_plus_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = spawn(dir.path(), "kill -KILL $$", &env());
    assert_eq!(p.wait().await, 128 + 9);
    let mut p = spawn(dir.path(), "trap '' TERM; echo ready; sleep 300", &env());
    // The trap is set once "ready" is logged.
    let log = dir.path().join("logs/0.log");
    while std::fs::read_to_string(&log).map_or(true, |l| !l.contains("ready")) {
        tokio::time::sleep(Duration::from_millis(10)).await; // the poll interval of the log
    }
    let started = Instant::now();
    // SIGTERM ignored: SIGKILL after the grace period.
    let code = p.stop(Duration::from_millis(200)).await;
    assert_eq!(code, 128 + 9);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn an_orphan_is_stopped_only_when_it_carries_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let mut marked = env();
    marked.push(("SHIPWAY_TEST_MARKER".into(), "run-1".into()));
    let ours = spawn(dir.path(), "sleep 300", &marked);
    let ours_pid = ours.pid();
    let mut theirs = spawn(dir.path(), "sleep 300", &env());
    let grace = Duration::from_secs(5);
    assert!(!stop_orphan(theirs.pid(), "SHIPWAY_TEST_MARKER=run-1", grace).await);
    assert!(!stop_orphan(ours_pid, "SHIPWAY_TEST_MARKER=run-2", grace).await);
    assert!(group_alive(theirs.pid()) && running(ours_pid));
    // Reaped as it dies, as init reaps a real orphan, so the stop sees it go before the grace.
    let mut ours = ours;
    let reaper = tokio::spawn(async move { ours.wait_exit().await });
    let started = Instant::now();
    assert!(stop_orphan(ours_pid, "SHIPWAY_TEST_MARKER=run-1", grace).await);
    assert!(started.elapsed() < grace, "SIGTERM did not stop it");
    assert_eq!(reaper.await.unwrap(), Exit::Signal(15));
    assert_eq!(theirs.stop(Duration::from_secs(5)).await, 128 + 15);
}
