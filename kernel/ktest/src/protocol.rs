//! The harness protocol: what the kernel prints and how it exits QEMU.
//!
//! QEMU's `isa-debug-exit` device (port 0xf4) turns a written value `v` into
//! the process exit status `2 * v + 1`.

/// The kernel writes one of these to the debug-exit port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// `poweroff` when ACPI shutdown is unavailable.
    Poweroff = 0x00,
    /// Every kernel test passed.
    TestsPassed = 0x10,
    /// At least one kernel test failed.
    TestsFailed = 0x11,
    /// A benchmark run finished.
    BenchDone = 0x12,
    /// The `exec` command line's program ended; the console's last line
    /// (`EXEC_STATUS_PREFIX`) says how.
    ProgramEnded = 0x13,
    /// A fault or panic in the kernel itself.
    KernelPanic = 0x20,
    /// A fatal machine check.
    FatalMachineCheck = 0x30,
}

impl ExitCode {
    /// The QEMU process exit status this code produces.
    pub const fn qemu_status(self) -> i32 {
        (self as i32) * 2 + 1
    }

    /// What the code means, for people.
    pub const fn meaning(self) -> &'static str {
        match self {
            Self::Poweroff => "powered off",
            Self::TestsPassed => "every kernel test passed",
            Self::TestsFailed => "a kernel test failed",
            Self::BenchDone => "benchmarks done",
            Self::KernelPanic => "kernel panic",
            Self::FatalMachineCheck => "fatal machine check",
            Self::ProgramEnded => "the program started with `exec` ended",
        }
    }

    /// The code behind a QEMU exit status, if it is one of ours.
    pub fn from_qemu_status(status: i32) -> Option<Self> {
        [
            Self::Poweroff,
            Self::TestsPassed,
            Self::TestsFailed,
            Self::BenchDone,
            Self::ProgramEnded,
            Self::KernelPanic,
            Self::FatalMachineCheck,
        ]
        .into_iter()
        .find(|c| c.qemu_status() == status)
    }
}

/// Prefix of the one summary line: `ktest: P passed, F failed, S skipped`.
pub const SUMMARY_PREFIX: &str = "ktest: ";
/// The line the `exec` command line prints when its program ended, before
/// QEMU exits with [`ExitCode::ProgramEnded`]: `exec status: N (how)`, N as
/// a shell reports it (the exit code, or 128 + the signal number).
pub const EXEC_STATUS_PREFIX: &str = "exec status: ";
/// The shell prompt.
pub const PROMPT: &str = "fsdax> ";
/// The name of the QEMU fw_cfg file that carries the kernel command line.
pub const FW_CFG_CMDLINE: &str = "opt/fsdax/cmdline";
