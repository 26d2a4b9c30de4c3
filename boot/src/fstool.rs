//! File-system tool subcommands (`mkfs`, `fsck`, `ls`, ...) on the NVDIMM
//! image file, the same file QEMU uses as the NVDIMM backend (the NVDIMM has
//! no label area, so the pmem namespace is the whole file).
//!
//! The image is accessed through [`FilePmem`], a [`Pmem`] that holds the
//! file in memory and writes every flushed range back with `pwrite` in
//! program order, so an interrupted tool leaves the file as a crash of the
//! file system would (and recovery handles that). No `unsafe`, no mmap.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use fsdax_fs::cli::{self, Command, Status, Tool};
use fsdax_fs::pmem::checked_request;
use fsdax_fs::{Falloc, FileSystem, MediaError, MkfsOptions, MountOptions, Pmem};
use fsdax_pmem_api::units::{parse_size, Size};

/// The file-system part of `fsdax help`: the host-only commands and the
/// commands shared with the kernel console.
pub fn help() -> String {
    let mut s = String::from(
        "\nFILE-SYSTEM TOOLS (on the NVDIMM image; --pmem PATH, default target/fsdax/pmem.img)\n\
         \x20 fsdax mkfs [--size SIZE]     format (creates the image, default 256M, if missing)\n\
         \x20 fsdax put HOSTFILE PATH      copy a host file in\n\
         \x20 fsdax get PATH HOSTFILE      copy a file out\n\
         \x20 fsdax cat PATH               write a file to stdout, byte for byte\n",
    );
    let _ = cli::help("fsdax", &mut s);
    s.push_str("  (fsck exits with status 1 when the file system is not clean)\n");
    s
}

/// `println!` that ignores a closed stdout (`fsdax ls | head`).
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// Commands only the host tool has (they need host files or create the
/// image); the rest are [`cli::COMMANDS`].
const HOST_COMMANDS: &[&str] = &["mkfs", "put", "get", "cat"];

/// Why a tool command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    /// `fsck` found problems; its verdict line said which (exit status 1).
    NotClean,
    /// Anything else, said for a person (exit status 2).
    Failed(String),
}

impl ToolError {
    /// The process exit status for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            ToolError::NotClean => 1,
            ToolError::Failed(_) => 2,
        }
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::NotClean => f.write_str("the file system is not clean (the verdict above says why)"),
            ToolError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<String> for ToolError {
    fn from(s: String) -> Self {
        ToolError::Failed(s)
    }
}

impl From<&str> for ToolError {
    fn from(s: &str) -> Self {
        ToolError::Failed(s.to_string())
    }
}

impl From<cli::CliError> for ToolError {
    fn from(e: cli::CliError) -> Self {
        ToolError::Failed(e.to_string())
    }
}

