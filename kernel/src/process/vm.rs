//! A process's memory: its address space (the hal's page tables) and the
//! areas mapped in it (`fsdax_mm::vma::VmaSet`), `brk`, the stack, and the
//! page-fault path that fills them in on demand.
//!
//! Layout (no randomisation: runs are reproducible):
//!
//! ```text
//! 0x0000_0000_0000_0000  unmapped (below USER_MIN: NULL faults)
//! 0x0000_0000_0040_0000  ET_EXEC programs; static-pie at 0x5555_5555_4000
//!                        brk: from the end of the highest segment, upwards
//!        ...             mmap: top-down from MMAP_TOP
//! MMAP_TOP               (1 MiB gap)
//! STACK_TOP - 8 MiB      lowest the stack may grow; the page below is a guard
//! STACK_TOP              0x7fff_ffff_e000
//! USER_END               0x7fff_ffff_f000: the last user page stays unmapped
//! ```
//!
//! Locks: the areas are under a sleeping reader-writer lock (faults read,
//! `mmap`/`munmap`/`mprotect`/`brk` write); page-table changes take the
//! hal's page-table spin lock inside. A page fault inside a user copy
//! (kernel mode, maybe with other locks held) only *tries* the read lock
//! (`block = false`): it never waits, so it cannot deadlock against the
//! copy's caller. A fault in a file mapping (DAX, [`crate::dax`]) holds
//! the read lock to its end and takes the file's mapping lock and the file
//! system's lock inside it (`docs/dax.md` has the whole order).
//!
//! Every `Vm` has a [`SpaceId`] and is listed in a registry of address
//! spaces, so that a file's mappers (who maps its pages, by space id) lead
//! to the page tables to unmap or write-protect, without the `Vm`'s lock.

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use fsdax_abi::{USER_END, USER_MIN};
use fsdax_hal::mm::{AddressSpace, Frame};
use fsdax_hal::sync::IrqMutex;
use fsdax_mm::mappers::Mappers;
use fsdax_mm::paging::{Flags, MapError};
use fsdax_mm::vma::{Backing as VmaBacking, Prot, Vma, VmaError, VmaSet};
use fsdax_mm::PAGE_SIZE;
use fsdax_pmem_api::ByteRange;

use crate::dax::raw::DeviceMap;
use crate::sync::RwLock;
use crate::vfs::inode::KInode;

/// Names an address space (a [`Vm`]) in the mappers of files.
pub type SpaceId = u64;

static NEXT_SPACE: AtomicU64 = AtomicU64::new(1);
/// Every live address space of a process, by id (a leaf spin lock).
static SPACES: IrqMutex<BTreeMap<SpaceId, Weak<AddressSpace>>> = IrqMutex::new(BTreeMap::new());

/// The page tables of address space `id`, if it still exists.
pub fn space_of(id: SpaceId) -> Option<Arc<AddressSpace>> {
    SPACES.lock().get(&id).and_then(Weak::upgrade)
}

/// Top of the initial stack.
pub const STACK_TOP: u64 = 0x7fff_ffff_e000;
/// The most the stack may grow to (Linux's default `RLIMIT_STACK`).
pub const STACK_MAX: u64 = 8 << 20;
/// The stack area mapped at exec (it grows on faults below it).
pub const STACK_INITIAL: u64 = 128 << 10;
/// Below it, mappings the kernel places grow down from here.
pub const MMAP_TOP: u64 = (STACK_TOP - STACK_MAX - (1 << 20)) & !((2 << 20) - 1);
/// Frames kept back for the kernel: a process that would take them is out
/// of memory (killed), while the console, page tables and kernel stacks
/// keep working.
pub const RESERVED_FRAMES: usize = 2048;

