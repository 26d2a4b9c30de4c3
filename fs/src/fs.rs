//! The file system: mount/recovery, transactions, and the POSIX-like
//! operations a kernel calls.

use alloc::vec;
use alloc::vec::Vec;

use crate::codec::{Dec, Enc};
use crate::crc::{crc32c, crc32c_update};
use crate::error::{corrupt, Corruption, FsError, Result};
use crate::format::*;
use crate::pmem::Pmem;
use crate::state::{check_name, FileKind, Ino, Mutation, State, TxnEffects, ROOT_INO};

/// Options for [`FileSystem::mkfs`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MkfsOptions {
    /// File-system identity (stamped into checkpoints and log records).
    pub uuid: [u8; 16],
    /// Blocks per checkpoint slot (default: 1/32 of the device).
    pub ckpt_blocks: Option<u64>,
    /// Blocks of metadata log (default: 1/64 of the device).
    pub log_blocks: Option<u64>,
}

/// Options for [`FileSystem::mount_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MountOptions {
    /// Never write to the device (fsck, inspection).
    pub read_only: bool,
}

/// What mount found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MountInfo {
    /// Mounted read-only (asked for, or forced by damage).
    pub read_only: bool,
    /// Why it was forced read-only, if it was.
    pub degraded: Option<FsError>,
    /// The primary superblock was bad; the backup was used.
    pub used_backup_superblock: bool,
    /// Log records replayed.
    pub replayed: u64,
    /// Generation of the checkpoint mounted.
    pub generation: u64,
}

/// `fallocate` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Falloc {
    /// Allocate zeroed blocks for the holes of the range; grow the size
    /// unless `keep_size`.
    Allocate {
        /// Leave the file size unchanged (FALLOC_FL_KEEP_SIZE).
        keep_size: bool,
    },
    /// Deallocate the range; it reads as zeros (FALLOC_FL_PUNCH_HOLE).
    PunchHole,
}

/// `stat` result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Inode number.
    pub ino: Ino,
    /// Kind.
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Link count (directories: 2 + subdirectories).
    pub nlink: u32,
    /// Mapped blocks (shared blocks count for every owner).
    pub blocks: u64,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Name.
    pub name: Vec<u8>,
    /// Inode.
    pub ino: Ino,
    /// Kind.
    pub kind: FileKind,
}

/// Space usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStats {
    /// Block size.
    pub block_size: u64,
    /// Data blocks.
    pub data_blocks: u64,
    /// Free data blocks.
    pub free_blocks: u64,
    /// Known bad blocks.
    pub bad_blocks: u64,
    /// Fully free, 2 MiB-aligned 2 MiB chunks (huge-page capable).
    pub free_huge_chunks: u64,
    /// Inodes.
    pub inodes: u64,
}

/// Result of [`FileSystem::bmap`]: where a file offset lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bmap {
    /// File byte offset of the start of the run (block aligned).
    pub file_offset: u64,
    /// Length of the run in bytes.
    pub len: u64,
    /// Device byte offset of the run, `None` for a hole.
    pub phys: Option<u64>,
    /// The block at the queried offset is shared (a write must CoW).
    pub shared: bool,
}

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

/// What fsck checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Inodes checked.
    pub inodes: u64,
    /// Extents checked.
    pub extents: u64,
    /// Directory entries checked.
    pub dirents: u64,
    /// Data blocks whose machine-check-safe read failed.
    pub poisoned_blocks: u64,
    /// Log records found valid on media.
    pub log_records: u64,
}

#[derive(Clone, Copy)]
enum Fill<'a> {
    Data(&'a [u8]),
    Zero,
    /// Keep the current contents (allocate holes as zeros, unshare).
    Keep,
}

/// A mounted fsdax file system over persistent memory `P`.
#[derive(Debug)]
pub struct FileSystem<P: Pmem> {
    pm: P,
    sb: Superblock,
    st: State,
    gen: u64,
    slot: u8,
    log_tail: u64,
    seq: u64,
    ro: bool,
    txn: Enc,
    txn_n: u32,
    fx: TxnEffects,
    data_dirty: bool,
    cursor: u64,
    info: MountInfo,
}

const BS: u64 = BLOCK_SIZE;

fn poisoned(e: crate::pmem::Poisoned) -> FsError {
    FsError::Poisoned { offset: e.offset }
}

impl<P: Pmem> FileSystem<P> {
    // ------------------------------------------------------------ mkfs/mount

    /// Formats `pm` and mounts it.
    pub fn mkfs(mut pm: P, opts: MkfsOptions) -> Result<Self> {
        let total = pm.size() / BS;
        let geo = Geometry::for_device(total, opts.ckpt_blocks, opts.log_blocks)?;
        let sb = Superblock {
            version: VERSION,
            feat_compat: 0,
            feat_ro_compat: 0,
            feat_incompat: FEAT_INCOMPAT_SUPPORTED,
            geo,
            uuid: opts.uuid,
        };
        // Invalidate both checkpoint headers and the first log record.
        pm.store_zeros(geo.ckpt_slot(0) * BS, BS);
        pm.store_zeros(geo.ckpt_slot(1) * BS, BS);
        pm.store_zeros(geo.log_start * BS, BS);
        pm.flush(geo.ckpt_slot(0) * BS, BS);
        pm.flush(geo.ckpt_slot(1) * BS, BS);
        pm.flush(geo.log_start * BS, BS);
        pm.fence();
        let mut fs = FileSystem {
            pm,
            sb,
            st: State::fresh(geo)?,
            gen: 0,
            slot: 1,
            log_tail: 0,
            seq: 0,
            ro: false,
            txn: Enc::default(),
            txn_n: 0,
            fx: TxnEffects::default(),
            data_dirty: false,
            cursor: geo.data_start,
            info: MountInfo::default(),
        };
        // First checkpoint (generation 1, slot 0), then the superblocks.
        fs.checkpoint()?;
        let b = sb.encode();
        fs.pm.store_flush(0, &b);
        fs.pm.store_flush((total - 1) * BS, &b);
        fs.pm.fence();
        Ok(fs)
    }

