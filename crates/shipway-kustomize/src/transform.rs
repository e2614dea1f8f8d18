//! The built-in transformers that rewrite fields: namespace, name prefix and suffix, labels,
//! annotations, images and replicas.

use serde_json::{Map, Value};

use crate::config::{Create, FieldSpec, split_path, walk};
use crate::resource::{Gvk, Resource};

/// Runs `set` on every field `specs` select in `res`.
pub fn apply_specs(
    res: &mut Resource,
    specs: &[FieldSpec],
    last: Create,
    set: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    // The resource's group, version and kind once, not once per spec.
    let gvk = res.gvk();
    for fs in specs {
        if !gvk.is_selected(&fs.gvk) {
            continue;
        }
        let path = split_path(&fs.path);
        walk(&mut res.obj, &path, fs.create, last, set).map_err(|e| {
            format!(
                "considering field '{}' of object {}: {e}",
                fs.path,
                res.cur_id()
            )
        })?;
    }
    Ok(())
}

/// Sets `key: value` in the map found at each spec's path.
fn set_entries(
    res: &mut Resource,
    pairs: &[(String, String)],
    specs: &[FieldSpec],
) -> Result<(), String> {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        apply_specs(res, specs, Create::Map, &mut |node| match node {
            Value::Object(m) => {
                m.insert(k.clone(), Value::String(v.clone()));
                Ok(())
            }
            Value::Null => {
                let mut m = Map::new();
                m.insert(k.clone(), Value::String(v.clone()));
                *node = Value::Object(m);
                Ok(())
            }
            _ => Err("expected a map".into()),
        })?;
    }
    Ok(())
}

pub fn labels(
    res: &mut Resource,
    pairs: &[(String, String)],
    specs: &[FieldSpec],
) -> Result<(), String> {
    set_entries(res, pairs, specs)
}

pub fn annotations(
    res: &mut Resource,
    pairs: &[(String, String)],
    specs: &[FieldSpec],
) -> Result<(), String> {
    set_entries(res, pairs, specs)
}

fn is_org_selected(res: &Resource, gvk: &Gvk) -> bool {
    res.org_id().gvk.is_selected(gvk)
}

/// `namePrefix` / `nameSuffix`.
pub fn prefix_suffix(
    res: &mut Resource,
    prefix: &str,
    suffix: &str,
    specs: &[FieldSpec],
    is_prefix: bool,
) -> Result<(), String> {
    let org = res.org_id();
    let skip = org.gvk.kind == "CustomResourceDefinition"
        || org.gvk.kind == "Namespace"
        || (org.gvk.group == "apiregistration.k8s.io" && org.gvk.kind == "APIService");
    if skip {
        return Ok(());
    }
    let add = if is_prefix { prefix } else { suffix };
    for fs in specs {
        if !is_org_selected(res, &fs.gvk) {
            continue;
        }
        if fs.path == "metadata/name" && !add.is_empty() {
            {
                if is_prefix {
                    res.prefixes.push(add.to_string());
                } else {
                    res.suffixes.push(add.to_string());
                }
                res.store_previous_id();
            }
        }
        let one = [fs.clone()];
        apply_specs(res, &one, Create::Scalar, &mut |node| {
            let cur = crate::resource::scalar_string(node);
            *node = Value::String(if is_prefix {
                format!("{add}{cur}")
            } else {
                format!("{cur}{add}")
            });
            Ok(())
        })?;
    }
    Ok(())
}