/// What backs an area: anonymous memory, a file of the DAX file system, or
/// the raw persistent-memory device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// Private, zero-filled on first touch; the frames belong to the page
    /// tables and are freed at unmap and exit.
    Anon,
    /// A file mapped straight onto persistent memory (DAX).
    File(FileMap),
    /// The raw device (`/dev/pmem0`), shared, mapped with the largest
    /// leaves that fit (`crate::dax::raw`).
    Device(DeviceMap),
}

/// A file mapping: the file, the file offset of the area's first byte, and
/// how it was mapped.
#[derive(Debug, Clone)]
pub struct FileMap {
    /// The file (the mapping keeps its in-memory inode alive).
    pub inode: Arc<KInode>,
    /// File offset of the area's first byte (page-aligned).
    pub offset: u64,
    /// `MAP_SHARED` (stores reach the file), else `MAP_PRIVATE` (a store
    /// copies the page into anonymous memory first).
    pub shared: bool,
    /// `MAP_SYNC`: a write fault's metadata is durable before the writable
    /// entry is installed (every fault's is, on this file system).
    pub sync: bool,
    /// Whether `mprotect` may add write access (a shared mapping of a
    /// descriptor opened read-only may not: EACCES).
    pub may_write: bool,
}

impl PartialEq for FileMap {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.inode, &o.inode)
            && self.offset == o.offset
            && self.shared == o.shared
            && self.sync == o.sync
            && self.may_write == o.may_write
    }
}

impl Eq for FileMap {}

impl VmaBacking for Backing {
    fn split_at(&self, delta: u64) -> Self {
        match self {
            Backing::Anon => Backing::Anon,
            Backing::File(f) => Backing::File(FileMap { offset: f.offset + delta, ..f.clone() }),
            Backing::Device(d) => Backing::Device(DeviceMap { offset: d.offset + delta, ..d.clone() }),
        }
    }

    fn continues(&self, len: u64, next: &Self) -> bool {
        match (self, next) {
            (Backing::Anon, Backing::Anon) => true,
            (Backing::File(a), Backing::File(b)) => {
                a.offset.checked_add(len) == Some(b.offset) && *b == FileMap { offset: b.offset, ..a.clone() }
            }
            (Backing::Device(a), Backing::Device(b)) => {
                a.offset.checked_add(len) == Some(b.offset) && *b == DeviceMap { offset: b.offset, ..a.clone() }
            }
            _ => false,
        }
    }
}

impl Backing {
    /// The file mapping, if this is one.
    pub fn file(&self) -> Option<&FileMap> {
        match self {
            Backing::File(f) => Some(f),
            Backing::Anon | Backing::Device(_) => None,
        }
    }

    /// Where an area of this backing is recorded for "who maps this"
    /// (memory failure, layout breaks, removal): the file's or the raw
    /// device's mappers, and the offset there of the area's first byte.
    pub fn mappers(&self) -> Option<(&crate::sync::Mutex<Mappers<SpaceId>>, u64)> {
        match self {
            Backing::File(f) => Some((&f.inode.mappers, f.offset)),
            Backing::Device(d) => Some((&d.raw.mappers, d.offset)),
            Backing::Anon => None,
        }
    }
}

/// The kind of access that faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
    /// An instruction fetch.
    Exec,
}

/// Why a fault could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultError {
    /// No area there (SIGSEGV, SEGV_MAPERR).
    NotMapped,
    /// The area forbids this access (SIGSEGV, SEGV_ACCERR).
    Denied,
    /// No memory left for the page (the process is killed).
    OutOfMemory,
    /// The areas' lock was busy and waiting was not allowed.
    WouldBlock,
    /// A file page at or beyond EOF, or the file is gone (its file system
    /// was unmounted), or no space for a write (SIGBUS, BUS_ADRERR).
    BeyondEof,
    /// The page is poisoned (a bad block): SIGBUS, BUS_MCEERR_AR, lsb 12.
    Poisoned,
    /// A fatal signal ended a wait (a write fault on a frozen file
    /// system): nothing was mapped, the process dies on its way out.
    Interrupted,
}

