//! The copies persistent memory needs, as raw routines behind
//! [`crate::mm::PmemRegion`]'s safe methods:
//!
//! - the machine-check-safe copy (Linux `copy_mc_to_kernel`): a `rep movsq`
//!   body and a `rep movsb` tail, both listed in the `mc_extable` section. A
//!   recoverable #MC on either resumes at its fixup, which returns the bytes
//!   not copied (`RCX * 8 + tail` for the body, `RCX` for the tail), and the
//!   #MC handler writes the poisoned range it found into the copy's own
//!   [`McStopRecord`], whose address the routine keeps at `[rsp]` while it
//!   copies. So the poison location comes back with the copy's result, per
//!   call and per CPU: no global, no race with other copies.
//! - the flushing copy for writes: non-temporal stores (`movnti`) for the
//!   8-byte-aligned body of ranges of at least [`NT_THRESHOLD`] bytes,
//!   string stores plus cache-line write-back for the rest. Durable after
//!   [`fence`].
//! - [`flush`] writes back cache lines with the best instruction the CPU has
//!   (`clwb` > `clflushopt` > `clflush`), chosen once at boot, so the write
//!   path has no per-call indirection.
//!
//! Every access to persistent memory goes through inline assembly, so the
//! mapped region is never touched by ordinary Rust loads and stores (it is
//! shared with the hardware, like MMIO).

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU8, Ordering};

/// Ranges at least this long use non-temporal stores.
pub const NT_THRESHOLD: usize = 256;
const LINE: usize = 64;

/// The cache-line write-back instruction in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FlushInsn {
    /// `clwb`: write back, keep the line cached.
    Clwb = 0,
    /// `clflushopt`: write back and evict, weakly ordered.
    Clflushopt = 1,
    /// `clflush`: write back and evict, ordered.
    Clflush = 2,
}

impl FlushInsn {
    /// The instruction's mnemonic.
    pub fn name(self) -> &'static str {
        match self {
            FlushInsn::Clwb => "clwb",
            FlushInsn::Clflushopt => "clflushopt",
            FlushInsn::Clflush => "clflush",
        }
    }
}

static FLUSH_INSN: AtomicU8 = AtomicU8::new(FlushInsn::Clflush as u8);

/// Picks the flush instruction from CPUID. Called once at boot.
pub(crate) fn init(features: &crate::arch::cpu::Features) -> FlushInsn {
    let insn = if features.clwb {
        FlushInsn::Clwb
    } else if features.clflushopt {
        FlushInsn::Clflushopt
    } else {
        FlushInsn::Clflush
    };
    FLUSH_INSN.store(insn as u8, Ordering::Relaxed);
    insn
}

/// The flush instruction chosen at boot.
pub fn flush_insn() -> FlushInsn {
    match FLUSH_INSN.load(Ordering::Relaxed) {
        0 => FlushInsn::Clwb,
        1 => FlushInsn::Clflushopt,
        _ => FlushInsn::Clflush,
    }
}

/// Where the #MC handler reports the poison that stopped a
/// machine-check-safe copy: a physical range (`len == 0`: the #MC named no
/// address).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct McStopRecord {
    pub start: u64,
    pub len: u64,
    /// Set by the page-fault fixup of [`copy_mc_to_user`]: the copy stopped
    /// at a fault on the user destination, not at poison.
    pub user_fault: u64,
}

// The machine-check-safe copy and its exception-table entries.
//   rdi = dst, rsi = src, rdx = len, rcx = &mut McStopRecord -> rax = bytes not copied
// While either string move runs, [rsp] holds the record's address (the
// contract `record_stop` relies on).
global_asm!(
    ".section .text.fsdax_copy_mc,\"ax\"",
    ".global fsdax_copy_mc",
    "fsdax_copy_mc:",
    "    push rcx",
    "    mov rcx, rdx",
    "    shr rcx, 3",
    "    and edx, 7",
    "2:  rep movsq",
    "    mov rcx, rdx",
    "3:  rep movsb",
    "    xor eax, eax",
    "    pop rcx",
    "    ret",
    "4:  lea rax, [rdx + rcx * 8]",
    "    pop rcx",
    "    ret",
    "5:  mov rax, rcx",
    "    pop rcx",
    "    ret",
    ".pushsection mc_extable,\"aw\"",
    "    .balign 8",
    "    .quad 2b, 4b",
    "    .quad 3b, 5b",
    ".popsection",
);

