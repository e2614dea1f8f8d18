//! The files a step writes to talk back: `$GITHUB_OUTPUT` and `$GITHUB_ENV` (`name=value` or
//! `name<<DELIMITER` heredocs) and `$GITHUB_PATH` (one directory a line).

/// Parses `name=value` and `name<<DELIM` ... `DELIM` entries, in order. Errors name the line.
pub fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((n, raw)) = lines.next() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        // GitHub checks for `<<` before `=`: a heredoc name cannot contain `=`.
        let heredoc = line.find("<<").filter(|&i| !line[..i].contains('='));
        if let Some(i) = heredoc {
            let name = &line[..i];
            let delimiter = &line[i + 2..];
            if name.is_empty() || delimiter.is_empty() {
                return Err(format!("line {}: invalid heredoc '{line}'", n + 1));
            }
            let mut value: Vec<&str> = Vec::new();
            let mut closed = false;
            for (_, raw) in lines.by_ref() {
                let l = raw.strip_suffix('\r').unwrap_or(raw);
                if l == delimiter {
                    closed = true;
                    break;
                }
                value.push(l);
            }
            if !closed {
                return Err(format!(
                    "line {}: matching delimiter '{delimiter}' for '{name}' not found",
                    n + 1
                ));
            }
            out.push((name.to_string(), value.join("\n")));
        } else if let Some((name, value)) = line.split_once('=') {
            if name.is_empty() {
                return Err(format!("line {}: a name is needed before '='", n + 1));
            }
            out.push((name.to_string(), value.to_string()));
        } else {
            return Err(format!(
                "line {}: expected NAME=VALUE or NAME<<DELIMITER, found '{line}'",
                n + 1
            ));
        }
    }
    Ok(out)
}

/// `$GITHUB_PATH`: directories to prepend to `PATH`, in the order written.
pub fn parse_path_file(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_and_heredocs() {
        let text = "a=1\nb=x=y\n\nJSON<<EOF\n{\n  \"k\": 1\n}\nEOF\nempty=\n";
        assert_eq!(
            parse_key_values(text),
            Ok(vec![
                ("a".into(), "1".into()),
                ("b".into(), "x=y".into()),
                ("JSON".into(), "{\n  \"k\": 1\n}".into()),
                ("empty".into(), String::new()),
            ])
        );
        assert!(parse_key_values("x<<EOF\nno end\n").is_err());
        assert!(parse_key_values("novalue\n").is_err());
        assert_eq!(parse_path_file("/a\n\n/b\n"), vec!["/a", "/b"]);
    }
}
