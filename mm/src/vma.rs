//! The virtual memory areas of a process: which ranges of its address
//! space are mapped, with which rights and what backs them.
//!
//! A [`VmaSet`] is pure bookkeeping, like Linux's VMA tree or Asterinas's
//! `Vmar`: it never touches page tables. The kernel changes the set first
//! (`insert`, `remove`, `protect` return exactly the pieces that changed)
//! and then brings the page tables in line with those pieces. Every area is
//! page-aligned, areas never overlap, and a change that cannot be made
//! leaves the set untouched.
//!
//! What backs an area is the caller's type `B` (anonymous memory, a file
//! range of the DAX file system, the raw pmem device): splitting an area
//! asks the backing for the piece that starts `delta` bytes later
//! ([`Backing::split_at`]), which for a file mapping advances the file
//! offset.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use bitflags::bitflags;

use crate::PAGE_SIZE;

bitflags! {
    /// Access rights of an area (`PROT_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Prot: u8 {
        const READ = 1;
        const WRITE = 2;
        const EXEC = 4;
    }
}

/// What backs an area.
pub trait Backing: Clone {
    /// The backing of the part of an area that starts `delta` bytes after
    /// this one's start.
    fn split_at(&self, delta: u64) -> Self;
    /// Whether an area backed by `next`, starting right where one backed
    /// by `self` and `len` bytes long ends, may be merged into it.
    fn continues(&self, len: u64, next: &Self) -> bool;
}

/// One area: `[start, end)`, page-aligned, non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma<B> {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub backing: B,
}

impl<B: Backing> Vma<B> {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The part of this area inside `[start, end)` (which must overlap it).
    fn clip(&self, start: u64, end: u64) -> Vma<B> {
        let s = start.max(self.start);
        Vma { start: s, end: end.min(self.end), prot: self.prot, backing: self.backing.split_at(s - self.start) }
    }
}

/// Why a change of the set was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmaError {
    /// An address or length is not page-aligned, empty, or overflows.
    Invalid,
    /// The range overlaps an existing area (insert without replacing).
    Overlap,
    /// Part of the range is not mapped (`mprotect`: ENOMEM).
    NotMapped,
    /// The set would exceed its area limit (ENOMEM).
    TooMany,
}

/// The areas of one address space.
#[derive(Debug, Clone)]
pub struct VmaSet<B> {
    areas: BTreeMap<u64, Vma<B>>,
    limit: usize,
}

/// Linux's default `vm.max_map_count`.
pub const DEFAULT_MAX_AREAS: usize = 65530;

fn checked_range(start: u64, len: u64) -> Result<u64, VmaError> {
    let end = start.checked_add(len).ok_or(VmaError::Invalid)?;
    if len == 0 || !start.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(VmaError::Invalid);
    }
    Ok(end)
}

impl<B: Backing> Default for VmaSet<B> {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_AREAS)
    }
}

impl<B: Backing> VmaSet<B> {
    /// An empty set that holds at most `limit` areas.
    pub fn new(limit: usize) -> Self {
        VmaSet { areas: BTreeMap::new(), limit }
    }

    pub fn len(&self) -> usize {
        self.areas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.areas.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Vma<B>> {
        self.areas.values()
    }

    /// The area containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Vma<B>> {
        self.areas.range(..=addr).next_back().map(|(_, v)| v).filter(|v| addr < v.end)
    }

    /// The areas overlapping `[start, end)`, in address order.
    pub fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Vma<B>> {
        let first = self.areas.range(..=start).next_back().filter(|(_, v)| v.end > start).map(|(&k, _)| k);
        let from = first.unwrap_or(start);
        self.areas.range(from..end).map(|(_, v)| v).filter(move |v| v.end > start && v.start < end)
    }

