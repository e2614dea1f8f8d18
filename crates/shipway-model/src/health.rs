//! Argo CD's health assessment, kind by kind: what GitOps, the CLI and the dashboard say about a
//! live object's health.
//!
//! The rules and their words are Argo CD's (gitops-engine's built-in checks for the core kinds, and
//! Argo CD's bundled checks for the Argo kinds), so a script that reads `health.status` from Argo's
//! JSON reads the same from Shipway's. Kinds without a rule have no health ([`health`] returns
//! `None`), as in Argo CD, where they do not count towards an application's health.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Object;

/// Argo CD's health codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    Healthy,
    Suspended,
    Progressing,
    Missing,
    Degraded,
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "Healthy",
            HealthStatus::Suspended => "Suspended",
            HealthStatus::Progressing => "Progressing",
            HealthStatus::Missing => "Missing",
            HealthStatus::Degraded => "Degraded",
            HealthStatus::Unknown => "Unknown",
        }
    }

    /// Position from most to least healthy, the order Argo CD aggregates by: an application is as
    /// healthy as its least healthy resource.
    fn rank(self) -> u8 {
        match self {
            HealthStatus::Healthy => 0,
            HealthStatus::Suspended => 1,
            HealthStatus::Progressing => 2,
            HealthStatus::Missing => 3,
            HealthStatus::Degraded => 4,
            HealthStatus::Unknown => 5,
        }
    }

    /// Whether `other` is a worse condition than `self`.
    pub fn is_worse(self, other: HealthStatus) -> bool {
        other.rank() > self.rank()
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A health assessment: Argo CD's `{status, message}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Health {
    fn new(status: HealthStatus, message: impl Into<String>) -> Health {
        Health {
            status,
            message: message.into(),
        }
    }
}

/// The finalizer Argo CD puts on hooks it still has to read: such an object is not "pending
/// deletion" until the hook's result is taken.
pub const HOOK_FINALIZER: &str = "argocd.argoproj.io/hook-finalizer";

/// The health of `obj`, or `None` for a kind without a health rule.
pub fn health(obj: &Object) -> Option<Health> {
    use HealthStatus::*;
    let group = obj.group();
    let kind = obj.kind.as_str();
    let deleting = obj.metadata.deletion_timestamp.is_some();
    if deleting && !obj.metadata.finalizers.iter().any(|f| f == HOOK_FINALIZER) {
        // Argo's checks for ApplicationSet and Experiment also name what blocks the deletion.
        let names_finalizers = group == "argoproj.io"
            && matches!(kind, "ApplicationSet" | "Experiment")
            && !obj.metadata.finalizers.is_empty();
        let message = if names_finalizers {
            format!(
                "Pending deletion; blocked by finalizers: {}",
                obj.metadata.finalizers.join(", ")
            )
        } else {
            "Pending deletion".to_string()
        };
        return Some(Health::new(Progressing, message));
    }
    let view = View(obj);
    Some(match (group, kind) {
        ("apps", "Deployment") => deployment(&view),
        ("apps", "ReplicaSet") => replica_set(&view),
        ("apps", "StatefulSet") => stateful_set(&view),
        ("apps", "DaemonSet") => daemon_set(&view),
        ("", "Pod") => pod(&view),
        ("", "Service") => service(&view),
        ("", "PersistentVolumeClaim") => pvc(&view),
        ("batch", "Job") => job(&view),
        ("extensions" | "networking.k8s.io", "Ingress") => {
            if view.list("status.loadBalancer.ingress").is_empty() {
                Health::new(Progressing, "")
            } else {
                Health::new(Healthy, "")
            }
        }
        ("apiregistration.k8s.io", "APIService") => api_service(&view),
        ("autoscaling", "HorizontalPodAutoscaler") => hpa(&view),
        ("argoproj.io", "Rollout") => rollout(&view),
        ("argoproj.io", "AnalysisRun") => analysis_run(&view),
        ("argoproj.io", "Experiment") => experiment(&view),
        ("argoproj.io", "ApplicationSet") => application_set(&view),
        ("argoproj.io", "Workflow") => workflow(&view),
        _ => return None,
    })
}

/// Read access to an object's JSON by dotted path; missing or mistyped fields read as absent, as
/// Kubernetes' typed decoding gives zero values.
struct View<'a>(&'a Object);

