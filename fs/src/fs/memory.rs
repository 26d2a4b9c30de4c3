//! What mounting costs in DRAM, known before anything big is decoded.
//!
//! All metadata lives in DRAM B-trees, so an image with very many files
//! needs much memory, and a kernel whose allocation failures are fatal must
//! know the cost before it mounts. [`FileSystem::estimate_mount`] reads the
//! checkpoint mount would read (the newest header with an intact body copy)
//! through a small buffer, never holding the body: the section counts,
//! every inode's extent count, every directory's entry count and name
//! lengths; then the log records mount would replay. [`MemoryEstimate`]
//! turns the counts into heap bytes by following what the mount code
//! allocates, phase by phase:
//!
//! * the body, read whole into one exactly sized buffer, held until the
//!   state is decoded and verified;
//! * the inodes, decoded into a vector, sorted (the standard library's
//!   stable sort takes a scratch buffer) and bulk-built into a B-tree
//!   (full nodes); each file's extent map and each directory's entries
//!   alike; one heap block per name;
//! * the reverse map the same way; reference counts, free, bad and
//!   metadata ranges inserted in ascending order (nodes about 6/11 full);
//! * [`State::verify`]'s sorted vectors;
//! * log replay: every insertion a log mutation makes is charged a new
//!   B-tree node (the worst case: a split), except inode numbers that
//!   ascend (a new node every 6); the free set is bounded instead by the
//!   gaps between owned, bad and metadata runs and by the fewest entries a
//!   node holds (5);
//! * `fsck --repair`'s rebuild of the derived structures, and the
//!   checkpoint a read-write mount may write (a new body, encoded into one
//!   exactly sized buffer).
//!
//! B-tree nodes are modelled on the standard library's (11 entries, a
//! parent pointer, two `u16`s; internal nodes add 12 child pointers);
//! allocations are counted as requested, plus the rounding a kernel heap
//! adds to small blocks (names). The model follows the standard library's
//! B-tree and stable sort as they are; the host test `fs/tests/memory.rs` checks
//! the model against a counting allocator on images of several shapes:
//! never below what mount really takes, and within twice of it when the
//! log is empty (a clean unmount leaves it so; a log is charged its worst
//! case).

use core::mem::size_of;

use super::body::{BodyChain, BodyReader, STREAM_CHUNK};
use super::recovery::{read_headers, read_record, read_superblock, MountOptions};
use super::FileSystem;
use crate::codec::Dec;
use crate::error::{corrupt, Corruption, FsError, Result};
use crate::format::*;
use crate::pmem::Pmem;
use crate::space::RmapKey;
use crate::state::{
    Extent, Ino, Inode, Mutation, SEC_BAD, SEC_DIRENTS, SEC_FREE, SEC_INODES, SEC_META, SEC_META_EXTENTS, SEC_REFC,
    SEC_RMAP,
};

/// The DRAM a mount of an image needs: the counts it was computed from and
/// heap bytes, resident and at the peak of each way of mounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Regular files in the checkpoint.
    pub files: u64,
    /// Directories in the checkpoint (the root included).
    pub dirs: u64,
    /// File extents in the checkpoint (each is also a reverse-map record).
    pub extents: u64,
    /// Directory entries in the checkpoint.
    pub dirents: u64,
    /// Bytes of one checkpoint body copy.
    pub body_len: u64,
    /// Log records after the checkpoint.
    pub log_records: u64,
    /// Mutations in them.
    pub log_mutations: u64,
    /// Heap bytes the metadata holds once mounted (upper bound).
    pub resident: u64,
    /// Heap bytes while the body is decoded and verified (the body, the
    /// state so far, the largest decoding phase's temporaries).
    decode: u64,
    /// The same without the verification (`fsck --repair` decodes
    /// leniently and verifies after rebuilding).
    decode_lenient: u64,
    /// Temporaries of replaying one record (its payload, a decoded name).
    replay: u64,
    /// Temporaries of verifying the replayed state.
    verify: u64,
    /// Temporaries of `fsck --repair`'s rebuild of the derived structures.
    rebuild: u64,
    /// Writing a checkpoint: the encoded body.
    checkpoint: u64,
    /// `fsck`'s list of owned ranges (every reverse-map record, sorted,
    /// merged) and its block buffer.
    scan: u64,
}

