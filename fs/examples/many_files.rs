//! Writes an NVDIMM image holding many files, straight through the file
//! system library: for measuring how much RAM mounting takes and finding
//! how many files a machine can mount. Each file has a 12-byte name
//! (`f` and 11 digits) in the root directory and EXTENTS one-block extents
//! that cannot merge (every other block written). Prints the memory
//! estimate of the result as one JSON line.
//!
//! `cargo run -p fsdax-fs --example many_files --release -- IMAGE SIZE FILES [EXTENTS]`
//! (SIZE like `1G`; the image is written sparse, existing files replaced).

use std::io::{Seek, SeekFrom, Write};

use fsdax_fs::{FileSystem, MemPmem, MkfsOptions, MountOptions};
use fsdax_pmem_api::units::parse_size;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: many_files IMAGE SIZE FILES [EXTENTS]";
    let (Some(path), Some(size), Some(files)) = (args.first(), args.get(1), args.get(2)) else {
        return Err(usage.into());
    };
    let size = parse_size(size).map_err(|e| format!("SIZE {size}: {e}"))?;
    let files: u64 = files.parse().map_err(|_| format!("FILES {files}: not a number"))?;
    let extents: u64 = args.get(3).map_or(Ok(0), |e| e.parse()).map_err(|_| usage.to_string())?;
    // The longest log: fewer checkpoints while the files are made.
    let opts = MkfsOptions { log_blocks: Some(2048), ..MkfsOptions::default() };
    let mut fs = FileSystem::mkfs(MemPmem::new(size as usize), opts).map_err(|e| format!("mkfs: {e}"))?;
    let root = fs.root();
    for i in 0..files {
        let f = fs.create(root, format!("f{i:011}").as_bytes()).map_err(|e| format!("file {i}: {e}"))?;
        for e in 0..extents {
            fs.write(f, e * 2 * 4096, b"x").map_err(|e| format!("file {i}: write: {e}"))?;
        }
    }
    let pm = fs.unmount().map_err(|e| format!("unmount: {e}"))?;
    let est = FileSystem::estimate_mount(&pm).map_err(|e| format!("estimate: {e}"))?;
    // Sparse: only the blocks that hold something.
    let mut out = std::fs::File::create(path).map_err(|e| format!("{path}: {e}"))?;
    out.set_len(size).map_err(|e| format!("{path}: {e}"))?;
    for (i, block) in pm.bytes().chunks(4096).enumerate() {
        if block.iter().any(|&b| b != 0) {
            out.seek(SeekFrom::Start(i as u64 * 4096))
                .and_then(|_| out.write_all(block))
                .map_err(|e| format!("{path}: {e}"))?;
        }
    }
    println!(
        "{{\"files\": {files}, \"extents\": {}, \"body_bytes\": {}, \"resident_bytes\": {}, \"mount_peak_bytes\": {}, \"fsck_peak_bytes\": {}}}",
        est.extents,
        est.body_len,
        est.resident,
        est.mount_peak(MountOptions::default()),
        est.fsck_peak()
    );
    Ok(())
}
