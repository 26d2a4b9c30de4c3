//! Processes in QEMU: static Linux programs from `user/` installed into the
//! NVDIMM image's file system (the host tool), run by the kernel with the
//! `exec` command line or from the console.

use std::time::{Duration, Instant};

use fsdax_boot::qemu::{self, Machine};
use fsdax_tests::*;

#[test]
fn hello_prints_its_arguments_environment_and_auxv_and_exits_with_its_status() {
    let _s = scenario("hello_prints_its_arguments_environment_and_auxv_and_exits_with_its_status");
    let (text, status) = exec("proc-hello", &["hello"], "/bin/hello 7 alpha beta");
    assert_eq!(status, 7, "{text}");
    for want in [
        "argc=4",
        "argv[0]=/bin/hello",
        "argv[1]=7",
        "argv[2]=alpha",
        "argv[3]=beta",
        "envp[0]=PATH=/bin",
        "AT_PAGESZ=4096",
        "AT_RANDOM=set",
        "exec status: 7 (exit 7)",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    assert!(!text.contains("AT_ENTRY=0x0 "), "AT_ENTRY is set:\n{text}");
}

#[test]
fn nullderef_dies_of_sigsegv_with_status_139_and_a_line_naming_the_address() {
    let _s = scenario("nullderef_dies_of_sigsegv_with_status_139_and_a_line_naming_the_address");
    let (text, status) = exec("proc-nullderef", &["nullderef"], "/bin/nullderef");
    assert_eq!(status, 139, "{text}");
    assert!(text.contains("nullderef: writing through NULL"), "{text}");
    assert!(!text.contains("survived"), "{text}");
    let line = text.lines().find(|l| l.contains("killed by SIGSEGV")).expect("a SIGSEGV line");
    assert!(line.contains("at 0x0 (address not mapped"), "{line}");
    // The end line names the fault: si_code and si_addr.
    assert!(text.contains("exec status: 139 (killed by SIGSEGV (SEGV_MAPERR at 0x0))"), "{text}");
}

#[test]
fn the_whole_c_suite_passes_with_dax_and_reflink_required() {
    let _s = scenario("the_whole_c_suite_passes_with_dax_and_reflink_required");
    // The C suite (user/c/suite*.c, checked against Linux by user_linux.rs),
    // every section, with DAX and reflink required (fsdax has both, so
    // nothing may skip): process and memory calls; signals (frames,
    // si_code/si_addr, alternate stack and stack overflow,
    // SA_RESETHAND/SA_NODEFER, masks, siglongjmp, kill/tgkill, default
    // actions through posix_spawn + wait4, SA_RESTART, SIGCHLD,
    // sigsuspend/pause, sigtimedwait, real-time queueing, FPU and mask
    // restored by rt_sigreturn, sleeping children woken by signals, SIGPIPE,
    // CPU exceptions' siginfo, a frame that cannot be written); files and
    // directories; bad pointers (one case per errno).
    let (text, status) = exec("proc-suite", &["suite"], "/bin/suite --require-dax --require-reflink /");
    let cases = case_lines(&text);
    let bad: Vec<_> = cases.iter().filter(|(_, (v, _))| v != "ok").collect();
    assert!(bad.is_empty(), "cases that did not pass: {bad:#?}\n{text}");
    for want in [
        "sigsegv_maperr_si_addr",
        "rt_sigreturn_ucontext",
        "stack_overflow_altstack",
        "sa_resethand_sa_nodefer_mask",
        "kill_tgkill_siginfo",
        "fatal_signal_in_its_handler",
        "sa_restart_read_restarts",
        "sigchld_handler_siginfo",
        "sigreturn_restores_mxcsr_and_uc_sigmask",
        "pipe_read_killed_by_sigkill",
        "cpu_exceptions_siginfo",
        "unwritable_frame_kills_with_sigsegv",
        "open_o_creat_o_excl",
        "unlink_unlinkat",
        "statx_attr_dax",
        "fallocate_modes",
        "getdents64",
        "getcwd_chdir",
        "ioctl_ficlone",
        "ioctl_fideduperange",
        "fiemap_extent_shared",
        "enospc_bounded",
        "straddling_buffers_short_count",
        "efault_path_strings",
        "lseek_seek_data_seek_hole",
        "renameat2_noreplace",
        "dev_null",
        "fchdir_dirfd_relative",
        "statfs_fstatfs",
        "mmap_files",
        "proc_pagemap",
    ] {
        assert!(cases.contains_key(want), "case {want} did not run:\n{text}");
    }
    assert!(cases.len() >= 100, "only {} cases ran:\n{text}", cases.len());
    assert!(text.contains(&format!("summary: {} passed, 0 failed, 0 skipped", cases.len())), "{text}");
    // Only the child that moves its stack pointer to 0x2000 on purpose has
    // frames that cannot be written (SIGUSR1's, then SIGSEGV's).
    let failed: Vec<&str> = text.lines().filter(|l| l.contains("cannot deliver")).collect();
    assert_eq!(failed.len(), 2, "{text}");
    assert!(failed.iter().all(|l| l.contains("(RSP 0x2000)")), "a frame could not be written:\n{text}");
    assert_eq!(status, 0, "{text}");
}

#[test]
fn rust_runtime_handlers_run_on_the_alternate_stack_then_the_default_kills() {
    let _s = scenario("rust_runtime_handlers_run_on_the_alternate_stack_then_the_default_kills");
    // Rust's runtime installs SIGSEGV/SIGBUS handlers (SA_ONSTACK|SA_SIGINFO)
    // on an alternate stack and ignores SIGPIPE before main. Its handler
    // sees a fault outside any guard page (or the main thread's, unknown on
    // musl), restores SIG_DFL and returns: the fault repeats and kills.
    let mut m = shell_with("proc-rust-signals", &["rsuite"]);
    let out = command(&mut m, "exec /bin/rsuite --child segv");
    assert!(out.contains("killed by SIGSEGV (SEGV_MAPERR at 0x0)"), "{out}");
    let out = command(&mut m, "exec /bin/rsuite --child overflow");
    assert!(out.contains("killed by SIGSEGV (SEGV_MAPERR at 0x7fff"), "a fault below the stack:\n{out}");
    let out = command(&mut m, "exec /bin/rsuite --child exit 7");
    assert!(out.contains("exit 7"), "{out}");
    let text = m.transcript();
    assert!(!text.contains("cannot deliver"), "a frame could not be written:\n{text}");
}

#[test]
fn ring3_children_each_die_of_a_signal_not_the_kernel() {
    let _s = scenario("ring3_children_each_die_of_a_signal_not_the_kernel");
    // posix_spawn: clone(CLONE_VM|CLONE_VFORK), execve, pipe2, wait4.
    let (text, status) = exec("proc-ring3", &["ring3"], "/bin/ring3");
    for act in ["cli", "hlt", "cr3", "out", "kread", "ptwrite"] {
        assert!(text.lines().any(|l| l == format!("ok {act}")), "{act} did not die of SIGSEGV:\n{text}");
    }
    assert!(text.contains("summary: 6 passed, 0 failed, 0 skipped"), "{text}");
    assert_eq!(status, 0, "{text}");
}

#[test]
fn a_program_that_loops_forever_is_killed_from_the_console_which_keeps_answering() {
    let _s = scenario("a_program_that_loops_forever_is_killed_from_the_console_which_keeps_answering");
    let mut m = shell_with("proc-spin", &["spin"]);
    let out = command(&mut m, "exec /bin/spin &");
    let pid: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix('[').and_then(|r| r.split(']').next()).and_then(|p| p.parse().ok()))
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    // The program may print before the prompt comes back (it runs at once
    // when the machine is slow), so its line is either in `out` or later.
    if !out.contains("spin: looping forever") {
        m.wait_for("spin: looping forever", BOOT_TIMEOUT).expect("the program runs");
    }
    let ps = command(&mut m, "ps");
    assert!(ps.lines().any(|l| l.contains("spin") && l.contains("running")), "{ps}");
    // The console answers while it spins (the timer preempts user code).
    assert!(command(&mut m, "uptime").contains("ticks"));
    let out = command(&mut m, &format!("kill {pid}"));
    assert!(out.contains("sent SIGTERM"), "{out}");
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        let ps = command(&mut m, "ps");
        if ps.contains(&format!("[{pid}] killed by SIGTERM (spin)")) {
            assert!(!ps.lines().any(|l| l.contains(" spin") && l.contains("running")), "{ps}");
            break;
        }
        assert!(Instant::now() < deadline, "spin was not killed:\n{ps}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(command(&mut m, "uptime").contains("ticks"), "the console still answers");
    // SIGKILL by name works too.
    let out = command(&mut m, "exec /bin/spin &");
    let pid2: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix('[').and_then(|r| r.split(']').next()).and_then(|p| p.parse().ok()))
        .expect("second pid");
    assert!(command(&mut m, &format!("kill {pid2} KILL")).contains("sent SIGKILL"));
    wait_until_ps_reports(&mut m, &format!("[{pid2}] killed by SIGKILL (spin)"));
    // And by number: 10 is SIGUSR1, whose default action kills.
    let out = command(&mut m, "exec /bin/spin &");
    let pid3: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix('[').and_then(|r| r.split(']').next()).and_then(|p| p.parse().ok()))
        .expect("third pid");
    let out = command(&mut m, &format!("kill {pid3} NOSUCH"));
    assert!(out.contains("is not a signal"), "{out}");
    assert!(command(&mut m, &format!("kill {pid3} 10")).contains("sent SIGUSR1"));
    wait_until_ps_reports(&mut m, &format!("[{pid3}] killed by SIGUSR1 (spin)"));
}