/// `namespace`: sets metadata.namespace on namespaced kinds, the extra fields in `specs`, and
/// the namespace of RoleBinding subjects named `default`.
pub fn namespace(res: &mut Resource, ns: &str, specs: &[FieldSpec]) -> Result<(), String> {
    res.store_previous_id();
    let gvk = res.gvk();
    if !gvk.is_cluster_scoped() {
        res.set_namespace(ns);
    }
    let api_version = res.api_version().to_string();
    let is_binding = gvk.kind == "RoleBinding" || gvk.kind == "ClusterRoleBinding";
    let specs: Vec<FieldSpec> = specs
        .iter()
        .filter(|fs| fs.path != "metadata/namespace")
        .filter(|fs| !(api_version != "v1" && fs.path == "metadata/name"))
        .filter(|fs| !(is_binding && fs.path == "subjects/namespace"))
        .cloned()
        .collect();
    if is_binding && let Some(Value::Array(subjects)) = res.obj.get_mut("subjects") {
        for s in subjects {
            if s.get("name").and_then(Value::as_str) == Some("default")
                && let Value::Object(m) = s
            {
                m.insert("namespace".into(), Value::String(ns.into()));
            }
        }
    }
    apply_specs(res, &specs, Create::Scalar, &mut |node| {
        *node = Value::String(ns.into());
        Ok(())
    })
}

/// One `images:` entry.
#[derive(Clone, Debug, Default)]
pub struct Image {
    pub new_name: String,
    pub new_tag: String,
    pub digest: String,
    pub tag_suffix: String,
    /// The name as kustomize matches it: a regular expression (unescaped, as kustomize does).
    pattern: Option<regex::Regex>,
}

impl Image {
    pub fn from_value(v: &Value) -> Image {
        let s = |k: &str| {
            v.get(k)
                .map(crate::resource::scalar_string)
                .unwrap_or_default()
        };
        let name = s("name");
        let pattern = regex::Regex::new(&format!(
            "^{name}(:[a-zA-Z0-9_.{{}}-]*)?(@sha256:[a-zA-Z0-9_.{{}}-]*)?$"
        ))
        .ok();
        Image {
            pattern,
            new_name: s("newName"),
            new_tag: s("newTag"),
            digest: s("digest"),
            tag_suffix: s("tagSuffix"),
        }
    }

    fn matches(&self, image: &str) -> bool {
        self.pattern.as_ref().is_some_and(|re| re.is_match(image))
    }

    fn update(&self, value: &str) -> Option<String> {
        if !self.matches(value) {
            return None;
        }
        let (mut name, mut tag, mut digest) = split_image(value);
        if !self.new_name.is_empty() {
            name = self.new_name.clone();
        }
        if !self.new_tag.is_empty() && !self.digest.is_empty() {
            tag = self.new_tag.clone();
            digest = self.digest.clone();
        } else if !self.new_tag.is_empty() {
            tag = self.new_tag.clone();
            digest.clear();
        } else if !self.digest.is_empty() {
            tag.clear();
            digest = self.digest.clone();
        } else if !self.tag_suffix.is_empty() {
            tag.push_str(&self.tag_suffix);
            digest.clear();
        }
        if !tag.is_empty() {
            name = format!("{name}:{tag}");
        }
        if !digest.is_empty() {
            name = format!("{name}@{digest}");
        }
        Some(name)
    }
}

/// Splits `name[:tag][@digest]`, where a registry port before the first `/` is not a tag.
fn split_image(image: &str) -> (String, String, String) {
    let slash = image.find('/').filter(|&i| i > 0).unwrap_or(0);
    let search = &image[slash..];
    let id = search.find('@');
    let ic = search.find(':');
    match (ic, id) {
        (None, None) => (image.to_string(), String::new(), String::new()),
        (ic, Some(d)) if ic.is_none_or(|c| d < c) => {
            let d = d + slash;
            (
                image[..d].to_string(),
                String::new(),
                image[d + 1..].to_string(),
            )
        }
        (Some(c), Some(d)) => {
            let (c, d) = (c + slash, d + slash);
            (
                image[..c].to_string(),
                image[c + 1..d].to_string(),
                image[d + 1..].to_string(),
            )
        }
        (Some(c), None) => {
            let c = c + slash;
            (
                image[..c].to_string(),
                image[c + 1..].to_string(),
                String::new(),
            )
        }
        (None, Some(_)) => (image.to_string(), String::new(), String::new()),
    }
}

