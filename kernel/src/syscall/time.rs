//! Time system calls: clocks, sleeps, `sched_yield`, `getrandom`.
//!
//! `CLOCK_REALTIME` is the wall clock read from the CMOS real-time clock
//! once at boot ([`crate::time::wall_clock_at_boot`]) plus the TSC time
//! since; `CLOCK_MONOTONIC` (and `BOOTTIME`, `MONOTONIC_RAW`, the coarse
//! variants) is the TSC time since boot; the CPU-time clocks count timer
//! ticks. Sleeps have the timer's 10 ms granularity and end early (EINTR)
//! when a signal runs a handler or kills.

use fsdax_abi::wire::Timespec;
use fsdax_abi::Errno;

use super::{read_user_array, write_user, Ctx};
use crate::process::exec::random_bytes;
use crate::process::Process;

const CLOCK_REALTIME: u64 = 0;
const CLOCK_MONOTONIC: u64 = 1;
const CLOCK_PROCESS_CPUTIME_ID: u64 = 2;
const CLOCK_THREAD_CPUTIME_ID: u64 = 3;
const CLOCK_MONOTONIC_RAW: u64 = 4;
const CLOCK_REALTIME_COARSE: u64 = 5;
const CLOCK_MONOTONIC_COARSE: u64 = 6;
const CLOCK_BOOTTIME: u64 = 7;
const TIMER_ABSTIME: u64 = 1;

/// Nanoseconds since boot (TSC).
pub(super) fn monotonic_ns() -> u64 {
    crate::time::uptime_ns()
}

fn clock_ns(c: &Ctx<'_>, clock: u64) -> Result<u64, Errno> {
    Ok(match clock {
        CLOCK_REALTIME | CLOCK_REALTIME_COARSE => crate::time::wall_clock_at_boot() * 1_000_000_000 + monotonic_ns(),
        CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_MONOTONIC_COARSE | CLOCK_BOOTTIME => monotonic_ns(),
        CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => {
            let u = c.proc.usage();
            (u.utime_us + u.stime_us) * 1000
        }
        _ => return Err(Errno::EINVAL),
    })
}

/// `clock_gettime(clock, tp)`.
pub fn clock_gettime(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let ns = clock_ns(c, a[0])?;
    write_user(a[1], &Timespec::from_ns(ns).encode()).map(|()| 0)
}

fn read_timespec(addr: u64) -> Result<u64, Errno> {
    Timespec::decode(&read_user_array::<{ Timespec::SIZE }>(addr)?).to_ns().ok_or(Errno::EINVAL)
}

/// Waits on the process's event queue until `check` gives an answer
/// (Some) or the monotonic time reaches `deadline` (None). `check` runs
/// under the queue's lock, so a wake-up (a signal, a child's end) cannot
/// slip in between a check and the sleep. Timer granularity is a tick; the
/// last half tick is spun.
pub(super) fn wait_until_deadline<R>(p: &Process, deadline: u64, mut check: impl FnMut() -> Option<R>) -> Option<R> {
    let tick_ns = 1_000_000_000 / crate::time::TICK_HZ;
    loop {
        if let Some(r) = check() {
            return Some(r);
        }
        let now = monotonic_ns();
        if now >= deadline {
            return None;
        }
        let left = deadline - now;
        if left < tick_ns / 2 {
            while monotonic_ns() < deadline && !p.signals.attention() {
                core::hint::spin_loop();
            }
            continue;
        }
        let until = crate::time::ticks() + (left / tick_ns).max(1);
        if let Some(r) = p.events.wait_until_tick(until, |_, _| check()) {
            return Some(r);
        }
    }
}

/// Sleeps until the monotonic time `deadline`; Err(the time left) if a
/// signal that runs a handler or kills arrives first (EINTR: Linux does not
/// restart sleeps for `SA_RESTART`).
fn sleep_until(c: &Ctx<'_>, deadline: u64) -> Result<(), u64> {
    let p = &c.proc;
    match wait_until_deadline(p, deadline, || p.signal_pending().then_some(())) {
        None => Ok(()),
        Some(()) => Err(deadline.saturating_sub(monotonic_ns())),
    }
}

/// `nanosleep(req, rem)`.
pub fn nanosleep(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let ns = read_timespec(a[0])?;
    match sleep_until(c, monotonic_ns().saturating_add(ns)) {
        Ok(()) => Ok(0),
        Err(left) => {
            if a[1] != 0 {
                write_user(a[1], &Timespec::from_ns(left).encode())?;
            }
            Err(Errno::EINTR)
        }
    }
}

/// `clock_nanosleep(clock, flags, req, rem)`.
pub fn clock_nanosleep(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let ns = read_timespec(a[2])?;
    if a[1] & !TIMER_ABSTIME != 0 {
        return Err(Errno::EINVAL);
    }
    let now_in_clock = clock_ns(c, a[0])?;
    if matches!(a[0], CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID) {
        return Err(Errno::EINVAL);
    }
    let relative = if a[1] & TIMER_ABSTIME != 0 { ns.saturating_sub(now_in_clock) } else { ns };
    match sleep_until(c, monotonic_ns().saturating_add(relative)) {
        Ok(()) => Ok(0),
        Err(left) => {
            if a[1] & TIMER_ABSTIME == 0 && a[3] != 0 {
                write_user(a[3], &Timespec::from_ns(left).encode())?;
            }
            Err(Errno::EINTR)
        }
    }
}

/// `sched_yield`.
pub fn sched_yield(_: &mut Ctx<'_>, _: [u64; 6]) -> Result<u64, Errno> {
    crate::task::yield_now();
    Ok(0)
}

/// `getrandom(buf, len, flags)`: the CPU's generator (RDSEED/RDRAND), else
/// a TSC-seeded generator. Never blocks.
pub fn getrandom(_: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    fsdax_abi::request::getrandom_flags(a[2])?;
    let len = a[1].min(32 << 20);
    let mut done = 0u64;
    while done < len {
        let chunk = random_bytes();
        let n = (len - done).min(chunk.len() as u64);
        if let Err(e) = write_user(a[0] + done, &chunk[..n as usize]) {
            return if done > 0 { Ok(done) } else { Err(e) };
        }
        done += n;
    }
    Ok(len)
}
