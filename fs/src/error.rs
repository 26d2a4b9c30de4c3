//! The one error type of the file system.

use core::fmt;

use fsdax_pmem_api::MediaError;

/// Every failure the file system reports. Small and `Copy`, like an errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError {
    /// No such file or directory (ENOENT).
    NotFound,
    /// The name already exists (EEXIST).
    Exists,
    /// A directory was expected (ENOTDIR).
    NotDir,
    /// A regular file was expected (EISDIR).
    IsDir,
    /// The directory is not empty (ENOTEMPTY).
    NotEmpty,
    /// Out of data blocks or metadata space (ENOSPC).
    NoSpace,
    /// Bad argument: unaligned reflink range, rename into own subtree, ...
    Invalid,
    /// A name longer than [`crate::MAX_NAME`] (ENAMETOOLONG).
    NameTooLong,
    /// Offset or size beyond [`crate::MAX_FILE_SIZE`] (EFBIG).
    TooBig,
    /// The file system is mounted read-only or was shut down (EROFS).
    ReadOnly,
    /// Poisoned media at this device byte offset (EIO).
    Poisoned {
        /// Device byte offset of the first bad byte.
        offset: u64,
    },
    /// The device refused an access for a reason other than poison (out of
    /// range, busy): EIO, and a bug or a device problem, never poison.
    Media(MediaError),
    /// The image is not an fsdax image (no superblock).
    NotFsdax,
    /// An fsdax image of another format version.
    Unsupported {
        /// The version on the media.
        version: u32,
    },
    /// Not enough memory for the request or for the metadata of the image
    /// (ENOMEM).
    NoMemory,
    /// A copy to or from the caller's memory faulted (EFAULT).
    Fault,
    /// On-media metadata failed a checksum or a consistency check.
    Corrupt(Corruption),
    /// `dedupe_range`: the two ranges differ (FILE_DEDUPE_RANGE_DIFFERS).
    Differs,
}

/// What was found corrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The superblock (and its backup).
    Superblock,
    /// Checkpoint header or section checksum.
    Checksum,
    /// A structure that does not parse (truncated, bad tag, bad length).
    Format,
    /// An inode, extent or directory entry that breaks an invariant.
    Inode,
    /// Allocation, reverse map or reference counts disagree.
    Space,
    /// The directory tree (loops, unreachable directories).
    Tree,
    /// A committed log record that cannot be applied.
    Log,
}

/// One sentence per error, with the errno a POSIX caller would see.
impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::NotFound => f.write_str("no such file or directory (ENOENT)"),
            FsError::Exists => f.write_str("the name already exists (EEXIST)"),
            FsError::NotDir => f.write_str("not a directory (ENOTDIR)"),
            FsError::IsDir => f.write_str("is a directory (EISDIR)"),
            FsError::NotEmpty => f.write_str("the directory is not empty (ENOTEMPTY)"),
            FsError::NoSpace => f.write_str("no space left: data blocks or metadata space ran out (ENOSPC)"),
            FsError::Invalid => f.write_str("invalid argument (EINVAL)"),
            FsError::NameTooLong => write!(f, "a name is longer than {} bytes (ENAMETOOLONG)", crate::MAX_NAME),
            FsError::TooBig => f.write_str("offset or size beyond the largest file, 4 PiB (EFBIG)"),
            FsError::ReadOnly => f.write_str("the file system is read-only (EROFS)"),
            FsError::Poisoned { offset } => write!(f, "media error (poison) at device offset {offset:#x} (EIO)"),
            FsError::Media(e) => write!(f, "device error: {e} (EIO)"),
            FsError::NotFsdax => f.write_str("no fsdax file system (unformatted, or another format)"),
            FsError::Unsupported { version } => write!(
                f,
                "unsupported format version {version} (this fsdax writes version {}): copy the files out with \
                 the fsdax that wrote it, then format again with `mkfs --force`",
                crate::format::VERSION
            ),
            FsError::NoMemory => f.write_str("not enough memory (ENOMEM)"),
            FsError::Fault => f.write_str("bad address (EFAULT)"),
            FsError::Corrupt(c) => write!(f, "the file system is corrupt: {c}"),
            FsError::Differs => f.write_str("the ranges differ, nothing shared (dedupe)"),
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Corruption::Superblock => "the superblock is damaged",
            Corruption::Checksum => "a checkpoint fails its checksum",
            Corruption::Format => "a metadata structure does not parse",
            Corruption::Inode => "an inode, extent or directory entry breaks an invariant",
            Corruption::Space => "allocation, reverse map and reference counts disagree",
            Corruption::Tree => "the directory tree is broken",
            Corruption::Log => "the log cannot be replayed consistently",
        })
    }
}

impl FsError {
    /// Is this a failed media access (EIO: poison or a device error)?
    pub fn is_media(&self) -> bool {
        matches!(self, FsError::Poisoned { .. } | FsError::Media(_))
    }
}

impl From<MediaError> for FsError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::Poisoned(r) => FsError::Poisoned { offset: r.start() },
            other => FsError::Media(other),
        }
    }
}

/// Result with [`FsError`].
pub type Result<T> = core::result::Result<T, FsError>;

/// Shorthand used by the parsers.
pub(crate) fn corrupt<T>(c: Corruption) -> Result<T> {
    Err(FsError::Corrupt(c))
}
