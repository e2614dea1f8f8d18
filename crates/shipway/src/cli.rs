//! Every command and flag, defined once; `--help` comes from here.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "shipway",
    version,
    about = "From git push to a verified production release, in one binary",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses argv. The commands that never talk to a server (`run`, `render`, `image`) get
    /// hidden copies of the global `--server` and `--token`, so their `--help` shows only what
    /// they use while `shipway --server X run` still parses (clap propagates a global flag only
    /// to commands that do not define it themselves).
    pub fn parse_args() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let mut command = Cli::command();
        let hidden: Vec<clap::Arg> = command
            .get_arguments()
            .filter(|a| matches!(a.get_id().as_str(), "server" | "token"))
            .map(|a| a.clone().hide(true))
            .collect();
        for local in ["run", "render", "image"] {
            command = command.mut_subcommand(local, |sub| sub.args(hidden.clone()));
        }
        let matches = command.get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

#[derive(Debug, Args)]
pub struct Global {
    /// Address of the Shipway API server.
    #[arg(
        long,
        global = true,
        env = "SHIPWAY_SERVER",
        hide_env_values = true,
        default_value = "http://127.0.0.1:7070"
    )]
    pub server: String,
    /// Bearer token for the API [default: the admin token file in the data directory].
    #[arg(long, global = true, env = "SHIPWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory [default: ~/.local/share/shipway].
    #[arg(long, global = true, env = "SHIPWAY_DATA", hide_env_values = true)]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Shipway server: API, store and controllers.
    Up(UpArgs),
    /// Create or update objects from files, directories or stdin.
    Apply(ApplyArgs),
    /// List objects, or show some by name.
    Get(GetArgs),
    /// Show an object in detail, with its recent events.
    Describe(DescribeArgs),
    /// Delete objects by name or as listed in files.
    Delete(DeleteArgs),
    /// Show the audit trail: who did what to which object, when.
    Events(EventsArgs),
    /// Run GitHub Actions workflows of a repository locally, no server needed.
    Run(crate::run::RunArgs),
    /// Render a kustomization, or a directory of manifests, exactly as `kubectl kustomize` prints
    /// it. Also `shipway kustomize build DIR`.
    #[command(visible_alias = "kustomize")]
    Render(crate::render::RenderArgs),
    /// Print the client and server versions.
    Version,
    /// Manage the local image store: import directories as images, list, remove.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print the logs of a container in a pod (POD or TYPE/NAME, e.g. deploy/web).
    Logs(LogsArgs),
    /// List the resource types the server knows: built-in kinds and those its
    /// CustomResourceDefinitions define.
    ApiResources(ApiResourcesArgs),
    /// Manage the API's tokens (admin only): issue one for a user, list them, revoke one.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage identities (admin only): who writes, as the audit trail shows it, and what
    /// their role lets them do.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage git repositories: hosted ones Shipway serves at /git/NAME.git, and external ones
    /// it fetches.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Argo CD Applications, with `argocd app`'s verbs: create, list, get, diff, manifests,
    /// sync, history, rollback, wait, refresh, delete.
    #[command(subcommand)]
    App(AppCommand),
    /// Argo Rollouts, with `kubectl argo rollouts`' verbs: get, list, promote, abort, retry,
    /// pause, resume, restart, undo, set image, status.
    #[command(subcommand, visible_alias = "rollouts")]
    Rollout(RolloutCommand),
    /// Workflow runs inside the server: pushes to hosted repositories run the workflows whose
    /// `on:` matches, schedules fire, `run` dispatches. list, get, logs, run, cancel, rerun.
    #[command(subcommand, visible_alias = "pipelines")]
    Pipeline(PipelineCommand),
    /// Deployment environments: their protection rules and what ran in each, from which
    /// commit, approved by whom.
    #[command(subcommand, visible_alias = "envs")]
    Env(EnvCommand),
    /// Pipeline secrets, given to workflow runs as `secrets.*` and masked in their logs:
    /// set (value from stdin), list (names and update times, never values), delete. Admin only
    /// for set and delete.
    #[command(subcommand, visible_alias = "secrets")]
    Secret(SecretCommand),
    /// Pipeline variables, given to workflow runs as `vars.*` (not secret: values are shown):
    /// set, list, delete.
    #[command(subcommand, visible_alias = "vars")]
    Var(VarCommand),
    /// Promote an image into an environment's overlay: set it in the kustomization exactly as
    /// `kustomize edit set image` would, commit and push (again on the new tip when the branch
    /// moved meanwhile). The GitOps controller then syncs the commit like any other.
    Promote(PromoteArgs),
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// A hosted repository's name (as in /git/NAME.git), pushed with this CLI's token, or a
    /// repository URL.
    pub repo: String,
    /// The overlay: a directory of the repository holding a kustomization (`.` for the root).
    pub path: String,
    /// The image as the overlay's manifests name it (`images[].name`).
    pub image: String,
    /// The tag to set (`newTag`).
    #[arg(long, required_unless_present = "digest")]
    pub tag: Option<String>,
    /// The digest to set (`digest`, `sha256:...`); with --tag both are kept.
    #[arg(long)]
    pub digest: Option<String>,
    /// Replace the image's name too (`newName`).
    #[arg(long)]
    pub new_name: Option<String>,
    /// The branch to commit to (default: the repository's default branch).
    #[arg(long)]
    pub branch: Option<String>,
    /// The commit's subject (default: `Promote IMAGE in PATH`).
    #[arg(short, long)]
    pub message: Option<String>,
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
}

