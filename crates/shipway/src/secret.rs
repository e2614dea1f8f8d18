//! `shipway secret` and `shipway var`: pipeline secrets and variables through the API. A
//! secret's value is read from standard input only, so it never sits in argv or shell history.

use std::io::{IsTerminal as _, Read as _};

use serde_json::Value;

use crate::Failure;
use crate::cli::{OutputFormat, SecretCommand, SettingScope, VarCommand};
use crate::client::Client;
use crate::output;

fn query(scope: &SettingScope) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(repo) = &scope.repo {
        q.push(("repo", repo.clone()));
    }
    if let Some(env) = &scope.env {
        q.push(("env", env.clone()));
    }
    q
}

fn scope_words(item: &Value) -> String {
    match (item["repo"].as_str(), item["env"].as_str()) {
        (None, None) => "global".into(),
        (Some(r), None) => format!("repository {r}"),
        (None, Some(e)) => format!("environment {e}"),
        (Some(r), Some(e)) => format!("repository {r}, environment {e}"),
    }
}

/// The value on standard input, less one trailing newline (what `echo` and a typed line add).
fn value_from_stdin(name: &str) -> Result<String, Failure> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Enter the value of {name}, then Ctrl-D:");
    }
    let mut value = String::new();
    stdin.read_to_string(&mut value).map_err(|e| {
        Failure::Usage(format!(
            "cannot read the value of {name} from standard input: {e} (it must be UTF-8 text)"
        ))
    })?;
    if let Some(v) = value.strip_suffix('\n') {
        value = v.strip_suffix('\r').unwrap_or(v).to_string();
    }
    if value.is_empty() {
        return Err(Failure::Usage(format!(
            "no value for {name} on standard input: pipe it in, e.g. `printf %s \"$VALUE\" | shipway secret set {name}`"
        )));
    }
    Ok(value)
}

fn print_list(items: Vec<Value>, format: Option<OutputFormat>, with_value: bool) {
    match format {
        Some(OutputFormat::Json) => outln!(
            "{}",
            serde_json::to_string_pretty(&items).unwrap_or_default()
        ),
        Some(OutputFormat::Yaml) => out!("{}", output::to_yaml(&Value::Array(items))),
        Some(OutputFormat::Name) => items
            .iter()
            .for_each(|s| outln!("{}", s["name"].as_str().unwrap_or_default())),
        _ => {
            let mut header = vec!["NAME"];
            if with_value {
                header.push("VALUE");
            }
            header.extend(["REPO", "ENV", "UPDATED", "BY"]);
            let mut rows = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
            for s in &items {
                let field =
                    |f: &str| output::escape_terminal(s[f].as_str().unwrap_or("")).into_owned();
                let mut row = vec![field("name")];
                if with_value {
                    row.push(field("value"));
                }
                for f in ["repo", "env"] {
                    row.push(
                        s[f].as_str()
                            .map_or("-".into(), |v| output::escape_terminal(v).into_owned()),
                    );
                }
                row.extend([field("updatedAt"), field("updatedBy")]);
                rows.push(row);
            }
            out!("{}", output::align(&rows));
        }
    }
}

pub async fn secret(client: &Client, command: SecretCommand) -> Result<(), Failure> {
    match command {
        SecretCommand::Set { name, scope } => {
            let value = value_from_stdin(&name)?;
            let set = client
                .set_setting("secrets", &name, &query(&scope), &value)
                .await?;
            outln!(
                "secret {} set in {}",
                set["name"].as_str().unwrap_or(&name),
                scope_words(&set)
            );
        }
        SecretCommand::List { scope, output } => {
            let items = client.settings("secrets", &query(&scope)).await?;
            print_list(items, output, false);
        }
        SecretCommand::Delete { names, scope } => {
            for name in names {
                let gone = client
                    .delete_setting("secrets", &name, &query(&scope))
                    .await?;
                outln!(
                    "secret {} deleted from {}",
                    gone["name"].as_str().unwrap_or(&name),
                    scope_words(&gone["scope"])
                );
            }
        }
    }
    Ok(())
}

pub async fn var(client: &Client, command: VarCommand) -> Result<(), Failure> {
    match command {
        VarCommand::Set { name, value, scope } => {
            let set = client
                .set_setting("variables", &name, &query(&scope), &value)
                .await?;
            outln!(
                "variable {} set in {}",
                set["name"].as_str().unwrap_or(&name),
                scope_words(&set)
            );
        }
        VarCommand::List { scope, output } => {
            let items = client.settings("variables", &query(&scope)).await?;
            print_list(items, output, true);
        }
        VarCommand::Delete { names, scope } => {
            for name in names {
                let gone = client
                    .delete_setting("variables", &name, &query(&scope))
                    .await?;
                outln!(
                    "variable {} deleted from {}",
                    gone["name"].as_str().unwrap_or(&name),
                    scope_words(&gone["scope"])
                );
            }
        }
    }
    Ok(())
}
