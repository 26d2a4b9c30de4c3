//! The Linux reference guest: Debian's Linux 6.1 with XFS on the same
//! emulated NVDIMM that fsdax uses, to run the same benchmark binaries.
//!
//! Everything comes from Debian's packages through `apt-get download` and
//! `dpkg -x`, cached under `target/fsdax/linux/`; nothing is installed on
//! the host. The initramfs holds busybox (static), `mkfs.xfs`, `xfs_io` and
//! `xfs_repair` with their shared libraries, the kernel modules for NFIT,
//! pmem and XFS (their closure over `modules.dep`), `/init`
//! (`linux_init.sh`) and every user program in `/bin`. What `/init` runs
//! comes from the kernel command line (`crate::system::linux_append`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use crate::output_dir;

/// The kernel modules the guest loads, in this order before their
/// dependencies are added (crc32c_generic first: libcrc32c needs a crc32c
/// implementation when XFS loads, and the guest has no modprobe helper).
const MODULES: &[&str] = &["crc32c_generic", "nfit", "nd_pmem", "xfs"];

/// Programs from the packages that go into the initramfs, with the shared
/// libraries they need.
const TOOLS: &[&str] = &["sbin/mkfs.xfs", "usr/sbin/xfs_io", "sbin/xfs_repair"];

/// The Debian packages besides the kernel and their libraries.
const PACKAGES: &[&str] = &["busybox-static", "xfsprogs"];

const INIT: &str = include_str!("linux_init.sh");

/// A prepared guest: kernel image and initramfs.
#[derive(Debug, Clone)]
pub struct LinuxGuest {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// `uname -r` of the guest kernel, e.g. `6.1.0-57-amd64`.
    pub kernel_release: String,
}

/// Where the guest's downloads and build live.
pub fn cache_dir() -> PathBuf {
    output_dir().join("linux")
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.stderr(Stdio::piped()).output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `apt-cache depends` of `pkgs`: package -> the names it depends on.
fn apt_depends(pkgs: &[String]) -> Result<BTreeMap<String, Vec<String>>> {
    let out = run(
        Command::new("apt-cache")
            .args(["depends", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks"])
            .args(["--no-replaces", "--no-enhances"])
            .args(pkgs),
        "apt-cache depends",
    )?;
    let mut map = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in out.lines() {
        if !line.starts_with(' ') {
            current = Some(line.trim().to_string());
            map.entry(line.trim().to_string()).or_insert_with(Vec::new);
        } else if let (Some(pkg), Some(dep)) = (&current, line.trim().trim_start_matches('|').strip_prefix("Depends: "))
        {
            if !dep.starts_with('<') {
                map.get_mut(pkg).expect("entry made above").push(dep.to_string());
            }
        }
    }
    Ok(map)
}

/// The packages to download: the versioned 6.1 kernel image, busybox,
/// xfsprogs, and the `lib*` packages those depend on (recursively).
fn resolve_packages(progress: &dyn Fn(&str)) -> Result<Vec<String>> {
    let mut meta = apt_depends(&["linux-image-amd64".to_string()])?;
    if meta.get("linux-image-amd64").is_none_or(Vec::is_empty) {
        progress("apt-get update (the package lists are empty)");
        run(Command::new("apt-get").args(["update", "-qq"]), "apt-get update")
            .context("apt-get update needs root; run it once, or run `./fsdax bench` as root")?;
        meta = apt_depends(&["linux-image-amd64".to_string()])?;
    }
    let kernel = meta
        .get("linux-image-amd64")
        .and_then(|d| d.iter().find(|d| d.starts_with("linux-image-6.1")))
        .cloned()
        .ok_or_else(|| anyhow!("apt-cache knows no linux-image-6.1.* behind linux-image-amd64 (is this Debian 12?)"))?;
    let mut all: BTreeSet<String> = PACKAGES.iter().map(|s| s.to_string()).collect();
    all.insert(kernel);
    let mut frontier: Vec<String> = PACKAGES.iter().map(|s| s.to_string()).collect();
    while !frontier.is_empty() {
        let deps = apt_depends(&frontier)?;
        frontier = deps
            .values()
            .flatten()
            .filter(|d| d.starts_with("lib") && !all.contains(*d))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        all.extend(frontier.iter().cloned());
    }
    Ok(all.into_iter().collect())
}

fn has_deb(debs: &Path, pkg: &str) -> Result<bool> {
    let prefix = format!("{pkg}_");
    Ok(std::fs::read_dir(debs)?.filter_map(|e| e.ok()).any(|e| {
        e.file_name().to_string_lossy().starts_with(&prefix) && e.file_name().to_string_lossy().ends_with(".deb")
    }))
}

/// Downloads what is missing and extracts the packages into the sysroot
/// (again only when the set of .deb files changed).
fn fetch_and_extract(progress: &dyn Fn(&str)) -> Result<PathBuf> {
    let dir = cache_dir();
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    let list = dir.join("packages.txt");
    let packages: Vec<String> = match std::fs::read_to_string(&list) {
        Ok(text) if !text.trim().is_empty() => text.lines().map(String::from).collect(),
        _ => {
            progress("resolving the Debian packages of the Linux guest");
            let p = resolve_packages(progress)?;
            std::fs::write(&list, p.join("\n") + "\n")?;
            p
        }
    };
    let missing: Vec<&String> = packages.iter().filter(|p| !has_deb(&debs, p).unwrap_or(false)).collect();
    if !missing.is_empty() {
        progress(&format!("apt-get download: {} packages into {}", missing.len(), debs.display()));
        run(Command::new("apt-get").current_dir(&debs).args(["download", "-q"]).args(&missing), "apt-get download")?;
    }
    let mut names: Vec<String> = std::fs::read_dir(&debs)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deb"))
        .collect();
    names.sort();
    let stamp = names.join("\n");
    let sysroot = dir.join("sysroot");
    if std::fs::read_to_string(sysroot.join(".stamp")).ok().as_deref() != Some(stamp.as_str()) {
        progress(&format!("dpkg -x: {} packages into {}", names.len(), sysroot.display()));
        let _ = std::fs::remove_dir_all(&sysroot);
        std::fs::create_dir_all(&sysroot)?;
        for n in &names {
            run(Command::new("dpkg").arg("-x").arg(debs.join(n)).arg(&sysroot), &format!("dpkg -x {n}"))?;
        }
        std::fs::write(sysroot.join(".stamp"), &stamp)?;
    }
    Ok(sysroot)
}

/// The modules of `wanted` and everything they depend on, dependencies
/// first, as paths relative to the modules directory.
pub fn module_closure(modules_dep: &str, wanted: &[&str]) -> Result<Vec<String>> {
    let deps: BTreeMap<&str, Vec<&str>> = modules_dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m.trim(), d.split_whitespace().collect()))
        .collect();
    let norm = |s: &str| s.replace('-', "_");
    let mut order = Vec::new();
    fn visit<'a>(m: &'a str, deps: &BTreeMap<&'a str, Vec<&'a str>>, order: &mut Vec<String>) {
        if order.iter().any(|o| o == m) {
            return;
        }
        // modules.dep lists the whole closure of each module; the deepest come last.
        for d in deps.get(m).into_iter().flatten().rev() {
            visit(d, deps, order);
        }
        order.push(m.to_string());
    }
    for w in wanted {
        let file = format!("{}.ko", norm(w));
        let m = deps
            .keys()
            .find(|k| norm(k.rsplit('/').next().unwrap_or(k)) == file)
            .ok_or_else(|| anyhow!("module {w} is not in modules.dep"))?;
        visit(m, &deps, &mut order);
    }
    Ok(order)
}

