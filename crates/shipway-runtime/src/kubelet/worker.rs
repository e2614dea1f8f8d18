//! A pod worker: one pod's processes for their whole life, init containers first, then the
//! containers with kubelet's restart policy and backoff.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use shipway_controller::Cache;
use shipway_model::{Key, Object};
use shipway_store::Store;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::env::{RefData, expand_vars};
use super::sandbox::{Sandbox, working_dir};
use super::{Kubelet, KubeletConfig};
use crate::images::ImageStore;
use crate::process::{self, Process};
use crate::workload::{self, now_rfc3339};

/// What one container is doing, in kubelet's terms.
#[derive(Clone, Debug, Default)]
pub(super) struct ContainerState {
    pub(super) state: Value,
    pub(super) last_state: Value,
    pub(super) restart_count: i64,
    pub(super) ready: bool,
    pub(super) started: bool,
}

#[derive(Default)]
pub(super) struct PodState {
    pub(super) init: BTreeMap<usize, (String, ContainerState)>,
    pub(super) containers: BTreeMap<usize, (String, ContainerState)>,
    pub(super) initialized: bool,
    /// Set when the pod will not run again (every container finished for good).
    pub(super) finished: Option<&'static str>,
    pub(super) port_mappings: Vec<Value>,
    pub(super) start_time: Option<String>,
    /// Pod-level problem shown before containers run (for example an unknown image).
    pub(super) pending_reason: Option<(String, String)>,
}

/// Owns one pod's processes.
pub(super) struct PodWorker {
    pub(super) store: Store,
    pub(super) cache: Cache,
    pub(super) config: Arc<KubeletConfig>,
    pub(super) images: ImageStore,
    pub(super) key: Key,
    pub(super) pod: Object,
    pub(super) state: Arc<Mutex<PodState>>,
    pub(super) changed: Arc<Notify>,
}

pub(super) fn waiting(reason: &str, message: &str) -> Value {
    if message.is_empty() {
        json!({"waiting": {"reason": reason}})
    } else {
        json!({"waiting": {"reason": reason, "message": message}})
    }
}

/// Restarts after a crash: the first at once, then `base` doubling up to `max`, like kubelet.
pub(super) fn backoff(config: &KubeletConfig, crashes: u32) -> Duration {
    if crashes <= 1 {
        return Duration::ZERO;
    }
    config
        .backoff_base
        .saturating_mul(2u32.saturating_pow(crashes - 2))
        .min(config.backoff_max)
}

impl PodWorker {
    pub(super) fn spec(&self) -> &Value {
        self.pod.spec().unwrap_or(&Value::Null)
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut PodState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_one();
    }

    pub(super) fn set_container(
        &self,
        init: bool,
        index: usize,
        f: impl FnOnce(&mut ContainerState),
    ) {
        self.update(|s| {
            let map = if init { &mut s.init } else { &mut s.containers };
            if let Some((_, c)) = map.get_mut(&index) {
                f(c);
            }
        });
    }

    pub(super) async fn run(self, mut stop: watch::Receiver<Option<Duration>>) {
        let this = Arc::new(self);
        let writer = tokio::spawn(this.clone().write_status_loop());
        this.clone().lifecycle(&mut stop).await;
        // Let the last status reach the store before the pod may be released.
        this.changed.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.abort();
        this.write_status().await;
    }

    pub(super) fn restart_policy(&self) -> &str {
        self.spec()
            .get("restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always")
    }

