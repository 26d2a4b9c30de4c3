//! Kernel memory: the frame allocator, the kernel's own page tables, the
//! growable heap, kernel stacks, task address spaces, the persistent-memory
//! DAX mapping and MMIO.
//!
//! At boot the hal builds a fresh PML4: a direct map of every range in the
//! memory map (largest pages that fit), the bootloader's mappings of the
//! kernel image, boot stack and boot info copied leaf by leaf, and a
//! page-directory-pointer table for every upper-half slot so that task
//! address spaces can share the kernel half. Then it switches CR3 and never
//! touches the bootloader's tables again.
//!
//! Locks, outer first: heap -> page tables -> frames (all [`IrqMutex`]es).
//! Nothing inside the page-table or frame locks allocates from the heap.

mod frame;
mod heap;
mod pmem;
mod space;
mod stack;
mod tests;

use core::sync::atomic::{AtomicU64, Ordering};

use bootloader_api::info::MemoryRegionKind;
use bootloader_api::BootInfo;
use fsdax_mm::frame::{BitmapFrameAllocator, FrameStats};
use fsdax_mm::layout::{self, KERNEL_PML4_FIRST, MMIO_BASE, PHYS_OFFSET};
use fsdax_mm::paging::{Flags, Leaf, MapError, MapStats, PageMapper, PageSize, TlbFlush};
use fsdax_mm::{HUGE_2M, PAGE_SIZE};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::{PageTable, PhysFrame};
use x86_64::PhysAddr;

pub use self::frame::Frame;
pub use self::heap::{heap_stats, take_heap_peak, HeapStats};
pub use self::pmem::{discover_pmem, PmemAccessError, PmemDiscovery, PmemRegion, RangeProblem, UserCopyError};
pub use self::space::{
    pinned_pages, pins_in, register_pins_idle_hook, AddressSpace, LeafKind, NotMapped, PmemPin, Unmap,
};
pub use self::stack::{KernelStack, MAX_STACKS};
use crate::arch::cpu::{self, Features};
use crate::sync::IrqMutex;

static FRAMES: IrqMutex<Option<BitmapFrameAllocator<'static>>> = IrqMutex::new(None);
/// Serialises every page-table change (kernel half and task spaces).
static PAGE_TABLES: IrqMutex<()> = IrqMutex::new(());
static KERNEL_PML4: AtomicU64 = AtomicU64::new(0);
static MAX_PAGE: AtomicU64 = AtomicU64::new(HUGE_2M);
/// The usable RAM ranges of the memory map (for checking that firmware's
/// persistent-memory ranges are not RAM).
static USABLE: spin::Once<([(u64, u64); 64], usize)> = spin::Once::new();

/// The virtual address of physical address `phys` in the direct map.
fn phys_to_virt(phys: u64) -> u64 {
    PHYS_OFFSET + phys
}

/// Physical address of the kernel's PML4.
pub(crate) fn kernel_pml4() -> u64 {
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
/// `pml4` must be the physical address of a live page table reachable
/// through the direct map, and the caller must have exclusive use of the
/// tables for the mapper's lifetime (`PAGE_TABLES` held, or boot).
unsafe fn mapper_for(pml4: u64) -> PageMapper<'static> {
    // SAFETY: the caller guarantees `pml4` is a live level-4 table and that
    // it has exclusive use of the tables; every table it refers to is RAM,
    // which the direct map covers at PHYS_OFFSET.
    unsafe { PageMapper::new(&mut *(phys_to_virt(pml4) as *mut PageTable), PHYS_OFFSET) }
}

/// Zeroes a frame through the direct map.
///
/// # Safety
/// The frame must be RAM owned by the caller, with no other user.
unsafe fn zero_frame(phys: u64) {
    // SAFETY: the caller owns the frame (RAM, no other user); the direct map
    // covers all RAM, so the 4 KiB at its direct-map address are writable.
    unsafe { core::ptr::write_bytes(phys_to_virt(phys) as *mut u8, 0, PAGE_SIZE as usize) };
}

/// What `init` set up, for the boot log and `mem`.
#[derive(Debug, Clone, Copy)]
pub struct MemInfo {
    /// Pages of the direct map.
    pub direct_map: MapStats,
    /// Bootloader leaf mappings copied into the kernel's tables.
    pub copied_leaves: usize,
    /// One past the highest physical address of the memory map.
    pub max_phys: u64,
    /// The heap's initial size in bytes.
    pub heap_initial: u64,
}

