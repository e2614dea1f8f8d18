//! `ignoreDifferences[].jqPathExpressions`, as Argo CD runs them: each expression `E` becomes
//! the jq program `del(E)`, run on the object, whose first output is the object compared.
//! jaq (a jq interpreter in Rust) runs it.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;
use serde_json::Value;

/// `value` with what `expr` selects deleted, or why the expression is not usable.
pub fn delete(value: &Value, expr: &str) -> Result<Value, String> {
    let code = format!("del({expr})");
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(
            &arena,
            File {
                code: &code,
                path: (),
            },
        )
        .map_err(|_| format!("{expr:?} is not a jq expression"))?;
    let filter = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|_| format!("{expr:?} does not compile as jq"))?;
    let input = jaq_json::read::parse_single(value.to_string().as_bytes())
        .map_err(|e| format!("the object does not read as jq input: {e}"))?;
    let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
    // jaq fails where jq deletes nothing (`del(.status.replicas)` without a status), so a run
    // that fails or gives nothing leaves the object as it is, which is what jq gives there.
    match filter.id.run((ctx, input)).map(unwrap_valr).next() {
        Some(Ok(out)) => {
            serde_json::from_str(&out.to_string()).map_err(|e| format!("{expr:?}: {e}"))
        }
        _ => Ok(value.clone()),
    }
}

/// Why `expr` cannot be used as a jqPathExpression, if it cannot.
pub fn check(expr: &str) -> Result<(), String> {
    delete(&Value::Null, expr).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::{check, delete};
    use serde_json::json;

    #[test]
    fn deletes_what_the_expression_selects() {
        let v = json!({"data": {"config.yaml": "x", "keep": "y"}, "spec": {"containers": [
            {"name": "a", "env": [1]}, {"name": "b", "env": [2]}]}});
        assert_eq!(
            delete(&v, r#".data["config.yaml"]"#).unwrap(),
            json!({"data": {"keep": "y"}, "spec": {"containers": [
                {"name": "a", "env": [1]}, {"name": "b", "env": [2]}]}})
        );
        assert_eq!(
            delete(&v, r#".spec.containers[] | select(.name == "b") | .env"#).unwrap()["spec"],
            json!({"containers": [{"name": "a", "env": [1]}, {"name": "b"}]})
        );
        // A path that is not there deletes nothing.
        assert_eq!(delete(&v, ".status.replicas").unwrap(), v);
        assert_eq!(delete(&v, ".data.keep.deeper").unwrap(), v);
        assert!(delete(&v, ".[[[").is_err());
        assert!(check(".[[[").is_err());
        assert!(check(".metadata.labels").is_ok());
    }
}
