//! The bridge between the engine and the up-to-date engine: for each step,
//! build its [`StepSpec`] (definition, sources, generates, and digests of
//! what its upstream steps produced) the same way at plan time and at run
//! time, ask whether it must run, restore cached outputs, and record
//! successes. The [`Chain`] of digests is where early cutoff happens: a step
//! sees its upstream's `generates` content and outputs, never whether the
//! upstream ran, so an upstream re-run that wrote the same bytes leaves it up
//! to date.
//!
//! The definition hashed is the step as written (templates unrendered) plus
//! the values that are fixed before the run starts (inputs, matrix), so
//! `trun plan` computes exactly the fingerprint the run will.

use crate::exec::job::StepHooks;
use crate::fanout::{Emitted, InstanceCheck};
use crate::plan::{Action, Plan, PlannedJob, PlannedStep};
use crate::state::{SqliteStore, StatCache, Store};
use crate::uptodate::{Decision, Fingerprint, RunReason, StepSpec, UpToDate};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// Which steps the user forced: all (`--force`), or named jobs/steps.
#[derive(Debug, Clone, Default)]
pub struct Force {
    all: bool,
    names: Vec<String>,
}

impl Force {
    pub fn new(args: &[String]) -> Force {
        Force {
            all: args.iter().any(|a| a.is_empty()),
            names: args.iter().filter(|a| !a.is_empty()).cloned().collect(),
        }
    }

    pub fn forces(&self, job: &PlannedJob, step: &PlannedStep) -> bool {
        self.all
            || self.names.iter().any(|n| {
                *n == job.job_id
                    || *n == job.key
                    || *n == step.id
                    || *n == format!("{}.{}", job.job_id, step.id)
                    || *n == format!("{}.{}", job.key, step.id)
            })
    }

    /// Names that match no job or step are a usage error, not a silent no-op.
    pub fn check(&self, plan: &Plan) -> Result<(), String> {
        for n in &self.names {
            let hit = plan.jobs.iter().any(|j| {
                j.steps.iter().any(|s| {
                    Force {
                        all: false,
                        names: vec![n.clone()],
                    }
                    .forces(j, s)
                })
            });
            if !hit {
                let mut cands: Vec<String> = Vec::new();
                for j in &plan.jobs {
                    cands.push(j.job_id.clone());
                    for s in &j.steps {
                        cands.push(format!("{}.{}", j.job_id, s.id));
                        if s.has_id {
                            cands.push(s.id.clone());
                        }
                    }
                }
                let hint = crate::diag::did_you_mean_suffix(n, cands.iter().map(String::as_str));
                return Err(format!(
                    "--force {n}: no such job or step in the plan{hint}"
                ));
            }
        }
        Ok(())
    }
}

/// The step's key in the up-to-date store: `<job key>/<step id>`.
pub fn step_key(job: &PlannedJob, step: &PlannedStep) -> String {
    format!("{}/{}", job.key, step.id)
}

/// The definition a fingerprint hashes.
pub fn definition(plan: &Plan, job: &PlannedJob, step: &PlannedStep) -> Value {
    let action = match &step.action {
        Action::Run {
            script,
            shell,
            inline_expressions,
        } => json!({
            "run": script, "shell": shell.name(), "inline": inline_expressions,
        }),
        Action::Uses { uses, with } => json!({ "uses": uses, "with": with }),
        Action::Grade {
            rubric,
            repo,
            part,
            sandbox,
            ..
        } => {
            json!({ "rubric": **rubric, "repo": repo, "part": part, "sandbox": sandbox })
        }
    };
    let mut def = json!({
        "action": action,
        "env": { "workflow": plan.env, "job": job.env, "step": step.env },
        "working-directory": step.working_directory,
        "image": job.container.as_ref().map(|c| c.image.clone()),
        "matrix": job.matrix,
        "inputs": plan.inputs,
        "sources": step.sources,
        "generates": step.generates,
    });
    // A step that reads `secrets` re-runs when a value changes; the
    // definition holds a digest of the values, never one in clear.
    if !plan.secrets.is_empty() && def.to_string().to_ascii_lowercase().contains("secrets") {
        def["secrets"] = Value::String(plan.secrets.digest());
    }
    def
}

