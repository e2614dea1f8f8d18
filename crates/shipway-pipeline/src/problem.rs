//! Validation problems: what is wrong, where (`file:line:col`), and how bad.

use std::fmt;

use crate::workflow::Pos;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The file is not a valid workflow (GitHub would refuse it too).
    Error,
    /// Valid for GitHub, but uses something Shipway cannot run here (marketplace actions,
    /// containers, remote reusable workflows). The message names the feature.
    Unsupported,
    /// Runs, but probably not as the author meant.
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub severity: Severity,
    /// The repository file this problem is about when the problem is that the file is not there
    /// (a reusable workflow a job calls), relative to the repository root: a check can tell "the
    /// file is refused" from "a file it names is missing" without reading the message.
    pub missing_file: Option<String>,
}

impl Problem {
    pub fn new(file: &str, pos: Pos, severity: Severity, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            severity,
            missing_file: None,
        }
    }

    /// The same problem, saying that `path` (relative to the repository) does not exist.
    pub fn about_missing(mut self, path: &str) -> Problem {
        self.missing_file = Some(path.to_string());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "",
            Severity::Unsupported => "unsupported: ",
            Severity::Warning => "warning: ",
        };
        write!(
            f,
            "{}:{}:{}: {label}{}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Sorts problems by position, so they read top to bottom like the file.
pub fn sort(problems: &mut [Problem]) {
    problems.sort_by(|a, b| {
        (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message))
    });
}
