//! `shipway pipeline`: the workflow runs the server keeps (`WorkflowRun` objects) and their logs.
//! Listing and showing read the objects; `logs` reads the run's log lines (NDJSON) and prints
//! them as `shipway run` does; `cancel` sets `spec.cancel`, which the scheduler acts on; `run`
//! dispatches a workflow (`POST /api/v1/repos/R/workflows/W/dispatches`).

use std::time::Duration;

use serde_json::json;
use shipway_model::Object;
use shipway_model::columns::{human_duration, unix_seconds};
use shipway_model::types::workflow_run::{
    COMPLETED, REPOSITORY_LABEL, WorkflowRunSpec, WorkflowRunStatus,
};

use crate::Failure;
use crate::cli::{OutputFormat, PipelineCommand, RunTarget};
use crate::client::{Client, ClientError};
use crate::output;

const RESOURCE: &str = "workflowruns";
/// How often `get --watch` looks again.
const POLL: Duration = Duration::from_millis(250);
/// How long `logs --follow` waits for a run that does not exist yet.
const APPEAR_WITHIN: Duration = Duration::from_secs(10);

pub async fn run(client: &Client, command: PipelineCommand) -> Result<(), Failure> {
    match command {
        PipelineCommand::List {
            namespace,
            repo,
            status,
            output,
        } => list(client, &namespace, repo, status, output).await,
        PipelineCommand::Get { run, output, watch } => get(client, &run, output, watch).await,
        PipelineCommand::Logs { run, job, follow } => logs(client, &run, job, follow).await,
        PipelineCommand::Cancel { run } => {
            client
                .patch(
                    RESOURCE,
                    &run.name,
                    &ns(&run.namespace),
                    &json!({"spec": {"cancel": true}}),
                    false,
                )
                .await
                .map_err(|e| not_found(e, &run))?;
            outln!("workflowrun/{} cancel requested", run.name);
            Ok(())
        }
        PipelineCommand::Run {
            repo,
            workflow,
            git_ref,
            inputs,
            watch,
        } => dispatch(client, &repo, &workflow, git_ref, inputs, watch).await,
        PipelineCommand::Rerun { run, failed } => {
            let o = client
                .get(RESOURCE, &run.name, &ns(&run.namespace))
                .await
                .map_err(|e| not_found(e, &run))?;
            let (spec, status) = views(&o);
            if !status.is_completed() {
                return Err(Failure::Failed(format!(
                    "workflow run {:?} is {}: it can be re-run once completed (`shipway pipeline cancel {}` stops it)",
                    run.name,
                    state(&status),
                    run.name
                )));
            }
            if failed && status.conclusion.as_deref() == Some("success") {
                return Err(Failure::Failed(format!(
                    "workflow run {:?} succeeded: no job failed, so there is nothing to re-run with --failed (`shipway pipeline rerun {}` runs every job again)",
                    run.name, run.name
                )));
            }
            let attempt = spec.run_attempt.max(status.attempt()) + 1;
            client
                .patch(
                    RESOURCE,
                    &run.name,
                    &ns(&run.namespace),
                    &json!({"spec": {"runAttempt": attempt, "cancel": false, "rerunFailed": failed}}),
                    false,
                )
                .await
                .map_err(|e| not_found(e, &run))?;
            let what = if failed { " (failed jobs)" } else { "" };
            outln!("workflowrun/{} re-run as attempt {attempt}{what}", run.name);
            Ok(())
        }
        PipelineCommand::Approve {
            run,
            environment,
            comment,
        } => review(client, &run, &environment, "approved", comment).await,
        PipelineCommand::Reject {
            run,
            environment,
            comment,
        } => review(client, &run, &environment, "rejected", comment).await,
    }
}

