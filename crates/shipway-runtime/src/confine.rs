//! Paths from manifests (volume names, item paths, subPaths, mountPaths, workingDirs) kept inside
//! the directory they are meant for.
//!
//! `confined` is lexical: it joins a relative path's components to a root, refusing absolute paths
//! and `..` that climbs above the root, so the path the kubelet builds is below the root whatever
//! the manifest says. What the kubelet creates or writes goes through `create_dir`, `write_file`
//! and `existing_or_dir`, which open the path one component at a time with `openat` and
//! `O_NOFOLLOW | O_DIRECTORY`, relative to the directory opened before: a symbolic link anywhere
//! below the root is refused, never followed, and a component swapped for a link between a check
//! and a use is refused too (a `symlink_metadata` check of each component, then a write by path,
//! would follow a link that appeared in between). Container roots are links into image files by
//! design, and containers may leave links in their volumes: a volume file written through one would
//! land in the image or anywhere else the server can write.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Why a path from a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("{0:?} must be a relative path")]
    Absolute(String),
    #[error("{0:?} must not climb above its directory with '..'")]
    Climbs(String),
    #[error("{path:?}: {component:?} is a symbolic link, which is not followed")]
    Symlink { path: String, component: String },
    #[error("{path:?}: {component:?} is not a directory")]
    NotADirectory { path: String, component: String },
    #[error("{path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The components of `rel` with empty ones and `.` dropped and `..` taken back lexically; an
/// absolute path, or a `..` above the start, is refused.
pub fn components(rel: &str) -> Result<Vec<&str>, ConfineError> {
    if rel.starts_with('/') {
        return Err(ConfineError::Absolute(rel.to_string()));
    }
    let mut parts = Vec::new();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ConfineError::Climbs(rel.to_string()));
                }
            }
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

/// `root` joined with the components of `rel`: always `root` or below it, without looking at the
/// disk (so links are not resolved: use it for paths the kubelet only reads or hands on).
pub fn confined(root: &Path, rel: &str) -> Result<PathBuf, ConfineError> {
    Ok(components(rel)?
        .iter()
        .fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// Makes `root/rel` a directory, creating what is missing, without following any link below
/// `root` (`root` itself is the kubelet's own path and may be anything).
pub fn create_dir(root: &Path, rel: &str) -> Result<PathBuf, ConfineError> {
    let parts = components(rel)?;
    walk(root, rel, &parts, true)?;
    Ok(join(root, &parts))
}

/// Writes `bytes` to the file `root/rel` with `mode`, creating its directories, without following
/// any link below `root`. A link already at `rel` (a container may have put one there) is replaced
/// by the file, not written through.
pub fn write_file(
    root: &Path,
    rel: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<PathBuf, ConfineError> {
    use std::io::Write;
    let parts = components(rel)?;
    let Some((name, dirs)) = parts.split_last() else {
        return Err(ConfineError::NotADirectory {
            path: rel.to_string(),
            component: String::new(),
        });
    };
    let dir = walk(root, rel, dirs, true)?;
    let io = |source: Errno| ConfineError::Io {
        path: rel.to_string(),
        source: source.into(),
    };
    match rustix::fs::statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            return Err(ConfineError::Io {
                path: rel.to_string(),
                source: std::io::Error::other(format!("{name:?} is a directory")),
            });
        }
        Ok(_) => rustix::fs::unlinkat(&dir, *name, AtFlags::empty()).map_err(io)?,
        Err(Errno::NOENT) => {}
        Err(e) => return Err(io(e)),
    }
    // EXCL with NOFOLLOW: a link that appears after the unlink makes this fail instead of being
    // followed.
    let fd = rustix::fs::openat(
        &dir,
        *name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(io)?;
    // The umask applied at creation; the mode is the manifest's.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(io)?;
    std::fs::File::from(fd)
        .write_all(bytes)
        .map_err(|source| ConfineError::Io {
            path: rel.to_string(),
            source,
        })?;
    Ok(join(root, &parts))
}

/// `root/rel` when it exists (a file or a directory: a subPath may name one file of a ConfigMap
/// volume), else a new directory there, as kubelet creates a missing subPath; no component below
/// `root` may be a link.
pub fn existing_or_dir(root: &Path, rel: &str) -> Result<PathBuf, ConfineError> {
    let parts = components(rel)?;
    let Some((name, dirs)) = parts.split_last() else {
        return Ok(root.to_path_buf());
    };
    let dir = walk(root, rel, dirs, true)?;
    match rustix::fs::statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
            return Err(ConfineError::Symlink {
                path: rel.to_string(),
                component: name.to_string(),
            });
        }
        Ok(_) => {}
        Err(Errno::NOENT) => {
            walk(root, rel, &parts, true)?;
        }
        Err(e) => {
            return Err(ConfineError::Io {
                path: rel.to_string(),
                source: e.into(),
            });
        }
    }
    Ok(join(root, &parts))
}

