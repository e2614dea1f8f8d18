//! `kustomize edit set image`, as Kustomize v5 does it: the kustomization is decoded the way
//! kustomize decodes it (Go field names matched case-insensitively, unknown fields refused),
//! fixed up (`FixKustomization`: default kind/apiVersion, `bases` into `resources`, `imageTags`
//! into `images`, `env` into `envs`), edited, and written back as `kustfile` writes it: the
//! original top-level fields in their order with the comment lines before each, then the missing
//! non-empty fields in kustomize's fixed order, each field marshalled on its own.

use std::collections::HashMap;

use serde_json::{Map, Value};
use shipway_model::LoadError;

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// `set image` without arguments.
    #[error("no image specified; give at least one <image>=<newimage>:<newtag> argument")]
    NoArgs,
    /// An argument that is not an image edit (a bare `nginx`), in kustomize's words.
    #[error("{arg:?}: {INVALID_IMAGE}")]
    InvalidImage { arg: String },
    /// The file is not YAML.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Load(Vec<LoadError>),
    /// The file is YAML but not a kustomization kustomize would decode.
    #[error("{file}: invalid Kustomization: {message}")]
    Invalid { file: String, message: String },
    /// A field Shipway does not edit.
    #[error("{file}: {message}")]
    Unsupported { file: String, message: String },
    /// An entry of an `images` list given to [`set_image_entries`] that kustomize would not
    /// decode.
    #[error("images[{index}]: {message}")]
    Image { index: usize, message: String },
}

const INVALID_IMAGE: &str = "invalid format of image, use one of the following options:
- <image>=<newimage>:<newtag>
- <image>=<newimage>@<digest>
- <image>=<newimage>:<newtag>@<digest>
- <image>=<newimage>
- <image>:<newtag>
- <image>:<newtag>@<digest>
- <image>@<digest>";

/// Passing `*` as a part keeps that part of the existing entry.
const PRESERVE: &str = "*";

/// `kustomize edit set image ARGS...` on the text of a kustomization file named `file` (for
/// messages); returns the new text.
pub fn set_image(file: &str, text: &str, args: &[String]) -> Result<String, EditError> {
    // Kustomize validates the arguments before it reads the file.
    let wanted = parse_args(args)?;
    let mut k = Kustomization::decode(file, text)?;
    k.fix(file)?;
    let images = match k.values.remove("images") {
        Some(Value::Array(a)) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| Image::from_value(&v).map_err(|m| image_error(i, m)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EditError::Invalid {
                file: file.to_string(),
                message: e.to_string(),
            })?,
        _ => Vec::new(),
    };
    let images = apply(images, wanted);
    k.values.insert(
        "images",
        Value::Array(images.iter().map(|i| Value::Object(i.to_map())).collect()),
    );
    Ok(k.marshal(text))
}

/// The same edit on the `images` list of a parsed kustomization (what Argo CD's
/// `kustomize.images` override does), without re-emitting the file: entries named by `args` are
/// replaced, others kept, the list sorted by name.
pub fn set_image_entries(
    images: &mut Vec<Map<String, Value>>,
    args: &[String],
) -> Result<(), EditError> {
    let wanted = parse_args(args)?;
    let existing = images
        .iter()
        .enumerate()
        .map(|(i, m)| Image::from_map(m).map_err(|msg| image_error(i, msg)))
        .collect::<Result<Vec<_>, _>>()?;
    *images = apply(existing, wanted).iter().map(Image::to_map).collect();
    Ok(())
}

fn image_error(index: usize, message: String) -> EditError {
    EditError::Image { index, message }
}

/// kustomize's `types.Image`; an empty string is an absent part.
#[derive(Clone, Debug, Default, PartialEq)]
struct Image {
    name: String,
    new_name: String,
    tag_suffix: String,
    new_tag: String,
    digest: String,
}

impl Image {
    fn from_value(v: &Value) -> Result<Image, String> {
        match v {
            Value::Object(m) => Image::from_map(m),
            // Go decodes null into a struct as nothing at all.
            Value::Null => Ok(Image::default()),
            other => Err(format!(
                "json: cannot unmarshal {} into Go value of type types.Image",
                json_type(other)
            )),
        }
    }

