//! Writing back the pages of a file that were mapped writable since the
//! last flush (`fsync`, `fdatasync`, `msync`, `sync`): Linux
//! `dax_writeback_mapping_range`.
//!
//! Stores through a DAX mapping go straight to persistent memory but may
//! sit in the CPU cache. A write fault marks the page dirty as it maps it
//! writable ([`KInode::dirty`], under its lock); a flush takes the marks of
//! the range and, under the same lock, takes write access away from every
//! mapping of those pages (so the next store faults and marks the page
//! again), then writes the pages' cache lines back and fences. A store
//! before the write-protect is written back by this flush; one after it
//! faults first and is written back by the next. Only pages that were
//! mapped writable are flushed: a file written with `pwrite` alone has
//! nothing to flush (the write path's stores are durable when it returns).

use fsdax_abi::Errno;
use fsdax_pmem_api::ByteRange;

use crate::fsys;
use crate::process::vm::space_of;
use crate::vfs::inode::KInode;

/// What a flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Dirty bytes taken (whole pages).
    pub bytes: u64,
    /// Mappings write-protected.
    pub mappings: usize,
}

/// Flushes the dirty pages of `k` inside `range` (every one if None) and
/// fences. Takes the file's mapping lock shared, then its dirty pages,
/// mappers and the page tables, then the file system's read lock.
pub fn flush_dirty(k: &KInode, range: Option<ByteRange>) -> Result<Flushed, Errno> {
    let _mapping = k.mapping_lock.read();
    flush_locked(k, range)
}

/// Before the blocks of `range` of `k` become shared (a reflink or dedupe
/// from it): its dirty pages are written back, which takes write access
/// away from every mapping of them, so a later store faults and copies
/// the shared block first. The caller holds the file's mapping lock.
pub fn write_protect_range(k: &KInode, range: ByteRange) -> Result<Flushed, Errno> {
    flush_locked(k, Some(range))
}

/// [`flush_dirty`] with the file's mapping lock already held.
fn flush_locked(k: &KInode, range: Option<ByteRange>) -> Result<Flushed, Errno> {
    let mut done = Flushed::default();
    let pages = {
        let mut dirty = k.dirty.lock();
        let pages = match range {
            Some(r) => dirty.take(r),
            None => dirty.take_all(),
        };
        if !pages.is_empty() {
            let mappers = k.mappers.lock();
            for r in &pages {
                for m in mappers.query(*r) {
                    if let Some(space) = space_of(m.space) {
                        if space.write_protect(m.va, m.file.len()).is_ok() {
                            done.mappings += 1;
                        }
                    }
                }
            }
        }
        pages
    };
    if pages.is_empty() {
        return Ok(done);
    }
    fsys::with_fs_read(|fs| -> Result<(), Errno> {
        k.check_mount()?;
        let dev = *fs.pmem();
        for r in &pages {
            done.bytes += r.len();
            let mut off = r.start();
            while off < r.end() {
                let b = fs.bmap(k.ino(), off).map_err(|e| crate::vfs::fs_errno(&e))?;
                let end = (b.file_offset + b.len).min(r.end()).max(off + 1);
                if let Some(p) = b.phys {
                    let _ = dev.flush(p + (off - b.file_offset), end - off);
                }
                off = end;
            }
        }
        dev.fence();
        Ok(())
    })
    .unwrap_or(Err(Errno::EIO))?;
    Ok(done)
}

/// Flushes every file's dirty pages (`sync`, `syncfs`).
pub fn flush_all() {
    for k in crate::vfs::inode::all() {
        let _ = flush_dirty(&k, None);
    }
}
