//! Format and mount: mkfs, mount (superblock copy, header copy, body copy,
//! log replay from either log copy), repairs at mount, unmount.

use alloc::vec;
use alloc::vec::Vec;

use super::body::BodyChain;
use super::{failed, FileSystem, BS};
use crate::codec::Enc;
use crate::crc::{crc32c, crc32c_update};
use crate::error::{corrupt, Corruption, FsError, Result};
use crate::format::*;
use crate::pmem::Pmem;
use crate::state::{State, TxnEffects};

/// Options for [`FileSystem::mkfs`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MkfsOptions {
    /// File-system identity (stamped into headers, links and log records).
    pub uuid: [u8; 16],
    /// Blocks of each log copy (default: 1/256 of the device, 64 KiB to
    /// 8 MiB).
    pub log_blocks: Option<u64>,
}

/// Options for [`FileSystem::mount_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MountOptions {
    /// Never write to the device (fsck, inspection).
    pub read_only: bool,
    /// Rebuild a clean checkpoint from the newest consistent state
    /// (`fsck --repair`): derived structures (reverse map, reference
    /// counts, free space, link counts) are recomputed from the extents and
    /// directory entries, and damaged copies are rewritten.
    pub repair: bool,
}

/// Copies of metadata found damaged (poisoned, torn or stale) at mount or
/// by fsck. Each structure has two copies; one good copy is enough to
/// mount, and a read-write mount rewrites the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Damage {
    /// Superblock copies: primary, backup.
    pub superblock: [bool; 2],
    /// Header copies A and B.
    pub header: [bool; 2],
    /// Checkpoint body copies A and B.
    pub body: [bool; 2],
    /// Log copies A and B (some record valid in one copy only).
    pub log: [bool; 2],
}

impl Damage {
    /// Nothing damaged.
    pub fn is_empty(&self) -> bool {
        *self == Damage::default()
    }
    /// The damaged copies, in words.
    pub fn describe(&self) -> Vec<MetaKind> {
        let mut v = Vec::new();
        if self.superblock[0] {
            v.push(MetaKind::Superblock);
        }
        if self.superblock[1] {
            v.push(MetaKind::BackupSuperblock);
        }
        for c in 0..2u8 {
            let i = usize::from(c);
            if self.header[i] {
                v.push(MetaKind::Header(c));
            }
            if self.body[i] {
                v.push(MetaKind::Body(c));
            }
            if self.log[i] {
                v.push(MetaKind::Log(c));
            }
        }
        v
    }
    fn merge(&mut self, o: &Damage) {
        for i in 0..2 {
            self.superblock[i] |= o.superblock[i];
            self.header[i] |= o.header[i];
            self.body[i] |= o.body[i];
            self.log[i] |= o.log[i];
        }
    }
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
    /// Metadata copies found damaged.
    pub damage: Damage,
    /// A read-write mount rewrote the damaged copies (a new checkpoint,
    /// superblocks rewritten in place).
    pub repaired: bool,
    /// Orphaned inodes (files no directory names) deleted at mount.
    pub orphans_deleted: u64,
    /// Times a log that could not be written was relocated (a checkpoint
    /// to fresh extents) since mount.
    pub relocations: u64,
}

impl<P: Pmem> FileSystem<P> {
    /// Formats `pm` and mounts it.
    pub fn mkfs(mut pm: P, opts: MkfsOptions) -> Result<Self> {
        let total = pm.size() / BS;
        let geo = Geometry::for_device(total, opts.log_blocks)?;
        let sb = Superblock {
            version: VERSION,
            feat_compat: 0,
            feat_ro_compat: 0,
            feat_incompat: FEAT_INCOMPAT_SUPPORTED,
            geo,
            uuid: opts.uuid,
        };
        // Invalidate what was there first: the superblocks (written last,
        // they make the new file system exist) and the header copies.
        for b in [0, geo.backup_sb_block(), geo.header_block(0), geo.header_block(1)] {
            pm.store_zeros(b * BS, BS).map_err(failed)?;
            pm.flush(b * BS, BS);
        }
        pm.fence();
        let mut fs = FileSystem::assemble(pm, sb, State::fresh(geo)?, empty_header(&sb), MountInfo::default());
        // First checkpoint (generation 1), then the superblocks.
        fs.checkpoint()?;
        fs.info.generation = fs.gen;
        for copy in 0..2 {
            fs.write_superblock(copy)?;
        }
        Ok(fs)
    }

