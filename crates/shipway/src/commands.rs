//! What each command does: `up` starts the server in this process; the others are API clients.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use shipway_app::{Config, Platform, ProxyConfig};
use shipway_model::{Kinds, Object, load};
use shipway_server::AdminToken;

use crate::Failure;
use crate::cli::{
    ApiResourcesArgs, ApplyArgs, Cli, Command, DeleteArgs, DescribeArgs, EventsArgs, GetArgs,
    Global, OutputFormat, ProxyArgs, RepoCommand, TokenCommand, UpArgs, UserCommand,
};
use crate::client::{Client, ClientError};
use crate::output;

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let global = &cli.global;
    match cli.command {
        Command::Up(args) => up(global, args).await,
        Command::Apply(args) => apply(&client(global)?, args).await,
        Command::Get(args) => get(&client(global)?, args).await,
        Command::Describe(args) => describe(&client(global)?, args).await,
        Command::Delete(args) => delete(&client(global)?, args).await,
        Command::Events(args) => events(&client(global)?, args).await,
        Command::Run(args) => crate::run::run(global, args).await,
        Command::Render(args) => crate::render::run(args),
        Command::Version => version(global).await,
        Command::Image(cmd) => crate::image::run(&data_dir(global)?, cmd),
        Command::Logs(args) => logs(&client(global)?, args).await,
        Command::ApiResources(args) => api_resources(&client(global)?, args).await,
        Command::Token(cmd) => token(&client(global)?, cmd).await,
        Command::User(cmd) => user(&client(global)?, cmd).await,
        Command::Repo(cmd) => repo(&client(global)?, cmd).await,
        Command::App(cmd) => crate::app::run(&client(global)?, cmd).await,
        Command::Rollout(cmd) => crate::rollout::run(&client(global)?, cmd).await,
        Command::Pipeline(cmd) => crate::pipeline::run(&client(global)?, cmd).await,
        Command::Env(cmd) => crate::env::run(&client(global)?, cmd).await,
        Command::Secret(cmd) => crate::secret::secret(&client(global)?, cmd).await,
        Command::Var(cmd) => crate::secret::var(&client(global)?, cmd).await,
        Command::Promote(args) => crate::promote::run(&client(global)?, args).await,
    }
}

/// `--data`, else `$SHIPWAY_DATA` (clap reads both), else the XDG data directory.
pub(crate) fn data_dir(global: &Global) -> Result<PathBuf, Failure> {
    if let Some(dir) = &global.data {
        return Ok(dir.clone());
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("shipway"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/shipway")),
        None => Err(Failure::Usage(
            "no data directory: set --data or SHIPWAY_DATA (HOME is not set)".into(),
        )),
    }
}

fn client(global: &Global) -> Result<Client, Failure> {
    let token = match &global.token {
        Some(t) => t.clone(),
        // Without a token, use the admin token of the local data directory; say where it was
        // looked for before sending anything, rather than let the server answer 401.
        None => {
            let dir = data_dir(global)?;
            let path = dir.join(shipway_server::ADMIN_TOKEN_FILE);
            match std::fs::read_to_string(&path) {
                Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
                Ok(_) | Err(_) => {
                    return Err(Failure::Failed(format!(
                        "no token at {} (the first `shipway up` with this data directory writes it): start it, pass --token (or SHIPWAY_TOKEN), or --data with the data directory of the `shipway up` you talk to",
                        path.display()
                    )));
                }
            }
        }
    };
    Ok(Client::new(&server_url(&global.server), Some(token)))
}

/// `host:port` as kubectl takes it: without a scheme it is plain HTTP.
fn server_url(server: &str) -> String {
    if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    }
}

/// The proxy's options from `shipway up`'s flags; the rest keep the proxy's defaults.
fn proxy_config(args: &ProxyArgs) -> ProxyConfig {
    ProxyConfig {
        access_log: args.proxy_access_log,
        header_read_timeout: args.proxy_header_timeout.0,
        upstream_timeout: args.proxy_upstream_timeout.0,
        connect_timeout: args.proxy_connect_timeout.0,
        workers: args.proxy_workers,
        allow_public: args.proxy_allow_public,
        ..ProxyConfig::default()
    }
}

async fn up(global: &Global, args: UpArgs) -> Result<(), Failure> {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("SHIPWAY_LOG")
        .unwrap_or_else(|_| "info".into());
    if args.proxy.proxy_access_log {
        // The flag asks for every request, so its lines show even when SHIPWAY_LOG quiets the
        // rest (`warn`) or names the target (a later directive for the same target replaces it).
        filter = filter.add_directive(
            "shipway_proxy::access=info"
                .parse()
                .expect("a constant, valid directive"),
        );
    }
    // Colours only on a terminal: a log redirected to a file or a journal stays plain text.
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    raise_open_files_limit();
    let data = data_dir(global)?;
    let platform = Platform::start(Config {
        listen: args.listen,
        data_dir: data.clone(),
        database: args.database.clone(),
        proxy: proxy_config(&args.proxy),
        listener: Default::default(),
        max_parallel_jobs: args.max_parallel_jobs,
        runner_labels: args.runner_labels.clone(),
    })
    .await
    .map_err(|e| Failure::Failed(e.to_string()))?;
    let token_note = match platform.admin_token() {
        AdminToken::Created(path) => format!("admin token written to {} (new)", path.display()),
        AdminToken::Existing(path) => format!("admin token in {}", path.display()),
    };
    eprintln!(
        "Shipway {} listening on http://{}\n  data: {}\n  store: {}\n  {token_note}",
        env!("CARGO_PKG_VERSION"),
        platform.local_addr(),
        data.display(),
        platform.store().backend_name(),
    );
    // Store, cache, runtime, proxy and API until SIGINT/SIGTERM, or until one of them fails,
    // which stops the others and makes `shipway up` exit 1 with its error.
    platform
        .run(shutdown_signal())
        .await
        .map_err(|e| Failure::Failed(format!("shipway up stopped: {e}")))?;
    eprintln!("Shipway stopped");
    Ok(())
}

