//! The sync executor: one operation as a state machine persisted in `status.operationState`.
//! Each reconcile recomputes the plan (a pure function of desired and live; hooks keep their
//! names because the operation's start time is part of them), skips the tasks whose result is
//! already in `syncResult.resources`, and either runs the next wave's tasks or waits for the
//! current wave to be healthy and its hooks done. So a restarted `shipway up` resumes where the
//! persisted results say, and an operation is never left `Running` without a next step.

use std::time::Duration;

use shipway_model::health::HealthStatus as Health;
use shipway_model::types::{
    ApplicationSource, ApplicationSpec, ApplicationStatus, Operation, OperationInitiator,
    OperationState, ResourceResult, RevisionHistory, SyncOperation, SyncOperationResult,
};
use shipway_model::{Key, Object};
use shipway_runtime::ApplyOptions;

use crate::controller::{ACTOR, ApplicationController, Compared, ControllerError};
use crate::diff::ResourceDiff;
use crate::plan::{Action, DeletePolicy, Phase, SyncOptions, Task};

/// How soon to look again while a sync waits for its wave.
const STEP: Duration = Duration::from_millis(250);
/// Self-heal waits this long after the last sync before syncing drift again, doubled per
/// consecutive self-heal of the same revision (Argo waits `--self-heal-timeout-seconds`, 5 s).
const SELF_HEAL_BASE: Duration = Duration::from_secs(1);
const SELF_HEAL_MAX: Duration = Duration::from_secs(60);
const SELF_HEAL_COUNT: &str = "shipwaySelfHealCount";

/// Starts a sync when one is asked for or due, and advances a running one. Returns when to
/// reconcile again for the sync's sake.
pub(crate) async fn step(
    ctl: &ApplicationController,
    app: &Object,
    spec: &ApplicationSpec,
    status: &mut ApplicationStatus,
    compared: &Compared,
    diffs: &[ResourceDiff],
) -> Result<Option<Duration>, ControllerError> {
    let running = status
        .operation_state
        .as_ref()
        .is_some_and(|o| o.phase == "Running");
    if !running {
        let Some(op) = due(ctl, app, spec, status, compared, diffs)? else {
            return Ok(heal_wait(spec, status, compared, diffs));
        };
        let self_heal = op.initiated_by.as_ref().and_then(|i| i.automated) == Some(true)
            && status
                .operation_state
                .as_ref()
                .and_then(|o| o.sync_result.as_ref())
                .is_some_and(|r| r.revision == compared.revision);
        let heals = status
            .operation_state
            .as_ref()
            .and_then(|o| o.rest.get(SELF_HEAL_COUNT))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let mut state = OperationState {
            operation: Some(op.clone()),
            phase: "Running".into(),
            message: Some("waiting to start".into()),
            started_at: Some(ctl.clock.timestamp()),
            sync_result: Some(SyncOperationResult {
                // The operation's own revision (a rollback, `--revision`), else the compared one.
                revision: op
                    .sync
                    .as_ref()
                    .and_then(|s| s.revision.clone())
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| compared.revision.clone()),
                ..SyncOperationResult::default()
            }),
            ..OperationState::default()
        };
        if self_heal {
            state
                .rest
                .insert(SELF_HEAL_COUNT.into(), (heals + 1).into());
        }
        status.operation_state = Some(state);
    }
    advance(ctl, app, spec, status, compared).await
}

