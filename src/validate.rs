//! Checks across values of a parsed workflow: everything that can be known to
//! be wrong before anything runs. `needs` naming an unknown job, a cycle, a
//! duplicate step id, a step that is both `run` and `uses`, an unknown
//! built-in, a bad shell, an expression naming something that does not exist.
//!
//! It also bounds what the plan would hold before anything is expanded (matrix
//! legs, job and step runs, durations, attempts) and refuses values no process
//! can receive (a NUL, an env name with `=`) or that leave the workspace
//! (absolute or `..` `sources`/`generates`).
//!
//! Each finding is a [`Diagnostic`] pointing at the offending value. This
//! module does not select or expand jobs; that is [`crate::plan`].

use crate::actions;
use crate::diag::{did_you_mean, Diagnostic};
use crate::spanned::{Entries, Loc, Scalar, Sp};
use crate::template::{Engine, ExprError, Scope};
use crate::workflow::{InputType, Job, Step, WorkflowFile};
use std::collections::{BTreeMap, BTreeSet};

/// Validate the whole file. Returns every error found, in file order, so a
/// user fixes them in one pass rather than one per invocation.
pub fn validate(wf: &WorkflowFile, engine: &Engine) -> Result<(), Vec<Diagnostic>> {
    let mut errs = Vec::new();
    let w = &wf.workflow;

    if w.jobs.value.is_empty() {
        errs.push(wf.error(w.jobs.loc, "the workflow has no jobs"));
    }
    check_inputs(wf, &mut errs);
    crate::server::webhooks::check(wf, &mut errs);
    let top = Scope {
        inputs: w.inputs.keys().map(str::to_string).collect(),
        env: w.env.keys().map(str::to_string).collect(),
        ..Scope::default()
    };
    check_github(wf, engine, &top, &mut errs);
    check_env(wf, &w.env, &mut errs);
    for (_, v) in w.env.iter() {
        if let Err(e) = engine.check(&v.value.0, &top) {
            errs.push(expr_diag(wf, &scalar_sp(v), &e));
        }
    }

    if let Some(c) = &w.concurrency {
        check_concurrency(wf, engine, c, &top, &mut errs);
    }

    let ids: Vec<&str> = w.jobs.value.keys().collect();
    // A job calling a reusable workflow has the outputs that workflow declares.
    let call_outputs = crate::reusable::check_calls(wf, engine, &mut errs);
    let outputs_of: BTreeMap<&str, BTreeSet<String>> = w
        .jobs
        .value
        .iter()
        .map(|(k, v)| {
            (
                k.value.as_str(),
                call_outputs
                    .get(&k.value)
                    .cloned()
                    .unwrap_or_else(|| v.value.outputs.keys().map(str::to_string).collect()),
            )
        })
        .collect();
    for (id, job) in w.jobs.value.iter() {
        if !valid_id(&id.value) {
            errs.push(wf.error(
                id.loc,
                format!("invalid job id `{}`: use letters, digits, `-` and `_`, starting with a letter or `_`", id.value),
            ));
        }
        if let Some(needs) = &job.needs {
            for n in needs.located() {
                if n.value == id.value {
                    errs.push(wf.error(n.loc, format!("job `{}` needs itself", id.value)));
                } else if !outputs_of.contains_key(n.value.as_str()) {
                    errs.push(unknown_job(wf, &n, &ids));
                }
            }
        }
        crate::fanout::check_fed_by(wf, id, job, &ids, &mut errs);
        check_job(wf, engine, &id.value, job, &outputs_of, &mut errs);
    }
    check_expansion(wf, &mut errs);
    check_remote_actions(wf, &mut errs);
    if errs.is_empty() {
        if let Some(d) = find_cycle(wf) {
            errs.push(d);
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// `concurrency`: a group that is a valid expression over `scope` and not
/// empty, and a `max` of at least 1.
fn check_concurrency(
    wf: &WorkflowFile,
    engine: &Engine,
    c: &Sp<crate::workflow::Concurrency>,
    scope: &Scope,
    errs: &mut Vec<Diagnostic>,
) {
    use crate::workflow::{Concurrency, ConcurrencySpec};
    let group = match &c.value {
        Concurrency::Group(g) => Sp::new(g.clone(), c.loc),
        Concurrency::Full(f) => f.group.clone(),
    };
    if group.value.trim().is_empty() {
        errs.push(wf.error(group.loc, "the concurrency `group` is empty"));
    } else if let Err(e) = engine.check(&group.value, scope) {
        errs.push(expr_diag(wf, &group, &e));
    }
    if let Concurrency::Full(ConcurrencySpec { max: Some(m), .. }) = &c.value {
        if m.value == 0 {
            errs.push(wf.error(m.loc, "concurrency `max` must be at least 1"));
        }
    }
}

/// The most legs a static matrix may have (the product of its axes plus its
/// `include` entries), checked before anything is expanded.
pub const MAX_MATRIX_LEGS: u128 = 256;

/// The most job runs (jobs times their matrix legs) one workflow may plan.
pub const MAX_JOB_RUNS: u128 = 10_000;
/// The most step runs (each job run's steps) one workflow may plan.
pub const MAX_STEP_RUNS: u128 = 100_000;

/// Bounds what the plan will hold before it is built: 200 jobs of 256 legs
/// would otherwise be fifty thousand planned jobs and hundreds of megabytes.
fn check_expansion(wf: &WorkflowFile, errs: &mut Vec<Diagnostic>) {
    let (mut jobs, mut steps) = (0u128, 0u128);
    for (_, job) in wf.workflow.jobs.value.iter() {
        let legs = job
            .value
            .strategy
            .as_ref()
            .and_then(|s| s.matrix.as_ref())
            .map_or(1, |m| matrix_leg_bound(&m.value).max(1));
        jobs = jobs.saturating_add(legs);
        steps = steps.saturating_add(legs.saturating_mul(job.value.steps.value.len() as u128));
    }
    let loc = wf.workflow.jobs.loc;
    if jobs > MAX_JOB_RUNS {
        errs.push(wf.error(
            loc,
            format!("the workflow plans {jobs} job runs (jobs × matrix legs); the limit is {MAX_JOB_RUNS}"),
        ));
    } else if steps > MAX_STEP_RUNS {
        errs.push(wf.error(
            loc,
            format!("the workflow plans {steps} step runs (steps × matrix legs); the limit is {MAX_STEP_RUNS}"),
        ));
    }
}

/// The most attempts a `retry` may ask for.
pub const MAX_ATTEMPTS: u32 = 100;

/// Environment names a process can actually receive: not empty, no `=`, no
/// NUL. Values may not hold NUL either (no program can receive one).
fn check_env(wf: &WorkflowFile, env: &Entries<Sp<Scalar>>, errs: &mut Vec<Diagnostic>) {
    for (k, v) in env.iter() {
        if k.value.is_empty() || k.value.contains(['=', '\0']) {
            errs.push(
                wf.error(
                    k.loc,
                    format!(
                        "invalid environment variable name `{}`",
                        k.value.escape_debug()
                    ),
                )
                .with_help("a name cannot be empty or contain `=` or a NUL character"),
            );
        }
        no_nul(wf, &scalar_sp(v), errs);
    }
}

/// A NUL character in text that reaches a process is refused here, at plan
/// time, instead of failing when the step is spawned.
fn no_nul(wf: &WorkflowFile, s: &Sp<String>, errs: &mut Vec<Diagnostic>) {
    if s.value.contains('\0') {
        errs.push(wf.error(
            s.loc,
            "this value contains a NUL character (`\\0`), which no program can receive",
        ));
    }
}

/// Checks a `sources`/`generates` entry that names a fixed path: it must be
/// relative and stay inside the workspace. (Symbolic links on the way are
/// checked against the file system by the plan.)
fn check_workspace_path(wf: &WorkflowFile, key: &str, g: &Sp<String>, errs: &mut Vec<Diagnostic>) {
    let path = g.value.trim_start_matches('!');
    if path.contains("${{") {
        return;
    }
    if path.starts_with('/') || path.starts_with('~') {
        errs.push(
            wf.error(g.loc, format!("`{key}` path `{path}` is absolute"))
                .with_help("write paths relative to the workspace (the directory of trun.yaml)"),
        );
    } else if path.split('/').any(|c| c == "..") {
        errs.push(
            wf.error(g.loc, format!("`{key}` path `{path}` leaves the workspace"))
                .with_help("trun only reads and restores files inside the workspace"),
        );
    }
}

/// An upper bound on the legs of a static matrix, computed without expanding
/// it: the product of the axis lengths plus the `include` entries.
pub fn matrix_leg_bound(m: &crate::workflow::Matrix) -> u128 {
    let product = m
        .axes
        .iter()
        .fold(1u128, |p, (_, v)| p.saturating_mul(v.len() as u128));
    let product = if m.axes.is_empty() { 0 } else { product };
    product.saturating_add(m.include.len() as u128)
}

/// The error for a matrix over [`MAX_MATRIX_LEGS`], naming the sizes.
pub fn matrix_too_big(m: &crate::workflow::Matrix) -> Option<String> {
    let bound = matrix_leg_bound(m);
    if bound <= MAX_MATRIX_LEGS {
        return None;
    }
    let mut sizes: Vec<String> = m.axes.iter().map(|(_, v)| v.len().to_string()).collect();
    if !m.include.is_empty() {
        sizes.push(format!("{} include", m.include.len()));
    }
    let shown = if bound == u128::MAX {
        "more than 2^128".to_string()
    } else {
        bound.to_string()
    };
    Some(format!(
        "the matrix has {shown} legs ({}); the limit is {MAX_MATRIX_LEGS}",
        sizes
            .iter()
            .enumerate()
            .map(|(i, s)| if i == 0 {
                s.clone()
            } else if s.ends_with("include") {
                format!(" + {s}")
            } else {
                format!(" × {s}")
            })
            .collect::<String>()
    ))
}

fn unknown_job(wf: &WorkflowFile, n: &Sp<String>, ids: &[&str]) -> Diagnostic {
    let d = wf.error(n.loc, format!("`needs` names unknown job `{}`", n.value));
    match did_you_mean(&n.value, ids.iter().copied()) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None => d.with_help(format!("jobs in this file: {}", ids.join(", "))),
    }
}

pub fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_inputs(wf: &WorkflowFile, errs: &mut Vec<Diagnostic>) {
    for (name, input) in wf.workflow.inputs.iter() {
        let i = &input.value;
        if i.kind.value == InputType::Choice {
            match &i.options {
                None => errs.push(wf.error(
                    name.loc,
                    format!("choice input `{}` needs `options`", name.value),
                )),
                Some(o) if o.value.is_empty() => {
                    errs.push(wf.error(o.loc, "`options` must list at least one value"))
                }
                _ => {}
            }
        } else if let Some(o) = &i.options {
            errs.push(wf.error(
                o.loc,
                "`options` is only allowed on inputs of type `choice`",
            ));
        }
        if let Some(d) = &i.default {
            if let Err(msg) = coerce_input(&name.value, i, &d.value.0) {
                errs.push(wf.error(d.loc, msg));
            }
        }
    }
}

/// Check and convert an input value given as text to its JSON value.
pub fn coerce_input(
    name: &str,
    input: &crate::workflow::Input,
    raw: &str,
) -> Result<serde_json::Value, String> {
    match input.kind.value {
        InputType::String | InputType::Environment => {
            Ok(serde_json::Value::String(raw.to_string()))
        }
        InputType::Number => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|f| {
                if f.fract() == 0.0 && f.abs() < 9e15 {
                    Some(serde_json::Value::from(f as i64))
                } else {
                    serde_json::Number::from_f64(f).map(serde_json::Value::Number)
                }
            })
            .ok_or_else(|| format!("input `{name}` must be a number, got `{raw}`")),
        InputType::Boolean => match raw.trim() {
            "true" => Ok(serde_json::Value::Bool(true)),
            "false" => Ok(serde_json::Value::Bool(false)),
            _ => Err(format!(
                "input `{name}` must be `true` or `false`, got `{raw}`"
            )),
        },
        InputType::Choice => {
            let options: Vec<String> = input
                .options
                .as_ref()
                .map(|o| o.value.iter().map(|s| s.value.0.clone()).collect())
                .unwrap_or_default();
            if options.iter().any(|o| o == raw) {
                Ok(serde_json::Value::String(raw.to_string()))
            } else {
                let mut msg = format!(
                    "input `{name}` must be one of {}, got `{raw}`",
                    options.join(", ")
                );
                msg.push_str(&crate::diag::did_you_mean_suffix(
                    raw,
                    options.iter().map(String::as_str),
                ));
                Err(msg)
            }
        }
    }
}

fn check_job(
    wf: &WorkflowFile,
    engine: &Engine,
    id: &str,
    job: &Sp<Box<Job>>,
    outputs_of: &BTreeMap<&str, BTreeSet<String>>,
    errs: &mut Vec<Diagnostic>,
) {
    let w = &wf.workflow;
    let job = &job.value;

    let mut scope = Scope {
        inputs: w.inputs.keys().map(str::to_string).collect(),
        matrix: None,
        needs: BTreeMap::new(),
        steps: BTreeSet::new(),
        env: w
            .env
            .keys()
            .chain(job.env.keys())
            .map(str::to_string)
            .collect(),
        allow_status_functions: false,
    };
    if let Some(needs) = &job.needs {
        for n in needs.located() {
            if let Some(outs) = outputs_of.get(n.value.as_str()) {
                scope.needs.insert(n.value.clone(), outs.clone());
            }
        }
    }
    if let Some(strategy) = &job.strategy {
        if let Some(m) = &strategy.matrix {
            let mut keys: BTreeSet<String> =
                m.value.axes.iter().map(|(k, _)| k.value.clone()).collect();
            keys.extend(m.value.dynamic.iter().map(|(k, _)| k.value.clone()));
            if m.value.expr.is_some() {
                keys.insert("*".to_string());
            }
            // Matrix expressions see the job's needs, not the matrix itself.
            let outer = scope.clone();
            for e in m
                .value
                .expr
                .iter()
                .chain(m.value.dynamic.iter().map(|(_, e)| e))
            {
                if let Err(err) = engine.check(e, &outer) {
                    errs.push(expr_diag(wf, &Sp::new(e.clone(), m.loc), &err));
                }
            }
            for inc in &m.value.include {
                keys.extend(inc.keys().cloned());
            }
            // Expressions inside static values see the inputs (and the job's needs).
            let values = m
                .value
                .axes
                .iter()
                .flat_map(|(_, v)| v.iter())
                .chain(m.value.include.iter().flat_map(|e| e.values()))
                .chain(m.value.exclude.iter().flat_map(|e| e.values()));
            for v in values {
                for s in json_strings(v) {
                    if let Err(err) = engine.check(&s, &outer) {
                        errs.push(expr_diag(wf, &Sp::new(s.clone(), m.loc), &err));
                    }
                }
            }
            for (k, vals) in &m.value.axes {
                if vals.is_empty() {
                    errs.push(wf.error(k.loc, format!("matrix axis `{}` has no values", k.value)));
                }
            }
            if m.value.axes.is_empty() && m.value.include.is_empty() && !m.value.is_dynamic() {
                errs.push(wf.error(m.loc, "the matrix has no axes and no `include`"));
            }
            if let Some(msg) = matrix_too_big(&m.value) {
                errs.push(wf.error(m.loc, msg));
            }
            scope.matrix = Some(keys);
        }
        if let Some(mp) = &strategy.max_parallel {
            if mp.value == 0 {
                errs.push(wf.error(mp.loc, "`max-parallel` must be at least 1"));
            }
        }
    }

    // Workflow env may use inputs; job env and job-level fields may use matrix and needs.
    // A scope with status functions allowed means an `if:` condition.
    let mut expr = |s: &Sp<String>, scope: &Scope, errs: &mut Vec<Diagnostic>| {
        let r = if scope.allow_status_functions {
            engine.check_condition(&s.value, scope)
        } else {
            engine.check(&s.value, scope)
        };
        if let Err(e) = r {
            errs.push(expr_diag(wf, s, &e));
        }
    };
    check_env(wf, &job.env, errs);
    for (_, v) in job.env.iter() {
        expr(&scalar_sp(v), &scope, errs);
    }
    if let Some(cond) = &job.if_ {
        let mut s = scope.clone();
        s.allow_status_functions = true;
        expr(&scalar_sp(cond), &s, errs);
    }
    if let Some(r) = &job.runs_on {
        for l in r.value.labels() {
            expr(&Sp::new(l, r.loc), &scope, errs);
        }
    }
    if let Some(p) = &job.permissions {
        check_permissions(wf, p, errs);
    }
    if let Some(c) = &job.concurrency {
        check_concurrency(wf, engine, c, &scope, errs);
    }
    if let Some(t) = &job.timeout_minutes {
        if let Err(m) = crate::duration::from_minutes(t.value) {
            errs.push(wf.error(t.loc, m));
        }
    }
    if let Some(c) = &job.container {
        if c.value.spec().image.trim().is_empty() {
            errs.push(wf.error(c.loc, "`container` needs an image"));
        }
    }
    // A container's and a service's env are plain maps (no key spans): point
    // at the container.
    for c in job
        .container
        .iter()
        .chain(job.services.iter().map(|(_, c)| c))
    {
        for (k, v) in &c.value.spec().env {
            if k.is_empty() || k.contains(['=', '\0']) {
                errs.push(
                    wf.error(
                        c.loc,
                        format!("invalid environment variable name `{}`", k.escape_debug()),
                    )
                    .with_help("a name cannot be empty or contain `=` or a NUL character"),
                );
            }
            if v.0.contains('\0') {
                no_nul(wf, &Sp::new(v.0.clone(), c.loc), errs);
            }
        }
    }

    match &job.uses {
        Some(u) => {
            if let Some(first) = job.steps.value.first() {
                errs.push(wf.error(
                    first.loc,
                    format!(
                        "job `{id}` runs the reusable workflow {}: it has no `steps` of its own",
                        u.value
                    ),
                ));
            }
            for (_, v) in job.with.iter() {
                for s in json_strings(&v.value) {
                    expr(&Sp::new(s, v.loc), &scope, errs);
                }
            }
        }
        None => {
            if job.steps.value.is_empty() {
                let loc = if job.steps.loc.is_known() {
                    job.steps.loc
                } else {
                    wf.workflow
                        .jobs
                        .value
                        .0
                        .iter()
                        .find(|(k, _)| k.value == id)
                        .map_or(job.steps.loc, |(k, _)| k.loc)
                };
                errs.push(
                    wf.error(loc, format!("job `{id}` has no steps"))
                        .with_help("give it `steps:`, or `uses: ./.github/workflows/NAME.yml` to run a reusable workflow"),
                );
            }
            if let Some((k, _)) = job.with.0.first() {
                errs.push(wf.error(
                    k.loc,
                    "`with` on a job belongs to `uses: ./.github/workflows/NAME.yml`",
                ));
            }
            if let Some(s) = &job.secrets {
                errs.push(wf.error(
                    s.loc,
                    "`secrets` on a job belongs to `uses: ./.github/workflows/NAME.yml`",
                ));
            }
        }
    }
    let mut seen: BTreeMap<String, Loc> = BTreeMap::new();
    for step in &job.steps.value {
        let st = &step.value;
        if let Some(sid) = &st.id {
            if !valid_id(&sid.value) {
                errs.push(wf.error(
                    sid.loc,
                    format!("invalid step id `{}`: use letters, digits, `-` and `_`, starting with a letter or `_`", sid.value),
                ));
            }
            if let Some(first) = seen.get(&sid.value) {
                errs.push(
                    wf.error(
                        sid.loc,
                        format!("duplicate step id `{}` in job `{id}`", sid.value),
                    )
                    .with_help(format!("first used at line {}", first.line)),
                );
            } else {
                seen.insert(sid.value.clone(), sid.loc);
            }
        }
        let default_shell = job
            .defaults
            .as_ref()
            .and_then(|d| d.run.as_ref())
            .and_then(|r| r.shell.as_ref())
            .or_else(|| {
                wf.workflow
                    .defaults
                    .as_ref()
                    .and_then(|d| d.run.as_ref())
                    .and_then(|r| r.shell.as_ref())
            });
        check_injection(wf, step, default_shell, errs);
        check_step(wf, step, &scope, errs, &mut expr);
        if let Some(sid) = &st.id {
            scope.steps.insert(sid.value.clone());
        }
    }
    // Job outputs see every step of the job.
    for (_, v) in job.outputs.iter() {
        expr(v, &scope, errs);
    }
}

/// The GitHub Actions keys of the workflow: `on` names known events, `run-name` names
/// known things, `permissions` is GitHub's shape.
fn check_github(wf: &WorkflowFile, engine: &Engine, top: &Scope, errs: &mut Vec<Diagnostic>) {
    let w = &wf.workflow;
    if let Some(on) = &w.on {
        for (name, _) in &on.value.events {
            if !crate::workflow::EVENTS.contains(&name.value.as_str()) {
                let loc = if name.loc.is_known() {
                    name.loc
                } else {
                    on.loc
                };
                let d = wf.error(loc, format!("unknown event `{}`", name.value));
                errs.push(
                    match did_you_mean(&name.value, crate::workflow::EVENTS.iter().copied()) {
                        Some(s) => d.with_help(format!("did you mean `{s}`?")),
                        None => d.with_help("see GitHub's list of events that trigger workflows"),
                    },
                );
            }
        }
        if on.value.events.is_empty() {
            errs.push(wf.error(on.loc, "`on` names no event"));
        }
    }
    if let Some(r) = &w.run_name {
        if let Err(e) = engine.check(&r.value, top) {
            errs.push(expr_diag(wf, r, &e));
        }
    }
    if let Some(p) = &w.permissions {
        check_permissions(wf, p, errs);
    }
}

/// Scopes of `permissions:` and the levels each may take.
const PERMISSION_SCOPES: &[&str] = &[
    "actions",
    "attestations",
    "checks",
    "contents",
    "deployments",
    "discussions",
    "id-token",
    "issues",
    "models",
    "packages",
    "pages",
    "pull-requests",
    "repository-projects",
    "security-events",
    "statuses",
];

fn check_permissions(wf: &WorkflowFile, p: &Sp<serde_json::Value>, errs: &mut Vec<Diagnostic>) {
    use serde_json::Value;
    match &p.value {
        Value::String(s) if s == "read-all" || s == "write-all" => {}
        Value::Object(m) if m.is_empty() => {}
        Value::Object(m) => {
            for (k, v) in m {
                if !PERMISSION_SCOPES.contains(&k.as_str()) {
                    let d = wf.error(p.loc, format!("unknown permission `{k}`"));
                    errs.push(
                        match did_you_mean(k, PERMISSION_SCOPES.iter().copied()) {
                            Some(s) => d.with_help(format!("did you mean `{s}`?")),
                            None => d.with_help(format!(
                                "permissions: {}",
                                PERMISSION_SCOPES.join(", ")
                            )),
                        },
                    );
                } else if !matches!(v.as_str(), Some("read" | "write" | "none")) {
                    errs.push(wf.error(
                        p.loc,
                        format!("permission `{k}` must be `read`, `write` or `none`"),
                    ));
                }
            }
        }
        _ => errs.push(wf.error(
            p.loc,
            "`permissions` is `read-all`, `write-all`, `{}` or a mapping of scopes to `read`, `write` or `none`",
        )),
    }
}

fn scalar_sp(v: &Sp<Scalar>) -> Sp<String> {
    Sp::new(v.value.0.clone(), v.loc)
}

/// No script injection: an expression's value must reach the program as data. In `run:`
/// under a POSIX shell, the engine passes it as an environment variable (see
/// `template::Engine::render_script`); where that cannot keep the meaning of the text, the
/// step is refused here, before anything runs, unless it opts in with
/// `unsafe-inline-expressions: true`:
/// - a template shell running another interpreter (`python3 {0}`): its syntax is not the
///   shell's, so `${VAR}` would not read the variable;
/// - an expression inside a quoted heredoc (`<<'EOF'`), where `${VAR}` is not expanded;
/// - `docker/exec` `commands` and a `docker/run` `command` string, which run through `sh -c`
///   with the text pasted in.
fn check_injection(
    wf: &WorkflowFile,
    step: &Sp<Step>,
    default_shell: Option<&Sp<String>>,
    errs: &mut Vec<Diagnostic>,
) {
    let st = &step.value;
    if st.unsafe_inline_expressions {
        return;
    }
    let opt_in =
        "or set `unsafe-inline-expressions: true` on the step to paste the value into the text";
    if let Some(run) = &st.run {
        if !run.value.contains("${{") {
            return;
        }
        let shell = st.shell.as_ref().or(default_shell);
        if let Some(Ok(sh)) = shell.map(|s| crate::shell::Shell::parse(&s.value)) {
            if !sh.expands_env_refs() {
                errs.push(
                    wf.error(
                        run.loc,
                        format!(
                            "`${{{{ }}}}` in a script run by `{}` would be pasted into its code",
                            sh.name()
                        ),
                    )
                    .with_help(format!(
                        "pass the value through the step's `env:` and read it from the environment (os.environ[\"NAME\"], process.env.NAME), {opt_in}"
                    )),
                );
                return;
            }
        }
        if let Some(line) = expression_in_quoted_heredoc(&run.value) {
            // Point at the expression itself: a block scalar's lines follow its first.
            let text = run.value.lines().nth(line - 1).unwrap_or_default();
            let loc = crate::spanned::Loc {
                line: run.loc.line + (line - 1) as u32,
                col: run.loc.col + text.find("${{").unwrap_or(0) as u32,
                offset: None,
            };
            errs.push(
                wf.error(
                    loc,
                    format!(
                        "`${{{{ }}}}` inside a quoted heredoc (line {line} of the script) cannot reach it as data: the shell does not expand variables there"
                    ),
                )
                .with_help(format!("unquote the heredoc's delimiter (<<EOF) so the value is expanded, {opt_in}")),
            );
        }
        return;
    }
    let Some(uses) = &st.uses else { return };
    let key = match uses.value.as_str() {
        "docker/exec" => "commands",
        "docker/run" => "command",
        _ => return,
    };
    for (k, v) in st.with.iter() {
        if k.value != key {
            continue;
        }
        // A `docker/run` command given as a list is an argument vector: no shell reads it.
        if key == "command" && !v.value.is_string() {
            continue;
        }
        if json_strings(&v.value).iter().any(|s| s.contains("${{")) {
            errs.push(
                wf.error(
                    k.loc,
                    format!("`${{{{ }}}}` in `{key}` would be pasted into a shell command"),
                )
                .with_help(format!(
                    "put the value in `with.env` and refer to it as \"$NAME\" in the command, {opt_in}"
                )),
            );
        }
    }
}

/// The 1-based line of the script where an expression sits inside the body of a quoted
/// heredoc (`<<'EOF'`, `<<"EOF"`, `<<\EOF`, with or without `-`), if any.
fn expression_in_quoted_heredoc(script: &str) -> Option<usize> {
    let mut pending: Vec<(String, bool, bool)> = Vec::new(); // (delimiter, quoted, strip tabs)
    let mut body: Option<(String, bool, bool)> = None;
    for (i, line) in script.lines().enumerate() {
        if let Some((delim, quoted, strip)) = &body {
            let end = if *strip {
                line.trim_start_matches('\t')
            } else {
                line
            };
            if end == delim {
                body = None;
                if !pending.is_empty() {
                    body = Some(pending.remove(0));
                }
                continue;
            }
            if *quoted && line.contains("${{") {
                return Some(i + 1);
            }
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("<<") {
            rest = &rest[at + 2..];
            if rest.starts_with('<') {
                rest = &rest[1..];
                continue; // a here-string (<<<)
            }
            let strip = rest.starts_with('-');
            let r = rest.trim_start_matches('-').trim_start();
            let (quoted, word) = match r.chars().next() {
                Some(q @ ('\'' | '"')) => (true, r[1..].split(q).next().unwrap_or("")),
                Some('\\') => (
                    true,
                    r[1..]
                        .split(|c: char| c.is_whitespace() || c == ';')
                        .next()
                        .unwrap_or(""),
                ),
                _ => (
                    false,
                    r.split(|c: char| c.is_whitespace() || c == ';' || c == '>' || c == '|')
                        .next()
                        .unwrap_or(""),
                ),
            };
            if !word.is_empty() {
                pending.push((word.to_string(), quoted, strip));
            }
        }
        if !pending.is_empty() {
            body = Some(pending.remove(0));
        }
    }
    None
}

fn check_step(
    wf: &WorkflowFile,
    step: &Sp<Step>,
    job_scope: &Scope,
    errs: &mut Vec<Diagnostic>,
    expr: &mut impl FnMut(&Sp<String>, &Scope, &mut Vec<Diagnostic>),
) {
    let st = &step.value;
    let mut scope = job_scope.clone();
    scope.env.extend(st.env.keys().map(str::to_string));
    check_env(wf, &st.env, errs);
    for s in [&st.run, &st.shell, &st.working_directory]
        .into_iter()
        .flatten()
    {
        no_nul(wf, s, errs);
    }
    for (_, v) in st.with.iter() {
        if json_strings(&v.value).iter().any(|s| s.contains('\0')) {
            no_nul(wf, &Sp::new("\0".to_string(), v.loc), errs);
        }
    }
    match (&st.run, &st.uses) {
        (Some(_), Some(u)) => {
            errs.push(wf.error(u.loc, "a step has either `run` or `uses`, not both"))
        }
        (None, None) => errs.push(wf.error(
            step.loc,
            "a step needs `run` (a script) or `uses` (a built-in action)",
        )),
        (Some(run), None) => {
            if !st.with.is_empty() {
                let (k, _) = &st.with.0[0];
                errs.push(wf.error(
                    k.loc,
                    "`with` belongs to `uses` steps; a `run` step takes `env`",
                ));
            }
            expr(run, &scope, errs);
        }
        (None, Some(uses)) => {
            if actions::github::is_remote(&uses.value) {
                // Refused all together, in one error, by `check_remote_actions`.
            } else if actions::github::is_local(&uses.value) {
                // The action file is read and expanded as the plan will.
                if let Err(d) = crate::composite::check(wf, st, uses.loc.line) {
                    errs.push(d);
                }
                for (_, v) in st.with.iter() {
                    for s in json_strings(&v.value) {
                        expr(&Sp::new(s, v.loc), &scope, errs);
                    }
                }
            } else if !actions::is_builtin(&uses.value) {
                let d = wf.error(uses.loc, format!("unknown action `{}`", uses.value));
                let d = match did_you_mean(&uses.value, actions::known().iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => {
                        d.with_help(format!("built-in actions: {}", actions::known().join(", ")))
                    }
                };
                errs.push(d);
            } else {
                let map: serde_json::Map<String, serde_json::Value> = st
                    .with
                    .iter()
                    .map(|(k, v)| (k.value.clone(), v.value.clone()))
                    .collect();
                if let Err(e) = actions::validate(&uses.value, &map) {
                    let loc = e
                        .key
                        .as_deref()
                        .and_then(|k| {
                            st.with
                                .0
                                .iter()
                                .find(|(kk, _)| kk.value == k)
                                .map(|(kk, _)| kk.loc)
                        })
                        .unwrap_or(uses.loc);
                    errs.push(wf.error(loc, format!("{}: {}", uses.value, e.message)));
                }
                for (_, v) in st.with.iter() {
                    for s in json_strings(&v.value) {
                        expr(&Sp::new(s, v.loc), &scope, errs);
                    }
                }
            }
            if let Some(sh) = &st.shell {
                errs.push(wf.error(sh.loc, "`shell` applies to `run` steps only"));
            }
        }
    }
    if let Some(sh) = &st.shell {
        if let Err(m) = crate::shell::Shell::parse(&sh.value) {
            errs.push(wf.error(sh.loc, m));
        }
    }
    for (_, v) in st.env.iter() {
        expr(&scalar_sp(v), &scope, errs);
    }
    if let Some(wd) = &st.working_directory {
        expr(wd, &scope, errs);
    }
    if let Some(cond) = &st.if_ {
        let mut s = scope.clone();
        s.allow_status_functions = true;
        expr(&scalar_sp(cond), &s, errs);
    }
    if let Some(r) = &st.retry {
        if r.value.attempts == 0 {
            errs.push(wf.error(r.loc, "`retry.attempts` must be at least 1"));
        } else if r.value.attempts > MAX_ATTEMPTS {
            errs.push(wf.error(
                r.loc,
                format!(
                    "`retry.attempts` is {}; the limit is {MAX_ATTEMPTS}",
                    r.value.attempts
                ),
            ));
        }
        if let Some(d) = &r.value.delay {
            if let Err(m) = crate::duration::parse(&d.value) {
                errs.push(wf.error(d.loc, m));
            }
        }
    }
    if let Some(t) = &st.timeout_minutes {
        if let Err(m) = crate::duration::from_minutes(t.value) {
            errs.push(wf.error(t.loc, m));
        }
    }
    for (key, list) in [("sources", &st.sources), ("generates", &st.generates)] {
        let Some(list) = list else { continue };
        for g in list.located() {
            check_workspace_path(wf, key, &g, errs);
            no_nul(wf, &g, errs);
            if let Err(e) = globset::Glob::new(g.value.trim_start_matches('!')) {
                errs.push(wf.error(g.loc, format!("invalid glob `{}`: {}", g.value, e.kind())));
            }
            expr(&g, &scope, errs);
        }
    }
}

/// Every string inside a `with` value (expressions may hide in nested lists).
pub fn json_strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().flat_map(json_strings).collect(),
        serde_json::Value::Object(o) => o.values().flat_map(json_strings).collect(),
        _ => Vec::new(),
    }
}