impl<'a> View<'a> {
    fn get(&self, path: &str) -> Option<&'a Value> {
        self.0.field(path)
    }

    fn str(&self, path: &str) -> &'a str {
        self.get(path).and_then(Value::as_str).unwrap_or("")
    }

    /// An integer field; Argo Rollouts writes some (`observedGeneration`) as strings.
    fn int(&self, path: &str) -> Option<i64> {
        match self.get(path)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    fn int_or(&self, path: &str, default: i64) -> i64 {
        self.int(path).unwrap_or(default)
    }

    fn bool(&self, path: &str) -> bool {
        self.get(path).and_then(Value::as_bool).unwrap_or(false)
    }

    fn list(&self, path: &str) -> &'a [Value] {
        self.get(path)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    fn conditions(&self) -> impl Iterator<Item = Condition<'a>> {
        self.list("status.conditions").iter().map(Condition)
    }

    fn condition(&self, kind: &str) -> Option<Condition<'a>> {
        self.conditions().find(|c| c.kind() == kind)
    }

    fn name(&self) -> &str {
        &self.0.metadata.name
    }

    fn generation(&self) -> i64 {
        self.0.metadata.generation
    }
}

#[derive(Clone, Copy)]
struct Condition<'a>(&'a Value);

impl<'a> Condition<'a> {
    fn field(&self, name: &str) -> &'a str {
        self.0.get(name).and_then(Value::as_str).unwrap_or("")
    }
    fn kind(&self) -> &'a str {
        self.field("type")
    }
    fn status(&self) -> &'a str {
        self.field("status")
    }
    fn reason(&self) -> &'a str {
        self.field("reason")
    }
    fn message(&self) -> &'a str {
        self.field("message")
    }
}

fn deployment(d: &View) -> Health {
    use HealthStatus::*;
    if d.bool("spec.paused") {
        return Health::new(Suspended, "Deployment is paused");
    }
    // kubectl's `rollout status` rules.
    if d.generation() > d.int_or("status.observedGeneration", 0) {
        return Health::new(
            Progressing,
            "Waiting for rollout to finish: observed deployment generation less than desired generation",
        );
    }
    let progressing = d.condition("Progressing");
    let updated = d.int_or("status.updatedReplicas", 0);
    let replicas = d.int_or("status.replicas", 0);
    let available = d.int_or("status.availableReplicas", 0);
    if progressing.is_some_and(|c| c.reason() == "ProgressDeadlineExceeded") {
        return Health::new(
            Degraded,
            format!("Deployment {:?} exceeded its progress deadline", d.name()),
        );
    }
    if let Some(want) = d.int("spec.replicas")
        && updated < want
    {
        return Health::new(
            Progressing,
            format!(
                "Waiting for rollout to finish: {updated} out of {want} new replicas have been updated..."
            ),
        );
    }
    if replicas > updated {
        return Health::new(
            Progressing,
            format!(
                "Waiting for rollout to finish: {} old replicas are pending termination...",
                replicas - updated
            ),
        );
    }
    if available < updated {
        return Health::new(
            Progressing,
            format!(
                "Waiting for rollout to finish: {available} of {updated} updated replicas are available..."
            ),
        );
    }
    Health::new(Healthy, "")
}

fn replica_set(rs: &View) -> Health {
    use HealthStatus::*;
    if rs.generation() > rs.int_or("status.observedGeneration", 0) {
        return Health::new(
            Progressing,
            "Waiting for rollout to finish: observed replica set generation less than desired generation",
        );
    }
    if let Some(c) = rs.condition("ReplicaFailure")
        && c.status() == "True"
    {
        return Health::new(Degraded, c.message());
    }
    let available = rs.int_or("status.availableReplicas", 0);
    if let Some(want) = rs.int("spec.replicas")
        && available < want
    {
        return Health::new(
            Progressing,
            format!(
                "Waiting for rollout to finish: {available} out of {want} new replicas are available..."
            ),
        );
    }
    Health::new(Healthy, "")
}

fn stateful_set(s: &View) -> Health {
    use HealthStatus::*;
    let observed = s.int_or("status.observedGeneration", 0);
    if observed == 0 || s.generation() > observed {
        return Health::new(
            Progressing,
            "Waiting for statefulset spec update to be observed...",
        );
    }
    let ready = s.int_or("status.readyReplicas", 0);
    let updated = s.int_or("status.updatedReplicas", 0);
    let want = s.int("spec.replicas");
    if let Some(want) = want
        && ready < want
    {
        return Health::new(
            Progressing,
            format!("Waiting for {} pods to be ready...", want - ready),
        );
    }
    let strategy = s.str("spec.updateStrategy.type");
    if strategy == "RollingUpdate" && s.get("spec.updateStrategy.rollingUpdate").is_some() {
        if let (Some(want), Some(partition)) =
            (want, s.int("spec.updateStrategy.rollingUpdate.partition"))
            && updated < want - partition
        {
            return Health::new(
                Progressing,
                format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                    want - partition
                ),
            );
        }
        return Health::new(
            Healthy,
            format!("partitioned roll out complete: {updated} new pods have been updated..."),
        );
    }
    if strategy == "OnDelete" {
        return Health::new(Healthy, format!("statefulset has {ready} ready pods"));
    }
    let (update, current) = (
        s.str("status.updateRevision"),
        s.str("status.currentRevision"),
    );
    if update != current {
        return Health::new(
            Progressing,
            format!(
                "waiting for statefulset rolling update to complete {updated} pods at revision {update}..."
            ),
        );
    }
    Health::new(
        Healthy,
        format!(
            "statefulset rolling update complete {} pods at revision {current}...",
            s.int_or("status.currentReplicas", 0)
        ),
    )
}

