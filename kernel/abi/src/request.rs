//! System-call arguments decoded into typed requests, with Linux's own
//! validation rules and error numbers. The kernel's system-call layer calls
//! these first and acts only on what they return, so every flag check is
//! written once and host-tested.

use linux_raw_sys::{general as g, prctl as pr};

use crate::signal::{self, SIGCHLD};
use crate::Errno;

const PAGE: u64 = 4096;

/// Read/write access of an open file description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    /// `O_PATH`, or an access mode of 3: neither `read` nor `write`.
    None,
}

impl Access {
    pub fn readable(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }
    pub fn writable(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// `open`/`openat` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags {
    pub access: Access,
    pub create: bool,
    pub exclusive: bool,
    pub truncate: bool,
    pub append: bool,
    pub directory: bool,
    pub cloexec: bool,
    pub path_only: bool,
    pub nonblock: bool,
    /// The flags as `fcntl(F_GETFL)` reports them.
    pub status: u32,
}

/// Decodes `open` flags. Like Linux, unknown bits are ignored (old
/// programs pass garbage); `O_TMPFILE` is refused with EOPNOTSUPP.
pub fn open_flags(flags: u32) -> Result<OpenFlags, Errno> {
    if flags & g::O_TMPFILE == g::O_TMPFILE {
        return Err(Errno::EOPNOTSUPP);
    }
    let path_only = flags & g::O_PATH != 0;
    let access = if path_only {
        Access::None
    } else {
        match flags & g::O_ACCMODE {
            g::O_RDONLY => Access::Read,
            g::O_WRONLY => Access::Write,
            g::O_RDWR => Access::ReadWrite,
            _ => Access::None,
        }
    };
    let has = |f: u32| !path_only && flags & f != 0;
    let status_bits = g::O_ACCMODE
        | g::O_APPEND
        | g::O_NONBLOCK
        | g::O_DSYNC
        | g::O_DIRECT
        | g::O_LARGEFILE
        | g::O_NOATIME
        | g::O_PATH
        | g::O_SYNC;
    Ok(OpenFlags {
        access,
        create: has(g::O_CREAT),
        exclusive: has(g::O_CREAT) && flags & g::O_EXCL != 0,
        truncate: has(g::O_TRUNC) && access.writable(),
        append: has(g::O_APPEND),
        directory: flags & g::O_DIRECTORY != 0,
        cloexec: flags & g::O_CLOEXEC != 0,
        path_only,
        nonblock: has(g::O_NONBLOCK),
        status: flags & status_bits,
    })
}

/// The kind of a memory mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// `MAP_PRIVATE`: writes go to private copies.
    Private,
    /// `MAP_SHARED` or `MAP_SHARED_VALIDATE`: writes reach the file.
    Shared,
}

/// What `MAP_FIXED*` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `addr` is a hint (or 0): the kernel picks.
    Hint(u64),
    /// `MAP_FIXED`: exactly here, replacing what is mapped.
    Replace(u64),
    /// `MAP_FIXED_NOREPLACE`: exactly here, EEXIST if anything is mapped.
    NoReplace(u64),
}

/// A decoded `mmap` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mmap {
    pub placement: Placement,
    /// Length rounded up to whole pages.
    pub len: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub sharing: Sharing,
    pub anonymous: bool,
    /// The file descriptor (ignored for anonymous mappings).
    pub fd: i32,
    /// File offset (page-aligned).
    pub offset: u64,
    pub populate: bool,
    /// `MAP_SYNC` (only honoured with `MAP_SHARED_VALIDATE`).
    pub sync: bool,
    /// `MAP_32BIT`: place below 2 GiB.
    pub below_2g: bool,
}

