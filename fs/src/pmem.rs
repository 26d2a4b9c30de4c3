//! Persistent-memory access: the only way the file system touches media.
//!
//! The trait, [`Pmem`], and its error type, [`MediaError`], live in
//! `fsdax-pmem-api` (shared with the pmem driver) and are re-exported here.
//! The file system validates every offset it passes against `size()`; a
//! device still answers an out-of-range request with
//! [`MediaError::OutOfRange`], which the file system reports as such, never
//! as poison.
//!
//! [`MemPmem`] is persistent memory held in a `Vec<u8>` with injectable
//! poison, for tests and tools.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

pub use fsdax_pmem_api::{checked_request, ByteRange, MediaError, Pmem, CACHE_LINE, PAGE_SIZE};

/// Persistent memory held in a `Vec<u8>`, with injectable poison.
///
/// Stores are immediately "durable" (there is no cache to lose); the crash
/// simulator models the cache. It follows the device's rules: a load stops
/// at the first poisoned byte, a store into poison is an error after the
/// bytes before it, and only [`Pmem::recovery_write`] (whole pages) writes
/// over poison and clears it.
#[derive(Clone, Debug)]
pub struct MemPmem {
    bytes: Vec<u8>,
    poison: PoisonList,
}

/// Poisoned byte ranges (start -> length), as a device knows them: the
/// in-memory device and the crash simulator keep one.
#[derive(Clone, Debug, Default)]
pub(crate) struct PoisonList(BTreeMap<u64, u64>);

impl PoisonList {
    pub(crate) fn insert(&mut self, offset: u64, len: u64) {
        if len > 0 {
            self.0.insert(offset, len);
        }
    }
    /// The ranges, in order.
    pub(crate) fn ranges(&self) -> Vec<(u64, u64)> {
        self.0.iter().map(|(&s, &l)| (s, l)).collect()
    }
    /// The first poisoned range inside `[offset, offset + len)`, from its
    /// first byte in the request to its end.
    pub(crate) fn first(&self, offset: u64, len: u64) -> Option<ByteRange> {
        let end = offset.saturating_add(len);
        let before = self.0.range(..=offset).next_back().map(|(&s, &l)| (s, l));
        let hit = before
            .filter(|&(s, l)| s.saturating_add(l) > offset)
            .or_else(|| self.0.range(offset..end).next().map(|(&s, &l)| (s, l)));
        hit.map(|(s, l)| ByteRange::from_len_saturating(s, l).from_offset(offset))
    }
    pub(crate) fn clear(&mut self, offset: u64, len: u64) {
        let end = offset + len;
        let hits: Vec<(u64, u64)> =
            self.0.range(..end).filter(|&(&s, &l)| s + l > offset).map(|(&s, &l)| (s, l)).collect();
        for (s, l) in hits {
            self.0.remove(&s);
            if s < offset {
                self.0.insert(s, offset - s);
            }
            if s + l > end {
                self.0.insert(end, s + l - end);
            }
        }
    }
    /// How many bytes of request `r` come before its first poisoned byte,
    /// and that poison.
    pub(crate) fn good_prefix(&self, r: ByteRange) -> (usize, Option<ByteRange>) {
        match self.first(r.start(), r.len()) {
            // Callers' requests are inside their byte vectors, so these fit
            // in usize.
            Some(p) => ((p.start() - r.start()) as usize, Some(p)),
            None => (r.len() as usize, None),
        }
    }
}

impl MemPmem {
    /// A zero-filled device of `size` bytes.
    pub fn new(size: usize) -> Self {
        Self { bytes: vec![0; size], poison: PoisonList::default() }
    }
    /// A device holding `bytes` (for example a saved image).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self { bytes, poison: PoisonList::default() }
    }
    /// The raw contents.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// Mutable raw contents (tests corrupt images through this).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
    /// Consumes the device, returning its contents.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
    /// Marks `[offset, offset + len)` as poisoned.
    pub fn inject_poison(&mut self, offset: u64, len: u64) {
        self.poison.insert(offset, len);
    }
    /// Whether any byte of `[offset, offset + len)` is poisoned.
    pub fn is_poisoned(&self, offset: u64, len: u64) -> bool {
        self.poison.first(offset, len).is_some()
    }
}

