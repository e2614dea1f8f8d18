//! A source's tree to objects, as Argo CD's repo-server does it: a kustomization at the source
//! path is built with the Application's `kustomize` overrides applied the way `kustomize edit`
//! applies them; otherwise the path is a plain directory of manifests (`directory.recurse`,
//! `include`, `exclude`). Helm charts, plugins and Jsonnet are refused by name.
//!
//! The overrides are written into an edited copy of the kustomization served by an overlay
//! [`FileSystem`], so the tree itself is never written to (it may be a git commit).

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use shipway_fs::{FileSystem, normalize};
use shipway_kustomize::{Options, Rendered};
use shipway_model::Kinds;
use shipway_model::types::{ApplicationSource, DirectorySource, KustomizeSource};

use crate::glob;

/// The names kustomize reads a kustomization from, in its order.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Why a source did not render.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The source asks for something Shipway does not render (Helm, plugins, Jsonnet).
    #[error("{0}")]
    Unsupported(String),
    /// The source path is absolute, outside the repository, missing or not a directory, in
    /// Argo's words (`guestbook: app path does not exist`).
    #[error("{0}")]
    Path(String),
    /// An object named only by `metadata.generateName` that is not a hook: only hooks get a
    /// name when they are synced.
    #[error("{0}")]
    GenerateName(String),
    /// The kustomization or a manifest is wrong; kustomize's error, with its file and line.
    #[error(transparent)]
    Kustomize(#[from] shipway_kustomize::Error),
}

impl RenderError {
    /// The Application condition this error becomes: a refused feature is the spec's fault
    /// (`InvalidSpecError`), anything else a failed comparison (`ComparisonError`), as in Argo.
    pub fn condition_type(&self) -> &'static str {
        match self {
            RenderError::Unsupported(_) => crate::condition::INVALID_SPEC_ERROR,
            _ => crate::condition::COMPARISON_ERROR,
        }
    }
}

/// Renders `source` from the tree at `root` (the repository's checkout or commit). Objects
/// without a namespace get `namespace` (the destination's) when their kind is namespaced.
pub fn render(
    fs: &dyn FileSystem,
    root: &Path,
    source: &ApplicationSource,
    namespace: &str,
) -> Result<Vec<Rendered>, RenderError> {
    if source.helm.is_some() || source.chart.is_some() {
        let field = if source.chart.is_some() {
            "chart"
        } else {
            "helm"
        };
        return Err(RenderError::Unsupported(format!(
            "Helm is not supported: spec.source.{field}"
        )));
    }
    if source.plugin.is_some() {
        return Err(RenderError::Unsupported(
            "Config management plugins are not supported: spec.source.plugin".into(),
        ));
    }
    let directory = source.directory.clone().unwrap_or_default();
    if directory.jsonnet.is_some() {
        return Err(RenderError::Unsupported(
            "Jsonnet is not supported: spec.source.directory.jsonnet".into(),
        ));
    }
    let rel = source.path.as_deref().unwrap_or(".");
    let dir = app_path(fs, root, rel)?;
    let explicit_directory = source.directory.is_some() && source.kustomize.is_none();
    let mut objects = if !explicit_directory && shipway_kustomize::has_kustomization(fs, &dir) {
        render_kustomize(fs, &dir, source.kustomize.as_ref())?
    } else if !explicit_directory && fs.exists(&dir.join("Chart.yaml")) {
        return Err(RenderError::Unsupported(format!(
            "Helm is not supported: spec.source.path {rel:?} holds a Helm chart (Chart.yaml)"
        )));
    } else {
        render_directory(fs, &dir, &directory)?
    };
    default_namespace(&mut objects, namespace);
    Ok(objects)
}

