//! The small filesystem trait every read of users' files goes through, with a disk and an
//! in-memory implementation, so kustomize and workflow loading can read from memory (tests) or
//! a git tree (GitOps, pipelines in the server) as well as from disk.
//!
//! Start with [`FileSystem`]; [`read_to_string`] is the text read both users share.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

/// What a build needs from a filesystem. Paths given to it are absolute and normalized.
pub trait FileSystem {
    /// The bytes of a regular file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Whether `path` is a directory.
    fn is_dir(&self, path: &Path) -> bool;
    /// Whether `path` exists (file or directory).
    fn exists(&self, path: &Path) -> bool;
    /// `path` with every symlink resolved, for load restrictions.
    fn real_path(&self, path: &Path) -> io::Result<PathBuf>;
    /// The names of a directory's entries, sorted.
    fn list(&self, path: &Path) -> io::Result<Vec<String>>;
}

/// The machine's own filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskFs;

impl FileSystem for DiskFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn real_path(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }
    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
}

/// Files held in memory, keyed by absolute path; directories are implied by the files in them.
#[derive(Clone, Debug, Default)]
pub struct MemFs {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl MemFs {
    pub fn new() -> MemFs {
        MemFs::default()
    }

    /// Adds (or replaces) a file; `path` is made absolute from `/`.
    pub fn insert(&mut self, path: impl AsRef<Path>, contents: impl Into<Vec<u8>>) {
        let p = normalize(&Path::new("/").join(path.as_ref()));
        self.files.insert(p, contents.into());
    }
}

impl FileSystem for MemFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.files.keys().any(|k| k != path && k.starts_with(path))
    }
    fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(path) || self.is_dir(path)
    }
    fn real_path(&self, path: &Path) -> io::Result<PathBuf> {
        if self.exists(path) {
            Ok(path.to_path_buf())
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, "no such file"))
        }
    }
    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter_map(|k| k.strip_prefix(path).ok())
            .filter_map(|rest| rest.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        names.dedup();
        Ok(names)
    }
}

/// Removes `.` and resolves `..` lexically. A `..` that climbs above the start of a relative
/// path is kept (`../base` stays `../base`, not `base`); above the root it is the root.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                Some(Component::ParentDir | Component::CurDir) | None => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A file's text; bytes that are not UTF-8 are an error, worded as `std::fs::read_to_string`.
pub fn read_to_string(fs: &dyn FileSystem, path: &Path) -> io::Result<String> {
    String::from_utf8(fs.read(path)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Whether `path` is a regular file (it exists and is not a directory).
pub fn is_file(fs: &dyn FileSystem, path: &Path) -> bool {
    fs.exists(path) && !fs.is_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_keeps_what_climbs_above_a_relative_start() {
        for (given, want) in [
            ("a/./b/../c", "a/c"),
            ("../base", "../base"),
            ("a/../../b", "../b"),
            ("./../../x", "../../x"),
            ("/a/../../b", "/b"),
            ("a/..", ""),
        ] {
            assert_eq!(normalize(Path::new(given)), PathBuf::from(want), "{given}");
        }
    }

    #[test]
    fn mem_fs_implies_directories_and_lists_them_sorted() {
        let mut fs = MemFs::new();
        fs.insert("repo/b.yml", "b");
        fs.insert("repo/a/action.yml", "a");
        let repo = Path::new("/repo");
        assert!(fs.is_dir(repo) && !is_file(&fs, repo));
        assert!(is_file(&fs, &repo.join("b.yml")));
        assert_eq!(fs.list(repo).unwrap(), ["a", "b.yml"]);
        assert_eq!(read_to_string(&fs, &repo.join("b.yml")).unwrap(), "b");
        fs.insert("repo/bad", vec![0xff]);
        assert_eq!(
            read_to_string(&fs, &repo.join("bad"))
                .unwrap_err()
                .to_string(),
            "stream did not contain valid UTF-8"
        );
    }
}
