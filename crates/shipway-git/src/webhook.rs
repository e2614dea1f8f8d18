//! Push notifications from git hosts: which host sent one (GitHub, GitLab, Gitea or one of
//! their look-alikes), whether its signature holds for a repository's secret (in constant time),
//! and which repository URLs and revision it is about. No IO: the server's handler does that.

use hmac::{KeyInit, Mac};
use serde_json::Value;
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The sender, told by its headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// `X-Hub-Signature-256: sha256=HEX`, the HMAC-SHA256 of the body.
    GitHub,
    /// `X-Gitlab-Token`: the secret itself.
    GitLab,
    /// `X-Gitea-Signature` (or Gogs' `X-Gogs-Signature`): the HMAC-SHA256 of the body in hex.
    Gitea,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "GitHub",
            Provider::GitLab => "GitLab",
            Provider::Gitea => "Gitea",
        }
    }
}

/// A delivery's credentials: what it claims and how to check that claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub provider: Provider,
    /// The event: `push`, `ping`, `Push Hook`, `Tag Push Hook`...
    pub event: String,
    signature: Vec<u8>,
}

/// Why a delivery is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error(
        "not a webhook delivery Shipway can verify: expected X-Hub-Signature-256 (GitHub), X-Gitlab-Token (GitLab) or X-Gitea-Signature (Gitea)"
    )]
    Unsigned,
    #[error("{0} signature is malformed: {1}")]
    Malformed(&'static str, String),
    #[error("the payload is not JSON: {0}")]
    Payload(String),
}

impl Delivery {
    /// Reads the provider and its signature from `header` (looked up case-insensitively by the
    /// caller). Gitea also sends GitHub's headers; its own signature is preferred.
    pub fn from_headers(header: impl Fn(&str) -> Option<String>) -> Result<Delivery, WebhookError> {
        let event = |names: &[&str]| names.iter().find_map(|n| header(n)).unwrap_or_default();
        if let Some(sig) = header("x-gitea-signature").or_else(|| header("x-gogs-signature")) {
            let signature = hex::decode(sig.trim())
                .map_err(|e| WebhookError::Malformed("Gitea", e.to_string()))?;
            return Ok(Delivery {
                provider: Provider::Gitea,
                event: event(&["x-gitea-event", "x-gogs-event", "x-github-event"]),
                signature,
            });
        }
        if let Some(sig) = header("x-hub-signature-256") {
            let hex_part = sig
                .trim()
                .strip_prefix("sha256=")
                .ok_or_else(|| WebhookError::Malformed("GitHub", "expected sha256=HEX".into()))?;
            let signature = hex::decode(hex_part)
                .map_err(|e| WebhookError::Malformed("GitHub", e.to_string()))?;
            return Ok(Delivery {
                provider: Provider::GitHub,
                event: event(&["x-github-event"]),
                signature,
            });
        }
        if let Some(token) = header("x-gitlab-token") {
            return Ok(Delivery {
                provider: Provider::GitLab,
                event: event(&["x-gitlab-event"]),
                signature: token.into_bytes(),
            });
        }
        Err(WebhookError::Unsigned)
    }

    /// Whether the delivery was made with `secret`: constant time in the signature's bytes.
    pub fn verify(&self, secret: &[u8], body: &[u8]) -> bool {
        if secret.is_empty() {
            return false;
        }
        match self.provider {
            Provider::GitLab => self.signature.ct_eq(secret).into(),
            Provider::GitHub | Provider::Gitea => {
                let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
                    return false;
                };
                mac.update(body);
                // `verify_slice` compares in constant time.
                mac.verify_slice(&self.signature).is_ok()
            }
        }
    }
}

/// What a push payload says: the repository's URLs, the ref and the new commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Push {
    pub urls: Vec<String>,
    pub git_ref: Option<String>,
    pub after: Option<String>,
}

/// Reads the URLs a payload gives for its repository (GitHub and Gitea: `repository.html_url`,
/// `clone_url`, `ssh_url`, `git_url`; GitLab: `project.web_url`, `git_http_url`, `git_ssh_url`
/// and the older `repository.*`).
pub fn push(body: &[u8]) -> Result<Push, WebhookError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::Payload(e.to_string()))?;
    let mut urls = Vec::new();
    for (object, fields) in [
        (
            "repository",
            &[
                "html_url",
                "clone_url",
                "ssh_url",
                "git_url",
                "url",
                "homepage",
                "git_http_url",
                "git_ssh_url",
            ][..],
        ),
        (
            "project",
            &[
                "web_url",
                "git_http_url",
                "git_ssh_url",
                "http_url",
                "ssh_url",
            ][..],
        ),
    ] {
        for f in fields {
            if let Some(u) = v[object][f].as_str().filter(|u| !u.is_empty())
                && !urls.iter().any(|x| x == u)
            {
                urls.push(u.to_string());
            }
        }
    }
    let text = |k: &str| v[k].as_str().map(String::from);
    Ok(Push {
        urls,
        git_ref: text("ref"),
        after: text("after").or_else(|| text("checkout_sha")),
    })
}

