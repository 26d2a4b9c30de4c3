//! The fsdax file system: a `no_std` + `alloc` DAX file system for
//! persistent memory.
//!
//! Design in one paragraph (details in `docs/FORMAT.md`): all metadata lives
//! in DRAM indexes (B-trees) and is persisted as a checkpoint (two copies,
//! in extents of the data area) plus a redo log of checksummed transaction records, each made
//! durable by store + flush + fence through the [`Pmem`] trait. File data
//! lives in 4 KiB blocks, allocated to keep 2 MiB-aligned 2 MiB extents for
//! huge DAX mappings. Extents can be shared (reflink); a persistent reverse
//! map and reference counts say who owns every physical block, which is
//! what memory-failure handling needs.
//!
//! Principles: simple and checkable over clever; every on-media value is
//! validated before use; no `unsafe`; a corrupt image is an error (or a
//! read-only mount), never a panic; a media error fails the operation and
//! commits nothing, and a metadata write that fails shuts the file system
//! down read-only rather than report anything durable that is not.
//!
//! Modules: `fs` ([`FileSystem`]: mount and recovery, transactions, namespace,
//! data, reflink, DAX, reverse map, fsck: one file per seam), `state` (the
//! metadata and its mutations, checkpoint codec, invariants), `space` (free,
//! bad, reference counts, reverse map, allocation policy), [`format`]
//! (on-media structures), [`pmem`] (the trait, re-exported, and
//! [`MemPmem`]), [`sim`] (the crash simulator), [`cli`] (the command front
//! end shared by the kernel console and the host tool).
//!
//! # What the kernel calls
//! * mount on anything that implements [`Pmem`] (the persistent-memory
//!   trait of `fsdax-pmem-api`; the kernel's pmem device does): `load` is
//!   the machine-check-safe copy, `store` + `flush` + `fence` are
//!   `clwb`/`sfence`, and loads and stores report poison with partial
//!   progress;
//! * [`FileSystem::estimate_mount`] first: the DRAM a mount of the image
//!   needs ([`MemoryEstimate`]), read without holding the checkpoint, so a
//!   kernel whose allocation failures are fatal can refuse instead;
//! * [`FileSystem::mount`] (replays the log), [`FileSystem::unmount`];
//! * namespace: `lookup`, `create`, `mkdir`, `unlink`, `rmdir`, `rename`,
//!   `readdir`, `stat`; data: `read`, `write`, `append`, `truncate`,
//!   `fallocate`, `fsync`; sharing: `reflink`, `reflink_range`,
//!   `dedupe_range`;
//! * DAX faults: [`FileSystem::bmap`] (read fault: file offset -> physical
//!   extent, with `shared`), [`FileSystem::fiemap`] (every mapped run),
//!   [`FileSystem::bmap_write`] (write fault:
//!   allocate / unshare durably, then map; MAP_SYNC semantics);
//! * memory failure: [`FileSystem::rmap_query`] (physical range -> every
//!   owner), [`FileSystem::mark_bad`] / [`FileSystem::clear_bad`]
//!   (persistent bad-block list).
//!
//! ```
//! use fsdax_fs::{FileSystem, MemPmem, MkfsOptions};
//!
//! let mut fs = FileSystem::mkfs(MemPmem::new(16 << 20), MkfsOptions::default()).unwrap();
//! let f = fs.create(fs.root(), b"hello").unwrap();
//! fs.write(f, 0, b"world").unwrap();
//! let copy = fs.create(fs.root(), b"copy").unwrap();
//! fs.reflink(f, copy).unwrap(); // shares the block, copies nothing
//! let phys = fs.bmap(copy, 0).unwrap().phys.unwrap();
//! assert_eq!(fs.rmap_query(phys, 1).len(), 2); // both owners are found
//! let fs = FileSystem::mount(fs.into_pmem()).unwrap(); // "crash" + recovery
//! let mut buf = [0u8; 5];
//! fs.read(copy, 0, &mut buf).unwrap();
//! assert_eq!(&buf, b"world");
//! fs.fsck().unwrap();
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cli;
mod codec;
pub mod crc;
mod error;
pub mod format;
mod fs;
pub mod pmem;
pub mod sim;
mod space;
mod state;

pub use error::{Corruption, FsError, Result};
pub use format::{BLOCK_SIZE, HUGE_BLOCKS, MAX_EXTENT, MAX_FILE_SIZE, MAX_NAME};
pub use fs::{
    BadBlockReport, Bmap, Damage, DirEntry, Falloc, FileExtent, FileSystem, FsckReport, LogStatus, MemoryEstimate,
    MetaKind, MkfsOptions, MountInfo, MountOptions, ReadCopier, RmapOwner, RmapRecord, Stat, WriteCopier, RMAP_BAD,
    RMAP_METADATA, RMAP_SHARED,
};
pub use pmem::{ByteRange, MediaError, MemPmem, Pmem};
pub use space::FsStats;
pub use state::{FileKind, Ino, ROOT_INO};
