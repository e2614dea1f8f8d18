//! The local kubelet: runs each Pod as a group of processes (init containers first), probes them,
//! restarts them with kubelet's backoff, and reports status as kubelet does.
//!
//! The reconciler only starts and stops pod workers; a [`PodWorker`] owns one pod's processes for
//! their whole life and writes the pod's status. Pods carry a finalizer so the object outlives its
//! processes: deletion stops them first (grace period, then SIGKILL), then releases the object.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use shipway_model::{Key, Object};
use shipway_store::{Store, StoreError};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::confine;
use crate::controller::{Action, ReconcileError, Reconciler};
use crate::images::ImageStore;
use crate::process::{self, Process};
use crate::workload::{self, now_rfc3339};

/// Keeps a Pod object until its processes are gone.
pub const FINALIZER: &str = "shipway.dev/local-runtime";
const ACTOR: &str = "kubelet";

/// Tunables; tests shrink the backoff so crash loops show in seconds, not minutes.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    pub data_dir: PathBuf,
    /// First restart delay after the first immediate restart; doubles each crash.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A container that ran this long resets its backoff.
    pub backoff_reset: Duration,
}

impl KubeletConfig {
    pub fn new(data_dir: &Path) -> KubeletConfig {
        KubeletConfig {
            data_dir: data_dir.to_path_buf(),
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            backoff_reset: Duration::from_secs(600),
        }
    }
}

struct WorkerHandle {
    stop: watch::Sender<Option<Duration>>,
    done: watch::Receiver<bool>,
    grace: Duration,
}

pub struct Kubelet {
    store: Store,
    config: Arc<KubeletConfig>,
    images: ImageStore,
    workers: Mutex<HashMap<String, WorkerHandle>>,
    /// Set on shutdown so no new worker starts while the others stop.
    stopping: std::sync::atomic::AtomicBool,
}

impl Kubelet {
    pub fn new(store: Store, config: KubeletConfig) -> Kubelet {
        let images = ImageStore::new(&config.data_dir);
        Kubelet {
            store,
            config: Arc::new(config),
            images,
            workers: Mutex::default(),
            stopping: Default::default(),
        }
    }

    /// The directory holding one pod's sandbox, volumes, logs and process records.
    pub fn pod_dir(data_dir: &Path, pod: &Object) -> PathBuf {
        data_dir
            .join("pods")
            .join(pod.metadata.uid.as_deref().unwrap_or("unknown"))
    }

    /// The directory a container runs in (its image's files and its volume mounts).
    pub fn container_root(data_dir: &Path, pod: &Object, container: &str) -> PathBuf {
        Self::pod_dir(data_dir, pod)
            .join("containers")
            .join(container)
            .join("root")
    }

    /// The log file of a container instance (`restart` counts from 0).
    pub fn log_path(data_dir: &Path, pod: &Object, container: &str, restart: i64) -> PathBuf {
        Self::pod_dir(data_dir, pod)
            .join("logs")
            .join(container)
            .join(format!("{restart}.log"))
    }

    async fn remove_finalizer(&self, pod: &Object) -> Result<(), ReconcileError> {
        let mut pod = pod.clone();
        pod.metadata.finalizers.retain(|f| f != FINALIZER);
        match self.store.update(pod.clone(), ACTOR).await {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let _ = std::fs::remove_dir_all(Self::pod_dir(&self.config.data_dir, &pod));
        Ok(())
    }
}

impl Reconciler for Kubelet {
    fn kind(&self) -> (&'static str, &'static str) {
        ("", "Pod")
    }

