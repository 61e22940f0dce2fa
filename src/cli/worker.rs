//! `trun worker`: run the jobs a coordinating trun queues in PostgreSQL
//! (`trun run --dispatch`), on this machine, in a work dir of its own.

use super::CmdResult;
use crate::diag::Diagnostic;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// Claim only jobs whose labels (their `runs-on`) are all among these: a,b.
    #[arg(long, value_name = "LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Jobs at once.
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Where jobs run: one fresh directory per attempt, removed after it.
    #[arg(long, value_name = "DIR", default_value = ".trun-worker")]
    pub workdir: PathBuf,
    /// The worker's name in the queue and in `GET /api/v1/workers` (default: host:pid).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// How long a claimed job stays this worker's without a heartbeat; after
    /// it, another worker runs the job as a new attempt.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub lease: String,
    #[command(flatten)]
    pub remote: crate::cache::RemoteCacheArgs,
    /// The secrets of the jobs this worker runs. They stay on this machine:
    /// the coordinator never sends secrets through the database or the cache,
    /// so give each worker those its jobs use (route jobs with `runs-on`
    /// labels to the workers that hold them).
    #[command(flatten)]
    pub secrets: super::SecretArgs,
}

pub(super) fn cmd_worker(a: WorkerArgs, db: Option<String>) -> CmdResult {
    let usage = |m: String| vec![Diagnostic::plain(m)];
    let db = db.ok_or_else(|| {
        usage(
            "trun worker needs the shared database: --db postgres://… (or TRUN_DATABASE_URL)"
                .into(),
        )
    })?;
    if !crate::state::is_postgres_url(&db) {
        return Err(usage(
            "trun worker needs a PostgreSQL database: --db postgres://user@host:port/db".into(),
        ));
    }
    let cache = crate::cache::RemoteCache::from_args(&a.remote)
        .map_err(usage)?
        .ok_or_else(|| {
            usage(
                "trun worker needs the remote cache the coordinator uses: --remote-cache URL"
                    .into(),
            )
        })?;
    let secrets = Arc::new(a.secrets.read()?);
    let lease = crate::duration::parse(&a.lease).map_err(|e| usage(format!("--lease: {e}")))?;
    if lease < std::time::Duration::from_millis(300) {
        return Err(usage("--lease: at least 300ms".into()));
    }
    let name = a.name.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", std::process::id())
    });
    crate::worker::run::serve(crate::worker::run::Config {
        db,
        cache: Arc::new(cache),
        name,
        labels: a
            .labels
            .into_iter()
            .filter(|l| !l.trim().is_empty())
            .collect(),
        jobs: a.jobs,
        workdir: a.workdir,
        lease,
        secrets,
    })
    .map_err(usage)?;
    Ok(0)
}