/// Raises the soft limit on open files to the hard one: API and proxy connections, pods' pipes
/// and logs and the store all take descriptors, and the usual soft default (1024) is far below
/// what the listeners allow.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let show = |n: Option<u64>| n.map_or("unlimited".to_string(), |n| n.to_string());
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(
            "open files limit raised from {} to {}",
            show(limit.current),
            show(limit.maximum)
        ),
        Err(e) => tracing::warn!(
            "cannot raise the open files limit from {} to {}: {e}",
            show(limit.current),
            show(limit.maximum)
        ),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutting down");
}

/// Reads every object from the given paths, gathering every error before giving up.
pub(crate) fn read_objects(paths: &[String]) -> Result<Vec<Object>, Failure> {
    let mut sources: Vec<(String, String)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for path in paths {
        if path == "-" {
            match read_limited(std::io::stdin().lock(), "<stdin>") {
                Ok(text) => sources.push(("<stdin>".into(), text)),
                Err(e) => errors.push(e),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = collect_files(Path::new(path), true, &mut files) {
            errors.push(format!("{path}: {e}"));
        }
        for file in files {
            let name = file.display().to_string();
            match std::fs::File::open(&file)
                .map_err(|e| format!("{name}: {e}"))
                .and_then(|f| read_limited(f, &name))
            {
                Ok(text) => sources.push((name, text)),
                Err(e) => errors.push(e),
            }
        }
    }
    let mut objects = Vec::new();
    for (name, text) in &sources {
        match load::load_str(name, text) {
            Ok(loaded) => objects.extend(loaded.into_iter().map(|l| l.object)),
            Err(errs) => errors.extend(errs.iter().map(ToString::to_string)),
        }
    }
    if !errors.is_empty() {
        return Err(Failure::Usage(format!(
            "error: invalid input, nothing was applied:\n  {}",
            errors.join("\n  ")
        )));
    }
    if objects.is_empty() {
        return Err(Failure::Usage(format!(
            "no objects found in {}",
            paths.join(", ")
        )));
    }
    Ok(objects)
}

/// The most one manifest file (or stdin) may hold. Larger than one document
/// (`load::MAX_DOCUMENT_BYTES`, which the loader checks per document) so that multi-document
/// bundles of CRDs still load, but bounded, so `-f /dev/zero` or a huge file is refused after
/// reading this much instead of filling memory.
const MAX_FILE_BYTES: u64 = 16 * load::MAX_DOCUMENT_BYTES as u64;

/// Reads at most `MAX_FILE_BYTES` (one more, to tell that there is more) as UTF-8 text.
fn read_limited(from: impl Read, name: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    from.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{name}: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{name}: larger than the limit of {MAX_FILE_BYTES} bytes ({} MiB) for one file; split it into smaller files",
            MAX_FILE_BYTES / (1024 * 1024)
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{name}: stream did not contain valid UTF-8"))
}

/// A named file is read whatever its extension; inside directories only manifests are. A link to
/// a directory found inside is not followed, as kubectl does not (so nothing outside the named
/// tree is read and a link cycle cannot loop); a link to a file is read, as kubectl reads it.
fn collect_files(path: &Path, named: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = if named {
        std::fs::metadata(path)?
    } else {
        std::fs::symlink_metadata(path)?
    };
    if meta.is_symlink() {
        if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            eprintln!(
                "warning: {}: a link to a directory is not followed",
                path.display()
            );
            return Ok(());
        }
    } else if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            collect_files(&entry, false, out)?;
        }
        return Ok(());
    }
    if named
        || matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        )
    {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Applies `-n` the way kubectl does: a default for objects without a namespace, a conflict for
/// objects that name another one.
fn set_namespace(objects: &mut [Object], namespace: Option<&str>) -> Result<(), Failure> {
    let Some(ns) = namespace else { return Ok(()) };
    for o in objects {
        if !Kinds::is_namespaced(o.group(), &o.kind) {
            continue;
        }
        match &o.metadata.namespace {
            Some(theirs) if theirs != ns => {
                return Err(Failure::Usage(format!(
                    "the namespace of {} is {theirs:?}, which does not match --namespace {ns:?}",
                    o.key()
                )));
            }
            _ => o.metadata.namespace = Some(ns.to_string()),
        }
    }
    Ok(())
}

async fn apply(client: &Client, args: ApplyArgs) -> Result<(), Failure> {
    let mut objects = match &args.kustomize {
        Some(dir) => crate::render::kustomization_objects(dir)?,
        None => read_objects(&args.files)?,
    };
    set_namespace(&mut objects, args.namespace.as_deref())?;
    let mut failed = Vec::new();
    for object in &objects {
        match client.apply(object, args.dry_run).await {
            Ok(result) => {
                let stored: Object = serde_json::from_value(result["object"].clone())
                    .unwrap_or_else(|_| object.clone());
                let outcome = result["outcome"].as_str().unwrap_or("applied");
                let dry = if args.dry_run { " (dry run)" } else { "" };
                outln!(
                    "{}/{} {outcome}{dry}",
                    output::resource_name(&stored),
                    stored.metadata.name
                );
            }
            Err(e @ ClientError::Unreachable { .. }) => return Err(e.into()),
            Err(e) => {
                eprintln!("{e}");
                failed.push(object.key().to_string());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "{} of {} objects were not applied: {}",
            failed.len(),
            objects.len(),
            failed.join(", ")
        )))
    }
}