// The machine-check-safe copy to a user destination (Linux
// `copy_mc_to_user`): the same string moves, each listed twice, in
// `mc_extable` (poison in the source: fixups 4 and 5) and in
// `uaccess_extable` (a fault on the user destination: fixups 6 and 7, which
// mark the record). RFLAGS.AC is set around the moves when SMAP is on.
//   rdi = dst (user), rsi = src, rdx = len, rcx = &mut McStopRecord -> rax = bytes not copied
global_asm!(
    ".section .text.fsdax_copy_mc_user,\"ax\"",
    ".global fsdax_copy_mc_user",
    "fsdax_copy_mc_user:",
    "    push rcx",
    "    cmp byte ptr [rip + {smap}], 0",
    "    je 1f",
    "    stac",
    "1:  mov rcx, rdx",
    "    shr rcx, 3",
    "    and edx, 7",
    "2:  rep movsq",
    "    mov rcx, rdx",
    "3:  rep movsb",
    "    xor eax, eax",
    "    jmp 8f",
    "4:  lea rax, [rdx + rcx * 8]",
    "    jmp 8f",
    "5:  mov rax, rcx",
    "    jmp 8f",
    "6:  lea rax, [rdx + rcx * 8]",
    "    jmp 7f",
    "9:  mov rax, rcx",
    "7:  mov rcx, qword ptr [rsp]",
    "    mov qword ptr [rcx + 16], 1",
    "8:  cmp byte ptr [rip + {smap}], 0",
    "    je 10f",
    "    clac",
    "10: pop rcx",
    "    ret",
    ".pushsection mc_extable,\"aw\"",
    "    .balign 8",
    "    .quad 2b, 4b",
    "    .quad 3b, 5b",
    ".popsection",
    ".pushsection uaccess_extable,\"aw\"",
    "    .balign 8",
    "    .quad 2b, 6b",
    "    .quad 3b, 9b",
    ".popsection",
    smap = sym crate::uaccess::FSDAX_SMAP,
);

extern "C" {
    fn fsdax_copy_mc(dst: *mut u8, src: *const u8, len: usize, stop: *mut McStopRecord) -> usize;
    fn fsdax_copy_mc_user(dst: *mut u8, src: *const u8, len: usize, stop: *mut McStopRecord) -> usize;
}

/// How a copy to user memory from memory that may be poisoned stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McUserStop {
    /// A fault on the user destination (EFAULT).
    UserFault,
    /// Poison in the source (EIO), with the physical range the #MC named.
    MachineCheck {
        /// Physical start and length of the poisoned range, if named.
        poison: Option<(u64, u64)>,
    },
}

/// Copies `len` bytes from `src` (kernel memory that may hold poison) to
/// the user address `dst`: machine-check-safe on the source, fault-safe on
/// the destination. Returns the bytes NOT copied and why it stopped.
///
/// # Safety
/// `src` must be readable for `len` bytes; `dst..dst + len` must lie in the
/// user half (checked by the caller).
pub(crate) unsafe fn copy_mc_to_user(dst: u64, src: *const u8, len: usize) -> (usize, Option<McUserStop>) {
    let mut stop = McStopRecord::default();
    // SAFETY: the caller guarantees `src` readable for `len` bytes and a
    // user-half destination; poison in the source and faults on the
    // destination both end at a fixup (the extables above); `stop` is a
    // live local the #MC handler or the fixup may write during the call.
    let left = unsafe { fsdax_copy_mc_user(dst as *mut u8, src, len, &mut stop) };
    if left == 0 {
        return (0, None);
    }
    // SAFETY: a local the handler or fixup may have written; read volatile.
    let (start, plen, fault) = unsafe {
        (
            core::ptr::addr_of!(stop.start).read_volatile(),
            core::ptr::addr_of!(stop.len).read_volatile(),
            core::ptr::addr_of!(stop.user_fault).read_volatile(),
        )
    };
    let why = if fault != 0 {
        McUserStop::UserFault
    } else {
        McUserStop::MachineCheck { poison: (plen != 0).then_some((start, plen)) }
    };
    (left, Some(why))
}

