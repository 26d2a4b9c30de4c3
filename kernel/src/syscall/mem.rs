//! Memory system calls: `brk`, `mmap`, `munmap`, `mprotect`, `madvise`,
//! `msync`, of anonymous memory and of files of the fsdax file system,
//! which are mapped straight onto persistent memory (DAX, `crate::dax`).
//!
//! A file mapping gets a virtual address congruent with its file offset
//! modulo 2 MiB (unless the process fixes the address), so that 2 MiB pages
//! are possible; it is recorded in the file's mappers at once and forgotten
//! when unmapped. Areas removed under the areas' lock are dropped after it
//! is released (a file mapping may hold the last reference to the file's
//! in-memory inode, whose drop takes the file system's lock).

use alloc::sync::Arc;
use alloc::vec::Vec;

use fsdax_abi::linux::general as g;
use fsdax_abi::request::{self, Advice, Placement, Sharing};
use fsdax_abi::{Errno, USER_MIN};
use fsdax_hal::mm::Unmap;
use fsdax_mm::vma::{Prot, Vma, VmaError};
use fsdax_mm::{HUGE_2M, PAGE_SIZE};
use fsdax_pmem_api::ByteRange;

use super::Ctx;
use crate::dax::raw::{DeviceMap, RawDevice};
use crate::process::fd::FileKind;
use crate::process::vm::{pte_flags, Access, Areas, Backing, FaultError, FileMap, Vm, MMAP_TOP};
use crate::vfs::inode::KInode;

fn prot_of(read: bool, write: bool, exec: bool) -> Prot {
    let mut p = Prot::empty();
    if read {
        p |= Prot::READ;
    }
    if write {
        p |= Prot::WRITE;
    }
    if exec {
        p |= Prot::EXEC;
    }
    p
}

fn vm_of(c: &Ctx<'_>) -> Result<alloc::sync::Arc<Vm>, Errno> {
    c.proc.vm().ok_or(Errno::ENOMEM)
}

fn vma_errno(e: VmaError) -> Errno {
    match e {
        VmaError::Invalid => Errno::EINVAL,
        VmaError::Overlap => Errno::EEXIST,
        VmaError::NotMapped | VmaError::TooMany => Errno::ENOMEM,
    }
}

/// Removes `[start, start + len)` from the areas and the page tables;
/// returns the removed areas, to be dropped once the lock is released.
fn unmap(vm: &Vm, areas: &mut Areas, start: u64, len: u64) -> Result<Vec<Vma<Backing>>, Errno> {
    vm.unmap_locked(areas, start, len).map_err(vma_errno)
}

