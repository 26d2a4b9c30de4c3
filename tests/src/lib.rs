//! Shared helpers for the host-driven QEMU tests: build the images once per
//! test binary, boot a machine with its own NVDIMM file, read its console.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

pub use fsdax_boot::build::Firmware;
use fsdax_boot::qemu::{Machine, RunOptions};
pub use fsdax_boot::{ExitCode, EXEC_STATUS_PREFIX, PROMPT, SUMMARY_PREFIX};

/// Generous: TCG on a loaded 2-core machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

static BIOS: OnceLock<PathBuf> = OnceLock::new();
static UEFI: OnceLock<PathBuf> = OnceLock::new();

/// The disk image for `firmware`, built once per test binary.
pub fn image(firmware: Firmware) -> PathBuf {
    let cell = match firmware {
        Firmware::Bios => &BIOS,
        Firmware::Uefi => &UEFI,
    };
    cell.get_or_init(|| {
        // One build at a time: both firmwares share the kernel build.
        static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        fsdax_boot::build::build_all(firmware).expect("building the kernel image")
    })
    .clone()
}

/// A fresh NVDIMM backing file for test `name` (any old one is removed).
pub fn fresh_pmem(name: &str) -> PathBuf {
    let path = pmem_path(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// The NVDIMM backing file path for test `name` (kept between boots).
pub fn pmem_path(name: &str) -> PathBuf {
    fsdax_boot::output_dir().join("tests").join(format!("{name}.pmem"))
}

/// Writes an NVDIMM image of `size` bytes at `path` holding `files` files
/// straight through the file-system library (12-byte names in the root,
/// `extents` one-block extents each that cannot merge), sparse; returns
/// the estimate of the RAM mounting it takes. Much faster than `put`s.
pub fn image_with_files(path: &std::path::Path, size: u64, files: u64, extents: u64) -> fsdax_fs::MemoryEstimate {
    use std::io::{Seek, SeekFrom, Write};

    use fsdax_fs::{FileSystem, MemPmem, MkfsOptions};
    // The longest log: fewer checkpoints while the files are made.
    let opts = MkfsOptions { log_blocks: Some(2048), ..MkfsOptions::default() };
    let mut fs = FileSystem::mkfs(MemPmem::new(size as usize), opts).expect("mkfs");
    let root = fs.root();
    for i in 0..files {
        let f = fs.create(root, format!("f{i:011}").as_bytes()).expect("create");
        for e in 0..extents {
            fs.write(f, e * 2 * 4096, b"x").expect("write");
        }
    }
    let pm = fs.unmount().expect("unmount");
    let est = FileSystem::estimate_mount(&pm).expect("estimate");
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("image folder");
    }
    let mut out = std::fs::File::create(path).expect("image file");
    out.set_len(size).expect("image size");
    for (i, block) in pm.bytes().chunks(4096).enumerate() {
        if block.iter().any(|&b| b != 0) {
            out.seek(SeekFrom::Start(i as u64 * 4096)).and_then(|_| out.write_all(block)).expect("image write");
        }
    }
    est
}

/// Run options for test `name` with the given command line.
pub fn options(firmware: Firmware, pmem: PathBuf, cmdline: &str) -> RunOptions {
    let mut opts = RunOptions::new(firmware, image(firmware), pmem);
    opts.cmdline = cmdline.to_string();
    opts
}

/// Boots `cmdline` with a fresh NVDIMM under BIOS.
pub fn boot(name: &str, cmdline: &str) -> Machine {
    Machine::start(&options(Firmware::Bios, fresh_pmem(name), cmdline)).expect("starting QEMU")
}

/// Boots the shell and waits for its first prompt.
pub fn boot_shell(name: &str) -> Machine {
    let mut m = boot(name, "shell");
    m.wait_for(PROMPT, BOOT_TIMEOUT).expect("shell prompt");
    m
}

/// Types a command and returns its output (up to the next prompt).
pub fn command(m: &mut Machine, line: &str) -> String {
    m.send_line(line).expect("console input");
    let out = m.wait_for(PROMPT, BOOT_TIMEOUT).unwrap_or_else(|e| panic!("`{line}` did not finish: {e:#}"));
    out.trim_end_matches(PROMPT).to_string()
}

/// The harness summary `ktest: P passed, F failed, S skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// Parses the last harness summary line in `text`.
pub fn parse_summary(text: &str) -> Option<Summary> {
    let line = text.lines().rev().find(|l| l.starts_with(SUMMARY_PREFIX))?;
    let rest = line.trim().strip_prefix(SUMMARY_PREFIX)?;
    let (p, rest) = rest.split_once(" passed, ")?;
    let (f, rest) = rest.split_once(" failed, ")?;
    let s = rest.strip_suffix(" skipped")?;
    Some(Summary { passed: p.trim().parse().ok()?, failed: f.trim().parse().ok()?, skipped: s.trim().parse().ok()? })
}

/// Records a QEMU scenario in the test summary (`started` now, `passed`
/// when the returned guard drops without a panic).
pub fn scenario(name: &str) -> fsdax_boot::summary::Scenario {
    fsdax_boot::summary::Scenario::start(name)
}

/// The exit code behind a QEMU exit status.
pub fn exit_code(status: std::process::ExitStatus) -> Option<ExitCode> {
    status.code().and_then(ExitCode::from_qemu_status)
}

/// The user programs (`user/`), built once per test binary.
pub fn programs() -> &'static std::path::Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| fsdax_boot::user::build_all().expect("building the user programs"))
}

