//! fsdax drivers: the persistent-memory side of the machine.
//!
//! This crate holds the *pure* logic of the persistent-memory drivers, so
//! that it can be tested on the host with `cargo test`:
//!
//! - [`nfit`]: a parser for the ACPI NVDIMM Firmware Interface Table, which
//!   tells the kernel where persistent memory lives in the physical address
//!   space.
//! - [`mce`]: decoding of the machine-check registers and the severity
//!   grading that decides, inside the `#MC` handler, whether a memory error
//!   is corrected, can be handled later, must be handled now, or is fatal.
//! - [`pmem`]: per-device state: the bad-block list ([`pmem::PoisonList`])
//!   and the lock-free queue ([`pmem::PoisonRing`]) through which the `#MC`
//!   handler reports poison to ordinary kernel code.
//!
//! Design principles, in order: never panic on input from firmware or
//! hardware; no allocation and no locks in anything the `#MC` handler may
//! call; simple and clear algorithms over fast and clever ones. The modules
//! above contain no `unsafe` code (each says `#![forbid(unsafe_code)]`);
//! hardware access (port I/O, MSRs, mapping the NFIT) lives in separate
//! modules built only for the kernel target.
#![cfg_attr(not(test), no_std)]
#![deny(missing_debug_implementations)]

pub mod mce;
pub mod nfit;
pub mod pmem;

// Hardware access: port I/O and MMIO, used only by the kernel. They compile
// on the host too (so clippy sees them) but nothing on the host calls them.
pub mod apic;
pub mod fw_cfg;
pub mod pit;
pub mod serial;
