//! Regression tests for defects found by trying the file system as a user
//! and as an attacker would: each failed before its fix.

use fsdax_fs::*;

const BS: u64 = BLOCK_SIZE;

fn fresh(mb: usize) -> FileSystem<MemPmem> {
    FileSystem::mkfs(MemPmem::new(mb << 20), MkfsOptions { uuid: [0x42; 16], ..Default::default() }).unwrap()
}

fn read_all(fs: &FileSystem<MemPmem>, ino: Ino) -> Vec<u8> {
    let n = fs.stat(ino).unwrap().size as usize;
    let mut b = vec![0u8; n];
    assert_eq!(fs.read(ino, 0, &mut b).unwrap(), n);
    b
}

/// Fills the data area with one file; returns it.
fn fill(fs: &mut FileSystem<MemPmem>) -> Ino {
    let f = fs.create(fs.root(), b"filler").unwrap();
    let chunk = vec![0x11u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = fs.write(f, off, &chunk).unwrap_or(0);
        off += n as u64;
        if n < chunk.len() {
            break;
        }
    }
    assert_eq!(fs.write(f, off, &[1u8; BS as usize]), Err(FsError::NoSpace), "the file system is full");
    f
}

#[test]
fn append_returns_the_short_count_when_space_runs_out() {
    let mut fs = fresh(8);
    let f = fs.create(fs.root(), b"a").unwrap();
    let big = vec![3u8; 16 << 20];
    let n = fs.append(f, &big).unwrap();
    assert!(n > 0 && n < big.len(), "a short count, not NoSpace: {n}");
    assert_eq!(fs.stat(f).unwrap().size, n as u64, "the size is what was written");
    // Nothing more fits: now it is an error.
    assert_eq!(fs.append(f, &big[..BS as usize]), Err(FsError::NoSpace));
    fs.fsck().unwrap();
}

#[test]
fn truncate_up_and_punch_hole_work_on_a_full_file_system() {
    let mut fs = fresh(8);
    let f = fill(&mut fs);
    let size = fs.stat(f).unwrap().size;
    // Truncate up: no block is needed (the tail is zeroed in place).
    fs.truncate(f, size + 3 * BS + 5).unwrap();
    assert_eq!(fs.stat(f).unwrap().size, size + 3 * BS + 5);
    // Punch with unaligned ends: the partial blocks are zeroed in place, the
    // whole blocks freed.
    let free = fs.statfs().free_blocks;
    fs.fallocate(f, Falloc::PunchHole, 100, 10 * BS).unwrap();
    assert_eq!(fs.statfs().free_blocks, free + 9);
    let data = read_all(&fs, f);
    assert!(data[..100].iter().all(|&b| b == 0x11));
    assert!(data[100..100 + 10 * BS as usize].iter().all(|&b| b == 0));
    assert_eq!(data[100 + 10 * BS as usize], 0x11);
    // Allocating fallocate of a hole works while a block is free.
    fs.fallocate(f, Falloc::Allocate { keep_size: true }, 4 * BS, BS).unwrap();
    fs.fsck().unwrap();
}

#[test]
fn a_whole_block_write_clears_a_bad_block_and_a_partial_one_is_eio() {
    let mut fs = fresh(16);
    let f = fs.create(fs.root(), b"f").unwrap();
    fs.write(f, 0, &[1u8; 3 * BS as usize]).unwrap();
    let p = fs.bmap(f, 0).unwrap().phys.unwrap();
    // Poison in the second block, known to the device and to the file system.
    fs.pmem_mut().inject_poison(p + BS + 256, 64);
    fs.mark_bad(p + BS + 256, 64).unwrap();
    assert_eq!(fs.bad_blocks(), vec![(p + BS, BS)]);
    let mut buf = vec![0u8; BS as usize];
    assert!(fs.read(f, BS, &mut buf).is_err());
    // A write into part of the bad block: EIO, nothing changes.
    assert_eq!(fs.write(f, BS + 8, &[2u8; 100]), Err(FsError::Poisoned { offset: p + BS + 8 }));
    assert_eq!(fs.bad_blocks(), vec![(p + BS, BS)]);
    // A write of the whole block clears the poison (recovery write) and the
    // bad-block entry, in the same operation.
    fs.write(f, BS, &[5u8; BS as usize]).unwrap();
    assert!(fs.bad_blocks().is_empty());
    assert!(!fs.pmem().is_poisoned(p + BS, BS));
    assert_eq!(fs.bmap(f, BS).unwrap().phys.map(|x| x + BS - fs.bmap(f, BS).unwrap().file_offset), Some(p + BS));
    assert_eq!(&read_all(&fs, f)[BS as usize..2 * BS as usize], &[5u8; BS as usize][..]);
    fs.fsck().unwrap();
    let pm = fs.unmount().unwrap();
    let fs = FileSystem::mount(pm).unwrap();
    assert!(fs.bad_blocks().is_empty(), "the clearing is persistent");
}

