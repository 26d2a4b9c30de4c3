//! Pins on persistent-memory pages: ordinary reference counts, idle at 0.
//!
//! A DAX page is never freed by the page tables that map it: its blocks
//! belong to the file system. What must not happen is that the file system
//! frees or moves blocks (truncate, punch hole, reflink into the file) while
//! something still reaches them. So every present page-table entry that maps
//! persistent memory holds a pin on its page, and so does a kernel copy in
//! flight from or to it; before blocks are freed, the kernel unmaps the
//! range from every address space ("breaks the layouts") and then waits
//! until no pin is left in it (Linux's ZONE_DEVICE page reference counts,
//! idle at 0 after the 2025 series; before it they idled at 1, and a
//! forgotten "end = 0 means the whole file" left pages mapped).
//!
//! Persistent memory is large (terabytes on Optane machines), so the counts
//! are kept sparse: one map per page size from the page's physical address
//! to its count. A 2 MiB entry pins its whole 2 MiB; a query for a range
//! sees pins of every size that overlap it.

use alloc::collections::BTreeMap;

use fsdax_pmem_api::ByteRange;

use crate::paging::PageSize;

/// A pin that was never taken was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPinned {
    /// The page.
    pub phys: u64,
    pub size: PageSize,
}

/// The pin counts of persistent-memory pages, by page size.
#[derive(Debug, Clone)]
pub struct Pins {
    /// 4 KiB, 2 MiB and 1 GiB pages: physical address -> count (never 0).
    by_size: [BTreeMap<u64, u32>; 3],
}

impl Default for Pins {
    fn default() -> Self {
        Pins::new()
    }
}

fn level(size: PageSize) -> usize {
    match size {
        PageSize::Size4K => 0,
        PageSize::Size2M => 1,
        PageSize::Size1G => 2,
    }
}

const SIZES: [PageSize; 3] = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];

impl Pins {
    /// No pins.
    pub const fn new() -> Pins {
        Pins { by_size: [BTreeMap::new(), BTreeMap::new(), BTreeMap::new()] }
    }

    /// Takes one pin on the page of `size` at `phys` (aligned down to the
    /// page size).
    pub fn get(&mut self, phys: u64, size: PageSize) {
        let page = phys & !(size.bytes() - 1);
        *self.by_size[level(size)].entry(page).or_insert(0) += 1;
    }

    /// Releases one pin; `Ok(true)` if the page is idle now.
    pub fn put(&mut self, phys: u64, size: PageSize) -> Result<bool, NotPinned> {
        let page = phys & !(size.bytes() - 1);
        let map = &mut self.by_size[level(size)];
        let Some(n) = map.get_mut(&page) else { return Err(NotPinned { phys: page, size }) };
        *n -= 1;
        if *n == 0 {
            map.remove(&page);
            return Ok(true);
        }
        Ok(false)
    }

    /// Pins held on pages that overlap `range`, all sizes together (a
    /// 2 MiB page counts once however much of it overlaps).
    pub fn count_in(&self, range: ByteRange) -> u64 {
        if range.is_empty() {
            return 0;
        }
        SIZES
            .iter()
            .map(|&size| {
                let first = range.start() & !(size.bytes() - 1);
                self.by_size[level(size)].range(first..range.end()).map(|(_, &n)| u64::from(n)).sum::<u64>()
            })
            .sum()
    }

    /// Whether any page overlapping `range` is pinned.
    pub fn busy(&self, range: ByteRange) -> bool {
        !range.is_empty()
            && SIZES.iter().any(|&size| {
                let first = range.start() & !(size.bytes() - 1);
                self.by_size[level(size)].range(first..range.end()).next().is_some()
            })
    }

    /// Whether nothing is pinned at all.
    pub fn is_empty(&self) -> bool {
        self.by_size.iter().all(BTreeMap::is_empty)
    }

    /// Pinned pages (entries, not pins), for the console.
    pub fn pages(&self) -> usize {
        self.by_size.iter().map(BTreeMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{HUGE_2M, PAGE_SIZE};

    fn r(s: u64, e: u64) -> ByteRange {
        ByteRange::new(s, e).unwrap()
    }

    #[test]
    fn counts_per_page_and_size() {
        let mut p = Pins::default();
        let base = 0x1_0000_0000;
        p.get(base + HUGE_2M, PageSize::Size2M);
        p.get(base + HUGE_2M + 5 * PAGE_SIZE + 7, PageSize::Size4K);
        p.get(base + HUGE_2M + 5 * PAGE_SIZE, PageSize::Size4K);
        assert_eq!(p.pages(), 2);
        // A query inside the huge page sees it and the small one.
        assert_eq!(p.count_in(r(base + HUGE_2M + 5 * PAGE_SIZE, base + HUGE_2M + 6 * PAGE_SIZE)), 3);
        assert_eq!(p.count_in(r(base + HUGE_2M + 100 * PAGE_SIZE, base + HUGE_2M + 101 * PAGE_SIZE)), 1);
        assert!(!p.busy(r(base, base + HUGE_2M)), "the 2 MiB before it is idle");
        assert!(!p.busy(r(base + HUGE_2M, base + HUGE_2M)), "an empty range is never busy");
        assert_eq!(p.put(base + HUGE_2M + 5 * PAGE_SIZE, PageSize::Size4K), Ok(false));
        assert_eq!(p.put(base + HUGE_2M + 5 * PAGE_SIZE, PageSize::Size4K), Ok(true));
        assert_eq!(
            p.put(base + HUGE_2M + 5 * PAGE_SIZE, PageSize::Size4K),
            Err(NotPinned { phys: base + HUGE_2M + 5 * PAGE_SIZE, size: PageSize::Size4K })
        );
        assert_eq!(p.put(base + HUGE_2M, PageSize::Size4K).map_err(|e| e.size), Err(PageSize::Size4K));
        assert_eq!(p.put(base + HUGE_2M + 1, PageSize::Size2M), Ok(true));
        assert!(p.is_empty());
    }

    proptest! {
        /// `busy` and `count_in` agree with a plain list of pins.
        #[test]
        fn matches_a_list(ops in proptest::collection::vec((0u64..1024, any::<bool>(), any::<bool>()), 1..80),
                          q in (0u64..1024, 1u64..600)) {
            let mut p = Pins::default();
            let mut model: Vec<(u64, u64)> = Vec::new(); // (start, len) of each live pin
            for (page, huge, put) in ops {
                let (size, bytes) = if huge { (PageSize::Size2M, HUGE_2M) } else { (PageSize::Size4K, PAGE_SIZE) };
                let phys = (page * PAGE_SIZE) & !(bytes - 1);
                if put {
                    let held = model.iter().position(|&x| x == (phys, bytes));
                    prop_assert_eq!(p.put(phys, size).is_ok(), held.is_some());
                    if let Some(i) = held {
                        model.remove(i);
                    }
                } else {
                    p.get(phys, size);
                    model.push((phys, bytes));
                }
            }
            let range = r(q.0 * PAGE_SIZE, (q.0 + q.1) * PAGE_SIZE);
            let want = model.iter().filter(|&&(s, l)| s < range.end() && range.start() < s + l).count() as u64;
            prop_assert_eq!(p.count_in(range), want);
            prop_assert_eq!(p.busy(range), want > 0);
        }
    }
}
