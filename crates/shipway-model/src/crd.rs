//! CustomResourceDefinitions: the kind a CRD defines (group, names, scope, served versions) and
//! the checks Kubernetes makes before accepting one, its OpenAPI v3 schemas included, so kinds
//! are known or refused as Kubernetes does.

use serde_json::{Map, Value};

use crate::Object;
use crate::validate::{FieldError, is_dns_label};

/// A kind defined by a CustomResourceDefinition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomKind {
    pub group: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    /// The versions the API serves, in the CRD's order.
    pub served: Vec<String>,
}

/// Whether `obj` is a CustomResourceDefinition.
pub fn is_crd(obj: &Object) -> bool {
    obj.group() == "apiextensions.k8s.io" && obj.kind == "CustomResourceDefinition"
}

/// The kind `crd` defines, or every problem that keeps Kubernetes from accepting it.
pub fn custom_kind(crd: &Object) -> Result<CustomKind, Vec<FieldError>> {
    let mut errs = Errors(Vec::new());
    let empty = Map::new();
    let spec = match crd.body.get("spec") {
        Some(Value::Object(m)) => m,
        _ => {
            errs.push("spec", "Required value");
            &empty
        }
    };
    let group = text(spec, "group");
    if group.is_empty() {
        errs.push("spec.group", "Required value");
    } else if !group.contains('.') || crate::name::validate_object_name(group).is_err() {
        errs.push(
            "spec.group",
            format!("Invalid value: {group:?}: should be a domain with at least one dot"),
        );
    }
    let names = match spec.get("names") {
        Some(Value::Object(m)) => m,
        _ => {
            errs.push("spec.names", "Required value");
            &empty
        }
    };
    let kind = text(names, "kind");
    let plural = text(names, "plural");
    if kind.is_empty() {
        errs.push("spec.names.kind", "Required value");
    } else if !kind.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        || !kind.chars().all(|c| c.is_ascii_alphanumeric())
    {
        errs.push(
            "spec.names.kind",
            format!("Invalid value: {kind:?}: must be letters and digits, starting with a letter (e.g. 'MyKind')"),
        );
    }
    let label = |errs: &mut Errors, field: &str, v: &str| {
        if !is_dns_label(v) {
            errs.push(
                field,
                format!("Invalid value: {v:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"),
            );
        }
    };
    if plural.is_empty() {
        errs.push("spec.names.plural", "Required value");
    } else {
        label(&mut errs, "spec.names.plural", plural);
    }
    let singular = match text(names, "singular") {
        "" => kind.to_ascii_lowercase(),
        s => {
            label(&mut errs, "spec.names.singular", s);
            s.to_string()
        }
    };
    let short_names: Vec<String> = strings(names.get("shortNames"));
    for (i, s) in short_names.iter().enumerate() {
        label(&mut errs, &format!("spec.names.shortNames[{i}]"), s);
    }
    if !plural.is_empty() && !group.is_empty() && crd.metadata.name != format!("{plural}.{group}") {
        errs.push(
            "metadata.name",
            format!(
                "Invalid value: {:?}: must be spec.names.plural+\".\"+spec.group ({plural}.{group})",
                crd.metadata.name
            ),
        );
    }
    let namespaced = match text(spec, "scope") {
        "Namespaced" => true,
        "Cluster" => false,
        other => {
            errs.push(
                "spec.scope",
                format!(
                    "Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
                ),
            );
            true
        }
    };
    let mut served = Vec::new();
    match spec.get("versions") {
        Some(Value::Array(versions)) if !versions.is_empty() => {
            let mut storage = 0;
            for (i, v) in versions.iter().enumerate() {
                let path = format!("spec.versions[{i}]");
                let Some(v) = v.as_object() else {
                    errs.push(&path, "expected an object");
                    continue;
                };
                let name = text(v, "name");
                if name.is_empty() {
                    errs.push(&format!("{path}.name"), "Required value");
                }
                for flag in ["served", "storage"] {
                    if !matches!(v.get(flag), Some(Value::Bool(_))) {
                        errs.push(
                            &format!("{path}.{flag}"),
                            "Required value: must be true or false",
                        );
                    }
                }
                if v.get("served") == Some(&Value::Bool(true)) {
                    served.push(name.to_string());
                }
                if v.get("storage") == Some(&Value::Bool(true)) {
                    storage += 1;
                }
                if let Some(s) = v.get("schema") {
                    let root = s.get("openAPIV3Schema");
                    let path = format!("{path}.schema.openAPIV3Schema");
                    match root {
                        None => errs.push(&path, "Required value"),
                        Some(root) => {
                            if root.get("type").and_then(Value::as_str) != Some("object") {
                                errs.push(
                                    &format!("{path}.type"),
                                    "Required value: must be object at the root",
                                );
                            }
                            schema(root, &path, &mut errs);
                        }
                    }
                }
            }
            if storage != 1 {
                errs.push(
                    "spec.versions",
                    format!("Invalid value: must have exactly one version marked as storage version, found {storage}"),
                );
            }
        }
        _ => errs.push(
            "spec.versions",
            "Required value: must have at least one version",
        ),
    }
    if errs.0.is_empty() {
        Ok(CustomKind {
            group: group.to_string(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular,
            short_names,
            namespaced,
            served,
        })
    } else {
        Err(errs.0)
    }
}

fn text<'a>(m: &'a Map<String, Value>, field: &str) -> &'a str {
    m.get(field).and_then(Value::as_str).unwrap_or("")
}

struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.to_string(),
            message: message.into(),
        });
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// The checks of a structural schema that a malformed CRD fails: known types, `items` for
/// arrays, nested schemas where schemas belong, list and map types Kubernetes knows.
fn schema(node: &Value, path: &str, errs: &mut Errors) {
    let Some(node) = node.as_object() else {
        errs.push(path, "expected an object (a schema)");
        return;
    };
    let flag = |f: &str| node.get(f) == Some(&Value::Bool(true));
    let ty = match node.get("type") {
        None => None,
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => Some(t.as_str()),
        Some(other) => {
            errs.push(
                &format!("{path}.type"),
                format!("Unsupported value: {other}: supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""),
            );
            None
        }
    };
    if ty == Some("array") && !node.contains_key("items") {
        errs.push(
            &format!("{path}.items"),
            "Required value: must be specified for type array",
        );
    }
    if flag("x-kubernetes-int-or-string") && ty.is_some() {
        errs.push(
            &format!("{path}.type"),
            "Forbidden: must be empty if x-kubernetes-int-or-string is true",
        );
    }
    if let Some(props) = node.get("properties") {
        match props.as_object() {
            Some(props) => {
                for (name, p) in props {
                    schema(p, &format!("{path}.properties[{name}]"), errs);
                }
            }
            None => errs.push(
                &format!("{path}.properties"),
                "expected an object of schemas",
            ),
        }
    }
    if let Some(items) = node.get("items") {
        schema(items, &format!("{path}.items"), errs);
    }
    match node.get("additionalProperties") {
        None | Some(Value::Bool(_)) => {}
        Some(p) => schema(p, &format!("{path}.additionalProperties"), errs),
    }
    if node.contains_key("properties")
        && node
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
    {
        errs.push(
            &format!("{path}.additionalProperties"),
            "Forbidden: additionalProperties and properties are mutually exclusive",
        );
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = node.get(combinator) {
            match list.as_array() {
                Some(list) => {
                    for (i, s) in list.iter().enumerate() {
                        schema(s, &format!("{path}.{combinator}[{i}]"), errs);
                    }
                }
                None => errs.push(
                    &format!("{path}.{combinator}"),
                    "expected a list of schemas",
                ),
            }
        }
    }
    if let Some(not) = node.get("not") {
        schema(not, &format!("{path}.not"), errs);
    }
    if let Some(required) = node.get("required")
        && !required
            .as_array()
            .is_some_and(|r| r.iter().all(Value::is_string))
    {
        errs.push(
            &format!("{path}.required"),
            "expected a list of field names",
        );
    }
    match node.get("x-kubernetes-list-type").map(|v| v.as_str()) {
        None | Some(Some("atomic" | "set")) => {}
        Some(Some("map")) => {
            if !node.contains_key("x-kubernetes-list-map-keys") {
                errs.push(
                    &format!("{path}.x-kubernetes-list-map-keys"),
                    "Required value: must not be empty if x-kubernetes-list-type is map",
                );
            }
        }
        Some(other) => errs.push(
            &format!("{path}.x-kubernetes-list-type"),
            format!(
                "Unsupported value: {}: supported values: \"atomic\", \"map\", \"set\"",
                other.unwrap_or("?")
            ),
        ),
    }
}

/// The candidate nearest to `word` (case-insensitive edit distance of at most 2), for "did you
/// mean" hints on a mistyped kind.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (row[j] + 1).min(cur + 1).min(prev + usize::from(ca != *cb));
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(spec: Value) -> Object {
        serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"}, "spec": spec,
        }))
        .unwrap()
    }

    fn messages(r: Result<CustomKind, Vec<FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_good_crd_defines_its_kind() {
        let k = custom_kind(&crd(json!({
            "group": "example.com", "scope": "Cluster",
            "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {"type": "object", "properties": {
                        "size": {"x-kubernetes-int-or-string": true},
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                    }}},
                }}},
                {"name": "v0", "served": false, "storage": false},
            ],
        })))
        .unwrap();
        assert_eq!(
            k,
            CustomKind {
                group: "example.com".into(),
                kind: "Widget".into(),
                plural: "widgets".into(),
                singular: "widget".into(),
                short_names: vec!["wd".into()],
                namespaced: false,
                served: vec!["v1".into()],
            }
        );
    }

    #[test]
    fn a_malformed_crd_is_refused_with_every_problem() {
        let got = messages(custom_kind(&crd(json!({
            "group": "example", "scope": "Global",
            "names": {"kind": "my-kind", "plural": "Widgets"},
            "versions": [{"name": "v1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "a": {"type": "list"},
                    "b": {"type": "array"},
                    "c": {"type": "string", "x-kubernetes-int-or-string": true},
                    "d": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "map"},
                },
            }}}],
        }))));
        assert_eq!(
            got,
            [
                "spec.group: Invalid value: \"example\": should be a domain with at least one dot",
                "spec.names.kind: Invalid value: \"my-kind\": must be letters and digits, starting with a letter (e.g. 'MyKind')",
                "spec.names.plural: Invalid value: \"Widgets\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'",
                "metadata.name: Invalid value: \"widgets.example.com\": must be spec.names.plural+\".\"+spec.group (Widgets.example)",
                "spec.scope: Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespaced\"",
                "spec.versions[0].schema.openAPIV3Schema.properties[a].type: Unsupported value: \"list\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\"",
                "spec.versions[0].schema.openAPIV3Schema.properties[b].items: Required value: must be specified for type array",
                "spec.versions[0].schema.openAPIV3Schema.properties[c].type: Forbidden: must be empty if x-kubernetes-int-or-string is true",
                "spec.versions[0].schema.openAPIV3Schema.properties[d].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map",
                "spec.versions: Invalid value: must have exactly one version marked as storage version, found 0",
            ]
        );
    }

    #[test]
    fn typos_get_the_nearest_kind() {
        let kinds = ["Deployment", "DaemonSet", "Service", "Secret"];
        assert_eq!(suggest("Deploymnt", kinds), Some("Deployment"));
        assert_eq!(suggest("deploymnet", kinds), Some("Deployment"));
        assert_eq!(suggest("Servce", kinds), Some("Service"));
        assert_eq!(suggest("Gadget", kinds), None);
    }
}
