//! The build itself: load a kustomization, accumulate its resources (recursing into bases and
//! components), run generators and transformers in kustomize's order, then fix names, resolve
//! vars, sort and print.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use shipway_model::{Document, Selector, parse_documents};

use crate::config::TransformerConfig;
use crate::fs::{FileSystem, normalize};
use crate::generate::{self, Loader, string_pairs};
use crate::kustfile::{FILE_NAMES, Kustomization};
use crate::origin::Origin;
use crate::resource::{Behavior, Gvk, Resource};
use crate::{
    Error, LoadRestrictor, Options, Reorder, emit, jsonpatch, nameref, smp, transform, vars,
};

/// Resources gathered so far, with the field specs and vars that came with them.
#[derive(Default)]
pub(crate) struct Acc {
    pub res: Vec<Resource>,
    /// Shared: most levels use exactly the defaults, and copying them per level was most of
    /// the time of a small build.
    pub config: Arc<TransformerConfig>,
    pub vars: Vec<Value>,
}

/// The key two ids share when kustomize counts them equal (same GVK, name, effective namespace).
fn id_key(id: &crate::resource::ResId) -> String {
    format!(
        "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
        id.gvk.group,
        id.gvk.version,
        id.gvk.kind,
        id.name,
        id.effective_namespace()
    )
}

fn index_ids(index: &mut HashMap<String, Vec<usize>>, r: &Resource, i: usize) {
    for id in r.all_ids() {
        let list = index.entry(id_key(&id)).or_default();
        if !list.contains(&i) {
            list.push(i);
        }
    }
}

impl Acc {
    /// The keys of the current ids, for appending many resources without a quadratic scan.
    fn id_keys(&self) -> HashSet<String> {
        self.res.iter().map(|r| id_key(&r.cur_id())).collect()
    }

    /// Appends a resource, refusing an id already present; `keys` is [`Acc::id_keys`], kept
    /// up to date.
    fn append(&mut self, r: Resource, keys: &mut HashSet<String>) -> Result<(), String> {
        let id = r.cur_id();
        if !keys.insert(id_key(&id)) {
            return Err(format!(
                "may not add resource with an already registered id: {}",
                id.id_string()
            ));
        }
        self.res.push(r);
        Ok(())
    }

    /// Adds a generated resource, merging or replacing one of the same id as its behaviour says.
    /// Every id (current and earlier) of every resource, to the resources that had it.
    fn any_id_index(&self) -> HashMap<String, Vec<usize>> {
        let mut index: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in self.res.iter().enumerate() {
            index_ids(&mut index, r, i);
        }
        index
    }

    /// `index` is [`Acc::any_id_index`], kept up to date.
    fn absorb(
        &mut self,
        mut r: Resource,
        index: &mut HashMap<String, Vec<usize>>,
    ) -> Result<(), String> {
        let id = r.cur_id();
        let matches: Vec<usize> = index.get(&id_key(&id)).cloned().unwrap_or_default();
        let behavior = r.generated.unwrap_or_default();
        match matches.as_slice() {
            [] => match behavior {
                Behavior::Create => {
                    index_ids(index, &r, self.res.len());
                    self.res.push(r);
                    Ok(())
                }
                _ => Err(format!(
                    "id {} does not exist; cannot merge or replace",
                    id.id_string()
                )),
            },
            [i] => {
                let old = self.res[*i].clone();
                match behavior {
                    Behavior::Create => {
                        return Err(format!(
                            "id {} exists; behavior must be merge or replace",
                            id.id_string()
                        ));
                    }
                    Behavior::Replace => copy_merge_meta(&mut r, &old),
                    Behavior::Merge => {
                        copy_merge_meta(&mut r, &old);
                        for field in ["data", "binaryData"] {
                            let mut merged = serde_json::Map::new();
                            if let Some(Value::Object(m)) = old.obj.get(field) {
                                merged.extend(m.clone());
                            }
                            if let Some(Value::Object(m)) = r.obj.get(field) {
                                merged.extend(m.clone());
                            }
                            if let Value::Object(o) = &mut r.obj {
                                if merged.is_empty() {
                                    o.remove(field);
                                } else {
                                    o.insert(field.into(), Value::Object(merged));
                                }
                            }
                        }
                        if old.origin.is_some() {
                            r.origin = old.origin.clone();
                        }
                    }
                }
                index_ids(index, &r, *i);
                self.res[*i] = r;
                Ok(())
            }
            _ => Err(format!(
                "found multiple objects that could accept merge of {}",
                id.id_string()
            )),
        }
    }

    fn merge(&mut self, other: Acc, keys: &mut HashSet<String>) -> Result<(), String> {
        for r in other.res {
            self.append(r, keys)?;
        }
        merge_config(&mut self.config, &other.config);
        for v in other.vars {
            let name = v.get("name").and_then(Value::as_str).unwrap_or("");
            if self
                .vars
                .iter()
                .any(|x| x.get("name").and_then(Value::as_str) == Some(name))
            {
                return Err(format!("var '{name}' already encountered"));
            }
            self.vars.push(v);
        }
        Ok(())
    }
}

/// Merges `src` into `dst`, copying only when something is really added.
fn merge_config(dst: &mut Arc<TransformerConfig>, src: &Arc<TransformerConfig>) {
    if Arc::ptr_eq(dst, src) || **dst == **src {
        return;
    }
    if **dst == TransformerConfig::default() {
        *dst = Arc::clone(src);
        return;
    }
    Arc::make_mut(dst).merge(src);
}

const ORIGIN: &str = "config.kubernetes.io/origin";
const TRANSFORMATIONS: &str = "alpha.config.kubernetes.io/transformations";
const LOCAL_CONFIG: &str = "config.kubernetes.io/local-config";

/// Kustomize's `CopyMergeMetaDataFieldsFrom`: labels and annotations merged (the new ones win),
/// name, namespace and build history taken from the old resource.
fn copy_merge_meta(r: &mut Resource, old: &Resource) {
    let merge = |a: Vec<(String, String)>, b: Vec<(String, String)>| {
        let mut out = a;
        for (k, v) in b {
            match out.iter_mut().find(|(ok, _)| *ok == k) {
                Some(slot) => slot.1 = v,
                None => out.push((k, v)),
            }
        }
        out
    };
    let labels = merge(old.string_map("labels"), r.string_map("labels"));
    r.set_string_map("labels", labels);
    let annotations = merge(old.string_map("annotations"), r.string_map("annotations"));
    r.set_string_map("annotations", annotations);
    let name = old.name().to_string();
    let ns = old.namespace().to_string();
    r.set_name(&name);
    r.set_namespace(&ns);
    r.prev = old.prev.clone();
    r.prefixes = old.prefixes.clone();
    r.suffixes = old.suffixes.clone();
    r.ref_var_names = old.ref_var_names.clone();
    if r.transformations.is_empty() {
        r.transformations = old.transformations.clone();
    }
    // The hash flag survives only when both sides asked for it.
    r.needs_hash = r.needs_hash && old.needs_hash;
}