/// A resolved fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// It allocated blocks of a file (Linux counts such a DAX fault as a
    /// major fault).
    pub major: bool,
}

impl Resolved {
    /// A fault that took nothing but memory.
    pub const MINOR: Resolved = Resolved { major: false };
}

/// The areas and the program break.
#[derive(Debug)]
pub struct Areas {
    /// Every mapped area.
    pub set: VmaSet<Backing>,
    /// Where the break started (end of the highest segment).
    pub brk_start: u64,
    /// The current break.
    pub brk: u64,
    /// The lowest address of the stack area now.
    pub stack_low: u64,
}

/// A process's memory.
#[derive(Debug)]
pub struct Vm {
    id: SpaceId,
    space: Arc<AddressSpace>,
    areas: RwLock<Areas>,
}

/// Page-table flags for an area's rights.
/// `PROT_NONE` pages lose the user bit: they keep their contents and any
/// access from user mode faults.
pub fn pte_flags(prot: Prot) -> Flags {
    let mut f = if prot.is_empty() { Flags::empty() } else { Flags::USER_ACCESSIBLE };
    if prot.contains(Prot::WRITE) {
        f |= Flags::WRITABLE;
    }
    if !prot.contains(Prot::EXEC) {
        f |= Flags::NO_EXECUTE;
    }
    f
}

/// Whether `prot` allows `access`.
pub fn allowed(prot: Prot, access: Access) -> bool {
    match access {
        Access::Read => prot.intersects(Prot::READ | Prot::WRITE | Prot::EXEC),
        Access::Write => prot.contains(Prot::WRITE),
        Access::Exec => prot.contains(Prot::EXEC),
    }
}

impl Vm {
    /// An empty address space; None without memory.
    pub fn new() -> Option<Vm> {
        let space = Arc::new(AddressSpace::new()?);
        let id = NEXT_SPACE.fetch_add(1, Ordering::Relaxed);
        SPACES.lock().insert(id, Arc::downgrade(&space));
        Some(Vm {
            id,
            space,
            areas: RwLock::new(Areas {
                set: VmaSet::default(),
                brk_start: 0,
                brk: 0,
                stack_low: STACK_TOP - STACK_INITIAL,
            }),
        })
    }

    /// The page tables (for the task context).
    pub fn space(&self) -> &Arc<AddressSpace> {
        &self.space
    }

    /// Its id in the mappers of the files it maps.
    pub fn id(&self) -> SpaceId {
        self.id
    }

    /// Runs `f` on the areas, shared.
    pub fn read<R>(&self, f: impl FnOnce(&Areas) -> R) -> R {
        f(&self.areas.read())
    }

    /// Runs `f` on the areas and the page tables, exclusively.
    pub fn write<R>(&self, f: impl FnOnce(&mut Areas, &AddressSpace) -> R) -> R {
        f(&mut self.areas.write(), &self.space)
    }

    /// Resolves a fault at `addr`. `block`: may wait for locks (false
    /// inside user copies).
    pub fn fault(&self, addr: u64, access: Access, block: bool) -> Result<Resolved, FaultError> {
        if !(USER_MIN..USER_END).contains(&addr) {
            return Err(FaultError::NotMapped);
        }
        let page = addr & !(PAGE_SIZE - 1);
        let areas = if block { self.areas.read() } else { self.areas.try_read().ok_or(FaultError::WouldBlock)? };
        let Some(v) = areas.set.find(addr) else {
            let grows = addr < areas.stack_low && addr >= STACK_TOP - STACK_MAX;
            drop(areas);
            if !grows || !block {
                return Err(FaultError::NotMapped);
            }
            self.grow_stack(page)?;
            return self.fault(addr, access, block);
        };
        if !allowed(v.prot, access) {
            return Err(FaultError::Denied);
        }
        match &v.backing {
            Backing::Anon => {
                let prot = v.prot;
                drop(areas);
                self.anon_fault(page, prot).map(|()| Resolved::MINOR)
            }
            // The areas' read lock stays held: the area (and its file) cannot
            // go while the fault installs pages of it.
            Backing::File(f) => {
                let area = ByteRange::new(v.start, v.end).ok_or(FaultError::NotMapped)?;
                crate::dax::fault(&self.space, area, v.prot, f, addr, access, block)
            }
            Backing::Device(d) => {
                let area = ByteRange::new(v.start, v.end).ok_or(FaultError::NotMapped)?;
                crate::dax::raw::fault(&self.space, area, v.prot, d, addr, access)
            }
        }
    }

