//! Memory failure from processes' point of view, in QEMU, with machine
//! checks injected through QMP: poisoned file blocks afterwards (EIO with
//! the neighbours intact, `fallocate(ZERO_RANGE)` clears, a punched bad
//! block stays out of free space, a reboot keeps the bad block and the
//! persistent event counter), the `mf` report and its Linux-worded log
//! lines, the default policy command, an action-required machine check in
//! the kernel's copy for `pread` (a short count, then EIO), and `unbind
//! pmem0` under writing processes.

use std::time::Duration;

use fsdax_boot::fstool;
use fsdax_boot::qemu::Machine;
use fsdax_boot::qmp::Qmp;
use fsdax_tests::*;

/// QEMU places the NVDIMM at 4 GiB.
const PMEM_BASE: u64 = 0x1_0000_0000;
/// Action optional (memory scrub): MCi_STATUS, MCG_STATUS.
const SRAO: (&str, &str) = ("0xbd000000000000c0", "0x5");

/// Boots the shell on `pmem` (mounted at boot) with a QMP socket.
fn shell_with_qmp(name: &str, pmem: std::path::PathBuf) -> (Machine, Qmp) {
    let qmp_path = fsdax_boot::output_dir().join("tests").join(format!("{name}.qmp"));
    let _ = std::fs::remove_file(&qmp_path);
    let mut opts = options(Firmware::Bios, pmem, "shell");
    opts.qmp = Some(qmp_path.clone());
    let mut m = Machine::start(&opts).expect("QEMU");
    let qmp = Qmp::connect(&qmp_path, BOOT_TIMEOUT).expect("QMP");
    m.wait_for("mounted pmem0", BOOT_TIMEOUT).expect("the file system is mounted at boot");
    m.wait_for(PROMPT, BOOT_TIMEOUT).expect("prompt");
    (m, qmp)
}

/// An action-optional machine check at physical `phys`, as a patrol scrub
/// would report it.
fn inject_ao(qmp: &mut Qmp, phys: u64) {
    let cmd = format!("mce -b 0 9 {} {} {phys:#x} 0x86", SRAO.0, SRAO.1);
    let out = qmp.hmp(&cmd).expect("mce");
    assert!(out.trim().is_empty(), "`{cmd}` said: {out}");
}

