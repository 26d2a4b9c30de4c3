//! Kernel panics and faults the kernel cannot contain: a clear report on the
//! console, then QEMU exits with a distinct status (or the CPU halts).

use core::panic::PanicInfo;

use fsdax_hal::trap::Fault;
use fsdax_kcore::kill::{PanicReason, Verdict};
use fsdax_ktest::protocol::ExitCode;

use crate::task::{self, ExitReason, TaskId};

/// Registers the fault handler with the hal.
pub fn register_handlers() {
    if fsdax_hal::trap::register_fault_handler(task::on_fault).is_err() {
        crate::error!("panic: a fault handler was already registered");
    }
}

/// A fault the kernel cannot contain to one task: report and stop.
pub fn kernel_fault(fault: &Fault, task: TaskId, name: &str, why: PanicReason) -> ! {
    fsdax_hal::arch::cpu::disable_interrupts();
    crate::log::emergency(format_args!(
        "\nKERNEL PANIC: {fault}\n  in task {task} ({name}), which cannot be killed for it: {why}; RFLAGS {:#x}\n",
        fault.rflags
    ));
    if let Some(guard) = fault.stack_guard_page() {
        crate::log::emergency(format_args!("  the fault is on the guard page {guard:#x}: a kernel stack overflowed\n"));
    }
    fsdax_hal::power::exit_qemu(ExitCode::KernelPanic)
}

/// A panic in an ordinary task that ran with interrupts on and holds no
/// sleeping lock kills that task, like a fault; anywhere else it is a kernel
/// panic (the kill rule, `fsdax_kcore::kill`).
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let interrupts_on = fsdax_hal::arch::cpu::interrupts_enabled();
    fsdax_hal::arch::cpu::disable_interrupts();
    let (id, name, verdict) = task::failure_verdict(interrupts_on);
    let name = name.as_str();
    match verdict {
        Verdict::KillNow => {
            crate::log::emergency(format_args!("task {id} ({name}) killed: {info}\n"));
            task::exit(ExitReason::Panicked)
        }
        Verdict::Panic(why) => crate::log::emergency(format_args!(
            "\nKERNEL PANIC: {info}\n  in task {id} ({name}), which cannot be killed for it: {why}\n"
        )),
        Verdict::Defer | Verdict::Refuse => {
            crate::log::emergency(format_args!("\nKERNEL PANIC: {info}\n  in task {id} ({name})\n"))
        }
    }
    fsdax_hal::power::exit_qemu(ExitCode::KernelPanic)
}
