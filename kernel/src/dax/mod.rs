//! DAX: processes map files of the fsdax file system straight onto
//! persistent memory. No page cache, no copy: a page-table entry points at
//! the file's block.
//!
//! - this module: the page fault in a file mapping ([`fault`]), as
//!   `fsdax_mm::dax` decides it (2 MiB page, zero page, 4 KiB pages, SIGBUS);
//! - [`layout`]: unmapping a file range from every address space that maps
//!   it, and "breaking the layouts" before blocks are freed or moved
//!   (truncate, punch hole, zero range, reflink and dedupe into the file):
//!   unmap, then wait until no pin is left on the file's own blocks;
//! - [`flush`]: `fsync`/`msync` of the pages mapped writable since the last
//!   flush (write-protect every mapping of them, write their cache lines
//!   back, fence);
//! - [`rmap`]: who maps a device range (process, virtual address, 2 MiB or
//!   4 KiB entry), for memory failure: the file system's reverse map, then
//!   each file's mappers, then the page tables.
//!
//! `docs/dax.md` describes the fault path, the locks and their order.
//!
//! The fault path, in short (locks outer first: the process's areas
//! (read), the file's mapping lock (shared), the file system's lock (read
//! for read faults and private copies, write for shared write faults), the
//! file's dirty pages, its mappers, the page tables):
//!
//! 1. at or beyond EOF: SIGBUS `BUS_ADRERR`;
//! 2. a read fault maps a 2 MiB page when every condition of
//!    `fsdax_mm::dax` holds (the 2 MiB zero page over a 2 MiB hole), else
//!    the 4 KiB pages of the fault's 2 MiB block that lie in the mapping
//!    and inside EOF (a fault-around: file pages or the 4 KiB zero page),
//!    read-only whatever the mapping allows (write access comes through a
//!    write fault, which marks the page dirty);
//! 3. a write fault in a shared mapping first makes the range it will map
//!    writable (the 2 MiB block when a 2 MiB page is possible, else the
//!    page) allocated and unshared through `bmap_write`: holes are
//!    allocated zeroed (an aligned 2 MiB extent when it can be had),
//!    shared (reflinked) blocks are copied around with the
//!    machine-check-safe copy, and the commit is durable before the
//!    writable entry exists (so `MAP_SYNC` holds for every mapping); what
//!    mapped the old blocks or the zero page there, in any address space,
//!    is unmapped first (only this file's mappings: the other reflink
//!    owner keeps its blocks); then the range is marked dirty and mapped
//!    writable. A write to a page already mapped read-only over ready
//!    blocks only marks it dirty and gives the entry write access;
//! 4. a write fault in a private mapping copies the page (the
//!    machine-check-safe copy, a pin held on the source) into anonymous
//!    memory, mapped writable; the file is never written;
//! 5. a bad block in the page: SIGBUS `BUS_MCEERR_AR`, `si_addr_lsb` 12.

pub mod flush;
pub mod layout;
pub mod raw;
pub mod rmap;
mod tests;

use alloc::vec::Vec;

use fsdax_fs::{FsError, Ino};
use fsdax_hal::mm::{AddressSpace, Frame, LeafKind, PmemPin, PmemRegion, Unmap};
use fsdax_mm::dax::{check_eof, decide, fault_window, pmd_candidate, Backing as Layout, FaultSite, Install};
use fsdax_mm::paging::{Flags, MapError, PageSize};
use fsdax_mm::vma::Prot;
use fsdax_mm::{HUGE_2M, PAGE_SIZE};
use fsdax_pmem_api::ByteRange;

use crate::fsys::{self, Busy, KernelFs};
use crate::process::vm::{pte_flags, Access, FaultError, FileMap, Resolved, RESERVED_FRAMES};
use crate::vfs::inode::KInode;

/// The persistent-memory region under the mounted file system.
fn region(fs: &KernelFs) -> &PmemRegion {
    fs.pmem().media().region()
}

