//! The GitHub Actions expression language: tokenizer and parser.
//!
//! Expressions are tokenized and parsed here into a small tree with byte spans
//! into the original text. The name checks in `names.rs` read the tree, and
//! `eval.rs` evaluates it. The lexical rules follow GitHub's (actions/runner
//! `ExpressionParser`): numbers as JavaScript's `Number()` reads them (`.5`, `+1`,
//! `0xff`, `0o17`, `1e3`, `NaN`, `Infinity`), single-quoted strings with `''`,
//! property names that may contain `-`, `.*` and `[*]` object filters.
//!
//! Every size is bounded here, before any work that depends on it: an expression
//! longer than [`MAX_EXPRESSION_LENGTH`] bytes or nested deeper than
//! [`MAX_DEPTH`] levels is an error naming the limit, so neither the parser nor
//! the evaluator (both recursive) can exhaust the stack. Nothing here evaluates
//! anything.

use super::ExprError;

/// The longest expression (the text between `${{` and `}}`) accepted, in bytes.
/// GitHub's limit.
pub const MAX_EXPRESSION_LENGTH: usize = 21_000;
/// The deepest nesting accepted: groups, function arguments, `!`, property and
/// index accesses each count one level. GitHub's limit.
pub const MAX_DEPTH: usize = 50;

/// A byte range into the expression source (the text between `${{` and `}}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    fn to(self, other: Span) -> Span {
        Span {
            start: self.start,
            end: other.end,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    /// A bare name: the root of a context path such as `inputs`.
    Ident(String),
    Prop {
        base: Box<Node>,
        name: String,
        name_span: Span,
    },
    Index {
        base: Box<Node>,
        index: Box<Node>,
    },
    /// An object filter: `base.*` or `base[*]`.
    Star {
        base: Box<Node>,
    },
    Call {
        func: Func,
        args: Vec<Node>,
        name_span: Span,
    },
    Not(Box<Node>),
    /// `a && b && c`: the operands of one chain (at least two).
    And(Vec<Node>),
    /// `a || b || c`: the operands of one chain (at least two).
    Or(Vec<Node>),
    Eq(Box<Node>, Box<Node>),
    Ne(Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: Kind,
    /// The whole extent of the node in the expression source.
    pub span: Span,
}

/// The functions an expression may call. Names are matched case-insensitively, as
/// GitHub does (`toJson` and `toJSON` are the same function).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Success,
    Failure,
    Always,
    Cancelled,
    Contains,
    StartsWith,
    EndsWith,
    Format,
    Join,
    ToJson,
    FromJson,
    HashFiles,
}

pub(crate) const FUNCS: [Func; 12] = [
    Func::Success,
    Func::Failure,
    Func::Always,
    Func::Cancelled,
    Func::Contains,
    Func::StartsWith,
    Func::EndsWith,
    Func::Format,
    Func::Join,
    Func::ToJson,
    Func::FromJson,
    Func::HashFiles,
];

