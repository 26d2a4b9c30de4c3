//! One persistent-memory device (a pmem region): the logic of Linux's
//! `drivers/nvdimm/pmem.c` and the DAX holder of `drivers/dax/super.c`,
//! without the hardware.
//!
//! [`PmemDevice`] is generic over two things the embedder plugs in:
//!
//! - [`PmemMedia`]: raw access to the mapped region. The kernel implements
//!   it over its DAX mapping (machine-check-safe `copy_mc` with an exception
//!   table, `movnti`/`clwb` flushing copies, `sfence`); host tests use a
//!   `Vec<u8>` with injectable poison. The copy routines are chosen once, by
//!   the type, not by an indirect call per operation.
//! - [`DeviceLock`]: the lock around the device's mutable state
//!   ([`DeviceState`]: bad-block list, holder, counters). The kernel's
//!   disables interrupts; tests use `std::sync::Mutex`.
//!
//! What the device guarantees:
//!
//! - Every offset and length is range-checked with overflow-safe arithmetic:
//!   a bad request is [`PmemError::OutOfRange`], never a panic. Nothing here
//!   panics on any input.
//! - Reads consult the bad-block list first and never touch a listed byte;
//!   poison the list did not know is discovered by the machine-check-safe
//!   copy, recorded (one cache line) and reported the same way.
//! - Plain writes and zeroing refuse listed poison; only
//!   [`PmemDevice::recovery_write`] (whole pages) writes there and clears it
//!   (`dax_recovery_write`). Through the [`Pmem`] trait a store stops at the
//!   first listed byte and reports it with the number of bytes stored
//!   before it: a store is never silently skipped.
//! - The media copies run outside the lock, except for the poison check
//!   that decides whether they may run. The holder's `notify_failure` runs
//!   outside the lock (the holder reads the device to repair it).
//! - Nothing allocates. (Cloning the holder's `Arc` only bumps a count.)
//!
//! `PmemDevice` (and `&PmemDevice`) implements [`Pmem`], the
//! persistent-memory trait of `fsdax-pmem-api`, so a file system mounts on
//! a device directly.
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(test)]
mod tests;

use alloc::sync::Arc;
use core::fmt;

use bitflags::bitflags;
use fsdax_pmem_api::{MediaError, Pmem};
/// [`PAGE_SIZE`] is the unit of [`PmemDevice::recovery_write`]; unknown
/// poison found by a read is recorded per [`CACHE_LINE`] (the granularity
/// of `copy_mc`'s knowledge).
pub use fsdax_pmem_api::{CACHE_LINE, PAGE_SIZE};

use super::poison::{ByteRange, PoisonList};

/// Raw access to one mapped region. The kernel implements it over its DAX
/// mapping (`copy_mc` with an exception table, `movnti`/`clwb` flushing
/// copies, `sfence`).
///
/// The device only ever passes ranges inside `[0, len())`.
pub trait PmemMedia {
    /// Region size in bytes.
    fn len(&self) -> u64;
    /// Whether the region has no byte.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Machine-check-safe copy of `dst.len()` bytes from `offset`; returns
    /// the number of bytes NOT copied (0 = complete). Bytes before the stop
    /// point are valid. (Linux `copy_mc_to_kernel`.)
    fn copy_mc(&self, offset: u64, dst: &mut [u8]) -> usize;
    /// Flushing copy: after `fence()` the bytes are durable.
    fn copy_flush(&self, offset: u64, src: &[u8]);
    /// Durable zeroing (flushing), e.g. non-temporal stores.
    fn zero_flush(&self, offset: u64, len: u64);
    /// Write back the cache lines covering the range.
    fn flush(&self, offset: u64, len: u64);
    /// Order earlier flushes/NT stores before later stores (`sfence`).
    fn fence(&self);
    /// Asks the media to forget the poison in `[offset, offset + len)`
    /// before a recovery write rewrites it (Linux `pmem_clear_poison`: the
    /// ACPI "clear uncorrectable error" DSM). Returns `false` if the media
    /// refused; the recovery write then fails and changes nothing (a failed
    /// clear must not be silent).
    ///
    /// The default (`true`) is for media on which rewriting the bytes is
    /// enough.
    fn clear_poison(&self, offset: u64, len: u64) -> bool {
        let _ = (offset, len);
        true
    }
}

