//! The metadata state (kept in DRAM, persisted as checkpoint + redo log),
//! the mutations that change it, and their encoding.
//!
//! Every change of metadata is a [`Mutation`]. A file-system operation is a
//! transaction: a list of mutations committed as one log record. The same
//! [`State::apply`] runs at run time and during log replay, so replay is
//! deterministic; it checks every precondition, so a hostile record is an
//! error, never a panic.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::codec::{Dec, Enc};
use crate::crc::crc32c;
use crate::error::{corrupt, Corruption, FsError, Result};
use crate::format::{Geometry, HUGE_BLOCKS, MAX_EXTENT, MAX_FILE_BLOCKS, MAX_FILE_SIZE, MAX_NAME};
use crate::space::{RangeSet, Space};

/// Inode number.
pub type Ino = u64;
/// The root directory.
pub const ROOT_INO: Ino = 1;

/// Kind of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
}

impl FileKind {
    fn code(self) -> u8 {
        match self {
            FileKind::File => 1,
            FileKind::Dir => 2,
        }
    }
    fn from_code(c: u8) -> Result<Self> {
        match c {
            1 => Ok(FileKind::File),
            2 => Ok(FileKind::Dir),
            _ => corrupt(Corruption::Inode),
        }
    }
}

/// A mapped run of a file: file block -> physical block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First physical block.
    pub pblk: u64,
    /// Length in blocks (1..=MAX_EXTENT).
    pub len: u64,
}

/// An inode in DRAM.
#[derive(Clone, Debug)]
pub(crate) struct Inode {
    pub kind: FileKind,
    pub size: u64,
    /// Directory entries naming this inode.
    pub links: u32,
    /// Directory containing this directory (0 for files and the root).
    pub parent: Ino,
    /// File block -> extent.
    pub extents: BTreeMap<u64, Extent>,
    /// Directory entries, sorted by name (a B-tree: fast at 100k entries).
    pub entries: BTreeMap<Box<[u8]>, Ino>,
    /// Number of subdirectories (for nlink).
    pub subdirs: u32,
}

impl Inode {
    fn new(kind: FileKind) -> Self {
        Inode { kind, size: 0, links: 0, parent: 0, extents: BTreeMap::new(), entries: BTreeMap::new(), subdirs: 0 }
    }
    /// The extent covering file block `f`, as (start fblk, extent).
    pub fn extent_at(&self, f: u64) -> Option<(u64, Extent)> {
        self.extents.range(..=f).next_back().map(|(&s, &e)| (s, e)).filter(|&(s, e)| s + e.len > f)
    }
}

/// One metadata change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Create an inode (not yet linked).
    InodeAlloc {
        /// New inode number.
        ino: Ino,
        /// Kind.
        kind: FileKind,
    },
    /// Delete an unlinked, empty inode.
    InodeFree {
        /// Inode.
        ino: Ino,
    },
    /// Set a file's size.
    SetSize {
        /// Inode.
        ino: Ino,
        /// New size in bytes.
        size: u64,
    },
    /// Map `[fblk, fblk + len)` (unmapped) to `[pblk, pblk + len)`: fresh
    /// blocks come from the free set, otherwise the extent gains an owner.
    Map {
        /// Inode.
        ino: Ino,
        /// First file block.
        fblk: u64,
        /// First physical block.
        pblk: u64,
        /// Length in blocks.
        len: u64,
        /// Blocks are newly allocated (else shared with existing owners).
        fresh: bool,
    },
    /// Unmap `[fblk, fblk + len)`; blocks whose count drops to zero are freed.
    Unmap {
        /// Inode.
        ino: Ino,
        /// First file block.
        fblk: u64,
        /// Length in blocks.
        len: u64,
    },
    /// Add a directory entry.
    DirAdd {
        /// Directory.
        dir: Ino,
        /// Target inode.
        ino: Ino,
        /// Name.
        name: Vec<u8>,
    },
    /// Remove a directory entry.
    DirRemove {
        /// Directory.
        dir: Ino,
        /// Name.
        name: Vec<u8>,
    },
    /// Record bad blocks (persistent bad-block list).
    BadAdd {
        /// First block.
        pblk: u64,
        /// Length.
        len: u64,
    },
    /// Forget bad blocks (after a recovery write cleared them).
    BadRemove {
        /// First block.
        pblk: u64,
        /// Length.
        len: u64,
    },
}

