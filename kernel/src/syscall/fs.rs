//! File-system calls on names: `open`/`openat`/`creat`, the `stat`
//! family, `statfs`, `mkdir`, `rmdir`, `unlink`, `rename`, `getdents64`,
//! `getcwd`, `chdir`, `fchdir`, `access`, `umask`, `readlink`.
//!
//! Paths are resolved with Linux's rules (`fsdax_kcore::path`) from the
//! root, the current directory (`AT_FDCWD`) or a directory descriptor.
//! The file system has no permissions, owners, timestamps or symbolic
//! links: everything is accessible to everyone (mode 0644 for files, 0755
//! for directories, owner 0), every file reports the time the file system
//! was mounted, and `readlink` says EINVAL (not a link).
//!
//! The file system holds no device files: the kernel serves `/dev/null`
//! itself (the absolute path, which `open` and the `stat` family know);
//! `/dev/pmem0` and the rest of `/dev` do not exist (ENOENT).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use fsdax_abi::linux::general as g;
use fsdax_abi::request::{self, OpenFlags};
use fsdax_abi::wire::{self, Stat, Statfs, Statx, Timespec};
use fsdax_abi::Errno;
use fsdax_fs::{FileKind as FsKind, Ino};
use fsdax_hal::uaccess::{self, UserStrError};
use fsdax_kcore::path::{open_action, Last, OpenAction, Parent, PATH_MAX};

use super::io::file;
use super::{write_user, Ctx};
use crate::fsys::{self, KernelFs};
use crate::process::fd::{Fd, FileKind, OpenFile};
use crate::sync::Mutex;
use crate::vfs::file::{DirPos, Directory, RegularFile};
use crate::vfs::{self, fs_errno, inode};

/// `st_dev` of the file system: pmem0 as Linux numbers it (259:0).
const DEV_MAJOR: u32 = 259;
/// `st_dev` of the console and pipes (Linux's anonymous devices).
const ANON_DEV: u64 = 0x0c;
/// `st_rdev` of the console: `ttyS0` (4:64).
const CONSOLE_RDEV: u64 = (4 << 8) | 64;
/// The block size `stat` reports (the file system's).
const BLKSIZE: u32 = 4096;
/// `ST_RDONLY` in `statfs`'s `f_flags`.
const ST_RDONLY: u64 = 1;
/// `st_rdev` of `/dev/null` (1:3).
const NULL_RDEV: u64 = (1 << 8) | 3;
/// `st_dev` of `/proc` files (Linux's procfs is an anonymous device too).
const PROC_DEV: u64 = 0x16;

/// Whether `path` is `/dev/null` (absolute; `//dev/./null` too).
fn is_dev_null(path: &[u8]) -> bool {
    let mut comps = path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".");
    path.first() == Some(&b'/')
        && !path.ends_with(b"/")
        && comps.next() == Some(b"dev")
        && comps.next() == Some(b"null")
        && comps.next().is_none()
}

fn errno(e: fsdax_fs::FsError) -> Errno {
    fs_errno(&e)
}

/// Runs `f` with the file system's write lock (ENOENT: nothing mounted).
fn with_fs<R>(f: impl FnOnce(&mut KernelFs) -> Result<R, Errno>) -> Result<R, Errno> {
    fsys::with_fs(f).unwrap_or(Err(Errno::ENOENT))
}

/// Runs `f` with the file system's read lock (ENOENT: nothing mounted).
fn with_fs_read<R>(f: impl FnOnce(&KernelFs) -> Result<R, Errno>) -> Result<R, Errno> {
    fsys::with_fs_read(f).unwrap_or(Err(Errno::ENOENT))
}

