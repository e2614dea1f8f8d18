//! `cargo xtask deps`: every dependency a manifest declares is used, and every workspace
//! dependency is declared by some member.
//!
//! "Used" means the crate's name appears as a path (`name::`, `use name`, `name!`, `extern crate
//! name`) in one of the package's Rust files, the way cargo-machete decides it. A dependency
//! needed without being named (one that only turns on a feature of another) is listed under
//! `[package.metadata.deps] unnamed = ["..."]` with the reason in a comment next to it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Checks the workspace at `root`; returns the problems found, each naming the manifest.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).context("Cargo.toml")?;
    let mut problems = Vec::new();
    let mut declared_by_members = BTreeSet::new();
    let mut manifests = vec![root.join("xtask/Cargo.toml")];
    for entry in std::fs::read_dir(root.join("crates")).context("crates/")? {
        let manifest = entry?.path().join("Cargo.toml");
        if manifest.is_file() {
            manifests.push(manifest);
        }
    }
    manifests.sort();
    for manifest in &manifests {
        let text = std::fs::read_to_string(manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let package = manifest.parent().expect("a manifest is in a directory");
        let sources = rust_sources(package)?;
        let unnamed = metadata_list(&text, "package.metadata.deps", "unnamed");
        for (section, dep) in dependencies(&text) {
            declared_by_members.insert(dep.clone());
            let ident = dep.replace('-', "_");
            if unnamed.contains(&dep) || sources.iter().any(|s| names_crate(s, &ident)) {
                continue;
            }
            problems.push(format!(
                "{}: [{section}] {dep} is never used in {}'s Rust files: remove it (or list it under [package.metadata.deps] unnamed with the reason)",
                relative(root, manifest),
                relative(root, package),
            ));
        }
    }
    for (_, dep) in section_keys(&workspace, "workspace.dependencies") {
        if !declared_by_members.contains(&dep) {
            problems.push(format!(
                "Cargo.toml: [workspace.dependencies] {dep} is declared by no member: remove it"
            ));
        }
    }
    Ok(problems)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The text of every `.rs` file under a package (src, tests, benches, examples, build.rs).
fn rust_sources(package: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    collect(package, &mut files)?;
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display())))
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() && entry.file_name() != "target" {
            collect(&path, out)?;
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Whether Rust text names the crate `ident` as a path root.
fn names_crate(text: &str, ident: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(ident).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = &text[at + ident.len()..];
        let starts_word = before.is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'_'));
        // `name::x`, `name!(..)`, or the end of `use name;` / `extern crate name;`.
        let as_path = after.starts_with("::") || after.starts_with('!');
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line = text[line_start..at].trim_start();
        let used = (line.starts_with("use ") || line.starts_with("extern crate "))
            && after.starts_with([';', ' ', ':']);
        starts_word && (as_path || used)
    })
}

/// `(section, name)` of each dependency the manifest declares.
fn dependencies(text: &str) -> Vec<(String, String)> {
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .flat_map(|s| section_keys(text, s))
        .collect()
}

/// The keys of a TOML table (`name = ...` or `name.workspace = true`).
fn section_keys(text: &str, section: &str) -> Vec<(String, String)> {
    let header = format!("[{section}]");
    let mut inside = false;
    let mut keys = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == header;
            continue;
        }
        if !inside || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            let name = key.trim().split('.').next().unwrap_or("").trim_matches('"');
            if !name.is_empty() {
                keys.push((section.to_string(), name.to_string()));
            }
        }
    }
    keys
}

/// The strings of `key = ["a", "b"]` in a table, on one line.
fn metadata_list(text: &str, section: &str, key: &str) -> BTreeSet<String> {
    let header = format!("[{section}]");
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == header;
            continue;
        }
        if inside
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return v
                .trim()
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().trim_matches('"').to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
    }
    BTreeSet::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crate_is_used_when_it_is_named_as_a_path() {
        assert!(names_crate("use serde::Deserialize;", "serde"));
        assert!(names_crate("let x = serde_json::json!({});", "serde_json"));
        assert!(names_crate("    use tempfile;\n", "tempfile"));
        assert!(names_crate("tracing::info!(\"x\")", "tracing"));
        assert!(names_crate("proptest! { }", "proptest"));
        assert!(
            !names_crate("use serde_json::Value;", "serde"),
            "a longer name"
        );
        assert!(
            !names_crate("// serde is great", "serde"),
            "a word in a comment"
        );
        assert!(
            !names_crate("my_serde::x()", "serde"),
            "a suffix of another path"
        );
    }

    #[test]
    fn manifest_tables_are_read() {
        let toml = "[package]\nname = \"x\"\n\n[dependencies]\nserde.workspace = true\ntokio = { workspace = true, features = [\"fs\"] }\n# a comment\n\n[dev-dependencies]\ntempfile.workspace = true\n\n[package.metadata.deps]\nunnamed = [\"openssl-sys\"] # links the system library\n";
        assert_eq!(
            dependencies(toml),
            [
                ("dependencies".to_string(), "serde".to_string()),
                ("dependencies".to_string(), "tokio".to_string()),
                ("dev-dependencies".to_string(), "tempfile".to_string()),
            ]
        );
        assert_eq!(
            metadata_list(toml, "package.metadata.deps", "unnamed"),
            BTreeSet::from(["openssl-sys".to_string()])
        );
    }
}