/// Whether any byte of device range `[phys, phys + len)` is known to be
/// bad: to the file system (its persistent bad-block list) or to the
/// device (poison it recorded that the list does not hold: a machine check
/// whose memory-failure event has not run yet, or a file system that could
/// not record it, being read-only).
fn known_bad(fs: &KernelFs, phys: u64, len: u64) -> bool {
    fs.first_bad(phys, len).is_some() || fs.pmem().is_poisoned(phys, len)
}

/// Page-table flags for a file page of an area with rights `prot`:
/// writable only if asked (a write fault that marked it dirty).
fn leaf_flags(prot: Prot, writable: bool) -> Flags {
    let f = pte_flags(prot) - Flags::WRITABLE;
    if writable {
        f | Flags::WRITABLE
    } else {
        f
    }
}

/// What a file-system error in the fault path becomes: poison is SIGBUS
/// `BUS_MCEERR_AR`, everything else (no space, the file gone) SIGBUS
/// `BUS_ADRERR`, as Linux's `dax_fault_return`.
fn fs_fault(e: FsError) -> FaultError {
    match e {
        FsError::Poisoned { .. } => FaultError::Poisoned,
        FsError::NoMemory => FaultError::OutOfMemory,
        _ => FaultError::BeyondEof,
    }
}

/// A mapping error while installing: a page mapped meanwhile is fine.
fn installed(r: Result<(), MapError>) -> Result<(), FaultError> {
    match r {
        Ok(()) | Err(MapError::AlreadyMapped(_)) => Ok(()),
        Err(MapError::OutOfFrames) => Err(FaultError::OutOfMemory),
        Err(e) => {
            crate::warn!("dax: installing a page failed: {}", map_error(e));
            Err(FaultError::BeyondEof)
        }
    }
}

fn map_error(e: MapError) -> &'static str {
    match e {
        MapError::Unaligned => "unaligned",
        MapError::AlreadyMapped(_) => "already mapped",
        MapError::OutOfFrames => "out of frames for page tables",
        MapError::NotMapped(_) => "not mapped",
        MapError::SplitsHugePage(_) => "would split a huge page",
    }
}

/// The file offset of virtual address `va` of the area.
fn file_offset_of(site: &FaultSite, va: u64) -> u64 {
    site.file_offset + (va - site.vma.start())
}

/// The file range `[va range]` of the area maps.
fn file_range_of(site: &FaultSite, va: ByteRange) -> ByteRange {
    ByteRange::from_len_saturating(file_offset_of(site, va.start()), va.len())
}

/// Resolves a fault at `addr` in the file mapping `f`, which covers the
/// virtual range `area` with rights `prot` (already checked against
/// `access`). The caller holds the areas' read lock. `block`: may wait for
/// locks (false inside a user copy: then every lock is only tried).
pub fn fault(
    space: &AddressSpace,
    area: ByteRange,
    prot: Prot,
    f: &FileMap,
    addr: u64,
    access: Access,
    block: bool,
) -> Result<Resolved, FaultError> {
    let k = &*f.inode;
    let write = access == Access::Write;
    // A shared write fault changes the file (blocks, dirty pages): it
    // waits while the file system is frozen, before the mapping lock.
    let _gate = if write && f.shared {
        Some(crate::freeze::start_write(block).map_err(|e| match e {
            crate::freeze::GateError::WouldBlock => FaultError::WouldBlock,
            crate::freeze::GateError::Interrupted => FaultError::Interrupted,
        })?)
    } else {
        None
    };
    let _mapping =
        if block { k.mapping_lock.read() } else { k.mapping_lock.try_read().ok_or(FaultError::WouldBlock)? };
    let site = FaultSite { vma: area, file_offset: f.offset, shared: f.shared, write, addr };
    let r = if write && f.shared {
        fsys::with_fs_wait(block, |fs| shared_write(fs, space, k, prot, &site))
    } else {
        fsys::with_fs_read_wait(block, |fs| read_or_private(fs, space, k, prot, &site))
    };
    let r = match r {
        Err(Busy) => Err(FaultError::WouldBlock),
        Ok(None) => Err(FaultError::BeyondEof),
        Ok(Some(r)) => r,
    }?;
    let leaf = space.translate(addr);
    // `unbind` marks the device dead before it unmaps every mapping: an
    // entry this fault installed after that walk must not stay (a read
    // fault does not wait at the freeze gate). The area's file pages go.
    if leaf.is_some_and(|l| LeafKind::of(l.flags) == LeafKind::Pmem && crate::pmem::is_dead_at(l.phys)) {
        let _ = space.unmap_where(area.start(), area.len(), Unmap::FileOnly);
        return Err(FaultError::BeyondEof);
    }
    // Still under the mapping lock (nothing can unmap the range): a fault
    // that says it resolved must have left an entry that allows the
    // access, or the store would fault again for ever. Should that ever
    // not hold, the process gets SIGBUS instead of a livelock.
    match leaf {
        Some(l) if !write || l.flags.contains(Flags::WRITABLE) => Ok(r),
        _ => {
            crate::warn!("dax: a fault at {addr:#x} of inode {} left no usable entry", k.ino());
            Err(FaultError::BeyondEof)
        }
    }
}