    pub(super) fn assemble(pm: P, sb: Superblock, st: State, hdr: Header, info: MountInfo) -> Self {
        let geo = sb.geo;
        FileSystem {
            pm,
            sb,
            st,
            gen: hdr.gen,
            hdr,
            log_tail: 0,
            seq: 0,
            ro: info.read_only,
            txn: Enc::default(),
            txn_n: 0,
            txn_shrinks: false,
            fx: TxnEffects::default(),
            data_dirty: false,
            copy_stop: None,
            cursor: geo.data_start,
            info,
            held: alloc::collections::BTreeSet::new(),
        }
    }

    /// Mounts read-write, replaying the log.
    pub fn mount(pm: P) -> Result<Self> {
        Self::mount_with(pm, MountOptions::default())
    }

    /// Mounts with options.
    pub fn mount_with(pm: P, opts: MountOptions) -> Result<Self> {
        let mut info = MountInfo { read_only: opts.read_only, ..MountInfo::default() };
        let (sb, sb_damage) = read_superblock(&pm)?;
        info.used_backup_superblock = sb_damage[0];
        info.damage.superblock = sb_damage;
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
        let loaded = load_state(&pm, &sb, opts.repair)?;
        info.damage.merge(&loaded.damage);
        if let Some(why) = loaded.fallback {
            // Both body copies of the newest checkpoint are unreadable: an
            // older one is mounted read-only (updates after it are lost).
            degrade(&mut info, why);
        }
        let mut st = loaded.st;
        if opts.repair {
            st.rebuild_derived()?;
        }
        if let Some(e) = loaded.replay_error {
            if !opts.repair {
                degrade(&mut info, e);
            }
        }
        if loaded.replayed > 0 || opts.repair {
            if let Err(e) = st.verify() {
                if opts.repair {
                    return Err(e);
                }
                degrade(&mut info, e);
            }
        }
        info.replayed = loaded.replayed;
        info.generation = loaded.hdr.gen;
        let mut fs = FileSystem::assemble(pm, sb, st, loaded.hdr, info);
        fs.log_tail = loaded.log_tail;
        fs.seq = loaded.replayed;
        if !fs.ro {
            let orphans = fs.delete_orphans()?;
            fs.info.orphans_deleted = orphans;
            let damaged = !fs.info.damage.is_empty();
            if loaded.replayed > 0 || damaged || orphans > 0 || opts.repair {
                match fs.checkpoint() {
                    // A media error leaves the replayed state mounted read-only
                    // (the checkpoint shut it down and says why).
                    Err(e) if !e.is_media() => return Err(e),
                    _ => {}
                }
                for copy in 0..2u8 {
                    if fs.info.damage.superblock[usize::from(copy)] && !fs.ro {
                        if let Err(e) = fs.write_superblock(copy) {
                            fs.shut_down(e);
                        }
                    }
                }
                fs.info.repaired = damaged && !fs.ro;
            }
        }
        Ok(fs)
    }

