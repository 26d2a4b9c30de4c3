//! [`Mutex`]: a mutual-exclusion lock whose waiters sleep.

use core::ops::{Deref, DerefMut};

use super::WaitQueue;
use crate::task;

/// A mutex whose waiters sleep. For long critical sections in task context.
pub struct Mutex<T> {
    /// True while some task holds the lock.
    owner: WaitQueue<bool>,
    /// Free whenever `owner` says unlocked, so the owner's `try_lock`
    /// always succeeds.
    data: spin::Mutex<T>,
}

impl<T> Mutex<T> {
    /// A new unlocked mutex.
    pub const fn new(value: T) -> Self {
        Mutex { owner: WaitQueue::new(false), data: spin::Mutex::new(value) }
    }

    /// Waits (sleeping) until the lock is free, then takes it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        task::sleeping_lock_acquired();
        self.owner.wait_until(|locked, _| (!*locked).then(|| *locked = true));
        let guard = self.data.try_lock().expect("a free sleeping mutex has a free data lock");
        MutexGuard { lock: self, guard: Some(guard) }
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let got = self.owner.update(|locked| (!*locked).then(|| *locked = true));
        got?;
        task::sleeping_lock_acquired();
        let guard = self.data.try_lock().expect("a free sleeping mutex has a free data lock");
        Some(MutexGuard { lock: self, guard: Some(guard) })
    }
}

impl<T> core::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mutex").field("locked", &self.owner.peek(|l| *l)).finish_non_exhaustive()
    }
}

/// Holds a [`Mutex`]; releases it on drop.
pub struct MutexGuard<'a, T> {
    lock: &'a Mutex<T>,
    guard: Option<spin::MutexGuard<'a, T>>,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_deref().expect("guard present until drop")
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_deref_mut().expect("guard present until drop")
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // The data lock first, so the next owner finds it free.
        drop(self.guard.take());
        self.lock.owner.update_and_notify(false, |locked| *locked = false);
        task::sleeping_lock_released();
    }
}

impl<T> core::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MutexGuard")
    }
}