/// The file's size, after checking the mount and that the fault is inside
/// EOF.
fn size_checked(fs: &KernelFs, k: &KInode, site: &FaultSite) -> Result<u64, FaultError> {
    k.check_mount().map_err(|_| FaultError::BeyondEof)?;
    let size = fs.stat(k.ino()).map_err(fs_fault)?.size;
    check_eof(site, size).map_err(|_| FaultError::BeyondEof)?;
    Ok(size)
}

/// Whether a 4 KiB entry is mapped anywhere in `block`.
fn small_page_in(space: &AddressSpace, block: ByteRange) -> bool {
    let mut at = block.start();
    while let Some(l) = space.first_leaf(at, block.end()) {
        if l.size == PageSize::Size4K {
            return true;
        }
        at = l.virt + l.size.bytes();
    }
    false
}

/// What backs the 2 MiB file range at `off`, for the decision.
fn layout_at(fs: &KernelFs, ino: Ino, off: u64) -> Result<(Layout, bool), FaultError> {
    let b = fs.bmap(ino, off).map_err(fs_fault)?;
    let skip = off - b.file_offset;
    let len = b.len.saturating_sub(skip);
    Ok(match b.phys {
        Some(p) => {
            let phys = p + skip;
            let shared = fs.range_shared(ino, off, len.min(HUGE_2M)).map_err(fs_fault)?;
            let bad = known_bad(fs, phys, len.min(HUGE_2M));
            (Layout::Extent { phys, len, shared }, bad)
        }
        None => (Layout::Hole { len }, false),
    })
}

/// Whether every block of the file range is allocated and not shared (a
/// write there needs no `bmap_write`).
fn ready_for_write(fs: &KernelFs, ino: Ino, range: ByteRange) -> Result<bool, FaultError> {
    let mut off = range.start();
    while off < range.end() {
        let b = fs.bmap(ino, off).map_err(fs_fault)?;
        if b.phys.is_none() {
            return Ok(false);
        }
        let end = (b.file_offset + b.len).min(range.end());
        if fs.range_shared(ino, off, end - off).map_err(fs_fault)? {
            return Ok(false);
        }
        off = end;
    }
    Ok(true)
}

