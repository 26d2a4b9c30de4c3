//! Hostile images: mutate valid images (raw byte damage, and structure-aware
//! damage with checksums fixed up so the parsers and invariant checks are
//! reached) and mount, walk, read, bmap, rmap-query, fsck and modify them.
//! Nothing may panic, loop forever or read out of bounds. Budget via
//! FSDAX_FS_FUZZ_ITERS (default keeps `cargo test` fast).

mod common;

use common::record_summary;
use fsdax_fs::crc::crc32c;
use fsdax_fs::format::{Header, Link, Superblock, HDR_LEN, LINK_LEN, LOG_ALIGN, LOG_HDR, SB_LEN};
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
    let opts = MkfsOptions { uuid: UUID, log_blocks: Some(32) };
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

/// The header copy with the highest generation in `img`, and its block.
fn current_header(img: &[u8]) -> Option<(Header, usize)> {
    let sb = Superblock::decode_unchecked(&img[..SB_LEN]).ok()?;
    let g = sb.geo;
    (0..2u8)
        .filter_map(|c| {
            let o = g.header_block(c) as usize * BS;
            Header::decode(img.get(o..o + HDR_LEN)?, &UUID).map(|h| (h, o))
        })
        .max_by_key(|(h, _)| h.gen)
}

/// The body extents of copy `c` (following valid links).
fn body_runs(img: &[u8], h: &Header, c: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut r = h.body[c];
    for _ in 0..64 {
        let o = r.pblk as usize * BS;
        if r.len == 0 || o + LINK_LEN as usize > img.len() {
            break;
        }
        out.push((o, r.len as usize * BS));
        match Link::decode(&img[o..o + LINK_LEN as usize], &UUID, h.gen) {
            Some(l) if l.next.len > 0 => r = l.next,
            _ => break,
        }
    }
    out
}

