//! Promotion commits against real repositories through the git CLI: the edit lands as one
//! commit, a branch that moves under the push is fetched again and the edit redone on its new
//! tip (nobody's commit lost), an overlay that already says it commits nothing, and a path
//! without a kustomization is refused naming it.

use std::path::Path;
use std::process::Command;

use shipway_ci::promote::{PromoteError, Promotion, message, promote};
use shipway_git::Signature;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const OVERLAY: &str = "# staging\nresources:\n- ../../base\n";

/// A bare repository with `overlays/staging/kustomization.yaml` on main, and its file URL.
fn config_repo(root: &Path) -> (std::path::PathBuf, String) {
    let work = root.join("work");
    std::fs::create_dir_all(work.join("overlays/staging")).unwrap();
    std::fs::write(work.join("overlays/staging/kustomization.yaml"), OVERLAY).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "config"]);
    let bare = root.join("config.git");
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    let url = format!("file://{}", bare.display());
    (bare, url)
}

fn promotion(url: &str, path: &str, image: &str) -> Promotion {
    Promotion {
        url: url.to_string(),
        credentials: None,
        path: path.to_string(),
        images: vec![image.to_string()],
        branch: None,
        author: Signature {
            name: "run:app-ci-7".into(),
            email: "app-ci-7@runs.shipway.invalid".into(),
        },
        message: message(
            "Promote web:v2",
            Some("app-ci-7"),
            Some("abc123"),
            &[image.to_string()],
            None,
            &["bob (staging)".to_string()],
        ),
    }
}

#[test]
fn a_promotion_is_one_commit_with_the_edit_and_its_trailers() {
    let root = tempfile::tempdir().unwrap();
    let (bare, url) = config_repo(root.path());
    let before = git(&bare, &["rev-parse", "main"]);
    let done = promote(&promotion(&url, "./overlays/staging/", "web:v2")).unwrap();
    assert!(done.changed);
    assert_eq!(done.branch, "main");
    assert_eq!(done.file, "overlays/staging/kustomization.yaml");
    assert_eq!(git(&bare, &["rev-parse", "main"]), done.commit);
    assert_eq!(git(&bare, &["rev-parse", "main~1"]), before);
    assert_eq!(
        git(&bare, &["show", "main:overlays/staging/kustomization.yaml"]),
        "# staging\nresources:\n- ../../base\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n- name: web\n  newTag: v2"
    );
    assert_eq!(
        git(&bare, &["log", "-1", "--format=%an <%ae>%n%B", "main"]),
        "run:app-ci-7 <app-ci-7@runs.shipway.invalid>\nPromote web:v2\n\nShipway-Run: app-ci-7\nSource-Commit: abc123\nImage: web:v2\nApproved-by: bob (staging)"
    );
    // Promoting the same again changes nothing and commits nothing.
    let again = promote(&promotion(&url, "overlays/staging", "web:v2")).unwrap();
    assert!(!again.changed);
    assert_eq!(again.commit, done.commit);
    assert_eq!(git(&bare, &["rev-parse", "main"]), done.commit);
}

/// The remote's pre-receive hook plays another writer: on the first push it commits a change
/// of its own to main, so the promotion's push loses the race (the ref is no longer where the
/// promotion started). The promotion fetches again and redoes the edit on top of that commit.
#[test]
fn a_branch_that_moves_under_the_push_is_fetched_again_and_nothing_is_lost() {
    let root = tempfile::tempdir().unwrap();
    let (bare, url) = config_repo(root.path());
    let marker = root.path().join("raced");
    let hook = bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            r#"#!/bin/sh
cat >/dev/null
[ -e '{marker}' ] && exit 0
touch '{marker}'
# Outside the push's quarantine, as another writer would be.
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
tip=$(git rev-parse refs/heads/main)
blob=$(echo 'other: change' | git hash-object -w --stdin)
tree=$( (git ls-tree "$tip"; printf '100644 blob %s\tother.yaml\n' "$blob") | git mktree)
c=$(GIT_AUTHOR_NAME=other GIT_AUTHOR_EMAIL=o@x GIT_COMMITTER_NAME=other GIT_COMMITTER_EMAIL=o@x git commit-tree "$tree" -p "$tip" -m other)
git update-ref refs/heads/main "$c" "$tip"
"#,
            marker = marker.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    let done = promote(&promotion(&url, "overlays/staging", "web:v2")).unwrap();
    assert!(marker.exists(), "the other writer never ran");
    assert_eq!(git(&bare, &["rev-parse", "main"]), done.commit);
    // The other writer's commit is the promotion's parent, and both changes are on main.
    assert_eq!(git(&bare, &["log", "-1", "--format=%s", "main~1"]), "other");
    assert_eq!(git(&bare, &["show", "main:other.yaml"]), "other: change");
    assert!(
        git(&bare, &["show", "main:overlays/staging/kustomization.yaml"]).contains("newTag: v2")
    );
}

#[test]
fn a_path_without_a_kustomization_is_refused_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let (bare, url) = config_repo(root.path());
    let before = git(&bare, &["rev-parse", "main"]);
    let err = promote(&promotion(&url, "overlays/production", "web:v2")).unwrap_err();
    assert!(
        matches!(err, PromoteError::NoKustomization { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("\"overlays/production\" is not a directory with a kustomization at main"),
        "{text}"
    );
    let mut p = promotion(&url, "overlays/staging", "web:v2");
    p.branch = Some("release".into());
    let err = promote(&p).unwrap_err().to_string();
    assert!(err.contains("has no branch \"release\""), "{err}");
    let err = promote(&promotion(&url, "overlays/staging", "web")).unwrap_err();
    assert!(matches!(err, PromoteError::Edit(_)), "{err:?}");
    assert_eq!(
        git(&bare, &["rev-parse", "main"]),
        before,
        "nothing was pushed"
    );
}
