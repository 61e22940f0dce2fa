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
    /// Jobs at once within a run (default: number of CPU cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub parallel: Option<usize>,
    /// Every request but /healthz must carry `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "TOKEN", env = "TRUN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// After SIGTERM, how long the running run's steps may take to finish
    /// before they are cancelled and the run is recorded `interrupted`
    /// (queued runs stay queued for the next server): `30s`, `2m`.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::duration::parse)]
    pub grace: std::time::Duration,
}

pub(super) fn cmd_serve(a: ServeArgs) -> CmdResult {
    let options = ServeOptions {
        bind: a.bind,
        root: a.root.unwrap_or_else(|| PathBuf::from(".")),
        parallel: a.parallel.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        token: a.token,
        grace: a.grace,
        args: std::env::args().skip(1).collect(),
    };
    serve(options).map_err(|e| vec![Diagnostic::plain(e.to_string())])?;
    Ok(super::EXIT_OK)
}
