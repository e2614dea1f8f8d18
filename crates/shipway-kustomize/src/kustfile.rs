//! The `kustomization.yaml` file: its fields, legacy spellings folded in, unknown and
//! unsupported fields refused with the file and line.

use serde_json::{Map, Value};
use shipway_model::Document;

use crate::Error;

/// File names kustomize recognises, in its order.
pub const FILE_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Every field kustomize knows, in its spelling.
const FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "namePrefix",
    "nameSuffix",
    "namespace",
    "commonLabels",
    "commonAnnotations",
    "labels",
    "patchesStrategicMerge",
    "patchesJson6902",
    "patches",
    "images",
    "imageTags",
    "replacements",
    "replicas",
    "vars",
    "sortOptions",
    "resources",
    "bases",
    "components",
    "crds",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "configurations",
    "generators",
    "transformers",
    "validators",
    "buildMetadata",
    "openapi",
    "helmCharts",
    "helmGlobals",
    "helmChartInflationGenerator",
];

/// Fields a build reads; everything stays close to the file (values) so each step can read
/// exactly what it needs.
#[derive(Clone, Debug, Default)]
pub struct Kustomization {
    pub file: String,
    pub kind: String,
    pub name_prefix: String,
    pub name_suffix: String,
    pub namespace: String,
    pub common_labels: Vec<(String, String)>,
    pub labels: Vec<Value>,
    pub common_annotations: Vec<(String, String)>,
    pub patches_strategic_merge: Vec<String>,
    pub patches_json6902: Vec<Value>,
    pub patches: Vec<Value>,
    pub images: Vec<Value>,
    pub replacements: Vec<Value>,
    pub replicas: Vec<Value>,
    pub vars: Vec<Value>,
    pub sort_options: Option<Value>,
    pub resources: Vec<String>,
    pub components: Vec<String>,
    pub crds: Vec<String>,
    pub config_map_generator: Vec<Value>,
    pub secret_generator: Vec<Value>,
    pub generator_options: Option<Value>,
    pub configurations: Vec<String>,
    pub generators: Vec<String>,
    pub transformers: Vec<String>,
    pub build_metadata: Vec<String>,
    pub openapi: Option<Value>,
    /// Where each entry of `resources` came from (`resources[0]`, `bases[1]`, ...), for errors.
    pub resource_paths: Vec<String>,
    /// The parsed file, to point errors at the entry they are about.
    pub doc: Option<Document>,
}

