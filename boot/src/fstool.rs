//! File-system tool subcommands (`mkfs`, `fsck`, `ls`, ...) on the NVDIMM
//! image file, the same file QEMU uses as the NVDIMM backend (the NVDIMM has
//! no label area, so the pmem namespace is the whole file).
//!
//! The image is accessed through [`FilePmem`], a [`Pmem`] that holds the
//! file in memory and writes every flushed range back with `pwrite` in
//! program order, so an interrupted tool leaves the file as a crash of the
//! file system would (and recovery handles that). No `unsafe`, no mmap.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use fsdax_fs::pmem::checked_request;
use fsdax_fs::{
    Falloc, FileKind, FileSystem, FsError, MediaError, MkfsOptions, MountOptions, Pmem, RmapOwner, BLOCK_SIZE,
    RMAP_BAD, RMAP_SHARED,
};

/// One line per subcommand for `fsdax help`.
pub const HELP: &str = "
FILE-SYSTEM TOOLS (on the NVDIMM image; --pmem PATH, default target/fsdax/pmem.img)
  mkfs [--size SIZE]      format (creates the image, default 256M, if missing)
  fsck                    check every invariant; exit status 1 if not clean
  ls [PATH]               list a directory
  stat PATH               inode, size, links, extents (physical, shared)
  cat PATH                print a file
  put HOSTFILE PATH       copy a host file in
  get PATH HOSTFILE       copy a file out
  rm PATH                 remove a file or an empty directory
  mkdir PATH              make a directory
  reflink SRC DST         DST shares SRC's data (FICLONE; DST created if needed)
  rmap PHYS [LEN]         owners of device bytes [PHYS, PHYS+LEN) (default LEN 1)
  df                      space usage
";

/// `println!` that ignores a closed stdout (`fsdax ls | head`).
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

const COMMANDS: &[&str] = &["mkfs", "fsck", "ls", "stat", "cat", "put", "get", "rm", "mkdir", "reflink", "rmap", "df"];

/// Runs `cmd` if it is a file-system tool subcommand; `None` if it is not one.
pub fn run(cmd: &str, args: &[String]) -> Option<Result<(), String>> {
    if !COMMANDS.contains(&cmd) {
        return None;
    }
    Some(run_cmd(cmd, args))
}

/// A pmem image file held in memory; flushed ranges are written back.
#[derive(Debug)]
pub struct FilePmem {
    file: File,
    bytes: Vec<u8>,
    read_only: bool,
}

impl FilePmem {
    /// Opens an image (read-only if asked: stores are then kept in memory).
    pub fn open(path: &Path, read_only: bool) -> Result<Self, String> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut bytes = Vec::with_capacity(len as usize);
        let mut p = Progress::new("read image", len);
        let mut chunk = vec![0u8; 8 << 20];
        loop {
            let n = file.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..n]);
            p.set(bytes.len() as u64);
        }
        p.done();
        Ok(Self { file, bytes, read_only })
    }

    /// Makes everything written so far durable on the host.
    pub fn sync(&mut self) -> Result<(), String> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data().map_err(|e| e.to_string())
    }
}

impl Pmem for FilePmem {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn load(&self, offset: u64, buf: &mut [u8]) -> Result<(), (MediaError, usize)> {
        checked_request(offset, buf.len() as u64, self.size()).map_err(|e| (e, 0))?;
        let o = offset as usize;
        buf.copy_from_slice(&self.bytes[o..o + buf.len()]);
        Ok(())
    }
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), (MediaError, usize)> {
        checked_request(offset, data.len() as u64, self.size()).map_err(|e| (e, 0))?;
        let o = offset as usize;
        // Reaches the file only when flushed, like a store that is still in
        // the CPU cache.
        self.bytes[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.size());
        if end <= offset || self.read_only {
            return;
        }
        let (s, e) = (offset as usize, end as usize);
        // Write back in program order; a failed write-back is fatal for the
        // tool (like a dead device), not something to carry on from.
        if let Err(err) = self.file.write_all_at(&self.bytes[s..e], offset) {
            eprintln!("fsdax: writing the image failed: {err}");
            std::process::exit(1);
        }
    }
    fn fence(&mut self) {}
}