/// A lock the embedder provides (the kernel's disables interrupts; tests use
/// std or spin).
pub trait DeviceLock<T>: Sync {
    /// A lock holding `value`.
    fn new(value: T) -> Self;
    /// Runs `f` with the lock held. The device never calls back into itself
    /// or into a holder from `f`.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

bitflags! {
    /// Kind of a memory failure passed to [`Holder::notify_failure`]
    /// (Linux `MF_ACTION_REQUIRED`, `MF_MEM_PRE_REMOVE`, ...).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MfFlags: u32 {
        /// A task consumed the poison: it must be signalled now (SIGBUS,
        /// BUS_MCEERR_AR).
        const ACTION_REQUIRED = 1;
        /// Found by a scrub or a speculative access: tasks that asked for
        /// early notification get BUS_MCEERR_AO.
        const ACTION_OPTIONAL = 2;
        /// The device is going away (unbind): unmap everything; the memory
        /// itself is good, so nothing is marked poisoned.
        const PRE_REMOVE = 4;
    }
}

/// Why a holder could not handle a failure notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderError {
    /// The holder cannot resolve the range (no reverse map, Linux
    /// `EOPNOTSUPP`): the caller falls back to generic handling.
    Unsupported,
    /// The holder could not act now (e.g. could not freeze for a
    /// pre-remove, Linux `EBUSY`); the caller may retry.
    Busy,
    /// The range held metadata that could not be repaired; the holder shut
    /// itself down (Linux `xfs_force_shutdown`).
    ShutDown,
    /// The range is outside what the holder manages.
    OutOfRange,
}

impl fmt::Display for HolderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unsupported => "it cannot resolve the range (no reverse map)",
            Self::Busy => "it cannot act now; try again",
            Self::ShutDown => "the range held metadata it could not repair; it shut down",
            Self::OutOfRange => "the range is outside what it manages",
        })
    }
}

/// The owner of the device (a mounted file system): Linux's dax
/// `holder_ops`.
pub trait Holder: Send + Sync {
    /// `offset`/`len` are device-relative; `len == u64::MAX` with
    /// [`MfFlags::PRE_REMOVE`] means the whole device.
    ///
    /// Called without the device lock held: the holder may read (and
    /// recovery-write) the device from here.
    fn notify_failure(&self, offset: u64, len: u64, flags: MfFlags) -> Result<(), HolderError>;
}

/// Errors of [`PmemDevice`] operations. Small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmemError {
    /// `[offset, offset + len)` is not inside the device (or overflows).
    OutOfRange {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
    },
    /// A recovery write must start and end on a page (4 KiB) boundary.
    Unaligned,
    /// The request hit poisoned media (EIO). `[offset, offset + len)` is
    /// the listed poisoned range from its first byte inside the request on
    /// (it may extend past the request). For a read, `copied` bytes at the
    /// start of the buffer are valid, and `copied == offset - request
    /// offset`; for a refused write, zeroing or recovery, `copied == 0` and
    /// nothing was written.
    Poisoned {
        /// First poisoned byte (device offset) at or after the request's.
        offset: u64,
        /// Length of the poisoned range from `offset`, as far as the list
        /// knows it.
        len: u64,
        /// Valid bytes at the start of a read's buffer.
        copied: usize,
    },
    /// A holder is already registered; or a recovery write is in progress
    /// (or poison arrived in its pages while it ran): retry.
    Busy,
    /// No holder is registered: the caller falls back to logging / generic
    /// handling.
    NoHolder,
    /// The holder failed to handle a notification.
    Holder(HolderError),
    /// The bad-block list was full. From [`PmemDevice::record_poison`]:
    /// the range IS recorded, but the list coarsened (some good bytes are
    /// now listed too). From [`PmemDevice::recovery_write`]: the pages were
    /// rewritten but their poison could not be unlisted (it would have
    /// split a range); they stay listed.
    PoisonListFull,
}

impl fmt::Display for PmemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfRange { offset, len } => {
                write!(f, "range {offset:#x}+{len:#x} outside the device")
            }
            Self::Unaligned => f.write_str("recovery write not page aligned"),
            Self::Poisoned { offset, len, copied } => {
                write!(f, "media error (poison) at {offset:#x}+{len:#x} after {copied} bytes")
            }
            Self::Busy => f.write_str("busy"),
            Self::NoHolder => f.write_str("no holder registered"),
            Self::Holder(e) => write!(f, "the holder failed: {e}"),
            Self::PoisonListFull => f.write_str("poison list full (coarsened)"),
        }
    }
}

