//! The reverse map (physical range -> owners) and the persistent
//! bad-block list: what memory-failure handling asks.

use alloc::vec::Vec;

use super::{FileSystem, BS};
use crate::error::{FsError, Result};
use crate::format::*;
use crate::pmem::Pmem;
use crate::state::{Ino, Mutation};

/// What [`FileSystem::mark_bad`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadBlockReport {
    /// Every owner of the range (files, metadata), before any repair.
    pub owners: Vec<RmapRecord>,
    /// Metadata that was rewritten: fixed structures in place (recovery
    /// write), checkpoint bodies and logs elsewhere (a new checkpoint).
    pub rewritten: Vec<MetaKind>,
    /// The checkpoint generation after the repair.
    pub generation: u64,
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
        let meta = |kind, s: u64, l: u64, bad: bool| RmapRecord {
            phys: s * BS,
            len: l * BS,
            owner: RmapOwner::Metadata(kind),
            flags: RMAP_METADATA | if bad { RMAP_BAD } else { 0 },
        };
        for (kind, s) in fixed_blocks(g) {
            if s < e && s + 1 > a {
                out.push(meta(kind, s, 1, false));
            }
        }
        for (s, l, kind) in self.st.space.meta_in(a, e - a) {
            out.push(meta(kind, s, l, self.st.space.bad.overlaps(s, l)));
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
        out.sort_by_key(|r| r.phys);
        out
    }

    /// Memory-failure events recorded on this device since mkfs (the
    /// persistent counter: body section 9, mutation 11).
    pub fn memory_failures(&self) -> u64 {
        self.st.mf_events
    }

    /// Counts one memory-failure event, durably (one transaction).
    pub fn count_memory_failure(&mut self) -> Result<()> {
        if self.ro {
            return Err(FsError::ReadOnly);
        }
        self.begin()?;
        self.push(Mutation::MemoryFailure)?;
        self.commit()
    }

    /// Records that device bytes `[phys, phys + len)` are poisoned (a
    /// memory failure) and returns their owners. Data blocks join the
    /// persistent bad-block list (whole blocks; free ones are never
    /// allocated again until cleared). Metadata is repaired at once from
    /// the state in memory: a superblock or header copy is rewritten in
    /// place with a recovery write; a checkpoint body or log copy is
    /// rewritten elsewhere by a new checkpoint, and its blocks stay bad.
    /// An error means the damage could not be repaired and the file system
    /// shut down read-only.
    pub fn mark_bad(&mut self, phys: u64, len: u64) -> Result<BadBlockReport> {
        let g = self.sb.geo;
        let end = phys.checked_add(len).ok_or(FsError::Invalid)?.min(g.total_blocks * BS);
        if len == 0 || phys >= end {
            return Err(FsError::Invalid);
        }
        let owners = self.rmap_query(phys, end - phys);
        if self.ro {
            return Err(FsError::ReadOnly);
        }
        let (a, e) = (phys / BS, end.div_ceil(BS));
        let mut rewritten = Vec::new();
        for (kind, blk) in fixed_blocks(&g) {
            if blk < a || blk >= e {
                continue;
            }
            let r = match kind {
                MetaKind::Superblock => self.write_superblock(0),
                MetaKind::BackupSuperblock => self.write_superblock(1),
                MetaKind::Header(c) => {
                    let enc = self.hdr.encode();
                    self.write_header_page(c, &enc)
                }
                _ => Ok(()),
            };
            if let Err(err) = r {
                self.shut_down(err);
                return Err(err);
            }
            rewritten.push(kind);
        }
        let (da, de) = (a.max(g.data_start), e.min(g.data_end()));
        if de > da {
            let hit: Vec<MetaKind> = self.st.space.meta_in(da, de - da).into_iter().map(|x| x.2).collect();
            if hit.is_empty() {
                self.begin()?;
                self.shrinking();
                self.push(Mutation::BadAdd { pblk: da, len: de - da })?;
                self.commit()?;
            } else {
                self.note_meta_poison(da * BS, (de - da) * BS);
                self.info.relocations += 1;
                if let Err(err) = self.write_checkpoint() {
                    self.shut_down(err);
                    return Err(err);
                }
                rewritten.extend(hit);
            }
        }
        // File owners as they are now (flagged bad); metadata owners as they
        // were when the poison hit (relocated since).
        let mut now: Vec<RmapRecord> = self
            .rmap_query(phys, end - phys)
            .into_iter()
            .filter(|r| matches!(r.owner, RmapOwner::File { .. }))
            .collect();
        now.extend(owners.into_iter().filter(|r| matches!(r.owner, RmapOwner::Metadata(_))));
        now.sort_by_key(|r| r.phys);
        Ok(BadBlockReport { owners: now, rewritten, generation: self.gen })
    }

    /// Rewrites header copy `copy` as a whole page (recovery write).
    fn write_header_page(&mut self, copy: u8, enc: &[u8]) -> Result<()> {
        let mut page = alloc::vec![0u8; BS as usize];
        page[..enc.len()].copy_from_slice(enc);
        self.pm.recovery_write(self.sb.geo.header_block(copy) * BS, &page)?;
        Ok(())
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

/// The fixed metadata blocks: superblock, header copies, backup.
pub(super) fn fixed_blocks(g: &Geometry) -> [(MetaKind, u64); 4] {
    [
        (MetaKind::Superblock, 0),
        (MetaKind::Header(0), g.header_block(0)),
        (MetaKind::Header(1), g.header_block(1)),
        (MetaKind::BackupSuperblock, g.backup_sb_block()),
    ]
}
