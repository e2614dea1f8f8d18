//! `shipway app`: Argo CD Applications with `argocd app`'s verbs. Every verb is an object
//! operation through the API — a sync is the `operation` field the GitOps controller acts on, a
//! refresh its annotation — so scripts that read Argo's JSON read the same fields here.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shipway_model::Object;
use shipway_model::types::{ApplicationSpec, ApplicationStatus, ResourceResult};

use crate::Failure;
use crate::cli::{AppCommand, AppCreateArgs, AppTarget, OutputFormat};
use crate::client::{Client, ClientError};
use crate::output;

const RESOURCE: &str = "applications";
const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";
const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";
/// How often waits look again; a watch would be better, but an Application changes seldom and a
/// wait must notice a change that happened between two of its reads either way.
const POLL: Duration = Duration::from_millis(250);

pub async fn run(client: &Client, command: AppCommand) -> Result<(), Failure> {
    match command {
        AppCommand::Create(args) => create(client, args).await,
        AppCommand::List {
            output,
            app_namespace,
        } => list(client, &app_namespace, output).await,
        AppCommand::Get {
            app,
            output,
            refresh,
        } => {
            if refresh {
                request_refresh(client, &app).await?;
                // The controller compares again and writes reconciledAt; wait for that, briefly.
                let before = fetch(client, &app).await?;
                let since = status(&before).reconciled_at;
                wait_until(client, &app, Some(Duration::from_secs(30)), |o| {
                    status(o).reconciled_at != since
                })
                .await
                .ok();
            }
            let obj = fetch(client, &app).await?;
            output::print_object(&obj, output, "application", |o| outln!("{}", get_text(o)));
            Ok(())
        }
        AppCommand::Sync {
            app,
            prune,
            dry_run,
            revision,
            resource,
            no_wait,
            timeout,
        } => {
            let resources = resource
                .iter()
                .map(|r| parse_resource(r))
                .collect::<Result<Vec<_>, _>>()?;
            let mut sync = json!({});
            if let Some(rev) = revision {
                sync["revision"] = Value::String(rev);
            }
            if prune {
                sync["prune"] = Value::Bool(true);
            }
            if dry_run {
                sync["dryRun"] = Value::Bool(true);
            }
            if !resources.is_empty() {
                sync["resources"] = Value::Array(resources);
            }
            request_operation(client, &app, sync).await?;
            if no_wait {
                outln!("sync of {} requested", app.name);
                return Ok(());
            }
            finish_operation(client, &app, timeout.map(|t| t.0)).await
        }
        AppCommand::History { app, output } => {
            let obj = fetch(client, &app).await?;
            output::print_object(&obj, output, "application", |o| {
                outln!("{}", history_text(o))
            });
            Ok(())
        }
        AppCommand::Rollback { app, id, timeout } => {
            let obj = fetch(client, &app).await?;
            let spec: ApplicationSpec = obj.spec_as().unwrap_or_default();
            if spec
                .sync_policy
                .as_ref()
                .and_then(|p| p.automated.as_ref())
                .is_some_and(|a| a.enabled != Some(false))
            {
                // Argo's rule: automation would sync straight back to the target revision.
                return Err(Failure::Failed(format!(
                    "rollback cannot be initiated when auto-sync is enabled: turn off spec.syncPolicy.automated of {} first",
                    app.name
                )));
            }
            let history = status(&obj).history;
            let entry = match id {
                Some(id) => history.iter().find(|h| h.id == id).ok_or_else(|| {
                    let ids: Vec<String> = history.iter().map(|h| h.id.to_string()).collect();
                    Failure::Failed(format!(
                        "application {} has no history ID {id} (it has: {})",
                        app.name,
                        if ids.is_empty() {
                            "none".into()
                        } else {
                            ids.join(", ")
                        }
                    ))
                })?,
                // The deployment before the current one, as `argocd app rollback NAME` picks it.
                None => history.iter().rev().nth(1).ok_or_else(|| {
                    Failure::Failed(format!(
                        "application {} has no earlier deployment to roll back to",
                        app.name
                    ))
                })?,
            };
            let mut sync = json!({"revision": entry.revision.clone().unwrap_or_default()});
            if let Some(source) = &entry.source {
                sync["source"] = serde_json::to_value(source).unwrap_or_default();
            }
            request_operation(client, &app, sync).await?;
            finish_operation(client, &app, timeout.map(|t| t.0)).await
        }
        AppCommand::Wait {
            app,
            sync,
            health,
            operation,
            degraded,
            suspended,
            timeout,
        } => {
            // Without flags: synced, healthy and no operation running, as argocd app wait.
            let all = !(sync || health || operation || degraded || suspended);
            let want = |o: &Object| {
                let s = status(o);
                let (sync_status, health_status) = sync_and_health(&s);
                let op_done = o.body.get("operation").is_none_or(Value::is_null)
                    && s.operation_state
                        .as_ref()
                        .is_none_or(|op| op.phase != "Running");
                ((!sync && !all) || sync_status == "Synced")
                    && ((!health && !all) || health_status == "Healthy")
                    && ((!operation && !all) || op_done)
                    && (!degraded || health_status == "Degraded")
                    && (!suspended || health_status == "Suspended")
            };
            let obj = wait_until(client, &app, timeout.map(|t| t.0), want).await?;
            outln!("{}", get_text(&obj));
            Ok(())
        }
        AppCommand::Manifests { app, revision } => {
            let obj = fetch(client, &app).await?;
            let (_, desired) = desired_state(client, &obj, revision.as_deref()).await?;
            for (i, o) in desired.iter().enumerate() {
                if i > 0 {
                    outln!("---");
                }
                out!(
                    "{}",
                    output::to_yaml(&serde_json::to_value(o).unwrap_or_default())
                );
            }
            Ok(())
        }
        AppCommand::Diff { app, revision } => {
            let obj = fetch(client, &app).await?;
            let (_, desired) = desired_state(client, &obj, revision.as_deref()).await?;
            let plain: Vec<Object> = desired
                .into_iter()
                .filter(|o| {
                    !shipway_gitops::plan::is_hook(o) && !shipway_gitops::plan::is_skipped(o)
                })
                .collect();
            let mut live = Vec::new();
            let pruned = status(&obj)
                .resources
                .into_iter()
                .filter(|r| r.requires_pruning == Some(true))
                .map(|r| {
                    (
                        r.group.unwrap_or_default(),
                        r.kind.unwrap_or_default(),
                        r.namespace.unwrap_or_default(),
                        r.name.unwrap_or_default(),
                    )
                });
            let wanted: Vec<(String, String, String, String)> = plain
                .iter()
                .map(|o| {
                    (
                        o.group().to_string(),
                        o.kind.clone(),
                        o.metadata.namespace.clone().unwrap_or_default(),
                        o.metadata.name.clone(),
                    )
                })
                .chain(pruned)
                .collect();
            for (group, kind, namespace, name) in wanted {
                let resource = if group.is_empty() {
                    kind.to_lowercase()
                } else {
                    format!("{}.{group}", kind.to_lowercase())
                };
                let query = if namespace.is_empty() {
                    Vec::new()
                } else {
                    ns(&namespace)
                };
                match client.get(&resource, &name, &query).await {
                    Ok(o) => live.push(o),
                    Err(ClientError::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let spec: ApplicationSpec = obj.spec_as().unwrap_or_default();
            let diffs = shipway_gitops::diff::diff(
                &obj.metadata.name,
                &plain,
                &live,
                &spec.ignore_differences,
                &[],
            );
            let colour = {
                use std::io::IsTerminal as _;
                std::io::stdout().is_terminal()
            };
            let mut differs = false;
            for d in diffs.iter().filter(|d| !d.diff.is_empty()) {
                differs = true;
                for line in d.diff.lines() {
                    let line = output::escape_terminal(line);
                    match line.chars().next() {
                        Some('+') if colour && !line.starts_with("+++") => {
                            outln!("\x1b[32m{line}\x1b[0m")
                        }
                        Some('-') if colour && !line.starts_with("---") => {
                            outln!("\x1b[31m{line}\x1b[0m")
                        }
                        _ => outln!("{line}"),
                    }
                }
            }
            if differs {
                // `argocd app diff`'s contract: exit 1 when there is a difference.
                Err(Failure::Failed(format!(
                    "application {} differs from git",
                    app.name
                )))
            } else {
                Ok(())
            }
        }
        AppCommand::Refresh { app } => {
            request_refresh(client, &app).await?;
            outln!("refresh of {} requested", app.name);
            Ok(())
        }
        AppCommand::Delete { app, cascade } => {
            // Cascade is Argo's resources finalizer: the controller deletes the resources, then
            // lets the Application go; without it the resources stay.
            update(client, &app, |o| {
                let f = &mut o.metadata.finalizers;
                let has = f.iter().any(|x| x == RESOURCES_FINALIZER);
                if cascade && !has {
                    f.push(RESOURCES_FINALIZER.into());
                } else if !cascade && has {
                    f.retain(|x| x != RESOURCES_FINALIZER);
                }
            })
            .await?;
            client
                .delete(RESOURCE, &app.name, &ns(&app.app_namespace))
                .await?;
            outln!(
                "application {} deleted{}",
                app.name,
                if cascade {
                    " (its resources go with it)"
                } else {
                    " (its resources stay)"
                }
            );
            Ok(())
        }
    }
}

fn ns(namespace: &str) -> Vec<(&'static str, String)> {
    vec![("namespace", namespace.to_string())]
}

fn status(o: &Object) -> ApplicationStatus {
    o.status_as().unwrap_or_default()
}

async fn fetch(client: &Client, app: &AppTarget) -> Result<Object, Failure> {
    client
        .get(RESOURCE, &app.name, &ns(&app.app_namespace))
        .await
        .map_err(|e| match &e {
            ClientError::Api(s) if s.code == 404 => Failure::Failed(format!(
                "application {:?} not found in namespace {:?} (`shipway app list -N {}` shows what there is)",
                app.name, app.app_namespace, app.app_namespace
            )),
            _ => e.into(),
        })
}

/// Read, change, write back with the read's resourceVersion; again when someone wrote in between.
async fn update(
    client: &Client,
    app: &AppTarget,
    change: impl Fn(&mut Object),
) -> Result<Object, Failure> {
    for _ in 0..10 {
        let mut obj = fetch(client, app).await?;
        change(&mut obj);
        // Status is the controller's: an apply never writes it.
        obj.body.remove("status");
        match client.apply(&obj, false).await {
            Ok(v) => return Ok(serde_json::from_value(v["object"].clone()).unwrap_or(obj)),
            Err(ClientError::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Failure::Failed(format!(
        "application {} changed under every one of 10 attempts to update it; try again",
        app.name
    )))
}

async fn request_refresh(client: &Client, app: &AppTarget) -> Result<(), Failure> {
    update(client, app, |o| {
        o.metadata
            .annotations
            .insert(REFRESH_ANNOTATION.into(), "normal".into());
    })
    .await
    .map(|_| ())
}

/// Sets `operation` as `argocd app sync` does, unless one is already pending or running.
async fn request_operation(client: &Client, app: &AppTarget, sync: Value) -> Result<(), Failure> {
    let user = "shipway-cli";
    let current = fetch(client, app).await?;
    // Requested and not yet taken, or taken and running (the controller clears `operation`
    // when it starts one): either way Argo's answer is to wait.
    let running = status(&current)
        .operation_state
        .is_some_and(|op| op.phase == "Running");
    if running || current.body.get("operation").is_some_and(|v| !v.is_null()) {
        return Err(Failure::Failed(format!(
            "another operation is already in progress on {}: wait for it (`shipway app wait {} --operation`)",
            app.name, app.name
        )));
    }
    update(client, app, |o| {
        o.body.insert(
            "operation".into(),
            json!({"sync": sync, "initiatedBy": {"username": user}}),
        );
    })
    .await
    .map(|_| ())
}

/// Waits for the requested operation to be taken and finished, prints its result, and fails
/// unless it Succeeded.
async fn finish_operation(
    client: &Client,
    app: &AppTarget,
    timeout: Option<Duration>,
) -> Result<(), Failure> {
    let obj = wait_until(client, app, timeout, |o| {
        // The controller clears `operation` when it takes it, and the state says when it ends.
        o.body.get("operation").is_none_or(Value::is_null)
            && status(o)
                .operation_state
                .as_ref()
                .is_some_and(|op| op.phase != "Running")
    })
    .await?;
    outln!("{}", get_text(&obj));
    let op = status(&obj).operation_state.unwrap_or_default();
    if op.phase == "Succeeded" {
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "operation has completed with phase: {}{}",
            op.phase,
            op.message.map(|m| format!(": {m}")).unwrap_or_default()
        )))
    }
}

async fn wait_until(
    client: &Client,
    app: &AppTarget,
    timeout: Option<Duration>,
    done: impl Fn(&Object) -> bool,
) -> Result<Object, Failure> {
    use std::io::IsTerminal as _;
    let start = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut last = String::new();
    loop {
        let obj = fetch(client, app).await?;
        if done(&obj) {
            if terminal && !last.is_empty() {
                eprintln!();
            }
            return Ok(obj);
        }
        let line = format!(
            "{}: {}{}",
            app.name,
            last_state(&obj),
            status(&obj)
                .operation_state
                .map(|op| format!(", operation {}", op.phase))
                .unwrap_or_default(),
        );
        // Progress on a terminal only: a log or a pipe gets the result, not the redraws.
        if terminal && line != last {
            eprint!("\r\x1b[2K{line} ({}s)", start.elapsed().as_secs());
            last = line;
        }
        if let Some(t) = timeout
            && start.elapsed() >= t
        {
            if terminal {
                eprintln!();
            }
            return Err(Failure::Failed(format!(
                "timed out after {}s waiting for {} (now: {})",
                t.as_secs(),
                app.name,
                last_state(&obj)
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn last_state(o: &Object) -> String {
    let s = status(o);
    let (sync, health) = sync_and_health(&s);
    format!("sync {sync}, health {health}")
}

/// The sync and health status words, `Unknown` when the controller has not written them.
fn sync_and_health(s: &ApplicationStatus) -> (&str, &str) {
    (
        s.sync
            .as_ref()
            .map(|x| x.status.as_str())
            .filter(|x| !x.is_empty())
            .unwrap_or("Unknown"),
        s.health
            .as_ref()
            .and_then(|h| h.status.as_deref())
            .unwrap_or("Unknown"),
    )
}

/// `GROUP:KIND:NAME` or `GROUP:KIND:NAMESPACE/NAME`, as `argocd app sync --resource`.
fn parse_resource(text: &str) -> Result<Value, Failure> {
    let parts: Vec<&str> = text.split(':').collect();
    let [group, kind, name] = parts.as_slice() else {
        return Err(Failure::Usage(format!(
            "--resource {text:?}: expected GROUP:KIND:NAME (e.g. apps:Deployment:web, or :Service:web for a core kind)"
        )));
    };
    if kind.is_empty() || name.is_empty() {
        return Err(Failure::Usage(format!(
            "--resource {text:?}: KIND and NAME must not be empty"
        )));
    }
    let mut r = json!({"group": group, "kind": kind});
    match name.split_once('/') {
        Some((namespace, name)) => {
            r["namespace"] = Value::String(namespace.into());
            r["name"] = Value::String(name.into());
        }
        None => r["name"] = Value::String((*name).into()),
    }
    Ok(r)
}

async fn create(client: &Client, args: AppCreateArgs) -> Result<(), Failure> {
    let obj = match &args.file {
        Some(file) => {
            let objects = crate::commands::read_objects(&[file.display().to_string()])?;
            let mut apps: Vec<Object> = objects
                .into_iter()
                .filter(|o| o.kind == "Application" && o.group() == "argoproj.io")
                .collect();
            if apps.len() != 1 {
                return Err(Failure::Usage(format!(
                    "{}: expected exactly one argoproj.io Application, found {}",
                    file.display(),
                    apps.len()
                )));
            }
            let mut app = apps.remove(0);
            if let Some(name) = &args.name {
                app.metadata.name = name.clone();
            }
            if app.metadata.namespace.is_none() {
                app.metadata.namespace = Some(args.app_namespace.clone());
            }
            app
        }
        None => {
            let name = args
                .name
                .clone()
                .ok_or_else(|| Failure::Usage("an Application needs a NAME (or -f FILE)".into()))?;
            let mut spec = json!({
                "project": args.project,
                "source": {
                    "repoURL": args.repo,
                    "path": args.path,
                    "targetRevision": args.revision,
                },
                "destination": {"server": args.dest_server, "namespace": args.dest_namespace},
            });
            let automated = args.sync_policy.as_deref() == Some("automated");
            if (args.self_heal || args.auto_prune || args.allow_empty) && !automated {
                return Err(Failure::Usage(
                    "--self-heal, --auto-prune and --allow-empty need --sync-policy automated"
                        .into(),
                ));
            }
            let mut policy = json!({});
            if automated {
                policy["automated"] = json!({
                    "prune": args.auto_prune,
                    "selfHeal": args.self_heal,
                    "allowEmpty": args.allow_empty,
                });
            }
            if !args.sync_option.is_empty() {
                policy["syncOptions"] = json!(args.sync_option);
            }
            if policy != json!({}) {
                spec["syncPolicy"] = policy;
            }
            serde_json::from_value(json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": {"name": name, "namespace": args.app_namespace},
                "spec": spec,
            }))
            .map_err(|e| Failure::Usage(format!("application {name:?}: {e}")))?
        }
    };
    let target = AppTarget {
        name: obj.metadata.name.clone(),
        app_namespace: obj
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| args.app_namespace.clone()),
    };
    // Argo's rule: creating over an existing Application with another spec needs --upsert.
    match client
        .get(RESOURCE, &target.name, &ns(&target.app_namespace))
        .await
    {
        Ok(existing) if !args.upsert && existing.spec() != obj.spec() => {
            return Err(Failure::Failed(format!(
                "existing application spec is different, use upsert flag to force update: {}",
                target.name
            )));
        }
        Ok(_) | Err(ClientError::Api(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let result = client.apply(&obj, false).await?;
    outln!(
        "application '{}' {}",
        target.name,
        match result["outcome"].as_str() {
            Some("unchanged") => "unchanged",
            Some("configured") => "updated",
            _ => "created",
        }
    );
    Ok(())
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
        |o| {
            format!(
                "{}/{}",
                o.metadata.namespace.as_deref().unwrap_or(namespace),
                o.metadata.name
            )
        },
        |items| {
            let mut rows = vec![
                [
                    "NAME",
                    "CLUSTER",
                    "NAMESPACE",
                    "PROJECT",
                    "STATUS",
                    "HEALTH",
                    "SYNCPOLICY",
                    "CONDITIONS",
                    "REPO",
                    "PATH",
                    "TARGET",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for o in items {
                let spec: ApplicationSpec = o.spec_as().unwrap_or_default();
                let s = status(o);
                let source = spec
                    .source
                    .clone()
                    .or_else(|| spec.sources.first().cloned())
                    .unwrap_or_default();
                let dest = spec.destination.clone().unwrap_or_default();
                let conditions: Vec<&str> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
                rows.push(vec![
                    format!(
                        "{}/{}",
                        o.metadata.namespace.as_deref().unwrap_or(namespace),
                        o.metadata.name
                    ),
                    dest.server.or(dest.name).unwrap_or_default(),
                    dest.namespace.unwrap_or_default(),
                    spec.project.clone().unwrap_or_else(|| "default".into()),
                    s.sync
                        .as_ref()
                        .map(|x| x.status.clone())
                        .unwrap_or_else(|| "Unknown".into()),
                    s.health
                        .as_ref()
                        .and_then(|h| h.status.clone())
                        .unwrap_or_else(|| "Unknown".into()),
                    sync_policy_text(&spec),
                    if conditions.is_empty() {
                        "<none>".into()
                    } else {
                        conditions.join(",")
                    },
                    source.repo_url.unwrap_or_default(),
                    source.path.unwrap_or_default(),
                    source.target_revision.unwrap_or_default(),
                ]);
            }
            out!("{}", output::align(&rows));
        },
    );
    Ok(())
}

fn sync_policy_text(spec: &ApplicationSpec) -> String {
    match spec.sync_policy.as_ref().and_then(|p| p.automated.as_ref()) {
        Some(a) if a.enabled != Some(false) => {
            if a.prune == Some(true) {
                "Auto-Prune".into()
            } else {
                "Auto".into()
            }
        }
        _ => "Manual".into(),
    }
}

fn short(rev: &str) -> &str {
    rev.get(..7).unwrap_or(rev)
}

/// `argocd app get`'s text: the header, the conditions, the operation, the resource tree.
fn get_text(o: &Object) -> String {
    let spec: ApplicationSpec = o.spec_as().unwrap_or_default();
    let s = status(o);
    let mut out = String::new();
    let field = |out: &mut String, name: &str, value: &str| {
        out.push_str(&format!(
            "{:<20}{}\n",
            format!("{name}:"),
            output::escape_terminal(value)
        ));
    };
    let namespace = o.metadata.namespace.as_deref().unwrap_or("argocd");
    field(
        &mut out,
        "Name",
        &format!("{namespace}/{}", o.metadata.name),
    );
    field(
        &mut out,
        "Project",
        spec.project.as_deref().unwrap_or("default"),
    );
    let dest = spec.destination.clone().unwrap_or_default();
    field(
        &mut out,
        "Server",
        dest.server
            .as_deref()
            .or(dest.name.as_deref())
            .unwrap_or(""),
    );
    field(
        &mut out,
        "Namespace",
        dest.namespace.as_deref().unwrap_or(""),
    );
    let sources: Vec<_> = spec.source.iter().chain(&spec.sources).collect();
    out.push_str("Source:\n");
    for source in &sources {
        field(&mut out, "- Repo", source.repo_url.as_deref().unwrap_or(""));
        field(
            &mut out,
            "  Target",
            source.target_revision.as_deref().unwrap_or(""),
        );
        field(&mut out, "  Path", source.path.as_deref().unwrap_or(""));
    }
    let policy = match sync_policy_text(&spec).as_str() {
        "Auto-Prune" => "Automated (Prune)".to_string(),
        "Auto" => "Automated".to_string(),
        other => other.to_string(),
    };
    field(&mut out, "Sync Policy", &policy);
    let target = sources
        .first()
        .and_then(|src| src.target_revision.as_deref())
        .filter(|t| !t.is_empty())
        .unwrap_or("HEAD");
    let sync = s.sync.clone().unwrap_or_default();
    let sync_status = if sync.status.is_empty() {
        "Unknown".to_string()
    } else {
        sync.status.clone()
    };
    let rev = sync.revision.as_deref().map(short).unwrap_or("");
    let preposition = if sync_status == "Synced" {
        "to"
    } else {
        "from"
    };
    field(
        &mut out,
        "Sync Status",
        &if rev.is_empty() {
            sync_status.clone()
        } else {
            format!("{sync_status} {preposition} {target} ({rev})")
        },
    );
    let health = s.health.clone().unwrap_or_default();
    field(
        &mut out,
        "Health Status",
        health.status.as_deref().unwrap_or("Unknown"),
    );
    if let Some(m) = health.message.as_deref().filter(|m| !m.is_empty()) {
        field(&mut out, "Health Message", m);
    }
    if !s.conditions.is_empty() {
        out.push('\n');
        let mut rows = vec![
            ["CONDITION", "MESSAGE", "LAST TRANSITION"]
                .map(String::from)
                .to_vec(),
        ];
        for c in &s.conditions {
            rows.push(vec![
                c.type_.clone(),
                output::escape_terminal(&c.message).into_owned(),
                c.last_transition_time.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&output::align(&rows));
    }
    let results: Vec<ResourceResult> = match &s.operation_state {
        Some(op) => {
            out.push('\n');
            field(&mut out, "Operation", "Sync");
            if let Some(r) = op
                .sync_result
                .as_ref()
                .map(|r| r.revision.as_str())
                .filter(|r| !r.is_empty())
            {
                field(&mut out, "Sync Revision", r);
            }
            field(&mut out, "Phase", &op.phase);
            if let Some(t) = &op.started_at {
                field(&mut out, "Start", t);
            }
            if let Some(t) = &op.finished_at {
                field(&mut out, "Finished", t);
            }
            if let Some(m) = &op.message {
                field(&mut out, "Message", m);
            }
            op.sync_result
                .as_ref()
                .map(|r| r.resources.clone())
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    out.push('\n');
    let mut rows = vec![
        [
            "GROUP",
            "KIND",
            "NAMESPACE",
            "NAME",
            "STATUS",
            "HEALTH",
            "HOOK",
            "MESSAGE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in &s.resources {
        let (group, kind, rns, name) = (
            r.group.clone().unwrap_or_default(),
            r.kind.clone().unwrap_or_default(),
            r.namespace.clone().unwrap_or_default(),
            r.name.clone().unwrap_or_default(),
        );
        let result = results
            .iter()
            .find(|x| x.group == group && x.kind == kind && x.namespace == rns && x.name == name);
        rows.push(vec![
            group,
            kind,
            rns,
            name,
            r.status.clone().unwrap_or_default(),
            r.health
                .as_ref()
                .and_then(|h| h.status.clone())
                .unwrap_or_default(),
            result.and_then(|x| x.hook_type.clone()).unwrap_or_default(),
            result
                .and_then(|x| x.message.as_deref())
                .map(|m| output::escape_terminal(m).into_owned())
                .unwrap_or_default(),
        ]);
    }
    // Hooks are not resources of the app, but the operation ran them: Argo lists them too.
    for x in results.iter().filter(|x| x.hook_type.is_some()) {
        rows.push(vec![
            x.group.clone(),
            x.kind.clone(),
            x.namespace.clone(),
            x.name.clone(),
            x.hook_phase.clone().unwrap_or_default(),
            String::new(),
            x.hook_type.clone().unwrap_or_default(),
            x.message
                .as_deref()
                .map(|m| output::escape_terminal(m).into_owned())
                .unwrap_or_default(),
        ]);
    }
    out.push_str(&output::align(&rows));
    out.trim_end().to_string()
}

fn history_text(o: &Object) -> String {
    let s = status(o);
    let mut rows = vec![["ID", "DATE", "REVISION"].map(String::from).to_vec()];
    for h in &s.history {
        let target = h
            .source
            .as_ref()
            .and_then(|src| src.target_revision.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "HEAD".into());
        rows.push(vec![
            h.id.to_string(),
            h.deployed_at.clone().unwrap_or_default(),
            format!(
                "{target} ({})",
                h.revision.as_deref().map(short).unwrap_or("")
            ),
        ]);
    }
    output::align(&rows).trim_end().to_string()
}

/// The Application's desired state, rendered here from a copy of its repository: a hosted
/// repository fetched from this server with the CLI's token, `file://` read in place, another
/// URL fetched as it is (public repositories only: the CLI holds no repository credentials).
/// At `revision`, else the revision the app last compared, else its target revision.
async fn desired_state(
    client: &Client,
    obj: &Object,
    revision: Option<&str>,
) -> Result<(String, Vec<Object>), Failure> {
    let spec: ApplicationSpec = obj.spec_as().unwrap_or_default();
    let Some(mut source) = spec
        .source
        .clone()
        .or_else(|| spec.sources.first().cloned())
    else {
        return Err(Failure::Failed(format!(
            "application {} has no source",
            obj.metadata.name
        )));
    };
    let compared = status(obj).sync.and_then(|s| s.revision);
    if let Some(rev) = revision.map(String::from).or(compared) {
        source.target_revision = Some(rev);
    }
    let namespace = spec
        .destination
        .as_ref()
        .and_then(|d| d.namespace.clone())
        .unwrap_or_else(|| "default".into());
    let url = source.repo_url.clone().unwrap_or_default();
    let copy = tempfile::tempdir()
        .map_err(|e| Failure::Failed(format!("cannot make a temporary directory: {e}")))?;
    let server = client.server().to_string();
    let token = client.token().map(String::from);
    let rendered = tokio::task::spawn_blocking(move || {
        let dir = if let Some(path) = url.strip_prefix("file://") {
            std::path::PathBuf::from(path)
        } else {
            let (fetch_url, creds) = match shipway_gitops::controller::hosted_name(&url) {
                // The app names the URL it was pushed to; this server serves it now.
                Some(name) => (
                    format!("{server}/git/{name}.git"),
                    Some(shipway_git::Credentials {
                        username: Some("shipway".into()),
                        password: token,
                        ssh_private_key: None,
                    }),
                ),
                None => (url.clone(), None),
            };
            let cache = copy.path().join("repo.git");
            shipway_git::fetch(&fetch_url, &cache, creds.as_ref())
                .map_err(|e| format!("fetching {}: {e}", shipway_git::redact(&fetch_url)))?;
            cache
        };
        shipway_gitops::controller::render_at(&dir, &source, &namespace).map_err(|(_, m)| m)
    })
    .await
    .map_err(|e| Failure::Failed(format!("rendering: {e}")))?
    .map_err(Failure::Failed)?;
    Ok((rendered.revision, rendered.desired))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(status: Value) -> Object {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "guestbook", "namespace": "argocd"},
            "spec": {
                "project": "default",
                "source": {"repoURL": "http://127.0.0.1:7070/git/apps.git", "path": "guestbook", "targetRevision": "HEAD"},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
                "syncPolicy": {"automated": {"prune": true}},
            },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn get_reads_as_argocd_app_get() {
        let o = app(json!({
            "sync": {"status": "Synced", "revision": "1ff8a67b5c0e34d1"},
            "health": {"status": "Healthy"},
            "resources": [
                {"version": "v1", "kind": "Service", "namespace": "default", "name": "guestbook-ui", "status": "Synced", "health": {"status": "Healthy"}},
                {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "default", "name": "guestbook-ui", "status": "Synced", "health": {"status": "Healthy"}},
            ],
            "operationState": {
                "phase": "Succeeded",
                "message": "successfully synced (all tasks run)",
                "startedAt": "2026-12-03T07:00:00Z",
                "finishedAt": "2026-12-03T07:00:02Z",
                "syncResult": {"revision": "1ff8a67b5c0e34d1", "resources": [
                    {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "default", "name": "guestbook-ui", "status": "Synced", "message": "deployment.apps/guestbook-ui created", "syncPhase": "Sync"},
                    {"group": "batch", "version": "v1", "kind": "Job", "namespace": "default", "name": "before", "status": "Synced", "message": "job completed", "hookType": "PreSync", "hookPhase": "Succeeded", "syncPhase": "PreSync"},
                ]},
            },
        }));
        let text = get_text(&o);
        for line in [
            "Name:               argocd/guestbook",
            "Sync Policy:        Automated (Prune)",
            "Sync Status:        Synced to HEAD (1ff8a67)",
            "Health Status:      Healthy",
            "Phase:              Succeeded",
            "Message:            successfully synced (all tasks run)",
        ] {
            assert!(text.contains(line), "{line:?} missing in:\n{text}");
        }
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip_while(|l| !l.starts_with("GROUP"))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            [
                "GROUP",
                "KIND",
                "NAMESPACE",
                "NAME",
                "STATUS",
                "HEALTH",
                "HOOK",
                "MESSAGE"
            ]
        );
        assert_eq!(
            rows[1],
            ["Service", "default", "guestbook-ui", "Synced", "Healthy"]
        );
        assert_eq!(
            rows[2],
            [
                "apps",
                "Deployment",
                "default",
                "guestbook-ui",
                "Synced",
                "Healthy",
                "deployment.apps/guestbook-ui",
                "created"
            ]
        );
        assert_eq!(
            rows[3],
            [
                "batch",
                "Job",
                "default",
                "before",
                "Succeeded",
                "PreSync",
                "job",
                "completed"
            ]
        );
    }

    #[test]
    fn history_and_resources() {
        let o = app(json!({"history": [
            {"id": 0, "revision": "aaaaaaaaaa", "deployedAt": "2026-12-03T07:00:00Z"},
            {"id": 1, "revision": "bbbbbbbbbb", "deployedAt": "2026-12-03T08:00:00Z", "source": {"targetRevision": "main"}},
        ]}));
        let text = history_text(&o);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[1].starts_with("0") && lines[1].ends_with("HEAD (aaaaaaa)"),
            "{text}"
        );
        assert!(lines[2].ends_with("main (bbbbbbb)"), "{text}");

        assert_eq!(
            parse_resource("apps:Deployment:web").unwrap(),
            json!({"group": "apps", "kind": "Deployment", "name": "web"})
        );
        assert_eq!(
            parse_resource(":Service:prod/web").unwrap(),
            json!({"group": "", "kind": "Service", "namespace": "prod", "name": "web"})
        );
        assert!(parse_resource("Deployment/web").is_err());
        assert!(parse_resource("apps::web").is_err());
    }
}
