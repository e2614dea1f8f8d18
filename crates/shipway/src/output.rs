//! How the CLI prints objects: kubectl-like tables, YAML, JSON and `kind/name` lines.

use serde_json::Value;
use shipway_model::Object;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A table column: its header and how to compute a cell.
struct Column {
    header: &'static str,
    cell: fn(&Object) -> String,
    wide_only: bool,
}

const fn col(header: &'static str, cell: fn(&Object) -> String) -> Column {
    Column {
        header,
        cell,
        wide_only: false,
    }
}

const fn wide(header: &'static str, cell: fn(&Object) -> String) -> Column {
    Column {
        header,
        cell,
        wide_only: true,
    }
}

fn at<'a>(o: &'a Object, pointer: &str) -> Option<&'a Value> {
    // `body` holds everything but apiVersion/kind/metadata; build the pointer against it.
    let (first, rest) = pointer
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((pointer.trim_start_matches('/'), ""));
    let v = o.body.get(first)?;
    if rest.is_empty() {
        Some(v)
    } else {
        v.pointer(&format!("/{rest}"))
    }
}

fn num(o: &Object, pointer: &str) -> i64 {
    at(o, pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn text(o: &Object, pointer: &str) -> String {
    match at(o, pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "<none>".into(),
        Some(v) => v.to_string(),
    }
}

fn count(o: &Object, field: &str) -> String {
    let n = |f: &str| at(o, f).and_then(Value::as_object).map_or(0, |m| m.len());
    (n(field) + n("binaryData") + if field == "data" { n("stringData") } else { 0 }).to_string()
}

fn containers(o: &Object, pointer: &str, field: &str) -> String {
    let list = at(o, pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = list
        .iter()
        .filter_map(|c| c.get(field).and_then(Value::as_str).map(str::to_string))
        .collect();
    if names.is_empty() {
        "<none>".into()
    } else {
        names.join(",")
    }
}

fn ports(o: &Object) -> String {
    let list = at(o, "/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ports: Vec<String> = list
        .iter()
        .map(|p| {
            let port = p.get("port").map(|v| v.to_string()).unwrap_or_default();
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            format!("{port}/{proto}")
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

fn selector(o: &Object, pointer: &str) -> String {
    let map = at(o, pointer)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if map.is_empty() {
        return "<none>".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",")
}

fn age(o: &Object) -> String {
    let Some(created) = o
        .metadata
        .creation_timestamp
        .as_deref()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
    else {
        return "<unknown>".into();
    };
    human_duration((OffsetDateTime::now_utc() - created).whole_seconds())
}

/// kubectl's `HumanDuration`: precise when recent, coarse when old.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        },
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        },
        _ if d < 365 * 2 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

fn name(o: &Object) -> String {
    o.metadata.name.clone()
}

fn columns(kind: &str) -> Vec<Column> {
    let mut cols = vec![col("NAME", name)];
    cols.extend(match kind {
        "Deployment" => vec![
            col("READY", |o| {
                format!(
                    "{}/{}",
                    num(o, "/status/readyReplicas"),
                    at(o, "/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
                )
            }),
            col("UP-TO-DATE", |o| {
                num(o, "/status/updatedReplicas").to_string()
            }),
            col("AVAILABLE", |o| {
                num(o, "/status/availableReplicas").to_string()
            }),
        ],
        "ReplicaSet" => vec![
            col("DESIRED", |o| {
                at(o, "/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
                    .to_string()
            }),
            col("CURRENT", |o| num(o, "/status/replicas").to_string()),
            col("READY", |o| num(o, "/status/readyReplicas").to_string()),
        ],
        "Pod" => vec![
            col("READY", |o| {
                let statuses = at(o, "/status/containerStatuses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let total = at(o, "/spec/containers")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                let ready = statuses
                    .iter()
                    .filter(|s| s["ready"] == Value::Bool(true))
                    .count();
                format!("{ready}/{total}")
            }),
            col("STATUS", |o| {
                text(o, "/status/phase").replace("<none>", "Pending")
            }),
            col("RESTARTS", |o| {
                let statuses = at(o, "/status/containerStatuses")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                statuses
                    .iter()
                    .filter_map(|s| s["restartCount"].as_i64())
                    .sum::<i64>()
                    .to_string()
            }),
        ],
        "Service" => vec![
            col("TYPE", |o| {
                text(o, "/spec/type").replace("<none>", "ClusterIP")
            }),
            col("ADDRESS", |o| text(o, "/status/address")),
            col("PORT(S)", ports),
        ],
        "ConfigMap" => vec![col("DATA", |o| count(o, "data"))],
        "Secret" => vec![
            col("TYPE", |o| text(o, "/type").replace("<none>", "Opaque")),
            col("DATA", |o| count(o, "data")),
        ],
        "Namespace" => vec![col("STATUS", |o| {
            text(o, "/status/phase").replace("<none>", "Active")
        })],
        "Job" => vec![col("COMPLETIONS", |o| {
            format!(
                "{}/{}",
                num(o, "/status/succeeded"),
                at(o, "/spec/completions")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            )
        })],
        "Application" => vec![
            col("SYNC STATUS", |o| {
                text(o, "/status/sync/status").replace("<none>", "Unknown")
            }),
            col("HEALTH STATUS", |o| {
                text(o, "/status/health/status").replace("<none>", "Unknown")
            }),
        ],
        "Rollout" => vec![
            col("DESIRED", |o| {
                at(o, "/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
                    .to_string()
            }),
            col("CURRENT", |o| num(o, "/status/replicas").to_string()),
            col("UP-TO-DATE", |o| {
                num(o, "/status/updatedReplicas").to_string()
            }),
            col("AVAILABLE", |o| {
                num(o, "/status/availableReplicas").to_string()
            }),
        ],
        _ => vec![],
    });
    cols.push(col("AGE", age));
    cols.extend(match kind {
        "Deployment" | "ReplicaSet" => vec![
            wide("CONTAINERS", |o| {
                containers(o, "/spec/template/spec/containers", "name")
            }),
            wide("IMAGES", |o| {
                containers(o, "/spec/template/spec/containers", "image")
            }),
            wide("SELECTOR", |o| selector(o, "/spec/selector/matchLabels")),
        ],
        "Pod" => vec![wide("CONTAINERS", |o| {
            containers(o, "/spec/containers", "name")
        })],
        "Service" => vec![wide("SELECTOR", |o| selector(o, "/spec/selector"))],
        _ => vec![],
    });
    cols
}

/// Renders objects as kubectl does: one table per kind, a NAMESPACE column with `-A`.
pub fn table(objects: &[Object], all_namespaces: bool, wide_output: bool) -> String {
    let mut out = String::new();
    let mut kinds: Vec<(&str, &str)> = objects
        .iter()
        .map(|o| (o.group(), o.kind.as_str()))
        .collect();
    kinds.dedup();
    let several = kinds.len() > 1;
    for (i, (group, kind)) in kinds.iter().enumerate() {
        let cols: Vec<Column> = columns(kind)
            .into_iter()
            .filter(|c| wide_output || !c.wide_only)
            .collect();
        let mut rows = vec![];
        let mut header: Vec<String> = cols.iter().map(|c| c.header.to_string()).collect();
        if all_namespaces {
            header.insert(0, "NAMESPACE".into());
        }
        rows.push(header);
        for o in objects
            .iter()
            .filter(|o| o.group() == *group && o.kind == *kind)
        {
            let mut row: Vec<String> = cols.iter().map(|c| (c.cell)(o)).collect();
            if several {
                row[0] = format!("{}/{}", resource_name(o), row[0]);
            }
            if all_namespaces {
                row.insert(0, o.metadata.namespace.clone().unwrap_or_default());
            }
            rows.push(row);
        }
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&align(&rows));
    }
    out
}

/// `s` with every control character made visible, for text printed on a terminal: an object's
/// names, annotations or event messages could otherwise move the cursor, rewrite the line or
/// drive the terminal. kubectl escapes ESC as `^[` and CR as `\r` (since 1.26); every other C0
/// character (tab and newline too, which would break a table's rows and columns) and DEL get the
/// same caret notation (`^I`, `^?`), and C1 characters `\u0085`-style.
pub fn escape_terminal(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\u{0}'..='\u{1f}' => {
                out.push('^');
                out.push(char::from(c as u8 + 0x40));
            }
            '\u{7f}' => out.push_str("^?"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.into()
}

/// Left-aligned columns separated by three spaces, as kubectl's tabwriter prints them. Cells
/// are escaped ([`escape_terminal`]).
pub fn align(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<std::borrow::Cow<'_, str>>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape_terminal(c)).collect())
        .collect();
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..ncols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `deployment.apps` for `-o name` and for mixed-kind tables.
pub fn resource_name(o: &Object) -> String {
    let lower = o.kind.to_ascii_lowercase();
    if o.group().is_empty() {
        lower
    } else {
        format!("{lower}.{}", o.group())
    }
}

/// YAML for a JSON value: block style, keys in object order, strings quoted whenever a plain
/// scalar could be read back as something else.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    emit(value, 0, &mut out, Ctx::Top);
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Top,
    MapValue,
    SeqItem,
}

fn emit(value: &Value, indent: usize, out: &mut String, ctx: Ctx) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            if ctx == Ctx::MapValue {
                out.push('\n');
            }
            for (i, (k, v)) in map.iter().enumerate() {
                // The first key of a sequence item sits on the dash's line.
                if !(ctx == Ctx::SeqItem && i == 0) {
                    out.push_str(&pad);
                }
                out.push_str(&scalar_string(k));
                out.push(':');
                match v {
                    Value::Array(a) if !a.is_empty() => emit(v, indent, out, Ctx::MapValue),
                    _ => emit(v, indent + 2, out, Ctx::MapValue),
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            if ctx == Ctx::MapValue {
                out.push('\n');
            }
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        out.push(' ');
                        emit(item, indent + 2, out, Ctx::SeqItem);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        emit(item, indent + 2, out, Ctx::Top);
                    }
                    _ => emit(item, indent + 2, out, Ctx::MapValue),
                }
            }
        }
        scalar => {
            if ctx != Ctx::Top {
                out.push(' ');
            }
            match scalar {
                Value::Object(_) => out.push_str("{}"),
                Value::Array(_) => out.push_str("[]"),
                Value::Null => out.push_str("null"),
                Value::Bool(b) => out.push_str(&b.to_string()),
                Value::Number(n) => out.push_str(&n.to_string()),
                Value::String(s) if s.contains('\n') && !s.starts_with(' ') => {
                    out.push_str(if s.ends_with('\n') { "|" } else { "|-" });
                    for line in s.trim_end_matches('\n').split('\n') {
                        out.push('\n');
                        if !line.is_empty() {
                            out.push_str(&" ".repeat(indent));
                            out.push_str(line);
                        }
                    }
                }
                Value::String(s) => out.push_str(&scalar_string(s)),
            }
            out.push('\n');
        }
    }
}

fn scalar_string(s: &str) -> String {
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "" | "~"
            | "null"
            | "true"
            | "false"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "y"
            | "n"
            | ".nan"
            | ".inf"
            | "-.inf"
    );
    let numeric = s.parse::<f64>().is_ok() || s.starts_with("0x") || s.starts_with("0o");
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || "/._".contains(c));
    let plain_ok = s
        .chars()
        .all(|c| c.is_alphanumeric() || " -_./=+@()$,%".contains(c))
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.contains(" #");
    if !reserved && !numeric && first_ok && plain_ok {
        s.to_string()
    } else {
        // A JSON string is a valid YAML double-quoted scalar. JSON leaves DEL and C1 characters
        // as they are; YAML's `\u` escapes them, so none reaches a terminal raw.
        let quoted = serde_json::to_string(s).unwrap_or_default();
        if quoted.chars().any(char::is_control) {
            quoted
                .chars()
                .map(|c| {
                    if c.is_control() {
                        format!("\\u{:04x}", c as u32)
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        } else {
            quoted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_reads_like_kubectl() {
        let v = json!({
            "apiVersion": "apps/v1",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "1"}},
            "spec": {"ports": [{"port": 80, "name": "http"}], "args": ["a", "true"], "empty": {}, "none": []},
            "data": {"script": "echo hi\necho there\n"},
        });
        assert_eq!(
            to_yaml(&v),
            "apiVersion: apps/v1\nmetadata:\n  name: web\n  labels:\n    app: web\n    tier: \"1\"\nspec:\n  ports:\n  - port: 80\n    name: http\n  args:\n  - a\n  - \"true\"\n  empty: {}\n  none: []\ndata:\n  script: |\n    echo hi\n    echo there\n"
        );
    }

    #[test]
    fn ages_are_humane() {
        for (secs, want) in [
            (5, "5s"),
            (130, "2m10s"),
            (600, "10m"),
            (4 * 3600 + 60, "4h1m"),
            (30 * 3600, "30h"),
            (3 * 86400, "3d"),
            (800 * 86400, "2y"),
        ] {
            assert_eq!(human_duration(secs), want);
        }
    }

    #[test]
    fn control_characters_are_shown_not_sent_to_the_terminal() {
        assert_eq!(
            escape_terminal("a\x1b[31mred\r\n\t\x7f\u{9b}2J ok é"),
            "a^[[31mred\\r^J^I^?\\u009b2J ok é"
        );
        assert!(matches!(
            escape_terminal("plain"),
            std::borrow::Cow::Borrowed(_)
        ));
        let rows = vec![
            vec!["NAME".to_string(), "NOTE".to_string()],
            vec!["\x1b[2Jx".to_string(), "y".to_string()],
        ];
        assert_eq!(align(&rows), "NAME     NOTE\n^[[2Jx   y\n");
        assert_eq!(
            to_yaml(&json!({"note": "\x1b[31m\u{7f}\u{85}"})),
            "note: \"\\u001b[31m\\u007f\\u0085\"\n"
        );
    }

    #[test]
    fn table_columns_align() {
        let rows = vec![
            vec!["NAME".into(), "AGE".into()],
            vec!["a-long-name".into(), "5s".into()],
        ];
        assert_eq!(align(&rows), "NAME          AGE\na-long-name   5s\n");
    }
}
