//! Turning YAML or JSON text into objects, with `file:line:col` errors that point at the offending node.
//!
//! Two layers: [`parse_documents`] turns text into JSON values that remember where every node came
//! from ([`Document`]); [`load_str`] and [`load_json_object`] then check that each value is a
//! well-formed object and deserialize it into [`Object`]. Both layers gather every problem they find
//! instead of stopping at the first.
//!
//! YAML is read the way Kubernetes users expect (`sigs.k8s.io/yaml`), with the YAML 1.2 core schema
//! for scalars: mapping keys must be strings, duplicate keys are errors, anchors, aliases and `<<`
//! merge keys are resolved, and the core tags (`!!str`, `!!int`, ...) are honoured. JSON goes through
//! the same parser (JSON is YAML), with integers kept exact up to 64 bits and larger ones refused
//! rather than rounded.

use std::collections::HashMap;

use saphyr_parser::{
    Event, Marker, Parser, ScalarStyle, ScanError, Span, SpannedEventReceiver, Tag,
};
use serde_json::{Map, Number, Value};

use crate::Object;
use crate::name;
use crate::object::group_of;

/// The largest document (the text between two `---` lines) that is read; larger ones are refused
/// before they are parsed, so a huge upload cannot make the server build a huge tree.
pub const MAX_DOCUMENT_BYTES: usize = 3 * 1024 * 1024;

/// The deepest nesting of mappings and sequences accepted. Stays below serde_json's own recursion
/// limit (128) so every loaded value can be written out and read back as JSON.
pub const MAX_DEPTH: usize = 100;

/// How many nodes aliases may copy in one document: bounds "billion laughs" expansion.
const MAX_ALIAS_NODES: usize = 100_000;

/// Kubernetes' limit on the total size of an object's annotations.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

const CORE_TAG: &str = "tag:yaml.org,2002:";

const NEEDS: &str = "every object needs apiVersion, kind and metadata.name";

/// An object read from text, with the position (1-based) where its document or list item starts:
/// the object's first key, not a `---` line or comments before it.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub object: Object,
    pub file: String,
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// One parsed YAML/JSON document: its value as JSON, and where each of its nodes came from.
///
/// Paths name nodes the way error messages do: `spec.containers[0].image`, with keys that are not
/// plain words quoted, `metadata.labels["app.kubernetes.io/name"]` (see [`child_path`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub value: Value,
    pub file: String,
    /// Where the document's root node starts (1-based).
    pub line: usize,
    pub column: usize,
    positions: Positions,
}

impl Document {
    /// Where the node at `path` starts; for a node the text does not spell out (one copied by an
    /// alias or a merge) or a path that does not exist, where its nearest recorded ancestor starts.
    pub fn position(&self, path: &str) -> (usize, usize) {
        let pos = self.positions.find(path).map_or(
            Pos {
                line: self.line,
                column: self.column,
            },
            |n| n.pos,
        );
        (pos.line, pos.column)
    }

    /// Where the key of the mapping entry at `path` starts; falls back to [`Document::position`].
    pub fn key_position(&self, path: &str) -> (usize, usize) {
        match self.positions.find_exact(path).and_then(|n| n.key_pos) {
            Some(p) => (p.line, p.column),
            None => self.position(path),
        }
    }

    /// An error at the node at `path`, with the message prefixed by the path (`spec.replicas: ...`).
    pub fn error(&self, path: &str, message: impl std::fmt::Display) -> LoadError {
        self.error_at(self.position(path), &prefixed(path, message))
    }

    fn error_at(&self, (line, column): (usize, usize), message: &str) -> LoadError {
        LoadError {
            file: self.file.clone(),
            line,
            column,
            message: message.to_string(),
        }
    }
}

/// The path of entry `key` of the mapping at `parent`: `parent.key`, or `parent["key"]` when the
/// key is not a plain word (so that label keys with dots and slashes stay readable and unambiguous).
pub fn child_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", Value::String(key.to_string())),
    }
}

/// The path of item `index` of the sequence at `parent`: `parent[index]`.
pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Reads every document of `text` into JSON values with positions, without checking that they are
/// objects. Empty documents (only comments, or a bare `---`) are skipped. Gathers every problem.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Document>, Vec<LoadError>> {
    let (docs, errors) = parse(file, text, true);
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(errors)
    }
}

/// Loads every document of `text`; `file` names the source in errors. Gathers every problem of
/// every document. A `kind: List` (or any `...List` with `items`) expands to its items, as with
/// kubectl.
pub fn load_str(file: &str, text: &str) -> Result<Vec<Loaded>, Vec<LoadError>> {
    let (docs, mut errors) = parse(file, text, true);
    let mut loaded = Vec::new();
    for doc in &docs {
        collect(doc, "", &doc.value, true, &mut loaded, &mut errors);
    }
    finish(loaded, errors)
}

