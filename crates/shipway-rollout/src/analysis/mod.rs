//! Argo Rollouts' AnalysisRun. The decisions are pure functions of the run and a time, in the
//! order Argo's controller takes them: [`due`] (which metrics to measure now), [`record`] (a
//! measurement into its metric's counters), [`assess`] (each metric's phase and the run's, with
//! Argo's messages), [`retain`] (measurementRetention) and [`next_due`] (when to look again);
//! [`step`] is all of them after a round of measurements. [`args`] resolves `{{args.NAME}}`,
//! [`provider`] takes measurements, [`controller`] writes the result to the store, and
//! [`template`] builds a run's spec from AnalysisTemplates.

pub mod args;
pub mod controller;
pub mod provider;
pub mod template;

use std::collections::HashMap;
use std::time::Duration;

use shipway_model::types::repository::parse_duration;
use shipway_model::types::{
    AnalysisRunSpec, AnalysisRunStatus, IntOrString, Measurement, Metric, MetricResult, RunSummary,
};
use time::OffsetDateTime;

/// Measurements kept per metric without a measurementRetention rule.
pub const DEFAULT_MEASUREMENT_HISTORY_LIMIT: usize = 10;
/// After an Error the next measurement is this far off, whatever the interval.
pub const DEFAULT_ERROR_RETRY_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i64 = 4;

/// The phases of a run, a metric and a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Pending,
    Running,
    Successful,
    Failed,
    Error,
    Inconclusive,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Successful => "Successful",
            Phase::Failed => "Failed",
            Phase::Error => "Error",
            Phase::Inconclusive => "Inconclusive",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "Pending" => Phase::Pending,
            "Running" => Phase::Running,
            "Successful" => Phase::Successful,
            "Failed" => Phase::Failed,
            "Error" => Phase::Error,
            "Inconclusive" => Phase::Inconclusive,
            _ => return None,
        })
    }

    pub fn completed(self) -> bool {
        matches!(
            self,
            Phase::Successful | Phase::Failed | Phase::Error | Phase::Inconclusive
        )
    }

    /// Argo's order, best to worst.
    fn rank(self) -> usize {
        match self {
            Phase::Successful => 0,
            Phase::Running => 1,
            Phase::Pending => 2,
            Phase::Inconclusive => 3,
            Phase::Error => 4,
            Phase::Failed => 5,
        }
    }
}

fn phase_of(s: &str) -> Option<Phase> {
    Phase::parse(s)
}

fn completed(s: &str) -> bool {
    phase_of(s).is_some_and(Phase::completed)
}

/// Kubernetes' `IntOrString.IntValue`: a string that is no integer counts as 0.
pub fn int_value(v: &IntOrString) -> i64 {
    match v {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => s.trim().parse().unwrap_or(0),
    }
}

/// A metric's duration field (`interval`, `initialDelay`) as Go's `time.ParseDuration` reads it.
pub fn duration(v: &IntOrString) -> Result<Duration, String> {
    match v {
        IntOrString::String(s) => {
            parse_duration(s).ok_or_else(|| format!("time: invalid duration \"{s}\""))
        }
        IntOrString::Int(n) => Err(format!("time: missing unit in duration \"{n}\"")),
    }
}

fn interval(metric: &Metric) -> Option<&IntOrString> {
    metric
        .interval
        .as_ref()
        .filter(|i| !matches!(i, IntOrString::String(s) if s.is_empty()))
}

/// Argo's `EffectiveCount`: without a count a metric with no interval is measured once, one with
/// an interval for ever.
pub fn effective_count(metric: &Metric) -> Option<i64> {
    match metric.count.as_ref().map(int_value) {
        None | Some(0) if interval(metric).is_none() => Some(1),
        None | Some(0) => None,
        Some(n) => Some(n),
    }
}

/// Argo's `ValidateMetrics`, with its messages (the caller prefixes `Analysis spec invalid: `).
pub fn validate(metrics: &[Metric]) -> Result<(), String> {
    if metrics.is_empty() {
        return Err("no metrics specified".into());
    }
    let mut names = std::collections::HashSet::new();
    for (i, m) in metrics.iter().enumerate() {
        if !names.insert(m.name.as_str()) {
            return Err(format!("metrics[{i}]: duplicate name '{}'", m.name));
        }
        validate_metric(m).map_err(|e| format!("metrics[{i}]: {e}"))?;
    }
    Ok(())
}

