//! The gate a step passes before it starts: how a run is paused, resumed,
//! advanced one step at a time or let run up to `max_steps` (`trun serve`'s
//! run control). The engine consults it; whoever controls the run (the
//! server) opens and closes it. Steps already running are never touched:
//! pausing only stops new ones from starting.
//!
//! It is not a concurrency limit (`-j` and concurrency groups are) and it
//! decides nothing about order: the next step to pass is whichever ready step
//! asks first, in the engine's plan order.

use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{watch, Notify};

/// What the gate lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Every step (the run is running).
    Open,
    /// This many more steps, then the gate closes (`advance` is 1, `run`
    /// with `max_steps` is N); 0 is closed (paused).
    Steps(u64),
}

/// Called with the reason when the gate closes by itself (its step budget
/// is spent), so the controller can record the run `paused`.
pub type OnClosed = Box<dyn Fn(&str) + Send + Sync>;

pub struct Gate {
    budget: Mutex<Budget>,
    notify: Notify,
    on_closed: Mutex<Option<OnClosed>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new(Budget::Open)
    }
}

impl Gate {
    pub fn new(budget: Budget) -> Gate {
        Gate {
            budget: Mutex::new(budget),
            notify: Notify::new(),
            on_closed: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Budget> {
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets what the gate lets through from now on and wakes waiting steps.
    pub fn set(&self, budget: Budget) {
        *self.lock() = budget;
        self.notify.notify_waiters();
    }

    pub fn budget(&self) -> Budget {
        *self.lock()
    }

    pub fn is_closed(&self) -> bool {
        self.budget() == Budget::Steps(0)
    }

    /// Who hears that the budget ran out.
    pub fn on_closed(&self, f: OnClosed) {
        *self.on_closed.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// Waits until a step may start and takes its place in the budget;
    /// false when `cancel` turned true first (the step does not start).
    pub async fn pass(self: &Arc<Self>, cancel: &mut watch::Receiver<bool>) -> bool {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the budget is read: a `set` in between is seen.
            notified.as_mut().enable();
            if *cancel.borrow() {
                return false;
            }
            let spent = {
                let mut b = self.lock();
                match *b {
                    Budget::Open => return true,
                    Budget::Steps(n) if n > 0 => {
                        *b = Budget::Steps(n - 1);
                        Some(n - 1 == 0)
                    }
                    Budget::Steps(_) => None,
                }
            };
            if let Some(closed) = spent {
                if closed {
                    if let Some(f) = &*self.on_closed.lock().unwrap_or_else(|p| p.into_inner()) {
                        f("its step budget is spent");
                    }
                }
                return true;
            }
            tokio::select! {
                _ = notified => {}
                _ = super::cancelled(cancel) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_budget_of_two_lets_two_steps_through_then_closes() {
        let gate = Arc::new(Gate::new(Budget::Steps(2)));
        let closed = Arc::new(AtomicUsize::new(0));
        let c = closed.clone();
        gate.on_closed(Box::new(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        }));
        let (_tx, mut rx) = watch::channel(false);
        assert!(gate.pass(&mut rx).await);
        assert!(gate.pass(&mut rx).await);
        assert!(gate.is_closed());
        assert_eq!(closed.load(Ordering::SeqCst), 1);
        let third = tokio::time::timeout(Duration::from_millis(100), gate.pass(&mut rx)).await;
        assert!(third.is_err(), "a closed gate let a step through");
        gate.set(Budget::Open);
        assert!(gate.pass(&mut rx).await);
    }

    #[tokio::test]
    async fn a_waiting_step_starts_on_resume_and_gives_up_on_cancel() {
        let gate = Arc::new(Gate::new(Budget::Steps(0)));
        let (tx, rx) = watch::channel(false);
        let g = gate.clone();
        let mut r = rx.clone();
        let waiting = tokio::spawn(async move { g.pass(&mut r).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        gate.set(Budget::Open);
        assert!(waiting.await.unwrap());

        gate.set(Budget::Steps(0));
        let g = gate.clone();
        let mut r = rx.clone();
        let waiting = tokio::spawn(async move { g.pass(&mut r).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(true).unwrap();
        assert!(!waiting.await.unwrap());
    }
}