/// Point an expression error at the exact place in the file: the error's
/// offset is relative to the string value, and the value may sit in a block
/// scalar or quotes, so find its text in the file after the value's start.
pub fn expr_diag(wf: &WorkflowFile, s: &Sp<String>, e: &ExprError) -> Diagnostic {
    let Some(base) = s.loc.offset else {
        return wf.error(s.loc, e.message.clone());
    };
    let off = e.offset.min(s.value.len());
    let tail_end = s.value[off..]
        .find('\n')
        .map(|i| off + i)
        .unwrap_or(s.value.len());
    let needle = &s.value[off..tail_end];
    if !needle.is_empty() {
        if let Some(pos) = wf.text.get(base..).and_then(|t| t.find(needle)) {
            return Diagnostic::at_offset(
                &wf.path,
                &wf.text,
                base + pos,
                e.len.max(1),
                e.message.clone(),
            );
        }
    }
    wf.error(s.loc, e.message.clone())
}

/// Find a cycle in `needs` and report it as `a -> b -> a`, pointing at the
/// `needs` entry that closes it.
fn find_cycle(wf: &WorkflowFile) -> Option<Diagnostic> {
    let jobs = &wf.workflow.jobs.value;
    let order: Vec<&str> = jobs.keys().collect();
    // Each job's needs, resolved to indices once: a thousand-job file must
    // not pay a linear search per edge.
    let index: std::collections::HashMap<&str, usize> =
        order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let needs: Vec<Vec<(usize, Loc)>> = jobs
        .iter()
        .map(|(_, j)| {
            // `fed-by` orders jobs as `needs` does: a fed job ends after its emitters.
            [&j.value.needs, &j.value.fed_by]
                .into_iter()
                .flatten()
                .flat_map(|n| n.located())
                .filter_map(|s| index.get(s.value.as_str()).map(|&i| (i, s.loc)))
                .collect()
        })
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done. Iterative, so a long chain
    // of jobs cannot overflow the stack.
    let mut mark = vec![0u8; order.len()];
    for root in 0..order.len() {
        if mark[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&(dep, loc)) = needs[node].get(*next) {
                *next += 1;
                match mark[dep] {
                    1 => {
                        let start = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        let mut cycle: Vec<&str> =
                            stack[start..].iter().map(|(n, _)| order[*n]).collect();
                        cycle.push(order[dep]);
                        return Some(
                            wf.error(loc, format!("dependency cycle: {}", cycle.join(" -> "))),
                        );
                    }
                    0 => {
                        mark[dep] = 1;
                        stack.push((dep, 0));
                    }
                    _ => {}
                }
            } else {
                mark[node] = 2;
                stack.pop();
            }
        }
    }
    None
}

