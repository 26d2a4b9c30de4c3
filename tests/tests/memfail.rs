//! Memory failure from processes' point of view, in QEMU, with machine
//! checks injected through QMP: poisoned file blocks afterwards (EIO with
//! the neighbours intact, `fallocate(ZERO_RANGE)` clears, a punched bad
//! block stays out of free space, a reboot keeps the bad block and the
//! persistent event counter), the `mf` report and its Linux-worded log
//! lines, the default policy command, an action-required machine check in
//! the kernel's copy for `pread` (a short count, then EIO), the xfstests
//! layouts and ndctl's dax-poison through the scenario runner, and `unbind
//! pmem0` under four processes that fault, write and read files.

use std::time::Duration;

use fsdax_boot::fstool;
use fsdax_boot::qemu::Machine;
use fsdax_boot::qmp::Qmp;
use fsdax_tests::*;

/// Boots the shell on `pmem` (mounted at boot) with a QMP socket.
fn shell_with_qmp(name: &str, pmem: std::path::PathBuf) -> (Machine, Qmp) {
    let (mut m, qmp) = start_with_qmp(name, pmem, "shell");
    m.wait_for("mounted pmem0", BOOT_TIMEOUT).expect("the file system is mounted at boot");
    m.wait_for(PROMPT, BOOT_TIMEOUT).expect("prompt");
    (m, qmp)
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
    let offs: Vec<u64> = files.iter().map(|f| poison_rw_prepare(&mut m, f)).collect();
    for (i, off) in offs.iter().enumerate() {
        let phys = PMEM_BASE + off + 0x80;
        inject_mce(&mut qmp, SRAO, phys);
        let line = m
            .wait_for("recovery action for dax page: Recovered", BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("event {i}: {e}\n{}", m.transcript()));
        assert!(line.contains(&format!("Memory failure: {:#x}: recovery action", phys >> 12)), "{line}");
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

/// `unbind pmem0` while four processes fault, write and read files in
/// loops (stores through fresh shared mappings, 1 MiB `pwrite`s, `pread`s
/// checked byte for byte): each ends with `BUS_MCEERR_AO` at most once at
/// an address of its own mappings and then SIGBUS, an mmap error or
/// EIO/ENXIO, having read only right bytes before; nothing hangs for 60 s,
/// the console stays responsive, the device is dead (no mount, no raw
/// access), the removal is in the `mf` report, and the image checks clean
/// on the host afterwards.
#[test]
fn unbind_under_busy_processes_ends_them_with_an_error_and_leaves_a_clean_image() {
    let _s = scenario("unbind_under_busy_processes_ends_them_with_an_error_and_leaves_a_clean_image");
    let pmem = image_with("mf-unbind", &["poison_rw"]);
    let mut m = Machine::start(&options(Firmware::Bios, pmem.clone(), "shell")).expect("QEMU");
    m.wait_for("mounted pmem0", BOOT_TIMEOUT).expect("mounted at boot");
    m.wait_for(PROMPT, BOOT_TIMEOUT).expect("prompt");
    const FILES: [&str; 4] = ["/b1.dat", "/b2.dat", "/b3.dat", "/b4.dat"];
    for f in FILES {
        let out = command(&mut m, &format!("exec /bin/poison_rw busy {f} 4 removal &"));
        assert!(out.contains("started in the background"), "{out}");
        m.wait_for(&format!("busy faulting, writing and reading {f}"), BOOT_TIMEOUT).expect("the process runs");
    }
    std::thread::sleep(Duration::from_millis(500));
    let out = command(&mut m, "unbind pmem0");
    assert!(out.contains("pmem0: unbound (file system made consistent and unmounted)"), "{out}");
    // All four end within 60 s and pass their checks (the console stays
    // responsive meanwhile).
    let ended = |t: &str| t.matches("ok poison_rw_busy").count() + t.matches("FAIL poison_rw_busy").count();
    for _ in 0..240 {
        if ended(&m.transcript()) == FILES.len() {
            break;
        }
        assert!(command(&mut m, "uptime").contains("up"), "the console answers");
        std::thread::sleep(Duration::from_millis(250));
    }
    let text = m.transcript();
    assert_eq!(text.matches("ok poison_rw_busy").count(), FILES.len(), "{text}");
    let stops: Vec<&str> = text.lines().filter(|l| l.contains("busy stopped after")).collect();
    assert_eq!(stops.len(), FILES.len(), "{text}");
    // Told at most once, at an address of its own mappings (the program
    // checks that and passed).
    assert!(stops.iter().all(|l| l.contains("; 0 wrong bytes;")), "{stops:?}");
    let told = stops.iter().filter(|l| l.contains("1 SIGBUS BUS_MCEERR_AO") && l.contains("its own address")).count();
    eprintln!("unbind under four busy processes:\n{}", stops.join("\n"));
    assert!(command(&mut m, "fs mount").contains("unbound (removed)"), "no mount on a dead device");
    assert!(command(&mut m, "pmem read pmem0 0 64").contains("unbound (removed)"));
    assert!(command(&mut m, "pmem").contains("unbound: dead until reboot"));
    assert!(command(&mut m, "unbind pmem0").contains("already unbound"));
    let report = command(&mut m, "mf");
    assert!(report.contains("device removal"), "{report}");
    let removal = m.transcript().lines().find(|l| l.contains("Memory failure: device removal:")).map(str::to_string);
    assert!(
        removal.as_deref().is_some_and(|l| l.contains(&format!("{told} process(es) got SIGBUS BUS_MCEERR_AO"))),
        "the log line counts the processes that were told: {removal:?} {stops:?}"
    );
    // Every process holds a mapping of its file all along: each is told.
    assert_eq!(told, FILES.len(), "{stops:?}");
    m.send_line("poweroff").unwrap();
    assert_eq!(exit_code(m.wait_exit(BOOT_TIMEOUT).unwrap()), Some(ExitCode::Poweroff));
    fstool::run("fsck", &["--pmem".into(), pmem.to_str().unwrap().into()]).unwrap().expect("a clean image");
}

/// `unbind pmem0` while a process maps the raw device (the file system,
/// which held its program, unmounted) and reads it in a loop: it gets
/// `BUS_MCEERR_AO` once at an address of its mapping, then SIGBUS
/// `BUS_ADRERR` at its next touch, and `pread` and `mmap` of the device
/// are ENXIO; the log counts it.
#[test]
fn unbind_under_a_raw_device_mapping_tells_the_process_and_ends_its_access() {
    let _s = scenario("unbind_under_a_raw_device_mapping_tells_the_process_and_ends_its_access");
    let pmem = image_with("mf-unbind-raw", &["poison_rw"]);
    let mut m = Machine::start(&options(Firmware::Bios, pmem, "shell")).expect("QEMU");
    m.wait_for("mounted pmem0", BOOT_TIMEOUT).expect("mounted at boot");
    m.wait_for(PROMPT, BOOT_TIMEOUT).expect("prompt");
    let out = command(&mut m, "exec /bin/poison_rw rawmap /dev/pmem0 4 &");
    assert!(out.contains("started in the background"), "{out}");
    // The program is loaded; it opens the device once this unmount lets it.
    let out = command(&mut m, "fs umount");
    assert!(out.contains("unmounted"), "{out}");
    m.wait_for("rawmap mapped /dev/pmem0", BOOT_TIMEOUT).expect("the raw device is mapped");
    let out = command(&mut m, "unbind pmem0");
    assert!(out.contains("pmem0: unbound;"), "{out}");
    for _ in 0..240 {
        let t = m.transcript();
        if t.contains("ok poison_rw_rawmap") || t.contains("FAIL poison_rw_rawmap") {
            break;
        }
        assert!(command(&mut m, "uptime").contains("up"), "the console answers");
        std::thread::sleep(Duration::from_millis(250));
    }
    let text = m.transcript();
    assert!(text.contains("ok poison_rw_rawmap"), "{text}");
    let stop = text.lines().find(|l| l.contains("rawmap stopped after")).unwrap_or_else(|| panic!("{text}"));
    assert!(
        stop.contains("SIGBUS BUS_ADRERR; 1 SIGBUS BUS_MCEERR_AO") && stop.contains("then pread ENXIO, mmap ENXIO"),
        "{stop}"
    );
    let removal =
        text.lines().find(|l| l.contains("Memory failure: device removal:")).unwrap_or_else(|| panic!("{text}"));
    assert!(removal.contains("1 process(es) got SIGBUS BUS_MCEERR_AO"), "{removal}");
    m.send_line("poweroff").unwrap();
    assert_eq!(exit_code(m.wait_exit(BOOT_TIMEOUT).unwrap()), Some(ExitCode::Poweroff));
}

/// One try of a machine check during a process's 2 MiB `pread` loop:
/// `Ok(transcript)` if the program ended by itself, `Err(why)` if the
/// machine check landed outside the kernel's copy.
fn machine_check_during_pread(test: &str) -> Result<String, String> {
    let pmem = image_with(test, &["poison_rw"]);
    let (mut m, mut qmp) = start_with_qmp(test, pmem, "exec /bin/poison_rw readloop /r.dat");
    m.wait_for("readloop block 256 at device offset 0x", BOOT_TIMEOUT).expect("the reader runs");
    m.wait_for("\n", BOOT_TIMEOUT).expect("the whole line");
    let text = m.transcript();
    let off = text
        .lines()
        .find_map(|l| l.strip_prefix("poison_rw: readloop block 256 at device offset 0x"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no offset in {text}"));
    std::thread::sleep(Duration::from_millis(300));
    inject_mce(&mut qmp, SRAR, PMEM_BASE + off + 0x40);
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

/// Runs the named `scen_mf` scenarios on fsdax through the scenario
/// runner (one boot each) and returns every result line of every boot,
/// after checking that each boot ended as planned.
fn mf_scenarios(test: &str, names: &[&str]) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for r in run_fsdax_scenarios(test, names) {
        let phases = r["phases"].as_array().expect("phases");
        assert_eq!(phases.len() as u64, r["phases_planned"].as_u64().unwrap(), "a boot is missing: {r}");
        for p in phases {
            assert!(p["problem"].is_null(), "{}: {r}", p["problem"]);
            assert_eq!(p["ended"], "done", "{r}");
            assert_eq!(p["exit"], 0, "the program failed: {r}");
            lines.extend(p["results"].as_array().expect("results").iter().cloned());
        }
    }
    lines
}

/// The signals a process recorded: (si_code name, page, own address, lsb).
fn signals(l: &serde_json::Value) -> Vec<(String, u64, bool, u64)> {
    l["signals"]
        .as_array()
        .unwrap_or_else(|| panic!("no signals: {l}"))
        .iter()
        .map(|s| {
            (
                s["code"].as_str().unwrap_or("?").to_string(),
                s["page"].as_u64().unwrap_or(u64::MAX),
                s["addr_ok"] == true,
                s["lsb"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Microseconds from the poison request to the first signal of `l`.
fn first_signal_us(l: &serde_json::Value) -> f64 {
    l["signals"][0]["us"].as_f64().unwrap_or(f64::NAN)
}

/// The xfstests layouts 550 (one file), 551 (a reflink copy) and 552 (even
/// pages shared) on real DAX mappings, poisoned with `MADV_HWPOISON` and
/// with an action-required machine check the host injects: the
/// consumer gets `BUS_MCEERR_AR` at its own address of the page with lsb
/// 12 (once: a second SIGBUS is not queued while one is pending); the
/// other process `BUS_MCEERR_AO` at its own address at once when early,
/// nothing when late, and `BUS_MCEERR_AR` when it touches the page (which
/// is unmapped everywhere); every other page reads right through both
/// mappings and `pread`, the poisoned one is EIO. Then ndctl's dax-poison:
/// a 2 MiB mapping poisoned in the middle is split (its neighbours stay
/// mapped), AR lsb 12; punch, pwrite, fsync and the page reads back. And
/// the recovery write: a whole-page pwrite clears the poison, the page maps
/// again; a page not rewritten is still EIO after a reboot.
#[test]
fn poison_reaches_every_process_that_maps_the_page() {
    let _s = scenario("poison_reaches_every_process_that_maps_the_page");
    // The `_ar` cases: the host raises an action-required machine check
    // while the poisoner spins on the page (and the reader sleeps, still
    // mapping it), as a load of a bad line would.
    let names = [
        "xfs550_madvise",
        "xfs551_madvise",
        "xfs552_madvise",
        "xfs550_ar",
        "xfs551_ar",
        "xfs552_ar",
        "dax_poison",
        "madvise_untouched",
        "raw_poison",
        "recovery",
    ];
    let lines = mf_scenarios("mf-processes", &names);
    let mut timings = Vec::new();
    for scen in &names[..6] {
        for case in ["late_1", "late_2", "early_1", "early_2"] {
            let get = |proc_: &str| {
                lines
                    .iter()
                    .find(|l| l["scenario"] == *scen && l["case"] == case && l["proc"] == proc_)
                    .unwrap_or_else(|| panic!("no {scen}/{case}/{proc_} in {lines:?}"))
            };
            let (poisoner, reader) = (get("poisoner"), get("reader"));
            let early = case.starts_with("early");
            let npoison: u64 = if case.ends_with('2') { 2 } else { 1 };
            // Pages poisoned in the reader's file: 552 shares only page 4.
            let reader_hit = |pg: u64| pg == 4 || (pg == 5 && npoison == 2 && !scen.starts_with("xfs552"));

            let ps = signals(poisoner);
            let expected = if scen.ends_with("_ar") { npoison as usize } else { 1 };
            assert_eq!(ps.len(), expected, "{scen}/{case}: the poisoner's signals: {poisoner}");
            for (i, (code, page, own, lsb)) in ps.iter().enumerate() {
                assert_eq!((code.as_str(), *own, *lsb), ("BUS_MCEERR_AR", true, 12), "{scen}/{case}: {poisoner}");
                assert_eq!(*page, 4 + i as u64, "{scen}/{case}: {poisoner}");
            }
            timings.push((format!("{scen}/{case} poisoner AR"), first_signal_us(poisoner)));

            let rs = signals(reader);
            let ao: Vec<_> = rs.iter().filter(|s| s.0 == "BUS_MCEERR_AO").collect();
            assert_eq!(!ao.is_empty(), early, "{scen}/{case}: AO only to early processes: {reader}");
            if early {
                // Told at once (within the poisoner's 500 ms wait), at most
                // once per poisoned page; the reader may touch the page
                // between its unmap and the notice (an AR just before the
                // AO, a window Linux has too).
                assert!(ao.len() as u64 <= npoison, "{scen}/{case}: {reader}");
                let first_ao = rs.iter().position(|s| s.0 == "BUS_MCEERR_AO").unwrap();
                let us = reader["signals"][first_ao]["us"].as_f64().unwrap_or(f64::NAN);
                assert!(us < 500_000.0, "{scen}/{case}: told at once: {reader}");
                timings.push((format!("{scen}/{case} reader AO"), us));
            }
            for (code, page, own, lsb) in &rs {
                assert!(code == "BUS_MCEERR_AO" || code == "BUS_MCEERR_AR", "{scen}/{case}: {reader}");
                assert!(reader_hit(*page) && *own && *lsb == 12, "{scen}/{case}: {reader}");
            }
            // The reader touches the page every 10 ms: it finds it unmapped.
            assert!(rs.iter().any(|s| s.0 == "BUS_MCEERR_AR"), "{scen}/{case}: {reader}");

            for (l, who) in [(poisoner, "poisoner"), (reader, "reader")] {
                assert!(l["other_pages"].as_u64().unwrap() >= 14, "{scen}/{case} {who}: {l}");
                assert_eq!(l["other_pages_bad_through_mapping"], 0, "{scen}/{case} {who}: {l}");
                assert_eq!(l["other_pages_bad_through_pread"], 0, "{scen}/{case} {who}: {l}");
                for p in l["poisoned"].as_array().unwrap() {
                    let pg = p["page"].as_u64().unwrap();
                    if who == "reader" && !reader_hit(pg) {
                        assert_eq!((p["read_at_end"].as_str(), p["pread_at_end"].as_str()), (Some("ok"), Some("ok")));
                        continue;
                    }
                    assert_eq!(p["read_at_end"], "SIGBUS BUS_MCEERR_AR", "{scen}/{case} {who}: {l}");
                    assert_eq!(p["pread_at_end"], "EIO", "{scen}/{case} {who}: {l}");
                }
            }
        }
    }
    for case in ["madvise", "ar"] {
        let l = lines
            .iter()
            .find(|l| l["scenario"] == "dax_poison" && l["case"] == case && l["proc"] == "poisoner")
            .unwrap_or_else(|| panic!("no dax_poison/{case} in {lines:?}"));
        assert_eq!(l["first_2m_physically_aligned_and_contiguous"], true, "a 2 MiB page to split: {l}");
        assert_eq!(signals(l), vec![("BUS_MCEERR_AR".to_string(), 256, true, 12)], "{l}");
        assert_eq!(l["neighbours_still_mapped"], true, "the 2 MiB page was split: {l}");
        assert_eq!(l["poisoned_page_unmapped"], true, "{l}");
        for step in ["punch_hole", "pwrite", "fsync", "read_back_through_mapping", "read_back_through_pread"] {
            assert_eq!(l["after"][step], "ok", "{step}: {l}");
        }
        timings.push((format!("dax_poison/{case} AR"), first_signal_us(l)));
    }
    // MADV_HWPOISON of a page never touched: faulted in, then poisoned.
    let l = lines
        .iter()
        .find(|l| l["scenario"] == "madvise_untouched" && l["case"] == "madvise_untouched")
        .unwrap_or_else(|| panic!("no madvise_untouched in {lines:?}"));
    assert_eq!(l["present_before"], false, "{l}");
    assert_eq!(l["madvise"], "interrupted by SIGBUS", "{l}");
    // One for the madvise, one for the read through the mapping.
    let ar3 = ("BUS_MCEERR_AR".to_string(), 3, true, 12);
    assert_eq!(signals(l), vec![ar3.clone(), ar3], "{l}");
    assert_eq!(l["after"]["signals_from_second_madvise"], 0, "{l}");
    for (step, want) in [
        ("pread", "EIO"),
        ("pread_neighbour_before", "ok"),
        ("pread_neighbour_after", "ok"),
        ("read_through_mapping", "SIGBUS BUS_MCEERR_AR"),
        ("second_madvise", "EHWPOISON"),
    ] {
        assert_eq!(l["after"][step], want, "{step}: {l}");
    }
    timings.push(("madvise_untouched AR".to_string(), first_signal_us(l)));
    // The raw device mapped twice with 2 MiB pages: AR at the first
    // mapping's address; the page unmapped and both leaves split.
    let raw = lines
        .iter()
        .find(|l| l["scenario"] == "raw_poison" && l["case"] == "raw_poison")
        .unwrap_or_else(|| panic!("no raw_poison in {lines:?}"));
    assert_eq!(raw["first_2m_physically_aligned_and_contiguous"], true, "a 2 MiB leaf to split: {raw}");
    assert_eq!(raw["second_mapping_same_frames"], true, "{raw}");
    assert_eq!(raw["madvise"], "interrupted by SIGBUS", "{raw}");
    assert_eq!(signals(raw), vec![("BUS_MCEERR_AR".to_string(), 256 + 3, true, 12)], "{raw}");
    for m in ["first_mapping", "second_mapping"] {
        let l = &raw[m];
        assert_eq!(l["neighbours_still_mapped"], true, "{m}: the 2 MiB leaf was split: {raw}");
        assert_eq!(l["poisoned_page_unmapped"], true, "{m}: {raw}");
        assert_eq!(l["read_at_end"], "SIGBUS BUS_MCEERR_AR", "{m}: {raw}");
        assert_eq!(l["read_neighbour"], "ok", "{m}: {raw}");
    }
    assert_eq!(raw["signals_after_madvise"], 2, "one AR per read of the page: {raw}");
    assert_eq!(raw["pread"], "EIO", "{raw}");
    assert_eq!(raw["pread_neighbour"], "ok", "{raw}");
    timings.push(("raw_poison AR".to_string(), first_signal_us(raw)));
    // The recovery write: a whole-page pwrite of the poisoned page clears
    // it (pread and both mappings read the new bytes); after a reboot the
    // other, not rewritten, page is EIO before any machine check.
    let find = |scen: &str, case: &str| {
        lines
            .iter()
            .find(|l| l["scenario"] == scen && l["case"] == case && (l["proc"] == "poisoner" || l["proc"].is_null()))
            .unwrap_or_else(|| panic!("no {scen}/{case} in {lines:?}"))
    };
    let ar = find("recovery", "ar");
    assert_eq!(signals(ar), vec![("BUS_MCEERR_AR".to_string(), 5, true, 12)], "{ar}");
    for (step, want) in [
        ("pread", "EIO"),
        ("pread_neighbour_before", "ok"),
        ("pread_neighbour_after", "ok"),
        ("read_through_mapping", "SIGBUS BUS_MCEERR_AR"),
        ("recovery_pwrite", "ok"),
        ("pread_after_rewrite", "ok"),
        ("read_through_old_mapping", "ok"),
        ("read_through_new_mapping", "ok"),
    ] {
        assert_eq!(ar["after"][step], want, "{step}: {ar}");
    }
    let rewritten = find("recovery_verify", "ar_page_after_reboot");
    assert_eq!(rewritten["after"]["first_pread"], "ok (rewritten bytes)", "{rewritten}");
    let kept = find("recovery_verify", "ao_page_after_reboot");
    assert_eq!(kept["after"]["first_pread"], "EIO", "the bad block outlives the reboot: {kept}");
    assert_eq!(kept["after"]["pread_neighbour"], "ok", "{kept}");
    for (what, us) in timings {
        eprintln!("injection to signal: {what:<32} {:>9.1} ms", us / 1000.0);
    }
}
