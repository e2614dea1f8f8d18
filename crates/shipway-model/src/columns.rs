//! Printer columns: what a table of objects shows for each kind, worded and computed as kubectl
//! prints them (`kubectl get`, `-o wide`), shared by the CLI, the API and the dashboard.
//!
//! Cells are plain text; escaping for a terminal is the printer's job. Times are relative to the
//! `now` the caller passes (seconds since the Unix epoch), so a table is a pure function of its
//! objects and the clock.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Object;

/// One column of a kind's table.
pub struct Column {
    /// The header, as kubectl prints it (`READY`, `UP-TO-DATE`).
    pub name: &'static str,
    /// Shown only with `-o wide` (kubectl's priority > 0).
    pub wide: bool,
    cell: fn(&Cells<'_>) -> String,
}

impl Column {
    /// The cell of `obj` in this column, at `now` (Unix seconds).
    pub fn cell(&self, obj: &Object, now: i64) -> String {
        (self.cell)(&Cells { o: obj, now })
    }
}

const fn col(name: &'static str, cell: fn(&Cells<'_>) -> String) -> Column {
    Column {
        name,
        wide: false,
        cell,
    }
}

const fn wide(name: &'static str, cell: fn(&Cells<'_>) -> String) -> Column {
    Column {
        name,
        wide: true,
        cell,
    }
}

/// The columns of a kind's table: NAME first, AGE after the kind's own, the wide ones last.
pub fn columns(group: &str, kind: &str) -> Vec<Column> {
    let mut cols = vec![col("NAME", |c| c.o.metadata.name.clone())];
    cols.extend(match (group, kind) {
        ("apps", "Deployment") => vec![
            col("READY", |c| {
                format!("{}/{}", c.int("status.readyReplicas"), c.replicas())
            }),
            col("UP-TO-DATE", |c| {
                c.int("status.updatedReplicas").to_string()
            }),
            col("AVAILABLE", |c| {
                c.int("status.availableReplicas").to_string()
            }),
        ],
        ("apps", "ReplicaSet") => vec![
            col("DESIRED", |c| c.replicas().to_string()),
            col("CURRENT", |c| c.int("status.replicas").to_string()),
            col("READY", |c| c.int("status.readyReplicas").to_string()),
        ],
        ("", "Pod") => vec![
            col("READY", |c| {
                let total = c.list("spec.containers").len();
                let ready = c
                    .list("status.containerStatuses")
                    .iter()
                    .filter(|s| s["ready"] == Value::Bool(true))
                    .count();
                format!("{ready}/{total}")
            }),
            col("STATUS", pod_status),
            col("RESTARTS", restarts),
        ],
        ("", "Service") => vec![
            col("TYPE", |c| c.text_or("spec.type", "ClusterIP")),
            col("ADDRESS", |c| c.text_or("status.address", "<none>")),
            col("PORT(S)", service_ports),
        ],
        ("", "Endpoints") => vec![col("ENDPOINTS", endpoints)],
        ("", "ConfigMap") => vec![col("DATA", |c| c.entries(&["data", "binaryData"]))],
        ("", "Secret") => vec![
            col("TYPE", |c| c.text_or("type", "Opaque")),
            col("DATA", |c| c.entries(&["data", "stringData"])),
        ],
        ("", "Namespace") => vec![col("STATUS", |c| c.text_or("status.phase", "Active"))],
        ("batch", "Job") => vec![
            col("STATUS", job_status),
            col("COMPLETIONS", |c| {
                let completions = c.get("spec.completions").and_then(Value::as_i64);
                let parallelism = c.get("spec.parallelism").and_then(Value::as_i64);
                // kubectl: a work-queue Job (completions unset, parallelism > 1) shows `N/1 of P`.
                match (completions, parallelism) {
                    (Some(n), _) => format!("{}/{n}", c.int("status.succeeded")),
                    (None, Some(p)) if p > 1 => {
                        format!("{}/1 of {p}", c.int("status.succeeded"))
                    }
                    (None, _) => format!("{}/1", c.int("status.succeeded")),
                }
            }),
            col("DURATION", job_duration),
        ],
        ("argoproj.io", "Application") => vec![
            col("SYNC STATUS", |c| {
                c.text_or("status.sync.status", "Unknown")
            }),
            col("HEALTH STATUS", |c| {
                c.text_or("status.health.status", "Unknown")
            }),
        ],
        ("argoproj.io", "Rollout") => vec![
            col("DESIRED", |c| c.replicas().to_string()),
            col("CURRENT", |c| c.int("status.replicas").to_string()),
            col("UP-TO-DATE", |c| {
                c.int("status.updatedReplicas").to_string()
            }),
            col("AVAILABLE", |c| {
                c.int("status.availableReplicas").to_string()
            }),
        ],
        ("shipway.dev", "WorkflowRun") => vec![
            col("WORKFLOW", |c| {
                c.text_or("status.name", &c.text_or("spec.workflow", ""))
            }),
            col("EVENT", |c| c.text_or("spec.event", "")),
            col("REF", |c| c.text_or("spec.ref", "")),
            col("COMMIT", |c| {
                c.text_or("spec.headSha", "").chars().take(7).collect()
            }),
            col("STATUS", |c| {
                let status = c.text_or("status.status", "queued");
                match c.text_or("status.conclusion", "") {
                    conclusion if !conclusion.is_empty() => conclusion,
                    _ => status,
                }
            }),
        ],
        ("shipway.dev", "TrafficPolicy") => vec![
            col("READY", |c| {
                c.list("status.conditions")
                    .iter()
                    .find(|x| x["type"] == "BackendsReady")
                    .and_then(|x| x["status"].as_str())
                    .unwrap_or("Unknown")
                    .to_string()
            }),
            col("BACKENDS", traffic_backends),
        ],
        _ => vec![],
    });
    cols.push(col("AGE", |c| {
        c.since(c.o.metadata.creation_timestamp.as_deref())
            .unwrap_or_else(|| "<unknown>".into())
    }));
    cols.extend(match (group, kind) {
        ("apps", "Deployment" | "ReplicaSet") | ("batch", "Job") => vec![
            wide("CONTAINERS", |c| {
                c.names("spec.template.spec.containers", "name")
            }),
            wide("IMAGES", |c| {
                c.names("spec.template.spec.containers", "image")
            }),
            wide("SELECTOR", |c| match c.get("spec.selector.matchLabels") {
                Some(labels) => label_list(labels),
                None => "<none>".into(),
            }),
        ],
        ("", "Pod") => vec![
            wide("IP", |c| c.text_or("status.podIP", "<none>")),
            wide("NODE", |c| c.text_or("spec.nodeName", "<none>")),
            wide("PORTS", pod_ports),
            wide("CONTAINERS", |c| c.names("spec.containers", "name")),
        ],
        ("", "Service") => vec![wide("SELECTOR", |c| match c.get("spec.selector") {
            Some(labels) => label_list(labels),
            None => "<none>".into(),
        })],
        _ => vec![],
    });
    cols
}

