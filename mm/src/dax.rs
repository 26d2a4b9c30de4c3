//! The DAX fault decision: which page to install for a fault in a file
//! mapping, a 2 MiB (PMD) page or a 4 KiB one, or a signal.
//!
//! Linux `dax_iomap_pmd_fault` installs a PMD only when every condition
//! holds, and fsdax does the same (and picks virtual addresses congruent
//! with the file offset so that the first one usually holds):
//!
//! 1. the 2 MiB-aligned virtual block around the fault lies inside the
//!    mapping, and its file offset is 2 MiB aligned (VA and file offset
//!    congruent modulo 2 MiB);
//! 2. the whole block lies inside EOF;
//! 3. the mapping is shared, or the fault is a read (a private write is
//!    always a 4 KiB copy into anonymous memory);
//! 4. no 4 KiB entry is mapped in that block already (huge pages are never
//!    assembled from small ones);
//! 5. the file's extent covers the whole block, is physically contiguous
//!    and 2 MiB aligned, and is not shared for a write fault (the write is
//!    first unshared into a fresh aligned extent by the file system);
//! 6. no bad block lies in it.
//!
//! A read fault on a hole maps the shared zero page (2 MiB when the whole
//! block is a hole and conditions 1-4 hold); a fault at or beyond EOF is
//! SIGBUS (BUS_ADRERR).

use fsdax_pmem_api::{ByteRange, HUGE_2M, PAGE_SIZE};

/// Where the fault happened, in terms of the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultSite {
    /// The mapping's virtual range.
    pub vma: ByteRange,
    /// File offset of the mapping's first byte.
    pub file_offset: u64,
    pub shared: bool,
    pub write: bool,
    /// The faulting address.
    pub addr: u64,
}

impl FaultSite {
    /// File offset of the page containing the fault.
    pub fn page_offset(&self) -> u64 {
        let page = self.addr & !(PAGE_SIZE - 1);
        self.file_offset + (page - self.vma.start())
    }

    /// The 2 MiB-aligned virtual block around the fault.
    pub fn block(&self) -> ByteRange {
        ByteRange::from_len_saturating(self.addr & !(HUGE_2M - 1), HUGE_2M)
    }
}

/// What the file system said about the block's file range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Data at device offset `phys` for the file range starting at the
    /// block's file offset, contiguous for `len` bytes.
    Extent { phys: u64, len: u64, shared: bool },
    /// A hole for `len` bytes.
    Hole { len: u64 },
}

/// What to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// Map `[va, va + 2 MiB)` to device offset `phys` (the file data).
    Pmd { va: u64, file_offset: u64, phys: u64 },
    /// Map the 2 MiB shared zero page at `va`, read-only.
    ZeroPmd { va: u64 },
    /// Fall back to a 4 KiB page for the faulting page.
    Pte,
}

/// The fault is beyond EOF: SIGBUS with BUS_ADRERR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeyondEof;

/// Checks condition 2's 4 KiB variant first: the faulting page must start
/// before EOF.
pub fn check_eof(site: &FaultSite, file_size: u64) -> Result<(), BeyondEof> {
    if site.page_offset() >= file_size {
        Err(BeyondEof)
    } else {
        Ok(())
    }
}

/// The file offset of the 2 MiB block if conditions 1 to 4 hold (the ones
/// that need no file-system lookup).
pub fn pmd_candidate(site: &FaultSite, file_size: u64, small_page_in_block: bool) -> Option<u64> {
    let block = site.block();
    if !site.vma.contains_range(&block) {
        return None;
    }
    let block_file = site.file_offset + (block.start() - site.vma.start());
    if !block_file.is_multiple_of(HUGE_2M) {
        return None;
    }
    if block_file.checked_add(HUGE_2M)? > file_size {
        return None;
    }
    if site.write && !site.shared {
        return None;
    }
    if small_page_in_block {
        return None;
    }
    Some(block_file)
}

