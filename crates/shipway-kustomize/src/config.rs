//! Field specs (which fields of which kinds a transformer touches), kustomize's default tables,
//! user `configurations`, and walking an object along a field spec's path.

use serde_json::{Map, Value};

use crate::resource::Gvk;

/// One field of some kinds: `path` is `/`-separated, `\/` escapes a slash, `name[]` marks a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSpec {
    pub gvk: Gvk,
    pub path: String,
    pub create: bool,
}

/// Kinds whose names other kinds refer to, and where.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameBackRef {
    pub gvk: Gvk,
    pub referrers: Vec<FieldSpec>,
}

/// Every field-spec list a build uses, merged across kustomization levels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransformerConfig {
    pub name_prefix: Vec<FieldSpec>,
    pub name_suffix: Vec<FieldSpec>,
    pub namespace: Vec<FieldSpec>,
    pub common_labels: Vec<FieldSpec>,
    pub template_labels: Vec<FieldSpec>,
    pub common_annotations: Vec<FieldSpec>,
    pub name_reference: Vec<NameBackRef>,
    pub var_reference: Vec<FieldSpec>,
    pub images: Vec<FieldSpec>,
    pub replicas: Vec<FieldSpec>,
}

const DEFAULTS: &str = include_str!("defaults.txt");

impl TransformerConfig {
    /// Kustomize's built-in tables (parsed once per process).
    pub fn defaults() -> &'static TransformerConfig {
        static DEFAULTS_PARSED: std::sync::OnceLock<TransformerConfig> = std::sync::OnceLock::new();
        DEFAULTS_PARSED.get_or_init(TransformerConfig::parse_defaults)
    }

    /// The defaults behind a shared pointer, so levels that use only them share one copy.
    pub fn defaults_shared() -> std::sync::Arc<TransformerConfig> {
        static SHARED: std::sync::OnceLock<std::sync::Arc<TransformerConfig>> =
            std::sync::OnceLock::new();
        std::sync::Arc::clone(
            SHARED.get_or_init(|| std::sync::Arc::new(TransformerConfig::defaults().clone())),
        )
    }

    fn parse_defaults() -> TransformerConfig {
        let mut tc = TransformerConfig::default();
        let mut section = "";
        for line in DEFAULTS.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = match s {
                    "namePrefix" => "namePrefix",
                    "nameSuffix" => "nameSuffix",
                    "commonLabels" => "commonLabels",
                    "templateLabels" => "templateLabels",
                    "commonAnnotations" => "commonAnnotations",
                    "namespace" => "namespace",
                    "varReference" => "varReference",
                    "images" => "images",
                    "replicas" => "replicas",
                    _ => "nameReference",
                };
                continue;
            }
            let any = |s: &str| {
                if s == "-" {
                    String::new()
                } else {
                    s.to_string()
                }
            };
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.first() == Some(&">") && parts.len() == 4 {
                tc.name_reference.push(NameBackRef {
                    gvk: Gvk {
                        group: any(parts[1]),
                        version: any(parts[2]),
                        kind: any(parts[3]),
                    },
                    referrers: Vec::new(),
                });
                continue;
            }
            if parts.len() < 4 {
                continue;
            }
            let fs = FieldSpec {
                gvk: Gvk {
                    group: any(parts[0]),
                    version: any(parts[1]),
                    kind: any(parts[2]),
                },
                path: parts[3].to_string(),
                create: parts.get(4) == Some(&"create"),
            };
            match section {
                "namePrefix" => tc.name_prefix.push(fs),
                "nameSuffix" => tc.name_suffix.push(fs),
                "commonLabels" => tc.common_labels.push(fs),
                "templateLabels" => tc.template_labels.push(fs),
                "commonAnnotations" => tc.common_annotations.push(fs),
                "namespace" => tc.namespace.push(fs),
                "varReference" => tc.var_reference.push(fs),
                "images" => tc.images.push(fs),
                "replicas" => tc.replicas.push(fs),
                _ => {
                    if let Some(last) = tc.name_reference.last_mut() {
                        last.referrers.push(fs);
                    }
                }
            }
        }
        tc
    }

    /// Adds `other`'s specs that are not here yet.
    pub fn merge(&mut self, other: &TransformerConfig) {
        if self == other {
            // The usual case, every level using the defaults: nothing to add.
            return;
        }
        if *self == TransformerConfig::default() {
            // Nothing here yet: merging into empty lists keeps `other` as it is, only faster.
            *self = other.clone();
            return;
        }
        merge_specs(&mut self.name_prefix, &other.name_prefix);
        merge_specs(&mut self.name_suffix, &other.name_suffix);
        merge_specs(&mut self.namespace, &other.namespace);
        merge_specs(&mut self.common_labels, &other.common_labels);
        merge_specs(&mut self.template_labels, &other.template_labels);
        merge_specs(&mut self.common_annotations, &other.common_annotations);
        merge_specs(&mut self.var_reference, &other.var_reference);
        merge_specs(&mut self.images, &other.images);
        merge_specs(&mut self.replicas, &other.replicas);
        for br in &other.name_reference {
            match self.name_reference.iter_mut().find(|b| b.gvk == br.gvk) {
                Some(mine) => merge_specs(&mut mine.referrers, &br.referrers),
                None => self.name_reference.push(br.clone()),
            }
        }
    }

    /// Reads a `configurations:` file's content (already parsed).
    pub fn from_value(v: &Value) -> Result<TransformerConfig, String> {
        let mut tc = TransformerConfig::default();
        let Value::Object(m) = v else {
            return Ok(tc);
        };
        for (k, list) in m {
            let target = match k.as_str() {
                "namePrefix" => &mut tc.name_prefix,
                "nameSuffix" => &mut tc.name_suffix,
                "namespace" => &mut tc.namespace,
                "commonLabels" => &mut tc.common_labels,
                "templateLabels" => &mut tc.template_labels,
                "commonAnnotations" => &mut tc.common_annotations,
                "varReference" => &mut tc.var_reference,
                "images" => &mut tc.images,
                "replicas" => &mut tc.replicas,
                "nameReference" => {
                    for item in list.as_array().into_iter().flatten() {
                        let br = NameBackRef {
                            gvk: gvk_of(item),
                            referrers: specs_from(item.get("fieldSpecs"))?,
                        };
                        let mut one = TransformerConfig::default();
                        one.name_reference.push(br);
                        tc.merge(&one);
                    }
                    continue;
                }
                other => return Err(format!("unknown transformer config field {other:?}")),
            };
            let specs = specs_from(Some(list))?;
            merge_specs(target, &specs);
        }
        Ok(tc)
    }
}

