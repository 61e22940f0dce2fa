//! Local reusable workflows: a job that says `uses: ./.github/workflows/x.yml` runs
//! that workflow's jobs, with `with:` as its inputs. At validation the called files
//! are read and checked (nested calls too, at most [`MAX_DEPTH`] levels, cycles
//! refused); the plan then expands a call into the called jobs, named
//! `<caller>/<called job>`, plus the caller itself, which waits for them and
//! computes `on.workflow_call.outputs` so that `needs.<caller>.outputs.x` works.
//!
//! A reusable workflow from another repository (`owner/repo/.github/workflows/x.yml@v1`)
//! cannot run without the network: every such `uses:` is listed in one error.

use crate::diag::{did_you_mean, Diagnostic};
use crate::spanned::Sp;
use crate::template::Engine;
use crate::workflow::{Job, JobSecrets, WorkflowFile};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The deepest chain of calls: GitHub allows a caller and three levels of called workflows.
pub const MAX_DEPTH: usize = 4;

thread_local! {
    /// The files being validated, outermost first: a call to one of them is a cycle.
    static STACK: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
}

/// Whether `uses` names a workflow of this repository.
pub fn is_local(uses: &str) -> bool {
    uses.starts_with("./")
}

/// The file a local `uses` names, inside the repository `root`: under
/// `.github/workflows/`, a `.yml` or `.yaml`, without `..` or a symbolic link.
pub fn resolve(root: &Path, uses: &str) -> Result<PathBuf, String> {
    let rel = uses.trim_start_matches("./");
    if uses.contains('@') {
        return Err(format!(
            "`{uses}`: a local reusable workflow takes no `@ref` (it is the file in this checkout)"
        ));
    }
    if rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(format!("`{uses}` leaves the repository"));
    }
    if !rel.starts_with(".github/workflows/") || rel[".github/workflows/".len()..].contains('/') {
        return Err(format!(
            "`{uses}`: a reusable workflow lives in .github/workflows/ (write `./.github/workflows/NAME.yml`)"
        ));
    }
    if !(rel.ends_with(".yml") || rel.ends_with(".yaml")) {
        return Err(format!("`{uses}` is not a .yml or .yaml file"));
    }
    let path = root.join(rel);
    crate::fsutil::no_symlink_below(root, &path).map_err(|e| e.to_string())?;
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(format!("`{uses}`: {} does not exist", path.display()));
    }
    Ok(path)
}

/// One error listing every `uses:` of a reusable workflow from another repository.
fn remote_calls(wf: &WorkflowFile) -> Option<Diagnostic> {
    let remote: Vec<(&str, &Sp<String>)> = wf
        .workflow
        .jobs
        .value
        .iter()
        .filter_map(|(id, j)| j.value.uses.as_ref().map(|u| (id.value.as_str(), u)))
        .filter(|(_, u)| !is_local(&u.value))
        .collect();
    let (_, first) = remote.first()?;
    let list: Vec<String> = remote
        .iter()
        .map(|(id, u)| format!("`{}` (job `{id}`, line {})", u.value, u.loc.line))
        .collect();
    Some(
        wf.error(
            first.loc,
            format!(
                "{} reusable workflow{} from another repository cannot run offline: {}",
                remote.len(),
                if remote.len() == 1 { "" } else { "s" },
                list.join(", ")
            ),
        )
        .with_help("copy the workflow into .github/workflows/ and call it as `uses: ./.github/workflows/NAME.yml`"),
    )
}

/// Loads the workflow a local `uses` names; the caller's file is used for errors.
fn load_called(wf: &WorkflowFile, uses: &Sp<String>) -> Result<WorkflowFile, Diagnostic> {
    let path = resolve(&wf.root, &uses.value).map_err(|m| wf.error(uses.loc, m))?;
    // Shown as the user would write it: relative to where trun was started.
    let path = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or(path);
    let mut called = WorkflowFile::load(&path)?;
    // `--skip-action` applies to the steps of called workflows too.
    called.skip_actions = wf.skip_actions.clone();
    let is_callable = called
        .workflow
        .on
        .as_ref()
        .is_some_and(|o| o.value.get("workflow_call").is_some());
    if !is_callable {
        return Err(wf
            .error(
                uses.loc,
                format!(
                    "{} is not a reusable workflow: its `on` has no `workflow_call`",
                    uses.value
                ),
            )
            .with_help("add `on: workflow_call` (with its `inputs`, `outputs` and `secrets`) to the called file"));
    }
    Ok(called)
}