/// Decodes `mmap(addr, len, prot, flags, fd, offset)` (Linux `do_mmap`).
pub fn mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, offset: u64) -> Result<Mmap, Errno> {
    let prot = u32::try_from(prot).map_err(|_| Errno::EINVAL)?;
    let flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    if prot & !(g::PROT_READ | g::PROT_WRITE | g::PROT_EXEC | g::PROT_SEM) != 0 {
        return Err(Errno::EINVAL);
    }
    if !offset.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let len = len.checked_next_multiple_of(PAGE).filter(|&l| l <= crate::USER_END).ok_or(Errno::ENOMEM)?;
    // Linux's LEGACY_MAP_MASK: what MAP_SHARED silently accepts.
    let legacy = g::MAP_SHARED
        | g::MAP_PRIVATE
        | g::MAP_FIXED
        | g::MAP_ANONYMOUS
        | g::MAP_DENYWRITE
        | g::MAP_EXECUTABLE
        | g::MAP_UNINITIALIZED
        | g::MAP_GROWSDOWN
        | g::MAP_LOCKED
        | g::MAP_NORESERVE
        | g::MAP_POPULATE
        | g::MAP_NONBLOCK
        | g::MAP_STACK
        | g::MAP_HUGETLB
        | g::MAP_32BIT
        | g::MAP_FIXED_NOREPLACE
        | (g::MAP_HUGE_MASK << g::MAP_HUGE_SHIFT);
    let (sharing, flags) = match flags & g::MAP_TYPE {
        g::MAP_PRIVATE => (Sharing::Private, flags),
        g::MAP_SHARED => (Sharing::Shared, flags & legacy),
        g::MAP_SHARED_VALIDATE => {
            if flags & !(legacy | g::MAP_SYNC | g::MAP_SHARED_VALIDATE) != 0 {
                return Err(Errno::EOPNOTSUPP);
            }
            (Sharing::Shared, flags)
        }
        _ => return Err(Errno::EINVAL),
    };
    if flags & g::MAP_HUGETLB != 0 {
        // fsdax has no hugetlbfs pool; DAX files get 2 MiB pages anyway.
        return Err(Errno::EINVAL);
    }
    let placement = if flags & g::MAP_FIXED_NOREPLACE != 0 {
        Placement::NoReplace(addr)
    } else if flags & g::MAP_FIXED != 0 {
        Placement::Replace(addr)
    } else {
        Placement::Hint(addr & !(PAGE - 1))
    };
    if let Placement::Replace(a) | Placement::NoReplace(a) = placement {
        if !a.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        if !crate::is_user_range(a, len) || a < crate::USER_MIN {
            return Err(Errno::ENOMEM);
        }
    }
    let anonymous = flags & g::MAP_ANONYMOUS != 0;
    Ok(Mmap {
        placement,
        len,
        read: prot & g::PROT_READ != 0,
        write: prot & g::PROT_WRITE != 0,
        exec: prot & g::PROT_EXEC != 0,
        sharing,
        anonymous,
        fd: fd as i32,
        offset: if anonymous { 0 } else { offset },
        populate: flags & g::MAP_POPULATE != 0,
        sync: sharing == Sharing::Shared && flags & g::MAP_SYNC != 0 && flags & g::MAP_TYPE == g::MAP_SHARED_VALIDATE,
        below_2g: flags & g::MAP_32BIT != 0,
    })
}

/// A page-aligned range for `munmap`, `mprotect`, `msync`, `madvise`:
/// `addr` must be page-aligned (EINVAL); the length is rounded up; the
/// range must lie in the user half (EINVAL for munmap, ENOMEM otherwise:
/// the caller chooses).
pub fn page_range(addr: u64, len: u64) -> Result<(u64, u64), Errno> {
    if !addr.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    let len = len.checked_next_multiple_of(PAGE).ok_or(Errno::EINVAL)?;
    if !crate::is_user_range(addr, len) {
        return Err(Errno::EINVAL);
    }
    Ok((addr, len))
}

/// `mprotect` rights: R/W/X only (EINVAL for anything else, including
/// PROT_GROWSDOWN/UP which fsdax does not implement).
pub fn prot(prot: u64) -> Result<(bool, bool, bool), Errno> {
    if prot & !u64::from(g::PROT_READ | g::PROT_WRITE | g::PROT_EXEC | g::PROT_SEM) != 0 {
        return Err(Errno::EINVAL);
    }
    let p = prot as u32;
    Ok((p & g::PROT_READ != 0, p & g::PROT_WRITE != 0, p & g::PROT_EXEC != 0))
}

/// `msync` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msync {
    pub sync: bool,
    pub invalidate: bool,
}

