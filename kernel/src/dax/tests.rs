//! In-kernel tests of the DAX fault path, layout breaks, flushes and the
//! who-maps lookup, on address spaces that are built here and never run
//! (their page tables are inspected directly).

use alloc::sync::Arc;

use fsdax_fs::{FileSystem, MkfsOptions};
use fsdax_hal::mm::LeafKind;
use fsdax_ktest::{kassert, kassert_eq, kfail, ktest, Failure};
use fsdax_mm::paging::{Flags, PageSize};
use fsdax_mm::vma::Prot;
use fsdax_mm::{HUGE_2M, PAGE_SIZE};
use fsdax_pmem_api::ByteRange;

use crate::fsys::{self, with_fs, with_fs_read};
use crate::process::vm::{Access, Backing, FaultError, FileMap, Vm};
use crate::vfs::inode::{self, KInode};

const RW: Prot = Prot::READ.union(Prot::WRITE);
/// Where the tests map files (2 MiB aligned).
const VA: u64 = 0x7f00_0000_0000;

fn fresh_mount() -> Result<(), Failure> {
    let d = crate::pmem::device("pmem0").ok_or(kfail!("no pmem0"))?;
    let fs = FileSystem::mkfs(d, MkfsOptions::default()).map_err(|_| kfail!("mkfs"))?;
    fs.unmount().map_err(|_| kfail!("unmount after mkfs"))?;
    fsys::mount(d).map_err(|_| kfail!("mount"))
}

/// Creates `/name` with `len` bytes of `byte` (0: a sparse file of that
/// size) and returns its in-memory inode.
fn file(name: &str, len: u64, byte: u8) -> Result<Arc<KInode>, Failure> {
    let made = with_fs(|fs| -> Result<Arc<KInode>, fsdax_fs::FsError> {
        let ino = fs.create(fs.root(), name.as_bytes())?;
        if byte == 0 {
            fs.truncate(ino, len)?;
        } else {
            let chunk = alloc::vec![byte; HUGE_2M as usize];
            let mut off = 0;
            while off < len {
                let n = (len - off).min(HUGE_2M);
                fs.write(ino, off, &chunk[..n as usize])?;
                off += n;
            }
        }
        inode::get(fs, ino)
    });
    made.ok_or(kfail!("not mounted"))?.map_err(|_| kfail!("create the file"))
}

/// Maps `len` bytes of `k` from file offset `offset` at `va` in `vm`, as
/// `mmap` does.
fn map(vm: &Vm, k: &Arc<KInode>, va: u64, len: u64, offset: u64, shared: bool) -> Result<(), Failure> {
    let b = Backing::File(FileMap { inode: Arc::clone(k), offset, shared, sync: false, may_write: true });
    vm.write(|a, _| a.set.insert(va, len, RW, b)).map_err(|_| kfail!("insert the area"))?;
    k.mappers.lock().insert(vm.id(), va, ByteRange::from_len_saturating(offset, len));
    Ok(())
}

/// Device offset of file offset `off` of `k` (None in a hole).
fn phys_of(k: &KInode, off: u64) -> Result<Option<u64>, Failure> {
    let b = with_fs_read(|fs| fs.bmap(k.ino(), off)).ok_or(kfail!("not mounted"))?.map_err(|_| kfail!("bmap"))?;
    Ok(b.phys.map(|p| p + (off - b.file_offset)))
}

fn pmem_base() -> Result<u64, Failure> {
    Ok(crate::pmem::device("pmem0").ok_or(kfail!("no pmem0"))?.phys_base())
}

fn finish(vms: alloc::vec::Vec<Vm>, inodes: alloc::vec::Vec<Arc<KInode>>) -> Result<(), Failure> {
    drop(vms);
    drop(inodes);
    kassert_eq!(fsdax_hal::mm::pinned_pages(), 0);
    fsys::unmount().map_err(|_| kfail!("unmount"))
}

