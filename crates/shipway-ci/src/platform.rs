//! The platform actions of runs inside `shipway up`: `shipway/image` publishes a directory of
//! the workspace into the image store, `shipway/promote` commits an image into an overlay of a
//! repository and pushes it (with the run's own token, so the push is the run's and reaches the
//! GitOps controller like any other).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use shipway_git::hosted::Hosted;
use shipway_git::{Credentials, Signature};
use shipway_pipeline::exec::{PlatformActions, PlatformCall, PlatformOutcome, PlatformRecord};
use shipway_runtime::images::{ImageStore, normalize_reference};

use crate::promote::{self, Promotion};

/// What a run's platform actions act on and as whom.
pub struct RunPlatform {
    pub images: ImageStore,
    /// Where a hosted repository named in `repo:` is served; `None`: only URLs.
    pub hosted: Option<Arc<Hosted>>,
    /// The run's token: the password of its pushes to hosted repositories.
    pub token: Option<String>,
    /// The run's name (`app-ci-3`): the author of its promotions.
    pub run: String,
    /// The commit the run builds: an image's default tag, named in promotions.
    pub sha: String,
    /// Who approved the run's deployments so far, read when a promotion is made.
    pub approvers: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
}

impl PlatformActions for RunPlatform {
    fn run(&self, call: PlatformCall) -> Result<PlatformOutcome, String> {
        match call.action.as_str() {
            "image" => self.image(&call),
            "promote" => self.promote(&call),
            other => Err(format!("shipway/{other} is not a Shipway action")),
        }
    }
}

fn required<'a>(call: &'a PlatformCall, key: &str) -> Result<&'a str, String> {
    call.with
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("`with: {key}` is required"))
}

fn optional<'a>(call: &'a PlatformCall, key: &str) -> Option<&'a str> {
    call.with
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// `path` inside the workspace: relative, and resolving (symlinks too) under it.
fn confined(workspace: &Path, path: &str) -> Result<PathBuf, String> {
    let root = workspace
        .canonicalize()
        .map_err(|e| format!("workspace {}: {e}", workspace.display()))?;
    let full = root
        .join(path)
        .canonicalize()
        .map_err(|e| format!("`with: path` {path:?}: {e}"))?;
    if !full.starts_with(&root) {
        return Err(format!(
            "`with: path` {path:?} leaves the workspace; give a directory inside it"
        ));
    }
    if !full.is_dir() {
        return Err(format!("`with: path` {path:?} is not a directory"));
    }
    Ok(full)
}

/// An entrypoint as a shell would split it: words on whitespace, '...' and "..." kept whole.
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err(format!("`with: entrypoint` {s:?} has an unclosed quote"));
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

impl RunPlatform {
    fn image(&self, call: &PlatformCall) -> Result<PlatformOutcome, String> {
        let name = required(call, "name")?;
        let tag = optional(call, "tag").unwrap_or(&self.sha);
        let reference = normalize_reference(&format!("{name}:{tag}")).map_err(|e| e.to_string())?;
        let dir = confined(&call.workspace, optional(call, "path").unwrap_or("."))?;
        let entrypoint = words(optional(call, "entrypoint").unwrap_or_default())?;
        let env = optional(call, "env")
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| match l.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(format!("`with: env` line {l:?} is not KEY=VALUE")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let digest = self
            .images
            .import(&reference, &dir, &entrypoint, &env)
            .map_err(|e| e.to_string())?;
        let (name, tag) = reference.rsplit_once(':').unwrap_or((&reference, "latest"));
        let mut outcome = PlatformOutcome {
            lines: vec![format!("published {reference} ({digest})")],
            record: Some(PlatformRecord::Image {
                name: name.to_string(),
                tag: tag.to_string(),
                digest: digest.clone(),
            }),
            ..PlatformOutcome::default()
        };
        for (k, v) in [
            ("digest", digest.clone()),
            ("image", reference.clone()),
            ("name", name.to_string()),
            ("tag", tag.to_string()),
        ] {
            outcome.outputs.insert(k.into(), v);
        }
        Ok(outcome)
    }

    fn promote(&self, call: &PlatformCall) -> Result<PlatformOutcome, String> {
        let repo = required(call, "repo")?;
        let path = required(call, "path")?;
        let image = required(call, "image")?;
        let tag = optional(call, "tag");
        let digest = optional(call, "digest");
        let new_name = optional(call, "new-name");
        let arg = promote::image_arg(image, new_name, tag, digest)
            .map_err(|_| "give `with: tag` or `with: digest` (or both)".to_string())?;
        // The digest named in the message: given, or the store's for NAME:TAG.
        let digest = digest.map(str::to_string).or_else(|| {
            let t = tag?;
            self.images
                .resolve(&format!("{image}:{t}"))
                .ok()
                .map(|i| i.digest)
        });
        let (url, credentials) = if repo.contains("://") || repo.starts_with('/') {
            (repo.to_string(), None)
        } else {
            let hosted = self.hosted.as_ref().ok_or_else(|| {
                format!("`with: repo` {repo:?} names a hosted repository, but this run has no server to push to; give a URL")
            })?;
            shipway_model::name::validate_dns1123_label(repo).map_err(|reason| {
                format!("`with: repo` {repo:?} is neither a URL nor a hosted repository's name: {reason}")
            })?;
            (
                hosted.clone_url(repo),
                self.token.clone().map(|t| Credentials {
                    username: Some("shipway".into()),
                    password: Some(t),
                    ssh_private_key: None,
                }),
            )
        };
        let subject = optional(call, "message")
            .map(str::to_string)
            .unwrap_or_else(|| format!("Promote {arg} in {path}"));
        let approvers = (self.approvers)();
        let promotion = Promotion {
            url,
            credentials,
            path: path.to_string(),
            images: vec![arg.clone()],
            branch: optional(call, "branch").map(str::to_string),
            author: Signature {
                name: format!("run:{}", self.run),
                email: format!("{}@runs.shipway.invalid", self.run),
            },
            message: promote::message(
                &subject,
                Some(&self.run),
                Some(&self.sha),
                std::slice::from_ref(&arg),
                digest.as_deref(),
                &approvers,
            ),
        };
        let done = promote::promote(&promotion).map_err(|e| e.to_string())?;
        let mut outcome = PlatformOutcome {
            lines: vec![if done.changed {
                format!(
                    "promoted {arg} in {} on {}: {}",
                    done.file, done.branch, done.commit
                )
            } else {
                format!(
                    "{} on {} already sets {arg}: nothing to commit",
                    done.file, done.branch
                )
            }],
            record: done.changed.then(|| PlatformRecord::Promotion {
                repo: repo.to_string(),
                path: path.to_string(),
                branch: done.branch.clone(),
                commit: done.commit.clone(),
                image: arg.clone(),
            }),
            ..PlatformOutcome::default()
        };
        outcome.outputs.insert("commit".into(), done.commit);
        outcome.outputs.insert("branch".into(), done.branch);
        outcome
            .outputs
            .insert("changed".into(), done.changed.to_string());
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn an_entrypoint_splits_as_a_shell_would() {
        assert_eq!(
            words("python3 -m http.server").unwrap(),
            ["python3", "-m", "http.server"]
        );
        assert_eq!(
            words("sh -c 'echo hi there' \"\"").unwrap(),
            ["sh", "-c", "echo hi there", ""]
        );
        assert!(words("sh -c 'oops").is_err());
    }
}
