//! Crash simulator: a [`Pmem`] that models the CPU cache.
//!
//! Every store lands in a volatile view and dirties its cache lines; a flush
//! moves dirty lines to "flushed"; a fence makes flushed lines durable. While
//! recording, each fence logs a [`CrashPoint`]: the lines that became durable
//! since the previous point, and the lines whose fate a crash at that fence
//! would leave open (dirty or flushed but not yet fenced). From the durable
//! image at the start of recording and the points, a test rebuilds every
//! image a crash could leave.
//!
//! Poison can be injected as in [`crate::MemPmem`] (loads stop at it, stores
//! into it fail, recovery writes clear it); each point records the poison
//! the device had then, which survives a crash.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use crate::pmem::{checked_request, MediaError, Pmem, PoisonList, CACHE_LINE, PAGE_SIZE};

const LINE: usize = CACHE_LINE as usize;

/// One cache line's worth of bytes at a line index.
pub type Line = (u64, [u8; LINE]);

/// A moment at which the machine may crash (just before a fence, and at the
/// end of recording).
#[derive(Clone, Debug, Default)]
pub struct CrashPoint {
    /// Lines that became durable since the previous point (apply in order).
    pub newly_durable: Vec<Line>,
    /// Lines that may or may not have reached media.
    pub pending: Vec<Line>,
    /// Poisoned ranges (offset, length) of the device at this point.
    pub poison: Vec<(u64, u64)>,
}

/// Counters of the traffic seen by the simulator.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimStats {
    /// Number of `store` calls.
    pub stores: u64,
    /// Number of `flush` calls.
    pub flushes: u64,
    /// Number of `fence` calls.
    pub fences: u64,
}

/// The simulated device.
#[derive(Clone, Debug)]
pub struct CrashSim {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    dirty: BTreeSet<u64>,
    flushed: BTreeSet<u64>,
    recording: bool,
    since_last: BTreeMap<u64, [u8; LINE]>,
    points: Vec<CrashPoint>,
    poison: PoisonList,
    /// Traffic counters.
    pub stats: SimStats,
}

impl CrashSim {
    /// A device whose durable and volatile contents are `image`.
    pub fn new(image: Vec<u8>) -> Self {
        Self {
            volatile: image.clone(),
            durable: image,
            dirty: BTreeSet::new(),
            flushed: BTreeSet::new(),
            recording: false,
            since_last: BTreeMap::new(),
            points: Vec::new(),
            poison: PoisonList::default(),
            stats: SimStats::default(),
        }
    }
    /// Marks `[offset, offset + len)` as poisoned.
    pub fn inject_poison(&mut self, offset: u64, len: u64) {
        self.poison.insert(offset, len);
    }
    /// The poisoned ranges now: (offset, length).
    pub fn poison(&self) -> Vec<(u64, u64)> {
        self.poison.ranges()
    }
    /// What survives a crash right now if nothing pending made it.
    pub fn durable(&self) -> &[u8] {
        &self.durable
    }
    /// Starts recording crash points (clears earlier ones).
    pub fn start_recording(&mut self) {
        self.recording = true;
        self.points.clear();
        self.since_last.clear();
    }
    /// Stops recording, adds the final crash point and returns all points.
    pub fn take_points(&mut self) -> Vec<CrashPoint> {
        if self.recording {
            self.push_point();
        }
        self.recording = false;
        core::mem::take(&mut self.points)
    }
    fn line(&self, l: u64) -> [u8; LINE] {
        let mut b = [0u8; LINE];
        let o = (l * CACHE_LINE) as usize;
        let end = (o + LINE).min(self.volatile.len());
        b[..end - o].copy_from_slice(&self.volatile[o..end]);
        b
    }
    fn push_point(&mut self) {
        let pending = self.dirty.union(&self.flushed).map(|&l| (l, self.line(l))).collect();
        let newly_durable = core::mem::take(&mut self.since_last).into_iter().collect();
        self.points.push(CrashPoint { newly_durable, pending, poison: self.poison.ranges() });
    }
}

