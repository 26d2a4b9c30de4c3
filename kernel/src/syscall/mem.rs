//! Memory system calls: `brk`, `mmap`, `munmap`, `mprotect`, `madvise` of
//! anonymous memory. File mappings (DAX) return ENODEV until the file
//! system's mapping path exists.

use fsdax_abi::request::{self, Advice, Placement};
use fsdax_abi::{Errno, USER_MIN};
use fsdax_mm::vma::{Prot, VmaError};
use fsdax_mm::PAGE_SIZE;

use super::Ctx;
use crate::process::vm::{pte_flags, Access, Areas, Backing, Vm, MMAP_TOP};

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

/// Removes `[start, start + len)` from the areas and the page tables.
fn unmap(areas: &mut Areas, space: &fsdax_hal::mm::AddressSpace, start: u64, len: u64) -> Result<(), Errno> {
    areas.set.remove(start, len).map_err(vma_errno)?;
    space.unmap_sparse(start, len).map_err(|_| Errno::EINVAL)
}

/// Faults every page of `[start, start + len)` in now (each counts as a
/// minor fault, as on Linux).
fn populate(c: &Ctx<'_>, vm: &Vm, start: u64, len: u64, write: bool) -> Result<(), Errno> {
    vm.fault_in(start, len, if write { Access::Write } else { Access::Read }).map_err(|_| Errno::ENOMEM)?;
    c.proc.minflt.fetch_add(len / PAGE_SIZE, core::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// `mmap(addr, len, prot, flags, fd, offset)`.
pub fn mmap(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let m = request::mmap(a[0], a[1], a[2], a[3], a[4], a[5])?;
    if !m.anonymous {
        // The descriptor first (EBADF), as Linux; file mappings are the DAX
        // path of the file system (not yet).
        c.proc.fds.lock().get(m.fd as u64)?;
        return Err(Errno::ENODEV);
    }
    // Linux's overcommit heuristic: no single request larger than RAM.
    if m.len > fsdax_hal::mm::frame_stats().usable as u64 * PAGE_SIZE {
        return Err(Errno::ENOMEM);
    }
    let vm = vm_of(c)?;
    let prot = prot_of(m.read, m.write, m.exec);
    let start = vm.write(|areas, space| -> Result<u64, Errno> {
        let hi = if m.below_2g { 1 << 31 } else { MMAP_TOP };
        let start = match m.placement {
            Placement::Replace(at) => {
                unmap(areas, space, at, m.len)?;
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
                    areas.set.find_free(m.len, PAGE_SIZE, 0, USER_MIN, hi).ok_or(Errno::ENOMEM)?
                }
            }
        };
        areas.set.insert(start, m.len, prot, Backing::Anon).map_err(vma_errno)?;
        Ok(start)
    })?;
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
    vm.write(|areas, space| unmap(areas, space, start, len)).map(|()| 0)
}

/// `mprotect(addr, len, prot)`.
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
    Ok(vm.write(|areas, space| {
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
        } else if new_end < old_end && unmap(areas, space, new_end, old_end - new_end).is_err() {
            return cur;
        }
        areas.brk = want;
        want
    }))
}

/// `madvise(addr, len, advice)`: `MADV_DONTNEED`/`MADV_FREE` drop the
/// pages (they read as zero afterwards), `MADV_POPULATE_*` fault them in;
/// other known hints are accepted and ignored. `MADV_HWPOISON` of a mapped
/// persistent-memory page runs memory failure with the caller as the
/// consumer; of any other page it is refused (EPERM).
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
            // Each page, as Linux's `madvise_inject_error`: a DAX page of a
            // file fails with the caller as the consumer.
            for va in (start..start + len).step_by(4096) {
                crate::memfail::madvise_hwpoison(&c.proc, va)?;
            }
            Ok(0)
        }
        Advice::DontNeed => vm.write(|_, space| space.unmap_sparse(start, len)).map(|()| 0).map_err(|_| Errno::EINVAL),
        Advice::Populate { write } => populate(c, &vm, start, len, write).map(|()| 0),
    }
}
