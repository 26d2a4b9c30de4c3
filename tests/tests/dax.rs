//! DAX mappings of fsdax files in QEMU: the scenario programs
//! (`user/c/scen_dax.c`) run on fsdax through the scenario runner and its
//! fsdax `System` (one boot per scenario, two for the crash test: the host
//! stops the machine with QMP `quit` when the program asks, then boots
//! again on the same NVDIMM), and `/proc/self/pagemap` from a program.

use std::path::PathBuf;

use fsdax_boot::system::{Fsdax, System};
use fsdax_tests::*;
use serde_json::Value;

/// Runs the named scenarios on fsdax into a fresh output directory and
/// returns the result of each (`scenarios.json`'s `results`).
fn run_scenarios(test: &str, names: &[&str]) -> Vec<Value> {
    // One run at a time: the runner's QMP socket is named by process and
    // system, and it builds the kernel and the programs.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let out: PathBuf = fsdax_boot::output_dir().join("tests").join(test);
    let _ = std::fs::remove_dir_all(&out);
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let chosen = fsdax_boot::scenario::select(&names).expect("known scenarios");
    let mut systems: Vec<Box<dyn System>> = vec![Box::new(Fsdax::default())];
    fsdax_boot::scenario::run(&mut systems, &chosen, &out).expect("the scenario runner");
    let text = std::fs::read_to_string(out.join("scenarios.json")).expect("scenarios.json");
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    doc["results"].as_array().expect("results").clone()
}

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
    let results = run_scenarios("dax-scenarios", &["dax_basic", "first_touch"]);

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
    // The raw device is not built: the case says so, nothing else.
    let raw = case(&basic, "raw_device", "map_the_device");
    assert!(raw["checks"].is_null() || raw["open"] == "ENOENT", "{raw}");

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
    let results = run_scenarios("dax-truncate-crash", &["truncate_race", "map_sync_crash"]);

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
