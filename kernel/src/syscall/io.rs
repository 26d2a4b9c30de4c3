//! Descriptor system calls: `read`, `write`, `readv`, `writev`, `poll`,
//! `close`, `fcntl`, `dup`, `dup2`, `dup3`, `pipe`, `pipe2`, on every kind
//! of description (console, pipes, files and directories of the file
//! system; the positional and file-only calls are in `file`).

use alloc::sync::Arc;

use fsdax_abi::linux::general as g;
use fsdax_abi::wire::{Iovec, PollFd};
use fsdax_abi::{signal as sig, Errno};
use fsdax_hal::uaccess;

use super::{read_user, write_user, Ctx};
use crate::process::console;
use crate::process::fd::{self, Fd, FileKind, OpenFile, PIPE_CAPACITY};
use crate::vfs::file::{read_at, write_at, WriteAt};

/// Most iovec entries (`UIO_MAXIOV`).
const IOV_MAX: u64 = 1024;
/// Bytes moved through the kernel per chunk.
const CHUNK: usize = 4096;

/// The description behind `fd` (EBADF), taken out of the table.
pub(super) fn file(c: &Ctx<'_>, fd: u64) -> Result<Arc<OpenFile>, Errno> {
    Ok(Arc::clone(&c.proc.fds.lock().get(fd)?.file))
}

/// Writes `len` bytes from user memory at `buf` to `f`.
fn write_to(c: &Ctx<'_>, f: &OpenFile, buf: u64, len: u64) -> Result<u64, Errno> {
    let s = f.status();
    if s & g::O_PATH != 0 || !matches!(s & g::O_ACCMODE, g::O_WRONLY | g::O_RDWR) {
        return Err(Errno::EBADF);
    }
    let nonblock = s & g::O_NONBLOCK != 0;
    match &f.kind {
        FileKind::Pipe(end) => {
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(CHUNK as u64) as usize;
                let mut chunk = [0u8; CHUNK];
                uaccess::copy_from_user(&mut chunk[..n], buf + done).map_err(|_| Errno::EFAULT)?;
                let mut put = 0;
                while put < n {
                    let r = end.pipe.wait_until(|p, _| {
                        if p.readers == 0 {
                            return Some(Err(Errno::EPIPE));
                        }
                        let room = PIPE_CAPACITY - p.bytes.len();
                        if room > 0 {
                            let k = room.min(n - put);
                            p.bytes.extend(&chunk[put..put + k]);
                            return Some(Ok(k));
                        }
                        if nonblock {
                            return Some(Err(Errno::EAGAIN));
                        }
                        if c.proc.signal_pending() {
                            return Some(Err(Errno::ERESTARTSYS));
                        }
                        None
                    });
                    match r {
                        Ok(k) => put += k,
                        Err(e) => {
                            if e == Errno::EPIPE {
                                // Linux sends SIGPIPE too (default: the
                                // writer dies; ignored: only EPIPE).
                                let _ = c.proc.send(sig::kill_info(sig::SIGPIPE, sig::SI_USER, c.proc.pid() as u32));
                            }
                            if done + put as u64 == 0 {
                                return Err(e);
                            }
                            return Ok(done + put as u64);
                        }
                    }
                    end.pipe.update_and_notify(true, |_| ());
                }
                done += n as u64;
            }
            Ok(done)
        }
        FileKind::File(rf) => {
            let mut pos = rf.pos.lock();
            let at = if f.status() & g::O_APPEND != 0 { WriteAt::End } else { WriteAt::Offset(*pos) };
            let (n, end) = write_at(&c.proc, &rf.inode, buf, len, at)?;
            if n > 0 {
                *pos = end;
            }
            Ok(n)
        }
        FileKind::Dir(_) => Err(Errno::EISDIR),
        FileKind::Null => Ok(len),
        FileKind::Device(d) => {
            let mut pos = d.pos.lock();
            let n = d.raw.write_at(buf, len, *pos)?;
            *pos += n;
            Ok(n)
        }
        FileKind::Proc(_) => Err(Errno::EBADF),
        FileKind::ConsoleOut | FileKind::ConsoleIn => {
            let mut chunk = [0u8; CHUNK];
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(CHUNK as u64) as usize;
                if let Err(e) = uaccess::copy_from_user(&mut chunk[..n], buf + done) {
                    console::write(&chunk[..e.copied]);
                    done += e.copied as u64;
                    return if done > 0 { Ok(done) } else { Err(Errno::EFAULT) };
                }
                console::write(&chunk[..n]);
                done += n as u64;
            }
            Ok(done)
        }
    }
}

