//! The physical frame allocator: one bit per 4 KiB frame.
//!
//! Built once from the boot memory map: every frame starts *used*, usable
//! regions are then released, and the frames holding the bitmap itself are
//! reserved again. A bitmap (rather than a free list threaded through free
//! frames) keeps `free`/`used` counts exact, catches double frees, and can
//! hand out physically contiguous, aligned runs (task stacks, 2 MiB pages).
//! Persistent-memory ranges are never added: they are not in the memory map
//! and are owned by the pmem driver.

use x86_64::structures::paging::{FrameAllocator as X86FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};
use x86_64::PhysAddr;

use crate::PAGE_SIZE;

/// Errors of the frame allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The address is not 4 KiB aligned or not covered by the allocator.
    NotManaged(u64),
    /// The frame was already free.
    DoubleFree(u64),
}

/// Frame counts for `mem`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames ever released as usable.
    pub usable: usize,
    /// Frames free now.
    pub free: usize,
}

impl FrameStats {
    pub fn used(&self) -> usize {
        self.usable - self.free
    }
}

/// A bitmap allocator over the physical span `[base, base + frames * 4 KiB)`.
#[derive(Debug)]
pub struct BitmapFrameAllocator<'a> {
    base: u64,
    frames: usize,
    /// Bit set = frame in use (or not usable at all).
    bitmap: &'a mut [u64],
    usable: usize,
    free: usize,
    /// Where the next single-frame search starts.
    hint: usize,
}

impl<'a> BitmapFrameAllocator<'a> {
    /// Bitmap words needed to cover `frames` frames.
    pub const fn words_for(frames: usize) -> usize {
        frames.div_ceil(64)
    }

    /// An allocator over `frames` frames starting at `base` (4 KiB aligned)
    /// whose frames are all in use until [`Self::add_usable`] releases them.
    /// `bitmap` must have at least [`Self::words_for`]`(frames)` words.
    pub fn new(bitmap: &'a mut [u64], base: u64, frames: usize) -> Self {
        assert!(base.is_multiple_of(PAGE_SIZE), "frame allocator base must be page aligned");
        assert!(bitmap.len() >= Self::words_for(frames), "bitmap too small");
        bitmap.fill(u64::MAX);
        BitmapFrameAllocator { base, frames, bitmap, usable: 0, free: 0, hint: 0 }
    }

    fn index(&self, addr: u64) -> Option<usize> {
        if !addr.is_multiple_of(PAGE_SIZE) || addr < self.base {
            return None;
        }
        let i = usize::try_from((addr - self.base) / PAGE_SIZE).ok()?;
        (i < self.frames).then_some(i)
    }

    fn is_used(&self, i: usize) -> bool {
        self.bitmap[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, used: bool) {
        if used {
            self.bitmap[i / 64] |= 1 << (i % 64);
        } else {
            self.bitmap[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Whole frames inside `[start, end)` clipped to the managed span.
    fn frame_span(&self, start: u64, end: u64) -> core::ops::Range<usize> {
        let lo = start.max(self.base).next_multiple_of(PAGE_SIZE);
        let span_end = self.base + self.frames as u64 * PAGE_SIZE;
        let hi = end.min(span_end) & !(PAGE_SIZE - 1);
        if hi <= lo {
            return 0..0;
        }
        ((lo - self.base) / PAGE_SIZE) as usize..((hi - self.base) / PAGE_SIZE) as usize
    }

    /// Releases the whole frames in `[start, end)` as usable memory.
    pub fn add_usable(&mut self, start: u64, end: u64) {
        for i in self.frame_span(start, end) {
            if self.is_used(i) {
                self.set(i, false);
                self.usable += 1;
                self.free += 1;
            }
        }
    }

    /// Marks the frames touching `[start, end)` as in use (e.g. the bitmap's
    /// own frames, or frames the bootloader handed over still in use).
    pub fn reserve(&mut self, start: u64, end: u64) {
        let lo = start & !(PAGE_SIZE - 1);
        let hi = end.next_multiple_of(PAGE_SIZE);
        for i in self.frame_span(lo, hi) {
            if !self.is_used(i) {
                self.set(i, true);
                self.free -= 1;
            }
        }
    }

    /// Allocates one frame; returns its physical address.
    pub fn alloc(&mut self) -> Option<u64> {
        let words = Self::words_for(self.frames);
        let start_word = self.hint / 64;
        for k in 0..words {
            let w = (start_word + k) % words;
            let word = self.bitmap[w];
            if word == u64::MAX {
                continue;
            }
            let i = w * 64 + (!word).trailing_zeros() as usize;
            if i >= self.frames {
                continue;
            }
            self.set(i, true);
            self.free -= 1;
            self.hint = i + 1;
            return Some(self.base + i as u64 * PAGE_SIZE);
        }
        None
    }

    /// Allocates `count` physically contiguous frames whose first physical
    /// address is aligned to `align` bytes (a power of two, >= 4 KiB).
    pub fn alloc_contiguous(&mut self, count: usize, align: u64) -> Option<u64> {
        if count == 0 || !align.is_power_of_two() || align < PAGE_SIZE {
            return None;
        }
        let mut addr = self.base.next_multiple_of(align);
        let end = self.base + self.frames as u64 * PAGE_SIZE;
        let len = count as u64 * PAGE_SIZE;
        while addr.checked_add(len)? <= end {
            let first = ((addr - self.base) / PAGE_SIZE) as usize;
            match (first..first + count).rev().find(|&i| self.is_used(i)) {
                None => {
                    for i in first..first + count {
                        self.set(i, true);
                    }
                    self.free -= count;
                    return Some(addr);
                }
                // Skip past the used frame, to the next aligned start.
                Some(used) => {
                    addr = (self.base + (used as u64 + 1) * PAGE_SIZE).next_multiple_of(align);
                }
            }
        }
        None
    }

    /// Frees one frame.
    pub fn free(&mut self, addr: u64) -> Result<(), FrameError> {
        let i = self.index(addr).ok_or(FrameError::NotManaged(addr))?;
        if !self.is_used(i) {
            return Err(FrameError::DoubleFree(addr));
        }
        self.set(i, false);
        self.free += 1;
        if i < self.hint {
            self.hint = i;
        }
        Ok(())
    }

    /// Frees `count` contiguous frames starting at `addr`.
    pub fn free_contiguous(&mut self, addr: u64, count: usize) -> Result<(), FrameError> {
        for k in 0..count as u64 {
            self.free(addr + k * PAGE_SIZE)?;
        }
        Ok(())
    }

    pub fn stats(&self) -> FrameStats {
        FrameStats { usable: self.usable, free: self.free }
    }
}

// SAFETY: `alloc` only returns frames whose bit was clear, i.e. usable and
// not handed out since, and sets the bit before returning.
unsafe impl X86FrameAllocator<Size4KiB> for BitmapFrameAllocator<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        self.alloc().map(|a| PhysFrame::containing_address(PhysAddr::new(a)))
    }
}

impl FrameDeallocator<Size4KiB> for BitmapFrameAllocator<'_> {
    /// # Safety
    /// `FrameDeallocator`'s contract: the frame came from this allocator and
    /// is no longer used.
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
        // A frame this allocator never gave out is a caller bug; ignoring it
        // is safer than corrupting the counts.
        let _ = self.free(frame.start_address().as_u64());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn allocator(frames: usize) -> BitmapFrameAllocator<'static> {
        let words = BitmapFrameAllocator::words_for(frames);
        let bitmap = Box::leak(vec![0u64; words].into_boxed_slice());
        BitmapFrameAllocator::new(bitmap, 0x10_0000, frames)
    }

