//! Signal system calls: actions, masks, the alternate stack, sending
//! (`kill`, `tkill`, `tgkill`), waiting (`pause`, `rt_sigsuspend`,
//! `rt_sigtimedwait`), `rt_sigpending` and `rt_sigreturn`. The decisions
//! are `fsdax_kcore::signal::SignalState`'s; delivery is
//! [`crate::process::signal`]'s, at the return to user mode.

use alloc::vec::Vec;

use fsdax_abi::signal::{self as sig, Action, SigSet};
use fsdax_abi::wire::{KernelSigaction, Siginfo, StackT, Timespec};
use fsdax_abi::{request, Errno};

use super::{read_u64, read_user_array, write_user, Ctx};
use crate::process::{self, Pid, Process, State};

/// `rt_sigaction(sig, act, oact, sigsetsize)`.
pub fn rt_sigaction(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    request::sigsetsize(a[3])?;
    let s = request::sigaction(a[0], a[1] != 0)?;
    let new = if a[1] != 0 {
        let k = KernelSigaction::decode(&read_user_array::<{ KernelSigaction::SIZE }>(a[1])?);
        Some(Action { handler: k.handler, flags: k.flags, restorer: k.restorer, mask: k.mask })
    } else {
        None
    };
    let old = {
        let mut st = c.proc.signals.lock();
        match new {
            Some(action) => st.set_action(s, action),
            None => st.action(s),
        }
    };
    if a[2] != 0 {
        let k = KernelSigaction { handler: old.handler, flags: old.flags, restorer: old.restorer, mask: old.mask };
        write_user(a[2], &k.encode())?;
    }
    Ok(0)
}

/// `rt_sigprocmask(how, set, oset, sigsetsize)`. A signal it unblocks is
/// delivered on the way back to user mode.
pub fn rt_sigprocmask(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    request::sigsetsize(a[3])?;
    let set = if a[1] != 0 { Some(read_u64(a[1])?) } else { None };
    let old = {
        let mut st = c.proc.signals.lock();
        match set {
            Some(set) => st.procmask(a[0] as u32, set)?,
            None => st.blocked(),
        }
    };
    if a[2] != 0 {
        write_user(a[2], &old.to_le_bytes())?;
    }
    Ok(0)
}

/// `rt_sigpending(set, sigsetsize)`: the blocked signals that wait.
pub fn rt_sigpending(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    // Linux accepts any size up to its sigset's and copies that much.
    if a[1] > 8 {
        return Err(Errno::EINVAL);
    }
    let set = c.proc.signals.lock().pending_blocked();
    write_user(a[0], &set.to_le_bytes()[..a[1] as usize])?;
    Ok(0)
}

/// `sigaltstack(ss, old_ss)`.
pub fn sigaltstack(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let new = if a[0] != 0 { Some(StackT::decode(&read_user_array::<{ StackT::SIZE }>(a[0])?)) } else { None };
    let old = c.proc.signals.lock().sigaltstack(new, c.frame.rsp)?;
    if a[1] != 0 {
        write_user(a[1], &old.encode())?;
    }
    Ok(0)
}

/// `rt_sigreturn()`: back from a handler (see
/// [`crate::process::signal::sigreturn`]).
pub fn rt_sigreturn(c: &mut Ctx<'_>, _: [u64; 6]) -> Result<u64, Errno> {
    Ok(process::signal::sigreturn(&c.proc, c.frame))
}

/// A signal number from a process: 0 (only check the target) or valid.
fn signal_number(raw: u64) -> Result<u32, Errno> {
    let s = u32::try_from(raw).map_err(|_| Errno::EINVAL)?;
    if s == 0 || sig::valid(s) {
        Ok(s)
    } else {
        Err(Errno::EINVAL)
    }
}

/// Sends `s` (0: none, only the check) to `target`.
fn send_to(target: &Process, s: u32, code: i32, from: Pid) -> Result<(), Errno> {
    if s == 0 {
        return Ok(());
    }
    target.send(sig::kill_info(s, code, from as u32))
}