    async fn reconcile(&self, pod: Arc<Object>) -> Result<Action, ReconcileError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if workload::is_terminating(&pod) {
            if !pod.metadata.finalizers.iter().any(|f| f == FINALIZER) {
                return Ok(Action::AwaitChange);
            }
            let grace = Duration::from_secs(
                workload::spec_i64(&pod, "/terminationGracePeriodSeconds", 30).max(0) as u64,
            );
            let done = {
                let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
                match workers.get(&uid) {
                    Some(w) => {
                        let _ = w.stop.send(Some(grace));
                        *w.done.borrow()
                    }
                    None => true,
                }
            };
            if !done {
                return Ok(Action::Requeue(Duration::from_millis(100)));
            }
            self.workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&uid);
            self.remove_finalizer(&pod).await?;
            return Ok(Action::AwaitChange);
        }
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(Action::AwaitChange);
        }
        if !pod.metadata.finalizers.iter().any(|f| f == FINALIZER) {
            let mut with = (*pod).clone();
            with.metadata.finalizers.push(FINALIZER.to_string());
            self.store.update(with, ACTOR).await?;
            return Ok(Action::AwaitChange);
        }
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if !workers.contains_key(&uid) {
            let (stop_tx, stop_rx) = watch::channel(None);
            let (done_tx, done_rx) = watch::channel(false);
            let worker = PodWorker {
                store: self.store.clone(),
                config: self.config.clone(),
                images: self.images.clone(),
                key: pod.key(),
                pod: (*pod).clone(),
                state: Arc::default(),
                changed: Arc::default(),
            };
            tokio::spawn(async move {
                worker.run(stop_rx).await;
                let _ = done_tx.send(true);
            });
            let grace = Duration::from_secs(
                workload::spec_i64(&pod, "/terminationGracePeriodSeconds", 30).max(0) as u64,
            );
            workers.insert(
                uid,
                WorkerHandle {
                    stop: stop_tx,
                    done: done_rx,
                    grace,
                },
            );
        }
        Ok(Action::AwaitChange)
    }

    /// `shipway up` is stopping: stop every pod's processes (each with its grace period) so none
    /// is left running unsupervised. The Pod objects stay; the next start runs them again.
    async fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let handles: Vec<watch::Receiver<bool>> = {
            let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            workers
                .values()
                .map(|w| {
                    let _ = w.stop.send(Some(w.grace));
                    w.done.clone()
                })
                .collect()
        };
        for mut done in handles {
            let _ = done.wait_for(|d| *d).await;
        }
    }
}

/// What one container is doing, in kubelet's terms.
#[derive(Clone, Debug, Default)]
struct ContainerState {
    state: Value,
    last_state: Value,
    restart_count: i64,
    ready: bool,
    started: bool,
}

#[derive(Default)]
struct PodState {
    init: BTreeMap<usize, (String, ContainerState)>,
    containers: BTreeMap<usize, (String, ContainerState)>,
    initialized: bool,
    /// Set when the pod will not run again (every container finished for good).
    finished: Option<&'static str>,
    port_mappings: Vec<Value>,
    start_time: Option<String>,
    /// Pod-level problem shown before containers run (for example an unknown image).
    pending_reason: Option<(String, String)>,
}

/// Owns one pod's processes.
struct PodWorker {
    store: Store,
    config: Arc<KubeletConfig>,
    images: ImageStore,
    key: Key,
    pod: Object,
    state: Arc<Mutex<PodState>>,
    changed: Arc<Notify>,
}

fn waiting(reason: &str, message: &str) -> Value {
    if message.is_empty() {
        json!({"waiting": {"reason": reason}})
    } else {
        json!({"waiting": {"reason": reason, "message": message}})
    }
}

/// Restarts after a crash: the first at once, then `base` doubling up to `max`, like kubelet.
fn backoff(config: &KubeletConfig, crashes: u32) -> Duration {
    if crashes <= 1 {
        return Duration::ZERO;
    }
    config
        .backoff_base
        .saturating_mul(2u32.saturating_pow(crashes - 2))
        .min(config.backoff_max)
}

impl PodWorker {
    fn spec(&self) -> &Value {
        self.pod.spec().unwrap_or(&Value::Null)
    }

