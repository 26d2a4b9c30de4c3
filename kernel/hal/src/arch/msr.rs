//! Model-specific registers: the raw accessors stay inside the hal; the
//! rest of the kernel gets typed, safe accessors for the registers it uses
//! (the machine-check registers are in [`crate::mce`], guarded by the
//! presence of the machine-check architecture).

use x86_64::registers::model_specific::Msr;

/// `IA32_APIC_BASE`: the local APIC's physical base and enable bits.
pub const IA32_APIC_BASE: u32 = 0x1b;
/// `IA32_MCG_CAP`.
pub const IA32_MCG_CAP: u32 = 0x179;
/// `IA32_MCG_STATUS`.
pub const IA32_MCG_STATUS: u32 = 0x17a;
/// `IA32_MCG_CTL`.
pub const IA32_MCG_CTL: u32 = 0x17b;

/// `IA32_EFER` (bit 0: SYSCALL enable).
pub const IA32_EFER: u32 = 0xc000_0080;
/// `IA32_STAR`: SYSCALL/SYSRET segment bases.
pub const IA32_STAR: u32 = 0xc000_0081;
/// `IA32_LSTAR`: the 64-bit SYSCALL entry point.
pub const IA32_LSTAR: u32 = 0xc000_0082;
/// `IA32_FMASK`: RFLAGS bits SYSCALL clears.
pub const IA32_FMASK: u32 = 0xc000_0084;
/// `IA32_FS_BASE`: the FS segment base (a process's thread pointer).
pub const IA32_FS_BASE: u32 = 0xc000_0100;
/// `IA32_GS_BASE`: the GS segment base (the per-CPU area in kernel mode).
pub const IA32_GS_BASE: u32 = 0xc000_0101;
/// `IA32_KERNEL_GS_BASE`: what `swapgs` exchanges GS_BASE with.
pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// `IA32_MCi_CTL` of bank `i`.
pub const fn mci_ctl(i: u8) -> u32 {
    0x400 + 4 * i as u32
}
/// `IA32_MCi_STATUS` of bank `i`.
pub const fn mci_status(i: u8) -> u32 {
    0x401 + 4 * i as u32
}
/// `IA32_MCi_ADDR` of bank `i`.
pub const fn mci_addr(i: u8) -> u32 {
    0x402 + 4 * i as u32
}
/// `IA32_MCi_MISC` of bank `i`.
pub const fn mci_misc(i: u8) -> u32 {
    0x403 + 4 * i as u32
}

/// Reads an MSR.
///
/// # Safety
/// The MSR must exist on this CPU (else the read raises #GP), and reading
/// it must have no side effect the caller is not prepared for.
pub(crate) unsafe fn read(msr: u32) -> u64 {
    // SAFETY: the caller guarantees the MSR exists on this CPU (no #GP) and
    // that reading it has no side effect it is not prepared for.
    unsafe { Msr::new(msr).read() }
}

/// Writes an MSR.
///
/// # Safety
/// The MSR must exist on this CPU, and the value must be valid for it and
/// keep every invariant the kernel relies on (paging, segmentation,
/// interrupt delivery).
pub(crate) unsafe fn write(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the MSR exists on this CPU and that the
    // value is valid for it and keeps paging, segmentation and interrupt
    // delivery intact.
    unsafe { Msr::new(msr).write(value) }
}

/// The local APIC's physical base address (from `IA32_APIC_BASE`).
pub fn apic_base() -> u64 {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU (all have a local
    // APIC); reading it has no side effect.
    unsafe { read(IA32_APIC_BASE) & 0x000f_ffff_ffff_f000 }
}
