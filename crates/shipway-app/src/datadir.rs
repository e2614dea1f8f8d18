//! The data directory: private to its owner, and locked by one `shipway up` at a time.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "shipway.lock";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another `shipway up`{pid} is already using the data directory {path}; stop it, or start this one with a different --data"
    )]
    AlreadyRunning { path: PathBuf, pid: String },
}

/// Holds an exclusive lock on the data directory for the life of the server.
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(dir: &Path) -> Result<DataDirLock, DataDirError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| DataDirError::DataDir {
            path: dir.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(DataDirError::AlreadyRunning {
                    path: dir.to_path_buf(),
                    pid: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // The pid is for the message a second instance prints; the lock itself is what excludes it,
        // and the kernel releases it when this process dies, even by SIGKILL.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

/// Creates the data directory 0700, or makes an existing one 0700 if others may read, write or
/// enter it, saying so: it holds Secret values, tokens and logs. Files inside are created 0600
/// by whoever writes them.
pub fn private_data_dir(dir: &Path) -> Result<(), DataDirError> {
    private(dir).map_err(|source| DataDirError::DataDir {
        path: dir.to_path_buf(),
        source,
    })
}

fn private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        tracing::warn!(
            "data directory {} was mode {mode:04o}, readable or writable by other users; changed it to 0700",
            dir.display()
        );
    }
    Ok(())
}