/// Loads one object sent as JSON (an API request body). The same checks as [`load_str`]; a List,
/// several documents, or none at all are errors.
pub fn load_json_object(file: &str, text: &str) -> Result<Object, Vec<LoadError>> {
    let (docs, mut errors) = parse(file, text, false);
    if !errors.is_empty() {
        return Err(sorted(errors));
    }
    let doc = match docs.as_slice() {
        [doc] => doc,
        [] => {
            return Err(vec![LoadError {
                file: file.to_string(),
                line: 1,
                column: 1,
                message: "expected a JSON object, found an empty document".to_string(),
            }]);
        }
        [_, second, ..] => {
            return Err(vec![second.error_at(
                (second.line, second.column),
                "expected one JSON object, found several documents",
            )]);
        }
    };
    let mut loaded = Vec::new();
    collect(doc, "", &doc.value, false, &mut loaded, &mut errors);
    let mut loaded = finish(loaded, errors)?;
    loaded
        .pop()
        .map(|l| l.object)
        .ok_or_else(|| vec![doc.error_at((doc.line, doc.column), "expected a JSON object")])
}

fn finish(loaded: Vec<Loaded>, errors: Vec<LoadError>) -> Result<Vec<Loaded>, Vec<LoadError>> {
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(sorted(errors))
    }
}

fn sorted(mut errors: Vec<LoadError>) -> Vec<LoadError> {
    errors.sort_by_key(|e| (e.line, e.column));
    errors
}

// ---------------------------------------------------------------------------------------------
// Checking objects.

/// Adds the object(s) at `path` to `out`: a List's items, or the value itself as one object.
fn collect(
    doc: &Document,
    path: &str,
    value: &Value,
    allow_list: bool,
    out: &mut Vec<Loaded>,
    errors: &mut Vec<LoadError>,
) {
    if let Value::Object(map) = value
        && let Some(Value::String(kind)) = map.get("kind")
        && (kind == "List"
            || (kind.ends_with("List") && map.get("items").is_some_and(Value::is_array)))
    {
        if !allow_list {
            errors.push(doc.error(
                path,
                format!("expected a single object, found a {kind}; send its items one at a time"),
            ));
            return;
        }
        let items_path = child_path(path, "items");
        match map.get("items") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    collect(doc, &index_path(&items_path, i), item, true, out, errors);
                }
            }
            None | Some(Value::Null) => errors.push(doc.error(
                path,
                format!("missing required field \"items\"; a {kind} holds its objects in items"),
            )),
            Some(other) => {
                errors.push(doc.error(&items_path, expected("a sequence of objects", other)))
            }
        }
        return;
    }
    if let Some(object) = check_object(doc, path, value, errors) {
        let (line, column) = doc.position(path);
        out.push(Loaded {
            object,
            file: doc.file.clone(),
            line,
            column,
        });
    }
}

/// Checks the envelope and metadata of the object at `path`, then deserializes it.
fn check_object(
    doc: &Document,
    path: &str,
    value: &Value,
    errors: &mut Vec<LoadError>,
) -> Option<Object> {
    let Value::Object(map) = value else {
        errors.push(doc.error(
            path,
            format!(
                "expected an object (a mapping with apiVersion, kind and metadata), found {}",
                json_type(value)
            ),
        ));
        return None;
    };
    let before = errors.len();
    let mut c = Checker { doc, errors };
    let api_version = c.required_string(map, path, "apiVersion");
    if let Some(v) = api_version
        && !valid_api_version(v)
    {
        c.error(
            &child_path(path, "apiVersion"),
            format!("{v:?} is not a valid apiVersion; expected \"version\" or \"group/version\" (e.g. \"v1\", \"apps/v1\")"),
        );
    }
    let kind = c.required_string(map, path, "kind");
    if let Some(k) = kind
        && !(k.starts_with(|c: char| c.is_ascii_alphabetic())
            && k.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        c.error(
            &child_path(path, "kind"),
            format!("{k:?} is not a valid kind; a kind is a word of letters and digits (e.g. \"Deployment\")"),
        );
    }
    let meta_path = child_path(path, "metadata");
    match map.get("metadata") {
        None | Some(Value::Null) => c.missing(path, "metadata"),
        Some(Value::Object(meta)) => {
            let group = api_version.map(group_of).unwrap_or_default();
            c.metadata(meta, path, group, kind.unwrap_or_default());
        }
        Some(other) => c.error(&meta_path, expected("a mapping", other)),
    }
    if errors.len() > before {
        return None;
    }
    match serde_json::from_value::<Object>(normalized(map)) {
        Ok(object) => Some(object),
        // The checks above cover every typed field, so this is a backstop, not a code path we expect.
        Err(e) => {
            errors.push(doc.error(path, format!("cannot read the object: {e}")));
            None
        }
    }
}

/// A copy of the object with null metadata fields dropped, as Kubernetes treats them (`labels:` with
/// nothing after it, `creationTimestamp: null` from `kubectl create --dry-run -o yaml`).
fn normalized(map: &Map<String, Value>) -> Value {
    let mut map = map.clone();
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        meta.retain(|_, v| !v.is_null());
        if let Some(Value::Array(refs)) = meta.get_mut("ownerReferences") {
            for r in refs {
                if let Value::Object(r) = r {
                    r.retain(|_, v| !v.is_null());
                }
            }
        }
    }
    Value::Object(map)
}

fn valid_api_version(v: &str) -> bool {
    let ok = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    match v.split_once('/') {
        Some((group, version)) => ok(group) && ok(version) && !version.contains('/'),
        None => ok(v),
    }
}

