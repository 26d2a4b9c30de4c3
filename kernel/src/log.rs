//! The serial console and kernel logging with levels and TSC timestamps.
//!
//! Every line goes through one lock, held with interrupts disabled so that a
//! preempted writer never blocks the others. Panic and machine-check reports
//! use [`emergency`], which writes without the lock.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};

use fsdax_drivers::serial::{Console, RawWriter, COM1};
use spin::Mutex;
use x86_64::instructions::interrupts::without_interrupts;

static CONSOLE: Mutex<Option<Console>> = Mutex::new(None);

/// Log levels, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "error" => Level::Error,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Sets the most verbose level printed.
pub fn set_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Opens the console. Call first thing at boot.
pub fn init() {
    // SAFETY: COM1 is the PC's first UART; this is the only `Console` on it.
    let console = unsafe { Console::new(COM1) };
    *CONSOLE.lock() = Some(console);
    fsdax_ktest::MISMATCH_SINK.set(|args| crate::kprintln!("{args}"));
}

/// Prints to the console (no timestamp, no newline added).
pub fn print(args: fmt::Arguments<'_>) {
    without_interrupts(|| {
        if let Some(c) = CONSOLE.lock().as_mut() {
            let _ = c.write_fmt(args);
        }
    });
}

/// Prints one log line at `level`, prefixed with the uptime.
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    if level as u8 > MAX_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let us = crate::time::uptime_us();
    without_interrupts(|| {
        if let Some(c) = CONSOLE.lock().as_mut() {
            let _ = write!(c, "[{:5}.{:06}] {} ", us / 1_000_000, us % 1_000_000, level.tag());
            let _ = c.write_fmt(args);
            let _ = c.write_str("\n");
        }
    });
}

/// A received console byte, if any.
pub fn read_byte() -> Option<u8> {
    without_interrupts(|| CONSOLE.lock().as_mut().and_then(Console::try_read))
}

/// Writes without taking the console lock (panic, machine check).
pub fn emergency(args: fmt::Arguments<'_>) {
    let _ = RawWriter(COM1).write_fmt(args);
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
