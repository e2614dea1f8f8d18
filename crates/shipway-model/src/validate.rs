//! Kind-specific checks of the workloads Shipway runs (Pods, Deployments, ReplicaSets, Jobs,
//! Services), of the ConfigMaps and Secrets they mount and of TrafficPolicies, with Kubernetes'
//! field paths, so bad manifests are refused at apply.

use std::collections::HashSet;
use std::fmt;

use serde_json::Value;

use crate::Object;
use crate::selector::Selector;

/// One problem, at a field path like `spec.template.spec.containers[0].image`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn object<'a>(
        &mut self,
        v: Option<&'a Value>,
        path: &str,
        required: bool,
    ) -> Option<&'a serde_json::Map<String, Value>> {
        match v {
            Some(Value::Object(m)) => Some(m),
            None | Some(Value::Null) if !required => None,
            None | Some(Value::Null) => {
                self.err(path, "Required value");
                None
            }
            Some(other) => {
                self.err(
                    path,
                    format!("expected an object, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn array<'a>(&mut self, v: Option<&'a Value>, path: &str) -> &'a [Value] {
        match v {
            Some(Value::Array(a)) => a,
            None | Some(Value::Null) => &[],
            Some(other) => {
                self.err(path, format!("expected a list, found {}", type_name(other)));
                &[]
            }
        }
    }

    fn string<'a>(&mut self, v: Option<&'a Value>, path: &str, required: bool) -> Option<&'a str> {
        match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            None | Some(Value::Null) if !required => None,
            None | Some(Value::Null) => {
                self.err(path, "Required value");
                None
            }
            Some(Value::String(_)) if required => {
                self.err(path, "Required value: must not be empty");
                None
            }
            Some(Value::String(_)) => None,
            Some(other) => {
                self.err(
                    path,
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn int(&mut self, v: Option<&Value>, path: &str, min: i64, max: i64) -> Option<i64> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if (min..=max).contains(&i) => Some(i),
                _ => {
                    self.err(
                        path,
                        format!("Invalid value: {n}: must be between {min} and {max}, inclusive"),
                    );
                    None
                }
            },
            Some(other) => {
                self.err(
                    path,
                    format!("expected an integer, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn int_or_percent(&mut self, v: Option<&Value>, path: &str) -> Option<(i64, bool)> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_i64().is_some_and(|i| i >= 0) => {
                n.as_i64().map(|i| (i, false))
            }
            Some(Value::String(s)) => {
                match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
                    Some(p) if p >= 0 => Some((p, true)),
                    _ => {
                        self.err(path, format!("Invalid value: {s:?}: must be an integer or a percentage (e.g. '5%')"));
                        None
                    }
                }
            }
            Some(other) => {
                self.err(
                    path,
                    format!(
                        "Invalid value: {other}: must be a non-negative integer or a percentage"
                    ),
                );
                None
            }
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Every problem Shipway can see in `obj` before running it; empty when it is fine or of a kind
/// Shipway does not check.
pub fn validate_object(obj: &Object) -> Vec<FieldError> {
    let mut c = Checker { errors: Vec::new() };
    let spec = obj.body.get("spec");
    match (obj.group(), obj.kind.as_str()) {
        ("", "Pod") => {
            if let Some(spec) = c.object(spec, "spec", true) {
                pod_spec(&mut c, spec, "spec", &["Always", "OnFailure", "Never"]);
            }
        }
        ("apps", "Deployment") | ("apps", "ReplicaSet") => {
            if let Some(spec) = c.object(spec, "spec", true) {
                workload(&mut c, spec, &["Always"]);
                if obj.kind == "Deployment" {
                    strategy(&mut c, spec);
                    c.int(
                        spec.get("revisionHistoryLimit"),
                        "spec.revisionHistoryLimit",
                        0,
                        i64::from(i32::MAX),
                    );
                    c.int(
                        spec.get("progressDeadlineSeconds"),
                        "spec.progressDeadlineSeconds",
                        1,
                        i64::from(i32::MAX),
                    );
                }
            }
        }
        ("batch", "Job") => {
            if let Some(spec) = c.object(spec, "spec", true) {
                for f in ["completions", "parallelism", "backoffLimit"] {
                    c.int(spec.get(f), &format!("spec.{f}"), 0, i64::from(i32::MAX));
                }
                c.int(
                    spec.get("activeDeadlineSeconds"),
                    "spec.activeDeadlineSeconds",
                    1,
                    i64::MAX,
                );
                c.int(
                    spec.get("ttlSecondsAfterFinished"),
                    "spec.ttlSecondsAfterFinished",
                    0,
                    i64::from(i32::MAX),
                );
                if let Some(t) = c.object(spec.get("template"), "spec.template", true)
                    && let Some(ps) = c.object(t.get("spec"), "spec.template.spec", true)
                {
                    if ps.get("restartPolicy").is_none() {
                        c.err(
                            "spec.template.spec.restartPolicy",
                            "Required value: a Job's pods need restartPolicy OnFailure or Never",
                        );
                    }
                    pod_spec(&mut c, ps, "spec.template.spec", &["OnFailure", "Never"]);
                }
            }
        }
        ("", "Service") => {
            if let Some(spec) = c.object(spec, "spec", false) {
                for (i, p) in c.array(spec.get("ports"), "spec.ports").iter().enumerate() {
                    let path = format!("spec.ports[{i}]");
                    if let Some(p) = c.object(Some(p), &path, true) {
                        if p.get("port").is_none() {
                            c.err(&format!("{path}.port"), "Required value");
                        }
                        c.int(p.get("port"), &format!("{path}.port"), 1, 65535);
                    }
                }
                if let Some(sel) = c.object(spec.get("selector"), "spec.selector", false) {
                    for (k, v) in sel {
                        if !v.is_string() {
                            c.err(
                                &format!("spec.selector.{k}"),
                                format!("expected a string, found {}", type_name(v)),
                            );
                        }
                    }
                }
            }
            if let Some(listen) = obj.metadata.annotations.get("shipway.dev/listen")
                && listen.trim().parse::<std::net::SocketAddr>().is_err()
            {
                c.err(
                    "metadata.annotations[shipway.dev/listen]",
                    format!("Invalid value: {listen:?}: expected an address like 127.0.0.1:8080"),
                );
            }
        }
        ("", "ConfigMap") | ("", "Secret") => {
            // Each key becomes a file name when the object is mounted as a volume.
            for field in ["data", "binaryData", "stringData"] {
                if let Some(data) = c.object(obj.body.get(field), field, false) {
                    for (key, value) in data {
                        let at = format!("{field}[{key}]");
                        config_key(&mut c, key, &at);
                        // The API server reads these as strings: `port: 8080` in YAML is a
                        // number and is refused, as kubectl refuses it.
                        // (A Secret's values are checked by admission, which never echoes them.)
                        if obj.kind == "ConfigMap"
                            && !matches!(value, Value::String(_) | Value::Null)
                        {
                            c.err(
                                &at,
                                format!(
                                    "Invalid value: {value}: must be a string; quote it in YAML ({key}: \"{value}\")"
                                ),
                            );
                        }
                    }
                }
            }
        }
        ("shipway.dev", "TrafficPolicy") => c.errors.extend(traffic_policy_spec(spec)),
        ("shipway.dev", "Repository") => {
            if let Some(spec) = c.object(spec, "spec", true) {
                repository(&mut c, spec);
            }
        }
        ("shipway.dev", "Environment") => {
            if let Some(v) = c.object(spec, "spec", false) {
                match serde_json::from_value::<crate::types::EnvironmentSpec>(Value::Object(
                    v.clone(),
                )) {
                    Ok(env) => {
                        for (path, message) in env.problems() {
                            c.err(&path, message);
                        }
                    }
                    Err(e) => c.err("spec", format!("Invalid value: {e}")),
                }
            }
        }
        _ => {}
    }
    c.errors
}

/// A Repository: hosted (`hosted: true`) or external (`url`), never both; a fetchable URL;
/// Secret references by name; a readable poll interval.
fn repository(c: &mut Checker, spec: &serde_json::Map<String, Value>) {
    let hosted = match spec.get("hosted") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            c.err(
                "spec.hosted",
                format!("expected a boolean, found {}", type_name(v)),
            );
            false
        }
    };
    let url = c.string(spec.get("url"), "spec.url", false);
    match (hosted, url) {
        (true, Some(_)) => c.err(
            "spec.url",
            "Forbidden: a hosted repository has no url (Shipway serves it); set hosted or url, not both",
        ),
        (false, None) => c.err(
            "spec",
            "Required value: set hosted: true (served by Shipway) or url (an external repository)",
        ),
        (false, Some(u)) if !crate::types::repository::is_clone_url(u) => c.err(
            "spec.url",
            format!(
                "Invalid value: {u:?}: expected an https://, http://, ssh://, file:// or git@host:path URL"
            ),
        ),
        _ => {}
    }
    for field in ["secretRef", "webhookSecretRef"] {
        let path = format!("spec.{field}");
        if let Some(r) = c.object(spec.get(field), &path, false)
            && let Some(name) = c.string(r.get("name"), &format!("{path}.name"), true)
            && let Err(e) = crate::name::validate_object_name(name)
        {
            c.err(
                &format!("{path}.name"),
                format!("Invalid value: {name:?}: {e}"),
            );
        }
    }
    if hosted && spec.get("secretRef").is_some_and(|v| !v.is_null()) {
        c.err(
            "spec.secretRef",
            "Forbidden: a hosted repository is reached with Shipway tokens, not a Secret",
        );
    }
    if let Some(p) = c.string(spec.get("pollInterval"), "spec.pollInterval", false)
        && crate::types::repository::parse_duration(p).is_none()
    {
        c.err(
            "spec.pollInterval",
            format!("Invalid value: {p:?}: expected a duration such as 180s, 5m or 1h30m"),
        );
    }
}

/// The problems of a TrafficPolicy's `spec`; [`crate::types::TrafficPolicySpec::validated`] reads
/// a spec that has none.
pub(crate) fn traffic_policy_spec(spec: Option<&Value>) -> Vec<FieldError> {
    let mut c = Checker { errors: Vec::new() };
    if let Some(spec) = c.object(spec, "spec", true) {
        traffic_policy(&mut c, spec);
    }
    c.errors
}

/// A TrafficPolicy (the proxy's routing for the Service of the same name): weights 0..=100 that
/// sum to 100, unique backend names, routes and mirror naming existing backends, valid regexes.
fn traffic_policy(c: &mut Checker, spec: &serde_json::Map<String, Value>) {
    let mut names = HashSet::new();
    let mut total = 0;
    let backends = c.array(spec.get("backends"), "spec.backends");
    for (i, b) in backends.iter().enumerate() {
        let path = format!("spec.backends[{i}]");
        let Some(b) = c.object(Some(b), &path, true) else {
            continue;
        };
        if let Some(name) = c.string(b.get("name"), &format!("{path}.name"), true)
            && !names.insert(name)
        {
            c.err(
                &format!("{path}.name"),
                format!("Duplicate value: {name:?}"),
            );
        }
        total += c
            .int(b.get("weight"), &format!("{path}.weight"), 0, 100)
            .unwrap_or(0);
        if let Some(sel) = b.get("selector")
            && let Err(e) = Selector::from_label_selector(sel)
        {
            c.err(&format!("{path}.selector"), format!("Invalid value: {e}"));
        }
    }
    if !backends.is_empty() && total != 100 {
        c.err(
            "spec.backends",
            format!("Invalid value: weights sum to {total}, expected 100"),
        );
    }
    for (i, r) in c
        .array(spec.get("routes"), "spec.routes")
        .iter()
        .enumerate()
    {
        let path = format!("spec.routes[{i}]");
        let Some(r) = c.object(Some(r), &path, true) else {
            continue;
        };
        if let Some(b) = c.string(r.get("backend"), &format!("{path}.backend"), true)
            && !names.contains(b)
        {
            c.err(
                &format!("{path}.backend"),
                format!("Not found: no backend named {b:?}"),
            );
        }
        let Some(m) = c.object(r.get("match"), &format!("{path}.match"), true) else {
            continue;
        };
        for field in ["headers", "cookies"] {
            let at = format!("{path}.match.{field}");
            for (j, h) in c.array(m.get(field), &at).iter().enumerate() {
                let at = format!("{at}[{j}]");
                let Some(h) = c.object(Some(h), &at, true) else {
                    continue;
                };
                c.string(h.get("name"), &format!("{at}.name"), true);
                let given: Vec<&str> = ["exact", "prefix", "regex"]
                    .into_iter()
                    .filter(|k| h.contains_key(*k))
                    .collect();
                if given.len() != 1 {
                    c.err(
                        &at,
                        "Invalid value: needs exactly one of exact, prefix or regex",
                    );
                }
                for k in given {
                    let Some(v) = c.string(h.get(k), &format!("{at}.{k}"), true) else {
                        continue;
                    };
                    if k == "regex"
                        && let Err(e) = regex::Regex::new(v)
                    {
                        c.err(&format!("{at}.regex"), format!("Invalid value: {e}"));
                    }
                }
            }
        }
    }
    if let Some(m) = c.object(spec.get("mirror"), "spec.mirror", false) {
        if let Some(b) = c.string(m.get("backend"), "spec.mirror.backend", true)
            && !names.contains(b)
        {
            c.err(
                "spec.mirror.backend",
                format!("Not found: no backend named {b:?}"),
            );
        }
        c.int(m.get("percent"), "spec.mirror.percent", 0, 100);
    }
}

fn workload(c: &mut Checker, spec: &serde_json::Map<String, Value>, policies: &[&str]) {
    c.int(
        spec.get("replicas"),
        "spec.replicas",
        0,
        i64::from(i32::MAX),
    );
    c.int(
        spec.get("minReadySeconds"),
        "spec.minReadySeconds",
        0,
        i64::from(i32::MAX),
    );
    let selector = match spec.get("selector") {
        None | Some(Value::Null) => {
            c.err("spec.selector", "Required value");
            None
        }
        Some(v) => match Selector::from_label_selector(v) {
            Ok(s) if s.is_empty() => {
                c.err(
                    "spec.selector",
                    "Invalid value: empty selector is invalid for a workload",
                );
                None
            }
            Ok(s) => Some(s),
            Err(e) => {
                c.err("spec.selector", format!("Invalid value: {e}"));
                None
            }
        },
    };
    let Some(template) = c.object(spec.get("template"), "spec.template", true) else {
        return;
    };
    let labels: std::collections::BTreeMap<String, String> = template
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    if let Some(sel) = selector
        && !sel.matches(&labels)
    {
        c.err(
            "spec.template.metadata.labels",
            format!("Invalid value: selector does not match template labels (selector {sel})"),
        );
    }
    if let Some(ps) = c.object(template.get("spec"), "spec.template.spec", true) {
        pod_spec(c, ps, "spec.template.spec", policies);
    }
}

fn strategy(c: &mut Checker, spec: &serde_json::Map<String, Value>) {
    let Some(s) = c.object(spec.get("strategy"), "spec.strategy", false) else {
        return;
    };
    let kind = c
        .string(s.get("type"), "spec.strategy.type", false)
        .unwrap_or("RollingUpdate");
    match kind {
        "RollingUpdate" => {
            if let Some(ru) = c.object(s.get("rollingUpdate"), "spec.strategy.rollingUpdate", false)
            {
                let surge =
                    c.int_or_percent(ru.get("maxSurge"), "spec.strategy.rollingUpdate.maxSurge");
                let unavailable = c.int_or_percent(
                    ru.get("maxUnavailable"),
                    "spec.strategy.rollingUpdate.maxUnavailable",
                );
                if let (Some((0, _)), Some((0, _))) = (surge, unavailable) {
                    c.err(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        "Invalid value: may not be 0 when maxSurge is 0",
                    );
                }
                if let Some((p, true)) = unavailable
                    && p > 100
                {
                    c.err(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        "Invalid value: must not be greater than 100%",
                    );
                }
            }
        }
        "Recreate" => {
            if s.get("rollingUpdate").is_some_and(|v| !v.is_null()) {
                c.err(
                    "spec.strategy.rollingUpdate",
                    "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        other => c.err(
            "spec.strategy.type",
            format!(
                "Unsupported value: {other:?}: supported values: \"Recreate\", \"RollingUpdate\""
            ),
        ),
    }
}

/// A ConfigMap's or Secret's key names a file in a volume: Kubernetes' `IsConfigMapKey`.
fn config_key(c: &mut Checker, key: &str, path: &str) {
    if let Err(e) = crate::name::validate_config_key(key) {
        c.err(path, format!("Invalid value: {key:?}: {e}"));
    }
}

/// Kubernetes' `validateLocalDescendingPath` (subPath): relative, no `..` element.
fn local_descending_path(c: &mut Checker, rel: &str, path: &str) {
    if rel.starts_with('/') {
        c.err(
            path,
            format!("Invalid value: {rel:?}: must be a relative path"),
        );
    }
    if rel.split('/').any(|p| p == "..") {
        c.err(
            path,
            format!("Invalid value: {rel:?}: must not contain '..'"),
        );
    }
}

/// Kubernetes' `validateLocalNonReservedPath` (items[].path): a descending path that does not
/// start with `..` either (the kubelet's own `..data` links live there).
fn local_non_reserved_path(c: &mut Checker, rel: &str, path: &str) {
    local_descending_path(c, rel, path);
    if rel.starts_with("..") && !rel.starts_with("../") {
        c.err(
            path,
            format!("Invalid value: {rel:?}: must not start with '..'"),
        );
    }
}

/// Whether a `..` of `dir` goes above the directory it starts from (absolute paths start from the
/// container's root too).
fn climbs_above_root(dir: &str) -> bool {
    let mut depth = 0usize;
    for part in dir.split('/') {
        match part {
            "" | "." => {}
            ".." if depth == 0 => return true,
            ".." => depth -= 1,
            _ => depth += 1,
        }
    }
    false
}

fn pod_spec(c: &mut Checker, spec: &serde_json::Map<String, Value>, path: &str, policies: &[&str]) {
    if let Some(policy) = c.string(
        spec.get("restartPolicy"),
        &format!("{path}.restartPolicy"),
        false,
    ) && !policies.contains(&policy)
    {
        let allowed: Vec<String> = policies.iter().map(|p| format!("{p:?}")).collect();
        c.err(
            &format!("{path}.restartPolicy"),
            format!(
                "Unsupported value: {policy:?}: supported values: {}",
                allowed.join(", ")
            ),
        );
    }
    c.int(
        spec.get("terminationGracePeriodSeconds"),
        &format!("{path}.terminationGracePeriodSeconds"),
        0,
        i64::MAX,
    );
    let mut volumes = HashSet::new();
    for (i, v) in c
        .array(spec.get("volumes"), &format!("{path}.volumes"))
        .iter()
        .enumerate()
    {
        let vpath = format!("{path}.volumes[{i}]");
        if let Some(v) = c.object(Some(v), &vpath, true) {
            if let Some(name) = c.string(v.get("name"), &format!("{vpath}.name"), true) {
                // The kubelet makes a directory of each volume's name.
                if let Err(e) = crate::name::validate_dns1123_label(name) {
                    c.err(
                        &format!("{vpath}.name"),
                        format!("Invalid value: {name:?}: {e}"),
                    );
                } else if !volumes.insert(name.to_string()) {
                    c.err(
                        &format!("{vpath}.name"),
                        format!("Duplicate value: {name:?}"),
                    );
                }
            }
            for source in ["configMap", "secret"] {
                let spath = format!("{vpath}.{source}");
                let Some(src) = c.object(v.get(source), &spath, false) else {
                    continue;
                };
                for (j, item) in c
                    .array(src.get("items"), &format!("{spath}.items"))
                    .iter()
                    .enumerate()
                {
                    let ipath = format!("{spath}.items[{j}]");
                    let Some(item) = c.object(Some(item), &ipath, true) else {
                        continue;
                    };
                    if let Some(key) = c.string(item.get("key"), &format!("{ipath}.key"), true) {
                        config_key(c, key, &format!("{ipath}.key"));
                    }
                    if let Some(rel) = c.string(item.get("path"), &format!("{ipath}.path"), true) {
                        local_non_reserved_path(c, rel, &format!("{ipath}.path"));
                    }
                }
            }
            let sources = ["emptyDir", "configMap", "secret"]
                .iter()
                .filter(|s| v.contains_key(**s))
                .count();
            let others: Vec<&String> = v
                .keys()
                .filter(|k| !["name", "emptyDir", "configMap", "secret"].contains(&k.as_str()))
                .collect();
            if let Some(other) = others.first() {
                c.err(&format!("{vpath}.{other}"), "Unsupported value: the local runtime supports emptyDir, configMap and secret volumes");
            } else if sources != 1 {
                c.err(
                    &vpath,
                    "Invalid value: exactly one of emptyDir, configMap or secret must be set",
                );
            }
        }
    }
    let containers = c.array(spec.get("containers"), &format!("{path}.containers"));
    if containers.is_empty() {
        c.err(
            &format!("{path}.containers"),
            "Required value: a pod needs at least one container",
        );
    }
    let inits = c.array(
        spec.get("initContainers"),
        &format!("{path}.initContainers"),
    );
    let mut names = HashSet::new();
    for (field, list) in [("initContainers", inits), ("containers", containers)] {
        for (i, ct) in list.iter().enumerate() {
            let cpath = format!("{path}.{field}[{i}]");
            let Some(ct) = c.object(Some(ct), &cpath, true) else {
                continue;
            };
            if let Some(name) = c.string(ct.get("name"), &format!("{cpath}.name"), true) {
                if !is_dns_label(name) {
                    c.err(&format!("{cpath}.name"), format!("Invalid value: {name:?}: a container name must be a DNS-1123 label (lowercase alphanumerics and '-')"));
                } else if !names.insert(name.to_string()) {
                    c.err(
                        &format!("{cpath}.name"),
                        format!("Duplicate value: {name:?}"),
                    );
                }
            }
            c.string(ct.get("image"), &format!("{cpath}.image"), true);
            for f in ["command", "args"] {
                for (j, a) in c
                    .array(ct.get(f), &format!("{cpath}.{f}"))
                    .iter()
                    .enumerate()
                {
                    if !a.is_string() {
                        c.err(
                            &format!("{cpath}.{f}[{j}]"),
                            format!("expected a string, found {}; quote it", type_name(a)),
                        );
                    }
                }
            }
            let mut port_names = HashSet::new();
            for (j, p) in c
                .array(ct.get("ports"), &format!("{cpath}.ports"))
                .iter()
                .enumerate()
            {
                let ppath = format!("{cpath}.ports[{j}]");
                let Some(p) = c.object(Some(p), &ppath, true) else {
                    continue;
                };
                if p.get("containerPort").is_none() {
                    c.err(&format!("{ppath}.containerPort"), "Required value");
                }
                c.int(
                    p.get("containerPort"),
                    &format!("{ppath}.containerPort"),
                    1,
                    65535,
                );
                if let Some(n) = c.string(p.get("name"), &format!("{ppath}.name"), false) {
                    if n.len() > 15
                        || !is_dns_label(n)
                        || !n.chars().any(|ch| ch.is_ascii_lowercase())
                    {
                        c.err(&format!("{ppath}.name"), format!("Invalid value: {n:?}: must be no more than 15 lowercase alphanumerics or '-', with at least one letter"));
                    } else if !port_names.insert(n.to_string()) {
                        c.err(&format!("{ppath}.name"), format!("Duplicate value: {n:?}"));
                    }
                }
            }
            for (j, e) in c
                .array(ct.get("env"), &format!("{cpath}.env"))
                .iter()
                .enumerate()
            {
                let epath = format!("{cpath}.env[{j}]");
                let Some(e) = c.object(Some(e), &epath, true) else {
                    continue;
                };
                if let Some(n) = c.string(e.get("name"), &format!("{epath}.name"), true)
                    && !is_env_name(n)
                {
                    c.err(&format!("{epath}.name"), format!("Invalid value: {n:?}: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit"));
                }
                if e.get("value")
                    .is_some_and(|v| !v.is_string() && !v.is_null())
                {
                    c.err(
                        &format!("{epath}.value"),
                        format!(
                            "expected a string, found {}; quote it",
                            type_name(&e["value"])
                        ),
                    );
                }
                if e.get("value").is_some() && e.get("valueFrom").is_some() {
                    c.err(
                        &format!("{epath}.valueFrom"),
                        "Invalid value: may not be specified when `value` is not empty",
                    );
                }
            }
            for (j, m) in c
                .array(ct.get("volumeMounts"), &format!("{cpath}.volumeMounts"))
                .iter()
                .enumerate()
            {
                let mpath = format!("{cpath}.volumeMounts[{j}]");
                let Some(m) = c.object(Some(m), &mpath, true) else {
                    continue;
                };
                if let Some(n) = c.string(m.get("name"), &format!("{mpath}.name"), true)
                    && !volumes.contains(n)
                {
                    c.err(
                        &format!("{mpath}.name"),
                        format!("Not found: {n:?}: no volume of the pod has this name"),
                    );
                }
                if let Some(at) = c.string(m.get("mountPath"), &format!("{mpath}.mountPath"), true)
                    && at.split('/').any(|p| p == "..")
                {
                    c.err(
                        &format!("{mpath}.mountPath"),
                        format!("Invalid value: {at:?}: must not contain '..' (the local runtime places mounts inside the container's directory)"),
                    );
                }
                if let Some(sub) = c.string(m.get("subPath"), &format!("{mpath}.subPath"), false) {
                    local_descending_path(c, sub, &format!("{mpath}.subPath"));
                }
            }
            if let Some(w) = c.string(ct.get("workingDir"), &format!("{cpath}.workingDir"), false)
                && climbs_above_root(w)
            {
                c.err(
                    &format!("{cpath}.workingDir"),
                    format!("Invalid value: {w:?}: must not climb above the container's root with '..' (the local runtime resolves workingDir inside the container's directory)"),
                );
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                let ppath = format!("{cpath}.{probe}");
                if let Some(p) = c.object(ct.get(probe), &ppath, false) {
                    let handlers = ["httpGet", "tcpSocket", "exec", "grpc"]
                        .iter()
                        .filter(|h| p.contains_key(**h))
                        .count();
                    if handlers != 1 {
                        c.err(&ppath, "Invalid value: must specify exactly one handler: httpGet, tcpSocket or exec");
                    }
                    if p.contains_key("grpc") {
                        c.err(&format!("{ppath}.grpc"), "Unsupported value: the local runtime probes with httpGet, tcpSocket or exec");
                    }
                    for f in [
                        "initialDelaySeconds",
                        "timeoutSeconds",
                        "periodSeconds",
                        "successThreshold",
                        "failureThreshold",
                    ] {
                        let min = if f == "initialDelaySeconds" { 0 } else { 1 };
                        c.int(p.get(f), &format!("{ppath}.{f}"), min, i64::from(i32::MAX));
                    }
                    if field == "initContainers" {
                        c.err(&ppath, "Forbidden: may not be set for init containers");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Vec<String> {
        let obj: Object = serde_json::from_value(v).unwrap();
        validate_object(&obj)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn deployment(spec: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn repositories_are_hosted_or_external() {
        let repo = |spec: Value| {
            check(
                json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "Repository", "metadata": {"name": "apps"}, "spec": spec}),
            )
        };
        assert_eq!(repo(json!({"hosted": true})), Vec::<String>::new());
        assert_eq!(
            repo(
                json!({"url": "git@github.com:argoproj/argocd-example-apps.git", "secretRef": {"name": "creds"}, "pollInterval": "5m", "webhookSecretRef": {"name": "hook"}})
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            repo(json!({})),
            [
                "spec: Required value: set hosted: true (served by Shipway) or url (an external repository)"
            ]
        );
        assert_eq!(
            repo(json!({"hosted": true, "url": "https://x/y.git", "secretRef": {"name": "s"}})),
            [
                "spec.url: Forbidden: a hosted repository has no url (Shipway serves it); set hosted or url, not both",
                "spec.secretRef: Forbidden: a hosted repository is reached with Shipway tokens, not a Secret",
            ]
        );
        let bad = repo(
            json!({"hosted": "yes", "url": "ftp://x", "secretRef": {"name": "Bad_Name"}, "pollInterval": "soon"}),
        );
        assert_eq!(bad.len(), 4, "{bad:?}");
        assert_eq!(bad[0], "spec.hosted: expected a boolean, found a string");
        assert_eq!(
            bad[1],
            "spec.url: Invalid value: \"ftp://x\": expected an https://, http://, ssh://, file:// or git@host:path URL"
        );
        assert!(
            bad[2].starts_with("spec.secretRef.name: Invalid value: \"Bad_Name\": "),
            "{}",
            bad[2]
        );
        assert_eq!(
            bad[3],
            "spec.pollInterval: Invalid value: \"soon\": expected a duration such as 180s, 5m or 1h30m"
        );
        assert!(crate::name::validate_name_for_kind("shipway.dev", "Repository", "a.b").is_err());
    }

    #[test]
    fn traffic_policies_are_checked() {
        let policy = |spec: Value| {
            check(
                json!({"apiVersion": "shipway.dev/v1alpha1", "kind": "TrafficPolicy", "metadata": {"name": "web"}, "spec": spec}),
            )
        };
        let good = policy(json!({
            "backends": [
                {"name": "stable", "selector": {"matchLabels": {"pod-template-hash": "a"}}, "weight": 80},
                {"name": "canary", "selector": {"matchLabels": {"pod-template-hash": "b"}}, "weight": 20},
            ],
            "routes": [{"match": {"headers": [{"name": "x-canary", "exact": "yes"}], "cookies": [{"name": "beta", "regex": "^on$"}]}, "backend": "canary"}],
            "mirror": {"backend": "canary", "percent": 10},
        }));
        assert_eq!(good, Vec::<String>::new());
        let bad = policy(json!({
            "backends": [{"name": "stable", "weight": 80}, {"name": "stable", "weight": 101}],
            "routes": [{"match": {"headers": [{"name": "x", "regex": "("}, {"name": "y"}]}, "backend": "nope"}],
            "mirror": {"backend": "gone", "percent": 200},
        }));
        // Every problem, read: the weight over 100 is left out of the sum.
        assert_eq!(
            bad,
            [
                "spec.backends[1].name: Duplicate value: \"stable\"",
                "spec.backends[1].weight: Invalid value: 101: must be between 0 and 100, inclusive",
                "spec.backends: Invalid value: weights sum to 80, expected 100",
                "spec.routes[0].backend: Not found: no backend named \"nope\"",
                "spec.routes[0].match.headers[0].regex: Invalid value: regex parse error:\n    (\n    ^\nerror: unclosed group",
                "spec.routes[0].match.headers[1]: Invalid value: needs exactly one of exact, prefix or regex",
                "spec.mirror.backend: Not found: no backend named \"gone\"",
                "spec.mirror.percent: Invalid value: 200: must be between 0 and 100, inclusive",
            ]
        );
        let svc = check(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "annotations": {"shipway.dev/listen": "localhost"}}, "spec": {}}),
        );
        assert_eq!(
            svc,
            [
                "metadata.annotations[shipway.dev/listen]: Invalid value: \"localhost\": expected an address like 127.0.0.1:8080"
            ]
        );
    }

    #[test]
    fn a_good_deployment_passes() {
        let errors = check(deployment(json!({
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:v1", "ports": [{"containerPort": 8080, "name": "http"}]}]}},
        })));
        assert_eq!(errors, Vec::<String>::new());
    }

    #[test]
    fn problems_name_their_field_paths() {
        let errors = check(deployment(json!({
            "replicas": -1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "Rolling"},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "Web", "ports": [{"containerPort": 70000}], "env": [{"name": "1X", "value": 5}]}],
            }},
        })));
        assert_eq!(
            errors,
            [
                "spec.replicas: Invalid value: -1: must be between 0 and 2147483647, inclusive",
                "spec.template.metadata.labels: Invalid value: selector does not match template labels (selector app=web)",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.template.spec.containers[0].name: Invalid value: \"Web\": a container name must be a DNS-1123 label (lowercase alphanumerics and '-')",
                "spec.template.spec.containers[0].image: Required value",
                "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.template.spec.containers[0].env[0].name: Invalid value: \"1X\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit",
                "spec.template.spec.containers[0].env[0].value: expected a string, found a number; quote it",
                "spec.strategy.type: Unsupported value: \"Rolling\": supported values: \"Recreate\", \"RollingUpdate\"",
            ]
        );
        assert_eq!(
            check(deployment(json!({"replicas": 1}))),
            [
                "spec.selector: Required value",
                "spec.template: Required value"
            ]
        );
    }

    #[test]
    fn paths_from_volumes_and_mounts_stay_inside_the_pod() {
        let pod = |spec: Value| {
            check(
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}),
            )
        };
        let errors = pod(json!({
            "volumes": [
                {"name": "../x", "emptyDir": {}},
                {"name": "/abs", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "c", "items": [
                    {"key": "..", "path": "../up"},
                    {"key": "a/b", "path": "/etc/passwd"},
                    {"key": "ok", "path": "..data"},
                    {"key": "ok", "path": "a/../../b"},
                    {"key": "ok", "path": "a/b.conf"},
                ]}},
                {"name": "s", "secret": {"secretName": "s", "items": [{"key": "..k", "path": ".."}]}},
            ],
            "containers": [{"name": "c", "image": "i", "workingDir": "/app/../..", "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/../x", "subPath": "../s"},
                {"name": "cfg", "mountPath": "/etc/x", "subPath": "/abs"},
                {"name": "../x", "mountPath": "/y"},
                {"name": "cfg", "mountPath": "/z", "subPath": "a/./b"},
            ]}, {"name": "d", "image": "i", "workingDir": "srv/../srv/./www"}],
        }));
        let label = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')";
        let key = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name', or 'KEY_NAME', or 'key-name')";
        assert_eq!(
            errors,
            [
                format!("spec.volumes[0].name: Invalid value: \"../x\": {label}"),
                format!("spec.volumes[1].name: Invalid value: \"/abs\": {label}"),
                "spec.volumes[2].configMap.items[0].key: Invalid value: \"..\": must not be '..'".into(),
                "spec.volumes[2].configMap.items[0].path: Invalid value: \"../up\": must not contain '..'".into(),
                format!("spec.volumes[2].configMap.items[1].key: Invalid value: \"a/b\": {key}"),
                "spec.volumes[2].configMap.items[1].path: Invalid value: \"/etc/passwd\": must be a relative path".into(),
                "spec.volumes[2].configMap.items[2].path: Invalid value: \"..data\": must not start with '..'".into(),
                "spec.volumes[2].configMap.items[3].path: Invalid value: \"a/../../b\": must not contain '..'".into(),
                "spec.volumes[3].secret.items[0].key: Invalid value: \"..k\": must not start with '..'".into(),
                "spec.volumes[3].secret.items[0].path: Invalid value: \"..\": must not contain '..'".into(),
                "spec.volumes[3].secret.items[0].path: Invalid value: \"..\": must not start with '..'".into(),
                "spec.containers[0].volumeMounts[0].mountPath: Invalid value: \"/etc/../x\": must not contain '..' (the local runtime places mounts inside the container's directory)".into(),
                "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../s\": must not contain '..'".into(),
                "spec.containers[0].volumeMounts[1].subPath: Invalid value: \"/abs\": must be a relative path".into(),
                "spec.containers[0].volumeMounts[2].name: Not found: \"../x\": no volume of the pod has this name".into(),
                "spec.containers[0].workingDir: Invalid value: \"/app/../..\": must not climb above the container's root with '..' (the local runtime resolves workingDir inside the container's directory)".into(),
            ]
        );
        // The same check runs on a Deployment's template.
        let errors = check(deployment(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "volumes": [{"name": "../../../../tmp/x", "configMap": {"name": "c"}}],
                "containers": [{"name": "web", "image": "i"}],
            }},
        })));
        assert_eq!(
            errors,
            [format!(
                "spec.template.spec.volumes[0].name: Invalid value: \"../../../../tmp/x\": {label}"
            )]
        );
    }

    #[test]
    fn config_map_and_secret_keys_are_file_names() {
        let errors = check(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"ok.conf": "", "../x": "", ".": ""}, "binaryData": {"/etc": ""}}),
        );
        assert_eq!(
            errors,
            [
                "data[../x]: Invalid value: \"../x\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name', or 'KEY_NAME', or 'key-name')",
                "data[.]: Invalid value: \".\": must not be '.'",
                "binaryData[/etc]: Invalid value: \"/etc\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name', or 'KEY_NAME', or 'key-name')",
            ]
        );
        let errors = check(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"port": 8080, "debug": true, "name": "x", "empty": null}}),
        );
        assert_eq!(
            errors,
            [
                "data[port]: Invalid value: 8080: must be a string; quote it in YAML (port: \"8080\")",
                "data[debug]: Invalid value: true: must be a string; quote it in YAML (debug: \"true\")",
            ]
        );
        let errors = check(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"..hidden": "x", "tls.key": "y"}}),
        );
        assert_eq!(
            errors,
            ["stringData[..hidden]: Invalid value: \"..hidden\": must not start with '..'"]
        );
    }

    #[test]
    fn jobs_need_a_restart_policy_that_ends() {
        let errors = check(
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}}),
        );
        assert_eq!(
            errors,
            [
                "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
            ]
        );
    }
}