/// Copies a NUL-terminated path (at most `PATH_MAX` bytes with the NUL):
/// EFAULT, ENAMETOOLONG; an empty path is ENOENT unless `empty_ok`
/// (`AT_EMPTY_PATH`, which also accepts a null pointer, as Linux does).
pub fn read_path(addr: u64, empty_ok: bool) -> Result<Vec<u8>, Errno> {
    if addr == 0 && empty_ok {
        return Ok(Vec::new());
    }
    let mut buf = alloc::vec![0u8; PATH_MAX];
    let n = uaccess::strncpy_from_user(&mut buf, addr).map_err(|e| match e {
        UserStrError::Fault => Errno::EFAULT,
        UserStrError::TooLong => Errno::ENAMETOOLONG,
    })?;
    buf.truncate(n);
    if buf.is_empty() && !empty_ok {
        return Err(Errno::ENOENT);
    }
    Ok(buf)
}

/// The directory a path starts from: the current directory (`AT_FDCWD`)
/// or the directory `dirfd` names (EBADF, ENOTDIR). Absolute paths ignore
/// it, so it is not checked for them.
fn start_dir(c: &Ctx<'_>, dirfd: u64, path: &[u8]) -> Result<Ino, Errno> {
    if path.first() == Some(&b'/') {
        return Ok(fsdax_fs::ROOT_INO);
    }
    if dirfd as i32 == g::AT_FDCWD {
        return Ok(c.proc.cwd.load(Ordering::Relaxed));
    }
    match &file(c, dirfd)?.kind {
        FileKind::Dir(d) => Ok(d.ino),
        _ => Err(Errno::ENOTDIR),
    }
}

/// Installs `file` at the lowest free descriptor (EMFILE); the
/// description is dropped outside the table's lock if that fails.
pub fn install(c: &Ctx<'_>, file: Arc<OpenFile>, cloexec: bool) -> Result<u64, Errno> {
    let keep = Arc::clone(&file);
    let r = c.proc.fds.lock().insert_lowest(0, Fd { file, cloexec });
    drop(keep);
    r
}

// ------------------------------------------------------------------ open

/// Opens (or creates) what `p` names per `flags`; the description, and
/// whether it must be truncated.
fn open_in(fs: &mut KernelFs, p: &Parent<'_>, flags: &OpenFlags) -> Result<(Arc<OpenFile>, bool), Errno> {
    let found = vfs::lookup_last(fs, p)?;
    let is_dir = match found {
        Some(ino) => Some(vfs::is_dir(fs, ino)?),
        None => None,
    };
    let (ino, dir, truncate) = match open_action(flags, is_dir, p.trailing_slash)? {
        OpenAction::Create => {
            let Last::Name(name) = p.last else { return Err(Errno::EISDIR) };
            (fs.create(p.dir, name).map_err(errno)?, false, false)
        }
        OpenAction::Open { dir, truncate } => (found.ok_or(Errno::ENOENT)?, dir, truncate),
    };
    let kind = if dir {
        FileKind::Dir(Directory { ino, mount: fsys::generation(), pos: Mutex::new(DirPos::default()) })
    } else {
        FileKind::File(RegularFile { inode: inode::get(fs, ino).map_err(errno)?, pos: Mutex::new(0) })
    };
    Ok((OpenFile::new(kind, flags.status), truncate))
}

fn do_openat(c: &Ctx<'_>, dirfd: u64, path: u64, flags: u32) -> Result<u64, Errno> {
    let flags = request::open_flags(flags)?;
    let path = read_path(path, false)?;
    if is_dev_null(&path) {
        if flags.directory {
            return Err(Errno::ENOTDIR);
        }
        if flags.exclusive {
            return Err(Errno::EEXIST);
        }
        return install(c, OpenFile::new(FileKind::Null, flags.status), flags.cloexec);
    }
    if let Some(kind) = crate::vfs::proc::lookup(&path, c.proc.pid()) {
        // Read-only files (Linux: mode 0444/0400).
        if flags.access != request::Access::Read || flags.truncate || flags.directory {
            return Err(if flags.directory { Errno::ENOTDIR } else { Errno::EACCES });
        }
        let pf = crate::vfs::proc::ProcFile { kind: kind?, pos: Mutex::new(0) };
        return install(c, OpenFile::new(FileKind::Proc(pf), flags.status), flags.cloexec);
    }
    let start = start_dir(c, dirfd, &path)?;
    let (f, truncate) = with_fs(|fs| {
        let p = vfs::resolve_parent(fs, start, &path)?;
        open_in(fs, &p, &flags)
    })?;
    if truncate {
        if let FileKind::File(rf) = &f.kind {
            // O_TRUNC: like ftruncate(0), after the open (Linux does it
            // the same way, under the inode's locks).
            crate::vfs::file::truncate(&rf.inode, 0)?;
        }
    }
    install(c, f, flags.cloexec)
}