/// Where a secret or variable applies, GitHub's scopes: neither flag is every run; `--repo` the
/// runs of one hosted repository (overrides the global one of the same name); `--env` jobs bound
/// to that environment.
#[derive(Debug, Clone, Args)]
pub struct SettingScope {
    /// A hosted repository's name (as in /git/NAME.git).
    #[arg(long)]
    pub repo: Option<String>,
    /// An environment's name (a job's `environment:`).
    #[arg(long)]
    pub env: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret from standard input (one trailing newline stripped): the value is never an
    /// argument, so it stays out of shell history and the process list.
    /// `printf %s "$TOKEN" | shipway secret set DEPLOY_TOKEN --repo shop`.
    Set {
        /// Letters, digits and `_`, not starting with a digit nor `GITHUB_`; stored upper case.
        name: String,
        #[command(flatten)]
        scope: SettingScope,
    },
    /// List secrets by name, scope and update time (filtered by the flags given); never values.
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        scope: SettingScope,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Delete secrets of one scope.
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        scope: SettingScope,
    },
}

#[derive(Debug, Subcommand)]
pub enum VarCommand {
    /// Set a variable.
    Set {
        /// Letters, digits and `_`, not starting with a digit nor `GITHUB_`; stored upper case.
        name: String,
        value: String,
        #[command(flatten)]
        scope: SettingScope,
    },
    /// List variables with their values and scopes (filtered by the flags given).
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        scope: SettingScope,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Delete variables of one scope.
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        scope: SettingScope,
    },
}

