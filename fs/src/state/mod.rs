//! The metadata state (kept in DRAM, persisted as checkpoint + redo log),
//! the mutations that change it, and their encoding.
//!
//! Every change of metadata is a [`Mutation`]. A file-system operation is a
//! transaction: a list of mutations committed as one log record. The same
//! [`State::apply`] runs at run time and during log replay, so replay is
//! deterministic; it checks every precondition, so a hostile record is an
//! error, never a panic.
//!
//! | module | what |
//! |---|---|
//! | `mutation` | [`Mutation`] and its encoding |
//! | `apply` | [`State::apply`], log replay, [`TxnEffects`] |
//! | `checkpoint` | checkpoint body encode/decode |
//! | `verify` | cross-structure invariants |

mod apply;
mod checkpoint;
mod mutation;
mod repair;
mod verify;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;

pub(crate) use self::apply::TxnEffects;
pub(crate) use self::checkpoint::{
    SEC_BAD, SEC_DIRENTS, SEC_FREE, SEC_INODES, SEC_META, SEC_META_EXTENTS, SEC_REFC, SEC_RMAP,
};
pub use self::mutation::Mutation;
use crate::error::{corrupt, Corruption, FsError, Result};
use crate::format::{Geometry, MAX_NAME};
use crate::space::Space;

/// Inode number.
pub type Ino = u64;

/// The root directory.
pub const ROOT_INO: Ino = 1;

/// Kind of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
}

impl core::fmt::Display for FileKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FileKind::File => "regular file",
            FileKind::Dir => "directory",
        })
    }
}

impl FileKind {
    fn code(self) -> u8 {
        match self {
            FileKind::File => 1,
            FileKind::Dir => 2,
        }
    }
    fn from_code(c: u8) -> Result<Self> {
        match c {
            1 => Ok(FileKind::File),
            2 => Ok(FileKind::Dir),
            _ => corrupt(Corruption::Inode),
        }
    }
}

/// A mapped run of a file: file block -> physical block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First physical block.
    pub pblk: u64,
    /// Length in blocks (1..=MAX_EXTENT).
    pub len: u64,
}

/// An inode in DRAM.
#[derive(Clone, Debug)]
pub(crate) struct Inode {
    pub kind: FileKind,
    pub size: u64,
    /// Directory entries naming this inode.
    pub links: u32,
    /// Directory containing this directory (0 for files and the root).
    pub parent: Ino,
    /// File block -> extent.
    pub extents: BTreeMap<u64, Extent>,
    /// Directory entries, sorted by name (a B-tree: fast at 100k entries).
    pub entries: BTreeMap<Box<[u8]>, Ino>,
    /// Number of subdirectories (for nlink).
    pub subdirs: u32,
}

impl Inode {
    fn new(kind: FileKind) -> Self {
        Inode { kind, size: 0, links: 0, parent: 0, extents: BTreeMap::new(), entries: BTreeMap::new(), subdirs: 0 }
    }
    /// The extent covering file block `f`, as (start fblk, extent).
    pub fn extent_at(&self, f: u64) -> Option<(u64, Extent)> {
        self.extents.range(..=f).next_back().map(|(&s, &e)| (s, e)).filter(|&(s, e)| s + e.len > f)
    }
}

/// Checks a directory-entry name.
pub fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > MAX_NAME {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&c| c == b'/' || c == 0) {
        return Err(FsError::Invalid);
    }
    Ok(())
}

/// All metadata.
#[derive(Clone, Debug)]
pub(crate) struct State {
    pub geo: Geometry,
    pub inodes: BTreeMap<Ino, Inode>,
    pub next_ino: Ino,
    pub space: Space,
    /// Directory entries in all directories (for the checkpoint size).
    pub dirents: u64,
    /// Bytes of all directory-entry names (for the checkpoint size).
    pub name_bytes: u64,
    /// Memory-failure events recorded on this device since mkfs (body
    /// section 9, mutation 11): a persistent counter for people.
    pub mf_events: u64,
}

fn bad<T>() -> Result<T> {
    corrupt(Corruption::Log)
}

impl State {
    /// The state of a fresh file system: an empty root, all data free.
    pub fn fresh(geo: Geometry) -> Result<Self> {
        let mut s = State {
            geo,
            inodes: BTreeMap::new(),
            next_ino: ROOT_INO + 1,
            space: Space::default(),
            dirents: 0,
            name_bytes: 0,
            mf_events: 0,
        };
        s.inodes.insert(ROOT_INO, Inode::new(FileKind::Dir));
        s.space.free.insert(geo.data_start, geo.data_blocks)?;
        Ok(s)
    }

    pub fn inode(&self, ino: Ino) -> Result<&Inode> {
        self.inodes.get(&ino).ok_or(FsError::NotFound)
    }
}
