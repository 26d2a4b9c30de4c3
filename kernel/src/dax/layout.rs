//! Unmapping a file range from every address space that maps it, and
//! breaking the layouts before a file's blocks are freed or moved.
//!
//! Who maps the file is in its in-memory inode ([`KInode::mappers`]): every
//! live mapping, by address space. Unmapping goes through the registry of
//! address spaces straight to their page tables, without the processes'
//! area locks, so it can run under the file's mapping lock while a fault
//! (areas read lock, then mapping lock) waits: no deadlock. The mappers'
//! lock is held while unmapping, so no mapping of the range can be
//! forgotten and another installed at the same address meanwhile (`munmap`
//! drops the mapper under the same lock).
//!
//! Breaking the layouts (Linux `xfs_break_dax_layouts` +
//! `dax_layout_busy_page_range`): with the file's mapping lock held
//! exclusive (so no fault maps the range again), unmap the range from every
//! address space, then wait until no page of the file's own blocks in the
//! range is pinned (a page-table entry somewhere, or a copy in flight).
//! Blocks the file shares with another owner are not waited for: they are
//! not freed, and the other owner's mappings legitimately pin them.

use alloc::vec::Vec;

use fsdax_abi::Errno;
use fsdax_hal::mm::Unmap;
use fsdax_mm::PAGE_SIZE;
use fsdax_pmem_api::ByteRange;

use crate::fsys;
use crate::process::vm::space_of;
use crate::sync::WaitQueue;
use crate::vfs::inode::KInode;

/// Woken when a pin release leaves a page idle (the hal's hook).
static PINS_IDLE: WaitQueue<u64> = WaitQueue::new(0);

fn pins_idle() {
    PINS_IDLE.update_and_notify(true, |n| *n = n.wrapping_add(1));
}

/// Registers the pin-release hook with the hal (at boot).
pub fn init() {
    if fsdax_hal::mm::register_pins_idle_hook(pins_idle).is_err() {
        crate::error!("dax: the pin hook was already registered");
    }
}

/// `range` widened to whole pages.
pub fn pages_around(range: ByteRange) -> ByteRange {
    let start = range.start() & !(PAGE_SIZE - 1);
    let end = range.end().checked_next_multiple_of(PAGE_SIZE).unwrap_or(!(PAGE_SIZE - 1));
    ByteRange::new(start, end).unwrap_or(ByteRange::EMPTY)
}

/// Unmaps what `which` selects of the file range `range` (widened to
/// pages) of `k` from every address space that maps it, flushing their
/// TLBs. Returns how many mappings it went through.
pub fn unmap_file_range(k: &KInode, range: ByteRange, which: Unmap) -> usize {
    let range = pages_around(range);
    if range.is_empty() {
        return 0;
    }
    let mappers = k.mappers.lock();
    let hits = mappers.query(range);
    for m in &hits {
        if let Some(space) = space_of(m.space) {
            if let Err(e) = space.unmap_where(m.va, m.file.len(), which) {
                crate::warn!("dax: unmapping {:#x}+{:#x} of inode {}: {e}", m.va, m.file.len(), k.ino());
            }
        }
    }
    hits.len()
}

/// After a write of the file range `range`: holes it filled may still be
/// mapped to the zero page somewhere (a read fault before the write): those
/// entries go, so the next access sees the data (Linux tears them down
/// after allocating for `write(2)` too). Cheap when nobody maps the file.
pub fn after_write(k: &KInode, range: ByteRange) {
    if k.mappers.lock().is_empty() {
        return;
    }
    unmap_file_range(k, range, Unmap::ZeroOnly);
}

/// Breaks the layouts of the file range `range` (widened to pages) of `k`
/// before its blocks are freed or moved: unmaps what `which` selects from
/// every address space, then waits until no page of the file's own
/// (unshared) blocks in the range is pinned. The caller holds the file's
/// mapping lock exclusive and not the file system's lock. EINTR if a fatal
/// signal ends the wait (nothing was freed).
pub fn break_layouts(k: &KInode, range: ByteRange, which: Unmap) -> Result<(), Errno> {
    let range = pages_around(range);
    if range.is_empty() {
        return Ok(());
    }
    unmap_file_range(k, range, which);
    let phys = own_blocks(k, range)?;
    if phys.is_empty() {
        return Ok(());
    }
    wait_unpinned(k, &phys)
}

/// The physical ranges of the file's own (unshared) blocks in `range`.
fn own_blocks(k: &KInode, range: ByteRange) -> Result<Vec<ByteRange>, Errno> {
    fsys::with_fs_read(|fs| {
        k.check_mount()?;
        let base = fs.pmem().phys_base();
        let runs = fs.fiemap(k.ino()).map_err(|e| crate::vfs::fs_errno(&e))?;
        Ok(runs
            .iter()
            .filter(|e| !e.shared)
            .filter_map(|e| {
                let f = ByteRange::from_len_saturating(e.file_offset, e.len);
                let part = f.intersection(&range)?;
                Some(ByteRange::from_len_saturating(base + e.phys + (part.start() - e.file_offset), part.len()))
            })
            .collect())
    })
    .unwrap_or(Err(Errno::EIO))
}

/// Waits until no page in `phys` is pinned. Says so once if that takes
/// more than 5 seconds (a mapping nobody recorded would hang here); a
/// fatal signal ends the wait with EINTR.
fn wait_unpinned(k: &KInode, phys: &[ByteRange]) -> Result<(), Errno> {
    let idle = || phys.iter().all(|r| fsdax_hal::mm::pins_in(*r) == 0);
    let me = crate::process::current();
    let deadline = crate::time::ticks() + 5 * crate::time::TICK_HZ;
    let mut told = false;
    loop {
        let until = if told { crate::time::ticks() + crate::time::TICK_HZ } else { deadline };
        let done = PINS_IDLE.wait_until_tick(until, |_, _| {
            if idle() {
                return Some(Ok(()));
            }
            if me.as_ref().is_some_and(|p| p.fatal_pending()) {
                return Some(Err(Errno::EINTR));
            }
            None
        });
        match done {
            Some(r) => return r,
            None if !told => {
                told = true;
                let pins: u64 = phys.iter().map(|r| fsdax_hal::mm::pins_in(*r)).sum();
                crate::warn!(
                    "dax: inode {} waits for {pins} pin(s) on its blocks to be released before freeing them",
                    k.ino()
                );
            }
            None => {}
        }
    }
}