impl Func {
    pub fn name(self) -> &'static str {
        match self {
            Func::Success => "success",
            Func::Failure => "failure",
            Func::Always => "always",
            Func::Cancelled => "cancelled",
            Func::Contains => "contains",
            Func::StartsWith => "startsWith",
            Func::EndsWith => "endsWith",
            Func::Format => "format",
            Func::Join => "join",
            Func::ToJson => "toJSON",
            Func::FromJson => "fromJSON",
            Func::HashFiles => "hashFiles",
        }
    }

    pub fn lookup(name: &str) -> Option<Func> {
        FUNCS
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// Whether this is one of the job-status functions that only make sense in `if:`.
    pub fn is_status(self) -> bool {
        matches!(
            self,
            Func::Success | Func::Failure | Func::Always | Func::Cancelled
        )
    }

    /// Whether the result depends only on the arguments (not on the run's status
    /// or the files in the workspace), so a call with constant arguments can be
    /// evaluated at plan time.
    pub fn is_pure(self) -> bool {
        !self.is_status() && self != Func::HashFiles
    }

    /// Allowed argument counts: (min, max). GitHub caps `format` at 255
    /// arguments.
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Success | Func::Failure | Func::Always | Func::Cancelled => (0, 0),
            Func::Contains | Func::StartsWith | Func::EndsWith => (2, 2),
            Func::Format => (1, 255),
            Func::HashFiles => (1, 255),
            Func::Join => (1, 2),
            Func::ToJson | Func::FromJson => (1, 1),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Str(String),
    Punct(&'static str),
    Eof,
}

struct Token {
    tok: Tok,
    span: Span,
}

fn err(message: impl Into<String>, span: Span) -> ExprError {
    ExprError {
        message: message.into(),
        offset: span.start,
        len: span.end.saturating_sub(span.start).max(1),
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Characters that end a number (GitHub's boundary characters, except `.`).
fn ends_number(b: u8) -> bool {
    matches!(
        b,
        b'(' | b'[' | b')' | b']' | b',' | b'!' | b'>' | b'<' | b'=' | b'&' | b'|'
    ) || b.is_ascii_whitespace()
}

/// Finds the end of a single-quoted string starting at `start` (which holds `'`).
/// Returns the index just past the closing quote. `''` is an escaped quote.
pub(crate) fn string_end(s: &str, start: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

const PUNCTS: [&str; 16] = [
    "&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", ".", ",", "*",
];

/// Whether a `.` after this token is a property access (else it starts a number
/// such as `.5`).
fn dot_is_access(prev: Option<&Token>) -> bool {
    matches!(
        prev.map(|t| &t.tok),
        Some(Tok::Ident(_)) | Some(Tok::Punct("]")) | Some(Tok::Punct(")")) | Some(Tok::Punct("*"))
    )
}

fn tokenize(src: &str) -> Result<Vec<Token>, ExprError> {
    let bytes = src.as_bytes();
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let starts_number = b.is_ascii_digit()
            || b == b'-'
            || b == b'+'
            || (b == b'.' && !dot_is_access(out.last()));
        if b == b'\'' {
            let end = string_end(src, i).ok_or_else(|| {
                err(
                    "unterminated string literal",
                    Span {
                        start,
                        end: start + 1,
                    },
                )
            })?;
            let text = src[start + 1..end - 1].replace("''", "'");
            out.push(Token {
                tok: Tok::Str(text),
                span: Span { start, end },
            });
            i = end;
        } else if b == b'"' {
            return Err(err(
                "strings in expressions use single quotes: write 'text', not \"text\"",
                Span {
                    start,
                    end: start + 1,
                },
            ));
        } else if starts_number {
            i += 1;
            while i < bytes.len() && !ends_number(bytes[i]) {
                i += 1;
            }
            let lexeme = &src[start..i];
            let span = Span { start, end: i };
            let value = parse_number(lexeme);
            if value.is_nan() && lexeme != "NaN" {
                return Err(match lexeme {
                    "-" | "+" => err(
                        format!("unexpected `{lexeme}` (expressions have no arithmetic)"),
                        span,
                    ),
                    _ => err(format!("invalid number `{lexeme}`"), span),
                });
            }
            out.push(Token {
                tok: Tok::Num(value),
                span,
            });
        } else if is_ident_start(b) {
            while i < bytes.len() && is_ident_char(bytes[i]) {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(src[start..i].to_string()),
                span: Span { start, end: i },
            });
        } else if let Some(p) = PUNCTS.iter().find(|p| src[i..].starts_with(**p)) {
            i += p.len();
            out.push(Token {
                tok: Tok::Punct(p),
                span: Span { start, end: i },
            });
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            let hint = match ch {
                '&' => " (logical and is `&&`)",
                '|' => " (logical or is `||`)",
                '=' => " (equality is `==`)",
                '/' | '%' => " (expressions have no arithmetic)",
                _ => "",
            };
            return Err(err(
                format!("unexpected character `{ch}`{hint}"),
                Span {
                    start,
                    end: i + ch.len_utf8(),
                },
            ));
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        span: Span {
            start: src.len(),
            end: src.len(),
        },
    });
    Ok(out)
}

/// A string read as a number the way GitHub does (JavaScript's `Number()`):
/// surrounding whitespace ignored, "" is 0, decimal with optional sign, point and
/// exponent, `0x` hexadecimal and `0o` octal (32-bit), `Infinity`, `-Infinity`;
/// anything else is NaN.
pub(crate) fn parse_number(s: &str) -> f64 {
    let t = s.trim();
    if t.is_empty() {
        return 0.0;
    }
    let decimal = t
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
        && t.bytes().any(|b| b.is_ascii_digit());
    if decimal {
        if let Ok(v) = t.parse::<f64>() {
            return v;
        }
    }
    let radix = |digits: &str, radix: u32| -> f64 {
        // GitHub parses these as 32-bit integers, so 0xffffffff is -1.
        match u32::from_str_radix(digits, radix) {
            Ok(n) if !digits.is_empty() && !digits.starts_with(['+', '-']) => f64::from(n as i32),
            _ => f64::NAN,
        }
    };
    if let Some(hex) = t.strip_prefix("0x") {
        return radix(hex, 16);
    }
    if let Some(oct) = t.strip_prefix("0o") {
        return radix(oct, 8);
    }
    match t {
        "Infinity" | "+Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        _ => f64::NAN,
    }
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

/// Parses one expression (the text between `${{` and `}}`). Spans in the tree and
/// in the error are relative to `src`.
pub(crate) fn parse(src: &str) -> Result<Node, ExprError> {
    if src.len() > MAX_EXPRESSION_LENGTH {
        return Err(err(
            format!(
                "expression is {} bytes long; the limit is {MAX_EXPRESSION_LENGTH} bytes",
                src.len()
            ),
            Span {
                start: 0,
                end: src.len().min(40),
            },
        ));
    }
    let toks = tokenize(src)?;
    if matches!(toks[0].tok, Tok::Eof) {
        return Err(err(
            "empty expression",
            Span {
                start: 0,
                end: src.len(),
            },
        ));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let node = p.expression()?;
    let t = p.peek();
    if !matches!(t.tok, Tok::Eof) {
        return Err(err(
            format!("unexpected {} after the expression", describe(&t.tok)),
            t.span,
        ));
    }
    Ok(node)
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(s) => format!("name `{s}`"),
        Tok::Num(n) => format!("number `{n}`"),
        Tok::Str(_) => "string".to_string(),
        Tok::Punct(p) => format!("`{p}`"),
        Tok::Eof => "end of expression".to_string(),
    }
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos]
    }

    fn next(&mut self) -> (Tok, Span) {
        let t = &self.toks[self.pos];
        let out = (t.tok.clone(), t.span);
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        out
    }

    fn at(&self, p: &str) -> bool {
        matches!(self.peek().tok, Tok::Punct(q) if q == p)
    }

    fn eat(&mut self, p: &str) -> bool {
        if self.at(p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str, what: &str) -> Result<Span, ExprError> {
        let t = self.peek();
        if matches!(t.tok, Tok::Punct(q) if q == p) {
            let span = t.span;
            self.pos += 1;
            Ok(span)
        } else {
            Err(err(
                format!("expected `{p}` {what}, found {}", describe(&t.tok)),
                t.span,
            ))
        }
    }

    /// One level deeper; an error naming the limit past [`MAX_DEPTH`]. The
    /// caller undoes it with [`Parser::leave`] on success (after an error the
    /// parser is abandoned).
    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(
                format!(
                    "expression nests more than {MAX_DEPTH} levels deep (the limit is {MAX_DEPTH})"
                ),
                self.peek().span,
            ));
        }
        Ok(())
    }

    fn leave(&mut self, levels: usize) {
        self.depth -= levels;
    }

    fn expression(&mut self) -> Result<Node, ExprError> {
        self.enter()?;
        let node = self.or()?;
        self.leave(1);
        Ok(node)
    }

    /// A chain `a OP b OP c` of one logical operator, as one n-ary node.
    fn logical(
        &mut self,
        op: &'static str,
        next: fn(&mut Parser) -> Result<Node, ExprError>,
        build: fn(Vec<Node>) -> Kind,
    ) -> Result<Node, ExprError> {
        let first = next(self)?;
        if !self.at(op) {
            return Ok(first);
        }
        self.enter()?;
        let mut items = vec![first];
        while self.eat(op) {
            items.push(next(self)?);
        }
        self.leave(1);
        let span = items[0].span.to(items[items.len() - 1].span);
        Ok(Node {
            kind: build(items),
            span,
        })
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        self.logical("||", Parser::and, Kind::Or)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        self.logical("&&", Parser::equality, Kind::And)
    }

    /// A left-associative chain of binary operators. Unlike GitHub, each operator
    /// after the first counts a level, so that the tree's height stays bounded.
    fn binary(
        &mut self,
        ops: &[&'static str],
        next: fn(&mut Parser) -> Result<Node, ExprError>,
        build: fn(&'static str, Box<Node>, Box<Node>) -> Kind,
    ) -> Result<Node, ExprError> {
        let mut left = next(self)?;
        let mut levels: usize = 0;
        loop {
            let op = match self.peek().tok {
                Tok::Punct(p) if ops.contains(&p) => p,
                _ => break,
            };
            if levels > 0 {
                self.enter()?;
            }
            levels += 1;
            self.pos += 1;
            let right = next(self)?;
            let span = left.span.to(right.span);
            left = Node {
                kind: build(op, Box::new(left), Box::new(right)),
                span,
            };
        }
        self.leave(levels.saturating_sub(1));
        Ok(left)
    }

    fn equality(&mut self) -> Result<Node, ExprError> {
        self.binary(&["==", "!="], Parser::comparison, |op, l, r| {
            if op == "==" {
                Kind::Eq(l, r)
            } else {
                Kind::Ne(l, r)
            }
        })
    }

    fn comparison(&mut self) -> Result<Node, ExprError> {
        self.binary(&["<", "<=", ">", ">="], Parser::unary, |op, l, r| {
            let op = match op {
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                _ => CmpOp::Ge,
            };
            Kind::Cmp(op, l, r)
        })
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        let start = self.peek().span;
        if self.eat("!") {
            self.enter()?;
            let inner = self.unary()?;
            self.leave(1);
            let span = start.to(inner.span);
            return Ok(Node {
                kind: Kind::Not(Box::new(inner)),
                span,
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Node, ExprError> {
        let mut node = self.primary()?;
        let mut levels = 0;
        loop {
            if self.eat(".") {
                self.enter()?;
                levels += 1;
                let (tok, name_span) = self.next();
                let span = node.span.to(name_span);
                node = match tok {
                    Tok::Ident(name) => Node {
                        kind: Kind::Prop {
                            base: Box::new(node),
                            name,
                            name_span,
                        },
                        span,
                    },
                    Tok::Punct("*") => Node {
                        kind: Kind::Star {
                            base: Box::new(node),
                        },
                        span,
                    },
                    other => {
                        return Err(err(
                            format!(
                                "expected a property name after `.`, found {}",
                                describe(&other)
                            ),
                            name_span,
                        ))
                    }
                };
            } else if self.eat("[") {
                self.enter()?;
                levels += 1;
                if self.eat("*") {
                    let close = self.expect("]", "to close `[*`")?;
                    let span = node.span.to(close);
                    node = Node {
                        kind: Kind::Star {
                            base: Box::new(node),
                        },
                        span,
                    };
                    continue;
                }
                let index = self.expression()?;
                let close = self.expect("]", "to close the index")?;
                let span = node.span.to(close);
                node = Node {
                    kind: Kind::Index {
                        base: Box::new(node),
                        index: Box::new(index),
                    },
                    span,
                };
            } else {
                self.leave(levels);
                return Ok(node);
            }
        }
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let (tok, span) = self.next();
        let kind = match &tok {
            Tok::Num(n) => Kind::Num(*n),
            Tok::Str(s) => Kind::Str(s.clone()),
            Tok::Ident(name) => match name.as_str() {
                "true" => Kind::Bool(true),
                "false" => Kind::Bool(false),
                "null" => Kind::Null,
                "NaN" => Kind::Num(f64::NAN),
                "Infinity" => Kind::Num(f64::INFINITY),
                _ => {
                    let name = name.clone();
                    if matches!(self.peek().tok, Tok::Punct("(")) {
                        return self.call(name, span);
                    }
                    Kind::Ident(name)
                }
            },
            Tok::Punct("(") => {
                let inner = self.expression()?;
                let close = self.expect(")", "to close `(`")?;
                return Ok(Node {
                    kind: inner.kind,
                    span: span.to(close),
                });
            }
            other => {
                return Err(err(
                    format!("expected a value, found {}", describe(other)),
                    span,
                ))
            }
        };
        Ok(Node { kind, span })
    }

    fn call(&mut self, name: String, name_span: Span) -> Result<Node, ExprError> {
        let func = Func::lookup(&name).ok_or_else(|| {
            let names: Vec<&str> = FUNCS.iter().map(|f| f.name()).collect();
            let hint = super::names::did_you_mean(&name, names.iter().copied());
            err(format!("unknown function `{name}`{hint}"), name_span)
        })?;
        self.expect("(", "")?;
        let mut args = Vec::new();
        if !self.eat(")") {
            loop {
                args.push(self.expression()?);
                if self.eat(")") {
                    break;
                }
                self.expect(",", "or `)` in the argument list")?;
            }
        }
        let end = self.toks[self.pos.saturating_sub(1)].span;
        let (min, max) = func.arity();
        if args.len() < min || args.len() > max {
            let expected = match (min, max) {
                (a, b) if a == b => format!("{a}"),
                (a, b) => format!("{a} to {b}"),
            };
            return Err(err(
                format!(
                    "`{}()` takes {expected} argument{}, got {}",
                    func.name(),
                    if max == 1 { "" } else { "s" },
                    args.len()
                ),
                name_span.to(end),
            ));
        }
        Ok(Node {
            kind: Kind::Call {
                func,
                args,
                name_span,
            },
            span: name_span.to(end),
        })
    }
}

/// The direct children of a node, in source order.
pub(crate) fn children(node: &Node) -> Vec<&Node> {
    match &node.kind {
        Kind::Null | Kind::Bool(_) | Kind::Num(_) | Kind::Str(_) | Kind::Ident(_) => Vec::new(),
        Kind::Prop { base, .. } | Kind::Star { base } => vec![base],
        Kind::Index { base, index } => vec![base, index],
        Kind::Call { args, .. } | Kind::And(args) | Kind::Or(args) => args.iter().collect(),
        Kind::Not(inner) => vec![inner],
        Kind::Eq(l, r) | Kind::Ne(l, r) | Kind::Cmp(_, l, r) => vec![l, r],
    }
}

/// Walks every node of the tree, parents before children.
pub(crate) fn walk<'a>(node: &'a Node, f: &mut dyn FnMut(&'a Node)) {
    f(node);
    for c in children(node) {
        walk(c, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(src: &str) -> Kind {
        parse(src).unwrap().kind
    }

    #[test]
    fn logical_chains_are_one_node() {
        assert!(matches!(kind("a && b && c"), Kind::And(v) if v.len() == 3));
        assert!(matches!(kind("a || b && c"), Kind::Or(v) if v.len() == 2));
        assert!(matches!(kind("!!a"), Kind::Not(_)));
    }

    #[test]
    fn operators_inside_strings_are_left_alone() {
        assert_eq!(kind("'a && b || !c'"), Kind::Str("a && b || !c".into()));
        assert_eq!(kind("'it''s'"), Kind::Str("it's".into()));
    }

    #[test]
    fn numbers_read_like_github() {
        for (src, want) in [
            ("0xff", 255.0),
            ("-2", -2.0),
            ("+2", 2.0),
            (".5", 0.5),
            ("-.5", -0.5),
            ("1.2e2", 120.0),
            ("1.2E-2", 0.012),
            ("0o10", 8.0),
            ("Infinity", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
        ] {
            assert_eq!(kind(src), Kind::Num(want), "{src}");
        }
        assert!(matches!(kind("NaN"), Kind::Num(n) if n.is_nan()));
        assert_eq!(parse_number(" 12 "), 12.0);
        assert_eq!(parse_number(""), 0.0);
        assert!(parse_number("inf").is_nan());
        assert!(parse_number("1_000").is_nan());
        assert_eq!(parse_number("0xffffffff"), -1.0);
    }

    #[test]
    fn filters_parse() {
        assert!(
            matches!(kind("needs.*.result"), Kind::Prop { base, .. } if matches!(base.kind, Kind::Star { .. }))
        );
        assert!(matches!(kind("a[*]"), Kind::Star { .. }));
    }

    #[test]
    fn property_names_may_be_keywords() {
        assert!(matches!(kind("foo.true"), Kind::Prop { name, .. } if name == "true"));
        assert!(matches!(kind("foo.NaN"), Kind::Prop { name, .. } if name == "NaN"));
    }

    #[test]
    fn syntax_errors_point_at_the_offending_token() {
        let e = parse("a == \"x\"").unwrap_err();
        assert_eq!(e.offset, 5);
        assert!(e.message.contains("single quotes"), "{}", e.message);

        let e = parse("a & b").unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (2, "unexpected character `&` (logical and is `&&`)")
        );

        let e = parse("a + b").unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (2, "unexpected `+` (expressions have no arithmetic)")
        );

        let e = parse("'abc").unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (0, "unterminated string literal")
        );

        let e = parse("a b").unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (2, "unexpected name `b` after the expression")
        );

        let e = parse("  ").unwrap_err();
        assert_eq!(e.message, "empty expression");

        let e = parse("foo.1").unwrap_err();
        assert_eq!(e.offset, 4);
    }

    #[test]
    fn unknown_function_suggests() {
        let e = parse("x || startWith(a, 'b')").unwrap_err();
        assert_eq!(e.offset, 5);
        assert_eq!(e.len, "startWith".len());
        assert_eq!(
            e.message,
            "unknown function `startWith` (did you mean `startsWith`?)"
        );
    }

    #[test]
    fn wrong_arity_is_an_error() {
        let e = parse("contains('a')").unwrap_err();
        assert_eq!(e.message, "`contains()` takes 2 arguments, got 1");
        let e = parse("success(1)").unwrap_err();
        assert_eq!(e.message, "`success()` takes 0 arguments, got 1");
    }

    #[test]
    fn depth_is_bounded_before_recursing() {
        let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("the limit is 50"), "{}", e.message);
        let ok = format!("{}1{}", "(".repeat(49), ")".repeat(49));
        parse(&ok).unwrap();
        let nots = format!("{}x", "!".repeat(5000));
        assert!(parse(&nots).unwrap_err().message.contains("limit"));
        let chain = vec!["a"; 60].join(".");
        assert!(parse(&chain).unwrap_err().message.contains("limit"));
        let eqs = vec!["1"; 2000].join(" == ");
        assert!(parse(&eqs).unwrap_err().message.contains("limit"));
        // A long `||` chain is one level, as on GitHub.
        parse(&vec!["a"; 2000].join(" || ")).unwrap();
    }

    #[test]
    fn length_is_bounded() {
        let long = format!("'{}'", "x".repeat(MAX_EXPRESSION_LENGTH));
        let e = parse(&long).unwrap_err();
        assert_eq!(
            e.message,
            "expression is 21002 bytes long; the limit is 21000 bytes"
        );
    }
}