/// `kill(pid, sig)`: `pid > 0` one process; 0 the caller's process group;
/// -1 every process but the caller (there is no init to spare); `< -1` the
/// group `-pid`. ESRCH if nothing matched, then EINVAL for a bad signal
/// (Linux's order). Everyone runs as root: no EPERM.
pub fn kill(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let pid = a[0] as i32;
    let me = c.proc.pid();
    let targets: Vec<_> = match pid {
        p if p > 0 => process::get(p as Pid).into_iter().collect(),
        0 => in_group(c.proc.pgid()),
        -1 => process::all().into_iter().filter(|p| p.pid() != me).collect(),
        p => in_group(u64::from(p.unsigned_abs())),
    };
    if targets.is_empty() {
        return Err(Errno::ESRCH);
    }
    let s = signal_number(a[1])?;
    let mut result = Ok(0);
    for t in &targets {
        if let Err(e) = send_to(t, s, sig::SI_USER, me) {
            result = Err(e);
        }
    }
    result
}

fn in_group(pgid: Pid) -> Vec<alloc::sync::Arc<Process>> {
    process::all().into_iter().filter(|p| p.pgid() == pgid && p.state() == State::Alive).collect()
}

/// `tgkill(tgid, tid, sig)`: one thread; pid == tid, so `tgid` must be
/// `tid` (ESRCH otherwise).
pub fn tgkill(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let (tgid, tid) = (a[0] as i32, a[1] as i32);
    if tgid <= 0 || tid <= 0 {
        return Err(Errno::EINVAL);
    }
    let t = process::get(tid as Pid).filter(|_| tgid == tid).ok_or(Errno::ESRCH)?;
    let s = signal_number(a[2])?;
    send_to(&t, s, sig::SI_TKILL, c.proc.pid()).map(|()| 0)
}

/// `tkill(tid, sig)` (musl's `raise`).
pub fn tkill(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let tid = a[0] as i32;
    if tid <= 0 {
        return Err(Errno::EINVAL);
    }
    let t = process::get(tid as Pid).ok_or(Errno::ESRCH)?;
    let s = signal_number(a[1])?;
    send_to(&t, s, sig::SI_TKILL, c.proc.pid()).map(|()| 0)
}

/// Sleeps until a signal runs a handler or kills; then EINTR (restart if
/// none ran, `ERESTARTNOHAND`).
fn sleep_for_signal(p: &Process) -> Errno {
    p.events.wait_until(|_, _| p.signal_pending().then_some(()));
    Errno::ERESTARTNOHAND
}

/// `pause()`.
pub fn pause(c: &mut Ctx<'_>, _: [u64; 6]) -> Result<u64, Errno> {
    Err(sleep_for_signal(&c.proc))
}

/// `rt_sigsuspend(mask, sigsetsize)`: waits with `mask` as the blocked
/// mask; the handler runs with it, and the old mask comes back after.
pub fn rt_sigsuspend(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    request::sigsetsize(a[1])?;
    let mask: SigSet = read_u64(a[0])?;
    c.proc.signals.lock().suspend(mask);
    Err(sleep_for_signal(&c.proc))
}

/// `rt_sigtimedwait(set, info, timeout, sigsetsize)`: takes a pending
/// signal of `set` (normally blocked) without running its handler and
/// returns its number (its `siginfo` to `info`); EAGAIN when `timeout`
/// passes first, EINTR when another signal runs a handler.
pub fn rt_sigtimedwait(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    request::sigsetsize(a[3])?;
    let set: SigSet = read_u64(a[0])?;
    let timeout = if a[2] != 0 {
        let t = Timespec::decode(&read_user_array::<{ Timespec::SIZE }>(a[2])?);
        Some(t.to_ns().ok_or(Errno::EINVAL)?)
    } else {
        None
    };
    let p = &c.proc;
    let check = || -> Option<Result<Siginfo, Errno>> {
        if let Some(info) = p.signals.lock().take_one_of(set) {
            return Some(Ok(info));
        }
        p.signal_pending().then_some(Err(Errno::EINTR))
    };
    let got = match timeout {
        None => p.events.wait_until(|_, _| check()),
        Some(ns) => {
            let deadline = super::time::monotonic_ns().saturating_add(ns);
            super::time::wait_until_deadline(p, deadline, check).unwrap_or(Err(Errno::EAGAIN))
        }
    }?;
    if a[1] != 0 {
        write_user(a[1], &got.encode())?;
    }
    Ok(u64::from(got.signo))
}
