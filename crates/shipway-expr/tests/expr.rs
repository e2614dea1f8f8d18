//! Data-driven tests of the expression language: each table row is an input and what GitHub gives.

use shipway_expr::{Condition, Function, Host, Map, Scope, Template, Value, contexts, parse};

/// The contexts every row is evaluated against.
fn host() -> Map {
    contexts([
        (
            "github".to_string(),
            serde_json::json!({
                "event_name": "push",
                "ref": "refs/heads/main",
                "event": {
                    "issue": {"labels": [{"name": "bug"}, {"name": "help wanted"}, {"id": 3}]},
                    "commits": [{"message": "a", "files": ["x", "y"]}, {"message": "b", "files": ["z"]}],
                    "number": 42
                }
            }),
        ),
        (
            "env".to_string(),
            serde_json::json!({"NAME": "World", "EMPTY": "", "ZERO": "0", "NUM": "12"}),
        ),
        (
            "matrix".to_string(),
            serde_json::json!({"os": "ubuntu-latest", "node": 20, "flags": {"a": 1, "b": 2}}),
        ),
        (
            "steps".to_string(),
            serde_json::json!({"my-step": {"outputs": {"value": "out"}, "outcome": "success"}}),
        ),
    ])
}

/// Renders a value unambiguously: strings quoted, everything else as toJSON writes it compactly.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        Value::Number(n) => shipway_expr::format_number(*n),
        other => other.to_json().to_string(),
    }
}

fn eval(text: &str) -> String {
    match parse(text, &Scope::ANY) {
        Err(e) => format!("parse error {e}"),
        Ok(expr) => match expr.eval(&host()) {
            Ok(v) => show(&v),
            Err(e) => format!("eval error {e}"),
        },
    }
}

