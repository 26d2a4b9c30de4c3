//! DRAM cost of a mounted file system: heap bytes per file and per extent,
//! resident after `FileSystem::mount` and at its peak, measured with a
//! counting allocator (the one `fs/tests/memory.rs` checks the estimate
//! with), beside what `FileSystem::estimate_mount` predicts.
//!
//! `cargo run -p fsdax-fs --example dram_cost --release`

#[path = "../tests/counting/mod.rs"]
mod counting;

use fsdax_fs::{FileSystem, MemPmem, MkfsOptions, MountOptions};

#[global_allocator]
static A: counting::Counting = counting::Counting;

/// Heap bytes (resident, peak) of mounting an image with `files` files of
/// `extents` extents each (one directory, 12-byte names), and the
/// estimate's (resident, peak).
fn mounted_bytes(files: u64, extents: u64) -> [f64; 4] {
    let mut fs = FileSystem::mkfs(MemPmem::new(1 << 30), MkfsOptions::default()).unwrap();
    let r = fs.root();
    for i in 0..files {
        let f = fs.create(r, format!("file{i:08}").as_bytes()).unwrap();
        // Every other block: extents that cannot merge.
        for e in 0..extents {
            fs.write(f, e * 2 * 4096, b"x").unwrap();
        }
    }
    let pm = fs.unmount().unwrap();
    let est = FileSystem::estimate_mount(&pm).unwrap();
    let (fs, resident, peak) = counting::measure(|| FileSystem::mount(pm).unwrap());
    drop(fs);
    [resident as f64, peak as f64, est.resident as f64, est.mount_peak(MountOptions::default()) as f64]
}

fn main() {
    let base = mounted_bytes(0, 0);
    let n = 20_000;
    let files = mounted_bytes(n, 0);
    let with_extents = mounted_bytes(n / 10, 8);
    let per_file: Vec<f64> = (0..4).map(|k| (files[k] - base[k]) / n as f64).collect();
    let per_extent: Vec<f64> =
        (0..4).map(|k| (with_extents[k] - base[k] - per_file[k] * (n / 10) as f64) / (n / 10 * 8) as f64).collect();
    println!(
        "{{\"empty_fs_bytes\": {}, \"bytes_per_file\": {:.0}, \"bytes_per_extent\": {:.0}, \"peak_bytes_per_file\": {:.0}, \
         \"peak_bytes_per_extent\": {:.0}, \"estimated_bytes_per_file\": {:.0}, \"estimated_bytes_per_extent\": {:.0}, \
         \"estimated_peak_bytes_per_file\": {:.0}, \"estimated_peak_bytes_per_extent\": {:.0}}}",
        base[0], per_file[0], per_extent[0], per_file[1], per_extent[1], per_file[2], per_extent[2], per_file[3],
        per_extent[3]
    );
    println!(
        "DRAM after mount: {:.0} bytes per empty file (12-byte name), {:.0} bytes per extent; while mounting at most \
         {:.0} and {:.0}; estimated {:.0} and {:.0} after, {:.0} and {:.0} at most",
        per_file[0], per_extent[0], per_file[1], per_extent[1], per_file[2], per_extent[2], per_file[3], per_extent[3]
    );
}