fn validate_metric(m: &Metric) -> Result<(), String> {
    let get = |v: &Option<IntOrString>| v.as_ref().map(int_value).unwrap_or(0);
    let (count, failure, success, inconclusive) = (
        get(&m.count),
        get(&m.failure_limit),
        get(&m.consecutive_success_limit),
        get(&m.inconclusive_limit),
    );
    if success < 0 {
        return Err("consecutiveSuccessLimit must be >= 0".into());
    }
    if failure < -1 {
        return Err("failureLimit must be >= 0, or -1 to be disabled".into());
    }
    if success == 0 && failure == -1 {
        return Err("failureLimit and consecutiveSuccessLimit cannot both be disabled".into());
    }
    if inconclusive < 0 {
        return Err("inconclusiveLimit must be >= 0".into());
    }
    if m.consecutive_error_limit
        .as_ref()
        .map(int_value)
        .unwrap_or(0)
        < 0
    {
        return Err("consecutiveErrorLimit must be >= 0".into());
    }
    if count > 0 {
        if failure >= 0 && count < failure + success {
            return Err(format!(
                "count ({count}) must be >= failureLimit + consecutiveSuccessLimit ({failure} + {success}) if both >= 0"
            ));
        }
        if failure < 0 && count < success {
            return Err("count must be >= consecutiveSuccessLimit".into());
        }
        if count < inconclusive {
            return Err("count must be >= inconclusiveLimit".into());
        }
    }
    if count > 1 && interval(m).is_none() {
        return Err("interval must be specified when count > 1".into());
    }
    if let Some(i) = interval(m) {
        duration(i).map_err(|e| format!("invalid interval string: {e}"))?;
    }
    if let Some(d) = &m.initial_delay {
        duration(d).map_err(|e| format!("invalid startDelay string: {e}"))?;
    }
    let p = &m.provider;
    let providers = usize::from(p.prometheus.is_some())
        + usize::from(p.web.is_some())
        + usize::from(p.job.is_some())
        + usize::from(p.shipway.is_some())
        + p.rest.len();
    match providers {
        0 => Err("no provider specified".into()),
        1 => Ok(()),
        _ => Err("multiple providers specified".into()),
    }
}

/// Metric names matched by `dryRun` rules (regular expressions), or Argo's error for a rule
/// matching none.
pub fn dry_run_metrics(
    spec: &AnalysisRunSpec,
    metrics: &[Metric],
) -> Result<std::collections::HashSet<String>, String> {
    let mut out = std::collections::HashSet::new();
    for (i, rule) in spec.dry_run.iter().enumerate() {
        let re = regex::Regex::new(&rule.metric_name).map_err(|e| format!("dryRun[{i}]: {e}"))?;
        let matched: Vec<_> = metrics.iter().filter(|m| re.is_match(&m.name)).collect();
        if matched.is_empty() {
            return Err(format!("dryRun[{i}]: Rule didn't match any metric name(s)"));
        }
        out.extend(matched.into_iter().map(|m| m.name.clone()));
    }
    Ok(out)
}

/// Measurements to keep per metric name, from `measurementRetention` rules.
pub fn retention_limits(
    spec: &AnalysisRunSpec,
    metrics: &[Metric],
) -> Result<HashMap<String, usize>, String> {
    let mut out = HashMap::new();
    for (i, rule) in spec.measurement_retention.iter().enumerate() {
        let re = regex::Regex::new(&rule.metric_name)
            .map_err(|e| format!("measurementRetention[{i}]: {e}"))?;
        let mut matched = 0;
        for m in metrics.iter().filter(|m| re.is_match(&m.name)) {
            matched += 1;
            out.insert(m.name.clone(), usize::try_from(rule.limit).unwrap_or(0));
        }
        if matched == 0 {
            return Err(format!(
                "measurementRetention[{i}]: Rule didn't match any metric name(s)"
            ));
        }
    }
    Ok(out)
}

fn result<'a>(status: &'a AnalysisRunStatus, name: &str) -> Option<&'a MetricResult> {
    status.metric_results.iter().find(|r| r.name == name)
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// Argo's `IsTerminating`: asked to, or a (non-dry-run) metric already ended badly.
pub fn is_terminating(spec: &AnalysisRunSpec, status: &AnalysisRunStatus) -> bool {
    spec.terminate
        || status.metric_results.iter().any(|r| {
            !r.dry_run
                && matches!(
                    phase_of(&r.phase),
                    Some(Phase::Failed | Phase::Error | Phase::Inconclusive)
                )
        })
}

/// A measurement to take now: metric `index` of the resolved metrics; `resume` when the last
/// one is still in flight (a Job).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    pub index: usize,
    pub resume: bool,
}

