//! Who maps what: per file (inode), the live mappings of its byte ranges
//! into address spaces.
//!
//! The file system's persistent reverse map answers "which files own this
//! physical block"; this in-memory map answers the second question of
//! memory failure and truncate, "which address spaces map this file range,
//! at which virtual addresses" (Linux's `i_mmap` interval tree, Asterinas's
//! per-VMO rmap). With both, "who maps this physical page" is two lookups,
//! never a walk over every process.
//!
//! A mapping is recorded when a file area is mmap'ed and forgotten when it
//! is unmapped (or split: record the pieces). Which pages are currently
//! present, and at which size, is the page tables' business: the caller
//! looks there for each address this map returns.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use fsdax_pmem_api::ByteRange;

/// One mapping of a file range into address space `space` at `va`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping<S> {
    pub space: S,
    /// Virtual address of the first byte of `file`.
    pub va: u64,
    pub file: ByteRange,
}

impl<S: Copy> Mapping<S> {
    /// The virtual range that maps `part` of the file (which must lie
    /// inside this mapping's file range).
    pub fn va_of(&self, part: ByteRange) -> ByteRange {
        let start = self.va + (part.start() - self.file.start());
        ByteRange::from_len_saturating(start, part.len())
    }
}

/// The mappings of one file.
#[derive(Debug, Clone)]
pub struct Mappers<S> {
    /// Keyed by (file start, space, va) so that one space may map the same
    /// range twice.
    map: BTreeMap<(u64, S, u64), u64>,
}

impl<S: Ord + Copy> Default for Mappers<S> {
    fn default() -> Self {
        Mappers { map: BTreeMap::new() }
    }
}

impl<S: Ord + Copy> Mappers<S> {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records that `space` maps `file` at `va`. Empty ranges are ignored.
    pub fn insert(&mut self, space: S, va: u64, file: ByteRange) {
        if !file.is_empty() {
            self.map.insert((file.start(), space, va), file.end());
        }
    }

    /// Forgets the mapping recorded with exactly these values; true if it
    /// was there.
    pub fn remove(&mut self, space: S, va: u64, file: ByteRange) -> bool {
        self.map.remove(&(file.start(), space, va)).is_some()
    }

    /// Forgets every mapping of `space` (the process exited or exec'ed).
    pub fn remove_space(&mut self, space: S) {
        self.map.retain(|&(_, s, _), _| s != space);
    }

    /// Forgets what `space` maps in the virtual range `va` (`munmap`, a
    /// `MAP_FIXED` replacement): a mapping inside it goes, one that sticks
    /// out keeps its parts outside (as the areas themselves are split).
    /// Returns how many mappings it touched.
    pub fn remove_va_range(&mut self, space: S, va: ByteRange) -> usize {
        let hit: Vec<(u64, u64, u64)> = self
            .map
            .iter()
            .filter(|(&(_, s, _), _)| s == space)
            .filter_map(|(&(start, _, v), &end)| {
                let mapped = ByteRange::from_len_saturating(v, end - start);
                mapped.overlaps(&va).then_some((start, v, end))
            })
            .collect();
        for &(start, v, end) in &hit {
            self.map.remove(&(start, space, v));
            if v < va.start() {
                self.map.insert((start, space, v), start + (va.start() - v));
            }
            let v_end = v + (end - start);
            if v_end > va.end() {
                self.map.insert((start + (va.end() - v), space, va.end()), end);
            }
        }
        hit.len()
    }

    /// Every mapping of `space`.
    pub fn of_space(&self, space: S) -> Vec<Mapping<S>> {
        self.map
            .iter()
            .filter(|(&(_, s, _), _)| s == space)
            .filter_map(|(&(start, s, va), &end)| Some(Mapping { space: s, va, file: ByteRange::new(start, end)? }))
            .collect()
    }

    /// The mappings that overlap `range`, each clipped to it.
    pub fn query(&self, range: ByteRange) -> Vec<Mapping<S>> {
        self.map
            .iter()
            .take_while(|(&(start, _, _), _)| start < range.end())
            .filter_map(|(&(start, space, va), &end)| {
                let m = Mapping { space, va, file: ByteRange::new(start, end)? };
                let part = m.file.intersection(&range).filter(|p| !p.is_empty())?;
                Some(Mapping { space, va: m.va_of(part).start(), file: part })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: u64, e: u64) -> ByteRange {
        ByteRange::new(s, e).unwrap()
    }

    #[test]
    fn query_clips_and_translates() {
        let mut m: Mappers<u32> = Mappers::default();
        m.insert(1, 0x7000_0000, r(0, 0x10000));
        m.insert(2, 0x5000_0000, r(0x8000, 0x20000));
        m.insert(1, 0x6000_0000, r(0x3000, 0x4000)); // same file range mapped twice by space 1
        let hits = m.query(r(0x3000, 0x9000));
        assert_eq!(hits.len(), 3);
        assert!(hits.contains(&Mapping { space: 1, va: 0x7000_3000, file: r(0x3000, 0x9000) }));
        assert!(hits.contains(&Mapping { space: 2, va: 0x5000_0000, file: r(0x8000, 0x9000) }));
        assert!(hits.contains(&Mapping { space: 1, va: 0x6000_0000, file: r(0x3000, 0x4000) }));
        assert!(m.query(r(0x20000, 0x30000)).is_empty());
        assert!(m.query(r(0x3000, 0x3000)).is_empty(), "an empty range matches nothing");
        assert!(m.remove(1, 0x6000_0000, r(0x3000, 0x4000)));
        assert!(!m.remove(1, 0x6000_0000, r(0x3000, 0x4000)));
        m.remove_space(1);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn removing_a_virtual_range_clips_and_splits() {
        let mut m: Mappers<u32> = Mappers::default();
        // Space 1 maps file [0, 0x10000) at 0x7000_0000; space 2 the same range elsewhere.
        m.insert(1, 0x7000_0000, r(0, 0x10000));
        m.insert(2, 0x7000_0000, r(0, 0x10000));
        // munmap of a hole in the middle: the head and the tail stay.
        assert_eq!(m.remove_va_range(1, r(0x7000_4000, 0x7000_6000)), 1);
        let mut got = m.of_space(1);
        got.sort_by_key(|x| x.va);
        assert_eq!(
            got,
            vec![
                Mapping { space: 1, va: 0x7000_0000, file: r(0, 0x4000) },
                Mapping { space: 1, va: 0x7000_6000, file: r(0x6000, 0x10000) },
            ]
        );
        // Nothing of file [0x4000, 0x6000) is mapped by space 1 any more; space 2 still maps it.
        let hits = m.query(r(0x4000, 0x6000));
        assert_eq!(hits, vec![Mapping { space: 2, va: 0x7000_4000, file: r(0x4000, 0x6000) }]);
        // A range that covers a whole mapping and part of another.
        assert_eq!(m.remove_va_range(1, r(0x6fff_0000, 0x7000_8000)), 2);
        assert_eq!(m.of_space(1), vec![Mapping { space: 1, va: 0x7000_8000, file: r(0x8000, 0x10000) }]);
        assert_eq!(m.remove_va_range(1, r(0x7100_0000, 0x7200_0000)), 0, "nothing there");
        assert_eq!(m.of_space(2).len(), 1, "other spaces are untouched");
    }
}
