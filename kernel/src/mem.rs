//! Kernel memory: the frame allocator, the kernel's own page tables, the
//! heap, kernel stacks and per-task address spaces.
//!
//! At boot the kernel builds a fresh PML4: a direct map of every range in
//! the memory map (largest pages that fit), the bootloader's mappings of the
//! kernel image, boot stack and boot info copied leaf by leaf, and a
//! page-directory-pointer table for every upper-half slot so that task
//! address spaces can share the kernel half. Then it switches CR3 and never
//! touches the bootloader's tables again.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, Ordering};

use bootloader_api::info::MemoryRegionKind;
use bootloader_api::BootInfo;
use fsdax_mm::frame::{BitmapFrameAllocator, FrameStats};
use fsdax_mm::layout::{
    self, HEAP_BASE, HEAP_SIZE, KERNEL_PML4_FIRST, MMIO_BASE, PHYS_OFFSET, STACKS_BASE, STACK_SLOT,
};
use fsdax_mm::paging::{Flags, Leaf, MapError, MapStats, PageMapper, PageSize, TlbFlush};
use fsdax_mm::{HUGE_2M, PAGE_SIZE};
use linked_list_allocator::Heap;
use spin::Mutex;
use x86_64::instructions::interrupts::without_interrupts;
use x86_64::registers::control::{Cr3, Cr3Flags, Cr4, Cr4Flags};
use x86_64::structures::paging::{PageTable, PhysFrame};
use x86_64::PhysAddr;

use crate::arch::cpu::Features;

static FRAMES: Mutex<Option<BitmapFrameAllocator<'static>>> = Mutex::new(None);
/// Serialises every page-table change (kernel half and task spaces).
static PAGE_TABLES: Mutex<()> = Mutex::new(());
static KERNEL_PML4: AtomicU64 = AtomicU64::new(0);
static MAX_PAGE: AtomicU64 = AtomicU64::new(HUGE_2M);

/// The virtual address of physical address `phys` in the direct map.
pub fn phys_to_virt(phys: u64) -> u64 {
    PHYS_OFFSET + phys
}

/// Physical address of the kernel's PML4.
pub fn kernel_pml4() -> u64 {
    KERNEL_PML4.load(Ordering::Relaxed)
}

fn max_page() -> PageSize {
    if MAX_PAGE.load(Ordering::Relaxed) == fsdax_mm::HUGE_1G {
        PageSize::Size1G
    } else {
        PageSize::Size2M
    }
}

/// # Safety
/// `pml4` must be the physical address of a page table owned by the caller's
/// context, reachable through the direct map, and `PAGE_TABLES` must be held.
unsafe fn mapper_for(pml4: u64) -> PageMapper<'static> {
    // SAFETY: per this function's contract, the table is valid and exclusively
    // ours while PAGE_TABLES is held; every table it refers to is RAM, which
    // the direct map covers.
    unsafe { PageMapper::new(&mut *(phys_to_virt(pml4) as *mut PageTable), PHYS_OFFSET) }
}

/// What `init` set up, for the boot log and `mem`.
#[derive(Debug, Clone, Copy)]
pub struct MemInfo {
    pub direct_map: MapStats,
    pub copied_leaves: usize,
    pub max_phys: u64,
}

