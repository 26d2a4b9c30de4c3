//! x86_64 glue: the only place (with `mem` and `task::switch`) that executes
//! privileged instructions.

pub mod copy;
pub mod cpu;
pub mod gdt;
pub mod idt;

/// Interrupt vectors the kernel uses.
pub mod vectors {
    /// Legacy PIC vectors after remapping (all masked; only spurious IRQs).
    pub const PIC_BASE: u8 = 0x20;
    /// Local APIC timer.
    pub const TIMER: u8 = 0x30;
    /// Local APIC spurious interrupt.
    pub const SPURIOUS: u8 = 0xff;
}