/// Reads files under one kustomization root.
pub(crate) struct Ldr<'a> {
    pub fs: &'a dyn FileSystem,
    pub root: PathBuf,
    pub restrict: bool,
    /// The root with symlinks resolved, looked up once.
    pub root_real: std::cell::OnceCell<PathBuf>,
}

impl Ldr<'_> {
    /// `root/rel`, refused under the rootOnly restrictor when its links lead out of the root.
    pub(crate) fn resolve(&self, rel: &str) -> Result<PathBuf, String> {
        let p = normalize(&self.root.join(rel));
        if self.restrict {
            let real = self
                .fs
                .real_path(&p)
                .map_err(|e| format!("evalsymlink failure on '{}' : {e}", p.display()))?;
            let root = self.root_real.get_or_init(|| {
                self.fs
                    .real_path(&self.root)
                    .unwrap_or_else(|_| self.root.clone())
            });
            if !real.starts_with(root) {
                return Err(format!(
                    "security; file '{}' is not in or below '{}'",
                    real.display(),
                    root.display()
                ));
            }
        }
        Ok(p)
    }

    /// Whether `path` (below the root, its parent free of links) is itself a link: its real path
    /// is not its parent's real path joined with its name.
    pub(crate) fn is_link(&self, path: &Path) -> bool {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        match (self.fs.real_path(parent), self.fs.real_path(path)) {
            (Ok(parent), Ok(real)) => real != parent.join(name),
            _ => false,
        }
    }
}

impl Loader for Ldr<'_> {
    fn load(&self, rel: &str) -> Result<Vec<u8>, String> {
        let p = self.resolve(rel)?;
        self.fs
            .read(&p)
            .map_err(|e| format!("{}: {e}", p.display()))
    }
}

/// Parses YAML/JSON text into resources, expanding `*List` kinds, skipping empty documents.
pub(crate) fn resources_from_text(file: &str, text: &str) -> Result<Vec<Resource>, Error> {
    resources_from_text_with(file, text, false)
}

/// [`resources_from_text`]; with `generate_name`, an object with `metadata.generateName` and no
/// name is accepted (its name left empty for whoever creates it to fill in).
pub(crate) fn resources_from_text_with(
    file: &str,
    text: &str,
    generate_name: bool,
) -> Result<Vec<Resource>, Error> {
    let mut docs = parse_documents(file, text).map_err(Error::Load)?;
    for d in &mut docs {
        crate::v3scalars::fix(d, text);
    }
    // (value, its document for errors, the document it came from: a List's items have one but
    // not the other).
    let mut queue: std::collections::VecDeque<(Value, Option<&Document>, &Document)> =
        docs.iter().map(|d| (d.value.clone(), Some(d), d)).collect();
    let mut out = Vec::new();
    while let Some((v, doc, src)) = queue.pop_front() {
        match &v {
            Value::Null => continue,
            Value::Object(m) if m.is_empty() => continue,
            Value::Object(m) => {
                let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
                if kind.ends_with("List") && m.contains_key("items") {
                    match m.get("items") {
                        Some(Value::Array(items)) => {
                            for it in items {
                                queue.push_back((it.clone(), None, src));
                            }
                            continue;
                        }
                        Some(Value::Null) => continue,
                        _ => {
                            return Err(at(doc, file, format!("expected array in {kind}/items")));
                        }
                    }
                }
                if kind.is_empty() {
                    return Err(at(doc, file, "missing kind in object"));
                }
                let named = m
                    .get("metadata")
                    .and_then(|md| md.get("name"))
                    .is_some_and(|n| !crate::resource::scalar_string(n).is_empty());
                let generated = generate_name
                    && m.get("metadata")
                        .and_then(|md| md.get("generateName"))
                        .is_some_and(|n| !crate::resource::scalar_string(n).is_empty());
                // Kustomize requires a name on everything but lists.
                if !named && !generated && !kind.ends_with("List") {
                    return Err(at(
                        doc,
                        file,
                        format!("missing metadata.name in {kind} object"),
                    ));
                }
                let mut v = v;
                if !named
                    && generated
                    && let Some(Value::Object(md)) = v.get_mut("metadata")
                {
                    md.insert("name".into(), Value::String(String::new()));
                }
                stringify_metadata_maps(&mut v);
                let mut r = Resource::new(v);
                r.source = Some(crate::Source {
                    file: src.file.clone(),
                    line: src.line,
                });
                out.push(r);
            }
            _ => return Err(at(doc, file, "a resource must be a YAML mapping")),
        }
    }
    Ok(out)
}

/// Labels and annotations are string maps to kustomize: `happy: true` reads as `"true"`.
fn stringify_metadata_maps(obj: &mut Value) {
    let Some(Value::Object(md)) = obj.get_mut("metadata") else {
        return;
    };
    for field in ["labels", "annotations"] {
        if let Some(Value::Object(m)) = md.get_mut(field) {
            for (_, v) in m.iter_mut() {
                if matches!(v, Value::Bool(_) | Value::Number(_)) {
                    *v = Value::String(crate::resource::scalar_string(v));
                }
            }
        }
    }
}

fn at(doc: Option<&Document>, file: &str, message: impl std::fmt::Display) -> Error {
    match doc {
        Some(d) => Error::At {
            file: d.file.clone(),
            line: d.line,
            column: d.column,
            message: message.to_string(),
        },
        None => Error::Build(format!("{file}: {message}")),
    }
}

/// One kustomization being built.
struct Target<'a> {
    ldr: Ldr<'a>,
    kust: Kustomization,
    /// The kustomization file's name (`kustomization.yaml`, ...).
    file_name: String,
    /// Where this kustomization sits relative to the top one, for origin annotations.
    origin: Origin,
}