/// `open(path, flags, mode)` (the mode means nothing: no permissions).
pub fn open(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    do_openat(c, g::AT_FDCWD as u64, a[0], a[1] as u32)
}

/// `openat(dirfd, path, flags, mode)`.
pub fn openat(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    do_openat(c, a[0], a[1], a[2] as u32)
}

/// `creat(path, mode)`: `open(path, O_CREAT|O_WRONLY|O_TRUNC)`.
pub fn creat(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    do_openat(c, g::AT_FDCWD as u64, a[0], g::O_CREAT | g::O_WRONLY | g::O_TRUNC)
}

// ------------------------------------------------------------------ stat

/// What `stat` says about file-system inode `ino`.
fn stat_ino(fs: &KernelFs, ino: Ino) -> Result<Stat, Errno> {
    let st = fs.stat(ino).map_err(errno)?;
    let mode = match st.kind {
        FsKind::Dir => wire::S_IFDIR | 0o755,
        FsKind::File => wire::S_IFREG | 0o644,
    };
    let t = Timespec::from_ns(fsys::mounted_at_ns());
    Ok(Stat {
        dev: u64::from(DEV_MAJOR) << 8,
        ino,
        nlink: u64::from(st.nlink),
        mode,
        size: st.size as i64,
        blksize: i64::from(BLKSIZE),
        blocks: (st.blocks * (fsdax_fs::BLOCK_SIZE / 512)) as i64,
        atime: t,
        mtime: t,
        ctime: t,
        ..Stat::default()
    })
}

/// What `fstat` says about an open description.
fn stat_open(f: &OpenFile) -> Result<Stat, Errno> {
    let chr = |rdev| Stat {
        dev: ANON_DEV,
        ino: 1,
        nlink: 1,
        mode: wire::S_IFCHR | 0o620,
        rdev,
        blksize: 1024,
        ..Stat::default()
    };
    match &f.kind {
        FileKind::ConsoleIn | FileKind::ConsoleOut => Ok(chr(CONSOLE_RDEV)),
        FileKind::Null => Ok(Stat { mode: wire::S_IFCHR | 0o666, ino: 4, ..chr(NULL_RDEV) }),
        FileKind::Pipe(end) => Ok(Stat {
            dev: ANON_DEV,
            ino: Arc::as_ptr(&end.pipe) as u64 & 0xffff_ffff,
            nlink: 1,
            mode: g::S_IFIFO | 0o600,
            blksize: 4096,
            ..Stat::default()
        }),
        FileKind::File(rf) => with_fs_read(|fs| {
            rf.inode.check_mount()?;
            stat_ino(fs, rf.inode.ino())
        }),
        FileKind::Proc(_) => {
            Ok(Stat { dev: PROC_DEV, ino: 2, nlink: 1, mode: wire::S_IFREG | 0o444, blksize: 1024, ..Stat::default() })
        }
        FileKind::Dir(d) => with_fs_read(|fs| {
            d.check_mount()?;
            stat_ino(fs, d.ino)
        }),
    }
}

