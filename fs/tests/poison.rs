//! Media errors. Reading: a read returns the bytes before the poison, the
//! next read fails there; comparisons (dedupe) fail with EIO. Writing: a
//! store into poison, poison in the bytes a copy-on-write copies around, a
//! log record or checkpoint that cannot be written. The operation fails,
//! nothing of it is committed (memory and media agree: fsck is clean), and
//! a failed metadata store shuts the file system down read-only instead of
//! reporting anything durable.
//!
//! Which block an operation will allocate is found by running it on a
//! second mount of the same image (the allocator is deterministic), then
//! poisoning that block on the first.

use fsdax_fs::*;

const BS: u64 = BLOCK_SIZE;

fn mkfs(mb: usize, log_blocks: Option<u64>) -> FileSystem<MemPmem> {
    let opts = MkfsOptions { uuid: [9; 16], log_blocks };
    FileSystem::mkfs(MemPmem::new(mb << 20), opts).unwrap()
}

fn read_all(fs: &FileSystem<MemPmem>, ino: Ino) -> Vec<u8> {
    let n = fs.stat(ino).unwrap().size as usize;
    let mut b = vec![0u8; n];
    assert_eq!(fs.read(ino, 0, &mut b).unwrap(), n);
    b
}

/// Two independent mounts of the same image: the first to break, the
/// second to learn from.
fn twins(image: &MemPmem) -> (FileSystem<MemPmem>, FileSystem<MemPmem>) {
    (FileSystem::mount(image.clone()).unwrap(), FileSystem::mount(image.clone()).unwrap())
}

/// `/f` (two blocks of 1s) and `/g`, a reflink of `/f`'s first block only.
fn shared_image() -> MemPmem {
    let mut fs = mkfs(16, None);
    let r = fs.root();
    let f = fs.create(r, b"f").unwrap();
    fs.write(f, 0, &[1u8; 2 * BS as usize]).unwrap();
    let g = fs.create(r, b"g").unwrap();
    fs.reflink_range(f, 0, g, 0, BS).unwrap();
    fs.unmount().unwrap()
}

#[test]
fn a_data_store_into_poison_fails_and_commits_nothing() {
    let image = shared_image();
    let (mut fs, mut probe) = twins(&image);
    let g = fs.resolve("/g").unwrap();
    // Writing 2 blocks into /g: block 0 is shared (copy on write, its
    // mutations are pushed first), block 1 is a hole (allocated next).
    let data = vec![7u8; 2 * BS as usize];
    probe.write(g, 0, &data).unwrap();
    let second = probe.bmap(g, BS).unwrap().phys.unwrap();
    fs.pmem_mut().inject_poison(second + 100, 64);
    let free_before = fs.statfs().free_blocks;
    // `second` is the start of the new extent: the copy-on-write block, the
    // first one written. Poison there: nothing written, nothing committed.
    assert_eq!(fs.write(g, 0, &data), Err(FsError::Poisoned { offset: second + 100 }));
    assert_eq!(fs.stat(g).unwrap().size, BS);
    assert!(fs.bmap(g, 0).unwrap().shared);
    assert_eq!(read_all(&fs, g), vec![1u8; BS as usize]);
    fs.fsck().unwrap();
    assert!(!fs.is_read_only(), "a data error is not a reason to shut down");
    // The poisoned block is now a known bad block, so a retry goes elsewhere.
    assert_eq!(fs.bad_blocks(), vec![(second, BS)]);
    assert_eq!(fs.statfs().free_blocks, free_before - 1);
    assert_eq!(fs.write(g, 0, &data).unwrap(), data.len());
    assert_eq!(read_all(&fs, g), data);
    assert_ne!(fs.bmap(g, BS).unwrap().phys, Some(second));
    let pm = fs.unmount().unwrap();
    let fs = FileSystem::mount(pm).unwrap();
    assert_eq!(read_all(&fs, fs.resolve("/g").unwrap()), data);
    assert_eq!(read_all(&fs, fs.resolve("/f").unwrap()), vec![1u8; 2 * BS as usize]);
    fs.fsck().unwrap();
}

