//! Files on the mounted fsdax file system, from processes in QEMU: the
//! Rust program (the C suite runs whole in processes.rs), two processes sharing a file through
//! `pwrite`/`pread`, `read`/`write` over a poisoned block, and the file I/O
//! rates under TCG (printed, not judged).

use fsdax_tests::*;

/// The Rust `std` program (`user/rust`): files, directories, cwd and
/// environment, time, spawn and wait, mmap, a caught panic: every case
/// passes and it exits 0.
#[test]
fn rust_std_program_passes() {
    let _s = scenario("rust_std_program_passes");
    let (text, status) = exec("files-rsuite", &["rsuite"], "/bin/rsuite /");
    let cases = case_lines(&text);
    for want in
        ["files", "dirs", "env_cwd_spawn_env", "time", "process_spawn_wait", "mmap_mprotect_munmap", "panic_caught"]
    {
        let got = cases.get(want).map(|c| c.0.as_str());
        assert_eq!(got, Some("ok"), "rsuite case {want}: {:?}\n{text}", cases.get(want));
    }
    assert!(cases.values().all(|(v, _)| v == "ok"), "{text}");
    assert_eq!(status, 0, "{text}");
}

/// Two processes share one file and nothing else: each writes its blocks
/// with `pwrite` and reads the other's with `pread`, 200 rounds.
#[test]
fn two_processes_read_each_others_pwrites_with_pread() {
    let _s = scenario("two_processes_read_each_others_pwrites_with_pread");
    let (text, status) = exec("files-pair", &["pwrite_pread_pair"], "/bin/pwrite_pread_pair / 200");
    assert!(text.contains("pwrite_pread_pair: 200 rounds, each process read all of the other's blocks"), "{text}");
    assert!(text.lines().any(|l| l == "ok pwrite_pread_pair"), "{text}");
    assert_eq!(status, 0, "{text}");
}

/// A poisoned block of a file (injected from the console, as a machine
/// check would report it): `read` stops short before it, then fails with
/// EIO; a partial `write` into it fails; a whole-block `write` rewrites it
/// (a recovery write) and clears the poison.
#[test]
fn read_stops_at_a_poisoned_block_and_a_whole_block_write_clears_it() {
    let _s = scenario("read_stops_at_a_poisoned_block_and_a_whole_block_write_clears_it");
    let mut m = shell_with("files-poison", &["poison_rw"]);
    let off = poison_rw_prepare(&mut m, "/p.dat");
    let out = command(&mut m, &format!("mf pmem0 {:#x} 64", off + 128));
    assert!(out.contains("hits file data"), "the file system did not find the file's block: {out}");
    let out = command(&mut m, "exec /bin/poison_rw check /p.dat");
    assert!(out.contains("ok poison_rw_check") && out.contains("exit 0"), "{out}");
    // The poison is gone from the device's list and the file system's.
    let out = command(&mut m, "poison");
    assert!(out.contains("pmem0: 0 bad range(s)"), "{out}");
}

/// 4 KiB `pwrite`/`pread` rates and 2 MiB write/read bandwidth next to a
/// user `memcpy` of the same boot, under TCG: printed for the docs (a
/// benchmark, not a timed test: only sanity is asserted).
#[test]
fn file_io_rates_under_tcg() {
    let _s = scenario("file_io_rates_under_tcg");
    let mut m = shell_with("files-bench", &["bench"]);
    let mut figures = Vec::new();
    for (size, list) in [("64M", "overwrite_4k,pread_4k,write_2m,overwrite_2m,read_2m,memcpy"), ("2M", "memcpy")] {
        let out = command(&mut m, &format!("exec /bin/bench --size {size} --only {list} /"));
        assert!(out.contains("exit 0"), "{out}");
        for line in out.lines().filter(|l| l.starts_with("{\"bench\"")) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let name = format!("{}@{size}", v["bench"].as_str().unwrap());
            let (ops, bytes) = (v["ops_per_s"].as_f64().unwrap(), v["bytes_per_s"].as_f64().unwrap());
            assert!(ops > 0.0 && bytes > 0.0, "{line}");
            figures.push((name, ops, bytes / f64::from(1 << 20)));
        }
    }
    assert_eq!(figures.len(), 7, "{figures:?}");
    eprintln!("file I/O under {}:", fsdax_boot::qemu::Accel::detect().describe());
    for (name, ops, mib) in &figures {
        eprintln!("  {name:<18} {ops:>12.0} ops/s  {mib:>9.1} MiB/s");
    }
}
