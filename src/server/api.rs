//! The HTTP API under `/api/v1`, plus `/healthz` and `/metrics`: request
//! parsing, the bearer-token check, and responses. Each handler is thin: the
//! run table ([`Runs`]) and the store do the work; a run's detail is the
//! store's own [`RunDetail`](crate::state::RunDetail), as `trun show --json`
//! prints it.

use super::error::ApiError;
use super::error::ErrorBody;
use super::events::Next;
use super::load::Source;
use super::runs::{body_hash, Control, NewRun, Runs};
use crate::plan::Request;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next as Middleware};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

/// Request bodies larger than this are refused (413).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// A step log served over HTTP is cut here (the full file stays on disk).
const MAX_LOG_BYTES: u64 = 64 << 20;
const MAX_PER_PAGE: usize = 100;

pub struct AppState {
    pub runs: Arc<Runs>,
    /// `--token`: every request but `/healthz` must carry it.
    pub token: Option<String>,
    /// The job queue of a PostgreSQL database, for `GET /api/v1/workers`.
    pub workers: Option<Arc<crate::state::JobQueue>>,
}

type St = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/api/v1/runs", post(create_run).get(list_runs))
        .route("/api/v1/runs/{id}", get(get_run))
        .route("/api/v1/runs/{id}/events", get(run_events))
        .route("/api/v1/runs/{id}/logs/{job}/{step}", get(step_log))
        .route("/api/v1/runs/{id}/cancel", post(cancel_run))
        .route("/api/v1/runs/{id}/pause", post(pause_run))
        .route("/api/v1/runs/{id}/resume", post(resume_run))
        .route("/api/v1/runs/{id}/advance", post(advance_run))
        .route("/api/v1/runs/{id}/run", post(run_steps))
        .route("/api/v1/runs/{id}/retry", post(retry_run))
        .route("/api/v1/workflows", get(list_workflows))
        .route("/openapi.json", get(super::openapi::document))
        .route("/metrics", get(metrics))
        .merge(super::cache::routes())
        .merge(super::workers::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn auth(State(s): St, req: axum::extract::Request, next: Middleware) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same_secret(g, token)) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs `Authorization: Bearer <token>` (the token given to `trun serve --token`)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Compares two secrets in time that depends on neither: both are hashed
/// first, so not even their lengths leak through timing.
fn same_secret(a: &str, b: &str) -> bool {
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// The server is up (no token needed).
#[utoipa::path(get, path = "/healthz", tag = "server",
    responses((status = 200, description = "The server is up", body = Health)))]
pub(super) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// A run to create: exactly one of `workflow` and `yaml`; with `git`, the
/// `workflow` file in that repository.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    /// A workflow file, relative to the server's root (or, with `git`, to the repository).
    workflow: Option<String>,
    /// Run from a git repository at a ref instead of the server's root: the
    /// server fetches that commit into a checkout of its own, records the
    /// commit id with the run, and removes the checkout when the run ends.
    git: Option<GitBody>,
    /// The workflow's YAML text, run in the server's root.
    yaml: Option<String>,
    /// Run only these jobs (and what they need); all when empty.
    #[serde(default)]
    jobs: Vec<String>,
    /// The workflow's inputs by name.
    #[serde(default)]
    #[schema(value_type = Object)]
    inputs: serde_json::Map<String, serde_json::Value>,
}

/// A git repository and the ref to run.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GitBody {
    /// `https://`, `http://`, `ssh://`, `git://`, `user@host:path`, or
    /// `file:///path` of a repository under the server's root.
    #[schema(min_length = 1, max_length = 2048)]
    url: String,
    /// A branch, tag or full commit id (letters, digits, `/`, `.`, `_`, `-`).
    #[serde(rename = "ref")]
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[A-Za-z0-9_][A-Za-z0-9/._-]*$"
    )]
    reference: String,
}

/// A run as created, or cancelled.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct RunCreated {
    pub id: String,
    pub status: crate::event::Status,
    pub url: String,
}

/// A page of runs, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct RunList {
    runs: Vec<super::runs::RunView>,
    /// How many runs match, over every page.
    total: usize,
    page: usize,
    per_page: usize,
}

/// A run: what the server knows of it, its store record once it has
/// started (`trun show --json`), and its webhook deliveries.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct RunResponse {
    #[serde(flatten)]
    view: super::runs::RunView,
    run: Option<crate::state::RunDetail>,
    webhooks: Vec<crate::state::WebhookDeliveryRecord>,
    /// Every status change of the run and its jobs, with its time and reason.
    transitions: Vec<crate::state::Transition>,
}

