//! Startup, liveness and readiness probes with Kubernetes' semantics. [`Probes`] is the pure
//! state machine (which probe is due when, thresholds, startup gating, when to kill); the worker
//! only runs the attempts it asks for ([`attempt`]: httpGet on hyper's client, tcpSocket, exec)
//! and applies what it says.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Kubelet;
use super::sandbox::Sandbox;
use super::worker::PodWorker;

/// Which probe, in kubelet's words (`Readiness probe failed: ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl std::fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        })
    }
}

/// A probe's timing and thresholds, with Kubernetes' defaults and minimums.
#[derive(Clone, Debug)]
pub(super) struct ProbeSpec {
    pub(super) kind: ProbeKind,
    /// The probe as written (what to check: httpGet, tcpSocket or exec).
    pub(super) probe: Value,
    pub(super) initial_delay: Duration,
    pub(super) period: Duration,
    pub(super) timeout: Duration,
    pub(super) success_threshold: u32,
    pub(super) failure_threshold: u32,
}

impl ProbeSpec {
    pub(super) fn new(kind: ProbeKind, probe: &Value) -> ProbeSpec {
        let secs = |field: &str, default: u64, min: u64| {
            Duration::from_secs(probe[field].as_u64().unwrap_or(default).max(min))
        };
        let count = |field: &str, default: u64| {
            probe[field]
                .as_u64()
                .unwrap_or(default)
                .clamp(1, u32::MAX as u64) as u32
        };
        ProbeSpec {
            kind,
            probe: probe.clone(),
            initial_delay: secs("initialDelaySeconds", 0, 0),
            period: secs("periodSeconds", 10, 1),
            timeout: secs("timeoutSeconds", 1, 1),
            // Kubernetes requires 1 for liveness and startup probes.
            success_threshold: match kind {
                ProbeKind::Readiness => count("successThreshold", 1),
                _ => 1,
            },
            failure_threshold: count("failureThreshold", 3),
        }
    }
}

/// What one observed result changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Transition {
    /// Nothing the container's status shows.
    None,
    /// The startup probe passed: liveness and readiness probes begin.
    Started,
    /// Readiness passed `successThreshold` times in a row.
    Ready,
    /// Readiness failed `failureThreshold` times in a row.
    NotReady,
    /// Liveness or startup failed `failureThreshold` times in a row: kill and restart.
    Kill,
}

/// One probe's run of equal results, as kubelet's prober worker counts them.
#[derive(Clone, Debug)]
struct ProbeState {
    spec: ProbeSpec,
    next: Instant,
    /// The last result and how many times in a row it came.
    last: Option<bool>,
    run: u32,
    /// The result that was last acted on (thresholds reached).
    settled: Option<bool>,
    /// The last `Unhealthy` message recorded and when, so a probe that keeps failing the same way
    /// records one event a minute instead of one a period.
    reported: Option<(String, Instant)>,
}

/// How often a probe that keeps failing with the same message records it again once its
/// failure threshold has been reached.
const REPEAT_EVENT: Duration = Duration::from_secs(60);

/// A container's probes: which is due next, and what each result means.
#[derive(Clone, Debug)]
pub(super) struct Probes {
    startup: Option<ProbeState>,
    liveness: Option<ProbeState>,
    readiness: Option<ProbeState>,
    started: bool,
    ready: bool,
    killed: bool,
}

/// What the worker does after a result: the transition, and the `Unhealthy` event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Observed {
    pub(super) transition: Transition,
    pub(super) unhealthy: Option<String>,
}

impl Probes {
    /// The probes of container `c`, whose process started at `started_at`.
    pub(super) fn new(c: &Value, started_at: Instant) -> Probes {
        let state = |kind, field: &str| {
            c.get(field).filter(|p| p.is_object()).map(|p| {
                let spec = ProbeSpec::new(kind, p);
                ProbeState {
                    next: started_at + spec.initial_delay,
                    spec,
                    last: None,
                    run: 0,
                    settled: None,
                    reported: None,
                }
            })
        };
        let startup = state(ProbeKind::Startup, "startupProbe");
        let readiness = state(ProbeKind::Readiness, "readinessProbe");
        Probes {
            started: startup.is_none(),
            // Without a readiness probe a started container is ready.
            ready: startup.is_none() && readiness.is_none(),
            liveness: state(ProbeKind::Liveness, "livenessProbe"),
            startup,
            readiness,
            killed: false,
        }
    }

