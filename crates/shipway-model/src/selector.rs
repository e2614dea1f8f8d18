//! Label selectors: kubectl's `-l` syntax and `matchLabels`/`matchExpressions`, with Kubernetes matching.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::load::json_type;
use crate::name::{validate_label_key, validate_label_value};

/// A conjunction of requirements on labels. The empty selector matches everything.
///
/// Requirements are kept sorted, so two selectors that mean the same thing written in a different
/// order compare equal and print the same.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// One requirement on one label key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: BTreeSet<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    /// `key=value` (also written `key==value`; `matchLabels` entries).
    Equals,
    /// `key!=value`; matches objects without the key.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`; matches objects without the key.
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
}

/// Why a selector was refused. `column` is 1-based (in characters) for `-l` syntax, and 0 for a
/// `LabelSelector` object, where `message` names the field instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorError {
    pub input: String,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.column == 0 {
            write!(f, "invalid label selector {}: {}", self.input, self.message)
        } else {
            write!(
                f,
                "invalid label selector {:?} at column {}: {}",
                self.input, self.column, self.message
            )
        }
    }
}

impl std::error::Error for SelectorError {}

impl Requirement {
    /// Builds a requirement, checking the key, the values, and that the number of values suits the
    /// operator (one for `=`/`!=`, at least one for `in`/`notin`, none for exists/does-not-exist).
    pub fn new(
        key: &str,
        operator: Operator,
        values: impl IntoIterator<Item = String>,
    ) -> Result<Requirement, String> {
        validate_label_key(key)?;
        let values: BTreeSet<String> = values.into_iter().collect();
        for v in &values {
            validate_label_value(v)?;
        }
        match (operator, values.len()) {
            (Operator::Equals | Operator::NotEquals, 1) => {}
            (Operator::Equals | Operator::NotEquals, _) => {
                return Err(format!("{operator:?} needs exactly one value"));
            }
            (Operator::In | Operator::NotIn, 0) => {
                return Err(format!("{operator:?} needs at least one value"));
            }
            (Operator::Exists | Operator::DoesNotExist, n) if n > 0 => {
                return Err(format!("{operator:?} takes no values"));
            }
            _ => {}
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// The canonical kubectl form, which [`Selector::parse`] reads back.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = self.values.iter().next().map_or("", String::as_str);
        match self.operator {
            Operator::Equals => write!(f, "{}={one}", self.key),
            Operator::NotEquals => write!(f, "{}!={one}", self.key),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::In | Operator::NotIn => {
                let op = if self.operator == Operator::In {
                    "in"
                } else {
                    "notin"
                };
                let list: Vec<&str> = self.values.iter().map(String::as_str).collect();
                // `()` would read back as "no values"; `(,)` is the set holding only "".
                let list = if list == [""] {
                    ",".to_string()
                } else {
                    list.join(",")
                };
                write!(f, "{} {op} ({list})", self.key)
            }
        }
    }
}

impl Selector {
    /// Parses kubectl's `-l` syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
    /// separated by commas. Blank input is the empty selector.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        Parser::new(input).parse()
    }

    /// Reads a Kubernetes `LabelSelector` object (`matchLabels`, `matchExpressions`). `{}` is the
    /// empty selector, which matches everything.
    pub fn from_label_selector(value: &Value) -> Result<Selector, SelectorError> {
        let fail = |message: String| SelectorError {
            input: value.to_string(),
            column: 0,
            message,
        };
        let Value::Object(fields) = value else {
            return Err(fail(format!(
                "expected a mapping with matchLabels and/or matchExpressions, found {}",
                json_type(value)
            )));
        };
        let mut requirements = Vec::new();
        for (field, v) in fields {
            match (field.as_str(), v) {
                (_, Value::Null) => {}
                ("matchLabels", Value::Object(labels)) => {
                    for (k, v) in labels {
                        let Value::String(v) = v else {
                            return Err(fail(format!(
                                "matchLabels.{k}: expected a string, found {}",
                                json_type(v)
                            )));
                        };
                        let r = Requirement::new(k, Operator::Equals, [v.clone()])
                            .map_err(|e| fail(format!("matchLabels: {e}")))?;
                        requirements.push(r);
                    }
                }
                ("matchExpressions", Value::Array(exprs)) => {
                    for (i, expr) in exprs.iter().enumerate() {
                        let r = expression(expr)
                            .map_err(|e| fail(format!("matchExpressions[{i}]: {e}")))?;
                        requirements.push(r);
                    }
                }
                ("matchLabels" | "matchExpressions", v) => {
                    let want = if field == "matchLabels" {
                        "a mapping"
                    } else {
                        "a sequence"
                    };
                    return Err(fail(format!(
                        "{field}: expected {want}, found {}",
                        json_type(v)
                    )));
                }
                (other, _) => {
                    return Err(fail(format!(
                        "unknown field {other:?}; a label selector has matchLabels and matchExpressions"
                    )));
                }
            }
        }
        Ok(Selector::from_requirements(requirements))
    }