/// Checks every call of `wf` (and, through [`crate::validate::validate`], the calls of
/// the called files). Returns the output names of each calling job, for
/// `needs.<job>.outputs.<name>`.
pub fn check_calls(
    wf: &WorkflowFile,
    engine: &Engine,
    errs: &mut Vec<Diagnostic>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut outputs = BTreeMap::new();
    if let Some(d) = remote_calls(wf) {
        errs.push(d);
    }
    for (id, job) in wf.workflow.jobs.value.iter() {
        let Some(uses) = job.value.uses.as_ref().filter(|u| is_local(&u.value)) else {
            continue;
        };
        let called = match load_called(wf, uses) {
            Ok(c) => c,
            Err(d) => {
                errs.push(d);
                continue;
            }
        };
        let canonical = std::fs::canonicalize(&called.path).unwrap_or(called.path.clone());
        let me = std::fs::canonicalize(&wf.path).unwrap_or(wf.path.clone());
        let stack: Vec<PathBuf> = STACK.with(|s| s.borrow().clone());
        let chain: Vec<PathBuf> = if stack.is_empty() {
            vec![me]
        } else {
            stack.clone()
        };
        if chain.contains(&canonical) {
            let names: Vec<String> = chain
                .iter()
                .chain(std::iter::once(&canonical))
                .map(|p| {
                    p.file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default()
                })
                .collect();
            errs.push(wf.error(
                uses.loc,
                format!(
                    "reusable workflows call each other in a cycle: {}",
                    names.join(" -> ")
                ),
            ));
            continue;
        }
        if chain.len() >= MAX_DEPTH {
            errs.push(wf.error(
                uses.loc,
                format!(
                    "reusable workflows are nested more than {MAX_DEPTH} levels deep (the limit on GitHub too)"
                ),
            ));
            continue;
        }
        check_with(wf, &id.value, &job.value, &called, errs);
        STACK
            .with(|s| *s.borrow_mut() = chain.iter().cloned().chain([canonical.clone()]).collect());
        let r = crate::validate::validate(&called, engine);
        STACK.with(|s| *s.borrow_mut() = stack);
        if let Err(e) = r {
            errs.extend(e);
        }
        let declared = called
            .workflow
            .on
            .as_ref()
            .and_then(|o| o.value.get("workflow_call"))
            .map(|e| e.outputs.keys().map(str::to_string).collect())
            .unwrap_or_default();
        outputs.insert(id.value.clone(), declared);
    }
    outputs
}

