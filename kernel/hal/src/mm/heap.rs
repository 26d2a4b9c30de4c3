//! The kernel heap: `linked_list_allocator` over a large reserved virtual
//! window ([`HEAP_BASE`], [`HEAP_WINDOW`]) of which only the first part is
//! mapped at boot. When an allocation does not fit, the heap maps more RAM
//! at its top (2 MiB pages where the frame allocator has aligned runs, 4 KiB
//! frames otherwise), extends itself and retries; when RAM runs out the
//! allocation fails (null), which `try_reserve`-style callers see as an
//! error. The heap never shrinks.
//!
//! Locked with interrupts off ([`IrqMutex`]); interrupt handlers never
//! allocate. Lock order: heap -> page tables -> frames.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use fsdax_mm::layout::{HEAP_BASE, HEAP_WINDOW};
use fsdax_mm::paging::{Flags, PageSize};
use fsdax_mm::{HUGE_2M, PAGE_SIZE};
use linked_list_allocator::Heap;

use super::{map_kernel, FRAMES};
use crate::sync::IrqMutex;

/// Mapped at boot.
const INITIAL: u64 = 8 << 20;
/// The smallest growth step.
const MIN_GROWTH: u64 = 4 << 20;
/// RAM the heap leaves to the frame allocator's other users.
const RESERVE: u64 = 4 << 20;

struct KernelHeap(IrqMutex<Heap>);

/// The most bytes allocated at once since boot or the last
/// [`take_heap_peak`] (a high-water mark, updated under the heap lock).
static PEAK: AtomicUsize = AtomicUsize::new(0);

static HEAP_FLAGS: Flags = Flags::PRESENT.union(Flags::WRITABLE).union(Flags::NO_EXECUTE).union(Flags::GLOBAL);

/// Maps up to `len` bytes (a multiple of 4 KiB) of fresh RAM at `virt`;
/// returns how many bytes it mapped (less when RAM runs out).
fn map_ram(virt: u64, len: u64) -> u64 {
    let mut done = 0;
    while done < len {
        let aligned = (virt + done).is_multiple_of(HUGE_2M) && len - done >= HUGE_2M;
        let run = if aligned {
            FRAMES.lock().as_mut().and_then(|a| a.alloc_contiguous((HUGE_2M / PAGE_SIZE) as usize, HUGE_2M))
        } else {
            None
        };
        let (phys, size, step) = match run {
            Some(p) => (p, PageSize::Size2M, HUGE_2M),
            None => match FRAMES.lock().as_mut().and_then(|a| a.alloc()) {
                Some(p) => (p, PageSize::Size4K, PAGE_SIZE),
                None => break,
            },
        };
        // SAFETY: fresh frames from the allocator, owned by the heap from now
        // on, mapped at the heap window's top, which nothing else uses.
        if unsafe { map_kernel(virt + done, phys, step, HEAP_FLAGS, size) }.is_err() {
            // The window slot was already mapped: an internal error; give
            // the frames back and stop growing.
            let mut frames = FRAMES.lock();
            if let Some(a) = frames.as_mut() {
                let _ = a.free_contiguous(phys, (step / PAGE_SIZE) as usize);
            }
            break;
        }
        done += step;
    }
    done
}

/// Maps the first chunk and hands it to the allocator. Returns its size.
pub(super) fn init() -> u64 {
    let mapped = map_ram(HEAP_BASE, INITIAL);
    assert!(mapped >= PAGE_SIZE * 16, "out of memory for the kernel heap");
    // SAFETY: [HEAP_BASE, +mapped) was just mapped writable and is used by
    // nothing else; the heap owns it for the rest of the run.
    unsafe { HEAP.0.lock().init(HEAP_BASE as *mut u8, mapped as usize) };
    mapped
}

/// Grows the locked heap by at least `need` bytes. False if no RAM (or no
/// window) is left.
fn grow(heap: &mut Heap, need: usize) -> bool {
    let size = heap.size() as u64;
    let want = (need as u64).saturating_add(PAGE_SIZE).max(MIN_GROWTH).next_multiple_of(HUGE_2M);
    let room = HEAP_WINDOW.saturating_sub(size);
    let want = want.min(room);
    // Fail fast (without taking RAM others need) when the frames are not
    // there: keep a reserve for page tables and kernel stacks.
    let free = FRAMES.lock().as_ref().map_or(0, |a| a.stats().free as u64 * PAGE_SIZE);
    if want == 0 || want.saturating_add(RESERVE) > free {
        return false;
    }
    let top = HEAP_BASE + size;
    let got = map_ram(top, want);
    if got == 0 {
        return false;
    }
    // SAFETY: [top, top + got) was just mapped writable, directly after the
    // heap's current top, and belongs to the heap from now on.
    unsafe { heap.extend(got as usize) };
    true
}

// SAFETY: allocation and deallocation are delegated to `Heap`, which upholds
// GlobalAlloc's contract, under a lock; growing only adds memory at the top.
unsafe impl GlobalAlloc for KernelHeap {
    /// # Safety
    /// `GlobalAlloc::alloc`'s contract: `layout` has a non-zero size.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut heap = self.0.lock();
        loop {
            if let Ok(p) = heap.allocate_first_fit(layout) {
                PEAK.fetch_max(heap.used(), Ordering::Relaxed);
                return p.as_ptr();
            }
            if !grow(&mut heap, layout.size() + layout.align()) {
                return core::ptr::null_mut();
            }
        }
    }

    /// # Safety
    /// `GlobalAlloc::dealloc`'s contract: `ptr` came from `alloc` with
    /// `layout` and is not used again.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with
            // `layout`.
            unsafe { self.0.lock().deallocate(p, layout) };
        }
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(IrqMutex::new(Heap::empty()));

/// Heap counters, for `mem`.
#[derive(Debug, Clone, Copy)]
pub struct HeapStats {
    /// Bytes allocated.
    pub used: usize,
    /// Bytes mapped but free.
    pub free: usize,
    /// Bytes mapped (grows on demand).
    pub size: usize,
    /// The reserved virtual window the heap can grow into.
    pub window: u64,
    /// Bytes the heap could still provide: its free bytes plus the RAM it
    /// could grow into (free frames less the reserve it leaves for page
    /// tables and stacks, within its window). Free bytes may be split into
    /// pieces; a large allocation that fits in none grows the heap.
    pub available: u64,
}

/// Heap counters now.
pub fn heap_stats() -> HeapStats {
    let h = HEAP.0.lock();
    let (used, free, size) = (h.used(), h.free(), h.size());
    // Lock order: heap, then frames.
    let frames = FRAMES.lock().as_ref().map_or(0, |a| a.stats().free as u64 * PAGE_SIZE);
    // Growth comes in steps of at least MIN_GROWTH, and 4 KiB pages (where
    // no aligned 2 MiB run is left) need page tables: count neither.
    let growable =
        frames.saturating_sub(RESERVE + MIN_GROWTH + frames / 512).min(HEAP_WINDOW.saturating_sub(size as u64));
    HeapStats { used, free, size, window: HEAP_WINDOW, available: free as u64 + growable }
}

/// The most bytes that were allocated at once since boot or the previous
/// call; starts the next period at the current use.
pub fn take_heap_peak() -> usize {
    let h = HEAP.0.lock();
    PEAK.swap(h.used(), Ordering::Relaxed)
}