impl Mutation {
    /// Appends the encoding.
    pub(crate) fn encode(&self, e: &mut Enc) {
        match self {
            Mutation::InodeAlloc { ino, kind } => {
                e.u8(1);
                e.u64(*ino);
                e.u8(kind.code());
            }
            Mutation::InodeFree { ino } => {
                e.u8(2);
                e.u64(*ino);
            }
            Mutation::SetSize { ino, size } => {
                e.u8(3);
                e.u64(*ino);
                e.u64(*size);
            }
            Mutation::Map { ino, fblk, pblk, len, fresh } => {
                e.u8(if *fresh { 4 } else { 5 });
                e.u64(*ino);
                e.u64(*fblk);
                e.u64(*pblk);
                e.u64(*len);
            }
            Mutation::Unmap { ino, fblk, len } => {
                e.u8(6);
                e.u64(*ino);
                e.u64(*fblk);
                e.u64(*len);
            }
            Mutation::DirAdd { dir, ino, name } => {
                e.u8(7);
                e.u64(*dir);
                e.u64(*ino);
                e.u16(name.len() as u16);
                e.bytes(name);
            }
            Mutation::DirRemove { dir, name } => {
                e.u8(8);
                e.u64(*dir);
                e.u16(name.len() as u16);
                e.bytes(name);
            }
            Mutation::BadAdd { pblk, len } => {
                e.u8(9);
                e.u64(*pblk);
                e.u64(*len);
            }
            Mutation::BadRemove { pblk, len } => {
                e.u8(10);
                e.u64(*pblk);
                e.u64(*len);
            }
        }
    }
    /// Decodes one mutation.
    pub(crate) fn decode(d: &mut Dec<'_>) -> Result<Self> {
        Ok(match d.u8()? {
            1 => Mutation::InodeAlloc { ino: d.u64()?, kind: FileKind::from_code(d.u8()?)? },
            2 => Mutation::InodeFree { ino: d.u64()? },
            3 => Mutation::SetSize { ino: d.u64()?, size: d.u64()? },
            t @ (4 | 5) => {
                Mutation::Map { ino: d.u64()?, fblk: d.u64()?, pblk: d.u64()?, len: d.u64()?, fresh: t == 4 }
            }
            6 => Mutation::Unmap { ino: d.u64()?, fblk: d.u64()?, len: d.u64()? },
            7 => {
                let dir = d.u64()?;
                let ino = d.u64()?;
                let n = usize::from(d.u16()?);
                Mutation::DirAdd { dir, ino, name: d.bytes(n)?.to_vec() }
            }
            8 => {
                let dir = d.u64()?;
                let n = usize::from(d.u16()?);
                Mutation::DirRemove { dir, name: d.bytes(n)?.to_vec() }
            }
            9 => Mutation::BadAdd { pblk: d.u64()?, len: d.u64()? },
            10 => Mutation::BadRemove { pblk: d.u64()?, len: d.u64()? },
            _ => return corrupt(Corruption::Log),
        })
    }
}

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

/// Checks a directory-entry name.
pub fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > MAX_NAME {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&c| c == b'/' || c == 0) {
        return Err(FsError::Invalid);
    }
    Ok(())
}

/// All metadata.
#[derive(Clone, Debug)]
pub(crate) struct State {
    pub geo: Geometry,
    pub inodes: BTreeMap<Ino, Inode>,
    pub next_ino: Ino,
    pub space: Space,
}

fn bad<T>() -> Result<T> {
    corrupt(Corruption::Log)
}

impl State {
    /// The state of a fresh file system: an empty root, all data free.
    pub fn fresh(geo: Geometry) -> Result<Self> {
        let mut s = State { geo, inodes: BTreeMap::new(), next_ino: ROOT_INO + 1, space: Space::default() };
        s.inodes.insert(ROOT_INO, Inode::new(FileKind::Dir));
        s.space.free.insert(geo.data_start, geo.data_blocks)?;
        Ok(s)
    }

