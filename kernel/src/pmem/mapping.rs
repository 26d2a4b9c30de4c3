//! The kernel's direct (DAX) mapping of a persistent-memory range.

use core::sync::atomic::{AtomicU64, Ordering};

use fsdax_mm::layout::{PMEM_BASE, PMEM_WINDOW};
use fsdax_mm::paging::{Flags, MapError, MapStats, PageSize};
use fsdax_mm::{HUGE_1G, PAGE_SIZE};

use crate::mem;

/// Next free virtual address in the pmem window. Each mapping gets a fresh,
/// 1 GiB-aligned slot (never reused: the window is 4 TiB).
static NEXT_VIRT: AtomicU64 = AtomicU64::new(PMEM_BASE);

/// A persistent-memory range mapped write-back and no-execute into the pmem
/// window with the largest pages its alignment allows. Unmapped on drop.
#[derive(Debug)]
pub struct PmemMapping {
    virt: u64,
    phys: u64,
    len: u64,
    stats: MapStats,
}

impl PmemMapping {
    /// Maps `[phys, phys + len)` (page-aligned). The virtual address is
    /// congruent to `phys` modulo 1 GiB, so 1 GiB and 2 MiB pages are used
    /// wherever the physical alignment allows.
    ///
    /// # Safety
    /// The range must be persistent memory owned by the caller (from the
    /// NFIT), not RAM the frame allocator hands out.
    pub unsafe fn new(phys: u64, len: u64) -> Result<PmemMapping, MapError> {
        if !phys.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(MapError::Unaligned);
        }
        let slot = (len + phys % HUGE_1G).next_multiple_of(HUGE_1G);
        let base = NEXT_VIRT.fetch_add(slot, Ordering::Relaxed);
        if base + slot > PMEM_BASE + PMEM_WINDOW / 2 {
            // The upper half of the window is left for scratch use by tests.
            return Err(MapError::OutOfFrames);
        }
        let virt = base + phys % HUGE_1G;
        let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE;
        // SAFETY: forwarded from this function's contract; the virtual range
        // is a fresh slot of the pmem window.
        let stats = unsafe { mem::map_kernel(virt, phys, len, flags, PageSize::Size1G)? };
        Ok(PmemMapping { virt, phys, len, stats })
    }

    pub fn virt(&self) -> u64 {
        self.virt
    }

    pub fn phys(&self) -> u64 {
        self.phys
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Pages of each size used.
    pub fn stats(&self) -> MapStats {
        self.stats
    }
}

impl Drop for PmemMapping {
    fn drop(&mut self) {
        if let Err(e) = mem::unmap_kernel(self.virt, self.len) {
            crate::error!("unmapping pmem {:#x}+{:#x}: {e:?}", self.phys, self.len);
        }
    }
}
