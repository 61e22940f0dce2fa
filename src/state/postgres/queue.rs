//! The job queue between a coordinating trun and `trun worker`s, in
//! PostgreSQL: the shape every PostgreSQL work queue shares (graphile-worker,
//! River, Oban). A row per attempt of a job of a run; a worker claims the
//! oldest queued row whose labels it has with `FOR UPDATE SKIP LOCKED`,
//! holds it by a lease it renews (heartbeat), and completes it only while the
//! row is still its own, running attempt — so the late result of a worker
//! that lost its lease is refused. Whoever notices an expired lease (a
//! worker, the coordinator) marks that attempt `expired` and queues the next,
//! up to [`MAX_ATTEMPTS`]. Every change that someone waits for is announced
//! with `NOTIFY` ([`JOBS_CHANNEL`], [`DONE_CHANNEL`]); waiters `LISTEN`
//! ([`Listener`]) instead of polling.
//!
//! It is not part of the [`Store`](crate::state::Store) trait: handing jobs to
//! other machines needs a database they share, so the embedded SQLite store
//! has no queue. It decides nothing about jobs (the engine does); it only
//! moves them and their results.

use super::{connect, off_runtime};
use crate::event::now_ms;
use crate::state::Result;
use postgres::Client;
use std::sync::Mutex;
use std::time::Duration;

/// Workers are told of queued work on this channel.
pub const JOBS_CHANNEL: &str = "trun_jobs";
/// The coordinator is told of finished (or expired) attempts on this channel.
pub const DONE_CHANNEL: &str = "trun_jobs_done";
/// A job whose worker died this many times is not queued again: it failed.
pub const MAX_ATTEMPTS: i32 = 3;

/// One attempt of a job, as queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub run_id: i64,
    pub job_key: String,
    pub attempt: i32,
    pub labels: Vec<String>,
    pub payload: String,
    /// queued, running, done, expired, cancelled.
    pub state: String,
    pub worker: Option<String>,
    pub claimed_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub result: Option<String>,
}

/// An attempt a worker holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub run_id: i64,
    pub job_key: String,
    pub attempt: i32,
    pub payload: String,
}

/// A worker as `GET /api/v1/workers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct WorkerInfo {
    pub name: String,
    pub labels: Vec<String>,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub stopped_at: Option<i64>,
    /// `run:job:attempt` of the attempts it holds now.
    pub jobs: Vec<String>,
    /// How many attempts it ended, by how they ended (`done`, `failed`,
    /// `expired`: its lease ran out).
    pub ended: std::collections::BTreeMap<String, i64>,
}

/// The queue, on a connection of its own.
pub struct JobQueue {
    /// `None` only while dropping.
    client: Mutex<Option<Client>>,
}

impl Drop for JobQueue {
    fn drop(&mut self) {
        // Closing the connection blocks on the driver's runtime, which
        // panics on a thread inside another (a server's handler state).
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        off_runtime(move || drop(client));
    }
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue").finish_non_exhaustive()
    }
}

fn notify(c: &mut impl postgres::GenericClient, channel: &str, text: &str) -> Result<()> {
    c.execute("SELECT pg_notify($1, $2)", &[&channel, &text])?;
    Ok(())
}

fn queued_job(r: &postgres::Row) -> QueuedJob {
    QueuedJob {
        run_id: r.get(0),
        job_key: r.get(1),
        attempt: r.get(2),
        labels: r.get(3),
        payload: r.get(4),
        state: r.get(5),
        worker: r.get(6),
        claimed_at: r.get(7),
        finished_at: r.get(8),
        result: r.get(9),
    }
}

const COLUMNS: &str = "run_id, job_key, attempt, labels, payload, state, worker, claimed_at, \
                       finished_at, result";

impl JobQueue {
    /// Connects to `url` (and brings the schema up to date).
    pub fn open(url: &str) -> Result<JobQueue> {
        JobQueue::open_with(url, None)
    }