/// Creates a run (or finds the one its `Idempotency-Key` created).
#[utoipa::path(post, path = "/api/v1/runs", tag = "runs",
    request_body = CreateBody,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255,
        pattern = "^[!-~]([ -~]*[!-~])?$",
        description = "Same key and body: the same run (200); same key, another body: 409")),
    responses(
        (status = 201, description = "Created", body = RunCreated),
        (status = 200, description = "The run this Idempotency-Key created", body = RunCreated),
        (status = 400, description = "Bad request; a refused git URL or ref (`field`: `git.url`, `git.ref`)", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 409, description = "Idempotency-Key reused with another body", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "The workflow is invalid (file:line:col), or git could not fetch the ref", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
    ))]
pub(super) async fn create_run(
    State(s): St,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "body_rejected",
            format!(
                "{} (bodies are limited to {MAX_BODY_BYTES} bytes)",
                e.body_text()
            ),
        )
    })?;
    let parsed: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("the request body is not a valid run request: {e}"))
    })?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    )
                    .field("Idempotency-Key")
                })?;
            Some((k.to_string(), body_hash(&body)))
        }
    };
    let inputs = parsed
        .inputs
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect();
    let request = Request {
        jobs: parsed.jobs,
        inputs,
    };
    let runs = s.runs.clone();
    let (view, created) = tokio::task::spawn_blocking(move || {
        let source = match (&parsed.workflow, &parsed.yaml, &parsed.git) {
            (Some(p), None, _) => Source::Path(p),
            (None, Some(y), None) => Source::Inline(y),
            (_, _, Some(_)) => {
                return Err(ApiError::bad_request(
                    "with `git`, give `workflow` (the workflow file's path in the repository) and no `yaml`",
                )
                .field("workflow"))
            }
            _ => {
                return Err(ApiError::bad_request(
                    "give exactly one of `workflow` (a path under the server's root) or `yaml` (the workflow's text)",
                )
                .field("workflow"))
            }
        };
        runs.create(NewRun {
            source,
            git: parsed
                .git
                .as_ref()
                .map(|g| (g.url.as_str(), g.reference.as_str())),
            request,
            idempotency: key,
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = RunCreated {
        id: view.id,
        status: view.status,
        url: view.url.clone(),
    };
    Ok((code, [(header::LOCATION, view.url)], Json(body)).into_response())
}

/// The runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs",
    params(
        ("status" = Option<crate::event::Status>, Query, description = "Only runs with this status"),
        ("workflow" = Option<String>, Query, description = "Only runs of this workflow path"),
        ("page" = Option<i64>, Query, minimum = 1, description = "Page, from 1"),
        ("per_page" = Option<i64>, Query, minimum = 1, description = "Runs per page (more than 100 gives 100)"),
    ),
    responses(
        (status = 200, description = "A page of runs", body = RunList),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
    ))]
pub(super) async fn list_runs(
    State(s): St,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<RunList>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let number = |name: &'static str, default: usize| -> Result<usize, ApiError> {
        match q.get(name) {
            None => Ok(default),
            // i64 as /openapi.json says: a larger number is refused, not clamped.
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("`{name}` must be a whole number from 1"))
                        .field(name)
                }),
        }
    };
    let page = number("page", 1)?;
    let per_page = number("per_page", 20)?.min(MAX_PER_PAGE);
    let status = q.get("status").map(String::as_str);
    // Any status the schema names is a valid filter (`pending`, a job's,
    // matches no run); anything else is refused.
    if let Some(st) = status {
        if crate::event::Status::parse(st).is_none() {
            return Err(ApiError::bad_request(format!(
                "unknown status `{st}`; a run is one of {}",
                super::openapi::RUN_STATUSES.join(", ")
            ))
            .field("status"));
        }
    }
    let workflow = q.get("workflow").map(String::as_str);
    let (runs, total) = s.runs.list(status, workflow, page, per_page);
    Ok(Json(RunList {
        runs,
        total,
        page,
        per_page,
    }))
}

