//! `trun --server URL run|history|show|logs|cancel|pause|resume`: the CLI as a
//! client of `trun serve`'s API. What it prints comes from the same renderers
//! and reporters as the local commands, fed with the records and engine
//! events the API returns, so the output is the same; so are the exit codes
//! of `run` (0 success, 1 failure, 2 usage or workflow error, 130 cancelled).
//!
//! Run ids: `history` and `show` print the store's run numbers, as locally;
//! `show`, `logs`, `cancel`, `pause` and `resume` take such a number, `last`,
//! or the server's own run id (what `POST /api/v1/runs` answered).
//!
//! It is not a second engine: nothing runs here.

use super::{out, use_color, CmdResult, FileArgs, HistoryArgs, LogsArgs, RunArgs, ShowArgs};
use crate::diag::Diagnostic;
use crate::event::{Event, Status};
use crate::session::{terminal_reporter, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK};
use crate::state::RunDetail;
use clap::Args;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

/// The largest API answer read (a run's record, a page of runs).
const MAX_ANSWER_BYTES: u64 = 64 << 20;
/// One Server-Sent Event's data beyond this is refused.
const MAX_EVENT_BYTES: usize = 1 << 20;
/// The most runs `history` pages through on a server.
const MAX_PER_PAGE: usize = 100;

#[derive(Args, Debug)]
pub struct RunRef {
    /// Run: a number as `trun history` shows it, `last`, or the server's run id.
    pub run: String,
    #[command(flatten)]
    pub file: FileArgs,
}

type Diags = Vec<Diagnostic>;

fn plain(message: impl Into<String>) -> Diags {
    vec![Diagnostic::plain(message)]
}

/// A server, as `--server` and `--token` name it.
struct Api {
    base: reqwest::Url,
    token: Option<String>,
    http: Client,
    /// Without an overall timeout: an event stream lasts as long as its run.
    streaming: Client,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

/// What `GET /api/v1/runs/{id}` answers, as far as the client needs it.
#[derive(Deserialize)]
struct Fetched {
    id: String,
    status: String,
    error: Option<String>,
    run: Option<RunDetail>,
}

#[derive(Deserialize)]
struct Listed {
    id: String,
    store_run_id: Option<i64>,
}

#[derive(Deserialize)]
struct Page {
    runs: Vec<Listed>,
    total: usize,
}

impl Api {
    fn new(file: &FileArgs) -> Result<Api, Diags> {
        let raw = file.server.as_deref().unwrap_or_default();
        let base = reqwest::Url::parse(raw)
            .ok()
            .filter(|u| u.scheme() == "http" && u.host_str().is_some())
            .ok_or_else(|| {
                plain(format!(
                    "`--server {raw}` is not an http:// URL of a `trun serve`"
                ))
            })?;
        let build = |timeout: Option<Duration>| {
            Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(timeout)
                .user_agent(concat!("trun/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| plain(format!("cannot start an HTTP client: {e}")))
        };
        Ok(Api {
            base,
            token: file.token.clone(),
            http: build(Some(Duration::from_secs(60)))?,
            streaming: build(None)?,
        })
    }

    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn send(&self, rb: RequestBuilder) -> Result<Response, Diags> {
        let rb = match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        };
        let response = rb
            .send()
            .map_err(|e| plain(format!("cannot reach the server {}: {e}", self.base)))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = read_bounded(response)?;
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| text.chars().take(500).collect());
        Err(plain(format!("the server answered {status}: {message}")))
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, Diags> {
        let response = self.send(self.http.get(self.url(segments)).query(query))?;
        decode(response)
    }

    fn post<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &Value,
    ) -> Result<T, Diags> {
        let response = self.send(self.http.post(self.url(segments)).json(body))?;
        decode(response)
    }

    /// The server's id of `run` (see the module documentation).
    fn resolve(&self, run: Option<&str>) -> Result<String, Diags> {
        let wanted: Option<i64> = match run {
            None | Some("last") | Some("latest") => None,
            Some(r) => match r.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => return Ok(r.to_string()),
            },
        };
        let mut page = 1;
        loop {
            let listed: Page = self.get(
                &["api", "v1", "runs"],
                &[
                    ("page", page.to_string()),
                    ("per_page", MAX_PER_PAGE.to_string()),
                ],
            )?;
            let found = listed.runs.iter().find(|r| match wanted {
                None => r.store_run_id.is_some(),
                Some(n) => r.store_run_id == Some(n),
            });
            if let Some(r) = found {
                return Ok(r.id.clone());
            }
            if page * MAX_PER_PAGE >= listed.total {
                return Err(match wanted {
                    None => plain("no runs recorded yet on the server"),
                    Some(n) => vec![Diagnostic::plain(format!("the server knows no run {n}"))
                        .with_help("`trun --server URL history` lists the runs")],
                });
            }
            page += 1;
        }
    }

