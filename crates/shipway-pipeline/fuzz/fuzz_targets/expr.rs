//! Fuzzes the expression parser, templates, conditions and evaluation: no input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shipway_expr::{Condition, Scope, Template, contexts, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let host = contexts([(
        "github".to_string(),
        serde_json::json!({"event": {"a": [1, {"b": "c"}]}, "ref": "refs/heads/main"}),
    )]);
    if let Ok(e) = parse(text, &Scope::ANY) {
        let _ = e.eval(&host);
    }
    if let Ok(t) = Template::parse(text, &Scope::ANY) {
        let _ = t.eval(&host);
    }
    if let Ok(c) = Condition::parse(text, &Scope::ANY) {
        let _ = c.eval(&host);
    }
});
