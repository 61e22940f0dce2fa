//! Jobs whose matrix an earlier job computes
//! (`matrix: ${{ fromJSON(needs.setup.outputs.matrix) }}`): when the job is
//! ready, evaluate the matrix, then run one leg per combination, each a job
//! instance of its own (`test (a)`, `test (b)`), and report the whole as the
//! planned job. Legs honour `max-parallel`, `fail-fast` and the run's one `-j`.

use super::job::{JobResult, JobRunner};
use super::{Events, RunOptions};
use crate::event::{now_ms, Event, Status};
use crate::plan::{DynamicMatrix, Plan, PlannedJob};
use crate::template::{Context, Engine as Templates};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{watch, Semaphore};

pub struct FanOut {
    pub plan: Arc<Plan>,
    pub job: PlannedJob,
    pub opts: RunOptions,
    pub events: Events,
    pub templates: Arc<Templates>,
    pub base_ctx: Context,
    /// The run's `-j` slots, shared with every other job: a leg runs only
    /// holding one.
    pub slots: Arc<Semaphore>,
    /// Where the legs' steps send the files they emit.
    pub feeds: Option<Arc<super::fanout::Feeds>>,
    /// The outputs of the jobs this one needs, by key: what a leg that runs
    /// elsewhere ([`RunOptions::dispatch`]) is sent.
    pub needs_outputs: BTreeMap<String, BTreeMap<String, String>>,
}

/// The job instance that runs one leg of a computed matrix (`test (a)`).
pub fn leg_job(planned: &PlannedJob, leg: &Map<String, Value>) -> PlannedJob {
    let mut job = planned.clone();
    job.key = crate::plan::leg_key(&planned.job_id, leg);
    if job.name == planned.key {
        job.name = job.key.clone();
    }
    job.matrix = leg.clone();
    job.dynamic_matrix = None;
    job
}

impl FanOut {
    pub async fn run(self, mut cancel: watch::Receiver<bool>) -> JobResult {
        let started = std::time::Instant::now();
        let Some(dm) = &self.job.dynamic_matrix else {
            return self.finish(
                Status::Failure,
                Some("no matrix".into()),
                BTreeMap::new(),
                started,
            );
        };
        let legs = match legs(&self.templates, dm, &self.base_ctx) {
            Ok(l) => l,
            Err(e) => {
                return self.finish(
                    Status::Failure,
                    Some(format!("matrix: {e}")),
                    BTreeMap::new(),
                    started,
                )
            }
        };
        let width = self
            .job
            .max_parallel
            .map(|m| m as usize)
            .unwrap_or(Semaphore::MAX_PERMITS)
            .clamp(1, Semaphore::MAX_PERMITS);
        let width = Arc::new(Semaphore::new(width));
        let (stop_tx, _) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        // Keys only some legs have (from `include`) read as null in the others.
        let mut all_keys: Vec<String> = Vec::new();
        for leg in &legs {
            for k in leg.keys() {
                if !all_keys.contains(k) {
                    all_keys.push(k.clone());
                }
            }
        }
        for leg in legs {
            let job = leg_job(&self.job, &leg);
            if let Some(d) = self.opts.dispatch.clone() {
                // Elsewhere: the leg's `-j` slot is held here while it runs there.
                let (width, slots) = (width.clone(), self.slots.clone());
                let (run_id, planned) = (self.opts.run_id, self.job.key.clone());
                let (needs, events) = (self.needs_outputs.clone(), self.events.clone());
                let feeds = self.feeds.clone();
                let stop = stop_tx.subscribe();
                tasks.spawn(async move {
                    let key = job.key.clone();
                    let Some(_held) = super::dispatch::hold_slots(width, slots, &stop).await else {
                        return (key, None);
                    };
                    let run = d.run_job(super::dispatch::Dispatched {
                        run_id,
                        job,
                        of: Some(super::dispatch::Of::Leg {
                            planned,
                            matrix: leg,
                        }),
                        needs,
                        events,
                        cancel: stop,
                        feeds,
                    });
                    (key, Some(run.await))
                });
                continue;
            }
            let mut ctx = self.base_ctx.clone();
            ctx.matrix = leg;
            for k in &all_keys {
                ctx.matrix.entry(k.clone()).or_insert(Value::Null);
            }
            let runner = JobRunner {
                plan: self.plan.clone(),
                job,
                opts: self.opts.clone(),
                events: self.events.clone(),
                templates: self.templates.clone(),
                base_ctx: ctx,
                feeds: self.feeds.clone(),
            };
            let width = width.clone();
            let slots = self.slots.clone();
            let mut stop = stop_tx.subscribe();
            tasks.spawn(async move {
                // `max-parallel` first, then the leg itself (not running in
                // another run), then one of the run's `-j` slots.
                let Ok(_width) = width.acquire_owned().await else {
                    return (runner.job.key.clone(), None);
                };
                let Ok(_hold) = super::shared::hold(&runner, &mut stop).await else {
                    return (runner.job.key.clone(), None);
                };
                let Ok(_permit) = slots.acquire_owned().await else {
                    return (runner.job.key.clone(), None);
                };
                if *stop.borrow() {
                    return (runner.job.key.clone(), None);
                }
                let key = runner.job.key.clone();
                (key, Some(runner.run(stop).await))
            });
        }
        let mut status = Status::Success;
        let mut outputs = BTreeMap::new();
        let mut failed = Vec::new();
        loop {
            tokio::select! {
                next = tasks.join_next() => {
                    let Some(joined) = next else { break };
                    let Ok((key, result)) = joined else { continue };
                    match result {
                        None => {
                            self.events.send(Event::JobFinished { job: key, status: Status::Cancelled, reason: Some("cancelled".into()), at: now_ms(), duration_ms: 0, outputs: BTreeMap::new() });
                        }
                        Some(r) => {
                            outputs.extend(r.outputs);
                            if r.status == Status::Failure && !r.forgiven {
                                failed.push(key);
                                status = Status::Failure;
                                if self.job.fail_fast {
                                    let _ = stop_tx.send(true);
                                }
                            } else if r.status == Status::Cancelled && status == Status::Success {
                                status = Status::Cancelled;
                            }
                        }
                    }
                }
                r = cancel.changed() => {
                    if r.is_err() || *cancel.borrow() {
                        let _ = stop_tx.send(true);
                    }
                }
            }
        }
        let reason = (!failed.is_empty()).then(|| format!("failed: {}", failed.join(", ")));
        self.finish(status, reason, outputs, started)
    }

