//! Turning YAML or JSON text into objects, with `file:line:col` errors. (Stub: being written.)

use crate::Object;

/// Where a document or a field starts in its source text (1-based).
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub object: Object,
    pub file: String,
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Loads every document of `text`; `file` names the source in errors. Gathers every problem.
pub fn load_str(file: &str, text: &str) -> Result<Vec<Loaded>, Vec<LoadError>> {
    let _ = (file, text);
    unimplemented!()
}
