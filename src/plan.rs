//! From a validated workflow to the list of job instances that will run:
//! job selection (`trun build test`, or the `default` job, or all), matrix
//! expansion into legs, input values, and an order that respects `needs`.
//!
//! A [`Plan`] is plain data handed to the engine; nothing downstream reads
//! the YAML again. Whether each step is up to date is decided here too (see
//! [`crate::uptodate`]), so `trun plan` and `trun run` agree by construction.

use crate::diag::{did_you_mean, Diagnostic};
use crate::event::{JobInfo, StepInfo};
use crate::shell::Shell;
use crate::validate::{coerce_input, env_pairs};
use crate::workflow::{Backoff, ContainerSpec, Job, Step, WorkflowFile};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub workflow: String,
    pub path: PathBuf,
    pub root: PathBuf,
    pub inputs: Map<String, Value>,
    /// Workflow-level env (templates, rendered at run time).
    pub env: Vec<(String, String)>,
    /// Job instances in an order where every job comes after its needs.
    pub jobs: Vec<PlannedJob>,
    /// Every job of the workflow (selected or not) and the jobs whose emitted
    /// files feed it (`fed-by`; empty for a job that takes none): where a
    /// file a step writes into `$TRUN_EMIT/<job>/` may go.
    pub fed_by: BTreeMap<String, Vec<String>>,
    /// The `github`, `runner` and `vars` contexts and the `GITHUB_*` variables
    /// (`None` for a grading plan).
    #[serde(skip)]
    pub github: Option<std::sync::Arc<crate::github::Contexts>>,
    /// What `trun plan` should say about the workflow as a whole: triggers recorded
    /// but not enforced, `permissions` not enforced, the run's name.
    pub notes: Vec<String>,
    /// `--secret` / `--secret-file`: the `secrets` context (never serialized).
    #[serde(skip)]
    pub secrets: std::sync::Arc<crate::secrets::Secrets>,
    /// The workflow's and its jobs' `webhooks:` (delivered by `trun serve` only).
    #[serde(skip)]
    pub webhooks: Vec<crate::server::webhooks::Hook>,
    /// The workflow's `concurrency` (its group unrendered).
    pub concurrency: Option<ConcurrencyPlan>,
}

/// A `concurrency` setting, its group still an expression.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConcurrencyPlan {
    pub group: String,
    pub max: u32,
    pub cancel_in_progress: bool,
}