    pub fn inode(&self, ino: Ino) -> Result<&Inode> {
        self.inodes.get(&ino).ok_or(FsError::NotFound)
    }

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

// ---------------------------------------------------------------- checkpoint

const SEC_META: u32 = 1;
const SEC_INODES: u32 = 2;
const SEC_DIRENTS: u32 = 3;
const SEC_RMAP: u32 = 4;
const SEC_REFC: u32 = 5;
const SEC_FREE: u32 = 6;
const SEC_BAD: u32 = 7;

fn section(out: &mut Enc, tag: u32, count: u64, body: &[u8]) {
    out.u32(tag);
    out.u64(count);
    out.u64(body.len() as u64);
    out.u32(crc32c(body));
    out.bytes(body);
}

impl State {
    /// Serializes the whole state as a checkpoint body.
    pub fn encode_checkpoint(&self) -> Vec<u8> {
        let mut out = Enc::default();
        let mut e = Enc::default();
        e.u64(self.next_ino);
        section(&mut out, SEC_META, 1, &e.buf);

        let mut e = Enc::default();
        let mut ndirents = 0u64;
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
            ndirents += i.entries.len() as u64;
        }
        section(&mut out, SEC_INODES, self.inodes.len() as u64, &e.buf);

        let mut e = Enc::default();
        for (&dir, i) in &self.inodes {
            for (name, &ino) in &i.entries {
                e.u64(dir);
                e.u64(ino);
                e.u16(name.len() as u16);
                e.bytes(name);
            }
        }
        section(&mut out, SEC_DIRENTS, ndirents, &e.buf);

        let mut e = Enc::default();
        for (&(p, ino, f), &l) in &self.space.rmap {
            e.u64(p);
            e.u64(l);
            e.u64(ino);
            e.u64(f);
        }
        section(&mut out, SEC_RMAP, self.space.rmap.len() as u64, &e.buf);

        let mut e = Enc::default();
        for (&s, &(l, c)) in &self.space.refc {
            e.u64(s);
            e.u64(l);
            e.u32(c);
        }
        section(&mut out, SEC_REFC, self.space.refc.len() as u64, &e.buf);

        for (tag, set) in [(SEC_FREE, &self.space.free), (SEC_BAD, &self.space.bad)] {
            let mut e = Enc::default();
            for (s, l) in set.iter() {
                e.u64(s);
                e.u64(l);
            }
            section(&mut out, tag, set.len() as u64, &e.buf);
        }
        out.buf
    }

    /// Parses and checks a checkpoint body (checksums, structure, then the
    /// cross-structure invariants of [`State::verify`]).
    pub fn decode_checkpoint(geo: Geometry, body: &[u8]) -> Result<Self> {
        let mut st = State { geo, inodes: BTreeMap::new(), next_ino: 0, space: Space::default() };
        let mut d = Dec::new(body);
        let mut secs: [Option<(u64, &[u8])>; 8] = [None; 8];
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
            let mut exts = Vec::with_capacity(ne);
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
        st.verify()?;
        Ok(st)
    }