    /// Whether the container counts as started (no startup probe, or it passed).
    pub(super) fn started(&self) -> bool {
        self.started
    }

    /// Whether the container is ready.
    pub(super) fn ready(&self) -> bool {
        self.ready
    }

    /// The probe to run next and when; `None` once nothing is left to probe (a kill was asked
    /// for, or the only probe was a startup probe that passed).
    pub(super) fn next(&self) -> Option<(ProbeKind, Instant)> {
        if self.killed {
            return None;
        }
        let due: Vec<&ProbeState> = if self.started {
            [&self.liveness, &self.readiness]
                .into_iter()
                .flatten()
                .collect()
        } else {
            // Liveness and readiness wait for the startup probe, as in Kubernetes.
            self.startup.iter().collect()
        };
        due.into_iter()
            .min_by_key(|p| p.next)
            .map(|p| (p.spec.kind, p.next))
    }

    /// The spec of probe `kind`.
    pub(super) fn spec(&self, kind: ProbeKind) -> Option<&ProbeSpec> {
        self.state(kind).map(|p| &p.spec)
    }

    fn state(&self, kind: ProbeKind) -> Option<&ProbeState> {
        match kind {
            ProbeKind::Startup => self.startup.as_ref(),
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
        }
    }

    /// Records the result of one attempt of probe `kind` that finished at `now` (`Err` carries
    /// the failure, worded as kubelet's probers word it).
    pub(super) fn observe(
        &mut self,
        kind: ProbeKind,
        result: &Result<(), String>,
        now: Instant,
    ) -> Observed {
        let started = self.started;
        let probe = match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
        };
        let Some(p) = probe else {
            return Observed {
                transition: Transition::None,
                unhealthy: None,
            };
        };
        let ok = result.is_ok();
        p.run = if p.last == Some(ok) { p.run + 1 } else { 1 };
        p.last = Some(ok);
        p.next = now + p.spec.period;
        let threshold = if ok {
            p.spec.success_threshold
        } else {
            p.spec.failure_threshold
        };
        let reached = p.run >= threshold;
        let unhealthy = match result {
            Ok(()) => {
                p.reported = None;
                None
            }
            Err(message) => {
                // Every failure on the way to the threshold is an event (kubectl shows the
                // count); after that, a new message or a minute's repeat.
                let repeat = p.settled == Some(false)
                    && p.reported.as_ref().is_some_and(|(m, at)| {
                        m == message && now.saturating_duration_since(*at) < REPEAT_EVENT
                    });
                (!repeat).then(|| {
                    p.reported = Some((message.clone(), now));
                    message.clone()
                })
            }
        };
        let mut transition = Transition::None;
        if reached && p.settled != Some(ok) {
            p.settled = Some(ok);
            transition = match (kind, ok) {
                (ProbeKind::Startup, true) => Transition::Started,
                (ProbeKind::Readiness, true) => Transition::Ready,
                (ProbeKind::Readiness, false) => Transition::NotReady,
                (ProbeKind::Liveness, true) => Transition::None,
                (ProbeKind::Startup | ProbeKind::Liveness, false) => Transition::Kill,
            };
        }
        match transition {
            Transition::Started if !started => {
                self.started = true;
                // The startup probe has done its job; the others start now (or after their
                // initial delay, counted from the container's start).
                self.startup = None;
                for p in [&mut self.liveness, &mut self.readiness]
                    .into_iter()
                    .flatten()
                {
                    p.next = p.next.max(now);
                }
                self.ready = self.readiness.is_none();
            }
            Transition::Ready => self.ready = true,
            Transition::NotReady => self.ready = false,
            Transition::Kill => {
                self.killed = true;
                self.ready = false;
            }
            _ => {}
        }
        Observed {
            transition,
            unhealthy,
        }
    }
}

