//! Direct tests of the operations and their POSIX semantics.

use fsdax_fs::*;

fn fresh(mb: usize) -> FileSystem<MemPmem> {
    FileSystem::mkfs(MemPmem::new(mb << 20), MkfsOptions { uuid: [7; 16], ..Default::default() }).unwrap()
}

fn read_all(fs: &FileSystem<MemPmem>, ino: Ino) -> Vec<u8> {
    let n = fs.stat(ino).unwrap().size as usize;
    let mut b = vec![0u8; n];
    assert_eq!(fs.read(ino, 0, &mut b).unwrap(), n);
    b
}

#[test]
fn create_write_read_remount() {
    let mut fs = fresh(16);
    let r = fs.root();
    let d = fs.mkdir(r, b"dir").unwrap();
    let f = fs.create(d, b"file").unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(fs.write(f, 0, &data).unwrap(), data.len());
    assert_eq!(fs.append(f, b"tail").unwrap(), 4);
    assert_eq!(fs.stat(f).unwrap().size, 10_004);
    fs.fsck().unwrap();
    // Crash without unmount: the log must replay.
    let pm = fs.into_pmem();
    let fs = FileSystem::mount(pm).unwrap();
    assert!(fs.mount_info().replayed > 0);
    let f = fs.resolve("/dir/file").unwrap();
    let got = read_all(&fs, f);
    assert_eq!(&got[..10_000], &data[..]);
    assert_eq!(&got[10_000..], b"tail");
    fs.fsck().unwrap();
    let pm = fs.unmount().unwrap();
    let fs = FileSystem::mount(pm).unwrap();
    assert_eq!(fs.mount_info().replayed, 0);
    assert_eq!(read_all(&fs, f).len(), 10_004);
    fs.fsck().unwrap();
}

#[test]
fn sparse_write_truncate_punch() {
    let mut fs = fresh(16);
    let f = fs.create(fs.root(), b"s").unwrap();
    fs.write(f, 100_000, b"xyz").unwrap();
    let b = read_all(&fs, f);
    assert!(b[..100_000].iter().all(|&c| c == 0));
    assert_eq!(&b[100_000..], b"xyz");
    assert_eq!(fs.stat(f).unwrap().blocks, 1);
    fs.truncate(f, 100_001).unwrap();
    fs.truncate(f, 200_000).unwrap();
    let b = read_all(&fs, f);
    assert_eq!(b[100_000], b'x');
    assert!(b[100_001..].iter().all(|&c| c == 0), "bytes past the old EOF must read as zero");
    fs.write(f, 0, &[1u8; 20_000]).unwrap();
    fs.fallocate(f, Falloc::PunchHole, 100, 12_000).unwrap();
    let b = read_all(&fs, f);
    assert!(b[..100].iter().all(|&c| c == 1));
    assert!(b[100..12_100].iter().all(|&c| c == 0));
    assert!(b[12_100..20_000].iter().all(|&c| c == 1));
    fs.fallocate(f, Falloc::Allocate { keep_size: false }, 0, 300_000).unwrap();
    assert_eq!(fs.stat(f).unwrap().size, 300_000);
    assert_eq!(fs.stat(f).unwrap().blocks, 300_000u64.div_ceil(4096));
    fs.fsck().unwrap();
}

#[test]
fn namespace_semantics() {
    let mut fs = fresh(16);
    let r = fs.root();
    let a = fs.mkdir(r, b"a").unwrap();
    let b = fs.mkdir(a, b"b").unwrap();
    assert_eq!(fs.create(r, b"a"), Err(FsError::Exists));
    assert_eq!(fs.rmdir(r, b"a"), Err(FsError::NotEmpty));
    assert_eq!(fs.rename(r, b"a", b, b"x"), Err(FsError::Invalid), "into own subtree");
    let f = fs.create(r, b"f").unwrap();
    fs.write(f, 0, b"one").unwrap();
    let g = fs.create(a, b"g").unwrap();
    fs.write(g, 0, b"two").unwrap();
    // Replacing rename frees the target.
    fs.rename(r, b"f", a, b"g").unwrap();
    assert_eq!(fs.lookup(a, b"g").unwrap(), f);
    assert_eq!(fs.stat(g), Err(FsError::NotFound));
    assert_eq!(fs.lookup(r, b"f"), Err(FsError::NotFound));
    assert_eq!(fs.rename(a, b"g", a, b"b"), Err(FsError::IsDir));
    assert_eq!(fs.unlink(a, b"b"), Err(FsError::IsDir));
    assert_eq!(fs.stat(a).unwrap().nlink, 3);
    fs.rename(a, b"b", r, b"b2").unwrap();
    assert_eq!(fs.stat(a).unwrap().nlink, 2);
    let names: Vec<Vec<u8>> = fs.readdir(r, None, 100).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, vec![b"a".to_vec(), b"b2".to_vec()]);
    assert_eq!(fs.readdir(r, Some(b"a"), 100).unwrap().len(), 1);
    assert_eq!(fs.create(r, &[b'x'; 256]), Err(FsError::NameTooLong));
    assert_eq!(fs.create(r, b"a/b"), Err(FsError::Invalid));
    fs.unlink(a, b"g").unwrap();
    fs.rmdir(r, b"b2").unwrap();
    fs.fsck().unwrap();
    let before = fs.statfs().free_blocks;
    assert_eq!(before + fs.log_status().meta_blocks, fs.statfs().data_blocks);
}

