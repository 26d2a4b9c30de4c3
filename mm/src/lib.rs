//! fsdax memory management: physical frames, page tables, the virtual address
//! map, DAX mappings and (later) memory failure.
//!
//! Everything here is plain logic that also builds and runs on the host: the
//! page-table code works through a "physical memory window" (a base virtual
//! address where physical memory is visible), which in the kernel is the
//! direct map and in host tests is an ordinary buffer. Nothing here executes
//! privileged instructions: TLB flushes are returned as [`paging::TlbFlush`]
//! values for the kernel's arch code to carry out.
#![cfg_attr(not(test), no_std)]
#![deny(missing_debug_implementations)]

extern crate alloc;

pub mod frame;
pub mod layout;
pub mod paging;
pub mod vma;

/// Page sizes (base, 2 MiB PMD, 1 GiB PUD), defined once for the workspace.
pub use fsdax_pmem_api::{HUGE_1G, HUGE_2M, PAGE_SIZE};
