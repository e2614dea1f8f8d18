//! Admission: the one step every write goes through before it reaches the store — defaults and
//! conversions first (a Secret's `stringData` becomes base64 `data`, as Kubernetes does), then the
//! kind-specific checks of [`crate::validate`]. The API handler and the runtime's `apply` call it,
//! so an object a controller or a sync writes is refused exactly as the API refuses it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::crd::{CustomKind, custom_kind, is_crd, suggest};
use crate::validate::{FieldError, validate_object};
use crate::{Key, Kinds, Object};

/// Kubernetes' limit on the decoded size of a Secret's data (`MaxSecretSize`).
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// An object admission refused, with every problem found in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub key: Key,
    pub problems: Vec<FieldError>,
}

impl fmt::Display for Invalid {
    /// `Deployment.apps "web" is invalid: spec.replicas: ...; ...`, as kubectl words it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} is invalid: ",
            self.key.group_kind(),
            self.key.name
        )?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// Defaults, converts and checks `obj`; returns the object to store, or every problem in it.
/// Kinds are known or refused, as Kubernetes does: a built-in kind (Kubernetes', Argo's,
/// Shipway's) or one of `custom`, the kinds of the CustomResourceDefinitions applied so far.
pub fn admit(mut obj: Object, custom: &[CustomKind]) -> Result<Object, Invalid> {
    let mut problems = Vec::new();
    known_kind(&obj, custom, &mut problems);
    if is_crd(&obj)
        && let Err(crd_problems) = custom_kind(&obj)
    {
        problems.extend(crd_problems);
    }
    if obj.group().is_empty() && obj.kind == "Secret" {
        secret(&mut obj.body, &mut problems);
    }
    problems.extend(validate_object(&obj));
    if problems.is_empty() {
        Ok(obj)
    } else {
        Err(Invalid {
            key: obj.key(),
            problems,
        })
    }
}