fn gvk_of(v: &Value) -> Gvk {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Gvk {
        group: s("group"),
        version: s("version"),
        kind: s("kind"),
    }
}

/// Reads a list of field specs (`path`, `group`, `version`, `kind`, `create`).
pub fn specs_from(v: Option<&Value>) -> Result<Vec<FieldSpec>, String> {
    let mut out = Vec::new();
    for item in v.and_then(Value::as_array).into_iter().flatten() {
        let path = item
            .get("path")
            .and_then(Value::as_str)
            .ok_or("a field spec needs a path")?;
        out.push(FieldSpec {
            gvk: gvk_of(item),
            path: path.to_string(),
            create: item.get("create").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    Ok(out)
}

/// Appends the specs of `add` not already covered in `to`: kustomize counts a spec as present
/// when one with the same path is selected by the new one's GVK, so a specific spec already
/// there shadows a more general one merged later.
pub fn merge_specs(to: &mut Vec<FieldSpec>, add: &[FieldSpec]) {
    for fs in add {
        if !to
            .iter()
            .any(|x| x.gvk.is_selected(&fs.gvk) && x.path == fs.path)
        {
            to.push(fs.clone());
        }
    }
}

/// Splits a field-spec path on `/`, honouring `\/`.
pub fn split_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'/') {
            cur.push('/');
            chars.next();
        } else if c == '/' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Whether the spec's GVK matches an object's.
pub fn spec_matches(fs: &FieldSpec, obj: &Value) -> bool {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let gvk = Gvk::from_api_version(av, kind);
    gvk.is_selected(&fs.gvk)
}

/// What to create at the end of a path when `create` is set and the field is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    Nothing,
    Scalar,
    Map,
}

/// Walks `obj` along `path` (already split), calling `set` on every node found at its end;
/// lists met on the way are walked element by element. With `create`, missing maps on the way
/// and the last field (as `last`) are created. `set` gets `None` for a freshly created scalar.
pub fn walk(
    obj: &mut Value,
    path: &[String],
    create: bool,
    last: Create,
    set: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        return set(obj);
    };
    match obj {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for item in items {
                walk(item, path, create, last, set)?;
            }
            Ok(())
        }
        Value::Object(m) => {
            let (name, is_seq) = match first.strip_suffix("[]") {
                Some(n) => (n, true),
                None => (first.as_str(), false),
            };
            if name.is_empty() {
                return Err("cannot set or create an empty field name".into());
            }
            // kyaml creates nothing, not even maps on the way, unless the caller says what to create.
            let creating = create && !is_seq && last != Create::Nothing;
            if !m.contains_key(name) {
                if !creating {
                    return Ok(());
                }
                let fresh = if rest.is_empty() {
                    match last {
                        Create::Scalar => Value::Null,
                        _ => Value::Object(Map::new()),
                    }
                } else {
                    Value::Object(Map::new())
                };
                if rest.is_empty() && last == Create::Scalar {
                    // A new scalar field: the setter gives it its value.
                    m.insert(name.to_string(), Value::String(String::new()));
                    let Some(v) = m.get_mut(name) else {
                        return Ok(());
                    };
                    return set(v);
                }
                m.insert(name.to_string(), fresh);
            }
            let Some(child) = m.get_mut(name) else {
                return Ok(());
            };
            if child.is_null() && creating {
                *child = if rest.is_empty() && last == Create::Scalar {
                    Value::String(String::new())
                } else {
                    Value::Object(Map::new())
                };
            }
            walk(child, rest, create, last, set)
        }
        _ => Err("expected sequence or mapping node".into()),
    }
}
