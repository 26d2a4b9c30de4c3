//! fsdax memory-management logic: the physical frame allocator
//! ([`frame`]), the page-table mapper ([`paging`]) and the kernel's virtual
//! address map ([`layout`]).
//!
//! Everything here is plain logic that also builds and runs on the host: the
//! page-table code works through a "physical memory window" (a base virtual
//! address where physical memory is visible), which in the kernel is the
//! direct map and in host tests is an ordinary buffer. Nothing here executes
//! privileged instructions: TLB flushes are returned as [`paging::TlbFlush`]
//! values for the kernel's bottom layer (`kernel/hal`, which also owns the
//! heap, kernel stacks, address spaces and the persistent-memory mappings)
//! to carry out.
#![cfg_attr(not(test), no_std)]
#![deny(missing_debug_implementations)]

pub mod frame;
pub mod layout;
pub mod paging;

/// Size of a base page.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a 2 MiB (PMD) page.
pub const HUGE_2M: u64 = 2 << 20;
/// Size of a 1 GiB (PUD) page.
pub const HUGE_1G: u64 = 1 << 30;
