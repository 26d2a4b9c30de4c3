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
    /// The image is not a (supported) fsdax image.
    NotFsdax,
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

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::Poisoned { offset } => write!(f, "media error (poison) at byte {offset:#x}"),
            FsError::Corrupt(c) => write!(f, "corrupt file system: {c:?}"),
            FsError::Media(e) => write!(f, "device error: {e}"),
            other => write!(f, "{other:?}"),
        }
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
