//! The DAX fault path's view: where a file offset lives (`bmap`), every
//! mapped run of a file (`fiemap`), and making a range writable in place
//! (`bmap_write`).

use alloc::vec::Vec;

use super::{FileSystem, Fill, BS};
use crate::error::{FsError, Result};
use crate::format::*;
use crate::pmem::Pmem;
use crate::state::Ino;

/// Result of [`FileSystem::bmap`]: where a file offset lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bmap {
    /// File byte offset of the start of the run (block aligned).
    pub file_offset: u64,
    /// Length of the run in bytes.
    pub len: u64,
    /// Device byte offset of the run, `None` for a hole.
    pub phys: Option<u64>,
    /// The block at the queried offset is shared (a write must CoW).
    pub shared: bool,
}

/// One mapped run of a file, as [`FileSystem::fiemap`] reports it
/// (FS_IOC_FIEMAP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileExtent {
    /// File byte offset (block aligned).
    pub file_offset: u64,
    /// Device byte offset.
    pub phys: u64,
    /// Length in bytes.
    pub len: u64,
    /// Every block of the run is shared with another owner (a write must
    /// copy it first: FIEMAP_EXTENT_SHARED).
    pub shared: bool,
}

impl<P: Pmem> FileSystem<P> {
    /// Every mapped run of file `ino`, in file order, split where sharing
    /// changes (holes are the gaps). Costs per extent.
    pub fn fiemap(&self, ino: Ino) -> Result<Vec<FileExtent>> {
        let i = self.file(ino)?;
        let mut out = Vec::new();
        for (&f, e) in &i.extents {
            let mut k = 0;
            while k < e.len {
                let (shared, n) = self.st.space.shared_run(e.pblk + k, e.len - k);
                let n = n.max(1);
                out.push(FileExtent { file_offset: (f + k) * BS, phys: (e.pblk + k) * BS, len: n * BS, shared });
                k += n;
            }
        }
        Ok(out)
    }

    /// Whether any block of `[offset, offset + len)` of file `ino` is
    /// shared with another owner: a write there copies it first and moves
    /// the range to new blocks (the kernel then takes the file's mapping
    /// lock exclusive). Costs per extent in the range.
    pub fn range_shared(&self, ino: Ino, offset: u64, len: u64) -> Result<bool> {
        let i = self.file(ino)?;
        if len == 0 {
            return Ok(false);
        }
        let fb = offset / BS;
        let end = offset.saturating_add(len).div_ceil(BS);
        // Called before every write: walks the extents in place (no
        // allocation).
        let first = i.extent_at(fb).map_or(fb, |(s, _)| s);
        for (&f, e) in i.extents.range(first..end) {
            let (lo, hi) = (f.max(fb), (f + e.len).min(end));
            if hi > lo {
                let (p, l) = (e.pblk + (lo - f), hi - lo);
                let (shared, n) = self.st.space.shared_run(p, l);
                if shared || n < l {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The first byte of the device range `[phys, phys + len)` that lies in
    /// a block of the persistent bad-block list, if any (the DAX fault path
    /// refuses to map such a page: SIGBUS instead of a machine check).
    pub fn first_bad(&self, phys: u64, len: u64) -> Option<u64> {
        self.first_bad_byte(phys, len)
    }

    /// Where file offset `offset` lives (for the DAX fault path).
    pub fn bmap(&self, ino: Ino, offset: u64) -> Result<Bmap> {
        let i = self.file(ino)?;
        let fb = offset / BS;
        Ok(match i.extent_at(fb) {
            Some((ef, e)) => Bmap {
                file_offset: ef * BS,
                len: e.len * BS,
                phys: Some(e.pblk * BS),
                shared: self.st.space.refcount(e.pblk + (fb - ef)) > 1,
            },
            None => {
                let next = i.extents.range(fb..).next().map_or(MAX_FILE_BLOCKS, |(&s, _)| s);
                Bmap {
                    file_offset: fb.saturating_mul(BS),
                    len: next.saturating_sub(fb) * BS,
                    phys: None,
                    shared: false,
                }
            }
        })
    }

    /// Makes `[offset, offset + len)` allocated and unshared (holes zeroed,
    /// shared blocks copied) so that a DAX write fault can map it writable;
    /// returns the mapping at `offset`.
    pub fn bmap_write(&mut self, ino: Ino, offset: u64, len: u64) -> Result<Bmap> {
        self.file(ino)?;
        if len == 0 || offset.checked_add(len).is_none_or(|e| e > MAX_FILE_SIZE) {
            return Err(FsError::Invalid);
        }
        self.begin()?;
        let r = self.write_range(ino, offset, len, &mut Fill::Keep, true, true, true);
        match self.finish(r)? {
            n if n == len => self.bmap(ino, offset),
            _ => Err(FsError::NoSpace),
        }
    }
}
