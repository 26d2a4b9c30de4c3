//! Open regular files and directories of the mounted file system, and the
//! read and write paths of regular files.
//!
//! A read copies straight from persistent memory into the process's
//! memory under the file system's read lock; a write copies straight from
//! the process's memory into persistent memory under its write lock, in
//! pieces of at most [`WRITE_CHUNK`] bytes (each one transaction), so one
//! large write does not keep every other process from the file system for
//! its whole length. A copy that meets a user page the fault resolver
//! could not map without waiting (it only tries locks, because the copy
//! runs with the file system locked) stops short; the path then drops its
//! locks, faults the page in with waiting allowed, and goes on. A page that
//! cannot be faulted in (unmapped, or not writable for a read) ends the
//! call with the bytes done, or EFAULT if none (Linux's short count).
//!
//! Lock order of a write: the description's offset lock, the file's
//! mapping lock (shared, or exclusive if the range holds shared blocks or
//! the write appends), the file system's lock. A write that copies shared
//! blocks first unmaps the range from every DAX mapping of the file; one
//! that fills holes then unmaps their zero pages (`crate::dax::layout`).

use alloc::sync::Arc;
use alloc::vec::Vec;

use fsdax_abi::Errno;
use fsdax_fs::{FsError, Ino};
use fsdax_hal::uaccess;

use super::copy::{FromUser, Stop, ToUser};
use super::fs_errno;
use super::inode::KInode;
use crate::fsys;
use crate::process::vm::Access;
use crate::process::Process;
use crate::sync::Mutex;

/// The most one `read` or `write` moves (Linux `MAX_RW_COUNT`).
pub const MAX_RW: u64 = 0x7fff_f000;
/// The most one write commits under one hold of the file system's lock.
pub const WRITE_CHUNK: u64 = 2 << 20;

/// An open regular file.
#[derive(Debug)]
pub struct RegularFile {
    /// The file.
    pub inode: Arc<KInode>,
    /// The file offset (Linux `f_pos`). Held across each read or write that
    /// uses it (Linux's `f_pos_lock`), so descriptions shared by `dup` or
    /// `vfork` move it atomically.
    pub pos: Mutex<u64>,
}

/// An open directory.
#[derive(Debug)]
pub struct Directory {
    /// The directory.
    pub ino: Ino,
    /// The mount it belongs to.
    pub mount: u64,
    /// Where `getdents64` goes on.
    pub pos: Mutex<DirPos>,
}

/// A directory stream's position: entry `index` is next (0 is `.`, 1 is
/// `..`, then the entries in name order); `after` is the name of the entry
/// before it, if known (else the stream counts from the start).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DirPos {
    /// The next entry's position (what `lseek` sets and `d_off` reports).
    pub index: u64,
    /// The name of the entry at `index - 1`, for entries `index >= 3`.
    pub after: Option<Vec<u8>>,
}

impl Directory {
    /// Checks that it belongs to the current mount (with the file system's
    /// lock held): EIO if not.
    pub fn check_mount(&self) -> Result<(), Errno> {
        if self.mount == fsys::generation() {
            Ok(())
        } else {
            Err(Errno::EIO)
        }
    }
}

/// Faults the page holding the user address `addr` in, waiting for locks
/// (none of the caller's are held). False if it cannot be mapped.
fn fault_in(p: &Process, addr: u64, access: Access) -> bool {
    p.vm().is_some_and(|vm| vm.fault_in(addr, 1, access).is_ok())
}

