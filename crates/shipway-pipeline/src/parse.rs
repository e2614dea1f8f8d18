//! Reading a workflow file into a [`Workflow`], checking it against GitHub's workflow schema and
//! gathering every problem with its `file:line:col`, as actionlint does.

use indexmap::IndexMap;
use serde_json::{Map, Value as Json};
use shipway_expr::{Condition, Scope, Template};
use shipway_model::load::{Document, child_path, index_path, parse_documents};

use crate::matrix::short as kind;
use crate::problem::{Problem, Severity};
use crate::scopes;
use crate::workflow::*;

/// The events GitHub can start a workflow with.
const EVENTS: &[&str] = &[
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "create",
    "delete",
    "deployment",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "fork",
    "gollum",
    "issue_comment",
    "issues",
    "label",
    "merge_group",
    "milestone",
    "page_build",
    "project",
    "project_card",
    "project_column",
    "public",
    "pull_request",
    "pull_request_comment",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_target",
    "push",
    "registry_package",
    "release",
    "repository_dispatch",
    "schedule",
    "status",
    "watch",
    "workflow_call",
    "workflow_dispatch",
    "workflow_run",
];

const WORKFLOW_KEYS: &[&str] = &[
    "name",
    "run-name",
    "on",
    "permissions",
    "env",
    "defaults",
    "concurrency",
    "jobs",
];

const JOB_KEYS: &[&str] = &[
    "name",
    "needs",
    "runs-on",
    "permissions",
    "environment",
    "concurrency",
    "outputs",
    "env",
    "defaults",
    "if",
    "steps",
    "timeout-minutes",
    "strategy",
    "continue-on-error",
    "container",
    "services",
    "snapshot",
];

const CALL_JOB_KEYS: &[&str] = &[
    "name",
    "uses",
    "with",
    "secrets",
    "needs",
    "if",
    "permissions",
    "strategy",
    "concurrency",
];

const RUN_STEP_KEYS: &[&str] = &[
    "id",
    "if",
    "name",
    "run",
    "working-directory",
    "shell",
    "env",
    "continue-on-error",
    "timeout-minutes",
];

const USES_STEP_KEYS: &[&str] = &[
    "id",
    "if",
    "name",
    "uses",
    "with",
    "env",
    "continue-on-error",
    "timeout-minutes",
];

/// Reads one workflow file. Returns the workflow when the text could be read as one (even if it
/// has problems, so callers can still plan what is valid) and every problem found.
pub fn parse_workflow(file: &str, text: &str) -> (Option<Workflow>, Vec<Problem>) {
    let docs = match parse_documents(file, text) {
        Ok(docs) => docs,
        Err(errors) => return (None, yaml_problems(errors)),
    };
    let doc = match docs.as_slice() {
        [doc] => doc,
        [] => {
            let p = Problem::new(
                file,
                Pos { line: 1, column: 1 },
                Severity::Error,
                "the file is empty; a workflow needs `on` and `jobs`",
            );
            return (None, vec![p]);
        }
        [_, second, ..] => {
            let p = Problem::new(
                file,
                Pos {
                    line: second.line,
                    column: second.column,
                },
                Severity::Error,
                "a workflow file holds one YAML document; remove the extra `---` documents",
            );
            return (None, vec![p]);
        }
    };
    read(file, text, doc, Reader::workflow)
}

/// Reads a local action's `action.yml`. Composite actions are supported; `node*` and `docker`
/// actions are reported as unsupported by kind (their code is JavaScript or an image).
pub fn parse_action(file: &str, text: &str) -> (Option<ActionMeta>, Vec<Problem>) {
    let docs = match parse_documents(file, text) {
        Ok(docs) => docs,
        Err(errors) => return (None, yaml_problems(errors)),
    };
    let Some(doc) = docs.first() else {
        let p = Problem::new(
            file,
            Pos { line: 1, column: 1 },
            Severity::Error,
            "the action file is empty",
        );
        return (None, vec![p]);
    };
    read(file, text, doc, Reader::action)
}

/// YAML that did not load, as problems at the positions the loader gave.
fn yaml_problems(errors: Vec<shipway_model::load::LoadError>) -> Vec<Problem> {
    errors
        .into_iter()
        .map(|e| Problem {
            file: e.file,
            line: e.line,
            column: e.column,
            message: e.message,
            severity: Severity::Error,
            missing_file: None,
        })
        .collect()
}

/// Reads `doc` with `what` (a workflow or an action), gathering every problem, sorted.
fn read<'a, T>(
    file: &'a str,
    text: &'a str,
    doc: &'a Document,
    what: impl FnOnce(&mut Reader<'a>) -> Option<T>,
) -> (Option<T>, Vec<Problem>) {
    let mut r = Reader {
        doc,
        lines: text.lines().collect(),
        file,
        problems: Vec::new(),
        refs: Vec::new(),
    };
    let out = what(&mut r);
    let mut problems = r.problems;
    crate::problem::sort(&mut problems);
    (out, problems)
}

/// A `needs.<job>` or `steps.<id>` reference found in an expression: checked once the job is
/// read, since only then are its needs and step ids known.
struct Reference {
    /// The key the expression is written in (`jobs.build.steps[2].run`).
    path: String,
    pos: Pos,
    context: String,
    name: String,
}

struct Reader<'a> {
    doc: &'a Document,
    lines: Vec<&'a str>,
    file: &'a str,
    problems: Vec<Problem>,
    refs: Vec<Reference>,
}