/// Builds the frame allocator, the kernel's page tables and the heap.
///
/// Relies on the bootloader's physical-memory mapping at [`PHYS_OFFSET`]
/// (requested in the boot config) until the switch; the new direct map has
/// the same offset, so physical addresses stay valid across it.
pub fn init(boot: &BootInfo, features: &Features) -> MemInfo {
    if features.pdpe1gb {
        MAX_PAGE.store(fsdax_mm::HUGE_1G, Ordering::Relaxed);
    }
    let regions = &boot.memory_regions;
    let max_phys = regions.iter().map(|r| r.end).max().unwrap_or(0).next_multiple_of(PAGE_SIZE);
    let frames = (max_phys / PAGE_SIZE) as usize;
    let words = BitmapFrameAllocator::words_for(frames);
    let bitmap_bytes = (words * 8) as u64;
    let bitmap_phys = regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable)
        .map(|r| (r.start.max(PAGE_SIZE).next_multiple_of(PAGE_SIZE), r.end))
        .find(|(s, e)| s + bitmap_bytes <= *e)
        .map(|(s, _)| s)
        .expect("no usable region can hold the frame bitmap");
    // SAFETY: `bitmap_phys` starts a usable RAM range of at least
    // `bitmap_bytes`, mapped by the bootloader's physical-memory mapping, and
    // is reserved in the allocator below so nothing else ever uses it.
    let bitmap = unsafe { core::slice::from_raw_parts_mut(phys_to_virt(bitmap_phys) as *mut u64, words) };
    let mut alloc = BitmapFrameAllocator::new(bitmap, 0, frames);
    for r in regions.iter().filter(|r| r.kind == MemoryRegionKind::Usable) {
        alloc.add_usable(r.start, r.end);
    }
    alloc.reserve(bitmap_phys, bitmap_phys + bitmap_bytes);
    alloc.reserve(0, PAGE_SIZE);

    let pml4 = alloc.alloc().expect("out of memory for the PML4");
    // SAFETY: a fresh frame from the allocator, mapped by the bootloader's
    // physical-memory mapping; zeroing it makes a valid empty table.
    unsafe { core::ptr::write_bytes(phys_to_virt(pml4) as *mut u8, 0, PAGE_SIZE as usize) };
    // SAFETY: `pml4` is the empty table just made; it is not live yet.
    let mut new = unsafe { mapper_for(pml4) };

    // 1. Direct map of everything in the memory map (merged), plus the first MiB.
    let dm_flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE | Flags::GLOBAL;
    let mut direct_map = MapStats::default();
    let mut add = |stats: MapStats| {
        direct_map.pages_4k += stats.pages_4k;
        direct_map.pages_2m += stats.pages_2m;
        direct_map.pages_1g += stats.pages_1g;
    };
    let mut start = 0u64;
    let mut end = 0x10_0000u64;
    let mut sorted: [(u64, u64); 128] = [(0, 0); 128];
    let n = regions.len().min(sorted.len());
    for (slot, r) in sorted.iter_mut().zip(regions.iter()) {
        *slot = (r.start & !(PAGE_SIZE - 1), r.end.next_multiple_of(PAGE_SIZE));
    }
    sorted[..n].sort_unstable();
    for &(s, e) in &sorted[..n] {
        if s <= end {
            end = end.max(e);
        } else {
            add(new
                .map_range(phys_to_virt(start), start, end - start, dm_flags, max_page(), &mut alloc)
                .expect("direct map"));
            start = s;
            end = e;
        }
    }
    add(new.map_range(phys_to_virt(start), start, end - start, dm_flags, max_page(), &mut alloc).expect("direct map"));

    // 2. The bootloader's mappings of the kernel image, stack, boot info.
    let (boot_pml4, _) = Cr3::read();
    // SAFETY: the live bootloader tables, only read here, reachable through
    // the bootloader's physical-memory mapping.
    let old = unsafe { mapper_for(boot_pml4.start_address().as_u64()) };
    let keep = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE | Flags::WRITE_THROUGH | Flags::NO_CACHE;
    let first_slot = ((layout::BOOTLOADER_DYNAMIC_START >> 39) & 511) as usize;
    let mut copied = 0;
    old.for_each_leaf(first_slot..512, |leaf: Leaf| {
        new.map_range(leaf.virt, leaf.phys, leaf.size.bytes(), leaf.flags & keep, leaf.size, &mut alloc)
            .expect("copying a bootloader mapping");
        copied += 1;
    });

    // 3. A PDPT for every kernel slot, so task spaces can share them.
    let top = new.level_4_table();
    for slot in KERNEL_PML4_FIRST..512 {
        if top[slot].is_unused() {
            let f = alloc.alloc().expect("out of memory for kernel PDPTs");
            // SAFETY: fresh frame, zeroed to make an empty table.
            unsafe { core::ptr::write_bytes(phys_to_virt(f) as *mut u8, 0, PAGE_SIZE as usize) };
            top[slot].set_addr(PhysAddr::new(f), Flags::PRESENT | Flags::WRITABLE);
        }
    }

    // 4. Switch.
    KERNEL_PML4.store(pml4, Ordering::Relaxed);
    // SAFETY: the new tables map everything the kernel uses right now (its
    // image, stack, boot info, and all RAM at the same direct-map offset).
    unsafe { Cr3::write(PhysFrame::containing_address(PhysAddr::new(pml4)), Cr3Flags::empty()) };
    flush_all();

    // 5. Heap, in 2 MiB pages where possible.
    let heap_flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE | Flags::GLOBAL;
    let mut at = 0;
    while at < HEAP_SIZE {
        let (phys, len, size) = match alloc.alloc_contiguous((HUGE_2M / PAGE_SIZE) as usize, HUGE_2M) {
            Some(p) => (p, HUGE_2M, PageSize::Size2M),
            None => (alloc.alloc().expect("out of memory for the heap"), PAGE_SIZE, PageSize::Size4K),
        };
        // SAFETY: the live kernel tables; boot is single-threaded.
        let mut live = unsafe { mapper_for(pml4) };
        live.map_range(HEAP_BASE + at, phys, len, heap_flags, size, &mut alloc).expect("heap mapping");
        at += len;
    }
    // SAFETY: [HEAP_BASE, +HEAP_SIZE) was just mapped writable and is used by
    // nothing else.
    unsafe { HEAP.0.lock().init(HEAP_BASE as *mut u8, HEAP_SIZE as usize) };
    *FRAMES.lock() = Some(alloc);
    MemInfo { direct_map, copied_leaves: copied, max_phys }
}

