//! Process system calls: identity, exit, vfork/clone, execve, wait,
//! uname, rusage, prctl, arch_prctl. (Signals: [`super::signal`].)

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use fsdax_abi::request::{self, Prctl, WaitFor};
use fsdax_abi::signal::{self as sig, Exit};
use fsdax_abi::stack::MAX_ARG_BYTES;
use fsdax_abi::wire::{Rusage, Siginfo, Utsname};
use fsdax_abi::Errno;
use fsdax_hal::uaccess::{self, UserStrError};

use super::{read_path, read_u64, write_user, Ctx};
use crate::process::{self, Process, State};

/// `getpid`, `gettid`: pid == tid.
pub fn getpid(c: &mut Ctx<'_>, _: [u64; 6]) -> Result<u64, Errno> {
    Ok(c.proc.pid())
}

/// `getppid`: the parent process (1 if the console or the kernel: see
/// [`crate::process::INIT_PID`]).
pub fn getppid(c: &mut Ctx<'_>, _: [u64; 6]) -> Result<u64, Errno> {
    Ok(c.proc.ppid())
}

/// `getuid`, `geteuid`, `getgid`, `getegid`: everything runs as root.
pub fn getuid(_: &mut Ctx<'_>, _: [u64; 6]) -> Result<u64, Errno> {
    Ok(0)
}

/// `exit`, `exit_group` (one thread per process: the same). The process
/// ends at the return to user mode that follows.
pub fn exit(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    c.proc.request_exit(Exit::Code(a[0] as u8));
    Ok(0)
}

/// `set_tid_address`: remembered (there are no threads to wake on exit).
pub fn set_tid_address(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    c.proc.clear_child_tid.store(a[0], Ordering::Relaxed);
    Ok(c.proc.pid())
}

const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;

/// `arch_prctl`: the FS base (a program's thread pointer). GS is the
/// kernel's per-CPU base while in the kernel; programs do not get it.
pub fn arch_prctl(_: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    match a[0] {
        ARCH_SET_FS => {
            if fsdax_hal::task::set_fs_base(a[1]) {
                Ok(0)
            } else {
                Err(Errno::EPERM)
            }
        }
        ARCH_GET_FS => write_user(a[1], &fsdax_hal::task::fs_base().to_le_bytes()).map(|()| 0),
        ARCH_SET_GS | ARCH_GET_GS => Err(Errno::EINVAL),
        _ => Err(Errno::EINVAL),
    }
}

/// `uname`.
pub fn uname(_: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let u = Utsname {
        sysname: "fsdax",
        nodename: "fsdax",
        release: env!("CARGO_PKG_VERSION"),
        version: "fsdax",
        machine: "x86_64",
        domainname: "(none)",
    };
    write_user(a[0], &u.encode()).map(|()| 0)
}

const RUSAGE_SELF: i64 = 0;
const RUSAGE_CHILDREN: i64 = -1;
const RUSAGE_THREAD: i64 = 1;

/// `getrusage`: CPU time from timer ticks (user and kernel mode), page
/// faults, and the address space size as the maximum resident size.
pub fn getrusage(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let usage = match a[0] as i64 {
        RUSAGE_SELF | RUSAGE_THREAD => c.proc.usage(),
        RUSAGE_CHILDREN => *c.proc.children_usage.lock(),
        _ => return Err(Errno::EINVAL),
    };
    write_user(a[1], &usage.encode()).map(|()| 0)
}

/// `prctl`: the machine-check kill policy and the process name.
pub fn prctl(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    match request::prctl(a[0], a[1], a[2], a[3], a[4])? {
        Prctl::SetMceKill(p) => {
            *c.proc.mce_policy.lock() = p;
            Ok(0)
        }
        Prctl::GetMceKill => Ok(c.proc.mce_policy.lock().get_value()),
        Prctl::SetName(addr) => {
            let mut buf = [0u8; 16];
            let n = match uaccess::strncpy_from_user(&mut buf, addr) {
                Ok(n) => n,
                Err(UserStrError::TooLong) => 15,
                Err(UserStrError::Fault) => return Err(Errno::EFAULT),
            };
            c.proc.set_name(&buf[..n.min(15)]);
            Ok(0)
        }
        Prctl::GetName(addr) => write_user(addr, &c.proc.name_raw()).map(|()| 0),
    }
}

/// `clone`: only the vfork pattern (`CLONE_VM|CLONE_VFORK|SIGCHLD`, what
/// musl's `posix_spawn` uses); threads and `fork` are ENOSYS.
pub fn clone(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let request::Clone::Vfork { stack } = request::clone(a[0], a[1])?;
    process::vfork(&c.proc, c.frame, stack)
}