/// `with:` names declared inputs and gives every required one; `secrets:` names
/// declared secrets and gives every required one (unless `inherit`).
fn check_with(
    wf: &WorkflowFile,
    id: &str,
    job: &Job,
    called: &WorkflowFile,
    errs: &mut Vec<Diagnostic>,
) {
    let Some(call) = called
        .workflow
        .on
        .as_ref()
        .and_then(|o| o.value.get("workflow_call"))
    else {
        return;
    };
    let uses = job
        .uses
        .as_ref()
        .map(|u| u.value.as_str())
        .unwrap_or_default();
    for (k, v) in job.with.iter() {
        if call.inputs.get(&k.value).is_none() {
            let d = wf.error(k.loc, format!("{uses} has no input `{}`", k.value));
            errs.push(match did_you_mean(&k.value, call.inputs.keys()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None if call.inputs.is_empty() => d.with_help("it declares no inputs"),
                None => d.with_help(format!(
                    "its inputs: {}",
                    call.inputs.keys().collect::<Vec<_>>().join(", ")
                )),
            });
        }
        if crate::validate::json_strings(&v.value)
            .iter()
            .any(|s| s.contains("${{") && (s.contains("needs.") || s.contains("steps.")))
        {
            errs.push(
                wf.error(
                    v.loc,
                    "a `with:` value of a reusable workflow call is computed before the run: it may use `inputs`, `matrix`, `github` and `vars`, not `needs` or `steps`",
                )
                .with_help("pass the value from a needed job through an input of the called workflow's own jobs instead"),
            );
        }
    }
    for (name, input) in call.inputs.iter() {
        if input.value.required
            && input.value.default.is_none()
            && job.with.get(&name.value).is_none()
        {
            errs.push(
                wf.error(
                    job.uses.as_ref().map(|u| u.loc).unwrap_or(name.loc),
                    format!(
                        "job `{id}` does not give the required input `{}` of {uses}",
                        name.value
                    ),
                )
                .with_help(format!("add `with: {{ {}: … }}`", name.value)),
            );
        }
    }
    match job.secrets.as_ref().map(|s| &s.value) {
        Some(JobSecrets::Map(m)) => {
            for (k, _) in m.iter() {
                if call.secrets.get(&k.value).is_none() {
                    let d = wf.error(k.loc, format!("{uses} declares no secret `{}`", k.value));
                    errs.push(match did_you_mean(&k.value, call.secrets.keys()) {
                        Some(s) => d.with_help(format!("did you mean `{s}`?")),
                        None => d.with_help(
                            "declare it under `on.workflow_call.secrets` of the called file",
                        ),
                    });
                }
            }
            for (name, s) in call.secrets.iter() {
                if s.value.required && m.get(&name.value).is_none() {
                    errs.push(wf.error(
                        job.secrets.as_ref().map(|s| s.loc).unwrap_or(name.loc),
                        format!(
                            "job `{id}` does not pass the required secret `{}` of {uses}",
                            name.value
                        ),
                    ));
                }
            }
        }
        Some(JobSecrets::Inherit(_)) => {}
        None => {
            for (name, s) in call.secrets.iter() {
                if s.value.required {
                    errs.push(
                        wf.error(
                            job.uses.as_ref().map(|u| u.loc).unwrap_or(name.loc),
                            format!(
                                "job `{id}` does not pass the required secret `{}` of {uses}",
                                name.value
                            ),
                        )
                        .with_help(
                            "add `secrets: inherit` or `secrets: { NAME: ${{ secrets.NAME }} }`",
                        ),
                    );
                }
            }
        }
    }
}

/// A called workflow with its own calls, for the plan and `trun list`.
#[derive(Debug, Clone)]
pub struct Called {
    pub wf: WorkflowFile,
    /// By the called workflow's job id.
    pub calls: BTreeMap<String, Called>,
}

/// The called workflows of `wf`'s jobs, recursively (already validated; a file that
/// cannot be read here is an error all the same).
pub fn load_tree(
    wf: &WorkflowFile,
    depth: usize,
) -> Result<BTreeMap<String, Called>, Vec<Diagnostic>> {
    let mut out = BTreeMap::new();
    if depth >= MAX_DEPTH {
        return Ok(out);
    }
    for (id, job) in wf.workflow.jobs.value.iter() {
        let Some(uses) = job.value.uses.as_ref().filter(|u| is_local(&u.value)) else {
            continue;
        };
        let called = load_called(wf, uses).map_err(|d| vec![d])?;
        let calls = load_tree(&called, depth + 1)?;
        out.insert(id.value.clone(), Called { wf: called, calls });
    }
    Ok(out)
}

/// Job ids as `trun list` shows them: `caller/called` for the jobs a call runs.
pub fn job_ids(prefix: &str, called: &Called) -> Vec<String> {
    let mut out = Vec::new();
    for (id, _) in called.wf.workflow.jobs.value.iter() {
        let full = format!("{prefix}/{}", id.value);
        if let Some(c) = called.calls.get(&id.value) {
            out.extend(job_ids(&full, c));
        }
        out.push(full);
    }
    out
}

