//! Page tables: map and unmap ranges with 4 KiB, 2 MiB and 1 GiB pages.
//!
//! [`PageMapper`] wraps the `x86_64` crate's `OffsetPageTable` (which walks
//! tables through a physical-memory window) and adds what the kernel needs on
//! top: ranges that use the largest page size the alignment of both
//! addresses allows, rollback on failure, unmapping whatever sizes are there,
//! and leaf enumeration (to rebuild the bootloader's mappings in the kernel's
//! own tables). TLB flushes are not executed here; they are returned as a
//! [`TlbFlush`] that the caller must carry out.

use x86_64::structures::paging::mapper::{CleanUp, MapToError, MappedFrame, Mapper, TranslateResult, UnmapError};
use x86_64::structures::paging::page_table::PageTableEntry;
pub use x86_64::structures::paging::PageTableFlags as Flags;
use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, OffsetPageTable, Page, PageSize as X86PageSize, PageTable, PageTableFlags,
    PhysFrame, Size1GiB, Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use crate::{HUGE_1G, HUGE_2M, PAGE_SIZE};

/// A page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageSize {
    Size4K,
    Size2M,
    Size1G,
}

impl PageSize {
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => PAGE_SIZE,
            PageSize::Size2M => HUGE_2M,
            PageSize::Size1G => HUGE_1G,
        }
    }

    /// The largest size not above `max` that both addresses are aligned to
    /// and that fits in `remaining` bytes.
    pub fn largest_fitting(virt: u64, phys: u64, remaining: u64, max: PageSize) -> PageSize {
        [PageSize::Size1G, PageSize::Size2M]
            .into_iter()
            .filter(|s| *s <= max)
            .find(|s| {
                let b = s.bytes();
                virt.is_multiple_of(b) && phys.is_multiple_of(b) && remaining >= b
            })
            .unwrap_or(PageSize::Size4K)
    }
}

/// Errors of mapping operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Addresses or length not 4 KiB aligned, or the range wraps.
    Unaligned,
    /// Something is already mapped at this virtual address.
    AlreadyMapped(u64),
    /// No frame for a page table.
    OutOfFrames,
    /// Nothing is mapped at this address.
    NotMapped(u64),
    /// The range would cut a huge page at this address in two.
    SplitsHugePage(u64),
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unaligned => f.write_str("address or length not 4 KiB aligned, or the range wraps"),
            Self::AlreadyMapped(va) => write!(f, "something is already mapped at {va:#x}"),
            Self::OutOfFrames => f.write_str("out of frames for a page table"),
            Self::NotMapped(va) => write!(f, "nothing is mapped at {va:#x}"),
            Self::SplitsHugePage(va) => write!(f, "the range would cut the huge page at {va:#x} in two"),
        }
    }
}

/// A TLB flush the caller must perform after changing mappings.
#[must_use = "stale TLB entries must be flushed"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlbFlush {
    /// Nothing was unmapped or changed; new mappings need no flush.
    None,
    /// Flush these pages (`invlpg` each page start in `[start, end)`,
    /// stepping by `step`).
    Range { start: u64, end: u64, step: u64 },
    /// Flush everything that is not global (reload CR3).
    All,
}

impl TlbFlush {
    /// Combines two pending flushes.
    pub fn merge(self, other: TlbFlush) -> TlbFlush {
        match (self, other) {
            (TlbFlush::None, x) | (x, TlbFlush::None) => x,
            _ => TlbFlush::All,
        }
    }
}

/// Pages of each size used by a mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapStats {
    pub pages_4k: u64,
    pub pages_2m: u64,
    pub pages_1g: u64,
}

impl MapStats {
    fn count(&mut self, size: PageSize) {
        match size {
            PageSize::Size4K => self.pages_4k += 1,
            PageSize::Size2M => self.pages_2m += 1,
            PageSize::Size1G => self.pages_1g += 1,
        }
    }
}

/// A mapped leaf: what [`PageMapper::translate`] and
/// [`PageMapper::for_each_leaf`] report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    pub virt: u64,
    pub phys: u64,
    pub size: PageSize,
    pub flags: PageTableFlags,
}

/// A level-4 page table, reached through a physical-memory window.
#[derive(Debug)]
pub struct PageMapper<'a> {
    inner: OffsetPageTable<'a>,
    window: u64,
}