/// A progress line on stderr for work that may take more than a second.
struct Progress {
    what: &'static str,
    total: u64,
    start: Instant,
    shown: bool,
    last: Instant,
}

impl Progress {
    fn new(what: &'static str, total: u64) -> Self {
        let now = Instant::now();
        Self { what, total, start: now, shown: false, last: now }
    }
    fn set(&mut self, done: u64) {
        let now = Instant::now();
        if now.duration_since(self.start).as_millis() < 300 || now.duration_since(self.last).as_millis() < 100 {
            return;
        }
        self.last = now;
        self.shown = true;
        let pct = (done * 100).checked_div(self.total).unwrap_or(100);
        let bar: String = (0..30).map(|i| if i * 100 < pct * 30 { '#' } else { '.' }).collect();
        eprint!("\r{:>12} [{bar}] {pct:3}% {}/{} MiB", self.what, done >> 20, self.total >> 20);
    }
    fn done(&mut self) {
        if self.shown {
            self.set(self.total);
            eprintln!();
        }
    }
}

fn default_image() -> PathBuf {
    crate::output_dir().join("pmem.img")
}

fn fs_err(e: FsError) -> String {
    e.to_string()
}

/// Parses "123", "0x1f000", "4K", "2M", "1G".
fn parse_num(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 1 << 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let v = match num.strip_prefix("0x").or_else(|| num.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => num.parse(),
    }
    .map_err(|_| format!("not a number: {s:?}"))?;
    v.checked_mul(mult).ok_or_else(|| format!("too large: {s:?}"))
}

fn mount(image: &Path, read_only: bool) -> Result<FileSystem<FilePmem>, String> {
    let pm = FilePmem::open(image, read_only)?;
    let fs = FileSystem::mount_with(pm, MountOptions { read_only }).map_err(|e| format!("{}: {e}", image.display()))?;
    if !read_only && fs.is_read_only() {
        return Err(format!(
            "{}: mounted read-only ({:?}); run `fsdax fsck`",
            image.display(),
            fs.mount_info().degraded
        ));
    }
    Ok(fs)
}

fn finish(fs: FileSystem<FilePmem>) -> Result<(), String> {
    let mut pm = fs.unmount().map_err(fs_err)?;
    pm.sync()
}

fn kind_char(k: FileKind) -> char {
    match k {
        FileKind::Dir => 'd',
        FileKind::File => '-',
    }
}

