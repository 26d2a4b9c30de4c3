//! The user programs (`user/`) on the host's Linux: the expectations the
//! programs encode are Linux's, so they must pass here before they mean
//! anything on fsdax. Builds every program (musl-gcc, cargo for the musl
//! target) and runs each with a fresh directory on the host's file system.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use fsdax_boot::user;

/// Cases the host's file system (ext4, tmpfs, overlay) may not be able to
/// do, and the reason each one must give when it skips.
const ALLOWED_SKIPS: &[(&str, &str)] = &[
    ("statx_attr_dax", "not DAX"),
    ("ioctl_ficlone", "cannot share blocks"),
    ("ioctl_ficlonerange", "cannot share blocks"),
    ("ioctl_fideduperange", "cannot share blocks"),
    ("fiemap_extent_shared", "cannot share blocks"),
    ("enospc_bounded", "larger than 2 GiB"),
];

fn programs() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| user::build_all().unwrap_or_else(|e| panic!("building the user programs: {e:#}")))
}

fn program(name: &str) -> PathBuf {
    programs().join(name)
}

/// A fresh, empty directory for `name` on the file system of `target/`.
fn scratch(name: &str) -> PathBuf {
    let dir = fsdax_boot::output_dir().join("tests").join(format!("user-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(program(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// The case lines of a check.h program: name -> (verdict, rest of line).
struct Cases {
    cases: BTreeMap<String, (String, String)>,
    summary: (u32, u32, u32),
}

fn parse_cases(stdout: &str) -> Cases {
    let mut cases = BTreeMap::new();
    let mut summary = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("summary: ") {
            let n: Vec<u32> = rest.split(", ").map(|p| p.split(' ').next().unwrap().parse().unwrap()).collect();
            summary = Some((n[0], n[1], n[2]));
            continue;
        }
        let (verdict, rest) = line.split_once(' ').unwrap_or((line, ""));
        if !matches!(verdict, "ok" | "FAIL" | "skip") {
            continue; // a program's own progress line
        }
        let (name, why) = rest.split_once(": ").unwrap_or((rest, ""));
        let old = cases.insert(name.to_string(), (verdict.to_string(), why.to_string()));
        assert!(old.is_none(), "case {name} reported twice");
    }
    let summary = summary.unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    Cases { cases, summary }
}

fn count(cases: &Cases, verdict: &str) -> u32 {
    cases.cases.values().filter(|(v, _)| v == verdict).count() as u32
}

#[test]
fn c_suite_passes_with_only_the_allowed_skips() {
    let dir = scratch("suite");
    let out = run("suite", &[dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cases = parse_cases(&stdout);
    let failed: Vec<_> = cases.cases.iter().filter(|(_, (v, _))| v == "FAIL").collect();
    assert!(failed.is_empty(), "failed cases: {failed:#?}\n{stdout}");
    for (name, (verdict, why)) in &cases.cases {
        if verdict == "skip" {
            let allowed = ALLOWED_SKIPS.iter().find(|(n, _)| n == name);
            let (_, reason) = allowed.unwrap_or_else(|| panic!("{name} skipped but may not: {why}"));
            assert!(why.contains(reason), "{name} skipped for an unexpected reason: {why}");
        }
    }
    assert_eq!(
        cases.summary,
        (count(&cases, "ok"), count(&cases, "FAIL"), count(&cases, "skip")),
        "the summary line disagrees with the case lines"
    );
    assert!(cases.summary.0 >= 70, "only {} cases passed:\n{stdout}", cases.summary.0);
    assert!(out.status.success(), "suite exited {:?}", out.status);
    // Everything the suite created, it removed.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind in DIR: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn require_options_turn_skips_into_failures() {
    let dir = scratch("require");
    let d = dir.to_str().unwrap();
    // Without the option: a skip, exit 0. With it: a failure, exit 1.
    let out = run("suite", &["--only", "statx_attr_dax", d]);
    let cases = parse_cases(&String::from_utf8_lossy(&out.stdout));
    let verdict = &cases.cases["statx_attr_dax"].0;
    if verdict == "ok" {
        eprintln!("this host's file system is DAX: nothing to turn into a failure");
        return;
    }
    assert_eq!(verdict, "skip");
    assert!(out.status.success());
    let out = run("suite", &["--require-dax", "--only", "statx_attr_dax", d]);
    let cases = parse_cases(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(cases.cases["statx_attr_dax"].0, "FAIL");
    assert_eq!(out.status.code(), Some(1));
    let out = run("suite", &["--require-reflink", "--only", "ioctl_ficlone", d]);
    let cases = parse_cases(&String::from_utf8_lossy(&out.stdout));
    assert_ne!(cases.cases["ioctl_ficlone"].0, "skip", "--require-reflink must not allow a skip");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn suite_sections_run_only_the_named_groups() {
    let dir = scratch("sections");
    let d = dir.to_str().unwrap();
    let out = run("suite", &["--section", "fs,efault", d]);
    let cases = parse_cases(&String::from_utf8_lossy(&out.stdout));
    assert!(cases.cases.contains_key("open_o_creat_o_excl") && cases.cases.contains_key("efault_path_strings"));
    assert!(!cases.cases.contains_key("getpid_gettid"), "a proc case ran");
    assert!(!cases.cases.keys().any(|k| k.starts_with("sig")), "a signal case ran");
    let out = run("suite", &["--section", "fs,nosuch", d]);
    assert_eq!(out.status.code(), Some(2), "an unknown section was accepted");
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn poison_rw_check_fails_when_nothing_is_poisoned() {
    // The host cannot poison a block here; without poison the reads are
    // whole, and the check must say so (it has teeth).
    let dir = scratch("poison-rw");
    let file = dir.join("p.dat");
    let f = file.to_str().unwrap();
    let prep = run("poison_rw", &["prepare", f]);
    let text = String::from_utf8_lossy(&prep.stdout);
    if prep.status.success() {
        assert!(text.contains("poison_rw: block 1 at device offset 0x"), "{text}");
    } else {
        // No FIEMAP on this file system; the file is written all the same.
        assert!(text.contains("FAIL poison_rw_prepare"), "{text}");
    }
    let out = run("poison_rw", &["check", f]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL poison_rw_check: expected 4096, got 12288"), "{text}");
    assert_eq!(run("poison_rw", &["nonsense", f]).status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rust_program_passes() {
    let dir = scratch("rsuite");
    let out = run(user::RUST_PROGRAM, &[dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cases = parse_cases(&stdout);
    assert_eq!(count(&cases, "FAIL"), 0, "{stdout}");
    assert!(cases.summary.0 >= 7, "{stdout}");
    assert!(out.status.success(), "rsuite exited {:?}\n{stdout}", out.status);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nullderef_dies_with_sigsegv_status_139() {
    let out = run("nullderef", &[]);
    assert_eq!(out.status.signal(), Some(11), "{:?}", out.status);
    assert!(String::from_utf8_lossy(&out.stdout).contains("writing through NULL"));
    // As a shell reports it.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("'{}'", program("nullderef").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(139));
}

#[test]
fn ring3_children_die_of_signals() {
    let out = run("ring3", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cases = parse_cases(&stdout);
    for act in ["cli", "hlt", "cr3", "out", "kread", "ptwrite"] {
        assert_eq!(cases.cases.get(act).map(|c| c.0.as_str()), Some("ok"), "{act}:\n{stdout}");
    }
    assert!(out.status.success(), "{stdout}");
}

#[test]
fn pwrite_pread_pair_passes() {
    let dir = scratch("pair");
    let out = run("pwrite_pread_pair", &[dir.to_str().unwrap(), "300"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok pwrite_pread_pair"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hello_prints_its_arguments_and_exits_with_the_first() {
    let out = Command::new(program("hello")).args(["42", "two words"]).env("FSDAX_HELLO", "1").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(42));
    assert!(stdout.contains("argv[1]=42") && stdout.contains("argv[2]=two words"), "{stdout}");
    assert!(stdout.contains("=FSDAX_HELLO=1"), "{stdout}");
    assert!(stdout.contains("AT_PAGESZ=4096") && stdout.contains("AT_RANDOM=set"), "{stdout}");
    assert_eq!(run("hello", &[]).status.code(), Some(0));
}

#[test]
fn bench_prints_one_valid_json_line_per_measurement() {
    let dir = scratch("bench");
    let list = run("bench", &["--list"]);
    let names: Vec<String> = String::from_utf8_lossy(&list.stdout).lines().map(String::from).collect();
    assert!(names.len() >= 15, "{names:?}");
    let out = run("bench", &["--size", "4M", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut seen = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let bench = v["bench"].as_str().unwrap().to_string();
        assert!(v["system"].as_str().unwrap().starts_with("Linux "), "{line}");
        assert_eq!(v["size"].as_u64(), Some(4 << 20), "{line}");
        if v.get("skipped").is_some() {
            assert!(bench == "ficlone" || bench.starts_with("cow_"), "only reflink benchmarks may skip: {line}");
        } else {
            let primary = v["primary"].as_str().unwrap();
            assert!(["ops_per_s", "bytes_per_s", "secs"].contains(&primary), "{line}");
            let value = v[primary].as_f64().unwrap();
            assert!(value > 0.0 && value.is_finite(), "{line}");
            assert!(v["ops"].as_u64().unwrap() > 0, "{line}");
            if bench.starts_with("first_touch") || bench.starts_with("cow_mmap") {
                assert!(v["minflt"].as_i64().is_some(), "fault counts for {line}");
            }
        }
        seen.push(bench);
    }
    assert_eq!(seen, names, "one line per benchmark, in order");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The JSON result lines of a scenario program (`user/c/scen.h`).
fn result_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter(|l| l.starts_with("{\"scenario\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The DAX scenarios that are safe on the host (not freeze: it would freeze
/// the host's file system; not the crash test; no raw device), small: every
/// check holds, and what the host's file system cannot do (reflink) skips.
#[test]
fn scen_dax_host_scenarios_hold_their_checks() {
    let dir = scratch("scen-dax");
    let d = dir.to_str().unwrap();
    let list = "hole_read,coherence,reflink_cow,truncate_race,first_touch,first_touch_aged";
    let out = run("scen_dax", &["--size", "4M", "--rounds", "200", list, d]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines = result_lines(&stdout);
    let cases: Vec<(String, String)> = lines
        .iter()
        .map(|l| (l["scenario"].as_str().unwrap().to_string(), l["case"].as_str().unwrap().to_string()))
        .collect();
    for want in [
        ("hole_read", "hole"),
        ("coherence", "one_file_two_paths"),
        ("reflink_cow", "clone_then_store_every_page"),
        ("truncate_race", "truncate_while_faulting"),
        ("first_touch", "written"),
        ("first_touch", "sparse"),
        ("first_touch_aged", "aging"),
        ("first_touch_aged", "aged_sparse"),
    ] {
        assert!(cases.contains(&(want.0.to_string(), want.1.to_string())), "no {want:?} in {cases:?}");
    }
    for l in &lines {
        if let Some(why) = l["skipped"].as_str() {
            assert!(l["scenario"] == "reflink_cow" && why.starts_with("FICLONE: "), "unexpected skip: {l}");
            continue;
        }
        if let Some(checks) = l["checks"].as_object() {
            assert!(!checks.is_empty(), "{l}");
            for (name, ok) in checks {
                assert_eq!(ok, &serde_json::Value::Bool(true), "check {name} failed: {l}");
            }
        }
        if l["scenario"] == "first_touch" {
            assert_eq!(l["pages"], 1024, "{l}");
            assert!(l["faults"].as_i64().unwrap() >= 1 && l["secs"].as_f64().unwrap() > 0.0, "{l}");
        }
        if l["case"] == "truncate_while_faulting" {
            assert_eq!(l["rounds"], 200, "{l}");
        }
    }
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind in DIR: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scenario_programs_list_their_scenarios_and_refuse_unknown_ones() {
    for (program, some) in [("scen_dax", "truncate_race"), ("scen_mf", "xfs552_ar")] {
        let out = run(program, &["--list"]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with(some)), "{program} --list");
        let dir = scratch(program);
        let out = run(program, &["hole_read,nosuch", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{program} ran with an unknown scenario");
        assert!(out.stdout.is_empty(), "{program} ran something before refusing");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The SIGBUS recording of the memory-failure program, with a fault that
/// needs no poison (a page beyond EOF), and its @@INJECT request line (no
/// host answers here, so it goes on without the acknowledgement).
#[test]
fn scen_mf_records_sigbus_and_asks_the_host() {
    use fsdax_boot::scenario::protocol::{parse_line, Line, McKind};
    let dir = scratch("scen-mf");
    let out = run("scen_mf", &["sigbus_selftest", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let inject = stdout.lines().find(|l| l.starts_with("@@INJECT ")).unwrap_or_else(|| panic!("{stdout}"));
    if inject.contains("phys=0x0 ") {
        // No CAP_SYS_ADMIN: pagemap hides the frame, and the host refuses the request.
        assert!(parse_line(inject).is_err());
    } else {
        let Line::Inject(req) = parse_line(inject).unwrap() else { panic!("{inject}") };
        assert_eq!(req.kind, McKind::ActionOptional);
        assert_eq!(req.phys % 4096, 0);
    }
    let lines = result_lines(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    let l = &lines[0];
    assert_eq!(l["read_page0"], "ok", "{l}");
    assert_eq!(l["read_page1"], "SIGBUS BUS_ADRERR", "{l}");
    assert_eq!(l["acked"], false, "{l}");
    let signals = l["signals"].as_array().unwrap();
    assert_eq!(signals.len(), 1, "{l}");
    assert_eq!(signals[0]["code"], "BUS_ADRERR");
    assert_eq!(signals[0]["si_code"], 2);
    assert_eq!(signals[0]["page"], 1, "si_addr must fall in the page beyond EOF: {l}");
    assert!(signals[0]["us"].as_f64().unwrap() >= 0.0);
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind in DIR: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn eatmem_stops_at_its_limit() {
    let out = run("eatmem", &["8"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("eatmem: stopped at the limit, 8 MiB"), "{stdout}");
}

#[test]
fn spin_runs_until_it_is_killed() {
    use std::io::BufRead;
    let mut child = Command::new(program("spin")).stdout(Stdio::piped()).spawn().expect("spin");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "spin: looping forever\n");
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(child.try_wait().unwrap().is_none(), "spin stopped by itself");
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
}