    fn fetch(&self, id: &str) -> Result<Fetched, Diags> {
        self.get(&["api", "v1", "runs", id], &[])
    }
}

fn read_bounded(response: Response) -> Result<String, Diags> {
    use std::io::Read;
    let mut text = String::new();
    response
        .take(MAX_ANSWER_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| plain(format!("cannot read the server's answer: {e}")))?;
    Ok(text)
}

fn decode<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, Diags> {
    let text = read_bounded(response)?;
    serde_json::from_str(&text)
        .map_err(|e| plain(format!("the server's answer is not what trun expects: {e}")))
}

fn recorded(fetched: Fetched) -> Result<RunDetail, Diags> {
    fetched.run.ok_or_else(|| {
        let why = fetched.error.map(|e| format!(": {e}")).unwrap_or_default();
        plain(format!(
            "run {} has not started ({}{why})",
            fetched.id, fetched.status
        ))
    })
}

pub(super) fn history(a: &HistoryArgs) -> CmdResult {
    let api = Api::new(&a.file)?;
    let mut runs = Vec::new();
    let mut page = 1;
    while runs.len() < a.limit {
        let listed: Page = api.get(
            &["api", "v1", "runs"],
            &[
                ("page", page.to_string()),
                ("per_page", MAX_PER_PAGE.to_string()),
            ],
        )?;
        for r in listed.runs.iter().filter(|r| r.store_run_id.is_some()) {
            if runs.len() == a.limit {
                break;
            }
            if let Ok(detail) = recorded(api.fetch(&r.id)?) {
                runs.push(detail.run);
            }
        }
        if page * MAX_PER_PAGE >= listed.total {
            break;
        }
        page += 1;
    }
    if runs.is_empty() && !a.json {
        outln!("no runs recorded yet");
        return Ok(EXIT_OK);
    }
    if a.json {
        outln!(
            "{}",
            crate::history::history_json(&runs).map_err(|e| plain(e.to_string()))?
        );
    } else {
        out(&crate::history::render_history(
            &runs,
            use_color(a.file.no_color),
        ));
    }
    Ok(EXIT_OK)
}

pub(super) fn show(a: &ShowArgs) -> CmdResult {
    let api = Api::new(&a.file)?;
    let id = api.resolve(a.run.as_deref())?;
    let detail = recorded(api.fetch(&id)?)?;
    if a.json {
        outln!(
            "{}",
            crate::history::run_json(&detail).map_err(|e| plain(e.to_string()))?
        );
    } else {
        out(&crate::history::render_run(
            &detail,
            use_color(a.file.no_color),
        ));
    }
    Ok(EXIT_OK)
}

pub(super) fn logs(a: &LogsArgs) -> CmdResult {
    let api = Api::new(&a.file)?;
    let id = api.resolve(Some(&a.run))?;
    let detail = recorded(api.fetch(&id)?)?;
    let selected = crate::history::log_selection(&detail, a.selector.as_deref())
        .map_err(|e| plain(e.to_string()))?;
    let many = selected.len() > 1;
    let mut stdout = std::io::stdout().lock();
    for log in selected {
        if many {
            crate::report::ignore_io(writeln!(stdout, "==> {} <==", log.label));
        }
        let position = (log.position + 1).to_string();
        let url = api.url(&["api", "v1", "runs", &id, "logs", &log.job_key, &position]);
        let mut response = api.send(api.http.get(url))?;
        crate::report::ignore_io(
            response
                .copy_to(&mut stdout)
                .map(|_| ())
                .map_err(std::io::Error::other),
        );
    }
    Ok(EXIT_OK)
}

/// `trun cancel|pause|resume RUN --server URL`.
pub(super) fn act(a: &RunRef, verb: &str) -> CmdResult {
    if a.file.server.is_none() {
        return Err(vec![Diagnostic::plain(format!(
            "`trun {verb}` acts on a run of a `trun serve`: give `--server URL` (or TRUN_SERVER)"
        ))
        .with_help("a local run stops with Ctrl-C")]);
    }
    let api = Api::new(&a.file)?;
    let id = api.resolve(Some(&a.run))?;
    #[derive(Deserialize)]
    struct Acted {
        id: String,
        status: String,
    }
    let acted: Acted = api.post(&["api", "v1", "runs", &id, verb], &json!({}))?;
    outln!("run {}: {}", acted.id, acted.status);
    Ok(EXIT_OK)
}

