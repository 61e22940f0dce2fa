//! Evaluates a parsed expression against named contexts, with GitHub's
//! semantics: `&&`/`||` return the operand that decided, a missing property or
//! index is null, `.*` filters collect values into a new array, and every value
//! a function builds is counted against the memory limits in `functions.rs`.
//!
//! This module reads values; it does not decide which names exist at plan time
//! (`names.rs`) nor how a field's text around `${{ }}` is assembled (`mod.rs`).
//! Recursion follows the tree, whose height the parser bounds.

use super::functions::{self, Memory};
use super::syntax::{children, CmpOp, Func, Kind, Node, Span};
use super::value::{eq_ignore_case, lookup, lookup_with, loose_cmp, loose_eq, take, Val};
use super::{ExprError, StatusFlags};
use serde_json::{Map, Value as Json};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::path::Path;

/// The named contexts an expression reads (`inputs`, `github`, …).
pub(crate) type Roots<'a> = [(&'a str, Val<'a>)];

pub(crate) struct Evaluator<'a, 'm> {
    pub roots: &'a Roots<'a>,
    pub status: StatusFlags,
    pub workspace: &'a Path,
    pub mem: &'m mut Memory,
}

fn located(message: String, span: Span) -> ExprError {
    ExprError {
        message,
        offset: span.start,
        len: (span.end - span.start).max(1),
    }
}

/// An index as GitHub reads it: the text of a primitive (for objects) and, for
/// a finite non-negative number, its whole part (for arrays).
struct Idx {
    key: Option<String>,
    pos: Option<usize>,
}

impl Idx {
    fn of(v: &Val) -> Idx {
        let key = v.is_primitive().then(|| v.to_text().into_owned());
        let n = v.to_number();
        let pos = (n.is_finite() && n >= 0.0).then(|| n.floor() as usize);
        Idx { key, pos }
    }
}