    /// Faults every page of `[start, start + len)` in that is not mapped
    /// with the rights `access` needs, waiting for locks: what a read/write
    /// path does after a user copy came back short because its page-fault
    /// resolver could not take a lock the caller held (drop the locks, call
    /// this, retry the copy), and `MAP_POPULATE`. Returns the faults taken
    /// (minor, major).
    pub fn fault_in(&self, start: u64, len: u64, access: Access) -> Result<(u64, u64), FaultError> {
        let end = start.checked_add(len).ok_or(FaultError::NotMapped)?;
        let mut at = start & !(PAGE_SIZE - 1);
        let (mut minor, mut major) = (0, 0);
        while at < end {
            let needs = match self.space.translate(at) {
                None => true,
                Some(l) => access == Access::Write && !l.flags.contains(Flags::WRITABLE),
            };
            if needs {
                if self.fault(at.max(start), access, true)?.major {
                    major += 1;
                } else {
                    minor += 1;
                }
            }
            at += PAGE_SIZE;
        }
        Ok((minor, major))
    }

    fn anon_fault(&self, page: u64, prot: Prot) -> Result<(), FaultError> {
        if let Some(leaf) = self.space.translate(page) {
            // Mapped meanwhile (or a stale TLB entry): make the rights
            // match the area and retry.
            if leaf.flags & (Flags::WRITABLE | Flags::NO_EXECUTE)
                != pte_flags(prot) & (Flags::WRITABLE | Flags::NO_EXECUTE)
            {
                let _ = self.space.protect(page, PAGE_SIZE, pte_flags(prot));
            } else {
                fsdax_hal::arch::cpu::flush_tlb_page(page);
            }
            return Ok(());
        }
        if fsdax_hal::mm::frame_stats().free < RESERVED_FRAMES {
            return Err(FaultError::OutOfMemory);
        }
        let frame = Frame::alloc_zeroed().ok_or(FaultError::OutOfMemory)?;
        match self.space.map_frame(page, frame, pte_flags(prot)) {
            Ok(()) => Ok(()),
            Err((MapError::AlreadyMapped(_), _)) => Ok(()),
            Err(_) => Err(FaultError::OutOfMemory),
        }
    }

    /// Extends the stack area down to `page` (a fault below it, within the
    /// stack's 8 MiB; the page below the limit is never mapped: a guard).
    fn grow_stack(&self, page: u64) -> Result<(), FaultError> {
        let mut areas = self.areas.write();
        if page >= areas.stack_low {
            return Ok(());
        }
        let len = areas.stack_low - page;
        // Nothing else may sit in the way (a mapping placed in the stack's
        // reach ends its growth, as Linux's stack guard gap does).
        if areas.set.overlapping(page.saturating_sub(PAGE_SIZE), areas.stack_low).next().is_some() {
            return Err(FaultError::NotMapped);
        }
        areas.set.insert(page, len, Prot::READ | Prot::WRITE, Backing::Anon).map_err(|_| FaultError::NotMapped)?;
        areas.stack_low = page;
        Ok(())
    }

    /// Adds an anonymous area at `[start, start + len)`, where nothing is
    /// mapped (the loader: program segments and the stack).
    pub fn map_anon(&self, start: u64, len: u64, prot: Prot) -> Result<(), VmaError> {
        self.areas.write().set.insert(start, len, prot, Backing::Anon)
    }