/// A step as its dependents see it: a digest of what it produced (the
/// content of its `generates` and its outputs, chained over its own
/// upstream), and the upstream steps behind that digest that ran in this
/// invocation (at run time) or will run (at plan time), as (job key, step id).
#[derive(Debug, Clone)]
pub struct Link {
    pub digest: Fingerprint,
    pub ran: Vec<(String, String)>,
}

/// The links computed so far in this invocation, so each step can name its
/// upstream: the previous step of its job, or the last step of every job it
/// needs. Chaining digests of content rather than fingerprints is what gives
/// early cutoff: a step that re-ran and wrote the same bytes hands on the
/// same digest.
#[derive(Default)]
pub struct Chain {
    links: HashMap<String, Link>,
    /// The plan's jobs by key, built on first use: a step's needs are looked
    /// up for every step, and a scan of the plan per lookup made a run of a
    /// thousand jobs quadratic.
    jobs: OnceLock<HashMap<String, usize>>,
}

/// The steps a step is chained to: the previous step of its job, or the
/// last step of every job it needs (found with `job_of`).
fn upstream_steps<'p>(
    job: &'p PlannedJob,
    step: &PlannedStep,
    job_of: impl Fn(&str) -> Option<&'p PlannedJob> + 'p,
) -> impl Iterator<Item = (&'p PlannedJob, &'p PlannedStep)> + 'p {
    let (prev, needs) = match step.index {
        0 => (None, job.needs.as_slice()),
        i => (Some((job, &job.steps[i - 1])), &[][..]),
    };
    prev.into_iter().chain(
        needs
            .iter()
            .filter_map(move |n| job_of(n))
            .filter_map(|j| j.steps.last().map(|s| (j, s))),
    )
}

/// The steps without `sources` whose digest a later step reads: a step with
/// `sources` reads its upstream's digests (its fingerprint holds them), and
/// so does a step whose own digest is read. The digest of any other step
/// without `sources` reaches nothing, so it is not computed (hashing a
/// step's definition was a tenth of trun's own time per trivial step).
fn digests_read(plan: &Plan, jobs: &HashMap<String, usize>) -> HashSet<String> {
    let job_of = |n: &str| jobs.get(n).and_then(|&i| plan.jobs.get(i));
    let mut read = HashSet::new();
    let mut todo: Vec<(&PlannedJob, &PlannedStep)> = plan
        .jobs
        .iter()
        .flat_map(|j| j.steps.iter().map(move |s| (j, s)))
        .filter(|(_, s)| !s.sources.is_empty())
        .collect();
    while let Some((job, step)) = todo.pop() {
        for (j, s) in upstream_steps(job, step, job_of) {
            if read.insert(step_key(j, s)) && s.sources.is_empty() {
                todo.push((j, s));
            }
        }
    }
    read
}

/// The plan's jobs by key (position in `plan.jobs`).
fn job_index(plan: &Plan) -> HashMap<String, usize> {
    plan.jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.key.clone(), i))
        .collect()
}

impl Chain {
    fn job<'p>(&self, plan: &'p Plan, key: &str) -> Option<&'p PlannedJob> {
        let i = *self.jobs.get_or_init(|| job_index(plan)).get(key)?;
        plan.jobs.get(i).filter(|j| j.key == key)
    }

    fn upstream_links<'a>(
        &'a self,
        plan: &Plan,
        job: &PlannedJob,
        step: &PlannedStep,
    ) -> Vec<Option<&'a Link>> {
        upstream_steps(job, step, |n| self.job(plan, n))
            .map(|(j, s)| self.links.get(&step_key(j, s)))
            .collect()
    }

    /// The digests of the step's upstream steps (zero for one that did not run).
    pub fn upstream(&self, plan: &Plan, job: &PlannedJob, step: &PlannedStep) -> Vec<Fingerprint> {
        self.upstream_links(plan, job, step)
            .into_iter()
            .map(|l| l.map(|l| l.digest).unwrap_or(Fingerprint([0; 32])))
            .collect()
    }

    /// The upstream steps that ran (or will run) behind this step, sorted.
    pub fn upstream_ran(
        &self,
        plan: &Plan,
        job: &PlannedJob,
        step: &PlannedStep,
    ) -> Vec<(String, String)> {
        let mut ran: Vec<(String, String)> = self
            .upstream_links(plan, job, step)
            .into_iter()
            .flatten()
            .flat_map(|l| l.ran.iter().cloned())
            .collect();
        ran.sort();
        ran.dedup();
        ran
    }

    pub fn insert(&mut self, key: String, link: Link) {
        self.links.insert(key, link);
    }
}