/// One exception-table entry: a machine-check-safe instruction and where to
/// resume if a recoverable machine check hits it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct McExtableEntry {
    insn: u64,
    fixup: u64,
}

linker_set!(fn mc_extable() -> [McExtableEntry], "__start_mc_extable", "__stop_mc_extable");

/// The fixup for `rip` if it is a machine-check-safe instruction. Lock-free
/// and allocation-free: called from the #MC handler.
pub(crate) fn mc_fixup(rip: u64) -> Option<u64> {
    mc_extable().iter().find(|e| e.insn == rip).map(|e| e.fixup)
}

/// Reports the poisoned range `[start, start + len)` to the copy the #MC
/// interrupted.
///
/// # Safety
/// `interrupted_rsp` must be the stack pointer of code stopped at a
/// machine-check-safe instruction (`mc_fixup(rip)` is `Some`), which is
/// inside `fsdax_copy_mc` with the record's address at `[rsp]`.
pub(crate) unsafe fn record_stop(interrupted_rsp: u64, start: u64, len: u64) {
    // SAFETY: the caller guarantees the interrupted code is at a string move
    // of `fsdax_copy_mc`, so [rsp] holds the address of the copy caller's
    // `McStopRecord`, which lives in the copy caller's frame for
    // the whole call; the copy is suspended, so nothing else writes it.
    unsafe {
        let record = (interrupted_rsp as *const *mut McStopRecord).read();
        core::ptr::addr_of_mut!((*record).start).write_volatile(start);
        core::ptr::addr_of_mut!((*record).len).write_volatile(len);
    }
}

/// Copies `len` bytes from `src` to `dst` so that poisoned source memory
/// ends the copy instead of the machine. Returns the bytes NOT copied and
/// the poisoned physical range the #MC reported, if one stopped the copy.
///
/// # Safety
/// `src` must be readable and `dst` writable for `len` bytes, and the two
/// ranges must not overlap.
pub(crate) unsafe fn copy_mc(dst: *mut u8, src: *const u8, len: usize) -> (usize, Option<(u64, u64)>) {
    let mut stop = McStopRecord::default();
    // SAFETY: the caller guarantees `src` is readable and `dst` writable for
    // `len` bytes without overlap; the routine touches exactly these ranges,
    // and `stop` is a live local the #MC handler may write during the call.
    let left = unsafe { fsdax_copy_mc(dst, src, len, &mut stop) };
    // SAFETY: `stop` is a local the #MC handler may have written during the
    // call; read it volatile so the compiler does not assume it unchanged.
    let (start, plen) =
        unsafe { (core::ptr::addr_of!(stop.start).read_volatile(), core::ptr::addr_of!(stop.len).read_volatile()) };
    (left, (left != 0 && plen != 0).then_some((start, plen)))
}