pub(crate) struct Builder<'a> {
    pub fs: &'a dyn FileSystem,
    pub opts: &'a Options,
    /// Directories being built, outermost first, to refuse cycles.
    pub stack: Vec<PathBuf>,
    /// Whether the top kustomization has `buildMetadata`: then origins are tracked.
    pub origins: bool,
}

fn berr(e: impl std::fmt::Display) -> Error {
    Error::Build(e.to_string())
}

impl<'a> Builder<'a> {
    fn load_target(&self, dir: &Path) -> Result<Target<'a>, Error> {
        let mut found = Vec::new();
        for name in FILE_NAMES {
            let p = dir.join(name);
            if let Ok(bytes) = self.fs.read(&p) {
                found.push((p, bytes));
            }
        }
        let (path, bytes) = match found.len() {
            0 => {
                return Err(Error::Build(format!(
                    "unable to find one of 'kustomization.yaml', 'kustomization.yml' or \
                     'Kustomization' in directory '{}'",
                    dir.display()
                )));
            }
            1 => found.remove(0),
            _ => {
                return Err(Error::Build(format!(
                    "Found multiple kustomization files under: {}",
                    dir.display()
                )));
            }
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Build(format!("{}: not UTF-8", path.display())))?;
        let file = path.display().to_string();
        let docs = parse_last_key_wins(&file, &text)?;
        let kust = match docs.as_slice() {
            [] => Kustomization {
                file,
                ..Kustomization::default()
            },
            [doc] => Kustomization::from_document(doc)?,
            _ => {
                return Err(Error::Build(format!(
                    "{file}: a kustomization file must hold one document"
                )));
            }
        };
        Ok(Target {
            ldr: Ldr {
                fs: self.fs,
                root: dir.to_path_buf(),
                restrict: self.opts.load_restrictor == LoadRestrictor::RootOnly,
                root_real: std::cell::OnceCell::new(),
            },
            kust,
            file_name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            origin: Origin::default(),
        })
    }

    /// Builds the top kustomization in `dir` and prints it.
    pub fn run(&mut self, dir: &Path) -> Result<String, Error> {
        let mut out = String::new();
        for (i, r) in self.render(dir)?.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(&emit::to_yaml(&r.obj));
        }
        Ok(out)
    }

    /// Builds the top kustomization in `dir`: its resources in output order.
    pub fn render(&mut self, dir: &Path) -> Result<Vec<Resource>, Error> {
        let dir = normalize(dir);
        let t = self.load_target(&dir)?;
        self.origins = !t.kust.build_metadata.is_empty();
        self.stack.push(dir.clone());
        let mut acc = self.accumulate(&t, Acc::default())?;
        // Hash suffixes, then references to the new names, then vars.
        for r in &mut acc.res {
            if r.needs_hash {
                let h = generate::hash_of(&r.obj);
                r.store_previous_id();
                let name = format!("{}-{h}", r.name());
                r.set_name(&name);
            }
        }
        let backrefs = acc.config.name_reference.clone();
        nameref::fix(&mut acc.res, &backrefs).map_err(berr)?;
        vars::resolve(&mut acc).map_err(berr)?;
        acc.res
            .retain(|r| r.annotation(LOCAL_CONFIG).is_none_or(|v| v == "false"));
        self.sort(&t.kust, &mut acc.res)?;
        let keep_origin = t
            .kust
            .build_metadata
            .iter()
            .any(|m| m == "originAnnotations");
        let keep_transformations = t
            .kust
            .build_metadata
            .iter()
            .any(|m| m == "transformerAnnotations");
        let managed_by = t.kust.build_metadata.iter().any(|m| m == "managedByLabel");
        for r in &mut acc.res {
            // Kustomize keeps its own bookkeeping in every resource's annotations and removes
            // the map when that leaves it empty: an empty or null `annotations` never comes
            // out (an empty `labels` does).
            if let Some(Value::Object(meta)) = r.obj.get_mut("metadata")
                && meta
                    .get("annotations")
                    .is_some_and(|a| a.is_null() || a.as_object().is_some_and(|a| a.is_empty()))
            {
                meta.remove("annotations");
            }
            if managed_by {
                let mut labels = r.string_map("labels");
                labels.retain(|(k, _)| k != "app.kubernetes.io/managed-by");
                labels.push((
                    "app.kubernetes.io/managed-by".into(),
                    "kustomize-v5.5.0".into(),
                ));
                r.set_string_map("labels", labels);
            }
            if keep_origin && let Some(o) = &r.origin {
                r.set_annotation(ORIGIN, &o.to_yaml());
            }
            if keep_transformations && !r.transformations.is_empty() {
                let text = crate::origin::list_to_yaml(&r.transformations);
                r.set_annotation(TRANSFORMATIONS, &text);
            }
        }
        Ok(acc.res)
    }

    fn sort(&self, kust: &Kustomization, res: &mut Vec<Resource>) -> Result<(), Error> {
        if let Some(so) = &kust.sort_options {
            let order = so.get("order").and_then(Value::as_str).unwrap_or("fifo");
            match order {
                "legacy" => {
                    let lso = so.get("legacySortOptions");
                    let list = |k: &str| -> Option<Vec<String>> {
                        lso.and_then(|l| l.get(k))
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str().map(str::to_string))
                                    .collect()
                            })
                    };
                    let first = list("orderFirst");
                    let last = list("orderLast");
                    crate::sort::legacy(res, first.as_deref(), last.as_deref());
                }
                "fifo" => {
                    if so.get("legacySortOptions").is_some() {
                        return Err(Error::Build(
                            "the field 'sortOptions.legacySortOptions' is set but the selected \
                             sort order is 'fifo', not 'legacy'"
                                .into(),
                        ));
                    }
                }
                _ => {
                    return Err(Error::Build(
                        "the field 'sortOptions.order' must be one of [fifo, legacy]".into(),
                    ));
                }
            }
            return Ok(());
        }
        if self.opts.reorder == Reorder::Legacy {
            crate::sort::legacy(res, None, None);
        }
        Ok(())
    }

    fn accumulate(&mut self, t: &Target<'a>, mut ra: Acc) -> Result<Acc, Error> {
        let k = &t.kust;
        ra = self.accumulate_resources(t, ra, &k.resources, &k.resource_paths)?;
        // The user's configurations come first and the defaults are merged into them, so a
        // user spec shadows the default it narrows (kustomize's observable behaviour).
        let tc = if k.configurations.is_empty() {
            TransformerConfig::defaults_shared()
        } else {
            let mut tc = TransformerConfig::default();
            for c in &k.configurations {
                let bytes = t.ldr.load(c).map_err(berr)?;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                for doc in parse_documents(c, &text).map_err(Error::Load)? {
                    let more = TransformerConfig::from_value(&doc.value)
                        .map_err(|e| Error::Build(format!("{c}: {e}")))?;
                    tc.merge(&more);
                }
            }
            tc.merge(TransformerConfig::defaults());
            Arc::new(tc)
        };
        merge_config(&mut ra.config, &tc);
        for c in &k.crds {
            let more = crate::crds::load(&t.ldr, c).map_err(berr)?;
            merge_config(&mut ra.config, &Arc::new(more));
        }
        self.run_generators(t, &mut ra)?;
        for c in &k.components {
            let dir = normalize(&t.ldr.root.join(c));
            let sub = self.enter(&dir, t.origin.append(c))?;
            if !sub.kust.is_component() {
                return Err(Error::Build(format!(
                    "accumulating components: expected kind 'Component' for path '{}' but got '{}'",
                    dir.display(),
                    if sub.kust.kind.is_empty() {
                        "Kustomization"
                    } else {
                        &sub.kust.kind
                    }
                )));
            }
            ra = self.accumulate(&sub, ra)?;
            self.stack.pop();
        }
        self.run_transformers(t, &mut ra)?;
        for v in &k.vars {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let target = vars::target_of(v);
            let matched: Vec<usize> = (0..ra.res.len())
                .filter(|&i| ra.res[i].all_ids().iter().any(&target))
                .collect();
            if matched.len() > 1 {
                return Err(Error::Build(format!(
                    "found {} resId matches for var {name} (unable to disambiguate)",
                    matched.len()
                )));
            }
            if let [i] = matched.as_slice() {
                ra.res[*i].ref_var_names.push(name.clone());
            }
            if ra
                .vars
                .iter()
                .any(|x| x.get("name").and_then(Value::as_str) == Some(name.as_str()))
            {
                return Err(Error::Build(format!("var '{name}' already encountered")));
            }
            ra.vars.push(v.clone());
        }
        Ok(ra)
    }

    fn enter(&mut self, dir: &Path, origin: Origin) -> Result<Target<'a>, Error> {
        if self.stack.iter().any(|d| d == dir) {
            return Err(Error::Build(format!(
                "cycle detected: candidate root '{}' contains visited root",
                dir.display()
            )));
        }
        let mut t = self.load_target(dir)?;
        t.origin = origin;
        self.stack.push(dir.to_path_buf());
        Ok(t)
    }

    /// Accumulates `paths` (files or kustomization directories); `places` names the entries
    /// they came from in the kustomization file (`resources[2]`), so errors can point there.
    fn accumulate_resources(
        &mut self,
        t: &Target<'a>,
        mut ra: Acc,
        paths: &[String],
        places: &[String],
    ) -> Result<Acc, Error> {
        let mut keys = ra.id_keys();
        for (i, path) in paths.iter().enumerate() {
            if let Err(e) = self.accumulate_one(t, &mut ra, &mut keys, path) {
                return Err(match (e, places.get(i)) {
                    (Error::Build(m), Some(place)) => t.kust.error_at(place, m),
                    (e, _) => e,
                });
            }
        }
        Ok(ra)
    }

    fn accumulate_one(
        &mut self,
        t: &Target<'a>,
        ra: &mut Acc,
        keys: &mut HashSet<String>,
        path: &str,
    ) -> Result<(), Error> {
        if is_remote(path) {
            return Err(Error::Build(format!(
                "resource {path:?} is remote: Shipway reads kustomizations from local \
                 files only; vendor the base into the repository or point a GitOps source \
                 at it"
            )));
        }
        let full = normalize(&t.ldr.root.join(path));
        if self.fs.is_dir(&full) {
            let sub = self.enter(&full, t.origin.append(path))?;
            if sub.kust.is_component() {
                return Err(Error::Build(format!(
                    "expected kind != 'Component' for path '{}'",
                    full.display()
                )));
            }
            let sub_ra = self.accumulate(&sub, Acc::default())?;
            self.stack.pop();
            ra.merge(sub_ra, keys).map_err(|e| {
                Error::Build(format!(
                    "accumulating resources: recursed merging from path '{}': {e}",
                    full.display()
                ))
            })?;
            return Ok(());
        }
        let bytes = t.ldr.load(path).map_err(|e| {
            Error::Build(format!(
                "accumulating resources: accumulation err='accumulating resources from '{path}': {e}'"
            ))
        })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Build(format!("{}: not UTF-8", full.display())))?;
        let file = full.display().to_string();
        for mut r in resources_from_text(&file, &text)? {
            if self.origins {
                r.origin = Some(t.origin.append(path));
            }
            ra.append(r, keys).map_err(|e| {
                Error::Build(format!(
                    "accumulating resources: merging resources from '{path}': {e}"
                ))
            })?;
        }
        Ok(())
    }

    fn run_generators(&mut self, t: &Target<'a>, ra: &mut Acc) -> Result<(), Error> {
        let k = &t.kust;
        let global = k.generator_options.as_ref();
        let mut index = ra.any_id_index();
        for args in &k.config_map_generator {
            let mut r = generate::generate(args, global, false, &t.ldr).map_err(berr)?;
            if self.origins {
                r.origin = Some(t.origin.builtin(&t.file_name, "ConfigMapGenerator"));
            }
            ra.absorb(r, &mut index).map_err(berr)?;
        }
        for args in &k.secret_generator {
            let mut r = generate::generate(args, global, true, &t.ldr).map_err(berr)?;
            if self.origins {
                r.origin = Some(t.origin.builtin(&t.file_name, "SecretGenerator"));
            }
            ra.absorb(r, &mut index).map_err(berr)?;
        }
        for cfg in self.plugin_configs(t, &k.generators)? {
            let kind = cfg.kind().to_string();
            let args = plugin_args(&cfg.obj);
            let secret = match kind.as_str() {
                "ConfigMapGenerator" => false,
                "SecretGenerator" => true,
                other => return Err(unsupported_plugin("generators", other)),
            };
            let mut r = generate::generate(&args, None, secret, &t.ldr).map_err(berr)?;
            if self.origins {
                r.origin = plugin_origin(&cfg);
            }
            ra.absorb(r, &mut index).map_err(berr)?;
        }
        Ok(())
    }

    /// Plugin configs listed under `generators`/`transformers`: inline documents or files (or
    /// kustomizations producing them).
    fn plugin_configs(
        &mut self,
        t: &Target<'a>,
        entries: &[String],
    ) -> Result<Vec<Resource>, Error> {
        let mut out = Vec::new();
        let mut paths = Vec::new();
        for e in entries {
            match resources_from_text(&t.kust.file, e) {
                Ok(rs) if !rs.is_empty() => {
                    for mut r in rs {
                        if self.origins {
                            r.origin = Some(t.origin.append(&t.file_name));
                        }
                        out.push(r);
                    }
                }
                _ => paths.push(e.clone()),
            }
        }
        let acc = self.accumulate_resources(t, Acc::default(), &paths, &[])?;
        out.extend(acc.res);
        Ok(out)
    }

    fn run_transformers(&mut self, t: &Target<'a>, ra: &mut Acc) -> Result<(), Error> {
        let k = &t.kust;
        let tc = Arc::clone(&ra.config);
        let origins = self.origins;
        let bo = |kind: &str| origins.then(|| t.origin.builtin(&t.file_name, kind));
        // patchesStrategicMerge
        for (n, p) in k.patches_strategic_merge.iter().enumerate() {
            let where_ = format!("patchesStrategicMerge[{n}]");
            let patches = match resources_from_text(&t.kust.file, p) {
                Ok(rs) if !rs.is_empty() => rs,
                _ => {
                    let bytes = t.ldr.load(p).map_err(|e| t.kust.error_at(&where_, e))?;
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    resources_from_text(p, &text)?
                }
            };
            for patch in patches {
                let i = find_by_id(&ra.res, &patch).map_err(|e| t.kust.error_at(&where_, e))?;
                apply_smp_to(&mut ra.res, &[i], &patch, false, false)
                    .map_err(|e| t.kust.error_at(&where_, e))?;
            }
        }
        if !k.patches_strategic_merge.is_empty() {
            drop_empties(&mut ra.res);
            mark(&mut ra.res, bo("PatchStrategicMergeTransformer"));
        }
        // patches
        for (i, p) in k.patches.iter().enumerate() {
            self.apply_patch_entry(t, ra, p, false)
                .map_err(|e| place(t, &format!("patches[{i}]"), e))?;
            mark(&mut ra.res, bo("PatchTransformer"));
        }
        if !k.namespace.is_empty() {
            for r in &mut ra.res {
                transform::namespace(r, &k.namespace, &tc.namespace).map_err(berr)?;
            }
            check_unique(&ra.res)?;
            mark(&mut ra.res, bo("NamespaceTransformer"));
        }
        if !k.name_prefix.is_empty() {
            for r in &mut ra.res {
                transform::prefix_suffix(r, &k.name_prefix, "", &tc.name_prefix, true)
                    .map_err(berr)?;
            }
            mark(&mut ra.res, bo("PrefixTransformer"));
        }
        if !k.name_suffix.is_empty() {
            for r in &mut ra.res {
                transform::prefix_suffix(r, "", &k.name_suffix, &tc.name_suffix, false)
                    .map_err(berr)?;
            }
        }
        if !k.name_suffix.is_empty() {
            mark(&mut ra.res, bo("SuffixTransformer"));
        }
        for l in &k.labels {
            let pairs = string_pairs(l.get("pairs"));
            let include_selectors = l
                .get("includeSelectors")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let include_templates = l
                .get("includeTemplates")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let mut specs = crate::config::specs_from(l.get("fields")).map_err(berr)?;
            if include_selectors {
                crate::config::merge_specs(&mut specs, &tc.common_labels);
            } else {
                if include_templates {
                    crate::config::merge_specs(&mut specs, &tc.template_labels);
                }
                crate::config::merge_specs(
                    &mut specs,
                    &[crate::config::FieldSpec {
                        gvk: Gvk::default(),
                        path: "metadata/labels".into(),
                        create: true,
                    }],
                );
            }
            for r in &mut ra.res {
                transform::labels(r, &pairs, &specs).map_err(berr)?;
            }
            mark(&mut ra.res, bo("LabelTransformer"));
        }
        // Kustomize configures the commonLabels transformer whenever any labels are set.
        if !k.common_labels.is_empty() || !k.labels.is_empty() {
            for r in &mut ra.res {
                transform::labels(r, &k.common_labels, &tc.common_labels).map_err(berr)?;
            }
            mark(&mut ra.res, bo("LabelTransformer"));
        }
        if !k.common_annotations.is_empty() {
            for r in &mut ra.res {
                transform::annotations(r, &k.common_annotations, &tc.common_annotations)
                    .map_err(berr)?;
            }
            mark(&mut ra.res, bo("AnnotationsTransformer"));
        }
        for (i, p) in k.patches_json6902.iter().enumerate() {
            self.apply_patch_entry(t, ra, p, true)
                .map_err(|e| place(t, &format!("patchesJson6902[{i}]"), e))?;
            mark(&mut ra.res, bo("PatchJson6902Transformer"));
        }
        if !k.replicas.is_empty() {
            // Replicas entries name resources; index the names (current and earlier) once.
            let by_name = transform::names_index(&ra.res);
            for rep in &k.replicas {
                transform::replicas(&mut ra.res, rep, &tc.replicas, &by_name).map_err(berr)?;
                mark(&mut ra.res, bo("ReplicaCountTransformer"));
            }
        }
        // Each resource takes the entries in order (what running them one by one over all
        // resources does), skipping those that match none of its images.
        let imgs: Vec<transform::Image> =
            k.images.iter().map(transform::Image::from_value).collect();
        if !imgs.is_empty() {
            for r in &mut ra.res {
                transform::images(r, &imgs, &tc.images).map_err(berr)?;
            }
        }
        for _ in &imgs {
            mark(&mut ra.res, bo("ImageTagTransformer"));
        }
        for (i, rep) in k.replacements.iter().enumerate() {
            crate::replacements::apply(&mut ra.res, rep, &t.ldr)
                .map_err(|e| place(t, &format!("replacements[{i}]"), berr(e)))?;
        }
        if !k.replacements.is_empty() {
            crate::replacements::check(&ra.res).map_err(|e| place(t, "replacements", berr(e)))?;
        }
        if !k.replacements.is_empty() {
            mark(&mut ra.res, bo("ReplacementTransformer"));
        }
        for cfg in self.plugin_configs(t, &k.transformers)? {
            self.run_plugin_transformer(t, ra, &cfg)?;
            if self.origins {
                mark(&mut ra.res, plugin_origin(&cfg));
            }
        }
        ra.res
            .retain(|r| !r.obj.as_object().is_some_and(|m| m.is_empty()));
        Ok(())
    }

    fn run_plugin_transformer(
        &mut self,
        t: &Target<'a>,
        ra: &mut Acc,
        cfg: &Resource,
    ) -> Result<(), Error> {
        let o = &cfg.obj;
        let specs = |k: &str| crate::config::specs_from(o.get(k)).map_err(berr);
        match cfg.kind() {
            "PrefixSuffixTransformer" | "PrefixTransformer" | "SuffixTransformer" => {
                let prefix = o.get("prefix").and_then(Value::as_str).unwrap_or("");
                let suffix = o.get("suffix").and_then(Value::as_str).unwrap_or("");
                let fs = specs("fieldSpecs")?;
                for r in &mut ra.res {
                    if !prefix.is_empty() {
                        transform::prefix_suffix(r, prefix, "", &fs, true).map_err(berr)?;
                    }
                    if !suffix.is_empty() {
                        transform::prefix_suffix(r, "", suffix, &fs, false).map_err(berr)?;
                    }
                }
            }
            "LabelTransformer" => {
                let pairs = string_pairs(o.get("labels"));
                let fs = specs("fieldSpecs")?;
                for r in &mut ra.res {
                    transform::labels(r, &pairs, &fs).map_err(berr)?;
                }
            }
            "AnnotationsTransformer" => {
                let pairs = string_pairs(o.get("annotations"));
                let fs = specs("fieldSpecs")?;
                for r in &mut ra.res {
                    transform::annotations(r, &pairs, &fs).map_err(berr)?;
                }
            }
            "NamespaceTransformer" => {
                let ns = o
                    .get("metadata")
                    .and_then(|m| m.get("namespace"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let fs = specs("fieldSpecs")?;
                if !ns.is_empty() {
                    for r in &mut ra.res {
                        transform::namespace(r, ns, &fs).map_err(berr)?;
                    }
                }
            }
            "ImageTagTransformer" => {
                let img = transform::Image::from_value(o.get("imageTag").unwrap_or(&Value::Null));
                let fs = specs("fieldSpecs")?;
                for r in &mut ra.res {
                    transform::image(r, &img, &fs).map_err(berr)?;
                }
            }
            "ReplicaCountTransformer" => {
                let fs = specs("fieldSpecs")?;
                let by_name = transform::names_index(&ra.res);
                transform::replicas(
                    &mut ra.res,
                    o.get("replica").unwrap_or(&Value::Null),
                    &fs,
                    &by_name,
                )
                .map_err(berr)?;
            }
            "PatchTransformer" => {
                self.apply_patch_entry(t, ra, o, false)?;
            }
            "PatchJson6902Transformer" => {
                self.apply_patch_entry(t, ra, o, true)?;
            }
            "PatchStrategicMergeTransformer" => {
                let mut texts = Vec::new();
                for p in o
                    .get("paths")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(p) = p.as_str() {
                        let bytes = t.ldr.load(p).map_err(berr)?;
                        texts.push((p.to_string(), String::from_utf8_lossy(&bytes).into_owned()));
                    }
                }
                if let Some(p) = o.get("patches").and_then(Value::as_str) {
                    texts.push((t.kust.file.clone(), p.to_string()));
                }
                for (file, text) in texts {
                    for patch in resources_from_text(&file, &text)? {
                        let i = find_by_id(&ra.res, &patch).map_err(berr)?;
                        apply_smp_to(&mut ra.res, &[i], &patch, false, false).map_err(berr)?;
                    }
                }
            }
            "ReplacementTransformer" => {
                for rep in o
                    .get("replacements")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    crate::replacements::apply(&mut ra.res, rep, &t.ldr).map_err(berr)?;
                }
                crate::replacements::check(&ra.res).map_err(berr)?;
            }
            other => return Err(unsupported_plugin("transformers", other)),
        }
        ra.res
            .retain(|r| !r.obj.as_object().is_some_and(|m| m.is_empty()));
        Ok(())
    }

    /// One `patches` (or `patchesJson6902`) entry.
    fn apply_patch_entry(
        &mut self,
        t: &Target<'a>,
        ra: &mut Acc,
        p: &Value,
        json_only: bool,
    ) -> Result<(), Error> {
        let inline = p
            .get("patch")
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or("");
        let path = p.get("path").and_then(Value::as_str).unwrap_or("");
        let (text, source) = match (inline.is_empty(), path.is_empty()) {
            (true, true) => return Err(berr("must specify one of patch and path")),
            (false, false) => return Err(berr("patch and path can't be set at the same time")),
            (false, true) => (inline.to_string(), t.kust.file.clone()),
            (true, false) => {
                let bytes = t.ldr.load(path).map_err(|e| {
                    berr(format!(
                        "failed to get the patch file from path({path}): {e}"
                    ))
                })?;
                (
                    String::from_utf8_lossy(&bytes).into_owned(),
                    path.to_string(),
                )
            }
        };
        let options = p.get("options");
        let opt = |k: &str| {
            options
                .and_then(|o| o.get(k))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let target = p.get("target").filter(|v| !v.is_null());
        // A list of operations (JSON or YAML) is a JSON patch; anything else a strategic merge.
        if let Some(ops) = parse_json_patch(&text) {
            let Some(target) = target else {
                return Err(berr(format!(
                    "must specify a target for JSON patch {source}"
                )));
            };
            if ops.as_array().is_some_and(Vec::is_empty) {
                return Err(berr(format!(
                    "the JSON patch {source} has no operations; remove the entry or add some"
                )));
            }
            let selected = select(&ra.res, target).map_err(berr)?;
            for i in selected {
                let r = &mut ra.res[i];
                // `patches` records the id first (a patch may rename); `patchesJson6902` does
                // not, so a rename there leaves references alone, as in kustomize.
                if !json_only {
                    r.store_previous_id();
                }
                apply_json_patch(r, &ops).map_err(berr)?;
            }
            return Ok(());
        }
        if json_only {
            return Err(berr(format!("unable to parse JSON patch from {source}")));
        }
        let patches = resources_from_text(&source, &text)?;
        if patches.is_empty() {
            return Err(berr(format!(
                "unable to parse SM or JSON patch from {source}"
            )));
        }
        if let Some(target) = target {
            if patches.len() > 1 {
                return Err(berr(format!(
                    "Multiple Strategic-Merge Patches in one `patches` entry is not allowed to set `patches.target` field: {source}"
                )));
            }
            let selected = select(&ra.res, target).map_err(berr)?;
            apply_smp_to(
                &mut ra.res,
                &selected,
                &patches[0],
                opt("allowNameChange"),
                opt("allowKindChange"),
            )
            .map_err(berr)?;
        } else {
            for patch in &patches {
                let i = find_by_id(&ra.res, patch).map_err(|e| {
                    berr(format!(
                        "no resource matches strategic merge patch \"{}\": {e}",
                        patch.org_id().id_string()
                    ))
                })?;
                apply_smp_to(
                    &mut ra.res,
                    &[i],
                    patch,
                    opt("allowNameChange"),
                    opt("allowKindChange"),
                )
                .map_err(berr)?;
            }
        }
        ra.res
            .retain(|r| !r.obj.as_object().is_some_and(|m| m.is_empty()));
        Ok(())
    }
}