/// What a step hands on to its dependents: its `generates` content and its
/// outputs, over its upstream digests.
pub fn produced_digest(
    generates: &[(String, crate::uptodate::ContentHash)],
    outputs: &BTreeMap<String, String>,
    upstream: &[Fingerprint],
) -> Fingerprint {
    crate::uptodate::fingerprint::compute(
        &crate::uptodate::fingerprint::definition_hash(&json!({ "outputs": outputs })),
        generates,
        upstream,
    )
}

/// Upstream steps named as a reader of `viewer`'s plan sees them: the step id
/// within its own job, `job.step` across jobs.
pub fn step_names(viewer: &PlannedJob, steps: &[(String, String)]) -> Vec<String> {
    steps
        .iter()
        .map(|(j, s)| {
            if *j == viewer.key {
                s.clone()
            } else {
                format!("{j}.{s}")
            }
        })
        .collect()
}

/// `a`, `a and b`, `a, b and c`, `a, b, c and 2 more`.
fn and_list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        _ if names.len() <= 3 => format!(
            "{} and {}",
            names[..names.len() - 1].join(", "),
            names[names.len() - 1]
        ),
        _ => format!("{} and {} more", names[..3].join(", "), names.len() - 3),
    }
}

/// The skip reason of a step cut off early: `up to date: inputs unchanged
/// after lib re-ran`.
pub fn cutoff_reason(viewer: &PlannedJob, ran: &[(String, String)]) -> String {
    format!(
        "up to date: inputs unchanged after {} re-ran",
        and_list(&step_names(viewer, ran))
    )
}

pub fn spec(plan: &Plan, job: &PlannedJob, step: &PlannedStep, chain: &Chain) -> StepSpec {
    StepSpec {
        key: step_key(job, step),
        definition: definition(plan, job, step),
        sources: step.sources.clone(),
        generates: step.generates.clone(),
        base: plan.root.clone(),
        upstream: chain.upstream(plan, job, step),
    }
}

/// The digest a step without `sources` hands on: its definition and upstream
/// only. Such a step always runs, so nothing is looked up or recorded; the
/// digest exists so its dependents' fingerprints are stable.
pub fn sourceless_fingerprint(spec: &StepSpec) -> Fingerprint {
    crate::uptodate::fingerprint::compute(
        &crate::uptodate::fingerprint::definition_hash(&spec.definition),
        &[],
        &spec.upstream,
    )
}

/// The outputs (`$TRUN_OUTPUT`) a step wrote in its success with this fingerprint.
pub fn recorded_outputs(
    store: &dyn Store,
    key: &str,
    fingerprint: &Fingerprint,
) -> BTreeMap<String, String> {
    store
        .kv_get(STEP_OUTPUTS, &step_outputs_key(key, fingerprint))
        .ok()
        .flatten()
        .map(|json| outputs_of(&json))
        .unwrap_or_default()
}

/// Remembers the outputs a step's success with `fingerprint` handed on, for
/// [`recorded_outputs`]. A cache: a failure only makes the step run again.
pub fn remember_outputs(
    store: &dyn Store,
    key: &str,
    fingerprint: &Fingerprint,
    outputs: &BTreeMap<String, String>,
) {
    let _ = store.kv_set(
        STEP_OUTPUTS,
        &step_outputs_key(key, fingerprint),
        &serde_json::to_string(outputs).unwrap_or_default(),
    );
}

/// Where [`STEP_OUTPUTS`] keeps the outputs of step `key`'s success with `fingerprint`.
fn step_outputs_key(key: &str, fingerprint: &Fingerprint) -> String {
    format!("{key}@{fingerprint}")
}

/// Outputs as [`remember_outputs`] stored them; none if the text is not that.
fn outputs_of(json: &str) -> BTreeMap<String, String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// The up-to-date engine of the workspace at `root` over the given store and
/// stat cache (the process's one store, usually, for both).
pub fn up_to_date(root: &Path, store: Arc<dyn Store>, stats: Arc<dyn StatCache>) -> UpToDate {
    UpToDate::new(store, stats, &root.join(".trun").join("cas"))
}

