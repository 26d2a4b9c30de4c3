//! Hostile images: mutate valid images (raw byte damage, and structure-aware
//! damage with checksums fixed up so the parsers and invariant checks are
//! reached) and mount, walk, read, bmap, rmap-query, fsck and modify them.
//! Nothing may panic, loop forever or read out of bounds. Budget via
//! FSDAX_FS_FUZZ_ITERS (default keeps `cargo test` fast).

mod common;

use common::record_summary;
use fsdax_fs::crc::crc32c;
use fsdax_fs::format::{CkptHeader, Superblock, CKPT_HDR_LEN, LOG_ALIGN, LOG_HDR, SB_LEN};
use fsdax_fs::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

const BS: usize = 4096;
const UUID: [u8; 16] = [0xAB; 16];

/// Valid seed images: (checkpointed, with un-checkpointed log records).
fn seeds() -> Vec<Vec<u8>> {
    let opts = MkfsOptions { uuid: UUID, ckpt_blocks: Some(64), log_blocks: Some(32) };
    let mut fs = FileSystem::mkfs(MemPmem::new(6 << 20), opts).unwrap();
    let r = fs.root();
    let d = fs.mkdir(r, b"dir").unwrap();
    let sub = fs.mkdir(d, b"sub").unwrap();
    let a = fs.create(r, b"a").unwrap();
    fs.write(a, 0, &vec![1u8; 40_000]).unwrap();
    let b = fs.create(d, b"b").unwrap();
    fs.reflink(a, b).unwrap();
    fs.write(b, 5000, b"cow").unwrap();
    let c = fs.create(sub, b"c").unwrap();
    fs.write(c, 100_000, b"sparse").unwrap();
    fs.reflink_range(a, 8192, c, 0, 8192).unwrap();
    let phys = fs.bmap(a, 0).unwrap().phys.unwrap();
    fs.mark_bad(phys + 3 * 4096, 4096).unwrap();
    let checkpointed = fs.unmount().unwrap();
    let mut fs = FileSystem::mount(checkpointed.clone()).unwrap();
    let e = fs.create(r, b"e").unwrap();
    fs.write(e, 0, b"log only").unwrap();
    fs.rename(d, b"b", r, b"b2").unwrap();
    fs.fallocate(a, Falloc::PunchHole, 4096, 8192).unwrap();
    fs.unlink(sub, b"c").unwrap();
    let logged = fs.into_pmem();
    vec![checkpointed.into_bytes(), logged.into_bytes()]
}