/// Applies lines to an image (the last line may be partial).
pub fn apply_lines(image: &mut [u8], lines: &[Line]) {
    for (l, data) in lines {
        let o = (*l * CACHE_LINE) as usize;
        let end = (o + LINE).min(image.len());
        image[o..end].copy_from_slice(&data[..end - o]);
    }
}

impl Pmem for CrashSim {
    fn size(&self) -> u64 {
        self.volatile.len() as u64
    }
    fn load(&self, offset: u64, buf: &mut [u8]) -> Result<(), (MediaError, usize)> {
        let r = checked_request(offset, buf.len() as u64, self.size()).map_err(|e| (e, 0))?;
        let (good, poison) = self.poison.good_prefix(r);
        let o = offset as usize;
        buf[..good].copy_from_slice(&self.volatile[o..o + good]);
        match poison {
            Some(p) => Err((MediaError::Poisoned(p), good)),
            None => Ok(()),
        }
    }
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), (MediaError, usize)> {
        self.stats.stores += 1;
        let r = checked_request(offset, data.len() as u64, self.size()).map_err(|e| (e, 0))?;
        let (good, poison) = self.poison.good_prefix(r);
        if good > 0 {
            let o = offset as usize;
            self.volatile[o..o + good].copy_from_slice(&data[..good]);
            let first = offset / CACHE_LINE;
            let last = (offset + good as u64 - 1) / CACHE_LINE;
            for l in first..=last {
                self.flushed.remove(&l);
                self.dirty.insert(l);
            }
        }
        match poison {
            Some(p) => Err((MediaError::Poisoned(p), good)),
            None => Ok(()),
        }
    }
    fn recovery_write(&mut self, offset: u64, data: &[u8]) -> Result<(), MediaError> {
        let len = data.len() as u64;
        if !offset.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(MediaError::Unaligned { offset, len });
        }
        checked_request(offset, len, self.size())?;
        self.poison.clear(offset, len);
        self.store(offset, data).map_err(|(e, _)| e)?;
        self.flush(offset, len);
        self.fence();
        Ok(())
    }
    fn flush(&mut self, offset: u64, len: u64) {
        self.stats.flushes += 1;
        let end = offset.saturating_add(len).min(self.size());
        if end <= offset {
            return;
        }
        let first = offset / CACHE_LINE;
        let last = (end - 1) / CACHE_LINE;
        let hits: Vec<u64> = self.dirty.range(first..=last).copied().collect();
        for l in hits {
            self.dirty.remove(&l);
            self.flushed.insert(l);
        }
    }
    fn fence(&mut self) {
        self.stats.fences += 1;
        if self.recording {
            self.push_point();
        }
        for l in core::mem::take(&mut self.flushed) {
            let data = self.line(l);
            let o = (l * CACHE_LINE) as usize;
            let end = (o + LINE).min(self.durable.len());
            self.durable[o..end].copy_from_slice(&data[..end - o]);
            if self.recording {
                self.since_last.insert(l, data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_flushed_and_fenced_lines_are_durable() {
        let mut s = CrashSim::new(alloc::vec![0u8; 1024]);
        s.start_recording();
        s.store(0, &[1; 10]).unwrap();
        s.store(200, &[2; 10]).unwrap();
        s.flush(0, 10);
        s.fence();
        assert_eq!(s.durable()[0], 1);
        assert_eq!(s.durable()[200], 0, "unflushed store must not be durable");
        let pts = s.take_points();
        assert_eq!(pts.len(), 2);
        // Before the fence both lines are open; afterwards only the unflushed one.
        assert_eq!(pts[0].pending.len(), 2);
        assert_eq!(pts[1].newly_durable.len(), 1);
        assert_eq!(pts[1].pending.len(), 1);
        assert_eq!(pts[1].pending[0].0, 200 / 64);
        // Out of range is an error, not a panic.
        assert_eq!(s.store(1020, &[0; 8]), Err((MediaError::OutOfRange { offset: 1020, len: 8 }, 0)));
    }
}
