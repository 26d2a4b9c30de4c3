//! [`WaitQueue`].

use alloc::collections::VecDeque;

use fsdax_hal::arch::cpu;
use fsdax_hal::sync::IrqMutex;

use crate::task::{self, TaskId};

struct Inner<S> {
    state: S,
    waiters: VecDeque<TaskId>,
}

/// A state and the tasks waiting for it to change.
pub struct WaitQueue<S> {
    inner: IrqMutex<Inner<S>>,
}

impl<S> WaitQueue<S> {
    /// A queue around `state`, with no waiters.
    pub const fn new(state: S) -> Self {
        WaitQueue { inner: IrqMutex::new(Inner { state, waiters: VecDeque::new() }) }
    }

    /// Calls `f(state, retried)` under the queue's lock until it returns
    /// `Some`; each time it returns `None` the current task sleeps until a
    /// [`Self::update_and_notify`] wakes it. `retried` is false on the
    /// first call.
    pub fn wait_until<R>(&self, f: impl FnMut(&mut S, bool) -> Option<R>) -> R {
        match self.wait(None, f) {
            Some(r) => r,
            // Without a deadline only `f` ends the wait.
            None => unreachable!("a wait without a deadline gave up"),
        }
    }

    /// [`Self::wait_until`] with a deadline: gives up when the timer tick
    /// count reaches `until` (`crate::time::ticks`), returning None.
    pub fn wait_until_tick<R>(&self, until: u64, f: impl FnMut(&mut S, bool) -> Option<R>) -> Option<R> {
        self.wait(Some(until), f)
    }

    /// The wait of [`Self::wait_until`] and [`Self::wait_until_tick`].
    fn wait<R>(&self, until: Option<u64>, mut f: impl FnMut(&mut S, bool) -> Option<R>) -> Option<R> {
        let mut retried = false;
        loop {
            let done = cpu::without_interrupts(|| {
                let mut g = self.inner.lock();
                if let Some(r) = f(&mut g.state, retried) {
                    return Some(Some(r));
                }
                // Only a task that waits needs its id (the scheduler's
                // lock nests inside the queue's, as in `block_current`):
                // taking a free lock stays off the scheduler's lock.
                let me = task::current();
                if until.is_some_and(|t| crate::time::ticks() >= t) {
                    g.waiters.retain(|&w| w != me);
                    return Some(None);
                }
                if !g.waiters.contains(&me) {
                    g.waiters.push_back(me);
                }
                // Blocked (or asleep until the deadline, when the timer
                // wakes us) before the queue's lock is dropped: a waker
                // that changes the state after this point finds us queued.
                let outcome = match until {
                    None => task::block_current(),
                    Some(t) => task::sleep_current_until(t),
                };
                drop(g);
                task::block_switch(outcome);
                None
            });
            if let Some(r) = done {
                return r;
            }
            retried = true;
        }
    }

    /// Changes the state under the queue's lock, then wakes one waiter (or
    /// all) so it re-checks. Returns what `f` returned.
    pub fn update_and_notify<R>(&self, all: bool, f: impl FnOnce(&mut S) -> R) -> R {
        let mut g = self.inner.lock();
        let r = f(&mut g.state);
        while let Some(id) = g.waiters.pop_front() {
            // A waiter that was killed meanwhile is skipped.
            if task::wake(id) && !all {
                break;
            }
        }
        r
    }

    /// Changes the state under the queue's lock without waking anyone (for
    /// changes no waiter is waiting for, like taking a free lock).
    pub fn update<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut self.inner.lock().state)
    }

    /// Reads the state under the queue's lock.
    pub fn peek<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&self.inner.lock().state)
    }
}

impl<S> core::fmt::Debug for WaitQueue<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("WaitQueue")
    }
}
