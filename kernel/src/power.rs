//! Power off.
//!
//! Under QEMU the kernel leaves through `isa-debug-exit` with the
//! `Poweroff` code, which tells the host a clean shutdown from a crash.
//! Elsewhere it halts.

use fsdax_ktest::protocol::ExitCode;

/// Leaves the machine.
pub fn poweroff() -> ! {
    crate::info!("powering off");
    fsdax_hal::power::exit_qemu(ExitCode::Poweroff)
}

fsdax_hal::shell_command!(POWEROFF_CMD, name: "poweroff", usage: "poweroff", help: "leave the kernel (QEMU exits)", run: |_| {
    poweroff()
});