/// The shared libraries `elf` needs (DT_NEEDED, recursively), resolved inside
/// the sysroot: (soname, path in the sysroot).
fn needed_closure(sysroot: &Path, elf: &Path, seen: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    let out = run(Command::new("readelf").arg("-d").arg(elf), "readelf -d (binutils)")?;
    let dirs = ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64"];
    for line in out.lines().filter(|l| l.contains("(NEEDED)")) {
        let Some(name) = line.split('[').nth(1).and_then(|s| s.split(']').next()) else { continue };
        if seen.contains_key(name) {
            continue;
        }
        let path = dirs
            .iter()
            .map(|d| sysroot.join(d).join(name))
            .find(|p| p.exists())
            .ok_or_else(|| anyhow!("{name}, needed by {}, is in none of the extracted packages", elf.display()))?;
        seen.insert(name.to_string(), path.clone());
        needed_closure(sysroot, &path, seen)?;
    }
    Ok(())
}

/// Copies `from` (following symlinks) to `stage/rel`.
fn stage_file(stage: &Path, rel: &str, from: &Path) -> Result<()> {
    let to = stage.join(rel);
    std::fs::create_dir_all(to.parent().expect("a path in the stage"))?;
    std::fs::copy(from, &to).with_context(|| format!("copying {} into the initramfs", from.display()))?;
    Ok(())
}

