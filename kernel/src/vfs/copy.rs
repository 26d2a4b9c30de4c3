//! The single-copy data path: the file system's copiers
//! ([`fsdax_fs::ReadCopier`], [`fsdax_fs::WriteCopier`]) over the hal's
//! copies straight between user memory and persistent memory.
//!
//! - [`ToUser`] (read): the device's bad-block list first (as
//!   `PmemDevice::read` does: the bytes before a listed poisoned byte are
//!   copied, then the read stops there), then the machine-check-safe copy
//!   to user memory (`copy_mc_to_user`), reconciled with the poison a
//!   machine check reports (`fsdax_kcore::copy_mc`); poison it discovers is
//!   recorded in the device's list. Holes are `clear_user`.
//! - [`FromUser`] (write): the device's bad-block list first (a store
//!   stops before listed poison; the file system rewrites a whole bad block
//!   with a recovery write, for which it asks [`FromUser`] for the block's
//!   bytes), then the user copy into persistent memory with cache-line
//!   write-back (`write_from_user`).
//!
//! Both stop short on a fault on the user side and say so ([`Stop`]), so
//! the caller can drop its locks, fault the user range in and go on
//! (Linux: a short count, then EFAULT where nothing was copied).

use fsdax_fs::{FsError, ReadCopier, WriteCopier};
use fsdax_hal::mm::{PmemAccessError, UserCopyError};
use fsdax_hal::uaccess;
use fsdax_kcore::copy_mc::{read_exact_or_poison, ReadOutcome};

use crate::pmem::Device;

/// The device the mounted file system runs on.
type Dev = &'static Device;

/// Why a copy stopped short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A user address was not accessible.
    Fault,
    /// Poisoned persistent memory (listed, or found by a machine check).
    Poison,
}

/// The cache line a machine check without an address stopped at.
const LINE: u64 = 64;

/// Reads into user memory at `buf` (file read position 0 = `buf`).
#[derive(Debug)]
pub struct ToUser {
    buf: u64,
    /// Why the last copy stopped short, if it did.
    pub stop: Option<Stop>,
}

impl ToUser {
    /// A copier into user memory at `buf`.
    pub fn new(buf: u64) -> ToUser {
        ToUser { buf, stop: None }
    }
}

impl ReadCopier<Dev> for ToUser {
    fn copy_pmem(&mut self, pm: &Dev, at: usize, dev: u64, len: usize) -> Result<(), (FsError, usize)> {
        let d: Dev = *pm;
        let dst = self.buf + at as u64;
        let listed = d.first_poison(dev, len as u64);
        let good = listed.map_or(len, |r| (r.start() - dev) as usize);
        let region = d.media().region();
        let phys = d.phys_base() + dev;
        let mut fault = false;
        let outcome = read_exact_or_poison(good, phys, |from, to| {
            match region.read_to_user(dev + from as u64, dst + from as u64, to - from) {
                Ok(()) => Ok(()),
                Err((UserCopyError::UserFault, n)) => {
                    fault = true;
                    Err((n, None))
                }
                Err((UserCopyError::Pmem(PmemAccessError::MachineCheck { poison }), n)) => Err((n, poison)),
                Err((UserCopyError::Pmem(PmemAccessError::OutOfRange { .. }), n)) => Err((n, None)),
            }
        });
        match outcome {
            ReadOutcome::Complete => match listed {
                None => Ok(()),
                Some(r) => {
                    self.stop = Some(Stop::Poison);
                    Err((FsError::Poisoned { offset: r.start() }, good))
                }
            },
            ReadOutcome::Poisoned { valid, poison: (start, plen) } => {
                // Record what the machine check named, inside the device.
                let off = start.saturating_sub(d.phys_base());
                let _ = d.record_poison(off, plen.min(d.len().saturating_sub(off)));
                self.stop = Some(Stop::Poison);
                Err((FsError::Poisoned { offset: dev + valid as u64 }, valid))
            }
            ReadOutcome::Failed { valid } if fault => {
                self.stop = Some(Stop::Fault);
                Err((FsError::Fault, valid))
            }
            ReadOutcome::Failed { valid } => {
                // A machine check without an address: the line it stopped in.
                let at = (dev + valid as u64) & !(LINE - 1);
                let _ = d.record_poison(at, LINE.min(d.len().saturating_sub(at)));
                self.stop = Some(Stop::Poison);
                Err((FsError::Poisoned { offset: dev + valid as u64 }, valid))
            }
        }
    }

    fn copy_zeros(&mut self, at: usize, len: usize) -> Result<(), (FsError, usize)> {
        uaccess::clear_user(self.buf + at as u64, len).map_err(|e| {
            self.stop = Some(Stop::Fault);
            (FsError::Fault, e.copied)
        })
    }
}

/// Writes from user memory at `buf` (file write position 0 = `buf`).
#[derive(Debug)]
pub struct FromUser {
    buf: u64,
    /// Why the last copy stopped short, if it did.
    pub stop: Option<Stop>,
}

impl FromUser {
    /// A copier from user memory at `buf`.
    pub fn new(buf: u64) -> FromUser {
        FromUser { buf, stop: None }
    }
}

impl WriteCopier<Dev> for FromUser {
    fn copy_to_pmem(&mut self, pm: &mut Dev, at: usize, dev: u64, len: usize) -> Result<(), (FsError, usize)> {
        let d: Dev = *pm;
        let listed = d.first_poison(dev, len as u64);
        let good = listed.map_or(len, |r| (r.start() - dev) as usize);
        match d.media().region().write_from_user(dev, self.buf + at as u64, good) {
            Ok(()) => match listed {
                None => Ok(()),
                Some(r) => {
                    self.stop = Some(Stop::Poison);
                    Err((FsError::Poisoned { offset: r.start() }, good))
                }
            },
            Err((UserCopyError::UserFault, n)) => {
                self.stop = Some(Stop::Fault);
                Err((FsError::Fault, n))
            }
            Err((UserCopyError::Pmem(PmemAccessError::OutOfRange { offset, len }), n)) => {
                Err((FsError::Media(fsdax_fs::MediaError::OutOfRange { offset, len }), n))
            }
            Err((UserCopyError::Pmem(PmemAccessError::MachineCheck { .. }), n)) => {
                self.stop = Some(Stop::Poison);
                Err((FsError::Poisoned { offset: dev + n as u64 }, n))
            }
        }
    }

    fn copy_to_buf(&mut self, at: usize, buf: &mut [u8]) -> Result<(), (FsError, usize)> {
        uaccess::copy_from_user(buf, self.buf + at as u64).map_err(|e| {
            self.stop = Some(Stop::Fault);
            (FsError::Fault, e.copied)
        })
    }

    /// `write_from_user` writes back every line it stores.
    fn flushes(&self) -> bool {
        true
    }
}
