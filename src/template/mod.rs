//! Expressions: `${{ … }}` in workflow strings, checked at plan time and evaluated
//! at run time, exactly as GitHub Actions evaluates them.
//!
//! trun speaks GitHub Actions' expression dialect: `&&`/`||` returning the
//! operand that decided, loose `==` with type coercion, case-insensitive names
//! and string comparison, `.*` object filters, `NaN`/`Infinity`, null for a
//! missing property. `syntax.rs` parses, `eval.rs` evaluates, `value.rs` holds
//! the coercion and printing rules, `functions.rs` the functions and the memory
//! limits, `names.rs` the plan-time name checks. [`Engine::check`] rejects
//! names that provably do not exist before anything runs, so a typo is an error
//! and never an empty string; [`Engine::render_script`] keeps expression values
//! out of shell script text. This module does not know the workflow file's
//! structure: callers describe what is declared at a place with a [`Scope`] and
//! supply values with a [`Context`], and they turn an [`ExprError`]'s byte offset
//! into `file:line:col`.
//!
//! Every size is bounded before the work is done: an expression's length and
//! nesting ([`MAX_EXPRESSION_LENGTH`], [`MAX_DEPTH`]), each built string
//! ([`MAX_STRING`]), all values one field's expressions build ([`MAX_MEMORY`]),
//! and `fromJSON` nesting ([`MAX_JSON_DEPTH`]); each error names its limit.

mod eval;
mod functions;
mod names;
mod syntax;
mod value;

pub use functions::{hash_files, MAX_JSON_DEPTH, MAX_MEMORY, MAX_STRING};
pub use syntax::{MAX_DEPTH, MAX_EXPRESSION_LENGTH};

use eval::Evaluator;
use functions::Memory;
use serde_json::{Map, Value as Json};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use syntax::{Kind, Node};
use value::Val;

/// An expression problem, located by byte offset into the string the caller
/// passed in (the whole field value for [`Engine::render`] and friends, the bare
/// expression for [`Engine::eval`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    pub message: String,
    /// Byte offset of the offending text.
    pub offset: usize,
    /// Length in bytes of the offending text (at least 1).
    pub len: usize,
}

impl ExprError {
    fn shifted(mut self, by: usize) -> ExprError {
        self.offset += by;
        self
    }
}

/// A string split into literal text and `${{ expr }}` parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    /// `src` is the text between `${{` and `}}`, untrimmed; `offset` and `len` are
    /// its byte position in the input, so the whole `${{ … }}` spans
    /// `offset - 3 .. offset + len + 2`.
    Expr {
        src: String,
        offset: usize,
        len: usize,
    },
}

impl Template {
    /// Splits `s` at `${{ … }}`. A `}}` inside a single-quoted string does not end
    /// the expression. An unclosed `${{` is an error at its offset.
    pub fn parse(s: &str) -> Result<Template, ExprError> {
        let mut parts = Vec::new();
        let mut rest_start = 0;
        while let Some(found) = s[rest_start..].find("${{") {
            let open = rest_start + found;
            if open > rest_start {
                parts.push(Part::Lit(s[rest_start..open].to_string()));
            }
            let src_start = open + 3;
            let close = find_close(s, src_start)?.ok_or(ExprError {
                message: "unclosed `${{` (expected `}}`)".to_string(),
                offset: open,
                len: 3,
            })?;
            parts.push(Part::Expr {
                src: s[src_start..close].to_string(),
                offset: src_start,
                len: close - src_start,
            });
            rest_start = close + 2;
        }
        if rest_start < s.len() {
            parts.push(Part::Lit(s[rest_start..].to_string()));
        }
        Ok(Template { parts })
    }

    pub fn has_expressions(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Expr { .. }))
    }

    fn exprs(&self) -> impl Iterator<Item = (&str, usize)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr { src, offset, .. } => Some((src.as_str(), *offset)),
            Part::Lit(_) => None,
        })
    }
}

/// The byte index of the `}}` closing an expression that starts at `from`.
fn find_close(s: &str, from: usize) -> Result<Option<usize>, ExprError> {
    let bytes = s.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => {
                i = syntax::string_end(s, i).ok_or(ExprError {
                    message: "unterminated string literal".to_string(),
                    offset: i,
                    len: 1,
                })?;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Ok(Some(i)),
            _ => i += 1,
        }
    }
    Ok(None)
}