/// Ctrl-C (or SIGTERM) cancels the run on the server, whose events then end
/// it here as a local run ends (130); a second one exits at once.
fn cancel_on_signal(api: &Api, id: &str) {
    use tokio::signal::unix::{signal, SignalKind};
    let url = api.url(&["api", "v1", "runs", id, "cancel"]);
    let (http, token, id) = (api.http.clone(), api.token.clone(), id.to_string());
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    // Installed before the run's events are read, so no Ctrl-C falls between.
    let signals = runtime.block_on(async {
        Some((
            signal(SignalKind::interrupt()).ok()?,
            signal(SignalKind::terminate()).ok()?,
        ))
    });
    let Some((mut int, mut term)) = signals else {
        return;
    };
    std::thread::spawn(move || {
        let next = |int: &mut tokio::signal::unix::Signal,
                    term: &mut tokio::signal::unix::Signal| {
            runtime.block_on(async {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            })
        };
        next(&mut int, &mut term);
        eprintln!("\ntrun: interrupted; cancelling run {id} on the server (press Ctrl-C again to leave it)");
        let request = match &token {
            Some(t) => http.post(url).bearer_auth(t),
            None => http.post(url),
        };
        if let Err(e) = request.send() {
            eprintln!("trun: cannot cancel run {id}: {e}");
            std::process::exit(EXIT_INTERRUPTED);
        }
        next(&mut int, &mut term);
        std::process::exit(EXIT_INTERRUPTED);
    });
}

/// `trun --server URL run [JOB…] [-f FILE] [-i NAME=VALUE…]`: creates the run of
/// FILE (a path under the server's root; default `trun.yaml`), shows its
/// events as they come, and exits as a local run would.
pub(super) fn run(a: &RunArgs) -> CmdResult {
    let local_only = [
        (a.dry_run, "--dry-run (use `trun plan` here)"),
        (!a.force.is_empty(), "--force"),
        (a.fail_fast, "--fail-fast"),
        (a.parallel.is_some(), "-j (the server's own -j applies)"),
        (a.no_wait, "--no-wait"),
    ];
    if let Some((_, flag)) = local_only.iter().find(|(given, _)| *given) {
        return Err(plain(format!("{flag} is not available with --server")));
    }
    let api = Api::new(&a.file)?;
    let workflow = a
        .file
        .file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "trun.yaml".to_string());
    let inputs: serde_json::Map<String, Value> = a
        .inputs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    #[derive(Deserialize)]
    struct Created {
        id: String,
    }
    let created: Created = api.post(
        &["api", "v1", "runs"],
        &json!({"workflow": workflow, "jobs": a.jobs, "inputs": inputs}),
    )?;
    cancel_on_signal(&api, &created.id);
    let mut reporter = terminal_reporter(&super::run::report_options(a));
    let mut finished = None;
    let events =
        api.send(
            api.streaming
                .get(api.url(&["api", "v1", "runs", &created.id, "events"])),
        )?;
    let mut data = String::new();
    for line in BufReader::new(events).lines() {
        let line = line.map_err(|e| plain(format!("the event stream broke: {e}")))?;
        if let Some(d) = line.strip_prefix("data:") {
            if data.len() + d.len() > MAX_EVENT_BYTES {
                return Err(plain("the server sent an event larger than 1 MiB"));
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        } else if line.is_empty() && !data.is_empty() {
            // Kinds this trun does not know (newer servers) are passed over.
            if let Ok(ev) = serde_json::from_str::<Event>(&data) {
                if let Event::RunFinished { status, .. } = &ev {
                    finished = Some(*status);
                }
                reporter.event(&ev);
            }
            data.clear();
        }
    }
    reporter.finish();
    let status = match finished {
        Some(s) => s,
        None => {
            let fetched = api.fetch(&created.id)?;
            if let Some(e) = fetched.error {
                return Err(plain(format!("run {} could not run: {e}", created.id)));
            }
            Status::parse(&fetched.status).unwrap_or(Status::Failure)
        }
    };
    Ok(match status {
        Status::Success => EXIT_OK,
        Status::Cancelled => EXIT_INTERRUPTED,
        _ => EXIT_FAILED,
    })
}
