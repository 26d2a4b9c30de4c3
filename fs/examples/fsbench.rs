//! Host benchmark over an in-memory image. Prints numbers; asserts nothing
//! about time. Run: `cargo run --release -p fsdax-fs --example fsbench`.

use std::time::Instant;

use fsdax_fs::*;

fn mkfs(size: usize) -> FileSystem<MemPmem> {
    let opts = MkfsOptions { uuid: [1; 16], ..Default::default() };
    // Touch every page first so that page faults of the host are not measured.
    FileSystem::mkfs(MemPmem::from_bytes(vec![0xFF; size]), opts).unwrap()
}

fn report(name: &str, ops: u64, secs: f64) {
    println!("{name:<34} {:>12.0} ops/s  {:>10.3} us/op", ops as f64 / secs, secs * 1e6 / ops as f64);
}

fn main() {
    // --- 4 KiB overwrite and append, CoW, reflink, rmap on one 1.5 GiB image.
    let mut fs = mkfs(1536 << 20);
    let r = fs.root();
    let f = fs.create(r, b"overwrite").unwrap();
    let blk = vec![0xA5u8; 4096];
    fs.fallocate(f, Falloc::Allocate { keep_size: false }, 0, 64 << 20).unwrap();
    let n = 1_000_000u64;
    let t = Instant::now();
    let mut x = 12345u64;
    for _ in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let off = ((x >> 33) % (16384)) * 4096;
        fs.write(f, off, &blk).unwrap();
    }
    report("4 KiB overwrite (random, 64 MiB)", n, t.elapsed().as_secs_f64());

    let a = fs.create(r, b"append").unwrap();
    let n = 50_000u64;
    let t = Instant::now();
    for _ in 0..n {
        fs.append(a, &blk).unwrap();
    }
    report("4 KiB append", n, t.elapsed().as_secs_f64());
    let huge = (0..n * 4096).step_by(2 << 20).filter(|&o| {
        let m = fs.bmap(a, o).unwrap();
        m.len == 2 << 20 && m.phys.unwrap().is_multiple_of(2 << 20)
    });
    println!(
        "  appended file: {} of {} 2 MiB chunks are aligned 2 MiB extents",
        huge.count(),
        (n * 4096).div_ceil(2 << 20)
    );

    let big = fs.create(r, b"big").unwrap();
    let chunk = vec![7u8; 2 << 20];
    for i in 0..128u64 {
        fs.write(big, i * (2 << 20), &chunk).unwrap();
    }
    let clone = fs.create(r, b"clone").unwrap();
    let t = Instant::now();
    fs.reflink(big, clone).unwrap();
    let dt = t.elapsed().as_secs_f64();
    println!("{:<34} {:>12.1} us (128 extents)", "reflink of 256 MiB file", dt * 1e6);
    let clones = 20u64;
    let t = Instant::now();
    for i in 0..clones {
        let c = fs.create(r, format!("clone{i}").as_bytes()).unwrap();
        fs.reflink(big, c).unwrap();
    }
    report("  create + reflink 256 MiB (avg)", clones, t.elapsed().as_secs_f64());

    let t = Instant::now();
    for i in 0..64u64 {
        fs.write(clone, i * (2 << 20), &chunk).unwrap();
    }
    report("CoW of a 2 MiB shared extent", 64, t.elapsed().as_secs_f64());
    let t = Instant::now();
    for i in 64..128u64 {
        fs.write(clone, i * (2 << 20) + 4096 * 7, &blk).unwrap();
    }
    report("CoW 4 KiB inside a shared extent", 64, t.elapsed().as_secs_f64());

    let data_start = fs.bmap(big, 0).unwrap().phys.unwrap();
    let n = 200_000u64;
    let t = Instant::now();
    let mut owners = 0usize;
    for i in 0..n {
        let p = data_start + (i * 7919 % 65536) * 4096;
        owners += fs.rmap_query(p, 4096).len();
    }
    report("rmap query (4 KiB, ~22 owners)", n, t.elapsed().as_secs_f64());
    println!("  average owners per query: {:.1}", owners as f64 / n as f64);

    // --- create + close, then mount of the 100k-file image.
    let mut fs = mkfs(1 << 30);
    let r = fs.root();
    let n = 100_000u64;
    let names: Vec<Vec<u8>> = (0..n).map(|i| format!("file{i:06}").into_bytes()).collect();
    let t = Instant::now();
    for name in &names {
        fs.create(r, name).unwrap();
    }
    report("create (100k in one directory)", n, t.elapsed().as_secs_f64());
    let t = Instant::now();
    for name in names.iter().step_by(7) {
        fs.lookup(r, name).unwrap();
    }
    report("lookup in a 100k directory", n / 7 + 1, t.elapsed().as_secs_f64());
    let pm = fs.unmount().unwrap();
    let t = Instant::now();
    let fs = FileSystem::mount(pm).unwrap();
    println!("{:<34} {:>12.2} ms", "mount of a 100k-file image", t.elapsed().as_secs_f64() * 1e3);
    assert_eq!(fs.statfs().inodes, n + 1);
    let t = Instant::now();
    fs.fsck().unwrap();
    println!("{:<34} {:>12.2} ms", "fsck of a 100k-file image", t.elapsed().as_secs_f64() * 1e3);
}