/// Runs `cmd` if it is a file-system tool subcommand; `None` if it is not one.
pub fn run(cmd: &str, args: &[String]) -> Option<Result<(), ToolError>> {
    let shared = cli::COMMANDS.iter().any(|(u, _)| u.split(' ').next() == Some(cmd));
    if !shared && !HOST_COMMANDS.contains(&cmd) {
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

fn mount(image: &Path, tool: &Tool<'_>, read_only: bool) -> Result<FileSystem<FilePmem>, ToolError> {
    let pm = FilePmem::open(image, read_only)?;
    let fs = FileSystem::mount_with(pm, MountOptions { read_only }).map_err(|e| cli::mount_error(tool, e))?;
    if !read_only && fs.is_read_only() {
        return Err(ToolError::Failed(cli::describe_mount(&fs, tool)));
    }
    Ok(fs)
}

fn finish(fs: FileSystem<FilePmem>) -> Result<(), ToolError> {
    let mut pm = fs.unmount().map_err(|e| format!("unmount: {e}"))?;
    Ok(pm.sync()?)
}

fn run_cmd(cmd: &str, args: &[String]) -> Result<(), ToolError> {
    let mut image = default_image();
    let mut size: Option<u64> = None;
    let mut pos: Vec<&str> = vec![cmd];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pmem" => image = it.next().ok_or("--pmem needs a value")?.into(),
            "--size" => {
                let s = it.next().ok_or("--size needs a value")?;
                size = Some(parse_size(s).map_err(|e| format!("--size {s}: {e}"))?);
            }
            _ => pos.push(a),
        }
    }
    let name = image.display().to_string();
    let tool = Tool { device: &name, prefix: "fsdax" };
    let need = |n: usize, usage: &str| -> Result<(), ToolError> {
        if pos.len() <= n {
            Err(ToolError::Failed(format!("usage: fsdax {cmd} {usage}")))
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
                let f = File::create(&image).map_err(|e| format!("{name}: {e}"))?;
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
            let fs = FileSystem::mkfs(pm, MkfsOptions { uuid: u, ..Default::default() })
                .map_err(|e| format!("mkfs: {name}: {e}"))?;
            let mut text = String::new();
            let _ = cli::describe_mkfs(&fs, &tool, &mut text);
            print!("{text}");
            finish(fs)
        }
        "cat" => {
            need(1, "PATH")?;
            let fs = mount(&image, &tool, true)?;
            let ino = cli::open_file(&fs, pos[1]).map_err(|e| cli::fs_error(&fs, &tool, "cat", pos[1], e))?;
            let mut out = std::io::stdout().lock();
            copy_out(&fs, &tool, "cat", pos[1], ino, &mut out)
        }
        "get" => {
            need(2, "PATH HOSTFILE")?;
            let fs = mount(&image, &tool, true)?;
            let ino = cli::open_file(&fs, pos[1]).map_err(|e| cli::fs_error(&fs, &tool, "get", pos[1], e))?;
            let mut f = File::create(pos[2]).map_err(|e| format!("{}: {e}", pos[2]))?;
            copy_out(&fs, &tool, "get", pos[1], ino, &mut f)?;
            Ok(f.sync_all().map_err(|e| e.to_string())?)
        }
        "put" => {
            need(2, "HOSTFILE PATH")?;
            let (host, path) = (pos[1], pos[2]);
            let mut src = File::open(host).map_err(|e| format!("{host}: {e}"))?;
            let total = src.metadata().map_err(|e| e.to_string())?.len();
            let mut fs = mount(&image, &tool, false)?;
            let err = |fs: &FileSystem<FilePmem>, e| ToolError::from(cli::fs_error(fs, &tool, "put", path, e));
            let ino = fs.open(path, true).map_err(|e| err(&fs, e))?;
            fs.truncate(ino, 0).map_err(|e| err(&fs, e))?;
            if total > 0 {
                // Reserve the space up front: large aligned extents, and a
                // clean ENOSPC before anything is copied.
                fs.fallocate(ino, Falloc::Allocate { keep_size: true }, 0, total).map_err(|e| err(&fs, e))?;
            }
            let mut buf = vec![0u8; 2 << 20];
            let mut off = 0u64;
            let mut p = Progress::new("put", total);
            loop {
                let n = src.read(&mut buf).map_err(|e| format!("{host}: {e}"))?;
                if n == 0 {
                    break;
                }
                fs.write(ino, off, &buf[..n]).map_err(|e| err(&fs, e))?;
                off += n as u64;
                p.set(off);
            }
            p.done();
            fs.truncate(ino, off).map_err(|e| err(&fs, e))?;
            out!("copied {host} to {path}: {} ({off} bytes)", Size(off));
            finish(fs)
        }
        _ => {
            let cmd = match Command::parse(&pos, &tool) {
                Some(c) => c?,
                None => return Err(ToolError::Failed(format!("unknown command {cmd} (see `fsdax help`)"))),
            };
            let mut fs = mount(&image, &tool, !cmd.modifies())?;
            let mut text = String::new();
            let status = cmd.run(&mut fs, &tool, &mut text);
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            let status = status?;
            if cmd.modifies() {
                finish(fs)?;
            }
            match status {
                Status::Done => Ok(()),
                Status::NotClean => Err(ToolError::NotClean),
            }
        }
    }
}

