//! The Linux x86_64 user ABI that fsdax speaks, as plain data and pure
//! functions, tested on the host.
//!
//! A static program built for Linux (`musl-gcc -static`, Rust's
//! `x86_64-unknown-linux-musl`) sees the kernel only through this ABI: the
//! system-call numbers and `-errno` return convention, the layout of the
//! structures it passes by pointer, the initial stack an ELF program starts
//! with, and the frame a signal handler runs on. Everything here is decided
//! without touching the machine, so it is written once and checked against
//! Linux's own definitions (`linux-raw-sys`) in host tests:
//!
//! - [`linux`]: the constants (`__NR_*`, `E*`, `O_*`, `MAP_*`, ioctl
//!   numbers, ...) re-exported from `linux-raw-sys`, the generated bindings
//!   of Linux's uapi headers;
//! - [`Errno`]: an errno with its name, and the `-errno` return value;
//! - [`wire`]: explicit little-endian encoders and decoders for every
//!   structure the kernel reads from or writes to user memory (`stat`,
//!   `statx`, `siginfo`, `sigaction`, `fiemap`, ...). Encoding field by field
//!   means no padding byte of kernel memory ever reaches a process, and no
//!   `unsafe` transmutes;
//! - [`load`]: the loading plan of a static or static-pie ELF64 executable,
//!   with a clear error for anything fsdax cannot run;
//! - [`stack`]: the initial stack (argc, argv, envp, auxv);
//! - [`request`]: system-call arguments decoded into typed requests with
//!   Linux's validation rules and error numbers (open and mmap flags,
//!   clone, wait, fallocate modes, prctl, ...);
//! - [`signal`]: signal numbers, default actions, masks, and the
//!   `rt_sigframe` a handler runs on, with `rt_sigreturn`'s checks.
//!
//! Principles: every value that comes from a process is validated before it
//! is used; nothing here panics on any input; no `unsafe`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]

extern crate alloc;

mod errno;
pub mod load;
pub mod request;
pub mod signal;
pub mod stack;
pub mod wire;

pub use errno::Errno;

/// Linux's uapi constants and structure definitions for x86_64
/// (`linux-raw-sys`): the one source of every number in the ABI.
pub mod linux {
    pub use linux_raw_sys::{errno, general, ioctl, prctl, system};
}

/// The lowest address a process may map (Linux's default `mmap_min_addr`):
/// page 0 stays unmapped so that NULL dereferences fault.
pub const USER_MIN: u64 = 0x1_0000;

/// One past the highest user address. The last page below the canonical
/// boundary (`0x0000_8000_0000_0000`) is kept unmapped, so that a `SYSCALL`
/// can never return to a non-canonical `RIP` through a fall-through from the
/// last user page (the Intel SYSRET erratum).
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;

/// Whether `[addr, addr + len)` lies inside the user half (no overflow).
pub fn is_user_range(addr: u64, len: u64) -> bool {
    addr.checked_add(len).is_some_and(|end| end <= USER_END) && addr < USER_END
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_range_rejects_kernel_and_overflow() {
        assert!(is_user_range(0x40_0000, 4096));
        assert!(is_user_range(0, 0));
        assert!(!is_user_range(USER_END - 8, 16));
        assert!(!is_user_range(0xffff_8000_0000_0000, 1));
        assert!(!is_user_range(u64::MAX - 2, 8));
        assert!(is_user_range(USER_END - 4096, 4096));
    }
}
