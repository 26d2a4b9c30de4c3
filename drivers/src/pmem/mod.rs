//! Persistent-memory devices, without the hardware:
//!
//! - [`device`]: one pmem region, [`PmemDevice`], over media the embedder
//!   provides ([`PmemMedia`]: the kernel hal's `PmemRegion` with its
//!   machine-check-safe and flushing copies, or a test fake). Range-checked
//!   reads, writes and recovery writes, the bad-block list, the holder (the
//!   mounted file system) and failure notification. It implements
//!   [`fsdax_pmem_api::Pmem`], so a file system mounts on `&PmemDevice`.
//! - [`poison`]: the bad-block list ([`PoisonList`]) and the lock-free queue
//!   ([`PoisonRing`]) from the `#MC` handler.
//!
//! Both are safe code; the copies that need `unsafe` live in `kernel/hal`.
#![forbid(unsafe_code)]

pub mod device;
pub mod poison;

pub use device::{
    DeviceLock, DeviceState, DeviceStats, Holder, HolderError, MfFlags, PmemDevice, PmemError, PmemMedia, CACHE_LINE,
    PAGE_SIZE,
};
pub use fsdax_pmem_api::{MediaError, Pmem};
pub use poison::{ByteRange, DrainStats, PoisonList, PoisonListFull, PoisonRing, PoisonRingFull};
