//! The system-call table: Linux x86_64 numbers
//! (`fsdax_abi::linux::general::__NR_*`) to one function each.
//!
//! Every handler has the type [`Handler`]: it gets the calling process and
//! its saved registers ([`Ctx`]) and the six arguments (`rdi rsi rdx r10
//! r8 r9`), and returns the value for `rax` or an errno (returned as
//! `-errno`). A number without an entry returns `-ENOSYS` and is logged
//! once, with its name, so a program finds out instead of crashing.
//!
//! Every pointer a process passes may be null, unmapped, in kernel space,
//! misaligned or straddle a hole: the helpers below copy through the hal's
//! fallible user copies and turn any failure into EFAULT.
//!
//! Where the calls are: [`io`] (descriptors of every kind), [`fs`] (names:
//! open, stat, directories, cwd), [`file`] (open files: positions, sizes,
//! durability, the file ioctls), [`mem`], [`proc`], [`time`].
//!
//! A call that a signal interrupts returns EINTR, or one of the
//! kernel-internal restart codes (`Errno::ERESTARTSYS`, ...): the
//! dispatcher records it with the call's number, and the return to user
//! mode turns it into EINTR or runs the call again, as Linux does
//! (`SA_RESTART`).

mod file;
mod fs;
mod io;
mod mem;
mod proc;
mod signal;
mod time;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use fsdax_abi::linux::general as g;
use fsdax_abi::Errno;
use fsdax_hal::trap::TrapFrame;
use fsdax_hal::uaccess::{self, UserStrError};

use crate::process::{self, Process};

/// What a handler works on.
pub struct Ctx<'a> {
    /// The calling process.
    pub proc: Arc<Process>,
    /// Its registers as it entered (a handler may rewrite them: `execve`).
    pub frame: &'a mut TrapFrame,
}

/// A system call's implementation.
pub type Handler = fn(&mut Ctx<'_>, [u64; 6]) -> Result<u64, Errno>;

/// One table entry.
#[derive(Clone, Copy)]
struct Entry {
    name: &'static str,
    run: Handler,
}

/// One past the highest number in the table.
const MAX_NR: usize = 512;

macro_rules! table {
    ($($nr:ident => $f:path),* $(,)?) => {{
        let mut t: [Option<Entry>; MAX_NR] = [None; MAX_NR];
        $(
            t[g::$nr as usize] = Some(Entry { name: stringify!($nr), run: $f });
        )*
        t
    }};
}

static TABLE: [Option<Entry>; MAX_NR] = table! {
    __NR_read => io::read,
    __NR_write => io::write,
    __NR_close => io::close,
    __NR_poll => io::poll,
    __NR_ioctl => file::ioctl,
    __NR_open => fs::open,
    __NR_openat => fs::openat,
    __NR_creat => fs::creat,
    __NR_stat => fs::stat,
    __NR_lstat => fs::stat,
    __NR_fstat => fs::fstat,
    __NR_newfstatat => fs::newfstatat,
    __NR_statx => fs::statx,
    __NR_statfs => fs::statfs,
    __NR_fstatfs => fs::fstatfs,
    __NR_mkdir => fs::mkdir,
    __NR_mkdirat => fs::mkdirat,
    __NR_rmdir => fs::rmdir,
    __NR_unlink => fs::unlink,
    __NR_unlinkat => fs::unlinkat,
    __NR_rename => fs::rename,
    __NR_renameat => fs::renameat,
    __NR_renameat2 => fs::renameat2,
    __NR_getdents64 => fs::getdents64,
    __NR_getcwd => fs::getcwd,
    __NR_chdir => fs::chdir,
    __NR_fchdir => fs::fchdir,
    __NR_access => fs::access,
    __NR_faccessat => fs::faccessat,
    __NR_faccessat2 => fs::faccessat2,
    __NR_umask => fs::umask,
    __NR_readlink => fs::readlink,
    __NR_readlinkat => fs::readlinkat,
    __NR_lseek => file::lseek,
    __NR_pread64 => file::pread64,
    __NR_pwrite64 => file::pwrite64,
    __NR_preadv => file::preadv,
    __NR_pwritev => file::pwritev,
    __NR_fsync => file::fsync,
    __NR_fdatasync => file::fsync,
    __NR_sync => file::sync,
    __NR_syncfs => file::syncfs,
    __NR_truncate => file::truncate,
    __NR_ftruncate => file::ftruncate,
    __NR_fallocate => file::fallocate,
    __NR_readv => io::readv,
    __NR_writev => io::writev,
    __NR_dup => io::dup,
    __NR_dup2 => io::dup2,
    __NR_dup3 => io::dup3,
    __NR_fcntl => io::fcntl,
    __NR_pipe => io::pipe,
    __NR_pipe2 => io::pipe2,
    __NR_mmap => mem::mmap,
    __NR_mprotect => mem::mprotect,
    __NR_munmap => mem::munmap,
    __NR_brk => mem::brk,
    __NR_madvise => mem::madvise,
    __NR_msync => mem::msync,
    __NR_rt_sigaction => signal::rt_sigaction,
    __NR_rt_sigprocmask => signal::rt_sigprocmask,
    __NR_rt_sigreturn => signal::rt_sigreturn,
    __NR_rt_sigpending => signal::rt_sigpending,
    __NR_rt_sigsuspend => signal::rt_sigsuspend,
    __NR_rt_sigtimedwait => signal::rt_sigtimedwait,
    __NR_sigaltstack => signal::sigaltstack,
    __NR_pause => signal::pause,
    __NR_kill => signal::kill,
    __NR_tkill => signal::tkill,
    __NR_tgkill => signal::tgkill,
    __NR_sched_yield => time::sched_yield,
    __NR_nanosleep => time::nanosleep,
    __NR_getpid => proc::getpid,
    __NR_clone => proc::clone,
    __NR_vfork => proc::vfork,
    __NR_execve => proc::execve,
    __NR_exit => proc::exit,
    __NR_wait4 => proc::wait4,
    __NR_uname => proc::uname,
    __NR_getrusage => proc::getrusage,
    __NR_getuid => proc::getuid,
    __NR_getgid => proc::getuid,
    __NR_geteuid => proc::getuid,
    __NR_getegid => proc::getuid,
    __NR_getppid => proc::getppid,
    __NR_prctl => proc::prctl,
    __NR_arch_prctl => proc::arch_prctl,
    __NR_gettid => proc::getpid,
    __NR_set_tid_address => proc::set_tid_address,
    __NR_clock_gettime => time::clock_gettime,
    __NR_clock_nanosleep => time::clock_nanosleep,
    __NR_exit_group => proc::exit,
    __NR_waitid => proc::waitid,
    __NR_getrandom => time::getrandom,
};

/// Numbers already reported as not implemented (one bit each).
static REPORTED: [AtomicU64; MAX_NR / 64] = [const { AtomicU64::new(0) }; MAX_NR / 64];

fn report_missing(nr: u64) {
    let Some(word) = REPORTED.get(nr as usize / 64) else {
        crate::warn!("syscall {nr} does not exist on x86_64: ENOSYS");
        return;
    };
    let bit = 1 << (nr % 64);
    if word.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
        let name = syscall_name(nr);
        crate::warn!("syscall {nr} ({name}) is not implemented: ENOSYS");
    }
}

