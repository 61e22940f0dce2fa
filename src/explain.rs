//! `trun plan` and `trun run --dry-run`: every job in the order it would run,
//! and for each step whether it runs or is skipped, and why. Uses the same
//! fingerprints as a real run (see [`crate::uptodate_hooks`]), so the plan
//! never disagrees with what `trun` then does.

use crate::plan::Plan;
use crate::uptodate::{Decision, RunReason, SkipReason};
use crate::uptodate_hooks::{self, Chain, Force, Link};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Explained {
    pub workflow: String,
    pub jobs: Vec<JobPlan>,
    /// About the workflow's GitHub Actions keys (triggers, permissions, run-name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct JobPlan {
    pub key: String,
    pub name: String,
    pub needs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    pub steps: Vec<StepPlan>,
    /// Where `runs-on` runs, keys accepted but not enforced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// A job `fed-by` emitted files: its instances, as far as known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fan_out: Option<FanOutPlan>,
}

/// The instances of a fed job are decided when its emitters run; the plan
/// lists those of the last run, each as it would be judged if its file came
/// again unchanged.
#[derive(Debug, Serialize)]
pub struct FanOutPlan {
    pub fed_by: Vec<String>,
    pub instances: Vec<InstancePlan>,
}

#[derive(Debug, Serialize)]
pub struct InstancePlan {
    pub key: String,
    pub input: String,
    /// `run` or `skip`.
    pub action: &'static str,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct StepPlan {
    pub id: String,
    pub name: String,
    /// `run` or `skip`.
    pub action: &'static str,
    pub reason: String,
    /// Machine-readable reason: the decision as data.
    pub decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// `db`: the shared database (`--db postgres://…`) that `trun run --db` records in,
/// so the plan judges steps against the same successes the run will.
pub fn explain(plan: &Plan, force: &[String], db: Option<&str>) -> Result<Explained, String> {
    let force = Force::new(force);
    force.check(plan)?;
    // The workspace's own file keeps the stat cache; the runs, successes and
    // actions' memory are in the shared database when there is one.
    let local = std::sync::Arc::new(
        crate::state::SqliteStore::open(&crate::state::db_path(&plan.root))
            .map_err(|e| e.to_string())?,
    );
    let store: std::sync::Arc<dyn crate::state::Store> = match db {
        Some(url) => {
            std::sync::Arc::from(crate::state::open_store(url).map_err(|e| e.to_string())?)
        }
        None => local.clone(),
    };
    let ut = uptodate_hooks::open_prepared(plan, store.clone(), local)?;
    let mut chain = Chain::default();
    // Paths an upstream step will restore from the cache, with the content
    // they will have: dependents are judged on the tree as the run will see it.
    let mut restored: std::collections::BTreeMap<String, [u8; 32]> = Default::default();
    // Built-in actions that know they have nothing to do say why themselves.
    let mut skip_reasons: std::collections::BTreeMap<(String, String), String> = Default::default();
    let actions = ActionProbe::new(plan, store.clone());
    let mut jobs = Vec::new();
    for job in &plan.jobs {
        if !job.fed_by.is_empty() {
            jobs.push(JobPlan {
                key: job.key.clone(),
                name: job.name.clone(),
                needs: job.needs.clone(),
                condition: job.condition.clone(),
                container: job.container.as_ref().map(|c| c.image.clone()),
                steps: Vec::new(),
                notes: job.notes.clone(),
                fan_out: Some(fan_out_plan(plan, &ut, store.as_ref(), job, &force)?),
            });
            continue;
        }
        let mut steps = Vec::new();
        for step in &job.steps {
            let spec = uptodate_hooks::spec(plan, job, step, &chain);
            // Upstream steps that will run first: their output is not known
            // until they have, so `spec.upstream` assumes it comes out as last
            // time and a step that is up to date on that assumption runs only
            // if it does not.
            let will_run = chain.upstream_ran(plan, job, step);
            let forced = force.forces(job, step);
            let decision = if step.sources.is_empty() {
                chain.insert(
                    spec.key.clone(),
                    Link {
                        digest: uptodate_hooks::sourceless_fingerprint(&spec),
                        ran: will_run,
                    },
                );
                if forced {
                    Decision::Run(RunReason::Forced)
                } else if let Some(why) = actions.would_skip(job, step) {
                    skip_reasons.insert((job.key.clone(), step.id.clone()), why);
                    Decision::Skip(SkipReason::UpToDate)
                } else {
                    Decision::Run(RunReason::NoSources)
                }
            } else {
                let check = ut.check(&spec, forced).map_err(|e| e.to_string())?;
                let produced = check.produced.clone();
                let (fp, decision) = predict(&ut, &spec, check, &mut restored)?;
                let err = |e: crate::uptodate::UpToDateError| e.to_string();
                // What it hands on: for a restore, what the restore writes;
                // otherwise (up to date, or about to run) what it wrote last.
                let generates = match &decision {
                    Decision::Skip(SkipReason::RestoredFromCache { .. }) => {
                        let mut g = ut
                            .restorable_outputs(&spec.key, &fp)
                            .map_err(err)?
                            .unwrap_or_default();
                        g.sort();
                        g
                    }
                    _ => match &produced {
                        Some(p) => p.clone(),
                        None => ut.latest_outputs(&spec.key).map_err(err)?,
                    },
                };
                let outputs_fp = match &decision {
                    Decision::Skip(_) => Some(fp),
                    _ => ut.latest_fingerprint(&spec.key).map_err(err)?,
                };
                let outputs = outputs_fp
                    .map(|f| uptodate_hooks::recorded_outputs(store.as_ref(), &spec.key, &f))
                    .unwrap_or_default();
                let digest = uptodate_hooks::produced_digest(&generates, &outputs, &spec.upstream);
                let (decision, ran) = match decision {
                    Decision::Skip(_) if !will_run.is_empty() => (
                        Decision::Run(RunReason::UpstreamWillRun {
                            steps: uptodate_hooks::step_names(job, &will_run),
                        }),
                        will_run,
                    ),
                    Decision::Skip(s) => (Decision::Skip(s), will_run),
                    run => {
                        let mut ran = will_run;
                        ran.push((job.key.clone(), step.id.clone()));
                        ran.sort();
                        ran.dedup();
                        (run, ran)
                    }
                };
                chain.insert(spec.key.clone(), Link { digest, ran });
                decision
            };
            let reason = match &decision {
                _ if skip_reasons.contains_key(&(job.key.clone(), step.id.clone())) => {
                    skip_reasons[&(job.key.clone(), step.id.clone())].clone()
                }
                Decision::Skip(SkipReason::RestoredFromCache { .. }) => {
                    "restore from cache".to_string()
                }
                d => d.to_string(),
            };
            steps.push(StepPlan {
                id: step.id.clone(),
                name: step.name.clone(),
                action: if decision.is_run() { "run" } else { "skip" },
                reason,
                decision,
                condition: step.condition.clone(),
            });
        }
        jobs.push(JobPlan {
            key: job.key.clone(),
            name: job.name.clone(),
            needs: job.needs.clone(),
            condition: job.condition.clone(),
            container: job.container.as_ref().map(|c| c.image.clone()),
            steps,
            fan_out: None,
            notes: job.notes.clone(),
        });
    }
    Ok(Explained {
        workflow: plan.workflow.clone(),
        jobs,
        notes: plan.notes.clone(),
    })
}

/// The instances a fed job had in its last run, each judged as it would be
/// if its file were emitted again unchanged.
fn fan_out_plan(
    plan: &Plan,
    ut: &crate::uptodate::UpToDate,
    store: &dyn crate::state::Store,
    job: &crate::plan::PlannedJob,
    force: &Force,
) -> Result<FanOutPlan, String> {
    let cas = crate::uptodate::cas::Cas::new(&plan.root.join(".trun").join("cas"));
    let forced = job.steps.iter().any(|s| force.forces(job, s));
    let mut instances = Vec::new();
    for (name, sha) in uptodate_hooks::last_inputs(store, &job.job_id) {
        let key = crate::fanout::instance_key(&job.job_id, &name);
        let hash: [u8; 32] = hex::decode(&sha)
            .ok()
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 32]);
        let mut inst = job.clone();
        inst.key = key.clone();
        inst.fed_by = Vec::new();
        inst.input = Some(crate::fanout::Input {
            name: name.clone(),
            sha256: sha,
            // Not known here, and not part of what decides.
            size: 0,
            path: cas.object_path(&hash),
        });
        let check = uptodate_hooks::instance_check(plan, ut, store, None, &inst, forced)?;
        let (action, reason) = match check.up_to_date {
            Some(_) => (
                "skip",
                format!(
                    "up to date if {} emits it unchanged",
                    job.fed_by.join(" or ")
                ),
            ),
            None => ("run", check.reason),
        };
        instances.push(InstancePlan {
            key,
            input: name,
            action,
            reason,
        });
    }
    Ok(FanOutPlan {
        fed_by: job.fed_by.clone(),
        instances,
    })
}

