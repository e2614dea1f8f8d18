//! What the benchmarks of the `shipway` binary share: a real `shipway up` and its RSS.
#![allow(dead_code)] // each benchmark uses a part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_shipway");

pub struct Up {
    pub child: Child,
    pub server: String,
    pub token: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        // A graceful stop also stops every pod's process.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// `shipway up` on an ephemeral port over `data`; stopped gracefully (pods too) on drop.
pub fn start(data: &std::path::Path) -> Up {
    let mut child = Command::new(BIN)
        .args(["up", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .stderr(Stdio::piped())
        .spawn()
        .expect("shipway up");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    let server = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).expect("read") > 0,
            "shipway up exited"
        );
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in stderr.lines() {});
    let token = std::fs::read_to_string(data.join("admin.token"))
        .expect("token")
        .trim()
        .to_string();
    Up {
        child,
        server,
        token,
    }
}

/// A process's resident set in MiB (NaN once it is gone).
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}