    fn update(&self, f: impl FnOnce(&mut PodState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_one();
    }

    fn set_container(&self, init: bool, index: usize, f: impl FnOnce(&mut ContainerState)) {
        self.update(|s| {
            let map = if init { &mut s.init } else { &mut s.containers };
            if let Some((_, c)) = map.get_mut(&index) {
                f(c);
            }
        });
    }

    async fn run(self, mut stop: watch::Receiver<Option<Duration>>) {
        let this = Arc::new(self);
        let writer = tokio::spawn(this.clone().write_status_loop());
        this.clone().lifecycle(&mut stop).await;
        // Let the last status reach the store before the pod may be released.
        this.changed.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.abort();
        this.write_status().await;
    }

    fn restart_policy(&self) -> &str {
        self.spec()
            .get("restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("Always")
    }

    async fn lifecycle(self: Arc<Self>, stop: &mut watch::Receiver<Option<Duration>>) {
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
    async fn stop_processes_of_previous_run(&self) {
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

    /// Resolves images, allocates ports and builds the sandbox directory with volumes.
    async fn prepare(&self, stop: &mut watch::Receiver<Option<Duration>>) -> Option<Sandbox> {
        let dir = Kubelet::pod_dir(&self.config.data_dir, &self.pod);
        let all: Vec<Value> = ["initContainers", "containers"]
            .iter()
            .flat_map(|f| {
                self.spec()
                    .get(*f)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        // Container names become directory names (root, logs, pids); admission checks them, a Pod
        // stored before it did must not name a path.
        for c in &all {
            let cname = c["name"].as_str().unwrap_or_default();
            if let Err(e) = shipway_model::name::validate_dns1123_label(cname) {
                let msg = format!("container name {cname:?}: Invalid value: {e}");
                self.update(|s| {
                    s.pending_reason = Some(("CreateContainerConfigError".into(), msg.clone()));
                    for (_, st) in s.containers.values_mut().chain(s.init.values_mut()) {
                        st.state = waiting("CreateContainerConfigError", &msg);
                    }
                });
                return None;
            }
        }
        let mut images = HashMap::new();
        for c in &all {
            let image = c["image"].as_str().unwrap_or_default().to_string();
            loop {
                match self.images.resolve(&image) {
                    Ok(resolved) => {
                        images.insert(image.clone(), resolved);
                        break;
                    }
                    Err(e) => {
                        // Like ErrImagePull: explain, and look again later (the image may be imported).
                        let msg = e.to_string();
                        self.update(|s| {
                            s.pending_reason = Some(("ErrImagePull".into(), msg.clone()));
                            for (_, st) in s.containers.values_mut().chain(s.init.values_mut()) {
                                st.state = waiting("ErrImagePull", &msg);
                            }
                        });
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                            _ = async { stop.wait_for(Option::is_some).await.is_ok() } => return None,
                        }
                    }
                }
            }
        }
        self.update(|s| s.pending_reason = None);
        let mut mappings = Vec::new();
        let mut ports = HashMap::new();
        for c in &all {
            let cname = c["name"].as_str().unwrap_or_default();
            for p in c["ports"].as_array().into_iter().flatten() {
                let host = match std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                {
                    Ok(a) => a.port(),
                    Err(e) => {
                        self.update(|s| {
                            s.pending_reason = Some(("PortAllocationFailed".into(), e.to_string()))
                        });
                        return None;
                    }
                };
                let container_port = p["containerPort"].as_i64().unwrap_or(0);
                mappings.push(json!({
                    "container": cname, "name": p["name"], "containerPort": container_port,
                    "hostPort": host, "protocol": p["protocol"].as_str().unwrap_or("TCP"),
                }));
                ports.insert((cname.to_string(), container_port), host);
            }
        }
        self.update(|s| s.port_mappings = mappings.clone());
        let volumes = match self.prepare_volumes(&dir).await {
            Ok(v) => v,
            Err(msg) => {
                self.update(|s| {
                    s.pending_reason = Some(("CreateContainerConfigError".into(), msg.clone()));
                    for (_, st) in s.containers.values_mut().chain(s.init.values_mut()) {
                        st.state = waiting("CreateContainerConfigError", &msg);
                    }
                });
                return None;
            }
        };
        Some(Sandbox {
            dir,
            images,
            port_mappings: mappings,
            volumes,
        })
    }

    async fn prepare_volumes(&self, dir: &Path) -> Result<HashMap<String, PathBuf>, String> {
        let mut out = HashMap::new();
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        for v in self
            .spec()
            .get("volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = v["name"].as_str().unwrap_or_default().to_string();
            let source = if let Some(cm) = v.get("configMap") {
                // 0600 for ConfigMaps too: containers run as this user, and others must not read
                // the data directory.
                Some(("ConfigMap", cm, 0o600))
            } else {
                v.get("secret").map(|s| ("Secret", s, 0o600))
            };
            let mut files = Vec::new();
            let mut mode = 0o600;
            if let Some((kind, src, m)) = source {
                mode = m;
                let obj_name = src
                    .get("name")
                    .or_else(|| src.get("secretName"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let optional = src["optional"].as_bool().unwrap_or(false);
                let data = match self.store.get(&Key::new("", kind, &ns, obj_name)).await {
                    Ok(Some(o)) => config_data(&o),
                    Ok(None) if optional => BTreeMap::new(),
                    Ok(None) => {
                        return Err(format!("volume {name}: {kind} {ns}/{obj_name} not found"));
                    }
                    Err(e) => return Err(format!("volume {name}: {e}")),
                };
                let items: Vec<(String, String)> = match src["items"].as_array() {
                    Some(items) => items
                        .iter()
                        .filter_map(|i| {
                            Some((
                                i["key"].as_str()?.to_string(),
                                i["path"].as_str()?.to_string(),
                            ))
                        })
                        .collect(),
                    None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
                };
                for (key, rel) in items {
                    let Some(value) = data.get(&key) else {
                        return Err(format!(
                            "volume {name}: {kind} {ns}/{obj_name} has no key {key:?}"
                        ));
                    };
                    files.push((rel, value.clone()));
                }
            }
            let path = write_volume(&dir.join("volumes"), &name, &files, mode)?;
            out.insert(name, path);
        }
        Ok(out)
    }

    /// Runs one container until it ends for good (per restart policy) or the pod stops.
    async fn run_container(
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
                    self.set_container(init, index, |st| {
                        st.state = waiting("CreateContainerConfigError", &message)
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                        _ = async { stop.wait_for(Option::is_some).await.is_ok() } => return ContainerEnd::Stopped,
                    }
                }
                Err(LaunchError::Start(message)) => {
                    start_error = Some(message);
                    (None, Duration::ZERO)
                }
                Ok((mut proc, env)) => {
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
                            "back-off {} restarting failed container={name} pod={}",
                            go_duration(delay),
                            self.pod.metadata.name
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
    fn launch(
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

    /// The directory a container runs in: the image's files (linked, not copied) with the pod's
    /// volumes at their `mountPath`s, relative to it. Without mount namespaces an absolute path
    /// cannot be redirected; apps that use paths relative to their working directory (or
    /// `$SHIPWAY_VOLUME_<NAME>`) see their volumes where the manifest says.
    fn container_root(
        &self,
        c: &Value,
        sandbox: &Sandbox,
        image: &crate::images::ResolvedImage,
    ) -> Result<PathBuf, String> {
        let name = c["name"].as_str().unwrap_or_default();
        let root = Kubelet::container_root(&self.config.data_dir, &self.pod, name);
        let io = |e: std::io::Error| format!("preparing the root of container {name:?}: {e}");
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(io)?;
        }
        crate::private::create_dir_all(&root).map_err(io)?;
        link_children(&image.root, &root).map_err(io)?;
        mount_volumes(&root, &sandbox.volumes, &c["volumeMounts"])?;
        Ok(Kubelet::container_root(
            &self.config.data_dir,
            &self.pod,
            name,
        ))
    }

    /// The container's environment: runtime variables, the image's, then the container's own.
    fn environment(
        &self,
        c: &Value,
        sandbox: &Sandbox,
        image: &crate::images::ResolvedImage,
        data: &RefData,
    ) -> Result<Vec<(String, String)>, String> {
        let cname = c["name"].as_str().unwrap_or_default();
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            ),
            ("HOSTNAME".into(), self.pod.metadata.name.clone()),
            (
                "HOME".into(),
                Kubelet::container_root(&self.config.data_dir, &self.pod, cname)
                    .display()
                    .to_string(),
            ),
            ("SHIPWAY_POD_NAME".into(), self.pod.metadata.name.clone()),
            (
                "SHIPWAY_POD_NAMESPACE".into(),
                self.pod.metadata.namespace.clone().unwrap_or_default(),
            ),
            (
                "SHIPWAY_POD_UID".into(),
                self.pod.metadata.uid.clone().unwrap_or_default(),
            ),
        ];
        let mine: Vec<&Value> = sandbox
            .port_mappings
            .iter()
            .filter(|m| m["container"] == cname)
            .collect();
        if let Some(first) = mine.first() {
            env.push(("PORT".into(), first["hostPort"].to_string()));
        }
        for m in &mine {
            if let Some(n) = m["name"].as_str() {
                env.push((
                    format!("SHIPWAY_PORT_{}", n.to_ascii_uppercase().replace('-', "_")),
                    m["hostPort"].to_string(),
                ));
            }
        }
        for (name, path) in &sandbox.volumes {
            env.push((
                format!(
                    "SHIPWAY_VOLUME_{}",
                    name.to_ascii_uppercase().replace('-', "_")
                ),
                path.display().to_string(),
            ));
        }
        env.extend(image.env.iter().cloned());
        let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
            env.retain(|(ek, _)| *ek != k);
            env.push((k, v));
        };
        for from in c["envFrom"].as_array().into_iter().flatten() {
            let prefix = from["prefix"].as_str().unwrap_or_default();
            let (kind, r) = match (from.get("configMapRef"), from.get("secretRef")) {
                (Some(r), _) => ("ConfigMap", r),
                (_, Some(r)) => ("Secret", r),
                _ => continue,
            };
            let obj = r["name"].as_str().unwrap_or_default();
            match data.get(&(kind.to_string(), obj.to_string())) {
                Some(map) => {
                    for (k, v) in map {
                        set(&mut env, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r["optional"].as_bool() == Some(true) => {}
                None => {
                    return Err(format!(
                        "{kind} {obj:?} not found (container {cname:?} envFrom)"
                    ));
                }
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or_default().to_string();
            let value = if let Some(v) = e.get("value") {
                expand_vars(v.as_str().unwrap_or_default(), &env)
            } else if let Some(from) = e.get("valueFrom") {
                match self.value_from(from, data) {
                    Ok(Some(v)) => v,
                    Ok(None) => continue,
                    Err(msg) => return Err(format!("env {name}: {msg}")),
                }
            } else {
                String::new()
            };
            set(&mut env, name, value);
        }
        Ok(env)
    }

    fn value_from(&self, from: &Value, data: &RefData) -> Result<Option<String>, String> {
        for (field, kind) in [("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")] {
            if let Some(r) = from.get(field) {
                let obj = r["name"].as_str().unwrap_or_default();
                let key = r["key"].as_str().unwrap_or_default();
                let optional = r["optional"].as_bool() == Some(true);
                return match data
                    .get(&(kind.to_string(), obj.to_string()))
                    .map(|m| m.get(key))
                {
                    Some(Some(v)) => Ok(Some(v.clone())),
                    _ if optional => Ok(None),
                    None => Err(format!("{kind} {obj:?} not found")),
                    Some(None) => Err(format!("couldn't find key {key} in {kind} {obj}")),
                };
            }
        }
        if let Some(path) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
            let m = &self.pod.metadata;
            let v = match path {
                "metadata.name" => Some(m.name.clone()),
                "metadata.namespace" => m.namespace.clone(),
                "metadata.uid" => m.uid.clone(),
                "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
                "spec.nodeName" => Some("local".into()),
                p => {
                    let label = p
                        .strip_prefix("metadata.labels['")
                        .and_then(|r| r.strip_suffix("']"));
                    let annotation = p
                        .strip_prefix("metadata.annotations['")
                        .and_then(|r| r.strip_suffix("']"));
                    match (label, annotation) {
                        (Some(l), _) => Some(m.labels.get(l).cloned().unwrap_or_default()),
                        (_, Some(a)) => Some(m.annotations.get(a).cloned().unwrap_or_default()),
                        _ => return Err(format!("fieldRef {p:?} is not supported")),
                    }
                }
            };
            return Ok(v);
        }
        Err("valueFrom needs configMapKeyRef, secretKeyRef or fieldRef".into())
    }
}

/// A duration as Go prints it (`10s`, `2m40s`, `300ms`), as kubelet's messages show it.
fn go_duration(d: Duration) -> String {
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

/// Makes the directory of volume `name` under `volumes` and writes its `files` (path in the
/// volume, contents) with `mode`. Every path goes through `confine`: nothing is created, written
/// or re-moded outside `volumes/<name>`, whatever the manifest or a container left there.
fn write_volume(
    volumes: &Path,
    name: &str,
    files: &[(String, String)],
    mode: u32,
) -> Result<PathBuf, String> {
    // Admission checks this too; a Pod stored before it did must not name a path.
    if let Err(e) = shipway_model::name::validate_dns1123_label(name) {
        return Err(format!("volume {name:?}: Invalid value: {e}"));
    }
    let path = confine::create_dir(volumes, name).map_err(|e| format!("volume {name}: {e}"))?;
    for (rel, value) in files {
        confine::write_file(&path, rel, value.as_bytes(), mode)
            .map_err(|e| format!("volume {name}: item path {e}"))?;
    }
    Ok(path)
}

/// Places a container's `volumeMounts` in its `root` as links to the volumes' directories (or to
/// a `subPath` inside one). The mount point is built from the mountPath's components below `root`;
/// the subPath is resolved inside its volume without following links.
fn mount_volumes(
    root: &Path,
    volumes: &HashMap<String, PathBuf>,
    mounts: &Value,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("preparing the container's root: {e}");
    for (i, m) in mounts.as_array().into_iter().flatten().enumerate() {
        let volume = m["name"].as_str().unwrap_or_default();
        let Some(source) = volumes.get(volume) else {
            return Err(format!("volumeMounts[{i}]: no volume named {volume:?}"));
        };
        let source = match m["subPath"].as_str().filter(|p| !p.is_empty()) {
            Some(sub) => confine::existing_or_dir(source, sub)
                .map_err(|e| format!("volumeMounts[{i}].subPath {e}"))?,
            None => source.clone(),
        };
        let path = m["mountPath"].as_str().unwrap_or_default();
        let parts = match confine::components(path.trim_start_matches('/')) {
            Ok(parts) if !parts.is_empty() && !path.split('/').any(|p| p == "..") => parts,
            _ => {
                return Err(format!(
                    "volumeMounts[{i}].mountPath {path:?} must name a directory below the root"
                ));
            }
        };
        // Each parent is made a real directory (unfolding links into the image) before the next
        // is looked at, so the mount point is below `root` and nothing is written into the image.
        let mut dir = root.to_path_buf();
        for part in &parts[..parts.len() - 1] {
            dir = dir.join(part);
            unfold(&dir).map_err(io)?;
        }
        let at = dir.join(parts[parts.len() - 1]);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&at).map_err(io)?,
            Ok(_) => std::fs::remove_file(&at).map_err(io)?,
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&source, &at).map_err(io)?;
    }
    Ok(())
}

/// The directory a container starts in: its workingDir inside its root (an absolute workingDir is
/// relative to the root, as there are no mount namespaces).
fn working_dir(root: &Path, dir: Option<&str>) -> Result<PathBuf, String> {
    match dir {
        Some(w) => confine::confined(root, w.trim_start_matches('/'))
            .map_err(|e| format!("workingDir {e}")),
        None => Ok(root.to_path_buf()),
    }
}

/// Links every entry of `from` into `to`.
fn link_children(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::os::unix::fs::symlink(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// Makes `dir` a real directory: a link to an image directory becomes a directory of links to its
/// children, so a mount can be placed inside without touching the shared image.
fn unfold(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = std::fs::read_link(dir)?;
            std::fs::remove_file(dir)?;
            crate::private::create_dir(dir)?;
            if target.is_dir() {
                link_children(&target, dir)?;
            }
            Ok(())
        }
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(std::io::Error::other(format!(
            "{} is a file, not a directory",
            dir.display()
        ))),
        Err(_) => crate::private::create_dir(dir),
    }
}

/// The last lines of a log (at most 10 lines, 2 KiB), for a failed container's message.
fn log_tail(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let start = bytes.len().saturating_sub(2048);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    (!tail.is_empty()).then_some(tail)
}

/// ConfigMap and Secret data a container's environment refers to, by (kind, name).
type RefData = HashMap<(String, String), BTreeMap<String, String>>;

/// Why a container could not start: its configuration (retried without counting a crash) or the
/// process itself (counted, like any crash).
enum LaunchError {
    Config(String),
    Start(String),
}

enum ContainerEnd {
    /// The container ended for good with this exit code.
    Exited(i32),
    /// The pod is being stopped.
    Stopped,
}

/// Where a pod's containers run and what they were given.
struct Sandbox {
    dir: PathBuf,
    images: HashMap<String, crate::images::ResolvedImage>,
    port_mappings: Vec<Value>,
    volumes: HashMap<String, PathBuf>,
}

/// A ConfigMap's or Secret's data as strings (Secret `data` is base64; `stringData` is plain).
fn config_data(o: &Object) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let decode = o.kind == "Secret";
    for (field, b64) in [
        ("data", decode),
        ("binaryData", true),
        ("stringData", false),
    ] {
        for (k, v) in o
            .body
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let Some(s) = v.as_str() else { continue };
            let value = if b64 {
                base64_decode(s).unwrap_or_default()
            } else {
                s.to_string()
            };
            out.insert(k.clone(), value);
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<String> {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = Vec::new();
    for b in s.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=') {
        let v = TABLE.iter().position(|t| *t == b)? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Kubernetes' `$(VAR)` expansion in env values, command and args; `$$(VAR)` escapes it and an
/// unknown variable is left as written.
fn expand_vars(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(") {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&tail[..end + 3]),
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str(tail);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

impl PodWorker {
    /// Reads the ConfigMaps and Secrets a container's env and envFrom name, at container start.
    async fn load_referenced(&self, c: &Value) -> RefData {
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let mut wanted = Vec::new();
        for from in c["envFrom"].as_array().into_iter().flatten() {
            if let Some(n) = from.pointer("/configMapRef/name").and_then(Value::as_str) {
                wanted.push(("ConfigMap", n.to_string()));
            }
            if let Some(n) = from.pointer("/secretRef/name").and_then(Value::as_str) {
                wanted.push(("Secret", n.to_string()));
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            if let Some(n) = e
                .pointer("/valueFrom/configMapKeyRef/name")
                .and_then(Value::as_str)
            {
                wanted.push(("ConfigMap", n.to_string()));
            }
            if let Some(n) = e
                .pointer("/valueFrom/secretKeyRef/name")
                .and_then(Value::as_str)
            {
                wanted.push(("Secret", n.to_string()));
            }
        }
        let mut out = RefData::new();
        for (kind, name) in wanted {
            if let Ok(Some(o)) = self.store.get(&Key::new("", kind, &ns, &name)).await {
                out.insert((kind.to_string(), name), config_data(&o));
            }
        }
        out
    }

    /// Runs the container's startup, liveness and readiness probes; asks for a kill on liveness
    /// (or startup) failure.
    async fn probe(
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

    async fn write_status_loop(self: Arc<Self>) {
        loop {
            self.changed.notified().await;
            // Coalesce bursts of changes into one write.
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.write_status().await;
        }
    }

    fn status(&self) -> Value {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let image_of = |i: usize, field: &str| self.spec()[field][i]["image"].clone();
        let statuses = |map: &BTreeMap<usize, (String, ContainerState)>,
                        field: &str|
         -> Vec<Value> {
            map.iter()
                .map(|(i, (name, st))| {
                    let mut v = json!({
                        "name": name, "ready": st.ready, "started": st.started && st.state.get("running").is_some(),
                        "restartCount": st.restart_count, "image": image_of(*i, field), "state": st.state,
                    });
                    if !st.last_state.is_null() {
                        v["lastState"] = st.last_state.clone();
                    }
                    v
                })
                .collect()
        };
        let containers = statuses(&s.containers, "containers");
        let all_ready = !s.containers.is_empty() && s.containers.values().all(|(_, c)| c.ready);
        let any_running = s.containers.values().any(|(_, c)| {
            c.state.get("running").is_some()
                || c.last_state.get("terminated").is_some() && c.state.get("waiting").is_some()
        });
        let phase = match s.finished {
            Some(p) => p,
            None if s.initialized && any_running => "Running",
            None => "Pending",
        };
        let cond =
            |t: &str, ok: bool| json!({"type": t, "status": if ok { "True" } else { "False" }});
        let mut status = json!({
            "phase": phase,
            "podIP": "127.0.0.1",
            "hostIP": "127.0.0.1",
            "startTime": s.start_time,
            "conditions": [cond("PodScheduled", true), cond("Initialized", s.initialized), cond("ContainersReady", all_ready), cond("Ready", all_ready)],
            "containerStatuses": containers,
            "portMappings": s.port_mappings,
        });
        if !s.init.is_empty() {
            status["initContainerStatuses"] = json!(statuses(&s.init, "initContainers"));
        }
        if let Some((reason, message)) = &s.pending_reason {
            status["reason"] = json!(reason);
            status["message"] = json!(message);
        }
        status
    }

    /// Writes the current status, keeping condition transition times when nothing changed.
    async fn write_status(&self) {
        let mut status = self.status();
        for _ in 0..10 {
            let current = match self.store.get(&self.key).await {
                Ok(Some(o)) => o,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(pod = %self.key, error = %e, "cannot read pod for status");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if current.metadata.uid != self.pod.metadata.uid {
                return;
            }
            let old_conditions = current
                .status()
                .and_then(|s| s.get("conditions"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let now = now_rfc3339();
            if let Some(conds) = status["conditions"].as_array_mut() {
                for c in conds {
                    let prev = old_conditions.iter().find(|o| o["type"] == c["type"]);
                    c["lastTransitionTime"] = match prev {
                        Some(p) if p["status"] == c["status"] => p["lastTransitionTime"].clone(),
                        _ => json!(now),
                    };
                }
            }
            if current.status() == Some(&status) {
                return;
            }
            let mut updated = current;
            updated.body.insert("status".into(), status.clone());
            match self.store.update_status(updated, ACTOR).await {
                Ok(_) | Err(StoreError::NotFound(_)) => return,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => {
                    tracing::warn!(pod = %self.key, error = %e, "cannot write pod status");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// One probe attempt: httpGet succeeds on 2xx/3xx, tcpSocket on connect, exec on exit code 0.
/// Exec probes run like the container: in its root, with its environment.
async fn run_probe(
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
async fn http_get_ok(port: u16, path: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_kubernetes() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "x".to_string()),
        ];
        assert_eq!(expand_vars("$(A)-$(B)", &env), "1-x");
        assert_eq!(expand_vars("$$(A) $(C) $A", &env), "$(A) $(C) $A");
        assert_eq!(expand_vars("$(A", &env), "$(A");
    }

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

    /// Every file under `dir` with its kind, mode and contents or link target, links not followed.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let meta = std::fs::symlink_metadata(&p).unwrap();
                let what = if meta.is_symlink() {
                    format!("link {:?}", std::fs::read_link(&p).unwrap())
                } else if meta.is_dir() {
                    stack.push(p.clone());
                    format!("dir {:o}", meta.permissions().mode())
                } else {
                    format!(
                        "file {:o} {:?}",
                        meta.permissions().mode(),
                        std::fs::read(&p).unwrap()
                    )
                };
                out.push((p, what));
            }
        }
        out.sort();
        out
    }

    fn rel_path() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop::collection::vec(
            prop::sample::select(vec!["..", ".", "", "/", "a", "b", "//", "link", "cfg", "x"]),
            0..6,
        )
        .prop_map(|parts| parts.join("/"))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Volume names, item paths, subPaths, mountPaths and workingDirs made of `..`, `.`, `/` and
        /// names, with links to the outside placed in the tree: whatever the kubelet builds stays in
        /// the pod's directory, and nothing outside it (nor the image) changes.
        #[test]
        fn paths_from_manifests_never_leave_the_pod_directory(
            names in proptest::collection::vec(rel_path(), 1..4),
            items in proptest::collection::vec((rel_path(), "[a-z]{0,3}"), 0..5),
            links in proptest::collection::vec(rel_path(), 0..3),
            mounts in proptest::collection::vec((0usize..4, rel_path(), rel_path()), 0..4),
            work in proptest::option::of(rel_path()),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let pod = tmp.path().join("pod");
            let outside = tmp.path().join("outside");
            let image = tmp.path().join("image");
            for d in [&outside, &image.join("etc"), &pod.join("volumes/cfg")] {
                std::fs::create_dir_all(d).unwrap();
            }
            std::fs::write(outside.join("secret"), "keep").unwrap();
            std::fs::write(image.join("etc/conf"), "image").unwrap();
            // Links a container could have left in its volumes, to a directory and to a file outside.
            for (i, at) in links.iter().enumerate() {
                if let Ok(at) = confine::confined(&pod.join("volumes"), at)
                    && at != pod.join("volumes")
                    && let Some(parent) = at.parent()
                    && std::fs::create_dir_all(parent).is_ok()
                {
                    let target = if i % 2 == 0 { outside.clone() } else { outside.join("secret") };
                    let _ = std::os::unix::fs::symlink(target, &at);
                }
            }
            let _ = std::os::unix::fs::symlink(&outside, pod.join("volumes/cfg/link"));
            let before = (snapshot(&outside), snapshot(&image));

            let mut volumes = HashMap::new();
            for name in &names {
                let files: Vec<(String, String)> =
                    items.iter().map(|(p, v)| (p.clone(), v.clone())).collect();
                if let Ok(path) = write_volume(&pod.join("volumes"), name, &files, 0o600) {
                    proptest::prop_assert!(path.starts_with(pod.join("volumes")), "{path:?}");
                    proptest::prop_assert!(path != pod.join("volumes"), "{path:?}");
                    volumes.insert(name.clone(), path);
                }
            }
            let root = pod.join("containers/c/root");
            std::fs::create_dir_all(&root).unwrap();
            link_children(&image, &root).unwrap();
            let mounts: Vec<Value> = mounts
                .iter()
                .map(|(v, sub, at)| json!({"name": names.get(*v).cloned().unwrap_or_default(), "subPath": sub, "mountPath": at}))
                .collect();
            if mount_volumes(&root, &volumes, &json!(mounts)).is_ok() {
                // Every mount is a link to a directory of the pod's volumes.
                for (path, what) in snapshot(&root) {
                    if let Ok(target) = std::fs::read_link(&path)
                        && !target.starts_with(&image)
                    {
                        proptest::prop_assert!(target.starts_with(pod.join("volumes")), "{path:?} {what}");
                        proptest::prop_assert!(
                            !std::fs::symlink_metadata(&target).unwrap().is_symlink(),
                            "{path:?} {what}"
                        );
                    }
                }
            }
            if let Ok(cwd) = working_dir(&root, work.as_deref()) {
                proptest::prop_assert!(cwd.starts_with(&root), "{cwd:?}");
            }
            proptest::prop_assert_eq!((snapshot(&outside), snapshot(&image)), before);
        }
    }

    #[test]
    fn a_volume_named_like_a_path_writes_nothing_outside_the_pod() {
        let tmp = tempfile::tempdir().unwrap();
        let volumes = tmp.path().join("pod/volumes");
        let files = [("key".to_string(), "v".to_string())];
        let err = write_volume(&volumes, "../../x", &files, 0o644).unwrap_err();
        assert!(
            err.starts_with("volume \"../../x\": Invalid value: a lowercase RFC 1123 label"),
            "{err}"
        );
        let err =
            write_volume(&volumes, "v", &[("../../../x".into(), "v".into())], 0o644).unwrap_err();
        assert_eq!(
            err,
            "volume v: item path \"../../../x\" must not climb above its directory with '..'"
        );
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "only the pod directory"
        );
        let root = tmp.path().join("pod/containers/c/root");
        std::fs::create_dir_all(&root).unwrap();
        let err = working_dir(&root, Some("/app/../../..")).unwrap_err();
        assert_eq!(
            err,
            "workingDir \"app/../../..\" must not climb above its directory with '..'"
        );
        assert_eq!(
            working_dir(&root, Some("/srv/./www")).unwrap(),
            root.join("srv/www")
        );
    }

    #[test]
    fn secrets_decode() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some("hello"));
    }
}
