//! The reverse map (physical range -> owners) and the persistent
//! bad-block list: what memory-failure handling asks.

use alloc::vec::Vec;

use super::{FileSystem, BS};
use crate::codec::Enc;
use crate::crc::crc32c;
use crate::error::{FsError, Result};
use crate::format::*;
use crate::pmem::Pmem;
use crate::state::{Ino, Mutation};

/// Kinds of metadata that own blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKind {
    /// Primary superblock.
    Superblock,
    /// Checkpoint slot A or B.
    Checkpoint(u8),
    /// Metadata log.
    Log,
    /// Backup superblock.
    BackupSuperblock,
    /// Alignment padding before the data region.
    Padding,
}

impl core::fmt::Display for MetaKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MetaKind::Superblock => f.write_str("primary superblock"),
            MetaKind::Checkpoint(s) => write!(f, "checkpoint slot {}", if *s == 0 { 'A' } else { 'B' }),
            MetaKind::Log => f.write_str("metadata log"),
            MetaKind::BackupSuperblock => f.write_str("backup superblock"),
            MetaKind::Padding => f.write_str("alignment padding"),
        }
    }
}

/// Owner of a physical range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RmapOwner {
    /// File data: inode and file byte offset of the record's start.
    File {
        /// Inode.
        ino: Ino,
        /// File byte offset corresponding to `RmapRecord::phys`.
        offset: u64,
    },
    /// Metadata.
    Metadata(MetaKind),
}

/// Reverse-map flag: the extent is shared (refcount > 1 somewhere in it).
pub const RMAP_SHARED: u32 = 1;

/// Reverse-map flag: the range contains known bad blocks.
pub const RMAP_BAD: u32 = 2;

/// Reverse-map flag: the owner is metadata.
pub const RMAP_METADATA: u32 = 4;

/// One reverse-map record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RmapRecord {
    /// Device byte offset.
    pub phys: u64,
    /// Length in bytes.
    pub len: u64,
    /// Owner.
    pub owner: RmapOwner,
    /// `RMAP_*` flags.
    pub flags: u32,
}

impl<P: Pmem> FileSystem<P> {
    /// Every owner of device bytes `[phys, phys + len)`.
    pub fn rmap_query(&self, phys: u64, len: u64) -> Vec<RmapRecord> {
        let g = &self.sb.geo;
        let a = phys / BS;
        let e = phys.saturating_add(len).div_ceil(BS).min(g.total_blocks);
        let mut out = Vec::new();
        if e <= a {
            return out;
        }
        for (kind, s, l) in meta_regions(g) {
            if s < e && s + l > a {
                out.push(RmapRecord {
                    phys: s * BS,
                    len: l * BS,
                    owner: RmapOwner::Metadata(kind),
                    flags: RMAP_METADATA,
                });
            }
        }
        for (p, l, ino, f) in self.st.space.rmap_query(a, e - a) {
            let mut flags = 0;
            if self.st.space.shared_run(p, l) != (false, l) {
                flags |= RMAP_SHARED;
            }
            if self.st.space.bad.overlaps(p, l) {
                flags |= RMAP_BAD;
            }
            out.push(RmapRecord { phys: p * BS, len: l * BS, owner: RmapOwner::File { ino, offset: f * BS }, flags });
        }
        out
    }

    /// Records `[phys, phys + len)` in the persistent bad-block list (whole
    /// blocks) and returns the owners of the range. Free bad blocks are never
    /// allocated again until cleared.
    pub fn mark_bad(&mut self, phys: u64, len: u64) -> Result<Vec<RmapRecord>> {
        let (a, n) = self.data_blocks_of(phys, len)?;
        self.begin()?;
        self.push(Mutation::BadAdd { pblk: a, len: n })?;
        self.commit()?;
        Ok(self.rmap_query(a * BS, n * BS))
    }

    /// Forgets bad blocks (whole blocks of `[phys, phys + len)`, all in the
    /// list). Blocks no file owns are rewritten with zeros first (a recovery
    /// write, which clears their poison) and return to the free space.
    /// Blocks a file owns keep their contents (after a `pmem recover`, the
    /// recovered bytes); a whole-block write of the file clears them too.
    pub fn clear_bad(&mut self, phys: u64, len: u64) -> Result<()> {
        let (a, n) = self.data_blocks_of(phys, len)?;
        if !self.st.space.bad.contains_range(a, n) {
            return Err(FsError::Invalid);
        }
        if self.ro {
            return Err(FsError::ReadOnly);
        }
        let owned = self.st.space.owned_ranges(a, n);
        const ZERO: [u8; BS as usize] = [0; BS as usize];
        for b in a..a + n {
            if !owned.iter().any(|&(s, l)| s <= b && b < s + l) {
                self.pm.recovery_write(b * BS, &ZERO)?;
            }
        }
        self.begin()?;
        self.push(Mutation::BadRemove { pblk: a, len: n })?;
        self.commit()
    }

    /// The persistent bad-block list: (device byte offset, length).
    pub fn bad_blocks(&self) -> Vec<(u64, u64)> {
        self.st.space.bad.iter().map(|(s, l)| (s * BS, l * BS)).collect()
    }

    pub(super) fn data_blocks_of(&self, phys: u64, len: u64) -> Result<(u64, u64)> {
        let a = phys / BS;
        let e = phys.checked_add(len).ok_or(FsError::Invalid)?.div_ceil(BS);
        if e <= a || !self.sb.geo.in_data(a, e - a) {
            return Err(FsError::Invalid);
        }
        Ok((a, e - a))
    }
}

pub(super) fn meta_regions(g: &Geometry) -> [(MetaKind, u64, u64); 6] {
    [
        (MetaKind::Superblock, 0, 1),
        (MetaKind::Checkpoint(0), g.ckpt_slot(0), g.ckpt_blocks),
        (MetaKind::Checkpoint(1), g.ckpt_slot(1), g.ckpt_blocks),
        (MetaKind::Log, g.log_start, g.log_blocks),
        (MetaKind::Padding, g.log_start + g.log_blocks, g.data_start - (g.log_start + g.log_blocks)),
        (MetaKind::BackupSuperblock, g.total_blocks - 1, 1),
    ]
}

fn meta_code(k: MetaKind) -> u64 {
    match k {
        MetaKind::Superblock => 1,
        MetaKind::Checkpoint(s) => 2 + u64::from(s),
        MetaKind::Log => 4,
        MetaKind::Padding => 5,
        MetaKind::BackupSuperblock => 6,
    }
}

/// Tag of the checkpoint section holding the metadata reverse-map records.
const SEC_META_RMAP: u32 = 8;

/// The reverse-map records of the static metadata regions, as a checkpoint
/// section: (pblk, len, owner kind, flags = RMAP_METADATA).
pub(super) fn meta_rmap_section(g: &Geometry) -> Vec<u8> {
    let mut e = Enc::default();
    let regs = meta_regions(g);
    for (k, s, l) in regs {
        e.u64(s);
        e.u64(l);
        e.u64(meta_code(k));
        e.u32(RMAP_METADATA);
    }
    let mut out = Enc::default();
    out.u32(SEC_META_RMAP);
    out.u64(regs.len() as u64);
    out.u64(e.buf.len() as u64);
    out.u32(crc32c(&e.buf));
    out.bytes(&e.buf);
    out.buf
}