pub fn msync(flags: u64) -> Result<Msync, Errno> {
    let known = u64::from(g::MS_ASYNC | g::MS_INVALIDATE | g::MS_SYNC);
    let f = flags as u32;
    if flags & !known != 0 || (f & g::MS_ASYNC != 0 && f & g::MS_SYNC != 0) {
        return Err(Errno::EINVAL);
    }
    Ok(Msync { sync: f & g::MS_SYNC != 0, invalidate: f & g::MS_INVALIDATE != 0 })
}

/// `madvise` advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// A hint fsdax accepts and has nothing to do for.
    Ignored,
    /// `MADV_DONTNEED`: private anonymous pages read as zero afterwards.
    DontNeed,
    /// `MADV_HWPOISON`: treat the pages as if memory failed there.
    HwPoison,
    /// `MADV_POPULATE_READ`/`WRITE`: fault the range in now.
    Populate { write: bool },
}

pub fn madvise(advice: u64) -> Result<Advice, Errno> {
    let a = u32::try_from(advice).map_err(|_| Errno::EINVAL)?;
    Ok(match a {
        g::MADV_DONTNEED | g::MADV_FREE => Advice::DontNeed,
        g::MADV_HWPOISON => Advice::HwPoison,
        g::MADV_POPULATE_READ => Advice::Populate { write: false },
        g::MADV_POPULATE_WRITE => Advice::Populate { write: true },
        g::MADV_NORMAL
        | g::MADV_RANDOM
        | g::MADV_SEQUENTIAL
        | g::MADV_WILLNEED
        | g::MADV_DONTFORK
        | g::MADV_DOFORK
        | g::MADV_MERGEABLE
        | g::MADV_UNMERGEABLE
        | g::MADV_HUGEPAGE
        | g::MADV_NOHUGEPAGE
        | g::MADV_DONTDUMP
        | g::MADV_DODUMP
        | g::MADV_WIPEONFORK
        | g::MADV_KEEPONFORK
        | g::MADV_COLD
        | g::MADV_PAGEOUT => Advice::Ignored,
        _ => return Err(Errno::EINVAL),
    })
}

/// What `clone` may do on fsdax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clone {
    /// `clone(CLONE_VM|CLONE_VFORK|SIGCHLD, stack)` (musl's
    /// `posix_spawn`) or `vfork`: a child process that borrows the
    /// parent's address space until it calls `execve` or exits, while the
    /// parent waits.
    Vfork { stack: u64 },
}

/// Decodes `clone(flags, stack, ...)`. Threads and `fork` are not
/// implemented: ENOSYS, so a program learns it at once.
pub fn clone(flags: u64, stack: u64) -> Result<Clone, Errno> {
    let want = u64::from(g::CLONE_VM | g::CLONE_VFORK | SIGCHLD);
    if flags == want {
        return Ok(Clone::Vfork { stack });
    }
    if flags & u64::from(g::CSIGNAL) > u64::from(signal::NSIG) {
        return Err(Errno::EINVAL);
    }
    Err(Errno::ENOSYS)
}

/// Whose status `wait4`/`waitid` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    Any,
    Pid(u32),
}

/// A decoded `wait4(pid, status, options, rusage)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub who: WaitFor,
    pub nohang: bool,
    /// `waitid` with `WNOWAIT`: leave the child waitable.
    pub keep: bool,
}

const WNOHANG: u32 = 1;
const WUNTRACED: u32 = 2;
const WEXITED: u32 = 4;
const WCONTINUED: u32 = 8;
const WNOWAIT: u32 = 0x0100_0000;
const WNOTHREAD: u32 = 0x2000_0000;
const WALL: u32 = 0x4000_0000;
const WCLONE: u32 = 0x8000_0000;

/// `wait4`: pid -1 (any child), > 0 (that child); 0 and < -1 name process
/// groups, and fsdax has one group, so they mean any child.
pub fn wait4(pid: u64, options: u64) -> Result<Wait, Errno> {
    let o = u32::try_from(options).map_err(|_| Errno::EINVAL)?;
    if o & !(WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WALL | WCLONE) != 0 {
        return Err(Errno::EINVAL);
    }
    let pid = pid as i32;
    let who = if pid > 0 { WaitFor::Pid(pid as u32) } else { WaitFor::Any };
    Ok(Wait { who, nohang: o & WNOHANG != 0, keep: false })
}