    /// A selector requiring every one of `labels` (a Service's `spec.selector`, a `matchLabels`).
    pub fn from_match_labels(labels: &BTreeMap<String, String>) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in labels {
            let r = Requirement::new(k, Operator::Equals, [v.clone()]).map_err(|message| {
                SelectorError {
                    input: format!("{labels:?}"),
                    column: 0,
                    message,
                }
            })?;
            requirements.push(r);
        }
        Ok(Selector::from_requirements(requirements))
    }

    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Selector {
        requirements.sort();
        requirements.dedup();
        Selector { requirements }
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether this selector has no requirements (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Selector, SelectorError> {
        Selector::parse(s)
    }
}

/// Requirements joined by `,`; the empty selector prints as the empty string.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// One `matchExpressions` entry.
fn expression(expr: &Value) -> Result<Requirement, String> {
    let Value::Object(fields) = expr else {
        return Err(format!(
            "expected a mapping with key, operator and values, found {}",
            json_type(expr)
        ));
    };
    if let Some(other) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "key" | "operator" | "values"))
    {
        return Err(format!(
            "unknown field {other:?}; an expression has key, operator and values"
        ));
    }
    let key = match fields.get("key") {
        Some(Value::String(k)) => k,
        None | Some(Value::Null) => return Err("missing required field \"key\"".to_string()),
        Some(v) => return Err(format!("key: expected a string, found {}", json_type(v))),
    };
    let operator = match fields.get("operator") {
        Some(Value::String(op)) => match op.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            _ => {
                return Err(format!(
                    "operator: {op:?} is not a valid operator; expected In, NotIn, Exists or DoesNotExist"
                ));
            }
        },
        None | Some(Value::Null) => return Err("missing required field \"operator\"".to_string()),
        Some(v) => {
            return Err(format!(
                "operator: expected a string, found {}",
                json_type(v)
            ));
        }
    };
    let mut values = Vec::new();
    match fields.get("values") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                match v {
                    Value::String(s) => values.push(s.clone()),
                    _ => {
                        return Err(format!(
                            "values[{i}]: expected a string, found {}",
                            json_type(v)
                        ));
                    }
                }
            }
        }
        Some(v) => {
            return Err(format!(
                "values: expected a sequence, found {}",
                json_type(v)
            ));
        }
    }
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            return Err(format!(
                "values: must not be empty when the operator is {operator:?}"
            ));
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            return Err(format!(
                "values: must be empty when the operator is {operator:?}"
            ));
        }
        _ => {}
    }
    Requirement::new(key, operator, values)
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A run of characters that are neither blank nor one of `=!(),`.
    Word(String),
    Equals,
    DoubleEquals,
    NotEquals,
    Bang,
    Open,
    Close,
    Comma,
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("{w:?}"),
            Token::Equals => "'='".into(),
            Token::DoubleEquals => "'=='".into(),
            Token::NotEquals => "'!='".into(),
            Token::Bang => "'!'".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::Comma => "','".into(),
            Token::End => "the end".into(),
        }
    }
}