struct Checker<'a> {
    doc: &'a Document,
    errors: &'a mut Vec<LoadError>,
}

impl Checker<'_> {
    fn error(&mut self, path: &str, message: impl std::fmt::Display) {
        self.errors.push(self.doc.error(path, message));
    }

    /// "missing required field" at the enclosing object, naming the field by its full path.
    fn missing(&mut self, object_path: &str, field: &str) {
        let message = format!("missing required field \"{field}\"; {NEEDS}");
        self.errors.push(self.doc.error(object_path, message));
    }

    /// A required, non-empty string field of the object at `path`.
    fn required_string<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        field: &str,
    ) -> Option<&'v str> {
        let field_path = child_path(path, field);
        match map.get(field) {
            None | Some(Value::Null) => {
                self.missing(path, field);
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.error(&field_path, format!("must not be empty; {NEEDS}"));
                None
            }
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.error(&field_path, expected("a string", other));
                None
            }
        }
    }

    /// An optional field that must be a string when present and not null.
    fn optional_string<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        path: &str,
        field: &str,
    ) -> Option<&'v str> {
        match map.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.error(&child_path(path, field), expected("a string", other));
                None
            }
        }
    }

    fn optional_bool(&mut self, map: &Map<String, Value>, path: &str, field: &str) {
        match map.get(field) {
            None | Some(Value::Null | Value::Bool(_)) => {}
            Some(other) => self.error(&child_path(path, field), expected("a boolean", other)),
        }
    }

    fn metadata(&mut self, meta: &Map<String, Value>, object_path: &str, group: &str, kind: &str) {
        let path = &child_path(object_path, "metadata");
        match meta.get("name") {
            None | Some(Value::Null) => {
                if meta.get("generateName").is_some_and(|v| !v.is_null()) {
                    self.error(
                        &child_path(path, "generateName"),
                        "not supported: Shipway needs every object's name up front; set metadata.name instead",
                    );
                } else {
                    let message = format!("missing required field \"metadata.name\"; {NEEDS}");
                    let at = self.doc.position(path);
                    self.errors
                        .push(self.doc.error_at(at, &prefixed(object_path, message)));
                }
            }
            Some(Value::String(n)) => {
                if let Err(e) = name::validate_name_for_kind(group, kind, n) {
                    self.error(&child_path(path, "name"), e);
                }
            }
            Some(other) => self.error(&child_path(path, "name"), expected("a string", other)),
        }
        if let Some(ns) = self.optional_string(meta, path, "namespace")
            && let Err(e) = name::validate_namespace(ns)
        {
            self.error(&child_path(path, "namespace"), e);
        }
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "generateName",
        ] {
            self.optional_string(meta, path, field);
        }
        match meta.get("generation") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.is_i64() => {}
            Some(other) => self.error(
                &child_path(path, "generation"),
                expected("an integer", other),
            ),
        }
        self.string_map(meta, path, "labels");
        self.string_map(meta, path, "annotations");
        self.finalizers(meta, path);
        self.owner_references(meta, path);
    }

    /// `labels` or `annotations`: a mapping of valid keys to strings.
    fn string_map(&mut self, meta: &Map<String, Value>, path: &str, field: &str) {
        let map_path = child_path(path, field);
        let entries = match meta.get(field) {
            None | Some(Value::Null) => return,
            Some(Value::Object(entries)) => entries,
            Some(other) => {
                return self.error(
                    &map_path,
                    expected("a mapping of strings to strings", other),
                );
            }
        };
        let labels = field == "labels";
        let mut size = 0;
        for (key, value) in entries {
            let entry_path = child_path(&map_path, key);
            let key_check = if labels {
                name::validate_label_key(key)
            } else {
                name::validate_annotation_key(key)
            };
            if let Err(e) = key_check {
                let at = self.doc.key_position(&entry_path);
                self.errors
                    .push(self.doc.error_at(at, &prefixed(&map_path, e)));
            }
            match value {
                Value::String(v) => {
                    size += key.len() + v.len();
                    if labels && let Err(e) = name::validate_label_value(v) {
                        self.error(&entry_path, e);
                    }
                }
                other => self.error(&entry_path, expected("a string", other)),
            }
        }
        if size > MAX_ANNOTATIONS_BYTES {
            self.error(
                &map_path,
                format!("{field} take {size} bytes, more than the limit of {MAX_ANNOTATIONS_BYTES} bytes"),
            );
        }
    }

    fn finalizers(&mut self, meta: &Map<String, Value>, path: &str) {
        let list_path = child_path(path, "finalizers");
        match meta.get("finalizers") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = index_path(&list_path, i);
                    match item {
                        Value::String(f) => {
                            if let Err(e) = name::validate_finalizer(f) {
                                self.error(&item_path, e);
                            }
                        }
                        other => self.error(&item_path, expected("a string", other)),
                    }
                }
            }
            Some(other) => self.error(&list_path, expected("a sequence of strings", other)),
        }
    }

    fn owner_references(&mut self, meta: &Map<String, Value>, path: &str) {
        let list_path = child_path(path, "ownerReferences");
        let items = match meta.get("ownerReferences") {
            None | Some(Value::Null) => return,
            Some(Value::Array(items)) => items,
            Some(other) => {
                return self.error(&list_path, expected("a sequence of mappings", other));
            }
        };
        for (i, item) in items.iter().enumerate() {
            let item_path = index_path(&list_path, i);
            let Value::Object(r) = item else {
                self.error(&item_path, expected("a mapping", item));
                continue;
            };
            for field in ["apiVersion", "kind", "name"] {
                match r.get(field) {
                    None | Some(Value::Null) => self.error(
                        &item_path,
                        format!("missing required field \"{field}\"; an owner reference needs apiVersion, kind and name"),
                    ),
                    Some(Value::String(_)) => {}
                    Some(other) => self.error(&child_path(&item_path, field), expected("a string", other)),
                }
            }
            self.optional_string(r, &item_path, "uid");
            self.optional_bool(r, &item_path, "controller");
            self.optional_bool(r, &item_path, "blockOwnerDeletion");
        }
    }
}