/// Carries out a TLB flush.
pub fn flush_tlb(flush: TlbFlush) {
    match flush {
        TlbFlush::None => {}
        TlbFlush::Range { start, end, step } => {
            let mut a = start;
            while a < end {
                x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(a));
                a += step;
            }
        }
        TlbFlush::All => flush_all(),
    }
}

/// Flushes every TLB entry, global ones included.
pub fn flush_all() {
    // SAFETY: toggling CR4.PGE flushes all TLB entries and changes nothing else.
    unsafe {
        Cr4::update(|c| c.remove(Cr4Flags::PAGE_GLOBAL));
        Cr4::update(|c| c.insert(Cr4Flags::PAGE_GLOBAL));
    }
}

/// Runs `f` with the page-table lock, a mapper for the table at `pml4` and
/// the frame allocator, interrupts off.
fn with_tables<R>(pml4: u64, f: impl FnOnce(&mut PageMapper<'static>, &mut BitmapFrameAllocator<'static>) -> R) -> R {
    without_interrupts(|| {
        let _pt = PAGE_TABLES.lock();
        let mut frames = FRAMES.lock();
        let alloc = frames.as_mut().expect("mem::init ran");
        // SAFETY: PAGE_TABLES is held, and `pml4` is the kernel's table or a
        // live AddressSpace's (callers below).
        let mut mapper = unsafe { mapper_for(pml4) };
        f(&mut mapper, alloc)
    })
}

/// Maps `[virt, +len)` to `[phys, +len)` in the kernel half with the largest
/// pages alignment allows.
///
/// # Safety
/// The physical range must be memory or MMIO the caller owns, and `flags`
/// must suit it (e.g. uncached for MMIO).
pub unsafe fn map_kernel(virt: u64, phys: u64, len: u64, flags: Flags, max: PageSize) -> Result<MapStats, MapError> {
    if !layout::is_kernel_half(virt) {
        return Err(MapError::Unaligned);
    }
    with_tables(kernel_pml4(), |m, a| m.map_range(virt, phys, len, flags | Flags::GLOBAL, max, a))
}

/// Unmaps `[virt, +len)` from the kernel half and flushes the TLB.
pub fn unmap_kernel(virt: u64, len: u64) -> Result<(), MapError> {
    let flush = with_tables(kernel_pml4(), |m, _| m.unmap_range(virt, len))?;
    flush_tlb(flush);
    Ok(())
}

/// What the kernel tables map at `virt`.
pub fn translate_kernel(virt: u64) -> Option<Leaf> {
    with_tables(kernel_pml4(), |m, _| m.translate(virt))
}

/// Allocates a zeroed frame.
pub fn alloc_frame() -> Option<u64> {
    let f = without_interrupts(|| FRAMES.lock().as_mut()?.alloc())?;
    // SAFETY: a fresh frame owned by the caller now, reachable in the direct map.
    unsafe { core::ptr::write_bytes(phys_to_virt(f) as *mut u8, 0, PAGE_SIZE as usize) };
    Some(f)
}

/// Frees a frame from [`alloc_frame`].
pub fn free_frame(phys: u64) {
    without_interrupts(|| {
        if let Some(Err(e)) = FRAMES.lock().as_mut().map(|a| a.free(phys)) {
            crate::error!("freeing frame {phys:#x}: {e:?}");
        }
    });
}

