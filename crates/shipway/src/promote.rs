//! `shipway promote REPO PATH IMAGE --tag T | --digest D`: the promotion commit a pipeline's
//! `shipway/promote` makes, from a terminal or a step. A hosted repository is pushed through the
//! server with this CLI's token, so the push is attributed to its user and reaches the GitOps
//! controller like any other; the commit's author is that user. Inside a run (`SHIPWAY_RUN`
//! set, as steps get it) the author is the run and the message names its commit and approvers.

use serde_json::json;
use shipway_ci::promote::{self, Promotion};
use shipway_git::{Credentials, Signature};
use shipway_model::types::workflow_run::WorkflowRunSpec;

use crate::Failure;
use crate::cli::{OutputFormat, PromoteArgs};
use crate::client::Client;

/// What a run's steps are told about their run.
struct RunContext {
    name: String,
    commit: String,
    approvers: Vec<String>,
}

async fn run_context(client: &Client) -> Result<Option<RunContext>, Failure> {
    let Some(name) = std::env::var("SHIPWAY_RUN").ok().filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let namespace = std::env::var("SHIPWAY_NAMESPACE").unwrap_or_else(|_| "default".into());
    let run = client
        .get("workflowruns", &name, &[("namespace", namespace)])
        .await?;
    let spec: WorkflowRunSpec = run.spec_as().map_err(|e| {
        Failure::Failed(format!(
            "workflowrun/{name} (SHIPWAY_RUN): unreadable spec: {e}"
        ))
    })?;
    Ok(Some(RunContext {
        approvers: promote::approvers(&spec),
        commit: spec.head_sha,
        name,
    }))
}

pub async fn run(client: &Client, args: PromoteArgs) -> Result<(), Failure> {
    let arg = promote::image_arg(
        &args.image,
        args.new_name.as_deref(),
        args.tag.as_deref(),
        args.digest.as_deref(),
    )
    .map_err(Failure::Usage)?;
    let (url, credentials) = if args.repo.contains("://") || args.repo.starts_with('/') {
        (args.repo.clone(), None)
    } else {
        shipway_model::name::validate_dns1123_label(&args.repo).map_err(|reason| {
            Failure::Usage(format!(
                "{:?} is neither a URL nor a hosted repository's name: {reason}",
                args.repo
            ))
        })?;
        (
            format!("{}/git/{}.git", client.server(), args.repo),
            client.token().map(|t| Credentials {
                username: Some("shipway".into()),
                password: Some(t.to_string()),
                ssh_private_key: None,
            }),
        )
    };
    let context = run_context(client).await?;
    let author = match &context {
        Some(run) => Signature {
            name: format!("run:{}", run.name),
            email: format!("{}@runs.shipway.invalid", run.name),
        },
        None => {
            let (user, _) = client.whoami().await?;
            Signature {
                email: format!("{}@users.shipway.invalid", user.replace(':', ".")),
                name: user,
            }
        }
    };
    let subject = args
        .message
        .clone()
        .unwrap_or_else(|| format!("Promote {arg} in {}", args.path));
    let message = promote::message(
        &subject,
        context.as_ref().map(|c| c.name.as_str()),
        context.as_ref().map(|c| c.commit.as_str()),
        std::slice::from_ref(&arg),
        args.digest.as_deref(),
        context.as_ref().map_or(&[][..], |c| &c.approvers),
    );
    let promotion = Promotion {
        url,
        credentials,
        path: args.path.clone(),
        images: vec![arg.clone()],
        branch: args.branch.clone(),
        author,
        message,
    };
    let done = tokio::task::spawn_blocking(move || promote::promote(&promotion))
        .await
        .map_err(|e| Failure::Failed(format!("the promotion stopped: {e}")))?
        .map_err(|e| Failure::Failed(e.to_string()))?;
    match args.output {
        Some(OutputFormat::Json) => outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "repository": args.repo,
                "path": args.path,
                "image": arg,
                "branch": done.branch,
                "commit": done.commit,
                "file": done.file,
                "changed": done.changed,
            }))
            .unwrap_or_default()
        ),
        _ if done.changed => outln!(
            "promoted {arg} in {} on {}: {}",
            done.file,
            done.branch,
            done.commit
        ),
        _ => outln!(
            "{} on {} already sets {arg}: nothing to commit",
            done.file,
            done.branch
        ),
    }
    Ok(())
}