    fn from_map(m: &Map<String, Value>) -> Result<Image, String> {
        let mut image = Image::default();
        for (key, v) in m {
            let slot = match ["name", "newName", "tagSuffix", "newTag", "digest"]
                .iter()
                .find(|f| fold_eq(key, f))
            {
                Some(&"name") => &mut image.name,
                Some(&"newName") => &mut image.new_name,
                Some(&"tagSuffix") => &mut image.tag_suffix,
                Some(&"newTag") => &mut image.new_tag,
                Some(_) => &mut image.digest,
                None => return Err(format!("json: unknown field {key:?}")),
            };
            match v {
                Value::String(s) => *slot = s.clone(),
                Value::Null => {}
                other => {
                    return Err(format!(
                        "json: cannot unmarshal {} into Go struct field Image.{key} of type string",
                        json_type(other)
                    ));
                }
            }
        }
        Ok(image)
    }

    /// The entry as `sigs.k8s.io/yaml` writes it: empty parts omitted.
    fn to_map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        for (key, v) in [
            ("name", &self.name),
            ("newName", &self.new_name),
            ("tagSuffix", &self.tag_suffix),
            ("newTag", &self.new_tag),
            ("digest", &self.digest),
        ] {
            if !v.is_empty() {
                m.insert(key.into(), v.clone().into());
            }
        }
        m
    }
}

fn parse_args(args: &[String]) -> Result<Vec<Image>, EditError> {
    if args.is_empty() {
        return Err(EditError::NoArgs);
    }
    args.iter().map(|a| parse_arg(a)).collect()
}

/// `<image>=<newimage>:<newtag>@<digest>` and its shorter forms.
fn parse_arg(arg: &str) -> Result<Image, EditError> {
    let (key, value) = arg.split_once('=').unwrap_or(("", arg));
    let (name, tag, digest) = split_image(value);
    // Without `=`, `:` or `@` there is nothing to set.
    if name == arg {
        return Err(EditError::InvalidImage {
            arg: arg.to_string(),
        });
    }
    let mut image = Image {
        new_tag: tag.to_string(),
        digest: digest.to_string(),
        ..Image::default()
    };
    if key.is_empty() {
        image.name = name.to_string();
    } else {
        image.name = key.to_string();
        image.new_name = name.to_string();
    }
    Ok(image)
}

/// kustomize's `image.Split`: name, tag and digest of `[[host[:port]/]component/]component[:tag]
/// [@digest]`. Everything before the first `/` is skipped when looking for `:` and `@`, so a
/// registry port is not a tag.
fn split_image(image: &str) -> (&str, &str, &str) {
    let offset = match image.find('/') {
        Some(i) if i > 0 => i,
        _ => 0,
    };
    let search = &image[offset..];
    let at = search.find('@').map(|i| i + offset);
    let colon = search.find(':').map(|i| i + offset);
    match (colon, at) {
        (None, None) => (image, "", ""),
        (c, Some(d)) if c.is_none_or(|c| d < c) => (&image[..d], "", &image[d + 1..]),
        (Some(c), Some(d)) => (&image[..c], &image[c + 1..d], &image[d + 1..]),
        (Some(c), None) => (&image[..c], &image[c + 1..], ""),
        (None, Some(_)) => unreachable!("matched by the digest-only arm"),
    }
}

/// `RunSetImage`: an argument replaces the whole entry of its name (a `*` part keeps the existing
/// value of that part), existing entries of other names are kept, the result is sorted by name.
fn apply(existing: Vec<Image>, wanted: Vec<Image>) -> Vec<Image> {
    let mut map: HashMap<String, Image> = HashMap::new();
    for w in wanted {
        map.insert(w.name.clone(), w);
    }
    for im in existing {
        match map.get(&im.name).cloned() {
            // The entry already in the map may itself be an earlier entry of the file with the
            // same name; kustomize treats it exactly like an argument.
            Some(mut arg) => {
                if arg.new_name == PRESERVE {
                    arg = with_parts(&arg, &im.new_name, &arg.new_tag, &arg.digest);
                }
                if arg.new_tag == PRESERVE {
                    arg = with_parts(&arg, &arg.new_name, &im.new_tag, &arg.digest);
                }
                if arg.digest == PRESERVE {
                    arg = with_parts(&arg, &arg.new_name, &arg.new_tag, &im.digest);
                }
                map.insert(im.name.clone(), arg);
            }
            None => {
                map.insert(im.name.clone(), im);
            }
        }
    }
    let mut images: Vec<Image> = map
        .into_values()
        .map(|v| {
            let mut v = v;
            // A `*` with nothing to keep sets nothing.
            if v.new_name == PRESERVE {
                v = with_parts(&v, "", &v.new_tag, &v.digest);
            }
            if v.new_tag == PRESERVE {
                v = with_parts(&v, &v.new_name, "", &v.digest);
            }
            if v.digest == PRESERVE {
                v = with_parts(&v, &v.new_name, &v.new_tag, "");
            }
            v
        })
        .collect();
    images.sort_by(|a, b| a.name.cmp(&b.name));
    images
}