/// Allocates `count` contiguous frames aligned to `align` bytes.
pub fn alloc_contiguous(count: usize, align: u64) -> Option<u64> {
    without_interrupts(|| FRAMES.lock().as_mut()?.alloc_contiguous(count, align))
}

/// Frees frames from [`alloc_contiguous`].
pub fn free_contiguous(phys: u64, count: usize) {
    without_interrupts(|| {
        if let Some(Err(e)) = FRAMES.lock().as_mut().map(|a| a.free_contiguous(phys, count)) {
            crate::error!("freeing frames {phys:#x}+{count}: {e:?}");
        }
    });
}

/// Frame counts.
pub fn frame_stats() -> FrameStats {
    without_interrupts(|| FRAMES.lock().as_ref().map(|a| a.stats()).unwrap_or(FrameStats { usable: 0, free: 0 }))
}

static NEXT_MMIO: AtomicU64 = AtomicU64::new(MMIO_BASE);

/// Maps `[phys, +len)` with `flags` into a fresh, never-reused range of the
/// MMIO area (a guard page after each) and returns the virtual address of
/// `phys`. These mappings are permanent.
///
/// # Safety
/// As for [`map_kernel`].
unsafe fn map_permanent(phys: u64, len: u64, flags: Flags) -> u64 {
    let offset = phys & (PAGE_SIZE - 1);
    let span = (len.max(1) + offset).next_multiple_of(PAGE_SIZE);
    let virt = NEXT_MMIO.fetch_add(span + PAGE_SIZE, Ordering::Relaxed);
    // SAFETY: forwarded; the virtual range is fresh.
    unsafe { map_kernel(virt, phys - offset, span, flags, PageSize::Size4K) }.expect("permanent kernel mapping");
    virt + offset
}

/// Maps an MMIO range uncached and returns its virtual address. MMIO
/// mappings are permanent.
pub fn map_mmio(phys: u64, len: u64) -> u64 {
    let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_CACHE | Flags::WRITE_THROUGH | Flags::NO_EXECUTE;
    // SAFETY: MMIO ranges named by firmware or MSRs, mapped uncached.
    unsafe { map_permanent(phys, len, flags) }
}

// ---------------------------------------------------------------- heap

/// The kernel heap: `linked_list_allocator`, locked with interrupts off so a
/// preempted allocation never blocks other tasks. Interrupt handlers never
/// allocate.
struct KernelHeap(Mutex<Heap>);

// SAFETY: allocation and deallocation are delegated to `Heap`, which upholds
// GlobalAlloc's contract, under a lock.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        without_interrupts(|| self.0.lock().allocate_first_fit(layout).map_or(core::ptr::null_mut(), |p| p.as_ptr()))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = core::ptr::NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with `layout`.
            without_interrupts(|| unsafe { self.0.lock().deallocate(p, layout) });
        }
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Mutex::new(Heap::empty()));

/// (used, free) heap bytes.
pub fn heap_stats() -> (usize, usize) {
    without_interrupts(|| {
        let h = HEAP.0.lock();
        (h.used(), h.free())
    })
}

// ---------------------------------------------------------------- stacks

/// Maximum number of kernel stacks (and so tasks).
pub const MAX_STACKS: usize = 256;
static STACK_SLOTS: Mutex<[u64; MAX_STACKS / 64]> = Mutex::new([0; MAX_STACKS / 64]);

/// A kernel stack: `pages` mapped pages below an unmapped guard page, in its
/// own slot of the stack area. Unmapped and freed on drop.
#[derive(Debug)]
pub struct KernelStack {
    slot: usize,
    pages: u64,
}

impl KernelStack {
    /// Allocates a stack of `pages` 4 KiB pages.
    pub fn new(pages: u64) -> Option<KernelStack> {
        assert!(pages * PAGE_SIZE < STACK_SLOT, "stack larger than its slot");
        let slot = without_interrupts(|| {
            let mut slots = STACK_SLOTS.lock();
            let i = (0..MAX_STACKS).find(|&i| slots[i / 64] & (1 << (i % 64)) == 0)?;
            slots[i / 64] |= 1 << (i % 64);
            Some(i)
        })?;
        // `pages` counts what is mapped, so an early return (dropping the
        // stack) unmaps exactly that and frees the slot.
        let mut stack = KernelStack { slot, pages: 0 };
        let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE;
        for i in 0..pages {
            let frame = alloc_frame()?;
            // SAFETY: a fresh frame, mapped into this stack's private slot.
            unsafe { map_kernel(stack.bottom() + i * PAGE_SIZE, frame, PAGE_SIZE, flags, PageSize::Size4K) }
                .expect("stack slot already mapped");
            stack.pages += 1;
        }
        Some(stack)
    }