/// `poison_rw prepare FILE`: the device offset of the file's block 1.
fn prepare(m: &mut Machine, file: &str) -> u64 {
    let out = command(m, &format!("exec /bin/poison_rw prepare {file}"));
    assert!(out.contains("ok poison_rw_prepare") && out.contains("exit 0"), "{out}");
    let off = out
        .lines()
        .find_map(|l| l.strip_prefix("poison_rw: block 1 at device offset 0x"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no offset in {out}"));
    assert_eq!(off % 4096, 0, "{out}");
    off
}

fn run_ok(m: &mut Machine, mode: &str, file: &str) -> String {
    let out = command(m, &format!("exec /bin/poison_rw {mode} {file}"));
    assert!(out.contains(&format!("ok poison_rw_{mode}")) && out.contains("exit 0"), "{out}");
    out
}

/// Poison injected as a machine check into three files' blocks: reads stop
/// with EIO there and nowhere else; `fallocate(ZERO_RANGE)` of the whole
/// block clears it (the device forgets it too); a punched bad block is
/// never handed out again; the log and the `mf` report say what happened;
/// after a reboot the remaining bad block is EIO before any machine check.
#[test]
fn poisoned_file_blocks_after_a_machine_check_and_after_a_reboot() {
    let _s = scenario("poisoned_file_blocks_after_a_machine_check_and_after_a_reboot");
    let pmem = image_with("mf-after", &["poison_rw"]);
    let (mut m, mut qmp) = shell_with_qmp("mf-after", pmem.clone());
    let files = ["/zero.dat", "/punch.dat", "/keep.dat"];
    let offs: Vec<u64> = files.iter().map(|f| prepare(&mut m, f)).collect();
    for (i, off) in offs.iter().enumerate() {
        let phys = PMEM_BASE + off + 0x80;
        inject_ao(&mut qmp, phys);
        let line = m
            .wait_for("recovery action for dax page: Recovered", BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("event {i}: {e}\n{}", m.transcript()));
        assert!(line.contains(&format!("Memory failure: {:#x}: recovery action", phys >> 12)), "{line}");
        m.wait_for(PROMPT, BOOT_TIMEOUT).ok();
    }
    run_ok(&mut m, "zero", files[0]);
    let out = run_ok(&mut m, "punch", files[1]);
    assert!(out.contains(&format!("bad block {:#x} stays out of use", offs[1])), "{out}");
    run_ok(&mut m, "eio", files[2]);
    // The zeroed block is clear in the device and the file system; the
    // punched one and the kept one stay listed.
    let poison = command(&mut m, "poison");
    assert!(poison.contains("pmem0: 2 bad range(s)"), "{poison}");
    assert!(!poison.contains(&format!("{:#x}+", offs[0] + 0x80)), "{poison}");
    let report = command(&mut m, "mf");
    assert!(report.contains("default policy for processes that map a poisoned page: early"), "{report}");
    let row = report.lines().find(|l| l.starts_with("pmem0")).unwrap_or_else(|| panic!("{report}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[1..3], ["3", "3"], "3 events, 3 pages: {report}");
    assert_eq!(cols[6], "3", "3 events counted in the file system's metadata: {report}");
    assert_eq!(report.matches("machine check (action optional)  file data: Recovered").count(), 3, "{report}");
    // The default policy is shown and set from the console.
    assert!(command(&mut m, "mf policy late").contains("default memory-failure policy: late"));
    assert!(command(&mut m, "mf").contains("default policy for processes that map a poisoned page: late"));
    assert!(command(&mut m, "mf policy").contains("late (mapping processes get SIGBUS BUS_MCEERR_AR"));
    m.send_line("poweroff").unwrap();
    assert_eq!(exit_code(m.wait_exit(BOOT_TIMEOUT).unwrap()), Some(ExitCode::Poweroff));
    drop(qmp);
    // The next boot: the bad block is EIO at once (no machine check), the
    // neighbours read; the host's fsck names both bad blocks.
    let err = fstool::run("fsck", &["--pmem".into(), pmem.to_str().unwrap().into()]).unwrap().unwrap_err();
    assert_eq!(err.exit_status(), 1, "poisoned blocks make fsck report: {err}");
    let mut m = Machine::start(&options(Firmware::Bios, pmem, "shell")).expect("QEMU");
    m.wait_for("mounted pmem0", BOOT_TIMEOUT).expect("mounted at boot");
    m.wait_for(PROMPT, BOOT_TIMEOUT).expect("prompt");
    run_ok(&mut m, "eio", files[2]);
    assert!(command(&mut m, "mce").contains("0 machine check(s) logged"), "no machine check this boot");
    // The counter persisted; fsck prints it.
    let fsck = command(&mut m, "fs fsck");
    assert!(fsck.contains("events   3 memory failures recorded on this device since mkfs"), "{fsck}");
    m.send_line("poweroff").unwrap();
    assert_eq!(exit_code(m.wait_exit(BOOT_TIMEOUT).unwrap()), Some(ExitCode::Poweroff));
}

/// `unbind pmem0` while two processes write files in 1 MiB `pwrite` loops:
/// both end with EIO (nothing hangs), the console stays responsive, the
/// device is dead (no mount, no raw access), the removal is in the `mf`
/// report, and the image checks clean on the host afterwards.
#[test]
fn unbind_under_writing_processes_ends_them_with_an_error_and_leaves_a_clean_image() {
    let _s = scenario("unbind_under_writing_processes_ends_them_with_an_error_and_leaves_a_clean_image");
    let pmem = image_with("mf-unbind", &["poison_rw"]);
    let mut m = Machine::start(&options(Firmware::Bios, pmem.clone(), "shell")).expect("QEMU");
    m.wait_for("mounted pmem0", BOOT_TIMEOUT).expect("mounted at boot");
    m.wait_for(PROMPT, BOOT_TIMEOUT).expect("prompt");
    for f in ["/w1.dat", "/w2.dat"] {
        let out = command(&mut m, &format!("exec /bin/poison_rw writeloop {f} 8 &"));
        assert!(out.contains("started in the background"), "{out}");
        m.wait_for(&format!("writeloop writing {f}"), BOOT_TIMEOUT).expect("the writer runs");
    }
    std::thread::sleep(Duration::from_millis(500));
    let out = command(&mut m, "unbind pmem0");
    assert!(out.contains("pmem0: unbound (file system made consistent and unmounted)"), "{out}");
    // Both end within 60 s and pass their checks (the console stays
    // responsive meanwhile).
    for _ in 0..240 {
        if m.transcript().matches("ok poison_rw_writeloop").count() == 2 {
            break;
        }
        assert!(command(&mut m, "uptime").contains("up"), "the console answers");
        std::thread::sleep(Duration::from_millis(250));
    }
    let text = m.transcript();
    assert_eq!(text.matches("ok poison_rw_writeloop").count(), 2, "{text}");
    let stops: Vec<&str> = text.lines().filter(|l| l.contains("writeloop stopped after")).collect();
    assert_eq!(stops.len(), 2, "{text}");
    assert!(stops.iter().all(|l| l.trim_end().ends_with(": EIO") || l.trim_end().ends_with(": ENXIO")), "{stops:?}");
    assert!(command(&mut m, "fs mount").contains("unbound (removed)"), "no mount on a dead device");
    assert!(command(&mut m, "pmem read pmem0 0 64").contains("unbound (removed)"));
    assert!(command(&mut m, "pmem").contains("unbound: dead until reboot"));
    assert!(command(&mut m, "unbind pmem0").contains("already unbound"));
    let report = command(&mut m, "mf");
    assert!(report.contains("device removal"), "{report}");
    assert!(m.transcript().contains("Memory failure: device removal: 0 mapping(s) removed"), "{}", m.transcript());
    m.send_line("poweroff").unwrap();
    assert_eq!(exit_code(m.wait_exit(BOOT_TIMEOUT).unwrap()), Some(ExitCode::Poweroff));
    fstool::run("fsck", &["--pmem".into(), pmem.to_str().unwrap().into()]).unwrap().expect("a clean image");
}

/// Action required (a data load): MCi_STATUS, MCG_STATUS.
const SRAR: (&str, &str) = ("0xbd80000000000134", "0x7");

/// One try of a machine check during a process's 2 MiB `pread` loop:
/// `Ok(transcript)` if the program ended by itself, `Err(why)` if the
/// machine check landed outside the kernel's copy.
fn machine_check_during_pread(test: &str) -> Result<String, String> {
    let pmem = image_with(test, &["poison_rw"]);
    let qmp_path = fsdax_boot::output_dir().join("tests").join(format!("{test}.qmp"));
    let _ = std::fs::remove_file(&qmp_path);
    let mut opts = options(Firmware::Bios, pmem, "exec /bin/poison_rw readloop /r.dat");
    opts.qmp = Some(qmp_path.clone());
    let mut m = Machine::start(&opts).expect("QEMU");
    let mut qmp = Qmp::connect(&qmp_path, BOOT_TIMEOUT).expect("QMP");
    m.wait_for("readloop block 256 at device offset 0x", BOOT_TIMEOUT).expect("the reader runs");
    m.wait_for("\n", BOOT_TIMEOUT).expect("the whole line");
    let text = m.transcript();
    let off = text
        .lines()
        .find_map(|l| l.strip_prefix("poison_rw: readloop block 256 at device offset 0x"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no offset in {text}"));
    std::thread::sleep(Duration::from_millis(300));
    let cmd = format!("mce -b 0 9 {} {} {:#x} 0x86", SRAR.0, SRAR.1, PMEM_BASE + off + 0x40);
    let out = qmp.hmp(&cmd).expect("mce");
    assert!(out.trim().is_empty(), "`{cmd}` said: {out}");
    let status = m.wait_exit(BOOT_TIMEOUT).expect("QEMU exit");
    let text = m.transcript();
    assert!(!text.contains("KERNEL PANIC"), "{text}");
    match exit_code(status) {
        Some(ExitCode::ProgramEnded) if text.contains("killed by SIGBUS (BUS_MCEERR_AR") => {
            Err(String::from("the machine check hit the reader in user mode"))
        }
        Some(ExitCode::ProgramEnded) => Ok(text),
        Some(ExitCode::FatalMachineCheck) => {
            assert!(text.contains("FATAL MACHINE CHECK") && text.contains("RIP 0xffff"), "{text}");
            Err(String::from("the machine check hit kernel code outside the copy"))
        }
        other => panic!("QEMU ended with {other:?}:\n{text}"),
    }
}

/// An action-required machine check while the kernel copies a file from
/// persistent memory for `pread`: the call returns the bytes before the
/// poison (a short count, all correct), the next `pread` there is EIO, and
/// the kernel runs on. The injection lands wherever the CPU is; the reader
/// spends nearly all its time in the kernel's copy, and only a landing
/// elsewhere (user mode: SIGBUS; other kernel code: fatal by design) earns
/// another try.
#[test]
fn a_machine_check_in_the_kernels_copy_for_pread_gives_a_short_count_then_eio() {
    let _s = scenario("a_machine_check_in_the_kernels_copy_for_pread_gives_a_short_count_then_eio");
    for attempt in 0..3 {
        match machine_check_during_pread(&format!("mf-pread-{attempt}")) {
            Ok(text) => {
                assert!(text.contains("ok poison_rw_readloop"), "{text}");
                let line =
                    text.lines().find(|l| l.contains("readloop stopped after")).unwrap_or_else(|| panic!("{text}"));
                assert!(line.contains(&format!("{} bytes", (1 << 20) + 0x40)), "stops at the poisoned line: {line}");
                assert!(text.contains("exec status: 0"), "{text}");
                return;
            }
            Err(why) => eprintln!("attempt {attempt}: {why}; trying again"),
        }
    }
    panic!("the machine check missed the kernel's copy three times");
}
