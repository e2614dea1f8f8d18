//! shipway-git against real repositories made by the `git` CLI in temporary directories.

use std::path::Path;
use std::process::Command;

use shipway_fs::{DiskFs, FileSystem};
use shipway_git::{Credentials, Error, Repo, Signature, fetch};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A work tree with `files` committed on `main`.
fn work_repo(dir: &Path, files: &[(&str, &str)]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "--quiet", "-b", "main"]);
    write_files(dir, files);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "--quiet", "-m", "first"]);
    git(dir, &["rev-parse", "HEAD"])
}

fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn me() -> Signature {
    Signature {
        name: "Shipway".into(),
        email: "shipway@example.com".into(),
    }
}

#[test]
fn resolves_branches_tags_shas_and_head() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    let first = work_repo(&dir, &[("a.txt", "one")]);
    git(&dir, &["tag", "light"]);
    write_files(&dir, &[("a.txt", "two")]);
    git(&dir, &["commit", "--quiet", "-am", "second"]);
    let second = git(&dir, &["rev-parse", "HEAD"]);
    git(&dir, &["tag", "-a", "v2", "-m", "annotated"]);
    let tag_object = git(&dir, &["rev-parse", "v2"]);
    assert_ne!(tag_object, second, "v2 is an annotated tag object");
    git(&dir, &["branch", "feature", &first]);

    let repo = Repo::open(&dir).unwrap();
    let check = |rev: &str, name: &str, sha: &str| {
        let r = repo.resolve(rev).unwrap_or_else(|e| panic!("{rev}: {e}"));
        assert_eq!((r.name.as_str(), r.sha.as_str()), (name, sha), "{rev}");
    };
    check("main", "refs/heads/main", &second);
    check("feature", "refs/heads/feature", &first);
    check("light", "refs/tags/light", &first);
    check("v2", "refs/tags/v2", &second);
    check("refs/heads/feature", "refs/heads/feature", &first);
    check("HEAD", "refs/heads/main", &second);
    check("", "refs/heads/main", &second);
    check(&first, &first, &first);
    check(&first[..8], &first, &first);

    let dash = repo.resolve("--upload-pack=evil").unwrap_err();
    assert!(matches!(dash, Error::DashRevision { .. }), "{dash}");
    let unknown = repo.resolve("no-such-branch").unwrap_err().to_string();
    assert!(
        unknown.contains("\"no-such-branch\"") && unknown.contains(&dir.display().to_string()),
        "{unknown}"
    );
    let missing_sha = repo.resolve("deadbeefdeadbeef").unwrap_err();
    assert!(
        matches!(missing_sha, Error::UnknownRevision { .. }),
        "{missing_sha}"
    );
    // A bare clone resolves the same way.
    let bare = tmp.path().join("bare.git");
    git(
        tmp.path(),
        &[
            "clone",
            "--quiet",
            "--bare",
            dir.to_str().unwrap(),
            "bare.git",
        ],
    );
    let bare = Repo::open(&bare).unwrap();
    assert_eq!(bare.resolve("v2").unwrap().sha, second);
    assert_eq!(bare.resolve("HEAD").unwrap().sha, second);
}