/// A fresh NVDIMM for `test` with the user programs `names` in /bin.
pub fn image_with(test: &str, names: &[&str]) -> PathBuf {
    let pmem = fresh_pmem(test);
    fsdax_boot::qemu::ensure_pmem_file(&pmem, fsdax_boot::qemu::DEFAULT_PMEM_SIZE).expect("NVDIMM file");
    for name in names {
        fsdax_boot::fstool::install(&pmem, &programs().join(name), &format!("/bin/{name}"))
            .expect("installing a program");
    }
    pmem
}

/// Boots `exec CMDLINE` with the programs `names` installed and returns the
/// transcript and the program's status (as a shell reports it), after
/// checking that QEMU left with the program's end, not a kernel panic.
pub fn exec(test: &str, names: &[&str], cmdline: &str) -> (String, u8) {
    let pmem = image_with(test, names);
    let mut m = Machine::start(&options(Firmware::Bios, pmem, &format!("exec {cmdline}"))).expect("QEMU");
    let out = m.wait_for(EXEC_STATUS_PREFIX, Duration::from_secs(600)).expect("the end line");
    let status = m.wait_exit(BOOT_TIMEOUT).expect("QEMU exit");
    let text = m.transcript();
    assert!(!out.contains("KERNEL PANIC"), "{text}");
    assert_eq!(exit_code(status), Some(ExitCode::ProgramEnded), "QEMU status {status:?}:\n{text}");
    let line = text.lines().find(|l| l.starts_with(EXEC_STATUS_PREFIX)).expect("end line");
    (text.clone(), fsdax_boot::qemu::parse_exec_status(line).expect("a status"))
}

/// Boots the shell with the programs `names` installed and waits until the
/// file system is mounted and the prompt is up.
pub fn shell_with(test: &str, names: &[&str]) -> Machine {
    let pmem = image_with(test, names);
    let mut m = Machine::start(&options(Firmware::Bios, pmem, "shell")).expect("QEMU");
    m.wait_for("mounted pmem0", BOOT_TIMEOUT).expect("the file system is mounted at boot");
    m.wait_for(PROMPT, BOOT_TIMEOUT).expect("prompt");
    m
}

