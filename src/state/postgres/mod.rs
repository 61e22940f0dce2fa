//! The shared backend: PostgreSQL, for several machines (or several
//! workspaces) writing one history. `--db postgres://…` or `TRUN_DATABASE_URL`.
//!
//! Same tables, same rules as the SQLite backend, its own migration list
//! (`trun_schema_version`). The driver is the `postgres` crate, the synchronous
//! face of `tokio-postgres`: [`Store`] is synchronous, and that crate blocks on
//! a small runtime of its own. Blocking on a runtime panics on a thread that is
//! already inside one (trun calls the store from async tasks in places), so a
//! call made on such a thread runs on a scoped helper thread instead; a call
//! from a plain thread (the recorder, the CLI) runs where it is. One connection
//! behind a mutex, as with SQLite: a run's writes are small batches.
//!
//! Claims that must be exclusive across processes use row locks
//! (`FOR UPDATE SKIP LOCKED` for the webhook outbox) or a transaction-scoped
//! advisory lock (a step's definition versions). The machine-local stat cache
//! is not here: file paths and inodes mean nothing on another machine, so it
//! stays in the workspace's SQLite file.

mod control;
mod migrations;
mod queue;
mod runs;

use super::records::{
    Claim, DefinitionRecord, DefinitionRef, GradeRecord, Hash, NewSuccess, OutputRecord,
    PrunedSuccesses, Queued, Retry, RunDetail, RunSummary, ServerRun, StepState, SuccessRef,
};
use super::transition::{Illegal, Transition};
use super::webhooks::{
    NewWebhookDelivery, WebhookAttempt, WebhookDelivery, WebhookDeliveryRecord, WebhookNext,
};
use super::{to_json, Artifact, Result, StateError, Store};
use crate::event::{now_ms, Event, JobInfo, Status};
use postgres::{Client, NoTls};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Mutex;

pub use queue::{
    Claimed, JobQueue, Listener, QueuedJob, WorkerInfo, DONE_CHANNEL, JOBS_CHANNEL, MAX_ATTEMPTS,
};

/// Whether `db` names a PostgreSQL database rather than a file.
pub fn is_postgres_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// An open PostgreSQL store. See the module documentation.
pub struct PostgresStore {
    client: Mutex<Client>,
    location: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish()
    }
}

impl From<postgres::Error> for StateError {
    fn from(e: postgres::Error) -> StateError {
        StateError::Backend(Box::new(PgError(e)))
    }
}

/// The driver's error, shown with its cause: by itself `postgres::Error`
/// says only "db error" and keeps the server's message in its source.
#[derive(Debug)]
struct PgError(postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::error::Error::source(&self.0) {
            Some(cause) => write!(f, "{}: {cause}", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// PostgreSQL's `text` cannot hold a NUL character, which SQLite stores: a
/// NUL in a name, a reason or a key (a workflow may write `"a\0b"`) is stored
/// as U+FFFD, the same way wherever it is written and looked up.
pub(super) fn nul_free(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// A connection to `url` (inside `schema` when given) with the schema
/// brought up to date: what the store and the job queue start from.
fn connect(url: &str, schema: Option<&str>) -> Result<Client> {
    let location = redact_url(url);
    // The driver's "error connecting to server" says why only in its source.
    let open_err = |e: postgres::Error| {
        let why = std::error::Error::source(&e)
            .map(|s| format!("{e}: {s}"))
            .unwrap_or_else(|| e.to_string());
        StateError::Open {
            path: location.clone().into(),
            source: why.into(),
        }
    };
    let mut client = off_runtime(|| -> Result<Client> {
        let mut client = Client::connect(url, NoTls).map_err(open_err)?;
        if let Some(schema) = schema {
            let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {quoted}; SET search_path TO {quoted}"
                ))
                .map_err(open_err)?;
        }
        Ok(client)
    })?;
    off_runtime(|| migrations::migrate(&mut client, &location))?;
    Ok(client)
}

/// Runs `f` where blocking on the driver's runtime is allowed: here, or on a
/// scoped thread when this thread is inside a tokio runtime.
fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// `url` without its password (and without any other query option), for
/// messages: `postgres://user@host:port/db`.
pub fn redact_url(url: &str) -> String {
    let Ok(config) = postgres::Config::from_str(url) else {
        // Not parseable: say which scheme, never the rest (it may hold a password).
        return "postgres://(unparseable URL)".to_string();
    };
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match ports.get(i).or(ports.first()) {
                Some(p) => format!("{host}:{p}"),
                None => host,
            }
        })
        .collect();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

impl PostgresStore {
    /// Connects to `url`, brings the schema up to date and marks runs whose
    /// process (on this host) has died as interrupted.
    pub fn open(url: &str) -> Result<PostgresStore> {
        Self::open_with(url, None)
    }

    /// [`PostgresStore::open`] inside `schema` (created if missing): each test
    /// gets a schema of its own in one database.
    pub fn open_in_schema(url: &str, schema: &str) -> Result<PostgresStore> {
        Self::open_with(url, Some(schema))
    }

    fn open_with(url: &str, schema: Option<&str>) -> Result<PostgresStore> {
        let location = redact_url(url);
        let client = connect(url, schema)?;
        let store = PostgresStore {
            client: Mutex::new(client),
            location,
        };
        store.mark_interrupted()?;
        Ok(store)
    }

    /// Runs `f` on the connection, off any tokio runtime.
    fn with<R: Send>(&self, f: impl FnOnce(&mut Client) -> Result<R> + Send) -> Result<R> {
        off_runtime(|| {
            let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut client)
        })
    }
}