/// A plain copy with the same instructions as [`copy_mc`] (`rep movsq`,
/// then `rep movsb`) but no exception-table entries.
///
/// # Safety
/// `src` readable and `dst` writable for `len` bytes, not overlapping.
pub(crate) unsafe fn copy_plain(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller guarantees `src` readable and `dst` writable for
    // `len` bytes without overlap; the two string moves touch exactly those
    // bytes.
    unsafe {
        asm!(
            "rep movsq",
            "mov rcx, {tail}",
            "rep movsb",
            tail = in(reg) len & 7,
            inout("rcx") len >> 3 => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
}

/// Stores `len` zero bytes at `dst` (`rep stosb`).
///
/// # Safety
/// `dst` writable for `len` bytes.
unsafe fn zero_plain(dst: *mut u8, len: usize) {
    // SAFETY: the caller guarantees `dst` writable for `len` bytes;
    // `rep stosb` writes exactly those.
    unsafe {
        asm!(
            "rep stosb",
            inout("rcx") len => _,
            inout("rdi") dst => _,
            in("al") 0u8,
            options(nostack, preserves_flags),
        );
    }
}

/// Writes back the cache lines covering `[addr, addr + len)`.
///
/// # Safety
/// The range must be mapped.
pub(crate) unsafe fn flush(addr: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let start = addr as usize & !(LINE - 1);
    let end = addr as usize + len;
    let insn = flush_insn();
    let mut line = start;
    while line < end {
        let p = line as *const u8;
        // SAFETY: `p` is inside the caller's mapped range (rounded down to
        // its cache line, which is mapped too); write-back changes no data.
        unsafe {
            match insn {
                FlushInsn::Clwb => asm!("clwb [{}]", in(reg) p, options(nostack, preserves_flags)),
                FlushInsn::Clflushopt => asm!("clflushopt [{}]", in(reg) p, options(nostack, preserves_flags)),
                FlushInsn::Clflush => asm!("clflush [{}]", in(reg) p, options(nostack, preserves_flags)),
            }
        }
        line += LINE;
    }
}

/// Orders earlier flushes and non-temporal stores before later stores.
pub fn fence() {
    // SAFETY: sfence has no operands and no effect besides ordering.
    unsafe { asm!("sfence", options(nostack, preserves_flags)) };
}

/// Non-temporal copy of `qwords` 8-byte words.
///
/// # Safety
/// `src` readable and `dst` (8-byte aligned) writable for `qwords * 8`
/// bytes, not overlapping.
unsafe fn movnti_copy(dst: *mut u8, src: *const u8, qwords: usize) {
    if qwords == 0 {
        return;
    }
    // SAFETY: the caller guarantees `src` readable and `dst` writable for
    // `qwords * 8` bytes without overlap; the loop touches exactly those
    // (it runs only for `qwords > 0`).
    unsafe {
        asm!(
            "2:",
            "mov {tmp}, [{src}]",
            "movnti [{dst}], {tmp}",
            "add {src}, 8",
            "add {dst}, 8",
            "dec {n}",
            "jnz 2b",
            src = inout(reg) src => _,
            dst = inout(reg) dst => _,
            n = inout(reg) qwords => _,
            tmp = out(reg) _,
            options(nostack),
        );
    }
}

/// Non-temporal zeroing of `qwords` words.
///
/// # Safety
/// `dst` (8-byte aligned) writable for `qwords * 8` bytes.
unsafe fn movnti_zero(dst: *mut u8, qwords: usize) {
    if qwords == 0 {
        return;
    }
    // SAFETY: the caller guarantees `dst` writable for `qwords * 8` bytes;
    // the loop writes exactly those (it runs only for `qwords > 0`).
    unsafe {
        asm!(
            "2:",
            "movnti [{dst}], {zero}",
            "add {dst}, 8",
            "dec {n}",
            "jnz 2b",
            dst = inout(reg) dst => _,
            n = inout(reg) qwords => _,
            zero = in(reg) 0u64,
            options(nostack),
        );
    }
}

/// The flushing copy (Linux `memcpy_flushcache`). Durable after [`fence`].
///
/// # Safety
/// `src` readable and `dst` writable for `len` bytes, not overlapping.
pub(crate) unsafe fn copy_flush(dst: *mut u8, src: *const u8, len: usize) {
    if len < NT_THRESHOLD {
        // SAFETY: the caller guarantees `src` readable and `dst` writable
        // (hence mapped) for `len` bytes without overlap.
        unsafe {
            copy_plain(dst, src, len);
            flush(dst, len);
        }
        return;
    }
    let head = dst.align_offset(8).min(len);
    let body = (len - head) / 8;
    let done = head + body * 8;
    // SAFETY: the caller guarantees `src` readable and `dst` writable for
    // `len` bytes without overlap; head, body and tail partition `[0, len)`
    // and the body starts 8-byte aligned in `dst`.
    unsafe {
        copy_plain(dst, src, head);
        flush(dst, head);
        movnti_copy(dst.add(head), src.add(head), body);
        copy_plain(dst.add(done), src.add(done), len - done);
        flush(dst.add(done), len - done);
    }
}

/// Durable zeroing with non-temporal stores. Durable after [`fence`].
///
/// # Safety
/// `dst` writable for `len` bytes.
pub(crate) unsafe fn zero_flush(dst: *mut u8, len: usize) {
    let head = dst.align_offset(8).min(len);
    let body = (len - head) / 8;
    let done = head + body * 8;
    // SAFETY: the caller guarantees `dst` writable for `len` bytes; head,
    // body and tail partition `[0, len)` and the body starts 8-byte
    // aligned.
    unsafe {
        zero_plain(dst, head);
        flush(dst, head);
        movnti_zero(dst.add(head), body);
        zero_plain(dst.add(done), len - done);
        flush(dst.add(done), len - done);
    }
}

mod tests {
    use alloc::vec::Vec;

    use fsdax_ktest::{kassert, kassert_eq, ktest};

    use super::*;

    ktest!(copy_mc_copies_and_has_fixups, {
        let src: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        for len in [0usize, 1, 7, 8, 9, 63, 4096, 4997] {
            for skew in [0usize, 3] {
                let mut dst = alloc::vec![0u8; 5000];
                // SAFETY: two distinct heap buffers of 5000 bytes; skew + len <= 5000.
                let (left, poison) = unsafe { copy_mc(dst.as_mut_ptr(), src.as_ptr().add(skew), len) };
                kassert_eq!(left, 0);
                kassert!(poison.is_none());
                kassert!(dst[..len] == src[skew..skew + len], "copy_mc lost bytes");
                kassert!(dst[len..].iter().all(|&b| b == 0), "copy_mc wrote past the end");
                let mut plain = alloc::vec![0u8; 5000];
                // SAFETY: two distinct heap buffers of 5000 bytes; skew + len <= 5000.
                unsafe { copy_plain(plain.as_mut_ptr(), src.as_ptr().add(skew), len) };
                kassert!(plain == dst, "copy_plain differs from copy_mc");
            }
        }
        // The two string moves are the only safe sites: push rcx (1 byte),
        // mov rcx,rdx (3), shr rcx,3 (4), and edx,7 (3), rep movsq (3),
        // mov rcx,rdx (3), rep movsb.
        let f = fsdax_copy_mc as *const () as u64;
        kassert!(mc_fixup(f).is_none(), "the entry is not a load");
        kassert!(mc_fixup(f + 11).is_some(), "rep movsq");
        kassert!(mc_fixup(f + 17).is_some(), "rep movsb");
        kassert!(mc_fixup(f + 14).is_none(), "mov rcx, rdx");
        kassert_eq!(mc_extable().len(), 4, "fsdax_copy_mc and fsdax_copy_mc_user, two string moves each");
        Ok(())
    });

    ktest!(flushing_copies_write_every_byte, {
        for len in [0usize, 1, 63, 255, 256, 257, 4096, 10_001] {
            for skew in [0usize, 1, 7] {
                let src: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
                let mut dst = alloc::vec![0u8; len + 16];
                // SAFETY: dst has len + 16 bytes and skew <= 7; src has len.
                unsafe { copy_flush(dst.as_mut_ptr().add(skew), src.as_ptr(), len) };
                fence();
                kassert!(dst[skew..skew + len] == src[..], "copy_flush lost bytes");
                kassert!(
                    dst[..skew].iter().all(|&b| b == 0) && dst[skew + len..].iter().all(|&b| b == 0),
                    "wrote outside"
                );
                // SAFETY: dst has len + 16 bytes and skew <= 7.
                unsafe { zero_flush(dst.as_mut_ptr().add(skew), len) };
                fence();
                kassert!(dst.iter().all(|&b| b == 0), "zero_flush left bytes");
            }
        }
        Ok(())
    });
}
