//! The recorder: a thread that writes a run's events to the [`Store`], in
//! batches, and hands each event to a [`Tap`] (the session's reporters) as it
//! arrives.
//!
//! Writing each event in its own transaction would cost a commit per event;
//! instead the thread blocks for one event, then gathers whatever else arrives
//! within a couple of milliseconds and writes the whole batch in one
//! transaction. When the engine is busy the batches grow on their own, which is
//! what keeps a run of a thousand quick steps cheap to record. The engine's side
//! is a plain `Sender<Event>`: sending never blocks and never fails while the
//! recorder lives. The tap sees every event at once, never waiting for the disk.

use super::{Result, StateError, Store};
use crate::event::Event;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Sees every event the recorder receives, in order, on the recorder's thread
/// (the session's reporters render through it).
pub trait Tap: Send + 'static {
    fn event(&mut self, ev: &Event);
}

impl Tap for () {
    fn event(&mut self, _: &Event) {}
}

pub struct Recorder;

/// How long the recorder lets events gather after the first of a batch.
/// Short enough that a burst of events (a no-op's hundred up-to-date jobs in
/// ten milliseconds) is mostly written while the engine still runs, rather
/// than all after it (20 ms cost a 10 000-file no-op 4 ms at its end); long
/// enough that a chain of quick steps commits a batch of several steps.
const BATCH_WINDOW: Duration = Duration::from_millis(5);
/// A batch is written at this size even inside the window.
const BATCH_MAX: usize = 1024;

/// Joins the recorder thread.
pub struct RecorderHandle<T = ()> {
    thread: JoinHandle<(T, Option<StateError>)>,
}

/// What the recorder thread leaves behind: the tap, and the first write error.
pub struct Finished<T> {
    pub tap: T,
    pub error: Option<StateError>,
}

impl Recorder {
    /// Starts the recorder thread for `run_id` (already begun with
    /// [`Store::begin_run`]). Drop every sender, then call
    /// [`RecorderHandle::finish`].
    pub fn spawn(store: Arc<dyn Store>, run_id: i64) -> Result<(Sender<Event>, RecorderHandle)> {
        Recorder::spawn_with(store, run_id, ())
    }

    /// [`Recorder::spawn`] with a tap that sees every event first.
    pub fn spawn_with<T: Tap>(
        store: Arc<dyn Store>,
        run_id: i64,
        tap: T,
    ) -> Result<(Sender<Event>, RecorderHandle<T>)> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("trun-recorder".into())
            .spawn(move || run(store.as_ref(), run_id, rx, tap))
            .map_err(StateError::Thread)?;
        Ok((tx, RecorderHandle { thread }))
    }
}

impl<T> RecorderHandle<T> {
    /// Waits until every event sent before the last sender was dropped is
    /// written. The first write error, if any, is in [`Finished::error`]
    /// (later batches were still attempted); `Err` only if the thread panicked.
    pub fn finish(self) -> Result<Finished<T>> {
        // It may be waiting out a batch's window: what is left is written now.
        self.thread.thread().unpark();
        let (tap, error) = self
            .thread
            .join()
            .map_err(|_| StateError::RecorderPanicked)?;
        Ok(Finished { tap, error })
    }
}

fn run<T: Tap>(
    store: &dyn Store,
    run_id: i64,
    rx: Receiver<Event>,
    mut tap: T,
) -> (T, Option<StateError>) {
    yield_to_steps();
    let mut first_error = None;
    let mut batch: Vec<Event> = Vec::with_capacity(256);
    while let Ok(event) = rx.recv() {
        // Group commit: a busy engine sends a few events per step, and a
        // commit per handful of events would cost more than the events
        // themselves. The state on disk (and the terminal) lags the run by
        // at most the window. Within it the thread sleeps rather than waits
        // on the channel: a sender then never has to wake it, a thread switch
        // per event that a thousand trivial steps felt. [`RecorderHandle::finish`]
        // wakes it for the last batch.
        let deadline = Instant::now() + BATCH_WINDOW;
        let mut next = Some(event);
        while let Some(event) = next.take() {
            tap.event(&event);
            let last = matches!(event, Event::RunFinished { .. });
            // Output lines go to the log files, not the database.
            if !matches!(event, Event::StepOutput { .. }) {
                batch.push(event);
            }
            if last || batch.len() >= BATCH_MAX {
                break;
            }
            next = loop {
                match rx.try_recv() {
                    Ok(ev) => break Some(ev),
                    Err(mpsc::TryRecvError::Disconnected) => break None,
                    Err(mpsc::TryRecvError::Empty) => {
                        let now = Instant::now();
                        if now >= deadline {
                            break None;
                        }
                        std::thread::park_timeout(deadline - now);
                    }
                }
            };
        }
        if !batch.is_empty() {
            if let Err(error) = store.record(run_id, &batch) {
                first_error.get_or_insert(error);
            }
            batch.clear();
        }
    }
    (tap, first_error)
}

/// The recorder's nice value: recording yields the CPU to the engine and the
/// steps it runs, whose order it does not hold up (the events wait in the
/// channel; the recorder still gets its share when the machine is busy). A
/// chain of 1000 trivial jobs ran 0.5–1% faster with it, in three interleaved
/// comparisons: a small gain, kept because it costs nothing.
const RECORDER_NICE: libc::c_int = 10;

/// Lowers this thread's priority to [`RECORDER_NICE`] (Linux keeps a nice
/// value per thread). Best effort: a failure leaves the default.
fn yield_to_steps() {
    let tid = nix::unistd::gettid().as_raw();
    // SAFETY: setpriority on one of our own threads touches no memory of ours.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, RECORDER_NICE);
    }
}
