//! The built-in actions: `actions/checkout` (the commit into the job workspace),
//! `actions/cache` (a local cache store with restore-key prefix matching),
//! `actions/upload-artifact` and `actions/download-artifact` (a run-scoped store), and
//! `hashFiles()`.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use crate::trigger::{filter_matches, glob_matches};

/// The non-empty lines of a multi-line input (`path:`, `restore-keys:`).
pub fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A user's pattern made relative to the workspace, as file names from [`walk`] are: an
/// absolute path inside the workspace loses its prefix, `./` and a trailing `/` go, `!` stays.
fn relative_pattern(workspace: &Path, p: &str) -> String {
    let (neg, body) = p.strip_prefix('!').map_or((false, p), |b| (true, b));
    let body = body.trim_end_matches('/');
    let body = Path::new(body)
        .strip_prefix(workspace)
        .map_or(body.to_string(), |r| r.to_string_lossy().to_string());
    let mut body = body.as_str();
    while let Some(rest) = body.strip_prefix("./") {
        body = rest;
    }
    format!("{}{body}", if neg { "!" } else { "" })
}

/// A path relative to `root` that stays inside it, or an error naming it.
fn inside(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    let rel = if p.is_absolute() {
        p.strip_prefix(root)
            .map_err(|_| format!("path '{rel}' is outside the workspace"))?
    } else {
        p
    };
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("path '{}' leaves the workspace", rel.display()));
    }
    Ok(root.join(rel))
}

fn copy_tree(from: &Path, to: &Path, skip_git: bool) -> std::io::Result<u64> {
    copy_tree_avoiding(from, to, skip_git, None)
}

/// [`copy_tree`], leaving out every directory that holds `avoid` (a checkout's destination when
/// the run's data directory is inside the repository), so a copy never copies itself.
fn copy_tree_avoiding(
    from: &Path,
    to: &Path,
    skip_git: bool,
    avoid: Option<&Path>,
) -> std::io::Result<u64> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_file() {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        return std::fs::copy(from, to).map(|_| 1);
    }
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(from)?;
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let _ = std::fs::remove_file(to);
        std::os::unix::fs::symlink(target, to)?;
        return Ok(1);
    }
    std::fs::create_dir_all(to)?;
    let mut n = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if skip_git && entry.file_name() == ".git" {
            continue;
        }
        let path = entry.path();
        if avoid.is_some_and(|a| a.starts_with(&path)) {
            continue;
        }
        n += copy_tree_avoiding(&path, &to.join(entry.file_name()), skip_git, avoid)?;
    }
    Ok(n)
}

/// The working tree as act copies it: in a git repository the files git does not ignore
/// (tracked and untracked, as on disk) and `.git`; else everything. Nothing under `avoid`.
fn copy_working_tree(repo: &Path, to: &Path, avoid: &Path) -> std::io::Result<u64> {
    if !repo.join(".git").exists() {
        return copy_tree_avoiding(repo, to, false, Some(avoid));
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "git ls-files: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut n = copy_tree_avoiding(&repo.join(".git"), &to.join(".git"), false, Some(avoid))?;
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut seen = std::collections::HashSet::new();
    for rel in listed.split('\0').filter(|r| !r.is_empty()) {
        let from = repo.join(rel);
        // A tracked file deleted on disk is not in the working tree; one listed twice (a
        // conflict's stages) is copied once.
        if !seen.insert(rel) || std::fs::symlink_metadata(&from).is_err() || from.starts_with(avoid)
        {
            continue;
        }
        n += copy_tree_avoiding(&from, &to.join(rel), false, Some(avoid))?;
    }
    Ok(n)
}

/// upload-artifact's copy: a link is replaced by what it points to, as GitHub's upload follows
/// links (its artifacts hold no links), so the store never holds a link a download could write
/// through. A directory link back to one of its own ancestors is skipped instead of looping.
fn copy_dereferenced(
    from: &Path,
    to: &Path,
    ancestors: &mut Vec<(u64, u64)>,
) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(from)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", from.display())))?;
    if !meta.is_dir() {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        return std::fs::copy(from, to).map(|_| 1);
    }
    let id = (meta.dev(), meta.ino());
    if ancestors.contains(&id) {
        return Ok(0);
    }
    ancestors.push(id);
    std::fs::create_dir_all(to)?;
    let mut n = 0;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        n += copy_dereferenced(&entry.path(), &to.join(entry.file_name()), ancestors)?;
    }
    ancestors.pop();
    Ok(n)
}

