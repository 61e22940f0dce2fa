//! Which names an expression refers to, and whether they exist.
//!
//! At plan time [`check`] compares every context path in an expression
//! (`inputs.x`, `needs.build.outputs.y`, …) with the names the workflow declares
//! for that place, so that a typo is an error before anything runs rather than an
//! empty string at run time. Only what trun can prove is checked: a name that
//! may appear at run time (an `env` variable written to `$GITHUB_ENV` by an
//! earlier step, a step output) is not an error here and reads as null at run
//! time, as on GitHub. Names compare case-insensitively, as on GitHub. This
//! module decides nothing about values.

use super::syntax::{walk, Func, Kind, Node, Span};
use super::value::eq_ignore_case;
use super::{ExprError, Scope};

/// The context roots an expression may start with.
pub(crate) const ROOTS: [&str; 12] = [
    "inputs", "env", "matrix", "needs", "steps", "job", "trun", "github", "runner", "vars",
    "strategy", "secrets",
];
/// Properties of the `job` context.
pub(crate) const JOB_KEYS: [&str; 5] = ["id", "name", "status", "container", "services"];
/// Properties of the `github` context (GitHub's documented list).
pub(crate) const GITHUB_KEYS: &[&str] = &[
    "action",
    "action_path",
    "action_ref",
    "action_repository",
    "action_status",
    "actor",
    "actor_id",
    "api_url",
    "base_ref",
    "env",
    "event",
    "event_name",
    "event_path",
    "graphql_url",
    "head_ref",
    "job",
    "path",
    "ref",
    "ref_name",
    "ref_protected",
    "ref_type",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "repositoryUrl",
    "retention_days",
    "run_attempt",
    "run_id",
    "run_number",
    "secret_source",
    "server_url",
    "sha",
    "state",
    "step_summary",
    "token",
    "triggering_actor",
    "workflow",
    "workflow_ref",
    "workflow_sha",
    "workspace",
    "output",
];
/// Properties of the `runner` context.
pub(crate) const RUNNER_KEYS: [&str; 7] = [
    "arch",
    "debug",
    "environment",
    "name",
    "os",
    "temp",
    "tool_cache",
];
/// Properties of the `strategy` context.
pub(crate) const STRATEGY_KEYS: [&str; 4] = ["fail-fast", "job-index", "job-total", "max-parallel"];
/// Properties of the `trun` context.
pub(crate) const TRUN_KEYS: [&str; 3] = ["workspace", "run_id", "os"];
const NEEDS_KEYS: [&str; 2] = ["outputs", "result"];
const STEPS_KEYS: [&str; 3] = ["outputs", "outcome", "conclusion"];

pub(crate) use crate::diag::did_you_mean_suffix as did_you_mean;

/// One step of a context path.
#[derive(Debug)]
pub(crate) enum Seg<'a> {
    /// A property known before evaluation: `.name` or `['name']`.
    Key(&'a str, Span),
    /// A computed subscript (`[matrix.key]`, `[0]`): nothing past it can be checked.
    Dynamic,
}

/// A context path such as `needs.build.outputs.image`.
#[derive(Debug)]
pub(crate) struct Path<'a> {
    pub root: &'a str,
    pub root_span: Span,
    pub segs: Vec<Seg<'a>>,
}

/// Every context path in the expression, in source order. A chain like
/// `a.b[c].d` yields one path for `a.b` (and its dynamic tail) plus the paths
/// inside `c`.
pub(crate) fn paths(node: &Node) -> Vec<Path<'_>> {
    let mut found = Vec::new();
    collect(node, &mut found);
    found
}