ktest!(dax_read_faults_map_2m_pages_of_aligned_extents_and_zero_pages_over_holes, {
    fresh_mount()?;
    let k = file("data", 4 * HUGE_2M, 0x5a)?;
    let hole = file("hole", 4 * HUGE_2M, 0)?;
    let vm = Vm::new().ok_or(kfail!("vm"))?;
    map(&vm, &k, VA, 4 * HUGE_2M, 0, true)?;
    map(&vm, &hole, VA + 8 * HUGE_2M, 4 * HUGE_2M, 0, true)?;
    // One fault maps the whole 2 MiB block, read-only, onto the file's block.
    kassert_eq!(vm.fault(VA + HUGE_2M + 12345, Access::Read, true).map(|r| r.major), Ok(false));
    let leaf = vm.space().translate(VA + HUGE_2M).ok_or(kfail!("not mapped"))?;
    kassert_eq!(leaf.size, PageSize::Size2M);
    kassert!(!leaf.flags.contains(Flags::WRITABLE), "a read fault maps read-only");
    kassert_eq!(LeafKind::of(leaf.flags), LeafKind::Pmem);
    let want = phys_of(&k, HUGE_2M)?.ok_or(kfail!("hole"))?;
    kassert_eq!(leaf.phys, pmem_base()? + want);
    kassert!(fsdax_hal::mm::pins_in(ByteRange::from_len_saturating(leaf.phys, 1)) == 1, "the entry pins its page");
    // A hole: the 2 MiB zero page, nothing allocated.
    let blocks = with_fs_read(|fs| fs.stat(hole.ino()).map(|s| s.blocks)).ok_or(kfail!("mount"))?;
    kassert_eq!(vm.fault(VA + 8 * HUGE_2M + 5, Access::Read, true).map(|r| r.major), Ok(false));
    let z = vm.space().translate(VA + 8 * HUGE_2M).ok_or(kfail!("hole not mapped"))?;
    kassert_eq!((z.size, LeafKind::of(z.flags)), (PageSize::Size2M, LeafKind::Zero));
    kassert_eq!(with_fs_read(|fs| fs.stat(hole.ino()).map(|s| s.blocks)).ok_or(kfail!("mount"))?, blocks);
    // Beyond EOF: SIGBUS.
    map(&vm, &k, VA + 16 * HUGE_2M, 8 * HUGE_2M, 0, true)?;
    kassert_eq!(vm.fault(VA + 16 * HUGE_2M + 4 * HUGE_2M, Access::Read, true), Err(FaultError::BeyondEof));
    finish(alloc::vec![vm], alloc::vec![k, hole])
});

ktest!(dax_write_faults_allocate_aligned_2m_extents_mark_them_dirty_and_flushes_write_protect, {
    fresh_mount()?;
    let k = file("sparse", 4 * HUGE_2M, 0)?;
    let vm = Vm::new().ok_or(kfail!("vm"))?;
    map(&vm, &k, VA, 4 * HUGE_2M, 0, true)?;
    kassert_eq!(vm.fault(VA + 2 * HUGE_2M + 8, Access::Write, true).map(|r| r.major), Ok(true));
    let leaf = vm.space().translate(VA + 2 * HUGE_2M).ok_or(kfail!("not mapped"))?;
    kassert_eq!(leaf.size, PageSize::Size2M);
    kassert!(leaf.flags.contains(Flags::WRITABLE));
    let phys = phys_of(&k, 2 * HUGE_2M)?.ok_or(kfail!("not allocated"))?;
    kassert_eq!(phys % HUGE_2M, 0, "an aligned extent");
    kassert_eq!(k.dirty.lock().count(), HUGE_2M / PAGE_SIZE);
    // A flush takes the marks and write access away.
    let f = crate::dax::flush::flush_dirty(&k, None).map_err(|_| kfail!("flush"))?;
    kassert_eq!((f.bytes, f.mappings), (HUGE_2M, 1));
    kassert!(k.dirty.lock().is_empty());
    let leaf = vm.space().translate(VA + 2 * HUGE_2M).ok_or(kfail!("unmapped by the flush"))?;
    kassert!(!leaf.flags.contains(Flags::WRITABLE), "the flush write-protects");
    // The next store faults, marks the page again and writes in place.
    kassert_eq!(vm.fault(VA + 2 * HUGE_2M + 8, Access::Write, true).map(|r| r.major), Ok(false));
    kassert!(vm.space().translate(VA + 2 * HUGE_2M).is_some_and(|l| l.flags.contains(Flags::WRITABLE)));
    kassert_eq!(k.dirty.lock().count(), HUGE_2M / PAGE_SIZE);
    kassert_eq!(phys_of(&k, 2 * HUGE_2M)?, Some(phys), "no new allocation");
    finish(alloc::vec![vm], alloc::vec![k])
});

