//! The shared command front end: what a person reads.

use fsdax_fs::cli::{self, Command, Status, Tool};
use fsdax_fs::*;

const TOOL: Tool<'static> = Tool { device: "pmem0", prefix: "fs" };

fn fresh() -> FileSystem<MemPmem> {
    FileSystem::mkfs(MemPmem::new(64 << 20), MkfsOptions { uuid: [4; 16], ..Default::default() }).unwrap()
}

/// Runs one command line; returns (output, result).
fn run(fs: &mut FileSystem<MemPmem>, line: &str) -> (String, std::result::Result<Status, String>) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut out = String::new();
    let r = match Command::parse(&words, &TOOL).expect("a shared command") {
        Ok(cmd) => cmd.run(fs, &TOOL, &mut out).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert_no_debug(&out);
    if let Err(e) = &r {
        assert_no_debug(e);
    }
    (out, r)
}

fn ok(fs: &mut FileSystem<MemPmem>, line: &str) -> String {
    let (out, r) = run(fs, line);
    assert_eq!(r, Ok(Status::Done), "{line}: {out}");
    out
}

/// Nothing that looks like a Rust `Debug` dump.
fn assert_no_debug(s: &str) {
    for bad in ["Some(", "None", "{ ", " }", "Poisoned {", "Corrupt(", "File {", "Metadata(", "Dir,", "NotFsdax"] {
        assert!(!s.contains(bad), "debug-looking output {bad:?} in:\n{s}");
    }
}

fn setup(fs: &mut FileSystem<MemPmem>) {
    ok(fs, "mkdir /d");
    ok(fs, "write /d/f hello world");
    let f = fs.resolve("/d/f").unwrap();
    fs.write(f, 0, &vec![7u8; 3 << 20]).unwrap();
    ok(fs, "reflink /d/f /g");
}

#[test]
fn listing_stat_and_space_read_like_the_classic_tools() {
    let mut fs = fresh();
    setup(&mut fs);
    let ls = ok(&mut fs, "ls /");
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["type", "inode", "size", "extents", "shared", "name"]);
    assert!(lines[1].starts_with("dir ") && lines[1].ends_with("  d/"), "{ls}");
    let g: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(g[0], "file");
    assert_eq!(g[2], (3u64 << 20).to_string());
    assert_eq!(g[3], g[4], "every extent of a fresh reflink is shared: {ls}");
    assert_eq!(g[5], "g");
    // Columns line up: every line has the name at the same place.
    let at = lines[0].find("name").unwrap();
    assert!(lines.iter().all(|l| l.len() > at && l.as_bytes()[at - 1] == b' '), "{ls}");

    let st = ok(&mut fs, "stat /g");
    assert!(st.starts_with("/g: regular file, inode "), "{st}");
    assert!(st.contains("size     3145728 bytes (3 MiB)"), "{st}");
    assert!(st.contains("shared"), "{st}");
    let phys = fs.bmap(fs.resolve("/g").unwrap(), 0).unwrap().phys.unwrap();
    assert!(st.contains(&format!("{phys:#x}")), "device offsets in hex: {st}");
    assert!(ok(&mut fs, "stat /d").starts_with("/d: directory, inode "));

    let df = ok(&mut fs, "df");
    let vals: Vec<&str> = df.lines().nth(1).unwrap().split_whitespace().collect();
    assert!(vals[1] == "MiB" && vals[3] == "MiB", "sizes in MiB: {df}");

    let info = ok(&mut fs, "info");
    assert!(info.contains("device      pmem0: 64 MiB (16384 blocks of 4 KiB)"), "{info}");
    assert!(info.contains("state       read-write"), "{info}");
    assert!(info.contains("header      copies at 0x1000 and 0x3ffe000; generation"), "{info}");
    assert!(info.contains("log         two copies of "), "{info}");
}

#[test]
fn rmap_names_owners_by_path_with_hex_offsets() {
    let mut fs = fresh();
    setup(&mut fs);
    let g = fs.resolve("/g").unwrap();
    let phys = fs.bmap(g, 0).unwrap().phys.unwrap();
    let out = ok(&mut fs, &format!("rmap {phys:#x} 4k"));
    assert!(out.starts_with(&format!("owners of {phys:#x}..{:#x}:", phys + 4096)), "{out}");
    assert!(out.contains("/d/f (inode ") && out.contains("/g (inode "), "{out}");
    assert!(out.contains("at file offset 0x0  shared"), "{out}");
    assert!(ok(&mut fs, "rmap 0").contains("metadata: primary superblock"));
    assert!(ok(&mut fs, "rmap 0x3000000").contains("free space, no owner"));
    assert!(ok(&mut fs, "rmap 1G").contains("outside the device (64 MiB)"));
    let (_, r) = run(&mut fs, "rmap 12Q");
    assert_eq!(r, Err("rmap: 12Q: unknown size suffix (use K, M, G or T, e.g. 256M)".into()));
}

