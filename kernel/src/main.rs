//! The fsdax kernel.
//!
//! Three layers (see docs/design.md):
//! - `fsdax-hal` (kernel/hal): the machine, behind small safe types; the
//!   only code of the kernel the compiler cannot check for memory safety
//!   lives there. It calls up only through handlers registered here.
//! - `fsdax-kcore` (kernel/core): the kernel's decisions as pure,
//!   host-tested logic (scheduler core, kill rule, machine-check dispatch,
//!   memory-failure routing, copy_mc reconciliation, command line).
//! - this crate: the glue and the policy: tasks, time, sleeping locks,
//!   machine-check handling, pmem devices, the file system, the console, the
//!   test harness and benchmarks. It denies unchecked code (below) and has
//!   none.
//!
//! Boot path: the hal brings the machine up (console first, so something is
//! printed within a moment), the kernel registers its handlers, starts the
//! scheduler and the timer, finds persistent memory, and runs the mode the
//! command line asks for: `shell` (default), `test`, `bench` or `exec PATH
//! [ARGS...]` (run one program from the file system, then leave QEMU).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

mod acpi;
mod bench;
mod cmdline;
mod dax;
mod freeze;
mod fsys;
mod harness;
mod log;
mod mce;
mod mem;
mod memfail;
mod panic;
mod pmem;
mod power;
mod process;
mod shell;
mod sync;
mod syscall;
mod task;
mod time;
mod vfs;

use bootloader_api::{entry_point, BootInfo};
use fsdax_hal::mm::MemInfo;

entry_point!(kmain, config = &fsdax_hal::BOOTLOADER_CONFIG);

fn kmain(boot: &'static mut BootInfo) -> ! {
    fsdax_hal::early_init();
    log::init();
    kprintln!("fsdax {} booting", env!("CARGO_PKG_VERSION"));
    let report = fsdax_hal::init(boot);
    let f = report.features;
    info!(
        "cpu: {} TSC {} MHz{}; clwb {} clflushopt {} 1G pages {} MCA {} SMEP {} SMAP {}; pmem flush: {}",
        if f.vendor_intel { "Intel" } else { "non-Intel" },
        report.tsc_hz / 1_000_000,
        if f.invariant_tsc { " (invariant)" } else { "" },
        yes_no(f.clwb),
        yes_no(f.clflushopt),
        yes_no(f.pdpe1gb),
        yes_no(f.mca),
        yes_no(f.smep),
        yes_no(f.smap),
        report.flush.name()
    );
    match report.mca {
        Some(m) => info!(
            "mce: MCG_CAP {:#x}, {} banks, software error recovery {}; CR4.MCE on",
            m.cap.0,
            m.banks,
            yes_no(m.ser)
        ),
        None => warn!("mce: no machine-check architecture"),
    }
    log_memory(&report.memory);
    match report.acpi {
        Some(Ok(a)) => info!("acpi: RSDP at {:#x}, revision {}, {} tables", a.rsdp, a.revision, a.tables),
        Some(Err(e)) => error!("acpi: {e}"),
        None => warn!("acpi: the bootloader found no RSDP"),
    }

    panic::register_handlers();
    mce::register_handler();
    task::init();
    process::init();
    dax::layout::init();
    dax::rmap::register_memory_failure();
    let apic_hz = time::start();
    info!("apic: timer {} kHz (/16), tick {} Hz", apic_hz / 1000, time::TICK_HZ);
    fsdax_hal::arch::cpu::enable_interrupts();
    time::init_wall_clock();
    pmem::init();
    pmem::start_worker();

    let (cmdline, from_fw_cfg) = cmdline::read();
    if let Some(level) = cmdline.log_level {
        log::set_level(level);
    }
    if let Some(bad) = &cmdline.bad_log_level {
        warn!("cmdline: loglevel={bad} is not a level (error, warn, info, debug); keeping info");
    }
    info!("cmdline: {cmdline}{}", if from_fw_cfg { "" } else { " (no fw_cfg command line: the default)" });
    let args: alloc::vec::Vec<&str> = cmdline.args.iter().map(|s| s.as_str()).collect();
    match cmdline.mode.as_str() {
        "test" => harness::run_and_exit(&args),
        "bench" => bench::run_and_exit(&args),
        "exec" => process::shell::run_exec_mode(&args),
        "run" => process::shell::run_system_mode(&args),
        "shell" => {
            // `shell nomount` leaves pmem0 alone (to look at it raw first).
            if args.contains(&"nomount") {
                info!("shell nomount: pmem0 is not mounted at boot (`fs mount` mounts it)");
            } else {
                process::shell::mount_at_boot();
            }
            shell::run()
        }
        other => {
            error!("unknown mode `{other}` (modes: shell, test, bench, exec, run); starting the shell");
            shell::run()
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn log_memory(m: &MemInfo) {
    let f = fsdax_hal::mm::frame_stats();
    info!(
        "memory: {} MiB usable, {} MiB free, highest address {:#x}; own page tables live (direct map {}x1G {}x2M {}x4K, {} bootloader leaves copied); heap {} MiB, grows on demand",
        f.usable / 256,
        f.free / 256,
        m.max_phys,
        m.direct_map.pages_1g,
        m.direct_map.pages_2m,
        m.direct_map.pages_4k,
        m.copied_leaves,
        m.heap_initial >> 20
    );
}