    /// [`JobQueue::open`] inside `schema`: each test gets its own.
    pub fn open_in_schema(url: &str, schema: &str) -> Result<JobQueue> {
        JobQueue::open_with(url, Some(schema))
    }

    fn open_with(url: &str, schema: Option<&str>) -> Result<JobQueue> {
        Ok(JobQueue {
            client: Mutex::new(Some(connect(url, schema)?)),
        })
    }

    fn with<R: Send>(&self, f: impl FnOnce(&mut Client) -> Result<R> + Send) -> Result<R> {
        off_runtime(|| {
            let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
            match client.as_mut() {
                Some(c) => f(c),
                None => Err(crate::state::StateError::Corrupt(
                    "the job queue's connection is closed".into(),
                )),
            }
        })
    }

    /// Queues attempt 1 of `job_key` of run `run_id` and wakes the workers.
    /// Queuing a job that has an attempt already does nothing (the key is
    /// the run, the job and the attempt).
    pub fn enqueue(
        &self,
        run_id: i64,
        job_key: &str,
        labels: &[String],
        payload: &str,
    ) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO job_queue (run_id, job_key, attempt, labels, payload, state, enqueued_at)
                 VALUES ($1, $2, 1, $3, $4, 'queued', $5)
                 ON CONFLICT (run_id, job_key, attempt) DO NOTHING",
                &[&run_id, &job_key, &labels, &payload, &now_ms()],
            )?;
            notify(&mut tx, JOBS_CHANNEL, "")?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Claims the oldest queued attempt whose labels are all among `labels`
    /// for `worker`, until `lease` from now. Rows another claim holds are
    /// skipped, not waited for.
    pub fn claim(
        &self,
        worker: &str,
        labels: &[String],
        lease: Duration,
    ) -> Result<Option<Claimed>> {
        self.with(|c| {
            // Read the clock once the connection is ours: the heartbeat may
            // hold it for a while (rescuing, with a later time), and a time
            // read before would date the claim before an attempt it claims
            // was queued, and start its lease already partly spent.
            let now = now_ms();
            let until = now + lease.as_millis() as i64;
            let row = c.query_opt(
                "UPDATE job_queue SET state = 'running', worker = $1, claimed_at = $2, lease_until = $3
                 WHERE (run_id, job_key, attempt) = (
                     SELECT run_id, job_key, attempt FROM job_queue
                     WHERE state = 'queued' AND labels <@ $4
                     ORDER BY enqueued_at, run_id, job_key, attempt
                     LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING run_id, job_key, attempt, payload",
                &[&worker, &now, &until, &labels],
            )?;
            Ok(row.map(|r| Claimed {
                run_id: r.get(0),
                job_key: r.get(1),
                attempt: r.get(2),
                payload: r.get(3),
            }))
        })
    }

    /// Renews the leases of every attempt `worker` runs and records its
    /// heartbeat. Returns the attempts it held that are no longer its own,
    /// running ones (cancelled, or expired and queued again): it should stop them.
    pub fn heartbeat(
        &self,
        worker: &str,
        held: &[(i64, String, i32)],
        lease: Duration,
    ) -> Result<Vec<(i64, String, i32)>> {
        self.with(|c| {
            // Once the connection is ours, as in `claim`.
            let now = now_ms();
            let until = now + lease.as_millis() as i64;
            let mut tx = c.transaction()?;
            tx.execute(
                "UPDATE job_queue SET lease_until = $2 WHERE worker = $1 AND state = 'running'",
                &[&worker, &until],
            )?;
            tx.execute(
                "UPDATE workers SET heartbeat_at = $2 WHERE name = $1",
                &[&worker, &now],
            )?;
            let mut lost = Vec::new();
            for (run, job, attempt) in held {
                let mine = tx.query_opt(
                    "SELECT 1 FROM job_queue WHERE run_id = $1 AND job_key = $2 AND attempt = $3
                       AND worker = $4 AND state = 'running'",
                    &[run, job, attempt, &worker],
                )?;
                if mine.is_none() {
                    lost.push((*run, job.clone(), *attempt));
                }
            }
            tx.commit()?;
            Ok(lost)
        })
    }

    /// Records the result of an attempt, if it is still `worker`'s running
    /// attempt; false (and nothing written) otherwise: its lease expired and
    /// the job went to another worker, or the run was cancelled.
    pub fn complete(
        &self,
        run_id: i64,
        job_key: &str,
        attempt: i32,
        worker: &str,
        result: &str,
    ) -> Result<bool> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "UPDATE job_queue SET state = 'done', result = $5, finished_at = $6
                 WHERE run_id = $1 AND job_key = $2 AND attempt = $3 AND worker = $4
                   AND state = 'running'",
                &[&run_id, &job_key, &attempt, &worker, &result, &now_ms()],
            )?;
            if n > 0 {
                notify(
                    &mut tx,
                    DONE_CHANNEL,
                    &format!("{run_id}:{job_key}:{attempt}"),
                )?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
    }

    /// Marks every running attempt whose lease ended before `now` expired and
    /// queues the next attempt of its job (none after [`MAX_ATTEMPTS`]), in
    /// one transaction; wakes workers and coordinators. Returns how many
    /// attempts expired.
    pub fn rescue(&self, now: i64) -> Result<usize> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let expired = tx.query(
                "UPDATE job_queue SET state = 'expired', finished_at = $1
                 WHERE (run_id, job_key, attempt) IN (
                     SELECT run_id, job_key, attempt FROM job_queue
                     WHERE state = 'running' AND lease_until < $1
                     FOR UPDATE SKIP LOCKED)
                 RETURNING run_id, job_key, attempt, labels, payload",
                &[&now],
            )?;
            for r in &expired {
                let attempt: i32 = r.get(2);
                if attempt < MAX_ATTEMPTS {
                    let labels: Vec<String> = r.get(3);
                    let payload: String = r.get(4);
                    tx.execute(
                        "INSERT INTO job_queue (run_id, job_key, attempt, labels, payload, state, enqueued_at)
                         VALUES ($1, $2, $3, $4, $5, 'queued', $6)
                         ON CONFLICT (run_id, job_key, attempt) DO NOTHING",
                        &[&r.get::<_, i64>(0), &r.get::<_, String>(1), &(attempt + 1), &labels, &payload, &now],
                    )?;
                }
            }
            if !expired.is_empty() {
                notify(&mut tx, JOBS_CHANNEL, "")?;
                notify(&mut tx, DONE_CHANNEL, "")?;
            }
            tx.commit()?;
            Ok(expired.len())
        })
    }

    /// Cancels the attempts of run `run_id` not yet done (the run was
    /// cancelled): queued ones are never claimed, running ones are told at
    /// their next heartbeat, and their results are refused.
    pub fn cancel_run(&self, run_id: i64) -> Result<usize> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE job_queue SET state = 'cancelled', finished_at = $2
                 WHERE run_id = $1 AND state IN ('queued', 'running')",
                &[&run_id, &now_ms()],
            )?;
            Ok(n as usize)
        })
    }

    /// Cancels the attempt of one job not yet done (see [`JobQueue::cancel_run`]).
    pub fn cancel_job(&self, run_id: i64, job_key: &str) -> Result<usize> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE job_queue SET state = 'cancelled', finished_at = $3
                 WHERE run_id = $1 AND job_key = $2 AND state IN ('queued', 'running')",
                &[&run_id, &job_key, &now_ms()],
            )?;
            Ok(n as usize)
        })
    }

    /// Every attempt of a job, oldest first.
    pub fn attempts(&self, run_id: i64, job_key: &str) -> Result<Vec<QueuedJob>> {
        self.with(|c| {
            let rows = c.query(
                &format!(
                    "SELECT {COLUMNS} FROM job_queue WHERE run_id = $1 AND job_key = $2 ORDER BY attempt"
                ),
                &[&run_id, &job_key],
            )?;
            Ok(rows.iter().map(queued_job).collect())
        })
    }

    /// Every attempt of every job of a run, by job then attempt.
    pub fn run_attempts(&self, run_id: i64) -> Result<Vec<QueuedJob>> {
        self.with(|c| {
            let rows = c.query(
                &format!(
                    "SELECT {COLUMNS} FROM job_queue WHERE run_id = $1 ORDER BY job_key, attempt"
                ),
                &[&run_id],
            )?;
            Ok(rows.iter().map(queued_job).collect())
        })
    }

    /// Records a worker starting (or starting again under the same name).
    pub fn register_worker(&self, name: &str, labels: &[String]) -> Result<()> {
        let now = now_ms();
        self.with(|c| {
            c.execute(
                "INSERT INTO workers (name, labels, started_at, heartbeat_at) VALUES ($1, $2, $3, $3)
                 ON CONFLICT (name) DO UPDATE SET labels = excluded.labels,
                    started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
                    stopped_at = NULL",
                &[&name, &labels, &now],
            )?;
            Ok(())
        })
    }

    /// Records a worker that stopped (drained, or told to).
    pub fn worker_stopped(&self, name: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE workers SET stopped_at = $2 WHERE name = $1",
                &[&name, &now_ms()],
            )?;
            Ok(())
        })
    }

    /// Every worker that ever registered, by name, with the attempts it runs.
    pub fn workers(&self) -> Result<Vec<WorkerInfo>> {
        self.with(|c| {
            let rows = c.query(
                "SELECT w.name, w.labels, w.started_at, w.heartbeat_at, w.stopped_at,
                        COALESCE(ARRAY_AGG(q.run_id || ':' || q.job_key || ':' || q.attempt
                                           ORDER BY q.claimed_at)
                                 FILTER (WHERE q.run_id IS NOT NULL), '{}')
                 FROM workers w
                 LEFT JOIN job_queue q ON q.worker = w.name AND q.state = 'running'
                 GROUP BY w.name ORDER BY w.name",
                &[],
            )?;
            let mut workers: Vec<WorkerInfo> = rows
                .iter()
                .map(|r| WorkerInfo {
                    name: r.get(0),
                    labels: r.get(1),
                    started_at: r.get(2),
                    heartbeat_at: r.get(3),
                    stopped_at: r.get(4),
                    jobs: r.get(5),
                    ended: Default::default(),
                })
                .collect();
            for r in c.query(
                "SELECT worker, state, COUNT(*) FROM job_queue
                 WHERE worker IS NOT NULL AND state NOT IN ('queued', 'running')
                 GROUP BY worker, state",
                &[],
            )? {
                let (name, state, n): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
                if let Some(w) = workers.iter_mut().find(|w| w.name == name) {
                    w.ended.insert(state, n);
                }
            }
            Ok(workers)
        })
    }
}

