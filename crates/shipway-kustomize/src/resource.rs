//! A resource being built: its object plus the bookkeeping kustomize keeps beside it (earlier
//! names for name references, prefixes and suffixes, generator behaviour).

use serde_json::{Map, Value};

/// Group, version and kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn from_api_version(api_version: &str, kind: &str) -> Gvk {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        Gvk {
            group,
            version,
            kind: kind.to_string(),
        }
    }

    /// Whether this GVK matches `selector`, whose empty fields match anything.
    pub fn is_selected(&self, selector: &Gvk) -> bool {
        (selector.group.is_empty() || selector.group == self.group)
            && (selector.version.is_empty() || selector.version == self.version)
            && (selector.kind.is_empty() || selector.kind == self.kind)
    }

    /// Kustomize's `Kind.version.group` spelling, with `[noGrp]` and the like for missing parts.
    pub fn id_string(&self) -> String {
        let or = |s: &str, d: &str| {
            if s.is_empty() {
                d.to_string()
            } else {
                s.to_string()
            }
        };
        format!(
            "{}.{}.{}",
            or(&self.kind, "[noKind]"),
            or(&self.version, "[noVer]"),
            or(&self.group, "[noGrp]")
        )
    }

    /// Cluster-scoped built-in kinds, recognised by kind and group: a custom kind that happens to
    /// be called `Namespace` is namespaced.
    pub fn is_cluster_scoped(&self) -> bool {
        is_cluster_scoped_kind(&self.kind) && builtin_group(&self.kind, &self.group)
    }
}

/// Kinds Kubernetes serves without a namespace; anything else (custom kinds included) is
/// namespaced, as kustomize assumes.
pub fn is_cluster_scoped_kind(kind: &str) -> bool {
    matches!(
        kind,
        "APIService"
            | "CertificateSigningRequest"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "ComponentStatus"
            | "CSIDriver"
            | "CSINode"
            | "CustomResourceDefinition"
            | "FlowSchema"
            | "IngressClass"
            | "MutatingWebhookConfiguration"
            | "Namespace"
            | "Node"
            | "PersistentVolume"
            | "PodSecurityPolicy"
            | "PriorityClass"
            | "PriorityLevelConfiguration"
            | "RuntimeClass"
            | "SelfSubjectAccessReview"
            | "SelfSubjectRulesReview"
            | "StorageClass"
            | "SubjectAccessReview"
            | "TokenReview"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding"
            | "ValidatingWebhookConfiguration"
            | "VolumeAttachment"
    )
}

fn builtin_group(kind: &str, group: &str) -> bool {
    let expected: &[&str] = match kind {
        "Namespace" | "Node" | "PersistentVolume" | "ComponentStatus" => &[""],
        "ClusterRole" | "ClusterRoleBinding" => &["rbac.authorization.k8s.io"],
        "CustomResourceDefinition" => &["apiextensions.k8s.io"],
        "StorageClass" | "CSIDriver" | "CSINode" | "VolumeAttachment" => &["storage.k8s.io"],
        "PriorityClass" => &["scheduling.k8s.io"],
        "MutatingWebhookConfiguration"
        | "ValidatingWebhookConfiguration"
        | "ValidatingAdmissionPolicy"
        | "ValidatingAdmissionPolicyBinding" => &["admissionregistration.k8s.io"],
        "APIService" => &["apiregistration.k8s.io"],
        "PodSecurityPolicy" => &["policy", "extensions"],
        "RuntimeClass" => &["node.k8s.io"],
        "IngressClass" => &["networking.k8s.io"],
        "CertificateSigningRequest" => &["certificates.k8s.io"],
        "FlowSchema" | "PriorityLevelConfiguration" => &["flowcontrol.apiserver.k8s.io"],
        "TokenReview" => &["authentication.k8s.io"],
        _ => &["authorization.k8s.io"],
    };
    expected.contains(&group)
}

/// A resource's identity: GVK, name and namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResId {
    pub gvk: Gvk,
    pub name: String,
    pub namespace: String,
}

impl ResId {
    /// The namespace for comparisons: cluster-scoped kinds have none, an empty one is `default`.
    pub fn effective_namespace(&self) -> &str {
        if self.gvk.is_cluster_scoped() {
            "_non_namespaceable_"
        } else if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }

