//! `shipway rollout`: Argo Rollouts with `kubectl argo rollouts`' verbs. Every verb writes what
//! the plugin writes — a merge patch of `spec` (paused, restartAt, the pod template) or of
//! `status` (abort, promoteFull, pauseConditions, currentStepIndex) — so the Rollout controller
//! acts on the same fields and scripts written against Argo's JSON keep reading them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shipway_model::Object;
use shipway_model::columns::{columns, human_duration, unix_seconds};
use shipway_rollout::rollout::STEPS_PRESET;

use crate::Failure;
use crate::cli::{OutputFormat, RolloutCommand, RolloutSetCommand, RolloutTarget};
use crate::client::{Client, ClientError};
use crate::output;

const RESOURCE: &str = "rollouts";
const REVISION: &str = "rollout.argoproj.io/revision";
const HASH: &str = "rollouts-pod-template-hash";
/// How often `status` and `get --watch` look again.
const POLL: Duration = Duration::from_millis(250);

pub async fn run(client: &Client, command: RolloutCommand) -> Result<(), Failure> {
    match command {
        RolloutCommand::Get {
            rollout,
            output,
            watch,
        } => get(client, &rollout, output, watch).await,
        RolloutCommand::List { namespace, output } => list(client, &namespace, output).await,
        RolloutCommand::Promote { rollout, full } => {
            let ro = fetch(client, &rollout).await?;
            let (spec, status) = promote_patches(&ro, full);
            // Status first, as the plugin: the controller acts once spec.paused is unset.
            if let Some(p) = status {
                patch(client, &rollout, &p, true).await?;
            }
            if let Some(p) = spec {
                patch(client, &rollout, &p, false).await?;
            }
            let how = if full { "fully promoted" } else { "promoted" };
            outln!("rollout '{}' {how}", rollout.name);
            Ok(())
        }
        RolloutCommand::Abort { rollout } => {
            patch(client, &rollout, &json!({"status": {"abort": true}}), true).await?;
            outln!("rollout '{}' aborted", rollout.name);
            Ok(())
        }
        RolloutCommand::Retry { rollout } => {
            patch(client, &rollout, &json!({"status": {"abort": false}}), true).await?;
            outln!("rollout '{}' retried", rollout.name);
            Ok(())
        }
        RolloutCommand::Pause { rollout } => {
            patch(client, &rollout, &json!({"spec": {"paused": true}}), false).await?;
            outln!("rollout '{}' paused", rollout.name);
            Ok(())
        }
        RolloutCommand::Resume { rollout } => {
            patch(client, &rollout, &json!({"spec": {"paused": false}}), false).await?;
            outln!("rollout '{}' resumed", rollout.name);
            Ok(())
        }
        RolloutCommand::Restart { rollout } => {
            let now = time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
            let at = now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            patch(client, &rollout, &json!({"spec": {"restartAt": at}}), false).await?;
            outln!("rollout '{}' restarts in 0s", rollout.name);
            Ok(())
        }
        RolloutCommand::Undo {
            rollout,
            to_revision,
        } => {
            let family = family(client, &rollout).await?;
            let template = revision_template(&family, to_revision.unwrap_or(0))?;
            let current = family.rollout.body["spec"]["template"].clone();
            let diff = shipway_model::merge_diff(&current, &template);
            patch(
                client,
                &rollout,
                &json!({"spec": {"template": diff}}),
                false,
            )
            .await?;
            outln!("rollout '{}' undo", rollout.name);
            Ok(())
        }
        RolloutCommand::Set(RolloutSetCommand::Image { rollout, images }) => {
            let ro = fetch(client, &rollout).await?;
            let pod_spec = set_images(&ro, &images)?;
            patch(
                client,
                &rollout,
                &json!({"spec": {"template": {"spec": pod_spec}}}),
                false,
            )
            .await?;
            outln!("rollout \"{}\" image updated", rollout.name);
            Ok(())
        }
        RolloutCommand::Status {
            rollout,
            timeout,
            watch,
        } => status(client, &rollout, timeout.map(|t| t.0), watch).await,
    }
}

fn ns(namespace: &str) -> Vec<(&'static str, String)> {
    vec![("namespace", namespace.to_string())]
}

fn not_found(e: ClientError, t: &RolloutTarget) -> Failure {
    match &e {
        ClientError::Api(s) if s.code == 404 => Failure::Failed(format!(
            "rollout {:?} not found in namespace {:?} (`shipway rollout list -n {}` shows what there is)",
            t.name, t.namespace, t.namespace
        )),
        _ => e.into(),
    }
}