/// kubectl's `HumanDuration`: precise when recent, coarse when old.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        },
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        },
        _ if d < 365 * 2 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time.
pub fn unix_seconds(rfc3339: &str) -> Option<i64> {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// What a cell function reads: the object and the time of the table.
struct Cells<'a> {
    o: &'a Object,
    now: i64,
}

impl<'a> Cells<'a> {
    fn get(&self, path: &str) -> Option<&'a Value> {
        self.o.field(path)
    }

    fn int(&self, path: &str) -> i64 {
        self.get(path).and_then(Value::as_i64).unwrap_or(0)
    }

    /// `spec.replicas`, defaulted to 1 as Kubernetes does.
    fn replicas(&self) -> i64 {
        self.get("spec.replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    }

    fn text_or(&self, path: &str, default: &str) -> String {
        match self.get(path) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Null) | None => default.into(),
            Some(Value::String(_)) => default.into(),
            Some(v) => v.to_string(),
        }
    }

    fn list(&self, path: &str) -> &'a [Value] {
        self.get(path)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// The number of keys of the named maps together (a ConfigMap's `data` and `binaryData`).
    fn entries(&self, fields: &[&str]) -> String {
        fields
            .iter()
            .filter_map(|f| self.get(f).and_then(Value::as_object))
            .map(|m| m.len())
            .sum::<usize>()
            .to_string()
    }

    /// The `field` of each element of a list, comma-separated (container names, images).
    fn names(&self, path: &str, field: &str) -> String {
        let names: Vec<&str> = self
            .list(path)
            .iter()
            .filter_map(|c| c.get(field).and_then(Value::as_str))
            .collect();
        if names.is_empty() {
            "<none>".into()
        } else {
            names.join(",")
        }
    }

    /// How long ago an RFC 3339 time was, in kubectl's words.
    fn since(&self, time: Option<&str>) -> Option<String> {
        Some(human_duration(self.now - unix_seconds(time?)?))
    }
}

fn label_list(labels: &Value) -> String {
    let Some(map) = labels.as_object().filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    map.iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",")
}

