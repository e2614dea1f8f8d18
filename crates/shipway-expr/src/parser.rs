//! The expression grammar: tokens to an [`Expr`] tree, checking names, functions and arity.
//!
//! Precedence, loosest first: `||`, `&&`, `==` `!=`, `<` `<=` `>` `>=`, `!`, then property and
//! index access and calls. Both binary logical operators and comparisons are left-associative.

use crate::ParseError;
use crate::lexer::{Tok, Token, lex};
use crate::value::Value;

/// GitHub refuses expressions longer than this many characters.
pub const MAX_EXPRESSION_LENGTH: usize = 21_000;
/// GitHub refuses expressions nested deeper than this; it also keeps recursion bounded.
pub const MAX_DEPTH: usize = 50;

/// Every context GitHub defines.
pub const ALL_CONTEXTS: &[&str] = &[
    "github", "env", "vars", "job", "jobs", "steps", "runner", "secrets", "strategy", "matrix",
    "needs", "inputs",
];

/// What an expression may refer to where it is written: GitHub makes different contexts and
/// functions available in different keys (`matrix` is not available in `on:`, status functions
/// only in `if:`, `hashFiles` only in steps).
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub contexts: &'a [&'a str],
    pub status_functions: bool,
    pub hash_files: bool,
}

impl Scope<'_> {
    /// Everything allowed: for evaluating expressions whose place is not known.
    pub const ANY: Scope<'static> = Scope {
        contexts: ALL_CONTEXTS,
        status_functions: true,
        hash_files: true,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    Contains,
    StartsWith,
    EndsWith,
    Format,
    Join,
    ToJson,
    FromJson,
    HashFiles,
    Success,
    Always,
    Cancelled,
    Failure,
    /// `case(pred1, value1, ..., default)`: the value of the first true predicate.
    Case,
}

impl Function {
    /// Functions are found ignoring case (`toJson` and `toJSON` are both common).
    fn lookup(name: &str) -> Option<Function> {
        const TABLE: &[(&str, Function)] = &[
            ("contains", Function::Contains),
            ("startswith", Function::StartsWith),
            ("endswith", Function::EndsWith),
            ("format", Function::Format),
            ("join", Function::Join),
            ("tojson", Function::ToJson),
            ("fromjson", Function::FromJson),
            ("hashfiles", Function::HashFiles),
            ("success", Function::Success),
            ("always", Function::Always),
            ("cancelled", Function::Cancelled),
            ("failure", Function::Failure),
            ("case", Function::Case),
        ];
        TABLE
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, f)| *f)
    }

    /// (minimum, maximum) number of arguments.
    fn arity(self) -> (usize, usize) {
        match self {
            Function::Contains | Function::StartsWith | Function::EndsWith => (2, 2),
            Function::Format | Function::HashFiles => (1, usize::MAX),
            Function::Join => (1, 2),
            Function::ToJson | Function::FromJson => (1, 1),
            Function::Success | Function::Always | Function::Cancelled | Function::Failure => {
                (0, 0)
            }
            Function::Case => (3, usize::MAX),
        }
    }

    pub fn is_status(self) -> bool {
        matches!(
            self,
            Function::Success | Function::Always | Function::Cancelled | Function::Failure
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    And,
    Or,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Literal(Value),
    /// A context by name (`github`), lowercased.
    Context(String),
    /// `a.b` or `a[b]`.
    Index(Box<Expr>, Box<Expr>),
    /// `a.*` or `a[*]`.
    Wildcard(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call(Function, Vec<Expr>),
}

/// A parsed expression node and the column (1-based, in characters) where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub node: Node,
    pub column: usize,
}

impl Expr {
    /// Whether the expression calls a status function anywhere; an `if:` without one is implicitly
    /// `success() && (...)`.
    pub fn calls_status_function(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| {
            if let Node::Call(f, _) = &e.node {
                found |= f.is_status();
            }
        });
        found
    }

    /// Visits every node, parents first.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match &self.node {
            Node::Literal(_) | Node::Context(_) => {}
            Node::Index(a, b) | Node::Binary(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Node::Wildcard(a) | Node::Not(a) => a.walk(f),
            Node::Call(_, args) => args.iter().for_each(|a| a.walk(f)),
        }
    }

    /// The path of a property chain rooted at a context (`needs.build.outputs.x` gives
    /// `["needs", "build", "outputs", "x"]`), with `*` for wildcards; `None` when any index is
    /// not a literal.
    pub fn context_path(&self) -> Option<Vec<String>> {
        match &self.node {
            Node::Context(name) => Some(vec![name.clone()]),
            Node::Index(target, index) => {
                let mut path = target.context_path()?;
                match &index.node {
                    Node::Literal(Value::String(s)) => path.push(s.clone()),
                    Node::Literal(Value::Number(n)) => path.push(crate::format_number(*n)),
                    _ => return None,
                }
                Some(path)
            }
            Node::Wildcard(target) => {
                let mut path = target.context_path()?;
                path.push("*".to_string());
                Some(path)
            }
            _ => None,
        }
    }
}

