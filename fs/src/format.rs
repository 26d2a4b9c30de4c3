//! On-media format: constants, superblock, checkpoint header, log record
//! header. `docs/FORMAT.md` is the prose version of this file.

use fsdax_pmem_api::{HUGE_2M, PAGE_SIZE};

use crate::codec::{Dec, Enc};
use crate::crc::crc32c;
use crate::error::{corrupt, Corruption, FsError, Result};

/// File-system block size (bytes): one base page, so that every block can
/// be mapped on its own (DAX) and rewritten by a recovery write.
pub const BLOCK_SIZE: u64 = PAGE_SIZE;
/// Blocks per 2 MiB huge page.
pub const HUGE_BLOCKS: u64 = HUGE_2M / BLOCK_SIZE;
/// Longest extent (blocks): one 2 MiB huge page. Bounds rmap range queries.
pub const MAX_EXTENT: u64 = HUGE_BLOCKS;
/// Longest name in a directory (bytes).
pub const MAX_NAME: usize = 255;
/// Largest file block number + 1.
pub const MAX_FILE_BLOCKS: u64 = 1 << 40;
/// Largest file size (bytes).
pub const MAX_FILE_SIZE: u64 = MAX_FILE_BLOCKS * BLOCK_SIZE;

/// Superblock magic.
pub const SB_MAGIC: [u8; 8] = *b"FSDAXSB1";
/// Format version.
pub const VERSION: u32 = 1;
/// Incompatible feature: per-file extent maps with shared (reflinked) extents.
pub const FEAT_INCOMPAT_REFLINK: u64 = 1 << 0;
/// Incompatible feature: persistent reverse map and refcount sections.
pub const FEAT_INCOMPAT_RMAP: u64 = 1 << 1;
/// Incompatible feature: metadata redo log + checkpoints.
pub const FEAT_INCOMPAT_LOG: u64 = 1 << 2;
/// Incompatible features this code understands.
pub const FEAT_INCOMPAT_SUPPORTED: u64 = FEAT_INCOMPAT_REFLINK | FEAT_INCOMPAT_RMAP | FEAT_INCOMPAT_LOG;
/// Read-only-compatible features this code understands (none yet).
pub const FEAT_RO_COMPAT_SUPPORTED: u64 = 0;

/// Checkpoint header magic.
pub const CKPT_MAGIC: [u8; 8] = *b"FSDXCKPT";
/// Log record magic.
pub const LOG_MAGIC: u32 = u32::from_le_bytes(*b"FSLG");
/// Log record header length (bytes).
pub const LOG_HDR: u64 = 40;
/// Log records are padded to this (a cache line).
pub const LOG_ALIGN: u64 = 64;

/// Where everything lives, in blocks. Fixed at mkfs; stored in the
/// superblock and its backup (the last block of the device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Device size in blocks.
    pub total_blocks: u64,
    /// First block of checkpoint slot A (slot B follows it).
    pub ckpt_start: u64,
    /// Blocks per checkpoint slot.
    pub ckpt_blocks: u64,
    /// First block of the metadata log.
    pub log_start: u64,
    /// Blocks of metadata log.
    pub log_blocks: u64,
    /// First data block (2 MiB aligned).
    pub data_start: u64,
    /// Number of data blocks.
    pub data_blocks: u64,
}

impl Geometry {
    /// Picks a layout for a device of `total_blocks`.
    pub fn for_device(total_blocks: u64, ckpt: Option<u64>, log: Option<u64>) -> Result<Self> {
        let ckpt_blocks = ckpt.unwrap_or((total_blocks / 32).clamp(64, 1 << 18));
        let log_blocks = log.unwrap_or((total_blocks / 64).clamp(32, 1 << 14));
        let ckpt_start = 1;
        let log_start = ckpt_start + 2 * ckpt_blocks;
        let meta_end = log_start + log_blocks;
        let data_start = meta_end.div_ceil(HUGE_BLOCKS) * HUGE_BLOCKS;
        if ckpt_blocks < 2 || log_blocks < 1 || total_blocks < data_start + 2 {
            return Err(FsError::NoSpace);
        }
        let g = Geometry {
            total_blocks,
            ckpt_start,
            ckpt_blocks,
            log_start,
            log_blocks,
            data_start,
            data_blocks: total_blocks - 1 - data_start,
        };
        g.validate()?;
        Ok(g)
    }
    /// Checks the regions are ordered, non-overlapping and on the device.
    pub fn validate(&self) -> Result<()> {
        let ok = (|| {
            let b = self.ckpt_start.checked_add(self.ckpt_blocks.checked_mul(2)?)?;
            let l = self.log_start.checked_add(self.log_blocks)?;
            let d = self.data_start.checked_add(self.data_blocks)?;
            Some(
                self.ckpt_start >= 1
                    && self.ckpt_blocks >= 2
                    && self.log_blocks >= 1
                    && self.data_blocks >= 1
                    && b <= self.log_start
                    && l <= self.data_start
                    && d < self.total_blocks
                    && self.total_blocks.checked_mul(BLOCK_SIZE).is_some(),
            )
        })();
        if ok == Some(true) {
            Ok(())
        } else {
            corrupt(Corruption::Superblock)
        }
    }
    /// First block of checkpoint slot `slot` (0 or 1).
    pub fn ckpt_slot(&self, slot: u8) -> u64 {
        self.ckpt_start + u64::from(slot) * self.ckpt_blocks
    }
    /// End of the data region (exclusive).
    pub fn data_end(&self) -> u64 {
        self.data_start + self.data_blocks
    }
    /// Is `[pblk, pblk + len)` a non-empty range inside the data region?
    pub fn in_data(&self, pblk: u64, len: u64) -> bool {
        len > 0 && pblk >= self.data_start && pblk.checked_add(len).is_some_and(|e| e <= self.data_end())
    }
}