/// `vfork`.
pub fn vfork(c: &mut Ctx<'_>, _: [u64; 6]) -> Result<u64, Errno> {
    process::vfork(&c.proc, c.frame, 0)
}

/// Copies a NULL-terminated array of strings (argv, envp), counting every
/// string and pointer against the argument budget (E2BIG).
fn read_strings(mut addr: u64, budget: &mut usize) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    if addr == 0 {
        return Ok(out);
    }
    loop {
        let p = read_u64(addr)?;
        if p == 0 {
            return Ok(out);
        }
        if *budget < 8 {
            return Err(Errno::E2BIG);
        }
        *budget -= 8;
        let mut buf = alloc::vec![0u8; (*budget).min(128 * 1024)];
        let n = uaccess::strncpy_from_user(&mut buf, p).map_err(|e| match e {
            UserStrError::Fault => Errno::EFAULT,
            UserStrError::TooLong => Errno::E2BIG,
        })?;
        buf.truncate(n);
        *budget = budget.checked_sub(n + 1).ok_or(Errno::E2BIG)?;
        out.push(buf);
        addr = addr.checked_add(8).ok_or(Errno::EFAULT)?;
    }
}

/// `execve`: on success the process runs the new program; on failure the
/// old one continues with the error (ENOEXEC for what fsdax cannot run,
/// with a console line that says why).
pub fn execve(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let path = read_path(a[0])?;
    let mut budget = MAX_ARG_BYTES;
    let argv = read_strings(a[1], &mut budget)?;
    let envp = read_strings(a[2], &mut budget)?;
    match c.proc.exec(&path, &argv, &envp, c.frame) {
        Ok(()) => Ok(0),
        Err(e) => {
            if e.errno == Errno::ENOEXEC {
                crate::kprintln!("process {} ({}): execve {e}", c.proc.pid(), c.proc.name());
            }
            Err(e.errno)
        }
    }
}

/// Waits for a child matching `who` to end: Some(child) when one did,
/// None for WNOHANG with none yet. ECHILD without matching children;
/// interrupted by a signal that runs a handler or kills: EINTR, or a
/// restart for an `SA_RESTART` handler (`ERESTARTSYS`, as Linux).
fn wait_child(p: &Arc<Process>, who: WaitFor, nohang: bool) -> Result<Option<Arc<Process>>, Errno> {
    let want = match who {
        WaitFor::Any => None,
        WaitFor::Pid(pid) => Some(u64::from(pid)),
    };
    p.events.wait_until(|_, _| {
        let kids = process::children(p.pid(), want);
        if kids.is_empty() {
            return Some(Err(Errno::ECHILD));
        }
        if let Some(z) = kids.iter().find(|k| matches!(k.state(), State::Zombie(_))) {
            return Some(Ok(Some(Arc::clone(z))));
        }
        if nohang {
            return Some(Ok(None));
        }
        if p.signal_pending() {
            return Some(Err(Errno::ERESTARTSYS));
        }
        None
    })
}

fn add_usage(total: &mut Rusage, u: &Rusage) {
    total.utime_us += u.utime_us;
    total.stime_us += u.stime_us;
    total.minflt += u.minflt;
    total.majflt += u.majflt;
    total.maxrss_kib = total.maxrss_kib.max(u.maxrss_kib);
}

/// `wait4(pid, status, options, rusage)`.
pub fn wait4(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let w = request::wait4(a[0], a[2])?;
    let Some(child) = wait_child(&c.proc, w.who, w.nohang)? else { return Ok(0) };
    let pid = child.pid();
    let ended = process::reap(pid).ok_or(Errno::ECHILD)?;
    add_usage(&mut c.proc.children_usage.lock(), &ended.usage);
    if a[1] != 0 {
        write_user(a[1], &sig::wait_status(ended.how).to_le_bytes())?;
    }
    if a[3] != 0 {
        write_user(a[3], &ended.usage.encode())?;
    }
    Ok(pid)
}

/// `waitid(idtype, id, infop, options)`.
pub fn waitid(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let w = request::waitid(a[0], a[1], a[3])?;
    let Some(child) = wait_child(&c.proc, w.who, w.nohang)? else {
        if a[2] != 0 {
            write_user(a[2], &[0u8; Siginfo::SIZE])?;
        }
        return Ok(0);
    };
    let pid = child.pid();
    let State::Zombie(how) = child.state() else { return Err(Errno::ECHILD) };
    let usage = child.usage();
    if !w.keep {
        process::reap(pid);
        add_usage(&mut c.proc.children_usage.lock(), &usage);
    }
    if a[2] != 0 {
        write_user(a[2], &process::sigchld_info(pid, how, &usage).encode())?;
    }
    Ok(0)
}