/// `deploy/web` or `deploy web`: the resource type and the names.
fn split_resource(resource: &str, names: &[String]) -> Result<(String, Vec<String>), Failure> {
    match resource.split_once('/') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() && !name.contains('/') => {
            if !names.is_empty() {
                return Err(Failure::Usage(format!(
                    "there is no need to name objects twice: use either {resource} or {kind} {}",
                    names.join(" ")
                )));
            }
            Ok((kind.to_string(), vec![name.to_string()]))
        }
        Some(_) => Err(Failure::Usage(format!(
            "{resource:?} is not TYPE or TYPE/NAME"
        ))),
        None => Ok((resource.to_string(), names.to_vec())),
    }
}

fn namespace_query(namespace: Option<&str>, all: bool) -> Vec<(&'static str, String)> {
    match (all, namespace) {
        (true, _) => vec![],
        (false, Some(ns)) => vec![("namespace", ns.to_string())],
        (false, None) => vec![("namespace", "default".to_string())],
    }
}

/// `api-resources`: the built-in kinds, then those of the stored CRDs, as kubectl prints them.
async fn token(client: &Client, command: TokenCommand) -> Result<(), Failure> {
    match command {
        TokenCommand::Create {
            name,
            user,
            role,
            expires,
        } => {
            let mut request = serde_json::Map::new();
            for (field, value) in [
                ("name", name),
                ("user", user),
                ("role", role),
                ("expires", expires),
            ] {
                if let Some(v) = value {
                    request.insert(field.into(), Value::String(v));
                }
            }
            let issued = client.create_token(&Value::Object(request)).await?;
            let field = |f: &str| issued[f].as_str().unwrap_or_default().to_string();
            outln!("{}", field("token"));
            let expiry = match issued["expires"].as_str() {
                Some(at) => format!("expires {at}"),
                None => "no expiry".into(),
            };
            eprintln!(
                "token {:?} of user {:?} ({}, {expiry}) created: this is the only time its secret is shown",
                field("name"),
                field("user"),
                field("role"),
            );
        }
        TokenCommand::List { output: format } => {
            let items = client.tokens().await?;
            print_table(&items, format, &["NAME", "USER", "ROLE", "EXPIRES"], |t| {
                let expires = match (t["expires"].as_str(), t["expired"].as_bool()) {
                    (Some(at), Some(true)) => format!("{at} (expired)"),
                    (Some(at), _) => at.to_string(),
                    (None, _) => "never".into(),
                };
                ["name", "user", "role"]
                    .map(|f| t[f].as_str().unwrap_or_default().to_string())
                    .into_iter()
                    .chain([expires])
                    .collect()
            });
        }
        TokenCommand::Delete { names } => {
            for name in names {
                client.delete_token(&name).await?;
                outln!("token {name:?} deleted");
            }
        }
    }
    Ok(())
}

/// `user`: identities and their roles.
async fn user(client: &Client, command: UserCommand) -> Result<(), Failure> {
    match command {
        UserCommand::Add { name, role } => {
            client.add_user(&name, &role).await?;
            outln!("user {name:?} added with role {role}");
        }
        UserCommand::List { output: format } => {
            let items = client.users().await?;
            print_table(&items, format, &["NAME", "ROLE", "TOKENS"], |u| {
                vec![
                    u["name"].as_str().unwrap_or_default().to_string(),
                    u["role"].as_str().unwrap_or_default().to_string(),
                    u["tokens"].as_u64().unwrap_or_default().to_string(),
                ]
            });
        }
        UserCommand::Delete { names } => {
            for name in names {
                let answer = client.delete_user(&name).await?;
                let revoked = answer["tokensRevoked"].as_u64().unwrap_or_default();
                outln!("user {name:?} deleted, {revoked} token(s) revoked");
            }
        }
    }
    Ok(())
}

/// A list as JSON, YAML, names, or a table of `header` and `row` per item.
fn print_table(
    items: &[Value],
    format: Option<OutputFormat>,
    header: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) {
    match format {
        Some(OutputFormat::Json) => outln!(
            "{}",
            serde_json::to_string_pretty(items).unwrap_or_default()
        ),
        Some(OutputFormat::Yaml) => out!("{}", output::to_yaml(&Value::Array(items.to_vec()))),
        Some(OutputFormat::Name) => items
            .iter()
            .for_each(|t| outln!("{}", t["name"].as_str().unwrap_or_default())),
        _ => {
            let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
            rows.extend(items.iter().map(row));
            out!("{}", output::align(&rows));
        }
    }
}

