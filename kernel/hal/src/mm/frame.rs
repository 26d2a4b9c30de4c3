//! [`Frame`]: one owned, zeroed 4 KiB frame of RAM, freed on drop.

use fsdax_mm::PAGE_SIZE;

use super::{alloc_frame, free_frame, phys_to_virt};

/// One 4 KiB frame of RAM owned by its holder: zeroed when allocated, freed
/// when dropped. Moving it into an [`super::AddressSpace`] hands the frame
/// to that space (freed when unmapped or when the space goes away).
#[derive(Debug)]
pub struct Frame {
    phys: u64,
}

impl Frame {
    /// A zeroed frame; None when RAM is exhausted.
    pub fn alloc_zeroed() -> Option<Frame> {
        alloc_frame().map(|phys| Frame { phys })
    }

    /// Its physical address.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// Copies bytes out of the frame at `offset` (clamped to the frame).
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> usize {
        let n = buf.len().min((PAGE_SIZE as usize).saturating_sub(offset));
        // SAFETY: the frame is RAM owned by this value, readable through the
        // direct map; `offset + n` stays inside it.
        unsafe {
            core::ptr::copy_nonoverlapping((phys_to_virt(self.phys) as *const u8).add(offset), buf.as_mut_ptr(), n)
        };
        n
    }

    /// Copies bytes into the frame at `offset` (clamped to the frame).
    pub fn write(&mut self, offset: usize, data: &[u8]) -> usize {
        let n = data.len().min((PAGE_SIZE as usize).saturating_sub(offset));
        // SAFETY: the frame is RAM owned by this value (`&mut self`: no other
        // access through it), writable through the direct map; `offset + n`
        // stays inside it.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), (phys_to_virt(self.phys) as *mut u8).add(offset), n) };
        n
    }

    /// Gives up ownership: the caller (an address space) frees it.
    pub(crate) fn into_phys(self) -> u64 {
        let p = self.phys;
        core::mem::forget(self);
        p
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        free_frame(self.phys);
    }
}