    /// Mounts read-write, replaying the log.
    pub fn mount(pm: P) -> Result<Self> {
        Self::mount_with(pm, MountOptions::default())
    }

    /// Mounts with options.
    pub fn mount_with(pm: P, opts: MountOptions) -> Result<Self> {
        let mut info = MountInfo { read_only: opts.read_only, ..MountInfo::default() };
        let (sb, used_backup) = read_superblock(&pm)?;
        info.used_backup_superblock = used_backup;
        if sb.feat_incompat & !FEAT_INCOMPAT_SUPPORTED != 0 {
            return Err(FsError::NotFsdax);
        }
        let degrade = |info: &mut MountInfo, why: FsError| {
            info.read_only = true;
            info.degraded.get_or_insert(why);
        };
        if sb.feat_ro_compat & !FEAT_RO_COMPAT_SUPPORTED != 0 {
            degrade(&mut info, FsError::ReadOnly);
        }
        if used_backup {
            degrade(&mut info, FsError::Corrupt(Corruption::Superblock));
        }
        let loaded = load_state(&pm, &sb)?;
        if let Some(why) = loaded.fallback {
            // The newest checkpoint is unusable: the older one is mounted
            // read-only (updates after it are lost; fsck reports it).
            degrade(&mut info, why);
        }
        if let Some(e) = loaded.replay_error {
            degrade(&mut info, e);
        }
        let st = loaded.st;
        if loaded.replayed > 0 {
            if let Err(e) = st.verify() {
                degrade(&mut info, e);
            }
        }
        info.replayed = loaded.replayed;
        info.generation = loaded.gen;
        let geo = sb.geo;
        let mut fs = FileSystem {
            pm,
            sb,
            st,
            gen: loaded.gen,
            slot: loaded.slot,
            log_tail: loaded.log_tail,
            seq: loaded.replayed,
            ro: info.read_only,
            txn: Enc::default(),
            txn_n: 0,
            fx: TxnEffects::default(),
            data_dirty: false,
            cursor: geo.data_start,
            info,
        };
        if !fs.ro && loaded.replayed > 0 {
            fs.checkpoint()?;
        }
        Ok(fs)
    }

    /// Writes a final checkpoint and returns the device.
    pub fn unmount(mut self) -> Result<P> {
        if !self.ro {
            self.checkpoint()?;
        }
        Ok(self.pm)
    }

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

    /// Is the file system read-only (mounted so, degraded or shut down)?
    pub fn is_read_only(&self) -> bool {
        self.ro
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    // ------------------------------------------------------- transactions

    fn begin(&mut self) -> Result<()> {
        if self.ro {
            return Err(FsError::ReadOnly);
        }
        self.txn.buf.clear();
        self.txn_n = 0;
        self.fx = TxnEffects::default();
        Ok(())
    }

    fn push(&mut self, m: Mutation) -> Result<()> {
        if let Err(e) = self.st.apply(&m, Some(&mut self.fx)) {
            // DRAM may be half-updated: stop all writes (XFS-style shutdown).
            self.ro = true;
            self.info.degraded.get_or_insert(e);
            return Err(e);
        }
        m.encode(&mut self.txn);
        self.txn_n += 1;
        Ok(())
    }

    /// Commits the transaction: data first, then one log record
    /// (store + flush + fence). Freed blocks become reusable only now.
    fn commit(&mut self) -> Result<()> {
        if self.data_dirty {
            self.pm.fence();
            self.data_dirty = false;
        }
        if self.txn_n == 0 {
            return Ok(());
        }
        let rec = encode_log_record(&self.sb.uuid, self.gen, self.seq, self.txn_n, &self.txn.buf);
        let cap = self.sb.geo.log_blocks * BS;
        let res = if self.log_tail + rec.len() as u64 > cap {
            // Log full: a checkpoint of the current state commits this
            // transaction too (and resets the log).
            self.release_deferred().and_then(|_| self.checkpoint())
        } else {
            let off = self.sb.geo.log_start * BS + self.log_tail;
            self.pm.store_flush(off, &rec);
            self.pm.fence();
            self.log_tail += rec.len() as u64;
            self.seq += 1;
            self.release_deferred()
        };
        self.txn_n = 0;
        self.txn.buf.clear();
        if let Err(e) = res {
            self.ro = true;
            self.info.degraded.get_or_insert(e);
        }
        res
    }

    fn release_deferred(&mut self) -> Result<()> {
        self.fx.unmapped = Default::default();
        for (a, n) in core::mem::take(&mut self.fx.freed) {
            self.st.space.release(a, n)?;
        }
        Ok(())
    }

    /// Writes the whole state to the other checkpoint slot; the header,
    /// written last, makes it current. Resets the log.
    pub fn checkpoint(&mut self) -> Result<()> {
        if self.ro {
            return Err(FsError::ReadOnly);
        }
        let geo = self.sb.geo;
        let gen = self.gen.checked_add(1).ok_or(FsError::Corrupt(Corruption::Format))?;
        let mut body = self.st.encode_checkpoint();
        body.extend_from_slice(&meta_rmap_section(&geo));
        let cap = (geo.ckpt_blocks - 1) * BS;
        if body.len() as u64 > cap {
            return Err(FsError::NoSpace);
        }
        let slot = 1 - self.slot;
        let base = geo.ckpt_slot(slot) * BS;
        self.pm.store_flush(base + BS, &body);
        self.pm.fence();
        let hdr = CkptHeader { gen, body_len: body.len() as u64, body_crc: crc32c(&body), uuid: self.sb.uuid };
        self.pm.store_flush(base, &hdr.encode());
        self.pm.fence();
        self.gen = gen;
        self.slot = slot;
        self.log_tail = 0;
        self.seq = 0;
        Ok(())
    }

    // ------------------------------------------------------------ lookups

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

    /// The root directory.
    pub fn root(&self) -> Ino {
        ROOT_INO
    }

    /// Looks `name` up in directory `dir`.
    pub fn lookup(&self, dir: Ino, name: &[u8]) -> Result<Ino> {
        check_name(name)?;
        self.dir(dir)?.entries.get(name).copied().ok_or(FsError::NotFound)
    }

    /// Resolves an absolute or root-relative path ("/a/b").
    pub fn resolve(&self, path: &str) -> Result<Ino> {
        let mut ino = ROOT_INO;
        for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            ino = self.lookup(ino, c.as_bytes())?;
        }
        Ok(ino)
    }