fn hash_from(bytes: &[u8]) -> Hash {
    <Hash>::try_from(bytes).unwrap_or([0; 32])
}

/// The state of each of `keys`, in their order: the newest definition and
/// the last success, in one query.
fn states_of(c: &mut Client, keys: &[&str]) -> Result<Vec<StepState>> {
    c.query(
        "SELECT d.version, d.def_hash, s.id, s.fingerprint, s.def_hash, s.def_version
         FROM unnest($1::TEXT[]) WITH ORDINALITY AS q(k, i)
         LEFT JOIN LATERAL (SELECT version, def_hash FROM uptodate_definition
                            WHERE step_key = q.k ORDER BY version DESC LIMIT 1) d ON TRUE
         LEFT JOIN uptodate_latest l ON l.step_key = q.k
         LEFT JOIN uptodate_success s ON s.id = l.success_id
         ORDER BY q.i",
        &[&keys],
    )?
    .iter()
    .map(|r| step_state_of(r, 0))
    .collect()
}

/// A step's state from columns `at..at + 6` of `r`: the newest definition's
/// version and hash, then the last success's id, fingerprint, definition
/// hash and version (NULL where there is none).
fn step_state_of(r: &postgres::Row, at: usize) -> Result<StepState> {
    let definition = match r.get::<_, Option<i64>>(at) {
        Some(version) => Some(DefinitionRef {
            version: runs::small(version)?,
            hash: hash_from(r.get(at + 1)),
        }),
        None => None,
    };
    let last_success = match r.get::<_, Option<i64>>(at + 2) {
        Some(id) => Some(SuccessRef {
            id,
            fingerprint: hash_from(r.get(at + 3)),
            def_hash: hash_from(r.get(at + 4)),
            def_version: runs::small(r.get(at + 5))?,
        }),
        None => None,
    };
    Ok(StepState {
        definition,
        last_success,
    })
}

/// A recorded output from columns `at..at + 4` of `r`: path, hash, mode, size.
fn output_of(r: &postgres::Row, at: usize) -> Result<OutputRecord> {
    Ok(OutputRecord {
        path: r.get(at),
        hash: hash_from(r.get(at + 1)),
        mode: runs::small(r.get(at + 2))?,
        size: r.get::<_, i64>(at + 3).max(0) as u64,
    })
}

fn latest_definition(
    client: &mut impl postgres::GenericClient,
    key: &str,
) -> Result<Option<DefinitionRef>> {
    client
        .query_opt(
            "SELECT version, def_hash FROM uptodate_definition WHERE step_key = $1
             ORDER BY version DESC LIMIT 1",
            &[&key],
        )?
        .map(|r| -> Result<DefinitionRef> {
            Ok(DefinitionRef {
                version: runs::small(r.get(0))?,
                hash: hash_from(r.get(1)),
            })
        })
        .transpose()
}

fn set_latest_success(
    client: &mut impl postgres::GenericClient,
    key: &str,
    success_id: i64,
) -> Result<()> {
    client.execute(
        "INSERT INTO uptodate_latest (step_key, success_id) VALUES ($1, $2)
         ON CONFLICT (step_key) DO UPDATE SET success_id = excluded.success_id",
        &[&key, &success_id],
    )?;
    Ok(())
}