/// Fixes every checksum after a structure-aware mutation: superblocks,
/// body sections, body CRC, header copies, link lines, log records.
fn fix_checksums(img: &mut [u8]) {
    let Ok(sb) = Superblock::decode_unchecked(&img[..SB_LEN]) else {
        return;
    };
    let c = crc32c(&img[..SB_LEN - 4]);
    img[SB_LEN - 4..SB_LEN].copy_from_slice(&c.to_le_bytes());
    let g = sb.geo;
    let Some((mut h, _)) = current_header(img) else { return };
    // Body copy A's payload is the body; fix its sections and CRC, copy it
    // to copy B, fix the links.
    let runs = body_runs(img, &h, 0);
    let mut body: Vec<u8> = Vec::new();
    for &(o, l) in &runs {
        let end = (o + l).min(img.len());
        body.extend_from_slice(&img[o + LINK_LEN as usize..end]);
    }
    let body_len = (h.body_len as usize).min(body.len());
    body.truncate(body_len);
    let mut p = 0;
    while p + 24 <= body.len() {
        let len = u64::from_le_bytes(body[p + 12..p + 20].try_into().unwrap()) as usize;
        if len > body.len() - p - 24 {
            break;
        }
        let c = crc32c(&body[p + 24..p + 24 + len]);
        body[p + 20..p + 24].copy_from_slice(&c.to_le_bytes());
        p += 24 + len;
    }
    h.body_crc = crc32c(&body);
    for copy in 0..2 {
        let mut at = 0;
        let runs = body_runs(img, &h, copy);
        for (i, &(o, l)) in runs.iter().enumerate() {
            let next = runs.get(i + 1).map_or(fsdax_fs::format::Run::default(), |&(o2, l2)| fsdax_fs::format::Run {
                pblk: (o2 / BS) as u64,
                len: (l2 / BS) as u64,
            });
            let link = Link { gen: h.gen, copy: copy as u32, index: i as u32, next }.encode(&UUID);
            img[o..o + LINK_LEN as usize].copy_from_slice(&link);
            let take = (l - LINK_LEN as usize).min(body.len().saturating_sub(at));
            img[o + LINK_LEN as usize..o + LINK_LEN as usize + take].copy_from_slice(&body[at..at + take]);
            at += take;
        }
    }
    let enc = h.encode();
    for c in 0..2u8 {
        let o = g.header_block(c) as usize * BS;
        img[o..o + HDR_LEN].copy_from_slice(&enc);
    }
    // Log records, in both copies.
    for copy in 0..2 {
        let base = h.log[copy].pblk as usize * BS;
        let cap = h.log[copy].len as usize * BS;
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
}

fn mutate(img: &mut [u8], rng: &mut Rng) {
    let (h, hoff) = current_header(img).unwrap();
    let body = body_runs(img, &h, 0);
    let (b0, bl) = body[rng.below(body.len() as u64) as usize];
    let used = (h.body_len as usize + LINK_LEN as usize).min(bl);
    // Pick a target region: superblock, the header (hostile lengths and
    // extents), a body copy, a link line, the log.
    let region = match rng.below(10) {
        0 => (0, SB_LEN),
        1 | 2 => (hoff, HDR_LEN),
        3..=6 => (b0 + LINK_LEN as usize, used.saturating_sub(LINK_LEN as usize).max(1)),
        7 => (b0, LINK_LEN as usize),
        _ => (h.log[rng.below(2) as usize].pblk as usize * BS, 1024),
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
                // An interesting 8-byte value (hostile lengths among them).
                let v: u64 = [0, 1, u64::MAX, u64::MAX / 2, 1 << 40, rng.next(), 512, 126 << 20][rng.below(8) as usize];
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
        let r = std::panic::catch_unwind(|| {
            // The memory estimate reads what mount reads: it must not
            // panic either.
            let pm = MemPmem::from_bytes(img);
            let _ = FileSystem::estimate_mount(&pm);
            pm
        })
        .and_then(|pm| {
            std::panic::catch_unwind(|| match FileSystem::mount(pm) {
                Ok(fs) => {
                    let ro = fs.is_read_only();
                    let why = format!("mounted ro={ro} degraded={:?}", fs.mount_info().degraded);
                    exercise(fs);
                    (Some(ro), why)
                }
                Err(e) => (None, format!("refused {e:?}")),
            })
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
    // Corrupt the free-space section of the current checkpoint while
    // keeping every checksum valid: only the invariant checks can see it.
    let mut bad = img.clone();
    let (h, _) = current_header(&bad).unwrap();
    let body = h.body[0].pblk as usize * BS + LINK_LEN as usize;
    let _ = g;
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
    match FileSystem::mount(MemPmem::from_bytes(bad.clone())) {
        Ok(fs) => {
            assert!(fs.is_read_only(), "an inconsistent image must not mount read-write");
            assert!(fs.fsck().is_err());
        }
        Err(e) => assert!(matches!(e, FsError::Corrupt(_)), "{e:?}"),
    }
    // `fsck --repair` rebuilds the free space from the extents.
    let fs =
        FileSystem::mount_with(MemPmem::from_bytes(bad), MountOptions { repair: true, ..Default::default() }).unwrap();
    assert!(!fs.is_read_only());
    // (The seed has one poisoned data block: that stays.)
    assert!(fs.fsck().unwrap().damage.is_empty());
    let fs = FileSystem::mount(fs.unmount().unwrap()).unwrap();
    assert!(!fs.is_read_only());
    assert!(fs.fsck().unwrap().damage.is_empty());
}

/// A header with valid checksums and a hostile body length (126 MiB on a
/// 6 MiB device, and the whole data area with a one-extent chain): mount
/// refuses with an error before allocating anything of that size.
#[test]
fn hostile_lengths_are_refused_before_allocating() {
    let img = seeds()[0].clone();
    let sb = Superblock::decode(&img[..SB_LEN]).unwrap();
    for len in [126u64 << 20, sb.geo.data_blocks * 4096, u64::MAX] {
        let mut bad = img.clone();
        let (mut h, _) = current_header(&bad).unwrap();
        h.body_len = len;
        let enc = h.encode();
        for c in 0..2u8 {
            let o = sb.geo.header_block(c) as usize * BS;
            bad[o..o + HDR_LEN].copy_from_slice(&enc);
        }
        assert!(matches!(FileSystem::estimate_mount(&MemPmem::from_bytes(bad.clone())), Err(FsError::Corrupt(_))));
        match FileSystem::mount(MemPmem::from_bytes(bad)) {
            Err(FsError::Corrupt(_)) => {}
            other => panic!("body length {len}: {:?}", other.map(|f| f.mount_info())),
        }
    }
}
