//! A deliberate fault, for demonstrating and testing the fault path.
//!
//! [`fault_at`] reads an address that nothing maps, in an inline-assembly
//! block that never returns to Rust: the page fault goes to the kernel's
//! fault handler, which ends the task (or, in a critical task, stops the
//! machine). If a handler ever resolved the fault and resumed, the next
//! instruction is `ud2`, an invalid-opcode fault. No Rust code observes the
//! read, so this is an ordinary fault, not undefined behaviour.

use core::convert::Infallible;

use fsdax_mm::layout;

/// Why [`fault_at`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeError {
    /// The address is in the kernel half (where faults are kernel bugs).
    KernelHalf,
    /// Something is mapped there in the current address space.
    Mapped,
}

impl core::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::KernelHalf => "it is in the kernel half",
            Self::Mapped => "something is mapped there",
        })
    }
}

/// Faults on purpose by reading `addr`, a lower-half address that the
/// current address space does not map. Does not return; fails without
/// faulting if the address is mapped or in the kernel half.
pub fn fault_at(addr: u64) -> Result<Infallible, ProbeError> {
    if layout::is_kernel_half(addr) {
        return Err(ProbeError::KernelHalf);
    }
    if crate::mm::translate_current(addr).is_some() {
        return Err(ProbeError::Mapped);
    }
    // SAFETY: the block reads one word at an address that is not mapped in
    // the current address space (checked above; this task's address space
    // does not change under it), which raises a page fault; the block never
    // returns (`noreturn`), so no Rust state depends on the read. `ud2`
    // stops execution should a fault handler ever resume.
    unsafe { core::arch::asm!("mov rax, [{addr}]", "ud2", addr = in(reg) addr, options(noreturn, nostack)) }
}
