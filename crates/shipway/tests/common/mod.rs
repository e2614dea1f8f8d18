//! What the end-to-end tests of the `shipway` binary share: a `shipway up` child process and
//! the CLI run against it, images, git, waiting.
#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_shipway");

/// A `shipway up` child process on an ephemeral port.
pub struct Up {
    pub child: Child,
    pub server: String,
    /// What the server printed to stderr, but its "listening on" line.
    pub log: Arc<Mutex<String>>,
}

impl Up {
    pub fn start(data: &Path) -> Up {
        Up::start_with(data, &[])
    }

    pub fn start_with(data: &Path, extra: &[&str]) -> Up {
        Up::start_with_env(data, extra, &[])
    }

    pub fn start_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Up {
        Up::spawn(Command::new(BIN), data, extra, env)
    }

    /// `shipway up` started from a shell that first runs `prelude` (`umask 022`, `ulimit -Sn 256`).
    pub fn start_after(prelude: &str, data: &Path) -> Up {
        let mut sh = Command::new("sh");
        sh.args(["-c", &format!("{prelude} && exec \"$0\" \"$@\""), BIN]);
        Up::spawn(sh, data, &[], &[])
    }

    pub fn spawn(mut command: Command, data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Up {
        let mut child = command
            .args(["up", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(extra)
            .env_remove("SHIPWAY_DATABASE")
            .env_remove("SHIPWAY_LOG")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let mut before = String::new();
        let server = loop {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "shipway up exited before listening: {before}"
            );
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.trim().to_string();
            }
            before.push_str(&line);
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        let log = Arc::new(Mutex::new(before));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let mut log = kept.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Up { child, server, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn cli(&self, data: &Path, args: &[&str]) -> Output {
        self.cli_with_stdin(data, args, "")
    }

    pub fn cli_with_stdin(&self, data: &Path, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(BIN)
            .args(args)
            .env("SHIPWAY_SERVER", &self.server)
            .env("SHIPWAY_DATA", data)
            .env_remove("SHIPWAY_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Up {
    /// A graceful stop, which stops every pod's processes too (a SIGKILL would leave them
    /// running once the test's data directory is gone); SIGKILL only if it does not end.
    fn drop(&mut self) {
        // Already reaped (kill9): its pid may belong to another process by now.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Imports `shell:v1` into the data directory: an empty image whose process is `/bin/sh -c`, so
/// each pod's `args` is its script.
pub fn import_shell_image(data: &Path) {
    let app = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["image", "import", "shell:v1"])
        .arg(app.path())
        .args(["--entrypoint", "/bin/sh", "-c"])
        .env("SHIPWAY_DATA", data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Runs git in `dir` with a fixed identity and no user configuration; with `token`, a
/// credential helper hands it to Shipway's hosted git as the password. Its trimmed stdout.
pub fn git_in(dir: &Path, token: Option<&str>, args: &[&str]) -> String {
    let mut git = Command::new("git");
    git.args(["-c", "user.name=dev", "-c", "user.email=dev@example.com"]);
    if let Some(token) = token {
        git.args([
            "-c",
            "credential.helper=!f() { echo username=shipway; echo \"password=$TOKEN\"; }; f",
        ])
        .env("TOKEN", token);
    }
    let out = git
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