#[test]
fn reflink_cow_and_rmap() {
    let mut fs = fresh(32);
    let r = fs.root();
    let a = fs.create(r, b"a").unwrap();
    let data: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i / 4096) as u8).collect();
    fs.write(a, 0, &data).unwrap();
    let free0 = fs.statfs().free_blocks;
    let b = fs.create(r, b"b").unwrap();
    fs.reflink(a, b).unwrap();
    assert_eq!(fs.statfs().free_blocks, free0, "reflink must not copy");
    assert_eq!(read_all(&fs, b), data);
    let m = fs.bmap(b, 5000).unwrap();
    assert!(m.shared);
    // Every owner of a shared block is found.
    let owners = fs.rmap_query(m.phys.unwrap() + 4096, 1);
    let inos: Vec<Ino> = owners
        .iter()
        .filter_map(|o| match o.owner {
            RmapOwner::File { ino, .. } => Some(ino),
            _ => None,
        })
        .collect();
    assert_eq!(inos.len(), 2);
    assert!(inos.contains(&a) && inos.contains(&b));
    assert!(owners.iter().all(|o| o.flags & RMAP_SHARED != 0));
    // CoW write of 10 bytes in the middle of a block: only b changes.
    fs.write(b, 4096 + 100, b"0123456789").unwrap();
    assert_eq!(read_all(&fs, a), data);
    let mut exp = data.clone();
    exp[4196..4206].copy_from_slice(b"0123456789");
    assert_eq!(read_all(&fs, b), exp);
    assert!(!fs.bmap(b, 4096).unwrap().shared);
    assert!(fs.bmap(b, 0).unwrap().shared);
    assert_eq!(fs.statfs().free_blocks, free0 - 1);
    // Range clone into the middle of another file.
    let c = fs.create(r, b"c").unwrap();
    fs.write(c, 0, &[9u8; 3 * 4096]).unwrap();
    fs.reflink_range(a, 8192, c, 4096, 4096).unwrap();
    let got = read_all(&fs, c);
    assert!(got[..4096].iter().all(|&x| x == 9));
    assert_eq!(&got[4096..8192], &data[8192..12288]);
    assert!(got[8192..].iter().all(|&x| x == 9));
    assert_eq!(fs.reflink_range(a, 100, c, 0, 4096), Err(FsError::Invalid));
    // Metadata regions are owners too.
    let sb = fs.rmap_query(0, 1);
    assert_eq!(sb[0].owner, RmapOwner::Metadata(MetaKind::Superblock));
    // Unlinking a shared file keeps the other intact and frees nothing shared.
    fs.unlink(r, b"a").unwrap();
    assert_eq!(read_all(&fs, b), exp);
    fs.fsck().unwrap();
    fs.unlink(r, b"b").unwrap();
    fs.unlink(r, b"c").unwrap();
    assert_eq!(fs.statfs().free_blocks + fs.log_status().meta_blocks, fs.statfs().data_blocks);
    fs.fsck().unwrap();
}

#[test]
fn dedupe_compares_then_shares() {
    let mut fs = fresh(16);
    let r = fs.root();
    let a = fs.create(r, b"a").unwrap();
    let b = fs.create(r, b"b").unwrap();
    fs.write(a, 0, &[5u8; 8192]).unwrap();
    fs.write(b, 0, &[5u8; 8192]).unwrap();
    let free = fs.statfs().free_blocks;
    fs.dedupe_range(a, 0, b, 0, 8192).unwrap();
    assert_eq!(fs.statfs().free_blocks, free + 2);
    fs.write(b, 0, b"z").unwrap();
    assert_eq!(fs.dedupe_range(a, 0, b, 0, 4096), Err(FsError::Differs));
    fs.fsck().unwrap();
}