/// QEMU places the NVDIMM at 4 GiB.
pub const PMEM_BASE: u64 = 0x1_0000_0000;
/// An action-optional machine check (a memory scrub): MCi_STATUS and
/// MCG_STATUS (RIPV|MCIP).
pub const SRAO: (&str, &str) = ("0xbd000000000000c0", "0x5");
/// An action-required machine check (a data load): MCi_STATUS and
/// MCG_STATUS (RIPV|EIPV|MCIP).
pub const SRAR: (&str, &str) = ("0xbd80000000000134", "0x7");

/// Starts QEMU (BIOS) on `pmem` with kernel command line `cmdline` and a
/// QMP socket named after `name`; waits for nothing on the console.
pub fn start_with_qmp(name: &str, pmem: PathBuf, cmdline: &str) -> (Machine, fsdax_boot::qmp::Qmp) {
    let qmp_path = fsdax_boot::output_dir().join("tests").join(format!("{name}.qmp"));
    let _ = std::fs::remove_file(&qmp_path);
    let mut opts = options(Firmware::Bios, pmem, cmdline);
    opts.qmp = Some(qmp_path.clone());
    let m = Machine::start(&opts).expect("QEMU");
    let qmp = fsdax_boot::qmp::Qmp::connect(&qmp_path, BOOT_TIMEOUT).expect("QMP");
    (m, qmp)
}

/// Raises a machine check of kind `(status, mcg)` ([`SRAO`], [`SRAR`]) at
/// physical address `phys` on CPU 0, bank 9, and checks that QEMU took it.
pub fn inject_mce(qmp: &mut fsdax_boot::qmp::Qmp, (status, mcg): (&str, &str), phys: u64) {
    let cmd = format!("mce -b 0 9 {status} {mcg} {phys:#x} 0x86");
    let out = qmp.hmp(&cmd).expect("mce");
    assert!(out.trim().is_empty(), "`{cmd}` said: {out}");
}

/// `exec /bin/poison_rw prepare FILE` on the console: the device offset of
/// the file's block 1 (page aligned).
pub fn poison_rw_prepare(m: &mut Machine, file: &str) -> u64 {
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

/// The case lines of a `check.h` program (`ok NAME`, `FAIL NAME: why`,
/// `skip NAME: why`) in a transcript: name -> (verdict, reason).
pub fn case_lines(text: &str) -> std::collections::BTreeMap<String, (String, String)> {
    let mut cases = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some((verdict, rest)) = line.split_once(' ') else { continue };
        if !matches!(verdict, "ok" | "FAIL" | "skip") {
            continue;
        }
        let (name, why) = rest.split_once(": ").unwrap_or((rest, ""));
        cases.insert(name.to_string(), (verdict.to_string(), why.to_string()));
    }
    cases
}

/// Runs the named scenarios of the scenario runner on fsdax (one boot per
/// phase) into a fresh output directory `target/fsdax/tests/TEST` and
/// returns the result of each (`scenarios.json`'s `results`).
pub fn run_fsdax_scenarios(test: &str, names: &[&str]) -> Vec<serde_json::Value> {
    use fsdax_boot::system::{Fsdax, System};
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
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    doc["results"].as_array().expect("results").clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_parses() {
        let s = |passed, failed, skipped| Some(Summary { passed, failed, skipped });
        assert_eq!(parse_summary("x\nktest: 12 passed, 3 failed, 1 skipped\n"), s(12, 3, 1));
        assert_eq!(parse_summary("ktest: 0 passed, 0 failed, 0 skipped"), s(0, 0, 0));
        assert_eq!(parse_summary("ktest: 4 passed, 0 failed"), None, "the old format has no skipped count");
        assert_eq!(parse_summary("no summary"), None);
    }

    #[test]
    fn case_lines_parse() {
        let c = case_lines("ok a\n[ 0.1] INFO x\nFAIL b: expected 1, got 2\nskip c: not DAX\nokay d\n");
        assert_eq!(c.len(), 3);
        assert_eq!(c["a"], ("ok".to_string(), String::new()));
        assert_eq!(c["b"], ("FAIL".to_string(), "expected 1, got 2".to_string()));
        assert_eq!(c["c"].0, "skip");
    }
}
