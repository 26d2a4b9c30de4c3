//! Persistent-memory devices, without the hardware: the device logic
//! ([`device`]: range checks, poison list, recovery write, holder) and the
//! per-device poison bookkeeping ([`poison`]). Mapping the SPA ranges and
//! the machine-check-safe and flushing copies are the kernel's
//! (`kernel/hal`'s `PmemRegion`), plugged in through
//! [`device::PmemMedia`]. Both modules forbid `unsafe` code.

pub mod device;
pub mod poison;

pub use device::{
    DeviceLock, DeviceState, DeviceStats, FsPmem, Holder, HolderError, MfFlags, PmemDevice, PmemError, PmemMedia,
    CACHE_LINE, PAGE_SIZE,
};
pub use poison::{ByteRange, DrainStats, PoisonList, PoisonListFull, PoisonRing, PoisonRingFull};