    /// Whether every byte of `[start, end)` is inside some area.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        for v in self.overlapping(start, end) {
            if v.start > at {
                return false;
            }
            at = v.end;
        }
        at >= end
    }

    /// Adds an area over a range where nothing is mapped, merging it with
    /// an adjacent area when rights and backing continue.
    pub fn insert(&mut self, start: u64, len: u64, prot: Prot, backing: B) -> Result<(), VmaError> {
        let end = checked_range(start, len)?;
        if self.overlapping(start, end).next().is_some() {
            return Err(VmaError::Overlap);
        }
        if self.areas.len() >= self.limit {
            return Err(VmaError::TooMany);
        }
        self.areas.insert(start, Vma { start, end, prot, backing });
        self.merge_around(start, end);
        Ok(())
    }

    /// Removes `[start, start + len)` (splitting areas at its edges) and
    /// returns the removed pieces, clipped to the range, in address order.
    /// Nothing mapped there is not an error (`munmap`).
    pub fn remove(&mut self, start: u64, len: u64) -> Result<Vec<Vma<B>>, VmaError> {
        let end = checked_range(start, len)?;
        // Splitting one area in the middle adds one.
        let splits_one = self.find(start).is_some_and(|v| v.start < start && v.end > end);
        if splits_one && self.areas.len() >= self.limit {
            return Err(VmaError::TooMany);
        }
        let keys: Vec<u64> = self.overlapping(start, end).map(|v| v.start).collect();
        let mut removed = Vec::with_capacity(keys.len());
        for k in keys {
            let Some(v) = self.areas.remove(&k) else { continue };
            if v.start < start {
                let head = v.clip(v.start, start);
                self.areas.insert(head.start, head);
            }
            if v.end > end {
                let tail = v.clip(end, v.end);
                self.areas.insert(tail.start, tail);
            }
            removed.push(v.clip(start, end));
        }
        Ok(removed)
    }

    /// Sets the rights of `[start, start + len)`, which must be entirely
    /// mapped; returns the pieces whose rights changed, with their old
    /// rights.
    pub fn protect(&mut self, start: u64, len: u64, prot: Prot) -> Result<Vec<(u64, u64, Prot)>, VmaError> {
        let end = checked_range(start, len)?;
        if !self.covers(start, end) {
            return Err(VmaError::NotMapped);
        }
        if self.overlapping(start, end).all(|v| v.prot == prot) {
            return Ok(Vec::new());
        }
        let extra = usize::from(self.find(start).is_some_and(|v| v.start < start && v.prot != prot))
            + usize::from(self.find(end - 1).is_some_and(|v| v.end > end && v.prot != prot));
        if self.areas.len() + extra > self.limit {
            return Err(VmaError::TooMany);
        }
        let pieces = self.remove(start, len)?;
        let mut changed = Vec::new();
        for mut p in pieces {
            if p.prot != prot {
                changed.push((p.start, p.end, p.prot));
            }
            p.prot = prot;
            let (s, e) = (p.start, p.end);
            self.areas.insert(s, p);
            self.merge_around(s, e);
        }
        Ok(changed)
    }

    /// A free range of `len` bytes inside `[lo, hi)`, searched from the top
    /// down (like Linux's default mmap layout), whose start is congruent to
    /// `phase` modulo `align` (a power of two >= the page size; `phase <
    /// align`). The kernel asks for `align` = 2 MiB and `phase` = the file
    /// offset mod 2 MiB so that huge mappings can happen.
    pub fn find_free(&self, len: u64, align: u64, phase: u64, lo: u64, hi: u64) -> Option<u64> {
        if len == 0 || !len.is_multiple_of(PAGE_SIZE) || !align.is_power_of_two() || align < PAGE_SIZE {
            return None;
        }
        let phase = phase % align;
        // The highest start <= `top - len` that is congruent to `phase`.
        let fit = |gap_lo: u64, gap_hi: u64| -> Option<u64> {
            let last = gap_hi.checked_sub(len)?;
            let s = (last.checked_sub(phase)? & !(align - 1)) + phase;
            (s >= gap_lo && s <= last).then_some(s)
        };
        let mut top = hi;
        for v in self.areas.range(..hi).rev().map(|(_, v)| v) {
            if v.end <= top {
                if let Some(s) = fit(v.end.max(lo), top) {
                    return Some(s);
                }
            }
            top = top.min(v.start);
            if top <= lo {
                return None;
            }
        }
        fit(lo, top)
    }

    fn merge_around(&mut self, start: u64, end: u64) {
        // With the next area.
        if let Some(next) = self.areas.get(&end).cloned() {
            if let Some(cur) = self.areas.get_mut(&start) {
                if cur.prot == next.prot && cur.backing.continues(cur.len(), &next.backing) {
                    cur.end = next.end;
                    self.areas.remove(&end);
                }
            }
        }
        // With the previous one.
        let prev = self.areas.range(..start).next_back().map(|(&k, v)| (k, v.end));
        if let Some((pk, pend)) = prev {
            if pend == start {
                let cur = self.areas.get(&start).cloned();
                if let (Some(cur), Some(p)) = (cur, self.areas.get_mut(&pk)) {
                    if p.prot == cur.prot && p.backing.continues(p.end - p.start, &cur.backing) {
                        p.end = cur.end;
                        self.areas.remove(&start);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Test backing: an object id and a page offset into it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Obj {
        id: u8,
        page: u64,
    }

    impl Backing for Obj {
        fn split_at(&self, delta: u64) -> Self {
            Obj { id: self.id, page: self.page + delta / PAGE_SIZE }
        }
        fn continues(&self, len: u64, next: &Self) -> bool {
            self.id == next.id && self.page + len / PAGE_SIZE == next.page
        }
    }

    const P: u64 = PAGE_SIZE;
    const RW: Prot = Prot::READ.union(Prot::WRITE);

    #[test]
    fn insert_find_remove_split() {
        let mut s = VmaSet::default();
        s.insert(10 * P, 10 * P, RW, Obj { id: 1, page: 0 }).unwrap();
        assert_eq!(s.insert(15 * P, P, RW, Obj { id: 2, page: 0 }), Err(VmaError::Overlap));
        assert_eq!(s.insert(15 * P + 1, P, RW, Obj { id: 2, page: 0 }), Err(VmaError::Invalid));
        let removed = s.remove(12 * P, 2 * P).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!((removed[0].start, removed[0].end, removed[0].backing.page), (12 * P, 14 * P, 2));
        assert_eq!(s.len(), 2);
        assert_eq!(s.find(14 * P).map(|v| v.backing.page), Some(4));
        assert!(s.find(13 * P).is_none());
        assert!(!s.covers(10 * P, 20 * P));
        assert!(s.covers(14 * P, 20 * P));
        // Re-inserting the hole with the continuing backing merges all three.
        s.insert(12 * P, 2 * P, RW, Obj { id: 1, page: 2 }).unwrap();
        assert_eq!(s.len(), 1);
        // Removing nothing is fine.
        assert!(s.remove(100 * P, P).unwrap().is_empty());
    }

    #[test]
    fn protect_needs_a_fully_mapped_range() {
        let mut s = VmaSet::default();
        s.insert(0x1000 * P, 4 * P, RW, Obj { id: 1, page: 0 }).unwrap();
        assert_eq!(s.protect(0x1000 * P, 5 * P, Prot::READ), Err(VmaError::NotMapped));
        let changed = s.protect(0x1001 * P, P, Prot::READ).unwrap();
        assert_eq!(changed, vec![(0x1001 * P, 0x1002 * P, RW)]);
        assert_eq!(s.len(), 3);
        s.protect(0x1001 * P, P, RW).unwrap();
        assert_eq!(s.len(), 1, "same rights merge back");
    }

    #[test]
    fn find_free_is_top_down_and_congruent() {
        let mut s: VmaSet<Obj> = VmaSet::default();
        let two_m = 2 << 20;
        let lo = 0x1000_0000;
        let hi = 0x7000_0000;
        let a = s.find_free(4 * P, P, 0, lo, hi).unwrap();
        assert_eq!(a, hi - 4 * P);
        s.insert(a, 4 * P, RW, Obj { id: 1, page: 0 }).unwrap();
        let b = s.find_free(two_m, two_m, 0x3000, lo, hi).unwrap();
        assert_eq!(b % two_m, 0x3000);
        assert!(b + two_m <= a);
        assert_eq!(s.find_free(hi, P, 0, lo, hi), None);
        assert_eq!(s.find_free(P, 3 * P, 0, lo, hi), None, "alignment must be a power of two");
    }

    #[test]
    fn limit_is_enforced_without_change() {
        let mut s = VmaSet::new(2);
        s.insert(0, 10 * P, RW, Obj { id: 1, page: 0 }).unwrap();
        s.insert(20 * P, P, RW, Obj { id: 2, page: 0 }).unwrap();
        assert_eq!(s.remove(4 * P, P), Err(VmaError::TooMany));
        assert_eq!(s.protect(4 * P, P, Prot::READ), Err(VmaError::TooMany));
        assert_eq!(s.len(), 2);
        assert!(s.covers(0, 10 * P));
    }

    /// Operations for the model test (page numbers 0..64).
    #[derive(Debug, Clone)]
    enum Op {
        Insert { page: u64, pages: u64, prot: u8, id: u8 },
        Remove { page: u64, pages: u64 },
        Protect { page: u64, pages: u64, prot: u8 },
        Replace { page: u64, pages: u64, id: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..64, 1u64..16, 0u8..8, 0u8..3).prop_map(|(page, pages, prot, id)| Op::Insert {
                page,
                pages,
                prot,
                id
            }),
            (0u64..64, 1u64..16).prop_map(|(page, pages)| Op::Remove { page, pages }),
            (0u64..64, 1u64..16, 0u8..8).prop_map(|(page, pages, prot)| Op::Protect { page, pages, prot }),
            (0u64..64, 1u64..16, 0u8..3).prop_map(|(page, pages, id)| Op::Replace { page, pages, id }),
        ]
    }

    proptest! {
        /// The set agrees page by page with a plain array model, stays
        /// sorted, disjoint and fully merged.
        #[test]
        fn matches_a_page_model(ops in proptest::collection::vec(op(), 1..60)) {
            let mut s = VmaSet::default();
            let mut model: Vec<Option<(Prot, u8, u64)>> = vec![None; 80];
            for op in ops {
                match op {
                    Op::Insert { page, pages, prot, id } => {
                        let prot = Prot::from_bits_truncate(prot);
                        let free = (page..page + pages).all(|p| model[p as usize].is_none());
                        let r = s.insert(page * P, pages * P, prot, Obj { id, page });
                        prop_assert_eq!(r.is_ok(), free);
                        if free {
                            for p in page..page + pages {
                                model[p as usize] = Some((prot, id, p));
                            }
                        }
                    }
                    Op::Remove { page, pages } => {
                        let removed = s.remove(page * P, pages * P).unwrap();
                        let mapped = (page..page + pages).filter(|&p| model[p as usize].is_some()).count() as u64;
                        prop_assert_eq!(removed.iter().map(|v| v.len() / P).sum::<u64>(), mapped);
                        for v in &removed {
                            prop_assert_eq!(Some((v.prot, v.backing.id, v.backing.page)), model[(v.start / P) as usize]);
                        }
                        for p in page..page + pages {
                            model[p as usize] = None;
                        }
                    }
                    Op::Protect { page, pages, prot } => {
                        let prot = Prot::from_bits_truncate(prot);
                        let mapped = (page..page + pages).all(|p| model[p as usize].is_some());
                        prop_assert_eq!(s.protect(page * P, pages * P, prot).is_ok(), mapped);
                        if mapped {
                            for p in page..page + pages {
                                if let Some(m) = &mut model[p as usize] {
                                    m.0 = prot;
                                }
                            }
                        }
                    }
                    Op::Replace { page, pages, id } => {
                        // MAP_FIXED: remove, then insert.
                        s.remove(page * P, pages * P).unwrap();
                        s.insert(page * P, pages * P, RW, Obj { id, page }).unwrap();
                        for p in page..page + pages {
                            model[p as usize] = Some((RW, id, p));
                        }
                    }
                }
                for p in 0..80u64 {
                    let got = s.find(p * P).map(|v| (v.prot, v.backing.id, v.backing.page + (p * P - v.start) / P));
                    prop_assert_eq!(got, model[p as usize]);
                }
                let v: Vec<_> = s.iter().collect();
                for w in v.windows(2) {
                    prop_assert!(w[0].end <= w[1].start);
                    let mergeable = w[0].end == w[1].start && w[0].prot == w[1].prot
                        && w[0].backing.continues(w[0].len(), &w[1].backing);
                    prop_assert!(!mergeable, "adjacent areas left unmerged");
                }
            }
        }
    }
}
