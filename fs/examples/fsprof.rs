//! Counts what each file operation of the benchmark costs the file system,
//! per operation: heap allocations, device stores (calls and bytes),
//! cache-line flush calls and fences. Counts, not times: they are the same
//! on the host as in the kernel, so a change to the write path can be
//! judged here before it is measured under QEMU (`./fsdax bench`).
//! Run: `cargo run --release -p fsdax-fs --example fsprof`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use fsdax_fs::*;

/// The system allocator, counting allocations.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call goes to the system allocator with the same arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What the device saw.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    allocs: u64,
    stores: u64,
    store_bytes: u64,
    flushes: u64,
    fences: u64,
}

/// An in-memory device that counts its calls.
#[derive(Debug)]
struct CountingPmem {
    inner: MemPmem,
    c: Counts,
}

impl Pmem for CountingPmem {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn load(&self, offset: u64, buf: &mut [u8]) -> std::result::Result<(), (MediaError, usize)> {
        self.inner.load(offset, buf)
    }
    fn store(&mut self, offset: u64, data: &[u8]) -> std::result::Result<(), (MediaError, usize)> {
        self.c.stores += 1;
        self.c.store_bytes += data.len() as u64;
        self.inner.store(offset, data)
    }
    fn flush(&mut self, offset: u64, len: u64) {
        self.c.flushes += 1;
        self.inner.flush(offset, len)
    }
    fn fence(&mut self) {
        self.c.fences += 1;
        self.inner.fence()
    }
}

type Fs = FileSystem<CountingPmem>;

/// Runs `op` `n` times and prints the counts per operation.
fn measure(fs: &mut Fs, name: &str, n: u64, mut op: impl FnMut(&mut Fs, u64)) {
    fs.pmem_mut().c = Counts::default();
    let a0 = ALLOCS.load(Relaxed);
    for i in 0..n {
        op(fs, i);
    }
    let c = Counts { allocs: ALLOCS.load(Relaxed) - a0, ..fs.pmem_mut().c };
    let per = |v: u64| v as f64 / n as f64;
    println!(
        "{name:<30} {:>8.2} {:>8.2} {:>12.0} {:>8.2} {:>8.2}",
        per(c.allocs),
        per(c.stores),
        per(c.store_bytes),
        per(c.flushes),
        per(c.fences)
    );
}

fn main() {
    let opts = MkfsOptions { uuid: [1; 16], ..Default::default() };
    let pm = CountingPmem { inner: MemPmem::from_bytes(vec![0xFF; 1 << 30]), c: Counts::default() };
    let mut fs = FileSystem::mkfs(pm, opts).unwrap();
    let r = fs.root();
    let blk = vec![0xA5u8; 4096];
    let chunk = vec![7u8; 2 << 20];
    println!("per operation:                   allocs   stores  store bytes  flushes   fences");

    let f = fs.create(r, b"append").unwrap();
    measure(&mut fs, "4 KiB append (pwrite at EOF)", 4096, |fs, i| {
        fs.write(f, i * 4096, &blk).unwrap();
    });
    measure(&mut fs, "4 KiB overwrite", 4096, |fs, i| {
        fs.write(f, (i * 7919 % 4096) * 4096, &blk).unwrap();
    });
    measure(&mut fs, "range_shared (4 KiB)", 4096, |fs, i| {
        assert!(!fs.range_shared(f, (i * 7919 % 4096) * 4096, 4096).unwrap());
    });
    let big = fs.create(r, b"big").unwrap();
    measure(&mut fs, "2 MiB write (new file)", 128, |fs, i| {
        fs.write(big, i * (2 << 20), &chunk).unwrap();
    });
    measure(&mut fs, "2 MiB overwrite", 128, |fs, i| {
        fs.write(big, i * (2 << 20), &chunk).unwrap();
    });
    let d = fs.mkdir(r, b"many").unwrap();
    measure(&mut fs, "create (empty file)", 1000, |fs, i| {
        fs.create(d, format!("f{i:06}").as_bytes()).unwrap();
    });
    let clone = fs.create(r, b"clone").unwrap();
    measure(&mut fs, "reflink of 256 MiB", 1, |fs, _| fs.reflink(big, clone).unwrap());
    measure(&mut fs, "first 4 KiB write into a clone", 1, |fs, _| {
        fs.write(clone, 0, &blk).unwrap();
    });
}
