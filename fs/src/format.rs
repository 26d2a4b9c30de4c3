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
/// Format version this code reads and writes.
pub const VERSION: u32 = 2;
/// Incompatible feature: per-file extent maps with shared (reflinked) extents.
pub const FEAT_INCOMPAT_REFLINK: u64 = 1 << 0;
/// Incompatible feature: persistent reverse map and refcount sections.
pub const FEAT_INCOMPAT_RMAP: u64 = 1 << 1;
/// Incompatible feature: metadata redo log + checkpoints.
pub const FEAT_INCOMPAT_LOG: u64 = 1 << 2;
/// Incompatible feature: checkpoint bodies and logs live in extents of the
/// data area, each in two copies, named by a duplicated header.
pub const FEAT_INCOMPAT_MIRRORED_META: u64 = 1 << 3;
/// Incompatible features this code understands.
pub const FEAT_INCOMPAT_SUPPORTED: u64 =
    FEAT_INCOMPAT_REFLINK | FEAT_INCOMPAT_RMAP | FEAT_INCOMPAT_LOG | FEAT_INCOMPAT_MIRRORED_META;
/// Read-only-compatible features this code understands (none yet).
pub const FEAT_RO_COMPAT_SUPPORTED: u64 = 0;

/// Checkpoint header magic.
pub const HDR_MAGIC: [u8; 8] = *b"FSDXHDR2";
/// Magic of the link line at the start of every checkpoint-body extent.
pub const LINK_MAGIC: u32 = u32::from_le_bytes(*b"FSBX");
/// Bytes of the link line at the start of every checkpoint-body extent.
pub const LINK_LEN: u64 = 64;
/// Log record magic.
pub const LOG_MAGIC: u32 = u32::from_le_bytes(*b"FSLG");
/// Log record header length (bytes).
pub const LOG_HDR: u64 = 40;
/// Log records are padded to this (a cache line).
pub const LOG_ALIGN: u64 = 64;
/// Smallest device (blocks).
pub const MIN_BLOCKS: u64 = 64;

/// Where the fixed structures and the data area are, in blocks. Fixed at
/// mkfs; stored in the superblock and its backup. Everything else (the
/// checkpoint bodies and the logs) lives in extents of the data area, named
/// by the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Device size in blocks.
    pub total_blocks: u64,
    /// First data block (2: after the superblock and header copy A).
    pub data_start: u64,
    /// Number of data blocks (up to header copy B, the second-last block).
    pub data_blocks: u64,
    /// Blocks of each log copy a checkpoint allocates (when space allows).
    pub log_blocks: u64,
}

impl Geometry {
    /// Picks a layout for a device of `total_blocks`: superblock (block 0),
    /// header copy A (1), data, header copy B (second-last), backup
    /// superblock (last). Default log: 1/256 of the device per copy, 64 KiB
    /// to 8 MiB.
    pub fn for_device(total_blocks: u64, log: Option<u64>) -> Result<Self> {
        if total_blocks < MIN_BLOCKS {
            return Err(FsError::NoSpace);
        }
        let data_blocks = total_blocks - 4;
        let log_blocks = log.unwrap_or((total_blocks / 256).clamp(16, 2048)).clamp(1, data_blocks / 8);
        let g = Geometry { total_blocks, data_start: 2, data_blocks, log_blocks };
        g.validate()?;
        Ok(g)
    }
    /// Checks the regions are ordered, non-overlapping and on the device.
    pub fn validate(&self) -> Result<()> {
        let ok = self.total_blocks >= MIN_BLOCKS
            && self.total_blocks.checked_mul(BLOCK_SIZE).is_some()
            && self.data_start == 2
            && self.data_blocks == self.total_blocks - 4
            && self.log_blocks >= 1
            && self.log_blocks <= self.data_blocks / 8;
        if ok {
            Ok(())
        } else {
            corrupt(Corruption::Superblock)
        }
    }
    /// Block of header copy `copy` (0: A, after the superblock; 1: B, before
    /// the backup superblock).
    pub fn header_block(&self, copy: u8) -> u64 {
        if copy == 0 {
            1
        } else {
            self.total_blocks - 2
        }
    }
    /// Block of the backup superblock.
    pub fn backup_sb_block(&self) -> u64 {
        self.total_blocks - 1
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
    /// File-system identity; stamped into every header, link and log record.
    pub uuid: [u8; 16],
}

/// Encoded superblock length (bytes), including the trailing CRC.
pub const SB_LEN: usize = 8 + 4 + 4 + 8 * 3 + 8 * 4 + 16 + 4;

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
        for v in [g.total_blocks, g.data_start, g.data_blocks, g.log_blocks] {
            e.u64(v);
        }
        e.bytes(&self.uuid);
        let c = crc32c(&e.buf);
        e.u32(c);
        e.buf
    }
    /// Decodes and checks magic, version, CRC, block size and geometry.
    pub fn decode(b: &[u8]) -> Result<Self> {
        let sb = Self::decode_unchecked(b)?;
        let crc = u32::from_le_bytes([b[SB_LEN - 4], b[SB_LEN - 3], b[SB_LEN - 2], b[SB_LEN - 1]]);
        if crc != crc32c(&b[..SB_LEN - 4]) {
            return corrupt(Corruption::Superblock);
        }
        Ok(sb)
    }

    /// Decodes without verifying the CRC (tools that repair checksums).
    /// Another version is [`FsError::Unsupported`].
    pub fn decode_unchecked(b: &[u8]) -> Result<Self> {
        if b.len() < 12 || b[..8] != SB_MAGIC {
            return Err(FsError::NotFsdax);
        }
        let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if version != VERSION {
            return Err(FsError::Unsupported { version });
        }
        if b.len() < SB_LEN {
            return Err(FsError::NotFsdax);
        }
        let mut d = Dec::new(&b[12..SB_LEN]);
        let bs = d.u32()?;
        let feat_compat = d.u64()?;
        let feat_ro_compat = d.u64()?;
        let feat_incompat = d.u64()?;
        let mut g = [0u64; 4];
        for v in &mut g {
            *v = d.u64()?;
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(d.bytes(16)?);
        if u64::from(bs) != BLOCK_SIZE {
            return corrupt(Corruption::Superblock);
        }
        let geo = Geometry { total_blocks: g[0], data_start: g[1], data_blocks: g[2], log_blocks: g[3] };
        geo.validate()?;
        Ok(Self { version, feat_compat, feat_ro_compat, feat_incompat, geo, uuid })
    }
}