const BASE: &[(&str, &str)] = &[
    (
        "base/kustomization.yaml",
        "resources:\n- deployment.yaml\n- service.yaml\n",
    ),
    (
        "base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: web:1\n",
    ),
    (
        "base/service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n",
    ),
    (
        "overlays/prod/kustomization.yaml",
        "resources:\n- ../../base\nnamePrefix: prod-\nimages:\n- name: web\n  newTag: \"2\"\nconfigMapGenerator:\n- name: settings\n  literals: [LEVEL=info]\n",
    ),
    (
        "plain/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    ),
];

#[test]
fn a_commits_tree_renders_as_its_checkout_does() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    let sha = work_repo(&dir, BASE);
    // Uncommitted edits are not what the commit holds.
    write_files(&dir, &[("base/service.yaml", "not: [yaml")]);
    let repo = Repo::open(&dir).unwrap();
    let tree = repo.tree(&sha).unwrap();
    assert_eq!(tree.commit(), sha);
    let opts = shipway_kustomize::Options::default();
    let from_git = shipway_kustomize::build(&tree, Path::new("overlays/prod"), &opts).unwrap();
    assert!(
        from_git.contains("name: prod-web") && from_git.contains("image: web:2"),
        "{from_git}"
    );
    assert!(from_git.contains("name: prod-settings-"), "{from_git}");
    // The same files from disk render to the same bytes.
    let clean = tmp.path().join("clean");
    git(
        tmp.path(),
        &["clone", "--quiet", dir.to_str().unwrap(), "clean"],
    );
    let from_disk = shipway_kustomize::build(&DiskFs, &clean.join("overlays/prod"), &opts).unwrap();
    assert_eq!(from_git, from_disk);
    // Absolute paths read from the repository root too; render returns objects with sources.
    let objects = shipway_kustomize::render(&tree, Path::new("/overlays/prod"), &opts).unwrap();
    assert_eq!(objects.len(), 3);
    let plain = shipway_kustomize::render_dir(&tree, Path::new("plain"), false).unwrap();
    assert_eq!(plain.len(), 1);
    assert_eq!(
        tree.list(Path::new("base")).unwrap(),
        ["deployment.yaml", "kustomization.yaml", "service.yaml"]
    );
    assert!(tree.is_dir(Path::new("/")) && tree.is_dir(Path::new("")));
    assert!(!tree.exists(Path::new("base/nope.yaml")));
    // A tree is shared across threads.
    let t = tree.clone();
    std::thread::spawn(move || assert!(t.exists(Path::new("plain/a.yaml"))))
        .join()
        .unwrap();
}

#[test]
fn links_stay_inside_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    std::fs::create_dir_all(dir.join("app")).unwrap();
    write_files(&dir, BASE);
    std::os::unix::fs::symlink("../base", dir.join("app/base")).unwrap();
    std::os::unix::fs::symlink("deployment.yaml", dir.join("base/link.yaml")).unwrap();
    std::os::unix::fs::symlink("../../outside", dir.join("app/out")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("app/abs")).unwrap();
    std::os::unix::fs::symlink("loop2", dir.join("app/loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", dir.join("app/loop2")).unwrap();
    let sha = work_repo(&dir, &[]);
    let tree = Repo::open(&dir).unwrap().tree(&sha).unwrap();

    let via_link = tree.read(Path::new("app/base/link.yaml")).unwrap();
    assert_eq!(
        via_link,
        tree.read(Path::new("base/deployment.yaml")).unwrap()
    );
    assert_eq!(
        tree.real_path(Path::new("/app/base/link.yaml")).unwrap(),
        Path::new("/base/deployment.yaml")
    );
    assert!(tree.is_dir(Path::new("app/base")));
    let opts = shipway_kustomize::Options::default();
    assert_eq!(
        shipway_kustomize::render(&tree, Path::new("app/base"), &opts)
            .unwrap()
            .len(),
        2
    );

    for path in [
        "app/out/x.yaml",
        "app/abs/passwd",
        "../w/base/service.yaml",
        "base/../../x",
    ] {
        let err = tree.read(Path::new(path)).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::PermissionDenied,
            "{path}: {err}"
        );
        assert!(
            err.to_string().contains("outside repository"),
            "{path}: {err}"
        );
        assert!(
            tree.exists(Path::new(path)),
            "{path}: refused, so reading says why"
        );
        assert!(!tree.is_dir(Path::new(path)));
    }
    let looped = tree.read(Path::new("app/loop1")).unwrap_err();
    assert!(looped.to_string().contains("too many levels"), "{looped}");
    // A kustomization reached through a link out of the repository is not found: nothing
    // outside is read.
    let err = shipway_kustomize::render(&tree, Path::new("app/out"), &opts).unwrap_err();
    assert!(err.to_string().contains("unable to find"), "{err}");
}

