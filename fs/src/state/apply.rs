//! [`State::apply`]: the one function that changes metadata, at run time
//! and during log replay. It checks every precondition, so a hostile log
//! record is an error, never a panic.

use alloc::vec::Vec;

use super::{bad, check_name, Extent, FileKind, Ino, Inode, Mutation, State, ROOT_INO};
use crate::codec::Dec;
use crate::error::{corrupt, Corruption, Result};
use crate::format::{HUGE_BLOCKS, MAX_EXTENT, MAX_FILE_BLOCKS, MAX_FILE_SIZE};
use crate::space::RangeSet;

/// A run of physical blocks: (first block, length).
type BlockRun = (u64, u64);

/// What an open run-time transaction must remember until it commits.
#[derive(Debug, Default)]
pub(crate) struct TxnEffects {
    /// Blocks whose count reached zero: free only after the commit, so an
    /// uncommitted operation never overwrites blocks the committed state uses.
    pub freed: Vec<(u64, u64)>,
    /// Blocks that lost an owner in this transaction. The committed state
    /// still maps them where they were unmapped, so they must not be written
    /// in place before the commit even if their count is now 1.
    pub unmapped: RangeSet,
}

impl TxnEffects {
    fn add_unmapped(&mut self, a: u64, n: u64) {
        let mut cur = a;
        for (s, l) in self.unmapped.intersect(a, n) {
            if s > cur {
                let _ = self.unmapped.insert(cur, s - cur);
            }
            cur = s + l;
        }
        if cur < a + n {
            let _ = self.unmapped.insert(cur, a + n - cur);
        }
    }
}

impl State {
    /// Applies one mutation. At run time `fx` collects what the open
    /// transaction must remember (blocks freed become free only after the
    /// commit); during replay (`None`) blocks are freed at once.
    pub fn apply(&mut self, m: &Mutation, fx: Option<&mut TxnEffects>) -> Result<()> {
        match m {
            Mutation::InodeAlloc { ino, kind } => {
                if *ino <= ROOT_INO || *ino == u64::MAX || self.inodes.contains_key(ino) {
                    return bad();
                }
                self.inodes.insert(*ino, Inode::new(*kind));
                self.next_ino = self.next_ino.max(ino + 1);
            }
            Mutation::InodeFree { ino } => {
                let Some(i) = self.inodes.get(ino) else {
                    return bad();
                };
                if *ino == ROOT_INO || i.links != 0 || !i.extents.is_empty() || !i.entries.is_empty() {
                    return bad();
                }
                self.inodes.remove(ino);
            }
            Mutation::SetSize { ino, size } => {
                let Some(i) = self.inodes.get_mut(ino) else {
                    return bad();
                };
                if i.kind != FileKind::File || *size > MAX_FILE_SIZE {
                    return bad();
                }
                i.size = *size;
            }
            Mutation::Map { ino, fblk, pblk, len, fresh } => {
                self.map(*ino, *fblk, *pblk, *len, *fresh)?;
            }
            Mutation::Unmap { ino, fblk, len } => {
                let (freed, dec) = self.unmap(*ino, *fblk, *len)?;
                match fx {
                    Some(fx) => {
                        fx.freed.extend(freed);
                        for (a, n) in dec {
                            fx.add_unmapped(a, n);
                        }
                    }
                    None => {
                        for (a, n) in freed {
                            self.space.release(a, n)?;
                        }
                    }
                }
            }
            Mutation::DirAdd { dir, ino, name } => self.dir_add(*dir, *ino, name)?,
            Mutation::DirRemove { dir, name } => {
                let Some(d) = self.inodes.get_mut(dir) else {
                    return bad();
                };
                let Some(child) = d.entries.remove(name.as_slice()) else {
                    return bad();
                };
                self.dirents -= 1;
                self.name_bytes -= name.len() as u64;
                let Some(c) = self.inodes.get_mut(&child) else {
                    return bad();
                };
                c.links = c.links.saturating_sub(1);
                if c.kind == FileKind::Dir {
                    c.parent = 0;
                    if let Some(d) = self.inodes.get_mut(dir) {
                        d.subdirs = d.subdirs.saturating_sub(1);
                    }
                }
            }
            Mutation::BadAdd { pblk, len } => {
                if !self.geo.in_data(*pblk, *len) {
                    return bad();
                }
                let mut cur = *pblk;
                let end = pblk + len;
                let known = self.space.bad.intersect(*pblk, *len);
                let mut add = Vec::new();
                for (s, l) in known {
                    if s > cur {
                        add.push((cur, s - cur));
                    }
                    cur = s + l;
                }
                if cur < end {
                    add.push((cur, end - cur));
                }
                for (s, l) in add {
                    self.space.free.remove_overlap(s, l);
                    self.space.bad.insert(s, l)?;
                }
            }
            Mutation::BadRemove { pblk, len } => {
                if !self.geo.in_data(*pblk, *len) || !self.space.bad.contains_range(*pblk, *len) {
                    return bad();
                }
                self.space.bad.remove(*pblk, *len)?;
                let owned = self.space.owned_ranges(*pblk, *len);
                let mut cur = *pblk;
                for (s, l) in owned {
                    if s > cur {
                        self.space.free.insert(cur, s - cur)?;
                    }
                    cur = s + l;
                }
                if cur < pblk + len {
                    self.space.free.insert(cur, pblk + len - cur)?;
                }
            }
            Mutation::MemoryFailure => self.mf_events = self.mf_events.saturating_add(1),
        }
        Ok(())
    }