async fn fetch(client: &Client, t: &RolloutTarget) -> Result<Object, Failure> {
    client
        .get(RESOURCE, &t.name, &ns(&t.namespace))
        .await
        .map_err(|e| not_found(e, t))
}

async fn patch(
    client: &Client,
    t: &RolloutTarget,
    patch: &Value,
    status: bool,
) -> Result<Object, Failure> {
    client
        .patch(RESOURCE, &t.name, &ns(&t.namespace), patch, status)
        .await
        .map_err(|e| not_found(e, t))
}

/// A Rollout with what it controls, as `kubectl argo rollouts get` shows it.
struct Family {
    rollout: Object,
    sets: Vec<Object>,
    pods: Vec<Object>,
    runs: Vec<Object>,
}

fn controlled_by(o: &Object, owner: &Object) -> bool {
    let uid = owner.metadata.uid.as_deref().unwrap_or_default();
    o.metadata
        .owner_references
        .iter()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

async fn family(client: &Client, t: &RolloutTarget) -> Result<Family, Failure> {
    let rollout = fetch(client, t).await?;
    let q = ns(&t.namespace);
    let sets: Vec<Object> = client
        .list("replicasets", &q)
        .await?
        .into_iter()
        .filter(|rs| controlled_by(rs, &rollout))
        .collect();
    let pods = client
        .list("pods", &q)
        .await?
        .into_iter()
        .filter(|p| sets.iter().any(|rs| controlled_by(p, rs)))
        .collect();
    let runs = client
        .list("analysisruns", &q)
        .await?
        .into_iter()
        .filter(|r| controlled_by(r, &rollout))
        .collect();
    Ok(Family {
        rollout,
        sets,
        pods,
        runs,
    })
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The object's body as the controller reads it: a Rollout whose steps come from a CodeDeploy
/// preset annotation shows those steps.
fn body(o: &Object) -> Value {
    let mut v = Value::Object(o.body.clone());
    if let Some(preset) = o.metadata.annotations.get(STEPS_PRESET)
        && let Ok(steps) = shipway_rollout::rollout::preset_steps(preset)
        && let Some(canary) = v.pointer_mut("/spec/strategy/canary")
        && canary.get("steps").is_none_or(Value::is_null)
    {
        canary["steps"] = serde_json::to_value(steps).unwrap_or_default();
    }
    v
}

fn revision(o: &Object) -> Option<i64> {
    o.metadata.annotations.get(REVISION)?.parse().ok()
}

fn strategy(ro: &Value) -> &'static str {
    if ro.pointer("/spec/strategy/canary").is_some() {
        "Canary"
    } else if ro.pointer("/spec/strategy/blueGreen").is_some() {
        "BlueGreen"
    } else {
        "unknown"
    }
}

fn steps(ro: &Value) -> &[Value] {
    ro.pointer("/spec/strategy/canary/steps")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Argo's `GetCurrentCanaryStep`: the step at `status.currentStepIndex` (0 when unset), and the
/// index, which may be past the last step; nothing without steps.
fn current_step(ro: &Value) -> Option<(Option<&Value>, i64)> {
    let steps = steps(ro);
    if ro.pointer("/spec/strategy/canary").is_none() || steps.is_empty() {
        return None;
    }
    let index = int(ro, "/status/currentStepIndex");
    Some((
        usize::try_from(index).ok().and_then(|i| steps.get(i)),
        index,
    ))
}

/// Argo's `GetCurrentSetWeight`: the weight the current step asks for (0 once aborted, 100
/// past the last step).
fn set_weight(ro: &Value) -> i64 {
    if ro.pointer("/status/abort").and_then(Value::as_bool) == Some(true) {
        return 0;
    }
    match current_step(ro) {
        None | Some((None, _)) => 100,
        Some((Some(_), index)) => steps(ro)[..=index as usize]
            .iter()
            .rev()
            .find_map(|s| s.get("setWeight").and_then(Value::as_i64))
            .unwrap_or(0),
    }
}

/// The phase and message as the plugin reads them (`GetRolloutPhase`): Progressing while the
/// controller has not yet seen the newest spec or an unpause, else what the controller wrote.
fn phase(o: &Object) -> (String, String) {
    let ro = body(o);
    let observed = match ro.pointer("/status/observedGeneration") {
        Some(Value::String(s)) => s.parse::<i64>().ok(),
        Some(v) => v.as_i64(),
        None => None,
    };
    if observed.is_some_and(|g| g < o.metadata.generation) {
        return (
            "Progressing".into(),
            "waiting for rollout spec update to be observed".into(),
        );
    }
    let pause_conditions = ro
        .pointer("/status/pauseConditions")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if ro
        .pointer("/status/controllerPause")
        .and_then(Value::as_bool)
        == Some(true)
        && !pause_conditions
    {
        return (
            "Progressing".into(),
            "waiting for rollout to unpause".into(),
        );
    }
    match text(&ro, "/status/phase") {
        "" => (
            "Progressing".into(),
            "waiting for the rollout controller to report".into(),
        ),
        p => (p.into(), text(&ro, "/status/message").into()),
    }
}

fn icon(status: &str) -> &'static str {
    match status {
        "Progressing" => "◌",
        "Paused" => "॥",
        "Healthy" | "Successful" | "Running" | "Succeeded" => "✔",
        "Degraded" | "Failed" | "Error" | "ReplicaFailure" => "✖",
        "ScaledDown" => "•",
        "Inconclusive" => "?",
        "Pending" => "◷",
        _ => " ",
    }
}

/// What `kubectl argo rollouts promote` patches: `(spec, status)`.
fn promote_patches(o: &Object, full: bool) -> (Option<Value>, Option<Value>) {
    let ro = body(o);
    let paused = ro.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    let spec = paused.then(|| json!({"spec": {"paused": false}}));
    if full {
        let status = (text(&ro, "/status/currentPodHash") != text(&ro, "/status/stableRS"))
            .then(|| json!({"status": {"promoteFull": true}}));
        return (spec, status);
    }
    let pause_conditions = ro
        .pointer("/status/pauseConditions")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let inconclusive =
        text(&ro, "/status/canary/currentStepAnalysisRunStatus/status") == "Inconclusive";
    let controller_pause = ro
        .pointer("/status/controllerPause")
        .and_then(Value::as_bool)
        == Some(true);
    let next = |index: i64| {
        if index < steps(&ro).len() as i64 {
            index + 1
        } else {
            index
        }
    };
    let status = if inconclusive && pause_conditions && controller_pause {
        current_step(&ro).map(|(_, i)| {
            json!({"status": {"pauseConditions": null, "controllerPause": false, "currentStepIndex": next(i)}})
        })
    } else if pause_conditions {
        Some(json!({"status": {"pauseConditions": null}}))
    } else {
        // Not paused by a step: promote skips the step in progress (an analysis, say).
        current_step(&ro)
            .map(|(_, i)| json!({"status": {"pauseConditions": null, "currentStepIndex": next(i)}}))
    };
    (spec, status)
}

/// The pod template of `to` (0: the revision before the newest), without the hash label the
/// controller adds, as `kubectl argo rollouts undo` restores it.
fn revision_template(family: &Family, to: i64) -> Result<Value, Failure> {
    let mut revisions: Vec<(i64, &Object)> = family
        .sets
        .iter()
        .filter_map(|rs| Some((revision(rs)?, rs)))
        .collect();
    revisions.sort_by_key(|(r, _)| std::cmp::Reverse(*r));
    let name = &family.rollout.metadata.name;
    let rs = if to > 0 {
        revisions
            .iter()
            .find(|(r, _)| *r == to)
            .map(|(_, rs)| *rs)
            .ok_or_else(|| {
                Failure::Failed(format!(
                    "unable to find specified revision {to} in history (revisions: {})",
                    revisions
                        .iter()
                        .map(|(r, _)| r.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?
    } else {
        revisions
            .get(1)
            .map(|(_, rs)| *rs)
            .ok_or_else(|| Failure::Failed(format!("no revision found for rollout {name:?}")))?
    };
    let mut template = rs.body["spec"]["template"].clone();
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH);
    }
    Ok(template)
}

/// The pod spec's container lists with the images `CONTAINER=IMAGE` (or `*=IMAGE`) set.
fn set_images(o: &Object, images: &[String]) -> Result<Value, Failure> {
    if o.body
        .get("spec")
        .and_then(|s| s.get("workloadRef"))
        .is_some()
    {
        return Err(Failure::Failed(format!(
            "rollout {:?} takes its pod template from spec.workloadRef: set the image on that workload",
            o.metadata.name
        )));
    }
    let mut pod_spec = json!({});
    let template = &o.body.get("spec").cloned().unwrap_or_default()["template"]["spec"];
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(cs) = template.get(list).and_then(Value::as_array) {
            pod_spec[list] = Value::Array(cs.clone());
        }
    }
    for pair in images {
        let Some((container, image)) = pair
            .split_once('=')
            .filter(|(c, i)| !c.is_empty() && !i.is_empty())
        else {
            return Err(Failure::Usage(format!(
                "{pair:?}: expected CONTAINER=IMAGE (or *=IMAGE for every container)"
            )));
        };
        let mut found = false;
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            for c in pod_spec
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if container == "*" || c["name"] == container {
                    c["image"] = json!(image);
                    found = true;
                }
            }
        }
        if !found {
            return Err(Failure::Failed(format!(
                "unable to find container named \"{container}\""
            )));
        }
    }
    Ok(pod_spec)
}

async fn list(
    client: &Client,
    namespace: &str,
    format: Option<OutputFormat>,
) -> Result<(), Failure> {
    let items = client.list(RESOURCE, &ns(namespace)).await?;
    output::print_list(
        &items,
        format,
        |o| format!("rollout/{}", o.metadata.name),
        |items| {
            if items.is_empty() {
                eprintln!("No resources found in {namespace} namespace.");
            } else {
                out!("{}", output::align(&list_rows(items)));
            }
        },
    );
    Ok(())
}

/// `kubectl argo rollouts list rollouts`' table.
fn list_rows(items: &[Object]) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "NAME",
            "STRATEGY",
            "STATUS",
            "STEP",
            "SET-WEIGHT",
            "READY",
            "DESIRED",
            "UP-TO-DATE",
            "AVAILABLE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for o in items {
        let ro = body(o);
        let canary = strategy(&ro) == "Canary";
        let step = match current_step(&ro) {
            Some((_, i)) if ro.pointer("/status/currentStepIndex").is_some() => {
                format!("{i}/{}", steps(&ro).len())
            }
            _ => "-".into(),
        };
        rows.push(vec![
            o.metadata.name.clone(),
            strategy(&ro).into(),
            phase(o).0,
            step,
            if canary {
                set_weight(&ro).to_string()
            } else {
                "-".into()
            },
            format!(
                "{}/{}",
                int(&ro, "/status/readyReplicas"),
                int(&ro, "/status/replicas")
            ),
            desired(&ro).to_string(),
            int(&ro, "/status/updatedReplicas").to_string(),
            int(&ro, "/status/availableReplicas").to_string(),
        ]);
    }
    rows
}