/// kubectl's pod STATUS: the phase, unless a container says more (`ErrImagePull`,
/// `CrashLoopBackOff`, `Completed`, `Error`, `ExitCode:3`), `Init:N/M` while init containers run,
/// and `Terminating` once deleted.
fn pod_status(c: &Cells<'_>) -> String {
    let phase = c.text_or("status.phase", "Pending");
    let mut reason = c.text_or("status.reason", &phase);
    let state_reason = |s: &Value| -> Option<String> {
        let state = s.get("state")?;
        if let Some(r) = state.pointer("/waiting/reason").and_then(Value::as_str)
            && !r.is_empty()
        {
            return Some(r.to_string());
        }
        let t = state.get("terminated")?;
        match t.get("reason").and_then(Value::as_str) {
            Some(r) if !r.is_empty() => Some(r.to_string()),
            _ => Some(match t.get("signal").and_then(Value::as_i64) {
                Some(sig) if sig != 0 => format!("Signal:{sig}"),
                _ => format!(
                    "ExitCode:{}",
                    t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                ),
            }),
        }
    };
    let init = c.list("status.initContainerStatuses");
    let mut initializing = false;
    for (i, s) in init.iter().enumerate() {
        let terminated = s.pointer("/state/terminated");
        let code = terminated
            .and_then(|t| t.get("exitCode"))
            .and_then(Value::as_i64);
        if code == Some(0) {
            continue;
        }
        initializing = true;
        reason = match (terminated, state_reason(s)) {
            (Some(t), _) => match t.get("reason").and_then(Value::as_str) {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => format!("Init:ExitCode:{}", code.unwrap_or(0)),
            },
            (None, Some(r)) if r != "PodInitializing" => format!("Init:{r}"),
            _ => format!(
                "Init:{i}/{}",
                c.list("spec.initContainers").len().max(init.len())
            ),
        };
        break;
    }
    if !initializing {
        let mut running = false;
        for s in c.list("status.containerStatuses").iter().rev() {
            if let Some(r) = state_reason(s) {
                reason = r;
            } else if s["ready"] == Value::Bool(true) && s.pointer("/state/running").is_some() {
                running = true;
            }
        }
        // A container that completed beside one still running: the pod is not "Completed".
        if reason == "Completed" && running {
            let ready = c
                .list("status.conditions")
                .iter()
                .any(|cond| cond["type"] == "Ready" && cond["status"] == "True");
            reason = if ready { "Running" } else { "NotReady" }.into();
        }
    }
    let terminal = matches!(phase.as_str(), "Succeeded" | "Failed");
    if c.o.metadata.deletion_timestamp.is_some() && !terminal {
        reason = "Terminating".into();
    }
    reason
}

/// kubectl's RESTARTS: the count, and how long ago the last one was (`2 (5m ago)`).
fn restarts(c: &Cells<'_>) -> String {
    let statuses = c.list("status.containerStatuses");
    let count: i64 = statuses
        .iter()
        .filter_map(|s| s["restartCount"].as_i64())
        .sum();
    let last = statuses
        .iter()
        .filter_map(|s| s.pointer("/lastState/terminated/finishedAt")?.as_str())
        .filter_map(unix_seconds)
        .max();
    match last {
        Some(t) if count > 0 => format!("{count} ({} ago)", human_duration(c.now - t)),
        _ => count.to_string(),
    }
}