    fn map(&mut self, ino: Ino, fblk: u64, pblk: u64, len: u64, fresh: bool) -> Result<()> {
        if len == 0 || len > MAX_EXTENT || fblk.checked_add(len).is_none_or(|e| e > MAX_FILE_BLOCKS) {
            return bad();
        }
        if !self.geo.in_data(pblk, len) {
            return bad();
        }
        let Some(i) = self.inodes.get(&ino) else {
            return bad();
        };
        if i.kind != FileKind::File {
            return bad();
        }
        if i.extent_at(fblk).is_some() || i.extents.range(fblk..fblk + len).next().is_some() {
            return bad();
        }
        if fresh {
            if !self.space.free.contains_range(pblk, len) {
                return bad();
            }
            self.space.free.remove(pblk, len)?;
        } else {
            self.space.refc_inc(pblk, len)?;
        }
        let Some(i) = self.inodes.get_mut(&ino) else {
            return bad();
        };
        let rmap = &mut self.space.rmap;
        let (mut f, mut e) = (fblk, Extent { pblk, len });
        // Merge with the previous extent if physically contiguous.
        if let Some((&pf, &pe)) = i.extents.range(..fblk).next_back() {
            if pf + pe.len == fblk && pe.pblk + pe.len == pblk && same_huge_page(pe.pblk, pe.len + len) {
                i.extents.remove(&pf);
                rmap.remove(&(pe.pblk, ino, pf));
                f = pf;
                e = Extent { pblk: pe.pblk, len: pe.len + len };
            }
        }
        if let Some(&ne) = i.extents.get(&(fblk + len)) {
            if e.pblk + e.len == ne.pblk && same_huge_page(e.pblk, e.len + ne.len) {
                i.extents.remove(&(fblk + len));
                rmap.remove(&(ne.pblk, ino, fblk + len));
                e.len += ne.len;
            }
        }
        i.extents.insert(f, e);
        rmap.insert((e.pblk, ino, f), e.len);
        Ok(())
    }