/// The operation to start now, if any: the app's `operation` (what `argocd app sync` writes),
/// else the automated policy's (once per revision; again on drift with selfHeal).
fn due(
    ctl: &ApplicationController,
    app: &Object,
    spec: &ApplicationSpec,
    status: &ApplicationStatus,
    compared: &Compared,
    diffs: &[ResourceDiff],
) -> Result<Option<Operation>, ControllerError> {
    if let Some(v) = app.body.get("operation") {
        let op: Operation = serde_json::from_value(v.clone())
            .map_err(|e| ControllerError::Other(format!("{}: operation: {e}", app.key())))?;
        // A present `operation` is a new request: the reconcile that stores its state clears
        // it (see `ApplicationController::reconcile`).
        return Ok(Some(op));
    }
    let Some(auto) = spec
        .sync_policy
        .as_ref()
        .and_then(|p| p.automated.as_ref())
        .filter(|a| a.enabled != Some(false))
    else {
        return Ok(None);
    };
    let out_of_sync = diffs
        .iter()
        .any(|d| d.status == crate::SyncStatus::OutOfSync || d.requires_pruning);
    if !out_of_sync {
        return Ok(None);
    }
    let last = status.operation_state.as_ref();
    let same_revision = last
        .and_then(|o| o.sync_result.as_ref())
        .is_some_and(|r| r.revision == compared.revision);
    if same_revision {
        // Once per revision; drift at a synced revision only with selfHeal, after its wait.
        let healed_ok = auto.self_heal == Some(true) && heal_wait_over(ctl, status);
        if !healed_ok {
            return Ok(None);
        }
    }
    Ok(Some(Operation {
        sync: Some(SyncOperation {
            revision: Some(compared.revision.clone()),
            prune: auto.prune,
            ..SyncOperation::default()
        }),
        initiated_by: Some(OperationInitiator {
            automated: Some(true),
            ..OperationInitiator::default()
        }),
        ..Operation::default()
    }))
}

fn heal_delay(status: &ApplicationStatus) -> Duration {
    let heals = status
        .operation_state
        .as_ref()
        .and_then(|o| o.rest.get(SELF_HEAL_COUNT))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    shipway_controller::exponential_backoff(heals as u32 + 1, SELF_HEAL_BASE, SELF_HEAL_MAX)
}

fn heal_wait_over(ctl: &ApplicationController, status: &ApplicationStatus) -> bool {
    status
        .operation_state
        .as_ref()
        .and_then(|o| o.finished_at.as_deref())
        .and_then(|t| ctl.clock.since(t))
        .is_none_or(|age| age >= heal_delay(status))
}

/// While drift waits for its self-heal, when to look again.
fn heal_wait(
    spec: &ApplicationSpec,
    status: &ApplicationStatus,
    _compared: &Compared,
    diffs: &[ResourceDiff],
) -> Option<Duration> {
    let self_heal = spec
        .sync_policy
        .as_ref()
        .and_then(|p| p.automated.as_ref())
        .is_some_and(|a| a.self_heal == Some(true) && a.enabled != Some(false));
    let drift = diffs
        .iter()
        .any(|d| d.status == crate::SyncStatus::OutOfSync || d.requires_pruning);
    (self_heal && drift).then(|| heal_delay(status))
}

/// The operation's start in Unix seconds, parsed exactly (not derived from "how long ago"),
/// since it is part of hook names that must be the same at every step.
fn unix(ctl: &ApplicationController, timestamp: Option<&str>) -> i64 {
    timestamp
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .unwrap_or_else(|| ctl.clock.now())
        .unix_timestamp()
}

fn result_of<'a>(
    results: &'a [ResourceResult],
    key: &Key,
    phase: Phase,
) -> Option<&'a ResourceResult> {
    results.iter().find(|r| {
        r.group == key.group
            && r.kind == key.kind
            && r.namespace == key.namespace
            && r.name == key.name
            && r.sync_phase.as_deref() == Some(phase.as_str())
    })
}

fn result(task: &Task, phase: Phase, status: &str, message: String) -> ResourceResult {
    let hook = matches!(task.action, Action::Hook { .. });
    ResourceResult {
        group: task.key.group.clone(),
        version: task
            .object
            .api_version
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        kind: task.key.kind.clone(),
        namespace: task.key.namespace.clone(),
        name: task.key.name.clone(),
        status: Some(status.into()),
        message: Some(message),
        hook_type: hook.then(|| phase.as_str().to_string()),
        hook_phase: hook.then(|| "Running".to_string()),
        sync_phase: Some(phase.as_str().into()),
        ..ResourceResult::default()
    }
}

