//! [`RwLock`]: a reader-writer lock whose waiters sleep; writers are
//! preferred (a waiting writer holds back new readers).

use core::ops::{Deref, DerefMut};

use fsdax_kcore::lockstate::RwState;

use super::WaitQueue;
use crate::task;

/// A reader-writer lock whose waiters sleep.
pub struct RwLock<T> {
    state: WaitQueue<RwState>,
    /// Its read or write side is free whenever `state` grants it.
    data: spin::RwLock<T>,
}

impl<T> RwLock<T> {
    /// A new unlocked lock.
    pub const fn new(value: T) -> Self {
        RwLock { state: WaitQueue::new(RwState::new()), data: spin::RwLock::new(value) }
    }

    /// Shared access: waits (sleeping) while a writer holds or waits.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        task::sleeping_lock_acquired();
        self.state.wait_until(|s, _| s.try_read().then_some(()));
        let guard = self.data.try_read().expect("a granted read hold has a free data read lock");
        RwLockReadGuard { lock: self, guard: Some(guard) }
    }

    /// Shared access if it can be had without waiting (for paths that must
    /// not sleep, like a page fault inside a user copy).
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        if !self.state.update(RwState::try_read) {
            return None;
        }
        task::sleeping_lock_acquired();
        let guard = self.data.try_read().expect("a granted read hold has a free data read lock");
        Some(RwLockReadGuard { lock: self, guard: Some(guard) })
    }

    /// Exclusive access: waits (sleeping) until nobody holds the lock.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        task::sleeping_lock_acquired();
        self.state.wait_until(|s, retried| {
            if s.try_write(retried) {
                return Some(());
            }
            if !retried {
                s.writer_waits();
            }
            None
        });
        let guard = self.data.try_write().expect("a granted write hold has a free data lock");
        RwLockWriteGuard { lock: self, guard: Some(guard) }
    }

    /// Exclusive access if it can be had without waiting.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        if !self.state.update(|s| s.try_write(false)) {
            return None;
        }
        task::sleeping_lock_acquired();
        let guard = self.data.try_write().expect("a granted write hold has a free data lock");
        Some(RwLockWriteGuard { lock: self, guard: Some(guard) })
    }

    /// Readers holding the lock and whether a writer does (a snapshot).
    pub fn holders(&self) -> (u32, bool) {
        self.state.peek(|s| (s.readers(), s.has_writer()))
    }
}

impl<T> core::fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (readers, writer) = self.holders();
        f.debug_struct("RwLock").field("readers", &readers).field("writer", &writer).finish_non_exhaustive()
    }
}

/// Shared access to an [`RwLock`]; released on drop.
pub struct RwLockReadGuard<'a, T> {
    lock: &'a RwLock<T>,
    guard: Option<spin::RwLockReadGuard<'a, T>>,
}

impl<T> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_deref().expect("guard present until drop")
    }
}

impl<T> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.lock.state.update_and_notify(true, RwState::release_read);
        task::sleeping_lock_released();
    }
}

/// Exclusive access to an [`RwLock`]; released on drop.
pub struct RwLockWriteGuard<'a, T> {
    lock: &'a RwLock<T>,
    guard: Option<spin::RwLockWriteGuard<'a, T>>,
}

impl<T> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_deref().expect("guard present until drop")
    }
}

impl<T> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_deref_mut().expect("guard present until drop")
    }
}

impl<T> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.lock.state.update_and_notify(true, RwState::release_write);
        task::sleeping_lock_released();
    }
}
