//! `trun serve`: runs over HTTP. A client creates a run of a workflow under
//! `--root` (or of inline YAML), watches its engine events as Server-Sent
//! Events, reads its record and step logs, and cancels it; `/metrics` counts
//! runs and steps for Prometheus.
//!
//! Runs execute in this process through the same engine and run session as
//! `trun run` ([`Session`]): the server holds the workspace's lock and its one
//! store for its whole life and runs up to `--max-runs` runs at once, the rest
//! queued (`queued`, in the store, so a restarted server runs them); their
//! jobs share one `-j`, and a job runs in one run at a time; a client can
//! pause, resume and advance a run. The server is
//! not a second engine and keeps no second record: what a run did is in the
//! store, as `trun show` prints it; the server only keeps what the store
//! cannot (the queue's order, the live event log for SSE, the running run's
//! gate and cancel switch).
//!
//! Around the runs: [`webhooks`] tells HTTP endpoints when runs and jobs
//! start and end (a signed, durable outbox in the store); `workflows` lists
//! the workflow files under the root; `openapi` describes the API at
//! `/openapi.json`.
//!
//! Trust: it binds 127.0.0.1 unless told otherwise, and refuses to bind any
//! other address without a bearer token, because a client can run any command
//! the workflows under `--root` (or its inline YAML) say.

mod api;
mod cache;
mod error;
mod events;
mod follow;
mod load;
mod metrics;
mod openapi;
mod runs;
mod sources;
pub mod webhooks;
mod workers;
mod workflows;

pub use error::ApiError;

use crate::session::{Session, SessionError, SessionOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long connections (an SSE stream, say) may take to close after SIGTERM
/// once every run has ended.
const DRAIN: Duration = Duration::from_secs(5);

pub struct ServeOptions {
    pub bind: SocketAddr,
    pub root: PathBuf,
    /// Jobs at once across every run.
    pub parallel: usize,
    /// Runs at once.
    pub max_runs: usize,
    pub token: Option<String>,
    /// `--webhook`: URLs told every run's `run.*` events.
    pub webhooks: Vec<String>,
    /// `--webhook-secret`: the key signing the `--webhook` deliveries.
    pub webhook_secret: Option<String>,
    pub webhook_policy: webhooks::DeliveryPolicy,
    /// The command line, recorded with each run.
    pub args: Vec<String>,
    /// `--db postgres://…`: record runs in a shared database instead of the
    /// root's `.trun/state.db`.
    pub db: Option<String>,
    /// After SIGTERM, how long the running run's steps may take to finish
    /// before they are cancelled (the run is recorded `interrupted`).
    pub grace: Duration,
    /// `--remote-cache`: where runs share step results (and, with
    /// `no_local_exec`, where the root's snapshot goes for the workers).
    pub remote_cache: Option<Arc<crate::cache::RemoteCache>>,
    /// `--no-local-exec`: every job goes to `trun worker`s through the `db`
    /// PostgreSQL database.
    pub no_local_exec: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0} without a token: anyone who can reach it could run commands. \
         Give `--token` (or TRUN_TOKEN), or bind 127.0.0.1"
    )]
    PublicWithoutToken(SocketAddr),
    #[error("the token is empty; give a non-empty `--token` (or TRUN_TOKEN)")]
    EmptyToken,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server's root {}: {source}", path.display())]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("cannot start the server: {0}")]
    Start(String),
}

