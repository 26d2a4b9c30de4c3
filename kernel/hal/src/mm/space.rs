//! Task address spaces.

use fsdax_mm::layout::{self, KERNEL_PML4_FIRST};
use fsdax_mm::paging::{Flags, Leaf, MapError, PageSize, TlbFlush};
use fsdax_mm::PAGE_SIZE;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::PageTable;

use super::{alloc_frame, flush_tlb, free_frame, kernel_pml4, phys_to_virt, with_tables, Frame, PAGE_TABLES};

/// Page-table bit (available to software) marking a leaf whose frame the
/// address space owns and frees.
const OWNED: Flags = Flags::BIT_9;
/// The flags a caller may choose for a mapping of RAM in a task space.
const CALLER_FLAGS: Flags = Flags::WRITABLE.union(Flags::USER_ACCESSIBLE).union(Flags::NO_EXECUTE);

/// Nothing (owned RAM) is mapped at this address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotMapped(pub u64);

/// A task's own address space: a PML4 whose lower half is private and whose
/// upper half shares the kernel's tables (every upper-half slot got its
/// PDPT at boot, so later kernel mappings are visible here too).
///
/// Frames mapped with [`AddressSpace::map_frame`] belong to the space: they
/// are freed when unmapped or when the space is dropped, which also frees
/// its page tables. A task's context owns its space, so the space outlives
/// every moment its tables are loaded in CR3.
#[derive(Debug)]
pub struct AddressSpace {
    pml4: u64,
}

impl AddressSpace {
    /// A fresh space with an empty lower half; None without RAM.
    pub fn new() -> Option<AddressSpace> {
        let pml4 = alloc_frame()?;
        let kernel = phys_to_virt(kernel_pml4()) as *const PageTable;
        let new = phys_to_virt(pml4) as *mut PageTable;
        let _pt = PAGE_TABLES.lock();
        // SAFETY: both are valid tables in the direct map; `new` is a fresh
        // frame, ours alone; PAGE_TABLES is held, and the kernel's
        // upper-half PML4 entries never change after boot.
        let (kernel, new) = unsafe { (&*kernel, &mut *new) };
        for slot in KERNEL_PML4_FIRST..512 {
            new[slot] = kernel[slot].clone();
        }
        Some(AddressSpace { pml4 })
    }

    /// Physical address of the PML4 (for CR3).
    pub(crate) fn pml4(&self) -> u64 {
        self.pml4
    }

    /// Whether this space is loaded in CR3 right now.
    fn is_live(&self) -> bool {
        Cr3::read().0.start_address().as_u64() == self.pml4
    }

    /// Maps `frame` at the lower-half page `virt`; the space owns it from now
    /// on. `flags` may contain only `WRITABLE`, `USER_ACCESSIBLE` and
    /// `NO_EXECUTE` (others are dropped: RAM is always mapped write-back).
    /// On error the frame comes back.
    pub fn map_frame(&self, virt: u64, frame: Frame, flags: Flags) -> Result<(), (MapError, Frame)> {
        if layout::is_kernel_half(virt) || virt.checked_add(PAGE_SIZE).is_none_or(layout::is_kernel_half) {
            return Err((MapError::Unaligned, frame));
        }
        let phys = frame.phys();
        let flags = Flags::PRESENT | OWNED | (flags & CALLER_FLAGS);
        // SAFETY: this space's PML4 is live while `self` exists.
        let r =
            unsafe { with_tables(self.pml4, |m, a| m.map_range(virt, phys, PAGE_SIZE, flags, PageSize::Size4K, a)) };
        match r {
            Ok(_) => {
                let _ = frame.into_phys();
                Ok(())
            }
            Err(e) => Err((e, frame)),
        }
    }

    /// Unmaps a lower-half range (freeing the frames the space owns there);
    /// flushes the TLB if this space is live.
    pub fn unmap(&self, virt: u64, len: u64) -> Result<(), MapError> {
        if layout::is_kernel_half(virt) || virt.checked_add(len).is_none_or(|e| e > 1 << 47) {
            return Err(MapError::Unaligned);
        }
        // SAFETY: this space's PML4 is live while `self` exists.
        let flush = unsafe {
            with_tables(self.pml4, |m, a| {
                // Check the whole range first, so that a bad range changes
                // nothing; then unmap leaf by leaf, freeing owned frames.
                let end = virt + len;
                let mut at = virt;
                while at < end {
                    let leaf = m.translate(at).ok_or(MapError::NotMapped(at))?;
                    if leaf.virt != at || at + leaf.size.bytes() > end {
                        return Err(MapError::SplitsHugePage(at));
                    }
                    at += leaf.size.bytes();
                }
                let mut flush = TlbFlush::None;
                let mut at = virt;
                while at < end {
                    let leaf = m.translate(at).ok_or(MapError::NotMapped(at))?;
                    flush = flush.merge(m.unmap_range(at, leaf.size.bytes())?);
                    if leaf.flags.contains(OWNED) {
                        let _ = a.free(leaf.phys);
                    }
                    at += leaf.size.bytes();
                }
                Ok(flush)
            })
        }?;
        if self.is_live() {
            flush_tlb(flush);
        }
        Ok(())
    }

