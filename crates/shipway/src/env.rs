//! `shipway env`: deployment environments — their protection rules (`Environment` objects) and
//! what ran in each: every job with `environment:` of every workflow run, newest first, with
//! its run, ref, commit, result and approvers. Read from the runs, so an environment a workflow
//! names without an object shows up too.

use std::collections::BTreeMap;

use shipway_model::Object;
use shipway_model::types::EnvironmentSpec;
use shipway_model::types::workflow_run::{APPROVED, COMPLETED, WorkflowRunSpec, WorkflowRunStatus};

use crate::Failure;
use crate::cli::{EnvCommand, OutputFormat};
use crate::client::Client;
use crate::output;

/// One job that deployed (or asked to deploy) to an environment.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Deployment {
    environment: String,
    run: String,
    job: String,
    repository: String,
    #[serde(rename = "ref")]
    git_ref: String,
    commit: String,
    actor: String,
    status: String,
    approved_by: Vec<String>,
    /// What the job promoted (`web@sha256:...`, as `kustomize edit set image` took it); when it
    /// promoted nothing, the images its run published (`NAME:TAG@DIGEST`).
    images: Vec<String>,
    started_at: Option<String>,
    completed_at: Option<String>,
    #[serde(skip)]
    order: u64,
}

pub async fn run(client: &Client, command: EnvCommand) -> Result<(), Failure> {
    match command {
        EnvCommand::List { namespace, output } => list(client, &namespace, output).await,
        EnvCommand::Get {
            name,
            namespace,
            output,
        } => get(client, &name, &namespace, output).await,
        EnvCommand::History {
            name,
            namespace,
            output,
        } => history(client, &name, &namespace, output).await,
    }
}

fn ns(namespace: &str) -> Vec<(&'static str, String)> {
    vec![("namespace", namespace.to_string())]
}

/// Every job of every run that names an environment, newest first.
async fn deployments(client: &Client, namespace: &str) -> Result<Vec<Deployment>, Failure> {
    let runs = client.list("workflowruns", &ns(namespace)).await?;
    let mut out = Vec::new();
    for o in &runs {
        let spec: WorkflowRunSpec = o.spec_as().unwrap_or_default();
        let status: WorkflowRunStatus = o.status_as().unwrap_or_default();
        let attempt = status.attempt();
        for j in &status.jobs {
            let Some(env) = &j.environment else { continue };
            let mut approved_by: Vec<String> = spec
                .reviews
                .iter()
                .filter(|r| &r.environment == env && r.attempt == attempt && r.state == APPROVED)
                .map(|r| r.user.clone())
                .collect();
            approved_by.dedup();
            let promoted: Vec<String> = status
                .promotions
                .iter()
                .filter(|p| p.job == j.name)
                .map(|p| p.image.clone())
                .collect();
            let images = if promoted.is_empty() {
                status
                    .images
                    .iter()
                    .map(|i| format!("{}:{}@{}", i.name, i.tag, i.digest))
                    .collect()
            } else {
                promoted
            };
            let state = match (&j.conclusion, j.status.as_str()) {
                (Some(c), COMPLETED) => c.clone(),
                _ => j.status.clone(),
            };
            out.push(Deployment {
                environment: env.clone(),
                run: o.metadata.name.clone(),
                job: j.name.clone(),
                repository: spec.repository.clone(),
                git_ref: spec.git_ref.clone(),
                commit: spec.head_sha.clone(),
                actor: spec.actor.clone(),
                status: state,
                approved_by,
                images,
                started_at: j.started_at.clone(),
                completed_at: j.completed_at.clone(),
                order: o.resource_version().unwrap_or(0),
            });
        }
    }
    out.sort_by_key(|d| std::cmp::Reverse(d.order));
    Ok(out)
}

fn short(r: &str) -> String {
    r.strip_prefix("refs/heads/")
        .or_else(|| r.strip_prefix("refs/tags/"))
        .unwrap_or(r)
        .to_string()
}

fn protection(spec: &EnvironmentSpec) -> String {
    let mut rules = Vec::new();
    let n = spec.approvals_needed();
    if n > 0 {
        rules.push(format!("{n} of {}", spec.reviewers()));
    }
    if let Ok(d) = spec.wait()
        && !d.is_zero()
    {
        rules.push(format!("wait {}s", d.as_secs()));
    }
    if let Some(p) = &spec.deployment_branch_policy {
        let mut refs: Vec<String> = p.branches.clone();
        refs.extend(p.tags.iter().map(|t| format!("tag {t}")));
        rules.push(format!("refs {}", refs.join(",")));
    }
    if rules.is_empty() {
        "none".into()
    } else {
        rules.join("; ")
    }
}