/// Argo's `path.Path`: the source path inside the repository, or why not.
fn app_path(fs: &dyn FileSystem, root: &Path, rel: &str) -> Result<PathBuf, RenderError> {
    if Path::new(rel).is_absolute() {
        return Err(RenderError::Path(format!("{rel}: app path is absolute")));
    }
    // Lexically, as Argo joins the path to the checkout's root: a climb above the root is
    // outside it even when the root is `/` (a git tree), where normalising would clamp it.
    let mut depth = 0i64;
    for c in Path::new(rel).components() {
        match c {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(RenderError::Path(format!("{rel}: app path outside root")));
        }
    }
    let root = normalize(root);
    let dir = normalize(&root.join(rel));
    if !dir.starts_with(&root) {
        return Err(RenderError::Path(format!("{rel}: app path outside root")));
    }
    if !fs.exists(&dir) {
        return Err(RenderError::Path(format!("{rel}: app path does not exist")));
    }
    if !fs.is_dir(&dir) {
        return Err(RenderError::Path(format!(
            "{rel}: app path is not a directory"
        )));
    }
    Ok(dir)
}

fn render_kustomize(
    fs: &dyn FileSystem,
    dir: &Path,
    overrides: Option<&KustomizeSource>,
) -> Result<Vec<Rendered>, RenderError> {
    let opts = Options::default();
    let Some(k) = overrides.filter(|k| has_overrides(k)) else {
        return Ok(shipway_kustomize::render(fs, dir, &opts)?);
    };
    let file = KUSTOMIZATION_FILES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| fs.exists(p))
        .expect("has_kustomization found one");
    let edited = edited_kustomization(fs, &file, k)?;
    let overlay = Overlay {
        base: fs,
        path: file,
        contents: edited.into_bytes(),
    };
    Ok(shipway_kustomize::render(&overlay, dir, &opts)?)
}

fn has_overrides(k: &KustomizeSource) -> bool {
    !k.images.is_empty()
        || k.name_prefix.as_deref().is_some_and(|s| !s.is_empty())
        || k.name_suffix.as_deref().is_some_and(|s| !s.is_empty())
        || k.common_labels.as_ref().is_some_and(|m| !m.is_empty())
        || k.common_annotations.as_ref().is_some_and(|m| !m.is_empty())
        || k.namespace.as_deref().is_some_and(|s| !s.is_empty())
        || !k.patches.is_empty()
        || !k.replicas.is_empty()
        || k.rest
            .get("components")
            .is_some_and(|c| c.as_array().is_some_and(|a| !a.is_empty()))
}

/// The text of the kustomization at `file` after the edits Argo CD makes for `k`
/// (`kustomize edit set nameprefix/namesuffix/namespace/image/replicas`, `edit add
/// label/annotation --force`, `edit add component`, patches appended).
pub fn edited_kustomization(
    fs: &dyn FileSystem,
    file: &Path,
    k: &KustomizeSource,
) -> Result<String, RenderError> {
    let name = file.display().to_string();
    let text = shipway_fs::read_to_string(fs, file)
        .map_err(|e| RenderError::Path(format!("{name}: {e}")))?;
    let docs = shipway_model::parse_documents(&name, &text)
        .map_err(|e| RenderError::Kustomize(shipway_kustomize::Error::Load(e)))?;
    let mut m = match docs.into_iter().next().map(|d| d.value) {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => Map::new(),
        Some(_) => {
            return Err(RenderError::Kustomize(shipway_kustomize::Error::Build(
                format!("{name}: a kustomization must be a mapping"),
            )));
        }
    };
    if let Some(p) = k.name_prefix.as_deref().filter(|s| !s.is_empty()) {
        m.insert("namePrefix".into(), p.into());
    }
    if let Some(s) = k.name_suffix.as_deref().filter(|s| !s.is_empty()) {
        m.insert("nameSuffix".into(), s.into());
    }
    if let Some(ns) = k.namespace.as_deref().filter(|s| !s.is_empty()) {
        m.insert("namespace".into(), ns.into());
    }
    if !k.images.is_empty() {
        set_images(&name, &mut m, &k.images)?;
    }
    for (field, values) in [
        ("commonLabels", &k.common_labels),
        ("commonAnnotations", &k.common_annotations),
    ] {
        if let Some(values) = values.as_ref().filter(|v| !v.is_empty()) {
            let entry = m.entry(field).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let map = entry.as_object_mut().expect("made a mapping");
            for (key, v) in values {
                map.insert(key.clone(), v.clone().into());
            }
        }
    }
    if !k.replicas.is_empty() {
        let mut list: Vec<Value> = m
            .get("replicas")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for r in &k.replicas {
            let count = match &r.count {
                shipway_model::types::IntOrString::Int(n) => Value::from(*n),
                shipway_model::types::IntOrString::String(s) => match s.parse::<i64>() {
                    Ok(n) => Value::from(n),
                    Err(_) => {
                        return Err(RenderError::Unsupported(format!(
                            "spec.source.kustomize.replicas: count {s:?} of {:?} is not an integer",
                            r.name
                        )));
                    }
                },
            };
            let entry = serde_json::json!({"name": r.name, "count": count});
            match list
                .iter_mut()
                .find(|e| e.get("name").and_then(Value::as_str) == Some(&r.name))
            {
                Some(e) => *e = entry,
                None => list.push(entry),
            }
        }
        m.insert("replicas".into(), Value::Array(list));
    }
    if let Some(Value::Array(components)) = k.rest.get("components") {
        let list = m
            .entry("components")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(existing) = list {
            for c in components {
                if !existing.contains(c) {
                    existing.push(c.clone());
                }
            }
        }
    }
    if !k.patches.is_empty() {
        let list = m
            .entry("patches")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(existing) = list {
            existing.extend(k.patches.iter().cloned());
        }
    }
    Ok(shipway_kustomize::emit::to_yaml(&Value::Object(m)))
}