/// Counters of noteworthy events, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Reads that returned [`PmemError::Poisoned`].
    pub poisoned_reads: u64,
    /// Poison found by `copy_mc` that the list did not know (then recorded).
    pub poison_discovered: u64,
    /// Writes, zeroings and stores refused (or stopped) by listed poison.
    pub refused_writes: u64,
    /// Inserts that coarsened the full list.
    pub list_coarsened: u64,
    /// Recovery writes that succeeded.
    pub recovery_writes: u64,
    /// Poisoned bytes cleared by recovery writes.
    pub cleared_bytes: u64,
    /// Recovery writes whose pages stayed listed because the full list
    /// could not split a range.
    pub unlist_refused: u64,
    /// Recovery writes during which new poison arrived in their pages.
    pub recovery_raced: u64,
    /// Recovery writes refused by [`PmemMedia::clear_poison`].
    pub clear_failed: u64,
}

/// The mutable state of a device, behind its [`DeviceLock`].
pub struct DeviceState {
    poison: PoisonList,
    holder: Option<Arc<dyn Holder>>,
    /// Pages of the recovery write in progress, if any.
    recovering: Option<ByteRange>,
    /// Poison was recorded in `recovering` while it was rewritten.
    recovery_raced: bool,
    stats: DeviceStats,
}

impl fmt::Debug for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceState")
            .field("poison", &self.poison.as_slice())
            .field("holder", &self.holder.is_some())
            .field("recovering", &self.recovering)
            .field("stats", &self.stats)
            .finish()
    }
}

impl DeviceState {
    const fn new() -> Self {
        Self {
            poison: PoisonList::new(),
            holder: None,
            recovering: None,
            recovery_raced: false,
            stats: DeviceStats {
                poisoned_reads: 0,
                poison_discovered: 0,
                refused_writes: 0,
                list_coarsened: 0,
                recovery_writes: 0,
                cleared_bytes: 0,
                unlist_refused: 0,
                recovery_raced: 0,
                clear_failed: 0,
            },
        }
    }

    /// Lists `range`; returns (whether any byte was new, whether the list
    /// coarsened).
    fn record(&mut self, range: ByteRange) -> (bool, bool) {
        if range.is_empty() {
            return (false, false);
        }
        // The list is merged, so a wholly covered range lies in one entry.
        let new = !self.poison.first_overlap(range).is_some_and(|r| r.contains_range(&range));
        if self.recovering.is_some_and(|r| r.overlaps(&range)) {
            self.recovery_raced = true;
        }
        let coarsened = self.poison.insert(range).is_err();
        if coarsened {
            self.stats.list_coarsened += 1;
        }
        (new, coarsened)
    }

    /// The listed poison that a request for `range` runs into first, as a
    /// [`PmemError::Poisoned`] (with `copied` = bytes before it).
    fn poison_in(&self, range: ByteRange) -> Option<PmemError> {
        self.poison.first_overlap(range).map(|r| poisoned_error(range, r))
    }

    /// Bytes of `range` that are listed.
    fn listed_bytes(&self, range: ByteRange) -> u64 {
        self.poison.iter().filter_map(|r| r.intersection(&range)).map(|r| r.len()).sum()
    }
}

/// The error for a request `req` that runs into listed range `r`.
fn poisoned_error(req: ByteRange, r: ByteRange) -> PmemError {
    let start = r.start().max(req.start());
    PmemError::Poisoned {
        offset: start,
        len: r.end().saturating_sub(start),
        copied: usize::try_from(start - req.start()).unwrap_or(usize::MAX),
    }
}

/// One persistent-memory region: `len` bytes of media at physical address
/// `phys_base`, its bad-block list and its holder.
pub struct PmemDevice<M: PmemMedia, L: DeviceLock<DeviceState>> {
    name: &'static str,
    phys_base: u64,
    len: u64,
    media: M,
    state: L,
}

