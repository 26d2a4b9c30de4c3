//! The DRAM estimate of a mount (`FileSystem::estimate_mount`) against
//! what mount really allocates, counted by a counting global allocator
//! (the one of the `dram_cost` example): resident after mount, and the
//! peak of a read-write, read-only and repair mount and of `fsck`. The
//! estimate must never be below what is measured (a kernel refuses a mount
//! on it, and its allocation failures are fatal), and on images whose log
//! is empty (what a clean unmount leaves) it must stay within twice of it.

mod counting;

use fsdax_fs::*;

#[global_allocator]
static A: counting::Counting = counting::Counting;

const BS: u64 = BLOCK_SIZE;

/// The kind of image to build.
#[derive(Clone, Copy, Debug, Default)]
struct Shape {
    files: u64,
    /// One-block extents per file that cannot merge.
    extents: u64,
    /// Subdirectories of the root; files are spread over them and the root.
    dirs: u64,
    name_len: usize,
    /// The first files each share the previous one's data (reflink).
    reflinks: u64,
    /// Bad data blocks (poison reported on file data).
    bad: u64,
    /// Operations after the last checkpoint stay in the log (no unmount).
    crash: bool,
    /// With `crash`: delete every other file and truncate the rest to one
    /// block, in the log.
    churn: bool,
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} files x {} extents, {} dirs, {}-byte names, {} reflinks, {} bad blocks{}{}",
            self.files,
            self.extents,
            self.dirs,
            self.name_len,
            self.reflinks,
            self.bad,
            if self.crash { ", log not checkpointed" } else { "" },
            if self.churn { ", churned" } else { "" }
        )
    }
}

fn build(s: Shape) -> Vec<u8> {
    let mut fs = FileSystem::mkfs(MemPmem::new(128 << 20), MkfsOptions::default()).unwrap();
    let r = fs.root();
    let mut dirs = vec![r];
    for d in 0..s.dirs {
        dirs.push(fs.mkdir(r, format!("d{d:07}").as_bytes()).unwrap());
    }
    let mut made: Vec<(Ino, Ino, String)> = Vec::new();
    for i in 0..s.files {
        let name = format!("{i:0w$}", w = s.name_len);
        let dir = dirs[i as usize % dirs.len()];
        let f = fs.create(dir, name.as_bytes()).unwrap();
        for e in 0..s.extents {
            fs.write(f, e * 2 * BS, b"x").unwrap();
        }
        if i > 0 && i < s.reflinks {
            fs.reflink(made[i as usize - 1].1, f).unwrap();
        }
        made.push((dir, f, name));
    }
    for (_, f, _) in made.iter().take(s.bad as usize) {
        let phys = fs.bmap(*f, 0).unwrap().phys.unwrap();
        fs.mark_bad(phys, 64).unwrap();
    }
    if !s.crash {
        return fs.unmount().unwrap().into_bytes();
    }
    if s.churn {
        for (k, (dir, f, name)) in made.iter().enumerate() {
            if k % 2 == 0 {
                fs.unlink(*dir, name.as_bytes()).unwrap();
            } else {
                fs.truncate(*f, BS).unwrap();
            }
        }
    }
    fs.into_pmem().into_bytes()
}

/// Heap bytes measured for one image.
#[derive(Debug)]
struct Measured {
    resident: i64,
    rw: i64,
    ro: i64,
    repair: i64,
    fsck: i64,
}

const RO: MountOptions = MountOptions { read_only: true, repair: false };
const REPAIR: MountOptions = MountOptions { read_only: false, repair: true };

fn measure(img: &[u8]) -> (MemoryEstimate, MemoryEstimate, Measured) {
    let est = FileSystem::estimate_mount(&MemPmem::from_bytes(img.to_vec())).unwrap();
    let peak = |opts: MountOptions| {
        let pm = MemPmem::from_bytes(img.to_vec());
        let (fs, _, peak) = counting::measure(|| FileSystem::mount_with(pm, opts).unwrap());
        assert!(!fs.is_read_only() || opts.read_only, "the image mounts read-write");
        peak as i64
    };
    let (ro, repair) = (peak(RO), peak(REPAIR));
    let pm = MemPmem::from_bytes(img.to_vec());
    let (fs, resident, rw) = counting::measure(|| FileSystem::mount(pm).unwrap());
    // fsck reads what is on the media now (a replaying mount wrote a
    // checkpoint): estimate that.
    let now = fs.memory_estimate().unwrap();
    let (report, _, fsck) = counting::measure(|| fs.fsck().unwrap());
    assert_eq!(report.inodes, now.files + now.dirs, "the estimate counts what fsck sees");
    (est, now, Measured { resident: resident as i64, rw: rw as i64, ro, repair, fsck: fsck as i64 })
}

