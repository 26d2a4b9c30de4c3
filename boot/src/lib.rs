//! Host side of fsdax: build the kernel and its disk images, run them in QEMU
//! with an emulated NVDIMM, talk QMP.
//!
//! The `fsdax` binary (`main.rs`) is a thin CLI over this library; the QEMU
//! tests in `tests/` use the same library so that what they boot is exactly
//! what a user boots.

pub mod bench;
pub mod build;
pub mod fstool;
pub mod linux;
pub mod qemu;
pub mod qmp;
pub mod scenario;
pub mod summary;
pub mod system;
pub mod user;

use std::path::PathBuf;

/// The workspace root (where `Cargo.toml`, `qemu/` and `x86_64-fsdax.json` are).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("boot/ has a parent").to_path_buf()
}

/// Where build output and generated images go (`target/fsdax/`).
pub fn output_dir() -> PathBuf {
    workspace_root().join("target").join("fsdax")
}

pub use fsdax_ktest::protocol::{ExitCode, EXEC_STATUS_PREFIX, FW_CFG_CMDLINE, PROMPT, SUMMARY_PREFIX};
