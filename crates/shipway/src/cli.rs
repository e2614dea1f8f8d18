//! Every command and flag, defined once; `--help` comes from here.

use std::net::SocketAddr;
use std::path::PathBuf;

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

#[derive(Debug, Args)]
pub struct Global {
    /// Address of the Shipway API server.
    #[arg(
        long,
        global = true,
        env = "SHIPWAY_SERVER",
        default_value = "http://127.0.0.1:7070"
    )]
    pub server: String,
    /// Bearer token for the API [default: the admin token file in the data directory].
    #[arg(long, global = true, env = "SHIPWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory [default: ~/.local/share/shipway].
    #[arg(long, global = true, env = "SHIPWAY_DATA")]
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
    /// A pod name, or TYPE/NAME of a workload (deploy/web, rs/web-abc) to pick one of its pods.
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
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address to listen on. Loopback by default: expose it deliberately.
    #[arg(long, default_value = shipway_server::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// State database: `postgres://USER:PASS@HOST/DB` [default: SQLite in the data directory].
    #[arg(long, env = "SHIPWAY_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A file, a directory (read recursively: *.yaml, *.yml, *.json) or `-` for stdin. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
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
pub struct GetArgs {
    /// Resource type (`deployments`, `deploy`, `svc`, `Widget.example.com`), or TYPE/NAME.
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
