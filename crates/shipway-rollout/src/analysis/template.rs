//! An AnalysisRun's spec from AnalysisTemplates and ClusterAnalysisTemplates, as Argo's
//! `NewAnalysisRunFromTemplates` builds it for a Rollout: metrics, dry-run and retention rules
//! and arguments flattened (namespaced templates first), then the caller's arguments merged in;
//! every argument must end with a value or a `valueFrom`.

use shipway_model::types::{
    AnalysisRunSpec, AnalysisTemplateSpec, Argument, MeasurementRetention, MetricRule,
};

/// The run's spec from `templates` (namespaced, then cluster ones, in order), with `args`,
/// `dry_run` and `retention` from the caller (a Rollout's analysis step) put first.
pub fn run_spec(
    templates: &[&AnalysisTemplateSpec],
    args: &[Argument],
    dry_run: &[MetricRule],
    retention: &[MeasurementRetention],
) -> Result<AnalysisRunSpec, String> {
    let mut metrics = Vec::new();
    for m in templates.iter().flat_map(|t| &t.metrics) {
        if metrics
            .iter()
            .any(|o: &shipway_model::types::Metric| o.name == m.name)
        {
            return Err(format!("two metrics have the same name '{}'", m.name));
        }
        metrics.push(m.clone());
    }
    let template_dry: Vec<MetricRule> = templates.iter().flat_map(|t| t.dry_run.clone()).collect();
    unique(&template_dry, |r| &r.metric_name, "Dry-Run")?;
    let template_retention: Vec<MeasurementRetention> = templates
        .iter()
        .flat_map(|t| t.measurement_retention.clone())
        .collect();
    unique(
        &template_retention,
        |r| &r.metric_name,
        "Measurement Retention",
    )?;
    let dry_run: Vec<MetricRule> = dry_run.iter().cloned().chain(template_dry).collect();
    unique(&dry_run, |r| &r.metric_name, "Dry-Run")?;
    let retention: Vec<MeasurementRetention> = retention
        .iter()
        .cloned()
        .chain(template_retention)
        .collect();
    unique(&retention, |r| &r.metric_name, "Measurement Retention")?;
    let mut merged = flatten_args(templates)?;
    for arg in args {
        if let Some(t) = merged.iter_mut().find(|t| t.name == arg.name) {
            if arg.value.is_some() {
                t.value = arg.value.clone();
            } else if arg.value_from.is_some() {
                t.value_from = arg.value_from.clone();
            }
        }
    }
    if let Some(a) = merged
        .iter()
        .find(|a| a.value.is_none() && a.value_from.is_none())
    {
        return Err(format!("args.{} was not resolved", a.name));
    }
    Ok(AnalysisRunSpec {
        args: merged,
        metrics,
        dry_run,
        measurement_retention: retention,
        ..AnalysisRunSpec::default()
    })
}

fn unique<T>(rules: &[T], name: impl Fn(&T) -> &String, what: &str) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for r in rules {
        if !seen.insert(name(r)) {
            return Err(format!(
                "two {what} metric rules have the same name '{}'",
                name(r)
            ));
        }
    }
    Ok(())
}

/// Argo's `flattenArgs`: one argument per name; two values that differ are refused, a value
/// is not replaced by a later argument without one.
fn flatten_args(templates: &[&AnalysisTemplateSpec]) -> Result<Vec<Argument>, String> {
    let mut out: Vec<Argument> = Vec::new();
    for arg in templates.iter().flat_map(|t| &t.args) {
        match out.iter_mut().find(|a| a.name == arg.name) {
            Some(prev) => {
                if let (Some(p), Some(n)) = (&prev.value, &arg.value)
                    && p != n
                {
                    return Err(format!(
                        "Argument `{}` specified multiple times with different values: '{p}', '{n}'",
                        arg.name
                    ));
                }
                if prev.value.is_none() {
                    *prev = arg.clone();
                }
            }
            None => out.push(arg.clone()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(v: serde_json::Value) -> AnalysisTemplateSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn templates_flatten_and_the_callers_args_win() {
        let a = template(
            json!({"args": [{"name": "service"}, {"name": "limit", "value": "0.95"}],
            "metrics": [{"name": "rate", "provider": {"web": {"url": "http://{{args.service}}/"}}}],
            "dryRun": [{"metricName": "rate"}]}),
        );
        let b = template(json!({"args": [{"name": "limit", "value": "0.95"}],
            "metrics": [{"name": "p95", "provider": {"web": {"url": "http://x/"}}}]}));
        let args: Vec<Argument> = serde_json::from_value(
            json!([{"name": "service", "value": "web"}, {"name": "unused", "value": "x"}]),
        )
        .unwrap();
        let spec = run_spec(&[&a, &b], &args, &[], &[]).unwrap();
        let names: Vec<&str> = spec.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["rate", "p95"]);
        let values: Vec<(&str, Option<&str>)> = spec
            .args
            .iter()
            .map(|a| (a.name.as_str(), a.value.as_deref()))
            .collect();
        assert_eq!(values, [("service", Some("web")), ("limit", Some("0.95"))]);
        assert_eq!(spec.dry_run.len(), 1);
    }

    #[test]
    fn conflicts_and_unresolved_args_are_argos_errors() {
        let a = template(json!({"args": [{"name": "x", "value": "1"}],
            "metrics": [{"name": "m", "provider": {"web": {"url": "u"}}}]}));
        let b = template(json!({"args": [{"name": "x", "value": "2"}]}));
        assert_eq!(
            run_spec(&[&a, &b], &[], &[], &[]),
            Err("Argument `x` specified multiple times with different values: '1', '2'".into())
        );
        assert_eq!(
            run_spec(&[&a, &a], &[], &[], &[]),
            Err("two metrics have the same name 'm'".into())
        );
        let c = template(json!({"args": [{"name": "host"}]}));
        assert_eq!(
            run_spec(&[&c], &[], &[], &[]),
            Err("args.host was not resolved".into())
        );
        let rule: Vec<MetricRule> = serde_json::from_value(json!([{"metricName": "m"}])).unwrap();
        let d = template(json!({"dryRun": [{"metricName": "m"}]}));
        assert_eq!(
            run_spec(&[&d], &[], &rule, &[]),
            Err("two Dry-Run metric rules have the same name 'm'".into())
        );
    }
}
