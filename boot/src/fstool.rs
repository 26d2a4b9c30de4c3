//! File-system tool subcommands (`mkfs`, `fsck`, `ls`, ...) on the NVDIMM
//! image file, the same file QEMU uses as the NVDIMM backend (the NVDIMM has
//! no label area, so the pmem namespace is the whole file).
//!
//! The image is accessed through [`FilePmem`], a [`Pmem`] over a shared
//! memory mapping of the file (`memmap2`): nothing is read that is not
//! used, so a 40 GiB sparse image works. Stores reach the page cache in
//! program order, so an interrupted tool leaves the file as a crash of the
//! file system would (and recovery handles that); `sync` writes it back.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use fsdax_fs::cli::{self, Command, Status, Tool};
use fsdax_fs::format::Superblock;
use fsdax_fs::pmem::checked_request;
use fsdax_fs::{Falloc, FileKind, FileSystem, FsError, MediaError, MkfsOptions, MountOptions, Pmem};
use fsdax_pmem_api::units::{parse_size, Size};

/// The file-system part of `fsdax help`: the host-only commands and the
/// commands shared with the kernel console.
pub fn help() -> String {
    let mut s = String::from(
        "\nFILE-SYSTEM TOOLS (on the NVDIMM image; --pmem PATH, default target/fsdax/pmem.img)\n\
         \x20 fsdax mkfs [--size SIZE] [--force]  format (creates the image, default 256M, if missing;\n\
         \x20                              --force reformats an existing file system)\n\
         \x20 fsdax put HOSTFILE PATH      copy a host file in (all or nothing: PATH appears only when complete)\n\
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

/// A pmem image file, mapped.
#[derive(Debug)]
pub struct FilePmem {
    map: Map,
}

#[derive(Debug)]
enum Map {
    /// Shared: stores reach the file.
    Shared(memmap2::MmapMut),
    /// Read-only: a read-only mount never stores; should it, the pages it
    /// stores to are copied into this process and never reach the file.
    ReadOnly(memmap2::Mmap, std::collections::BTreeMap<u64, Box<[u8]>>),
}

const PAGE: u64 = 4096;

impl FilePmem {
    /// Maps an image (read-only: a private copy-on-write mapping, so the
    /// file is never changed).
    pub fn open(path: &Path, read_only: bool) -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        if len == 0 {
            return Err(format!("{}: the image is empty: `fsdax mkfs --size SIZE` makes one", path.display()));
        }
        let opts = memmap2::MmapOptions::new();
        // SAFETY: the mapping is of a regular file this tool opened; the
        // tool is its only user while it runs (the NVDIMM image of a QEMU
        // that is not running, as the README says), so no other process
        // truncates it under the mapping. Accesses are range-checked
        // against the length the mapping was made with.
        let map = unsafe {
            if read_only {
                opts.map(&file).map(|m| Map::ReadOnly(m, Default::default()))
            } else {
                opts.map_mut(&file).map(Map::Shared)
            }
        }
        .map_err(|e| format!("{}: cannot map the image: {e}", path.display()))?;
        Ok(Self { map })
    }

    /// Makes everything written so far durable on the host.
    pub fn sync(&mut self) -> Result<(), String> {
        match &self.map {
            Map::Shared(m) => m.flush().map_err(|e| format!("writing the image back: {e}")),
            Map::ReadOnly(..) => Ok(()),
        }
    }
}

impl Pmem for FilePmem {
    fn size(&self) -> u64 {
        match &self.map {
            Map::Shared(m) => m.len() as u64,
            Map::ReadOnly(m, _) => m.len() as u64,
        }
    }
    fn load(&self, offset: u64, buf: &mut [u8]) -> Result<(), (MediaError, usize)> {
        checked_request(offset, buf.len() as u64, self.size()).map_err(|e| (e, 0))?;
        let o = offset as usize;
        match &self.map {
            Map::Shared(m) => buf.copy_from_slice(&m[o..o + buf.len()]),
            Map::ReadOnly(m, over) => {
                buf.copy_from_slice(&m[o..o + buf.len()]);
                for (&p, page) in over.range(offset / PAGE * PAGE..offset + buf.len() as u64) {
                    let (s, e) = (p.max(offset), (p + PAGE).min(offset + buf.len() as u64));
                    buf[(s - offset) as usize..(e - offset) as usize]
                        .copy_from_slice(&page[(s - p) as usize..(e - p) as usize]);
                }
            }
        }
        Ok(())
    }
    fn store(&mut self, offset: u64, data: &[u8]) -> Result<(), (MediaError, usize)> {
        checked_request(offset, data.len() as u64, self.size()).map_err(|e| (e, 0))?;
        let o = offset as usize;
        match &mut self.map {
            Map::Shared(m) => m[o..o + data.len()].copy_from_slice(data),
            Map::ReadOnly(m, over) => {
                let end = offset + data.len() as u64;
                let mut p = offset / PAGE * PAGE;
                while p < end {
                    let page = over.entry(p).or_insert_with(|| m[p as usize..(p + PAGE) as usize].into());
                    let (s, e) = (p.max(offset), (p + PAGE).min(end));
                    page[(s - p) as usize..(e - p) as usize]
                        .copy_from_slice(&data[(s - offset) as usize..(e - offset) as usize]);
                    p += PAGE;
                }
            }
        }
        Ok(())
    }
    // Stores are in the page cache at once, in program order: a crash of
    // the tool keeps them all (a valid crash state); `sync` writes back.
    fn flush(&mut self, _offset: u64, _len: u64) {}
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
    mount_with(image, tool, MountOptions { read_only, repair: false })
}

fn mount_with(image: &Path, tool: &Tool<'_>, opts: MountOptions) -> Result<FileSystem<FilePmem>, ToolError> {
    let read_only = opts.read_only;
    let pm = FilePmem::open(image, read_only)?;
    let fs = FileSystem::mount_with(pm, opts).map_err(|e| cli::mount_error(tool, e))?;
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
    let mut force = false;
    let mut pos: Vec<&str> = vec![cmd];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pmem" => image = it.next().ok_or("--pmem needs a value")?.into(),
            "--force" if cmd == "mkfs" => force = true,
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
            if image.exists() && !force {
                if let Some(what) = existing_fs(&image) {
                    return Err(ToolError::Failed(format!(
                        "{name} already holds {what}: `fsdax mkfs --force` reformats it, destroying everything on it"
                    )));
                }
            }
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
            let fs = FileSystem::mkfs(pm, MkfsOptions { uuid: fresh_uuid()?, ..Default::default() })
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
            let mut fs = mount(&image, &tool, false)?;
            match put_file(&mut fs, &tool, Path::new(host), path, true) {
                Ok(off) => {
                    out!("copied {host} to {path}: {} ({off} bytes)", Size(off));
                    finish(fs)
                }
                Err(e) => {
                    finish(fs)?;
                    Err(e)
                }
            }
        }
        _ => {
            let cmd = match Command::parse(&pos, &tool) {
                Some(c) => c?,
                None => return Err(ToolError::Failed(format!("unknown command {cmd} (see `fsdax help`)"))),
            };
            let repair = matches!(cmd, Command::Fsck { repair: true });
            let mut fs = if repair {
                // Mounting for repair reads the newest consistent state
                // leniently; the command then checks the result.
                let fs = mount_with(&image, &tool, MountOptions { read_only: false, repair: true });
                fs.map_err(|e| ToolError::Failed(format!("fsck --repair: {e}")))?
            } else {
                mount(&image, &tool, !cmd.modifies())?
            };
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

/// What an existing image holds, if it is (any version of) fsdax.
fn existing_fs(image: &Path) -> Option<String> {
    let pm = FilePmem::open(image, true).ok()?;
    let mut b = vec![0u8; 4096];
    let mut found = None;
    for blk in [0, (pm.size() / 4096).saturating_sub(1)] {
        if pm.load(blk * 4096, &mut b).is_ok() {
            match Superblock::decode(&b) {
                Ok(_) => found = Some(String::from("an fsdax file system")),
                Err(FsError::Unsupported { version }) => {
                    found = Some(format!("an fsdax file system of format version {version}"))
                }
                Err(_) => {}
            }
        }
    }
    found
}

/// Formats `image` (an existing NVDIMM backing file) with a fresh file
/// system, whatever it held: the runners' "fresh file system" boots.
pub fn format(image: &Path) -> Result<(), ToolError> {
    let name = image.display().to_string();
    let pm = FilePmem::open(image, false)?;
    let fs = FileSystem::mkfs(pm, MkfsOptions { uuid: fresh_uuid()?, ..Default::default() })
        .map_err(|e| format!("mkfs: {name}: {e}"))?;
    finish(fs)
}

/// A new file-system UUID from the clock and the process id.
fn fresh_uuid() -> Result<[u8; 16], ToolError> {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
    let seed = t.as_nanos() ^ (u128::from(std::process::id()) << 64);
    let crc = fsdax_fs::crc::crc32c(&seed.to_le_bytes());
    let mut u = [0u8; 16];
    u.copy_from_slice(&seed.to_le_bytes());
    u[..4].copy_from_slice(&crc.to_le_bytes());
    Ok(u)
}

/// Copies the host file `host` to `path` (which must not name a
/// directory): written to an unnamed file and named at the end, replacing an
/// old file atomically, so a failure or a crash leaves everything as it
/// was. Returns the bytes copied.
fn put_file(
    fs: &mut FileSystem<FilePmem>,
    tool: &Tool<'_>,
    host: &Path,
    path: &str,
    progress: bool,
) -> Result<u64, ToolError> {
    let shown = host.display().to_string();
    let mut src = File::open(host).map_err(|e| format!("{shown}: {e}"))?;
    let meta = src.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(ToolError::Failed(format!("put: {shown} is not a regular file (put copies one file)")));
    }
    let total = meta.len();
    let err = |fs: &FileSystem<FilePmem>, e| ToolError::from(cli::fs_error(fs, tool, "put", path, e));
    let (dir, leaf) = fs.resolve_parent(path).map_err(|e| err(fs, e))?;
    if let Ok(old) = fs.lookup(dir, leaf.as_bytes()) {
        fs.stat(old)
            .and_then(|s| if s.kind == FileKind::Dir { Err(FsError::IsDir) } else { Ok(()) })
            .map_err(|e| err(fs, e))?;
    }
    let ino = fs.create_unnamed().map_err(|e| err(fs, e))?;
    let copied = (|| -> Result<u64, ToolError> {
        if total > 0 {
            // Reserve the space up front: large aligned extents, and a clean
            // ENOSPC before anything is copied.
            fs.fallocate(ino, Falloc::Allocate { keep_size: true }, 0, total).map_err(|e| err(fs, e))?;
        }
        let mut buf = vec![0u8; 2 << 20];
        let mut off = 0u64;
        let mut p = progress.then(|| Progress::new("put", total));
        loop {
            let n = src.read(&mut buf).map_err(|e| format!("{shown}: {e}"))?;
            if n == 0 {
                break;
            }
            let w = fs.write(ino, off, &buf[..n]).map_err(|e| err(fs, e))?;
            if w < n {
                return Err(err(fs, FsError::NoSpace));
            }
            off += n as u64;
            if let Some(p) = p.as_mut() {
                p.set(off);
            }
        }
        if let Some(p) = p.as_mut() {
            p.done();
        }
        fs.truncate(ino, off).map_err(|e| err(fs, e))?;
        fs.link_unnamed(ino, dir, leaf.as_bytes()).map_err(|e| err(fs, e))?;
        Ok(off)
    })();
    if copied.is_err() {
        let _ = fs.delete_unnamed(ino);
    }
    copied
}

/// Puts the host file `host` into the image at `dest` (creating its
/// directory), formatting the image first if it holds no file system.
/// Returns whether it formatted. Used by `fsdax exec`.
pub fn install(image: &Path, host: &Path, dest: &str) -> Result<bool, ToolError> {
    let name = image.display().to_string();
    let tool = Tool { device: &name, prefix: "fsdax" };
    let pm = FilePmem::open(image, false)?;
    let (mut fs, formatted) = match FileSystem::mount_with(pm, MountOptions::default()) {
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
    if let Some((dir, _)) = dest.trim_end_matches('/').rsplit_once('/') {
        if !dir.is_empty() && fs.resolve(dir).is_err() {
            let r = fs.resolve_parent(dir).and_then(|(parent, leaf)| fs.mkdir(parent, leaf.as_bytes()));
            r.map_err(|e| ToolError::from(cli::fs_error(&fs, &tool, "put", dest, e)))?;
        }
    }
    let copied = put_file(&mut fs, &tool, host, dest, false);
    finish(fs)?;
    copied.map(|_| formatted)
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

    fn free_of(img: &Path) -> u64 {
        let fs = FileSystem::mount_with(
            FilePmem::open(img, true).unwrap(),
            MountOptions { read_only: true, ..Default::default() },
        )
        .unwrap();
        fs.statfs().free_blocks
    }

    #[test]
    fn a_failed_put_leaves_the_file_system_as_it_was() {
        let img = tmp("full.img");
        cmd("mkfs", &img, &["--size", "16M"]).unwrap();
        let small = tmp("small-x.bin");
        std::fs::write(&small, vec![5u8; 5 << 20]).unwrap();
        cmd("put", &img, &[small.to_str().unwrap(), "/x"]).unwrap();
        let free = free_of(&img);
        let big = tmp("big.bin");
        std::fs::write(&big, vec![7u8; 20 << 20]).unwrap();
        // Too big: fails, and nothing is left: no /big, no space taken.
        let e = cmd("put", &img, &[big.to_str().unwrap(), "/big"]).unwrap_err();
        assert!(e.to_string().contains("no space left"), "{e}");
        assert!(cmd("stat", &img, &["/big"]).is_err(), "a failed put leaves no file");
        assert_eq!(free_of(&img), free, "a failed put leaves no space taken");
        // Over an existing file: the old file stays whole.
        assert!(cmd("put", &img, &[big.to_str().unwrap(), "/x"]).is_err());
        let back = tmp("x.back");
        cmd("get", &img, &["/x", back.to_str().unwrap()]).unwrap();
        assert!(std::fs::read(&back).unwrap() == vec![5u8; 5 << 20], "the old /x survived");
        assert_eq!(free_of(&img), free);
        // A small put still works.
        let tiny = tmp("tiny.bin");
        std::fs::write(&tiny, [1u8; 100]).unwrap();
        cmd("put", &img, &[tiny.to_str().unwrap(), "/tiny"]).unwrap();
        // A host directory is refused before anything is touched; so is a
        // reflink of a directory.
        let dir = std::env::temp_dir();
        let e = cmd("put", &img, &[dir.to_str().unwrap(), "/d"]).unwrap_err();
        assert!(e.to_string().contains("is not a regular file"), "{e}");
        cmd("mkdir", &img, &["/dir"]).unwrap();
        assert!(cmd("reflink", &img, &["/dir", "/r"]).is_err());
        assert!(cmd("stat", &img, &["/d"]).is_err() && cmd("stat", &img, &["/r"]).is_err());
        assert!(cmd("reflink", &img, &["/tiny", "/dir"]).is_err());
        cmd("fsck", &img, &[]).unwrap();
        for p in [img, small, big, back, tiny] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn mkfs_refuses_to_reformat_without_force() {
        let img = tmp("force.img");
        cmd("mkfs", &img, &["--size", "16M"]).unwrap();
        cmd("mkdir", &img, &["/keep"]).unwrap();
        let e = cmd("mkfs", &img, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} already holds an fsdax file system: `fsdax mkfs --force` reformats it, destroying everything on it",
                img.display()
            )
        );
        cmd("stat", &img, &["/keep"]).unwrap();
        cmd("mkfs", &img, &["--force"]).unwrap();
        assert!(cmd("stat", &img, &["/keep"]).is_err());
        std::fs::remove_file(&img).unwrap();
    }

    #[test]
    fn an_older_format_is_named_not_called_corrupt() {
        let img = tmp("v1.img");
        cmd("mkfs", &img, &["--size", "16M"]).unwrap();
        let mut b = std::fs::read(&img).unwrap();
        let n = b.len();
        b[8] = 1;
        b[n - 4096 + 8] = 1;
        std::fs::write(&img, &b).unwrap();
        let e = cmd("ls", &img, &["/"]).unwrap_err().to_string();
        assert!(e.contains("unsupported format version 1 (this fsdax writes version 2)"), "{e}");
        std::fs::remove_file(&img).unwrap();
    }

    #[test]
    fn a_40_gib_sparse_image_is_mapped_not_read() {
        let img = tmp("sparse40g.img");
        File::create(&img).unwrap().set_len(40 << 30).unwrap();
        cmd("mkfs", &img, &[]).unwrap();
        let host = tmp("sparse-in.bin");
        std::fs::write(&host, b"forty gibibytes").unwrap();
        cmd("put", &img, &[host.to_str().unwrap(), "/f"]).unwrap();
        let out = tmp("sparse-out.bin");
        cmd("get", &img, &["/f", out.to_str().unwrap()]).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"forty gibibytes");
        cmd("fsck", &img, &[]).unwrap();
        use std::os::unix::fs::MetadataExt;
        let used = std::fs::metadata(&img).unwrap().blocks() * 512;
        assert!(used < 256 << 20, "the image stays sparse: {used} bytes allocated");
        for p in [img, host, out] {
            std::fs::remove_file(p).unwrap();
        }
    }
}