impl<'a> PageMapper<'a> {
    /// # Safety
    /// `pml4` must be a valid level-4 table, every physical address any of
    /// its tables refers to must be readable and writable at
    /// `window + phys`, and nothing else may modify these tables while the
    /// mapper lives.
    pub unsafe fn new(pml4: &'a mut PageTable, window: u64) -> Self {
        // SAFETY: the caller guarantees `pml4` is a valid level-4 table, that
        // every table it refers to is readable and writable at
        // `window + phys`, and that nothing else modifies them meanwhile:
        // exactly `OffsetPageTable::new`'s requirements.
        let inner = unsafe { OffsetPageTable::new(pml4, VirtAddr::new(window)) };
        PageMapper { inner, window }
    }

    /// The flags of intermediate tables: present and writable, and
    /// user-accessible if the leaf is (the leaf decides).
    fn parent_flags(flags: PageTableFlags) -> PageTableFlags {
        PageTableFlags::PRESENT | PageTableFlags::WRITABLE | (flags & PageTableFlags::USER_ACCESSIBLE)
    }

    fn map_one<A: FrameAllocator<Size4KiB>>(
        &mut self,
        virt: u64,
        phys: u64,
        size: PageSize,
        flags: PageTableFlags,
        alloc: &mut A,
    ) -> Result<(), MapError> {
        let parent = Self::parent_flags(flags);
        match size {
            PageSize::Size4K => map_sized::<Size4KiB, A>(&mut self.inner, virt, phys, flags, parent, alloc),
            PageSize::Size2M => {
                map_sized::<Size2MiB, A>(&mut self.inner, virt, phys, flags | PageTableFlags::HUGE_PAGE, parent, alloc)
            }
            PageSize::Size1G => {
                map_sized::<Size1GiB, A>(&mut self.inner, virt, phys, flags | PageTableFlags::HUGE_PAGE, parent, alloc)
            }
        }
    }