/// The virtual range a fault that installs 4 KiB pages may fill at once:
/// the pages of the fault's 2 MiB virtual block that lie inside the mapping
/// and start before EOF (a fault-around at 2 MiB). Where the file's blocks
/// are not 2 MiB extents (an aged file system, a file written in small
/// pieces), filling the whole block in one fault keeps faults at one per
/// 2 MiB, as huge pages would; the page tables then hold 4 KiB entries.
/// Holds the faulting page whenever [`check_eof`] passed.
pub fn fault_window(site: &FaultSite, file_size: u64) -> ByteRange {
    let block = site.block();
    let lo = block.start().max(site.vma.start());
    let eof_page = file_size.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE);
    let eof_va = site.vma.start().saturating_add(eof_page.saturating_sub(site.file_offset));
    let hi = block.end().min(site.vma.end()).min(eof_va);
    ByteRange::new(lo, hi.max(lo)).unwrap_or(ByteRange::EMPTY)
}

/// The full decision, given the backing of the block's file range (from
/// the file system's `bmap` at the block's file offset; for a write fault
/// after `bmap_write` has allocated or unshared it) and whether a bad block
/// lies in the block's device range.
pub fn decide(
    site: &FaultSite,
    file_size: u64,
    small_page_in_block: bool,
    backing: Backing,
    bad_in_block: bool,
) -> Install {
    let Some(block_file) = pmd_candidate(site, file_size, small_page_in_block) else {
        return Install::Pte;
    };
    let va = site.block().start();
    match backing {
        Backing::Extent { phys, len, shared } => {
            let whole = len >= HUGE_2M && phys.is_multiple_of(HUGE_2M);
            if whole && !(site.write && shared) && !bad_in_block {
                Install::Pmd { va, file_offset: block_file, phys }
            } else {
                Install::Pte
            }
        }
        Backing::Hole { len } if !site.write && len >= HUGE_2M => Install::ZeroPmd { va },
        Backing::Hole { .. } => Install::Pte,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = HUGE_2M;

    fn site(vma_start: u64, vma_len: u64, file_offset: u64, addr: u64, shared: bool, write: bool) -> FaultSite {
        FaultSite { vma: ByteRange::from_len(vma_start, vma_len).unwrap(), file_offset, shared, write, addr }
    }

    const GOOD: Backing = Backing::Extent { phys: 0x4000_0000, len: M, shared: false };

    #[test]
    fn aligned_shared_mapping_gets_a_pmd() {
        let s = site(0x7f00_0000_0000, 4 * M, 0, 0x7f00_0000_0000 + M + 123, true, true);
        assert_eq!(
            decide(&s, 8 * M, false, GOOD, false),
            Install::Pmd { va: 0x7f00_0000_0000 + M, file_offset: M, phys: 0x4000_0000 }
        );
    }

    #[test]
    fn each_condition_forces_4k() {
        let base = 0x7f00_0000_0000;
        // 1. VA and file offset not congruent.
        assert_eq!(
            decide(&site(base, 4 * M, PAGE_SIZE, base + 5, true, false), 8 * M, false, GOOD, false),
            Install::Pte
        );
        // 1. The block sticks out of the mapping.
        assert_eq!(
            decide(&site(base, M + PAGE_SIZE, 0, base + M, true, false), 8 * M, false, GOOD, false),
            Install::Pte
        );
        // 2. The block reaches past EOF.
        assert_eq!(decide(&site(base, 4 * M, 0, base, true, false), M - 1, false, GOOD, false), Install::Pte);
        // 3. Private write.
        assert_eq!(decide(&site(base, 4 * M, 0, base, false, true), 8 * M, false, GOOD, false), Install::Pte);
        // ... but a private read may use a PMD (read-only).
        assert!(matches!(
            decide(&site(base, 4 * M, 0, base, false, false), 8 * M, false, GOOD, false),
            Install::Pmd { .. }
        ));
        // 4. A small page already in the block.
        assert_eq!(decide(&site(base, 4 * M, 0, base, true, false), 8 * M, true, GOOD, false), Install::Pte);
        // 5. Extent too short, unaligned, or shared on write.
        let short = Backing::Extent { phys: 0x4000_0000, len: M - PAGE_SIZE, shared: false };
        assert_eq!(decide(&site(base, 4 * M, 0, base, true, false), 8 * M, false, short, false), Install::Pte);
        let skew = Backing::Extent { phys: 0x4000_1000, len: M, shared: false };
        assert_eq!(decide(&site(base, 4 * M, 0, base, true, false), 8 * M, false, skew, false), Install::Pte);
        let shared = Backing::Extent { phys: 0x4000_0000, len: M, shared: true };
        assert_eq!(decide(&site(base, 4 * M, 0, base, true, true), 8 * M, false, shared, false), Install::Pte);
        assert!(matches!(
            decide(&site(base, 4 * M, 0, base, true, false), 8 * M, false, shared, false),
            Install::Pmd { .. }
        ));
        // 6. A bad block inside.
        assert_eq!(decide(&site(base, 4 * M, 0, base, true, false), 8 * M, false, GOOD, true), Install::Pte);
    }

    #[test]
    fn the_fault_window_stays_in_the_block_the_mapping_and_eof() {
        let base = 0x7f00_0000_0000;
        let r = |s, e| ByteRange::new(s, e).unwrap();
        // A mapping of 2.5 blocks at a 2 MiB boundary, file offset 0, big file.
        let len = 2 * M + M / 2;
        let s = site(base, len, 0, base + M + 5 * PAGE_SIZE + 9, true, false);
        assert_eq!(fault_window(&s, 10 * M), r(base + M, base + 2 * M));
        // The third block is cut by the mapping's end.
        let s2 = site(base, len, 0, base + 2 * M + 17, true, false);
        assert_eq!(fault_window(&s2, 10 * M), r(base + 2 * M, base + len));
        // EOF in the middle of a page: that page is in, the next is not.
        let s4 = site(base, len, 0, base + 17, true, false);
        assert_eq!(fault_window(&s4, 5 * PAGE_SIZE + 1), r(base, base + 6 * PAGE_SIZE));
        // A mapping that starts inside the block, at file offset 8 KiB.
        let s3 = site(base + 3 * PAGE_SIZE, M, 2 * PAGE_SIZE, base + 4 * PAGE_SIZE, false, true);
        let w = fault_window(&s3, 4 * PAGE_SIZE);
        assert_eq!(w, r(base + 3 * PAGE_SIZE, base + 5 * PAGE_SIZE));
        assert!(w.contains(s3.addr));
        // Nothing before EOF: empty (check_eof refused the fault already).
        assert!(fault_window(&s3, PAGE_SIZE).is_empty());
    }

    #[test]
    fn holes_and_eof() {
        let base = 0x7f00_0000_0000;
        let s = site(base, 4 * M, 0, base + 10, true, false);
        assert_eq!(decide(&s, 8 * M, false, Backing::Hole { len: 8 * M }, false), Install::ZeroPmd { va: base });
        assert_eq!(decide(&s, 8 * M, false, Backing::Hole { len: PAGE_SIZE }, false), Install::Pte);
        let w = site(base, 4 * M, 0, base + 10, true, true);
        assert_eq!(decide(&w, 8 * M, false, Backing::Hole { len: 8 * M }, false), Install::Pte);
        assert_eq!(check_eof(&site(base, 4 * M, 0, base + M, true, false), M), Err(BeyondEof));
        assert_eq!(check_eof(&site(base, 4 * M, 0, base + M - 1, true, false), M), Ok(()));
        assert_eq!(check_eof(&site(base, 4 * M, 0, base + M, true, false), M + 1), Ok(()));
    }
}