    /// Cross-checks every invariant between the structures: extent maps vs
    /// reverse map vs reference counts vs free and bad sets, and the tree.
    pub fn verify(&self) -> Result<()> {
        let g = &self.geo;
        // 1. Extent maps, collected as physical intervals.
        let mut derived: Vec<(u64, u64, u64, u64)> = Vec::new(); // (p, ino, f, len)
        for (&ino, i) in &self.inodes {
            if ino >= self.next_ino || (i.kind == FileKind::Dir && (!i.extents.is_empty() || i.size != 0)) {
                return corrupt(Corruption::Inode);
            }
            if i.kind == FileKind::File && !i.entries.is_empty() {
                return corrupt(Corruption::Inode);
            }
            let mut prev_end = 0;
            for (&f, e) in &i.extents {
                if e.len == 0 || e.len > MAX_EXTENT || f < prev_end || !g.in_data(e.pblk, e.len) {
                    return corrupt(Corruption::Inode);
                }
                prev_end = f.checked_add(e.len).ok_or(FsError::Corrupt(Corruption::Inode))?;
                derived.push((e.pblk, ino, f, e.len));
            }
        }
        // 2. Reverse map == extents, record for record.
        derived.sort_unstable();
        if derived.len() != self.space.rmap.len()
            || !derived.iter().zip(self.space.rmap.iter()).all(|(a, (k, &l))| (a.0, a.1, a.2) == *k && a.3 == l)
        {
            return corrupt(Corruption::Space);
        }
        // 3. Reference counts: sweep the physical intervals.
        let mut ev: Vec<(u64, i64)> = Vec::with_capacity(derived.len() * 2);
        for &(p, _, _, l) in &derived {
            ev.push((p, 1));
            ev.push((p + l, -1));
        }
        ev.sort_unstable();
        let mut owned: Vec<(u64, u64)> = Vec::new(); // merged owned intervals
        let mut shared: Vec<(u64, u64, u32)> = Vec::new(); // canonical count >= 2
        let mut depth: i64 = 0;
        let mut at = 0u64;
        for (x, dlt) in ev {
            if x > at && depth > 0 {
                push_merge(&mut owned, at, x);
                if depth >= 2 {
                    push_count(&mut shared, at, x, depth as u32);
                }
            }
            depth += dlt;
            at = x;
        }
        let mut stored: Vec<(u64, u64, u32)> = Vec::new();
        for (&s, &(l, c)) in &self.space.refc {
            push_count(&mut stored, s, s + l, c);
        }
        if stored != shared {
            return corrupt(Corruption::Space);
        }
        // 4. Free, owned and bad: free is disjoint from both; together they
        //    cover the data region.
        let free: Vec<(u64, u64)> = self.space.free.iter().map(|(s, l)| (s, s + l)).collect();
        let bad: Vec<(u64, u64)> = self.space.bad.iter().map(|(s, l)| (s, s + l)).collect();
        if intersects(&free, &owned) || intersects(&free, &bad) {
            return corrupt(Corruption::Space);
        }
        let mut ob: Vec<(u64, u64)> = Vec::new();
        let mut all: Vec<(u64, u64)> = owned.iter().chain(bad.iter()).copied().collect();
        all.sort_unstable();
        for (s, e) in all {
            push_merge(&mut ob, s, e);
        }
        let covered: u64 = ob.iter().map(|&(s, e)| e - s).sum::<u64>() + self.space.free.total();
        if covered != g.data_blocks {
            return corrupt(Corruption::Space);
        }
        // 5. Tree: every inode reachable from the root exactly as linked.
        let root = self.inode(ROOT_INO).map_err(|_| FsError::Corrupt(Corruption::Tree))?;
        if root.links != 0 || root.kind != FileKind::Dir {
            return corrupt(Corruption::Tree);
        }
        let mut seen = 0usize;
        let mut stack = alloc::vec![ROOT_INO];
        let mut visited_dirs = 0usize;
        while let Some(d) = stack.pop() {
            visited_dirs += 1;
            if visited_dirs > self.inodes.len() {
                return corrupt(Corruption::Tree);
            }
            let Some(di) = self.inodes.get(&d) else {
                return corrupt(Corruption::Tree);
            };
            let mut subdirs = 0;
            for &c in di.entries.values() {
                let Some(ci) = self.inodes.get(&c) else {
                    return corrupt(Corruption::Tree);
                };
                if ci.kind == FileKind::Dir {
                    if ci.parent != d || ci.links != 1 {
                        return corrupt(Corruption::Tree);
                    }
                    subdirs += 1;
                    stack.push(c);
                } else {
                    seen += 1;
                }
            }
            if subdirs != di.subdirs {
                return corrupt(Corruption::Tree);
            }
        }
        // Files may have several links; count distinct reachable inodes.
        let files = self.inodes.values().filter(|i| i.kind == FileKind::File).count();
        let linked: usize = self.inodes.values().filter(|i| i.kind == FileKind::File).map(|i| i.links as usize).sum();
        if visited_dirs + files != self.inodes.len()
            || linked != seen
            || self.inodes.values().any(|i| i.kind == FileKind::File && i.links == 0)
        {
            return corrupt(Corruption::Tree);
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

fn push_merge(v: &mut Vec<(u64, u64)>, s: u64, e: u64) {
    match v.last_mut() {
        Some(last) if s <= last.1 => last.1 = last.1.max(e),
        _ => v.push((s, e)),
    }
}

fn push_count(v: &mut Vec<(u64, u64, u32)>, s: u64, e: u64, c: u32) {
    match v.last_mut() {
        Some(last) if last.1 == s && last.2 == c => last.1 = e,
        _ => v.push((s, e, c)),
    }
}

/// Do two sorted lists of disjoint half-open intervals intersect?
fn intersects(a: &[(u64, u64)], b: &[(u64, u64)]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].1 <= b[j].0 {
            i += 1;
        } else if b[j].1 <= a[i].0 {
            j += 1;
        } else {
            return true;
        }
    }
    false
}
