//! [`Pmem`]: byte-addressable persistent memory as the file system sees it.

use core::fmt;

use crate::{ByteRange, PAGE_SIZE};

/// Why an access to persistent memory failed. Small and `Copy`, like an
/// errno.
///
/// Each fallible access also says how far it got: loads and stores return
/// `Err((error, done))` where `done` counts the bytes at the start of the
/// request that were loaded (all of them valid) or stored, in the request's
/// own unit (`usize` for a buffer, `u64` for a length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaError {
    /// `[offset, offset + len)` is not inside the device, or overflows.
    /// Nothing was accessed. This is a caller's mistake or a hostile length,
    /// never poison.
    OutOfRange {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
    },
    /// The access reached poisoned (known-bad) media. The range starts at
    /// the first bad byte the access reached and extends as far as the
    /// device knows the poison (possibly past the request).
    Poisoned(ByteRange),
    /// A recovery write must start and end on a page ([`PAGE_SIZE`])
    /// boundary. Nothing was written.
    Unaligned {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
    },
    /// Another recovery write is rewriting these pages, or new poison
    /// arrived while they were rewritten: the poison is not cleared; retry.
    Busy,
}

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfRange { offset, len } => {
                write!(f, "range {offset:#x}+{len:#x} is outside the device")
            }
            Self::Poisoned(r) => write!(f, "media error (poison) at {r}"),
            Self::Unaligned { offset, len } => {
                write!(f, "recovery write {offset:#x}+{len:#x} does not cover whole 4 KiB pages")
            }
            Self::Busy => f.write_str("the pages are being rewritten; try again"),
        }
    }
}

/// `[offset, offset + len)` if it lies inside a device of `size` bytes,
/// else [`MediaError::OutOfRange`]. Every [`Pmem`] implementation checks its
/// requests with this (or the same rule).
pub fn checked_request(offset: u64, len: u64, size: u64) -> Result<ByteRange, MediaError> {
    match ByteRange::from_len(offset, len) {
        Some(r) if r.end() <= size => Ok(r),
        _ => Err(MediaError::OutOfRange { offset, len }),
    }
}

/// Byte-addressable persistent memory.
///
/// Durability: a store is durable only after the cache lines that hold it
/// are flushed ([`Pmem::flush`]) and a fence ([`Pmem::fence`]) orders the
/// flushes before anything that follows (x86: `clwb` + `sfence`).
///
/// Errors and partial progress (`Err((error, done))`):
/// - [`Pmem::load`] is machine-check safe: it stops at the first poisoned
///   byte and reports [`MediaError::Poisoned`] with the poisoned range; the
///   first `done` bytes of the buffer are valid, the rest is unspecified.
/// - [`Pmem::store`] into poisoned media is an error: the first `done`
///   bytes were stored, the rest were not. A store never skips bytes.
/// - A request outside `[0, size())` is [`MediaError::OutOfRange`] with
///   `done == 0`: nothing was accessed.
/// - Only [`Pmem::recovery_write`] writes over poison, in whole pages, and
///   clears it.
///
/// Implemented by the kernel's pmem device (`fsdax-drivers`), the file
/// system's in-memory device and crash simulator (`fsdax-fs`) and the host
/// tool's image file (`fsdax-boot`).
pub trait Pmem {
    /// Size of the device in bytes.
    fn size(&self) -> u64;

    /// Machine-check-safe load of `buf.len()` bytes at `offset` (Linux
    /// `copy_mc_to_kernel`).
    fn load(&self, offset: u64, buf: &mut [u8]) -> Result<(), (MediaError, usize)>;