/// `repo`: Repository objects through the object API.
async fn repo(client: &Client, command: RepoCommand) -> Result<(), Failure> {
    let ns_query = |ns: &Option<String>| -> Vec<(&'static str, String)> {
        vec![("namespace", ns.clone().unwrap_or_else(|| "default".into()))]
    };
    let object = |name: &str, ns: &Option<String>, spec: Value| -> Result<Object, Failure> {
        let mut metadata = serde_json::json!({"name": name});
        if let Some(ns) = ns {
            metadata["namespace"] = Value::String(ns.clone());
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "shipway.dev/v1alpha1",
            "kind": "Repository",
            "metadata": metadata,
            "spec": spec,
        }))
        .map_err(|e| Failure::Usage(format!("repository {name:?}: {e}")))
    };
    match command {
        RepoCommand::Create { name, namespace } => {
            let obj = object(&name, &namespace, serde_json::json!({"hosted": true}))?;
            client.apply(&obj, false).await?;
            // The server makes the bare repository a moment later; wait for it, so a push
            // right after this command finds it.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut url = None;
            while url.is_none() && std::time::Instant::now() < deadline {
                let got = client
                    .get("repositories", &name, &ns_query(&namespace))
                    .await?;
                let status: shipway_model::types::RepositoryStatus =
                    got.status_as().unwrap_or_default();
                url = status.url;
                if url.is_none() {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            let Some(url) = url else {
                return Err(Failure::Failed(format!(
                    "repository {name:?} created, but the server has not made it ready within 10s: see `shipway describe repository {name}`"
                )));
            };
            outln!("{url}");
            eprintln!("repository {name:?} created: push with a deployer token as the password");
        }
        RepoCommand::Add {
            name,
            url,
            secret,
            namespace,
        } => {
            let mut spec = serde_json::json!({"url": url});
            if let Some(secret) = secret {
                spec["secretRef"] = serde_json::json!({"name": secret});
            }
            client
                .apply(&object(&name, &namespace, spec)?, false)
                .await?;
            outln!("repository {name:?} added");
        }
        RepoCommand::List {
            output: format,
            namespace,
        } => {
            let items = client.list("repositories", &ns_query(&namespace)).await?;
            output::print_list(
                &items,
                format,
                |o| format!("repository/{}", o.metadata.name),
                |items| {
                    let mut rows = vec![["NAME", "TYPE", "URL"].map(String::from).to_vec()];
                    for o in items {
                        let spec: shipway_model::types::RepositorySpec =
                            o.spec_as().unwrap_or_default();
                        let status: shipway_model::types::RepositoryStatus =
                            o.status_as().unwrap_or_default();
                        let (kind, url) = if spec.is_hosted() {
                            ("hosted", status.url.unwrap_or_default())
                        } else {
                            ("external", spec.url.unwrap_or_default())
                        };
                        rows.push(vec![o.metadata.name.clone(), kind.into(), url]);
                    }
                    out!("{}", output::align(&rows));
                },
            );
        }
        RepoCommand::Get {
            name,
            output: format,
            namespace,
        } => {
            let obj = client
                .get("repositories", &name, &ns_query(&namespace))
                .await?;
            let value = serde_json::to_value(&obj).unwrap_or_default();
            match format {
                Some(OutputFormat::Json) => outln!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                ),
                Some(OutputFormat::Name) => outln!("repository/{}", obj.metadata.name),
                _ => out!("{}", output::to_yaml(&value)),
            }
        }
        RepoCommand::Delete { name, namespace } => {
            client
                .delete("repositories", &name, &ns_query(&namespace))
                .await?;
            outln!("repository {name:?} deleted");
        }
    }
    Ok(())
}

async fn api_resources(client: &Client, args: ApiResourcesArgs) -> Result<(), Failure> {
    struct Row {
        name: String,
        short: String,
        api_version: String,
        namespaced: bool,
        kind: String,
        group: String,
    }
    let mut rows: Vec<Row> = shipway_model::Kinds::all()
        .iter()
        .map(|k| Row {
            name: k.plural.to_string(),
            short: k.short_names.join(","),
            api_version: k.api_version(),
            namespaced: k.namespaced,
            kind: k.kind.to_string(),
            group: k.group.to_string(),
        })
        .collect();
    for crd in client.list("customresourcedefinitions", &[]).await? {
        let Ok(kind) = shipway_model::crd::custom_kind(&crd) else {
            continue;
        };
        // A CRD for a kind Shipway has built in (Argo's) defines nothing new.
        if rows
            .iter()
            .any(|r| r.group == kind.group && r.kind == kind.kind)
        {
            continue;
        }
        rows.push(Row {
            name: kind.plural.clone(),
            short: kind.short_names.join(","),
            api_version: format!(
                "{}/{}",
                kind.group,
                kind.served.first().map(String::as_str).unwrap_or("v1")
            ),
            namespaced: kind.namespaced,
            kind: kind.kind.clone(),
            group: kind.group.clone(),
        });
    }
    rows.retain(|r| args.namespaced.is_none_or(|n| n == r.namespaced));
    // The core group first, then by group and name, as kubectl lists them.
    rows.sort_by(|a, b| {
        (!a.group.is_empty(), &a.group, &a.name).cmp(&(!b.group.is_empty(), &b.group, &b.name))
    });
    if args.output.as_deref() == Some("name") {
        for r in &rows {
            if r.group.is_empty() {
                outln!("{}", r.name);
            } else {
                outln!("{}.{}", r.name, r.group);
            }
        }
        return Ok(());
    }
    let mut table = vec![
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
            .map(String::from)
            .to_vec(),
    ];
    for r in rows {
        table.push(vec![
            r.name,
            r.short,
            r.api_version,
            r.namespaced.to_string(),
            r.kind,
        ]);
    }
    out!("{}", output::align(&table));
    Ok(())
}

