//! The HTTP API under `/api/v1`, plus `/healthz` and `/metrics`: request
//! parsing, the bearer-token check, and responses. Each handler is thin: the
//! run table ([`Runs`]) and the store do the work; a run's detail is the
//! store's own [`RunDetail`](crate::state::RunDetail), as `trun show --json`
//! prints it.

use super::error::ApiError;
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
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Read;
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
        .route("/metrics", get(metrics))
        .merge(super::cache::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    workflow: Option<String>,
    yaml: Option<String>,
    #[serde(default)]
    jobs: Vec<String>,
    #[serde(default)]
    inputs: serde_json::Map<String, serde_json::Value>,
}

async fn create_run(
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
        let source = match (&parsed.workflow, &parsed.yaml) {
            (Some(p), None) => Source::Path(p),
            (None, Some(y)) => Source::Inline(y),
            _ => {
                return Err(ApiError::bad_request(
                    "give exactly one of `workflow` (a path under the server's root) or `yaml` (the workflow's text)",
                )
                .field("workflow"))
            }
        };
        runs.create(NewRun {
            source,
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
    let body = serde_json::json!({"id": view.id, "status": view.status, "url": view.url});
    Ok((code, [(header::LOCATION, view.url.clone())], Json(body)).into_response())
}

async fn list_runs(
    State(s): St,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let number = |name: &'static str, default: usize| -> Result<usize, ApiError> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                ApiError::bad_request(format!("`{name}` must be a whole number from 1")).field(name)
            }),
        }
    };
    let page = number("page", 1)?;
    let per_page = number("per_page", 20)?.min(MAX_PER_PAGE);
    let status = q.get("status").map(String::as_str);
    if let Some(st) = status {
        const KNOWN: [&str; 8] = [
            "queued",
            "running",
            "paused",
            "waiting",
            "success",
            "failure",
            "cancelled",
            "interrupted",
        ];
        if !KNOWN.contains(&st) {
            return Err(ApiError::bad_request(format!(
                "unknown status `{st}`; it is one of {}",
                KNOWN.join(", ")
            ))
            .field("status"));
        }
    }
    let workflow = q.get("workflow").map(String::as_str);
    let (runs, total) = s.runs.list(status, workflow, page, per_page);
    Ok(Json(serde_json::json!({
        "runs": runs,
        "total": total,
        "page": page,
        "per_page": per_page,
    })))
}

async fn get_run(
    State(s): St,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    let mut body = serde_json::to_value(&view).map_err(|e| ApiError::internal(e.to_string()))?;
    body["run"] = serde_json::to_value(&detail).map_err(|e| ApiError::internal(e.to_string()))?;
    body["transitions"] =
        serde_json::to_value(&transitions).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(body))
}

async fn run_events(
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

async fn step_log(
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
        let [(_, path)] = found.as_slice() else {
            return Err(ApiError::not_found(format!(
                "`{selector}` names {} logs; name one step",
                found.len()
            )));
        };
        let mut buf = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_LOG_BYTES).read_to_end(&mut buf))
            .map_err(|e| ApiError::not_found(format!("cannot read the log of {selector}: {e}")))?;
        Ok(buf)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

async fn cancel_run(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let entry = s.runs.cancel(&id)?;
    let view = entry.view();
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"id": view.id, "status": view.status, "url": view.url})),
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

async fn retry_run(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
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

async fn pause_run(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    control(&s, id, Control::Pause).await
}

async fn resume_run(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    control(&s, id, Control::Resume).await
}

async fn advance_run(State(s): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    control(&s, id, Control::Steps(1)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunStepsBody {
    max_steps: u64,
}

async fn run_steps(
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

async fn metrics(State(s): St) -> Response {
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