/// Parses one expression (the text between `${{` and `}}`).
pub fn parse(text: &str, scope: &Scope) -> Result<Expr, ParseError> {
    if text.chars().count() > MAX_EXPRESSION_LENGTH {
        return Err(ParseError::new(
            1,
            format!("Exceeded max expression length {MAX_EXPRESSION_LENGTH}"),
        ));
    }
    let tokens = lex(text)?;
    let end_column = text.chars().count() + 1;
    let mut p = Parser {
        tokens,
        pos: 0,
        scope,
        end_column,
        depth: 0,
    };
    if p.tokens.is_empty() {
        // `${{ }}` is null in GitHub, not an error.
        return Ok(Expr {
            node: Node::Literal(Value::Null),
            column: 1,
        });
    }
    let expr = p.or()?;
    if let Some(t) = p.peek() {
        return Err(unexpected(t));
    }
    if let Some(column) = too_deep(&expr, 1) {
        return Err(ParseError::new(
            column,
            format!("Exceeded max expression depth {MAX_DEPTH}"),
        ));
    }
    Ok(expr)
}

fn flatten<'e>(e: &'e Expr, op: BinOp, out: &mut Vec<&'e Expr>) {
    match &e.node {
        Node::Binary(o, a, b) if *o == op => {
            flatten(a, op, out);
            flatten(b, op, out);
        }
        _ => out.push(e),
    }
}

/// GitHub limits the depth of the expression tree (every operator, access, call and the leaf
/// count; grouping does not): the column of the first node deeper than [`MAX_DEPTH`].
fn too_deep(e: &Expr, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return Some(e.column);
    }
    match &e.node {
        Node::Literal(_) | Node::Context(_) => None,
        // `a || b || c` is one node with three operands in GitHub's tree, not a nested chain.
        Node::Binary(op @ (BinOp::And | BinOp::Or), _, _) => {
            let mut operands = Vec::new();
            flatten(e, *op, &mut operands);
            operands.into_iter().find_map(|o| too_deep(o, depth + 1))
        }
        Node::Index(a, b) | Node::Binary(_, a, b) => {
            too_deep(a, depth + 1).or_else(|| too_deep(b, depth + 1))
        }
        Node::Wildcard(a) | Node::Not(a) => too_deep(a, depth + 1),
        Node::Call(_, args) => args.iter().find_map(|a| too_deep(a, depth + 1)),
    }
}

struct Parser<'s> {
    tokens: Vec<Token>,
    pos: usize,
    scope: &'s Scope<'s>,
    end_column: usize,
    depth: usize,
}