/// The superblock: static after mkfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Format version.
    pub version: u32,
    /// Compatible features (ignored if unknown).
    pub feat_compat: u64,
    /// Read-only compatible features (unknown: mount read-only).
    pub feat_ro_compat: u64,
    /// Incompatible features (unknown: refuse to mount).
    pub feat_incompat: u64,
    /// Layout.
    pub geo: Geometry,
    /// File-system identity; stamped into every checkpoint and log record.
    pub uuid: [u8; 16],
}

/// Encoded superblock length (bytes), including the trailing CRC.
pub const SB_LEN: usize = 8 + 4 + 4 + 8 * 3 + 8 * 7 + 16 + 4;

impl Superblock {
    /// Encodes with its CRC.
    pub fn encode(&self) -> alloc::vec::Vec<u8> {
        let mut e = Enc::default();
        e.bytes(&SB_MAGIC);
        e.u32(self.version);
        e.u32(BLOCK_SIZE as u32);
        e.u64(self.feat_compat);
        e.u64(self.feat_ro_compat);
        e.u64(self.feat_incompat);
        let g = &self.geo;
        for v in [g.total_blocks, g.ckpt_start, g.ckpt_blocks, g.log_start, g.log_blocks, g.data_start, g.data_blocks] {
            e.u64(v);
        }
        e.bytes(&self.uuid);
        let c = crc32c(&e.buf);
        e.u32(c);
        e.buf
    }
    /// Decodes and checks magic, CRC, block size and geometry.
    pub fn decode(b: &[u8]) -> Result<Self> {
        let sb = Self::decode_unchecked(b)?;
        let crc = u32::from_le_bytes([b[SB_LEN - 4], b[SB_LEN - 3], b[SB_LEN - 2], b[SB_LEN - 1]]);
        if crc != crc32c(&b[..SB_LEN - 4]) {
            return corrupt(Corruption::Superblock);
        }
        Ok(sb)
    }

    /// Decodes without verifying the CRC (tools that repair checksums).
    pub fn decode_unchecked(b: &[u8]) -> Result<Self> {
        if b.len() < SB_LEN || b[..8] != SB_MAGIC {
            return Err(FsError::NotFsdax);
        }
        let mut d = Dec::new(&b[..SB_LEN]);
        let _ = d.bytes(8)?;
        let version = d.u32()?;
        let bs = d.u32()?;
        let feat_compat = d.u64()?;
        let feat_ro_compat = d.u64()?;
        let feat_incompat = d.u64()?;
        let mut g = [0u64; 7];
        for v in &mut g {
            *v = d.u64()?;
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(d.bytes(16)?);
        let _crc = d.u32()?;
        if version != VERSION || u64::from(bs) != BLOCK_SIZE {
            return Err(FsError::NotFsdax);
        }
        let geo = Geometry {
            total_blocks: g[0],
            ckpt_start: g[1],
            ckpt_blocks: g[2],
            log_start: g[3],
            log_blocks: g[4],
            data_start: g[5],
            data_blocks: g[6],
        };
        geo.validate()?;
        Ok(Self { version, feat_compat, feat_ro_compat, feat_incompat, geo, uuid })
    }
}

/// Checkpoint header (first block of a slot; the body starts one block in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CkptHeader {
    /// Generation; also the epoch of the log records that follow it.
    pub gen: u64,
    /// Body length in bytes.
    pub body_len: u64,
    /// CRC-32C of the body.
    pub body_crc: u32,
    /// File-system identity.
    pub uuid: [u8; 16],
}