/// A workflow run by name, in a namespace.
#[derive(Debug, Args)]
pub struct RunTarget {
    /// The run's name (`shipway pipeline list` shows them).
    pub name: String,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// List workflow runs, newest first.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Only runs of this repository.
        #[arg(long, value_name = "REPO")]
        repo: Option<String>,
        /// Only runs with this status or conclusion (queued, waiting, in_progress, completed,
        /// success, failure, cancelled).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Show a run: its event, commit and actor, and its jobs and steps with their results.
    Get {
        #[command(flatten)]
        run: RunTarget,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
        /// Redraw until the run completes.
        #[arg(short, long)]
        watch: bool,
    },
    /// Print a run's log, `[job] line` as `shipway run` prints it.
    Logs {
        #[command(flatten)]
        run: RunTarget,
        /// Only this job's lines (its name as `get` shows it).
        #[arg(short, long, value_name = "JOB")]
        job: Option<String>,
        /// Keep printing new lines until the run completes.
        #[arg(short, long)]
        follow: bool,
    },
    /// Cancel a run: running steps are stopped, `always()` steps still run.
    Cancel {
        #[command(flatten)]
        run: RunTarget,
    },
    /// Run a workflow that declares `on: workflow_dispatch`, as GitHub's "Run workflow":
    /// prints the new run's name alone, so `RUN=$(shipway pipeline run app deploy)` works.
    Run {
        /// The hosted repository.
        repo: String,
        /// The workflow: its file name (`deploy.yml`), stem (`deploy`) or path.
        workflow: String,
        /// The branch or tag to run on (default: the default branch).
        #[arg(long = "ref", value_name = "REF")]
        git_ref: Option<String>,
        /// An input of the workflow, NAME=VALUE (repeatable); checked against its declared
        /// type, choices and required inputs.
        #[arg(long = "input", value_name = "NAME=VALUE", value_parser = parse_input)]
        inputs: Vec<(String, String)>,
        /// Then follow its log until it completes; exits 1 unless it succeeded.
        #[arg(short, long)]
        watch: bool,
    },
    /// Run a completed run again as its next attempt (same commit and event): all its jobs,
    /// or with `--failed` only those that did not succeed and the jobs that need them.
    Rerun {
        #[command(flatten)]
        run: RunTarget,
        /// Re-run only the failed (or cancelled) jobs and their dependents; the others keep
        /// their results and outputs.
        #[arg(long)]
        failed: bool,
    },
    /// Approve the run's jobs waiting on an environment, as your identity (one of the
    /// environment's reviewers, not the run's own actor unless it allows self-review).
    Approve {
        #[command(flatten)]
        run: RunTarget,
        /// The environment the jobs wait on.
        #[arg(long = "env", value_name = "ENVIRONMENT")]
        environment: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject the run's jobs waiting on an environment: they fail without running.
    Reject {
        #[command(flatten)]
        run: RunTarget,
        #[arg(long = "env", value_name = "ENVIRONMENT")]
        environment: String,
        #[arg(long)]
        comment: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// List the environments (Environment objects and those runs deployed to) with their
    /// protection and their last deployment.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Show an environment: its rules, what runs there (commit, run, approvers) and what waits.
    Get {
        name: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Every job that deployed (or asked to) to an environment, newest first.
    History {
        name: String,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
}

/// A Rollout by name, in a namespace.
#[derive(Debug, Args)]
pub struct RolloutTarget {
    /// The Rollout's name.
    pub name: String,
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Show a Rollout: status, strategy, step and weights, images, replicas, and its tree of
    /// revisions, ReplicaSets, pods and analysis runs with their measurements.
    Get {
        #[command(flatten)]
        rollout: RolloutTarget,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
        /// Redraw whenever the Rollout or its children change, until interrupted.
        #[arg(short, long)]
        watch: bool,
    },
    /// List Rollouts with their strategy, status, step, weight and replicas.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, default_value = "default")]
        namespace: String,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Go on from a canary pause or step, or promote a paused blue-green preview.
    Promote {
        #[command(flatten)]
        rollout: RolloutTarget,
        /// Skip the remaining steps, pauses and analyses: straight to the new version.
        #[arg(long)]
        full: bool,
    },
    /// Stop the update and send all traffic back to the stable version.
    Abort {
        #[command(flatten)]
        rollout: RolloutTarget,
    },
    /// Start an aborted update again from its first step.
    Retry {
        #[command(flatten)]
        rollout: RolloutTarget,
    },
    /// Pause the Rollout where it is (spec.paused).
    Pause {
        #[command(flatten)]
        rollout: RolloutTarget,
    },
    /// Unset spec.paused (what `pause` set); a step's pause needs `promote`.
    Resume {
        #[command(flatten)]
        rollout: RolloutTarget,
    },
    /// Restart the Rollout's pods, a few at a time (spec.restartAt).
    Restart {
        #[command(flatten)]
        rollout: RolloutTarget,
    },
    /// Roll back to the pod template of an earlier revision (the previous one by default).
    Undo {
        #[command(flatten)]
        rollout: RolloutTarget,
        /// The revision to go back to (`shipway rollout get` shows them).
        #[arg(long, value_name = "N")]
        to_revision: Option<i64>,
    },
    /// Change the Rollout's pod template.
    #[command(subcommand)]
    Set(RolloutSetCommand),
    /// Wait until the Rollout is Healthy and print its status; exit 1 on Degraded or timeout.
    Status {
        #[command(flatten)]
        rollout: RolloutTarget,
        /// Give up after this long [default: wait forever].
        #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<FlagDuration>,
        /// Keep watching until Healthy or Degraded; --watch=false prints the status once.
        #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
        watch: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RolloutSetCommand {
    /// Set a container's image: CONTAINER=IMAGE (`*=IMAGE` for every container).
    Image {
        #[command(flatten)]
        rollout: RolloutTarget,
        #[arg(value_name = "CONTAINER=IMAGE", required = true)]
        images: Vec<String>,
    },
}

/// Where an Application lives: Argo CD keeps them in its own namespace, `argocd`.
#[derive(Debug, Args)]
pub struct AppTarget {
    /// The Application's name.
    pub name: String,
    /// The Application's namespace.
    #[arg(short = 'N', long, default_value = "argocd")]
    pub app_namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an Application from flags, or from a file with -f.
    Create(AppCreateArgs),
    /// List Applications with their sync and health status.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
        /// The Applications' namespace.
        #[arg(short = 'N', long, default_value = "argocd")]
        app_namespace: String,
    },
    /// Show an Application: source, sync and health, the operation, and its resources.
    Get {
        #[command(flatten)]
        app: AppTarget,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
        /// Ask for a fresh comparison with git first, and show its result.
        #[arg(long)]
        refresh: bool,
    },
    /// Sync an Application to its target revision (or --revision), and wait for the result.
    Sync {
        #[command(flatten)]
        app: AppTarget,
        /// Delete the resources git no longer has.
        #[arg(long)]
        prune: bool,
        /// Plan and report without applying anything.
        #[arg(long)]
        dry_run: bool,
        /// Sync to this branch, tag or commit instead of the target revision.
        #[arg(long)]
        revision: Option<String>,
        /// Only these resources, as GROUP:KIND:NAME (an empty group for core kinds, e.g.
        /// :Service:web); repeatable.
        #[arg(long, value_name = "GROUP:KIND:NAME")]
        resource: Vec<String>,
        /// Return once the sync is requested, without waiting for it.
        #[arg(long = "async")]
        no_wait: bool,
        /// Give up waiting after this long (the sync goes on) [default: wait until it ends].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<FlagDuration>,
    },
    /// List the Application's deployments: ID, date, revision.
    History {
        #[command(flatten)]
        app: AppTarget,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Sync back to the revision of a history ID (automated sync must be off).
    Rollback {
        #[command(flatten)]
        app: AppTarget,
        /// The history ID (`shipway app history NAME`); the previous deployment when left out.
        id: Option<i64>,
        /// Give up waiting after this long [default: wait until it ends].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<FlagDuration>,
    },
    /// Wait until the Application is synced and healthy (or what the flags name), its
    /// operation finished. Exits 1 on timeout.
    Wait {
        #[command(flatten)]
        app: AppTarget,
        /// Wait for sync status Synced.
        #[arg(long)]
        sync: bool,
        /// Wait for health Healthy.
        #[arg(long)]
        health: bool,
        /// Wait for the running operation to end.
        #[arg(long)]
        operation: bool,
        /// Wait for health Degraded.
        #[arg(long)]
        degraded: bool,
        /// Wait for health Suspended.
        #[arg(long)]
        suspended: bool,
        /// Give up after this long [default: wait forever, as argocd app wait].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        timeout: Option<FlagDuration>,
    },
    /// Print the manifests git holds for the Application (at its synced revision, or
    /// --revision), rendered as the controller renders them.
    Manifests {
        #[command(flatten)]
        app: AppTarget,
        /// Render this branch, tag or commit instead.
        #[arg(long)]
        revision: Option<String>,
    },
    /// Show how the live resources differ from git, as a unified diff; exit 1 when they
    /// differ.
    Diff {
        #[command(flatten)]
        app: AppTarget,
        /// Compare with this branch, tag or commit instead of the target revision.
        #[arg(long)]
        revision: Option<String>,
    },
    /// Ask for a fresh comparison with git now, instead of at the next poll.
    Refresh {
        #[command(flatten)]
        app: AppTarget,
    },
    /// Delete an Application; with --cascade (the default) its resources go with it.
    #[command(alias = "rm")]
    Delete {
        #[command(flatten)]
        app: AppTarget,
        /// Delete the Application's resources too (through Argo CD's resources finalizer);
        /// --cascade=false leaves them running.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
        cascade: bool,
    },
}

#[derive(Debug, Args)]
pub struct AppCreateArgs {
    /// The Application's name (with -f, taken from the file).
    pub name: Option<String>,
    /// An Application manifest (`-` for stdin) instead of the flags.
    #[arg(short, long, value_name = "FILE", conflicts_with_all = ["repo", "path"])]
    pub file: Option<PathBuf>,
    /// The git repository: a hosted one's URL (http://HOST/git/NAME.git), https://, ssh:// or
    /// file://.
    #[arg(long, required_unless_present = "file")]
    pub repo: Option<String>,
    /// The directory in the repository holding the manifests or kustomization.
    #[arg(long, required_unless_present = "file")]
    pub path: Option<String>,
    /// Branch, tag or commit to follow.
    #[arg(long, default_value = "HEAD")]
    pub revision: String,
    /// Where the resources go.
    #[arg(long, default_value = "default")]
    pub dest_namespace: String,
    /// The cluster: the local runtime is https://kubernetes.default.svc.
    #[arg(long, default_value = "https://kubernetes.default.svc")]
    pub dest_server: String,
    #[arg(long, default_value = "default")]
    pub project: String,
    /// `automated` syncs every new revision by itself; `none` waits for `shipway app sync`.
    #[arg(long, value_parser = ["automated", "none", "manual"])]
    pub sync_policy: Option<String>,
    /// With automated sync, undo changes made outside git.
    #[arg(long)]
    pub self_heal: bool,
    /// With automated sync, delete resources git no longer has.
    #[arg(long)]
    pub auto_prune: bool,
    /// With automated sync and prune, allow an empty render to delete everything.
    #[arg(long)]
    pub allow_empty: bool,
    /// A sync option such as CreateNamespace=true; repeatable.
    #[arg(long, value_name = "OPTION")]
    pub sync_option: Vec<String>,
    /// Replace an existing Application of the same name instead of refusing.
    #[arg(long)]
    pub upsert: bool,
    /// The Application's namespace.
    #[arg(short = 'N', long, default_value = "argocd")]
    pub app_namespace: String,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create a hosted repository and print its clone URL (push to it with a deployer token
    /// as the password).
    Create {
        /// A DNS-1123 label: the repository is served at /git/NAME.git.
        name: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Register an external repository to fetch: https://, http://, ssh://, file:// or
    /// git@host:path.
    Add {
        name: String,
        #[arg(long)]
        url: String,
        /// A Secret with username/password or sshPrivateKey for the repository.
        #[arg(long)]
        secret: Option<String>,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// List repositories with their kind and clone URL.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Show a repository (YAML unless -o json).
    Get {
        name: String,
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Delete a repository object. A hosted repository's git data stays in the data
    /// directory (git/NAME.git) and is served again if the repository is created again.
    #[command(alias = "rm")]
    Delete {
        name: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token for a user and print its secret, once, alone on stdout (so
    /// `TOKEN=$(shipway token create --user alice)` keeps it). Without --user, NAME is
    /// also the user, added with --role when it does not exist (a service identity).
    Create {
        /// The token's name, for revoking it [default: USER-N].
        name: Option<String>,
        /// The user the token is for: what is written with it is attributed to this user.
        #[arg(long)]
        user: Option<String>,
        /// With NAME and no --user: the role of the user NAME, when it is created: viewer
        /// (reads), deployer (also applies, deletes, syncs, approves, promotes) or admin
        /// (also manages users, tokens and secrets) [default: viewer].
        #[arg(long)]
        role: Option<String>,
        /// How long the token works: 30m, 12h, 7d, 1h30m [default: until revoked].
        #[arg(long)]
        expires: Option<String>,
    },
    /// List the tokens by name, user, role and expiry; never their secrets.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Revoke tokens at once: requests that present them are refused from now on.
    #[command(alias = "rm", alias = "revoke")]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user with a role; `shipway token create --user NAME` then issues its tokens.
    Add {
        name: String,
        /// viewer (reads), deployer (also applies, deletes, syncs, approves, promotes) or admin
        /// (also manages users, tokens and secrets).
        #[arg(long, required = true)]
        role: String,
    },
    /// List the users with their roles and how many tokens each has.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Delete users; their tokens are revoked at once.
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a directory as NAME:TAG; pods run it with the directory as their working directory.
    Import {
        /// NAME or NAME:TAG (`:latest` when no tag is given).
        reference: String,
        /// The directory to import.
        dir: PathBuf,
        /// The default process: a program (relative to DIR, absolute, or on PATH) and its arguments.
        #[arg(long, required = true, num_args = 1.., allow_hyphen_values = true, value_name = "CMD [ARGS]...")]
        entrypoint: Vec<String>,
        /// Environment for the image's processes (KEY=VALUE, repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
    },
    /// List the images in the local store.
    #[command(alias = "ls")]
    List {
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
    /// Remove images, then the blobs nothing else uses.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// A pod name, or TYPE/NAME of a workload (deploy/web, job/migrate, rs/web-abc) to pick one
    /// of its pods.
    pub target: String,
    /// The container [default: the pod's only container].
    #[arg(short, long)]
    pub container: Option<String>,
    /// Keep printing new output.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// The previous instance of the container (after a restart).
    #[arg(short, long)]
    pub previous: bool,
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// With TYPE/NAME: how long to wait for one of its pods to be running (or finished).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true,
        default_value = "20s")]
    pub pod_running_timeout: FlagDuration,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address to listen on. Loopback by default: expose it deliberately.
    #[arg(long, default_value = shipway_server::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// State database: `postgres://USER:PASS@HOST/DB` [default: SQLite in the data directory].
    #[arg(long, env = "SHIPWAY_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Jobs of all workflow runs at once [default: the number of cores].
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub max_parallel_jobs: usize,
    /// A runner label jobs' `runs-on` may ask for (repeatable); a job asking for one not
    /// offered stays queued saying so [default: self-hosted, linux, x64, ubuntu-latest].
    #[arg(long = "runner-label", value_name = "LABEL", value_parser = parse_label)]
    pub runner_labels: Vec<String>,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

/// The built-in proxy's options. Defaults come from `ProxyConfig::default()`, so `--help` shows
/// what the proxy really uses.
#[derive(Debug, Args)]
#[command(next_help_heading = "Proxy")]
pub struct ProxyArgs {
    /// Log every request through the proxy (target `shipway_proxy::access`, shown whatever
    /// SHIPWAY_LOG says).
    #[arg(long)]
    pub proxy_access_log: bool,
    /// Time a client has to send a whole request head before its connection is closed.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true,
        default_value_t = FlagDuration(shipway_app::ProxyConfig::default().header_read_timeout))]
    pub proxy_header_timeout: FlagDuration,
    /// Time to an upstream's response head before the proxy answers 504.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true,
        default_value_t = FlagDuration(shipway_app::ProxyConfig::default().upstream_timeout))]
    pub proxy_upstream_timeout: FlagDuration,
    /// Time to connect to an upstream before trying another endpoint.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true,
        default_value_t = FlagDuration(shipway_app::ProxyConfig::default().connect_timeout))]
    pub proxy_connect_timeout: FlagDuration,
    /// Let Services listen on non-loopback addresses (`shipway.dev/listen: 0.0.0.0:80`); without
    /// it such a Service gets no listener and a ListenerReady condition saying why.
    #[arg(long)]
    pub proxy_allow_public: bool,
    /// Proxy worker threads; 0 is one per core.
    #[arg(long, value_name = "N", value_parser = parse_workers,
        default_value_t = shipway_app::ProxyConfig::default().workers)]
    pub proxy_workers: usize,
}

/// A duration flag's value; displays in the form it is written (`10s`, `1m`, `500ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagDuration(pub Duration);

impl fmt::Display for FlagDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, secs) = (self.0, self.0.as_secs());
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", d.as_secs_f64() * 1e3)
        } else if d.subsec_nanos() != 0 {
            write!(f, "{}ms", d.as_millis())
        } else if secs > 0 && secs.is_multiple_of(3600) {
            write!(f, "{}h", secs / 3600)
        } else if secs > 0 && secs.is_multiple_of(60) {
            write!(f, "{}m", secs / 60)
        } else {
            write!(f, "{secs}s")
        }
    }
}

