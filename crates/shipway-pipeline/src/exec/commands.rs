//! Secret masking and workflow commands (`::add-mask::`, `::group::`, `::error::`, ...) read
//! from a step's output lines.

/// Replaces every registered secret with `***`. Multi-line secrets are also masked line by
/// line, since output arrives a line at a time.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    values: Vec<String>,
}

impl Masker {
    pub fn add(&mut self, value: &str) {
        let mut parts = vec![value.to_string()];
        if value.contains('\n') {
            parts.extend(value.lines().map(str::to_string));
        }
        for p in parts {
            let p = p.trim_end_matches('\r').to_string();
            // Single characters or blanks would mask everything; GitHub skips them too.
            if p.trim().is_empty() || p.len() < 2 || self.values.contains(&p) {
                continue;
            }
            self.values.push(p);
        }
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    pub fn mask(&self, line: &str) -> String {
        let mut out = line.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "***");
            }
        }
        out
    }
}

/// What one output line means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// Print it (after masking).
    Text(String),
    AddMask(String),
    Group(String),
    EndGroup,
    /// `error`, `warning` or `notice`, with the message and its properties (`file=...`).
    Annotation {
        level: String,
        message: String,
        properties: String,
    },
    Debug(String),
    /// `::stop-commands::TOKEN`: commands are ignored until `::TOKEN::`.
    Stop(String),
    Resume,
    /// A command we accept and ignore (`::save-state::`, deprecated `::set-output::` ...).
    Ignored,
}

/// Parses one line; `stopped` holds the resume token while commands are stopped.
pub fn parse_line(line: &str, stopped: Option<&str>) -> Line {
    let trimmed = line.trim_start();
    let Some(rest) = trimmed.strip_prefix("::") else {
        return Line::Text(line.to_string());
    };
    let Some(end) = rest.find("::") else {
        return Line::Text(line.to_string());
    };
    let (head, value) = (&rest[..end], &rest[end + 2..]);
    if let Some(token) = stopped {
        return if head == token {
            Line::Resume
        } else {
            Line::Text(line.to_string())
        };
    }
    let (command, properties) = match head.split_once(' ') {
        Some((c, p)) => (c, p.to_string()),
        None => (head, String::new()),
    };
    let value = unescape(value);
    match command {
        "add-mask" => Line::AddMask(value),
        "group" => Line::Group(value),
        "endgroup" => Line::EndGroup,
        "error" | "warning" | "notice" => Line::Annotation {
            level: command.to_string(),
            message: value,
            properties,
        },
        "debug" => Line::Debug(value),
        "stop-commands" => Line::Stop(value),
        "save-state" | "set-output" | "echo" | "add-matcher" | "remove-matcher" | "add-path"
        | "set-env" => Line::Ignored,
        _ => Line::Text(line.to_string()),
    }
}

/// Workflow command values escape `%`, CR and LF.
fn unescape(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_first_and_multiline_secrets_by_line() {
        let mut m = Masker::default();
        m.add("abc");
        m.add("abcdef");
        m.add("line1\nline2");
        m.add("x");
        assert_eq!(m.mask("abcdef abc x"), "*** *** x");
        assert_eq!(m.mask("got line2"), "got ***");
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse_line("::add-mask::s3cret", None),
            Line::AddMask("s3cret".into())
        );
        assert_eq!(
            parse_line("::group::Build", None),
            Line::Group("Build".into())
        );
        assert_eq!(parse_line("::endgroup::", None), Line::EndGroup);
        assert_eq!(
            parse_line("::error file=a.rs,line=3::bad%0Athing", None),
            Line::Annotation {
                level: "error".into(),
                message: "bad\nthing".into(),
                properties: "file=a.rs,line=3".into()
            }
        );
        assert_eq!(
            parse_line("plain :: text", None),
            Line::Text("plain :: text".into())
        );
        assert_eq!(
            parse_line("::add-mask::x", Some("tok")),
            Line::Text("::add-mask::x".into())
        );
        assert_eq!(parse_line("::tok::", Some("tok")), Line::Resume);
    }
}