fn check(rows: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (input, want) in rows {
        let got = eval(input);
        if got != *want {
            failures.push(format!("{input:?}: want {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn literals() {
    check(&[
        ("null", "null"),
        ("true", "true"),
        ("false", "false"),
        ("711", "711"),
        ("-9.2", "-9.2"),
        ("0xff", "255"),
        ("-2.99e-2", "-0.0299"),
        ("1e21", "1e+21"),
        ("1.5e-7", "1.5e-7"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("+7", "7"),
        ("0o17", "15"),
        ("-Infinity", "-Infinity"),
        ("0.84551240822557006", "0.84551240822557"),
        ("1.2E+2", "120"),
        ("", "null"),
        ("   ", "null"),
        ("'Mona the Octocat'", "'Mona the Octocat'"),
        ("'It''s open source!'", "'It's open source!'"),
        ("''", "''"),
    ]);
}

#[test]
fn contexts_and_access() {
    check(&[
        ("github.event_name", "'push'"),
        ("GitHub.Event_Name", "'push'"),
        ("github['event_name']", "'push'"),
        ("github.event.number", "42"),
        ("github.nope", "null"),
        ("github.nope.deeper", "null"),
        ("steps.my-step.outputs.value", "'out'"),
        ("github.event.issue.labels[0].name", "'bug'"),
        ("github.event.issue.labels[1]['name']", "'help wanted'"),
        ("github.event.issue.labels['1'].name", "'help wanted'"),
        ("github.event.issue.labels[9]", "null"),
        ("github.event.issue.labels[0.5]", "null"),
        (
            "github.event.issue.labels.*.name",
            r#"["bug","help wanted"]"#,
        ),
        (
            "github.event.issue.labels[*].name",
            r#"["bug","help wanted"]"#,
        ),
        ("github.event.commits.*.files.*", r#"["x","y","z"]"#),
        ("matrix.flags.*", "[1,2]"),
        ("matrix.os.*", "[]"),
        ("env.NAME", "'World'"),
        ("vars.X", "null"),
        ("fromJSON('{\"a\":{\"b\":1}}').a.b", "1"),
    ]);
}

#[test]
fn operators_and_coercion() {
    check(&[
        ("!true", "false"),
        ("!''", "true"),
        ("!!'a'", "true"),
        ("1 == 1", "true"),
        ("'abc' == 'ABC'", "true"),
        ("'straße' == 'STRASSE'", "false"),
        ("'ü' == 'Ü'", "true"),
        ("'ı' == 'I'", "false"),
        ("'i' == 'İ'", "false"),
        ("'ς' == 'Σ'", "true"),
        ("'1' == 1", "true"),
        ("'' == 0", "true"),
        ("null == 0", "true"),
        ("null == ''", "true"),
        ("true == 1", "true"),
        ("'true' == true", "false"),
        ("'0x10' == 16", "true"),
        (" ' 12 ' == 12", "true"),
        ("'abc' == 0", "false"),
        ("NaN == NaN", "false"),
        ("NaN != NaN", "true"),
        ("github.event == github.event", "true"),
        ("fromJSON('[]') == fromJSON('[]')", "false"),
        ("fromJSON('{}') == 0", "false"),
        ("1 < 2", "true"),
        ("'a' < 'B'", "true"),
        ("'b' <= 'B'", "true"),
        ("'10' > 9", "true"),
        ("'abc' > 1", "false"),
        ("'abc' <= 1", "false"),
        ("null >= 0", "true"),
        ("env.NUM > 5", "true"),
        ("1 && 'x'", "'x'"),
        ("0 && 'x'", "0"),
        ("'' || 'default'", "'default'"),
        ("'set' || 'default'", "'set'"),
        ("env.EMPTY || 'fallback'", "'fallback'"),
        ("github.event_name == 'push' && 'yes' || 'no'", "'yes'"),
        ("github.event_name == 'pr' && 'yes' || 'no'", "'no'"),
        ("true || false && false", "true"),
        ("(true || false) && false", "false"),
        ("1 == 1 == true", "true"),
        ("!github.nope && 1", "1"),
    ]);
}

#[test]
fn functions() {
    check(&[
        ("contains('Hello world', 'WORLD')", "true"),
        ("contains(github.event.issue.labels.*.name, 'BUG')", "true"),
        (
            "contains(github.event.issue.labels.*.name, 'nope')",
            "false",
        ),
        ("contains(fromJSON('[1,2]'), '2')", "true"),
        ("contains(12345, 34)", "true"),
        ("contains(null, '')", "true"),
        ("startsWith('Hello world', 'he')", "true"),
        ("startsWith(github.ref, 'refs/tags/')", "false"),
        ("endsWith('Hello world', 'LD')", "true"),
        (
            "format('Hello {0} {1} {2}', 'Mona', 'the', 'Octocat')",
            "'Hello Mona the Octocat'",
        ),
        ("format('{{Hello {0}}}', env.NAME)", "'{Hello World}'"),
        ("format('{0}{0}', 1.5)", "'1.51.5'"),
        (
            "format('{1}', 'a')",
            "eval error column 1: The following format string references more arguments than were supplied: '{1}'",
        ),
        (
            "format('{a}', 'a')",
            "eval error column 1: The following format string is invalid: '{a}'",
        ),
        (
            "format('}', 'a')",
            "eval error column 1: The following format string is invalid: '}'",
        ),
        (
            "join(github.event.issue.labels.*.name, ', ')",
            "'bug, help wanted'",
        ),
        ("join(fromJSON('[1,true,null]'))", "'1,true,'"),
        ("join('abc', '-')", "'abc'"),
        ("join(fromJSON('[\"a\",\"b\"]'), fromJSON('[]'))", "'a,b'"),
        ("join(fromJSON('[[],{}]'), '+')", "'Array+Object'"),
        ("case(false, 'a', 1 == 1, 'b', 'c')", "'b'"),
        ("case(false, 'a', 'default')", "'default'"),
        ("case(true, fromJSON('[1]'), 'd')", "[1]"),
        (
            "case('yes', 'a', 'b')",
            "eval error column 6: case predicate must evaluate to a boolean value",
        ),
        ("case(true, 'ok', fromJSON('{bad'))", "'ok'"),
        ("toJSON(matrix.flags)", "'{\n  \"a\": 1,\n  \"b\": 2\n}'"),
        ("toJson(fromJSON('[]'))", "'[]'"),
        ("toJSON('a\"b')", r#"'"a\"b"'"#),
        ("toJSON(1.0)", "'1'"),
        ("fromJSON('true')", "true"),
        ("fromJson('[1, \"a\"]')[1]", "'a'"),
        (
            "fromJSON('{bad')",
            "eval error column 1: Error parsing fromJson: key must be a string at line 1 column 2",
        ),
        (
            "fromJSON('')",
            "eval error column 1: Empty input to fromJSON",
        ),
        ("success()", "true"),
        ("always()", "true"),
        ("failure()", "false"),
        ("cancelled()", "false"),
        (
            "hashFiles('**/x')",
            "eval error column 1: hashFiles is not available here",
        ),
    ]);
}

#[test]
fn syntax_errors_point_at_the_column() {
    check(&[
        ("-0xFF", "parse error column 1: Unexpected symbol: '-0xFF'"),
        ("0b101", "parse error column 1: Unexpected symbol: '0b101'"),
        (
            "case(true, 1)",
            "parse error column 1: Too few parameters supplied: 'case'",
        ),
        (
            "case(true, 1, false, 2)",
            "parse error column 1: Even number of parameters supplied, requires an odd number of parameters: 'case'",
        ),
        ("1 +", "parse error column 3: Unexpected symbol: '+'"),
        (
            "a == 1",
            "parse error column 1: Unrecognized named-value: 'a'",
        ),
        (
            "github.event_name = 'push'",
            "parse error column 19: Unexpected symbol: '='",
        ),
        (
            "github.event_name == \"push\"",
            "parse error column 22: Unexpected symbol: '\"push\"'",
        ),
        (
            "'abc",
            "parse error column 1: Unexpected symbol: ''abc'. The string is not closed with a quote",
        ),
        (
            "github.",
            "parse error column 7: Unexpected end of expression: '.'",
        ),
        (
            "github.(",
            "parse error column 8: Unexpected symbol: '('. Expected a property name",
        ),
        (
            "foo(1)",
            "parse error column 1: Unrecognized function: 'foo'",
        ),
        (
            "contains('a')",
            "parse error column 1: Too few parameters supplied: 'contains'",
        ),
        (
            "toJSON(1, 2)",
            "parse error column 1: Too many parameters supplied: 'toJSON'",
        ),
        (
            "success(1)",
            "parse error column 1: Too many parameters supplied: 'success'",
        ),
        (
            "(1 == 1",
            "parse error column 7: Unexpected end of expression: '1'",
        ),
        (
            "contains('a' 'b')",
            "parse error column 14: Unexpected symbol: ''b''. Expected ',' or ')'",
        ),
        ("1 2", "parse error column 3: Unexpected symbol: '2'"),
        ("1abc", "parse error column 1: Unexpected symbol: '1abc'"),
        (
            "github.b@r",
            "parse error column 8: Unexpected symbol: 'b@r'",
        ),
        (
            "..github/x.md",
            "parse error column 1: Unexpected symbol: '..github/x.md'",
        ),
        (
            "1 <",
            "parse error column 3: Unexpected end of expression: '<'",
        ),
        (
            "github.event_name == 'x' & true",
            "parse error column 26: Unexpected symbol: '&'",
        ),
        (
            "matrix[",
            "parse error column 7: Unexpected end of expression: '['",
        ),
        (
            "matrix.os)",
            "parse error column 10: Unexpected symbol: ')'",
        ),
    ]);
}

#[test]
fn depth_counts_every_level_of_the_tree_but_not_logical_chains() {
    let nots = format!("{}true", "!".repeat(49));
    assert_eq!(eval(&nots), "false");
    let nots = format!("{}true", "!".repeat(50));
    assert_eq!(
        eval(&nots),
        "parse error column 51: Exceeded max expression depth 50"
    );
    let props = (1..=49).map(|i| format!(".p{i}")).collect::<String>();
    assert_eq!(eval(&format!("github{props}")), "null");
    assert_eq!(
        eval(&format!("github{props}.p50")),
        "parse error column 1: Exceeded max expression depth 50"
    );
    let chain = (1..=80)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" && ");
    assert_eq!(eval(&chain), "80");
}

#[test]
fn evaluation_memory_is_limited() {
    let big = format!("format('{}', '{}')", "{0}".repeat(100), "x".repeat(6000));
    assert_eq!(
        eval(&big),
        "eval error column 1: The maximum allowed memory size was exceeded"
    );
    let fine = format!("format('{}', '{}')", "{0}".repeat(10), "x".repeat(6000));
    assert!(eval(&fine).starts_with("'xxx"));
}

#[test]
fn depth_and_length_limits() {
    let deep = format!("{}1{}", "(".repeat(60), ")".repeat(60));
    assert_eq!(
        eval(&deep),
        "parse error column 51: Exceeded max expression depth 50"
    );
    let nots = "!".repeat(10_000) + "true";
    assert!(eval(&nots).starts_with("parse error"));
    let long = format!("'{}'", "a".repeat(21_000));
    assert_eq!(
        eval(&long),
        "parse error column 1: Exceeded max expression length 21000"
    );
}

#[test]
fn scopes_limit_contexts_and_functions() {
    let scope = Scope {
        contexts: &["github", "inputs"],
        status_functions: false,
        hash_files: false,
    };
    let err = |t: &str| parse(t, &scope).err().map(|e| e.to_string());
    assert_eq!(
        err("matrix.os"),
        Some("column 1: Unrecognized named-value: 'matrix'".into())
    );
    assert_eq!(
        err("1 && always()"),
        Some("column 6: Function 'always' is only available in 'if' conditions".into())
    );
    assert_eq!(
        err("hashFiles('x')"),
        Some("column 1: Function 'hashFiles' is only available in steps".into())
    );
    assert_eq!(err("inputs.x"), None);
}

#[test]
fn templates() {
    let h = host();
    let render = |s: &str| match Template::parse(s, &Scope::ANY) {
        Err(e) => format!("parse error {e}"),
        Ok(t) => match t.eval(&h) {
            Ok(v) => show(&v),
            Err(e) => format!("eval error {e}"),
        },
    };
    assert_eq!(render("plain"), "'plain'");
    assert_eq!(render("Hello ${{ env.NAME }}!"), "'Hello World!'");
    assert_eq!(render("${{ matrix.node }}"), "20");
    assert_eq!(render("v${{ matrix.node }}"), "'v20'");
    assert_eq!(render("${{ fromJSON('[1]') }}"), "[1]");
    assert_eq!(render("${{ '}}' }}"), "'}}'");
    assert_eq!(render("a ${{ 1 }} b ${{ 'c' }}"), "'a 1 b c'");
    assert_eq!(
        render("abc ${{ matrix.os"),
        "parse error column 5: the expression starting here is not closed with '}}'"
    );
    assert_eq!(
        render("abc ${{ nope }}"),
        "parse error column 9: Unrecognized named-value: 'nope'"
    );
    assert_eq!(
        render("ab ${{ format('{9}') }}"),
        "eval error column 8: The following format string references more arguments than were supplied: '{9}'"
    );
}

/// A host whose job has failed: for the status functions and the implicit `success() &&`.
struct Failed(Map);

impl Host for Failed {
    fn context(&self, name: &str) -> Value {
        self.0.context(name)
    }
    fn status(&self, f: Function) -> bool {
        matches!(f, Function::Failure | Function::Always)
    }
}

#[test]
fn conditions() {
    let ok = host();
    let failed = Failed(host());
    let cond = |s: &str, h: &dyn Host| {
        Condition::parse(s, &Scope::ANY)
            .map_err(|e| e.to_string())
            .and_then(|c| c.eval(h).map_err(|e| e.to_string()))
    };
    assert_eq!(cond("github.event_name == 'push'", &ok), Ok(true));
    assert_eq!(cond("${{ github.event_name == 'push' }}", &ok), Ok(true));
    assert_eq!(
        cond("  ${{ github.event_name != 'push' }} ", &ok),
        Ok(false)
    );
    assert_eq!(cond("", &ok), Ok(true));
    assert_eq!(cond("", &failed), Ok(false));
    // Implicit success() && (...): a failed job skips the step even though the text is true.
    assert_eq!(cond("github.event_name == 'push'", &failed), Ok(false));
    assert_eq!(cond("always()", &failed), Ok(true));
    assert_eq!(cond("failure()", &failed), Ok(true));
    assert_eq!(cond("failure() && env.NAME == 'x'", &failed), Ok(false));
    assert_eq!(cond("cancelled()", &failed), Ok(false));
    assert_eq!(cond("!cancelled()", &failed), Ok(true));
    // Text around ${{ }} makes a non-empty string: always true, as GitHub does.
    assert_eq!(cond("${{ false }} == true", &ok), Ok(true));
    assert_eq!(
        cond("github.event_name ==", &ok),
        Err("column 19: Unexpected end of expression: '=='".to_string())
    );
    assert_eq!(
        cond("  ${{ nope }}", &ok),
        Err("column 7: Unrecognized named-value: 'nope'".to_string())
    );
}
