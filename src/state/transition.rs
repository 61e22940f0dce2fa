//! The one rule for how a run or a job may change status, and the record of a
//! change. Every status change the store makes to a run or a job goes through
//! [`check`] and is written as a [`Transition`] with its time and reason, so
//! `GET /api/v1/runs/{id}` (and `trun show --json`) can say what happened when.
//!
//! It does not decide *when* a run moves (the engine and the server do); it
//! only says whether a move is allowed. Steps and attempts keep their own
//! columns and are not checked here.

use crate::event::{Millis, Status};
use serde::{Deserialize, Serialize};

/// A status change refused by [`check`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot go from `{from}` to `{to}`{}", why(*from, *to))]
pub struct Illegal {
    pub from: Status,
    pub to: Status,
}

fn why(from: Status, to: Status) -> &'static str {
    if from == to {
        ": it already is"
    } else if from == Status::Success {
        ": it succeeded"
    } else if from.is_final() && to != Status::Queued {
        ": it has finished"
    } else {
        ""
    }
}

/// The status a run ends with when the engine reports `reported`: one already
/// final (a run the server marked `interrupted` as it stopped) stays.
pub fn on_finish(current: Option<Status>, reported: Status) -> Status {
    match current {
        Some(c) if c.is_final() => c,
        _ => reported,
    }
}

/// Whether a run or a job may go from `from` to `to`.
///
/// - `pending` (a job not started) and `queued` (a run not started) start
///   (`running`), wait for a concurrency slot (`waiting`), or end without
///   running (`cancelled`, `skipped`, `interrupted` when the process
///   recording them died, and `failure` when they cannot start at all: a
///   queued run whose workflow no longer plans after a restart).
/// - `waiting` goes on to `running` or ends the same ways.
/// - `running` and `paused` alternate (`pause`/`resume`), and either ends:
///   a paused run whose running steps were its last ends like a running one.
/// - A final status is final, except that `retry` queues a run (or a job)
///   that did not succeed again: `failure`, `cancelled`, `interrupted` and,
///   for jobs behind a failed need, `skipped` go back to `queued` (a run) or
///   `pending` (a job).
pub fn check(from: Status, to: Status) -> Result<(), Illegal> {
    use Status::*;
    let ok = match (from, to) {
        (a, b) if a == b => false,
        (Pending | Queued, Running | Waiting | Cancelled | Skipped | Interrupted | Failure) => true,
        (Pending, Queued) | (Queued, Pending) => true,
        (Waiting, Running | Queued | Cancelled | Skipped | Interrupted | Failure) => true,
        (Running, Paused | Waiting) | (Paused, Running) => true,
        (Running | Paused, Success | Failure | Cancelled | Interrupted | Skipped) => true,
        (Failure | Cancelled | Interrupted | Skipped, Queued | Pending) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Illegal { from, to })
    }
}

/// One recorded change of a run's status (`job` is `None`) or of one of its jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transition {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    pub from: Option<Status>,
    pub to: Status,
    /// Milliseconds since the Unix epoch.
    pub at: Millis,
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn runs_pause_resume_and_finish() {
        for (a, b) in [
            (Queued, Running),
            (Queued, Cancelled),
            (Queued, Failure),
            (Queued, Waiting),
            (Waiting, Running),
            (Running, Paused),
            (Paused, Running),
            (Paused, Cancelled),
            (Running, Success),
            (Running, Interrupted),
            (Failure, Queued),
            (Skipped, Queued),
        ] {
            assert_eq!(check(a, b), Ok(()), "{a} -> {b}");
        }
    }

    #[test]
    fn a_finished_run_stays_finished_and_nothing_moves_to_itself() {
        for (a, b) in [
            (Success, Queued),
            (Success, Running),
            (Failure, Paused),
            (Cancelled, Running),
            (Queued, Paused),
            (Paused, Paused),
            (Running, Running),
            (Queued, Success),
        ] {
            assert!(check(a, b).is_err(), "{a} -> {b}");
        }
        assert_eq!(
            check(Success, Paused).unwrap_err().to_string(),
            "cannot go from `success` to `paused`: it succeeded"
        );
        assert_eq!(
            check(Cancelled, Paused).unwrap_err().to_string(),
            "cannot go from `cancelled` to `paused`: it has finished"
        );
        assert_eq!(
            check(Paused, Paused).unwrap_err().to_string(),
            "cannot go from `paused` to `paused`: it already is"
        );
    }
}
