//! One job instance: its steps in order, each step's `if`, env, retries,
//! timeout, outputs and `continue-on-error`, then the job's outputs.
//!
//! A `run:` step's process runs only through an [`Executor`] (the job's
//! container, or a local process), its output only through an
//! [`OutputSink`]; this module spawns nothing itself. A step succeeds when
//! its command did and every literal `generates` path exists.

use super::executor::{Command, Executor, JobContainer, Local};
use super::output::OutputSink;
use super::process::Exit;
use super::{commands, outputs, Events, RunOptions};
use crate::event::{now_ms, Event, Status, Stream};
use crate::plan::{Action, Plan, PlannedStep};
use crate::template::{Context, Engine as Templates, StatusFlags};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What the engine asks around each step; the up-to-date engine and the
/// container runtime plug in here so the scheduler stays ignorant of both.
pub trait StepHooks: Send + Sync {
    /// Before a step runs: `Some(reason)` skips it as up to date, with the
    /// outputs recorded by its last success.
    fn before_step(
        &self,
        job: &str,
        step: &PlannedStep,
    ) -> Option<(String, BTreeMap<String, String>)>;
    /// After a step ran, whatever its result.
    fn after_step(
        &self,
        job: &str,
        step: &PlannedStep,
        success: bool,
        outputs: &BTreeMap<String, String>,
    );
    /// For a step just skipped: the log of the run it was restored from
    /// (the remote cache), replayed as its output.
    fn replay_log(&self, _job: &str, _step: &PlannedStep) -> Option<Vec<u8>> {
        None
    }
    /// Where a step that ran wrote its log; called just before `after_step`.
    fn step_logged(&self, _job: &str, _step: &PlannedStep, _log: &Path) {}

    /// Fan-out: whether an instance of a fed job (`job.input` set) must run;
    /// `None` runs it.
    fn instance_check(
        &self,
        _job: &crate::plan::PlannedJob,
    ) -> Option<crate::fanout::InstanceCheck> {
        None
    }
    /// An instance succeeded where `on` says, having emitted these files.
    fn instance_done(
        &self,
        _job: &crate::plan::PlannedJob,
        _check: &crate::fanout::InstanceCheck,
        _emitted: &[crate::fanout::Emitted],
        _on: crate::fanout::RanOn<'_>,
    ) {
    }
    /// A step that is about to be recorded a success emitted these files.
    fn step_emitted(&self, _job: &str, _step: &PlannedStep, _emitted: &[crate::fanout::Emitted]) {}
    /// After [`before_step`](Self::before_step) skipped a step: the files it
    /// emitted when it last ran with the same inputs, to send on again.
    fn replay_emits(&self, _job: &str, _step: &PlannedStep) -> Option<Vec<crate::fanout::Emitted>> {
        None
    }
    /// The inputs (name, sha256) a fed job's instances had in this run.
    fn instances_seen(&self, _job_id: &str, _inputs: &[(String, String)]) {}
}

pub struct JobRunner {
    pub plan: Arc<Plan>,
    /// The job instance to run (a leg of a matrix computed at run time is
    /// not in the plan, so the runner carries its own copy).
    pub job: crate::plan::PlannedJob,
    pub opts: RunOptions,
    pub events: Events,
    pub templates: Arc<Templates>,
    pub base_ctx: Context,
    /// Where files a step writes into `$TRUN_EMIT` go; `None`: no `$TRUN_EMIT`.
    pub feeds: Option<Arc<super::fanout::Feeds>>,
}

pub struct JobResult {
    pub status: Status,
    pub outputs: BTreeMap<String, String>,
    pub forgiven: bool,
}

/// The result of one step, as later steps see it.
struct StepEnd {
    status: Status,
    duration_ms: u64,
    log_path: Option<String>,
    exit_code: Option<i32>,
    reason: Option<String>,
    outputs: BTreeMap<String, String>,
    attempt: u32,
}

