//! `PmemMedia` over the hal's [`PmemRegion`]: the machine-check-safe read
//! (reconciled with the poison the machine check reported, by
//! `fsdax_kcore::copy_mc`) and the flushing writes.

use fsdax_drivers::pmem::device::PmemMedia;
use fsdax_hal::mm::{PmemAccessError, PmemRegion};
use fsdax_kcore::copy_mc::{read_exact_or_poison, ReadOutcome};

/// One mapped region as seen by the pmem device.
#[derive(Debug)]
pub struct KernelMedia {
    region: PmemRegion,
}

impl KernelMedia {
    /// Media over a mapped region.
    pub fn new(region: PmemRegion) -> Self {
        KernelMedia { region }
    }

    /// The mapped region.
    pub fn region(&self) -> &PmemRegion {
        &self.region
    }
}

impl PmemMedia for KernelMedia {
    fn len(&self) -> u64 {
        self.region.len()
    }

    /// Machine-check-safe copy that stops exactly at the poison: returns the
    /// bytes NOT copied; the bytes before them are valid.
    fn copy_mc(&self, offset: u64, dst: &mut [u8]) -> usize {
        let len = dst.len();
        let phys = self.region.phys() + offset;
        let outcome = read_exact_or_poison(len, phys, |from, to| {
            match self.region.read_mc(offset + from as u64, &mut dst[from..to]) {
                Ok(()) => Ok(()),
                Err((PmemAccessError::MachineCheck { poison }, copied)) => Err((copied, poison)),
                // Out of range: nothing copied and nothing to resume.
                Err((PmemAccessError::OutOfRange { .. }, _)) => Err((0, None)),
            }
        });
        match outcome {
            ReadOutcome::Complete => 0,
            ReadOutcome::Poisoned { valid, .. } | ReadOutcome::Failed { valid } => len - valid,
        }
    }

    fn copy_flush(&self, offset: u64, src: &[u8]) {
        // The device range-checks every request before it gets here.
        let _ = self.region.write_flush(offset, src);
    }

    fn zero_flush(&self, offset: u64, len: u64) {
        let _ = self.region.zero_flush(offset, len);
    }

    fn flush(&self, offset: u64, len: u64) {
        let _ = self.region.flush(offset, len);
    }

    fn fence(&self) {
        self.region.fence();
    }
}
