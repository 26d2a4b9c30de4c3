//! Freezing the mounted file system: Linux `freeze_super`/`thaw_super`,
//! with DAX mappings handled (Linux 2015 left them writable).
//!
//! While the file system is frozen it is consistent on the media (a fresh
//! checkpoint, `fsck` clean) and nothing changes it: every change enters
//! the **write gate** first ([`start_write`]: `write`, `pwrite`, truncate,
//! `fallocate`, create, unlink, rename, `mkdir`, reflink, dedupe, and every
//! write fault of a shared file mapping) and waits there until thaw. No
//! page stays writable either: freezing write-protects every writable DAX
//! mapping (a page mapped writable is always marked dirty, and the flush of
//! every dirty page takes write access away from every mapping of it, TLBs
//! flushed), so the next store through any mapping takes a write fault and
//! waits at the gate. Reads and read faults go on.
//!
//! Freezing, in order:
//! 1. mark the gate *freezing*: new changes wait from now on;
//! 2. wait until the changes already inside the gate have left it (at most
//!    [`DRAIN_SECS`] seconds; then freezing is undone and the caller gets
//!    [`FreezeError::Busy`], never an endless wait);
//! 3. write back every file's dirty pages (write-protecting their
//!    mappings) and write a checkpoint;
//! 4. the gate is *frozen*. Any failure in 2 or 3 reopens the gate: freeze
//!    is never left half done.
//!
//! Thaw reopens the gate and wakes every waiter; a store through a mapping
//! faults once more, the page is marked dirty and mapped writable again.
//!
//! The kernel's callers (device removal) use [`with_frozen`], which thaws
//! whatever the closure does. `FIFREEZE`/`FITHAW` and the console's
//! `fs freeze`/`fs thaw` hold one freeze between calls ([`freeze_user`],
//! [`thaw_user`]). Freezes nest: a kernel freeze of a file system frozen by
//! a user counts once more, and the gate opens when the last one thaws.
//!
//! Lock order: the gate is entered before every other lock (at the start of
//! a system call, or of a write fault, where only the process's areas are
//! held); freezing holds no lock while it waits for the gate to drain, and
//! then takes what a flush and a commit take.

use alloc::string::String;

use fsdax_abi::Errno;

use crate::fsys;
use crate::sync::{Mutex, WaitQueue};

/// How long freezing waits for changes in flight before giving up.
pub const DRAIN_SECS: u64 = 10;

#[derive(Debug, Default)]
struct Gate {
    /// Changes inside the gate.
    writers: u32,
    /// A freeze is draining the gate.
    freezing: bool,
    /// Freezes held (frozen when > 0).
    holders: u32,
}

impl Gate {
    fn closed(&self) -> bool {
        self.freezing || self.holders > 0
    }
}

static GATE: WaitQueue<Gate> = WaitQueue::new(Gate { writers: 0, freezing: false, holders: 0 });

/// The freeze `FIFREEZE` or the console holds until `FITHAW`.
static USER: Mutex<Option<Frozen>> = Mutex::new(None);

/// Why a freeze failed (nothing is left frozen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FreezeError {
    /// Nothing is mounted.
    NotMounted,
    /// Changes in flight did not finish within [`DRAIN_SECS`] seconds.
    Busy { writers: u32 },
    /// A fatal signal ended the caller's wait.
    Interrupted,
    /// Writing the checkpoint failed (the file system's message).
    Fs(String),
}

impl FreezeError {
    /// The errno a system call returns for it.
    pub fn errno(&self) -> Errno {
        match self {
            FreezeError::NotMounted | FreezeError::Fs(_) => Errno::EIO,
            FreezeError::Busy { .. } => Errno::EBUSY,
            FreezeError::Interrupted => Errno::EINTR,
        }
    }
}

impl core::fmt::Display for FreezeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FreezeError::NotMounted => f.write_str("nothing is mounted"),
            FreezeError::Busy { writers } => write!(
                f,
                "{writers} change(s) still in progress after {DRAIN_SECS} s: not frozen (try again, or end the writers)"
            ),
            FreezeError::Interrupted => f.write_str("interrupted by a fatal signal: not frozen"),
            FreezeError::Fs(e) => write!(f, "writing the checkpoint failed: {e}; not frozen"),
        }
    }
}

/// One freeze held: the file system stays frozen until it is dropped
/// (the last one dropped thaws).
#[derive(Debug)]
#[must_use = "dropping the guard thaws at once"]
pub struct Frozen {
    _private: (),
}

impl Drop for Frozen {
    fn drop(&mut self) {
        GATE.update_and_notify(true, |g| g.holders = g.holders.saturating_sub(1));
    }
}

