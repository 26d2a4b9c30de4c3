//! Task address spaces.
//!
//! A task space maps three kinds of page, told apart by page-table bits
//! the CPU ignores (so the tables themselves say what each leaf is, and a
//! space that goes away cleans up exactly what it holds):
//!
//! - RAM the space owns ([`AddressSpace::map_frame`]): anonymous memory,
//!   freed when unmapped or when the space is dropped;
//! - persistent memory of a [`PmemRegion`] ([`AddressSpace::map_pmem`]),
//!   a DAX page of a file: never freed here (the file system owns its
//!   blocks), but every such leaf holds a *pin* on its page (see
//!   [`fsdax_mm::pins`]), taken when it is mapped and released when it is
//!   unmapped, however that happens (munmap, a layout break, the space's
//!   drop); the kernel waits for a range to have no pin before its blocks
//!   are freed;
//! - the shared zero page, 4 KiB or 2 MiB ([`AddressSpace::map_zero`]),
//!   which reads of file holes map: always read-only.

use alloc::vec::Vec;

use fsdax_drivers::pmem::ByteRange;
use fsdax_mm::layout::{self, KERNEL_PML4_FIRST};
use fsdax_mm::paging::{Flags, Leaf, MapError, PageSize, TlbFlush};
use fsdax_mm::pins::Pins;
use fsdax_mm::{HUGE_2M, PAGE_SIZE};
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::PageTable;

use super::{
    alloc_frame, flush_tlb, free_frame, kernel_pml4, phys_to_virt, with_tables, zero_frame, Frame, PmemRegion, FRAMES,
    PAGE_TABLES,
};
use crate::sync::IrqMutex;

/// Page-table bit (available to software) marking a leaf whose frame the
/// address space owns and frees.
const OWNED: Flags = Flags::BIT_9;
/// Software bit: a leaf that maps persistent memory and holds a pin on it.
const PMEM: Flags = Flags::BIT_10;
/// Software bit: a leaf that maps the shared zero page.
const ZERO: Flags = Flags::BIT_11;
/// The flags a caller may choose for a mapping of RAM in a task space.
const CALLER_FLAGS: Flags = Flags::WRITABLE.union(Flags::USER_ACCESSIBLE).union(Flags::NO_EXECUTE);

/// What a leaf of a task space maps (from its software bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKind {
    /// RAM the space owns (anonymous memory, a private copy).
    Ram,
    /// Persistent memory (a DAX page); it holds a pin.
    Pmem,
    /// The shared zero page (read-only).
    Zero,
}

impl LeafKind {
    /// The kind of a leaf with these flags.
    pub fn of(flags: Flags) -> LeafKind {
        if flags.contains(PMEM) {
            LeafKind::Pmem
        } else if flags.contains(ZERO) {
            LeafKind::Zero
        } else {
            LeafKind::Ram
        }
    }
}

/// Which leaves an unmap removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmap {
    /// Every leaf (`munmap`, truncate beyond EOF).
    All,
    /// Persistent-memory and zero-page leaves only: private copies in RAM
    /// stay (a hole punched in a file leaves a process's private copies of
    /// its pages alone, as Linux's `even_cows = 0`).
    FileOnly,
    /// Zero-page leaves only (a write filled a hole: its zero page is
    /// stale).
    ZeroOnly,
}

impl Unmap {
    fn takes(self, kind: LeafKind) -> bool {
        match self {
            Unmap::All => true,
            Unmap::FileOnly => kind != LeafKind::Ram,
            Unmap::ZeroOnly => kind == LeafKind::Zero,
        }
    }
}

/// Pins on persistent-memory pages, by physical address. Taken outside
/// the page-table lock (it allocates); a leaf's pin is taken before the
/// leaf is installed and released after it is gone and the TLB flushed.
static PINS: IrqMutex<Pins> = IrqMutex::new(Pins::new());
/// Called after pins were released and some page became idle (the kernel
/// wakes whoever waits for a range to be unpinned).
static PINS_IDLE_HOOK: spin::Once<fn()> = spin::Once::new();

/// Registers the function called after a pin release leaves a page idle.
/// Once; a second registration is refused.
pub fn register_pins_idle_hook(f: fn()) -> Result<(), fn()> {
    let mut taken = false;
    PINS_IDLE_HOOK.call_once(|| {
        taken = true;
        f
    });
    if taken {
        Ok(())
    } else {
        Err(f)
    }
}

fn pin(phys: u64, size: PageSize) {
    PINS.lock().get(phys, size);
}