/// A recursive-descent parser over tokens that carry their 1-based column.
struct Parser<'a> {
    input: &'a str,
    tokens: Vec<(Token, usize)>,
    next: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Parser<'a> {
        Parser {
            input,
            tokens: lex(input),
            next: 0,
        }
    }

    fn error(&self, column: usize, message: String) -> SelectorError {
        SelectorError {
            input: self.input.to_string(),
            column,
            message,
        }
    }

    fn peek(&self) -> &(Token, usize) {
        // `lex` always ends with `End`, and `bump` never moves past it.
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> (Token, usize) {
        let t = self.peek().clone();
        if self.next < self.tokens.len() - 1 {
            self.next += 1;
        }
        t
    }

    fn parse(mut self) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        if self.peek().0 == Token::End {
            return Ok(Selector::default());
        }
        loop {
            requirements.push(self.requirement()?);
            match self.bump() {
                (Token::Comma, _) => {}
                (Token::End, _) => break,
                (t, col) => {
                    return Err(self.error(
                        col,
                        format!("expected ',' or the end, found {}", t.describe()),
                    ));
                }
            }
        }
        Ok(Selector::from_requirements(requirements))
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (first, col) = self.bump();
        if first == Token::Bang {
            let (key, key_col) = self.word("a label key after '!'")?;
            return self.build(&key, key_col, Operator::DoesNotExist, Vec::new(), col);
        }
        let Token::Word(key) = first else {
            return Err(self.error(
                col,
                format!("expected a label key or '!', found {}", first.describe()),
            ));
        };
        let (op, op_col) = self.peek().clone();
        let operator = match &op {
            Token::Comma | Token::End => {
                return self.build(&key, col, Operator::Exists, Vec::new(), col);
            }
            Token::Equals | Token::DoubleEquals => Operator::Equals,
            Token::NotEquals => Operator::NotEquals,
            Token::Word(w) if w == "in" => Operator::In,
            Token::Word(w) if w == "notin" => Operator::NotIn,
            other => {
                return Err(self.error(
                    op_col,
                    format!(
                        "expected '=', '==', '!=', 'in', 'notin', ',' or the end after {key:?}, found {}",
                        other.describe()
                    ),
                ));
            }
        };
        self.bump();
        let values = match operator {
            Operator::Equals | Operator::NotEquals => match self.peek().clone() {
                // `a=` selects an empty value, as in kubectl.
                (Token::Comma | Token::End, c) => vec![(String::new(), c)],
                (Token::Word(v), c) => {
                    self.bump();
                    vec![(v, c)]
                }
                (t, c) => {
                    return Err(self.error(c, format!("expected a value, found {}", t.describe())));
                }
            },
            _ => self.value_list()?,
        };
        if matches!(operator, Operator::In | Operator::NotIn) && values.is_empty() {
            return Err(self.error(
                op_col,
                format!("'{}' needs at least one value", op_word(operator)),
            ));
        }
        for (v, c) in &values {
            validate_label_value(v).map_err(|e| self.error(*c, e))?;
        }
        let values = values.into_iter().map(|(v, _)| v).collect();
        self.build(&key, col, operator, values, op_col)
    }

    /// `( v, v, ... )`; an empty slot between commas is the empty value.
    fn value_list(&mut self) -> Result<Vec<(String, usize)>, SelectorError> {
        match self.bump() {
            (Token::Open, _) => {}
            (t, c) => return Err(self.error(c, format!("expected '(', found {}", t.describe()))),
        }
        let mut values = Vec::new();
        if self.peek().0 == Token::Close {
            self.bump();
            return Ok(values);
        }
        loop {
            match self.peek().clone() {
                (Token::Word(v), c) => {
                    self.bump();
                    values.push((v, c));
                }
                (Token::Comma | Token::Close, c) => values.push((String::new(), c)),
                (t, c) => {
                    return Err(self.error(
                        c,
                        format!("expected a value, ',' or ')', found {}", t.describe()),
                    ));
                }
            }
            match self.bump() {
                (Token::Comma, _) => {}
                (Token::Close, _) => return Ok(values),
                (t, c) => {
                    return Err(
                        self.error(c, format!("expected ',' or ')', found {}", t.describe()))
                    );
                }
            }
        }
    }

    fn word(&mut self, what: &str) -> Result<(String, usize), SelectorError> {
        match self.bump() {
            (Token::Word(w), c) => Ok((w, c)),
            (t, c) => Err(self.error(c, format!("expected {what}, found {}", t.describe()))),
        }
    }

    fn build(
        &self,
        key: &str,
        key_col: usize,
        operator: Operator,
        values: Vec<String>,
        op_col: usize,
    ) -> Result<Requirement, SelectorError> {
        validate_label_key(key).map_err(|e| self.error(key_col, e))?;
        Requirement::new(key, operator, values).map_err(|e| self.error(op_col, e))
    }
}