/// [`up_to_date`] over the workspace's SQLite store, opened here (`trun cache`).
pub fn open_store(root: &Path) -> Result<UpToDate, String> {
    let store =
        Arc::new(SqliteStore::open(&crate::state::db_path(root)).map_err(|e| e.to_string())?);
    Ok(up_to_date(root, store.clone(), store))
}

/// The up-to-date engine with every source root of the plan already walked,
/// once and on all cores, so the checks that follow read no directory again.
pub fn open_prepared(
    plan: &Plan,
    store: Arc<dyn Store>,
    stats: Arc<dyn StatCache>,
) -> Result<UpToDate, String> {
    let ut = up_to_date(&plan.root, store, stats);
    let chain = Chain::default();
    let specs: Vec<StepSpec> = plan
        .jobs
        .iter()
        .flat_map(|j| {
            j.steps
                .iter()
                .filter(|s| !s.sources.is_empty())
                .map(move |s| (j, s))
        })
        .map(|(j, s)| spec(plan, j, s, &chain))
        .collect();
    let specs: Vec<&StepSpec> = specs.iter().collect();
    ut.prepare(&specs).map_err(|e| e.to_string())?;
    ut.prefetch(&specs).map_err(|e| e.to_string())?;
    Ok(ut)
}

/// The engine's hooks: decide, restore, record.
pub struct Hooks {
    plan: Arc<Plan>,
    ut: UpToDate,
    run_id: i64,
    force: Force,
    inner: Mutex<Inner>,
    /// Where step outputs are remembered by fingerprint, and definition
    /// versions written.
    store: Arc<dyn Store>,
    /// (job, step index, definition version), written by [`Hooks::flush`].
    versions: Mutex<Vec<(String, usize, u32)>>,
    /// `--remote-cache`, and what it hands the engine (see [`Remote`]).
    remote: Remote,
    /// The workflow has a job `fed-by` others: steps may have emitted files
    /// to send on again when they are up to date.
    fans_out: bool,
    /// The plan's jobs by key: every step looks its job up twice.
    jobs: HashMap<String, usize>,
    /// The steps without `sources` whose digest is read ([`digests_read`]).
    digests_read: HashSet<String>,
    /// The outputs each step's last success handed on (`key@fingerprint` ->
    /// JSON), read when the run opened; each is taken by the first look.
    outputs_ahead: Mutex<HashMap<String, String>>,
}

#[derive(Default)]
struct Inner {
    chain: Chain,
    pending: HashMap<String, (StepSpec, crate::uptodate::Check)>,
    /// Files skipped steps emitted when they last ran, to send on again.
    replay: HashMap<String, Vec<Emitted>>,
}