impl Kustomization {
    /// Reads one parsed kustomization document.
    pub fn from_document(doc: &Document) -> Result<Kustomization, Error> {
        let mut k = Kustomization {
            file: doc.file.clone(),
            doc: Some(doc.clone()),
            ..Kustomization::default()
        };
        let empty = Map::new();
        let m = match &doc.value {
            Value::Object(m) => m,
            Value::Null => &empty,
            _ => return Err(err_at(doc, "", "a kustomization must be a mapping")),
        };
        for (key, v) in m {
            // Kustomize decodes through Go's encoding/json, which matches field names
            // case-insensitively.
            let canonical = FIELDS
                .iter()
                .find(|f| f.eq_ignore_ascii_case(key))
                .copied()
                .unwrap_or(key.as_str());
            let path = key.as_str();
            match canonical {
                "apiVersion" | "metadata" => {}
                "kind" => k.kind = str_of(doc, path, v)?,
                "namePrefix" => k.name_prefix = str_of(doc, path, v)?,
                "nameSuffix" => k.name_suffix = str_of(doc, path, v)?,
                "namespace" => k.namespace = str_of(doc, path, v)?,
                "commonLabels" => k.common_labels = map_of(doc, path, v)?,
                "commonAnnotations" => k.common_annotations = map_of(doc, path, v)?,
                "labels" => k.labels = list_of(v),
                "patchesStrategicMerge" => {
                    for item in list_of(v) {
                        k.patches_strategic_merge.push(match item {
                            Value::String(s) => s,
                            other => crate::emit::to_yaml(&other),
                        });
                    }
                }
                "patchesJson6902" => k.patches_json6902 = list_of(v),
                "patches" => k.patches = list_of(v),
                "images" | "imageTags" => k.images.extend(list_of(v)),
                "replacements" => k.replacements = list_of(v),
                "replicas" => k.replicas = list_of(v),
                "vars" => k.vars = list_of(v),
                "sortOptions" => k.sort_options = Some(v.clone()),
                "resources" | "bases" => {
                    let entries = strings_of(doc, path, v)?;
                    let first = k.resources.len();
                    k.resource_paths.extend(
                        (0..entries.len()).map(|i| shipway_model::load::index_path(path, i)),
                    );
                    debug_assert_eq!(first, k.resource_paths.len() - entries.len());
                    k.resources.extend(entries);
                }
                "components" => k.components = strings_of(doc, path, v)?,
                "crds" => k.crds = strings_of(doc, path, v)?,
                "configMapGenerator" => k.config_map_generator = list_of(v),
                "secretGenerator" => k.secret_generator = list_of(v),
                "generatorOptions" => k.generator_options = Some(v.clone()),
                "configurations" => k.configurations = strings_of(doc, path, v)?,
                "generators" => k.generators = strings_or_docs(v),
                "transformers" => k.transformers = strings_or_docs(v),
                "validators" => {
                    // Validators are exec/KRM plugins in kustomize; none are built in.
                    if !list_of(v).is_empty() {
                        return Err(err_at(
                            doc,
                            path,
                            "validators are plugins, which Shipway does not run; validate the \
                             rendered output instead (shipway apply --dry-run)",
                        ));
                    }
                }
                "buildMetadata" => k.build_metadata = strings_of(doc, path, v)?,
                "openapi" => {
                    // Only the built-in Kubernetes 1.21.2 schema (kustomize's default) is known;
                    // a custom schema would change how lists merge, so it is refused, not ignored.
                    if v.get("path").is_some() {
                        return Err(err_at(
                            doc,
                            path,
                            "openapi.path (a custom OpenAPI schema) is not supported: Shipway \
                             merges lists with the built-in Kubernetes schema; use patches with \
                             $patch: replace or JSON patches for custom kinds",
                        ));
                    }
                    if let Some(version) = v.get("version").and_then(Value::as_str)
                        && version != "v1.21.2"
                    {
                        return Err(err_at(
                            doc,
                            path,
                            format!(
                                "openapi.version {version:?} is not supported; only v1.21.2 is"
                            ),
                        ));
                    }
                    k.openapi = Some(v.clone());
                }
                "helmCharts" | "helmGlobals" | "helmChartInflationGenerator" => {
                    return Err(err_at(
                        doc,
                        path,
                        format!(
                            "{path} is not supported: Shipway renders Helm charts only after \
                             `helm template` has written them out; list the rendered files under \
                             resources instead"
                        ),
                    ));
                }
                other => {
                    return Err(err_at(
                        doc,
                        path,
                        format!("invalid Kustomization: unknown field {other:?}"),
                    ));
                }
            }
        }
        Ok(k)
    }

    /// An error about the entry at `path` (`patches[2]`), at its place in the file.
    pub fn error_at(&self, path: &str, message: impl std::fmt::Display) -> Error {
        match &self.doc {
            Some(doc) => {
                let (line, column) = doc.position(path);
                Error::At {
                    file: self.file.clone(),
                    line,
                    column,
                    message: message.to_string(),
                }
            }
            None => Error::Build(format!("{}: {message}", self.file)),
        }
    }

    pub fn is_component(&self) -> bool {
        self.kind == "Component"
    }
}

fn err_at(doc: &Document, path: &str, message: impl std::fmt::Display) -> Error {
    let (line, column) = if path.is_empty() {
        (doc.line, doc.column)
    } else {
        doc.key_position(path)
    };
    Error::At {
        file: doc.file.clone(),
        line,
        column,
        message: message.to_string(),
    }
}

fn str_of(doc: &Document, path: &str, v: &Value) -> Result<String, Error> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(err_at(doc, path, format!("{path} must be a string"))),
    }
}

fn map_of(doc: &Document, path: &str, v: &Value) -> Result<Vec<(String, String)>, Error> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, x)| match x {
                Value::Object(_) | Value::Array(_) => {
                    Err(err_at(doc, path, format!("{path}.{k} must be a string")))
                }
                other => Ok((k.clone(), crate::resource::scalar_string(other))),
            })
            .collect(),
        _ => Err(err_at(
            doc,
            path,
            format!("{path} must be a map of strings"),
        )),
    }
}

fn list_of(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        _ => Vec::new(),
    }
}

fn strings_of(doc: &Document, path: &str, v: &Value) -> Result<Vec<String>, Error> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                _ => Err(err_at(
                    doc,
                    path,
                    format!("{path} must be a list of strings"),
                )),
            })
            .collect(),
        _ => Err(err_at(
            doc,
            path,
            format!("{path} must be a list of strings"),
        )),
    }
}

/// `generators`/`transformers` entries: paths, or inline plugin configs (kept as YAML text).
fn strings_or_docs(v: &Value) -> Vec<String> {
    list_of(v)
        .into_iter()
        .map(|x| match x {
            Value::String(s) => s,
            other => crate::emit::to_yaml(&other),
        })
        .collect()
}