/// Runs `ps` until its output holds `line` (the console reports a
/// background program's end at the next `ps`).
fn wait_until_ps_reports(m: &mut Machine, line: &str) {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        let ps = command(m, "ps");
        if ps.contains(line) {
            return;
        }
        assert!(Instant::now() < deadline, "{line:?} never came:\n{ps}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_program_that_eats_all_memory_dies_alone() {
    let _s = scenario("a_program_that_eats_all_memory_dies_alone");
    let mut m = shell_with("proc-eatmem", &["eatmem", "hello"]);
    m.send_line("exec /bin/eatmem").unwrap();
    let out = m.wait_for(PROMPT, Duration::from_secs(600)).expect("eatmem ended");
    assert!(
        out.contains("killed by SIGKILL") || out.contains("eatmem: out of memory after"),
        "eatmem neither failed an allocation nor was killed:\n{out}"
    );
    assert!(out.contains("eatmem: 64 MiB"), "it did allocate:\n{out}");
    // The system goes on: another program runs, the console answers, and
    // the memory came back.
    let hello = command(&mut m, "exec /bin/hello 0 again");
    assert!(hello.contains("argv[2]=again") && hello.contains("exit 0"), "{hello}");
    let mem = command(&mut m, "mem");
    assert!(mem.contains("frames:"), "{mem}");
}

#[test]
fn getpid_rate_and_exec_to_exit_time_under_tcg() {
    let _s = scenario("getpid_rate_and_exec_to_exit_time_under_tcg");
    let mut m = shell_with("proc-bench", &["bench", "hello"]);
    // exec-to-exit of hello, seen from the console (includes the console's
    // 10 ms polling of the program's end).
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = command(&mut m, "exec /bin/hello");
        times.push(t.elapsed());
        assert!(out.contains("exit 0"), "{out}");
    }
    times.sort();
    eprintln!("exec-to-exit of hello from the console: median {:?} (min {:?}, max {:?})", times[2], times[0], times[4]);
    let out = command(&mut m, "exec /bin/bench --only getpid --size 256M /");
    let line = out.lines().find(|l| l.contains("\"bench\":\"getpid\"")).unwrap_or_else(|| panic!("{out}"));
    let rate: f64 = line
        .split("\"ops_per_s\":")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|v| v.parse().ok())
        .expect("ops_per_s");
    eprintln!("getpid round trips under {}: {rate:.0} per second", qemu::Accel::detect().describe());
    assert!(rate > 0.0);
    // Signal round trips: tkill to itself, the handler's frame written, the
    // handler run, rt_sigreturn (the bench checks the handler ran for each).
    let out = command(&mut m, "exec /bin/bench --only signal --size 256M /");
    let line = out.lines().find(|l| l.contains("\"bench\":\"signal\"")).unwrap_or_else(|| panic!("{out}"));
    let rate: f64 = line
        .split("\"ops_per_s\":")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|v| v.parse().ok())
        .expect("ops_per_s");
    eprintln!("signal delivery + return round trips under {}: {rate:.0} per second", qemu::Accel::detect().describe());
    assert!(rate > 0.0 && out.contains("exit 0"), "{out}");
}

