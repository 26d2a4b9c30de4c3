//! The platform, tested by booting the kernel in QEMU and reading its
//! console: the in-kernel harness, the shell, task faults, kernel panics,
//! QMP, and the UEFI boot path.

use std::time::Duration;

use fsdax_boot::qemu::Machine;
use fsdax_boot::qmp::Qmp;
use fsdax_tests::*;
use serde_json::json;

#[test]
fn kernel_tests_pass_and_summary_is_exact() {
    let _scenario = scenario("kernel_tests_pass_and_summary_is_exact");
    let mut m = boot("harness", "test");
    let first = m.wait_for("booting", BOOT_TIMEOUT).expect("first line");
    eprintln!("first kernel line after {:?} of QEMU (TCG unless vmx/svm)", m.elapsed());
    assert!(first.contains("fsdax"), "unexpected first line: {first}");
    let out = m.wait_for("skipped\n", BOOT_TIMEOUT).expect("harness summary");
    let status = m.wait_exit(BOOT_TIMEOUT).expect("QEMU exit");
    let text = m.transcript();
    let summaries = text.lines().filter(|l| l.starts_with(SUMMARY_PREFIX)).count();
    assert_eq!(summaries, 1, "exactly one summary line:\n{text}");
    let s = parse_summary(&out).expect("summary");
    fsdax_boot::summary::record("kernel-tests", &format!("bios {} {} {}", s.passed, s.failed, s.skipped));
    assert_eq!(s.failed, 0, "kernel tests failed:\n{text}");
    assert_eq!(s.skipped, 0, "under QEMU every kernel test can run:\n{text}");
    assert!(s.passed >= 30, "too few kernel tests ran ({}):\n{text}", s.passed);
    let result_lines = text.lines().filter(|l| l.starts_with("ktest ") && l.contains(" ... ")).count();
    assert_eq!(result_lines, s.passed + s.failed + s.skipped, "one line per test");
    assert!(text.contains("ktest fsdax_hal::"), "the hal's own tests ran:\n{text}");
    assert!(!text.contains("harness_detects_failure"), "the deliberate failure runs only on request");
    assert_eq!(exit_code(status), Some(ExitCode::TestsPassed), "status {status:?}");
}

#[test]
fn deliberately_failing_test_is_reported() {
    let _scenario = scenario("deliberately_failing_test_is_reported");
    let mut m = boot("selftest", "test selftest");
    let out = m.wait_for("skipped\n", BOOT_TIMEOUT).expect("harness summary");
    let status = m.wait_exit(BOOT_TIMEOUT).expect("QEMU exit");
    let s = parse_summary(&out).expect("summary");
    assert_eq!((s.failed, s.skipped), (1, 1), "{out}");
    assert!(s.passed >= 30);
    let line = out.lines().find(|l| l.contains("harness_detects_failure")).expect("its line");
    assert!(line.contains("FAILED") && line.contains("deliberate failure"), "{line}");
    // The failure names the line of the check, in the test's own file.
    assert!(line.contains("kernel/src/harness.rs:"), "{line}");
    let line = out.lines().find(|l| l.contains("harness_reports_a_skip")).expect("its line");
    assert!(line.contains("SKIPPED") && line.contains("deliberate skip"), "{line}");
    assert_eq!(exit_code(status), Some(ExitCode::TestsFailed), "status {status:?}");
}

#[test]
fn test_filter_selects_tests() {
    let _scenario = scenario("test_filter_selects_tests");
    let mut m = boot("filter", "test task::tests::spawn");
    let out = m.wait_for("skipped\n", BOOT_TIMEOUT).expect("harness summary");
    assert_eq!(parse_summary(&out), Some(Summary { passed: 1, failed: 0, skipped: 0 }), "{out}");
    assert_eq!(exit_code(m.wait_exit(BOOT_TIMEOUT).unwrap()), Some(ExitCode::TestsPassed));
}

#[test]
fn shell_commands_and_line_editing() {
    let _scenario = scenario("shell_commands_and_line_editing");
    let mut m = boot_shell("shell");
    let help = command(&mut m, "help");
    for name in ["help", "mem", "tasks", "poweroff", "kill", "fault"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(name)), "`help` lacks {name}:\n{help}");
    }
    let mem = command(&mut m, "mem");
    let frames = mem.lines().find(|l| l.starts_with("frames:")).expect("frames line");
    let used: u64 = frames.split(", ").nth(1).and_then(|s| s.split(' ').next()).unwrap().parse().unwrap();
    assert!(used > 0, "{mem}");
    assert!(mem.contains("heap:"), "{mem}");
    let tasks = command(&mut m, "tasks");
    assert!(tasks.contains("kernel") && tasks.contains("idle"), "{tasks}");
    // Backspace: "memx" then erase the x.
    m.send_bytes(b"memx\x7f\r").unwrap();
    let out = m.wait_for(PROMPT, BOOT_TIMEOUT).unwrap();
    assert!(out.contains("frames:"), "backspace did not edit the line: {out}");
    let unknown = command(&mut m, "frobnicate");
    assert!(unknown.contains("unknown command: frobnicate"), "{unknown}");
    m.send_line("poweroff").unwrap();
    let status = m.wait_exit(BOOT_TIMEOUT).unwrap();
    assert_eq!(exit_code(status), Some(ExitCode::Poweroff), "status {status:?}");
}