/// kubectl's `all`: the workload kinds and Services.
const ALL: &[&str] = &[
    "pods",
    "services",
    "daemonsets",
    "deployments",
    "replicasets",
    "statefulsets",
    "jobs",
    "cronjobs",
];

/// The resource types a `get` names: `deploy,svc` is two, `all` is [`ALL`].
fn resource_types(resource: &str) -> Result<Vec<String>, Failure> {
    let mut types = Vec::new();
    for t in resource.split(',') {
        match t.trim() {
            "" => {
                return Err(Failure::Usage(format!(
                    "{resource:?}: an empty resource type between commas"
                )));
            }
            "all" => types.extend(ALL.iter().map(|t| t.to_string())),
            t => types.push(t.to_string()),
        }
    }
    Ok(types)
}

fn table_options(args: &GetArgs) -> output::TableOptions {
    output::TableOptions {
        all_namespaces: args.scope.all_namespaces,
        wide: args.output == Some(OutputFormat::Wide),
        label_columns: args.label_columns.clone(),
        show_labels: args.show_labels,
    }
}

async fn get(client: &Client, args: GetArgs) -> Result<(), Failure> {
    let (resource, names) = split_resource(&args.resource, &args.names)?;
    let types = resource_types(&resource)?;
    let mut query = namespace_query(args.scope.namespace.as_deref(), args.scope.all_namespaces);
    if let Some(sel) = &args.selector {
        query.push(("labelSelector", sel.clone()));
    }
    if args.watch {
        let [resource] = &types[..] else {
            return Err(Failure::Usage(
                "watch is only supported on individual resources and resource collections, but several resource types were named".into(),
            ));
        };
        return watch(client, resource, &names, query, &args).await;
    }
    let single = names.len() == 1 && types.len() == 1;
    let mut objects = Vec::new();
    for t in &types {
        objects.extend(fetch(client, t, &names, &query).await?);
    }
    if objects.is_empty() && !matches!(args.output, Some(OutputFormat::Json | OutputFormat::Yaml)) {
        match (args.scope.all_namespaces, &args.scope.namespace) {
            (true, _) => eprintln!("No resources found"),
            (false, ns) => eprintln!(
                "No resources found in {} namespace.",
                ns.as_deref().unwrap_or("default")
            ),
        }
        return Ok(());
    }
    let as_value = || {
        if single {
            serde_json::to_value(&objects[0]).unwrap_or(Value::Null)
        } else {
            json!({"apiVersion": "v1", "kind": "List", "items": objects})
        }
    };
    match args.output {
        Some(OutputFormat::Json) => outln!(
            "{}",
            serde_json::to_string_pretty(&as_value()).unwrap_or_default()
        ),
        Some(OutputFormat::Yaml) => out!("{}", output::to_yaml(&as_value())),
        Some(OutputFormat::Name) => {
            for o in &objects {
                outln!("{}/{}", output::resource_name(o), o.metadata.name);
            }
        }
        Some(OutputFormat::Wide) | None => {
            out!("{}", output::table(&objects, &table_options(&args)))
        }
    }
    Ok(())
}