    /// `fsck --repair` on a mounted file system: reads the newest
    /// consistent state from the media again (either copy of everything;
    /// the log up to the first record that cannot be applied), recomputes
    /// the derived structures, deletes orphans, and writes a clean
    /// checkpoint and both superblocks. Works on a file system that shut
    /// down read-only; not on one mounted read-only on request.
    pub fn repair(&mut self) -> Result<()> {
        if self.info.read_only && self.info.degraded.is_none() {
            return Err(FsError::ReadOnly);
        }
        let loaded = load_state(&self.pm, &self.sb, true)?;
        let mut st = loaded.st;
        st.rebuild_derived()?;
        st.verify()?;
        self.st = st;
        self.hdr = loaded.hdr;
        self.gen = loaded.hdr.gen;
        self.log_tail = loaded.log_tail;
        self.seq = loaded.replayed;
        self.txn.buf.clear();
        self.txn_n = 0;
        self.fx = TxnEffects::default();
        self.ro = false;
        self.info.read_only = false;
        self.info.degraded = None;
        self.info.damage.merge(&loaded.damage);
        self.info.orphans_deleted += self.delete_orphans()?;
        self.write_checkpoint().inspect_err(|&e| self.shut_down(e))?;
        for copy in 0..2 {
            self.write_superblock(copy).inspect_err(|&e| self.shut_down(e))?;
        }
        self.info.repaired = true;
        self.info.damage = Damage::default();
        Ok(())
    }

    /// Writes a final checkpoint and returns the device.
    pub fn unmount(mut self) -> Result<P> {
        if !self.ro {
            self.checkpoint()?;
        }
        Ok(self.pm)
    }

    /// Rewrites superblock copy `copy` (0 primary, 1 backup) in place, as a
    /// whole-page recovery write (which also clears poison there).
    pub(super) fn write_superblock(&mut self, copy: u8) -> Result<()> {
        let blk = if copy == 0 { 0 } else { self.sb.geo.backup_sb_block() };
        let mut page = vec![0u8; BS as usize];
        let b = self.sb.encode();
        page[..b.len()].copy_from_slice(&b);
        self.pm.recovery_write(blk * BS, &page)?;
        Ok(())
    }
}

/// A header naming nothing (before the first checkpoint).
fn empty_header(sb: &Superblock) -> Header {
    Header { gen: 0, body_len: 0, body_crc: 0, body: [Run::default(); 2], log: [Run::default(); 2], uuid: sb.uuid }
}

/// Reads the superblock: the primary, else the backup. Returns which
/// copies are damaged (unreadable, failing their checks, or disagreeing).
pub(super) fn read_superblock<P: Pmem>(pm: &P) -> Result<(Superblock, [bool; 2])> {
    let size = pm.size();
    if size < MIN_BLOCKS * BS {
        return Err(FsError::NotFsdax);
    }
    let read = |blk: u64| -> Result<Superblock> {
        let mut b = vec![0u8; SB_LEN];
        pm.load(blk * BS, &mut b).map_err(failed)?;
        Superblock::decode(&b)
    };
    let primary = read(0);
    let backup = read(size / BS - 1);
    let fits = |sb: &Superblock| sb.geo.total_blocks == size / BS;
    match (primary, backup) {
        (Ok(p), Ok(b)) if p == b && fits(&p) => Ok((p, [false, false])),
        (Ok(p), _) if fits(&p) => Ok((p, [false, true])),
        (Err(_), Ok(b)) if fits(&b) => Ok((b, [true, false])),
        (Ok(_), _) => corrupt(Corruption::Superblock),
        (Err(e), _) => Err(e),
    }
}

pub(super) struct Loaded {
    pub(super) st: State,
    pub(super) hdr: Header,
    /// Set when the newest checkpoint was unusable, with the reason.
    pub(super) fallback: Option<FsError>,
    pub(super) replayed: u64,
    pub(super) log_tail: u64,
    pub(super) replay_error: Option<FsError>,
    pub(super) damage: Damage,
}