/// One try of the user-mode machine check: `Some(status)` of the `exec`
/// run, or None if the #MC landed in kernel code (see the test).
fn spin_consumes_poison(test: &str) -> (Option<u8>, String) {
    let pmem = image_with(test, &["spin"]);
    let (mut m, mut qmp) = start_with_qmp(test, pmem, "exec /bin/spin");
    m.wait_for("spin: looping forever", BOOT_TIMEOUT).expect("spin runs");
    std::thread::sleep(Duration::from_millis(300));
    // Action required (a data load), 200 MiB into the NVDIMM: free space.
    inject_mce(&mut qmp, SRAR, PMEM_BASE + 0xc80_0000);
    let status = m.wait_exit(BOOT_TIMEOUT).expect("QEMU exit");
    let text = m.transcript();
    match exit_code(status) {
        Some(ExitCode::ProgramEnded) => {
            let line = text.lines().find(|l| l.starts_with(EXEC_STATUS_PREFIX)).expect("end line");
            (qemu::parse_exec_status(line), text)
        }
        Some(ExitCode::FatalMachineCheck) => (None, text),
        other => panic!("QEMU ended with {other:?}:\n{text}"),
    }
}

#[test]
fn a_machine_check_in_user_mode_kills_only_the_process_with_sigbus() {
    let _s = scenario("a_machine_check_in_user_mode_kills_only_the_process_with_sigbus");
    // The injected #MC lands on whatever the CPU runs at that instant:
    // almost always spin in user mode (recoverable: SIGBUS, status 135),
    // rarely the timer interrupt's kernel code (fatal by design: a #MC in
    // the kernel outside a machine-check-safe copy). Only the second kind
    // of failure, named by the fatal report, earns one more try.
    for attempt in 0..2 {
        let (status, text) = spin_consumes_poison(&format!("proc-mce-{attempt}"));
        match status {
            Some(s) => {
                assert_eq!(s, 135, "{text}");
                assert!(text.contains("consumed poisoned memory at 0x10c800000"), "{text}");
                // BUS_MCEERR_AR; spin maps no page at that address: si_addr 0.
                assert!(text.contains("exec status: 135 (killed by SIGBUS (BUS_MCEERR_AR at 0x0))"), "{text}");
                // One memory-failure event with the process as the consumer,
                // logged as Linux words it.
                assert!(
                    text.lines().any(|l| l.contains("Memory failure: 0x10c800: process spin (pid ")
                        && l.ends_with("got SIGBUS BUS_MCEERR_AR at 0x0 (si_addr_lsb 12)")),
                    "{text}"
                );
                assert!(
                    text.contains("Memory failure: 0x10c800: recovery action for free dax page: Recovered"),
                    "{text}"
                );
                return;
            }
            None => {
                assert!(text.contains("FATAL MACHINE CHECK") && text.contains("RIP 0xffff"), "{text}");
                eprintln!("the machine check hit kernel code (attempt {attempt}); trying again");
            }
        }
    }
    panic!("the machine check hit kernel code twice");
}

