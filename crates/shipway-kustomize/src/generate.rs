//! `configMapGenerator` and `secretGenerator`, and the content hash kustomize appends to
//! generated names.

use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::resource::{Behavior, Resource};

/// Reads files relative to the kustomization, under its load restrictions.
pub trait Loader {
    fn load(&self, path: &str) -> Result<Vec<u8>, String>;
}

#[derive(Clone, Debug, Default)]
struct Options {
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    disable_hash: bool,
    immutable: bool,
}

/// A map's entries with scalar values as kustomize prints them (also for `build`'s maps).
pub(crate) fn string_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| (k.clone(), crate::resource::scalar_string(v)))
            .collect(),
        _ => Vec::new(),
    }
}

fn options_of(local: Option<&Value>, global: Option<&Value>) -> Options {
    let mut o = Options {
        labels: string_pairs(local.and_then(|l| l.get("labels"))),
        annotations: string_pairs(local.and_then(|l| l.get("annotations"))),
        disable_hash: local
            .and_then(|l| l.get("disableNameSuffixHash"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        immutable: local
            .and_then(|l| l.get("immutable"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    if let Some(g) = global {
        for (k, v) in string_pairs(g.get("labels")) {
            if !o.labels.iter().any(|(lk, _)| *lk == k) {
                o.labels.push((k, v));
            }
        }
        for (k, v) in string_pairs(g.get("annotations")) {
            if !o.annotations.iter().any(|(lk, _)| *lk == k) {
                o.annotations.push((k, v));
            }
        }
        if g.get("disableNameSuffixHash").and_then(Value::as_bool) == Some(true) {
            o.disable_hash = true;
        }
        if g.get("immutable").and_then(Value::as_bool) == Some(true) {
            o.immutable = true;
        }
    }
    o
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => crate::resource::scalar_string(other),
            })
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Key/value pairs in kustomize's order: env files, then literals, then files.
fn load_pairs(args: &Value, ldr: &dyn Loader) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut envs = strings(args.get("envs"));
    if let Some(Value::String(e)) = args.get("env")
        && !e.is_empty()
    {
        envs.push(e.clone());
    }
    for p in envs {
        let content = ldr.load(&p)?;
        let text = String::from_utf8(content).map_err(|_| format!("{p}: invalid utf8"))?;
        for (i, line) in text.lines().enumerate() {
            let line = if i == 0 {
                line.trim_start_matches('\u{FEFF}')
            } else {
                line
            };
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            if k.is_empty() || k.contains(char::is_whitespace) {
                return Err(format!("invalid env var name {k:?} in {p}"));
            }
            pairs.push((k.to_string(), v.to_string()));
        }
    }
    for lit in strings(args.get("literals")) {
        let Some((k, v)) = lit.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(format!("invalid literal source {lit}, expected key=value"));
        };
        pairs.push((k.to_string(), remove_quotes(v).to_string()));
    }
    for src in strings(args.get("files")) {
        let (key, path) = match src.matches('=').count() {
            0 => (
                src.rsplit('/').next().unwrap_or(&src).to_string(),
                src.clone(),
            ),
            1 => {
                let (k, p) = src.split_once('=').unwrap_or(("", ""));
                if k.is_empty() {
                    return Err(format!(
                        "missing key name for file path {p:?} in source {src:?}"
                    ));
                }
                if p.is_empty() {
                    return Err(format!(
                        "missing file path for key name {k:?} in source {src:?}"
                    ));
                }
                (k.to_string(), p.to_string())
            }
            _ => return Err(format!("source {src:?} key name or file path contains '='")),
        };
        let content = ldr.load(&path)?;
        pairs.push((key, String::from_utf8_lossy(&content).into_owned()));
        if std::str::from_utf8(&content).is_err() {
            // Binary content: keep the raw bytes for binaryData.
            if let Some(last) = pairs.last_mut() {
                last.1 = format!("\u{0}BIN{}", encode_base64(&content));
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (k, _) in &pairs {
        if !seen.insert(k.clone()) {
            let name = args.get("name").and_then(Value::as_str).unwrap_or("");
            return Err(format!("configmap {name} illegally repeats the key `{k}`"));
        }
    }
    Ok(pairs)
}

/// Base64 as kyaml writes generated data: one line when short, else lines of 70 characters,
/// each ending in a newline.
fn encode_base64(bytes: &[u8]) -> String {
    const LINE: usize = 70;
    let enc = base64::engine::general_purpose::STANDARD.encode(bytes);
    if enc.len() < LINE {
        return enc;
    }
    let mut out = String::with_capacity(enc.len() + enc.len() / LINE + 1);
    for chunk in enc.as_bytes().chunks(LINE) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out
}

fn remove_quotes(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() >= 2 && b[0] == b[b.len() - 1] && (b[0] == b'"' || b[0] == b'\'') {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

fn behavior_of(args: &Value) -> Result<Behavior, String> {
    match args.get("behavior").and_then(Value::as_str).unwrap_or("") {
        "" | "create" => Ok(Behavior::Create),
        "merge" => Ok(Behavior::Merge),
        "replace" => Ok(Behavior::Replace),
        other => Err(format!("unknown generator behavior {other:?}")),
    }
}

/// Makes one ConfigMap (`secret` false) or Secret from a generator entry.
pub fn generate(
    args: &Value,
    global: Option<&Value>,
    secret: bool,
    ldr: &dyn Loader,
) -> Result<Resource, String> {
    let name = args.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        return Err(format!(
            "a {} must have a name",
            if secret { "secret" } else { "configmap" }
        ));
    }
    let namespace = args.get("namespace").and_then(Value::as_str).unwrap_or("");
    let opts = options_of(args.get("options"), global);
    let pairs = load_pairs(args, ldr)?;
    let kind = if secret { "Secret" } else { "ConfigMap" };
    let mut obj = json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name}});
    if !namespace.is_empty() {
        obj["metadata"]["namespace"] = Value::String(namespace.into());
    }
    if secret {
        let t = args
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .unwrap_or("Opaque");
        obj["type"] = Value::String(t.into());
    }
    let mut data = Map::new();
    let mut binary = Map::new();
    for (k, v) in pairs {
        if let Some(b64) = v.strip_prefix("\u{0}BIN") {
            if secret {
                data.insert(k, Value::String(b64.into()));
            } else {
                binary.insert(k, Value::String(b64.into()));
            }
        } else if secret {
            data.insert(k, Value::String(encode_base64(v.as_bytes())));
        } else {
            data.insert(k, Value::String(v));
        }
    }
    if !data.is_empty() {
        obj["data"] = Value::Object(data);
    }
    if !binary.is_empty() {
        obj["binaryData"] = Value::Object(binary);
    }
    let mut res = Resource::new(obj);
    let mut labels = opts.labels.clone();
    labels.sort();
    let mut annotations = opts.annotations.clone();
    annotations.sort();
    if !labels.is_empty() {
        res.set_string_map("labels", labels);
    }
    if !annotations.is_empty() {
        res.set_string_map("annotations", annotations);
    }
    if opts.immutable {
        res.obj["immutable"] = Value::Bool(true);
    }
    res.generated = Some(behavior_of(args)?);
    res.needs_hash = !opts.disable_hash;
    Ok(res)
}

/// Kustomize's name hash of a ConfigMap or Secret (or, for other kinds, its whole object).
pub fn hash_of(obj: &Value) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    // Kustomize looks the name up as one field called "metadata/name", which never exists, so
    // the name always hashes as "".
    let name = Value::String(String::new());
    let field = |k: &str| match obj.get(k) {
        None | Some(Value::Null) => Value::String(String::new()),
        Some(v) => v.clone(),
    };
    let encoded = match kind {
        "ConfigMap" => {
            let mut m = Map::new();
            m.insert("data".into(), field("data"));
            m.insert("kind".into(), Value::String("ConfigMap".into()));
            m.insert("name".into(), name);
            if let Some(b @ Value::Object(_)) = obj.get("binaryData") {
                m.insert("binaryData".into(), b.clone());
            }
            go_json(&Value::Object(m))
        }
        "Secret" => {
            let mut m = Map::new();
            m.insert("data".into(), field("data"));
            m.insert("kind".into(), Value::String("Secret".into()));
            m.insert("name".into(), name);
            m.insert("type".into(), field("type"));
            if let Some(s @ Value::Object(_)) = obj.get("stringData") {
                m.insert("stringData".into(), s.clone());
            }
            go_json(&Value::Object(m))
        }
        _ => go_json(obj),
    };
    let digest = Sha256::digest(encoded.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex.chars()
        .take(10)
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            other => other,
        })
        .collect()
}

/// JSON as Go's `encoding/json` writes it: keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write_go_json(v, &mut out);
    out
}

fn write_go_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(k, out);
                out.push(':');
                write_go_json(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(x, out);
            }
            out.push(']');
        }
        Value::String(s) => write_go_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_go_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