/// Exercises everything read-only, then a few writes if mounted read-write.
fn exercise(mut fs: FileSystem<MemPmem>) {
    let _ = fs.fsck();
    let _ = fs.statfs();
    let mut stack = vec![fs.root()];
    let mut files = Vec::new();
    let mut budget = 10_000;
    while let Some(d) = stack.pop() {
        budget -= 1;
        assert!(budget > 0, "directory walk does not terminate");
        let Ok(ents) = fs.readdir(d, None, 1000) else {
            continue;
        };
        for e in ents {
            let _ = fs.stat(e.ino);
            match e.kind {
                FileKind::Dir => stack.push(e.ino),
                FileKind::File => files.push(e.ino),
            }
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    for &f in &files {
        let size = fs.stat(f).map(|s| s.size).unwrap_or(0);
        let _ = fs.read(f, 0, &mut buf);
        let _ = fs.read(f, size.saturating_sub(5000), &mut buf);
        let _ = fs.bmap(f, 0);
        let _ = fs.bmap(f, size / 2);
        if let Ok(m) = fs.bmap(f, 0) {
            if let Some(p) = m.phys {
                let _ = fs.rmap_query(p, m.len);
            }
        }
    }
    let dev = fs.pmem().bytes().len() as u64;
    let _ = fs.rmap_query(0, dev);
    let _ = fs.rmap_query(u64::MAX - 10, 100);
    let r = fs.root();
    if let Ok(n) = fs.create(r, b"new") {
        let _ = fs.write(n, 3000, &[5u8; 10_000]);
        if let Some(&f) = files.first() {
            let _ = fs.reflink(f, n);
            let _ = fs.write(n, 0, b"x");
            let _ = fs.reflink_range(n, 0, f, 0, 4096);
            let _ = fs.truncate(f, 1);
            let _ = fs.fallocate(n, Falloc::PunchHole, 0, 5000);
        }
        let _ = fs.unlink(r, b"new");
    }
    for &f in &files {
        let _ = fs.truncate(f, 0);
    }
    let _ = fs.rename(r, b"dir", r, b"dir2");
    let _ = fs.fsck();
    if let Ok(pm) = fs.unmount() {
        if let Ok(fs) = FileSystem::mount(pm) {
            let _ = fs.fsck();
        }
    }
}

/// Fixes every checksum after a structure-aware mutation.
fn fix_checksums(img: &mut [u8]) {
    let Ok(sb) = Superblock::decode_unchecked(&img[..SB_LEN]) else {
        return;
    };
    let c = crc32c(&img[..SB_LEN - 4]);
    img[SB_LEN - 4..SB_LEN].copy_from_slice(&c.to_le_bytes());
    let g = sb.geo;
    for slot in 0..2u8 {
        let h = g.ckpt_slot(slot) as usize * BS;
        if h + CKPT_HDR_LEN > img.len() {
            continue;
        }
        let body_len = u64::from_le_bytes(img[h + 32..h + 40].try_into().unwrap()) as usize;
        let body = h + BS;
        if body_len > (g.ckpt_blocks as usize - 1) * BS || body + body_len > img.len() {
            continue;
        }
        // Section CRCs.
        let mut p = body;
        while p + 24 <= body + body_len {
            let len = u64::from_le_bytes(img[p + 12..p + 20].try_into().unwrap()) as usize;
            if len > body + body_len - p - 24 {
                break;
            }
            let c = crc32c(&img[p + 24..p + 24 + len]);
            img[p + 20..p + 24].copy_from_slice(&c.to_le_bytes());
            p += 24 + len;
        }
        let c = crc32c(&img[body..body + body_len]);
        img[h + 40..h + 44].copy_from_slice(&c.to_le_bytes());
        let c = crc32c(&img[h..h + CKPT_HDR_LEN - 4]);
        img[h + CKPT_HDR_LEN - 4..h + CKPT_HDR_LEN].copy_from_slice(&c.to_le_bytes());
    }
    // Log records.
    let base = g.log_start as usize * BS;
    let cap = g.log_blocks as usize * BS;
    let mut pos = 0usize;
    while pos + LOG_HDR as usize <= cap && base + pos + (LOG_HDR as usize) <= img.len() {
        let r = base + pos;
        if img[r..r + 4] != *b"FSLG" {
            break;
        }
        let plen = u32::from_le_bytes(img[r + 32..r + 36].try_into().unwrap()) as usize;
        if plen > cap - pos - LOG_HDR as usize {
            break;
        }
        let c = crc32c(&img[r + 8..r + LOG_HDR as usize + plen]);
        img[r + 4..r + 8].copy_from_slice(&c.to_le_bytes());
        pos += (LOG_HDR as usize + plen).div_ceil(LOG_ALIGN as usize) * LOG_ALIGN as usize;
    }
}

fn mutate(img: &mut [u8], rng: &mut Rng) {
    let sb = Superblock::decode(&img[..SB_LEN]).unwrap();
    let g = sb.geo;
    let meta_end = g.data_start as usize * BS;
    // Pick a target region: superblock, a checkpoint slot's used part, the log.
    let current = (0..2u8)
        .filter_map(|s| {
            CkptHeader::decode(&img[g.ckpt_slot(s) as usize * BS..][..CKPT_HDR_LEN], &UUID).map(|h| (h.gen, s))
        })
        .max()
        .map_or(0, |x| x.1);
    let region = match rng.below(8) {
        0 => (0, SB_LEN),
        1..=4 => {
            // Mostly the checkpoint in use.
            let slot = if rng.below(4) == 0 { 1 - current } else { current };
            let h = g.ckpt_slot(slot) as usize * BS;
            let hdr = CkptHeader::decode(&img[h..h + CKPT_HDR_LEN], &UUID);
            let used = hdr.map_or(CKPT_HDR_LEN, |x| x.body_len as usize);
            if rng.below(4) == 0 {
                (h, CKPT_HDR_LEN)
            } else {
                (h + BS, used.max(1))
            }
        }
        5 | 6 => (g.log_start as usize * BS, 1024),
        _ => (0, meta_end),
    };
    let n = 1 + rng.below(4);
    for _ in 0..n {
        let off = region.0 + rng.below(region.1 as u64) as usize;
        if off >= img.len() {
            continue;
        }
        match rng.below(5) {
            0 => img[off] ^= 1 << rng.below(8),
            1 => img[off] = rng.next() as u8,
            2 => {
                // An interesting 8-byte value.
                let v: u64 = [0, 1, u64::MAX, u64::MAX / 2, 1 << 40, rng.next(), 512, 4096][rng.below(8) as usize];
                let end = (off + 8).min(img.len());
                img[off..end].copy_from_slice(&v.to_le_bytes()[..end - off]);
            }
            3 => img[off] = img[off].wrapping_add(1),
            _ => img[off] = img[off].wrapping_sub(1),
        }
    }
}

#[test]
fn hostile_images_never_panic() {
    let iters: u64 = std::env::var("FSDAX_FS_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(8000);
    let seeds = seeds();
    for s in &seeds {
        let fs = FileSystem::mount(MemPmem::from_bytes(s.clone())).unwrap();
        fs.fsck().unwrap();
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut mounted, mut rw, mut refused) = (0u64, 0u64, 0u64);
    let mut outcomes = std::collections::BTreeMap::new();
    for i in 0..iters {
        let mut img = seeds[(i % 2) as usize].clone();
        mutate(&mut img, &mut rng);
        let fixed = i % 3 != 0;
        if fixed {
            fix_checksums(&mut img);
        }
        let img_copy = if std::env::var("FSDAX_FS_FUZZ_DUMP").is_ok() { Some(img.clone()) } else { None };
        let r = std::panic::catch_unwind(|| match FileSystem::mount(MemPmem::from_bytes(img)) {
            Ok(fs) => {
                let ro = fs.is_read_only();
                let why = format!("mounted ro={ro} degraded={:?}", fs.mount_info().degraded);
                exercise(fs);
                (Some(ro), why)
            }
            Err(e) => (None, format!("refused {e:?}")),
        });
        let r = r.map(|(o, why)| {
            *outcomes.entry(why).or_insert(0u64) += 1;
            o
        });
        match r {
            Ok(Some(ro)) => {
                mounted += 1;
                rw += u64::from(!ro);
            }
            Ok(None) => refused += 1,
            Err(_) => {
                if let Some(img) = img_copy {
                    std::fs::write("/tmp/fsdax-fuzz-crash.img", img).unwrap();
                }
                panic!("iteration {i} (checksums fixed: {fixed}) panicked");
            }
        }
    }
    println!("hostile images: {iters} mutated, {mounted} mounted ({rw} read-write), {refused} refused");
    record_summary("hostile-images", &format!("{iters} {mounted} {refused}"));
    for (k, v) in &outcomes {
        println!("  {v:6}  {k}");
    }
    assert!(mounted > 0 && refused > 0);
}

#[test]
fn fsck_catches_deliberate_corruption() {
    let seeds = seeds();
    let img = seeds[0].clone();
    let sb = Superblock::decode(&img[..SB_LEN]).unwrap();
    let g = sb.geo;
    // Find the current checkpoint and corrupt the free-space section while
    // keeping every checksum valid: only the invariant checks can see it.
    let mut bad = img.clone();
    let slot = (0..2u8)
        .filter_map(|s| {
            CkptHeader::decode(&bad[g.ckpt_slot(s) as usize * BS..][..CKPT_HDR_LEN], &UUID).map(|h| (h.gen, s))
        })
        .max()
        .unwrap()
        .1;
    let body = (g.ckpt_slot(slot) as usize + 1) * BS;
    let mut p = body;
    loop {
        let tag = u32::from_le_bytes(bad[p..p + 4].try_into().unwrap());
        let len = u64::from_le_bytes(bad[p + 12..p + 20].try_into().unwrap()) as usize;
        if tag == 6 {
            // First free range: shrink it by one block (a leaked block).
            let l = u64::from_le_bytes(bad[p + 32..p + 40].try_into().unwrap());
            bad[p + 32..p + 40].copy_from_slice(&(l - 1).to_le_bytes());
            break;
        }
        p += 24 + len;
    }
    fix_checksums(&mut bad);
    match FileSystem::mount(MemPmem::from_bytes(bad)) {
        Ok(fs) => {
            assert!(fs.is_read_only(), "an inconsistent image must not mount read-write");
            assert!(fs.fsck().is_err());
        }
        Err(e) => assert!(matches!(e, FsError::Corrupt(_)), "{e:?}"),
    }
}
