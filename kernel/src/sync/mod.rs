//! Sleeping locks and wait queues: a task that cannot get the lock sleeps
//! (the scheduler blocks it) instead of spinning, so long critical sections
//! (a file-system check of a large image) keep interrupts on and the timer
//! running.
//!
//! - [`WaitQueue`]: a state guarded by a short spin lock (`IrqMutex`) plus
//!   the tasks waiting for it to change. Lost-wakeup free on several CPUs:
//!   a waiter checks the state, queues itself and marks itself blocked while
//!   holding the queue's lock; a waker changes the state and wakes under the
//!   same lock. Lock order: wait queue, then scheduler.
//! - [`Mutex`] and [`RwLock`] (writer-preferring, `fsdax_kcore::lockstate`):
//!   the wait queue holds who owns the lock; the data sits in a `spin` lock
//!   that the owner always finds free (the protocol guarantees it), so they
//!   need no unchecked code. Their guards release on drop.
//!
//! Killing: every sleeping lock a task holds, or waits for, counts in its
//! record (`sleeping_locks`); a kill of such a task is deferred until it
//! holds none and reaches a safe point, and a fault while it holds one is a
//! kernel panic (`fsdax_kcore::kill`). Never take a sleeping lock with
//! interrupts off or inside an `IrqMutex`, and never in the idle task.

mod mutex;
mod rwlock;
mod wait;

pub use mutex::Mutex;
pub use rwlock::RwLock;
pub use wait::WaitQueue;

mod tests;