/// `stat` of `path` from `dirfd`, or of `dirfd` itself for an empty path
/// with `AT_EMPTY_PATH`.
fn stat_at(c: &Ctx<'_>, dirfd: u64, path: &[u8]) -> Result<Stat, Errno> {
    if path.is_empty() {
        if dirfd as i32 == g::AT_FDCWD {
            let cwd = c.proc.cwd.load(Ordering::Relaxed);
            return with_fs_read(|fs| stat_ino(fs, cwd));
        }
        let f = file(c, dirfd)?;
        return stat_open(&f);
    }
    if is_dev_null(path) {
        return stat_open(&OpenFile { kind: FileKind::Null, status: Default::default() });
    }
    if let Some(kind) = crate::vfs::proc::lookup(path, c.proc.pid()) {
        let pf = crate::vfs::proc::ProcFile { kind: kind?, pos: Mutex::new(0) };
        return stat_open(&OpenFile { kind: FileKind::Proc(pf), status: Default::default() });
    }
    let start = start_dir(c, dirfd, path)?;
    with_fs_read(|fs| {
        let ino = vfs::resolve(fs, start, path)?;
        stat_ino(fs, ino)
    })
}

/// `stat(path, buf)`; `lstat` is the same (no symbolic links).
pub fn stat(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let path = read_path(a[0], false)?;
    let st = stat_at(c, g::AT_FDCWD as u64, &path)?;
    write_user(a[1], &st.encode()).map(|()| 0)
}

/// `fstat(fd, buf)`.
pub fn fstat(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    let st = stat_open(&f)?;
    write_user(a[1], &st.encode()).map(|()| 0)
}

/// `newfstatat(dirfd, path, buf, flags)`.
pub fn newfstatat(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let empty_ok = request::stat_flags(a[3], false)?;
    let path = read_path(a[1], empty_ok)?;
    let st = stat_at(c, a[0], &path)?;
    write_user(a[2], &st.encode()).map(|()| 0)
}

/// `statx(dirfd, path, flags, mask, buf)`: the basic statistics, and
/// `STATX_ATTR_DAX` on every regular file (every file is DAX).
pub fn statx(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let empty_ok = request::stat_flags(a[2], true)?;
    if a[3] & u64::from(g::STATX__RESERVED) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(a[1], empty_ok)?;
    let st = stat_at(c, a[0], &path)?;
    let file = st.mode & 0o170000 == wire::S_IFREG;
    let x = Statx {
        mask: wire::STATX_BASIC_STATS,
        blksize: st.blksize as u32,
        attributes: if file { wire::STATX_ATTR_DAX } else { 0 },
        nlink: st.nlink as u32,
        mode: st.mode as u16,
        ino: st.ino,
        size: st.size as u64,
        blocks: st.blocks as u64,
        attributes_mask: wire::STATX_ATTR_DAX,
        atime: st.atime,
        ctime: st.ctime,
        mtime: st.mtime,
        rdev_major: (st.rdev >> 8) as u32,
        rdev_minor: (st.rdev & 0xff) as u32,
        dev_major: (st.dev >> 8) as u32,
        dev_minor: (st.dev & 0xff) as u32,
        ..Statx::default()
    };
    write_user(a[4], &x.encode()).map(|()| 0)
}

fn statfs_of(fs: &KernelFs) -> Statfs {
    let s = fs.statfs();
    let u = fs.superblock().uuid;
    Statfs {
        fs_type: wire::FSDAX_MAGIC,
        bsize: s.block_size,
        blocks: s.data_blocks,
        bfree: s.free_blocks,
        bavail: s.free_blocks,
        // Inodes are bounded only by metadata space.
        files: s.inodes + s.free_blocks,
        ffree: s.free_blocks,
        fsid: [u32::from_le_bytes([u[0], u[1], u[2], u[3]]), u32::from_le_bytes([u[4], u[5], u[6], u[7]])],
        namelen: fsdax_fs::MAX_NAME as u64,
        frsize: s.block_size,
        flags: if fs.is_read_only() { ST_RDONLY } else { 0 },
    }
}