impl MemoryEstimate {
    /// Most heap bytes held at once by a mount with `opts`: read-only,
    /// read-write (which may write a checkpoint at the end) or repair
    /// (which decodes leniently, keeps a copy of the state while each log
    /// record is tried, rebuilds, verifies and writes a checkpoint).
    pub fn mount_peak(&self, opts: MountOptions) -> u64 {
        let r = self.resident;
        let replay = if opts.repair && self.log_records > 0 {
            // Each record is applied to a copy of the state first.
            r.saturating_mul(2).saturating_add(self.replay)
        } else {
            r.saturating_add(self.replay)
        };
        let mut peak = replay.max(r.saturating_add(self.verify));
        peak = peak.max(if opts.repair { self.decode_lenient } else { self.decode });
        if opts.repair {
            peak = peak.max(r.saturating_add(self.rebuild));
        }
        if !opts.read_only || opts.repair {
            peak = peak.max(r.saturating_add(self.checkpoint));
        }
        peak
    }

    /// Heap bytes `fsck` of the mounted image needs besides the mounted
    /// state: it decodes the image again (a read-only mount) and compares
    /// the two states' encodings.
    pub fn fsck_peak(&self) -> u64 {
        let ro = self.mount_peak(MountOptions { read_only: true, repair: false });
        let both = self.resident.saturating_add(self.checkpoint.saturating_mul(2));
        // The live state's verification runs first, the block scan last,
        // each alone.
        ro.max(both).max(self.verify).max(self.scan)
    }

    /// Heap bytes `fsck --repair` of a mounted file system needs besides
    /// the mounted state (which it replaces only at the end).
    pub fn repair_peak(&self) -> u64 {
        self.mount_peak(MountOptions { read_only: false, repair: true })
    }
}

/// Sizes of one kind of B-tree's nodes, as the standard library lays
/// them out: a leaf holds 11 keys and values, a parent pointer, its index
/// in the parent and its length; an internal node adds 12 child pointers.
#[derive(Clone, Copy)]
struct Tree {
    leaf: u64,
    internal: u64,
}

/// Entries per node.
const CAPACITY: u64 = 11;

impl Tree {
    const fn of<K, V>() -> Tree {
        let leaf = (12 + CAPACITY * (size_of::<K>() + size_of::<V>()) as u64).next_multiple_of(8);
        Tree { leaf, internal: leaf + 12 * 8 }
    }

    /// Bytes of a tree of `n` entries whose nodes hold `per` entries each
    /// (and one separator per node goes up a level).
    fn nodes(&self, n: u64, per: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let leaves = n / (per + 1) + 1;
        let mut bytes = leaves.saturating_mul(self.leaf);
        let mut level = leaves;
        while level > 1 {
            level = level / (per + 1) + 1;
            bytes = bytes.saturating_add(level.saturating_mul(self.internal));
        }
        bytes
    }

    /// Built from sorted input in one go (`collect`): full nodes.
    fn bulk(&self, n: u64) -> u64 {
        self.nodes(n, CAPACITY)
    }

    /// Built by inserting in ascending order: a full node splits 6 + 5, so
    /// nodes end up with 6 entries.
    fn ascending(&self, n: u64) -> u64 {
        self.nodes(n, 6)
    }

    /// One insertion anywhere, at worst: a new leaf, and a share of the
    /// internal nodes the splits add (a split leaves two nodes of at least
    /// 5 entries, so a node splits again only after 5 more insertions).
    fn insert(&self) -> u64 {
        self.leaf + self.internal / 5
    }

    /// One insertion at the right end of a tree built in order: a new leaf
    /// every 6 insertions.
    fn append(&self) -> u64 {
        (self.leaf + self.internal).div_ceil(6)
    }
}