impl PodWorker {
    /// Runs the container's probes as [`Probes`] schedules them, reflects `started` and `ready`
    /// in the container's status, records failures as `Unhealthy` events, and asks for a kill
    /// when liveness (or startup) fails.
    pub(super) async fn probe(
        self: Arc<Self>,
        index: usize,
        c: Value,
        sandbox: Arc<Sandbox>,
        env: Arc<Vec<(String, String)>>,
        kill: watch::Sender<bool>,
    ) {
        let cname = c["name"].as_str().unwrap_or_default().to_string();
        // Exec probes run where the container runs.
        let root = Kubelet::container_root(&self.config.data_dir, &self.pod, &cname);
        let mut probes = Probes::new(&c, Instant::now());
        let (mut started, mut ready) = (probes.started(), probes.ready());
        self.set_container(false, index, |st| {
            st.started = started;
            st.ready = ready;
        });
        while let Some((kind, at)) = probes.next() {
            tokio::time::sleep_until(at).await;
            let Some(spec) = probes.spec(kind).cloned() else {
                return;
            };
            let target = Target::of(&spec.probe, &cname, &sandbox);
            let result = attempt(&spec.probe, target, spec.timeout, &root, &env).await;
            let observed = probes.observe(kind, &result, Instant::now());
            if let Some(message) = observed.unhealthy {
                self.record("Unhealthy", &format!("{kind} probe failed: {message}"))
                    .await;
            }
            if (probes.started(), probes.ready()) != (started, ready) {
                (started, ready) = (probes.started(), probes.ready());
                self.set_container(false, index, |st| {
                    st.started = started;
                    st.ready = ready;
                });
            }
            if observed.transition == Transition::Kill {
                tracing::info!(pod = %self.key, container = %cname, "{kind} probe failed; restarting");
                self.record(
                    "Killing",
                    &format!(
                        "Container {cname} failed {} probe, will be restarted",
                        kind.to_string().to_lowercase()
                    ),
                )
                .await;
                let _ = kill.send(true);
                return;
            }
        }
        // Nothing left to probe: keep `kill` open, as the worker reads a dropped sender as a
        // finished probe task (it aborts this task when the container ends).
        std::future::pending::<()>().await
    }
}

/// Where an httpGet or tcpSocket probe connects: the loopback port the pod was given for the
/// named or numbered container port (a number the container does not declare is used as is).
#[derive(Clone, Debug)]
pub(super) enum Target {
    Port(u16),
    /// The probe names a port the container does not declare, or no port at all.
    Missing(String),
    /// Exec probes connect nowhere.
    None,
}

impl Target {
    fn of(probe: &Value, cname: &str, sandbox: &Sandbox) -> Target {
        let Some(port) = probe
            .pointer("/httpGet/port")
            .or_else(|| probe.pointer("/tcpSocket/port"))
        else {
            return if probe.get("httpGet").is_some() || probe.get("tcpSocket").is_some() {
                Target::Missing("the probe names no port".into())
            } else {
                Target::None
            };
        };
        let mapping = sandbox
            .port_mappings
            .iter()
            .filter(|m| m["container"] == cname)
            .find(|m| match port {
                Value::Number(n) => m["containerPort"].as_i64() == n.as_i64(),
                Value::String(name) => m["name"] == name.as_str(),
                _ => false,
            });
        match mapping.and_then(|m| m["hostPort"].as_u64()) {
            Some(p) => Target::Port(p as u16),
            None => match port.as_u64().and_then(|p| u16::try_from(p).ok()) {
                Some(p) if p > 0 => Target::Port(p),
                // kubelet's words for a named port the container does not have.
                _ => Target::Missing(match port {
                    Value::String(name) => format!("port {name:?} not found in container {cname}"),
                    other => format!("invalid port {other}"),
                }),
            },
        }
    }
}

