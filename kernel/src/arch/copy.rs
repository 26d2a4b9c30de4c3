//! Copies to and from persistent memory.
//!
//! - [`copy_mc`]: the machine-check-safe copy (Linux `copy_mc_to_kernel`):
//!   a `rep movsq` body and a `rep movsb` tail, both listed in the
//!   machine-check exception table. A recoverable #MC on either resumes at
//!   its fixup, which returns the bytes not copied (`RCX * 8 + tail` for the
//!   body, `RCX` for the tail).
//! - [`copy_flush`] / [`zero_flush`]: the flushing copy for writes:
//!   non-temporal stores (`movnti`) for the 8-byte-aligned body of ranges of
//!   at least [`NT_THRESHOLD`] bytes, ordinary stores plus cache-line
//!   write-back for the rest. Durable after [`fence`].
//! - [`flush`]: write back cache lines with the best instruction the CPU has
//!   (`clwb` > `clflushopt` > `clflush`), chosen once at boot, so the write
//!   path has no per-call indirection (seed 001).

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU8, Ordering};

/// Ranges at least this long use non-temporal stores.
pub const NT_THRESHOLD: usize = 256;
const LINE: usize = 64;

/// The cache-line write-back instruction in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FlushInsn {
    Clwb = 0,
    Clflushopt = 1,
    Clflush = 2,
}

impl FlushInsn {
    pub fn name(self) -> &'static str {
        match self {
            FlushInsn::Clwb => "clwb",
            FlushInsn::Clflushopt => "clflushopt",
            FlushInsn::Clflush => "clflush",
        }
    }
}

static FLUSH_INSN: AtomicU8 = AtomicU8::new(FlushInsn::Clflush as u8);

/// Picks the flush instruction from CPUID. Call once at boot.
pub fn init(features: &super::cpu::Features) -> FlushInsn {
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

// The machine-check-safe copy and its exception-table entries.
//   rdi = dst, rsi = src, rdx = len  ->  rax = bytes not copied
global_asm!(
    ".section .text.fsdax_copy_mc,\"ax\"",
    ".global fsdax_copy_mc",
    "fsdax_copy_mc:",
    "    mov rcx, rdx",
    "    shr rcx, 3",
    "    and edx, 7",
    "2:  rep movsq",
    "    mov rcx, rdx",
    "3:  rep movsb",
    "    xor eax, eax",
    "    ret",
    "4:  lea rax, [rdx + rcx * 8]",
    "    ret",
    "5:  mov rax, rcx",
    "    ret",
    ".pushsection mc_extable,\"aw\"",
    "    .balign 8",
    "    .quad 2b, 4b",
    "    .quad 3b, 5b",
    ".popsection",
);

extern "C" {
    fn fsdax_copy_mc(dst: *mut u8, src: *const u8, len: usize) -> usize;
}

/// One exception-table entry: a machine-check-safe instruction and where to
/// resume if a recoverable machine check hits it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct McExtableEntry {
    pub insn: u64,
    pub fixup: u64,
}

// Linker-defined bounds of `mc_extable` (not called, only their addresses
// are taken).
#[allow(improper_ctypes)]
extern "C" {
    #[link_name = "__start_mc_extable"]
    static MC_EXTABLE_START: McExtableEntry;
    #[link_name = "__stop_mc_extable"]
    static MC_EXTABLE_STOP: McExtableEntry;
}

/// The fixup for `rip` if it is a machine-check-safe instruction. Lock-free
/// and allocation-free: called from the #MC handler.
pub fn mc_fixup(rip: u64) -> Option<u64> {
    // SAFETY: the linker places `mc_extable` (only `.quad insn, fixup` pairs
    // emitted above, relocated by the bootloader) between these symbols.
    let table = unsafe {
        let start = core::ptr::addr_of!(MC_EXTABLE_START);
        let stop = core::ptr::addr_of!(MC_EXTABLE_STOP);
        core::slice::from_raw_parts(start, (stop as usize - start as usize) / core::mem::size_of::<McExtableEntry>())
    };
    table.iter().find(|e| e.insn == rip).map(|e| e.fixup)
}

/// Copies `len` bytes from `src` to `dst` so that poisoned source memory
/// ends the copy instead of the machine; returns the bytes NOT copied.
///
/// # Safety
/// `src` must be readable and `dst` writable for `len` bytes, not overlapping.
pub unsafe fn copy_mc(dst: *mut u8, src: *const u8, len: usize) -> usize {
    // SAFETY: forwarded; the routine touches exactly these ranges.
    unsafe { fsdax_copy_mc(dst, src, len) }
}