#[test]
fn an_in_place_store_into_poison_fails_without_changing_metadata() {
    let image = shared_image();
    let (mut fs, _) = twins(&image);
    let f = fs.resolve("/f").unwrap();
    let second = fs.bmap(f, BS).unwrap().phys.unwrap() + (BS - fs.bmap(f, BS).unwrap().file_offset);
    fs.pmem_mut().inject_poison(second + 8, 8);
    // Growing write into part of the poisoned (unshared) block: fails, size
    // unchanged. (A write of the whole block would rewrite it and clear
    // the poison.)
    assert_eq!(fs.write(f, BS + 4, &[5u8; 2 * BS as usize]), Ok(4), "a short count before the poison");
    assert_eq!(fs.write(f, BS + 8, &[5u8; 2 * BS as usize]), Err(FsError::Poisoned { offset: second + 8 }));
    assert_eq!(fs.stat(f).unwrap().size, 2 * BS);
    fs.fsck().unwrap();
}

#[test]
fn poison_in_the_bytes_copied_around_fails_the_copy_on_write() {
    let image = shared_image();
    let (mut fs, _) = twins(&image);
    let g = fs.resolve("/g").unwrap();
    let shared = fs.bmap(g, 0).unwrap().phys.unwrap();
    fs.pmem_mut().inject_poison(shared + 100, 64);
    // The write covers [1000, 1100): the copy around it reads the poison.
    assert_eq!(fs.write(g, 1000, &[2u8; 100]), Err(FsError::Poisoned { offset: shared + 100 }));
    assert!(fs.bmap(g, 0).unwrap().shared, "still shared: nothing committed");
    fs.fsck().unwrap();
    // Same for a DAX write fault (bmap_write unshares the page). The failed
    // write recorded the block as bad, so the error names its first byte.
    assert_eq!(fs.bad_blocks(), vec![(shared, BS)]);
    assert_eq!(fs.bmap_write(g, 0, BS), Err(FsError::Poisoned { offset: shared }));
    assert!(fs.bmap(g, 0).unwrap().shared);
    fs.fsck().unwrap();
}

/// Poisons `[off, off + len)` on the device.
fn poison(fs: &mut FileSystem<MemPmem>, off: u64, len: u64) {
    fs.pmem_mut().inject_poison(off, len);
}

#[test]
fn a_log_record_that_cannot_be_written_is_written_elsewhere_and_durable() {
    for both in [false, true] {
        let mut fs = mkfs(16, None);
        let r = fs.root();
        let a = fs.create(r, b"a").unwrap();
        fs.write(a, 0, b"kept").unwrap();
        let log = fs.log_status().log;
        // Poison where the next record goes: one copy, or both.
        let used = fs.log_status().used;
        poison(&mut fs, log[0].pblk * BS + used, 64);
        if both {
            poison(&mut fs, log[1].pblk * BS + used, 64);
        }
        let gen = fs.log_status().generation;
        let b = fs.create(r, b"b").unwrap();
        fs.write(b, 0, b"after").unwrap();
        assert!(!fs.is_read_only(), "the file system keeps serving");
        assert_eq!(fs.mount_info().relocations, 1);
        assert!(fs.log_status().generation > gen, "a checkpoint relocated the log");
        assert_ne!(fs.log_status().log[0], log[0]);
        assert!(fs.bad_blocks().contains(&(log[0].pblk * BS, BS)), "the poisoned log block is a bad block");
        assert!(fs.fsck().unwrap().is_clean());
        // What was acknowledged survives a crash.
        let fs = FileSystem::mount(fs.into_pmem()).unwrap();
        assert!(!fs.is_read_only());
        assert_eq!(read_all(&fs, fs.resolve("/a").unwrap()), b"kept");
        assert_eq!(read_all(&fs, fs.resolve("/b").unwrap()), b"after");
        assert!(fs.fsck().unwrap().is_clean());
    }
}