fn unexpected(t: &Token) -> ParseError {
    ParseError::new(t.column, format!("Unexpected symbol: '{}'", t.text))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_tok(&self) -> Option<&Tok> {
        self.peek().map(|t| &t.tok)
    }

    fn next(&mut self) -> Result<Token, ParseError> {
        match self.tokens.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok(t.clone())
            }
            // GitHub points at the last token: `1 <` fails at the `<`.
            None => Err(match self.tokens.last() {
                Some(last) => ParseError::new(
                    last.column,
                    format!("Unexpected end of expression: '{}'", last.text),
                ),
                None => ParseError::new(self.end_column, "Unexpected end of expression"),
            }),
        }
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<Token, ParseError> {
        let t = self.next()?;
        if &t.tok == want {
            Ok(t)
        } else {
            Err(ParseError::new(
                t.column,
                format!("Unexpected symbol: '{}'. Expected {what}", t.text),
            ))
        }
    }

    fn enter(&mut self, column: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::new(
                column,
                format!("Exceeded max expression depth {MAX_DEPTH}"),
            ));
        }
        Ok(())
    }

    fn binary(
        &mut self,
        ops: &[(Tok, BinOp)],
        next: fn(&mut Self) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        let mut left = next(self)?;
        while let Some(op) = self
            .peek_tok()
            .and_then(|t| ops.iter().find(|(o, _)| o == t).map(|(_, op)| *op))
        {
            self.pos += 1;
            let right = next(self)?;
            let column = left.column;
            left = Expr {
                node: Node::Binary(op, Box::new(left), Box::new(right)),
                column,
            };
        }
        Ok(left)
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        self.binary(&[(Tok::Or, BinOp::Or)], Self::and)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        self.binary(&[(Tok::And, BinOp::And)], Self::equality)
    }

    fn equality(&mut self) -> Result<Expr, ParseError> {
        self.binary(
            &[(Tok::Eq, BinOp::Eq), (Tok::Ne, BinOp::Ne)],
            Self::comparison,
        )
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        self.binary(
            &[
                (Tok::Lt, BinOp::Lt),
                (Tok::Le, BinOp::Le),
                (Tok::Gt, BinOp::Gt),
                (Tok::Ge, BinOp::Ge),
            ],
            Self::unary,
        )
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if let Some(Token {
            tok: Tok::Not,
            column,
            ..
        }) = self.peek()
        {
            let column = *column;
            self.pos += 1;
            self.enter(column)?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr {
                node: Node::Not(Box::new(inner)),
                column,
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut expr = self.primary()?;
        loop {
            match self.peek_tok() {
                Some(Tok::Dot) => {
                    self.pos += 1;
                    let t = self.next()?;
                    let column = expr.column;
                    expr = match t.tok {
                        Tok::Star => Expr {
                            node: Node::Wildcard(Box::new(expr)),
                            column,
                        },
                        Tok::Ident(name) => Expr {
                            node: Node::Index(
                                Box::new(expr),
                                Box::new(Expr {
                                    node: Node::Literal(Value::String(name)),
                                    column: t.column,
                                }),
                            ),
                            column,
                        },
                        _ => {
                            return Err(ParseError::new(
                                t.column,
                                format!(
                                    "Unexpected symbol: '{}'. Expected a property name",
                                    t.text
                                ),
                            ));
                        }
                    };
                }
                Some(Tok::LBracket) => {
                    let open = self.next()?;
                    self.enter(open.column)?;
                    let column = expr.column;
                    if self.peek_tok() == Some(&Tok::Star) {
                        self.pos += 1;
                        self.expect(&Tok::RBracket, "']'")?;
                        expr = Expr {
                            node: Node::Wildcard(Box::new(expr)),
                            column,
                        };
                    } else {
                        let index = self.or()?;
                        self.expect(&Tok::RBracket, "']'")?;
                        expr = Expr {
                            node: Node::Index(Box::new(expr), Box::new(index)),
                            column,
                        };
                    }
                    self.depth -= 1;
                }
                _ => return Ok(expr),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let t = self.next()?;
        let literal = |v: Value| {
            Ok(Expr {
                node: Node::Literal(v),
                column: t.column,
            })
        };
        match &t.tok {
            Tok::Number(n) => literal(Value::Number(*n)),
            Tok::String(s) => literal(Value::String(s.clone())),
            Tok::True => literal(Value::Bool(true)),
            Tok::False => literal(Value::Bool(false)),
            Tok::Null => literal(Value::Null),
            Tok::LParen => {
                self.enter(t.column)?;
                let inner = self.or()?;
                self.expect(&Tok::RParen, "')'")?;
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Ident(name) => {
                if self.peek_tok() == Some(&Tok::LParen) {
                    self.call(&t, name)
                } else {
                    let lower = name.to_ascii_lowercase();
                    if !self.scope.contexts.contains(&lower.as_str()) {
                        return Err(ParseError::new(
                            t.column,
                            format!("Unrecognized named-value: '{name}'"),
                        ));
                    }
                    Ok(Expr {
                        node: Node::Context(lower),
                        column: t.column,
                    })
                }
            }
            _ => Err(unexpected(&t)),
        }
    }

    fn call(&mut self, t: &Token, name: &str) -> Result<Expr, ParseError> {
        let Some(func) = Function::lookup(name) else {
            return Err(ParseError::new(
                t.column,
                format!("Unrecognized function: '{name}'"),
            ));
        };
        if func.is_status() && !self.scope.status_functions {
            return Err(ParseError::new(
                t.column,
                format!("Function '{name}' is only available in 'if' conditions"),
            ));
        }
        if func == Function::HashFiles && !self.scope.hash_files {
            return Err(ParseError::new(
                t.column,
                format!("Function '{name}' is only available in steps"),
            ));
        }
        self.pos += 1; // the `(`
        self.enter(t.column)?;
        let mut args = Vec::new();
        if self.peek_tok() == Some(&Tok::RParen) {
            self.pos += 1;
        } else {
            loop {
                args.push(self.or()?);
                let sep = self.next()?;
                match sep.tok {
                    Tok::Comma => continue,
                    Tok::RParen => break,
                    _ => {
                        return Err(ParseError::new(
                            sep.column,
                            format!("Unexpected symbol: '{}'. Expected ',' or ')'", sep.text),
                        ));
                    }
                }
            }
        }
        self.depth -= 1;
        let (min, max) = func.arity();
        if args.len() < min {
            return Err(ParseError::new(
                t.column,
                format!("Too few parameters supplied: '{name}'"),
            ));
        }
        if args.len() > max {
            return Err(ParseError::new(
                t.column,
                format!("Too many parameters supplied: '{name}'"),
            ));
        }
        if func == Function::Case && args.len() % 2 == 0 {
            return Err(ParseError::new(
                t.column,
                format!(
                    "Even number of parameters supplied, requires an odd number of parameters: '{name}'"
                ),
            ));
        }
        Ok(Expr {
            node: Node::Call(func, args),
            column: t.column,
        })
    }
}