/// One probe attempt, as kubelet's probers judge and word it: httpGet succeeds on a status of
/// 200–399, tcpSocket on connect, exec on exit code 0. Exec probes run like the container: in its
/// root, with its environment. `Err` is the message after `... probe failed: `.
pub(super) async fn attempt(
    probe: &Value,
    target: Target,
    timeout: Duration,
    root: &Path,
    env: &[(String, String)],
) -> Result<(), String> {
    let port = match target {
        Target::Port(p) => Some(p),
        Target::Missing(why) => return Err(why),
        Target::None => None,
    };
    if let (Some(http), Some(port)) = (probe.get("httpGet"), port) {
        let path = http["path"]
            .as_str()
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let url = format!("http://127.0.0.1:{port}{path}");
        return match tokio::time::timeout(timeout, http_get(port, &path, &http["httpHeaders"]))
            .await
        {
            Err(_) => Err(format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
            Ok(Err(e)) => Err(format!("Get {url:?}: {e}")),
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
            Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
        };
    }
    if let (Some(_), Some(port)) = (probe.get("tcpSocket"), port) {
        return match tokio::time::timeout(timeout, dial(port)).await {
            Err(_) => Err(format!("dial tcp 127.0.0.1:{port}: i/o timeout")),
            Ok(r) => r.map(drop),
        };
    }
    if let Some(cmd) = probe.pointer("/exec/command").and_then(Value::as_array) {
        let argv: Vec<String> = cmd
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect();
        let Some((program, args)) = argv.split_first() else {
            return Err("exec probe has no command".into());
        };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .current_dir(root)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        return match tokio::time::timeout(timeout, command.output()).await {
            Err(_) => Err(format!("command {:?} timed out", argv.join(" "))),
            Ok(Err(e)) => Err(format!("exec {program:?}: {e}")),
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => {
                // kubelet shows the command's output; say how it ended when it printed nothing.
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                let text = text.trim_end();
                Err(if text.is_empty() {
                    format!("command {:?} exited with {}", argv.join(" "), out.status)
                } else {
                    text.chars().take(1024).collect()
                })
            }
        };
    }
    Err("the probe has no httpGet, tcpSocket or exec".into())
}

/// Connects to the loopback `port`; the error in Go's words (`dial tcp 127.0.0.1:8080: connect:
/// connection refused`), which is what kubelet's events show.
async fn dial(port: u16) -> Result<tokio::net::TcpStream, String> {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| {
            let what = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                _ => {
                    let text = e.to_string();
                    let text = text.split(" (os error").next().unwrap_or(&text);
                    text.to_lowercase()
                }
            };
            format!("dial tcp 127.0.0.1:{port}: connect: {what}")
        })
}