/// Parses a kustomization the way kustomize reads it: a repeated key replaces the earlier one
/// (go-yaml v2), where Shipway's loader refuses duplicates. The earlier entries are cut out of
/// the text, using the positions the loader reports, and the text is parsed again.
fn parse_last_key_wins(file: &str, text: &str) -> Result<Vec<Document>, Error> {
    let mut text = text.to_string();
    for _ in 0..64 {
        let errs = match parse_documents(file, &text) {
            Ok(docs) => return Ok(docs),
            Err(errs) => errs,
        };
        let firsts: Option<Vec<(usize, usize)>> = errs
            .iter()
            .map(|e| {
                let rest = e.message.split("(first at line ").nth(1)?;
                let (line, rest) = rest.split_once(", column ")?;
                let col = rest.trim_end_matches(')');
                Some((line.parse().ok()?, col.parse().ok()?))
            })
            .collect();
        let Some(mut firsts) = firsts else {
            return Err(Error::Load(errs));
        };
        // Cut from the last occurrence upwards so earlier line numbers stay valid.
        firsts.sort_unstable();
        firsts.dedup();
        let mut lines: Vec<&str> = text.lines().collect();
        for &(line, col) in firsts.iter().rev() {
            let start = line.saturating_sub(1);
            if start >= lines.len() {
                return Err(Error::Load(errs));
            }
            let indent = col.saturating_sub(1);
            let mut end = start + 1;
            while end < lines.len() {
                let l = lines[end];
                let lead = l.len() - l.trim_start().len();
                let trimmed = l.trim_start();
                let is_seq_item = trimmed.starts_with("- ") || trimmed == "-";
                if !trimmed.is_empty() && (lead < indent || (lead == indent && !is_seq_item)) {
                    break;
                }
                end += 1;
            }
            lines.drain(start..end);
        }
        text = lines.join("\n");
        text.push('\n');
    }
    parse_documents(file, &text).map_err(Error::Load)
}

