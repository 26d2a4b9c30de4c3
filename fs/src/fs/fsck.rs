//! The consistency check.

use alloc::vec;
use alloc::vec::Vec;

use super::recovery::{check_body, load_state, read_headers, read_record, read_superblock, Damage};
use super::{FileSystem, BS};
use crate::error::{corrupt, Corruption, Result};
use crate::format::*;
use crate::pmem::Pmem;
use crate::state::FileKind;

/// What fsck checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Inodes checked.
    pub inodes: u64,
    /// Extents checked.
    pub extents: u64,
    /// Directory entries checked.
    pub dirents: u64,
    /// Mapped data blocks (each counted once, however many files share
    /// it) that are poisoned: in the bad-block list, or unreadable.
    pub poisoned_blocks: u64,
    /// Those blocks as device byte ranges, merged.
    pub poisoned: Vec<(u64, u64)>,
    /// Log records found valid on media.
    pub log_records: u64,
    /// Metadata copies that are damaged (poisoned, torn or stale): the
    /// other copy holds the data; a read-write mount or `fsck --repair`
    /// rewrites them.
    pub damage: Damage,
    /// Files no directory names (left by a crash; deleted at the next
    /// read-write mount).
    pub orphans: u64,
}

impl FsckReport {
    /// Nothing poisoned, nothing damaged, no orphan.
    pub fn is_clean(&self) -> bool {
        self.poisoned_blocks == 0 && self.damage.is_empty() && self.orphans == 0
    }
}

impl<P: Pmem> FileSystem<P> {
    /// Checks every invariant: both superblocks, both header copies, both
    /// body copies and both log copies of the current checkpoint (each
    /// readable and equal to the other), that they rebuild exactly the
    /// state in memory; extent maps vs reverse map vs reference counts vs
    /// free, bad and metadata sets, the directory tree; and a
    /// machine-check-safe read of every mapped data block. Inconsistency is
    /// an error; a damaged copy or poisoned data is in the report.
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut damage = Damage::default();
        let (sb, sb_damage) = read_superblock(&self.pm)?;
        damage.superblock = sb_damage;
        if sb != self.sb {
            return corrupt(Corruption::Superblock);
        }
        self.st.verify()?;
        let (hdrs, header_damage) = read_headers(&self.pm, &self.sb);
        damage.header = header_damage;
        for (c, h) in &hdrs {
            if *h != self.hdr {
                damage.header[usize::from(*c)] = true;
            }
        }
        if hdrs.iter().all(|(_, h)| *h != self.hdr) {
            return corrupt(Corruption::Checksum);
        }
        for c in 0..2u8 {
            if check_body(&self.pm, &self.sb, &self.hdr, c).is_err() {
                damage.body[usize::from(c)] = true;
            }
        }
        let mut pos = 0;
        let mut seq = 0;
        while pos < self.log_tail {
            let a = read_record(&self.pm, &self.sb, &self.hdr, 0, pos, seq);
            let b = read_record(&self.pm, &self.sb, &self.hdr, 1, pos, seq);
            damage.log[0] |= a.is_none();
            damage.log[1] |= b.is_none();
            let Some((lh, _)) = a.or(b) else { break };
            pos += (LOG_HDR + lh.payload_len).div_ceil(LOG_ALIGN) * LOG_ALIGN;
            seq += 1;
        }
        let loaded = load_state(&self.pm, &self.sb, false)?;
        if loaded.fallback.is_some() || loaded.replay_error.is_some() || loaded.hdr != self.hdr {
            return corrupt(Corruption::Checksum);
        }
        if loaded.st.encode_checkpoint()? != self.st.encode_checkpoint()? {
            return corrupt(Corruption::Log);
        }
        let mut rep = FsckReport { log_records: loaded.replayed, damage, ..FsckReport::default() };
        // The second copy of the state is not needed any more.
        drop(loaded);
        for i in self.st.inodes.values() {
            rep.inodes += 1;
            rep.dirents += i.entries.len() as u64;
            rep.extents += i.extents.len() as u64;
            if i.kind == FileKind::File && i.links == 0 {
                rep.orphans += 1;
            }
        }
        // Metadata on a known bad block is damage too (relocated by the next
        // checkpoint).
        for (&s, &(l, k)) in &self.st.space.meta {
            if self.st.space.bad.overlaps(s, l) {
                match k {
                    MetaKind::Body(c) => rep.damage.body[usize::from(c)] = true,
                    MetaKind::Log(c) => rep.damage.log[usize::from(c)] = true,
                    _ => {}
                }
            }
        }
        // Every mapped block once, however many owners share it.
        let g = &self.sb.geo;
        let mut buf = vec![0u8; BS as usize];
        let mut poisoned: Vec<(u64, u64)> = Vec::new();
        for (s, n) in self.st.space.owned_ranges(g.data_start, g.data_blocks) {
            for b in s..s + n {
                if self.st.space.bad.contains_range(b, 1) || self.pm.load(b * BS, &mut buf).is_err() {
                    rep.poisoned_blocks += 1;
                    match poisoned.last_mut() {
                        Some(last) if last.0 + last.1 == b * BS => last.1 += BS,
                        _ => poisoned.push((b * BS, BS)),
                    }
                }
            }
        }
        rep.poisoned = poisoned;
        Ok(rep)
    }
}