/// `kustomize edit set image` for each of `args` (Argo CD runs it once per override, so an
/// argument replaces the entry of its name); the deprecated `imageTags` are folded into `images`
/// as kustomize's edit does.
fn set_images(name: &str, m: &mut Map<String, Value>, args: &[String]) -> Result<(), RenderError> {
    let invalid = |message: String| {
        RenderError::Kustomize(shipway_kustomize::Error::Build(format!(
            "{name}: {message}"
        )))
    };
    let mut images = Vec::new();
    for field in ["images", "imageTags"] {
        match m.remove(field) {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for (i, v) in list.into_iter().enumerate() {
                    match v {
                        Value::Object(e) => images.push(e),
                        Value::Null => images.push(Map::new()),
                        _ => return Err(invalid(format!("{field}[{i}] must be a mapping"))),
                    }
                }
            }
            Some(_) => return Err(invalid(format!("{field} must be a list"))),
        }
    }
    shipway_kustomize::edit::set_image_entries(&mut images, args).map_err(|e| match e {
        // An entry of the file (its index counts `images`, then `imageTags`).
        shipway_kustomize::edit::EditError::Image { .. } => invalid(e.to_string()),
        // The Application's override.
        _ => invalid(format!("spec.source.kustomize.images: {e}")),
    })?;
    m.insert(
        "images".into(),
        Value::Array(images.into_iter().map(Value::Object).collect()),
    );
    Ok(())
}

fn render_directory(
    fs: &dyn FileSystem,
    dir: &Path,
    d: &DirectorySource,
) -> Result<Vec<Rendered>, RenderError> {
    let filtered = Filtered {
        base: fs,
        root: dir.to_path_buf(),
        include: d.include.clone().filter(|s| !s.is_empty()),
        exclude: d.exclude.clone().filter(|s| !s.is_empty()),
    };
    let recurse = d.recurse.unwrap_or(false);
    if let Some(file) = first_jsonnet(&filtered, dir, dir, recurse) {
        return Err(RenderError::Unsupported(format!(
            "Jsonnet is not supported: {file}"
        )));
    }
    // Argo's examples name hooks by `generateName` alone; the sync names them (see
    // `plan::SyncOptions::started_at`). Anything else needs a name up front, as with kubectl.
    let objects = shipway_kustomize::render_dir_with(
        &filtered,
        dir,
        &shipway_kustomize::DirOptions {
            recurse,
            generate_name: true,
        },
    )?;
    if let Some(r) = objects
        .iter()
        .find(|r| r.object.metadata.name.is_empty() && !crate::plan::is_hook(&r.object))
    {
        let at = r
            .source
            .as_ref()
            .map(|s| format!("{s}: "))
            .unwrap_or_default();
        let generate = r
            .object
            .metadata
            .generate_name
            .as_deref()
            .unwrap_or_default();
        return Err(RenderError::GenerateName(format!(
            "{at}{} with metadata.generateName {generate:?} is not a hook: only hooks \
             (argocd.argoproj.io/hook) may go without metadata.name; set metadata.name",
            r.object.kind
        )));
    }
    Ok(objects)
}

