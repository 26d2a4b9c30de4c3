//! fsdax memory management: physical frames, page tables, the virtual address
//! map, the areas of a process address space, DAX mappings and memory
//! failure.
//!
//! - [`frame`]: the physical frame allocator; [`paging`]: page tables
//!   (4K/2M/1G map, unmap, change rights, split a 2 MiB page);
//!   [`layout`]: the kernel's virtual address map;
//! - [`vma`]: the areas of an address space;
//! - [`dax`]: the DAX fault decision (2 MiB or 4 KiB page, zero page,
//!   SIGBUS beyond EOF, the fault-around window); [`dirty`]: pages to write back on `fsync`/`msync`;
//!   [`mappers`]: which address spaces map which range of a file;
//! - [`pins`]: reference counts of mapped persistent-memory pages, idle at
//!   0 (what truncate waits for after unmapping a range);
//! - [`failure`]: on poison or device removal, what to unmap and whom to
//!   signal.
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

extern crate alloc;

pub mod dax;
pub mod dirty;
pub mod failure;
pub mod frame;
pub mod layout;
pub mod mappers;
pub mod paging;
pub mod pins;
pub mod vma;

/// Page sizes (base, 2 MiB PMD, 1 GiB PUD), defined once for the workspace.
pub use fsdax_pmem_api::{HUGE_1G, HUGE_2M, PAGE_SIZE};