/// The origin of what a generator or transformer plugin config makes: configured in the file
/// the config came from, by the config itself.
fn plugin_origin(cfg: &Resource) -> Option<Origin> {
    let o = cfg.origin.as_ref()?;
    Some(Origin {
        path: String::new(),
        configured_in: o.path.clone(),
        configured_by: Some([
            cfg.api_version().to_string(),
            cfg.kind().to_string(),
            cfg.name().to_string(),
            cfg.namespace().to_string(),
        ]),
    })
}

/// After a transformer ran: resources without an origin take the transformer's, the others
/// record it as a transformation.
fn mark(res: &mut [Resource], origin: Option<Origin>) {
    let Some(origin) = origin else {
        return;
    };
    for r in res {
        if r.origin.is_none() {
            r.origin = Some(origin.clone());
        } else {
            r.transformations.push(origin.clone());
        }
    }
}

/// A build error about a kustomization entry, placed at that entry (errors already placed, in
/// a patch file say, keep their place).
fn place(t: &Target<'_>, path: &str, e: Error) -> Error {
    match e {
        Error::Build(m) => t.kust.error_at(path, m),
        other => other,
    }
}

fn drop_empties(res: &mut Vec<Resource>) {
    res.retain(|r| !r.obj.as_object().is_some_and(|m| m.is_empty()));
}