const INODES: Tree = Tree::of::<Ino, Inode>();
const EXTENTS: Tree = Tree::of::<u64, Extent>();
const ENTRIES: Tree = Tree::of::<alloc::boxed::Box<[u8]>, Ino>();
const RMAP: Tree = Tree::of::<RmapKey, u64>();
const REFC: Tree = Tree::of::<u64, (u64, u32)>();
const RANGES: Tree = Tree::of::<u64, u64>();
const META: Tree = Tree::of::<u64, (u64, MetaKind)>();

/// A name's heap block: its bytes, rounded up the way a kernel heap
/// rounds small blocks (8-byte multiples, at least 16).
fn name_block(len: u64) -> u64 {
    len.next_multiple_of(8).max(16)
}

/// The scratch buffer the standard library's stable sort allocates for
/// `n` elements of `size` bytes: none up to 20 elements (insertion
/// sort), else max(n - n/2, min(n, 8 MB / size), 48) elements.
fn sort_scratch(n: u64, size: u64) -> u64 {
    if n <= 20 {
        return 0;
    }
    let full = 8_000_000 / size.max(1);
    (n - n / 2).max(n.min(full)).max(48).saturating_mul(size)
}

/// Capacity of a vector grown by pushing `n` elements (doubling from 4).
fn pushed(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        n.max(4).checked_next_power_of_two().unwrap_or(u64::MAX)
    }
}

/// Heap bytes while a vector pushed to `n` elements of `size` bytes grows
/// for the last time: the old and the new buffer.
fn growing(n: u64, size: u64) -> u64 {
    let cap = pushed(n);
    (cap / 2 + cap).saturating_mul(size)
}

/// What one pass over a checkpoint body counts.
#[derive(Default)]
struct BodyCounts {
    files: u64,
    dirs: u64,
    extents: u64,
    /// Bytes of every file's extent B-tree.
    extent_trees: u64,
    /// Most extents of one file.
    max_extents: u64,
    dirents: u64,
    /// Bytes of every directory's entry B-tree.
    entry_trees: u64,
    /// Heap blocks of the names.
    names: u64,
    /// Most entries of one directory.
    max_entries: u64,
    rmap: u64,
    refc: u64,
    free: u64,
    bad: u64,
    meta: u64,
    /// The next inode number (section 1).
    next_ino: u64,
}

impl BodyCounts {
    fn inodes(&self) -> u64 {
        self.files + self.dirs
    }
}

/// Parses one section's records from the stream, counting.
fn count_section<P: Pmem>(r: &mut BodyReader<'_, P>, c: &mut BodyCounts, tag: u32, count: u64, len: u64) -> Result<()> {
    let start = r.remaining();
    let used = |r: &BodyReader<'_, P>| start - r.remaining();
    match tag {
        SEC_META if len >= 8 => c.next_ino = r.u64()?,
        SEC_INODES => {
            for _ in 0..count {
                if len - used(r) < 25 {
                    return corrupt(Corruption::Format);
                }
                let _ino = r.u64()?;
                let kind = r.take(1)?[0];
                let _size = r.u64()?;
                let ne = r.u64()?;
                if ne > (len - used(r)) / 24 {
                    return corrupt(Corruption::Format);
                }
                r.skip(ne * 24)?;
                if kind == 2 {
                    c.dirs += 1;
                } else {
                    c.files += 1;
                }
                c.extents += ne;
                c.max_extents = c.max_extents.max(ne);
                c.extent_trees = c.extent_trees.saturating_add(EXTENTS.bulk(ne));
            }
        }
        SEC_DIRENTS => {
            let mut run_dir = None;
            let mut run = 0u64;
            for _ in 0..count {
                if len - used(r) < 18 {
                    return corrupt(Corruption::Format);
                }
                let dir = r.u64()?;
                let _ino = r.u64()?;
                let l = u64::from(r.u16()?);
                if l > len - used(r) {
                    return corrupt(Corruption::Format);
                }
                r.skip(l)?;
                if run_dir != Some(dir) {
                    c.entry_trees = c.entry_trees.saturating_add(ENTRIES.bulk(run));
                    c.max_entries = c.max_entries.max(run);
                    run_dir = Some(dir);
                    run = 0;
                }
                run += 1;
                c.dirents += 1;
                c.names = c.names.saturating_add(name_block(l));
            }
            c.entry_trees = c.entry_trees.saturating_add(ENTRIES.bulk(run));
            c.max_entries = c.max_entries.max(run);
        }
        // Fixed-size records: the count the bytes can hold.
        SEC_RMAP => c.rmap = count.min(len / 32),
        SEC_REFC => c.refc = count.min(len / 20),
        SEC_FREE => c.free = count.min(len / 16),
        SEC_BAD => c.bad = count.min(len / 16),
        SEC_META_EXTENTS => c.meta = count.min(len / 20),
        _ => {}
    }
    if used(r) > len {
        return corrupt(Corruption::Format);
    }
    r.skip(len - used(r))
}

