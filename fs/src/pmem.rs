//! Persistent-memory access: the only way the file system touches media.
//!
//! The file system sees persistent memory as a byte-addressable range of
//! `size()` bytes. Stores become durable only after the cache lines that hold
//! them are flushed ([`Pmem::flush`]) and a fence ([`Pmem::fence`]) orders the
//! flushes before anything that follows (x86: `clwb` + `sfence`). Reads that
//! may hit poisoned media go through [`Pmem::load_mc`], the machine-check-safe
//! copy (Linux `copy_mc_to_kernel`), which reports the poisoned range instead
//! of crashing the machine.
//!
//! The file system validates every offset it passes against `size()` before
//! calling; implementations may panic on an out-of-range offset because it
//! is a bug in the caller, never a property of the image.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

/// Size of a CPU cache line: the unit of flushing and of torn writes.
pub const CACHE_LINE: u64 = 64;

/// A machine-check-safe read hit poisoned media.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Poisoned {
    /// Bytes copied into the buffer before the poison (all of them valid).
    pub copied: usize,
    /// Device offset of the first poisoned byte that stopped the copy.
    pub offset: u64,
    /// Length of the poisoned range, as far as the device knows it.
    pub len: u64,
}

/// Byte-addressable persistent memory.
///
/// Implemented by [`MemPmem`] (tests), the crash simulator
/// [`crate::sim::CrashSim`], the host tool's file-backed image and, in the
/// kernel, the pmem device.
pub trait Pmem {
    /// Size of the device in bytes.
    fn size(&self) -> u64;
    /// Plain load of `buf.len()` bytes at `offset`. Only for media known to
    /// be good; the file system itself uses [`Pmem::load_mc`].
    fn load(&self, offset: u64, buf: &mut [u8]);
    /// Machine-check-safe load: copies `buf.len()` bytes or stops at the
    /// first poisoned byte and reports it.
    ///
    /// The default suits media that cannot be poisoned (a host file, the
    /// crash simulator): a range check, then [`Pmem::load`]. Media that can
    /// be poisoned (the kernel's pmem device, [`MemPmem`]) override it.
    fn load_mc(&self, offset: u64, buf: &mut [u8]) -> Result<(), Poisoned> {
        let len = buf.len() as u64;
        if offset.checked_add(len).is_none_or(|e| e > self.size()) {
            return Err(Poisoned { copied: 0, offset, len });
        }
        self.load(offset, buf);
        Ok(())
    }
    /// Store `data` at `offset` (not durable until flushed and fenced).
    fn store(&mut self, offset: u64, data: &[u8]);
    /// Write back the cache lines covering `[offset, offset + len)`.
    fn flush(&mut self, offset: u64, len: u64);
    /// Order all earlier flushes before any later store (`sfence`).
    fn fence(&mut self);

    /// Store `len` zero bytes at `offset`.
    fn store_zeros(&mut self, offset: u64, len: u64) {
        const Z: [u8; 4096] = [0; 4096];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(Z.len() as u64);
            self.store(offset + done, &Z[..n as usize]);
            done += n;
        }
    }
    /// Store and flush (the "flushing copy" of the pmem write path).
    fn store_flush(&mut self, offset: u64, data: &[u8]) {
        self.store(offset, data);
        self.flush(offset, data.len() as u64);
    }
}

/// Persistent memory held in a `Vec<u8>`, with injectable poison.
///
/// Stores are immediately "durable" (there is no cache to lose); the crash
/// simulator models the cache. A store over a poisoned range clears the
/// poison of the bytes it covers, like a pmem recovery write.
#[derive(Clone, Debug)]
pub struct MemPmem {
    bytes: Vec<u8>,
    /// Poisoned ranges: start -> length.
    poison: BTreeMap<u64, u64>,
}

impl MemPmem {
    /// A zero-filled device of `size` bytes.
    pub fn new(size: usize) -> Self {
        Self { bytes: vec![0; size], poison: BTreeMap::new() }
    }
    /// A device holding `bytes` (for example a saved image).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self { bytes, poison: BTreeMap::new() }
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
        if len > 0 {
            self.poison.insert(offset, len);
        }
    }
    fn first_poison(&self, offset: u64, len: u64) -> Option<(u64, u64)> {
        let end = offset.saturating_add(len);
        let before = self.poison.range(..=offset).next_back().map(|(&s, &l)| (s, l));
        let hit = before
            .filter(|&(s, l)| s.saturating_add(l) > offset)
            .or_else(|| self.poison.range(offset..end).next().map(|(&s, &l)| (s, l)));
        hit.map(|(s, l)| (s.max(offset), s.saturating_add(l) - s.max(offset)))
    }
    fn clear_poison(&mut self, offset: u64, len: u64) {
        let end = offset + len;
        let hits: Vec<(u64, u64)> =
            self.poison.range(..end).filter(|&(&s, &l)| s + l > offset).map(|(&s, &l)| (s, l)).collect();
        for (s, l) in hits {
            self.poison.remove(&s);
            if s < offset {
                self.poison.insert(s, offset - s);
            }
            if s + l > end {
                self.poison.insert(end, s + l - end);
            }
        }
    }
}

impl Pmem for MemPmem {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn load(&self, offset: u64, buf: &mut [u8]) {
        let o = offset as usize;
        buf.copy_from_slice(&self.bytes[o..o + buf.len()]);
    }
    fn load_mc(&self, offset: u64, buf: &mut [u8]) -> Result<(), Poisoned> {
        let len = buf.len() as u64;
        if offset.checked_add(len).is_none_or(|e| e > self.size()) {
            return Err(Poisoned { copied: 0, offset, len });
        }
        if !self.poison.is_empty() {
            if let Some((p, plen)) = self.first_poison(offset, len) {
                let copied = (p - offset) as usize;
                self.load(offset, &mut buf[..copied]);
                return Err(Poisoned { copied, offset: p, len: plen });
            }
        }
        self.load(offset, buf);
        Ok(())
    }
    fn store(&mut self, offset: u64, data: &[u8]) {
        let o = offset as usize;
        self.bytes[o..o + data.len()].copy_from_slice(data);
        if !self.poison.is_empty() {
            self.clear_poison(offset, data.len() as u64);
        }
    }
    fn flush(&mut self, _offset: u64, _len: u64) {}
    fn fence(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mc_read_reports_poison_and_partial_copy() {
        let mut m = MemPmem::new(8192);
        m.store(100, &[7u8; 200]);
        m.inject_poison(150, 10);
        let mut buf = [0u8; 100];
        let e = m.load_mc(100, &mut buf).unwrap_err();
        assert_eq!(e, Poisoned { copied: 50, offset: 150, len: 10 });
        assert!(buf[..50].iter().all(|&b| b == 7));
        // Starting inside the poison reports the rest of it.
        let e = m.load_mc(155, &mut buf[..4]).unwrap_err();
        assert_eq!((e.copied, e.offset, e.len), (0, 155, 5));
        // Reads around it are fine; a write clears it.
        m.load_mc(160, &mut buf).unwrap();
        m.store(150, &[1u8; 10]);
        m.load_mc(100, &mut buf).unwrap();
        // Out of range is an error, not a panic.
        assert!(m.load_mc(8190, &mut buf).is_err());
    }
}
