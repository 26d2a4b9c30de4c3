//! File descriptors: a process's table of open file descriptions.
//!
//! An open file description ([`OpenFile`]) is what `dup` and `vfork`
//! share: its kind, its status flags and, for files of the file system,
//! its offset. The table ([`FdTable`], `fsdax_kcore::fdtable`) maps small
//! integers to descriptions, with the close-on-exec flag per descriptor.
//! The kinds: the console's (fd 0 reads console input, 1 and 2 write to the
//! console), pipes (musl's `posix_spawn` reports a failed `execve` through a
//! close-on-exec pipe), regular files and directories of the mounted file
//! system ([`crate::vfs::file`]), and `/dev/null`.
//!
//! Dropping the last reference to a description of a regular file may end
//! the file's hold in the file system (and delete it if it was unlinked),
//! which takes the file system's lock: so descriptions are dropped outside
//! the table's lock (the table hands back what it closes).

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, Ordering};

use fsdax_abi::linux::general as g;
pub use fsdax_kcore::fdtable::MAX_FDS;

use crate::sync::WaitQueue;
use crate::vfs::file::{Directory, RegularFile};
use crate::vfs::proc::ProcFile;

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
    /// A regular file of the mounted file system.
    File(RegularFile),
    /// A directory of the mounted file system.
    Dir(Directory),
    /// `/dev/null`: reads end at once, writes are discarded.
    Null,
    /// A `/proc` file (`/proc/self/pagemap`, `/proc/iomem`): read-only.
    Proc(ProcFile),
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
pub type Fd = fsdax_kcore::fdtable::Fd<Arc<OpenFile>>;

/// A process's descriptors.
pub type FdTable = fsdax_kcore::fdtable::FdTable<Arc<OpenFile>>;

/// 0 = console input, 1 and 2 = console output (one description: 1 and 2
/// share it, as a shell's `2>&1` would).
pub fn console_table() -> FdTable {
    let input = OpenFile::new(FileKind::ConsoleIn, g::O_RDONLY);
    let output = OpenFile::new(FileKind::ConsoleOut, g::O_WRONLY);
    FdTable::with([input, Arc::clone(&output), output])
}
