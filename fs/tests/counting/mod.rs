//! A counting global allocator: live heap bytes and their peak, per thread,
//! so that tests running in parallel do not see each other's allocations.
//! Counts requested sizes (what `Layout` asks for), like the estimate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts every allocation of the thread that makes it.
pub struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    // `try_with`: the thread's counters may be gone while it exits.
    let _ = LIVE.try_with(|l| {
        let v = l.get() + n;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

// SAFETY: forwards to the system allocator unchanged; only counts bytes in
// const-initialised thread locals (which never allocate).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `l`.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract for `l`.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        add(-(l.size() as isize));
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract: `p`
        // came from this allocator with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    // `realloc` is the trait's default: alloc, copy, dealloc, so the peak
    // sees the old and the new block together, as a kernel heap without
    // in-place growth does.
}

/// Heap bytes the current thread holds now.
pub fn live() -> isize {
    LIVE.with(|l| l.get())
}

/// Runs `f` and returns its result with (bytes still held after it, the
/// most bytes held above the starting point while it ran).
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, isize, isize) {
    let start = live();
    PEAK.with(|p| p.set(start));
    let r = f();
    let peak = PEAK.with(|p| p.get());
    (r, live() - start, peak - start)
}
