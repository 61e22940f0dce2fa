//! `GET /api/v1/workers`: the `trun worker`s that share this server's
//! PostgreSQL database, with their labels, the jobs they run now
//! (`run:job:attempt`) and their last heartbeat. A server on SQLite has no
//! job queue, hence no workers: the list is empty.

use super::api::AppState;
use super::error::ApiError;
use crate::state::WorkerInfo;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

/// The route; the caller puts it behind its auth layer.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/workers", get(list_workers))
}

/// The workers sharing the server's database.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct WorkerList {
    workers: Vec<WorkerInfo>,
}

#[utoipa::path(get, path = "/api/v1/workers", tag = "workers",
    responses(
        (status = 200, description = "The workers, by name (empty without a PostgreSQL --db)", body = WorkerList),
        (status = 401, description = "No or wrong token", body = super::error::ErrorBody),
    ))]
pub(super) async fn list_workers(
    State(s): State<Arc<AppState>>,
) -> Result<Json<WorkerList>, ApiError> {
    let Some(queue) = s.workers.clone() else {
        return Ok(Json(WorkerList {
            workers: Vec::new(),
        }));
    };
    let workers = tokio::task::spawn_blocking(move || queue.workers())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(WorkerList { workers }))
}