impl<M: PmemMedia, L: DeviceLock<DeviceState>> fmt::Debug for PmemDevice<M, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PmemDevice")
            .field("name", &self.name)
            .field("phys_base", &format_args!("{:#x}", self.phys_base))
            .field("len", &format_args!("{:#x}", self.len))
            .finish_non_exhaustive()
    }
}

/// Converts a buffer length (lossless on every supported target).
fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl<M: PmemMedia, L: DeviceLock<DeviceState>> PmemDevice<M, L> {
    /// A device named `name` over `media`, found at physical address
    /// `phys_base`. Its size is `media.len()`, read once.
    pub fn new(name: &'static str, phys_base: u64, media: M) -> Self {
        let len = media.len();
        Self { name, phys_base, len, media, state: L::new(DeviceState::new()) }
    }

    /// The device's name (e.g. `pmem0`).
    pub fn name(&self) -> &str {
        self.name
    }

    /// Physical address of byte 0.
    pub fn phys_base(&self) -> u64 {
        self.phys_base
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the device has no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The media (for the embedder's own diagnostics and tests).
    pub fn media(&self) -> &M {
        &self.media
    }

    /// Whether physical address `phys` is on this device.
    pub fn contains_phys(&self, phys: u64) -> bool {
        self.phys_to_offset(phys).is_some()
    }

    /// Device offset of physical address `phys` (`memory_failure`'s
    /// `offset = phys - base`), or `None` if it is not on this device.
    pub fn phys_to_offset(&self, phys: u64) -> Option<u64> {
        phys.checked_sub(self.phys_base).filter(|&o| o < self.len)
    }

    /// `[offset, offset + len)` if it lies inside the device.
    fn check_range(&self, offset: u64, len: u64) -> Result<ByteRange, PmemError> {
        match ByteRange::from_len(offset, len) {
            Some(r) if r.end() <= self.len => Ok(r),
            _ => Err(PmemError::OutOfRange { offset, len }),
        }
    }

    /// Machine-check-safe read of `buf.len()` bytes at `offset`.
    ///
    /// Consults the bad-block list FIRST: bytes before the first listed
    /// byte are copied, then `Err(Poisoned)` names the listed range. If
    /// `copy_mc` stops short although the list had nothing there (poison
    /// the list did not know yet), the cache line (64 bytes) containing the
    /// stop point is recorded and the error is reported the same way, as a
    /// re-read would see it (`copied` then stops at that line).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), PmemError> {
        let range = self.check_range(offset, len_u64(buf.len()))?;
        if range.is_empty() {
            return Ok(());
        }
        let known = self.state.with(|s| {
            let e = s.poison_in(range);
            if e.is_some() {
                s.stats.poisoned_reads += 1;
            }
            e
        });
        let good = match known {
            Some(PmemError::Poisoned { copied, .. }) => copied,
            _ => buf.len(),
        };
        let Some(head) = buf.get_mut(..good) else {
            return Err(PmemError::OutOfRange { offset, len: range.len() }); // unreachable: copied <= buf.len()
        };
        let not_copied = if head.is_empty() { 0 } else { self.media.copy_mc(offset, head).min(good) };
        if not_copied != 0 {
            let stop = offset + len_u64(good - not_copied);
            let line_start = stop & !(CACHE_LINE - 1);
            let line = ByteRange::from_len_saturating(line_start, CACHE_LINE).clamp_end(self.len);
            return Err(self.state.with(|s| {
                s.record(line);
                s.stats.poison_discovered += 1;
                if known.is_none() {
                    s.stats.poisoned_reads += 1;
                }
                // `line` overlaps `range` (it holds `stop`), so this is Some.
                s.poison_in(range).unwrap_or_else(|| poisoned_error(range, line))
            }));
        }
        match known {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Refuses a write to `range` if it overlaps listed poison.
    fn check_writable(&self, range: ByteRange) -> Result<(), PmemError> {
        self.state.with(|s| match s.poison_in(range) {
            Some(PmemError::Poisoned { offset, len, .. }) => {
                s.stats.refused_writes += 1;
                Err(PmemError::Poisoned { offset, len, copied: 0 })
            }
            _ => Ok(()),
        })
    }

    /// Flushing write of `data` at `offset`, then a fence: durable on
    /// return.
    ///
    /// Refuses (`Poisoned`, nothing written) a range that overlaps listed
    /// poison: only [`PmemDevice::recovery_write`] may write there.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), PmemError> {
        let range = self.check_range(offset, len_u64(data.len()))?;
        if range.is_empty() {
            return Ok(());
        }
        self.check_writable(range)?;
        self.media.copy_flush(offset, data);
        self.media.fence();
        Ok(())
    }

    /// Writes back the cache lines covering `[offset, offset + len)`.
    pub fn flush(&self, offset: u64, len: u64) -> Result<(), PmemError> {
        let range = self.check_range(offset, len)?;
        if !range.is_empty() {
            self.media.flush(offset, len);
        }
        Ok(())
    }

    /// Orders earlier flushes and non-temporal stores before later stores.
    pub fn fence(&self) {
        self.media.fence();
    }

    /// Durable zeroing of `[offset, offset + len)`; same poison rule as
    /// [`PmemDevice::write`].
    pub fn zero(&self, offset: u64, len: u64) -> Result<(), PmemError> {
        let range = self.check_range(offset, len)?;
        if range.is_empty() {
            return Ok(());
        }
        self.check_writable(range)?;
        self.media.zero_flush(offset, len);
        self.media.fence();
        Ok(())
    }

    /// `dax_recovery_write`: rewrites whole pages, poisoned or not, and
    /// unlists their poison. `offset` and `data.len()` must be multiples of
    /// [`PAGE_SIZE`]. Returns how many listed (poisoned) bytes were cleared.
    ///
    /// Steps: if the pages hold listed poison, [`PmemMedia::clear_poison`]
    /// (refusal: `Poisoned`, nothing written); flushing copy; fence; unlist
    /// the pages. The copy runs outside the lock. One recovery write at a
    /// time per device (`Busy` otherwise). If poison is recorded in the
    /// pages while they are rewritten (a new machine check), the list is
    /// left as it was and `Busy` is returned: the data was written, but the
    /// caller must retry to clear the poison.
    pub fn recovery_write(&self, offset: u64, data: &[u8]) -> Result<u64, PmemError> {
        let len = len_u64(data.len());
        if !offset.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(PmemError::Unaligned);
        }
        let range = self.check_range(offset, len)?;
        if range.is_empty() {
            return Ok(0);
        }
        let listed = self.state.with(|s| {
            if s.recovering.is_some() {
                return Err(PmemError::Busy);
            }
            s.recovering = Some(range);
            s.recovery_raced = false;
            Ok(s.poison_in(range))
        })?;
        if let Some(PmemError::Poisoned { offset, len, .. }) = listed {
            if !self.media.clear_poison(range.start(), range.len()) {
                self.state.with(|s| {
                    s.recovering = None;
                    s.stats.clear_failed += 1;
                });
                return Err(PmemError::Poisoned { offset, len, copied: 0 });
            }
        }
        self.media.copy_flush(offset, data);
        self.media.fence();
        self.state.with(|s| {
            s.recovering = None;
            if core::mem::take(&mut s.recovery_raced) {
                s.stats.recovery_raced += 1;
                return Err(PmemError::Busy);
            }
            let cleared = s.listed_bytes(range);
            if s.poison.remove(range).is_err() {
                s.stats.unlist_refused += 1;
                return Err(PmemError::PoisonListFull);
            }
            s.stats.recovery_writes += 1;
            s.stats.cleared_bytes += cleared;
            Ok(cleared)
        })
    }

    /// Records poison at device offsets `[offset, offset + len)` (called by
    /// the kernel's memory-failure worker, or when draining the `#MC`
    /// handler's [`super::PoisonRing`]). Returns whether any byte was not
    /// listed before.
    ///
    /// Never loses a range: when the list is full it coarsens and this
    /// returns `Err(PoisonListFull)`, with the range recorded.
    pub fn record_poison(&self, offset: u64, len: u64) -> Result<bool, PmemError> {
        let range = self.check_range(offset, len)?;
        let (new, coarsened) = self.state.with(|s| s.record(range));
        if coarsened {
            Err(PmemError::PoisonListFull)
        } else {
            Ok(new)
        }
    }

    /// A copy of the bad-block list (no allocation: it is a fixed array).
    pub fn poison_list(&self) -> PoisonList {
        self.state.with(|s| s.poison.clone())
    }

    /// Calls `f` for every listed range, in offset order, on a snapshot
    /// taken under the lock (`f` runs outside it and may use the device).
    pub fn for_each_poison(&self, mut f: impl FnMut(ByteRange)) {
        self.poison_list().iter().for_each(&mut f);
    }

    /// Number of listed ranges.
    pub fn poison_count(&self) -> usize {
        self.state.with(|s| s.poison.len())
    }

    /// Whether any byte of `[offset, offset + len)` is listed (out-of-range
    /// bytes are not).
    pub fn is_poisoned(&self, offset: u64, len: u64) -> bool {
        let range = ByteRange::from_len_saturating(offset, len).clamp_end(self.len);
        self.state.with(|s| s.poison.first_overlap(range).is_some())
    }

    /// The listed poison that a request for `[offset, offset + len)` runs
    /// into first: from its first byte inside the request to the end of
    /// the listed range (None if the request is clean; out-of-range bytes
    /// are not listed). For copies that go around [`PmemDevice::read`] (the
    /// kernel's copy straight into user memory): they copy up to this byte
    /// first, as `read` does, and record what their own machine-check-safe
    /// copy discovers with [`PmemDevice::record_poison`].
    pub fn first_poison(&self, offset: u64, len: u64) -> Option<ByteRange> {
        let range = ByteRange::from_len_saturating(offset, len).clamp_end(self.len);
        if range.is_empty() {
            return None;
        }
        self.state.with(|s| s.poison.first_overlap(range)).map(|r| r.from_offset(r.start().max(offset)))
    }

    /// The event counters.
    pub fn stats(&self) -> DeviceStats {
        self.state.with(|s| s.stats)
    }

    /// Registers the device's owner (at mount). `Busy` if one is set.
    pub fn set_holder(&self, h: Arc<dyn Holder>) -> Result<(), PmemError> {
        self.state.with(|s| {
            if s.holder.is_some() {
                return Err(PmemError::Busy);
            }
            s.holder = Some(h);
            Ok(())
        })
    }

    /// Unregisters the owner (at unmount) and returns it.
    pub fn clear_holder(&self) -> Option<Arc<dyn Holder>> {
        self.state.with(|s| s.holder.take())
    }

    /// Whether a holder is registered.
    pub fn has_holder(&self) -> bool {
        self.state.with(|s| s.holder.is_some())
    }

    /// Tells the holder that `[offset, offset + len)` failed
    /// (`dax_holder_notify_failure`). `len == u64::MAX` with
    /// [`MfFlags::PRE_REMOVE`] means the whole device and is passed on as
    /// it is. Does not record poison (the caller does, with
    /// [`PmemDevice::record_poison`]; a pre-remove is not poison).
    ///
    /// The holder is called OUTSIDE the device lock. `Err(NoHolder)` when
    /// none is registered: the caller falls back to logging / generic
    /// handling.
    pub fn notify_failure(&self, offset: u64, len: u64, flags: MfFlags) -> Result<(), PmemError> {
        let whole = len == u64::MAX && flags.contains(MfFlags::PRE_REMOVE);
        if whole {
            if offset > self.len {
                return Err(PmemError::OutOfRange { offset, len });
            }
        } else {
            self.check_range(offset, len)?;
        }
        let holder = self.state.with(|s| s.holder.clone());
        let holder = holder.ok_or(PmemError::NoHolder)?;
        holder.notify_failure(offset, len, flags).map_err(PmemError::Holder)
    }

    /// Runs `op(good)` to store the first `good` bytes of `[offset, offset
    /// + len)`: all of them, or those before the first listed-poisoned
    /// byte, which is then reported with `good` (and counted in
    /// [`DeviceStats::refused_writes`]). No fence.
    fn store_until_poison(&self, offset: u64, len: u64, op: impl FnOnce(u64)) -> Result<(), (MediaError, u64)> {
        let range = self.check_range(offset, len).map_err(|_| (MediaError::OutOfRange { offset, len }, 0))?;
        if range.is_empty() {
            return Ok(());
        }
        let hit = self.state.with(|s| {
            let hit = s.poison.first_overlap(range);
            if hit.is_some() {
                s.stats.refused_writes += 1;
            }
            hit
        });
        let good = hit.map_or(len, |r| r.start().saturating_sub(offset));
        if good > 0 {
            op(good);
        }
        match hit {
            Some(r) => Err((MediaError::Poisoned(r.from_offset(offset)), good)),
            None => Ok(()),
        }
    }
}

/// The [`MediaError`] for a device error on request `[offset, offset + len)`.
fn media_error(e: PmemError, offset: u64, len: u64) -> MediaError {
    match e {
        PmemError::Poisoned { offset, len, .. } => MediaError::Poisoned(ByteRange::from_len_saturating(offset, len)),
        PmemError::OutOfRange { offset, len } => MediaError::OutOfRange { offset, len },
        PmemError::Unaligned => MediaError::Unaligned { offset, len },
        // The pages were rewritten but stay listed: still poisoned.
        PmemError::PoisonListFull => MediaError::Poisoned(ByteRange::from_len_saturating(offset, len)),
        PmemError::Busy | PmemError::NoHolder | PmemError::Holder(_) => MediaError::Busy,
    }
}

/// The device as persistent memory for a file system (or any user of
/// [`Pmem`]), through a shared reference: the device's own lock orders
/// concurrent users.
///
/// - `load` is [`PmemDevice::read`] (machine-check safe; listed poison
///   first).
/// - `store`/`store_zeros` are flushing copies that stop at the first
///   listed-poisoned byte and report it, with the bytes stored before it.
///   They do not fence: [`Pmem::fence`] does.
/// - `flush` writes back the covered lines (already written back by the
///   flushing copies, so it is cheap); out-of-range bytes are ignored.
/// - `recovery_write` is [`PmemDevice::recovery_write`].
impl<M: PmemMedia, L: DeviceLock<DeviceState>> Pmem for &PmemDevice<M, L> {
    fn size(&self) -> u64 {
        self.len
    }

    fn load(&self, offset: u64, buf: &mut [u8]) -> Result<(), (MediaError, usize)> {
        self.read(offset, buf).map_err(|e| {
            let copied = match e {
                PmemError::Poisoned { copied, .. } => copied,
                _ => 0,
            };
            (media_error(e, offset, len_u64(buf.len())), copied)
        })
    }

    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), (MediaError, usize)> {
        let media = &self.media;
        self.store_until_poison(offset, len_u64(data.len()), |good| {
            if let Some(piece) = usize::try_from(good).ok().and_then(|g| data.get(..g)) {
                media.copy_flush(offset, piece);
            }
        })
        .map_err(|(e, done)| (e, usize::try_from(done).unwrap_or(0)))
    }

    fn store_zeros(&mut self, offset: u64, len: u64) -> Result<(), (MediaError, u64)> {
        let media = &self.media;
        self.store_until_poison(offset, len, |good| media.zero_flush(offset, good))
    }

    fn flush(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.len);
        if offset < end {
            self.media.flush(offset, end - offset);
        }
    }

    fn fence(&mut self) {
        self.media.fence();
    }

    fn recovery_write(&mut self, offset: u64, data: &[u8]) -> Result<(), MediaError> {
        PmemDevice::recovery_write(self, offset, data)
            .map(|_| ())
            .map_err(|e| media_error(e, offset, len_u64(data.len())))
    }
}

/// An owned device is persistent memory too (tests, or an embedder that
/// gives the device to its file system outright): the same as through
/// `&PmemDevice`.
impl<M: PmemMedia, L: DeviceLock<DeviceState>> Pmem for PmemDevice<M, L> {
    fn size(&self) -> u64 {
        self.len
    }
    fn load(&self, offset: u64, buf: &mut [u8]) -> Result<(), (MediaError, usize)> {
        Pmem::load(&self, offset, buf)
    }
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), (MediaError, usize)> {
        Pmem::store(&mut &*self, offset, data)
    }
    fn store_zeros(&mut self, offset: u64, len: u64) -> Result<(), (MediaError, u64)> {
        Pmem::store_zeros(&mut &*self, offset, len)
    }
    fn flush(&mut self, offset: u64, len: u64) {
        Pmem::flush(&mut &*self, offset, len)
    }
    fn fence(&mut self) {
        self.media.fence();
    }
    fn recovery_write(&mut self, offset: u64, data: &[u8]) -> Result<(), MediaError> {
        Pmem::recovery_write(&mut &*self, offset, data)
    }
}