/// `waitid(idtype, id, infop, options)`: P_ALL (0), P_PID (1), P_PGID (2,
/// the one group); P_PIDFD is not supported (EINVAL).
pub fn waitid(idtype: u64, id: u64, options: u64) -> Result<Wait, Errno> {
    let o = u32::try_from(options).map_err(|_| Errno::EINVAL)?;
    if o & !(WNOHANG | WUNTRACED | WEXITED | WCONTINUED | WNOWAIT | WNOTHREAD | WALL | WCLONE) != 0
        || o & (WEXITED | WUNTRACED | WCONTINUED) == 0
    {
        return Err(Errno::EINVAL);
    }
    let who = match idtype {
        0 | 2 => WaitFor::Any,
        1 if (id as i32) > 0 => WaitFor::Pid(id as u32),
        _ => return Err(Errno::EINVAL),
    };
    Ok(Wait { who, nohang: o & WNOHANG != 0, keep: o & WNOWAIT != 0 })
}

/// A decoded `fallocate(fd, mode, offset, len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallocate {
    /// Mode 0 or KEEP_SIZE: allocate (and grow the size unless kept).
    Allocate { keep_size: bool },
    /// PUNCH_HOLE|KEEP_SIZE.
    PunchHole,
    /// ZERO_RANGE (optionally KEEP_SIZE).
    ZeroRange { keep_size: bool },
}

/// Decodes the mode and range (Linux `vfs_fallocate`): negative offset or
/// non-positive length: EINVAL; past the largest offset: EFBIG; PUNCH_HOLE
/// without KEEP_SIZE and the modes fsdax lacks (COLLAPSE, INSERT, UNSHARE):
/// EOPNOTSUPP.
pub fn fallocate(mode: u64, offset: u64, len: u64) -> Result<(Fallocate, u64, u64), Errno> {
    let (offset, len) = (offset as i64, len as i64);
    if offset < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    offset.checked_add(len).ok_or(Errno::EFBIG)?;
    let m = u32::try_from(mode).map_err(|_| Errno::EOPNOTSUPP)?;
    let keep = m & g::FALLOC_FL_KEEP_SIZE != 0;
    let op = match m & !g::FALLOC_FL_KEEP_SIZE {
        0 => Fallocate::Allocate { keep_size: keep },
        g::FALLOC_FL_PUNCH_HOLE if keep => Fallocate::PunchHole,
        g::FALLOC_FL_ZERO_RANGE => Fallocate::ZeroRange { keep_size: keep },
        _ => return Err(Errno::EOPNOTSUPP),
    };
    Ok((op, offset as u64, len as u64))
}

/// `lseek` whence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whence {
    Set,
    Cur,
    End,
    Data,
    Hole,
}

pub fn whence(w: u64) -> Result<Whence, Errno> {
    Ok(match u32::try_from(w).map_err(|_| Errno::EINVAL)? {
        g::SEEK_SET => Whence::Set,
        g::SEEK_CUR => Whence::Cur,
        g::SEEK_END => Whence::End,
        g::SEEK_DATA => Whence::Data,
        g::SEEK_HOLE => Whence::Hole,
        _ => return Err(Errno::EINVAL),
    })
}

/// `unlinkat` flags: 0 or AT_REMOVEDIR; true if a directory is removed.
pub fn unlinkat_flags(flags: u64) -> Result<bool, Errno> {
    match flags {
        0 => Ok(false),
        f if f == u64::from(g::AT_REMOVEDIR) => Ok(true),
        _ => Err(Errno::EINVAL),
    }
}

/// `renameat2` flags: 0 or RENAME_NOREPLACE (true); RENAME_EXCHANGE and
/// RENAME_WHITEOUT are not supported (EINVAL, as on file systems without
/// them).
pub fn renameat2_flags(flags: u64) -> Result<bool, Errno> {
    match flags {
        0 => Ok(false),
        f if f == u64::from(g::RENAME_NOREPLACE) => Ok(true),
        _ => Err(Errno::EINVAL),
    }
}

