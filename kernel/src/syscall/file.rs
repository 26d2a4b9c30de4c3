//! File-system calls on open files: `lseek`, `pread64`, `pwrite64`,
//! `preadv`, `pwritev`, `fsync`, `fdatasync`, `sync`, `syncfs`,
//! `ftruncate`, `truncate`, `fallocate`, and the file ioctls (`FICLONE`,
//! `FICLONERANGE`, `FIDEDUPERANGE`, `FS_IOC_FIEMAP`).
//!
//! Every operation is durable when it returns (the file system commits
//! each one); what `fsync` adds is the write-back of the pages stores
//! through DAX mappings dirtied (`crate::dax::flush`), then a fence. What
//! frees or moves a file's blocks takes the file's mapping lock exclusive
//! first (truncate, punch hole, zero range, both files of a reflink or
//! dedupe) and breaks the layouts of the range (`crate::dax::layout`):
//! unmapped from every process, no pin left on the file's own blocks.

use alloc::sync::Arc;
use alloc::vec::Vec;

use fsdax_abi::linux::{general as g, ioctl as io};
use fsdax_abi::request::{self, Fallocate, Whence};
use fsdax_abi::wire::{self, DedupeRangeInfo, Fiemap, FiemapExtent, FileCloneRange, FileDedupeRange, Iovec};
use fsdax_abi::Errno;
use fsdax_fs::{Falloc, FsError};
use fsdax_hal::mm::Unmap;
use fsdax_hal::uaccess;
use fsdax_pmem_api::ByteRange;

use super::io::{file, iovecs};
use super::{read_user, write_user, Ctx};
use crate::fsys::{self, KernelFs};
use crate::process::fd::{FileKind, OpenFile};
use crate::vfs::file::{read_at, write_at, DirPos, WriteAt};
use crate::vfs::inode::KInode;
use crate::vfs::{self, fs_errno};

fn errno(e: FsError) -> Errno {
    fs_errno(&e)
}

/// Runs `f` with the file system's write lock, on the current mount
/// (EIO if `k` belongs to another, or nothing is mounted).
fn with_fs_on<R>(k: &KInode, f: impl FnOnce(&mut KernelFs) -> Result<R, Errno>) -> Result<R, Errno> {
    fsys::with_fs(|fs| {
        k.check_mount()?;
        f(fs)
    })
    .unwrap_or(Err(Errno::EIO))
}

/// Runs `f` with the file system's read lock, on the current mount.
fn with_fs_read_on<R>(k: &KInode, f: impl FnOnce(&KernelFs) -> Result<R, Errno>) -> Result<R, Errno> {
    fsys::with_fs_read(|fs| {
        k.check_mount()?;
        f(fs)
    })
    .unwrap_or(Err(Errno::EIO))
}

fn readable(f: &OpenFile) -> bool {
    let s = f.status();
    s & g::O_PATH == 0 && matches!(s & g::O_ACCMODE, g::O_RDONLY | g::O_RDWR)
}

fn writable(f: &OpenFile) -> bool {
    let s = f.status();
    s & g::O_PATH == 0 && matches!(s & g::O_ACCMODE, g::O_WRONLY | g::O_RDWR)
}

/// The in-memory inode of an open regular file, for a positional call:
/// ESPIPE for pipes and the console, EISDIR for a directory; `Ok(None)`
/// for `/dev/null` (reads end at once, writes are discarded).
fn positional(f: &OpenFile) -> Result<Option<&Arc<KInode>>, Errno> {
    match &f.kind {
        FileKind::File(rf) => Ok(Some(&rf.inode)),
        FileKind::Null => Ok(None),
        FileKind::Dir(_) => Err(Errno::EISDIR),
        _ => Err(Errno::ESPIPE),
    }
}

// ------------------------------------------------------------ positions