/// Reads up to `len` bytes of `k` at file offset `off` into user memory at
/// `buf`. Returns the bytes read: fewer at the end of the file, before
/// poisoned media (the next read there fails with EIO) or before a user
/// page that cannot be mapped (EFAULT if none).
pub fn read_at(p: &Process, k: &KInode, buf: u64, len: u64, off: u64) -> Result<u64, Errno> {
    let len = len.min(MAX_RW);
    if len == 0 {
        return Ok(0);
    }
    if !uaccess::user_range(buf, len as usize) {
        return Err(Errno::EFAULT);
    }
    let mut done = 0u64;
    let mut retried_at = None;
    loop {
        let attempt = fsys::with_fs_read(|fs| {
            k.check_mount()?;
            let mut c = ToUser::new(buf + done);
            let r = fs.read_to(k.ino(), off + done, (len - done) as usize, &mut c);
            Ok((r, c.stop))
        });
        let (r, stop) = match attempt {
            Some(Ok(v)) => v,
            Some(Err(e)) => return short_or(done, e),
            None => return short_or(done, Errno::EIO),
        };
        match r {
            Ok(n) => {
                done += n as u64;
                if stop != Some(Stop::Fault) || done >= len {
                    return Ok(done);
                }
            }
            Err(FsError::Fault) => {}
            Err(e) => return short_or(done, fs_errno(&e)),
        }
        // Stopped at a user page: fault it in and go on, once per place.
        if retried_at == Some(done) || !fault_in(p, buf + done, Access::Write) {
            return short_or(done, Errno::EFAULT);
        }
        retried_at = Some(done);
    }
}

/// What a call that did `done` bytes before failing with `e` returns.
fn short_or(done: u64, e: Errno) -> Result<u64, Errno> {
    if done > 0 {
        Ok(done)
    } else {
        Err(e)
    }
}

/// Where a write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAt {
    /// At this offset.
    Offset(u64),
    /// At the end of the file (`O_APPEND`), found under the file system's
    /// lock so that appends do not overlap.
    End,
}

/// Writes up to `len` bytes from user memory at `buf` to `k`. Returns the
/// bytes written and the file offset after them: fewer bytes when space
/// runs out (ENOSPC if none), before poisoned media (EIO if none), or
/// before a user page that cannot be mapped (EFAULT if none); EFBIG past
/// the largest file.
pub fn write_at(p: &Process, k: &KInode, buf: u64, len: u64, at: WriteAt) -> Result<(u64, u64), Errno> {
    let len = len.min(MAX_RW);
    let start = match at {
        WriteAt::Offset(o) => o,
        WriteAt::End => 0,
    };
    if len == 0 {
        return Ok((0, start));
    }
    if !uaccess::user_range(buf, len as usize) {
        return Err(Errno::EFAULT);
    }
    let (mut done, mut end) = (0u64, start);
    let mut retried_at = None;
    loop {
        let chunk = (len - done).min(WRITE_CHUNK);
        let mut shared = Some(k.mapping_lock.read());
        let mut exclusive = None;
        // Sharing cannot grow while the mapping lock is held (a reflink
        // from this file takes it exclusive).
        let moves = match at {
            WriteAt::End => true,
            WriteAt::Offset(o) => {
                fsys::with_fs_read(|fs| fs.range_shared(k.ino(), o + done, chunk).unwrap_or(true)).unwrap_or(true)
            }
        };
        if moves {
            shared = None;
            exclusive = Some(k.mapping_lock.write());
            // Shared blocks will be copied: no mapping may keep reaching
            // the old ones (only this file's mappings go).
            if let WriteAt::Offset(o) = at {
                let range = fsdax_pmem_api::ByteRange::from_len_saturating(o + done, chunk);
                if let Err(e) = crate::dax::layout::break_layouts(k, range, fsdax_hal::mm::Unmap::FileOnly) {
                    return short_or(done, e).map(|n| (n, end));
                }
            }
        }
        let attempt = fsys::with_fs(|fs| {
            k.check_mount()?;
            let off = match at {
                WriteAt::Offset(o) => o + done,
                WriteAt::End => fs.stat(k.ino()).map_err(|e| fs_errno(&e))?.size,
            };
            let mut c = FromUser::new(buf + done);
            let r = fs.write_from(k.ino(), off, chunk as usize, &mut c);
            Ok((off, r, c.stop))
        });
        if let Some(Ok((off, Ok(n), _))) = &attempt {
            // Holes the write filled may be mapped to the zero page.
            crate::dax::layout::after_write(k, fsdax_pmem_api::ByteRange::from_len_saturating(*off, *n as u64));
        }
        drop(shared);
        drop(exclusive);
        let (off, r, stop) = match attempt {
            Some(Ok(v)) => v,
            Some(Err(e)) => return short_or(done, e).map(|n| (n, end)),
            None => return short_or(done, Errno::EIO).map(|n| (n, end)),
        };
        match r {
            Ok(n) => {
                done += n as u64;
                end = off + n as u64;
                if done >= len {
                    return Ok((done, end));
                }
                if n as u64 == chunk {
                    continue;
                }
                if stop != Some(Stop::Fault) {
                    return Ok((done, end));
                }
            }
            Err(FsError::Fault) => {}
            Err(e) => return short_or(done, fs_errno(&e)).map(|n| (n, end)),
        }
        if retried_at == Some(done) || !fault_in(p, buf + done, Access::Read) {
            return short_or(done, Errno::EFAULT).map(|n| (n, end));
        }
        retried_at = Some(done);
    }
}