/// The name of a Linux x86_64 system call.
pub fn syscall_name(nr: u64) -> &'static str {
    syscalls::Sysno::new(nr as usize).map_or("unknown", |s| s.name())
}

/// The system-call handler registered with the hal.
pub fn dispatch(frame: &mut TrapFrame) {
    let nr = frame.rax;
    let args = [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9];
    let Some(proc) = process::current() else {
        frame.rax = Errno::ENOSYS.as_return();
        return;
    };
    let entry = usize::try_from(nr).ok().and_then(|i| TABLE.get(i)).copied().flatten();
    let mut ctx = Ctx { proc, frame };
    let result = match entry {
        Some(e) => {
            let _ = e.name;
            (e.run)(&mut ctx, args)
        }
        None => {
            report_missing(nr);
            Err(Errno::ENOSYS)
        }
    };
    let Ctx { proc, frame } = ctx;
    frame.rax = match result {
        Ok(v) => v,
        Err(e) if e.is_restart() => {
            // Interrupted: EINTR or a restart, decided on the way out.
            proc.signals.lock().interrupt_syscall(nr, e);
            Errno::EINTR.as_return()
        }
        Err(e) => e.as_return(),
    };
}

/// The implemented system calls, by number (for the docs' list and tests).
pub fn implemented() -> impl Iterator<Item = (usize, &'static str)> {
    TABLE.iter().enumerate().filter_map(|(i, e)| e.map(|e| (i, e.name)))
}

// ------------------------------------------------------------ user memory

/// Copies `len` bytes from user memory (EFAULT on any fault).
pub fn read_user(addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Errno::ENOMEM)?;
    v.resize(len, 0);
    uaccess::copy_from_user(&mut v, addr).map_err(|_| Errno::EFAULT)?;
    Ok(v)
}

/// Copies a fixed-size structure from user memory.
pub fn read_user_array<const N: usize>(addr: u64) -> Result<[u8; N], Errno> {
    let mut b = [0u8; N];
    uaccess::copy_from_user(&mut b, addr).map_err(|_| Errno::EFAULT)?;
    Ok(b)
}

/// Reads a `u64` from user memory.
pub fn read_u64(addr: u64) -> Result<u64, Errno> {
    read_user_array::<8>(addr).map(u64::from_le_bytes)
}

/// Copies bytes to user memory (EFAULT on any fault).
pub fn write_user(addr: u64, bytes: &[u8]) -> Result<(), Errno> {
    uaccess::copy_to_user(addr, bytes).map_err(|_| Errno::EFAULT)
}

/// Copies a NUL-terminated path (at most `PATH_MAX` bytes with the NUL).
pub fn read_path(addr: u64) -> Result<alloc::string::String, Errno> {
    let mut buf = alloc::vec![0u8; g::PATH_MAX as usize];
    let n = uaccess::strncpy_from_user(&mut buf, addr).map_err(|e| match e {
        UserStrError::Fault => Errno::EFAULT,
        UserStrError::TooLong => Errno::ENAMETOOLONG,
    })?;
    buf.truncate(n);
    if buf.is_empty() {
        return Err(Errno::ENOENT);
    }
    alloc::string::String::from_utf8(buf).map_err(|_| Errno::ENOENT)
}

mod tests {
    use fsdax_ktest::{kassert, kassert_eq, ktest};

    use super::*;

    ktest!(the_table_has_the_process_calls_and_names_the_rest, {
        let names: Vec<&str> = implemented().map(|(_, n)| n).collect();
        for want in ["__NR_getpid", "__NR_execve", "__NR_wait4", "__NR_mmap", "__NR_write", "__NR_exit_group"] {
            kassert!(names.contains(&want), "a process call is missing from the table");
        }
        for want in ["__NR_openat", "__NR_pread64", "__NR_statx", "__NR_getdents64", "__NR_renameat2", "__NR_fallocate"]
        {
            kassert!(names.contains(&want), "a file call is missing from the table");
        }
        kassert_eq!(syscall_name(u64::from(g::__NR_pipe2)), "pipe2");
        kassert_eq!(syscall_name(100_000), "unknown");
        Ok(())
    });
}
