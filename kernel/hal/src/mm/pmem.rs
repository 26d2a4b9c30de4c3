//! [`PmemRegion`]: a persistent-memory range from the NFIT, mapped
//! write-back into the pmem (DAX) window, whose safe methods are the only
//! way the kernel touches persistent memory: the machine-check-safe read,
//! plain and flushing writes, durable zeroing, flush and fence.

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use fsdax_drivers::nfit::{Nfit, NfitError, SpaRange};
use fsdax_mm::layout::{PMEM_BASE, PMEM_WINDOW};
use fsdax_mm::paging::{Flags, MapError, MapStats, PageSize};
use fsdax_mm::{HUGE_1G, PAGE_SIZE};

use super::{map_kernel, overlaps_ram, unmap_kernel};
use crate::copy;

/// Next free virtual address in the pmem window. Each region gets a fresh,
/// 1 GiB-aligned slot (never reused: the window is 4 TiB).
static NEXT_VIRT: AtomicU64 = AtomicU64::new(PMEM_BASE);

/// Why an access to a region failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmemAccessError {
    /// `[offset, offset + len)` is not inside the region (or overflows).
    OutOfRange {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
    },
    /// A machine check stopped a machine-check-safe read: the hardware
    /// found poison. `poison` is the physical range the machine check named
    /// (None if it named none, or if the #MC was not about this read).
    MachineCheck {
        /// Physical start and length of the poisoned range.
        poison: Option<(u64, u64)>,
    },
}

impl fmt::Display for PmemAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfRange { offset, len } => write!(f, "range {offset:#x}+{len:#x} is outside the region"),
            Self::MachineCheck { poison: Some((start, len)) } => {
                write!(f, "machine check: poison at physical {start:#x}+{len:#x}")
            }
            Self::MachineCheck { poison: None } => f.write_str("machine check (no address reported)"),
        }
    }
}

/// Why a copy between persistent memory and user memory stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserCopyError {
    /// A user address was not accessible (EFAULT).
    UserFault,
    /// The persistent-memory side failed (out of range, or poison: EIO).
    Pmem(PmemAccessError),
}

/// Why a persistent-memory range from the NFIT was not mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeProblem {
    /// Base or length not page aligned, or empty.
    Unaligned,
    /// The range overlaps RAM from the memory map: firmware is wrong, and
    /// mapping it would alias memory the kernel allocates.
    OverlapsRam,
    /// The pmem window has no room left.
    WindowFull,
    /// Mapping failed (no frames for page tables, or already mapped).
    Map(MapError),
}

impl fmt::Display for RangeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned => f.write_str("not page aligned"),
            Self::OverlapsRam => f.write_str("overlaps RAM in the memory map (firmware error)"),
            Self::WindowFull => f.write_str("no room left in the pmem window"),
            Self::Map(MapError::OutOfFrames) => f.write_str("out of memory for page tables"),
            Self::Map(_) => f.write_str("the virtual range is already in use"),
        }
    }
}

/// A persistent-memory range mapped write-back and no-execute into the pmem
/// window with the largest pages its alignment allows. Unmapped on drop.
#[derive(Debug)]
pub struct PmemRegion {
    virt: u64,
    phys: u64,
    len: u64,
    stats: MapStats,
}

