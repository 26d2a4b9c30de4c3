//! Kernel logging: levels and uptime stamps over the hal's serial console.
//! Fault, panic and machine-check reports use [`emergency`], which writes
//! without the console lock.

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

pub use fsdax_kcore::cmdline::LogLevel as Level;

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

fn tag(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
    }
}

/// Sets the most verbose level printed.
pub fn set_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Connects the test library's mismatch reports to the console.
pub fn init() {
    fsdax_ktest::MISMATCH_SINK.set(|args| crate::kprintln!("{args}"));
}

/// Prints to the console (no timestamp, no newline added).
pub fn print(args: fmt::Arguments<'_>) {
    fsdax_hal::console::print(args);
}

/// Prints one log line at `level`, prefixed with the uptime.
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    if level as u8 > MAX_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let us = fsdax_hal::time::uptime_us();
    if level <= Level::Warn && MIRROR.load(Ordering::Relaxed) {
        fsdax_hal::console::print_all(&[format_args!("@@fsdax dmesg: "), args, format_args!("\n")]);
    }
    fsdax_hal::console::print_all(&[
        format_args!("[{:5}.{:06}] {} ", us / 1_000_000, us % 1_000_000, tag(level)),
        args,
        format_args!("\n"),
    ]);
}

/// Whether warnings and errors are repeated as `@@fsdax dmesg:` status
/// lines (the `run` mode, for the host's runners).
static MIRROR: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Repeats every warning and error as a `@@fsdax dmesg: ...` line (on) or
/// stops (off).
pub fn mirror_warnings_as_status(on: bool) {
    MIRROR.store(on, Ordering::Relaxed);
}

/// Writes without taking the console lock (panic, fault, machine check).
pub fn emergency(args: fmt::Arguments<'_>) {
    fsdax_hal::console::emergency(args);
}

#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::log::print(format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! kprintln {
    () => { $crate::log::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::log::print(format_args!("{}\n", format_args!($($arg)*))) };
}
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, format_args!($($arg)*)) };
}
