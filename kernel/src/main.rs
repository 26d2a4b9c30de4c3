//! The fsdax kernel.
//!
//! Boot path: serial console first (so something is printed within a
//! moment), then GDT/TSS/IDT, TSC calibration, the kernel's own page tables
//! and heap, the local APIC timer, the scheduler, and finally the mode the
//! command line asks for: `shell` (default), `test` or `bench`.
#![no_std]
#![no_main]
#![feature(abi_x86_interrupt)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod acpi;
mod arch;
mod bench;
mod cmdline;
mod fsys;
mod harness;
mod log;
mod mce;
mod mem;
mod panic;
mod pmem;
mod power;
mod shell;
mod task;
mod time;

use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::{entry_point, BootInfo};
use fsdax_mm::layout;

/// What the kernel asks of the bootloader: a physical-memory mapping at the
/// same offset as the kernel's own direct map (used while the kernel builds
/// its tables), and everything else it places in the top PML4 slots.
pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::FixedAddress(layout::PHYS_OFFSET));
    config.mappings.dynamic_range_start = Some(layout::BOOTLOADER_DYNAMIC_START);
    config.kernel_stack_size = 256 * 1024;
    config
};

entry_point!(kmain, config = &BOOTLOADER_CONFIG);

fn kmain(boot: &'static mut BootInfo) -> ! {
    time::mark_boot();
    log::init();
    kprintln!("fsdax {} booting", env!("CARGO_PKG_VERSION"));
    arch::gdt::init();
    arch::idt::init();
    let features = arch::cpu::features();
    arch::cpu::enable_paging_features(&features);
    let tsc_hz = time::calibrate_tsc();
    let flush = arch::copy::init(&features);
    info!(
        "cpu: {} TSC {} MHz{}; clwb {} clflushopt {} 1G pages {} MCA {}; pmem flush: {}",
        if features.vendor_intel { "Intel" } else { "non-Intel" },
        tsc_hz / 1_000_000,
        if features.invariant_tsc { " (invariant)" } else { "" },
        features.clwb,
        features.clflushopt,
        features.pdpe1gb,
        features.mca,
        flush.name()
    );
    match mce::init(&features) {
        Some(m) => info!("mce: MCG_CAP {:#x}, {} banks, SER {}; CR4.MCE on", m.cap, m.banks, m.ser),
        None => warn!("mce: no machine-check architecture"),
    }

    let m = mem::init(boot, &features);
    let f = mem::frame_stats();
    info!(
        "memory: {} MiB usable, {} MiB free, highest address {:#x}; own page tables live (direct map {}x1G {}x2M {}x4K, {} bootloader leaves copied)",
        f.usable / 256,
        f.free / 256,
        m.max_phys,
        m.direct_map.pages_1g,
        m.direct_map.pages_2m,
        m.direct_map.pages_4k,
        m.copied_leaves
    );
    match boot.rsdp_addr.into_option() {
        Some(rsdp) => match acpi::init(rsdp) {
            Ok(a) => info!("acpi: RSDP at {rsdp:#x}, revision {}, {} tables", a.revision, a.tables.len()),
            Err(e) => error!("acpi: tables at RSDP {rsdp:#x} unreadable: {e:?}"),
        },
        None => warn!("acpi: no RSDP"),
    }

    // SAFETY: boot is single-threaded with interrupts off.
    unsafe { fsdax_drivers::pit::disable_legacy_pic() };
    let apic_hz = time::init_apic_timer();
    info!("apic: timer {} kHz (/16), tick {} Hz", apic_hz / 1000, time::TICK_HZ);
    task::init();
    x86_64::instructions::interrupts::enable();
    pmem::init();
    pmem::start_worker();

    let (cmdline, from_fw_cfg) = cmdline::read();
    if let Some(level) = cmdline.log_level {
        log::set_level(level);
    }
    info!(
        "cmdline: {:?} {:?}{}",
        cmdline.mode,
        cmdline.args,
        if from_fw_cfg { "" } else { " (no fw_cfg command line: default)" }
    );
    let args: alloc::vec::Vec<&str> = cmdline.args.iter().map(|s| s.as_str()).collect();
    match cmdline.mode.as_str() {
        "test" => harness::run_and_exit(&args),
        "bench" => bench::run_and_exit(&args),
        "shell" => shell::run(),
        other => {
            error!("unknown mode {other:?}; starting the shell");
            shell::run()
        }
    }
}