/// Which metrics to measure at `now` (Argo's `generateMetricTasks`).
pub fn due(
    metrics: &[Metric],
    status: &AnalysisRunStatus,
    terminating: bool,
    now: OffsetDateTime,
) -> Vec<Task> {
    let mut tasks = Vec::new();
    for (index, metric) in metrics.iter().enumerate() {
        let res = result(status, &metric.name);
        if res.is_some_and(|r| completed(&r.phase)) {
            continue;
        }
        let last = res.and_then(|r| r.measurements.last());
        if let Some(last) = last
            && last.finished_at.is_none()
        {
            let waiting = last
                .resume_at
                .as_deref()
                .and_then(parse_time)
                .is_some_and(|at| at > now);
            if terminating || !waiting {
                tasks.push(Task {
                    index,
                    resume: true,
                });
            }
            continue;
        }
        if terminating {
            continue;
        }
        let Some(last) = last else {
            if let Some(delay) = &metric.initial_delay {
                let (Some(started), Ok(delay)) = (
                    status.started_at.as_deref().and_then(parse_time),
                    duration(delay),
                ) else {
                    continue;
                };
                if started + delay > now {
                    continue;
                }
            }
            tasks.push(Task {
                index,
                resume: false,
            });
            continue;
        };
        let count = res.map_or(0, |r| r.count);
        if effective_count(metric).is_some_and(|c| count >= c) {
            continue;
        }
        let Some(wait) = wait_after(metric, last) else {
            continue;
        };
        let finished = last.finished_at.as_deref().and_then(parse_time);
        if finished.is_none_or(|f| f + wait <= now) {
            tasks.push(Task {
                index,
                resume: false,
            });
        }
    }
    tasks
}

/// How long after `last` the next measurement is due: the error retry interval after an Error,
/// else the metric's interval; `None` without one.
fn wait_after(metric: &Metric, last: &Measurement) -> Option<Duration> {
    if phase_of(&last.phase) == Some(Phase::Error) {
        return Some(DEFAULT_ERROR_RETRY_INTERVAL);
    }
    match interval(metric) {
        Some(i) => duration(i).ok(),
        // Only an error retry brings a metric without interval back (count reached otherwise).
        None => Some(DEFAULT_ERROR_RETRY_INTERVAL),
    }
}

/// Puts a measurement of `metric` into `status`: appended, or replacing the in-flight last one
/// when `resume`; a completed one counted as Argo counts it. `timestamp` stamps a missing
/// `finishedAt`.
pub fn record(
    status: &mut AnalysisRunStatus,
    metric: &str,
    dry_run: bool,
    mut measurement: Measurement,
    resume: bool,
    timestamp: &str,
) {
    let i = match status.metric_results.iter().position(|r| r.name == metric) {
        Some(i) => i,
        None => {
            status.metric_results.push(MetricResult {
                name: metric.to_string(),
                phase: Phase::Running.as_str().into(),
                dry_run,
                ..MetricResult::default()
            });
            status.metric_results.len() - 1
        }
    };
    let r = &mut status.metric_results[i];
    if let Some(phase) = phase_of(&measurement.phase).filter(|p| p.completed()) {
        if measurement.finished_at.is_none() {
            measurement.finished_at = Some(timestamp.to_string());
        }
        match phase {
            Phase::Successful => {
                r.successful += 1;
                r.count += 1;
                r.consecutive_error = 0;
                r.consecutive_success += 1;
            }
            Phase::Failed | Phase::Inconclusive => {
                if phase == Phase::Failed {
                    r.failed += 1;
                } else {
                    r.inconclusive += 1;
                }
                r.count += 1;
                r.consecutive_error = 0;
                r.consecutive_success = 0;
            }
            _ => {
                r.error += 1;
                r.consecutive_error += 1;
                r.consecutive_success = 0;
            }
        }
    }
    if resume && !r.measurements.is_empty() {
        let last = r.measurements.len() - 1;
        r.measurements[last] = measurement;
    } else {
        r.measurements.push(measurement);
    }
}

/// Argo's `assessMetricFailureInconclusiveOrError`: the limit a metric broke, and how.
fn broken_limit(metric: &Metric, r: &MetricResult) -> Option<(Phase, String)> {
    let mut out = None;
    let failure_limit = metric.failure_limit.as_ref().map(int_value).unwrap_or(0);
    if failure_limit >= 0 && r.failed > failure_limit {
        out = Some((
            Phase::Failed,
            format!("failed ({}) > failureLimit ({failure_limit})", r.failed),
        ));
    }
    let inconclusive_limit = metric
        .inconclusive_limit
        .as_ref()
        .map(int_value)
        .unwrap_or(0);
    if r.inconclusive > inconclusive_limit {
        out = Some((
            Phase::Inconclusive,
            format!(
                "inconclusive ({}) > inconclusiveLimit ({inconclusive_limit})",
                r.inconclusive
            ),
        ));
    }
    let error_limit = metric
        .consecutive_error_limit
        .as_ref()
        .map(int_value)
        .unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT);
    if r.consecutive_error > error_limit {
        out = Some((
            Phase::Error,
            format!(
                "consecutiveErrors ({}) > consecutiveErrorLimit ({error_limit})",
                r.consecutive_error
            ),
        ));
    }
    out
}