/// download-artifact's copy of an artifact (or part of it) `from` onto `to`, whose parent is a
/// real directory inside the workspace: a link on either side is refused, never followed, so no
/// file lands outside the destination (`ws` only makes the messages relative).
fn copy_without_links(from: &Path, to: &Path, ws: &Path) -> Result<u64, String> {
    let shown = |p: &Path| p.strip_prefix(ws).unwrap_or(p).display().to_string();
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", shown(p));
    let meta = std::fs::symlink_metadata(from).map_err(|e| io(from, e))?;
    if meta.is_symlink() {
        return Err(format!(
            "the artifact holds a symbolic link at {}; artifacts hold files only",
            from.display()
        ));
    }
    match std::fs::symlink_metadata(to) {
        Ok(m) if m.is_symlink() => {
            return Err(format!(
                "{} is a symbolic link; download-artifact does not write through links (remove it or download to another path)",
                shown(to)
            ));
        }
        Ok(m) if m.is_dir() != meta.is_dir() => {
            return Err(format!(
                "{} is in the way: the artifact has a {} there",
                shown(to),
                if meta.is_dir() { "directory" } else { "file" }
            ));
        }
        Ok(_) => {}
        Err(_) if meta.is_dir() => std::fs::create_dir(to).map_err(|e| io(to, e))?,
        Err(_) => {}
    }
    if !meta.is_dir() {
        return std::fs::copy(from, to).map(|_| 1).map_err(|e| io(to, e));
    }
    let mut n = 0;
    for entry in std::fs::read_dir(from).map_err(|e| io(from, e))? {
        let entry = entry.map_err(|e| io(from, e))?;
        n += copy_without_links(&entry.path(), &to.join(entry.file_name()), ws)?;
    }
    Ok(n)
}

/// Makes `path` (below `root`) a directory, refusing a link on the way so the download does not
/// land outside the workspace.
fn real_dir_below(root: &Path, path: &Path) -> Result<(), String> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let mut at = root.to_path_buf();
    for part in rel.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_symlink() => {
                return Err(format!(
                    "{} is a symbolic link; download-artifact does not write through links (remove it or download to another path)",
                    at.strip_prefix(root).unwrap_or(&at).display()
                ));
            }
            Ok(m) if !m.is_dir() => {
                return Err(format!("{} is a file, not a directory", rel.display()));
            }
            Ok(_) => {}
            Err(_) => std::fs::create_dir(&at).map_err(|e| format!("{}: {e}", rel.display()))?,
        }
    }
    Ok(())
}

/// Upload's rule for artifact names (GitHub's forbidden characters, and no leading `.`), which
/// download applies too: a name is one directory of the run's artifact store.
fn check_artifact_name(name: &str) -> Result<(), String> {
    if name.contains(['/', '\\', ':', '"', '<', '>', '|', '*', '?', '\r', '\n'])
        || name.starts_with('.')
    {
        return Err(format!(
            "artifact name '{name}' has characters that are not allowed"
        ));
    }
    Ok(())
}

