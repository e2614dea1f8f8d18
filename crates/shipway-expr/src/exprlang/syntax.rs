//! expr-lang's syntax: tokens and a precedence-climbing parser with expr-lang's operator table,
//! so `not a == b`, `-x ** 2` and `a ?? b + c` group as they do in Argo Rollouts.

use crate::ParseError;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    /// `#`, `#index`, `#acc`: the closure's pointers.
    Pointer(String),
    /// Punctuation and symbolic operators, as written.
    Punct(&'static str),
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    column: usize,
}

/// Longest first, so `**` wins over `*` and `?.` over `?`.
const PUNCT: &[&str] = &[
    "**", "==", "!=", "<=", ">=", "&&", "||", "??", "?.", "..", "+", "-", "*", "/", "%", "^", "<",
    ">", "!", "?", ":", ".", ",", "(", ")", "[", "]", "{", "}", "|",
];

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let column = i + 1;
        let tok = if c.is_ascii_digit()
            || (c == '.'
                && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())
                && !after_value(&out))
        {
            let (tok, len) = number(&chars[i..], column)?;
            i += len;
            tok
        } else if c == '\'' || c == '"' {
            let (s, len) = quoted(&chars[i..], column)?;
            i += len;
            Tok::Str(s)
        } else if c == '`' {
            let end = chars[i + 1..]
                .iter()
                .position(|&c| c == '`')
                .ok_or_else(|| ParseError::new(column, "literal not terminated"))?;
            let s = chars[i + 1..i + 1 + end].iter().collect();
            i += end + 2;
            Tok::Str(s)
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let len = chars[i..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_' || **c == '$')
                .count();
            let word: String = chars[i..i + len].iter().collect();
            i += len;
            Tok::Ident(word)
        } else if c == '#' {
            let len = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .count();
            let name: String = chars[i..i + 1 + len].iter().collect();
            i += 1 + len;
            Tok::Pointer(name)
        } else if let Some(p) = PUNCT
            .iter()
            .find(|p| p.chars().zip(&chars[i..]).filter(|(a, b)| a == *b).count() == p.len())
        {
            i += p.len();
            Tok::Punct(p)
        } else {
            return Err(ParseError::new(column, format!("unexpected token {c:?}")));
        };
        out.push(Token { tok, column });
    }
    out.push(Token {
        tok: Tok::Eof,
        column: chars.len() + 1,
    });
    Ok(out)
}

/// Whether a `.` here is member access (after a value) rather than the start of `.5`.
fn after_value(tokens: &[Token]) -> bool {
    matches!(
        tokens.last().map(|t| &t.tok),
        Some(Tok::Ident(_) | Tok::Pointer(_) | Tok::Punct(")" | "]" | "}"))
    )
}