/// Encoded checkpoint header length.
pub const CKPT_HDR_LEN: usize = 8 + 16 + 8 + 8 + 4 + 4;

impl CkptHeader {
    /// Encodes with its CRC.
    pub fn encode(&self) -> alloc::vec::Vec<u8> {
        let mut e = Enc::default();
        e.bytes(&CKPT_MAGIC);
        e.bytes(&self.uuid);
        e.u64(self.gen);
        e.u64(self.body_len);
        e.u32(self.body_crc);
        let c = crc32c(&e.buf);
        e.u32(c);
        e.buf
    }
    /// Decodes; `None` if it is not a valid header of this file system.
    pub fn decode(b: &[u8], uuid: &[u8; 16]) -> Option<Self> {
        if b.len() < CKPT_HDR_LEN || b[..8] != CKPT_MAGIC || &b[8..24] != uuid {
            return None;
        }
        let mut d = Dec::new(&b[24..CKPT_HDR_LEN]);
        let gen = d.u64().ok()?;
        let body_len = d.u64().ok()?;
        let body_crc = d.u32().ok()?;
        let crc = d.u32().ok()?;
        (crc == crc32c(&b[..CKPT_HDR_LEN - 4])).then_some(Self { gen, body_len, body_crc, uuid: *uuid })
    }
}

/// First 8 bytes of the uuid, stamped into log records.
pub fn uuid_tag(uuid: &[u8; 16]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&uuid[..8]);
    u64::from_le_bytes(a)
}

/// Encodes a log record: header + payload, padded to [`LOG_ALIGN`].
pub fn encode_log_record(uuid: &[u8; 16], gen: u64, seq: u64, nmut: u32, payload: &[u8]) -> alloc::vec::Vec<u8> {
    let mut e = Enc::default();
    e.u32(LOG_MAGIC);
    e.u32(0);
    e.u64(uuid_tag(uuid));
    e.u64(gen);
    e.u64(seq);
    e.u32(payload.len() as u32);
    e.u32(nmut);
    e.bytes(payload);
    let padded = (e.buf.len() as u64).div_ceil(LOG_ALIGN) * LOG_ALIGN;
    e.buf.resize(padded as usize, 0);
    let c = crc32c(&e.buf[8..LOG_HDR as usize + payload.len()]);
    e.buf[4..8].copy_from_slice(&c.to_le_bytes());
    e.buf
}

/// A decoded log record header.
#[derive(Clone, Copy, Debug)]
pub struct LogHeader {
    /// Payload length.
    pub payload_len: u64,
    /// Number of mutations in the payload.
    pub nmut: u32,
    /// CRC stored in the header.
    pub crc: u32,
}

/// Decodes a record header if it belongs to (uuid, gen, seq).
pub fn decode_log_header(b: &[u8], uuid: &[u8; 16], gen: u64, seq: u64) -> Option<LogHeader> {
    let mut d = Dec::new(b);
    if d.u32().ok()? != LOG_MAGIC {
        return None;
    }
    let crc = d.u32().ok()?;
    if d.u64().ok()? != uuid_tag(uuid) || d.u64().ok()? != gen || d.u64().ok()? != seq {
        return None;
    }
    let payload_len = u64::from(d.u32().ok()?);
    let nmut = d.u32().ok()?;
    Some(LogHeader { payload_len, nmut, crc })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_round_trip_and_crc() {
        let geo = Geometry::for_device(4096, None, None).unwrap();
        assert_eq!(geo.data_start % HUGE_BLOCKS, 0);
        let sb = Superblock {
            version: VERSION,
            feat_compat: 0,
            feat_ro_compat: 0,
            feat_incompat: FEAT_INCOMPAT_SUPPORTED,
            geo,
            uuid: [9; 16],
        };
        let mut b = sb.encode();
        assert_eq!(b.len(), SB_LEN);
        assert_eq!(Superblock::decode(&b).unwrap(), sb);
        b[40] ^= 1;
        assert_eq!(Superblock::decode(&b), Err(FsError::Corrupt(Corruption::Superblock)));
    }

    #[test]
    fn log_record_header() {
        let r = encode_log_record(&[1; 16], 5, 7, 2, b"abc");
        assert_eq!(r.len() as u64 % LOG_ALIGN, 0);
        let h = decode_log_header(&r, &[1; 16], 5, 7).unwrap();
        assert_eq!((h.payload_len, h.nmut), (3, 2));
        assert!(decode_log_header(&r, &[1; 16], 5, 8).is_none());
        assert!(decode_log_header(&r, &[1; 16], 6, 7).is_none());
    }
}