#[test]
fn huge_aligned_extents_for_large_files() {
    let mut fs = fresh(64);
    let r = fs.root();
    // Age the file system with small files first.
    for i in 0..50u32 {
        let f = fs.create(r, format!("small{i}").as_bytes()).unwrap();
        fs.write(f, 0, &[1u8; 5000]).unwrap();
    }
    for i in (0..50u32).step_by(2) {
        fs.unlink(r, format!("small{i}").as_bytes()).unwrap();
    }
    let big = fs.create(r, b"big").unwrap();
    fs.write(big, 0, &vec![3u8; 8 << 20]).unwrap();
    for off in (0..(8u64 << 20)).step_by(2 << 20) {
        let m = fs.bmap(big, off).unwrap();
        assert_eq!(m.file_offset, off);
        assert_eq!(m.len, 2 << 20, "2 MiB extent at {off}");
        assert_eq!(m.phys.unwrap() % (2 << 20), 0, "2 MiB aligned at {off}");
    }
    fs.fsck().unwrap();
}

#[test]
fn poison_read_and_bad_blocks() {
    let mut fs = fresh(16);
    let f = fs.create(fs.root(), b"f").unwrap();
    fs.write(f, 0, &[1u8; 8192]).unwrap();
    let phys = fs.bmap(f, 4096).unwrap().phys.unwrap() + 4096;
    let mut pm = fs.unmount().unwrap();
    pm.inject_poison(phys + 10, 1);
    let mut fs = FileSystem::mount(pm).unwrap();
    let mut buf = [0u8; 100];
    // A read stops short before the poison; the next one fails there.
    assert_eq!(fs.read(f, 4096, &mut buf), Ok(10));
    assert_eq!(fs.read(f, 4096 + 10, &mut buf), Err(FsError::Poisoned { offset: phys + 10 }));
    fs.read(f, 0, &mut buf).unwrap();
    let owners = fs.mark_bad(phys, 4096).unwrap();
    // The record covers the whole extent: file offset 0 at phys - 4096.
    assert!(owners.owners.iter().any(|o| o.owner == RmapOwner::File { ino: f, offset: 0 }
        && o.phys == phys - 4096
        && o.len == 8192
        && o.flags & RMAP_BAD != 0));
    assert_eq!(fs.fsck().unwrap().poisoned_blocks, 1);
    // Freed bad blocks are not reused; the list survives remount.
    fs.unlink(fs.root(), b"f").unwrap();
    let pm = fs.unmount().unwrap();
    let mut fs = FileSystem::mount(pm).unwrap();
    assert_eq!(fs.bad_blocks(), vec![(phys, 4096)]);
    let meta = fs.log_status().meta_blocks;
    assert_eq!(fs.statfs().free_blocks + meta, fs.statfs().data_blocks - 1);
    fs.clear_bad(phys, 4096).unwrap();
    assert_eq!(fs.statfs().free_blocks + meta, fs.statfs().data_blocks);
    fs.fsck().unwrap();
}