/// Faults every page of `[start, start + len)` in now. Anonymous pages
/// count one minor fault each (as on Linux); file pages count the faults
/// taken (a 2 MiB page is one).
fn populate(c: &Ctx<'_>, vm: &Vm, start: u64, len: u64, write: bool) -> Result<(), Errno> {
    let (minor, major) =
        vm.fault_in(start, len, if write { Access::Write } else { Access::Read }).map_err(|_| Errno::ENOMEM)?;
    let file = vm.read(|a| a.set.find(start).is_some_and(|v| v.backing.file().is_some()));
    let minor = if file { minor } else { len / PAGE_SIZE - major };
    c.proc.minflt.fetch_add(minor, core::sync::atomic::Ordering::Relaxed);
    c.proc.majflt.fetch_add(major, core::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// The file an `mmap` of descriptor `fd` maps, after Linux's checks:
/// ENODEV for what cannot be mapped (directories, pipes, the console,
/// `/dev/null`), EACCES unless it was opened for reading, or for writing
/// too when a shared mapping may be written (not `O_APPEND`). Returns the
/// file and whether `mprotect` may add write access later.
fn mappable(c: &Ctx<'_>, fd: i32, shared: bool, write: bool) -> Result<(Arc<KInode>, bool), Errno> {
    let f = super::io::file(c, u64::from(fd as u32))?;
    let FileKind::File(rf) = &f.kind else { return Err(Errno::ENODEV) };
    let s = f.status();
    let readable = s & g::O_PATH == 0 && matches!(s & g::O_ACCMODE, g::O_RDONLY | g::O_RDWR);
    let writable = s & g::O_PATH == 0 && s & g::O_ACCMODE == g::O_RDWR && s & g::O_APPEND == 0;
    if !readable || (shared && write && !writable) {
        return Err(Errno::EACCES);
    }
    Ok((Arc::clone(&rf.inode), !shared || writable))
}

/// The raw device an `mmap` of descriptor `fd` maps, if it is one.
fn device_of(c: &Ctx<'_>, fd: i32) -> Result<Option<Arc<RawDevice>>, Errno> {
    let f = super::io::file(c, u64::from(fd as u32))?;
    Ok(match &f.kind {
        FileKind::Device(d) => Some(Arc::clone(&d.raw)),
        _ => None,
    })
}

/// EACCES unless the device's descriptor reads (and writes, for a
/// writable mapping); whether `mprotect` may add write access later.
fn device_access(c: &Ctx<'_>, fd: i32, write: bool) -> Result<bool, Errno> {
    let s = super::io::file(c, u64::from(fd as u32))?.status();
    let readable = s & g::O_PATH == 0 && matches!(s & g::O_ACCMODE, g::O_RDONLY | g::O_RDWR);
    let writable = s & g::O_PATH == 0 && s & g::O_ACCMODE == g::O_RDWR;
    if !readable || (write && !writable) {
        return Err(Errno::EACCES);
    }
    Ok(writable)
}

/// `mmap(addr, len, prot, flags, fd, offset)`.
pub fn mmap(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let m = request::mmap(a[0], a[1], a[2], a[3], a[4], a[5])?;
    let backing = if m.anonymous {
        // Linux's overcommit heuristic: no single request larger than RAM.
        if m.len > fsdax_hal::mm::frame_stats().usable as u64 * PAGE_SIZE {
            return Err(Errno::ENOMEM);
        }
        Backing::Anon
    } else if let Some(raw) = device_of(c, m.fd)? {
        // As Linux's device DAX: shared mappings only, inside the device.
        if m.sharing != Sharing::Shared {
            return Err(Errno::EINVAL);
        }
        let may_write = device_access(c, m.fd, m.write)?;
        raw.alive()?;
        if m.offset.checked_add(m.len).is_none_or(|e| e > raw.len()) {
            return Err(Errno::ENXIO);
        }
        Backing::Device(DeviceMap { raw, offset: m.offset, may_write })
    } else {
        let shared = m.sharing == Sharing::Shared;
        let (inode, may_write) = mappable(c, m.fd, shared, m.write)?;
        if m.offset.checked_add(m.len).is_none_or(|e| e > fsdax_fs::MAX_FILE_SIZE) {
            return Err(Errno::EOVERFLOW);
        }
        Backing::File(FileMap { inode, offset: m.offset, shared, sync: m.sync, may_write })
    };
    let vm = vm_of(c)?;
    let prot = prot_of(m.read, m.write, m.exec);
    // File mappings: a virtual address congruent with the file offset
    // modulo 2 MiB, so that 2 MiB pages can be used.
    let (align, phase) = match &backing {
        Backing::File(f) => (HUGE_2M, f.offset % HUGE_2M),
        Backing::Device(d) => d.raw.placement(d.offset, m.len),
        Backing::Anon => (PAGE_SIZE, 0),
    };
    let mut replaced = Vec::new();
    let placed = vm.write(|areas, _| -> Result<u64, Errno> {
        let hi = if m.below_2g { 1 << 31 } else { MMAP_TOP };
        let start = match m.placement {
            Placement::Replace(at) => {
                replaced = unmap(&vm, areas, at, m.len)?;
                at
            }
            Placement::NoReplace(at) => {
                if areas.set.overlapping(at, at + m.len).next().is_some() {
                    return Err(Errno::EEXIST);
                }
                at
            }
            Placement::Hint(h) => {
                let fits = h >= USER_MIN
                    && h.checked_add(m.len).is_some_and(|e| e <= MMAP_TOP)
                    && areas.set.overlapping(h, h + m.len).next().is_none();
                if fits {
                    h
                } else {
                    areas
                        .set
                        .find_free(m.len, align, phase, USER_MIN, hi)
                        .or_else(|| areas.set.find_free(m.len, PAGE_SIZE, 0, USER_MIN, hi))
                        .ok_or(Errno::ENOMEM)?
                }
            }
        };
        areas.set.insert(start, m.len, prot, backing).map_err(vma_errno)?;
        // The area as inserted (perhaps merged with its neighbour): its
        // file's or device's mappers record the new range.
        if let Some(v) = areas.set.find(start) {
            if let Some((mappers, offset)) = v.backing.mappers() {
                let offset = offset + (start - v.start);
                mappers.lock().insert(vm.id(), start, ByteRange::from_len_saturating(offset, m.len));
            }
        }
        Ok(start)
    });
    drop(replaced);
    let start = placed?;
    if m.populate && prot != Prot::empty() {
        populate(c, &vm, start, m.len, m.write)?;
    }
    Ok(start)
}

/// `munmap(addr, len)`.
pub fn munmap(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let (start, len) = request::page_range(a[0], a[1])?;
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let vm = vm_of(c)?;
    let removed = vm.write(|areas, _| unmap(&vm, areas, start, len))?;
    drop(removed);
    Ok(0)
}

/// `mprotect(addr, len, prot)`: EACCES to add write access to a shared
/// mapping of a file opened read-only. A file page gets write access only
/// through a write fault (which marks it dirty), never here.
pub fn mprotect(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let (start, len) =
        request::page_range(a[0], a[1]).map_err(|e| if !a[0].is_multiple_of(PAGE_SIZE) { e } else { Errno::ENOMEM })?;
    let (r, w, x) = request::prot(a[2])?;
    if len == 0 {
        return Ok(0);
    }
    let prot = prot_of(r, w, x);
    let vm = vm_of(c)?;
    vm.write(|areas, space| -> Result<(), Errno> {
        let denied = |v: &Vma<Backing>| match &v.backing {
            Backing::File(f) => !f.may_write,
            Backing::Device(d) => !d.may_write,
            Backing::Anon => false,
        };
        if w && areas.set.overlapping(start, start + len).any(denied) {
            return Err(Errno::EACCES);
        }
        let changed = areas.set.protect(start, len, prot).map_err(vma_errno)?;
        for (s, e, _old) in changed {
            space.protect(s, e - s, pte_flags(prot)).map_err(|_| Errno::ENOMEM)?;
        }
        Ok(())
    })
    .map(|()| 0)
}

/// `brk(addr)`: 0 (or anything below the start) asks for the current
/// break; a failed change returns the old break, as Linux does.
pub fn brk(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let want = a[0];
    let vm = vm_of(c)?;
    let mut removed = Vec::new();
    let now = vm.write(|areas, _| {
        let cur = areas.brk;
        if want < areas.brk_start || want >= MMAP_TOP {
            return cur;
        }
        let old_end = cur.next_multiple_of(PAGE_SIZE);
        let new_end = want.next_multiple_of(PAGE_SIZE);
        if new_end > old_end {
            let len = new_end - old_end;
            if len > fsdax_hal::mm::frame_stats().usable as u64 * PAGE_SIZE
                || areas.set.insert(old_end, len, Prot::READ | Prot::WRITE, Backing::Anon).is_err()
            {
                return cur;
            }
        } else if new_end < old_end {
            match unmap(&vm, areas, new_end, old_end - new_end) {
                Ok(r) => removed = r,
                Err(_) => return cur,
            }
        }
        areas.brk = want;
        want
    });
    drop(removed);
    Ok(now)
}

/// `madvise(addr, len, advice)`: `MADV_DONTNEED`/`MADV_FREE` drop the
/// pages (private anonymous ones read as zero afterwards; file pages fault
/// back from the file), `MADV_POPULATE_*` fault them in; other known hints
/// are accepted and ignored. `MADV_HWPOISON` faults each page in (for
/// reading) and runs memory failure on a persistent-memory page with the
/// caller as the consumer (an already poisoned page is EHWPOISON, as on
/// Linux); any other page is refused (EPERM).
pub fn madvise(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let (start, len) = request::page_range(a[0], a[1])?;
    let advice = request::madvise(a[2])?;
    if len == 0 {
        return Ok(0);
    }
    let vm = vm_of(c)?;
    if !vm.read(|areas| areas.set.covers(start, start + len)) {
        return Err(Errno::ENOMEM);
    }
    match advice {
        Advice::Ignored => Ok(0),
        Advice::HwPoison => {
            // Each page, as Linux's `madvise_inject_error`: the page is
            // taken as `get_user_pages` would (faulted in for reading if the
            // caller never touched it), then a DAX page of a file fails
            // with the caller as the consumer.
            for va in (start..start + len).step_by(4096) {
                match vm.fault_in(va, PAGE_SIZE, Access::Read) {
                    Ok(_) => {}
                    Err(FaultError::Poisoned) => return Err(Errno::EHWPOISON),
                    Err(FaultError::OutOfMemory) => return Err(Errno::ENOMEM),
                    Err(FaultError::Interrupted | FaultError::WouldBlock) => return Err(Errno::EINTR),
                    Err(FaultError::NotMapped | FaultError::Denied | FaultError::BeyondEof) => {
                        return Err(Errno::EFAULT)
                    }
                }
                crate::memfail::madvise_hwpoison(&c.proc, va)?;
            }
            Ok(0)
        }
        Advice::DontNeed => {
            vm.write(|_, space| space.unmap_where(start, len, Unmap::All)).map(|()| 0).map_err(|_| Errno::EINVAL)
        }
        Advice::Populate { write } => populate(c, &vm, start, len, write).map(|()| 0),
    }
}

/// `msync(addr, len, flags)`: the dirty pages of the shared file mappings
/// in the range are written back (write-protected in every mapping, their
/// cache lines flushed, fenced), for `MS_SYNC` and `MS_ASYNC` alike (the
/// flush is cheaper than scheduling it); `MS_INVALIDATE` has no cache to
/// drop. EINVAL for an unaligned address or bad flags, ENOMEM if part of
/// the range is not mapped.
pub fn msync(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let _flags = request::msync(a[2])?;
    let (start, len) = request::page_range(a[0], a[1]).map_err(|_| {
        if a[0].is_multiple_of(PAGE_SIZE) {
            Errno::ENOMEM
        } else {
            Errno::EINVAL
        }
    })?;
    if len == 0 {
        return Ok(0);
    }
    let vm = vm_of(c)?;
    // The files and their ranges, collected under the areas' lock and
    // flushed without it.
    let files = vm.read(|areas| -> Result<Vec<(Arc<KInode>, ByteRange)>, Errno> {
        if !areas.set.covers(start, start + len) {
            return Err(Errno::ENOMEM);
        }
        Ok(areas
            .set
            .overlapping(start, start + len)
            .filter_map(|v| {
                let f = v.backing.file().filter(|f| f.shared)?;
                let (s, e) = (v.start.max(start), v.end.min(start + len));
                Some((Arc::clone(&f.inode), ByteRange::from_len_saturating(f.offset + (s - v.start), e - s)))
            })
            .collect())
    })?;
    for (k, range) in &files {
        crate::dax::flush::flush_dirty(k, Some(*range))?;
    }
    drop(files);
    Ok(0)
}