/// `newfstatat`/`statx` flags: true if `AT_EMPTY_PATH` (operate on the fd
/// itself). fsdax has no symlinks or automounts, so those flags are
/// accepted and mean nothing.
pub fn stat_flags(flags: u64, statx: bool) -> Result<bool, Errno> {
    let mut known = u64::from(g::AT_EMPTY_PATH | g::AT_SYMLINK_NOFOLLOW | g::AT_NO_AUTOMOUNT);
    if statx {
        known |= u64::from(g::AT_STATX_SYNC_TYPE);
        if flags & u64::from(g::AT_STATX_SYNC_TYPE) == u64::from(g::AT_STATX_SYNC_TYPE) {
            return Err(Errno::EINVAL);
        }
    }
    if flags & !known != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(flags & u64::from(g::AT_EMPTY_PATH) != 0)
}

/// `dup3` flags: 0 or O_CLOEXEC (true).
pub fn dup3_flags(flags: u64) -> Result<bool, Errno> {
    match flags {
        0 => Ok(false),
        f if f == u64::from(g::O_CLOEXEC) => Ok(true),
        _ => Err(Errno::EINVAL),
    }
}

/// `getrandom` flags: NONBLOCK, RANDOM, INSECURE (INSECURE with RANDOM:
/// EINVAL).
pub fn getrandom_flags(flags: u64) -> Result<(), Errno> {
    let known = u64::from(g::GRND_NONBLOCK | g::GRND_RANDOM | g::GRND_INSECURE);
    let both = u64::from(g::GRND_RANDOM | g::GRND_INSECURE);
    if flags & !known != 0 || flags & both == both {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// A process's policy for memory failures in pages it maps but did not
/// touch (`prctl(PR_MCE_KILL)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum McePolicy {
    /// Follow the system default (console `mf policy`).
    #[default]
    Default,
    /// Tell the process at once (SIGBUS BUS_MCEERR_AO).
    Early,
    /// Unmap the page quietly; the process gets BUS_MCEERR_AR when it
    /// touches it.
    Late,
}

impl McePolicy {
    /// The value `PR_MCE_KILL_GET` returns.
    pub fn get_value(self) -> u64 {
        u64::from(match self {
            McePolicy::Default => pr::PR_MCE_KILL_DEFAULT,
            McePolicy::Early => pr::PR_MCE_KILL_EARLY,
            McePolicy::Late => pr::PR_MCE_KILL_LATE,
        })
    }
}

/// The `prctl` options fsdax implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prctl {
    SetMceKill(McePolicy),
    GetMceKill,
    /// `PR_SET_NAME` with the user address of the name.
    SetName(u64),
    /// `PR_GET_NAME` with the user address of a 16-byte buffer.
    GetName(u64),
}

