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
    let opts = MkfsOptions { uuid: [9; 16], ckpt_blocks: None, log_blocks };
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
    assert_eq!(fs.write(g, 0, &data), Err(FsError::Poisoned { offset: second + 100 }));
    // Nothing committed: /g still shares /f's block and is one block long.
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
    assert_eq!(fs.write(f, BS + 4, &[5u8; 2 * BS as usize]), Err(FsError::Poisoned { offset: second + 8 }));
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

#[test]
fn a_log_record_that_cannot_be_written_shuts_down_and_is_never_durable() {
    let mut fs = mkfs(16, None);
    let r = fs.root();
    let a = fs.create(r, b"a").unwrap();
    fs.write(a, 0, b"kept").unwrap();
    let geo = fs.superblock().geo;
    // After unmount the log is empty: the next record goes to its start.
    let mut pm = fs.unmount().unwrap();
    pm.inject_poison(geo.log_start * BS, geo.log_blocks * BS);
    let mut fs = FileSystem::mount(pm).unwrap();
    let r = fs.root();
    assert_eq!(fs.create(r, b"b"), Err(FsError::Poisoned { offset: geo.log_start * BS }));
    assert!(fs.is_read_only());
    assert_eq!(fs.mount_info().degraded, Some(FsError::Poisoned { offset: geo.log_start * BS }));
    assert_eq!(fs.lookup(r, b"b"), Err(FsError::NotFound), "memory shows only what is durable");
    assert_eq!(fs.create(r, b"c"), Err(FsError::ReadOnly));
    fs.fsck().unwrap();
    // After a crash the media hold exactly the committed state.
    let fs = FileSystem::mount(fs.into_pmem()).unwrap();
    assert_eq!(fs.lookup(fs.root(), b"b"), Err(FsError::NotFound));
    assert_eq!(read_all(&fs, fs.resolve("/a").unwrap()), b"kept");
}

#[test]
fn a_checkpoint_that_cannot_be_written_shuts_down_read_only() {
    // A one-block log fills after a few records; the commit then writes a
    // checkpoint into the other slot, whose body is poisoned.
    let mut fs = mkfs(16, Some(1));
    let r = fs.root();
    fs.create(r, b"first").unwrap();
    let geo = fs.superblock().geo;
    let mut pm = fs.unmount().unwrap(); // generation 2, in slot 1
    let body = geo.ckpt_slot(0) * BS + BS;
    pm.inject_poison(body, BS);
    let mut fs = FileSystem::mount(pm).unwrap();
    let r = fs.root();
    let mut made = 0;
    let err = loop {
        let name = format!("file-with-a-long-name-{made:04}");
        match fs.create(r, name.as_bytes()) {
            Ok(_) => made += 1,
            Err(e) => break e,
        }
        assert!(made < 200, "the log never filled");
    };
    assert!(made > 0, "some records fit in the log");
    assert_eq!(err, FsError::Poisoned { offset: body });
    assert!(fs.is_read_only());
    let last = format!("file-with-a-long-name-{made:04}");
    assert_eq!(fs.lookup(r, last.as_bytes()), Err(FsError::NotFound));
    fs.fsck().unwrap();
    // Everything committed before survives a crash; the failed one does
    // not. Mount replays the log; its checkpoint hits the poison again, so
    // the replayed state is mounted read-only, saying why.
    let fs = FileSystem::mount(fs.into_pmem()).unwrap();
    assert!(fs.mount_info().replayed > 0);
    assert!(fs.is_read_only());
    assert_eq!(fs.mount_info().degraded, Some(FsError::Poisoned { offset: body }));
    assert_eq!(fs.readdir(fs.root(), None, usize::MAX).unwrap().len(), made + 1);
    assert_eq!(fs.lookup(fs.root(), last.as_bytes()), Err(FsError::NotFound));
}

#[test]
fn an_explicit_checkpoint_into_poison_shuts_down_read_only() {
    let fs = mkfs(16, None);
    let geo = fs.superblock().geo;
    let mut pm = fs.unmount().unwrap(); // generation 2, in slot 1
    pm.inject_poison(geo.ckpt_slot(0) * BS, 64);
    let mut fs = FileSystem::mount(pm).unwrap();
    assert!(!fs.is_read_only());
    fs.create(fs.root(), b"x").unwrap();
    assert_eq!(fs.checkpoint(), Err(FsError::Poisoned { offset: geo.ckpt_slot(0) * BS }));
    assert!(fs.is_read_only());
    // The log still holds the create: nothing was lost.
    let fs = FileSystem::mount(fs.into_pmem()).unwrap();
    assert!(fs.lookup(fs.root(), b"x").is_ok());
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