fn join(root: &Path, parts: &[&str]) -> PathBuf {
    parts.iter().fold(root.to_path_buf(), |p, c| p.join(c))
}

/// Opens `root` and then each of `parts` relative to the one before, as directories and never
/// through a link, creating missing ones when `create`.
fn walk(root: &Path, rel: &str, parts: &[&str], create: bool) -> Result<OwnedFd, ConfineError> {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let io = |source: std::io::Error| ConfineError::Io {
        path: rel.to_string(),
        source,
    };
    if create {
        crate::private::create_dir_all(root).map_err(io)?;
    }
    let mut fd = rustix::fs::open(root, dir_flags, Mode::empty()).map_err(|e| io(e.into()))?;
    for part in parts {
        let open = |fd: &OwnedFd| {
            rustix::fs::openat(fd, *part, dir_flags | OFlags::NOFOLLOW, Mode::empty())
        };
        let next = match open(&fd) {
            // Private, like everything in the data directory.
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&fd, *part, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io(e.into())),
                }
                open(&fd)
            }
            other => other,
        };
        fd = match next {
            Ok(next) => next,
            // ELOOP for a link, ENOTDIR for a file (or, on some kernels, a link): say which.
            Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                let link = rustix::fs::statat(&fd, *part, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
                return Err(if link || e == Errno::LOOP {
                    ConfineError::Symlink {
                        path: rel.to_string(),
                        component: part.to_string(),
                    }
                } else {
                    ConfineError::NotADirectory {
                        path: rel.to_string(),
                        component: part.to_string(),
                    }
                });
            }
            Err(e) => return Err(io(e.into())),
        };
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn paths_are_joined_below_the_root_or_refused() {
        let root = Path::new("/pods/u/volumes");
        for (rel, want) in [
            ("a", Some("/pods/u/volumes/a")),
            ("a/./b//c/", Some("/pods/u/volumes/a/b/c")),
            ("a/../b", Some("/pods/u/volumes/b")),
            ("", Some("/pods/u/volumes")),
            ("a/../..", None),
            ("..", None),
            ("../../../../tmp/x", None),
            ("/etc/passwd", None),
        ] {
            let got = confined(root, rel).ok();
            assert_eq!(got.as_deref(), want.map(Path::new), "{rel:?}");
        }
        assert_eq!(
            confined(root, "/x").unwrap_err().to_string(),
            "\"/x\" must be a relative path"
        );
        assert_eq!(
            confined(root, "a/../../x").unwrap_err().to_string(),
            "\"a/../../x\" must not climb above its directory with '..'"
        );
    }

    #[test]
    fn writes_never_follow_links() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("victim"), "keep").unwrap();
        symlink(&outside, root.join("dirlink")).unwrap();
        symlink(outside.join("victim"), root.join("filelink")).unwrap();

        let written = write_file(&root, "a/b/key", b"v", 0o600).unwrap();
        assert_eq!(written, root.join("a/b/key"));
        assert_eq!(std::fs::read(&written).unwrap(), b"v");
        let mode = std::fs::metadata(&written).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let err = write_file(&root, "dirlink/victim", b"x", 0o644).unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"dirlink/victim\": \"dirlink\" is a symbolic link, which is not followed"
        );
        assert!(matches!(
            create_dir(&root, "dirlink/new").unwrap_err(),
            ConfineError::Symlink { .. }
        ));
        assert!(matches!(
            existing_or_dir(&root, "dirlink").unwrap_err(),
            ConfineError::Symlink { .. }
        ));
        // A link where the file goes is replaced, not written through.
        write_file(&root, "filelink", b"new", 0o644).unwrap();
        assert!(
            !std::fs::symlink_metadata(root.join("filelink"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("victim")).unwrap(),
            "keep"
        );
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);

        std::fs::write(root.join("file"), "").unwrap();
        assert!(matches!(
            create_dir(&root, "file/x").unwrap_err(),
            ConfineError::NotADirectory { .. }
        ));
        assert_eq!(existing_or_dir(&root, "file").unwrap(), root.join("file"));
        assert_eq!(
            existing_or_dir(&root, "new/dir").unwrap(),
            root.join("new/dir")
        );
        assert!(root.join("new/dir").is_dir());
    }
}