#[test]
fn faulting_task_is_killed_and_shell_keeps_working() {
    let _scenario = scenario("faulting_task_is_killed_and_shell_keeps_working");
    let mut m = boot_shell("task-fault");
    let out = command(&mut m, "fault task");
    let report = m.transcript();
    assert!(out.contains("spawned task"), "{out}");
    let line = report.lines().find(|l| l.contains("killed: page fault")).expect("kill report");
    assert!(line.contains("CR2 0xdead0000"), "report names the address: {line}");
    // A spinning task can be killed too, and the shell still answers.
    let spin = command(&mut m, "fault spin");
    let id: u64 = spin.split("task ").nth(1).unwrap().trim().parse().unwrap();
    let tasks = command(&mut m, "tasks");
    assert!(tasks.contains("spinner"), "{tasks}");
    let killed = command(&mut m, &format!("kill {id}"));
    assert!(killed.contains(&format!("killed task {id}")), "{killed}");
    let mem = command(&mut m, "mem");
    assert!(mem.contains("frames:"), "shell still works: {mem}");
}

#[test]
fn kernel_fault_is_a_panic_with_distinct_status() {
    let _scenario = scenario("kernel_fault_is_a_panic_with_distinct_status");
    let mut m = boot_shell("kernel-fault");
    m.send_line("fault kernel").unwrap();
    m.wait_for("KERNEL PANIC", BOOT_TIMEOUT).expect("panic report");
    // The whole report is there once QEMU has exited.
    let status = m.wait_exit(BOOT_TIMEOUT).unwrap();
    let report = m.transcript();
    assert!(report.contains("page fault") && report.contains("CR2 0xdead0000"), "{report}");
    assert!(report.contains("in task 0 (kernel), which cannot be killed for it: it is part of the kernel"), "{report}");
    assert_eq!(exit_code(status), Some(ExitCode::KernelPanic), "status {status:?}");
}

#[test]
fn fault_while_holding_a_sleeping_lock_is_a_panic_with_the_reason() {
    let _scenario = scenario("fault_while_holding_a_sleeping_lock_is_a_panic_with_the_reason");
    let mut m = boot_shell("locked-fault");
    m.send_line("fault locked").unwrap();
    m.wait_for("KERNEL PANIC", BOOT_TIMEOUT).expect("panic report");
    let status = m.wait_exit(BOOT_TIMEOUT).unwrap();
    let report = m.transcript();
    assert!(report.contains("page fault") && report.contains("CR2 0xdead0000"), "{report}");
    assert!(report.contains("(locker), which cannot be killed for it: it holds a sleeping lock"), "{report}");
    assert_eq!(exit_code(status), Some(ExitCode::KernelPanic), "status {status:?}");
}

#[test]
fn qmp_sees_the_nvdimm_and_controls_the_machine() {
    let _scenario = scenario("qmp_sees_the_nvdimm_and_controls_the_machine");
    let qmp_path = fsdax_boot::output_dir().join("tests").join("qmp-test.sock");
    let _ = std::fs::remove_file(&qmp_path);
    let mut opts = options(Firmware::Bios, fresh_pmem("qmp"), "shell");
    opts.qmp = Some(qmp_path.clone());
    let mut m = Machine::start(&opts).unwrap();
    let mut qmp = Qmp::connect(&qmp_path, BOOT_TIMEOUT).expect("QMP");
    m.wait_for(PROMPT, BOOT_TIMEOUT).unwrap();
    let status = qmp.execute("query-status", json!({})).unwrap();
    assert_eq!(status["status"], "running");
    let devices = qmp.execute("query-memory-devices", json!({})).unwrap();
    let nvdimm = devices.as_array().unwrap().iter().find(|d| d["type"] == "nvdimm").expect("an nvdimm");
    assert_eq!(nvdimm["data"]["size"], 256u64 << 20);
    assert_eq!(nvdimm["data"]["addr"], 0x1_0000_0000u64);
    // Pause and resume through QMP: the console answers only when running.
    qmp.execute("stop", json!({})).unwrap();
    assert_eq!(qmp.execute("query-status", json!({})).unwrap()["status"], "paused");
    qmp.execute("cont", json!({})).unwrap();
    let out = command(&mut m, "uptime");
    assert!(out.contains("ticks"), "{out}");
    qmp.execute("quit", json!({})).unwrap();
    m.wait_exit(Duration::from_secs(30)).unwrap();
}

#[test]
fn uefi_boot_runs_the_harness() {
    let _scenario = scenario("uefi_boot_runs_the_harness");
    if fsdax_boot::qemu::ovmf_path().is_none() {
        panic!("OVMF is not installed: the README's test command installs it (apt-get install ovmf)");
    }
    let opts = options(Firmware::Uefi, fresh_pmem("uefi"), "test");
    let mut m = Machine::start(&opts).unwrap();
    let out = m.wait_for("skipped\n", BOOT_TIMEOUT).expect("harness summary");
    let s = parse_summary(&out).expect("summary");
    fsdax_boot::summary::record("kernel-tests", &format!("uefi {} {} {}", s.passed, s.failed, s.skipped));
    assert_eq!((s.failed, s.skipped), (0, 0), "{}", m.transcript());
    assert!(s.passed >= 30);
    assert_eq!(exit_code(m.wait_exit(BOOT_TIMEOUT).unwrap()), Some(ExitCode::TestsPassed));
}
