//! Mounting never exhausts the kernel's RAM. The file system keeps all
//! metadata in DRAM and the kernel's allocation failures are fatal, so the
//! kernel estimates what a mount needs before decoding anything big and
//! refuses, saying what to do, when the heap cannot provide it. Images are
//! written straight through the file-system library (`image_with_files`).
//!
//! `FSDAX_MEMORY_FIGURES=1` makes `kernel_memory_per_file_and_per_extent`
//! print its figures as a JSON line too.

use fsdax_boot::qemu::Machine;
use fsdax_fs::MemoryEstimate;
use fsdax_tests::*;

const MIB: u64 = 1 << 20;

/// Boots the shell on `pmem` (of `size` bytes), with `-m mem` if given.
fn boot_on(pmem: std::path::PathBuf, size: u64, mem: Option<&str>) -> Machine {
    let mut opts = options(Firmware::Bios, pmem, "shell nomount");
    opts.pmem_size = size;
    if let Some(mem) = mem {
        opts.extra = vec!["-m".into(), mem.into()];
    }
    let mut m = Machine::start(&opts).expect("QEMU");
    m.wait_for(PROMPT, BOOT_TIMEOUT).expect("prompt");
    m
}

fn poweroff(mut m: Machine) {
    m.send_line("poweroff").unwrap();
    assert_eq!(exit_code(m.wait_exit(BOOT_TIMEOUT).unwrap()), Some(ExitCode::Poweroff));
}

/// The heap figures `mem` prints: (KiB used, KiB at most since the last
/// `mem`, MiB available).
fn heap(m: &mut Machine) -> (u64, u64, u64) {
    let out = command(m, "mem");
    let number_before = |key: &str| -> u64 {
        let at = out.find(key).unwrap_or_else(|| panic!("{key:?} not in {out}"));
        let digits: String = out[..at]
            .trim_end()
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits.parse().unwrap_or_else(|_| panic!("no number before {key:?} in {out}"))
    };
    (number_before(" KiB used"), number_before(" KiB at most"), number_before(" MiB more available"))
}

#[test]
fn a_mount_that_needs_more_ram_than_the_machine_has_is_refused_and_mounts_with_more() {
    let _scenario = scenario("fs_mount_refused_for_lack_of_ram_then_mounted_with_more");
    // 260,000 files: mounting takes about 60 MiB at its peak, more than a
    // 64 MiB machine has (without the check, the kernel panics in a
    // B-tree allocation).
    let (size, files) = (256 * MIB, 260_000);
    let pmem = fresh_pmem("fs-memory-refused");
    let est = image_with_files(&pmem, size, files, 0);
    let need = est.mount_peak(Default::default());
    let mut m = boot_on(pmem.clone(), size, Some("64M"));
    let (used0, _, _) = heap(&mut m);
    let out = command(&mut m, "fs mount");
    let expect = format!(
        "fs: pmem0's file system needs about {} MiB of RAM for its metadata ({files} files, 0 extents); ",
        need.div_ceil(MIB)
    );
    assert!(out.contains(&expect), "{out}");
    assert!(out.contains(" MiB are free: give the machine more memory (QEMU -m), or remove files"), "{out}");
    // Nothing was mounted, nothing taken, and the console keeps working.
    assert!(command(&mut m, "fs ls /").contains("nothing is mounted"));
    let (used, peak, _) = heap(&mut m);
    assert!(used < used0 + 256, "the refusal kept {} KiB", used - used0);
    assert!(peak < used0 + 1024, "the refusal allocated {} KiB at once", peak - used0);
    assert!(command(&mut m, "help").contains("fs"));
    poweroff(m);
    // With the default 512 MiB the same image mounts, and checks clean.
    let mut m = boot_on(pmem, size, None);
    let out = command(&mut m, "fs mount");
    assert!(out.contains("mounted pmem0 read-write"), "{out}");
    let df = command(&mut m, "fs df");
    assert!(df.contains(&format!(" {} ", files + 1)), "every inode is there: {df}");
    let fsck = command(&mut m, "fs fsck");
    assert!(fsck.contains("verdict  clean"), "{fsck}");
    assert!(command(&mut m, "fs umount").contains("unmounted"));
    poweroff(m);
}

/// Mounts `files` files of `extents` extents in the default machine and
/// returns (estimate, heap KiB used by the mounted state, KiB at most while
/// mounting, MiB available before, after).
fn mounted_cost(name: &str, files: u64, extents: u64) -> (MemoryEstimate, u64, u64, u64, u64) {
    let size = 256 * MIB;
    let pmem = fresh_pmem(name);
    let est = image_with_files(&pmem, size, files, extents);
    let mut m = boot_on(pmem, size, None);
    let (used0, _, avail0) = heap(&mut m);
    assert!(command(&mut m, "fs mount").contains("mounted pmem0 read-write"));
    let (used, peak, avail) = heap(&mut m);
    poweroff(m);
    (est, used - used0, peak - used0, avail0, avail)
}

#[test]
fn kernel_memory_per_file_and_per_extent() {
    let _scenario = scenario("fs_kernel_memory_per_file_and_extent");
    let (files, ext_files, extents) = (100_000u64, 5_000u64, 8u64);
    let (base, base_used, base_peak, ..) = mounted_cost("fs-memory-empty", 0, 0);
    let (fest, fused, fpeak, avail0, avail) = mounted_cost("fs-memory-files", files, 0);
    let (xest, xused, xpeak, ..) = mounted_cost("fs-memory-extents", ext_files, extents);
    // The estimate bounds what the kernel really took, resident and at the
    // peak of the mount, and is not far above it.
    for (what, est, used, peak) in
        [("empty", base, base_used, base_peak), ("files", fest, fused, fpeak), ("extents", xest, xused, xpeak)]
    {
        let (est_kib, est_peak_kib) = (est.resident.div_ceil(1024), est.mount_peak(Default::default()).div_ceil(1024));
        assert!(used <= est_kib, "{what}: the kernel kept {used} KiB, the estimate said {est_kib}");
        assert!(peak <= est_peak_kib, "{what}: the mount took {peak} KiB at most, the estimate said {est_peak_kib}");
        if what != "empty" {
            assert!(est_kib <= 2 * used && est_peak_kib <= 2 * peak, "{what}: estimate far above");
        }
    }
    assert!(avail0 - avail <= fpeak.div_ceil(1024) + 4, "the heap grew more than the mount used");
    let per_file = (fused - base_used) as f64 * 1024.0 / files as f64;
    let peak_per_file = (fpeak - base_peak) as f64 * 1024.0 / files as f64;
    let n_ext = ext_files * extents;
    let per_extent = ((xused - base_used) as f64 * 1024.0 - per_file * ext_files as f64) / n_ext as f64;
    let peak_per_extent = ((xpeak - base_peak) as f64 * 1024.0 - peak_per_file * ext_files as f64) / n_ext as f64;
    let line = format!(
        "{{\"kernel_bytes_per_file\": {per_file:.0}, \"kernel_bytes_per_extent\": {per_extent:.0}, \
         \"kernel_mount_peak_bytes_per_file\": {peak_per_file:.0}, \"kernel_mount_peak_bytes_per_extent\": \
         {peak_per_extent:.0}}}"
    );
    if std::env::var_os("FSDAX_MEMORY_FIGURES").is_some() {
        println!("{line}");
    }
    // 12-byte names: about 130 bytes a file, 70 an extent (docs/FORMAT.md).
    assert!((100.0..200.0).contains(&per_file) && (40.0..120.0).contains(&per_extent), "{line}");
}
