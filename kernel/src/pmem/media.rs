//! `PmemMedia` over a kernel DAX mapping: the machine-check-safe read and
//! the flushing write of `arch::copy`.

use fsdax_drivers::pmem::device::PmemMedia;

use super::mapping::PmemMapping;
use crate::arch::copy;

/// One mapped region as seen by the pmem device.
#[derive(Debug)]
pub struct KernelMedia {
    map: PmemMapping,
}

impl KernelMedia {
    pub fn new(map: PmemMapping) -> Self {
        KernelMedia { map }
    }

    pub fn mapping(&self) -> &PmemMapping {
        &self.map
    }

    /// The virtual address of `[offset, offset + len)`, if inside the region.
    fn at(&self, offset: u64, len: usize) -> Option<*mut u8> {
        let end = offset.checked_add(len as u64)?;
        (end <= self.map.len()).then(|| (self.map.virt() + offset) as *mut u8)
    }
}

impl PmemMedia for KernelMedia {
    fn len(&self) -> u64 {
        self.map.len()
    }

    /// Machine-check-safe copy that stops exactly at the poison.
    ///
    /// When `copy_mc` comes back short, the #MC handler has recorded the
    /// poisoned physical range. If it lies in this copy, the bytes up to it
    /// are (re)copied and the rest reported as not copied; if it does not
    /// (an unrelated #MC interrupted the copy), the copy resumes.
    fn copy_mc(&self, offset: u64, dst: &mut [u8]) -> usize {
        let Some(src) = self.at(offset, dst.len()) else { return dst.len() };
        let len = dst.len();
        let phys = self.map.phys() + offset;
        let mut done = 0;
        for _ in 0..64 {
            // SAFETY: `src..+len` is inside the mapping, `dst` is a distinct
            // kernel buffer of `len` bytes.
            let left = unsafe { copy::copy_mc(dst.as_mut_ptr().add(done), src.add(done), len - done) };
            if left == 0 {
                return 0;
            }
            let stop = len - left;
            match crate::mce::take_consumed_poison() {
                Some(p) if p.start() < phys + len as u64 && p.end() > phys => {
                    let poison_at = (p.start().max(phys) - phys) as usize;
                    if stop < poison_at {
                        // SAFETY: as above; these bytes precede the poison.
                        let more =
                            unsafe { copy::copy_mc(dst.as_mut_ptr().add(stop), src.add(stop), poison_at - stop) };
                        if more != 0 {
                            return len - (poison_at - more);
                        }
                    }
                    return len - poison_at;
                }
                _ => done = stop,
            }
        }
        len - done
    }

    fn copy_flush(&self, offset: u64, src: &[u8]) {
        if let Some(dst) = self.at(offset, src.len()) {
            // SAFETY: inside the mapping; `src` is a distinct buffer.
            unsafe { copy::copy_flush(dst, src.as_ptr(), src.len()) };
        }
    }

    fn zero_flush(&self, offset: u64, len: u64) {
        if let Some(dst) = usize::try_from(len).ok().and_then(|l| self.at(offset, l)) {
            // SAFETY: inside the mapping.
            unsafe { copy::zero_flush(dst, len as usize) };
        }
    }

    fn flush(&self, offset: u64, len: u64) {
        if let Some(p) = usize::try_from(len).ok().and_then(|l| self.at(offset, l)) {
            // SAFETY: inside the mapping.
            unsafe { copy::flush(p, len as usize) };
        }
    }

    fn fence(&self) {
        copy::fence();
    }
}