    /// Splits a path into (parent directory inode, last name).
    pub fn resolve_parent<'p>(&self, path: &'p str) -> Result<(Ino, &'p str)> {
        let t = path.trim_end_matches('/');
        let (dir, name) = t.rsplit_once('/').unwrap_or(("", t));
        if name.is_empty() {
            return Err(FsError::Invalid);
        }
        Ok((self.resolve(dir)?, name))
    }

    /// Opens `path` as a regular file, creating it if asked.
    pub fn open(&mut self, path: &str, create: bool) -> Result<Ino> {
        let (dir, name) = self.resolve_parent(path)?;
        match self.lookup(dir, name.as_bytes()) {
            Ok(ino) => {
                self.file(ino)?;
                Ok(ino)
            }
            Err(FsError::NotFound) if create => self.create(dir, name.as_bytes()),
            Err(e) => Err(e),
        }
    }

    /// `stat`.
    pub fn stat(&self, ino: Ino) -> Result<Stat> {
        let i = self.st.inode(ino)?;
        Ok(Stat {
            ino,
            kind: i.kind,
            size: i.size,
            nlink: if i.kind == FileKind::Dir { 2 + i.subdirs } else { i.links },
            blocks: i.extents.values().map(|e| e.len).sum(),
        })
    }

    /// Up to `max` entries of `dir` whose names sort after `after`.
    pub fn readdir(&self, dir: Ino, after: Option<&[u8]>, max: usize) -> Result<Vec<DirEntry>> {
        use core::ops::Bound;
        let d = self.dir(dir)?;
        let lo = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        Ok(d.entries
            .range::<[u8], _>((lo, Bound::Unbounded))
            .take(max)
            .map(|(n, &ino)| DirEntry {
                name: n.to_vec(),
                ino,
                kind: self.st.inodes.get(&ino).map_or(FileKind::File, |i| i.kind),
            })
            .collect())
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

    // -------------------------------------------------------- namespace

    fn new_inode(&mut self, dir: Ino, name: &[u8], kind: FileKind) -> Result<Ino> {
        check_name(name)?;
        if self.dir(dir)?.entries.contains_key(name) {
            return Err(FsError::Exists);
        }
        self.begin()?;
        let ino = self.st.next_ino;
        self.push(Mutation::InodeAlloc { ino, kind })?;
        self.push(Mutation::DirAdd { dir, ino, name: name.to_vec() })?;
        self.commit()?;
        Ok(ino)
    }

    /// Creates an empty regular file.
    pub fn create(&mut self, dir: Ino, name: &[u8]) -> Result<Ino> {
        self.new_inode(dir, name, FileKind::File)
    }

    /// Creates an empty directory.
    pub fn mkdir(&mut self, dir: Ino, name: &[u8]) -> Result<Ino> {
        self.new_inode(dir, name, FileKind::Dir)
    }

    /// Pushes the mutations that drop one link of `ino` (already removed
    /// from its directory) and free it when none is left.
    fn drop_link(&mut self, ino: Ino) -> Result<()> {
        let i = self.st.inode(ino)?;
        if i.links == 0 {
            if !i.extents.is_empty() {
                self.push(Mutation::Unmap { ino, fblk: 0, len: MAX_FILE_BLOCKS })?;
            }
            self.push(Mutation::InodeFree { ino })?;
        }
        Ok(())
    }

    /// Removes a file name (and the file with its last name).
    pub fn unlink(&mut self, dir: Ino, name: &[u8]) -> Result<()> {
        let ino = self.lookup(dir, name)?;
        self.file(ino)?;
        self.begin()?;
        self.push(Mutation::DirRemove { dir, name: name.to_vec() })?;
        self.drop_link(ino)?;
        self.commit()
    }

    /// Removes an empty directory.
    pub fn rmdir(&mut self, dir: Ino, name: &[u8]) -> Result<()> {
        let ino = self.lookup(dir, name)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.begin()?;
        self.push(Mutation::DirRemove { dir, name: name.to_vec() })?;
        self.push(Mutation::InodeFree { ino })?;
        self.commit()
    }

    /// Atomically renames, replacing an existing target (POSIX rename).
    pub fn rename(&mut self, sdir: Ino, sname: &[u8], ddir: Ino, dname: &[u8]) -> Result<()> {
        let ino = self.lookup(sdir, sname)?;
        check_name(dname)?;
        self.dir(ddir)?;
        let is_dir = self.st.inode(ino)?.kind == FileKind::Dir;
        if is_dir && self.st.is_ancestor(ino, ddir) {
            return Err(FsError::Invalid);
        }
        let target = self.dir(ddir)?.entries.get(dname).copied();
        if let Some(t) = target {
            if t == ino {
                return Ok(());
            }
            let ti = self.st.inode(t)?;
            match (is_dir, ti.kind) {
                (true, FileKind::File) => return Err(FsError::NotDir),
                (false, FileKind::Dir) => return Err(FsError::IsDir),
                (true, FileKind::Dir) if !ti.entries.is_empty() => return Err(FsError::NotEmpty),
                _ => {}
            }
        }
        self.begin()?;
        if let Some(t) = target {
            self.push(Mutation::DirRemove { dir: ddir, name: dname.to_vec() })?;
            self.drop_link(t)?;
        }
        self.push(Mutation::DirRemove { dir: sdir, name: sname.to_vec() })?;
        self.push(Mutation::DirAdd { dir: ddir, ino, name: dname.to_vec() })?;
        self.commit()
    }

    // -------------------------------------------------------------- data

    /// Reads at `offset`; returns bytes read (0 at or past EOF).
    pub fn read(&self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let i = self.file(ino)?;
        if offset >= i.size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(i.size - offset) as usize;
        let mut done = 0usize;
        while done < n {
            let pos = offset + done as u64;
            let fb = pos / BS;
            let inb = pos % BS;
            match i.extent_at(fb) {
                Some((ef, e)) => {
                    let avail = (ef + e.len - fb) * BS - inb;
                    let k = (avail.min((n - done) as u64)) as usize;
                    let phys = (e.pblk + (fb - ef)) * BS + inb;
                    self.pm.load_mc(phys, &mut buf[done..done + k]).map_err(poisoned)?;
                    done += k;
                }
                None => {
                    let next = i.extents.range(fb..).next().map_or(u64::MAX, |(&s, _)| s);
                    let avail = next.saturating_sub(fb).saturating_mul(BS) - inb;
                    let k = (avail.min((n - done) as u64)) as usize;
                    buf[done..done + k].fill(0);
                    done += k;
                }
            }
        }
        Ok(n)
    }

    /// Writes at `offset` (growing the file); returns bytes written, which
    /// is short only if space ran out part-way.
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize> {
        let size = self.file(ino)?.size;
        if offset.checked_add(data.len() as u64).is_none_or(|e| e > MAX_FILE_SIZE) {
            return Err(FsError::TooBig);
        }
        if data.is_empty() {
            return Ok(0);
        }
        self.begin()?;
        let r = self.write_inner(ino, offset, data, size);
        self.finish(r)
    }

    fn write_inner(&mut self, ino: Ino, offset: u64, data: &[u8], size: u64) -> Result<usize> {
        if offset > size {
            self.zero_tail(ino, size, offset)?;
        }
        let written = self.write_range(ino, offset, data.len() as u64, Fill::Data(data), true, true, true)?;
        if offset + written > size {
            self.push(Mutation::SetSize { ino, size: offset + written })?;
        }
        Ok(written as usize)
    }

    /// Appends; returns the offset written at.
    pub fn append(&mut self, ino: Ino, data: &[u8]) -> Result<u64> {
        let off = self.file(ino)?.size;
        let n = self.write(ino, off, data)?;
        if n < data.len() {
            return Err(FsError::NoSpace);
        }
        Ok(off)
    }

    /// Makes the file's data and metadata durable. Every operation is
    /// already durable when it returns, so this is a fence.
    pub fn fsync(&mut self, ino: Ino) -> Result<()> {
        self.st.inode(ino)?;
        self.pm.fence();
        Ok(())
    }

    /// Sets the size.
    pub fn truncate(&mut self, ino: Ino, size: u64) -> Result<()> {
        let old = self.file(ino)?.size;
        if size > MAX_FILE_SIZE {
            return Err(FsError::TooBig);
        }
        if size > old {
            self.need_free(1)?;
        }
        self.begin()?;
        let r = self.truncate_inner(ino, old, size);
        self.finish(r)
    }

    fn truncate_inner(&mut self, ino: Ino, old: u64, size: u64) -> Result<()> {
        if size > old {
            self.zero_tail(ino, old, size)?;
        } else {
            let keep = size.div_ceil(BS);
            self.unmap_if_mapped(ino, keep, MAX_FILE_BLOCKS - keep)?;
        }
        if size != old {
            self.push(Mutation::SetSize { ino, size })?;
        }
        Ok(())
    }

    /// `fallocate`. Allocation that runs out of space part-way keeps what it
    /// allocated (past EOF if the size would have grown) and fails.
    pub fn fallocate(&mut self, ino: Ino, mode: Falloc, offset: u64, len: u64) -> Result<()> {
        let size = self.file(ino)?.size;
        let end = offset.checked_add(len).filter(|&e| e <= MAX_FILE_SIZE).ok_or(FsError::TooBig)?;
        if len == 0 {
            return Err(FsError::Invalid);
        }
        self.need_free(2)?;
        self.begin()?;
        let r = self.fallocate_inner(ino, mode, offset, len, size, end);
        self.finish(r)
    }

    fn fallocate_inner(&mut self, ino: Ino, mode: Falloc, offset: u64, len: u64, size: u64, end: u64) -> Result<()> {
        match mode {
            Falloc::Allocate { keep_size } => {
                if end > size && !keep_size {
                    self.zero_tail(ino, size, end)?;
                }
                if self.write_range(ino, offset, len, Fill::Keep, true, false, true)? != len {
                    return Err(FsError::NoSpace);
                }
                if !keep_size && end > size {
                    self.push(Mutation::SetSize { ino, size: end })?;
                }
            }
            Falloc::PunchHole => {
                let first_full = offset.div_ceil(BS);
                let last_full = end / BS;
                // Partial blocks at either end are zeroed in copies (CoW even
                // if unshared) so that the whole punch commits atomically.
                let head_end = end.min(first_full * BS);
                if offset < head_end {
                    self.write_range(ino, offset, head_end - offset, Fill::Zero, false, true, false)?;
                }
                let tail_start = (last_full * BS).max(offset);
                if tail_start < end && last_full >= first_full {
                    self.write_range(ino, tail_start, end - tail_start, Fill::Zero, false, true, false)?;
                }
                if first_full < last_full {
                    self.unmap_if_mapped(ino, first_full, last_full - first_full)?;
                }
            }
        }
        Ok(())
    }

    /// Fails early with ENOSPC unless `n` blocks are free (for operations
    /// whose only allocations are a few copy-on-write blocks).
    fn need_free(&self, n: u64) -> Result<()> {
        if self.st.space.free.total() < n {
            return Err(FsError::NoSpace);
        }
        Ok(())
    }

    /// Ends a transaction: commits whatever was pushed (also when `r` is an
    /// error part-way, so DRAM and media agree), then returns `r`.
    fn finish<T>(&mut self, r: Result<T>) -> Result<T> {
        if self.ro {
            // A failed push shut the file system down; nothing to commit.
            return r.and(Err(FsError::ReadOnly));
        }
        let c = self.commit();
        let v = r?;
        c?;
        Ok(v)
    }

    fn unmap_if_mapped(&mut self, ino: Ino, fblk: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let i = self.file(ino)?;
        let mapped = i.extent_at(fblk).is_some() || i.extents.range(fblk..fblk + len).next().is_some();
        if mapped {
            self.push(Mutation::Unmap { ino, fblk, len })?;
        }
        Ok(())
    }

    /// Before a file grows from `size` to cover `new_end`: zeroes every
    /// mapped byte of `[size, new_end)`. Bytes past EOF are undefined on
    /// media (the tail of the last block; blocks preallocated past EOF that
    /// an interrupted write touched), and must never become visible.
    /// Holes stay holes; costs per extent plus the bytes actually mapped.
    fn zero_tail(&mut self, ino: Ino, size: u64, new_end: u64) -> Result<()> {
        if size < new_end {
            // In place is fine: these bytes are past EOF in every committed state.
            self.write_range(ino, size, new_end - size, Fill::Zero, false, true, true)?;
        }
        Ok(())
    }

    fn copy_phys(&mut self, from: u64, to: u64, len: u64) -> Result<()> {
        let mut buf = [0u8; 4096];
        let mut done = 0;
        while done < len {
            let k = (len - done).min(buf.len() as u64) as usize;
            self.pm.load_mc(from + done, &mut buf[..k]).map_err(poisoned)?;
            self.pm.store(to + done, &buf[..k]);
            done += k as u64;
        }
        Ok(())
    }

    /// The engine of write, zeroing, allocation and unsharing over the byte
    /// range `[offset, offset + len)`. Unshared mapped blocks are written in
    /// place; shared blocks are copied on write (only the bytes the write
    /// does not cover are copied); holes are allocated if `alloc_holes`.
    /// Pushes mutations into the open transaction. Returns bytes handled
    /// (short only on ENOSPC after some progress).
    #[allow(clippy::too_many_arguments)]
    fn write_range(
        &mut self,
        ino: Ino,
        offset: u64,
        len: u64,
        fill: Fill<'_>,
        alloc_holes: bool,
        unshare: bool,
        in_place: bool,
    ) -> Result<u64> {
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let fb = pos / BS;
            let last = (end - 1) / BS;
            let i = self.file(ino)?;
            let (mapped, run) = match i.extent_at(fb) {
                Some((ef, e)) => {
                    let p = e.pblk + (fb - ef);
                    let lim = (ef + e.len - fb).min(last + 1 - fb);
                    let (shared, k) = self.st.space.shared_run(p, lim);
                    // Blocks unmapped earlier in this transaction are still
                    // mapped by the committed state: treat them as shared.
                    let (shared, k) = match self.fx.unmapped.intersect(p, k).first() {
                        _ if shared => (true, k),
                        Some(&(s, l)) if s == p => (true, l),
                        Some(&(s, _)) => (false, s - p),
                        None => (false, k),
                    };
                    (Some((p, shared)), k)
                }
                None => {
                    let next = i.extents.range(fb..).next().map_or(u64::MAX, |(&s, _)| s);
                    (None, next.min(last + 1) - fb)
                }
            };
            let run_end = ((fb + run) * BS).min(end);
            match mapped {
                Some((p, false)) if in_place => {
                    let phys = p * BS + (pos - fb * BS);
                    let k = run_end - pos;
                    match fill {
                        Fill::Data(d) => {
                            let s = (pos - offset) as usize;
                            self.pm.store(phys, &d[s..s + k as usize]);
                        }
                        Fill::Zero => self.pm.store_zeros(phys, k),
                        Fill::Keep => {}
                    }
                    if !matches!(fill, Fill::Keep) {
                        self.pm.flush(phys, k);
                        self.data_dirty = true;
                    }
                    pos = run_end;
                }
                Some((_, true)) if !unshare => pos = run_end,
                None if !alloc_holes => pos = run_end,
                _ => {
                    let old = mapped.map(|(p, _)| p);
                    let goal = if fb > 0 {
                        self.file(ino)?.extent_at(fb - 1).map(|(ef, e)| e.pblk + (fb - 1 - ef) + 1)
                    } else {
                        None
                    };
                    let Some((q, m)) = self.alloc(goal, fb, run) else {
                        if pos > offset {
                            return Ok(pos - offset);
                        }
                        return Err(FsError::NoSpace);
                    };
                    let blk_start = fb * BS;
                    let blk_end = (fb + m) * BS;
                    let w_end = blk_end.min(end);
                    let qb = q * BS;
                    // Copy around: bytes of the new blocks the write does not cover.
                    let around = |fs: &mut Self, a: u64, b: u64| -> Result<()> {
                        if a >= b {
                            return Ok(());
                        }
                        match old {
                            Some(p) => fs.copy_phys(p * BS + (a - blk_start), qb + (a - blk_start), b - a),
                            None => {
                                fs.pm.store_zeros(qb + (a - blk_start), b - a);
                                Ok(())
                            }
                        }
                    };
                    around(self, blk_start, pos)?;
                    match fill {
                        Fill::Data(d) => {
                            let s = (pos - offset) as usize;
                            self.pm.store(qb + (pos - blk_start), &d[s..s + (w_end - pos) as usize]);
                        }
                        Fill::Zero => self.pm.store_zeros(qb + (pos - blk_start), w_end - pos),
                        Fill::Keep => around(self, pos, w_end)?,
                    }
                    around(self, w_end, blk_end)?;
                    self.pm.flush(qb, m * BS);
                    self.data_dirty = true;
                    if old.is_some() {
                        self.push(Mutation::Unmap { ino, fblk: fb, len: m })?;
                    }
                    self.push(Mutation::Map { ino, fblk: fb, pblk: q, len: m, fresh: true })?;
                    pos = w_end;
                }
            }
        }
        Ok(end - offset)
    }

    /// Picks free blocks for file block `fb`, up to `want` of them.
    ///
    /// Policy (the WineFS lesson: keep 2 MiB-aligned free chunks for files
    /// that can use huge mappings):
    /// 1. continue the file's previous physical block if it is free;
    /// 2. large requests (or file offsets past the first 2 MiB) take a fully
    ///    free aligned 2 MiB chunk, at the position congruent with the file
    ///    offset modulo 2 MiB, so the extent can be mapped with a PMD;
    /// 3. small requests go to already-fragmented free space, scanning from
    ///    the top of the device;
    /// 4. otherwise break the highest aligned chunk, or take anything.
    fn alloc(&mut self, goal: Option<u64>, fb: u64, want: u64) -> Option<(u64, u64)> {
        let want = want.clamp(1, MAX_EXTENT);
        let free = &self.st.space.free;
        // A whole 2 MiB page of the file (a PMD fault, a large write) wants a
        // whole aligned chunk; continuing an unaligned neighbour would lose it.
        let whole_page = fb.is_multiple_of(HUGE_BLOCKS) && want == HUGE_BLOCKS;
        let goal = goal.filter(|g| !whole_page || g.is_multiple_of(HUGE_BLOCKS));
        if let Some(g) = goal {
            if let Some((s, l)) = free.containing(g) {
                // Stop at the chunk boundary so extents stay within 2 MiB pages.
                let to_boundary = HUGE_BLOCKS - (g % HUGE_BLOCKS);
                return Some((g, want.min(s + l - g).min(to_boundary.max(1))));
            }
        }
        let big = fb >= HUGE_BLOCKS || want >= 64;
        let chunk_in = |s: u64, l: u64| {
            let c = s.div_ceil(HUGE_BLOCKS) * HUGE_BLOCKS;
            (c + HUGE_BLOCKS <= s + l).then_some(c)
        };
        let off = fb % HUGE_BLOCKS;
        let n_in_chunk = want.min(HUGE_BLOCKS - off);
        if big {
            let found =
                free.iter_from(self.cursor).chain(free.iter()).find_map(|(s, l)| chunk_in(s, l).map(|c| (c, s)));
            if let Some((c, s)) = found {
                self.cursor = s;
                return Some((c + off, n_in_chunk));
            }
        } else {
            let frag = free.iter().rev().take(256).find(|&(s, l)| chunk_in(s, l).is_none());
            if let Some((s, l)) = frag {
                return Some((s, want.min(l)));
            }
            let last_chunk = free.iter().rev().find_map(|(s, l)| {
                let c = (s + l) / HUGE_BLOCKS * HUGE_BLOCKS;
                (c >= HUGE_BLOCKS && c - HUGE_BLOCKS >= s).then(|| c - HUGE_BLOCKS)
            });
            if let Some(c) = last_chunk {
                return Some((c, want.min(HUGE_BLOCKS)));
            }
        }
        free.iter().next().map(|(s, l)| (s, want.min(l)))
    }

    // ---------------------------------------------------------- reflink

    /// FICLONE: make `dst` share all of `src`'s data; `dst` takes `src`'s size.
    pub fn reflink(&mut self, src: Ino, dst: Ino) -> Result<()> {
        if src == dst {
            return Err(FsError::Invalid);
        }
        let s = self.file(src)?;
        let size = s.size;
        let pieces = extents_in(s, 0, size.div_ceil(BS));
        self.file(dst)?;
        self.begin()?;
        let r = self.reflink_inner(dst, size, pieces);
        self.finish(r)
    }

    fn reflink_inner(&mut self, dst: Ino, size: u64, pieces: Vec<(u64, u64, u64)>) -> Result<()> {
        self.unmap_if_mapped(dst, 0, MAX_FILE_BLOCKS)?;
        for (f, p, l) in pieces {
            self.push(Mutation::Map { ino: dst, fblk: f, pblk: p, len: l, fresh: false })?;
        }
        if self.file(dst)?.size != size {
            self.push(Mutation::SetSize { ino: dst, size })?;
        }
        Ok(())
    }

    fn check_remap(&self, src: Ino, so: u64, dst: Ino, doff: u64, len: u64, dedupe: bool) -> Result<()> {
        let ss = self.file(src)?.size;
        let ds = self.file(dst)?.size;
        if len == 0 || !so.is_multiple_of(BS) || !doff.is_multiple_of(BS) {
            return Err(FsError::Invalid);
        }
        let se = so.checked_add(len).ok_or(FsError::Invalid)?;
        let de = doff.checked_add(len).filter(|&e| e <= MAX_FILE_SIZE).ok_or(FsError::TooBig)?;
        if se > ss || (dedupe && de > ds) {
            return Err(FsError::Invalid);
        }
        if !se.is_multiple_of(BS) && (se != ss || de < ds) {
            return Err(FsError::Invalid);
        }
        if src == dst && so < de && doff < se {
            return Err(FsError::Invalid);
        }
        Ok(())
    }

    fn remap(&mut self, src: Ino, so: u64, dst: Ino, doff: u64, len: u64) -> Result<()> {
        let dsize = self.file(dst)?.size;
        if doff > dsize {
            self.need_free(1)?;
        }
        self.begin()?;
        let r = self.remap_inner(src, so, dst, doff, len, dsize);
        self.finish(r)
    }

    fn remap_inner(&mut self, src: Ino, so: u64, dst: Ino, doff: u64, len: u64, dsize: u64) -> Result<()> {
        let nblk = len.div_ceil(BS);
        let (sfb, dfb) = (so / BS, doff / BS);
        if doff > dsize {
            self.zero_tail(dst, dsize, doff)?;
        }
        let pieces = extents_in(self.file(src)?, sfb, nblk);
        self.unmap_if_mapped(dst, dfb, nblk)?;
        for (f, p, l) in pieces {
            self.push(Mutation::Map { ino: dst, fblk: f - sfb + dfb, pblk: p, len: l, fresh: false })?;
        }
        if doff + len > dsize {
            self.push(Mutation::SetSize { ino: dst, size: doff + len })?;
        }
        Ok(())
    }

    /// FICLONERANGE: share `[so, so + len)` of `src` at `doff` in `dst`.
    /// Offsets must be block aligned; `len` too unless the range ends at
    /// `src`'s EOF and reaches or passes `dst`'s EOF. Costs per extent.
    pub fn reflink_range(&mut self, src: Ino, so: u64, dst: Ino, doff: u64, len: u64) -> Result<()> {
        self.check_remap(src, so, dst, doff, len, false)?;
        self.remap(src, so, dst, doff, len)
    }

    /// FIDEDUPERANGE: if the two ranges hold the same bytes (compared with
    /// machine-check-safe reads), make `dst` share `src`'s blocks.
    pub fn dedupe_range(&mut self, src: Ino, so: u64, dst: Ino, doff: u64, len: u64) -> Result<()> {
        self.check_remap(src, so, dst, doff, len, true)?;
        let mut a = vec![0u8; 64 * 1024];
        let mut b = vec![0u8; 64 * 1024];
        let mut done = 0;
        while done < len {
            let k = (len - done).min(a.len() as u64) as usize;
            self.read(src, so + done, &mut a[..k])?;
            self.read(dst, doff + done, &mut b[..k])?;
            if a[..k] != b[..k] {
                return Err(FsError::Differs);
            }
            done += k as u64;
        }
        self.remap(src, so, dst, doff, len)
    }

    /// Where file offset `offset` lives (for the DAX fault path).
    pub fn bmap(&self, ino: Ino, offset: u64) -> Result<Bmap> {
        let i = self.file(ino)?;
        let fb = offset / BS;
        Ok(match i.extent_at(fb) {
            Some((ef, e)) => Bmap {
                file_offset: ef * BS,
                len: e.len * BS,
                phys: Some(e.pblk * BS),
                shared: self.st.space.refcount(e.pblk + (fb - ef)) > 1,
            },
            None => {
                let next = i.extents.range(fb..).next().map_or(MAX_FILE_BLOCKS, |(&s, _)| s);
                Bmap {
                    file_offset: fb.saturating_mul(BS),
                    len: next.saturating_sub(fb) * BS,
                    phys: None,
                    shared: false,
                }
            }
        })
    }

    /// Makes `[offset, offset + len)` allocated and unshared (holes zeroed,
    /// shared blocks copied) so that a DAX write fault can map it writable;
    /// returns the mapping at `offset`.
    pub fn bmap_write(&mut self, ino: Ino, offset: u64, len: u64) -> Result<Bmap> {
        self.file(ino)?;
        if len == 0 || offset.checked_add(len).is_none_or(|e| e > MAX_FILE_SIZE) {
            return Err(FsError::Invalid);
        }
        self.begin()?;
        let r = self.write_range(ino, offset, len, Fill::Keep, true, true, true);
        match self.finish(r)? {
            n if n == len => self.bmap(ino, offset),
            _ => Err(FsError::NoSpace),
        }
    }

    // --------------------------------------------------- rmap, bad blocks

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

    /// Forgets bad blocks after their poison was cleared (a recovery write).
    pub fn clear_bad(&mut self, phys: u64, len: u64) -> Result<()> {
        let (a, n) = self.data_blocks_of(phys, len)?;
        if !self.st.space.bad.contains_range(a, n) {
            return Err(FsError::Invalid);
        }
        self.begin()?;
        self.push(Mutation::BadRemove { pblk: a, len: n })?;
        self.commit()
    }

    /// The persistent bad-block list: (device byte offset, length).
    pub fn bad_blocks(&self) -> Vec<(u64, u64)> {
        self.st.space.bad.iter().map(|(s, l)| (s * BS, l * BS)).collect()
    }

    fn data_blocks_of(&self, phys: u64, len: u64) -> Result<(u64, u64)> {
        let a = phys / BS;
        let e = phys.checked_add(len).ok_or(FsError::Invalid)?.div_ceil(BS);
        if e <= a || !self.sb.geo.in_data(a, e - a) {
            return Err(FsError::Invalid);
        }
        Ok((a, e - a))
    }

    // ---------------------------------------------------------------- fsck

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
        self.pm.load_mc((sb.geo.total_blocks - 1) * BS, &mut b).map_err(poisoned)?;
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
        let mut buf = vec![0u8; BS as usize];
        for i in self.st.inodes.values() {
            rep.inodes += 1;
            rep.dirents += i.entries.len() as u64;
            for e in i.extents.values() {
                rep.extents += 1;
                for k in 0..e.len {
                    if self.pm.load_mc((e.pblk + k) * BS, &mut buf).is_err() {
                        rep.poisoned_blocks += 1;
                    }
                }
            }
        }
        Ok(rep)
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

