//! Label selectors: kubectl's `-l` syntax and `matchLabels`/`matchExpressions`. (Stub: being written.)

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Selector {}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {input:?} at column {column}: {message}")]
pub struct SelectorError {
    pub input: String,
    pub column: usize,
    pub message: String,
}

impl Selector {
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let _ = input;
        unimplemented!()
    }
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let _ = labels;
        unimplemented!()
    }
}