fn run_cmd(cmd: &str, args: &[String]) -> Result<(), String> {
    let mut image = default_image();
    let mut size: Option<u64> = None;
    let mut pos: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pmem" => image = it.next().ok_or("--pmem needs a value")?.into(),
            "--size" => size = Some(parse_num(it.next().ok_or("--size needs a value")?)?),
            _ => pos.push(a),
        }
    }
    let need = |n: usize, usage: &str| -> Result<(), String> {
        if pos.len() < n {
            Err(format!("usage: fsdax {cmd} {usage}"))
        } else {
            Ok(())
        }
    };
    match cmd {
        "mkfs" => {
            if !image.exists() {
                if let Some(dir) = image.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
                }
                let f = File::create(&image).map_err(|e| format!("{}: {e}", image.display()))?;
                f.set_len(size.unwrap_or(256 << 20)).map_err(|e| e.to_string())?;
            } else if let Some(s) = size {
                let f = OpenOptions::new().write(true).open(&image).map_err(|e| e.to_string())?;
                if f.metadata().map_err(|e| e.to_string())?.len() < s {
                    f.set_len(s).map_err(|e| e.to_string())?;
                }
            }
            let pm = FilePmem::open(&image, false)?;
            let t = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
            let seed = t.as_nanos() ^ (u128::from(std::process::id()) << 64);
            let uuid = fsdax_fs::crc::crc32c(&seed.to_le_bytes());
            let mut u = [0u8; 16];
            u[..16].copy_from_slice(&seed.to_le_bytes());
            u[..4].copy_from_slice(&uuid.to_le_bytes());
            let fs = FileSystem::mkfs(pm, MkfsOptions { uuid: u, ..Default::default() }).map_err(fs_err)?;
            let g = fs.superblock().geo;
            out!(
                "{}: {} MiB, {} data blocks of 4 KiB from block {} (2 MiB aligned)",
                image.display(),
                (g.total_blocks * BLOCK_SIZE) >> 20,
                g.data_blocks,
                g.data_start
            );
            finish(fs)
        }
        "fsck" => {
            let fs = mount(&image, true)?;
            let info = fs.mount_info();
            let rep = fs.fsck().map_err(|e| format!("{}: NOT CLEAN: {e}", image.display()))?;
            if let Some(why) = info.degraded {
                return Err(format!("{}: NOT CLEAN: mount degraded: {why}", image.display()));
            }
            out!(
                "{}: clean: {} inodes, {} extents, {} directory entries, {} log records pending replay, generation {}",
                image.display(),
                rep.inodes,
                rep.extents,
                rep.dirents,
                rep.log_records,
                info.generation
            );
            if rep.poisoned_blocks > 0 {
                return Err(format!("{} data blocks are poisoned", rep.poisoned_blocks));
            }
            Ok(())
        }
        "ls" => {
            let fs = mount(&image, true)?;
            let dir = fs.resolve(pos.first().copied().unwrap_or("/")).map_err(fs_err)?;
            let mut after: Option<Vec<u8>> = None;
            loop {
                let ents = fs.readdir(dir, after.as_deref(), 1024).map_err(fs_err)?;
                let Some(last) = ents.last() else { break };
                after = Some(last.name.clone());
                for e in &ents {
                    let st = fs.stat(e.ino).map_err(fs_err)?;
                    out!("{} {:>8} {:>12} {}", kind_char(e.kind), e.ino, st.size, String::from_utf8_lossy(&e.name));
                }
            }
            Ok(())
        }
        "stat" => {
            need(1, "PATH")?;
            let fs = mount(&image, true)?;
            let ino = fs.resolve(pos[0]).map_err(fs_err)?;
            let st = fs.stat(ino).map_err(fs_err)?;
            out!("inode {}  {:?}  size {}  links {}  blocks {}", st.ino, st.kind, st.size, st.nlink, st.blocks);
            if st.kind == FileKind::File {
                let mut off = 0;
                let end = st.size.div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
                while off < end {
                    let m = fs.bmap(ino, off).map_err(fs_err)?;
                    let next = m.file_offset + m.len;
                    if let Some(p) = m.phys {
                        let huge = m.len == 2 << 20 && p % (2 << 20) == 0 && m.file_offset % (2 << 20) == 0;
                        out!(
                            "  file {:#x}..{:#x} -> phys {:#x}{}{}",
                            m.file_offset,
                            next,
                            p,
                            if m.shared { " shared" } else { "" },
                            if huge { " 2M" } else { "" }
                        );
                    }
                    if next <= off {
                        break;
                    }
                    off = next;
                }
            }
            Ok(())
        }
        "cat" => {
            need(1, "PATH")?;
            let fs = mount(&image, true)?;
            let ino = fs.resolve(pos[0]).map_err(fs_err)?;
            let mut out = std::io::stdout().lock();
            copy_out(&fs, ino, &mut out)
        }
        "get" => {
            need(2, "PATH HOSTFILE")?;
            let fs = mount(&image, true)?;
            let ino = fs.resolve(pos[0]).map_err(fs_err)?;
            let mut f = File::create(pos[1]).map_err(|e| format!("{}: {e}", pos[1]))?;
            copy_out(&fs, ino, &mut f)?;
            f.sync_all().map_err(|e| e.to_string())
        }
        "put" => {
            need(2, "HOSTFILE PATH")?;
            let mut src = File::open(pos[0]).map_err(|e| format!("{}: {e}", pos[0]))?;
            let total = src.metadata().map_err(|e| e.to_string())?.len();
            let mut fs = mount(&image, false)?;
            let ino = fs.open(pos[1], true).map_err(fs_err)?;
            fs.truncate(ino, 0).map_err(fs_err)?;
            if total > 0 {
                // Reserve the space up front: large aligned extents, and a
                // clean ENOSPC before anything is copied.
                fs.fallocate(ino, Falloc::Allocate { keep_size: true }, 0, total).map_err(fs_err)?;
            }
            let mut buf = vec![0u8; 2 << 20];
            let mut off = 0u64;
            let mut p = Progress::new("put", total);
            loop {
                let n = src.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                fs.write(ino, off, &buf[..n]).map_err(fs_err)?;
                off += n as u64;
                p.set(off);
            }
            p.done();
            fs.truncate(ino, off).map_err(fs_err)?;
            finish(fs)
        }
        "rm" => {
            need(1, "PATH")?;
            let mut fs = mount(&image, false)?;
            let (dir, name) = fs.resolve_parent(pos[0]).map_err(fs_err)?;
            let ino = fs.lookup(dir, name.as_bytes()).map_err(fs_err)?;
            if fs.stat(ino).map_err(fs_err)?.kind == FileKind::Dir {
                fs.rmdir(dir, name.as_bytes()).map_err(fs_err)?;
            } else {
                fs.unlink(dir, name.as_bytes()).map_err(fs_err)?;
            }
            finish(fs)
        }
        "mkdir" => {
            need(1, "PATH")?;
            let mut fs = mount(&image, false)?;
            let (dir, name) = fs.resolve_parent(pos[0]).map_err(fs_err)?;
            fs.mkdir(dir, name.as_bytes()).map_err(fs_err)?;
            finish(fs)
        }
        "reflink" => {
            need(2, "SRC DST")?;
            let mut fs = mount(&image, false)?;
            let src = fs.resolve(pos[0]).map_err(fs_err)?;
            let dst = fs.open(pos[1], true).map_err(fs_err)?;
            fs.reflink(src, dst).map_err(fs_err)?;
            finish(fs)
        }
        "rmap" => {
            need(1, "PHYS [LEN]")?;
            let phys = parse_num(pos[0])?;
            let len = pos.get(1).map(|s| parse_num(s)).transpose()?.unwrap_or(1);
            let fs = mount(&image, true)?;
            let recs = fs.rmap_query(phys, len);
            if recs.is_empty() {
                out!("[{phys:#x}, {:#x}): free or outside the device", phys.saturating_add(len));
            }
            for r in recs {
                let flags = format!(
                    "{}{}",
                    if r.flags & RMAP_SHARED != 0 { " shared" } else { "" },
                    if r.flags & RMAP_BAD != 0 { " bad" } else { "" }
                );
                match r.owner {
                    RmapOwner::File { ino, offset } => out!(
                        "phys {:#x}..{:#x}  inode {ino} file offset {offset:#x} len {:#x}{flags}",
                        r.phys,
                        r.phys + r.len,
                        r.len
                    ),
                    RmapOwner::Metadata(k) => {
                        out!("phys {:#x}..{:#x}  metadata {k:?}{flags}", r.phys, r.phys + r.len)
                    }
                }
            }
            Ok(())
        }
        "df" => {
            let fs = mount(&image, true)?;
            let s = fs.statfs();
            let used = s.data_blocks - s.free_blocks - s.bad_blocks;
            out!("block size      {}", s.block_size);
            out!("data blocks     {} ({} MiB)", s.data_blocks, (s.data_blocks * s.block_size) >> 20);
            out!("used blocks     {used}");
            out!("free blocks     {} ({} MiB)", s.free_blocks, (s.free_blocks * s.block_size) >> 20);
            out!("free 2M chunks  {}", s.free_huge_chunks);
            out!("bad blocks      {}", s.bad_blocks);
            out!("inodes          {}", s.inodes);
            Ok(())
        }
        _ => Err(format!("unknown command {cmd}")),
    }
}