fn unsupported_plugin(field: &str, kind: &str) -> Error {
    Error::Build(format!(
        "{field}: plugin kind {kind:?} is not supported: Shipway runs kustomize's built-in \
         generators and transformers only, never exec or KRM function plugins"
    ))
}

/// A builtin plugin config as generator arguments: `metadata.name`/`namespace` lifted up.
fn plugin_args(obj: &Value) -> Value {
    let mut args = obj.clone();
    if let Value::Object(m) = &mut args
        && let Some(md) = obj.get("metadata")
    {
        {
            for field in ["name", "namespace"] {
                let missing = m
                    .get(field)
                    .is_none_or(|v| v.as_str().is_some_and(str::is_empty));
                if missing && let Some(n) = md.get(field) {
                    m.insert(field.into(), n.clone());
                }
            }
        }
    }
    args
}

fn is_remote(path: &str) -> bool {
    path.contains("://")
        || path.starts_with("github.com/")
        || path.starts_with("git@")
        || path.starts_with("gitlab.com/")
        || path.starts_with("bitbucket.org/")
}

fn check_unique(res: &[Resource]) -> Result<(), Error> {
    let mut keys = HashSet::new();
    for r in res {
        let id = r.cur_id();
        if !keys.insert(id_key(&id)) {
            return Err(Error::Build(format!(
                "namespace transformation produces ID conflict: {}",
                id.id_string()
            )));
        }
    }
    Ok(())
}