/// Env entries as (name, template) pairs.
pub fn env_pairs(e: &Entries<Sp<Scalar>>) -> Vec<(String, String)> {
    e.iter()
        .map(|(k, v)| (k.value.clone(), v.value.0.clone()))
        .collect()
}

/// Every `uses:` of an action trun would have to download, in one error listing each with
/// its file:line:col, unless `--skip-action` names it; and every `--skip-action` that
/// matches no step (a typo would otherwise silently skip nothing).
fn check_remote_actions(wf: &WorkflowFile, errs: &mut Vec<Diagnostic>) {
    let mut remote: Vec<&Sp<String>> = Vec::new();
    let mut used = vec![false; wf.skip_actions.len()];
    for (_, job) in wf.workflow.jobs.value.iter() {
        for step in &job.value.steps.value {
            let Some(uses) = &step.value.uses else {
                continue;
            };
            let mut skipped = false;
            for (i, name) in wf.skip_actions.iter().enumerate() {
                if actions::github::skip_matches(name, &uses.value) {
                    used[i] = true;
                    skipped = true;
                }
            }
            if !skipped && actions::github::is_remote(&uses.value) {
                remote.push(uses);
            }
        }
    }
    for (name, used) in wf.skip_actions.iter().zip(used) {
        if !used {
            errs.push(Diagnostic::plain(format!(
                "--skip-action {name}: no step uses `{name}`"
            )));
        }
    }
    let Some(first) = remote.first() else {
        return;
    };
    let list: Vec<String> = remote
        .iter()
        .map(|u| {
            format!(
                "  {}:{}:{}: {}",
                wf.path.display(),
                u.loc.line,
                u.loc.col,
                u.value
            )
        })
        .collect();
    let mut names: Vec<&str> = remote
        .iter()
        .map(|u| actions::github::split_ref(&u.value).0)
        .collect();
    let mut seen = BTreeSet::new();
    names.retain(|n| seen.insert(n.to_ascii_lowercase()));
    let flags: Vec<String> = names.iter().map(|n| format!("--skip-action {n}")).collect();
    let message = if remote.len() == 1 {
        format!(
            "`{}` is a remote action; trun runs without a network and does not download actions",
            first.value
        )
    } else {
        format!(
            "{} steps use remote actions; trun runs without a network and does not download actions:\n{}",
            remote.len(),
            list.join("\n")
        )
    };
    errs.push(wf.error(first.loc, message).with_help(format!(
        "to run the rest of the workflow with those steps skipped: {}",
        flags.join(" ")
    )));
}