ktest!(dax_truncate_unmaps_every_process_and_leaves_no_pin_on_freed_blocks, {
    fresh_mount()?;
    let k = file("t", 4 * HUGE_2M, 7)?;
    let (a, b) = (Vm::new().ok_or(kfail!("vm"))?, Vm::new().ok_or(kfail!("vm"))?);
    map(&a, &k, VA, 4 * HUGE_2M, 0, true)?;
    map(&b, &k, VA + 0x1000_0000, 4 * HUGE_2M - PAGE_SIZE, 0, false)?;
    for off in [0, HUGE_2M, 3 * HUGE_2M + 5 * PAGE_SIZE] {
        a.fault(VA + off, Access::Read, true).map_err(|_| kfail!("fault a"))?;
        b.fault(VA + 0x1000_0000 + off, Access::Read, true).map_err(|_| kfail!("fault b"))?;
    }
    // b's mapping is not 2 MiB-aligned in length: its last block is 4 KiB pages.
    kassert_eq!(b.space().translate(VA + 0x1000_0000 + 3 * HUGE_2M).map(|l| l.size), Some(PageSize::Size4K));
    let freed = ByteRange::from_len_saturating(pmem_base()? + phys_of(&k, HUGE_2M)?.ok_or(kfail!("hole"))?, HUGE_2M);
    kassert!(fsdax_hal::mm::pins_in(freed) > 0);
    crate::vfs::file::truncate(&k, HUGE_2M + 100).map_err(|_| kfail!("truncate"))?;
    kassert_eq!(fsdax_hal::mm::pins_in(freed), 0);
    for (vm, base) in [(&a, VA), (&b, VA + 0x1000_0000)] {
        kassert!(vm.space().translate(base).is_some(), "the first block stays mapped");
        kassert!(
            vm.space().first_leaf(base + HUGE_2M, base + 4 * HUGE_2M).is_none(),
            "nothing from the new EOF's page on"
        );
        kassert_eq!(vm.fault(base + HUGE_2M + PAGE_SIZE, Access::Read, true), Err(FaultError::BeyondEof));
    }
    // The page holding EOF maps again, its bytes past EOF zero.
    a.fault(VA + HUGE_2M + 50, Access::Read, true).map_err(|_| kfail!("EOF page"))?;
    let mut tail = [1u8; 100];
    let p = phys_of(&k, HUGE_2M)?.ok_or(kfail!("hole"))?;
    crate::pmem::read(crate::pmem::device("pmem0").ok_or(kfail!("pmem0"))?, p + 100, &mut tail)
        .map_err(|_| kfail!("read"))?;
    kassert!(tail.iter().all(|&x| x == 0), "past EOF is zero on the media");
    finish(alloc::vec![a, b], alloc::vec![k])
});