#[test]
fn concurrent_commits_all_land_through_the_compare_and_swap() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("r.git");
    git(
        tmp.path(),
        &["init", "--quiet", "--bare", "-b", "main", "r.git"],
    );
    let repo = Repo::open(&bare).unwrap();
    let first = repo
        .commit("main", &[("README", Some(b"hello\n"))], &me(), "start")
        .unwrap();
    assert_eq!(repo.resolve("main").unwrap().sha, first);
    let writers = 4;
    let handles: Vec<_> = (0..writers)
        .map(|i| {
            let repo = repo.clone();
            std::thread::spawn(move || {
                for j in 0..3 {
                    let path = format!("w{i}/f{j}.txt");
                    let body = format!("{i}-{j}");
                    repo.commit("main", &[(&path, Some(body.as_bytes()))], &me(), &path)
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let tip = repo.resolve("main").unwrap().sha;
    let tree = repo.tree(&tip).unwrap();
    for i in 0..writers {
        for j in 0..3 {
            let text = tree.read(Path::new(&format!("w{i}/f{j}.txt"))).unwrap();
            assert_eq!(
                text,
                format!("{i}-{j}").as_bytes(),
                "lost update of w{i}/f{j}"
            );
        }
    }
    let count = git(&bare, &["rev-list", "--count", "main"]);
    assert_eq!(count, (1 + writers * 3).to_string());
    let log = git(&bare, &["log", "-1", "--format=%an <%ae>", "main"]);
    assert_eq!(log, "Shipway <shipway@example.com>");

    // A delete and an unchanged write; a path that leaves the repository is refused.
    let after = repo
        .commit("main", &[("README", None)], &me(), "drop readme")
        .unwrap();
    assert!(!repo.tree(&after).unwrap().exists(Path::new("README")));
    let same = repo
        .commit("main", &[("w0/f0.txt", Some(b"0-0"))], &me(), "noop")
        .unwrap();
    assert_eq!(same, after, "no change, no commit");
    for bad in ["../x", "/abs", ".git/config", "a//b"] {
        let err = repo
            .commit("main", &[(bad, Some(b"x"))], &me(), "bad")
            .unwrap_err();
        assert!(matches!(err, Error::BadPath { .. }), "{bad}: {err}");
    }
    let err = repo
        .commit("-main", &[("x", Some(b"x"))], &me(), "bad")
        .unwrap_err();
    assert!(matches!(err, Error::BadPath { .. }), "{err}");
}

#[test]
fn commits_leave_a_work_tree_and_its_index_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    work_repo(&dir, &[("a.txt", "one")]);
    write_files(&dir, &[("a.txt", "edited, not staged")]);
    let repo = Repo::open(&dir).unwrap();
    let sha = repo
        .commit("main", &[("b.txt", Some(b"new"))], &me(), "add b")
        .unwrap();
    assert_eq!(git(&dir, &["rev-parse", "main"]), sha);
    assert_eq!(
        std::fs::read_to_string(dir.join("a.txt")).unwrap(),
        "edited, not staged"
    );
    assert!(!dir.join("b.txt").exists());
    assert_eq!(
        git(&dir, &["diff", "--cached", "--name-only", "HEAD~1"]),
        ""
    );
}

#[test]
fn fetches_a_file_url_into_a_bare_cache_and_pushes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = tmp.path().join("up");
    let first = work_repo(&upstream, BASE);
    git(&upstream, &["branch", "old"]);
    let url = format!("file://{}", upstream.display());
    let cache = tmp.path().join("cache/up.git");
    let repo = fetch(&url, &cache, None).unwrap();
    assert_eq!(repo.resolve("HEAD").unwrap().sha, first);
    assert_eq!(repo.resolve("old").unwrap().sha, first);

    write_files(
        &upstream,
        &[(
            "base/service.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web2\n",
        )],
    );
    git(&upstream, &["commit", "--quiet", "-am", "rename"]);
    let second = git(&upstream, &["rev-parse", "HEAD"]);
    git(&upstream, &["branch", "-D", "old"]);
    let repo = fetch(&url, &cache, None).unwrap();
    assert_eq!(repo.resolve("main").unwrap().sha, second);
    assert!(
        matches!(repo.resolve("old"), Err(Error::UnknownRevision { .. })),
        "pruned"
    );
    let text = repo
        .tree(&second)
        .unwrap()
        .read(Path::new("base/service.yaml"))
        .unwrap();
    assert!(String::from_utf8_lossy(&text).contains("web2"));

    // Commit and push to a bare remote; someone else's commit on it is kept.
    let remote = tmp.path().join("remote.git");
    git(
        tmp.path(),
        &[
            "clone",
            "--quiet",
            "--bare",
            upstream.to_str().unwrap(),
            "remote.git",
        ],
    );
    let remote_url = format!("file://{}", remote.display());
    let mine = fetch(&remote_url, &tmp.path().join("cache/remote.git"), None).unwrap();
    let theirs = Repo::open(&remote).unwrap();
    theirs
        .commit("main", &[("theirs.txt", Some(b"t"))], &me(), "theirs")
        .unwrap();
    let pushed = mine
        .commit_and_push(
            &remote_url,
            "main",
            &[("mine.txt", Some(b"m"))],
            &me(),
            "mine",
            None,
        )
        .unwrap();
    assert_eq!(theirs.resolve("main").unwrap().sha, pushed);
    let tree = theirs.tree(&pushed).unwrap();
    assert!(tree.exists(Path::new("theirs.txt")) && tree.exists(Path::new("mine.txt")));
    assert!(
        theirs
            .heads()
            .unwrap()
            .contains(&("main".to_string(), pushed))
    );
}

#[test]
fn credentials_never_appear_in_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens on port 9 of loopback: the fetch fails, and says so without the secrets.
    let creds = Credentials {
        username: Some("alice".into()),
        password: Some("s3cret-token".into()),
        ssh_private_key: None,
    };
    let err = fetch(
        "http://bob:hunter2@127.0.0.1:9/x.git",
        &tmp.path().join("c.git"),
        Some(&creds),
    )
    .unwrap_err()
    .to_string();
    assert!(
        !err.contains("s3cret-token") && !err.contains("hunter2"),
        "{err}"
    );
    assert!(err.contains("http://***@127.0.0.1:9/x.git"), "{err}");
    assert!(!format!("{creds:?}").contains("s3cret"));
    let err = fetch(
        "--upload-pack=touch /tmp/x",
        &tmp.path().join("d.git"),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("may not start with '-'"), "{err}");
}

/// A push refused because the remote moved is committed again on the remote's new tip and
/// pushed: both commits land. The remote moves once, from a hook of the local repository: after
/// the fetch (`reference-transaction`: a plain non-fast-forward rejection) or after the
/// remote's refs were advertised (`pre-push`: the remote's ref lock refuses it).
#[test]
fn a_refused_push_is_committed_again_on_the_remotes_new_tip() {
    for (hook, guard) in [
        (
            "reference-transaction",
            "[ \"$1\" = committed ] || exit 0\n",
        ),
        ("pre-push", ""),
    ] {
        race_then_push(hook, guard);
    }
}

fn race_then_push(hook_name: &str, guard: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = tmp.path().join("up");
    work_repo(&upstream, &[("a.txt", "a")]);
    let remote = tmp.path().join("remote.git");
    git(
        tmp.path(),
        &[
            "clone",
            "--quiet",
            "--bare",
            upstream.to_str().unwrap(),
            "remote.git",
        ],
    );
    let remote_url = format!("file://{}", remote.display());
    let cache = tmp.path().join("cache.git");
    let mine = fetch(&remote_url, &cache, None).unwrap();
    let marker = tmp.path().join("raced");
    let hook = cache.join("hooks").join(hook_name);
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n{guard}[ -e '{m}' ] && exit 0\ntouch '{m}'\ncd '{r}' || exit 1\nexport GIT_DIR='{r}' GIT_AUTHOR_NAME=o GIT_AUTHOR_EMAIL=o@x GIT_COMMITTER_NAME=o GIT_COMMITTER_EMAIL=o@x\nc=$(git commit-tree -p main -m racer main^{{tree}}) && git update-ref refs/heads/main \"$c\"\n",
            m = marker.display(),
            r = remote.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    let pushed = mine
        .commit_and_push(
            &remote_url,
            "main",
            &[("mine.txt", Some(b"m"))],
            &me(),
            "mine",
            None,
        )
        .unwrap_or_else(|e| panic!("{hook_name}: {e}"));
    assert!(marker.exists(), "{hook_name}: the hook raced the push");
    let theirs = Repo::open(&remote).unwrap();
    assert_eq!(theirs.resolve("main").unwrap().sha, pushed, "{hook_name}");
    let log = git(&remote, &["log", "--format=%s", "main"]);
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["mine", "racer", "first"],
        "{hook_name}"
    );
}