    /// The guard page `addr` lies in, if it is the guard page of some stack
    /// slot (how a stack overflow shows up in a page or double fault).
    pub fn guard_page_of(addr: u64) -> Option<u64> {
        let in_area = (STACKS_BASE..STACKS_BASE + MAX_STACKS as u64 * STACK_SLOT).contains(&addr);
        (in_area && (addr - STACKS_BASE) % STACK_SLOT < PAGE_SIZE).then_some(addr & !(PAGE_SIZE - 1))
    }

    /// Lowest mapped address (the guard page is just below it).
    pub fn bottom(&self) -> u64 {
        // Slot layout: [guard page][stack pages][unused].
        STACKS_BASE + self.slot as u64 * STACK_SLOT + PAGE_SIZE
    }

    /// One past the highest stack address.
    pub fn top(&self) -> u64 {
        self.bottom() + self.pages * PAGE_SIZE
    }
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        for i in 0..self.pages {
            let va = self.bottom() + i * PAGE_SIZE;
            if let Some(leaf) = translate_kernel(va) {
                if unmap_kernel(va, PAGE_SIZE).is_ok() {
                    free_frame(leaf.phys);
                }
            }
        }
        without_interrupts(|| STACK_SLOTS.lock()[self.slot / 64] &= !(1 << (self.slot % 64)));
    }
}

// ---------------------------------------------------------------- address spaces

/// A task's own address space: a PML4 whose lower half is private and whose
/// upper half shares the kernel's tables. Mappings in the lower half do not
/// own their frames (a DAX mapping's frames belong to the pmem device);
/// dropping the space unmaps them and frees the page tables.
#[derive(Debug)]
pub struct AddressSpace {
    pml4: u64,
}

impl AddressSpace {
    pub fn new() -> Option<AddressSpace> {
        let pml4 = alloc_frame()?;
        let kernel = phys_to_virt(kernel_pml4()) as *const PageTable;
        let new = phys_to_virt(pml4) as *mut PageTable;
        without_interrupts(|| {
            let _pt = PAGE_TABLES.lock();
            // SAFETY: both are valid tables in the direct map; `new` is ours
            // alone; the kernel's upper-half entries never change after boot
            // (every slot got its PDPT in `init`).
            let (kernel, new) = unsafe { (&*kernel, &mut *new) };
            for slot in KERNEL_PML4_FIRST..512 {
                new[slot] = kernel[slot].clone();
            }
        });
        Some(AddressSpace { pml4 })
    }

    /// Physical address of the PML4 (for CR3).
    pub fn pml4(&self) -> u64 {
        self.pml4
    }

    /// Maps a lower-half range into this space.
    ///
    /// # Safety
    /// As for [`map_kernel`]; the frames must outlive the mapping.
    pub unsafe fn map(
        &self,
        virt: u64,
        phys: u64,
        len: u64,
        flags: Flags,
        max: PageSize,
    ) -> Result<MapStats, MapError> {
        if layout::is_kernel_half(virt) || layout::is_kernel_half(virt.saturating_add(len).saturating_sub(1)) {
            return Err(MapError::Unaligned);
        }
        with_tables(self.pml4, |m, a| m.map_range(virt, phys, len, flags, max, a))
    }

    /// Unmaps a lower-half range; flushes the TLB if this space is live.
    pub fn unmap(&self, virt: u64, len: u64) -> Result<(), MapError> {
        let flush = with_tables(self.pml4, |m, _| m.unmap_range(virt, len))?;
        if Cr3::read().0.start_address().as_u64() == self.pml4 {
            flush_tlb(flush);
        }
        Ok(())
    }