impl Pmem for MemPmem {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn load(&self, offset: u64, buf: &mut [u8]) -> Result<(), (MediaError, usize)> {
        let r = checked_request(offset, buf.len() as u64, self.size()).map_err(|e| (e, 0))?;
        let (good, poison) = self.poison.good_prefix(r);
        let o = offset as usize;
        buf[..good].copy_from_slice(&self.bytes[o..o + good]);
        match poison {
            Some(p) => Err((MediaError::Poisoned(p), good)),
            None => Ok(()),
        }
    }
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), (MediaError, usize)> {
        let r = checked_request(offset, data.len() as u64, self.size()).map_err(|e| (e, 0))?;
        let (good, poison) = self.poison.good_prefix(r);
        let o = offset as usize;
        self.bytes[o..o + good].copy_from_slice(&data[..good]);
        match poison {
            Some(p) => Err((MediaError::Poisoned(p), good)),
            None => Ok(()),
        }
    }
    fn flush(&mut self, _offset: u64, _len: u64) {}
    fn fence(&mut self) {}
    fn recovery_write(&mut self, offset: u64, data: &[u8]) -> Result<(), MediaError> {
        let len = data.len() as u64;
        if !offset.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(MediaError::Unaligned { offset, len });
        }
        checked_request(offset, len, self.size())?;
        self.poison.clear(offset, len);
        self.store(offset, data).map_err(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: u64, e: u64) -> ByteRange {
        ByteRange::new(s, e).unwrap()
    }

    #[test]
    fn loads_stop_at_poison_and_report_the_valid_prefix() {
        let mut m = MemPmem::new(8192);
        m.store(100, &[7u8; 200]).unwrap();
        m.inject_poison(150, 10);
        let mut buf = [0u8; 100];
        assert_eq!(m.load(100, &mut buf), Err((MediaError::Poisoned(r(150, 160)), 50)));
        assert!(buf[..50].iter().all(|&b| b == 7));
        // Starting inside the poison reports the rest of it.
        assert_eq!(m.load(155, &mut buf[..4]), Err((MediaError::Poisoned(r(155, 160)), 0)));
        // Reads around it are fine.
        m.load(160, &mut buf).unwrap();
        // Out of range is its own error, not poison.
        assert_eq!(m.load(8190, &mut buf), Err((MediaError::OutOfRange { offset: 8190, len: 100 }, 0)));
    }

    #[test]
    fn stores_into_poison_fail_and_only_recovery_writes_clear_it() {
        let mut m = MemPmem::new(3 * 4096);
        m.inject_poison(4096 + 64, 64);
        assert_eq!(m.store(4096, &[1u8; 200]), Err((MediaError::Poisoned(r(4096 + 64, 4096 + 128)), 64)));
        assert!(m.is_poisoned(4096 + 64, 1), "a plain store does not clear poison");
        assert_eq!(m.bytes()[4096 + 63], 1);
        assert_eq!(m.bytes()[4096 + 128], 0, "nothing stored past the poison");
        assert_eq!(m.store_zeros(4000, 200), Err((MediaError::Poisoned(r(4096 + 64, 4096 + 128)), 160)));
        assert_eq!(
            m.recovery_write(4096 + 64, &[0; 4096]),
            Err(MediaError::Unaligned { offset: 4096 + 64, len: 4096 })
        );
        m.recovery_write(4096, &[2; 4096]).unwrap();
        assert!(!m.is_poisoned(0, 3 * 4096));
        let mut b = [0u8; 4096];
        m.load(4096, &mut b).unwrap();
        assert_eq!(b, [2; 4096]);
    }
}