/// The `run` mode the host's benchmark and scenario runners boot, through
/// their own `System`: a fresh file system, the program installed, its
/// output, then the status lines `ready`, `exit N`, `fsck clean`, `done`.
#[test]
fn the_runners_run_mode_reports_ready_exit_fsck_and_done() {
    use fsdax_boot::system::{BootSpec, System};
    let _s = scenario("the_runners_run_mode_reports_ready_exit_fsck_and_done");
    let programs = fsdax_boot::user::build_all().expect("user programs");
    let mut fsdax = fsdax_boot::system::Fsdax::default();
    fsdax.prepare(&programs, &|_| {}).expect("prepare");
    let mut spec = BootSpec::new(vec!["hello".into(), "5".into(), "{dir}".into()], fresh_pmem("run-mode"));
    spec.fsck = true;
    let mut m = fsdax.boot(&spec).expect("boot");
    m.wait_for("@@fsdax done", BOOT_TIMEOUT).expect("the done line");
    let status = m.wait_exit(BOOT_TIMEOUT).expect("QEMU exit");
    let text = m.transcript();
    assert_eq!(exit_code(status), Some(ExitCode::ProgramEnded), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("@@fsdax ")).collect();
    assert!(lines[0].starts_with("@@fsdax ready: fsdax "), "{text}");
    assert_eq!(&lines[1..], ["@@fsdax exit 5", "@@fsdax fsck clean", "@@fsdax done"], "{text}");
    assert!(text.contains("argv[2]=/\n"), "the program ran with {{dir}} = /: {text}");
}