impl ConcurrencyPlan {
    fn of(c: &crate::workflow::Concurrency) -> ConcurrencyPlan {
        ConcurrencyPlan {
            group: c.group().to_string(),
            max: c.max(),
            cancel_in_progress: c.cancel_in_progress(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedJob {
    /// Unique in the run: `build`, or `test (1, linux)` for a matrix leg.
    pub key: String,
    pub job_id: String,
    pub name: String,
    /// Keys of the job instances this one waits for (every leg of a needed matrix job).
    pub needs: Vec<String>,
    /// Job ids named in `needs` (what `needs.<id>` refers to in expressions).
    pub needs_ids: Vec<String>,
    pub matrix: Map<String, Value>,
    pub condition: Option<String>,
    pub env: Vec<(String, String)>,
    pub container: Option<ContainerSpec>,
    pub services: Vec<(String, ContainerSpec)>,
    pub outputs: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub continue_on_error: bool,
    pub fail_fast: bool,
    pub max_parallel: Option<u32>,
    /// The job's `concurrency` (its group unrendered).
    pub concurrency: Option<ConcurrencyPlan>,
    /// A matrix computed by the job's needs: the engine expands it into legs
    /// when the job is ready.
    pub dynamic_matrix: Option<DynamicMatrix>,
    /// `fed-by`: the jobs whose emitted files make the instances of this one
    /// (decided at run time, see `exec::fanout`).
    pub fed_by: Vec<String>,
    /// The file an instance of a fed job processes.
    pub input: Option<crate::fanout::Input>,
    pub steps: Vec<PlannedStep>,
    /// What `trun plan` should say about the job: where `runs-on` runs, keys
    /// accepted but not enforced (`environment`, `permissions`).
    pub notes: Vec<String>,
    /// Its `runs-on` labels, rendered: a `trun worker` takes the job only if
    /// it has all of them.
    #[serde(skip)]
    pub runs_on: Vec<String>,
    /// A job of a reusable workflow (or the job calling one): its own inputs and
    /// the names its `needs` go by (see [`crate::reusable`]).
    #[serde(skip)]
    pub call: Option<std::sync::Arc<CallScope>>,
}

/// What a job of a called workflow sees differently from the caller's jobs.
#[derive(Debug, Clone, Default)]
pub struct CallScope {
    /// `inputs`: the call's `with:`, typed and defaulted by `on.workflow_call.inputs`.
    pub inputs: Map<String, Value>,
    /// Job ids in `needs_ids` → the name `needs.<name>` uses for them.
    pub needs_alias: Vec<(String, String)>,
    /// The `secrets:` of the call, read against the caller's secrets.
    pub secrets: SecretPass,
    /// The caller's own scope, when it is itself in a called workflow.
    pub parent: Option<std::sync::Arc<CallScope>>,
}

/// `secrets:` of a job calling a reusable workflow.
#[derive(Debug, Clone, Default)]
pub enum SecretPass {
    /// None given: the called workflow sees no secrets.
    #[default]
    None,
    /// `secrets: inherit`: the caller's.
    Inherit,
    /// `secrets: { NAME: template }`, each rendered with the caller's `secrets`.
    Map(Vec<(String, String)>),
}

#[derive(Debug, Clone, Serialize)]
pub struct DynamicMatrix {
    /// The whole matrix as one expression.
    pub expr: Option<String>,
    pub axes: Vec<(String, Vec<Value>)>,
    /// Axes given as expressions.
    pub dynamic: Vec<(String, String)>,
    pub include: Vec<Map<String, Value>>,
    pub exclude: Vec<Map<String, Value>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub index: usize,
    /// `id:` or `step-N` (1-based).
    pub id: String,
    pub has_id: bool,
    pub name: String,
    pub action: Action,
    pub env: Vec<(String, String)>,
    pub condition: Option<String>,
    pub working_directory: Option<String>,
    pub continue_on_error: bool,
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub sources: Vec<String>,
    pub generates: Vec<String>,
    /// 1-based line of the step in the workflow file, for messages.
    pub line: u32,
    /// Skipped whatever happens, and why: `--skip-action NAME` named its action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip: Option<String>,
    /// The composite action this step was generated from (`uses: ./path`).
    #[serde(skip)]
    pub frame: Option<std::sync::Arc<crate::composite::Frame>>,
}

impl PlannedStep {
    /// The id the step's own scope knows it by: `test` for `setup/test`, a step of
    /// the composite action the caller `setup` uses.
    pub fn local_id(&self) -> &str {
        match &self.frame {
            Some(f) => self.id.strip_prefix(&f.prefix).unwrap_or(&self.id),
            None => &self.id,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Action {
    Run {
        script: String,
        shell: Shell,
        inline_expressions: bool,
    },
    Uses {
        uses: String,
        with: Map<String, Value>,
    },
    /// A step generated from a `rubric/grade` step: the rubric's setup, one
    /// criterion, or the closing score.
    Grade {
        #[serde(skip)]
        rubric: std::sync::Arc<crate::rubric::Rubric>,
        /// The rubric file's directory: a rubric's `container.dockerfile` is relative to it.
        #[serde(skip)]
        rubric_dir: PathBuf,
        /// The repository graded, relative to the workspace.
        repo: String,
        part: GradePart,
        sandbox: GradeSandbox,
    },
}

/// Where the commands of a rubric run: the engine opens one sandbox per job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GradeSandbox {
    /// A scratch copy of the repository on this machine, as the grader's own user
    /// (a rubric without `container:`, or `trun grade --local`).
    Local,
    /// The rubric's container: no network, memory/pid limits, the repository copied into a
    /// size-limited tmpfs, nothing mounted from the host but the repository, read-only.
    Container,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "part", content = "criterion", rename_all = "lowercase")]
pub enum GradePart {
    Setup,
    Criterion(String),
    Score,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub exponential: bool,
    pub delay: Duration,
}

impl RetryPolicy {
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts: 1,
        exponential: false,
        delay: Duration::ZERO,
    };

    /// Delay before attempt `n` (2-based: the first retry is attempt 2).
    pub fn delay_before(&self, attempt: u32) -> Duration {
        if self.exponential {
            self.delay
                .checked_mul(2u32.saturating_pow(attempt.saturating_sub(2)))
                .unwrap_or(crate::duration::MAX)
                .min(crate::duration::MAX)
        } else {
            self.delay
        }
    }
}

/// What the user asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Job ids to run (with their needs); empty = `default` job or all.
    pub jobs: Vec<String>,
    /// `-i name=value`.
    pub inputs: Vec<(String, String)>,
}

impl Plan {
    pub fn job(&self, key: &str) -> Option<&PlannedJob> {
        self.jobs.iter().find(|j| j.key == key)
    }

    /// Whether anything in the plan talks to Docker: checked before anything runs, so
    /// that an unreachable daemon is one clear error instead of a failure midway.
    pub fn needs_docker(&self) -> bool {
        self.jobs.iter().any(|j| {
            j.container.is_some()
                || !j.services.is_empty()
                || j.steps.iter().any(|s| match &s.action {
                    Action::Uses { uses, .. } => crate::actions::needs_docker(uses),
                    Action::Grade { sandbox, .. } => *sandbox == GradeSandbox::Container,
                    Action::Run { .. } => false,
                })
        })
    }

    /// The job list reporters and the state store receive in `RunStarted`.
    pub fn job_infos(&self) -> Vec<JobInfo> {
        self.jobs
            .iter()
            .map(|j| JobInfo {
                key: j.key.clone(),
                job_id: j.job_id.clone(),
                name: j.name.clone(),
                needs: j.needs.clone(),
                matrix: j.matrix.clone().into_iter().collect(),
                // A matrix computed at run time: its legs report their own steps.
                steps: if j.fans_out() {
                    Vec::new()
                } else {
                    j.steps
                        .iter()
                        .map(|s| StepInfo {
                            index: s.index,
                            id: s.id.clone(),
                            name: s.name.clone(),
                        })
                        .collect()
                },
            })
            .collect()
    }
}

impl PlannedJob {
    /// A job whose instances are decided at run time (a computed matrix, or
    /// `fed-by`): it runs no steps itself and holds no `-j` slot; its
    /// instances do.
    pub fn fans_out(&self) -> bool {
        self.dynamic_matrix.is_some() || !self.fed_by.is_empty()
    }
}

/// Build the plan. The workflow must already have passed [`crate::validate`].
pub fn build(wf: &WorkflowFile, req: &Request) -> Result<Plan, Vec<Diagnostic>> {
    build_with(wf, req, &crate::github::Options::default())
}

/// Build the plan with the GitHub side of the run: `--event`, `--event-path`,
/// `--var`, `-P` (and `.trunrc`).
pub fn build_with(
    wf: &WorkflowFile,
    req: &Request,
    gh: &crate::github::Options,
) -> Result<Plan, Vec<Diagnostic>> {
    let w = &wf.workflow;
    let inputs = resolve_inputs(wf, &req.inputs)?;
    let selected = select_jobs(wf, &req.jobs).map_err(|d| vec![d])?;
    let contexts = std::sync::Arc::new(crate::github::contexts(wf, gh, &inputs)?);
    let calls = crate::reusable::load_tree(wf, 0)?;

    let default_shell = w
        .defaults
        .as_ref()
        .and_then(|d| d.run.as_ref())
        .and_then(|r| r.shell.as_ref())
        .map(|s| s.value.clone());
    let default_wd = w
        .defaults
        .as_ref()
        .and_then(|d| d.run.as_ref())
        .and_then(|r| r.working_directory.as_ref())
        .map(|s| s.value.clone());

    // Expand every selected job into legs, in file order, then order by needs.
    let mut legs_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // At least a leg per job: growing a vector of large jobs copies them and faults in
    // fresh pages at every doubling.
    let mut jobs: Vec<PlannedJob> = Vec::with_capacity(w.jobs.value.0.len());
    let mut errs = Vec::new();
    let mut clean_dirs = std::collections::HashSet::new();
    for (id, job) in w.jobs.value.iter() {
        if !selected.contains(&id.value) {
            continue;
        }
        for step in &job.value.steps.value {
            check_paths(wf, &step.value, &mut clean_dirs, &mut errs);
        }
        // Static matrix values may use expressions (`${{ inputs.version }}`): they see
        // the inputs, as on GitHub, and are evaluated before the legs are formed.
        let engine = crate::template::Engine::new(wf.root.clone());
        let ctx = contexts.expression_context(inputs.clone());
        let eval = |s: &str| engine.eval_value(s, &ctx).map_err(|e| e.message);
        let legs = match expand_matrix(&job.value, &eval) {
            Ok(l) => l,
            Err(m) => {
                let loc = job
                    .value
                    .strategy
                    .as_ref()
                    .and_then(|s| s.matrix.as_ref())
                    .map(|m| m.loc)
                    .unwrap_or(id.loc);
                errs.push(wf.error(loc, m));
                continue;
            }
        };
        let has_matrix = job
            .value
            .strategy
            .as_ref()
            .and_then(|s| s.matrix.as_ref())
            .is_some_and(|m| !m.value.is_dynamic());
        for matrix in legs {
            let key = if has_matrix {
                leg_key(&id.value, &matrix)
            } else {
                id.value.clone()
            };
            legs_of
                .entry(id.value.clone())
                .or_default()
                .push(key.clone());
            if let Some(called) = calls.get(&id.value) {
                let site = crate::reusable::CallSite {
                    key: &key,
                    job_id: &id.value,
                    job: &job.value,
                    matrix: &matrix,
                    inputs: &inputs,
                    parent: None,
                    needs_ids: job
                        .value
                        .needs
                        .as_ref()
                        .map(|n| n.value.iter().map(|s| s.value.clone()).collect())
                        .unwrap_or_default(),
                    alias: Vec::new(),
                    condition: job.value.if_.as_ref().map(|c| c.value.0.clone()),
                };
                match crate::reusable::expand(&site, called, &contexts, &mut legs_of) {
                    Ok(expanded) => jobs.extend(expanded),
                    Err(e) => errs.extend(e),
                }
                continue;
            }
            let (runs_on, mapped, labels) =
                runs_on_of(&job.value, &engine, &ctx, &matrix, &contexts);
            let planned = plan_job(
                &wf.root,
                &wf.skip_actions,
                &id.value,
                key,
                &job.value,
                matrix,
                default_shell.as_deref(),
                default_wd.as_deref(),
                mapped.as_ref().map(|(_, image)| image.as_str()),
            )
            .map(|mut j| {
                j.notes = job_notes(&job.value, runs_on.as_deref(), mapped.as_ref());
                j.runs_on = labels;
                j
            });
            match planned {
                Ok(mut j) => {
                    mark_skipped_actions(&mut j, &wf.skip_actions);
                    jobs.push(j)
                }
                Err(d) => errs.push(d),
            }
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    for j in &mut jobs {
        j.needs = j
            .needs_ids
            .iter()
            .flat_map(|n| legs_of.get(n).cloned().unwrap_or_default())
            .collect();
    }
    // Names may use inputs and the matrix (`name: test on ${{ matrix.os }}`):
    // render what can be rendered before the run, so the plan, the progress
    // view and the state store all show the same words.
    let templates = crate::template::Engine::new(wf.root.clone());
    for j in &mut jobs {
        let ctx = crate::template::Context {
            matrix: j.matrix.clone(),
            ..contexts.expression_context(inputs.clone())
        };
        let render = |s: &mut String| {
            if s.contains("${{") {
                if let Ok(r) = templates.render(s, &ctx) {
                    *s = r;
                }
            }
        };
        render(&mut j.name);
        for step in &mut j.steps {
            render(&mut step.name);
        }
    }
    let jobs = topo_order(jobs);
    let notes = workflow_notes(wf, &templates, &inputs, &contexts);
    Ok(Plan {
        workflow: w.name.as_ref().map(|n| n.value.clone()).unwrap_or_else(|| {
            wf.root
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        path: wf.path.clone(),
        root: wf.root.clone(),
        inputs,
        env: env_pairs(&w.env),
        jobs,
        fed_by: w
            .jobs
            .value
            .iter()
            .map(|(id, j)| (id.value.clone(), fed_by_of(&j.value)))
            .collect(),
        github: Some(contexts),
        notes,
        secrets: Default::default(),
        webhooks: crate::server::webhooks::hooks(wf),
        concurrency: w
            .concurrency
            .as_ref()
            .map(|c| ConcurrencyPlan::of(&c.value)),
    })
}

/// The job's `runs-on` as written (rendered with the matrix), the `-P` mapping
/// that applies to it, if any: `(label, image)`, and its labels.
pub(crate) fn runs_on_of(
    job: &Job,
    engine: &crate::template::Engine,
    ctx: &crate::template::Context,
    matrix: &Map<String, Value>,
    contexts: &crate::github::Contexts,
) -> (Option<String>, Option<(String, String)>, Vec<String>) {
    let Some(r) = &job.runs_on else {
        return (None, None, Vec::new());
    };
    let mut ctx = ctx.clone();
    ctx.matrix = matrix.clone();
    let labels: Vec<String> = r
        .value
        .labels()
        .into_iter()
        .map(|l| {
            if l.contains("${{") {
                engine.render(&l, &ctx).unwrap_or(l)
            } else {
                l
            }
        })
        .collect();
    let shown = match &r.value {
        crate::workflow::RunsOn::Labels(_) if labels.len() == 1 => labels[0].clone(),
        crate::workflow::RunsOn::Labels(_) => format!("[{}]", labels.join(", ")),
        other => other.describe(),
    };
    // A job's own `container:` wins over a runner image, as on GitHub.
    let mapped = if job.container.is_some() {
        None
    } else {
        contexts.image_for(&labels)
    };
    (Some(shown), mapped, labels)
}

/// What `trun plan` says about a job's GitHub-only keys.
pub(crate) fn job_notes(
    job: &Job,
    runs_on: Option<&str>,
    mapped: Option<&(String, String)>,
) -> Vec<String> {
    let mut notes = Vec::new();
    match (runs_on, mapped) {
        (Some(r), Some((label, image))) => notes.push(format!(
            "runs-on {r}: in container {image} (-P {label}={image})"
        )),
        (Some(r), None) if job.container.is_some() => notes.push(format!(
            "runs-on {r}: on this host, steps in the job's container"
        )),
        (Some(r), None) => notes.push(format!("runs-on {r}: on this host")),
        _ => {}
    }
    if let Some(e) = &job.environment {
        notes.push(format!(
            "environment {}: accepted, not enforced (no protection rules or environment secrets)",
            e.value.name()
        ));
    }
    if job.permissions.is_some() {
        notes.push("permissions: not enforced (trun has no GITHUB_TOKEN)".into());
    }
    notes
}

/// What `trun plan` says about the workflow's GitHub-only keys.
fn workflow_notes(
    wf: &WorkflowFile,
    templates: &crate::template::Engine,
    inputs: &Map<String, Value>,
    contexts: &crate::github::Contexts,
) -> Vec<String> {
    let w = &wf.workflow;
    let mut notes = Vec::new();
    if let Some(on) = &w.on {
        let event = contexts
            .github
            .get("event_name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        notes.push(format!(
            "on: {} (recorded, not enforced: the workflow runs when you run it; this run is a `{event}` event)",
            on.value.names().join(", ")
        ));
    }
    if let Some(name) = run_name(wf, templates, inputs, contexts) {
        notes.push(format!("run-name: {name}"));
    }
    if w.permissions.is_some() {
        notes.push("permissions: not enforced (trun has no GITHUB_TOKEN)".into());
    }
    notes
}

/// The run's display name from `run-name`, rendered with `github`, `inputs` and `vars`.
pub fn run_name(
    wf: &WorkflowFile,
    templates: &crate::template::Engine,
    inputs: &Map<String, Value>,
    contexts: &crate::github::Contexts,
) -> Option<String> {
    let r = wf.workflow.run_name.as_ref()?;
    let ctx = contexts.expression_context(inputs.clone());
    Some(
        templates
            .render(&r.value, &ctx)
            .unwrap_or_else(|_| r.value.clone()),
    )
}

pub(crate) fn resolve_inputs(
    wf: &WorkflowFile,
    given: &[(String, String)],
) -> Result<Map<String, Value>, Vec<Diagnostic>> {
    let w = &wf.workflow;
    let mut out = Map::new();
    let mut errs = Vec::new();
    for (k, _) in given {
        if w.inputs.get(k).is_none() {
            let mut d = Diagnostic::plain(format!("unknown input `{k}`"));
            d = match did_you_mean(k, w.inputs.keys()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None if w.inputs.is_empty() => d.with_help("this workflow declares no inputs"),
                None => d.with_help(format!(
                    "inputs: {}",
                    w.inputs.keys().collect::<Vec<_>>().join(", ")
                )),
            };
            errs.push(d);
        }
    }
    for (name, input) in w.inputs.iter() {
        let given_value = given
            .iter()
            .rev()
            .find(|(k, _)| *k == name.value)
            .map(|(_, v)| v);
        let raw = match (given_value, &input.value.default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => d.value.0.clone(),
            (None, None) if input.value.required => {
                errs.push(
                    wf.error(name.loc, format!("missing required input `{}`", name.value))
                        .with_help(format!("pass it with `-i {}=VALUE`", name.value)),
                );
                continue;
            }
            (None, None) => {
                out.insert(name.value.clone(), default_for(&input.value));
                continue;
            }
        };
        match coerce_input(&name.value, &input.value, &raw) {
            Ok(v) => {
                out.insert(name.value.clone(), v);
            }
            Err(m) => errs.push(match given_value {
                Some(_) => wf
                    .error(name.loc, m)
                    .with_help(format!("given with -i {}={raw}", name.value)),
                None => wf.error(name.loc, m),
            }),
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

fn default_for(i: &crate::workflow::Input) -> Value {
    use crate::workflow::InputType::*;
    match i.kind.value {
        String | Choice | Environment => Value::String(std::string::String::new()),
        Number => Value::from(0),
        Boolean => Value::Bool(false),
    }
}

fn select_jobs(wf: &WorkflowFile, asked: &[String]) -> Result<BTreeSet<String>, Diagnostic> {
    let jobs = &wf.workflow.jobs.value;
    let roots: Vec<String> = if asked.is_empty() {
        if jobs.get("default").is_some() {
            vec!["default".into()]
        } else {
            jobs.keys().map(str::to_string).collect()
        }
    } else {
        for a in asked {
            if jobs.get(a).is_none() {
                let d = Diagnostic::plain(format!("no job named `{a}` in {}", wf.path.display()));
                return Err(match did_you_mean(a, jobs.keys()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!(
                        "jobs: {}",
                        jobs.keys().collect::<Vec<_>>().join(", ")
                    )),
                });
            }
        }
        asked.to_vec()
    };
    // By id once: a lookup in the file's list per job made a thousand jobs quadratic.
    let by_id: std::collections::HashMap<&str, &Job> = jobs
        .iter()
        .map(|(k, j)| (k.value.as_str(), &*j.value))
        .collect();
    let mut sel = BTreeSet::new();
    let mut stack = roots;
    while let Some(id) = stack.pop() {
        if !sel.insert(id.clone()) {
            continue;
        }
        if let Some(j) = by_id.get(id.as_str()) {
            if let Some(n) = &j.needs {
                stack.extend(n.value.iter().map(|s| s.value.clone()));
            }
            // A fed job comes with the jobs that emit its files.
            stack.extend(fed_by_of(j));
        }
    }
    Ok(sel)
}

fn fed_by_of(job: &Job) -> Vec<String> {
    job.fed_by
        .as_ref()
        .map(|f| f.value.iter().map(|s| s.value.clone()).collect())
        .unwrap_or_default()
}

/// The directories a `sources`/`generates` entry names before its first glob
/// character: `out/bin/*.so` -> `out/bin`, `dist/app` -> `dist`.
fn literal_dirs(pattern: &str) -> Option<&str> {
    let pattern = pattern.trim_start_matches('!');
    if pattern.contains("${{") || pattern.starts_with('/') {
        return None;
    }
    let glob_at = pattern.find(['*', '?', '[', '{']).unwrap_or(pattern.len());
    let dir_end = pattern[..glob_at].rfind('/')?;
    Some(&pattern[..dir_end])
}

fn is_literal(pattern: &str) -> bool {
    !pattern.starts_with('!') && !pattern.contains("${{") && !pattern.contains(['*', '?', '[', '{'])
}

/// `sources` and `generates` may not reach through a symbolic link in the
/// workspace (`out -> /elsewhere`): restoring would write through it, and
/// hashing would read outside the workspace. Checked against the file system
/// as it is when the plan is made. `clean`: the directories found to be no
/// link so far (see [`crate::fsutil::no_symlink_below_memo`]).
fn check_paths(
    wf: &WorkflowFile,
    step: &Step,
    clean: &mut std::collections::HashSet<std::path::PathBuf>,
    errs: &mut Vec<Diagnostic>,
) {
    for (key, list) in [("sources", &step.sources), ("generates", &step.generates)] {
        let Some(list) = list else { continue };
        for g in list.located() {
            let Some(dirs) = literal_dirs(&g.value) else {
                continue;
            };
            if dirs.split('/').any(|c| c == "..") {
                continue; // refused by validation already
            }
            let checked =
                crate::fsutil::no_symlink_below_memo(&wf.root, &wf.root.join(dirs), clean);
            if let Err(e) = checked {
                let shown = e.to_string();
                let rel = shown
                    .strip_prefix(&format!("{}/", wf.root.display()))
                    .unwrap_or(&shown)
                    .split(" is a symbolic link")
                    .next()
                    .unwrap_or(dirs)
                    .to_string();
                errs.push(
                    wf.error(
                        g.loc,
                        format!("`{key}` path `{}` goes through the symbolic link `{rel}`", g.value),
                    )
                    .with_help("trun reads and restores files only inside the workspace, never through links: name the real directory"),
                );
            }
        }
    }
}

/// Warnings about the workflow that do not stop it: a `sources` entry naming
/// a file (no glob) that does not exist, which would otherwise never make the
/// step run again. The caller prints them (see [`Diagnostic::render_warning`]).
pub fn warnings(wf: &WorkflowFile) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    // A source another step generates is expected to be missing until then.
    // Compiled only when a literal source is missing: one glob per `generates`
    // entry was 4% of a no-op's instructions in a workflow of 100 steps.
    let generated = std::cell::OnceCell::new();
    let generated = || {
        generated.get_or_init(|| -> Vec<(String, Option<globset::GlobMatcher>)> {
            wf.workflow
                .jobs
                .value
                .iter()
                .flat_map(|(_, j)| j.value.steps.value.iter())
                .filter_map(|s| s.value.generates.as_ref())
                .flat_map(|g| g.value.iter().map(|p| p.value.clone()).collect::<Vec<_>>())
                .map(|p| {
                    let m = globset::Glob::new(&p).ok().map(|g| g.compile_matcher());
                    (p.trim_end_matches('/').to_string(), m)
                })
                .collect()
        })
    };
    let is_generated = |src: &str| {
        generated().iter().any(|(p, m)| {
            src == p
                || src.starts_with(&format!("{p}/"))
                || m.as_ref().is_some_and(|m| m.is_match(src))
        })
    };
    for (_, job) in wf.workflow.jobs.value.iter() {
        for step in &job.value.steps.value {
            let Some(sources) = &step.value.sources else {
                continue;
            };
            for s in sources.located() {
                if is_literal(&s.value)
                    && !s.value.starts_with('/')
                    && std::fs::symlink_metadata(wf.root.join(&s.value)).is_err()
                    && !is_generated(&s.value)
                {
                    out.push(
                        wf.error(s.loc, format!("source `{}` does not exist", s.value))
                            .with_help("the step's up-to-date check ignores it until it exists"),
                    );
                }
            }
        }
    }
    out
}

/// Matrix legs: the cartesian product of the axes, minus `exclude`, plus
/// `include` (merged into matching legs or added), as GitHub Actions does.
pub fn expand_matrix(
    job: &Job,
    eval: &dyn Fn(&str) -> Result<Value, String>,
) -> Result<Vec<Map<String, Value>>, String> {
    let Some(m) = job.strategy.as_ref().and_then(|s| s.matrix.as_ref()) else {
        return Ok(vec![Map::new()]);
    };
    let m = &m.value;
    if m.is_dynamic() {
        // Expanded by the engine once the needs have produced the values.
        return Ok(vec![Map::new()]);
    }
    let axes: Vec<(String, Vec<Value>)> = m
        .axes
        .iter()
        .map(|(k, v)| {
            let vals = v
                .iter()
                .map(|x| eval_json(x, eval))
                .collect::<Result<_, _>>()?;
            Ok((k.value.clone(), vals))
        })
        .collect::<Result<_, String>>()?;
    let entries = |list: &[Map<String, Value>]| -> Result<Vec<Map<String, Value>>, String> {
        list.iter()
            .map(|e| {
                e.iter()
                    .map(|(k, v)| Ok((k.clone(), eval_json(v, eval)?)))
                    .collect()
            })
            .collect()
    };
    expand(&axes, &entries(&m.include)?, &entries(&m.exclude)?)
}

/// `v` with every string holding `${{ }}` replaced by its value (a whole expression keeps
/// its type: `${{ fromJSON('3') }}` is the number 3).
fn eval_json(v: &Value, eval: &dyn Fn(&str) -> Result<Value, String>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if s.contains("${{") => eval(s)?,
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| eval_json(x, eval))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), eval_json(x, eval)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// The legs of a matrix: the product of the axes, minus `exclude`, plus `include`.
pub fn expand(
    axes: &[(String, Vec<Value>)],
    include: &[Map<String, Value>],
    exclude: &[Map<String, Value>],
) -> Result<Vec<Map<String, Value>>, String> {
    struct M<'a> {
        axes: &'a [(String, Vec<Value>)],
        include: &'a [Map<String, Value>],
        exclude: &'a [Map<String, Value>],
    }
    let m = M {
        axes,
        include,
        exclude,
    };
    // Bound the work before doing it: a 7×10 matrix is ten million legs.
    let bound = crate::validate::matrix_leg_bound(&crate::workflow::Matrix {
        axes: axes
            .iter()
            .map(|(k, v)| (crate::spanned::Sp::synthetic(k.clone()), v.clone()))
            .collect(),
        include: include.to_vec(),
        ..Default::default()
    });
    if bound > crate::validate::MAX_MATRIX_LEGS {
        let sizes: Vec<String> = axes.iter().map(|(_, v)| v.len().to_string()).collect();
        return Err(format!(
            "the matrix has up to {bound} legs ({} axes of {} values, {} include); the limit is {}",
            axes.len(),
            sizes.join(" × "),
            include.len(),
            crate::validate::MAX_MATRIX_LEGS
        ));
    }
    let mut legs: Vec<Map<String, Value>> = vec![Map::new()];
    for (k, values) in m.axes {
        let mut next = Vec::with_capacity(legs.len() * values.len());
        for leg in &legs {
            for v in values {
                let mut l = leg.clone();
                l.insert(k.clone(), v.clone());
                next.push(l);
            }
        }
        legs = next;
    }
    if m.axes.is_empty() {
        legs.clear();
    }
    legs.retain(|leg| {
        !m.exclude
            .iter()
            .any(|ex| ex.iter().all(|(k, v)| leg.get(k) == Some(v)))
    });
    let axis_keys: BTreeSet<&str> = m.axes.iter().map(|(k, _)| k.as_str()).collect();
    for inc in m.include {
        // An include entry extends every leg whose original axis values it
        // matches; if it matches none, it becomes a leg of its own.
        let mut matched = false;
        for leg in legs.iter_mut() {
            let agrees = inc
                .iter()
                .filter(|(k, _)| axis_keys.contains(k.as_str()))
                .all(|(k, v)| leg.get(k) == Some(v));
            let has_axis_key = inc.keys().any(|k| axis_keys.contains(k.as_str()));
            if agrees && (has_axis_key || !axis_keys.is_empty()) {
                for (k, v) in inc {
                    if !axis_keys.contains(k.as_str()) {
                        leg.insert(k.clone(), v.clone());
                    }
                }
                matched = true;
            }
        }
        if !matched {
            legs.push(inc.clone());
        }
    }
    if legs.is_empty() {
        return Err("the matrix has no legs left after `exclude`".into());
    }
    if legs.len() > 256 {
        return Err(format!(
            "the matrix expands to {} legs; the limit is 256",
            legs.len()
        ));
    }
    Ok(legs)
}

/// `test (1, linux)`: the job id and the leg's values, as GitHub shows them.
pub fn leg_key(id: &str, matrix: &Map<String, Value>) -> String {
    let vals: Vec<String> = matrix
        .values()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    format!("{id} ({})", vals.join(", "))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_job(
    root: &std::path::Path,
    skip_actions: &[String],
    id: &str,
    key: String,
    job: &Job,
    matrix: Map<String, Value>,
    default_shell: Option<&str>,
    default_wd: Option<&str>,
    runner_image: Option<&str>,
) -> Result<PlannedJob, Diagnostic> {
    let job_shell = job
        .defaults
        .as_ref()
        .and_then(|d| d.run.as_ref())
        .and_then(|r| r.shell.as_ref())
        .map(|s| s.value.as_str())
        .or(default_shell);
    let job_wd = job
        .defaults
        .as_ref()
        .and_then(|d| d.run.as_ref())
        .and_then(|r| r.working_directory.as_ref())
        .map(|s| s.value.as_str())
        .or(default_wd);
    let mut steps: Vec<PlannedStep> = Vec::new();
    for s in &job.steps.value {
        let step = plan_step(
            steps.len(),
            &s.value,
            s.loc.line,
            job_shell,
            job_wd,
            job.container.is_some() || runner_image.is_some(),
        );
        match &step.action {
            Action::Uses { uses, with } if uses == crate::actions::GRADE => {
                let generated = expand_rubric(root, &step, with).map_err(|m| {
                    Diagnostic::plain(m).with_help(format!(
                        "while expanding the `rubric/grade` step of job `{id}`"
                    ))
                })?;
                for mut g in generated {
                    g.index = steps.len();
                    steps.push(g);
                }
            }
            // A local composite action becomes its steps (see `crate::composite`).
            Action::Uses { uses, with } if crate::actions::github::is_local(uses) => {
                let x = crate::composite::Expansion {
                    root,
                    job_shell,
                    job_wd,
                    in_container: job.container.is_some(),
                    skip_actions,
                };
                let generated =
                    crate::composite::expand(&x, &step, uses, with, None, &mut Vec::new())?;
                for mut g in generated {
                    g.index = steps.len();
                    steps.push(g);
                }
            }
            _ => steps.push(step),
        }
    }
    let strategy = job.strategy.as_ref();
    let name = match &job.name {
        Some(n) if matrix.is_empty() || n.value.contains("${{") => n.value.clone(),
        Some(n) => format!("{} {}", n.value, key.trim_start_matches(id).trim()),
        None => key.clone(),
    };
    Ok(PlannedJob {
        key,
        job_id: id.to_string(),
        name,
        needs: Vec::new(),
        needs_ids: job
            .needs
            .as_ref()
            .map(|n| n.value.iter().map(|s| s.value.clone()).collect())
            .unwrap_or_default(),
        matrix,
        condition: job.if_.as_ref().map(|c| c.value.0.clone()),
        env: env_pairs(&job.env),
        // `-P LABEL=IMAGE`: the job runs as if it said `container: IMAGE`.
        container: job.container.as_ref().map(|c| c.value.spec()).or_else(|| {
            runner_image.map(|i| ContainerSpec {
                image: i.to_string(),
                ..Default::default()
            })
        }),
        services: job
            .services
            .iter()
            .map(|(k, v)| (k.value.clone(), v.value.spec()))
            .collect(),
        outputs: job
            .outputs
            .iter()
            .map(|(k, v)| (k.value.clone(), v.value.clone()))
            .collect(),
        timeout: job
            .timeout_minutes
            .as_ref()
            .and_then(|t| crate::duration::from_minutes(t.value).ok()),
        continue_on_error: job.continue_on_error.as_ref().is_some_and(|c| c.value),
        fail_fast: strategy.and_then(|s| s.fail_fast).unwrap_or(true),
        max_parallel: strategy
            .and_then(|s| s.max_parallel.as_ref())
            .map(|m| m.value),
        concurrency: job
            .concurrency
            .as_ref()
            .map(|c| ConcurrencyPlan::of(&c.value)),
        dynamic_matrix: strategy
            .and_then(|s| s.matrix.as_ref())
            .filter(|m| m.value.is_dynamic())
            .map(|m| DynamicMatrix {
                expr: m.value.expr.clone(),
                axes: m
                    .value
                    .axes
                    .iter()
                    .map(|(k, v)| (k.value.clone(), v.clone()))
                    .collect(),
                dynamic: m
                    .value
                    .dynamic
                    .iter()
                    .map(|(k, e)| (k.value.clone(), e.clone()))
                    .collect(),
                include: m.value.include.clone(),
                exclude: m.value.exclude.clone(),
            }),
        fed_by: fed_by_of(job),
        input: None,
        steps,
        notes: Vec::new(),
        runs_on: Vec::new(),
        call: None,
    })
}

/// A `rubric/grade` step becomes generated steps: the rubric's setup, one
/// step per criterion, and a closing step that adds up the score (and
/// carries the original step's id, so `steps.<id>.outputs.score` works).
/// They are first-class steps: in `trun plan`, in the state store, in reports.
fn expand_rubric(
    root: &std::path::Path,
    step: &PlannedStep,
    with: &Map<String, Value>,
) -> Result<Vec<PlannedStep>, String> {
    let rubric_path = with
        .get("rubric")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let repo = with
        .get("repo")
        .and_then(Value::as_str)
        .unwrap_or(".")
        .to_string();
    let path = root.join(rubric_path);
    let rubric = crate::rubric::load_rubric(&path).map_err(|e| e.to_string())?;
    let local = with.get("local").and_then(Value::as_bool).unwrap_or(false);
    let sandbox = match (&rubric.container, local) {
        (Some(_), false) => GradeSandbox::Container,
        (_, true) => GradeSandbox::Local,
        (None, false) => return Err(format!(
            "{rubric_path} names no `container:`; grading on this machine runs student code as your user, \
             with no isolation from your files or other students' (add `local: true` to the step's `with` to accept that, \
             or give the rubric a container)"
        )),
    };
    let rubric_dir = path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let mut out = rubric_steps(
        &std::sync::Arc::new(rubric),
        &rubric_dir,
        &repo,
        sandbox,
        Some(&step.id),
        step.line,
    );
    for s in &mut out {
        s.env = step.env.clone();
    }
    if let Some(score) = out.last_mut() {
        if step.name != step.id && step.name != crate::actions::GRADE {
            score.name = step.name.clone();
        }
        score.continue_on_error = step.continue_on_error;
        score.condition = step.condition.clone();
    }
    Ok(out)
}

/// The steps that grade one repository: the rubric's setup (when it has one), one step per
/// criterion, and a closing `score` step. Ids are `<prefix>-setup`, `<prefix>-<criterion>`
/// and `<prefix>` with a prefix, else `setup`, `<criterion>` and `score`. Shared by the
/// `rubric/grade` step and `trun grade` (see `grade::compile`).
pub fn rubric_steps(
    rubric: &std::sync::Arc<crate::rubric::Rubric>,
    rubric_dir: &std::path::Path,
    repo: &str,
    sandbox: GradeSandbox,
    prefix: Option<&str>,
    line: u32,
) -> Vec<PlannedStep> {
    let id_of = |part: &str| match prefix {
        Some(p) => format!("{p}-{part}"),
        None => part.to_string(),
    };
    let generated = |id: String, name: String, part: GradePart| PlannedStep {
        index: 0,
        id,
        has_id: true,
        name,
        action: Action::Grade {
            rubric: rubric.clone(),
            rubric_dir: rubric_dir.to_path_buf(),
            repo: repo.to_string(),
            part,
            sandbox,
        },
        env: Vec::new(),
        condition: None,
        working_directory: None,
        // A failing criterion is a result, not a reason to stop grading.
        continue_on_error: true,
        timeout: None,
        retry: RetryPolicy::NONE,
        sources: Vec::new(),
        generates: Vec::new(),
        line,
        skip: None,
        frame: None,
    };
    let mut out = Vec::new();
    if rubric.setup.is_some() {
        out.push(generated(id_of("setup"), "setup".into(), GradePart::Setup));
    }
    for c in rubric.run_order().into_iter().map(|i| &rubric.criteria[i]) {
        let title = c.title.clone().unwrap_or_else(|| c.id.clone());
        let pts = if c.points == 1.0 {
            "1 pt".to_string()
        } else {
            format!("{} pts", c.points)
        };
        out.push(generated(
            id_of(&c.id.replace('.', "-")),
            format!("{title} ({pts})"),
            GradePart::Criterion(c.id.clone()),
        ));
    }
    let score_id = prefix.map_or_else(|| "score".to_string(), str::to_string);
    out.push(generated(score_id, "score".into(), GradePart::Score));
    for (i, s) in out.iter_mut().enumerate() {
        s.index = i;
    }
    out
}

pub(crate) fn plan_step(
    index: usize,
    s: &Step,
    line: u32,
    job_shell: Option<&str>,
    job_wd: Option<&str>,
    in_container: bool,
) -> PlannedStep {
    let id =
        s.id.as_ref()
            .map(|i| i.value.clone())
            .unwrap_or_else(|| format!("step-{}", index + 1));
    let action = match (&s.run, &s.uses) {
        (Some(run), _) => {
            // bash like GitHub Actions; `sh` inside containers, where bash
            // is often missing (busybox, alpine).
            // On this host: `bash` when it is on PATH, else `sh`, as on GitHub.
            let default = if in_container {
                "sh"
            } else {
                Shell::host_default()
            };
            let shell_src = s
                .shell
                .as_ref()
                .map(|s| s.value.as_str())
                .or(job_shell)
                .unwrap_or(default);
            Action::Run {
                script: run.value.clone(),
                shell: Shell::parse(shell_src).unwrap_or(Shell::Bash),
                inline_expressions: s.unsafe_inline_expressions,
            }
        }
        (None, Some(u)) => Action::Uses {
            uses: u.value.clone(),
            with: s
                .with
                .iter()
                .map(|(k, v)| (k.value.clone(), v.value.clone()))
                .collect(),
        },
        (None, None) => Action::Run {
            script: String::new(),
            shell: Shell::Sh,
            inline_expressions: false,
        },
    };
    let name = match (&s.name, &action) {
        (Some(n), _) => n.value.clone(),
        (None, _) if s.id.is_some() => id.clone(),
        (None, Action::Run { script, .. }) => {
            let first = script
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim();
            let mut n: String = first.chars().take(60).collect();
            if first.chars().count() > 60 || script.trim().lines().count() > 1 {
                n.push('…');
            }
            n
        }
        (None, Action::Uses { uses, .. }) => uses.clone(),
        (None, Action::Grade { .. }) => id.clone(),
    };
    let retry = s
        .retry
        .as_ref()
        .map(|r| RetryPolicy {
            attempts: r.value.attempts.max(1),
            exponential: r.value.backoff == Backoff::Exponential,
            delay: r
                .value
                .delay
                .as_ref()
                .and_then(|d| crate::duration::parse(&d.value).ok())
                .unwrap_or(Duration::from_secs(1)),
        })
        .unwrap_or(RetryPolicy::NONE);
    let list = |l: &Option<crate::spanned::Sp<crate::spanned::StringList>>| -> Vec<String> {
        l.as_ref()
            .map(|l| l.value.iter().map(|s| s.value.clone()).collect())
            .unwrap_or_default()
    };
    PlannedStep {
        index,
        id,
        has_id: s.id.is_some(),
        name,
        action,
        env: env_pairs(&s.env),
        condition: s.if_.as_ref().map(|c| c.value.0.clone()),
        working_directory: s
            .working_directory
            .as_ref()
            .map(|w| w.value.clone())
            .or(job_wd.map(str::to_string)),
        continue_on_error: s.continue_on_error.as_ref().is_some_and(|c| c.value),
        timeout: s
            .timeout_minutes
            .as_ref()
            .and_then(|t| crate::duration::from_minutes(t.value).ok()),
        retry,
        sources: list(&s.sources),
        generates: list(&s.generates),
        line,
        skip: None,
        frame: None,
    }
}

/// Steps whose action `--skip-action` names are skipped, saying so.
pub(crate) fn mark_skipped_actions(job: &mut PlannedJob, names: &[String]) {
    for step in &mut job.steps {
        if let Action::Uses { uses, .. } = &step.action {
            if let Some(n) = names
                .iter()
                .find(|n| crate::actions::github::skip_matches(n, uses))
            {
                step.skip = Some(format!("--skip-action {n}"));
            }
        }
    }
}

/// Kahn's algorithm, taking ready jobs in file order so the plan reads like the file.
fn topo_order(jobs: Vec<PlannedJob>) -> Vec<PlannedJob> {
    let n = jobs.len();
    let index: BTreeMap<String, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.key.clone(), i))
        .collect();
    let mut indeg = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, j) in jobs.iter().enumerate() {
        // A fed job is listed after the jobs that emit its files.
        for need in j.needs.iter().chain(&j.fed_by) {
            if let Some(&d) = index.get(need) {
                indeg[i] += 1;
                dependents[d].push(i);
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(&i) = ready.iter().next() {
        ready.remove(&i);
        order.push(i);
        for &d in &dependents[i] {
            indeg[d] -= 1;
            if indeg[d] == 0 {
                ready.insert(d);
            }
        }
    }
    let mut slots: Vec<Option<PlannedJob>> = jobs.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}
