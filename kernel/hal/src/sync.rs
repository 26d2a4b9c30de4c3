//! [`IrqMutex`]: a spin lock held with interrupts disabled, for short
//! critical sections that interrupt handlers (or code they interrupt) may
//! also enter: the scheduler, the heap, page tables, frames, the console.
//!
//! Disabling interrupts keeps the holder from being preempted on its own CPU
//! (so an interrupt handler never spins on a lock its own CPU holds); the
//! spin lock itself excludes the other CPUs. Neither property alone is
//! relied on. Never sleep while holding one.

use core::fmt;
use core::ops::{Deref, DerefMut};

use crate::arch::cpu;

/// A spin lock that disables interrupts while held.
pub struct IrqMutex<T> {
    inner: spin::Mutex<T>,
}

impl<T> IrqMutex<T> {
    /// A new unlocked mutex.
    pub const fn new(value: T) -> Self {
        IrqMutex { inner: spin::Mutex::new(value) }
    }

    /// Disables interrupts, then spins until the lock is free. Interrupts
    /// come back on (if they were on) when the guard drops.
    #[inline]
    pub fn lock(&self) -> IrqMutexGuard<'_, T> {
        let were_enabled = cpu::interrupts_enabled();
        cpu::disable_interrupts();
        IrqMutexGuard { guard: Some(self.inner.lock()), were_enabled }
    }

    /// Takes the lock if it is free, without spinning (for fault and
    /// machine-check handlers, which must not wait for the code they
    /// interrupted).
    pub fn try_lock(&self) -> Option<IrqMutexGuard<'_, T>> {
        let were_enabled = cpu::interrupts_enabled();
        cpu::disable_interrupts();
        match self.inner.try_lock() {
            Some(g) => Some(IrqMutexGuard { guard: Some(g), were_enabled }),
            None => {
                if were_enabled {
                    cpu::enable_interrupts();
                }
                None
            }
        }
    }

    /// Whether the lock is held (a hint: it may change at once).
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }
}

impl<T> fmt::Debug for IrqMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IrqMutex").field("locked", &self.inner.is_locked()).finish_non_exhaustive()
    }
}

impl<T: Default> Default for IrqMutex<T> {
    fn default() -> Self {
        IrqMutex::new(T::default())
    }
}

/// The guard of an [`IrqMutex`].
pub struct IrqMutexGuard<'a, T> {
    /// Always `Some` until dropped (taken in `drop` so the spin lock is
    /// released before interrupts come back).
    guard: Option<spin::MutexGuard<'a, T>>,
    were_enabled: bool,
}

impl<T> Deref for IrqMutexGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.guard.as_deref().expect("guard present until drop")
    }
}

impl<T> DerefMut for IrqMutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_deref_mut().expect("guard present until drop")
    }
}

impl<T> Drop for IrqMutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        drop(self.guard.take());
        if self.were_enabled {
            cpu::enable_interrupts();
        }
    }
}

impl<T> fmt::Debug for IrqMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IrqMutexGuard")
    }
}
