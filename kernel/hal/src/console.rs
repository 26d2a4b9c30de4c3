//! The serial console (the 16550 UART on COM1): locked output for ordinary
//! code, lock-free output for fault, panic and machine-check reports, and
//! input bytes.

use core::fmt::{self, Write};

use fsdax_drivers::serial::{Console, RawWriter, COM1};

use crate::sync::IrqMutex;

static CONSOLE: IrqMutex<Option<Console>> = IrqMutex::new(None);

/// Opens the console. Called by [`crate::init`] first thing.
pub(crate) fn init() {
    let mut console = CONSOLE.lock();
    if console.is_none() {
        // SAFETY: COM1 is the PC's first UART (QEMU's serial console), and
        // this is the only `Console` ever made for it; the lock-free
        // `emergency` writer only sends bytes, without reprogramming it.
        *console = Some(unsafe { Console::new(COM1) });
    }
}

/// Writes formatted text (under the console lock, interrupts off, so lines
/// from different tasks do not interleave mid-line).
pub fn print(args: fmt::Arguments<'_>) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        let _ = c.write_fmt(args);
    }
}

/// Writes bytes as they are (a process's output; `\n` becomes `\r\n`).
pub fn write_bytes(bytes: &[u8]) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        c.write_bytes(bytes);
    }
}

/// Writes several pieces under one lock acquisition (one log line).
pub fn print_all(parts: &[fmt::Arguments<'_>]) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        for p in parts {
            let _ = c.write_fmt(*p);
        }
    }
}

/// Writes without taking the console lock: for panic, fault and
/// machine-check reports, when the interrupted code may hold the lock.
/// Output may interleave with a line that was being written.
pub fn emergency(args: fmt::Arguments<'_>) {
    let _ = RawWriter(COM1).write_fmt(args);
}

/// A received console byte, if one is waiting.
pub fn read_byte() -> Option<u8> {
    CONSOLE.lock().as_mut().and_then(Console::try_read)
}
