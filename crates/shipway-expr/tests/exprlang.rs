//! Argo Rollouts' metric conditions: expr-lang's semantics on the results providers return, the
//! cases of Argo's own `utils/evaluate` tests, and every condition of the Argo corpus.

use serde_json::json;
use shipway_expr::exprlang::{Assessment, Conditions, Env, Program, Value};

fn value(j: serde_json::Value) -> Value {
    Value::from(&j)
}

fn eval(result: Value, text: &str) -> Result<bool, String> {
    let program = Program::compile(text, &["result"]).map_err(|e| e.to_string())?;
    program.run_bool(&Env::with_result(result))
}

fn run(text: &str) -> Value {
    Program::compile(text, &["result"])
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .run(&Env::default())
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn argo_evaluate_cases() {
    assert_eq!(eval(Value::Bool(true), "result == true"), Ok(true));
    assert_eq!(eval(Value::Bool(true), "result == false"), Ok(false));
    assert_eq!(
        eval(Value::Bool(true), "1"),
        Err("expected bool, but got int".into())
    );
    assert_eq!(
        eval(Value::Bool(true), "invalidVariable"),
        Err("column 1: unknown name invalidVariable".into())
    );
    let apdex = value(json!({"service_apdex": {"label": null, "values": {"values": [2.0, 2.0]}}}));
    assert_eq!(
        eval(apdex, "all(result.service_apdex.values.values, {# > 1})"),
        Ok(true)
    );
    assert_eq!(eval(value(json!([2.0, 2.0])), "2 in result"), Ok(true));
    assert_eq!(eval(Value::Float(5.0), "result > 1"), Ok(true));
    assert!(eval(Value::Bool(true), "result.Name() == 'hi'").is_err());
    assert!(eval(Value::String("1.1".into()), "asInt(result) == 1.1").is_err());
    for (input, text) in [
        (Value::String("1".into()), "asInt(result) == 1"),
        (Value::Int(1), "asInt(result) == 1"),
        (Value::Float(1.123), "asInt(result) == 1"),
        (Value::String("1.1".into()), "asFloat(result) == 1.1"),
        (Value::String("1.1".into()), "asFloat(result) >= 1.1"),
        (Value::String("1.1".into()), "asFloat(result) <= 1.1"),
        (Value::Float(1.1), "asFloat(result) == 1.1"),
        (Value::Int(1), "asFloat(result) == 1"),
        (Value::Int(1), "asFloat(result) >= 1"),
    ] {
        assert_eq!(eval(input, text), Ok(true), "{text}");
    }
    let err = eval(Value::String("NotANum".into()), "asFloat(result) == 1.1").unwrap_err();
    assert!(
        err.contains(r#"strconv.ParseFloat: parsing "NotANum": invalid syntax"#),
        "{err}"
    );
    let err = eval(Value::String("1.1".into()), r#"asFloat(result) == "1.1""#).unwrap_err();
    assert!(
        err.contains("invalid operation: == (mismatched types float64 and string)"),
        "{err}"
    );
}

#[test]
fn assessment_follows_argo() {
    let c = |s: Option<&str>, f: Option<&str>| Conditions::compile(s, f).expect("compiles");
    let five = Value::Float(5.0);
    assert_eq!(c(None, None).assess(&five), Ok(Assessment::Successful));
    assert_eq!(
        c(Some("result > 1"), None).assess(&five),
        Ok(Assessment::Successful)
    );
    assert_eq!(
        c(Some("result > 9"), None).assess(&five),
        Ok(Assessment::Failed)
    );
    assert_eq!(
        c(None, Some("result > 9")).assess(&five),
        Ok(Assessment::Successful)
    );
    assert_eq!(
        c(None, Some("result > 1")).assess(&five),
        Ok(Assessment::Failed)
    );
    // Both given and neither true: Inconclusive; both true: failure wins.
    assert_eq!(
        c(Some("result > 9"), Some("result < 1")).assess(&five),
        Ok(Assessment::Inconclusive)
    );
    assert_eq!(
        c(Some("result > 1"), Some("result < 9")).assess(&five),
        Ok(Assessment::Failed)
    );
    let err = c(Some("result[0] >= 0.95"), None)
        .assess(&Value::Nil)
        .unwrap_err();
    assert!(
        err.contains("could not evaluate successCondition \"result[0] >= 0.95\"")
            && err.contains("metric result is nil or empty"),
        "{err}"
    );
    let err = c(Some("result[0] >= 0.95"), None)
        .assess(&Value::Array(vec![]))
        .unwrap_err();
    assert!(err.contains("metric result is nil or empty"), "{err}");
    let err = c(Some("true"), Some("result.code"))
        .assess(&value(json!({"code": 200})))
        .unwrap_err();
    assert_eq!(
        err,
        "could not evaluate failureCondition \"result.code\": expected bool, but got int"
    );
    // Compile errors name the condition and the column.
    let e = Conditions::compile(Some("result >"), None).unwrap_err();
    assert_eq!(e.field, "successCondition");
    assert_eq!(e.error.column, 9, "{e}");
    let e = Conditions::compile(None, Some("reslt < 5")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "failureCondition \"reslt < 5\": column 1: unknown name reslt"
    );
}

#[test]
fn the_issue_and_corpus_conditions() {
    let vector = value(json!([0.97, 0.99]));
    assert_eq!(eval(vector.clone(), "result[0] >= 0.95"), Ok(true));
    assert_eq!(eval(vector.clone(), "len(result) > 0"), Ok(true));
    assert_eq!(eval(vector.clone(), "all(result, {# < 1000})"), Ok(true));
    assert_eq!(eval(vector.clone(), "all(result, # < 0.98)"), Ok(false));
    assert_eq!(eval(vector, "result[-1] == 0.99"), Ok(true));
    assert_eq!(
        eval(value(json!({"code": 200})), "result.code == 200"),
        Ok(true)
    );
    assert_eq!(eval(Value::Nil, "default(result, 0) < 500"), Ok(true));
    assert_eq!(
        eval(Value::Float(700.0), "default(result, 0) < 500"),
        Ok(false)
    );
    assert_eq!(eval(Value::Float(f64::NAN), "isNaN(result)"), Ok(true));
    assert_eq!(eval(Value::Float(f64::NAN), "result > 0.5"), Ok(false));
    assert_eq!(eval(Value::Nil, "isNil(result)"), Ok(true));
    assert_eq!(eval(Value::Float(f64::INFINITY), "isInf(result)"), Ok(true));
    assert_eq!(
        eval(Value::String("It worked!".into()), "result == 'It worked!'"),
        Ok(true)
    );
    assert_eq!(
        eval(value(json!({"major": "1"})), "result.major == '1'"),
        Ok(true)
    );
    assert_eq!(
        eval(value(json!({"Status": -1})), "result.Status == -1"),
        Ok(true)
    );
    assert_eq!(eval(Value::Float(96.0), "result > 95"), Ok(true));

    // Every condition in the corpus's Rollouts and AnalysisTemplates compiles.
    let corpus = std::env::var("SHIPWAY_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus")
        })
        .join("argo");
    if !corpus.is_dir() {
        eprintln!("corpus SKIPPED: {} not found", corpus.display());
        return;
    }
    let mut seen = 0;
    let mut stack = vec![corpus];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable corpus") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if !matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text.lines() {
                let line = line.trim();
                let Some(cond) = line
                    .strip_prefix("successCondition:")
                    .or_else(|| line.strip_prefix("failureCondition:"))
                else {
                    continue;
                };
                let cond = cond.trim();
                let cond = cond
                    .strip_prefix('"')
                    .and_then(|c| c.strip_suffix('"'))
                    .or_else(|| cond.strip_prefix('\'').and_then(|c| c.strip_suffix('\'')))
                    .unwrap_or(cond);
                if cond.is_empty() || cond.contains("{{") || cond == "|" || cond == ">" {
                    continue; // an argument substituted before evaluation, or a block scalar
                }
                Program::compile(cond, &["result"])
                    .unwrap_or_else(|e| panic!("{}: {cond}: {e}", path.display()));
                seen += 1;
            }
        }
    }
    assert!(seen >= 25, "only {seen} conditions found in the corpus");
}