/// One step of the running operation in `status.operation_state`.
async fn advance(
    ctl: &ApplicationController,
    app: &Object,
    spec: &ApplicationSpec,
    status: &mut ApplicationStatus,
    compared: &Compared,
) -> Result<Option<Duration>, ControllerError> {
    let name = app.metadata.name.clone();
    let Some(mut state) = status.operation_state.take() else {
        return Ok(None);
    };
    let op = state.operation.clone().unwrap_or_default();
    let sync = op.sync.clone().unwrap_or_default();
    let mut revision = state
        .sync_result
        .as_ref()
        .map(|r| r.revision.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| compared.revision.clone());
    // The operation syncs its own revision: render it when the app now points elsewhere.
    let desired = if revision == compared.revision {
        compared.desired.clone()
    } else {
        let mut source = operation_source(spec, &sync);
        if let Some(s) = source.as_mut() {
            s.target_revision = Some(revision.clone());
        }
        let ns = namespace(spec);
        match source {
            Some(s) => match ctl.compare(&s, &ns).await {
                Ok(c) => {
                    // A branch, tag or short sha asked for is recorded as the commit it names.
                    revision = c.revision;
                    c.desired
                }
                Err((_, m)) => {
                    finish(ctl, app, spec, &mut state, "Error", m).await;
                    status.operation_state = Some(state);
                    return Ok(None);
                }
            },
            None => Vec::new(),
        }
    };
    let auto = spec.sync_policy.as_ref().and_then(|p| p.automated.as_ref());
    let automated = op.initiated_by.as_ref().and_then(|i| i.automated) == Some(true);
    let mut opts = SyncOptions {
        app: name.clone(),
        revision: revision.clone(),
        started_at: unix(ctl, state.started_at.as_deref()),
        prune: sync.prune.unwrap_or(false),
        namespace: namespace(spec),
        automated,
        allow_empty: auto.and_then(|a| a.allow_empty).unwrap_or(false),
        only: sync.resources.clone(),
        ..SyncOptions::default()
    };
    let mut options = spec
        .sync_policy
        .as_ref()
        .map(|p| p.sync_options.clone())
        .unwrap_or_default();
    options.extend(sync.sync_options.iter().cloned());
    opts.apply_list(&options);
    let live = ctl.live(&name, &desired);
    let plan = match crate::plan::plan(&desired, &live, &opts) {
        Ok(p) => p,
        Err(e) => {
            finish(ctl, app, spec, &mut state, "Failed", e.to_string()).await;
            status.operation_state = Some(state);
            return Ok(None);
        }
    };
    let dry_run = sync.dry_run == Some(true);
    let mut results = state
        .sync_result
        .as_ref()
        .map(|r| r.resources.clone())
        .unwrap_or_default();
    for s in &plan.skipped {
        if result_of(&results, &s.key, Phase::Sync).is_none() {
            let version = live
                .iter()
                .find(|l| l.key() == s.key)
                .map(|l| {
                    l.api_version
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_string()
                })
                .unwrap_or_default();
            results.push(ResourceResult {
                group: s.key.group.clone(),
                version,
                kind: s.key.kind.clone(),
                namespace: s.key.namespace.clone(),
                name: s.key.name.clone(),
                status: Some(s.status.into()),
                message: Some(s.message.into()),
                sync_phase: Some(Phase::Sync.as_str().into()),
                ..ResourceResult::default()
            });
        }
    }

    let mut failure: Option<String> = None;
    let mut waiting = false;
    let phases: Vec<&crate::plan::PhasePlan> = plan
        .phases
        .iter()
        .filter(|p| p.phase != Phase::SyncFail)
        .collect();
    'phases: for (pi, phase) in phases.iter().enumerate() {
        for (wi, wave) in phase.waves.iter().enumerate() {
            let todo: Vec<&Task> = wave
                .tasks
                .iter()
                .filter(|t| result_of(&results, &t.key, phase.phase).is_none())
                .collect();
            if !todo.is_empty() {
                state.message = Some(format!(
                    "running {} wave {} ({} tasks)",
                    phase.phase.as_str(),
                    wave.wave,
                    todo.len()
                ));
                for t in todo {
                    let r = run_task(ctl, &name, t, phase.phase, dry_run).await;
                    if r.status.as_deref() == Some("SyncFailed") {
                        failure = Some(format!(
                            "one or more objects failed to apply, reason: {}",
                            r.message.clone().unwrap_or_default()
                        ));
                    }
                    results.push(r);
                }
                // gitops-engine: the final wave, when it holds no hook, is not waited for —
                // the sync succeeds once it is applied, even if its objects degrade later.
                let later = phases.iter().enumerate().any(|(pj, p)| {
                    p.waves.iter().enumerate().any(|(wj, w)| {
                        (pj, wj) > (pi, wi)
                            && w.tasks
                                .iter()
                                .any(|t| result_of(&results, &t.key, p.phase).is_none())
                    })
                });
                let hooks = wave
                    .tasks
                    .iter()
                    .any(|t| matches!(t.action, Action::Hook { .. }));
                waiting = failure.is_none() && (later || hooks);
                break 'phases;
            }
            if dry_run {
                continue;
            }
            // Every task has run: the wave is done when its resources are healthy and its
            // hooks finished (gitops-engine waits on every wave of a multi-step sync).
            let mut pending: Vec<&Task> = Vec::new();
            let mut failed: Vec<String> = Vec::new();
            for t in &wave.tasks {
                match wave_state(ctl, t) {
                    TaskState::Done(hook_phase) => {
                        set_hook_phase(&mut results, t, phase.phase, hook_phase, None);
                    }
                    TaskState::Waiting => pending.push(t),
                    TaskState::Failed { reason, message } => {
                        set_failed(&mut results, t, phase.phase, &message);
                        failed.push(reason);
                    }
                }
            }
            if !failed.is_empty() {
                // Argo's words, with the resources named (Argo lists only apply failures).
                failure = Some(format!(
                    "one or more synchronization tasks completed unsuccessfully, reason: {}",
                    failed.join(",")
                ));
                break 'phases;
            }
            if !pending.is_empty() {
                waiting = true;
                state.message = Some(waiting_message(&pending));
                break 'phases;
            }
        }
    }
    state.sync_result = Some(SyncOperationResult {
        resources: results,
        revision: revision.clone(),
        ..state.sync_result.clone().unwrap_or_default()
    });
    if let Some(message) = failure {
        // SyncFail hooks run once the sync failed; they are not waited for.
        if let Some(fail) = plan.phases.iter().find(|p| p.phase == Phase::SyncFail) {
            for t in fail.waves.iter().flat_map(|w| w.tasks.iter()) {
                let r = run_task(ctl, &name, t, Phase::SyncFail, dry_run).await;
                if let Some(res) = state.sync_result.as_mut() {
                    res.resources.push(r);
                }
            }
        }
        delete_hooks(ctl, &plan, DeletePolicy::HookFailed).await;
        finish(ctl, app, spec, &mut state, "Failed", message).await;
        status.operation_state = Some(state);
        return Ok(None);
    }
    if waiting {
        status.operation_state = Some(state);
        return Ok(Some(STEP));
    }
    delete_hooks(ctl, &plan, DeletePolicy::HookSucceeded).await;
    let message = if dry_run {
        "successfully synced (all tasks run) (dry run)"
    } else {
        "successfully synced (all tasks run)"
    };
    finish(ctl, app, spec, &mut state, "Succeeded", message.into()).await;
    if !dry_run {
        record_history(ctl, spec, status, &state, &revision);
    }
    status.operation_state = Some(state);
    Ok(None)
}