/// Counts body copy `copy` of checkpoint `h` through a small buffer,
/// checking the links and the body CRC.
fn count_body<P: Pmem>(pm: &P, sb: &Superblock, h: &Header, copy: u8) -> Result<BodyCounts> {
    let chain = BodyChain::walk(pm, sb, h, copy)?;
    let mut r = chain.reader(pm)?;
    let mut c = BodyCounts::default();
    while r.remaining() > 0 {
        let tag = r.u32()?;
        let count = r.u64()?;
        let len = r.u64()?;
        let _crc = r.u32()?;
        if len > r.remaining() {
            return corrupt(Corruption::Format);
        }
        count_section(&mut r, &mut c, tag, count, len)?;
    }
    r.finish()?;
    Ok(c)
}

/// What replaying a log adds, at worst.
#[derive(Default)]
struct LogCounts {
    records: u64,
    mutations: u64,
    /// Heap bytes the mutations add to the state, but for the free set.
    growth: u64,
    /// Bytes they add to an encoded checkpoint body, but for the free set.
    body_growth: u64,
    /// Entries they add: extents (and reverse-map records), directory
    /// entries, shared ranges, bad ranges.
    extents: u64,
    dirents: u64,
    refc: u64,
    bad: u64,
    /// Free ranges they can add, mutation by mutation.
    free: u64,
    /// The largest record payload.
    max_payload: u64,
}

/// Counts the log records of checkpoint `h` that mount would replay
/// (either copy of each), charging each mutation what it can add.
fn count_log<P: Pmem>(pm: &P, sb: &Superblock, h: &Header, body: &BodyCounts) -> LogCounts {
    let mut c = LogCounts::default();
    let mut next = body.next_ino;
    let mut pos = 0u64;
    while let Some((lh, payload)) =
        read_record(pm, sb, h, 0, pos, c.records).or_else(|| read_record(pm, sb, h, 1, pos, c.records))
    {
        c.records += 1;
        c.max_payload = c.max_payload.max(payload.len() as u64);
        let mut d = Dec::new(&payload);
        for _ in 0..lh.nmut {
            let Ok(m) = Mutation::decode(&mut d) else { break };
            c.mutations += 1;
            let (heap, bytes) = match m {
                Mutation::InodeAlloc { ino, .. } => {
                    let at_end = ino >= next;
                    next = next.max(ino.saturating_add(1));
                    (if at_end { INODES.append() } else { INODES.insert() }, 25)
                }
                Mutation::Map { fresh, .. } => {
                    // A fresh map splits a free range; a shared one adds
                    // shared ranges at both ends.
                    c.extents += 1;
                    c.free += u64::from(fresh);
                    let refc = if fresh { 0 } else { 2 };
                    c.refc += refc;
                    (EXTENTS.insert() + RMAP.insert() + refc * REFC.insert(), 24 + 32 + 20 * refc)
                }
                Mutation::Unmap { len, .. } => {
                    // Splits an extent and shared ranges; frees up to one
                    // range per extent it removes (at most one per block),
                    // and one more.
                    c.extents += 1;
                    c.refc += 2;
                    let removed = len.min(body.extents.saturating_add(c.extents));
                    c.free = c.free.saturating_add(removed).saturating_add(1);
                    (EXTENTS.insert() + RMAP.insert() + 2 * REFC.insert(), 24 + 32 + 40)
                }
                Mutation::DirAdd { name, .. } => {
                    c.dirents += 1;
                    let l = name.len() as u64;
                    (ENTRIES.insert() + name_block(l), 18 + l)
                }
                Mutation::BadAdd { .. } | Mutation::BadRemove { .. } => {
                    // A bad range split or added; a free range split or
                    // added.
                    c.bad += 1;
                    c.free += 1;
                    (RANGES.insert(), 16)
                }
                // The counter's section appears with the first event.
                Mutation::MemoryFailure => (0, 32),
                Mutation::InodeFree { .. } | Mutation::SetSize { .. } | Mutation::DirRemove { .. } => (0, 0),
            };
            c.growth = c.growth.saturating_add(heap);
            c.body_growth = c.body_growth.saturating_add(bytes);
        }
        pos += (LOG_HDR + lh.payload_len).div_ceil(LOG_ALIGN) * LOG_ALIGN;
    }
    c
}