/// Reads up to `len` bytes from `f` into user memory at `buf`.
fn read_from(c: &Ctx<'_>, f: &OpenFile, buf: u64, len: u64) -> Result<u64, Errno> {
    let s = f.status();
    if s & g::O_PATH != 0 || !matches!(s & g::O_ACCMODE, g::O_RDONLY | g::O_RDWR) {
        return Err(Errno::EBADF);
    }
    if !uaccess::user_range(buf, len as usize) {
        return Err(Errno::EFAULT);
    }
    if len == 0 {
        return Ok(0);
    }
    let nonblock = s & g::O_NONBLOCK != 0;
    match &f.kind {
        FileKind::Pipe(end) => {
            let got = end.pipe.wait_until(|p, _| {
                if !p.bytes.is_empty() {
                    let n = p.bytes.len().min(len as usize);
                    return Some(Ok(p.bytes.drain(..n).collect::<alloc::vec::Vec<u8>>()));
                }
                if p.writers == 0 {
                    return Some(Ok(alloc::vec::Vec::new()));
                }
                if nonblock {
                    return Some(Err(Errno::EAGAIN));
                }
                if c.proc.signal_pending() {
                    return Some(Err(Errno::ERESTARTSYS));
                }
                None
            })?;
            end.pipe.update_and_notify(true, |_| ());
            write_user(buf, &got)?;
            Ok(got.len() as u64)
        }
        FileKind::File(rf) => {
            let mut pos = rf.pos.lock();
            let n = read_at(&c.proc, &rf.inode, buf, len, *pos)?;
            *pos += n;
            Ok(n)
        }
        FileKind::Dir(_) => Err(Errno::EISDIR),
        FileKind::Null => Ok(0),
        FileKind::Device(d) => {
            let mut pos = d.pos.lock();
            let n = d.raw.read_at(&c.proc, buf, len, *pos)?;
            *pos += n;
            Ok(n)
        }
        FileKind::Proc(pf) => {
            let mut pos = pf.pos.lock();
            let bytes = crate::vfs::proc::read(&pf.kind, *pos, len)?;
            write_user(buf, &bytes)?;
            *pos += bytes.len() as u64;
            Ok(bytes.len() as u64)
        }
        FileKind::ConsoleIn | FileKind::ConsoleOut => {
            let me = c.proc.pid();
            let got = console::INPUT.wait_until(|i, _| {
                if i.foreground != Some(me) {
                    return Some(Ok(alloc::vec::Vec::new()));
                }
                if !i.bytes.is_empty() {
                    let n = i.bytes.len().min(len as usize);
                    // Up to and including the first newline, as a terminal
                    // in line mode hands out a line.
                    let n = i.bytes.iter().take(n).position(|&b| b == b'\n').map_or(n, |p| p + 1);
                    return Some(Ok(i.bytes.drain(..n).collect()));
                }
                if c.proc.signal_pending() {
                    return Some(Err(Errno::ERESTARTSYS));
                }
                None
            })?;
            write_user(buf, &got)?;
            Ok(got.len() as u64)
        }
    }
}

/// `read(fd, buf, count)`.
pub fn read(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    read_from(c, &f, a[1], a[2])
}

/// `write(fd, buf, count)`.
pub fn write(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    write_to(c, &f, a[1], a[2])
}

/// The iovec array at `addr` (EINVAL past `IOV_MAX` entries or for a
/// length past `isize::MAX`, EFAULT).
pub(super) fn iovecs(addr: u64, count: u64) -> Result<alloc::vec::Vec<Iovec>, Errno> {
    if count > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    let raw = read_user(addr, count as usize * Iovec::SIZE)?;
    let v: alloc::vec::Vec<Iovec> = raw.chunks(Iovec::SIZE).map(Iovec::decode).collect();
    if v.iter().any(|i| i.len > isize::MAX as u64) {
        return Err(Errno::EINVAL);
    }
    Ok(v)
}

