//! The file system in the kernel when persistent memory goes bad, driven
//! from the host: machine checks injected through QMP into the log, the
//! superblock, a header and a checkpoint body while processes fault, write
//! and read files (the file system rewrites them and stays mounted; every
//! acknowledged write survives, the processes see no error), bad blocks
//! that the device learns again at mount after a reboot, one fsck verdict
//! in the kernel and on the host, and a crafted image that the kernel's
//! mount refuses while the console keeps running.

use std::time::Duration;

use fsdax_boot::fstool;
use fsdax_boot::qemu::Machine;
use fsdax_boot::qmp::Qmp;
use fsdax_fs::format::{Header, Superblock, HDR_LEN};
use fsdax_tests::*;

fn tool(args: &[&str]) -> Result<(), fstool::ToolError> {
    let rest: Vec<String> = args[1..].iter().map(|s| s.to_string()).collect();
    fstool::run(args[0], &rest).expect("a file-system tool command")
}

fn boot_with_qmp(name: &str, pmem: std::path::PathBuf) -> (Machine, Qmp) {
    let (mut m, qmp) = start_with_qmp(name, pmem, "shell nomount");
    m.wait_for(PROMPT, BOOT_TIMEOUT).expect("prompt");
    (m, qmp)
}

/// The first hex number after `key` in `text`.
fn hex_after(text: &str, key: &str) -> u64 {
    let rest = &text[text.find(key).unwrap_or_else(|| panic!("{key:?} not in {text}")) + key.len()..];
    let h = rest.trim_start().trim_start_matches("0x");
    let end = h.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(h.len());
    u64::from_str_radix(&h[..end], 16).unwrap()
}

fn poweroff(mut m: Machine) {
    m.send_line("poweroff").unwrap();
    assert_eq!(exit_code(m.wait_exit(BOOT_TIMEOUT).unwrap()), Some(ExitCode::Poweroff));
}

