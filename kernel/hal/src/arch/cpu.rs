//! CPU features, the time-stamp counter, control registers and interrupt
//! control.

use core::arch::asm;
use core::arch::x86_64::{__cpuid, __cpuid_count, _rdtsc};

use x86_64::instructions::interrupts;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};

/// CPU features the kernel cares about, read once at boot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    /// 1 GiB pages.
    pub pdpe1gb: bool,
    /// No-execute pages (EFER.NXE).
    pub nx: bool,
    /// `clflushopt`.
    pub clflushopt: bool,
    /// `clwb`.
    pub clwb: bool,
    /// The TSC runs at a constant rate in every power state.
    pub invariant_tsc: bool,
    /// The machine-check architecture.
    pub mca: bool,
    /// SMEP (supervisor-mode execution prevention).
    pub smep: bool,
    /// SMAP (supervisor-mode access prevention).
    pub smap: bool,
    /// GenuineIntel (Intel machine-check semantics).
    pub vendor_intel: bool,
}

/// Reads the features from CPUID.
pub fn features() -> Features {
    let l0 = __cpuid(0);
    let intel = l0.ebx == 0x756e_6547 && l0.edx == 0x4965_6e69 && l0.ecx == 0x6c65_746e;
    let l1 = __cpuid(1);
    let (ebx7, max_ext) = (if l0.eax >= 7 { __cpuid_count(7, 0).ebx } else { 0 }, __cpuid(0x8000_0000).eax);
    let e1 = if max_ext >= 0x8000_0001 { __cpuid(0x8000_0001).edx } else { 0 };
    let e7 = if max_ext >= 0x8000_0007 { __cpuid(0x8000_0007).edx } else { 0 };
    Features {
        pdpe1gb: e1 & (1 << 26) != 0,
        nx: e1 & (1 << 20) != 0,
        clflushopt: ebx7 & (1 << 23) != 0,
        clwb: ebx7 & (1 << 24) != 0,
        invariant_tsc: e7 & (1 << 8) != 0,
        mca: l1.edx & (1 << 14) != 0,
        smep: ebx7 & (1 << 7) != 0,
        smap: ebx7 & (1 << 20) != 0,
        vendor_intel: intel,
    }
}

/// CPUID.1:EDX, what Linux reports to processes as `AT_HWCAP` on x86.
pub fn hwcap() -> u64 {
    u64::from(__cpuid(1).edx)
}

/// A random 64-bit value from the CPU's generator (RDSEED, else RDRAND);
/// None if the CPU has neither or it kept failing.
pub fn hardware_random() -> Option<u64> {
    let rdrand = __cpuid(1).ecx & (1 << 30) != 0;
    let rdseed = __cpuid(0).eax >= 7 && __cpuid_count(7, 0).ebx & (1 << 18) != 0;
    for _ in 0..16 {
        let (v, ok): (u64, u8);
        if rdseed {
            // SAFETY: CPUID reports RDSEED; it only writes the register and CF.
            unsafe { asm!("rdseed {v}", "setc {ok}", v = out(reg) v, ok = out(reg_byte) ok, options(nomem, nostack)) };
        } else if rdrand {
            // SAFETY: CPUID reports RDRAND; it only writes the register and CF.
            unsafe { asm!("rdrand {v}", "setc {ok}", v = out(reg) v, ok = out(reg_byte) ok, options(nomem, nostack)) };
        } else {
            return None;
        }
        if ok != 0 {
            return Some(v);
        }
    }
    None
}

/// The index of the running CPU in per-CPU tables. fsdax brings up one CPU
/// (the bootstrap processor); with several, this becomes the index derived
/// from the local APIC id, and every per-CPU table is sized for all of them.
#[inline]
pub fn cpu_index() -> usize {
    0
}

/// The time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter; it has no side effects and is enabled
    // at CPL 0 (CR4.TSD only restricts it in user mode).
    unsafe { _rdtsc() }
}

/// Enables no-execute pages (where supported) and global pages.
pub fn enable_paging_features(f: &Features) {
    // SAFETY: setting EFER.NXE only adds the meaning of bit 63 in page-table
    // entries, which the bootloader already relies on when the CPU has NX;
    // it is set only when CPUID reports NX.
    unsafe {
        if f.nx {
            Efer::update(|e| e.insert(EferFlags::NO_EXECUTE_ENABLE));
        }
    }
    // SAFETY: CR4.PGE makes global entries survive CR3 loads; every mapping
    // the kernel marks global is in the shared kernel half.
    unsafe { Cr4::update(|c| c.insert(Cr4Flags::PAGE_GLOBAL)) };
}

/// Prepares the CPU for user mode: the FPU and SSE for processes (CR0.MP
/// and NE, EM and TS clear; CR4.OSFXSR and OSXMMEXCPT; no OSXSAVE, so
/// processes see no AVX and FXSAVE holds their whole state), and SMEP and
/// SMAP where CPUID has them (the kernel never runs or touches user pages
/// outside the user-copy routines, which set RFLAGS.AC).
pub fn enable_user_mode_features(f: &Features) {
    // SAFETY: the kernel is built soft-float and never uses x87/SSE state,
    // so enabling them changes nothing for it; processes get a clean state
    // from their context (`crate::arch::fpu`) at their first switch.
    unsafe {
        Cr0::update(|c| {
            c.insert(Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::NUMERIC_ERROR);
            c.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
        });
        Cr4::update(|c| c.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE));
    }
    crate::arch::fpu::init();
    if f.smep {
        // SAFETY: supervisor code never runs from user pages: kernel code is
        // in the upper half, mapped without USER_ACCESSIBLE.
        unsafe { Cr4::update(|c| c.insert(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION)) };
    }
    if f.smap {
        crate::uaccess::set_smap(true);
        // SAFETY: every kernel access to user pages is in the user-copy
        // routines, which set RFLAGS.AC around their string moves once
        // `set_smap` told them the CPU has SMAP (just above).
        unsafe { Cr4::update(|c| c.insert(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION)) };
    }
}

/// Whether CR4 has the bits named.
pub fn cr4_contains(flags: Cr4Flags) -> bool {
    Cr4::read().contains(flags)
}

/// Flushes every TLB entry, global ones included (toggles CR4.PGE).
pub fn flush_tlb_all() {
    // SAFETY: clearing and setting CR4.PGE again flushes the TLB and leaves
    // CR4 as it was; no mapping changes meaning.
    unsafe {
        Cr4::update(|c| c.remove(Cr4Flags::PAGE_GLOBAL));
        Cr4::update(|c| c.insert(Cr4Flags::PAGE_GLOBAL));
    }
}

/// Flushes the TLB entry of one page.
pub fn flush_tlb_page(virt: u64) {
    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new_truncate(virt));
}

/// Enables interrupts.
pub fn enable_interrupts() {
    interrupts::enable();
}

/// Disables interrupts.
pub fn disable_interrupts() {
    interrupts::disable();
}

/// Whether interrupts are enabled.
pub fn interrupts_enabled() -> bool {
    interrupts::are_enabled()
}

/// Runs `f` with interrupts disabled, then restores the previous state.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    interrupts::without_interrupts(f)
}

/// Enables interrupts and halts until the next one (atomically: an
/// interrupt between the two cannot be missed).
pub fn idle_wait() {
    interrupts::enable_and_hlt();
}

/// RFLAGS.IF: interrupts enabled.
pub const RFLAGS_IF: u64 = 1 << 9;