/// Kinds of metadata that own blocks: the fixed superblocks and header
/// copies, and the checkpoint-body and log copies in the data area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetaKind {
    /// Primary superblock (block 0).
    Superblock,
    /// Checkpoint header copy A (0, block 1) or B (1, second-last block).
    Header(u8),
    /// A checkpoint body copy (0 or 1), in data-area extents.
    Body(u8),
    /// A log copy (0 or 1), one data-area extent.
    Log(u8),
    /// Backup superblock (last block).
    BackupSuperblock,
}

impl MetaKind {
    /// On-media code (checkpoint section 8).
    pub fn code(self) -> u32 {
        match self {
            MetaKind::Superblock => 1,
            MetaKind::Header(c) => 2 + u32::from(c.min(1)),
            MetaKind::Log(c) => 4 + u32::from(c.min(1)),
            MetaKind::BackupSuperblock => 6,
            MetaKind::Body(c) => 7 + u32::from(c.min(1)),
        }
    }
    /// The kind of an on-media code of a data-area structure (body or log).
    pub fn from_data_code(c: u32) -> Option<Self> {
        match c {
            4 => Some(MetaKind::Log(0)),
            5 => Some(MetaKind::Log(1)),
            7 => Some(MetaKind::Body(0)),
            8 => Some(MetaKind::Body(1)),
            _ => None,
        }
    }
}

impl core::fmt::Display for MetaKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let ab = |c: &u8| if *c == 0 { 'A' } else { 'B' };
        match self {
            MetaKind::Superblock => f.write_str("primary superblock"),
            MetaKind::Header(c) => write!(f, "checkpoint header copy {}", ab(c)),
            MetaKind::Body(c) => write!(f, "checkpoint body copy {}", ab(c)),
            MetaKind::Log(c) => write!(f, "metadata log copy {}", ab(c)),
            MetaKind::BackupSuperblock => f.write_str("backup superblock"),
        }
    }
}

/// A run of blocks: first block and length (0 length: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Run {
    /// First block.
    pub pblk: u64,
    /// Length in blocks.
    pub len: u64,
}

/// The checkpoint header, in two copies (block 1 and the second-last
/// block): which checkpoint is current and where its two body copies and
/// its two log copies are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Generation; also the epoch of the log records that follow it.
    pub gen: u64,
    /// Body length in bytes (payload, without the link lines).
    pub body_len: u64,
    /// CRC-32C of the body.
    pub body_crc: u32,
    /// First extent of each body copy (each extent names the next).
    pub body: [Run; 2],
    /// The log copies: one extent each, records at the same offsets.
    pub log: [Run; 2],
    /// File-system identity.
    pub uuid: [u8; 16],
}

/// Encoded header length.
pub const HDR_LEN: usize = 8 + 16 + 8 + 8 + 4 + 4 + 16 * 4 + 4;

