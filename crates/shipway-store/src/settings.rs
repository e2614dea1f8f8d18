//! Pipeline secrets and variables, GitHub's model: a name in a scope (global, a repository, an
//! environment, or both), rows of their own table rather than objects, so no list, watch or
//! change row of the object API can ever carry a secret's value. A secret's value is sealed with
//! the store's key; a variable's is plain.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shipway_model::Key;

use crate::StoreError;
use crate::backend::{NewAudit, Result, Tx};
use crate::core::Ctx;
use crate::seal::Sealer;

/// The largest value GitHub accepts for a secret or a variable (48 KiB).
pub const MAX_VALUE_BYTES: usize = 48 * 1024;

/// Secrets (sealed, never returned) or variables (plain, returned).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SettingKind {
    Secret,
    Variable,
}

impl SettingKind {
    fn as_str(self) -> &'static str {
        match self {
            SettingKind::Secret => "secret",
            SettingKind::Variable => "variable",
        }
    }

    /// The kind the audit trail names them by.
    fn audit_kind(self) -> &'static str {
        match self {
            SettingKind::Secret => "PipelineSecret",
            SettingKind::Variable => "PipelineVariable",
        }
    }
}

/// Where a secret or variable applies: everywhere (both `None`), one repository, one environment,
/// or one environment of one repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

impl Scope {
    pub fn new(repo: Option<&str>, env: Option<&str>) -> Scope {
        let some = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        Scope {
            repo: some(repo),
            env: some(env),
        }
    }

    fn columns(&self) -> (&str, &str) {
        (
            self.repo.as_deref().unwrap_or(""),
            self.env.as_deref().unwrap_or(""),
        )
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.repo, &self.env) {
            (None, None) => write!(f, "global scope"),
            (Some(r), None) => write!(f, "repository {r}"),
            (None, Some(e)) => write!(f, "environment {e}"),
            (Some(r), Some(e)) => write!(f, "repository {r}, environment {e}"),
        }
    }
}

/// One secret or variable as the API shows it: a secret's value is never here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Setting {
    pub name: String,
    #[serde(flatten)]
    pub scope: Scope,
    /// A variable's value; always `None` for a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub updated_at: String,
    pub updated_by: String,
}

/// A row of `pipeline_settings`.
#[derive(Clone, Debug)]
pub(crate) struct SettingRow {
    pub repo: String,
    pub env: String,
    pub name: String,
    pub value: String,
    pub updated_at: String,
    pub updated_by: String,
}

/// The name as stored (upper case) if it follows GitHub's rules: letters, digits and `_`, not
/// starting with a digit nor with `GITHUB_`.
pub fn normalize_name(kind: SettingKind, name: &str) -> std::result::Result<String, String> {
    let what = kind.as_str();
    if name.is_empty() {
        return Err(format!("a {what} name is required"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "{what} name {name:?} contains {c:?}: names can only contain letters [A-Z], digits [0-9] or underscores (_)"
        ));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "{what} name {name:?} starts with a digit: names must start with a letter or an underscore"
        ));
    }
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("GITHUB_") {
        return Err(format!(
            "{what} name {name:?} starts with GITHUB_, which is reserved"
        ));
    }
    Ok(upper)
}

/// The key the audit trail files a secret or variable under (`PipelineSecret.shipway.dev/NAME`).
pub fn audit_key(kind: SettingKind, name: &str) -> Key {
    Key {
        group: "shipway.dev".into(),
        kind: kind.audit_kind().into(),
        namespace: String::new(),
        name: name.to_string(),
    }
}

fn seal_context(scope: &Scope, name: &str) -> String {
    let (repo, env) = scope.columns();
    format!("pipeline-secret/{repo}/{env}/{name}")
}

fn invalid(kind: SettingKind, name: &str, message: String) -> StoreError {
    StoreError::Invalid {
        key: audit_key(kind, name),
        message,
    }
}

fn need_sealer<'a>(sealer: Option<&'a Sealer>, name: &str) -> Result<&'a Sealer> {
    sealer.ok_or_else(|| {
        StoreError::backend(
            format!(
                "secret {name}: this store was opened without the secret key, so it cannot keep or read secrets"
            ),
            false,
        )
    })
}

fn scope_of(row: &SettingRow) -> Scope {
    Scope::new(Some(&row.repo), Some(&row.env))
}

/// Sets (creates or replaces) one secret or variable and audits it, naming who, the name and the
/// scope, never the value.
pub(crate) fn set(
    tx: &mut dyn Tx,
    kind: SettingKind,
    scope: &Scope,
    name: &str,
    value: &str,
    ctx: &Ctx<'_>,
) -> Result<Setting> {
    let name = normalize_name(kind, name).map_err(|m| invalid(kind, name, m))?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(invalid(
            kind,
            &name,
            format!(
                "value is {} bytes, more than the {MAX_VALUE_BYTES} a {} may hold",
                value.len(),
                kind.as_str()
            ),
        ));
    }
    let stored = match kind {
        SettingKind::Secret => {
            need_sealer(ctx.sealer, &name)?.seal(&seal_context(scope, &name), value.as_bytes())
        }
        SettingKind::Variable => value.to_string(),
    };
    let (repo, env) = scope.columns();
    let replaced = tx
        .settings(kind.as_str())?
        .iter()
        .any(|r| r.repo == repo && r.env == env && r.name == name);
    tx.put_setting(
        kind.as_str(),
        &SettingRow {
            repo: repo.to_string(),
            env: env.to_string(),
            name: name.clone(),
            value: stored,
            updated_at: ctx.now.seconds.clone(),
            updated_by: ctx.actor.to_string(),
        },
    )?;
    let verb = if replaced { "updated" } else { "created" };
    audit(
        tx,
        kind,
        &name,
        "set",
        &format!("{} {name} {verb} in {scope}", kind.as_str()),
        ctx,
    )?;
    Ok(Setting {
        name,
        scope: scope.clone(),
        value: (kind == SettingKind::Variable).then(|| value.to_string()),
        updated_at: ctx.now.seconds.clone(),
        updated_by: ctx.actor.to_string(),
    })
}

