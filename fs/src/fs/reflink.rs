//! Sharing: reflink (FICLONE), reflink_range (FICLONERANGE) and
//! dedupe_range (FIDEDUPERANGE).

use alloc::vec;
use alloc::vec::Vec;

use super::{extents_in, FileSystem, BS};
use crate::error::{FsError, Result};
use crate::format::*;
use crate::pmem::Pmem;
use crate::state::{Ino, Mutation};

impl<P: Pmem> FileSystem<P> {
    /// FICLONE: make `dst` share all of `src`'s data; `dst` takes `src`'s size.
    pub fn reflink(&mut self, src: Ino, dst: Ino) -> Result<()> {
        if src == dst {
            return Err(FsError::Invalid);
        }
        let s = self.file(src)?;
        let size = s.size;
        let pieces = extents_in(s, 0, size.div_ceil(BS));
        self.file(dst)?;
        self.begin()?;
        let r = self.reflink_inner(dst, size, pieces);
        self.finish(r)
    }

    pub(super) fn reflink_inner(&mut self, dst: Ino, size: u64, pieces: Vec<(u64, u64, u64)>) -> Result<()> {
        self.unmap_if_mapped(dst, 0, MAX_FILE_BLOCKS)?;
        for (f, p, l) in pieces {
            self.push(Mutation::Map { ino: dst, fblk: f, pblk: p, len: l, fresh: false })?;
        }
        if self.file(dst)?.size != size {
            self.push(Mutation::SetSize { ino: dst, size })?;
        }
        Ok(())
    }

    pub(super) fn check_remap(&self, src: Ino, so: u64, dst: Ino, doff: u64, len: u64, dedupe: bool) -> Result<()> {
        let ss = self.file(src)?.size;
        let ds = self.file(dst)?.size;
        if len == 0 || !so.is_multiple_of(BS) || !doff.is_multiple_of(BS) {
            return Err(FsError::Invalid);
        }
        let se = so.checked_add(len).ok_or(FsError::Invalid)?;
        let de = doff.checked_add(len).filter(|&e| e <= MAX_FILE_SIZE).ok_or(FsError::TooBig)?;
        if se > ss || (dedupe && de > ds) {
            return Err(FsError::Invalid);
        }
        if !se.is_multiple_of(BS) && (se != ss || de < ds) {
            return Err(FsError::Invalid);
        }
        if src == dst && so < de && doff < se {
            return Err(FsError::Invalid);
        }
        Ok(())
    }

    pub(super) fn remap(&mut self, src: Ino, so: u64, dst: Ino, doff: u64, len: u64) -> Result<()> {
        let dsize = self.file(dst)?.size;
        self.begin()?;
        let r = self.remap_inner(src, so, dst, doff, len, dsize);
        self.finish(r)
    }

    pub(super) fn remap_inner(&mut self, src: Ino, so: u64, dst: Ino, doff: u64, len: u64, dsize: u64) -> Result<()> {
        let nblk = len.div_ceil(BS);
        let (sfb, dfb) = (so / BS, doff / BS);
        if doff > dsize {
            self.zero_tail(dst, dsize, doff)?;
        }
        let pieces = extents_in(self.file(src)?, sfb, nblk);
        self.unmap_if_mapped(dst, dfb, nblk)?;
        for (f, p, l) in pieces {
            self.push(Mutation::Map { ino: dst, fblk: f - sfb + dfb, pblk: p, len: l, fresh: false })?;
        }
        if doff + len > dsize {
            self.push(Mutation::SetSize { ino: dst, size: doff + len })?;
        }
        Ok(())
    }

    /// FICLONERANGE: share `[so, so + len)` of `src` at `doff` in `dst`.
    /// Offsets must be block aligned; `len` too unless the range ends at
    /// `src`'s EOF and reaches or passes `dst`'s EOF. Costs per extent.
    pub fn reflink_range(&mut self, src: Ino, so: u64, dst: Ino, doff: u64, len: u64) -> Result<()> {
        self.check_remap(src, so, dst, doff, len, false)?;
        self.remap(src, so, dst, doff, len)
    }

    /// FIDEDUPERANGE: if the two ranges hold the same bytes (compared with
    /// machine-check-safe reads), make `dst` share `src`'s blocks. Poison
    /// in either range fails with [`FsError::Poisoned`] (EIO), nothing
    /// shared.
    pub fn dedupe_range(&mut self, src: Ino, so: u64, dst: Ino, doff: u64, len: u64) -> Result<()> {
        self.check_remap(src, so, dst, doff, len, true)?;
        let mut a = vec![0u8; 64 * 1024];
        let mut b = vec![0u8; 64 * 1024];
        let mut done = 0;
        while done < len {
            let k = (len - done).min(a.len() as u64) as usize;
            // Every byte must be compared: poison on either side is EIO.
            self.read_exact(src, so + done, &mut a[..k])?;
            self.read_exact(dst, doff + done, &mut b[..k])?;
            if a[..k] != b[..k] {
                return Err(FsError::Differs);
            }
            done += k as u64;
        }
        self.remap(src, so, dst, doff, len)
    }
}