fn namespace(spec: &ApplicationSpec) -> String {
    spec.destination
        .as_ref()
        .and_then(|d| d.namespace.clone())
        .unwrap_or_else(|| "default".into())
}

async fn run_task(
    ctl: &ApplicationController,
    app: &str,
    t: &Task,
    phase: Phase,
    dry_run: bool,
) -> ResourceResult {
    let what = format!("{}/{}", t.key.kind.to_lowercase(), t.key.name);
    match &t.action {
        Action::Prune => {
            if dry_run {
                return result(t, phase, "Pruned", "pruned (dry run)".into());
            }
            match ctl.runtime.delete(&t.key, &ACTOR).await {
                Ok(_) => result(t, phase, "Pruned", "pruned".into()),
                Err(e) => result(t, phase, "SyncFailed", e.to_string()),
            }
        }
        Action::Apply | Action::Hook { .. } => {
            if let Action::Hook { delete_policies } = &t.action
                && delete_policies.contains(&DeletePolicy::BeforeHookCreation)
                && !dry_run
                && ctl.cache.get(&t.key).is_some()
            {
                let _ = ctl.runtime.delete(&t.key, &ACTOR).await;
            }
            let obj = crate::tracking::with_tracking_id(app, t.object.clone());
            let opts = ApplyOptions {
                actor: ACTOR,
                dry_run,
            };
            match ctl.runtime.apply(obj, opts).await {
                Ok((_, outcome)) => {
                    let suffix = if dry_run { " (dry run)" } else { "" };
                    result(t, phase, "Synced", format!("{what} {outcome}{suffix}"))
                }
                Err(e) => result(t, phase, "SyncFailed", e.to_string()),
            }
        }
    }
}