    pub fn ns_equals(&self, other: &ResId) -> bool {
        self.effective_namespace() == other.effective_namespace()
    }

    /// Same GVK, name and (effective) namespace.
    pub fn equals(&self, other: &ResId) -> bool {
        self.gvk == other.gvk && self.name == other.name && self.ns_equals(other)
    }

    /// Kustomize's `Kind.version.group/name.namespace` spelling.
    pub fn id_string(&self) -> String {
        let ns = if self.namespace.is_empty() {
            "[noNs]"
        } else {
            &self.namespace
        };
        let name = if self.name.is_empty() {
            "[noName]"
        } else {
            &self.name
        };
        format!("{}/{}.{}", self.gvk.id_string(), name, ns)
    }
}

impl std::fmt::Display for ResId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = format!("{}/{}", self.gvk.kind, self.name);
        if !self.namespace.is_empty() {
            s = format!("{}/{}", self.namespace, s);
        }
        f.write_str(&s)
    }
}

/// How a generated resource combines with one of the same name from a base.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behavior {
    #[default]
    Create,
    Merge,
    Replace,
}

/// One resource with kustomize's side data.
#[derive(Clone, Debug)]
pub struct Resource {
    pub obj: Value,
    /// Earlier (namespace, name, kind) triples, oldest first.
    pub prev: Vec<(String, String, String)>,
    pub prefixes: Vec<String>,
    pub suffixes: Vec<String>,
    /// Set on generated resources.
    pub generated: Option<Behavior>,
    pub needs_hash: bool,
    /// Vars that point at this resource.
    pub ref_var_names: Vec<String>,
    /// Ids of resources whose fields were updated to point at this one.
    pub ref_by: Vec<String>,
    /// Where it came from, kept while `buildMetadata` asks for origins or transformations.
    pub origin: Option<crate::origin::Origin>,
    /// The transformers that changed it after it had an origin.
    pub transformations: Vec<crate::origin::Origin>,
    /// The file and line its document started at, when it was read from a file.
    pub source: Option<crate::Source>,
}

impl Resource {
    pub fn new(obj: Value) -> Resource {
        Resource {
            obj,
            prev: Vec::new(),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            generated: None,
            needs_hash: false,
            ref_var_names: Vec::new(),
            ref_by: Vec::new(),
            origin: None,
            transformations: Vec::new(),
            source: None,
        }
    }

    fn str_at(&self, path: &[&str]) -> &str {
        let mut v = &self.obj;
        for p in path {
            match v.get(p) {
                Some(x) => v = x,
                None => return "",
            }
        }
        v.as_str().unwrap_or("")
    }

    pub fn kind(&self) -> &str {
        self.str_at(&["kind"])
    }
    pub fn api_version(&self) -> &str {
        self.str_at(&["apiVersion"])
    }
    pub fn name(&self) -> &str {
        self.str_at(&["metadata", "name"])
    }
    pub fn namespace(&self) -> &str {
        self.str_at(&["metadata", "namespace"])
    }
    pub fn gvk(&self) -> Gvk {
        Gvk::from_api_version(self.api_version(), self.kind())
    }

    pub fn cur_id(&self) -> ResId {
        ResId {
            gvk: self.gvk(),
            name: self.name().to_string(),
            namespace: self.namespace().to_string(),
        }
    }

    /// Every earlier id, oldest first (the group and version never change).
    pub fn prev_ids(&self) -> Vec<ResId> {
        let gvk = self.gvk();
        self.prev
            .iter()
            .map(|(ns, name, kind)| ResId {
                gvk: Gvk {
                    kind: kind.clone(),
                    ..gvk.clone()
                },
                name: name.clone(),
                namespace: ns.clone(),
            })
            .collect()
    }

    /// The id the resource was first read or generated with.
    pub fn org_id(&self) -> ResId {
        match self.prev.first() {
            Some((ns, name, kind)) => ResId {
                gvk: Gvk {
                    kind: kind.clone(),
                    ..self.gvk()
                },
                name: name.clone(),
                namespace: ns.clone(),
            },
            None => self.cur_id(),
        }
    }