const DURATION_FORM: &str = "such as 500ms, 10s, 2m or 1m30s (units: ms, s, m, h)";

/// A runner label: not empty, no spaces or commas (GitHub's labels are single words).
fn parse_label(text: &str) -> Result<String, String> {
    if text.is_empty() || text.contains(|c: char| c.is_whitespace() || c == ',') {
        return Err(format!(
            "expected one label without spaces or commas (repeat the flag for several), got {text:?}"
        ));
    }
    Ok(text.to_string())
}

/// `NAME=VALUE` (the value may hold `=`, and may be empty); clap names the flag in the error.
fn parse_input(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// A positive duration: numbers with units, Go-style (`500ms`, `1.5s`, `2m`, `1h`, `1m30s`).
/// clap names the flag in the error.
fn parse_duration(text: &str) -> Result<FlagDuration, String> {
    let s = text.trim();
    if s.strip_prefix('-')
        .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit() || c == '.'))
    {
        return Err(format!("must be greater than zero, {DURATION_FORM}"));
    }
    if s.is_empty() {
        return Err(format!("expected a duration {DURATION_FORM}"));
    }
    let mut rest = s;
    let mut secs = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale = match unit {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            // Zero needs no unit, as in Go; it is refused below like any zero.
            "" if number.parse::<f64>() == Ok(0.0) => 1.0,
            "" if !number.is_empty() => {
                return Err(format!("{number} needs a unit: a duration {DURATION_FORM}"));
            }
            _ => return Err(format!("expected a duration {DURATION_FORM}")),
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("expected a duration {DURATION_FORM}"))?;
        secs += value * scale;
        rest = after;
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d.is_zero() => Err(format!("must be greater than zero, {DURATION_FORM}")),
        Ok(d) => Ok(FlagDuration(d)),
        Err(_) => Err(format!("too long: a duration {DURATION_FORM}")),
    }
}

