//! Machine-check entry. Issue 3 turns this into the full handler (banks,
//! severity grading, machine-check-safe fixups, memory_failure); until then
//! every machine check is fatal, with a report.

use fsdax_ktest::protocol::ExitCode;
use x86_64::structures::idt::InterruptStackFrame;

pub fn on_machine_check(frame: &InterruptStackFrame) -> ! {
    crate::log::emergency(format_args!(
        "\nFATAL MACHINE CHECK at RIP {:#x}\n",
        frame.instruction_pointer.as_u64()
    ));
    crate::panic::exit_qemu(ExitCode::FatalMachineCheck)
}
