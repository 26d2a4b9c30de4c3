//! DAX mappings of fsdax files in QEMU: the scenario programs
//! (`user/c/scen_dax.c`) run on fsdax through the scenario runner and its
//! fsdax `System` (one boot per scenario, two for the crash test: the host
//! stops the machine with QMP `quit` when the program asks, then boots
//! again on the same NVDIMM), and `/proc/self/pagemap` from a program.

use fsdax_tests::*;
use serde_json::Value;

/// The result lines of scenario `name`, after checking that each of its
/// boots ended as planned (no panic, no timeout, the file system clean
/// after every boot that was not a crash).
fn lines_of<'a>(results: &'a [Value], name: &str) -> Vec<&'a Value> {
    let r = results.iter().find(|r| r["scenario"] == name && r["system"] == "fsdax").unwrap_or_else(|| {
        panic!("no result for {name}: {results:?}");
    });
    let phases = r["phases"].as_array().expect("phases");
    assert_eq!(phases.len() as u64, r["phases_planned"].as_u64().unwrap(), "{name}: a boot is missing: {r}");
    let mut lines = Vec::new();
    for p in phases {
        assert!(p["problem"].is_null(), "{name}: {}: {r}", p["problem"]);
        if p["ended"] == "done" {
            assert_eq!(p["exit"], 0, "{name}: the program failed: {r}");
            assert_eq!(p["fsck"], "clean", "{name}: the file system does not check clean: {r}");
        } else {
            assert_eq!(p["ended"], "stopped on request", "{name}: {r}");
        }
        lines.extend(p["results"].as_array().expect("results"));
    }
    lines
}

/// Every check of the line holds.
fn checks_hold(l: &Value) {
    let checks = l["checks"].as_object().unwrap_or_else(|| panic!("no checks: {l}"));
    assert!(!checks.is_empty(), "{l}");
    for (name, ok) in checks {
        assert_eq!(ok, &Value::Bool(true), "check {name} failed: {l}");
    }
}

fn case<'a>(lines: &[&'a Value], scenario: &str, case: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["scenario"] == scenario && l["case"] == case)
        .unwrap_or_else(|| panic!("no {scenario}/{case} in {lines:?}"))
}

/// Holes read as zeros and allocate nothing, stores through a mapping and
/// pread/pwrite see each other at once (one process and two), a reflinked
/// 64 MiB clone stored into through `mmap` leaves the original alone and
/// copies 2 MiB per fault; the first touch of a 256 MiB file (written, and
/// sparse touched by stores), also on an aged file system, takes at most
/// 129 faults.
#[test]
fn dax_scenarios_hold_on_fsdax() {
    let _s = scenario("dax_scenarios_hold_on_fsdax");
    let results = run_fsdax_scenarios("dax-scenarios", &["dax_basic", "first_touch"]);

    let basic = lines_of(&results, "dax_basic");
    let hole = case(&basic, "hole_read", "hole");
    checks_hold(hole);
    assert_eq!(hole["blocks_before"], hole["blocks_after_mmap_read"], "{hole}");
    // /proc/self/pagemap: a hole maps the zero page (RAM), not the device.
    assert_eq!(hole["hole_phys_in_pmem"], false, "{hole}");
    checks_hold(case(&basic, "coherence", "one_file_two_paths"));
    let cow = case(&basic, "reflink_cow", "clone_then_store_every_page");
    checks_hold(cow);
    assert_eq!(cow["size"], 64 << 20, "{cow}");
    assert_eq!(cow["clone_shared_before_stores"], true, "the clone shared the blocks: {cow}");
    // One fault per 2 MiB: the copy-around is 2 MiB at a time.
    let faults = cow["faults"].as_u64().unwrap();
    assert!((1..=32).contains(&faults), "{faults} faults to copy 64 MiB: {cow}");
    assert_eq!(cow["majflt"].as_u64().unwrap(), faults, "each copies blocks (a major fault): {cow}");
    // The file system is mounted on the raw device: EBUSY.
    let raw = case(&basic, "raw_device", "map_the_device");
    assert_eq!(raw["open"], "EBUSY", "{raw}");

    let touch = lines_of(&results, "first_touch");
    for (scen, c) in [
        ("first_touch", "written"),
        ("first_touch", "sparse"),
        ("first_touch_aged", "aged_written"),
        ("first_touch_aged", "aged_sparse"),
    ] {
        let l = case(&touch, scen, c);
        assert_eq!(l["pages"], 65536, "{l}");
        let faults = l["faults"].as_u64().unwrap();
        assert!((1..=129).contains(&faults), "{scen}/{c}: {faults} faults for 256 MiB: {l}");
        // /proc/self/pagemap: the first page is a frame of the NVDIMM.
        assert_eq!(l["phys_in_pmem"], true, "{l}");
    }
}