fn number(chars: &[char], column: usize) -> Result<(Tok, usize), ParseError> {
    let bad = |text: &str| ParseError::new(column, format!("invalid number {text}"));
    if chars.len() > 1 && chars[0] == '0' && matches!(chars[1], 'x' | 'X' | 'o' | 'O' | 'b' | 'B') {
        let len = 2 + chars[2..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .count();
        let text: String = chars[..len].iter().collect();
        let digits: String = text[2..].chars().filter(|&c| c != '_').collect();
        let radix = match chars[1].to_ascii_lowercase() {
            'x' => 16,
            'o' => 8,
            _ => 2,
        };
        let n = i64::from_str_radix(&digits, radix).map_err(|_| bad(&text))?;
        return Ok((Tok::Int(n), len));
    }
    let mut len = 0;
    let mut float = false;
    while let Some(&c) = chars.get(len) {
        let next_digit = chars.get(len + 1).is_some_and(|d| d.is_ascii_digit());
        if c.is_ascii_digit() || c == '_' {
            len += 1;
        } else if c == '.' && !float && next_digit {
            // `1..3` is a range: the dot belongs to `..`.
            float = true;
            len += 1;
        } else if (c == 'e' || c == 'E')
            && (next_digit
                || (matches!(chars.get(len + 1), Some('+' | '-'))
                    && chars.get(len + 2).is_some_and(|d| d.is_ascii_digit())))
        {
            float = true;
            len += 2;
        } else {
            break;
        }
    }
    if chars.get(len).is_some_and(|c| c.is_alphabetic()) {
        let end = len
            + chars[len..]
                .iter()
                .take_while(|c| c.is_alphanumeric())
                .count();
        return Err(bad(&chars[..end].iter().collect::<String>()));
    }
    let text: String = chars[..len].iter().filter(|&&c| c != '_').collect();
    let tok = if float {
        Tok::Float(text.parse().map_err(|_| bad(&text))?)
    } else {
        match text.parse::<i64>() {
            Ok(n) => Tok::Int(n),
            // Too big for an int: expr-lang reads it as a float.
            Err(_) => Tok::Float(text.parse().map_err(|_| bad(&text))?),
        }
    };
    Ok((tok, len))
}

fn quoted(chars: &[char], column: usize) -> Result<(String, usize), ParseError> {
    let quote = chars[0];
    let mut s = String::new();
    let mut i = 1;
    loop {
        match chars.get(i) {
            None => return Err(ParseError::new(column, "literal not terminated")),
            Some(&c) if c == quote => return Ok((s, i + 1)),
            Some('\\') => {
                let esc = chars
                    .get(i + 1)
                    .ok_or_else(|| ParseError::new(column, "literal not terminated"))?;
                match esc {
                    'n' => s.push('\n'),
                    't' => s.push('\t'),
                    'r' => s.push('\r'),
                    '\\' | '\'' | '"' | '`' => s.push(*esc),
                    'u' => {
                        let hex: String = chars.iter().skip(i + 2).take(4).collect();
                        let c = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                ParseError::new(column + i, format!("invalid escape \\u{hex}"))
                            })?;
                        s.push(c);
                        i += 4;
                    }
                    other => {
                        return Err(ParseError::new(
                            column + i,
                            format!("invalid char escape \\{other}"),
                        ));
                    }
                }
                i += 2;
            }
            Some(&c) => {
                s.push(c);
                i += 1;
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    In,
    NotIn,
    Matches,
    Contains,
    StartsWith,
    EndsWith,
    Range,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Coalesce,
}

impl BinOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Gt => ">",
            BinOp::Le => "<=",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::NotIn => "not in",
            BinOp::Matches => "matches",
            BinOp::Contains => "contains",
            BinOp::StartsWith => "startsWith",
            BinOp::EndsWith => "endsWith",
            BinOp::Range => "..",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "**",
            BinOp::Coalesce => "??",
        }
    }

    /// expr-lang's binary operator table: precedence, and whether it groups to the right
    /// (`??` is 500 there; any figure above `**` means the same).
    fn of(tok: &Tok) -> Option<(BinOp, u8, bool)> {
        let op = match tok {
            Tok::Punct(p) => match *p {
                "||" => (BinOp::Or, 10, false),
                "&&" => (BinOp::And, 15, false),
                "==" => (BinOp::Eq, 20, false),
                "!=" => (BinOp::Ne, 20, false),
                "<" => (BinOp::Lt, 20, false),
                ">" => (BinOp::Gt, 20, false),
                "<=" => (BinOp::Le, 20, false),
                ">=" => (BinOp::Ge, 20, false),
                ".." => (BinOp::Range, 25, false),
                "+" => (BinOp::Add, 30, false),
                "-" => (BinOp::Sub, 30, false),
                "*" => (BinOp::Mul, 60, false),
                "/" => (BinOp::Div, 60, false),
                "%" => (BinOp::Mod, 60, false),
                "**" | "^" => (BinOp::Pow, 100, true),
                "??" => (BinOp::Coalesce, 200, false),
                _ => return None,
            },
            Tok::Ident(w) => match w.as_str() {
                "or" => (BinOp::Or, 10, false),
                "and" => (BinOp::And, 15, false),
                "in" => (BinOp::In, 20, false),
                "matches" => (BinOp::Matches, 20, false),
                "contains" => (BinOp::Contains, 20, false),
                "startsWith" => (BinOp::StartsWith, 20, false),
                "endsWith" => (BinOp::EndsWith, 20, false),
                _ => return None,
            },
            _ => return None,
        };
        Some(op)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnOp {
    Not,
    Neg,
    Plus,
}

#[derive(Clone, Debug)]
pub(crate) enum Node {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Ast>),
    Map(Vec<(String, Ast)>),
    /// A variable of the environment.
    Name(String),
    /// `#` (the element), `#index` or `#acc` inside a closure.
    Pointer(String),
    /// `obj.name`, `obj["name"]`, `obj[i]`; `optional` for `?.`.
    Member {
        obj: Box<Ast>,
        key: Box<Ast>,
        optional: bool,
    },
    Slice {
        obj: Box<Ast>,
        from: Option<Box<Ast>>,
        to: Option<Box<Ast>>,
    },
    Call {
        func: String,
        args: Vec<Ast>,
    },
    /// A predicate: `{# > 1}`, or `# > 1` given directly as a builtin's argument.
    Closure(Box<Ast>),
    Unary {
        op: UnOp,
        expr: Box<Ast>,
    },
    Binary {
        op: BinOp,
        left: Box<Ast>,
        right: Box<Ast>,
    },
    Ternary {
        cond: Box<Ast>,
        then: Box<Ast>,
        otherwise: Box<Ast>,
    },
}