/// kustomize's `replaceNewName`/`replaceNewTag`/`replaceDigest`, which rebuild the entry without
/// its `tagSuffix`.
fn with_parts(image: &Image, new_name: &str, new_tag: &str, digest: &str) -> Image {
    Image {
        name: image.name.clone(),
        new_name: new_name.to_string(),
        tag_suffix: String::new(),
        new_tag: new_tag.to_string(),
        digest: digest.to_string(),
    }
}

/// How a field is typed in kustomize's `types.Kustomization`, which decides what it accepts and
/// when it counts as empty.
#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Str,
    StrList,
    StrMap,
    /// A pointer to a struct: written unless null, even when `{}`.
    Ptr,
    /// A list of structs, kept as given.
    List,
}

/// kustomize's fields, in its marshalling order: Go name, JSON name, type.
const FIELDS: &[(&str, &str, Ty)] = &[
    ("APIVersion", "apiVersion", Ty::Str),
    ("Kind", "kind", Ty::Str),
    ("MetaData", "metadata", Ty::Ptr),
    ("SortOptions", "sortOptions", Ty::Ptr),
    ("Resources", "resources", Ty::StrList),
    ("Bases", "bases", Ty::StrList),
    ("NamePrefix", "namePrefix", Ty::Str),
    ("NameSuffix", "nameSuffix", Ty::Str),
    ("Namespace", "namespace", Ty::Str),
    ("Crds", "crds", Ty::StrList),
    ("CommonLabels", "commonLabels", Ty::StrMap),
    ("Labels", "labels", Ty::List),
    ("CommonAnnotations", "commonAnnotations", Ty::StrMap),
    (
        "PatchesStrategicMerge",
        "patchesStrategicMerge",
        Ty::StrList,
    ),
    ("PatchesJson6902", "patchesJson6902", Ty::List),
    ("Patches", "patches", Ty::List),
    ("ConfigMapGenerator", "configMapGenerator", Ty::List),
    ("SecretGenerator", "secretGenerator", Ty::List),
    ("HelmCharts", "helmCharts", Ty::List),
    (
        "HelmChartInflationGenerator",
        "helmChartInflationGenerator",
        Ty::List,
    ),
    ("HelmGlobals", "helmGlobals", Ty::Ptr),
    ("GeneratorOptions", "generatorOptions", Ty::Ptr),
    ("Vars", "vars", Ty::List),
    ("Images", "images", Ty::List),
    ("Replacements", "replacements", Ty::List),
    ("Replicas", "replicas", Ty::List),
    ("Configurations", "configurations", Ty::StrList),
    ("Generators", "generators", Ty::StrList),
    ("Transformers", "transformers", Ty::StrList),
    ("Validators", "validators", Ty::StrList),
    ("Components", "components", Ty::StrList),
    ("OpenAPI", "openapi", Ty::StrMap),
    ("BuildMetadata", "buildMetadata", Ty::StrList),
];

/// Decodable but never written (`FixKustomization` empties it), so not in [`FIELDS`].
const IMAGE_TAGS: &str = "imageTags";

/// A decoded kustomization: each present field's value by JSON name, normalised to its Go type.
struct Kustomization {
    values: HashMap<&'static str, Value>,
}

