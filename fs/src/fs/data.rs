//! File data: read, write, append, truncate, fallocate, and the write
//! engine shared with DAX write faults (copy-on-write of shared blocks).

use super::{failed, FileSystem, Fill, BS};
use crate::error::{FsError, Result};
use crate::format::*;
use crate::pmem::Pmem;
use crate::state::{Ino, Mutation};

/// `fallocate` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Falloc {
    /// Allocate zeroed blocks for the holes of the range; grow the size
    /// unless `keep_size`.
    Allocate {
        /// Leave the file size unchanged (FALLOC_FL_KEEP_SIZE).
        keep_size: bool,
    },
    /// Deallocate the range; it reads as zeros (FALLOC_FL_PUNCH_HOLE).
    /// Partial blocks at either end are zeroed in place (copied first only
    /// if shared), so punching needs no free block on unshared data.
    PunchHole,
    /// Zero the range, allocating its holes (FALLOC_FL_ZERO_RANGE); grow
    /// the size unless `keep_size`. Whole bad blocks in the range are
    /// rewritten (recovery write) and leave the bad-block list.
    ZeroRange {
        /// Leave the file size unchanged (FALLOC_FL_KEEP_SIZE).
        keep_size: bool,
    },
}

/// Where the bytes of a read go: the single-copy read path. The file
/// system hands the copier each piece of the range, in order: device bytes
/// (a copy straight from persistent memory; the kernel passes
/// `copy_mc_to_user`, which must also honour the device's poison list, as
/// [`Pmem::load`] does) or a hole (zeros). A copier that stops short
/// reports `Err((error, bytes copied))`: the read returns what was copied
/// before (or the error if nothing was).
pub trait ReadCopier<P> {
    /// Copies `len` device bytes at `dev` to output position `at`.
    fn copy_pmem(&mut self, pm: &P, at: usize, dev: u64, len: usize) -> core::result::Result<(), (FsError, usize)>;
    /// Writes `len` zeros at output position `at` (a hole).
    fn copy_zeros(&mut self, at: usize, len: usize) -> core::result::Result<(), (FsError, usize)>;
}

/// Where the bytes of a write come from: the single-copy write path. The
/// file system allocates and unshares as for any write, then asks the
/// copier to fill each device range straight from the caller's memory (the
/// kernel passes `copy_from_user_nocache`), flushes what it reports
/// written, and commits exactly that. A copier that stops short (a user
/// page fault, poison in the source) reports `Err((error, bytes
/// copied))`: the write commits that prefix and returns the short count
/// (the error if nothing was written), like Linux.
pub trait WriteCopier<P> {
    /// Copies input bytes `[at, at + len)` to device bytes at `dev`.
    fn copy_to_pmem(
        &mut self,
        pm: &mut P,
        at: usize,
        dev: u64,
        len: usize,
    ) -> core::result::Result<(), (FsError, usize)>;
    /// Copies input bytes `[at, at + buf.len())` into `buf` (for a recovery
    /// write of a whole bad block, which needs the bytes in one piece).
    fn copy_to_buf(&mut self, at: usize, buf: &mut [u8]) -> core::result::Result<(), (FsError, usize)>;
    /// Whether [`WriteCopier::copy_to_pmem`]'s stores need no flush
    /// (non-temporal stores): the file system then skips its flush.
    fn flushes(&self) -> bool {
        false
    }
}

/// A slice as the source of a write.
struct SliceSource<'a>(&'a [u8]);

impl<P: Pmem> WriteCopier<P> for SliceSource<'_> {
    fn copy_to_pmem(
        &mut self,
        pm: &mut P,
        at: usize,
        dev: u64,
        len: usize,
    ) -> core::result::Result<(), (FsError, usize)> {
        pm.store(dev, &self.0[at..at + len]).map_err(|(e, n)| (e.into(), n))
    }
    fn copy_to_buf(&mut self, at: usize, buf: &mut [u8]) -> core::result::Result<(), (FsError, usize)> {
        let n = buf.len();
        buf.copy_from_slice(&self.0[at..at + n]);
        Ok(())
    }
}

/// A slice as the destination of a read.
struct SliceSink<'a>(&'a mut [u8]);