/// `statfs(path, buf)`.
pub fn statfs(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let path = read_path(a[0], false)?;
    let start = start_dir(c, g::AT_FDCWD as u64, &path)?;
    let s = with_fs_read(|fs| {
        vfs::resolve(fs, start, &path)?;
        Ok(statfs_of(fs))
    })?;
    write_user(a[1], &s.encode()).map(|()| 0)
}

/// `fstatfs(fd, buf)`: files and directories of the file system (EINVAL
/// for the console and pipes, which live on no file system here).
pub fn fstatfs(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    let s = match &f.kind {
        FileKind::File(rf) => with_fs_read(|fs| rf.inode.check_mount().map(|()| statfs_of(fs)))?,
        FileKind::Dir(d) => with_fs_read(|fs| d.check_mount().map(|()| statfs_of(fs)))?,
        _ => return Err(Errno::EINVAL),
    };
    write_user(a[1], &s.encode()).map(|()| 0)
}

// ------------------------------------------------------------- namespace

/// `mkdirat(dirfd, path, mode)`.
pub fn mkdirat(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let path = read_path(a[1], false)?;
    let start = start_dir(c, a[0], &path)?;
    with_fs(|fs| {
        let p = vfs::resolve_parent(fs, start, &path)?;
        match p.last {
            Last::Name(name) => fs.mkdir(p.dir, name).map(|_| 0).map_err(errno),
            _ => Err(Errno::EEXIST),
        }
    })
}

/// `mkdir(path, mode)`.
pub fn mkdir(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    mkdirat(c, [g::AT_FDCWD as u64, a[0], a[1], 0, 0, 0])
}

fn remove(fs: &mut KernelFs, p: &Parent<'_>, dir: bool) -> Result<u64, Errno> {
    let name = match (p.last, dir) {
        (Last::Name(n), _) => n,
        (Last::Dot, true) => return Err(Errno::EINVAL),
        (Last::DotDot, true) => return Err(Errno::ENOTEMPTY),
        (Last::Root, true) => return Err(Errno::EBUSY),
        (_, false) => return Err(Errno::EISDIR),
    };
    if dir {
        return fs.rmdir(p.dir, name).map(|()| 0).map_err(errno);
    }
    if p.trailing_slash {
        // `unlink("x/")`: a directory is EISDIR, a file ENOTDIR.
        let ino = vfs::lookup_last(fs, p)?.ok_or(Errno::ENOENT)?;
        return Err(if vfs::is_dir(fs, ino)? { Errno::EISDIR } else { Errno::ENOTDIR });
    }
    fs.unlink(p.dir, name).map(|()| 0).map_err(errno)
}

/// `unlinkat(dirfd, path, flags)`: `AT_REMOVEDIR` removes a directory.
pub fn unlinkat(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let dir = request::unlinkat_flags(a[2])?;
    let path = read_path(a[1], false)?;
    let start = start_dir(c, a[0], &path)?;
    with_fs(|fs| {
        let p = vfs::resolve_parent(fs, start, &path)?;
        remove(fs, &p, dir)
    })
}

/// `unlink(path)`.
pub fn unlink(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    unlinkat(c, [g::AT_FDCWD as u64, a[0], 0, 0, 0, 0])
}

/// `rmdir(path)`.
pub fn rmdir(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    unlinkat(c, [g::AT_FDCWD as u64, a[0], u64::from(g::AT_REMOVEDIR), 0, 0, 0])
}