#[test]
fn zero_range_over_a_whole_bad_block_clears_it() {
    let mut fs = fresh(16);
    let f = fs.create(fs.root(), b"f").unwrap();
    fs.write(f, 0, &[1u8; 2 * BS as usize]).unwrap();
    let p = fs.bmap(f, 0).unwrap().phys.unwrap();
    fs.pmem_mut().inject_poison(p, 64);
    fs.mark_bad(p, 64).unwrap();
    fs.fallocate(f, Falloc::ZeroRange { keep_size: true }, 0, BS).unwrap();
    assert!(fs.bad_blocks().is_empty());
    assert_eq!(read_all(&fs, f)[..BS as usize], [0u8; BS as usize]);
    fs.fsck().unwrap();
}

#[test]
fn punching_a_bad_block_frees_it_without_returning_it_to_free_space() {
    let mut fs = fresh(16);
    let f = fs.create(fs.root(), b"f").unwrap();
    fs.write(f, 0, &[1u8; 3 * BS as usize]).unwrap();
    let p = fs.bmap(f, 0).unwrap().phys.unwrap();
    fs.pmem_mut().inject_poison(p + BS, 64);
    fs.mark_bad(p + BS, 64).unwrap();
    let free = fs.statfs().free_blocks;
    fs.fallocate(f, Falloc::PunchHole, BS, BS).unwrap();
    assert_eq!(fs.bmap(f, BS).unwrap().phys, None);
    assert_eq!(fs.statfs().free_blocks, free, "the bad block is not free space");
    assert_eq!(fs.bad_blocks(), vec![(p + BS, BS)]);
    // The rmap has no owner for it any more; clearing makes it free.
    assert!(fs.rmap_query(p + BS, BS).iter().all(|r| !matches!(r.owner, RmapOwner::File { .. })));
    fs.clear_bad(p + BS, BS).unwrap();
    assert_eq!(fs.statfs().free_blocks, free + 1);
    assert!(!fs.pmem().is_poisoned(p + BS, BS), "clearing rewrote the block");
    fs.fsck().unwrap();
}

#[test]
fn reads_of_a_listed_bad_block_fail_even_where_the_device_forgot_the_poison() {
    let mut fs = fresh(16);
    let f = fs.create(fs.root(), b"f").unwrap();
    fs.write(f, 0, &[1u8; 2 * BS as usize]).unwrap();
    let p = fs.bmap(f, 0).unwrap().phys.unwrap();
    fs.mark_bad(p + BS, 1).unwrap();
    let pm = fs.unmount().unwrap();
    // A fresh device (after a reboot) knows no poison; the file system does.
    let fs = FileSystem::mount(MemPmem::from_bytes(pm.into_bytes())).unwrap();
    let mut buf = vec![0u8; 2 * BS as usize];
    assert_eq!(fs.read(f, 0, &mut buf), Ok(BS as usize));
    assert_eq!(fs.read(f, BS, &mut buf), Err(FsError::Poisoned { offset: p + BS }));
}

#[test]
fn metadata_grows_into_the_data_area_and_deleting_is_always_possible() {
    // 8 MiB, empty files with 200-byte names: the checkpoint grows into the
    // data area until space runs out, cleanly, before anything commits.
    let mut fs = fresh(8);
    let r = fs.root();
    let name = |i: usize| format!("{i:0200}");
    let mut n = 0;
    let err = loop {
        match fs.create(r, name(n).as_bytes()) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, FsError::NoSpace);
    assert!(n > 2000, "more names than a fixed slot held: {n}");
    assert!(!fs.is_read_only());
    assert_eq!(fs.lookup(r, name(n).as_bytes()), Err(FsError::NotFound), "the failed create left nothing");
    assert!(fs.fsck().unwrap().is_clean());
    // Deleting works at the limit, and makes room again.
    for i in 0..50 {
        fs.unlink(r, name(i).as_bytes()).unwrap();
    }
    fs.create(r, b"again").unwrap();
    fs.mkdir(r, b"dir").unwrap();
    // A remount (after a crash, and clean) is read-write.
    let fs = FileSystem::mount(fs.into_pmem()).unwrap();
    assert!(!fs.is_read_only(), "{:?}", fs.mount_info());
    let mut fs = FileSystem::mount(fs.unmount().unwrap()).unwrap();
    assert!(!fs.is_read_only());
    // Everything can be deleted.
    for i in 50..n {
        fs.unlink(r, name(i).as_bytes()).unwrap();
    }
    fs.unlink(r, b"again").unwrap();
    fs.rmdir(r, b"dir").unwrap();
    assert!(fs.fsck().unwrap().is_clean());
    let st = fs.statfs();
    assert_eq!(st.free_blocks + fs.log_status().meta_blocks, st.data_blocks);
}

#[test]
fn thousands_of_creates_on_16_mib_never_shut_down() {
    let mut fs = fresh(16);
    let r = fs.root();
    for i in 0..3000 {
        fs.create(r, format!("f{i}").as_bytes()).unwrap();
    }
    assert!(!fs.is_read_only());
    let fs = FileSystem::mount(fs.into_pmem()).unwrap();
    assert!(!fs.is_read_only(), "{:?}", fs.mount_info());
    assert_eq!(fs.readdir(fs.root(), None, usize::MAX).unwrap().len(), 3000);
    assert!(fs.fsck().unwrap().is_clean());
}