impl Reader<'_> {
    fn pos(&self, path: &str) -> Pos {
        let (line, column) = self.doc.position(path);
        Pos { line, column }
    }

    fn key_pos(&self, path: &str) -> Pos {
        let (line, column) = self.doc.key_position(path);
        Pos { line, column }
    }

    fn report(
        &mut self,
        pos: Pos,
        severity: Severity,
        path: &str,
        message: impl std::fmt::Display,
    ) {
        let message = if path.is_empty() {
            message.to_string()
        } else {
            format!("{path}: {message}")
        };
        self.problems
            .push(Problem::new(self.file, pos, severity, message));
    }

    fn error(&mut self, path: &str, message: impl std::fmt::Display) {
        let pos = self.pos(path);
        self.report(pos, Severity::Error, path, message);
    }

    fn key_error(&mut self, path: &str, message: impl std::fmt::Display) {
        let pos = self.key_pos(path);
        self.report(pos, Severity::Error, path, message);
    }

    fn unsupported(&mut self, path: &str, message: impl std::fmt::Display) {
        let pos = self.pos(path);
        self.report(pos, Severity::Unsupported, path, message);
    }

    fn unsupported_key(&mut self, path: &str, message: impl std::fmt::Display) {
        let pos = self.key_pos(path);
        self.report(pos, Severity::Unsupported, path, message);
    }

    fn warning(&mut self, path: &str, message: impl std::fmt::Display) {
        let pos = self.pos(path);
        self.report(pos, Severity::Warning, path, message);
    }

    /// The position of character `offset` (0-based) of the string value at `path`: exact for
    /// plain and quoted one-line scalars and for block scalars (`|`, `>`), whose text starts on
    /// the lines after the indicator.
    fn pos_in_scalar(&self, path: &str, value: &str, offset: usize) -> Pos {
        let start = self.pos(path);
        let Some(line) = self.lines.get(start.line.wrapping_sub(1)) else {
            return start;
        };
        let first = line.chars().nth(start.column.saturating_sub(1));
        let before: String = value.chars().take(offset).collect();
        let value_line = before.matches('\n').count();
        let col_in_line = before.rsplit('\n').next().map_or(0, |s| s.chars().count());
        // Block scalars (`|`, `>`) start on their own line: only indentation precedes them.
        let block = line
            .chars()
            .take(start.column.saturating_sub(1))
            .all(char::is_whitespace);
        match first {
            Some('\'' | '"') if value_line == 0 => Pos {
                line: start.line,
                column: start.column + 1 + col_in_line,
            },
            _ if value_line == 0 => Pos {
                line: start.line,
                column: start.column + col_in_line,
            },
            _ if block => Pos {
                line: start.line + value_line,
                column: start.column + col_in_line,
            },
            _ => {
                let l = self
                    .lines
                    .get((start.line + value_line).saturating_sub(1))
                    .map_or(0, |l| l.chars().take_while(|c| c.is_whitespace()).count());
                Pos {
                    line: start.line + value_line,
                    column: l + col_in_line + 1,
                }
            }
        }
    }

    /// Notes every `needs.X` and `steps.X` in `e` (which starts at column `col` of `raw`).
    fn record_refs(&mut self, path: &str, raw: &str, e: &shipway_expr::Expr, col: usize) {
        let mut found = Vec::new();
        e.walk(&mut |node| {
            if let Some(p) = node.context_path()
                && p.len() == 2
                && (p[0] == "needs" || p[0] == "steps")
                && p[1] != "*"
            {
                found.push((p[0].clone(), p[1].clone(), node.column));
            }
        });
        for (context, name, column) in found {
            let pos = self.pos_in_scalar(path, raw, (col + column).saturating_sub(2));
            self.refs.push(Reference {
                path: path.to_string(),
                pos,
                context,
                name,
            });
        }
    }

    /// Warns about `needs.X` that the job does not need and `steps.X` that no earlier step
    /// defines: both are null at run time, almost always by mistake.
    fn check_refs(&mut self, job_path: &str, job: &Job) {
        let refs: Vec<Reference> = std::mem::take(&mut self.refs);
        let mut keep = Vec::new();
        for r in refs {
            let Some(rest) = r
                .path
                .strip_prefix(job_path)
                .filter(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            else {
                keep.push(r);
                continue;
            };
            let message = match r.context.as_str() {
                "needs"
                    if !job
                        .needs
                        .iter()
                        .any(|(n, _)| n.eq_ignore_ascii_case(&r.name)) =>
                {
                    Some(format!(
                        "needs.{} is not a job this job needs (needs: {}); it is always null here",
                        r.name,
                        if job.needs.is_empty() {
                            "none".to_string()
                        } else {
                            job.needs
                                .iter()
                                .map(|(n, _)| n.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ))
                }
                "steps" => {
                    // Steps before this one (or all steps, for job outputs) may be named.
                    let before = rest
                        .strip_prefix(".steps[")
                        .and_then(|s| s.split_once(']'))
                        .and_then(|(i, _)| i.parse::<usize>().ok())
                        .unwrap_or(usize::MAX);
                    let known = job
                        .steps
                        .iter()
                        .filter(|s| s.index < before)
                        .filter_map(|s| s.id.as_deref())
                        .any(|id| id.eq_ignore_ascii_case(&r.name));
                    (!known && !job.steps.is_empty()).then(|| {
                        format!(
                            "steps.{} does not name an earlier step of this job; it is always null here",
                            r.name
                        )
                    })
                }
                _ => None,
            };
            if let Some(m) = message {
                self.report(r.pos, Severity::Warning, &r.path, m);
            }
        }
        self.refs = keep;
    }

    fn expr_error(&mut self, path: &str, value: &str, column: usize, message: &str) {
        let pos = self.pos_in_scalar(path, value, column.saturating_sub(1));
        self.report(pos, Severity::Error, path, message);
    }

    /// A mapping; reports unknown keys (each at its own position) and a wrong type.
    fn mapping<'v>(
        &mut self,
        path: &str,
        v: &'v Json,
        allowed: &[&str],
        what: &str,
    ) -> Option<&'v Map<String, Json>> {
        let Json::Object(map) = v else {
            self.error(
                path,
                format!("expected a mapping ({what}), found {}", kind(v)),
            );
            return None;
        };
        if !allowed.is_empty() {
            for key in map.keys() {
                if !allowed.contains(&key.as_str()) {
                    self.key_error(
                        &child_path(path, key),
                        format!(
                            "unknown key '{key}' in {what}; expected one of: {}",
                            allowed.join(", ")
                        ),
                    );
                }
            }
        }
        Some(map)
    }

    /// A scalar read as text (YAML numbers and booleans become their text, as GitHub does).
    fn text(&mut self, path: &str, v: &Json) -> Option<String> {
        match v {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            Json::Bool(b) => Some(b.to_string()),
            Json::Null => Some(String::new()),
            _ => {
                self.error(path, format!("expected a string, found {}", kind(v)));
                None
            }
        }
    }

    /// A string that may contain `${{ }}`, checked against `scope`.
    fn string(&mut self, path: &str, v: &Json, scope: &Scope) -> Option<Str> {
        let raw = self.text(path, v)?;
        self.template(path, &raw, scope)
    }

    fn template(&mut self, path: &str, raw: &str, scope: &Scope) -> Option<Str> {
        let pos = self.pos(path);
        match Template::parse(raw, scope) {
            Ok(template) => {
                for (e, col) in template.expressions() {
                    self.record_refs(path, raw, e, col);
                }
                Some(Str {
                    raw: raw.to_string(),
                    template,
                    pos,
                })
            }
            Err(e) => {
                self.expr_error(path, raw, e.column, &e.message);
                None
            }
        }
    }

    /// Checks every string inside a structured value (a matrix, `with:` of a reusable call).
    fn check_strings(&mut self, path: &str, v: &Json, scope: &Scope) {
        match v {
            Json::String(s) => {
                self.template(path, s, scope);
            }
            Json::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_strings(&index_path(path, i), item, scope);
                }
            }
            Json::Object(map) => {
                for (k, item) in map {
                    let at = child_path(path, k);
                    // A key may be an expression too (evaluated in a matrix), or `${{ insert }}`.
                    if shipway_expr::has_expression(k) && !crate::matrix::is_insert(k) {
                        self.template(&at, k, scope);
                    }
                    self.check_strings(&at, item, scope);
                }
            }
            _ => {}
        }
    }

    /// A string or a sequence of strings (`branches: main` or `branches: [main, dev]`).
    fn strings(&mut self, path: &str, v: &Json) -> Option<Vec<String>> {
        match v {
            Json::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = self.text(&index_path(path, i), item) {
                        out.push(s);
                    }
                }
                Some(out)
            }
            Json::Object(_) => {
                self.error(
                    path,
                    "expected a string or a sequence of strings, found a mapping",
                );
                None
            }
            other => self.text(path, other).map(|s| vec![s]),
        }
    }

    fn condition(&mut self, path: &str, v: &Json, scope: &Scope) -> Option<If> {
        let raw = self.text(path, v)?;
        let pos = self.pos(path);
        match Condition::parse(&raw, scope) {
            Ok(condition) => {
                match &condition {
                    Condition::Expr(e, col) => self.record_refs(path, &raw, e, *col),
                    Condition::Template(t) => {
                        for (e, col) in t.expressions() {
                            self.record_refs(path, &raw, e, col);
                        }
                    }
                }
                if matches!(condition, Condition::Template(_)) {
                    self.warning(
                        path,
                        "text outside ${{ }} makes this condition a non-empty string, which is always true; put the whole condition inside ${{ }} or leave ${{ }} out",
                    );
                }
                Some(If {
                    raw,
                    condition,
                    pos,
                })
            }
            Err(e) => {
                self.expr_error(path, &raw, e.column, &e.message);
                None
            }
        }
    }

    /// A literal of the expected JSON kind (`want` checks it), or a string with an expression.
    fn dynamic(
        &mut self,
        path: &str,
        v: &Json,
        scope: &Scope,
        want: fn(&Json) -> bool,
        what: &str,
    ) -> Option<Dyn> {
        if let Json::String(s) = v
            && shipway_expr::has_expression(s)
        {
            return self.template(path, s, scope).map(Dyn::Expr);
        }
        if want(v) {
            return Some(Dyn::Value(v.clone()));
        }
        self.error(path, format!("expected {what}, found {}", kind(v)));
        None
    }

    fn pairs(&mut self, path: &str, v: &Json, scope: &Scope, what: &str) -> Pairs {
        let mut out = Pairs::new();
        if let Json::String(s) = v
            && shipway_expr::has_expression(s)
        {
            // `env: ${{ fromJSON(...) }}` is valid for GitHub but cannot be planned statically.
            self.unsupported(
                path,
                format!("{what} given as one expression is not supported; list the variables"),
            );
            return out;
        }
        let Some(map) = self.mapping(path, v, &[], what) else {
            return out;
        };
        for (k, item) in map {
            let p = child_path(path, k);
            if let Some(s) = self.string(&p, item, scope) {
                out.insert(k.clone(), s);
            }
        }
        out
    }

    fn defaults(&mut self, path: &str, v: &Json, scope: &Scope) -> RunDefaults {
        let mut d = RunDefaults::default();
        let Some(map) = self.mapping(path, v, &["run"], "defaults") else {
            return d;
        };
        if let Some(run) = map.get("run") {
            let rp = child_path(path, "run");
            if let Some(run_map) =
                self.mapping(&rp, run, &["shell", "working-directory"], "defaults.run")
            {
                if let Some(s) = run_map.get("shell") {
                    d.shell = self.string(&child_path(&rp, "shell"), s, scope);
                }
                if let Some(w) = run_map.get("working-directory") {
                    d.working_directory =
                        self.string(&child_path(&rp, "working-directory"), w, scope);
                }
            }
        }
        d
    }

    fn concurrency(&mut self, path: &str, v: &Json, scope: &Scope) -> Option<Concurrency> {
        match v {
            Json::Object(_) => {
                let map = self.mapping(path, v, &["group", "cancel-in-progress"], "concurrency")?;
                let group = match map.get("group") {
                    Some(g) => self.string(&child_path(path, "group"), g, scope)?,
                    None => {
                        self.error(path, "concurrency needs a `group`");
                        return None;
                    }
                };
                let cancel_in_progress = map.get("cancel-in-progress").and_then(|c| {
                    self.dynamic(
                        &child_path(path, "cancel-in-progress"),
                        c,
                        scope,
                        Json::is_boolean,
                        "a boolean",
                    )
                });
                Some(Concurrency {
                    group,
                    cancel_in_progress,
                })
            }
            other => Some(Concurrency {
                group: self.string(path, other, scope)?,
                cancel_in_progress: None,
            }),
        }
    }

    fn workflow(&mut self) -> Option<Workflow> {
        let root = &self.doc.value;
        let map = self.mapping("", root, WORKFLOW_KEYS, "a workflow")?;
        let mut w = Workflow {
            file: self.file.to_string(),
            ..Workflow::default()
        };
        if let Some(n) = map.get("name") {
            w.name = self.text("name", n);
        }
        if let Some(n) = map.get("run-name") {
            w.run_name = self.string("run-name", n, &scopes::RUN_NAME);
        }
        match map.get("on") {
            Some(on) => w.on = self.triggers(on),
            None => self.error("", "a workflow needs `on`: the events that start it"),
        }
        if let Some(env) = map.get("env") {
            w.env = self.pairs("env", env, &scopes::WORKFLOW_ENV, "env");
        }
        if let Some(d) = map.get("defaults") {
            w.defaults = self.defaults("defaults", d, &scopes::WORKFLOW_DEFAULTS);
        }
        if let Some(c) = map.get("concurrency") {
            w.concurrency = self.concurrency("concurrency", c, &scopes::WORKFLOW_CONCURRENCY);
        }
        if let Some(p) = map.get("permissions") {
            self.permissions("permissions", p);
        }
        match map.get("jobs") {
            Some(jobs) => {
                if let Some(jobs_map) = self.mapping("jobs", jobs, &[], "jobs") {
                    if jobs_map.is_empty() {
                        self.error("jobs", "a workflow needs at least one job");
                    }
                    for (id, job) in jobs_map {
                        if let Some(j) = self.job(id, job) {
                            w.jobs.insert(id.clone(), j);
                        }
                    }
                }
            }
            None => self.error("", "a workflow needs `jobs`"),
        }
        crate::graph::check(&w, self.file, &mut self.problems);
        Some(w)
    }

    fn permissions(&mut self, path: &str, v: &Json) {
        // Accepted and not enforced: there is no token to scope locally.
        match v {
            Json::String(s) if ["read-all", "write-all"].contains(&s.as_str()) => {}
            Json::Object(map) => {
                for (k, level) in map {
                    let p = child_path(path, k);
                    match level.as_str() {
                        Some("read" | "write" | "none") => {}
                        _ => self.error(&p, "expected read, write or none"),
                    }
                }
            }
            _ => self.error(path, "expected read-all, write-all or a mapping of scopes"),
        }
    }

    fn triggers(&mut self, v: &Json) -> Triggers {
        let mut t = Triggers::default();
        match v {
            Json::String(s) => {
                if self.known_event("on", s) {
                    t.events.insert(s.clone(), Event::default());
                }
            }
            Json::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = index_path("on", i);
                    if let Some(s) = self.text(&p, item)
                        && self.known_event(&p, &s)
                    {
                        t.events.insert(s, Event::default());
                    }
                }
            }
            Json::Object(map) => {
                for (name, config) in map {
                    let p = child_path("on", name);
                    if !EVENTS.contains(&name.as_str()) {
                        self.key_error(&p, format!("unknown event '{name}'"));
                        continue;
                    }
                    let e = self.event(&p, name, config);
                    t.events.insert(name.clone(), e);
                }
            }
            other => self.error(
                "on",
                format!(
                    "expected an event, a list of events or a mapping, found {}",
                    kind(other)
                ),
            ),
        }
        t
    }

    fn known_event(&mut self, path: &str, name: &str) -> bool {
        if EVENTS.contains(&name) {
            return true;
        }
        self.error(path, format!("unknown event '{name}'"));
        false
    }

    fn event(&mut self, path: &str, name: &str, v: &Json) -> Event {
        let mut e = Event::default();
        if v.is_null() {
            return e;
        }
        if name == "schedule" {
            let Json::Array(items) = v else {
                self.error(path, "expected a sequence of `- cron: ...` entries");
                return e;
            };
            for (i, item) in items.iter().enumerate() {
                let p = index_path(path, i);
                if let Some(m) = self.mapping(&p, item, &["cron", "timezone"], "a schedule")
                    && let Some(c) = m.get("cron")
                {
                    // Lines fire in UTC; another zone would fire at the wrong hour, silently.
                    let tp = child_path(&p, "timezone");
                    if let Some(tz) = m.get("timezone").and_then(|t| self.text(&tp, t))
                        && !matches!(tz.as_str(), "UTC" | "Etc/UTC" | "Etc/GMT" | "GMT")
                    {
                        self.unsupported(
                            &tp,
                            format!(
                                "time zone '{tz}': Shipway fires cron lines in UTC; write the line in UTC and leave timezone out"
                            ),
                        );
                    }
                    let cp = child_path(&p, "cron");
                    if let Some(cron) = self.text(&cp, c) {
                        if let Err(why) = crate::trigger::check_cron(&cron) {
                            self.error(&cp, why);
                        }
                        e.crons.push(cron);
                    }
                }
            }
            return e;
        }
        let allowed: &[&str] = match name {
            "push" => &[
                "branches",
                "branches-ignore",
                "tags",
                "tags-ignore",
                "paths",
                "paths-ignore",
            ],
            "pull_request" | "pull_request_target" => &[
                "types",
                "branches",
                "branches-ignore",
                "paths",
                "paths-ignore",
            ],
            "workflow_run" => &["types", "workflows", "branches", "branches-ignore"],
            "workflow_dispatch" => &["inputs"],
            "workflow_call" => &["inputs", "outputs", "secrets"],
            _ => &["types"],
        };
        let Some(map) = self.mapping(path, v, allowed, &format!("the `{name}` event")) else {
            return e;
        };
        let filter = |r: &mut Self, key: &str| {
            map.get(key)
                .and_then(|f| r.strings(&child_path(path, key), f))
        };
        e.branches = filter(self, "branches");
        e.branches_ignore = filter(self, "branches-ignore");
        e.tags = filter(self, "tags");
        e.tags_ignore = filter(self, "tags-ignore");
        e.paths = filter(self, "paths");
        e.paths_ignore = filter(self, "paths-ignore");
        e.types = filter(self, "types").unwrap_or_default();
        for (a, b) in [
            ("branches", "branches-ignore"),
            ("tags", "tags-ignore"),
            ("paths", "paths-ignore"),
        ] {
            if map.contains_key(a) && map.contains_key(b) {
                self.key_error(
                    &child_path(path, b),
                    format!("`{a}` and `{b}` cannot both be used for one event; use `{a}` with `!` patterns"),
                );
            }
        }
        if let Some(inputs) = map.get("inputs") {
            e.inputs = self.inputs(&child_path(path, "inputs"), inputs, name == "workflow_call");
        }
        if let Some(outputs) = map.get("outputs") {
            let op = child_path(path, "outputs");
            if let Some(m) = self.mapping(&op, outputs, &[], "workflow_call outputs") {
                for (k, o) in m {
                    let p = child_path(&op, k);
                    if let Some(om) = self.mapping(&p, o, &["description", "value"], "an output") {
                        match om.get("value") {
                            Some(val) => {
                                if let Some(s) =
                                    self.string(&child_path(&p, "value"), val, &scopes::CALL_OUTPUT)
                                {
                                    e.outputs.insert(k.clone(), s);
                                }
                            }
                            None => self.error(&p, "a workflow_call output needs `value`"),
                        }
                    }
                }
            }
        }
        if let Some(secrets) = map.get("secrets") {
            let sp = child_path(path, "secrets");
            if let Some(m) = self.mapping(&sp, secrets, &[], "workflow_call secrets") {
                for (k, s) in m {
                    let p = child_path(&sp, k);
                    let required = if s.is_null() {
                        false
                    } else {
                        self.mapping(&p, s, &["description", "required"], "a secret")
                            .and_then(|sm| sm.get("required"))
                            .and_then(Json::as_bool)
                            .unwrap_or(false)
                    };
                    e.secrets.insert(k.clone(), required);
                }
            }
        }
        e
    }

    fn inputs(&mut self, path: &str, v: &Json, call: bool) -> IndexMap<String, Input> {
        let mut out = IndexMap::new();
        let Some(map) = self.mapping(path, v, &[], "inputs") else {
            return out;
        };
        let allowed: &[&str] = if call {
            &["description", "required", "default", "type"]
        } else {
            &[
                "description",
                "required",
                "default",
                "type",
                "options",
                "deprecationMessage",
            ]
        };
        for (name, spec) in map {
            let p = child_path(path, name);
            let mut input = Input {
                pos: self.key_pos(&p),
                description: None,
                required: false,
                default: None,
                kind: InputKind::String,
                options: Vec::new(),
            };
            if spec.is_null() {
                out.insert(name.clone(), input);
                continue;
            }
            let Some(m) = self.mapping(&p, spec, allowed, "an input") else {
                continue;
            };
            input.description = m
                .get("description")
                .and_then(|d| d.as_str())
                .map(str::to_string);
            if let Some(r) = m.get("required") {
                match r {
                    Json::Bool(b) => input.required = *b,
                    _ => self.error(&child_path(&p, "required"), "expected true or false"),
                }
            }
            match m.get("type").map(|t| (t, t.as_str())) {
                None if call => self.error(
                    &p,
                    "a workflow_call input needs `type`: string, boolean or number",
                ),
                None => {}
                Some((_, Some("string"))) => input.kind = InputKind::String,
                Some((_, Some("boolean"))) => input.kind = InputKind::Boolean,
                Some((_, Some("number"))) => input.kind = InputKind::Number,
                Some((_, Some("choice"))) if !call => input.kind = InputKind::Choice,
                Some((_, Some("environment"))) if !call => input.kind = InputKind::Environment,
                Some(_) => self.error(
                    &child_path(&p, "type"),
                    if call {
                        "expected string, boolean or number"
                    } else {
                        "expected string, boolean, number, choice or environment"
                    },
                ),
            }
            if let Some(o) = m.get("options") {
                input.options = self
                    .strings(&child_path(&p, "options"), o)
                    .unwrap_or_default();
            }
            if input.kind == InputKind::Choice && input.options.is_empty() {
                self.error(&p, "a choice input needs `options`");
            }
            if let Some(d) = m.get("default") {
                let dp = child_path(&p, "default");
                if let Json::String(s) = d {
                    self.template(&dp, s, &scopes::INPUT_DEFAULT);
                }
                if input.kind == InputKind::Choice
                    && let Some(s) = d.as_str()
                    && !input.options.iter().any(|o| o == s)
                {
                    self.error(&dp, format!("default '{s}' is not one of the options"));
                }
                input.default = Some(d.clone());
            }
            out.insert(name.clone(), input);
        }
        out
    }

    fn job(&mut self, id: &str, v: &Json) -> Option<Job> {
        let path = child_path("jobs", id);
        let valid_id = id.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_id {
            self.key_error(
                &path,
                format!("job id '{id}' must start with a letter or '_' and contain only letters, digits, '-' and '_'"),
            );
        }
        let is_call = v.get("uses").is_some();
        let allowed = if is_call { CALL_JOB_KEYS } else { JOB_KEYS };
        let map = self.mapping(
            &path,
            v,
            allowed,
            if is_call {
                "a job that calls a reusable workflow"
            } else {
                "a job"
            },
        )?;
        let p = |k: &str| child_path(&path, k);
        let mut job = Job {
            id: id.to_string(),
            pos: self.key_pos(&path),
            name: None,
            needs: Vec::new(),
            condition: None,
            runs_on: None,
            environment: None,
            concurrency: None,
            outputs: Pairs::new(),
            env: Pairs::new(),
            defaults: RunDefaults::default(),
            timeout_minutes: None,
            continue_on_error: None,
            strategy: None,
            steps: Vec::new(),
            uses: None,
            container: false,
            services: false,
        };
        if let Some(n) = map.get("name") {
            job.name = self.string(&p("name"), n, &scopes::JOB_NAME);
        }
        if let Some(needs) = map.get("needs") {
            let np = p("needs");
            match needs {
                Json::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let ip = index_path(&np, i);
                        if let Some(s) = self.text(&ip, item) {
                            job.needs.push((s, self.pos(&ip)));
                        }
                    }
                }
                other => {
                    if let Some(s) = self.text(&np, other) {
                        job.needs.push((s, self.pos(&np)));
                    }
                }
            }
        }
        if let Some(c) = map.get("if") {
            job.condition = self.condition(&p("if"), c, &scopes::JOB_IF);
        }
        if let Some(s) = map.get("strategy") {
            job.strategy = self.strategy(&p("strategy"), s);
        }
        if let Some(c) = map.get("concurrency") {
            job.concurrency = self.concurrency(&p("concurrency"), c, &scopes::JOB_CONCURRENCY);
        }
        if let Some(perm) = map.get("permissions") {
            self.permissions(&p("permissions"), perm);
        }
        if is_call {
            job.uses = self.reusable_call(&path, map);
            self.check_refs(&path, &job);
            return Some(job);
        }
        match map.get("runs-on") {
            Some(r) => {
                self.check_strings(&p("runs-on"), r, &scopes::JOB_RUNS_ON);
                job.runs_on = Some(r.clone());
            }
            None => self.key_error(&path, "a job needs `runs-on` (Shipway runs every job on this machine, but GitHub requires it)"),
        }
        if let Some(e) = map.get("environment") {
            let ep = p("environment");
            match e {
                Json::Object(_) => {
                    if let Some(em) =
                        self.mapping(&ep, e, &["name", "url", "deployment"], "an environment")
                    {
                        if let Some(n) = em.get("name") {
                            job.environment =
                                self.string(&child_path(&ep, "name"), n, &scopes::JOB_ENVIRONMENT);
                        }
                        if let Some(u) = em.get("url") {
                            self.string(&child_path(&ep, "url"), u, &scopes::JOB_ENVIRONMENT_URL);
                        }
                    }
                }
                other => job.environment = self.string(&ep, other, &scopes::JOB_ENVIRONMENT),
            }
        }
        if let Some(o) = map.get("outputs") {
            job.outputs = self.pairs(&p("outputs"), o, &scopes::JOB_OUTPUTS, "outputs");
        }
        if let Some(e) = map.get("env") {
            job.env = self.pairs(&p("env"), e, &scopes::JOB_ENV, "env");
        }
        if let Some(d) = map.get("defaults") {
            job.defaults = self.defaults(&p("defaults"), d, &scopes::JOB_DEFAULTS);
        }
        if let Some(t) = map.get("timeout-minutes") {
            job.timeout_minutes = self.dynamic(
                &p("timeout-minutes"),
                t,
                &scopes::JOB_TIMEOUT,
                Json::is_number,
                "a number of minutes",
            );
        }
        if let Some(c) = map.get("continue-on-error") {
            job.continue_on_error = self.dynamic(
                &p("continue-on-error"),
                c,
                &scopes::JOB_TIMEOUT,
                Json::is_boolean,
                "a boolean",
            );
        }
        if let Some(c) = map.get("container") {
            self.container_spec(&p("container"), c);
            job.container = true;
            self.unsupported_key(
                &p("container"),
                "`container:` needs a container engine, which Shipway's local runner does not use",
            );
        }
        if let Some(s) = map.get("services") {
            if let Some(services) = self.mapping(&p("services"), s, &[], "services") {
                for (name, spec) in services {
                    self.container_spec(&child_path(&p("services"), name), spec);
                }
            }
            job.services = true;
            self.unsupported_key(
                &p("services"),
                "`services:` needs a container engine, which Shipway's local runner does not use",
            );
        }
        match map.get("steps") {
            Some(Json::Array(items)) => {
                if items.is_empty() {
                    self.error(&p("steps"), "a job needs at least one step");
                }
                let mut ids: Vec<(String, String)> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(step) = self.step(&index_path(&p("steps"), i), i, item) {
                        if let Some(sid) = &step.id {
                            let sp = child_path(&index_path(&p("steps"), i), "id");
                            if let Some((_, first)) =
                                ids.iter().find(|(x, _)| x.eq_ignore_ascii_case(sid))
                            {
                                let first = first.clone();
                                self.error(
                                    &sp,
                                    format!("step id '{sid}' is already used by {first}"),
                                );
                            } else {
                                ids.push((sid.clone(), index_path(&p("steps"), i)));
                            }
                        }
                        job.steps.push(step);
                    }
                }
            }
            Some(other) => self.error(
                &p("steps"),
                format!("expected a sequence of steps, found {}", kind(other)),
            ),
            None => self.key_error(
                &path,
                "a job needs `steps` (or `uses` to call a reusable workflow)",
            ),
        }
        self.check_refs(&path, &job);
        Some(job)
    }

    /// A `container:` or service: an image name, or a mapping with GitHub's container keys.
    /// Checked even though it cannot run here, so the file's other problems are all found.
    fn container_spec(&mut self, path: &str, v: &Json) {
        if let Json::String(_) = v {
            self.check_strings(path, v, &scopes::JOB_RUNS_ON);
            return;
        }
        let Some(map) = self.mapping(
            path,
            v,
            &["image", "credentials", "env", "ports", "volumes", "options"],
            "a container",
        ) else {
            return;
        };
        for (k, item) in map {
            let ip = child_path(path, k);
            match (k.as_str(), item) {
                ("env", _) => {
                    self.pairs(&ip, item, &scopes::JOB_RUNS_ON, "env");
                }
                ("credentials", _) => {
                    if let Some(c) =
                        self.mapping(&ip, item, &["username", "password"], "credentials")
                    {
                        for (ck, cv) in c {
                            self.string(&child_path(&ip, ck), cv, &scopes::JOB_SECRETS);
                        }
                    }
                }
                ("ports" | "volumes", Json::Array(_)) => {
                    self.check_strings(&ip, item, &scopes::JOB_RUNS_ON)
                }
                ("ports" | "volumes", other) => {
                    self.error(&ip, format!("expected a sequence, found {}", kind(other)));
                }
                (_, Json::Object(_) | Json::Array(_)) => {
                    self.error(&ip, format!("expected a string, found {}", kind(item)));
                }
                _ => self.check_strings(&ip, item, &scopes::JOB_RUNS_ON),
            }
        }
    }

    fn strategy(&mut self, path: &str, v: &Json) -> Option<Strategy> {
        let map = self.mapping(
            path,
            v,
            &["matrix", "fail-fast", "max-parallel"],
            "a strategy",
        )?;
        let mut s = Strategy {
            matrix: None,
            matrix_pos: self.pos(path),
            fail_fast: None,
            max_parallel: None,
        };
        if let Some(m) = map.get("matrix") {
            let mp = child_path(path, "matrix");
            s.matrix_pos = self.pos(&mp);
            self.check_strings(&mp, m, &scopes::STRATEGY);
            match m {
                Json::String(text) if shipway_expr::has_expression(text) => {}
                Json::Object(axes) => {
                    let before = self.problems.len();
                    if axes.is_empty() {
                        self.error(
                            &mp,
                            "a matrix needs at least one axis, `include` or an expression",
                        );
                    }
                    for (k, axis) in axes {
                        let ap = child_path(&mp, k);
                        match (k.as_str(), axis) {
                            (_, Json::String(t)) if shipway_expr::has_expression(t) => {}
                            ("include" | "exclude", Json::Array(items)) => {
                                for (i, item) in items.iter().enumerate() {
                                    let ip = index_path(&ap, i);
                                    let dynamic = matches!(item, Json::String(t) if shipway_expr::has_expression(t));
                                    if !item.is_object() && !dynamic {
                                        self.error(
                                            &ip,
                                            format!(
                                                "expected a mapping of matrix values, found {}",
                                                kind(item)
                                            ),
                                        );
                                    }
                                }
                            }
                            ("include" | "exclude", other) => {
                                self.error(
                                    &ap,
                                    format!(
                                        "expected a sequence of mappings, found {}",
                                        kind(other)
                                    ),
                                );
                            }
                            (_, Json::Array(items)) => {
                                if items.is_empty() {
                                    self.error(&ap, "a matrix axis needs at least one value");
                                }
                            }
                            (_, other) => {
                                self.error(&ap, format!("expected a sequence of values for matrix axis '{k}', found {}", kind(other)));
                            }
                        }
                    }
                    if self.problems.len() == before {
                        crate::matrix::check_static(
                            m,
                            &mp,
                            self.file,
                            self.doc,
                            &mut self.problems,
                        );
                    }
                }
                other => self.error(
                    &mp,
                    format!("expected a mapping or an expression, found {}", kind(other)),
                ),
            }
            s.matrix = Some(m.clone());
        }
        if let Some(f) = map.get("fail-fast") {
            s.fail_fast = self.dynamic(
                &child_path(path, "fail-fast"),
                f,
                &scopes::STRATEGY,
                Json::is_boolean,
                "a boolean",
            );
        }
        if let Some(m) = map.get("max-parallel") {
            s.max_parallel = self.dynamic(
                &child_path(path, "max-parallel"),
                m,
                &scopes::STRATEGY,
                Json::is_number,
                "a number",
            );
        }
        Some(s)
    }

    fn reusable_call(&mut self, path: &str, map: &Map<String, Json>) -> Option<ReusableCall> {
        let up = child_path(path, "uses");
        let target = self.text(&up, map.get("uses")?)?;
        let pos = self.pos(&up);
        let mut call = ReusableCall {
            path: String::new(),
            pos,
            with: IndexMap::new(),
            secrets: CallSecrets::None,
        };
        if let Some(w) = map.get("with") {
            let wp = child_path(path, "with");
            if let Some(m) = self.mapping(&wp, w, &[], "with") {
                for (k, item) in m {
                    let ip = child_path(&wp, k);
                    if matches!(item, Json::Object(_) | Json::Array(_)) {
                        self.error(
                            &ip,
                            format!("expected a string, number or boolean, found {}", kind(item)),
                        );
                        continue;
                    }
                    if let Some(d) = self.dynamic(&ip, item, &scopes::JOB_WITH, |_| true, "a value")
                    {
                        call.with.insert(k.clone(), d);
                    }
                }
            }
        }
        if let Some(s) = map.get("secrets") {
            let sp = child_path(path, "secrets");
            call.secrets = match s {
                Json::String(x) if x == "inherit" => CallSecrets::Inherit,
                other => CallSecrets::Map(self.pairs(&sp, other, &scopes::JOB_SECRETS, "secrets")),
            };
        }
        if target.starts_with("$/") {
            self.unsupported(
                &up,
                format!(
                    "'{target}': self-repository reusable workflow syntax ('$/') is not supported"
                ),
            );
            return None;
        }
        if let Some(local) = target.strip_prefix("./") {
            if !(local.starts_with(".github/workflows/")
                && (local.ends_with(".yml") || local.ends_with(".yaml")))
            {
                self.error(
                    &up,
                    format!(
                        "'{target}': a local reusable workflow must be ./.github/workflows/NAME.yml"
                    ),
                );
                return None;
            }
            call.path = local.to_string();
            return Some(call);
        }
        if shipway_expr::has_expression(&target) {
            self.error(
                &up,
                "a reusable workflow reference cannot contain expressions",
            );
            return None;
        }
        if target.contains('@') && target.contains("/.github/workflows/") {
            self.unsupported(&up, format!("'{target}': reusable workflows from other repositories are not supported; only ./.github/workflows/NAME.yml"));
        } else {
            self.error(&up, format!("'{target}': expected ./.github/workflows/NAME.yml or OWNER/REPO/.github/workflows/NAME.yml@REF"));
        }
        None
    }

    fn step(&mut self, path: &str, index: usize, v: &Json) -> Option<Step> {
        let (run, uses) = (v.get("run"), v.get("uses"));
        // With both `run` and `uses`, one clear message below beats unknown-key noise.
        let both: Vec<&str> = RUN_STEP_KEYS
            .iter()
            .chain(USES_STEP_KEYS)
            .copied()
            .collect();
        let allowed: &[&str] = match (run, uses) {
            (Some(_), Some(_)) => &both,
            (_, Some(_)) => USES_STEP_KEYS,
            _ => RUN_STEP_KEYS,
        };
        let map = self.mapping(
            path,
            v,
            allowed,
            if uses.is_some() {
                "a `uses` step"
            } else {
                "a `run` step"
            },
        )?;
        let p = |k: &str| child_path(path, k);
        let action = match (run, uses) {
            (Some(_), Some(_)) => {
                self.error(path, "a step has either `run` or `uses`, not both");
                return None;
            }
            (None, None) => {
                self.error(path, "a step needs `run` or `uses`");
                return None;
            }
            (Some(r), None) => Action::Run(self.string(&p("run"), r, &scopes::STEP)?),
            (None, Some(u)) => Action::Uses(self.uses(&p("uses"), u)?),
        };
        let mut step = Step {
            index,
            pos: self.pos(path),
            id: None,
            name: None,
            condition: None,
            action,
            shell: None,
            working_directory: None,
            env: Pairs::new(),
            with: Pairs::new(),
            continue_on_error: None,
            timeout_minutes: None,
        };
        if let Some(id) = map.get("id") {
            let ip = p("id");
            if let Some(s) = self.text(&ip, id) {
                if shipway_expr::has_expression(&s) {
                    self.error(&ip, "a step id cannot contain expressions");
                } else if !(s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                {
                    self.error(&ip, format!("step id '{s}' must start with a letter or '_' and contain only letters, digits, '-' and '_'"));
                } else {
                    step.id = Some(s);
                }
            }
        }
        if let Some(n) = map.get("name") {
            step.name = self.string(&p("name"), n, &scopes::STEP);
        }
        if let Some(c) = map.get("if") {
            step.condition = self.condition(&p("if"), c, &scopes::STEP_IF);
        }
        if let Some(s) = map.get("shell") {
            step.shell = self.string(&p("shell"), s, &scopes::STEP);
        }
        if let Some(w) = map.get("working-directory") {
            step.working_directory = self.string(&p("working-directory"), w, &scopes::STEP);
        }
        if let Some(e) = map.get("env") {
            step.env = self.pairs(&p("env"), e, &scopes::STEP, "env");
        }
        if let Some(w) = map.get("with") {
            step.with = self.pairs(&p("with"), w, &scopes::STEP, "with");
        }
        if let Some(c) = map.get("continue-on-error") {
            step.continue_on_error = self.dynamic(
                &p("continue-on-error"),
                c,
                &scopes::STEP,
                Json::is_boolean,
                "a boolean",
            );
        }
        if let Some(t) = map.get("timeout-minutes") {
            step.timeout_minutes = self.dynamic(
                &p("timeout-minutes"),
                t,
                &scopes::STEP,
                Json::is_number,
                "a number of minutes",
            );
        }
        Some(step)
    }

    fn uses(&mut self, path: &str, v: &Json) -> Option<Uses> {
        let target = self.text(path, v)?;
        if shipway_expr::has_expression(&target) {
            self.error(
                path,
                format!("'{target}': `uses` cannot contain expressions"),
            );
            return None;
        }
        if let Some(local) = target.strip_prefix("./") {
            return Some(Uses::Local(local.trim_end_matches('/').to_string()));
        }
        if target.starts_with("docker://") {
            self.unsupported(path, format!("'{target}': Docker container actions need a container engine, which Shipway's local runner does not use"));
            return Some(Uses::Unsupported(target));
        }
        let Some((name, git_ref)) = target.split_once('@') else {
            self.error(path, format!("'{target}': expected OWNER/REPO@REF, OWNER/REPO/PATH@REF, ./PATH or docker://IMAGE"));
            return None;
        };
        if git_ref.is_empty() || name.split('/').count() < 2 || name.split('/').any(str::is_empty) {
            self.error(
                path,
                format!("'{target}': expected OWNER/REPO@REF or OWNER/REPO/PATH@REF"),
            );
            return None;
        }
        let builtin = match name.to_ascii_lowercase().as_str() {
            "actions/checkout" => Some(Uses::Checkout),
            "actions/cache" => Some(Uses::Cache),
            "actions/cache/restore" => Some(Uses::CacheRestore),
            "actions/cache/save" => Some(Uses::CacheSave),
            "actions/upload-artifact" => Some(Uses::UploadArtifact),
            "actions/download-artifact" => Some(Uses::DownloadArtifact),
            n => n
                .strip_prefix("shipway/")
                .filter(|a| crate::exec::ACTIONS.contains(a))
                .map(|a| Uses::Platform(a.to_string())),
        };
        if builtin.is_some() {
            return builtin;
        }
        self.unsupported(
            path,
            format!("'{target}': action '{name}' is not built in; Shipway runs actions/checkout, actions/cache, actions/upload-artifact, actions/download-artifact, shipway/image, shipway/promote and local actions (--allow-unsupported-actions skips it with a warning)"),
        );
        Some(Uses::Unsupported(target))
    }

    fn action(&mut self) -> Option<ActionMeta> {
        let map = self.mapping(
            "",
            &self.doc.value,
            &[
                "name",
                "author",
                "description",
                "inputs",
                "outputs",
                "runs",
                "branding",
            ],
            "an action",
        )?;
        let mut a = ActionMeta {
            file: self.file.to_string(),
            name: map.get("name").and_then(Json::as_str).map(str::to_string),
            inputs: IndexMap::new(),
            outputs: Pairs::new(),
            steps: Vec::new(),
        };
        if let Some(inputs) = map.get("inputs")
            && let Some(m) = self.mapping("inputs", inputs, &[], "inputs")
        {
            for (k, spec) in m {
                let p = child_path("inputs", k);
                let Some(sm) = (if spec.is_null() {
                    None
                } else {
                    self.mapping(
                        &p,
                        spec,
                        &["description", "required", "default", "deprecationMessage"],
                        "an input",
                    )
                }) else {
                    a.inputs.insert(k.clone(), (None, false));
                    continue;
                };
                let default = match sm.get("default") {
                    Some(d) => self
                        .string(&child_path(&p, "default"), d, &scopes::ACTION_INPUT_DEFAULT)
                        .map(|s| s.raw),
                    None => None,
                };
                let required = sm.get("required").and_then(Json::as_bool).unwrap_or(false);
                a.inputs.insert(k.clone(), (default, required));
            }
        }
        if let Some(outputs) = map.get("outputs")
            && let Some(m) = self.mapping("outputs", outputs, &[], "outputs")
        {
            for (k, spec) in m {
                let p = child_path("outputs", k);
                if let Some(sm) = self.mapping(&p, spec, &["description", "value"], "an output")
                    && let Some(v) = sm.get("value")
                    && let Some(s) = self.string(&child_path(&p, "value"), v, &scopes::ACTION)
                {
                    a.outputs.insert(k.clone(), s);
                }
            }
        }
        let Some(runs) = map.get("runs") else {
            self.error("", "an action needs `runs`");
            return None;
        };
        let using = runs
            .get("using")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        match using.as_str() {
            "composite" => {
                let rm = self.mapping("runs", runs, &["using", "steps"], "runs")?;
                let Some(Json::Array(items)) = rm.get("steps") else {
                    self.error("runs", "a composite action needs `steps`");
                    return None;
                };
                for (i, item) in items.iter().enumerate() {
                    let sp = index_path("runs.steps", i);
                    if let Some(step) = self.step(&sp, i, item) {
                        if matches!(step.action, Action::Run(_)) && step.shell.is_none() {
                            self.error(&sp, "a `run` step of a composite action needs `shell`");
                        }
                        a.steps.push(step);
                    }
                }
                Some(a)
            }
            u if u.starts_with("node") || u == "docker" => {
                self.unsupported(
                    "runs.using",
                    format!("actions with `using: {u}` are not supported; Shipway runs composite actions (its runner has no {})", if u == "docker" { "container engine" } else { "Node.js action runtime" }),
                );
                None
            }
            other => {
                self.error(
                    "runs.using",
                    format!("unknown action kind '{other}'; expected composite, node20 or docker"),
                );
                None
            }
        }
    }
}