/// Argo's `assessMetricStatus`.
fn metric_phase(metric: &Metric, r: &MetricResult, terminating: bool) -> Phase {
    if let Some(p) = phase_of(&r.phase).filter(|p| p.completed()) {
        return p;
    }
    let Some(last) = r.measurements.last() else {
        return if terminating {
            Phase::Successful
        } else {
            Phase::Pending
        };
    };
    if !completed(&last.phase) {
        return Phase::Running;
    }
    if let Some((phase, _)) = broken_limit(metric, r) {
        return phase;
    }
    let success_limit = metric
        .consecutive_success_limit
        .as_ref()
        .map(int_value)
        .unwrap_or(0);
    if success_limit > 0 && r.consecutive_success >= success_limit {
        return Phase::Successful;
    }
    if let Some(count) = effective_count(metric)
        && r.count >= count
    {
        let failure_limit = metric.failure_limit.as_ref().map(int_value);
        let failure_applicable = failure_limit.is_none_or(|f| f >= 0);
        let success_applicable = success_limit > 0;
        return match (failure_applicable, success_applicable) {
            (true, true) => Phase::Inconclusive,
            (false, true) => Phase::Failed,
            _ => Phase::Successful,
        };
    }
    if terminating {
        Phase::Successful
    } else {
        Phase::Running
    }
}

/// Each metric's phase and the run's (Argo's `assessRunStatus`), written into `status` with
/// `runSummary`, `dryRunSummary` and `startedAt` (stamped `timestamp` when absent). Returns the
/// run's phase and message.
pub fn assess(
    spec: &AnalysisRunSpec,
    metrics: &[Metric],
    dry_run: &std::collections::HashSet<String>,
    status: &mut AnalysisRunStatus,
    timestamp: &str,
) -> (Phase, String) {
    let terminating = is_terminating(spec, status);
    if status.started_at.is_none() {
        status.started_at = Some(timestamp.to_string());
    }
    let mut worst: Option<Phase> = None;
    let mut message = if spec.terminate {
        "Run Terminated".to_string()
    } else {
        String::new()
    };
    let mut everything_completed = true;
    let mut summary = RunSummary::default();
    let mut dry_summary = RunSummary::default();
    for metric in metrics {
        let is_dry = dry_run.contains(&metric.name);
        if is_dry {
            dry_summary.count += 1;
        } else {
            summary.count += 1;
        }
        let Some(r) = status
            .metric_results
            .iter_mut()
            .find(|r| r.name == metric.name)
        else {
            // Not started (an initial delay).
            everything_completed = false;
            continue;
        };
        let phase = metric_phase(metric, r, terminating);
        if phase_of(&r.phase) != Some(phase) {
            if let Some(last) = r.measurements.last() {
                r.message = last.message.clone();
            }
            r.phase = phase.as_str().into();
        }
        if !phase.completed() {
            everything_completed = false;
            continue;
        }
        let broken = broken_limit(metric, r);
        let counted = broken.as_ref().map_or(Phase::Successful, |(p, _)| *p);
        let tally = if is_dry {
            &mut dry_summary
        } else {
            &mut summary
        };
        match counted {
            Phase::Error => tally.error += 1,
            Phase::Failed => tally.failed += 1,
            Phase::Inconclusive => tally.inconclusive += 1,
            _ => tally.successful += 1,
        }
        if is_dry {
            // A dry run never decides the run.
            worst.get_or_insert(Phase::Successful);
            if let Some((_, why)) = &broken {
                r.message = format!("Metric assessed {} due to {why}", phase.as_str());
            }
            continue;
        }
        if worst.is_none_or(|w| phase.rank() > w.rank()) {
            worst = Some(phase);
            if let Some((_, why)) = &broken {
                message = format!(
                    "Metric \"{}\" assessed {} due to {why}",
                    metric.name,
                    phase.as_str()
                );
                if !r.message.is_empty() {
                    message.push_str(&format!(": \"Error Message: {}\"", r.message));
                }
            }
        }
    }
    status.run_summary = Some(summary);
    status.dry_run_summary = Some(dry_summary);
    let message = message.trim().to_string();
    if terminating {
        return (worst.unwrap_or(Phase::Successful), message);
    }
    match worst {
        Some(w) if everything_completed => (w, message),
        _ => (Phase::Running, String::new()),
    }
}

