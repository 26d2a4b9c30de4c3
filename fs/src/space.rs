//! Space bookkeeping: free and bad block sets, reference counts of shared
//! extents and the reverse map, and the allocation policy
//! ([`Space::pick`]). Every update checks its preconditions and reports
//! corruption instead of panicking.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::error::{corrupt, Corruption, Result};
use crate::format::{MetaKind, HUGE_BLOCKS, MAX_EXTENT};

/// A set of disjoint, coalesced block ranges (start -> length).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    map: BTreeMap<u64, u64>,
    total: u64,
}

impl RangeSet {
    /// Number of blocks in the set.
    pub fn total(&self) -> u64 {
        self.total
    }
    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Ranges in ascending order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&s, &l)| (s, l))
    }
    /// Ranges starting at or after `from`.
    pub fn iter_from(&self, from: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.map.range(from..).map(|(&s, &l)| (s, l))
    }
    /// The range containing block `b`.
    pub fn containing(&self, b: u64) -> Option<(u64, u64)> {
        self.map.range(..=b).next_back().map(|(&s, &l)| (s, l)).filter(|&(s, l)| s + l > b)
    }
    /// Is every block of `[a, a + n)` in the set?
    pub fn contains_range(&self, a: u64, n: u64) -> bool {
        self.containing(a).is_some_and(|(s, l)| s + l >= a + n)
    }
    /// Does any block of `[a, a + n)` belong to the set?
    pub fn overlaps(&self, a: u64, n: u64) -> bool {
        self.containing(a).is_some() || self.map.range(a..a.saturating_add(n)).next().is_some()
    }
    /// Removes `[a, a + n)`, which must be entirely in the set.
    pub fn remove(&mut self, a: u64, n: u64) -> Result<()> {
        let Some((s, l)) = self.containing(a) else {
            return corrupt(Corruption::Space);
        };
        if s + l < a + n || n == 0 {
            return corrupt(Corruption::Space);
        }
        self.map.remove(&s);
        if s < a {
            self.map.insert(s, a - s);
        }
        if s + l > a + n {
            self.map.insert(a + n, s + l - (a + n));
        }
        self.total -= n;
        Ok(())
    }
    /// Adds `[a, a + n)`, which must not overlap the set; coalesces.
    pub fn insert(&mut self, a: u64, n: u64) -> Result<()> {
        if n == 0 || a.checked_add(n).is_none() || self.overlaps(a, n) {
            return corrupt(Corruption::Space);
        }
        let (mut start, mut len) = (a, n);
        if let Some((s, l)) = self.map.range(..a).next_back().map(|(&s, &l)| (s, l)) {
            if s + l == a {
                self.map.remove(&s);
                start = s;
                len += l;
            }
        }
        if let Some(l) = self.map.get(&(a + n)).copied() {
            self.map.remove(&(a + n));
            len += l;
        }
        self.map.insert(start, len);
        self.total += n;
        Ok(())
    }
    /// The parts of `[a, a + n)` in the set.
    pub fn intersect(&self, a: u64, n: u64) -> Vec<(u64, u64)> {
        let end = a.saturating_add(n);
        let mut out = Vec::new();
        let first = self.containing(a).map_or(a, |(s, _)| s);
        for (&s, &l) in self.map.range(first..end) {
            let lo = s.max(a);
            let hi = (s + l).min(end);
            if hi > lo {
                out.push((lo, hi - lo));
            }
        }
        out
    }
    /// Removes whatever part of `[a, a + n)` is in the set.
    pub fn remove_overlap(&mut self, a: u64, n: u64) {
        for (s, l) in self.intersect(a, n) {
            let _ = self.remove(s, l);
        }
    }
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

/// Reverse-map key: physical block, owning inode, file block.
pub type RmapKey = (u64, u64, u64);

/// Space maps of the data region.
#[derive(Clone, Debug, Default)]
pub struct Space {
    /// Free data blocks (never contains bad blocks).
    pub free: RangeSet,
    /// Known bad (poisoned) blocks, owned or not.
    pub bad: RangeSet,
    /// Shared ranges: start -> (length, count >= 2). Owned blocks not in
    /// here have count 1.
    pub refc: BTreeMap<u64, (u64, u32)>,
    /// Reverse map: one record per file extent.
    pub rmap: BTreeMap<RmapKey, u64>,
    /// Data-area blocks that hold metadata (the current checkpoint's body
    /// and log copies): start -> (length, kind).
    pub meta: BTreeMap<u64, (u64, MetaKind)>,
}