/// Runs the server until SIGTERM or Ctrl-C: then it stops accepting, leaves
/// queued runs queued in the store (the next server runs them), lets the
/// running runs' steps finish for the grace period, then cancels it (recorded
/// `interrupted`), and returns.
pub fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    match &opts.token {
        Some(t) if t.is_empty() => return Err(ServeError::EmptyToken),
        None if !opts.bind.ip().is_loopback() => {
            return Err(ServeError::PublicWithoutToken(opts.bind))
        }
        _ => {}
    }
    let root = opts
        .root
        .canonicalize()
        .map_err(|source| ServeError::Root {
            path: opts.root.clone(),
            source,
        })?;
    let mut session = Session::open_with_db(
        &root,
        &SessionOptions {
            command_line: opts.args.join(" "),
            args: opts.args.clone(),
            no_wait: true,
        },
        opts.db.as_deref(),
    )?;
    session.set_remote_cache(opts.remote_cache.clone());
    let metrics = Arc::new(metrics::Metrics::new().map_err(|e| ServeError::Start(e.to_string()))?);
    let runs = Arc::new(runs::Runs::new(
        session.store(),
        root.clone(),
        opts.parallel.max(1),
        opts.max_runs,
        metrics.clone(),
        opts.grace,
    ));
    if let Some(cache) = &opts.remote_cache {
        let _ = runs.remote_cache.set(cache.clone());
    }
    if opts.no_local_exec {
        if let (Some(db), Some(cache)) = (&opts.db, &opts.remote_cache) {
            let _ = runs.workers.set(runs::Workers {
                db: db.clone(),
                cache: cache.clone(),
            });
        }
    }
    let server_hooks = opts
        .webhooks
        .iter()
        .map(|url| webhooks::Hook {
            job: None,
            url: url.clone(),
            events: vec!["run.*".to_string()],
            headers: Vec::new(),
            secret: opts
                .webhook_secret
                .clone()
                .map(webhooks::SecretSource::Literal),
        })
        .collect();
    let outbox = Arc::new(webhooks::Webhooks::new(
        session.store(),
        server_hooks,
        opts.webhook_policy,
        metrics,
    ));
    // Runs a stopped server left queued run now, in their order.
    let resumed = runs
        .restore()
        .map_err(|e| ServeError::Start(format!("cannot read the queued runs: {e}")))?;
    if resumed > 0 {
        eprintln!("trun: {resumed} queued run(s) from before the restart will run");
    }
    let _ = runs.webhooks.set(outbox.clone());
    let worker = {
        let runs = runs.clone();
        std::thread::Builder::new()
            .name("trun-serve-runs".into())
            .spawn(move || runs.work(session))
            .map_err(|e| ServeError::Start(e.to_string()))?
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Start(e.to_string()))?;
    // The workers sharing a PostgreSQL database (`GET /api/v1/workers`).
    let workers = match opts.db.as_deref() {
        Some(url) if crate::state::is_postgres_url(url) => Some(Arc::new(
            crate::state::JobQueue::open(url).map_err(|e| ServeError::Start(e.to_string()))?,
        )),
        _ => None,
    };
    let state = Arc::new(api::AppState {
        runs: runs.clone(),
        token: opts.token.clone(),
        workers,
    });
    let serving = runs.clone();
    // Deliveries go on until every run is recorded (a cancelled run's
    // `run.cancelled` included); what is left then waits in the outbox.
    let (hooks_stop, hooks_stop_rx) = tokio::sync::watch::channel(false);
    let served = runtime.block_on(async move {
        let runs = serving;
        let listener = tokio::net::TcpListener::bind(opts.bind)
            .await
            .map_err(|source| ServeError::Bind {
                addr: opts.bind,
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(opts.bind);
        eprintln!("trun: serving {} on http://{addr}", root.display());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        outbox.set_base_url(format!("http://{addr}"));
        tokio::spawn(outbox.deliver(hooks_stop_rx));
        {
            let runs = runs.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                eprintln!(
                    "trun: stopping: queued runs stay queued; the running run's steps get {} to finish",
                    crate::duration::format(runs.grace())
                );
                runs.shutdown();
                let _ = stop_tx.send(true);
            });
        }
        let graceful = {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let server = axum::serve(listener, api::router(state)).with_graceful_shutdown(graceful);
        let mut rx = stop_rx;
        tokio::select! {
            r = server => r.map_err(|e| ServeError::Start(e.to_string()))?,
            // Open streams end with their runs; a client that holds a
            // connection open does not keep the server alive.
            _ = async move {
                let _ = rx.wait_for(|s| *s).await;
                tokio::time::sleep(DRAIN).await;
            } => {}
        }
        Ok::<_, ServeError>(())
    });
    // The running run ends cancelled and is recorded before the lock goes
    // (also when the server failed to start: the worker must end).
    runs.shutdown();
    worker
        .join()
        .map_err(|_| ServeError::Start("the run worker panicked".into()))?;
    let _ = hooks_stop.send(true);
    runtime.shutdown_timeout(Duration::from_secs(1));
    served?;
    eprintln!("trun: stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
