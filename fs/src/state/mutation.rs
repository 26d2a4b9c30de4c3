//! [`Mutation`]: one metadata change, and its log encoding.

use alloc::vec::Vec;

use super::{FileKind, Ino};
use crate::codec::{Dec, Enc};
use crate::error::{corrupt, Corruption, Result};

/// One metadata change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Create an inode (not yet linked).
    InodeAlloc {
        /// New inode number.
        ino: Ino,
        /// Kind.
        kind: FileKind,
    },
    /// Delete an unlinked, empty inode.
    InodeFree {
        /// Inode.
        ino: Ino,
    },
    /// Set a file's size.
    SetSize {
        /// Inode.
        ino: Ino,
        /// New size in bytes.
        size: u64,
    },
    /// Map `[fblk, fblk + len)` (unmapped) to `[pblk, pblk + len)`: fresh
    /// blocks come from the free set, otherwise the extent gains an owner.
    Map {
        /// Inode.
        ino: Ino,
        /// First file block.
        fblk: u64,
        /// First physical block.
        pblk: u64,
        /// Length in blocks.
        len: u64,
        /// Blocks are newly allocated (else shared with existing owners).
        fresh: bool,
    },
    /// Unmap `[fblk, fblk + len)`; blocks whose count drops to zero are freed.
    Unmap {
        /// Inode.
        ino: Ino,
        /// First file block.
        fblk: u64,
        /// Length in blocks.
        len: u64,
    },
    /// Add a directory entry.
    DirAdd {
        /// Directory.
        dir: Ino,
        /// Target inode.
        ino: Ino,
        /// Name.
        name: Vec<u8>,
    },
    /// Remove a directory entry.
    DirRemove {
        /// Directory.
        dir: Ino,
        /// Name.
        name: Vec<u8>,
    },
    /// Record bad blocks (persistent bad-block list).
    BadAdd {
        /// First block.
        pblk: u64,
        /// Length.
        len: u64,
    },
    /// Forget bad blocks (after a recovery write cleared them).
    BadRemove {
        /// First block.
        pblk: u64,
        /// Length.
        len: u64,
    },
    /// Count one memory-failure event on the device.
    MemoryFailure,
}

impl Mutation {
    /// Appends the encoding; `false` (nothing appended) if memory ran out.
    pub(crate) fn encode_fallible(&self, e: &mut Enc) -> bool {
        let name = match self {
            Mutation::DirAdd { name, .. } | Mutation::DirRemove { name, .. } => name.len(),
            _ => 0,
        };
        if e.buf.try_reserve(64 + name).is_err() {
            return false;
        }
        self.encode(e);
        true
    }

    /// Appends the encoding.
    pub(crate) fn encode(&self, e: &mut Enc) {
        match self {
            Mutation::InodeAlloc { ino, kind } => {
                e.u8(1);
                e.u64(*ino);
                e.u8(kind.code());
            }
            Mutation::InodeFree { ino } => {
                e.u8(2);
                e.u64(*ino);
            }
            Mutation::SetSize { ino, size } => {
                e.u8(3);
                e.u64(*ino);
                e.u64(*size);
            }
            Mutation::Map { ino, fblk, pblk, len, fresh } => {
                e.u8(if *fresh { 4 } else { 5 });
                e.u64(*ino);
                e.u64(*fblk);
                e.u64(*pblk);
                e.u64(*len);
            }
            Mutation::Unmap { ino, fblk, len } => {
                e.u8(6);
                e.u64(*ino);
                e.u64(*fblk);
                e.u64(*len);
            }
            Mutation::DirAdd { dir, ino, name } => {
                e.u8(7);
                e.u64(*dir);
                e.u64(*ino);
                e.u16(name.len() as u16);
                e.bytes(name);
            }
            Mutation::DirRemove { dir, name } => {
                e.u8(8);
                e.u64(*dir);
                e.u16(name.len() as u16);
                e.bytes(name);
            }
            Mutation::BadAdd { pblk, len } => {
                e.u8(9);
                e.u64(*pblk);
                e.u64(*len);
            }
            Mutation::BadRemove { pblk, len } => {
                e.u8(10);
                e.u64(*pblk);
                e.u64(*len);
            }
            Mutation::MemoryFailure => e.u8(11),
        }
    }
    /// Decodes one mutation.
    pub(crate) fn decode(d: &mut Dec<'_>) -> Result<Self> {
        Ok(match d.u8()? {
            1 => Mutation::InodeAlloc { ino: d.u64()?, kind: FileKind::from_code(d.u8()?)? },
            2 => Mutation::InodeFree { ino: d.u64()? },
            3 => Mutation::SetSize { ino: d.u64()?, size: d.u64()? },
            t @ (4 | 5) => {
                Mutation::Map { ino: d.u64()?, fblk: d.u64()?, pblk: d.u64()?, len: d.u64()?, fresh: t == 4 }
            }
            6 => Mutation::Unmap { ino: d.u64()?, fblk: d.u64()?, len: d.u64()? },
            7 => {
                let dir = d.u64()?;
                let ino = d.u64()?;
                let n = usize::from(d.u16()?);
                Mutation::DirAdd { dir, ino, name: d.bytes(n)?.to_vec() }
            }
            8 => {
                let dir = d.u64()?;
                let n = usize::from(d.u16()?);
                Mutation::DirRemove { dir, name: d.bytes(n)?.to_vec() }
            }
            9 => Mutation::BadAdd { pblk: d.u64()?, len: d.u64()? },
            10 => Mutation::BadRemove { pblk: d.u64()?, len: d.u64()? },
            11 => Mutation::MemoryFailure,
            _ => return corrupt(Corruption::Log),
        })
    }
}