fn collect<'a>(node: &'a Node, out: &mut Vec<Path<'a>>) {
    match &node.kind {
        Kind::Prop { .. } | Kind::Index { .. } | Kind::Star { .. } | Kind::Ident(_) => {
            let mut segs = Vec::new();
            let mut subscripts = Vec::new();
            let mut cur = node;
            loop {
                match &cur.kind {
                    Kind::Prop {
                        base,
                        name,
                        name_span,
                    } => {
                        segs.push(Seg::Key(name, *name_span));
                        cur = base;
                    }
                    Kind::Index { base, index } => {
                        match &index.kind {
                            Kind::Str(s) => segs.push(Seg::Key(s, index.span)),
                            _ => segs.push(Seg::Dynamic),
                        }
                        subscripts.push(&**index);
                        cur = base;
                    }
                    Kind::Star { base } => {
                        segs.push(Seg::Dynamic);
                        cur = base;
                    }
                    _ => break,
                }
            }
            segs.reverse();
            subscripts.reverse();
            if let Kind::Ident(root) = &cur.kind {
                // Only the part up to the first computed subscript is checkable.
                if let Some(i) = segs.iter().position(|s| matches!(s, Seg::Dynamic)) {
                    segs.truncate(i + 1);
                }
                out.push(Path {
                    root,
                    root_span: cur.span,
                    segs,
                });
            } else {
                collect(cur, out);
            }
            for index in subscripts {
                collect(index, out);
            }
        }
        Kind::Call { args, .. } | Kind::And(args) | Kind::Or(args) => {
            args.iter().for_each(|a| collect(a, out))
        }
        Kind::Not(inner) => collect(inner, out),
        Kind::Eq(l, r) | Kind::Ne(l, r) | Kind::Cmp(_, l, r) => {
            collect(l, out);
            collect(r, out);
        }
        Kind::Null | Kind::Bool(_) | Kind::Num(_) | Kind::Str(_) => {}
    }
}

fn error(message: String, span: Span) -> ExprError {
    ExprError {
        message,
        offset: span.start,
        len: (span.end - span.start).max(1),
    }
}

/// Rejects a root that is not one of `roots`, with a hint for a function used
/// without parentheses.
pub(crate) fn check_roots(node: &Node, roots: &[&str]) -> Result<(), ExprError> {
    for path in paths(node) {
        check_root(&path, roots)?;
    }
    Ok(())
}

fn check_root(path: &Path, roots: &[&str]) -> Result<(), ExprError> {
    if roots.iter().any(|r| eq_ignore_case(r, path.root)) {
        return Ok(());
    }
    Err(unknown_root(
        path.root,
        path.root_span,
        roots.iter().copied(),
    ))
}

/// The error for a name that is no context.
pub(crate) fn unknown_root<'a>(
    name: &str,
    span: Span,
    roots: impl IntoIterator<Item = &'a str>,
) -> ExprError {
    if let Some(f) = Func::lookup(name) {
        return error(
            format!("`{name}` is a function: write `{}()`", f.name()),
            span,
        );
    }
    error(
        format!("unknown name `{name}`{}", did_you_mean(name, roots)),
        span,
    )
}

/// Whether `set` holds `name`, ignoring case.
fn has(set: &std::collections::BTreeSet<String>, name: &str) -> bool {
    set.contains(name) || set.iter().any(|k| eq_ignore_case(k, name))
}

/// The plan-time check: every function is allowed here and every path names
/// something `scope` declares. Spans are relative to the expression source.
pub(crate) fn check(node: &Node, scope: &Scope) -> Result<(), ExprError> {
    let mut status_call = None;
    walk(node, &mut |n| {
        if let Kind::Call {
            func, name_span, ..
        } = &n.kind
        {
            if func.is_status() && status_call.is_none() {
                status_call = Some((*func, *name_span));
            }
        }
    });
    if let (Some((func, span)), false) = (status_call, scope.allow_status_functions) {
        return Err(error(
            format!("`{}()` is only allowed in an `if:` condition", func.name()),
            span,
        ));
    }
    for path in paths(node) {
        check_root(&path, &ROOTS)?;
        check_path(&path, scope)?;
    }
    Ok(())
}

fn key<'a>(path: &'a Path, i: usize) -> Option<(&'a str, Span)> {
    match path.segs.get(i) {
        Some(Seg::Key(k, span)) => Some((k, *span)),
        _ => None,
    }
}