ktest!(dax_a_write_to_a_reflinked_extent_copies_it_for_this_file_only, {
    fresh_mount()?;
    let src = file("src", 2 * HUGE_2M, 3)?;
    let dst = with_fs(|fs| -> Result<Arc<KInode>, fsdax_fs::FsError> {
        let ino = fs.create(fs.root(), b"dst")?;
        fs.reflink(src.ino(), ino)?;
        inode::get(fs, ino)
    })
    .ok_or(kfail!("not mounted"))?
    .map_err(|_| kfail!("reflink"))?;
    let old = phys_of(&src, 0)?.ok_or(kfail!("hole"))?;
    kassert_eq!(phys_of(&dst, 0)?, Some(old));
    let (a, b) = (Vm::new().ok_or(kfail!("vm"))?, Vm::new().ok_or(kfail!("vm"))?);
    map(&a, &src, VA, 2 * HUGE_2M, 0, true)?;
    map(&b, &dst, VA, 2 * HUGE_2M, 0, true)?;
    a.fault(VA, Access::Read, true).map_err(|_| kfail!("read src"))?;
    b.fault(VA, Access::Read, true).map_err(|_| kfail!("read dst"))?;
    kassert_eq!(b.space().translate(VA).map(|l| l.phys), Some(pmem_base()? + old), "shared, read-only");
    // The write fault copies the 2 MiB block around (a major fault) and maps the copy.
    kassert_eq!(b.fault(VA + 77, Access::Write, true).map(|r| r.major), Ok(true));
    let new = phys_of(&dst, 0)?.ok_or(kfail!("hole"))?;
    kassert!(new != old && new % HUGE_2M == 0, "an aligned copy");
    let leaf = b.space().translate(VA).ok_or(kfail!("unmapped"))?;
    kassert_eq!((leaf.size, leaf.phys), (PageSize::Size2M, pmem_base()? + new));
    kassert!(leaf.flags.contains(Flags::WRITABLE));
    // The source's mapping still reaches its own block.
    kassert_eq!(a.space().translate(VA).map(|l| l.phys), Some(pmem_base()? + old));
    kassert_eq!(phys_of(&src, 0)?, Some(old));
    let mut byte = [0u8; 1];
    let d = crate::pmem::device("pmem0").ok_or(kfail!("pmem0"))?;
    crate::pmem::read(d, new + HUGE_2M - 1, &mut byte).map_err(|_| kfail!("read"))?;
    kassert_eq!(byte[0], 3, "the copy holds the old bytes");
    finish(alloc::vec![a, b], alloc::vec![src, dst])
});

ktest!(dax_a_private_write_copies_the_page_into_anonymous_memory, {
    fresh_mount()?;
    let k = file("p", HUGE_2M, 9)?;
    let vm = Vm::new().ok_or(kfail!("vm"))?;
    map(&vm, &k, VA, HUGE_2M, 0, false)?;
    vm.fault(VA, Access::Read, true).map_err(|_| kfail!("read"))?;
    kassert_eq!(vm.space().translate(VA).map(|l| l.size), Some(PageSize::Size2M), "a private read maps 2 MiB");
    kassert_eq!(vm.fault(VA + 3 * PAGE_SIZE + 1, Access::Write, true).map(|r| r.major), Ok(false));
    let leaf = vm.space().translate(VA + 3 * PAGE_SIZE).ok_or(kfail!("unmapped"))?;
    kassert_eq!((leaf.size, LeafKind::of(leaf.flags)), (PageSize::Size4K, LeafKind::Ram));
    let mut b = [0u8; 8];
    vm.space().read(VA + 3 * PAGE_SIZE + 100, &mut b).map_err(|_| kfail!("read the copy"))?;
    kassert_eq!(b, [9u8; 8]);
    vm.space().write(VA + 3 * PAGE_SIZE, &[1, 2, 3]).map_err(|_| kfail!("write the copy"))?;
    let mut f = [0u8; 3];
    with_fs_read(|fs| fs.read(k.ino(), 3 * PAGE_SIZE, &mut f)).ok_or(kfail!("mount"))?.map_err(|_| kfail!("read"))?;
    kassert_eq!(f, [9, 9, 9], "the file is unchanged");
    kassert!(k.dirty.lock().is_empty(), "nothing of the file is dirty");
    finish(alloc::vec![vm], alloc::vec![k])
});

