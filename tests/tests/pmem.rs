//! Persistent memory and machine checks, driven from the host: the NFIT
//! QEMU builds, durability in the NVDIMM backing file, and machine checks
//! injected through QMP (`human-monitor-command` `mce ...`), as
//! `../shared/brief/PLATFORM.md` measured them.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use fsdax_boot::qemu::Machine;
use fsdax_boot::qmp::Qmp;
use fsdax_tests::*;

fn boot_with_qmp(name: &str) -> (Machine, Qmp) {
    let (mut m, qmp) = start_with_qmp(name, fresh_pmem(name), "shell");
    m.wait_for(PROMPT, BOOT_TIMEOUT).expect("prompt");
    (m, qmp)
}

#[test]
fn nfit_matches_the_committed_fixture() {
    let _scenario = scenario("nfit_matches_the_committed_fixture");
    let mut m = boot_shell("nfit");
    let dump = command(&mut m, "acpi dump NFIT");
    let bytes: Vec<u8> = dump
        .lines()
        .filter_map(|l| l.split_once(':').filter(|(a, _)| a.len() == 4 && u32::from_str_radix(a, 16).is_ok()))
        .flat_map(|(_, hex)| hex.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect::<Vec<_>>())
        .collect();
    let fixture = fsdax_boot::workspace_root().join("drivers/tests/fixtures/qemu-nfit-256m.bin");
    assert_eq!(bytes, std::fs::read(fixture).unwrap(), "QEMU's NFIT differs from the fixture:\n{dump}");
    let pmem = command(&mut m, "pmem");
    assert!(pmem.contains("pmem0  phys 0x100000000  size 256 MiB"), "{pmem}");
    assert!(pmem.contains("128x2M"), "256 MiB at 4 GiB maps with 2 MiB pages: {pmem}");
}

#[test]
fn action_optional_poison_is_recorded_and_reads_give_eio() {
    let _scenario = scenario("action_optional_poison_is_recorded_and_reads_give_eio");
    let (mut m, mut qmp) = boot_with_qmp("srao");
    let off = 0x20_0000 + 0x140;
    inject_mce(&mut qmp, SRAO, PMEM_BASE + off);
    let line = m.wait_for("recorded as bad block", BOOT_TIMEOUT).expect("memory_failure line");
    assert!(line.contains("memory failure: pmem0 offset 0x200140 len 64"), "{line}");
    assert!(line.contains("action optional"), "{line}");
    let poison = command(&mut m, "poison");
    assert!(poison.contains("pmem0: 1 bad range(s)") && poison.contains("0x200140+0x40"), "{poison}");
    let page = command(&mut m, "pmem read 0 0x200000 4096");
    assert!(page.contains("EIO: poisoned range 0x200140+0x40 (320 bytes copied before it)"), "{page}");
    for neighbour in ["0x1ff000", "0x201000"] {
        let out = command(&mut m, &format!("pmem read 0 {neighbour} 4096"));
        assert!(!out.contains("EIO") && out.contains(&neighbour[2..]), "neighbour {neighbour}: {out}");
    }
    let mce = command(&mut m, "mce");
    assert!(mce.contains("1 machine check(s) logged") && mce.contains("action optional"), "{mce}");
    // The console still works, and a recovery write clears the page.
    let rec = command(&mut m, "pmem recover 0 0x200000 0x5a 4096");
    assert!(rec.contains("64 poisoned bytes cleared"), "{rec}");
    let page = command(&mut m, "pmem read 0 0x200000 4096");
    assert!(!page.contains("EIO") && page.contains(" 5a 5a"), "{page}");
}

#[test]
fn action_required_in_a_machine_check_safe_copy_returns_eio() {
    let _scenario = scenario("action_required_in_a_machine_check_safe_copy_returns_eio");
    let (mut m, mut qmp) = boot_with_qmp("srar-mcsafe");
    let off = 0x30_0000 + 0x80;
    m.send_line("pmem mcloop 0 0x300000 60").unwrap();
    m.wait_for("mcloop: running", BOOT_TIMEOUT).expect("copy loop started");
    std::thread::sleep(Duration::from_millis(200));
    inject_mce(&mut qmp, SRAR, PMEM_BASE + off);
    let out = m.wait_for(PROMPT, Duration::from_secs(90)).expect("copy loop ended");
    assert!(out.contains("EIO: poisoned range 0x300080+0x40"), "the copy did not return EIO:\n{}", m.transcript());
    assert!(!m.transcript().contains("FATAL"), "{}", m.transcript());
    let mce = command(&mut m, "mce");
    assert!(mce.contains("recovered"), "{mce}");
    let poison = command(&mut m, "poison");
    assert!(poison.contains("0x300080+0x40"), "{poison}");
    let tasks = command(&mut m, "tasks");
    assert!(tasks.contains("memory-failure"), "the kernel runs on: {tasks}");
}