enum TaskState {
    /// Done; a hook's final phase (`Succeeded`), ignored for others.
    Done(&'static str),
    Waiting,
    /// Degraded or a failed hook: `reason` names the resource, `message` is its health's.
    Failed {
        reason: String,
        message: String,
    },
}

/// Whether a task that ran is finished: an applied resource healthy (or without a health
/// rule), a hook Job Complete / Pod Succeeded, a pruned one gone.
fn wave_state(ctl: &ApplicationController, t: &Task) -> TaskState {
    let live = ctl.cache.get(&t.key);
    match (&t.action, live) {
        (Action::Prune, None) => TaskState::Done("Succeeded"),
        (Action::Prune, Some(l)) if l.metadata.deletion_timestamp.is_some() => {
            TaskState::Done("Succeeded")
        }
        (Action::Prune, Some(_)) => TaskState::Waiting,
        (_, None) => TaskState::Waiting,
        (action, Some(l)) => {
            let hook = matches!(action, Action::Hook { .. });
            match shipway_model::health::health(&l) {
                None => TaskState::Done("Succeeded"),
                Some(h) => match h.status {
                    Health::Healthy => TaskState::Done("Succeeded"),
                    Health::Degraded => TaskState::Failed {
                        reason: format!(
                            "{} {}/{} is {}{}",
                            t.key.kind,
                            t.key.namespace,
                            t.key.name,
                            if hook {
                                "a failed hook: "
                            } else {
                                "Degraded: "
                            },
                            h.message
                        ),
                        message: h.message,
                    },
                    _ => TaskState::Waiting,
                },
            }
        }
    }
}

/// gitops-engine's running message: `waiting for healthy state of GROUP/KIND/NAME and N
/// more resources` (or `completion of hook`, `deletion of`), after the first waiting task.
fn waiting_message(pending: &[&Task]) -> String {
    let first = pending[0];
    let (what, more) = match first.action {
        Action::Hook { .. } => ("completion of hook", "hooks"),
        Action::Prune => ("deletion of", "resources"),
        Action::Apply => ("healthy state of", "resources"),
    };
    let mut m = format!(
        "waiting for {what} {}/{}/{}",
        first.key.group, first.key.kind, first.key.name
    );
    if pending.len() > 1 {
        m.push_str(&format!(" and {} more {more}", pending.len() - 1));
    }
    m
}

fn set_hook_phase(
    results: &mut [ResourceResult],
    t: &Task,
    phase: Phase,
    hook_phase: &str,
    message: Option<&str>,
) {
    if !matches!(t.action, Action::Hook { .. }) {
        return;
    }
    if let Some(r) = find_result(results, t, phase) {
        r.hook_phase = Some(hook_phase.into());
        if let Some(m) = message {
            r.message = Some(m.into());
        }
    }
}

/// A task that ended unsuccessfully (Degraded, a failed hook): its result's `hookPhase` is
/// `Failed` with the health's message, as gitops-engine records it for hooks and resources.
fn set_failed(results: &mut [ResourceResult], t: &Task, phase: Phase, message: &str) {
    if let Some(r) = find_result(results, t, phase) {
        r.hook_phase = Some("Failed".into());
        r.message = Some(message.into());
    }
}

fn find_result<'a>(
    results: &'a mut [ResourceResult],
    t: &Task,
    phase: Phase,
) -> Option<&'a mut ResourceResult> {
    results.iter_mut().find(|r| {
        r.group == t.key.group
            && r.kind == t.key.kind
            && r.name == t.key.name
            && r.namespace == t.key.namespace
            && r.sync_phase.as_deref() == Some(phase.as_str())
    })
}