/// What names exist at plan time for one place in the workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Declared workflow inputs.
    pub inputs: BTreeSet<String>,
    /// Keys of the job's matrix (the union over all combinations, `include` too);
    /// `None` when the job has no matrix.
    pub matrix: Option<BTreeSet<String>>,
    /// Job id -> its declared output names, for each job in this job's `needs`.
    pub needs: BTreeMap<String, BTreeSet<String>>,
    /// Ids of the steps before this one in the job.
    pub steps: BTreeSet<String>,
    /// Env names declared in the workflow, job and step `env`. Not used to
    /// reject names: a step may add any variable through `$GITHUB_ENV`.
    pub env: BTreeSet<String>,
    /// Whether `success()`, `failure()`, `always()`, `cancelled()` may be called
    /// (true for `if:`, false for `run:`, `with:`, `env:`…).
    pub allow_status_functions: bool,
}

/// Outcome of the earlier work, read by the status functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusFlags {
    pub success: bool,
    pub failure: bool,
    pub cancelled: bool,
}

impl Default for StatusFlags {
    fn default() -> StatusFlags {
        StatusFlags {
            success: true,
            failure: false,
            cancelled: false,
        }
    }
}

/// Runtime values of the contexts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    pub inputs: Map<String, Json>,
    /// The `env` context: the workflow, job and step `env` and what earlier
    /// steps wrote to `$GITHUB_ENV`. On GitHub it does not hold the runner's
    /// own process environment (`env.HOME` is null), so callers should not put
    /// it here. A name missing here reads as null.
    pub env: Map<String, Json>,
    /// The current matrix combination. Fill every key of the matrix (null where a
    /// combination lacks one) so a key that exists in some combination is never an
    /// error in another.
    pub matrix: Map<String, Json>,
    /// `{job: {"outputs": {..}, "result": "success"}}`.
    pub needs: Map<String, Json>,
    /// `{id: {"outputs": {..}, "outcome": "success", "conclusion": "success"}}`.
    /// An output a step did not write reads as null, like any missing property.
    pub steps: Map<String, Json>,
    /// `{"id", "name", "status"}`.
    pub job: Map<String, Json>,
    /// `{"workspace", "run_id", "os"}`.
    pub trun: Map<String, Json>,
    /// `--secret` values by name; a name not given reads as null.
    pub secrets: Map<String, Json>,
    pub status: StatusFlags,
    /// GitHub Actions' `github` context (see `crate::github`) without `event`.
    pub github: Map<String, Json>,
    /// `github.event`, shared: an event payload may be megabytes, and every job
    /// and step has a context of its own. `None` outside GitHub Actions files.
    pub github_event: Option<std::sync::Arc<Json>>,
    /// `{"os", "arch", "name", "temp", "tool_cache", "debug"}`.
    pub runner: Map<String, Json>,
    /// `--var NAME=VALUE` and `--var-file`; a missing variable reads as null.
    pub vars: Map<String, Json>,
    /// `{"fail-fast", "job-index", "job-total", "max-parallel"}`.
    pub strategy: Map<String, Json>,
}

impl Context {
    /// The contexts by name, as expressions see them.
    fn roots(&self) -> [(&str, Val<'_>); 12] {
        let obj = |m| Val::Obj(Cow::Borrowed(m));
        [
            ("inputs", obj(&self.inputs)),
            ("env", obj(&self.env)),
            ("matrix", obj(&self.matrix)),
            ("needs", obj(&self.needs)),
            ("steps", obj(&self.steps)),
            ("job", obj(&self.job)),
            ("trun", obj(&self.trun)),
            (
                "github",
                match &self.github_event {
                    Some(event) => Val::ObjWith(&self.github, "event", event),
                    None => obj(&self.github),
                },
            ),
            ("runner", obj(&self.runner)),
            ("vars", obj(&self.vars)),
            ("strategy", obj(&self.strategy)),
            ("secrets", obj(&self.secrets)),
        ]
    }
}

/// Evaluates expressions. Holds only the workspace `hashFiles()` reads; cheap
/// to share between threads.
#[derive(Debug, Clone)]
pub struct Engine {
    workspace: PathBuf,
}

impl Engine {
    /// `hashFiles()` patterns are relative to `workspace`.
    pub fn new(workspace: PathBuf) -> Engine {
        Engine { workspace }
    }

    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Plan-time check of every `${{ }}` in `s`: syntax, functions, that every
    /// name is declared in `scope`, and the parts that read no context (which
    /// are evaluated, so a bad `format()` or a result over a size limit is
    /// reported now).
    pub fn check(&self, s: &str, scope: &Scope) -> Result<(), ExprError> {
        for (src, offset) in Template::parse(s)?.exprs() {
            self.check_expr(src, scope).map_err(|e| e.shifted(offset))?;
        }
        Ok(())
    }