    pub(super) async fn lifecycle(self: Arc<Self>, stop: &mut watch::Receiver<Option<Duration>>) {
        let containers: Vec<Value> = self
            .spec()
            .get("containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let inits: Vec<Value> = self
            .spec()
            .get("initContainers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let previous = self.pod.status().cloned().unwrap_or(Value::Null);
        let restarts = |field: &str, name: &str| {
            previous[field]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == name)
                .and_then(|c| c["restartCount"].as_i64())
                .unwrap_or(0)
        };
        self.update(|s| {
            s.start_time = previous["startTime"]
                .as_str()
                .map(String::from)
                .or_else(|| Some(now_rfc3339()));
            for (i, c) in inits.iter().enumerate() {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                let count = restarts("initContainerStatuses", &name);
                s.init.insert(
                    i,
                    (
                        name,
                        ContainerState {
                            state: waiting("PodInitializing", ""),
                            restart_count: count,
                            ..Default::default()
                        },
                    ),
                );
            }
            for (i, c) in containers.iter().enumerate() {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                let count = restarts("containerStatuses", &name);
                s.containers.insert(
                    i,
                    (
                        name,
                        ContainerState {
                            state: waiting("ContainerCreating", ""),
                            restart_count: count,
                            ..Default::default()
                        },
                    ),
                );
            }
        });
        self.stop_processes_of_previous_run().await;

        let sandbox = match self.prepare(stop).await {
            Some(s) => s,
            None => {
                // The problem is in the status; wait for deletion.
                let _ = stop.wait_for(Option::is_some).await;
                return;
            }
        };
        let sandbox = Arc::new(sandbox);
        // Aborted with this function, whichever way it returns.
        let _refresh = AbortOnDrop(tokio::spawn(self.clone().refresh_volumes(sandbox.clone())));

        for (i, c) in inits.iter().enumerate() {
            loop {
                let code = tokio::select! {
                    code = self.clone().run_container(true, i, c.clone(), sandbox.clone(), stop.clone()) => code,
                };
                match code {
                    ContainerEnd::Stopped => return,
                    ContainerEnd::Exited(0) => break,
                    ContainerEnd::Exited(_) if self.restart_policy() == "Never" => {
                        self.update(|s| s.finished = Some("Failed"));
                        let _ = stop.wait_for(Option::is_some).await;
                        return;
                    }
                    ContainerEnd::Exited(_) => continue,
                }
            }
        }
        self.update(|s| s.initialized = true);

        let mut runs = tokio::task::JoinSet::new();
        for (i, c) in containers.iter().enumerate() {
            runs.spawn(self.clone().run_container(
                false,
                i,
                c.clone(),
                sandbox.clone(),
                stop.clone(),
            ));
        }
        let mut all_zero = true;
        let mut stopped = false;
        while let Some(end) = runs.join_next().await {
            match end {
                Ok(ContainerEnd::Exited(code)) => all_zero &= code == 0,
                Ok(ContainerEnd::Stopped) | Err(_) => stopped = true,
            }
        }
        if !stopped {
            self.update(|s| s.finished = Some(if all_zero { "Succeeded" } else { "Failed" }));
            let _ = stop.wait_for(Option::is_some).await;
        }
    }

    /// Processes recorded by an earlier `shipway up` that was killed are stopped, never orphaned.
    pub(super) async fn stop_processes_of_previous_run(&self) {
        let dir = Kubelet::pod_dir(&self.config.data_dir, &self.pod).join("pids");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let marker = format!(
            "SHIPWAY_POD_UID={}",
            self.pod.metadata.uid.as_deref().unwrap_or_default()
        );
        for entry in entries.flatten() {
            if let Some(pgid) = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                && process::stop_orphan(pgid, &marker, Duration::from_secs(5)).await
            {
                tracing::info!(pod = %self.key, pgid, "stopped a process left by the previous run");
            }
            let _ = std::fs::remove_file(entry.path());
        }
    }

    /// Runs one container until it ends for good (per restart policy) or the pod stops.
    pub(super) async fn run_container(
        self: Arc<Self>,
        init: bool,
        index: usize,
        c: Value,
        sandbox: Arc<Sandbox>,
        mut stop: watch::Receiver<Option<Duration>>,
    ) -> ContainerEnd {
        let name = c["name"].as_str().unwrap_or_default().to_string();
        let policy = if init && self.restart_policy() == "Always" {
            "OnFailure"
        } else {
            self.restart_policy()
        }
        .to_string();
        let mut crashes: u32 = 0;
        // The last configuration error recorded, so a retry every 2 s is one event, not many.
        let mut config_error = None;
        loop {
            if stop.borrow().is_some() {
                return ContainerEnd::Stopped;
            }
            let restart = {
                let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let map = if init { &s.init } else { &s.containers };
                map.get(&index).map_or(0, |(_, c)| c.restart_count)
            };
            let started_at = now_rfc3339();
            let data = self.load_referenced(&c).await;
            let mut start_error = None;
            let launch = self.launch(&c, &sandbox, restart, &data);
            let (code, ran_for) = match launch {
                Err(LaunchError::Config(message)) => {
                    // Like kubelet: not a crash; explain and try again, the reference may appear.
                    if config_error.as_ref() != Some(&message) {
                        self.record("Failed", &format!("Error: {message}")).await;
                        config_error = Some(message.clone());
                    }
                    self.set_container(init, index, |st| {
                        st.state = waiting("CreateContainerConfigError", &message)
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                        _ = async { stop.wait_for(Option::is_some).await.is_ok() } => return ContainerEnd::Stopped,
                    }
                }
                Err(LaunchError::Start(message)) => {
                    self.record("Failed", &format!("Error: {message}")).await;
                    start_error = Some(message);
                    (None, Duration::ZERO)
                }
                Ok((mut proc, env)) => {
                    config_error = None;
                    self.record(
                        "Pulled",
                        &format!(
                            "Container image {:?} already present on machine",
                            c["image"].as_str().unwrap_or_default()
                        ),
                    )
                    .await;
                    self.record("Created", &format!("Created container {name}"))
                        .await;
                    self.record("Started", &format!("Started container {name}"))
                        .await;
                    let _ = crate::private::create_dir_all(&sandbox.dir.join("pids"));
                    let _ = crate::private::write(
                        sandbox.dir.join("pids").join(format!("{name}.pid")),
                        proc.pid().to_string(),
                    );
                    self.set_container(init, index, |st| {
                        st.state = json!({"running": {"startedAt": started_at}});
                        st.started = c.get("startupProbe").is_none();
                        st.ready = false;
                    });
                    let began = Instant::now();
                    let (kill_tx, mut kill_rx) = watch::channel(false);
                    let probes = if init {
                        None
                    } else {
                        Some(tokio::spawn(self.clone().probe(
                            index,
                            c.clone(),
                            sandbox.clone(),
                            Arc::new(env),
                            kill_tx,
                        )))
                    };
                    let code = tokio::select! {
                        code = proc.wait() => code,
                        requested = async { stop.wait_for(Option::is_some).await.ok().and_then(|r| *r) } => {
                            let g = requested.unwrap_or(Duration::from_secs(30));
                            self.record("Killing", &format!("Stopping container {name}")).await;
                            let code = proc.stop(g).await;
                            if let Some(p) = probes { p.abort(); }
                            let _ = std::fs::remove_file(sandbox.dir.join("pids").join(format!("{name}.pid")));
                            self.set_container(init, index, |st| {
                                st.ready = false;
                                st.state = json!({"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "startedAt": started_at, "finishedAt": now_rfc3339()}});
                            });
                            return ContainerEnd::Stopped;
                        }
                        _ = async { kill_rx.wait_for(|k| *k).await.is_ok() } => {
                            // Liveness failed: kubelet kills the container with its grace period.
                            let g = Duration::from_secs(workload::spec_i64(&self.pod, "/terminationGracePeriodSeconds", 30).max(0) as u64);
                            proc.stop(g).await
                        }
                    };
                    if let Some(p) = probes {
                        p.abort();
                    }
                    let _ =
                        std::fs::remove_file(sandbox.dir.join("pids").join(format!("{name}.pid")));
                    (Some(code), began.elapsed())
                }
            };
            let finished_at = now_rfc3339();
            let exit = code.unwrap_or(128);
            let mut terminated = json!({"terminated": {
                "exitCode": exit,
                "reason": if code.is_none() { "StartError" } else if exit == 0 { "Completed" } else { "Error" },
                "startedAt": started_at, "finishedAt": finished_at,
            }});
            if let Some(message) = start_error {
                terminated["terminated"]["message"] = json!(message);
            } else if exit != 0 {
                // Kubernetes' FallbackToLogsOnError: the end of the output usually says why.
                let log = Kubelet::log_path(&self.config.data_dir, &self.pod, &name, restart);
                if let Some(tail) = log_tail(&log) {
                    terminated["terminated"]["message"] = json!(tail);
                }
            }
            let restart_it = match policy.as_str() {
                "Always" => true,
                "OnFailure" => exit != 0,
                _ => false,
            };
            if !restart_it {
                self.set_container(init, index, |st| {
                    st.ready = false;
                    st.state = terminated;
                });
                return ContainerEnd::Exited(exit);
            }
            crashes = if ran_for >= self.config.backoff_reset {
                1
            } else {
                crashes + 1
            };
            let delay = backoff(&self.config, crashes);
            let pod = format!(
                "{}_{}({})",
                self.pod.metadata.name,
                self.pod.metadata.namespace.as_deref().unwrap_or_default(),
                self.pod.metadata.uid.as_deref().unwrap_or_default()
            );
            if !delay.is_zero() {
                self.record(
                    "BackOff",
                    &format!("Back-off restarting failed container {name} in pod {pod}"),
                )
                .await;
            }
            self.set_container(init, index, |st| {
                st.ready = false;
                st.last_state = terminated.clone();
                st.restart_count += 1;
                st.state = if delay.is_zero() {
                    waiting("ContainerCreating", "")
                } else {
                    waiting(
                        "CrashLoopBackOff",
                        &format!(
                            "back-off {} restarting failed container={name} pod={pod}",
                            go_duration(delay),
                        ),
                    )
                };
            });
            if init && exit == 0 {
                return ContainerEnd::Exited(0);
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = async { stop.wait_for(Option::is_some).await.is_ok() } => return ContainerEnd::Stopped,
            }
        }
    }

    /// Starts a container's process; errors are what kubelet would show as the waiting message.
    pub(super) fn launch(
        &self,
        c: &Value,
        sandbox: &Sandbox,
        restart: i64,
        data: &RefData,
    ) -> Result<(Process, Vec<(String, String)>), LaunchError> {
        let name = c["name"].as_str().unwrap_or_default();
        let image = sandbox
            .images
            .get(c["image"].as_str().unwrap_or_default())
            .ok_or(LaunchError::Config("image not resolved".into()))?;
        let env = self
            .environment(c, sandbox, image, data)
            .map_err(LaunchError::Config)?;
        let strings = crate::workload::strings;
        let expand = |s: &String| expand_vars(s, &env);
        let (command, args): (Vec<String>, Vec<String>) = match (c.get("command"), c.get("args")) {
            (Some(cmd), args) => (strings(cmd), args.map(strings).unwrap_or_default()),
            (None, Some(args)) => (image.entrypoint.clone(), strings(args)),
            (None, None) => (image.entrypoint.clone(), image.cmd.clone()),
        };
        let mut argv: Vec<String> = command.iter().chain(args.iter()).map(expand).collect();
        if argv.is_empty() {
            return Err(LaunchError::Config(format!(
                "container {name:?} has no command: the image has no entrypoint and the container sets no command"
            )));
        }
        let program = argv.remove(0);
        let root = self
            .container_root(c, sandbox, image)
            .map_err(LaunchError::Config)?;
        let cwd = working_dir(&root, c["workingDir"].as_str()).map_err(LaunchError::Config)?;
        if !cwd.is_dir() {
            return Err(LaunchError::Config(format!(
                "workingDir {:?} does not exist in image {}",
                c["workingDir"].as_str().unwrap_or(""),
                image.reference
            )));
        }
        let log = Kubelet::log_path(&self.config.data_dir, &self.pod, name, restart);
        if let Some(dir) = log.parent() {
            // Before `spawn` would create it with the umask's mode.
            crate::private::create_dir_all(dir)
                .map_err(|e| LaunchError::Start(format!("cannot create {}: {e}", dir.display())))?;
        }
        Process::spawn(&process::Spec {
            program: &program,
            args: &argv,
            cwd: &cwd,
            env: &env,
            log,
        })
        .map(|p| (p, env.clone()))
        .map_err(|e| {
            LaunchError::Start(format!(
                "failed to start container {name:?}: exec {program:?}: {e}"
            ))
        })
    }
}

/// A duration as Go prints it (`10s`, `2m40s`, `300ms`), as kubelet's messages show it.
pub(super) fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms < 1000 => format!("{ms}ms"),
        _ if ms < 60_000 && ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => {
            let s = d.as_secs();
            if s.is_multiple_of(60) {
                format!("{}m0s", s / 60)
            } else {
                format!("{}m{}s", s / 60, s % 60)
            }
        }
    }
}

/// The last lines of a log (at most 10 lines, 2 KiB), for a failed container's message.
pub(super) fn log_tail(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let start = bytes.len().saturating_sub(2048);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    (!tail.is_empty()).then_some(tail)
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a container could not start: its configuration (retried without counting a crash) or the
/// process itself (counted, like any crash).
pub(super) enum LaunchError {
    Config(String),
    Start(String),
}

pub(super) enum ContainerEnd {
    /// The container ended for good with this exit code.
    Exited(i32),
    /// The pod is being stopped.
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        let c = KubeletConfig::new(Path::new("/tmp"));
        let delays: Vec<u64> = (1..=8).map(|n| backoff(&c, n).as_secs()).collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn durations_read_like_kubelet_messages() {
        let d = |ms| go_duration(Duration::from_millis(ms));
        assert_eq!(
            [d(300), d(10_000), d(160_000), d(300_000)],
            ["300ms", "10s", "2m40s", "5m0s"]
        );
    }
}