/// Releases pins; calls the hook (outside the lock) if a page became idle.
fn unpin_all(pins: &[(u64, PageSize)]) {
    if pins.is_empty() {
        return;
    }
    let mut idle = false;
    {
        let mut p = PINS.lock();
        for &(phys, size) in pins {
            match p.put(phys, size) {
                Ok(now_idle) => idle |= now_idle,
                Err(e) => crate::console::emergency(format_args!(
                    "mm: releasing a pin on {:#x} ({} bytes) that was not held\n",
                    e.phys,
                    e.size.bytes()
                )),
            }
        }
    }
    if idle {
        if let Some(hook) = PINS_IDLE_HOOK.get() {
            hook();
        }
    }
}

/// Pins held on persistent-memory pages overlapping the physical range
/// `phys` (mappings and copies in flight).
pub fn pins_in(phys: ByteRange) -> u64 {
    PINS.lock().count_in(phys)
}

/// Pinned persistent-memory pages (entries of every size), for the console.
pub fn pinned_pages() -> usize {
    PINS.lock().pages()
}

/// A pin on one 4 KiB page of persistent memory held by a kernel copy in
/// flight (released on drop).
#[derive(Debug)]
pub struct PmemPin {
    phys: u64,
}

impl PmemPin {
    /// Pins the page of `region` that holds byte `offset`; None outside it.
    pub fn new(region: &PmemRegion, offset: u64) -> Option<PmemPin> {
        if offset >= region.len() {
            return None;
        }
        let phys = (region.phys() + offset) & !(PAGE_SIZE - 1);
        pin(phys, PageSize::Size4K);
        Some(PmemPin { phys })
    }
}

impl Drop for PmemPin {
    fn drop(&mut self) {
        unpin_all(&[(self.phys, PageSize::Size4K)]);
    }
}

/// The shared zero pages: 4 KiB and 2 MiB of zeroed RAM that nothing ever
/// writes (mapped read-only only), allocated on first use and kept.
static ZERO_4K: spin::Once<Option<u64>> = spin::Once::new();
static ZERO_2M: spin::Once<Option<u64>> = spin::Once::new();

/// Before a huge leaf is mapped at `virt` of the private lower half: frees
/// the page tables left empty there (4 KiB pages once mapped and unmapped
/// at the same place leave their table behind, and a table where the huge
/// leaf's entry would go refuses it as already mapped). Returns whether it
/// freed any (the caller flushes the range: paging-structure caches may
/// still hold the freed table).
fn prune_for_huge(
    m: &mut fsdax_mm::paging::PageMapper<'static>,
    a: &mut fsdax_mm::frame::BitmapFrameAllocator<'static>,
    virt: u64,
    size: PageSize,
) -> bool {
    let bytes = size.bytes();
    if size == PageSize::Size4K || layout::is_kernel_half(virt) || m.next_leaf(virt, virt + bytes).is_some() {
        return false;
    }
    let free = a.stats().free;
    // SAFETY: `virt` is in the lower half, whose tables belong to this
    // space alone; nothing is mapped in the range, so only empty tables go.
    unsafe { m.free_empty_tables(virt, bytes, a) };
    a.stats().free != free
}

fn zero_page(size: PageSize) -> Option<u64> {
    match size {
        PageSize::Size4K => *ZERO_4K.call_once(alloc_frame),
        PageSize::Size2M => *ZERO_2M.call_once(|| {
            let run = FRAMES.lock().as_mut()?.alloc_contiguous((HUGE_2M / PAGE_SIZE) as usize, HUGE_2M)?;
            for i in 0..HUGE_2M / PAGE_SIZE {
                // SAFETY: a fresh run of frames from the allocator, ours
                // alone (it is never freed, and only ever mapped read-only).
                unsafe { zero_frame(run + i * PAGE_SIZE) };
            }
            Some(run)
        }),
        PageSize::Size1G => None,
    }
}

