//! The object envelope shared by every kind: apiVersion, kind, metadata, and the kind's own body.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A Kubernetes-shaped object.
///
/// The body (everything but `apiVersion`, `kind` and `metadata`: `spec`, `status`, a ConfigMap's
/// `data`, ...) is kept as JSON so that kinds Shipway does not act on round-trip untouched. Typed
/// views are built from the body by the crates that act on a kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Object {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(flatten)]
    pub body: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    /// Only on Argo CD hooks read from git, which the sync names; the loader refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

impl Object {
    /// The API group of `apiVersion`: `apps` for `apps/v1`, empty for the core group (`v1`).
    pub fn group(&self) -> &str {
        group_of(&self.api_version)
    }

    pub fn group_kind(&self) -> GroupKind {
        GroupKind::new(self.group(), self.kind.clone())
    }

    pub fn key(&self) -> Key {
        Key {
            group: self.group().to_string(),
            kind: self.kind.clone(),
            namespace: self.metadata.namespace.clone().unwrap_or_default(),
            name: self.metadata.name.clone(),
        }
    }

    pub fn spec(&self) -> Option<&Value> {
        self.body.get("spec")
    }

    pub fn status(&self) -> Option<&Value> {
        self.body.get("status")
    }

    /// A field of the body by dotted path (`status.loadBalancer.ingress`), if present.
    pub fn field(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut v = self.body.get(parts.next()?)?;
        for part in parts {
            v = v.get(part)?;
        }
        Some(v)
    }

    /// The parts of the body a controller acts on: everything but `status`. A change here bumps
    /// `metadata.generation`, as the Kubernetes API server does for custom resources.
    pub fn desired_state_eq(&self, other: &Object) -> bool {
        let strip = |o: &Object| {
            o.body
                .iter()
                .filter(|(k, _)| k.as_str() != "status")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        self.api_version == other.api_version && strip(self) == strip(other)
    }

    /// `resourceVersion` as a number; objects that have not been stored yet have none.
    pub fn resource_version(&self) -> Option<u64> {
        self.metadata.resource_version.as_deref()?.parse().ok()
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("an Object always serializes to JSON")
    }
}

/// The API group of an `apiVersion` string.
pub fn group_of(api_version: &str) -> &str {
    match api_version.rsplit_once('/') {
        Some((group, _)) => group,
        None => "",
    }
}

/// A kind and its API group (`Deployment.apps`; the core group is empty): what controllers
/// manage, own and watch, instead of `(&str, &str)` tuples.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKind {
    pub group: Cow<'static, str>,
    pub kind: Cow<'static, str>,
}

impl GroupKind {
    /// For the kinds Shipway knows at compile time: usable in `const`s.
    pub const fn from_static(group: &'static str, kind: &'static str) -> GroupKind {
        GroupKind {
            group: Cow::Borrowed(group),
            kind: Cow::Borrowed(kind),
        }
    }

    pub fn new(group: impl Into<String>, kind: impl Into<String>) -> GroupKind {
        GroupKind {
            group: Cow::Owned(group.into()),
            kind: Cow::Owned(kind.into()),
        }
    }

    /// Whether `obj` is of this kind.
    pub fn is(&self, obj: &Object) -> bool {
        obj.group() == self.group && obj.kind == self.kind
    }

    /// Whether `key` names an object of this kind.
    pub fn is_key(&self, key: &Key) -> bool {
        key.group == self.group && key.kind == self.kind
    }

    /// The key of an object of this kind.
    pub fn key(&self, namespace: &str, name: &str) -> Key {
        Key::new(&self.group, &self.kind, namespace, name)
    }
}

/// `Kind.group`, or `Kind` for the core group, as kubectl names a type.
impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

/// Who made a write, as the audit trail records it: a user's token name, or a component of
/// Shipway (`controller:deployment`, `kubelet`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Actor(Cow<'static, str>);

impl Actor {
    /// A user or token, by name.
    pub fn user(name: impl Into<String>) -> Actor {
        Actor(Cow::Owned(name.into()))
    }

    /// A built-in component, named once where it is defined.
    pub const fn component(name: &'static str) -> Actor {
        Actor(Cow::Borrowed(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of an object in the store. `namespace` is empty for cluster-scoped kinds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn group_kind(&self) -> GroupKind {
        GroupKind::new(self.group.clone(), self.kind.clone())
    }

    pub fn new(group: &str, kind: &str, namespace: &str, name: &str) -> Key {
        Key {
            group: group.to_string(),
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// `kind/namespace/name` (or `kind/name` when cluster-scoped), the way errors name an object.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.group_kind();
        if self.namespace.is_empty() {
            write!(f, "{kind}/{}", self.name)
        } else {
            write!(f, "{kind}/{}/{}", self.namespace, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(json: &str) -> Object {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn body_round_trips_and_status_does_not_count_as_desired_state() {
        let a = obj(
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"prod"},"spec":{"replicas":1}}"#,
        );
        let mut b = a.clone();
        b.body
            .insert("status".into(), serde_json::json!({"readyReplicas": 1}));
        assert!(a.desired_state_eq(&b));
        b.body
            .insert("spec".into(), serde_json::json!({"replicas": 2}));
        assert!(!a.desired_state_eq(&b));
        assert_eq!(a.key().to_string(), "Deployment.apps/prod/web");
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"prod"},"spec":{"replicas":1}}"#
        );
    }
}