async fn review(
    client: &Client,
    run: &RunTarget,
    environment: &str,
    state: &str,
    comment: Option<String>,
) -> Result<(), Failure> {
    let body = json!({"environment": environment, "state": state, "comment": comment});
    let review = client
        .review(&run.namespace, &run.name, &body)
        .await
        .map_err(|e| not_found(e, run))?;
    outln!(
        "workflowrun/{} {state} for environment {environment} by {}",
        run.name,
        review["user"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// `shipway pipeline run`: dispatches, prints the run's name alone; with `--watch` follows its
/// log and fails unless the run succeeded.
async fn dispatch(
    client: &Client,
    repo: &str,
    workflow: &str,
    git_ref: Option<String>,
    inputs: Vec<(String, String)>,
    watch: bool,
) -> Result<(), Failure> {
    let mut given = serde_json::Map::new();
    for (k, v) in inputs {
        given.insert(k, serde_json::Value::String(v));
    }
    let answer = client
        .dispatch(repo, workflow, git_ref.as_deref(), &given)
        .await?;
    let (Some(name), Some(namespace)) = (answer["name"].as_str(), answer["namespace"].as_str())
    else {
        return Err(Failure::Failed(format!(
            "the server did not name the run it made: {answer}"
        )));
    };
    outln!("{name}");
    if !watch {
        return Ok(());
    }
    let target = RunTarget {
        name: name.to_string(),
        namespace: namespace.to_string(),
    };
    logs(client, &target, None, true).await?;
    let o = client
        .get(RESOURCE, name, &ns(namespace))
        .await
        .map_err(|e| not_found(e, &target))?;
    let (_, status) = views(&o);
    match status.conclusion.as_deref() {
        Some("success") => Ok(()),
        other => Err(Failure::Failed(format!(
            "workflow run {name} {}",
            other.map_or_else(|| state(&status), |c| format!("concluded {c}"))
        ))),
    }
}

fn ns(namespace: &str) -> Vec<(&'static str, String)> {
    vec![("namespace", namespace.to_string())]
}

fn not_found(e: ClientError, t: &RunTarget) -> Failure {
    match &e {
        ClientError::Api(s) if s.code == 404 => Failure::Failed(format!(
            "workflow run {:?} not found in namespace {:?} (`shipway pipeline list -n {}` shows what there is)",
            t.name, t.namespace, t.namespace
        )),
        _ => e.into(),
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// What the STATUS column says: the conclusion once completed, else the status.
fn state(status: &WorkflowRunStatus) -> String {
    match (&status.status, &status.conclusion) {
        (Some(s), Some(c)) if s == COMPLETED => c.clone(),
        (Some(s), _) => s.clone(),
        (None, _) => "queued".into(),
    }
}

/// From `start` to `end` (or to now while running), as kubectl prints ages.
fn duration(start: Option<&str>, end: Option<&str>, now: i64) -> String {
    let Some(start) = start.and_then(unix_seconds) else {
        return "-".into();
    };
    let end = end.and_then(unix_seconds).unwrap_or(now);
    human_duration(end - start)
}

fn views(o: &Object) -> (WorkflowRunSpec, WorkflowRunStatus) {
    (
        o.spec_as().unwrap_or_default(),
        o.status_as().unwrap_or_default(),
    )
}

async fn list(
    client: &Client,
    namespace: &str,
    repo: Option<String>,
    status: Option<String>,
    format: Option<OutputFormat>,
) -> Result<(), Failure> {
    let mut query = ns(namespace);
    if let Some(r) = &repo {
        query.push(("labelSelector", format!("{REPOSITORY_LABEL}={r}")));
    }
    let mut items = client.list(RESOURCE, &query).await?;
    if let Some(want) = &status {
        items.retain(|o| {
            let (_, st) = views(o);
            st.status.as_deref().unwrap_or("queued") == want
                || st.conclusion.as_deref() == Some(want.as_str())
        });
    }
    // Newest first, as GitHub lists runs.
    items.sort_by_key(|o| std::cmp::Reverse(o.resource_version().unwrap_or(0)));
    let now = now();
    output::print_list(
        &items,
        format,
        |o| format!("workflowrun/{}", o.metadata.name),
        |items| {
            if items.is_empty() {
                eprintln!("No workflow runs found in {namespace} namespace.");
                return;
            }
            let mut rows = vec![
                [
                    "NAME", "WORKFLOW", "EVENT", "REF", "COMMIT", "STATUS", "ACTOR", "DURATION",
                    "AGE",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for o in items {
                let (spec, st) = views(o);
                let age = o
                    .metadata
                    .creation_timestamp
                    .as_deref()
                    .and_then(unix_seconds)
                    .map_or_else(|| "<unknown>".into(), |t| human_duration(now - t));
                rows.push(vec![
                    o.metadata.name.clone(),
                    st.name.clone().unwrap_or_else(|| spec.workflow.clone()),
                    spec.event.clone(),
                    short_ref(&spec.git_ref).to_string(),
                    spec.head_sha.chars().take(7).collect(),
                    state(&st),
                    spec.actor.clone(),
                    duration(st.started_at.as_deref(), st.completed_at.as_deref(), now),
                    age,
                ]);
            }
            out!("{}", aligned(rows));
        },
    );
    Ok(())
}

/// Rows aligned as a table, each cell with the server's control characters escaped.
fn aligned(rows: Vec<Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|c| output::escape_terminal(&c).into_owned())
                .collect()
        })
        .collect();
    output::align(&rows)
}

fn short_ref(r: &str) -> &str {
    r.strip_prefix("refs/heads/")
        .or_else(|| r.strip_prefix("refs/tags/"))
        .unwrap_or(r)
}

/// `get`'s text: the run's facts, then each job and its steps.
fn get_text(o: &Object, now: i64) -> String {
    let (spec, st) = views(o);
    let mut out = String::new();
    let mut field = |k: &str, v: &str| {
        out.push_str(&format!("{k:<12}{}\n", output::escape_terminal(v)));
    };
    field("Name:", &o.metadata.name);
    field(
        "Workflow:",
        &match &st.name {
            Some(n) => format!("{n} ({})", spec.workflow),
            None => spec.workflow.clone(),
        },
    );
    field("Repository:", &spec.repository);
    field("Event:", &spec.event);
    field("Ref:", &spec.git_ref);
    field("Commit:", &spec.head_sha);
    field("Actor:", &spec.actor);
    field(
        "Run:",
        &format!("#{} (attempt {})", spec.run_number, spec.run_attempt),
    );
    field("Status:", &state(&st));
    field(
        "Duration:",
        &duration(st.started_at.as_deref(), st.completed_at.as_deref(), now),
    );
    if let Some(m) = &st.message {
        field("Message:", m);
    }
    if !spec.reviews.is_empty() {
        out.push_str("\nReviews:\n");
        let mut rows = vec![
            ["ENVIRONMENT", "STATE", "BY", "ATTEMPT", "AT", "COMMENT"]
                .map(String::from)
                .to_vec(),
        ];
        for r in &spec.reviews {
            rows.push(vec![
                r.environment.clone(),
                r.state.clone(),
                r.user.clone(),
                r.attempt.to_string(),
                r.submitted_at.clone(),
                r.comment.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&aligned(rows));
    }
    if !st.jobs.is_empty() {
        out.push('\n');
        let mut rows = vec![
            ["JOB", "STATUS", "DURATION", "MESSAGE"]
                .map(String::from)
                .to_vec(),
        ];
        for j in &st.jobs {
            let status = match (&j.conclusion, j.status.as_str()) {
                (Some(c), COMPLETED) => c.clone(),
                _ => j.status.clone(),
            };
            rows.push(vec![
                j.name.clone(),
                status,
                duration(j.started_at.as_deref(), j.completed_at.as_deref(), now),
                j.message.clone().unwrap_or_default(),
            ]);
            for s in &j.steps {
                let status = match (&s.conclusion, s.status.as_str()) {
                    (Some(c), COMPLETED) => c.clone(),
                    _ => s.status.clone(),
                };
                rows.push(vec![
                    format!("  {}. {}", s.number, s.name),
                    status,
                    duration(s.started_at.as_deref(), s.completed_at.as_deref(), now),
                    String::new(),
                ]);
            }
        }
        out.push_str(&aligned(rows));
    }
    out
}

async fn get(
    client: &Client,
    t: &RunTarget,
    format: Option<OutputFormat>,
    watch: bool,
) -> Result<(), Failure> {
    use std::io::IsTerminal as _;
    let fetch = || async {
        client
            .get(RESOURCE, &t.name, &ns(&t.namespace))
            .await
            .map_err(|e| not_found(e, t))
    };
    if !watch || format.is_some() {
        let o = fetch().await?;
        output::print_object(&o, format, "workflowrun", |o| {
            out!("{}", get_text(o, now()))
        });
        return Ok(());
    }
    let terminal = std::io::stdout().is_terminal();
    let mut last = String::new();
    loop {
        let o = fetch().await?;
        let shown = get_text(&o, now());
        if shown != last {
            if terminal {
                // Redrawn in place: home, clear, then the new text.
                out!("\x1b[H\x1b[2J{shown}");
            } else {
                out!("{shown}\n");
            }
            last = shown;
        }
        let (_, st) = views(&o);
        if st.is_completed() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn logs(
    client: &Client,
    t: &RunTarget,
    job: Option<String>,
    follow: bool,
) -> Result<(), Failure> {
    let mut query = Vec::new();
    if follow {
        query.push(("follow", "true".to_string()));
        // A push's runs are made just after the push returns: give a run that was just
        // triggered a moment to appear.
        let deadline = std::time::Instant::now() + APPEAR_WITHIN;
        loop {
            match client.get(RESOURCE, &t.name, &ns(&t.namespace)).await {
                Err(ClientError::Api(s))
                    if s.code == 404 && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => return Err(not_found(e, t)),
                Ok(_) => break,
            }
        }
    }
    client
        .run_logs(&t.namespace, &t.name, &query, |line| {
            let text = line["text"].as_str().unwrap_or_default();
            let name = line["job"].as_str().unwrap_or_default();
            if job.as_deref().is_some_and(|j| j != name) {
                return true;
            }
            let text = output::escape_terminal(text);
            if name.is_empty() {
                outln!("{text}");
            } else {
                outln!("[{}] {text}", output::escape_terminal(name));
            }
            true
        })
        .await
        .map_err(|e| not_found(e, t))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn run(status: Value) -> Object {
        serde_json::from_value(json!({
            "apiVersion": "shipway.dev/v1alpha1", "kind": "WorkflowRun",
            "metadata": {"name": "app-ci-3", "namespace": "default"},
            "spec": {"repository": "app", "workflow": ".github/workflows/ci.yml", "event": "push",
                     "ref": "refs/heads/main", "headSha": "0123456789abcdef", "actor": "alice",
                     "runNumber": 3},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn get_shows_jobs_and_steps_with_their_results() {
        let o = run(json!({
            "status": "in_progress", "name": "CI",
            "startedAt": "2026-12-03T10:00:00Z",
            "jobs": [
                {"name": "build", "status": "completed", "conclusion": "success",
                 "startedAt": "2026-12-03T10:00:00Z", "completedAt": "2026-12-03T10:00:07Z",
                 "steps": [{"number": 1, "name": "Run make", "status": "completed",
                            "conclusion": "success"}]},
                {"name": "deploy", "status": "waiting", "message": "Waiting for approval"},
            ],
        }));
        let now = unix_seconds("2026-12-03T10:00:30Z").unwrap();
        let text = get_text(&o, now);
        assert!(
            text.contains("Workflow:   CI (.github/workflows/ci.yml)"),
            "{text}"
        );
        assert!(text.contains("Run:        #3 (attempt 1)"), "{text}");
        assert!(text.contains("Status:     in_progress"), "{text}");
        assert!(text.contains("Duration:   30s"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let build = lines.iter().find(|l| l.starts_with("build")).unwrap();
        assert!(build.contains("success") && build.contains("7s"), "{build}");
        assert!(
            lines
                .iter()
                .any(|l| l.trim_start().starts_with("1. Run make"))
        );
        let deploy = lines.iter().find(|l| l.starts_with("deploy")).unwrap();
        assert!(deploy.contains("waiting") && deploy.contains("Waiting for approval"));
    }
}
