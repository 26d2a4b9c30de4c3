//! The checkpoint body: the whole state as checksummed sections.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::{check_name, Extent, FileKind, Ino, Inode, State, ROOT_INO};
use crate::codec::{Dec, Enc};
use crate::crc::crc32c;
use crate::error::{corrupt, Corruption, FsError, Result};
use crate::format::{Geometry, MetaKind, MAX_EXTENT, MAX_FILE_BLOCKS, MAX_FILE_SIZE};
use crate::space::Space;

pub(crate) const SEC_META: u32 = 1;
pub(crate) const SEC_INODES: u32 = 2;
pub(crate) const SEC_DIRENTS: u32 = 3;
pub(crate) const SEC_RMAP: u32 = 4;
pub(crate) const SEC_REFC: u32 = 5;
pub(crate) const SEC_FREE: u32 = 6;
pub(crate) const SEC_BAD: u32 = 7;
pub(crate) const SEC_META_EXTENTS: u32 = 8;
/// Optional: written only once an event was recorded, so a body without
/// events is what every earlier version 2 wrote.
pub(crate) const SEC_MF_EVENTS: u32 = 9;
/// Bytes of a section's header: tag, count, byte length, CRC.
const SEC_HDR: u64 = 4 + 8 + 8 + 4;

/// Appends a section: its header, then the records `records` encodes
/// straight into `out` (no buffer of its own: the body is the only large
/// allocation), then the length and CRC patched into the header.
fn section(out: &mut Enc, tag: u32, count: u64, records: impl FnOnce(&mut Enc)) {
    out.u32(tag);
    out.u64(count);
    let at = out.buf.len();
    out.u64(0);
    out.u32(0);
    let start = out.buf.len();
    records(out);
    let len = (out.buf.len() - start) as u64;
    let crc = crc32c(&out.buf[start..]);
    out.buf[at..at + 8].copy_from_slice(&len.to_le_bytes());
    out.buf[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
}

/// How many directory entries of `dir` follow in `d` (entries are sorted
/// by directory); stops at anything that does not parse.
fn run_len(mut d: Dec<'_>, dir: Ino) -> usize {
    let mut n = 0;
    while d.u64().is_ok_and(|next| next == dir) {
        let Ok(l) = d.u64().and_then(|_| d.u16()) else { break };
        if d.bytes(usize::from(l)).is_err() {
            break;
        }
        n += 1;
    }
    n
}

impl State {
    /// The exact length of [`State::encode_checkpoint`]'s output, from
    /// counts kept up to date (no encoding), if the metadata extents
    /// numbered `meta_extents` instead of what they are now.
    pub fn checkpoint_len(&self, meta_extents: u64) -> u64 {
        let ni = self.inodes.len() as u64;
        let ne = self.space.rmap.len() as u64;
        8 * SEC_HDR
            + 8
            + 25 * ni
            + 24 * ne
            + 18 * self.dirents
            + self.name_bytes
            + 32 * ne
            + 20 * self.space.refc.len() as u64
            + 16 * (self.space.free.len() + self.space.bad.len()) as u64
            + 20 * meta_extents
            + if self.mf_events > 0 { SEC_HDR + 8 } else { 0 }
    }

    /// Serializes the whole state as a checkpoint body, into one buffer
    /// of exactly [`State::checkpoint_len`] bytes. Fails only when memory
    /// runs out.
    pub fn encode_checkpoint(&self) -> Result<Vec<u8>> {
        let mut out = Enc::default();
        out.buf
            .try_reserve_exact(self.checkpoint_len(self.space.meta.len() as u64) as usize)
            .map_err(|_| FsError::NoMemory)?;
        section(&mut out, SEC_META, 1, |e| e.u64(self.next_ino));
        section(&mut out, SEC_INODES, self.inodes.len() as u64, |e| {
            for (&ino, i) in &self.inodes {
                e.u64(ino);
                e.u8(i.kind.code());
                e.u64(i.size);
                e.u64(i.extents.len() as u64);
                for (&f, x) in &i.extents {
                    e.u64(f);
                    e.u64(x.pblk);
                    e.u64(x.len);
                }
            }
        });
        let ndirents = self.inodes.values().map(|i| i.entries.len() as u64).sum();
        section(&mut out, SEC_DIRENTS, ndirents, |e| {
            for (&dir, i) in &self.inodes {
                for (name, &ino) in &i.entries {
                    e.u64(dir);
                    e.u64(ino);
                    e.u16(name.len() as u16);
                    e.bytes(name);
                }
            }
        });
        section(&mut out, SEC_RMAP, self.space.rmap.len() as u64, |e| {
            for (&(p, ino, f), &l) in &self.space.rmap {
                e.u64(p);
                e.u64(l);
                e.u64(ino);
                e.u64(f);
            }
        });
        section(&mut out, SEC_REFC, self.space.refc.len() as u64, |e| {
            for (&s, &(l, c)) in &self.space.refc {
                e.u64(s);
                e.u64(l);
                e.u32(c);
            }
        });
        for (tag, set) in [(SEC_FREE, &self.space.free), (SEC_BAD, &self.space.bad)] {
            section(&mut out, tag, set.len() as u64, |e| {
                for (s, l) in set.iter() {
                    e.u64(s);
                    e.u64(l);
                }
            });
        }
        section(&mut out, SEC_META_EXTENTS, self.space.meta.len() as u64, |e| {
            for (&s, &(l, k)) in &self.space.meta {
                e.u64(s);
                e.u64(l);
                e.u32(k.code());
            }
        });
        if self.mf_events > 0 {
            section(&mut out, SEC_MF_EVENTS, 1, |e| e.u64(self.mf_events));
        }
        debug_assert_eq!(out.buf.len() as u64, self.checkpoint_len(self.space.meta.len() as u64));
        Ok(out.buf)
    }

    /// Parses and checks a checkpoint body (checksums, structure, then the
    /// cross-structure invariants of [`State::verify`]).
    pub fn decode_checkpoint(geo: Geometry, body: &[u8]) -> Result<Self> {
        let st = Self::decode_checkpoint_unverified(geo, body)?;
        st.verify()?;
        Ok(st)
    }

    /// Parses a checkpoint body, checking checksums and structure but not
    /// the cross-structure invariants (repair rebuilds those).
    pub fn decode_checkpoint_unverified(geo: Geometry, body: &[u8]) -> Result<Self> {
        let mut st = State {
            geo,
            inodes: BTreeMap::new(),
            next_ino: 0,
            space: Space::default(),
            dirents: 0,
            name_bytes: 0,
            mf_events: 0,
        };
        let mut d = Dec::new(body);
        let mut secs: [Option<(u64, &[u8])>; 10] = [None; 10];
        while d.remaining() > 0 {
            let tag = d.u32()?;
            let count = d.u64()?;
            let len = d.u64()?;
            let crc = d.u32()?;
            if len > d.remaining() as u64 {
                return corrupt(Corruption::Format);
            }
            let b = d.bytes(len as usize)?;
            if crc32c(b) != crc {
                return corrupt(Corruption::Checksum);
            }
            match secs.get_mut(tag as usize) {
                Some(slot @ None) if tag >= 1 => *slot = Some((count, b)),
                _ => return corrupt(Corruption::Format),
            }
        }
        let sec = |t: u32| secs[t as usize].ok_or(FsError::Corrupt(Corruption::Format));

        let (_, b) = sec(SEC_META)?;
        st.next_ino = Dec::new(b).u64()?;

        let (n, b) = sec(SEC_INODES)?;
        let mut d = Dec::new(b);
        let mut inodes: Vec<(Ino, Inode)> = Vec::new();
        inodes.try_reserve(n.min(b.len() as u64 / 25) as usize).map_err(|_| FsError::NoMemory)?;
        for _ in 0..n {
            let ino = d.u64()?;
            let mut i = Inode::new(FileKind::from_code(d.u8()?)?);
            i.size = d.u64()?;
            let ne = d.count(24)?;
            if i.size > MAX_FILE_SIZE
                || ino == 0
                || ino >= st.next_ino
                || inodes.last().is_some_and(|&(prev, _)| prev >= ino)
                || (i.kind == FileKind::Dir && (i.size != 0 || ne != 0))
                || (ino == ROOT_INO && i.kind != FileKind::Dir)
            {
                return corrupt(Corruption::Inode);
            }
            let mut prev_end = 0u64;
            let mut exts = Vec::new();
            exts.try_reserve_exact(ne).map_err(|_| FsError::NoMemory)?;
            for _ in 0..ne {
                let (f, p, l) = (d.u64()?, d.u64()?, d.u64()?);
                if l == 0
                    || l > MAX_EXTENT
                    || f < prev_end
                    || f.checked_add(l).is_none_or(|e| e > MAX_FILE_BLOCKS)
                    || !geo.in_data(p, l)
                {
                    return corrupt(Corruption::Inode);
                }
                prev_end = f + l;
                exts.push((f, Extent { pblk: p, len: l }));
            }
            i.extents = exts.into_iter().collect();
            inodes.push((ino, i));
        }
        // Sorted input: the B-tree is bulk-built.
        st.inodes = inodes.into_iter().collect();
        if d.remaining() != 0 || !st.inodes.contains_key(&ROOT_INO) {
            return corrupt(Corruption::Inode);
        }

        let (n, b) = sec(SEC_DIRENTS)?;
        let mut d = Dec::new(b);
        // Entries come sorted by (directory, name); collect each directory's
        // run and bulk-build its B-tree.
        let mut run: Vec<(Box<[u8]>, Ino)> = Vec::new();
        let mut run_dir: Ino = 0;
        let mut last: Option<(Ino, &[u8])> = None;
        for k in 0..=n {
            let next = if k < n {
                let (dir, ino) = (d.u64()?, d.u64()?);
                let l = usize::from(d.u16()?);
                let name = d.bytes(l)?;
                if check_name(name).is_err() || dir == ino || ino == ROOT_INO || last.is_some_and(|x| x >= (dir, name))
                {
                    return corrupt(Corruption::Tree);
                }
                last = Some((dir, name));
                st.dirents += 1;
                st.name_bytes += name.len() as u64;
                Some((dir, ino, name))
            } else {
                None
            };
            if next.is_none_or(|(dir, _, _)| dir != run_dir) && !run.is_empty() {
                let Some(p) = st.inodes.get_mut(&run_dir) else {
                    return corrupt(Corruption::Tree);
                };
                if p.kind != FileKind::Dir {
                    return corrupt(Corruption::Tree);
                }
                p.entries = core::mem::take(&mut run).into_iter().collect();
            }
            let Some((dir, ino, name)) = next else { break };
            if run.is_empty() {
                // A directory's first entry: room for exactly its entries
                // (a vector grown by doubling would take up to three times
                // that for a large directory).
                run.try_reserve_exact(1 + run_len(d.clone(), dir)).map_err(|_| FsError::NoMemory)?;
            }
            run_dir = dir;
            let Some(c) = st.inodes.get_mut(&ino) else {
                return corrupt(Corruption::Tree);
            };
            c.links = c.links.saturating_add(1);
            let is_dir = c.kind == FileKind::Dir;
            if is_dir {
                if c.links > 1 {
                    return corrupt(Corruption::Tree);
                }
                c.parent = dir;
            }
            let Some(p) = st.inodes.get_mut(&dir) else {
                return corrupt(Corruption::Tree);
            };
            if is_dir {
                p.subdirs += 1;
            }
            run.push((name.into(), ino));
        }
        if d.remaining() != 0 {
            return corrupt(Corruption::Format);
        }

        let (n, b) = sec(SEC_RMAP)?;
        let mut d = Dec::new(b);
        let mut recs: Vec<((u64, u64, u64), u64)> = Vec::new();
        recs.try_reserve(n.min(b.len() as u64 / 32) as usize).map_err(|_| FsError::NoMemory)?;
        for _ in 0..n {
            let (p, l, ino, f) = (d.u64()?, d.u64()?, d.u64()?, d.u64()?);
            if recs.last().is_some_and(|&(k, _)| k >= (p, ino, f)) {
                return corrupt(Corruption::Space);
            }
            recs.push(((p, ino, f), l));
        }
        st.space.rmap = recs.into_iter().collect();
        let (n, b) = sec(SEC_REFC)?;
        let mut d = Dec::new(b);
        let mut prev_end = 0;
        for _ in 0..n {
            let (s, l, c) = (d.u64()?, d.u64()?, d.u32()?);
            if l == 0 || c < 2 || s < prev_end || !geo.in_data(s, l) {
                return corrupt(Corruption::Space);
            }
            prev_end = s + l;
            st.space.refc.insert(s, (l, c));
        }
        for tag in [SEC_FREE, SEC_BAD] {
            let (n, b) = sec(tag)?;
            let mut d = Dec::new(b);
            for _ in 0..n {
                let (s, l) = (d.u64()?, d.u64()?);
                if !geo.in_data(s, l) {
                    return corrupt(Corruption::Space);
                }
                let set = if tag == SEC_FREE { &mut st.space.free } else { &mut st.space.bad };
                set.insert(s, l)?;
            }
        }
        let (n, b) = sec(SEC_META_EXTENTS)?;
        let mut d = Dec::new(b);
        let mut prev_end = 0;
        for _ in 0..n {
            let (s, l, k) = (d.u64()?, d.u64()?, d.u32()?);
            let Some(kind) = MetaKind::from_data_code(k) else {
                return corrupt(Corruption::Space);
            };
            if s < prev_end || !geo.in_data(s, l) {
                return corrupt(Corruption::Space);
            }
            prev_end = s + l;
            st.space.meta.insert(s, (l, kind));
        }
        if let Some((n, b)) = secs[SEC_MF_EVENTS as usize] {
            if n != 1 || b.len() != 8 {
                return corrupt(Corruption::Format);
            }
            st.mf_events = Dec::new(b).u64()?;
        }
        Ok(st)
    }
}