fn table(rows: Vec<Vec<String>>) -> String {
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

fn approvers(d: &Deployment) -> String {
    if d.approved_by.is_empty() {
        "-".into()
    } else {
        d.approved_by.join(",")
    }
}

/// The images of `d` with their digests cut to 12 hex digits, for tables.
fn images(d: &Deployment) -> String {
    if d.images.is_empty() {
        return "-".into();
    }
    d.images
        .iter()
        .map(|i| match i.split_once("@sha256:") {
            Some((name, hex)) => format!("{name}@sha256:{}", &hex[..hex.len().min(12)]),
            None => i.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn print_json(value: &impl serde::Serialize, format: Option<OutputFormat>) -> bool {
    let value = serde_json::to_value(value).unwrap_or_default();
    match format {
        Some(OutputFormat::Json) => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            true
        }
        Some(OutputFormat::Yaml) => {
            out!("{}", output::to_yaml(&value));
            true
        }
        _ => false,
    }
}

async fn list(
    client: &Client,
    namespace: &str,
    format: Option<OutputFormat>,
) -> Result<(), Failure> {
    let objects = client.list("environments", &ns(namespace)).await?;
    let deployments = deployments(client, namespace).await?;
    let mut envs: BTreeMap<String, (Option<&Object>, Option<&Deployment>)> = BTreeMap::new();
    for o in &objects {
        envs.entry(o.metadata.name.clone()).or_default().0 = Some(o);
    }
    for d in &deployments {
        let e = envs.entry(d.environment.clone()).or_default();
        e.1.get_or_insert(d);
    }
    if format == Some(OutputFormat::Name) {
        envs.keys().for_each(|n| outln!("environment/{n}"));
        return Ok(());
    }
    let summary: Vec<serde_json::Value> = envs
        .iter()
        .map(|(name, (o, d))| {
            serde_json::json!({
                "name": name,
                "spec": o.and_then(|o| o.body.get("spec")).cloned(),
                "lastDeployment": d,
            })
        })
        .collect();
    if print_json(&summary, format) {
        return Ok(());
    }
    if envs.is_empty() {
        eprintln!(
            "No environments in {namespace} namespace: a job with `environment: NAME` makes one appear, an Environment object protects it."
        );
        return Ok(());
    }
    let mut rows = vec![
        [
            "NAME",
            "PROTECTION",
            "LAST RUN",
            "REF",
            "COMMIT",
            "IMAGE",
            "STATUS",
            "APPROVED BY",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (name, (o, d)) in &envs {
        let rules = match o {
            Some(o) => protection(&o.spec_as().unwrap_or_default()),
            None => "none (no Environment object)".into(),
        };
        let mut row = vec![name.clone(), rules];
        match d {
            Some(d) => row.extend([
                d.run.clone(),
                short(&d.git_ref),
                d.commit.chars().take(7).collect(),
                images(d),
                d.status.clone(),
                approvers(d),
            ]),
            None => row.extend(["-", "-", "-", "-", "-", "-"].map(String::from)),
        }
        rows.push(row);
    }
    out!("{}", table(rows));
    Ok(())
}

async fn get(
    client: &Client,
    name: &str,
    namespace: &str,
    format: Option<OutputFormat>,
) -> Result<(), Failure> {
    let object = match client.get("environments", name, &ns(namespace)).await {
        Ok(o) => Some(o),
        Err(crate::client::ClientError::Api(s)) if s.code == 404 => None,
        Err(e) => return Err(e.into()),
    };
    let mine: Vec<Deployment> = deployments(client, namespace)
        .await?
        .into_iter()
        .filter(|d| d.environment == name)
        .collect();
    if object.is_none() && mine.is_empty() {
        return Err(Failure::Failed(format!(
            "environment {name:?} not found in namespace {namespace:?}: no Environment object and no run deployed to it (`shipway env list` shows what there is)"
        )));
    }
    let current = mine.iter().find(|d| d.status == "success");
    let pending: Vec<&Deployment> = mine.iter().filter(|d| d.status == "waiting").collect();
    let summary = serde_json::json!({
        "name": name,
        "spec": object.as_ref().and_then(|o| o.body.get("spec")).cloned(),
        "current": current,
        "pending": pending,
    });
    if print_json(&summary, format) {
        return Ok(());
    }
    let spec: EnvironmentSpec = object
        .as_ref()
        .and_then(|o| o.spec_as().ok())
        .unwrap_or_default();
    let mut text = String::new();
    let mut field = |k: &str, v: &str| {
        text.push_str(&format!("{k:<14}{}\n", output::escape_terminal(v)));
    };
    field("Name:", name);
    field(
        "Protection:",
        &match &object {
            Some(_) => protection(&spec),
            None => "none (no Environment object)".into(),
        },
    );
    if let Some(url) = &spec.url {
        field("URL:", url);
    }
    match current {
        Some(d) => {
            field(
                "Running:",
                &format!("{} of {} ({})", d.commit, d.repository, short(&d.git_ref)),
            );
            field("From run:", &format!("{} job {}", d.run, d.job));
            for i in &d.images {
                field("Image:", i);
            }
            field("Approved by:", &approvers(d));
            field("Deployed at:", d.completed_at.as_deref().unwrap_or("-"));
        }
        None => field("Running:", "nothing deployed successfully yet"),
    }
    for d in pending {
        field(
            "Waiting:",
            &format!(
                "{} job {} ({})",
                d.run,
                d.job,
                d.commit.chars().take(7).collect::<String>()
            ),
        );
    }
    out!("{text}");
    Ok(())
}

async fn history(
    client: &Client,
    name: &str,
    namespace: &str,
    format: Option<OutputFormat>,
) -> Result<(), Failure> {
    let mine: Vec<Deployment> = deployments(client, namespace)
        .await?
        .into_iter()
        .filter(|d| d.environment == name)
        .collect();
    if print_json(&mine, format) {
        return Ok(());
    }
    if mine.is_empty() {
        eprintln!("No runs deployed to environment {name:?} in {namespace} namespace.");
        return Ok(());
    }
    let mut rows = vec![
        [
            "RUN",
            "JOB",
            "REF",
            "COMMIT",
            "IMAGE",
            "ACTOR",
            "STATUS",
            "APPROVED BY",
            "COMPLETED",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for d in &mine {
        rows.push(vec![
            d.run.clone(),
            d.job.clone(),
            short(&d.git_ref),
            d.commit.chars().take(7).collect(),
            images(d),
            d.actor.clone(),
            d.status.clone(),
            approvers(d),
            d.completed_at.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    out!("{}", table(rows));
    Ok(())
}