#[test]
fn a_damaged_copy_is_read_from_its_replica_and_rewritten() {
    let mut fs = fresh(16);
    let f = fs.create(fs.root(), b"f").unwrap();
    fs.write(f, 0, b"kept").unwrap();
    let st = fs.log_status();
    let bytes = fs.unmount().unwrap().into_bytes();
    let body0 = fs_body(&bytes, 0);
    // One body copy damaged: the other is read, and a read-write mount
    // rewrites both.
    let mut b = bytes.clone();
    b[body0 + 100] ^= 0x40;
    let fs = FileSystem::mount(MemPmem::from_bytes(b)).unwrap();
    assert!(!fs.is_read_only());
    assert!(fs.mount_info().damage.body[0] && fs.mount_info().repaired);
    assert!(fs.fsck().unwrap().is_clean());
    assert_eq!(read_all(&fs, fs.resolve("/f").unwrap()), b"kept");
    // Read-only, the damage is reported, not hidden.
    let mut b = bytes.clone();
    b[body0 + 100] ^= 0x40;
    let fs =
        FileSystem::mount_with(MemPmem::from_bytes(b), MountOptions { read_only: true, ..Default::default() }).unwrap();
    assert!(fs.fsck().unwrap().damage.body[0]);
    // Both body copies damaged: nothing to mount from (no older state).
    let mut b = bytes.clone();
    b[body0 + 100] ^= 0x40;
    b[fs_body(&bytes, 1) + 100] ^= 0x40;
    assert!(FileSystem::mount(MemPmem::from_bytes(b)).is_err());
    // A bad primary superblock: the backup is used, read-write, and the
    // primary is rewritten.
    let mut b = bytes.clone();
    b[20] ^= 1;
    let fs = FileSystem::mount(MemPmem::from_bytes(b)).unwrap();
    assert!(fs.mount_info().used_backup_superblock && !fs.is_read_only());
    let b = fs.unmount().unwrap().into_bytes();
    assert_eq!(b[..64], bytes[..64], "primary superblock rewritten");
    // A destroyed header copy: the other names the checkpoint.
    let mut b = bytes.clone();
    b[4096 + 30] ^= 0xff;
    let fs = FileSystem::mount(MemPmem::from_bytes(b)).unwrap();
    assert!(!fs.is_read_only() && fs.mount_info().damage.header[0]);
    assert!(fs.fsck().unwrap().is_clean());
    assert!(st.body_len > 0);
}

/// Byte offset of body copy `c`'s first extent (its link line) in an image.
fn fs_body(bytes: &[u8], c: usize) -> usize {
    let sb = fsdax_fs::format::Superblock::decode(&bytes[..4096]).unwrap();
    let h = fsdax_fs::format::Header::decode(&bytes[4096..4096 + 256], &sb.uuid).unwrap();
    h.body[c].pblk as usize * 4096
}

#[test]
fn bmap_write_unshares_and_allocates_for_dax_faults() {
    let mut fs = fresh(16);
    let r = fs.root();
    let a = fs.create(r, b"a").unwrap();
    fs.write(a, 0, &[4u8; 3 * 4096]).unwrap();
    let b = fs.create(r, b"b").unwrap();
    fs.reflink(a, b).unwrap();
    assert!(fs.bmap(b, 4096).unwrap().shared);
    let m = fs.bmap_write(b, 4096, 4096).unwrap();
    assert!(!m.shared && m.phys.is_some());
    assert_ne!(m.phys, fs.bmap(a, 4096).unwrap().phys.map(|p| p + 4096));
    assert_eq!(read_all(&fs, b), vec![4u8; 3 * 4096], "unsharing keeps the contents");
    // A hole becomes a zeroed block; the size does not change.
    fs.truncate(b, 40_000).unwrap();
    assert_eq!(fs.bmap(b, 20_000).unwrap().phys, None);
    let m = fs.bmap_write(b, 20_000, 1).unwrap();
    assert!(m.phys.is_some());
    assert_eq!(fs.stat(b).unwrap().size, 40_000);
    assert!(read_all(&fs, b)[12_288..].iter().all(|&x| x == 0));
    fs.fsck().unwrap();
}

/// Truncating into the middle of a block zeroes the rest of that block on
/// the media at once (a DAX mapping of the page shows those bytes), in
/// place when the block is the file's own and into a copy when it is
/// shared, which keeps the other owner's bytes.
#[test]
fn truncate_zeroes_the_partial_last_block_on_the_media() {
    let mut fs = fresh(16);
    let r = fs.root();
    let f = fs.create(r, b"f").unwrap();
    fs.write(f, 0, &[0xabu8; 3 * 4096]).unwrap();
    fs.truncate(f, 4096 + 100).unwrap();
    let m = fs.bmap(f, 4096).unwrap();
    let phys = m.phys.unwrap() + (4096 - m.file_offset);
    let block = &fs.pmem().bytes()[phys as usize..phys as usize + 4096];
    assert!(block[..100].iter().all(|&b| b == 0xab), "the bytes before EOF stay");
    assert!(block[100..].iter().all(|&b| b == 0), "the bytes past EOF are zero on the media");
    // A shared last block: the truncated file gets a zeroed copy, the other owner keeps its bytes.
    let g = fs.create(r, b"g").unwrap();
    fs.write(g, 0, &[0x5au8; 2 * 4096]).unwrap();
    let h = fs.create(r, b"h").unwrap();
    fs.reflink(g, h).unwrap();
    fs.truncate(h, 4096 + 7).unwrap();
    assert!(!fs.bmap(h, 4096).unwrap().shared);
    let mh = fs.bmap(h, 4096).unwrap();
    let ph = (mh.phys.unwrap() + (4096 - mh.file_offset)) as usize;
    assert!(fs.pmem().bytes()[ph + 7..ph + 4096].iter().all(|&b| b == 0));
    assert_eq!(&fs.pmem().bytes()[ph..ph + 7], &[0x5a; 7]);
    assert_eq!(read_all(&fs, g), vec![0x5au8; 2 * 4096], "the other owner is unchanged");
    // Truncating to a block boundary zeroes nothing and frees the rest.
    fs.truncate(f, 4096).unwrap();
    assert_eq!(fs.stat(f).unwrap().blocks, 1);
    fs.fsck().unwrap();
}

