//! Fallible copies between the kernel and a task's lower-half (user)
//! addresses: a page fault during the copy ends it with an error instead of
//! a kernel fault.
//!
//! The copy is a `rep movsb` listed in the `uaccess_extable` section; the
//! page-fault entry resumes at its fixup when the faulting instruction is
//! that one and the address is in the lower half, and the copy returns the
//! bytes it did not copy. Processes build their system-call argument copies
//! (EFAULT) on this; SMAP's `stac`/`clac` go around the string move once
//! SMAP is enabled.

use core::arch::global_asm;

use fsdax_mm::layout;

/// A lower-half address range was not (fully) accessible: `copied` bytes
/// went through before the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFault {
    /// Bytes copied before the fault.
    pub copied: usize,
}

// rdi = dst, rsi = src, rdx = len -> rax = bytes not copied
global_asm!(
    ".section .text.fsdax_copy_user,\"ax\"",
    ".global fsdax_copy_user",
    "fsdax_copy_user:",
    "    mov rcx, rdx",
    "2:  rep movsb",
    "    xor eax, eax",
    "    ret",
    "3:  mov rax, rcx",
    "    ret",
    ".pushsection uaccess_extable,\"aw\"",
    "    .balign 8",
    "    .quad 2b, 3b",
    ".popsection",
);

extern "C" {
    fn fsdax_copy_user(dst: *mut u8, src: *const u8, len: usize) -> usize;
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct ExtableEntry {
    insn: u64,
    fixup: u64,
}

linker_set!(fn uaccess_extable() -> [ExtableEntry], "__start_uaccess_extable", "__stop_uaccess_extable");

/// The fixup for a page fault at `rip` on address `addr`, if `rip` is a
/// user-copy instruction and `addr` a lower-half address.
pub(crate) fn fixup_for(rip: u64, addr: u64) -> Option<u64> {
    if layout::is_kernel_half(addr) {
        return None;
    }
    uaccess_extable().iter().find(|e| e.insn == rip).map(|e| e.fixup)
}

/// Whether `[addr, addr + len)` lies in the lower half.
fn user_range(addr: u64, len: usize) -> bool {
    addr.checked_add(len as u64).is_some_and(|end| end <= 1 << 47)
}

/// Copies `dst.len()` bytes from the current address space's lower-half
/// address `src`.
pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), UserFault> {
    if !user_range(src, dst.len()) {
        return Err(UserFault { copied: 0 });
    }
    // SAFETY: `dst` is a kernel buffer of `dst.len()` bytes; `src` is a
    // lower-half range, so it cannot overlap kernel memory; a fault on it is
    // turned into a short copy by the page-fault entry (extable above).
    let left = unsafe { fsdax_copy_user(dst.as_mut_ptr(), src as *const u8, dst.len()) };
    if left == 0 {
        Ok(())
    } else {
        Err(UserFault { copied: dst.len() - left })
    }
}

/// Copies `src` to the current address space's lower-half address `dst`.
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), UserFault> {
    if !user_range(dst, src.len()) {
        return Err(UserFault { copied: 0 });
    }
    // SAFETY: as for `copy_from_user`, with the roles swapped: only the
    // lower-half range is written, and a fault there ends the copy.
    let left = unsafe { fsdax_copy_user(dst as *mut u8, src.as_ptr(), src.len()) };
    if left == 0 {
        Ok(())
    } else {
        Err(UserFault { copied: src.len() - left })
    }
}