impl Kustomization {
    fn decode(file: &str, text: &str) -> Result<Kustomization, EditError> {
        let invalid = |message: String| EditError::Invalid {
            file: file.to_string(),
            message,
        };
        // Kustomize reads the first document only.
        let docs = shipway_model::parse_documents(file, text).map_err(EditError::Load)?;
        let m = match docs.into_iter().next().map(|d| d.value) {
            Some(Value::Object(m)) => m,
            None | Some(Value::Null) => Map::new(),
            Some(other) => {
                return Err(invalid(format!(
                    "json: cannot unmarshal {} into Go value of type types.Kustomization",
                    json_type(&other)
                )));
            }
        };
        let mut values: HashMap<&'static str, Value> = HashMap::new();
        for (key, v) in m {
            // encoding/json matches field names case-insensitively.
            let field = FIELDS
                .iter()
                .map(|&(_, json, ty)| (json, ty))
                .chain([(IMAGE_TAGS, Ty::List)])
                .find(|(json, _)| fold_eq(&key, json));
            let Some((json, ty)) = field else {
                return Err(invalid(format!("json: unknown field {key:?}")));
            };
            let v = typed(json, ty, v).map_err(invalid)?;
            // A repeated field decodes over the earlier one: maps and structs merge, the rest
            // is replaced.
            match (values.get_mut(json), v) {
                (Some(Value::Object(old)), Value::Object(new)) if ty != Ty::List => {
                    old.extend(new);
                }
                (_, v) => {
                    values.insert(json, v);
                }
            }
        }
        Ok(Kustomization { values })
    }

    /// `FixKustomization`.
    fn fix(&mut self, file: &str) -> Result<(), EditError> {
        if self
            .values
            .get("helmChartInflationGenerator")
            .is_some_and(|v| !is_empty(v, Ty::List))
        {
            return Err(EditError::Unsupported {
                file: file.to_string(),
                message: "helmChartInflationGenerator is not supported: Shipway does not \
                          render Helm charts; list the output of `helm template` under \
                          resources instead"
                    .into(),
            });
        }
        self.values.remove("helmChartInflationGenerator");
        let str_of = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
        let mut kind = str_of(self.values.get("kind"));
        if kind.is_empty() {
            kind = "Kustomization".into();
            self.values.insert("kind", kind.clone().into());
        }
        if str_of(self.values.get("apiVersion")).is_empty() {
            let version = if kind == "Component" {
                "kustomize.config.k8s.io/v1alpha1"
            } else {
                "kustomize.config.k8s.io/v1beta1"
            };
            self.values.insert("apiVersion", version.into());
        }
        for (from, to) in [("bases", "resources"), (IMAGE_TAGS, "images")] {
            if let Some(Value::Array(moved)) = self.values.remove(from) {
                match self.values.get_mut(to) {
                    Some(Value::Array(list)) => list.extend(moved),
                    _ => {
                        self.values.insert(to, Value::Array(moved));
                    }
                }
            }
        }
        for generator in ["configMapGenerator", "secretGenerator"] {
            let Some(Value::Array(list)) = self.values.get_mut(generator) else {
                continue;
            };
            for g in list.iter_mut().filter_map(Value::as_object_mut) {
                let Some(env) = g.remove("env") else {
                    continue;
                };
                if let Some(env) = env.as_str().filter(|s| !s.is_empty()) {
                    match g.entry("envs").or_insert_with(|| Value::Array(Vec::new())) {
                        Value::Array(envs) => envs.push(env.into()),
                        other => *other = Value::Array(vec![env.into()]),
                    }
                }
            }
        }
        Ok(())
    }

    /// `kustfile`'s `marshal`: the fields of `original` (the file's text) in their order, each
    /// after the comment lines that preceded it, then the missing fields in kustomize's order.
    fn marshal(&self, original: &str) -> String {
        let fields = commented_fields(original);
        let mut out = String::new();
        for (go, comment) in &fields {
            out.push_str(comment);
            out.push_str(&self.marshal_field(go));
        }
        for &(go, _, _) in FIELDS {
            if !fields.iter().any(|(f, _)| *f == go) {
                out.push_str(&self.marshal_field(go));
            }
        }
        out
    }

    /// One field as `yaml.Marshal` of a kustomization holding only it; empty when Go would omit
    /// it.
    fn marshal_field(&self, go: &str) -> String {
        let Some(&(_, json, ty)) = FIELDS.iter().find(|(g, _, _)| *g == go) else {
            return String::new();
        };
        match self.values.get(json) {
            Some(v) if !is_empty(v, ty) => {
                let mut m = Map::new();
                m.insert(json.to_string(), v.clone());
                crate::emit::to_yaml(&Value::Object(m))
            }
            _ => String::new(),
        }
    }
}