#[test]
fn metadata_poison_is_repaired_and_every_acknowledged_write_survives() {
    let pmem = fresh_pmem("fs-meta-poison");
    let image = pmem.to_str().unwrap().to_string();
    tool(&["mkfs", "--pmem", &image, "--size", "256M"]).unwrap();
    fstool::install(&pmem, &programs().join("poison_rw"), "/bin/poison_rw").expect("installing a program");
    let (mut m, mut qmp) = boot_with_qmp("fs-meta-poison", pmem.clone());
    assert!(command(&mut m, "fs mount").contains("mounted pmem0 read-write"));
    // Two processes fault, write and read files all along, checking every
    // byte, until they are sent SIGTERM at the end.
    let mut busy = Vec::new();
    for f in ["/busy1.dat", "/busy2.dat"] {
        let out = command(&mut m, &format!("exec /bin/poison_rw busy {f} 2 sigterm &"));
        let pid = out
            .lines()
            .find_map(|l| l.trim().strip_prefix('[')?.split(']').next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no process number in {out}"));
        m.wait_for(&format!("busy faulting, writing and reading {f}"), BOOT_TIMEOUT).expect("the process runs");
        busy.push(pid);
    }
    // Poison in the log copy A, where the next record goes.
    let info = command(&mut m, "fs info");
    let log_a = hex_after(&info[info.find("log ").unwrap()..], " at ");
    inject_mce(&mut qmp, SRAO, PMEM_BASE + log_a);
    m.wait_for("still mounted read-write", BOOT_TIMEOUT).expect("the log was relocated");
    for i in 0..6 {
        let out = command(&mut m, &format!("fs write /w{i} written {i}"));
        assert!(out.contains("(durable)"), "{out}");
    }
    // The superblock, header copy A and checkpoint body copy A.
    let info = command(&mut m, "fs info");
    let body_a = hex_after(&info, "two copies starting at ");
    for (what, off) in [("superblock", 0x40u64), ("header", 0x1000), ("body", body_a + 0x80)] {
        inject_mce(&mut qmp, SRAO, PMEM_BASE + off);
        let line = m.wait_for("still mounted read-write", BOOT_TIMEOUT).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(line.contains("rewritten from memory"), "{what}: {line}");
    }
    let out = command(&mut m, "fs write /after still writable");
    assert!(out.contains("(durable)"), "{out}");
    // The processes ran through every repair without an error or a wrong byte.
    for pid in &busy {
        command(&mut m, &format!("kill {pid}"));
    }
    let ended = |t: &str| t.matches("ok poison_rw_busy").count() + t.matches("FAIL poison_rw_busy").count();
    for _ in 0..600 {
        if ended(&m.transcript()) == busy.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = m.transcript();
    assert_eq!(text.matches("ok poison_rw_busy").count(), busy.len(), "{text}");
    assert!(
        text.lines().filter(|l| l.contains("busy stopped after")).all(|l| l.contains(": SIGTERM; 0 wrong bytes;")),
        "{text}"
    );
    let fsck = command(&mut m, "fs fsck");
    assert!(fsck.contains("verdict  clean"), "{fsck}");
    let info = command(&mut m, "fs info");
    assert!(info.contains("state       read-write"), "{info}");
    assert!(command(&mut m, "fs umount").contains("unmounted"));
    poweroff(m);
    // The host sees a clean image holding every write.
    tool(&["fsck", "--pmem", &image]).unwrap();
    let dir = pmem.parent().unwrap().join("fs-meta-poison-files");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..6 {
        let out = dir.join(format!("w{i}"));
        tool(&["get", "--pmem", &image, &format!("/w{i}"), out.to_str().unwrap()]).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), format!("written {i}"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    // And the next boot mounts it read-write.
    let mut m = Machine::start(&options(Firmware::Bios, pmem, "shell nomount")).unwrap();
    m.wait_for(PROMPT, BOOT_TIMEOUT).unwrap();
    assert!(command(&mut m, "fs mount").contains("mounted pmem0 read-write"));
    let ls = command(&mut m, "fs ls /");
    assert!((0..6).all(|i| ls.contains(&format!("  w{i}"))) && ls.contains("  after"), "{ls}");
    poweroff(m);
}

#[test]
fn bad_blocks_are_known_to_the_device_after_a_reboot_and_fsck_agrees() {
    let pmem = fresh_pmem("fs-badblocks");
    let image = pmem.to_str().unwrap().to_string();
    tool(&["mkfs", "--pmem", &image, "--size", "256M"]).unwrap();
    let host = pmem.parent().unwrap().join("fs-badblocks-data.bin");
    std::fs::write(&host, vec![0x5au8; 3 * 4096]).unwrap();
    tool(&["put", "--pmem", &image, host.to_str().unwrap(), "/data"]).unwrap();
    let mut m = Machine::start(&options(Firmware::Bios, pmem.clone(), "shell nomount")).unwrap();
    m.wait_for(PROMPT, BOOT_TIMEOUT).unwrap();
    assert!(command(&mut m, "fs mount").contains("read-write"));
    let st = command(&mut m, "fs stat /data");
    let phys = hex_after(&st[st.find("device offset").unwrap()..], "0x0");
    // A software memory failure in the file's second block.
    let bad = phys + 4096;
    let out = command(&mut m, &format!("mf 0 {:#x}", bad + 0x100));
    assert!(out.contains("recorded as bad block"), "{out}");
    let kernel = command(&mut m, "fs fsck");
    let verdict = kernel.lines().find(|l| l.starts_with("verdict")).unwrap().to_string();
    assert!(
        verdict.contains(&format!("1 data block is poisoned (media errors, not corruption) at {bad:#x}+0x1000")),
        "{verdict}"
    );
    assert!(command(&mut m, "fs umount").contains("unmounted"));
    poweroff(m);
    // The host tool: the same verdict and wording (its own command prefix).
    assert_eq!(tool(&["fsck", "--pmem", &image]).unwrap_err().exit_status(), 1);
    // A reboot: the device knows the bad block once the file system is
    // mounted, before any machine check.
    let mut m = Machine::start(&options(Firmware::Bios, pmem, "shell nomount")).unwrap();
    m.wait_for(PROMPT, BOOT_TIMEOUT).unwrap();
    let raw = command(&mut m, &format!("pmem read 0 {bad:#x} 64"));
    assert!(!raw.contains("EIO"), "before mount the device knows nothing: {raw}");
    assert!(command(&mut m, "fs mount").contains("read-write"));
    let raw = command(&mut m, &format!("pmem read 0 {bad:#x} 64"));
    assert!(raw.contains("EIO: poisoned range"), "{raw}");
    let again = command(&mut m, "fs fsck");
    assert!(again.contains(&verdict), "one verdict: {again}");
    // Recovery: rewrite the page, then take it out of the list.
    assert!(command(&mut m, &format!("pmem recover 0 {bad:#x} 0x5a 4096")).contains("cleared"));
    let out = command(&mut m, &format!("fs clear-bad {bad:#x} 4096"));
    assert!(out.contains("cleared"), "{out}");
    assert!(command(&mut m, "fs fsck").contains("verdict  clean"));
    poweroff(m);
    std::fs::remove_file(host).unwrap();
}

#[test]
fn a_crafted_image_is_refused_and_the_kernel_keeps_running() {
    let pmem = fresh_pmem("fs-hostile");
    let image = pmem.to_str().unwrap().to_string();
    tool(&["mkfs", "--pmem", &image, "--size", "256M"]).unwrap();
    // Both header copies: valid CRCs, a 126 MiB body.
    let mut bytes = std::fs::read(&pmem).unwrap();
    let sb = Superblock::decode(&bytes[..4096]).unwrap();
    for c in 0..2u8 {
        let o = sb.geo.header_block(c) as usize * 4096;
        let mut h = Header::decode(&bytes[o..o + HDR_LEN], &sb.uuid).unwrap();
        h.body_len = 126 << 20;
        bytes[o..o + HDR_LEN].copy_from_slice(&h.encode());
    }
    std::fs::write(&pmem, &bytes).unwrap();
    let mut m = Machine::start(&options(Firmware::Bios, pmem, "shell nomount")).unwrap();
    m.wait_for(PROMPT, Duration::from_secs(120)).unwrap();
    let out = command(&mut m, "fs mount");
    assert!(out.contains("pmem0: cannot mount: the file system is corrupt"), "{out}");
    let out = command(&mut m, "fs ls /");
    assert!(out.contains("nothing is mounted"), "{out}");
    assert!(command(&mut m, "mem").contains("heap"), "the console answers");
    poweroff(m);
}