    fn finish(
        &self,
        status: Status,
        reason: Option<String>,
        outputs: BTreeMap<String, String>,
        started: std::time::Instant,
    ) -> JobResult {
        self.events.send(Event::JobFinished {
            job: self.job.key.clone(),
            status,
            reason,
            at: now_ms(),
            duration_ms: started.elapsed().as_millis() as u64,
            outputs: outputs.clone(),
        });
        JobResult {
            status,
            outputs,
            forgiven: status == Status::Failure && self.job.continue_on_error,
        }
    }
}

/// Evaluate a computed matrix into its legs.
pub fn legs(
    t: &Templates,
    dm: &DynamicMatrix,
    ctx: &Context,
) -> Result<Vec<Map<String, Value>>, String> {
    let mut axes = dm.axes.clone();
    let mut include = dm.include.clone();
    let mut exclude = dm.exclude.clone();
    if let Some(e) = &dm.expr {
        let v = t.eval_value(e, ctx).map_err(|e| e.message)?;
        let Value::Object(obj) = v else {
            return Err(format!("the expression gave {v}, not a mapping of axes"));
        };
        for (k, v) in obj {
            match (k.as_str(), v) {
                ("include" | "exclude", Value::Array(list)) => {
                    let maps: Vec<Map<String, Value>> = list
                        .into_iter()
                        .map(|x| match x {
                            Value::Object(m) => Ok(m),
                            other => Err(format!("`{k}` entries must be mappings, got {other}")),
                        })
                        .collect::<Result<_, _>>()?;
                    if k == "include" {
                        include.extend(maps);
                    } else {
                        exclude.extend(maps);
                    }
                }
                (_, Value::Array(values)) => axes.push((k, values)),
                (_, other) => return Err(format!("axis `{k}` must be a list, got {other}")),
            }
        }
    }
    for (k, e) in &dm.dynamic {
        match t.eval_value(e, ctx).map_err(|e| e.message)? {
            Value::Array(values) => axes.push((k.clone(), values)),
            other => return Err(format!("axis `{k}` must be a list, got {other}")),
        }
    }
    if axes.iter().any(|(_, v)| v.is_empty()) && include.is_empty() {
        return Err("the matrix has an empty axis: no legs to run".into());
    }
    crate::plan::expand(&axes, &include, &exclude)
}