    /// Unmaps whatever is mapped in the lower-half range `[virt, virt +
    /// len)` (holes are fine: `munmap`), freeing the frames the space owns;
    /// flushes the TLB if the space is live. A huge page the range would
    /// cut is refused before anything changes.
    pub fn unmap_sparse(&self, virt: u64, len: u64) -> Result<(), MapError> {
        let end = virt.checked_add(len).filter(|&e| e <= 1 << 47).ok_or(MapError::Unaligned)?;
        if layout::is_kernel_half(virt) || !virt.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Unaligned);
        }
        // SAFETY: this space's PML4 is live while `self` exists.
        let flush = unsafe {
            with_tables(self.pml4, |m, a| {
                let mut at = virt;
                while let Some(leaf) = m.next_leaf(at, end) {
                    if leaf.virt < virt || leaf.virt + leaf.size.bytes() > end {
                        return Err(MapError::SplitsHugePage(leaf.virt));
                    }
                    at = leaf.virt + leaf.size.bytes();
                }
                let mut flush = TlbFlush::None;
                let mut at = virt;
                while let Some(leaf) = m.next_leaf(at, end) {
                    flush = flush.merge(m.unmap_range(leaf.virt, leaf.size.bytes())?);
                    if leaf.flags.contains(OWNED) {
                        let _ = a.free(leaf.phys);
                    }
                    at = leaf.virt + leaf.size.bytes();
                }
                Ok(flush)
            })
        }?;
        if self.is_live() {
            flush_tlb(flush);
        }
        Ok(())
    }

    /// Sets the rights of whatever is mapped in `[virt, virt + len)` to
    /// `flags` (only `WRITABLE`, `USER_ACCESSIBLE` and `NO_EXECUTE` are
    /// taken); flushes the TLB if the space is live (`mprotect`).
    pub fn protect(&self, virt: u64, len: u64, flags: Flags) -> Result<(), MapError> {
        let end = virt.checked_add(len).filter(|&e| e <= 1 << 47).ok_or(MapError::Unaligned)?;
        if layout::is_kernel_half(virt) {
            return Err(MapError::Unaligned);
        }
        let want = flags & CALLER_FLAGS;
        // SAFETY: this space's PML4 is live while `self` exists.
        let flush = unsafe {
            with_tables(self.pml4, |m, _| {
                let mut flush = TlbFlush::None;
                let mut at = virt;
                while let Some(leaf) = m.next_leaf(at, end) {
                    let r = m.update_flags(leaf.virt, leaf.size.bytes(), |old| (old - CALLER_FLAGS) | want)?;
                    flush = flush.merge(r);
                    at = leaf.virt + leaf.size.bytes();
                }
                Ok(flush)
            })
        }?;
        if self.is_live() {
            flush_tlb(flush);
        }
        Ok(())
    }

    /// What this space maps at `virt`.
    pub fn translate(&self, virt: u64) -> Option<Leaf> {
        // SAFETY: this space's PML4 is live while `self` exists.
        unsafe { with_tables(self.pml4, |m, _| m.translate(virt)) }
    }

    /// The direct-map address of owned RAM at `virt`, and how many bytes of
    /// its page follow.
    fn owned_ram(&self, virt: u64) -> Result<(u64, usize), NotMapped> {
        let leaf = self.translate(virt).filter(|l| l.flags.contains(OWNED)).ok_or(NotMapped(virt))?;
        let off = virt - leaf.virt;
        Ok((phys_to_virt(leaf.phys + off), (leaf.size.bytes() - off) as usize))
    }

    /// Copies bytes out of this space's RAM at `virt` (whether or not the
    /// space is loaded), through the direct map.
    pub fn read(&self, virt: u64, buf: &mut [u8]) -> Result<(), NotMapped> {
        let mut done = 0;
        while done < buf.len() {
            let (src, room) = self.owned_ram(virt + done as u64)?;
            let n = room.min(buf.len() - done);
            // SAFETY: `src..+n` is a frame this space owns (RAM, in the
            // direct map), inside one page; `buf` is a distinct kernel buffer.
            unsafe { core::ptr::copy_nonoverlapping(src as *const u8, buf.as_mut_ptr().add(done), n) };
            done += n;
        }
        Ok(())
    }

    /// Copies bytes into this space's RAM at `virt`, through the direct map.
    pub fn write(&self, virt: u64, data: &[u8]) -> Result<(), NotMapped> {
        let mut done = 0;
        while done < data.len() {
            let (dst, room) = self.owned_ram(virt + done as u64)?;
            let n = room.min(data.len() - done);
            // SAFETY: `dst..+n` is a frame this space owns (RAM, in the
            // direct map), inside one page; `data` is a distinct buffer.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr().add(done), dst as *mut u8, n) };
            done += n;
        }
        Ok(())
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // SAFETY: the PML4 stays live until the end of this function; the
        // space is not loaded in CR3 (its owner, a task context, switched
        // away before dropping it).
        unsafe {
            with_tables(self.pml4, |m, a| {
                let mut at = 0;
                while let Some(l) = m.next_leaf(at, 1 << 47) {
                    if m.unmap_range(l.virt, l.size.bytes()).is_ok() && l.flags.contains(OWNED) {
                        let _ = a.free(l.phys);
                    }
                    at = l.virt + l.size.bytes();
                }
                // SAFETY: only the private lower half is cleaned; the kernel
                // half's tables are shared and stay.
                m.free_empty_tables(0, 1 << 47, a);
            });
        }
        free_frame(self.pml4);
    }
}