#[test]
fn a_checkpoint_that_hits_poison_is_written_elsewhere() {
    let mut fs = mkfs(16, None);
    fs.create(fs.root(), b"first").unwrap();
    let image = fs.unmount().unwrap();
    let (mut fs, mut probe) = twins(&image);
    // The allocator is deterministic: the probe shows where the next
    // checkpoint goes.
    probe.create(probe.root(), b"x").unwrap();
    probe.checkpoint().unwrap();
    let next = probe.log_status();
    poison(&mut fs, next.body[0].pblk * BS + 200, 64);
    poison(&mut fs, next.log[1].pblk * BS, 64);
    fs.create(fs.root(), b"x").unwrap();
    fs.checkpoint().unwrap();
    assert!(!fs.is_read_only());
    let now = fs.log_status();
    assert_ne!(now.body[0], next.body[0]);
    assert_ne!(now.log[1], next.log[1]);
    let bad = fs.bad_blocks();
    assert!(bad.contains(&(next.body[0].pblk * BS, BS)) && bad.contains(&(next.log[1].pblk * BS, BS)), "{bad:?}");
    assert!(fs.fsck().unwrap().is_clean());
    let fs = FileSystem::mount(fs.into_pmem()).unwrap();
    assert!(fs.lookup(fs.root(), b"x").is_ok() && fs.lookup(fs.root(), b"first").is_ok());
}

#[test]
fn poison_reported_in_any_metadata_is_repaired_at_once() {
    let mut fs = mkfs(16, None);
    let f = fs.create(fs.root(), b"f").unwrap();
    fs.write(f, 0, b"data").unwrap();
    let g = fs.superblock().geo;
    for what in [
        MetaKind::Superblock,
        MetaKind::Header(0),
        MetaKind::Header(1),
        MetaKind::BackupSuperblock,
        MetaKind::Body(0),
        MetaKind::Body(1),
        MetaKind::Log(0),
        MetaKind::Log(1),
    ] {
        // Where it is now (every repair of a body or log moves them all).
        let st = fs.log_status();
        let off = match what {
            MetaKind::Superblock => 0,
            MetaKind::Header(c) => g.header_block(c) * BS,
            MetaKind::BackupSuperblock => g.backup_sb_block() * BS,
            MetaKind::Body(c) => st.body[usize::from(c)].pblk * BS + 128,
            MetaKind::Log(c) => st.log[usize::from(c)].pblk * BS + 64,
        };
        // As the memory-failure path does: the device learns the poison,
        // then the holder (the file system) is told.
        poison(&mut fs, off, 64);
        let rep = fs.mark_bad(off, 64).unwrap();
        assert!(rep.owners.iter().any(|o| o.owner == RmapOwner::Metadata(what)), "{what}: {:?}", rep.owners);
        assert_eq!(rep.rewritten, vec![what]);
        assert!(!fs.is_read_only(), "{what}");
        assert!(!fs.pmem().is_poisoned(0, 8192) || !matches!(what, MetaKind::Superblock | MetaKind::Header(0)));
        let c = fs.fsck().unwrap();
        assert!(c.is_clean(), "{what}: {c:?}");
        fs.write(f, 0, b"more data").unwrap();
    }
    let fs = FileSystem::mount(fs.into_pmem()).unwrap();
    assert!(fs.mount_info().damage.is_empty(), "{:?}", fs.mount_info());
    assert_eq!(read_all(&fs, fs.resolve("/f").unwrap()), b"more data");
}