/// "expected X, found Y", with a hint when a scalar was probably meant as a string.
fn expected(what: &str, found: &Value) -> String {
    let hint = if what == "a string" && matches!(found, Value::Number(_) | Value::Bool(_)) {
        "; quote it"
    } else {
        ""
    };
    format!("expected {what}, found {}{hint}", json_type(found))
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

fn prefixed(path: &str, message: impl std::fmt::Display) -> String {
    if path.is_empty() {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

// ---------------------------------------------------------------------------------------------
// Positions.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug, PartialEq)]
struct Node {
    parent: usize,
    seg: Option<Seg>,
    pos: Pos,
    key_pos: Option<Pos>,
}

/// A tree of node positions: each node stores only its own path segment, so memory stays
/// proportional to the text even for deep documents. Node 0 is the root.
#[derive(Clone, Debug, Default, PartialEq)]
struct Positions {
    nodes: Vec<Node>,
    children: HashMap<(usize, Seg), usize>,
}

impl Positions {
    fn add(&mut self, parent: usize, seg: Seg, pos: Pos, key_pos: Option<Pos>) -> usize {
        let id = self.nodes.len();
        self.children.insert((parent, seg.clone()), id);
        self.nodes.push(Node {
            parent,
            seg: Some(seg),
            pos,
            key_pos,
        });
        id
    }

    /// The node at `path`, or its deepest recorded ancestor.
    fn find(&self, path: &str) -> Option<&Node> {
        let mut id = 0;
        let mut node = self.nodes.first()?;
        for seg in parse_path(path) {
            match self.children.get(&(id, seg)) {
                Some(&child) => {
                    id = child;
                    node = &self.nodes[child];
                }
                None => break,
            }
        }
        Some(node)
    }

    fn find_exact(&self, path: &str) -> Option<&Node> {
        let mut id = 0;
        self.nodes.first()?;
        for seg in parse_path(path) {
            id = *self.children.get(&(id, seg))?;
        }
        self.nodes.get(id)
    }

    /// The display path of node `id` (for messages about nodes met while parsing).
    fn path_of(&self, mut id: usize) -> String {
        let mut segs = Vec::new();
        while let Some(node) = self.nodes.get(id) {
            match &node.seg {
                Some(seg) => segs.push(seg),
                None => break,
            }
            id = node.parent;
        }
        segs.iter()
            .rev()
            .fold(String::new(), |path, seg| match seg {
                Seg::Key(k) => child_path(&path, k),
                Seg::Index(i) => index_path(&path, *i),
            })
    }
}

/// The segments of a display path; stops at the first thing it cannot read.
fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        }
        if let Some(r) = rest.strip_prefix("[\"") {
            // A quoted key is a JSON string: find its closing quote, skipping escapes.
            let bytes = r.as_bytes();
            let mut i = 0;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            // `rest` is `["key"]...`: the quoted key spans 1..i + 3.
            let Some(quoted) = rest.get(1..i + 3) else {
                break;
            };
            let Ok(key) = serde_json::from_str::<String>(quoted) else {
                break;
            };
            let Some(r) = rest.get(i + 3..).and_then(|r| r.strip_prefix(']')) else {
                break;
            };
            segs.push(Seg::Key(key));
            rest = r;
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some((digits, r)) = r.split_once(']') else {
                break;
            };
            let Ok(i) = digits.parse() else { break };
            segs.push(Seg::Index(i));
            rest = r;
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            segs.push(Seg::Key(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    segs
}

// ---------------------------------------------------------------------------------------------
// Parsing YAML into JSON values.

/// Splits, size-checks and parses every document; returns the documents that parsed cleanly and
/// every problem found (including those of documents that did not).
fn parse(file: &str, text: &str, split: bool) -> (Vec<Document>, Vec<LoadError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let chunks = if split {
        split_documents(text)
    } else {
        vec![(1, text)]
    };
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (first_line, chunk) in chunks {
        if chunk.len() > MAX_DOCUMENT_BYTES {
            errors.push(LoadError {
                file: file.to_string(),
                line: first_line,
                column: 1,
                message: format!(
                    "document is {} bytes, more than the limit of {MAX_DOCUMENT_BYTES} bytes (3 MiB); split it into smaller documents",
                    chunk.len()
                ),
            });
            continue;
        }
        let joined = join_surrogate_pairs(chunk);
        let source = joined.as_deref().unwrap_or(chunk);
        let mut receiver = Receiver {
            file,
            line_offset: first_line - 1,
            docs: Vec::new(),
            errors: Vec::new(),
            doc: Builder::default(),
        };
        if let Err(e) = Parser::new_from_str(source).load(&mut receiver, true) {
            receiver.scan_error(&e, source);
        }
        docs.extend(receiver.docs);
        errors.extend(receiver.errors);
    }
    (docs, errors)
}

/// Cuts the text at `---` lines, as kubectl does before parsing, so that each document can be
/// size-checked without being built and a syntax error in one does not hide the problems of the
/// next. Returns each piece with its first line number. Directives (`%YAML`) after a `...` line go
/// with the document they precede.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let is_marker = |line: &str, marker: &str| {
        line.strip_prefix(marker)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
    };
    let mut chunks = Vec::new();
    let (mut start, mut start_line) = (0, 1);
    let (mut offset, mut line) = (0, 1);
    let mut after_end = true;
    let mut directives: Option<(usize, usize)> = None;
    for l in text.split_inclusive('\n') {
        if is_marker(l, "---") {
            let (cut, cut_line) = directives.take().unwrap_or((offset, line));
            if cut > start {
                chunks.push((start_line, &text[start..cut]));
                (start, start_line) = (cut, cut_line);
            }
            after_end = false;
        } else if is_marker(l, "...") {
            after_end = true;
            directives = None;
        } else if l.starts_with('%') && after_end {
            directives.get_or_insert((offset, line));
        } else if !(l.trim().is_empty() || l.trim_start().starts_with('#')) {
            after_end = false;
            directives = None;
        }
        offset += l.len();
        line += 1;
    }
    chunks.push((start_line, &text[start..]));
    chunks
}

/// JSON writes characters outside the Basic Multilingual Plane as surrogate pairs (`\ud83d\ude00`),
/// which YAML does not accept; rewrites them as `\U0001F600` so JSON strings load exactly. Only for
/// JSON text (starting with `{` or `[`), where strings are simple to find. The two characters saved
/// are put back as spaces before the string, so columns after it stay right.
fn join_surrogate_pairs(text: &str) -> Option<String> {
    if !text.trim_start().starts_with(['{', '[']) || !text.contains("\\u") {
        return None;
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut changed = false;
    let mut string_start = None;
    let mut pad = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match string_start {
            None => {
                if c == b'"' {
                    string_start = Some(out.len());
                }
                out.push(c);
                i += 1;
            }
            Some(open) => match c {
                b'"' => {
                    out.push(c);
                    i += 1;
                    out.splice(open..open, std::iter::repeat_n(b' ', pad));
                    pad = 0;
                    string_start = None;
                }
                b'\\' => {
                    if let Some(code) = surrogate_pair(&b[i..]) {
                        out.extend_from_slice(format!("\\U{code:08X}").as_bytes());
                        i += 12;
                        pad += 2;
                        changed = true;
                    } else {
                        out.extend_from_slice(&b[i..(i + 2).min(b.len())]);
                        i += 2;
                    }
                }
                _ => {
                    out.push(c);
                    i += 1;
                }
            },
        }
    }
    if !changed {
        return None;
    }
    String::from_utf8(out).ok()
}

/// The code point of `\uHHHH\uLLLL` at the start of `b`, if it is a surrogate pair.
fn surrogate_pair(b: &[u8]) -> Option<u32> {
    let hex = |r: std::ops::Range<usize>| {
        let s = std::str::from_utf8(b.get(r)?).ok()?;
        if s.bytes().all(|c| c.is_ascii_hexdigit()) {
            u32::from_str_radix(s, 16).ok()
        } else {
            None
        }
    };
    if !(b.starts_with(b"\\u") && b.get(6..8) == Some(b"\\u")) {
        return None;
    }
    let (high, low) = (hex(2..6)?, hex(8..12)?);
    if (0xD800..0xDC00).contains(&high) && (0xDC00..0xE000).contains(&low) {
        Some(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
    } else {
        None
    }
}

/// Receives parser events for one piece of text and builds its documents.
struct Receiver<'f> {
    file: &'f str,
    line_offset: usize,
    docs: Vec<Document>,
    errors: Vec<LoadError>,
    doc: Builder,
}

impl Receiver<'_> {
    fn pos(&self, m: Marker) -> Pos {
        Pos {
            line: m.line() + self.line_offset,
            column: m.col() + 1,
        }
    }

    fn scan_error(&mut self, e: &ScanError, source: &str) {
        self.flush_problems();
        let mut pos = self.pos(*e.marker());
        // At the end of input the parser reports the start of a line past the text; when the text
        // does not end with a newline, point just after its last character instead.
        if !source.ends_with('\n') && e.marker().index() >= source.chars().count() {
            let last_line = source.rsplit('\n').next().unwrap_or_default();
            pos = Pos {
                line: source.matches('\n').count() + 1 + self.line_offset,
                column: last_line.chars().count() + 1,
            };
        }
        self.errors
            .push(self.error(pos, format!("invalid YAML: {}", e.info())));
    }

    fn error(&self, pos: Pos, message: String) -> LoadError {
        LoadError {
            file: self.file.to_string(),
            line: pos.line,
            column: pos.column,
            message,
        }
    }

    fn flush_problems(&mut self) {
        for (pos, message) in std::mem::take(&mut self.doc.problems) {
            self.errors.push(self.error(pos, message));
        }
    }

    fn end_document(&mut self) {
        let failed = !self.doc.problems.is_empty();
        self.flush_problems();
        let doc = std::mem::take(&mut self.doc);
        if failed {
            return;
        }
        if let Some(value) = doc.root
            && !value.is_null()
        {
            self.docs.push(Document {
                value,
                file: self.file.to_string(),
                line: doc.start.line,
                column: doc.start.column,
                positions: doc.positions,
            });
        }
    }
}

impl<'input> SpannedEventReceiver<'input> for Receiver<'_> {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        let pos = self.pos(span.start);
        let b = &mut self.doc;
        if b.skip > 0 {
            // Inside a collection that is too deep: only count its nesting to find its end.
            match ev {
                Event::SequenceStart(..) | Event::MappingStart(..) => b.skip += 1,
                Event::SequenceEnd | Event::MappingEnd => {
                    b.skip -= 1;
                    if b.skip == 0 {
                        b.deliver(Value::Null, pos, 0, false);
                    }
                }
                _ => {}
            }
            return;
        }
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
            Event::DocumentStart(_) => self.doc = Builder::default(),
            Event::DocumentEnd => self.end_document(),
            Event::Scalar(text, style, anchor, tag) => {
                let (id, role) = b.begin_node(pos);
                let merge = role == Role::Key
                    && style == ScalarStyle::Plain
                    && tag.is_none()
                    && text == "<<";
                let value = match resolve_scalar(&text, style, tag.as_deref()) {
                    Ok(v) => v,
                    Err(message) => {
                        let path = b.path_for(id);
                        b.problem(pos, prefixed(&path, message));
                        Value::Null
                    }
                };
                b.deliver(value, pos, anchor, merge);
            }
            Event::Alias(anchor) => {
                let (id, _) = b.begin_node(pos);
                let value = b.resolve_alias(anchor, pos, id);
                b.deliver(value, pos, 0, false);
            }
            Event::SequenceStart(anchor, tag) => {
                b.start_collection(pos, anchor, tag.as_deref(), false)
            }
            Event::MappingStart(anchor, tag) => {
                b.start_collection(pos, anchor, tag.as_deref(), true)
            }
            Event::SequenceEnd | Event::MappingEnd => b.end_collection(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Root,
    Key,
    Value,
}

/// The state of the document being built.
#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    start: Pos,
    positions: Positions,
    anchors: HashMap<usize, Anchor>,
    alias_nodes: usize,
    alias_budget_reported: bool,
    problems: Vec<(Pos, String)>,
    /// Nonzero while skipping a too-deep collection: how many collections are open inside it.
    skip: usize,
}