/// Reads both header copies: the valid ones, newest first, and which
/// copies are damaged or stale.
pub(super) fn read_headers<P: Pmem>(pm: &P, sb: &Superblock) -> (Vec<(u8, Header)>, [bool; 2]) {
    let mut hdrs: Vec<(u8, Header)> = Vec::new();
    for copy in 0..2u8 {
        let mut b = [0u8; HDR_LEN];
        if pm.load(sb.geo.header_block(copy) * BS, &mut b).is_ok() {
            if let Some(h) = Header::decode(&b, &sb.uuid) {
                hdrs.push((copy, h));
            }
        }
    }
    hdrs.sort_by_key(|(c, h)| (core::cmp::Reverse(h.gen), *c));
    let mut damaged = [true, true];
    if let Some((_, newest)) = hdrs.first() {
        for (c, h) in &hdrs {
            if h == newest {
                damaged[usize::from(*c)] = false;
            }
        }
    }
    (hdrs, damaged)
}

/// Reads body copy `copy` of the checkpoint `h` names by following its
/// links; returns the body and the extents walked. The links are walked
/// and checked first, so the body is allocated (once, exactly) only when
/// the chain really holds the header's length: a hostile length cannot
/// make it allocate.
pub(super) fn read_body<P: Pmem>(pm: &P, sb: &Superblock, h: &Header, copy: u8) -> Result<(Vec<u8>, Vec<Run>)> {
    let chain = BodyChain::walk(pm, sb, h, copy)?;
    let body = chain.read_all(pm)?;
    Ok((body, chain.runs().to_vec()))
}

/// Checks body copy `copy` (links, every byte readable, CRC) without
/// holding it.
pub(super) fn check_body<P: Pmem>(pm: &P, sb: &Superblock, h: &Header, copy: u8) -> Result<()> {
    BodyChain::walk(pm, sb, h, copy)?.verify(pm)
}

/// One log record at byte `pos` of log copy `copy`, if it is a valid
/// record `seq` of epoch `h.gen`: (header, payload).
pub(super) fn read_record<P: Pmem>(
    pm: &P,
    sb: &Superblock,
    h: &Header,
    copy: usize,
    pos: u64,
    seq: u64,
) -> Option<(LogHeader, Vec<u8>)> {
    let run = h.log[copy];
    let cap = run.len * BS;
    let base = run.pblk * BS;
    if pos + LOG_HDR > cap {
        return None;
    }
    let mut hb = [0u8; LOG_HDR as usize];
    pm.load(base + pos, &mut hb).ok()?;
    let lh = decode_log_header(&hb, &sb.uuid, h.gen, seq)?;
    if lh.payload_len > cap - pos - LOG_HDR {
        return None;
    }
    let mut payload = Vec::new();
    payload.try_reserve_exact(lh.payload_len as usize).ok()?;
    payload.resize(lh.payload_len as usize, 0);
    pm.load(base + pos + LOG_HDR, &mut payload).ok()?;
    (crc32c_update(crc32c(&hb[8..]), &payload) == lh.crc).then_some((lh, payload))
}