/// A read fault, or a write fault in a private mapping (file system read
/// lock held).
fn read_or_private(
    fs: &KernelFs,
    space: &AddressSpace,
    k: &KInode,
    prot: Prot,
    site: &FaultSite,
) -> Result<Resolved, FaultError> {
    let size = size_checked(fs, k, site)?;
    let page = site.addr & !(PAGE_SIZE - 1);
    if let Some(leaf) = space.translate(page) {
        let kind = LeafKind::of(leaf.flags);
        if !site.write || (kind == LeafKind::Ram && leaf.flags.contains(Flags::WRITABLE)) {
            // Mapped meanwhile, or a stale TLB entry.
            fsdax_hal::arch::cpu::flush_tlb_page(page);
            return Ok(Resolved::MINOR);
        }
        if kind == LeafKind::Ram {
            // A private copy that lost write access to mprotect and got it back.
            let _ = space.protect(page, PAGE_SIZE, pte_flags(prot));
            return Ok(Resolved::MINOR);
        }
        // A file page (or the zero page) of a private mapping is replaced
        // by a private copy; a 2 MiB entry goes whole (its other pages fault
        // back as 4 KiB pages).
        let _ = space.unmap_where(leaf.virt, leaf.size.bytes(), Unmap::FileOnly);
    }
    if site.write {
        return private_copy(fs, space, k.ino(), prot, site);
    }
    let small = small_page_in(space, site.block());
    if let Some(bf) = pmd_candidate(site, size, small) {
        let (layout, bad) = layout_at(fs, k.ino(), bf)?;
        match decide(site, size, small, layout, bad) {
            Install::Pmd { va, phys, .. } => {
                let r = space.map_pmem(va, region(fs), phys, PageSize::Size2M, leaf_flags(prot, false));
                return installed(r).map(|()| Resolved::MINOR);
            }
            Install::ZeroPmd { va } => {
                // Without a 2 MiB zero page (no aligned RAM), 4 KiB ones.
                if space.map_zero(va, PageSize::Size2M, leaf_flags(prot, false)).is_ok() {
                    return Ok(Resolved::MINOR);
                }
            }
            Install::Pte => {}
        }
    }
    fill_window(fs, space, k.ino(), prot, site, size, None).map(|()| Resolved::MINOR)
}

/// Maps the unmapped pages of the fault's window with 4 KiB entries: file
/// pages (writable inside `writable`, a range the caller marked dirty and
/// made ready for writing), the zero page over holes. A bad page is left
/// unmapped; the faulting page being bad is SIGBUS `BUS_MCEERR_AR`.
fn fill_window(
    fs: &KernelFs,
    space: &AddressSpace,
    ino: Ino,
    prot: Prot,
    site: &FaultSite,
    size: u64,
    writable: Option<ByteRange>,
) -> Result<(), FaultError> {
    let window = fault_window(site, size);
    let page = site.addr & !(PAGE_SIZE - 1);
    let region = region(fs);
    let mut poisoned = false;
    let mut va = window.start();
    while va < window.end() {
        if let Some(l) = space.translate(va) {
            va = l.virt + l.size.bytes();
            continue;
        }
        let off = file_offset_of(site, va);
        let b = fs.bmap(ino, off).map_err(fs_fault)?;
        let run_end = (va + (b.file_offset + b.len - off)).min(window.end());
        while va < run_end {
            if space.translate(va).is_some() {
                va += PAGE_SIZE;
                continue;
            }
            let wr = writable.is_some_and(|r| r.contains(va));
            match b.phys {
                None if wr => return Err(FaultError::BeyondEof),
                None => installed(space.map_zero(va, PageSize::Size4K, leaf_flags(prot, false)))?,
                Some(p) => {
                    let phys = p + (file_offset_of(site, va) - b.file_offset);
                    if known_bad(fs, phys, PAGE_SIZE) {
                        poisoned |= va == page;
                    } else {
                        installed(space.map_pmem(va, region, phys, PageSize::Size4K, leaf_flags(prot, wr)))?;
                    }
                }
            }
            va += PAGE_SIZE;
        }
    }
    if poisoned {
        return Err(FaultError::Poisoned);
    }
    Ok(())
}

/// A write fault in a private mapping: the page is copied into anonymous
/// memory (a hole is a zeroed page), mapped with the area's rights.
fn private_copy(
    fs: &KernelFs,
    space: &AddressSpace,
    ino: Ino,
    prot: Prot,
    site: &FaultSite,
) -> Result<Resolved, FaultError> {
    let page = site.addr & !(PAGE_SIZE - 1);
    let off = site.page_offset();
    if fsdax_hal::mm::frame_stats().free < RESERVED_FRAMES {
        return Err(FaultError::OutOfMemory);
    }
    let mut frame = Frame::alloc_zeroed().ok_or(FaultError::OutOfMemory)?;
    let b = fs.bmap(ino, off).map_err(fs_fault)?;
    if let Some(p) = b.phys {
        let phys = p + (off - b.file_offset);
        if known_bad(fs, phys, PAGE_SIZE) {
            return Err(FaultError::Poisoned);
        }
        let dev = *fs.pmem();
        // The copy holds a pin on its source page while it runs.
        let _pin = PmemPin::new(region(fs), phys);
        let mut buf: Vec<u8> = Vec::new();
        buf.try_reserve_exact(PAGE_SIZE as usize).map_err(|_| FaultError::OutOfMemory)?;
        buf.resize(PAGE_SIZE as usize, 0);
        match dev.read(phys, &mut buf) {
            Ok(()) => {}
            Err(fsdax_drivers::pmem::device::PmemError::Poisoned { .. }) => return Err(FaultError::Poisoned),
            Err(_) => return Err(FaultError::BeyondEof),
        }
        frame.write(0, &buf);
    }
    match space.map_frame(page, frame, pte_flags(prot)) {
        Ok(()) | Err((MapError::AlreadyMapped(_), _)) => Ok(Resolved::MINOR),
        Err(_) => Err(FaultError::OutOfMemory),
    }
}