/// Puts the host file `host` into the image at `dest` (creating its
/// directory), formatting the image first if it holds no file system.
/// Returns whether it formatted. Used by `fsdax exec`.
pub fn install(image: &Path, host: &Path, dest: &str) -> Result<bool, ToolError> {
    let name = image.display().to_string();
    let tool = Tool { device: &name, prefix: "fsdax" };
    let pm = FilePmem::open(image, false)?;
    let (mut fs, formatted) = match FileSystem::mount_with(pm, MountOptions { read_only: false }) {
        Ok(fs) => (fs, false),
        Err(fsdax_fs::FsError::NotFsdax) => {
            let pm = FilePmem::open(image, false)?;
            let fs = FileSystem::mkfs(pm, MkfsOptions::default()).map_err(|e| format!("mkfs: {name}: {e}"))?;
            (fs, true)
        }
        Err(e) => return Err(cli::mount_error(&tool, e).into()),
    };
    if fs.is_read_only() {
        return Err(ToolError::Failed(cli::describe_mount(&fs, &tool)));
    }
    let data = std::fs::read(host).map_err(|e| format!("{}: {e}", host.display()))?;
    let err = |fs: &FileSystem<FilePmem>, e| ToolError::from(cli::fs_error(fs, &tool, "put", dest, e));
    if let Some((dir, _)) = dest.trim_end_matches('/').rsplit_once('/') {
        if !dir.is_empty() && fs.resolve(dir).is_err() {
            let (parent, leaf) = fs.resolve_parent(dir).map_err(|e| err(&fs, e))?;
            fs.mkdir(parent, leaf.as_bytes()).map_err(|e| err(&fs, e))?;
        }
    }
    let ino = fs.open(dest, true).map_err(|e| err(&fs, e))?;
    fs.truncate(ino, 0).map_err(|e| err(&fs, e))?;
    if !data.is_empty() {
        fs.fallocate(ino, Falloc::Allocate { keep_size: true }, 0, data.len() as u64).map_err(|e| err(&fs, e))?;
        let mut off = 0;
        while off < data.len() {
            let n = fs.write(ino, off as u64, &data[off..]).map_err(|e| err(&fs, e))?;
            if n == 0 {
                return Err(ToolError::Failed(format!("put {dest}: the file system wrote nothing at {off}")));
            }
            off += n;
        }
    }
    fs.truncate(ino, data.len() as u64).map_err(|e| err(&fs, e))?;
    finish(fs)?;
    Ok(formatted)
}

fn copy_out<P: Pmem, W: Write>(
    fs: &FileSystem<P>,
    tool: &Tool<'_>,
    cmd: &str,
    path: &str,
    ino: fsdax_fs::Ino,
    out: &mut W,
) -> Result<(), ToolError> {
    let size = fs.stat(ino).map_err(|e| cli::fs_error(fs, tool, cmd, path, e))?.size;
    let mut buf = vec![0u8; 2 << 20];
    let mut off = 0u64;
    let mut p = Progress::new("get", size);
    while off < size {
        let n = fs.read(ino, off, &mut buf).map_err(|e| cli::fs_error(fs, tool, cmd, path, e))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        off += n as u64;
        p.set(off);
    }
    p.done();
    Ok(out.flush().map_err(|e| e.to_string())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fsdax-fstool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    fn cmd(c: &str, image: &Path, rest: &[&str]) -> Result<(), ToolError> {
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
        assert!(e == ToolError::NotClean || e.to_string().contains("cannot mount"), "{e}");
        assert_eq!(e.exit_status(), 1);
        std::fs::remove_file(&img).unwrap();
        std::fs::remove_file(&host).unwrap();
    }

    #[test]
    fn errors_name_the_image_and_the_next_step() {
        let img = tmp("blank.img");
        File::create(&img).unwrap().set_len(16 << 20).unwrap();
        let e = cmd("ls", &img, &["/"]).unwrap_err();
        assert_eq!(e.to_string(), format!("no fsdax file system on {}: `fsdax mkfs` formats it", img.display()));
        assert_eq!(e.exit_status(), 2);
        cmd("mkfs", &img, &[]).unwrap();
        cmd("mkdir", &img, &["/d"]).unwrap();
        let out = tmp("dir.out");
        for c in ["cat", "get"] {
            let e = cmd(c, &img, &["/d", out.to_str().unwrap()]).unwrap_err();
            assert_eq!(e.to_string(), format!("{c}: /d: is a directory (EISDIR); `fsdax ls /d` lists it"));
        }
        assert!(!out.exists(), "nothing written for a directory");
        let e = cmd("stat", &img, &[]).unwrap_err();
        assert_eq!(e.to_string(), "usage: fsdax stat PATH");
        std::fs::remove_file(&img).unwrap();
    }
}