impl<P: Pmem> FileSystem<P> {
    /// Estimates the DRAM a mount of the image on `pm` needs, reading it
    /// the way mount does (the newest header with an intact body copy, and
    /// its log) without holding the body: a small, fixed buffer. The
    /// errors are mount's: no file system, an unsupported version, a body
    /// that cannot be read or fails its checks.
    pub fn estimate_mount(pm: &P) -> Result<MemoryEstimate> {
        let (sb, _) = read_superblock(pm)?;
        if sb.feat_incompat & !FEAT_INCOMPAT_SUPPORTED != 0 {
            return Err(FsError::NotFsdax);
        }
        let (hdrs, _) = read_headers(pm, &sb);
        let mut last_err = FsError::Corrupt(Corruption::Checksum);
        let mut tried: alloc::vec::Vec<u64> = alloc::vec::Vec::new();
        for (_, h) in &hdrs {
            if tried.contains(&h.gen) {
                continue;
            }
            tried.push(h.gen);
            for copy in 0..2u8 {
                match count_body(pm, &sb, h, copy) {
                    Ok(body) => {
                        let log = count_log(pm, &sb, h, &body);
                        return Ok(model(h.body_len, &body, &log));
                    }
                    Err(e) => last_err = e,
                }
            }
        }
        Err(last_err)
    }

    /// [`FileSystem::estimate_mount`] of this file system's device, as it
    /// is on the media now (what `fsck` and `fsck --repair` read).
    pub fn memory_estimate(&self) -> Result<MemoryEstimate> {
        Self::estimate_mount(&self.pm)
    }
}

