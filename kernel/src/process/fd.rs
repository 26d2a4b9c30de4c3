//! File descriptors: a process's table of open file descriptions.
//!
//! An open file description ([`OpenFile`]) is what `dup` and `vfork`
//! share: its kind and its status flags (and, for files of the file system,
//! its offset: the file system calls add that kind). The table maps small
//! integers to descriptions, with the close-on-exec flag per descriptor.
//! Today the kinds are the console's (fd 0 reads console input, 1 and 2
//! write to the console) and pipes (musl's `posix_spawn` reports a failed
//! `execve` through a close-on-exec pipe).

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use fsdax_abi::linux::general as g;
use fsdax_abi::Errno;

use crate::sync::WaitQueue;

/// Most descriptors a process may hold (Linux's default `RLIMIT_NOFILE`).
pub const MAX_FDS: usize = 1024;

/// What an open file description refers to.
#[derive(Debug)]
pub enum FileKind {
    /// Console input (`read` gets what is typed while the process runs in
    /// the foreground).
    ConsoleIn,
    /// Console output.
    ConsoleOut,
    /// One end of a pipe.
    Pipe(PipeEnd),
}

/// Bytes a pipe holds (Linux's default pipe size).
pub const PIPE_CAPACITY: usize = 64 * 1024;

/// A pipe's buffer and how many descriptions hold each end.
#[derive(Debug, Default)]
pub struct PipeState {
    /// Bytes written and not read.
    pub bytes: VecDeque<u8>,
    /// Open read ends.
    pub readers: u32,
    /// Open write ends.
    pub writers: u32,
}

/// A pipe: its state, and the waiters for it to change.
pub type Pipe = WaitQueue<PipeState>;

/// One end of a pipe; the pipe learns when the last description of an end
/// goes away (readers see end-of-file, writers EPIPE).
#[derive(Debug)]
pub struct PipeEnd {
    /// The pipe.
    pub pipe: Arc<Pipe>,
    /// The write end (else the read end).
    pub write: bool,
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        let write = self.write;
        self.pipe.update_and_notify(true, |p| {
            if write {
                p.writers = p.writers.saturating_sub(1);
            } else {
                p.readers = p.readers.saturating_sub(1);
            }
        });
    }
}

/// A new pipe: its read end and its write end.
pub fn pipe(status: u32) -> (Arc<OpenFile>, Arc<OpenFile>) {
    let p = Arc::new(WaitQueue::new(PipeState { bytes: VecDeque::new(), readers: 1, writers: 1 }));
    let r = OpenFile::new(FileKind::Pipe(PipeEnd { pipe: Arc::clone(&p), write: false }), g::O_RDONLY | status);
    let w = OpenFile::new(FileKind::Pipe(PipeEnd { pipe: p, write: true }), g::O_WRONLY | status);
    (r, w)
}

/// An open file description.
#[derive(Debug)]
pub struct OpenFile {
    /// What it refers to.
    pub kind: FileKind,
    /// `O_*` access mode and status flags (`F_GETFL`).
    pub status: AtomicU32,
}

impl OpenFile {
    /// A description of `kind` with status flags `status`.
    pub fn new(kind: FileKind, status: u32) -> Arc<OpenFile> {
        Arc::new(OpenFile { kind, status: AtomicU32::new(status) })
    }

    /// Its status flags.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::Relaxed)
    }
}

/// One descriptor.
#[derive(Debug, Clone)]
pub struct Fd {
    /// The description (shared by `dup`s and across `vfork`).
    pub file: Arc<OpenFile>,
    /// `FD_CLOEXEC`.
    pub cloexec: bool,
}

/// A process's descriptors.
#[derive(Debug, Clone, Default)]
pub struct FdTable {
    fds: Vec<Option<Fd>>,
}

impl FdTable {
    /// 0 = console input, 1 and 2 = console output (one description each:
    /// 1 and 2 share it, as a shell's `2>&1` would).
    pub fn console() -> FdTable {
        let input = OpenFile::new(FileKind::ConsoleIn, g::O_RDONLY);
        let output = OpenFile::new(FileKind::ConsoleOut, g::O_WRONLY);
        let fd = |file: &Arc<OpenFile>| Some(Fd { file: Arc::clone(file), cloexec: false });
        FdTable { fds: alloc::vec![fd(&input), fd(&output), fd(&output)] }
    }

    /// The descriptor `fd` (EBADF if it is not open).
    pub fn get(&self, fd: u64) -> Result<&Fd, Errno> {
        usize::try_from(fd).ok().and_then(|i| self.fds.get(i)).and_then(Option::as_ref).ok_or(Errno::EBADF)
    }

    /// Sets the close-on-exec flag of `fd`.
    pub fn set_cloexec(&mut self, fd: u64, on: bool) -> Result<(), Errno> {
        let slot = usize::try_from(fd).ok().and_then(|i| self.fds.get_mut(i)).and_then(Option::as_mut);
        slot.ok_or(Errno::EBADF)?.cloexec = on;
        Ok(())
    }

    /// Installs `entry` at the lowest free descriptor at or above `from`.
    pub fn insert_lowest(&mut self, from: usize, entry: Fd) -> Result<u64, Errno> {
        let free = (from..MAX_FDS).find(|&i| self.fds.get(i).is_none_or(Option::is_none)).ok_or(Errno::EMFILE)?;
        self.place(free, entry);
        Ok(free as u64)
    }

    /// Installs `entry` at `fd`, closing what was there (`dup2`).
    pub fn replace(&mut self, fd: u64, entry: Fd) -> Result<Option<Fd>, Errno> {
        let i = usize::try_from(fd).ok().filter(|&i| i < MAX_FDS).ok_or(Errno::EBADF)?;
        let old = self.fds.get_mut(i).and_then(Option::take);
        self.place(i, entry);
        Ok(old)
    }

    fn place(&mut self, i: usize, entry: Fd) {
        if self.fds.len() <= i {
            self.fds.resize(i + 1, None);
        }
        self.fds[i] = Some(entry);
    }

    /// Closes `fd` and returns its descriptor (EBADF if not open).
    pub fn close(&mut self, fd: u64) -> Result<Fd, Errno> {
        usize::try_from(fd).ok().and_then(|i| self.fds.get_mut(i)).and_then(Option::take).ok_or(Errno::EBADF)
    }

    /// Closes every close-on-exec descriptor (`execve`).
    pub fn close_on_exec(&mut self) {
        for slot in &mut self.fds {
            if slot.as_ref().is_some_and(|f| f.cloexec) {
                *slot = None;
            }
        }
    }

    /// Closes everything (exit).
    pub fn clear(&mut self) {
        self.fds.clear();
    }
}