/// The one resource a patch without a target means: any of its ids equal to the patch's.
fn find_by_id(res: &[Resource], patch: &Resource) -> Result<usize, String> {
    let id = patch.org_id();
    // The name check first: it rules out almost every resource without building its ids.
    let hits: Vec<usize> = (0..res.len())
        .filter(|&i| res[i].name() == id.name || res[i].prev.iter().any(|p| p.1 == id.name))
        .filter(|&i| res[i].all_ids().iter().any(|x| x.equals(&id)))
        .collect();
    match hits.as_slice() {
        [i] => Ok(*i),
        [] => Err(format!(
            "no matches for Id {}; failed to find unique target for patch {}",
            id.id_string(),
            id.id_string()
        )),
        _ => Err(format!(
            "multiple matches for Id {}; failed to find unique target for patch {}",
            id.id_string(),
            id.id_string()
        )),
    }
}

/// Applies a strategic merge patch to the selected resources (indices), as kustomize's
/// `ApplySmPatch`: the patch takes the target's apiVersion, the name, kind and namespace stay
/// unless the options allow a change.
fn apply_smp_to(
    res: &mut [Resource],
    selected: &[usize],
    patch: &Resource,
    allow_name: bool,
    allow_kind: bool,
) -> Result<(), String> {
    for &i in selected {
        let r = &mut res[i];
        let mut p = patch.obj.clone();
        if let Value::Object(m) = &mut p {
            m.insert(
                "apiVersion".into(),
                Value::String(r.api_version().to_string()),
            );
        }
        let (name, ns, kind) = (
            r.name().to_string(),
            r.namespace().to_string(),
            r.kind().to_string(),
        );
        if allow_name || allow_kind {
            r.store_previous_id();
        }
        let gvk = r.gvk();
        match smp::apply(&r.obj, &p, &gvk)? {
            None => {
                r.obj = Value::Object(serde_json::Map::new());
                continue;
            }
            Some(v) => r.obj = v,
        }
        if r.obj.as_object().is_some_and(|m| m.is_empty()) {
            continue;
        }
        if !allow_kind {
            r.set_kind(&kind);
        }
        if !allow_name {
            r.set_name(&name);
        }
        r.set_namespace(&ns);
    }
    Ok(())
}