impl PmemRegion {
    /// Maps `[phys, phys + len)`. The virtual address is congruent to `phys`
    /// modulo 1 GiB, so 1 GiB and 2 MiB pages are used wherever the physical
    /// alignment allows.
    fn map(phys: u64, len: u64) -> Result<PmemRegion, RangeProblem> {
        if !phys.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(RangeProblem::Unaligned);
        }
        if overlaps_ram(phys, len) {
            return Err(RangeProblem::OverlapsRam);
        }
        let slot = (len + phys % HUGE_1G).next_multiple_of(HUGE_1G);
        let base = NEXT_VIRT.fetch_add(slot, Ordering::Relaxed);
        if base + slot > PMEM_BASE + PMEM_WINDOW / 2 {
            // The upper half of the window is left for scratch use by tests.
            return Err(RangeProblem::WindowFull);
        }
        let virt = base + phys % HUGE_1G;
        let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE;
        // SAFETY: an NFIT persistent-memory range that does not overlap RAM:
        // no allocator hands it out, and this region is its only mapping;
        // the virtual range is a fresh slot of the pmem window.
        let stats = unsafe { map_kernel(virt, phys, len, flags, PageSize::Size1G) }.map_err(RangeProblem::Map)?;
        Ok(PmemRegion { virt, phys, len, stats })
    }

    /// Where the region is mapped (for the console and tests).
    pub fn virt(&self) -> u64 {
        self.virt
    }

    /// The physical base.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// The size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region is empty (never, for a mapped region).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pages of each size used.
    pub fn stats(&self) -> MapStats {
        self.stats
    }

    /// The virtual address of `[offset, offset + len)`, if inside.
    fn at(&self, offset: u64, len: usize) -> Result<*mut u8, PmemAccessError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.len => Ok((self.virt + offset) as *mut u8),
            _ => Err(PmemAccessError::OutOfRange { offset, len: len as u64 }),
        }
    }

    /// Machine-check-safe read of `dst.len()` bytes at `offset`.
    ///
    /// On a machine check the error carries the number of bytes copied
    /// before the copy stopped (they are valid) and the poisoned physical
    /// range the #MC reported. The stop may be before the poison (the copy
    /// moves 8 bytes at a time) or caused by an #MC about other memory; the
    /// caller reconciles (see the kernel's copy_mc reconciliation).
    pub fn read_mc(&self, offset: u64, dst: &mut [u8]) -> Result<(), (PmemAccessError, usize)> {
        let src = self.at(offset, dst.len()).map_err(|e| (e, 0))?;
        // SAFETY: `src..+len` is inside this mapped region; `dst` is a
        // distinct kernel buffer of `len` bytes.
        let (left, poison) = unsafe { copy::copy_mc(dst.as_mut_ptr(), src, dst.len()) };
        if left == 0 {
            return Ok(());
        }
        Err((PmemAccessError::MachineCheck { poison }, dst.len() - left))
    }

    /// Machine-check-safe read of `len` bytes at `offset` straight into the
    /// current address space's user memory at `user_dst` (one copy, no
    /// kernel buffer: the read path of DAX files). On failure, the bytes
    /// copied before the stop (valid) and why it stopped: a fault on the
    /// user side (EFAULT for the caller) or poison (EIO).
    pub fn read_to_user(&self, offset: u64, user_dst: u64, len: usize) -> Result<(), (UserCopyError, usize)> {
        let src = self.at(offset, len).map_err(|e| (UserCopyError::Pmem(e), 0))?;
        if !crate::uaccess::user_range(user_dst, len) {
            return Err((UserCopyError::UserFault, 0));
        }
        // SAFETY: `src..+len` is inside this mapped region; the destination
        // is a user-half range (checked just above).
        let (left, why) = unsafe { copy::copy_mc_to_user(user_dst, src, len) };
        match why {
            None => Ok(()),
            Some(copy::McUserStop::UserFault) => {
                // The copy moves whole words: the word that faulted may
                // straddle the end of the accessible user range. Copy its
                // bytes one at a time up to the fault, so that the count is
                // exact (Linux's copy tail).
                let stop = len - left;
                let mut done = stop;
                while done < len.min(stop + 8) {
                    // SAFETY: one byte inside both ranges checked above.
                    let (l, why) = unsafe { copy::copy_mc_to_user(user_dst + done as u64, src.add(done), 1) };
                    match (l, why) {
                        (0, _) => done += 1,
                        (_, Some(copy::McUserStop::MachineCheck { poison })) => {
                            return Err((UserCopyError::Pmem(PmemAccessError::MachineCheck { poison }), done))
                        }
                        _ => break,
                    }
                }
                Err((UserCopyError::UserFault, done))
            }
            Some(copy::McUserStop::MachineCheck { poison }) => {
                Err((UserCopyError::Pmem(PmemAccessError::MachineCheck { poison }), len - left))
            }
        }
    }

    /// Writes `len` bytes from the current address space's user memory at
    /// `user_src` to `offset`, in one copy (Linux
    /// `copy_from_user_flushcache`): non-temporal stores for the 8-byte
    /// aligned body, string stores and cache-line write-back for the
    /// unaligned head and tail; durable after [`Self::fence`]. On a fault
    /// on the user side, the bytes written before it (exactly: the word
    /// that faulted is retried byte by byte), durable after the fence too.
    pub fn write_from_user(&self, offset: u64, user_src: u64, len: usize) -> Result<(), (UserCopyError, usize)> {
        let dst = self.at(offset, len).map_err(|e| (UserCopyError::Pmem(e), 0))?;
        if !crate::uaccess::user_range(user_src, len) {
            return Err((UserCopyError::UserFault, 0));
        }
        // Bytes with string stores + write-back from `at`, up to `n` of
        // them; how many went.
        let bytes = |at: usize, n: usize| -> usize {
            // SAFETY: `dst + at .. + n` is inside this region (a kernel
            // mapping that never aliases the user-half source, checked
            // above), `user_src + at .. + n` inside the user range.
            let left = unsafe { crate::uaccess::copy_user_raw(dst.add(at), (user_src + at as u64) as *const u8, n) };
            // SAFETY: the bytes written are mapped.
            unsafe { copy::flush(dst.add(at), n - left) };
            n - left
        };
        let head = dst.align_offset(8).min(len);
        let body = (len - head) / 8 * 8;
        let h = bytes(0, head);
        if h < head {
            return Err((UserCopyError::UserFault, h));
        }
        // SAFETY: `dst + head` is 8-byte aligned and `body` a multiple of 8,
        // inside the region; the source inside the user range.
        let left =
            unsafe { crate::uaccess::copy_user_nt_raw(dst.add(head), (user_src + head as u64) as *const u8, body) };
        let done = head + body - left;
        if left != 0 {
            // The faulting word may straddle the end of what is accessible.
            let more = bytes(done, left.min(8));
            return Err((UserCopyError::UserFault, done + more));
        }
        let tail = len - done;
        let t = bytes(done, tail);
        if t < tail {
            return Err((UserCopyError::UserFault, done + t));
        }
        Ok(())
    }

    /// Plain read (`rep movs`), without machine-check recovery: a machine
    /// check here is fatal. For benchmarks that compare against
    /// [`Self::read_mc`].
    pub fn read_plain(&self, offset: u64, dst: &mut [u8]) -> Result<(), PmemAccessError> {
        let src = self.at(offset, dst.len())?;
        // SAFETY: inside the region; `dst` is a distinct buffer.
        unsafe { copy::copy_plain(dst.as_mut_ptr(), src, dst.len()) };
        Ok(())
    }

    /// Flushing write (non-temporal stores / write-back): durable after
    /// [`Self::fence`].
    pub fn write_flush(&self, offset: u64, src: &[u8]) -> Result<(), PmemAccessError> {
        let dst = self.at(offset, src.len())?;
        // SAFETY: inside the region; `src` is a distinct buffer.
        unsafe { copy::copy_flush(dst, src.as_ptr(), src.len()) };
        Ok(())
    }

    /// Plain write (cached stores, not flushed): durable only after
    /// [`Self::flush`] and [`Self::fence`]. For benchmarks.
    pub fn write_plain(&self, offset: u64, src: &[u8]) -> Result<(), PmemAccessError> {
        let dst = self.at(offset, src.len())?;
        // SAFETY: inside the region; `src` is a distinct buffer.
        unsafe { copy::copy_plain(dst, src.as_ptr(), src.len()) };
        Ok(())
    }

    /// Durable zeroing: durable after [`Self::fence`].
    pub fn zero_flush(&self, offset: u64, len: u64) -> Result<(), PmemAccessError> {
        let n = usize::try_from(len).map_err(|_| PmemAccessError::OutOfRange { offset, len })?;
        let dst = self.at(offset, n)?;
        // SAFETY: inside the region.
        unsafe { copy::zero_flush(dst, n) };
        Ok(())
    }

    /// Writes back the cache lines of `[offset, offset + len)`.
    pub fn flush(&self, offset: u64, len: u64) -> Result<(), PmemAccessError> {
        let n = usize::try_from(len).map_err(|_| PmemAccessError::OutOfRange { offset, len })?;
        let p = self.at(offset, n)?;
        // SAFETY: inside the region (mapped).
        unsafe { copy::flush(p, n) };
        Ok(())
    }

    /// Orders earlier flushes and non-temporal stores before later stores.
    pub fn fence(&self) {
        copy::fence();
    }
}