impl JobRunner {
    /// What a GitHub action sees of the run ([`super::actions::Scope`]).
    fn action_scope(&self) -> super::actions::Scope<'_> {
        super::actions::Scope {
            workspace: &self.plan.root,
            memory: self.opts.memory.as_ref(),
            store: self.opts.store.as_deref(),
            run_id: self.opts.run_id,
            job: &self.job.key,
        }
    }

    pub async fn run(mut self, mut cancel: watch::Receiver<bool>) -> JobResult {
        // The runner's own copy: nothing reads `base_ctx` after this, and a
        // clone of every context per job showed in a run of many short jobs.
        let mut ctx = std::mem::take(&mut self.base_ctx);
        let job = &self.job;
        let started = Instant::now();
        self.events.send(Event::JobStarted {
            job: job.key.clone(),
            at: now_ms(),
        });
        let mut env: Vec<(String, String)> = Vec::new();
        let mut failure: Option<String> = None;

        // Job env: rendered once, with inputs/matrix/needs.
        for (k, v) in &job.env {
            match self.templates.render(v, &ctx) {
                Ok(val) => {
                    ctx.env.insert(k.clone(), Value::String(val.clone()));
                    env.push((k.clone(), val));
                }
                Err(e) => {
                    failure = Some(format!("env `{k}`: {}", e.message));
                    break;
                }
            }
        }
        for (k, v) in &self.plan.env {
            if let Some(Value::String(val)) = ctx.env.get(k) {
                if !job.env.iter().any(|(jk, _)| jk == k) {
                    env.insert(0, (k.clone(), val.clone()));
                }
            } else {
                env.insert(0, (k.clone(), v.clone()));
            }
        }
        let job_dir_name = match &job.input {
            // Emitted names differ in what `sanitize` drops: keep them apart.
            Some(_) => {
                use sha2::Digest;
                let h = sha2::Sha256::digest(job.key.as_bytes());
                format!("{}-{}", sanitize(&job.key), hex::encode(&h[..4]))
            }
            None => sanitize(&job.key),
        };
        let log_dir = self.opts.log_dir.join(&job_dir_name);
        // Step talk-back files live flat in the run's tmp dir (created once
        // by the caller): a directory per job costs a mkdir and an rmdir on
        // every job, which shows at a thousand jobs.
        let tmp_prefix = self.opts.tmp_dir.join(&job_dir_name);

        // A job with a container runs every `run:` step inside it.
        let mut container: Option<(String, Option<String>)> = None;
        if failure.is_none() {
            if let Some(spec) = &job.container {
                match Box::pin(self.start_container(spec, &env)).await {
                    Ok(c) => container = Some(c),
                    Err(e) => failure = Some(e),
                }
            }
        }
        if let Some(f) = &failure {
            self.events.send(Event::StepOutput {
                job: job.key.clone(),
                step: 0,
                stream: Stream::Stderr,
                line: f.clone(),
            });
        }
        if !ctx.github.is_empty() {
            // What every step of the run sees the same: set once for the
            // job's steps, not per step.
            let event_path = self.opts.tmp_dir.join(crate::github::EVENT_FILE);
            for (k, v) in [
                ("event_path", event_path.display().to_string()),
                ("workspace", self.plan.root.display().to_string()),
            ] {
                ctx.github.insert(k.into(), Value::String(v));
            }
            ctx.runner.insert(
                "temp".into(),
                Value::String(self.opts.tmp_dir.display().to_string()),
            );
        }
        let deadline = job.timeout.map(|t| Instant::now() + t);
        let mut extra_path: Vec<String> = Vec::new();
        let mut grading: Option<super::grade_step::Grading> = None;
        let mut posts: Vec<super::actions::Post> = Vec::new();
        let mut frames = super::composite::Frames::default();
        let mut job_failed = failure.is_some();
        let mut cancelled = *cancel.borrow();

        for step in &job.steps {
            if !cancelled && cancel.has_changed().unwrap_or(false) {
                cancelled = *cancel.borrow_and_update();
            }
            ctx.status = StatusFlags {
                success: !job_failed,
                failure: job_failed,
                cancelled,
            };
            // A step of a composite action sees the composite's inputs and steps.
            let entered = frames.enter(step.frame.as_ref(), &mut ctx, &self.templates);
            // Which talk-back files the step left, found once it ran.
            let mut written = outputs::Written::default();
            let end = if cancelled
                && step
                    .condition
                    .as_deref()
                    .is_none_or(|c| !c.contains("always()"))
            {
                StepEnd::skipped(Status::Cancelled, "cancelled")
            } else if let Err(m) = &entered {
                StepEnd::failed(m.clone())
            } else if let Ok(Some(why)) = &entered {
                StepEnd::skipped(Status::Skipped, why)
            } else {
                let go = match &step.condition {
                    None => Ok(!job_failed),
                    Some(c) => self.templates.condition(c, &ctx),
                };
                match go {
                    Ok(false) if step.condition.is_none() => {
                        StepEnd::skipped(Status::Skipped, "an earlier step failed")
                    }
                    Ok(false) => StepEnd::skipped(Status::Skipped, "`if` was false"),
                    Err(e) => StepEnd::failed(format!("`if`: {}", e.message)),
                    Ok(true) if step.skip.is_some() => {
                        StepEnd::skipped(Status::Skipped, step.skip.as_deref().unwrap_or_default())
                    }
                    Ok(true) if !self.pass_gate(&mut cancel).await => {
                        StepEnd::skipped(Status::Cancelled, "cancelled")
                    }
                    Ok(true) => {
                        let remaining =
                            deadline.map(|d| d.saturating_duration_since(Instant::now()));
                        // Boxed: a step's future is most of a job's, and a
                        // job's future is moved whole when it is spawned.
                        Box::pin(self.run_step(
                            step,
                            &mut written,
                            &mut ctx,
                            &env,
                            &extra_path,
                            &log_dir,
                            &tmp_prefix,
                            remaining,
                            container.as_ref().map(|c| c.0.as_str()),
                            &mut grading,
                            &mut posts,
                            &mut cancel,
                        ))
                        .await
                    }
                }
            };
            if end.status == Status::Cancelled {
                cancelled = true;
            }
            // GITHUB_ENV / GITHUB_PATH written by this step apply to later
            // steps (a step that did not run wrote nothing).
            if end.attempt > 0 {
                let warn = |what: &str, e: String| {
                    self.events.send(Event::StepOutput {
                        job: job.key.clone(),
                        step: step.index,
                        stream: Stream::Stderr,
                        line: format!("trun: warning: {what} ignored: {e}"),
                    })
                };
                let env_file = tmp_file(&tmp_prefix, step.index, "env");
                match written.read(&env_file, outputs::take_kv) {
                    Ok(vars) => {
                        for (k, v) in vars {
                            ctx.env.insert(k.clone(), Value::String(v.clone()));
                            env.retain(|(ek, _)| *ek != k);
                            env.push((k, v));
                        }
                    }
                    Err(e) => warn("$GITHUB_ENV", e),
                }
                let path_file = tmp_file(&tmp_prefix, step.index, "path");
                match written.read(&path_file, outputs::take_path_file) {
                    Ok(p) => extra_path.extend(p),
                    Err(e) => warn("$GITHUB_PATH", e),
                }
            }

            let outcome = end.status.as_str();
            let conclusion = if end.status == Status::Failure && step.continue_on_error {
                "success"
            } else {
                outcome
            };
            if step.has_id {
                let mut m = Map::new();
                m.insert(
                    "outputs".into(),
                    Value::Object(
                        end.outputs
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                            .collect(),
                    ),
                );
                m.insert("outcome".into(), Value::String(outcome.into()));
                m.insert("conclusion".into(), Value::String(conclusion.into()));
                ctx.steps
                    .insert(step.local_id().to_string(), Value::Object(m));
            }
            frames.leave(
                &mut ctx,
                end.status == Status::Failure && !step.continue_on_error,
            );
            if end.status == Status::Failure && !step.continue_on_error {
                job_failed = true;
                if failure.is_none() {
                    failure = Some(format!(
                        "step {} failed",
                        if step.has_id { &step.id } else { &step.name }
                    ));
                }
            }
            self.events.send(Event::StepFinished {
                job: job.key.clone(),
                step: step.index,
                status: end.status,
                exit_code: end.exit_code,
                reason: end.reason.clone(),
                attempt: end.attempt,
                at: now_ms(),
                duration_ms: end.duration_ms,
                outputs: end.outputs,
                continue_on_error: end.status == Status::Failure && step.continue_on_error,
                log_path: end.log_path,
            });
        }

        frames.close_all(&mut ctx, &self.templates);
        if let (Some((id, net)), Some(docker)) = (&container, &self.opts.docker) {
            let _ = Box::pin(docker.remove_job_container(id, net.as_deref())).await;
        }
        Box::pin(super::grade_step::close(grading.take())).await;
        // End-of-job hooks of actions (saving a cache after a miss), only after success,
        // as GitHub's post steps; a failed hook is a warning, as there.
        if !job_failed && !cancelled {
            for post in posts.drain(..) {
                let mut on_line = |stream: Stream, line: String| {
                    self.events.send(Event::StepOutput {
                        job: job.key.clone(),
                        step: post.step,
                        stream,
                        line,
                    })
                };
                let in_container = container.is_some();
                if let Err(e) =
                    super::actions::run_post(&post, self.action_scope(), in_container, &mut on_line)
                {
                    on_line(
                        Stream::Stderr,
                        format!("trun: warning: end of job, {}: {e}", post.uses),
                    );
                }
            }
        }

        // Job outputs see every step.
        let mut outputs_map = BTreeMap::new();
        ctx.status = StatusFlags {
            success: !job_failed,
            failure: job_failed,
            cancelled,
        };
        for (k, v) in &job.outputs {
            match self.templates.render(v, &ctx) {
                Ok(val) => {
                    outputs_map.insert(k.clone(), val);
                }
                Err(e) if !job_failed => {
                    job_failed = true;
                    failure = Some(format!("output `{k}`: {}", e.message));
                }
                Err(_) => {}
            }
        }
        let status = if cancelled {
            Status::Cancelled
        } else if job_failed {
            Status::Failure
        } else {
            Status::Success
        };
        let forgiven = status == Status::Failure && job.continue_on_error;
        self.events.send(Event::JobFinished {
            job: job.key.clone(),
            status,
            reason: if status == Status::Failure {
                failure
            } else {
                None
            },
            at: now_ms(),
            duration_ms: started.elapsed().as_millis() as u64,
            outputs: outputs_map.clone(),
        });
        JobResult {
            status,
            outputs: outputs_map,
            forgiven,
        }
    }

    /// Waits at the run's gate (`trun serve`'s pause and step budgets); false
    /// when the run was cancelled meanwhile.
    async fn pass_gate(&self, cancel: &mut watch::Receiver<bool>) -> bool {
        match &self.opts.gate {
            Some(gate) => gate.pass(cancel).await,
            None => true,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        step: &PlannedStep,
        talk_back: &mut outputs::Written,
        ctx: &mut Context,
        job_env: &[(String, String)],
        extra_path: &[String],
        log_dir: &Path,
        tmp_prefix: &Path,
        job_remaining: Option<Duration>,
        container: Option<&str>,
        grading: &mut Option<super::grade_step::Grading>,
        posts: &mut Vec<super::actions::Post>,
        cancel: &mut watch::Receiver<bool>,
    ) -> StepEnd {
        let job = &self.job;
        let mut env: Vec<(String, String)> = job_env.to_vec();
        if !ctx.github.is_empty() {
            // The step's own `github` values, set on the job's context in place
            // (each step sets them anew) rather than on a copy of it.
            // A step of a local composite action: the action's directory.
            let action_path = step
                .frame
                .as_ref()
                .map(|f| f.action_path.display().to_string())
                .unwrap_or_default();
            for (k, v) in [("action", step.id.clone()), ("action_path", action_path)] {
                ctx.github.insert(k.into(), Value::String(v));
            }
        }
        // Step env, rendered with the context so far: the job's context,
        // copied only for a step with `env` of its own (a copy per step
        // showed in a run of many short jobs).
        let mut step_ctx = std::borrow::Cow::Borrowed(&*ctx);
        for (k, v) in &step.env {
            match self.templates.render(v, &step_ctx) {
                Ok(val) => {
                    step_ctx
                        .to_mut()
                        .env
                        .insert(k.clone(), Value::String(val.clone()));
                    env.retain(|(ek, _)| ek != k);
                    env.push((k.clone(), val));
                }
                Err(e) => return StepEnd::failed(format!("env `{k}`: {}", e.message)),
            }
        }
        let cwd = match &step.working_directory {
            Some(wd) => match self.templates.render(wd, &step_ctx) {
                Ok(w) => self.plan.root.join(w),
                Err(e) => return StepEnd::failed(format!("working-directory: {}", e.message)),
            },
            None => self.plan.root.clone(),
        };
        let output_file = tmp_file(tmp_prefix, step.index, "out");
        let env_file = tmp_file(tmp_prefix, step.index, "env");
        let path_file = tmp_file(tmp_prefix, step.index, "path");
        let summary_file = tmp_file(tmp_prefix, step.index, "summary");
        let state_file = tmp_file(tmp_prefix, step.index, "state");
        let out_s = output_file.display().to_string();
        for (k, v) in [
            ("TRUN_OUTPUT", out_s.as_str()),
            ("GITHUB_OUTPUT", out_s.as_str()),
            ("GITHUB_ENV", &env_file.display().to_string()),
            ("GITHUB_PATH", &path_file.display().to_string()),
            ("GITHUB_STEP_SUMMARY", &summary_file.display().to_string()),
            ("GITHUB_STATE", &state_file.display().to_string()),
            ("TRUN_WORKSPACE", &self.plan.root.display().to_string()),
            ("GITHUB_WORKSPACE", &self.plan.root.display().to_string()),
            ("TRUN_RUN_ID", &self.opts.run_id.to_string()),
            ("TRUN_JOB", &job.key),
            ("TRUN_STEP", &step.id),
        ] {
            env.push((k.to_string(), v.to_string()));
        }
        let emit_dir = tmp_file(tmp_prefix, step.index, "emit");
        if self.feeds.is_some() {
            env.push(("TRUN_EMIT".into(), emit_dir.display().to_string()));
        }
        if let Some(input) = &job.input {
            env.push(("TRUN_INPUT_FILE".into(), input.path.display().to_string()));
            env.push(("TRUN_INPUT_NAME".into(), input.name.clone()));
        }
        if let Some(gh) = self.plan.github.as_ref().filter(|g| !g.env.is_empty()) {
            // GitHub Actions' default variables come first: the workflow's own `env`
            // may override them, as on GitHub.
            let tmp = self.opts.tmp_dir.display().to_string();
            let event_path = self.opts.tmp_dir.join(crate::github::EVENT_FILE);
            let run_id = self.opts.run_id.to_string();
            let mut defaults = gh.env.clone();
            for (k, v) in [
                ("GITHUB_RUN_ID", run_id.as_str()),
                ("GITHUB_RUN_NUMBER", run_id.as_str()),
                ("GITHUB_RUN_ATTEMPT", "1"),
                ("GITHUB_JOB", job.job_id.as_str()),
                ("GITHUB_ACTION", step.id.as_str()),
                ("GITHUB_EVENT_PATH", &event_path.display().to_string()),
                ("RUNNER_TEMP", tmp.as_str()),
            ] {
                defaults.push((k.to_string(), v.to_string()));
            }
            env.splice(0..0, defaults);
        }
        if !extra_path.is_empty() && container.is_none() {
            let base = std::env::var("PATH").unwrap_or_default();
            let mut p: Vec<&str> = extra_path.iter().rev().map(String::as_str).collect();
            p.push(&base);
            env.push(("PATH".into(), p.join(":")));
        }

        // The command line, or the rendered `with` of an action.
        let (argv, definition) = match &step.action {
            Action::Run {
                script,
                shell,
                inline_expressions,
            } => {
                let (text, expr_env) = if *inline_expressions || !shell.expands_env_refs() {
                    match self.templates.render(script, &step_ctx) {
                        Ok(t) => (t, Vec::new()),
                        Err(e) => return StepEnd::failed(format!("run: {}", e.message)),
                    }
                } else {
                    match self.templates.render_script(script, &step_ctx) {
                        Ok(r) => r,
                        Err(e) => return StepEnd::failed(format!("run: {}", e.message)),
                    }
                };
                let script_file = if shell.needs_script_file() {
                    let f = tmp_file(tmp_prefix, step.index, "script");
                    if let Err(e) = outputs::write_fresh(&f, text.as_bytes()) {
                        return StepEnd::failed(format!("cannot write {}: {e}", f.display()));
                    }
                    Some(f)
                } else {
                    None
                };
                env.extend(expr_env);
                let argv = match shell.direct_argv(&text) {
                    Some(direct) if container.is_none() => direct,
                    _ => shell.argv(&text, script_file.as_deref()),
                };
                (Some(argv), Value::Null)
            }
            Action::Uses { uses, with } => {
                let mut rendered = Map::new();
                for (k, v) in with {
                    match render_json(&self.templates, v, &step_ctx) {
                        Ok(r) => {
                            rendered.insert(k.clone(), r);
                        }
                        Err(e) => return StepEnd::failed(format!("with.{k}: {}", e.message)),
                    }
                }
                (None, serde_json::json!({ "uses": uses, "with": rendered }))
            }
            Action::Grade { repo, .. } => match self.templates.render(repo, &step_ctx) {
                Ok(r) => (None, serde_json::json!({ "repo": r })),
                Err(e) => return StepEnd::failed(format!("with.repo: {}", e.message)),
            },
        };

        if let Some(hooks) = &self.opts.hooks {
            if let Some((reason, outs)) = hooks.before_step(&job.key, step) {
                let replayed = hooks.replay_log(&job.key, step).map(|log| {
                    let path =
                        log_dir.join(format!("{:02}-{}.log", step.index + 1, sanitize(&step.id)));
                    let mut sink = OutputSink::new(
                        Some(path.clone()),
                        self.events.clone(),
                        job.key.clone(),
                        step.index,
                    );
                    sink.write(Stream::Stdout, &log);
                    sink.finish();
                    path.display().to_string()
                });
                // Up to date: the files it emitted then are what it would emit now.
                if let (Some(feeds), Some(emitted)) =
                    (&self.feeds, hooks.replay_emits(&job.key, step))
                {
                    if let Err(e) = feeds.send(job, step, emitted) {
                        return StepEnd::failed(e);
                    }
                }
                return StepEnd {
                    duration_ms: 0,
                    log_path: replayed,
                    status: Status::Skipped,
                    exit_code: None,
                    reason: Some(reason),
                    outputs: outs,
                    attempt: 0,
                };
            }
        }

        // Looked at only for a step that runs: an up-to-date one needs no
        // directory. A command's is looked at only if it cannot start.
        if container.is_none() && argv.is_none() && !cwd.is_dir() {
            return StepEnd::failed(super::process::missing_working_directory(&cwd));
        }
        let log_path = log_dir.join(format!("{:02}-{}.log", step.index + 1, sanitize(&step.id)));
        let mut sink = OutputSink::new(
            Some(log_path.clone()),
            self.events.clone(),
            job.key.clone(),
            step.index,
        );
        // A `run:` step talks back with workflow commands too (`::set-output`,
        // `::add-mask::`, `::error::` …); an action's or a grader's lines are
        // trun's own and are not read as commands.
        if argv.is_some() {
            let var = |name: &str| {
                env.iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .or_else(|| self.plan.secrets.get(name).map(str::to_string))
                    .or_else(|| std::env::var(name).ok())
            };
            let debug = commands::truthy(var("ACTIONS_STEP_DEBUG").as_deref())
                || commands::truthy(var("RUNNER_DEBUG").as_deref());
            let unsecure = commands::truthy(var("ACTIONS_ALLOW_UNSECURE_COMMANDS").as_deref());
            sink.enable_commands(commands::Commands::new(debug, unsecure));
        }
        // Every `run:` step runs through an executor: the job's container or
        // a host process (recorded, so a later trun can stop it if this one
        // is killed).
        let executor: Box<dyn Executor> = match (container, &self.opts.docker) {
            (Some(c), Some(docker)) => Box::new(JobContainer::new(docker.clone(), c)),
            (Some(_), None) => {
                return StepEnd::failed("this job needs Docker, but no connection was made".into())
            }
            (None, _) => Box::new(match &self.opts.proc_records {
                Some(dir) => Local::recording(
                    dir.clone(),
                    format!("step `{}` of job `{}`", step.id, job.key),
                ),
                None => Local::new(),
            }),
        };
        let timeout = match (step.timeout, job_remaining) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut attempt = 1;
        let step_started = Instant::now();
        let mut written = outputs::Written::default();
        // The names of this step's talk-back files start so (`<job>.<step>.`).
        let stem = tmp_file(tmp_prefix, step.index, "");
        // A name may use what only the run knows (`steps.x.outputs.y`).
        let display_name = if step.name.contains("${{") {
            self.templates
                .render(&step.name, &step_ctx)
                .unwrap_or_else(|_| step.name.clone())
        } else {
            step.name.clone()
        };
        let mut end = loop {
            self.events.send(Event::StepStarted {
                job: job.key.clone(),
                step: step.index,
                name: display_name.clone(),
                attempt,
                at: now_ms(),
            });
            if let Some(feeds) = &self.feeds {
                // Fresh per attempt: a failed attempt's files are not emitted.
                if let Err(e) = feeds.prepare(&self.opts.tmp_dir, &emit_dir, job) {
                    break StepEnd::failed(format!("cannot create $TRUN_EMIT: {e}"));
                }
            }
            let mut skipped_by_action: Option<String> = None;
            let exit = match &argv {
                Some(argv) => {
                    let cmd = Command {
                        argv: argv.clone(),
                        env: env.clone(),
                        cwd: cwd.clone(),
                        stdin: None,
                        timeout,
                    };
                    executor.run(&cmd, &mut sink, cancel.clone()).await
                }
                None if matches!(step.action, Action::Grade { .. }) => {
                    let Action::Grade {
                        rubric,
                        rubric_dir,
                        part,
                        sandbox,
                        ..
                    } = &step.action
                    else {
                        unreachable!()
                    };
                    let repo = self
                        .plan
                        .root
                        .join(definition["repo"].as_str().unwrap_or("."));
                    let outcome = Box::pin(super::grade_step::run(
                        grading,
                        super::grade_step::GradeStep {
                            rubric,
                            rubric_dir,
                            repo,
                            part,
                            sandbox: *sandbox,
                            job: &job.key,
                            run_id: self.opts.run_id,
                            docker: self.opts.docker.as_ref(),
                            results: self.opts.grades.as_ref(),
                            timeout,
                        },
                        &mut sink,
                        cancel,
                    ))
                    .await;
                    if let Exit::Failed(why) = &outcome.exit {
                        sink.note(why);
                    }
                    write_outputs(&output_file, &outcome.outputs);
                    skipped_by_action = outcome.skipped;
                    outcome.exit
                }
                None => {
                    let Action::Uses { uses, .. } = &step.action else {
                        unreachable!()
                    };
                    let with = definition["with"].as_object().cloned().unwrap_or_default();
                    // The action's lines reach the log through the sink.
                    let github = crate::actions::github::builtin(uses);
                    let outcome = if let Some(kind) = github {
                        let (outcome, post) = Box::pin(crate::exec::actions::execute_github(
                            kind,
                            uses,
                            &with,
                            self.action_scope(),
                            crate::exec::actions::Where {
                                executor: executor.as_ref(),
                                env: &env,
                                cwd: &cwd,
                            },
                            timeout,
                            cancel,
                            &mut sink,
                        ))
                        .await;
                        if let Some(data) = post {
                            posts.push(crate::exec::actions::Post {
                                kind,
                                uses: uses.clone(),
                                data,
                                step: step.index,
                            });
                        }
                        outcome
                    } else {
                        let mut on_line = |stream: Stream, line: String| sink.line(stream, &line);
                        Box::pin(crate::exec::actions::execute(
                            uses,
                            &with,
                            &crate::exec::actions::Ctx {
                                run_id: self.opts.run_id,
                                job: job.key.clone(),
                                step_key: format!("{}/{}", job.key, step.id),
                                workspace: self.plan.root.clone(),
                                docker: self.opts.docker.clone(),
                                memory: self.opts.memory.clone(),
                            },
                            timeout,
                            cancel,
                            &mut std::io::sink(),
                            &mut on_line,
                        ))
                        .await
                    };
                    write_outputs(&output_file, &outcome.outputs);
                    skipped_by_action = outcome.skipped;
                    outcome.exit
                }
            };
            // A refused workflow command (`::set-env`) fails the step, as on GitHub.
            let exit = match sink.commands().and_then(|c| c.failure.clone()) {
                Some(why) if exit.success() => Exit::Failed(why),
                _ => exit,
            };
            // A step that declares `generates` succeeds only if it produced them.
            let exit = match self.missing_generates(step, &step_ctx) {
                Some(why) if exit.success() && skipped_by_action.is_none() => {
                    sink.note(&format!("trun: {why}"));
                    Exit::Failed(why)
                }
                _ => exit,
            };
            // Every process of the step is gone: what it wrote is all there is.
            // The outputs file is taken, so a retry starts without it.
            written =
                outputs::Written::scan(&self.opts.tmp_dir, stem.file_name().unwrap_or_default());
            let outs = match written.read(&output_file, outputs::take_kv) {
                // `::set-output` values, unless the file set the same name.
                Ok(mut o) => {
                    if let Some(c) = sink.commands() {
                        for (k, v) in &c.outputs {
                            o.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    o
                }
                Err(e) => {
                    break StepEnd {
                        duration_ms: 0,
                        log_path: None,
                        status: Status::Failure,
                        exit_code: exit.code(),
                        reason: Some(format!("bad step output: {e}")),
                        outputs: BTreeMap::new(),
                        attempt,
                    }
                }
            };
            if let (true, Some(why)) = (exit.success(), skipped_by_action) {
                break StepEnd {
                    duration_ms: 0,
                    log_path: None,
                    status: Status::Skipped,
                    exit_code: None,
                    reason: Some(why),
                    outputs: outs,
                    attempt,
                };
            }
            if exit.success() {
                break StepEnd {
                    duration_ms: 0,
                    log_path: None,
                    status: Status::Success,
                    exit_code: Some(0),
                    reason: None,
                    outputs: outs,
                    attempt,
                };
            }
            if exit == Exit::Cancelled {
                break StepEnd {
                    duration_ms: 0,
                    log_path: None,
                    status: Status::Cancelled,
                    exit_code: None,
                    reason: Some(exit.reason()),
                    outputs: outs,
                    attempt,
                };
            }
            if attempt < step.retry.attempts {
                attempt += 1;
                let delay = step.retry.delay_before(attempt);
                self.events.send(Event::StepRetrying {
                    job: job.key.clone(),
                    step: step.index,
                    attempt,
                    delay_ms: delay.as_millis() as u64,
                    reason: exit.reason(),
                    exit_code: exit.code(),
                });
                sink.note(&format!(
                    "--- {}; retrying in {} (attempt {attempt})",
                    exit.reason(),
                    crate::duration::format(delay)
                ));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = cancel.changed() => break StepEnd { duration_ms: 0, log_path: None, status: Status::Cancelled, exit_code: None, reason: Some("cancelled".into()), outputs: outs, attempt },
                }
            }
            break StepEnd {
                duration_ms: 0,
                log_path: None,
                status: Status::Failure,
                exit_code: exit.code(),
                reason: Some(exit.reason()),
                outputs: outs,
                attempt,
            };
        };
        if let (Some(feeds), Status::Success) = (&self.feeds, end.status) {
            match feeds.collect(&emit_dir, job, step, self.opts.hooks.as_deref()) {
                // Shown with the step's output: where its files went.
                Ok(notes) => notes.iter().for_each(|n| sink.line(Stream::Stderr, n)),
                Err(e) => {
                    sink.note(&format!("trun: {e}"));
                    end.status = Status::Failure;
                    end.exit_code = None;
                    end.reason = Some(e);
                }
            }
        }
        if let Some(c) = sink.commands() {
            // `::set-env` / `::add-path` (when allowed) reach later steps the
            // way `$GITHUB_ENV` / `$GITHUB_PATH` do.
            if !c.env.is_empty() {
                written.add(&env_file);
            }
            if !c.path.is_empty() {
                written.add(&path_file);
            }
            if let Err(e) = append_talk_back(&env_file, &path_file, &c.env, &c.path) {
                sink.line(Stream::Stderr, &format!("trun: warning: {e}"));
            }
        }
        if written.has(&summary_file) {
            self.step_summary(step, &summary_file, &log_path, &mut sink);
        }
        // `$GITHUB_STATE` is for the `post:` of the same action on GitHub; a
        // `run:` step has none, so it is checked and dropped.
        if let Err(e) = written.read(&state_file, outputs::take_kv) {
            sink.line(
                Stream::Stderr,
                &format!("trun: warning: $GITHUB_STATE ignored: {e}"),
            );
        }
        sink.finish();
        *talk_back = written;
        end.duration_ms = step_started.elapsed().as_millis() as u64;
        end.log_path = Some(log_path.display().to_string());
        if let Some(hooks) = &self.opts.hooks {
            hooks.step_logged(&job.key, step, &log_path);
            // Outputs holding a secret are not remembered in the store: the
            // step runs again next time rather than replaying them.
            let secret_outputs = end
                .outputs
                .iter()
                .any(|(k, v)| self.events.masker().reveals(k) || self.events.masker().reveals(v));
            let success = end.status == Status::Success && !secret_outputs;
            hooks.after_step(&job.key, step, success, &end.outputs);
        }
        end
    }
}

impl JobRunner {
    /// What the step wrote to `$GITHUB_STEP_SUMMARY`, masked: kept beside its
    /// log (`NN-step.summary.md`) and sent to the reporters. Over
    /// [`outputs::MAX_STEP_SUMMARY`] it is dropped with an error, as on GitHub.
    fn step_summary(
        &self,
        step: &PlannedStep,
        file: &Path,
        log_path: &Path,
        sink: &mut OutputSink,
    ) {
        let text = match outputs::take_step_summary(file) {
            Ok(Some(t)) if !t.trim().is_empty() => t,
            Ok(_) => return,
            Err(e) => {
                sink.line(Stream::Stderr, &format!("trun: error: {e}"));
                return;
            }
        };
        let markdown = self.events.masker().mask(&text).into_owned();
        let path = log_path.with_extension("summary.md");
        if let Err(e) = super::output::write_beside_log(&path, markdown.as_bytes()) {
            sink.line(
                Stream::Stderr,
                &format!(
                    "trun: warning: cannot keep the step summary in {}: {e}",
                    path.display()
                ),
            );
        }
        self.events.send_masked(Event::StepSummary {
            job: self.job.key.clone(),
            step: step.index,
            markdown,
        });
    }

    /// Why the step's literal `generates` paths (no glob, no `!`) are not
    /// all there after it ran, naming the missing ones; `None` if they are.
    fn missing_generates(&self, step: &PlannedStep, ctx: &Context) -> Option<String> {
        let mut missing = Vec::new();
        for g in &step.generates {
            let g = if g.contains("${{") {
                match self.templates.render(g, ctx) {
                    Ok(r) => r,
                    Err(_) => continue,
                }
            } else {
                g.clone()
            };
            let rel = crate::uptodate::walk::normalize(&g);
            if g.starts_with('!') || rel.is_empty() || rel.contains(['*', '?', '[', '{']) {
                continue;
            }
            if !self.plan.root.join(&rel).exists() {
                missing.push(rel);
            }
        }
        (!missing.is_empty()).then(|| {
            format!(
                "the step succeeded but did not produce {} declared in `generates`: {}",
                if missing.len() == 1 {
                    "a path"
                } else {
                    "paths"
                },
                missing.join(", ")
            )
        })
    }

    /// Start the job's services and container; returns the container id and
    /// the services' network.
    async fn start_container(
        &self,
        spec: &crate::workflow::ContainerSpec,
        env: &[(String, String)],
    ) -> Result<(String, Option<String>), String> {
        let job = &self.job;
        let docker = self
            .opts
            .docker
            .as_ref()
            .ok_or("this job needs Docker, but no connection was made")?;
        let labels = crate::docker::Labels::new(self.opts.run_id, job.key.clone());
        let mut cspec = container_spec(spec);
        cspec.env.extend(env.iter().cloned());
        let mut network = None;
        if !job.services.is_empty() {
            let services: Vec<crate::docker::ServiceSpec> = job
                .services
                .iter()
                .map(|(name, s)| crate::docker::ServiceSpec {
                    name: name.clone(),
                    image: s.image.clone(),
                    env: s
                        .env
                        .iter()
                        .map(|(k, v)| (k.clone(), v.0.clone()))
                        .collect(),
                    command: None,
                    options: s
                        .options
                        .as_deref()
                        .map(|o| o.split_whitespace().map(str::to_string).collect())
                        .unwrap_or_default(),
                })
                .collect();
            let net = docker
                .start_services(&labels, &services)
                .await
                .map_err(|e| format!("services: {e}"))?;
            cspec.network = Some(net.clone());
            network = Some(net);
        }
        let id = docker
            .start_job_container(&cspec, &self.plan.root, &labels)
            .await
            .map_err(|e| format!("container {}: {e}", spec.image))?;
        Ok((id, network))
    }
}

/// The workflow's container settings in the Docker layer's terms.
pub fn container_spec(spec: &crate::workflow::ContainerSpec) -> crate::docker::ContainerSpec {
    crate::docker::ContainerSpec {
        image: spec.image.clone(),
        env: spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
        volumes: spec.volumes.clone(),
        network: spec.network.clone(),
        memory: spec.memory.as_ref().map(|m| m.0.clone()),
        cpus: spec.cpus,
        pids: spec.pids,
        user: spec.user.as_ref().map(|u| u.0.clone()),
        read_only_workspace: false,
        options: spec
            .options
            .as_deref()
            .map(|o| o.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
    }
}

impl StepEnd {
    fn skipped(status: Status, reason: &str) -> StepEnd {
        StepEnd {
            duration_ms: 0,
            log_path: None,
            status,
            exit_code: None,
            reason: Some(reason.into()),
            outputs: BTreeMap::new(),
            attempt: 0,
        }
    }

    fn failed(reason: String) -> StepEnd {
        StepEnd {
            duration_ms: 0,
            log_path: None,
            status: Status::Failure,
            exit_code: None,
            reason: Some(reason),
            outputs: BTreeMap::new(),
            attempt: 1,
        }
    }
}

pub(super) fn render_json(
    t: &Templates,
    v: &Value,
    ctx: &Context,
) -> Result<Value, crate::template::ExprError> {
    Ok(match v {
        Value::String(s) => {
            let trimmed = s.trim();
            if trimmed.starts_with("${{")
                && trimmed.ends_with("}}")
                && trimmed.matches("${{").count() == 1
            {
                t.eval_value(s, ctx)?
            } else {
                Value::String(t.render(s, ctx)?)
            }
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_json(t, x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), render_json(t, x, ctx)?)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// `<tmp>/<job>.<step>.<kind>`: where a step's output, env, path and script files go.
fn tmp_file(prefix: &Path, step: usize, kind: &str) -> PathBuf {
    let mut name = prefix
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{step}.{kind}"));
    prefix.with_file_name(name)
}

/// Appends what `::set-env` and `::add-path` set to the step's `$GITHUB_ENV`
/// and `$GITHUB_PATH` files, never through a link the step planted there.
fn append_talk_back(
    env_file: &Path,
    path_file: &Path,
    env: &[(String, String)],
    path: &[String],
) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let append = |file: &Path, text: String| -> Result<(), String> {
        if text.is_empty() {
            return Ok(());
        }
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(file)
            .and_then(|mut f| {
                if !f.metadata()?.is_file() {
                    return Err(std::io::Error::other("not a regular file"));
                }
                f.write_all(text.as_bytes())
            })
            .map_err(|e| format!("cannot write {}: {e}", file.display()))
    };
    let mut text = String::new();
    for (k, v) in env {
        // A heredoc, so a value with newlines stays one value.
        let mut delim = "TRUN_SET_ENV".to_string();
        while v.lines().any(|l| l == delim) {
            delim.push('_');
        }
        text.push_str(&format!("{k}<<{delim}\n{v}\n{delim}\n"));
    }
    append(env_file, text)?;
    let text: String = path.iter().map(|p| format!("{p}\n")).collect();
    append(path_file, text)
}

/// Outputs of a built-in travel the way a script's do: through its output file.
fn write_outputs(path: &Path, outputs: &BTreeMap<String, String>) {
    if outputs.is_empty() {
        return;
    }
    let text: String = outputs
        .iter()
        .map(|(k, v)| {
            if v.contains('\n') {
                format!("{k}<<TRUN_EOF\n{v}\nTRUN_EOF\n")
            } else {
                format!("{k}={v}\n")
            }
        })
        .collect();
    let _ = outputs::write_fresh(path, text.as_bytes());
}

/// A file-name-safe form of a job key or step id: `test (1, linux)` -> `test-1-linux`.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}
