//! The consistency check.

use alloc::vec;

use super::recovery::{load_state, read_superblock};
use super::{failed, FileSystem, BS};
use crate::error::{corrupt, Corruption, Result};
use crate::format::*;
use crate::pmem::Pmem;

/// What fsck checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Inodes checked.
    pub inodes: u64,
    /// Extents checked.
    pub extents: u64,
    /// Directory entries checked.
    pub dirents: u64,
    /// Mapped data blocks (each counted once, however many files share
    /// it) whose machine-check-safe read failed.
    pub poisoned_blocks: u64,
    /// Log records found valid on media.
    pub log_records: u64,
}

impl<P: Pmem> FileSystem<P> {
    /// Checks every invariant: superblock and backup, the current checkpoint
    /// and log on media (checksums, and that they rebuild exactly the state
    /// in memory), extent maps vs reverse map vs reference counts vs free
    /// and bad sets, the directory tree, and a machine-check-safe read of
    /// every mapped data block.
    pub fn fsck(&self) -> Result<FsckReport> {
        let (sb, used_backup) = read_superblock(&self.pm)?;
        if used_backup || sb != self.sb {
            return corrupt(Corruption::Superblock);
        }
        let mut b = vec![0u8; SB_LEN];
        self.pm.load((sb.geo.total_blocks - 1) * BS, &mut b).map_err(failed)?;
        if Superblock::decode(&b)? != sb {
            return corrupt(Corruption::Superblock);
        }
        self.st.verify()?;
        let loaded = load_state(&self.pm, &self.sb)?;
        if loaded.fallback.is_some() || loaded.replay_error.is_some() {
            return corrupt(Corruption::Checksum);
        }
        if loaded.st.encode_checkpoint() != self.st.encode_checkpoint() {
            return corrupt(Corruption::Log);
        }
        let mut rep = FsckReport { log_records: loaded.replayed, ..FsckReport::default() };
        for i in self.st.inodes.values() {
            rep.inodes += 1;
            rep.dirents += i.entries.len() as u64;
            rep.extents += i.extents.len() as u64;
        }
        // Every mapped block once, however many owners share it.
        let g = &self.sb.geo;
        let mut buf = vec![0u8; BS as usize];
        for (s, n) in self.st.space.owned_ranges(g.data_start, g.data_blocks) {
            for b in s..s + n {
                if self.pm.load(b * BS, &mut buf).is_err() {
                    rep.poisoned_blocks += 1;
                }
            }
        }
        Ok(rep)
    }
}