/// A GET on hyper's HTTP/1 client over one fresh connection; the response status.
async fn http_get(port: u16, path: &str, headers: &Value) -> Result<u16, String> {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    let stream = dial(port).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    // The connection is dropped with this task once the status is read.
    let conn = tokio::spawn(conn);
    let mut request = hyper::Request::get(path)
        .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
        .header(hyper::header::USER_AGENT, "shipway-probe")
        .header(hyper::header::ACCEPT, "*/*");
    for h in headers.as_array().into_iter().flatten() {
        if let (Some(name), Some(value)) = (h["name"].as_str(), h["value"].as_str()) {
            request = request.header(name, value);
        }
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid request: {e}"))?;
    let response = sender.send_request(request).await;
    conn.abort();
    response
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Runs the probes of container `c` on paused time for `secs` seconds, each attempt answered
    /// by `answer(kind, second)` (`Err` is the failure message); one line per attempt: the second,
    /// the probe, its result, the transition and whether an `Unhealthy` event is recorded, then
    /// the container's final started/ready.
    async fn trace(
        c: Value,
        secs: u64,
        answer: impl Fn(ProbeKind, u64) -> Result<(), String>,
    ) -> String {
        let start = Instant::now();
        let mut probes = Probes::new(&c, start);
        let mut out = vec![format!(
            "start started={} ready={}",
            probes.started(),
            probes.ready()
        )];
        while let Some((kind, at)) = probes.next() {
            if at > start + Duration::from_secs(secs) {
                break;
            }
            tokio::time::sleep_until(at).await;
            let t = (Instant::now() - start).as_secs();
            let result = answer(kind, t);
            let o = probes.observe(kind, &result, Instant::now());
            out.push(format!(
                "{t}s {kind} {} -> {:?}{}",
                if result.is_ok() { "ok" } else { "fail" },
                o.transition,
                o.unhealthy
                    .map(|m| format!(" event {m:?}"))
                    .unwrap_or_default()
            ));
        }
        out.push(format!(
            "end started={} ready={} next={:?}",
            probes.started(),
            probes.ready(),
            probes.next().map(|(k, _)| k)
        ));
        out.join("\n")
    }

    fn fail_if(bad: bool) -> Result<(), String> {
        if bad { Err("refused".into()) } else { Ok(()) }
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_waits_its_initial_delay_and_counts_both_thresholds() {
        let c = json!({"readinessProbe": {"tcpSocket": {"port": 80}, "initialDelaySeconds": 5,
            "periodSeconds": 2, "successThreshold": 2, "failureThreshold": 2}});
        let got = trace(c, 18, |_, t| fail_if(!(9..15).contains(&t))).await;
        assert_eq!(
            got,
            r#"start started=true ready=false
5s Readiness fail -> None event "refused"
7s Readiness fail -> NotReady event "refused"
9s Readiness ok -> None
11s Readiness ok -> Ready
13s Readiness ok -> None
15s Readiness fail -> None event "refused"
17s Readiness fail -> NotReady event "refused"
end started=true ready=false next=Some(Readiness)"#
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_startup_probe_holds_back_liveness_which_kills_at_its_threshold() {
        let c = json!({
            "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 10},
            "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 2,
                // Ignored as Kubernetes requires 1 for liveness: one success resets the count.
                "successThreshold": 3},
        });
        let got = trace(c, 20, |kind, t| match kind {
            ProbeKind::Startup => fail_if(t < 3),
            _ => fail_if(t == 4 || t >= 6),
        })
        .await;
        assert_eq!(
            got,
            r#"start started=false ready=false
0s Startup fail -> None event "refused"
1s Startup fail -> None event "refused"
2s Startup fail -> None event "refused"
3s Startup ok -> Started
3s Liveness ok -> None
4s Liveness fail -> None event "refused"
5s Liveness ok -> None
6s Liveness fail -> None event "refused"
7s Liveness fail -> Kill event "refused"
end started=true ready=false next=None"#
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_startup_probe_that_never_passes_kills_and_readiness_never_runs() {
        let c = json!({
            "startupProbe": {"httpGet": {"port": 80}, "initialDelaySeconds": 2, "periodSeconds": 3, "failureThreshold": 3},
            "readinessProbe": {"httpGet": {"port": 80}, "periodSeconds": 1},
        });
        let got = trace(c, 60, |_, _| {
            Err("HTTP probe failed with statuscode: 503".into())
        })
        .await;
        assert_eq!(
            got,
            r#"start started=false ready=false
2s Startup fail -> None event "HTTP probe failed with statuscode: 503"
5s Startup fail -> None event "HTTP probe failed with statuscode: 503"
8s Startup fail -> Kill event "HTTP probe failed with statuscode: 503"
end started=false ready=false next=None"#
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_keeps_failing_records_an_event_a_minute_or_when_its_message_changes() {
        // Defaults: every 10 s, three failures to act.
        let c = json!({"readinessProbe": {"tcpSocket": {"port": 80}}});
        let got = trace(c, 150, |_, t| {
            Err(if t == 100 { "i/o timeout" } else { "refused" }.into())
        })
        .await;
        assert_eq!(
            got,
            r#"start started=true ready=false
0s Readiness fail -> None event "refused"
10s Readiness fail -> None event "refused"
20s Readiness fail -> NotReady event "refused"
30s Readiness fail -> None
40s Readiness fail -> None
50s Readiness fail -> None
60s Readiness fail -> None
70s Readiness fail -> None
80s Readiness fail -> None event "refused"
90s Readiness fail -> None
100s Readiness fail -> None event "i/o timeout"
110s Readiness fail -> None event "refused"
120s Readiness fail -> None
130s Readiness fail -> None
140s Readiness fail -> None
150s Readiness fail -> None
end started=true ready=false next=Some(Readiness)"#
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_probes_a_container_is_started_and_ready_at_once() {
        let got = trace(json!({"name": "web"}), 60, |_, _| Ok(())).await;
        assert_eq!(
            got,
            "start started=true ready=true\nend started=true ready=true next=None"
        );
        let with_startup =
            json!({"startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}});
        let got = trace(with_startup, 60, |_, t| fail_if(t < 1)).await;
        assert_eq!(
            got,
            r#"start started=false ready=false
0s Startup fail -> None event "refused"
1s Startup ok -> Started
end started=true ready=true next=None"#
        );
    }

    #[test]
    fn specs_take_kubernetes_defaults_and_minimums() {
        let s = ProbeSpec::new(
            ProbeKind::Readiness,
            &json!({"periodSeconds": 0, "timeoutSeconds": 0, "successThreshold": 0}),
        );
        assert_eq!(
            (
                s.initial_delay,
                s.period,
                s.timeout,
                s.success_threshold,
                s.failure_threshold
            ),
            (
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_secs(1),
                1,
                3
            )
        );
        let s = ProbeSpec::new(ProbeKind::Liveness, &json!({}));
        assert_eq!(
            (s.period, s.timeout, s.success_threshold),
            (Duration::from_secs(10), Duration::from_secs(1), 1)
        );
    }

    /// Real sockets on loopback: the words of each failure are kubelet's.
    #[tokio::test]
    async fn attempts_word_failures_as_kubelet_does() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let root = std::env::temp_dir();
        // A port that refuses: bound, then closed.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refused = closed.local_addr().unwrap().port();
        drop(closed);
        let tcp = json!({"tcpSocket": {"port": refused}});
        assert_eq!(
            attempt(
                &tcp,
                Target::Port(refused),
                Duration::from_secs(1),
                &root,
                &[]
            )
            .await,
            Err(format!(
                "dial tcp 127.0.0.1:{refused}: connect: connection refused"
            ))
        );
        // An HTTP server answering each request with the status its path names.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0; 1024];
                    let n = s.read(&mut buf).await.unwrap();
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let code = &head[5..8];
                    if code == "hng" {
                        return std::future::pending::<()>().await;
                    }
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        let get = |path: &str| json!({"httpGet": {"path": path, "port": port}});
        let run = |path: &'static str| {
            let probe = get(path);
            let root = root.clone();
            async move {
                attempt(
                    &probe,
                    Target::Port(port),
                    Duration::from_secs(1),
                    &root,
                    &[],
                )
                .await
            }
        };
        assert_eq!(run("/200").await, Ok(()));
        assert_eq!(run("/399").await, Ok(()));
        assert_eq!(
            run("/404").await,
            Err("HTTP probe failed with statuscode: 404".into())
        );
        assert_eq!(
            run("/503").await,
            Err("HTTP probe failed with statuscode: 503".into())
        );
        assert_eq!(
            run("/hng").await,
            Err(format!(
                "Get \"http://127.0.0.1:{port}/hng\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ))
        );
        assert_eq!(
            attempt(
                &get("/"),
                Target::Port(refused),
                Duration::from_secs(1),
                &root,
                &[]
            )
            .await,
            Err(format!(
                "Get \"http://127.0.0.1:{refused}/\": dial tcp 127.0.0.1:{refused}: connect: connection refused"
            ))
        );
        let exec = json!({"exec": {"command": ["sh", "-c", "echo not yet; exit 1"]}});
        assert_eq!(
            attempt(&exec, Target::None, Duration::from_secs(1), &root, &[]).await,
            Err("not yet".into())
        );
        let missing = Target::Missing("port \"admin\" not found in container web".into());
        assert_eq!(
            attempt(&get("/"), missing, Duration::from_secs(1), &root, &[]).await,
            Err("port \"admin\" not found in container web".into())
        );
    }
}
