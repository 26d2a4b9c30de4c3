//! Building the kernel (build-std for `x86_64-fsdax.json`) and its BIOS and
//! UEFI disk images (the `bootloader` crate, pinned to 0.11.15).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use bootloader::{BootConfig, DiskImageBuilder};

use crate::{output_dir, workspace_root};

/// Which firmware boots the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS (QEMU's default): the fastest boot under TCG.
    Bios,
    /// OVMF.
    Uefi,
}

impl Firmware {
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    }
}

/// A cargo command for the kernel target (`x86_64-fsdax.json`,
/// build-std) on the kernel and its hal, in the kernel's own target
/// directory (`target/kernel`, so a build started from inside `cargo test`
/// or `cargo run` never waits on the lock of the host build).
fn kernel_cargo(subcommand: &str) -> Command {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        // Host-build variables of an enclosing cargo must not leak into the
        // kernel build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .args([
            subcommand,
            "--package",
            "fsdax-kernel",
            "--package",
            "fsdax-hal",
            "--profile",
            "kernel",
            "--target",
            "x86_64-fsdax.json",
            "-Zjson-target-spec",
            "-Zbuild-std=core,alloc,compiler_builtins",
            "-Zbuild-std-features=compiler-builtins-mem",
        ])
        .arg("--target-dir")
        .arg(root.join("target").join("kernel"));
    cmd
}

/// Builds the kernel ELF and returns its path.
pub fn build_kernel() -> Result<PathBuf> {
    let status = kernel_cargo("build").status().context("running cargo to build the kernel")?;
    if !status.success() {
        bail!("kernel build failed ({status})");
    }
    let elf = workspace_root().join("target").join("kernel").join("x86_64-fsdax").join("kernel").join("fsdax-kernel");
    if !elf.exists() {
        bail!("kernel build succeeded but {} is missing", elf.display());
    }
    Ok(elf)
}

/// Runs clippy on the kernel and its hal for the kernel target, warnings
/// denied. Ok if clean.
pub fn clippy_kernel() -> Result<()> {
    let status = kernel_cargo("clippy")
        .args(["--", "-D", "warnings"])
        .status()
        .context("running cargo clippy for the kernel target")?;
    if !status.success() {
        bail!("clippy found problems in the kernel ({status})");
    }
    Ok(())
}

/// The bootloader configuration of the image: quiet (trace logging to the
/// frame buffer makes boot 2-4x slower under TCG).
fn boot_config() -> BootConfig {
    let mut config = BootConfig::default();
    config.frame_buffer_logging = false;
    config.serial_logging = true;
    config.log_level = bootloader_boot_config::LevelFilter::Warn;
    config
}

/// Path of the disk image for `firmware`.
pub fn image_path(firmware: Firmware) -> PathBuf {
    output_dir().join(format!("fsdax-{}.img", firmware.name()))
}

/// Builds the disk image for `firmware` from the kernel ELF.
pub fn build_image(kernel: &Path, firmware: Firmware) -> Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let out = image_path(firmware);
    std::fs::create_dir_all(output_dir())?;
    let mut builder = DiskImageBuilder::new(kernel.to_path_buf());
    builder.set_boot_config(&boot_config());
    // Written next to the image and renamed over it, so a QEMU that is
    // booting the old image (another test, another runner) never reads a
    // half-written one; each writer has a file of its own.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = out.with_extension(format!("img.partial-{}-{n}", std::process::id()));
    let built = match firmware {
        Firmware::Bios => builder.create_bios_image(&tmp),
        Firmware::Uefi => builder.create_uefi_image(&tmp),
    }
    .with_context(|| format!("creating the {} image {}", firmware.name(), tmp.display()))
    .and_then(|()| {
        std::fs::rename(&tmp, &out).with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))
    });
    if built.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    built.map(|()| out)
}

/// Builds the kernel and the image for `firmware`; returns the image path.
pub fn build_all(firmware: Firmware) -> Result<PathBuf> {
    let kernel = build_kernel()?;
    build_image(&kernel, firmware)
}
