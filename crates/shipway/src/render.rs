//! `shipway render DIR` (also `shipway kustomize build DIR`): a kustomization built natively, or a
//! plain directory of manifests, printed as `kubectl kustomize` prints it.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use shipway_kustomize::{DiskFs, LoadRestrictor, Options, Reorder};

use crate::Failure;

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The directory to render: a kustomization, or plain YAML/JSON files. As
    /// `shipway kustomize build DIR`, the word `build` comes first.
    #[arg(value_name = "DIR", num_args = 1..=2, required = true)]
    pub args: Vec<String>,
    /// Output order: kustomize's legacy kind order, or the order resources were read in.
    #[arg(long, value_enum, default_value = "legacy")]
    pub reorder: ReorderArg,
    /// Whether files may be read from outside each kustomization's directory.
    #[arg(long, value_enum, default_value = "rootOnly")]
    pub load_restrictor: RestrictorArg,
    /// For a directory without a kustomization: include subdirectories.
    #[arg(long)]
    pub recurse: bool,
    /// Write to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReorderArg {
    Legacy,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestrictorArg {
    #[value(name = "rootOnly", alias = "LoadRestrictionsRootOnly")]
    RootOnly,
    #[value(name = "none", alias = "LoadRestrictionsNone")]
    None,
}

pub fn run(args: RenderArgs) -> Result<(), Failure> {
    // `kustomize build DIR` arrives as ["build", DIR]; `render DIR` as [DIR].
    let dir = match args.args.as_slice() {
        [dir] => dir,
        [word, dir] if word == "build" => dir,
        _ => {
            return Err(Failure::Usage(
                "expected one directory: `shipway render DIR` or `shipway kustomize build DIR`"
                    .into(),
            ));
        }
    };
    let dir = absolute(Path::new(dir))?;
    if !dir.is_dir() {
        return Err(Failure::Usage(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let fs = DiskFs;
    let rendered = if shipway_kustomize::has_kustomization(&fs, &dir) {
        let opts = Options {
            reorder: match args.reorder {
                ReorderArg::Legacy => Reorder::Legacy,
                ReorderArg::None => Reorder::None,
            },
            load_restrictor: match args.load_restrictor {
                RestrictorArg::RootOnly => LoadRestrictor::RootOnly,
                RestrictorArg::None => LoadRestrictor::None,
            },
        };
        shipway_kustomize::build(&fs, &dir, &opts)
    } else {
        shipway_kustomize::build_dir(&fs, &dir, args.recurse)
    }
    // A tree that does not build is a validation error (exit 2), like a bad manifest.
    .map_err(|e| Failure::Usage(e.to_string()))?;
    match &args.output {
        Some(path) => std::fs::write(path, rendered)
            .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", path.display()))),
        None => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            out.write_all(rendered.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| Failure::Failed(format!("cannot write to stdout: {e}")))
        }
    }
}

/// The objects of the kustomization in `dir`, as `apply -k` applies them (kubectl's defaults: legacy
/// order, files only from inside each kustomization).
pub fn kustomization_objects(dir: &Path) -> Result<Vec<shipway_model::Object>, Failure> {
    let dir = absolute(dir)?;
    let fs = DiskFs;
    if !shipway_kustomize::has_kustomization(&fs, &dir) {
        return Err(Failure::Usage(format!(
            "unable to find one of 'kustomization.yaml', 'kustomization.yml' or 'Kustomization' in directory '{}'",
            dir.display()
        )));
    }
    let rendered = shipway_kustomize::render(&fs, &dir, &Options::default())
        .map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(rendered.into_iter().map(|r| r.object).collect())
}

fn absolute(p: &Path) -> Result<PathBuf, Failure> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(p))
        .map_err(|e| Failure::Failed(format!("cannot read the current directory: {e}")))
}