fn meta_regions(g: &Geometry) -> [(MetaKind, u64, u64); 6] {
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
fn meta_rmap_section(g: &Geometry) -> Vec<u8> {
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

fn read_superblock<P: Pmem>(pm: &P) -> Result<(Superblock, bool)> {
    let size = pm.size();
    if size < 4 * BS {
        return Err(FsError::NotFsdax);
    }
    let mut b = vec![0u8; SB_LEN];
    let primary = pm.load_mc(0, &mut b).map_err(poisoned).and_then(|_| Superblock::decode(&b));
    let (sb, backup) = match primary {
        Ok(sb) => (sb, false),
        Err(e) => {
            let last = (size / BS - 1) * BS;
            let ok = pm.load_mc(last, &mut b).is_ok();
            match Superblock::decode(&b) {
                Ok(sb) if ok && sb.geo.total_blocks == size / BS => (sb, true),
                _ => return Err(e),
            }
        }
    };
    if sb.geo.total_blocks > size / BS {
        return corrupt(Corruption::Superblock);
    }
    Ok((sb, backup))
}

struct Loaded {
    st: State,
    gen: u64,
    slot: u8,
    /// Set when the newest checkpoint was unusable, with the reason.
    fallback: Option<FsError>,
    replayed: u64,
    log_tail: u64,
    replay_error: Option<FsError>,
}

/// Reads the newest valid checkpoint and replays its log.
fn load_state<P: Pmem>(pm: &P, sb: &Superblock) -> Result<Loaded> {
    let geo = sb.geo;
    let mut hdrs: Vec<(u8, CkptHeader)> = Vec::new();
    for slot in 0..2u8 {
        let mut b = vec![0u8; CKPT_HDR_LEN];
        if pm.load_mc(geo.ckpt_slot(slot) * BS, &mut b).is_ok() {
            if let Some(h) = CkptHeader::decode(&b, &sb.uuid) {
                hdrs.push((slot, h));
            }
        }
    }
    hdrs.sort_by_key(|(_, h)| core::cmp::Reverse(h.gen));
    let mut last_err = FsError::Corrupt(Corruption::Checksum);
    // Why the newest checkpoint could not be used (when falling back).
    let mut first_err: Option<FsError> = None;
    for (idx, (slot, h)) in hdrs.iter().enumerate() {
        let cap = (geo.ckpt_blocks - 1) * BS;
        if h.body_len > cap {
            last_err = FsError::Corrupt(Corruption::Format);
            first_err.get_or_insert(last_err);
            continue;
        }
        let mut body = vec![0u8; h.body_len as usize];
        if let Err(e) = pm.load_mc((geo.ckpt_slot(*slot) + 1) * BS, &mut body) {
            last_err = poisoned(e);
            first_err.get_or_insert(last_err);
            continue;
        }
        if crc32c(&body) != h.body_crc {
            last_err = FsError::Corrupt(Corruption::Checksum);
            first_err.get_or_insert(last_err);
            continue;
        }
        let body = match split_meta_rmap(&geo, &body) {
            Ok(b) => b,
            Err(e) => {
                last_err = e;
                first_err.get_or_insert(e);
                continue;
            }
        };
        let mut st = match State::decode_checkpoint(geo, body) {
            Ok(s) => s,
            Err(e) => {
                last_err = e;
                first_err.get_or_insert(e);
                continue;
            }
        };
        let fallback = if idx > 0 { Some(first_err.unwrap_or(last_err)) } else { None };
        let mut replayed = 0u64;
        let mut pos = 0u64;
        let mut replay_error = None;
        // Replay the log of this checkpoint's generation (records of a newer
        // generation that overwrote part of it fail the epoch check).
        {
            let cap = geo.log_blocks * BS;
            let base = geo.log_start * BS;
            let mut hb = [0u8; LOG_HDR as usize];
            while pos + LOG_HDR <= cap {
                if pm.load_mc(base + pos, &mut hb).is_err() {
                    break;
                }
                let Some(lh) = decode_log_header(&hb, &sb.uuid, h.gen, replayed) else {
                    break;
                };
                if lh.payload_len > cap - pos - LOG_HDR {
                    break;
                }
                let mut payload = vec![0u8; lh.payload_len as usize];
                if pm.load_mc(base + pos + LOG_HDR, &mut payload).is_err() {
                    break;
                }
                if crc32c_update(crc32c(&hb[8..]), &payload) != lh.crc {
                    break;
                }
                if let Err(e) = st.apply_payload(&payload, lh.nmut) {
                    replay_error = Some(e);
                    break;
                }
                replayed += 1;
                pos += (LOG_HDR + lh.payload_len).div_ceil(LOG_ALIGN) * LOG_ALIGN;
            }
        }
        // A valid first record of the next epoch proves that a newer
        // checkpoint was committed and has since become unreadable.
        let mut fallback = fallback;
        if let Some(next) = h.gen.checked_add(1) {
            let base = geo.log_start * BS;
            let mut hb = [0u8; LOG_HDR as usize];
            if pm.load_mc(base, &mut hb).is_ok() {
                if let Some(lh) = decode_log_header(&hb, &sb.uuid, next, 0) {
                    let cap = geo.log_blocks * BS;
                    let mut payload = vec![0u8; lh.payload_len.min(cap - LOG_HDR) as usize];
                    if lh.payload_len <= cap - LOG_HDR
                        && pm.load_mc(base + LOG_HDR, &mut payload).is_ok()
                        && crc32c_update(crc32c(&hb[8..]), &payload) == lh.crc
                    {
                        fallback.get_or_insert(FsError::Corrupt(Corruption::Checksum));
                    }
                }
            }
        }
        return Ok(Loaded { st, gen: h.gen, slot: *slot, fallback, replayed, log_tail: pos, replay_error });
    }
    Err(last_err)
}

/// Checks and removes the trailing metadata-rmap section of a body.
fn split_meta_rmap<'a>(geo: &Geometry, body: &'a [u8]) -> Result<&'a [u8]> {
    let expect = meta_rmap_section(geo);
    if body.len() < expect.len() || body[body.len() - expect.len()..] != expect[..] {
        return corrupt(Corruption::Space);
    }
    let _ = Dec::new(&expect);
    Ok(&body[..body.len() - expect.len()])
}