/// The first `.jsonnet` file a directory source would read (Argo evaluates those).
fn first_jsonnet(fs: &dyn FileSystem, root: &Path, dir: &Path, recurse: bool) -> Option<String> {
    for name in fs.list(dir).ok()? {
        let p = dir.join(&name);
        if fs.is_dir(&p) {
            if recurse
                && !name.starts_with('.')
                && let Some(f) = first_jsonnet(fs, root, &p, recurse)
            {
                return Some(f);
            }
        } else if name.ends_with(".jsonnet") {
            return Some(p.strip_prefix(root).unwrap_or(&p).display().to_string());
        }
    }
    None
}

/// Sets the destination namespace on rendered objects that have none and whose kind is
/// namespaced (a kind defined by a CRD in the same render follows that CRD's scope).
fn default_namespace(objects: &mut [Rendered], namespace: &str) {
    if namespace.is_empty() {
        return;
    }
    let cluster_scoped_crds: BTreeSet<(String, String)> = objects
        .iter()
        .filter(|r| shipway_model::crd::is_crd(&r.object))
        .filter(|r| r.object.field("spec.scope").and_then(Value::as_str) == Some("Cluster"))
        .filter_map(|r| {
            let group = r.object.field("spec.group")?.as_str()?.to_string();
            let kind = r.object.field("spec.names.kind")?.as_str()?.to_string();
            Some((group, kind))
        })
        .collect();
    for r in objects {
        let o = &mut r.object;
        let namespaced = Kinds::is_namespaced(o.group(), &o.kind)
            && !cluster_scoped_crds.contains(&(o.group().to_string(), o.kind.clone()));
        if namespaced && o.metadata.namespace.as_deref().is_none_or(str::is_empty) {
            o.metadata.namespace = Some(namespace.to_string());
        }
    }
}

/// A tree with one file's contents replaced (the edited kustomization).
struct Overlay<'a> {
    base: &'a dyn FileSystem,
    path: PathBuf,
    contents: Vec<u8>,
}

impl FileSystem for Overlay<'_> {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        if path == self.path {
            Ok(self.contents.clone())
        } else {
            self.base.read(path)
        }
    }
    fn is_dir(&self, path: &Path) -> bool {
        path != self.path && self.base.is_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        path == self.path || self.base.exists(path)
    }
    fn real_path(&self, path: &Path) -> io::Result<PathBuf> {
        self.base.real_path(path)
    }
    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        self.base.list(path)
    }
}

/// A directory source's tree with the files `include`/`exclude` leave out hidden (matched
/// against the path relative to the source directory, as Argo's `findManifests`).
struct Filtered<'a> {
    base: &'a dyn FileSystem,
    root: PathBuf,
    include: Option<String>,
    exclude: Option<String>,
}

impl Filtered<'_> {
    fn hidden(&self, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return false;
        };
        if self.base.is_dir(path) {
            return false;
        }
        let rel = rel.to_string_lossy();
        self.exclude
            .as_deref()
            .is_some_and(|g| glob::matches(g, &rel))
            || self
                .include
                .as_deref()
                .is_some_and(|g| !glob::matches(g, &rel))
    }
}

impl FileSystem for Filtered<'_> {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        if self.hidden(path) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "excluded"));
        }
        self.base.read(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.base.is_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        !self.hidden(path) && self.base.exists(path)
    }
    fn real_path(&self, path: &Path) -> io::Result<PathBuf> {
        self.base.real_path(path)
    }
    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        Ok(self
            .base
            .list(path)?
            .into_iter()
            .filter(|n| !self.hidden(&path.join(n)))
            .collect())
    }
}