/// One run: its status, timestamps, jobs, steps, attempts and webhook deliveries.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = RunResponse),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    ))]
pub(super) async fn get_run(
    State(s): St,
    Path(id): Path<String>,
) -> Result<Json<RunResponse>, ApiError> {
    let entry = s.runs.get(&id)?;
    let view = entry.view();
    let (detail, transitions) = match view.store_run_id {
        Some(run_id) => {
            let store = s.runs.store.clone();
            tokio::task::spawn_blocking(move || {
                Ok::<_, crate::state::StateError>((store.run(run_id)?, store.transitions(run_id)?))
            })
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|e| ApiError::internal(e.to_string()))?
        }
        None => (None, Vec::new()),
    };
    let store = s.runs.store.clone();
    let webhooks = tokio::task::spawn_blocking(move || store.webhook_deliveries(&id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(RunResponse {
        view,
        run: detail,
        webhooks,
        transitions,
    }))
}

/// The run's engine events as Server-Sent Events, from the start or after
/// `Last-Event-ID`; the stream ends when the run ends.
#[utoipa::path(get, path = "/api/v1/runs/{id}/events", tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "`event:` is the event's kind, `data:` its JSON", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad Last-Event-ID", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such run, or its events are no longer kept", body = ErrorBody),
    ))]
pub(super) async fn run_events(
    State(s): St,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let entry = s.runs.get(&id)?;
    if entry.log.is_expired() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "events_expired",
            format!(
                "the events of run {id} are no longer kept; GET /api/v1/runs/{id} has its record"
            ),
        ));
    }
    // Ids are 1-based positions in the run's log: resume after the last seen.
    let start = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| {
                ApiError::bad_request("Last-Event-ID must be an event id (a number)")
                    .field("Last-Event-ID")
            })?,
    };
    let log = entry.log.clone();
    let version = log.subscribe();
    let stream = futures_util::stream::unfold(
        (log, version, start),
        |(log, mut version, next)| async move {
            loop {
                match log.get(next) {
                    Next::Entry(e) => {
                        let ev = SseEvent::default()
                            .id((next + 1).to_string())
                            .event(e.kind)
                            .data(e.json);
                        return Some((Ok::<_, Infallible>(ev), (log, version, next + 1)));
                    }
                    Next::End => return None,
                    Next::Wait => {
                        if version.changed().await.is_err() {
                            return None;
                        }
                    }
                }
            }
        },
    );
    // A comment line every 15 s keeps proxies from closing a quiet stream
    // (a step that prints nothing for minutes).
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A step's log, as text (cut at 64 MiB).
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs/{job}/{step}", tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
        ("job" = String, Path, description = "The job's key"),
        ("step" = String, Path, description = "The step's id or number"),
    ),
    responses(
        (status = 200, description = "The log", content_type = "text/plain", body = String),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such run, step or log", body = ErrorBody),
    ))]
pub(super) async fn step_log(
    State(s): St,
    Path((id, job, step)): Path<(String, String, String)>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let entry = s.runs.get(&id)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    match q.get("follow").map(String::as_str) {
        None | Some("false") => {}
        Some("true") => {
            let body =
                super::follow::step_log(s.runs.clone(), entry, job, step, MAX_LOG_BYTES).await?;
            return Ok(
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response(),
            );
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`follow` is `true` or `false`, not `{other}`"
            ))
            .field("follow"))
        }
    }
    let run_id = entry.store_run_id().ok_or_else(|| {
        ApiError::not_found(format!("run {id} has not started, so it has no logs yet"))
    })?;
    let runs = s.runs.clone();
    let text = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
        let selector = format!("{job}.{step}");
        let found = crate::history::logs(runs.store.as_ref(), &runs.root, run_id, Some(&selector))
            .map_err(|e| ApiError::not_found(e.to_string()))?;
        let [(_, log)] = found.as_slice() else {
            return Err(ApiError::not_found(format!(
                "`{selector}` names {} logs; name one step",
                found.len()
            )));
        };
        log.read(runs.remote_cache.get().map(|c| c.as_ref()), MAX_LOG_BYTES)
            .map_err(|e| {
                ApiError::not_found(match e {
                    crate::history::LogReadError::Empty => {
                        format!("cannot read the log of {selector}: it printed nothing")
                    }
                    crate::history::LogReadError::Failed(e) => {
                        format!("cannot read the log of {selector}: {e}")
                    }
                })
            })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// Cancels a run: a queued one at once, a running one once its processes are gone.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 202, description = "Cancelling", body = RunCreated),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run has already finished", body = ErrorBody),
    ))]