fn desired(ro: &Value) -> i64 {
    ro.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

async fn get(
    client: &Client,
    t: &RolloutTarget,
    format: Option<OutputFormat>,
    watch: bool,
) -> Result<(), Failure> {
    use std::io::IsTerminal as _;
    if !watch || format.is_some() {
        let family = family(client, t).await?;
        output::print_object(&family.rollout.clone(), format, "rollout", |_| {
            out!("{}", get_text(&family, now()))
        });
        return Ok(());
    }
    let terminal = std::io::stdout().is_terminal();
    let mut last = String::new();
    loop {
        let family = family(client, t).await?;
        let shown = get_text(&family, now());
        if shown != last {
            if terminal {
                // Redrawn in place: home, clear, then the new text.
                out!("\x1b[H\x1b[2J{shown}");
            } else {
                out!("{shown}\n");
            }
            last = shown;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn age(o: &Object, now: i64) -> String {
    o.metadata
        .creation_timestamp
        .as_deref()
        .and_then(unix_seconds)
        .map(|t| human_duration(now - t))
        .unwrap_or_else(|| "<unknown>".into())
}

/// kubectl argo rollouts' ReplicaSet health: Progressing until all wanted pods are available,
/// ScaledDown at zero, else Healthy.
fn replica_set_status(rs: &Object) -> &'static str {
    let v = body(rs);
    let failure = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "ReplicaFailure" && c["status"] == "True");
    let wanted = int(&v, "/spec/replicas");
    if failure {
        "ReplicaFailure"
    } else if int(&v, "/status/availableReplicas") < wanted {
        "Progressing"
    } else if wanted == 0 {
        "ScaledDown"
    } else {
        "Healthy"
    }
}

/// The header and the tree of `kubectl argo rollouts get rollout`, with each analysis run's
/// metrics and their latest measurements under it.
fn get_text(family: &Family, now: i64) -> String {
    let o = &family.rollout;
    let ro = body(o);
    let (status, message) = phase(o);
    let mut out = String::new();
    // Messages and names come from the server: shown, never sent to the terminal as controls.
    let mut field = |name: &str, value: &str| {
        out.push_str(&format!("{:<16}{}\n", name, output::escape_terminal(value)));
    };
    field("Name:", &o.metadata.name);
    field(
        "Namespace:",
        o.metadata.namespace.as_deref().unwrap_or("default"),
    );
    field("Status:", &format!("{} {status}", icon(&status)));
    if !message.is_empty() {
        field("Message:", &message);
    }
    field("Strategy:", strategy(&ro));
    if strategy(&ro) == "Canary" {
        if let Some((_, i)) = current_step(&ro) {
            field("  Step:", &format!("{i}/{}", steps(&ro).len()));
        }
        field("  SetWeight:", &set_weight(&ro).to_string());
        field("  ActualWeight:", &actual_weight(family));
    }
    for (i, image) in images(family).iter().enumerate() {
        field(if i == 0 { "Images:" } else { "" }, image);
    }
    out.push_str("Replicas:\n");
    let mut field = |name: &str, value: i64| {
        out.push_str(&format!("{:<16}{}\n", name, value));
    };
    field("  Desired:", desired(&ro));
    field("  Current:", int(&ro, "/status/replicas"));
    field("  Updated:", int(&ro, "/status/updatedReplicas"));
    field("  Ready:", int(&ro, "/status/readyReplicas"));
    field("  Available:", int(&ro, "/status/availableReplicas"));
    out.push('\n');

    let mut rows = vec![
        ["NAME", "KIND", "STATUS", "AGE", "INFO"]
            .map(String::from)
            .to_vec(),
    ];
    rows.push(vec![
        format!("⟳ {}", o.metadata.name),
        "Rollout".into(),
        format!("{} {status}", icon(&status)),
        age(o, now),
        String::new(),
    ]);
    let mut revisions: Vec<i64> = family
        .sets
        .iter()
        .chain(&family.runs)
        .filter_map(revision)
        .collect();
    revisions.sort_unstable_by(|a, b| b.cmp(a));
    revisions.dedup();
    let pod_cols = columns("", "Pod");
    let cell = |pod: &Object, name: &str| {
        pod_cols
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.cell(pod, now))
            .unwrap_or_default()
    };
    for (ri, rev) in revisions.iter().enumerate() {
        let (branch, stem) = prefixes(ri + 1 == revisions.len(), "");
        rows.push(vec![
            format!("{branch}# revision:{rev}"),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
        let sets: Vec<&Object> = family
            .sets
            .iter()
            .filter(|rs| revision(rs) == Some(*rev))
            .collect();
        let runs: Vec<&Object> = family
            .runs
            .iter()
            .filter(|r| revision(r) == Some(*rev))
            .collect();
        let total = sets.len() + runs.len();
        for (i, rs) in sets.iter().enumerate() {
            let (branch, sub) = prefixes(i + 1 == total, &stem);
            let rs_status = replica_set_status(rs);
            rows.push(vec![
                format!("{branch}⧉ {}", rs.metadata.name),
                "ReplicaSet".into(),
                format!("{} {rs_status}", icon(rs_status)),
                age(rs, now),
                replica_set_info(&ro, rs),
            ]);
            let pods: Vec<&Object> = family
                .pods
                .iter()
                .filter(|p| controlled_by(p, rs))
                .collect();
            for (pi, pod) in pods.iter().enumerate() {
                let (branch, _) = prefixes(pi + 1 == pods.len(), &sub);
                let pod_status = cell(pod, "STATUS");
                let restarts = cell(pod, "RESTARTS");
                let mut info = format!("ready:{}", cell(pod, "READY"));
                if !restarts.is_empty() && !restarts.starts_with('0') {
                    info.push_str(&format!(",restarts:{restarts}"));
                }
                rows.push(vec![
                    format!("{branch}□ {}", pod.metadata.name),
                    "Pod".into(),
                    format!("{} {pod_status}", icon(&pod_status)),
                    age(pod, now),
                    info,
                ]);
            }
        }
        for (i, run) in runs.iter().enumerate() {
            let (branch, sub) = prefixes(sets.len() + i + 1 == total, &stem);
            let r = body(run);
            let run_phase = match text(&r, "/status/phase") {
                "" => "Pending",
                p => p,
            };
            let summary = &r["status"]["runSummary"];
            let counts: Vec<String> = [
                ("successful", "✔"),
                ("failed", "✖"),
                ("inconclusive", "?"),
                ("error", "⚠"),
            ]
            .iter()
            .filter_map(|(k, mark)| {
                let n = summary.get(*k).and_then(Value::as_i64).unwrap_or(0);
                (n > 0).then(|| format!("{mark} {n}"))
            })
            .collect();
            rows.push(vec![
                format!("{branch}α {}", run.metadata.name),
                "AnalysisRun".into(),
                format!("{} {run_phase}", icon(run_phase)),
                age(run, now),
                counts.join(","),
            ]);
            let metrics: Vec<&Value> = r
                .pointer("/status/metricResults")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            for (mi, m) in metrics.iter().enumerate() {
                let (branch, _) = prefixes(mi + 1 == metrics.len(), &sub);
                let m_phase = text(m, "/phase");
                rows.push(vec![
                    format!("{branch}{}", text(m, "/name")),
                    "Metric".into(),
                    format!("{} {m_phase}", icon(m_phase)),
                    String::new(),
                    measurements_info(m),
                ]);
            }
        }
    }
    out.push_str(&output::align(&rows));
    out
}

/// A metric's latest measurements (newest last) and the message of the newest, if any.
fn measurements_info(metric: &Value) -> String {
    let all: Vec<&Value> = metric
        .get("measurements")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let shown: Vec<String> = all
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(|m| {
            let value = m.get("value").and_then(Value::as_str).unwrap_or("-");
            format!("{}{value}", icon(text(m, "/phase")).trim())
        })
        .collect();
    let mut info = shown.join(" ");
    if let Some(msg) = all
        .last()
        .and_then(|m| m.get("message"))
        .and_then(Value::as_str)
    {
        info.push_str(&format!(" ({msg})"));
    }
    info
}

fn replica_set_info(ro: &Value, rs: &Object) -> String {
    let hash = rs
        .metadata
        .labels
        .get(HASH)
        .map(String::as_str)
        .unwrap_or_default();
    let mut tags = Vec::new();
    if !hash.is_empty() && text(ro, "/status/stableRS") == hash {
        tags.push("stable".to_string());
    }
    if strategy(ro) == "Canary" {
        if !hash.is_empty()
            && text(ro, "/status/stableRS") != hash
            && text(ro, "/status/currentPodHash") == hash
        {
            tags.push("canary".into());
        }
    } else if text(ro, "/status/blueGreen/activeSelector") == hash && !hash.is_empty() {
        tags.push("active".into());
    } else if text(ro, "/status/blueGreen/previewSelector") == hash && !hash.is_empty() {
        tags.push("preview".into());
    }
    if let Some(deadline) = rs.metadata.annotations.get("scale-down-deadline") {
        tags.push(format!("delay:{deadline}"));
    }
    tags.join(",")
}

/// The weight traffic really has: the controller's `status.canary.weights` with a traffic
/// router, the canary's share of available pods without one (as the plugin computes it).
fn actual_weight(family: &Family) -> String {
    let ro = body(&family.rollout);
    match current_step(&ro) {
        None | Some((None, _)) => return "100".into(),
        _ => {}
    }
    let available = int(&ro, "/status/availableReplicas");
    if available <= 0 {
        return "0".into();
    }
    if ro.pointer("/spec/strategy/canary/trafficRouting").is_some() {
        return match ro.pointer("/status/canary/weights/canary/weight") {
            Some(w) => w.to_string(),
            None => set_weight(&ro).to_string(),
        };
    }
    let canary_hash = text(&ro, "/status/currentPodHash");
    let stable_hash = text(&ro, "/status/stableRS");
    let canary_available: i64 = family
        .sets
        .iter()
        .filter(|rs| {
            let h = rs.metadata.labels.get(HASH).map(String::as_str);
            h == Some(canary_hash) && canary_hash != stable_hash
        })
        .map(|rs| int(&body(rs), "/status/availableReplicas"))
        .sum();
    (canary_available * 100 / available).to_string()
}

/// The images of the revisions that run, marked stable / canary / active / preview.
fn images(family: &Family) -> Vec<String> {
    let ro = body(&family.rollout);
    let mut shown: Vec<(String, Vec<String>)> = Vec::new();
    for rs in &family.sets {
        if int(&body(rs), "/status/replicas") == 0 && int(&body(rs), "/spec/replicas") == 0 {
            continue;
        }
        let info = replica_set_info(&ro, rs);
        let tags: Vec<String> = info
            .split(',')
            .filter(|t| matches!(*t, "stable" | "canary" | "active" | "preview"))
            .map(String::from)
            .collect();
        let containers = rs.body["spec"]["template"]["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for c in containers {
            let image = c["image"].as_str().unwrap_or_default().to_string();
            match shown.iter_mut().find(|(i, _)| *i == image) {
                Some((_, t)) => t.extend(tags.iter().cloned()),
                None => shown.push((image, tags.clone())),
            }
        }
    }
    shown
        .into_iter()
        .map(|(image, mut tags)| {
            tags.sort();
            tags.dedup();
            if tags.is_empty() {
                image
            } else {
                format!("{image} ({})", tags.join(", "))
            }
        })
        .collect()
}

/// The tree's drawing: the branch for this child and the stem its own children hang from.
fn prefixes(last: bool, stem: &str) -> (String, String) {
    if last {
        (format!("{stem}└──"), format!("{stem}   "))
    } else {
        (format!("{stem}├──"), format!("{stem}│  "))
    }
}

/// `kubectl argo rollouts status`: prints the status as it changes until Healthy (exit 0),
/// Degraded (exit 1 with the message) or the timeout (exit 1).
async fn status(
    client: &Client,
    t: &RolloutTarget,
    timeout: Option<Duration>,
    watch: bool,
) -> Result<(), Failure> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let (status, message) = phase(&fetch(client, t).await?);
        let line = if status == "Healthy" || status == "Degraded" || message.is_empty() {
            status.clone()
        } else {
            format!("{status} - {message}")
        };
        if line != last {
            outln!("{}", output::escape_terminal(&line));
            last = line;
        }
        if status == "Degraded" {
            return Err(Failure::Failed(format!(
                "The rollout is in a degraded state with message: {}",
                output::escape_terminal(&message)
            )));
        }
        if status == "Healthy" || !watch {
            return Ok(());
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            return Err(Failure::Failed(
                "Rollout status watch exceeded timeout".into(),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The corpus as `cargo xtask test` names it (`SHIPWAY_CORPUS`), else beside the checkout.
    fn corpus() -> Option<PathBuf> {
        let root = std::env::var_os("SHIPWAY_CORPUS")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus")
            });
        let dir = root.join("argo/rollouts-status-snapshots");
        dir.is_dir().then_some(dir)
    }

    fn load(path: PathBuf) -> Object {
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = shipway_model::load_str(&path.display().to_string(), &text).unwrap();
        docs.into_iter().next().unwrap().object
    }

    fn family_of(dir: &str, rollout: &str) -> Option<Family> {
        let dir = corpus()?.join(dir);
        let mut family = Family {
            rollout: load(dir.join(rollout)),
            sets: Vec::new(),
            pods: Vec::new(),
            runs: Vec::new(),
        };
        for entry in std::fs::read_dir(&dir).unwrap() {
            let o = load(entry.unwrap().path());
            match o.kind.as_str() {
                "ReplicaSet" if controlled_by(&o, &family.rollout) => family.sets.push(o),
                "Pod" => family.pods.push(o),
                "AnalysisRun" if controlled_by(&o, &family.rollout) => family.runs.push(o),
                _ => {}
            }
        }
        Some(family)
    }

    fn rollout(v: Value) -> Object {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_blue_green_snapshot_reads_as_the_plugin_shows_it() {
        let Some(family) = family_of("blue-green", "bluegreen-rollout.yaml") else {
            println!("SKIPPED: no corpus (set SHIPWAY_CORPUS)");
            return;
        };
        let text = get_text(&family, unix_seconds("2019-10-29T00:00:00Z").unwrap());
        assert!(text.contains("Strategy:       BlueGreen\n"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let line = |name: &str| {
            lines
                .iter()
                .find(|l| l.contains(name))
                .unwrap_or_else(|| panic!("no line with {name} in\n{text}"))
                .to_string()
        };
        // The active and preview revisions are tagged from status.blueGreen's selectors.
        let active = text_of(&family.rollout, "/status/blueGreen/activeSelector");
        let preview = text_of(&family.rollout, "/status/blueGreen/previewSelector");
        assert!(line(&active).contains("active"), "{text}");
        assert!(line(&preview).contains("preview"), "{text}");
        // Each ReplicaSet lists its pods under it with their readiness.
        assert_eq!(
            lines.iter().filter(|l| l.contains("□ ")).count(),
            family.pods.len()
        );
        assert!(text.contains("ready:"), "{text}");
    }

    fn text_of(o: &Object, pointer: &str) -> String {
        text(&body(o), pointer).to_string()
    }

    #[test]
    fn weights_and_steps_follow_argos_rules() {
        let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 40}, {"pause": {"duration": "10s"}}]);
        let at = |index: Option<i64>, abort: bool| {
            let mut status = json!({"abort": abort});
            if let Some(i) = index {
                status["currentStepIndex"] = json!(i);
            }
            rollout(
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "metadata": {"name": "r"},
                "spec": {"strategy": {"canary": {"steps": steps}}}, "status": status}),
            )
        };
        assert_eq!(set_weight(&body(&at(None, false))), 20);
        assert_eq!(set_weight(&body(&at(Some(1), false))), 20);
        assert_eq!(set_weight(&body(&at(Some(3), false))), 40);
        assert_eq!(set_weight(&body(&at(Some(4), false))), 100);
        assert_eq!(set_weight(&body(&at(Some(2), true))), 0);
        assert_eq!(list_rows(&[at(Some(1), false)])[1][3], "1/4");
        assert_eq!(list_rows(&[at(None, false)])[1][3], "-");
    }

    #[test]
    fn promote_writes_what_the_plugin_writes() {
        let ro = |spec: Value, status: Value| {
            rollout(
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                "metadata": {"name": "r"}, "spec": spec, "status": status}),
            )
        };
        let canary = json!({"strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"analysis": {}}]}}});
        // Paused at a step: the pause conditions go.
        let paused = ro(
            canary.clone(),
            json!({"currentStepIndex": 1, "pauseConditions": [{"reason": "CanaryPauseStep"}], "controllerPause": true}),
        );
        assert_eq!(
            promote_patches(&paused, false),
            (None, Some(json!({"status": {"pauseConditions": null}})))
        );
        // At an analysis step with no pause: promote skips the step.
        let running = ro(canary.clone(), json!({"currentStepIndex": 2}));
        assert_eq!(
            promote_patches(&running, false).1,
            Some(json!({"status": {"pauseConditions": null, "currentStepIndex": 3}}))
        );
        // Inconclusive: the controller's pause is lifted and the step skipped.
        let inconclusive = ro(
            canary.clone(),
            json!({"currentStepIndex": 2, "pauseConditions": [{"reason": "InconclusiveAnalysisRun"}],
                   "controllerPause": true, "canary": {"currentStepAnalysisRunStatus": {"status": "Inconclusive"}}}),
        );
        assert_eq!(
            promote_patches(&inconclusive, false).1,
            Some(
                json!({"status": {"pauseConditions": null, "controllerPause": false, "currentStepIndex": 3}})
            )
        );
        // spec.paused is unset too; --full asks for promoteFull unless already on stable.
        let user_paused = ro(
            json!({"paused": true, "strategy": canary["strategy"].clone()}),
            json!({"currentPodHash": "b", "stableRS": "a"}),
        );
        assert_eq!(
            promote_patches(&user_paused, true),
            (
                Some(json!({"spec": {"paused": false}})),
                Some(json!({"status": {"promoteFull": true}}))
            )
        );
        let stable = ro(canary, json!({"currentPodHash": "a", "stableRS": "a"}));
        assert_eq!(promote_patches(&stable, true), (None, None));
    }

    #[test]
    fn a_preset_rollout_shows_the_presets_steps() {
        let o = rollout(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "r", "annotations": {"rollouts.shipway.dev/steps-preset": "Linear25PercentEvery1Minute"}},
            "spec": {"strategy": {"canary": {}}}, "status": {"currentStepIndex": 2}}),
        );
        let ro = body(&o);
        assert_eq!(steps(&ro).len(), 6);
        assert_eq!(set_weight(&ro), 50);
        assert_eq!(list_rows(&[o])[1][3], "2/6");
    }

    #[test]
    fn the_plugin_reads_an_unobserved_spec_or_unpause_as_progressing() {
        let mut o = rollout(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "r", "generation": 3},
            "status": {"observedGeneration": "2", "phase": "Healthy"}}),
        );
        assert_eq!(
            phase(&o).1,
            "waiting for rollout spec update to be observed"
        );
        o.body["status"]["observedGeneration"] = json!("3");
        assert_eq!(phase(&o), ("Healthy".into(), String::new()));
        o.body["status"]["controllerPause"] = json!(true);
        assert_eq!(phase(&o).1, "waiting for rollout to unpause");
    }

    #[test]
    fn set_image_changes_the_named_containers_only() {
        let o = rollout(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "r"},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "a:1"}, {"name": "side", "image": "s:1"}]}}}}),
        );
        let spec = set_images(&o, &["web=a:2".into()]).unwrap();
        assert_eq!(spec["containers"][0]["image"], "a:2");
        assert_eq!(spec["containers"][1]["image"], "s:1");
        let all = set_images(&o, &["*=z:9".into()]).unwrap();
        assert_eq!(all["containers"][1]["image"], "z:9");
        assert!(set_images(&o, &["nope=x:1".into()]).is_err());
        assert!(matches!(
            set_images(&o, &["web".into()]),
            Err(Failure::Usage(_))
        ));
    }
}