/// A write fault in a shared mapping (file system write lock held).
fn shared_write(
    fs: &mut KernelFs,
    space: &AddressSpace,
    k: &KInode,
    prot: Prot,
    site: &FaultSite,
) -> Result<Resolved, FaultError> {
    let size = size_checked(fs, k, site)?;
    let ino = k.ino();
    let page = site.addr & !(PAGE_SIZE - 1);
    let leaf = space.translate(page);
    if let Some(l) = leaf {
        if l.flags.contains(Flags::WRITABLE) || LeafKind::of(l.flags) == LeafKind::Ram {
            fsdax_hal::arch::cpu::flush_tlb_page(page);
            return Ok(Resolved::MINOR);
        }
    }
    let small = small_page_in(space, site.block());
    let cand = pmd_candidate(site, size, small);
    let target = match cand {
        Some(bf) => ByteRange::from_len_saturating(bf, HUGE_2M),
        None => ByteRange::from_len_saturating(site.page_offset(), PAGE_SIZE),
    };
    let mut major = false;
    if !ready_for_write(fs, ino, target)? {
        // The blocks under `target` change (a hole is allocated, shared
        // blocks are copied): whatever maps the old ones or the zero page
        // there, in any address space, goes first.
        layout::unmap_file_range(k, target, Unmap::FileOnly);
        fs.bmap_write(ino, target.start(), target.len()).map_err(fs_fault)?;
        major = true;
    } else if let Some(l) = leaf {
        match LeafKind::of(l.flags) {
            // Ready blocks mapped read-only (a read fault, or a flush
            // write-protected them): mark dirty, give write access.
            LeafKind::Pmem => {
                let mut dirty = k.dirty.lock();
                let lva = ByteRange::from_len_saturating(l.virt, l.size.bytes());
                dirty.mark(file_range_of(site, lva));
                return match space.make_writable(page) {
                    Ok(_) => Ok(Resolved::MINOR),
                    Err(e) => installed(Err(e)).map(|()| Resolved::MINOR),
                };
            }
            // The hole under a zero page was filled (fallocate): replace it.
            LeafKind::Zero => {
                let _ = space.unmap_where(l.virt, l.size.bytes(), Unmap::ZeroOnly);
            }
            LeafKind::Ram => {}
        }
    }
    let mut dirty = k.dirty.lock();
    if let Some(bf) = cand {
        let (layout, bad) = layout_at(fs, ino, bf)?;
        if let Install::Pmd { va, phys, .. } = decide(site, size, small, layout, bad) {
            dirty.mark(target);
            let r = space.map_pmem(va, region(fs), phys, PageSize::Size2M, leaf_flags(prot, true));
            return installed(r).map(|()| Resolved { major });
        }
        // The block's extents are not one aligned 2 MiB extent: all of its
        // pages are ready for writing, map them all.
        let window = fault_window(site, size);
        dirty.mark(file_range_of(site, window));
        fill_window(fs, space, ino, prot, site, size, Some(window))?;
    } else {
        dirty.mark(target);
        let one = ByteRange::from_len_saturating(page, PAGE_SIZE);
        fill_window(fs, space, ino, prot, site, size, Some(one))?;
    }
    Ok(Resolved { major })
}