#[test]
fn action_required_in_ordinary_kernel_code_is_fatal() {
    let _scenario = scenario("action_required_in_ordinary_kernel_code_is_fatal");
    let (mut m, mut qmp) = boot_with_qmp("srar-fatal");
    // The guest may stop QEMU before QMP answers: the reply is not awaited.
    let _ = qmp.hmp(&format!("mce -b 0 9 {} {} {:#x} 0x86", SRAR.0, SRAR.1, PMEM_BASE + 0x40_0000));
    m.wait_for("FATAL MACHINE CHECK", BOOT_TIMEOUT).expect("fatal report");
    let status = m.wait_exit(BOOT_TIMEOUT).expect("exit");
    let report = m.transcript();
    assert!(report.contains("bank 9: STATUS 0xbd80000000000134 ADDR 0x100400000"), "{report}");
    assert!(report.contains("RIP 0x") && report.contains("task "), "{report}");
    assert_eq!(exit_code(status), Some(ExitCode::FatalMachineCheck), "status {status:?}");
}

fn read_file_range(path: &PathBuf, off: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn writes_persist_in_the_backing_file_and_across_boots() {
    let _scenario = scenario("writes_persist_in_the_backing_file_and_across_boots");
    let pmem = fresh_pmem("persist");
    let mut m = Machine::start(&options(Firmware::Bios, pmem.clone(), "shell")).unwrap();
    m.wait_for(PROMPT, BOOT_TIMEOUT).unwrap();
    let out = command(&mut m, "pmem write 0 0x123000 0xa5 8192");
    assert!(out.contains("wrote 8192 bytes"), "{out}");
    m.send_line("poweroff").unwrap();
    assert_eq!(exit_code(m.wait_exit(BOOT_TIMEOUT).unwrap()), Some(ExitCode::Poweroff));
    drop(m);
    let bytes = read_file_range(&pmem, 0x123000 - 16, 8192 + 32);
    assert!(bytes[..16].iter().all(|&b| b == 0), "wrote before the range");
    assert!(bytes[16..16 + 8192].iter().all(|&b| b == 0xa5), "bytes missing from the backing file");
    assert!(bytes[16 + 8192..].iter().all(|&b| b == 0), "wrote after the range");
    // A second boot on the same file reads them back.
    let mut m = Machine::start(&options(Firmware::Bios, pmem, "shell")).unwrap();
    m.wait_for(PROMPT, BOOT_TIMEOUT).unwrap();
    let out = command(&mut m, "pmem read 0 0x124ff0 32");
    assert!(out.contains("0000124ff0: a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5 a5"), "{out}");
    assert!(out.contains("0000125000: 00 00 00"), "{out}");
}

#[test]
fn bench_pmem_prints_one_json_line_per_measurement() {
    let _scenario = scenario("bench_pmem_prints_one_json_line_per_measurement");
    let mut m = boot("bench", "bench pmem");
    m.wait_for("bench: done", BOOT_TIMEOUT).expect("bench finished");
    let status = m.wait_exit(BOOT_TIMEOUT).unwrap();
    assert_eq!(exit_code(status), Some(ExitCode::BenchDone));
    let lines: Vec<serde_json::Value> = m
        .transcript()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect();
    let names = ["write_plain", "write_nt", "write_clwb", "read_mc", "read_plain"];
    assert_eq!(lines.len(), names.len() * 3, "{lines:?}");
    for name in names {
        for size in [4096u64, 2 << 20, 64 << 20] {
            let l = lines.iter().find(|l| l["name"] == name && l["size"] == size).expect("a measurement");
            assert!(l["cycles"].as_u64().unwrap() > 0 && l["bytes"].as_u64().unwrap() >= size, "{l}");
            assert!(l["gbps"].as_f64().is_some(), "{l}");
        }
    }
}

#[test]
fn bench_pmem_refuses_a_device_that_holds_a_file_system() {
    let _scenario = scenario("bench_pmem_refuses_a_device_that_holds_a_file_system");
    let mut m = boot_shell("bench-refuses");
    let out = command(&mut m, "fs mkfs");
    assert!(out.contains("formatted pmem0"), "{out}");
    // Formatted but not mounted: the raw benchmark would overwrite the
    // backup superblock at the end of the device.
    let out = command(&mut m, "bench pmem");
    assert!(out.contains("refused") && out.contains("fsdax file system"), "{out}");
    assert!(!out.contains("{\"bench\""), "it measured anyway: {out}");
    let out = command(&mut m, "fs mount");
    assert!(out.contains("mounted pmem0 read-write"), "{out}");
    let out = command(&mut m, "bench pmem");
    assert!(out.contains("refused") && out.contains("fs umount"), "{out}");
    let out = command(&mut m, "fs fsck");
    assert!(out.contains("verdict  clean"), "{out}");
    let out = command(&mut m, "pmem");
    assert!(out.contains("holder file system"), "{out}");
}
