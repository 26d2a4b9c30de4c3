//! fsdax-hal: the kernel's bottom layer, and the only place in the kernel
//! with `unsafe` code.
//!
//! Everything that touches the machine lives here, behind small safe types:
//! the CPU ([`arch`]: features, TSC, typed MSRs, GDT/TSS, IDT, port I/O,
//! interrupt control), memory ([`mm`]: frames, the kernel's page tables, the
//! growable heap, kernel stacks, address spaces, the persistent-memory DAX
//! mapping [`mm::PmemRegion`]), the copies that need special instructions
//! ([`copy`], [`uaccess`]), task contexts and the context switch ([`task`]),
//! the console, the timer, machine-check banks, ACPI tables, fw_cfg, power.
//!
//! The layers above (the kernel crate, `#![deny(unsafe_code)]`) decide; this
//! crate carries out. It never calls up: where an event needs a decision
//! (a CPU fault, a timer tick, a machine check, a task whose entry returned)
//! it calls a handler the kernel registered once at boot ([`trap`], the
//! model is Asterinas OSTD's `register_bottom_half_handler`). That this crate
//! cannot see the layers above is a cargo fact: it does not depend on them.
//!
//! Rules for the code in this crate:
//! - every `unsafe` block has a `// SAFETY:` comment naming the conditions
//!   that make it sound; every `unsafe fn` has a `# Safety` section;
//! - nothing here allocates or takes a lock on the paths the machine-check
//!   and fault handlers run before they call the kernel's handler;
//! - locks that interrupt handlers may take are [`sync::IrqMutex`]es, held for
//!   short critical sections with interrupts off. Lock order (outer first):
//!   scheduler (kernel) -> heap -> page tables -> frames; the console is a
//!   leaf.
//! - one CPU today, designed for several: per-CPU state is indexed by
//!   [`arch::cpu::cpu_index`], and nothing relies on "interrupts off means
//!   exclusive" across CPUs.
#![no_std]
#![feature(abi_x86_interrupt)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_debug_implementations)]

extern crate alloc;

#[macro_use]
pub mod registry;

pub mod acpi;
pub mod arch;
pub mod console;
pub mod copy;
pub mod firmware;
pub mod mce;
pub mod mm;
pub mod power;
pub mod sync;
pub mod task;
pub mod time;
pub mod trap;
pub mod uaccess;

pub use bootloader_api::BootInfo;

/// What [`init`] found, for the boot log.
#[derive(Debug, Clone, Copy)]
pub struct BootReport {
    /// CPU features.
    pub features: arch::cpu::Features,
    /// The TSC frequency in Hz.
    pub tsc_hz: u64,
    /// The cache-line write-back instruction the copies use.
    pub flush: copy::FlushInsn,
    /// Machine-check setup (None: the CPU has no machine-check architecture).
    pub mca: Option<mce::McaSetup>,
    /// Memory setup.
    pub memory: mm::MemInfo,
    /// ACPI: None without an RSDP.
    pub acpi: Option<Result<acpi::AcpiSummary, acpi::AcpiInitError>>,
}

/// The bootloader configuration the kernel's entry point must use: a
/// physical-memory mapping at the kernel's direct-map offset (used while the
/// hal builds its own tables) and all other bootloader mappings in the top
/// PML4 slots.
pub const BOOTLOADER_CONFIG: bootloader_api::BootloaderConfig = {
    use bootloader_api::config::{BootloaderConfig, Mapping};
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::FixedAddress(fsdax_mm::layout::PHYS_OFFSET));
    config.mappings.dynamic_range_start = Some(fsdax_mm::layout::BOOTLOADER_DYNAMIC_START);
    config.kernel_stack_size = 256 * 1024;
    config
};

/// Opens the console and notes the boot time: the first thing the kernel
/// calls, so it can print within a moment of starting.
pub fn early_init() {
    static DONE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if !DONE.swap(true, core::sync::atomic::Ordering::Relaxed) {
        time::mark_boot();
        console::init();
    }
}

/// Brings the rest of the machine up, with interrupts off: GDT/TSS,
/// SYSCALL and the per-CPU area, IDT, CPU features (NX, global pages, the
/// FPU/SSE for processes, SMEP/SMAP), TSC calibration, the flush instruction, machine checks,
/// the kernel's own page tables and heap, and ACPI (if the bootloader found
/// an RSDP). The timer is started separately ([`time::start_timer`]) once
/// the kernel has registered its handlers.
pub fn init(boot: &'static mut BootInfo) -> BootReport {
    early_init();
    arch::gdt::init();
    arch::entry::init();
    arch::idt::init();
    let features = arch::cpu::features();
    arch::cpu::enable_paging_features(&features);
    arch::cpu::enable_user_mode_features(&features);
    let tsc_hz = time::calibrate_tsc();
    let flush = copy::init(&features);
    let mca = mce::init(&features);
    let memory = mm::init(boot, &features);
    let acpi = boot.rsdp_addr.into_option().map(acpi::init);
    BootReport { features, tsc_hz, flush, mca, memory, acpi }
}