/// Prepares the guest: packages, sysroot, initramfs with the user programs
/// of `programs` (the directory they were built into). Prints progress
/// through `progress`.
pub fn prepare(programs: &Path, progress: &dyn Fn(&str)) -> Result<LinuxGuest> {
    let dir = cache_dir();
    let sysroot = fetch_and_extract(progress)?;
    let releases: Vec<String> = std::fs::read_dir(sysroot.join("lib/modules"))
        .context("the kernel package has no lib/modules")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let [release] = releases.as_slice() else {
        bail!("expected one kernel in {}, found {releases:?}", sysroot.display());
    };
    let kernel = sysroot.join("boot").join(format!("vmlinuz-{release}"));
    if !kernel.exists() {
        bail!("{} is missing from the kernel package", kernel.display());
    }
    let busybox = sysroot.join("bin/busybox");
    let moddir = sysroot.join("lib/modules").join(release);
    if !moddir.join("modules.dep").exists() {
        // The Debian package ships no modules.dep (the postinst makes it).
        run(Command::new(&busybox).arg("depmod").arg("-b").arg(&sysroot).arg(release), "busybox depmod")?;
    }
    let modules_dep = std::fs::read_to_string(moddir.join("modules.dep"))?;
    let modules = module_closure(&modules_dep, MODULES)?;

    let stage = dir.join("initramfs");
    let _ = std::fs::remove_dir_all(&stage);
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "mnt", "tmp", "lib64"] {
        std::fs::create_dir_all(stage.join(d))?;
    }
    stage_file(&stage, "bin/busybox", &busybox)?;
    std::fs::write(stage.join("init"), INIT)?;
    use std::os::unix::fs::PermissionsExt;
    let mut executables = vec!["init".to_string(), "bin/busybox".to_string()];
    for name in crate::user::program_names() {
        let rel = format!("bin/{name}");
        stage_file(&stage, &rel, &programs.join(name))?;
        executables.push(rel);
    }
    for f in &executables {
        std::fs::set_permissions(stage.join(f), std::fs::Permissions::from_mode(0o755))?;
    }
    for m in &modules {
        stage_file(&stage, &format!("lib/modules/{m}"), &moddir.join(m))?;
    }
    std::fs::write(stage.join("modules.order"), modules.join("\n") + "\n")?;
    let mut libs = BTreeMap::new();
    for tool in TOOLS {
        let path = sysroot.join(tool);
        stage_file(&stage, tool, &path)?;
        needed_closure(&sysroot, &path, &mut libs)?;
    }
    for (name, path) in &libs {
        stage_file(&stage, &format!("lib/x86_64-linux-gnu/{name}"), path)?;
    }
    let ld = sysroot.join("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
    stage_file(&stage, "lib64/ld-linux-x86-64.so.2", &ld)?;

    // Pack with busybox cpio (newc), file list on stdin.
    let mut list = String::new();
    let mut stack = vec![PathBuf::from(".")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(stage.join(&d))? {
            let e = e?;
            let rel = d.join(e.file_name());
            list.push_str(&rel.to_string_lossy());
            list.push('\n');
            if e.file_type()?.is_dir() {
                stack.push(rel);
            }
        }
    }
    let initramfs = dir.join("initramfs.cpio");
    let out = std::fs::File::create(&initramfs)?;
    let mut child = Command::new(&busybox)
        .current_dir(&stage)
        .args(["cpio", "-o", "-H", "newc"])
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .context("running busybox cpio")?;
    std::io::Write::write_all(child.stdin.as_mut().expect("piped"), list.as_bytes())?;
    drop(child.stdin.take());
    let status = child.wait()?;
    if !status.success() {
        bail!("busybox cpio failed ({status})");
    }
    progress(&format!(
        "guest ready: Linux {release}, initramfs {} MiB ({} modules, {} libraries)",
        std::fs::metadata(&initramfs)?.len() >> 20,
        modules.len(),
        libs.len()
    ));
    Ok(LinuxGuest { kernel, initramfs, kernel_release: release.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_closure_puts_dependencies_first() {
        let dep = "kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko\n\
                   kernel/lib/libcrc32c.ko:\n\
                   kernel/drivers/nvdimm/nd_pmem.ko: kernel/drivers/nvdimm/nd_btt.ko kernel/drivers/nvdimm/libnvdimm.ko\n\
                   kernel/drivers/nvdimm/nd_btt.ko: kernel/drivers/nvdimm/libnvdimm.ko\n\
                   kernel/drivers/nvdimm/libnvdimm.ko:\n\
                   kernel/crypto/crc32c_generic.ko:\n";
        let order = module_closure(dep, &["crc32c-generic", "nd_pmem", "xfs"]).unwrap();
        assert_eq!(
            order,
            [
                "kernel/crypto/crc32c_generic.ko",
                "kernel/drivers/nvdimm/libnvdimm.ko",
                "kernel/drivers/nvdimm/nd_btt.ko",
                "kernel/drivers/nvdimm/nd_pmem.ko",
                "kernel/lib/libcrc32c.ko",
                "kernel/fs/xfs/xfs.ko",
            ]
        );
        assert!(module_closure(dep, &["nosuch"]).is_err());
    }
}