fn headers_from_json(text: &str) -> Result<Vec<(String, String)>> {
    serde_json::from_str(text)
        .map_err(|e| StateError::Corrupt(format!("webhook headers {text:?}: {e}")))
}

impl Store for PostgresStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn begin_run(
        &self,
        workflow_name: &str,
        workflow_path: &str,
        args: &[String],
        jobs: &[JobInfo],
    ) -> Result<i64> {
        self.with(|c| runs::begin_run(c, workflow_name, workflow_path, args, jobs))
    }

    fn record(&self, run_id: i64, events: &[Event]) -> Result<()> {
        self.with(|c| runs::record(c, run_id, events))
    }

    fn mark_run(&self, run_id: i64, status: Status) -> Result<bool> {
        self.with(|c| runs::mark_run(c, run_id, status))
    }

    fn mark_interrupted(&self) -> Result<usize> {
        self.with(runs::mark_interrupted)
    }

    fn set_definition_versions(
        &self,
        run_id: i64,
        versions: &[(String, usize, u32)],
    ) -> Result<()> {
        self.with(|c| runs::set_definition_versions(c, run_id, versions))
    }

    fn queue_run(
        &self,
        workflow_name: &str,
        workflow_path: &str,
        args: &[String],
        jobs: &[JobInfo],
        server: &ServerRun,
    ) -> Result<Queued> {
        self.with(|c| control::queue_run(c, workflow_name, workflow_path, args, jobs, server))
    }

    fn server_runs(&self) -> Result<Vec<ServerRun>> {
        self.with(control::server_runs)
    }

    fn transition_run(
        &self,
        run_id: i64,
        to: Status,
        reason: &str,
    ) -> Result<std::result::Result<Status, Illegal>> {
        self.with(|c| control::transition_run(c, run_id, to, reason))
    }

    fn retry_run(&self, run_id: i64, reason: &str) -> Result<std::result::Result<Retry, Illegal>> {
        self.with(|c| control::retry_run(c, run_id, reason))
    }

    fn claim_slot(&self, group: &str, max: u32, run_id: i64, holder: &str) -> Result<Claim> {
        self.with(|c| control::claim_slot(c, group, max, run_id, holder))
    }

    fn release_slots(&self, run_id: i64, holder: Option<&str>) -> Result<()> {
        self.with(|c| control::release_slots(c, run_id, holder))
    }

    fn transitions(&self, run_id: i64) -> Result<Vec<Transition>> {
        self.with(|c| control::transitions(c, run_id))
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunSummary>> {
        self.with(|c| runs::runs(c, limit))
    }

    fn latest_run_id(&self) -> Result<Option<i64>> {
        self.with(runs::latest_run_id)
    }

    fn run(&self, run_id: i64) -> Result<Option<RunDetail>> {
        self.with(|c| runs::run(c, run_id))
    }

    fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT value FROM kv WHERE namespace = $1 AND key = $2",
                &[&nul_free(namespace), &nul_free(key)],
            )?
            .map(|r| r.get(0)))
        })
    }

    fn kv_get_many(&self, namespace: &str, keys: &[String]) -> Result<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<String> = keys.iter().map(|k| nul_free(k).into_owned()).collect();
        self.with(|c| {
            let found: std::collections::HashMap<String, String> = c
                .query(
                    "SELECT key, value FROM kv WHERE namespace = $1 AND key = ANY($2)",
                    &[&nul_free(namespace), &wanted],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            Ok(wanted.iter().map(|k| found.get(k).cloned()).collect())
        })
    }

    fn kv_set(&self, namespace: &str, key: &str, value: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO kv (namespace, key, value, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                &[
                    &nul_free(namespace),
                    &nul_free(key),
                    &nul_free(value),
                    &now_ms(),
                ],
            )?;
            Ok(())
        })
    }

    fn kv_newest_with_prefix(
        &self,
        namespace: &str,
        prefix: &str,
    ) -> Result<Option<(String, String)>> {
        // `starts_with` rather than LIKE: a key may hold `%` and `_`.
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT key, value FROM kv WHERE namespace = $1 AND starts_with(key, $2)
                 ORDER BY updated_at DESC, seq DESC LIMIT 1",
                &[&nul_free(namespace), &nul_free(prefix)],
            )?
            .map(|r| (r.get(0), r.get(1))))
        })
    }

    fn artifact_put(&self, a: &Artifact) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO artifacts (run_id, name, job, files, bytes, digest, manifest, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (run_id, name) DO UPDATE SET job = excluded.job, files = excluded.files,
                    bytes = excluded.bytes, digest = excluded.digest, manifest = excluded.manifest,
                    created_at = excluded.created_at",
                &[
                    &a.run_id,
                    &a.name,
                    &a.job,
                    &a.files,
                    &a.bytes,
                    &a.digest,
                    &a.manifest,
                    &a.created_at,
                ],
            )?;
            Ok(())
        })
    }

    fn artifacts(&self, run_id: i64) -> Result<Vec<Artifact>> {
        self.with(|c| {
            Ok(c.query(
                "SELECT run_id, name, job, files, bytes, digest, manifest, created_at
                 FROM artifacts WHERE run_id = $1 ORDER BY name",
                &[&run_id],
            )?
            .iter()
            .map(|r| Artifact {
                run_id: r.get(0),
                name: r.get(1),
                job: r.get(2),
                files: r.get(3),
                bytes: r.get(4),
                digest: r.get(5),
                manifest: r.get(6),
                created_at: r.get(7),
            })
            .collect())
        })
    }

    fn step_state(&self, step_key: &str) -> Result<StepState> {
        self.with(|c| Ok(states_of(c, &[step_key])?.pop().unwrap_or_default()))
    }

    fn step_states(&self, keys: &[&str]) -> Result<Vec<(StepState, Vec<OutputRecord>)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Two round trips for a whole plan, not two per step.
        self.with(|c| {
            let states = states_of(c, keys)?;
            let ids: Vec<i64> = states
                .iter()
                .filter_map(|s| s.last_success.map(|l| l.id))
                .collect();
            let mut outputs: std::collections::HashMap<i64, Vec<OutputRecord>> =
                std::collections::HashMap::new();
            for r in c.query(
                "SELECT success_id, path, hash, mode, size FROM uptodate_output
                 WHERE success_id = ANY($1) ORDER BY success_id, path COLLATE \"C\"",
                &[&ids],
            )? {
                outputs.entry(r.get(0)).or_default().push(output_of(&r, 1)?);
            }
            Ok(states
                .into_iter()
                .map(|state| {
                    let outs = state
                        .last_success
                        .and_then(|l| outputs.get(&l.id).cloned())
                        .unwrap_or_default();
                    (state, outs)
                })
                .collect())
        })
    }

    fn latest_definition(&self, step_key: &str) -> Result<Option<DefinitionRef>> {
        self.with(|c| latest_definition(c, step_key))
    }

    fn definition_history(&self, step_key: &str) -> Result<Vec<DefinitionRecord>> {
        self.with(|c| {
            c.query(
                "SELECT version, definition, created_ns FROM uptodate_definition
                 WHERE step_key = $1 ORDER BY version",
                &[&step_key],
            )?
            .iter()
            .map(|r| {
                Ok(DefinitionRecord {
                    version: runs::small(r.get(0))?,
                    definition: r.get(1),
                    recorded_at_ns: r.get(2),
                })
            })
            .collect()
        })
    }

    fn success_sources(&self, success_id: i64) -> Result<Option<Vec<u8>>> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT sources FROM uptodate_success WHERE id = $1",
                &[&success_id],
            )?
            .map(|r| r.get(0)))
        })
    }

    fn success_outputs(&self, success_id: i64) -> Result<Vec<OutputRecord>> {
        self.with(|c| {
            c.query(
                "SELECT path, hash, mode, size FROM uptodate_output WHERE success_id = $1
                 ORDER BY path COLLATE \"C\"",
                &[&success_id],
            )?
            .iter()
            .map(|r| output_of(r, 0))
            .collect()
        })
    }

    fn successes_with_fingerprint(&self, step_key: &str, fingerprint: &Hash) -> Result<Vec<i64>> {
        self.with(|c| {
            Ok(c.query(
                "SELECT id FROM uptodate_success WHERE step_key = $1 AND fingerprint = $2
                 ORDER BY id DESC",
                &[&step_key, &&fingerprint[..]],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn set_latest_success(&self, step_key: &str, success_id: i64) -> Result<()> {
        self.with(|c| set_latest_success(c, step_key, success_id))
    }

    fn record_success(&self, s: &NewSuccess<'_>) -> Result<u32> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            // Two processes recording the same step at once must not both
            // number a new definition version: one waits for the other.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&s.step_key],
            )?;
            let version = match latest_definition(&mut tx, s.step_key)? {
                Some(d) if d.hash == s.def_hash => d.version,
                latest => {
                    let v = latest.map_or(1, |d| d.version + 1);
                    tx.execute(
                        "INSERT INTO uptodate_definition (step_key, version, def_hash, definition, created_ns)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[&s.step_key, &i64::from(v), &&s.def_hash[..], &s.definition, &s.created_ns],
                    )?;
                    v
                }
            };
            let success_id: i64 = tx
                .query_one(
                    "INSERT INTO uptodate_success (step_key, run_id, fingerprint, def_version, def_hash, created_ns, sources)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    &[
                        &s.step_key,
                        &s.run_id,
                        &&s.fingerprint[..],
                        &i64::from(version),
                        &&s.def_hash[..],
                        &s.created_ns,
                        &s.sources,
                    ],
                )?
                .get(0);
            let insert = tx.prepare(
                "INSERT INTO uptodate_output (success_id, path, hash, mode, size) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (success_id, path) DO UPDATE SET hash = excluded.hash, mode = excluded.mode,
                    size = excluded.size",
            )?;
            for o in s.outputs {
                tx.execute(
                    &insert,
                    &[&success_id, &o.path, &&o.hash[..], &i64::from(o.mode), &(o.size as i64)],
                )?;
            }
            set_latest_success(&mut tx, s.step_key, success_id)?;
            tx.commit()?;
            Ok(version)
        })
    }

    fn success_counts(&self) -> Result<(usize, usize)> {
        self.with(|c| {
            let r = c.query_one(
                "SELECT COUNT(*), COUNT(DISTINCT step_key) FROM uptodate_success",
                &[],
            )?;
            Ok((r.get::<_, i64>(0) as usize, r.get::<_, i64>(1) as usize))
        })
    }

    fn prune_successes(
        &self,
        keep: Option<usize>,
        created_before_ns: Option<i64>,
    ) -> Result<PrunedSuccesses> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let mut removed = 0;
            if let Some(n) = keep {
                removed += tx.execute(
                    "DELETE FROM uptodate_success WHERE id NOT IN (SELECT success_id FROM uptodate_latest) AND id IN (
                         SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY step_key ORDER BY id DESC) AS n
                                         FROM uptodate_success) ranked WHERE n > $1)",
                    &[&(n as i64)],
                )? as usize;
            }
            if let Some(cutoff) = created_before_ns {
                removed += tx.execute(
                    "DELETE FROM uptodate_success WHERE created_ns < $1
                     AND id NOT IN (SELECT success_id FROM uptodate_latest)",
                    &[&cutoff],
                )? as usize;
            }
            tx.execute(
                "DELETE FROM uptodate_output WHERE success_id NOT IN (SELECT id FROM uptodate_success)",
                &[],
            )?;
            let referenced = tx
                .query("SELECT DISTINCT hash FROM uptodate_output", &[])?
                .iter()
                .map(|r| hash_from(r.get(0)))
                .collect::<HashSet<_>>();
            tx.commit()?;
            Ok(PrunedSuccesses {
                removed,
                referenced,
            })
        })
    }

    fn grade_result(&self, repo: &str, rubric: &str) -> Result<Option<GradeRecord>> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT fingerprint, result, graded_at FROM grade_results WHERE repo = $1 AND rubric = $2",
                &[&repo, &rubric],
            )?
            .map(|r| GradeRecord {
                fingerprint: r.get(0),
                result: r.get(1),
                graded_at: r.get(2),
            }))
        })
    }

    fn set_grade_result(&self, repo: &str, rubric: &str, record: &GradeRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO grade_results (repo, rubric, fingerprint, result, graded_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (repo, rubric) DO UPDATE SET fingerprint = excluded.fingerprint,
                    result = excluded.result, graded_at = excluded.graded_at",
                &[
                    &repo,
                    &rubric,
                    &record.fingerprint,
                    &record.result,
                    &record.graded_at,
                ],
            )?;
            Ok(())
        })
    }

    fn enqueue_webhooks(&self, deliveries: &[NewWebhookDelivery]) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            for r in deliveries {
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO webhook_deliveries
                             (delivery, run_ref, event, url, headers, body, status, attempts, max_attempts, next_at, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8, $8) RETURNING id",
                        &[
                            &r.delivery,
                            &r.run_ref,
                            &r.event,
                            &r.url,
                            &to_json(&r.headers)?,
                            &r.body,
                            &i64::from(r.max_attempts),
                            &r.due_at,
                        ],
                    )?
                    .get(0);
                if let Some(why) = &r.refused {
                    tx.execute(
                        "UPDATE webhook_deliveries SET status = 'failed', attempts = 1, finished_at = $2 WHERE id = $1",
                        &[&id, &r.due_at],
                    )?;
                    tx.execute(
                        "INSERT INTO webhook_attempts (delivery_id, attempt, at, duration_ms, error)
                         VALUES ($1, 1, $2, 0, $3)",
                        &[&id, &r.due_at, why],
                    )?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn claim_webhooks(
        &self,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>> {
        self.with(|c| {
            // SKIP LOCKED: two servers claiming at once each get different rows.
            let rows = c.query(
                "WITH picked AS (SELECT id, next_at AS due FROM webhook_deliveries
                                 WHERE status IN ('pending', 'delivering') AND next_at <= $1
                                 ORDER BY next_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 UPDATE webhook_deliveries w SET status = 'delivering', next_at = $2
                 FROM picked WHERE w.id = picked.id
                 RETURNING w.id, w.delivery, w.event, w.url, w.headers, w.body, w.attempts,
                           w.max_attempts, picked.due",
                &[&now, &lease_until, &(limit as i64)],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let due: i64 = r.get(8);
                out.push((
                    due,
                    WebhookDelivery {
                        id: r.get(0),
                        delivery: r.get(1),
                        event: r.get(2),
                        url: r.get(3),
                        headers: headers_from_json(r.get(4))?,
                        body: r.get(5),
                        attempts: runs::small(r.get(6))?,
                        max_attempts: runs::small(r.get(7))?,
                    },
                ));
            }
            // RETURNING keeps no order; claims come in due order, then id.
            out.sort_by_key(|(due, d)| (*due, d.id));
            let out = out.into_iter().map(|(_, d)| d).collect();
            Ok(out)
        })
    }

    fn record_webhook_attempt(
        &self,
        id: i64,
        attempt: &WebhookAttempt,
        next: WebhookNext,
    ) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, duration_ms, status_code, error, response)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (delivery_id, attempt) DO UPDATE SET at = excluded.at,
                    duration_ms = excluded.duration_ms, status_code = excluded.status_code,
                    error = excluded.error, response = excluded.response",
                &[
                    &id,
                    &i64::from(attempt.attempt),
                    &attempt.at,
                    &(attempt.duration_ms as i64),
                    &attempt.status_code.map(i64::from),
                    &attempt.error,
                    &attempt.response,
                ],
            )?;
            let finished_at = attempt.at + attempt.duration_ms as i64;
            let (status, next_at, finished) = match next {
                WebhookNext::Delivered => ("delivered", finished_at, Some(finished_at)),
                WebhookNext::Failed => ("failed", finished_at, Some(finished_at)),
                WebhookNext::RetryAt(at) => ("pending", at, None),
            };
            tx.execute(
                "UPDATE webhook_deliveries SET status = $2, attempts = $3, next_at = $4, finished_at = $5
                 WHERE id = $1",
                &[&id, &status, &i64::from(attempt.attempt), &next_at, &finished],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn webhook_deliveries(&self, run_ref: &str) -> Result<Vec<WebhookDeliveryRecord>> {
        self.with(|c| {
            let rows = c.query(
                "SELECT id, delivery, event, url, status, max_attempts, created_at, next_at, finished_at
                 FROM webhook_deliveries WHERE run_ref = $1 ORDER BY id",
                &[&run_ref],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let id: i64 = r.get(0);
                let status: String = r.get(4);
                let attempts = c
                    .query(
                        "SELECT attempt, at, duration_ms, status_code, error, response
                         FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
                        &[&id],
                    )?
                    .iter()
                    .map(|a| {
                        Ok(WebhookAttempt {
                            attempt: runs::small(a.get(0))?,
                            at: a.get(1),
                            duration_ms: a.get::<_, i64>(2).max(0) as u64,
                            status_code: a
                                .get::<_, Option<i64>>(3)
                                .map(|s| {
                                    u16::try_from(s).map_err(|_| {
                                        StateError::Corrupt(format!("HTTP status {s}"))
                                    })
                                })
                                .transpose()?,
                            error: a.get(4),
                            response: a.get(5),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                out.push(WebhookDeliveryRecord {
                    delivery: r.get(1),
                    event: r.get(2),
                    url: r.get(3),
                    next_attempt_at: (status == "pending").then(|| r.get(7)),
                    status,
                    max_attempts: runs::small(r.get(5))?,
                    created_at: r.get(6),
                    finished_at: r.get(8),
                    attempts,
                });
            }
            Ok(out)
        })
    }
}