/// 1,000 truncates while another process faults the truncated range: no
/// stale byte is ever readable after truncate returns (through pread or
/// the racing mapping), a read beyond EOF is SIGBUS, and the file system
/// checks clean. Then `MAP_SYNC` stores and an immediate stop of the
/// machine (QMP `quit`): after the reboot the extent is allocated and
/// holds the bytes.
#[test]
fn truncate_races_faults_and_map_sync_survives_a_crash() {
    let _s = scenario("truncate_races_faults_and_map_sync_survives_a_crash");
    let results = run_fsdax_scenarios("dax-truncate-crash", &["truncate_race", "map_sync_crash"]);

    let race = lines_of(&results, "truncate_race");
    let l = case(&race, "truncate_race", "truncate_while_faulting");
    checks_hold(l);
    assert_eq!(l["rounds"], 1000, "{l}");
    assert_eq!(l["sigbus_inside_eof"], 0, "{l}");
    assert_eq!(l["wrong_bytes_in_written_range"], 0, "{l}");
    assert_eq!(l["io_errors"], 0, "{l}");

    let crash = lines_of(&results, "map_sync_crash");
    let w = case(&crash, "map_sync_write", "write");
    assert_eq!(w["map_sync_mmap"], "ok", "MAP_SHARED_VALIDATE|MAP_SYNC is accepted: {w}");
    let v = case(&crash, "map_sync_verify", "map_sync");
    checks_hold(v);
    assert_eq!((v["pages_allocated"].as_u64(), v["pages_intact"].as_u64()), (Some(8), Some(8)), "{v}");
}

/// `FIFREEZE` while one process stores into pages it mapped writable,
/// another stores into new blocks of a sparse file (write faults that
/// allocate) and a third calls `pwrite` in a loop: while frozen none of
/// them gets anything through (the mapped pages were write-protected, the
/// faults and the `pwrite` wait), and two more such waiters killed with
/// SIGKILL die while it lasts; `FITHAW` lets the three go on, and the file
/// system checks clean after. Both layouts (4 KiB and 2 MiB entries).
#[test]
fn freeze_stops_stores_through_mappings_and_writes_until_thaw() {
    let _s = scenario("freeze_stops_stores_through_mappings_and_writes_until_thaw");
    let results = run_fsdax_scenarios("dax-freeze", &["freeze", "freeze_2m"]);
    for name in ["freeze", "freeze_2m"] {
        let lines = lines_of(&results, name);
        let l = case(&lines, "freeze", "stores_while_frozen");
        assert_eq!(l["thawed"], true, "{name}: {l}");
        assert_eq!(
            l["sparse_file_full_before_freeze"], false,
            "{name}: the storer of new blocks had nothing left to do: {l}"
        );
        for before in
            ["mapped_stores_before_freeze_300ms", "new_page_stores_before_freeze_300ms", "pwrites_before_freeze_300ms"]
        {
            assert!(l[before].as_u64().unwrap() > 0, "{name}: {before}: the storers were not running: {l}");
        }
        assert_eq!(l["mapped_stores_while_frozen_1s"], 0, "{name}: {l}");
        assert_eq!(l["new_page_stores_while_frozen_1s"], 0, "{name}: {l}");
        assert_eq!(l["pwrites_while_frozen_1s"], 0, "{name}: {l}");
        for after in ["mapped_stores_after_thaw_300ms", "new_page_stores_after_thaw_300ms", "pwrites_after_thaw_300ms"]
        {
            assert!(l[after].as_u64().unwrap() > 0, "{name}: {after}: thaw did not release it: {l}");
        }
        for st in ["storer_status_mapped", "storer_status_new", "storer_status_write"] {
            assert_eq!(l[st], 0, "{name}: {st}: {l}");
        }
        // Processes waiting on the freeze (in a write fault, in pwrite) die
        // of SIGKILL while it lasts.
        assert_eq!(l["killed_waiters_died_while_frozen"], true, "{name}: {l}");
        assert_eq!(
            (l["killed_status_fault"].as_i64(), l["killed_status_pwrite"].as_i64()),
            (Some(137), Some(137)),
            "{name}: {l}"
        );
    }
}

