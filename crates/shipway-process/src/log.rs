//! Size-capped log files: output appended to `<name>`, rotated to `<name>.1` at
//! [`LOG_FILE_LIMIT`], whole lines kept together where possible.

use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Log files are rotated at this size; one rotated file is kept per container instance.
pub const LOG_FILE_LIMIT: u64 = 10 * 1024 * 1024;

pub(crate) struct LogWriter {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    written: u64,
    limit: u64,
}

impl LogWriter {
    pub(crate) fn new(path: PathBuf) -> LogWriter {
        LogWriter {
            path,
            file: None,
            written: 0,
            limit: LOG_FILE_LIMIT,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            // 0600: logs may show Secret values.
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)
                .await?;
            self.written = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            self.file = Some(file);
        }
        if self.written + bytes.len() as u64 > self.limit && self.written > 0 {
            self.file = None;
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            tokio::fs::rename(&self.path, &rotated).await?;
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)
                .await?;
            self.written = 0;
            self.file = Some(file);
        }
        if let Some(f) = &mut self.file {
            f.write_all(bytes).await?;
            // tokio's File writes in the background; flush so readers see each line at once.
            f.flush().await?;
            self.written += bytes.len() as u64;
        }
        Ok(())
    }
}

/// Copies whole lines where possible, so stdout and stderr interleave by line, not by byte.
pub(crate) async fn copy_to_log(
    mut from: impl AsyncRead + Unpin,
    log: std::sync::Arc<tokio::sync::Mutex<LogWriter>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                if let Some(last_nl) = pending.iter().rposition(|b| *b == b'\n') {
                    let rest = pending.split_off(last_nl + 1);
                    let _ = log.lock().await.write(&pending).await;
                    pending = rest;
                } else if pending.len() > 64 * 1024 {
                    let _ = log.lock().await.write(&pending).await;
                    pending.clear();
                }
            }
        }
    }
    if !pending.is_empty() {
        let _ = log.lock().await.write(&pending).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn logs_rotate_at_their_size_cap_keeping_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut w = LogWriter::new(path.clone());
        w.limit = 100;
        for i in 0..30 {
            w.write(format!("line {i:02}\n").as_bytes()).await.unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let rotated = std::fs::read_to_string(dir.path().join("0.log.1")).unwrap();
        assert!(current.len() <= 100 && rotated.len() <= 100);
        assert!(current.ends_with("line 29\n"), "{current}");
        assert!(
            rotated.ends_with(&format!("line {:02}\n", 29 - current.lines().count())),
            "{rotated}"
        );
    }
}