fn daemon_set(d: &View) -> Health {
    use HealthStatus::*;
    if d.generation() > d.int_or("status.observedGeneration", 0) {
        return Health::new(
            Progressing,
            "Waiting for rollout to finish: observed daemon set generation less than desired generation",
        );
    }
    let updated = d.int_or("status.updatedNumberScheduled", 0);
    let desired = d.int_or("status.desiredNumberScheduled", 0);
    let available = d.int_or("status.numberAvailable", 0);
    if d.str("spec.updateStrategy.type") == "OnDelete" {
        return Health::new(
            Healthy,
            format!("daemon set {updated} out of {desired} new pods have been updated"),
        );
    }
    if updated < desired {
        return Health::new(
            Progressing,
            format!(
                "Waiting for daemon set {:?} rollout to finish: {updated} out of {desired} new pods have been updated...",
                d.name()
            ),
        );
    }
    if available < desired {
        return Health::new(
            Progressing,
            format!(
                "Waiting for daemon set {:?} rollout to finish: {available} of {desired} updated pods are available...",
                d.name()
            ),
        );
    }
    Health::new(Healthy, "")
}

fn pod(p: &View) -> Health {
    use HealthStatus::*;
    // Kubernetes' default restart policy.
    let restart = match p.str("spec.restartPolicy") {
        "" => "Always",
        other => other,
    };
    let statuses = p.list("status.containerStatuses");
    let message = p.str("status.message");
    // Only for long-running pods: a hook pod waiting on its image must not fail its sync phase
    // before the image arrives.
    if restart == "Always" {
        let waiting: Vec<&str> = statuses
            .iter()
            .filter_map(|s| s.get("state")?.get("waiting"))
            .filter(|w| {
                let reason = w.get("reason").and_then(Value::as_str).unwrap_or("");
                reason.starts_with("Err")
                    || reason.ends_with("Error")
                    || reason.ends_with("BackOff")
            })
            .map(|w| w.get("message").and_then(Value::as_str).unwrap_or(""))
            .collect();
        if !waiting.is_empty() {
            return Health::new(Degraded, waiting.join(", "));
        }
    }
    match p.str("status.phase") {
        "Pending" => Health::new(Progressing, message),
        "Succeeded" => Health::new(Healthy, message),
        "Failed" => {
            if !message.is_empty() {
                return Health::new(Degraded, message);
            }
            let all = p
                .list("status.initContainerStatuses")
                .iter()
                .chain(statuses);
            let failure = all.filter_map(container_failure).next().unwrap_or_default();
            Health::new(Degraded, failure)
        }
        "Running" if restart == "Always" => {
            let ready = p
                .conditions()
                .any(|c| c.kind() == "Ready" && c.status() == "True");
            if ready {
                Health::new(Healthy, message)
            } else if statuses
                .iter()
                .any(|s| s.pointer("/lastState/terminated").is_some())
            {
                Health::new(Degraded, message)
            } else {
                Health::new(Progressing, message)
            }
        }
        // Pods that run to completion are usually hooks: progressing until they finish.
        "Running" => Health::new(Progressing, message),
        _ => Health::new(Unknown, message),
    }
}

/// Why a terminated container failed, if it did.
fn container_failure(status: &Value) -> Option<String> {
    let t = status.pointer("/state/terminated")?;
    let text = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("");
    if !text("message").is_empty() {
        return Some(text("message").to_string());
    }
    if text("reason") == "OOMKilled" {
        return Some("OOMKilled".to_string());
    }
    let code = t.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
    let name = status.get("name").and_then(Value::as_str).unwrap_or("");
    (code != 0).then(|| format!("container {name:?} failed with exit code {code}"))
}

fn service(s: &View) -> Health {
    use HealthStatus::*;
    if s.str("spec.type") == "LoadBalancer" && s.list("status.loadBalancer.ingress").is_empty() {
        return Health::new(Progressing, "");
    }
    Health::new(Healthy, "")
}