/// Reads the newest checkpoint (either body copy) and replays its log
/// (each record from either log copy). With `lenient` (repair), the
/// checkpoint is not checked against the cross-structure invariants (the
/// caller rebuilds and checks them), and replay stops before a record that
/// cannot be applied, leaving the state as it was before that record.
pub(super) fn load_state<P: Pmem>(pm: &P, sb: &Superblock, lenient: bool) -> Result<Loaded> {
    let geo = sb.geo;
    let (hdrs, header_damage) = read_headers(pm, sb);
    let mut damage = Damage { header: header_damage, ..Damage::default() };
    let mut last_err = FsError::Corrupt(Corruption::Checksum);
    let mut first_err: Option<FsError> = None;
    let mut tried: Vec<u64> = Vec::new();
    for (idx, (_, h)) in hdrs.iter().enumerate() {
        if tried.contains(&h.gen) {
            continue;
        }
        tried.push(h.gen);
        let logs_ok = h.log.iter().all(|r| geo.in_data(r.pblk, r.len) && r.len == h.log[0].len);
        let mut body = None;
        let mut body_damage = [false, false];
        for copy in 0..2u8 {
            // The first good copy is read; the other is only checked, so
            // that one body is held at a time.
            let got = if body.is_none() {
                read_body(pm, sb, h, copy).map(Some)
            } else {
                check_body(pm, sb, h, copy).map(|()| None)
            };
            match got {
                Ok(Some(b)) => body = Some((copy, b)),
                Ok(None) => {}
                Err(e) => {
                    body_damage[usize::from(copy)] = true;
                    last_err = e;
                }
            }
        }
        let decoded = match body {
            Some((copy, (bytes, runs))) if logs_ok => {
                let st = if lenient {
                    State::decode_checkpoint_unverified(geo, &bytes)
                } else {
                    State::decode_checkpoint(geo, &bytes)
                };
                st.and_then(|st| check_meta_runs(&st, h, copy, &runs).map(|()| st))
            }
            Some(_) => corrupt(Corruption::Format),
            None => Err(last_err),
        };
        let mut st = match decoded {
            Ok(st) => st,
            Err(e) => {
                last_err = e;
                first_err.get_or_insert(e);
                continue;
            }
        };
        damage.body = body_damage;
        let fallback = if idx > 0 { Some(first_err.unwrap_or(last_err)) } else { None };
        let (replayed, log_tail, replay_error, log_damage) = replay(pm, sb, h, &mut st, lenient)?;
        damage.log = log_damage;
        return Ok(Loaded { st, hdr: *h, fallback, replayed, log_tail, replay_error, damage });
    }
    Err(first_err.unwrap_or(last_err))
}

/// The metadata extents the body lists must be exactly what the header
/// names: both log copies, and the body copy that was read.
fn check_meta_runs(st: &State, h: &Header, copy: u8, runs: &[Run]) -> Result<()> {
    let has = |r: &Run, k: MetaKind| st.space.meta.get(&r.pblk) == Some(&(r.len, k));
    let ok = has(&h.log[0], MetaKind::Log(0))
        && has(&h.log[1], MetaKind::Log(1))
        && runs.iter().all(|r| has(r, MetaKind::Body(copy)))
        && st.space.meta.values().filter(|(_, k)| *k == MetaKind::Body(copy)).count() == runs.len();
    if ok {
        Ok(())
    } else {
        corrupt(Corruption::Space)
    }
}

/// Replays the log of `h` onto `st`: (records, bytes, error that stopped
/// it, log copies with a record the other copy lacks).
fn replay<P: Pmem>(
    pm: &P,
    sb: &Superblock,
    h: &Header,
    st: &mut State,
    lenient: bool,
) -> Result<(u64, u64, Option<FsError>, [bool; 2])> {
    let mut replayed = 0u64;
    let mut pos = 0u64;
    let mut damage = [false, false];
    let mut replay_error = None;
    loop {
        let a = read_record(pm, sb, h, 0, pos, replayed);
        let b = read_record(pm, sb, h, 1, pos, replayed);
        let (lh, payload) = match (a, b) {
            (Some(a), Some(b)) => {
                if a.1 != b.1 {
                    damage[1] = true;
                }
                a
            }
            (Some(a), None) => {
                damage[1] = true;
                a
            }
            (None, Some(b)) => {
                damage[0] = true;
                b
            }
            (None, None) => break,
        };
        if lenient {
            // Apply to a scratch copy first only when the record fails, so
            // that the state stays as it was before the record.
            let mut probe = st.clone();
            if let Err(e) = probe.apply_payload(&payload, lh.nmut) {
                replay_error = Some(e);
                break;
            }
            *st = probe;
        } else if let Err(e) = st.apply_payload(&payload, lh.nmut) {
            replay_error = Some(e);
            break;
        }
        replayed += 1;
        pos += (LOG_HDR + lh.payload_len).div_ceil(LOG_ALIGN) * LOG_ALIGN;
    }
    Ok((replayed, pos, replay_error, damage))
}