    /// Writes `data` at the user address `at` through the direct map,
    /// allocating the pages it touches (they must be inside areas). For the
    /// loader, before the process runs.
    pub fn populate_write(&self, at: u64, data: &[u8]) -> Result<(), FaultError> {
        let areas = self.areas.read();
        let mut done = 0usize;
        while done < data.len() {
            let addr = at + done as u64;
            let page = addr & !(PAGE_SIZE - 1);
            let prot = areas.set.find(addr).map(|v| v.prot).ok_or(FaultError::NotMapped)?;
            if self.space.translate(page).is_none() {
                if fsdax_hal::mm::frame_stats().free < RESERVED_FRAMES {
                    return Err(FaultError::OutOfMemory);
                }
                let frame = Frame::alloc_zeroed().ok_or(FaultError::OutOfMemory)?;
                self.space.map_frame(page, frame, pte_flags(prot)).map_err(|_| FaultError::OutOfMemory)?;
            }
            let n = ((page + PAGE_SIZE - addr) as usize).min(data.len() - done);
            self.space.write(addr, &data[done..done + n]).map_err(|_| FaultError::NotMapped)?;
            done += n;
        }
        Ok(())
    }

    /// The user address of the page that maps the physical address `phys`,
    /// if one does (memory failure: where this process sees a poisoned
    /// page). Walks the leaves of every area (a 2 MiB leaf is one step):
    /// for rare events only.
    pub fn user_page_of(&self, phys: u64) -> Option<u64> {
        self.read(|a| {
            a.set.iter().find_map(|v| {
                let mut va = v.start;
                while va < v.end {
                    match self.space.translate(va) {
                        Some(leaf) => {
                            if let Some(page) = fsdax_mm::failure::page_in_leaf(&leaf, phys) {
                                return Some(page);
                            }
                            va = leaf.virt + leaf.size.bytes();
                        }
                        None => va += PAGE_SIZE,
                    }
                }
                None
            })
        })
    }

    /// Bytes of all areas, for `ps`.
    pub fn mapped_bytes(&self) -> u64 {
        self.read(|a| a.set.iter().map(|v| v.len()).sum())
    }

    /// Removes `[start, start + len)` from the areas and the page tables
    /// (call with the areas' write lock: `areas` is its guard's content)
    /// and forgets the file mappings it held from their files' mappers.
    /// Returns the removed pieces: drop them after the lock is released
    /// (the last reference to a file's in-memory inode takes the file
    /// system's lock).
    pub fn unmap_locked(&self, areas: &mut Areas, start: u64, len: u64) -> Result<Vec<Vma<Backing>>, VmaError> {
        let removed = areas.set.remove(start, len)?;
        if self.space.unmap_sparse(start, len).is_err() {
            crate::warn!("vm: unmapping {start:#x}+{len:#x} left pages behind");
        }
        for v in &removed {
            if let (Some((mappers, _)), Some(range)) = (v.backing.mappers(), ByteRange::new(v.start, v.end)) {
                mappers.lock().remove_va_range(self.id, range);
            }
        }
        Ok(removed)
    }
}

impl Drop for Vm {
    /// The files this space mapped forget it (its page tables go with the
    /// last reference to the hal's space, which releases the pins of the
    /// persistent-memory pages still mapped). A `Vm` is dropped outside
    /// every lock: its file mappings may hold the last references to
    /// in-memory inodes.
    fn drop(&mut self) {
        SPACES.lock().remove(&self.id);
        let areas = self.areas.read();
        let mut seen: Vec<*const crate::sync::Mutex<Mappers<SpaceId>>> = Vec::new();
        for (mappers, _) in areas.set.iter().filter_map(|v| v.backing.mappers()) {
            let p: *const _ = mappers;
            if !seen.contains(&p) {
                seen.push(p);
                mappers.lock().remove_space(self.id);
            }
        }
    }
}