struct Anchor {
    value: Value,
    nodes: usize,
    depth: usize,
}

/// An open collection. `id` is its node in `positions`, or `None` when its positions are not kept
/// (it is a mapping key, a merge source, or the value of a refused key).
struct Frame {
    id: Option<usize>,
    pos: Pos,
    anchor: usize,
    kind: FrameKind,
}

enum FrameKind {
    Seq(Vec<Value>),
    Map {
        map: Map<String, Value>,
        slot: Slot,
        merges: Vec<(Value, Pos)>,
    },
}

/// What the next node of a mapping is.
enum Slot {
    Key,
    Value { key: String, id: Option<usize> },
    Merge,
    Discard,
}

impl Builder {
    fn problem(&mut self, pos: Pos, message: String) {
        self.problems.push((pos, message));
    }

    /// Registers the position of a node that starts at `pos` and says what it is to its parent.
    fn begin_node(&mut self, pos: Pos) -> (Option<usize>, Role) {
        let Some(frame) = self.stack.last_mut() else {
            self.start = pos;
            self.positions = Positions::default();
            self.positions.nodes.push(Node {
                parent: 0,
                seg: None,
                pos,
                key_pos: None,
            });
            return (Some(0), Role::Root);
        };
        match &mut frame.kind {
            FrameKind::Seq(items) => {
                let id = frame
                    .id
                    .map(|p| self.positions.add(p, Seg::Index(items.len()), pos, None));
                (id, Role::Value)
            }
            FrameKind::Map { slot, .. } => match slot {
                Slot::Key => (None, Role::Key),
                Slot::Value { id, .. } => {
                    if let Some(node) = id.and_then(|id| self.positions.nodes.get_mut(id)) {
                        node.pos = pos;
                    }
                    (*id, Role::Value)
                }
                Slot::Merge | Slot::Discard => (None, Role::Value),
            },
        }
    }

