//! The systems the same user programs run on, in the same QEMU machine:
//! fsdax, and Linux 6.1 XFS-DAX as the reference.
//!
//! A [`System`] prepares once (build, download) and then boots as often as
//! asked: with a fresh file system or the one the NVDIMM holds, runs one
//! user program on it, and powers off. The caller reads the console of the
//! returned [`Machine`]: the program's own output, and status lines of the
//! system that start with [`STATUS_PREFIX`]:
//!
//! | line | meaning |
//! |---|---|
//! | `@@fsdax ready: ...` | the file system is mounted, the program starts |
//! | `@@fsdax exit N` | the program exited with status N |
//! | `@@fsdax dmesg: ...` | a kernel log line about memory failure, machine checks, the file system |
//! | `@@fsdax fsck clean` / `@@fsdax fsck errors: ...` | the file system check after the program |
//! | `@@fsdax error: ...` | the system could not do what was asked |
//! | `@@fsdax done` | everything is done; the machine powers off |

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::build::{self, Firmware};
use crate::fstool;
use crate::linux::{self, LinuxGuest};
use crate::qemu::{self, Accel, Machine, RunOptions};

/// NVDIMM size of the machine, for both systems.
pub const PMEM_SIZE: u64 = 1 << 30;

/// What starts a status line of the system on the console.
pub const STATUS_PREFIX: &str = "@@fsdax ";

/// How the file system is laid out when it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsLayout {
    /// The system's defaults (Linux: `mkfs.xfs -m reflink=1,rmapbt=1`).
    Default,
    /// Laid out for 2 MiB mappings where the system needs to be told (Linux:
    /// `-d su=2m,sw=1` and a 2 MiB extent size hint on the directory).
    Aligned2M,
}

impl FsLayout {
    pub fn name(self) -> &'static str {
        match self {
            FsLayout::Default => "default",
            FsLayout::Aligned2M => "aligned2m",
        }
    }
}

/// One boot: which program runs on which file system.
#[derive(Debug, Clone)]
pub struct BootSpec {
    /// A user program (its name in `target/fsdax/user/`) and its arguments;
    /// `{dir}` stands for the directory of the mounted file system and
    /// `{device}` for its raw device.
    pub command: Vec<String>,
    /// The NVDIMM backing file (created when missing).
    pub pmem: PathBuf,
    /// Make a fresh file system; otherwise mount what the NVDIMM holds.
    pub mkfs: bool,
    pub layout: FsLayout,
    /// Check the file system (unmounted) after the program.
    pub fsck: bool,
    /// A QMP socket for the host's requests (machine checks, stop).
    pub qmp: Option<PathBuf>,
}

impl BootSpec {
    /// A fresh default file system, no check, no QMP.
    pub fn new(command: Vec<String>, pmem: PathBuf) -> BootSpec {
        BootSpec { command, pmem, mkfs: true, layout: FsLayout::Default, fsck: false, qmp: None }
    }
}

/// A system the user programs run on.
pub trait System {
    /// `fsdax` or `linux`: the key in the reports.
    fn name(&self) -> &'static str;
    /// Builds or downloads what the boots need; `programs` is the directory
    /// of the built user programs.
    fn prepare(&mut self, programs: &Path, progress: &dyn Fn(&str)) -> Result<()>;
    /// Boots the machine for `spec` and returns it running.
    fn boot(&mut self, spec: &BootSpec) -> Result<Machine>;
    /// Boots the system's own raw copy benchmark on the NVDIMM `pmem`
    /// (which holds no file system), if it has one: the machine prints
    /// [`RawCopyBench`]'s lines and powers off. None if the system has none.
    fn boot_raw_copy_bench(&mut self, pmem: &Path) -> Result<Option<(Machine, RawCopyBench)>> {
        let _ = pmem;
        Ok(None)
    }
}

/// How to read a system's raw copy benchmark from its console.
#[derive(Debug, Clone, Copy)]
pub struct RawCopyBench {
    /// What starts each measurement line (a JSON object).
    pub line_prefix: &'static str,
    /// The line that says it is done.
    pub done: &'static str,
}

