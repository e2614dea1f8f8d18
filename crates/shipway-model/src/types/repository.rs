//! `Repository` (shipway.dev/v1alpha1): a git repository Shipway serves itself (`spec.hosted`)
//! or fetches (`spec.url`), and Argo CD's repository Secret read as one.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::condition::Condition;
use crate::Object;

pub const GROUP: &str = "shipway.dev";
pub const KIND: &str = "Repository";
/// How often an external repository is fetched when `spec.pollInterval` is not set (Argo CD's
/// `timeout.reconciliation`, 180 s).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(180);
/// The label that marks an Argo CD repository Secret, and its value.
pub const ARGOCD_SECRET_TYPE: &str = "argocd.argoproj.io/secret-type";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositorySpec {
    /// Served by Shipway at `/git/NAME.git`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted: Option<bool>,
    /// An external repository's clone URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Secret (same namespace) with `username`/`password` or `sshPrivateKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
    /// A duration such as `180s`, `5m` or `1h30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<String>,
    /// A Secret whose `secret` key verifies webhook deliveries for this repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_ref: Option<SecretRef>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    pub name: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl RepositorySpec {
    pub fn is_hosted(&self) -> bool {
        self.hosted == Some(true)
    }

    /// `spec.pollInterval`, or the default when absent or unreadable (admission refuses an
    /// unreadable one, so that is an object stored before the check).
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(DEFAULT_POLL_INTERVAL)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryStatus {
    /// The clone URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Each branch and the commit sha it points at.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub heads: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A Go-style duration made of `<integer><unit>` parts, units `ms`, `s`, `m`, `h` (`90s`,
/// `1h30m`); `None` for anything else or zero.
pub fn parse_duration(s: &str) -> Option<Duration> {
    duration_of(s, false)
}

/// [`parse_duration`] with days and weeks too (`7d`, `2w`, `1d12h`), for lifetimes such as a
/// token's, which Go's units make awkward to write.
pub fn parse_long_duration(s: &str) -> Option<Duration> {
    duration_of(s, true)
}

fn duration_of(s: &str, days: bool) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if days && rest.starts_with('d') {
            (Duration::from_secs(86_400), 1)
        } else if days && rest.starts_with('w') {
            (Duration::from_secs(7 * 86_400), 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
    }
    (!total.is_zero()).then_some(total)
}

/// Whether `url` is a clone URL Shipway can fetch: `https://`, `http://`, `ssh://`, `file://`
/// with a host or path after the scheme, or scp-like `user@host:path`.
pub fn is_clone_url(url: &str) -> bool {
    if url.starts_with('-') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    for scheme in ["https://", "http://", "ssh://", "file://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return rest.len() > 1;
        }
    }
    // scp-like: user@host:path, the host before the first ':' and no '/' before it.
    if let Some((user_host, path)) = url.split_once(':')
        && let Some((user, host)) = user_host.split_once('@')
    {
        return !user.is_empty() && !host.is_empty() && !host.contains('/') && !path.is_empty();
    }
    false
}

/// An external repository as an Argo CD repository Secret describes it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExternalRepository {
    /// The Secret's `name` key, else the Secret's own name.
    pub name: String,
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ssh_private_key: Option<String>,
}

impl std::fmt::Debug for ExternalRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalRepository")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "ssh_private_key",
                &self.ssh_private_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Reads an Argo CD repository Secret (label `argocd.argoproj.io/secret-type: repository`,
/// keys `url`, `username`, `password`, `sshPrivateKey`, `name`): `None` when `secret` is not
/// one, else the repository or what is wrong with it, naming the Secret and the key.
pub fn from_argocd_secret(secret: &Object) -> Option<Result<ExternalRepository, String>> {
    if !secret.group().is_empty() || secret.kind != "Secret" {
        return None;
    }
    if secret
        .metadata
        .labels
        .get(ARGOCD_SECRET_TYPE)
        .map(String::as_str)
        != Some("repository")
    {
        return None;
    }
    Some(read_argocd_secret(secret))
}

fn read_argocd_secret(secret: &Object) -> Result<ExternalRepository, String> {
    let who = format!(
        "Secret {}/{}",
        secret.metadata.namespace.as_deref().unwrap_or("default"),
        secret.metadata.name
    );
    let key = |k: &str| -> Result<Option<String>, String> {
        // Admission turns stringData into data; a Secret not yet admitted may still have it.
        if let Some(Value::String(s)) = secret.body.get("stringData").and_then(|d| d.get(k)) {
            return Ok(Some(s.clone()));
        }
        match secret.body.get("data").and_then(|d| d.get(k)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(b64)) => {
                let bytes = STANDARD
                    .decode(b64)
                    .map_err(|_| format!("{who}: data[{k}]: expected base64"))?;
                String::from_utf8(bytes)
                    .map(Some)
                    .map_err(|_| format!("{who}: data[{k}]: expected UTF-8 text"))
            }
            Some(_) => Err(format!("{who}: data[{k}]: expected a base64 string")),
        }
    };
    let url = key("url")?
        .ok_or_else(|| format!("{who}: a repository Secret needs the key url (the clone URL)"))?;
    if !is_clone_url(&url) {
        return Err(format!(
            "{who}: data[url]: expected an https://, http://, ssh://, file:// or git@host:path URL"
        ));
    }
    Ok(ExternalRepository {
        name: key("name")?.unwrap_or_else(|| secret.metadata.name.clone()),
        url,
        username: key("username")?,
        password: key("password")?,
        ssh_private_key: key("sshPrivateKey")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(parse_duration("180s"), Some(Duration::from_secs(180)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", "10", "s", "5 m", "0s", "-1s", "1d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn clone_urls() {
        for good in [
            "https://github.com/argoproj/argocd-example-apps.git",
            "http://127.0.0.1:7070/git/apps.git",
            "ssh://git@example.com/x.git",
            "file:///tmp/repo",
            "git@github.com:argoproj/argocd-example-apps.git",
        ] {
            assert!(is_clone_url(good), "{good}");
        }
        for bad in [
            "",
            "ftp://x",
            "/tmp/repo",
            "-u",
            "https://",
            "git@:x",
            "https://a b",
            "host:path",
        ] {
            assert!(!is_clone_url(bad), "{bad}");
        }
    }

    #[test]
    fn an_argocd_repository_secret_is_an_external_repository() {
        let secret: Object = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "private-repo", "namespace": "argocd",
                         "labels": {"argocd.argoproj.io/secret-type": "repository"}},
            "stringData": {"url": "https://github.com/argoproj/private-repo", "password": "tok"},
            "data": {"username": STANDARD.encode("alice")}
        }))
        .unwrap();
        let repo = from_argocd_secret(&secret).unwrap().unwrap();
        assert_eq!(repo.name, "private-repo");
        assert_eq!(repo.url, "https://github.com/argoproj/private-repo");
        assert_eq!(repo.username.as_deref(), Some("alice"));
        assert_eq!(repo.password.as_deref(), Some("tok"));
        assert!(!format!("{repo:?}").contains("tok\""));

        let mut plain = secret.clone();
        plain.metadata.labels.clear();
        assert!(from_argocd_secret(&plain).is_none());
        let mut no_url = secret.clone();
        no_url.body.remove("stringData");
        let err = from_argocd_secret(&no_url).unwrap().unwrap_err();
        assert!(
            err.contains("Secret argocd/private-repo") && err.contains("url"),
            "{err}"
        );
    }
}