#[test]
fn a_read_returns_the_bytes_before_the_poison_then_fails_there() {
    let mut fs = mkfs(16, None);
    let f = fs.create(fs.root(), b"f").unwrap();
    let data: Vec<u8> = (0..3 * BS as usize).map(|i| (i % 253) as u8).collect();
    fs.write(f, 0, &data).unwrap();
    let phys = fs.bmap(f, 0).unwrap().phys.unwrap();
    // 4,000 good bytes, then poison (one cache line) in the first block.
    fs.pmem_mut().inject_poison(phys + 4000, 64);
    let mut buf = vec![0u8; data.len()];
    assert_eq!(fs.read(f, 0, &mut buf), Ok(4000));
    assert_eq!(buf[..4000], data[..4000]);
    assert_eq!(fs.read(f, 4000, &mut buf), Err(FsError::Poisoned { offset: phys + 4000 }));
    assert_eq!(fs.read(f, 4030, &mut buf), Err(FsError::Poisoned { offset: phys + 4030 }));
    // Past the poison the file reads on, up to EOF.
    assert_eq!(fs.read(f, 4064, &mut buf), Ok(data.len() - 4064));
    assert_eq!(buf[..data.len() - 4064], data[4064..]);
    // Holes before the poison count as good bytes.
    let h = fs.create(fs.root(), b"h").unwrap();
    fs.write(h, 2 * BS, &[9u8; 100]).unwrap();
    let hp = fs.bmap(h, 2 * BS).unwrap().phys.unwrap();
    fs.pmem_mut().inject_poison(hp + 50, 1);
    assert_eq!(fs.read(h, 0, &mut buf), Ok(2 * BS as usize + 50));
    assert!(buf[..2 * BS as usize].iter().all(|&b| b == 0));
}

#[test]
fn dedupe_of_a_poisoned_range_is_eio_and_shares_nothing() {
    let mut fs = mkfs(16, None);
    let r = fs.root();
    let a = fs.create(r, b"a").unwrap();
    let b = fs.create(r, b"b").unwrap();
    fs.write(a, 0, &[3u8; 2 * BS as usize]).unwrap();
    fs.write(b, 0, &[3u8; 2 * BS as usize]).unwrap();
    let pb = fs.bmap(b, BS).unwrap();
    let poisoned = pb.phys.unwrap() + (BS - pb.file_offset) + 128;
    fs.pmem_mut().inject_poison(poisoned, 64);
    // Not "differs", not shared: the comparison could not see every byte.
    assert_eq!(fs.dedupe_range(a, 0, b, 0, 2 * BS), Err(FsError::Poisoned { offset: poisoned }));
    assert!(!fs.bmap(b, 0).unwrap().shared);
    assert!(!fs.bmap(a, 0).unwrap().shared);
    fs.fsck().unwrap();
    // The good first blocks still dedupe.
    fs.dedupe_range(a, 0, b, 0, BS).unwrap();
    assert!(fs.bmap(b, 0).unwrap().shared);
}

/// The persistent memory-failure counter: durable through the log (a
/// remount without unmount replays it) and through a checkpoint (unmount,
/// mount); an image that never had an event has no counter section, as
/// every earlier version 2 image, and mounts with 0.
#[test]
fn the_memory_failure_counter_survives_the_log_and_checkpoints() {
    let image = mkfs(16, None).unmount().unwrap();
    let fs = FileSystem::mount(image).unwrap();
    assert_eq!(fs.memory_failures(), 0);
    let mut fs = FileSystem::mount(fs.unmount().unwrap()).unwrap();
    fs.count_memory_failure().unwrap();
    fs.count_memory_failure().unwrap();
    assert_eq!(fs.memory_failures(), 2);
    // From the log: a second mount of the same bytes, no checkpoint.
    let replayed = FileSystem::mount(fs.pmem().clone()).unwrap();
    assert_eq!(replayed.memory_failures(), 2);
    // From the checkpoint body (section 9).
    let image = fs.unmount().unwrap();
    let mut fs = FileSystem::mount(image).unwrap();
    assert_eq!(fs.memory_failures(), 2);
    fs.count_memory_failure().unwrap();
    let fs = FileSystem::mount(fs.unmount().unwrap()).unwrap();
    assert_eq!(fs.memory_failures(), 3);
    assert!(fs.fsck().unwrap().is_clean());
}