/// fsdax: each boot installs the program into the NVDIMM image's file
/// system as `/bin/NAME` (formatting the image first for a fresh file
/// system) and boots the kernel with `run [fsck] /bin/NAME ARGS`, which
/// speaks the status protocol above.
#[derive(Debug, Default)]
pub struct Fsdax {
    image: Option<PathBuf>,
    programs: Option<PathBuf>,
}

/// The directory programs work in, and the raw device, on fsdax.
const FSDAX_DIR: &str = "/";
const FSDAX_DEVICE: &str = "/dev/pmem0";

/// The kernel command line that runs `spec` on fsdax.
pub fn fsdax_cmdline(spec: &BootSpec) -> Result<String> {
    let Some((program, args)) = spec.command.split_first() else { bail!("no program to run") };
    let mut words = vec![String::from("run")];
    if spec.fsck {
        words.push("fsck".into());
    }
    words.push(format!("/bin/{program}"));
    for arg in args {
        let arg = arg.replace("{dir}", FSDAX_DIR).replace("{device}", FSDAX_DEVICE);
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            bail!("argument {arg:?} cannot pass through the kernel command line (empty, or white space)");
        }
        words.push(arg);
    }
    Ok(words.join(" "))
}

impl System for Fsdax {
    fn name(&self) -> &'static str {
        "fsdax"
    }

    fn prepare(&mut self, programs: &Path, progress: &dyn Fn(&str)) -> Result<()> {
        progress("building the fsdax kernel image");
        self.image = Some(build::build_all(Firmware::Bios)?);
        self.programs = Some(programs.to_path_buf());
        Ok(())
    }

    fn boot(&mut self, spec: &BootSpec) -> Result<Machine> {
        let (Some(image), Some(programs)) = (&self.image, &self.programs) else {
            bail!("Fsdax::prepare was not called");
        };
        if let Some(dir) = spec.pmem.parent() {
            std::fs::create_dir_all(dir)?;
        }
        qemu::ensure_pmem_file(&spec.pmem, PMEM_SIZE)?;
        if spec.mkfs {
            fstool::format(&spec.pmem).map_err(|e| anyhow::anyhow!("formatting {}: {e}", spec.pmem.display()))?;
        }
        let program = spec.command.first().context("no program to run")?;
        let dest = format!("/bin/{program}");
        fstool::install(&spec.pmem, &programs.join(program), &dest)
            .map_err(|e| anyhow::anyhow!("installing {program}: {e}"))?;
        let mut opts = RunOptions::new(Firmware::Bios, image.clone(), spec.pmem.clone());
        opts.pmem_size = PMEM_SIZE;
        opts.qmp = spec.qmp.clone();
        opts.cmdline = fsdax_cmdline(spec)?;
        Machine::start(&opts)
    }

    /// The kernel's `bench pmem` (copies between a RAM buffer and the last
    /// 64 MiB of pmem0, which must hold no file system).
    fn boot_raw_copy_bench(&mut self, pmem: &Path) -> Result<Option<(Machine, RawCopyBench)>> {
        let Some(image) = &self.image else { bail!("Fsdax::prepare was not called") };
        qemu::ensure_pmem_file(pmem, PMEM_SIZE)?;
        let mut opts = RunOptions::new(Firmware::Bios, image.clone(), pmem.to_path_buf());
        opts.pmem_size = PMEM_SIZE;
        opts.cmdline = "bench pmem".into();
        let m = Machine::start(&opts)?;
        Ok(Some((m, RawCopyBench { line_prefix: "{\"bench\":\"pmem\"", done: "bench: done" })))
    }
}

/// Linux 6.1 XFS-DAX (`reflink=1,rmapbt=1`, `-o dax=always`) on the same machine.
#[derive(Debug, Default)]
pub struct Linux {
    guest: Option<LinuxGuest>,
}

/// The mount point and raw device in the Linux guest.
const LINUX_DIR: &str = "/mnt";
const LINUX_DEVICE: &str = "/dev/pmem0";