/// A connection that `LISTEN`s on some channels. Use it from a plain thread
/// (it blocks).
pub struct Listener {
    client: Client,
}

impl Listener {
    /// Listens on `channels` (names of this module's constants).
    pub fn open(url: &str, schema: Option<&str>, channels: &[&str]) -> Result<Listener> {
        let mut client = connect(url, schema)?;
        for ch in channels {
            client.batch_execute(&format!("LISTEN {ch}"))?;
        }
        Ok(Listener { client })
    }

    /// Waits up to `timeout` for a notification; true when one (or more)
    /// came. Every notification already waiting is consumed.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let mut n = self.client.notifications();
        let mut got = false;
        {
            let mut it = n.timeout_iter(timeout);
            use postgres::fallible_iterator::FallibleIterator;
            if it.next()?.is_some() {
                got = true;
            }
        }
        if got {
            let mut more = n.iter();
            use postgres::fallible_iterator::FallibleIterator;
            while more.next()?.is_some() {}
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue in a schema of its own, dropped afterwards.
    struct Schema {
        url: String,
        name: String,
    }

    impl Schema {
        fn new(tag: &str) -> Schema {
            Schema {
                url: crate::state::tests::test_database_url(),
                name: format!("trun_queue_{tag}_{}", std::process::id()),
            }
        }

        fn open(&self) -> JobQueue {
            JobQueue::open_in_schema(&self.url, &self.name).expect("open the job queue")
        }
    }

    impl Drop for Schema {
        fn drop(&mut self) {
            if let Ok(mut c) = Client::connect(&self.url, postgres::NoTls) {
                let _ =
                    c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
            }
        }
    }

    const LEASE: Duration = Duration::from_secs(60);

    #[test]
    fn a_dead_workers_late_result_is_refused() {
        let s = Schema::new("late");
        let q = s.open();
        q.enqueue(7, "build", &[], "{}").unwrap();
        let a = q.claim("a", &[], LEASE).unwrap().expect("a claims");
        assert_eq!((a.run_id, a.job_key.as_str(), a.attempt), (7, "build", 1));
        assert_eq!(q.claim("b", &[], LEASE).unwrap(), None, "claimed twice");
        // a stops answering: its lease ends, the job is queued again.
        assert_eq!(
            q.rescue(now_ms() + LEASE.as_millis() as i64 + 1).unwrap(),
            1
        );
        let b = q
            .claim("b", &[], LEASE)
            .unwrap()
            .expect("b claims the retry");
        assert_eq!(b.attempt, 2);
        // a comes back with its result: refused; b's is taken.
        assert!(!q.complete(7, "build", 1, "a", "{\"late\":true}").unwrap());
        assert!(!q.complete(7, "build", 2, "a", "{\"late\":true}").unwrap());
        assert!(q.complete(7, "build", 2, "b", "{}").unwrap());
        assert!(!q.complete(7, "build", 2, "b", "{\"twice\":true}").unwrap());
        let rows = q.attempts(7, "build").unwrap();
        let states: Vec<(&str, Option<&str>, Option<&str>)> = rows
            .iter()
            .map(|r| (r.state.as_str(), r.worker.as_deref(), r.result.as_deref()))
            .collect();
        assert_eq!(
            states,
            [
                ("expired", Some("a"), None),
                ("done", Some("b"), Some("{}"))
            ]
        );
        // a's heartbeat tells it the attempt is no longer its own.
        let lost = q.heartbeat("a", &[(7, "build".into(), 1)], LEASE).unwrap();
        assert_eq!(lost, [(7, "build".to_string(), 1)]);
    }

    #[test]
    fn claims_skip_each_other_and_respect_labels() {
        let s = Schema::new("skip");
        let q1 = s.open();
        let q2 = s.open();
        q1.enqueue(1, "x", &[], "{}").unwrap();
        q1.enqueue(1, "y", &["gpu".into()], "{}").unwrap();
        q1.enqueue(1, "x", &[], "{}").unwrap(); // the same key: still one row
        let a = q1.claim("a", &[], LEASE).unwrap().unwrap();
        assert_eq!(a.job_key, "x");
        // Only a worker with the label gets `y`.
        assert_eq!(q2.claim("b", &[], LEASE).unwrap(), None);
        let b = q2
            .claim("b", &["gpu".into(), "linux".into()], LEASE)
            .unwrap()
            .unwrap();
        assert_eq!(b.job_key, "y");
        let workers = {
            q1.register_worker("a", &[]).unwrap();
            q1.workers().unwrap()
        };
        assert_eq!(workers.len(), 1);
        assert_eq!(workers[0].jobs, ["1:x:1"]);
    }

    #[test]
    fn a_job_lost_too_often_is_not_queued_again() {
        let s = Schema::new("lost");
        let q = s.open();
        q.enqueue(3, "flaky", &[], "{}").unwrap();
        for attempt in 1..=MAX_ATTEMPTS {
            let c = q.claim("w", &[], LEASE).unwrap().expect("queued again");
            assert_eq!(c.attempt, attempt);
            q.rescue(now_ms() + LEASE.as_millis() as i64 + 1).unwrap();
        }
        assert_eq!(q.claim("w", &[], LEASE).unwrap(), None);
        assert!(q
            .attempts(3, "flaky")
            .unwrap()
            .iter()
            .all(|r| r.state == "expired"));
    }
}