/// A repository URL reduced to what identifies it, so `https://GitHub.com/a/b.git`,
/// `https://github.com/a/b`, `git@github.com:a/b.git` and `ssh://git@github.com/a/b` compare
/// equal (Argo CD's rule: host case-insensitive, `.git` and a trailing slash ignored, scp-like
/// SSH read as ssh://; scheme and user dropped, since a host serves one repository per path).
pub fn normalize_url(url: &str) -> String {
    let url = url.trim();
    let (host_and_path, scp) = match url.split_once("://") {
        Some((_, rest)) => (rest.to_string(), false),
        // git@host:path
        None => match url.split_once(':') {
            Some((host, path)) => (format!("{host}/{path}"), true),
            None => (url.to_string(), false),
        },
    };
    let without_user = match host_and_path.split_once('@') {
        Some((user, rest)) if !user.contains('/') => rest.to_string(),
        _ => host_and_path,
    };
    let (host, path) = without_user
        .split_once('/')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap_or((without_user.clone(), String::new()));
    // An explicit default port names the same server.
    let host = host.to_lowercase();
    let host = host
        .strip_suffix(":443")
        .or_else(|| host.strip_suffix(":80"))
        .or_else(|| if scp { None } else { host.strip_suffix(":22") })
        .unwrap_or(&host)
        .to_string();
    let path = path.trim_end_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    format!("{host}/{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_lowercase(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(secret).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_of_each_provider() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        // RFC 4231 test case 2, so the HMAC itself is checked against a published value.
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let sig = format!("sha256={}", hmac_hex(b"s3cret", body));
        let d = Delivery::from_headers(headers(&[
            ("X-Hub-Signature-256", &sig),
            ("X-GitHub-Event", "push"),
        ]))
        .unwrap();
        assert_eq!((d.provider, d.event.as_str()), (Provider::GitHub, "push"));
        assert!(d.verify(b"s3cret", body));
        assert!(!d.verify(b"other", body));
        assert!(!d.verify(b"s3cret", b"{}"));
        assert!(!d.verify(b"", body));

        let d = Delivery::from_headers(headers(&[
            ("X-Gitea-Signature", &hmac_hex(b"s3cret", body)),
            ("X-Gitea-Event", "push"),
            ("X-Hub-Signature-256", "sha256=00"),
        ]))
        .unwrap();
        assert_eq!(d.provider, Provider::Gitea);
        assert!(d.verify(b"s3cret", body));

        let d = Delivery::from_headers(headers(&[
            ("X-Gitlab-Token", "s3cret"),
            ("X-Gitlab-Event", "Push Hook"),
        ]))
        .unwrap();
        assert_eq!(
            (d.provider, d.event.as_str()),
            (Provider::GitLab, "Push Hook")
        );
        assert!(d.verify(b"s3cret", body));
        assert!(!d.verify(b"s3cre", body));
        assert!(!d.verify(b"s3cret!", body));

        assert_eq!(
            Delivery::from_headers(headers(&[])),
            Err(WebhookError::Unsigned)
        );
        assert!(matches!(
            Delivery::from_headers(headers(&[("X-Hub-Signature-256", "sha1=ab")])),
            Err(WebhookError::Malformed("GitHub", _))
        ));
        assert!(matches!(
            Delivery::from_headers(headers(&[("X-Gitea-Signature", "zz")])),
            Err(WebhookError::Malformed("Gitea", _))
        ));
    }

    #[test]
    fn payload_urls_and_normal_forms() {
        let github = br#"{"ref":"refs/heads/main","after":"abc","repository":{"html_url":"https://github.com/a/b","clone_url":"https://github.com/a/b.git","ssh_url":"git@github.com:a/b.git"}}"#;
        let p = push(github).unwrap();
        assert_eq!(p.git_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(p.after.as_deref(), Some("abc"));
        assert_eq!(p.urls.len(), 3);
        let gitlab = br#"{"object_kind":"push","ref":"refs/heads/main","checkout_sha":"def","project":{"web_url":"https://gitlab.com/g/p","git_http_url":"https://gitlab.com/g/p.git"}}"#;
        let p = push(gitlab).unwrap();
        assert_eq!(p.after.as_deref(), Some("def"));
        assert_eq!(
            p.urls,
            ["https://gitlab.com/g/p", "https://gitlab.com/g/p.git"]
        );
        assert!(matches!(push(b"not json"), Err(WebhookError::Payload(_))));

        for same in [
            "https://github.com/a/b",
            "https://GitHub.com/a/b.git",
            "https://github.com/a/b/",
            "git@github.com:a/b.git",
            "ssh://git@github.com/a/b",
            "https://user@github.com:443/a/b.git",
        ] {
            assert_eq!(normalize_url(same), "github.com/a/b", "{same}");
        }
        assert_ne!(normalize_url("https://github.com/a/bc"), "github.com/a/b");
        assert_ne!(normalize_url("https://github.com/A/b"), "github.com/a/b");
    }
}