/// Checks the estimate of `s` against the measurement; with `tight`, also
/// that it is at most twice what was measured.
fn check(s: Shape, tight: bool) -> (MemoryEstimate, Measured) {
    let img = build(s);
    let (est, now, m) = measure(&img);
    let pairs = [
        ("resident", est.resident, m.resident),
        ("read-write mount", est.mount_peak(MountOptions::default()), m.rw),
        ("read-only mount", est.mount_peak(RO), m.ro),
        ("repair mount", est.mount_peak(REPAIR), m.repair),
        ("fsck", now.fsck_peak(), m.fsck),
    ];
    for (what, e, got) in pairs {
        let ratio = e as f64 / got as f64;
        println!("{s}: {what}: estimated {e} bytes, measured {got} bytes ({ratio:.2}x)");
        assert!(e as i64 >= got, "{s}: {what}: estimated {e} bytes, but it took {got}");
        if tight {
            assert!(ratio <= 2.0, "{s}: {what}: estimated {e} bytes for {got} taken ({ratio:.2}x)");
        }
    }
    (est, m)
}

#[test]
fn the_estimate_bounds_what_a_clean_image_takes_and_stays_close() {
    let shapes = [
        Shape { files: 20_000, name_len: 12, ..Shape::default() },
        Shape { files: 2000, extents: 8, name_len: 12, ..Shape::default() },
        Shape { files: 3000, extents: 1, name_len: 12, ..Shape::default() },
        Shape { files: 2000, dirs: 2000, name_len: 12, ..Shape::default() },
        Shape { files: 4000, name_len: 200, dirs: 3, ..Shape::default() },
        Shape { files: 1000, extents: 3, dirs: 10, name_len: 12, reflinks: 1000, bad: 40, ..Shape::default() },
    ];
    for s in shapes {
        let (est, _) = check(s, true);
        assert_eq!(est.files, s.files);
        assert_eq!(est.dirs, s.dirs + 1);
        assert_eq!(est.dirents, s.files + s.dirs);
        assert_eq!(est.log_records, 0);
        // A shared extent counts once per owner.
        assert_eq!(est.extents, s.files * s.extents);
    }
    // An empty file system: only never below.
    check(Shape::default(), false);
}

#[test]
fn the_estimate_bounds_mounts_that_replay_a_log() {
    for s in [
        Shape { files: 3000, name_len: 12, crash: true, ..Shape::default() },
        Shape { files: 300, extents: 4, dirs: 3, name_len: 30, crash: true, ..Shape::default() },
        Shape {
            files: 400,
            extents: 6,
            dirs: 2,
            name_len: 12,
            reflinks: 50,
            crash: true,
            churn: true,
            ..Shape::default()
        },
    ] {
        let (est, _) = check(s, false);
        assert!(est.log_records > 0 && est.log_mutations >= est.log_records, "{est:?}");
    }
}

#[test]
fn the_estimate_reads_what_mount_reads() {
    let img = build(Shape { files: 500, extents: 2, name_len: 12, ..Shape::default() });
    let est = FileSystem::estimate_mount(&MemPmem::from_bytes(img.clone())).unwrap();
    // Body copy A unreadable: mount and the estimate read copy B.
    let fs = FileSystem::mount_with(MemPmem::from_bytes(img.clone()), RO).unwrap();
    let a = fs.log_status().body[0];
    let mut pm = MemPmem::from_bytes(img.clone());
    pm.inject_poison(a.pblk * BS + 4096, 64);
    assert_eq!(FileSystem::estimate_mount(&pm).unwrap(), est);
    let fs = FileSystem::mount_with(pm.clone(), RO).unwrap();
    assert!(fs.mount_info().damage.body[0]);
    // Both copies bad: the estimate fails as mount does.
    let b = fs.log_status().body[1];
    pm.inject_poison(b.pblk * BS + 4096, 64);
    assert!(FileSystem::estimate_mount(&pm).unwrap_err().is_media());
    assert!(FileSystem::mount_with(pm, RO).unwrap_err().is_media());
    // Not a file system at all.
    assert_eq!(FileSystem::estimate_mount(&MemPmem::new(1 << 20)), Err(FsError::NotFsdax));
    // The estimate allocates little: a small buffer, never the body.
    let pm = MemPmem::from_bytes(img);
    let (_, _, peak) = counting::measure(|| FileSystem::estimate_mount(&pm).unwrap());
    assert!((peak as u64) < est.body_len.min(64 << 10) + (16 << 10), "the estimate took {peak} bytes");
}