    /// What this space maps at `virt`.
    pub fn translate(&self, virt: u64) -> Option<Leaf> {
        with_tables(self.pml4, |m, _| m.translate(virt))
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        with_tables(self.pml4, |m, a| {
            let mut leaves: [Option<Leaf>; 64] = [None; 64];
            loop {
                let mut n = 0;
                m.for_each_leaf(0..KERNEL_PML4_FIRST, |l| {
                    if n < leaves.len() {
                        leaves[n] = Some(l);
                        n += 1;
                    }
                });
                if n == 0 {
                    break;
                }
                for l in leaves[..n].iter().flatten() {
                    let _ = m.unmap_range(l.virt, l.size.bytes());
                }
            }
            // SAFETY: only the private lower half is cleaned.
            unsafe { m.free_empty_tables(0, 1 << 47, a) };
        });
        free_frame(self.pml4);
    }
}

// ---------------------------------------------------------------- console

crate::shell_command!(MEM_CMD, name: "mem", usage: "mem", help: "physical frames free/used, kernel heap", run: |_| {
    let f = frame_stats();
    let (used, free) = heap_stats();
    crate::kprintln!(
        "frames: {} usable ({} MiB), {} used, {} free ({} MiB)",
        f.usable,
        f.usable * 4 / 1024,
        f.used(),
        f.free,
        f.free * 4 / 1024
    );
    crate::kprintln!("heap:   {} KiB used, {} KiB free of {} MiB", used / 1024, free / 1024, HEAP_SIZE >> 20);
});

// ---------------------------------------------------------------- tests

mod tests {
    use fsdax_ktest::{kassert, kassert_eq, ktest};
    use fsdax_mm::paging::{Flags, PageSize};
    use fsdax_mm::{HUGE_1G, HUGE_2M, PAGE_SIZE};

    use super::*;

    /// A scratch kernel-half address for mapping tests (pmem window, which
    /// nothing else uses until pmem regions are mapped).
    const SCRATCH: u64 = fsdax_mm::layout::PMEM_BASE + (3 << 40);

    fn rw() -> Flags {
        Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE
    }

    ktest!(own_page_tables_are_live, {
        let (cr3, _) = Cr3::read();
        kassert_eq!(cr3.start_address().as_u64(), kernel_pml4());
        // The kernel's own code is mapped by the new tables.
        let here = super::kernel_pml4 as *const () as u64;
        kassert!(translate_kernel(here).is_some());
        kassert!(translate_kernel(phys_to_virt(0x10_0000)).is_some(), "direct map");
        Ok(())
    });

    ktest!(map_4k_read_write_unmap, {
        let frame = alloc_frame().ok_or(fsdax_ktest::Failure { file: file!(), line: line!(), message: "no frame" })?;
        // SAFETY: a fresh frame owned by this test, mapped at a scratch
        // address nothing else uses.
        unsafe { map_kernel(SCRATCH, frame, PAGE_SIZE, rw(), PageSize::Size4K) }.map_err(|_| fail("map"))?;
        // SAFETY: just mapped, 4 KiB, writable.
        unsafe { (SCRATCH as *mut u64).write_volatile(0xfeed_f00d) };
        // SAFETY: the same frame through the direct map.
        let via_direct = unsafe { (phys_to_virt(frame) as *const u64).read_volatile() };
        kassert_eq!(via_direct, 0xfeed_f00d);
        unmap_kernel(SCRATCH, PAGE_SIZE).map_err(|_| fail("unmap"))?;
        kassert!(translate_kernel(SCRATCH).is_none());
        free_frame(frame);
        Ok(())
    });