    /// Ids this resource has had, current included, for matching references and vars.
    pub fn all_ids(&self) -> Vec<ResId> {
        let mut ids = self.prev_ids();
        ids.push(self.cur_id());
        ids
    }

    pub fn store_previous_id(&mut self) {
        let id = self.cur_id();
        let ns = id.effective_namespace().to_string();
        self.prev.push((ns, id.name, id.gvk.kind));
    }

    /// The metadata map, made (as kustomize's setters do) when missing or not a map.
    fn metadata_mut(&mut self) -> Option<&mut Map<String, Value>> {
        if !self.obj.is_object() {
            self.obj = Value::Object(Map::new());
        }
        let md = self
            .obj
            .as_object_mut()?
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !md.is_object() {
            *md = Value::Object(Map::new());
        }
        md.as_object_mut()
    }

    pub fn set_name(&mut self, name: &str) {
        if let Some(md) = self.metadata_mut() {
            md.insert("name".into(), Value::String(name.into()));
        }
    }

    pub fn set_namespace(&mut self, ns: &str) {
        let Some(md) = self.metadata_mut() else {
            return;
        };
        if ns.is_empty() {
            md.remove("namespace");
        } else {
            md.insert("namespace".into(), Value::String(ns.into()));
        }
    }

    pub fn set_kind(&mut self, kind: &str) {
        if let Value::Object(o) = &mut self.obj {
            o.insert("kind".into(), Value::String(kind.into()));
        }
    }

    /// A string map under metadata (`labels`, `annotations`); missing is empty.
    pub fn string_map(&self, field: &str) -> Vec<(String, String)> {
        match self.obj.get("metadata").and_then(|m| m.get(field)) {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| (k.clone(), scalar_string(v)))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn annotation(&self, key: &str) -> Option<String> {
        self.string_map("annotations")
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Replaces a metadata string map; an empty map removes the field.
    pub fn set_string_map(&mut self, field: &str, pairs: Vec<(String, String)>) {
        let Some(md) = self.metadata_mut() else {
            return;
        };
        if pairs.is_empty() {
            md.remove(field);
            return;
        }
        let m: Map<String, Value> = pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        md.insert(field.into(), Value::Object(m));
    }

    pub fn set_annotation(&mut self, key: &str, value: &str) {
        let Some(md) = self.metadata_mut() else {
            return;
        };
        let ann = md
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if !ann.is_object() {
            *ann = Value::Object(Map::new());
        }
        if let Value::Object(m) = ann {
            m.insert(key.into(), Value::String(value.into()));
        }
    }

    /// Whether the two resources' prefix and suffix histories agree, as kustomize decides which
    /// of several same-named resources a reference means.
    pub fn prefixes_suffixes_equal(&self, other: &Resource, allow_empty: bool) -> bool {
        if allow_empty {
            let p = self.prefixes.is_empty()
                || other.prefixes.is_empty()
                || same_ending(&self.prefixes, &other.prefixes);
            let s = self.suffixes.is_empty()
                || other.suffixes.is_empty()
                || same_ending(&self.suffixes, &other.suffixes);
            p && s
        } else {
            same_ending(&self.prefixes, &other.prefixes)
                && same_ending(&self.suffixes, &other.suffixes)
        }
    }
}

/// Whether the shorter slice is the tail of the longer one.
fn same_ending(a: &[String], b: &[String]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() {
        // Kustomize: an empty history only matches an empty one.
        return long.is_empty();
    }
    long[long.len() - short.len()..] == *short
}

/// A scalar as the string kyaml would read from its node.
/// Reads `metadata.annotations` back as kustomize's string map: numbers and booleans as their
/// text, null as `null_text` (what kustomize's node held: `null` after a JSON patch, empty after
/// a replacement), maps and lists empty.
pub(crate) fn annotations_as_strings(obj: &mut Value, null_text: &str) {
    let Some(Value::Object(annotations)) = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
    else {
        return;
    };
    for v in annotations.values_mut() {
        let text = match v {
            Value::String(_) => continue,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => null_text.to_string(),
            _ => String::new(),
        };
        *v = Value::String(text);
    }
}

pub fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}
