//! How the CLI prints objects: kubectl-like tables, YAML, JSON and `kind/name` lines.

use serde_json::Value;
use shipway_model::Object;
use shipway_model::columns::{Column, columns};
use time::OffsetDateTime;

/// kubectl's `HumanDuration`; see [`shipway_model::columns::human_duration`].
pub use shipway_model::columns::human_duration;

/// How a table is printed: kubectl's `-A`, `-o wide`, `-L` and `--show-labels`.
#[derive(Clone, Debug, Default)]
pub struct TableOptions {
    pub all_namespaces: bool,
    pub wide: bool,
    /// Label keys shown as columns, in order.
    pub label_columns: Vec<String>,
    pub show_labels: bool,
}

/// Renders objects as kubectl does: one table per kind (names prefixed with `kind.group/` when
/// there are several kinds), a NAMESPACE column with `-A`.
pub fn table(objects: &[Object], opts: &TableOptions) -> String {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut out = String::new();
    let mut kinds: Vec<(&str, &str)> = objects
        .iter()
        .map(|o| (o.group(), o.kind.as_str()))
        .collect();
    kinds.dedup();
    let several = kinds.len() > 1;
    for (i, (group, kind)) in kinds.iter().enumerate() {
        let cols = shown_columns(group, kind, opts.wide);
        let mut rows = vec![header(&cols, opts)];
        for o in objects
            .iter()
            .filter(|o| o.group() == *group && o.kind == *kind)
        {
            let mut r = row(o, &cols, now, opts);
            if several {
                let name = usize::from(opts.all_namespaces);
                r[name] = format!("{}/{}", resource_name(o), r[name]);
            }
            rows.push(r);
        }
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&align(&rows));
    }
    out
}

fn shown_columns(group: &str, kind: &str, wide_output: bool) -> Vec<Column> {
    columns(group, kind)
        .into_iter()
        .filter(|c| wide_output || !c.wide)
        .collect()
}

fn header(cols: &[Column], opts: &TableOptions) -> Vec<String> {
    let mut header: Vec<String> = cols.iter().map(|c| c.name.to_string()).collect();
    if opts.all_namespaces {
        header.insert(0, "NAMESPACE".into());
    }
    // kubectl heads a label column with the key's last segment, upper-cased.
    for key in &opts.label_columns {
        let short = key.rsplit('/').next().unwrap_or(key);
        header.push(short.to_uppercase());
    }
    if opts.show_labels {
        header.push("LABELS".into());
    }
    header
}

fn row(o: &Object, cols: &[Column], now: i64, opts: &TableOptions) -> Vec<String> {
    let mut row: Vec<String> = cols.iter().map(|c| c.cell(o, now)).collect();
    if opts.all_namespaces {
        row.insert(0, o.metadata.namespace.clone().unwrap_or_default());
    }
    for key in &opts.label_columns {
        row.push(o.metadata.labels.get(key).cloned().unwrap_or_default());
    }
    if opts.show_labels {
        let labels: Vec<String> = o
            .metadata
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        row.push(if labels.is_empty() {
            "<none>".into()
        } else {
            labels.join(",")
        });
    }
    row
}

/// The rows of `get -w`, printed one event at a time: the header first, then each object's row
/// padded to the widest cell seen so far in its column, so the columns stay aligned as long as
/// no cell grows past the ones before it (kubectl pads each event on its own).
pub struct WatchTable {
    opts: TableOptions,
    widths: Vec<usize>,
    header_printed: bool,
}

impl WatchTable {
    pub fn new(opts: TableOptions) -> WatchTable {
        WatchTable {
            opts,
            widths: Vec::new(),
            header_printed: false,
        }
    }

    /// The lines to print for `o` (with the header before the first).
    pub fn lines(&mut self, o: &Object) -> String {
        let cols = shown_columns(o.group(), &o.kind, self.opts.wide);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut rows = Vec::new();
        if !self.header_printed {
            self.header_printed = true;
            rows.push(header(&cols, &self.opts));
        }
        rows.push(row(o, &cols, now, &self.opts));
        let rows = escaped(&rows);
        for r in &rows {
            grow(&mut self.widths, r);
        }
        rows.iter().map(|r| line(r, &self.widths)).collect()
    }
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
    let rows = escaped(rows);
    let mut widths = Vec::new();
    for r in &rows {
        grow(&mut widths, r);
    }
    rows.iter().map(|r| line(r, &widths)).collect()
}

fn escaped(rows: &[Vec<String>]) -> Vec<Vec<std::borrow::Cow<'_, str>>> {
    rows.iter()
        .map(|r| r.iter().map(|c| escape_terminal(c)).collect())
        .collect()
}

