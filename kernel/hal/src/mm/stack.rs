//! Kernel stacks: each in its own slot of the stack area, its pages mapped
//! above one unmapped guard page, so an overflow faults instead of
//! corrupting the stack below.

use fsdax_mm::layout::{STACKS_BASE, STACK_SLOT};
use fsdax_mm::paging::{Flags, PageSize};
use fsdax_mm::PAGE_SIZE;

use super::{alloc_frame, free_frame, map_kernel, translate_kernel, unmap_kernel};
use crate::sync::IrqMutex;

/// Maximum number of kernel stacks (and so tasks).
pub const MAX_STACKS: usize = 256;
static STACK_SLOTS: IrqMutex<[u64; MAX_STACKS / 64]> = IrqMutex::new([0; MAX_STACKS / 64]);

/// A kernel stack: `pages` mapped pages above an unmapped guard page, in its
/// own slot of the stack area. Unmapped and freed on drop.
///
/// Slot layout, low to high: `[guard page][stack pages][unused]`; the stack
/// grows down from [`KernelStack::top`] toward the guard page.
#[derive(Debug)]
pub struct KernelStack {
    slot: usize,
    pages: u64,
}

impl KernelStack {
    /// Allocates a stack of `pages` 4 KiB pages; None when no slot or no RAM
    /// is left.
    pub fn new(pages: u64) -> Option<KernelStack> {
        if pages == 0 || (pages + 1) * PAGE_SIZE > STACK_SLOT {
            return None;
        }
        let slot = {
            let mut slots = STACK_SLOTS.lock();
            let i = (0..MAX_STACKS).find(|&i| slots[i / 64] & (1 << (i % 64)) == 0)?;
            slots[i / 64] |= 1 << (i % 64);
            i
        };
        // `pages` counts what is mapped, so an early return (dropping the
        // stack) unmaps exactly that and frees the slot.
        let mut stack = KernelStack { slot, pages: 0 };
        let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE;
        for i in 0..pages {
            let frame = alloc_frame()?;
            // SAFETY: a fresh frame, mapped into this stack's private slot,
            // which no other stack or mapping uses.
            if unsafe { map_kernel(stack.bottom() + i * PAGE_SIZE, frame, PAGE_SIZE, flags, PageSize::Size4K) }.is_err()
            {
                free_frame(frame);
                return None;
            }
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
                // SAFETY: the stack is being dropped, so nothing runs on it
                // (a running task's context keeps its stack alive).
                if unsafe { unmap_kernel(va, PAGE_SIZE) }.is_ok() {
                    free_frame(leaf.phys);
                }
            }
        }
        STACK_SLOTS.lock()[self.slot / 64] &= !(1 << (self.slot % 64));
    }
}