async fn delete_hooks(ctl: &ApplicationController, plan: &crate::Plan, policy: DeletePolicy) {
    for (_, _, t) in plan.tasks() {
        if let Action::Hook { delete_policies } = &t.action
            && delete_policies.contains(&policy)
            && ctl.cache.get(&t.key).is_some()
        {
            let _ = ctl.runtime.delete(&t.key, &ACTOR).await;
        }
    }
}

async fn finish(
    ctl: &ApplicationController,
    app: &Object,
    _spec: &ApplicationSpec,
    state: &mut OperationState,
    phase: &str,
    message: String,
) {
    state.phase = phase.into();
    state.message = Some(message.clone());
    state.finished_at = Some(ctl.clock.timestamp());
    let op = state.operation.clone().unwrap_or_default();
    let by = match op.initiated_by {
        Some(i) if i.automated == Some(true) => "automated sync policy".to_string(),
        Some(i) => i.username.unwrap_or_else(|| "unknown user".into()),
        None => "unknown user".into(),
    };
    let revision = state
        .sync_result
        .as_ref()
        .map(|r| r.revision.clone())
        .unwrap_or_default();
    let event = format!("sync initiated by {by} to {revision}: {phase}: {message}");
    if let Err(e) = ctl
        .store
        .record_event(&app.key(), ACTOR.as_str(), "OperationCompleted", &event)
        .await
    {
        tracing::warn!(application = %app.key(), error = %e, "recording the sync event");
    }
}

fn record_history(
    ctl: &ApplicationController,
    spec: &ApplicationSpec,
    status: &mut ApplicationStatus,
    state: &OperationState,
    revision: &str,
) {
    let id = status.history.iter().map(|h| h.id).max().unwrap_or(-1) + 1;
    status.history.push(RevisionHistory {
        revision: Some(revision.to_string()),
        deployed_at: Some(ctl.clock.timestamp()),
        id,
        source: spec.source.clone(),
        deploy_started_at: state.started_at.clone(),
        initiated_by: state
            .operation
            .as_ref()
            .and_then(|o| o.initiated_by.clone()),
        ..RevisionHistory::default()
    });
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let excess = status.history.len().saturating_sub(limit);
    status.history.drain(..excess);
}

/// The source an operation syncs: its own (`argocd app rollback` sends the history entry's),
/// else the app's.
fn operation_source(spec: &ApplicationSpec, sync: &SyncOperation) -> Option<ApplicationSource> {
    sync.rest
        .get("source")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .or_else(|| spec.source.clone())
        .or_else(|| spec.sources.first().cloned())
}
