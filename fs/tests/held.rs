//! Held files (the kernel's open files): unlinked-but-open files keep their
//! data until the hold ends, survive checkpoints as orphans, and are
//! deleted by the next read-write mount after a crash. Also `parent` and
//! `name_in`, which path resolution and `getcwd` use, and `range_shared`,
//! which tells the kernel when a write moves blocks.

use fsdax_fs::*;

fn fresh(mb: usize) -> FileSystem<MemPmem> {
    FileSystem::mkfs(MemPmem::new(mb << 20), MkfsOptions { uuid: [9; 16], ..Default::default() }).unwrap()
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn an_unlinked_held_file_keeps_its_data_until_released() {
    let mut fs = fresh(16);
    let r = fs.root();
    let f = fs.create(r, b"open").unwrap();
    let bytes = data(100_000, 1);
    assert_eq!(fs.write(f, 0, &bytes).unwrap(), bytes.len());
    let free_before = fs.statfs().free_blocks;
    fs.hold(f).unwrap();
    assert!(fs.is_held(f));
    fs.unlink(r, b"open").unwrap();
    assert_eq!(fs.lookup(r, b"open"), Err(FsError::NotFound));
    // The data is still there, and still writable.
    let st = fs.stat(f).unwrap();
    assert_eq!((st.nlink, st.size), (0, 100_000));
    let mut back = vec![0u8; bytes.len()];
    assert_eq!(fs.read(f, 0, &mut back).unwrap(), bytes.len());
    assert_eq!(back, bytes);
    assert_eq!(fs.write(f, 100_000, b"more").unwrap(), 4);
    assert_eq!(fs.statfs().free_blocks, free_before, "no block was freed while held");
    // fsck sees an orphan, which is not damage.
    let rep = fs.fsck().unwrap();
    assert_eq!(rep.orphans, 1);
    // The last close deletes it and gives the space back.
    assert!(fs.release(f).unwrap());
    assert!(!fs.is_held(f));
    assert_eq!(fs.stat(f), Err(FsError::NotFound));
    assert!(fs.statfs().free_blocks > free_before);
    let rep = fs.fsck().unwrap();
    assert_eq!(rep.orphans, 0);
    // Releasing again (or what was never held) does nothing.
    assert!(!fs.release(f).unwrap());
}

#[test]
fn a_held_file_that_keeps_its_name_is_not_deleted_at_release() {
    let mut fs = fresh(16);
    let r = fs.root();
    let f = fs.create(r, b"named").unwrap();
    fs.hold(f).unwrap();
    fs.hold(f).unwrap();
    assert!(!fs.release(f).unwrap());
    assert_eq!(fs.lookup(r, b"named"), Ok(f));
    fs.fsck().unwrap();
    // A directory cannot be held; a missing inode neither.
    let d = fs.mkdir(r, b"dir").unwrap();
    assert_eq!(fs.hold(d), Err(FsError::IsDir));
    assert_eq!(fs.hold(999_999), Err(FsError::NotFound));
}

#[test]
fn rename_over_a_held_file_keeps_the_replaced_file_until_released() {
    let mut fs = fresh(16);
    let r = fs.root();
    let a = fs.create(r, b"a").unwrap();
    let b = fs.create(r, b"b").unwrap();
    fs.write(a, 0, b"new contents").unwrap();
    fs.write(b, 0, b"old contents").unwrap();
    fs.hold(b).unwrap();
    fs.rename(r, b"a", r, b"b").unwrap();
    assert_eq!(fs.lookup(r, b"b"), Ok(a));
    let mut buf = [0u8; 12];
    assert_eq!(fs.read(b, 0, &mut buf).unwrap(), 12);
    assert_eq!(&buf, b"old contents");
    assert!(fs.release(b).unwrap());
    assert_eq!(fs.stat(b), Err(FsError::NotFound));
    let rep = fs.fsck().unwrap();
    assert!(rep.is_clean(), "{rep:?}");
}

#[test]
fn a_held_orphan_survives_a_checkpoint_and_the_next_mount_deletes_it() {
    let mut fs = fresh(16);
    let r = fs.root();
    let keep = fs.create(r, b"keep").unwrap();
    fs.write(keep, 0, b"kept").unwrap();
    let f = fs.create(r, b"gone").unwrap();
    fs.write(f, 0, &data(50_000, 2)).unwrap();
    let free_named = fs.statfs().free_blocks;
    fs.hold(f).unwrap();
    fs.unlink(r, b"gone").unwrap();
    // A checkpoint while the orphan exists (the log filled, or a sync).
    fs.checkpoint().unwrap();
    assert_eq!(fs.stat(f).unwrap().nlink, 0);
    // Crash while it is open: the next mount deletes it, nothing else.
    let fs = FileSystem::mount(fs.into_pmem()).unwrap();
    assert_eq!(fs.mount_info().orphans_deleted, 1);
    assert_eq!(fs.stat(f), Err(FsError::NotFound));
    assert!(fs.statfs().free_blocks > free_named);
    let mut buf = [0u8; 4];
    assert_eq!(fs.read(keep, 0, &mut buf).unwrap(), 4);
    assert_eq!(&buf, b"kept");
    assert!(fs.fsck().unwrap().is_clean());
}

#[test]
fn a_held_orphan_is_not_deleted_by_a_live_repair() {
    let mut fs = fresh(16);
    let r = fs.root();
    let f = fs.create(r, b"f").unwrap();
    fs.write(f, 0, b"still here").unwrap();
    fs.hold(f).unwrap();
    fs.unlink(r, b"f").unwrap();
    fs.repair().unwrap();
    let mut buf = [0u8; 10];
    assert_eq!(fs.read(f, 0, &mut buf).unwrap(), 10);
    assert_eq!(&buf, b"still here");
    assert!(fs.release(f).unwrap());
}

#[test]
fn parent_and_name_in_walk_up_the_tree() {
    let mut fs = fresh(16);
    let r = fs.root();
    let a = fs.mkdir(r, b"a").unwrap();
    let b = fs.mkdir(a, b"b").unwrap();
    let f = fs.create(b, b"file").unwrap();
    assert_eq!(fs.parent(b), Ok(a));
    assert_eq!(fs.parent(a), Ok(r));
    assert_eq!(fs.parent(r), Ok(r), "the root is its own parent");
    assert_eq!(fs.parent(f), Err(FsError::NotDir));
    assert_eq!(fs.name_in(a, b).unwrap(), b"b");
    assert_eq!(fs.name_in(r, a).unwrap(), b"a");
    assert_eq!(fs.name_in(r, b), Err(FsError::NotFound));
    // A renamed directory has its new parent.
    fs.rename(a, b"b", r, b"moved").unwrap();
    assert_eq!(fs.parent(b), Ok(r));
    assert_eq!(fs.name_in(r, b).unwrap(), b"moved");
}

#[test]
fn range_shared_finds_shared_blocks_inside_the_range() {
    let mut fs = fresh(16);
    let r = fs.root();
    let a = fs.create(r, b"a").unwrap();
    let b = fs.create(r, b"b").unwrap();
    fs.write(a, 0, &data(16 * 4096, 3)).unwrap();
    fs.write(b, 0, &data(16 * 4096, 4)).unwrap();
    assert!(!fs.range_shared(b, 0, 16 * 4096).unwrap());
    // Share a's blocks 4..8 at b's blocks 8..12.
    fs.reflink_range(a, 4 * 4096, b, 8 * 4096, 4 * 4096).unwrap();
    assert!(!fs.range_shared(b, 0, 8 * 4096).unwrap());
    assert!(fs.range_shared(b, 8 * 4096 - 1, 2).unwrap());
    assert!(fs.range_shared(b, 11 * 4096 + 4095, 1).unwrap());
    assert!(!fs.range_shared(b, 12 * 4096, 4 * 4096).unwrap());
    assert!(fs.range_shared(a, 0, 16 * 4096).unwrap());
    assert!(!fs.range_shared(a, 0, 0).unwrap());
    // Past EOF and in holes: nothing shared.
    assert!(!fs.range_shared(b, 1 << 30, 4096).unwrap());
    // A write unshares: nothing shared there afterwards.
    fs.write(b, 8 * 4096, &data(4 * 4096, 5)).unwrap();
    assert!(!fs.range_shared(b, 0, 16 * 4096).unwrap());
    assert!(!fs.range_shared(a, 0, 16 * 4096).unwrap());
}
