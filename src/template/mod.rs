//! Expressions: `${{ … }}` in workflow strings, checked at plan time and evaluated
//! at run time.
//!
//! trun speaks GitHub Actions' expression dialect (`&&`, `||`, `!`, single-quoted
//! strings with `''`, `needs.build-app.outputs.image-id`, loose `==`) and evaluates
//! it with minijinja after translating it (see `syntax.rs`). [`Engine::check`]
//! rejects unknown names before anything runs, so a typo is an error and never an
//! empty string; [`Engine::render_script`] keeps expression values out of shell
//! script text. This module does not know the workflow file's structure: callers
//! describe what is declared at a place with a [`Scope`] and supply values with a
//! [`Context`], and they turn an [`ExprError`]'s byte offset into `file:line:col`.

mod functions;
mod names;
mod syntax;

pub use functions::hash_files;

use minijinja::value::{Enumerator, Object, ObjectExt, Rest};
use minijinja::{Environment, ErrorKind, State, UndefinedBehavior, Value};
use serde_json::{Map, Value as Json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use syntax::{Func, Kind, Node, Span};

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
    /// Env names declared in the workflow, job and step `env` (the process
    /// environment is consulted separately).
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
    /// The environment an expression sees: trun's own environment overlaid with the
    /// workflow, job and step `env`.
    pub env: Map<String, Json>,
    /// The current matrix combination. Fill every key of the matrix (null where a
    /// combination lacks one) so a key that exists in some combination is never an
    /// error in another.
    pub matrix: Map<String, Json>,
    /// `{job: {"outputs": {..}, "result": "success"}}`.
    pub needs: Map<String, Json>,
    /// `{id: {"outputs": {..}, "outcome": "success", "conclusion": "success"}}`.
    /// An output a step did not write reads as null rather than an error.
    pub steps: Map<String, Json>,
    /// `{"id", "name", "status"}`.
    pub job: Map<String, Json>,
    /// `{"workspace", "run_id", "os"}`.
    pub trun: Map<String, Json>,
    pub status: StatusFlags,
}

impl Context {
    fn to_json(&self) -> Map<String, Json> {
        let mut m = Map::new();
        for (name, v) in [
            ("inputs", &self.inputs),
            ("env", &self.env),
            ("matrix", &self.matrix),
            ("needs", &self.needs),
            ("steps", &self.steps),
            ("job", &self.job),
            ("trun", &self.trun),
        ] {
            m.insert(name.to_string(), Json::Object(v.clone()));
        }
        m
    }

    fn to_value(&self) -> Value {
        let mut root: BTreeMap<&str, Value> = BTreeMap::new();
        root.insert("inputs", Value::from_serialize(&self.inputs));
        root.insert("env", Value::from_serialize(&self.env));
        root.insert("matrix", Value::from_serialize(&self.matrix));
        root.insert("needs", Value::from_serialize(&self.needs));
        root.insert("job", Value::from_serialize(&self.job));
        root.insert("trun", Value::from_serialize(&self.trun));
        let steps: BTreeMap<String, Value> = self
            .steps
            .iter()
            .map(|(id, step)| (id.clone(), step_value(step)))
            .collect();
        root.insert("steps", Value::from(steps));
        let status: BTreeMap<&str, bool> = BTreeMap::from([
            ("success", self.status.success),
            ("failure", self.status.failure),
            ("cancelled", self.status.cancelled),
        ]);
        root.insert(STATUS_VAR, Value::from(status));
        Value::from(root)
    }
}

const STATUS_VAR: &str = "__trun_status";

fn step_value(step: &Json) -> Value {
    let Json::Object(fields) = step else {
        return Value::from_serialize(step);
    };
    let map: BTreeMap<String, Value> = fields
        .iter()
        .map(|(k, v)| {
            let v = match (k.as_str(), v) {
                ("outputs", Json::Object(outputs)) => Value::from_object(StepOutputs(
                    outputs
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::from_serialize(v)))
                        .collect(),
                )),
                _ => Value::from_serialize(v),
            };
            (k.clone(), v)
        })
        .collect();
    Value::from(map)
}

/// A step's outputs: a step may or may not write an output, so a missing one is
/// null (GitHub behaves the same), unlike every other missing name.
#[derive(Debug)]
struct StepOutputs(BTreeMap<String, Value>);

impl Object for StepOutputs {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let found = key.as_str().and_then(|k| self.0.get(k).cloned());
        Some(found.unwrap_or(Value::from(())))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_enumerator(|this| Box::new(this.0.keys().map(|k| Value::from(k.as_str()))))
    }
}