fn service_ports(c: &Cells<'_>) -> String {
    let ports: Vec<String> = c
        .list("spec.ports")
        .iter()
        .map(|p| {
            let port = p.get("port").map(Value::to_string).unwrap_or_default();
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            format!("{port}/{proto}")
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

/// kubectl's ENDPOINTS: `ip:port` pairs, the first three and `+ N more...`.
/// A TrafficPolicy's backends with their weights and, once the proxy has written its status,
/// their ready endpoints: `stable 80% (2 ready), canary 20% (0 ready)`.
fn traffic_backends(c: &Cells<'_>) -> String {
    let ready = c.list("status.backends");
    let cells: Vec<String> = c
        .list("spec.backends")
        .iter()
        .map(|b| {
            let name = b["name"].as_str().unwrap_or_default();
            let weight = b["weight"].as_i64().unwrap_or(0);
            match ready.iter().find(|r| r["name"] == name) {
                Some(r) => format!(
                    "{name} {weight}% ({} ready)",
                    r["readyEndpoints"].as_i64().unwrap_or(0)
                ),
                None => format!("{name} {weight}%"),
            }
        })
        .collect();
    if cells.is_empty() {
        "<none>".into()
    } else {
        cells.join(", ")
    }
}

fn endpoints(c: &Cells<'_>) -> String {
    const MAX: usize = 3;
    let mut shown = Vec::new();
    let mut total = 0;
    for subset in c.list("subsets") {
        let empty = Vec::new();
        let ports = subset
            .get("ports")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        let addresses = subset
            .get("addresses")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        for address in addresses {
            let ip = address.get("ip").and_then(Value::as_str).unwrap_or("");
            if ports.is_empty() {
                total += 1;
                if shown.len() < MAX {
                    shown.push(ip.to_string());
                }
            }
            for port in ports {
                total += 1;
                if shown.len() < MAX {
                    let number = port.get("port").map(Value::to_string).unwrap_or_default();
                    shown.push(format!("{ip}:{number}"));
                }
            }
        }
    }
    if total == 0 {
        return "<none>".into();
    }
    let mut out = shown.join(",");
    if total > shown.len() {
        out.push_str(&format!(" + {} more...", total - shown.len()));
    }
    out
}

/// The host ports a local pod's container ports were given (`web:8080->41234`), where the
/// process really listens.
fn pod_ports(c: &Cells<'_>) -> String {
    let ports: Vec<String> = c
        .list("status.portMappings")
        .iter()
        .map(|m| {
            let text = |k: &str| m.get(k).map(Value::to_string).unwrap_or_default();
            format!(
                "{}:{}->{}",
                m.get("container").and_then(Value::as_str).unwrap_or(""),
                text("containerPort"),
                text("hostPort")
            )
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

/// kubectl's Job STATUS (1.28+): from the conditions, `Running` while none has ended it.
fn job_status(c: &Cells<'_>) -> String {
    let is_true = |kind: &str| {
        c.list("status.conditions")
            .iter()
            .any(|cond| cond["type"] == kind && cond["status"] == "True")
    };
    if is_true("Complete") {
        "Complete"
    } else if is_true("Failed") {
        "Failed"
    } else if c.o.metadata.deletion_timestamp.is_some() {
        "Terminating"
    } else if is_true("FailureTarget") {
        "FailureTarget"
    } else if is_true("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if is_true("Suspended") {
        "Suspended"
    } else {
        "Running"
    }
    .into()
}

/// kubectl's Job DURATION: start to completion, or to now while it runs.
fn job_duration(c: &Cells<'_>) -> String {
    let time = |path: &str| c.get(path).and_then(Value::as_str).and_then(unix_seconds);
    let Some(start) = time("status.startTime") else {
        return String::new();
    };
    let end = time("status.completionTime").unwrap_or(c.now);
    human_duration(end - start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        serde_json::from_value(v).unwrap()
    }

    /// The cells of every column of `o`'s kind, at a fixed time.
    fn row(o: &Object, with_wide: bool) -> Vec<(String, String)> {
        let now = unix_seconds("2026-12-02T10:00:00Z").unwrap();
        columns(o.group(), &o.kind)
            .iter()
            .filter(|c| with_wide || !c.wide)
            .map(|c| (c.name.to_string(), c.cell(o, now)))
            .collect()
    }

    fn cells(o: &Object) -> Vec<String> {
        row(o, false).into_iter().map(|(_, v)| v).collect()
    }

    fn pod(status: Value) -> Object {
        obj(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "creationTimestamp": "2026-12-02T09:55:00Z"},
            "spec": {"containers": [{"name": "web", "image": "demo"}]},
            "status": status,
        }))
    }

    #[test]
    fn pod_status_says_what_the_containers_say() {
        let waiting = |reason: &str| {
            pod(json!({"phase": "Pending", "containerStatuses": [
                {"name": "web", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": reason, "message": "image demo not found"}}}]}))
        };
        assert_eq!(
            cells(&waiting("ErrImagePull")),
            ["web-1", "0/1", "ErrImagePull", "0", "5m"]
        );
        assert_eq!(cells(&waiting("CrashLoopBackOff"))[2], "CrashLoopBackOff");
        let running = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "web", "ready": true, "restartCount": 2, "state": {"running": {}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-12-02T09:58:00Z"}}}]}));
        assert_eq!(
            cells(&running),
            ["web-1", "1/1", "Running", "2 (2m ago)", "5m"]
        );
        let mut deleted = running.clone();
        deleted.metadata.deletion_timestamp = Some("2026-12-02T09:59:00Z".into());
        assert_eq!(cells(&deleted)[2], "Terminating");
        let exited = pod(json!({"phase": "Failed", "containerStatuses": [
            {"name": "web", "ready": false, "restartCount": 0,
             "state": {"terminated": {"exitCode": 3}}}]}));
        assert_eq!(cells(&exited)[2], "ExitCode:3");
        let mut finished = exited.clone();
        finished.metadata.deletion_timestamp = Some("2026-12-02T09:59:00Z".into());
        assert_eq!(
            cells(&finished)[2],
            "ExitCode:3",
            "a finished pod is not Terminating"
        );
        let init = obj(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0}}},
                {"name": "b", "state": {"running": {}}}]},
        }));
        assert_eq!(cells(&init)[2], "Init:1/2");
        assert_eq!(cells(&pod(json!({})))[2], "Pending");
    }

    #[test]
    fn jobs_show_status_completions_and_duration() {
        let job = |status: Value| {
            obj(json!({"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": "migrate", "creationTimestamp": "2026-12-02T09:00:00Z"},
                "spec": {"completions": 3}, "status": status}))
        };
        let running = job(json!({"succeeded": 1, "startTime": "2026-12-02T09:59:00Z"}));
        assert_eq!(cells(&running), ["migrate", "Running", "1/3", "60s", "60m"]);
        let done = job(json!({"succeeded": 3, "startTime": "2026-12-02T09:00:00Z",
            "completionTime": "2026-12-02T09:00:42Z",
            "conditions": [{"type": "Complete", "status": "True"}]}));
        assert_eq!(cells(&done)[1..4], ["Complete", "3/3", "42s"]);
        let failed = job(json!({"conditions": [{"type": "Failed", "status": "True"}]}));
        assert_eq!(cells(&failed)[1..4], ["Failed", "0/3", ""]);
    }

    #[test]
    fn traffic_policies_show_weights_ready_endpoints_and_their_condition() {
        let mut p = obj(
            json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "TrafficPolicy",
            "metadata": {"name": "web"},
            "spec": {"backends": [{"name": "stable", "weight": 80}, {"name": "canary", "weight": 20}]}}),
        );
        assert_eq!(cells(&p)[1..3], ["Unknown", "stable 80%, canary 20%"]);
        p.body.insert(
            "status".into(),
            json!({"backends": [{"name": "stable", "weight": 80, "readyEndpoints": 2},
                {"name": "canary", "weight": 20, "readyEndpoints": 0}],
                "conditions": [{"type": "BackendsReady", "status": "False"}]}),
        );
        assert_eq!(
            cells(&p)[1..3],
            ["False", "stable 80% (2 ready), canary 20% (0 ready)"]
        );
    }

    #[test]
    fn endpoints_list_three_addresses_then_say_how_many_more() {
        let ep = obj(
            json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
            "subsets": [
                {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 41001}, {"port": 41002}]},
                {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 41003}]},
                {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 41004}]},
            ]}),
        );
        assert_eq!(
            cells(&ep)[1],
            "127.0.0.1:41001,127.0.0.1:41002,127.0.0.1:41003 + 1 more..."
        );
        let empty =
            obj(json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"}}));
        assert_eq!(cells(&empty)[1], "<none>");
    }

    #[test]
    fn wide_columns_come_last_and_only_when_asked() {
        let p = pod(
            json!({"phase": "Running", "podIP": "127.0.0.1", "portMappings": [
            {"container": "web", "containerPort": 8080, "hostPort": 41234}]}),
        );
        let names: Vec<String> = row(&p, true).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "PORTS",
                "CONTAINERS"
            ]
        );
        let wide: Vec<String> = row(&p, true).into_iter().skip(5).map(|(_, v)| v).collect();
        assert_eq!(wide, ["127.0.0.1", "<none>", "web:8080->41234", "web"]);
        let deployment = obj(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "web", "image": "demo:1"}]}}},
            "status": {"readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1}}));
        assert_eq!(
            row(&deployment, true)
                .into_iter()
                .map(|(_, v)| v)
                .collect::<Vec<_>>(),
            [
                "web",
                "1/1",
                "1",
                "1",
                "<unknown>",
                "web",
                "demo:1",
                "app=web"
            ]
        );
    }

    #[test]
    fn ages_are_humane() {
        for (secs, want) in [
            (5, "5s"),
            (130, "2m10s"),
            (600, "10m"),
            (4 * 3600 + 60, "4h1m"),
            (30 * 3600, "30h"),
            (3 * 86400, "3d"),
            (800 * 86400, "2y"),
        ] {
            assert_eq!(human_duration(secs), want);
        }
    }
}
