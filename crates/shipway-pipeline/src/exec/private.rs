//! The run directory's own directories (0700) and files (0600), whatever the umask: step
//! scripts, command files and summaries may hold secrets. Files the steps create themselves
//! follow the steps' umask, inside these directories.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// `fs::create_dir_all`, every directory it creates 0700.
pub(crate) fn create_dir_all(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// `fs::write`, the file 0600 even when it existed with another mode.
pub(crate) fn write(path: &Path, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(contents.as_ref())
}