    /// Maps `[virt, virt + len)` to `[phys, phys + len)` with the largest
    /// pages (up to `max`) that the alignment of both addresses allows. On
    /// failure, whatever this call mapped is unmapped again.
    pub fn map_range<A: FrameAllocator<Size4KiB>>(
        &mut self,
        virt: u64,
        phys: u64,
        len: u64,
        flags: PageTableFlags,
        max: PageSize,
        alloc: &mut A,
    ) -> Result<MapStats, MapError> {
        if !virt.is_multiple_of(PAGE_SIZE) || !phys.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Unaligned);
        }
        virt.checked_add(len).ok_or(MapError::Unaligned)?;
        phys.checked_add(len).ok_or(MapError::Unaligned)?;
        let mut stats = MapStats::default();
        let mut done = 0;
        while done < len {
            let size = PageSize::largest_fitting(virt + done, phys + done, len - done, max);
            if let Err(e) = self.map_one(virt + done, phys + done, size, flags, alloc) {
                if done > 0 {
                    // Roll back: these pages were mapped just now, by us.
                    let _ = self.unmap_range(virt, done);
                }
                return Err(e);
            }
            stats.count(size);
            done += size.bytes();
        }
        Ok(stats)
    }

    /// What is mapped at `virt`, if anything.
    pub fn translate(&self, virt: u64) -> Option<Leaf> {
        match self.inner.translate(VirtAddr::new(virt)) {
            TranslateResult::Mapped { frame, offset, flags } => {
                let (phys, size) = match frame {
                    MappedFrame::Size4KiB(f) => (f.start_address().as_u64(), PageSize::Size4K),
                    MappedFrame::Size2MiB(f) => (f.start_address().as_u64(), PageSize::Size2M),
                    MappedFrame::Size1GiB(f) => (f.start_address().as_u64(), PageSize::Size1G),
                };
                Some(Leaf { virt: virt - offset, phys, size, flags })
            }
            _ => None,
        }
    }

    /// Unmaps every page in `[virt, virt + len)`; each must be mapped and lie
    /// wholly inside the range. Returns the flush to perform.
    pub fn unmap_range(&mut self, virt: u64, len: u64) -> Result<TlbFlush, MapError> {
        if !virt.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Unaligned);
        }
        let end = virt.checked_add(len).ok_or(MapError::Unaligned)?;
        // Check first, so that a bad range changes nothing.
        self.leaves_exactly_in(virt, end)?;
        let mut at = virt;
        let mut min_step = u64::MAX;
        while at < end {
            let leaf = self.translate(at).ok_or(MapError::NotMapped(at))?;
            let va = VirtAddr::new(at);
            let r = match leaf.size {
                PageSize::Size4K => self.inner.unmap(Page::<Size4KiB>::containing_address(va)).map(|(_, f)| f.ignore()),
                PageSize::Size2M => self.inner.unmap(Page::<Size2MiB>::containing_address(va)).map(|(_, f)| f.ignore()),
                PageSize::Size1G => self.inner.unmap(Page::<Size1GiB>::containing_address(va)).map(|(_, f)| f.ignore()),
            };
            r.map_err(|e| match e {
                UnmapError::PageNotMapped => MapError::NotMapped(at),
                _ => MapError::SplitsHugePage(at),
            })?;
            min_step = min_step.min(leaf.size.bytes());
            at += leaf.size.bytes();
        }
        Ok(flush_for(virt, end, min_step))
    }

    /// Changes the flags of every page in `[virt, virt + len)` to
    /// `f(old flags)` (the huge-page bit is kept as it is). Each page must
    /// be mapped and lie wholly inside the range; a bad range changes
    /// nothing. Used for `mprotect` and for write-protecting DAX pages when
    /// they are flushed (dirty tracking).
    pub fn update_flags(
        &mut self,
        virt: u64,
        len: u64,
        mut f: impl FnMut(PageTableFlags) -> PageTableFlags,
    ) -> Result<TlbFlush, MapError> {
        if !virt.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Unaligned);
        }
        let end = virt.checked_add(len).ok_or(MapError::Unaligned)?;
        let leaves = self.leaves_exactly_in(virt, end)?;
        let mut min_step = u64::MAX;
        for leaf in &leaves {
            let huge = leaf.flags & PageTableFlags::HUGE_PAGE;
            let flags = (f(leaf.flags) - PageTableFlags::HUGE_PAGE) | huge;
            let va = VirtAddr::new(leaf.virt);
            // SAFETY: changing the flags of a mapping the caller owns cannot
            // alias memory; the caller carries out the returned TLB flush
            // before relying on the new rights.
            let r = unsafe {
                match leaf.size {
                    PageSize::Size4K => {
                        self.inner.update_flags(Page::<Size4KiB>::containing_address(va), flags).map(|f| f.ignore())
                    }
                    PageSize::Size2M => {
                        self.inner.update_flags(Page::<Size2MiB>::containing_address(va), flags).map(|f| f.ignore())
                    }
                    PageSize::Size1G => {
                        self.inner.update_flags(Page::<Size1GiB>::containing_address(va), flags).map(|f| f.ignore())
                    }
                }
            };
            r.map_err(|_| MapError::NotMapped(leaf.virt))?;
            min_step = min_step.min(leaf.size.bytes());
        }
        Ok(flush_for(virt, end, min_step))
    }

    /// The leaves covering `[virt, end)`, each wholly inside it; an error
    /// names the first unmapped address or huge page the range would cut.
    fn leaves_exactly_in(&self, virt: u64, end: u64) -> Result<alloc::vec::Vec<Leaf>, MapError> {
        let mut leaves = alloc::vec::Vec::new();
        let mut at = virt;
        while at < end {
            let leaf = self.translate(at).ok_or(MapError::NotMapped(at))?;
            if leaf.virt != at || at + leaf.size.bytes() > end {
                return Err(MapError::SplitsHugePage(at));
            }
            at += leaf.size.bytes();
            leaves.push(leaf);
        }
        Ok(leaves)
    }

    /// Replaces the 2 MiB page that maps `virt` by a page table of 512
    /// 4 KiB entries mapping the same frames with the same rights, so that
    /// single pages of it can then be unmapped (memory failure keeps the
    /// 511 good pages of a huge DAX mapping). A 4 KiB mapping is left as it
    /// is (`TlbFlush::None`); a 1 GiB page is refused.
    pub fn split_2m<A: FrameAllocator<Size4KiB>>(&mut self, virt: u64, alloc: &mut A) -> Result<TlbFlush, MapError> {
        let leaf = self.translate(virt).ok_or(MapError::NotMapped(virt))?;
        match leaf.size {
            PageSize::Size4K => return Ok(TlbFlush::None),
            PageSize::Size1G => return Err(MapError::SplitsHugePage(leaf.virt)),
            PageSize::Size2M => {}
        }
        let table = alloc.allocate_frame().ok_or(MapError::OutOfFrames)?;
        let table_phys = table.start_address().as_u64();
        let window = self.window;
        // SAFETY: `new`'s contract: every frame the allocator hands out for
        // page tables is reachable at window + phys and owned by this
        // mapper; the frame is fresh, so nothing else refers to it.
        let pt = unsafe { &mut *((window + table_phys) as *mut PageTable) };
        pt.zero();
        let small = leaf.flags - PageTableFlags::HUGE_PAGE;
        for (i, e) in pt.iter_mut().enumerate() {
            e.set_addr(PhysAddr::new(leaf.phys + i as u64 * PAGE_SIZE), small);
        }
        let v = VirtAddr::new(leaf.virt);
        let (i4, i3, i2) = (usize::from(v.p4_index()), usize::from(v.p3_index()), usize::from(v.p2_index()));
        let pdpt_phys = self.inner.level_4_table()[i4].addr().as_u64();
        // SAFETY: as above: the PDPT and PD on the path to a present 2 MiB
        // leaf are tables of this mapper, reachable through the window and
        // not used by anyone else while the mapper lives.
        let pd_phys = unsafe { &*((window + pdpt_phys) as *const PageTable) }[i3].addr().as_u64();
        // SAFETY: as above.
        let pd = unsafe { &mut *((window + pd_phys) as *mut PageTable) };
        pd[i2].set_addr(PhysAddr::new(table_phys), Self::parent_flags(leaf.flags));
        Ok(TlbFlush::Range { start: leaf.virt, end: leaf.virt + HUGE_2M, step: HUGE_2M })
    }

    /// Frees the page-table frames left empty in `[virt, virt + len)`.
    ///
    /// # Safety
    /// The tables in the range must not be shared with another address space
    /// (the kernel half of task address spaces is shared: never clean it).
    pub unsafe fn free_empty_tables<D: FrameDeallocator<Size4KiB>>(&mut self, virt: u64, len: u64, dealloc: &mut D) {
        if len == 0 {
            return;
        }
        let start = Page::<Size4KiB>::containing_address(VirtAddr::new(virt));
        let end = Page::<Size4KiB>::containing_address(VirtAddr::new(virt + len - 1));
        // SAFETY: the caller guarantees the tables in the range are not
        // shared with another address space, so freeing the empty ones
        // cannot pull a table from under another PML4.
        unsafe { self.inner.clean_up_addr_range(Page::range_inclusive(start, end), dealloc) };
    }

    /// Calls `f` for every present leaf whose PML4 slot is in `slots`.
    pub fn for_each_leaf(&self, slots: core::ops::Range<usize>, mut f: impl FnMut(Leaf)) {
        let window = self.window;
        let table_at = |e: &PageTableEntry| -> &PageTable {
            // SAFETY: `new`'s contract: every table this one refers to is
            // readable at window + phys, and not modified while we read.
            unsafe { &*((window + e.addr().as_u64()) as *const PageTable) }
        };
        let sign_extend = |v: u64| if v & (1 << 47) != 0 { v | 0xffff_0000_0000_0000 } else { v };
        let pml4 = self.inner.level_4_table();
        for i4 in slots.filter(|&i| i < 512) {
            let e4 = &pml4[i4];
            if !e4.flags().contains(PageTableFlags::PRESENT) {
                continue;
            }
            for (i3, e3) in table_at(e4).iter().enumerate() {
                if !e3.flags().contains(PageTableFlags::PRESENT) {
                    continue;
                }
                let v3 = sign_extend(((i4 as u64) << 39) | ((i3 as u64) << 30));
                if e3.flags().contains(PageTableFlags::HUGE_PAGE) {
                    f(Leaf { virt: v3, phys: e3.addr().as_u64(), size: PageSize::Size1G, flags: e3.flags() });
                    continue;
                }
                for (i2, e2) in table_at(e3).iter().enumerate() {
                    if !e2.flags().contains(PageTableFlags::PRESENT) {
                        continue;
                    }
                    let v2 = v3 | ((i2 as u64) << 21);
                    if e2.flags().contains(PageTableFlags::HUGE_PAGE) {
                        f(Leaf { virt: v2, phys: e2.addr().as_u64(), size: PageSize::Size2M, flags: e2.flags() });
                        continue;
                    }
                    for (i1, e1) in table_at(e2).iter().enumerate() {
                        if e1.flags().contains(PageTableFlags::PRESENT) {
                            let v1 = v2 | ((i1 as u64) << 12);
                            f(Leaf { virt: v1, phys: e1.addr().as_u64(), size: PageSize::Size4K, flags: e1.flags() });
                        }
                    }
                }
            }
        }
    }

    /// The first present leaf that overlaps `[from, end)`, skipping empty
    /// tables at every level (so a sparse range costs what is mapped, not
    /// its size). Lower-half addresses only.
    pub fn next_leaf(&self, from: u64, end: u64) -> Option<Leaf> {
        let window = self.window;
        let table_at = |e: &PageTableEntry| -> &PageTable {
            // SAFETY: `new`'s contract: every table this one refers to is
            // readable at window + phys, and not modified while we read.
            unsafe { &*((window + e.addr().as_u64()) as *const PageTable) }
        };
        let present = |e: &PageTableEntry| e.flags().contains(PageTableFlags::PRESENT);
        let huge = |e: &PageTableEntry| e.flags().contains(PageTableFlags::HUGE_PAGE);
        let next = |at: u64, size: u64| (at | (size - 1)).checked_add(1);
        let pml4 = self.inner.level_4_table();
        let mut at = from & !(PAGE_SIZE - 1);
        while at < end && at < (1 << 47) {
            let e4 = &pml4[((at >> 39) & 511) as usize];
            if !present(e4) {
                at = next(at, 1 << 39)?;
                continue;
            }
            let e3 = &table_at(e4)[((at >> 30) & 511) as usize];
            if !present(e3) {
                at = next(at, HUGE_1G)?;
                continue;
            }
            if huge(e3) {
                let virt = at & !(HUGE_1G - 1);
                return Some(Leaf { virt, phys: e3.addr().as_u64(), size: PageSize::Size1G, flags: e3.flags() });
            }
            let e2 = &table_at(e3)[((at >> 21) & 511) as usize];
            if !present(e2) {
                at = next(at, HUGE_2M)?;
                continue;
            }
            if huge(e2) {
                let virt = at & !(HUGE_2M - 1);
                return Some(Leaf { virt, phys: e2.addr().as_u64(), size: PageSize::Size2M, flags: e2.flags() });
            }
            let e1 = &table_at(e2)[((at >> 12) & 511) as usize];
            if present(e1) {
                return Some(Leaf { virt: at, phys: e1.addr().as_u64(), size: PageSize::Size4K, flags: e1.flags() });
            }
            at += PAGE_SIZE;
        }
        None
    }

    /// The level-4 table.
    pub fn level_4_table(&mut self) -> &mut PageTable {
        self.inner.level_4_table_mut()
    }
}