pub(super) async fn cancel_run(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let entry = s.runs.cancel(&id)?;
    let view = entry.view();
    Ok((
        StatusCode::ACCEPTED,
        Json(RunCreated {
            id: view.id,
            status: view.status,
            url: view.url,
        }),
    )
        .into_response())
}

/// Pause, resume, advance, run N steps: 202 with the run's status after it.
async fn control(s: &AppState, id: String, control: Control) -> Result<Response, ApiError> {
    let runs = s.runs.clone();
    let entry = tokio::task::spawn_blocking(move || runs.control(&id, control))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let view = entry.view();
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"id": view.id, "status": view.status, "url": view.url})),
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/retry", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 202, description = "Queued again as a new attempt", body = RunCreated),
        (status = 400, description = "A bad request body", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run's status does not allow it", body = ErrorBody),
    ))]
pub(super) async fn retry_run(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let runs = s.runs.clone();
    let entry = tokio::task::spawn_blocking(move || runs.retry(&id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let view = entry.view();
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"id": view.id, "status": view.status, "url": view.url})),
    )
        .into_response())
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/pause", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 202, description = "Paused: running steps finish, nothing new starts", body = RunCreated),
        (status = 400, description = "A bad request body", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run's status does not allow it", body = ErrorBody),
    ))]
pub(super) async fn pause_run(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    control(&s, id, Control::Pause).await
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/resume", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 202, description = "Running again", body = RunCreated),
        (status = 400, description = "A bad request body", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run's status does not allow it", body = ErrorBody),
    ))]
pub(super) async fn resume_run(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    control(&s, id, Control::Resume).await
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/advance", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 202, description = "The next ready step runs, then the run pauses", body = RunCreated),
        (status = 400, description = "A bad request body", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run's status does not allow it", body = ErrorBody),
    ))]
pub(super) async fn advance_run(
    State(s): St,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    control(&s, id, Control::Steps(1)).await
}

/// `{"max_steps": N}`: run up to N more steps, then pause.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RunStepsBody {
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "whole_number")]
    max_steps: u64,
}

/// A JSON integer, which JSON Schema says `3.0` also is; `3.5` and `-1` are not.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    match serde_json::Number::deserialize(d)? {
        n if n.is_u64() => Ok(n.as_u64().unwrap_or_default()),
        n => match n.as_f64() {
            Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => Ok(f as u64),
            _ => Err(D::Error::custom(format!(
                "`{n}` is not a whole number from 0"
            ))),
        },
    }
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/run", tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    request_body = RunStepsBody,
    responses(
        (status = 202, description = "Running up to max_steps more steps", body = RunCreated),
        (status = 400, description = "A bad request body", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run's status does not allow it", body = ErrorBody),
    ))]
pub(super) async fn run_steps(
    State(s): St,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), "body_rejected", e.body_text()))?;
    let parsed: RunStepsBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("the body must be {{\"max_steps\": N}}: {e}"))
            .field("max_steps")
    })?;
    if parsed.max_steps == 0 {
        return Err(ApiError::bad_request(
            "`max_steps` must be at least 1 (to pause, POST .../pause)",
        )
        .field("max_steps"));
    }
    control(&s, id, Control::Steps(parsed.max_steps)).await
}

/// The workflow files under the server's root, with their jobs and inputs.
#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows",
    responses(
        (status = 200, description = "The workflows", body = super::workflows::WorkflowList),
        (status = 401, description = "No or wrong token", body = ErrorBody),
    ))]
pub(super) async fn list_workflows(
    State(s): St,
) -> Result<Json<super::workflows::WorkflowList>, ApiError> {
    let root = s.runs.root.clone();
    let list = tokio::task::spawn_blocking(move || super::workflows::list(&root))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(list))
}

/// Prometheus metrics, in its text format.
#[utoipa::path(get, path = "/metrics", tag = "server",
    responses(
        (status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
        (status = 401, description = "No or wrong token", body = ErrorBody),
    ))]
pub(super) async fn metrics(State(s): St) -> Response {
    if let Some(queue) = s.workers.clone() {
        if let Ok(Ok(workers)) = tokio::task::spawn_blocking(move || queue.workers()).await {
            s.runs.metrics.set_workers(&workers, crate::event::now_ms());
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.runs.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3cres"));
        assert!(!same_secret("s3cret", "s3cret "));
        assert!(!same_secret("", "s3cret"));
    }
}