/// The kernel command line that makes the guest's `/init` run `spec`.
pub fn linux_append(spec: &BootSpec) -> Result<String> {
    let mut words = Vec::new();
    for arg in &spec.command {
        let arg = arg.replace("{dir}", LINUX_DIR).replace("{device}", LINUX_DEVICE);
        if arg.is_empty() || arg.contains(['+', ' ', '"', '\t', '\n']) {
            bail!("argument {arg:?} cannot pass through the kernel command line (empty, or a space, quote or '+')");
        }
        words.push(arg);
    }
    if words.is_empty() {
        bail!("no program to run");
    }
    Ok(format!(
        "console=ttyS0 loglevel=3 panic=-1 fsdax_run={} fsdax_mkfs={} fsdax_layout={} fsdax_fsck={}",
        words.join("+"),
        u8::from(spec.mkfs),
        spec.layout.name(),
        u8::from(spec.fsck)
    ))
}

impl System for Linux {
    fn name(&self) -> &'static str {
        "linux"
    }

    fn prepare(&mut self, programs: &Path, progress: &dyn Fn(&str)) -> Result<()> {
        self.guest = Some(linux::prepare(programs, progress)?);
        Ok(())
    }

    fn boot(&mut self, spec: &BootSpec) -> Result<Machine> {
        let guest = self.guest.as_ref().context("Linux::prepare was not called")?;
        if let Some(dir) = spec.pmem.parent() {
            std::fs::create_dir_all(dir)?;
        }
        qemu::ensure_pmem_file(&spec.pmem, PMEM_SIZE)?;
        let fills = qemu::machine_fills(Accel::detect(), &spec.pmem, PMEM_SIZE)?;
        let mut args = qemu::config_args(&fills, &["-drive", "-fw_cfg"])?;
        args.extend(["-kernel".into(), qemu::qemu_path(&guest.kernel)?]);
        args.extend(["-initrd".into(), qemu::qemu_path(&guest.initramfs)?]);
        args.extend(["-append".into(), linux_append(spec)?]);
        args.extend(["-serial".into(), "stdio".into(), "-monitor".into(), "none".into()]);
        if let Some(qmp) = &spec.qmp {
            let _ = std::fs::remove_file(qmp);
            args.extend(["-qmp".into(), format!("unix:{},server=on,wait=off", qemu::qemu_path(qmp)?)]);
        }
        let mut cmd = std::process::Command::new(qemu::qemu_binary()?);
        cmd.args(&args);
        Machine::spawn(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsdax_command_line_carries_the_program() {
        let mut spec = BootSpec::new(
            vec!["scen_dax".into(), "--device".into(), "{device}".into(), "hole_read,coherence".into(), "{dir}".into()],
            "/tmp/p.img".into(),
        );
        assert_eq!(fsdax_cmdline(&spec).unwrap(), "run /bin/scen_dax --device /dev/pmem0 hole_read,coherence /");
        spec.fsck = true;
        assert!(fsdax_cmdline(&spec).unwrap().starts_with("run fsck /bin/scen_dax "));
        spec.command = vec!["bench".into(), "two words".into()];
        assert!(fsdax_cmdline(&spec).is_err());
        spec.command.clear();
        assert!(fsdax_cmdline(&spec).is_err());
    }

    #[test]
    fn linux_command_line_carries_the_program() {
        let mut spec = BootSpec::new(
            vec!["scen_dax".into(), "--device".into(), "{device}".into(), "hole_read,coherence".into(), "{dir}".into()],
            "/tmp/p.img".into(),
        );
        spec.fsck = true;
        spec.layout = FsLayout::Aligned2M;
        let append = linux_append(&spec).unwrap();
        assert!(
            append.ends_with(
                "fsdax_run=scen_dax+--device+/dev/pmem0+hole_read,coherence+/mnt fsdax_mkfs=1 \
                 fsdax_layout=aligned2m fsdax_fsck=1"
            ),
            "{append}"
        );
        spec.command = vec!["bench".into(), "two words".into()];
        assert!(linux_append(&spec).is_err());
        spec.command = vec!["a+b".into()];
        assert!(linux_append(&spec).is_err());
        spec.command.clear();
        assert!(linux_append(&spec).is_err());
    }
}