ktest!(dax_who_maps_a_device_page_names_every_space_and_entry_size, {
    fresh_mount()?;
    let k = file("w", 2 * HUGE_2M, 1)?;
    let (a, b) = (Vm::new().ok_or(kfail!("vm"))?, Vm::new().ok_or(kfail!("vm"))?);
    map(&a, &k, VA, 2 * HUGE_2M, 0, true)?;
    map(&b, &k, VA + 0x2000_0000 + PAGE_SIZE, HUGE_2M, HUGE_2M, true)?;
    a.fault(VA + HUGE_2M, Access::Read, true).map_err(|_| kfail!("a"))?;
    b.fault(VA + 0x2000_0000 + PAGE_SIZE + 5 * PAGE_SIZE, Access::Read, true).map_err(|_| kfail!("b"))?;
    let dev = phys_of(&k, HUGE_2M + 5 * PAGE_SIZE)?.ok_or(kfail!("hole"))?;
    let found = crate::dax::rmap::who_maps(ByteRange::from_len_saturating(dev, PAGE_SIZE));
    kassert_eq!(found.len(), 2);
    let of = |space| found.iter().find(|d| d.space == space);
    let da = of(a.id()).ok_or(kfail!("a missing"))?;
    kassert_eq!((da.va, da.size, da.file_offset), (VA + HUGE_2M, PageSize::Size2M, HUGE_2M));
    let db = of(b.id()).ok_or(kfail!("b missing"))?;
    kassert_eq!((db.va, db.size), (VA + 0x2000_0000 + PAGE_SIZE + 5 * PAGE_SIZE, PageSize::Size4K));
    kassert_eq!((db.file_offset, db.dev_offset), (HUGE_2M + 5 * PAGE_SIZE, dev));
    kassert!(crate::dax::rmap::who_maps(ByteRange::from_len_saturating(dev + HUGE_2M * 8, PAGE_SIZE)).is_empty());
    // Unmapped (munmap), a space is gone from the answer.
    let removed = b.write(|areas, _| b.unmap_locked(areas, VA + 0x2000_0000 + PAGE_SIZE, HUGE_2M));
    drop(removed);
    kassert_eq!(crate::dax::rmap::who_maps(ByteRange::from_len_saturating(dev, PAGE_SIZE)).len(), 1);
    finish(alloc::vec![a, b], alloc::vec![k])
});

ktest!(dax_a_fault_on_a_bad_block_is_poison_not_a_mapping, {
    fresh_mount()?;
    let k = file("bad", HUGE_2M, 4)?;
    let dev = phys_of(&k, 7 * PAGE_SIZE)?.ok_or(kfail!("hole"))?;
    with_fs(|fs| fs.mark_bad(dev, 64)).ok_or(kfail!("mount"))?.map_err(|_| kfail!("mark bad"))?;
    let vm = Vm::new().ok_or(kfail!("vm"))?;
    map(&vm, &k, VA, HUGE_2M, 0, true)?;
    kassert_eq!(vm.fault(VA + 7 * PAGE_SIZE + 3, Access::Read, true), Err(FaultError::Poisoned));
    // Its neighbours map (4 KiB pages: the block holds a bad block), the bad page does not.
    kassert_eq!(vm.fault(VA, Access::Read, true).map(|r| r.major), Ok(false));
    kassert_eq!(vm.space().translate(VA).map(|l| l.size), Some(PageSize::Size4K));
    kassert!(vm.space().translate(VA + 7 * PAGE_SIZE).is_none());
    kassert!(vm.space().translate(VA + 8 * PAGE_SIZE).is_some());
    with_fs(|fs| fs.clear_bad(dev & !(PAGE_SIZE - 1), PAGE_SIZE))
        .ok_or(kfail!("mount"))?
        .map_err(|_| kfail!("clear"))?;
    finish(alloc::vec![vm], alloc::vec![k])
});

