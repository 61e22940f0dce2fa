//! The webhook outbox's rows: a delivery waiting to be sent (or sent), and
//! each attempt to send it with what the receiver answered. The outbox is
//! durable so that a delivery survives a restart of the server; deciding when
//! to retry belongs to [`crate::server`], not to the store.

use serde::Serialize;

/// A delivery to put in the outbox. Its headers already hold the signature:
/// the body never changes, so the outbox keeps no secret.
#[derive(Debug, Clone)]
pub struct NewWebhookDelivery {
    /// The `X-Trun-Delivery` id.
    pub delivery: String,
    /// The server's id of the run the event is about.
    pub run_ref: String,
    /// `run.started`, `job.failed`, …
    pub event: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub max_attempts: u32,
    /// When the first attempt is due (ms since the epoch).
    pub due_at: i64,
    /// Why it must not be sent at all (its secret is missing): it goes in
    /// `failed`, with this as its one attempt's error.
    pub refused: Option<String>,
}

/// A delivery claimed for sending.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    pub id: i64,
    pub delivery: String,
    pub event: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub max_attempts: u32,
}

/// One attempt to send a delivery.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookAttempt {
    pub attempt: u32,
    pub at: i64,
    pub duration_ms: u64,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why the attempt failed without an answer (timeout, refused connection).
    pub error: Option<String>,
    /// The start of the receiver's answer, bounded and made printable.
    pub response: Option<String>,
}

/// What comes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookNext {
    Delivered,
    /// Try again at this time (ms since the epoch).
    RetryAt(i64),
    /// No attempts left.
    Failed,
}

/// A delivery as `GET /api/v1/runs/{id}` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookDeliveryRecord {
    pub delivery: String,
    pub event: String,
    pub url: String,
    /// `pending`, `delivering`, `delivered` or `failed`.
    pub status: String,
    pub max_attempts: u32,
    pub created_at: i64,
    /// When the next attempt is due, while there will be one.
    pub next_attempt_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub attempts: Vec<WebhookAttempt>,
}