    /// The path of node `id` for messages, or of the innermost collection whose position is kept
    /// when the node has none (it is a mapping key, say).
    fn path_for(&self, id: Option<usize>) -> String {
        id.or_else(|| self.stack.iter().rev().find_map(|f| f.id))
            .map(|id| self.positions.path_of(id))
            .unwrap_or_default()
    }

    fn start_collection(&mut self, pos: Pos, anchor: usize, tag: Option<&Tag>, is_map: bool) {
        let (id, _) = self.begin_node(pos);
        if let Some(tag) = tag {
            let name = tag_name(tag);
            let fits = match name.strip_prefix(CORE_TAG) {
                Some("map") => is_map,
                Some("seq") => !is_map,
                _ => name == "!",
            };
            if !fits {
                let what = if is_map { "a mapping" } else { "a sequence" };
                let message = format!("unsupported tag {} on {what}", show_tag(&name));
                let path = self.path_for(id);
                self.problem(pos, prefixed(&path, message));
            }
        }
        if self.stack.len() >= MAX_DEPTH {
            let path = self.path_for(id);
            self.problem(
                pos,
                prefixed(&path, format!("nested more than {MAX_DEPTH} levels deep")),
            );
            self.skip = 1;
            return;
        }
        let kind = if is_map {
            FrameKind::Map {
                map: Map::new(),
                slot: Slot::Key,
                merges: Vec::new(),
            }
        } else {
            FrameKind::Seq(Vec::new())
        };
        self.stack.push(Frame {
            id,
            pos,
            anchor,
            kind,
        });
    }

