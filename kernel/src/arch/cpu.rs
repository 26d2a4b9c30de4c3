//! CPU features, control registers and model-specific registers.

use core::arch::x86_64::{__cpuid, __cpuid_count, _rdtsc};

use x86_64::registers::control::{Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags, Msr};

/// CPU features the kernel cares about, read once at boot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    pub pdpe1gb: bool,
    pub nx: bool,
    pub clflushopt: bool,
    pub clwb: bool,
    pub invariant_tsc: bool,
    pub mca: bool,
    pub vendor_intel: bool,
}

/// Reads the features from CPUID.
pub fn features() -> Features {
    {
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
            vendor_intel: intel,
        }
    }
}

/// The time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects and is not disabled (CR4.TSD clear).
    unsafe { _rdtsc() }
}

/// Enables no-execute pages and global pages.
pub fn enable_paging_features(f: &Features) {
    // SAFETY: setting EFER.NXE (when supported) and CR4.PGE only adds
    // features; no existing mapping changes meaning (NX bits set by the
    // bootloader already required NXE).
    unsafe {
        if f.nx {
            Efer::update(|e| e.insert(EferFlags::NO_EXECUTE_ENABLE));
        }
        Cr4::update(|c| c.insert(Cr4Flags::PAGE_GLOBAL));
    }
}

/// Reads an MSR.
///
/// # Safety
/// The MSR must exist on this CPU and reading it must have no side effect
/// the caller is not prepared for.
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: forwarded.
    unsafe { Msr::new(msr).read() }
}

/// Writes an MSR.
///
/// # Safety
/// The MSR must exist and the value must be valid and intended.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded.
    unsafe { Msr::new(msr).write(value) }
}

/// Halts until the next interrupt, with interrupts enabled.
pub fn idle_wait() {
    x86_64::instructions::interrupts::enable_and_hlt();
}
