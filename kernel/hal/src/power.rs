//! Leaving the machine: QEMU's exit status (isa-debug-exit), or halting.

use fsdax_ktest::protocol::ExitCode;

/// Leaves QEMU with `code` (QEMU exits with status `2 * code + 1`); halts if
/// the machine has no isa-debug-exit device.
pub fn exit_qemu(code: ExitCode) -> ! {
    crate::arch::port::debug_exit(code as u32);
    halt_forever()
}

/// Stops this CPU for good: interrupts off, `hlt` in a loop.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