    fn end_collection(&mut self) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        let value = match frame.kind {
            FrameKind::Seq(items) => Value::Array(items),
            FrameKind::Map {
                mut map, merges, ..
            } => {
                for (source, pos) in merges {
                    self.merge(&mut map, source, pos, frame.id);
                }
                Value::Object(map)
            }
        };
        self.deliver(value, frame.pos, frame.anchor, false);
    }

    /// Applies a `<<` merge key: entries of the source mapping(s) that the mapping does not set
    /// itself are added; with a sequence of sources, earlier ones win.
    fn merge(&mut self, map: &mut Map<String, Value>, source: Value, pos: Pos, id: Option<usize>) {
        let sources = match source {
            Value::Object(m) => vec![m],
            Value::Array(items) if items.iter().all(Value::is_object) => items
                .into_iter()
                .filter_map(|v| match v {
                    Value::Object(m) => Some(m),
                    _ => None,
                })
                .collect(),
            other => {
                let path = id.map(|id| self.positions.path_of(id)).unwrap_or_default();
                let message = format!(
                    "the merge key << needs a mapping or a sequence of mappings (e.g. <<: *defaults), found {}",
                    json_type(&other)
                );
                self.problem(pos, prefixed(&path, message));
                return;
            }
        };
        for source in sources {
            for (k, v) in source {
                if !map.contains_key(&k) {
                    if let Some(parent) = id {
                        self.positions.add(parent, Seg::Key(k.clone()), pos, None);
                    }
                    map.insert(k, v);
                }
            }
        }
    }

    fn resolve_alias(&mut self, anchor: usize, pos: Pos, id: Option<usize>) -> Value {
        let path = self.path_for(id);
        let Some(a) = self.anchors.get(&anchor) else {
            self.problem(pos, prefixed(&path, "alias to an unknown anchor"));
            return Value::Null;
        };
        if self.stack.len() + a.depth > MAX_DEPTH {
            let message =
                format!("this alias nests the document more than {MAX_DEPTH} levels deep");
            self.problem(pos, prefixed(&path, message));
            return Value::Null;
        }
        self.alias_nodes += a.nodes;
        if self.alias_nodes > MAX_ALIAS_NODES {
            if !self.alias_budget_reported {
                self.alias_budget_reported = true;
                let message = format!(
                    "aliases expand to more than {MAX_ALIAS_NODES} nodes; this looks like an alias bomb"
                );
                self.problem(pos, prefixed(&path, message));
            }
            return Value::Null;
        }
        a.value.clone()
    }

    /// Hands a finished node to its parent (or makes it the root).
    fn deliver(&mut self, value: Value, pos: Pos, anchor: usize, merge_key: bool) {
        if anchor > 0 {
            let (nodes, depth) = measure(&value);
            let value = value.clone();
            self.anchors.insert(
                anchor,
                Anchor {
                    value,
                    nodes,
                    depth,
                },
            );
        }
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(value);
            return;
        };
        let (map, slot) = match &mut frame.kind {
            FrameKind::Seq(items) => return items.push(value),
            FrameKind::Map { map, slot, merges } => {
                if let Slot::Merge = slot {
                    merges.push((value, pos));
                    *slot = Slot::Key;
                    return;
                }
                (map, slot)
            }
        };
        match std::mem::replace(slot, Slot::Key) {
            Slot::Value { key, .. } => {
                map.insert(key, value);
            }
            Slot::Merge | Slot::Discard => {}
            Slot::Key if merge_key => *slot = Slot::Merge,
            Slot::Key => {
                let parent = frame.id;
                let path = parent
                    .map(|id| self.positions.path_of(id))
                    .unwrap_or_default();
                match value {
                    Value::String(key) if map.contains_key(&key) => {
                        let first = parent
                            .and_then(|p| self.positions.children.get(&(p, Seg::Key(key.clone()))))
                            .and_then(|&id| self.positions.nodes.get(id))
                            .and_then(|n| n.key_pos);
                        let first = first.map_or(String::new(), |p| {
                            format!(" (first at line {}, column {})", p.line, p.column)
                        });
                        *slot = Slot::Discard;
                        let message = prefixed(&path, format!("duplicate key {key:?}{first}"));
                        self.problems.push((pos, message));
                    }
                    Value::String(key) => {
                        let id = parent
                            .map(|p| self.positions.add(p, Seg::Key(key.clone()), pos, Some(pos)));
                        *slot = Slot::Value { key, id };
                    }
                    other => {
                        *slot = Slot::Discard;
                        let message = format!(
                            "mapping keys must be strings, found {} {}; quote it",
                            json_type(&other),
                            short(&other)
                        );
                        self.problems.push((pos, prefixed(&path, message)));
                    }
                }
            }
        }
    }
}

