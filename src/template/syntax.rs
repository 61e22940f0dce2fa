//! The GitHub Actions expression language: tokenizer, parser and translation to
//! minijinja source.
//!
//! GitHub's dialect differs from Jinja's in ways a text substitution cannot handle
//! safely (`&&` inside a string literal must stay `&&`, `!=` is not a negation,
//! `needs.build-app` is a property name and not a subtraction), so expressions are
//! tokenized and parsed here into a small tree. The tree serves two purposes: the
//! name checks in `names.rs` read it (with byte spans into the original text), and
//! [`emit`] prints it as a minijinja expression whose semantics follow GitHub's.
//! Nothing here evaluates anything.

use super::ExprError;

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

impl CmpOp {
    fn as_str(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
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
    Call {
        func: Func,
        args: Vec<Node>,
        name_span: Span,
    },
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
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

    /// Allowed argument counts: (min, max).
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Success | Func::Failure | Func::Always | Func::Cancelled => (0, 0),
            Func::Contains | Func::StartsWith | Func::EndsWith => (2, 2),
            Func::Format | Func::HashFiles => (1, usize::MAX),
            Func::Join => (1, 2),
            Func::ToJson | Func::FromJson => (1, 1),
        }
    }

    /// The name the function is registered under in the minijinja environment.
    pub fn jinja_name(self) -> &'static str {
        match self {
            Func::Success => "__trun_success",
            Func::Failure => "__trun_failure",
            Func::Always => "__trun_always",
            Func::Cancelled => "__trun_cancelled",
            Func::Contains => "__trun_contains",
            Func::StartsWith => "__trun_startswith",
            Func::EndsWith => "__trun_endswith",
            Func::Format => "__trun_format",
            Func::Join => "__trun_join",
            Func::ToJson => "__trun_tojson",
            Func::FromJson => "__trun_fromjson",
            Func::HashFiles => "__trun_hashfiles",
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

fn tokenize(src: &str) -> Result<Vec<Token>, ExprError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
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
        } else if b.is_ascii_digit()
            || (b == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let (value, end) = number(src, i)?;
            out.push(Token {
                tok: Tok::Num(value),
                span: Span { start, end },
            });
            i = end;
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
                '+' | '-' | '/' | '%' => " (expressions have no arithmetic)",
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

fn number(src: &str, start: usize) -> Result<(f64, usize), ExprError> {
    let bytes = src.as_bytes();
    let mut i = start;
    if bytes[i] == b'-' {
        i += 1;
    }
    let value;
    if src[i..].starts_with("0x") || src[i..].starts_with("0X") {
        let digits_start = i + 2;
        i = digits_start;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            i += 1;
        }
        let magnitude = u64::from_str_radix(&src[digits_start..i], 16)
            .map_err(|_| err("invalid hexadecimal number", Span { start, end: i }))?;
        let magnitude = magnitude as f64;
        value = if bytes[start] == b'-' {
            -magnitude
        } else {
            magnitude
        };
    } else {
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(bytes.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if bytes.get(j).is_some_and(u8::is_ascii_digit) {
                i = j;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
        value = src[start..i]
            .parse::<f64>()
            .map_err(|_| err("invalid number", Span { start, end: i }))?;
    }
    if bytes.get(i).is_some_and(|b| is_ident_char(*b)) {
        return Err(err("invalid number", Span { start, end: i + 1 }));
    }
    Ok((value, i))
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

/// Parses one expression (the text between `${{` and `}}`). Spans in the tree and
/// in the error are relative to `src`.
pub(crate) fn parse(src: &str) -> Result<Node, ExprError> {
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
    let mut p = Parser { toks, pos: 0 };
    let node = p.or()?;
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

    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek().tok, Tok::Punct(q) if q == p) {
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

    fn binary(
        &mut self,
        ops: &[&'static str],
        next: fn(&mut Parser) -> Result<Node, ExprError>,
        build: fn(&'static str, Box<Node>, Box<Node>) -> Kind,
    ) -> Result<Node, ExprError> {
        let mut left = next(self)?;
        loop {
            let op = match self.peek().tok {
                Tok::Punct(p) if ops.contains(&p) => p,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = next(self)?;
            let span = left.span.to(right.span);
            left = Node {
                kind: build(op, Box::new(left), Box::new(right)),
                span,
            };
        }
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        self.binary(&["||"], Parser::and, |_, l, r| Kind::Or(l, r))
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        self.binary(&["&&"], Parser::equality, |_, l, r| Kind::And(l, r))
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
            let inner = self.unary()?;
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
        loop {
            if self.eat(".") {
                let (tok, name_span) = self.next();
                let name = match &tok {
                    Tok::Ident(name) => name.clone(),
                    Tok::Punct("*") => {
                        return Err(err(
                            "object filters (`.*`) are not supported; name the property",
                            name_span,
                        ))
                    }
                    other => {
                        return Err(err(
                            format!(
                                "expected a property name after `.`, found {}",
                                describe(other)
                            ),
                            name_span,
                        ))
                    }
                };
                let span = node.span.to(name_span);
                node = Node {
                    kind: Kind::Prop {
                        base: Box::new(node),
                        name,
                        name_span,
                    },
                    span,
                };
            } else if self.eat("[") {
                if matches!(self.peek().tok, Tok::Punct("*")) {
                    return Err(err(
                        "object filters (`[*]`) are not supported",
                        self.peek().span,
                    ));
                }
                let index = self.or()?;
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
                _ => {
                    let name = name.clone();
                    if matches!(self.peek().tok, Tok::Punct("(")) {
                        return self.call(name, span);
                    }
                    Kind::Ident(name)
                }
            },
            Tok::Punct("(") => {
                let inner = self.or()?;
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
                args.push(self.or()?);
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
                (a, usize::MAX) => format!("at least {a}"),
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

/// Walks every node of the tree, parents before children.
pub(crate) fn walk<'a>(node: &'a Node, f: &mut dyn FnMut(&'a Node)) {
    f(node);
    match &node.kind {
        Kind::Null | Kind::Bool(_) | Kind::Num(_) | Kind::Str(_) | Kind::Ident(_) => {}
        Kind::Prop { base, .. } => walk(base, f),
        Kind::Index { base, index } => {
            walk(base, f);
            walk(index, f);
        }
        Kind::Call { args, .. } => args.iter().for_each(|a| walk(a, f)),
        Kind::Not(inner) => walk(inner, f),
        Kind::And(l, r) | Kind::Or(l, r) | Kind::Eq(l, r) | Kind::Ne(l, r) | Kind::Cmp(_, l, r) => {
            walk(l, f);
            walk(r, f);
        }
    }
}

/// minijinja source for a tree, plus where each node landed in it so that a
/// runtime error reported by minijinja can be traced back to the original text.
pub(crate) struct Emitted {
    pub source: String,
    /// (range in `source`, span in the original expression), innermost last.
    pub map: Vec<(std::ops::Range<usize>, Span)>,
}

impl Emitted {
    /// The original span of the innermost node whose translation covers `range`.
    pub fn original(&self, range: &std::ops::Range<usize>) -> Option<Span> {
        self.map
            .iter()
            .filter(|(r, _)| r.start <= range.start && range.end <= r.end)
            .min_by_key(|(r, _)| r.end - r.start)
            .map(|(_, span)| *span)
    }
}

/// Prints the tree as a minijinja expression. Property access always becomes a
/// subscript (`x["build-app"]`) so that any GitHub property name is valid; equality
/// and ordering go through trun's functions because GitHub compares loosely
/// (case-insensitive strings, numeric coercion between types).
pub(crate) fn emit(node: &Node) -> Emitted {
    let mut e = Emitted {
        source: String::new(),
        map: Vec::new(),
    };
    emit_into(node, &mut e);
    e
}

fn emit_into(node: &Node, e: &mut Emitted) {
    let start = e.source.len();
    match &node.kind {
        Kind::Null => e.source.push_str("none"),
        Kind::Bool(b) => e.source.push_str(if *b { "true" } else { "false" }),
        Kind::Num(n) => e.source.push_str(&number_literal(*n)),
        Kind::Str(s) => e.source.push_str(&string_literal(s)),
        Kind::Ident(name) => e.source.push_str(name),
        Kind::Prop { base, name, .. } => {
            emit_into(base, e);
            e.source.push('[');
            e.source.push_str(&string_literal(name));
            e.source.push(']');
        }
        Kind::Index { base, index } => {
            emit_into(base, e);
            e.source.push('[');
            emit_into(index, e);
            e.source.push(']');
        }
        Kind::Call { func, args, .. } => {
            e.source.push_str(func.jinja_name());
            e.source.push('(');
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    e.source.push_str(", ");
                }
                emit_into(a, e);
            }
            e.source.push(')');
        }
        Kind::Not(inner) => {
            e.source.push_str("(not ");
            emit_into(inner, e);
            e.source.push(')');
        }
        Kind::And(l, r) | Kind::Or(l, r) => {
            let op = if matches!(node.kind, Kind::And(..)) {
                " and "
            } else {
                " or "
            };
            e.source.push('(');
            emit_into(l, e);
            e.source.push_str(op);
            emit_into(r, e);
            e.source.push(')');
        }
        Kind::Eq(l, r) | Kind::Ne(l, r) => {
            let negate = matches!(node.kind, Kind::Ne(..));
            if negate {
                e.source.push_str("(not ");
            }
            e.source.push_str("__trun_eq(");
            emit_into(l, e);
            e.source.push_str(", ");
            emit_into(r, e);
            e.source.push(')');
            if negate {
                e.source.push(')');
            }
        }
        Kind::Cmp(op, l, r) => {
            e.source.push_str("__trun_cmp(");
            emit_into(l, e);
            e.source.push_str(", ");
            e.source.push_str(&string_literal(op.as_str()));
            e.source.push_str(", ");
            emit_into(r, e);
            e.source.push(')');
        }
    }
    e.map.push((start..e.source.len(), node.span));
}

fn string_literal(s: &str) -> String {
    // A JSON string literal only uses escapes minijinja's lexer understands.
    serde_json::Value::String(s.to_string()).to_string()
}

fn number_literal(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        format!("{}", n as i64)
    } else {
        format!("{n:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(src: &str) -> String {
        emit(&parse(src).unwrap()).source
    }

    #[test]
    fn logical_operators_become_words() {
        assert_eq!(translate("a && b || c"), "((a and b) or c)");
        assert_eq!(translate("!a"), "(not a)");
        assert_eq!(translate("!!a"), "(not (not a))");
    }

    #[test]
    fn not_equal_is_not_a_negation() {
        assert_eq!(translate("a != 'x'"), r#"(not __trun_eq(a, "x"))"#);
        assert_eq!(translate("!(a == b)"), "(not __trun_eq(a, b))");
    }

    #[test]
    fn operators_inside_strings_are_left_alone() {
        assert_eq!(translate("'a && b || !c'"), r#""a && b || !c""#);
        assert_eq!(translate("'it''s'"), r#""it's""#);
        assert_eq!(translate(r#"'say "hi" \n'"#), r#""say \"hi\" \\n""#);
    }

    #[test]
    fn hyphenated_properties_become_subscripts() {
        assert_eq!(
            translate("needs.build-app.outputs.image-id"),
            r#"needs["build-app"]["outputs"]["image-id"]"#
        );
        assert_eq!(
            translate("steps['my-step'].outputs.x"),
            r#"steps["my-step"]["outputs"]["x"]"#
        );
    }

    #[test]
    fn literals_translate() {
        assert_eq!(translate("null"), "none");
        assert_eq!(translate("true"), "true");
        assert_eq!(translate("0xff"), "255");
        assert_eq!(translate("-2"), "-2");
        assert_eq!(translate("1.5"), "1.5");
        assert_eq!(translate("2e3"), "2000");
    }

    #[test]
    fn function_names_are_case_insensitive() {
        assert_eq!(translate("toJson(x)"), "__trun_tojson(x)");
        assert_eq!(
            translate("STARTSWITH(a, 'b')"),
            r#"__trun_startswith(a, "b")"#
        );
    }

    #[test]
    fn comparison_goes_through_helper() {
        assert_eq!(translate("a <= 3"), r#"__trun_cmp(a, "<=", 3)"#);
    }

    #[test]
    fn precedence_follows_github() {
        // `!` binds tighter than `==`, `==` tighter than `&&`.
        assert_eq!(translate("!a == b && c"), "(__trun_eq((not a), b) and c)");
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

        let e = parse("steps.*.outcome").unwrap_err();
        assert_eq!(e.offset, 6);
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
    fn emitted_map_traces_back() {
        let node = parse("a && fromJSON(b)").unwrap();
        let e = emit(&node);
        let call_at = e.source.find("__trun_fromjson").unwrap();
        let span = e.original(&(call_at..call_at + 3)).unwrap();
        assert_eq!(span, Span { start: 5, end: 16 });
    }
}