/// The `secrets` context of a job in `scope`, from the run's secrets (`root`): each call
/// on the way passes none, all (`inherit`) or the mapping it names.
pub fn secrets_context(
    scope: Option<&crate::plan::CallScope>,
    root: serde_json::Map<String, serde_json::Value>,
    templates: &Engine,
) -> serde_json::Map<String, serde_json::Value> {
    use crate::plan::SecretPass;
    let Some(s) = scope else { return root };
    let base = secrets_context(s.parent.as_deref(), root, templates);
    let mut out = serde_json::Map::new();
    match &s.secrets {
        SecretPass::Inherit => return base,
        SecretPass::None => {}
        SecretPass::Map(list) => {
            let ctx = crate::template::Context {
                secrets: base,
                ..Default::default()
            };
            for (k, v) in list {
                let val = templates.render(v, &ctx).unwrap_or_default();
                out.insert(k.clone(), serde_json::Value::String(val));
            }
        }
    }
    // As on GitHub, `secrets.GITHUB_TOKEN` always exists (empty here: trun has none).
    out.entry("GITHUB_TOKEN")
        .or_insert(serde_json::Value::String(String::new()));
    out
}

/// `jobs.<id>.outputs.<name>` of `on.workflow_call.outputs`, read as `needs.<id>…` by
/// the calling job (which needs every called job). Only the `jobs.` that starts a
/// name outside a string literal is replaced.
pub fn jobs_to_needs(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("${{") {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let close = after.find("}}").map_or(after.len(), |c| c + 2);
        let expr = &after[..close];
        let mut in_str = false;
        let mut prev: Option<char> = None;
        let chars: Vec<(usize, char)> = expr.char_indices().collect();
        let mut i = 0;
        while i < chars.len() {
            let (at, c) = chars[i];
            if c == '\'' {
                in_str = !in_str;
            }
            let starts_name =
                !prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '.' || p == '-');
            if !in_str && starts_name && expr[at..].starts_with("jobs.") {
                out.push_str("needs.");
                i += 5;
                prev = Some('.');
                continue;
            }
            out.push(c);
            prev = Some(c);
            i += 1;
        }
        rest = &after[close..];
    }
    out.push_str(rest);
    out
}

/// Where a reusable workflow is called from, for [`expand`].
pub struct CallSite<'a> {
    /// The calling job's key in the plan (`call`, or `call (linux)` for a matrix leg).
    pub key: &'a str,
    /// The calling job's id in the plan (`call`, or `outer/call` when nested).
    pub job_id: &'a str,
    pub job: &'a Job,
    /// The calling leg's matrix values.
    pub matrix: &'a serde_json::Map<String, serde_json::Value>,
    /// The inputs the calling job sees.
    pub inputs: &'a serde_json::Map<String, serde_json::Value>,
    /// The calling job's own call scope, when it is itself in a called workflow.
    pub parent: Option<std::sync::Arc<crate::plan::CallScope>>,
    /// The calling job's needs, as plan job ids, and the names they go by there.
    pub needs_ids: Vec<String>,
    pub alias: Vec<(String, String)>,
    pub condition: Option<String>,
}

/// `a` and `b` as one condition: both must hold.
fn both(a: Option<&str>, b: Option<&str>) -> Option<String> {
    let bare = |c: &str| {
        let t = c.trim();
        match t.strip_prefix("${{").and_then(|r| r.strip_suffix("}}")) {
            Some(inner) if !inner.contains("${{") => inner.trim().to_string(),
            _ => t.to_string(),
        }
    };
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("({}) && ({})", bare(a), bare(b))),
        (Some(x), None) | (None, Some(x)) => Some(x.to_string()),
        (None, None) => None,
    }
}