/// The decision a run will make for a step with `sources`, given the files
/// upstream steps will restore first, and the fingerprint it will have.
fn predict(
    ut: &crate::uptodate::UpToDate,
    spec: &crate::uptodate::StepSpec,
    check: crate::uptodate::Check,
    restored: &mut std::collections::BTreeMap<String, [u8; 32]>,
) -> Result<(crate::uptodate::Fingerprint, Decision), String> {
    let err = |e: crate::uptodate::UpToDateError| e.to_string();
    if matches!(check.decision, Decision::Skip(_))
        || matches!(
            check.decision,
            Decision::Run(
                RunReason::Forced | RunReason::NeverRan | RunReason::DefinitionChanged { .. }
            )
        )
    {
        return Ok((check.fingerprint, check.decision));
    }
    // The tree after upstream restores: matched files replaced by what the
    // restore writes, and removed ones that come back.
    let mut files = check.files.clone();
    for (path, hash) in files.iter_mut() {
        if let Some(h) = restored.get(path) {
            *hash = *h;
        }
    }
    if let Decision::Run(RunReason::SourcesChanged { changed }) = &check.decision {
        for c in changed {
            if let Some(h) = restored.get(c) {
                if !files.iter().any(|(p, _)| p == c) {
                    files.push((c.clone(), *h));
                }
            }
        }
        files.sort();
    }
    let fp = crate::uptodate::fingerprint::compute(
        &crate::uptodate::fingerprint::definition_hash(&spec.definition),
        &files,
        &spec.upstream,
    );
    let generates_damaged = matches!(
        check.decision,
        Decision::Run(RunReason::GeneratesMissing(_) | RunReason::GeneratesModified(_))
    );
    if ut.latest_fingerprint(&spec.key).map_err(err)? == Some(fp) && !generates_damaged {
        return Ok((fp, Decision::Skip(SkipReason::UpToDate)));
    }
    if let Some(outputs) = ut.restorable_outputs(&spec.key, &fp).map_err(err)? {
        let n = outputs.len();
        restored.extend(outputs);
        return Ok((
            fp,
            Decision::Skip(SkipReason::RestoredFromCache { files: n }),
        ));
    }
    Ok((fp, check.decision))
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

pub fn render(e: &Explained, color: bool) -> String {
    let (green, dim, bold, reset) = if color {
        ("\x1b[32m", "\x1b[2m", "\x1b[1m", "\x1b[0m")
    } else {
        ("", "", "", "")
    };
    let nsteps: usize = e.jobs.iter().map(|j| j.steps.len()).sum();
    let nrun: usize = e
        .jobs
        .iter()
        .flat_map(|j| &j.steps)
        .filter(|s| s.action == "run")
        .count();
    // Steps that run only if an upstream step's output changes are counted
    // apart: the plan cannot know before the upstream has run.
    let nmaybe = e
        .jobs
        .iter()
        .flat_map(|j| &j.steps)
        .filter(|s| matches!(s.decision, Decision::Run(RunReason::UpstreamWillRun { .. })))
        .count();
    let maybe = if nmaybe > 0 {
        format!(", {nmaybe} if an upstream output changes")
    } else {
        String::new()
    };
    let mut out = format!(
        "plan for {}: {} job{}, {} step{} ({} to run{maybe}, {} up to date)\n",
        e.workflow,
        e.jobs.len(),
        if e.jobs.len() == 1 { "" } else { "s" },
        nsteps,
        if nsteps == 1 { "" } else { "s" },
        nrun - nmaybe,
        nsteps - nrun
    );
    // Instances of fed jobs known from the last run, counted apart: whether
    // they come again is decided when their emitters run.
    let instances: Vec<&InstancePlan> = e
        .jobs
        .iter()
        .filter_map(|j| j.fan_out.as_ref())
        .flat_map(|f| &f.instances)
        .collect();
    if !instances.is_empty() {
        let n = instances.len();
        let run = instances.iter().filter(|i| i.action == "run").count();
        out.insert_str(
            out.len() - 1,
            &format!(
                "; {n} instance{} known from the last run ({run} to run if emitted again)",
                if n == 1 { "" } else { "s" }
            ),
        );
    }
    for n in &e.notes {
        out.push_str(&format!("{dim}{n}{reset}\n"));
    }
    let width = e
        .jobs
        .iter()
        .flat_map(|j| &j.steps)
        .map(|s| s.id.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    for (i, j) in e.jobs.iter().enumerate() {
        out.push('\n');
        let mut head = format!("{bold}{}. {}{reset}", i + 1, j.key);
        if j.name != j.key {
            head.push_str(&format!(" ({})", j.name));
        }
        if !j.needs.is_empty() {
            head.push_str(&format!("{dim}  needs: {}{reset}", j.needs.join(", ")));
        }
        if let Some(c) = &j.container {
            head.push_str(&format!("{dim}  container: {c}{reset}"));
        }
        if let Some(c) = &j.condition {
            head.push_str(&format!("{dim}  if: {c}{reset}"));
        }
        out.push_str(&head);
        out.push('\n');
        if let Some(f) = &j.fan_out {
            let by = match f.fed_by.as_slice() {
                [one] => format!("{one} emits"),
                many => format!("{} emit", and_list(many)),
            };
            let known = if f.instances.is_empty() {
                "; none known yet"
            } else {
                "; from the last run:"
            };
            out.push_str(&format!(
                "   {dim}instances of {} are decided when {by}{known}{reset}\n",
                j.key
            ));
            let kw = f
                .instances
                .iter()
                .map(|i| i.key.chars().count())
                .max()
                .unwrap_or(0);
            for i in &f.instances {
                let (mark, col) = if i.action == "run" {
                    ("run ", green)
                } else {
                    ("skip", dim)
                };
                out.push_str(&format!(
                    "   {col}{mark}{reset}  {:kw$}  {}\n",
                    i.key, i.reason
                ));
            }
        }
        for n in &j.notes {
            out.push_str(&format!("   {dim}{n}{reset}\n"));
        }
        for s in &j.steps {
            let (mark, col) = if s.action == "run" {
                ("run ", green)
            } else {
                ("skip", dim)
            };
            let mut line = format!("   {col}{mark}{reset}  {:width$}  {}", s.id, s.reason);
            if s.name != s.id {
                line.push_str(&format!("{dim}  — {}{reset}", s.name));
            }
            if let Some(c) = &s.condition {
                line.push_str(&format!("{dim}  (if: {c}){reset}"));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// Asks the built-in actions whether they would skip (a pull within its
/// `min-interval`, a build whose watched files are unchanged), with the same
/// memory a run uses. Only for `with` values that need no run-time context.
struct ActionProbe {
    runtime: Option<tokio::runtime::Runtime>,
    docker: Option<crate::docker::Docker>,
    memory: Option<crate::exec::actions::StoreMemory>,
    root: std::path::PathBuf,
}

impl ActionProbe {
    fn new(plan: &Plan, store: std::sync::Arc<dyn crate::state::Store>) -> ActionProbe {
        let has_actions = plan.jobs.iter().any(|j| {
            j.steps
                .iter()
                .any(|s| matches!(s.action, crate::plan::Action::Uses { .. }))
        });
        let runtime = if has_actions {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()
        } else {
            None
        };
        let docker = match (&runtime, plan.needs_docker()) {
            (Some(rt), true) => rt.block_on(crate::docker::Docker::connect()).ok(),
            _ => None,
        };
        let memory = has_actions.then(|| crate::exec::actions::StoreMemory(store));
        ActionProbe {
            runtime,
            docker,
            memory,
            root: plan.root.clone(),
        }
    }

    fn would_skip(
        &self,
        job: &crate::plan::PlannedJob,
        step: &crate::plan::PlannedStep,
    ) -> Option<String> {
        if let Some(why) = &step.skip {
            return Some(why.clone());
        }
        let crate::plan::Action::Uses { uses, with } = &step.action else {
            return None;
        };
        let (rt, memory) = (self.runtime.as_ref()?, self.memory.as_ref()?);
        if crate::validate::json_strings(&serde_json::Value::Object(with.clone()))
            .iter()
            .any(|s| s.contains("${{"))
        {
            return None;
        }
        let ctx = crate::docker::actions::ActionCtx {
            run_id: 0,
            job: job.key.clone(),
            step_key: format!("{}/{}", job.key, step.id),
            workspace: self.root.clone(),
            docker: self.docker.as_ref(),
            memory,
        };
        rt.block_on(crate::docker::actions::plan_skip(uses, with, &ctx))
    }
}
