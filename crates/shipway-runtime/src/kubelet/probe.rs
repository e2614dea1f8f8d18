//! Startup, liveness and readiness probes: httpGet, tcpSocket and exec.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use super::Kubelet;
use super::sandbox::Sandbox;
use super::worker::PodWorker;

impl PodWorker {
    /// Runs the container's startup, liveness and readiness probes; asks for a kill on liveness
    /// (or startup) failure.
    pub(super) async fn probe(
        self: Arc<Self>,
        index: usize,
        c: Value,
        sandbox: Arc<Sandbox>,
        env: Arc<Vec<(String, String)>>,
        kill: watch::Sender<bool>,
    ) {
        let cname = c["name"].as_str().unwrap_or_default().to_string();
        let port_of = |port: &Value| -> Option<u16> {
            let mapping = sandbox
                .port_mappings
                .iter()
                .filter(|m| m["container"] == cname.as_str())
                .find(|m| match port {
                    Value::Number(n) => m["containerPort"].as_i64() == n.as_i64(),
                    Value::String(name) => m["name"] == name.as_str(),
                    _ => false,
                });
            mapping
                .and_then(|m| m["hostPort"].as_u64())
                .map(|p| p as u16)
                .or_else(|| port.as_u64().map(|p| p as u16))
        };
        // Exec probes run where the container runs.
        let image_root = Kubelet::container_root(&self.config.data_dir, &self.pod, &cname);
        let check = |probe: Value| {
            let port = probe
                .pointer("/httpGet/port")
                .or_else(|| probe.pointer("/tcpSocket/port"))
                .and_then(port_of);
            let timeout = Duration::from_secs(probe["timeoutSeconds"].as_u64().unwrap_or(1).max(1));
            let root = image_root.clone();
            let env = env.clone();
            async move { run_probe(&probe, port, timeout, &root, &env).await }
        };
        let params = |p: &Value| {
            (
                Duration::from_secs(p["initialDelaySeconds"].as_u64().unwrap_or(0)),
                Duration::from_secs(p["periodSeconds"].as_u64().unwrap_or(10).max(1)),
                p["successThreshold"].as_u64().unwrap_or(1).max(1),
                p["failureThreshold"].as_u64().unwrap_or(3).max(1),
            )
        };
        if let Some(startup) = c.get("startupProbe").cloned() {
            let (delay, period, _, failures) = params(&startup);
            tokio::time::sleep(delay).await;
            let mut failed = 0;
            loop {
                if check(startup.clone()).await {
                    break;
                }
                failed += 1;
                if failed >= failures {
                    let _ = kill.send(true);
                    return;
                }
                tokio::time::sleep(period).await;
            }
            self.set_container(false, index, |st| st.started = true);
        }
        let liveness = c.get("livenessProbe").cloned().map(|p| {
            let this = self.clone();
            let cname = cname.clone();
            let kill = kill.clone();
            async move {
                let (delay, period, _, failures) = params(&p);
                tokio::time::sleep(delay).await;
                let mut failed = 0;
                loop {
                    if check(p.clone()).await {
                        failed = 0;
                    } else {
                        failed += 1;
                        if failed >= failures {
                            tracing::info!(pod = %this.key, container = %cname, "liveness probe failed; restarting");
                            let _ = kill.send(true);
                            return;
                        }
                    }
                    tokio::time::sleep(period).await;
                }
            }
        });
        let readiness = {
            let this = self.clone();
            let p = c.get("readinessProbe").cloned();
            async move {
                let Some(p) = p else {
                    this.set_container(false, index, |st| st.ready = true);
                    return std::future::pending::<()>().await;
                };
                let (delay, period, successes, failures) = params(&p);
                tokio::time::sleep(delay).await;
                let (mut ok, mut bad) = (0, 0);
                loop {
                    if check(p.clone()).await {
                        ok += 1;
                        bad = 0;
                        if ok >= successes {
                            this.set_container(false, index, |st| st.ready = true);
                        }
                    } else {
                        bad += 1;
                        ok = 0;
                        if bad >= failures {
                            this.set_container(false, index, |st| st.ready = false);
                        }
                    }
                    tokio::time::sleep(period).await;
                }
            }
        };
        match liveness {
            Some(l) => {
                tokio::select! {
                    _ = l => {}
                    _ = readiness => {}
                }
            }
            None => readiness.await,
        }
    }
}

/// One probe attempt: httpGet succeeds on 2xx/3xx, tcpSocket on connect, exec on exit code 0.
/// Exec probes run like the container: in its root, with its environment.
pub(super) async fn run_probe(
    probe: &Value,
    port: Option<u16>,
    timeout: Duration,
    root: &Path,
    env: &[(String, String)],
) -> bool {
    let attempt = async {
        if let Some(http) = probe.get("httpGet") {
            let Some(port) = port else { return false };
            let path = http["path"].as_str().unwrap_or("/");
            return http_get_ok(port, path).await;
        }
        if probe.get("tcpSocket").is_some() {
            let Some(port) = port else { return false };
            return tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok();
        }
        if let Some(cmd) = probe.pointer("/exec/command").and_then(Value::as_array) {
            let argv: Vec<String> = cmd
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect();
            let Some((program, args)) = argv.split_first() else {
                return false;
            };
            let mut command = tokio::process::Command::new(program);
            command
                .args(args)
                .current_dir(root)
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            return matches!(command.status().await, Ok(s) if s.success());
        }
        false
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(false)
}

/// A minimal HTTP/1.1 GET: probes need a status line, nothing more.
pub(super) async fn http_get_ok(port: u16, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: shipway-probe\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 32];
    let mut n = 0;
    while n < 12 {
        match stream.read(&mut head[n..]).await {
            Ok(0) | Err(_) => break,
            Ok(m) => n += m,
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (200..400).contains(&code)
}