/// Refuses a kind nobody defined, naming the nearest known one, and a version a custom kind
/// does not serve.
fn known_kind(obj: &Object, custom: &[CustomKind], problems: &mut Vec<FieldError>) {
    let (group, kind) = (obj.group(), obj.kind.as_str());
    if kind.is_empty() || Kinds::get(group, kind).is_some() {
        return;
    }
    if let Some(ck) = custom.iter().find(|k| k.group == group && k.kind == kind) {
        let version = obj.api_version.rsplit('/').next().unwrap_or_default();
        if !ck.served.iter().any(|v| v == version) {
            problems.push(FieldError {
                path: "apiVersion".into(),
                message: format!(
                    "Unsupported value: {:?}: {kind}.{group} is served as {}",
                    obj.api_version,
                    ck.served
                        .iter()
                        .map(|v| format!("{group}/{v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        return;
    }
    let known = Kinds::all()
        .iter()
        .map(|k| k.kind)
        .chain(custom.iter().map(|k| k.kind.as_str()));
    let hint = match suggest(kind, known) {
        Some(near) => format!(" (did you mean {near:?}?)"),
        None => String::new(),
    };
    problems.push(FieldError {
        path: "kind".into(),
        message: format!(
            "Invalid value: {kind:?}: no matches for kind {kind:?} in version {:?}{hint}; a custom kind needs its CustomResourceDefinition applied first",
            obj.api_version
        ),
    });
}

/// A Secret as the API server stores it: `stringData` merged into `data` (its values win, as
/// Kubernetes documents) and dropped, every `data` value valid base64, `type` defaulted to
/// `Opaque`, the decoded total within [`MAX_SECRET_BYTES`]. Messages never echo a value.
fn secret(body: &mut Map<String, Value>, problems: &mut Vec<FieldError>) {
    let mut err = |path: String, message: String| problems.push(FieldError { path, message });
    let mut data = match body.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            err("data".into(), "expected an object of base64 strings".into());
            Map::new()
        }
    };
    let mut total = 0usize;
    for (key, value) in &data {
        match value {
            Value::String(s) => match STANDARD.decode(s) {
                Ok(bytes) => total += bytes.len(),
                Err(e) => err(
                    format!("data[{key}]"),
                    format!(
                        "Invalid value: {}: encode the value as base64, or put the plain text under stringData",
                        base64_problem(&e)
                    ),
                ),
            },
            _ => err(format!("data[{key}]"), "expected a base64 string".into()),
        }
    }
    match body.remove("stringData") {
        None | Some(Value::Null) => {}
        Some(Value::Object(plain)) => {
            for (key, value) in plain {
                match value {
                    Value::String(s) => {
                        total += s.len();
                        if let Some(Value::String(old)) = data.get(&key) {
                            total =
                                total.saturating_sub(STANDARD.decode(old).map_or(0, |b| b.len()));
                        }
                        data.insert(key, Value::String(STANDARD.encode(s)));
                    }
                    _ => err(format!("stringData[{key}]"), "expected a string".into()),
                }
            }
        }
        Some(_) => err("stringData".into(), "expected an object of strings".into()),
    }
    if total > MAX_SECRET_BYTES {
        err(
            "data".into(),
            format!("Too long: must have at most {MAX_SECRET_BYTES} bytes"),
        );
    }
    if !data.is_empty() {
        body.insert("data".into(), Value::Object(data));
    }
    if !body.contains_key("type") {
        body.insert("type".into(), Value::String("Opaque".into()));
    }
}

/// Go's wording (`illegal base64 data at input byte 7`), which is what kubectl users see; the
/// offending byte itself is never shown, since it is part of a secret.
fn base64_problem(e: &base64::DecodeError) -> String {
    use base64::DecodeError::*;
    match e {
        InvalidByte(at, _) | InvalidLastSymbol(at, _) => {
            format!("illegal base64 data at input byte {at}")
        }
        InvalidLength(len) => format!("illegal base64 data at input byte {len}"),
        InvalidPadding => "illegal base64 data: bad padding".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Object {
        serde_json::from_value(v).expect("a test object")
    }

    fn admitted(v: Value) -> Value {
        admit(object(v), &[]).expect("admitted").to_json()
    }

    fn admit_plain(obj: Object) -> Result<Object, Invalid> {
        admit(obj, &[])
    }

    #[test]
    fn unknown_kinds_are_refused_with_the_nearest_known_one() {
        let err = admit_plain(object(json!({
            "apiVersion": "apps/v1", "kind": "Deploymnt", "metadata": {"name": "web"}
        })))
        .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "Deploymnt.apps \"web\" is invalid: kind: Invalid value: \"Deploymnt\": no matches for kind \"Deploymnt\" in version \"apps/v1\" (did you mean \"Deployment\"?); a custom kind needs its CustomResourceDefinition applied first"
        );
        let widget = CustomKind {
            group: "example.com".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
            singular: "widget".into(),
            short_names: vec![],
            namespaced: true,
            served: vec!["v1".into()],
        };
        let w = |api: &str| {
            object(json!({"apiVersion": api, "kind": "Widget", "metadata": {"name": "w"}}))
        };
        assert!(admit(w("example.com/v1"), std::slice::from_ref(&widget)).is_ok());
        assert!(
            admit_plain(w("example.com/v1")).is_err(),
            "unknown without its CRD"
        );
        let err = admit(w("example.com/v2"), &[widget]).expect_err("unserved version");
        assert_eq!(
            err.problems[0].to_string(),
            "apiVersion: Unsupported value: \"example.com/v2\": Widget.example.com is served as example.com/v1"
        );
    }

    #[test]
    fn string_data_is_merged_into_base64_data_and_dropped() {
        let got = admitted(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"a": "b2xk", "keep": "eA=="},
            "stringData": {"a": "new", "b": "plain"}
        }));
        assert_eq!(
            got,
            json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                "data": {"a": "bmV3", "keep": "eA==", "b": "cGxhaW4="},
                "type": "Opaque"
            })
        );
    }

    #[test]
    fn a_given_type_is_kept_and_empty_secrets_get_no_data() {
        let got = admitted(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "type": "kubernetes.io/basic-auth", "stringData": {}
        }));
        assert_eq!(
            got,
            json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                "type": "kubernetes.io/basic-auth"
            })
        );
    }

    #[test]
    fn bad_secret_data_is_refused_without_echoing_values() {
        let err = admit_plain(object(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"pw": "hunter2!", "n": 5},
            "stringData": {"x": true}
        })))
        .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "Secret \"s\" is invalid: \
             data[pw]: Invalid value: illegal base64 data at input byte 7: encode the value as base64, or put the plain text under stringData; \
             data[n]: expected a base64 string; \
             stringData[x]: expected a string"
        );
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn secrets_over_a_mebibyte_are_refused() {
        let big = "x".repeat(MAX_SECRET_BYTES);
        let err = admit_plain(object(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "stringData": {"a": big, "b": "y"}
        })))
        .expect_err("refused");
        assert_eq!(
            err.problems,
            vec![FieldError {
                path: "data".into(),
                message: "Too long: must have at most 1048576 bytes".into()
            }]
        );
        // Replacing a key counts its new size only.
        let ok = admit_plain(object(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"a": STANDARD.encode("x".repeat(MAX_SECRET_BYTES))},
            "stringData": {"a": "small"}
        })));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn workload_problems_come_through_with_the_kubectl_wording() {
        let err = admit_plain(object(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": -1}
        })))
        .expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("Deployment.apps \"web\" is invalid: "),
            "{err}"
        );
        assert!(err.to_string().contains("spec.replicas"), "{err}");
    }
}
