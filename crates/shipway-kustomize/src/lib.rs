//! `kustomize build`, natively: byte-identical to `kubectl kustomize` (Kustomize v5.5.0).
//!
//! Newcomers: start with [`build`] (or [`build_dir`] for a plain directory of manifests), then
//! `build.rs` (the accumulation and the order of the steps, mirroring kustomize's `KustTarget`),
//! then `emit.rs` (the YAML printer that makes the output byte-identical). Every file is read
//! through [`FileSystem`], so tests and the GitOps controller can render from memory or a git tree.
//!
//! *Architecture Invariant*: no processes, no network. Remote resources, Helm charts and
//! exec/KRM plugins are refused with an error naming the field.

mod build;
#[cfg(test)]
mod build_tests;
mod config;
mod crds;
pub mod edit;
pub mod emit;
mod fs;
mod generate;
mod jsonpatch;
mod kustfile;
mod nameref;
mod origin;
mod replacements;
mod resource;
mod smp;
mod sort;
mod transform;
mod v3scalars;
mod vars;

use std::path::Path;

pub use fs::{DiskFs, FileSystem, MemFs};
pub use kustfile::FILE_NAMES;
pub use shipway_model::LoadError;

/// How the output is ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reorder {
    /// Kustomize's default: by kind priority, then GVK, namespace and name.
    #[default]
    Legacy,
    /// The order resources were accumulated in.
    None,
}

/// Whether files may come from outside a kustomization's directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadRestrictor {
    #[default]
    RootOnly,
    None,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub reorder: Reorder,
    pub load_restrictor: LoadRestrictor,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A problem at a place in a file.
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// Malformed YAML or JSON (every problem found).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Load(Vec<LoadError>),
    /// Anything else kustomize refuses, in its words.
    #[error("{0}")]
    Build(String),
}

/// Where a rendered object was read from: the file (as the build named it, relative to what it
/// was given) and the line its document starts at. Generated objects have none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One object of a build, with where it came from, so a sync error can point at the file and
/// line in git.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub object: shipway_model::Object,
    pub source: Option<Source>,
}

/// Builds the kustomization in `dir` and returns its objects in the order `build` prints them.
pub fn render(fs: &dyn FileSystem, dir: &Path, opts: &Options) -> Result<Vec<Rendered>, Error> {
    let mut b = build::Builder {
        fs,
        opts,
        stack: Vec::new(),
        origins: false,
    };
    b.render(dir)?.into_iter().map(rendered).collect()
}

fn rendered(r: resource::Resource) -> Result<Rendered, Error> {
    match serde_json::from_value::<shipway_model::Object>(r.obj) {
        Ok(object) => Ok(Rendered {
            object,
            source: r.source,
        }),
        Err(e) => {
            let at = r.source.map(|s| format!("{s}: ")).unwrap_or_default();
            Err(Error::Build(format!(
                "{at}not an object Shipway can apply: {e}"
            )))
        }
    }
}

/// Builds the kustomization in `dir` and returns the YAML stream `kubectl kustomize` prints.
pub fn build(fs: &dyn FileSystem, dir: &Path, opts: &Options) -> Result<String, Error> {
    let mut b = build::Builder {
        fs,
        opts,
        stack: Vec::new(),
        origins: false,
    };
    b.run(dir)
}

/// Renders a directory without a kustomization (Argo CD's "directory" source): every `.yaml`,
/// `.yml` and `.json` file in name order, subdirectories too with `recurse`. Files are read under
/// the rootOnly load restrictor's check (a link to a file outside `dir` is refused); a link to a
/// directory is not descended into, as Argo CD's walk does not, so a link cycle cannot loop.
pub fn build_dir(fs: &dyn FileSystem, dir: &Path, recurse: bool) -> Result<String, Error> {
    let mut out = String::new();
    for (i, r) in dir_resources(fs, dir, recurse, false)?.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&emit::to_yaml(&r.obj));
    }
    Ok(out)
}

/// The objects of a plain directory, as [`build_dir`] prints them, each with its file and line.
pub fn render_dir(fs: &dyn FileSystem, dir: &Path, recurse: bool) -> Result<Vec<Rendered>, Error> {
    render_dir_with(
        fs,
        dir,
        &DirOptions {
            recurse,
            generate_name: false,
        },
    )
}

/// How [`render_dir_with`] reads a directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirOptions {
    /// Descend into subdirectories (Argo's `directory.recurse`).
    pub recurse: bool,
    /// Accept objects named only by `metadata.generateName` (their `name` is left empty): Argo CD
    /// names such hooks itself when it syncs them. Off for everything `kubectl apply`-like.
    pub generate_name: bool,
}

/// [`render_dir`] with [`DirOptions`].
pub fn render_dir_with(
    fs: &dyn FileSystem,
    dir: &Path,
    opts: &DirOptions,
) -> Result<Vec<Rendered>, Error> {
    dir_resources(fs, dir, opts.recurse, opts.generate_name)?
        .into_iter()
        .map(rendered)
        .collect()
}

fn dir_resources(
    fs: &dyn FileSystem,
    dir: &Path,
    recurse: bool,
    generate_name: bool,
) -> Result<Vec<resource::Resource>, Error> {
    let ldr = build::Ldr {
        fs,
        root: dir.to_path_buf(),
        restrict: true,
        root_real: std::cell::OnceCell::new(),
    };
    let mut out = Vec::new();
    collect_dir(&ldr, Path::new(""), recurse, generate_name, &mut out)?;
    Ok(out)
}

fn collect_dir(
    ldr: &build::Ldr<'_>,
    rel: &Path,
    recurse: bool,
    generate_name: bool,
    out: &mut Vec<resource::Resource>,
) -> Result<(), Error> {
    let dir = ldr.root.join(rel);
    let names = ldr
        .fs
        .list(&dir)
        .map_err(|e| Error::Build(format!("{}: {e}", dir.display())))?;
    for name in names {
        let p = dir.join(&name);
        let rel = rel.join(&name);
        let is_dir = ldr.fs.is_dir(&p);
        let wanted = if is_dir {
            recurse && !name.starts_with('.')
        } else {
            name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json")
        };
        if !wanted {
            continue;
        }
        let real = ldr
            .resolve(&rel.to_string_lossy())
            .map_err(|e| Error::Build(format!("{}: {e}", p.display())))?;
        if is_dir {
            // A link to a directory inside the root is not followed (its files are reached by
            // their own path, or not at all), which also ends link cycles.
            if !ldr.is_link(&p) {
                collect_dir(ldr, &rel, recurse, generate_name, out)?;
            }
            continue;
        }
        let bytes = ldr
            .fs
            .read(&real)
            .map_err(|e| Error::Build(format!("{}: {e}", p.display())))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Build(format!("{}: not UTF-8", p.display())))?;
        out.extend(build::resources_from_text_with(
            &p.display().to_string(),
            &text,
            generate_name,
        )?);
    }
    Ok(())
}

/// Whether `dir` holds a kustomization file.
pub fn has_kustomization(fs: &dyn FileSystem, dir: &Path) -> bool {
    kustfile::FILE_NAMES.iter().any(|n| fs.exists(&dir.join(n)))
}
