//! The server's Prometheus metrics: one registry, counters bumped by a
//! [`Reporter`] fed with each run's engine events (so the numbers are the
//! engine's, not the API's guesses), rendered as Prometheus text at `/metrics`.
//!
//! It is not a store of history: counters start at zero with each server.

use crate::event::{Event, Status};
use crate::report::Reporter;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::HashSet;
use std::sync::Arc;

pub struct Metrics {
    registry: Registry,
    pub runs_created: IntCounter,
    pub runs_finished: IntCounterVec,
    pub steps_finished: IntCounterVec,
    pub running_steps: IntGauge,
    pub queue_depth: IntGauge,
    pub step_duration: Histogram,
    pub transitions: IntCounterVec,
    pub jobs_blocked: IntCounter,
    /// Webhook delivery attempts by result: `delivered`, `retried`, `failed`.
    pub webhook_deliveries: IntCounterVec,
    /// Per `trun worker` sharing the server's database, read from it at
    /// each scrape: jobs it runs now, seconds since its heartbeat, and the
    /// attempts it ended by how they ended.
    worker_running: IntGaugeVec,
    worker_heartbeat_age: IntGaugeVec,
    worker_attempts: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let runs_created = IntCounter::new("trun_runs_created_total", "Runs created over the API")?;
        let runs_finished = IntCounterVec::new(
            Opts::new("trun_runs_finished_total", "Runs finished, by final status"),
            &["status"],
        )?;
        let steps_finished = IntCounterVec::new(
            Opts::new("trun_steps_finished_total", "Steps finished, by status"),
            &["status"],
        )?;
        let running_steps = IntGauge::new("trun_running_steps", "Steps running now")?;
        let queue_depth = IntGauge::new("trun_queue_depth", "Runs waiting for the workspace")?;
        let step_duration = Histogram::with_opts(
            HistogramOpts::new(
                "trun_step_duration_seconds",
                "How long steps that ran took, in seconds",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
            ]),
        )?;
        let transitions = IntCounterVec::new(
            Opts::new(
                "trun_status_transitions_total",
                "Status changes of runs and jobs, as recorded in the store",
            ),
            &["from", "to"],
        )?;
        registry.register(Box::new(transitions.clone()))?;
        let jobs_blocked = IntCounter::new(
            "trun_jobs_blocked_by_concurrency_total",
            "Jobs (and runs, for a workflow-level group) that had to wait for a slot of their concurrency group or for another run's instance of the job",
        )?;
        registry.register(Box::new(jobs_blocked.clone()))?;
        registry.register(Box::new(runs_created.clone()))?;
        registry.register(Box::new(runs_finished.clone()))?;
        registry.register(Box::new(steps_finished.clone()))?;
        registry.register(Box::new(running_steps.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(step_duration.clone()))?;
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "trun_webhook_deliveries_total",
                "Webhook delivery attempts, by result (delivered, retried, failed)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(webhook_deliveries.clone()))?;
        let worker_running = IntGaugeVec::new(
            Opts::new("trun_worker_running_jobs", "Jobs each trun worker runs now"),
            &["worker"],
        )?;
        let worker_heartbeat_age = IntGaugeVec::new(
            Opts::new(
                "trun_worker_heartbeat_age_seconds",
                "Seconds since each running trun worker's last heartbeat",
            ),
            &["worker"],
        )?;
        let worker_attempts = IntGaugeVec::new(
            Opts::new(
                "trun_worker_attempts",
                "Job attempts each trun worker ended, by how they ended (done, failed, expired)",
            ),
            &["worker", "state"],
        )?;
        registry.register(Box::new(worker_running.clone()))?;
        registry.register(Box::new(worker_heartbeat_age.clone()))?;
        registry.register(Box::new(worker_attempts.clone()))?;
        Ok(Metrics {
            registry,
            runs_created,
            runs_finished,
            steps_finished,
            running_steps,
            queue_depth,
            step_duration,
            transitions,
            jobs_blocked,
            webhook_deliveries,
            worker_running,
            worker_heartbeat_age,
            worker_attempts,
        })
    }

    /// The per-worker gauges, as the database says now (a stopped worker
    /// keeps its ended attempts and loses its heartbeat age).
    pub fn set_workers(&self, workers: &[crate::state::WorkerInfo], now_ms: i64) {
        self.worker_running.reset();
        self.worker_heartbeat_age.reset();
        self.worker_attempts.reset();
        for w in workers {
            self.worker_running
                .with_label_values(&[w.name.as_str()])
                .set(w.jobs.len() as i64);
            if w.stopped_at.is_none() {
                self.worker_heartbeat_age
                    .with_label_values(&[w.name.as_str()])
                    .set((now_ms - w.heartbeat_at).max(0) / 1000);
            }
            for (state, n) in &w.ended {
                self.worker_attempts
                    .with_label_values(&[w.name.as_str(), state.as_str()])
                    .set(*n);
            }
        }
    }

    pub fn run_finished(&self, status: Status) {
        self.runs_finished
            .with_label_values(&[status.as_str()])
            .inc();
    }

    /// Counts one recorded transition (`from` is `none` for a creation).
    pub fn transition(&self, from: &str, to: &str) {
        self.transitions.with_label_values(&[from, to]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Counts one run's steps as the engine reports them.
pub struct MetricsReporter {
    pub metrics: Arc<Metrics>,
    /// Steps that started and have not finished: a skipped step finishes
    /// without starting, and must not take the running gauge below zero.
    running: HashSet<(String, usize)>,
}

impl MetricsReporter {
    pub fn new(metrics: Arc<Metrics>) -> MetricsReporter {
        MetricsReporter {
            metrics,
            running: HashSet::new(),
        }
    }
}

impl Reporter for MetricsReporter {
    fn event(&mut self, ev: &Event) {
        match ev {
            Event::JobWaiting { .. } => self.metrics.jobs_blocked.inc(),
            Event::StepStarted { job, step, .. } if self.running.insert((job.clone(), *step)) => {
                self.metrics.running_steps.inc();
            }
            Event::StepFinished {
                job,
                step,
                status,
                duration_ms,
                ..
            } => {
                if self.running.remove(&(job.clone(), *step)) {
                    self.metrics.running_steps.dec();
                    self.metrics
                        .step_duration
                        .observe(*duration_ms as f64 / 1000.0);
                }
                self.metrics
                    .steps_finished
                    .with_label_values(&[status.as_str()])
                    .inc();
            }
            _ => {}
        }
    }

    /// A run that ended without finishing its steps (cancelled, aborted)
    /// leaves none running.
    fn finish(&mut self) {
        for _ in self.running.drain() {
            self.metrics.running_steps.dec();
        }
    }
}
