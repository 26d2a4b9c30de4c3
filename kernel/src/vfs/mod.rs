//! Files of the mounted fsdax file system as processes see them.
//!
//! - [`inode`]: in-memory inodes ([`inode::KInode`]), one per open regular
//!   file, in a table keyed by inode number; they hold the file so that an
//!   unlinked file lives until its last close.
//! - [`file`]: open regular files and directories (the descriptions behind
//!   descriptors) and the read and write paths, which copy once between
//!   user memory and persistent memory ([`copy`]).
//! - [`proc`]: `/proc/self/pagemap` and `/proc/iomem`;
//! - path resolution ([`resolve`], [`resolve_parent`]): Linux's rules
//!   (`fsdax_kcore::path`) over the mounted file system.
//!
//! Everything here runs in the calling process's task; the file system's
//! sleeping lock is the only thing it waits for (and the offset and
//! mapping locks of a file before it).

pub mod copy;
pub mod file;
pub mod inode;
pub mod proc;

use fsdax_abi::Errno;
use fsdax_fs::{FileKind, FsError, Ino};
use fsdax_kcore::path::{self, Namespace, Parent};

use crate::fsys::KernelFs;

/// The errno of a file-system error.
pub fn fs_errno(e: &FsError) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::Exists => Errno::EEXIST,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::NoSpace => Errno::ENOSPC,
        FsError::Invalid => Errno::EINVAL,
        FsError::NameTooLong => Errno::ENAMETOOLONG,
        FsError::TooBig => Errno::EFBIG,
        FsError::ReadOnly => Errno::EROFS,
        FsError::NoMemory => Errno::ENOMEM,
        FsError::Fault => Errno::EFAULT,
        FsError::Poisoned { .. }
        | FsError::Media(_)
        | FsError::Corrupt(_)
        | FsError::NotFsdax
        | FsError::Unsupported { .. }
        | FsError::Differs => Errno::EIO,
    }
}

/// The mounted file system as a namespace for path walks.
struct Ns<'a>(&'a KernelFs);

impl Namespace for Ns<'_> {
    fn root(&self) -> Ino {
        self.0.root()
    }

    fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Option<Ino>, Errno> {
        match self.0.lookup(dir, name) {
            Ok(i) => Ok(Some(i)),
            Err(FsError::NotFound) => match self.0.stat(dir) {
                Ok(st) if st.kind == FileKind::Dir => Ok(None),
                Ok(_) => Err(Errno::ENOTDIR),
                Err(e) => Err(fs_errno(&e)),
            },
            Err(e) => Err(fs_errno(&e)),
        }
    }

    fn parent(&self, dir: Ino) -> Result<Ino, Errno> {
        self.0.parent(dir).map_err(|e| fs_errno(&e))
    }

    fn is_dir(&self, ino: Ino) -> Result<bool, Errno> {
        self.0.stat(ino).map(|st| st.kind == FileKind::Dir).map_err(|e| fs_errno(&e))
    }
}

/// Resolves `path` from directory `start` (ignored for absolute paths).
pub fn resolve(fs: &KernelFs, start: Ino, path: &[u8]) -> Result<Ino, Errno> {
    path::resolve(&Ns(fs), start, path)
}

/// Walks `path` from `start` up to its last component.
pub fn resolve_parent<'p>(fs: &KernelFs, start: Ino, path: &'p [u8]) -> Result<Parent<'p>, Errno> {
    path::resolve_parent(&Ns(fs), start, path)
}

/// What the last component of `p` names now (`None`: nothing).
pub fn lookup_last(fs: &KernelFs, p: &Parent<'_>) -> Result<Option<Ino>, Errno> {
    path::lookup_last(&Ns(fs), p)
}

/// Whether `ino` is a directory.
pub fn is_dir(fs: &KernelFs, ino: Ino) -> Result<bool, Errno> {
    Ns(fs).is_dir(ino)
}