/// Builds the frame allocator, the kernel's page tables and the heap.
///
/// Relies on the bootloader's physical-memory mapping at [`PHYS_OFFSET`]
/// (requested in the boot config) until the switch; the new direct map has
/// the same offset, so physical addresses stay valid across it.
pub(crate) fn init(boot: &BootInfo, features: &Features) -> MemInfo {
    if features.pdpe1gb {
        MAX_PAGE.store(fsdax_mm::HUGE_1G, Ordering::Relaxed);
    }
    let regions = &boot.memory_regions;
    USABLE.call_once(|| {
        let mut list = [(0, 0); 64];
        let mut n = 0;
        for r in regions.iter().filter(|r| r.kind == MemoryRegionKind::Usable) {
            if n < list.len() {
                list[n] = (r.start, r.end);
                n += 1;
            }
        }
        (list, n)
    });
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
    // SAFETY: a fresh frame from the allocator, nobody else's.
    unsafe { zero_frame(pml4) };
    // SAFETY: `pml4` is the empty table just made; it is not live yet and
    // boot is single-threaded.
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
    // SAFETY: the live bootloader tables, only read here (boot is
    // single-threaded), reachable through the bootloader's physical-memory
    // mapping.
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
            // SAFETY: a fresh frame, nobody else's; zeroed it is an empty table.
            unsafe { zero_frame(f) };
            top[slot].set_addr(PhysAddr::new(f), Flags::PRESENT | Flags::WRITABLE);
        }
    }

    // 4. Switch.
    KERNEL_PML4.store(pml4, Ordering::Relaxed);
    // SAFETY: the new tables map everything the kernel uses right now (its
    // image, stack, boot info, and all RAM at the same direct-map offset).
    unsafe { Cr3::write(PhysFrame::containing_address(PhysAddr::new(pml4)), Cr3Flags::empty()) };
    cpu::flush_tlb_all();
    *FRAMES.lock() = Some(alloc);

    // 5. The heap's first chunk.
    let heap_initial = heap::init();
    MemInfo { direct_map, copied_leaves: copied, max_phys, heap_initial }
}

/// Carries out a TLB flush.
fn flush_tlb(flush: TlbFlush) {
    match flush {
        TlbFlush::None => {}
        TlbFlush::Range { start, end, step } => {
            let mut a = start;
            while a < end {
                cpu::flush_tlb_page(a);
                a += step;
            }
        }
        TlbFlush::All => cpu::flush_tlb_all(),
    }
}

/// Runs `f` with the page-table lock, a mapper for the table at `pml4` and
/// the frame allocator. `f` must not allocate from the heap.
///
/// # Safety
/// `pml4` must be the kernel's table or the table of a live
/// [`AddressSpace`].
unsafe fn with_tables<R>(
    pml4: u64,
    f: impl FnOnce(&mut PageMapper<'static>, &mut BitmapFrameAllocator<'static>) -> R,
) -> R {
    let _pt = PAGE_TABLES.lock();
    let mut frames = FRAMES.lock();
    let alloc = frames.as_mut().expect("mm::init ran");
    // SAFETY: PAGE_TABLES is held (exclusive use of every table), and
    // `pml4` is a live table (this function's contract).
    let mut mapper = unsafe { mapper_for(pml4) };
    f(&mut mapper, alloc)
}

/// Maps `[virt, +len)` to `[phys, +len)` in the kernel half with the largest
/// pages alignment allows (global mappings).
///
/// # Safety
/// The physical range must be memory or MMIO the caller owns, `flags` must
/// suit it (e.g. uncached for MMIO), and the virtual range must be one the
/// caller reserved.
pub(crate) unsafe fn map_kernel(
    virt: u64,
    phys: u64,
    len: u64,
    flags: Flags,
    max: PageSize,
) -> Result<MapStats, MapError> {
    if !layout::is_kernel_half(virt) {
        return Err(MapError::Unaligned);
    }
    // SAFETY: the kernel's own table is always live.
    unsafe { with_tables(kernel_pml4(), |m, a| m.map_range(virt, phys, len, flags | Flags::GLOBAL, max, a)) }
}

/// Unmaps `[virt, +len)` from the kernel half and flushes the TLB.
///
/// # Safety
/// Nothing may use the range any more (the caller owns the mapping).
pub(crate) unsafe fn unmap_kernel(virt: u64, len: u64) -> Result<(), MapError> {
    // SAFETY: the kernel's own table is always live.
    let flush = unsafe { with_tables(kernel_pml4(), |m, _| m.unmap_range(virt, len)) }?;
    flush_tlb(flush);
    Ok(())
}