/// `/dev/pmem0` with the file system unmounted: `mmap` of 256 MiB and a
/// load from every page takes at most 128 faults (2 MiB entries) onto the
/// NVDIMM's frames, and of the whole 1 GiB device one fault (a 1 GiB
/// entry); stores through a shared
/// mapping and `pwrite`/`pread` see each other at once; `fstat` says a
/// block device of the device's size; `MAP_PRIVATE` is EINVAL (as Linux's
/// device DAX); the file system, mounted again after, checks clean.
#[test]
fn raw_device_maps_whole_with_large_pages() {
    let _s = scenario("raw_device_maps_whole_with_large_pages");
    let results = run_fsdax_scenarios("dax-raw", &["raw_device", "raw_device_1g"]);
    let lines = lines_of(&results, "raw_device");
    let m = case(&lines, "raw_device", "map_the_device");
    assert_eq!(m["mmap"], "ok", "{m}");
    assert_eq!(m["size"], 256 << 20, "{m}");
    let faults = m["faults"].as_u64().unwrap();
    assert!((1..=128).contains(&faults), "{faults} faults for 256 MiB of the raw device: {m}");
    assert_eq!(m["phys_in_pmem"], true, "{m}");
    let w = case(&lines, "raw_device_rw", "write_the_device");
    checks_hold(w);
    assert_eq!(w["fstat_type"], "block", "{w}");
    assert_eq!(w["fstat_size"], w["device_size"], "{w}");
    assert_eq!(w["private_mmap"], "EINVAL", "{w}");

    // The whole 1 GiB device (its physical address is 1 GiB aligned under
    // QEMU): one 1 GiB entry, one fault.
    let lines = lines_of(&results, "raw_device_1g");
    let g = case(&lines, "raw_device", "map_the_device");
    assert_eq!((g["mmap"].as_str(), g["size"].as_u64()), (Some("ok"), Some(1 << 30)), "{g}");
    assert_eq!(g["faults"], 1, "one 1 GiB entry: {g}");
    assert_eq!(g["phys_in_pmem"], true, "{g}");
}

/// The console's `fs freeze` and `fs thaw`: frozen, the file system checks
/// clean, a change typed on the console is refused (it would wait for a
/// thaw only the console could type), unmounting is refused; freezing
/// twice and thawing what is not frozen say so; thawed, changes go on.
#[test]
fn console_freezes_and_thaws() {
    let _s = scenario("console_freezes_and_thaws");
    let pmem = fresh_pmem("dax-console-freeze");
    let args = vec!["--pmem".to_string(), pmem.to_str().unwrap().to_string(), "--size".into(), "256M".into()];
    fsdax_boot::fstool::run("mkfs", &args).expect("mkfs").expect("mkfs");
    let mut m =
        fsdax_boot::qemu::Machine::start(&options(Firmware::Bios, pmem, "shell nomount")).expect("starting QEMU");
    m.wait_for(PROMPT, BOOT_TIMEOUT).expect("shell prompt");
    assert!(command(&mut m, "fs mount").contains("mounted pmem0"));
    command(&mut m, "fs write /before words");
    let out = command(&mut m, "fs freeze");
    assert!(out.contains("pmem0 frozen"), "{out}");
    let out = command(&mut m, "fs freeze");
    assert!(out.contains("already frozen"), "{out}");
    let out = command(&mut m, "fs fsck");
    assert!(out.contains("clean"), "fsck while frozen: {out}");
    let out = command(&mut m, "fs write /during words");
    assert!(out.contains("pmem0 is frozen"), "{out}");
    let out = command(&mut m, "fs umount");
    assert!(out.contains("pmem0 is frozen"), "{out}");
    let out = command(&mut m, "fs thaw");
    assert!(out.contains("thawed"), "{out}");
    let out = command(&mut m, "fs thaw");
    assert!(out.contains("not frozen"), "{out}");
    let out = command(&mut m, "fs write /after words");
    assert!(!out.contains("frozen"), "{out}");
    assert!(command(&mut m, "fs cat /after").contains("words"));
    assert!(command(&mut m, "fs cat /before").contains("words"));
    assert!(!command(&mut m, "fs ls /").contains("during"), "the refused write left nothing");
    assert!(command(&mut m, "fs umount").contains("unmounted"));
    m.send_line("poweroff").unwrap();
    m.wait_exit(BOOT_TIMEOUT).unwrap();
}