fn op_word(op: Operator) -> &'static str {
    if op == Operator::In { "in" } else { "notin" }
}

fn lex(input: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let col = i + 1;
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let (token, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '=' if next == Some('=') => (Token::DoubleEquals, 2),
            '=' => (Token::Equals, 1),
            '!' if next == Some('=') => (Token::NotEquals, 2),
            '!' => (Token::Bang, 1),
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            ',' => (Token::Comma, 1),
            _ => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| !c.is_whitespace() && !matches!(c, '=' | '!' | '(' | ')' | ','))
                    .count();
                (Token::Word(chars[i..i + len].iter().collect()), len)
            }
        };
        tokens.push((token, col));
        i += len;
    }
    tokens.push((Token::End, chars.len() + 1));
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_to_canonical_form_and_round_trips() {
        for (input, canonical) in [
            ("", ""),
            ("   ", ""),
            ("app=web", "app=web"),
            ("app==web", "app=web"),
            (" app = web ", "app=web"),
            ("tier!=db", "tier!=db"),
            ("env in (prod, staging)", "env in (prod,staging)"),
            ("env in (staging,prod,prod)", "env in (prod,staging)"),
            ("env notin (dev)", "env notin (dev)"),
            ("env in (,a)", "env in (,a)"),
            ("env in (,)", "env in (,)"),
            ("gpu", "gpu"),
            ("!gpu", "!gpu"),
            ("! gpu", "!gpu"),
            ("app=", "app="),
            ("z=1,a=2", "a=2,z=1"),
            (
                "!canary,app.kubernetes.io/name=web",
                "app.kubernetes.io/name=web,!canary",
            ),
            ("in in (in)", "in in (in)"),
            ("app=web,app=web", "app=web"),
        ] {
            let s = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(s.to_string(), canonical, "{input:?}");
            assert_eq!(
                Selector::parse(&s.to_string()),
                Ok(s.clone()),
                "{input:?} round trip"
            );
            assert_eq!(s.is_empty(), canonical.is_empty());
        }
    }

    #[test]
    fn parse_errors_say_where() {
        for (input, want) in [
            (
                "app=web,",
                r#"invalid label selector "app=web," at column 9: expected a label key or '!', found the end"#,
            ),
            (",a", "at column 1: expected a label key or '!', found ','"),
            (
                "a b",
                r#"at column 3: expected '=', '==', '!=', 'in', 'notin', ',' or the end after "a", found "b""#,
            ),
            ("a in (x", "at column 8: expected ',' or ')', found the end"),
            ("a in x", r#"at column 6: expected '(', found "x""#),
            ("a in ()", "at column 3: 'in' needs at least one value"),
            (
                "a notin ()",
                "at column 3: 'notin' needs at least one value",
            ),
            ("a=(", "at column 3: expected a value, found '('"),
            ("a=b=c", "at column 4: expected ',' or the end, found '='"),
            (
                "!",
                "at column 2: expected a label key after '!', found the end",
            ),
            ("!a=b", "at column 3: expected ',' or the end, found '='"),
            (
                "Bad Key=1",
                r#"at column 5: expected '=', '==', '!=', 'in', 'notin', ',' or the end after "Bad""#,
            ),
            ("-x=1", r#"at column 1: "-x" is not a valid label key"#),
            ("x=-1", r#"at column 3: "-1" is not a valid label value"#),
            (
                "x in (a, b c)",
                r#"at column 12: expected ',' or ')', found "c""#,
            ),
            ("é=1", "at column 1:"),
            ("x>1", r#"at column 1: "x>1" is not a valid label key"#),
        ] {
            let err = Selector::parse(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn matches_like_kubernetes() {
        let web = labels(&[("app", "web"), ("env", "prod")]);
        let bare = labels(&[]);
        for (selector, on_web, on_bare) in [
            ("", true, true),
            ("app=web", true, false),
            ("app=db", false, false),
            ("app!=db", true, true),
            ("app!=web", false, true),
            ("env in (prod,staging)", true, false),
            ("env notin (prod)", false, true),
            ("env notin (dev)", true, true),
            ("app", true, false),
            ("!app", false, true),
            ("app=web,env=dev", false, false),
            ("app=web,!canary", true, false),
            ("app=", false, false),
        ] {
            let s = Selector::parse(selector).expect(selector);
            assert_eq!(s.matches(&web), on_web, "{selector:?} on web");
            assert_eq!(s.matches(&bare), on_bare, "{selector:?} on no labels");
        }
        assert!(
            Selector::parse("app=")
                .expect("empty value")
                .matches(&labels(&[("app", "")]))
        );
    }

    #[test]
    fn reads_label_selector_objects() {
        for (value, canonical) in [
            (json!({}), ""),
            (json!({"matchLabels": null}), ""),
            (json!({"matchLabels": {"app": "web"}}), "app=web"),
            (
                json!({"matchLabels": {"app": "web"}, "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "qa"]},
                    {"key": "tier", "operator": "NotIn", "values": ["db"]},
                    {"key": "gpu", "operator": "Exists"},
                    {"key": "canary", "operator": "DoesNotExist", "values": []},
                ]}),
                "app=web,!canary,env in (prod,qa),gpu,tier notin (db)",
            ),
        ] {
            let s =
                Selector::from_label_selector(&value).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(s.to_string(), canonical);
            assert_eq!(Selector::parse(canonical), Ok(s));
        }
    }

    #[test]
    fn label_selector_errors_name_the_field() {
        for (value, want) in [
            (
                json!(null),
                "expected a mapping with matchLabels and/or matchExpressions, found null",
            ),
            (
                json!({"matchLabel": {"a": "b"}}),
                r#"unknown field "matchLabel""#,
            ),
            (
                json!({"matchLabels": ["a"]}),
                "matchLabels: expected a mapping, found a sequence",
            ),
            (
                json!({"matchLabels": {"a": 1}}),
                "matchLabels.a: expected a string, found an integer",
            ),
            (
                json!({"matchLabels": {"a b": "c"}}),
                r#"matchLabels: "a b" is not a valid label key"#,
            ),
            (
                json!({"matchExpressions": {}}),
                "matchExpressions: expected a sequence, found a mapping",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
                "matchExpressions[0]: values: must not be empty when the operator is In",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}),
                "values: must not be empty when the operator is NotIn",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "values: must be empty when the operator is Exists",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["x"]}]}),
                "must be empty when the operator is DoesNotExist",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}),
                r#"operator: "in" is not a valid operator; expected In, NotIn, Exists or DoesNotExist"#,
            ),
            (
                json!({"matchExpressions": [{"operator": "Exists"}]}),
                r#"matchExpressions[0]: missing required field "key""#,
            ),
            (
                json!({"matchExpressions": [{"key": "a"}]}),
                r#"missing required field "operator""#,
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}),
                "values[0]: expected a string, found an integer",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x y"]}]}),
                r#""x y" is not a valid label value"#,
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "value": "x"}]}),
                r#"unknown field "value""#,
            ),
            (
                json!({"matchExpressions": ["a"]}),
                "matchExpressions[0]: expected a mapping with key, operator and values, found a string",
            ),
        ] {
            let err = Selector::from_label_selector(&value).expect_err(&value.to_string());
            assert_eq!(err.column, 0);
            let err = err.to_string();
            assert!(err.contains(want), "{value}: {err}");
            assert!(err.starts_with("invalid label selector "), "{err}");
        }
    }

    #[test]
    fn match_labels_constructor() {
        let s = Selector::from_match_labels(&labels(&[("app", "web")])).expect("valid");
        assert_eq!(s.to_string(), "app=web");
        assert!(Selector::from_match_labels(&labels(&[("app", "a b")])).is_err());
    }
}
