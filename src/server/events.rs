//! A run's engine events as the server keeps them for Server-Sent Events: an
//! in-memory, append-only log fed by a [`Reporter`] on the recorder's thread,
//! read by any number of streams that each wait for the next entry.
//!
//! It is not the run's record (the [`Store`](crate::state::Store) is) and it
//! is bounded: past [`MAX_LOG_BYTES`] step output lines are dropped (counted
//! in the closing `log_truncated` note) while lifecycle events are always kept,
//! and only the newest finished runs keep their log at all (`expire`).

use crate::event::Event;
use crate::report::Reporter;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Output lines stop being kept for SSE once a run's log holds this much.
pub const MAX_LOG_BYTES: usize = 8 << 20;

/// One event as sent: its kind (the `event` tag) and its JSON.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: String,
    pub json: String,
}

#[derive(Default)]
struct Inner {
    entries: Vec<Entry>,
    bytes: usize,
    dropped_output: u64,
    closed: bool,
    expired: bool,
}

/// The event log of one run.
pub struct EventLog {
    inner: Mutex<Inner>,
    /// Bumped on every append and on close: what a waiting stream watches.
    version: watch::Sender<u64>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            inner: Mutex::new(Inner::default()),
            version: watch::channel(0).0,
        }
    }
}

impl EventLog {
    pub fn push(&self, ev: &Event) {
        let Ok(value) = serde_json::to_value(ev) else {
            return;
        };
        let kind = value
            .get("event")
            .and_then(|k| k.as_str())
            .unwrap_or("event")
            .to_string();
        let json = value.to_string();
        {
            let mut inner = self.lock();
            if matches!(ev, Event::StepOutput { .. }) && inner.bytes + json.len() > MAX_LOG_BYTES {
                inner.dropped_output += 1;
                return;
            }
            inner.bytes += json.len();
            inner.entries.push(Entry { kind, json });
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// No more events will come: streams end once they have sent everything.
    pub fn close(&self) {
        {
            let mut inner = self.lock();
            if inner.closed {
                return;
            }
            if inner.dropped_output > 0 {
                let json = serde_json::json!({
                    "event": "log_truncated",
                    "dropped_output_lines": inner.dropped_output,
                })
                .to_string();
                inner.entries.push(Entry {
                    kind: "log_truncated".into(),
                    json,
                });
            }
            inner.closed = true;
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// Where the newest attempt of the run begins (its last `run_started`).
    pub fn last_start(&self) -> usize {
        self.lock()
            .entries
            .iter()
            .rposition(|e| e.kind == "run_started")
            .unwrap_or(0)
    }

    /// More events will come after all (a retried run): streams opened from
    /// now on wait for them.
    pub fn reopen(&self) {
        let mut inner = self.lock();
        if !inner.expired {
            inner.closed = false;
        }
    }

    /// Forgets a closed log's entries (the run's record stays in the store).
    pub fn expire(&self) {
        let mut inner = self.lock();
        if inner.closed {
            inner.entries = Vec::new();
            inner.bytes = 0;
            inner.expired = true;
        }
    }

    pub fn is_expired(&self) -> bool {
        self.lock().expired
    }

    /// The entry at `index` (0-based), or whether the log is closed.
    pub fn get(&self, index: usize) -> Next {
        let inner = self.lock();
        match inner.entries.get(index) {
            Some(e) => Next::Entry(e.clone()),
            None if inner.closed || inner.expired => Next::End,
            None => Next::Wait,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub enum Next {
    Entry(Entry),
    Wait,
    End,
}

/// Feeds a run's [`EventLog`] from the session's recorder thread.
pub struct LogReporter {
    pub log: Arc<EventLog>,
    /// Told the store's run id when the run starts.
    pub on_started: Box<dyn FnMut(i64) + Send>,
}

impl Reporter for LogReporter {
    fn event(&mut self, ev: &Event) {
        if let Event::RunStarted { run_id, .. } = ev {
            (self.on_started)(*run_id);
        }
        self.log.push(ev);
    }

    fn finish(&mut self) {}
}