impl<'a> Evaluator<'a, '_> {
    pub fn eval(&mut self, node: &'a Node) -> Result<Val<'a>, ExprError> {
        Ok(match &node.kind {
            Kind::Null => Val::Null,
            Kind::Bool(b) => Val::Bool(*b),
            Kind::Num(n) => Val::Num(*n),
            Kind::Str(s) => Val::Str(Cow::Borrowed(s)),
            Kind::Ident(name) => {
                let found = self.roots.iter().find(|(r, _)| eq_ignore_case(r, name));
                match found {
                    Some((_, value)) => value.clone(),
                    None => {
                        return Err(super::names::unknown_root(
                            name,
                            node.span,
                            self.roots.iter().map(|(r, _)| *r),
                        ))
                    }
                }
            }
            Kind::Prop { base, name, .. } => {
                let base = self.eval(base)?;
                self.property(base, name, node.span)?
            }
            Kind::Index { base, index } => {
                let base = self.eval(base)?;
                let idx = Idx::of(&self.eval(index)?);
                self.index(base, &idx, node.span)?
            }
            Kind::Star { base } => {
                let base = self.eval(base)?;
                self.star(base, node.span)?
            }
            Kind::Call {
                func: Func::Format,
                args,
                ..
            } => self.format(args, node.span)?,
            Kind::Call { func, args, .. } => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.eval(a)?);
                }
                self.call(*func, vals).map_err(|m| located(m, node.span))?
            }
            Kind::Not(inner) => Val::Bool(!self.eval(inner)?.truthy()),
            Kind::And(items) | Kind::Or(items) => {
                // The operand that decided: the first falsy one for `&&`, the
                // first truthy one for `||`, else the last.
                let stop_when = matches!(node.kind, Kind::Or(_));
                let mut last = Val::Null;
                for item in items {
                    last = self.eval(item)?;
                    if last.truthy() == stop_when {
                        break;
                    }
                }
                last
            }
            Kind::Eq(l, r) | Kind::Ne(l, r) => {
                let (l, r) = (self.eval(l)?, self.eval(r)?);
                Val::Bool(loose_eq(&l, &r) == matches!(node.kind, Kind::Eq(..)))
            }
            Kind::Cmp(op, l, r) => {
                let (l, r) = (self.eval(l)?, self.eval(r)?);
                let ord = loose_cmp(&l, &r);
                Val::Bool(match op {
                    CmpOp::Lt => ord == Some(Ordering::Less),
                    CmpOp::Gt => ord == Some(Ordering::Greater),
                    CmpOp::Le => loose_eq(&l, &r) || ord == Some(Ordering::Less),
                    CmpOp::Ge => loose_eq(&l, &r) || ord == Some(Ordering::Greater),
                })
            }
        })
    }

    fn filtered(&mut self, items: Vec<Val<'a>>, span: Span) -> Result<Val<'a>, ExprError> {
        self.mem
            .other(items.len().saturating_mul(std::mem::size_of::<Val>()))
            .map_err(|m| located(m, span))?;
        Ok(Val::Filtered(items))
    }

    fn property(&mut self, base: Val<'a>, name: &str, span: Span) -> Result<Val<'a>, ExprError> {
        Ok(match base {
            Val::Obj(Cow::Borrowed(m)) => lookup(m, name).map_or(Val::Null, Val::borrowed),
            Val::Obj(Cow::Owned(mut m)) => take(&mut m, name).map_or(Val::Null, Val::owned),
            Val::ObjWith(m, k, v) => lookup_with(m, k, v, name).map_or(Val::Null, Val::borrowed),
            Val::Filtered(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Val::Obj(Cow::Borrowed(m)) => {
                            out.extend(lookup(m, name).map(Val::borrowed))
                        }
                        Val::Obj(Cow::Owned(mut m)) => {
                            out.extend(take(&mut m, name).map(Val::owned))
                        }
                        _ => {}
                    }
                }
                self.filtered(out, span)?
            }
            _ => Val::Null,
        })
    }

    fn index(&mut self, base: Val<'a>, idx: &Idx, span: Span) -> Result<Val<'a>, ExprError> {
        #[allow(clippy::owned_cow)]
        fn from_array<'v>(a: Cow<'v, Vec<Json>>, pos: Option<usize>) -> Option<Val<'v>> {
            let pos = pos?;
            match a {
                Cow::Borrowed(a) => a.get(pos).map(Val::borrowed),
                Cow::Owned(mut a) => a.get_mut(pos).map(|v| Val::owned(v.take())),
            }
        }
        fn from_object<'v>(m: Cow<'v, Map<String, Json>>, key: Option<&str>) -> Option<Val<'v>> {
            let key = key?;
            match m {
                Cow::Borrowed(m) => lookup(m, key).map(Val::borrowed),
                Cow::Owned(mut m) => take(&mut m, key).map(Val::owned),
            }
        }
        let key = idx.key.as_deref();
        Ok(match base {
            Val::Arr(a) => from_array(a, idx.pos).unwrap_or(Val::Null),
            Val::Obj(m) => from_object(m, key).unwrap_or(Val::Null),
            Val::ObjWith(m, k, v) => key
                .and_then(|key| lookup_with(m, k, v, key))
                .map_or(Val::Null, Val::borrowed),
            Val::Filtered(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Val::Arr(a) => out.extend(from_array(a, idx.pos)),
                        Val::Obj(m) => out.extend(from_object(m, key)),
                        Val::Filtered(inner) => {
                            out.extend(idx.pos.and_then(|p| inner.into_iter().nth(p)))
                        }
                        _ => {}
                    }
                }
                self.filtered(out, span)?
            }
            _ => Val::Null,
        })
    }

    fn star(&mut self, base: Val<'a>, span: Span) -> Result<Val<'a>, ExprError> {
        fn values<'v>(v: Val<'v>, out: &mut Vec<Val<'v>>) {
            match v {
                Val::Arr(Cow::Borrowed(a)) => out.extend(a.iter().map(Val::borrowed)),
                Val::Arr(Cow::Owned(a)) => out.extend(a.into_iter().map(Val::owned)),
                Val::Obj(Cow::Borrowed(m)) => out.extend(m.values().map(Val::borrowed)),
                Val::Obj(Cow::Owned(m)) => out.extend(m.into_iter().map(|(_, v)| Val::owned(v))),
                Val::ObjWith(m, _, v) => {
                    out.extend(m.values().map(Val::borrowed));
                    out.push(Val::borrowed(v));
                }
                Val::Filtered(items) => out.extend(items),
                _ => {}
            }
        }
        let mut out = Vec::new();
        match base {
            Val::Filtered(items) => {
                for item in items {
                    values(item, &mut out);
                }
            }
            other => values(other, &mut out),
        }
        self.filtered(out, span)
    }

    /// `format()`: the string is read first, then only the arguments it refers
    /// to are evaluated, as GitHub does.
    fn format(&mut self, args: &'a [Node], span: Span) -> Result<Val<'a>, ExprError> {
        let fmt = self.eval(&args[0])?;
        let fmt = fmt.to_text();
        let pieces = functions::format_plan(&fmt, args.len() - 1).map_err(|m| located(m, span))?;
        let mut vals: Vec<Option<Val<'a>>> = vec![None; args.len() - 1];
        for p in &pieces {
            if let functions::Piece::Arg(k) = p {
                if vals[*k].is_none() {
                    vals[*k] = Some(self.eval(&args[k + 1])?);
                }
            }
        }
        let texts: Vec<Cow<str>> = vals
            .iter()
            .map(|v| v.as_ref().map_or(Cow::Borrowed(""), Val::to_text))
            .collect();
        functions::format_build(&fmt, &pieces, &texts, self.mem).map_err(|m| located(m, span))
    }

    fn call(&mut self, func: Func, args: Vec<Val<'a>>) -> Result<Val<'a>, String> {
        Ok(match func {
            Func::Success => Val::Bool(self.status.success),
            Func::Failure => Val::Bool(self.status.failure),
            Func::Cancelled => Val::Bool(self.status.cancelled),
            Func::Always => Val::Bool(true),
            Func::Contains => Val::Bool(functions::contains(&args[0], &args[1])),
            Func::StartsWith => Val::Bool(functions::affix(&args[0], &args[1], true)),
            Func::EndsWith => Val::Bool(functions::affix(&args[0], &args[1], false)),
            Func::Format => unreachable!("format() is evaluated lazily"),
            Func::Join => functions::join(&args, self.mem)?,
            Func::ToJson => functions::to_json(&args[0], self.mem)?,
            Func::FromJson => functions::from_json(&args[0], self.mem)?,
            Func::HashFiles => functions::hash_files_fn(self.workspace, &args)?,
        })
    }
}

/// Whether `node` reads no context and calls only pure functions: its value is
/// the same at plan time as at run time.
fn is_constant(node: &Node) -> bool {
    match &node.kind {
        Kind::Ident(_) => false,
        Kind::Call { func, .. } if !func.is_pure() => false,
        _ => children(node).into_iter().all(is_constant),
    }
}

fn has_call(node: &Node) -> bool {
    matches!(node.kind, Kind::Call { .. }) || children(node).into_iter().any(has_call)
}

/// Plan-time evaluation of the constant parts of an expression (the largest
/// sub-expressions that read no context), so that an error they must raise at
/// run time — a bad `format()` string, invalid JSON, a result over a size
/// limit — is reported before anything runs.
pub(crate) fn check_constants(node: &Node, workspace: &Path) -> Result<(), ExprError> {
    if is_constant(node) {
        if has_call(node) {
            let mut mem = Memory::default();
            let mut ev = Evaluator {
                roots: &[],
                status: StatusFlags::default(),
                workspace,
                mem: &mut mem,
            };
            ev.eval(node)?;
        }
        return Ok(());
    }
    for c in children(node) {
        check_constants(c, workspace)?;
    }
    Ok(())
}
