//! The kernel's virtual address map.
//!
//! ```text
//! 0x0000_0000_0000_0000 ..  lower half: per-task address spaces (DAX mappings
//!                           a task makes are visible only to that task)
//! 0xffff_8000_0000_0000     direct map of physical memory (PML4 slot 256)
//! 0xffff_c000_0000_0000     pmem (DAX) mappings of NVDIMM regions (slot 384)
//! 0xffff_d000_0000_0000     kernel heap, grows on demand in a 64 GiB window (slot 416)
//! 0xffff_e000_0000_0000     task stacks, each below an unmapped guard page (slot 448)
//! 0xffff_e800_0000_0000     MMIO (local APIC, ...), uncached (slot 464)
//! 0xffff_f000_0000_0000 ..  bootloader-placed: kernel image, boot stack,
//!                           boot info (slot 480 and up)
//! ```
//! Every upper-half PML4 slot gets its page-directory-pointer table at boot,
//! so task address spaces can copy the upper half once and still see every
//! later kernel mapping.

/// First PML4 slot of the kernel half.
pub const KERNEL_PML4_FIRST: usize = 256;
/// Start of the direct map: physical address `p` is at `PHYS_OFFSET + p`.
pub const PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;
/// Start of the pmem (DAX) window.
pub const PMEM_BASE: u64 = 0xffff_c000_0000_0000;
/// Size of the pmem window: 4 TiB.
pub const PMEM_WINDOW: u64 = 4 << 40;
/// Start of the kernel heap.
pub const HEAP_BASE: u64 = 0xffff_d000_0000_0000;
/// The virtual window the kernel heap may grow into (it maps RAM on
/// demand; only its first few MiB are mapped at boot).
pub const HEAP_WINDOW: u64 = 64 << 30;
/// Start of the task stack area.
pub const STACKS_BASE: u64 = 0xffff_e000_0000_0000;
/// Virtual span reserved per task stack (stack + guard page and spare).
pub const STACK_SLOT: u64 = 1 << 20;
/// Start of the MMIO area.
pub const MMIO_BASE: u64 = 0xffff_e800_0000_0000;
/// Where the bootloader places the kernel and its boot-time data.
pub const BOOTLOADER_DYNAMIC_START: u64 = 0xffff_f000_0000_0000;

const _: () = assert!(PMEM_BASE + PMEM_WINDOW <= HEAP_BASE, "pmem window overlaps the heap");

/// One past the highest address a process may use: the last page below the
/// canonical boundary (`0x0000_8000_0000_0000`) stays unmapped, so that
/// code running off the end of user space can never make `SYSCALL` return
/// to a non-canonical RIP (the Intel SYSRET erratum). Equal to
/// `fsdax_abi::USER_END`.
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;

/// Is `virt` in the kernel (upper) half?
pub const fn is_kernel_half(virt: u64) -> bool {
    virt >= PHYS_OFFSET
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_ordered_and_disjoint() {
        let regions = [
            (PHYS_OFFSET, PMEM_BASE - PHYS_OFFSET),
            (PMEM_BASE, PMEM_WINDOW),
            (HEAP_BASE, HEAP_WINDOW),
            (STACKS_BASE, MMIO_BASE - STACKS_BASE),
            (MMIO_BASE, BOOTLOADER_DYNAMIC_START - MMIO_BASE),
        ];
        for w in regions.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "{:x?} overlaps {:x?}", w[0], w[1]);
        }
        assert!(is_kernel_half(PHYS_OFFSET) && !is_kernel_half(0x7fff_ffff_f000));
        assert_eq!((PHYS_OFFSET >> 39) & 511, KERNEL_PML4_FIRST as u64);
    }
}