/// `lseek(fd, offset, whence)`: files (`SEEK_DATA`, `SEEK_HOLE` too) and
/// directories (`SEEK_SET`, `SEEK_CUR`: entry positions); ESPIPE for pipes
/// and the console.
pub fn lseek(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    let whence = request::whence(a[2])?;
    let offset = a[1] as i64;
    match &f.kind {
        FileKind::File(rf) => {
            let mut pos = rf.pos.lock();
            let k = &rf.inode;
            let new = with_fs_read_on(k, |fs| {
                let size = fs.stat(k.ino()).map_err(errno)?.size;
                let runs: Vec<(u64, u64)> = match whence {
                    Whence::Data | Whence::Hole => {
                        fs.fiemap(k.ino()).map_err(errno)?.iter().map(|e| (e.file_offset, e.len)).collect()
                    }
                    _ => Vec::new(),
                };
                fsdax_kcore::seek::lseek(whence, offset, *pos, size, fsdax_fs::MAX_FILE_SIZE, &runs)
            })?;
            *pos = new;
            Ok(new)
        }
        // Linux: seeking /dev/null always lands at 0.
        FileKind::Null => Ok(0),
        // `/proc` files: any position (Linux's `mem_lseek`).
        FileKind::Proc(pf) => {
            let mut pos = pf.pos.lock();
            let base = match whence {
                Whence::Set => 0,
                Whence::Cur => *pos,
                _ => return Err(Errno::EINVAL),
            };
            *pos = u64::try_from(i128::from(base) + i128::from(offset)).map_err(|_| Errno::EINVAL)?;
            Ok(*pos)
        }
        FileKind::Dir(d) => {
            let mut pos = d.pos.lock();
            let base = match whence {
                Whence::Set => 0,
                Whence::Cur => pos.index,
                _ => return Err(Errno::EINVAL),
            };
            let new = u64::try_from(i128::from(base) + i128::from(offset)).map_err(|_| Errno::EINVAL)?;
            if new != pos.index {
                *pos = DirPos { index: new, after: None };
            }
            Ok(new)
        }
        _ => Err(Errno::ESPIPE),
    }
}

