//! The webhook outbox in SQLite: `webhook_deliveries` and `webhook_attempts`.

use super::super::webhooks::{
    NewWebhookDelivery, WebhookAttempt, WebhookDelivery, WebhookDeliveryRecord, WebhookNext,
};
use super::super::{to_json, Result, StateError};
use rusqlite::{params, Connection, TransactionBehavior};

fn headers_from_json(text: &str) -> Result<Vec<(String, String)>> {
    serde_json::from_str(text)
        .map_err(|e| StateError::Corrupt(format!("webhook headers {text:?}: {e}")))
}

pub(super) fn enqueue(conn: &mut Connection, rows: &[NewWebhookDelivery]) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO webhook_deliveries
                 (delivery, run_ref, event, url, headers, body, status, attempts, max_attempts, next_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8, ?8)",
        )?;
        let mut refuse = tx.prepare_cached(
            "UPDATE webhook_deliveries SET status = 'failed', attempts = 1, finished_at = ?2 WHERE id = ?1",
        )?;
        let mut attempt = tx.prepare_cached(
            "INSERT INTO webhook_attempts (delivery_id, attempt, at, duration_ms, error)
             VALUES (?1, 1, ?2, 0, ?3)",
        )?;
        for r in rows {
            insert.execute(params![
                r.delivery,
                r.run_ref,
                r.event,
                r.url,
                to_json(&r.headers)?,
                r.body,
                r.max_attempts,
                r.due_at,
            ])?;
            if let Some(why) = &r.refused {
                let id = tx.last_insert_rowid();
                refuse.execute(params![id, r.due_at])?;
                attempt.execute(params![id, r.due_at, why])?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// Claims up to `limit` deliveries due at `now`: pending ones, and ones
/// claimed before whose lease ran out (the claiming server died mid-send).
pub(super) fn claim(
    conn: &mut Connection,
    now: i64,
    lease_until: i64,
    limit: usize,
) -> Result<Vec<WebhookDelivery>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let claimed = {
        let mut select = tx.prepare_cached(
            "SELECT id, delivery, event, url, headers, body, attempts, max_attempts
             FROM webhook_deliveries
             WHERE status IN ('pending', 'delivering') AND next_at <= ?1
             ORDER BY next_at, id LIMIT ?2",
        )?;
        let rows = select
            .query_map(params![now, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, u32>(6)?,
                    r.get::<_, u32>(7)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut update = tx.prepare_cached(
            "UPDATE webhook_deliveries SET status = 'delivering', next_at = ?2 WHERE id = ?1",
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, delivery, event, url, headers, body, attempts, max_attempts) in rows {
            update.execute(params![id, lease_until])?;
            out.push(WebhookDelivery {
                id,
                delivery,
                event,
                url,
                headers: headers_from_json(&headers)?,
                body,
                attempts,
                max_attempts,
            });
        }
        out
    };
    tx.commit()?;
    Ok(claimed)
}

pub(super) fn record_attempt(
    conn: &mut Connection,
    id: i64,
    attempt: &WebhookAttempt,
    next: WebhookNext,
) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO webhook_attempts
             (delivery_id, attempt, at, duration_ms, status_code, error, response)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id,
        attempt.attempt,
        attempt.at,
        attempt.duration_ms as i64,
        attempt.status_code,
        attempt.error,
        attempt.response,
    ])?;
    let finished_at = attempt.at + attempt.duration_ms as i64;
    let (status, next_at, finished) = match next {
        WebhookNext::Delivered => ("delivered", finished_at, Some(finished_at)),
        WebhookNext::Failed => ("failed", finished_at, Some(finished_at)),
        WebhookNext::RetryAt(at) => ("pending", at, None),
    };
    tx.prepare_cached(
        "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, next_at = ?4, finished_at = ?5
         WHERE id = ?1",
    )?
    .execute(params![id, status, attempt.attempt, next_at, finished])?;
    tx.commit()?;
    Ok(())
}

pub(super) fn deliveries(conn: &Connection, run_ref: &str) -> Result<Vec<WebhookDeliveryRecord>> {
    let mut select = conn.prepare_cached(
        "SELECT id, delivery, event, url, status, max_attempts, created_at, next_at, finished_at
         FROM webhook_deliveries WHERE run_ref = ?1 ORDER BY id",
    )?;
    let mut attempts = conn.prepare_cached(
        "SELECT attempt, at, duration_ms, status_code, error, response
         FROM webhook_attempts WHERE delivery_id = ?1 ORDER BY attempt",
    )?;
    let rows = select
        .query_map(params![run_ref], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                WebhookDeliveryRecord {
                    delivery: r.get(1)?,
                    event: r.get(2)?,
                    url: r.get(3)?,
                    status: r.get(4)?,
                    max_attempts: r.get(5)?,
                    created_at: r.get(6)?,
                    next_attempt_at: Some(r.get(7)?),
                    finished_at: r.get(8)?,
                    attempts: Vec::new(),
                },
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, mut rec) in rows {
        if rec.status != "pending" {
            rec.next_attempt_at = None;
        }
        rec.attempts = attempts
            .query_map(params![id], |r| {
                Ok(WebhookAttempt {
                    attempt: r.get(0)?,
                    at: r.get(1)?,
                    duration_ms: r.get::<_, i64>(2)?.max(0) as u64,
                    status_code: r.get(3)?,
                    error: r.get(4)?,
                    response: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.push(rec);
    }
    Ok(out)
}