/// Each worker is a thread with its own runtime, listeners and upstream pool; more than this is a
/// typo, not a machine.
const MAX_PROXY_WORKERS: usize = 1024;

fn parse_workers(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n <= MAX_PROXY_WORKERS => Ok(n),
        _ => Err(format!(
            "expected a number of worker threads from 0 (one per core) to {MAX_PROXY_WORKERS}"
        )),
    }
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A file, a directory (read recursively: *.yaml, *.yml, *.json) or `-` for stdin. Repeatable.
    #[arg(short = 'f', long = "filename", required_unless_present = "kustomize")]
    pub files: Vec<String>,
    /// A kustomization directory: rendered as `shipway render DIR` prints it, then applied.
    #[arg(
        short = 'k',
        long = "kustomize",
        value_name = "DIR",
        conflicts_with = "files"
    )]
    pub kustomize: Option<PathBuf>,
    /// Validate on the server and show what would happen, without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Namespace for objects that do not name one.
    #[arg(short, long)]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Yaml,
    Wide,
    Name,
}

#[derive(Debug, Args)]
pub struct ApiResourcesArgs {
    /// Only namespaced (`true`) or only cluster-scoped (`false`) types.
    #[arg(long, value_name = "BOOL")]
    pub namespaced: Option<bool>,
    /// `name` prints `plural.group` lines only.
    #[arg(short, long, value_parser = ["name"])]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Resource type (`deployments`, `deploy`, `svc`, `Widget.example.com`), several separated by
    /// commas (`deploy,svc,pods`), `all` (pods, services, deployments, replica sets, jobs and the
    /// other workload kinds, as kubectl's `all`), or TYPE/NAME.
    pub resource: String,
    /// Names of objects to show.
    pub names: Vec<String>,
    #[command(flatten)]
    pub scope: Scope,
    /// Only objects whose labels match (`app=web,tier!=db`, `env in (prod,staging)`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Output format [default: a table].
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
    /// After listing, keep printing objects as they change (until interrupted).
    #[arg(short, long)]
    pub watch: bool,
    /// Show each object's labels as the last column.
    #[arg(long)]
    pub show_labels: bool,
    /// Show the values of these labels as columns (`-L app,tier`; repeatable).
    #[arg(
        short = 'L',
        long = "label-columns",
        value_delimiter = ',',
        value_name = "LABEL"
    )]
    pub label_columns: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Scope {
    /// Namespace [default: `default`].
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Resource type, or TYPE/NAME.
    pub resource: String,
    /// Names of objects to describe.
    pub names: Vec<String>,
    #[arg(short, long)]
    pub namespace: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Resource type, or TYPE/NAME. Not needed with -f.
    pub resource: Option<String>,
    /// Names of objects to delete.
    pub names: Vec<String>,
    /// Delete the objects these files describe (as `apply -f` reads them).
    #[arg(short = 'f', long = "filename", conflicts_with = "resource")]
    pub files: Vec<String>,
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Succeed when the object does not exist.
    #[arg(long)]
    pub ignore_not_found: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events of this resource type, or of one object as TYPE/NAME.
    #[arg(long = "for")]
    pub for_object: Option<String>,
    /// Only events in this namespace [default: every namespace].
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// How many of the newest events to show.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Output format [default: a table].
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_written() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("500ms", ms(500)),
            ("10s", ms(10_000)),
            ("2m", ms(120_000)),
            ("1h", ms(3_600_000)),
            ("1m30s", ms(90_000)),
            ("1.5s", ms(1_500)),
            (" 250ms ", ms(250)),
        ] {
            assert_eq!(parse_duration(text), Ok(FlagDuration(want)), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_what_is_expected() {
        for (text, says) in [
            ("0s", "greater than zero"),
            ("0", "greater than zero"),
            ("-1s", "greater than zero"),
            ("10", "10 needs a unit"),
            ("10x", "expected a duration such as 500ms"),
            ("--listen", "expected a duration"),
            ("s", "expected a duration"),
            ("1..5s", "expected a duration"),
            ("", "expected a duration"),
            ("99999999999999999999999h", "too long"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn defaults_display_in_a_form_the_parser_reads_back() {
        for d in [
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(7200),
            Duration::from_secs(90),
            Duration::from_millis(1_500),
            Duration::from_micros(1_250),
        ] {
            let shown = FlagDuration(d).to_string();
            assert_eq!(parse_duration(&shown), Ok(FlagDuration(d)), "{shown}");
        }
        assert_eq!(FlagDuration(Duration::from_secs(60)).to_string(), "1m");
    }

    #[test]
    fn workers_are_bounded() {
        assert_eq!(parse_workers("0"), Ok(0));
        assert_eq!(parse_workers("4"), Ok(4));
        assert!(
            parse_workers("5000")
                .unwrap_err()
                .contains("0 (one per core) to 1024")
        );
        assert!(parse_workers("-1").is_err());
    }
}