/// `renameat2(olddirfd, old, newdirfd, new, flags)`: `RENAME_NOREPLACE`;
/// an existing target is replaced atomically (a file over a file, a
/// directory over an empty directory).
pub fn renameat2(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let noreplace = request::renameat2_flags(a[4])?;
    let old = read_path(a[1], false)?;
    let new = read_path(a[3], false)?;
    let (s0, d0) = (start_dir(c, a[0], &old)?, start_dir(c, a[2], &new)?);
    with_fs(|fs| {
        let sp = vfs::resolve_parent(fs, s0, &old)?;
        let dp = vfs::resolve_parent(fs, d0, &new)?;
        let Last::Name(sname) = sp.last else { return Err(Errno::EBUSY) };
        let Last::Name(dname) = dp.last else {
            return Err(if noreplace { Errno::EEXIST } else { Errno::EBUSY });
        };
        let src = vfs::lookup_last(fs, &sp)?.ok_or(Errno::ENOENT)?;
        if (sp.trailing_slash || dp.trailing_slash) && !vfs::is_dir(fs, src)? {
            return Err(Errno::ENOTDIR);
        }
        if noreplace && vfs::lookup_last(fs, &dp)?.is_some() {
            return Err(Errno::EEXIST);
        }
        fs.rename(sp.dir, sname, dp.dir, dname).map(|()| 0).map_err(errno)
    })
}

/// `renameat(olddirfd, old, newdirfd, new)`.
pub fn renameat(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    renameat2(c, [a[0], a[1], a[2], a[3], 0, 0])
}

/// `rename(old, new)`.
pub fn rename(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let cwd = g::AT_FDCWD as u64;
    renameat2(c, [cwd, a[0], cwd, a[1], 0, 0])
}

// ----------------------------------------------------------- directories

/// Entries `getdents64` asks the file system for at a time.
const READDIR_BATCH: usize = 64;

/// Fills up to `room` bytes of `linux_dirent64` records of directory
/// `dir` from position `pos`; returns them and the position after them.
fn dirents(fs: &KernelFs, dir: Ino, pos: &DirPos, room: usize) -> Result<(Vec<u8>, DirPos), Errno> {
    let mut out = Vec::new();
    let mut p = pos.clone();
    let full = |out: &mut Vec<u8>, p: &DirPos, ino: Ino, t: u8, name: &[u8]| {
        !wire::push_dirent64(out, room - out.len(), ino, (p.index + 1) as i64, t, name)
    };
    while p.index < 2 {
        let (name, ino): (&[u8], Ino) =
            if p.index == 0 { (b".", dir) } else { (b"..", fs.parent(dir).map_err(errno)?) };
        if full(&mut out, &p, ino, wire::DT_DIR, name) {
            return Ok((out, p));
        }
        p.index += 1;
    }
    if p.after.is_none() && p.index > 2 {
        // A position set by lseek: find the entry before it.
        let skip = (p.index - 2) as usize;
        let before = fs.readdir(dir, None, skip).map_err(errno)?;
        if before.len() < skip {
            return Ok((out, p));
        }
        p.after = before.last().map(|e| e.name.clone());
    }
    loop {
        let batch = fs.readdir(dir, p.after.as_deref(), READDIR_BATCH).map_err(errno)?;
        if batch.is_empty() {
            return Ok((out, p));
        }
        for e in batch {
            let t = if e.kind == FsKind::Dir { wire::DT_DIR } else { wire::DT_REG };
            if full(&mut out, &p, e.ino, t, &e.name) {
                return Ok((out, p));
            }
            p.index += 1;
            p.after = Some(e.name);
        }
    }
}

/// `getdents64(fd, buf, count)`.
pub fn getdents64(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    let FileKind::Dir(d) = &f.kind else { return Err(Errno::ENOTDIR) };
    let room = a[2].min(1 << 20) as usize;
    if !uaccess::user_range(a[1], room) {
        return Err(Errno::EFAULT);
    }
    let mut pos = d.pos.lock();
    let r = with_fs_read(|fs| {
        d.check_mount()?;
        match dirents(fs, d.ino, &pos, room) {
            // A directory removed while open reads as empty.
            Err(Errno::ENOENT) => Ok((Vec::new(), pos.clone())),
            r => r,
        }
    });
    let (out, next) = r?;
    if out.is_empty() {
        // The end, or a buffer too small for the next entry.
        let more =
            with_fs_read(|fs| Ok(dirents(fs, d.ino, &pos, 1 << 12).map(|(o, _)| !o.is_empty()).unwrap_or(false)))?;
        return if more { Err(Errno::EINVAL) } else { Ok(0) };
    }
    write_user(a[1], &out)?;
    *pos = next;
    Ok(out.len() as u64)
}

