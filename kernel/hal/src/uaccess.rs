//! Fallible copies between the kernel and the current address space's user
//! half: a page fault on the user side either gets resolved (demand paging)
//! or ends the copy short, never a kernel fault.
//!
//! The copies are `rep movsb` instructions (and the loads of a non-temporal
//! copy into persistent memory) listed in the `uaccess_extable` section. When one faults on a user address, the page-fault dispatch
//! ([`crate::trap`]) first asks the kernel's resolver
//! ([`crate::trap::register_user_copy_fault_resolver`]) to map the page
//! without blocking (try-locks only: the copy may run with locks held or
//! interrupts off); if it can, the instruction is retried; if not, the copy
//! resumes at its fixup and returns the bytes it did not copy. Callers map
//! a short copy to EFAULT, or, where they hold locks the resolver could not
//! take, drop them, fault the range in with blocking allowed, and retry.
//!
//! With SMAP the kernel cannot touch user pages at all; each routine sets
//! RFLAGS.AC (`stac`) around its string move and clears it (`clac`) on both
//! ways out. Every range is checked against the user half
//! (`[0, USER_END)`) first: a kernel address is refused without a fault.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::arch::entry::USER_END;

/// A user range was not (fully) accessible: `copied` bytes went through
/// before the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFault {
    /// Bytes copied before the fault.
    pub copied: usize,
}

/// Set at boot when SMAP is on: the copies then use `stac`/`clac` (which
/// raise #UD on CPUs without SMAP).
#[no_mangle]
pub(crate) static FSDAX_SMAP: AtomicU8 = AtomicU8::new(0);

pub(crate) fn set_smap(on: bool) {
    FSDAX_SMAP.store(u8::from(on), Ordering::Relaxed);
}

/// Whether SMAP is on (the copies open user access explicitly).
pub fn smap_enabled() -> bool {
    FSDAX_SMAP.load(Ordering::Relaxed) != 0
}

// rdi = dst, rsi = src, rdx = len -> rax = bytes not copied
global_asm!(
    ".section .text.fsdax_copy_user,\"ax\"",
    ".global fsdax_copy_user",
    "fsdax_copy_user:",
    "    mov rcx, rdx",
    "    cmp byte ptr [rip + {smap}], 0",
    "    je 2f",
    "    stac",
    "2:  rep movsb",
    "    xor eax, eax",
    "    jmp 4f",
    "3:  mov rax, rcx",
    "4:  cmp byte ptr [rip + {smap}], 0",
    "    je 5f",
    "    clac",
    "5:  ret",
    ".pushsection uaccess_extable,\"aw\"",
    "    .balign 8",
    "    .quad 2b, 3b",
    ".popsection",
    smap = sym FSDAX_SMAP,
);

// The non-temporal copy from user memory (Linux
// `__copy_user_nocache`'s body): 8-byte loads from the user source, each
// listed in `uaccess_extable`, stored with `movnti` (no read-for-ownership,
// no cache-line write-back needed: durable after `sfence`).
//   rdi = dst (8-byte aligned kernel memory), rsi = src (user),
//   rdx = len (a multiple of 8) -> rax = bytes not copied
global_asm!(
    ".section .text.fsdax_copy_user_nt,\"ax\"",
    ".global fsdax_copy_user_nt",
    "fsdax_copy_user_nt:",
    "    cmp byte ptr [rip + {smap}], 0",
    "    je 1f",
    "    stac",
    "1:  test rdx, rdx",
    "    jz 3f",
    "2:  mov rax, qword ptr [rsi]",
    "    movnti qword ptr [rdi], rax",
    "    add rsi, 8",
    "    add rdi, 8",
    "    sub rdx, 8",
    "    jnz 2b",
    "3:  xor eax, eax",
    "    jmp 5f",
    "4:  mov rax, rdx",
    "5:  cmp byte ptr [rip + {smap}], 0",
    "    je 6f",
    "    clac",
    "6:  ret",
    ".pushsection uaccess_extable,\"aw\"",
    "    .balign 8",
    "    .quad 2b, 4b",
    ".popsection",
    smap = sym FSDAX_SMAP,
);

extern "C" {
    fn fsdax_copy_user(dst: *mut u8, src: *const u8, len: usize) -> usize;
    fn fsdax_copy_user_nt(dst: *mut u8, src: *const u8, len: usize) -> usize;
}