/// Fan-out: the instance `job` (a fed job with `input` set) is up to date
/// when its fingerprint — the job's definition (every step's, as for a step),
/// the content of its steps' `sources`, and the input's name and content —
/// equals the one of its last success, its literal `generates` exist, and
/// the files it emitted then are still in the store. Shared by the run and
/// `trun plan`.
pub fn instance_check(
    plan: &Plan,
    ut: &UpToDate,
    store: &dyn Store,
    remote: Option<&crate::cache::RemoteCache>,
    job: &PlannedJob,
    forced: bool,
) -> Result<InstanceCheck, String> {
    let input = job.input.as_ref().ok_or("not an instance")?;
    let steps: Vec<Value> = job.steps.iter().map(|s| definition(plan, job, s)).collect();
    let def = json!({ "steps": steps, "outputs": job.outputs });
    let def_hash = hex::encode(crate::uptodate::fingerprint::definition_hash(&def));
    let mut sources: Vec<String> = job.steps.iter().flat_map(|s| s.sources.clone()).collect();
    sources.dedup();
    let spec = StepSpec {
        key: format!("{}#instance", job.key),
        definition: json!({ "job": def, "input": { "name": input.name, "sha256": input.sha256 } }),
        sources,
        generates: Vec::new(),
        base: plan.root.clone(),
        upstream: Vec::new(),
    };
    let fingerprint = ut
        .check(&spec, false)
        .map_err(|e| e.to_string())?
        .fingerprint
        .to_hex();
    let memo: Option<InstanceMemo> = store
        .kv_get(INSTANCES, &job.key)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok());
    let files = memo.as_ref().and_then(|m| m.files.clone());
    let cas = crate::uptodate::cas::Cas::new(&plan.root.join(".trun").join("cas"));
    let in_store = |e: &Emitted| {
        hex::decode(&e.sha256)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .is_some_and(|h| cas.contains(&h))
    };
    let generates_missing = job.steps.iter().flat_map(|s| &s.generates).any(|g| {
        let rel = crate::uptodate::walk::normalize(g);
        let literal =
            !(g.starts_with('!') || g.contains("${{") || rel.contains(['*', '?', '[', '{']));
        literal && !plan.root.join(&rel).exists()
    });
    // An instance that ran on a worker left its files in the remote cache,
    // not here: they are looked for there.
    let in_remote = |m: &InstanceMemo| -> Result<bool, String> {
        let Some(cache) = remote else {
            return Ok(false);
        };
        let mut digests = Vec::new();
        if let Some(f) = &m.files {
            digests.push(crate::worker::snapshot::parse_digest(f)?);
        }
        for e in &m.emitted {
            digests.push(e.digest()?);
        }
        for d in &digests {
            if !cache.client().has_blob(d).map_err(|e| e.to_string())? {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let (up_to_date, reason) = match memo {
        _ if forced => (None, "forced".to_string()),
        None => (None, "new input".to_string()),
        Some(m) if m.fingerprint == fingerprint && m.worker => {
            if in_remote(&m).unwrap_or(false) {
                (Some(m.emitted), "up to date".to_string())
            } else if remote.is_none() {
                (
                    None,
                    "it ran on a trun worker, and what it wrote is not here".to_string(),
                )
            } else {
                (
                    None,
                    "what it wrote is no longer in the remote cache".to_string(),
                )
            }
        }
        Some(m) if m.fingerprint == fingerprint => {
            if generates_missing {
                (None, "a `generates` path is missing".to_string())
            } else if !m.emitted.iter().all(in_store) {
                (
                    None,
                    "what it emitted is no longer in the store".to_string(),
                )
            } else {
                (Some(m.emitted), "up to date".to_string())
            }
        }
        Some(m) if m.definition != def_hash => (None, "definition changed (tainted)".to_string()),
        Some(m) if m.sha256 != input.sha256 => (None, "input changed".to_string()),
        Some(_) => (None, "sources changed".to_string()),
    };
    Ok(InstanceCheck {
        fingerprint,
        definition: def_hash,
        files: up_to_date.as_ref().and(files),
        up_to_date,
        reason,
    })
}

/// Key-value namespaces: an instance's last success, the inputs of a fed
/// job's last run (for `trun plan`), a step's emitted files by fingerprint.
const INSTANCES: &str = "fan-out";
pub const FED_INPUTS: &str = "fan-out-inputs";
const STEP_EMITS: &str = "step-emits";
/// Where a step's outputs (`$TRUN_OUTPUT`) are kept, by `key@fingerprint`.
const STEP_OUTPUTS: &str = "step-outputs";

#[derive(serde::Serialize, serde::Deserialize)]
struct InstanceMemo {
    fingerprint: String,
    definition: String,
    sha256: String,
    emitted: Vec<Emitted>,
    /// It ran on a `trun worker`: what it emitted, and the files it wrote
    /// (`files`, a manifest), are in the remote cache.
    #[serde(default)]
    worker: bool,
    #[serde(default)]
    files: Option<String>,
}

/// The inputs (name, sha256) a fed job's instances had in its last run.
pub fn last_inputs(store: &dyn Store, job_id: &str) -> Vec<(String, String)> {
    store
        .kv_get(FED_INPUTS, job_id)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

impl Hooks {
    /// The hooks of one run, over the process's store and stat cache.
    pub fn open(
        plan: Arc<Plan>,
        store: Arc<dyn Store>,
        stats: Arc<dyn StatCache>,
        run_id: i64,
        force: &[String],
    ) -> Result<Hooks, String> {
        let force = Force::new(force);
        force.check(&plan)?;
        let ut = open_prepared(&plan, store.clone(), stats)?;
        // What the up-to-date steps will hand on, in one read with the rest.
        let keys: Vec<String> = ut
            .prefetched_fingerprints()
            .into_iter()
            .map(|(key, fp)| step_outputs_key(&key, &fp))
            .collect();
        let outputs_ahead = match store.kv_get_many(STEP_OUTPUTS, &keys) {
            Ok(values) => keys
                .into_iter()
                .zip(values)
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
            // Only a head start: each step asks the store itself.
            Err(_) => HashMap::new(),
        };
        let jobs = job_index(&plan);
        Ok(Hooks {
            outputs_ahead: Mutex::new(outputs_ahead),
            fans_out: plan.fed_by.values().any(|f| !f.is_empty()),
            digests_read: digests_read(&plan, &jobs),
            jobs,
            plan,
            ut,
            run_id,
            force,
            inner: Mutex::new(Inner::default()),
            versions: Mutex::new(Vec::new()),
            store,
            remote: Remote::default(),
        })
    }

    /// Shares the run's step results through a remote cache.
    pub fn with_remote_cache(mut self, cache: Option<Arc<crate::cache::RemoteCache>>) -> Hooks {
        self.remote.cache = cache;
        self
    }

    /// Stands in for job `key`, which ran elsewhere (a worker runs one job
    /// of a run; the jobs it needs ran on other machines): what it handed
    /// on is `digest`, which the steps behind it are keyed on as on the
    /// job's own last step here.
    pub fn ran_elsewhere(&self, key: &str, digest: Fingerprint) {
        let Some(job) = self.job(key) else { return };
        let Some(last) = job.steps.last() else { return };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.chain.insert(
            step_key(job, last),
            Link {
                digest,
                ran: Vec::new(),
            },
        );
    }

    /// The plan's job `key`, whose steps are checked one by one. An
    /// instance of a fed job is not: it is up to date as a whole, by its
    /// input ([`instance_check`]), and its steps' fingerprints do not hold
    /// the input. It is not in the plan, except on the `trun worker` that
    /// runs it.
    fn job(&self, key: &str) -> Option<&PlannedJob> {
        let i = *self.jobs.get(key)?;
        self.plan
            .jobs
            .get(i)
            .filter(|j| j.key == key && j.input.is_none())
    }

    fn recorded_outputs(&self, key: &str, fingerprint: &Fingerprint) -> BTreeMap<String, String> {
        let ahead = lock(&self.outputs_ahead).remove(&step_outputs_key(key, fingerprint));
        match ahead {
            Some(json) => outputs_of(&json),
            None => recorded_outputs(self.store.as_ref(), key, fingerprint),
        }
    }
}

impl Hooks {
    fn note_version(&self, job_key: &str, idx: usize, version: u32) {
        let mut v = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        v.push((job_key.to_string(), idx, version));
    }

    /// Write what was noted during the run in one transaction (one per
    /// step would cost a commit each on a thousand-step no-op).
    /// Also stores the walk records with the rows the run settled, for the
    /// next run to read with its walk (a cache: a failure costs speed only).
    pub fn flush(&self) {
        let _ = self.ut.store_walk_rows();
        let versions =
            std::mem::take(&mut *self.versions.lock().unwrap_or_else(|e| e.into_inner()));
        if versions.is_empty() {
            return;
        }
        let _ = self.store.set_definition_versions(self.run_id, &versions);
    }
}

impl StepHooks for Hooks {
    fn before_step(
        &self,
        job_key: &str,
        step: &PlannedStep,
    ) -> Option<(String, BTreeMap<String, String>)> {
        let job = self.job(job_key)?;
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let upstream_ran = inner.chain.upstream_ran(&self.plan, job, step);
        if step.sources.is_empty() {
            let key = step_key(job, step);
            let digest = if self.digests_read.contains(&key) {
                sourceless_fingerprint(&spec(&self.plan, job, step, &inner.chain))
            } else {
                Fingerprint([0; 32])
            };
            inner.chain.insert(
                key,
                Link {
                    digest,
                    ran: upstream_ran,
                },
            );
            return None;
        }
        let spec = spec(&self.plan, job, step, &inner.chain);
        let check = match self.ut.check(&spec, self.force.forces(job, step)) {
            Ok(c) => c,
            Err(_) => return None,
        };
        let skip = match &check.decision {
            Decision::Skip(reason) => Some(reason.to_string()),
            Decision::Run(RunReason::Forced | RunReason::NoSources | RunReason::NeverRan) => None,
            // Damaged outputs, or inputs that match an earlier success (a
            // branch switch): the CAS may hold exactly what a run would make.
            Decision::Run(_) => match self.ut.try_restore(&spec, &check) {
                Ok(Some(_)) => Some("restored from cache".to_string()),
                _ => None,
            },
        };
        let skip = match skip {
            // Over the network: other jobs' steps need not wait for it.
            None if self.remote.cache.is_some() => {
                drop(inner);
                let hit = self.remote_restore(job, step, &spec, &check);
                inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                hit
            }
            skip => skip,
        };
        // A step whose emitted files are gone from the store runs again to
        // emit them: its dependents' instances need them.
        let skip = skip.filter(|_| {
            if !self.fans_out {
                return true;
            }
            let emitted: Option<Vec<Emitted>> = self
                .store
                .kv_get(STEP_EMITS, &format!("{}@{}", spec.key, check.fingerprint))
                .ok()
                .flatten()
                .and_then(|s| serde_json::from_str(&s).ok());
            let Some(emitted) = emitted else { return true };
            let cas = crate::uptodate::cas::Cas::new(&self.plan.root.join(".trun").join("cas"));
            let all_there = emitted.iter().all(|e| {
                hex::decode(&e.sha256)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                    .is_some_and(|h| cas.contains(&h))
            });
            if all_there {
                inner.replay.insert(spec.key.clone(), emitted);
            }
            all_there
        });
        match skip {
            Some(reason) => {
                let outputs = self.recorded_outputs(&spec.key, &check.fingerprint);
                // Up to date: the check read them already; restored: the
                // restored success is now the latest.
                let generates = match &check.produced {
                    Some(p) if matches!(check.decision, Decision::Skip(_)) => p.clone(),
                    _ => self.ut.latest_outputs(&spec.key).unwrap_or_default(),
                };
                let digest = produced_digest(&generates, &outputs, &spec.upstream);
                // Up to date although an upstream step ran: cut off early.
                let reason = if !upstream_ran.is_empty() && reason == "up to date" {
                    cutoff_reason(job, &upstream_ran)
                } else {
                    reason
                };
                inner.chain.insert(
                    spec.key.clone(),
                    Link {
                        digest,
                        ran: upstream_ran,
                    },
                );
                drop(inner);
                // The skipped step's result is the one its current definition produced.
                self.note_version(job_key, step.index, check.definition_version);
                Some((reason, outputs))
            }
            None => {
                inner.pending.insert(spec.key.clone(), (spec, check));
                None
            }
        }
    }

    fn after_step(
        &self,
        job_key: &str,
        step: &PlannedStep,
        success: bool,
        outputs: &BTreeMap<String, String>,
    ) {
        // Files may have changed under any step that ran (an instance of a
        // fed job, not in the plan, included).
        self.ut.invalidate();
        let Some(job) = self.job(job_key) else {
            return;
        };
        if step.sources.is_empty() {
            return;
        }
        let key = step_key(job, step);
        let pending = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.pending.remove(&key)
        };
        if !success {
            return;
        }
        if let Some((spec, check)) = pending {
            // Record what the step ran against (checked just before it ran),
            // not the tree afterwards: a source edited while the step ran
            // must make the next run run it again, as with make.
            // A cache that cannot be written (a full disk) must not pass silently:
            // the step would run again next time with nobody told why.
            let generates = match self.ut.record_success(&spec, &check, self.run_id) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!(
                        "trun: warning: {key}: its outputs were not cached, so it will run again next time: {e}"
                    );
                    Vec::new()
                }
            };
            let mut ran = {
                let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                inner.chain.upstream_ran(&self.plan, job, step)
            };
            ran.push((job.key.clone(), step.id.clone()));
            ran.sort();
            ran.dedup();
            let digest = produced_digest(&generates, outputs, &spec.upstream);
            self.inner
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .chain
                .insert(key.clone(), Link { digest, ran });
            self.note_version(job_key, step.index, check.definition_version);
            // Per fingerprint: a step restored from an earlier success hands
            // on that success's outputs, not the latest run's.
            remember_outputs(self.store.as_ref(), &key, &check.fingerprint, outputs);
            self.remote_upload(job, step, &spec, &check, outputs);
        }
    }

    fn replay_log(&self, job_key: &str, step: &PlannedStep) -> Option<Vec<u8>> {
        let key = format!("{job_key}/{}", step.id);
        lock(&self.remote.replays).remove(&key)
    }

    fn step_logged(&self, job_key: &str, step: &PlannedStep, log: &Path) {
        if self.remote.cache.is_some() {
            let key = format!("{job_key}/{}", step.id);
            lock(&self.remote.logs).insert(key, log.to_path_buf());
        }
    }

    fn instance_check(&self, job: &PlannedJob) -> Option<InstanceCheck> {
        let forced = job.steps.iter().any(|s| self.force.forces(job, s));
        instance_check(
            &self.plan,
            &self.ut,
            self.store.as_ref(),
            self.remote.cache.as_deref(),
            job,
            forced,
        )
        .ok()
    }

    fn instance_done(
        &self,
        job: &PlannedJob,
        check: &InstanceCheck,
        emitted: &[Emitted],
        on: crate::fanout::RanOn<'_>,
    ) {
        // Files may have changed under the instance's steps.
        self.ut.invalidate();
        let Some(input) = &job.input else { return };
        let memo = InstanceMemo {
            fingerprint: check.fingerprint.clone(),
            definition: check.definition.clone(),
            sha256: input.sha256.clone(),
            emitted: emitted.to_vec(),
            worker: matches!(on, crate::fanout::RanOn::Worker { .. }),
            files: match on {
                crate::fanout::RanOn::Worker { files } => files.map(str::to_string),
                crate::fanout::RanOn::Here => None,
            },
        };
        let _ = self.store.kv_set(
            INSTANCES,
            &job.key,
            &serde_json::to_string(&memo).unwrap_or_default(),
        );
    }

    fn step_emitted(&self, job_key: &str, step: &PlannedStep, emitted: &[Emitted]) {
        let key = format!("{job_key}/{}", step.id);
        let fingerprint = {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            match inner.pending.get(&key) {
                Some((_, check)) => check.fingerprint,
                None => return,
            }
        };
        let _ = self.store.kv_set(
            STEP_EMITS,
            &format!("{key}@{fingerprint}"),
            &serde_json::to_string(emitted).unwrap_or_default(),
        );
    }

    fn replay_emits(&self, job_key: &str, step: &PlannedStep) -> Option<Vec<Emitted>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.replay.remove(&format!("{job_key}/{}", step.id))
    }

    fn instances_seen(&self, job_id: &str, inputs: &[(String, String)]) {
        let _ = self.store.kv_set(
            FED_INPUTS,
            job_id,
            &serde_json::to_string(inputs).unwrap_or_default(),
        );
    }
}