/// `get -w`: the current objects, then every change, one line (or document) per event.
async fn watch(
    client: &Client,
    resource: &str,
    names: &[String],
    query: Vec<(&'static str, String)>,
    args: &GetArgs,
) -> Result<(), Failure> {
    use std::io::Write;
    let mut table = output::WatchTable::new(table_options(args));
    let mut failure = None;
    client
        .watch(resource, &query, |event| {
            if event["type"] == "ERROR" {
                failure = Some(
                    event["object"]["message"]
                        .as_str()
                        .unwrap_or("watch failed")
                        .to_string(),
                );
                return false;
            }
            let Ok(object) = serde_json::from_value::<Object>(event["object"].clone()) else {
                return true;
            };
            if !names.is_empty() && !names.contains(&object.metadata.name) {
                return true;
            }
            match args.output {
                Some(OutputFormat::Json) => {
                    outln!("{}", serde_json::to_string(&event).unwrap_or_default())
                }
                Some(OutputFormat::Yaml) => out!("---\n{}", output::to_yaml(&event)),
                Some(OutputFormat::Name) => outln!(
                    "{}/{}",
                    output::resource_name(&object),
                    object.metadata.name
                ),
                _ => out!("{}", table.lines(&object)),
            }
            let _ = std::io::stdout().flush();
            true
        })
        .await?;
    match failure {
        Some(message) => Err(Failure::Failed(format!("watch ended: {message}"))),
        None => Err(Failure::Failed(
            "the server closed the watch (it is shutting down?)".into(),
        )),
    }
}

/// The named objects, or every object of the type when no name is given.
async fn fetch(
    client: &Client,
    resource: &str,
    names: &[String],
    query: &[(&str, String)],
) -> Result<Vec<Object>, Failure> {
    if names.is_empty() {
        return Ok(client.list(resource, query).await?);
    }
    let mut found = Vec::new();
    for name in names {
        found.push(client.get(resource, name, query).await?);
    }
    Ok(found)
}

async fn describe(client: &Client, args: DescribeArgs) -> Result<(), Failure> {
    let (resource, names) = split_resource(&args.resource, &args.names)?;
    let query = namespace_query(args.namespace.as_deref(), false);
    let objects = fetch(client, &resource, &names, &query).await?;
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            outln!();
        }
        let mut events_query = vec![
            ("name", o.metadata.name.clone()),
            ("limit", "20".to_string()),
        ];
        if let Some(ns) = &o.metadata.namespace {
            events_query.push(("namespace", ns.clone()));
        }
        let kind_ref = if o.group().is_empty() {
            o.kind.clone()
        } else {
            format!("{}.{}", o.kind, o.group())
        };
        let events = client.events(Some(&kind_ref), &events_query).await?;
        let mut text = describe_text(o, &events);
        if o.group().is_empty() && o.kind == "Service" {
            // The proxy routes this Service by the TrafficPolicy of the same name, if any.
            let ns = namespace_query(o.metadata.namespace.as_deref(), false);
            let policy = match client.get("trafficpolicies", &o.metadata.name, &ns).await {
                Ok(p) => Some(p),
                Err(ClientError::Api(s)) if s.code == 404 => None,
                Err(e) => return Err(e.into()),
            };
            let at = text.find("\nEvents:").map_or(text.len(), |i| i + 1);
            text.insert_str(at, &traffic_policy_text(policy.as_ref()));
        }
        out!("{text}");
    }
    Ok(())
}

/// The `Traffic Policy:` section of `describe svc`.
fn traffic_policy_text(policy: Option<&Object>) -> String {
    let Some(spec) = policy.and_then(|p| p.body.get("spec")) else {
        return "Traffic Policy:  <none> (round robin over ready endpoints)\n".into();
    };
    let mut out = String::from("Traffic Policy:\n");
    for line in output::to_yaml(spec).lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    // What the proxy found when it last looked (its status), and its warning if any.
    let status = policy.and_then(|p| p.body.get("status"));
    let ready: Vec<String> = status
        .and_then(|s| s["backends"].as_array())
        .into_iter()
        .flatten()
        .map(|b| {
            format!(
                "{} {}",
                b["name"].as_str().unwrap_or_default(),
                b["readyEndpoints"].as_i64().unwrap_or(0)
            )
        })
        .collect();
    if !ready.is_empty() {
        out.push_str(&format!("  Ready endpoints:  {}\n", ready.join(", ")));
    }
    let warning = status
        .and_then(|s| s["conditions"].as_array())
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "BackendsReady" && c["status"] == "False");
    if let Some(c) = warning {
        out.push_str(&format!(
            "  Warning:  {}: {}\n",
            c["reason"].as_str().unwrap_or_default(),
            c["message"].as_str().unwrap_or_default()
        ));
    }
    out
}

/// A Secret's data as `kubectl describe` shows it: each key with its decoded size, never a value.
fn secret_data_text(data: &Value) -> String {
    use base64::Engine as _;
    let mut out = String::from("Data\n====\n");
    let Some(map) = data.as_object() else {
        return out;
    };
    let width = map.keys().map(|k| k.len()).max().unwrap_or(0) + 3;
    let mut keys: Vec<_> = map.iter().collect();
    keys.sort_by_key(|(k, _)| *k);
    for (key, value) in keys {
        let size = value
            .as_str()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .map_or_else(
                || "<not base64>".to_string(),
                |b| format!("{} bytes", b.len()),
            );
        out.push_str(&format!("{:<width$}{size}\n", format!("{key}:")));
    }
    out
}

