//! Dirty tracking for DAX file mappings without `MAP_SYNC`.
//!
//! A store through a shared writable mapping goes straight to persistent
//! memory, but may sit in the CPU cache. `fsync`/`msync` must write back
//! exactly the lines of pages that were writable since the last flush
//! (Linux `dax_writeback_mapping_range`): a write fault marks the page
//! dirty and maps it writable; a flush takes the dirty pages, write-protects
//! every mapping of them, writes their lines back, and the next store
//! faults again and re-marks the page.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use fsdax_pmem_api::{ByteRange, PAGE_SIZE};

/// The dirty pages of one file, as coalesced page ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirtyPages {
    /// start page -> end page (exclusive).
    ranges: BTreeMap<u64, u64>,
}

fn pages(r: ByteRange) -> (u64, u64) {
    (r.start() / PAGE_SIZE, r.end().div_ceil(PAGE_SIZE))
}

fn bytes(s: u64, e: u64) -> ByteRange {
    ByteRange::new(s.saturating_mul(PAGE_SIZE), e.saturating_mul(PAGE_SIZE)).unwrap_or(ByteRange::EMPTY)
}

impl DirtyPages {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of dirty pages.
    pub fn count(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// Marks every page `range` touches.
    pub fn mark(&mut self, range: ByteRange) {
        if range.is_empty() {
            return;
        }
        let (mut s, mut e) = pages(range);
        // Absorb every range that overlaps or touches [s, e).
        let touching: Vec<(u64, u64)> =
            self.ranges.range(..=e).rev().take_while(|(_, &end)| end >= s).map(|(&a, &b)| (a, b)).collect();
        for (a, b) in touching {
            self.ranges.remove(&a);
            s = s.min(a);
            e = e.max(b);
        }
        self.ranges.insert(s, e);
    }

    /// Whether any page of `range` is dirty.
    pub fn any(&self, range: ByteRange) -> bool {
        let (s, e) = pages(range);
        self.ranges.range(..e).next_back().is_some_and(|(_, &end)| end > s)
    }

    /// Removes and returns the dirty pages inside `range` (byte ranges,
    /// page-aligned), for a flush of that range.
    pub fn take(&mut self, range: ByteRange) -> Vec<ByteRange> {
        if range.is_empty() {
            return Vec::new();
        }
        let (s, e) = pages(range);
        let hit: Vec<(u64, u64)> =
            self.ranges.range(..e).rev().take_while(|(_, &end)| end > s).map(|(&a, &b)| (a, b)).collect();
        let mut out = Vec::with_capacity(hit.len());
        for (a, b) in hit.into_iter().rev() {
            self.ranges.remove(&a);
            if a < s {
                self.ranges.insert(a, s);
            }
            if b > e {
                self.ranges.insert(e, b);
            }
            out.push(bytes(a.max(s), b.min(e)));
        }
        out
    }

    /// Removes and returns every dirty page.
    pub fn take_all(&mut self) -> Vec<ByteRange> {
        core::mem::take(&mut self.ranges).into_iter().map(|(s, e)| bytes(s, e)).collect()
    }

    /// Forgets dirty pages at or beyond `size` (truncate: those pages are
    /// gone, there is nothing to flush).
    pub fn truncate(&mut self, size: u64) {
        let first = size.div_ceil(PAGE_SIZE);
        let _ = self.take(bytes(first, u64::MAX / PAGE_SIZE));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn r(s: u64, e: u64) -> ByteRange {
        ByteRange::new(s, e).unwrap()
    }

    #[test]
    fn marks_coalesce_and_takes_split() {
        let mut d = DirtyPages::default();
        d.mark(r(100, 200)); // page 0
        d.mark(r(4096, 4097)); // page 1: touches, merges
        d.mark(r(5 * 4096, 6 * 4096));
        assert_eq!(d.count(), 3);
        assert!(d.any(r(4096 * 5 + 7, 4096 * 5 + 8)));
        assert!(!d.any(r(4096 * 3, 4096 * 4)));
        assert_eq!(d.take(r(4096, 4096 * 6)), vec![r(4096, 8192), r(5 * 4096, 6 * 4096)]);
        assert_eq!(d.take_all(), vec![r(0, 4096)]);
        assert!(d.is_empty());
        d.mark(r(0, 10 * 4096));
        d.truncate(3 * 4096 + 1);
        assert_eq!(d.take_all(), vec![r(0, 4 * 4096)]);
    }

    proptest! {
        #[test]
        fn matches_a_page_bitmap(ops in proptest::collection::vec((0u64..64, 1u64..8, any::<bool>()), 1..50)) {
            let mut d = DirtyPages::default();
            let mut model = [false; 80];
            for (page, n, take) in ops {
                let range = r(page * PAGE_SIZE, (page + n) * PAGE_SIZE);
                if take {
                    let got: u64 = d.take(range).iter().map(|x| x.len() / PAGE_SIZE).sum();
                    let want = (page..page + n).filter(|&p| model[p as usize]).count() as u64;
                    prop_assert_eq!(got, want);
                    for p in page..page + n { model[p as usize] = false; }
                } else {
                    d.mark(range);
                    for p in page..page + n { model[p as usize] = true; }
                }
                prop_assert_eq!(d.count(), model.iter().filter(|&&b| b).count() as u64);
                let v: Vec<_> = d.ranges.iter().collect();
                for w in v.windows(2) {
                    prop_assert!(w[0].1 < w[1].0, "ranges neither overlap nor touch");
                }
            }
        }
    }
}
