//! DRAM cost of a mounted file system: heap bytes per file and per extent,
//! measured with a counting allocator around `FileSystem::mount`.
//!
//! `cargo run -p fsdax-fs --example dram_cost --release`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use fsdax_fs::{FileSystem, MemPmem, MkfsOptions};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `dealloc` is passed on.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Heap bytes held by a mounted image with `files` files of `extents`
/// extents each (one directory, 12-byte names).
fn mounted_bytes(files: u64, extents: u64) -> isize {
    let mut fs = FileSystem::mkfs(MemPmem::new(1 << 30), MkfsOptions::default()).unwrap();
    let r = fs.root();
    for i in 0..files {
        let f = fs.create(r, format!("file{i:08}").as_bytes()).unwrap();
        // Every other block: extents that cannot merge.
        for e in 0..extents {
            fs.write(f, e * 2 * 4096, b"x").unwrap();
        }
    }
    let bytes = fs.unmount().unwrap().into_bytes();
    let before = LIVE.load(Ordering::Relaxed);
    let fs = FileSystem::mount(MemPmem::from_bytes(bytes)).unwrap();
    let after = LIVE.load(Ordering::Relaxed);
    drop(fs);
    after - before
}

fn main() {
    let base = mounted_bytes(0, 0);
    let n = 20_000;
    let files = mounted_bytes(n, 0) - base;
    let with_extents = mounted_bytes(n / 10, 8) - base;
    let per_file = files as f64 / n as f64;
    let per_extent = (with_extents as f64 - per_file * (n / 10) as f64) / (n / 10 * 8) as f64;
    println!(
        "{{\"empty_fs_bytes\": {base}, \"bytes_per_file\": {per_file:.0}, \"bytes_per_extent\": {per_extent:.0}}}"
    );
    println!("DRAM after mount: {per_file:.0} bytes per empty file (12-byte name), {per_extent:.0} bytes per extent");
}