/// A node and the 1-based column where it starts (for binary operators, the operator's).
#[derive(Clone, Debug)]
pub(crate) struct Ast {
    pub node: Node,
    pub column: usize,
}

/// The builtins whose arguments after the first are predicates.
pub(crate) const PREDICATE_BUILTINS: &[&str] = &[
    "all",
    "any",
    "none",
    "one",
    "filter",
    "map",
    "count",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "sum",
    "groupBy",
    "sortBy",
];

/// Nesting deeper than this is refused, so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 100;

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    /// Closures currently open: `#` and `.name` are allowed only inside one.
    closures: usize,
    known: &'a dyn Fn(&str) -> bool,
}

/// Parses `text`; `known` says which names the environment defines, so an unknown one is a
/// compile error with its column, as expr-lang's compiler reports it.
pub(crate) fn parse(text: &str, known: &dyn Fn(&str) -> bool) -> Result<Ast, ParseError> {
    let mut p = Parser {
        tokens: lex(text)?,
        pos: 0,
        depth: 0,
        closures: 0,
        known,
    };
    let ast = p.expression(0)?;
    match &p.peek().tok {
        Tok::Eof => Ok(ast),
        _ => Err(p.unexpected()),
    }
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // Past the end is the end: the last token is `Eof`.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    /// Always advances, so `self.pos -= 1` steps back over what it returned.
    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }

    fn is(&self, p: &str) -> bool {
        matches!(&self.peek().tok, Tok::Punct(q) if *q == p)
    }

    fn expect(&mut self, p: &str) -> Result<Token, ParseError> {
        if self.is(p) {
            Ok(self.next())
        } else {
            Err(self.unexpected())
        }
    }

    fn unexpected(&self) -> ParseError {
        let t = self.peek();
        let what = match &t.tok {
            Tok::Eof => "unexpected end of expression".to_string(),
            Tok::Int(n) => format!("unexpected token Number({n})"),
            Tok::Float(n) => format!("unexpected token Number({n})"),
            Tok::Str(s) => format!("unexpected token String({s:?})"),
            Tok::Ident(w) => format!("unexpected token Identifier({w:?})"),
            Tok::Pointer(w) => format!("unexpected token Pointer({w:?})"),
            Tok::Punct(p) => format!("unexpected token Operator({p:?})"),
        };
        ParseError::new(t.column, what)
    }

    fn expression(&mut self, min: u8) -> Result<Ast, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::new(
                self.peek().column,
                format!("expression nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let result = self.expression_inner(min);
        self.depth -= 1;
        result
    }

    fn expression_inner(&mut self, min: u8) -> Result<Ast, ParseError> {
        let mut left = self.unary()?;
        loop {
            // `not in` is one operator.
            let (op, prec, right_assoc, width) = if matches!(&self.peek().tok, Tok::Ident(w) if w == "not")
                && matches!(&self.tokens.get(self.pos + 1).map(|t| &t.tok), Some(Tok::Ident(w)) if w == "in")
            {
                (BinOp::NotIn, 20, false, 2)
            } else if let Some((op, prec, ra)) = BinOp::of(&self.peek().tok) {
                (op, prec, ra, 1)
            } else {
                break;
            };
            if prec < min {
                break;
            }
            let column = self.peek().column;
            for _ in 0..width {
                self.next();
            }
            let right = self.expression(if right_assoc { prec } else { prec + 1 })?;
            left = Ast {
                node: Node::Binary {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                },
                column,
            };
        }
        if min == 0 {
            if self.is("?") {
                let column = self.next().column;
                let then = self.expression(0)?;
                self.expect(":")?;
                let otherwise = self.expression(0)?;
                left = Ast {
                    node: Node::Ternary {
                        cond: Box::new(left),
                        then: Box::new(then),
                        otherwise: Box::new(otherwise),
                    },
                    column,
                };
            }
            while self.is("|") {
                // `x | f(a)` is `f(x, a)`.
                let column = self.next().column;
                let call = self.postfix()?;
                left = match call.node {
                    Node::Call { func, mut args } => {
                        args.insert(0, left);
                        Ast {
                            node: Node::Call { func, args },
                            column: call.column,
                        }
                    }
                    _ => return Err(ParseError::new(column, "a pipe must be followed by a call")),
                };
            }
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Ast, ParseError> {
        let column = self.peek().column;
        let (op, prec) = match &self.peek().tok {
            Tok::Punct("!") => (UnOp::Not, 50),
            Tok::Ident(w) if w == "not" => (UnOp::Not, 50),
            Tok::Punct("-") => (UnOp::Neg, 90),
            Tok::Punct("+") => (UnOp::Plus, 90),
            _ => return self.postfix(),
        };
        self.next();
        let expr = self.expression(prec)?;
        Ok(Ast {
            node: Node::Unary {
                op,
                expr: Box::new(expr),
            },
            column,
        })
    }

    fn postfix(&mut self) -> Result<Ast, ParseError> {
        let mut ast = self.primary()?;
        loop {
            let column = self.peek().column;
            if self.is(".") || self.is("?.") {
                let optional = self.is("?.");
                self.next();
                let name = self.next();
                let Tok::Ident(name) = name.tok else {
                    self.pos -= 1;
                    return Err(self.unexpected());
                };
                if self.is("(") {
                    return Err(ParseError::new(
                        column,
                        format!("method calls are not supported: .{name}()"),
                    ));
                }
                ast = member(ast, name, optional, column);
            } else if self.is("[") {
                self.next();
                if self.is(":") {
                    self.next();
                    let to = self.slice_end()?;
                    ast = slice(ast, None, to, column);
                    continue;
                }
                let key = self.expression(0)?;
                if self.is(":") {
                    self.next();
                    let to = self.slice_end()?;
                    ast = slice(ast, Some(key), to, column);
                    continue;
                }
                self.expect("]")?;
                ast = Ast {
                    node: Node::Member {
                        obj: Box::new(ast),
                        key: Box::new(key),
                        optional: false,
                    },
                    column,
                };
            } else {
                return Ok(ast);
            }
        }
    }

    fn slice_end(&mut self) -> Result<Option<Ast>, ParseError> {
        if self.is("]") {
            self.next();
            return Ok(None);
        }
        let to = self.expression(0)?;
        self.expect("]")?;
        Ok(Some(to))
    }

    fn primary(&mut self) -> Result<Ast, ParseError> {
        let t = self.next();
        let column = t.column;
        let node = match t.tok {
            Tok::Int(n) => Node::Int(n),
            Tok::Float(n) => Node::Float(n),
            Tok::Str(s) => Node::Str(s),
            Tok::Pointer(name) => {
                if self.closures == 0 {
                    return Err(ParseError::new(
                        column,
                        "cannot use pointer accessor outside predicate",
                    ));
                }
                Node::Pointer(name)
            }
            Tok::Punct(".") if self.closures > 0 => {
                // `.name` inside a predicate is `#.name`.
                let Tok::Ident(name) = self.next().tok else {
                    self.pos -= 1;
                    return Err(self.unexpected());
                };
                let element = Ast {
                    node: Node::Pointer("#".into()),
                    column,
                };
                return Ok(member(element, name, false, column));
            }
            Tok::Punct("(") => {
                let inner = self.expression(0)?;
                self.expect(")")?;
                return Ok(inner);
            }
            Tok::Punct("[") => {
                let mut items = Vec::new();
                while !self.is("]") {
                    items.push(self.expression(0)?);
                    if !self.is("]") {
                        self.expect(",")?;
                    }
                }
                self.next();
                Node::Array(items)
            }
            Tok::Punct("{") => {
                let mut entries = Vec::new();
                while !self.is("}") {
                    let key = match self.next().tok {
                        Tok::Ident(k) | Tok::Str(k) => k,
                        Tok::Int(n) => n.to_string(),
                        _ => {
                            self.pos -= 1;
                            return Err(self.unexpected());
                        }
                    };
                    self.expect(":")?;
                    entries.push((key, self.expression(0)?));
                    if !self.is("}") {
                        self.expect(",")?;
                    }
                }
                self.next();
                Node::Map(entries)
            }
            Tok::Ident(word) => match word.as_str() {
                "true" => Node::Bool(true),
                "false" => Node::Bool(false),
                "nil" => Node::Nil,
                "let" => {
                    return Err(ParseError::new(column, "let bindings are not supported"));
                }
                _ if self.is("(") => {
                    self.next();
                    let predicates = PREDICATE_BUILTINS.contains(&word.as_str());
                    let mut args = Vec::new();
                    while !self.is(")") {
                        let arg = if predicates && !args.is_empty() {
                            self.closure()?
                        } else {
                            self.expression(0)?
                        };
                        args.push(arg);
                        if !self.is(")") {
                            self.expect(",")?;
                        }
                    }
                    self.next();
                    if !(self.known)(&word) && !super::eval::is_builtin(&word) {
                        return Err(ParseError::new(column, format!("unknown func {word}")));
                    }
                    Node::Call { func: word, args }
                }
                _ => {
                    if !(self.known)(&word) {
                        return Err(ParseError::new(column, format!("unknown name {word}")));
                    }
                    Node::Name(word)
                }
            },
            _ => {
                self.pos -= 1;
                return Err(self.unexpected());
            }
        };
        Ok(Ast { node, column })
    }

    fn closure(&mut self) -> Result<Ast, ParseError> {
        let column = self.peek().column;
        self.closures += 1;
        let body = if self.is("{") {
            self.next();
            let body = self.expression(0);
            let body = body.and_then(|b| self.expect("}").map(|_| b));
            self.closures -= 1;
            body?
        } else {
            let body = self.expression(0);
            self.closures -= 1;
            body?
        };
        Ok(Ast {
            node: Node::Closure(Box::new(body)),
            column,
        })
    }
}

fn member(obj: Ast, name: String, optional: bool, column: usize) -> Ast {
    Ast {
        node: Node::Member {
            obj: Box::new(obj),
            key: Box::new(Ast {
                node: Node::Str(name),
                column,
            }),
            optional,
        },
        column,
    }
}

fn slice(obj: Ast, from: Option<Ast>, to: Option<Ast>, column: usize) -> Ast {
    Ast {
        node: Node::Slice {
            obj: Box::new(obj),
            from: from.map(Box::new),
            to: to.map(Box::new),
        },
        column,
    }
}