#[test]
fn extreme_arguments_are_errors_not_panics() {
    let mut fs = fresh(16);
    let r = fs.root();
    let f = fs.create(r, b"f").unwrap();
    fs.write(f, 0, b"abc").unwrap();
    let mut buf = [0u8; 16];
    for off in [u64::MAX, u64::MAX - 1, MAX_FILE_SIZE, MAX_FILE_SIZE - 1, 1 << 63] {
        let size = fs.stat(f).unwrap().size;
        let n = fs.read(f, off, &mut buf).unwrap() as u64;
        assert_eq!(n, size.saturating_sub(off).min(16));
        let _ = fs.bmap(f, off);
        assert!(fs.write(f, off, b"x").is_err() || off == MAX_FILE_SIZE - 1);
        let _ = fs.truncate(f, off);
        let _ = fs.fallocate(f, Falloc::PunchHole, off, u64::MAX);
        let _ = fs.fallocate(f, Falloc::Allocate { keep_size: true }, off, 4096);
        let _ = fs.reflink_range(f, 0, f, off & !4095, 4096);
        let _ = fs.dedupe_range(f, 0, f, off & !4095, 4096);
        let _ = fs.bmap_write(f, off, u64::MAX);
        let _ = fs.rmap_query(off, u64::MAX);
        let _ = fs.mark_bad(off, u64::MAX);
        let _ = fs.clear_bad(off, 1);
    }
    assert_eq!(fs.stat(999), Err(FsError::NotFound));
    assert_eq!(fs.read(r, 0, &mut buf), Err(FsError::IsDir));
    assert_eq!(fs.lookup(f, b"x"), Err(FsError::NotDir));
    assert_eq!(fs.rename(r, b"f", r, b""), Err(FsError::Invalid));
    fs.truncate(f, 3).unwrap();
    fs.fsck().unwrap();
}

#[test]
fn both_header_copies_destroyed_is_refused_not_guessed() {
    let fs = fresh(16);
    let mut bytes = fs.unmount().unwrap().into_bytes();
    let total = bytes.len();
    bytes[4096 + 30] ^= 0xff;
    bytes[total - 2 * 4096 + 30] ^= 0xff;
    assert!(matches!(FileSystem::mount(MemPmem::from_bytes(bytes)), Err(FsError::Corrupt(_))));
}

#[test]
fn pmd_write_fault_on_shared_extent_gets_a_new_aligned_2m_extent() {
    let mut fs = fresh(32);
    let r = fs.root();
    let a = fs.create(r, b"a").unwrap();
    let data: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 253) as u8).collect();
    fs.write(a, 0, &data).unwrap();
    let b = fs.create(r, b"b").unwrap();
    fs.reflink(a, b).unwrap();
    // A 4 KiB write into the first 2 MiB of b: block-granular CoW.
    fs.write(b, 4096, &[0xEE; 4096]).unwrap();
    // A PMD write fault on the second 2 MiB: the whole page is unshared into
    // a new aligned 2 MiB extent, so it can still be mapped with a PMD.
    let m = fs.bmap_write(b, 2 << 20, 2 << 20).unwrap();
    assert_eq!((m.file_offset, m.len), (2 << 20, 2 << 20));
    assert!(!m.shared);
    assert!(m.phys.unwrap().is_multiple_of(2 << 20));
    assert_ne!(m.phys, fs.bmap(a, 2 << 20).unwrap().phys);
    let mut exp = data.clone();
    exp[4096..8192].fill(0xEE);
    assert_eq!(read_all(&fs, b), exp);
    assert_eq!(read_all(&fs, a), data);
    fs.fsck().unwrap();
}