/// Go's `isEmpty` for a field: pointers when nil, everything else when of length 0.
fn is_empty(v: &Value, ty: Ty) -> bool {
    match v {
        Value::Null => true,
        _ if ty == Ty::Ptr => false,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// `v` as the Go type of field `json` decodes it (null as the zero value), or the decoder's error.
fn typed(json: &str, ty: Ty, v: Value) -> Result<Value, String> {
    let mismatch = |v: &Value, go: &str| {
        format!(
            "json: cannot unmarshal {} into Go struct field Kustomization.{json} of type {go}",
            json_type(v)
        )
    };
    let string = |v: Value| match v {
        Value::String(_) => Ok(v),
        Value::Null => Ok(Value::String(String::new())),
        other => Err(mismatch(&other, "string")),
    };
    match (ty, v) {
        (_, Value::Null) => Ok(Value::Null),
        (Ty::Str, v) => string(v),
        (Ty::StrList, Value::Array(a)) => a
            .into_iter()
            .map(string)
            .collect::<Result<_, _>>()
            .map(Value::Array),
        (Ty::StrMap, Value::Object(m)) => m
            .into_iter()
            .map(|(k, v)| string(v).map(|v| (k, v)))
            .collect::<Result<_, _>>()
            .map(Value::Object),
        (Ty::List, v @ Value::Array(_)) | (Ty::Ptr, v @ Value::Object(_)) => Ok(v),
        (Ty::StrList, v) => Err(mismatch(&v, "[]string")),
        (Ty::StrMap, v) => Err(mismatch(&v, "map[string]string")),
        (Ty::List, v) => Err(mismatch(&v, "slice")),
        (Ty::Ptr, v) => Err(mismatch(&v, "struct")),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `parseCommentedFields`: each top-level field line of `text` (by Go field name) with the
/// comment and blank lines before it. Comments followed by a line that is not a field line join
/// the previous field's; with no previous field they wait for the next one; trailing comments
/// are dropped. As in Go, a last line without a newline is not looked at.
fn commented_fields(text: &str) -> Vec<(&'static str, String)> {
    let mut fields: Vec<(&'static str, String)> = Vec::new();
    let mut comments = String::new();
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        if is_comment_or_blank(line) {
            comments.push_str(line);
        } else if let Some(go) = matched_field(line) {
            fields.push((go, std::mem::take(&mut comments)));
        } else if !comments.is_empty()
            && let Some(last) = fields.last_mut()
        {
            last.1.push_str(&std::mem::take(&mut comments));
        }
    }
    fields
}

fn is_comment_or_blank(line: &str) -> bool {
    let s = line.trim_start_matches(' ').trim_end_matches('\n');
    s.is_empty() || s.starts_with('#')
}

/// The Go field whose name (any case) starts `line` followed by `:`.
fn matched_field(line: &str) -> Option<&'static str> {
    let (head, _) = line.split_once(':')?;
    FIELDS
        .iter()
        .map(|&(go, _, _)| go)
        .find(|go| fold_eq(head, go))
}

/// Case-insensitive equality as Go's `(?i)` and encoding/json fold: ASCII case, and the Kelvin
/// sign and long s that fold to `k` and `s`.
fn fold_eq(a: &str, ascii: &str) -> bool {
    let fold = |c: char| match c {
        '\u{212A}' => 'k',
        '\u{17F}' => 's',
        c => c.to_ascii_lowercase(),
    };
    a.chars().map(fold).eq(ascii.chars().map(fold))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:24a0c4b4a4c0eb97a1aabb8e29f18e917d05abfe1b7a7c07857230879ce7d3d3";

    fn run(text: &str, args: &[&str]) -> Result<String, EditError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        set_image("kustomization.yaml", text, &args)
    }

    const HEAD: &str = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n";

    #[test]
    fn adds_images_to_a_file_without_them() {
        let text = format!("{HEAD}resources:\n- a.yaml\n");
        let out = run(&text, &["image1=my-image1:my-tag", "image0:1234"]).unwrap();
        assert_eq!(
            out,
            format!(
                "{text}images:\n- name: image0\n  newTag: \"1234\"\n- name: image1\n  newName: my-image1\n  newTag: my-tag\n"
            )
        );
    }

    #[test]
    fn replaces_the_whole_entry() {
        let text = format!(
            "{HEAD}images:\n- name: image1\n  newName: my-image1\n  newTag: my-tag\n  tagSuffix: -x\n- name: image2\n  newTag: t2\n"
        );
        let out = run(&text, &["image1:v1"]).unwrap();
        assert_eq!(
            out,
            format!("{HEAD}images:\n- name: image1\n  newTag: v1\n- name: image2\n  newTag: t2\n")
        );
    }

    #[test]
    fn digests_and_all_parts() {
        let out = run(HEAD, &[&format!("image1@{DIGEST}")]).unwrap();
        assert_eq!(
            out,
            format!("{HEAD}images:\n- digest: {DIGEST}\n  name: image1\n")
        );
        let out = run(
            HEAD,
            &[
                &format!("image1=my-image1:my-tag@{DIGEST}"),
                "ngnix=localhost:5000/my-project/ngnix",
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            format!(
                "{HEAD}images:\n- digest: {DIGEST}\n  name: image1\n  newName: my-image1\n  newTag: my-tag\n- name: ngnix\n  newName: localhost:5000/my-project/ngnix\n"
            )
        );
    }

    #[test]
    fn a_star_keeps_the_existing_part() {
        let text = format!(
            "{HEAD}images:\n- name: image1\n  newName: foo.bar:8800/foo/image1\n  newTag: my-tag\n"
        );
        assert_eq!(
            run(&text, &["image1=*:v1"]).unwrap(),
            format!(
                "{HEAD}images:\n- name: image1\n  newName: foo.bar:8800/foo/image1\n  newTag: v1\n"
            )
        );
        assert_eq!(
            run(&text, &["image1=my-image1:*"]).unwrap(),
            format!("{HEAD}images:\n- name: image1\n  newName: my-image1\n  newTag: my-tag\n")
        );
        assert_eq!(
            run(&text, &[&format!("image1=*@{DIGEST}")]).unwrap(),
            format!(
                "{HEAD}images:\n- digest: {DIGEST}\n  name: image1\n  newName: foo.bar:8800/foo/image1\n"
            )
        );
        // Nothing to keep: the part is left out, never written as `*`.
        assert_eq!(
            run(HEAD, &["image1=*:v1", "image2=my-image2:*"]).unwrap(),
            format!(
                "{HEAD}images:\n- name: image1\n  newTag: v1\n- name: image2\n  newName: my-image2\n"
            )
        );
    }

    #[test]
    fn invalid_arguments() {
        let e = run(HEAD, &["nginx"]).unwrap_err();
        assert!(matches!(e, EditError::InvalidImage { .. }));
        assert!(
            e.to_string()
                .starts_with("\"nginx\": invalid format of image, use one of the following options:\n- <image>=<newimage>:<newtag>\n"),
            "{e}"
        );
        assert!(matches!(run(HEAD, &[]), Err(EditError::NoArgs)));
        // Arguments are checked before the file is.
        assert!(matches!(
            run("foo: 1\n", &["bad"]),
            Err(EditError::InvalidImage { .. })
        ));
    }

    #[test]
    fn split_like_kustomize() {
        assert_eq!(split_image("a:1"), ("a", "1", ""));
        assert_eq!(
            split_image("host:5000/a/b:1@sha256:x"),
            ("host:5000/a/b", "1", "sha256:x")
        );
        assert_eq!(split_image("host:5000/a"), ("host:5000/a", "", ""));
        assert_eq!(split_image("a@sha256:x"), ("a", "", "sha256:x"));
        assert_eq!(split_image("/a:1"), ("/a", "1", ""));
    }

    #[test]
    fn comments_are_kept() {
        let text = "\n\n# Some comments\n# keep\nRESOURCES:\n- pod.yaml\n  # which field?\n- service.yaml\n\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: kustomization\n\n# about vars\nvars:\n- name: X\n  objref:\n    kind: Service\n    name: s\n# images\nimages:\n- name: a\n  newTag: \"1\"\n# trailing\n";
        let out = run(text, &["a:2"]).unwrap();
        assert_eq!(
            out,
            "\n\n# Some comments\n# keep\n  # which field?\nresources:\n- pod.yaml\n- service.yaml\n\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: kustomization\n\n# about vars\nvars:\n- name: X\n  objref:\n    kind: Service\n    name: s\n# images\nimages:\n- name: a\n  newTag: \"2\"\n"
        );
    }

    #[test]
    fn comments_before_a_document_separator_wait_for_the_first_field() {
        let text = "# top\n---\nkind: Kustomization\n\nnamespace: ns\n";
        assert_eq!(
            run(text, &["a:1"]).unwrap(),
            "# top\nkind: Kustomization\n\nnamespace: ns\napiVersion: kustomize.config.k8s.io/v1beta1\nimages:\n- name: a\n  newTag: \"1\"\n"
        );
    }

    #[test]
    fn missing_fields_come_in_kustomize_order_after_the_original_ones() {
        let text = "namespace: ns\nresources:\n- a.yaml\n";
        assert_eq!(
            run(text, &["a:1"]).unwrap(),
            "namespace: ns\nresources:\n- a.yaml\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n- name: a\n  newTag: \"1\"\n"
        );
        let component = "kind: Component\n";
        assert_eq!(
            run(component, &["a:1"]).unwrap(),
            "kind: Component\napiVersion: kustomize.config.k8s.io/v1alpha1\nimages:\n- name: a\n  newTag: \"1\"\n"
        );
    }

    #[test]
    fn bases_image_tags_and_env_are_folded_in() {
        let text = format!(
            "{HEAD}# the base\nbases:\n- ../base\nresources:\n- a.yaml\nimageTags:\n- name: old\n  newTag: v0\nconfigMapGenerator:\n- name: c\n  env: a.env\n"
        );
        assert_eq!(
            run(&text, &["new:v1"]).unwrap(),
            format!(
                "{HEAD}# the base\nresources:\n- a.yaml\n- ../base\nconfigMapGenerator:\n- envs:\n  - a.env\n  name: c\nimages:\n- name: new\n  newTag: v1\n- name: old\n  newTag: v0\n"
            )
        );
        // Only `bases`: `resources` is a missing field, written in its place in the order.
        assert_eq!(
            run("bases:\n- ../base\nnamePrefix: p-\n", &["a:1"]).unwrap(),
            "namePrefix: p-\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../base\nimages:\n- name: a\n  newTag: \"1\"\n"
        );
    }

    #[test]
    fn empty_fields_are_dropped_but_empty_structs_kept() {
        let text =
            format!("{HEAD}namePrefix: \"\"\nresources: []\nmetadata: {{}}\ncommonLabels:\n");
        assert_eq!(
            run(&text, &["a:1"]).unwrap(),
            format!("{HEAD}metadata: {{}}\nimages:\n- name: a\n  newTag: \"1\"\n")
        );
    }

    #[test]
    fn a_last_line_without_newline_is_not_a_field_line() {
        // kustomize stops at the unterminated line, so `namespace` moves to its ordered place.
        assert_eq!(
            run(
                "namespace: ns\nresources:\n- a.yaml\nnamePrefix: p-",
                &["a:1"]
            )
            .unwrap(),
            "namespace: ns\nresources:\n- a.yaml\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamePrefix: p-\nimages:\n- name: a\n  newTag: \"1\"\n"
        );
    }

    #[test]
    fn refusals() {
        let e = run("foo: bar\n", &["a:1"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "kustomization.yaml: invalid Kustomization: json: unknown field \"foo\""
        );
        let e = run("commonLabels:\n  version: 1\n", &["a:1"]).unwrap_err();
        assert!(e.to_string().contains("commonLabels of type string"), "{e}");
        let e = run("helmChartInflationGenerator:\n- chartName: x\n", &["a:1"]).unwrap_err();
        assert!(matches!(e, EditError::Unsupported { .. }), "{e}");
        let e = run("images:\n- name: a\n  tag: x\n", &["a:1"]).unwrap_err();
        assert!(e.to_string().contains("unknown field \"tag\""), "{e}");
        assert!(matches!(run("a: [", &["a:1"]), Err(EditError::Load(_))));
    }

    #[test]
    fn entries_edited_in_place() {
        let mut images: Vec<Map<String, Value>> = vec![
            serde_json::from_str(r#"{"name":"b","newName":"x","newTag":"1"}"#).unwrap(),
            serde_json::from_str(r#"{"name":"a","newTag":"1"}"#).unwrap(),
        ];
        set_image_entries(&mut images, &["b=*:2".into(), "c@sha256:x".into()]).unwrap();
        assert_eq!(
            Value::from(images.into_iter().map(Value::Object).collect::<Vec<_>>()),
            serde_json::json!([
                {"name": "a", "newTag": "1"},
                {"name": "b", "newName": "x", "newTag": "2"},
                {"name": "c", "digest": "sha256:x"},
            ])
        );
        let mut bad = vec![serde_json::from_str(r#"{"name":"a","newTag":1}"#).unwrap()];
        assert!(matches!(
            set_image_entries(&mut bad, &["a:1".into()]),
            Err(EditError::Image { index: 0, .. })
        ));
    }
}