/// Leaves unmapped per hold of the page-table lock: their pins are released
/// (and the TLB flushed) between holds, without allocating.
const UNMAP_BATCH: usize = 64;

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
    /// len)` (holes are fine: `munmap`), freeing the frames the space owns
    /// and releasing the pins of persistent-memory leaves; flushes the TLB
    /// if the space is live. A persistent-memory or zero-page huge leaf
    /// that sticks out of the range is removed whole (a later fault maps
    /// what is still wanted again); an owned one is refused before anything
    /// changes.
    pub fn unmap_sparse(&self, virt: u64, len: u64) -> Result<(), MapError> {
        self.unmap_where(virt, len, Unmap::All)
    }

    /// Unmaps the leaves `which` selects in the lower-half range `[virt,
    /// virt + len)`, as [`Self::unmap_sparse`] does.
    pub fn unmap_where(&self, virt: u64, len: u64, which: Unmap) -> Result<(), MapError> {
        let end = virt.checked_add(len).filter(|&e| e <= 1 << 47).ok_or(MapError::Unaligned)?;
        if layout::is_kernel_half(virt) || !virt.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Unaligned);
        }
        // SAFETY: this space's PML4 is live while `self` exists.
        unsafe {
            with_tables(self.pml4, |m, _| {
                let mut at = virt;
                while let Some(leaf) = m.next_leaf(at, end) {
                    let sticks_out = leaf.virt < virt || leaf.virt + leaf.size.bytes() > end;
                    if sticks_out && which.takes(LeafKind::Ram) && LeafKind::of(leaf.flags) == LeafKind::Ram {
                        return Err(MapError::SplitsHugePage(leaf.virt));
                    }
                    at = leaf.virt + leaf.size.bytes();
                }
                Ok(())
            })
        }?;
        let mut at = virt;
        loop {
            let mut pins = [(0u64, PageSize::Size4K); UNMAP_BATCH];
            let mut n = 0;
            // SAFETY: this space's PML4 is live while `self` exists.
            let (flush, next) = unsafe {
                with_tables(self.pml4, |m, a| -> Result<(TlbFlush, Option<u64>), MapError> {
                    let mut flush = TlbFlush::None;
                    while let Some(leaf) = m.next_leaf(at, end) {
                        at = leaf.virt + leaf.size.bytes();
                        let kind = LeafKind::of(leaf.flags);
                        if !which.takes(kind) {
                            continue;
                        }
                        flush = flush.merge(m.unmap_range(leaf.virt, leaf.size.bytes())?);
                        match kind {
                            LeafKind::Ram => {
                                let _ = a.free(leaf.phys);
                            }
                            LeafKind::Pmem => {
                                pins[n] = (leaf.phys, leaf.size);
                                n += 1;
                                if n == UNMAP_BATCH {
                                    return Ok((flush, Some(at)));
                                }
                            }
                            LeafKind::Zero => {}
                        }
                    }
                    Ok((flush, None))
                })
            }?;
            if self.is_live() {
                flush_tlb(flush);
            }
            unpin_all(&pins[..n]);
            match next {
                Some(a) if a < end => at = a,
                _ => return Ok(()),
            }
        }
    }

    /// Sets the rights of whatever is mapped in `[virt, virt + len)` to
    /// `flags` (only `WRITABLE`, `USER_ACCESSIBLE` and `NO_EXECUTE` are
    /// taken); flushes the TLB if the space is live (`mprotect`). A
    /// persistent-memory leaf keeps write access only if it had it (a file
    /// page becomes writable through a write fault, which tracks it), a
    /// zero page never gets it; such a huge leaf that sticks out of the
    /// range is unmapped instead (it faults back with the new rights).
    pub fn protect(&self, virt: u64, len: u64, flags: Flags) -> Result<(), MapError> {
        let end = virt.checked_add(len).filter(|&e| e <= 1 << 47).ok_or(MapError::Unaligned)?;
        if layout::is_kernel_half(virt) {
            return Err(MapError::Unaligned);
        }
        self.unmap_straddling(virt, end)?;
        let want = flags & CALLER_FLAGS;
        // SAFETY: this space's PML4 is live while `self` exists.
        let flush = unsafe {
            with_tables(self.pml4, |m, _| {
                let mut flush = TlbFlush::None;
                let mut at = virt;
                while let Some(leaf) = m.next_leaf(at, end) {
                    let set = match LeafKind::of(leaf.flags) {
                        LeafKind::Ram => want,
                        LeafKind::Pmem => want - (Flags::WRITABLE - (leaf.flags & Flags::WRITABLE)),
                        LeafKind::Zero => want - Flags::WRITABLE,
                    };
                    let r = m.update_flags(leaf.virt, leaf.size.bytes(), |old| (old - CALLER_FLAGS) | set)?;
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

    /// Unmaps the file (persistent-memory or zero-page) huge leaves that
    /// cross `virt` or `end`, so that a change of `[virt, end)` never cuts
    /// one.
    fn unmap_straddling(&self, virt: u64, end: u64) -> Result<(), MapError> {
        for edge in [virt, end] {
            let Some(leaf) = (edge < 1 << 47).then(|| self.translate(edge)).flatten() else { continue };
            if leaf.virt != edge && LeafKind::of(leaf.flags) != LeafKind::Ram {
                self.unmap_where(leaf.virt, leaf.size.bytes(), Unmap::FileOnly)?;
            }
        }
        Ok(())
    }

    /// Takes write access away from every leaf in `[virt, virt + len)` (a
    /// huge one that sticks out loses it whole); flushes the TLB if the
    /// space is live. The flush of a file's dirty pages does this to every
    /// mapping of them, so that the next store faults and marks the page
    /// dirty again.
    pub fn write_protect(&self, virt: u64, len: u64) -> Result<(), MapError> {
        let end = virt.checked_add(len).filter(|&e| e <= 1 << 47).ok_or(MapError::Unaligned)?;
        if layout::is_kernel_half(virt) {
            return Err(MapError::Unaligned);
        }
        // SAFETY: this space's PML4 is live while `self` exists.
        let flush = unsafe {
            with_tables(self.pml4, |m, _| {
                let mut flush = TlbFlush::None;
                let mut at = virt;
                while let Some(leaf) = m.next_leaf(at, end) {
                    if leaf.flags.contains(Flags::WRITABLE) {
                        flush = flush.merge(m.update_flags(leaf.virt, leaf.size.bytes(), |old| old - Flags::WRITABLE)?);
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

    /// Gives the persistent-memory leaf that maps `virt` write access back
    /// (a store to a page that a flush write-protected: the kernel marked it
    /// dirty again). Returns the leaf; NotMapped if no persistent-memory
    /// leaf maps `virt` (a zero page never becomes writable).
    pub fn make_writable(&self, virt: u64) -> Result<Leaf, MapError> {
        if layout::is_kernel_half(virt) {
            return Err(MapError::Unaligned);
        }
        // SAFETY: this space's PML4 is live while `self` exists.
        let (leaf, flush) = unsafe {
            with_tables(self.pml4, |m, _| {
                let leaf = m.translate(virt).filter(|l| LeafKind::of(l.flags) == LeafKind::Pmem);
                let leaf = leaf.ok_or(MapError::NotMapped(virt))?;
                let flush = m.update_flags(leaf.virt, leaf.size.bytes(), |old| old | Flags::WRITABLE)?;
                Ok((leaf, flush))
            })
        }?;
        if self.is_live() {
            flush_tlb(flush);
        }
        Ok(Leaf { flags: leaf.flags | Flags::WRITABLE, ..leaf })
    }

    /// Maps `size` bytes of `region` at byte `offset` (a 4 KiB, 2 MiB or
    /// 1 GiB page: offset, virtual and physical address aligned to it) at
    /// the lower-half address `virt`, with `flags` (only `WRITABLE`,
    /// `USER_ACCESSIBLE` and `NO_EXECUTE` are taken; write-back caching).
    /// The leaf holds a pin on the page until it is unmapped. Nothing may
    /// be mapped there already.
    pub fn map_pmem(
        &self,
        virt: u64,
        region: &PmemRegion,
        offset: u64,
        size: PageSize,
        flags: Flags,
    ) -> Result<(), MapError> {
        let bytes = size.bytes();
        let phys = region.phys().checked_add(offset).ok_or(MapError::Unaligned)?;
        if offset.checked_add(bytes).is_none_or(|e| e > region.len())
            || !virt.is_multiple_of(bytes)
            || !phys.is_multiple_of(bytes)
            || layout::is_kernel_half(virt)
            || virt.checked_add(bytes).is_none_or(|e| e > 1 << 47)
        {
            return Err(MapError::Unaligned);
        }
        let flags = Flags::PRESENT | PMEM | (flags & CALLER_FLAGS);
        pin(phys, size);
        // SAFETY: this space's PML4 is live while `self` exists. The frames
        // are persistent memory of a mapped region, which no allocator
        // hands out; the pin keeps the kernel from giving its blocks to
        // someone else while the leaf exists.
        let r = unsafe {
            with_tables(self.pml4, |m, a| {
                let pruned = prune_for_huge(m, a, virt, size);
                m.map_range(virt, phys, bytes, flags, size, a).map(|_| pruned)
            })
        };
        match r {
            Ok(pruned) => {
                if pruned && self.is_live() {
                    flush_tlb(TlbFlush::Range { start: virt, end: virt + bytes, step: bytes });
                }
                Ok(())
            }
            Err(e) => {
                unpin_all(&[(phys, size)]);
                Err(e)
            }
        }
    }

    /// Splits the 2 MiB persistent-memory leaf that maps `virt` into 512
    /// 4 KiB leaves of the same frames with the same rights (memory failure
    /// then unmaps the poisoned page alone: the 511 others stay mapped),
    /// moving its pin to the 512 small pages; flushes the TLB if the space
    /// is live. `Ok(false)` if no 2 MiB persistent-memory leaf maps `virt`
    /// (a 4 KiB one, nothing, RAM or the zero page): nothing changed.
    pub fn split_pmem_2m(&self, virt: u64) -> Result<bool, MapError> {
        if layout::is_kernel_half(virt) {
            return Err(MapError::Unaligned);
        }
        let Some(leaf) = self.translate(virt) else { return Ok(false) };
        if leaf.size != PageSize::Size2M || LeafKind::of(leaf.flags) != LeafKind::Pmem {
            return Ok(false);
        }
        // The small pages' pins are taken before the split (pinning
        // allocates, which it may not do under the page-table lock).
        let small: Vec<(u64, PageSize)> =
            (0..HUGE_2M / PAGE_SIZE).map(|i| (leaf.phys + i * PAGE_SIZE, PageSize::Size4K)).collect();
        for &(phys, size) in &small {
            pin(phys, size);
        }
        // SAFETY: this space's PML4 is live while `self` exists; the leaf is
        // checked again under the page-table lock (it may have changed since
        // `translate`), and the split maps the very same frames.
        let r = unsafe {
            with_tables(self.pml4, |m, a| match m.translate(virt) {
                Some(now) if now == leaf => m.split_2m(virt, a).map(Some),
                _ => Ok(None),
            })
        };
        match r {
            Ok(Some(flush)) => {
                if self.is_live() {
                    flush_tlb(flush);
                }
                unpin_all(&[(leaf.phys, PageSize::Size2M)]);
                Ok(true)
            }
            Ok(None) => {
                unpin_all(&small);
                Ok(false)
            }
            Err(e) => {
                unpin_all(&small);
                Err(e)
            }
        }
    }

    /// Maps the shared zero page of `size` (4 KiB or 2 MiB) at the
    /// lower-half address `virt`, read-only whatever `flags` say (only
    /// `USER_ACCESSIBLE` and `NO_EXECUTE` are taken). OutOfFrames if the
    /// zero page could not be allocated.
    pub fn map_zero(&self, virt: u64, size: PageSize, flags: Flags) -> Result<(), MapError> {
        let bytes = size.bytes();
        if size == PageSize::Size1G
            || !virt.is_multiple_of(bytes)
            || layout::is_kernel_half(virt)
            || virt.checked_add(bytes).is_none_or(|e| e > 1 << 47)
        {
            return Err(MapError::Unaligned);
        }
        let phys = zero_page(size).ok_or(MapError::OutOfFrames)?;
        let flags = Flags::PRESENT | ZERO | (flags & (Flags::USER_ACCESSIBLE | Flags::NO_EXECUTE));
        // SAFETY: this space's PML4 is live while `self` exists; the zero
        // page is RAM the hal keeps for ever and maps read-only only.
        let pruned = unsafe {
            with_tables(self.pml4, |m, a| {
                let pruned = prune_for_huge(m, a, virt, size);
                m.map_range(virt, phys, bytes, flags, size, a).map(|_| pruned)
            })
        }?;
        if pruned && self.is_live() {
            flush_tlb(TlbFlush::Range { start: virt, end: virt + bytes, step: bytes });
        }
        Ok(())
    }

    /// The first leaf that overlaps `[virt, end)`, if any (skipping empty
    /// tables, so a sparse range costs what is mapped).
    pub fn first_leaf(&self, virt: u64, end: u64) -> Option<Leaf> {
        // SAFETY: this space's PML4 is live while `self` exists.
        unsafe { with_tables(self.pml4, |m, _| m.next_leaf(virt, end)) }
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
        // Every leaf goes (owned frames freed, pins released, in batches);
        // a leaf that cannot be unmapped stays and is reported.
        if let Err(e) = self.unmap_where(0, 1 << 47, Unmap::All) {
            crate::console::emergency(format_args!("mm: tearing down an address space: {e}\n"));
        }
        // SAFETY: the PML4 stays live until the end of this function; the
        // space is not loaded in CR3 (its owner, a task context, switched
        // away before dropping it).
        unsafe {
            with_tables(self.pml4, |m, a| {
                // SAFETY: only the private lower half is cleaned; the kernel
                // half's tables are shared and stay.
                m.free_empty_tables(0, 1 << 47, a);
            });
        }
        free_frame(self.pml4);
    }
}