/// The absolute path of directory `dir`, climbing to the root.
fn path_of(fs: &KernelFs, dir: Ino) -> Result<Vec<u8>, Errno> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut cur = dir;
    let root = fs.root();
    while cur != root {
        let parent = fs.parent(cur).map_err(errno)?;
        names.push(fs.name_in(parent, cur).map_err(errno)?);
        cur = parent;
        if names.len() > PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
    }
    let mut out = Vec::new();
    for n in names.iter().rev() {
        out.push(b'/');
        out.extend_from_slice(n);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// `getcwd(buf, size)`: returns the length with the NUL.
pub fn getcwd(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let cwd = c.proc.cwd.load(Ordering::Relaxed);
    let mut path = with_fs_read(|fs| path_of(fs, cwd))?;
    path.push(0);
    if path.len() as u64 > a[1] {
        return Err(Errno::ERANGE);
    }
    write_user(a[0], &path)?;
    Ok(path.len() as u64)
}

/// `chdir(path)`.
pub fn chdir(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let path = read_path(a[0], false)?;
    let start = start_dir(c, g::AT_FDCWD as u64, &path)?;
    let ino = with_fs_read(|fs| {
        let ino = vfs::resolve(fs, start, &path)?;
        if vfs::is_dir(fs, ino)? {
            Ok(ino)
        } else {
            Err(Errno::ENOTDIR)
        }
    })?;
    c.proc.cwd.store(ino, Ordering::Relaxed);
    Ok(0)
}

/// `fchdir(fd)`.
pub fn fchdir(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    match &file(c, a[0])?.kind {
        FileKind::Dir(d) => {
            c.proc.cwd.store(d.ino, Ordering::Relaxed);
            Ok(0)
        }
        _ => Err(Errno::ENOTDIR),
    }
}

// ------------------------------------------------------------ the rest

/// `faccessat2(dirfd, path, mode, flags)`: everything that exists is
/// accessible (no permissions); W_OK on a read-only file system is EROFS.
pub fn faccessat2(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    if a[2] & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    let known = u64::from(g::AT_EACCESS | g::AT_SYMLINK_NOFOLLOW | g::AT_EMPTY_PATH);
    if a[3] & !known != 0 {
        return Err(Errno::EINVAL);
    }
    let path = read_path(a[1], a[3] & u64::from(g::AT_EMPTY_PATH) != 0)?;
    stat_at(c, a[0], &path)?;
    if a[2] & u64::from(g::W_OK) != 0 && with_fs_read(|fs| Ok(fs.is_read_only()))? {
        return Err(Errno::EROFS);
    }
    Ok(0)
}

/// `faccessat(dirfd, path, mode)`.
pub fn faccessat(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    faccessat2(c, [a[0], a[1], a[2], 0, 0, 0])
}

/// `access(path, mode)`.
pub fn access(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    faccessat2(c, [g::AT_FDCWD as u64, a[0], a[1], 0, 0, 0])
}

/// `umask(mask)`: returns the old mask (kept; the file system has no
/// permissions for it to restrict).
pub fn umask(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    Ok(u64::from(c.proc.umask.swap(a[0] as u32 & 0o777, Ordering::Relaxed)))
}

/// `readlinkat(dirfd, path, buf, size)`: there are no symbolic links, so
/// anything that exists is EINVAL.
pub fn readlinkat(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let path = read_path(a[1], false)?;
    if a[3] as i32 <= 0 {
        return Err(Errno::EINVAL);
    }
    stat_at(c, a[0], &path)?;
    Err(Errno::EINVAL)
}

/// `readlink(path, buf, size)`.
pub fn readlink(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    readlinkat(c, [g::AT_FDCWD as u64, a[0], a[1], a[2], 0, 0])
}