/// The raw non-temporal copy from user memory: returns the bytes not
/// copied (a multiple of 8: the word that faulted and the rest).
///
/// # Safety
/// `dst` must be 8-byte aligned and writable for `len` bytes, `len` a
/// multiple of 8, `src..src + len` a user-half range.
pub(crate) unsafe fn copy_user_nt_raw(dst: *mut u8, src: *const u8, len: usize) -> usize {
    // SAFETY: the caller's contract; faults on the user side end the copy.
    unsafe { fsdax_copy_user_nt(dst, src, len) }
}

/// The raw user copy: returns the bytes not copied.
///
/// # Safety
/// The kernel side must be valid for `len` bytes (readable `src` or
/// writable `dst`), the other side a user-half range.
pub(crate) unsafe fn copy_user_raw(dst: *mut u8, src: *const u8, len: usize) -> usize {
    // SAFETY: the caller's contract; faults on the user side end the copy.
    unsafe { fsdax_copy_user(dst, src, len) }
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
    if fsdax_mm::layout::is_kernel_half(addr) {
        return None;
    }
    uaccess_extable().iter().find(|e| e.insn == rip).map(|e| e.fixup)
}

/// Whether `[addr, addr + len)` lies in the user half.
pub fn user_range(addr: u64, len: usize) -> bool {
    addr.checked_add(len as u64).is_some_and(|end| end <= USER_END)
}

/// Copies `dst.len()` bytes from the current address space's user address
/// `src`.
pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), UserFault> {
    if !user_range(src, dst.len()) {
        return Err(UserFault { copied: 0 });
    }
    // SAFETY: `dst` is a kernel buffer of `dst.len()` bytes; `src` is a
    // user-half range, so it cannot overlap kernel memory; a fault on it is
    // resolved or turned into a short copy by the page-fault dispatch
    // (extable above).
    let left = unsafe { fsdax_copy_user(dst.as_mut_ptr(), src as *const u8, dst.len()) };
    if left == 0 {
        Ok(())
    } else {
        Err(UserFault { copied: dst.len() - left })
    }
}

/// Copies `src` to the current address space's user address `dst`.
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), UserFault> {
    if !user_range(dst, src.len()) {
        return Err(UserFault { copied: 0 });
    }
    // SAFETY: as for `copy_from_user`, with the roles swapped: only the
    // user-half range is written, and a fault there ends the copy.
    let left = unsafe { fsdax_copy_user(dst as *mut u8, src.as_ptr(), src.len()) };
    if left == 0 {
        Ok(())
    } else {
        Err(UserFault { copied: src.len() - left })
    }
}

/// Writes `len` zero bytes at the user address `dst`.
pub fn clear_user(dst: u64, len: usize) -> Result<(), UserFault> {
    static ZEROS: [u8; 4096] = [0; 4096];
    if !user_range(dst, len) {
        return Err(UserFault { copied: 0 });
    }
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZEROS.len());
        copy_to_user(dst + done as u64, &ZEROS[..n]).map_err(|e| UserFault { copied: done + e.copied })?;
        done += n;
    }
    Ok(())
}

/// Why [`strncpy_from_user`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStrError {
    /// Part of the string is not readable (EFAULT).
    Fault,
    /// No NUL within the buffer (ENAMETOOLONG for paths, E2BIG for
    /// arguments: the caller says which).
    TooLong,
}

/// Copies the NUL-terminated string at the user address `src` into `dst`
/// and returns its length (without the NUL). It reads page by page and
/// stops at the NUL, so a string that ends just before an unmapped page is
/// copied, and never reads more than `dst.len()` bytes.
pub fn strncpy_from_user(dst: &mut [u8], src: u64) -> Result<usize, UserStrError> {
    let mut done = 0usize;
    while done < dst.len() {
        let at = src.checked_add(done as u64).ok_or(UserStrError::Fault)?;
        let page_left = (4096 - (at & 4095)) as usize;
        let n = page_left.min(dst.len() - done);
        copy_from_user(&mut dst[done..done + n], at).map_err(|_| UserStrError::Fault)?;
        if let Some(nul) = dst[done..done + n].iter().position(|&b| b == 0) {
            return Ok(done + nul);
        }
        done += n;
    }
    Err(UserStrError::TooLong)
}