#[test]
fn expr_lang_semantics() {
    // Ints and floats: `/` is a float division, `%` an int one, `**` a float.
    assert_eq!(run("7 / 2"), Value::Float(3.5));
    assert_eq!(run("7 % 2"), Value::Int(1));
    assert_eq!(run("2 ** 3"), Value::Float(8.0));
    assert_eq!(run("2 ^ 3 ^ 2"), Value::Float(512.0));
    assert_eq!(run("1 + 2 * 3"), Value::Int(7));
    assert_eq!(run("-2 ** 2"), Value::Float(-4.0));
    assert_eq!(run("1_000 + 0x10"), Value::Int(1016));
    assert_eq!(run("1e3"), Value::Float(1000.0));
    assert_eq!(run(".5 + 1"), Value::Float(1.5));
    assert_eq!(run("1 == 1.0"), Value::Bool(true));
    assert_eq!(eval(Value::String("a".into()), "result == 1"), Ok(false));
    assert_eq!(run("not true == false"), Value::Bool(true));
    assert_eq!(run("!false && 1 < 2 || false"), Value::Bool(true));
    assert_eq!(run("true and not false or false"), Value::Bool(true));
    assert_eq!(run("1 < 2 ? 'yes' : 'no'"), Value::String("yes".into()));
    assert_eq!(run("nil ?? 3"), Value::Int(3));
    assert_eq!(run("1..3"), value(json!([1, 2, 3])));
    assert_eq!(run("[1, 2, 3][1:]"), value(json!([2, 3])));
    assert_eq!(run("'hello'[1:3]"), Value::String("el".into()));
    assert_eq!(run("{a: 1, 'b-c': 2}['b-c']"), Value::Int(2));
    assert_eq!(run("{a: 1}.missing"), Value::Nil);
    assert_eq!(run("nil?.x"), Value::Nil);
    assert_eq!(run("3 not in [1, 2]"), Value::Bool(true));
    assert_eq!(run("'a' in {a: 1}"), Value::Bool(true));
    assert_eq!(
        run("'canary-1' matches '^canary-[0-9]+$'"),
        Value::Bool(true)
    );
    assert_eq!(
        run("'abc' contains 'b' && 'abc' startsWith 'a' && 'abc' endsWith 'c'"),
        Value::Bool(true)
    );
    assert_eq!(run("'a' + \"b\" + `c\\n`"), Value::String("abc\\n".into()));
    assert_eq!(
        run("filter([1, 2, 3, 4], # % 2 == 0)"),
        value(json!([2, 4]))
    );
    assert_eq!(run("map([1, 2], {# * 10})"), value(json!([10, 20])));
    assert_eq!(run("count([1, 2, 3], # > 1)"), Value::Int(2));
    assert_eq!(run("one([1, 2, 3], # > 2)"), Value::Bool(true));
    assert_eq!(run("none([1, 2], # > 5)"), Value::Bool(true));
    assert_eq!(run("any([{v: 1}, {v: 9}], .v > 5)"), Value::Bool(true));
    assert_eq!(run("find([1, 5, 9], # > 4)"), Value::Int(5));
    assert_eq!(run("findIndex([1, 5, 9], # > 4)"), Value::Int(1));
    assert_eq!(run("map([5, 6], #index)"), value(json!([0, 1])));
    assert_eq!(run("sum([1, 2, 3])"), Value::Int(6));
    assert_eq!(run("mean([1, 2, 3, 4])"), Value::Float(2.5));
    assert_eq!(run("median([3, 1, 2])"), Value::Float(2.0));
    assert_eq!(run("max(1, 5.5, 3)"), Value::Float(5.5));
    assert_eq!(run("min([4, 2, 8])"), Value::Int(2));
    assert_eq!(run("abs(-3) + int('4') + int(2.9)"), Value::Int(9));
    assert_eq!(run("float('0.5') + ceil(0.2)"), Value::Float(1.5));
    assert_eq!(run("len('héllo') + len({a: 1})"), Value::Int(6));
    assert_eq!(
        run("upper('a') + lower('B') + trim('  c ')"),
        Value::String("Abc".into())
    );
    assert_eq!(
        run("split('a,b', ',') | join('-')"),
        Value::String("a-b".into())
    );
    assert_eq!(
        run("string(1.5) + string([1, 2])"),
        Value::String("1.5[1 2]".into())
    );
    assert_eq!(run("first([7, 8]) + last([7, 8])"), Value::Int(15));
    assert_eq!(run("keys({a: 1, b: 2})"), value(json!(["a", "b"])));
}

