//! `./fsdax` keeps the caller's folder: relative `--pmem` and host paths
//! resolve against it, and cargo finds the repository by its manifest path.
//! A stub `cargo` first in PATH records what the script runs and where.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn the_script_runs_the_cli_from_the_callers_folder() {
    let root = fsdax_boot::workspace_root();
    let dir = std::env::temp_dir().join(format!("fsdax-script-{}", std::process::id()));
    let bin = dir.join("bin");
    let work = dir.join("work");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let record = dir.join("record");
    let stub = bin.join("cargo");
    std::fs::write(&stub, format!("#!/bin/sh\npwd > {0}\necho \"$@\" >> {0}\n", record.display())).unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let status = Command::new(root.join("fsdax"))
        .args(["ls", "--pmem", "rel.img", "/"])
        .current_dir(&work)
        .env("PATH", path)
        .status()
        .unwrap();
    assert!(status.success());
    let rec = std::fs::read_to_string(&record).unwrap();
    let mut lines = rec.lines();
    assert_eq!(lines.next().unwrap(), work.canonicalize().unwrap().display().to_string(), "the caller's folder");
    let args = lines.next().unwrap();
    assert!(args.contains(&format!("--manifest-path {}/Cargo.toml", root.display())), "{args}");
    assert!(args.ends_with("-- ls --pmem rel.img /"), "{args}");
    std::fs::remove_dir_all(&dir).unwrap();
}