    /// Plan-time check of an `if:` condition (with or without `${{ }}`). Status
    /// functions are always allowed here, whatever `scope` says.
    pub fn check_condition(&self, cond: &str, scope: &Scope) -> Result<(), ExprError> {
        let (src, offset) = condition_source(cond)?;
        let scope = Scope {
            allow_status_functions: true,
            ..scope.clone()
        };
        self.check_expr(src, &scope).map_err(|e| e.shifted(offset))
    }

    fn check_expr(&self, src: &str, scope: &Scope) -> Result<(), ExprError> {
        let node = syntax::parse(src)?;
        names::check(&node, scope)?;
        eval::check_constants(&node, &self.workspace)
    }

    /// Evaluates `node` against `roots` and hands the value to `f`.
    fn with_value<R>(
        &self,
        node: &Node,
        roots: &eval::Roots<'_>,
        status: StatusFlags,
        mem: &mut Memory,
        f: impl FnOnce(&Val) -> R,
    ) -> Result<R, ExprError> {
        let names: Vec<&str> = roots.iter().map(|(n, _)| *n).collect();
        names::check_roots(node, &names)?;
        let mut ev = Evaluator {
            roots,
            status,
            workspace: &self.workspace,
            mem,
        };
        let v = ev.eval(node)?;
        Ok(f(&v))
    }

    /// Evaluates one expression source (no `${{ }}`) to a value. A whole number
    /// is a JSON integer; NaN and the infinities are the strings GitHub prints
    /// for them.
    pub fn eval(&self, expr: &str, ctx: &Context) -> Result<Json, ExprError> {
        let node = syntax::parse(expr)?;
        let mut mem = Memory::default();
        self.with_value(&node, &ctx.roots(), ctx.status, &mut mem, |v| v.to_json())
    }

    /// Evaluates one expression against any named contexts (`github`,
    /// `runner`, … as well as trun's): each key of `contexts` is a name an
    /// expression may start with.
    pub fn eval_in(
        &self,
        expr: &str,
        contexts: &Map<String, Json>,
        status: StatusFlags,
    ) -> Result<Json, ExprError> {
        let roots: Vec<(&str, Val)> = contexts
            .iter()
            .map(|(k, v)| (k.as_str(), Val::borrowed(v)))
            .collect();
        let node = syntax::parse(expr)?;
        let mut mem = Memory::default();
        self.with_value(&node, &roots, status, &mut mem, |v| v.to_json())
    }

    /// Replaces every `${{ }}` in `s` by its value as GitHub prints it (as
    /// `format()` would): null as "", booleans and numbers as text, strings as
    /// they are, arrays and objects as `Array` and `Object`.
    pub fn render(&self, s: &str, ctx: &Context) -> Result<String, ExprError> {
        let mut out = String::with_capacity(s.len());
        let mut mem = Memory::default();
        for part in Template::parse(s)?.parts {
            match part {
                Part::Lit(text) => out.push_str(&text),
                Part::Expr { src, offset, .. } => {
                    let text = self
                        .text_of(&src, ctx, &mut mem)
                        .map_err(|e| e.shifted(offset))?;
                    out.push_str(&text);
                }
            }
        }
        Ok(out)
    }

    /// One expression's value as text, counted against `mem`.
    fn text_of(&self, src: &str, ctx: &Context, mem: &mut Memory) -> Result<String, ExprError> {
        let node = syntax::parse(src)?;
        let text = self.with_value(&node, &ctx.roots(), ctx.status, mem, |v| {
            v.to_text().into_owned()
        })?;
        mem.other(text.len()).map_err(|m| whole(src, m))?;
        Ok(text)
    }

    /// Like [`Engine::render`], but a string that is exactly one `${{ expr }}`
    /// (nothing around it) keeps the expression's type: `${{ fromJSON('[1,2]') }}`
    /// is an array. Anything else renders to a string value.
    pub fn eval_value(&self, s: &str, ctx: &Context) -> Result<Json, ExprError> {
        let template = Template::parse(s)?;
        if let [Part::Expr { src, offset, .. }] = template.parts.as_slice() {
            return self.eval(src, ctx).map_err(|e| e.shifted(*offset));
        }
        self.render(s, ctx).map(Json::String)
    }

