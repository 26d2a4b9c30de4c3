//! The mounted file system: [`FileSystem`] and the operations a kernel
//! calls, one module per seam:
//!
//! | module | what |
//! |---|---|
//! | `recovery` | mkfs, mount (superblock and checkpoint choice, log replay), unmount |
//! | `body` | reading a checkpoint body copy: whole, or streamed to check or count it |
//! | `memory` | the DRAM a mount needs, estimated before anything big is decoded |
//! | `journal` | transactions: mutations pushed, committed as one log record; checkpoints |
//! | `namespace` | lookup, paths, create, mkdir, unlink, rmdir, rename, readdir, stat |
//! | `data` | read, write, append, truncate, fallocate; the copy-on-write write engine |
//! | `reflink` | reflink, reflink_range, dedupe_range |
//! | `dax` | bmap (read fault), bmap_write (write fault) |
//! | `rmap` | reverse-map queries and the persistent bad-block list |
//! | `fsck` | the consistency check |
//!
//! The allocation policy lives with the space maps ([`crate::space`]); the
//! metadata state and its mutations in [`crate::state`].

mod body;
mod data;
mod dax;
mod fsck;
mod journal;
mod memory;
mod namespace;
mod recovery;
mod reflink;
mod rmap;

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

pub use self::data::{Falloc, ReadCopier, WriteCopier};
pub use self::dax::{Bmap, FileExtent};
pub use self::fsck::FsckReport;
pub use self::memory::MemoryEstimate;
pub use self::namespace::{DirEntry, Stat};
pub use self::recovery::{Damage, MkfsOptions, MountInfo, MountOptions};
pub use self::rmap::{BadBlockReport, RmapOwner, RmapRecord, RMAP_BAD, RMAP_METADATA, RMAP_SHARED};
use crate::codec::Enc;
use crate::error::{FsError, Result};
pub use crate::format::MetaKind;
use crate::format::{Header, Run, Superblock, BLOCK_SIZE, HUGE_BLOCKS};
use crate::pmem::{MediaError, Pmem};
use crate::space::FsStats;
use crate::state::{FileKind, Ino, State, TxnEffects};

/// What the write engine stores.
enum Fill<'a, P> {
    /// The caller's bytes, through its copier.
    Copy(&'a mut dyn WriteCopier<P>),
    Zero,
    /// Keep the current contents (allocate holes as zeros, unshare).
    Keep,
}

impl<P> Fill<'_, P> {
    fn is_keep(&self) -> bool {
        matches!(self, Fill::Keep)
    }
}

/// A mounted fsdax file system over persistent memory `P`.
#[derive(Debug)]
pub struct FileSystem<P: Pmem> {
    pm: P,
    sb: Superblock,
    st: State,
    gen: u64,
    /// The current checkpoint header (both copies hold it).
    hdr: Header,
    log_tail: u64,
    seq: u64,
    ro: bool,
    txn: Enc,
    txn_n: u32,
    /// The open transaction deletes: it may use the metadata reserve.
    txn_shrinks: bool,
    fx: TxnEffects,
    data_dirty: bool,
    /// Why the write copier stopped short, in the open transaction.
    copy_stop: Option<FsError>,
    cursor: u64,
    info: MountInfo,
    /// Files the kernel holds open or mapped ([`FileSystem::hold`]): their
    /// last name may go, their data stays until the hold ends.
    held: BTreeSet<Ino>,
}

const BS: u64 = BLOCK_SIZE;

/// The metadata log and checkpoints now ([`FileSystem::log_status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogStatus {
    /// Generation of the current checkpoint.
    pub generation: u64,
    /// Body length of the current checkpoint (bytes, one copy).
    pub body_len: u64,
    /// First extent of each body copy (device blocks).
    pub body: [Run; 2],
    /// Each log copy (device blocks).
    pub log: [Run; 2],
    /// Data-area blocks held by the checkpoint (both body and log copies).
    pub meta_blocks: u64,
    /// Log records committed since that checkpoint.
    pub records: u64,
    /// Bytes of log in use.
    pub used: u64,
    /// Bytes of log.
    pub capacity: u64,
}

/// The file-system error of a failed media access (its progress count
/// dropped): [`FsError::Poisoned`] or [`FsError::Media`].
fn failed<N>((e, _): (MediaError, N)) -> FsError {
    e.into()
}

impl<P: Pmem> FileSystem<P> {
    /// Returns the device without writing anything (a simulated crash).
    pub fn into_pmem(self) -> P {
        self.pm
    }

    /// The device.
    pub fn pmem(&self) -> &P {
        &self.pm
    }

    /// The device, mutably: for the crash simulator and tests (stores made
    /// through it bypass the file system).
    pub fn pmem_mut(&mut self) -> &mut P {
        &mut self.pm
    }

    /// What mount found.
    pub fn mount_info(&self) -> MountInfo {
        self.info
    }

    /// The state of the metadata log and checkpoints now.
    pub fn log_status(&self) -> LogStatus {
        LogStatus {
            generation: self.gen,
            body_len: self.hdr.body_len,
            body: self.hdr.body,
            log: self.hdr.log,
            meta_blocks: self.st.space.meta_blocks(),
            records: self.seq,
            used: self.log_tail,
            capacity: self.hdr.log[0].len * BS,
        }
    }

    /// Is the file system read-only (mounted so, degraded or shut down)?
    pub fn is_read_only(&self) -> bool {
        self.ro
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    fn file(&self, ino: Ino) -> Result<&crate::state::Inode> {
        let i = self.st.inode(ino)?;
        if i.kind != FileKind::File {
            return Err(FsError::IsDir);
        }
        Ok(i)
    }

    fn dir(&self, ino: Ino) -> Result<&crate::state::Inode> {
        let i = self.st.inode(ino)?;
        if i.kind != FileKind::Dir {
            return Err(FsError::NotDir);
        }
        Ok(i)
    }

    /// Space usage.
    pub fn statfs(&self) -> FsStats {
        let huge = self
            .st
            .space
            .free
            .iter()
            .map(|(s, l)| {
                let c = s.div_ceil(HUGE_BLOCKS) * HUGE_BLOCKS;
                (s + l).saturating_sub(c) / HUGE_BLOCKS
            })
            .sum();
        FsStats {
            block_size: BS,
            data_blocks: self.sb.geo.data_blocks,
            free_blocks: self.st.space.free.total(),
            bad_blocks: self.st.space.bad.total(),
            free_huge_chunks: huge,
            inodes: self.st.inodes.len() as u64,
        }
    }
}

/// The extents of `i` within file blocks `[fb, fb + n)`, trimmed:
/// (file block, physical block, length).
fn extents_in(i: &crate::state::Inode, fb: u64, n: u64) -> Vec<(u64, u64, u64)> {
    let end = fb + n;
    let mut out = Vec::new();
    let first = i.extent_at(fb).map_or(fb, |(s, _)| s);
    for (&f, e) in i.extents.range(first..end) {
        let lo = f.max(fb);
        let hi = (f + e.len).min(end);
        if hi > lo {
            out.push((lo, e.pblk + (lo - f), hi - lo));
        }
    }
    out
}