/// Widens `widths` to fit `row`'s cells.
fn grow(widths: &mut Vec<usize>, row: &[std::borrow::Cow<'_, str>]) {
    if widths.len() < row.len() {
        widths.resize(row.len(), 0);
    }
    for (w, cell) in widths.iter_mut().zip(row) {
        *w = (*w).max(cell.chars().count());
    }
}

/// One row, each cell but the last padded to its column's width plus three spaces.
fn line(row: &[std::borrow::Cow<'_, str>], widths: &[usize]) -> String {
    let mut line = String::new();
    for (c, cell) in row.iter().enumerate() {
        line.push_str(cell);
        if c + 1 < row.len() {
            line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 3));
        }
    }
    let mut line = line.trim_end().to_string();
    line.push('\n');
    line
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

/// YAML for a JSON value, as `kubectl get -o yaml` prints it: go-yaml v2's output (keys sorted,
/// its quoting and folding, control characters escaped), the printer `shipway render` is tested
/// byte for byte against kubectl with.
/// A list as `-o json|yaml|name` asks (`name` gives each object's line), or as `table` prints it.
pub fn print_list(
    items: &[Object],
    format: Option<crate::cli::OutputFormat>,
    name: impl Fn(&Object) -> String,
    table: impl FnOnce(&[Object]),
) {
    use crate::cli::OutputFormat;
    match format {
        Some(OutputFormat::Json) => outln!(
            "{}",
            serde_json::to_string_pretty(items).unwrap_or_default()
        ),
        Some(OutputFormat::Yaml) => out!(
            "{}",
            to_yaml(&serde_json::to_value(items).unwrap_or_default())
        ),
        Some(OutputFormat::Name) => items.iter().for_each(|o| outln!("{}", name(o))),
        _ => table(items),
    }
}

/// One object as `-o json|yaml|name` asks, or as `text` prints it; `resource` is the lower-case
/// name `-o name` prefixes (`application/guestbook`).
pub fn print_object(
    obj: &Object,
    format: Option<crate::cli::OutputFormat>,
    resource: &str,
    text: impl Fn(&Object),
) {
    use crate::cli::OutputFormat;
    match format {
        Some(OutputFormat::Json) => {
            outln!("{}", serde_json::to_string_pretty(obj).unwrap_or_default())
        }
        Some(OutputFormat::Yaml) => out!(
            "{}",
            to_yaml(&serde_json::to_value(obj).unwrap_or_default())
        ),
        Some(OutputFormat::Name) => outln!("{resource}/{}", obj.metadata.name),
        _ => text(obj),
    }
}

pub fn to_yaml(value: &Value) -> String {
    shipway_kustomize::emit::to_yaml(value)
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
        // What `kubectl get -o yaml` prints for this object: keys sorted, sequences flush.
        assert_eq!(
            to_yaml(&v),
            "apiVersion: apps/v1\ndata:\n  script: |\n    echo hi\n    echo there\nmetadata:\n  labels:\n    app: web\n    tier: \"1\"\n  name: web\nspec:\n  args:\n  - a\n  - \"true\"\n  empty: {}\n  none: []\n  ports:\n  - name: http\n    port: 80\n"
        );
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
        // go-yaml's escapes (`\e`, `\x7F`); it writes a NEL as a space, as kubectl does.
        assert_eq!(
            to_yaml(&json!({"note": "\x1b[31m\u{7f}\u{85}"})),
            "note: \"\\e[31m\\x7F \"\n"
        );
    }

    #[test]
    fn watched_rows_keep_the_columns_of_the_rows_before() {
        let pod = |name: &str, phase: &str| -> Object {
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name}, "spec": {"containers": [{"name": "c"}]},
                "status": {"phase": phase}}))
            .unwrap()
        };
        let mut t = WatchTable::new(TableOptions::default());
        let first = t.lines(&pod("web-6f9c-abcde", "Pending"));
        let second = t.lines(&pod("web-6f9c-abcde", "Running"));
        let third = t.lines(&pod("db", "Running"));
        assert_eq!(
            format!("{first}{second}{third}"),
            "NAME             READY   STATUS    RESTARTS   AGE\n\
             web-6f9c-abcde   0/1     Pending   0          <unknown>\n\
             web-6f9c-abcde   0/1     Running   0          <unknown>\n\
             db               0/1     Running   0          <unknown>\n"
        );
    }

    #[test]
    fn label_columns_and_labels_come_last() {
        let o: Object = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "labels": {"app": "web", "app.kubernetes.io/tier": "db"}}}))
        .unwrap();
        let opts = TableOptions {
            label_columns: vec!["app.kubernetes.io/tier".into(), "missing".into()],
            show_labels: true,
            ..TableOptions::default()
        };
        assert_eq!(
            table(&[o], &opts),
            "NAME       DATA   AGE         TIER   MISSING   LABELS\n\
             settings   0      <unknown>   db               app=web,app.kubernetes.io/tier=db\n"
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