fn check_path(path: &Path, scope: &Scope) -> Result<(), ExprError> {
    let first = key(path, 0);
    let root = ROOTS
        .iter()
        .find(|r| eq_ignore_case(r, path.root))
        .copied()
        .unwrap_or(path.root);
    match root {
        "inputs" => {
            if let Some((name, span)) = first {
                if !has(&scope.inputs, name) {
                    let hint = if scope.inputs.is_empty() {
                        " (the workflow declares no inputs)".to_string()
                    } else {
                        did_you_mean(name, scope.inputs.iter().map(String::as_str))
                    };
                    return Err(error(format!("unknown input `{name}`{hint}"), span));
                }
            }
        }
        "matrix" => {
            let Some(keys) = &scope.matrix else {
                return Err(error(
                    "`matrix` is not available here: the job has no `strategy.matrix`".into(),
                    path.root_span,
                ));
            };
            if let Some((name, span)) = first {
                // `*`: a matrix computed at run time, whose keys are not known yet.
                if !has(keys, name) && !keys.contains("*") {
                    return Err(error(
                        format!(
                            "unknown matrix key `{name}`{}",
                            did_you_mean(name, keys.iter().map(String::as_str))
                        ),
                        span,
                    ));
                }
            }
        }
        "needs" => {
            let Some((job, span)) = first else {
                return Ok(());
            };
            let found = scope
                .needs
                .iter()
                .find(|(k, _)| eq_ignore_case(k, job))
                .map(|(_, v)| v);
            let Some(outputs) = found else {
                let hint = if scope.needs.is_empty() {
                    " (this job has no `needs`)".to_string()
                } else {
                    did_you_mean(job, scope.needs.keys().map(String::as_str))
                };
                return Err(error(
                    format!("job `{job}` is not in this job's `needs`{hint}"),
                    span,
                ));
            };
            match key(path, 1) {
                Some((o, _)) if eq_ignore_case(o, "outputs") => {
                    if let Some((name, span)) = key(path, 2) {
                        if !has(outputs, name) {
                            let hint = if outputs.is_empty() {
                                format!(" (job `{job}` declares no outputs)")
                            } else {
                                did_you_mean(name, outputs.iter().map(String::as_str))
                            };
                            return Err(error(
                                format!("job `{job}` has no output `{name}`{hint}"),
                                span,
                            ));
                        }
                    }
                }
                Some((prop, span)) if !NEEDS_KEYS.iter().any(|k| eq_ignore_case(k, prop)) => {
                    return Err(unknown_property(
                        &format!("needs.{job}"),
                        prop,
                        &NEEDS_KEYS,
                        span,
                    ));
                }
                _ => {}
            }
        }
        "steps" => {
            let Some((step, span)) = first else {
                return Ok(());
            };
            if !has(&scope.steps, step) {
                let hint = if scope.steps.is_empty() {
                    " (no earlier step in this job has an `id`)".to_string()
                } else {
                    did_you_mean(step, scope.steps.iter().map(String::as_str))
                };
                return Err(error(
                    format!("no earlier step with id `{step}` in this job{hint}"),
                    span,
                ));
            }
            if let Some((prop, span)) = key(path, 1) {
                if !STEPS_KEYS.iter().any(|k| eq_ignore_case(k, prop)) {
                    return Err(unknown_property(
                        &format!("steps.{step}"),
                        prop,
                        &STEPS_KEYS,
                        span,
                    ));
                }
            }
        }
        // `env` is not checked: a step may add any variable through
        // `$GITHUB_ENV` for the steps after it, and a missing one reads as null.
        "job" | "trun" | "github" | "runner" | "strategy" => {
            let keys: &[&str] = match root {
                "job" => &JOB_KEYS,
                "github" => GITHUB_KEYS,
                "runner" => &RUNNER_KEYS,
                "strategy" => &STRATEGY_KEYS,
                _ => &TRUN_KEYS,
            };
            if let Some((prop, span)) = first {
                if !keys.iter().any(|k| eq_ignore_case(k, prop)) {
                    return Err(unknown_property(root, prop, keys, span));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn unknown_property(owner: &str, prop: &str, known: &[&str], span: Span) -> ExprError {
    let list = known
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = did_you_mean(prop, known.iter().copied());
    let hint = if hint.is_empty() {
        format!(" (expected one of {list})")
    } else {
        hint
    };
    error(format!("`{owner}` has no property `{prop}`{hint}"), span)
}

#[cfg(test)]
mod tests {
    use super::super::syntax::parse;
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn scope() -> Scope {
        Scope {
            inputs: set(&["profile", "debug"]),
            matrix: Some(set(&["os", "shard"])),
            needs: BTreeMap::from([
                ("build-app".to_string(), set(&["image-id", "version"])),
                ("lint".to_string(), set(&[])),
            ]),
            steps: set(&["compile", "my-step"]),
            env: set(&["RUST_LOG", "PROFILE_DIR"]),
            allow_status_functions: false,
        }
    }

    fn check_src(src: &str, scope: &Scope) -> Result<(), ExprError> {
        check(&parse(src).unwrap(), scope)
    }

    fn check_err(src: &str) -> (usize, usize, String) {
        let e = check_src(src, &scope()).unwrap_err();
        (e.offset, e.len, e.message)
    }

    #[test]
    fn declared_names_pass() {
        for src in [
            "inputs.profile == 'release' && !inputs.debug",
            "matrix.os",
            "needs.build-app.outputs.image-id",
            "needs['build-app'].result",
            "steps.my-step.outputs.anything",
            "steps.compile.outcome",
            "env.RUST_LOG",
            "job.status",
            "trun.workspace",
            "toJSON(inputs)",
            "matrix[inputs.profile]",
            "format('{0}', needs.lint.result)",
        ] {
            check_src(src, &scope()).unwrap_or_else(|e| panic!("{src}: {e}"));
        }
    }

    #[test]
    fn unknown_root_suggests_a_context() {
        assert_eq!(
            check_err("inptus.profile"),
            (
                0,
                6,
                "unknown name `inptus` (did you mean `inputs`?)".to_string()
            )
        );
        assert_eq!(
            check_err("always || x"),
            (0, 6, "`always` is a function: write `always()`".to_string())
        );
    }

    #[test]
    fn undeclared_input() {
        assert_eq!(
            check_err("inputs.profle"),
            (
                7,
                6,
                "unknown input `profle` (did you mean `profile`?)".to_string()
            )
        );
        let mut s = scope();
        s.inputs.clear();
        let e = check_src("inputs.x", &s).unwrap_err();
        assert_eq!(
            e.message,
            "unknown input `x` (the workflow declares no inputs)"
        );
    }

    #[test]
    fn matrix_key_and_missing_matrix() {
        assert_eq!(
            check_err("matrix.os == 1 || matrix.sahrd"),
            (
                25,
                5,
                "unknown matrix key `sahrd` (did you mean `shard`?)".to_string()
            )
        );
        let mut s = scope();
        s.matrix = None;
        let e = check_src("matrix.os", &s).unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (
                0,
                "`matrix` is not available here: the job has no `strategy.matrix`"
            )
        );
    }

    #[test]
    fn needs_job_and_output() {
        assert_eq!(
            check_err("needs.build.outputs.image-id"),
            (
                6,
                5,
                "job `build` is not in this job's `needs` (did you mean `build-app`?)".to_string()
            )
        );
        assert_eq!(
            check_err("needs.build-app.outputs.image_id"),
            (
                24,
                8,
                "job `build-app` has no output `image_id` (did you mean `image-id`?)".to_string()
            )
        );
        assert_eq!(
            check_err("needs['build-app'].output"),
            (
                19,
                6,
                "`needs.build-app` has no property `output` (did you mean `outputs`?)".to_string()
            )
        );
        assert_eq!(
            check_err("needs.lint.outputs.x").2,
            "job `lint` has no output `x` (job `lint` declares no outputs)"
        );
    }

    #[test]
    fn steps_must_be_earlier_ids() {
        assert_eq!(
            check_err("steps.compiel.outputs.bin"),
            (
                6,
                7,
                "no earlier step with id `compiel` in this job (did you mean `compile`?)"
                    .to_string()
            )
        );
        assert_eq!(
            check_err("steps.compile.result").2,
            "`steps.compile` has no property `result` (expected one of `outputs`, `outcome`, `conclusion`)"
        );
    }

    #[test]
    fn env_is_never_a_plan_time_error() {
        // A step may write any variable to `$GITHUB_ENV` for the steps after it.
        check_src("env.RUST_LGO == '' && env.SET_AT_RUN_TIME", &scope()).unwrap();
    }

    #[test]
    fn names_compare_ignoring_case() {
        for src in [
            "Inputs.Profile",
            "MATRIX.OS",
            "needs.BUILD-APP.Outputs.IMAGE-ID",
            "steps.Compile.OUTCOME",
            "needs.*.result",
            "contains(needs.*.result, 'failure')",
        ] {
            check_src(src, &scope()).unwrap_or_else(|e| panic!("{src}: {e}"));
        }
    }

    #[test]
    fn job_and_trun_properties() {
        assert_eq!(
            check_err("trun.workspce").2,
            "`trun` has no property `workspce` (did you mean `workspace`?)"
        );
        assert!(check_err("job.foo")
            .2
            .starts_with("`job` has no property `foo`"));
    }

    #[test]
    fn names_inside_subscripts_and_calls_are_checked() {
        assert_eq!(check_err("matrix[inputs.nope]").0, 14);
        assert_eq!(check_err("contains(env.NOPE_X_Y, inputs.nope)").0, 30);
    }

    #[test]
    fn status_functions_only_where_allowed() {
        let e = check_src("success() && inputs.debug", &scope()).unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (0, "`success()` is only allowed in an `if:` condition")
        );
        let mut s = scope();
        s.allow_status_functions = true;
        check_src("failure() || always()", &s).unwrap();
    }
}
