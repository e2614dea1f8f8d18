//! Argo CD's glob syntax (gitops-engine and Argo use gobwas/glob without separators): `*` any
//! run of characters (`/` included), `?` one character, `[abc]`, `[a-z]`, `[!a]` classes,
//! `{a,b}` alternatives (nested), `\` escapes the next character.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    expand(pattern).iter().any(|p| {
        wild(
            &p.chars().collect::<Vec<_>>(),
            &text.chars().collect::<Vec<_>>(),
        )
    })
}

/// The pattern with its `{a,b}` alternatives expanded (escapes kept for [`wild`]).
fn expand(pattern: &str) -> Vec<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut open = None;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '{' => {
                open = Some(i);
                break;
            }
            _ => {}
        }
        i += 1;
    }
    let Some(start) = open else {
        return vec![pattern.to_string()];
    };
    let (mut depth, mut j, mut parts, mut from) = (0, start, Vec::new(), start + 1);
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 1,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    parts.push(chars[from..j].iter().collect::<String>());
                    break;
                }
            }
            ',' if depth == 1 => {
                parts.push(chars[from..j].iter().collect::<String>());
                from = j + 1;
            }
            _ => {}
        }
        j += 1;
    }
    if j >= chars.len() {
        // An unclosed `{` is a literal.
        return vec![pattern.to_string()];
    }
    let head: String = chars[..start].iter().collect();
    let tail: String = chars[j + 1..].iter().collect();
    parts
        .iter()
        .flat_map(|alt| expand(&format!("{head}{alt}{tail}")))
        .collect()
}

fn wild(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => (0..=t.len()).any(|k| wild(&p[1..], &t[k..])),
        Some('?') => !t.is_empty() && wild(&p[1..], &t[1..]),
        Some('[') => match class(p) {
            Some(class) => {
                let Some(&c) = t.first() else { return false };
                let inside = class.ranges.iter().any(|(a, b)| *a <= c && c <= *b);
                inside != class.negated && wild(&p[class.len..], &t[1..])
            }
            None => t.first() == Some(&'[') && wild(&p[1..], &t[1..]),
        },
        Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && wild(&p[2..], &t[1..]),
        Some(c) => t.first() == Some(c) && wild(&p[1..], &t[1..]),
    }
}

/// A `[...]` class: its length in the pattern, whether negated, its ranges.
struct Class {
    len: usize,
    negated: bool,
    ranges: Vec<(char, char)>,
}

/// The `[...]` class at the start of `p`, if it is closed.
fn class(p: &[char]) -> Option<Class> {
    let mut i = 1;
    let negated = matches!(p.get(1), Some('!') | Some('^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    while i < p.len() && p[i] != ']' {
        let a = p[i];
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|c| *c != ']') {
            ranges.push((a, p[i + 2]));
            i += 3;
        } else {
            ranges.push((a, a));
            i += 1;
        }
    }
    (i < p.len()).then_some(Class {
        len: i + 1,
        negated,
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn argo_glob_table() {
        for (pattern, text, want) in [
            ("*", "a/b/c.yaml", true),
            ("*.yaml", "sub/dir/x.yaml", true),
            ("*.yaml", "x.yml", false),
            ("{config.yaml,secret.yaml}", "secret.yaml", true),
            ("{config.yaml,secret.yaml}", "other.yaml", false),
            ("*{.yaml,.json}", "a.json", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[ab]x", "bx", true),
            ("[!ab]x", "bx", false),
            ("[a-c]x", "cx", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            (
                "https://github.com/argoproj/*",
                "https://github.com/argoproj/argocd-example-apps",
                true,
            ),
            ("", "", true),
            ("", "x", false),
            ("guestbook-*", "guestbook-prod", true),
            ("{a,{b,c}}d", "cd", true),
        ] {
            assert_eq!(matches(pattern, text), want, "{pattern:?} against {text:?}");
        }
    }
}
