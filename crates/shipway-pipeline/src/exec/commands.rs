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

    /// Masks the start of `text`, a line that goes on beyond it: returns the masked part that
    /// can be printed and how many bytes of `text` it covers; the rest (shorter than the longest
    /// secret) is to be put before the line's next piece, so a secret cut in two is still masked.
    pub fn mask_start(&self, text: &str) -> (String, usize) {
        let longest = self.values.first().map_or(0, String::len);
        // A secret starting before `safe` ends within `text`, so whether one starts there is
        // known; from `safe` on it may not be.
        let safe = text.len().saturating_sub(longest.saturating_sub(1));
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            if let Some(v) = self.values.iter().find(|v| rest.starts_with(v.as_str())) {
                out.push_str("***");
                i += v.len();
            } else if i >= safe {
                break;
            } else {
                let c = rest.chars().next().map_or(1, char::len_utf8);
                out.push_str(&rest[..c]);
                i += c;
            }
        }
        (out, i)
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
    /// A command that changes what the step leaves behind, applied when it ends: see
    /// [`FileCommand`].
    File(FileCommand),
    /// A command we accept and ignore (`::echo::`, `::add-matcher::` ...).
    Ignored,
}

/// The old workflow commands that did what the environment files do now. `set-output` and
/// `save-state` are deprecated (a warning); `set-env` and `add-path` are disabled unless
/// `ACTIONS_ALLOW_UNSECURE_COMMANDS` is `true`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileCommand {
    SetOutput { name: String, value: String },
    SaveState { name: String, value: String },
    SetEnv { name: String, value: String },
    AddPath(String),
}

impl FileCommand {
    /// The command's name as written (`set-output`).
    pub fn command(&self) -> &'static str {
        match self {
            FileCommand::SetOutput { .. } => "set-output",
            FileCommand::SaveState { .. } => "save-state",
            FileCommand::SetEnv { .. } => "set-env",
            FileCommand::AddPath(_) => "add-path",
        }
    }

    /// Disabled unless the step allows unsecure commands.
    pub fn is_unsecure(&self) -> bool {
        matches!(self, FileCommand::SetEnv { .. } | FileCommand::AddPath(_))
    }

    /// GitHub's warning for a deprecated command, or its refusal of a disabled one.
    pub fn message(&self) -> String {
        let command = self.command();
        if self.is_unsecure() {
            format!(
                "The `{command}` command is disabled. Please upgrade to using Environment Files or \
                 opt into unsecure command execution by setting the \
                 `ACTIONS_ALLOW_UNSECURE_COMMANDS` environment variable to `true`. For more \
                 information see: \
                 https://github.blog/changelog/2020-10-01-github-actions-deprecating-set-env-and-add-path-commands/"
            )
        } else {
            format!(
                "The `{command}` command is deprecated and will be disabled soon. Please upgrade \
                 to using Environment Files. For more information see: \
                 https://github.blog/changelog/2022-10-11-github-actions-deprecating-save-state-and-set-output-commands/"
            )
        }
    }
}

/// The `name` property of `name=a,other=b`, unescaped.
fn name_property(properties: &str) -> Option<String> {
    properties.split(',').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == "name").then(|| unescape_property(v))
    })
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
        "set-output" | "save-state" | "set-env" => match name_property(&properties) {
            Some(name) if !name.is_empty() => Line::File(match command {
                "set-output" => FileCommand::SetOutput { name, value },
                "save-state" => FileCommand::SaveState { name, value },
                _ => FileCommand::SetEnv { name, value },
            }),
            // GitHub refuses these without a name; nothing to apply.
            _ => Line::Ignored,
        },
        "add-path" => Line::File(FileCommand::AddPath(value)),
        "echo" | "add-matcher" | "remove-matcher" => Line::Ignored,
        _ => Line::Text(line.to_string()),
    }
}

/// Workflow command values escape `%`, CR and LF.
fn unescape(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

/// Property values also escape `:` and `,`.
fn unescape_property(s: &str) -> String {
    unescape(&s.replace("%3A", ":").replace("%2C", ","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_cut_between_pieces_of_a_line_is_masked() {
        let mut m = Masker::default();
        m.add("s3cr3t");
        m.add("token-abc");
        // Every cut of the line, fed as two pieces with the carried rest in front of the second.
        let line = "a s3cr3t b token-abc c s3cr3t";
        for cut in 0..=line.len() {
            let (first, used) = m.mask_start(&line[..cut]);
            let second = m.mask(&format!("{}{}", &line[used..cut], &line[cut..]));
            let whole = format!("{first}{second}");
            assert_eq!(whole, "a *** b *** c ***", "cut at {cut}");
        }
        // Without secrets everything is printed at once.
        assert_eq!(Masker::default().mask_start("abc"), ("abc".to_string(), 3));
    }

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

    #[test]
    fn file_commands_carry_their_name_and_value() {
        assert_eq!(
            parse_line("::set-output name=zoo::zar", None),
            Line::File(FileCommand::SetOutput {
                name: "zoo".into(),
                value: "zar".into()
            })
        );
        assert_eq!(
            parse_line("::save-state name=a%2Cb::1%0A2", None),
            Line::File(FileCommand::SaveState {
                name: "a,b".into(),
                value: "1\n2".into()
            })
        );
        assert_eq!(
            parse_line("::set-env name=foo::bar", None),
            Line::File(FileCommand::SetEnv {
                name: "foo".into(),
                value: "bar".into()
            })
        );
        assert_eq!(
            parse_line("::add-path::/zip", None),
            Line::File(FileCommand::AddPath("/zip".into()))
        );
        assert_eq!(parse_line("::set-output::no name", None), Line::Ignored);
        assert!(
            FileCommand::AddPath("/x".into())
                .message()
                .starts_with("The `add-path` command is disabled.")
        );
    }
}