    #[test]
    fn only_usable_frames_are_handed_out() {
        let mut a = allocator(100);
        assert_eq!(a.alloc(), None, "nothing usable yet");
        // Partial frames at both ends are not usable.
        a.add_usable(0x10_0000 + 0x800, 0x10_0000 + 4 * PAGE_SIZE + 0x10);
        assert_eq!(a.stats(), FrameStats { usable: 3, free: 3 });
        let got: BTreeSet<u64> = (0..3).map(|_| a.alloc().unwrap()).collect();
        let want: BTreeSet<u64> = (1..4).map(|i| 0x10_0000 + i * PAGE_SIZE).collect();
        assert_eq!(got, want);
        assert_eq!(a.alloc(), None);
        assert_eq!(a.stats().used(), 3);
    }

    #[test]
    fn reserve_and_double_free() {
        let mut a = allocator(64);
        a.add_usable(0, u64::MAX);
        assert_eq!(a.stats().usable, 64);
        a.reserve(0x10_0000, 0x10_0001); // touches frame 0
        assert_eq!(a.stats().free, 63);
        assert_eq!(a.free(0x10_0000), Ok(()));
        assert_eq!(a.free(0x10_0000), Err(FrameError::DoubleFree(0x10_0000)));
        assert_eq!(a.free(0x10_0010), Err(FrameError::NotManaged(0x10_0010)));
        assert_eq!(a.free(0x20_0000_0000), Err(FrameError::NotManaged(0x20_0000_0000)));
    }

    #[test]
    fn contiguous_runs_are_aligned_and_exclusive() {
        let mut a = allocator(2048); // 8 MiB at 1 MiB
        a.add_usable(0, u64::MAX);
        let single = a.alloc().unwrap();
        let run = a.alloc_contiguous(512, 2 << 20).unwrap();
        assert_eq!(run % (2 << 20), 0);
        assert!(single < run || single >= run + (2 << 20));
        let run2 = a.alloc_contiguous(512, 2 << 20).unwrap();
        assert_ne!(run, run2);
        // 8 MiB from 1 MiB holds 2 MiB-aligned starts at 2, 4, 6 MiB only.
        let run3 = a.alloc_contiguous(512, 2 << 20).unwrap();
        assert_eq!(a.alloc_contiguous(512, 2 << 20), None);
        let mut starts = [run, run2, run3];
        starts.sort();
        assert_eq!(starts, [2 << 20, 4 << 20, 6 << 20]);
        a.free_contiguous(run2, 512).unwrap();
        assert_eq!(a.alloc_contiguous(512, 2 << 20), Some(run2));
        assert_eq!(a.alloc_contiguous(0, 4096), None);
    }

    proptest! {
        /// Random alloc/free sequences against a set model: no frame is ever
        /// handed out twice and the counts stay exact.
        #[test]
        fn matches_a_set_model(ops in proptest::collection::vec(any::<(bool, u16)>(), 1..300)) {
            let mut a = allocator(200);
            a.add_usable(0x10_0000 + 10 * PAGE_SIZE, 0x10_0000 + 150 * PAGE_SIZE);
            let mut held: Vec<u64> = Vec::new();
            for (alloc, pick) in ops {
                if alloc || held.is_empty() {
                    match a.alloc() {
                        Some(f) => {
                            prop_assert!(!held.contains(&f), "frame {f:#x} handed out twice");
                            prop_assert!((0x10_0000 + 10 * PAGE_SIZE..0x10_0000 + 150 * PAGE_SIZE).contains(&f));
                            held.push(f);
                        }
                        None => prop_assert_eq!(held.len(), 140),
                    }
                } else {
                    let f = held.swap_remove(pick as usize % held.len());
                    prop_assert_eq!(a.free(f), Ok(()));
                }
                prop_assert_eq!(a.stats().free, 140 - held.len());
            }
        }
    }
}
