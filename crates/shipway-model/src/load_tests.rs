//! Tests for `load`: loading, positions of errors, scalar resolution, and no panics on garbage.

use super::*;
use serde_json::json;

/// Loads `text` as `f.yaml` and renders the outcome: one line per object (`line:col Kind/name`) or
/// one line per error (`f.yaml:line:col: message`).
fn check(text: &str) -> String {
    match load_str("f.yaml", text) {
        Ok(loaded) => loaded
            .iter()
            .map(|l| {
                let ns = l
                    .object
                    .metadata
                    .namespace
                    .as_deref()
                    .map_or(String::new(), |ns| format!("{ns}/"));
                format!(
                    "{}:{} {}/{ns}{}",
                    l.line, l.column, l.object.kind, l.object.metadata.name
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(errors) => errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// The JSON a single YAML document reads as (or its errors).
fn json_of(text: &str) -> String {
    match parse_documents("f.yaml", text) {
        Ok(docs) => docs
            .iter()
            .map(|d| d.value.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        Err(errors) => errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[test]
fn loads_documents_with_their_positions() {
    let text = "\
# leading comment only: not a document
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: prod
data:
  a: \"1\"
---
# empty
---
---
  apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web}
  spec: {replicas: 2}
...
";
    assert_eq!(
        check(text),
        "3:1 ConfigMap/prod/settings\n14:3 Deployment/web"
    );
    let loaded = load_str("f.yaml", text).expect("valid");
    assert_eq!(loaded[0].object.body["data"], json!({"a": "1"}));
    assert_eq!(loaded[1].object.spec(), Some(&json!({"replicas": 2})));
    assert_eq!(loaded[1].file, "f.yaml");
}

#[test]
fn empty_inputs_load_nothing() {
    for text in [
        "",
        "\n",
        "# nothing\n",
        "---\n",
        "---\n---\n# c\n...\n",
        "\u{feff}",
        "--- null\n",
        "~",
    ] {
        assert_eq!(load_str("f.yaml", text), Ok(vec![]), "{text:?}");
    }
}

#[test]
fn lists_expand_to_their_items() {
    let text = "\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web}
- apiVersion: v1
  kind: ConfigMapList
  items:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}
";
    assert_eq!(check(text), "4:3 Service/web\n10:5 ConfigMap/a");
    // A kind merely ending in List, without items, is an ordinary object.
    assert_eq!(
        check("apiVersion: example.com/v1\nkind: PriceList\nmetadata: {name: p}\nspec: {}\n"),
        "1:1 PriceList/p"
    );
    assert_eq!(check("apiVersion: v1\nkind: List\nitems: []\n"), "");
}

#[test]
fn errors_point_at_the_offending_node() {
    for (text, want) in [
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    tier:  3\n  name: p\n",
            "f.yaml:5:12: metadata.labels.tier: expected a string, found an integer; quote it",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    tier: true\n",
            "f.yaml:6:11: metadata.labels.tier: expected a string, found a boolean; quote it",
        ),
        (
            "apiVersion: v1\nmetadata: {name: p}\n",
            "f.yaml:1:1: missing required field \"kind\"; every object needs apiVersion, kind and metadata.name",
        ),
        (
            "kind: Pod\napiVersion: \"\"\nmetadata: {name: p}\n",
            "f.yaml:2:13: apiVersion: must not be empty; every object needs apiVersion, kind and metadata.name",
        ),
        (
            "apiVersion: v1\nkind: Pod\n",
            "f.yaml:1:1: missing required field \"metadata\"; every object needs apiVersion, kind and metadata.name",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: a\n",
            "f.yaml:4:3: missing required field \"metadata.name\"; every object needs apiVersion, kind and metadata.name",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  generateName: web-\n",
            "f.yaml:4:17: metadata.generateName: not supported: Shipway needs every object's name up front; set metadata.name instead",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a/b\n",
            "f.yaml:4:9: metadata.name: \"a/b\" is not a valid name: must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: Prod}\n",
            "f.yaml:3:32: metadata.namespace: \"Prod\" is not a valid namespace name: must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: 7}\n",
            "f.yaml:3:18: metadata.name: expected a string, found an integer; quote it",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: [a]\n",
            "f.yaml:3:11: metadata: expected a mapping, found a sequence",
        ),
        (
            "apiVersion: apps/v1/x\nkind: Pod\nmetadata: {name: p}\n",
            "f.yaml:1:13: apiVersion: \"apps/v1/x\" is not a valid apiVersion; expected \"version\" or \"group/version\" (e.g. \"v1\", \"apps/v1\")",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    Bad Key: x\n",
            "f.yaml:6:5: metadata.labels: \"Bad Key\" is not a valid label key: it must be a name of alphanumeric characters, '-', '_' or '.' that starts and ends with an alphanumeric character, with an optional DNS subdomain prefix and '/' (e.g. 'app', 'my.name' or 'example.com/my-name')",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    app.kubernetes.io/name: -web\n",
            "f.yaml:6:29: metadata.labels[\"app.kubernetes.io/name\"]: \"-web\" is not a valid label value: must be empty or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345')",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {note: {a: b}}\n",
            "f.yaml:5:23: metadata.annotations.note: expected a string, found a mapping",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: [a]\n",
            "f.yaml:5:11: metadata.labels: expected a mapping of strings to strings, found a sequence",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  finalizers: [ok, 3]\n",
            "f.yaml:5:20: metadata.finalizers[1]: expected a string, found an integer; quote it",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  ownerReferences:\n  - kind: ReplicaSet\n    name: rs\n    apiVersion: apps/v1\n    controller: yes\n",
            "f.yaml:9:17: metadata.ownerReferences[0].controller: expected a boolean, found a string",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  ownerReferences:\n  - kind: ReplicaSet\n",
            "f.yaml:6:5: metadata.ownerReferences[0]: missing required field \"apiVersion\"; an owner reference needs apiVersion, kind and name\n\
             f.yaml:6:5: metadata.ownerReferences[0]: missing required field \"name\"; an owner reference needs apiVersion, kind and name",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  generation: \"1\"\n  resourceVersion: 12\n",
            "f.yaml:5:15: metadata.generation: expected an integer, found a string\n\
             f.yaml:6:20: metadata.resourceVersion: expected a string, found an integer; quote it",
        ),
        (
            "- a\n- b\n",
            "f.yaml:1:1: expected an object (a mapping with apiVersion, kind and metadata), found a sequence",
        ),
        (
            "just text\n",
            "f.yaml:1:1: expected an object (a mapping with apiVersion, kind and metadata), found a string",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nkind: Service\n",
            "f.yaml:4:1: duplicate key \"kind\" (first at line 2, column 1)",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\ndata:\n  1: one\n",
            "f.yaml:5:3: data: mapping keys must be strings, found an integer 1; quote it",
        ),
        (
            "a: [1, 2\nb: 3\n",
            "f.yaml:2:2: invalid YAML: illegal placement of ':' indicator",
        ),
        (
            "a: b: c\n",
            "f.yaml:1:5: invalid YAML: mapping values are not allowed in this context",
        ),
        (
            "a:\n\t- b\n",
            "f.yaml:2:2: invalid YAML: tabs disallowed within this context (block indentation)",
        ),
        (
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  metadata: {name: a}\n- 3\n",
            "f.yaml:4:3: items[0]: missing required field \"kind\"; every object needs apiVersion, kind and metadata.name\n\
             f.yaml:6:3: items[1]: expected an object (a mapping with apiVersion, kind and metadata), found an integer",
        ),
        (
            "apiVersion: v1\nkind: List\n",
            "f.yaml:1:1: missing required field \"items\"; a List holds its objects in items",
        ),
    ] {
        assert_eq!(check(text), want, "\n{text}");
    }
}

#[test]
fn gathers_the_problems_of_every_document() {
    let text = "\
apiVersion: v1
kind: Pod
metadata: {name: Bad}
---
a: [unclosed
---
apiVersion: v1
metadata: {name: ok}
---
apiVersion: v1
kind: Pod
metadata: {name: fine}
";
    assert_eq!(
        check(text),
        "f.yaml:3:18: metadata.name: \"Bad\" is not a valid name: must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')\n\
         f.yaml:6:1: invalid YAML: while parsing a flow sequence, expected ',' or ']'\n\
         f.yaml:7:1: missing required field \"kind\"; every object needs apiVersion, kind and metadata.name"
    );
}

#[test]
fn names_follow_the_kind() {
    let rbac = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: \"system:aggregate-to-view\"}\n";
    assert_eq!(check(rbac), "1:1 ClusterRole/system:aggregate-to-view");
    assert_eq!(
        check("apiVersion: v1\nkind: Service\nmetadata: {name: 1web}\n"),
        "f.yaml:3:18: metadata.name: \"1web\" is not a valid name: must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123')"
    );
}

#[test]
fn null_metadata_fields_are_absent_fields() {
    // What `kubectl create --dry-run=client -o yaml` and many Helm charts write.
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  creationTimestamp: null\n  labels:\n  annotations: ~\n";
    let loaded = load_str("f.yaml", text).expect("valid");
    assert_eq!(loaded[0].object.metadata.creation_timestamp, None);
    assert!(loaded[0].object.metadata.labels.is_empty());
}

#[test]
fn metadata_round_trips_into_the_typed_fields() {
    let text = "\
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-1
  namespace: prod
  uid: u-1
  generation: 3
  resourceVersion: \"42\"
  labels: {app: web, app.kubernetes.io/part-of: shop}
  annotations: {note: \"any text: even this\"}
  finalizers: [kubernetes.io/pvc-protection]
  ownerReferences:
  - {apiVersion: apps/v1, kind: Deployment, name: web, uid: u-0, controller: true}
  managedFields: [{manager: kubectl}]
";
    let loaded = load_str("f.yaml", text).expect("valid");
    let meta = &loaded[0].object.metadata;
    assert_eq!(meta.generation, 3);
    assert_eq!(loaded[0].object.resource_version(), Some(42));
    assert_eq!(meta.labels["app.kubernetes.io/part-of"], "shop");
    assert_eq!(meta.annotations["note"], "any text: even this");
    assert_eq!(meta.owner_references[0].controller, Some(true));
    assert_eq!(meta.finalizers, ["kubernetes.io/pvc-protection"]);
}

#[test]
fn scalars_follow_the_yaml_1_2_core_schema() {
    for (yaml, json) in [
        ("a: 1", r#"{"a":1}"#),
        ("a: -42", r#"{"a":-42}"#),
        ("a: +7", r#"{"a":7}"#),
        ("a: 0x1F", r#"{"a":31}"#),
        ("a: 0o17", r#"{"a":15}"#),
        ("a: 0123", r#"{"a":123}"#),
        ("a: 1.5", r#"{"a":1.5}"#),
        ("a: 1e3", r#"{"a":1000.0}"#),
        ("a: .5", r#"{"a":0.5}"#),
        ("a: true", r#"{"a":true}"#),
        ("a: FALSE", r#"{"a":false}"#),
        ("a: yes", r#"{"a":"yes"}"#),
        ("a: on", r#"{"a":"on"}"#),
        ("a: ~", r#"{"a":null}"#),
        ("a:", r#"{"a":null}"#),
        ("a: Null", r#"{"a":null}"#),
        ("a: 1_000", r#"{"a":"1_000"}"#),
        ("a: 1.2.3", r#"{"a":"1.2.3"}"#),
        ("a: '1'", r#"{"a":"1"}"#),
        ("a: \"true\"", r#"{"a":"true"}"#),
        ("a: !!str 1", r#"{"a":"1"}"#),
        ("a: !!str", r#"{"a":""}"#),
        ("a: !!int \"12\"", r#"{"a":12}"#),
        ("a: !!float 1", r#"{"a":1.0}"#),
        ("a: !!bool \"true\"", r#"{"a":true}"#),
        ("a: !!null ''", r#"{"a":null}"#),
        ("a: ! 12", r#"{"a":"12"}"#),
        ("a: !<tag:yaml.org,2002:str> 5", r#"{"a":"5"}"#),
        ("a: !!binary aGk=", r#"{"a":"aGk="}"#),
        ("a: 18446744073709551615", r#"{"a":18446744073709551615}"#),
        ("a: -9223372036854775808", r#"{"a":-9223372036854775808}"#),
        ("a: |\n  x\n  y\n", r#"{"a":"x\ny\n"}"#),
        ("a: >-\n  x\n  y\n", r#"{"a":"x y"}"#),
        ("a: &x {b: 1}\nc: *x\n", r#"{"a":{"b":1},"c":{"b":1}}"#),
        (
            "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n",
            r#"{"base":{"x":1,"y":2},"d":{"y":3,"x":1}}"#,
        ),
        (
            "d:\n  <<: [{x: 1}, {x: 2, z: 3}]\n",
            r#"{"d":{"x":1,"z":3}}"#,
        ),
        ("\"<<\": 1", r#"{"<<":1}"#),
        ("!!map {a: 1}", r#"{"a":1}"#),
        ("- !!seq [1]", "[[1]]"),
    ] {
        assert_eq!(json_of(yaml), json, "{yaml}");
    }
}

#[test]
fn scalar_and_structure_errors() {
    for (yaml, want) in [
        (
            "a: 18446744073709551616",
            "f.yaml:1:4: a: integer 18446744073709551616 does not fit in 64 bits; quote it if it is not a number",
        ),
        (
            "a: -9223372036854775809",
            "f.yaml:1:4: a: integer -9223372036854775809 does not fit in 64 bits; quote it if it is not a number",
        ),
        (
            "a: [1, .inf]",
            "f.yaml:1:8: a[1]: .inf is not a finite number, which JSON cannot hold; quote it if it is not a number",
        ),
        (
            "a: 1e999",
            "f.yaml:1:4: a: 1e999 is not a finite number, which JSON cannot hold; quote it if it is not a number",
        ),
        (
            "a: !!int x",
            "f.yaml:1:4: a: \"x\" is not an integer, as its tag !!int requires",
        ),
        (
            "a: !!bool yes",
            "f.yaml:1:4: a: \"yes\" is not a boolean, as its tag !!bool requires",
        ),
        (
            "a: !Ref x",
            "f.yaml:1:4: a: unsupported tag !Ref; only the YAML core tags (!!str, !!int, !!float, !!bool, !!null) are understood",
        ),
        (
            "a: !!set {x: 1}",
            "f.yaml:1:4: a: unsupported tag !!set on a mapping",
        ),
        (
            "a: !!seq {x: 1}",
            "f.yaml:1:4: a: unsupported tag !!seq on a mapping",
        ),
        (
            "? [x]\n: 1\n",
            "f.yaml:1:3: mapping keys must be strings, found a sequence [\"x\"]; quote it",
        ),
        (
            "a:\n  true: 1\n",
            "f.yaml:2:3: a: mapping keys must be strings, found a boolean true; quote it",
        ),
        (
            "a: 1\nb: 2\na: 3\n",
            "f.yaml:3:1: duplicate key \"a\" (first at line 1, column 1)",
        ),
        (
            "{\"a\": 1, \"a\": 2}",
            "f.yaml:1:10: duplicate key \"a\" (first at line 1, column 2)",
        ),
        (
            "a: {<<: 3}",
            "f.yaml:1:9: a: the merge key << needs a mapping or a sequence of mappings (e.g. <<: *defaults), found an integer",
        ),
        (
            "a: *nope",
            "f.yaml:1:4: invalid YAML: while parsing node, found unknown anchor",
        ),
        (
            "a: \"\\q\"",
            "f.yaml:1:4: invalid YAML: while parsing a quoted scalar, found unknown escape character",
        ),
    ] {
        assert_eq!(json_of(yaml), want, "{yaml}");
    }
}

#[test]
fn json_loads_exactly_and_with_positions() {
    let text = r#"{"apiVersion": "v1", "kind": "ConfigMap",
 "metadata": {"name": "c", "labels": {"tier": 3}},
 "data": {"big": 18446744073709551615, "neg": -9223372036854775808, "f": 0.1, "s": "\u00e9\ud83d\ude00\"\\\/\n", "e": ""}}"#;
    assert_eq!(
        check(text),
        "f.yaml:2:47: metadata.labels.tier: expected a string, found an integer; quote it"
    );
    let ok = text.replace(r#""tier": 3"#, r#""tier": "3""#);
    let object = load_json_object("req", &ok).expect("valid");
    assert_eq!(
        serde_json::to_string(&object.body["data"]).expect("json"),
        r#"{"big":18446744073709551615,"neg":-9223372036854775808,"f":0.1,"s":"é😀\"\\/\n","e":""}"#
    );
    // Surrogate pairs are joined without moving what follows them on the line.
    let tail = r#"{"a": "\ud83d\ude00\ud83d\ude00", "b": 1e999}"#;
    assert_eq!(
        json_of(tail),
        "f.yaml:1:40: b: 1e999 is not a finite number, which JSON cannot hold; quote it if it is not a number"
    );
    assert_eq!(
        json_of(r#"["\ud83d"]"#),
        "f.yaml:1:2: invalid YAML: while parsing a quoted scalar, found invalid Unicode character escape code"
    );
    assert_eq!(json_of(r#"{"k\ud83d\ude00": "v"}"#), r#"{"k😀":"v"}"#);
}

#[test]
fn json_object_requests() {
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}"#;
    assert_eq!(
        load_json_object("req", pod).map(|o| o.key().to_string()),
        Ok("Pod/p".to_string())
    );
    let render = |r: Result<Object, Vec<LoadError>>| match r {
        Ok(o) => o.key().to_string(),
        Err(e) => e
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    };
    for (text, want) in [
        (
            "",
            "req:1:1: expected a JSON object, found an empty document",
        ),
        (
            "  \n",
            "req:1:1: expected a JSON object, found an empty document",
        ),
        (
            r#"{"apiVersion":"v1","kind":"List","items":[]}"#,
            "req:1:1: expected a single object, found a List; send its items one at a time",
        ),
        (
            r#"{"apiVersion":"v1","kind":"Pod"}"#,
            "req:1:1: missing required field \"metadata\"; every object needs apiVersion, kind and metadata.name",
        ),
        (
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}"#,
            "req:1:56: invalid YAML: while parsing a flow mapping, did not find expected ',' or '}'",
        ),
        (
            "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\"}}\n...\n{}",
            "req:3:1: expected one JSON object, found several documents",
        ),
    ] {
        assert_eq!(render(load_json_object("req", text)), want, "{text}");
    }
}

#[test]
fn refuses_oversized_documents_without_parsing_them() {
    let small = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: small}\n";
    // Unbalanced brackets: if this were parsed, it would also report a syntax error.
    let big = format!(
        "---\napiVersion: v1\ndata: [{}\n",
        "x,".repeat(MAX_DOCUMENT_BYTES / 2)
    );
    let text = format!("{small}{big}---\n{small}");
    assert_eq!(
        check(&text),
        format!(
            "f.yaml:4:1: document is {} bytes, more than the limit of 3145728 bytes (3 MiB); split it into smaller documents",
            big.len()
        )
    );
    let err = load_json_object(
        "req",
        &format!("{{\"a\": \"{}\"}}", "x".repeat(MAX_DOCUMENT_BYTES)),
    )
    .expect_err("too big");
    assert!(
        err[0]
            .to_string()
            .starts_with("req:1:1: document is 3145737 bytes"),
        "{}",
        err[0]
    );
}

#[test]
fn refuses_alias_bombs_and_deep_nesting() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let err = json_of(&bomb);
    assert!(
        err.contains("aliases expand to more than 100000 nodes"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "reported once: {err}");

    let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    assert_eq!(
        json_of(&deep),
        format!(
            "f.yaml:1:101: {}: nested more than 100 levels deep",
            "[0]".repeat(100)
        )
    );
    let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(parse_documents("f", &ok).is_ok());
    // An alias may not smuggle in depth either.
    let nested = format!(
        "a: &a {}{}\nb: [*a]\n",
        "[".repeat(MAX_DEPTH - 1),
        "]".repeat(MAX_DEPTH - 1)
    );
    assert!(json_of(&nested).contains("this alias nests the document more than 100 levels deep"));
    let very_deep = "[".repeat(100_000);
    assert!(parse_documents("f", &very_deep).is_err());
}

#[test]
fn document_positions_by_path() {
    let text = "a:\n  b.c/d: [x, {e: 1}]\n  f: &f {g: 2}\n  h: *f\n";
    let docs = parse_documents("f.yaml", text).expect("valid");
    let doc = &docs[0];
    for (path, want) in [
        ("", (1, 1)),
        ("a", (2, 3)),
        ("a[\"b.c/d\"]", (2, 10)),
        ("a[\"b.c/d\"][1]", (2, 14)),
        ("a[\"b.c/d\"][1].e", (2, 18)),
        ("a[\"b.c/d\"][7]", (2, 10)),
        ("a.f.g", (3, 13)),
        // Inside an alias: the alias's own position.
        ("a.h.g", (4, 6)),
        ("nope.deeper", (1, 1)),
        ("a[\"unterminated", (2, 3)),
        ("a[x]", (2, 3)),
    ] {
        assert_eq!(doc.position(path), want, "{path}");
    }
    assert_eq!(doc.key_position("a[\"b.c/d\"]"), (2, 3));
    assert_eq!(
        doc.error("a.f.g", "too big").to_string(),
        "f.yaml:3:13: a.f.g: too big"
    );
    assert_eq!(child_path("", "a.b"), "[\"a.b\"]");
    assert_eq!(child_path("x", "y_z-1"), "x.y_z-1");
    assert_eq!(index_path("x", 2), "x[2]");
}

#[test]
fn splits_documents_like_kubectl() {
    let text = "a: 1\n---\nb: 2\n--- # c\nc: 3\n...\n%YAML 1.2\n---\nd: ----\n";
    let chunks: Vec<(usize, &str)> = split_documents(text);
    assert_eq!(
        chunks,
        [
            (1, "a: 1\n"),
            (2, "---\nb: 2\n"),
            (4, "--- # c\nc: 3\n...\n"),
            (7, "%YAML 1.2\n---\nd: ----\n")
        ]
    );
    assert_eq!(
        json_of(text),
        "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n{\"d\":\"----\"}"
    );
}

/// Inputs that have broken parsers before: truncations, junk, and mutations of real manifests.
#[test]
fn never_panics_on_garbage() {
    let seeds = [
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p, labels: {a: b}}\n---\na: &x [1, *x]\n",
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"t":"\ud83d\ude00"}},"spec":{"n":18446744073709551616}}"#,
        "%YAML 1.2\n--- !!map\n? [a]\n: !!str\nb: >-\n  x\n...\n<<: *m\n\"\\u00\": '\n",
        "metadata:\n  ownerReferences: [{}, 1]\n  finalizers: {a: 1}\n  labels: {\"\": 1}\n  name: \"..\"\n",
    ];
    let junk = [
        "\u{feff}", "\0", "\t", "\r\n", "!!", "&", "*", "<<", "? ", ": ", "- ", "[", "]", "{", "}",
        "\"", "'", "|", ">", "#", "%", "\\u", "\\ud800", "é", "---\n", "...\n",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut random = move |n: usize| {
        // xorshift64: deterministic, so a failure can be replayed.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let run = |input: &str| {
        let input_copy = input.to_string();
        let outcome = std::panic::catch_unwind(move || {
            let _ = load_str("f", &input_copy);
            let _ = load_json_object("f", &input_copy);
        });
        assert!(outcome.is_ok(), "panicked on {input:?}");
    };
    for seed in seeds {
        for (i, _) in seed.char_indices() {
            run(&seed[..i]);
        }
        for _ in 0..1000 {
            let mut s = seed.to_string();
            for _ in 0..1 + random(4) {
                let mut at = random(s.len() + 1);
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.insert_str(at, junk[random(junk.len())]);
            }
            run(&s);
        }
    }
    for input in [
        "[".repeat(300),
        "{a: ".repeat(300),
        "- ".repeat(300),
        "a:\n".repeat(50) + &" ".repeat(10_000),
    ] {
        run(&input);
    }
}