impl<P: Pmem> ReadCopier<P> for SliceSink<'_> {
    fn copy_pmem(&mut self, pm: &P, at: usize, dev: u64, len: usize) -> core::result::Result<(), (FsError, usize)> {
        pm.load(dev, &mut self.0[at..at + len]).map_err(|(e, n)| (e.into(), n))
    }
    fn copy_zeros(&mut self, at: usize, len: usize) -> core::result::Result<(), (FsError, usize)> {
        self.0[at..at + len].fill(0);
        Ok(())
    }
}

impl<P: Pmem> FileSystem<P> {
    /// Reads at `offset`; returns bytes read: 0 at or past EOF, fewer than
    /// asked at EOF or when poisoned media follow `n > 0` good bytes (the
    /// next read, at the poisoned offset, fails with
    /// [`FsError::Poisoned`]), like Linux. A thin wrapper of
    /// [`FileSystem::read_to`].
    pub fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let len = buf.len();
        self.read_to(ino, offset, len, &mut SliceSink(buf))
    }

    /// The single-copy read: hands `c` each piece of `[offset, offset +
    /// len)` inside EOF. Returns bytes read, short at EOF or where the
    /// copier (or poison) stopped it; an error if nothing was read.
    pub fn read_to<C: ReadCopier<P> + ?Sized>(&self, ino: Ino, offset: u64, len: usize, c: &mut C) -> Result<usize> {
        match self.read_engine(ino, offset, len, c)? {
            (0, Some(e)) => Err(e),
            (n, _) => Ok(n),
        }
    }

    /// Reads exactly `buf.len()` bytes inside EOF, or fails: a short read is
    /// an error (for comparisons and copies that must see every byte).
    pub(super) fn read_exact(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        match self.read_engine(ino, offset, len, &mut SliceSink(buf))? {
            (_, Some(e)) => Err(e),
            (n, None) if n < buf.len() => Err(FsError::Invalid),
            _ => Ok(()),
        }
    }

    /// The read engine: bytes read, and the media error that stopped it
    /// early, if one did.
    fn read_engine<C: ReadCopier<P> + ?Sized>(
        &self,
        ino: Ino,
        offset: u64,
        len: usize,
        c: &mut C,
    ) -> Result<(usize, Option<FsError>)> {
        let i = self.file(ino)?;
        if offset >= i.size {
            return Ok((0, None));
        }
        let n = (len as u64).min(i.size - offset) as usize;
        let mut done = 0usize;
        while done < n {
            let pos = offset + done as u64;
            let fb = pos / BS;
            let inb = pos % BS;
            match i.extent_at(fb) {
                Some((ef, e)) => {
                    let avail = (ef + e.len - fb) * BS - inb;
                    let k = (avail.min((n - done) as u64)) as usize;
                    let phys = (e.pblk + (fb - ef)) * BS + inb;
                    // Blocks in the bad-block list are poisoned even where
                    // the device no longer knows it (after a reboot).
                    let (k, bad) = match self.first_bad_byte(phys, k as u64) {
                        Some(b) => ((b - phys) as usize, Some(b)),
                        None => (k, None),
                    };
                    if let Err((e, good)) = c.copy_pmem(&self.pm, done, phys, k) {
                        return Ok((done + good.min(k), Some(e)));
                    }
                    done += k;
                    if let Some(offset) = bad {
                        return Ok((done, Some(FsError::Poisoned { offset })));
                    }
                }
                None => {
                    let next = i.extents.range(fb..).next().map_or(u64::MAX, |(&s, _)| s);
                    let avail = next.saturating_sub(fb).saturating_mul(BS) - inb;
                    let k = (avail.min((n - done) as u64)) as usize;
                    if let Err((e, good)) = c.copy_zeros(done, k) {
                        return Ok((done + good.min(k), Some(e)));
                    }
                    done += k;
                }
            }
        }
        Ok((n, None))
    }

    /// Writes at `offset` (growing the file); returns bytes written, which
    /// is short if space ran out part-way or poison stopped it after some
    /// bytes (the next write there fails). A thin wrapper of
    /// [`FileSystem::write_from`].
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize> {
        self.write_from(ino, offset, data.len(), &mut SliceSource(data))
    }

    /// The single-copy write: allocates and unshares `[offset, offset +
    /// len)` as needed, has `c` fill each device range, flushes, and
    /// commits exactly the bytes written (see [`WriteCopier`]).
    pub fn write_from<C: WriteCopier<P>>(&mut self, ino: Ino, offset: u64, len: usize, c: &mut C) -> Result<usize> {
        let size = self.file(ino)?.size;
        if offset.checked_add(len as u64).is_none_or(|e| e > MAX_FILE_SIZE) {
            return Err(FsError::TooBig);
        }
        if len == 0 {
            return Ok(0);
        }
        self.begin()?;
        self.copy_stop = None;
        let r = self.write_inner(ino, offset, len as u64, c, size);
        let stop = self.copy_stop.take();
        match (r, stop) {
            (Ok(0), Some(e)) => self.finish(Err(e)),
            (r, stop) => {
                let n = self.finish(r)?;
                if let Some(FsError::Poisoned { offset }) = stop {
                    self.note_bad_block(offset);
                }
                Ok(n)
            }
        }
    }

    fn write_inner(&mut self, ino: Ino, offset: u64, len: u64, c: &mut dyn WriteCopier<P>, size: u64) -> Result<usize> {
        if offset > size {
            self.zero_tail(ino, size, offset)?;
        }
        let written = self.write_range(ino, offset, len, &mut Fill::Copy(c), true, true, true)?;
        if offset + written > size {
            self.push(Mutation::SetSize { ino, size: offset + written })?;
        }
        Ok(written as usize)
    }

    /// Appends at EOF; returns the bytes written, which is short (like
    /// [`FileSystem::write`]) when space runs out part-way: the size then
    /// covers exactly what was written.
    pub fn append(&mut self, ino: Ino, data: &[u8]) -> Result<usize> {
        let off = self.file(ino)?.size;
        self.write(ino, off, data)
    }

    /// Makes the file's data and metadata durable. Every operation is
    /// already durable when it returns, so this is a fence.
    pub fn fsync(&mut self, ino: Ino) -> Result<()> {
        self.st.inode(ino)?;
        self.pm.fence();
        Ok(())
    }

    /// Sets the size.
    pub fn truncate(&mut self, ino: Ino, size: u64) -> Result<()> {
        let old = self.file(ino)?.size;
        if size > MAX_FILE_SIZE {
            return Err(FsError::TooBig);
        }
        self.begin()?;
        self.shrinking();
        let r = self.truncate_inner(ino, old, size);
        self.finish(r)?;
        self.zero_past_eof(ino, size, old)
    }

    /// After a truncate to `size` (from `old`) committed: zeroes the new
    /// last block's bytes past EOF, durably: a DAX mapping of that page
    /// shows them. They are past EOF in every committed state by now, so
    /// an unshared block is zeroed in place; a shared one gets a zeroed
    /// copy in a transaction of its own (the other owner keeps its bytes).
    fn zero_past_eof(&mut self, ino: Ino, size: u64, old: u64) -> Result<()> {
        let tail_end = (size.div_ceil(BS) * BS).min(old);
        if tail_end <= size {
            return Ok(());
        }
        self.begin()?;
        let r = self.write_range(ino, size, tail_end - size, &mut Fill::Zero, false, true, true);
        match self.finish(r)? {
            n if n == tail_end - size => Ok(()),
            _ => Err(FsError::NoSpace),
        }
    }

    pub(super) fn truncate_inner(&mut self, ino: Ino, old: u64, size: u64) -> Result<()> {
        if size > old {
            self.zero_tail(ino, old, size)?;
        } else {
            let keep = size.div_ceil(BS);
            self.unmap_if_mapped(ino, keep, MAX_FILE_BLOCKS - keep)?;
        }
        if size != old {
            self.push(Mutation::SetSize { ino, size })?;
        }
        Ok(())
    }

    /// `fallocate`. Allocation that runs out of space part-way keeps what it
    /// allocated (past EOF if the size would have grown) and fails.
    pub fn fallocate(&mut self, ino: Ino, mode: Falloc, offset: u64, len: u64) -> Result<()> {
        let size = self.file(ino)?.size;
        let end = offset.checked_add(len).filter(|&e| e <= MAX_FILE_SIZE).ok_or(FsError::TooBig)?;
        if len == 0 {
            return Err(FsError::Invalid);
        }
        self.begin()?;
        if mode == Falloc::PunchHole {
            self.shrinking();
        }
        let r = self.fallocate_inner(ino, mode, offset, len, size, end);
        self.finish(r)
    }

    pub(super) fn fallocate_inner(
        &mut self,
        ino: Ino,
        mode: Falloc,
        offset: u64,
        len: u64,
        size: u64,
        end: u64,
    ) -> Result<()> {
        match mode {
            Falloc::Allocate { keep_size } => {
                if end > size && !keep_size {
                    self.zero_tail(ino, size, end)?;
                }
                if self.write_range(ino, offset, len, &mut Fill::Keep, true, false, true)? != len {
                    return Err(FsError::NoSpace);
                }
                if !keep_size && end > size {
                    self.push(Mutation::SetSize { ino, size: end })?;
                }
            }
            Falloc::ZeroRange { keep_size } => {
                if end > size && !keep_size {
                    self.zero_tail(ino, size, end)?;
                }
                if self.write_range(ino, offset, len, &mut Fill::Zero, true, true, true)? != len {
                    return Err(FsError::NoSpace);
                }
                if !keep_size && end > size {
                    self.push(Mutation::SetSize { ino, size: end })?;
                }
            }
            Falloc::PunchHole => {
                let first_full = offset.div_ceil(BS);
                let last_full = end / BS;
                // Partial blocks at either end are zeroed in place (like a
                // data write: not atomic), copied first only if shared, so
                // punching unshared data needs no free block.
                let head_end = end.min(first_full * BS);
                if offset < head_end
                    && self.write_range(ino, offset, head_end - offset, &mut Fill::Zero, false, true, true)?
                        != head_end - offset
                {
                    return Err(FsError::NoSpace);
                }
                let tail_start = (last_full * BS).max(offset);
                if tail_start < end
                    && last_full >= first_full
                    && self.write_range(ino, tail_start, end - tail_start, &mut Fill::Zero, false, true, true)?
                        != end - tail_start
                {
                    return Err(FsError::NoSpace);
                }
                if first_full < last_full {
                    self.unmap_if_mapped(ino, first_full, last_full - first_full)?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn unmap_if_mapped(&mut self, ino: Ino, fblk: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let i = self.file(ino)?;
        let mapped = i.extent_at(fblk).is_some() || i.extents.range(fblk..fblk + len).next().is_some();
        if mapped {
            self.push(Mutation::Unmap { ino, fblk, len })?;
        }
        Ok(())
    }

    /// Before a file grows from `size` to cover `new_end`: zeroes every
    /// mapped byte of `[size, new_end)`. Bytes past EOF are undefined on
    /// media (the tail of the last block; blocks preallocated past EOF that
    /// an interrupted write touched), and must never become visible.
    /// Holes stay holes; costs per extent plus the bytes actually mapped.
    pub(super) fn zero_tail(&mut self, ino: Ino, size: u64, new_end: u64) -> Result<()> {
        // In place is fine: these bytes are past EOF in every committed
        // state. A shared block there needs a copy; without space the file
        // must not grow over stale bytes.
        if size < new_end
            && self.write_range(ino, size, new_end - size, &mut Fill::Zero, false, true, true)? != new_end - size
        {
            return Err(FsError::NoSpace);
        }
        Ok(())
    }

    /// The first byte of `[phys, phys + len)` in a block of the bad-block
    /// list, if any.
    pub(super) fn first_bad_byte(&self, phys: u64, len: u64) -> Option<u64> {
        if len == 0 || self.st.space.bad.total() == 0 {
            return None;
        }
        let (a, e) = (phys / BS, (phys + len).div_ceil(BS));
        self.st.space.bad.intersect(a, e - a).first().map(|&(s, _)| (s * BS).max(phys))
    }

    /// Stores `fill` in place at device bytes `[phys, phys + len)`, which
    /// belong to blocks the file owns unshared; returns the bytes stored,
    /// short where a copier stopped (the reason in `copy_stop`). Bad blocks
    /// (listed by the file system, or refused by the device) that the store
    /// covers whole are rewritten with a recovery write, which clears their
    /// poison, and leave the bad-block list in this transaction; a store
    /// into part of a bad block stops there ([`FsError::Poisoned`]).
    fn store_in_place(&mut self, phys: u64, len: u64, fill: &mut Fill<'_, P>, data_at: usize) -> Result<u64> {
        let end = phys + len;
        let mut at = phys;
        while at < end {
            let bad = self.first_bad_byte(at, end - at);
            let upto = bad.unwrap_or(end);
            if upto > at {
                let r = match fill {
                    Fill::Copy(c) => {
                        let r = c.copy_to_pmem(&mut self.pm, data_at + (at - phys) as usize, at, (upto - at) as usize);
                        let done = match r {
                            Ok(()) => upto - at,
                            Err((_, n)) => n as u64,
                        };
                        if !c.flushes() {
                            self.pm.flush(at, done);
                        }
                        r.map_err(|(e, n)| (e, n as u64))
                    }
                    Fill::Zero => {
                        let r = self.pm.store_zeros(at, upto - at).map_err(|(e, n)| (e.into(), n));
                        self.pm.flush(at, upto - at);
                        r
                    }
                    Fill::Keep => Ok(()),
                };
                match r {
                    Ok(()) => at = upto,
                    Err((e, n)) => {
                        // Poison the device knows and the list does not:
                        // rewrite the block if the store covers it whole.
                        let hit = at + n;
                        if matches!(e, FsError::Poisoned { .. }) && self.recover_block(hit, phys, end, fill, data_at)? {
                            at = (hit / BS + 1) * BS;
                            continue;
                        }
                        if let Fill::Copy(_) = fill {
                            self.copy_stop = Some(e);
                            return Ok(hit - phys);
                        }
                        return Err(e);
                    }
                }
                continue;
            }
            let b = upto;
            if !self.recover_block(b, phys, end, fill, data_at)? {
                if let Fill::Copy(_) = fill {
                    self.copy_stop.get_or_insert(FsError::Poisoned { offset: b });
                    return Ok(b - phys);
                }
                return Err(FsError::Poisoned { offset: b });
            }
            let blk = b / BS;
            if self.st.space.bad.contains_range(blk, 1) {
                self.push(Mutation::BadRemove { pblk: blk, len: 1 })?;
            }
            at = (blk + 1) * BS;
        }
        Ok(len)
    }

    /// Rewrites the whole block holding device byte `hit` with a recovery
    /// write, if `[start, end)` covers it whole; `false` if it does not (or
    /// the copier could not supply the bytes).
    fn recover_block(
        &mut self,
        hit: u64,
        start: u64,
        end: u64,
        fill: &mut Fill<'_, P>,
        data_at: usize,
    ) -> Result<bool> {
        let b0 = hit / BS * BS;
        if b0 < start || b0 + BS > end {
            return Ok(false);
        }
        let mut block = [0u8; BS as usize];
        match fill {
            Fill::Copy(c) => {
                if let Err((e, _)) = c.copy_to_buf(data_at + (b0 - start) as usize, &mut block) {
                    self.copy_stop = Some(e);
                    return Ok(false);
                }
            }
            Fill::Zero => {}
            Fill::Keep => return Ok(false),
        }
        self.pm.recovery_write(b0, &block)?;
        Ok(true)
    }

    pub(super) fn copy_phys(&mut self, from: u64, to: u64, len: u64) -> Result<()> {
        if let Some(offset) = self.first_bad_byte(from, len) {
            return Err(FsError::Poisoned { offset });
        }
        let mut buf = [0u8; 4096];
        let mut done = 0;
        while done < len {
            let k = (len - done).min(buf.len() as u64) as usize;
            self.pm.load(from + done, &mut buf[..k]).map_err(failed)?;
            self.pm.store(to + done, &buf[..k]).map_err(failed)?;
            done += k as u64;
        }
        Ok(())
    }

    /// The engine of write, zeroing, allocation and unsharing over the byte
    /// range `[offset, offset + len)`. Unshared mapped blocks are written in
    /// place; shared blocks are copied on write (only the bytes the write
    /// does not cover are copied); holes are allocated if `alloc_holes`.
    /// Pushes mutations into the open transaction. Returns bytes handled
    /// (short only on ENOSPC after some progress). A media error (a store
    /// into poison, poison in the bytes a copy-on-write copies around) is
    /// returned as is: the caller's `finish` abandons the transaction.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_range(
        &mut self,
        ino: Ino,
        offset: u64,
        len: u64,
        fill: &mut Fill<'_, P>,
        alloc_holes: bool,
        unshare: bool,
        in_place: bool,
    ) -> Result<u64> {
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let fb = pos / BS;
            let last = (end - 1) / BS;
            let i = self.file(ino)?;
            let (mapped, run) = match i.extent_at(fb) {
                Some((ef, e)) => {
                    let p = e.pblk + (fb - ef);
                    let lim = (ef + e.len - fb).min(last + 1 - fb);
                    let (shared, k) = self.st.space.shared_run(p, lim);
                    // Blocks unmapped earlier in this transaction are still
                    // mapped by the committed state: treat them as shared.
                    let (shared, k) = match self.fx.unmapped.intersect(p, k).first() {
                        _ if shared => (true, k),
                        Some(&(s, l)) if s == p => (true, l),
                        Some(&(s, _)) => (false, s - p),
                        None => (false, k),
                    };
                    (Some((p, shared)), k)
                }
                None => {
                    let next = i.extents.range(fb..).next().map_or(u64::MAX, |(&s, _)| s);
                    (None, next.min(last + 1) - fb)
                }
            };
            let run_end = ((fb + run) * BS).min(end);
            match mapped {
                Some((p, false)) if in_place => {
                    let phys = p * BS + (pos - fb * BS);
                    let k = run_end - pos;
                    if !fill.is_keep() {
                        self.data_dirty = true;
                        let n = self.store_in_place(phys, k, fill, (pos - offset) as usize)?;
                        if n < k {
                            return Ok(pos + n - offset);
                        }
                    }
                    pos = run_end;
                }
                Some((_, true)) if !unshare => pos = run_end,
                None if !alloc_holes => pos = run_end,
                _ => {
                    let old = mapped.map(|(p, _)| p);
                    let goal = if fb > 0 {
                        self.file(ino)?.extent_at(fb - 1).map(|(ef, e)| e.pblk + (fb - 1 - ef) + 1)
                    } else {
                        None
                    };
                    let Some((q, m)) = self.alloc(goal, fb, run) else {
                        if pos > offset {
                            return Ok(pos - offset);
                        }
                        return Err(FsError::NoSpace);
                    };
                    let blk_start = fb * BS;
                    let blk_end = (fb + m) * BS;
                    let w_end = blk_end.min(end);
                    let qb = q * BS;
                    // Copy around: bytes of the new blocks the write does not cover.
                    let around = |fs: &mut Self, a: u64, b: u64| -> Result<()> {
                        if a >= b {
                            return Ok(());
                        }
                        match old {
                            Some(p) => fs.copy_phys(p * BS + (a - blk_start), qb + (a - blk_start), b - a),
                            None => fs.pm.store_zeros(qb + (a - blk_start), b - a).map_err(failed),
                        }
                    };
                    // A media error here fails the operation before the new
                    // blocks are mapped; `finish` abandons the transaction.
                    self.data_dirty = true;
                    around(self, blk_start, pos)?;
                    // Where the copier stopped, if it did.
                    let mut stop = w_end;
                    match fill {
                        Fill::Copy(c) => {
                            let at = (pos - offset) as usize;
                            if let Err((e, n)) =
                                c.copy_to_pmem(&mut self.pm, at, qb + (pos - blk_start), (w_end - pos) as usize)
                            {
                                self.copy_stop = Some(e);
                                stop = pos + n as u64;
                                if let FsError::Poisoned { offset: bad } = e {
                                    if (qb..qb + m * BS).contains(&bad) {
                                        // Poison in a new block: nothing of
                                        // that block is committed.
                                        stop = stop.min(blk_start + (bad - qb) / BS * BS).max(pos);
                                    }
                                }
                            }
                        }
                        Fill::Zero => self.pm.store_zeros(qb + (pos - blk_start), w_end - pos).map_err(failed)?,
                        Fill::Keep => around(self, pos, w_end)?,
                    }
                    // Only the blocks the data reached are mapped; the rest
                    // of the last one keeps its old bytes (or zeros).
                    let mm = if stop > pos { (stop - blk_start).div_ceil(BS) } else { 0 };
                    if stop == pos && self.copy_stop.is_some() && pos == offset {
                        return Ok(0);
                    }
                    if mm > 0 {
                        around(self, stop, (fb + mm) * BS)?;
                        self.pm.flush(qb, mm * BS);
                        if old.is_some() {
                            self.push(Mutation::Unmap { ino, fblk: fb, len: mm })?;
                        }
                        self.push(Mutation::Map { ino, fblk: fb, pblk: q, len: mm, fresh: true })?;
                    }
                    if stop < w_end {
                        return Ok(stop - offset);
                    }
                    pos = w_end;
                }
            }
        }
        Ok(end - offset)
    }

    /// Picks free blocks for file block `fb` (see [`Space::pick`]).
    /// Never takes the room the next checkpoints need
    /// ([`FileSystem::data_room`]).
    pub(super) fn alloc(&mut self, goal: Option<u64>, fb: u64, want: u64) -> Option<(u64, u64)> {
        let room = self.data_room();
        if room == 0 {
            return None;
        }
        self.st.space.pick(&mut self.cursor, goal, fb, want.min(room))
    }
}