/// `pread64(fd, buf, count, offset)`.
pub fn pread64(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    if !readable(&f) {
        return Err(Errno::EBADF);
    }
    if (a[3] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    if let FileKind::Proc(pf) = &f.kind {
        if !uaccess::user_range(a[1], a[2] as usize) {
            return Err(Errno::EFAULT);
        }
        let bytes = crate::vfs::proc::read(&pf.kind, a[3], a[2])?;
        return write_user(a[1], &bytes).map(|()| bytes.len() as u64);
    }
    let k = positional(&f)?;
    match k {
        Some(k) => read_at(&c.proc, k, a[1], a[2], a[3]),
        None => Ok(0),
    }
}

/// `pwrite64(fd, buf, count, offset)`: on an `O_APPEND` description it
/// appends, whatever the offset (as Linux does).
pub fn pwrite64(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    if !writable(&f) {
        return Err(Errno::EBADF);
    }
    let k = positional(&f)?;
    if (a[3] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let Some(k) = k else { return Ok(a[2]) };
    let at = if f.status() & g::O_APPEND != 0 { WriteAt::End } else { WriteAt::Offset(a[3]) };
    write_at(&c.proc, k, a[1], a[2], at).map(|(n, _)| n)
}

/// `preadv(fd, iov, iovcnt, pos_l, pos_h)` (64-bit: the offset is `pos_l`).
pub fn preadv(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    if !readable(&f) {
        return Err(Errno::EBADF);
    }
    let mut off = a[3];
    if (off as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let Some(k) = positional(&f)? else { return Ok(0) };
    let mut total = 0;
    for v in iovecs(a[1], a[2])? {
        match read_at(&c.proc, k, v.base, v.len, off) {
            Ok(n) => {
                total += n;
                off += n;
                if n < v.len {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

/// `pwritev(fd, iov, iovcnt, pos_l, pos_h)`.
pub fn pwritev(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    if !writable(&f) {
        return Err(Errno::EBADF);
    }
    let k = positional(&f)?;
    if (a[3] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let append = f.status() & g::O_APPEND != 0;
    let vs: Vec<Iovec> = iovecs(a[1], a[2])?;
    let Some(k) = k else { return Ok(vs.iter().map(|v| v.len).sum()) };
    let mut off = a[3];
    let mut total = 0;
    for v in vs {
        let at = if append { WriteAt::End } else { WriteAt::Offset(off) };
        match write_at(&c.proc, k, v.base, v.len, at) {
            Ok((n, _)) => {
                total += n;
                off += n;
                if n < v.len {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

// ------------------------------------------------------------ durability

/// `fsync(fd)` and `fdatasync(fd)`: every operation is already durable
/// (committed before it returned); the pages DAX mappings dirtied are
/// written back, and a fence orders it all. EINVAL for pipes and the
/// console, which cannot be synced.
pub fn fsync(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    match &f.kind {
        FileKind::File(rf) => {
            crate::dax::flush::flush_dirty(&rf.inode, None)?;
            with_fs_on(&rf.inode, |fs| fs.fsync(rf.inode.ino()).map_err(errno)).map(|()| 0)
        }
        FileKind::Dir(d) => fsys::with_fs(|fs| {
            d.check_mount()?;
            fs.fsync(d.ino).map_err(errno)
        })
        .unwrap_or(Err(Errno::EIO))
        .map(|()| 0),
        _ => Err(Errno::EINVAL),
    }
}

/// `sync()`: the dirty pages of every mapped file written back, and a
/// fence on the mounted file system.
pub fn sync(_: &mut Ctx<'_>, _: [u64; 6]) -> Result<u64, Errno> {
    crate::dax::flush::flush_all();
    fsys::with_fs(|fs| {
        let root = fs.root();
        let _ = fs.fsync(root);
    });
    Ok(0)
}

/// `syncfs(fd)`.
pub fn syncfs(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    file(c, a[0])?;
    sync(c, a)
}

// ------------------------------------------------------------- sizes

/// `ftruncate(fd, length)`: EINVAL unless a regular file open for
/// writing; EFBIG past the largest file.
pub fn ftruncate(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    if (a[1] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let f = file(c, a[0])?;
    match &f.kind {
        FileKind::File(rf) if writable(&f) => crate::vfs::file::truncate(&rf.inode, a[1]).map(|()| 0),
        _ => Err(Errno::EINVAL),
    }
}

/// `truncate(path, length)`.
pub fn truncate(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    if (a[1] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let path = super::fs::read_path(a[0], false)?;
    let cwd = c.proc.cwd.load(core::sync::atomic::Ordering::Relaxed);
    // The file's in-memory inode (for its mapping lock), held while it is
    // truncated and dropped after the file system's lock is released.
    let k = fsys::with_fs(|fs| {
        let ino = vfs::resolve(fs, cwd, &path)?;
        if vfs::is_dir(fs, ino)? {
            return Err(Errno::EISDIR);
        }
        crate::vfs::inode::get(fs, ino).map_err(errno)
    })
    .unwrap_or(Err(Errno::ENOENT))?;
    let r = crate::vfs::file::truncate(&k, a[1]).map(|()| 0);
    drop(k);
    r
}

/// `fallocate(fd, mode, offset, len)`: mode 0, `KEEP_SIZE`,
/// `PUNCH_HOLE|KEEP_SIZE`, `ZERO_RANGE` (with or without `KEEP_SIZE`).
pub fn fallocate(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let (op, off, len) = request::fallocate(a[1], a[2], a[3])?;
    let f = file(c, a[0])?;
    if !writable(&f) {
        return Err(Errno::EBADF);
    }
    let k = match &f.kind {
        FileKind::File(rf) => &rf.inode,
        FileKind::Dir(_) => return Err(Errno::EISDIR),
        FileKind::Pipe(_) => return Err(Errno::ESPIPE),
        _ => return Err(Errno::ENODEV),
    };
    let mode = match op {
        Fallocate::Allocate { keep_size } => Falloc::Allocate { keep_size },
        Fallocate::PunchHole => Falloc::PunchHole,
        Fallocate::ZeroRange { keep_size } => Falloc::ZeroRange { keep_size },
    };
    crate::vfs::file::fallocate(k, mode, off, len).map(|()| 0)
}

// ---------------------------------------------------------------- ioctl

/// The in-memory inodes of the two files of a reflink or dedupe, after
/// Linux's checks (`generic_file_rw_checks`): EISDIR for a directory,
/// EINVAL for anything else that is not a regular file, EBADF unless the
/// source is readable and the destination writable and not `O_APPEND`.
fn remap_pair<'a>(src: &'a OpenFile, dst: &'a OpenFile) -> Result<(&'a Arc<KInode>, &'a Arc<KInode>), Errno> {
    let inode = |f: &'a OpenFile| match &f.kind {
        FileKind::File(rf) => Ok(&rf.inode),
        FileKind::Dir(_) => Err(Errno::EISDIR),
        _ => Err(Errno::EINVAL),
    };
    let (s, d) = (inode(src), inode(dst));
    if matches!(s, Err(Errno::EISDIR)) || matches!(d, Err(Errno::EISDIR)) {
        return Err(Errno::EISDIR);
    }
    let (s, d) = (s?, d?);
    if !readable(src) || !writable(dst) || dst.status() & g::O_APPEND != 0 {
        return Err(Errno::EBADF);
    }
    Ok((s, d))
}

/// Runs `f` with the mapping locks of both files held exclusive (in inode
/// order; once if they are the same file), then the file system's lock.
/// Before it, the layouts of the destination's range `dst` are broken (its
/// blocks are replaced: every mapping of them goes, none stays pinned) and
/// the source's range `src` is written back (its blocks become shared: a
/// store through a writable mapping must fault first and copy, so every
/// mapping of them loses write access).
fn with_both_locked<R>(
    s: &KInode,
    src: ByteRange,
    d: &KInode,
    dst: ByteRange,
    f: impl FnOnce(&mut KernelFs) -> Result<R, Errno>,
) -> Result<R, Errno> {
    let (first, second) = if s.ino() <= d.ino() { (s, d) } else { (d, s) };
    let _a = first.mapping_lock.write();
    let _b = (first.ino() != second.ino()).then(|| second.mapping_lock.write());
    crate::dax::layout::break_layouts(d, dst, Unmap::FileOnly)?;
    crate::dax::flush::write_protect_range(s, src)?;
    with_fs_on(s, |fs| {
        d.check_mount()?;
        f(fs)
    })
}

/// The whole of a file, as a range (for a reflink of all of it).
fn whole(k: &KInode) -> Result<ByteRange, Errno> {
    let size = with_fs_read_on(k, |fs| fs.stat(k.ino()).map(|st| st.size).map_err(errno))?;
    Ok(ByteRange::from_len_saturating(0, size))
}

/// `ioctl(dst, FICLONE, src)`: `dst` shares all of `src`'s blocks and
/// takes its size.
fn ficlone(c: &Ctx<'_>, dst: u64, src: u64) -> Result<u64, Errno> {
    let (src, dst) = (file(c, src)?, file(c, dst)?);
    let (s, d) = remap_pair(&src, &dst)?;
    let (sr, dr) = (whole(s)?, whole(d)?);
    let dr = ByteRange::new(0, dr.end().max(sr.end())).unwrap_or(dr);
    with_both_locked(s, sr, d, dr, |fs| fs.reflink(s.ino(), d.ino()).map_err(errno)).map(|()| 0)
}

/// `ioctl(dst, FICLONERANGE, &file_clone_range)`; a zero length means to
/// the end of the source.
fn ficlonerange(c: &Ctx<'_>, dst: u64, arg: u64) -> Result<u64, Errno> {
    let r = FileCloneRange::decode(&read_user(arg, FileCloneRange::SIZE)?);
    let (src, dst) = (file(c, r.src_fd as u64)?, file(c, dst)?);
    let (s, d) = remap_pair(&src, &dst)?;
    let len = if r.src_length == 0 { whole(s)?.end().saturating_sub(r.src_offset) } else { r.src_length };
    let sr = ByteRange::from_len_saturating(r.src_offset, len);
    let dr = ByteRange::from_len_saturating(r.dest_offset, len);
    with_both_locked(s, sr, d, dr, |fs| {
        let len = if r.src_length == 0 {
            fs.stat(s.ino()).map_err(errno)?.size.checked_sub(r.src_offset).ok_or(Errno::EINVAL)?
        } else {
            r.src_length
        };
        fs.reflink_range(s.ino(), r.src_offset, d.ino(), r.dest_offset, len).map_err(errno)
    })
    .map(|()| 0)
}

/// `ioctl(src, FIDEDUPERANGE, &file_dedupe_range)`: each destination gets
/// its own status (0 shared, `FILE_DEDUPE_RANGE_DIFFERS`, or `-errno`).
fn fideduperange(c: &Ctx<'_>, src_fd: u64, arg: u64) -> Result<u64, Errno> {
    let hdr = FileDedupeRange::decode(&read_user(arg, FileDedupeRange::SIZE)?).ok_or(Errno::EINVAL)?;
    let n = usize::from(hdr.dest_count);
    let infos_at = arg + FileDedupeRange::SIZE as u64;
    let raw = read_user(infos_at, n * DedupeRangeInfo::SIZE)?;
    let src = file(c, src_fd)?;
    let mut out = Vec::with_capacity(raw.len());
    for chunk in raw.chunks(DedupeRangeInfo::SIZE) {
        let mut info = DedupeRangeInfo::decode(chunk);
        let r = file(c, info.dest_fd as u64).and_then(|dst| {
            let (s, d) = remap_pair(&src, &dst)?;
            let sr = ByteRange::from_len_saturating(hdr.src_offset, hdr.src_length);
            let dr = ByteRange::from_len_saturating(info.dest_offset, hdr.src_length);
            with_both_locked(s, sr, d, dr, |fs| {
                match fs.dedupe_range(s.ino(), hdr.src_offset, d.ino(), info.dest_offset, hdr.src_length) {
                    Ok(()) => Ok(true),
                    Err(FsError::Differs) => Ok(false),
                    Err(e) => Err(errno(e)),
                }
            })
        });
        match r {
            Ok(true) => {
                info.status = 0;
                info.bytes_deduped = hdr.src_length;
            }
            Ok(false) => {
                info.status = wire::FILE_DEDUPE_RANGE_DIFFERS;
                info.bytes_deduped = 0;
            }
            Err(e) => {
                info.status = -(e.0 as i32);
                info.bytes_deduped = 0;
            }
        }
        out.extend_from_slice(&info.encode());
    }
    write_user(infos_at, &out).map(|()| 0)
}

/// `ioctl(fd, FS_IOC_FIEMAP, &fiemap)`: the mapped runs of the file that
/// overlap `[fm_start, fm_start + fm_length)`; `fe_physical` is the byte
/// offset on the pmem device; shared runs carry `FIEMAP_EXTENT_SHARED`
/// and the file's last run `FIEMAP_EXTENT_LAST`. With `fm_extent_count`
/// 0 it only counts. Unknown flags: EBADR, with them in `fm_flags`.
fn fiemap(c: &Ctx<'_>, fd: u64, arg: u64) -> Result<u64, Errno> {
    let f = file(c, fd)?;
    let mut fm = Fiemap::decode(&read_user(arg, Fiemap::SIZE)?);
    let unknown = fm.flags & !wire::FIEMAP_FLAG_SYNC;
    if unknown != 0 {
        fm.flags = unknown;
        write_user(arg, &fm.encode())?;
        return Err(Errno::EBADR);
    }
    if fm.length == 0 || fm.extent_count as usize > u32::MAX as usize / FiemapExtent::SIZE {
        return Err(Errno::EINVAL);
    }
    let room = fm.extent_count as usize * FiemapExtent::SIZE;
    if !uaccess::user_range(arg + Fiemap::SIZE as u64, room) {
        return Err(Errno::EFAULT);
    }
    let runs = match &f.kind {
        FileKind::File(rf) => with_fs_read_on(&rf.inode, |fs| fs.fiemap(rf.inode.ino()).map_err(errno))?,
        FileKind::Dir(_) => Vec::new(),
        _ => return Err(Errno::EINVAL),
    };
    let (start, end) = (fm.start, fm.start.saturating_add(fm.length));
    let last = runs.len().checked_sub(1);
    let wanted: Vec<FiemapExtent> = runs
        .iter()
        .enumerate()
        .filter(|(_, e)| e.file_offset < end && e.file_offset + e.len > start)
        .map(|(i, e)| FiemapExtent {
            logical: e.file_offset,
            physical: e.phys,
            length: e.len,
            flags: if e.shared { wire::FIEMAP_EXTENT_SHARED } else { 0 }
                | if Some(i) == last { wire::FIEMAP_EXTENT_LAST } else { 0 },
        })
        .collect();
    let count = if fm.extent_count == 0 { wanted.len() } else { wanted.len().min(fm.extent_count as usize) };
    if fm.extent_count > 0 {
        let bytes: Vec<u8> = wanted[..count].iter().flat_map(FiemapExtent::encode).collect();
        write_user(arg + Fiemap::SIZE as u64, &bytes)?;
    }
    fm.mapped_extents = count as u32;
    write_user(arg, &fm.encode()).map(|()| 0)
}

/// `FIONREAD`: bytes a read would get now without waiting.
fn fionread(c: &Ctx<'_>, f: &OpenFile) -> Result<u64, Errno> {
    match &f.kind {
        FileKind::Pipe(end) if !end.write => Ok(end.pipe.peek(|p| p.bytes.len() as u64)),
        FileKind::ConsoleIn => {
            let me = c.proc.pid();
            Ok(crate::process::console::INPUT.peek(|i| if i.foreground == Some(me) { i.bytes.len() as u64 } else { 0 }))
        }
        FileKind::File(rf) => {
            let pos = *rf.pos.lock();
            with_fs_read_on(&rf.inode, |fs| Ok(fs.stat(rf.inode.ino()).map_err(errno)?.size.saturating_sub(pos)))
        }
        FileKind::Null => Ok(0),
        _ => Err(Errno::ENOTTY),
    }
}

/// `ioctl(fd, request, arg)`: the descriptor ioctls every file has
/// (`FIONBIO`, `FIOCLEX`, `FIONCLEX`, `FIONREAD`), the file ioctls;
/// `TCGETS` and everything else is ENOTTY (nothing here is a terminal).
pub fn ioctl(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    match a[1] as u32 {
        io::FIONBIO => {
            let on = i32::from_le_bytes(super::read_user_array::<4>(a[2])?) != 0;
            if on {
                f.status.fetch_or(g::O_NONBLOCK, core::sync::atomic::Ordering::Relaxed);
            } else {
                f.status.fetch_and(!g::O_NONBLOCK, core::sync::atomic::Ordering::Relaxed);
            }
            Ok(0)
        }
        io::FIOCLEX | io::FIONCLEX => c.proc.fds.lock().set_cloexec(a[0], a[1] as u32 == io::FIOCLEX).map(|()| 0),
        io::FIONREAD => {
            let n = fionread(c, &f)?;
            write_user(a[2], &(n.min(i32::MAX as u64) as i32).to_le_bytes()).map(|()| 0)
        }
        io::FICLONE => ficlone(c, a[0], i64::from(a[2] as i32) as u64),
        io::FICLONERANGE => ficlonerange(c, a[0], a[2]),
        io::FIDEDUPERANGE => fideduperange(c, a[0], a[2]),
        wire::FS_IOC_FIEMAP => fiemap(c, a[0], a[2]),
        _ => Err(Errno::ENOTTY),
    }
}
