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
}
