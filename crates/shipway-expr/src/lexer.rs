//! Splitting an expression into tokens, each with the column where it starts.

use crate::ParseError;
use crate::value::parse_number;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Number(f64),
    String(String),
    True,
    False,
    Null,
    Ident(String),
    Dot,
    Comma,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Star,
    Not,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

/// A token and its 1-based column (in characters) within the expression; `text` is the source
/// text, for messages.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub column: usize,
    pub text: String,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Characters that end a number or a bad word: whitespace and operator characters.
fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || "()[],!<>=&|'".contains(c)
}

pub(crate) fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    // Whether the previous token was `.`: then any word (even `true`) is a property name.
    let mut after_dot = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let simple = |tok: Tok, len: usize| Token {
            tok,
            column: start + 1,
            text: chars[start..start + len].iter().collect(),
        };
        let two = chars.get(i + 1).copied();
        let token = match c {
            '(' => simple(Tok::LParen, 1),
            ')' => simple(Tok::RParen, 1),
            '[' => simple(Tok::LBracket, 1),
            ']' => simple(Tok::RBracket, 1),
            ',' => simple(Tok::Comma, 1),
            '*' => simple(Tok::Star, 1),
            '!' if two == Some('=') => simple(Tok::Ne, 2),
            '!' => simple(Tok::Not, 1),
            '<' if two == Some('=') => simple(Tok::Le, 2),
            '<' => simple(Tok::Lt, 1),
            '>' if two == Some('=') => simple(Tok::Ge, 2),
            '>' => simple(Tok::Gt, 1),
            '=' if two == Some('=') => simple(Tok::Eq, 2),
            '&' if two == Some('&') => simple(Tok::And, 2),
            '|' if two == Some('|') => simple(Tok::Or, 2),
            // `.` dereferences after something that has properties; elsewhere it starts a
            // number (`.5`) or a bad word (`..github/x`), read whole below.
            '.' if matches!(
                tokens.last(),
                Some(Token {
                    tok: Tok::Ident(_) | Tok::RBracket | Tok::RParen | Tok::Star,
                    ..
                })
            ) =>
            {
                simple(Tok::Dot, 1)
            }
            '\'' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(ParseError::new(
                                start + 1,
                                format!(
                                    "Unexpected symbol: '{}'. The string is not closed with a quote",
                                    chars[start..].iter().collect::<String>()
                                ),
                            ));
                        }
                        Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                            s.push('\'');
                            j += 2;
                        }
                        Some('\'') => {
                            j += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            j += 1;
                        }
                    }
                }
                Token {
                    tok: Tok::String(s),
                    column: start + 1,
                    text: chars[start..j].iter().collect(),
                }
            }
            c if is_ident_start(c) => {
                // A word runs to the next delimiter or `.`; it must then be a valid name
                // (`b@r` is reported whole, as GitHub does).
                let mut j = i + 1;
                while j < chars.len()
                    && !is_delimiter(chars[j])
                    && chars[j] != '.'
                    && chars[j] != '*'
                {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                if !word.chars().all(is_ident_char) {
                    return Err(ParseError::new(
                        start + 1,
                        format!("Unexpected symbol: '{word}'"),
                    ));
                }
                let tok = match word.as_str() {
                    _ if after_dot => Tok::Ident(word.clone()),
                    "true" => Tok::True,
                    "false" => Tok::False,
                    "null" => Tok::Null,
                    "NaN" => Tok::Number(f64::NAN),
                    "Infinity" => Tok::Number(f64::INFINITY),
                    _ => Tok::Ident(word.clone()),
                };
                Token {
                    tok,
                    column: start + 1,
                    text: word,
                }
            }
            _ => {
                // A number, or an unknown symbol: read up to the next delimiter and try it as a
                // number, so `1abc` is reported whole rather than as `1` followed by `abc`.
                let mut j = i + 1;
                while j < chars.len() && !is_delimiter(chars[j]) {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                let number = parse_literal_number(&word);
                match number {
                    Some(n) => Token {
                        tok: Tok::Number(n),
                        column: start + 1,
                        text: word,
                    },
                    None => {
                        return Err(ParseError::new(
                            start + 1,
                            format!("Unexpected symbol: '{word}'"),
                        ));
                    }
                }
            }
        };
        i = start + token.text.chars().count();
        after_dot = token.tok == Tok::Dot;
        tokens.push(token);
    }
    Ok(tokens)
}

/// Number literals: JSON-style decimals with an optional sign (`+1`, `-.5`, `1.2E+2`),
/// `Infinity` with a sign, and unsigned `0x` hex and `0o` octal (`-0xFF` is an error in GitHub).
fn parse_literal_number(word: &str) -> Option<f64> {
    let (sign, unsigned) = match word.as_bytes().first() {
        Some(b'-') => (-1.0, &word[1..]),
        Some(b'+') => (1.0, &word[1..]),
        _ => (1.0, word),
    };
    if unsigned == "Infinity" {
        return Some(sign * f64::INFINITY);
    }
    let radix = ["0x", "0X", "0o", "0O", "0b", "0B"]
        .iter()
        .find(|p| unsigned.starts_with(**p));
    match radix {
        Some(p) if *p == "0b" || *p == "0B" => None,
        Some(_) if unsigned.len() != word.len() => None,
        Some(_) => parse_number(unsigned),
        None if unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
            parse_number(unsigned).map(|n| sign * n)
        }
        None => None,
    }
}