/// Runtime and compile errors say what and where.
#[test]
fn errors() {
    let compile = |t: &str| Program::compile(t, &["result"]).unwrap_err().to_string();
    let runtime = |t: &str, r: Value| {
        Program::compile(t, &["result"])
            .expect("compiles")
            .run(&Env::with_result(r))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        compile("result >"),
        "column 9: unexpected end of expression"
    );
    assert_eq!(compile("(1 + 2"), "column 7: unexpected end of expression");
    assert_eq!(
        compile("1 +* 2"),
        "column 4: unexpected token Operator(\"*\")"
    );
    assert_eq!(compile("'abc"), "column 1: literal not terminated");
    assert_eq!(compile("foo(1)"), "column 1: unknown func foo");
    assert_eq!(
        compile("# > 1"),
        "column 1: cannot use pointer accessor outside predicate"
    );
    assert_eq!(
        compile("1 == 'a'"),
        "column 3: invalid operation: == (mismatched types int and string)"
    );
    assert_eq!(compile("12abc"), "column 1: invalid number 12abc");
    assert_eq!(
        compile(&"(".repeat(500)),
        "column 101: expression nested deeper than 100 levels"
    );
    assert_eq!(
        runtime("result[5] > 1", value(json!([1, 2]))),
        "index out of range: 5 (array length is 2) (1:7)"
    );
    assert_eq!(
        runtime("result.a.b == 1", value(json!({}))),
        "cannot fetch b from <nil> (1:9)"
    );
    assert_eq!(
        runtime("result && true", Value::Int(1)),
        "invalid operation: && (mismatched types int and bool) (1:1)"
    );
    assert_eq!(
        runtime("result < 'a'", Value::Int(1)),
        "invalid operation: < (mismatched types int and string) (1:8)"
    );
    assert_eq!(
        runtime("len(result) > 0", Value::Nil),
        "invalid argument for len (type <nil>) (1:1)"
    );
    assert_eq!(
        runtime("result % 0 == 1", Value::Int(4)),
        "integer divide by zero (1:8)"
    );
}
