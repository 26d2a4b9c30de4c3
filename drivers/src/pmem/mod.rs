//! Persistent-memory devices.
//!
//! For now this holds the hardware-independent part: the per-device poison
//! bookkeeping ([`poison`]). The device itself (mapping the SPA range found
//! in the NFIT, machine-check-safe reads, flushing writes) will live beside
//! it. (No `forbid(unsafe_code)` here: the device code will need
//! `unsafe`; [`poison`] forbids it for itself.)

pub mod device;
pub mod poison;

pub use device::{
    DeviceLock, DeviceState, DeviceStats, FsPmem, Holder, HolderError, MfFlags, PmemDevice, PmemError, PmemMedia,
    CACHE_LINE, PAGE_SIZE,
};
pub use poison::{ByteRange, DrainStats, PoisonList, PoisonListFull, PoisonRing, PoisonRingFull};
