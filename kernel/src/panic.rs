//! Kernel panics and faults in the kernel itself: a clear report on the
//! console, then QEMU exits with a distinct status (or the CPU halts).

use core::panic::PanicInfo;

use fsdax_ktest::protocol::ExitCode;

use crate::arch::idt::Fault;
use crate::task::TaskId;

/// Leaves QEMU with `code` (isa-debug-exit); halts if there is no such device.
pub fn exit_qemu(code: ExitCode) -> ! {
    use x86_64::instructions::port::Port;
    // SAFETY: port 0xf4 is QEMU's isa-debug-exit in our configuration; on
    // other machines the write is ignored and we halt below.
    unsafe { Port::<u32>::new(0xf4).write(code as u32) };
    halt_forever()
}

pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// A fault in kernel code (or in a critical task): report and stop.
pub fn kernel_fault(fault: &Fault, task: TaskId) -> ! {
    x86_64::instructions::interrupts::disable();
    crate::log::emergency(format_args!("\nKERNEL PANIC: {fault}\n  in task {task}; RFLAGS {:#x}\n", fault.rflags));
    exit_qemu(ExitCode::KernelPanic)
}

/// A panic in an ordinary task that ran with interrupts on (so it holds no
/// kernel lock) kills that task, like a fault; anywhere else it is a kernel
/// panic.
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    let interrupts_on = x86_64::instructions::interrupts::are_enabled();
    x86_64::instructions::interrupts::disable();
    let (task, killable) = crate::task::current_for_machine_check(interrupts_on);
    if killable {
        crate::log::emergency(format_args!("task {task} killed: {info}\n"));
        crate::task::exit(crate::task::ExitReason::Panicked);
    }
    crate::log::emergency(format_args!("\nKERNEL PANIC: {info}\n  in task {task}\n"));
    exit_qemu(ExitCode::KernelPanic)
}