fn pvc(p: &View) -> Health {
    use HealthStatus::*;
    let status = match p.str("status.phase") {
        "Lost" => Degraded,
        "Pending" => Progressing,
        "Bound" => Healthy,
        _ => Unknown,
    };
    Health::new(status, "")
}

fn job(j: &View) -> Health {
    use HealthStatus::*;
    let (mut failed, mut complete, mut suspended) = (false, false, false);
    let (mut fail_message, mut message) = ("", "");
    for c in j.conditions() {
        match c.kind() {
            "Failed" => {
                failed = true;
                complete = true;
                fail_message = c.message();
            }
            "Complete" => {
                complete = true;
                message = c.message();
            }
            "Suspended" => {
                complete = true;
                message = c.message();
                suspended |= c.status() == "True";
            }
            _ => {}
        }
    }
    if !complete {
        Health::new(Progressing, message)
    } else if failed {
        Health::new(Degraded, fail_message)
    } else if suspended {
        Health::new(Suspended, fail_message)
    } else {
        Health::new(Healthy, message)
    }
}

fn api_service(a: &View) -> Health {
    use HealthStatus::*;
    match a.condition("Available") {
        Some(c) => {
            let message = format!("{}: {}", c.reason(), c.message());
            let status = if c.status() == "True" {
                Healthy
            } else {
                Progressing
            };
            Health::new(status, message)
        }
        None => Health::new(Progressing, "Waiting to be processed"),
    }
}

fn hpa(h: &View) -> Health {
    use HealthStatus::*;
    let waiting = Health::new(Progressing, "Waiting to Autoscale");
    // autoscaling/v1 keeps its conditions in an annotation.
    let from_annotation: Vec<Value>;
    let conditions: &[Value] = if h.0.api_version == "autoscaling/v1" {
        let Some(text) =
            h.0.metadata
                .annotations
                .get("autoscaling.alpha.kubernetes.io/conditions")
        else {
            return waiting;
        };
        match serde_json::from_str::<Vec<Value>>(text) {
            Ok(list) => {
                from_annotation = list;
                &from_annotation
            }
            Err(e) => {
                return Health::new(
                    Unknown,
                    format!("failed to convert conditions annotation to typed: {e}"),
                );
            }
        }
    } else {
        h.list("status.conditions")
    };
    const DEGRADED: [(&str, &str); 4] = [
        ("AbleToScale", "FailedGetScale"),
        ("AbleToScale", "FailedUpdateScale"),
        ("ScalingActive", "FailedGetResourceMetric"),
        ("ScalingActive", "InvalidSelector"),
    ];
    for c in conditions.iter().map(Condition) {
        if DEGRADED.contains(&(c.kind(), c.reason())) {
            return Health::new(Degraded, c.message());
        }
        if matches!(c.kind(), "AbleToScale" | "ScalingLimited") && c.status() == "True" {
            return Health::new(Healthy, c.message());
        }
    }
    waiting
}

/// Argo CD's check for Argo Rollouts' `Rollout`: the controller's own `status.phase` where it
/// writes one (v1.0 and later), the replica counts and selectors before that.
fn rollout(r: &View) -> Health {
    use HealthStatus::*;
    let unobserved = Health::new(
        Progressing,
        "Waiting for rollout spec update to be observed",
    );
    if r.get("status").is_none() {
        return unobserved;
    }
    // Rollouts before v0.10 wrote a hash here, not a number; a hash that happens to be all digits
    // is larger than any generation. Either way there is nothing to compare.
    match r.get("status.observedGeneration") {
        None => return unobserved,
        Some(_) => {
            if let Some(observed) = r.int("status.observedGeneration")
                && observed < r.generation()
            {
                return unobserved;
            }
        }
    }
    // A Rollout that references a Deployment (`workloadRef`) must also have seen its newest spec.
    if let Some(want) =
        r.0.metadata
            .annotations
            .get("rollout.argoproj.io/workload-generation")
        && r.int("status.workloadObservedGeneration")
            .map(|g| g.to_string())
            != Some(want.clone())
    {
        return unobserved;
    }
    match r.str("status.phase") {
        "" => rollout_legacy(r),
        phase => {
            let status = match phase {
                "Healthy" => Healthy,
                "Progressing" => Progressing,
                "Paused" => Suspended,
                "Degraded" => Degraded,
                _ => Unknown,
            };
            Health::new(status, r.str("status.message"))
        }
    }
}

