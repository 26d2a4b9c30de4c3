//! The host tool and the kernel share one NVDIMM image: the host formats it
//! and copies files in, QEMU boots with it as the NVDIMM's backing file, the
//! console mounts the file system on pmem0 at boot, reads the host's files
//! and writes one of its own, and afterwards the host reads that file back and `fsck`
//! finds the image clean. Both speak through the same command front end, so
//! the console's output is checked for what a person reads.

use fsdax_boot::fstool;
use fsdax_boot::qemu::Machine;
use fsdax_tests::*;

fn tool(args: &[&str]) {
    let rest: Vec<String> = args[1..].iter().map(|s| s.to_string()).collect();
    match fstool::run(args[0], &rest) {
        Some(Ok(())) => {}
        Some(Err(e)) => panic!("fsdax {}: {e}", args.join(" ")),
        None => panic!("{} is not a file-system tool command", args[0]),
    }
}

#[test]
fn host_tool_and_kernel_share_the_nvdimm_image() {
    let _scenario = scenario("host_tool_and_kernel_share_the_nvdimm_image");
    let pmem = fresh_pmem("fsimage");
    let image = pmem.to_str().unwrap();
    let dir = pmem.parent().unwrap().join("fsimage-files");
    std::fs::create_dir_all(&dir).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let data_path = dir.join("data.bin");
    std::fs::write(&data_path, &data).unwrap();
    let hello_path = dir.join("hello.txt");
    std::fs::write(&hello_path, "hello from the host\n").unwrap();

    tool(&["mkfs", "--pmem", image, "--size", "256M"]);
    tool(&["put", "--pmem", image, data_path.to_str().unwrap(), "/data.bin"]);
    tool(&["put", "--pmem", image, hello_path.to_str().unwrap(), "/hello.txt"]);

    let mut m = Machine::start(&options(Firmware::Bios, pmem.clone(), "shell")).unwrap();
    // The console mounts pmem0's file system at boot.
    m.wait_for("mounted pmem0 (the fsdax file system)", BOOT_TIMEOUT).unwrap();
    m.wait_for(PROMPT, BOOT_TIMEOUT).unwrap();
    let out = command(&mut m, "fs mount");
    assert!(out.contains("pmem0 is already mounted"), "{out}");
    let ls = command(&mut m, "fs ls /");
    let data_line = ls.lines().find(|l| l.ends_with("  data.bin")).unwrap_or_else(|| panic!("{ls}"));
    assert!(data_line.starts_with("file") && data_line.contains(" 300000 "), "{ls}");
    assert!(ls.lines().any(|l| l.ends_with("  hello.txt")), "{ls}");
    let cat = command(&mut m, "fs cat /hello.txt");
    assert!(cat.contains("hello from the host"), "{cat}");
    let cat = command(&mut m, "fs cat /");
    assert!(cat.contains("fs: cat: /: is a directory (EISDIR)"), "{cat}");
    let out = command(&mut m, "fs write /from-kernel.txt written by the fsdax kernel");
    assert!(out.contains("wrote 27 bytes to /from-kernel.txt (durable)"), "{out}");
    let st = command(&mut m, "fs stat /data.bin");
    assert!(st.contains("/data.bin: regular file") && st.contains("size     300000 bytes (293.0 KiB)"), "{st}");
    let fsck = command(&mut m, "fs fsck");
    assert!(fsck.contains("verdict  clean"), "{fsck}");
    for dump in ["Some(", "MountInfo", "Stat {", "FsStats"] {
        assert!(!(out.clone() + &ls + &st + &fsck).contains(dump), "a Debug dump on the console");
    }
    let out = command(&mut m, "fs umount");
    assert!(out.contains("unmounted"), "{out}");
    let out = command(&mut m, "fs ls /");
    assert!(out.contains("nothing is mounted: `fs mount` mounts pmem0"), "{out}");
    let out = command(&mut m, "fs mount");
    assert!(out.contains("mounted pmem0 read-write"), "{out}");
    let out = command(&mut m, "fs umount");
    assert!(out.contains("unmounted"), "{out}");
    m.send_line("poweroff").unwrap();
    assert_eq!(exit_code(m.wait_exit(BOOT_TIMEOUT).unwrap()), Some(ExitCode::Poweroff));
    drop(m);

    tool(&["fsck", "--pmem", image]);
    let back = dir.join("from-kernel.txt");
    tool(&["get", "--pmem", image, "/from-kernel.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "written by the fsdax kernel");
    let data_back = dir.join("data.back");
    tool(&["get", "--pmem", image, "/data.bin", data_back.to_str().unwrap()]);
    assert!(std::fs::read(&data_back).unwrap() == data, "data.bin changed on its way through the kernel");
    std::fs::remove_dir_all(&dir).unwrap();
}