/// The flush after changing `[virt, end)` whose smallest page is `step`:
/// page by page, or everything when that would be more than 64 pages.
fn flush_for(virt: u64, end: u64, step: u64) -> TlbFlush {
    if end == virt {
        TlbFlush::None
    } else if (end - virt) / step > 64 {
        TlbFlush::All
    } else {
        TlbFlush::Range { start: virt, end, step }
    }
}

/// Maps one page of size `S`.
fn map_sized<S: X86PageSize, A: FrameAllocator<Size4KiB>>(
    table: &mut OffsetPageTable<'_>,
    virt: u64,
    phys: u64,
    flags: PageTableFlags,
    parent: PageTableFlags,
    alloc: &mut A,
) -> Result<(), MapError>
where
    for<'a> OffsetPageTable<'a>: Mapper<S>,
{
    let page = Page::<S>::from_start_address(VirtAddr::new(virt)).map_err(|_| MapError::Unaligned)?;
    let frame = PhysFrame::<S>::from_start_address(PhysAddr::new(phys)).map_err(|_| MapError::Unaligned)?;
    // SAFETY: mapping a page is unsafe because it can alias memory; the
    // callers of `map_range` state what they map (see their contracts), and
    // the kernel never maps a frame it does not own.
    let result = unsafe { table.map_to_with_table_flags(page, frame, flags, parent, alloc) };
    match result {
        Ok(flush) => {
            flush.ignore();
            Ok(())
        }
        Err(MapToError::FrameAllocationFailed) => Err(MapError::OutOfFrames),
        Err(MapToError::PageAlreadyMapped(_) | MapToError::ParentEntryHugePage) => Err(MapError::AlreadyMapped(virt)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::BitmapFrameAllocator;

    #[test]
    fn next_leaf_skips_empty_tables() {
        let (mut phys, mut alloc) = setup(64);
        let mut m = mapper(&mut phys);
        let f = Flags::PRESENT | Flags::WRITABLE | Flags::USER_ACCESSIBLE;
        m.map_range(0x40_0000, 0x10_0000, 2 * PAGE_SIZE, f, PageSize::Size4K, &mut alloc).unwrap();
        m.map_range(0x7f00_0000_0000, 0x20_0000, PAGE_SIZE, f, PageSize::Size4K, &mut alloc).unwrap();
        let a = m.next_leaf(0, 1 << 47).unwrap();
        assert_eq!((a.virt, a.phys), (0x40_0000, 0x10_0000));
        let b = m.next_leaf(a.virt + PAGE_SIZE, 1 << 47).unwrap();
        assert_eq!(b.virt, 0x40_1000);
        let c = m.next_leaf(b.virt + PAGE_SIZE, 1 << 47).unwrap();
        assert_eq!((c.virt, c.phys), (0x7f00_0000_0000, 0x20_0000));
        assert_eq!(m.next_leaf(c.virt + PAGE_SIZE, 1 << 47), None);
        assert_eq!(m.next_leaf(0x40_2000, 0x7f00_0000_0000), None, "end is exclusive");
    }

    /// A fake physical memory: `frames` page-aligned 4 KiB frames; physical
    /// address `p` lives at `base + p`.
    struct FakePhys {
        mem: Vec<PageTable>,
    }

    impl FakePhys {
        fn new(frames: usize) -> Self {
            let mut mem = Vec::with_capacity(frames);
            mem.resize_with(frames, PageTable::new);
            FakePhys { mem }
        }
        fn window(&self) -> u64 {
            self.mem.as_ptr() as u64
        }
    }

    /// Mapper + allocator over fake memory; frame 0 is the PML4.
    fn setup(frames: usize) -> (FakePhys, BitmapFrameAllocator<'static>) {
        let phys = FakePhys::new(frames);
        let bitmap = Box::leak(vec![0u64; BitmapFrameAllocator::words_for(frames)].into_boxed_slice());
        let mut alloc = BitmapFrameAllocator::new(bitmap, 0, frames);
        alloc.add_usable(PAGE_SIZE, frames as u64 * PAGE_SIZE);
        (phys, alloc)
    }

    fn mapper(phys: &mut FakePhys) -> PageMapper<'_> {
        let window = phys.window();
        // SAFETY: frame 0 is a valid (zeroed) level-4 table; every table the
        // mapper creates comes from the allocator over `phys.mem`, which is
        // reachable at window + phys and owned by this test.
        unsafe { PageMapper::new(&mut *(window as *mut PageTable), window) }
    }

    const RW: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

    #[test]
    fn largest_fitting_respects_alignment_length_and_cap() {
        use PageSize::*;
        assert_eq!(PageSize::largest_fitting(0, 0, HUGE_1G, Size1G), Size1G);
        assert_eq!(PageSize::largest_fitting(0, 0, HUGE_1G, Size2M), Size2M);
        assert_eq!(PageSize::largest_fitting(0, HUGE_2M, HUGE_1G, Size1G), Size2M);
        assert_eq!(PageSize::largest_fitting(0, 0, HUGE_2M - PAGE_SIZE, Size1G), Size4K);
        assert_eq!(PageSize::largest_fitting(PAGE_SIZE, 0, HUGE_1G, Size1G), Size4K);
    }

    #[test]
    fn maps_with_mixed_page_sizes_and_translates() {
        let (mut phys, mut alloc) = setup(64);
        let mut m = mapper(&mut phys);
        // virt and phys both start 4 KiB before a 2 MiB boundary, so the
        // range needs 4K + 2M pages + a 1G page is impossible (length).
        let virt = 0xffff_c000_0000_0000 + HUGE_2M - PAGE_SIZE;
        let pmem = 0x1_0000_0000 + HUGE_2M - PAGE_SIZE;
        let len = PAGE_SIZE + 2 * HUGE_2M + 3 * PAGE_SIZE;
        let stats = m.map_range(virt, pmem, len, RW, PageSize::Size1G, &mut alloc).unwrap();
        assert_eq!(stats, MapStats { pages_4k: 4, pages_2m: 2, pages_1g: 0 });
        let leaf = m.translate(virt + PAGE_SIZE + 12345).unwrap();
        assert_eq!(leaf.size, PageSize::Size2M);
        assert_eq!(leaf.phys, pmem + PAGE_SIZE);
        assert_eq!(m.translate(virt + len), None);
        assert_eq!(m.translate(virt - PAGE_SIZE), None);
        // A 1 GiB page when everything is aligned.
        let s = m.map_range(0xffff_c010_0000_0000, 0x40_0000_0000, HUGE_1G, RW, PageSize::Size1G, &mut alloc).unwrap();
        assert_eq!(s.pages_1g, 1);
        assert_eq!(m.translate(0xffff_c010_0000_0000 + 77).unwrap().phys, 0x40_0000_0000);
    }

    #[test]
    fn overlapping_map_fails_and_rolls_back() {
        let (mut phys, mut alloc) = setup(64);
        let mut m = mapper(&mut phys);
        let base = 0x4000_0000;
        m.map_range(base + 8 * PAGE_SIZE, 0x1000_0000, PAGE_SIZE, RW, PageSize::Size4K, &mut alloc).unwrap();
        let err = m.map_range(base, 0x2000_0000, 16 * PAGE_SIZE, RW, PageSize::Size4K, &mut alloc);
        assert_eq!(err, Err(MapError::AlreadyMapped(base + 8 * PAGE_SIZE)));
        // The first 8 pages of the failed call were rolled back.
        for i in 0..8 {
            assert_eq!(m.translate(base + i * PAGE_SIZE), None);
        }
        assert_eq!(m.translate(base + 8 * PAGE_SIZE).unwrap().phys, 0x1000_0000);
    }

    #[test]
    fn unmap_checks_before_changing_anything() {
        let (mut phys, mut alloc) = setup(64);
        let mut m = mapper(&mut phys);
        let base = 0x4000_0000;
        m.map_range(base, 0x8000_0000, HUGE_2M, RW, PageSize::Size2M, &mut alloc).unwrap();
        assert_eq!(m.unmap_range(base, PAGE_SIZE), Err(MapError::SplitsHugePage(base)));
        assert!(m.translate(base).is_some(), "failed unmap changed nothing");
        assert_eq!(m.unmap_range(base, 2 * HUGE_2M), Err(MapError::NotMapped(base + HUGE_2M)));
        assert_eq!(
            m.unmap_range(base, HUGE_2M),
            Ok(TlbFlush::Range { start: base, end: base + HUGE_2M, step: HUGE_2M })
        );
        assert_eq!(m.translate(base), None);
        assert_eq!(m.unmap_range(base, 3), Err(MapError::Unaligned));
    }

    #[test]
    fn update_flags_changes_rights_and_keeps_huge_pages() {
        let (mut phys, mut alloc) = setup(64);
        let mut m = mapper(&mut phys);
        let base = 0x4000_0000;
        m.map_range(base, 0x8000_0000, HUGE_2M + 2 * PAGE_SIZE, RW, PageSize::Size2M, &mut alloc).unwrap();
        let ro = |f: PageTableFlags| f - PageTableFlags::WRITABLE;
        assert_eq!(m.update_flags(base, PAGE_SIZE, ro), Err(MapError::SplitsHugePage(base)));
        assert!(m.translate(base).unwrap().flags.contains(PageTableFlags::WRITABLE), "nothing changed");
        let flush = m.update_flags(base, HUGE_2M + 2 * PAGE_SIZE, ro).unwrap();
        // 514 pages at the smallest step: cheaper to flush everything.
        assert_eq!(flush, TlbFlush::All);
        let big = m.translate(base + 5).unwrap();
        assert_eq!(big.size, PageSize::Size2M, "still a huge page");
        assert!(!big.flags.contains(PageTableFlags::WRITABLE));
        assert!(!m.translate(base + HUGE_2M).unwrap().flags.contains(PageTableFlags::WRITABLE));
        assert_eq!(
            m.update_flags(base + HUGE_2M + 2 * PAGE_SIZE, PAGE_SIZE, ro),
            Err(MapError::NotMapped(base + HUGE_2M + 2 * PAGE_SIZE))
        );
    }

    #[test]
    fn split_2m_keeps_every_page_and_allows_single_unmaps() {
        let (mut phys, mut alloc) = setup(64);
        let mut m = mapper(&mut phys);
        let base = 0x4000_0000;
        let user = RW | PageTableFlags::USER_ACCESSIBLE;
        m.map_range(base, 0x8000_0000, HUGE_2M, user, PageSize::Size2M, &mut alloc).unwrap();
        let free = alloc.stats().free;
        let flush = m.split_2m(base + 0x1234, &mut alloc).unwrap();
        assert_eq!(flush, TlbFlush::Range { start: base, end: base + HUGE_2M, step: HUGE_2M });
        assert_eq!(alloc.stats().free, free - 1, "one page table");
        for i in [0u64, 1, 255, 511] {
            let l = m.translate(base + i * PAGE_SIZE).unwrap();
            assert_eq!((l.size, l.phys), (PageSize::Size4K, 0x8000_0000 + i * PAGE_SIZE));
            assert!(l.flags.contains(user) && !l.flags.contains(PageTableFlags::HUGE_PAGE));
        }
        // One bad page goes; its 511 neighbours stay.
        let _ = m.unmap_range(base + 7 * PAGE_SIZE, PAGE_SIZE).unwrap();
        assert!(m.translate(base + 7 * PAGE_SIZE).is_none());
        assert!(m.translate(base + 6 * PAGE_SIZE).is_some() && m.translate(base + 8 * PAGE_SIZE).is_some());
        // Splitting a 4 KiB mapping is a no-op; nothing mapped is an error.
        assert_eq!(m.split_2m(base, &mut alloc), Ok(TlbFlush::None));
        assert_eq!(m.split_2m(0x9000_0000, &mut alloc), Err(MapError::NotMapped(0x9000_0000)));
    }

    #[test]
    fn empty_tables_are_freed() {
        let (mut phys, mut alloc) = setup(64);
        let before = alloc.stats().free;
        {
            let mut m = mapper(&mut phys);
            m.map_range(0x1234_5000, 0x9000, 3 * PAGE_SIZE, RW, PageSize::Size4K, &mut alloc).unwrap();
            assert_eq!(alloc.stats().free, before - 3, "PDPT, PD and PT");
            let _ = m.unmap_range(0x1234_5000, 3 * PAGE_SIZE).unwrap();
            // SAFETY: this fake address space shares no tables.
            unsafe { m.free_empty_tables(0, 1 << 47, &mut alloc) };
        }
        assert_eq!(alloc.stats().free, before);
    }

    #[test]
    fn for_each_leaf_enumerates_every_mapping() {
        let (mut phys, mut alloc) = setup(64);
        let mut m = mapper(&mut phys);
        m.map_range(0xffff_f000_0000_0000, 0x20_0000, HUGE_2M + PAGE_SIZE, RW, PageSize::Size2M, &mut alloc).unwrap();
        m.map_range(0x1000, 0x5000, PAGE_SIZE, RW, PageSize::Size4K, &mut alloc).unwrap();
        let mut leaves = Vec::new();
        m.for_each_leaf(256..512, |l| leaves.push(l));
        assert_eq!(leaves.len(), 2);
        assert_eq!(
            (leaves[0].virt, leaves[0].phys, leaves[0].size),
            (0xffff_f000_0000_0000, 0x20_0000, PageSize::Size2M)
        );
        assert_eq!(
            (leaves[1].virt, leaves[1].phys, leaves[1].size),
            (0xffff_f000_0020_0000, 0x40_0000, PageSize::Size4K)
        );
        let mut low = Vec::new();
        m.for_each_leaf(0..256, |l| low.push(l.virt));
        assert_eq!(low, vec![0x1000]);
    }
}