/// Drops the oldest measurements beyond each metric's limit (`measurementRetention`, else 10).
pub fn retain(status: &mut AnalysisRunStatus, limits: &HashMap<String, usize>) {
    for r in &mut status.metric_results {
        let limit = limits
            .get(&r.name)
            .copied()
            .unwrap_or(DEFAULT_MEASUREMENT_HISTORY_LIMIT);
        if r.measurements.len() > limit {
            let drop = r.measurements.len() - limit;
            r.measurements.drain(..drop);
        }
    }
}

/// When the next measurement of any metric is due (Argo's `calculateNextReconcileTime`).
pub fn next_due(metrics: &[Metric], status: &AnalysisRunStatus) -> Option<OffsetDateTime> {
    let mut next: Option<OffsetDateTime> = None;
    let mut consider = |t: OffsetDateTime| {
        if next.is_none_or(|n| t < n) {
            next = Some(t);
        }
    };
    for metric in metrics {
        let res = result(status, &metric.name);
        if res.is_some_and(|r| completed(&r.phase)) {
            continue;
        }
        let Some(last) = res.and_then(|r| r.measurements.last()) else {
            if let (Some(delay), Some(started)) = (
                &metric.initial_delay,
                status.started_at.as_deref().and_then(parse_time),
            ) && let Ok(d) = duration(delay)
            {
                consider(started + d);
            }
            continue;
        };
        let Some(finished) = last.finished_at.as_deref().and_then(parse_time) else {
            if let Some(at) = last.resume_at.as_deref().and_then(parse_time) {
                consider(at);
            }
            continue;
        };
        let count = res.map_or(0, |r| r.count);
        if effective_count(metric).is_some_and(|c| count >= c) {
            continue;
        }
        if phase_of(&last.phase) == Some(Phase::Error) {
            consider(finished + DEFAULT_ERROR_RETRY_INTERVAL);
        } else if let Some(Ok(i)) = interval(metric).map(duration) {
            consider(finished + i);
        }
    }
    next
}

/// RFC 3339 with milliseconds (`2026-12-03T08:00:00.250Z`), for the times intervals count
/// from (a measurement's, the run's start): whole seconds would make a `1s` interval anything
/// from 0 to 1 s. Go's `metav1.Time` reads the fraction.
pub fn precise_timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let ms = t.millisecond();
    let whole = shipway_controller::clock::format_timestamp(t);
    match whole.strip_suffix('Z') {
        Some(base) if ms > 0 => format!("{base}.{ms:03}Z"),
        _ => whole,
    }
}

/// What a pass over a run decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: AnalysisRunStatus,
    pub phase: Phase,
    /// The run just completed (for events).
    pub completed_now: bool,
    /// Look again after this long; `None` once nothing more is due.
    pub requeue: Option<Duration>,
}

/// One pass after the `measurements` of the due tasks were taken: record them, assess, retain,
/// and say when to come back. `metrics` are the run's metrics with their arguments resolved.
#[allow(clippy::too_many_arguments)]
pub fn step(
    spec: &AnalysisRunSpec,
    metrics: &[Metric],
    dry_run: &std::collections::HashSet<String>,
    limits: &HashMap<String, usize>,
    status: &AnalysisRunStatus,
    now: OffsetDateTime,
    measurements: Vec<(Task, Measurement)>,
) -> Decision {
    let timestamp = precise_timestamp(now);
    let mut status = status.clone();
    for (task, m) in measurements {
        let name = &metrics[task.index].name;
        record(
            &mut status,
            name,
            dry_run.contains(name),
            m,
            task.resume,
            &timestamp,
        );
    }
    let (phase, message) = assess(spec, metrics, dry_run, &mut status, &timestamp);
    let mut completed_now = false;
    if phase_of(&status.phase) != Some(phase) {
        status.phase = phase.as_str().into();
        status.message = message;
        if phase.completed() {
            completed_now = true;
            status
                .completed_at
                .get_or_insert(shipway_controller::clock::format_timestamp(now));
        }
    }
    retain(&mut status, limits);
    let requeue = if phase.completed() {
        None
    } else {
        next_due(metrics, &status).map(|t| (t - now).try_into().unwrap_or(Duration::ZERO))
    };
    Decision {
        status,
        phase,
        completed_now,
        requeue,
    }
}