/// Deletes one secret or variable and audits it; `NotFound` when the scope has no such name.
pub(crate) fn delete(
    tx: &mut dyn Tx,
    kind: SettingKind,
    scope: &Scope,
    name: &str,
    ctx: &Ctx<'_>,
) -> Result<()> {
    let name = normalize_name(kind, name).map_err(|m| invalid(kind, name, m))?;
    let (repo, env) = scope.columns();
    if !tx.delete_setting(kind.as_str(), repo, env, &name)? {
        return Err(StoreError::NotFound(audit_key(kind, &name)));
    }
    audit(
        tx,
        kind,
        &name,
        "delete",
        &format!("{} {name} deleted from {scope}", kind.as_str()),
        ctx,
    )
}

fn audit(
    tx: &mut dyn Tx,
    kind: SettingKind,
    name: &str,
    action: &str,
    message: &str,
    ctx: &Ctx<'_>,
) -> Result<()> {
    let rv = tx.current_rv()?;
    tx.append_audit(&NewAudit {
        time: &ctx.now.millis,
        actor: ctx.actor,
        action,
        key: &audit_key(kind, name),
        rv,
        message,
    })
}

/// The secrets or variables in `scope` (every scope when `None`), by scope then name; a secret's
/// value is left out.
pub(crate) fn list(
    tx: &mut dyn Tx,
    kind: SettingKind,
    scope: Option<&Scope>,
) -> Result<Vec<Setting>> {
    let mut out: Vec<Setting> = tx
        .settings(kind.as_str())?
        .into_iter()
        .filter(|r| scope.is_none_or(|s| *s == scope_of(r)))
        .map(|r| Setting {
            scope: scope_of(&r),
            value: (kind == SettingKind::Variable).then_some(r.value),
            name: r.name,
            updated_at: r.updated_at,
            updated_by: r.updated_by,
        })
        .collect();
    out.sort_by(|a, b| (&a.scope, &a.name).cmp(&(&b.scope, &b.name)));
    Ok(out)
}

/// What a run in `repo`, for a job bound to `env`, is given: the global ones, overridden by the
/// repository's, by the environment's, then by that environment's of that repository (the most
/// specific wins, as in GitHub). Secrets opened.
pub(crate) fn resolve(
    tx: &mut dyn Tx,
    kind: SettingKind,
    repo: Option<&str>,
    env: Option<&str>,
    sealer: Option<&Sealer>,
) -> Result<BTreeMap<String, String>> {
    let wanted = Scope::new(repo, env);
    let rank = |s: &Scope| -> Option<u8> {
        let repo_ok = s.repo.is_none() || s.repo == wanted.repo;
        let env_ok = s.env.is_none() || s.env == wanted.env;
        (repo_ok && env_ok).then(|| u8::from(s.repo.is_some()) + 2 * u8::from(s.env.is_some()))
    };
    let mut rows: Vec<(u8, SettingRow)> = tx
        .settings(kind.as_str())?
        .into_iter()
        .filter_map(|r| rank(&scope_of(&r)).map(|k| (k, r)))
        .collect();
    rows.sort_by_key(|(rank, _)| *rank);
    let mut out = BTreeMap::new();
    for (_, row) in rows {
        let value = match kind {
            SettingKind::Variable => row.value,
            SettingKind::Secret => {
                let sealer = need_sealer(sealer, &row.name)?;
                let plain = sealer
                    .open(&seal_context(&scope_of(&row), &row.name), &row.value)
                    .map_err(|e| StoreError::backend(e.to_string(), false))?;
                String::from_utf8(plain).map_err(|_| {
                    StoreError::backend(
                        format!(
                            "secret {}: value is not UTF-8: the database is damaged",
                            row.name
                        ),
                        false,
                    )
                })?
            }
        };
        out.insert(row.name, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_githubs_rules_and_are_stored_upper_case() {
        let k = SettingKind::Secret;
        assert_eq!(normalize_name(k, "db_Password1").unwrap(), "DB_PASSWORD1");
        assert_eq!(normalize_name(k, "_x").unwrap(), "_X");
        for (bad, why) in [
            ("", "required"),
            ("1ABC", "starts with a digit"),
            ("A-B", "contains '-'"),
            ("A B", "contains ' '"),
            ("github_token", "GITHUB_"),
            ("ÄX", "contains 'Ä'"),
        ] {
            let err = normalize_name(k, bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn scopes_say_what_they_name() {
        assert_eq!(Scope::new(None, Some("")).to_string(), "global scope");
        assert_eq!(
            Scope::new(Some("app"), Some("prod")).to_string(),
            "repository app, environment prod"
        );
    }
}