/// The remote cache of a run, and what passes between the hooks and the
/// engine for it: logs to replay for restored steps, logs written by steps
/// that ran (to upload).
#[derive(Default)]
struct Remote {
    cache: Option<Arc<crate::cache::RemoteCache>>,
    replays: Mutex<HashMap<String, Vec<u8>>>,
    logs: Mutex<HashMap<String, std::path::PathBuf>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which steps go to the remote cache: `run:` steps (an action's effects,
/// such as a Docker image, are not files it could restore).
fn shared(step: &PlannedStep) -> bool {
    matches!(step.action, Action::Run { .. })
}

impl Hooks {
    /// A local miss: the remote cache may hold the step's result.
    fn remote_restore(
        &self,
        job: &PlannedJob,
        step: &PlannedStep,
        spec: &StepSpec,
        check: &crate::uptodate::Check,
    ) -> Option<String> {
        let cache = self.remote.cache.as_ref()?;
        if !shared(step) || matches!(check.decision, Decision::Run(RunReason::Forced)) {
            return None;
        }
        let image = job.container.as_ref().map(|c| c.image.as_str());
        let hit = cache.restore(
            &self.ut,
            self.store.as_ref(),
            spec,
            check,
            image,
            self.run_id,
        )?;
        if let Some(log) = hit.log {
            lock(&self.remote.replays).insert(spec.key.clone(), log);
        }
        Some("restored from remote cache".to_string())
    }

    fn remote_upload(
        &self,
        job: &PlannedJob,
        step: &PlannedStep,
        spec: &StepSpec,
        check: &crate::uptodate::Check,
        outputs: &BTreeMap<String, String>,
    ) {
        let Some(cache) = &self.remote.cache else {
            return;
        };
        let log = lock(&self.remote.logs).remove(&spec.key);
        if !shared(step) {
            return;
        }
        let image = job.container.as_ref().map(|c| c.image.as_str());
        cache.upload(
            self.store.as_ref(),
            spec,
            check,
            image,
            outputs,
            log.as_deref(),
        );
    }
}