impl Drop for PmemRegion {
    fn drop(&mut self) {
        // SAFETY: the region is being dropped: nothing accesses it any more
        // (every access goes through `&self`).
        if unsafe { unmap_kernel(self.virt, self.len) }.is_err() {
            crate::console::emergency(format_args!("pmem: unmapping {:#x}+{:#x} failed\n", self.phys, self.len));
        }
    }
}

/// What [`discover_pmem`] found.
#[derive(Debug)]
pub enum PmemDiscovery {
    /// No ACPI NFIT: no persistent memory.
    NoNfit,
    /// The NFIT is malformed: nothing is mapped.
    NfitRejected(NfitError),
    /// One entry per persistent-memory SPA range, in NFIT order.
    Ranges(Vec<(SpaRange, Result<PmemRegion, RangeProblem>)>),
}

/// Finds the persistent-memory ranges in the ACPI NFIT and maps each one.
pub fn discover_pmem() -> PmemDiscovery {
    let Some(bytes) = crate::acpi::table_bytes(b"NFIT") else { return PmemDiscovery::NoNfit };
    let nfit = match Nfit::parse(bytes) {
        Ok(n) => n,
        Err(e) => return PmemDiscovery::NfitRejected(e),
    };
    PmemDiscovery::Ranges(nfit.pmem_ranges().map(|r| (r, PmemRegion::map(r.base, r.length))).collect())
}
