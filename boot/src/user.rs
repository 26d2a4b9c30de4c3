//! Building the user programs (`user/`) into `target/fsdax/user/`: static
//! Linux x86_64 binaries that run unchanged on Linux and on fsdax.
//!
//! C programs are built with `musl-gcc -static -O2` (Debian `musl-tools`),
//! the Rust program with cargo for `x86_64-unknown-linux-musl` (its own
//! workspace, `user/rust`, target directory `target/user-rust`). Both are
//! incremental: a C program is rebuilt only when one of its sources or a
//! header of `user/c` is newer than the binary, and cargo decides for Rust.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};

use crate::{output_dir, workspace_root};

/// A C program: its name (the binary's) and its source files in `user/c`.
#[derive(Debug, Clone, Copy)]
pub struct CProgram {
    pub name: &'static str,
    pub sources: &'static [&'static str],
}

/// Every C program under `user/c`.
pub const C_PROGRAMS: &[CProgram] = &[
    CProgram {
        name: "suite",
        sources: &[
            "suite.c",
            "suite_child.c",
            "suite_proc.c",
            "suite_mem.c",
            "suite_sig.c",
            "suite_fs.c",
            "suite_efault.c",
            "check.c",
        ],
    },
    CProgram { name: "hello", sources: &["hello.c"] },
    CProgram { name: "nullderef", sources: &["nullderef.c"] },
    CProgram { name: "ring3", sources: &["ring3.c", "check.c"] },
    CProgram { name: "pwrite_pread_pair", sources: &["pwrite_pread_pair.c", "check.c"] },
    CProgram { name: "poison_rw", sources: &["poison_rw.c", "check.c"] },
    CProgram { name: "bench", sources: &["bench.c", "check.c"] },
    CProgram { name: "scen_dax", sources: &["scen_dax.c", "scen.c", "check.c"] },
    CProgram { name: "scen_mf", sources: &["scen_mf.c", "scen.c", "check.c"] },
    CProgram { name: "spin", sources: &["spin.c"] },
    CProgram { name: "eatmem", sources: &["eatmem.c"] },
];

/// The Rust program (`user/rust`, binary name).
pub const RUST_PROGRAM: &str = "rsuite";

/// The musl target of the Rust program.
pub const RUST_TARGET: &str = "x86_64-unknown-linux-musl";

const CFLAGS: &[&str] = &["-static", "-O2", "-Wall", "-Wextra"];

/// Where the built programs go.
pub fn user_bin_dir() -> PathBuf {
    output_dir().join("user")
}

/// Path of the built program `name`.
pub fn program_path(name: &str) -> PathBuf {
    user_bin_dir().join(name)
}

fn source_dir() -> PathBuf {
    workspace_root().join("user").join("c")
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The compiler for C programs, or an error that says how to install it.
fn musl_gcc() -> Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("musl-gcc"))
        .find(|p| p.exists())
        .ok_or_else(|| {
            anyhow!(
                "musl-gcc not found: install it with `apt-get install --no-install-recommends musl-tools` \
                 (`./fsdax` does it)"
            )
        })
}

/// Builds one C program if any input is newer than its binary; returns
/// whether it was rebuilt.
pub fn build_c(program: &CProgram) -> Result<bool> {
    let src = source_dir();
    let out = program_path(program.name);
    let mut inputs: Vec<PathBuf> = program.sources.iter().map(|s| src.join(s)).collect();
    for entry in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "h") {
            inputs.push(path);
        }
    }
    let newest_input = inputs
        .iter()
        .map(|p| mtime(p).ok_or_else(|| anyhow!("{} is missing", p.display())))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .max();
    if let (Some(built), Some(newest)) = (mtime(&out), newest_input) {
        if built >= newest {
            return Ok(false);
        }
    }
    std::fs::create_dir_all(user_bin_dir())?;
    // Build next to the target and rename, so a reader never sees half a binary.
    let tmp = out.with_extension("partial");
    let status = Command::new(musl_gcc()?)
        .current_dir(&src)
        .args(CFLAGS)
        .arg("-o")
        .arg(&tmp)
        .args(program.sources)
        .status()
        .with_context(|| format!("running musl-gcc for {}", program.name))?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        bail!("musl-gcc failed for {} ({status})", program.name);
    }
    std::fs::rename(&tmp, &out)?;
    Ok(true)
}

/// Builds the Rust program with cargo (which is incremental) and copies it
/// into `target/fsdax/user/` when it changed.
pub fn build_rust() -> Result<bool> {
    let root = workspace_root();
    let target_dir = root.join("target").join("user-rust");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root.join("user").join("rust"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .args(["build", "--quiet", "--release", "--locked", "--target", RUST_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .context("running cargo to build the Rust user program")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("target may not be installed") || stderr.contains("can't find crate for `std`") {
            format!("\nadd the target with `rustup target add {RUST_TARGET} --toolchain nightly` (`./fsdax` does it)")
        } else {
            String::new()
        };
        bail!("building user/rust failed ({}):\n{stderr}{hint}", output.status);
    }
    let built = target_dir.join(RUST_TARGET).join("release").join(RUST_PROGRAM);
    let out = program_path(RUST_PROGRAM);
    if mtime(&out).is_some_and(|o| mtime(&built).is_some_and(|b| o >= b)) {
        return Ok(false);
    }
    std::fs::create_dir_all(user_bin_dir())?;
    let tmp = out.with_extension("partial");
    std::fs::copy(&built, &tmp).with_context(|| format!("copying {}", built.display()))?;
    std::fs::rename(&tmp, &out)?;
    Ok(true)
}

/// Builds every user program; returns the directory that holds them.
pub fn build_all() -> Result<PathBuf> {
    for program in C_PROGRAMS {
        build_c(program)?;
    }
    build_rust()?;
    Ok(user_bin_dir())
}

/// The names of every user program, C and Rust.
pub fn program_names() -> Vec<&'static str> {
    C_PROGRAMS.iter().map(|p| p.name).chain([RUST_PROGRAM]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_source_exists_and_every_c_file_is_listed() {
        let src = source_dir();
        let mut listed: Vec<&str> = C_PROGRAMS.iter().flat_map(|p| p.sources.iter().copied()).collect();
        for s in &listed {
            assert!(src.join(s).exists(), "{s} is listed but missing");
        }
        listed.sort();
        listed.dedup();
        let mut on_disk: Vec<String> = std::fs::read_dir(&src)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".c"))
            .collect();
        on_disk.sort();
        assert_eq!(listed, on_disk, "a .c file in user/c that no program builds, or the other way round");
    }
}