/// Node count and nesting depth of a value (scalars have depth 0).
fn measure(value: &Value) -> (usize, usize) {
    let children: Box<dyn Iterator<Item = &Value>> = match value {
        Value::Array(items) => Box::new(items.iter()),
        Value::Object(map) => Box::new(map.values()),
        _ => return (1, 0),
    };
    children.fold((1, 1), |(nodes, depth), child| {
        let (n, d) = measure(child);
        (nodes + n, depth.max(d + 1))
    })
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s,
    }
}

/// A tag as one string: `tag:yaml.org,2002:str` for `!!str`, `!foo` for local tags, `!` for the
/// non-specific tag.
fn tag_name(tag: &Tag) -> String {
    format!("{}{}", tag.handle, tag.suffix)
}

fn show_tag(name: &str) -> String {
    match name.strip_prefix(CORE_TAG) {
        Some(core) => format!("!!{core}"),
        None => name.to_string(),
    }
}

/// Resolves a scalar to JSON: plain scalars by the YAML 1.2 core schema, quoted and block scalars
/// as strings, tagged scalars by their tag.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let Some(tag) = tag else {
        return if style == ScalarStyle::Plain {
            resolve_plain(text)
        } else {
            Ok(Value::String(text.to_string()))
        };
    };
    let name = tag_name(tag);
    let bad = |what: &str| {
        format!(
            "{text:?} is not {what}, as its tag {} requires",
            show_tag(&name)
        )
    };
    match name.strip_prefix(CORE_TAG) {
        // `!!binary` and `!!timestamp` stay as the text, as they do in JSON.
        Some("str" | "binary" | "timestamp") => Ok(Value::String(text.to_string())),
        Some("null") if is_null(text) => Ok(Value::Null),
        Some("null") => Err(bad("null")),
        Some("bool") => parse_bool(text)
            .map(Value::Bool)
            .ok_or_else(|| bad("a boolean")),
        Some("int") => parse_int(text).unwrap_or_else(|| Err(bad("an integer"))),
        Some("float") => match parse_int(text) {
            Some(Ok(Value::Number(n))) => float(text, n.as_f64().unwrap_or(f64::NAN)),
            _ => parse_float(text).map_or_else(|| Err(bad("a number")), |f| float(text, f)),
        },
        _ if name == "!" => Ok(Value::String(text.to_string())),
        _ => Err(format!(
            "unsupported tag {}; only the YAML core tags (!!str, !!int, !!float, !!bool, !!null) are understood",
            show_tag(&name)
        )),
    }
}

fn resolve_plain(text: &str) -> Result<Value, String> {
    if is_null(text) {
        return Ok(Value::Null);
    }
    if let Some(b) = parse_bool(text) {
        return Ok(Value::Bool(b));
    }
    if let Some(int) = parse_int(text) {
        return int;
    }
    match parse_float(text) {
        Some(f) => float(text, f),
        None => Ok(Value::String(text.to_string())),
    }
}

fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// `[-+]?[0-9]+`, `0o[0-7]+` or `0x[0-9a-fA-F]+`; `None` if `s` is not an integer at all, an error
/// if it is one that does not fit in 64 bits (JSON numbers here are i64, u64 or f64, and rounding
/// an ID or a port silently would be worse than refusing it).
fn parse_int(s: &str) -> Option<Result<Value, String>> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (digits, radix) = if let Some(hex) = s.strip_prefix("0x") {
        (hex, 16)
    } else if let Some(oct) = s.strip_prefix("0o") {
        (oct, 8)
    } else {
        (body, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let too_big = || {
        Err(format!(
            "integer {s} does not fit in 64 bits; quote it if it is not a number"
        ))
    };
    let Ok(magnitude) = u64::from_str_radix(digits, radix) else {
        return Some(too_big());
    };
    if !negative {
        return Some(Ok(Value::Number(Number::from(magnitude))));
    }
    match i64::try_from(i128::from(magnitude).wrapping_neg()) {
        Ok(n) => Some(Ok(Value::Number(Number::from(n)))),
        Err(_) => Some(too_big()),
    }
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, `[-+]?.inf`, `.nan` (any of their cases
/// the core schema allows).
fn parse_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if matches!(s, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |d: &str| d.bytes().all(|c| c.is_ascii_digit());
    let mantissa_ok = digits(whole)
        && digits(fraction)
        && (!whole.is_empty() || (!fraction.is_empty() && mantissa.starts_with('.')));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if mantissa_ok && exponent_ok {
        s.parse().ok()
    } else {
        None
    }
}

fn float(text: &str, f: f64) -> Result<Value, String> {
    Number::from_f64(f).map(Value::Number).ok_or_else(|| {
        format!(
            "{text} is not a finite number, which JSON cannot hold; quote it if it is not a number"
        )
    })
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