/// A change inside the gate; leaving it (drop) lets a freeze go on.
#[derive(Debug)]
pub struct WriteGuard {
    _private: (),
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        GATE.update_and_notify(true, |g| g.writers = g.writers.saturating_sub(1));
    }
}

/// Why [`start_write`] did not let the caller in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateError {
    /// Frozen, and the caller may not wait (a fault inside a user copy).
    WouldBlock,
    /// A fatal signal ended the wait.
    Interrupted,
}

impl GateError {
    pub fn errno(self) -> Errno {
        match self {
            GateError::WouldBlock => Errno::EAGAIN,
            GateError::Interrupted => Errno::EINTR,
        }
    }
}

/// Enters the write gate before changing the file system: waits while it
/// is frozen or freezing (if `block`; else [`GateError::WouldBlock`]). A
/// fatal signal for the calling process ends the wait. Take it before any
/// other lock.
pub fn start_write(block: bool) -> Result<WriteGuard, GateError> {
    let me = crate::process::current();
    loop {
        // Re-checked every 100 ms for a fatal signal (a kill does not wake
        // this queue).
        let until = crate::time::ticks() + crate::time::TICK_HZ / 10;
        let r = GATE.wait_until_tick(until, |g, _| {
            if !g.closed() {
                g.writers += 1;
                return Some(Ok(()));
            }
            if !block {
                return Some(Err(GateError::WouldBlock));
            }
            if me.as_ref().is_some_and(|p| p.fatal_pending()) {
                return Some(Err(GateError::Interrupted));
            }
            None
        });
        match r {
            Some(Ok(())) => return Ok(WriteGuard { _private: () }),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
}

/// Freezes the mounted file system (see the module's description) and
/// returns the freeze; dropping it thaws. Already frozen: one more holder.
/// Errors leave the file system as it was (not frozen).
pub fn freeze() -> Result<Frozen, FreezeError> {
    freeze_within(DRAIN_SECS * crate::time::TICK_HZ)
}

/// [`freeze`], waiting at most `drain_ticks` for changes in flight.
fn freeze_within(drain_ticks: u64) -> Result<Frozen, FreezeError> {
    if fsys::with_fs_read(|_| ()).is_none() {
        return Err(FreezeError::NotMounted);
    }
    let me = crate::process::current();
    // 1. close the gate (after another freeze in progress has finished).
    loop {
        let until = crate::time::ticks() + crate::time::TICK_HZ / 10;
        let r = GATE.wait_until_tick(until, |g, _| {
            if g.holders > 0 {
                g.holders += 1;
                return Some(Ok(true));
            }
            if !g.freezing {
                g.freezing = true;
                return Some(Ok(false));
            }
            if me.as_ref().is_some_and(|p| p.fatal_pending()) {
                return Some(Err(FreezeError::Interrupted));
            }
            None
        });
        match r {
            Some(Ok(true)) => return Ok(Frozen { _private: () }),
            Some(Ok(false)) => break,
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    let undo = |e: FreezeError| {
        GATE.update_and_notify(true, |g| g.freezing = false);
        Err(e)
    };
    // 2. drain the changes in flight.
    let deadline = crate::time::ticks() + drain_ticks;
    loop {
        let until = (crate::time::ticks() + crate::time::TICK_HZ / 10).min(deadline);
        let r = GATE.wait_until_tick(until, |g, _| {
            if g.writers == 0 {
                return Some(Ok(()));
            }
            if me.as_ref().is_some_and(|p| p.fatal_pending()) {
                return Some(Err(FreezeError::Interrupted));
            }
            None
        });
        match r {
            Some(Ok(())) => break,
            Some(Err(e)) => return undo(e),
            None if crate::time::ticks() >= deadline => {
                let writers = GATE.peek(|g| g.writers);
                return undo(FreezeError::Busy { writers });
            }
            None => {}
        }
    }
    // 3. write-protect every writable mapping (through the flush of every
    // dirty page) and checkpoint.
    crate::dax::flush::flush_all();
    let r = fsys::with_fs(|fs| match fs.checkpoint() {
        Ok(()) | Err(fsdax_fs::FsError::ReadOnly) => Ok(()),
        Err(e) => Err(FreezeError::Fs(alloc::format!("{e}"))),
    });
    match r {
        None => return undo(FreezeError::NotMounted),
        Some(Err(e)) => return undo(e),
        Some(Ok(())) => {}
    }
    // 4. frozen.
    GATE.update_and_notify(true, |g| {
        g.freezing = false;
        g.holders += 1;
    });
    Ok(Frozen { _private: () })
}

/// Runs `f` with the file system frozen and thaws afterwards, whatever `f`
/// returns (the kernel's freeze: device removal). Err if it could not be
/// frozen; `f` did not run then.
pub fn with_frozen<R>(f: impl FnOnce() -> R) -> Result<R, FreezeError> {
    let frozen = freeze()?;
    let r = f();
    drop(frozen);
    Ok(r)
}

/// `FIFREEZE` and `fs freeze`: freezes and keeps the freeze until
/// [`thaw_user`]. EBUSY if it already holds one (Linux: freezing twice).
pub fn freeze_user() -> Result<(), Errno> {
    let mut held = USER.lock();
    if held.is_some() {
        return Err(Errno::EBUSY);
    }
    match freeze() {
        Ok(f) => {
            *held = Some(f);
            Ok(())
        }
        Err(e) => {
            crate::warn!("fs: freeze: {e}");
            Err(e.errno())
        }
    }
}

/// `FITHAW` and `fs thaw`: drops the user's freeze. EINVAL if there is
/// none (Linux: thawing what is not frozen).
pub fn thaw_user() -> Result<(), Errno> {
    let f = USER.lock().take().ok_or(Errno::EINVAL)?;
    drop(f);
    Ok(())
}

/// Whether `FIFREEZE` or the console holds a freeze.
pub fn user_frozen() -> bool {
    USER.lock().is_some()
}

mod tests {
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicBool, Ordering};

    use fsdax_fs::{FileSystem, MkfsOptions};
    use fsdax_ktest::{kassert, kassert_eq, kfail, ktest, Failure};

    use super::*;
    use crate::task::{self, ExitReason};

    fn closed() -> bool {
        GATE.peek(|g| g.closed())
    }

    ktest!(freeze_checkpoints_holds_changes_until_thaw_nests_and_undoes_a_failed_freeze, {
        let _ = fsys::unmount();
        kassert_eq!(freeze().err(), Some(FreezeError::NotMounted));
        kassert!(!closed(), "a failed freeze left the gate closed");
        let d = crate::pmem::device("pmem0").ok_or(kfail!("no pmem0"))?;
        let fs = FileSystem::mkfs(d, MkfsOptions::default()).map_err(|_| kfail!("mkfs"))?;
        fs.unmount().map_err(|_| kfail!("unmount after mkfs"))?;
        fsys::mount(d).map_err(|_| kfail!("mount"))?;
        fsys::with_fs(|fs| -> Result<(), Failure> {
            let ino = fs.open("/before-freeze", true).map_err(|_| kfail!("create"))?;
            fs.write(ino, 0, &[7; 10_000]).map_err(|_| kfail!("write"))?;
            Ok(())
        })
        .ok_or(kfail!("not mounted"))??;

        let frozen = freeze().map_err(|_| kfail!("freeze"))?;
        kassert!(closed());
        // Consistent on the media while frozen.
        kassert!(fsys::check().is_ok(), "fsck while frozen: not clean");
        // A change waits; one that may not wait is refused.
        kassert_eq!(start_write(false).err(), Some(GateError::WouldBlock));
        let entered = Arc::new(AtomicBool::new(false));
        let e = Arc::clone(&entered);
        let writer = task::spawn("frozen-writer", move || {
            if let Ok(g) = start_write(true) {
                e.store(true, Ordering::Release);
                drop(g);
            }
        })
        .map_err(|_| kfail!("spawn"))?;
        task::sleep_ticks(crate::time::TICK_HZ / 5);
        kassert!(!entered.load(Ordering::Acquire), "a change went through while frozen");
        // Nesting: the kernel's freeze of a frozen file system, and the
        // user's; the user's twice is EBUSY, a thaw without one EINVAL.
        kassert_eq!(with_frozen(|| 7).ok(), Some(7));
        kassert!(closed(), "the inner thaw opened the gate");
        kassert_eq!(freeze_user(), Ok(()));
        kassert_eq!(freeze_user(), Err(Errno::EBUSY));
        kassert_eq!(thaw_user(), Ok(()));
        kassert_eq!(thaw_user(), Err(Errno::EINVAL));
        kassert!(closed());
        kassert!(!entered.load(Ordering::Acquire));
        // Thaw: the writer goes on.
        drop(frozen);
        kassert_eq!(task::join(writer), Some(ExitReason::Returned));
        kassert!(entered.load(Ordering::Acquire), "the writer did not go on after thaw");
        kassert!(!closed());

        // A change that does not leave the gate: the freeze gives up with
        // EBUSY and leaves the gate open, never half frozen.
        let busy = start_write(true).map_err(|_| kfail!("gate"))?;
        let r = freeze_within(crate::time::TICK_HZ / 5);
        kassert_eq!(r.err(), Some(FreezeError::Busy { writers: 1 }));
        kassert!(!closed(), "a freeze that gave up left the gate closed");
        drop(busy);
        kassert!(start_write(false).is_ok(), "the gate is open again");
        fsys::unmount().map_err(|_| kfail!("unmount"))?;
        Ok(())
    });
}
