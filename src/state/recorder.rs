//! The recorder: a thread that owns the [`Store`] during a run and writes the
//! engine's events to it.
//!
//! Writing each event in its own transaction would cost a commit per event;
//! instead the thread blocks for one event, then drains whatever else is already
//! queued and writes the whole batch in one transaction. When the engine is busy
//! the batches grow on their own, which is what keeps a run of a thousand quick
//! steps cheap to record. The engine's side is a plain `Sender<Event>`: sending
//! never blocks and never fails while the recorder lives.

use super::{Result, StateError, Store};
use crate::event::Event;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Recorder;

/// How long the recorder lets events gather after the first of a batch.
const BATCH_WINDOW: Duration = Duration::from_millis(2);

/// Joins the recorder thread and hands the store back.
pub struct RecorderHandle {
    thread: JoinHandle<(Store, Option<StateError>)>,
}

impl Recorder {
    /// Starts the recorder thread. `store` should already have begun its run
    /// ([`Store::begin_run`]). Drop every sender, then call
    /// [`RecorderHandle::finish`].
    pub fn spawn(store: Store) -> Result<(Sender<Event>, RecorderHandle)> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("trun-recorder".into())
            .spawn(move || run(store, rx))
            .map_err(StateError::Thread)?;
        Ok((tx, RecorderHandle { thread }))
    }
}

impl RecorderHandle {
    /// Waits until every event sent before the last sender was dropped is
    /// written, and returns the store. The first write error, if any, is
    /// returned instead (later batches were still attempted).
    pub fn finish(self) -> Result<Store> {
        let (store, error) = self
            .thread
            .join()
            .map_err(|_| StateError::RecorderPanicked)?;
        match error {
            Some(error) => Err(error),
            None => Ok(store),
        }
    }
}

fn run(mut store: Store, rx: Receiver<Event>) -> (Store, Option<StateError>) {
    let mut first_error = None;
    let mut batch = Vec::with_capacity(256);
    while let Ok(event) = rx.recv() {
        batch.push(event);
        // Group commit: a busy engine sends a few events per step, and a
        // commit per handful of events would cost more than the events
        // themselves. Waiting briefly lets a batch gather; the state on disk
        // lags the run by at most this much.
        std::thread::sleep(BATCH_WINDOW);
        batch.extend(rx.try_iter());
        if let Err(error) = store.record(&batch) {
            first_error.get_or_insert(error);
        }
        batch.clear();
    }
    (store, first_error)
}
