//! x86_64: CPU features and control registers, typed MSRs, the GDT/TSS, the
//! IDT and its entry points, port I/O, and a deliberate-fault probe.

pub mod cpu;
pub mod entry;
pub mod fpu;
pub mod gdt;
pub mod idt;
pub mod msr;
pub mod port;
pub mod probe;

/// Interrupt vectors the kernel uses.
pub mod vectors {
    /// Legacy PIC vectors after remapping (all masked; only spurious IRQs).
    pub const PIC_BASE: u8 = 0x20;
    /// Local APIC timer.
    pub const TIMER: u8 = 0x30;
    /// Local APIC spurious interrupt.
    pub const SPURIOUS: u8 = 0xff;
}