/// Sets the size of `k` (`ftruncate`, `truncate`, `O_TRUNC`). Shrinking
/// breaks the layouts from the page that holds the new EOF on: every
/// mapping of it goes, private copies included (they are beyond EOF now,
/// as Linux's truncate zaps them), and the file's own blocks there are
/// unpinned before they are freed; the partial last block is zeroed past
/// EOF on the media by the file system.
pub fn truncate(k: &KInode, len: u64) -> Result<(), Errno> {
    let _m = k.mapping_lock.write();
    let old = fsys::with_fs_read(|fs| {
        k.check_mount()?;
        fs.stat(k.ino()).map(|st| st.size).map_err(|e| fs_errno(&e))
    })
    .unwrap_or(Err(Errno::EIO))?;
    if len < old {
        let from = len & !(fsdax_mm::PAGE_SIZE - 1);
        let range = fsdax_pmem_api::ByteRange::new(from, old).unwrap_or(fsdax_pmem_api::ByteRange::EMPTY);
        crate::dax::layout::break_layouts(k, range, fsdax_hal::mm::Unmap::All)?;
        k.dirty.lock().truncate(len);
    }
    fsys::with_fs(|fs| {
        k.check_mount()?;
        fs.truncate(k.ino(), len).map_err(|e| fs_errno(&e))
    })
    .unwrap_or(Err(Errno::EIO))
}

/// `fallocate` of `[off, off + len)` of `k`: allocating takes the mapping
/// lock shared and then removes the zero pages mapped over the holes it
/// filled; punching a hole or zeroing a range frees or replaces blocks, so
/// it takes the lock exclusive and breaks the layouts of the range first
/// (every file mapping of it goes, none stays pinned; private copies stay,
/// as on Linux).
pub fn fallocate(k: &KInode, mode: fsdax_fs::Falloc, off: u64, len: u64) -> Result<(), Errno> {
    let moves = !matches!(mode, fsdax_fs::Falloc::Allocate { .. });
    let range = fsdax_pmem_api::ByteRange::from_len_saturating(off, len);
    let _shared = (!moves).then(|| k.mapping_lock.read());
    let _exclusive = moves.then(|| k.mapping_lock.write());
    if moves {
        crate::dax::layout::break_layouts(k, range, fsdax_hal::mm::Unmap::FileOnly)?;
    }
    let r = fsys::with_fs(|fs| {
        k.check_mount()?;
        fs.fallocate(k.ino(), mode, off, len).map_err(|e| fs_errno(&e))
    })
    .unwrap_or(Err(Errno::EIO));
    if !moves {
        crate::dax::layout::after_write(k, range);
    }
    r
}