/// The jobs a call runs, as plan jobs named `<caller>/<job>`, then the caller itself,
/// which needs them all and computes the outputs `on.workflow_call.outputs` declares.
pub(crate) fn expand(
    site: &CallSite,
    called: &Called,
    contexts: &crate::github::Contexts,
    legs_of: &mut BTreeMap<String, Vec<String>>,
) -> Result<Vec<crate::plan::PlannedJob>, Vec<Diagnostic>> {
    use crate::plan::{CallScope, PlannedJob};
    use serde_json::Value;
    use std::sync::Arc;
    let wf = &called.wf;
    let engine = Engine::new(wf.root.clone());
    // `with:`, evaluated with what the calling leg knows before the run.
    let caller_ctx = crate::template::Context {
        matrix: site.matrix.clone(),
        ..contexts.expression_context(site.inputs.clone())
    };
    let mut given = Vec::new();
    for (k, v) in site.job.with.iter() {
        let v = match &v.value {
            Value::String(s) if s.contains("${{") => {
                engine.render(s, &caller_ctx).map_err(|e| {
                    vec![Diagnostic::plain(format!(
                        "with.{}: {}",
                        k.value, e.message
                    ))]
                })?
            }
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        given.push((k.value.clone(), v));
    }
    let inputs = crate::plan::resolve_inputs(wf, &given)?;
    let w = &wf.workflow;
    let run_default = |f: fn(&crate::workflow::RunDefaults) -> Option<&Sp<String>>| {
        w.defaults
            .as_ref()
            .and_then(|d| d.run.as_ref())
            .and_then(f)
            .map(|s| s.value.clone())
    };
    let default_shell = run_default(|r| r.shell.as_ref());
    let default_wd = run_default(|r| r.working_directory.as_ref());
    let eval_ctx = contexts.expression_context(inputs.clone());
    let eval = |s: &str| engine.eval_value(s, &eval_ctx).map_err(|e| e.message);
    let level = Arc::new(CallScope {
        inputs: inputs.clone(),
        needs_alias: Vec::new(),
        secrets: match site.job.secrets.as_ref().map(|s| &s.value) {
            None => crate::plan::SecretPass::None,
            Some(JobSecrets::Inherit(_)) => crate::plan::SecretPass::Inherit,
            Some(JobSecrets::Map(m)) => crate::plan::SecretPass::Map(
                m.iter()
                    .map(|(k, v)| (k.value.clone(), v.value.clone()))
                    .collect(),
            ),
        },
        parent: site.parent.clone(),
    });
    let mut out = Vec::new();
    let mut errs = Vec::new();
    let mut called_ids = Vec::new();
    for (cid, cjob) in w.jobs.value.iter() {
        let cjob = &cjob.value;
        let global = format!("{}/{}", site.key, cid.value);
        called_ids.push((global.clone(), cid.value.clone()));
        let local_needs: Vec<String> = cjob
            .needs
            .as_ref()
            .map(|n| n.value.iter().map(|s| s.value.clone()).collect())
            .unwrap_or_default();
        // A job with no needs in the called workflow waits for what the caller needs,
        // and runs only if the caller's `if` holds.
        let (needs_ids, alias, condition) = if local_needs.is_empty() {
            (
                site.needs_ids.clone(),
                site.alias.clone(),
                both(
                    site.condition.as_deref(),
                    cjob.if_.as_ref().map(|c| c.value.0.as_str()),
                ),
            )
        } else {
            let ids: Vec<String> = local_needs
                .iter()
                .map(|n| format!("{}/{n}", site.key))
                .collect();
            let alias = ids
                .iter()
                .cloned()
                .zip(local_needs.iter().cloned())
                .collect();
            (ids, alias, cjob.if_.as_ref().map(|c| c.value.0.clone()))
        };
        let legs = match crate::plan::expand_matrix(cjob, &eval) {
            Ok(l) => l,
            Err(m) => {
                errs.push(wf.error(cid.loc, m));
                continue;
            }
        };
        let has_matrix = cjob
            .strategy
            .as_ref()
            .and_then(|s| s.matrix.as_ref())
            .is_some_and(|m| !m.value.is_dynamic());
        for matrix in legs {
            let key = if has_matrix {
                crate::plan::leg_key(&global, &matrix)
            } else {
                global.clone()
            };
            legs_of.entry(global.clone()).or_default().push(key.clone());
            if let Some(nested) = called.calls.get(&cid.value) {
                let nested_site = CallSite {
                    key: &key,
                    job_id: &global,
                    job: cjob,
                    matrix: &matrix,
                    inputs: &inputs,
                    parent: Some(level.clone()),
                    needs_ids: needs_ids.clone(),
                    alias: alias.clone(),
                    condition: condition.clone(),
                };
                match expand(&nested_site, nested, contexts, legs_of) {
                    Ok(j) => out.extend(j),
                    Err(e) => errs.extend(e),
                }
                continue;
            }
            let (runs_on, mapped, labels) =
                crate::plan::runs_on_of(cjob, &engine, &eval_ctx, &matrix, contexts);
            match crate::plan::plan_job(
                &wf.root,
                &wf.skip_actions,
                &global,
                key,
                cjob,
                matrix,
                default_shell.as_deref(),
                default_wd.as_deref(),
                mapped.as_ref().map(|(_, i)| i.as_str()),
            ) {
                Ok(mut j) => {
                    j.notes = crate::plan::job_notes(cjob, runs_on.as_deref(), mapped.as_ref());
                    j.runs_on = labels;
                    j.notes.insert(
                        0,
                        format!(
                            "from {}",
                            site.job
                                .uses
                                .as_ref()
                                .map(|u| u.value.as_str())
                                .unwrap_or_default()
                        ),
                    );
                    crate::plan::mark_skipped_actions(&mut j, &wf.skip_actions);
                    j.needs_ids = needs_ids.clone();
                    j.condition = condition.clone();
                    j.call = Some(Arc::new(CallScope {
                        needs_alias: alias.clone(),
                        ..(*level).clone()
                    }));
                    out.push(j);
                }
                Err(d) => errs.push(d),
            }
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    // The caller: needs every called job, and reads `jobs.<id>` as `needs.<id>`.
    let outputs: Vec<(String, String)> =
        w.on.as_ref()
            .and_then(|o| o.value.get("workflow_call"))
            .map(|e| {
                e.outputs
                    .iter()
                    .map(|(k, v)| (k.value.clone(), jobs_to_needs(&v.value.value.value)))
                    .collect()
            })
            .unwrap_or_default();
    let caller = PlannedJob {
        key: site.key.to_string(),
        job_id: site.job_id.to_string(),
        name: site
            .job
            .name
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_else(|| site.key.to_string()),
        needs: Vec::new(),
        needs_ids: called_ids.iter().map(|(g, _)| g.clone()).collect(),
        matrix: site.matrix.clone(),
        condition: None,
        env: Vec::new(),
        container: None,
        services: Vec::new(),
        outputs,
        timeout: None,
        continue_on_error: false,
        fail_fast: true,
        max_parallel: None,
        concurrency: None,
        dynamic_matrix: None,
        fed_by: Vec::new(),
        input: None,
        steps: Vec::new(),
        notes: vec![format!(
            "calls {} ({} job{}), then collects its outputs",
            site.job
                .uses
                .as_ref()
                .map(|u| u.value.as_str())
                .unwrap_or_default(),
            called_ids.len(),
            if called_ids.len() == 1 { "" } else { "s" }
        )],
        runs_on: Vec::new(),
        call: Some(Arc::new(CallScope {
            inputs: site.inputs.clone(),
            needs_alias: called_ids,
            secrets: crate::plan::SecretPass::Inherit,
            parent: site.parent.clone(),
        })),
    };
    out.push(caller);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_read_the_called_jobs_as_needs() {
        assert_eq!(
            jobs_to_needs("${{ jobs.build.outputs.v }}-x"),
            "${{ needs.build.outputs.v }}-x"
        );
        assert_eq!(
            jobs_to_needs("${{ format('jobs.{0}', jobs.a.outputs.b) }} jobs.c"),
            "${{ format('jobs.{0}', needs.a.outputs.b) }} jobs.c"
        );
        assert_eq!(jobs_to_needs("${{ myjobs.a }}"), "${{ myjobs.a }}");
    }

    #[test]
    fn local_paths_stay_in_the_workflows_directory() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".github/workflows")).unwrap();
        std::fs::write(
            d.path().join(".github/workflows/b.yml"),
            "on: workflow_call\n",
        )
        .unwrap();
        assert!(resolve(d.path(), "./.github/workflows/b.yml").is_ok());
        for bad in [
            "./.github/workflows/../../etc/passwd.yml",
            "./scripts/b.yml",
            "./.github/workflows/b.yml@main",
            "./.github/workflows/b.txt",
            "./.github/workflows/missing.yml",
        ] {
            assert!(resolve(d.path(), bad).is_err(), "{bad}");
        }
        std::os::unix::fs::symlink("/etc", d.path().join(".github/workflows/l")).unwrap();
        assert!(resolve(d.path(), "./.github/workflows/l/x.yml").is_err());
    }
}