impl Header {
    /// Encodes with its CRC.
    pub fn encode(&self) -> alloc::vec::Vec<u8> {
        let mut e = Enc::default();
        e.bytes(&HDR_MAGIC);
        e.bytes(&self.uuid);
        e.u64(self.gen);
        e.u64(self.body_len);
        e.u32(self.body_crc);
        e.u32(0);
        for r in self.body.iter().chain(self.log.iter()) {
            e.u64(r.pblk);
            e.u64(r.len);
        }
        let c = crc32c(&e.buf);
        e.u32(c);
        e.buf
    }
    /// Decodes; `None` if it is not a valid header of this file system.
    pub fn decode(b: &[u8], uuid: &[u8; 16]) -> Option<Self> {
        if b.len() < HDR_LEN || b[..8] != HDR_MAGIC || &b[8..24] != uuid {
            return None;
        }
        let crc = u32::from_le_bytes([b[HDR_LEN - 4], b[HDR_LEN - 3], b[HDR_LEN - 2], b[HDR_LEN - 1]]);
        if crc != crc32c(&b[..HDR_LEN - 4]) {
            return None;
        }
        let mut d = Dec::new(&b[24..HDR_LEN - 4]);
        let gen = d.u64().ok()?;
        let body_len = d.u64().ok()?;
        let body_crc = d.u32().ok()?;
        let _ = d.u32().ok()?;
        let mut runs = [Run::default(); 4];
        for r in &mut runs {
            *r = Run { pblk: d.u64().ok()?, len: d.u64().ok()? };
        }
        Some(Self { gen, body_len, body_crc, body: [runs[0], runs[1]], log: [runs[2], runs[3]], uuid: *uuid })
    }
}

/// The link line at the start of every extent of a checkpoint body copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Generation of the checkpoint.
    pub gen: u64,
    /// Which body copy (0 or 1).
    pub copy: u32,
    /// Position of this extent in the chain (0, 1, ...).
    pub index: u32,
    /// The next extent (length 0: this is the last).
    pub next: Run,
}

impl Link {
    /// Encodes as one 64-byte line.
    pub fn encode(&self, uuid: &[u8; 16]) -> [u8; LINK_LEN as usize] {
        let mut e = Enc::default();
        e.u32(LINK_MAGIC);
        e.u32(0);
        e.u64(uuid_tag(uuid));
        e.u64(self.gen);
        e.u32(self.copy);
        e.u32(self.index);
        e.u64(self.next.pblk);
        e.u64(self.next.len);
        let mut out = [0u8; LINK_LEN as usize];
        out[..e.buf.len()].copy_from_slice(&e.buf);
        let c = crc32c(&out[8..]);
        out[4..8].copy_from_slice(&c.to_le_bytes());
        out
    }
    /// Decodes a link line of (uuid, gen); `None` if it is not one.
    pub fn decode(b: &[u8], uuid: &[u8; 16], gen: u64) -> Option<Self> {
        if b.len() < LINK_LEN as usize {
            return None;
        }
        let mut d = Dec::new(&b[..LINK_LEN as usize]);
        if d.u32().ok()? != LINK_MAGIC {
            return None;
        }
        let crc = d.u32().ok()?;
        if crc != crc32c(&b[8..LINK_LEN as usize]) || d.u64().ok()? != uuid_tag(uuid) || d.u64().ok()? != gen {
            return None;
        }
        let copy = d.u32().ok()?;
        let index = d.u32().ok()?;
        let next = Run { pblk: d.u64().ok()?, len: d.u64().ok()? };
        Some(Self { gen, copy, index, next })
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
    fn superblock_round_trip_crc_and_version() {
        let geo = Geometry::for_device(4096, None).unwrap();
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
        b[8] = 1;
        assert_eq!(Superblock::decode(&b), Err(FsError::Unsupported { version: 1 }));
    }

    #[test]
    fn header_and_link_round_trip() {
        let h = Header {
            gen: 7,
            body_len: 1234,
            body_crc: 99,
            body: [Run { pblk: 10, len: 2 }, Run { pblk: 20, len: 3 }],
            log: [Run { pblk: 30, len: 4 }, Run { pblk: 40, len: 4 }],
            uuid: [3; 16],
        };
        let mut b = h.encode();
        assert_eq!(b.len(), HDR_LEN);
        assert_eq!(Header::decode(&b, &[3; 16]), Some(h));
        assert_eq!(Header::decode(&b, &[4; 16]), None);
        b[50] ^= 1;
        assert_eq!(Header::decode(&b, &[3; 16]), None);
        let l = Link { gen: 7, copy: 1, index: 2, next: Run { pblk: 5, len: 6 } };
        let b = l.encode(&[3; 16]);
        assert_eq!(Link::decode(&b, &[3; 16], 7), Some(l));
        assert_eq!(Link::decode(&b, &[3; 16], 8), None);
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