/// Decodes `prctl(option, arg2, arg3, arg4, arg5)`; other options: EINVAL
/// (Linux's answer for an option it does not know).
pub fn prctl(option: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> Result<Prctl, Errno> {
    match u32::try_from(option).map_err(|_| Errno::EINVAL)? {
        pr::PR_MCE_KILL => {
            if a4 != 0 || a5 != 0 {
                return Err(Errno::EINVAL);
            }
            match u32::try_from(a2).map_err(|_| Errno::EINVAL)? {
                pr::PR_MCE_KILL_CLEAR if a3 == 0 => Ok(Prctl::SetMceKill(McePolicy::Default)),
                pr::PR_MCE_KILL_SET => match u32::try_from(a3).map_err(|_| Errno::EINVAL)? {
                    pr::PR_MCE_KILL_EARLY => Ok(Prctl::SetMceKill(McePolicy::Early)),
                    pr::PR_MCE_KILL_LATE => Ok(Prctl::SetMceKill(McePolicy::Late)),
                    pr::PR_MCE_KILL_DEFAULT => Ok(Prctl::SetMceKill(McePolicy::Default)),
                    _ => Err(Errno::EINVAL),
                },
                _ => Err(Errno::EINVAL),
            }
        }
        pr::PR_MCE_KILL_GET if a2 == 0 && a3 == 0 && a4 == 0 && a5 == 0 => Ok(Prctl::GetMceKill),
        pr::PR_MCE_KILL_GET => Err(Errno::EINVAL),
        pr::PR_SET_NAME => Ok(Prctl::SetName(a2)),
        pr::PR_GET_NAME => Ok(Prctl::GetName(a2)),
        _ => Err(Errno::EINVAL),
    }
}

/// `rt_sigprocmask`/`rt_sigaction`/`rt_sigpending` take the size of the
/// kernel's sigset, 8 bytes; anything else is EINVAL.
pub fn sigsetsize(size: u64) -> Result<(), Errno> {
    if size == 8 {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

/// Validates an `rt_sigaction` registration for signal `sig`: a valid
/// number, and not SIGKILL/SIGSTOP when a new action is given. Unknown
/// `sa_flags` bits are ignored, as on Linux.
pub fn sigaction(sig: u64, changing: bool) -> Result<u32, Errno> {
    let sig = u32::try_from(sig).ok().filter(|&s| signal::valid(s)).ok_or(Errno::EINVAL)?;
    if changing && (sig == signal::SIGKILL || sig == signal::SIGSTOP) {
        return Err(Errno::EINVAL);
    }
    Ok(sig)
}

/// A read of `/proc/PID/pagemap` at file offset `offset` for `count`
/// bytes: the first virtual page number and how many entries, clipped to
/// the user half (a read past it returns nothing). EINVAL unless both are
/// multiples of the 8-byte entry, as Linux.
pub fn pagemap_read(offset: u64, count: u64) -> Result<(u64, u64), Errno> {
    let e = crate::wire::pagemap::ENTRY;
    if !offset.is_multiple_of(e) || !count.is_multiple_of(e) {
        return Err(Errno::EINVAL);
    }
    let pages = crate::USER_END / PAGE;
    let first = offset / e;
    Ok((first, (count / e).min(pages.saturating_sub(first))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: u64 = (g::PROT_READ | g::PROT_WRITE) as u64;
    const ANON_PRIVATE: u64 = (g::MAP_ANONYMOUS | g::MAP_PRIVATE) as u64;

    #[test]
    fn pagemap_reads_are_whole_entries_inside_the_user_half() {
        assert_eq!(pagemap_read(0x7f00_0000_0000 / 4096 * 8, 16), Ok((0x7f00_0000_0000 / 4096, 2)));
        assert_eq!(pagemap_read(4, 8), Err(Errno::EINVAL));
        assert_eq!(pagemap_read(8, 7), Err(Errno::EINVAL));
        let last = crate::USER_END / 4096 - 1;
        assert_eq!(pagemap_read(last * 8, 64), Ok((last, 1)), "clipped at the end of the user half");
        assert_eq!(pagemap_read((last + 1) * 8, 64), Ok((last + 1, 0)));
        assert_eq!(pagemap_read(u64::MAX - 7, 8), Ok((u64::MAX / 8, 0)));
        use crate::wire::pagemap::{entry, Page};
        assert_eq!(entry(Page::Absent), 0);
        let e = entry(Page::Present { pfn: 0x10_0234, file: true });
        assert_eq!((e >> 63, e & ((1 << 55) - 1), (e >> 61) & 1), (1, 0x10_0234, 1));
        let e = entry(Page::Present { pfn: 0x5, file: false });
        assert_eq!((e >> 61) & 1, 0);
        assert_eq!((e >> 56) & 1, 1);
    }

    #[test]
    fn open_flags_follow_linux() {
        let f = open_flags(g::O_WRONLY | g::O_CREAT | g::O_EXCL | g::O_TRUNC | g::O_CLOEXEC).unwrap();
        assert_eq!(f.access, Access::Write);
        assert!(f.create && f.exclusive && f.truncate && f.cloexec);
        // O_EXCL without O_CREAT means nothing; O_TRUNC needs write access.
        let f = open_flags(g::O_RDONLY | g::O_EXCL | g::O_TRUNC).unwrap();
        assert!(!f.exclusive && !f.truncate);
        assert_eq!(open_flags(g::O_TMPFILE | g::O_RDWR), Err(Errno::EOPNOTSUPP));
        // Unknown bits are ignored, as on Linux.
        assert!(open_flags(0x8000_0000).is_ok());
        assert_eq!(open_flags(g::O_PATH | g::O_RDWR).unwrap().access, Access::None);
        assert_eq!(open_flags(g::O_APPEND | g::O_RDWR | g::O_CLOEXEC).unwrap().status, g::O_APPEND | g::O_RDWR);
    }

    #[test]
    fn mmap_validation() {
        let m = mmap(0, 5000, RW, ANON_PRIVATE, u64::MAX, 0).unwrap();
        assert_eq!(m.len, 8192);
        assert!(m.anonymous && m.write && m.sharing == Sharing::Private);
        assert_eq!(mmap(0, 0, RW, ANON_PRIVATE, 0, 0), Err(Errno::EINVAL));
        assert_eq!(mmap(0, 4096, RW, u64::from(g::MAP_ANONYMOUS), 0, 0), Err(Errno::EINVAL), "no sharing type");
        assert_eq!(mmap(0, 4096, RW, u64::from(g::MAP_SHARED), 3, 100), Err(Errno::EINVAL), "unaligned offset");
        assert_eq!(mmap(0, 4096, 0x100, ANON_PRIVATE, 0, 0), Err(Errno::EINVAL), "unknown prot");
        assert_eq!(mmap(0, u64::MAX - 10, RW, ANON_PRIVATE, 0, 0), Err(Errno::ENOMEM));
        let fixed = ANON_PRIVATE | u64::from(g::MAP_FIXED);
        assert_eq!(mmap(0x1001, 4096, RW, fixed, 0, 0), Err(Errno::EINVAL));
        assert_eq!(mmap(0xffff_8000_0000_0000, 4096, RW, fixed, 0, 0), Err(Errno::ENOMEM));
        assert_eq!(mmap(0x40_0000, 4096, RW, fixed, 0, 0).unwrap().placement, Placement::Replace(0x40_0000));
        // MAP_SYNC: honoured with SHARED_VALIDATE, dropped with SHARED;
        // SHARED_VALIDATE refuses unknown flags.
        let sync = u64::from(g::MAP_SYNC);
        let v = mmap(0, 4096, RW, u64::from(g::MAP_SHARED_VALIDATE) | sync, 3, 0).unwrap();
        assert!(v.sync && v.sharing == Sharing::Shared);
        assert!(!mmap(0, 4096, RW, u64::from(g::MAP_SHARED) | sync, 3, 0).unwrap().sync);
        assert_eq!(mmap(0, 4096, RW, u64::from(g::MAP_SHARED_VALIDATE) | 0x40_0000, 3, 0), Err(Errno::EOPNOTSUPP));
        assert!(
            mmap(0, 4096, RW, u64::from(g::MAP_SHARED) | 0x40_0000, 3, 0).is_ok(),
            "MAP_SHARED ignores unknown flags"
        );
        assert_eq!(mmap(0, 4096, RW, ANON_PRIVATE | u64::from(g::MAP_HUGETLB), 0, 0), Err(Errno::EINVAL));
    }

    #[test]
    fn ranges_and_small_flags() {
        assert_eq!(page_range(0x1000, 1), Ok((0x1000, 0x1000)));
        assert_eq!(page_range(0x1001, 1), Err(Errno::EINVAL));
        assert_eq!(page_range(0xffff_f000_0000_0000, 4096), Err(Errno::EINVAL));
        assert_eq!(msync(u64::from(g::MS_SYNC | g::MS_ASYNC)), Err(Errno::EINVAL));
        assert_eq!(msync(u64::from(g::MS_SYNC)).unwrap(), Msync { sync: true, invalidate: false });
        assert_eq!(msync(0x80), Err(Errno::EINVAL));
        assert_eq!(madvise(u64::from(g::MADV_HWPOISON)), Ok(Advice::HwPoison));
        assert_eq!(madvise(u64::from(g::MADV_HUGEPAGE)), Ok(Advice::Ignored));
        assert_eq!(madvise(999), Err(Errno::EINVAL));
        assert_eq!(whence(4), Ok(Whence::Hole));
        assert_eq!(whence(5), Err(Errno::EINVAL));
        assert_eq!(unlinkat_flags(u64::from(g::AT_REMOVEDIR)), Ok(true));
        assert_eq!(unlinkat_flags(1), Err(Errno::EINVAL));
        assert_eq!(renameat2_flags(u64::from(g::RENAME_EXCHANGE)), Err(Errno::EINVAL));
        assert_eq!(dup3_flags(u64::from(g::O_CLOEXEC)), Ok(true));
        assert_eq!(dup3_flags(1), Err(Errno::EINVAL));
        assert_eq!(getrandom_flags(u64::from(g::GRND_RANDOM | g::GRND_INSECURE)), Err(Errno::EINVAL));
        assert_eq!(stat_flags(u64::from(g::AT_EMPTY_PATH), false), Ok(true));
        assert_eq!(stat_flags(0x8000_0000, true), Err(Errno::EINVAL));
        assert_eq!(stat_flags(u64::from(g::AT_STATX_SYNC_TYPE), true), Err(Errno::EINVAL));
        assert_eq!(sigsetsize(16), Err(Errno::EINVAL));
        assert_eq!(prot(u64::from(g::PROT_GROWSDOWN)), Err(Errno::EINVAL));
    }

    #[test]
    fn process_requests() {
        let spawn = u64::from(g::CLONE_VM | g::CLONE_VFORK) | u64::from(SIGCHLD);
        assert_eq!(clone(spawn, 0x7000), Ok(Clone::Vfork { stack: 0x7000 }));
        assert_eq!(clone(u64::from(SIGCHLD), 0), Err(Errno::ENOSYS), "fork is not implemented");
        assert_eq!(wait4((-1i64) as u64, 1).unwrap(), Wait { who: WaitFor::Any, nohang: true, keep: false });
        assert_eq!(wait4(7, 0).unwrap().who, WaitFor::Pid(7));
        assert_eq!(wait4(7, 0x10), Err(Errno::EINVAL));
        assert_eq!(waitid(1, 7, u64::from(WEXITED)).unwrap().who, WaitFor::Pid(7));
        assert_eq!(waitid(1, 7, 0), Err(Errno::EINVAL), "needs WEXITED");
        assert_eq!(waitid(3, 7, u64::from(WEXITED)), Err(Errno::EINVAL), "no pidfd");
        let punch = u64::from(g::FALLOC_FL_PUNCH_HOLE | g::FALLOC_FL_KEEP_SIZE);
        assert_eq!(fallocate(punch, 0, 4096), Ok((Fallocate::PunchHole, 0, 4096)));
        assert_eq!(fallocate(u64::from(g::FALLOC_FL_PUNCH_HOLE), 0, 4096), Err(Errno::EOPNOTSUPP));
        assert_eq!(fallocate(0, (-1i64) as u64, 4096), Err(Errno::EINVAL));
        assert_eq!(fallocate(0, 0, 0), Err(Errno::EINVAL));
        assert_eq!(fallocate(0, i64::MAX as u64, 2), Err(Errno::EFBIG));
        assert_eq!(fallocate(u64::from(g::FALLOC_FL_COLLAPSE_RANGE), 0, 4096), Err(Errno::EOPNOTSUPP));
        let set = |p| prctl(u64::from(pr::PR_MCE_KILL), u64::from(pr::PR_MCE_KILL_SET), p, 0, 0);
        assert_eq!(set(u64::from(pr::PR_MCE_KILL_LATE)), Ok(Prctl::SetMceKill(McePolicy::Late)));
        assert_eq!(set(7), Err(Errno::EINVAL));
        assert_eq!(prctl(u64::from(pr::PR_MCE_KILL_GET), 0, 0, 0, 0), Ok(Prctl::GetMceKill));
        assert_eq!(McePolicy::Early.get_value(), u64::from(pr::PR_MCE_KILL_EARLY));
        assert_eq!(prctl(12345, 0, 0, 0, 0), Err(Errno::EINVAL));
        assert_eq!(sigaction(9, true), Err(Errno::EINVAL));
        assert_eq!(sigaction(9, false), Ok(9));
        assert_eq!(sigaction(65, false), Err(Errno::EINVAL));
    }
}