/// Heap bytes from the counts: see the module documentation.
fn model(body_len: u64, b: &BodyCounts, log: &LogCounts) -> MemoryEstimate {
    let s_inode = size_of::<(Ino, Inode)>() as u64;
    let s_extent = size_of::<(u64, Extent)>() as u64;
    let s_entry = size_of::<(alloc::boxed::Box<[u8]>, Ino)>() as u64;
    let s_rmap = size_of::<(RmapKey, u64)>() as u64;
    let body = body_len;
    let ni = b.inodes();
    let inode_tree = INODES.bulk(ni);
    let rmap_tree = RMAP.bulk(b.rmap);
    let space = REFC
        .ascending(b.refc)
        .saturating_add(RANGES.ascending(b.free))
        .saturating_add(RANGES.ascending(b.bad))
        .saturating_add(META.ascending(b.meta));
    // A fixed part: the empty state's maps, the mount's small vectors.
    let fixed = 4096;
    // The free set after replay: at most one range more per free range a
    // mutation can add, and never more than one per gap between owned,
    // bad and metadata runs; any B-tree holds at least 5 entries a node.
    let extents = b.extents.saturating_add(log.extents);
    let bad = b.bad.saturating_add(log.bad);
    let free = b.free.saturating_add(log.free).min(extents.saturating_add(bad).saturating_add(b.meta + 8));
    let free_growth =
        log.free.saturating_mul(RANGES.insert()).min(RANGES.nodes(free, 5).saturating_sub(RANGES.ascending(b.free)));
    let growth = log.growth.saturating_add(free_growth);
    let body_growth = log.body_growth.saturating_add(free.saturating_sub(b.free).saturating_mul(16));
    let names_and_trees = b.names.saturating_add(b.entry_trees).saturating_add(b.extent_trees);
    let decoded = inode_tree.saturating_add(names_and_trees).saturating_add(rmap_tree).saturating_add(space);
    let resident_ckpt = decoded.saturating_add(fixed);
    let resident = resident_ckpt.saturating_add(growth);

    // Decoding, phase by phase, with the body held throughout.
    let per_file = b.max_extents.saturating_mul(s_extent).saturating_add(sort_scratch(b.max_extents, s_extent));
    let inodes = b
        .extent_trees
        .saturating_add(ni.saturating_mul(s_inode))
        .saturating_add(sort_scratch(ni, s_inode).max(inode_tree))
        .saturating_add(per_file);
    let dirs = inode_tree
        .saturating_add(names_and_trees)
        .saturating_add(b.max_entries.saturating_mul(s_entry))
        .saturating_add(sort_scratch(b.max_entries, s_entry));
    let rmap = inode_tree
        .saturating_add(names_and_trees)
        .saturating_add(b.rmap.saturating_mul(s_rmap))
        .saturating_add(sort_scratch(b.rmap, s_rmap).max(rmap_tree));
    let verify_ckpt = verify_temporaries(b.rmap, b.refc, b.free, b.bad, b.meta);
    let base = body.saturating_add(fixed).saturating_add(body.min(STREAM_CHUNK as u64));
    let decode_lenient = base.saturating_add(inodes.max(dirs).max(rmap).max(decoded));
    let decode = decode_lenient.max(base.saturating_add(decoded).saturating_add(verify_ckpt));

    // After replay: the counts grow by what the log adds.
    let refc = b.refc.saturating_add(log.refc);
    let ranges = free.saturating_add(bad);
    let dirents = b.dirents.saturating_add(log.dirents);
    let replay = log.max_payload.saturating_add(256 + 64);
    let verify = verify_temporaries(extents, refc, ranges, 0, b.meta);
    // Rebuild: the edge list, the reverse map and reference counts
    // inserted in inode order, owned ranges, the sorted taken list.
    let rebuild = growing(dirents, 16)
        .saturating_add(extents.saturating_mul(RMAP.insert() / 5 + RANGES.insert() / 5))
        .saturating_add(refc.saturating_mul(REFC.insert() / 5))
        .saturating_add(growing(extents, 16))
        .saturating_add(extents.saturating_add(ranges).saturating_add(b.meta).saturating_mul(16));
    // A checkpoint: the new body (encoded into one exactly sized buffer),
    // a few ranges for its new extents.
    let new_body = body.saturating_add(body_growth).saturating_add(512);
    let checkpoint = new_body.saturating_add(4 * RANGES.insert() + 1024);
    MemoryEstimate {
        files: b.files,
        dirs: b.dirs,
        extents: b.extents,
        dirents: b.dirents,
        body_len,
        log_records: log.records,
        log_mutations: log.mutations,
        resident,
        decode,
        decode_lenient,
        replay,
        verify,
        rebuild,
        checkpoint,
        scan: growing(extents, 32).saturating_add(growing(extents, 16).saturating_mul(2)).saturating_add(4096),
    }
}

/// [`State::verify`]'s vectors: the extents as intervals (32 bytes each),
/// their start and end events (16 each), the owned intervals and the
/// shared ones as they are pushed, the stored shared ranges, the free, bad
/// and metadata lists, all of them together, merged.
///
/// [`State::verify`]: crate::state::State::verify
fn verify_temporaries(extents: u64, refc: u64, free: u64, bad: u64, meta: u64) -> u64 {
    let lists = free.saturating_add(bad).saturating_add(meta).saturating_mul(16);
    let all = extents.saturating_add(bad).saturating_add(meta);
    extents
        .saturating_mul(32 + 32)
        .saturating_add(growing(extents, 16))
        .saturating_add(growing(refc, 24).saturating_mul(2))
        .saturating_add(lists)
        .saturating_add(all.saturating_mul(16))
        .saturating_add(growing(all, 16))
}