    /// Evaluates an `if:` condition, written with or without `${{ }}`. Unless the
    /// expression calls a status function it means `success() && (expr)`, as in
    /// GitHub Actions, and `expr` is not evaluated when earlier work failed.
    pub fn condition(&self, cond: &str, ctx: &Context) -> Result<bool, ExprError> {
        let (src, offset) = condition_source(cond)?;
        let node = syntax::parse(src).map_err(|e| e.shifted(offset))?;
        let mut calls_status = false;
        syntax::walk(&node, &mut |n| {
            if let Kind::Call { func, .. } = &n.kind {
                calls_status |= func.is_status();
            }
        });
        if !calls_status && !ctx.status.success {
            return Ok(false);
        }
        let mut mem = Memory::default();
        self.with_value(&node, &ctx.roots(), ctx.status, &mut mem, |v| v.truthy())
            .map_err(|e| e.shifted(offset))
    }

    /// Renders a `run:` script without pasting values into it: each `${{ expr }}`
    /// becomes a reference to an environment variable `TRUN_EXPR_<n>` (n counts
    /// from 0 in source order), returned with its rendered value for the caller to
    /// set. The reference is `${TRUN_EXPR_<n>}`, or `'"${TRUN_EXPR_<n>}"'` inside a
    /// single-quoted shell string so that it still expands. Written for POSIX
    /// shells (sh, bash, zsh).
    pub fn render_script(
        &self,
        script: &str,
        ctx: &Context,
    ) -> Result<(String, Vec<(String, String)>), ExprError> {
        let mut out = String::with_capacity(script.len());
        let mut vars = Vec::new();
        let mut quotes = ShellQuotes::default();
        let mut mem = Memory::default();
        for part in Template::parse(script)?.parts {
            match part {
                Part::Lit(text) => {
                    quotes.advance(&text);
                    out.push_str(&text);
                }
                Part::Expr { src, offset, .. } => {
                    let text = self
                        .text_of(&src, ctx, &mut mem)
                        .map_err(|e| e.shifted(offset))?;
                    let name = format!("TRUN_EXPR_{}", vars.len());
                    if quotes.state == Quote::Single {
                        out.push_str(&format!("'\"${{{name}}}\"'"));
                    } else {
                        out.push_str(&format!("${{{name}}}"));
                    }
                    quotes.after_word();
                    vars.push((name, text));
                }
            }
        }
        Ok((out, vars))
    }
}

fn whole(src: &str, message: String) -> ExprError {
    ExprError {
        message,
        offset: 0,
        len: src.len().max(1),
    }
}

/// The expression of an `if:` and its byte offset in `cond`: the inside of a lone
/// `${{ }}`, or the whole string when it has none.
fn condition_source(cond: &str) -> Result<(&str, usize), ExprError> {
    let template = Template::parse(cond)?;
    let exprs: Vec<(&str, usize)> = template.exprs().collect();
    let only_space = template
        .parts
        .iter()
        .all(|p| !matches!(p, Part::Lit(t) if !t.trim().is_empty()));
    match exprs.as_slice() {
        [] => Ok((cond, 0)),
        [(src, offset)] if only_space => Ok((&cond[*offset..*offset + src.len()], *offset)),
        _ => Err(ExprError {
            message: "an `if:` condition must be a single expression: text around or between `${{ }}` makes a non-empty string, which is always true; write `${{ a && b }}` or `a && b`".to_string(),
            offset: 0,
            len: cond.len().max(1),
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Quote {
    #[default]
    None,
    Single,
    Double,
    Comment,
}

/// Just enough of POSIX shell lexing to know whether a position is inside single
/// quotes, where `${VAR}` would not expand.
#[derive(Debug, Default)]
struct ShellQuotes {
    state: Quote,
    escaped: bool,
    /// Whether the previous character ends a word (so `#` starts a comment).
    at_word_start: bool,
    started: bool,
}

impl ShellQuotes {
    fn advance(&mut self, text: &str) {
        for c in text.chars() {
            let word_start = !self.started || self.at_word_start;
            self.started = true;
            if self.escaped {
                self.escaped = false;
                self.at_word_start = false;
                continue;
            }
            match (self.state, c) {
                (Quote::None, '\\') | (Quote::Double, '\\') => self.escaped = true,
                (Quote::None, '\'') => self.state = Quote::Single,
                (Quote::None, '"') => self.state = Quote::Double,
                (Quote::None, '#') if word_start => self.state = Quote::Comment,
                (Quote::Single, '\'') | (Quote::Double, '"') => self.state = Quote::None,
                (Quote::Comment, '\n') => self.state = Quote::None,
                _ => {}
            }
            self.at_word_start = c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(');
        }
    }

    fn after_word(&mut self) {
        self.started = true;
        self.escaped = false;
        self.at_word_start = false;
    }
}

#[cfg(test)]
mod tests;