    fn unmap(&mut self, ino: Ino, fblk: u64, len: u64) -> Result<(Vec<BlockRun>, Vec<BlockRun>)> {
        if len == 0 || fblk.checked_add(len).is_none_or(|e| e > MAX_FILE_BLOCKS) {
            return bad();
        }
        let Some(i) = self.inodes.get_mut(&ino) else {
            return bad();
        };
        if i.kind != FileKind::File {
            return bad();
        }
        let end = fblk + len;
        let mut hit: Vec<(u64, Extent)> = Vec::new();
        if let Some(x) = i.extent_at(fblk) {
            if x.0 < fblk {
                hit.push(x);
            }
        }
        hit.extend(i.extents.range(fblk..end).map(|(&f, &e)| (f, e)));
        let mut dec = Vec::new();
        for (f, e) in hit {
            i.extents.remove(&f);
            self.space.rmap.remove(&(e.pblk, ino, f));
            let lo = f.max(fblk);
            let hi = (f + e.len).min(end);
            if f < lo {
                let l = Extent { pblk: e.pblk, len: lo - f };
                i.extents.insert(f, l);
                self.space.rmap.insert((l.pblk, ino, f), l.len);
            }
            if f + e.len > hi {
                let r = Extent { pblk: e.pblk + (hi - f), len: f + e.len - hi };
                i.extents.insert(hi, r);
                self.space.rmap.insert((r.pblk, ino, hi), r.len);
            }
            dec.push((e.pblk + (lo - f), hi - lo));
        }
        let mut freed = Vec::new();
        for &(p, n) in &dec {
            freed.extend(self.space.refc_dec(p, n)?);
        }
        Ok((freed, dec))
    }

    fn dir_add(&mut self, dir: Ino, ino: Ino, name: &[u8]) -> Result<()> {
        if check_name(name).is_err() || dir == ino || ino == ROOT_INO {
            return bad();
        }
        let Some(d) = self.inodes.get(&dir) else {
            return bad();
        };
        if d.kind != FileKind::Dir || d.entries.contains_key(name) {
            return bad();
        }
        let Some(c) = self.inodes.get(&ino) else {
            return bad();
        };
        if c.kind == FileKind::Dir && (c.links != 0 || self.is_ancestor(ino, dir)) {
            return bad();
        }
        let is_dir = c.kind == FileKind::Dir;
        if let Some(c) = self.inodes.get_mut(&ino) {
            c.links = c.links.saturating_add(1);
            if is_dir {
                c.parent = dir;
            }
        }
        if let Some(d) = self.inodes.get_mut(&dir) {
            d.entries.insert(name.into(), ino);
            if is_dir {
                d.subdirs = d.subdirs.saturating_add(1);
            }
        }
        self.dirents += 1;
        self.name_bytes += name.len() as u64;
        Ok(())
    }

    /// Is `anc` an ancestor of (or equal to) directory `d`? Bounded walk, so
    /// a corrupt parent chain cannot loop.
    pub fn is_ancestor(&self, anc: Ino, mut d: Ino) -> bool {
        for _ in 0..=self.inodes.len() {
            if d == anc {
                return true;
            }
            if d == ROOT_INO || d == 0 {
                return false;
            }
            d = self.inodes.get(&d).map_or(0, |i| i.parent);
        }
        true
    }

    /// Applies a log record payload; stops at the first failing mutation.
    pub fn apply_payload(&mut self, payload: &[u8], nmut: u32) -> Result<()> {
        let mut d = Dec::new(payload);
        for _ in 0..nmut {
            let m = Mutation::decode(&mut d)?;
            self.apply(&m, None)?;
        }
        if d.remaining() != 0 {
            return corrupt(Corruption::Log);
        }
        Ok(())
    }
}

/// Does `[pblk, pblk + len)` stay inside one 2 MiB-aligned physical page?
/// Merged extents never cross one, so a file written congruently with its
/// physical placement ends up with whole, aligned 2 MiB extents.
fn same_huge_page(pblk: u64, len: u64) -> bool {
    len <= MAX_EXTENT && pblk / HUGE_BLOCKS == (pblk + len - 1) / HUGE_BLOCKS
}
