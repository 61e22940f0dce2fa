//! `trun serve`: parses the server's flags and hands them to [`crate::server`].

use super::CmdResult;
use crate::diag::Diagnostic;
use crate::server::{serve, ServeOptions};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; any address but loopback needs `--token`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The workspace whose workflows the server runs (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Jobs at once across every run (default: number of CPU cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub parallel: Option<usize>,
    /// Runs at once; the rest wait queued, in order. A run waiting for its
    /// concurrency group or paused counts.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_runs: u32,
    /// Run no job in this process: every job of every run goes to the job
    /// queue in the `--db` PostgreSQL database for `trun worker`s, with the
    /// root (as .gitignore leaves it) as a snapshot in `--remote-cache`.
    #[arg(long, requires = "remote_cache")]
    pub no_local_exec: bool,
    #[command(flatten)]
    pub remote: crate::cache::RemoteCacheArgs,
    /// Every request but /healthz must carry `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "TOKEN", env = "TRUN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// After SIGTERM, how long the running run's steps may take to finish
    /// before they are cancelled and the run is recorded `interrupted`
    /// (queued runs stay queued for the next server): `30s`, `2m`.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::duration::parse)]
    pub grace: std::time::Duration,
    /// POST every run's run.* events (started, succeeded, failed, cancelled) to URL
    /// (plain http://); repeat for several. Workflows add their own with `webhooks:`.
    #[arg(long = "webhook", value_name = "URL", value_parser = parse_webhook_url)]
    pub webhooks: Vec<String>,
    /// Sign the `--webhook` deliveries: `X-Trun-Signature-256: sha256=HMAC-SHA256(SECRET, body)`.
    #[arg(
        long,
        value_name = "SECRET",
        env = "TRUN_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<String>,
    /// Attempts per webhook delivery before it is recorded `failed`.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub webhook_attempts: u32,
    /// Wait before retrying a failed delivery; it doubles with each failure (max 1h).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::duration::parse)]
    pub webhook_backoff: std::time::Duration,
    /// The longest one delivery attempt may take, the receiver's answer included.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::duration::parse)]
    pub webhook_timeout: std::time::Duration,
}

fn parse_webhook_url(s: &str) -> Result<String, String> {
    crate::server::webhooks::check_url(s).map(|()| s.to_string())
}

/// `token`: the global `--token` (TRUN_TOKEN): every request but /healthz must
/// carry `Authorization: Bearer TOKEN`.
pub(super) fn cmd_serve(a: ServeArgs, token: Option<String>, db: Option<String>) -> CmdResult {
    let remote_cache = crate::cache::RemoteCache::from_args(&a.remote)
        .map_err(|e| vec![Diagnostic::plain(e)])?
        .map(std::sync::Arc::new);
    if a.no_local_exec && !db.as_deref().is_some_and(crate::state::is_postgres_url) {
        return Err(vec![Diagnostic::plain(
            "--no-local-exec needs the database workers share: --db postgres://… (or TRUN_DATABASE_URL)",
        )]);
    }
    let options = ServeOptions {
        bind: a.bind,
        root: a.root.unwrap_or_else(|| PathBuf::from(".")),
        parallel: a.parallel.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        max_runs: a.max_runs as usize,
        token,
        grace: a.grace,
        webhooks: a.webhooks,
        webhook_secret: a.webhook_secret,
        webhook_policy: crate::server::webhooks::DeliveryPolicy {
            max_attempts: a.webhook_attempts,
            backoff: a.webhook_backoff,
            timeout: a.webhook_timeout.max(std::time::Duration::from_millis(1)),
        },
        args: std::env::args()
            .skip(1)
            .map(|w| crate::state::redact_arg(&w))
            .collect(),
        db,
        remote_cache,
        no_local_exec: a.no_local_exec,
    };
    serve(options).map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
    Ok(super::EXIT_OK)
}
