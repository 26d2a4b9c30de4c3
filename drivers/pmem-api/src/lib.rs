//! The persistent-memory interface of fsdax: what the drivers offer and the
//! file system (and the tools) use, with nothing of either.
//!
//! ```text
//!   fsdax-fs (file system)      boot (host tool: image file)
//!          \                      /
//!           fsdax-pmem-api  (this crate: trait, ranges, sizes, units)
//!          /
//!   fsdax-drivers (pmem device: poison list, holder)
//! ```
//!
//! - [`Pmem`]: byte-addressable persistent memory with fallible,
//!   partial-progress loads and stores ([`MediaError`]): a load stops at the
//!   first poisoned byte, a store into known-bad media is an error (never
//!   silently skipped), a request outside the device is
//!   [`MediaError::OutOfRange`] (never reported as poison), and a page-granular
//!   [`Pmem::recovery_write`] rewrites whole pages and clears their poison.
//! - [`ByteRange`]: the half-open byte range the whole project uses; built
//!   only through checked constructors, so `start <= end` always holds. No
//!   "length 0 means everything" conventions: an empty range is empty.
//! - The size constants, defined once for the workspace: [`PAGE_SIZE`],
//!   [`HUGE_2M`], [`HUGE_1G`], [`CACHE_LINE`].
//! - [`units`]: one parser for numbers (`123`, `0x1f`) and sizes (`256M`,
//!   `1G`, `4k`), and a formatter for byte sizes (`256 MiB`, `1.5 GiB`).
//!
//! No `unsafe`, no allocation; everything here is tested on the host.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod media;
mod range;
pub mod units;

pub use media::{checked_request, MediaError, Pmem};
pub use range::ByteRange;

/// A base page (4 KiB): the unit of mappings, recovery writes and file-system
/// blocks.
pub const PAGE_SIZE: u64 = 4096;
/// A 2 MiB huge page (PMD mapping).
pub const HUGE_2M: u64 = 2 << 20;
/// A 1 GiB huge page (PUD mapping).
pub const HUGE_1G: u64 = 1 << 30;
/// A CPU cache line: the unit of flushing, of torn writes, and of poison
/// found by a machine-check-safe copy.
pub const CACHE_LINE: u64 = 64;