/// Parses a JSON patch: JSON text starting with `[`, or YAML holding a list.
/// Applies a JSON patch the way kustomize's resources see it. Kustomize keeps its bookkeeping
/// (earlier ids, prefixes and suffixes, generator options) in annotations, so a resource that
/// has any carries an annotations map while it is patched: `add` under
/// `/metadata/annotations/` works on it even when the file had none, and is refused on one
/// without bookkeeping. Afterwards the map is read back as strings (numbers and booleans as
/// their text, anything else empty) and dropped when empty. Labels get no such help.
fn apply_json_patch(r: &mut Resource, ops: &Value) -> Result<(), String> {
    let bookkeeping = !r.prev.is_empty()
        || !r.prefixes.is_empty()
        || !r.suffixes.is_empty()
        || r.generated.is_some()
        || r.needs_hash;
    if bookkeeping
        && let Some(Value::Object(meta)) = r.obj.get_mut("metadata")
        && !meta.get("annotations").is_some_and(Value::is_object)
    {
        meta.insert("annotations".into(), Value::Object(Default::default()));
    }
    jsonpatch::apply(&mut r.obj, ops)?;
    if r.name().is_empty() {
        return Err(format!(
            "the JSON patch leaves {} {} without metadata.name; kustomize needs a name on \
             every resource",
            r.kind(),
            r.prev.last().map_or("", |p| p.1.as_str())
        ));
    }
    crate::resource::annotations_as_strings(&mut r.obj, "null");
    // What is left is read back as a string map: a scalar reads as none, a list cannot be read.
    if let Some(Value::Object(meta)) = r.obj.get_mut("metadata") {
        match meta.get("annotations") {
            Some(Value::Array(_)) => {
                return Err(format!(
                    "the JSON patch leaves metadata.annotations of {} a list; annotations must \
                     be a map of strings",
                    r.cur_id().id_string()
                ));
            }
            Some(Value::Object(a)) if !a.is_empty() => {}
            Some(_) => {
                meta.remove("annotations");
            }
            None => {}
        }
    }
    Ok(())
}

fn parse_json_patch(text: &str) -> Option<Value> {
    let t = text.trim_start();
    if t.starts_with('[') {
        return serde_json::from_str(t).ok().or_else(|| {
            parse_documents("patch", t)
                .ok()
                .and_then(|d| d.into_iter().next())
                .map(|d| d.value)
        });
    }
    let docs = parse_documents("patch", text).ok()?;
    match docs.as_slice() {
        [d] if d.value.is_array() => Some(d.value.clone()),
        _ => None,
    }
}

/// Resources a patch `target` selects: regexes on group, version, kind, name and namespace
/// (current or original), label and annotation selectors.
pub(crate) fn select(res: &[Resource], target: &Value) -> Result<Vec<usize>, String> {
    let s = |k: &str| {
        target
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let re = |p: &str| -> Result<Option<regex::Regex>, String> {
        if p.is_empty() {
            return Ok(None);
        }
        regex::Regex::new(&format!("^(?:{p})$"))
            .map(Some)
            .map_err(|e| format!("invalid target regex {p:?}: {e}"))
    };
    let group = re(&s("group"))?;
    let version = re(&s("version"))?;
    let kind = re(&s("kind"))?;
    let name = re(&s("name"))?;
    let namespace = re(&s("namespace"))?;
    let labels = match s("labelSelector") {
        l if l.is_empty() => None,
        l => Some(Selector::parse(&l).map_err(|e| e.to_string())?),
    };
    let annotations = match s("annotationSelector") {
        a if a.is_empty() => None,
        a => Some(Selector::parse(&a).map_err(|e| e.to_string())?),
    };
    let m = |r: &Option<regex::Regex>, v: &str| r.as_ref().is_none_or(|r| r.is_match(v));
    let mut out = Vec::new();
    for (i, r) in res.iter().enumerate() {
        // The kind first: it rules out most resources without building their ids.
        let gvk = r.gvk();
        if !m(&group, &gvk.group) || !m(&version, &gvk.version) || !m(&kind, &gvk.kind) {
            continue;
        }
        if name.is_some() || namespace.is_some() {
            let cur = r.cur_id();
            let org = r.org_id();
            if !m(&namespace, org.effective_namespace())
                && !m(&namespace, cur.effective_namespace())
            {
                continue;
            }
            if !m(&name, &org.name) && !m(&name, &cur.name) {
                continue;
            }
        }
        if let Some(sel) = &labels {
            let map: std::collections::BTreeMap<String, String> =
                r.string_map("labels").into_iter().collect();
            if !sel.matches(&map) {
                continue;
            }
        }
        if let Some(sel) = &annotations {
            let map: std::collections::BTreeMap<String, String> =
                r.string_map("annotations").into_iter().collect();
            if !sel.matches(&map) {
                continue;
            }
        }
        out.push(i);
    }
    Ok(out)
}