fn describe_text(o: &Object, events: &[Value]) -> String {
    let m = &o.metadata;
    let pairs = |map: &std::collections::BTreeMap<String, String>| {
        if map.is_empty() {
            "<none>".to_string()
        } else {
            map.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n              ")
        }
    };
    let mut rows = vec![
        vec!["Name:".to_string(), m.name.clone()],
        vec!["Namespace:".into(), m.namespace.clone().unwrap_or_default()],
        vec!["API Version:".into(), o.api_version.clone()],
        vec!["Kind:".into(), o.kind.clone()],
        vec!["Labels:".into(), pairs(&m.labels)],
        vec!["Annotations:".into(), pairs(&m.annotations)],
        vec!["UID:".into(), m.uid.clone().unwrap_or_default()],
        vec![
            "Resource Version:".into(),
            m.resource_version.clone().unwrap_or_default(),
        ],
        vec!["Generation:".into(), m.generation.to_string()],
        vec![
            "Created:".into(),
            m.creation_timestamp.clone().unwrap_or_default(),
        ],
    ];
    if m.namespace.is_none() {
        rows.remove(1);
    }
    if let Some(t) = &m.deletion_timestamp {
        rows.push(vec!["Deletion Requested:".into(), t.clone()]);
    }
    if !m.finalizers.is_empty() {
        rows.push(vec!["Finalizers:".into(), m.finalizers.join(", ")]);
    }
    for r in &m.owner_references {
        rows.push(vec![
            "Controlled By:".into(),
            format!("{}/{}", r.kind, r.name),
        ]);
    }
    // Values line up two columns after the longest label, as kubectl's tabwriter does.
    let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for row in &rows {
        // Each value escaped, the line breaks between pairs kept.
        let value = row[1]
            .split("\n              ")
            .map(output::escape_terminal)
            .collect::<Vec<_>>()
            .join(&format!("\n{}", " ".repeat(width)));
        out.push_str(&format!("{:<width$}{value}\n", row[0]));
    }
    let secret = o.group().is_empty() && o.kind == "Secret";
    for (field, value) in &o.body {
        if secret && field == "data" {
            out.push_str(&secret_data_text(value));
            continue;
        }
        out.push_str(&output::escape_terminal(&capitalize(field)));
        out.push_str(":\n");
        for line in output::to_yaml(value).lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("Events:");
    if events.is_empty() {
        out.push_str(" <none>\n");
        return out;
    }
    out.push('\n');
    let mut table = vec![
        ["Age", "Actor", "Action", "Message"]
            .map(String::from)
            .to_vec(),
    ];
    for e in events {
        table.push(vec![
            event_age(e),
            e["actor"].as_str().unwrap_or("").into(),
            e["action"].as_str().unwrap_or("").into(),
            e["message"].as_str().unwrap_or("").into(),
        ]);
    }
    for line in output::align(&table).lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn event_age(e: &Value) -> String {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    e["time"]
        .as_str()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .map(|t| output::human_duration((OffsetDateTime::now_utc() - t).whole_seconds()))
        .unwrap_or_else(|| "<unknown>".into())
}

/// What to delete: resource type, name, and the namespace query.
type DeleteTarget = (String, String, Vec<(&'static str, String)>);

async fn delete(client: &Client, args: DeleteArgs) -> Result<(), Failure> {
    let targets: Vec<DeleteTarget> = if !args.files.is_empty() {
        let mut objects = read_objects(&args.files)?;
        set_namespace(&mut objects, args.namespace.as_deref())?;
        objects
            .iter()
            .map(|o| {
                let kind = if o.group().is_empty() {
                    o.kind.clone()
                } else {
                    format!("{}.{}", o.kind, o.group())
                };
                (
                    kind,
                    o.metadata.name.clone(),
                    namespace_query(o.metadata.namespace.as_deref(), false),
                )
            })
            .collect()
    } else {
        let Some(resource) = &args.resource else {
            return Err(Failure::Usage(
                "name what to delete: TYPE NAME..., TYPE/NAME, or -f FILE".into(),
            ));
        };
        let (resource, names) = split_resource(resource, &args.names)?;
        if names.is_empty() {
            return Err(Failure::Usage(format!(
                "name the {resource} to delete: shipway delete {resource} NAME"
            )));
        }
        let query = namespace_query(args.namespace.as_deref(), false);
        names
            .into_iter()
            .map(|n| (resource.clone(), n, query.clone()))
            .collect()
    };
    let mut failed = 0;
    for (resource, name, query) in &targets {
        match client.delete(resource, name, query).await {
            Ok(result) => {
                let object: Option<Object> = serde_json::from_value(result["object"].clone()).ok();
                let kind = object
                    .as_ref()
                    .map(output::resource_name)
                    .unwrap_or_else(|| resource.clone());
                match result["outcome"].as_str() {
                    Some("terminating") => {
                        let finalizers = object
                            .map(|o| o.metadata.finalizers.join(", "))
                            .unwrap_or_default();
                        outln!(
                            "{kind} \"{name}\" deletion requested; waiting for finalizers: {finalizers}"
                        );
                    }
                    _ => outln!("{kind} \"{name}\" deleted"),
                }
            }
            Err(ClientError::Api(s)) if s.code == 404 && args.ignore_not_found => {}
            Err(e @ ClientError::Unreachable { .. }) => return Err(e.into()),
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(Failure::Failed(format!(
            "{failed} of {} deletions failed",
            targets.len()
        )));
    }
    Ok(())
}

async fn events(client: &Client, args: EventsArgs) -> Result<(), Failure> {
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(ns) = &args.namespace {
        query.push(("namespace", ns.clone()));
    }
    let resource = match args.for_object.as_deref() {
        Some(target) => {
            let (resource, names) = split_resource(target, &[])?;
            if let Some(name) = names.first() {
                query.push(("name", name.clone()));
            }
            Some(resource)
        }
        None => None,
    };
    let events = client.events(resource.as_deref(), &query).await?;
    match args.output {
        Some(OutputFormat::Json) => outln!(
            "{}",
            serde_json::to_string_pretty(&events).unwrap_or_default()
        ),
        Some(OutputFormat::Yaml) => out!("{}", output::to_yaml(&Value::Array(events))),
        _ if events.is_empty() => eprintln!("No events found"),
        _ => {
            let mut rows = vec![
                ["AGE", "ACTOR", "ACTION", "OBJECT", "VERSION", "MESSAGE"]
                    .map(String::from)
                    .to_vec(),
            ];
            for e in &events {
                let key = &e["key"];
                let kind = key["kind"].as_str().unwrap_or("");
                let object = match key["namespace"].as_str() {
                    Some(ns) if !ns.is_empty() => {
                        format!("{kind}/{ns}/{}", key["name"].as_str().unwrap_or(""))
                    }
                    _ => format!("{kind}/{}", key["name"].as_str().unwrap_or("")),
                };
                rows.push(vec![
                    event_age(e),
                    e["actor"].as_str().unwrap_or("").into(),
                    e["action"].as_str().unwrap_or("").into(),
                    object,
                    e["resourceVersion"].to_string(),
                    e["message"].as_str().unwrap_or("").into(),
                ]);
            }
            out!("{}", output::align(&rows));
        }
    }
    Ok(())
}

async fn version(global: &Global) -> Result<(), Failure> {
    outln!("Client Version: {}", env!("CARGO_PKG_VERSION"));
    // As kubectl: the client's version always, then the server's or the reason it is not
    // there, which is a failure (exit 1).
    let client = client(global)?;
    let v = client.version().await?;
    outln!("Server Version: {v}");
    Ok(())
}

/// The pods of a workload, the one `logs TYPE/NAME` reads first: running before others, newest
/// first. Pods a Job or ReplicaSet controls are found by owner; a Deployment's (whose pods its
/// ReplicaSets own) and others' by the workload's label selector.
async fn workload_pods(
    client: &Client,
    owner: &Object,
    ns_query: &[(&'static str, String)],
) -> Result<Vec<Object>, Failure> {
    let name = format!("{}/{}", output::resource_name(owner), owner.metadata.name);
    let owned_directly = matches!(
        (owner.group(), owner.kind.as_str()),
        ("batch", "Job") | ("apps", "ReplicaSet")
    );
    let mut pods = if owned_directly {
        let uid = owner.metadata.uid.clone().unwrap_or_default();
        let mut pods = client.list("pods", ns_query).await?;
        pods.retain(|p| {
            p.metadata
                .owner_references
                .iter()
                .any(|r| r.controller == Some(true) && r.uid == uid)
        });
        pods
    } else {
        let labels = owner
            .spec()
            .and_then(|s| {
                s.pointer("/selector/matchLabels")
                    .or_else(|| s.get("selector"))
            })
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        if labels.is_empty() {
            return Err(Failure::Usage(format!(
                "{name} has no label selector to find its pods"
            )));
        }
        let mut query = ns_query.to_vec();
        query.push(("labelSelector", labels));
        client.list("pods", &query).await?
    };
    pods.sort_by_key(|p| {
        let running = p
            .status()
            .and_then(|s| s.get("phase"))
            .and_then(Value::as_str)
            == Some("Running");
        (
            !running,
            std::cmp::Reverse(p.metadata.creation_timestamp.clone()),
        )
    });
    Ok(pods)
}

async fn logs(client: &Client, args: crate::cli::LogsArgs) -> Result<(), Failure> {
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let ns_query = vec![("namespace", namespace.clone())];
    let pod = match args.target.split_once('/') {
        None => args.target.clone(),
        Some(("pod" | "pods" | "po", name)) => name.to_string(),
        Some((resource, name)) => {
            let owner = client.get(resource, name, &ns_query).await?;
            // As kubectl: a workload just applied has no running pod yet, so wait a while for
            // one (running, or finished: a Job's logs are read after it ends).
            let deadline = std::time::Instant::now() + args.pod_running_timeout.0;
            let pods = loop {
                let pods = workload_pods(client, &owner, &ns_query).await?;
                let started = |p: &Object| {
                    p.status()
                        .and_then(|s| s.get("phase"))
                        .and_then(Value::as_str)
                        .is_some_and(|phase| phase != "Pending")
                };
                if pods.iter().any(started) || std::time::Instant::now() >= deadline {
                    break pods;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            };
            let Some(chosen) = pods.first() else {
                return Err(Failure::Failed(format!("{resource}/{name} has no pods")));
            };
            if pods.len() > 1 {
                // As kubectl says it, on stderr, so the logs themselves stay clean.
                eprintln!(
                    "Found {} pods, using pod/{}",
                    pods.len(),
                    chosen.metadata.name
                );
            }
            chosen.metadata.name.clone()
        }
    };
    let mut query = ns_query;
    if let Some(c) = &args.container {
        query.push(("container", c.clone()));
    }
    if let Some(n) = args.tail {
        query.push(("tail", n.to_string()));
    }
    if args.follow {
        query.push(("follow", "true".into()));
    }
    if args.previous {
        query.push(("previous", "true".into()));
    }
    client
        .logs(&namespace, &pod, &query, |chunk| {
            use std::io::Write;
            let mut out = std::io::stdout();
            out.write_all(chunk).is_ok() && out.flush().is_ok()
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_shows_control_characters_instead_of_sending_them() {
        let o: Object = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default",
                "annotations": {"note": "\u{1b}[31mred", "other": "two\nlines"}},
            "data": {"k": "\u{1b}]0;title\u{7}"},
        }))
        .unwrap();
        let events = [
            serde_json::json!({"actor": "user:admin", "action": "update",
            "message": "\u{1b}[2J\rcleared", "time": "2026-01-01T00:00:00Z"}),
        ];
        let text = describe_text(&o, &events);
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
        assert!(text.contains("note=^[[31mred\n"), "{text}");
        assert!(text.contains("other=two^Jlines\n"), "{text}");
        assert!(text.contains(r#"k: "\e]0;title\a""#), "{text}");
        assert!(text.contains("^[[2J\\rcleared"), "{text}");
    }
}