/// `images:`: every `containers`/`initContainers` list anywhere, then the configured fields.
pub fn image(res: &mut Resource, img: &Image, specs: &[FieldSpec]) -> Result<(), String> {
    if res.kind() == "CustomResourceDefinition" {
        return Ok(());
    }
    fn find(v: &mut Value, img: &Image) {
        match v {
            Value::Object(m) => {
                for (k, child) in m.iter_mut() {
                    find(child, img);
                    if (k == "containers" || k == "initContainers")
                        && let Value::Array(items) = child
                    {
                        for item in items {
                            if let Some(Value::String(s)) = item.get_mut("image")
                                && let Some(new) = img.update(s)
                            {
                                *s = new;
                            }
                        }
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    find(item, img);
                }
            }
            _ => {}
        }
    }
    find(&mut res.obj, img);
    apply_specs(res, specs, Create::Nothing, &mut |node| {
        if let Value::String(s) = node
            && let Some(new) = img.update(s)
        {
            *s = new;
        }
        Ok(())
    })
}

/// Every image an [`Image`] could rewrite in `res`: the containers' and the specs' strings.
fn image_strings(res: &mut Resource, specs: &[FieldSpec]) -> Result<Vec<String>, String> {
    fn find(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    find(child, out);
                    if (k == "containers" || k == "initContainers")
                        && let Value::Array(items) = child
                    {
                        out.extend(
                            items
                                .iter()
                                .filter_map(|i| i.get("image").and_then(Value::as_str))
                                .map(str::to_string),
                        );
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| find(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    find(&res.obj, &mut out);
    apply_specs(res, specs, Create::Nothing, &mut |node| {
        if let Value::String(s) = node {
            out.push(s.clone());
        }
        Ok(())
    })?;
    Ok(out)
}

/// `images:` entries, in order, on one resource: as [`image`] once per entry, but an entry that
/// matches none of the resource's images is passed over without walking the resource again.
pub fn images(res: &mut Resource, imgs: &[Image], specs: &[FieldSpec]) -> Result<(), String> {
    if res.kind() == "CustomResourceDefinition" {
        return Ok(());
    }
    let mut current = image_strings(res, specs)?;
    for img in imgs {
        if current.iter().any(|s| img.matches(s)) {
            image(res, img, specs)?;
            current = image_strings(res, specs)?;
        }
    }
    Ok(())
}

/// `replicas:` entries: sets the count on resources of that name (current or earlier).
/// For each name a resource has or had, the resources (indices, ascending) with it.
pub fn names_index(res: &[Resource]) -> std::collections::HashMap<String, Vec<usize>> {
    let mut by_name: std::collections::HashMap<String, Vec<usize>> = Default::default();
    for (i, r) in res.iter().enumerate() {
        let names = std::iter::once(r.name()).chain(r.prev.iter().map(|p| p.1.as_str()));
        for n in names {
            let list = by_name.entry(n.to_string()).or_default();
            if list.last() != Some(&i) {
                list.push(i);
            }
        }
    }
    by_name
}

/// `by_name` is [`names_index`] of `resources`.
pub fn replicas(
    resources: &mut [Resource],
    entry: &Value,
    specs: &[FieldSpec],
    by_name: &std::collections::HashMap<String, Vec<usize>>,
) -> Result<(), String> {
    let name = entry.get("name").and_then(Value::as_str).unwrap_or("");
    let count = entry.get("count").cloned().unwrap_or(Value::Null);
    let mut found = false;
    let named = by_name.get(name).map_or(&[][..], Vec::as_slice);
    for fs in specs {
        for &i in named {
            let r = &mut resources[i];
            let hit = r
                .all_ids()
                .iter()
                .any(|id| id.name == name && id.gvk.is_selected(&fs.gvk));
            if !hit {
                continue;
            }
            found = true;
            let one = [fs.clone()];
            apply_specs(r, &one, Create::Scalar, &mut |node| {
                *node = count.clone();
                Ok(())
            })?;
        }
    }
    if !found {
        let gvks: Vec<String> = specs.iter().map(|fs| fs.gvk.id_string()).collect();
        return Err(format!(
            "resource with name {name} does not match a config with the following GVK [{}]",
            gvks.join(" ")
        ));
    }
    Ok(())
}