/// Evaluates expressions: a minijinja environment with trun's functions.
pub struct Engine {
    env: Environment<'static>,
    workspace: PathBuf,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

fn status_flag(state: &State, flag: &str) -> bool {
    state
        .lookup(STATUS_VAR)
        .and_then(|s| s.get_attr(flag).ok())
        .is_some_and(|v| v.is_true())
}

impl Engine {
    /// `hashFiles()` patterns are relative to `workspace`.
    pub fn new(workspace: PathBuf) -> Engine {
        let mut env = Environment::empty();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_function("__trun_eq", functions::eq);
        env.add_function("__trun_cmp", functions::cmp);
        env.add_function(Func::Success.jinja_name(), |s: &State| {
            status_flag(s, "success")
        });
        env.add_function(Func::Failure.jinja_name(), |s: &State| {
            status_flag(s, "failure")
        });
        env.add_function(Func::Cancelled.jinja_name(), |s: &State| {
            status_flag(s, "cancelled")
        });
        env.add_function(Func::Always.jinja_name(), || true);
        env.add_function(Func::Contains.jinja_name(), functions::contains);
        env.add_function(Func::StartsWith.jinja_name(), functions::starts_with);
        env.add_function(Func::EndsWith.jinja_name(), functions::ends_with);
        env.add_function(Func::Format.jinja_name(), functions::format);
        env.add_function(Func::Join.jinja_name(), functions::join);
        env.add_function(Func::ToJson.jinja_name(), functions::to_json_fn);
        env.add_function(Func::FromJson.jinja_name(), functions::from_json);
        let ws = workspace.clone();
        env.add_function(Func::HashFiles.jinja_name(), move |p: Rest<Value>| {
            functions::hash_files_fn(&ws, p)
        });
        Engine { env, workspace }
    }

    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Plan-time check of every `${{ }}` in `s`: syntax, functions, and that every
    /// name is declared in `scope`. Evaluates nothing.
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
        let emitted = syntax::emit(&node);
        self.env
            .compile_expression_owned(emitted.source)
            .map_err(|e| {
                whole(
                    src,
                    format!("internal error translating the expression: {e}"),
                )
            })?;
        Ok(())
    }

    /// Evaluates one expression source (no `${{ }}`) to a value.
    pub fn eval(&self, expr: &str, ctx: &Context) -> Result<Json, ExprError> {
        let node = syntax::parse(expr)?;
        self.eval_node(expr, &node, ctx)
    }

    fn eval_node(&self, src: &str, node: &Node, ctx: &Context) -> Result<Json, ExprError> {
        names::check_roots(node)?;
        let emitted = syntax::emit(node);
        let compiled = self
            .env
            .compile_expression_owned(emitted.source.clone())
            .map_err(|e| {
                whole(
                    src,
                    format!("internal error translating the expression: {e}"),
                )
            })?;
        let value = compiled.eval(ctx.to_value()).map_err(|e| {
            if e.kind() == ErrorKind::UndefinedError {
                if let Some(missing) = names::find_missing(node, &ctx.to_json()) {
                    return missing;
                }
            }
            let span = e
                .range()
                .and_then(|r| emitted.original(&r))
                .unwrap_or(Span {
                    start: 0,
                    end: src.len(),
                });
            let message = match (e.kind(), e.detail()) {
                (ErrorKind::UndefinedError, _) => {
                    format!("`{}` has no value", src[span.start..span.end].trim())
                }
                (_, Some(detail)) => detail.to_string(),
                (kind, None) => kind.to_string(),
            };
            ExprError {
                message,
                offset: span.start,
                len: (span.end - span.start).max(1),
            }
        })?;
        if value.is_undefined() {
            return Err(names::find_missing(node, &ctx.to_json())
                .unwrap_or_else(|| whole(src, format!("`{}` has no value", src.trim()))));
        }
        Ok(functions::to_json(&value))
    }

    /// Replaces every `${{ }}` in `s` by its value as GitHub prints it: null as "",
    /// booleans and numbers as text, strings as they are, arrays and objects as
    /// compact JSON.
    pub fn render(&self, s: &str, ctx: &Context) -> Result<String, ExprError> {
        let mut out = String::with_capacity(s.len());
        for part in Template::parse(s)?.parts {
            match part {
                Part::Lit(text) => out.push_str(&text),
                Part::Expr { src, offset, .. } => {
                    let v = self.eval(&src, ctx).map_err(|e| e.shifted(offset))?;
                    out.push_str(&functions::stringify(&v));
                }
            }
        }
        Ok(out)
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
        let v = self
            .eval_node(src, &node, ctx)
            .map_err(|e| e.shifted(offset))?;
        Ok(functions::truthy(&v))
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
        for part in Template::parse(script)?.parts {
            match part {
                Part::Lit(text) => {
                    quotes.advance(&text);
                    out.push_str(&text);
                }
                Part::Expr { src, offset, .. } => {
                    let v = self.eval(&src, ctx).map_err(|e| e.shifted(offset))?;
                    let name = format!("TRUN_EXPR_{}", vars.len());
                    if quotes.state == Quote::Single {
                        out.push_str(&format!("'\"${{{name}}}\"'"));
                    } else {
                        out.push_str(&format!("${{{name}}}"));
                    }
                    quotes.after_word();
                    vars.push((name, functions::stringify(&v)));
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