/// `fsdax bench` (fsdax alone) end to end, tiny, so that the benchmark
/// program and its runner cannot rot: every benchmark of `bench --list`
/// runs once on fsdax (only those that need a file mapping may skip, with
/// the reason), the kernel's raw copy figures land as reference rows, and
/// the three report files are written. Figures are not judged.
#[test]
fn the_benchmark_program_runs_every_benchmark_once_tiny_on_fsdax() {
    use fsdax_boot::bench::{self, BenchOptions, System};
    let _s = scenario("the_benchmark_program_runs_every_benchmark_once_tiny_on_fsdax");
    let list = std::process::Command::new(programs().join("bench")).arg("--list").output().expect("bench --list");
    let names: Vec<String> = String::from_utf8_lossy(&list.stdout).lines().map(String::from).collect();
    assert!(names.len() >= 15, "{names:?}");
    let out_dir = fsdax_boot::output_dir().join("tests").join(format!("bench-tiny-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let opts = BenchOptions { size: 2 << 20, rounds: 1, only: None, out_dir: out_dir.clone() };
    let mut systems: Vec<Box<dyn System>> = vec![Box::new(bench::Fsdax::default())];
    let md = bench::run(&mut systems, &[("linux", "fsdax alone")], &opts).expect("the fsdax-only bench run");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("bench.json")).expect("bench.json")).expect("valid JSON");
    let raw = json["raw"].as_array().expect("raw lines");
    let program_lines: Vec<&serde_json::Value> = raw.iter().filter(|v| v["bench"].as_str() != Some("pmem")).collect();
    let seen: Vec<&str> = program_lines.iter().map(|v| v["bench"].as_str().unwrap()).collect();
    assert_eq!(seen, names, "one line per benchmark, in order:\n{md}");
    for v in &program_lines {
        let bench = v["bench"].as_str().unwrap();
        assert_eq!(v["on"], "fsdax", "{v}");
        if let Some(why) = v["skipped"].as_str() {
            let needs_mapping = bench.starts_with("first_touch") || bench.starts_with("mmap_") || bench == "msync";
            assert!(needs_mapping || bench == "cow_mmap", "only file-mapping benchmarks may skip: {v}");
            assert!(why.contains("mmap"), "{v}");
        } else {
            let primary = v["primary"].as_str().unwrap();
            let value = v[primary].as_f64().unwrap();
            assert!(value > 0.0 && value.is_finite(), "{v}");
        }
    }
    for row in ["pmem_write_2m (kernel)", "pmem_read_2m (kernel)"] {
        let m = json["metrics"].as_array().unwrap().iter().find(|m| m["metric"] == row);
        let median = m.and_then(|m| m["fsdax"]["median"].as_f64());
        assert!(median.is_some_and(|x| x > 0.0), "the reference row {row}: {m:?}\n{md}");
    }
    assert!(md.contains("| overwrite_4k | ") && md.contains("## Goals"), "{md}");
    let png = std::fs::read(out_dir.join("bench.png")).expect("bench.png");
    assert!(png.starts_with(b"\x89PNG"), "bench.png is a PNG");
    std::fs::remove_dir_all(&out_dir).unwrap();
}