    /// Stores `data` at `offset` (durable once flushed and fenced).
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), (MediaError, usize)>;

    /// Stores `len` zero bytes at `offset`; same rules as [`Pmem::store`].
    fn store_zeros(&mut self, offset: u64, len: u64) -> Result<(), (MediaError, u64)> {
        const ZEROS: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];
        checked_request(offset, len, self.size()).map_err(|e| (e, 0))?;
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(PAGE_SIZE);
            // `n <= PAGE_SIZE`, so the slice is in bounds and the casts exact.
            self.store(offset + done, &ZEROS[..n as usize]).map_err(|(e, k)| (e, done + k as u64))?;
            done += n;
        }
        Ok(())
    }

    /// Writes back the cache lines covering `[offset, offset + len)`; bytes
    /// outside the device are ignored.
    fn flush(&mut self, offset: u64, len: u64);

    /// Orders every earlier flush before any later store (`sfence`).
    fn fence(&mut self);

    /// Store, then flush what was stored (the "flushing copy" of the pmem
    /// write path). On error the stored prefix is flushed too.
    fn store_flush(&mut self, offset: u64, data: &[u8]) -> Result<(), (MediaError, usize)> {
        let r = self.store(offset, data);
        let done = match r {
            Ok(()) => data.len(),
            Err((_, done)) => done,
        };
        self.flush(offset, done as u64);
        r
    }

    /// Recovery write (Linux `dax_recovery_write`): rewrites whole pages
    /// (`offset` and `data.len()` multiples of [`PAGE_SIZE`]), poisoned or
    /// not, clears their poison, and makes them durable (flushed and
    /// fenced) before returning. All or nothing as far as poison goes: on
    /// error the pages may hold some of the new bytes, but none of their
    /// poison is known to be cleared.
    ///
    /// The default suits media that cannot be poisoned (an image file, the
    /// crash simulator): check, store, flush, fence.
    fn recovery_write(&mut self, offset: u64, data: &[u8]) -> Result<(), MediaError> {
        let len = data.len() as u64;
        if !offset.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(MediaError::Unaligned { offset, len });
        }
        checked_request(offset, len, self.size())?;
        self.store_flush(offset, data).map_err(|(e, _)| e)?;
        self.fence();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use super::*;

    /// The smallest honest implementation: a byte vector with a list of
    /// poisoned ranges, only the required methods (the defaults are under
    /// test).
    struct Toy {
        bytes: Vec<u8>,
        bad: Vec<ByteRange>,
        flushed: Vec<ByteRange>,
        fences: usize,
    }

    impl Toy {
        fn new(len: usize) -> Self {
            Toy { bytes: vec![0xee; len], bad: Vec::new(), flushed: Vec::new(), fences: 0 }
        }
        fn first_bad(&self, r: ByteRange) -> Option<ByteRange> {
            self.bad
                .iter()
                .filter_map(|b| b.intersection(&r).map(|i| (i.start(), *b)))
                .min()
                .map(|(s, b)| b.from_offset(s))
        }
    }

    impl Pmem for Toy {
        fn size(&self) -> u64 {
            self.bytes.len() as u64
        }
        fn load(&self, offset: u64, buf: &mut [u8]) -> Result<(), (MediaError, usize)> {
            let r = checked_request(offset, buf.len() as u64, self.size()).map_err(|e| (e, 0))?;
            let good = self.first_bad(r).map_or(buf.len(), |b| (b.start() - offset) as usize);
            buf[..good].copy_from_slice(&self.bytes[offset as usize..offset as usize + good]);
            match self.first_bad(r) {
                Some(b) => Err((MediaError::Poisoned(b), good)),
                None => Ok(()),
            }
        }
        fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), (MediaError, usize)> {
            let r = checked_request(offset, data.len() as u64, self.size()).map_err(|e| (e, 0))?;
            let good = self.first_bad(r).map_or(data.len(), |b| (b.start() - offset) as usize);
            self.bytes[offset as usize..offset as usize + good].copy_from_slice(&data[..good]);
            match self.first_bad(r) {
                Some(b) => Err((MediaError::Poisoned(b), good)),
                None => Ok(()),
            }
        }
        fn flush(&mut self, offset: u64, len: u64) {
            self.flushed.push(ByteRange::from_len_saturating(offset, len));
        }
        fn fence(&mut self) {
            self.fences += 1;
        }
    }

    #[test]
    fn out_of_range_is_its_own_error_not_poison() {
        let mut t = Toy::new(8192);
        let mut b = [0u8; 16];
        assert_eq!(t.load(8190, &mut b), Err((MediaError::OutOfRange { offset: 8190, len: 16 }, 0)));
        assert_eq!(t.load(u64::MAX, &mut b), Err((MediaError::OutOfRange { offset: u64::MAX, len: 16 }, 0)));
        assert_eq!(t.store_zeros(8000, 200), Err((MediaError::OutOfRange { offset: 8000, len: 200 }, 0)));
        assert!(t.bytes[8000..].iter().all(|&x| x == 0xee), "nothing stored");
        assert_eq!(checked_request(0, 8192, 8192), Ok(ByteRange::new(0, 8192).unwrap()));
    }

    #[test]
    fn zeroing_stops_at_poison_and_counts_what_it_stored() {
        let mut t = Toy::new(3 * 4096);
        t.bad.push(ByteRange::new(5000, 5010).unwrap());
        let e = t.store_zeros(100, 3 * 4096 - 100);
        assert_eq!(e, Err((MediaError::Poisoned(ByteRange::new(5000, 5010).unwrap()), 4900)));
        assert!(t.bytes[100..5000].iter().all(|&x| x == 0));
        assert!(t.bytes[5000..].iter().all(|&x| x == 0xee), "nothing stored at or after the poison");
    }

    #[test]
    fn store_flush_flushes_the_stored_prefix() {
        let mut t = Toy::new(4096);
        t.bad.push(ByteRange::new(64, 128).unwrap());
        assert_eq!(t.store_flush(0, &[1; 256]), Err((MediaError::Poisoned(ByteRange::new(64, 128).unwrap()), 64)));
        assert_eq!(t.flushed, [ByteRange::new(0, 64).unwrap()]);
    }

    #[test]
    fn default_recovery_write_checks_pages_and_is_durable() {
        let mut t = Toy::new(4 * 4096);
        assert_eq!(t.recovery_write(100, &[0; 4096]), Err(MediaError::Unaligned { offset: 100, len: 4096 }));
        assert_eq!(t.recovery_write(4096, &[0; 100]), Err(MediaError::Unaligned { offset: 4096, len: 100 }));
        assert_eq!(t.recovery_write(4 * 4096, &[0; 4096]), Err(MediaError::OutOfRange { offset: 4 * 4096, len: 4096 }));
        t.recovery_write(4096, &[7; 8192]).unwrap();
        assert!(t.bytes[4096..3 * 4096].iter().all(|&x| x == 7));
        assert_eq!(t.fences, 1);
    }

    #[test]
    fn errors_read_as_sentences() {
        let p = MediaError::Poisoned(ByteRange::new(0x2000, 0x2040).unwrap());
        assert_eq!(format!("{p}"), "media error (poison) at 0x2000..0x2040");
        assert_eq!(
            format!("{}", MediaError::OutOfRange { offset: 0x10, len: 0x20 }),
            "range 0x10+0x20 is outside the device"
        );
    }
}