/// What the kernel tables map at `virt`.
pub fn translate_kernel(virt: u64) -> Option<Leaf> {
    // SAFETY: the kernel's own table is always live.
    unsafe { with_tables(kernel_pml4(), |m, _| m.translate(virt)) }
}

/// What the current address space (CR3) maps at `virt`.
pub fn translate_current(virt: u64) -> Option<Leaf> {
    let _pt = PAGE_TABLES.lock();
    let cr3 = Cr3::read().0.start_address().as_u64();
    // SAFETY: CR3 holds a live table (the running task's space, or the
    // kernel's); PAGE_TABLES is held; the mapper is only read.
    let mapper = unsafe { mapper_for(cr3) };
    mapper.translate(virt)
}

/// Allocates a zeroed frame.
fn alloc_frame() -> Option<u64> {
    let f = FRAMES.lock().as_mut()?.alloc()?;
    // SAFETY: a fresh frame from the allocator: ours alone.
    unsafe { zero_frame(f) };
    Some(f)
}

/// Frees a frame from [`alloc_frame`] (errors are reported, not fatal).
fn free_frame(phys: u64) {
    if let Some(Err(_)) = FRAMES.lock().as_mut().map(|a| a.free(phys)) {
        crate::console::emergency(format_args!("mm: freeing frame {phys:#x}: not allocated\n"));
    }
}

/// Frame counts.
pub fn frame_stats() -> FrameStats {
    FRAMES.lock().as_ref().map(|a| a.stats()).unwrap_or(FrameStats { usable: 0, free: 0 })
}

/// Whether `[phys, phys + len)` overlaps usable RAM from the memory map.
pub(crate) fn overlaps_ram(phys: u64, len: u64) -> bool {
    let end = phys.saturating_add(len);
    USABLE.get().is_some_and(|(list, n)| list[..*n].iter().any(|&(s, e)| s < end && phys < e))
}

static NEXT_MMIO: AtomicU64 = AtomicU64::new(MMIO_BASE);

/// Maps `[phys, +len)` with `flags` into a fresh, never-reused range of the
/// MMIO area (a guard page after each) and returns the virtual address of
/// `phys`. These mappings are permanent.
///
/// # Safety
/// The physical range must be device memory or firmware memory that no
/// allocator hands out, and `flags` must suit it.
unsafe fn map_permanent(phys: u64, len: u64, flags: Flags) -> u64 {
    let offset = phys & (PAGE_SIZE - 1);
    let span = (len.max(1) + offset).next_multiple_of(PAGE_SIZE);
    let virt = NEXT_MMIO.fetch_add(span + PAGE_SIZE, Ordering::Relaxed);
    // SAFETY: the caller guarantees the physical range is device or firmware
    // memory no allocator hands out and that `flags` suit it; the virtual
    // range is fresh (NEXT_MMIO only grows), so nothing else maps it.
    unsafe { map_kernel(virt, phys - offset, span, flags, PageSize::Size4K) }.expect("permanent kernel mapping");
    virt + offset
}

/// Maps an MMIO range uncached and returns its virtual address. Permanent.
/// Only hal drivers use it, for register pages they know (the local APIC).
pub(crate) fn map_mmio(phys: u64, len: u64) -> u64 {
    let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_CACHE | Flags::WRITE_THROUGH | Flags::NO_EXECUTE;
    // SAFETY: callers pass register pages named by the hardware (MSRs),
    // which are not RAM; uncached is right for them.
    unsafe { map_permanent(phys, len, flags) }
}

/// A readable virtual address for firmware memory `[phys, +len)`: the
/// direct map if it covers the range, otherwise a fresh permanent read-only
/// mapping (firmware tables outside the memory map).
pub(crate) fn firmware_readable(phys: u64, len: u64) -> u64 {
    let covered = |p: u64| translate_kernel(phys_to_virt(p)).is_some();
    let last = phys + len.max(1) - 1;
    if covered(phys) && covered(last & !(PAGE_SIZE - 1)) {
        return phys_to_virt(phys);
    }
    // SAFETY: a read-only, non-executable view of firmware memory: reading
    // it changes nothing, and no allocator hands it out.
    unsafe { map_permanent(phys, len, Flags::PRESENT | Flags::NO_EXECUTE) }
}