impl Space {
    fn refc_split(&mut self, x: u64) {
        if let Some((&s, &(l, c))) = self.refc.range(..x).next_back() {
            if s + l > x {
                self.refc.insert(s, (x - s, c));
                self.refc.insert(x, (s + l - x, c));
            }
        }
    }
    /// Reference count of block `b` (1 if owned and unshared; 0 if free).
    pub fn refcount(&self, b: u64) -> u32 {
        match self.refc.range(..=b).next_back() {
            Some((&s, &(l, c))) if s + l > b => c,
            _ if self.free.containing(b).is_some() => 0,
            _ => 1,
        }
    }
    /// Length of the run starting at `b` (at most `n`) whose blocks are all
    /// shared (`true`) or all unshared (`false`).
    pub fn shared_run(&self, b: u64, n: u64) -> (bool, u64) {
        if let Some((&s, &(l, _))) = self.refc.range(..=b).next_back() {
            if s + l > b {
                // Shared; extend over adjacent shared ranges.
                let mut end = s + l;
                while end < b + n {
                    match self.refc.get(&end) {
                        Some(&(l2, _)) => end += l2,
                        None => break,
                    }
                }
                return (true, (end - b).min(n));
            }
        }
        let next = self.refc.range(b..b + n).next().map_or(b + n, |(&s, _)| s);
        (false, next - b)
    }
    /// Adds one owner to every block of `[a, a + n)` (all owned already).
    pub fn refc_inc(&mut self, a: u64, n: u64) -> Result<()> {
        if self.free.overlaps(a, n) || self.bad.overlaps(a, n) {
            return corrupt(Corruption::Space);
        }
        self.refc_split(a);
        self.refc_split(a + n);
        let inside: Vec<(u64, u64, u32)> = self.refc.range(a..a + n).map(|(&s, &(l, c))| (s, l, c)).collect();
        let mut cur = a;
        for (s, l, c) in inside {
            if s > cur {
                self.refc.insert(cur, (s - cur, 2));
            }
            let Some(c2) = c.checked_add(1) else {
                return corrupt(Corruption::Space);
            };
            self.refc.insert(s, (l, c2));
            cur = s + l;
        }
        if cur < a + n {
            self.refc.insert(cur, (a + n - cur, 2));
        }
        Ok(())
    }
    /// Adds one owner to every block of `[a, a + n)` without checking the
    /// free and bad sets (repair, which rebuilds them afterwards).
    pub fn refc_inc_raw(&mut self, a: u64, n: u64) -> Result<()> {
        let (free, bad) = (core::mem::take(&mut self.free), core::mem::take(&mut self.bad));
        let r = self.refc_inc(a, n);
        self.free = free;
        self.bad = bad;
        r
    }
    /// Drops one owner from every block of `[a, a + n)`; returns the ranges
    /// whose count reached zero (the caller frees them).
    pub fn refc_dec(&mut self, a: u64, n: u64) -> Result<Vec<(u64, u64)>> {
        if self.free.overlaps(a, n) {
            return corrupt(Corruption::Space);
        }
        self.refc_split(a);
        self.refc_split(a + n);
        let inside: Vec<(u64, u64, u32)> = self.refc.range(a..a + n).map(|(&s, &(l, c))| (s, l, c)).collect();
        let mut freed = Vec::new();
        let mut cur = a;
        for (s, l, c) in inside {
            if s > cur {
                freed.push((cur, s - cur));
            }
            if c <= 2 {
                self.refc.remove(&s);
            } else {
                self.refc.insert(s, (l, c - 1));
            }
            cur = s + l;
        }
        if cur < a + n {
            freed.push((cur, a + n - cur));
        }
        Ok(freed)
    }
    /// Returns `[a, a + n)` to the free set, except its bad blocks.
    pub fn release(&mut self, a: u64, n: u64) -> Result<()> {
        let bad = self.bad.intersect(a, n);
        let mut cur = a;
        for (s, l) in bad {
            if s > cur {
                self.free.insert(cur, s - cur)?;
            }
            cur = s + l;
        }
        if cur < a + n {
            self.free.insert(cur, a + n - cur)?;
        }
        Ok(())
    }
    /// Picks free blocks for file block `fb`, up to `want` of them, given
    /// `goal` (the block after the file's previous one) and `cursor` (where
    /// the last large allocation was found; updated).
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
    pub fn pick(&self, cursor: &mut u64, goal: Option<u64>, fb: u64, want: u64) -> Option<(u64, u64)> {
        let want = want.clamp(1, MAX_EXTENT);
        let free = &self.free;
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
            let found = free.iter_from(*cursor).chain(free.iter()).find_map(|(s, l)| chunk_in(s, l).map(|c| (c, s)));
            if let Some((c, s)) = found {
                *cursor = s;
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

    /// Blocks held by metadata in the data area.
    pub fn meta_blocks(&self) -> u64 {
        self.meta.values().map(|&(l, _)| l).sum()
    }

    /// Metadata extents overlapping `[a, a + n)`: (start, len, kind).
    pub fn meta_in(&self, a: u64, n: u64) -> Vec<(u64, u64, MetaKind)> {
        let end = a.saturating_add(n);
        let first = self.meta.range(..=a).next_back().filter(|(&s, &(l, _))| s + l > a).map_or(a, |(&s, _)| s);
        self.meta.range(first..end).map(|(&s, &(l, k))| (s, l, k)).collect()
    }

    /// Takes `want` free blocks for metadata, in as few extents as it can:
    /// the smallest free range that holds them all (best fit keeps large
    /// chunks for files), else the largest ranges first. With `single`,
    /// one extent of at most `want` blocks (the largest there is if none
    /// fits). The blocks leave the free set; `None` (nothing taken) if
    /// there are not enough.
    pub fn take_meta(&mut self, want: u64, single: bool) -> Option<Vec<(u64, u64)>> {
        if want == 0 || (!single && self.free.total() < want) {
            return None;
        }
        let fit = self.free.iter().filter(|&(_, l)| l >= want).min_by_key(|&(s, l)| (l, core::cmp::Reverse(s)));
        let picks: Vec<(u64, u64)> = match fit {
            Some((s, l)) => alloc::vec![(s + l - want, want)],
            None if single => {
                let (s, l) = self.free.iter().max_by_key(|&(_, l)| l)?;
                alloc::vec![(s, l)]
            }
            None => {
                let mut ranges: Vec<(u64, u64)> = self.free.iter().collect();
                ranges.sort_unstable_by_key(|&(s, l)| (core::cmp::Reverse(l), s));
                let mut left = want;
                let mut out = Vec::new();
                for (s, l) in ranges {
                    if left == 0 {
                        break;
                    }
                    let k = l.min(left);
                    out.push((s, k));
                    left -= k;
                }
                out
            }
        };
        for &(s, l) in &picks {
            self.free.remove(s, l).ok()?;
        }
        Some(picks)
    }

    /// Reverse-map records overlapping `[a, a + n)`: (pblk, len, ino, fblk).
    pub fn rmap_query(&self, a: u64, n: u64) -> Vec<(u64, u64, u64, u64)> {
        let lo = a.saturating_sub(MAX_EXTENT - 1);
        let hi = a.saturating_add(n);
        self.rmap
            .range((lo, 0, 0)..(hi, 0, 0))
            .filter(|(&(p, _, _), &l)| p + l > a)
            .map(|(&(p, ino, f), &l)| (p, l, ino, f))
            .collect()
    }
    /// Owned (mapped by some extent) sub-ranges of `[a, a + n)`.
    pub fn owned_ranges(&self, a: u64, n: u64) -> Vec<(u64, u64)> {
        let mut iv: Vec<(u64, u64)> =
            self.rmap_query(a, n).into_iter().map(|(p, l, _, _)| (p.max(a), (p + l).min(a + n))).collect();
        iv.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (s, e) in iv {
            match out.last_mut() {
                Some(last) if s <= last.0 + last.1 => {
                    let end = (last.0 + last.1).max(e);
                    last.1 = end - last.0;
                }
                _ => out.push((s, e - s)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rangeset_insert_remove_coalesce() {
        let mut r = RangeSet::default();
        r.insert(10, 5).unwrap();
        r.insert(20, 5).unwrap();
        r.insert(15, 5).unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), [(10, 15)]);
        assert!(r.insert(12, 1).is_err());
        r.remove(12, 3).unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), [(10, 2), (15, 10)]);
        assert!(r.remove(11, 3).is_err());
        assert_eq!(r.total(), 12);
        assert_eq!(r.intersect(0, 100), [(10, 2), (15, 10)]);
        assert_eq!(r.intersect(11, 5), [(11, 1), (15, 1)]);
    }

    #[test]
    fn refcounts_split_and_free() {
        let mut s = Space::default();
        s.refc_inc(100, 10).unwrap(); // 100..110 count 2
        s.refc_inc(105, 10).unwrap(); // 105..110 count 3, 110..115 count 2
        assert_eq!(s.refcount(104), 2);
        assert_eq!(s.refcount(107), 3);
        assert_eq!(s.refcount(112), 2);
        assert_eq!(s.refcount(120), 1);
        assert_eq!(s.shared_run(100, 20), (true, 15));
        assert_eq!(s.shared_run(95, 20), (false, 5));
        let freed = s.refc_dec(98, 20).unwrap();
        assert_eq!(freed, [(98, 2), (115, 3)]);
        assert_eq!(s.refcount(107), 2);
        assert_eq!(s.refcount(104), 1);
    }
}