/// Moves the buffers `vs` in order with `op` (given the buffer and the
/// bytes moved so far), as every vectored call does: empty buffers are
/// skipped; a short transfer ends the call, and so does any transfer when
/// `one_only`; an error ends it too and is the result only if nothing moved
/// before it (otherwise the bytes moved are).
pub(super) fn each_iovec(
    vs: &[Iovec],
    one_only: bool,
    mut op: impl FnMut(&Iovec, u64) -> Result<u64, Errno>,
) -> Result<u64, Errno> {
    let mut total = 0u64;
    for v in vs.iter().filter(|v| v.len > 0) {
        match op(v, total) {
            Ok(n) => {
                total += n;
                if n < v.len || one_only {
                    break;
                }
            }
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(total)
}

/// `writev(fd, iov, iovcnt)`.
pub fn writev(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    let vs = iovecs(a[1], a[2])?;
    if let Some(n) = console_writev(&f, &vs) {
        return n;
    }
    each_iovec(&vs, false, |v, _| write_to(c, &f, v.base, v.len))
}

/// A console `writev` of at most [`CHUNK`] bytes goes out as one piece, as
/// a terminal write does on Linux (stdio writes a line as two buffers: the
/// console's own echo must not land between them). None: not the console,
/// or too long (then buffer by buffer).
fn console_writev(f: &OpenFile, vs: &[Iovec]) -> Option<Result<u64, Errno>> {
    let s = f.status();
    let writable = s & g::O_PATH == 0 && matches!(s & g::O_ACCMODE, g::O_WRONLY | g::O_RDWR);
    if !matches!(f.kind, FileKind::ConsoleOut | FileKind::ConsoleIn) || !writable {
        return None;
    }
    let total = vs.iter().try_fold(0u64, |t, v| t.checked_add(v.len)).filter(|&t| t <= CHUNK as u64)?;
    let mut buf = [0u8; CHUNK];
    let mut at = 0usize;
    for v in vs {
        let n = v.len as usize;
        if uaccess::copy_from_user(&mut buf[at..at + n], v.base).is_err() {
            // A bad buffer: the buffer-by-buffer path reports what it can.
            return None;
        }
        at += n;
    }
    console::write(&buf[..total as usize]);
    Some(Ok(total))
}

/// `readv(fd, iov, iovcnt)`: a file fills the buffers in order; one
/// console or pipe read fills the first ones (they hand out what is there,
/// a line at a time).
pub fn readv(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let f = file(c, a[0])?;
    let one_only = !matches!(f.kind, FileKind::File(_));
    each_iovec(&iovecs(a[1], a[2])?, one_only, |v, _| read_from(c, &f, v.base, v.len))
}

/// `poll(fds, nfds, timeout_ms)`: console output is always writable;
/// console input is readable when bytes wait (or at end-of-file, for a
/// process not in the foreground); pipes as their buffers say; files are
/// always ready; a descriptor that is not open is POLLNVAL.
pub fn poll(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let n = a[1];
    if n > super::super::process::fd::MAX_FDS as u64 {
        return Err(Errno::EINVAL);
    }
    let raw = read_user(a[0], n as usize * PollFd::SIZE)?;
    let mut fds: alloc::vec::Vec<PollFd> = raw.chunks(PollFd::SIZE).map(PollFd::decode).collect();
    let timeout = a[2] as i32;
    let deadline = crate::time::uptime_ns().saturating_add(u64::from(timeout.max(0) as u32) * 1_000_000);
    loop {
        let mut ready = 0;
        for p in &mut fds {
            p.revents = 0;
            if p.fd < 0 {
                continue;
            }
            let Ok(f) = file(c, p.fd as u64) else {
                p.revents = g::POLLNVAL as u16;
                ready += 1;
                continue;
            };
            let (readable, writable) = match &f.kind {
                FileKind::ConsoleIn => {
                    (console::INPUT.peek(|i| i.foreground != Some(c.proc.pid()) || !i.bytes.is_empty()), false)
                }
                FileKind::ConsoleOut => (false, true),
                FileKind::Pipe(end) if end.write => {
                    (false, end.pipe.peek(|p| p.readers == 0 || p.bytes.len() < PIPE_CAPACITY))
                }
                FileKind::Pipe(end) => (end.pipe.peek(|p| !p.bytes.is_empty() || p.writers == 0), false),
                // Files never block (Linux: always ready).
                FileKind::File(_) | FileKind::Null | FileKind::Proc(_) | FileKind::Device(_) => (true, true),
                FileKind::Dir(_) => (true, false),
            };
            let mut ev = 0u16;
            if readable {
                ev |= g::POLLIN as u16;
            }
            if writable {
                ev |= g::POLLOUT as u16;
            }
            p.revents = ev & (p.events | g::POLLERR as u16 | g::POLLHUP as u16);
            if p.revents != 0 {
                ready += 1;
            }
        }
        let expired = timeout == 0 || (timeout > 0 && crate::time::uptime_ns() >= deadline);
        if ready > 0 || expired {
            let out: alloc::vec::Vec<u8> = fds.iter().flat_map(|p| p.encode()).collect();
            write_user(a[0], &out)?;
            return Ok(ready);
        }
        if c.proc.signal_pending() {
            return Err(Errno::ERESTARTNOHAND);
        }
        crate::task::sleep_ticks(1);
    }
}

/// `pipe2(fds, flags)`: O_CLOEXEC and O_NONBLOCK (kept for F_GETFL).
pub fn pipe2(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    if a[1] & !u64::from(g::O_CLOEXEC | g::O_NONBLOCK | g::O_DIRECT) != 0 {
        return Err(Errno::EINVAL);
    }
    let cloexec = a[1] & u64::from(g::O_CLOEXEC) != 0;
    let (r, w) = fd::pipe(a[1] as u32 & g::O_NONBLOCK);
    let mut fds = c.proc.fds.lock();
    let rfd = fds.insert_lowest(0, Fd { file: r, cloexec })?;
    let wfd = match fds.insert_lowest(0, Fd { file: w, cloexec }) {
        Ok(w) => w,
        Err(e) => {
            let _ = fds.close(rfd);
            return Err(e);
        }
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(rfd as u32).to_le_bytes());
    out[4..].copy_from_slice(&(wfd as u32).to_le_bytes());
    if let Err(e) = write_user(a[0], &out) {
        let _ = fds.close(rfd);
        let _ = fds.close(wfd);
        return Err(e);
    }
    Ok(0)
}

/// `pipe(fds)`.
pub fn pipe(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    pipe2(c, [a[0], 0, 0, 0, 0, 0])
}

/// `close(fd)`.
pub fn close(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let old = c.proc.fds.lock().close(a[0])?;
    drop(old);
    Ok(0)
}

/// `dup(fd)`.
pub fn dup(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let mut fds = c.proc.fds.lock();
    let f = Arc::clone(&fds.get(a[0])?.file);
    fds.insert_lowest(0, Fd { file: f, cloexec: false })
}

fn dup_to(c: &Ctx<'_>, old: u64, new: u64, cloexec: bool) -> Result<u64, Errno> {
    let mut fds = c.proc.fds.lock();
    let f = Arc::clone(&fds.get(old)?.file);
    let replaced = fds.replace(new, Fd { file: f, cloexec })?;
    drop(fds);
    drop(replaced);
    Ok(new)
}

/// `dup2(old, new)`.
pub fn dup2(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    if a[0] == a[1] {
        c.proc.fds.lock().get(a[0])?;
        return Ok(a[1]);
    }
    dup_to(c, a[0], a[1], false)
}

/// `dup3(old, new, flags)`.
pub fn dup3(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let cloexec = fsdax_abi::request::dup3_flags(a[2])?;
    if a[0] == a[1] {
        return Err(Errno::EINVAL);
    }
    dup_to(c, a[0], a[1], cloexec)
}

/// `fcntl(fd, cmd, arg)`: descriptor flags, status flags, duplication.
pub fn fcntl(c: &mut Ctx<'_>, a: [u64; 6]) -> Result<u64, Errno> {
    let mut fds = c.proc.fds.lock();
    let entry = fds.get(a[0])?.clone();
    match a[1] as u32 {
        g::F_GETFD => Ok(u64::from(entry.cloexec) * u64::from(g::FD_CLOEXEC)),
        g::F_SETFD => fds.set_cloexec(a[0], a[2] & u64::from(g::FD_CLOEXEC) != 0).map(|()| 0),
        g::F_GETFL => Ok(u64::from(entry.file.status())),
        g::F_SETFL => {
            // Only O_APPEND and O_NONBLOCK may change (files append; pipes
            // do not wait; the console keeps them for F_GETFL).
            let changeable = g::O_APPEND | g::O_NONBLOCK;
            let old = entry.file.status();
            let new = (old & !changeable) | (a[2] as u32 & changeable);
            entry.file.status.store(new, core::sync::atomic::Ordering::Relaxed);
            Ok(0)
        }
        g::F_DUPFD | g::F_DUPFD_CLOEXEC => {
            fds.insert_lowest(a[2], Fd { file: entry.file, cloexec: a[1] as u32 == g::F_DUPFD_CLOEXEC })
        }
        _ => Err(Errno::EINVAL),
    }
}
