//! Format and mount: mkfs, mount (superblock choice, checkpoint slot
//! choice, log replay), unmount.

use alloc::vec;
use alloc::vec::Vec;

use super::rmap::meta_rmap_section;
use super::{failed, FileSystem, BS};
use crate::codec::{Dec, Enc};
use crate::crc::{crc32c, crc32c_update};
use crate::error::{corrupt, Corruption, FsError, Result};
use crate::format::*;
use crate::pmem::Pmem;
use crate::state::{State, TxnEffects};

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

impl<P: Pmem> FileSystem<P> {
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
        pm.store_zeros(geo.ckpt_slot(0) * BS, BS).map_err(failed)?;
        pm.store_zeros(geo.ckpt_slot(1) * BS, BS).map_err(failed)?;
        pm.store_zeros(geo.log_start * BS, BS).map_err(failed)?;
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
        fs.info.generation = fs.gen;
        let b = sb.encode();
        fs.pm.store_flush(0, &b).map_err(failed)?;
        fs.pm.store_flush((total - 1) * BS, &b).map_err(failed)?;
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
            match fs.checkpoint() {
                // A media error leaves the replayed state mounted read-only
                // (the checkpoint shut it down and says why).
                Err(e) if !e.is_media() => return Err(e),
                _ => {}
            }
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
}

pub(super) fn read_superblock<P: Pmem>(pm: &P) -> Result<(Superblock, bool)> {
    let size = pm.size();
    if size < 4 * BS {
        return Err(FsError::NotFsdax);
    }
    let mut b = vec![0u8; SB_LEN];
    let primary = pm.load(0, &mut b).map_err(failed).and_then(|_| Superblock::decode(&b));
    let (sb, backup) = match primary {
        Ok(sb) => (sb, false),
        Err(e) => {
            let last = (size / BS - 1) * BS;
            let ok = pm.load(last, &mut b).is_ok();
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

pub(super) struct Loaded {
    pub(super) st: State,
    pub(super) gen: u64,
    pub(super) slot: u8,
    /// Set when the newest checkpoint was unusable, with the reason.
    pub(super) fallback: Option<FsError>,
    pub(super) replayed: u64,
    pub(super) log_tail: u64,
    pub(super) replay_error: Option<FsError>,
}

/// Reads the newest valid checkpoint and replays its log.
pub(super) fn load_state<P: Pmem>(pm: &P, sb: &Superblock) -> Result<Loaded> {
    let geo = sb.geo;
    let mut hdrs: Vec<(u8, CkptHeader)> = Vec::new();
    for slot in 0..2u8 {
        let mut b = vec![0u8; CKPT_HDR_LEN];
        if pm.load(geo.ckpt_slot(slot) * BS, &mut b).is_ok() {
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
        if let Err(e) = pm.load((geo.ckpt_slot(*slot) + 1) * BS, &mut body) {
            last_err = failed(e);
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
                if pm.load(base + pos, &mut hb).is_err() {
                    break;
                }
                let Some(lh) = decode_log_header(&hb, &sb.uuid, h.gen, replayed) else {
                    break;
                };
                if lh.payload_len > cap - pos - LOG_HDR {
                    break;
                }
                let mut payload = vec![0u8; lh.payload_len as usize];
                if pm.load(base + pos + LOG_HDR, &mut payload).is_err() {
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
            if pm.load(base, &mut hb).is_ok() {
                if let Some(lh) = decode_log_header(&hb, &sb.uuid, next, 0) {
                    let cap = geo.log_blocks * BS;
                    let mut payload = vec![0u8; lh.payload_len.min(cap - LOG_HDR) as usize];
                    if lh.payload_len <= cap - LOG_HDR
                        && pm.load(base + LOG_HDR, &mut payload).is_ok()
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