fn copy_out<P: Pmem, W: Write>(fs: &FileSystem<P>, ino: fsdax_fs::Ino, out: &mut W) -> Result<(), String> {
    let size = fs.stat(ino).map_err(fs_err)?.size;
    let mut buf = vec![0u8; 2 << 20];
    let mut off = 0u64;
    let mut p = Progress::new("get", size);
    while off < size {
        let n = fs.read(ino, off, &mut buf).map_err(fs_err)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        off += n as u64;
        p.set(off);
    }
    p.done();
    out.flush().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fsdax-fstool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    fn cmd(c: &str, image: &Path, rest: &[&str]) -> Result<(), String> {
        let mut args = vec!["--pmem".to_string(), image.display().to_string()];
        args.extend(rest.iter().map(|s| s.to_string()));
        run(c, &args).expect("a file-system command")
    }

    #[test]
    fn put_get_round_trip_reflink_and_fsck() {
        let img = tmp("rt.img");
        cmd("mkfs", &img, &["--size", "32M"]).unwrap();
        let host = tmp("in.bin");
        let data: Vec<u8> = (0..5_000_123u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(&host, &data).unwrap();
        cmd("mkdir", &img, &["/d"]).unwrap();
        cmd("put", &img, &[host.to_str().unwrap(), "/d/f"]).unwrap();
        cmd("reflink", &img, &["/d/f", "/g"]).unwrap();
        cmd("fsck", &img, &[]).unwrap();
        for p in ["/d/f", "/g"] {
            let out = tmp("out.bin");
            cmd("get", &img, &[p, out.to_str().unwrap()]).unwrap();
            assert!(std::fs::read(&out).unwrap() == data, "{p} differs after put/get");
            std::fs::remove_file(out).unwrap();
        }
        cmd("ls", &img, &["/"]).unwrap();
        cmd("stat", &img, &["/g"]).unwrap();
        cmd("rmap", &img, &["0x1000"]).unwrap();
        cmd("df", &img, &[]).unwrap();
        cmd("rm", &img, &["/d/f"]).unwrap();
        cmd("rm", &img, &["/d"]).unwrap();
        assert!(cmd("cat", &img, &["/d/f"]).is_err());
        cmd("fsck", &img, &[]).unwrap();
        assert!(run("not-ours", &[]).is_none());
        std::fs::remove_file(&img).unwrap();
        std::fs::remove_file(&host).unwrap();
    }

    #[test]
    fn fsck_reports_corruption() {
        let img = tmp("bad.img");
        cmd("mkfs", &img, &["--size", "16M"]).unwrap();
        let host = tmp("small.bin");
        std::fs::write(&host, b"hello").unwrap();
        cmd("put", &img, &[host.to_str().unwrap(), "/h"]).unwrap();
        cmd("fsck", &img, &[]).unwrap();
        // Damage both checkpoint slots' headers region and the primary superblock.
        let mut bytes = std::fs::read(&img).unwrap();
        for b in &mut bytes[4096..4096 + 64] {
            *b ^= 0x5a;
        }
        bytes[50] ^= 1;
        std::fs::write(&img, &bytes).unwrap();
        let e = cmd("fsck", &img, &[]).unwrap_err();
        assert!(e.contains("NOT CLEAN") || e.contains("corrupt"), "{e}");
        std::fs::remove_file(&img).unwrap();
        std::fs::remove_file(&host).unwrap();
    }
}