ktest!(dax_a_2m_page_goes_where_4k_pages_of_an_earlier_mapping_left_an_empty_table, {
    fresh_mount()?;
    let k = file("reuse", HUGE_2M, 6)?;
    let vm = Vm::new().ok_or(kfail!("vm"))?;
    // A one-page mapping maps a 4 KiB page (and leaves its table behind
    // when it goes).
    map(&vm, &k, VA, PAGE_SIZE, 0, true)?;
    vm.fault(VA, Access::Write, true).map_err(|_| kfail!("small"))?;
    kassert_eq!(vm.space().translate(VA).map(|l| l.size), Some(PageSize::Size4K));
    let removed = vm.write(|areas, _| vm.unmap_locked(areas, VA, PAGE_SIZE)).map_err(|_| kfail!("munmap"))?;
    drop(removed);
    // The same place mapped again, whole: a write fault maps 2 MiB, and
    // again after a flush write-protected it.
    map(&vm, &k, VA, HUGE_2M, 0, true)?;
    kassert_eq!(vm.fault(VA + 5, Access::Write, true).map(|r| r.major), Ok(false));
    let leaf = vm.space().translate(VA).ok_or(kfail!("the fault mapped nothing"))?;
    kassert_eq!(leaf.size, PageSize::Size2M);
    // The read path too, on a second file.
    let z = file("reuse-hole", HUGE_2M, 0)?;
    map(&vm, &z, VA + 4 * HUGE_2M, PAGE_SIZE, 0, true)?;
    vm.fault(VA + 4 * HUGE_2M, Access::Read, true).map_err(|_| kfail!("small hole"))?;
    let removed =
        vm.write(|areas, _| vm.unmap_locked(areas, VA + 4 * HUGE_2M, PAGE_SIZE)).map_err(|_| kfail!("munmap"))?;
    drop(removed);
    map(&vm, &z, VA + 4 * HUGE_2M, HUGE_2M, 0, true)?;
    vm.fault(VA + 4 * HUGE_2M, Access::Read, true).map_err(|_| kfail!("hole"))?;
    let zl = vm.space().translate(VA + 4 * HUGE_2M).ok_or(kfail!("the hole fault mapped nothing"))?;
    kassert_eq!((zl.size, LeafKind::of(zl.flags)), (PageSize::Size2M, LeafKind::Zero));
    finish(alloc::vec![vm], alloc::vec![k, z])
});

ktest!(dax_punch_hole_unmaps_the_range_everywhere_keeps_private_copies_and_frees_unpinned_blocks, {
    fresh_mount()?;
    let k = file("punch", 4 * HUGE_2M, 8)?;
    let (a, b) = (Vm::new().ok_or(kfail!("vm"))?, Vm::new().ok_or(kfail!("vm"))?);
    map(&a, &k, VA, 4 * HUGE_2M, 0, true)?;
    map(&b, &k, VA, 4 * HUGE_2M, 0, false)?;
    for off in [0, HUGE_2M, 2 * HUGE_2M, 3 * HUGE_2M] {
        a.fault(VA + off, Access::Read, true).map_err(|_| kfail!("fault a"))?;
    }
    b.fault(VA + HUGE_2M, Access::Read, true).map_err(|_| kfail!("fault b"))?;
    // b's private copy of a page in the punched range.
    b.fault(VA + HUGE_2M + 9 * PAGE_SIZE, Access::Write, true).map_err(|_| kfail!("private copy"))?;
    b.space().write(VA + HUGE_2M + 9 * PAGE_SIZE, &[0xee]).map_err(|_| kfail!("write the copy"))?;
    let punched = ByteRange::from_len_saturating(pmem_base()? + phys_of(&k, HUGE_2M)?.ok_or(kfail!("hole"))?, HUGE_2M);
    kassert!(fsdax_hal::mm::pins_in(punched) > 0);
    crate::vfs::file::fallocate(&k, fsdax_fs::Falloc::PunchHole, HUGE_2M, HUGE_2M).map_err(|_| kfail!("punch"))?;
    kassert_eq!(fsdax_hal::mm::pins_in(punched), 0, "nothing pins the freed blocks");
    kassert_eq!(phys_of(&k, HUGE_2M)?, None, "a hole now");
    // a: the punched block is gone, its neighbours stay mapped.
    kassert!(a.space().first_leaf(VA + HUGE_2M, VA + 2 * HUGE_2M).is_none());
    kassert!(a.space().translate(VA).is_some() && a.space().translate(VA + 2 * HUGE_2M).is_some());
    // b: the file pages went, the private copy stayed.
    let copy = b.space().translate(VA + HUGE_2M + 9 * PAGE_SIZE).ok_or(kfail!("the private copy went"))?;
    kassert_eq!(LeafKind::of(copy.flags), LeafKind::Ram);
    kassert!(b.space().translate(VA + HUGE_2M).is_none());
    // The hole reads as zeros through the mapping: the zero page.
    a.fault(VA + HUGE_2M + 5, Access::Read, true).map_err(|_| kfail!("read the hole"))?;
    let z = a.space().translate(VA + HUGE_2M).ok_or(kfail!("unmapped"))?;
    kassert_eq!((z.size, LeafKind::of(z.flags)), (PageSize::Size2M, LeafKind::Zero));
    finish(alloc::vec![a, b], alloc::vec![k])
});