#[test]
fn fsck_gives_one_verdict() {
    let mut fs = fresh();
    setup(&mut fs);
    let out = ok(&mut fs, "fsck");
    assert!(out.lines().last().unwrap() == "verdict  clean", "{out}");
    // A poisoned data block: the same wording and verdict everywhere.
    let phys = fs.bmap(fs.resolve("/d/f").unwrap(), 0).unwrap().phys.unwrap();
    fs.pmem_mut().inject_poison(phys + 64, 64);
    let (out, r) = run(&mut fs, "fsck");
    assert_eq!(r, Ok(Status::NotClean));
    let verdict = out.lines().last().unwrap();
    assert_eq!(
        verdict,
        format!(
            "verdict  NOT CLEAN: 1 data block is poisoned (media errors, not corruption) at {phys:#x}+0x1000: \
             `fs rmap OFFSET` names the files; rewriting whole blocks clears them"
        )
    );
    // A damaged metadata copy: not clean, and `fsck --repair` rewrites it.
    let body = fs.log_status().body[1].pblk * BLOCK_SIZE;
    fs.pmem_mut().bytes_mut()[body as usize + 100] ^= 1;
    let (out, _) = run(&mut fs, "fsck");
    assert!(out.contains("damaged metadata copy (checkpoint body copy B)"), "{out}");
    let (out, r) = run(&mut fs, "fsck --repair");
    assert_eq!(r, Ok(Status::NotClean), "the poisoned data block remains: {out}");
    assert!(out.contains("repaired pmem0: a clean checkpoint (generation "), "{out}");
    assert!(!out.contains("damaged metadata"), "{out}");
}

#[test]
fn errors_say_what_and_what_next() {
    let mut fs = fresh();
    setup(&mut fs);
    let (_, r) = run(&mut fs, "cat /d");
    assert_eq!(r, Err("cat: /d: is a directory (EISDIR); `fs ls /d` lists it".into()));
    let (_, r) = run(&mut fs, "ls /nope");
    assert_eq!(r, Err("ls: /nope: no such file or directory (ENOENT); `fs ls /` lists what is there".into()));
    let (_, r) = run(&mut fs, "rm /d");
    assert_eq!(r, Err("rm: /d: the directory is not empty (ENOTEMPTY)".into()));
    let (_, r) = run(&mut fs, "stat");
    assert_eq!(r, Err("usage: fs stat PATH".into()));
    assert!(Command::parse(&["frobnicate"], &TOOL).is_none(), "not ours: the embedder tries its own");
    let e = cli::mount_error(&TOOL, FsError::NotFsdax);
    assert_eq!(e.to_string(), "no fsdax file system on pmem0: `fs mkfs` formats it");
}

#[test]
fn cat_prints_text_and_stops_at_poison() {
    let mut fs = fresh();
    ok(&mut fs, "write /t the quick brown fox");
    assert_eq!(ok(&mut fs, "cat /t"), "the quick brown fox\n");
    let phys = fs.bmap(fs.resolve("/t").unwrap(), 0).unwrap().phys.unwrap();
    fs.pmem_mut().inject_poison(phys + 9, 1);
    let (out, r) = run(&mut fs, "cat /t");
    assert_eq!(out, "the quick\n");
    let e = r.unwrap_err();
    assert!(e.starts_with(&format!("cat: /t: media error (poison) at device offset {:#x} (EIO)", phys + 9)), "{e}");
}

#[test]
fn a_write_that_shuts_the_file_system_down_says_so() {
    // No space anywhere for a checkpoint that relocates a poisoned log:
    // the last resort, said clearly.
    let mut fs = FileSystem::mkfs(MemPmem::new(1 << 20), MkfsOptions { uuid: [4; 16], ..Default::default() }).unwrap();
    let st = fs.log_status();
    let free: Vec<u64> = (0..fs.superblock().geo.total_blocks).collect();
    for b in free {
        let o = b * BLOCK_SIZE;
        if fs.rmap_query(o, 1).is_empty() {
            fs.pmem_mut().inject_poison(o, BLOCK_SIZE);
        }
    }
    for c in 0..2 {
        fs.pmem_mut().inject_poison(st.log[c].pblk * BLOCK_SIZE, 64);
    }
    let (out, r) = run(&mut fs, "write /x text");
    assert!(!out.contains("durable"), "{out}");
    let e = r.unwrap_err();
    assert!(e.contains("now read-only") && e.contains("`fs fsck`"), "{e}");
    let (_, r) = run(&mut fs, "mkdir /y");
    let e = r.unwrap_err();
    assert!(e.starts_with("mkdir: /y: the file system is read-only (EROFS) since: "), "{e}");
    let info = ok(&mut fs, "info");
    assert!(info.contains("state       READ-ONLY since: "), "{info}");
    let m = cli::describe_mount(&fs, &TOOL);
    assert!(m.starts_with("mounted pmem0 READ-ONLY because "), "{m}");
}

#[test]
fn help_lists_every_shared_command() {
    let mut h = String::new();
    cli::help("fsdax", &mut h).unwrap();
    assert_eq!(h.lines().count(), cli::COMMANDS.len());
    assert!(h.contains("  fsdax rmap OFFSET [LEN]"));
}