/// Every file under `root` (not following directory symlinks), as paths relative to it,
/// sorted; `.git` is skipped.
fn walk(root: &Path) -> Vec<String> {
    fn go(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name == ".git" {
                continue;
            }
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            match e.file_type() {
                Ok(t) if t.is_dir() => go(&e.path(), &rel, out),
                Ok(_) => out.push(rel),
                Err(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    go(root, "", &mut out);
    out.sort();
    out
}

/// `actions/checkout`: the run's commit into the workspace (or `with.path` inside it).
pub fn checkout(
    repo: &Path,
    sha: &str,
    source: super::Source,
    workspace: &Path,
    with: &IndexMap<String, String>,
) -> Result<String, String> {
    let target = match with.get("path").filter(|p| !p.is_empty()) {
        Some(p) => inside(workspace, p)?,
        None => workspace.to_path_buf(),
    };
    if let Some(r) = with.get("repository").filter(|r| !r.is_empty()) {
        return Err(format!(
            "checking out another repository ({r}) needs the network; only the run's own repository is checked out"
        ));
    }
    // Start from an empty directory, as a fresh runner would.
    if target.exists() {
        for e in std::fs::read_dir(&target)
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let p = e.path();
            let r = if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.map_err(|e| format!("cleaning {}: {e}", p.display()))?;
        }
    }
    if source == super::Source::WorkingTree {
        let avoid = workspace
            .canonicalize()
            .unwrap_or_else(|_| workspace.to_path_buf());
        let repo = repo.canonicalize().unwrap_or_else(|_| repo.to_path_buf());
        let n = copy_working_tree(&repo, &target, &avoid)
            .map_err(|e| format!("copying the working tree: {e}"))?;
        return Ok(format!(
            "copied the working tree ({n} files, uncommitted changes included) into {}",
            target.display()
        ));
    }
    // A bare repository (a hosted one, which server runs check out from) has no `.git`.
    let is_git = repo.join(".git").exists()
        || (repo.join("HEAD").is_file() && repo.join("objects").is_dir());
    if is_git && !sha.is_empty() {
        let git = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("git")
                .args(args)
                .output()
                .map_err(|e| format!("cannot run git: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "git {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        let t = target.to_string_lossy().to_string();
        let r = repo.to_string_lossy().to_string();
        git(&["clone", "--quiet", "--no-checkout", &r, &t])?;
        git(&["-C", &t, "checkout", "--quiet", "--detach", sha])?;
        return Ok(format!("checked out {sha} into {t}"));
    }
    let avoid = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    let repo = repo.canonicalize().unwrap_or_else(|_| repo.to_path_buf());
    let n = copy_tree_avoiding(&repo, &target, true, Some(&avoid))
        .map_err(|e| format!("copying the repository: {e}"))?;
    Ok(format!(
        "copied {n} files into {} (the repository has no commit to check out)",
        target.display()
    ))
}

fn key_dir(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join(hex::encode(Sha256::digest(key.as_bytes())))
}

fn resolve_cache_path(workspace: &Path, p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        workspace.join(path)
    }
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 512 || key.contains(',') {
        return Err(format!(
            "cache key '{key}' must be 1 to 512 characters without commas"
        ));
    }
    Ok(())
}

/// `actions/cache` (restore part) and `actions/cache/restore`: an exact key hit, else the
/// newest entry whose key starts with one of `restore-keys`, in order.
pub fn cache_restore(
    cache_dir: &Path,
    workspace: &Path,
    with: &IndexMap<String, String>,
    outputs: &mut IndexMap<String, String>,
) -> Result<String, String> {
    let key = with.get("key").ok_or("actions/cache needs `key`")?;
    let paths = lines(with.get("path").ok_or("actions/cache needs `path`")?);
    check_key(key)?;
    outputs.insert("cache-primary-key".into(), key.clone());
    let exact = key_dir(cache_dir, key);
    let matched = if exact.join("key").is_file() {
        Some((key.clone(), exact))
    } else {
        let mut found = None;
        for prefix in lines(with.get("restore-keys").map_or("", String::as_str)) {
            let mut best: Option<(std::time::SystemTime, String, PathBuf)> = None;
            for e in std::fs::read_dir(cache_dir).into_iter().flatten().flatten() {
                let Ok(k) = std::fs::read_to_string(e.path().join("key")) else {
                    continue;
                };
                if !k.starts_with(&prefix) {
                    continue;
                }
                let t = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                if best.as_ref().is_none_or(|(bt, _, _)| t > *bt) {
                    best = Some((t, k, e.path()));
                }
            }
            if let Some((_, k, p)) = best {
                found = Some((k, p));
                break;
            }
        }
        found
    };
    let Some((matched_key, dir)) = matched else {
        outputs.insert("cache-hit".into(), "false".into());
        return Ok(format!("cache not found for key {key}"));
    };
    for (i, p) in paths.iter().enumerate() {
        let stored = dir.join("files").join(i.to_string());
        if stored.exists() {
            copy_tree(&stored, &resolve_cache_path(workspace, p), false)
                .map_err(|e| format!("restoring {p}: {e}"))?;
        }
    }
    let hit = matched_key == *key;
    outputs.insert("cache-hit".into(), hit.to_string());
    outputs.insert("cache-matched-key".into(), matched_key.clone());
    Ok(format!("cache restored from key {matched_key}"))
}

/// Saves `paths` under `key` unless an entry for it exists (cache entries are immutable).
pub fn cache_save(
    cache_dir: &Path,
    workspace: &Path,
    key: &str,
    paths: &[String],
) -> Result<String, String> {
    check_key(key)?;
    let dir = key_dir(cache_dir, key);
    if dir.join("key").is_file() {
        return Ok(format!("cache entry {key} exists; not saved again"));
    }
    // Written to a temporary name and renamed, so a half-written entry is never restored.
    let tmp = cache_dir.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    super::private::create_dir_all(&tmp.join("files")).map_err(|e| e.to_string())?;
    let mut saved = 0;
    for (i, p) in paths.iter().enumerate() {
        let src = resolve_cache_path(workspace, p);
        if src.exists() {
            saved += copy_tree(&src, &tmp.join("files").join(i.to_string()), false)
                .map_err(|e| format!("saving {p}: {e}"))?;
        }
    }
    if saved == 0 {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!("no files to cache for key {key}"));
    }
    super::private::write(&tmp.join("key"), key).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &dir).map_err(|e| e.to_string())?;
    Ok(format!("cache saved with key {key} ({saved} files)"))
}

/// Files selected by upload-artifact's `path:` lines (globs, `!` excludes), relative to the
/// root they are stored under (the deepest directory containing every search path).
fn select(workspace: &Path, patterns: &[String]) -> Result<(PathBuf, Vec<PathBuf>), String> {
    let mut includes = Vec::new();
    let mut roots: Vec<PathBuf> = Vec::new();
    for p in patterns {
        if p.starts_with('!') {
            continue;
        }
        let root = match p.find(['*', '?', '[']) {
            // A glob: its root is the directory part before the first wildcard.
            Some(i) => inside(workspace, p[..i].rsplit_once('/').map_or("", |(d, _)| d))?,
            None => {
                let path = inside(workspace, p.trim_end_matches('/'))?;
                if path.is_file() {
                    path.parent().map_or(path.clone(), Path::to_path_buf)
                } else {
                    path
                }
            }
        };
        roots.push(root);
        includes.push(p.clone());
    }
    let all = walk(workspace);
    let rel_patterns: Vec<String> = patterns
        .iter()
        .map(|p| relative_pattern(workspace, p))
        .collect();
    let mut files = Vec::new();
    for f in &all {
        // A literal directory selects everything under it.
        let matched = {
            let mut m = false;
            for p in &rel_patterns {
                let (neg, body) = p
                    .strip_prefix('!')
                    .map_or((false, p.as_str()), |b| (true, b));
                if glob_matches(body, f) || f.starts_with(&format!("{body}/")) {
                    m = !neg;
                }
            }
            m
        };
        if matched {
            files.push(workspace.join(f));
        }
    }
    let root = common_ancestor(&roots).unwrap_or_else(|| workspace.to_path_buf());
    Ok((root, files))
}

fn common_ancestor(paths: &[PathBuf]) -> Option<PathBuf> {
    let mut it = paths.iter();
    let mut acc = it.next()?.clone();
    for p in it {
        while !p.starts_with(&acc) {
            acc = acc.parent()?.to_path_buf();
        }
    }
    Some(acc)
}

/// `actions/upload-artifact`: copies the selected files into the run's artifact store.
pub fn upload(
    store: &Path,
    workspace: &Path,
    with: &IndexMap<String, String>,
    outputs: &mut IndexMap<String, String>,
) -> Result<String, String> {
    let name = with
        .get("name")
        .filter(|n| !n.is_empty())
        .cloned()
        .unwrap_or_else(|| "artifact".into());
    check_artifact_name(&name)?;
    let patterns = lines(
        with.get("path")
            .ok_or("actions/upload-artifact needs `path`")?,
    );
    let (root, files) = select(workspace, &patterns)?;
    if files.is_empty() {
        return match with.get("if-no-files-found").map(String::as_str) {
            Some("error") => Err(format!("no files were found for artifact '{name}'")),
            Some("ignore") => Ok(String::new()),
            _ => Ok(format!(
                "warning: no files were found for artifact '{name}'; nothing uploaded"
            )),
        };
    }
    let dir = store.join(&name);
    if dir.exists() {
        if with.get("overwrite").map(String::as_str) == Some("true") {
            std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
        } else {
            return Err(format!(
                "an artifact named '{name}' already exists in this run (set overwrite: true to replace it)"
            ));
        }
    }
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap_or(f);
        copy_dereferenced(f, &dir.join(rel), &mut Vec::new())
            .map_err(|e| format!("uploading {}: {e}", f.display()))?;
    }
    outputs.insert("artifact-id".into(), name.clone());
    Ok(format!(
        "uploaded {} files as artifact '{name}'",
        files.len()
    ))
}

/// `actions/download-artifact`: one artifact into `path`, or every artifact (matching
/// `pattern`) into `path/NAME` (or merged, with `merge-multiple: true`).
pub fn download(
    store: &Path,
    workspace: &Path,
    with: &IndexMap<String, String>,
    outputs: &mut IndexMap<String, String>,
) -> Result<String, String> {
    let target = match with.get("path").filter(|p| !p.is_empty()) {
        Some(p) => inside(workspace, p)?,
        None => workspace.to_path_buf(),
    };
    outputs.insert("download-path".into(), target.to_string_lossy().to_string());
    real_dir_below(workspace, &target)?;
    if let Some(name) = with.get("name").filter(|n| !n.is_empty()) {
        check_artifact_name(name)?;
        let dir = store.join(name);
        if !dir.is_dir() {
            return Err(format!("artifact '{name}' not found in this run"));
        }
        let n = copy_without_links(&dir, &target, workspace)?;
        return Ok(format!("downloaded artifact '{name}' ({n} files)"));
    }
    let pattern = with.get("pattern").filter(|p| !p.is_empty());
    let merge = with.get("merge-multiple").map(String::as_str) == Some("true");
    let mut names: Vec<String> = std::fs::read_dir(store)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| pattern.is_none_or(|p| filter_matches(std::slice::from_ref(p), n)))
        .collect();
    names.sort();
    for name in &names {
        let to = if merge {
            target.clone()
        } else {
            target.join(name)
        };
        copy_without_links(&store.join(name), &to, workspace)?;
    }
    Ok(format!("downloaded {} artifacts", names.len()))
}

/// `hashFiles()`: SHA-256 over the SHA-256 of each matching file, in path order; `''` when no
/// file matches.
pub fn hash_files(workspace: &Path, patterns: &[String]) -> Result<String, String> {
    let patterns: Vec<String> = patterns
        .iter()
        .map(|p| relative_pattern(workspace, p))
        .collect();
    let mut total = Sha256::new();
    let mut any = false;
    for f in walk(workspace) {
        if !filter_matches(&patterns, &f) {
            continue;
        }
        let mut file = std::fs::File::open(workspace.join(&f)).map_err(|e| format!("{f}: {e}"))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(|e| format!("{f}: {e}"))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        total.update(h.finalize());
        any = true;
    }
    Ok(if any {
        hex::encode(total.finalize())
    } else {
        String::new()
    })
}