/// A plain copy with the same instructions as [`copy_mc`] (`rep movsq`,
/// then `rep movsb`) but no exception-table entries, for benchmarks.
///
/// # Safety
/// As for [`copy_mc`].
pub unsafe fn copy_plain(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: forwarded; the two string moves cover exactly `len` bytes.
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

/// Writes back the cache lines covering `[addr, addr + len)`.
///
/// # Safety
/// The range must be mapped.
pub unsafe fn flush(addr: *const u8, len: usize) {
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

/// Non-temporal copy of `qwords` 8-byte words; `dst` must be 8-byte aligned.
///
/// # Safety
/// Ranges valid for `qwords * 8` bytes.
unsafe fn movnti_copy(dst: *mut u8, src: *const u8, qwords: usize) {
    if qwords == 0 {
        return;
    }
    // SAFETY: forwarded; the loop reads and writes exactly `qwords` words.
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

/// Non-temporal zeroing of `qwords` words at 8-byte aligned `dst`.
///
/// # Safety
/// `dst` valid for `qwords * 8` bytes.
unsafe fn movnti_zero(dst: *mut u8, qwords: usize) {
    if qwords == 0 {
        return;
    }
    // SAFETY: forwarded.
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
/// `src` readable and `dst` (pmem) writable for `len` bytes, not overlapping.
pub unsafe fn copy_flush(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: (whole body) every access stays inside the caller's ranges.
    unsafe {
        if len < NT_THRESHOLD {
            core::ptr::copy_nonoverlapping(src, dst, len);
            flush(dst, len);
            return;
        }
        let head = dst.align_offset(8).min(len);
        core::ptr::copy_nonoverlapping(src, dst, head);
        flush(dst, head);
        let body = (len - head) / 8;
        movnti_copy(dst.add(head), src.add(head), body);
        let done = head + body * 8;
        core::ptr::copy_nonoverlapping(src.add(done), dst.add(done), len - done);
        flush(dst.add(done), len - done);
    }
}

/// Durable zeroing with non-temporal stores. Durable after [`fence`].
///
/// # Safety
/// `dst` writable for `len` bytes.
pub unsafe fn zero_flush(dst: *mut u8, len: usize) {
    // SAFETY: (whole body) every access stays inside the caller's range.
    unsafe {
        let head = dst.align_offset(8).min(len);
        core::ptr::write_bytes(dst, 0, head);
        flush(dst, head);
        let body = (len - head) / 8;
        movnti_zero(dst.add(head), body);
        let done = head + body * 8;
        core::ptr::write_bytes(dst.add(done), 0, len - done);
        flush(dst.add(done), len - done);
    }
}

fsdax_ktest::ktest!(copy_mc_copies_and_has_fixups, {
    use fsdax_ktest::{kassert, kassert_eq};
    let src: alloc::vec::Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    for len in [0usize, 1, 7, 8, 9, 63, 4096, 4997] {
        for skew in [0usize, 3] {
            let mut dst = alloc::vec![0u8; 5000];
            // SAFETY: two distinct heap buffers of 5000 bytes; skew + len <= 5000.
            let left = unsafe { copy_mc(dst.as_mut_ptr(), src.as_ptr().add(skew), len) };
            kassert_eq!(left, 0);
            kassert!(dst[..len] == src[skew..skew + len], "copy_mc lost bytes");
            kassert!(dst[len..].iter().all(|&b| b == 0), "copy_mc wrote past the end");
            let mut plain = alloc::vec![0u8; 5000];
            // SAFETY: as above.
            unsafe { copy_plain(plain.as_mut_ptr(), src.as_ptr().add(skew), len) };
            kassert!(plain == dst, "copy_plain differs from copy_mc");
        }
    }
    // The two string moves are the only safe sites: mov rcx,rdx (3 bytes),
    // shr rcx,3 (4), and edx,7 (3), rep movsq (3), mov rcx,rdx (3), rep movsb.
    let f = fsdax_copy_mc as *const () as u64;
    kassert!(mc_fixup(f).is_none(), "the entry is not a load");
    kassert!(mc_fixup(f + 10).is_some(), "rep movsq");
    kassert!(mc_fixup(f + 16).is_some(), "rep movsb");
    kassert!(mc_fixup(f + 13).is_none(), "mov rcx, rdx");
    Ok(())
});

fsdax_ktest::ktest!(flushing_copies_write_every_byte, {
    use fsdax_ktest::kassert;
    for len in [0usize, 1, 63, 255, 256, 257, 4096, 10_001] {
        for skew in [0usize, 1, 7] {
            let src: alloc::vec::Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
            let mut dst = alloc::vec![0u8; len + 16];
            // SAFETY: dst has len + 16 bytes, skew <= 7.
            unsafe { copy_flush(dst.as_mut_ptr().add(skew), src.as_ptr(), len) };
            fence();
            kassert!(dst[skew..skew + len] == src[..], "copy_flush lost bytes");
            kassert!(dst[..skew].iter().all(|&b| b == 0) && dst[skew + len..].iter().all(|&b| b == 0), "wrote outside");
            // SAFETY: as above.
            unsafe { zero_flush(dst.as_mut_ptr().add(skew), len) };
            fence();
            kassert!(dst.iter().all(|&b| b == 0), "zero_flush left bytes");
        }
    }
    Ok(())
});