fn rollout_legacy(r: &View) -> Health {
    use HealthStatus::*;
    for c in r.conditions() {
        let failed = c.kind() == "InvalidSpec"
            || (c.kind() == "Progressing"
                && matches!(c.reason(), "RolloutAborted" | "ProgressDeadlineExceeded"));
        if failed {
            return Health::new(Degraded, c.message());
        }
    }
    if !r.list("status.pauseConditions").is_empty() || r.bool("spec.paused") {
        return Health::new(Suspended, "Rollout is paused");
    }
    let Some(current) = r.get("status.currentPodHash").and_then(Value::as_str) else {
        return Health::new(
            Progressing,
            "Waiting for rollout to finish: status has not been reconciled.",
        );
    };
    let want = r.int_or("spec.replicas", 1);
    let replicas = r.int_or("status.replicas", 0);
    let updated = r.int_or("status.updatedReplicas", 0);
    let available = r.int_or("status.availableReplicas", 0);
    if updated < want {
        return Health::new(
            Progressing,
            "Waiting for roll out to finish: More replicas need to be updated",
        );
    }
    if available < updated {
        return Health::new(
            Progressing,
            "Waiting for roll out to finish: updated replicas are still becoming available",
        );
    }
    // v0.8 moved `status.canary.stableRS` to `status.stableRS`.
    let stable = match r.get("status.stableRS").and_then(Value::as_str) {
        Some(s) => s,
        None => r.str("status.canary.stableRS"),
    };
    if r.get("spec.strategy.blueGreen").is_some() {
        if r.str("status.blueGreen.activeSelector") != current {
            return Health::new(Progressing, "active service cutover pending");
        }
        if !stable.is_empty() && stable != current {
            return Health::new(Progressing, "waiting for analysis to complete");
        }
    } else if r.get("spec.strategy.canary").is_some() {
        if replicas > updated {
            return Health::new(
                Progressing,
                "Waiting for roll out to finish: old replicas are pending termination",
            );
        }
        if stable != current {
            return Health::new(Progressing, "Waiting for rollout to finish steps");
        }
    }
    Health::new(Healthy, "")
}

fn analysis_run(a: &View) -> Health {
    use HealthStatus::*;
    if a.get("status").is_none() {
        return Health::new(
            Progressing,
            "Waiting for analysis run to finish: status has not been reconciled.",
        );
    }
    let message = |default: &str| match a.get("status.message").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => default.to_string(),
    };
    match a.str("status.phase") {
        "Pending" | "Running" => Health::new(Progressing, "Analysis run is running"),
        "Successful" => Health::new(Healthy, message("Analysis run completed successfully")),
        "Failed" => Health::new(Degraded, message("Analysis run failed")),
        "Error" => Health::new(Degraded, message("Analysis run had an error")),
        "Inconclusive" => Health::new(Unknown, message("Analysis run was inconclusive")),
        // Argo's check returns an empty assessment here; an empty status reads as Unknown.
        _ => Health::new(Unknown, ""),
    }
}

fn experiment(e: &View) -> Health {
    use HealthStatus::*;
    if e.get("status").is_none() {
        return Health::new(
            Progressing,
            "Waiting for experiment to finish: status has not been reconciled.",
        );
    }
    match e.str("status.phase") {
        "Pending" => Health::new(Progressing, "Experiment is pending"),
        "Running" => Health::new(Progressing, "Experiment is running"),
        "Successful" => Health::new(Healthy, "Experiment is successful"),
        "Failed" => Health::new(Degraded, "Experiment has failed"),
        "Error" => Health::new(Degraded, "Experiment had an error"),
        _ => Health::new(Unknown, ""),
    }
}

fn application_set(a: &View) -> Health {
    use HealthStatus::*;
    let find = |kind: &str, status: &str| {
        a.conditions()
            .find(|c| c.kind() == kind && c.status() == status)
    };
    if let Some(c) = find("ErrorOccurred", "True") {
        return Health::new(Degraded, c.message());
    }
    if let Some(c) = find("ResourcesUpToDate", "False") {
        return Health::new(Degraded, c.message());
    }
    if let Some(c) = find("RolloutProgressing", "True") {
        return Health::new(Progressing, c.message());
    }
    if let Some(c) = find("ResourcesUpToDate", "True") {
        return Health::new(Healthy, c.message());
    }
    Health::new(Progressing, "Waiting for the status to be reported")
}

fn workflow(w: &View) -> Health {
    use HealthStatus::*;
    let message = w.str("status.message");
    let status = match w.str("status.phase") {
        "" | "Pending" | "Running" => Progressing,
        "Succeeded" => Healthy,
        "Failed" | "Error" => Degraded,
        _ => Unknown,
    };
    Health::new(status, message)
}