    ktest!(map_2m_and_1g_pages, {
        // A 2 MiB page of RAM.
        let phys = alloc_contiguous(512, HUGE_2M).ok_or(fail("no 2 MiB run"))?;
        // SAFETY: frames owned by this test, scratch virtual range.
        let s = unsafe { map_kernel(SCRATCH, phys, HUGE_2M, rw(), PageSize::Size1G) }.map_err(|_| fail("map 2M"))?;
        kassert_eq!(s.pages_2m, 1);
        // SAFETY: mapped and owned (see above).
        unsafe { ((SCRATCH + HUGE_2M - 8) as *mut u64).write_volatile(42) };
        // SAFETY: same memory through the direct map.
        kassert_eq!(unsafe { (phys_to_virt(phys + HUGE_2M - 8) as *const u64).read_volatile() }, 42);
        kassert_eq!(translate_kernel(SCRATCH + 4096).map(|l| l.size), Some(PageSize::Size2M));
        unmap_kernel(SCRATCH, HUGE_2M).map_err(|_| fail("unmap 2M"))?;
        free_contiguous(phys, 512);
        let scratch_1g = SCRATCH + HUGE_1G;
        // A 1 GiB page (in another 1 GiB slot: the 2 MiB test left a page
        // directory under SCRATCH), mapped over physical address 0 (RAM in the first GiB)
        // read-only: we only compare it with the direct map.
        let ro = Flags::PRESENT | Flags::NO_EXECUTE;
        // SAFETY: read-only alias of low RAM, removed before returning.
        let s = unsafe { map_kernel(scratch_1g, 0, HUGE_1G, ro, PageSize::Size1G) }.map_err(|_| fail("map 1G"))?;
        if crate::arch::cpu::features().pdpe1gb {
            kassert_eq!(s.pages_1g, 1);
        }
        let probe = kernel_pml4();
        // SAFETY: both addresses map the PML4's frame, readable.
        let (a, b) = unsafe {
            ((scratch_1g + probe) as *const u64).read_volatile();
            (((scratch_1g + probe) as *const u64).read_volatile(), (phys_to_virt(probe) as *const u64).read_volatile())
        };
        kassert_eq!(a, b);
        unmap_kernel(scratch_1g, HUGE_1G).map_err(|_| fail("unmap 1G"))?;
        kassert!(translate_kernel(scratch_1g).is_none());
        Ok(())
    });

    ktest!(frames_are_returned, {
        let before = frame_stats().free;
        let f: alloc::vec::Vec<u64> = (0..32).filter_map(|_| alloc_frame()).collect();
        kassert_eq!(f.len(), 32);
        kassert_eq!(frame_stats().free, before - 32);
        for x in f {
            free_frame(x);
        }
        kassert_eq!(frame_stats().free, before);
        Ok(())
    });

    ktest!(heap_allocates_and_frees, {
        let (used0, _) = heap_stats();
        let v: alloc::vec::Vec<u64> = (0..100_000).collect();
        kassert_eq!(v.iter().sum::<u64>(), 100_000 * 99_999 / 2);
        kassert!(heap_stats().0 >= used0 + 800_000);
        drop(v);
        kassert!(heap_stats().0 < used0 + 800_000);
        Ok(())
    });

    ktest!(address_spaces_are_private, {
        let a = AddressSpace::new().ok_or(fail("space a"))?;
        let b = AddressSpace::new().ok_or(fail("space b"))?;
        let frame = alloc_frame().ok_or(fail("frame"))?;
        // SAFETY: a frame owned by this test, mapped into a private space.
        unsafe { a.map(0x4000_0000, frame, PAGE_SIZE, rw(), PageSize::Size4K) }.map_err(|_| fail("map"))?;
        kassert_eq!(a.translate(0x4000_0000).map(|l| l.phys), Some(frame));
        kassert!(b.translate(0x4000_0000).is_none(), "b sees a's mapping");
        kassert!(translate_kernel(0x4000_0000).is_none(), "kernel sees a's mapping");
        a.unmap(0x4000_0000, PAGE_SIZE).map_err(|_| fail("unmap"))?;
        kassert!(a.translate(0x4000_0000).is_none());
        // SAFETY: as above, mapped again to check the space frees its tables.
        unsafe { a.map(0x4000_0000, frame, PAGE_SIZE, rw(), PageSize::Size4K) }.map_err(|_| fail("map again"))?;
        // Both share the kernel half.
        let here = super::kernel_pml4 as *const () as u64;
        kassert_eq!(a.translate(here), translate_kernel(here));
        let before = frame_stats().free;
        drop(a);
        kassert!(frame_stats().free > before, "dropping a space frees its tables");
        free_frame(frame);
        Ok(())
    });

    fn fail(message: &'static str) -> fsdax_ktest::Failure {
        fsdax_ktest::Failure { file: file!(), line: line!(), message }
    }
}

/// A readable virtual address for `[phys, +len)`: the direct map if it covers
/// the range, otherwise a fresh permanent read-only mapping (firmware tables
/// outside the memory map).
pub fn phys_readable(phys: u64, len: u64) -> u64 {
    let covered = |p: u64| translate_kernel(phys_to_virt(p)).is_some();
    let last = phys + len.max(1) - 1;
    if covered(phys) && covered(last & !(PAGE_SIZE - 1)) {
        return phys_to_virt(phys);
    }
    // SAFETY: a read-only, non-executable view of firmware memory.
    unsafe { map_permanent(phys, len, Flags::PRESENT | Flags::NO_EXECUTE) }
}
